"""Read TTree branches into awkward arrays, in bounded-memory chunks, with errors that name things.

Every problem with an input is reported as :class:`hepgen.errors.InputError` naming the file,
the tree and the branch, and saying what was expected: a missing file or glob that matches
nothing, a file that is not ROOT, a truncated or corrupt file (caught wherever uproot reads,
chunks included: the entry range is named), an RNTuple where a TTree is expected, a missing
tree (the trees and other objects that exist are listed), a missing
branch (close names are suggested), a branch that is not numeric, an empty tree, and NaN or
infinite values (counted per branch; ``nonfinite="drop"`` drops the affected events with a
warning instead).

Events are returned as an :class:`awkward.Array` of records whose fields are the branch
names, scalars (``run``) or jagged lists (``Jet_pt``); see :mod:`hepgen.io.collections` for
turning collections into per-object rows.
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import logging
import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import awkward as ak
import numpy as np
import uproot

from hepgen.errors import InputError, did_you_mean

__all__ = [
    "ENTRY_START_ATTR",
    "SOURCE_ATTR",
    "NonFinitePolicy",
    "TreeInfo",
    "count_entries",
    "expand_names",
    "inspect_tree",
    "iterate_events",
    "open_tree",
    "read_events",
    "resolve_files",
    "select_branches",
]

log = logging.getLogger(__name__)

NonFinitePolicy = Literal["error", "drop", "keep"]

#: Keys of the (transient) ``attrs`` of the chunks read: the file and tree they come from, and
#: ``(first entry, number of events)`` of the chunk, so that a later check (e.g.
#: :func:`hepgen.io.collections.flatten_collection`) can name the file and the entry.
SOURCE_ATTR = "@hepgen_source"
ENTRY_START_ATTR = "@hepgen_entry_start"

PathLike = str | os.PathLike
Files = PathLike | Sequence[PathLike]


def resolve_files(files: Files) -> list[Path]:
    """Expand paths and glob patterns into an ordered list of existing files.

    Parameters
    ----------
    files : path-like or sequence of path-like
        Files or glob patterns (``"data/*.root"``); a pattern's matches are sorted.

    Returns
    -------
    list of Path

    Raises
    ------
    InputError
        If a file does not exist, a pattern matches nothing, or no file is given.
    """
    if isinstance(files, str | os.PathLike):
        files = [files]
    out: list[Path] = []
    for item in files:
        text = os.fspath(item)
        if glob.has_magic(text):
            matches = sorted(glob.glob(text))
            if not matches:
                raise InputError(f"no file matches the pattern '{text}'")
            out.extend(Path(m) for m in matches)
        else:
            path = Path(text)
            if not path.exists():
                raise InputError(f"file '{text}' does not exist")
            if path.is_dir():
                raise InputError(f"'{text}' is a directory, expected a ROOT file")
            out.append(path)
    if not out:
        raise InputError("no input file given")
    return out


#: What uproot (and the decompressors under it) raise for a truncated, corrupt or non-ROOT
#: file.  Only calls into uproot are wrapped, so programming errors elsewhere still show a
#: traceback.  ``RuntimeError`` covers lz4/zstd decompression errors.
_READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    EOFError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    RuntimeError,
    struct.error,
    zlib.error,
    uproot.deserialization.DeserializationError,
)

_RNTUPLE_CLASSES = ("ROOT::RNTuple", "ROOT::Experimental::RNTuple")


def _one_line(text: object) -> str:
    """``text`` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(str(text).split())


def _uproot_reason(err: BaseException) -> str:
    """uproot's message on one line, without the file path it appends (already named)."""
    return _one_line(err).split(" for file path ")[0].split(" in file ")[0]


@contextlib.contextmanager
def _reading(where: str) -> Iterator[None]:
    """Turn uproot's errors for unreadable content into :class:`InputError` naming ``where``."""
    try:
        yield
    except InputError:
        raise
    except _READ_ERRORS as err:
        raise InputError(
            f"{where}: cannot be read, the file is truncated or corrupt "
            f"({type(err).__name__}: {_uproot_reason(err)})"
        ) from err


