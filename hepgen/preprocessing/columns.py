"""Reading raw columns and model matrices: shape, dtype and finiteness checks, dtype restore.

The :class:`~hepgen.preprocessing.Preprocessor` accepts any mapping of column names to 1-D
arrays (a dict, a structured array, an awkward record) and model matrices of float32 or
float64; these helpers check them once, with messages that name the column and the reason it
was needed, and cast generated values back to the raw column's recorded dtype.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hepgen.errors import InputError, did_you_mean

__all__ = ["cast_to_dtype", "check_matrix", "read_columns"]


def read_columns(
    data: Mapping[str, Any],
    names: Sequence[str],
    why: Mapping[str, str],
    n: int | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, np.dtype], int]:
    """Read, check and convert the columns ``names`` of ``data`` to float64.

    Parameters
    ----------
    data : mapping of str to array of shape (n,), or a structured array
        The raw columns; extra columns are ignored.
    names : sequence of str
        The columns to read.
    why : mapping of str to str
        Why each column is needed (``"target"``, ``"condition that target 'x' is relative
        to"``), for the message of a missing column.
    n : int, optional
        The expected row count (that of a model matrix); by default that of the first column.

    Returns
    -------
    columns : dict of str to ndarray of float64, shape (n,)
    dtypes : dict of str to numpy.dtype
        The raw dtype of each column (restored by :func:`cast_to_dtype`).
    n : int
        The row count.

    Raises
    ------
    InputError
        Missing columns (with suggestions), not 1-D, not numbers, unequal lengths, NaN or inf.

    Examples
    --------
    >>> cols, dtypes, n = read_columns({"a": np.arange(3, dtype=np.uint8)}, ["a"], {"a": "target"})
    >>> cols["a"].dtype, dtypes["a"], n
    (dtype('float64'), dtype('uint8'), 3)
    """
    keys: list[str] = []
    if hasattr(data, "keys"):
        keys = [str(k) for k in data.keys()]
    elif getattr(getattr(data, "dtype", None), "names", None):
        keys = list(data.dtype.names)
    raw: dict[str, Any] = {}
    missing = []
    for name in names:
        try:
            raw[name] = data[name]
        except (KeyError, ValueError, IndexError, TypeError):
            missing.append(name)
    if missing:
        parts = [f"{m!r} ({why[m]}){did_you_mean(m, keys)}" for m in missing]
        raise InputError(f"missing column{'s' if len(missing) > 1 else ''}: " + "; ".join(parts))
    cols: dict[str, np.ndarray] = {}
    dtypes: dict[str, np.dtype] = {}
    ref = None
    for name in names:
        a = np.asarray(raw[name])
        if a.ndim != 1:
            raise InputError(f"column {name!r}: expected a 1-D array, got shape {a.shape}")
        if a.dtype.kind not in "biuf":
            raise InputError(f"column {name!r}: expected numbers, got dtype {a.dtype}")
        if n is None:
            n, ref = len(a), name
        elif len(a) != n:
            against = f"column {ref!r}" if ref is not None else "the model matrix"
            raise InputError(
                f"column {name!r} has {len(a)} rows, but {against} has {n}; columns must "
                "have equal length"
            )
        dtypes[name] = a.dtype
        cols[name] = a
    bad = []
    for name, a in cols.items():
        if a.dtype.kind != "f":
            continue
        # checked before the float64 conversion: half the memory traffic for float32
        n_bad = len(a) - int(np.count_nonzero(np.isfinite(a)))
        if n_bad:
            n_nan = int(np.count_nonzero(np.isnan(a)))
            bad.append(
                f"feature {name!r}: {n_bad} of {len(a)} values are not finite "
                f"({n_nan} NaN, {n_bad - n_nan} inf)"
            )
    if bad:
        raise InputError("; ".join(bad))
    cols = {name: a.astype(np.float64, copy=False) for name, a in cols.items()}
    return cols, dtypes, (n if n is not None else 0)


def check_matrix(m: np.ndarray, dim: int, columns: list[str], what: str) -> np.ndarray:
    """``m`` as an array of shape (n, dim) of finite numbers, not copied; else InputError.

    Parameters
    ----------
    m : array of shape (n, dim)
        A model matrix (float32 or float64).
    dim : int
        The expected number of columns.
    columns : list of str
        The column names, to name those holding NaN or inf.
    what : str
        ``"condition"`` or ``"target"``, for the messages.

    Examples
    --------
    >>> check_matrix(np.zeros((2, 1), np.float32), 1, ["Jet_pt"], "target").shape
    (2, 1)
    """
    m = np.asarray(m)
    if m.ndim != 2 or m.shape[1] != dim:
        raise InputError(f"the {what} matrix must have shape (n, {dim}), got {m.shape}")
    if m.dtype.kind not in "biuf":
        raise InputError(f"the {what} matrix must hold numbers, got dtype {m.dtype}")
    # Columns are converted to float64 one at a time by the pipelines.
    finite = np.isfinite(m)
    if not finite.all():
        bad = (~finite).sum(axis=0)
        parts = [f"{columns[j]!r}: {int(b)} of {len(m)}" for j, b in enumerate(bad) if b]
        raise InputError(
            f"non-finite values (NaN or inf) in the {what} matrix: " + "; ".join(parts)
        )
    return m


def cast_to_dtype(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Cast float64 values to a recorded integer/bool/float dtype, rounding integers.

    Integers are rounded and clipped into the dtype's range; booleans are ``rint(x) != 0``.

    Examples
    --------
    >>> cast_to_dtype(np.array([2.6, -1.0, 300.0]), np.dtype(np.uint8))
    array([  3,   0, 255], dtype=uint8)
    """
    if dtype.kind == "b":
        return np.rint(x) != 0
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.rint(x), info.min, info.max).astype(dtype)
    return x.astype(dtype)
