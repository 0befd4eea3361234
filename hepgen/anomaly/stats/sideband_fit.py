r"""Background fit in the sidebands: the dijet function fitted with the signal region blinded.

:func:`fit_sidebands` fits the dijet function (:mod:`~hepgen.anomaly.stats.dijet`) to the
events of a fit range with the signal region ``[lo, hi)`` blinded: a binned, *extended*
Poisson maximum-likelihood fit (:mod:`~hepgen.anomaly.stats.likelihood`).  The bins end
exactly on ``lo`` and ``hi``, so no bin straddles the blinded region.  When the 4-parameter
fit fails (no convergence, or a Hessian that is not positive definite) the 3-parameter form
is fitted instead and :attr:`SidebandFit.n_parameters` says so.  With per-event weights the
bin contents are the sums of weights and the covariance is the sandwich estimate.

The goodness of fit is Pearson's chi2 on the fitted bins, adjacent bins of a sideband merged
until each group expects at least 5 events, with ``ndf = groups - n_parameters``.
:class:`SidebandFit` integrates the fitted density over any range (the expected background
in the signal region) with its uncertainty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from hepgen.anomaly.stats.dijet import basis, check_sqrt_s, dijet_function, gauss_legendre
from hepgen.anomaly.stats.likelihood import PoissonModel, classic_parameters
from hepgen.errors import InputError
from hepgen.stats import check_weights
from hepgen.utils import to_jsonable

__all__ = ["MIN_SIDEBAND_EVENTS", "SidebandFit", "fit_sidebands"]

#: Fewest events (sum of both sidebands) for which :func:`fit_sidebands` attempts a fit.
MIN_SIDEBAND_EVENTS = 20

# Gauss-Legendre quadrature of SidebandFit.integral: nodes per piece, each at most
# _PIECE * sqrt_s long (0.25 TeV at 13 TeV; relative to sqrt_s so that the quadrature is the
# same in any unit of m), which integrates the smooth dijet function to ~1e-12.
_NODES_PER_PIECE = 16
_PIECE = 0.25 / 13.0
# Pearson chi2: merge adjacent bins until each group expects at least this many events.
_CHI2_MIN_EXPECTED = 5.0


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
        n_pieces = max(1, math.ceil((b - a) / (_PIECE * self.sqrt_s)))
        edges = np.linspace(a, b, n_pieces + 1)
        nodes, w = gauss_legendre(edges[:-1], edges[1:], _NODES_PER_PIECE)
        nodes, w = nodes.ravel(), w.ravel()
        h = basis(nodes, self.sqrt_s, 4)
        f = self.density(nodes)
        return (w * f) @ h

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


def _check_ranges(
    lo: float, hi: float, fit_range: tuple[float, float], sqrt_s: float
) -> tuple[float, float, float, float]:
    """``(a, b, lo, hi)`` as floats with ``0 < a <= lo < hi <= b < sqrt_s``, else InputError."""
    try:
        a, b = (float(v) for v in fit_range)
    except (TypeError, ValueError) as err:
        raise InputError(
            f"fit_range: expected two numbers (low, high) in TeV, got {fit_range!r}"
        ) from err
    lo, hi = float(lo), float(hi)
    if not all(math.isfinite(v) for v in (a, b, lo, hi)):
        raise InputError(f"fit range [{a}, {b}] and signal region [{lo}, {hi}] must be finite")
    if not 0 < a < b < sqrt_s:
        raise InputError(
            f"fit_range ({a}, {b}) TeV must satisfy 0 < low < high < sqrt_s = {sqrt_s} TeV"
        )
    if not a <= lo < hi <= b:
        raise InputError(
            f"signal region [{lo}, {hi}] TeV must lie inside the fit range [{a}, {b}] TeV "
            "with lo < hi"
        )
    return a, b, lo, hi


def _histogram(m: np.ndarray, w: np.ndarray, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum of weights and of squared weights in each fitted bin ``pairs`` (shape (k, 2));
    the last bin includes its upper edge."""
    idx = np.searchsorted(pairs[:, 0], m, side="right") - 1
    inside = (idx >= 0) & (m < pairs[np.clip(idx, 0, None), 1])
    inside |= (idx == len(pairs) - 1) & (m == pairs[-1, 1])
    idx, w = idx[inside], w[inside]
    observed = np.bincount(idx, weights=w, minlength=len(pairs)).astype(np.float64)
    sumw2 = np.bincount(idx, weights=w * w, minlength=len(pairs)).astype(np.float64)
    return observed, sumw2


