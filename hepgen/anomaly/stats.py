r"""Statistics of a sliding-window bump hunt in a resonance variable ``m`` (dijet mass, TeV).

A weakly supervised resonance search (ANODE, CATHODE) selects the most anomalous events in
a signal region (SR) ``[lo, hi)`` of ``m`` and compares the number selected with the
number a smooth background would give.  This module holds the statistics of that last step.

Background fit in the sidebands
-------------------------------
The QCD dijet mass spectrum is described by the standard dijet function of the ATLAS and
CMS resonance searches,

.. math::  f(m) = p_0 \, (1 - x)^{p_1} \, x^{-(p_2 + p_3 \ln x)}, \qquad x = m / \sqrt{s},

a density in events per TeV (:func:`dijet_function`; ``p3 = 0`` gives the 3-parameter
form).  :func:`fit_sidebands` fits it to the events of a fit range with the signal region
blinded: a binned, *extended* Poisson maximum-likelihood fit,

.. math::  -\ln L = \sum_i \left[\nu_i(p) - n_i \ln \nu_i(p)\right],
           \qquad \nu_i = \int_{\mathrm{bin}\ i} f(m)\, dm,

with the expectation of each bin integrated by 8-point Gauss-Legendre quadrature (the
spectrum falls by a large factor across a wide bin, so the centre value would be biased).
The bins end exactly on ``lo`` and ``hi``, so no bin straddles the blinded region.

``ln f`` is *linear* in ``(ln p0, p1, p2, p3)``, with the basis
``(1, ln(1 - x), -ln x, -(ln x)^2)``.  The fit therefore works in an orthonormalised
version of that basis (QR decomposition over the quadrature nodes of the fitted bins):
the classic parameters are extremely correlated (|rho| > 0.999), the orthonormal ones are
not.  The starting values are a weighted linear least-squares fit of ``ln(n_i / width_i)``
(no iteration needed), the minimiser is :func:`scipy.optimize.minimize` with the
``trust-exact`` method on the analytic gradient and Hessian, and the covariance is the
inverse of the (analytic) Hessian of ``-ln L`` at the minimum, transformed linearly back
to the classic parameters (``p0`` by its Jacobian).  When the 4-parameter fit fails
(no convergence, or a Hessian that is not positive definite) the 3-parameter form is fitted
instead and :attr:`SidebandFit.n_parameters` says so.  With per-event weights the bin
contents are the sums of weights, and the covariance is the sandwich estimate
``H^-1 V H^-1`` with ``V`` built from the sums of squared weights (for unit weights it equals
``H^-1`` at the minimum up to ``n_i / nu_i``).

The goodness of fit is Pearson's chi2 on the fitted bins, adjacent bins of a sideband merged
until each group expects at least 5 events, with ``ndf = groups - n_parameters``.

Significance of the count in the signal region
----------------------------------------------
:func:`significance` is the profile-likelihood significance of a counting experiment with
``n`` observed events, an expected background ``b`` and a Gaussian uncertainty ``sigma_b``
on ``b`` (Cowan, Cranmer, Gross, Vitells, eq. (20) of the 2011 paper with the observed ``n``
in place of the Asimov ``s + b``):

.. math::  Z^2 = 2\left[n \ln\frac{n (b + \sigma^2)}{b^2 + n \sigma^2}
                  - \frac{b^2}{\sigma^2} \ln\left(1 + \frac{\sigma^2 (n - b)}{b (b + \sigma^2)}
                  \right)\right],

which for ``sigma_b = 0`` is ``Z^2 = 2 [n ln(n / b) - (n - b)]``.  ``Z`` is signed: negative
for a deficit (``n < b``).  Under the background-only hypothesis it is asymptotically a
standard normal variable (Wilks); :func:`poisson_pvalue` gives the exact Poisson tail.

Selection and performance
-------------------------
:func:`threshold_at_efficiency` gives the score cut that keeps a chosen (weighted) fraction of
a background-like sample; :func:`roc_sic` gives the ROC curve, the AUC and the significance
improvement characteristic ``SIC = eps_S / sqrt(eps_B)`` (the factor by which the cut raises
``S / sqrt(B)``), with its maximum taken only where the background efficiency is measured
by enough events (see :func:`roc_sic`).

References
----------
G. Cowan, K. Cranmer, E. Gross, O. Vitells, "Asymptotic formulae for likelihood-based tests of
new physics", Eur. Phys. J. C 71 (2011) 1554, arXiv:1007.1727 (significance).
CMS Collaboration, "Search for high mass dijet resonances with a new background prediction
method in proton-proton collisions at 13 TeV", JHEP 05 (2020) 033, arXiv:1911.03947, and
ATLAS Collaboration, "Search for new resonances in mass distributions of jet pairs using
139 fb^-1 of pp collisions at 13 TeV", JHEP 03 (2020) 145, arXiv:1910.08447 (dijet function).
B. Nachman, D. Shih, "Anomaly detection with density estimation", Phys. Rev. D 101 (2020)
075042, arXiv:2001.04990 (ANODE, SIC), and A. Hallin et al., "Classifying anomalies through
outer density estimation", Phys. Rev. D 106 (2022) 055006, arXiv:2109.00546 (CATHODE).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize, special, stats
from sklearn import metrics

from hepgen.errors import InputError
from hepgen.utils import check_weights, to_jsonable

__all__ = [
    "MIN_SIDEBAND_EVENTS",
    "ROC",
    "SidebandFit",
    "dijet_function",
    "fit_sidebands",
    "poisson_pvalue",
    "roc_sic",
    "significance",
    "significances",
    "threshold_at_efficiency",
]

#: Fewest events (sum of both sidebands) for which :func:`fit_sidebands` attempts a fit.
MIN_SIDEBAND_EVENTS = 20
#: Events a background efficiency must rest on for SIC to count (see :func:`roc_sic`).
MIN_SIC_BACKGROUND = 20.0
#: Lower bound on the background efficiency used for the maximum SIC (see :func:`roc_sic`).
MIN_SIC_FPR = 1e-4

# Gauss-Legendre quadrature: nodes per fitted bin, and nodes per piece (at most _PIECE TeV
# long) of SidebandFit.integral.  Both integrate the smooth dijet function to ~1e-12.
_NODES_PER_BIN = 8
_NODES_PER_PIECE = 16
_PIECE = 0.25
# Pearson chi2: merge adjacent bins until each group expects at least this many events.
_CHI2_MIN_EXPECTED = 5.0
# A fit has converged when the Newton decrement sqrt(g^T H^-1 g) of -ln L is below this.
_NEWTON_DECREMENT_TOL = 1e-3


# ------------------------------------------------------------------------------ dijet function
def _basis(m: np.ndarray, sqrt_s: float, k: int) -> np.ndarray:
    """``(1, ln(1 - x), -ln x, -(ln x)^2)[:k]`` at ``x = m / sqrt_s``: shape ``m.shape + (k,)``.

    ``ln f = basis @ (ln p0, p1, p2, p3)``.
    """
    x = np.asarray(m, dtype=np.float64) / sqrt_s
    lx = np.log(x)
    cols = [np.ones_like(x), np.log1p(-x), -lx, -lx * lx]
    return np.stack(cols[:k], axis=-1)


def _check_params(params: Sequence[float]) -> np.ndarray:
    p = np.asarray(params, dtype=np.float64).ravel()
    if p.size == 3:
        p = np.append(p, 0.0)
    if p.size != 4:
        raise InputError(
            f"dijet function: expected 3 or 4 parameters (p0, p1, p2[, p3]), got {p.size}"
        )
    if not np.isfinite(p).all():
        raise InputError(f"dijet function: parameters must be finite, got {p.tolist()}")
    return p


def _check_sqrt_s(sqrt_s: float) -> float:
    s = float(sqrt_s)
    if not (math.isfinite(s) and s > 0):
        raise InputError(f"sqrt_s must be a positive number of TeV, got {sqrt_s!r}")
    return s


def dijet_function(m: np.ndarray, params: Sequence[float], sqrt_s: float = 13.0) -> np.ndarray:
    r"""The dijet function ``f(m) = p0 (1 - x)^p1 / x^(p2 + p3 ln x)``, ``x = m / sqrt_s``.

    Parameters
    ----------
    m : array_like of shape (n,) (any shape), TeV
        Dijet masses.
    params : sequence of 3 or 4 floats
        ``(p0, p1, p2, p3)``; with 3 values ``p3 = 0``.  ``p0`` is the normalisation in
        events per TeV (the value of ``f`` where ``(1 - x) = x = 1`` would be).
    sqrt_s : float
        Collision energy in TeV (default 13).

    Returns
    -------
    np.ndarray, same shape as ``m``, events per TeV
        ``f(m)``; 0 where ``m <= 0`` or ``m >= sqrt_s`` (outside the physical range).

    Examples
    --------
    >>> float(dijet_function(6.5, [1.0, 1.0, 1.0, 0.0], sqrt_s=13.0))
    1.0
    """
    p = _check_params(params)
    s = _check_sqrt_s(sqrt_s)
    m = np.asarray(m, dtype=np.float64)
    inside = (m > 0) & (m < s)
    safe = np.where(inside, m, 0.5 * s)
    theta = np.array([math.log(abs(p[0])) if p[0] != 0 else 0.0, p[1], p[2], p[3]])
    with np.errstate(over="ignore"):
        value = np.sign(p[0]) * np.exp(_basis(safe, s, 4) @ theta)
    return np.where(inside, value, 0.0)


def _gauss_legendre(a: np.ndarray, b: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights, shape ``a.shape + (n,)``, of n-point Gauss-Legendre on ``[a, b]``."""
    t, w = np.polynomial.legendre.leggauss(n)
    a = np.asarray(a, dtype=np.float64)[..., None]
    b = np.asarray(b, dtype=np.float64)[..., None]
    half = 0.5 * (b - a)
    return a + half * (t + 1.0), half * w


