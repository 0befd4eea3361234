"""Classifier two-sample test (C2ST): can a boosted-tree classifier tell the samples apart?

A gradient-boosted decision-tree classifier (xgboost ``hist``, or scikit-learn's histogram
gradient boosting where xgboost is not installed: :mod:`._classifiers`) learns to separate the
*reference* sample (label 0) from the *candidate* (label 1); its ROC AUC on a held-out split
that neither training nor early stopping has seen is the effect size (0.5: indistinguishable,
1: disjoint), and the one-sided Mann-Whitney U test of the held-out scores gives an exact-level
p-value.  :func:`classifier_test` balances, splits, fits and scores (one repeat:
:mod:`._c2st_repeat`; the AUC's interval: :mod:`._auc`) and combines repeats.  The steps, and
why early stopping watches the log-loss and never the AUC, are in docs/validation.md ("c2st").
The classifier sees only the columns it is given: for a conditional generator the conditions
must be columns of both samples.

References
----------
- D. Lopez-Paz and M. Oquab, "Revisiting classifier two-sample tests", ICLR 2017,
  arXiv:1610.06545.
- J. H. Friedman, "On multivariate goodness-of-fit and two-sample testing", PHYSTAT 2003,
  SLAC-PUB-10325.
- E. R. DeLong, D. M. DeLong and D. L. Clarke-Pearson, Biometrics 44 (1988) 837; X. Sun and
  W. Xu, IEEE Signal Process. Lett. 21 (2014) 1389 (the AUC's variance, :mod:`._auc`).
- L. Rueschendorf, "Random variables with maximum sums", Adv. Appl. Probab. 14 (1982) 623;
  V. Vovk and R. Wang, "Combining p-values via averaging", Biometrika 107 (2020) 791.
- C. Krause et al., "CaloChallenge 2022: a community challenge for fast calorimeter
  simulation", arXiv:2410.21611 (classifier AUC as the headline metric).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from scipy import stats

from hepgen.devices import xgboost_device
from hepgen.errors import InputError
from hepgen.validation._auc import delong_auc
from hepgen.validation._c2st_repeat import Plan, Repeat, Samples, one_repeat
from hepgen.validation._checks import (
    MetricResult,
    as_matrix,
    check_weights,
    rng_from,
)
from hepgen.validation._classifiers import resolve_classifier

__all__ = [
    "MIN_EVENTS_PER_CLASS",
    "C2STResult",
    "classifier_test",
    "delong_auc",
]

#: Fewest events per sample that :func:`classifier_test` accepts.
MIN_EVENTS_PER_CLASS = 20


@dataclasses.dataclass(frozen=True)
class C2STResult(MetricResult):
    """Result of :func:`classifier_test`.

    Attributes
    ----------
    auc : float
        Held-out ROC AUC (candidate = positive class); the mean over repeats.
    auc_ci : tuple of float
        ``(low, high)`` confidence interval of the AUC at ``ci_level``; with repeats, the
        average of the per-repeat intervals' endpoints.
    pvalue : float
        One-sided p-value for "candidate differs from reference" (AUC > 0.5); with repeats,
        ``min(1, 2 * median(pvalues))``.
    n_train : int
        Events (both classes) used for training, including the early-stopping validation split.
    n_test : int
        Held-out events (both classes) on which the AUC is measured.
    aucs : tuple of float
        Held-out AUC of each repeat.
    pvalues : tuple of float
        p-value of each repeat.
    auc_std : float
        Standard deviation (ddof=1) of ``aucs``; NaN (``None`` in JSON) for one repeat.
    importances : dict of str to float
        Feature name -> total split gain normalised to sum 1 (mean over repeats), sorted
        descending.  The first entries are the features that separate the samples best.
    fpr, tpr : numpy.ndarray
        ROC curve of the first repeat, thinned to at most 200 points, shape ``(k,)``.
    best_iteration : int
        Early-stopping best boosting round (0-based) of the first repeat.
    method : str
        One line: classifier, p-value and interval methods.
    notes : tuple of str
        Anything the reader should know (subsampling, fallbacks, warnings).
    classifier : str
        Which boosted trees ran: ``"xgboost"`` or ``"sklearn-hgb"`` (scikit-learn's
        HistGradientBoostingClassifier, where xgboost is not installed).
    """

    _array_fields: ClassVar[tuple[str, ...]] = ("fpr", "tpr")

    auc: float
    auc_ci: tuple[float, float]
    pvalue: float
    n_train: int
    n_test: int
    aucs: tuple[float, ...]
    pvalues: tuple[float, ...]
    auc_std: float
    importances: dict[str, float]
    fpr: np.ndarray
    tpr: np.ndarray
    best_iteration: int
    method: str
    notes: tuple[str, ...]
    classifier: str = "xgboost"


def classifier_test(
    reference: Any,
    candidate: Any,
    reference_weights: Any = None,
    candidate_weights: Any = None,
    *,
    feature_names: Sequence[str] | None = None,
    test_fraction: float = 0.5,
    validation_fraction: float = 0.2,
    n_repeats: int = 1,
    max_events: int = 500_000,
    n_estimators: int = 1000,
    early_stopping_rounds: int = 50,
    learning_rate: float = 0.05,
    max_depth: int = 3,
    ci: Literal["delong", "bootstrap"] = "delong",
    ci_level: float = 0.68,
    device: str = "auto",
    n_jobs: int | None = None,
    seed: int | np.random.Generator | None = None,
    classifier: str = "auto",
) -> C2STResult:
    """Classifier two-sample test with boosted trees: held-out AUC, p-value and interval.

    A boosted-tree classifier learns to tell the candidate (label 1) from the reference
    (label 0).  Its AUC on a held-out test split is the effect size; the p-value is the
    one-sided Mann-Whitney U test of the held-out scores (candidate scores higher), exact in
    level because the classifier never sees the test split.  Under the null the held-out AUC
    is approximately ``N(1/2, (n0 + n1 + 1) / (12 n0 n1))`` with ``n0``, ``n1`` the held-out
    events per class.  An AUC significantly *below* 0.5 is not evidence of a difference (the
    test is one-sided and its p-value is then large); a note flags it, as it can point to
    duplicated events or a split artefact.

    For a conditional generator, include the conditions as columns of both samples: the
    classifier can only find differences in the columns it is given.

    Parameters
    ----------
    reference, candidate : array_like, shape (n0, d) and (n1, d)
        The two samples (1-D input is one feature).  Same ``d``.  Any mix of continuous,
        integer and bounded features; constant features are harmless.
    reference_weights, candidate_weights : array_like, shape (n0,) / (n1,), optional
        Per-event weights (negative sWeights allowed; each sum must be positive).  When any
        is given, both samples are kept whole (up to ``max_events``) and each class's training
        weights are rescaled to the same total instead of subsampling; negative weights are
        set to zero for training (xgboost requires it) and kept, signed, in the held-out AUC.
        The p-value is then a normal approximation with Kish effective sizes
        ``(sum w)^2 / sum w^2`` (approximate), and the interval is a bootstrap.
    feature_names : sequence of str, optional
        Names of the ``d`` columns for ``importances``; default ``["x0", "x1", ...]``.
    test_fraction : float
        Fraction of the (balanced) events held out for the AUC, in (0, 1).
    validation_fraction : float
        Fraction of the training part used for early stopping on the log-loss, in (0, 1).
    n_repeats : int
        Independent repeats (subsample, split and model seeds).  ``auc`` is their mean; the
        p-value is ``min(1, 2 * median(p_k))``, valid under any dependence between repeats
        (Rueschendorf 1982; Vovk & Wang 2020).
    max_events : int
        At most this many events per sample (seeded uniform subsample) to bound the time.
    n_estimators : int
        Maximum boosting rounds.
    early_stopping_rounds : int
        Stop when the validation log-loss has not improved for this many rounds.
    learning_rate, max_depth : float, int
        xgboost's ``eta`` and ``max_depth``.  The defaults (0.05, depth 3, patience 50) are
        tuned for the small distortions a fast simulation has: on 11k vs 11k matched jets with
        a 15 % worse resolution, they gave AUC 0.516-0.529 over 5 seeds (all p < 3e-3), where
        xgboost's usual depth 6, eta 0.1, patience 20 gave 0.503-0.523 (p up to 0.27),
        stopping after 2-7 trees on noise; the null stayed uniform.
    ci : {"delong", "bootstrap"}
        Interval method: DeLong's variance with a normal interval, or a percentile interval
        over 200 stratified bootstrap resamples of the test split (always used when weighted).
    ci_level : float
        Confidence level of ``auc_ci`` (0.68: one standard error).
    device : str
        "auto" (GPU when present and xgboost is a CUDA build), "cpu", "cuda" or "cuda:N"
        (:func:`hepgen.devices.xgboost_device`).
    n_jobs : int, optional
        xgboost threads (boosting and data matrices); None uses xgboost's default (all
        cores).  On a shared machine give the cores you may use: OpenMP threads on
        oversubscribed cores spin-wait, which can make small fits 10x slower.
    seed : int, numpy.random.Generator or None
        Seed of the subsampling, the splits, the bootstrap and the model.
    classifier : {"auto", "xgboost", "sklearn"}
        The boosted trees (:mod:`hepgen.validation._classifiers`): xgboost, or
        scikit-learn's HistGradientBoostingClassifier; "auto" takes xgboost where it is
        installed and otherwise scikit-learn, with a note.  ``method`` and ``classifier``
        of the result say which ran.

    Returns
    -------
    C2STResult
        ``auc``, ``auc_ci``, ``pvalue``, ``n_train``, ``n_test``, per-repeat ``aucs`` and
        ``pvalues``, ``auc_std``, ``importances``, thinned ROC ``fpr``/``tpr``,
        ``best_iteration``, ``method`` and ``notes``.  With ``n_repeats`` > 1, ``auc_ci`` is
        the average of the per-repeat intervals' endpoints: by the triangle inequality the
        standard deviation of a mean is at most the mean of the standard deviations, so the
        averaged DeLong interval is at least as wide as a normal interval for the mean AUC
        needs to be, whatever the dependence between repeats.  ROC curve and
        ``best_iteration`` are from the first repeat; importances are averaged.

    Raises
    ------
    InputError
        Different feature counts, empty or non-finite input, bad weights, fewer than
        ``MIN_EVENTS_PER_CLASS`` events in a sample, out-of-range settings, or a requested
        GPU that is absent.
    ConfigError
        A malformed device name.

    References
    ----------
    Lopez-Paz & Oquab, ICLR 2017, arXiv:1610.06545; Friedman, PHYSTAT 2003; DeLong et al.,
    Biometrics 44 (1988) 837; Sun & Xu, IEEE SPL 21 (2014) 1389; Vovk & Wang, Biometrika 107
    (2020) 791; Krause et al., arXiv:2410.21611.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> ref = rng.normal(size=(2000, 2))
    >>> cand = rng.normal(size=(2000, 2)) + [0.0, 0.5]
    >>> res = classifier_test(ref, cand, feature_names=["a", "b"], n_estimators=50,
    ...                       device="cpu", n_jobs=1, seed=0)
    >>> res.auc > 0.55, res.pvalue < 1e-6, next(iter(res.importances))
    (True, True, 'b')
    """
    samples = _check_samples(
        reference, candidate, reference_weights, candidate_weights, feature_names
    )
    _check_settings(
        test_fraction=test_fraction,
        validation_fraction=validation_fraction,
        ci_level=ci_level,
        ci=ci,
        n_repeats=n_repeats,
        n_estimators=n_estimators,
        early_stopping_rounds=early_stopping_rounds,
        max_depth=max_depth,
        max_events=max_events,
        learning_rate=learning_rate,
    )
    _check_split_sizes(samples, max_events, test_fraction, validation_fraction)
    backend, booster, notes = _booster(
        classifier,
        device,
        learning_rate=learning_rate,
        max_depth=max_depth,
        n_estimators=n_estimators,
        early_stopping_rounds=early_stopping_rounds,
        n_jobs=n_jobs,
    )
    plan = Plan(
        weighted=samples.weighted,
        max_events=int(max_events),
        test_fraction=float(test_fraction),
        validation_fraction=float(validation_fraction),
        backend=backend,
        booster=booster,
        ci=ci,
        ci_level=float(ci_level),
    )
    notes += _sampling_notes(samples, max_events, ci)
    child_seeds = rng_from(seed).integers(0, 2**63 - 1, size=int(n_repeats))
    with _thread_context(backend, n_jobs):
        repeats = [one_repeat(samples, plan, np.random.default_rng(int(s))) for s in child_seeds]
    return _result(repeats, samples, plan, notes, n_estimators)


# --------------------------------------------------------------------------------------------
# 1. Inputs
# --------------------------------------------------------------------------------------------


def _check_samples(
    reference: Any,
    candidate: Any,
    reference_weights: Any,
    candidate_weights: Any,
    feature_names: Sequence[str] | None,
) -> Samples:
    """The two samples as float arrays of the same width, with checked weights and names."""
    x0 = as_matrix(reference, "reference")
    x1 = as_matrix(candidate, "candidate")
    if x0.shape[1] != x1.shape[1]:
        raise InputError(
            f"candidate has shape {x1.shape} but reference has shape {x0.shape}: both need the "
            "same feature columns (include the conditions as columns of both)"
        )
    n0, n1, d = x0.shape[0], x1.shape[0], x0.shape[1]
    w0 = check_weights(reference_weights, n0, "reference")
    w1 = check_weights(candidate_weights, n1, "candidate")
    for n, name in ((n0, "reference"), (n1, "candidate")):
        if n < MIN_EVENTS_PER_CLASS:
            raise InputError(
                f"{name}: {n} events; the classifier test needs at least "
                f"{MIN_EVENTS_PER_CLASS} events per sample"
            )
    if feature_names is None:
        names = [f"x{j}" for j in range(d)]
    else:
        names = [str(f) for f in feature_names]
        if len(names) != d:
            raise InputError(f"feature_names: {len(names)} names for {d} feature columns")
    return Samples(x0=x0, x1=x1, w0=w0, w1=w1, names=names)


def _check_settings(
    *,
    test_fraction: float,
    validation_fraction: float,
    ci_level: float,
    ci: str,
    n_repeats: int,
    n_estimators: int,
    early_stopping_rounds: int,
    max_depth: int,
    max_events: int,
    learning_rate: float,
) -> None:
    """Refuse out-of-range settings of :func:`classifier_test` before any work."""
    for value, name in (
        (test_fraction, "test_fraction"),
        (validation_fraction, "validation_fraction"),
        (ci_level, "ci_level"),
    ):
        if not 0.0 < float(value) < 1.0:
            raise InputError(f"{name}={value!r}: expected a number strictly between 0 and 1")
    if ci not in ("delong", "bootstrap"):
        raise InputError(f"ci={ci!r}: expected 'delong' or 'bootstrap'")
    for value, name in (
        (n_repeats, "n_repeats"),
        (n_estimators, "n_estimators"),
        (early_stopping_rounds, "early_stopping_rounds"),
        (max_depth, "max_depth"),
    ):
        if int(value) != value or value < 1:
            raise InputError(f"{name}={value!r}: expected a positive integer")
    if int(max_events) != max_events or max_events < MIN_EVENTS_PER_CLASS:
        raise InputError(
            f"max_events={max_events!r}: expected an integer >= {MIN_EVENTS_PER_CLASS}"
        )
    if not learning_rate > 0:
        raise InputError(f"learning_rate={learning_rate!r}: expected a positive number")


def _check_split_sizes(
    samples: Samples, max_events: int, test_fraction: float, validation_fraction: float
) -> None:
    """Refuse fractions that leave the smallest class too few events for one of the splits."""
    m_small = min(samples.x0.shape[0], samples.x1.shape[0], max_events)
    n_test_small = math.floor(m_small * test_fraction)
    n_val_small = math.floor((m_small - math.ceil(m_small * test_fraction)) * validation_fraction)
    if n_test_small < 2 or n_val_small < 1 or m_small - n_test_small - n_val_small < 2:
        raise InputError(
            f"test_fraction={test_fraction}, validation_fraction={validation_fraction} leave "
            f"too few of the {m_small} events per sample for a training, validation and test "
            "split; use more events or fractions nearer 0.5 / 0.2"
        )


def _sampling_notes(samples: Samples, max_events: int, ci: str) -> list[str]:
    """What the reader should know about how the samples are weighted and subsampled."""
    n0, n1 = samples.x0.shape[0], samples.x1.shape[0]
    notes: list[str] = []
    if not samples.weighted:
        m = min(n0, n1, max_events)
        for n, name in ((n0, "reference"), (n1, "candidate")):
            if n > m:
                why = "max_events" if m == max_events else "balance the classes"
                notes.append(f"{name}: {n} events, subsampled to {m} ({why})")
        return notes
    if ci == "delong":
        notes.append(
            "weighted samples: DeLong's variance assumes unit weights; the interval "
            "is a bootstrap of the test split instead"
        )
    notes.append(
        "weighted samples: p-value from a normal approximation of the weighted AUC "
        "with Kish effective sizes (approximate)"
    )
    if any(w is not None and (w < 0).any() for w in (samples.w0, samples.w1)):
        notes.append(
            "negative weights were set to zero for training (boosted trees need "
            "non-negative weights); the held-out AUC uses the signed weights"
        )
    for n, name in ((n0, "reference"), (n1, "candidate")):
        if n > max_events:
            notes.append(f"{name}: {n} events, subsampled to max_events={max_events}")
    return notes


def _booster(
    classifier: str,
    device: str,
    *,
    learning_rate: float,
    max_depth: int,
    n_estimators: int,
    early_stopping_rounds: int,
    n_jobs: int | None,
) -> tuple[str, dict[str, Any], list[str]]:
    """The boosted trees that run (``"xgboost"`` or ``"sklearn"``), their settings for
    :func:`fit_boosted` (device included) and notes on fallbacks."""
    notes: list[str] = []
    backend, backend_note = resolve_classifier(classifier)
    if backend_note:
        notes.append(backend_note)
    run_on = "cpu"
    if backend == "xgboost":
        run_on, device_note = xgboost_device(device, "the classifier test with xgboost")
        if device_note:
            notes.append(device_note)
    booster: dict[str, Any] = {
        "learning_rate": float(learning_rate),
        "max_depth": int(max_depth),
        "n_estimators": int(n_estimators),
        "early_stopping_rounds": int(early_stopping_rounds),
        "device": run_on,
        "n_jobs": None if n_jobs is None else int(n_jobs),
    }
    return backend, booster, notes


@contextlib.contextmanager
def _thread_context(backend: str, n_jobs: int | None) -> Iterator[None]:
    """xgboost's global thread count for the whole test: it also governs DMatrix
    construction (labels, weights), whose OpenMP regions otherwise use every core even when
    n_jobs=1.  (scikit-learn's threads are limited inside :func:`fit_boosted`.)"""
    if backend != "xgboost" or n_jobs is None:
        yield
        return
    import xgboost

    with xgboost.config_context(nthread=int(n_jobs)):
        yield


# --------------------------------------------------------------------------------------------
# 5. Repeats combined, the result
# --------------------------------------------------------------------------------------------


def _combine(repeats: Sequence[Repeat]) -> dict[str, Any]:
    """The combined ``auc``, ``auc_ci``, ``pvalue`` and ``auc_std`` and the per-repeat
    ``aucs`` and ``pvalues`` of the repeats (fields of :class:`C2STResult`)."""
    aucs = np.array([r.auc for r in repeats])
    pvalues = np.array([r.pvalue for r in repeats])
    if len(repeats) == 1:
        pvalue = float(pvalues[0])
        auc_std = math.nan
    else:
        # Twice the median p-value is a valid p-value under arbitrary dependence
        # (Rueschendorf 1982; Vovk & Wang 2020); numpy's median is >= the lower median.
        pvalue = float(min(1.0, 2.0 * np.median(pvalues)))
        auc_std = float(np.std(aucs, ddof=1))
    return {
        "auc": float(np.mean(aucs)),
        "auc_ci": (
            float(np.mean([r.ci[0] for r in repeats])),
            float(np.mean([r.ci[1] for r in repeats])),
        ),
        "pvalue": pvalue,
        "auc_std": auc_std,
        "aucs": tuple(float(a) for a in aucs),
        "pvalues": tuple(float(p) for p in pvalues),
    }


def _outcome_notes(
    combined: dict[str, Any],
    gains: np.ndarray,
    first: Repeat,
    n_estimators: int,
    ci_level: float,
) -> list[str]:
    """Notes on the fit (early stopping, no split) and on an AUC far below 0.5."""
    notes: list[str] = []
    if first.best_iteration >= n_estimators - 1:
        notes.append(
            f"early stopping did not trigger within n_estimators={n_estimators}; "
            "the classifier may be under-trained (raise n_estimators)"
        )
    if not gains.sum() > 0:
        notes.append("the classifier made no split: it found nothing to separate the samples")
    low, high = combined["auc_ci"]
    se = (high - low) / (2.0 * stats.norm.ppf(0.5 + ci_level / 2.0))
    if se > 0 and combined["auc"] < 0.5 - 2.0 * se:
        notes.append(
            "held-out AUC is below 0.5 by more than two standard errors: not "
            "evidence of a difference (the test is one-sided), but check for duplicated "
            "events or an ordering artefact"
        )
    return notes


def _method(plan: Plan, n_repeats: int) -> str:
    """One line naming the classifier, the p-value and the interval methods."""
    ci_name = "bootstrap" if (plan.weighted or plan.ci == "bootstrap") else "DeLong"
    pv_name = (
        "normal approximation, Kish effective sizes"
        if plan.weighted
        else "one-sided Mann-Whitney U"
    )
    trees = (
        f"xgboost C2ST (hist, {plan.booster['device']}"
        if plan.backend == "xgboost"
        else "scikit-learn C2ST (HistGradientBoosting, cpu"
    )
    method = (
        f"{trees}, early stopping on log-loss); p-value: {pv_name}; "
        f"CI: {ci_name} {plan.ci_level:.0%}"
    )
    if n_repeats > 1:
        method += f"; {n_repeats} repeats, p = min(1, 2 median p_k)"
    return method


def _result(
    repeats: Sequence[Repeat],
    samples: Samples,
    plan: Plan,
    notes: list[str],
    n_estimators: int,
) -> C2STResult:
    """Assemble the :class:`C2STResult` of the repeats."""
    combined = _combine(repeats)
    gains = np.mean([r.gains for r in repeats], axis=0)
    order = sorted(range(len(samples.names)), key=lambda j: -gains[j])
    first = repeats[0]
    notes = notes + _outcome_notes(combined, gains, first, n_estimators, plan.ci_level)
    return C2STResult(
        **combined,
        n_train=first.n_train,
        n_test=first.n_test,
        importances={samples.names[j]: float(gains[j]) for j in order},
        fpr=first.fpr,
        tpr=first.tpr,
        best_iteration=first.best_iteration,
        method=_method(plan, len(repeats)),
        notes=tuple(notes),
        classifier="xgboost" if plan.backend == "xgboost" else "sklearn-hgb",
    )
