"""Precision and recall for distributions (PRD curves) with a calibrated permutation p-value.

Sajjadi et al. (2018): cluster the union of the reference and candidate rows (standardised
features) with k-means into ``K`` bins, histogram both samples on them (``r``: reference,
``e``: candidate, normalised), and trace the attainable (precision, recall) pairs

    precision(lambda) = sum_k min(lambda r_k, e_k),   recall(lambda) = precision(lambda) / lambda

for ``lambda = tan(angle)`` over ``n_angles`` angles in (0, pi/2).  The curves of ``n_runs``
independent clusterings are averaged.  Summaries: ``F_8`` (maximum over the curve of
``F_beta``, beta = 8: recall-like, low when the candidate misses modes of the reference) and
``F_1/8`` (beta = 1/8: precision-like, low when it makes rows the reference does not have).

The p-value is a permutation test of the sample labels that keeps each run's clustering of the
union fixed.  The clustering depends on the union only (it is fitted on a seeded subsample of
the union in random order, standardised with the union's mean and standard deviation, and its
randomness is independent of the labels), so under the null the labels are exchangeable given
it and the test is exact.  Which rows are labelled "reference" matters only through how many
fall in each joint cell (the tuple of a row's clusters over the runs); that count vector is
multivariate hypergeometric and is drawn as such
(:meth:`numpy.random.Generator.multivariate_hypergeometric`): the same distribution as
permuting the rows, at a cost in the number of cells instead of the number of rows.

References
----------
M. S. M. Sajjadi, O. Bachem, M. Lucic, O. Bousquet, S. Gelly, "Assessing Generative Models via
Precision and Recall", NeurIPS 2018, arXiv:1806.00035.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np
from scipy import sparse

from hepgen.errors import InputError
from hepgen.validation._checks import MetricResult, as_matrix, check_weights, rng_from
from hepgen.validation.clusters import assign_standardised, fit_clusters, standardiser
from hepgen.validation.fidelity import _unweight

__all__ = ["PRDResult", "prd_curve"]

# Rows of the union each run's k-means is fitted on (all rows are then assigned).
_FIT_EVENTS = 20_000
# Permutations evaluated together (memory: a few chunk x n_runs x n_angles float arrays).
_PERM_CHUNK = 64


@dataclasses.dataclass(frozen=True)
class PRDResult(MetricResult):
    """Result of :func:`prd_curve`.

    Attributes
    ----------
    precision, recall : ndarray of shape (n_angles,)
        The PRD curve averaged over the runs (dimensionless, in [0, 1]); point ``i`` belongs to
        the slope ``lambda_i = tan(angle_i)``, angles increasing from 0 to pi/2.
    f_8, f_1_8 : float
        Maximum of ``F_8`` (recall-like) and of ``F_1/8`` (precision-like) over the curve;
        both are 1 for identical histograms.
    statistic : float
        ``1 - min(F_8, F_1/8)``: 0 for identical histograms, larger for a worse candidate.
    pvalue : float or None
        Permutation p-value ``(1 + #{T_perm >= T}) / (1 + n_permutations)``; ``None`` when
        ``n_permutations == 0``.  Its smallest value is ``1 / (1 + n_permutations)``.
    n_permutations, n_clusters, n_runs, n_angles : int
        Settings used.
    n_reference, n_candidate : int
        Rows used (after unweighting and ``max_events``).
    note : str
        How weights and subsampling were handled, else ``""``.

    References
    ----------
    See :func:`prd_curve`.

    Examples
    --------
    >>> r = PRDResult(np.ones(3), np.ones(3), 1.0, 1.0, 0.0, None, 0, 20, 10, 3, 5, 5)
    >>> sorted(r.to_dict(arrays=False))[:4]
    ['f_1_8', 'f_8', 'n_angles', 'n_candidate']
    """

    _array_fields: ClassVar[tuple[str, ...]] = ("precision", "recall")

    precision: np.ndarray
    recall: np.ndarray
    f_8: float
    f_1_8: float
    statistic: float
    pvalue: float | None
    n_permutations: int
    n_clusters: int
    n_runs: int
    n_angles: int
    n_reference: int
    n_candidate: int
    note: str = ""


def prd_curve(
    reference: Any,
    candidate: Any,
    reference_weights: Any = None,
    candidate_weights: Any = None,
    *,
    feature_names: list[str] | None = None,
    n_clusters: int = 20,
    n_runs: int = 10,
    n_angles: int = 1001,
    n_permutations: int = 1000,
    max_events: int | None = 50_000,
    device: str = "auto",
    seed: int | np.random.Generator | None = 0,
) -> PRDResult:
    """PRD curve of ``candidate`` against ``reference``, its F_8 / F_1/8 and a p-value.

    Parameters
    ----------
    reference : array_like, shape (n, d)
        Reference ("real") rows, physical units.
    candidate : array_like, shape (m, d)
        Candidate ("generated") rows, same features.
    reference_weights, candidate_weights : array_like, shape (n,) / (m,), optional
        The permutation test needs exchangeable unweighted rows, so weighted samples are first
        unweighted by accept-reject (keep row i with probability ``max(w_i, 0) / max(w)``;
        negative weights count as 0); ``note`` says what was kept.
    feature_names : list of str, optional
        Names of the ``d`` features (checked for length only; the metric is global).
    n_clusters : int
        k-means clusters ``K`` per run (Sajjadi et al.: 20).
    n_runs : int
        Independent clusterings whose curves are averaged (Sajjadi et al.: 10).
    n_angles : int
        Points of the curve (Sajjadi et al.: 1001), >= 3.
    n_permutations : int
        Label permutations of the p-value (0: no p-value).  The p-value cannot go below
        ``1 / (1 + n_permutations)``: use >= 1000 to resolve p < 1e-3.
    max_events : int or None
        At most this many rows per sample (seeded subsample); ``None``: all.  Each run's k-means
        is fitted on at most 20 000 rows of the union, then all rows are assigned.
    device : str
        Accepted for a uniform call shape; the computation runs on the CPU.
    seed : int, numpy.random.Generator or None
        Seed of the unweighting, subsampling, clusterings and permutations.

    Returns
    -------
    PRDResult
        The averaged curve (precision and recall, shape (n_angles,)), ``f_8``, ``f_1_8``, the
        statistic ``1 - min(F_8, F_1/8)`` and its permutation p-value, and the sizes used.

    References
    ----------
    M. S. M. Sajjadi, O. Bachem, M. Lucic, O. Bousquet, S. Gelly, "Assessing Generative Models
    via Precision and Recall", NeurIPS 2018, arXiv:1806.00035 (algorithm and defaults;
    reference code github.com/msmsajjadi/precision-recall-distributions).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = np.concatenate([rng.normal(size=(300, 2)), rng.normal(size=(300, 2)) + 4.0])
    >>> y = rng.normal(size=(600, 2))  # misses the mode at (4, 4): recall drops
    >>> res = prd_curve(x, y, n_runs=2, n_permutations=50, seed=1)
    >>> res.f_8 < 0.6 < 0.9 < res.f_1_8, res.pvalue < 0.05
    (True, True)
    """
    x = as_matrix(reference, "reference")
    y = as_matrix(candidate, "candidate", n_features=x.shape[1])
    w = check_weights(reference_weights, x.shape[0], "reference")
    v = check_weights(candidate_weights, y.shape[0], "candidate")
    if feature_names is not None and len(feature_names) != x.shape[1]:
        raise InputError(
            f"feature_names: {len(feature_names)} names for {x.shape[1]} feature columns"
        )
    n_clusters = _int_at_least(n_clusters, 2, "n_clusters")
    n_runs = _int_at_least(n_runs, 1, "n_runs")
    n_angles = _int_at_least(n_angles, 3, "n_angles")
    n_permutations = _int_at_least(n_permutations, 0, "n_permutations")
    if max_events is not None:
        max_events = _int_at_least(max_events, 2, "max_events")
    rng = rng_from(seed)
    x, note_x = _unweight(x, w, rng, "reference")
    y, note_y = _unweight(y, v, rng, "candidate")
    notes = [s for s in (note_x, note_y) if s]
    for arr, name in ((x, "reference"), (y, "candidate")):
        if arr.shape[0] < n_clusters:
            raise InputError(
                f"{name}: {arr.shape[0]} rows (after unweighting); PRD with "
                f"n_clusters={n_clusters} needs at least {n_clusters}"
            )
    if max_events is not None:
        if x.shape[0] > max_events:
            x = x[np.sort(rng.choice(x.shape[0], max_events, replace=False))]
            notes.append(f"reference subsampled to {max_events} rows")
        if y.shape[0] > max_events:
            y = y[np.sort(rng.choice(y.shape[0], max_events, replace=False))]
            notes.append(f"candidate subsampled to {max_events} rows")
    n, m = x.shape[0], y.shape[0]
    union = np.concatenate([x, y])
    labels = _cluster_runs(union, n_clusters, n_runs, rng)
    slopes = _slopes(n_angles)
    ref_counts = _run_counts(labels[:n], n_clusters)
    tot_counts = _run_counts(labels, n_clusters)
    precision, recall = _prd(ref_counts[None] / n, (tot_counts - ref_counts)[None] / m, slopes)
    precision, recall = precision[0], recall[0]
    f_8 = _max_f_beta(precision, recall, 8.0)
    f_1_8 = _max_f_beta(precision, recall, 1.0 / 8.0)
    statistic = 1.0 - min(f_8, f_1_8)
    pvalue = None
    if n_permutations > 0:
        null = _permutation_statistics(labels, n, n_clusters, slopes, n_permutations, rng)
        pvalue = float((1 + np.count_nonzero(null >= statistic - 1e-12)) / (1 + n_permutations))
    return PRDResult(
        precision=precision,
        recall=recall,
        f_8=float(f_8),
        f_1_8=float(f_1_8),
        statistic=float(statistic),
        pvalue=pvalue,
        n_permutations=n_permutations,
        n_clusters=n_clusters,
        n_runs=n_runs,
        n_angles=n_angles,
        n_reference=int(n),
        n_candidate=int(m),
        note="; ".join(notes),
    )


def _int_at_least(value: Any, low: int, name: str) -> int:
    """``value`` as an int >= ``low``, else InputError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise InputError(f"{name}={value!r}: expected an integer >= {low}")
    return int(value)


