"""A per-event job (``hepgen generate``, ``hepgen score``) over many files: partitions in,
ROOT files and a manifest out.

:func:`produce` plans the partitions (:func:`~hepgen.parallel.partitions.plan_partitions`),
runs the job on each (:class:`~hepgen.parallel.executor.Executor`), block by seed block, and
writes the outputs in one of three layouts:

* ``"single"``: one ROOT file for all inputs (``-o OUT.root``), the rows in input order;
* ``"per-file"``: one ROOT file per input file under an output folder, with the input's
  name: the natural layout of a production;
* ``"per-partition"``: one ROOT file per partition (``<stem>.<first entry>.root``), no merge
  step.

Every file is written atomically.  On Dask, each partition is written by its task to a part
file under ``<folder>/.hepgen-parts/`` (atomically, under a name fixed by the partition, so a
task re-run after a worker died overwrites its own part and nothing is duplicated) and the
parts of a file are then merged in entry order into its output (also atomically) by a task
on a worker; in-process the rows stream straight into the outputs.  A folder layout ends with
``manifest.json``: inputs (UUID, entries), outputs, event counts, the seed rule and the
model's hash, written last, so its presence says the production is complete.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal, Protocol

import awkward as ak

from hepgen._version import __version__
from hepgen.errors import InputError
from hepgen.io.reader import read_entries
from hepgen.io.writer import RootWriter
from hepgen.parallel.executor import Executor
from hepgen.parallel.executor import executor as make_executor
from hepgen.parallel.partitions import SEED_BLOCK, Partition, block_seeds, read_partition
from hepgen.utils import write_json

__all__ = [
    "BLOCK_THREAD",
    "LAYOUTS",
    "MANIFEST",
    "PARTS",
    "PartitionJob",
    "block_threads",
    "check_outputs",
    "merge_parts",
    "output_names",
    "produce",
    "run_partition",
]

log = logging.getLogger(__name__)

Layout = Literal["single", "per-file", "per-partition"]
#: The output layouts (see the module docstring).
LAYOUTS: tuple[str, ...] = ("single", "per-file", "per-partition")
#: Name of the manifest in an output folder.
MANIFEST = "manifest.json"
#: Hidden folder of the part files of a Dask run (removed at the end).
PARTS = ".hepgen-parts"
#: Name prefix of the threads that run a partition's seed blocks side by side
#: (:func:`run_partition`); a job starts no further threads inside them.
BLOCK_THREAD = "hepgen-block"


class PartitionJob(Protocol):
    """What :func:`produce` runs on every seed block: generate, score, ...

    A job is pickled to the Dask workers; it should carry its model's directory and load the
    model there (cached per process), not the model itself.
    """

    def process(self, events: ak.Array, where: str, seed: int) -> tuple[ak.Array, dict[str, Any]]:
        """The output rows of one seed block of events and counts to add up (numbers, or
        mappings of name to number)."""
        ...  # pragma: no cover


def _add(total: dict[str, Any], counts: dict[str, Any]) -> None:
    for k, v in counts.items():
        if isinstance(v, dict):
            _add(total.setdefault(k, {}), v)
        else:
            total[k] = total.get(k, 0) + v


def _blocks(
    job: PartitionJob, partition: Partition, seed: int, block: int, threads: int = 1
) -> Iterable[tuple[ak.Array, dict[str, Any]]]:
    """The job's output for each seed block of a partition (one partition read at a time),
    in block order; with ``threads > 1`` the blocks run on that many threads.

    Blocks are seeded independently (:func:`~hepgen.parallel.partitions.block_seeds`), so
    running them side by side gives the same bits.  The model calls release the GIL, and one
    torch intra-op thread per block is the production setting
    (:data:`hepgen.devices.PRODUCTION_THREADS`): the torch thread count is set once here,
    around the pool (setting it is process-wide, not per thread).
    """
    events = read_partition(partition)

    def one(args: tuple[int, int, int]) -> tuple[ak.Array, dict[str, Any]]:
        start, stop, block_seed = args
        part = events[start - partition.start : stop - partition.start]
        where = f"file '{partition.path}', tree '{partition.tree}', entries {start}-{stop - 1}"
        return job.process(part, where, block_seed)

    seeds = list(block_seeds(partition, seed, block))
    threads = min(threads, len(seeds))
    if threads <= 1:
        yield from map(one, seeds)
        return
    from hepgen.devices import torch_threads

    with (
        torch_threads(),
        ThreadPoolExecutor(threads, thread_name_prefix=BLOCK_THREAD) as pool,
    ):
        yield from pool.map(one, seeds)


def _part_path(folder: Path, partition: Partition) -> Path:
    return folder / f"{partition.file_index:05d}.{partition.start:012d}.root"


def run_partition(
    partition: Partition,
    *,
    job: PartitionJob,
    seed: int,
    block: int,
    output: str | None,
    fmt: str,
    threads: int = 1,
    metadata: str | None = None,
) -> dict[str, Any]:
    """One task: the job over one partition, written to ``output`` (atomically) or, with
    ``output=None``, returned as rows.  Idempotent (a re-run writes the same file).
    ``threads``: seed blocks run side by side (:func:`_blocks`); ``metadata``: the JSON text
    written beside the tree (:class:`~hepgen.io.writer.RootWriter`)."""
    counts: dict[str, Any] = {}
    rows = []
    for out, c in _blocks(job, partition, seed, block, threads):
        rows.append(out)
        _add(counts, c)
    result: dict[str, Any] = {"counts": counts, "rows": sum(len(r) for r in rows)}
    if output is None:
        result["events"] = ak.concatenate(rows) if len(rows) > 1 else rows[0]
        return result
    with RootWriter(output, tree=partition.tree, fmt=fmt, metadata=metadata) as writer:  # type: ignore[arg-type]
        for r in rows:
            writer.extend(r)
    return result


def merge_parts(
    parts: list[str], output: str, tree: str, fmt: str, metadata: str | None = None
) -> int:
    """Concatenate part files (in order) into ``output``, atomically, one part in memory at a
    time; the parts are removed afterwards.  Returns the rows written."""
    with RootWriter(output, tree=tree, fmt=fmt, metadata=metadata) as writer:  # type: ignore[arg-type]
        for part in parts:
            n = _entries(part, tree)
            if n:
                writer.extend(read_entries(part, tree, 0, n))
        rows = writer.n_written
    for part in parts:
        Path(part).unlink(missing_ok=True)
    return rows


def _entries(path: str, tree: str) -> int:
    import uproot

    with uproot.open(path) as f:
        return int(f[tree].num_entries)


def output_names(plan: list[Partition], folder: Path, layout: str) -> dict[Any, Path]:
    """The output file of every input file (``"per-file"``: key ``file_index``) or partition
    (``"per-partition"``: key ``(file_index, start)``).

    Raises
    ------
    InputError
        Two input files of the same name (their outputs would collide).
    """
    names: dict[Any, Path] = {}
    if layout == "per-file":
        by_name: dict[str, str] = {}
        for p in plan:
            name = Path(p.path.rstrip("/")).name
            if name in by_name and by_name[name] != p.path:
                raise InputError(
                    f"inputs '{by_name[name]}' and '{p.path}' have the same file name, so "
                    f"their outputs would collide in '{folder}'; use --output-layout "
                    "per-partition or rename one"
                )
            by_name[name] = p.path
            names[p.file_index] = folder / name
        return names
    for p in plan:
        stem = Path(p.path.rstrip("/")).stem
        names[(p.file_index, p.start)] = folder / f"{stem}.{p.start}.root"
    return names


def check_outputs(
    plan: list[Partition], output: str | os.PathLike, layout: str, inputs: Iterable[Any]
) -> list[Path]:
    """Check, before any work, every output file of a production: a local path that is not
    an input, in a folder that can be written; returns them.

    Raises
    ------
    InputError
        Naming the output and what was expected.
    """
    from hepgen.io.writer import check_local_output
    from hepgen.outputs import check_output_dir, check_output_file

    if layout not in LAYOUTS:
        raise InputError(f"output layout must be one of {list(LAYOUTS)}, got {layout!r}")
    out = check_local_output(output)
    inputs = [i for i in inputs if "://" not in os.fspath(i)]
    if layout == "single":
        return [check_output_file(out, inputs=inputs, overwrite=True)]
    check_output_dir(out, inputs=inputs, what="output folder")
    return [
        check_output_file(path, inputs=inputs, overwrite=True)
        for path in output_names(plan, out, layout).values()
    ]


def produce(
    job: PartitionJob,
    plan: list[Partition],
    output: str | os.PathLike,
    *,
    executor: Executor | None = None,
    workers: int | None = None,
    scheduler: Any = None,
    layout: Layout = "single",
    seed: int = 0,
    block: int = SEED_BLOCK,
    fmt: str = "ttree",
    quiet: bool = False,
    desc: str = "",
    manifest: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run ``job`` over every partition of ``plan`` and write the outputs.

    Parameters
    ----------
    job : PartitionJob
    plan : list of Partition
        From :func:`~hepgen.parallel.partitions.plan_partitions` with the same ``block``.
    output : path
        The ROOT file (``layout="single"``) or the output folder.
    executor : Executor or None
        Where the partitions run; ``None``: one made from ``workers`` and ``scheduler`` for
        this call (:func:`~hepgen.parallel.executor.executor`).
    workers, scheduler
        As :func:`~hepgen.parallel.executor.executor`, when ``executor`` is ``None``.
    layout : {"single", "per-file", "per-partition"}
    seed, block : int
        The job's seed and seed block (see :mod:`hepgen.parallel.partitions`).
    fmt : {"ttree", "rntuple"}
        Output format.
    quiet : bool
        No progress bar.
    desc : str
        Progress bar label.
    manifest : dict or None
        Extra manifest entries (the command, the model and its hash, settings).

    Returns
    -------
    dict
        The manifest: ``inputs`` (path, UUID, entries, output), ``outputs`` (path, rows),
        ``counts`` (the job's summed counts), ``seed``, ``seed_block``, ``seed_rule``,
        ``executor``, ``seconds``; written to ``<folder>/manifest.json`` for folder layouts.
    """
    if layout not in LAYOUTS:
        raise InputError(f"output layout must be one of {list(LAYOUTS)}, got {layout!r}")
    if not plan:
        raise InputError("no entries to process: every input tree is empty")
    if executor is None:
        with make_executor(workers, scheduler, quiet=quiet) as ex:
            return produce(
                job,
                plan,
                output,
                executor=ex,
                layout=layout,
                seed=seed,
                block=block,
                fmt=fmt,
                quiet=quiet,
                desc=desc,
                manifest=manifest,
            )
    start_time = time.perf_counter()
    out = Path(output)
    threads = block_threads(job) if executor.in_process else 1
    metadata = json.dumps(
        {**(manifest or {}), "seed": seed, "seed_block": block, "hepgen_version": __version__},
        sort_keys=True,
        default=str,
    )
    task = functools.partial(
        run_partition,
        job=job,
        seed=seed,
        block=block,
        fmt=fmt,
        threads=threads,
        metadata=metadata,
    )
    sizes = [p.entries for p in plan]
    counts: dict[str, Any] = {}
    key = f"hepgen-{desc or 'job'}"
    run = functools.partial(executor.map, sizes=sizes, desc=desc, quiet=quiet, key=key)
    if layout == "single" or (layout == "per-file" and executor.in_process):
        outputs = _stream(task, plan, out, layout, fmt, run, counts, metadata)
    else:
        outputs = _by_parts(task, plan, out, layout, fmt, run, executor, counts, metadata)
    result = _manifest(plan, outputs, out, layout, counts, seed, block, executor, manifest)
    result["seconds"] = time.perf_counter() - start_time
    if layout != "single":  # counts named "_..." are the job's own, not the manifest's
        public = {k: v for k, v in result["counts"].items() if not k.startswith("_")}
        write_json(out / MANIFEST, {**result, "counts": public})
    return result