# ------------------------------------------------------------------------------ sideband fit
@dataclass(frozen=True, eq=False)
class SidebandFit:
    """Result of :func:`fit_sidebands`: the dijet function fitted with the SR blinded.

    Attributes
    ----------
    params : np.ndarray of shape (4,)
        Fitted ``(p0, p1, p2, p3)`` of :func:`dijet_function` (``p0`` in events per TeV;
        ``p3 = 0`` for the 3-parameter form).
    covariance : np.ndarray of shape (4, 4)
        Covariance of ``params`` (inverse Hessian of ``-ln L``); row and column 3 are zero for
        the 3-parameter form.  The classic parameters are strongly correlated and ``p0`` is
        often known only to tens of per cent, so that its linear error is a poor summary
        (``ln p0`` is close to Gaussian: ``cov[0] / p0``); :meth:`integral_error` is exact to
        first order all the same.
    n_parameters : int
        3 or 4: the form that was fitted.
    chi2 : float
        Pearson chi2 of the fitted sideband bins (merged to expect >= 5 events each).
    ndf : int
        Number of bin groups minus ``n_parameters``.
    pvalue : float
        ``P(chi2_ndf >= chi2)``; NaN when ``ndf <= 0``.
    lo, hi : float
        Edges of the blinded signal region ``[lo, hi)`` in TeV.
    sqrt_s : float
        Collision energy in TeV.
    fit_range : tuple of float
        The fitted range ``(a, b)`` in TeV (the SR inside it excluded).
    n_left, n_right : float
        Events (sums of weights) in the lower ``[a, lo)`` and upper ``[hi, b]`` sideband
        (all of them, also those outside the fitted bins when explicit edges leave gaps).
    bin_edges : np.ndarray of shape (k, 2)
        Low and high edge (TeV) of each fitted bin.
    observed, expected : np.ndarray of shape (k,)
        Events (sums of weights) and fitted expectation in each fitted bin.
    note : str
        How the fit was obtained when not the requested form (e.g. the 3-parameter fallback).
    """

    params: np.ndarray
    covariance: np.ndarray
    n_parameters: int
    chi2: float
    ndf: int
    pvalue: float
    lo: float
    hi: float
    sqrt_s: float
    fit_range: tuple[float, float] = (math.nan, math.nan)
    n_left: float = 0.0
    n_right: float = 0.0
    bin_edges: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    observed: np.ndarray = field(default_factory=lambda: np.zeros(0))
    expected: np.ndarray = field(default_factory=lambda: np.zeros(0))
    note: str = ""

    def density(self, m: np.ndarray) -> np.ndarray:
        """Fitted density at ``m``.

        Parameters
        ----------
        m : array_like, TeV

        Returns
        -------
        np.ndarray, same shape as ``m``, events per TeV
        """
        return dijet_function(m, self.params, self.sqrt_s)

    def _integrals(self, a: float, b: float) -> np.ndarray:
        """``[∫f, ∫f·basis_1, ∫f·basis_2, ∫f·basis_3]`` over [a, b]: the integral and its
        gradient with respect to ``(ln p0, p1, p2, p3)``."""
        a, b = float(a), float(b)
        if not (math.isfinite(a) and math.isfinite(b)):
            raise InputError(f"integral: limits must be finite, got [{a}, {b}]")
        if b < a:
            raise InputError(f"integral: upper limit {b} TeV is below the lower limit {a} TeV")
        if a <= 0 or b >= self.sqrt_s:
            raise InputError(
                f"integral: [{a}, {b}] TeV must lie inside (0, sqrt_s = {self.sqrt_s}) TeV"
            )
        if b == a:
            return np.zeros(4)
        n_pieces = max(1, math.ceil((b - a) / _PIECE))
        edges = np.linspace(a, b, n_pieces + 1)
        nodes, w = _gauss_legendre(edges[:-1], edges[1:], _NODES_PER_PIECE)
        nodes, w = nodes.ravel(), w.ravel()
        basis = _basis(nodes, self.sqrt_s, 4)
        f = self.density(nodes)
        return (w * f) @ basis

    def integral(self, a: float, b: float) -> float:
        """Expected number of events (sum of weights) in ``[a, b]``.

        Parameters
        ----------
        a, b : float, TeV
            Limits, ``0 < a <= b < sqrt_s``; may extend beyond the fit range (extrapolation).

        Returns
        -------
        float
            ``∫_a^b f(m) dm`` (Gauss-Legendre, 16 nodes per 0.25 TeV), events.
        """
        return float(self._integrals(a, b)[0])

    def integral_error(self, a: float, b: float) -> float:
        """One-sigma uncertainty of :meth:`integral` from the fit covariance.

        Linear error propagation with the exact gradient: ``d I / d ln p0 = I`` and
        ``d I / d p_k = ∫ f(m) d ln f / d p_k dm``, integrated like :meth:`integral`.

        Parameters
        ----------
        a, b : float, TeV
            Limits as for :meth:`integral`.

        Returns
        -------
        float
            ``sqrt(g^T C g)``, events.
        """
        g = self._integrals(a, b)
        p0 = float(self.params[0])
        if p0 == 0:
            return math.nan
        # gradient with respect to p0 rather than ln p0
        g = np.array([g[0] / p0, g[1], g[2], g[3]])
        var = float(g @ np.asarray(self.covariance) @ g)
        return math.sqrt(max(var, 0.0))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (lists, floats, ints, str); NaN and inf become ``None``.

        Returns
        -------
        dict
            Every attribute; arrays as (nested) lists.
        """
        return to_jsonable(
            {
                "params": self.params,
                "covariance": self.covariance,
                "n_parameters": int(self.n_parameters),
                "chi2": self.chi2,
                "ndf": int(self.ndf),
                "pvalue": self.pvalue,
                "lo": self.lo,
                "hi": self.hi,
                "sqrt_s": self.sqrt_s,
                "fit_range": list(self.fit_range),
                "n_left": self.n_left,
                "n_right": self.n_right,
                "bin_edges": self.bin_edges,
                "observed": self.observed,
                "expected": self.expected,
                "note": self.note,
            }
        )


def _as_masses(m: Any, weights: Any) -> tuple[np.ndarray, np.ndarray | None]:
    arr = np.asarray(m, dtype=np.float64).ravel()
    bad = ~np.isfinite(arr)
    if bad.any():
        raise InputError(
            f"m: {int(bad.sum())} of {arr.size} values are NaN or infinite; drop them first"
        )
    return arr, check_weights(weights, arr.size, "fit_sidebands")


def _sideband_edges(a: float, lo: float, hi: float, b: float, bins: int | np.ndarray) -> np.ndarray:
    """Fitted bins as an ``(k, 2)`` array of (low, high) edges, none overlapping [lo, hi)."""
    if np.ndim(bins) == 0:
        n = int(bins)
        if n != bins or n < 1:
            raise InputError(f"bins: expected a positive integer or an array of edges, got {bins}")
        width = (b - a) / n
        parts = []
        for left, right in ((a, lo), (hi, b)):
            if right > left:
                k = max(1, round((right - left) / width))
                e = np.linspace(left, right, k + 1)
                parts.append(np.stack([e[:-1], e[1:]], axis=1))
        return np.concatenate(parts) if parts else np.zeros((0, 2))
    e = np.asarray(bins, dtype=np.float64).ravel()
    if e.size < 2 or not np.isfinite(e).all() or np.any(np.diff(e) <= 0):
        raise InputError(
            "bins: an array of bin edges must be finite and strictly increasing "
            f"with at least 2 values, got {e.size} values"
        )
    pairs = np.stack([e[:-1], e[1:]], axis=1)
    # keep bins inside the fit range and entirely outside the signal region; the slack absorbs
    # rounding of edges meant to coincide with a, lo, hi or b (e.g. from np.arange)
    eps = 1e-9 * (b - a)
    keep = (
        (pairs[:, 0] >= a - eps)
        & (pairs[:, 1] <= b + eps)
        & ((pairs[:, 1] <= lo + eps) | (pairs[:, 0] >= hi - eps))
    )
    return pairs[keep]


class _PoissonModel:
    """Extended binned Poisson likelihood of ``ln f = g(m) @ c`` with an orthonormal basis g.

    ``g = H R^-1`` with ``H`` the classic basis at the quadrature nodes and ``H / sqrt(N) = Q R``
    (QR), so that ``theta = (ln p0, p1, ...) = R^-1 c``.
    """

    def __init__(self, pairs: np.ndarray, counts: np.ndarray, sqrt_s: float, k: int) -> None:
        self.k = k
        self.counts = counts
        nodes, w = _gauss_legendre(pairs[:, 0], pairs[:, 1], _NODES_PER_BIN)
        self.w = w  # (bins, nodes)
        h = _basis(nodes, sqrt_s, k)  # (bins, nodes, k)
        n_nodes = h.shape[0] * h.shape[1]
        _, r = np.linalg.qr(h.reshape(n_nodes, k) / math.sqrt(n_nodes))
        self.r = r
        self.g = np.linalg.solve(r.T, h.reshape(n_nodes, k).T).T.reshape(h.shape)
        self.scale = max(float(np.sum(np.abs(counts))), 1.0)
        centres = 0.5 * (pairs[:, 0] + pairs[:, 1])
        self.g_centre = np.linalg.solve(r.T, _basis(centres, sqrt_s, k).T).T
        self.widths = pairs[:, 1] - pairs[:, 0]

    def parts(self, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Bin expectations (bins,), their gradients (bins, k) and Hessians (bins, k, k)."""
        with np.errstate(over="ignore"):
            wf = self.w * np.exp(self.g @ c)  # (bins, nodes)
        nu = wf.sum(axis=1)
        dnu = np.einsum("bn,bnk->bk", wf, self.g)
        d2nu = np.einsum("bn,bnk,bnl->bkl", wf, self.g, self.g)
        return nu, dnu, d2nu

    def nll(self, c: np.ndarray) -> tuple[float, np.ndarray]:
        nu, dnu, _ = self.parts(c)
        if not np.all(np.isfinite(nu)) or np.any(nu <= 0):
            return math.inf, np.zeros(self.k)
        val = float(np.sum(nu - special.xlogy(self.counts, nu)))
        grad = (1.0 - self.counts / nu) @ dnu
        return val / self.scale, grad / self.scale

    def hessian(self, c: np.ndarray) -> np.ndarray:
        nu, dnu, d2nu = self.parts(c)
        ratio = self.counts / nu
        h = np.einsum("b,bkl->kl", 1.0 - ratio, d2nu)
        h += np.einsum("b,bk,bl->kl", ratio / nu, dnu, dnu)
        return h

    def start(self) -> np.ndarray:
        """Weighted linear least squares of ``ln(n_i / width_i)`` at the bin centres."""
        n = np.maximum(self.counts, 0.5)
        y = np.log(n / self.widths)
        sw = np.sqrt(n)
        c, *_ = np.linalg.lstsq(self.g_centre * sw[:, None], y * sw, rcond=None)
        # fix the normalisation exactly: shift ln p0 by ln(sum n / sum nu)
        nu, _, _ = self.parts(c)
        total = float(np.sum(self.counts))
        if total > 0 and np.all(np.isfinite(nu)) and nu.sum() > 0:
            c = c + math.log(total / nu.sum()) * self.r[:, 0]
        return c

    def fit(self) -> tuple[np.ndarray, np.ndarray, bool, str]:
        """Minimise; return c, the Hessian of -ln L at c, whether it converged, and why not."""
        c0 = self.start()
        best = None
        for method in ("trust-exact", "Newton-CG"):
            try:
                res = optimize.minimize(
                    self.nll,
                    c0,
                    jac=True,
                    method=method,
                    hess=lambda c: self.hessian(c) / self.scale,
                    options={"gtol": 1e-10} if method == "trust-exact" else {"xtol": 1e-12},
                )
            except (ValueError, np.linalg.LinAlgError, FloatingPointError) as err:
                best = best or (c0, f"{method} failed: {err}")
                continue
            c = np.asarray(res.x, dtype=np.float64)
            ok, why = self._converged(c)
            if ok:
                return c, self.hessian(c), True, ""
            best = (c, f"{method}: {why}")
            c0 = c
        c, why = best
        return c, np.full((self.k, self.k), np.nan), False, why

    def _converged(self, c: np.ndarray) -> tuple[bool, str]:
        if not np.all(np.isfinite(c)):
            return False, "non-finite parameters"
        val, grad = self.nll(c)
        if not math.isfinite(val):
            return False, "non-finite likelihood"
        h = self.hessian(c)
        try:
            chol = np.linalg.cholesky(h)
        except np.linalg.LinAlgError:
            return False, "Hessian of -ln L not positive definite"
        step = np.linalg.solve(chol, grad * self.scale)
        decrement = float(np.sqrt(step @ step))
        if not decrement < _NEWTON_DECREMENT_TOL:
            return False, f"not converged (Newton decrement {decrement:.3g})"
        return True, ""