def _cluster_runs(
    union: np.ndarray, n_clusters: int, n_runs: int, rng: np.random.Generator
) -> np.ndarray:
    """Cluster index of every row of the union in each run, int64 of shape (n + m, n_runs).

    Standardised with the union's own mean and standard deviation, so that the clustering
    is a function of the (unlabelled) union and the permutation test stays exact.
    """
    mean, scale = standardiser(union)
    z = (union - mean) / scale
    labels = np.empty((union.shape[0], n_runs), dtype=np.int64)
    for r in range(n_runs):
        cl = fit_clusters(
            union,
            n_clusters,
            max_fit_events=_FIT_EVENTS,
            mean=mean,
            scale=scale,
            name="reference and candidate",
            seed=rng,
        )
        labels[:, r] = assign_standardised(z, cl.centroids)
    return labels


def _run_counts(labels: np.ndarray, k: int) -> np.ndarray:
    """Rows per (run, cluster), shape (n_runs, k), from ``labels`` of shape (n, n_runs)."""
    n_runs = labels.shape[1]
    flat = (labels + k * np.arange(n_runs)).ravel()
    return np.bincount(flat, minlength=n_runs * k).reshape(n_runs, k).astype(np.float64)


def _slopes(n_angles: int) -> np.ndarray:
    """``tan`` of ``n_angles`` angles from 1e-10 to pi/2 - 1e-10 (Sajjadi et al.)."""
    eps = 1e-10
    return np.tan(np.linspace(eps, np.pi / 2 - eps, n_angles))


