"""Partitions of many ROOT files, and seeds that do not depend on how the work is split.

A data-parallel job (``hepgen generate``, ``score``, ``validate`` over many files) is a list
of :class:`Partition` s: entry ranges ``[start, stop)`` of one file, ``step_size`` entries
each.  A worker reads one partition (:func:`read_partition`) and never more.

Reproducibility that does not depend on the cluster: random numbers are seeded by *file and
entry range*, never by task order.  A file is known by the UUID that ROOT writes into every
file's header (the same for a local copy and its ``root://`` URL, different for two files of
one name in different folders).  Its entries are cut into fixed **seed blocks** of
:data:`SEED_BLOCK` entries; block ``b`` of a file is seeded by
``SeedSequence([seed, salt, *uuid, b])`` (:func:`block_seeds`), and a job processes a
partition block by block.  Partitions start at multiples of the block (the step size is
rounded up to one), so a block is processed with the same events and the same seed whether
the run was one process, 2 workers or 8, with steps of one block or of ten: the outputs are
bit-identical.
"""

from __future__ import annotations

import logging
import uuid as _uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np

from hepgen.errors import InputError
from hepgen.io.reader import open_tree, read_entries
from hepgen.io.sources import Files, open_file, resolve_files

__all__ = [
    "SEED_BLOCK",
    "Partition",
    "block_seeds",
    "check_block",
    "file_uuid",
    "plan_partitions",
    "read_partition",
    "row_uniforms",
]

log = logging.getLogger(__name__)

#: Entries per seed block (see the module docstring): partitions start at its multiples.
SEED_BLOCK = 10_000


@dataclass(frozen=True)
class Partition:
    """The entries ``[start, stop)`` of one file's tree: one task of a data-parallel job.

    Attributes
    ----------
    path : str
        The file as given (local path or URL).
    tree : str
        TTree or RNTuple name.
    start, stop : int
        First entry and one past the last.
    file_index : int
        Position of the file among the job's inputs.
    uuid : str
        The file's ROOT UUID (hex): its identity for seeding.
    """

    path: str
    tree: str
    start: int
    stop: int
    file_index: int
    uuid: str

    @property
    def entries(self) -> int:
        """Number of entries."""
        return self.stop - self.start

    @property
    def where(self) -> str:
        """``file '...', tree '...', entries a-b``, for messages."""
        return f"file '{self.path}', tree '{self.tree}', entries {self.start}-{self.stop - 1}"


def check_block(block: Any) -> int:
    """A seed block size: a positive integer (entries)."""
    if isinstance(block, bool) or not isinstance(block, int | np.integer) or block < 1:
        raise InputError(f"the seed block must be a positive number of entries, got {block!r}")
    return int(block)


def file_uuid(path: Any) -> str:
    """The UUID in a ROOT file's header (hex), read without reading any tree."""
    source, handle = open_file(path)
    value = getattr(getattr(handle, "file", None), "uuid", None)
    if not isinstance(value, _uuid.UUID):  # pragma: no cover - every ROOT file has one
        raise InputError(f"file '{source}': no UUID in the ROOT header")
    return value.hex


