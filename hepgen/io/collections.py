"""NanoAOD-style object collections as per-object rows, and back.

A collection is the set of jagged branches that share a prefix and a counter, e.g. ``Jet_pt``,
``Jet_eta``, ... with ``nJet``. Models work on one row per object, so
:func:`flatten_collection` turns the collection into flat numpy columns plus the index of the
event each object belongs to, and :func:`unflatten_collection` rebuilds the jagged layout
exactly (same counts, same order, same dtypes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import awkward as ak
import numpy as np

from hepgen.errors import InputError, did_you_mean
from hepgen.io.reader import ENTRY_START_ATTR, SOURCE_ATTR

__all__ = [
    "FlatCollection",
    "collection_fields",
    "flatten_collection",
    "replace_collection",
    "unflatten_collection",
]


def collection_fields(events: ak.Array, name: str) -> list[str]:
    """Return the jagged branches ``{name}_*`` of a collection, in the order of the events.

    Raises
    ------
    InputError
        If the events hold no such collection (close collection names are suggested).
    """
    prefix = name + "_"
    found = [f for f in events.fields if f.startswith(prefix) and events[f].ndim == 2]
    if not found:
        existing = sorted({f.split("_", 1)[0] for f in events.fields if events[f].ndim == 2})
        raise InputError(
            f"no jagged branches '{prefix}*' for collection '{name}'"
            f"{did_you_mean(name, existing)}; collections present: {', '.join(existing) or 'none'}"
        )
    return found


@dataclass
class FlatCollection:
    """One row per object of a collection.

    Attributes
    ----------
    name : str
        The collection (``"Jet"``).
    columns : dict of str to np.ndarray
        Full branch name (``"Jet_pt"``) to a 1-D array of shape (n_objects,), original dtype.
    counts : np.ndarray
        Objects per event, shape (n_events,), int64.
    """

    name: str
    columns: dict[str, np.ndarray]
    counts: np.ndarray
    _offsets: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_events(self) -> int:
        """Number of events (including events with no object)."""
        return len(self.counts)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def offsets(self) -> np.ndarray:
        """Start of each event's objects in the flat rows, shape (n_events + 1,)."""
        if self._offsets is None:
            self._offsets = np.concatenate([[0], np.cumsum(self.counts, dtype=np.int64)])
        return self._offsets

    @property
    def event_index(self) -> np.ndarray:
        """Event number (0-based within these events) of each row, shape (n_objects,)."""
        return np.repeat(np.arange(self.n_events, dtype=np.int64), self.counts)

    @property
    def local_index(self) -> np.ndarray:
        """Position of each object inside its event, shape (n_objects,)."""
        return np.arange(len(self), dtype=np.int64) - np.repeat(self.offsets[:-1], self.counts)

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.columns[name]
        except KeyError:
            raise InputError(
                f"collection '{self.name}' has no branch '{name}'{did_you_mean(name, self.columns)}"
            ) from None

    def select(self, mask: np.ndarray) -> FlatCollection:
        """Keep the rows where ``mask`` is true; events keep their place (counts shrink)."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (len(self),):
            raise ValueError(f"mask has shape {mask.shape}, expected ({len(self)},)")
        counts = np.bincount(self.event_index[mask], minlength=self.n_events).astype(np.int64)
        return FlatCollection(self.name, {k: v[mask] for k, v in self.columns.items()}, counts)


def flatten_collection(
    events: ak.Array, name: str, fields: Sequence[str] | None = None
) -> FlatCollection:
    """Flatten the collection ``name`` of ``events`` into per-object rows.

    Parameters
    ----------
    events : ak.Array
        Records with jagged fields ``{name}_*``, shape (n_events, var).
    name : str
        The collection (``"Jet"``).
    fields : sequence of str or None
        Full branch names to keep; ``None`` keeps every ``{name}_*`` branch.

    Returns
    -------
    FlatCollection

    Raises
    ------
    InputError
        If a branch is missing or the branches disagree on the number of objects per event
        (or with the counter ``n{name}``), naming the branches and the first such event.
    """
    available = collection_fields(events, name)
    # the file, tree and first entry, when the events come from hepgen.io.reader
    source = events.attrs.get(SOURCE_ATTR) if isinstance(events, ak.Array) else None
    where = f"{source}: " if source else ""
    first, n_read = events.attrs.get(ENTRY_START_ATTR, (0, -1)) if source else (0, -1)

    def event_name(i: int) -> str:
        # an entry number only while the rows are still those read (none dropped or repeated)
        return f"entry {first + i}" if n_read == len(events) else f"event {i}"

    if fields is None:
        fields = available
    for f in fields:
        if f not in events.fields:
            raise InputError(
                f"{where}no branch '{f}' for collection '{name}'{did_you_mean(f, available)}"
            )
        if events[f].ndim != 2:
            raise InputError(
                f"{where}branch '{f}' of collection '{name}' is not a list per event (type "
                f"{ak.type(events[f])})"
            )
    counts = np.asarray(ak.num(events[fields[0]], axis=1), dtype=np.int64)
    for f in fields[1:]:
        other = np.asarray(ak.num(events[f], axis=1), dtype=np.int64)
        if not np.array_equal(other, counts):
            event = int(np.flatnonzero(other != counts)[0])
            raise InputError(
                f"{where}collection '{name}': '{fields[0]}' and '{f}' have different numbers "
                f"of entries in {event_name(event)} ({counts[event]} vs {other[event]})"
            )
    counter = "n" + name
    if counter in events.fields and events[counter].ndim == 1:
        stored = np.asarray(events[counter]).astype(np.int64)
        if not np.array_equal(stored, counts):
            event = int(np.flatnonzero(stored != counts)[0])
            raise InputError(
                f"{where}collection '{name}': counter '{counter}' is {stored[event]} in "
                f"{event_name(event)} but '{fields[0]}' has {counts[event]} entries"
            )
    columns = {f: np.asarray(ak.flatten(events[f], axis=1)) for f in fields}
    return FlatCollection(name, columns, counts)


def unflatten_collection(flat: FlatCollection) -> dict[str, ak.Array]:
    """Rebuild the jagged branches of a flattened collection.

    Returns
    -------
    dict of str to ak.Array
        Full branch name to a jagged array of shape (n_events, var), the exact inverse of
        :func:`flatten_collection`.
    """
    counts = np.asarray(flat.counts, dtype=np.int64)
    total = int(counts.sum())
    out: dict[str, ak.Array] = {}
    for name, column in flat.columns.items():
        if len(column) != total:
            raise InputError(
                f"collection '{flat.name}': column '{name}' has {len(column)} rows but the "
                f"counts add up to {total}"
            )
        out[name] = ak.unflatten(np.asarray(column), counts)
    return out


def replace_collection(
    events: ak.Array, name: str, branches: Mapping[str, ak.Array] | FlatCollection
) -> ak.Array:
    """Return events with the collection ``name`` replaced (or added).

    Every other branch is kept; all old ``{name}_*`` jagged branches and the counter
    ``n{name}`` are removed first, so the new collection may have different objects and
    different branches.

    Parameters
    ----------
    events : ak.Array
        Records of branch fields, shape (n_events,).
    name : str
        The collection to replace.
    branches : mapping of str to ak.Array, or FlatCollection
        The new branches (full names ``{name}_*``), jagged with one list per event.
    """
    if isinstance(branches, FlatCollection):
        if branches.n_events != len(events):
            raise InputError(
                f"collection '{name}' has {branches.n_events} events, the events have {len(events)}"
            )
        branches = unflatten_collection(branches)
    prefix = name + "_"
    for key, value in branches.items():
        if not key.startswith(prefix):
            raise InputError(f"branch '{key}' does not belong to collection '{name}'")
        if len(value) != len(events):
            raise InputError(
                f"branch '{key}' has {len(value)} events, the events have {len(events)}"
            )
    kept = {
        f: events[f]
        for f in events.fields
        if not ((f.startswith(prefix) and events[f].ndim == 2) or f == "n" + name)
    }
    kept.update(branches)
    return ak.zip(kept, depth_limit=1)
