"""Weighted statistics shared by every layer: weight checks, Kish sizes, weighted quantiles.

Per-event weights (generator weights, efficiencies, sWeights) reach preprocessing, training,
validation and the anomaly scan alike; one implementation of each weighted statistic keeps
their conventions identical everywhere: weights are finite, may be negative (sWeights), and
must have a positive sum.  numpy only, so that any module may import it.

References
----------
L. Kish, "Survey Sampling", Wiley (1965): effective sample size ``(sum w)^2 / sum w^2``.
R. J. Hyndman and Y. Fan, "Sample quantiles in statistical packages", Amer. Statist. 50
(1996) 361 (definition 5, the midpoint or Hazen plotting positions).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hepgen.errors import InputError

__all__ = ["check_weights", "effective_sample_size", "plotting_positions", "weighted_quantile"]


def check_weights(weights: Any, n: int, name: str = "sample") -> np.ndarray | None:
    """Per-event weights as float64, checked.

    Parameters
    ----------
    weights : array-like of shape (n,) or None
        The weights; ``None`` (no weights) stays ``None``.  Negative entries (sWeights) are
        allowed.
    n : int
        The number of events.
    name : str
        Prefix of the error messages (what the weights belong to).

    Returns
    -------
    ndarray of float64, shape (n,), or None

    Raises
    ------
    InputError
        The shape, the count of NaN/inf, or a sum that is not positive, prefixed by ``name``.

    Examples
    --------
    >>> check_weights([1, -0.5, 2], 3)
    array([ 1. , -0.5,  2. ])
    >>> check_weights([1.0, -2.0], 2, "fit")
    Traceback (most recent call last):
    ...
    hepgen.errors.InputError: fit: weights sum to -1; the sum must be positive
    """
    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise InputError(f"{name}: weights have shape {w.shape}, expected ({n},), one per event")
    bad = n - int(np.count_nonzero(np.isfinite(w)))
    if bad:
        raise InputError(f"{name}: {bad} of {n} weights are NaN or inf")
    total = float(w.sum())
    if not total > 0:
        raise InputError(f"{name}: weights sum to {total:g}; the sum must be positive")
    return w


def effective_sample_size(weights: np.ndarray | None, n: int | None = None) -> float:
    """Kish effective sample size ``(sum w)^2 / sum w^2``.

    Parameters
    ----------
    weights : ndarray of shape (n,) or None
        Per-event weights; ``None`` means unweighted.
    n : int, optional
        The number of events, returned when ``weights`` is ``None`` (required then).

    Returns
    -------
    float
        The number of unweighted events carrying the same statistical power; ``n`` when
        unweighted, 0.0 when every weight is 0.

    Examples
    --------
    >>> effective_sample_size(np.array([1.0, 1.0, 2.0]))
    2.6666666666666665
    >>> effective_sample_size(None, 10)
    10.0
    """
    if weights is None:
        if n is None:
            raise TypeError("effective_sample_size: give the event count n for no weights")
        return float(n)
    s2 = float(np.sum(weights * weights))
    if s2 <= 0:
        return 0.0
    return float(np.sum(weights)) ** 2 / s2


def weighted_quantile(
    x: np.ndarray, q: float | np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """Weighted quantiles with midpoint (Hazen) plotting positions; negative weights allowed.

    Without weights this equals ``numpy.quantile(x, q, method="hazen")``.  With weights the
    sorted value ``x_i`` sits at the cumulative probability ``(C_{i-1} + C_i) / 2``, where ``C``
    is the cumulative weight divided by the total; quantiles interpolate linearly between those
    points (see :func:`plotting_positions`).  Rows whose weight adds no probability (zero, or
    negative sWeights) are left out of the interpolation, so a zero weight is the same as
    removing the row.

    Parameters
    ----------
    x : array of shape (n,)
        Values, any units.
    q : float or array
        Probabilities in [0, 1]; below the first / above the last plotting position the
        smallest / largest value is returned.
    weights : array of shape (n,) or None
        Per-row weights (e.g. sWeights); their sum must be positive.

    Returns
    -------
    ndarray
        Quantiles, shape of ``q``, units of ``x``.

    Raises
    ------
    InputError
        ``x`` is not 1-D, empty or not finite, a probability is outside [0, 1], or the
        weights are invalid (:func:`check_weights`).

    Notes
    -----
    Written here because numpy's weighted quantiles are limited (only
    ``method="inverted_cdf"``, no interpolation, no negative weights).

    Examples
    --------
    >>> float(weighted_quantile(np.array([1.0, 2.0, 3.0]), 0.5, np.array([1.0, 0.0, 1.0])))
    2.0
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1:
        raise InputError(
            f"weighted_quantile: expected a 1-D array of shape (n,), got shape {x.shape}"
        )
    w = check_weights(weights, len(x), "weighted_quantile")
    if len(x) == 0:
        raise InputError("weighted_quantile: no values")
    bad = int(np.count_nonzero(~np.isfinite(x)))
    if bad:
        raise InputError(f"weighted_quantile: {bad} of {len(x)} values are NaN or inf")
    q = np.asarray(q, dtype=np.float64)
    if not np.all((q >= 0) & (q <= 1)):
        raise InputError("weighted_quantile: quantiles must lie in [0, 1]")
    xs, probs = plotting_positions(x, w)
    return np.interp(q, probs, xs)


def plotting_positions(x: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Sorted values and their midpoint cumulative probabilities, strictly inside (0, 1).

    Parameters
    ----------
    x : ndarray of shape (n,), n >= 1
        Values, any units.
    weights : ndarray of shape (n,) or None
        Checked weights (:func:`check_weights`); negative entries allowed.

    Returns
    -------
    values : ndarray of shape (m,)
        The sorted values that carry probability (``m = n`` unweighted).
    probs : ndarray of shape (m,)
        Their plotting positions ``(C_{i-1} + C_i) / 2``, increasing.

    Notes
    -----
    Negative sWeights make the running cumulative weight non-monotone (it may dip below 0 or
    overshoot the total), which is not a CDF.  The cumulative sum is clipped into
    ``[0, total]`` and replaced by its running maximum: a negative weight only cancels positive
    weight further down the same tail, and the CDF stays flat where the net weight is negative
    instead of decreasing.  This is the usual practical choice; the result is exact whenever
    all weights are >= 0.  Rows that add no probability are dropped: they would distort the
    interpolation.

    Examples
    --------
    >>> plotting_positions(np.array([3.0, 1.0]), None)
    (array([1., 3.]), array([0.25, 0.75]))
    """
    if weights is None:
        xs = np.sort(x)
        n = len(xs)
        return xs, (np.arange(n, dtype=np.float64) + 0.5) / n
    order = np.argsort(x, kind="stable")
    xs = x[order]
    ws = weights[order]
    total = float(ws.sum())
    cum = np.maximum.accumulate(np.clip(np.cumsum(ws), 0.0, total))
    prev = np.empty_like(cum)
    prev[0] = 0.0
    prev[1:] = cum[:-1]
    keep = cum > prev
    probs = 0.5 * (prev[keep] + cum[keep]) / total
    return xs[keep], probs
