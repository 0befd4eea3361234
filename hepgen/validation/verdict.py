"""What a comparison concludes: non-finite counts, checked settings and the headline verdict.

Three things that decide whether a validation may be trusted, kept apart from the metrics:

* **Non-finite values** (NaN, +inf, -inf) are counted per feature and per sample
  (:func:`count_nonfinite`).  The tests run on the finite values, but a sample with
  non-finite values fails the comparison unless the caller allows them
  (``allow_nonfinite``): dropping 30 % of a candidate's ``Jet_pt`` silently and reporting the
  rest as compatible would pass a broken sample.
* **Settings** (:func:`check_settings`): a test that is asked for but cannot run (zero
  repeats, zero permutations, an unknown option) is an error, not a silent skip.
* **The verdict** (:func:`decide_verdict`): one word from the multivariate tests (classifier
  two-sample test and MMD) read against the reference-vs-reference baseline at the same sample
  size, with the reasons:

  - ``DIFFERENT``: a test rejects at level ``alpha`` (Bonferroni over the tests that ran) and
    its effect (``AUC - 0.5``, MMD^2) is more than twice the baseline's; or a feature is
    non-finite at clearly different rates in the two samples (Fisher's exact test at
    ``alpha`` over the features).
  - ``PASS``: every test that ran is compatible (p >= its level), the baseline is too, and
    no non-finite values were dropped against the caller's wish.
  - ``INCONCLUSIVE``: no multivariate test ran (or one that was asked for could not), no
    baseline, fewer than :data:`MIN_VERDICT_ROWS` rows, the baseline itself rejects (the two
    halves of the reference differ: the test is not calibrated for these data), or a test
    rejects with an effect no larger than twice the baseline's, or the data-copying test
    (:mod:`~hepgen.validation.memorisation`, when a training sample was given) rejects at
    ``alpha``: a generator that returns its training rows can pass every two-sample test.

Under the null each test rejects with probability ``alpha / n_tests``, so two identically
distributed samples give PASS with probability about ``1 - 2 alpha`` (the candidate's tests and
the baseline's); see ``tests/test_validate_trust.py`` for the calibration and power checks.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hepgen.errors import InputError

__all__ = [
    "DEFAULT_ALPHA",
    "MIN_VERDICT_ROWS",
    "VERDICTS",
    "VERDICT_TESTS",
    "check_settings",
    "count_nonfinite",
    "decide_verdict",
    "merge_nonfinite",
    "metric_function",
    "nonfinite_failure",
]

VERDICTS = ("PASS", "DIFFERENT", "INCONCLUSIVE")
#: The multivariate tests the verdict is read from.
VERDICT_TESTS = ("c2st", "mmd")
#: Significance level of the verdict (split over the tests that ran).
DEFAULT_ALPHA = 0.01
#: Fewest rows per sample for a verdict other than INCONCLUSIVE.
MIN_VERDICT_ROWS = 100
#: A rejecting test's effect must exceed this multiple of the baseline's for DIFFERENT.
BASELINE_FACTOR = 2.0


# --------------------------------------------------------------------------------------------
# non-finite values


def count_nonfinite(names: Sequence[str], values: np.ndarray) -> dict[str, dict[str, int]]:
    """NaN, +inf and -inf per feature column.

    Parameters
    ----------
    names : sequence of str
        Feature names, length d.
    values : np.ndarray
        Shape (n, d).

    Returns
    -------
    dict
        ``{name: {"nan": int, "posinf": int, "neginf": int, "n": n}}`` for every feature.
    """
    values = np.asarray(values, dtype=np.float64)
    nan = np.isnan(values).sum(axis=0)
    pos = np.isposinf(values).sum(axis=0)
    neg = np.isneginf(values).sum(axis=0)
    n = int(values.shape[0])
    return {
        name: {"nan": int(nan[j]), "posinf": int(pos[j]), "neginf": int(neg[j]), "n": n}
        for j, name in enumerate(names)
    }


def _bad(entry: Mapping[str, int] | None) -> int:
    if not entry:
        return 0
    return int(entry.get("nan", 0) + entry.get("posinf", 0) + entry.get("neginf", 0))


def merge_nonfinite(
    target: dict[str, Any],
    reference: Mapping[str, Mapping[str, int]],
    candidate: Mapping[str, Mapping[str, int]],
) -> dict[str, Any]:
    """Add per-feature counts of both samples to a ``nonfinite`` record (in place).

    Parameters
    ----------
    target : dict
        ``{"allowed": bool, "features": {...}, "total": {...}}`` (missing keys are created).
    reference, candidate : mapping
        Output of :func:`count_nonfinite` for each sample (same feature names).

    Returns
    -------
    dict
        ``target``, whose ``features`` lists only the features with a non-finite value in
        either sample and whose ``total`` sums the bad values per sample.
    """
    features = target.setdefault("features", {})
    for name in reference:
        r, c = reference[name], candidate.get(name)
        if _bad(r) or _bad(c):
            features[name] = {"reference": dict(r), "candidate": dict(c or {})}
    target["total"] = {
        label: int(sum(_bad(f.get(label)) for f in features.values()))
        for label in ("reference", "candidate")
    }
    return target


def nonfinite_failure(
    nonfinite: Mapping[str, Any] | None, option: str = "allow_nonfinite"
) -> str | None:
    """One-line reason to fail a comparison with non-finite values, or None.

    Parameters
    ----------
    nonfinite : mapping or None
        A record built by :func:`merge_nonfinite`.
    option : str
        How the message names the switch that accepts them (``--allow-nonfinite`` on the
        command line).
    """
    if not nonfinite or nonfinite.get("allowed"):
        return None
    parts = []
    for name, entry in (nonfinite.get("features") or {}).items():
        for label in ("reference", "candidate"):
            e = entry.get(label) or {}
            bad = _bad(e)
            if bad:
                kinds = ", ".join(f"{e[k]} {k}" for k in ("nan", "posinf", "neginf") if e.get(k))
                parts.append(f"{label} '{name}' {bad} of {e.get('n')} ({kinds})")
    if not parts:
        return None
    shown = "; ".join(parts[:4]) + (f"; and {len(parts) - 4} more" if len(parts) > 4 else "")
    return (
        f"non-finite values: {shown}; the tests used only the finite values (report "
        f"written); fix the sample, or pass {option} to accept them"
    )


def _nonfinite_rates_differ(nonfinite: Mapping[str, Any], alpha: float) -> list[str]:
    from scipy import stats

    features = nonfinite.get("features") or {}
    out = []
    for name, entry in features.items():
        r, c = entry.get("reference") or {}, entry.get("candidate") or {}
        nr, nc = int(r.get("n") or 0), int(c.get("n") or 0)
        if not nr or not nc:
            continue
        kr, kc = _bad(r), _bad(c)
        p = stats.fisher_exact([[kr, nr - kr], [kc, nc - kc]]).pvalue
        if p < alpha / max(1, len(features)):
            shown = f"{p:.2g}" if p > 0 else "< 1e-300"
            out.append(
                f"'{name}' is non-finite in {100 * kc / nc:.3g} % of the candidate's "
                f"values and {100 * kr / nr:.3g} % of the reference's (Fisher p {shown})"
            )
    return out


# --------------------------------------------------------------------------------------------
# settings


#: Where each multivariate metric's function lives (imported only to check its options).
_METRIC_FUNCTIONS = {
    "c2st": ("hepgen.validation.c2st", "classifier_test"),
    "mmd": ("hepgen.validation.mmd", "mmd_test"),
    "fpd": ("hepgen.validation.distances", "frechet_physics_distance"),
    "kpd": ("hepgen.validation.distances", "kernel_physics_distance"),
    "prdc": ("hepgen.validation.fidelity", "prdc"),
    "prd": ("hepgen.validation.prd", "prd_curve"),
    "ndb": ("hepgen.validation.ndb", "ndb_test"),
    "memorisation": ("hepgen.validation.memorisation", "data_copying_test"),
    "inception": ("hepgen.validation.inception", "inception_score"),
}


def metric_function(metric: str) -> Any:
    """The function of a multivariate metric (its module imported on first use)."""
    import importlib

    module, name = _METRIC_FUNCTIONS[metric]
    return getattr(importlib.import_module(module), name)


#: Options the comparison sets itself; a caller cannot pass them per metric.
_RESERVED = {
    "feature_names",
    "device",
    "seed",
    "reference",
    "candidate",
    "reference_weights",
    "candidate_weights",
    "train",
    "train_weights",
    "reference_labels",
    "candidate_labels",
}


def check_settings(
    metrics: Sequence[str],
    options: Mapping[str, Mapping[str, Any]] | None,
    known: Sequence[str],
    alpha: float = DEFAULT_ALPHA,
) -> list[str]:
    """Check the metric names and per-metric options before any work.

    Parameters
    ----------
    metrics : sequence of str
        Requested metrics: not empty, each in ``known``.
    options : mapping or None
        ``{metric: {keyword: value}}`` for the multivariate metrics.  Each keyword must be a
        parameter of that metric's function; integers (counts: repeats, permutations,
        estimators, neighbours) must be >= 1, real numbers finite and > 0, so that a test is
        never skipped because of a degenerate setting.
    known : sequence of str
        The metric names there are.
    alpha : float
        Verdict level, in (0, 1).

    Returns
    -------
    list of str
        The metrics, in order, without duplicates.

    Raises
    ------
    InputError
        Naming the metric or option and what was expected.
    """
    metrics = list(dict.fromkeys(str(m) for m in metrics))
    if not metrics:
        raise InputError(f"metrics: empty; choose one or more of {list(known)}")
    unknown = [m for m in metrics if m not in known]
    if unknown:
        raise InputError(f"metrics: unknown metric(s) {unknown}; choose from {list(known)}")
    if not (isinstance(alpha, int | float) and 0.0 < float(alpha) < 1.0):
        raise InputError(f"alpha={alpha!r}: expected a number strictly between 0 and 1")
    for metric, opts in (options or {}).items():
        if metric not in _METRIC_FUNCTIONS:
            raise InputError(
                f"options: no metric {metric!r} takes options; choose from "
                f"{list(_METRIC_FUNCTIONS)}"
            )
        if not isinstance(opts, Mapping):
            raise InputError(f"options[{metric!r}]: expected a mapping of keyword to value")
        params = inspect.signature(metric_function(metric)).parameters
        for key, value in opts.items():
            if key not in params or key in _RESERVED:
                allowed = sorted(
                    k for k, p in params.items() if k not in _RESERVED and p.kind is p.KEYWORD_ONLY
                )
                raise InputError(f"options[{metric!r}]: unknown option {key!r}; it takes {allowed}")
            if isinstance(value, bool) or value is None or isinstance(value, str):
                continue
            if isinstance(value, int | np.integer):
                if value < 1:
                    raise InputError(
                        f"options[{metric!r}][{key!r}]={value!r}: a degenerate "
                        "setting; expected an integer >= 1"
                    )
            elif isinstance(value, float | np.floating) and not (
                math.isfinite(value) and value > 0
            ):
                raise InputError(
                    f"options[{metric!r}][{key!r}]={value!r}: expected a finite number > 0"
                )
    return metrics


# --------------------------------------------------------------------------------------------
# the verdict


def _effect(key: str, res: Any) -> float | None:
    if res is None:
        return None
    value = res.auc - 0.5 if key == "c2st" else res.value
    return float(value) if value is not None and math.isfinite(value) else None


def _g(value: float | None) -> str:
    return "null" if value is None else f"{value:.3g}"


def _describe(key: str, res: Any) -> str:
    if key == "c2st":
        return f"classifier AUC {res.auc:.4f} (p {res.pvalue:.2g})"
    return f"MMD^2 {res.value:.3g} (p {res.pvalue:.2g})"


def _copying(result: Any, alpha: float) -> str | None:
    """The reason to withhold a PASS when the data-copying test rejects at ``alpha``: a
    generator that returns its training rows matches the reference's distribution (and may
    pass every two-sample test) without being a simulation.  With the near-duplicate count
    rejecting too it is called copying; alone, C_T < 0 also means a distribution narrower
    than the data's (its generated rows crowd the training rows' cores)."""
    memo = getattr(result, "memorisation", None)
    p = getattr(memo, "pvalue", None)
    if p is None or not math.isfinite(p) or p >= alpha:
        return None
    near = (getattr(memo, "near_duplicates", None) or {}).get("pvalue")
    test = f"data-copying test C_T {memo.statistic:.3g} (p {p:.2g} < {alpha:.2g})"
    if near is not None and near < alpha:
        return (
            f"the candidate copies its training sample: {test}, and {near:.2g} for the excess "
            "of generated rows within epsilon of a training row"
        )
    return (
        f"generated rows lie closer to the training rows than held-out reference rows do: "
        f"{test}; data copying, or a distribution narrower than the data's"
    )


def decide_verdict(result: Any, alpha: float = DEFAULT_ALPHA) -> dict[str, Any]:
    """The headline verdict of a comparison (see the module docstring for the rules).

    Parameters
    ----------
    result : ValidationResult
        With ``c2st``/``mmd`` results, ``baseline``, ``metrics`` (what was asked for),
        ``nonfinite`` and the row counts.
    alpha : float
        Significance level, split over the tests that ran.

    Returns
    -------
    dict
        ``{"verdict": "PASS" | "DIFFERENT" | "INCONCLUSIVE", "reasons": [str, ...],
        "alpha": float}``.
    """
    reasons: list[str] = []
    asked = [k for k in VERDICT_TESTS if k in (result.metrics or VERDICT_TESTS)]
    ran = {k: getattr(result, k) for k in asked if getattr(result, k) is not None}
    nonfinite = result.nonfinite or {}
    different = _nonfinite_rates_differ(nonfinite, alpha)
    inconclusive: list[str] = []
    dropped = bool(nonfinite.get("features"))
    if dropped and not nonfinite.get("allowed"):
        inconclusive.append("non-finite values were left out of the tests without allow_nonfinite")

    if not asked:
        inconclusive.append("no multivariate test (c2st, mmd) was asked for")
    missing = [k for k in asked if k not in ran]
    if missing:
        inconclusive.append(f"{', '.join(missing)} asked for but not computed (see notes)")
    if min(result.n_reference, result.n_candidate) < MIN_VERDICT_ROWS:
        inconclusive.append(
            f"fewer than {MIN_VERDICT_ROWS} rows in a sample "
            f"({result.n_reference} reference, {result.n_candidate} candidate)"
        )
    base = result.baseline
    level = alpha / max(1, len(ran))
    baseline_ok = bool(ran) and base is not None
    if ran and base is None:
        inconclusive.append("no reference-vs-reference baseline to read the tests against")
    for key in ran if base is not None else ():
        b = getattr(base, key, None)
        if b is None:
            inconclusive.append(f"{key}: no baseline value")
            baseline_ok = False
        elif b.pvalue is not None and b.pvalue < level:
            inconclusive.append(
                f"the baseline itself rejects: reference half A vs half B {_describe(key, b)}"
                f" < {level:.2g}; the reference is not homogeneous enough for this test"
            )
            baseline_ok = False
    for key, res in ran.items() if baseline_ok else ():
        b = getattr(base, key)
        if res.pvalue is None or res.pvalue >= level:
            reasons.append(
                f"{_describe(key, res)} compatible (level {level:.2g}; baseline "
                f"{_describe(key, b)})"
            )
            continue
        effect, beffect = _effect(key, res), _effect(key, b)
        if effect is not None and beffect is not None and (effect > BASELINE_FACTOR * abs(beffect)):
            different.append(
                f"{_describe(key, res)} rejects at level {level:.2g}, effect "
                f"{effect:.3g} > {BASELINE_FACTOR:g} x |baseline {beffect:.3g}|"
            )
        else:
            inconclusive.append(
                f"{_describe(key, res)} rejects, but its effect {_g(effect)} is within "
                f"{BASELINE_FACTOR:g} x the baseline's {_g(beffect)}"
            )
    copying = _copying(result, alpha)
    if copying:
        inconclusive.insert(0, copying)
    if different:
        verdict, why = "DIFFERENT", different + inconclusive + reasons
    elif inconclusive:
        verdict, why = "INCONCLUSIVE", inconclusive + reasons
    else:
        verdict, why = "PASS", reasons
        if dropped:
            why.append("non-finite values were dropped (allowed)")
    return {"verdict": verdict, "reasons": why, "alpha": alpha}
