"""Checked sample pairs and their weighted empirical CDFs, shared by the one-feature tests.

Every test of :mod:`hepgen.validation.univariate` starts from a :class:`Pair` (the values and
weights of one feature in both samples, checked once) and most of them read the weighted
empirical CDFs at the distinct pooled values.  They are written here by hand because scipy's
ECDF tools (``ks_2samp``) take no weights and ``wasserstein_distance`` refuses negative ones
(sWeights).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from hepgen.stats import check_weights
from hepgen.validation._checks import as_sample

__all__ = ["Pair", "check_pair", "ecdfs", "per_value"]


@dataclasses.dataclass(frozen=True)
class Pair:
    """One feature of both samples, checked: values and weights (None = unweighted).

    Attributes
    ----------
    x1, x2 : ndarray of shape (n1,) and (n2,)
        Finite values of the reference and the candidate, in feature units.
    w1, w2 : ndarray of shape (n1,) and (n2,), or None
        Their weights; ``None`` when unweighted or when all weights are equal (only relative
        weights matter for normalised distributions).
    """

    x1: np.ndarray
    w1: np.ndarray | None
    x2: np.ndarray
    w2: np.ndarray | None

    @property
    def weighted(self) -> bool:
        """Whether either sample carries (unequal) weights."""
        return self.w1 is not None or self.w2 is not None


def _sample(x: Any, w: Any, label: str) -> tuple[np.ndarray, np.ndarray | None]:
    arr = as_sample(x, name=label)
    weights = check_weights(w, arr.size, name=label)
    if weights is not None and np.all(weights == weights[0]):
        weights = None  # equal weights: the normalised distribution is the unweighted one
    return arr, weights


def check_pair(reference: Any, candidate: Any, rw: Any, cw: Any, name: str) -> Pair:
    """Check one feature of both samples and their weights.

    Parameters
    ----------
    reference, candidate : array_like of shape (n1,) and (n2,)
        Values of one feature, any units.
    rw, cw : array_like of shape (n1,) and (n2,), or None
        Per-event weights (negative allowed, positive sum).
    name : str
        Feature name, the prefix of error messages (``"<name> reference: ..."``).

    Returns
    -------
    Pair

    Raises
    ------
    InputError
        Empty, non-finite or non-1-D values, or weights of the wrong length or sum.

    Examples
    --------
    >>> check_pair([1.0, 2.0], [3.0], [2.0, 2.0], None, "pt").weighted
    False
    """
    x1, w1 = _sample(reference, rw, f"{name} reference")
    x2, w2 = _sample(candidate, cw, f"{name} candidate")
    return Pair(x1, w1, x2, w2)


def _cumulative(x: np.ndarray, w: np.ndarray | None, at: np.ndarray) -> tuple[np.ndarray, float]:
    """Cumulative weight of ``x`` at each value of ``at`` (ties included) and the total."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    idx = np.searchsorted(xs, at, side="right")  # after the last of equal values
    if w is None:
        return idx.astype(np.float64), float(x.size)
    cum = np.concatenate([[0.0], np.cumsum(w[order])])
    return cum[idx], float(cum[-1])


def ecdfs(pair: Pair) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct pooled values and both (weighted) empirical CDFs evaluated there.

    Parameters
    ----------
    pair : Pair

    Returns
    -------
    u : ndarray of shape (k,)
        The sorted distinct values of both samples together, in feature units.
    f1, f2 : ndarray of shape (k,)
        ``F_ref(u)`` and ``F_cand(u)``, counted after the last of equal values (ties included).
        With negative weights an ECDF need not be monotone.

    Examples
    --------
    >>> u, f1, f2 = ecdfs(check_pair([1.0, 2.0], [2.0, 3.0], None, None, "x"))
    >>> u, f1, f2
    (array([1., 2., 3.]), array([0.5, 1. , 1. ]), array([0. , 0.5, 1. ]))
    """
    u = np.unique(np.concatenate([pair.x1, pair.x2]))
    c1, t1 = _cumulative(pair.x1, pair.w1, u)
    c2, t2 = _cumulative(pair.x2, pair.w2, u)
    return u, c1 / t1, c2 / t2


def per_value(
    x: np.ndarray, w: np.ndarray | None, u: np.ndarray, squared: bool = False
) -> np.ndarray:
    """Sum of weights (or of squared weights) of ``x`` at each distinct value of ``u``.

    Parameters
    ----------
    x : ndarray of shape (n,)
        Values, each of them one of ``u``.
    w : ndarray of shape (n,) or None
        Weights; ``None`` counts events.
    u : ndarray of shape (k,)
        Sorted distinct values (from :func:`ecdfs`).
    squared : bool
        Sum ``w^2`` instead of ``w``.

    Returns
    -------
    ndarray of shape (k,), float64

    Examples
    --------
    >>> per_value(np.array([1.0, 3.0, 3.0]), None, np.array([1.0, 2.0, 3.0]))
    array([1., 0., 2.])
    """
    idx = np.searchsorted(u, x)
    if w is None:
        return np.bincount(idx, minlength=u.size).astype(np.float64)
    return np.bincount(idx, weights=w * w if squared else w, minlength=u.size)