def block_threads(job: PartitionJob) -> int:
    """Threads for the seed blocks of an in-process run: one per usable CPU, at most the
    job's ``max_threads`` (a job that is not safe on threads says 1).  A Dask worker runs
    one thread (its cluster has one process per core)."""
    from hepgen.devices import usable_cpus

    limit = getattr(job, "max_threads", None)
    return max(1, min(usable_cpus(), limit if limit is not None else usable_cpus()))


def _stream(
    task: Callable[..., dict[str, Any]],
    plan: list[Partition],
    out: Path,
    layout: str,
    fmt: str,
    run: Callable[..., Any],
    counts: dict[str, Any],
    metadata: str | None = None,
) -> dict[Any, tuple[Path, int]]:
    """The rows of every partition (in plan order) streamed into one writer per output."""
    targets = (
        {p.file_index: out for p in plan} if layout == "single" else output_names(plan, out, layout)
    )
    results: dict[int, dict[str, Any]] = {}
    written: dict[Any, tuple[Path, int]] = {}
    order = iter(range(len(plan)))
    pending = next(order, None)
    writer: RootWriter | None = None
    current: Path | None = None
    try:
        for i, r in run(functools.partial(task, output=None), plan):
            results[i] = r
            while pending is not None and pending in results:  # write in plan order
                p, r = plan[pending], results.pop(pending)
                target = targets[p.file_index]
                if target != current:
                    if writer is not None:
                        writer.__exit__(None, None, None)
                        written[current] = (current, writer.n_written)
                    writer = RootWriter(target, tree=p.tree, fmt=fmt, metadata=metadata)  # type: ignore[arg-type]
                    writer.__enter__()
                    current = target
                writer.extend(r["events"])
                _add(counts, r["counts"])
                pending = next(order, None)
    except BaseException as err:
        if writer is not None:
            writer.__exit__(type(err), err, err.__traceback__)
        raise
    if writer is not None:
        writer.__exit__(None, None, None)
        written[current] = (current, writer.n_written)
    return {p.file_index: written[targets[p.file_index]] for p in plan}


