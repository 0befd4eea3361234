"""One model per process, a few processes side by side: the machinery of the benchmarks that
train several fast simulations on the same task (``bench_models``, ``bench_zoo``).

A benchmark script runs each entry as ``python SCRIPT --worker NAME --work FOLDER ...`` in a
fresh process whose torch and OpenMP use ONE thread (:data:`ONE_THREAD`); the worker writes
``FOLDER/result.json`` and :func:`launch` reads it back, or records why there is none (exit
status, last log lines, a timeout).  :func:`run_parallel` runs ``jobs`` launches at a time, so
``jobs`` entries share the machine's cores one each.  :func:`throughput` times a function of a
row count, capping each call at about a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _timing import best_time

__all__ = ["ONE_THREAD", "bench_main", "env_list", "launch", "run_parallel", "throughput"]

#: Thread-limiting environment of the worker processes.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


def env_list(name: str) -> list[str] | None:
    """The comma-separated values of environment variable ``name`` (None: unset or empty)."""
    value = os.environ.get(name, "").strip()
    return [v.strip() for v in value.split(",") if v.strip()] or None


def throughput(
    fn: Callable[[int], Any],
    max_rows: int,
    *,
    max_call_s: float = 60.0,
    probe_rows: int = 2_000,
    slow_call_s: float = 20.0,
) -> tuple[float, int]:
    """Rows/s of ``fn(n)`` (which evaluates ``n`` rows) and the rows timed.

    Up to ``max_rows`` rows, fewer where a call would exceed ``max_call_s`` seconds (a probe of
    ``probe_rows`` rows decides); best of 3 calls, one when a call takes over ``slow_call_s``.

    Returns
    -------
    rows_per_s : float
        Rounded to 0.1 rows/s.
    rows : int
        Rows per timed call.
    """
    probe = min(probe_rows, max_rows)
    t_probe, _ = best_time(lambda: fn(probe), 1)
    rows = int(min(max_rows, max(probe, probe / max(t_probe, 1e-9) * max_call_s)))
    best, _ = best_time(lambda: fn(rows), 1)
    if best < slow_call_s:
        best = min(best, best_time(lambda: fn(rows), 2)[0])
    return round(rows / best, 1), rows


def launch(
    script: Path,
    name: str,
    folder: Path,
    args: Sequence[str],
    timeout: float,
    *,
    key: str = "name",
    tag: str = "bench",
) -> dict[str, Any]:
    """Run ``python SCRIPT --worker NAME --work FOLDER *ARGS`` at one thread; its result.

    Parameters
    ----------
    script : Path
        The benchmark script (it handles ``--worker`` and writes ``FOLDER/result.json``).
    name : str
        The entry the worker runs.
    folder : Path
        The worker's folder (created): its ``result.json`` and ``log.txt`` (stdout, stderr).
    args : sequence of str
        Further command-line arguments of the worker.
    timeout : float
        Seconds after which a hung worker is stopped (recorded as an error).
    key : str
        The result's key holding ``name`` (set where the worker wrote no result).
    tag : str
        Prefix of the one progress line printed to stderr.

    Returns
    -------
    dict
        The worker's ``result.json``, else ``{key: name, "error": ..., "log_tail": [...]}``;
        with ``process_wall_s`` (seconds, the whole process).
    """
    folder.mkdir(parents=True, exist_ok=True)
    result = folder / "result.json"
    cmd = [sys.executable, str(Path(script).resolve()), "--worker", name, "--work", str(folder)]
    cmd += [str(a) for a in args]
    env = {**os.environ, **ONE_THREAD}
    log = folder / "log.txt"
    start = time.perf_counter()
    try:
        with log.open("w") as stream:
            proc = subprocess.run(
                cmd, env=env, stdout=stream, stderr=subprocess.STDOUT, timeout=timeout
            )
        rc: int | str = proc.returncode
    except subprocess.TimeoutExpired:
        rc = f"timed out after {timeout:.0f} s"
    wall = round(time.perf_counter() - start, 1)
    if result.exists():
        out = json.loads(result.read_text())
    else:
        tail = log.read_text(errors="replace").strip().splitlines()[-8:] or [""]
        out = {key: name, "error": f"process exit {rc}: {tail[-1]}", "log_tail": tail}
    out["process_wall_s"] = wall
    print(f"[{tag}] {name}: {out.get('error', 'ok')} ({wall} s)", file=sys.stderr, flush=True)
    return out


def run_parallel(
    names: Sequence[str], fn: Callable[[str], dict[str, Any]], jobs: int
) -> list[dict[str, Any]]:
    """``[fn(name) for name in names]``, ``jobs`` calls at a time (threads: each call is
    expected to wait on its own process, :func:`launch`); results in the order of ``names``."""
    with ThreadPoolExecutor(max_workers=max(1, int(jobs))) as pool:
        return list(pool.map(fn, names))


def bench_main(
    argv: list[str] | None,
    *,
    doc: str,
    benchmark: str,
    choice: str,
    choices: Sequence[str],
    run: Callable[..., dict[str, Any]],
    worker: Callable[[str, Path, Path, Path, float | None], dict[str, Any]],
    report: Callable[[dict[str, Any]], list[str]],
    output: Path,
) -> int:
    """The command line of a benchmark of this kind: run every entry (``--quick``,
    ``--CHOICE a,b``, ``--jobs``, ``--budget``) and write ``OUTPUT/BENCHMARK.json``
    atomically, or, with ``--worker NAME``, train one entry in this process (what
    :func:`launch` starts).

    Parameters
    ----------
    argv : list of str or None
        The arguments (None: ``sys.argv``).
    doc : str
        The script's docstring (its first line is the description).
    benchmark : str
        The record's name and the JSON file's stem (``models``, ``zoo``).
    choice : str
        The option naming a subset of the entries (``only``, ``families``); passed to
        ``run`` under that name.
    choices : sequence of str
        Every entry, for the help text.
    run : callable
        ``run(quick=, jobs=, budget=, **{choice: list or None})`` -> results.
    worker : callable
        ``worker(name, train, heldout, work, budget)`` -> one entry's result.
    report : callable
        The lines printed from the results.
    output : Path
        Default output folder.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument(
        f"--{choice}", help=f"comma-separated entries (default: all: {','.join(choices)})"
    )
    parser.add_argument("--jobs", type=int, help="entry processes at a time (default 2)")
    parser.add_argument("--budget", type=float, help="training.time_limit per entry, seconds")
    parser.add_argument("--output", type=Path, default=output)
    internal = parser.add_argument_group("one entry (internal)")
    internal.add_argument("--worker", help=argparse.SUPPRESS)
    for name in ("--train", "--heldout", "--work"):
        internal.add_argument(name, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from hepgen.cli import configure_process

    configure_process()  # as run.py: the process setup of the `hepgen` command
    if args.worker:
        result = worker(args.worker, args.train, args.heldout, args.work, args.budget)
        (args.work / "result.json").write_text(json.dumps(result, indent=2) + "\n")
        return 0
    from run import machine_facts

    start = time.perf_counter()
    subset = getattr(args, choice)
    subset = subset.split(",") if subset else None
    result = run(quick=args.quick, jobs=args.jobs, budget=args.budget, **{choice: subset})
    record = {
        "benchmark": benchmark,
        "quick": args.quick,
        "wall_s": round(time.perf_counter() - start, 3),
        "machine": machine_facts(),
        "results": result,
    }
    args.output.mkdir(parents=True, exist_ok=True)
    path = args.output / f"{benchmark}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)
    print("\n".join(report(result)))
    print(f"[bench] {benchmark}: {path} ({record['wall_s']} s)", file=sys.stderr)
    return 0
