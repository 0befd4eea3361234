"""Checks of the efficiency classifier's inputs: conditions, labels, weights, feature names.

:class:`~hepgen.models.efficiency.EfficiencyModel` accepts raw numpy input (any real dtype,
0/1 or bool labels, event weights with negative entries); these functions turn it into the
float32 / bool / float64 arrays xgboost gets, and name the first problem in an
:class:`~hepgen.errors.InputError` (prefixed ``efficiency fit`` or ``efficiency predict``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from hepgen.errors import InputError
from hepgen.stats import check_weights

__all__ = [
    "check_conditions",
    "check_feature_names",
    "check_labels",
    "nonnegative_weights",
    "stratified_split",
]


def check_conditions(
    conditions: Any, where: str, feature_names: Sequence[str] | None = None
) -> np.ndarray:
    """``conditions`` as a C-contiguous float32 (n, C) matrix; InputError when unusable."""
    try:
        a = np.asarray(conditions)
    except (TypeError, ValueError) as err:
        raise InputError(f"efficiency {where}: conditions are not an array: {err}") from None
    if a.dtype.kind not in "biuf":
        raise InputError(
            f"efficiency {where}: conditions have dtype {a.dtype}, expected real numbers"
        )
    if a.ndim != 2:
        raise InputError(
            f"efficiency {where}: conditions have shape {a.shape}, expected (n_objects, "
            "n_features); reshape a single feature with x[:, None]"
        )
    if feature_names is not None and a.shape[1] != len(feature_names):
        raise InputError(
            f"efficiency {where}: conditions have {a.shape[1]} columns, the model was trained "
            f"on {len(feature_names)} ({', '.join(feature_names)})"
        )
    with np.errstate(over="ignore", invalid="ignore"):  # reported below
        x = np.ascontiguousarray(a, dtype=np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        cols = np.flatnonzero(bad.any(axis=0))
        col = int(cols[0])
        label = f"column {col}" if feature_names is None else f"'{feature_names[col]}'"
        row = int(np.flatnonzero(bad[:, col])[0])
        raise InputError(
            f"efficiency {where}: {int(bad.any(axis=1).sum())} objects have NaN or infinite "
            f"conditions (after conversion to float32), first in {label} at row {row}"
        )
    return x


def check_labels(reconstructed: Any, n: int) -> np.ndarray:
    """``reconstructed`` as a bool (n,) array; 0/1 numbers are accepted."""
    r = np.asarray(reconstructed)
    if r.shape != (n,):
        raise InputError(
            f"efficiency fit: reconstructed has shape {r.shape}, expected ({n},), one flag per "
            "object"
        )
    if r.dtype == np.bool_:
        return r
    if r.dtype.kind not in "iuf":
        raise InputError(f"efficiency fit: reconstructed has dtype {r.dtype}, expected bool")
    bad = ~((r == 0) | (r == 1))
    if bad.any():
        raise InputError(
            f"efficiency fit: reconstructed must be bool or 0/1; {int(bad.sum())} values are "
            f"neither (first at row {int(np.flatnonzero(bad)[0])})"
        )
    return r == 1


def nonnegative_weights(weights: Any, n: int, stacklevel: int = 2) -> tuple[np.ndarray, int]:
    """Float64 (n,) weights with negatives set to zero (warned), and how many were negative.

    Parameters
    ----------
    weights : array of shape (n,) or None
        Event weights (``None``: all 1).  Checked by :func:`hepgen.utils.check_weights`
        (shape, NaN/inf, a positive sum).
    n : int
        Number of objects.
    stacklevel : int
        Of the :class:`UserWarning` about negative weights, counted from this function.

    Raises
    ------
    InputError
        Not real numbers, the wrong shape, NaN/inf, or a sum that is not positive.
    """
    if weights is None:
        return np.ones(n), 0
    if np.asarray(weights).dtype.kind not in "biuf":
        raise InputError(
            f"efficiency fit: weights have dtype {np.asarray(weights).dtype}, expected real numbers"
        )
    w = check_weights(weights, n, "efficiency fit")
    assert w is not None
    negative = w < 0
    n_negative = int(negative.sum())
    if n_negative:
        share = float(-w[negative].sum() / np.abs(w).sum())
        warnings.warn(
            f"efficiency fit: {n_negative} of {n} weights are negative ({share:.1%} of the "
            "absolute weight); xgboost needs non-negative weights, so they are set to zero.  "
            "Harmless for negative generator weights; for sWeights it biases the efficiency "
            "towards that of the subtracted component",
            UserWarning,
            stacklevel=stacklevel + 1,
        )
        w = np.where(negative, 0.0, w)
    return w, n_negative


def check_feature_names(feature_names: Sequence[str] | None, n_cols: int) -> list[str]:
    if feature_names is None:
        return [f"f{j}" for j in range(n_cols)]
    if isinstance(feature_names, str):
        raise InputError("efficiency fit: feature_names must be a sequence of names, not a string")
    names = list(feature_names)
    if len(names) != n_cols or not all(isinstance(s, str) and s for s in names):
        raise InputError(
            f"efficiency fit: feature_names must be {n_cols} non-empty strings, one per "
            f"column, got {names!r}"
        )
    if len(set(names)) != len(names):
        dup = sorted({s for s in names if names.count(s) > 1})
        raise InputError(f"efficiency fit: duplicated feature names {dup}")
    return names


def stratified_split(
    y: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (training, validation) indices; each class split in the given proportion.

    Every class has at least 2 members; each part gets at least one of each class.
    """
    fit_parts, val_parts = [], []
    for cls in (False, True):
        idx = np.flatnonzero(y == cls)
        n_val = min(max(round(fraction * idx.size), 1), idx.size - 1)
        perm = rng.permutation(idx)
        val_parts.append(perm[:n_val])
        fit_parts.append(perm[n_val:])
    return np.sort(np.concatenate(fit_parts)), np.sort(np.concatenate(val_parts))
