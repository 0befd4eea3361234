"""The Wasserstein-1 distance between two weighted samples on the line.

:func:`wasserstein1` integrates ``|F_ref - F_cand|`` with negative weights allowed (scipy's
version refuses them).  Weighted quantiles are :func:`hepgen.stats.weighted_quantile`.

References
----------
S. S. Vallender, "Calculation of the Wasserstein distance between probability distributions
on the line", Theory Probab. Appl. 18 (1974) 784.
R. J. Hyndman and Y. Fan, "Sample quantiles in statistical packages", Amer. Statist. 50
(1996) 361.
"""

from __future__ import annotations

import numpy as np

from hepgen.validation.univariate.ecdf import check_pair, ecdfs

__all__ = ["wasserstein1"]


def wasserstein1(
    reference: np.ndarray,
    candidate: np.ndarray,
    reference_weights: np.ndarray | None = None,
    candidate_weights: np.ndarray | None = None,
    *,
    name: str = "feature",
) -> float:
    """Wasserstein-1 (earth mover's) distance ``integral |F_ref(x) - F_cand(x)| dx``.

    Hand-written, a cumulative sum over the sorted distinct pooled values, because
    :func:`scipy.stats.wasserstein_distance` rejects negative weights (sWeights); it equals
    scipy's result for non-negative weights.

    Parameters
    ----------
    reference, candidate : array of shape (n1,) and (n2,)
        Values of one feature.
    reference_weights, candidate_weights : array of shape (n1,) and (n2,), optional
        Per-event weights (negative allowed, positive sum).
    name : str
        Feature name used as prefix of error messages.

    Returns
    -------
    float
        Distance in the units of the feature.

    References
    ----------
    S. S. Vallender, "Calculation of the Wasserstein distance between probability
    distributions on the line", Theory Probab. Appl. 18 (1974) 784.

    Examples
    --------
    >>> wasserstein1([0.0, 1.0], [1.0, 2.0])
    1.0
    """
    pair = check_pair(reference, candidate, reference_weights, candidate_weights, name)
    u, f1, f2 = ecdfs(pair)
    return float(np.sum(np.abs(f1[:-1] - f2[:-1]) * np.diff(u)))
