"""Read TTree branches and RNTuple fields into awkward arrays, in bounded-memory chunks.

Inputs are local paths, glob patterns or URLs (``root://``, ``http(s)://``; see
:mod:`hepgen.io.sources`); a tree is a TTree or an RNTuple, whose fields are read as TTree
branches (:mod:`hepgen.io.rntuple`).  Events come back as an :class:`awkward.Array` of records
named by branch (:mod:`hepgen.io.collections` turns collections into per-object rows).  Every
problem with an input (a missing file, a corrupt chunk, a missing branch, NaN values unless
``nonfinite="drop"``) is an :class:`~hepgen.errors.InputError` naming the file, the tree and
the branch.  The supported inputs, the list of errors and the handling of NanoAOD counters are
in ``docs/data.md``, section "Reading ROOT files".
"""

from __future__ import annotations

import contextlib
import fnmatch
import glob
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import awkward as ak
import numpy as np
import uproot

from hepgen.errors import InputError, did_you_mean
from hepgen.io.rntuple import RNTupleBranches, raise_unreadable_field, rntuple_branches
from hepgen.io.sources import (
    READ_ERRORS,
    REMOTE_SCHEMES,
    Files,
    PathLike,
    Source,
    as_source,
    is_url,
    open_file,
    resolve_files,
    uproot_reason,
)

__all__ = [
    "ENTRY_START_ATTR",
    "REMOTE_SCHEMES",
    "SOURCE_ATTR",
    "NonFinitePolicy",
    "Source",
    "TreeInfo",
    "count_entries",
    "expand_names",
    "inspect_tree",
    "is_rntuple",
    "is_url",
    "iterate_chunks",
    "iterate_events",
    "open_tree",
    "read_entries",
    "read_events",
    "resolve_files",
    "select_branches",
    "tree_format",
]

log = logging.getLogger(__name__)

NonFinitePolicy = Literal["error", "drop", "keep"]

#: Keys of the (transient) ``attrs`` of the chunks read: the file and tree they come from, and
#: ``(first entry, number of events)`` of the chunk, so that a later check (e.g.
#: :func:`hepgen.io.collections.flatten_collection`) can name the file and the entry.
SOURCE_ATTR = "@hepgen_source"
ENTRY_START_ATTR = "@hepgen_entry_start"


_TTREE_CLASSES = ("TTree", "TNtuple", "TNtupleD")
_RNTUPLE_CLASSES = ("ROOT::RNTuple", "ROOT::Experimental::RNTuple")


@contextlib.contextmanager
def _reading(where: str) -> Iterator[None]:
    """Turn uproot's errors for unreadable content into :class:`InputError` naming ``where``."""
    try:
        yield
    except InputError:
        raise
    except READ_ERRORS as err:
        raise InputError(
            f"{where}: cannot be read, the file is truncated or corrupt "
            f"({type(err).__name__}: {uproot_reason(err)})"
        ) from err


def open_tree(path: PathLike, tree: str = "Events") -> Any:
    """Open one TTree or RNTuple of one file.

    Parameters
    ----------
    path : path-like or str
        A ROOT file, or its URL (``root://``, ``http(s)://``, ``file://``).
    tree : str
        The TTree's or RNTuple's name (a path like ``"dir/Events"`` works too).

    Returns
    -------
    uproot.TTree or uproot.models.RNTuple.Model_ROOT_3a3a_RNTuple
        Use :func:`is_rntuple` to tell them apart; :func:`select_branches`,
        :func:`inspect_tree` and :func:`iterate_events` take both.

    Raises
    ------
    InputError
        If the file is missing, unreachable or not a ROOT file, or holds no TTree or RNTuple
        of that name.
    """
    source, handle = open_file(path)
    with _reading(f"file '{source}'"):
        classes = {k.split(";")[0]: c for k, c in handle.classnames().items()}
    trees = [k for k, c in classes.items() if c in _TTREE_CLASSES + _RNTUPLE_CLASSES]
    if tree not in trees:
        found = ", ".join(repr(t) for t in trees) or "none"
        others = [f"'{k}' ({c})" for k, c in classes.items() if k not in trees]
        other_text = f"; other objects: {', '.join(others[:10])}" if others else ""
        if len(others) > 10:
            other_text += f" and {len(others) - 10} more"
        raise InputError(
            f"file '{source}' has no tree '{tree}'{did_you_mean(tree, trees)}; trees and "
            f"RNTuples in the file: {found}{other_text}"
        )
    with _reading(f"file '{source}', tree '{tree}'"):
        return handle[tree]


