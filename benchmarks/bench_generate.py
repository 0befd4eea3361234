"""``hepgen generate`` end to end (ROOT in, ROOT out), beside the same job written with plain
uproot + awkward + nflows.

Workload: the reference simulation's ``jets`` process (``hepgen simulate``), NanoAOD layout,
about 3.3 gen jets per event.  A fast simulation with the **default model** of
``configs/toy_jets_flow.yaml`` (RQ-spline coupling flow, 6 transforms, 128 hidden features, 2
residual blocks, 16 bins; xgboost efficiency; fakes flow) is trained for one epoch on 2e4
events: the speed of generation does not depend on how well the model is trained.  Then
``generate_file`` runs over N = 2e5 events (2e4 with ``quick``) in chunks of 1e5 events and
writes every input branch plus the new ``Jet`` collection; its wall time excludes loading the
model (``load_s``; the first load in a process also imports xgboost and scikit-learn, about
1.5 s more).

The *plain* job does the least a physicist would write by hand for the same output:
``uproot.iterate`` over all branches in chunks of 1e5 events, flatten the five gen-jet
conditions, standardise them, draw one reco jet per gen jet from a plain nflows ``Flow`` with
the same architecture and the same 7 model-space columns, given the 5 standardised conditions
where hepgen's flow sees 7 (the flavour one-hot encoded) (``bench_flow.plain_flow``:
nflows' ``ResidualNet`` conditioners and spline, ``flow.sample(1, context=c)`` in batches of
4096), unflatten, and write every input branch plus the new collection with ``mktree`` /
``extend``.  It has no efficiency model, no fakes, no inverse preprocessing, no domain check
and no seeding, so its rate is an upper bound for what that architecture allows; the ratio
says what hepgen's extras cost (or save: its faster spline and conditioner).

Reported: gen jets/s of both, ``ratio`` = hepgen gen jets/s / plain gen jets/s (> 1: hepgen
faster), hepgen's reco objects and fakes, and the same with ``device="cuda"`` when a GPU is
present.  Target (issue 4): >= 50k gen jets/s end to end on 2 CPU cores for the default model.

``engines`` (issue 18): the same hepgen job with ``engine="eager"`` (the nflows layers),
``"compiled"`` (the graph through ``torch.compile``; the best of 2 calls, so the compilation
of the first is not counted), the graph with ``precision="bfloat16"`` (conditioner matmuls of
the response flow; the fakes flow stays float32) and the compiled graph in bfloat16, each with gen
jets/s and ``ratio`` to the plain job.  The fast simulation is trained with
``model.precision: bfloat16`` so that its bf16 check runs after training (``bf16_check``:
sample parity and classifier AUC, from the model card); a refused check is recorded as
``refused`` for that variant.  The main ``hepgen_*`` numbers are the default engine (``auto``) in float32
(``precision="float32"`` asked for explicitly).
"""

from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path

import awkward as ak
import numpy as np
import torch
import uproot
from _timing import best_time
from bench_flow import plain_flow, plain_sample

from hepgen.config import load_config
from hepgen.errors import InputError
from hepgen.fastsim import FastSim
from hepgen.generate import generate_file
from hepgen.resources import config_path
from hepgen.sim import simulate_to_file

__all__ = ["run"]

STEP = 100_000
TRAIN_EVENTS = 20_000