def _prd(ref: np.ndarray, ev: np.ndarray, slopes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Run-averaged PRD curves of histograms ``ref``, ``ev`` of shape (p, n_runs, k).

    Returns precision and recall, each of shape (p, n_angles), clipped to [0, 1].
    ``precision(lambda) = sum_k min(lambda r_k, e_k)`` is evaluated from the sorted breakpoints
    ``t_k = e_k / r_k``: ``lambda * sum_{t_k > lambda} r_k + sum_{t_k <= lambda} e_k``, which
    costs ``O(n_angles log k)`` per curve instead of the reference code's ``O(n_angles k)``
    (the permutation test evaluates thousands of curves).
    """
    p, n_runs, k = ref.shape
    b = p * n_runs
    r, e = ref.reshape(b, k), ev.reshape(b, k)
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = np.arctan(np.where(r > 0, e / np.where(r > 0, r, 1.0), np.inf))  # in [0, pi/2]
    order = np.argsort(theta, axis=1)
    theta = np.take_along_axis(theta, order, 1)
    rs, es = np.take_along_axis(r, order, 1), np.take_along_axis(e, order, 1)
    zero = np.zeros((b, 1))
    e_head = np.concatenate([zero, np.cumsum(es, 1)], 1)  # sum of the first j
    r_tail = np.concatenate([np.cumsum(rs[:, ::-1], 1)[:, ::-1], zero], 1)  # sum from j on
    # One searchsorted for all curves: offset curve i's angles by 4 i (angles lie in [0, pi/2]).
    offset = 4.0 * np.arange(b)[:, None]
    angles = np.arctan(slopes)
    j = np.searchsorted((theta + offset).ravel(), (angles + offset).ravel(), side="right")
    j = j.reshape(b, -1) - k * np.arange(b)[:, None]  # breakpoints <= angle, per curve
    prec = slopes * np.take_along_axis(r_tail, j, 1) + np.take_along_axis(e_head, j, 1)
    prec = prec.reshape(p, n_runs, -1)
    rec = prec / slopes
    return np.clip(prec.mean(1), 0.0, 1.0), np.clip(rec.mean(1), 0.0, 1.0)


def _max_f_beta(precision: np.ndarray, recall: np.ndarray, beta: float) -> np.ndarray:
    """``max`` over the last axis of ``F_beta = (1 + b^2) p r / (b^2 p + r)`` (0 where p = r = 0)."""
    b2 = beta * beta
    den = b2 * precision + recall
    f = np.where(den > 0, (1 + b2) * precision * recall / np.where(den > 0, den, 1.0), 0.0)
    return f.max(-1)


def _permutation_statistics(
    labels: np.ndarray,
    n: int,
    k: int,
    slopes: np.ndarray,
    n_permutations: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """``1 - min(F_8, F_1/8)`` for ``n_permutations`` random relabellings, shape (P,).

    A relabelling matters only through the number of "reference" rows in each joint cell
    (unique row of ``labels``), which is multivariate hypergeometric given the cell totals.
    """
    n_rows, n_runs = labels.shape
    m = n_rows - n
    if float(k) ** n_runs < 2.0**62:  # a row's clusters as one base-k integer: faster unique
        codes = labels @ (k ** np.arange(n_runs, dtype=np.int64))
        _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
        cells = labels[first]
    else:
        cells, inverse = np.unique(labels, axis=0, return_inverse=True)
    totals = np.bincount(inverse.ravel(), minlength=cells.shape[0])
    # One-hot map (cell -> (run, cluster)) to add the cell counts up per run.
    onehot = sparse.csr_matrix(
        (
            np.ones(cells.size),
            (np.repeat(np.arange(cells.shape[0]), n_runs), (cells + k * np.arange(n_runs)).ravel()),
        ),
        shape=(cells.shape[0], n_runs * k),
    )
    tot_counts = _run_counts(labels, k)
    out = np.empty(n_permutations)
    for p0 in range(0, n_permutations, _PERM_CHUNK):
        size = min(_PERM_CHUNK, n_permutations - p0)
        h = rng.multivariate_hypergeometric(totals, n, size=size, method="count")
        ref = np.asarray((onehot.T @ h.T.astype(np.float64)).T).reshape(size, n_runs, k)
        prec, rec = _prd(ref / n, (tot_counts - ref) / m, slopes)
        out[p0 : p0 + size] = 1.0 - np.minimum(
            _max_f_beta(prec, rec, 8.0), _max_f_beta(prec, rec, 1.0 / 8.0)
        )
    return out