def is_rntuple(tree: Any) -> bool:
    """True if ``tree`` (from :func:`open_tree`) is an RNTuple, false for a TTree."""
    return getattr(tree, "classname", "") in _RNTUPLE_CLASSES


def tree_format(path: PathLike, tree: str = "Events") -> Literal["ttree", "rntuple"]:
    """``"rntuple"`` or ``"ttree"``: the format of ``tree`` in the file ``path``."""
    return "rntuple" if is_rntuple(open_tree(path, tree)) else "ttree"


def _numeric(branch: uproot.TBranch) -> bool:
    try:
        interp = branch.interpretation
    except Exception:
        return False
    if isinstance(interp, uproot.interpretation.jagged.AsJagged):
        interp = interp.content
    return isinstance(interp, uproot.AsDtype) and np.dtype(interp.to_dtype).kind in "biuf"


def select_branches(tree: Any, branches: Sequence[str] | None, path: PathLike = "") -> list[str]:
    """Expand branch names and glob patterns against a tree and check that each is numeric.

    Parameters
    ----------
    tree : uproot.TTree or RNTuple
        From :func:`open_tree`; an RNTuple's top-level fields are its branches.
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
        or a branch that is not numeric (an RNTuple field: its type named, and uproot's
        reason where uproot cannot read the type).
    """
    return _select(tree, branches, path, None)


def _select(
    tree: Any, branches: Sequence[str] | None, path: PathLike, fields: RNTupleBranches | None
) -> list[str]:
    """:func:`select_branches`, with the branches of an RNTuple if already mapped."""
    where = f"file '{path}', tree '{tree.name}'"
    rntuple = is_rntuple(tree)
    if rntuple:
        if fields is None:
            with _reading(where):
                fields = rntuple_branches(tree)
        keys = fields.names
    else:
        keys = [k for k in tree.keys(recursive=False)]

    def numeric(name: str) -> bool:
        return name in fields.branches if rntuple else _numeric(tree[name])

    if branches is None:
        return [k for k in keys if numeric(k)]
    selected = expand_names(branches, keys, where)
    for match in selected:
        if numeric(match):
            continue
        if rntuple:
            raise fields.refuse(where, match)
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
    """What a tree holds: entries and branch names, for summaries and checks.

    ``path`` is a local path or a URL; ``format`` is ``"ttree"`` or ``"rntuple"``.
    """

    path: Source
    tree: str
    num_entries: int
    branches: tuple[str, ...]
    collections: dict[str, tuple[str, ...]]
    format: str = "ttree"


