"""NDB: the number of statistically different bins between a candidate and a reference.

Richardson & Weiss (2018): k-means with ``K`` clusters is fitted on (a seeded subsample of)
the reference, standardised with the reference's mean and standard deviation, and every row is
assigned to its nearest centroid, which makes ``K`` bins of the feature space.  The rows used
to fit the bins are left out of the tests (the held-out reference rows are compared with the
candidate), so the bin contents of both samples are independent draws given the bins.  Per bin,
a two-proportion z-test compares the fraction of held-out reference rows with the fraction of
candidate rows; NDB is the number of bins with a per-bin p-value below ``alpha`` (reported with
the number expected by chance, ``alpha K``, and ``NDB / K``).  The bins are correlated and the
per-bin p-values are not corrected for multiplicity, so the overall p-value comes from one
test of the whole ``K``-bin table: Gagunashvili's two-sample chi2 (weighted "WW" form when a
sample is weighted).  Each bin is described by its centroid in physical units, so the over-
and under-populated regions of phase space can be read off directly.

References
----------
E. Richardson, Y. Weiss, "On GANs and GMMs", NeurIPS 2018, arXiv:1805.12462.
N. D. Gagunashvili, "Chi-square tests for comparing weighted histograms",
Nucl. Instrum. Meth. A 614 (2010) 287, arXiv:0905.4221.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from scipy import stats

from hepgen.errors import InputError
from hepgen.validation._checks import MetricResult, as_matrix, check_weights, rng_from
from hepgen.validation.clusters import fit_clusters, standardiser
from hepgen.validation.univariate.binning import Histograms
from hepgen.validation.univariate.chi2 import chi2_from_histograms

__all__ = ["NDBResult", "ndb_test"]


@dataclasses.dataclass(frozen=True)
class NDBResult(MetricResult):
    """Result of :func:`ndb_test`.

    Attributes
    ----------
    ndb : int
        Number of bins whose two-proportion test has p < ``alpha``.
    k : int
        Number of bins ``K``.
    ndb_over_k : float
        ``ndb / k``, to compare with ``alpha`` (its expectation under the null).
    alpha : float
        Per-bin significance level.
    expected : float
        ``alpha * k``, the number of different bins expected by chance.
    statistic : float
        Chi2 of the ``K``-bin table (Gagunashvili "UU", or "WW" when weighted).
    ndf : int
        Degrees of freedom of the chi2: non-empty bins minus one.
    pvalue : float or None
        Overall p-value ``P(chi2_ndf >= statistic)``; ``None`` when ``ndf == 0``.
    bins : list of dict
        One dict per bin, most different first (ascending per-bin p-value): ``index`` (cluster
        number), ``centroid`` ({feature name: value in physical units}),
        ``reference_fraction`` and ``candidate_fraction`` (weighted fractions of the rows in
        the bin), ``z`` (candidate minus reference over the pooled standard error),
        ``pvalue`` (two-sided), ``significant`` (``pvalue < alpha``), ``direction``
        (``"over"`` or ``"under"``: the candidate over- or under-populates a significant bin;
        ``None`` otherwise).
    feature_names : list of str
        Names of the features, the keys of ``centroid``.
    n_reference : int
        Reference rows tested (those not used to fit the bins).
    n_candidate : int
        Candidate rows tested.
    n_fit : int
        Reference rows the k-means bins were fitted on.
    note : str
        How rows and weights were used.

    References
    ----------
    See :func:`ndb_test`.

    Examples
    --------
    >>> r = NDBResult(1, 10, 0.1, 0.05, 0.5, 12.0, 9, 0.2, [], ["a"], 100, 100, 100)
    >>> r.to_dict()["ndb_over_k"], r.over, r.under
    (0.1, [], [])
    """

    ndb: int
    k: int
    ndb_over_k: float
    alpha: float
    expected: float
    statistic: float
    ndf: int
    pvalue: float | None
    bins: list[dict[str, Any]]
    feature_names: list[str]
    n_reference: int
    n_candidate: int
    n_fit: int
    note: str = ""

    @property
    def over(self) -> list[dict[str, Any]]:
        """The significant bins the candidate over-populates, most different first."""
        return [b for b in self.bins if b["direction"] == "over"]

    @property
    def under(self) -> list[dict[str, Any]]:
        """The significant bins the candidate under-populates (missing modes), most different
        first."""
        return [b for b in self.bins if b["direction"] == "under"]


def ndb_test(
    reference: Any,
    candidate: Any,
    reference_weights: Any = None,
    candidate_weights: Any = None,
    *,
    feature_names: list[str] | None = None,
    n_bins: int = 50,
    alpha: float = 0.05,
    max_fit_events: int = 50_000,
    device: str = "auto",
    seed: int | np.random.Generator | None = 0,
) -> NDBResult:
    """Number of statistically different k-means bins (NDB) and an overall chi2 p-value.

    Parameters
    ----------
    reference : array_like, shape (n, d)
        Reference rows, physical units.  ``min(max_fit_events, n // 2)`` of them (seeded) fit
        the bins; the others are tested.
    candidate : array_like, shape (m, d)
        Candidate rows, same features; all are tested.
    reference_weights, candidate_weights : array_like, shape (n,) / (m,), optional
        Per-row weights (negative allowed, positive sum).  The bin fractions are weighted; the
        per-bin z-test uses Kish effective sizes ``(sum w)^2 / sum w^2``, the chi2 the "WW"
        form.  The k-means fit and the standardisation count negative weights as 0.
    feature_names : list of str, optional
        Names of the ``d`` features (default ``x0``, ``x1``, ...), keys of the centroids.
    n_bins : int
        Number of k-means bins ``K`` (Richardson & Weiss: 100 for images; 50 suits a few
        physics features and 1e4-1e6 rows).
    alpha : float
        Per-bin significance level in (0, 1).
    max_fit_events : int
        Most reference rows used to fit the bins (assignment of all rows is linear in n).
    device : str
        Accepted for a uniform call shape; the computation runs on the CPU.
    seed : int, numpy.random.Generator or None
        Seed of the fit/test split and the k-means.

    Returns
    -------
    NDBResult
        NDB, NDB/K, the chance expectation, the chi2 p-value, and the bins (most different
        first) with centroids in physical units.

    References
    ----------
    E. Richardson, Y. Weiss, "On GANs and GMMs", NeurIPS 2018, arXiv:1805.12462 (NDB, the
    pooled two-proportion z-test per bin).
    N. D. Gagunashvili, Nucl. Instrum. Meth. A 614 (2010) 287, arXiv:0905.4221 (chi2).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> ref = np.concatenate([rng.normal(0, 1, (1000, 2)), rng.normal(50, 1, (1000, 2))])
    >>> cand = rng.normal(0, 1, (1000, 2))  # the mode at (50, 50) is missing
    >>> res = ndb_test(ref, cand, feature_names=["pt", "eta"], n_bins=4, seed=1)
    >>> res.pvalue < 1e-3, round(res.under[0]["centroid"]["pt"] / 50)
    (True, 1)
    """
    x = as_matrix(reference, "reference")
    y = as_matrix(candidate, "candidate", n_features=x.shape[1])
    w = check_weights(reference_weights, x.shape[0], "reference")
    v = check_weights(candidate_weights, y.shape[0], "candidate")
    names = _names(feature_names, x.shape[1])
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 2:
        raise InputError(f"n_bins={n_bins!r}: expected an integer >= 2")
    n_bins = int(n_bins)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise InputError(f"alpha={alpha!r}: expected a number in (0, 1)")
    if (
        isinstance(max_fit_events, bool)
        or not isinstance(max_fit_events, (int, np.integer))
        or max_fit_events < n_bins
    ):
        raise InputError(f"max_fit_events={max_fit_events!r}: expected an integer >= n_bins")
    n_fit = min(int(max_fit_events), x.shape[0] // 2)
    if n_fit < n_bins:
        raise InputError(
            f"reference: {x.shape[0]} rows; NDB with n_bins={n_bins} needs at least "
            f"{2 * n_bins} (half fit the bins, the rest are tested)"
        )
    rng = rng_from(seed)
    order = rng.permutation(x.shape[0])
    fit_idx, test_idx = order[:n_fit], np.sort(order[n_fit:])
    mean, scale = standardiser(x, w)
    clusters = fit_clusters(
        x[fit_idx],
        n_bins,
        None if w is None else w[fit_idx],
        max_fit_events=n_fit,
        mean=mean,
        scale=scale,
        name="reference",
        seed=rng,
    )
    x_test = x[test_idx]
    w_test = None if w is None else w[test_idx]
    h1, s1 = _bin_sums(clusters.assign(x_test), w_test, n_bins)
    h2, s2 = _bin_sums(clusters.assign(y), v, n_bins)
    for h, name in ((h1, "reference (held-out rows)"), (h2, "candidate")):
        if not h.sum() > 0:
            raise InputError(f"{name}: weights sum to {h.sum():g}; the sum must be positive")
    p1, p2 = h1 / h1.sum(), h2 / h2.sum()
    z, pvals = _two_proportion(p1, p2, h1.sum() ** 2 / s1.sum(), h2.sum() ** 2 / s2.sum())
    significant = pvals < alpha
    centroids = clusters.centroids_physical
    bins = []
    for i in np.lexsort((np.arange(n_bins), pvals)):
        direction = None
        if significant[i]:
            direction = "over" if z[i] > 0 else "under"
        bins.append(
            {
                "index": int(i),
                "centroid": {nm: float(c) for nm, c in zip(names, centroids[i], strict=True)},
                "reference_fraction": float(p1[i]),
                "candidate_fraction": float(p2[i]),
                "z": float(z[i]),
                "pvalue": float(pvals[i]),
                "significant": bool(significant[i]),
                "direction": direction,
            }
        )
    filled = (s1 + s2) > 0
    hist = Histograms(np.arange(filled.sum() + 1.0), h1[filled], s1[filled], h2[filled], s2[filled])
    chi2 = chi2_from_histograms(hist, weighted=w is not None or v is not None)
    ndb = int(significant.sum())
    notes = [
        f"bins fitted on {n_fit} reference rows, the other {x_test.shape[0]} reference rows "
        "tested; per-bin p-values uncorrected (overall p-value: chi2 of the table)"
    ]
    if w is not None or v is not None:
        notes.append(
            "weighted: fractions weighted, z with Kish effective sizes, chi2 'WW'; "
            "negative weights count as 0 in the k-means fit"
        )
    if chi2.ndf < n_bins - 1:
        notes.append(f"{n_bins - int(filled.sum())} empty bins left out of the chi2")
    return NDBResult(
        ndb=ndb,
        k=n_bins,
        ndb_over_k=ndb / n_bins,
        alpha=float(alpha),
        expected=float(alpha) * n_bins,
        statistic=float(chi2.statistic),
        ndf=int(chi2.ndf),
        pvalue=chi2.pvalue,
        bins=bins,
        feature_names=names,
        n_reference=int(x_test.shape[0]),
        n_candidate=int(y.shape[0]),
        n_fit=int(n_fit),
        note="; ".join(notes),
    )


def _names(feature_names: Any, d: int) -> list[str]:
    """Feature names as strings (default ``x0 ... x{d-1}``), checked for length ``d``."""
    if feature_names is None:
        return [f"x{j}" for j in range(d)]
    names = [str(f) for f in feature_names]
    if len(names) != d:
        raise InputError(f"feature_names: {len(names)} names for {d} feature columns")
    return names


def _bin_sums(labels: np.ndarray, w: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Sums of weights and of squared weights per bin, each of shape (k,)."""
    if w is None:
        h = np.bincount(labels, minlength=k).astype(np.float64)
        return h, h.copy()
    return np.bincount(labels, w, minlength=k), np.bincount(labels, w * w, minlength=k)


def _two_proportion(
    p1: np.ndarray, p2: np.ndarray, n1: float, n2: float
) -> tuple[np.ndarray, np.ndarray]:
    """Pooled two-proportion z-test per bin (Richardson & Weiss), z and two-sided p-values.

    ``z = (p2 - p1) / sqrt(p0 (1 - p0) (1/n1 + 1/n2))`` with ``p0 = (n1 p1 + n2 p2)/(n1 + n2)``;
    ``n1``, ``n2`` are the (effective) sizes.  Written out because statsmodels' version is
    neither vectorised over bins nor weighted, and scipy has none.  A bin with zero pooled
    variance (empty in both samples) gets ``z = 0``, ``p = 1``.
    """
    p0 = np.clip((n1 * p1 + n2 * p2) / (n1 + n2), 0.0, 1.0)
    se = np.sqrt(p0 * (1.0 - p0) * (1.0 / n1 + 1.0 / n2))
    z = np.where(se > 0, (p2 - p1) / np.where(se > 0, se, 1.0), 0.0)
    return z, 2.0 * stats.norm.sf(np.abs(z))
