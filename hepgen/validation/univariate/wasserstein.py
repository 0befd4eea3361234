"""The (weighted) CDF and its inverse: the Wasserstein-1 distance and weighted quantiles.

:func:`wasserstein1` integrates ``|F_ref - F_cand|`` with negative weights allowed (scipy's
version refuses them); :func:`weighted_quantile` is the validation metrics' spelling of
:func:`hepgen.stats.weighted_quantile`, with their input checks.

References
----------
S. S. Vallender, "Calculation of the Wasserstein distance between probability distributions
on the line", Theory Probab. Appl. 18 (1974) 784.
R. J. Hyndman and Y. Fan, "Sample quantiles in statistical packages", Amer. Statist. 50
(1996) 361.
"""

from __future__ import annotations

import numpy as np

import hepgen.stats
from hepgen.errors import InputError
from hepgen.stats import check_weights
from hepgen.validation._checks import as_sample
from hepgen.validation.univariate.ecdf import check_pair, ecdfs

__all__ = ["wasserstein1", "weighted_quantile"]


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


def weighted_quantile(
    values: np.ndarray, quantiles: float | np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """Weighted quantiles with midpoint (Hazen) plotting positions; negative weights allowed.

    Unweighted this equals ``numpy.quantile(values, quantiles, method="hazen")``.  Weighted,
    the sorted value ``x_i`` sits at cumulative probability ``(C_{i-1} + C_i) / 2`` (``C`` the
    normalised cumulative weight) and quantiles interpolate linearly; below the first / above
    the last position the minimum / maximum is returned.  The validation metrics' spelling of
    :func:`hepgen.stats.weighted_quantile` (one implementation for the package), with their
    checks: finite values and quantiles in [0, 1].  numpy's own weighted quantiles offer only
    ``inverted_cdf`` and reject negative weights.

    Parameters
    ----------
    values : array of shape (n,)
        Values, any units.
    quantiles : float or array
        Probabilities in [0, 1].
    weights : array of shape (n,), optional
        Per-value weights (negative allowed, positive sum).

    Returns
    -------
    ndarray
        Quantiles, the shape of ``quantiles``, in the units of ``values``.

    References
    ----------
    R. J. Hyndman and Y. Fan, "Sample quantiles in statistical packages", Amer. Statist. 50
    (1996) 361 (definition 5, Hazen).

    Examples
    --------
    >>> weighted_quantile([1.0, 2.0, 3.0, 4.0], [0.25, 0.5], weights=[1.0, 1.0, 1.0, 5.0])
    array([2.5, 3.5])
    """
    x = as_sample(values, name="weighted_quantile values")
    w = check_weights(weights, x.size, name="weighted_quantile values")
    q = np.asarray(quantiles, dtype=np.float64)
    if not np.all((q >= 0) & (q <= 1)):
        raise InputError("weighted_quantile: quantiles must lie in [0, 1]")
    return np.asarray(hepgen.stats.weighted_quantile(x, q, w))