def _by_parts(
    task: Callable[..., dict[str, Any]],
    plan: list[Partition],
    out: Path,
    layout: str,
    fmt: str,
    run: Callable[..., Any],
    executor: Executor,
    counts: dict[str, Any],
    metadata: str | None = None,
) -> dict[Any, tuple[Path, int]]:
    """Every partition written to its own file by its task; with ``"per-file"``, the parts of
    each input merged into its output (a task per file)."""
    out.mkdir(parents=True, exist_ok=True)
    if layout == "per-partition":
        names = output_names(plan, out, layout)
        paths = [names[(p.file_index, p.start)] for p in plan]
    else:
        parts = out / PARTS
        parts.mkdir(exist_ok=True)
        paths = [_part_path(parts, p) for p in plan]
    rows: dict[int, int] = {}
    items = [(p, os.fspath(path)) for p, path in zip(plan, paths, strict=True)]
    for i, r in run(_PartTask(task), items):
        rows[i] = r["rows"]
        _add(counts, r["counts"])
    if layout == "per-partition":
        return {(p.file_index, p.start): (paths[i], rows[i]) for i, p in enumerate(plan)}
    names = output_names(plan, out, layout)
    groups: dict[int, list[str]] = {}
    for i, p in enumerate(plan):
        groups.setdefault(p.file_index, []).append(os.fspath(paths[i]))
    files = sorted(groups)
    merge = _MergeTask(groups, {k: os.fspath(names[k]) for k in files}, plan[0].tree, fmt, metadata)
    merged = executor.map(merge, files, quiet=True, key=f"{run.keywords['key']}-merge")
    written = {files[i]: (names[files[i]], n) for i, n in merged}
    shutil.rmtree(out / PARTS, ignore_errors=True)
    return {k: written[k] for k in files}  # in input order


