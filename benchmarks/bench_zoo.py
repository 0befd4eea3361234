"""Every flow family of ``model.flow.kind`` on the same fast-simulation task, same budget.

Workload: the jets task of ``configs/toy_jets_flow.yaml`` on the reference simulation's
``jets`` process, the training and held-out files of ``bench_models`` (60k simulated training
events, 20k held-out; 6k and 5k with ``quick``).  Only ``model.flow.kind`` changes between
families: ``coupling`` and ``autoregressive`` keep the config's flow section (6 RQ-spline
transforms of 128 hidden features, 16 bins), every other kind gets ``{kind: K}`` alone, i.e.
its own defaults (``hepgen.settings.models.KIND_DEFAULTS``; the config's spline keys mean
nothing to it).

**Training budget**, the same for every family: ``training.time_limit`` = 240 s of wall time
for the whole fit (20 s with ``quick``; ``HEPGEN_ZOO_BUDGET`` or ``--budget`` to change), of
which the response flow gets 75 % (``hepgen.fastsim.RESPONSE_SHARE``) and the fakes flow, of
the same kind, the rest; ``training.max_epochs`` and every other training key are the
config's (60 epochs, batch 4096, cosine schedule, patience 8, kept epoch by mean KS, and
``learning_rate: null``: each kind's default, 1e-3, or 1e-2 for flow matching,
``hepgen.settings.models.KIND_LEARNING_RATES``).  Each
family runs in its own process with torch and OpenMP at ONE thread, ``jobs`` processes at a
time (default 2: one core each on a 2-core machine; ``HEPGEN_ZOO_JOBS`` or ``--jobs``).

Reported per family (``families.<kind>``):

* quality: held-out classifier AUC with its 95% CI and the reference-vs-reference baseline,
  the largest (and per-target) KS statistic, from ``hepgen validate --config`` of the
  generated held-out events; the validation NLL, mean ``-log p(x | c)`` in nats per matched
  pair of the held-out file in model space (``FlowModel.log_prob`` on the preprocessed pairs;
  on the first pairs that it evaluates in about 2 minutes where it is slow: flow matching);
* training: wall seconds of the fit, epochs done, kept epoch, training rows/s (median over
  epochs), training pairs;
* speed at one thread: ``sample`` and ``log_prob`` rows/s of the response model on 1e5 model-
  space rows (fewer where a call would take over a minute: the rows used are recorded; best
  of up to 3 calls), ``hepgen generate`` gen jets/s end to end;
* model: parameter count, the module's class, the cost class (``describe()["cost"]``).

A family that fails records ``error`` (and what it measured before) and the others go on.
``default`` says whether a family beats the default spline coupling flow: a held-out AUC
lower by more than 1.96 combined standard errors (from the two 95 % CIs), at equal (within
10 %) or better sampling and density speed (``beats_coupling``), or at equal or better
sampling speed only (``beats_on_sampling_only``).  The markdown table (``table``) is what
the README shows.

Run: ``benchmarks/run.py zoo`` (with ``--quick``), or this file directly with ``--families``,
``--jobs``, ``--budget`` (``--help``); both write ``benchmarks/results/zoo.json``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # run as a script: the shared helpers sit beside this file
    sys.path.insert(0, str(HERE))

from _jets_task import CONFIG, held_out_quality, simulate_task, sizes  # noqa: E402
from _workers import bench_main, env_list, launch, run_parallel, throughput  # noqa: E402

from hepgen.settings.models import FLOW_KINDS, SPLINE_KINDS  # noqa: E402

__all__ = ["family_config", "markdown_table", "run"]

#: Seconds of ``training.time_limit`` per family (full, quick).
BUDGET_S, QUICK_BUDGET_S = 240.0, 20.0
#: Rows of the sampling and density timings ...
TIMING_ROWS = 100_000
#: ... unless a call would take longer than this (seconds; measured on a probe of PROBE_ROWS).
MAX_CALL_S, PROBE_ROWS = 60.0, 2_000
#: A timed call slower than this is not repeated.
SLOW_CALL_S = 20.0
#: The validation NLL is the mean over the held-out pairs that log_prob gets through in about
#: this many seconds (all of them, except for slow densities: flow matching's adaptive ODE).
NLL_S = 120.0
#: Sampling speeds within this fraction of the coupling flow's count as equal (timing noise).
SPEED_TOLERANCE = 0.1
#: Family processes at a time.
DEFAULT_JOBS = 2


def family_config(kind: str, budget: float, max_epochs: int | None = None) -> Any:
    """The task's config for one family (see the module docstring).

    Parameters
    ----------
    kind : str
        ``model.flow.kind``.
    budget : float
        ``training.time_limit`` in seconds.
    max_epochs : int or None
        ``training.max_epochs`` (None: the config's).

    Returns
    -------
    hepgen.config.Config
    """
    from hepgen.config import load_config
    from hepgen.resources import config_path

    config = load_config(config_path(CONFIG))
    flow = config.model.flow.model_dump(mode="json", exclude_unset=True)
    overrides: dict[str, Any] = {
        "model.flow": {**flow, "kind": kind} if kind in SPLINE_KINDS else {"kind": kind},
        "training.time_limit": budget,
    }
    if max_epochs is not None:
        overrides["training.max_epochs"] = max_epochs
    return config.override(overrides)


def _throughput(fn: Any, max_rows: int) -> tuple[float, int]:
    """:func:`_workers.throughput` with this benchmark's limits (:data:`MAX_CALL_S`,
    :data:`PROBE_ROWS`, :data:`SLOW_CALL_S`)."""
    return throughput(
        fn, max_rows, max_call_s=MAX_CALL_S, probe_rows=PROBE_ROWS, slow_call_s=SLOW_CALL_S
    )


def _build_error(config: Any) -> str | None:
    """Why ``config``'s flow family does not build (a tiny one, before any training), or
    None."""
    from hepgen.models.flows import build_flow

    try:
        build_flow(2, 1, config.model.generator_settings())
    except Exception as exc:  # recorded; the other families go on
        return f"{type(exc).__name__}: {exc}"
    return None


def _family(kind: str, train: Path, heldout: Path, work: Path, budget: float) -> dict:
    """Train, time and validate one family (in its own process, one thread)."""
    import torch

    from hepgen.dataset import load_pairs
    from hepgen.fastsim import FastSim
    from hepgen.generate import generate_file
    from hepgen.validation.files import validate_files

    torch.set_num_threads(1)
    out: dict[str, Any] = {"kind": kind}
    config = family_config(kind, budget)
    out["flow_settings"] = config.model.flow.model_dump(mode="json")
    stage = "build"
    try:
        error = _build_error(config)
        if error:
            out["error"] = f"build: {error}"
            return out
        stage = "fit"
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the toy has no b-tag sentinels
            sim = FastSim(config, device="cpu").fit(
                files=[str(train)], output=work / "model", quiet=True
            )
        history = sim.training_.history
        arch = sim.response_.describe()
        out["model"] = {
            "module": type(sim.response_.module_).__name__,
            "n_parameters": arch["n_parameters"],
            "cost": arch.get("cost"),
        }
        out["training"] = {
            "wall_s": round(time.perf_counter() - start, 1),
            "epochs": len(history),
            "kept_epoch": sim.training_.selected_epoch,
            "rows_per_s": round(float(np.median([h["events_per_second"] for h in history])), 1),
            "n_train_pairs": sim.summary_["n_train_pairs"],
        }
        stage = "timing"
        pairs = load_pairs(config, files=[str(heldout)], quiet=True).pairs()
        pre, response = sim.preprocessor_, sim.response_
        x = pre.transform_targets(pairs, rng=np.random.default_rng(7))
        c = pre.transform_conditions(pairs)
        rows = np.arange(TIMING_ROWS) % x.shape[0]  # the held-out pairs, repeated to 1e5 rows
        xt, ct = np.ascontiguousarray(x[rows]), np.ascontiguousarray(c[rows])
        sample_rate, sample_rows = _throughput(
            lambda n: response.sample(ct[:n], seed=2), TIMING_ROWS
        )
        log_prob_rate, log_prob_rows = _throughput(
            lambda n: response.log_prob(xt[:n], ct[:n]), TIMING_ROWS
        )
        out["speed"] = {
            "sample_rows_per_s": sample_rate,
            "sample_rows": sample_rows,
            "log_prob_rows_per_s": log_prob_rate,
            "log_prob_rows": log_prob_rows,
        }
        stage = "nll"
        n_nll = int(min(x.shape[0], max(PROBE_ROWS, log_prob_rate * NLL_S)))
        logp = response.log_prob(x[:n_nll], c[:n_nll])
        finite = np.isfinite(logp)
        out["quality"] = {
            "val_nll": round(float(-logp[finite].mean()), 4),
            "n_val_pairs": n_nll,
            "n_heldout_pairs": int(x.shape[0]),
            "n_nonfinite_log_prob": int((~finite).sum()),
        }
        stage = "generate"
        generated = work / "generated.root"
        gen_stats = generate_file(sim, heldout, generated, seed=1, quiet=True)
        out["speed"]["generate_gen_jets_per_s"] = round(gen_stats["gen_objects_per_second"], 1)
        stage = "validate"
        report = work / "report"
        validate_files(
            heldout,
            generated,
            report,
            config=config,
            metrics=["ks", "c2st"],
            device="cpu",
            quiet=True,
            max_plots=0,
        )
        metrics = json.loads((report / "metrics.json").read_text())
        quality = held_out_quality(metrics, sim.target_names)
        quality["ks_max_target"] = max(quality["ks"], key=quality["ks"].get)
        out["quality"] = {**quality, **out["quality"]}
    except Exception as exc:  # recorded; the other families go on
        out["error"] = f"{stage}: {type(exc).__name__}: {exc}"
        out["traceback"] = traceback.format_exc(limit=-6)
    return out


def _launch(kind: str, train: Path, heldout: Path, work: Path, budget: float) -> dict:
    """Run :func:`_family` in a fresh process at one thread; its result or the failure."""
    args = ["--train", str(train), "--heldout", str(heldout), "--budget", str(budget)]
    timeout = 4 * budget + 1800  # fit, generate and validate; a hung family is stopped
    return launch(Path(__file__), kind, work / kind, args, timeout, key="kind", tag="zoo")


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown_table(families: dict[str, dict]) -> str:
    """The README table of :func:`run`'s ``families`` (one row per family)."""
    head = (
        "| family | held-out AUC [95% CI] | ref-vs-ref AUC | worst KS (target) | val NLL "
        "| train rows/s | sample rows/s | log_prob rows/s | parameters | epochs (kept) "
        "| cost: sample / log_prob |"
    )
    lines = [head, "|" + "---|" * 11]
    for kind, r in families.items():
        if "error" in r and "quality" not in r:
            error = r["error"].replace("|", "/")[:100]
            lines.append(f"| {kind} | failed: {error} |" + " |" * 9)
            continue
        q, t = r.get("quality", {}), r.get("training", {})
        s, m = r.get("speed", {}), r.get("model", {})
        ci = q.get("auc_ci")
        auc = "-" if "auc" not in q else f"{q['auc']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"
        ks = "-" if "ks_max" not in q else f"{q['ks_max']:.3f} ({q['ks_max_target']})"
        cost = m.get("cost") or {}
        name = kind if "error" not in r else f"{kind} (failed at {r['error'].split(':')[0]})"
        lines.append(
            f"| {name} | {auc} | {_fmt(q.get('auc_baseline'), '.3f')} | {ks} "
            f"| {_fmt(q.get('val_nll'), '.3f')} | {_fmt(t.get('rows_per_s'), ',.0f')} "
            f"| {_fmt(s.get('sample_rows_per_s'), ',.0f')} "
            f"| {_fmt(s.get('log_prob_rows_per_s'), ',.0f')} "
            f"| {_fmt(m.get('n_parameters'), ',d')} "
            f"| {t.get('epochs', '-')} ({t.get('kept_epoch', '-')}) "
            f"| {cost.get('sample', '-')} / {cost.get('log_prob', '-')} |"
        )
    return "\n".join(lines)


