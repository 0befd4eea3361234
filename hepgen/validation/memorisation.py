"""Memorisation (data-copying) tests: did the generator reproduce its training set?

Three samples: the training sample ``T`` the generator was fitted on, a held-out reference
``P`` from the same distribution (never seen in training) and the generated candidate ``Q``.
Every reference and candidate row gets its distance to the nearest training row (Euclidean, on
features standardised with the reference mean and standard deviation, exact search).  A model
that copies puts its rows closer to ``T`` than fresh data are.

* **Three-sample test** of Meehan, Chaudhuri and Dasgupta (2020): k-means on ``T`` defines
  cells; in each cell the Mann-Whitney statistic ``U`` counts the (candidate, reference) pairs
  with the candidate farther from ``T`` (ties count 1/2) and becomes the z-score
  ``Z_U = (U - m n / 2) / sigma`` (tie-corrected ``sigma``).  ``Z_U << 0``: the candidate is
  closer to the training rows than fresh data are (data copying); ``Z_U >> 0``: farther
  (under-fitting).  ``C_T`` is the reference-weighted mean of ``Z_U`` over the cells holding at
  least ``min_cell`` candidate and reference rows, as in the paper.  Under the null (candidate
  and reference exchangeable) the cell z-scores are independent standard normals, so
  ``sum_c w_c Z_c / sqrt(sum_c w_c^2)`` is standard normal; the one-sided p-value is its lower
  tail (small p = copying).
* **Near-duplicate count** (the birthday-paradox idea of Arora et al.): how many candidate and
  reference rows lie within ``epsilon`` of a training row; by default ``epsilon`` is the 1st
  percentile of the reference distances, so about 1 % of the reference is "near" by
  construction.  One-sided Fisher exact test of a larger candidate fraction.

References
----------
C. Meehan, K. Chaudhuri, S. Dasgupta, "A Non-Parametric Test to Detect Data-Copying in
Generative Models", AISTATS 2020, arXiv:2004.05675.
S. Arora, A. Risteski, Y. Zhang, "Do GANs learn the distribution? Some theory and
empirics", ICLR 2018.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from scipy import stats

from hepgen.errors import InputError
from hepgen.validation._checks import MetricResult, as_matrix, check_weights, rng_from
from hepgen.validation.fidelity import _unweight

__all__ = ["MemorisationResult", "data_copying_test"]

# Default sizes by search backend (chosen by measurement on a loaded 2-core machine; see
# data_copying_test).  (max_train, max_events): KD-tree on the CPU is fast in few dimensions,
# brute force on the CPU is quadratic, a GPU does brute force cheaply.  The training sample is
# kept larger than the queries: a copied row is seen only when its source row is searched, so
# the power grows with the fraction of the training set kept (linearly) faster than with the
# number of queries (square root), at the same cost.
_CAPS_KDTREE = (1_000_000, 10_000)
_CAPS_CPU_BRUTE = (50_000, 2_500)
_CAPS_CUDA = (1_000_000, 20_000)
# KD-tree at 1M training rows, 20k queries (measured): 6 dims 3.6 s, 8 dims 11-16 s, 14 > 100 s
_KDTREE_MAX_DIM = 6
_KMEANS_FIT = 20_000  # training rows used to fit the cells


@dataclasses.dataclass(frozen=True)
class MemorisationResult(MetricResult):
    """Result of :func:`data_copying_test`.

    Attributes
    ----------
    statistic : float
        ``C_T``, the reference-weighted mean of the cell z-scores (NaN when no cell qualifies).
        Negative: candidate rows closer to the training set than held-out rows (copying).
    pvalue : float
        One-sided p-value of copying, ``Phi(sum w Z / sqrt(sum w^2))`` (NaN when no cell).
    z : float
        The combined z-score ``sum w Z / sqrt(sum w^2)``, standard normal under the null.
    n_cells : int
        Number of k-means cells.
    cells : list of dict
        Per cell: ``index``, ``n_train``, ``n_reference``, ``n_candidate``, ``z`` (None when
        the cell has fewer than ``min_cell`` candidate or reference rows, or all distances tie)
        and ``centroid`` ``{feature: value}`` in physical units.
    near_duplicates : dict
        ``epsilon`` (standardised units), ``candidate`` and ``reference`` (counts of rows
        within ``epsilon`` of a training row), their ``*_fraction`` and the one-sided Fisher
        ``pvalue``.
    median_distance_candidate, median_distance_reference : float
        Median nearest-training-row distance (standardised units, dimensionless).
    n_train, n_reference, n_candidate : int
        Rows used (after unweighting and the caps).
    note : str
        Unweighting, subsampling and other remarks.
    """

    # the cells (their centroids say where copying happens) are small: kept in metrics.json
    _array_fields: ClassVar[tuple[str, ...]] = ()

    statistic: float
    pvalue: float
    z: float
    n_cells: int
    cells: list[dict[str, Any]]
    near_duplicates: dict[str, Any]
    median_distance_candidate: float
    median_distance_reference: float
    n_train: int
    n_reference: int
    n_candidate: int
    note: str = ""


def data_copying_test(
    train: Any,
    reference: Any,
    candidate: Any,
    train_weights: Any = None,
    reference_weights: Any = None,
    candidate_weights: Any = None,
    *,
    feature_names: Sequence[str] | None = None,
    n_cells: int = 20,
    min_cell: int = 20,
    epsilon: float | None = None,
    max_train: int | None = None,
    max_events: int | None = None,
    device: str = "auto",
    seed: int | np.random.Generator | None = 0,
) -> MemorisationResult:
    """Three-sample data-copying test and near-duplicate count of ``candidate`` vs ``train``.

    Parameters
    ----------
    train : array_like, shape (n_t, d)
        The rows the generator was trained on.
    reference : array_like, shape (n, d)
        Held-out rows of the same distribution, not used in training.
    candidate : array_like, shape (m, d)
        Generated rows, same features.
    train_weights, reference_weights, candidate_weights : array_like, optional
        Per-row weights, shapes (n_t,), (n,), (m,).  The test counts rows, so weighted samples
        are unweighted by accept-reject first (negative weights count as 0); ``note`` says so.
    feature_names : sequence of str, optional
        Names of the d features (keys of the cell centroids); default ``x0, x1, ...``.
    n_cells : int
        k-means cells fitted on (at most 20000 rows of) the training sample.
    min_cell : int
        A cell enters ``C_T`` when it holds at least this many candidate and reference rows
        (the normal approximation of ``U``; the paper's threshold tau).
    epsilon : float or None
        Near-duplicate radius in standardised units; ``None``: the 1st percentile of the
        reference distances (0 when more than 1 % of the reference coincides with training
        rows, e.g. integer features; then "near" means "identical").
    max_train, max_events : int or None
        Most training rows searched, and most reference and candidate rows each (seeded
        subsamples).  ``None`` picks by backend: KD-tree on the CPU for d <= 6 (1000000 /
        10000), brute force on the CPU for d > 6 (50000 / 2500), brute force on CUDA
        (1000000 / 20000); each costs a few seconds at most.  A training subsample dilutes
        copying: a copied row counts only if its source row was kept (the near-duplicate
        count keeps its power better than ``C_T`` under that dilution).
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"`` for the nearest-neighbour search.
    seed : int, numpy.random.Generator or None
        Seed of unweighting, subsampling and k-means; same seed, same result.

    Returns
    -------
    MemorisationResult
        ``C_T``, its p-value, the cells, the near-duplicate counts and the sizes used.

    References
    ----------
    C. Meehan, K. Chaudhuri, S. Dasgupta, "A Non-Parametric Test to Detect Data-Copying in
    Generative Models", AISTATS 2020, arXiv:2004.05675.
    S. Arora, A. Risteski, Y. Zhang, "Do GANs learn the distribution? Some theory and
    empirics", ICLR 2018.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> train, ref = rng.normal(size=(3000, 2)), rng.normal(size=(1000, 2))
    >>> copier = train[:1000] + 1e-3 * rng.normal(size=(1000, 2))
    >>> res = data_copying_test(train, ref, copier, n_cells=5, device="cpu")
    >>> res.statistic < -5, res.pvalue < 1e-3, res.near_duplicates["candidate_fraction"] > 0.9
    (True, True, True)
    """
    t = as_matrix(train, "train")
    d = t.shape[1]
    x = as_matrix(reference, "reference", n_features=d)
    y = as_matrix(candidate, "candidate", n_features=d)
    wt = check_weights(train_weights, t.shape[0], "train")
    wx = check_weights(reference_weights, x.shape[0], "reference")
    wy = check_weights(candidate_weights, y.shape[0], "candidate")
    names = _names(feature_names, d)
    n_cells = _int_setting("n_cells", n_cells, 1)
    min_cell = _int_setting("min_cell", min_cell, 2)
    if epsilon is not None and not (np.isfinite(epsilon) and epsilon >= 0):
        raise InputError(f"epsilon={epsilon!r}: expected a finite distance >= 0 or None")
    backend, dev = _backend(device, d)
    cap_t, cap_e = {"kdtree": _CAPS_KDTREE, "cpu": _CAPS_CPU_BRUTE}.get(backend, _CAPS_CUDA)
    cap_t = cap_t if max_train is None else _int_setting("max_train", max_train, 2)
    cap_e = cap_e if max_events is None else _int_setting("max_events", max_events, 2)

    rng = rng_from(seed)
    notes: list[str] = []
    t = _rows(t, wt, "train", cap_t, n_cells, rng, notes)
    x = _rows(x, wx, "reference", cap_e, n_cells, rng, notes)
    y = _rows(y, wy, "candidate", cap_e, n_cells, rng, notes)
    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std == 0] = 1.0
    ts, xs, ys = (t - mean) / std, (x - mean) / std, (y - mean) / std

    dist_x, dist_y = _nearest_train_distances(ts, (xs, ys), backend, dev)
    cells, statistic, z, pvalue = _cell_test(ts, xs, ys, dist_x, dist_y, n_cells, min_cell, rng)
    for cell in cells:
        cell["centroid"] = dict(zip(names, (cell["centroid"] * std + mean).tolist(), strict=True))
    if not np.isfinite(statistic):
        notes.append(f"no cell holds {min_cell} candidate and reference rows: C_T undefined")
    frac_zero = float(np.mean(dist_x == 0.0))
    if frac_zero > 0.01:
        notes.append(
            f"{100 * frac_zero:.1f} % of reference rows coincide with a training row (discrete "
            "features, or reference rows shared with the training set)"
        )
    near = _near_duplicates(dist_x, dist_y, epsilon)
    return MemorisationResult(
        statistic=statistic,
        pvalue=pvalue,
        z=z,
        n_cells=n_cells,
        cells=cells,
        near_duplicates=near,
        median_distance_candidate=float(np.median(dist_y)),
        median_distance_reference=float(np.median(dist_x)),
        n_train=int(t.shape[0]),
        n_reference=int(x.shape[0]),
        n_candidate=int(y.shape[0]),
        note="; ".join([*notes, f"nearest-neighbour search: {backend}, exact"]),
    )


def _rows(
    a: np.ndarray,
    w: np.ndarray | None,
    name: str,
    cap: int,
    n_cells: int,
    rng: np.random.Generator,
    notes: list[str],
) -> np.ndarray:
    """The unweighted rows of one sample, subsampled to ``cap``; appends to ``notes``."""
    a, note = _unweight(a, w, rng, name)
    if note:
        notes.append(note)
    if a.shape[0] > cap:
        notes.append(f"{name}: {cap} of {a.shape[0]} rows used (seeded subsample)")
        a = a[np.sort(rng.choice(a.shape[0], cap, replace=False))]
    if a.shape[0] < max(n_cells, 2):
        raise InputError(
            f"{name}: {a.shape[0]} rows (after unweighting); the data-copying test with "
            f"n_cells={n_cells} needs at least {max(n_cells, 2)}"
        )
    return a


def _names(feature_names: Sequence[str] | None, d: int) -> list[str]:
    if feature_names is None:
        return [f"x{j}" for j in range(d)]
    names = [str(f) for f in feature_names]
    if len(names) != d:
        raise InputError(f"feature_names: {len(names)} names for {d} feature columns")
    return names


def _int_setting(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise InputError(f"{name}={value!r}: expected an integer >= {low}")
    return int(value)


def _backend(device: str, d: int) -> tuple[str, str]:
    """``("kdtree" | "cpu" | "cuda", torch device name)`` for the nearest-neighbour search."""
    from hepgen.devices import resolve_device

    dev = resolve_device(device)
    if dev.startswith("cuda"):
        return "cuda", dev
    return ("kdtree" if d <= _KDTREE_MAX_DIM else "cpu"), "cpu"


def _nearest_train_distances(
    t: np.ndarray, queries: tuple[np.ndarray, ...], backend: str, device: str
) -> list[np.ndarray]:
    """Exact distance of every query row to its nearest row of ``t``, one array (n_q,) each.

    Parameters
    ----------
    t : numpy.ndarray, shape (n_t, d)
        Training rows (standardised).
    queries : tuple of numpy.ndarray, shapes (n_q, d)
        Rows to look up.
    backend : str
        ``"kdtree"`` (scikit-learn, float64) or a torch brute force (``"cpu"``/``"cuda"``).
    device : str
        Torch device of the brute force.
    """
    if backend == "kdtree":
        from sklearn.neighbors import NearestNeighbors

        nn = NearestNeighbors(n_neighbors=1, algorithm="kd_tree", n_jobs=1).fit(t)
        return [nn.kneighbors(q, return_distance=True)[0][:, 0] for q in queries]
    import torch

    # Tiles of exact differences (not the |a|^2 + |b|^2 - 2ab expansion, whose cancellation
    # would blur the near-zero distances that copying produces); float64 on the CPU.
    dtype = torch.float32 if backend == "cuda" else torch.float64
    tile_q, tile_t = (4096, 65536) if backend == "cuda" else (1024, 8192)
    out = []
    with torch.inference_mode():
        tt = torch.as_tensor(t, dtype=dtype, device=device)
        for q in queries:
            qt = torch.as_tensor(q, dtype=dtype, device=device)
            best = torch.empty(qt.shape[0], dtype=dtype, device=device)
            for i0 in range(0, qt.shape[0], tile_q):
                qi, cur = qt[i0 : i0 + tile_q], None
                for j0 in range(0, tt.shape[0], tile_t):
                    dist = torch.cdist(
                        qi, tt[j0 : j0 + tile_t], compute_mode="donot_use_mm_for_euclid_dist"
                    ).amin(dim=1)
                    cur = dist if cur is None else torch.minimum(cur, dist)
                best[i0 : i0 + tile_q] = cur
            out.append(best.double().cpu().numpy())
    return out


def _mann_whitney_z(dist_y: np.ndarray, dist_x: np.ndarray) -> float | None:
    """Tie-corrected z-score of ``U = #{(j, i): dist_y[j] > dist_x[i]} + ties / 2``.

    Written out because :func:`scipy.stats.mannwhitneyu` returns ``U`` and a p-value but not
    the signed, tie-corrected z-score that ``C_T`` averages.  None when every distance ties.
    """
    m, n = dist_y.shape[0], dist_x.shape[0]
    pooled = np.concatenate([dist_y, dist_x])
    ranks = stats.rankdata(pooled)
    u = ranks[:m].sum() - m * (m + 1) / 2.0
    _, counts = np.unique(pooled, return_counts=True)
    big_n = m + n
    ties = float(np.sum(counts.astype(np.float64) ** 3 - counts)) / (big_n * (big_n - 1))
    var = m * n / 12.0 * ((big_n + 1) - ties)
    if var <= 0:
        return None
    return float((u - m * n / 2.0) / np.sqrt(var))


def _cell_test(
    t: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    dist_x: np.ndarray,
    dist_y: np.ndarray,
    n_cells: int,
    min_cell: int,
    rng: np.random.Generator,
) -> tuple[list[dict[str, Any]], float, float, float]:
    """Cells of k-means on ``t``, the z-score per cell, ``C_T``, the combined z and p-value."""
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    fit = t if t.shape[0] <= _KMEANS_FIT else t[rng.choice(t.shape[0], _KMEANS_FIT, False)]
    km = KMeans(n_clusters=n_cells, n_init=1, random_state=int(rng.integers(2**31 - 1)))
    with warnings.catch_warnings():
        # Fewer distinct training rows than cells (discrete features): k-means warns and
        # leaves duplicate centroids; their cells stay empty and get z = None.
        warnings.simplefilter("ignore", ConvergenceWarning)
        km.fit(fit)
    lt, lx, ly = km.predict(t), km.predict(x), km.predict(y)
    n_x = x.shape[0]
    cells, zs, ws = [], [], []
    for c in range(n_cells):
        in_x, in_y = lx == c, ly == c
        nx, ny = int(in_x.sum()), int(in_y.sum())
        z = None
        if nx >= min_cell and ny >= min_cell:
            z = _mann_whitney_z(dist_y[in_y], dist_x[in_x])
        if z is not None:
            zs.append(z)
            ws.append(nx / n_x)
        cells.append(
            {
                "index": c,
                "n_train": int(np.sum(lt == c)),
                "n_reference": nx,
                "n_candidate": ny,
                "z": z,
                "centroid": km.cluster_centers_[c],
            }
        )
    if not zs:
        return cells, float("nan"), float("nan"), float("nan")
    w, zarr = np.asarray(ws), np.asarray(zs)
    statistic = float(np.sum(w * zarr) / np.sum(w))
    z_all = float(np.sum(w * zarr) / np.sqrt(np.sum(w * w)))
    return cells, statistic, z_all, float(stats.norm.cdf(z_all))


def _near_duplicates(
    dist_x: np.ndarray, dist_y: np.ndarray, epsilon: float | None
) -> dict[str, Any]:
    """Rows within ``epsilon`` of a training row, candidate vs reference, Fisher one-sided."""
    eps = float(np.quantile(dist_x, 0.01)) if epsilon is None else float(epsilon)
    c, r = int(np.sum(dist_y <= eps)), int(np.sum(dist_x <= eps))
    m, n = dist_y.shape[0], dist_x.shape[0]
    pvalue = stats.fisher_exact([[c, m - c], [r, n - r]], alternative="greater").pvalue
    return {
        "epsilon": eps,
        "candidate": c,
        "candidate_fraction": c / m,
        "reference": r,
        "reference_fraction": r / n,
        "pvalue": float(pvalue),
    }
