"""Flat tables and several objects per row: from branches to per-object rows, and back.

Besides jagged collections (:mod:`hepgen.io.collections`), hepgen reads two row layouts
(config key ``data.layout``): ``flat``, one object per row, and ``objects``, several objects
per row, each with its own branch prefix (``mu1_P``, ``mu2_P``).  :class:`RowLayout` resolves a
layout against a file's branches; the :class:`ResolvedLayout` stacks the objects of each row
into per-object rows for training, and unstacks generated rows back into branches;
:func:`missing_value` fills the targets of objects that were not reconstructed.  The rules
(row-level branches shared by all objects, the reconstruction flag, the missing value of each
dtype) are in ``docs/data.md``, section "Row layouts".

Example
-------
>>> import numpy as np
>>> layout = RowLayout("objects", objects=("mu1", "mu2"), conditions=("P", "nTracks"),
...                    targets=("PIDK",))
>>> resolved = layout.resolve(["mu1_P", "mu2_P", "nTracks", "mu1_PIDK", "mu2_PIDK"], "file")
>>> resolved.sources["nTracks"]
('nTracks', 'nTracks')
>>> cols = resolved.stack({"mu1_P": np.array([1.0, 2.0]), "mu2_P": np.array([3.0, 4.0]),
...                        "nTracks": np.array([10, 20])}, ["P", "nTracks"])
>>> cols["P"].tolist(), cols["nTracks"].tolist()
([1.0, 3.0, 2.0, 4.0], [10, 10, 20, 20])
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from hepgen.errors import InputError, did_you_mean

__all__ = [
    "ROW_LAYOUTS",
    "ResolvedLayout",
    "RowLayout",
    "missing_value",
    "row_column",
]

#: The layouts handled here (``collections`` is :mod:`hepgen.io.collections`).
ROW_LAYOUTS = ("flat", "objects")


def missing_value(dtype: Any) -> Any:
    """The fill value of a target of an object generated as not reconstructed.

    NaN for floating-point dtypes, ``np.iinfo(dtype).min`` for signed integers (no real value
    of a count or a code), ``np.iinfo(dtype).max`` for unsigned ones, ``False`` for booleans.
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return np.nan
    if dtype.kind == "b":
        return False
    if dtype.kind == "i":
        return np.iinfo(dtype).min
    if dtype.kind == "u":
        return np.iinfo(dtype).max
    raise TypeError(f"no missing value for dtype {dtype}")


def row_column(events: Any, name: str, where: str = "") -> np.ndarray:
    """One value per row of branch ``name`` of ``events`` (awkward records or a mapping),
    as a numpy array of shape (n_rows,) in the stored dtype.

    Raises
    ------
    InputError
        If the branch holds a list per row (a jagged collection: ``layout: collections``).
    """
    column = events[name]
    if type(column).__module__.startswith("awkward"):
        import awkward as ak

        if column.ndim != 1:
            prefix = f"{where}: " if where else ""
            raise InputError(
                f"{prefix}branch '{name}' holds a list per row (type {ak.type(column)}); the "
                "flat and objects layouts read one value per row (jagged collections are "
                "data.layout 'collections')"
            )
        return ak.to_numpy(column)
    array = np.asarray(column)
    if array.ndim != 1:
        prefix = f"{where}: " if where else ""
        raise InputError(
            f"{prefix}branch '{name}' has shape {array.shape}; expected one value per row"
        )
    return array


