"""sPlot: an extended maximum-likelihood fit of a mass spectrum and the sWeights it implies.

:class:`MassModel` is a signal (double-sided Crystal Ball, truncated to the window) plus an
exponential background on a mass window (MeV); :func:`fit_splot` fits the yields and the
shape parameters (tails fixed) to a set of masses, and its :class:`SPlotFit` gives the
sWeights ``sw_j(m) = sum_k V_jk f_k(m) / sum_i N_i f_i(m)`` of each candidate, with ``V`` the
covariance of the yields. The sWeights of a species sum to its fitted yield, and weighted
with them the distribution of any variable independent of the mass within each species is
that species' distribution. The fit is written out in the project's ``data/README.md``
(process ``pid``, sWeights).

References
----------
M. Pivk, F. R. Le Diberder, "sPlot: a statistical tool to unfold data distributions",
Nucl. Instrum. Meth. A 555 (2005) 356, arXiv:physics/0402083.

Example
-------
>>> import numpy as np
>>> from hepgen.sim.splot import MassModel, fit_splot
>>> model = MassModel()
>>> rng = np.random.default_rng(1)
>>> mass = np.concatenate([model.sample_signal(rng, 6000), model.sample_background(rng, 4000)])
>>> fit = fit_splot(mass, model)
>>> abs(fit.signal_yield - 6000) < 300
True
>>> bool(np.isclose(fit.sweights(mass).sum(), fit.signal_yield, rtol=1e-8))
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import optimize, special

from hepgen.errors import InputError
from hepgen.sim._common import crystal_ball

__all__ = ["MIN_CANDIDATES", "MassModel", "SPlotFit", "fit_splot"]

#: Fewest candidates :func:`fit_splot` accepts (a five-parameter fit needs data).
MIN_CANDIDATES = 100


def _cb_integral(t0: float, t1: float, al: float, nl: float, ah: float, nh: float) -> float:
    """Integral of the standardised double-sided Crystal Ball shape over ``[t0, t1]``."""
    total = 0.0
    # low tail: A (B - t)^-n on t < -al
    if t0 < -al:
        a_l = (nl / al) ** nl * math.exp(-0.5 * al * al)
        b_l = nl / al - al
        hi = min(t1, -al)
        total += a_l / (nl - 1.0) * ((b_l - hi) ** (1.0 - nl) - (b_l - t0) ** (1.0 - nl))
    # Gaussian core
    lo, hi = max(t0, -al), min(t1, ah)
    if hi > lo:
        total += math.sqrt(2.0 * math.pi) * float(special.ndtr(hi) - special.ndtr(lo))
    # high tail: A (B + t)^-n on t > ah
    if t1 > ah:
        a_h = (nh / ah) ** nh * math.exp(-0.5 * ah * ah)
        b_h = nh / ah - ah
        lo = max(t0, ah)
        total += a_h / (nh - 1.0) * ((b_h + lo) ** (1.0 - nh) - (b_h + t1) ** (1.0 - nh))
    return total


def _cb_shape(t: np.ndarray, al: float, nl: float, ah: float, nh: float) -> np.ndarray:
    """Unnormalised standardised double-sided Crystal Ball shape at ``t``."""
    out = np.exp(-0.5 * t * t)
    low = t < -al
    if low.any():
        a_l = (nl / al) ** nl * math.exp(-0.5 * al * al)
        out[low] = a_l * (nl / al - al - t[low]) ** (-nl)
    high = t > ah
    if high.any():
        a_h = (nh / ah) ** nh * math.exp(-0.5 * ah * ah)
        out[high] = a_h * (nh / ah - ah + t[high]) ** (-nh)
    return out


@dataclass(frozen=True)
class MassModel:
    """Signal and background mass shapes on a window (all masses in MeV).

    Parameters
    ----------
    low, high : float
        Mass window (MeV).
    mean, sigma : float
        Signal peak position and core width (MeV).
    alpha_low, n_low, alpha_high, n_high : float
        Crystal Ball tails (in units of ``sigma``; exponents > 1).
    slope : float
        Background exponential slope (MeV^-1): density ``∝ exp(-slope (m - low))``.
    """

    low: float = 3000.0
    high: float = 3200.0
    mean: float = 3096.9
    sigma: float = 14.0
    alpha_low: float = 1.8
    n_low: float = 3.0
    alpha_high: float = 3.0
    n_high: float = 10.0
    slope: float = 3.0e-3

    @property
    def tails(self) -> tuple[float, float, float, float]:
        """``(alpha_low, n_low, alpha_high, n_high)``."""
        return (self.alpha_low, self.n_low, self.alpha_high, self.n_high)

    def signal_pdf(self, mass: np.ndarray) -> np.ndarray:
        """Normalised signal density on the window (MeV^-1), shape of ``mass``; 0 outside."""
        m = np.asarray(mass, dtype=np.float64)
        t = (m - self.mean) / self.sigma
        norm = self.sigma * _cb_integral(
            (self.low - self.mean) / self.sigma, (self.high - self.mean) / self.sigma, *self.tails
        )
        out = _cb_shape(t, *self.tails) / norm
        return np.where((m >= self.low) & (m <= self.high), out, 0.0)

    def background_pdf(self, mass: np.ndarray) -> np.ndarray:
        """Normalised background density on the window (MeV^-1), shape of ``mass``; 0 outside."""
        m = np.asarray(mass, dtype=np.float64)
        width = self.high - self.low
        k = self.slope
        norm = width if abs(k * width) < 1e-12 else -math.expm1(-k * width) / k
        out = np.exp(-k * (m - self.low)) / norm
        return np.where((m >= self.low) & (m <= self.high), out, 0.0)

    def sample_signal(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Draw ``size`` signal masses (MeV) inside the window, shape (size,)."""
        m = self.mean + self.sigma * crystal_ball(rng, size, *self.tails)
        bad = np.flatnonzero((m < self.low) | (m > self.high))
        while len(bad):
            m[bad] = self.mean + self.sigma * crystal_ball(rng, len(bad), *self.tails)
            bad = bad[(m[bad] < self.low) | (m[bad] > self.high)]
        return m

    def sample_background(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """Draw ``size`` background masses (MeV) inside the window, shape (size,)."""
        u = rng.random(size)
        width = self.high - self.low
        k = self.slope
        if abs(k * width) < 1e-12:
            return self.low + width * u
        return self.low - np.log1p(u * np.expm1(-k * width)) / k


@dataclass(frozen=True)
class SPlotFit:
    """Result of :func:`fit_splot`: fitted yields and shapes, and the sWeights they define.

    Attributes
    ----------
    model : MassModel
        The mass model with the fitted ``mean``, ``sigma`` and ``slope``.
    signal_yield, background_yield : float
        Fitted yields ``N_s``, ``N_b`` (candidates).
    covariance : tuple of tuple of float
        ``V``, the 2 x 2 covariance matrix of ``(N_s, N_b)`` with the shapes fixed (the sPlot
        matrix).
    n_candidates : int
        Number of masses fitted.
    converged : bool
        Whether the optimiser reported success and the yield gradient vanished.
    """

    model: MassModel
    signal_yield: float
    background_yield: float
    covariance: tuple[tuple[float, float], tuple[float, float]]
    n_candidates: int
    converged: bool

    def densities(self, mass: np.ndarray) -> np.ndarray:
        """``(f_s, f_b)`` at ``mass``: array of shape (2, n), MeV^-1."""
        return np.stack([self.model.signal_pdf(mass), self.model.background_pdf(mass)])

    def sweights(self, mass: np.ndarray, species: int = 0) -> np.ndarray:
        """sWeights of ``species`` (0 signal, 1 background) at ``mass``, shape (n,).

        ``sw(m) = sum_k V_jk f_k(m) / (N_s f_s(m) + N_b f_b(m))``; masses outside the window
        get 0.
        """
        f = self.densities(mass)
        denom = self.signal_yield * f[0] + self.background_yield * f[1]
        v = np.asarray(self.covariance)[species]
        num = v[0] * f[0] + v[1] * f[1]
        return np.divide(num, denom, out=np.zeros_like(num), where=denom > 0)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON summary (yields, their sPlot errors, shapes, convergence)."""
        cov = np.asarray(self.covariance)
        return {
            "signal_yield": self.signal_yield,
            "signal_yield_error": float(math.sqrt(max(cov[0, 0], 0.0))),
            "background_yield": self.background_yield,
            "background_yield_error": float(math.sqrt(max(cov[1, 1], 0.0))),
            "mean": self.model.mean,
            "sigma": self.model.sigma,
            "slope": self.model.slope,
            "n_candidates": self.n_candidates,
            "converged": self.converged,
        }


def _yield_hessian(f: np.ndarray, yields: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradient ``1 - sum f_j / D`` and Hessian ``sum f_j f_k / D^2`` of -ln L in the yields."""
    denom = yields @ f
    ratio = f / denom
    grad = 1.0 - ratio.sum(axis=1)
    return grad, ratio @ ratio.T


def fit_splot(mass: np.ndarray, start: MassModel | None = None) -> SPlotFit:
    """Extended maximum-likelihood fit of signal + background masses, and its sPlot matrix.

    Parameters
    ----------
    mass : array_like of shape (n,)
        Candidate masses (MeV), all inside the window of ``start``.
    start : MassModel, optional
        Window, fixed tail parameters and starting values of ``mean``, ``sigma``, ``slope``
        (default :class:`MassModel`).

    Returns
    -------
    SPlotFit
        Fitted yields and shapes; :meth:`SPlotFit.sweights` gives the sWeights.

    Raises
    ------
    InputError
        Fewer than :data:`MIN_CANDIDATES` masses, non-finite masses or masses outside the
        window.
    """
    start = start if start is not None else MassModel()
    m = np.asarray(mass, dtype=np.float64).ravel()
    n = len(m)
    if n < MIN_CANDIDATES:
        raise InputError(f"the sPlot mass fit needs at least {MIN_CANDIDATES} candidates, got {n}")
    outside = int(np.count_nonzero(~((m >= start.low) & (m <= start.high))))
    if outside:
        raise InputError(
            f"{outside} of {n} masses are not finite values inside the fit window "
            f"[{start.low:g}, {start.high:g}] MeV"
        )

    def model_of(p: np.ndarray) -> MassModel:
        return replace(start, mean=float(p[2]), sigma=math.exp(p[3]), slope=float(p[4]) * 1e-3)

    def nll(p: np.ndarray) -> float:
        mm = model_of(p)
        dens = n * (p[0] * mm.signal_pdf(m) + p[1] * mm.background_pdf(m))
        return float(n * (p[0] + p[1]) - np.sum(np.log(np.maximum(dens, 1e-300)))) / n

    width = start.high - start.low
    p0 = np.array([0.5, 0.5, start.mean, math.log(start.sigma), start.slope * 1e3])
    bounds = [
        (0.0, 2.0),
        (0.0, 2.0),
        (start.low + 0.05 * width, start.high - 0.05 * width),
        (math.log(width / 1000.0), math.log(width / 2.0)),
        (-50.0 / width * 1e3, 50.0 / width * 1e3),
    ]
    result = optimize.minimize(nll, p0, method="L-BFGS-B", bounds=bounds)
    model = model_of(result.x)
    f = np.stack([model.signal_pdf(m), model.background_pdf(m)])
    yields = np.maximum(result.x[:2] * n, 1e-3 * n)
    # Newton steps in the yields with the shapes fixed: makes sum(sw) equal N_s to rounding
    for _ in range(20):
        grad, hess = _yield_hessian(f, yields)
        step = np.linalg.solve(hess, grad)
        yields = np.maximum(yields - step, 1e-6 * n)
        if np.all(np.abs(step) < 1e-10 * n):
            break
    grad, hess = _yield_hessian(f, yields)
    cov = np.linalg.inv(hess)
    converged = bool(result.success) and bool(np.all(np.abs(grad) < 1e-6))
    return SPlotFit(
        model=model,
        signal_yield=float(yields[0]),
        background_yield=float(yields[1]),
        covariance=((float(cov[0, 0]), float(cov[0, 1])), (float(cov[1, 0]), float(cov[1, 1]))),
        n_candidates=n,
        converged=converged,
    )
