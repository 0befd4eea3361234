"""Input checks and small helpers shared by the validation metrics.

Every metric takes plain arrays: samples of shape ``(n,)`` (one feature) or ``(n, d)`` (several
features), and optional per-event weights of shape ``(n,)``.  Weights may be negative (sWeights)
but must be finite and sum to a positive number.  Errors are :class:`~hepgen.errors.InputError`
and name the sample (``"reference"``, ``"candidate"``, or a feature name given by the caller).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import numpy as np

from hepgen.errors import InputError
from hepgen.stats import check_weights
from hepgen.utils import to_jsonable

__all__ = [
    "MetricResult",
    "as_matrix",
    "as_sample",
    "check_weights",
    "finite_or_none",
    "rng_from",
]


@dataclasses.dataclass(frozen=True)
class MetricResult:
    """Base class of metric results: a frozen dataclass that converts to plain JSON.

    ``to_dict()`` returns plain Python numbers and lists; NaN and inf become ``None``.
    Subclasses list the fields that are arrays (curves) in ``_array_fields`` so that
    ``to_dict(arrays=False)`` can leave them out of compact summaries.
    """

    _array_fields: ClassVar[tuple[str, ...]] = ()

    def to_dict(self, arrays: bool = True) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            if not arrays and f.name in self._array_fields:
                continue
            out[f.name] = getattr(self, f.name)
        return to_jsonable(out)


def as_sample(x: Any, name: str = "sample", allow_empty: bool = False) -> np.ndarray:
    """Return ``x`` as a 1-D ``float64`` array; raise when it is empty, not 1-D or not finite."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise InputError(f"{name}: expected a 1-D array of values, got shape {arr.shape}")
    if arr.size == 0 and not allow_empty:
        raise InputError(f"{name}: no events (the sample is empty)")
    bad = ~np.isfinite(arr)
    if bad.any():
        raise InputError(
            f"{name}: {int(bad.sum())} of {arr.size} values are NaN or infinite; "
            "drop or fill them before comparing"
        )
    return arr


def as_matrix(x: Any, name: str = "sample", n_features: int | None = None) -> np.ndarray:
    """Return ``x`` as a 2-D ``float64`` array of shape ``(n, d)``; a 1-D input becomes ``(n, 1)``."""
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise InputError(
            f"{name}: expected an array of shape (n_events, n_features), got {arr.shape}"
        )
    if arr.shape[0] == 0:
        raise InputError(f"{name}: no events (the sample is empty)")
    if n_features is not None and arr.shape[1] != n_features:
        raise InputError(f"{name}: has {arr.shape[1]} features where {n_features} were expected")
    bad = ~np.isfinite(arr)
    if bad.any():
        cols = np.flatnonzero(bad.any(axis=0)).tolist()
        raise InputError(
            f"{name}: {int(bad.any(axis=1).sum())} of {arr.shape[0]} events have NaN or "
            f"infinite values (feature columns {cols}); drop or fill them before comparing"
        )
    return arr


def rng_from(seed: int | np.random.Generator | None) -> np.random.Generator:
    """A numpy Generator from a seed, a Generator (returned as is) or None (fresh entropy)."""
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def finite_or_none(value: float) -> float | None:
    """``value`` as a float, or ``None`` when it is NaN or infinite."""
    value = float(value)
    return value if math.isfinite(value) else None