# ln p0 beyond this: p0 (and p0^2 in the covariance) leave the floating-point range; such a
# fit extrapolates wildly (typically 4 parameters on a few dozen events) and counts as failed.
_MAX_LOG_P0 = 300.0


def _classic_parameters(
    model: _PoissonModel, c: np.ndarray, hess: np.ndarray, sumw2: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, str]:
    """``(p0, p1, p2, p3)`` and their covariance from the orthonormal coefficients ``c``.

    Returns the parameters (4,), the covariance (4, 4) and ``""``, or a reason for failure.
    """
    k = model.k
    hinv = np.linalg.inv(hess)
    if sumw2 is not None:
        # sandwich estimate: Var(n_i) = sum of squared weights
        nu, dnu, _ = model.parts(c)
        v = np.einsum("b,bk,bl->kl", sumw2 / nu**2, dnu, dnu)
        cov_c = hinv @ v @ hinv
    else:
        cov_c = hinv
    rinv = np.linalg.inv(model.r)
    theta = rinv @ c
    cov_theta = rinv @ cov_c @ rinv.T
    if not abs(theta[0]) < _MAX_LOG_P0:
        return np.zeros(4), np.zeros((4, 4)), f"ln p0 = {theta[0]:.4g} out of range"
    p0 = math.exp(theta[0])
    params = np.zeros(4)
    params[:k] = theta
    params[0] = p0
    jac = np.ones(k)
    jac[0] = p0
    cov = np.zeros((4, 4))
    cov[:k, :k] = cov_theta * np.outer(jac, jac)
    if not (np.isfinite(params).all() and np.isfinite(cov).all()):
        return params, cov, "non-finite parameters or covariance"
    return params, cov, ""


