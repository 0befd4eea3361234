"""Multiple testing: many per-feature p-values, read together.

A comparison of 14 features with two tests each makes 28 p-values; under the null about 1.4 of
them fall below 0.05 by chance.  :func:`multiple_testing` states, next to the raw p-values,

* the **Holm** adjusted p-values (family-wise error rate: the chance of any false rejection is
  at most ``alpha``, for any dependence between the tests), written here because scipy has no
  Holm step-down (``scipy.stats.false_discovery_control`` covers BH/BY only);
* the **Benjamini-Hochberg** adjusted p-values (false discovery rate, from
  ``scipy.stats.false_discovery_control``; valid for independent or positively dependent
  tests, which KS and chi2 of the same feature are);
* the count of raw rejections at ``alpha`` against the number expected by chance
  (``alpha * n_tests``), with the binomial probability of at least that many rejections if the
  tests were independent (they are not quite: KS and chi2 of one feature are correlated, so
  read that p-value as a guide, and the Holm count as the test).

References
----------
S. Holm, "A simple sequentially rejective multiple test procedure", Scand. J. Statist. 6 (1979) 65.
Y. Benjamini and Y. Hochberg, "Controlling the false discovery rate: a practical and powerful
approach to multiple testing", J. R. Statist. Soc. B 57 (1995) 289.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hepgen.errors import InputError

__all__ = ["benjamini_hochberg", "holm", "multiple_testing"]

#: The per-feature tests with p-values.
TESTS = ("ks", "chi2")


def _pvalues(pvalues: Any) -> np.ndarray:
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1:
        raise InputError(f"p-values: expected a 1-D array, got shape {p.shape}")
    if p.size and not (np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()):
        raise InputError("p-values: expected finite values in [0, 1]")
    return p


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values, shape (m,).

    ``p_adj[(i)] = max_{j <= i} min(1, (m - j + 1) p_(j))`` over the sorted p-values; reject
    where ``p_adj < alpha`` to hold the family-wise error rate at ``alpha``.

    Parameters
    ----------
    pvalues : array of shape (m,)
        Raw p-values in [0, 1].

    Returns
    -------
    np.ndarray
        Adjusted p-values, shape (m,), in the input's order.

    References
    ----------
    S. Holm, Scand. J. Statist. 6 (1979) 65.

    Examples
    --------
    >>> holm([0.01, 0.04, 0.03]).round(3).tolist()
    [0.03, 0.06, 0.06]
    """
    p = _pvalues(pvalues)
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.maximum.accumulate(scaled)
    return out


def benjamini_hochberg(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (``scipy.stats.false_discovery_control``), shape (m,).

    Parameters
    ----------
    pvalues : array of shape (m,)
        Raw p-values in [0, 1].

    Returns
    -------
    np.ndarray
        Adjusted p-values, shape (m,), in the input's order; reject where ``< alpha`` to hold
        the false discovery rate at ``alpha``.

    References
    ----------
    Y. Benjamini and Y. Hochberg, J. R. Statist. Soc. B 57 (1995) 289.

    Examples
    --------
    >>> benjamini_hochberg([0.01, 0.04, 0.03]).round(3).tolist()
    [0.03, 0.04, 0.04]
    """
    from scipy import stats

    p = _pvalues(pvalues)
    return p.copy() if p.size == 0 else stats.false_discovery_control(p, method="bh")


def multiple_testing(
    features: Mapping[str, Mapping[str, Any]], alpha: float = 0.05
) -> dict[str, Any] | None:
    """The per-feature p-values of a comparison with their Holm and BH adjustments.

    Parameters
    ----------
    features : mapping
        ``{feature: {"ks": result, "chi2": result, ...}}`` as in
        :attr:`~hepgen.validation.result.ValidationResult.features`: results with a
        ``pvalue`` attribute or key (``None`` ones are left out).
    alpha : float
        Level of the counts, in (0, 1).

    Returns
    -------
    dict or None
        ``{"alpha", "n_tests", "n_rejected", "expected", "pvalue_count", "holm":
        {"n_rejected"}, "bh": {"n_rejected"}, "tests": [{"feature", "test", "pvalue",
        "holm", "bh"}, ...]}``; ``pvalue_count`` is P(Binomial(n_tests, alpha) >=
        n_rejected).  ``None`` when no test has a p-value.

    Examples
    --------
    >>> from types import SimpleNamespace as R
    >>> mt = multiple_testing({"a": {"ks": R(pvalue=1e-5)}, "b": {"ks": R(pvalue=0.3)}})
    >>> mt["n_rejected"], mt["holm"]["n_rejected"], mt["tests"][0]["holm"]
    (1, 1, 2e-05)
    """
    from scipy import stats

    if not (isinstance(alpha, int | float) and 0.0 < float(alpha) < 1.0):
        raise InputError(f"alpha={alpha!r}: expected a number strictly between 0 and 1")
    rows = []
    for name, entry in features.items():
        for test in TESTS:
            res = entry.get(test)
            if res is None:
                continue
            p = res.get("pvalue") if isinstance(res, Mapping) else getattr(res, "pvalue", None)
            if p is None or not math.isfinite(float(p)):
                continue
            rows.append((str(name), test, min(1.0, max(0.0, float(p)))))
    if not rows:
        return None
    p = np.array([r[2] for r in rows])
    p_holm, p_bh = holm(p), benjamini_hochberg(p)
    n, k = p.size, int((p < alpha).sum())
    return {
        "alpha": float(alpha),
        "n_tests": int(n),
        "n_rejected": k,
        "expected": float(alpha * n),
        "pvalue_count": float(stats.binom.sf(k - 1, n, alpha)),
        "holm": {"n_rejected": int((p_holm < alpha).sum())},
        "bh": {"n_rejected": int((p_bh < alpha).sum())},
        "tests": [
            {"feature": f, "test": t, "pvalue": raw, "holm": float(h), "bh": float(b)}
            for (f, t, raw), h, b in zip(rows, p_holm, p_bh, strict=True)
        ],
    }
