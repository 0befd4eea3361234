"""Sentinel values (point masses) of a feature: which rows hold one, as a flag column.

Real ntuples store defaults where a quantity was not computed (``-3000``, ``-999``, exact
zeros); a flow cannot model such a delta function.  A :class:`SentinelFlag`, held by the
feature's :class:`~hepgen.preprocessing.FeaturePipeline` beside its chain of transforms, models
each sentinel of ``FeatureSpec.sentinels`` as a discrete flag column beside the continuous
part, fits the chain on the other rows only, and restores the exact stored value in the
inverse.  The rules (matching tolerance, fillers, Jacobian, the JSON format) are in
``docs/data.md``, section "Sentinel values (point masses)".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hepgen.errors import ConfigError, did_you_mean
from hepgen.features import SENTINEL_RTOL, FeatureSpec
from hepgen.transforms import Dequantize, Standardize, Transform
from hepgen.transforms.base import check_numbers

__all__ = ["SentinelFlag"]


def _stored_values(sentinels: Sequence[float], dtype: np.dtype | None) -> np.ndarray:
    """The sentinels as a raw column of ``dtype`` holds them, as float64 (float32(-999.9), ...)."""
    values = np.asarray(sentinels, dtype=np.float64)
    if dtype is not None and np.dtype(dtype).kind == "f":
        with np.errstate(over="ignore"):
            cast = values.astype(dtype).astype(np.float64)
        # a sentinel beyond the dtype's range cannot be stored in it; keep the declared value
        values = np.where(np.isfinite(cast), cast, values)
    return values


class SentinelFlag:
    """The point masses of a feature with ``sentinels``: which rows hold one, as a flag column.

    The flag of a row is its category: 0 for an ordinary value, ``k`` for the k-th sentinel of
    the spec.  It is encoded like an integer feature, ``dequantize`` + ``standardize``, with
    uniform noise for targets (so that a flow models a density) and without for conditions.
    Used by :class:`~hepgen.preprocessing.FeaturePipeline`; see the module docstring.

    Parameters
    ----------
    spec : FeatureSpec
        A feature with ``sentinels``.
    transforms : sequence of Transform, optional
        The flag's ``[Dequantize, Standardize]`` (from :meth:`from_dict`); built by default.

    Attributes
    ----------
    values : ndarray of float64, shape (k,)
        The sentinels as stored in the raw column's dtype (``float32(-999.9)`` as float64), the
        exact values the inverse restores; set in :meth:`fit`.
    fractions : ndarray of float64, shape (k + 1,)
        (Weighted) fraction of the fit rows in each category, ordinary values first.
    continuous : bool
        Whether the fit data held ordinary values, so that the continuous chain was fitted.
    """

    #: Tolerance of :meth:`match`, see :data:`hepgen.features.SENTINEL_RTOL`.
    RTOL = SENTINEL_RTOL

    def __init__(self, spec: FeatureSpec, transforms: Sequence[Transform] | None = None):
        if not spec.sentinels:
            raise ValueError(f"feature {spec.name!r} has no sentinels")
        self.spec = spec
        self.sentinels: tuple[float, ...] = spec.sentinels
        if transforms is None:
            transforms = [Dequantize(noise=spec.role == "target"), Standardize()]
        self.transforms: list[Transform] = list(transforms)
        for t in self.transforms:
            t.label = f"feature {spec.name!r} (sentinel flag)"
        self.values: np.ndarray | None = None
        self.fractions: np.ndarray | None = None
        self.continuous = True

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` (or :meth:`from_dict` with state) has run."""
        return self.values is not None and all(t.is_fitted for t in self.transforms)

    @property
    def most_frequent(self) -> int:
        """Category (1..k) of the most frequent sentinel in the fit data."""
        return int(np.argmax(self.fractions[1:])) + 1

    def match(self, x: np.ndarray) -> np.ndarray:
        """Category of each value: ``k`` where ``|x - s_k| <= RTOL * |s_k|``, else 0; (n,) intp."""
        idx = np.zeros(len(x), dtype=np.intp)
        for k, s in enumerate(self.sentinels, start=1):
            hit = x == s if s == 0 else np.abs(x - s) <= self.RTOL * abs(s)
            hit &= idx == 0  # the spec keeps sentinels apart; the first one wins anyway
            idx[hit] = k
        return idx

    def fit(
        self,
        idx: np.ndarray,
        weights: np.ndarray | None,
        rng: np.random.Generator,
        dtype: np.dtype | None = None,
    ) -> SentinelFlag:
        """Fit the flag encoding on the categories ``idx`` (from :meth:`match`)."""
        w = weights
        counts = np.bincount(idx, weights=w, minlength=len(self.sentinels) + 1)
        total = float(counts.sum())
        self.fractions = counts / total if total > 0 else counts
        self.continuous = bool((idx == 0).any())
        self.values = _stored_values(self.sentinels, dtype)
        deq, std = self.transforms
        flag = idx.astype(np.float64)
        deq.fit(flag, None, w)
        y = deq.forward(flag, None, rng)
        if float(np.ptp(y)) == 0.0:
            # conditions (no noise) with one category only: nothing to scale, no extra warning
            std._set_state({"mean": float(y[0]), "scale": 1.0}, std.label)
        else:
            std.fit(y, None, w)
        return self

    def encode(self, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Categories (n,) -> the flag column (n,), float64."""
        y = idx.astype(np.float64)
        for t in self.transforms:
            y = t.forward(y, None, rng)
        return y

    def decode(self, y: np.ndarray) -> np.ndarray:
        """Flag column (n,) -> categories (n,) intp, rounded and clipped to the fitted range."""
        x = np.asarray(y, dtype=np.float64)
        for t in reversed(self.transforms):
            x = t.inverse(x, None)
        return x.astype(np.intp)

    def log_abs_det_jacobian(self, n: int) -> np.ndarray:
        """``log|dz/dflag|`` of the flag column: the final standardize's ``-log(scale)``."""
        return np.full(n, -math.log(self.transforms[-1].scale))

    def to_dict(self) -> dict[str, Any]:
        """``{"values", "fractions", "continuous", "flag": [transform dicts]}`` (JSON-ready)."""
        d: dict[str, Any] = {}
        if self.values is not None:
            d["values"] = self.values.tolist()
            d["fractions"] = self.fractions.tolist()
            d["continuous"] = self.continuous
        d["flag"] = [t.to_dict() for t in self.transforms]
        return d

    @classmethod
    def from_dict(cls, spec: FeatureSpec, d: Mapping[str, Any]) -> SentinelFlag:
        """Build from :meth:`to_dict` output.

        Raises
        ------
        ConfigError
            Unknown keys, or state that does not fit ``spec.sentinels``.
        """
        where = f"feature {spec.name!r}: sentinel state"
        keys = ("values", "fractions", "continuous", "flag")
        if not isinstance(d, Mapping) or "flag" not in d:
            raise ConfigError(f"{where} must be a mapping with a key 'flag'")
        unknown = [k for k in d if k not in keys]
        if unknown:
            raise ConfigError(
                f"{where}: unknown key {unknown[0]!r}{did_you_mean(str(unknown[0]), keys)}"
            )
        flag = d["flag"]
        if not isinstance(flag, Sequence) or len(flag) != 2:
            raise ConfigError(f"{where}: key 'flag' must list a dequantize and a standardize")
        transforms = [
            Dequantize.from_dict(flag[0], spec.name),
            Standardize.from_dict(flag[1], spec.name),
        ]
        obj = cls(spec, transforms)
        present = [k for k in keys[:3] if k in d]
        if present:
            if len(present) != 3:
                raise ConfigError(f"{where}: needs all of 'values', 'fractions', 'continuous'")
            k = len(spec.sentinels)
            values = check_numbers(d["values"], where, "values")
            fractions = check_numbers(d["fractions"], where, "fractions")
            if len(values) != k or len(fractions) != k + 1:
                raise ConfigError(
                    f"{where}: expected {k} 'values' and {k + 1} 'fractions' for the sentinels "
                    f"{list(spec.sentinels)}"
                )
            if not isinstance(d["continuous"], bool):
                raise ConfigError(f"{where}: key 'continuous' must be true or false")
            obj.values = values
            obj.fractions = fractions
            obj.continuous = d["continuous"]
        return obj

    def __repr__(self) -> str:
        return f"SentinelFlag({self.spec.name!r}, sentinels={list(self.sentinels)})"
