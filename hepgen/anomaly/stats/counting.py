r"""Significance of the count in the signal region: profile likelihood and Poisson tail.

:func:`significance` is the profile-likelihood significance of a counting experiment with
``n`` observed events, an expected background ``b`` and a Gaussian uncertainty ``sigma_b``
on ``b`` (Cowan, Cranmer, Gross, Vitells, eq. (20) with the observed ``n`` in place of the
Asimov ``s + b``):

.. math::  Z^2 = 2\left[n \ln\frac{n (b + \sigma^2)}{b^2 + n \sigma^2}
                  - \frac{b^2}{\sigma^2} \ln\left(1 + \frac{\sigma^2 (n - b)}{b (b + \sigma^2)}
                  \right)\right],

which for ``sigma_b = 0`` is ``Z^2 = 2 [n ln(n / b) - (n - b)]``.  ``Z`` is signed: negative
for a deficit (``n < b``).  Under the background-only hypothesis it is asymptotically a
standard normal variable (Wilks); :func:`poisson_pvalue` gives the exact Poisson tail.

References
----------
G. Cowan, K. Cranmer, E. Gross, O. Vitells, "Asymptotic formulae for likelihood-based tests of
new physics", Eur. Phys. J. C 71 (2011) 1554, arXiv:1007.1727.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special, stats

from hepgen.errors import InputError

__all__ = ["poisson_pvalue", "significance", "significances"]


def significances(
    n_observed: np.ndarray | float,
    n_expected: np.ndarray | float,
    sigma_expected: np.ndarray | float = 0.0,
) -> np.ndarray:
    """Vectorised :func:`significance` (numpy broadcasting of the three arguments).

    Parameters
    ----------
    n_observed : array_like, events
        Observed counts ``n >= 0`` (need not be integers: sums of weights).
    n_expected : array_like, events
        Expected background ``b > 0``.
    sigma_expected : array_like, events
        One-sigma uncertainty ``sigma_b >= 0`` of ``b`` (default 0).

    Returns
    -------
    np.ndarray of the broadcast shape
        Signed significance ``Z`` (negative for deficits).
    """
    n, b, sig = np.broadcast_arrays(
        np.asarray(n_observed, dtype=np.float64),
        np.asarray(n_expected, dtype=np.float64),
        np.asarray(sigma_expected, dtype=np.float64),
    )
    for name, arr, ok in (
        ("n_observed", n, np.isfinite(n) & (n >= 0)),
        ("n_expected", b, np.isfinite(b) & (b > 0)),
        ("sigma_expected", sig, np.isfinite(sig) & (sig >= 0)),
    ):
        if not ok.all():
            bad = arr[~ok]
            need = "> 0" if name == "n_expected" else ">= 0"
            raise InputError(
                f"significance: {name} must be finite and {need}; {bad.size} of {arr.size} "
                f"values are not (first: {bad.flat[0]})"
            )
    s2 = sig * sig
    with np.errstate(divide="ignore", invalid="ignore"):
        # sigma_b = 0: Z^2 = 2 [n ln(n/b) - (n - b)]
        z2_plain = 2.0 * (special.xlogy(n, n / b) - (n - b))
        # sigma_b > 0 (Cowan et al., eq. 20 with n in place of s + b)
        first = special.xlogy(n, n * (b + s2) / (b * b + n * s2))
        second = (b * b / s2) * np.log1p(s2 * (n - b) / (b * (b + s2)))
        z2_sigma = 2.0 * (first - second)
    # tiny sigma_b: the second form cancels badly; the difference to the first is O(s2/b)
    use_plain = s2 <= 1e-12 * b
    z2 = np.where(use_plain, z2_plain, z2_sigma)
    z = np.sqrt(np.clip(z2, 0.0, None))
    return np.where(n < b, -z, z)


def significance(n_observed: float, n_expected: float, sigma_expected: float = 0.0) -> float:
    """Signed local significance ``Z`` of ``n`` events observed over a background ``b ± sigma_b``.

    The profile-likelihood ratio of Cowan et al. (arXiv:1007.1727) for a Poisson count with a
    Gaussian-constrained background (module docstring), evaluated at the observed ``n``:
    ``Z = sqrt(2 [n ln(n (b + s²) / (b² + n s²)) - b²/s² ln(1 + s² (n - b) / (b (b + s²)))])``
    with ``s = sigma_b``; ``Z = sqrt(2 [n ln(n / b) - (n - b)])`` for ``s = 0``.  ``n = 0`` is
    allowed (``Z = -sqrt(2 b)`` for ``s = 0``).

    Parameters
    ----------
    n_observed : float, events
        Observed count ``n >= 0`` (a sum of weights is allowed).
    n_expected : float, events
        Expected background ``b > 0``.
    sigma_expected : float, events
        Uncertainty ``sigma_b >= 0`` on ``b`` (default 0).

    Returns
    -------
    float
        ``Z``, positive for an excess and negative for a deficit.

    Examples
    --------
    >>> round(significance(150, 100), 3)
    4.652
    >>> significance(150, 100, 10) < significance(150, 100)
    True
    """
    return float(significances(n_observed, n_expected, sigma_expected))


def poisson_pvalue(n_observed: int, n_expected: float) -> float:
    """Local p-value ``P(N >= n | b)`` of a Poisson count.

    Parameters
    ----------
    n_observed : int, events
        Observed count ``n >= 0``.  A non-integer ``n`` (a sum of weights) uses the continuous
        extension ``P(n, b)``, the regularised lower incomplete gamma function, which equals
        ``poisson.sf(n - 1, b)`` at integers.
    n_expected : float, events
        Expected background ``b > 0``.

    Returns
    -------
    float
        ``P(N >= n)``; 1 for ``n = 0``.
    """
    n, b = float(n_observed), float(n_expected)
    if not (math.isfinite(n) and n >= 0):
        raise InputError(f"poisson_pvalue: n_observed must be finite and >= 0, got {n_observed}")
    if not (math.isfinite(b) and b > 0):
        raise InputError(f"poisson_pvalue: n_expected must be finite and > 0, got {n_expected}")
    if n == 0:
        return 1.0
    if n == round(n):
        return float(stats.poisson.sf(round(n) - 1, b))
    return float(special.gammainc(n, b))