def _pearson_chi2(
    pairs: np.ndarray,
    observed: np.ndarray,
    expected: np.ndarray,
    sumw2: np.ndarray,
    lo: float,
    weighted: bool,
) -> tuple[float, int]:
    """Pearson chi2 and number of groups (adjacent bins of a sideband merged to expect >= 5)."""
    chi2 = 0.0
    n_groups = 0
    for side in (pairs[:, 1] <= lo, pairs[:, 0] >= lo):
        idx = np.flatnonzero(side)
        groups: list[list[int]] = []
        current: list[int] = []
        acc = 0.0
        for i in idx:
            current.append(int(i))
            acc += expected[i]
            if acc >= _CHI2_MIN_EXPECTED:
                groups.append(current)
                current, acc = [], 0.0
        if current:
            if groups:
                groups[-1].extend(current)
            else:
                groups.append(current)
        for grp in groups:
            n, nu = observed[grp].sum(), expected[grp].sum()
            var = nu
            if weighted and observed[grp].sum() > 0:
                # compound Poisson: Var = nu * <w^2> / <w>
                var = nu * sumw2[grp].sum() / observed[grp].sum()
            if var > 0:
                chi2 += (n - nu) ** 2 / var
            n_groups += 1
    return float(chi2), n_groups


def fit_sidebands(
    m: np.ndarray,
    lo: float,
    hi: float,
    fit_range: tuple[float, float],
    *,
    bins: int | np.ndarray = 60,
    n_parameters: int = 4,
    weights: np.ndarray | None = None,
    sqrt_s: float = 13.0,
) -> SidebandFit:
    """Fit the dijet function to the sidebands of ``[lo, hi)`` (binned extended Poisson ML).

    Parameters
    ----------
    m : np.ndarray of shape (n,), TeV
        Resonance variable of every event (events outside ``fit_range`` are ignored).
    lo, hi : float, TeV
        Signal region ``[lo, hi)``, blinded: ``fit_range[0] <= lo < hi <= fit_range[1]``.
    fit_range : tuple of 2 floats, TeV
        ``(a, b)`` with ``0 < a < b < sqrt_s``; the sidebands are ``[a, lo)`` and ``[hi, b]``.
    bins : int or np.ndarray
        Integer: a nominal number of bins over the whole fit range; each sideband gets
        ``round(width / nominal_width)`` (at least 1) equal bins ending exactly on ``lo`` and
        ``hi``.  Array: bin edges (TeV); only bins entirely inside ``fit_range`` and entirely
        outside ``[lo, hi)`` are fitted (straddling bins are dropped with their events).
    n_parameters : int
        4 (default) or 3 (``p3 = 0``).  A failed 4-parameter fit falls back to 3 parameters.
    weights : np.ndarray of shape (n,) or None
        Per-event weights; bin contents are sums of weights and the covariance is the
        sandwich estimate (see the module docstring).
    sqrt_s : float
        Collision energy in TeV (default 13).

    Returns
    -------
    SidebandFit

    Raises
    ------
    InputError
        If ``[lo, hi]`` is not inside ``fit_range``, the range is not inside
        ``(0, sqrt_s)``, the sidebands hold fewer than :data:`MIN_SIDEBAND_EVENTS` events,
        there are too few bins for the parameters, or no fit converges.
    """
    s = _check_sqrt_s(sqrt_s)
    if n_parameters not in (3, 4):
        raise InputError(f"n_parameters: expected 3 or 4, got {n_parameters!r}")
    try:
        a, b = (float(v) for v in fit_range)
    except (TypeError, ValueError) as err:
        raise InputError(
            f"fit_range: expected two numbers (low, high) in TeV, got {fit_range!r}"
        ) from err
    lo, hi = float(lo), float(hi)
    if not all(math.isfinite(v) for v in (a, b, lo, hi)):
        raise InputError(f"fit range [{a}, {b}] and signal region [{lo}, {hi}] must be finite")
    if not 0 < a < b < s:
        raise InputError(f"fit_range ({a}, {b}) TeV must satisfy 0 < low < high < sqrt_s = {s} TeV")
    if not a <= lo < hi <= b:
        raise InputError(
            f"signal region [{lo}, {hi}] TeV must lie inside the fit range [{a}, {b}] TeV "
            "with lo < hi"
        )
    m, w = _as_masses(m, weights)
    ones = np.ones_like(m) if w is None else w
    left = (m >= a) & (m < lo)
    right = (m >= hi) & (m <= b)
    n_left, n_right = int(left.sum()), int(right.sum())
    if n_left + n_right < MIN_SIDEBAND_EVENTS:
        raise InputError(
            f"sideband fit around [{lo}, {hi}] TeV: {n_left} events in the lower sideband "
            f"[{a}, {lo}) and {n_right} in the upper sideband [{hi}, {b}] TeV, "
            f"{n_left + n_right} in all; at least {MIN_SIDEBAND_EVENTS} are needed"
        )
    pairs = _sideband_edges(a, lo, hi, b, bins)
    if len(pairs) < n_parameters + 1:
        raise InputError(
            f"sideband fit: {len(pairs)} bins outside the signal region [{lo}, {hi}] TeV, "
            f"need at least {n_parameters + 1} for {n_parameters} parameters; use more bins"
        )
    # histogram each fitted bin; the last bin of the upper sideband includes b
    sel = left | right
    ms, ws = m[sel], ones[sel]
    idx = np.searchsorted(pairs[:, 0], ms, side="right") - 1
    inside = (idx >= 0) & (ms < pairs[np.clip(idx, 0, None), 1])
    inside |= (idx == len(pairs) - 1) & (ms == pairs[-1, 1])
    idx, ws = idx[inside], ws[inside]
    observed = np.bincount(idx, weights=ws, minlength=len(pairs)).astype(np.float64)
    sumw2 = np.bincount(idx, weights=ws * ws, minlength=len(pairs)).astype(np.float64)

    note = ""
    attempts = [4, 3] if n_parameters == 4 else [3]
    for k in attempts:
        model = _PoissonModel(pairs, observed, s, k)
        c, hess, ok, why = model.fit()
        if ok:
            params, cov, why = _classic_parameters(model, c, hess, sumw2 if w is not None else None)
            if not why:
                break
        note += f"{k}-parameter fit failed ({why}); "
    else:
        raise InputError(
            f"sideband fit around [{lo}, {hi}] TeV did not converge ({note.rstrip('; ')}); "
            f"{n_left} and {n_right} events in the two sidebands"
        )
    if k != n_parameters:
        note += "used the 3-parameter form"
    note = note.rstrip("; ")

    expected, _, _ = model.parts(c)
    chi2, n_groups = _pearson_chi2(pairs, observed, expected, sumw2, lo, w is not None)
    ndf = n_groups - k
    pvalue = float(stats.chi2.sf(chi2, ndf)) if ndf > 0 else math.nan
    return SidebandFit(
        params=params,
        covariance=cov,
        n_parameters=k,
        chi2=chi2,
        ndf=int(ndf),
        pvalue=pvalue,
        lo=lo,
        hi=hi,
        sqrt_s=s,
        fit_range=(a, b),
        n_left=float(ones[left].sum()),
        n_right=float(ones[right].sum()),
        bin_edges=pairs,
        observed=observed,
        expected=expected,
        note=note,
    )


