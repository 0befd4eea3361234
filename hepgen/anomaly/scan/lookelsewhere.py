r"""Global significance of a scan: the look-elsewhere effect measured with null pseudo-scans.

A scan reports the largest of many local significances, one per overlapping window, so a
local :math:`Z` overstates the evidence.  :func:`global_significance` measures how often a
background-only scan gives a largest local :math:`Z` at least as large as the observed one,
with pseudo-scans built from the scan's own numbers:

* every window keeps its background estimate :math:`\mu_i \pm \sigma_i` after the ranking
  selection (the sideband fit times the template's pass fraction times the closure);
* an event lies in the signal regions of one or more overlapping windows and passes the
  selections of some of them (each window scores its SR events out of fold).  The events are
  grouped by the set of windows whose selection they pass; under the null each group's count
  is Poisson (Poisson splitting), so windows share the counts of the events they share and
  the correlation of overlapping windows is kept;
* the group rates are the observed group counts scaled (iterative proportional fitting) so
  that each window's expected count is its background estimate :math:`\mu_i`; each
  pseudo-scan also draws each window's true mean from its estimate's uncertainty
  (:math:`\mu_i (1 + \epsilon_i \sigma_i / \mu_i)`, :math:`\epsilon_i \sim N(0, 1)`, as the
  local significance profiles it);
* each pseudo-scan's counts give every window's local :math:`Z` (the scan's own formula) and
  their maximum.

The pseudo-scans measure the *trials factor* at the observed :math:`Z`: how many more
pseudo-scans reach it in some window than in the most significant window alone,
:math:`TF = (k_{any} + 1) / (k_{best} + 1)`.  The global p-value is the local one (the
asymptotic formula the scan reports) times it, :math:`p_{global} = TF \, p_{local}`, so the
global :math:`Z` never exceeds the local one even where the formula is conservative for
small counts.  When fewer than :data:`MIN_EXCEEDING` pseudo-scans reach the observed
:math:`Z` in that window (a strong excess), the union (Bonferroni) bound :math:`TF \le W` over
the ``W`` windows is used instead: it holds for any correlation, so the global :math:`Z` is
then a lower bound.

The rates come from the data's own pass patterns: a signal that passes two overlapping
windows raises their shared rate a little, which makes the windows look more correlated and
the correction slightly smaller than a pure background would give.

References
----------
E. Gross, O. Vitells, "Trial factors for the look elsewhere effect in high energy physics",
Eur. Phys. J. C 70 (2010) 525, arXiv:1005.1891.
G. Cowan, K. Cranmer, E. Gross, O. Vitells, Eur. Phys. J. C 71 (2011) 1554, arXiv:1007.1727.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from hepgen.anomaly.stats import significances

__all__ = ["MIN_EXCEEDING", "global_significance", "pass_patterns"]

#: Fewest pseudo-scans at or above the observed largest Z for a measured global p-value;
#: below, the union bound is reported (a lower bound on the global Z).
MIN_EXCEEDING = 10


def pass_patterns(
    indices: Sequence[np.ndarray], passed: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Events grouped by the set of windows whose selection they pass.

    Parameters
    ----------
    indices : sequence of W arrays of int
        Each window's SR events (indices into the scan's events).
    passed : sequence of W arrays of bool
        Which of them pass the window's selection (aligned with ``indices``).

    Returns
    -------
    patterns : np.ndarray of bool, shape (P, W)
        The distinct non-empty pass patterns.
    counts : np.ndarray of int, shape (P,)
        Events with each pattern.

    Examples
    --------
    Event 7 passes both windows, events 1 and 9 one each:

    >>> pat, n = pass_patterns([np.array([1, 7, 8]), np.array([7, 9])],
    ...                        [np.array([True, True, False]), np.array([True, True])])
    >>> pat.astype(int).tolist(), n.tolist()
    ([[0, 1], [1, 0], [1, 1]], [1, 1, 1])
    """
    w = len(indices)
    chosen = [
        np.asarray(i)[np.asarray(p, dtype=bool)] for i, p in zip(indices, passed, strict=True)
    ]
    events = np.unique(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=int)
    bits = np.zeros((events.size, w), dtype=bool)
    for k, ev in enumerate(chosen):
        bits[np.searchsorted(events, ev), k] = True
    if not events.size:
        return np.zeros((0, w), dtype=bool), np.zeros(0, dtype=int)
    patterns, counts = np.unique(bits, axis=0, return_counts=True)
    return patterns, counts


