"""Binned two-sample comparisons of one feature: the chi2 test and the separation power.

:func:`chi2_test` is Gagunashvili's two-sample chi2 of (weighted) histograms, as in ROOT's
``TH1::Chi2Test`` options "UU" and "WW"; :func:`separation_power` is the CaloChallenge
distance of the normalised histograms.  Both use the bins of
:func:`~hepgen.validation.univariate.binning.histogram_edges`.

References
----------
N. D. Gagunashvili, "Chi-square tests for comparing weighted histograms",
Nucl. Instrum. Meth. A 614 (2010) 287, arXiv:0905.4221.
C. Krause et al., "CaloChallenge 2022: A Community Challenge for Fast Calorimeter
Simulation", arXiv:2410.21611 (separation power).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
from scipy import stats

from hepgen.validation._checks import MetricResult
from hepgen.validation.univariate.binning import Histograms, histograms
from hepgen.validation.univariate.ecdf import check_pair

__all__ = [
    "Chi2Result",
    "chi2_from_histograms",
    "chi2_test",
    "separation_from_histograms",
    "separation_power",
]


@dataclasses.dataclass(frozen=True)
class Chi2Result(MetricResult):
    """Result of :func:`chi2_test`.

    Attributes
    ----------
    statistic : float
        Gagunashvili's chi2 statistic (0.0 when there is a single bin).
    ndf : int
        Degrees of freedom, number of bins minus one.
    pvalue : float or None
        ``P(chi2_ndf >= statistic)``; ``None`` when ``ndf == 0`` (see ``note``).
    edges : ndarray of shape (n_bins + 1,)
        Finite bin edges in feature units; the first and last bins also hold everything
        below / above the range (they are the under- and overflow).
    method : str
        ``"UU"`` (both unweighted) or ``"WW"`` (at least one weighted), as in ROOT.
    reference_counts, candidate_counts : ndarray of shape (n_bins,)
        Sums of weights per bin (event counts when unweighted).
    note : str
        Explanation when the test could not be done (a single bin), else empty.

    References
    ----------
    See :func:`chi2_test`.

    Examples
    --------
    >>> d = chi2_test(np.full(50, 2.0), np.full(40, 2.0)).to_dict(arrays=False)
    >>> d["ndf"], d["pvalue"]
    (0, None)
    """

    _array_fields: ClassVar[tuple[str, ...]] = ("edges", "reference_counts", "candidate_counts")

    statistic: float
    ndf: int
    pvalue: float | None
    edges: np.ndarray
    method: str
    reference_counts: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    candidate_counts: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    note: str = ""


def chi2_test(
    reference: np.ndarray,
    candidate: np.ndarray,
    reference_weights: np.ndarray | None = None,
    candidate_weights: np.ndarray | None = None,
    *,
    bins: int | np.ndarray | None = None,
    integer: bool | None = None,
    min_count: float = 10,
    name: str = "feature",
) -> Chi2Result:
    """Two-sample chi2 test of (weighted) histograms (Gagunashvili; ROOT ``Chi2Test``).

    With bin contents ``n_i``, ``m_i`` and totals ``N``, ``M`` (both unweighted, "UU")::

        X2 = 1 / (N M) sum_i (M n_i - N m_i)^2 / (n_i + m_i)

    and with bin sums of weights ``w1_i``, ``w2_i``, of squared weights ``s1_i``, ``s2_i`` and
    totals ``W1``, ``W2`` (at least one sample weighted, "WW"; an unweighted sample has
    weight 1)::

        X2 = sum_i (W1 w2_i - W2 w1_i)^2 / (W1^2 s2_i + W2^2 s1_i)

    Either is asymptotically chi2 with ``ndf = r - 1`` for ``r`` bins (after merging sparse bins,
    see :func:`histogram_edges`).  :func:`scipy.stats.chisquare` is the wrong tool here: it is a
    one-sample goodness-of-fit test against *known* expected counts, while both histograms
    fluctuate; and it knows no weights.

    Parameters
    ----------
    reference, candidate : array of shape (n1,) and (n2,)
        Values of one feature, any units.
    reference_weights, candidate_weights : array of shape (n1,) and (n2,), optional
        Per-event weights (negative allowed, positive sum).
    bins, integer, min_count
        Binning, see :func:`histogram_edges`.
    name : str
        Feature name used as prefix of error messages.

    Returns
    -------
    Chi2Result
        With a single bin (a constant feature) ``ndf = 0``, ``statistic = 0.0``,
        ``pvalue = None`` and a ``note``.

    References
    ----------
    N. D. Gagunashvili, "Chi-square tests for comparing weighted histograms",
    Nucl. Instrum. Meth. A 614 (2010) 287, arXiv:0905.4221, eqs. for the "UU" and "WW" cases;
    ROOT ``TH1::Chi2Test``.

    Examples
    --------
    >>> r = chi2_test([1, 1, 2, 2, 2, 3], [1, 2, 2, 3, 3, 3], bins=np.array([0.5, 1.5, 2.5, 3.5]),
    ...               min_count=0)
    >>> r.method, r.ndf, round(r.statistic, 4)
    ('UU', 2, 1.5333)
    """
    pair = check_pair(reference, candidate, reference_weights, candidate_weights, name)
    hist = histograms(pair, bins, integer, min_count, name)
    return chi2_from_histograms(hist, pair.weighted)


def chi2_from_histograms(hist: Histograms, weighted: bool) -> Chi2Result:
    """The chi2 test of :func:`chi2_test` on histograms already filled and merged.

    Parameters
    ----------
    hist : Histograms
        Both samples on the same bins (:func:`~hepgen.validation.univariate.binning.histograms`
        or :func:`~hepgen.validation.univariate.binning.merge_sparse` of sums added up over
        partitions).
    weighted : bool
        Gagunashvili's "WW" form (a sample with unequal weights), else "UU".

    Returns
    -------
    Chi2Result

    Examples
    --------
    >>> from hepgen.validation.univariate.binning import merge_sparse
    >>> h = merge_sparse(np.array([0.5, 1.5, 2.5, 3.5]), np.array([0, 2, 3, 1, 0.0]),
    ...                  np.array([0, 2, 3, 1, 0.0]), np.array([0, 1, 2, 3, 0.0]),
    ...                  np.array([0, 1, 2, 3, 0.0]), 0, (1.0, 3.0), True)
    >>> round(chi2_from_histograms(h, weighted=False).statistic, 4)
    1.5333
    """
    method = "WW" if weighted else "UU"
    ndf = hist.h1.size - 1
    if ndf < 1:
        return Chi2Result(
            0.0,
            0,
            None,
            hist.edges,
            method,
            hist.h1,
            hist.h2,
            "a single bin (constant feature, or too few events to fill two bins of "
            "min_count): no chi2 test possible",
        )
    if weighted:
        t1, t2 = float(hist.h1.sum()), float(hist.h2.sum())
        num = (t1 * hist.h2 - t2 * hist.h1) ** 2
        den = t1 * t1 * hist.s2 + t2 * t2 * hist.s1
    else:
        t1, t2 = float(hist.h1.sum()), float(hist.h2.sum())
        num = (t2 * hist.h1 - t1 * hist.h2) ** 2 / (t1 * t2)
        den = hist.h1 + hist.h2
    statistic = float(np.sum(num / den))  # merging leaves no bin with den == 0
    pvalue = float(stats.chi2.sf(statistic, ndf))
    return Chi2Result(statistic, ndf, pvalue, hist.edges, method, hist.h1, hist.h2)


def separation_power(
    reference: np.ndarray,
    candidate: np.ndarray,
    reference_weights: np.ndarray | None = None,
    candidate_weights: np.ndarray | None = None,
    *,
    bins: int | np.ndarray | None = None,
    integer: bool | None = None,
    min_count: float = 10,
    name: str = "feature",
) -> float:
    """CaloChallenge separation power ``1/2 sum_i (p_i - q_i)^2 / (p_i + q_i)``.

    ``p`` and ``q`` are the normalised (weighted) histograms of reference and candidate on the
    bins of :func:`histogram_edges`; bins with ``p_i + q_i <= 0`` (possible only with negative
    weights) are skipped.  0 for identical histograms, 1 for disjoint ones.  Called "chi2" in
    the CaloChallenge paper, but it is a distance, not a test.

    Parameters
    ----------
    reference, candidate : array of shape (n1,) and (n2,)
        Values of one feature, any units.
    reference_weights, candidate_weights : array of shape (n1,) and (n2,), optional
        Per-event weights (negative allowed, positive sum).
    bins, integer, min_count
        Binning, see :func:`histogram_edges`.
    name : str
        Feature name used as prefix of error messages.

    Returns
    -------
    float
        Dimensionless, in [0, 1] for non-negative weights.

    References
    ----------
    C. Krause et al., "CaloChallenge 2022: A Community Challenge for Fast Calorimeter
    Simulation", arXiv:2410.21611.

    Examples
    --------
    >>> separation_power(np.arange(100.0), np.arange(100.0) + 1000)
    1.0
    """
    pair = check_pair(reference, candidate, reference_weights, candidate_weights, name)
    return separation_from_histograms(histograms(pair, bins, integer, min_count, name))


def separation_from_histograms(hist: Histograms) -> float:
    """The separation power of :func:`separation_power` on histograms already filled and
    merged (dimensionless)."""
    p = hist.h1 / hist.h1.sum()
    q = hist.h2 / hist.h2.sum()
    keep = (p + q) > 0
    return float(0.5 * np.sum((p[keep] - q[keep]) ** 2 / (p[keep] + q[keep])))