def _fast_sim(train_file: Path, model_dir: Path, device: str) -> FastSim:
    cfg = load_config(config_path("toy_jets_flow.yaml"))
    cfg = cfg.override(
        {
            "training.max_epochs": 1,
            "training.time_limit": None,
            "training.selection": "loss",
            "model.precision": "bfloat16",  # its check after training: the bf16 variant
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the toy has no b-tag sentinels
        sim = FastSim(cfg, device=device).fit(files=[str(train_file)], output=model_dir, quiet=True)
    return sim


def _plain_generate(
    flow,
    conditions: list[str],
    mean: np.ndarray,
    std: np.ndarray,
    source: Path,
    output: Path,
    device: str,
) -> int:
    """The hand-written job; returns the number of gen jets."""
    n_features = flow._distribution._shape[0]
    n_gen = 0
    with uproot.recreate(output) as fout:
        tree = None
        for arrays in uproot.iterate(f"{source}:Events", step_size=STEP, library="ak"):
            counts = ak.num(arrays[conditions[0]], axis=1)
            c = np.column_stack([ak.to_numpy(ak.flatten(arrays[n])) for n in conditions])
            c = ((c - mean) / std).astype(np.float32)
            x = plain_sample(flow, c, 4096, device)
            n_gen += len(c)
            branches = {}
            collections: dict[str, dict] = {}
            for field in arrays.fields:
                if field.startswith("Jet_") or field == "nJet" or field.startswith("nGenJet"):
                    continue
                if field.startswith("GenJet_"):
                    collections.setdefault("GenJet", {})[field[7:]] = arrays[field]
                else:
                    branches[field] = arrays[field]
            collections["Jet"] = {f"t{i}": ak.unflatten(x[:, i], counts) for i in range(n_features)}
            for name, fields in collections.items():
                branches[name] = ak.zip(fields)
            if tree is None:
                tree = fout.mktree("Events", {k: v.type for k, v in branches.items()})
            tree.extend(branches)
    return n_gen


def _one_device(device: str, train_file: Path, gen_file: Path, work: Path) -> dict:
    t0 = time.perf_counter()
    sim = _fast_sim(train_file, work / f"model_{device}", device)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    sim = FastSim.load(work / f"model_{device}", device=device)
    load_s = time.perf_counter() - t0

    def hepgen_job(engine: str = "auto", precision: str = "float32"):
        return generate_file(
            sim,
            gen_file,
            work / f"hepgen_{device}.root",
            seed=1,
            quiet=True,
            device=device,
            engine=engine,
            precision=precision,
        )

    t_h, stats = best_time(hepgen_job, 2)

    module = sim.response_.flow_
    settings = module.settings
    flow = (
        plain_flow(
            settings, seed=0, n_features=module.n_features, n_conditions=len(sim.condition_names)
        )
        .to(device)
        .eval()
    )
    events = uproot.open(f"{train_file}:Events").arrays(sim.condition_names, library="ak")
    c = np.column_stack([ak.to_numpy(ak.flatten(events[n])) for n in sim.condition_names])
    mean, std = c.mean(0), c.std(0) + 1e-9

    def plain_job():
        return _plain_generate(
            flow, sim.condition_names, mean, std, gen_file, work / f"plain_{device}.root", device
        )

    t_p, n_plain = best_time(plain_job, 2)
    n_gen = stats["gen_objects"]
    assert n_plain == n_gen, (n_plain, n_gen)
    return {
        "events": stats["events"],
        "gen_jets": n_gen,
        "reco_jets": stats["reco_objects"],
        "fakes": stats["fakes"],
        "train_one_epoch_s": round(train_s, 2),
        "load_s": round(load_s, 3),
        "hepgen_s": round(t_h, 3),
        "plain_s": round(t_p, 3),
        "hepgen_gen_jets_per_s": round(n_gen / t_h, 1),
        "plain_gen_jets_per_s": round(n_gen / t_p, 1),
        "ratio": round(t_p / t_h, 3),
        "target_gen_jets_per_s": 50_000,
        "meets_target": bool(n_gen / t_h >= 50_000) if device == "cpu" else None,
        "engines": _engines(hepgen_job, n_gen, t_p),
        "bf16_check": _bf16_check(sim),
    }


def _engines(job, n_gen: int, t_plain: float) -> dict:
    """gen jets/s of the hepgen job per engine and precision (best of 2 calls), and the ratio
    to the plain job; a refused precision or a failure is recorded."""
    out: dict = {}
    for name, engine, precision in (
        ("eager", "eager", "float32"),
        ("compiled", "compiled", "float32"),
        ("graph_bf16", "auto", "bfloat16"),
        ("compiled_bf16", "compiled", "bfloat16"),
    ):
        try:
            seconds, _ = best_time(lambda e=engine, p=precision: job(e, p), 2)
        except InputError as err:
            out[name] = {"refused": str(err)[:300]}
            continue
        except Exception as err:  # a benchmark records a failing variant and goes on
            out[name] = {"error": f"{type(err).__name__}: {err}"[:300]}
            continue
        out[name] = {
            "engine": engine,
            "precision": precision,
            "hepgen_s": round(seconds, 3),
            "hepgen_gen_jets_per_s": round(n_gen / seconds, 1),
            "ratio": round(t_plain / seconds, 3),
        }
    return out


def _bf16_check(sim: FastSim) -> dict | None:
    """The model card's bf16 check: parity of samples and classifier AUCs, accepted or not."""
    check = (getattr(sim, "inference_", None) or {}).get("checks", {}).get("bfloat16")
    if not check:
        return None
    keys = ("parity", "auc_float32", "auc", "auc_interval", "accepted")
    return {k: check[k] for k in keys if k in check}


def run(quick: bool = False) -> dict:
    """Run the benchmark and return its measurements.

    Parameters
    ----------
    quick : bool
        Generate 2e4 events instead of 2e5.

    Returns
    -------
    dict
        Per device: events, gen jets, hepgen and plain seconds and gen jets/s, their ratio
        (hepgen / plain), the one-epoch training and model-loading times; ``engines``: the
        same job per engine and precision; ``bf16_check``: the model card's bf16 check.
    """
    warnings.filterwarnings("ignore", message=".*triangular_solve.*")  # plain LULinear.inverse
    n_events = 20_000 if quick else 200_000
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    out: dict = {
        "n_events": n_events,
        "chunk_events": STEP,
        "torch_threads": torch.get_num_threads(),
        "devices": devices,
        "ratio": "hepgen gen jets/s / plain uproot+nflows gen jets/s (> 1: hepgen faster)",
    }
    with tempfile.TemporaryDirectory(prefix="hepgen_bench_generate_") as tmp:
        work = Path(tmp)
        train_file = simulate_to_file(work / "train.root", "jets", TRAIN_EVENTS, seed=1, quiet=True)
        gen_file = simulate_to_file(work / "gen.root", "jets", n_events, seed=2, quiet=True)
        for device in devices:
            out[device] = _one_device(device, Path(train_file), Path(gen_file), work)
    return out
