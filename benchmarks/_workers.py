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

__all__ = ["ONE_THREAD", "env_list", "launch", "run_parallel", "throughput"]

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
