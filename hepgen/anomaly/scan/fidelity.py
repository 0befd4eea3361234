r"""Fidelity of a background template: can a classifier tell its samples from true background?

A CATHODE scan compares the signal-region (SR) data with samples of a background model.
Wherever the model's samples differ from true background, the data-vs-template classifier
learns that difference instead of a signal.  :func:`two_sample_auc` measures the difference
with the same kind of classifier (xgboost with the scan's ``classifier`` settings, the two
classes weighted to equal totals) trained **out of fold** on ``x_a`` (label 1) against
``x_b`` (label 0): each row is scored by the model of the ``folds - 1`` parts it was not
trained on, and the mean of the folds' AUCs is the classifier two-sample test's statistic.
0.5 means the classifier cannot tell the samples apart; its standard error under that null
is the Hanley-McNeil error of the AUC of an uninformative score,
:math:`\sqrt{(n_a + n_b + 1) / (12\, n_a n_b)}` (the Mann-Whitney variance).

References
----------
D. Lopez-Paz and M. Oquab, "Revisiting classifier two-sample tests", ICLR 2017,
arXiv:1610.06545.
J. A. Hanley and B. J. McNeil, "The meaning and use of the area under a receiver operating
characteristic (ROC) curve", Radiology 143, 29 (1982).
A. Hallin et al., Phys. Rev. D 106, 055006 (2022), arXiv:2109.00546 (CATHODE: the template
must be indistinguishable from background for the classifier to find the signal).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hepgen.anomaly.scan.scores import CATHODE_PURPOSE, _folds, _xgb_params, train_booster
from hepgen.errors import InputError, require
from hepgen.settings.scan import ScanSettings

__all__ = ["null_auc_error", "two_sample_auc"]


def null_auc_error(n_a: float, n_b: float) -> float:
    """Standard error of the AUC of an uninformative score (Hanley-McNeil at AUC 0.5).

    Parameters
    ----------
    n_a, n_b : float
        Sizes of the two classes (effective sizes when weighted).

    Returns
    -------
    float
        :math:`\\sqrt{(n_a + n_b + 1) / (12\\, n_a n_b)}` (dimensionless).

    References
    ----------
    J. A. Hanley and B. J. McNeil, Radiology 143, 29 (1982).

    Examples
    --------
    >>> round(null_auc_error(20_000, 20_000), 5)
    0.00289
    """
    return math.sqrt((n_a + n_b + 1) / (12.0 * n_a * n_b))


def _matrix(x: np.ndarray, what: str) -> np.ndarray:
    """``x`` as a finite float32 matrix of shape (n, d) (a vector is one feature)."""
    a = np.asarray(x)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise InputError(f"two_sample_auc: {what} has shape {a.shape}, expected (n, n_features)")
    a = a.astype(np.float32)
    bad = ~np.isfinite(a).all(axis=1)
    if bad.any():
        raise InputError(
            f"two_sample_auc: {int(bad.sum())} of {len(a)} rows of {what} are not finite, "
            "expected finite features"
        )
    return a


def _check(a: np.ndarray, b: np.ndarray, k: int, weights_b: np.ndarray | None) -> np.ndarray | None:
    """Checks the samples' shapes and sizes and returns the checked weights of ``x_b``."""
    if a.shape[1] != b.shape[1]:
        raise InputError(
            f"two_sample_auc: x_a has {a.shape[1]} features and x_b {b.shape[1]}, expected the same"
        )
    for what, n in (("x_a", len(a)), ("x_b", len(b))):
        if n < 2 * k:
            raise InputError(
                f"two_sample_auc: {what} has {n} rows, expected >= {2 * k} (two per fold)"
            )
    if weights_b is None:
        return None
    w = np.asarray(weights_b, dtype=np.float64)
    if w.shape != (len(b),) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise InputError(
            f"two_sample_auc: weights_b (shape {w.shape}) must be finite, >= 0 with a positive "
            f"sum, one per row of x_b ({len(b)})"
        )
    return w