def _rates(patterns: np.ndarray, counts: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Pattern rates proportional to ``counts`` with window totals ``mu`` (raking).

    A window none of whose events passed gets a single-window pattern of half an event, so
    that it can still be scaled to its ``mu``.
    """
    w = mu.size
    covered = patterns.any(axis=0) if len(patterns) else np.zeros(w, dtype=bool)
    extra = [row for row in np.eye(w, dtype=bool)[~covered]]
    pat = np.vstack([patterns, *extra]) if extra else patterns
    r = np.r_[counts.astype(float), np.full(len(extra), 0.5)]
    for _ in range(200):
        totals = pat.T.astype(float) @ r
        f = np.where(totals > 0, mu / np.where(totals > 0, totals, 1.0), 1.0)
        if np.allclose(f, 1.0, rtol=1e-10, atol=0):
            break
        # each pattern scaled by the geometric mean of its windows' factors
        r = r * np.exp((pat @ np.log(f)) / pat.sum(axis=1))
    return pat, r


def global_significance(
    indices: Sequence[np.ndarray],
    passed: Sequence[np.ndarray],
    n_expected: np.ndarray,
    n_expected_error: np.ndarray,
    z_observed: np.ndarray,
    n_pseudo_scans: int = 10_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Global significance of the largest local Z of a scan (module docstring).

    Parameters
    ----------
    indices, passed : sequences of W arrays
        Each window's SR event indices and which pass its ranking selection
        (:func:`pass_patterns`).
    n_expected, n_expected_error : np.ndarray of shape (W,)
        Each window's background estimate after the selection and its uncertainty (events).
    z_observed : np.ndarray of shape (W,)
        The windows' local significances (the largest is the scan's result).
    n_pseudo_scans : int
        Background-only pseudo-scans (>= 1).
    seed : int

    Returns
    -------
    dict
        ``method`` (``"pseudo-scans"`` or ``"bound"``), ``n_pseudo_scans``, ``n_windows``,
        ``local_significance``, ``local_p``, ``global_p`` (and the binomial error of the
        pseudo-scans' fraction), ``global_significance``, ``n_exceeding`` (pseudo-scans whose
        largest Z reached the observed one), ``n_exceeding_window`` (those whose Z in the most
        significant window did), ``trials_factor``, ``max_z_quantiles``,
        ``max_z_histogram``, ``single_window_above_2`` (the pseudo-scans' rate of a local
        Z >= 2 in one window, 0.023 for a calibrated Z), ``note``.

    Examples
    --------
    Ten windows that share no events, each expecting 20 events: a largest local Z of 2.5 is
    about 1.5 sigma globally (independent windows: 1 - (1 - p)^10 gives 1.55):

    >>> idx = [np.arange(k * 1000, (k + 1) * 1000) for k in range(10)]
    >>> rng = np.random.default_rng(1)
    >>> ok = [rng.random(1000) < 0.02 for _ in idx]
    >>> z = np.r_[2.5, np.zeros(9)]
    >>> g = global_significance(idx, ok, np.full(10, 20.0), np.zeros(10), z, 20_000)
    >>> round(g["global_significance"], 1), g["method"], round(g["trials_factor"])
    (1.5, 'pseudo-scans', 10)
    """
    mu = np.asarray(n_expected, dtype=float)
    sigma = np.asarray(n_expected_error, dtype=float)
    n_toys = int(n_pseudo_scans)
    patterns, counts = pass_patterns(indices, passed)
    pat, rates = _rates(patterns, counts, mu)
    rng = np.random.default_rng(seed)
    z_obs = np.asarray(z_observed, dtype=float)
    best = int(np.argmax(z_obs))
    z_observed = float(z_obs[best])
    max_z = np.empty(n_toys)
    z_best = np.empty(n_toys)
    above_2 = 0
    block = 2000
    for start in range(0, n_toys, block):
        t = min(block, n_toys - start)
        u = np.clip(1.0 + rng.standard_normal((t, mu.size)) * sigma / mu, 0.0, None)
        # each pattern's mean follows its windows' drawn means (their average factor)
        scale = (u @ pat.T.astype(float)) / pat.sum(axis=1)
        k = rng.poisson(rates * scale)
        n = k @ pat.astype(float)
        z = significances(n, mu, sigma)
        max_z[start : start + t] = z.max(axis=1)
        z_best[start : start + t] = z[:, best]
        above_2 += int((z >= 2).sum())
    exceed = int(np.sum(max_z >= z_observed))
    exceed_best = int(np.sum(z_best >= z_observed))
    p_local = float(stats.norm.sf(z_observed))
    p_toys = (exceed + 1) / (n_toys + 1)
    if exceed_best >= MIN_EXCEEDING:
        # at most W: the union bound holds for any correlation (the ratio's noise can pass it)
        method, trials = "pseudo-scans", min((exceed + 1) / (exceed_best + 1), float(mu.size))
        note = (
            f"of {n_toys} background-only pseudo-scans, {exceed} reached local Z >= "
            f"{z_observed:.2f} in some window and {exceed_best} in this one: trials factor "
            f"{trials:.2f}"
        )
    else:
        method, trials = "bound", float(mu.size)
        note = (
            f"{exceed_best} of {n_toys} background-only pseudo-scans reached the observed "
            f"local Z {z_observed:.2f} in this window ({exceed} in any): too few to measure "
            f"the trials factor, so the union bound over the {mu.size} windows is used and "
            "the global significance is a lower bound"
        )
    if mu.size == 1:
        note = "one window: there is nowhere else to look, the global significance is the local"
    p_global = min(1.0, p_local * trials)
    edges = np.arange(-3.0, 6.01, 0.25)
    return {
        "method": method,
        "n_pseudo_scans": n_toys,
        "n_windows": int(mu.size),
        "local_significance": float(z_observed),
        "local_p": p_local,
        "global_p": float(p_global),
        "global_p_error": float(np.sqrt(p_toys * (1 - p_toys) / n_toys)),
        "global_significance": float(stats.norm.isf(p_global)),
        "global_p_pseudo_scans": float(p_toys),
        "n_exceeding": exceed,
        "n_exceeding_window": exceed_best,
        "trials_factor": float(trials),
        "max_z_quantiles": {str(q): float(np.quantile(max_z, q)) for q in (0.5, 0.9, 0.95, 0.99)},
        "max_z_histogram": {
            "edges": edges.tolist(),
            "counts": np.histogram(np.clip(max_z, edges[0], edges[-1]), edges)[0].tolist(),
        },
        "single_window_above_2": above_2 / (n_toys * mu.size),
        "note": note,
    }
