r"""The binned, extended Poisson likelihood of the dijet function and its minimisation.

.. math::  -\ln L = \sum_i \left[\nu_i(p) - n_i \ln \nu_i(p)\right],
           \qquad \nu_i = \int_{\mathrm{bin}\ i} f(m)\, dm,

with each bin's expectation integrated by 8-point Gauss-Legendre quadrature.  ``ln f`` is
linear in ``(ln p0, p1, p2, p3)``, so the fit works in an orthonormalised version of that
basis (QR decomposition over the quadrature nodes of the fitted bins): the classic
parameters are extremely correlated (|rho| > 0.999), the orthonormal ones are not.  The
starting values are a weighted linear least-squares fit of ``ln(n_i / width_i)`` (no
iteration needed), the minimiser is :func:`scipy.optimize.minimize` (``trust-exact``, then
``Newton-CG``) on the analytic gradient and Hessian, and the covariance is the inverse
Hessian of ``-ln L`` at the minimum, transformed linearly back to the classic parameters
(``p0`` by its Jacobian).  With per-event weights the covariance is the sandwich estimate
``H^-1 V H^-1`` with ``V`` built from the sums of squared weights.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, special

from hepgen.anomaly.stats.dijet import basis, gauss_legendre

__all__ = ["PoissonModel", "classic_parameters"]

#: Gauss-Legendre nodes per fitted bin (integrates the smooth dijet function to ~1e-12).
NODES_PER_BIN = 8
#: A fit has converged when the Newton decrement sqrt(g^T H^-1 g) of -ln L is below this.
NEWTON_DECREMENT_TOL = 1e-3
# ln p0 beyond this: p0 (and p0^2 in the covariance) leave the floating-point range; such a
# fit extrapolates wildly (typically 4 parameters on a few dozen events) and counts as failed.
_MAX_LOG_P0 = 300.0


class PoissonModel:
    """Extended binned Poisson likelihood of ``ln f = g(m) @ c`` with an orthonormal basis g.

    ``g = H R^-1`` with ``H`` the classic basis at the quadrature nodes and ``H / sqrt(N) = Q R``
    (QR), so that ``theta = (ln p0, p1, ...) = R^-1 c``.

    Parameters
    ----------
    pairs : np.ndarray of shape (bins, 2), TeV
        Low and high edge of each fitted bin.
    counts : np.ndarray of shape (bins,)
        Events (sums of weights) in each bin.
    sqrt_s : float
        Collision energy in TeV.
    k : int
        Number of parameters (3 or 4).
    """

    def __init__(self, pairs: np.ndarray, counts: np.ndarray, sqrt_s: float, k: int) -> None:
        self.k = k
        self.counts = counts
        nodes, w = gauss_legendre(pairs[:, 0], pairs[:, 1], NODES_PER_BIN)
        self.w = w  # (bins, nodes)
        h = basis(nodes, sqrt_s, k)  # (bins, nodes, k)
        n_nodes = h.shape[0] * h.shape[1]
        _, r = np.linalg.qr(h.reshape(n_nodes, k) / math.sqrt(n_nodes))
        self.r = r
        self.g = np.linalg.solve(r.T, h.reshape(n_nodes, k).T).T.reshape(h.shape)
        self.scale = max(float(np.sum(np.abs(counts))), 1.0)
        centres = 0.5 * (pairs[:, 0] + pairs[:, 1])
        self.g_centre = np.linalg.solve(r.T, basis(centres, sqrt_s, k).T).T
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
        """``-ln L`` and its gradient at ``c``, both divided by the total count."""
        nu, dnu, _ = self.parts(c)
        if not np.all(np.isfinite(nu)) or np.any(nu <= 0):
            return math.inf, np.zeros(self.k)
        val = float(np.sum(nu - special.xlogy(self.counts, nu)))
        grad = (1.0 - self.counts / nu) @ dnu
        return val / self.scale, grad / self.scale

    def hessian(self, c: np.ndarray) -> np.ndarray:
        """Hessian (k, k) of ``-ln L`` at ``c`` (not scaled)."""
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
        if not decrement < NEWTON_DECREMENT_TOL:
            return False, f"not converged (Newton decrement {decrement:.3g})"
        return True, ""


def classic_parameters(
    model: PoissonModel, c: np.ndarray, hess: np.ndarray, sumw2: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, str]:
    """``(p0, p1, p2, p3)`` and their covariance from the orthonormal coefficients ``c``.

    Parameters
    ----------
    model : PoissonModel
    c : np.ndarray of shape (k,)
        Fitted orthonormal coefficients.
    hess : np.ndarray of shape (k, k)
        Hessian of ``-ln L`` at ``c``.
    sumw2 : np.ndarray of shape (bins,) or None
        Sums of squared weights per bin (the sandwich estimate); None for unit weights.

    Returns
    -------
    params : np.ndarray of shape (4,)
    covariance : np.ndarray of shape (4, 4)
    failure : str
        ``""``, or why the parameters are unusable.
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
