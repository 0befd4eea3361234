"""The k-means step shared by the cluster-based metrics (PRD curves, NDB).

Features are standardised (shift and scale per feature, by default the weighted mean and
standard deviation of the sample given; a constant feature keeps scale 1), k-means is fitted
with :class:`sklearn.cluster.MiniBatchKMeans` (or :class:`sklearn.cluster.KMeans` when the fit
sample is small) on a seeded subsample of at most ``max_fit_events`` rows, and every row is
then assigned to its nearest centroid in chunks, so that the cost stays linear in the number
of rows.  Centroids are kept in standardised units and returned in physical units as well.

References
----------
D. Sculley, "Web-scale k-means clustering", WWW 2010 (mini-batch k-means).
D. Arthur, S. Vassilvitskii, "k-means++: the advantages of careful seeding", SODA 2007.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import numpy as np

from hepgen.errors import InputError
from hepgen.validation._checks import as_matrix, check_weights, rng_from

__all__ = ["Clusters", "fit_clusters", "standardiser"]

# Below this many fit rows, the exact (Lloyd) KMeans is cheap enough.
_SMALL_FIT = 5_000


@dataclasses.dataclass(frozen=True)
class Clusters:
    """A fitted k-means partition of feature space.

    Attributes
    ----------
    centroids : ndarray of shape (k, d)
        Cluster centres in standardised units.
    mean, scale : ndarray of shape (d,)
        Standardisation: ``z = (x - mean) / scale``, in the units of the features.
    n_fit : int
        Rows the k-means was fitted on.

    References
    ----------
    See :func:`fit_clusters`.

    Examples
    --------
    >>> c = Clusters(np.array([[0.0], [1.0]]), np.array([10.0]), np.array([2.0]), 2)
    >>> c.centroids_physical.ravel().tolist(), c.assign(np.array([[9.0], [13.0]])).tolist()
    ([10.0, 12.0], [0, 1])
    """

    centroids: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    n_fit: int

    @property
    def n_clusters(self) -> int:
        """Number of clusters ``k``."""
        return int(self.centroids.shape[0])

    @property
    def centroids_physical(self) -> np.ndarray:
        """Cluster centres in the units of the features, shape (k, d)."""
        return self.centroids * self.scale + self.mean

    def standardise(self, x: np.ndarray) -> np.ndarray:
        """``(x - mean) / scale`` for rows ``x`` of shape (n, d)."""
        return (np.asarray(x, dtype=np.float64) - self.mean) / self.scale

    def assign(self, x: np.ndarray, chunk_size: int = 65_536) -> np.ndarray:
        """Index of the nearest centroid of each row of ``x`` (physical units, shape (n, d)).

        Returns an int64 array of shape (n,).  Computed chunk by chunk as
        ``argmin_c |c|^2 - 2 x.c`` in float64 (memory ``chunk_size * k``).
        """
        return assign_standardised(self.standardise(x), self.centroids, chunk_size)


def assign_standardised(
    z: np.ndarray, centroids: np.ndarray, chunk_size: int = 65_536
) -> np.ndarray:
    """Nearest-centroid index of each standardised row of ``z`` (n, d); int64, shape (n,)."""
    cc = np.einsum("kd,kd->k", centroids, centroids)
    out = np.empty(z.shape[0], dtype=np.int64)
    for i0 in range(0, z.shape[0], chunk_size):
        out[i0 : i0 + chunk_size] = np.argmin(cc - 2.0 * (z[i0 : i0 + chunk_size] @ centroids.T), 1)
    return out


def standardiser(x: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation of ``x`` (n, d), weighted if ``weights`` (n,).

    Negative weights count as 0 here (a scale needs a positive variance); a feature with zero
    spread gets scale 1.  Returns ``(mean, scale)``, each of shape (d,), in feature units.

    Examples
    --------
    >>> m, s = standardiser(np.array([[1.0, 5.0], [3.0, 5.0]]))
    >>> m.tolist(), s.tolist()
    ([2.0, 5.0], [1.0, 1.0])
    """
    w = None if weights is None else np.clip(weights, 0.0, None)
    if w is not None and w.sum() <= 0:
        w = None
    mean = np.average(x, axis=0, weights=w)
    scale = np.sqrt(np.average((x - mean) ** 2, axis=0, weights=w))
    scale[~(scale > 0)] = 1.0
    return mean, scale