class _PartTask:
    """Picklable: one partition of the plan written to its part file (an item is
    ``(partition, path)``)."""

    def __init__(self, task: Callable[..., dict[str, Any]]) -> None:
        self.task = task

    def __call__(self, item: tuple[Partition, str]) -> dict[str, Any]:
        partition, path = item
        return self.task(partition, output=path)


class _MergeTask:
    """Picklable: the parts of input file ``k`` merged into its output."""

    def __init__(
        self,
        groups: dict[int, list[str]],
        outputs: dict[int, str],
        tree: str,
        fmt: str,
        metadata: str | None = None,
    ):
        self.groups, self.outputs, self.tree, self.fmt = groups, outputs, tree, fmt
        self.metadata = metadata

    def __call__(self, k: int) -> int:
        return merge_parts(self.groups[k], self.outputs[k], self.tree, self.fmt, self.metadata)


def _manifest(
    plan: list[Partition],
    outputs: dict[Any, tuple[Path, int]],
    out: Path,
    layout: str,
    counts: dict[str, Any],
    seed: int,
    block: int,
    executor: Executor,
    extra: dict[str, Any] | None,
) -> dict[str, Any]:
    inputs: dict[int, dict[str, Any]] = {}
    for p in plan:
        rec = inputs.setdefault(
            p.file_index,
            {"path": p.path, "tree": p.tree, "uuid": p.uuid, "entries": 0, "partitions": 0},
        )
        rec["entries"] += p.entries
        rec["partitions"] += 1
        if layout == "per-file":
            rec["output"] = os.fspath(outputs[p.file_index][0])
    listed = list(dict.fromkeys((os.fspath(path), n) for path, n in outputs.values()))
    return {
        **(extra or {}),
        "layout": layout,
        "output": os.fspath(out),
        "inputs": [inputs[k] for k in sorted(inputs)],
        "outputs": [{"path": path, "rows": n} for path, n in listed],
        "events": sum(p.entries for p in plan),
        "partitions": len(plan),
        "counts": counts,
        "seed": seed,
        "seed_block": block,
        "seed_rule": (
            "entries [b*seed_block, (b+1)*seed_block) of a file are generated with the seed "
            "SeedSequence([seed, 0, *uuid_words, b]) (uuid_words: the file's ROOT UUID as "
            "four 32-bit words, least significant first)"
        ),
        "executor": executor.describe(),
    }
