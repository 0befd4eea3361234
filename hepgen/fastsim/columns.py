"""Columns of a fast simulation's inputs and outputs: flat tables, repeated events, the split.

Small numpy/awkward helpers shared by training and generation: reading the named columns of a
flat table (pandas, mapping, structured or 2-D array), repeating events for oversampling and
adding the draw fields, the seeded split of events into training and validation, and casting
generated columns to the dtypes of the training data.

Examples
--------
>>> import numpy as np
>>> sorted(table_columns({"a": np.arange(3), "b": np.ones(3)}, ["b"]))
['b']
>>> event_split(10, 0.2, seed=0).sum()
np.int64(2)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hepgen.errors import InputError

__all__ = [
    "OVERSAMPLE_DRAW",
    "OVERSAMPLE_WEIGHT",
    "event_split",
    "repeat_events",
    "stored_dtypes",
    "table_columns",
    "take_rows",
    "with_draw_fields",
]

#: Event fields added by oversampling: the weight 1/K and the draw number 0 ... K-1.
OVERSAMPLE_WEIGHT = "hepgen_weight"
OVERSAMPLE_DRAW = "hepgen_draw"


def table_columns(table: Any, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The named 1-D columns of a flat table (one row per object), dtypes kept.

    Parameters
    ----------
    table : pandas.DataFrame, mapping of str to 1-D arrays, numpy structured array, or 2-D
        array whose columns are ``names`` in order
    names : sequence of str
        The columns wanted.

    Returns
    -------
    dict of str to np.ndarray, each of shape (n,)

    Raises
    ------
    InputError
        A missing column (named), columns of different lengths, or an array of the wrong shape.
    """
    names = list(names)
    source = table
    if type(table).__module__.startswith("pandas"):
        available = [str(c) for c in table.columns]
    elif isinstance(table, Mapping):
        available = list(table)
    else:
        source = np.asarray(table)
        if source.dtype.names is None:
            if source.ndim != 2 or source.shape[1] != len(names):
                raise InputError(
                    f"a flat table as an array must have shape (n, {len(names)}) "
                    f"with the columns {names}, got shape {source.shape}"
                )
            return {name: source[:, j] for j, name in enumerate(names)}
        available = list(source.dtype.names)
    missing = [n for n in names if n not in available]
    if missing:
        raise InputError(f"the table has no column(s) {missing}; it has {available}")
    columns = {n: np.asarray(source[n]) for n in names}
    shapes = {n: v.shape for n, v in columns.items()}
    if any(len(sh) != 1 for sh in shapes.values()) or len({sh[0] for sh in shapes.values()}) > 1:
        raise InputError(f"table columns must be 1-D and of equal length, got shapes {shapes}")
    return columns


def repeat_events(events: Any, k: int) -> Any:
    """Each event K times in a row (event i at rows i*K ... i*K + K - 1); K = 1: unchanged."""
    return events if k == 1 else events[np.repeat(np.arange(len(events)), k)]


def with_draw_fields(events: Any, k: int) -> Any:
    """Add the oversampling fields (weight 1/K, draw 0 ... K-1) to K-fold repeated records
    (:func:`repeat_events`); K = 1: unchanged."""
    if k == 1:
        return events
    import awkward as ak

    fields = {f: events[f] for f in events.fields}
    fields[OVERSAMPLE_WEIGHT] = np.full(len(events), 1.0 / k, np.float32)
    fields[OVERSAMPLE_DRAW] = np.tile(np.arange(k, dtype=np.int32), len(events) // k)
    return ak.zip(fields, depth_limit=1)


def event_split(n_events: int, fraction: float, seed: int) -> np.ndarray:
    """Validation flag per event (shape (n_events,), bool): a seeded random ``fraction``."""
    rng = np.random.default_rng([seed, 1])
    flags = np.zeros(n_events, dtype=bool)
    n_val = round(fraction * n_events)
    flags[rng.choice(n_events, n_val, replace=False)] = True
    return flags


def take_rows(columns: Mapping[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """The given rows (indices or mask) of every column."""
    return {k: np.asarray(v)[rows] for k, v in columns.items()}


def stored_dtypes(
    dtypes: Mapping[str, Any], columns: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Generated columns cast to the dtypes of the training data (``dtypes``, e.g.
    :attr:`hepgen.preprocessing.Preprocessor.dtypes`: float32 in NanoAOD), so that generated
    files have the layout of the full-simulation ones; columns without a dtype are kept."""
    return {
        k: np.asarray(v).astype(dtypes.get(k, np.asarray(v).dtype), copy=False)
        for k, v in columns.items()
    }