def open_tree(path: PathLike, tree: str = "Events") -> uproot.TTree:
    """Open one TTree of one file.

    Parameters
    ----------
    path : path-like
        A ROOT file.
    tree : str
        The TTree's name (a path like ``"dir/Events"`` works too).

    Raises
    ------
    InputError
        If the file is missing or not a ROOT file, or holds no TTree of that name.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"file '{path}' does not exist")
    if path.is_dir():
        raise InputError(f"'{path}' is a directory, expected a ROOT file")
    try:
        with open(path, "rb") as stream:
            magic = stream.read(4)
    except OSError as err:
        raise InputError(f"file '{path}' cannot be opened: {_one_line(err)}") from None
    if magic != b"root":
        raise InputError(
            f"file '{path}' is not a ROOT file (it does not start with the ROOT signature "
            "'root'); expected a ROOT file with a TTree"
        )
    try:
        handle = uproot.open(path)
    except _READ_ERRORS as err:  # uproot raises several types for non-ROOT content
        raise InputError(
            f"file '{path}' is not a readable ROOT file, it may be truncated "
            f"({type(err).__name__}: {_uproot_reason(err)})"
        ) from None
    with _reading(f"file '{path}'"):
        classes = {k.split(";")[0]: c for k, c in handle.classnames().items()}
    trees = [k for k, c in classes.items() if c in ("TTree", "TNtuple", "TNtupleD")]
    if tree not in trees:
        rntuples = [k for k, c in classes.items() if c in _RNTUPLE_CLASSES]
        if tree in rntuples:
            raise InputError(
                f"file '{path}': '{tree}' is an RNTuple, which hepgen cannot read yet; "
                "expected a TTree (write the events as a TTree)"
            )
        found = ", ".join(repr(t) for t in trees) or "none"
        others = [f"'{k}' ({c})" for k, c in classes.items() if k not in trees]
        other_text = f"; other objects: {', '.join(others[:10])}" if others else ""
        if len(others) > 10:
            other_text += f" and {len(others) - 10} more"
        raise InputError(
            f"file '{path}' has no tree '{tree}'{did_you_mean(tree, trees)}; trees in the file: "
            f"{found}{other_text}"
        )
    with _reading(f"file '{path}', tree '{tree}'"):
        return handle[tree]


def _numeric(branch: uproot.TBranch) -> bool:
    try:
        interp = branch.interpretation
    except Exception:
        return False
    if isinstance(interp, uproot.interpretation.jagged.AsJagged):
        interp = interp.content
    return isinstance(interp, uproot.AsDtype) and np.dtype(interp.to_dtype).kind in "biuf"


def select_branches(
    tree: uproot.TTree, branches: Sequence[str] | None, path: PathLike = ""
) -> list[str]:
    """Expand branch names and glob patterns against a tree and check that each is numeric.

    Parameters
    ----------
    tree : uproot.TTree
    branches : sequence of str or None
        Names or patterns (``"Jet_*"``); ``None`` selects every numeric branch.
    path : path-like
        The file, for messages.

    Returns
    -------
    list of str
        Branch names in the tree's order.

    Raises
    ------
    InputError
        A name that does not exist (close names suggested), a pattern that matches nothing,
        or a branch that is not numeric.
    """
    keys = [k for k in tree.keys(recursive=False)]
    where = f"file '{path}', tree '{tree.name}'"
    if branches is None:
        return [k for k in keys if _numeric(tree[k])]
    selected = expand_names(branches, keys, where)
    for match in selected:
        if not _numeric(tree[match]):
            raise InputError(
                f"{where}: branch '{match}' has type '{tree[match].typename}'; expected a "
                "number or a list of numbers"
            )
    order = {k: i for i, k in enumerate(keys)}
    return sorted(selected, key=order.__getitem__)


def expand_names(
    patterns: Sequence[str], names: Sequence[str], where: str, what: str = "branch"
) -> list[str]:
    """Expand names and glob patterns (``"Jet_*"``) against the available ``names``.

    Parameters
    ----------
    patterns : sequence of str
        Exact names or glob patterns.
    names : sequence of str
        What exists.
    where : str
        Prefix of error messages (the file and tree).
    what : str
        What a name is, for messages (``"branch"``, ``"numeric branch"``).

    Returns
    -------
    list of str
        Matches in the order of ``patterns`` (a pattern's matches in the order of ``names``),
        without duplicates.

    Raises
    ------
    InputError
        A name that does not exist (close names suggested) or a pattern that matches nothing.
    """
    selected: list[str] = []
    for name in patterns:
        if glob.has_magic(name):
            matches = [k for k in names if fnmatch.fnmatchcase(k, name)]
            if not matches:
                raise InputError(f"{where}: no {what} matches the pattern '{name}'")
        else:
            if name not in names:
                raise InputError(f"{where}: no {what} '{name}'{did_you_mean(name, names)}")
            matches = [name]
        selected.extend(m for m in matches if m not in selected)
    return selected


def _nonfinite(events: ak.Array, policy: NonFinitePolicy, where: str) -> tuple[ak.Array, int]:
    """Apply the NaN/inf policy to one chunk; return the kept events and the number dropped."""
    if policy == "keep" or len(events) == 0:
        return events, 0
    bad_event = np.zeros(len(events), dtype=bool)
    report: list[str] = []
    for name in events.fields:
        column = events[name]
        if ak.ravel(column).layout.dtype.kind != "f":
            continue
        finite = np.isfinite(column)
        if column.ndim > 1:
            n_nan = int(ak.sum(np.isnan(column)))
            n_bad = int(ak.sum(~finite))
            bad = np.asarray(ak.any(~finite, axis=1))
        else:
            n_nan = int(np.sum(np.isnan(column)))
            n_bad = int(np.sum(~np.asarray(finite)))
            bad = ~np.asarray(finite)
        if n_bad:
            report.append(f"'{name}': {n_nan} NaN, {n_bad - n_nan} inf")
            bad_event |= bad
    n_dropped = int(bad_event.sum())
    if not n_dropped:
        return events, 0
    if policy == "error":
        raise InputError(
            f"{where}: non-finite values in {n_dropped} events ({'; '.join(report)}); "
            "fix the input or drop those events (--drop-nonfinite / nonfinite: drop)"
        )
    return events[~bad_event], n_dropped


@dataclass(frozen=True)
class TreeInfo:
    """What a tree holds: entries and branch names, for summaries and checks."""

    path: Path
    tree: str
    num_entries: int
    branches: tuple[str, ...]
    collections: dict[str, tuple[str, ...]]


def inspect_tree(path: PathLike, tree: str = "Events") -> TreeInfo:
    """Describe a tree: number of entries, numeric branches, and jagged collections.

    Returns
    -------
    TreeInfo
        ``collections`` maps a counter-sharing collection (``"Jet"``) to its branches.
    """
    t = open_tree(path, tree)
    branches = select_branches(t, None, path)
    collections: dict[str, list[str]] = {}
    with _reading(f"file '{path}', tree '{tree}'"):
        for name in branches:
            count = t[name].count_branch
            if count is not None:
                key = count.name[1:] if count.name.startswith("n") else count.name
                collections.setdefault(key, []).append(name)
    return TreeInfo(
        path=Path(path),
        tree=tree,
        num_entries=int(t.num_entries),
        branches=tuple(branches),
        collections={k: tuple(v) for k, v in collections.items()},
    )


def count_entries(files: Files, tree: str = "Events") -> int:
    """Total number of entries of ``tree`` over all files (reads only metadata)."""
    return sum(int(open_tree(p, tree).num_entries) for p in resolve_files(files))


def iterate_events(
    files: Files,
    branches: Sequence[str] | None = None,
    tree: str = "Events",
    step_size: int = 100_000,
    nonfinite: NonFinitePolicy = "error",
    entry_stop: int | None = None,
    allow_empty: bool = False,
) -> Iterator[ak.Array]:
    """Iterate over events of one or several files in chunks of bounded size.

    Parameters
    ----------
    files : path-like or sequence of path-like
        Files or glob patterns, read in order.
    branches : sequence of str or None
        Branch names or patterns; ``None`` reads every numeric branch. Every file must have
        every selected branch.
    tree : str
        TTree name.
    step_size : int
        Events per chunk (peak memory grows with it, not with the file size).
    nonfinite : {"error", "drop", "keep"}
        What to do with NaN/inf in floating-point branches: raise with counts, drop the
        affected events (logged as a warning with counts), or keep them.
    entry_stop : int or None
        Stop after this many events in total.
    allow_empty : bool
        When false (default) a tree with zero entries is an error.

    Yields
    ------
    ak.Array
        At most ``step_size`` events per chunk; records with the branch names as fields.
    """
    if step_size < 1:
        raise InputError(f"step_size must be a positive number of events, got {step_size}")
    paths = resolve_files(files)
    remaining = entry_stop
    dropped_total = 0
    for path in paths:
        t = open_tree(path, tree)
        if t.num_entries == 0 and not allow_empty:
            raise InputError(f"file '{path}', tree '{tree}' has no entries")
        names = select_branches(t, branches, path)
        stop = t.num_entries if remaining is None else min(t.num_entries, remaining)
        where = f"file '{path}', tree '{tree}'"
        with _reading(where):
            chunks = t.iterate(names, step_size=step_size, entry_stop=stop, library="ak")
        start = 0
        while True:
            # only uproot's reading is wrapped: errors of the caller's code stay tracebacks
            with _reading(f"{where}, entries {start}-{min(start + step_size, stop) - 1}"):
                chunk = next(chunks, None)
            if chunk is None:
                break
            # where the events come from, for messages of later steps (transient attrs,
            # never written; see hepgen.io.collections.flatten_collection)
            chunk = ak.Array(
                chunk, attrs={SOURCE_ATTR: where, ENTRY_START_ATTR: (start, len(chunk))}
            )
            start += len(chunk)
            chunk, dropped = _nonfinite(chunk, nonfinite, where)
            dropped_total += dropped
            yield chunk
        if remaining is not None:
            remaining -= stop
            if remaining <= 0:
                break
    if dropped_total:
        log.warning("dropped %d events with NaN or infinite values", dropped_total)


def read_events(
    files: Files,
    branches: Sequence[str] | None = None,
    tree: str = "Events",
    nonfinite: NonFinitePolicy = "error",
    entry_stop: int | None = None,
    step_size: int = 100_000,
) -> ak.Array:
    """Read events of one or several files into memory at once.

    Same arguments as :func:`iterate_events`; use that for files larger than memory.

    Returns
    -------
    ak.Array
        All events, records with the branch names as fields.
    """
    chunks = list(
        iterate_events(
            files, branches, tree, step_size=step_size, nonfinite=nonfinite, entry_stop=entry_stop
        )
    )
    if len(chunks) == 1:
        return chunks[0]
    return ak.concatenate(chunks)
