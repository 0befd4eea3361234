"""Selections on an anomaly score and their performance: thresholds, ROC, AUC and SIC.

:func:`threshold_at_efficiency` gives the score cut that keeps a chosen (weighted) fraction of
a background-like sample; :func:`roc_sic` gives the ROC curve, the AUC and the significance
improvement characteristic ``SIC = eps_S / sqrt(eps_B)`` (the factor by which the cut raises
``S / sqrt(B)``), with its maximum taken only where the background efficiency is measured
by enough events.

References
----------
B. Nachman, D. Shih, "Anomaly detection with density estimation", Phys. Rev. D 101 (2020)
075042, arXiv:2001.04990 (ANODE, SIC).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn import metrics

from hepgen.errors import InputError
from hepgen.stats import check_weights, effective_sample_size
from hepgen.utils import to_jsonable

__all__ = ["MIN_SIC_BACKGROUND", "MIN_SIC_FPR", "ROC", "roc_sic", "threshold_at_efficiency"]

#: Events a background efficiency must rest on for SIC to count (see :func:`roc_sic`).
MIN_SIC_BACKGROUND = 20.0
#: Lower bound on the background efficiency used for the maximum SIC (see :func:`roc_sic`).
MIN_SIC_FPR = 1e-4


def _as_scores(scores: Any, name: str = "scores") -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise InputError(f"{name}: expected a 1-D array, got shape {s.shape}")
    if s.size == 0:
        raise InputError(f"{name}: no events (the array is empty)")
    bad = ~np.isfinite(s)
    if bad.any():
        raise InputError(f"{name}: {int(bad.sum())} of {s.size} values are NaN or infinite")
    return s


def threshold_at_efficiency(
    scores: np.ndarray, efficiency: float, weights: np.ndarray | None = None
) -> float:
    """Score cut ``t`` that keeps the fraction ``efficiency`` of the events (``score > t``).

    Higher scores are more anomalous; typically ``scores`` are those of background-like
    events (the sidebands, or the SR itself) and ``efficiency`` the background efficiency.
    The cut is a (weighted) quantile: the events are sorted by score, equal scores form one
    group, and ``t`` is placed midway between the two adjacent distinct scores at which the
    (weighted) fraction above the cut is closest to ``efficiency``.  **Ties:** a group of equal
    scores is never split, so with ties the realised fraction can differ from ``efficiency``
    by more than one event; events with ``score == t`` cannot occur except at the midpoint.

    Parameters
    ----------
    scores : np.ndarray of shape (n,)
        Anomaly scores (any units).
    efficiency : float
        Target fraction in (0, 1) of (weighted) events with ``score > t``.
    weights : np.ndarray of shape (n,) or None
        Per-event weights (the sum must be positive).

    Returns
    -------
    float
        The threshold ``t`` (units of ``scores``).

    Raises
    ------
    InputError
        If ``efficiency`` is not in (0, 1), ``efficiency * n < 1`` (fewer than one event
        would pass), or all scores are equal.

    Examples
    --------
    >>> threshold_at_efficiency(np.arange(10.0), 0.3)
    6.5
    """
    s = _as_scores(scores)
    eff = float(efficiency)
    if not (math.isfinite(eff) and 0 < eff < 1):
        raise InputError(f"efficiency must be in (0, 1), got {efficiency!r}")
    n = s.size
    if eff * n < 1:
        raise InputError(
            f"efficiency {eff:g} of {n} events keeps {eff * n:.3g} < 1 event; the threshold "
            f"needs at least {math.ceil(1 / eff)} events"
        )
    w = check_weights(weights, n, "threshold_at_efficiency")
    values, inverse = np.unique(s, return_inverse=True)  # ascending distinct scores
    if values.size < 2:
        raise InputError(f"scores: all {n} values are equal ({values[0]:g}); no threshold exists")
    group_w = np.bincount(inverse, weights=None if w is None else w, minlength=values.size)
    total = float(group_w.sum())
    # fraction above the boundary between values[j] and values[j + 1], j = 0 .. G-2
    above = (total - np.cumsum(group_w)[:-1]) / total
    j = int(np.argmin(np.abs(above - eff)))
    return float(0.5 * (values[j] + values[j + 1]))


@dataclass(frozen=True, eq=False)
class ROC:
    """ROC curve, AUC and significance improvement of a score (result of :func:`roc_sic`).

    Attributes
    ----------
    fpr, tpr : np.ndarray of shape (k,)
        Background and signal efficiencies of the cut ``score >= threshold`` (increasing).
    thresholds : np.ndarray of shape (k,)
        The cuts (decreasing; the first is ``inf``, as in :func:`sklearn.metrics.roc_curve`).
    auc : float
        Area under the ROC curve.
    sic : np.ndarray of shape (k,)
        ``tpr / sqrt(fpr)`` where ``fpr >= min_fpr``, else NaN.
    max_sic : float
        Maximum of ``sic`` (NaN if no point has ``fpr >= min_fpr``).
    max_sic_tpr, max_sic_fpr : float
        Efficiencies at the maximum.
    min_fpr : float
        Smallest background efficiency counted in ``sic``.
    max_sic_uncapped : float
        Maximum of TPR / sqrt(FPR) over every cut with ``fpr > 0`` (down to one background
        event): the figure parts of the literature quote; noisy where few events pass.
    n_signal, n_background : float
        Effective (Kish) numbers of signal and background events (the counts when unweighted).
    """

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    auc: float
    sic: np.ndarray
    max_sic: float
    max_sic_tpr: float
    max_sic_fpr: float
    min_fpr: float = math.nan
    max_sic_uncapped: float = math.nan
    n_signal: float = 0.0
    n_background: float = 0.0

    def to_dict(self, n_points: int = 200) -> dict[str, Any]:
        """Plain JSON types with the curve downsampled to about ``n_points`` points.

        The points are spread evenly in ``log10(fpr)`` (where SIC lives), always keeping the
        two ends and the maximum-SIC point; NaN and inf become ``None``.

        Parameters
        ----------
        n_points : int
            Target number of curve points (>= 2).

        Returns
        -------
        dict
            ``fpr, tpr, thresholds, sic`` (lists) and the scalars.
        """
        k = self.fpr.size
        if k == 0:
            idx = np.zeros(0, dtype=int)
        else:
            keep = {0, k - 1}
            if math.isfinite(self.max_sic):
                keep.add(int(np.nanargmax(self.sic)))
            positive = self.fpr[self.fpr > 0]
            if positive.size:
                grid = np.geomspace(
                    positive.min(),
                    max(positive.max(), positive.min()),
                    max(int(n_points) - len(keep), 2),
                )
                keep.update(np.searchsorted(self.fpr, grid, side="left").clip(0, k - 1).tolist())
            idx = np.array(sorted(keep), dtype=int)
        return to_jsonable(
            {
                "fpr": self.fpr[idx],
                "tpr": self.tpr[idx],
                "thresholds": self.thresholds[idx],
                "sic": self.sic[idx],
                "auc": self.auc,
                "max_sic": self.max_sic,
                "max_sic_tpr": self.max_sic_tpr,
                "max_sic_fpr": self.max_sic_fpr,
                "min_fpr": self.min_fpr,
                "max_sic_uncapped": self.max_sic_uncapped,
                "n_signal": self.n_signal,
                "n_background": self.n_background,
            }
        )


def roc_sic(
    scores: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray | None = None,
    *,
    min_fpr: float | None = None,
) -> ROC:
    """ROC curve, AUC and SIC curve of anomaly scores (higher = more signal-like).

    The SIC maximum is only taken over cuts whose background efficiency rests on enough
    events: by default ``min_fpr = max(1e-4, 20 / n_background)`` (:data:`MIN_SIC_FPR`,
    :data:`MIN_SIC_BACKGROUND`), with ``n_background`` the number of background events (the
    Kish effective number ``(sum w)^2 / sum w^2`` when weighted), so that ``fpr`` is never
    estimated from fewer than ~20 events (relative error <~ 22 %), as is customary for the LHC
    Olympics R&D results (which also cut at ``fpr = 1e-4``).  Beyond that tail ``sic`` is NaN.

    Parameters
    ----------
    scores : np.ndarray of shape (n,)
        Anomaly scores.
    labels : np.ndarray of shape (n,)
        1 for signal, 0 for background (bool allowed).
    weights : np.ndarray of shape (n,) or None
        Per-event weights.
    min_fpr : float or None
        Smallest background efficiency counted in SIC; ``None`` for the default rule above.

    Returns
    -------
    ROC

    Raises
    ------
    InputError
        If the labels are not 0/1, one class is absent (or has a non-positive weight sum), or
        shapes disagree.
    """
    s = _as_scores(scores)
    y = np.asarray(labels)
    if y.shape != s.shape:
        raise InputError(f"labels have shape {y.shape}, expected {s.shape} like the scores")
    if y.dtype == bool:
        y = y.astype(np.int64)
    yf = np.asarray(y, dtype=np.float64)
    bad = ~((yf == 0) | (yf == 1))
    if bad.any():
        values = np.unique(yf[bad])[:5].tolist()
        raise InputError(
            f"labels must be 0 (background) or 1 (signal); {int(bad.sum())} of {y.size} are "
            f"not (values {values})"
        )
    y = yf.astype(np.int64)
    n_sig, n_bkg = int(y.sum()), int(y.size - y.sum())
    if n_sig == 0 or n_bkg == 0:
        raise InputError(
            f"roc_sic needs both classes: {n_sig} signal (label 1) and {n_bkg} background "
            "(label 0) events"
        )
    w = check_weights(weights, s.size, "roc_sic")
    if w is not None:
        ws, wb = float(w[y == 1].sum()), float(w[y == 0].sum())
        if not (ws > 0 and wb > 0):
            raise InputError(
                f"roc_sic: the weights of the {n_sig} signal events sum to {ws:g} and of the "
                f"{n_bkg} background events to {wb:g}; both must be positive"
            )
        eff_sig = effective_sample_size(w[y == 1])
        eff_bkg = effective_sample_size(w[y == 0])
    else:
        eff_sig, eff_bkg = float(n_sig), float(n_bkg)
    if min_fpr is None:
        floor = max(MIN_SIC_FPR, MIN_SIC_BACKGROUND / eff_bkg) if eff_bkg > 0 else math.inf
    else:
        floor = float(min_fpr)
        if not (math.isfinite(floor) and floor >= 0):
            raise InputError(f"min_fpr must be a finite number >= 0, got {min_fpr!r}")

    # all points: with the min_fpr cut the SIC maximum can lie inside a segment that
    # drop_intermediate would remove (e.g. tpr = 1 from fpr = 0 to 1 for perfect separation)
    fpr, tpr, thresholds = metrics.roc_curve(y, s, sample_weight=w, drop_intermediate=False)
    auc = float(metrics.roc_auc_score(y, s, sample_weight=w))
    ok = (fpr >= floor) & (fpr > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        sic = np.where(ok, tpr / np.sqrt(np.where(fpr > 0, fpr, 1.0)), np.nan)
    if ok.any():
        i = int(np.nanargmax(sic))
        max_sic, max_tpr, max_fpr = float(sic[i]), float(tpr[i]), float(fpr[i])
    else:
        max_sic = max_tpr = max_fpr = math.nan
    positive = fpr > 0
    uncapped = float(np.max(tpr[positive] / np.sqrt(fpr[positive]))) if positive.any() else math.nan
    return ROC(
        fpr=fpr,
        tpr=tpr,
        thresholds=thresholds,
        auc=auc,
        sic=sic,
        max_sic=max_sic,
        max_sic_tpr=max_tpr,
        max_sic_fpr=max_fpr,
        min_fpr=floor,
        max_sic_uncapped=uncapped,
        n_signal=eff_sig,
        n_background=eff_bkg,
    )
