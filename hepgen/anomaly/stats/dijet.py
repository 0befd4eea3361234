r"""The dijet function of the LHC resonance searches and the quadrature that integrates it.

The QCD dijet mass spectrum is described by the standard dijet function of the ATLAS and CMS
resonance searches,

.. math::  f(m) = p_0 \, (1 - x)^{p_1} \, x^{-(p_2 + p_3 \ln x)}, \qquad x = m / \sqrt{s},

a density in events per TeV (``p3 = 0`` gives the 3-parameter form).  ``ln f`` is *linear*
in ``(ln p0, p1, p2, p3)`` with the basis ``(1, ln(1 - x), -ln x, -(ln x)^2)``
(:func:`basis`), which the sideband fit exploits.  Integrals of ``f`` use Gauss-Legendre
quadrature (:func:`gauss_legendre`): the spectrum falls by a large factor across a wide bin,
so a bin's centre value would be biased.

References
----------
CMS Collaboration, JHEP 05 (2020) 033, arXiv:1911.03947, and ATLAS Collaboration, JHEP 03
(2020) 145, arXiv:1910.08447 (dijet function).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from hepgen.errors import InputError

__all__ = [
    "basis",
    "check_params",
    "check_sqrt_s",
    "check_units",
    "dijet_function",
    "gauss_legendre",
]


def basis(m: np.ndarray, sqrt_s: float, k: int) -> np.ndarray:
    """``(1, ln(1 - x), -ln x, -(ln x)^2)[:k]`` at ``x = m / sqrt_s``.

    ``ln f = basis @ (ln p0, p1, p2, p3)``.

    Parameters
    ----------
    m : array_like of any shape, TeV
        Dijet masses, ``0 < m < sqrt_s``.
    sqrt_s : float
        Collision energy in TeV.
    k : int
        Number of basis functions (3 or 4).

    Returns
    -------
    np.ndarray of shape ``m.shape + (k,)``
    """
    x = np.asarray(m, dtype=np.float64) / sqrt_s
    lx = np.log(x)
    cols = [np.ones_like(x), np.log1p(-x), -lx, -lx * lx]
    return np.stack(cols[:k], axis=-1)


def check_params(params: Sequence[float]) -> np.ndarray:
    """The 4 parameters ``(p0, p1, p2, p3)`` of the dijet function (``p3 = 0`` appended to 3).

    Raises
    ------
    InputError
        Not 3 or 4 values, or a value that is not finite.
    """
    p = np.asarray(params, dtype=np.float64).ravel()
    if p.size == 3:
        p = np.append(p, 0.0)
    if p.size != 4:
        raise InputError(
            f"dijet function: expected 3 or 4 parameters (p0, p1, p2[, p3]), got {p.size}"
        )
    if not np.isfinite(p).all():
        raise InputError(f"dijet function: parameters must be finite, got {p.tolist()}")
    return p


def check_sqrt_s(sqrt_s: float) -> float:
    """``sqrt_s`` as a float, in TeV.

    Raises
    ------
    InputError
        Not a positive finite number.
    """
    s = float(sqrt_s)
    if not (math.isfinite(s) and s > 0):
        raise InputError(f"sqrt_s must be a positive number of TeV, got {sqrt_s!r}")
    return s


def dijet_function(m: np.ndarray, params: Sequence[float], sqrt_s: float = 13.0) -> np.ndarray:
    r"""The dijet function ``f(m) = p0 (1 - x)^p1 / x^(p2 + p3 ln x)``, ``x = m / sqrt_s``.

    Parameters
    ----------
    m : array_like of shape (n,) (any shape), TeV
        Dijet masses.
    params : sequence of 3 or 4 floats
        ``(p0, p1, p2, p3)``; with 3 values ``p3 = 0``.  ``p0`` is the normalisation in
        events per TeV (the value of ``f`` where ``(1 - x) = x = 1`` would be).
    sqrt_s : float
        Collision energy in TeV (default 13).

    Returns
    -------
    np.ndarray, same shape as ``m``, events per TeV
        ``f(m)``; 0 where ``m <= 0`` or ``m >= sqrt_s`` (outside the physical range).

    Examples
    --------
    >>> float(dijet_function(6.5, [1.0, 1.0, 1.0, 0.0], sqrt_s=13.0))
    1.0
    """
    p = check_params(params)
    s = check_sqrt_s(sqrt_s)
    m = np.asarray(m, dtype=np.float64)
    inside = (m > 0) & (m < s)
    safe = np.where(inside, m, 0.5 * s)
    theta = np.array([math.log(abs(p[0])) if p[0] != 0 else 0.0, p[1], p[2], p[3]])
    with np.errstate(over="ignore"):
        value = np.sign(p[0]) * np.exp(basis(safe, s, 4) @ theta)
    return np.where(inside, value, 0.0)


def gauss_legendre(a: np.ndarray, b: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of n-point Gauss-Legendre quadrature on each ``[a, b]``.

    Parameters
    ----------
    a, b : array_like of the same shape
        Lower and upper limits of the intervals.
    n : int
        Nodes per interval.

    Returns
    -------
    nodes, weights : np.ndarray of shape ``a.shape + (n,)``

    Examples
    --------
    >>> nodes, weights = gauss_legendre(np.array([0.0]), np.array([2.0]), 4)
    >>> round(float((weights * nodes**3).sum()), 12)  # integral of m^3 over [0, 2]
    4.0
    """
    t, w = np.polynomial.legendre.leggauss(n)
    a = np.asarray(a, dtype=np.float64)[..., None]
    b = np.asarray(b, dtype=np.float64)[..., None]
    half = 0.5 * (b - a)
    return a + half * (t + 1.0), half * w


def check_units(m: np.ndarray, name: str, sqrt_s: float, where: str = "scan") -> None:
    """The resonance variable below the collision energy ``sqrt_s`` (same units).

    The sideband fits' dijet function is a function of ``m / sqrt_s`` in (0, 1): data in GeV
    with ``sqrt_s`` in TeV (the default 13) reach far beyond it.

    Parameters
    ----------
    m : np.ndarray of shape (n,)
        The resonance variable of every event (its own units).
    name : str
        Its branch name, for the message.
    sqrt_s : float
        ``scan.sqrt_s``, the collision energy in the units of ``m``.
    where : str
        Starts the message (the config file).

    Raises
    ------
    InputError
        ``m`` reaches ``sqrt_s`` (the largest value named, and the fix).

    Examples
    --------
    >>> check_units(np.array([2.5, 3.5]), "mjj", 13.0)
    >>> check_units(np.array([2500.0, 3500.0]), "mjj", 13.0)
    Traceback (most recent call last):
    ...
    hepgen.errors.InputError: scan: mjj reaches 3500 >= sqrt_s 13: give scan.sqrt_s in the units of mjj, e.g. 13000 for GeV
    """
    m = np.asarray(m, dtype=np.float64)
    m = m[np.isfinite(m)]  # non-finite values are counted by the scan's own checks
    top = float(m.max()) if m.size else -np.inf
    if top >= sqrt_s:
        raise InputError(
            f"{where}: {name} reaches {top:.6g} >= sqrt_s {sqrt_s:g}: give scan.sqrt_s in the "
            f"units of {name}, e.g. 13000 for GeV"
        )