def _default_verdict(families: dict[str, dict]) -> dict:
    """Which families beat the spline coupling flow (see the module docstring)."""
    ref = families.get("coupling", {})
    if "auc_ci" not in ref.get("quality", {}) or "speed" not in ref:
        return {"beats_coupling": [], "note": "no coupling result to compare with"}

    def se(r: dict) -> float:  # from the 95 % CI
        lo, hi = r["quality"]["auc_ci"]
        return (hi - lo) / (2 * 1.96)

    def fast(r: dict, key: str) -> bool:
        return r.get("speed", {}).get(key, 0) >= (1 - SPEED_TOLERANCE) * ref["speed"][key]

    better = [
        k
        for k, r in families.items()
        if k != "coupling"
        and "auc_ci" in r.get("quality", {})
        and ref["quality"]["auc"] - r["quality"]["auc"] > 1.96 * math.hypot(se(ref), se(r))
        and fast(r, "sample_rows_per_s")
    ]
    beats = [k for k in better if fast(families[k], "log_prob_rows_per_s")]
    sampling_only = [k for k in better if k not in beats]
    note = (
        f"lower held-out AUC than coupling (difference beyond 1.96 combined standard errors) "
        f"at equal (within 10 %) or better sampling and density speed: {beats or 'none'}; "
        f"at equal or better sampling speed only (slower densities): {sampling_only or 'none'}"
    )
    return {"beats_coupling": beats, "beats_on_sampling_only": sampling_only, "note": note}


