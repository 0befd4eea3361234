"""ROC AUC statistics of the classifier two-sample test: DeLong's variance, a weighted AUC
that reuses one sort, a stratified bootstrap interval and a thinned ROC curve.

:func:`hepgen.validation.c2st.classifier_test` measures the held-out AUC of a classifier; these
are the statistics of that AUC that scikit-learn and scipy do not offer (an AUC variance, an
AUC with negative weights, a fast bootstrap).

References
----------
- E. R. DeLong, D. M. DeLong and D. L. Clarke-Pearson, "Comparing the areas under two or more
  correlated receiver operating characteristic curves: a nonparametric approach",
  Biometrics 44 (1988) 837.
- X. Sun and W. Xu, "Fast implementation of DeLong's algorithm for comparing the areas under
  correlated receiver operating characteristic curves", IEEE Signal Process. Lett. 21 (2014)
  1389.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats

from hepgen.errors import InputError

__all__ = [
    "MAX_ROC_POINTS",
    "N_BOOTSTRAP",
    "RankedScores",
    "bootstrap_ci",
    "delong_auc",
    "thin_curve",
]

#: Bootstrap resamples of the test split for ``ci="bootstrap"``.
N_BOOTSTRAP = 200
#: The reported ROC curve is thinned to at most this many points.
MAX_ROC_POINTS = 200


def delong_auc(positive: Any, negative: Any) -> tuple[float, float]:
    """ROC AUC of two score samples and its DeLong variance (fast midrank algorithm).

    The AUC is ``P(positive > negative) + P(positive == negative) / 2``, the Mann-Whitney
    ``U / (m n)``.  Its variance is DeLong's estimate from the structural components
    ``V10_i`` (the fraction of negatives below positive ``i``) and ``V01_j`` (the fraction of
    positives above negative ``j``): ``var(V10) / m + var(V01) / n``.  The components come
    from midranks, in ``O((m + n) log(m + n))`` (Sun & Xu 2014).  Hand-written because
    scikit-learn and scipy offer no AUC variance.

    Parameters
    ----------
    positive : array_like, shape (m,)
        Scores of the positive class (here: the candidate), ``m >= 2``.
    negative : array_like, shape (n,)
        Scores of the negative class (here: the reference), ``n >= 2``.

    Returns
    -------
    auc : float
        The empirical AUC (ties count one half).
    variance : float
        DeLong's variance estimate of the AUC (0 when all scores are equal).

    References
    ----------
    E. R. DeLong, D. M. DeLong, D. L. Clarke-Pearson, Biometrics 44 (1988) 837;
    X. Sun, W. Xu, IEEE Signal Process. Lett. 21 (2014) 1389.

    Examples
    --------
    >>> auc, var = delong_auc([0.9, 0.8, 0.4], [0.1, 0.5, 0.3])
    >>> round(auc, 4), round(var, 4)
    (0.8889, 0.0247)
    """
    pos = np.asarray(positive, dtype=np.float64).ravel()
    neg = np.asarray(negative, dtype=np.float64).ravel()
    m, n = pos.size, neg.size
    if m < 2 or n < 2:
        raise InputError(f"delong_auc: needs at least 2 scores per class, got {m} and {n}")
    if not (np.isfinite(pos).all() and np.isfinite(neg).all()):
        raise InputError("delong_auc: scores must be finite")
    # Midranks (average ranks of ties) in the pooled sample and within each class.
    tz = stats.rankdata(np.concatenate([pos, neg]))
    tx = stats.rankdata(pos)
    ty = stats.rankdata(neg)
    auc = (tz[:m].sum() - m * (m + 1) / 2.0) / (m * n)
    v10 = (tz[:m] - tx) / n
    v01 = 1.0 - (tz[m:] - ty) / m
    variance = np.var(v10, ddof=1) / m + np.var(v01, ddof=1) / n
    return float(auc), float(variance)


class RankedScores:
    """Held-out scores sorted once, so that the weighted AUC of any weight vector is O(n).

    Hand-written because scikit-learn's ``roc_auc_score`` rejects negative weights (sWeights
    make the ROC curve non-monotonic) and re-sorts on every call, which makes a 200-resample
    bootstrap of a 1e6-event test split slow.  A bootstrap resample is the same set of events
    with multinomial counts as extra weights, so it reuses the sort.

    Parameters
    ----------
    scores : numpy.ndarray, shape (n,)
        Classifier scores of the held-out events.
    labels : numpy.ndarray, shape (n,)
        1 for the positive class (candidate), 0 for the negative class (reference).

    Examples
    --------
    >>> import numpy as np
    >>> scores = np.array([0.9, 0.8, 0.4, 0.1, 0.5, 0.3])
    >>> ranked = RankedScores(scores, np.array([1, 1, 1, 0, 0, 0]))
    >>> round(ranked.auc(np.ones(6)), 4)
    0.8889
    """

    def __init__(self, scores: np.ndarray, labels: np.ndarray) -> None:
        uniq, group = np.unique(scores, return_inverse=True)
        self.group = group.ravel()
        self.n_groups = uniq.size
        self.labels = labels.astype(bool)

    def auc(self, weights: np.ndarray) -> float:
        """Weighted AUC: sum over positive i, negative j of w_i w_j [s_i > s_j] (ties 1/2),
        divided by the product of the class totals.

        Parameters
        ----------
        weights : numpy.ndarray, shape (n,)
            Per-event weights (negative weights allowed).

        Returns
        -------
        float
            The AUC, NaN when a class's weights sum to zero.
        """
        wpos = np.bincount(
            self.group, weights=np.where(self.labels, weights, 0.0), minlength=self.n_groups
        )
        wneg = np.bincount(
            self.group, weights=np.where(self.labels, 0.0, weights), minlength=self.n_groups
        )
        below = np.cumsum(wneg) - wneg
        total = wpos.sum() * wneg.sum()
        if total == 0:
            return math.nan
        return float(np.sum(wpos * (below + 0.5 * wneg)) / total)


def bootstrap_ci(
    ranked: RankedScores,
    weights: np.ndarray,
    labels: np.ndarray,
    level: float,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """Percentile interval of the AUC over stratified bootstrap resamples of the test split.

    Each of :data:`N_BOOTSTRAP` resamples draws the positives and the negatives with
    replacement, each class to its own size; the resample counts multiply ``weights``.

    Parameters
    ----------
    ranked : RankedScores
        The held-out scores, sorted once.
    weights : numpy.ndarray, shape (n,)
        Per-event weights (ones when unweighted).
    labels : numpy.ndarray, shape (n,)
        1 for the positive class, 0 for the negative class.
    level : float
        Confidence level in (0, 1).
    rng : numpy.random.Generator
        Source of the resamples.

    Returns
    -------
    tuple of float
        ``(low, high)``; ``(nan, nan)`` when no resample has a finite AUC.
    """
    idx_pos = np.flatnonzero(labels == 1)
    idx_neg = np.flatnonzero(labels == 0)
    n = labels.size
    aucs = np.empty(N_BOOTSTRAP)
    for b in range(N_BOOTSTRAP):
        counts = np.bincount(idx_pos[rng.integers(0, idx_pos.size, idx_pos.size)], minlength=n)
        counts += np.bincount(idx_neg[rng.integers(0, idx_neg.size, idx_neg.size)], minlength=n)
        aucs[b] = ranked.auc(weights * counts)
    aucs = aucs[np.isfinite(aucs)]
    if aucs.size == 0:
        return math.nan, math.nan
    tail = 50.0 * (1.0 - level)
    lo, hi = np.percentile(aucs, [tail, 100.0 - tail])
    return float(lo), float(hi)


def thin_curve(fpr: np.ndarray, tpr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A ROC curve thinned to at most :data:`MAX_ROC_POINTS` points, evenly spaced in arc
    length, endpoints included.

    Parameters
    ----------
    fpr, tpr : numpy.ndarray, shape (k,)
        The curve (false and true positive rates).

    Returns
    -------
    fpr, tpr : numpy.ndarray, shape (k',), k' <= MAX_ROC_POINTS
    """
    if fpr.size <= MAX_ROC_POINTS:
        return fpr, tpr
    arc = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(fpr), np.diff(tpr)))])
    targets = np.linspace(0.0, arc[-1], MAX_ROC_POINTS)
    keep = np.unique(np.clip(np.searchsorted(arc, targets), 0, fpr.size - 1))
    keep[0], keep[-1] = 0, fpr.size - 1
    keep = np.unique(keep)
    return fpr[keep], tpr[keep]