@dataclass(frozen=True)
class RowLayout:
    """What a ``flat`` or ``objects`` layout reads: object prefixes and feature names.

    Parameters
    ----------
    kind : {"flat", "objects"}
    objects : tuple of str
        The objects' branch prefixes (``objects`` layout); empty for ``flat``.
    conditions, targets : tuple of str
        Feature names: branch names (flat) or branch-name suffixes (objects).
    reconstructed : str or None
        The reconstruction-flag branch (flat) or suffix (objects).
    weights : str or None
        A per-row weight branch.
    """

    kind: str
    objects: tuple[str, ...] = ()
    conditions: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    reconstructed: str | None = None
    weights: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ROW_LAYOUTS:
            raise ValueError(f"layout must be one of {ROW_LAYOUTS}, got {self.kind!r}")
        if self.kind == "objects" and not self.objects:
            raise ValueError("the objects layout needs at least one object prefix")
        if self.kind == "flat" and self.objects:
            raise ValueError("the flat layout takes no object prefixes")

    @classmethod
    def from_config(cls, config: Any) -> RowLayout:
        """The layout of a :class:`hepgen.config.Config` whose ``data.layout`` is flat or
        objects."""
        data = config.data
        schema = config.schema
        return cls(
            kind=data.layout,
            objects=tuple(data.objects or ()),
            conditions=tuple(f.name for f in schema.conditions),
            targets=tuple(f.name for f in schema.targets),
            reconstructed=data.reconstructed,
            weights=data.weights,
        )

    @property
    def prefixes(self) -> tuple[str | None, ...]:
        """The object prefixes; ``(None,)`` for a flat table (one object, no prefix)."""
        return self.objects if self.kind == "objects" else (None,)

    @property
    def n_objects(self) -> int:
        """Objects per row."""
        return len(self.prefixes)

    @property
    def label(self) -> str:
        """A short description for messages: ``"objects mu1, mu2"`` or ``"flat rows"``."""
        return f"objects {', '.join(self.objects)}" if self.kind == "objects" else "flat rows"

    @staticmethod
    def branch(prefix: str | None, name: str) -> str:
        """The branch of feature ``name`` of the object ``prefix`` (``mu1_PIDK``)."""
        return name if prefix is None else f"{prefix}_{name}"

    def per_object(self, name: str) -> tuple[str, ...]:
        """The per-object branches of ``name``, one per object (``mu1_X``, ``mu2_X``)."""
        return tuple(self.branch(p, name) for p in self.prefixes)

    @property
    def target_branches(self) -> list[str]:
        """Full names of the target branches, object by object (``mu1_A, mu1_B, mu2_A``)."""
        return [self.branch(p, t) for p in self.prefixes for t in self.targets]

    @property
    def flag_branches(self) -> list[str]:
        """Full names of the reconstruction-flag branches (empty without a flag)."""
        return list(self.per_object(self.reconstructed)) if self.reconstructed else []

    def resolve(
        self, available: Collection[str], where: str, targets: bool = True
    ) -> ResolvedLayout:
        """Find the branch of every feature (and flag and weight) among ``available``.

        Parameters
        ----------
        available : collection of str
            The branches of the tree (or fields of the events).
        where : str
            The file and tree, for messages.
        targets : bool
            Also resolve the targets and the reconstruction flag (training, scoring); false
            when only the conditions are read (generation).

        Raises
        ------
        InputError
            A feature that exists neither per object nor per row (naming both candidates), a
            target or flag that is not per object, an object that lacks a branch the others
            have, a missing weight branch.
        """
        have = set(available)
        names = list(self.conditions) + (list(self.targets) if targets else [])
        sources: dict[str, tuple[str, ...]] = {}
        shared: set[str] = set()
        for name in names:
            is_target = name in self.targets
            sources[name] = self._source(name, have, where, is_target, "feature")
            if self.kind == "objects" and sources[name][0] == name:
                shared.add(name)
        flags = None
        if targets and self.reconstructed:
            flags = self._source(self.reconstructed, have, where, True, "reconstruction flag")
        if not targets:  # generation reads no weights
            return ResolvedLayout(replace(self, weights=None), sources, frozenset(shared))
        if self.weights and self.weights not in have:
            raise InputError(
                f"{where}: no weight branch '{self.weights}' (key 'data.weights')"
                f"{did_you_mean(self.weights, have)}"
            )
        return ResolvedLayout(self, sources, frozenset(shared), flags)

    def _source(
        self, name: str, have: set[str], where: str, per_object: bool, what: str
    ) -> tuple[str, ...]:
        wanted = self.per_object(name)
        present = [b for b in wanted if b in have]
        if len(present) == len(wanted):
            return wanted
        if self.kind == "flat":
            raise InputError(
                f"{where}: no branch '{name}' for the {what}{did_you_mean(name, have)}"
            )
        if present:
            missing = [b for b in wanted if b not in have]
            raise InputError(
                f"{where}: {what} '{name}' has branch(es) {present} but not {missing}; every "
                f"object of data.objects {list(self.objects)} needs one"
            )
        if per_object:
            kind = "target" if what == "feature" else what
            row = (
                f"only a row-level branch '{name}' exists"
                if name in have
                else f"no such branch{did_you_mean(wanted[0], have)}"
            )
            raise InputError(
                f"{where}: the {kind} '{name}' must be given per object "
                f"({', '.join(wanted)}); {row}"
            )
        if name in have:
            return (name,) * len(wanted)
        raise InputError(
            f"{where}: the {what} '{name}' is neither per object ({', '.join(wanted)}) nor a "
            f"row-level branch '{name}'{did_you_mean(wanted[0], have)}"
        )