def run(
    quick: bool = False,
    families: list[str] | None = None,
    jobs: int | None = None,
    budget: float | None = None,
) -> dict:
    """Run the benchmark and return its measurements.

    Parameters
    ----------
    quick : bool
        6k training events, 5k held-out, 20 s of training per family.
    families : list of str or None
        Kinds to run (default: ``HEPGEN_ZOO_FAMILIES``, comma-separated, else every kind).
    jobs : int or None
        Family processes at a time (default: ``HEPGEN_ZOO_JOBS``, else 2).
    budget : float or None
        ``training.time_limit`` per family in seconds (default: ``HEPGEN_ZOO_BUDGET``, else
        240, 20 with ``quick``).

    Returns
    -------
    dict
        ``task`` (sizes, budget, threads, settings rule), ``families`` (per kind: quality,
        training, speed, model, or ``error``), ``default`` and ``table`` (markdown).
    """
    families = families or env_list("HEPGEN_ZOO_FAMILIES") or list(FLOW_KINDS)
    unknown = sorted(set(families) - set(FLOW_KINDS))
    if unknown:
        raise SystemExit(f"unknown families {unknown}; known: {', '.join(FLOW_KINDS)}")
    jobs = jobs or int(os.environ.get("HEPGEN_ZOO_JOBS", DEFAULT_JOBS))
    if budget is None:
        env_budget = os.environ.get("HEPGEN_ZOO_BUDGET")
        budget = float(env_budget) if env_budget else (QUICK_BUDGET_S if quick else BUDGET_S)
    n_train, n_heldout = sizes(quick)
    out: dict[str, Any] = {
        "task": {
            "config": f"configs/{CONFIG}",
            "n_train_events": n_train,
            "n_heldout_events": n_heldout,
            "time_limit_s": budget,
            "max_epochs": family_config("coupling", budget).training.max_epochs,
            "torch_threads": 1,
            "jobs": jobs,
            "flow_settings": "coupling/autoregressive: the config's flow section; other "
            "kinds: {kind: K} alone (their defaults)",
            "timing_rows": TIMING_ROWS,
        }
    }
    with tempfile.TemporaryDirectory(prefix="hepgen_bench_zoo_") as tmp:
        work = Path(tmp)
        train, heldout = simulate_task(work, n_train, n_heldout)
        results = run_parallel(families, lambda k: _launch(k, train, heldout, work, budget), jobs)
    out["families"] = {r["kind"]: r for r in results}
    out["default"] = _default_verdict(out["families"])
    out["table"] = markdown_table(out["families"])
    json.dumps(out)  # fail here, not in run.py, if something is not JSON
    return out


def main(argv: list[str] | None = None) -> int:
    return bench_main(
        argv,
        doc=__doc__,
        benchmark="zoo",
        choice="families",
        choices=FLOW_KINDS,
        run=run,
        worker=_family,
        report=lambda r: [r["table"], r["default"]["note"]],
        output=HERE / "results",
    )


if __name__ == "__main__":
    raise SystemExit(main())
