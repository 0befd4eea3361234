"""Training and sampling speed of hepgen's flows beside a plain nflows loop (issue 15).

The question: does ``hepgen train`` train a flow at least as fast per row as the loop a user
would write with nflows, on small data (the PID case: ~30k rows, 5 targets, 4 conditions,
batch 512) and large data (~300k rows, 6 targets, 7 conditions, batch 4096), for the
coupling and the autoregressive RQ-spline flow (6 transforms x 128 hidden, 2 blocks, 16 bins,
LU mixing), on a quiet machine and with two other CPU-bound jobs running?

Each measurement runs in its own subprocess, alternating between the two sides, so that each
side gets the process set-up it has in real use:

* ``hepgen``: the process as the ``hepgen`` command sets it up
  (:func:`hepgen.cli.configure_process`: ``OMP_WAIT_POLICY=PASSIVE`` unless the user set it),
  then :meth:`hepgen.models.flow_model.FlowModel.fit` exactly as ``FastSim`` calls it: 80/20
  train/validation split, the validation loss every epoch, the KS selection metric
  (``selection="ks"``, ``metric_every`` chosen from its estimated cost), checkpoints in a
  temporary folder, quiet.  The whole call is timed.
* ``plain``: a plain Python process (no OpenMP variables set): the same architecture from
  nflows parts (:func:`bench_flow.plain_flow`: ``PiecewiseRationalQuadraticCouplingTransform``
  / ``MaskedPiecewiseRationalQuadraticAutoregressiveTransform``, ``RandomPermutation`` +
  ``LULinear`` mixing), ``torch.optim.Adam`` (lr 1e-3), the same batch size, a shuffled pass
  per epoch, no validation, no checkpoints.  Under load its OpenMP threads spin against the
  other jobs and a run can take an hour: it stops after 90 s (20 s with ``quick``) and its
  rate is the rows it trained in that time (``capped``); its sampling likewise.
* ``hepgen_plain_env`` (small data, quiet phase only): hepgen's ``fit`` in the plain process
  set-up, to separate what the library does from what the command's process set-up does.

Epochs: on small data as many as the selection metric's period (``metric_every``), so that a
run holds the mix of a long training (that many epochs and validation losses, one metric, one
checkpoint or two); on large data 2 (the autoregressive flow's metric, which runs every 5th
epoch in a long training, is then charged to 2 epochs: a pessimistic ratio).  After training,
each side draws one sample per validation condition (at most 20k rows): ``FlowModel.sample``
against nflows' ``flow.sample(1, context=c)``, batches of 4096.

Rates are rows per second (training rows x epochs / wall time of the whole call); every
``ratio`` is hepgen / plain (> 1: hepgen faster), from the best of the rounds of each side.
"Loaded" runs start two ``while True: pass`` subprocesses first.  The machine's load average
before and after each phase is recorded (other users of a shared machine load it too: only
the ratios within one run mean anything).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["run"]

HERE = Path(__file__).resolve().parent
OMP_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
BUSY = "while True: pass"

#: name -> (rows, targets, conditions, batch size)
SIZES = {"small": (30_000, 5, 4, 512), "large": (300_000, 6, 7, 4096)}
QUICK_SIZES = {"small": (4_000, 5, 4, 256), "large": (20_000, 6, 7, 1024)}
VALIDATION_FRACTION = 0.2
SAMPLE_ROWS = 20_000
SAMPLE_BATCH = 4096


# ------------------------------------------------------------------------------ the worker


def make_data(n: int, d: int, c: int, seed: int) -> tuple[Any, Any]:
    """Model-space (targets (n, d), conditions (n, c)), float32: ``x = A c + s(c) noise``,
    standardised (a response-like conditional structure)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    cond = rng.standard_normal((n, c))
    a = np.random.default_rng(12345).normal(0.0, 0.6, (d, c))
    width = 0.3 + 0.2 * np.abs(np.tanh(cond[:, :1]))
    x = cond @ a.T + width * rng.standard_normal((n, d))
    x = (x - x.mean(0)) / x.std(0)
    return x.astype(np.float32), cond.astype(np.float32)


