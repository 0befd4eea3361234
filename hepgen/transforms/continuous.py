"""Transforms of continuous values: ``log``, ``logit``, ``standardize``, ``quantile_gaussian``.

Monotone maps of one feature towards an unbounded, roughly standard-normal variable, the
input a flow or GAN trains best on.

References
----------
C. Krause, D. Shih, arXiv:2106.05285 (CaloFlow): logit preprocessing of bounded data.
A. Maevskiy et al., arXiv:1905.11825: quantile transformation to a Gaussian.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import special

from hepgen.errors import ConfigError, InputError
from hepgen.stats import plotting_positions
from hepgen.transforms.base import (
    Transform,
    as_1d,
    check_number,
    check_numbers,
    format_number,
    register_transform,
)

__all__ = ["Log", "Logit", "QuantileGaussian", "Standardize"]


@register_transform
class Log(Transform):
    """``y = log(x + offset)`` for positive quantities (pt, energy, mass, responses).

    Parameters
    ----------
    offset : float
        Added before the logarithm (units of ``x``); 0 by default.

    Raises
    ------
    InputError
        When some ``x + offset <= 0`` (the message gives the count).

    Examples
    --------
    >>> x = np.array([1.0, 10.0])
    >>> t = Log().fit(x)
    >>> t.forward(x).round(4).tolist(), bool(np.allclose(t.inverse(t.forward(x)), x))
    ([0.0, 2.3026], True)
    """

    type = "log"
    params = ("offset",)

    def __init__(self, offset: float = 0.0):
        super().__init__()
        self.offset = offset

    def _validate(self, where: str) -> None:
        self.offset = check_number(self.offset, where, "offset")

    def _shifted(self, x: np.ndarray) -> np.ndarray:
        x = as_1d(x, self.label)
        s = x + self.offset if self.offset else x
        n_bad = int(np.count_nonzero(~(s > 0)))
        if n_bad:
            what = f"values + offset ({format_number(self.offset)})" if self.offset else "values"
            raise InputError(
                f"{self.label}: {n_bad} of {len(x)} {what} are <= 0; log needs positive values "
                f"(smallest {format_number(float(s.min()))})"
            )
        return s

    def _fit(self, x, context, w):
        self._shifted(x)

    def forward(self, x, context=None, rng=None):
        return np.log(self._shifted(x))

    def inverse(self, y, context=None):
        x = np.exp(np.asarray(y, dtype=np.float64))
        return x - self.offset if self.offset else x

    def log_abs_det_jacobian(self, x, context=None):
        return -np.log(self._shifted(x))


@register_transform
class Logit(Transform):
    """Logit of the position inside declared bounds, for bounded scores (b-tag, isolation).

    ``u = (x - low) / (high - low)`` is clipped to ``[eps, 1 - eps]`` and ``y = log(u / (1-u))``,
    so values exactly on a bound (point masses, common for classifier scores) map to
    ``±logit(1 - eps) ≈ ±13.8``.  The inverse snaps values within the ``eps`` band (widened by
    a relative 1e-3 so that the float32 rounding of the model matrices still snaps) exactly back
    onto the bound, so bound values round-trip exactly.

    Parameters
    ----------
    low, high : float
        Declared bounds, units of ``x``; ``low < high``.
    eps : float
        Clipping margin in units of the range, ``0 < eps < 0.01``.

    Raises
    ------
    InputError
        Values outside ``[low, high]`` by more than a tiny tolerance (a few float32 ulps of the
        bounds, so that float32 branches of a value on a bound pass).

    References
    ----------
    C. Krause, D. Shih, arXiv:2106.05285 (CaloFlow), logit preprocessing of bounded data.

    Examples
    --------
    >>> t = Logit(low=0.0, high=1.0).fit(np.array([0.0, 0.5, 1.0]))
    >>> t.inverse(t.forward(np.array([0.0, 0.5, 1.0])).astype(np.float32)).tolist()
    [0.0, 0.5, 1.0]
    """

    type = "logit"
    params = ("low", "high", "eps")
    #: Widening (in logit units, ~relative in u) of the band that snaps back onto a bound.
    SNAP_BAND = 1e-3

    def __init__(self, low: float | None = None, high: float | None = None, eps: float = 1e-6):
        super().__init__()
        self.low = low
        self.high = high
        self.eps = eps

    def _validate(self, where: str) -> None:
        for key in ("low", "high"):
            if getattr(self, key) is None:
                raise ConfigError(f"{where}: key {key!r} is required (the declared bounds)")
        self.low = check_number(self.low, where, "low")
        self.high = check_number(self.high, where, "high")
        self.eps = check_number(self.eps, where, "eps")
        if not self.low < self.high:
            raise ConfigError(f"{where}: keys 'low', 'high' need low < high")
        if not 0 < self.eps < 0.01:
            raise ConfigError(f"{where}: key 'eps' must be in (0, 0.01), got {self.eps!r}")

    def _fraction(self, x: np.ndarray) -> np.ndarray:
        """Position inside the bounds in units of the range, clipped to [eps, 1 - eps]."""
        x = as_1d(x, self.label)
        lo, hi = self.low, self.high
        tol = 4 * float(np.finfo(np.float32).eps) * max(abs(lo), abs(hi), hi - lo)
        below = int(np.count_nonzero(x < lo - tol))
        above = int(np.count_nonzero(x > hi + tol))
        if below or above:
            raise InputError(
                f"{self.label}: {below + above} of {len(x)} values lie outside the declared "
                f"bounds [{format_number(lo)}, {format_number(hi)}] ({below} below, {above} above; "
                f"min {format_number(float(x.min()))}, max {format_number(float(x.max()))})"
            )
        u = x - lo
        u /= hi - lo
        # Since 1 - u >= eps, computing 1 - u (inside logit) costs at most ~1e-10 relative.
        return np.clip(u, self.eps, 1.0 - self.eps, out=u)

    def _fit(self, x, context, w):
        self._fraction(x)

    def forward(self, x, context=None, rng=None):
        return special.logit(self._fraction(x))

    def inverse(self, y, context=None):
        y = np.asarray(y, dtype=np.float64)
        x = special.expit(y)
        x *= self.high - self.low
        x += self.low
        edge = -special.logit(self.eps) - self.SNAP_BAND  # |y| beyond this is on a bound
        x[y <= -edge] = self.low
        x[y >= edge] = self.high
        return x

    def log_abs_det_jacobian(self, x, context=None):
        u = self._fraction(x)
        # dy/dx = 1 / (width * u * (1 - u)); nominal (the clipped value) in the eps band.
        return -(math.log(self.high - self.low) + np.log(u) + np.log1p(-u))


@register_transform
class Standardize(Transform):
    """``y = (x - mean) / scale`` with the (weighted) mean and standard deviation.

    A constant feature gets ``scale = 1`` and a warning.  With negative weights the weighted
    variance can come out <= 0; then the variance with ``|weights|`` is used, with a warning.

    Examples
    --------
    >>> t = Standardize().fit(np.array([1.0, 3.0]))
    >>> (t.mean, t.scale)
    (2.0, 1.0)
    """

    type = "standardize"
    state = ("mean", "scale")

    def _fit(self, x, context, w):
        if len(x) == 0:
            raise InputError(f"{self.label}: no values to fit")
        if w is None:
            mean = float(x.mean())
            var = float(np.mean(np.square(x - mean)))
        else:
            total = float(w.sum())
            mean = float(w @ x) / total
            dev2 = np.square(x - mean)
            var = float(w @ dev2) / total
            if not var > 0 and (w < 0).any():
                var_abs = float(np.abs(w) @ dev2) / float(np.abs(w).sum())
                if var_abs > 0:
                    warnings.warn(
                        f"{self.label}: the weighted variance is {var:g} (negative weights); "
                        "using the variance with |weights|",
                        UserWarning,
                        stacklevel=3,
                    )
                var = var_abs
        scale = math.sqrt(var) if var > 0 else 0.0
        if not scale > 1e-12 * abs(mean):
            warnings.warn(
                f"{self.label}: constant in the fit data (value {format_number(mean)}); standardize uses "
                "scale 1",
                UserWarning,
                stacklevel=3,
            )
            scale = 1.0
        self.mean = mean
        self.scale = scale

    def _set_state(self, state, where):
        mean = check_number(state["mean"], where, "mean")
        scale = check_number(state["scale"], where, "scale")
        if not scale > 0:
            raise ConfigError(f"{where}: key 'scale' must be > 0, got {scale!r}")
        super()._set_state({"mean": mean, "scale": scale}, where)

    def forward(self, x, context=None, rng=None):
        self._require_fitted()
        y = as_1d(x, self.label) - self.mean
        y /= self.scale
        return y

    def inverse(self, y, context=None):
        self._require_fitted()
        x = np.asarray(y, dtype=np.float64) * self.scale
        x += self.mean
        return x

    def log_abs_det_jacobian(self, x, context=None):
        self._require_fitted()
        return np.full(len(as_1d(x, self.label)), -math.log(self.scale))


@register_transform
class QuantileGaussian(Transform):
    """Map a feature to a standard normal through its (weighted) quantiles.

    ``fit`` computes ``n_quantiles`` weighted quantiles ``x_j`` at probabilities ``p_j`` evenly
    spaced between the first and last midpoint plotting positions (``0.5/n`` and ``1 - 0.5/n``
    without weights), and the knots ``z_j = Phi^-1(p_j)``.  Tied knots (point masses) are merged
    into one knot at their mean ``z``, so the map is strictly monotone piecewise-linear, and it
    continues linearly with the end segments' slopes beyond the fitted range, so that it is
    invertible everywhere.  The Jacobian is piecewise constant.

    Parameters
    ----------
    n_quantiles : int
        Number of knots (at most the number of rows), >= 2.

    References
    ----------
    A. Maevskiy et al., arXiv:1905.11825: quantile transformation of the features to a
    Gaussian before training a generative model.

    Examples
    --------
    >>> x = np.random.default_rng(0).exponential(size=10000)
    >>> z = QuantileGaussian(n_quantiles=200).fit(x).forward(x)
    >>> abs(float(z.mean())) < 0.01, abs(float(z.std()) - 1) < 0.02
    (True, True)
    """

    type = "quantile_gaussian"
    params = ("n_quantiles",)
    state = ("knots_x", "knots_z")

    def __init__(self, n_quantiles: int = 1000):
        super().__init__()
        self.n_quantiles = n_quantiles

    def _validate(self, where: str) -> None:
        n = self.n_quantiles
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 2:
            raise ConfigError(f"{where}: key 'n_quantiles' must be an integer >= 2, got {n!r}")
        self.n_quantiles = int(n)

    def _fit(self, x, context, w):
        if len(x) == 0:
            raise InputError(f"{self.label}: no values to fit")
        xs, probs = plotting_positions(x, w)
        m = min(self.n_quantiles, len(probs))
        p = np.linspace(probs[0], probs[-1], m) if m > 1 else probs[:1]
        xk = np.interp(p, probs, xs)
        zk = special.ndtri(p)  # = scipy.stats.norm.ppf, without importing scipy.stats
        # De-duplicate tied knots (discrete values, point masses): one knot per distinct x at
        # the mean z of its run, which keeps z strictly increasing.
        ux, start = np.unique(xk, return_index=True)
        if len(ux) < len(xk):
            counts = np.diff(np.append(start, len(xk)))
            zk = np.add.reduceat(zk, start) / counts
            xk = ux
        if len(xk) < 2:
            c = float(xk[0])
            warnings.warn(
                f"{self.label}: constant in the fit data (value {format_number(c)}); quantile_gaussian "
                "maps it to z = x - value",
                UserWarning,
                stacklevel=3,
            )
            xk = np.array([c - 1.0, c + 1.0])
            zk = np.array([-1.0, 1.0])
        self._set_knots(xk, zk)

    def _set_knots(self, xk: np.ndarray, zk: np.ndarray) -> None:
        self.knots_x = np.asarray(xk, dtype=np.float64)
        self.knots_z = np.asarray(zk, dtype=np.float64)
        slopes = np.diff(self.knots_z) / np.diff(self.knots_x)
        self._log_slopes = np.log(slopes)
        self._slope_lo = float(slopes[0])
        self._slope_hi = float(slopes[-1])

    def _set_state(self, state, where):
        xk = check_numbers(state["knots_x"], where, "knots_x", min_len=2)
        zk = check_numbers(state["knots_z"], where, "knots_z", min_len=2)
        if len(xk) != len(zk) or not (np.diff(xk) > 0).all() or not (np.diff(zk) > 0).all():
            raise ConfigError(
                f"{where}: keys 'knots_x', 'knots_z' must be strictly increasing and of equal length"
            )
        self._set_knots(xk, zk)
        self._fitted = True

    def forward(self, x, context=None, rng=None):
        self._require_fitted()
        x = as_1d(x, self.label)
        xk, zk = self.knots_x, self.knots_z
        z = np.interp(x, xk, zk)
        lo = x < xk[0]
        if lo.any():
            z[lo] = zk[0] + (x[lo] - xk[0]) * self._slope_lo
        hi = x > xk[-1]
        if hi.any():
            z[hi] = zk[-1] + (x[hi] - xk[-1]) * self._slope_hi
        return z

    def inverse(self, y, context=None):
        self._require_fitted()
        z = np.asarray(y, dtype=np.float64)
        xk, zk = self.knots_x, self.knots_z
        x = np.interp(z, zk, xk)
        lo = z < zk[0]
        if lo.any():
            x[lo] = xk[0] + (z[lo] - zk[0]) / self._slope_lo
        hi = z > zk[-1]
        if hi.any():
            x[hi] = xk[-1] + (z[hi] - zk[-1]) / self._slope_hi
        return x

    def log_abs_det_jacobian(self, x, context=None):
        self._require_fitted()
        x = as_1d(x, self.label)
        seg = np.searchsorted(self.knots_x, x, side="right") - 1
        np.clip(seg, 0, len(self._log_slopes) - 1, out=seg)
        return self._log_slopes[seg]