def fit_clusters(
    x: Any,
    n_clusters: int,
    weights: Any = None,
    *,
    max_fit_events: int = 50_000,
    mean: np.ndarray | None = None,
    scale: np.ndarray | None = None,
    name: str = "sample",
    seed: int | np.random.Generator | None = 0,
) -> Clusters:
    """Fit k-means with ``n_clusters`` centres to (a seeded subsample of) ``x``.

    Parameters
    ----------
    x : array_like of shape (n, d)
        Rows to fit on, physical units.
    n_clusters : int
        Number of clusters ``k`` (>= 2, at most the number of fit rows).
    weights : array_like of shape (n,), optional
        Per-row weights: used for the standardisation and as k-means ``sample_weight``
        (negative weights count as 0 in both).
    max_fit_events : int
        At most this many rows, drawn without replacement (seeded) and in random order, are
        used for the fit; all rows can be assigned afterwards with :meth:`Clusters.assign`.
    mean, scale : ndarray of shape (d,), optional
        Standardisation to use; default :func:`standardiser` of ``x``.
    name : str
        Sample name in error messages.
    seed : int, numpy.random.Generator or None
        Seed of the subsample and of the k-means initialisation.

    Returns
    -------
    Clusters
        Centroids (standardised and physical units), the standardisation and ``n_fit``.

    References
    ----------
    D. Sculley, "Web-scale k-means clustering", WWW 2010.
    D. Arthur, S. Vassilvitskii, "k-means++: the advantages of careful seeding", SODA 2007.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = np.concatenate([rng.normal(0, 1, (200, 2)), rng.normal(100, 1, (200, 2))])
    >>> c = fit_clusters(x, 2, seed=1)
    >>> sorted(np.round(c.centroids_physical[:, 0] / 100).astype(int).tolist())
    [0, 1]
    """
    from sklearn.cluster import KMeans, MiniBatchKMeans

    x = as_matrix(x, name)
    w = check_weights(weights, x.shape[0], name)
    if isinstance(n_clusters, bool) or int(n_clusters) != n_clusters or n_clusters < 2:
        raise InputError(f"n_clusters={n_clusters!r}: expected an integer >= 2")
    n_clusters = int(n_clusters)
    if isinstance(max_fit_events, bool) or int(max_fit_events) != max_fit_events:
        raise InputError(f"max_fit_events={max_fit_events!r}: expected an integer")
    rng = rng_from(seed)
    if mean is None or scale is None:
        mean, scale = standardiser(x, w)
    # A random subset in random order: the fit is then a symmetric function of the rows (in
    # distribution), which the PRD permutation test relies on.
    idx = rng.permutation(x.shape[0])[: int(max_fit_events)]
    fit_w = None if w is None else np.clip(w[idx], 0.0, None)
    n_fit = int(idx.size if fit_w is None else np.count_nonzero(fit_w))
    if n_fit < n_clusters:
        raise InputError(
            f"{name}: {n_fit} rows (with positive weight) to fit {n_clusters} clusters; "
            f"expected at least {n_clusters}"
        )
    z = (x[idx] - mean) / scale
    state = int(rng.integers(2**31 - 1))
    if n_fit <= _SMALL_FIT:
        km = KMeans(n_clusters, n_init=3, random_state=state)
    else:
        km = MiniBatchKMeans(n_clusters, n_init=3, batch_size=2048, random_state=state)
    with warnings.catch_warnings():
        # Fewer distinct points than clusters (integer features) is legitimate here: the
        # duplicate centres are simply empty bins.
        warnings.simplefilter("ignore")
        km.fit(z, sample_weight=fit_w)
    return Clusters(
        centroids=np.asarray(km.cluster_centers_, dtype=np.float64),
        mean=np.asarray(mean, dtype=np.float64),
        scale=np.asarray(scale, dtype=np.float64),
        n_fit=n_fit,
    )