def _hepgen_job(spec: dict, x, c, xv, cv) -> dict:
    import tempfile

    from hepgen.models.flow import FlowSettings
    from hepgen.models.flow_model import FlowModel
    from hepgen.training import TrainingSettings

    settings = FlowSettings(kind=spec["kind"])
    batch = spec["batch_size"]
    # warm-up: lazy initialisations of torch (one batch, not timed)
    FlowModel(settings, seed=1, device="cpu").fit(
        x[:batch],
        c[:batch],
        training=TrainingSettings(max_epochs=1, batch_size=batch, device="cpu"),
        selection="loss",
        quiet=True,
    )
    model = FlowModel(settings, seed=0, device="cpu")
    training = TrainingSettings(max_epochs=spec["epochs"], batch_size=batch, device="cpu", seed=0)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        result = model.fit(
            x,
            c,
            validation={"x": xv, "c": cv},
            training=training,
            selection="ks",
            checkpoint_dir=folder,
            quiet=True,
        )
        seconds = time.perf_counter() - start
    model.sample(cv[:256], seed=1, batch_size=SAMPLE_BATCH)  # warm-up
    rows, sample_seconds = _timed_chunks(
        lambda cb: model.sample(cb, seed=0, batch_size=SAMPLE_BATCH), cv, spec["plain_cap_s"]
    )
    history = result.history
    return {
        "train_seconds": round(seconds, 3),
        "train_rows_per_s": round(x.shape[0] * len(history) / seconds, 1),
        "train_phase_rows_per_s": round(
            sum(h["events_per_second"] for h in history) / len(history), 1
        ),
        "epochs": len(history),
        "metric_every": result.settings["metric_every"],
        "metric_evaluations": sum(h["metric"] is not None for h in history),
        "last_train_loss": round(float(history[-1]["train_loss"]), 4),
        "sample_rows_per_s": round(rows / sample_seconds, 1),
    }


def _plain_job(spec: dict, x, c, xv, cv) -> dict:
    import warnings

    import numpy as np
    import torch
    from bench_flow import plain_flow

    from hepgen.models.flow import FlowSettings

    warnings.filterwarnings("ignore", message=".*triangular_solve.*")
    settings = FlowSettings(kind=spec["kind"])
    batch = spec["batch_size"]
    d, k = x.shape[1], c.shape[1]

    def fit(flow, xs, cs, epochs: int, cap: float) -> tuple[float, int]:
        """(mean loss of the last epoch's batches, rows trained); stops after ``cap`` s."""
        opt = torch.optim.Adam(flow.parameters(), lr=1e-3)
        xt, ct = torch.from_numpy(xs), torch.from_numpy(cs)
        flow.train()
        total, seen, done = 0.0, 0, 0
        start = time.perf_counter()
        for _ in range(epochs):
            perm = torch.randperm(len(xt))
            total, seen = 0.0, 0
            for i in range(0, len(xt), batch):
                idx = perm[i : i + batch]
                loss = -flow.log_prob(xt[idx], context=ct[idx]).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(idx)
                seen += len(idx)
                done += len(idx)
                if time.perf_counter() - start > cap:
                    return total / seen, done
        return total / max(seen, 1), done

    torch.manual_seed(0)
    fit(plain_flow(settings, 1, d, k), x[:batch], c[:batch], 1, 60.0)  # warm-up, not timed
    flow = plain_flow(settings, 0, d, k)
    start = time.perf_counter()
    loss, done = fit(flow, x, c, spec["epochs"], spec["plain_cap_s"])
    seconds = time.perf_counter() - start
    flow.eval()

    def sample(cb: np.ndarray) -> None:
        with torch.no_grad():
            flow.sample(1, context=torch.from_numpy(cb)).reshape(len(cb), -1).numpy()

    sample(cv[:256])  # warm-up
    rows, sample_seconds = _timed_chunks(sample, cv, spec["plain_cap_s"])
    return {
        "train_seconds": round(seconds, 3),
        "train_rows_per_s": round(done / seconds, 1),
        "epochs": spec["epochs"],
        "rows_trained": done,
        "capped": done < x.shape[0] * spec["epochs"],
        "last_train_loss": round(loss, 4),
        "sample_rows_per_s": round(rows / sample_seconds, 1),
    }


def _timed_chunks(sample, cv, cap: float) -> tuple[int, float]:
    """Draw one sample per row of ``cv[:SAMPLE_ROWS]`` in chunks of SAMPLE_BATCH rows, for at
    most ``cap`` seconds; (rows drawn, seconds)."""
    rows, start = 0, time.perf_counter()
    for i in range(0, min(SAMPLE_ROWS, cv.shape[0]), SAMPLE_BATCH):
        chunk = cv[i : i + SAMPLE_BATCH]
        sample(chunk)
        rows += chunk.shape[0]
        if time.perf_counter() - start > cap:
            break
    return rows, time.perf_counter() - start


def worker(spec: dict) -> dict:
    """One measurement (in a subprocess): train and sample one side on the spec's data."""
    if spec["side"] == "hepgen":
        from hepgen.cli import configure_process

        configure_process()  # before torch loads, as `hepgen train` does
    sys.path.insert(0, str(HERE))
    n, d, k = spec["rows"], spec["targets"], spec["conditions"]
    x, c = make_data(n, d, k, seed=1)
    n_val = int(VALIDATION_FRACTION * n)
    xv, cv, x, c = x[:n_val], c[:n_val], x[n_val:], c[n_val:]
    job = _plain_job if spec["side"] == "plain" else _hepgen_job
    out = job(spec, x, c, xv, cv)
    import torch

    out["torch_threads"] = torch.get_num_threads()
    out["omp"] = {k: os.environ.get(k) for k in OMP_KEYS}
    return out


# ------------------------------------------------------------------------------ the parent