# ------------------------------------------------------------------------------ significance
def significances(
    n_observed: np.ndarray | float,
    n_expected: np.ndarray | float,
    sigma_expected: np.ndarray | float = 0.0,
) -> np.ndarray:
    """Vectorised :func:`significance` (numpy broadcasting of the three arguments).

    Parameters
    ----------
    n_observed : array_like, events
        Observed counts ``n >= 0`` (need not be integers: sums of weights).
    n_expected : array_like, events
        Expected background ``b > 0``.
    sigma_expected : array_like, events
        One-sigma uncertainty ``sigma_b >= 0`` of ``b`` (default 0).

    Returns
    -------
    np.ndarray of the broadcast shape
        Signed significance ``Z`` (negative for deficits).
    """
    n, b, sig = np.broadcast_arrays(
        np.asarray(n_observed, dtype=np.float64),
        np.asarray(n_expected, dtype=np.float64),
        np.asarray(sigma_expected, dtype=np.float64),
    )
    for name, arr, ok in (
        ("n_observed", n, np.isfinite(n) & (n >= 0)),
        ("n_expected", b, np.isfinite(b) & (b > 0)),
        ("sigma_expected", sig, np.isfinite(sig) & (sig >= 0)),
    ):
        if not ok.all():
            bad = arr[~ok]
            need = "> 0" if name == "n_expected" else ">= 0"
            raise InputError(
                f"significance: {name} must be finite and {need}; {bad.size} of {arr.size} "
                f"values are not (first: {bad.flat[0]})"
            )
    s2 = sig * sig
    with np.errstate(divide="ignore", invalid="ignore"):
        # sigma_b = 0: Z^2 = 2 [n ln(n/b) - (n - b)]
        z2_plain = 2.0 * (special.xlogy(n, n / b) - (n - b))
        # sigma_b > 0 (Cowan et al., eq. 20 with n in place of s + b)
        first = special.xlogy(n, n * (b + s2) / (b * b + n * s2))
        second = (b * b / s2) * np.log1p(s2 * (n - b) / (b * (b + s2)))
        z2_sigma = 2.0 * (first - second)
    # tiny sigma_b: the second form cancels badly; the difference to the first is O(s2/b)
    use_plain = s2 <= 1e-12 * b
    z2 = np.where(use_plain, z2_plain, z2_sigma)
    z = np.sqrt(np.clip(z2, 0.0, None))
    return np.where(n < b, -z, z)