@dataclass(frozen=True)
class ResolvedLayout:
    """A :class:`RowLayout` matched to the branches of a tree.

    Attributes
    ----------
    layout : RowLayout
    sources : dict of str to tuple of str
        Feature name to its branch for each object (the row-level branch repeated when the
        feature is shared by the row's objects).
    shared : frozenset of str
        Features read from a row-level branch.
    flags : tuple of str or None
        The reconstruction-flag branch of each object.
    """

    layout: RowLayout
    sources: dict[str, tuple[str, ...]]
    shared: frozenset[str] = frozenset()
    flags: tuple[str, ...] | None = None

    @property
    def branches(self) -> list[str]:
        """Every branch to read: features, flags and the weight branch, without repeats."""
        names = [b for bs in self.sources.values() for b in bs]
        names += list(self.flags or ())
        if self.layout.weights:
            names.append(self.layout.weights)
        return list(dict.fromkeys(names))

    def stack(self, events: Any, names: Sequence[str], where: str = "") -> dict[str, np.ndarray]:
        """Per-object columns of the features ``names``: object ``j`` of row ``i`` at
        ``i * n_objects + j``.

        Parameters
        ----------
        events : ak.Array or mapping of str to array
            One record per row with the branches of :attr:`sources`.
        names : sequence of str
            Features to stack.

        Returns
        -------
        dict of str to np.ndarray
            Shape (n_rows * n_objects,) each, in the stored dtype.
        """
        out: dict[str, np.ndarray] = {}
        cache: dict[str, np.ndarray] = {}
        for name in names:
            parts = []
            for b in self.sources[name]:
                if b not in cache:
                    cache[b] = row_column(events, b, where)
                parts.append(cache[b])
            out[name] = parts[0] if len(parts) == 1 else np.stack(parts, axis=1).reshape(-1)
        return out

    def stack_flags(self, events: Any, where: str = "") -> np.ndarray | None:
        """The reconstruction flags stacked like :meth:`stack` (bool), or None without a flag.

        Raises
        ------
        InputError
            A flag branch with values other than true/false (0/1).
        """
        if self.flags is None:
            return None
        parts = []
        for b in self.flags:
            values = row_column(events, b, where)
            if values.dtype != np.bool_:
                ok = np.isin(values, (0, 1))
                if not ok.all():
                    bad = values[~ok][0].item()
                    raise InputError(
                        f"{where + ': ' if where else ''}reconstruction flag '{b}' (key "
                        f"'data.reconstructed') holds {bad!r}; expected true/false (or 0/1)"
                    )
                values = values.astype(bool)
            parts.append(values)
        return parts[0] if len(parts) == 1 else np.stack(parts, axis=1).reshape(-1)

    def row_weights(self, events: Any, n_rows: int, where: str = "") -> np.ndarray:
        """The per-row weights (float64, shape (n_rows,)); ones without a weight branch."""
        if not self.layout.weights:
            return np.ones(n_rows)
        return row_column(events, self.layout.weights, where).astype(np.float64)

    def row_index(self, n_rows: int) -> np.ndarray:
        """The row of each stacked object, shape (n_rows * n_objects,), int64."""
        return np.repeat(np.arange(n_rows, dtype=np.int64), self.layout.n_objects)

    def unstack(self, columns: Mapping[str, np.ndarray], n_rows: int) -> dict[str, np.ndarray]:
        """The inverse of :meth:`stack`: per-object columns to one column per full branch
        name (``mu1_PIDK``, ``mu2_PIDK``; the feature name itself for a flat table).

        Parameters
        ----------
        columns : mapping of str to np.ndarray
            Feature name to a stacked column of shape (n_rows * n_objects,).
        n_rows : int
            Rows.

        Returns
        -------
        dict of str to np.ndarray
            Object by object (all features of the first object, then the second's), shape
            (n_rows,) each, dtypes kept.
        """
        layout = self.layout
        k = layout.n_objects
        shaped = {}
        for name, values in columns.items():
            values = np.asarray(values)
            if values.shape != (n_rows * k,):
                raise ValueError(
                    f"column '{name}' has shape {values.shape}, expected ({n_rows * k},)"
                )
            shaped[name] = values.reshape(n_rows, k)
        return {
            layout.branch(p, name): np.ascontiguousarray(shaped[name][:, j])
            for j, p in enumerate(layout.prefixes)
            for name in columns
        }
