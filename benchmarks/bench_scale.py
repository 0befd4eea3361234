"""``hepgen generate`` and the partitioned ``hepgen validate`` over many files: in-process vs a
local Dask cluster of 1 and 2 workers, with peak memory, output equality and a paper estimate.

Workload: ``--files`` files (default 16) of ``--events`` events each (default 1e5) of the
reference simulation's ``jets`` process (``hepgen.sim.simulate_to_file``, seeds 1000 + i),
NanoAOD layout, about 3.3 gen jets per event.  The model is the ``toy_jets_flow.yaml`` fast
simulation with a tiny flow (2 transforms, 16 hidden features, as ``tests/conftest.py``)
trained for 2 epochs on 2e4 events, or the model directory given with ``--model``: the
generation speed does not depend on how well it is trained.

Runs (each executor on the same inputs, seed 1, ``--step-size`` events per partition,
default 5e4, so 2 partitions per file; output layout ``per-file``):

* **in-process**: ``hepgen generate MODEL IN... -o DIR`` (the CLI's ``main``) in a fresh
  subprocess, so that its peak RSS (``resource.getrusage``) is the job's alone;
  (hepgen's own Dask settings: no ``MALLOC_TRIM_THRESHOLD_``, one torch thread for the
  model calls, as in-process).

The same for validation: :func:`hepgen.validation.partitioned.validate_partitioned` of the
inputs (full simulation, reference) against the in-process outputs (fast simulation,
candidate), on the jet features, subsample ``--subsample`` rows (default 2e4) for the
multivariate tests, which run in the client process (their time does not scale with
workers; passes 1 and 2 do).  The CLI ``hepgen validate --workers`` is not used because it
was not wired to the partitioned validation when this benchmark was written.

Equality: every output file of the Dask runs is compared with the in-process one, branch by
branch (``ak.array_equal`` with exact dtypes: bit-identical is expected), and the metrics of
the validation reports (all but timings, executor and notes) must be identical.

Paper estimate (printed and in the JSON): the wall time of a 1e9-event production on 100
workers, from the 2-worker run: per-event compute cost of a warm worker (median over
partition tasks of seconds / events, plus the per-file merge tasks' seconds per event), the
measured idle time per task (workers * job seconds - summed task seconds, over tasks: the
scheduler, serialisation and tail imbalance, an upper bound), the model load on a worker's
first task, and the cluster start.  Assumed: the per-worker throughput as measured here (one
core per worker), I/O not the bottleneck (local disk here; a shared file system or XRootD may
be), the per-task overhead independent of the cluster size (a Dask scheduler handles about
1e3-1e4 tasks/s; 2e4 tasks of 5e4 events are far below that).

The machine is shared: ``os.getloadavg`` at start and end is in the result.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

__all__ = ["main", "run"]

HERE = Path(__file__).resolve().parent
FEATURES = ["nJet", "Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", "Jet_btagDeepFlavB"]
TRAIN_EVENTS = 20_000
SEED = 1
#: The environment at import, before any Dask nanny added its variables to it.
_ENVIRON = dict(os.environ)


def _peak_rss_mb() -> float:
    """This process's peak RSS in MB: ``VmHWM`` of /proc (``ru_maxrss`` survives fork + exec,
    so a Dask worker would report its parent's peak), else ``ru_maxrss``."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:  # pragma: no cover - not Linux
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _train(work: Path) -> Path:
    """The tiny fast simulation (2 epochs on TRAIN_EVENTS events), saved under work/model."""
    from hepgen.config import load_config
    from hepgen.fastsim import FastSim
    from hepgen.resources import config_path
    from hepgen.sim import simulate_to_file

    train = simulate_to_file(work / "train.root", "jets", TRAIN_EVENTS, seed=11, quiet=True)
    cfg = load_config(config_path("toy_jets_flow.yaml")).override(
        {
            "model.flow.n_transforms": 2,
            "model.flow.hidden_features": 16,
            "training.max_epochs": 2,
            "training.time_limit": None,
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the toy has no b-tag sentinels
        FastSim(cfg, device="cpu").fit(files=[str(train)], output=work / "model", quiet=True)
    return work / "model"


# ----------------------------------------------------------------------------- in-process
def _child(spec: dict[str, Any]) -> dict[str, Any]:
    """The in-process job, in this (fresh) process: ``hepgen generate`` or the validation."""
    start = time.perf_counter()
    if spec["job"] == "generate":
        from hepgen.cli import main as cli

        args = ["generate", spec["model"], *spec["inputs"], "-o", spec["output"]]
        args += ["--step-size", str(spec["step"]), "--seed", str(SEED), "--quiet"]
        args += ["--output-layout", "per-file", "--device", "cpu"]
        assert cli(args) == 0
        manifest = json.loads((Path(spec["output"]) / "manifest.json").read_text())
        out = {"job_s": manifest["seconds"], "events": manifest["events"]}
    else:
        from hepgen.cli import configure_process

        configure_process()
        out = _validate(spec, None)
    out["wall_s"] = time.perf_counter() - start
    out["peak_rss_mb"] = _peak_rss_mb()
    import torch

    out["torch_threads"] = torch.get_num_threads()
    return out


def _in_process(spec: dict[str, Any]) -> dict[str, Any]:
    """Run :func:`_child` in a subprocess and return what it printed."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    env = dict(_ENVIRON)  # not what a Dask nanny left in os.environ (MALLOC_TRIM_THRESHOLD_)
    if spec.get("threads"):  # torch's (OpenMP) threads of the in-process job
        env["OMP_NUM_THREADS"] = str(spec["threads"])
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode:
        raise RuntimeError(f"in-process {spec['job']} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _validate(spec: dict[str, Any], executor: Any) -> dict[str, Any]:
    from hepgen.validation.partitioned import validate_partitioned

    start = time.perf_counter()
    result, _ = validate_partitioned(
        spec["reference"],
        spec["candidate"],
        spec["output"],
        executor=executor,
        step_size=spec["step"],
        subsample=spec["subsample"],
        seed=SEED,
        features=FEATURES,
        device="cpu",
        quiet=True,
    )
    return {
        "job_s": time.perf_counter() - start,
        "events": result.n_reference + result.n_candidate,
        "timings_s": {k: round(v, 3) for k, v in result.timings.items()},
        "passes_s": result.timings["pass1"] + result.timings["pass2"],
    }


# ----------------------------------------------------------------------------- Dask
def _task_times(stream: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Compute intervals of the tasks in a Dask task stream, grouped by map (the token at
    the end of hepgen's task keys), each group in start order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for task in stream:
        key = task["key"][0] if isinstance(task["key"], tuple) else task["key"]
        for ss in task["startstops"]:
            if ss["action"] == "compute":
                rec = {"key": str(key), "worker": task.get("worker"), "start": ss["start"]}
                rec["seconds"] = ss["stop"] - ss["start"]
                groups.setdefault(str(key).rsplit("-", 1)[-1], []).append(rec)
    ordered = sorted(groups.values(), key=lambda g: min(t["start"] for t in g))
    return {f"map{i}": sorted(g, key=lambda t: t["start"]) for i, g in enumerate(ordered)}


def _on_dask(workers: int, run_job: Any) -> dict[str, Any]:
    """Start a local cluster as ``--workers`` does, run ``run_job(executor)`` on it with the
    task stream recorded, and collect the per-worker peak RSS and torch threads."""
    import distributed
    import torch

    from hepgen.parallel import executor

    t0 = time.perf_counter()
    with executor(workers=workers, quiet=True) as ex:
        client = ex.client
        client.wait_for_workers(workers)
        start_s = time.perf_counter() - t0
        with distributed.get_task_stream(client=client) as ts:
            out = run_job(ex)
        peaks = client.run(_peak_rss_mb)
        threads = client.run(torch.get_num_threads)
    out["cluster_start_s"] = round(start_s, 2)
    out["peak_rss_mb_per_worker"] = sorted(peaks.values())
    out["torch_threads_per_worker"] = sorted(threads.values())
    out["tasks"] = _task_times(ts.data)
    return out


def _generate_dask(ex: Any, spec: dict[str, Any]) -> dict[str, Any]:
    from hepgen.generate import generate_file

    start = time.perf_counter()
    stats = generate_file(
        spec["model"],
        spec["inputs"],
        spec["output"],
        step_size=spec["step"],
        seed=SEED,
        device="cpu",
        quiet=True,
        layout="per-file",
        scheduler=ex.client,
    )
    return {
        "job_s": stats["seconds"],
        "wall_s": time.perf_counter() - start,
        "events": stats["events"],
    }


# ----------------------------------------------------------------------------- checks
def _differences(a: Path, b: Path, names: list[str]) -> list[str]:
    """``file:branch`` of every output branch that differs (values, structure or dtype):
    empty when the outputs are bit-identical."""
    import awkward as ak
    import uproot

    diff = []
    for name in names:
        with uproot.open(a / name) as fa, uproot.open(b / name) as fb:
            x, y = fa["Events"].arrays(), fb["Events"].arrays()
        if x.fields != y.fields:
            diff.append(f"{name}: fields {x.fields} != {y.fields}")
            continue
        for f in x.fields:
            if not ak.array_equal(x[f], y[f], dtype_exact=True, equal_nan=True):
                diff.append(f"{name}:{f}{_size_of_difference(x[f], y[f])}")
    return diff


def _size_of_difference(x: Any, y: Any) -> str:
    """`` (k of n values, max |diff| d)`` when the structures agree, else ``(structure)``."""
    import awkward as ak
    import numpy as np

    try:
        a = np.asarray(ak.flatten(x, axis=None), dtype=np.float64)
        b = np.asarray(ak.flatten(y, axis=None), dtype=np.float64)
    except Exception:  # pragma: no cover - records etc.
        return " (structure)"
    if a.shape != b.shape or not np.array_equal(ak.num(x, axis=-1), ak.num(y, axis=-1)):
        return " (objects per event differ)"
    bad = a != b
    return f" ({int(bad.sum())} of {a.size} values, max |diff| {np.abs(a - b)[bad].max():.3g})"


def _metrics(report: Path) -> str:
    """metrics.json without what may differ between executors (timings, executor, notes)."""
    data = json.loads((report / "metrics.json").read_text())
    for key in ("timings", "notes", "inputs"):
        data.pop(key, None)
    data.get("partitioned", {}).pop("executor", None)
    return json.dumps(data, sort_keys=True)


def _rates(rec: dict[str, Any], base: dict[str, Any]) -> None:
    rec["events_per_s"] = round(rec["events"] / rec["job_s"], 1)
    rec["speedup_vs_in_process"] = round(base["job_s"] / rec["job_s"], 3)
    if "passes_s" in rec:  # validation: the partition passes alone (the rest is the client's)
        rec["passes_speedup_vs_in_process"] = round(base["passes_s"] / rec["passes_s"], 3)
        rec["passes_s"] = round(rec["passes_s"], 3)
    for k in ("job_s", "wall_s"):
        if k in rec:
            rec[k] = round(rec[k], 3)


# ----------------------------------------------------------------------------- summaries
def _partition_sizes(n_files: int, events: int, step: int) -> list[int]:
    per_file = [min(step, events - s) for s in range(0, events, step)]
    return per_file * n_files


def _summary(rec: dict[str, Any], sizes: list[int] | None) -> None:
    """Replace the raw task list by per-map sums; for the partition map (with ``sizes``) the
    warm seconds per event (median over tasks that were not a worker's first) and the excess
    of each worker's first task (model load, imports) over it."""
    tasks = rec.pop("tasks")
    maps: dict[str, Any] = {}
    for name, group in tasks.items():
        maps[name] = {"tasks": len(group), "seconds": round(sum(t["seconds"] for t in group), 3)}
    rec["task_maps"] = maps
    busy = sum(m["seconds"] for m in maps.values())
    n_tasks = sum(m["tasks"] for m in maps.values())
    workers = len(rec["peak_rss_mb_per_worker"])
    rec["idle_s_per_task"] = round((workers * rec["job_s"] - busy) / max(n_tasks, 1), 4)
    if sizes is None or "map0" not in tasks:
        return
    first: dict[Any, dict[str, Any]] = {}
    for t in tasks["map0"]:
        first.setdefault(t["worker"], t)
    per_event = []
    for t in tasks["map0"]:
        t["events"] = sizes[int(t["key"].split("-")[-2])]
        if t not in first.values():
            per_event.append(t["seconds"] / t["events"])
    warm = statistics.median(per_event) if per_event else None
    rec["warm_s_per_event"] = warm
    if warm is not None:
        rec["first_task_excess_s"] = [
            round(t["seconds"] - warm * t["events"], 3) for t in first.values()
        ]
    if "map1" in maps:  # the per-file merges of a Dask per-file production
        rec["merge_s_per_event"] = maps["map1"]["seconds"] / sum(sizes)


def _estimate(rec: dict[str, Any], step: int, events_per_file: int) -> dict[str, Any]:
    """The 1e9-event production on 100 workers from a Dask run's measurements."""
    n, w = 1e9, 100
    per_event = rec["warm_s_per_event"] + rec.get("merge_s_per_event", 0.0)
    n_tasks = n / step + n / events_per_file
    compute = n * per_event / w
    overhead = n_tasks * max(rec["idle_s_per_task"], 0.0) / w
    warmup = max(rec.get("first_task_excess_s", [0.0]))
    total = compute + overhead + warmup + rec["cluster_start_s"]
    return {
        "events": n,
        "workers": w,
        "partition_events": step,
        "tasks": int(n_tasks),
        "warm_events_per_s_per_worker": round(1 / rec["warm_s_per_event"], 1),
        "seconds_per_event_with_merge": per_event,
        "compute_s": round(compute, 1),
        "task_overhead_s": round(overhead, 1),
        "worker_warmup_s": round(warmup, 2),
        "cluster_start_s": rec["cluster_start_s"],
        "total_s": round(total, 1),
        "total_h": round(total / 3600, 2),
        "assumptions": (
            "per-worker throughput as measured here (one core, one thread per worker); "
            "I/O not the bottleneck; the measured idle time per task (scheduler, "
            "serialisation, tail imbalance: an upper bound) independent of cluster size; "
            "one model load per worker; files of the same size as here, merged per file"
        ),
    }


def _equal(r: dict[str, Any]) -> str:
    return str(r.get("equal_to_in_process", "-"))


def _table(out: dict[str, Any]) -> str:
    lines = [
        f"{'job':9} {'executor':13} {'job s':>7} {'events/s':>9} {'speedup':>7} "
        f"{'passes s':>8} {'speedup':>7} {'start s':>7} {'peak RSS MB/worker':>19} equal to in-process",
    ]
    for job in ("generate", "validate"):
        for name, r in out[job].items():
            rss = r.get("peak_rss_mb_per_worker", [r.get("peak_rss_mb")])
            passes = (
                f"{r['passes_s']:8.1f} {r['passes_speedup_vs_in_process']:7.2f}"
                if "passes_s" in r
                else f"{'-':>8} {'-':>7}"
            )
            lines.append(
                f"{job:9} {name:13} {r['job_s']:7.1f} {r['events_per_s']:9.0f} "
                f"{r['speedup_vs_in_process']:7.2f} {passes} {r.get('cluster_start_s', 0.0):7.1f} "
                f"{', '.join(f'{x:.0f}' for x in rss):>19} {_equal(r)}"
            )
    for name, e in out.get("paper_estimate", {}).items():
        lines.append(
            f"paper estimate ({name}): 1e9 events on 100 workers: {e['total_h']} h "
            f"({e['warm_events_per_s_per_worker']:.0f} events/s per warm worker, "
            f"{e['tasks']} tasks, overhead {e['task_overhead_s']} s)"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the runs
def _generate_runs(spec: dict[str, Any], work: Path, names: list[str], workers: tuple) -> dict:
    base = Path(spec["output"])
    runs = {"in-process": _in_process(spec)}
    for n in workers:
        folder = work / f"generate_{n}w"
        one = {**spec, "output": str(folder)}
        rec = _on_dask(n, lambda ex, one=one: _generate_dask(ex, one))
        rec["differences"] = _differences(base, folder, names)
        rec["equal_to_in_process"] = not rec["differences"]
        runs[f"dask-{n}"] = rec
        shutil.rmtree(folder)
    return runs


def _validate_runs(spec: dict[str, Any], work: Path, workers: tuple) -> dict:
    runs = {"in-process": _in_process(spec)}
    reference = _metrics(Path(spec["output"]))
    for n in workers:
        folder = work / f"validate_{n}w"
        one = {**spec, "output": str(folder)}
        rec = _on_dask(n, lambda ex, one=one: _validate(one, ex))
        rec["equal_to_in_process"] = _metrics(folder) == reference
        runs[f"dask-{n}"] = rec
    return runs


def run(
    quick: bool = False,
    *,
    files: int | None = None,
    events: int | None = None,
    step: int | None = None,
    subsample: int | None = None,
    model: str | None = None,
    workers: tuple[int, ...] = (1, 2),
) -> dict[str, Any]:
    """Run the benchmark and return its measurements (see the module docstring).

    Parameters
    ----------
    quick : bool
        Small defaults: 4 files of 2e4 events, partitions of 1e4, subsample 5e3.
    files, events, step, subsample : int or None
        Input files, events per file, events per partition, validation subsample rows
        (defaults 16, 1e5, 5e4, 2e4).
    model : str or None
        A model directory; None trains the tiny flow.
    workers : tuple of int
        Local Dask cluster sizes.

    Returns
    -------
    dict
        Sizes, load averages, per job and executor: seconds, events/s, speedup vs
        in-process, peak RSS (per worker), cluster start, task sums, equality flags; the
        paper estimate.
    """
    from hepgen.sim import simulate_to_file

    files = files or (4 if quick else 16)
    events = events or (20_000 if quick else 100_000)
    step = step or (10_000 if quick else 50_000)
    subsample = subsample or (5_000 if quick else 20_000)
    out: dict[str, Any] = {"load_start": _load(), "cpu_count": os.cpu_count()}
    out["sizes"] = {"files": files, "events_per_file": events, "step": step}
    out["sizes"].update(subsample=subsample, events=files * events)
    with tempfile.TemporaryDirectory(prefix="hepgen_bench_scale_") as tmp:
        work = Path(tmp)
        (work / "in").mkdir()
        t0 = time.perf_counter()
        inputs = [
            str(
                simulate_to_file(
                    work / "in" / f"f{i:02d}.root", "jets", events, seed=1000 + i, quiet=True
                )
            )
            for i in range(files)
        ]
        out["simulate_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        model = model or str(_train(work))
        out["model"] = {"trained_s": round(time.perf_counter() - t0, 2), "path": model}
        names = [Path(p).name for p in inputs]
        base = work / "generate_in_process"
        spec = {"job": "generate", "model": model, "inputs": inputs, "output": str(base)}
        out["generate"] = _generate_runs({**spec, "step": step}, work, names, workers)
        vspec = {"job": "validate", "reference": inputs, "step": step, "subsample": subsample}
        vspec.update(candidate=[str(base / n) for n in names], output=str(work / "val_in"))
        out["validate"] = _validate_runs(vspec, work, workers)
    sizes = _partition_sizes(files, events, -(-step // 10_000) * 10_000)
    for job in ("generate", "validate"):
        for rec in out[job].values():
            _rates(rec, out[job]["in-process"])
            if "tasks" in rec:
                _summary(rec, sizes if job == "generate" else None)
    out["paper_estimate"] = {}
    last = f"dask-{max(workers)}"
    out["paper_estimate"][last] = _estimate(out["generate"][last], step, events)
    out["load_end"] = _load()
    out["table"] = _table(out).splitlines()
    print(_table(out), file=sys.stderr, flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--files", type=int, default=None, help="input files (16)")
    parser.add_argument("--events", type=int, default=None, help="events per file (1e5)")
    parser.add_argument("--step-size", type=int, default=None, help="events per partition")
    parser.add_argument("--subsample", type=int, default=None, help="validation subsample")
    parser.add_argument("--model", default=None, help="a model directory (default: train)")
    parser.add_argument("--output", type=Path, default=HERE / "results")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:  # the in-process job of a run, in its own process
        print(json.dumps(_child(json.loads(args.child))))
        return 0
    sys.path.insert(0, str(HERE))
    from run import machine_facts

    from hepgen.cli import configure_process

    configure_process()
    start = time.perf_counter()
    result = run(
        args.quick,
        files=args.files,
        events=args.events,
        step=args.step_size,
        subsample=args.subsample,
        model=args.model,
    )
    record = {
        "benchmark": "scale",
        "quick": args.quick,
        "wall_s": round(time.perf_counter() - start, 3),
        "machine": machine_facts(),
        "results": result,
    }
    args.output.mkdir(parents=True, exist_ok=True)
    out = args.output / "scale.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, out)
    print(f"[bench] scale: {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