def significance(n_observed: float, n_expected: float, sigma_expected: float = 0.0) -> float:
    """Signed local significance ``Z`` of ``n`` events observed over a background ``b ± sigma_b``.

    The profile-likelihood ratio of Cowan et al. (arXiv:1007.1727) for a Poisson count with a
    Gaussian-constrained background (module docstring), evaluated at the observed ``n``:
    ``Z = sqrt(2 [n ln(n (b + s²) / (b² + n s²)) - b²/s² ln(1 + s² (n - b) / (b (b + s²)))])``
    with ``s = sigma_b``; ``Z = sqrt(2 [n ln(n / b) - (n - b)])`` for ``s = 0``.  ``n = 0`` is
    allowed (``Z = -sqrt(2 b)`` for ``s = 0``).

    Parameters
    ----------
    n_observed : float, events
        Observed count ``n >= 0`` (a sum of weights is allowed).
    n_expected : float, events
        Expected background ``b > 0``.
    sigma_expected : float, events
        Uncertainty ``sigma_b >= 0`` on ``b`` (default 0).

    Returns
    -------
    float
        ``Z``, positive for an excess and negative for a deficit.

    Examples
    --------
    >>> round(significance(150, 100), 3)
    4.652
    >>> significance(150, 100, 10) < significance(150, 100)
    True
    """
    return float(significances(n_observed, n_expected, sigma_expected))