def two_sample_auc(
    x_a: np.ndarray,
    x_b: np.ndarray,
    settings: ScanSettings,
    rng: np.random.Generator,
    weights_b: np.ndarray | None = None,
) -> dict[str, float | int]:
    """Out-of-fold AUC of a classifier separating the rows of ``x_a`` from those of ``x_b``.

    ``settings.folds`` xgboost classifiers (the scan's ``classifier`` settings and device,
    early stopping on a ``validation_fraction`` of the training rows) each learn ``x_a``
    (label 1, weight 1) against ``x_b`` (label 0, weighted to the same total) without one
    fold and score that fold.  The mean over the folds of the AUC of each fold's held-out
    scores (weighted as in training) is 0.5 when the samples are indistinguishable; its
    standard error under that null is the AUC's of all the rows at once.

    Parameters
    ----------
    x_a : np.ndarray of shape (n_a, d) or (n_a,)
        The first sample (e.g. template events), in any units (trees are unit-free).
    x_b : np.ndarray of shape (n_b, d) or (n_b,)
        The second sample (e.g. held-out true background), the same ``d`` features.
    settings : ScanSettings
        ``folds``, ``classifier`` and ``device`` are used.
    rng : np.random.Generator
        Draws the folds, the validation rows and the classifiers' seeds.
    weights_b : np.ndarray of shape (n_b,) or None
        Per-row weights of ``x_b`` (e.g. an ensemble's mixture); None: equal.

    Returns
    -------
    dict
        ``auc`` (out-of-fold, 0.5: indistinguishable), ``auc_error`` (its standard error
        under the null, Hanley-McNeil, with the Kish effective size of a weighted ``x_b``),
        ``n_a`` and ``n_b`` (rows).

    Raises
    ------
    InputError
        Different numbers of features, non-finite rows, fewer than two rows per fold in a
        sample, or bad weights.
    MissingDependencyError
        Without xgboost.

    References
    ----------
    D. Lopez-Paz and M. Oquab, ICLR 2017, arXiv:1610.06545 (classifier two-sample tests).
    J. A. Hanley and B. J. McNeil, Radiology 143, 29 (1982) (the standard error).

    Examples
    --------
    >>> from hepgen.settings.scan import ScanSettings
    >>> settings = ScanSettings(start=3.0, stop=3.4, width=0.4, step=0.2, sideband=0.4,
    ...     resonance={"name": "m", "kind": "positive"},
    ...     features=[{"name": "x", "kind": "continuous"}], folds=2,
    ...     classifier={"n_estimators": 20}, device="cpu")
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.normal(size=(400, 2)), rng.normal(1.0, size=(400, 2))
    >>> r = two_sample_auc(a, b, settings, np.random.default_rng(1))
    >>> r["auc"] > 0.8, r["n_a"], round(r["auc_error"], 4)
    (True, 400, 0.0204)
    """
    xgb: Any = require("xgboost", CATHODE_PURPOSE)
    from sklearn.metrics import roc_auc_score

    a, b = _matrix(x_a, "x_a"), _matrix(x_b, "x_b")
    k = int(settings.folds)
    w_b = _check(a, b, k, weights_b)
    n_a, n_b = len(a), len(b)
    w_b = np.ones(n_b) if w_b is None else w_b
    w_b = w_b * (n_a / w_b.sum())  # the two classes weigh the same in total
    x = np.concatenate([a, b])
    y = np.concatenate([np.ones(n_a), np.zeros(n_b)])
    w = np.concatenate([np.ones(n_a), w_b])
    fold = np.concatenate([_folds(n_a, k, rng), _folds(n_b, k, rng)])  # balanced per class

    base = _xgb_params(settings, [])
    aucs = []
    for f in range(k):
        train = np.flatnonzero(fold != f)
        booster = train_booster(x[train], y[train], w[train], settings, rng, base)
        test = fold == f
        score = booster.predict(xgb.DMatrix(x[test]), output_margin=True)
        aucs.append(roc_auc_score(y[test], score, sample_weight=w[test]))
    # the mean of the folds' AUCs, each of one model's scores: pooling the folds' scores
    # would add the models' different offsets as noise (0.002-0.007 lower at AUC ~0.53)
    auc = float(np.mean(aucs))
    n_b_eff = float(w_b.sum() ** 2 / (w_b**2).sum())
    return {
        "auc": auc,
        "auc_error": null_auc_error(n_a, n_b_eff),
        "n_a": int(n_a),
        "n_b": int(n_b),
    }
