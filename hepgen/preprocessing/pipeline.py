"""One feature's fitted chain of transforms: :class:`FeaturePipeline`.

The pipeline applies a feature's steps (the kind's default chain from
:func:`hepgen.features.default_transforms`, or the spec's own) one after the other, fits each
on the previous steps' output, sums their ``log|dy/dx|``, and handles the sentinel flag of a
feature with point masses (:mod:`hepgen.preprocessing.sentinels`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hepgen.errors import ConfigError, InputError
from hepgen.features import FeatureSpec, default_transforms
from hepgen.preprocessing.sentinels import SentinelFlag
from hepgen.stats import check_weights
from hepgen.transforms import NotFittedError, OneHot, Transform
from hepgen.transforms.base import as_1d, format_number, seeded_rng
from hepgen.transforms.relative import wrap_outside

__all__ = ["FeaturePipeline"]


def _category_label(v: float) -> str:
    """A category in a one-hot column name: ``5`` for 5.0, ``repr`` for other floats."""
    return str(int(v)) if float(v).is_integer() and abs(v) < 2**53 else repr(float(v))


class FeaturePipeline:
    """The fitted chain of transforms of one feature, with its sentinel flag if any.

    Parameters
    ----------
    spec : FeatureSpec
        The feature.
    transforms : sequence of Transform, optional
        The steps; by default built from :func:`default_transforms`.
    flag : SentinelFlag, optional
        For a spec with ``sentinels``; by default a new, unfitted one.

    Notes
    -----
    A ``periodic`` feature's inverse output is wrapped back into [-pi, pi).

    With ``spec.sentinels`` the pipeline has two model columns, the flag (:class:`SentinelFlag`)
    and the continuous column; the transforms are fitted and applied on the rows that hold no
    sentinel only (see :mod:`hepgen.preprocessing.sentinels`).

    Examples
    --------
    >>> p = FeaturePipeline(FeatureSpec("Jet_mass", "target", "positive"))
    >>> [t.type for t in p.transforms]
    ['log', 'standardize']
    >>> x = np.array([5.0, 10.0, 20.0])
    >>> bool(np.allclose(p.fit(x).inverse(p.forward(x)), x))
    True
    >>> b = FeaturePipeline(FeatureSpec("Jet_btag", "target", "bounded", bounds=(0, 1),
    ...                                 sentinels=(-1,)))
    >>> x = np.array([-1.0, 0.2, 0.7, 1.0], dtype=np.float32)
    >>> b.fit(x).columns, b.forward(x).shape
    (['Jet_btag:sentinel', 'Jet_btag'], (4, 2))
    >>> back = b.inverse(b.forward(x).astype(np.float32))  # the sentinel and bound exactly
    >>> back[[0, 3]].tolist(), bool(np.allclose(back, x, rtol=1e-5))
    ([-1.0, 1.0], True)
    """

    def __init__(
        self,
        spec: FeatureSpec,
        transforms: Sequence[Transform] | None = None,
        flag: SentinelFlag | None = None,
    ):
        self.spec = spec
        if transforms is None:
            transforms = [Transform.from_config(c, spec.name) for c in default_transforms(spec)]
        self.transforms: list[Transform] = list(transforms)
        names: list[str] = []
        for t in self.transforms:
            t.label = f"feature {spec.name!r}" + (f" (after {', '.join(names)})" if names else "")
            names.append(t.type)
        if flag is None and spec.sentinels:
            flag = SentinelFlag(spec)
        self.flag: SentinelFlag | None = flag

    @property
    def is_fitted(self) -> bool:
        """Whether every step is fitted (the continuous ones only if the fit data had any)."""
        if self.flag is not None:
            if not self.flag.is_fitted:
                return False
            if not self.flag.continuous:
                return True
        return all(t.is_fitted for t in self.transforms)

    @property
    def _continuous_out(self) -> int:
        return self.transforms[-1].n_out if self.transforms else 1

    @property
    def n_out(self) -> int:
        """Number of model columns (1; k for a one-hot condition; 2 with sentinels)."""
        if self.flag is not None:
            return 1 + self._continuous_out
        return self._continuous_out

    @property
    def columns(self) -> list[str]:
        """Model column names: ``[name]``, ``["name==c", ...]`` for one-hot, or
        ``["name:sentinel", name]`` with sentinels."""
        if self.flag is not None:
            return [f"{self.spec.name}:sentinel", self.spec.name]
        last = self.transforms[-1] if self.transforms else None
        if isinstance(last, OneHot):
            return [f"{self.spec.name}=={_category_label(c)}" for c in last.classes]
        return [self.spec.name]

    @property
    def context_names(self) -> tuple[str, ...]:
        """Condition columns the pipeline reads."""
        names: list[str] = []
        for t in self.transforms:
            names += [c for c in t.context_names if c not in names]
        return tuple(names)

    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"feature {self.spec.name!r}: pipeline is not fitted; call fit()")

    def _check_finite(self, x: np.ndarray) -> np.ndarray:
        x = as_1d(x, f"feature {self.spec.name!r}")
        n_bad = len(x) - int(np.count_nonzero(np.isfinite(x)))
        if n_bad:
            n_nan = int(np.count_nonzero(np.isnan(x)))
            raise InputError(
                f"feature {self.spec.name!r}: {n_bad} of {len(x)} values are not finite "
                f"({n_nan} NaN, {n_bad - n_nan} inf)"
            )
        return x

    def _rows(
        self, context: Mapping[str, np.ndarray] | None, keep: np.ndarray
    ) -> Mapping[str, np.ndarray] | None:
        """The context columns the chain reads, restricted to the rows ``keep``."""
        if context is None:
            return None
        n = len(keep)
        sub: dict[str, np.ndarray] = {}
        for name in self.context_names:
            if name in context:
                c = np.asarray(context[name])
                # a column of the wrong shape is passed on whole for the transform's own error
                sub[name] = c[keep] if c.shape == (n,) else c
        return sub

    def fit(
        self,
        x: np.ndarray,
        context: Mapping[str, np.ndarray] | None = None,
        weights: np.ndarray | None = None,
        rng: np.random.Generator | int | None = None,
    ) -> FeaturePipeline:
        """Fit the steps one after the other, each on the previous steps' output.

        Parameters
        ----------
        x : array of shape (n,)
            Raw values, feature units.  With sentinels, its dtype (e.g. float32) fixes the
            exact values the inverse restores.
        context : mapping of str to array of shape (n,), optional
            Raw condition columns.
        weights : array of shape (n,), optional
            Per-row weights (negative allowed).
        rng : numpy.random.Generator, int or None
            Noise for dequantisation while fitting the later steps.

        Returns
        -------
        FeaturePipeline
            ``self``.
        """
        dtype = getattr(x, "dtype", None)
        return self._fit(self._check_finite(x), context, weights, seeded_rng(rng), dtype)

    def _fit(self, x, context, weights, rng, dtype=None) -> FeaturePipeline:
        if self.flag is None:
            self._fit_chain(x, context, weights, rng)
            return self
        label = f"feature {self.spec.name!r}"
        w = check_weights(weights, len(x), label)
        if len(x) == 0:
            raise InputError(f"{label}: no values to fit")
        idx = self.flag.match(x)
        self.flag.fit(idx, w, rng, dtype)
        keep = idx == 0
        n_keep = int(np.count_nonzero(keep))
        shown = ", ".join(format_number(s) for s in self.spec.sentinels)
        if n_keep == len(x):
            warnings.warn(
                f"{label}: none of the sentinels ({shown}) occur in the fit data; its flag "
                "column is constant (0)",
                UserWarning,
                stacklevel=3,
            )
            self._fit_chain(x, context, w, rng)
        elif n_keep == 0:
            common = format_number(float(self.flag.values[self.flag.most_frequent - 1]))
            warnings.warn(
                f"{label}: all {len(x)} values of the fit data are sentinels; the continuous "
                f"part cannot be fitted, every generated value will be a sentinel (mostly "
                f"{common})",
                UserWarning,
                stacklevel=3,
            )
        else:
            self._fit_chain(x[keep], self._rows(context, keep), None if w is None else w[keep], rng)
        return self

    def _fit_chain(self, x, context, weights, rng) -> None:
        y = x
        for i, t in enumerate(self.transforms):
            t.fit(y, context, weights)
            if i < len(self.transforms) - 1:
                y = t.forward(y, context, rng)

    def forward(
        self,
        x: np.ndarray,
        context: Mapping[str, np.ndarray] | None = None,
        rng: np.random.Generator | int | None = None,
    ) -> np.ndarray:
        """Raw values (n,) -> transformed float64 values (n,) or (n, k); (n, 2) with sentinels."""
        self._require_fitted()
        return self._forward(self._check_finite(x), context, seeded_rng(rng))[0]

    def _forward(self, x, context, rng, log_det: bool = False):
        if self.flag is None:
            return self._forward_chain(x, context, rng, log_det)
        n = len(x)
        idx = self.flag.match(x)
        keep = idx == 0
        out = np.empty((n, 2))
        out[:, 0] = self.flag.encode(idx, rng)
        total = self.flag.log_abs_det_jacobian(n) if log_det else None
        n_keep = int(np.count_nonzero(keep))
        if n_keep and not self.flag.continuous:
            raise InputError(
                f"feature {self.spec.name!r}: {n_keep} of {n} values are not sentinels, but "
                "the fit data held only sentinels, so the continuous part is not fitted"
            )
        if n_keep == n:  # no sentinel in the data: no copies
            y, ld = self._forward_chain(x, context, rng, log_det)
            out[:, 1] = y
            if log_det:
                total += ld
            return out, total
        if n_keep:
            y, ld = self._forward_chain(x[keep], self._rows(context, keep), rng, log_det)
            out[keep, 1] = y
            if log_det:
                total[keep] += ld
        # the filler of the sentinel rows: independent N(0, 1) noise for targets, 0 for conditions
        if self.spec.role == "target":
            out[~keep, 1] = rng.standard_normal(n - n_keep)
        else:
            out[~keep, 1] = 0.0
        return out, total

    def _forward_chain(self, x, context, rng, log_det: bool = False):
        y = x
        total = np.zeros(len(x)) if log_det else None
        for t in self.transforms:
            if log_det:
                total += t.log_abs_det_jacobian(y, context)
            y = t.forward(y, context, rng)
        return y, total

    def inverse(self, y: np.ndarray, context: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Transformed values (n,), (n, k) or (n, 2) with sentinels -> raw float64 values (n,)."""
        self._require_fitted()
        y = np.asarray(y, dtype=np.float64)
        if self.flag is None:
            return self._inverse_chain(y, context)
        if y.ndim != 2 or y.shape[1] != 2:
            raise InputError(
                f"feature {self.spec.name!r}: the inverse expects the flag and the continuous "
                f"column, shape (n, 2), got {y.shape}"
            )
        idx = self.flag.decode(y[:, 0])
        if not self.flag.continuous:
            idx[idx == 0] = self.flag.most_frequent
        keep = idx == 0
        n_keep = int(np.count_nonzero(keep))
        if n_keep == len(y):
            return self._inverse_chain(y[:, 1], context)
        x = np.empty(len(y))
        x[~keep] = self.flag.values[idx[~keep] - 1]
        if n_keep:
            x[keep] = self._inverse_chain(y[keep, 1], self._rows(context, keep))
        return x

    def _inverse_chain(self, y, context) -> np.ndarray:
        x = y
        for t in reversed(self.transforms):
            x = t.inverse(x, context)
        if self.spec.periodic:
            x = wrap_outside(x)
        return x

    def log_abs_det_jacobian(
        self,
        x: np.ndarray,
        context: Mapping[str, np.ndarray] | None = None,
        rng: np.random.Generator | int | None = None,
    ) -> np.ndarray:
        """``log|dz/dx|`` of the whole chain at raw ``x``, shape (n,).

        ``rng`` matters only for ``dequantize`` followed by a non-affine step; the same ``rng``
        state as in :meth:`forward` gives the Jacobian at the same dequantised point.  With
        sentinels: the flag's term on every row plus the chain's term on the ordinary rows
        (see :mod:`hepgen.preprocessing.sentinels`).
        """
        self._require_fitted()
        if not all(t.elementwise for t in self.transforms):
            raise TypeError(f"feature {self.spec.name!r}: the pipeline is not elementwise")
        return self._forward(self._check_finite(x), context, seeded_rng(rng), log_det=True)[1]

    def to_dict(self) -> dict[str, Any]:
        """``{"feature": spec dict, "transforms": [transform dicts]}``, plus ``"sentinel"``
        (:meth:`SentinelFlag.to_dict`) for a feature with sentinels."""
        d = {
            "feature": self.spec.to_dict(),
            "transforms": [t.to_dict() for t in self.transforms],
        }
        if self.flag is not None:
            d["sentinel"] = self.flag.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeaturePipeline:
        """Build from :meth:`to_dict` output."""
        if not isinstance(d, Mapping) or not (
            {"feature", "transforms"} <= set(d) <= {"feature", "transforms", "sentinel"}
        ):
            raise ConfigError(
                "a feature pipeline must be {'feature': ..., 'transforms': [...]} (plus "
                "'sentinel': ... for a feature with sentinels)"
            )
        spec = FeatureSpec.from_dict(d["feature"])
        return cls._build(spec, d["transforms"], d.get("sentinel"))

    @classmethod
    def _build(cls, spec: FeatureSpec, transforms: Any, sentinel: Any) -> FeaturePipeline:
        where = f"feature {spec.name!r}"
        if isinstance(transforms, (str, bytes, Mapping)) or not isinstance(transforms, Sequence):
            raise ConfigError(f"{where}: the pipeline's transforms must be a list")
        if (sentinel is not None) != bool(spec.sentinels):
            raise ConfigError(
                f"{where}: "
                + (
                    "the spec lists sentinels, but the pipeline has no sentinel state"
                    if spec.sentinels
                    else "the pipeline has sentinel state, but the spec lists no sentinels"
                )
            )
        flag = SentinelFlag.from_dict(spec, sentinel) if sentinel is not None else None
        return cls(spec, [Transform.from_dict(t, spec.name) for t in transforms], flag)

    def __repr__(self) -> str:
        extra = f", sentinels={list(self.spec.sentinels)}" if self.flag is not None else ""
        return f"FeaturePipeline({self.spec.name!r}, {[t.type for t in self.transforms]}{extra})"