def poisson_pvalue(n_observed: int, n_expected: float) -> float:
    """Local p-value ``P(N >= n | b)`` of a Poisson count.

    Parameters
    ----------
    n_observed : int, events
        Observed count ``n >= 0``.  A non-integer ``n`` (a sum of weights) uses the continuous
        extension ``P(n, b)``, the regularised lower incomplete gamma function, which equals
        ``poisson.sf(n - 1, b)`` at integers.
    n_expected : float, events
        Expected background ``b > 0``.

    Returns
    -------
    float
        ``P(N >= n)``; 1 for ``n = 0``.
    """
    n, b = float(n_observed), float(n_expected)
    if not (math.isfinite(n) and n >= 0):
        raise InputError(f"poisson_pvalue: n_observed must be finite and >= 0, got {n_observed}")
    if not (math.isfinite(b) and b > 0):
        raise InputError(f"poisson_pvalue: n_expected must be finite and > 0, got {n_expected}")
    if n == 0:
        return 1.0
    if n == round(n):
        return float(stats.poisson.sf(round(n) - 1, b))
    return float(special.gammainc(n, b))


# ------------------------------------------------------------------------------ selection
def _as_scores(scores: Any, name: str = "scores") -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise InputError(f"{name}: expected a 1-D array, got shape {s.shape}")
    if s.size == 0:
        raise InputError(f"{name}: no events (the array is empty)")
    bad = ~np.isfinite(s)
    if bad.any():
        raise InputError(f"{name}: {int(bad.sum())} of {s.size} values are NaN or infinite")
    return s


def threshold_at_efficiency(
    scores: np.ndarray, efficiency: float, weights: np.ndarray | None = None
) -> float:
    """Score cut ``t`` that keeps the fraction ``efficiency`` of the events (``score > t``).

    Higher scores are more anomalous; typically ``scores`` are those of background-like
    events (the sidebands, or the SR itself) and ``efficiency`` the background efficiency.
    The cut is a (weighted) quantile: the events are sorted by score, equal scores form one
    group, and ``t`` is placed midway between the two adjacent distinct scores at which the
    (weighted) fraction above the cut is closest to ``efficiency``.  **Ties:** a group of equal
    scores is never split, so with ties the realised fraction can differ from ``efficiency``
    by more than one event; events with ``score == t`` cannot occur except at the midpoint.

    Parameters
    ----------
    scores : np.ndarray of shape (n,)
        Anomaly scores (any units).
    efficiency : float
        Target fraction in (0, 1) of (weighted) events with ``score > t``.
    weights : np.ndarray of shape (n,) or None
        Per-event weights (the sum must be positive).

    Returns
    -------
    float
        The threshold ``t`` (units of ``scores``).

    Raises
    ------
    InputError
        If ``efficiency`` is not in (0, 1), ``efficiency * n < 1`` (fewer than one event
        would pass), or all scores are equal.

    Examples
    --------
    >>> threshold_at_efficiency(np.arange(10.0), 0.3)
    6.5
    """
    s = _as_scores(scores)
    eff = float(efficiency)
    if not (math.isfinite(eff) and 0 < eff < 1):
        raise InputError(f"efficiency must be in (0, 1), got {efficiency!r}")
    n = s.size
    if eff * n < 1:
        raise InputError(
            f"efficiency {eff:g} of {n} events keeps {eff * n:.3g} < 1 event; the threshold "
            f"needs at least {math.ceil(1 / eff)} events"
        )
    w = check_weights(weights, n, "threshold_at_efficiency")
    values, inverse = np.unique(s, return_inverse=True)  # ascending distinct scores
    if values.size < 2:
        raise InputError(f"scores: all {n} values are equal ({values[0]:g}); no threshold exists")
    group_w = np.bincount(inverse, weights=None if w is None else w, minlength=values.size)
    total = float(group_w.sum())
    # fraction above the boundary between values[j] and values[j + 1], j = 0 .. G-2
    above = (total - np.cumsum(group_w)[:-1]) / total
    j = int(np.argmin(np.abs(above - eff)))
    return float(0.5 * (values[j] + values[j + 1]))


# ------------------------------------------------------------------------------ ROC / SIC
@dataclass(frozen=True, eq=False)
class ROC:
    """ROC curve, AUC and significance improvement of a score (result of :func:`roc_sic`).

    Attributes
    ----------
    fpr, tpr : np.ndarray of shape (k,)
        Background and signal efficiencies of the cut ``score >= threshold`` (increasing).
    thresholds : np.ndarray of shape (k,)
        The cuts (decreasing; the first is ``inf``, as in :func:`sklearn.metrics.roc_curve`).
    auc : float
        Area under the ROC curve.
    sic : np.ndarray of shape (k,)
        ``tpr / sqrt(fpr)`` where ``fpr >= min_fpr``, else NaN.
    max_sic : float
        Maximum of ``sic`` (NaN if no point has ``fpr >= min_fpr``).
    max_sic_tpr, max_sic_fpr : float
        Efficiencies at the maximum.
    min_fpr : float
        Smallest background efficiency counted in ``sic``.
    n_signal, n_background : float
        Effective (Kish) numbers of signal and background events (the counts when unweighted).
    """

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    auc: float
    sic: np.ndarray
    max_sic: float
    max_sic_tpr: float
    max_sic_fpr: float
    min_fpr: float = math.nan
    n_signal: float = 0.0
    n_background: float = 0.0

    def to_dict(self, n_points: int = 200) -> dict[str, Any]:
        """Plain JSON types with the curve downsampled to about ``n_points`` points.

        The points are spread evenly in ``log10(fpr)`` (where SIC lives), always keeping the
        two ends and the maximum-SIC point; NaN and inf become ``None``.

        Parameters
        ----------
        n_points : int
            Target number of curve points (>= 2).

        Returns
        -------
        dict
            ``fpr, tpr, thresholds, sic`` (lists) and the scalars.
        """
        k = self.fpr.size
        if k == 0:
            idx = np.zeros(0, dtype=int)
        else:
            keep = {0, k - 1}
            if math.isfinite(self.max_sic):
                keep.add(int(np.nanargmax(self.sic)))
            positive = self.fpr[self.fpr > 0]
            if positive.size:
                grid = np.geomspace(
                    positive.min(),
                    max(positive.max(), positive.min()),
                    max(int(n_points) - len(keep), 2),
                )
                keep.update(np.searchsorted(self.fpr, grid, side="left").clip(0, k - 1).tolist())
            idx = np.array(sorted(keep), dtype=int)
        return to_jsonable(
            {
                "fpr": self.fpr[idx],
                "tpr": self.tpr[idx],
                "thresholds": self.thresholds[idx],
                "sic": self.sic[idx],
                "auc": self.auc,
                "max_sic": self.max_sic,
                "max_sic_tpr": self.max_sic_tpr,
                "max_sic_fpr": self.max_sic_fpr,
                "min_fpr": self.min_fpr,
                "n_signal": self.n_signal,
                "n_background": self.n_background,
            }
        )


