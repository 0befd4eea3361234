"""Transforms of discrete values: ``dequantize`` (integers) and ``onehot`` / ``index`` (categories).

Counts and categories have no density; dequantisation spreads each integer uniformly over a
unit interval so that a flow can model it, and the inverse rounds back exactly.

References
----------
L. Theis, A. van den Oord, M. Bethge, "A note on the evaluation of generative models",
ICLR 2016, arXiv:1511.01844 (dequantisation of discrete data).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from hepgen.errors import ConfigError, InputError
from hepgen.transforms.base import (
    Transform,
    as_1d,
    check_number,
    check_numbers,
    format_number,
    register_transform,
    seeded_rng,
)

__all__ = ["Dequantize", "Index", "OneHot"]


@register_transform
class Dequantize(Transform):
    """Integers to continuous values: ``y = x + u - 0.5`` with ``u ~ U(0.005, 0.995)``.

    The inverse rounds to the nearest integer and clips to the declared ``[low, high]`` or else
    the fitted ``[min, max]``, so integers round-trip exactly.  With ``noise=False`` the
    forward map is the identity (still checking integrality and bounds); hepgen uses that for
    integer *conditions*, which are model inputs rather than densities.  ``log|dy/dx| = 0``:
    the density of the dequantised variable is, per unit, the probability of the integer.

    Parameters
    ----------
    low, high : float or None
        Declared valid range (units of ``x``): values outside it are an error; generated values
        are clipped into it.
    noise : bool
        Add the uniform noise (default) or not.

    References
    ----------
    L. Theis, A. van den Oord, M. Bethge, arXiv:1511.01844 (uniform dequantisation).

    Examples
    --------
    >>> t = Dequantize().fit(np.array([3.0, 7.0]))
    >>> y = t.forward(np.array([3.0, 7.0]), rng=np.random.default_rng(1))
    >>> t.inverse(y).tolist()
    [3.0, 7.0]
    """

    type = "dequantize"
    params = ("low", "high", "noise")
    state = ("min", "max")
    #: Noise ``u`` is drawn from ``U(MARGIN, 1 - MARGIN)`` so rounding back is never ambiguous.
    MARGIN = 0.005

    def __init__(self, low: float | None = None, high: float | None = None, noise: bool = True):
        super().__init__()
        self.low = low
        self.high = high
        self.noise = noise

    def _validate(self, where: str) -> None:
        self.low = check_number(self.low, where, "low", optional=True)
        self.high = check_number(self.high, where, "high", optional=True)
        if self.low is not None and self.high is not None and not self.low < self.high:
            raise ConfigError(f"{where}: keys 'low', 'high' need low < high")
        if not isinstance(self.noise, (bool, np.bool_)):
            raise ConfigError(f"{where}: key 'noise' must be true or false")
        self.noise = bool(self.noise)

    def _check(self, x: np.ndarray) -> None:
        n = len(x)
        n_frac = int(np.count_nonzero(x != np.rint(x)))
        if n_frac:
            raise InputError(
                f"{self.label}: {n_frac} of {n} values are not integers; dequantize needs "
                "integer values"
            )
        below = int(np.count_nonzero(x < self.low)) if self.low is not None else 0
        above = int(np.count_nonzero(x > self.high)) if self.high is not None else 0
        if below or above:
            lo = format_number(self.low) if self.low is not None else "-inf"
            hi = format_number(self.high) if self.high is not None else "inf"
            raise InputError(
                f"{self.label}: {below + above} of {n} values lie outside the declared bounds "
                f"[{lo}, {hi}] ({below} below, {above} above)"
            )

    def _fit(self, x, context, w):
        if len(x) == 0:
            raise InputError(f"{self.label}: no values to fit")
        self._check(x)
        self.min = float(x.min())
        self.max = float(x.max())

    def _set_state(self, state, where):
        lo = check_number(state["min"], where, "min")
        hi = check_number(state["max"], where, "max")
        if not lo <= hi:
            raise ConfigError(f"{where}: keys 'min', 'max' need min <= max")
        super()._set_state({"min": lo, "max": hi}, where)

    def forward(self, x, context=None, rng=None):
        self._require_fitted()
        x = as_1d(x, self.label)
        self._check(x)
        if not self.noise:
            return x.copy()
        u = seeded_rng(rng).uniform(self.MARGIN, 1.0 - self.MARGIN, size=len(x))
        u += x
        u -= 0.5
        return u

    def inverse(self, y, context=None):
        self._require_fitted()
        lo = math.ceil(self.low) if self.low is not None else self.min
        hi = math.floor(self.high) if self.high is not None else self.max
        return np.clip(np.rint(np.asarray(y, dtype=np.float64)), lo, hi)

    def log_abs_det_jacobian(self, x, context=None):
        return np.zeros(len(as_1d(x, self.label)))


class _Categorical(Transform):
    """Shared lookup of category values for ``onehot`` and ``index``."""

    params = ("categories",)
    state = ("classes",)

    def __init__(self, categories: Sequence[float] | None = None):
        super().__init__()
        self.categories = categories

    def _validate(self, where: str) -> None:
        if self.categories is not None:
            cats = check_numbers(self.categories, where, "categories")
            if len(np.unique(cats)) != len(cats):
                raise ConfigError(f"{where}: key 'categories' lists a value more than once")
            self.categories = cats.tolist()

    def get_params(self) -> dict[str, Any]:
        return {"categories": None if self.categories is None else list(self.categories)}

    def _fit(self, x, context, w):
        if len(x) == 0:
            raise InputError(f"{self.label}: no values to fit")
        if self.categories is None:
            classes = np.unique(x)
        else:
            classes = np.asarray(self.categories, dtype=np.float64)
        self._set_classes(classes)
        self._lookup(x)  # unknown categories (vs the declared ones) are an error

    def _set_classes(self, classes: np.ndarray) -> None:
        self.classes = np.asarray(classes, dtype=np.float64)
        self._order = np.argsort(self.classes, kind="stable")
        self._sorted = self.classes[self._order]

    def _set_state(self, state, where):
        classes = check_numbers(state["classes"], where, "classes")
        if len(np.unique(classes)) != len(classes):
            raise ConfigError(f"{where}: key 'classes' lists a value more than once")
        self._set_classes(classes)
        self._fitted = True

    @property
    def n_classes(self) -> int:
        self._require_fitted()
        return len(self.classes)

    def _lookup(self, x: np.ndarray) -> np.ndarray:
        """Index of each value in ``classes``; InputError for values not among them."""
        pos = np.searchsorted(self._sorted, x)
        np.clip(pos, 0, len(self._sorted) - 1, out=pos)
        known = self._sorted[pos] == x
        if not known.all():
            unknown = np.unique(x[~known])
            shown = ", ".join(format_number(v) for v in unknown[:5]) + (
                ", ..." if len(unknown) > 5 else ""
            )
            raise InputError(
                f"{self.label}: {int(np.count_nonzero(~known))} of {len(x)} values are not among "
                f"the {len(self.classes)} known categories "
                f"[{', '.join(format_number(c) for c in self.classes)}] (unknown: {shown})"
            )
        return self._order[pos]


@register_transform
class OneHot(_Categorical):
    """One-hot encoding of a categorical *condition*: (n,) -> (n, k), inverse by argmax.

    Parameters
    ----------
    categories : sequence of float or None
        Column order; ``None`` means the sorted distinct values seen in ``fit``.

    Examples
    --------
    >>> t = OneHot().fit(np.array([0.0, 4.0, 5.0]))
    >>> t.forward(np.array([5.0, 0.0])).tolist()
    [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    """

    type = "onehot"
    elementwise = False

    @property
    def n_out(self) -> int:
        return self.n_classes

    def forward(self, x, context=None, rng=None):
        self._require_fitted()
        x = as_1d(x, self.label)
        idx = self._lookup(x)
        out = np.zeros((len(x), len(self.classes)))
        out[np.arange(len(x)), idx] = 1.0
        return out

    def inverse(self, y, context=None):
        self._require_fitted()
        y = np.asarray(y, dtype=np.float64)
        if y.ndim != 2 or y.shape[1] != len(self.classes):
            raise InputError(
                f"{self.label}: onehot inverse expects shape (n, {len(self.classes)}), got {y.shape}"
            )
        return self.classes[np.argmax(y, axis=1)]


@register_transform
class Index(_Categorical):
    """Categories of a categorical *target* -> indices ``0..k-1`` (then dequantised).

    The inverse rounds and clips to a valid index, so every output is a valid category.

    Parameters
    ----------
    categories : sequence of float or None
        Index order; ``None`` means the sorted distinct values seen in ``fit``.

    Examples
    --------
    >>> t = Index().fit(np.array([0.0, 4.0, 5.0]))
    >>> t.forward(np.array([5.0, 0.0])).tolist(), t.inverse(np.array([1.2, 7.0])).tolist()
    ([2.0, 0.0], [4.0, 5.0])
    """

    type = "index"

    def forward(self, x, context=None, rng=None):
        self._require_fitted()
        return self._lookup(as_1d(x, self.label)).astype(np.float64)

    def inverse(self, y, context=None):
        self._require_fitted()
        idx = np.clip(np.rint(np.asarray(y, dtype=np.float64)), 0, len(self.classes) - 1)
        return self.classes[idx.astype(np.intp)]

    def log_abs_det_jacobian(self, x, context=None):
        return np.zeros(len(as_1d(x, self.label)))