def inspect_tree(path: PathLike, tree: str = "Events") -> TreeInfo:
    """Describe a tree: number of entries, numeric branches, and jagged collections.

    Returns
    -------
    TreeInfo
        ``collections`` maps a collection (``"Jet"``) to its branches: in a TTree the
        branches sharing a counter (``nJet``), in an RNTuple the list fields sharing a
        prefix (``Jet_pt``, ``Jet_eta``; each list field carries its own offsets).
    """
    source = as_source(path) if isinstance(path, str) else Path(path)
    t = open_tree(source, tree)
    with _reading(f"file '{source}', tree '{tree}'"):
        fields = rntuple_branches(t) if is_rntuple(t) else None
    branches = _select(t, None, source, fields)
    collections: dict[str, list[str]] = {}
    with _reading(f"file '{source}', tree '{tree}'"):
        if fields is not None:
            for name in branches:
                if fields.branches[name].shape == "list":
                    collections.setdefault(name.split("_", 1)[0], []).append(name)
        else:
            for name in branches:
                count = t[name].count_branch
                if count is not None:
                    key = count.name[1:] if count.name.startswith("n") else count.name
                    collections.setdefault(key, []).append(name)
    return TreeInfo(
        path=source,
        tree=tree,
        num_entries=int(t.num_entries),
        branches=tuple(branches),
        collections={k: tuple(v) for k, v in collections.items()},
        format="rntuple" if is_rntuple(t) else "ttree",
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
        Name of the TTree or RNTuple (a list may mix both formats).
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
        where = f"file '{path}', tree '{tree}'"
        with _reading(where):
            fields = rntuple_branches(t) if is_rntuple(t) else None
        names = _select(t, branches, path, fields)
        stop = t.num_entries if remaining is None else min(t.num_entries, remaining)
        with _reading(where):
            to_read = names if fields is None else fields.expressions(names)
            chunks = t.iterate(to_read, step_size=step_size, entry_stop=stop, library="ak")
        start = 0
        while True:
            # only uproot's reading is wrapped: errors of the caller's code stay tracebacks
            end = min(start + step_size, stop)
            span = f"{where}, entries {start}-{end - 1}"
            with _reading(span):
                try:
                    chunk = next(chunks, None)
                except (*READ_ERRORS, NotImplementedError, AssertionError):
                    if fields is not None:  # name the field uproot cannot read, if it is one
                        raise_unreadable_field(t, fields, names, start, end, span)
                    raise
            if chunk is None:
                break
            if fields is not None:  # record fields (Jet.pt) as branches (Jet_pt, nJet)
                chunk = fields.select(chunk, names)
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


def read_entries(
    path: PathLike,
    tree: str,
    start: int,
    stop: int,
    branches: Sequence[str] | None = None,
    nonfinite: NonFinitePolicy = "keep",
) -> ak.Array:
    """The entries ``[start, stop)`` of one file: one partition of a data-parallel job.

    Parameters
    ----------
    path : path-like or str
        One ROOT file (local path or URL).
    tree : str
        Name of the TTree or RNTuple.
    start, stop : int
        First entry and one past the last (``0 <= start <= stop <= num_entries``).
    branches : sequence of str or None
        Branch names or patterns; ``None`` reads every numeric branch.
    nonfinite : {"error", "drop", "keep"}
        As :func:`iterate_events`; ``"keep"`` (default) passes NaN/inf through.

    Returns
    -------
    ak.Array
        ``stop - start`` records (fewer with ``nonfinite="drop"``), the branch names as
        fields (RNTuple record fields as ``Jet_pt``/``nJet``), with the transient attrs that
        name the file and the first entry (:data:`SOURCE_ATTR`, :data:`ENTRY_START_ATTR`).

    Raises
    ------
    InputError
        A missing file, tree or branch, entries outside the tree, unreadable content (each
        naming the file, tree and entry range).
    """
    t = open_tree(path, tree)
    where = f"file '{path}', tree '{tree}'"
    if not 0 <= start <= stop <= t.num_entries:
        raise InputError(
            f"{where}: entries {start}-{stop - 1} are outside the tree's {t.num_entries} entries"
        )
    with _reading(where):
        fields = rntuple_branches(t) if is_rntuple(t) else None
    names = _select(t, branches, path, fields)
    span = f"{where}, entries {start}-{stop - 1}"
    with _reading(span):
        to_read = names if fields is None else fields.expressions(names)
        try:
            chunk = t.arrays(to_read, entry_start=start, entry_stop=stop, library="ak")
        except (*READ_ERRORS, NotImplementedError, AssertionError):
            if fields is not None:  # name the field uproot cannot read, if it is one
                raise_unreadable_field(t, fields, names, start, stop, span)
            raise
    if fields is not None:
        chunk = fields.select(chunk, names)
    chunk = ak.Array(chunk, attrs={SOURCE_ATTR: where, ENTRY_START_ATTR: (start, len(chunk))})
    return _nonfinite(chunk, nonfinite, where)[0]


def iterate_chunks(
    paths: Sequence[PathLike], tree: str, step_size: int
) -> Iterator[tuple[PathLike, int, ak.Array]]:
    """Every numeric branch of each file, in chunks, with where each chunk comes from.

    Branches pass through with their NaN/inf values (``nonfinite="keep"``): a job that writes
    every input branch back (``hepgen generate``, ``hepgen score``) checks only the columns
    its model reads.

    Parameters
    ----------
    paths : sequence of path-like
        Resolved files (:func:`resolve_files`), read in order.
    tree : str
        Name of the TTree or RNTuple.
    step_size : int
        Events per chunk.

    Yields
    ------
    (path, first, events)
        The file, the entry number of the chunk's first event in it, and the chunk
        (at most ``step_size`` events).
    """
    for path in paths:
        first = 0
        for events in iterate_events(path, None, tree=tree, step_size=step_size, nonfinite="keep"):
            yield path, first, events
            first += len(events)


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