def _kish(w: np.ndarray) -> float:
    s2 = float(np.sum(w * w))
    return float(np.sum(w)) ** 2 / s2 if s2 > 0 else 0.0


def roc_sic(
    scores: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    min_fpr: float | None = None,
) -> ROC:
    """ROC curve, AUC and SIC curve of anomaly scores (higher = more signal-like).

    The SIC maximum is only taken over cuts whose background efficiency rests on enough
    events: by default ``min_fpr = max(1e-4, 20 / n_background)`` (:data:`MIN_SIC_FPR`,
    :data:`MIN_SIC_BACKGROUND`), with ``n_background`` the number of background events (the
    Kish effective number ``(sum w)^2 / sum w^2`` when weighted), so that ``fpr`` is never
    estimated from fewer than ~20 events (relative error <~ 22 %), as is customary for the LHC
    Olympics R&D results (which also cut at ``fpr = 1e-4``).  Beyond that tail ``sic`` is NaN.

    Parameters
    ----------
    scores : np.ndarray of shape (n,)
        Anomaly scores.
    labels : np.ndarray of shape (n,)
        1 for signal, 0 for background (bool allowed).
    weights : np.ndarray of shape (n,) or None
        Per-event weights.
    min_fpr : float or None
        Smallest background efficiency counted in SIC; ``None`` for the default rule above.

    Returns
    -------
    ROC

    Raises
    ------
    InputError
        If the labels are not 0/1, one class is absent (or has a non-positive weight sum), or
        shapes disagree.
    """
    s = _as_scores(scores)
    y = np.asarray(labels)
    if y.shape != s.shape:
        raise InputError(f"labels have shape {y.shape}, expected {s.shape} like the scores")
    if y.dtype == bool:
        y = y.astype(np.int64)
    yf = np.asarray(y, dtype=np.float64)
    bad = ~((yf == 0) | (yf == 1))
    if bad.any():
        values = np.unique(yf[bad])[:5].tolist()
        raise InputError(
            f"labels must be 0 (background) or 1 (signal); {int(bad.sum())} of {y.size} are "
            f"not (values {values})"
        )
    y = yf.astype(np.int64)
    n_sig, n_bkg = int(y.sum()), int(y.size - y.sum())
    if n_sig == 0 or n_bkg == 0:
        raise InputError(
            f"roc_sic needs both classes: {n_sig} signal (label 1) and {n_bkg} background "
            "(label 0) events"
        )
    w = check_weights(weights, s.size, "roc_sic")
    if w is not None:
        ws, wb = float(w[y == 1].sum()), float(w[y == 0].sum())
        if not (ws > 0 and wb > 0):
            raise InputError(
                f"roc_sic: the weights of the {n_sig} signal events sum to {ws:g} and of the "
                f"{n_bkg} background events to {wb:g}; both must be positive"
            )
        eff_sig, eff_bkg = _kish(w[y == 1]), _kish(w[y == 0])
    else:
        eff_sig, eff_bkg = float(n_sig), float(n_bkg)
    if min_fpr is None:
        floor = max(MIN_SIC_FPR, MIN_SIC_BACKGROUND / eff_bkg) if eff_bkg > 0 else math.inf
    else:
        floor = float(min_fpr)
        if not (math.isfinite(floor) and floor >= 0):
            raise InputError(f"min_fpr must be a finite number >= 0, got {min_fpr!r}")

    # all points: with the min_fpr cut the SIC maximum can lie inside a segment that
    # drop_intermediate would remove (e.g. tpr = 1 from fpr = 0 to 1 for perfect separation)
    fpr, tpr, thresholds = metrics.roc_curve(y, s, sample_weight=w, drop_intermediate=False)
    auc = float(metrics.roc_auc_score(y, s, sample_weight=w))
    ok = (fpr >= floor) & (fpr > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        sic = np.where(ok, tpr / np.sqrt(np.where(fpr > 0, fpr, 1.0)), np.nan)
    if ok.any():
        i = int(np.nanargmax(sic))
        max_sic, max_tpr, max_fpr = float(sic[i]), float(tpr[i]), float(fpr[i])
    else:
        max_sic = max_tpr = max_fpr = math.nan
    return ROC(
        fpr=fpr,
        tpr=tpr,
        thresholds=thresholds,
        auc=auc,
        sic=sic,
        max_sic=max_sic,
        max_sic_tpr=max_tpr,
        max_sic_fpr=max_fpr,
        min_fpr=floor,
        n_signal=eff_sig,
        n_background=eff_bkg,
    )