def _env() -> dict[str, str]:
    """The plain side's environment has no OpenMP variables (a plain user's process); the
    hepgen worker adds the command's own (:func:`hepgen.cli.configure_process`)."""
    env = {k: v for k, v in os.environ.items() if k not in OMP_KEYS}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(HERE.parent), str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return env


def _measure(spec: dict, timeout: float) -> dict:
    payload = json.dumps(spec)
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--worker", payload],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1:] or [f"rc {proc.returncode}"]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _best(rounds: list[dict], key: str) -> float | None:
    values = [r[key] for r in rounds if key in r]
    return max(values) if values else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def _config(
    name: str, size: tuple, kind: str, epochs: int, rounds: int, sides: list[str], cap: float
) -> dict:
    n, d, k, batch = size
    spec = {
        "rows": n,
        "targets": d,
        "conditions": k,
        "batch_size": batch,
        "kind": kind,
        "epochs": epochs,
        "plain_cap_s": cap,
    }
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    for r in range(rounds):
        order = sides if r % 2 == 0 else sides[::-1]  # alternate who goes first
        for side in order:
            runs[side].append(_measure({**spec, "side": side}, timeout=900))
    out: dict[str, Any] = {"spec": spec, "runs": runs}
    best = {
        side: {key: _best(rs, key) for key in ("train_rows_per_s", "sample_rows_per_s")}
        for side, rs in runs.items()
    }
    out["best"] = best
    plain = best["plain"]
    out["ratio_train"] = _ratio(best["hepgen"]["train_rows_per_s"], plain["train_rows_per_s"])
    out["ratio_sample"] = _ratio(best["hepgen"]["sample_rows_per_s"], plain["sample_rows_per_s"])
    if "hepgen_plain_env" in best:
        same = best["hepgen_plain_env"]
        out["ratio_train_same_env"] = _ratio(same["train_rows_per_s"], plain["train_rows_per_s"])
        out["ratio_sample_same_env"] = _ratio(same["sample_rows_per_s"], plain["sample_rows_per_s"])
    print(
        f"[train_speed] {name}: train ratio {out['ratio_train']}, sample ratio "
        f"{out['ratio_sample']}",
        file=sys.stderr,
        flush=True,
    )
    return out


def _small_epochs(size: tuple, kind: str) -> int:
    """The metric period of a real training on this data (at least 2 epochs)."""
    from hepgen.models.flow_model import SAMPLE_COST_PER_PASS
    from hepgen.models.selection import metric_cost
    from hepgen.training import TrainingSettings

    n, d, _, batch = size
    n_val = int(VALIDATION_FRACTION * n)
    passes = d if kind == "autoregressive" else 1
    cost = metric_cost("ks", n_val, n - n_val, SAMPLE_COST_PER_PASS * passes)
    resolved, _ = TrainingSettings(batch_size=batch).resolve(n - n_val, cost)
    return max(2, resolved.metric_every)


def run(quick: bool = False) -> dict:
    """Run the benchmark (about 15 minutes on 2 busy cores; ``quick``: about 2).

    Returns
    -------
    dict
        Per ``"{size}/{kind}/{load}"``: the spec, every round of every side, the best rates,
        ``ratio_train`` and ``ratio_sample`` (hepgen / plain), and on small data the same
        with hepgen in the plain process set-up (``*_same_env``); load averages.
    """
    sizes = QUICK_SIZES if quick else SIZES
    cap = 20.0 if quick else 90.0
    rounds = {"small": 1 if quick else 2, "large": 1}
    out: dict[str, Any] = {
        "ratio": "hepgen rows/s / plain nflows rows/s (> 1: hepgen faster), best of rounds",
        "cpu_count": os.cpu_count(),
        "configs": {},
        "loadavg": {},
    }
    for load in ("quiet", "loaded"):
        busy = []
        out["loadavg"][f"{load}_before"] = os.getloadavg()
        try:
            if load == "loaded":
                busy = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(2)]
            for size_name, size in sizes.items():
                for kind in ("coupling", "autoregressive"):
                    epochs = _small_epochs(size, kind) if size_name == "small" else 2
                    if quick:
                        epochs = min(epochs, 2)
                    sides = ["hepgen", "plain"]
                    if size_name == "small" and load == "quiet":
                        sides.append("hepgen_plain_env")
                    name = f"{size_name}/{kind}/{load}"
                    out["configs"][name] = _config(
                        name, size, kind, epochs, rounds[size_name], sides, cap
                    )
        finally:
            for proc in busy:
                proc.kill()
                proc.wait()
        out["loadavg"][f"{load}_after"] = os.getloadavg()
    return out


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        print(json.dumps(worker(json.loads(sys.argv[2]))))
    else:
        import argparse

        parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
        parser.add_argument("--quick", action="store_true")
        parser.add_argument("--output", type=Path, default=None)
        args = parser.parse_args()
        result = run(quick=args.quick)
        text = json.dumps(result, indent=2)
        if args.output is None:
            print(text)
        else:
            args.output.write_text(text + "\n")
