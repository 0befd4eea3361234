"""One repeat of the classifier two-sample test: sampling, splitting, fitting, the statistic.

:func:`hepgen.validation.c2st.classifier_test` checks its inputs, then runs
:func:`one_repeat` once per repeat and combines the results.  A repeat balances the classes
(:func:`balanced_sample`), splits the events into stratified fit, validation and test splits
(:func:`split_indices`), trains the boosted trees with early stopping on the validation split
(:func:`fit_classifier`) and measures the held-out AUC, its one-sided p-value
(:func:`held_out_test`) and its interval (:func:`auc_interval`).  Every random step draws
from the one generator the repeat is given, in that order, so that a seed fixes the result.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from scipy import stats

from hepgen.errors import InputError
from hepgen.stats import effective_sample_size as effective_n
from hepgen.validation._auc import RankedScores, bootstrap_ci, delong_auc, thin_curve
from hepgen.validation._classifiers import BoostedFit, fit_boosted

__all__ = [
    "Plan",
    "Repeat",
    "Samples",
    "auc_interval",
    "balanced_sample",
    "balanced_training_weights",
    "fit_classifier",
    "held_out_test",
    "one_repeat",
    "select_events",
    "split_indices",
]


@dataclasses.dataclass(frozen=True)
class Samples:
    """The checked samples: ``x0`` (n0, d) reference, ``x1`` (n1, d) candidate, their
    weights (``None`` when unweighted) and the ``d`` feature names."""

    x0: np.ndarray
    x1: np.ndarray
    w0: np.ndarray | None
    w1: np.ndarray | None
    names: list[str]

    @property
    def weighted(self) -> bool:
        """Whether either sample carries weights."""
        return self.w0 is not None or self.w1 is not None


@dataclasses.dataclass(frozen=True)
class Plan:
    """How every repeat runs: sampling, splits, the boosted trees and the interval."""

    weighted: bool
    max_events: int
    test_fraction: float
    validation_fraction: float
    backend: str
    booster: dict[str, Any]
    ci: str
    ci_level: float


@dataclasses.dataclass
class Repeat:
    """What one repeat measured (see :class:`hepgen.validation.c2st.C2STResult` for the
    fields; ``ci`` is ``auc_ci``, ``gains`` the importances in column order, shape (d,))."""

    auc: float
    pvalue: float
    ci: tuple[float, float]
    gains: np.ndarray
    fpr: np.ndarray
    tpr: np.ndarray
    best_iteration: int
    n_train: int
    n_test: int


def select_events(n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of a seeded uniform subsample of ``m`` of ``n`` events (all when m >= n)."""
    if m >= n:
        return np.arange(n)
    return np.sort(rng.choice(n, size=m, replace=False))


