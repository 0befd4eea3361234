"""Paired gen/reco objects for training, read from ROOT files in bounded-memory chunks.

The fast simulation learns three things from full simulation, and this module gathers the
rows for each of them from the configured collections:

* the **efficiency**: every gen object, with a flag saying whether a reco object was matched
  to it;
* the **response** p(reco | gen): the matched pairs, gen features as conditions and reco
  features as targets;
* the **fakes**: reco objects without a gen match (pile-up, noise), kept separately with their
  own features so that they can be modelled per event rather than per gen object.

Only the branches that the feature schema names (plus the matching branches and the weight
branch) are read, chunk by chunk, so the peak memory is set by ``step_size`` and by the size
of the kept numpy columns, not by the file size.

The ``flat`` and ``objects`` layouts (``data.layout``, :mod:`hepgen.io.layouts`) fill the same
:class:`PairedObjects`: a row plays the part of the event (its objects stacked, object ``j`` of
row ``i`` at ``i * n_objects + j``, so that the split by event never separates the objects of
one row; the row's weight is broadcast to its objects), every object is a "gen" object with its
conditions, ``matched`` is the reconstruction flag (``data.reconstructed``; all true without
one) and there are no fakes.  Non-finite values are looked for only where they matter: in the
conditions and weights of every object and in the targets of reconstructed objects (the
targets of an object that was not reconstructed may be NaN).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hepgen.config import Config
from hepgen.errors import InputError
from hepgen.io.collections import flatten_collection
from hepgen.io.layouts import ResolvedLayout, RowLayout
from hepgen.io.matching import Matching, match_collections, matching_branches
from hepgen.io.reader import (
    ENTRY_START_ATTR,
    SOURCE_ATTR,
    count_entries,
    inspect_tree,
    iterate_events,
    resolve_files,
)
from hepgen.progress import progress

__all__ = ["PairedObjects", "config_branches", "load_pairs", "resolve_layout"]

log = logging.getLogger(__name__)


@dataclass
class PairedObjects:
    """Gen objects, their reco matches and the unmatched reco objects, as flat columns.

    Attributes
    ----------
    gen : dict of str to np.ndarray
        Condition columns of every gen object, shape (n_gen,) each.
    matched : np.ndarray
        Whether each gen object has a reco match, shape (n_gen,), bool.
    reco : dict of str to np.ndarray
        Target columns of the matched reco object of each *matched* gen object, shape
        (n_matched,) each, aligned with ``gen[...][matched]``.
    fakes : dict of str to np.ndarray
        Target columns of reco objects without a gen match, shape (n_fakes,) each.
    gen_weights, fake_weights : np.ndarray
        Event weights broadcast to the objects (ones when no weight branch is configured).
    gen_event, fake_event : np.ndarray
        Global event number of each gen / fake object, shape (n_gen,) / (n_fakes,).
    n_events : int
        Events read.
    n_out_of_range, n_duplicates : int
        Matching-index problems, counted (see :mod:`hepgen.io.matching`).
    """

    gen: dict[str, np.ndarray]
    matched: np.ndarray
    reco: dict[str, np.ndarray]
    fakes: dict[str, np.ndarray]
    gen_weights: np.ndarray
    fake_weights: np.ndarray
    gen_event: np.ndarray
    fake_event: np.ndarray
    n_events: int
    n_out_of_range: int = 0
    n_duplicates: int = 0
    files: list[str] = field(default_factory=list)

    @property
    def n_gen(self) -> int:
        return len(self.matched)

    @property
    def n_matched(self) -> int:
        return int(self.matched.sum())

    @property
    def n_fakes(self) -> int:
        return len(self.fake_event)

    def pairs(self) -> dict[str, np.ndarray]:
        """Conditions and targets of the matched pairs in one mapping, shape (n_matched,) each."""
        out = {k: v[self.matched] for k, v in self.gen.items()}
        out.update(self.reco)
        return out

    def summary(self) -> dict[str, float | int]:
        """Counts and fractions for logs and reports."""
        return {
            "n_events": self.n_events,
            "n_gen": self.n_gen,
            "n_matched": self.n_matched,
            "n_fakes": self.n_fakes,
            "efficiency": self.n_matched / self.n_gen if self.n_gen else 0.0,
            "fake_fraction": self.n_fakes / (self.n_fakes + self.n_matched)
            if self.n_fakes + self.n_matched
            else 0.0,
            "n_out_of_range": self.n_out_of_range,
            "n_duplicates": self.n_duplicates,
        }


def _branches(config: Config) -> list[str]:
    data = config.data
    schema = config.schema
    names = [f.name for f in schema]
    gen_match, reco_match = matching_branches(data)
    names += gen_match + reco_match
    if data.weights:
        names.append(data.weights)
    return list(dict.fromkeys(names))


def resolve_layout(config: Config, path: str, targets: bool = True) -> ResolvedLayout:
    """The flat/objects layout of ``config`` matched to the branches of ``path``'s tree.

    Raises
    ------
    InputError
        A feature, flag or weight branch that the file lacks (see
        :meth:`hepgen.io.layouts.RowLayout.resolve`).
    """
    tree = config.data.tree
    info = inspect_tree(path, tree)
    return RowLayout.from_config(config).resolve(
        info.branches, f"file '{path}', tree '{tree}'", targets=targets
    )


def config_branches(config: Config, path: str | None = None) -> list[str]:
    """The branches that training reads for ``config``: features, matching or flag branches
    and the weight branch.  The flat/objects layouts resolve the features against the tree
    of ``path`` (required there)."""
    if config.data.layout == "collections":
        return _branches(config)
    if path is None:
        raise ValueError(f"data.layout '{config.data.layout}': the branches depend on the file")
    return resolve_layout(config, path).branches


def load_pairs(
    config: Config, files: Sequence[str] | None = None, quiet: bool = False
) -> PairedObjects:
    """Read, match and flatten the configured collections of all input files.

    Parameters
    ----------
    config : Config
        A validated configuration (``data`` and ``features`` sections).
    files : sequence of str or None
        Input files overriding ``config.data.files``.
    quiet : bool
        Silence the progress bar.

    Returns
    -------
    PairedObjects

    Raises
    ------
    InputError
        Missing files, trees or branches, non-finite values (unless ``nonfinite: drop``),
        inconsistent collections, or no gen objects at all.
    """
    data = config.data
    paths = [str(p) for p in resolve_files(files if files is not None else config.input_files())]
    if not paths:
        raise InputError(f"{config.source or 'config'}: no input files (key 'data.files')")
    if data.layout != "collections":
        return _load_rows(config, paths, quiet)
    return _load_collections(config, paths, quiet)


def _cat(chunks: list[np.ndarray], dtype: Any = np.float64) -> np.ndarray:
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype)


def _total(config: Config, paths: list[str]) -> int:
    """Events to read (for the progress bar)."""
    total = count_entries(paths, config.data.tree)
    if config.data.max_events is not None:
        total = min(total, config.data.max_events)
    return total


class _PairParts:
    """The columns of :class:`PairedObjects`, gathered chunk by chunk."""

    def __init__(self, cond_names: list[str], target_names: list[str]) -> None:
        self.parts: dict[str, list[np.ndarray]] = {
            k: [] for k in ("matched", "gen_w", "fake_w", "gen_event", "fake_event")
        }
        self.gen: dict[str, list[np.ndarray]] = {k: [] for k in cond_names}
        self.reco: dict[str, list[np.ndarray]] = {k: [] for k in target_names}
        self.fakes: dict[str, list[np.ndarray]] = {k: [] for k in target_names}
        self.n_events = self.n_out = self.n_dup = 0

    def add(self, gen: Any, reco: Any, m: Matching, w_event: np.ndarray) -> None:
        """One chunk: its flattened collections, their matching and the event weights."""
        self.n_out += m.n_out_of_range
        self.n_dup += m.n_duplicates
        gen_rows = np.flatnonzero(m.gen_matched)
        fake_rows = np.flatnonzero(~m.reco_matched)
        for k, parts in self.gen.items():
            parts.append(gen[k])
        for k in self.reco:
            self.reco[k].append(reco[k][m.gen_to_reco[gen_rows]])
            self.fakes[k].append(reco[k][fake_rows])
        parts = self.parts
        parts["matched"].append(m.gen_matched)
        parts["gen_w"].append(w_event[gen.event_index])
        parts["fake_w"].append(w_event[reco.event_index[fake_rows]])
        parts["gen_event"].append(gen.event_index + self.n_events)
        parts["fake_event"].append(reco.event_index[fake_rows] + self.n_events)
        self.n_events += len(w_event)

    def result(self, paths: list[str]) -> PairedObjects:
        parts = self.parts
        return PairedObjects(
            gen={k: _cat(v) for k, v in self.gen.items()},
            matched=_cat(parts["matched"]).astype(bool),
            reco={k: _cat(v) for k, v in self.reco.items()},
            fakes={k: _cat(v) for k, v in self.fakes.items()},
            gen_weights=_cat(parts["gen_w"]),
            fake_weights=_cat(parts["fake_w"]),
            gen_event=_cat(parts["gen_event"]).astype(np.int64),
            fake_event=_cat(parts["fake_event"]).astype(np.int64),
            n_events=self.n_events,
            n_out_of_range=self.n_out,
            n_duplicates=self.n_dup,
            files=paths,
        )


def _event_weights(events: Any, branch: str | None) -> np.ndarray:
    """The weight of every event of a chunk (ones without a weight branch)."""
    if not branch:
        return np.ones(len(events))
    w_event = np.asarray(events[branch], dtype=np.float64)
    if w_event.ndim != 1:
        raise InputError(f"weight branch '{branch}' must hold one number per event")
    return w_event


def _load_collections(config: Config, paths: list[str], quiet: bool) -> PairedObjects:
    """:func:`load_pairs` for the collections layout: match reco to gen chunk by chunk."""
    data = config.data
    schema = config.schema
    cond_names = [f.name for f in schema.conditions]
    target_names = [f.name for f in schema.targets]
    reco_fields = list(dict.fromkeys(target_names + matching_branches(data)[1]))
    parts = _PairParts(cond_names, target_names)
    with progress(total=_total(config, paths), desc="read", unit="events", quiet=quiet) as bar:
        for events in iterate_events(
            paths,
            _branches(config),
            data.tree,
            step_size=data.step_size,
            nonfinite=data.nonfinite,
            entry_stop=data.max_events,
        ):
            gen = flatten_collection(events, data.gen, cond_names)
            reco = flatten_collection(events, data.reco, reco_fields)
            matching = match_collections(data, events, gen, reco)
            parts.add(gen, reco, matching, _event_weights(events, data.weights))
            bar.update(len(events))
    result = parts.result(paths)
    if result.n_gen == 0:
        raise InputError(
            f"no '{data.gen}' objects in {result.n_events} events of {', '.join(paths)}: "
            "nothing to learn"
        )
    return result


def _nonfinite_rows(
    resolved: ResolvedLayout,
    columns: dict[str, np.ndarray],
    flags: np.ndarray,
    weights: np.ndarray,
    n_rows: int,
) -> tuple[np.ndarray, list[str]]:
    """Rows with a NaN/inf where it matters (conditions and weights of every object, targets
    of reconstructed objects): the row mask (n_rows,) and ``'branch': count`` texts."""
    k = resolved.layout.n_objects
    bad_row = np.zeros(n_rows, dtype=bool)
    report: dict[str, int] = {}
    for name, values in columns.items():
        if values.dtype.kind != "f":
            continue
        bad = ~np.isfinite(values)
        if name in resolved.layout.targets:
            bad &= flags
        if not bad.any():
            continue
        per_object = bad.reshape(n_rows, k)
        for j, branch in enumerate(resolved.sources[name]):
            n = int(per_object[:, j].sum())
            if n:
                report[branch] = report.get(branch, 0) + n
        bad_row |= per_object.any(axis=1)
    w_bad = ~np.isfinite(weights)
    if w_bad.any():
        report[str(resolved.layout.weights)] = int(w_bad.sum())
        bad_row |= w_bad
    return bad_row, [f"'{b}': {n}" for b, n in report.items()]


def _row_chunk(
    resolved: ResolvedLayout, events: Any, names: list[str], nonfinite: str, where: str
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, int]:
    """One chunk of rows: the stacked columns, the flags and weights per object (the rows
    with NaN/inf dropped, or an error, as ``nonfinite`` says) and the number of rows dropped.

    Returns
    -------
    columns : dict of str to np.ndarray
        Shape (n_kept * n_objects,) each.
    flags : np.ndarray of bool, shape (n_kept * n_objects,)
    weights : np.ndarray, shape (n_kept,)
        Per row.
    n_dropped : int
    """
    layout = resolved.layout
    n = len(events)
    columns = resolved.stack(events, names, where)
    flags = resolved.stack_flags(events, where)
    if flags is None:
        flags = np.ones(n * layout.n_objects, dtype=bool)
    w_row = resolved.row_weights(events, n, where)
    bad_row, report = _nonfinite_rows(resolved, columns, flags, w_row, n)
    if not bad_row.any():
        return columns, flags, w_row, 0
    if nonfinite == "error":
        first = int(events.attrs.get(ENTRY_START_ATTR, (0, 0))[0])
        row = first + int(np.flatnonzero(bad_row)[0])
        raise InputError(
            f"{where}: non-finite values in {int(bad_row.sum())} rows, first at "
            f"entry {row} ({'; '.join(report)}); fix the input or drop those rows "
            "(nonfinite: drop)"
        )
    keep_obj = np.repeat(~bad_row, layout.n_objects)
    columns = {k: v[keep_obj] for k, v in columns.items()}
    return columns, flags[keep_obj], w_row[~bad_row], int(bad_row.sum())


def _load_rows(config: Config, paths: list[str], quiet: bool) -> PairedObjects:
    """:func:`load_pairs` for the flat and objects layouts (see the module docstring)."""
    data = config.data
    resolved = resolve_layout(config, paths[0])
    layout = resolved.layout
    k = layout.n_objects
    names = list(layout.conditions) + list(layout.targets)
    cond_parts: dict[str, list[np.ndarray]] = {c: [] for c in layout.conditions}
    target_parts: dict[str, list[np.ndarray]] = {t: [] for t in layout.targets}
    flag_parts: list[np.ndarray] = []
    weight_parts: list[np.ndarray] = []
    row_parts: list[np.ndarray] = []
    n_rows_total = n_dropped = 0
    with progress(total=_total(config, paths), desc="read", unit="rows", quiet=quiet) as bar:
        for events in iterate_events(
            paths,
            resolved.branches,
            data.tree,
            step_size=data.step_size,
            nonfinite="keep",
            entry_stop=data.max_events,
        ):
            where = events.attrs.get(SOURCE_ATTR) or f"tree '{data.tree}'"
            columns, flags, w_row, dropped = _row_chunk(
                resolved, events, names, data.nonfinite, where
            )
            n_dropped += dropped
            for c in layout.conditions:
                cond_parts[c].append(columns[c])
            for t in layout.targets:
                target_parts[t].append(columns[t][flags])
            flag_parts.append(flags)
            weight_parts.append(np.repeat(w_row, k))
            row_parts.append(np.repeat(np.arange(len(w_row), dtype=np.int64) + n_rows_total, k))
            n_rows_total += len(w_row)
            bar.update(len(events))
    if n_dropped:
        log.warning("dropped %d rows with NaN or infinite values", n_dropped)
    result = PairedObjects(
        gen={c: _cat(v) for c, v in cond_parts.items()},
        matched=_cat(flag_parts, bool).astype(bool),
        reco={t: _cat(v) for t, v in target_parts.items()},
        fakes={
            t: np.zeros(0, dtype=v[0].dtype if v else np.float64) for t, v in target_parts.items()
        },
        gen_weights=_cat(weight_parts),
        fake_weights=np.zeros(0),
        gen_event=_cat(row_parts, np.int64).astype(np.int64),
        fake_event=np.zeros(0, dtype=np.int64),
        n_events=n_rows_total,
        files=paths,
    )
    if result.n_gen == 0:
        raise InputError(
            f"no rows to learn from in {', '.join(paths)} (tree '{data.tree}')"
            + (f": all {n_dropped} rows had non-finite values" if n_dropped else "")
        )
    return result
