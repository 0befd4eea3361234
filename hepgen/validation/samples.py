"""Tables of features for validation: named columns, optional weights, integer flags.

:func:`as_table` turns what a user has at hand into a :class:`Table`: a numpy array of shape
``(n, d)`` with feature names, a mapping of names to 1-D columns, a pandas DataFrame, or an
awkward record array (jagged fields are flattened: one row per object; every field must then
have the same number of objects per event).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hepgen.errors import InputError

__all__ = ["Table", "as_table", "check_same_features"]


@dataclass
class Table:
    """Named feature columns of one sample.

    Attributes
    ----------
    names : list of str
        Feature names, length d.
    values : np.ndarray
        Shape (n, d), float64 (integers are stored exactly up to 2**53).
    weights : np.ndarray or None
        Per-row weights, shape (n,), or None for unit weights.
    integer : list of bool
        Whether each feature holds integers (from the input dtype).
    label : str
        "reference" or "candidate", used in messages.
    """

    names: list[str]
    values: np.ndarray
    weights: np.ndarray | None = None
    integer: list[bool] = field(default_factory=list)
    label: str = "sample"

    def __post_init__(self) -> None:
        if not self.integer:
            self.integer = [False] * len(self.names)

    @property
    def n(self) -> int:
        return int(self.values.shape[0])

    def column(self, name: str) -> np.ndarray:
        """The column of feature ``name``, shape (n,)."""
        return self.values[:, self.names.index(name)]

    def select_rows(self, rows: np.ndarray) -> Table:
        """A new table with the rows ``rows`` (a boolean mask or integer indices)."""
        return Table(
            names=list(self.names),
            values=self.values[rows],
            weights=None if self.weights is None else self.weights[rows],
            integer=list(self.integer),
            label=self.label,
        )

    def select_columns(self, names: Sequence[str]) -> Table:
        """A new table with only the features ``names``, in that order."""
        idx = [self.names.index(n) for n in names]
        return Table(
            names=list(names),
            values=self.values[:, idx],
            weights=self.weights,
            integer=[self.integer[i] for i in idx],
            label=self.label,
        )


def _is_integer_dtype(dtype: np.dtype) -> bool:
    return np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.bool_)


def _from_columns(
    columns: Mapping[str, Any], label: str
) -> tuple[list[str], np.ndarray, list[bool]]:
    names = [str(k) for k in columns]
    if not names:
        raise InputError(f"{label}: no features")
    arrays = []
    integer = []
    n = None
    for name in names:
        col = np.asarray(columns[name])
        if col.ndim != 1:
            raise InputError(f"{label}: feature '{name}' has shape {col.shape}, expected (n,)")
        if n is None:
            n = col.shape[0]
        elif col.shape[0] != n:
            raise InputError(
                f"{label}: feature '{name}' has {col.shape[0]} rows where the first feature "
                f"'{names[0]}' has {n}; all features must describe the same rows"
            )
        if not (np.issubdtype(col.dtype, np.number) or np.issubdtype(col.dtype, np.bool_)):
            raise InputError(f"{label}: feature '{name}' is not numeric (dtype {col.dtype})")
        integer.append(_is_integer_dtype(col.dtype))
        arrays.append(col.astype(np.float64))
    return names, np.column_stack(arrays), integer


def _awkward_columns(data: Any, label: str) -> dict[str, np.ndarray]:
    import awkward as ak

    fields = ak.fields(data)
    if not fields:
        raise InputError(f"{label}: the awkward array has no fields (expected records)")
    out = {}
    counts = None
    for name in fields:
        col = data[name]
        if col.ndim > 1:
            c = ak.to_numpy(ak.num(col, axis=1))
            if counts is None:
                counts = c
            elif not np.array_equal(counts, c):
                raise InputError(
                    f"{label}: field '{name}' has a different number of objects per event than "
                    "the other jagged fields; compare one collection at a time"
                )
            col = ak.flatten(col, axis=1)
        out[name] = ak.to_numpy(col)
    lengths = {len(v) for v in out.values()}
    if len(lengths) > 1:
        raise InputError(
            f"{label}: mixes event-level and object-level fields; compare one collection at a time"
        )
    return out


def as_table(
    data: Any,
    feature_names: Sequence[str] | None = None,
    weights: Any = None,
    label: str = "sample",
) -> Table:
    """Convert an array, mapping, DataFrame or awkward record array into a :class:`Table`.

    Parameters
    ----------
    data : array of shape (n, d) or (n,), mapping of name to (n,) arrays, pandas.DataFrame, or
        awkward record array
        The sample.
    feature_names : sequence of str or None
        Names of the columns of a plain array (default ``x0, x1, ...``); for named inputs, the
        subset of features to keep, in order.
    weights : array of shape (n,) or None
        Per-row weights.
    label : str
        Name of the sample in error messages.

    Returns
    -------
    Table
    """
    if isinstance(data, Table):
        table = data
        if feature_names is not None:
            table = table.select_columns(list(feature_names))
        if weights is not None:
            table = Table(
                table.names, table.values, np.asarray(weights, float), table.integer, label
            )
        return table
    module = type(data).__module__
    if module.startswith("awkward"):
        columns: Mapping[str, Any] | None = _awkward_columns(data, label)
    elif module.startswith("pandas"):
        columns = {str(c): data[c].to_numpy() for c in data.columns}
    elif isinstance(data, Mapping):
        columns = data
    else:
        columns = None
    if columns is not None:
        if feature_names is not None:
            missing = [n for n in feature_names if n not in columns]
            if missing:
                raise InputError(f"{label}: no feature(s) {missing}; it has {list(columns)}")
            columns = {n: columns[n] for n in feature_names}
        names, values, integer = _from_columns(columns, label)
    else:
        arr = np.asarray(data)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2:
            raise InputError(f"{label}: expected shape (n_events, n_features), got {arr.shape}")
        if not (np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.bool_)):
            raise InputError(f"{label}: the array is not numeric (dtype {arr.dtype})")
        names = (
            [str(n) for n in feature_names]
            if feature_names is not None
            else [f"x{i}" for i in range(arr.shape[1])]
        )
        if len(names) != arr.shape[1]:
            raise InputError(
                f"{label}: {len(names)} feature names for an array with {arr.shape[1]} columns"
            )
        integer = [_is_integer_dtype(arr.dtype)] * arr.shape[1]
        values = arr.astype(np.float64)
    w = None
    if weights is not None:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (values.shape[0],):
            raise InputError(
                f"{label}: weights have shape {w.shape}, expected ({values.shape[0]},), one per row"
            )
    return Table(names=names, values=values, weights=w, integer=integer, label=label)


def check_same_features(reference: Table, candidate: Table) -> None:
    """Raise when the two tables do not hold the same feature names; say which differ."""
    only_ref = [n for n in reference.names if n not in candidate.names]
    only_cand = [n for n in candidate.names if n not in reference.names]
    if only_ref or only_cand:
        parts = []
        if only_ref:
            parts.append(f"only in the reference: {only_ref}")
        if only_cand:
            parts.append(f"only in the candidate: {only_cand}")
        raise InputError("the samples have different features; " + "; ".join(parts))