def balanced_sample(
    samples: Samples, plan: Plan, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """The pooled events ``x`` (m, d), labels ``y`` (m,) and weights (m,) or None.

    Unweighted: both classes subsampled to the smaller size (at most ``max_events``);
    weighted: each sample kept whole up to ``max_events``, unit weights for an unweighted one.
    """
    x0, x1, w0, w1 = samples.x0, samples.x1, samples.w0, samples.w1
    n0, n1 = x0.shape[0], x1.shape[0]
    if plan.weighted:
        m0, m1 = min(n0, plan.max_events), min(n1, plan.max_events)
    else:
        m0 = m1 = min(n0, n1, plan.max_events)
    i0, i1 = select_events(n0, m0, rng), select_events(n1, m1, rng)
    x = np.concatenate([x0[i0], x1[i1]])
    y = np.concatenate([np.zeros(m0, dtype=np.int8), np.ones(m1, dtype=np.int8)])
    w = None
    if plan.weighted:
        w = np.concatenate(
            [
                w0[i0] if w0 is not None else np.ones(m0),
                w1[i1] if w1 is not None else np.ones(m1),
            ]
        )
    return x, y, w


def split_indices(
    y: np.ndarray, plan: Plan, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stratified ``(train, fit, validation, test)`` index arrays; train = fit + validation."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(y.size)
    split_seed = int(rng.integers(2**31 - 1))
    idx_train, idx_test = train_test_split(
        idx, test_size=plan.test_fraction, stratify=y, random_state=split_seed
    )
    idx_fit, idx_val = train_test_split(
        idx_train,
        test_size=plan.validation_fraction,
        stratify=y[idx_train],
        random_state=split_seed,
    )
    return idx_train, idx_fit, idx_val, idx_test


def balanced_training_weights(w: np.ndarray | None, y: np.ndarray, name: str) -> np.ndarray:
    """Non-negative training weights with each class summing to half the number of events.

    xgboost requires non-negative weights, so negative weights (sWeights) are set to zero for
    training only; the held-out AUC keeps the signed weights.
    """
    w = np.ones(y.size) if w is None else np.clip(w, 0.0, None)
    out = np.empty(y.size)
    for cls, sample in ((0, "reference"), (1, "candidate")):
        sel = y == cls
        total = w[sel].sum()
        if not total > 0:
            raise InputError(
                f"{sample}: the {name} split has no positive weight after setting negative "
                "weights to zero for training; use more events or fewer negative weights"
            )
        out[sel] = w[sel] * (y.size / 2.0) / total
    return out


def fit_classifier(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray | None,
    splits: tuple[np.ndarray, np.ndarray, np.ndarray],
    plan: Plan,
    rng: np.random.Generator,
) -> BoostedFit:
    """Train on the fit split, stop early on the validation split, score the test split."""
    idx_fit, idx_val, idx_test = splits

    def part(sel: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        wt = balanced_training_weights(None if w is None else w[sel], y[sel], name)
        return x[sel], y[sel], wt

    return fit_boosted(
        plan.backend,  # type: ignore[arg-type]
        part(idx_fit, "training"),
        part(idx_val, "validation"),
        x[idx_test],
        seed=int(rng.integers(2**31 - 1)),
        **plan.booster,
    )


def held_out_test(
    scores: np.ndarray, y_test: np.ndarray, w_test: np.ndarray | None
) -> tuple[float, float, RankedScores | None]:
    """The held-out AUC, its one-sided p-value and (weighted) the sorted scores for reuse.

    Unweighted: the Mann-Whitney U test (exact level).  Weighted: under the null (scores
    exchangeable and independent of the weights) the weighted AUC has mean 1/2 and variance
    ``(n0 + n1 + 1) / (12 n0 n1)`` exactly, with n0, n1 the Kish effective sizes; the normal
    shape is an approximation, and ties make it conservative (scipy's test takes no weights).
    """
    from sklearn.metrics import roc_auc_score

    constant = bool(np.ptp(scores) == 0)
    if w_test is None:
        auc = float(roc_auc_score(y_test, scores))
        if constant:
            return auc, 1.0, None
        s1, s0 = scores[y_test == 1], scores[y_test == 0]
        return auc, float(stats.mannwhitneyu(s1, s0, alternative="greater").pvalue), None
    for cls, sample in ((0, "reference"), (1, "candidate")):
        if not w_test[y_test == cls].sum() > 0:
            raise InputError(
                f"{sample}: the held-out weights sum to a non-positive number; use more "
                "events (negative weights need large samples)"
            )
    ranked = RankedScores(scores, y_test)
    if (w_test >= 0).all():
        auc = float(roc_auc_score(y_test, scores, sample_weight=w_test))
    else:
        auc = ranked.auc(w_test)
    n0e = effective_n(w_test[y_test == 0], int((y_test == 0).sum()))
    n1e = effective_n(w_test[y_test == 1], int((y_test == 1).sum()))
    if constant or not (n0e > 0 and n1e > 0) or not math.isfinite(auc):
        return auc, 1.0, ranked
    sd = math.sqrt((n0e + n1e + 1.0) / (12.0 * n0e * n1e))
    return auc, float(stats.norm.sf((auc - 0.5) / sd)), ranked


def auc_interval(
    auc: float,
    scores: np.ndarray,
    y_test: np.ndarray,
    w_test: np.ndarray | None,
    ranked: RankedScores | None,
    plan: Plan,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """The AUC's interval at ``plan.ci_level``: DeLong (unweighted, ``ci="delong"``) or a
    stratified bootstrap of the test split, clipped to [0, 1]."""
    if plan.ci == "delong" and w_test is None:
        _, var = delong_auc(scores[y_test == 1], scores[y_test == 0])
        half = stats.norm.ppf(0.5 + plan.ci_level / 2.0) * math.sqrt(max(var, 0.0))
        interval = (auc - half, auc + half)
    else:
        ranked = ranked if ranked is not None else RankedScores(scores, y_test)
        base = np.ones(y_test.size) if w_test is None else w_test
        interval = bootstrap_ci(ranked, base, y_test, plan.ci_level, rng)
    return (min(max(interval[0], 0.0), 1.0), min(max(interval[1], 0.0), 1.0))


def one_repeat(samples: Samples, plan: Plan, rng: np.random.Generator) -> Repeat:
    """Sample, split, fit and test once; ``rng`` seeds every random step, in that order."""
    from sklearn.metrics import roc_curve

    x, y, w = balanced_sample(samples, plan, rng)
    idx_train, idx_fit, idx_val, idx_test = split_indices(y, plan, rng)
    fitted = fit_classifier(x, y, w, (idx_fit, idx_val, idx_test), plan, rng)
    scores, y_test = fitted.scores, y[idx_test]
    w_test = None if w is None else w[idx_test]
    auc, pvalue, ranked = held_out_test(scores, y_test, w_test)
    interval = auc_interval(auc, scores, y_test, w_test, ranked, plan, rng)
    fpr, tpr, _ = roc_curve(y_test, scores, sample_weight=w_test)
    fpr, tpr = thin_curve(fpr, tpr)
    return Repeat(
        auc=auc,
        pvalue=pvalue,
        ci=interval,
        gains=fitted.gains,
        fpr=fpr,
        tpr=tpr,
        best_iteration=fitted.best_iteration,
        n_train=int(idx_train.size),
        n_test=int(idx_test.size),
    )
