"""Negative event weights (sWeights) made trainable: their regression on the features.

sPlot weights can be negative, and a weighted maximum likelihood with them is unbounded below:
a flow's loss runs to minus infinity.  :func:`regress_weights` replaces every weight by a
cross-fitted gradient-boosted estimate of ``E[w | x]`` (Borisyak & Kazeev), which leaves the
weighted distribution of ``x`` unchanged in expectation and is non-negative up to noise
(clipped at 0).  The measurement, the argument and the choice of regressor are in
``docs/data.md``, section "Negative event weights (sWeights)".

References
----------
M. Borisyak and N. Kazeev, "Machine learning on data with sPlot background subtraction",
JINST 14 (2019) P08020, arXiv:1905.11719.
M. Pivk and F. R. Le Diberder, "sPlot: a statistical tool to unfold data distributions",
NIM A 555 (2005) 356, arXiv:physics/0402083.

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(4000, 1))
>>> w = np.where(x[:, 0] > 0, 1.0, 0.0) + rng.normal(0, 1.0, 4000)  # noisy, many negative
>>> w_reg, info = regress_weights(x, w, seed=0)
>>> bool((w_reg >= 0).all()), info["fraction_negative"] > 0.2
(True, True)
>>> bool(abs(w_reg[x[:, 0] > 0.5].mean() - 1.0) < 0.15), bool(w_reg[x[:, 0] < -0.5].mean() < 0.15)
(True, True)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hepgen.errors import InputError

__all__ = ["NEGATIVE_WEIGHTS", "regress_weights"]

#: Values of ``data.negative_weights``: ``regress`` (default) or ``keep`` (train on the raw
#: weights, at the user's risk).
NEGATIVE_WEIGHTS = ("regress", "keep")

#: Fewest rows a regression is fitted on (fewer: the weights are only clipped at 0).
MIN_ROWS = 200


def regress_weights(
    features: np.ndarray,
    weights: np.ndarray,
    seed: int = 0,
    n_folds: int = 2,
    min_samples_leaf: int = 500,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Cross-fitted estimates of ``E[weight | features]``, clipped at 0.

    Parameters
    ----------
    features : np.ndarray, shape (n, d)
        Everything the weighted model sees (conditions and targets, raw units; NaN allowed).
    weights : np.ndarray, shape (n,)
        The event weights (sWeights, negative values allowed), finite.
    seed : int
        Seeds the folds and the regressors.
    n_folds : int
        Cross-fitting folds (>= 2).
    min_samples_leaf : int
        Smallest leaf of the trees (at most a twentieth of the rows): large leaves average
        many weights (the point of the regression) instead of following single ones.  On a
        40k-event toy (signal and background halves, a quarter of the weights negative) 500
        took the clipping bias of a weighted mean from 3.6 to 0.5 standard errors (leaves of
        100: noisier regressions, more of them clipped).

    Returns
    -------
    np.ndarray, shape (n,)
        The regressed weights (float64, >= 0), rescaled to the raw weights' sum.
    dict
        ``method``, ``n``, ``fraction_negative`` (raw), ``fraction_clipped`` (regressions
        below 0 set to 0), ``sum_raw``, ``sum_regressed`` (before the rescaling),
        ``correlation`` (raw vs regressed).

    Raises
    ------
    InputError
        Shapes that do not match, or non-finite weights.
    """
    from sklearn.ensemble import HistGradientBoostingRegressor

    x = np.asarray(features, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if x.ndim != 2 or w.shape != (x.shape[0],):
        raise InputError(
            f"regress_weights: features of shape {x.shape} and weights of shape {w.shape}; "
            "expected (n, d) and (n,)"
        )
    if not np.isfinite(w).all():
        raise InputError("regress_weights: the weights hold NaN or inf")
    n = w.size
    info: dict[str, Any] = {
        "method": "cross-fitted gradient-boosted regression of the weight on the features "
        "(Borisyak & Kazeev 2019), clipped at 0",
        "n": int(n),
        "fraction_negative": float(np.mean(w < 0)) if n else 0.0,
        "sum_raw": float(w.sum()),
    }
    leaf = max(10, min(int(min_samples_leaf), n // 20))
    if n < MIN_ROWS:
        out = np.clip(w, 0.0, None)
        info.update(method=f"clipped at 0 (fewer than {MIN_ROWS} rows to regress on)")
    else:
        rng = np.random.default_rng(seed)
        folds = rng.permutation(np.arange(n) % n_folds)
        out = np.empty(n)
        for k in range(n_folds):
            test = folds == k
            model = HistGradientBoostingRegressor(
                max_iter=300,
                learning_rate=0.05,
                max_leaf_nodes=15,
                min_samples_leaf=leaf,
                early_stopping=True,
                validation_fraction=0.2,
                n_iter_no_change=10,
                random_state=int(rng.integers(2**31 - 1)),
            )
            model.fit(x[~test], w[~test])
            out[test] = model.predict(x[test])
        info["fraction_clipped"] = float(np.mean(out < 0))
        info["sum_regressed"] = float(out.sum())
        info["correlation"] = float(np.corrcoef(w, out)[0, 1]) if np.ptp(out) > 0 else 0.0
        out = np.clip(out, 0.0, None)
    total = out.sum()
    if not total > 0:
        raise InputError(
            "the event weights regressed on the features sum to zero: no positive signal "
            "weight is left to train on"
        )
    return out * (w.sum() / total), info