class _NoConvergence(Exception):
    """Neither form of the dijet function converged (the message says why)."""


def _fit_with_fallback(
    pairs: np.ndarray,
    observed: np.ndarray,
    sumw2: np.ndarray | None,
    sqrt_s: float,
    n_parameters: int,
) -> tuple[PoissonModel, np.ndarray, np.ndarray, np.ndarray, str]:
    """Fit ``n_parameters``; a failed 4-parameter fit falls back to 3.

    Returns the model that converged, its coefficients, the classic parameters (4,), their
    covariance (4, 4) and a note on the fallback.

    Raises
    ------
    _NoConvergence
        No form converged (the message says why each failed).
    """
    note = ""
    attempts = [4, 3] if n_parameters == 4 else [3]
    for k in attempts:
        model = PoissonModel(pairs, observed, sqrt_s, k)
        c, hess, ok, why = model.fit()
        if ok:
            params, cov, why = classic_parameters(model, c, hess, sumw2)
            if not why:
                break
        note += f"{k}-parameter fit failed ({why}); "
    else:
        raise _NoConvergence(note.rstrip("; "))
    if k != n_parameters:
        note += "used the 3-parameter form"
    return model, c, params, cov, note.rstrip("; ")


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
        sandwich estimate (see :mod:`~hepgen.anomaly.stats.likelihood`).
    sqrt_s : float
        Collision energy in TeV (default 13).  Any unit of ``m`` works with ``sqrt_s`` in the
        same unit (13000 for GeV; the fit is a function of ``m / sqrt_s``); "TeV" here and
        above stands for that unit.

    Returns
    -------
    SidebandFit

    Raises
    ------
    InputError
        If ``[lo, hi]`` is not inside ``fit_range``, the range is not inside
        ``(0, sqrt_s)``, the sidebands hold fewer than :data:`MIN_SIDEBAND_EVENTS` events,
        there are too few bins for the parameters, or no fit converges.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> m = 1.5 + rng.exponential(0.4, 20_000)  # a falling spectrum, TeV
    >>> fit = fit_sidebands(m, 2.5, 2.8, (1.6, 4.0), bins=40)
    >>> fit.n_parameters, bool(fit.integral(2.5, 2.8) > 0)
    (4, True)
    """
    s = check_sqrt_s(sqrt_s)
    if n_parameters not in (3, 4):
        raise InputError(f"n_parameters: expected 3 or 4, got {n_parameters!r}")
    a, b, lo, hi = _check_ranges(lo, hi, fit_range, s)
    m, w = _as_masses(m, weights)
    ones = np.ones_like(m) if w is None else w
    left = (m >= a) & (m < lo)
    right = (m >= hi) & (m <= b)
    n_left, n_right = int(left.sum()), int(right.sum())
    if n_left + n_right < MIN_SIDEBAND_EVENTS:
        raise InputError(
            f"sideband fit around [{lo:.6g}, {hi:.6g}): {n_left} events in the lower sideband "
            f"[{a:.6g}, {lo:.6g}) and {n_right} in the upper sideband [{hi:.6g}, {b:.6g}], "
            f"{n_left + n_right} in all; at least {MIN_SIDEBAND_EVENTS} are needed"
        )
    pairs = _sideband_edges(a, lo, hi, b, bins)
    if len(pairs) < n_parameters + 1:
        raise InputError(
            f"sideband fit: {len(pairs)} bins outside the signal region [{lo:.6g}, {hi:.6g}), "
            f"need at least {n_parameters + 1} for {n_parameters} parameters; use more bins"
        )
    sel = left | right
    observed, sumw2 = _histogram(m[sel], ones[sel], pairs)
    try:
        model, c, params, cov, note = _fit_with_fallback(
            pairs, observed, sumw2 if w is not None else None, s, n_parameters
        )
    except _NoConvergence as err:
        raise InputError(
            f"sideband fit around [{lo:.6g}, {hi:.6g}) did not converge ({err}); "
            f"{n_left} and {n_right} events in the two sidebands"
        ) from None
    expected, _, _ = model.parts(c)
    chi2, n_groups = _pearson_chi2(pairs, observed, expected, sumw2, lo, w is not None)
    ndf = n_groups - model.k
    return SidebandFit(
        params=params,
        covariance=cov,
        n_parameters=model.k,
        chi2=chi2,
        ndf=int(ndf),
        pvalue=float(stats.chi2.sf(chi2, ndf)) if ndf > 0 else math.nan,
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