def plan_partitions(
    files: Files, tree: str, step_size: int, block: int = SEED_BLOCK
) -> list[Partition]:
    """Cut every file into partitions of ``step_size`` entries (rounded up to a multiple of
    ``block``), in file order.

    Parameters
    ----------
    files : path, glob, ``@list.txt`` or a sequence of them
        The inputs (:func:`hepgen.io.reader.resolve_files`).
    tree : str
        TTree or RNTuple name (every file must have it).
    step_size : int
        Entries per partition (a worker holds one partition at a time).
    block : int
        Seed block (entries); the step is rounded up to a multiple of it.

    Returns
    -------
    list of Partition
        Empty files give no partition.

    Raises
    ------
    InputError
        A missing file or tree, a bad step size.

    Examples
    --------
    >>> import os, tempfile, awkward as ak
    >>> from hepgen.io.writer import write_events
    >>> path = os.path.join(tempfile.mkdtemp(), "a.root")
    >>> _ = write_events(path, ak.Array({"x": list(range(25))}))
    >>> [(p.start, p.stop) for p in plan_partitions(path, "Events", step_size=8, block=5)]
    [(0, 10), (10, 20), (20, 25)]
    """
    block = check_block(block)
    if isinstance(step_size, bool) or not isinstance(step_size, int | np.integer) or step_size < 1:
        raise InputError(f"the step size must be a positive number of entries, got {step_size!r}")
    step = -(-int(step_size) // block) * block
    plan: list[Partition] = []
    seen: dict[str, str] = {}
    for index, path in enumerate(resolve_files(files)):
        t = open_tree(path, tree)  # one open per file: entries and UUID from the same handle
        n, uid = int(t.num_entries), t.file.uuid.hex
        if uid in seen:
            log.warning(
                "files '%s' and '%s' have the same ROOT UUID (copies of one file?): their "
                "events get the same random numbers",
                seen[uid],
                path,
            )
        seen[uid] = str(path)
        plan.extend(
            Partition(str(path), tree, start, min(start + step, n), index, uid)
            for start in range(0, n, step)
        )
    return plan


def read_partition(
    partition: Partition, branches: Sequence[str] | None = None, nonfinite: str = "keep"
) -> ak.Array:
    """The events of one partition (:func:`hepgen.io.reader.read_entries`).

    Parameters
    ----------
    partition : Partition
    branches : sequence of str or None
        Branch names or patterns; ``None``: every numeric branch.
    nonfinite : {"keep", "error", "drop"}
        What to do with NaN/inf (default: pass them through).

    Returns
    -------
    ak.Array
        ``partition.entries`` records.
    """
    p = partition
    return read_entries(p.path, p.tree, p.start, p.stop, branches, nonfinite)  # type: ignore[arg-type]


def _uuid_words(uid: str) -> list[int]:
    value = int(uid, 16)
    return [(value >> (32 * i)) & 0xFFFFFFFF for i in range(4)]


def _block_sequence(uid: str, seed: int, salt: int, index: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed), int(salt), *_uuid_words(uid), int(index)])


def block_seeds(
    partition: Partition, seed: int, block: int = SEED_BLOCK, salt: int = 0
) -> list[tuple[int, int, int]]:
    """The seed blocks that cover a partition, each with its seed.

    Parameters
    ----------
    partition : Partition
        Must start at a multiple of ``block`` (as :func:`plan_partitions` makes them).
    seed : int
        The job's seed.
    block : int
        Seed block (entries).
    salt : int
        Separates the streams of different uses of one seed (e.g. generation and subsampling).

    Returns
    -------
    list of (start, stop, block_seed)
        Entry ranges of the file (``start`` a multiple of ``block``) and a seed in
        ``[0, 2**63)`` that depends on ``(seed, salt, file UUID, start // block)`` only.

    Examples
    --------
    >>> p = Partition("a.root", "Events", 10, 25, 0, "0" * 31 + "1")
    >>> [(a, b) for a, b, _ in block_seeds(p, seed=1, block=10)]
    [(10, 20), (20, 25)]
    >>> whole = Partition("a.root", "Events", 0, 25, 0, "0" * 31 + "1")
    >>> block_seeds(whole, seed=1, block=10)[1:] == block_seeds(p, seed=1, block=10)
    True
    """
    block = check_block(block)
    if partition.start % block:
        raise InputError(
            f"{partition.where}: a partition must start at a multiple of the seed block "
            f"({block} entries)"
        )
    out = []
    for start in range(partition.start, partition.stop, block):
        words = _block_sequence(partition.uuid, seed, salt, start // block).generate_state(2)
        value = (int(words[0]) << 32 | int(words[1])) & (2**63 - 1)
        out.append((start, min(start + block, partition.stop), value))
    return out


def row_uniforms(
    partition: Partition, seed: int, block: int = SEED_BLOCK, salt: int = 0
) -> np.ndarray:
    """One uniform number per entry of a partition, a function of (seed, salt, file, entry).

    For seeded subsamples that do not depend on the partitioning: keep the rows with
    ``u < fraction``.

    Returns
    -------
    numpy.ndarray
        Shape ``(partition.entries,)``, float64 in ``[0, 1)``.

    Examples
    --------
    >>> whole = Partition("a.root", "Events", 0, 30, 0, "ab" * 16)
    >>> tail = Partition("a.root", "Events", 10, 30, 0, "ab" * 16)
    >>> bool((row_uniforms(whole, 3, block=10)[10:] == row_uniforms(tail, 3, block=10)).all())
    True
    """
    parts = [
        np.random.default_rng(s).random(stop - start)
        for start, stop, s in block_seeds(partition, seed, block, salt)
    ]
    return np.concatenate(parts) if parts else np.zeros(0)
