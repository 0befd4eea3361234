"""The result of :func:`hepgen.validation.compare.compare`: every metric, the baseline, the
verdict, and its plain-JSON form (the content of ``metrics.json``).

Kept apart from the comparison that fills it: the report and the verdict only read it.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from hepgen.utils import to_jsonable
from hepgen.validation.verdict import DEFAULT_ALPHA, decide_verdict, nonfinite_failure

__all__ = ["MULTIVARIATE_METRICS", "PER_FEATURE_METRICS", "ValidationResult"]

#: Tests run on each feature alone.
PER_FEATURE_METRICS = ("ks", "chi2", "w1", "separation_power")
#: Tests run on all features together (``memorisation`` needs the training sample and
#: ``inception`` a class label: without them they are left out with a note).
MULTIVARIATE_METRICS = (
    "c2st",
    "mmd",
    "fpd",
    "kpd",
    "prdc",
    "prd",
    "ndb",
    "memorisation",
    "inception",
)


@dataclasses.dataclass
class ValidationResult:
    """Everything :func:`compare` measured; :meth:`to_dict` is the ``metrics.json`` content.

    Attributes
    ----------
    n_reference, n_candidate : int
        Rows of each sample (a row with NaN counts; each test uses the finite values it
        needs, see ``notes``).
    weighted : bool
        Whether either sample carried weights.
    features : dict
        ``{name: {"ks": {...}, "chi2": {...}, "w1": float, "separation_power": float, ...}}``.
    c2st, mmd, fpd, kpd, prdc, prd, ndb, memorisation, inception : metric results or None
        Multivariate results (``None`` when not run; the reason is in ``notes``).
    conditional : dict or None
        Per-feature tests in bins of condition variables.
    baseline : ValidationResult or None
        The same metrics between two halves of the reference.
    timings : dict of str to float
        Seconds spent per metric.
    notes : list of str
        Everything the reader should know: dropped rows, skipped metrics, nulls explained.
    metrics : list of str
        The metrics asked for.
    nonfinite : dict
        ``{"allowed": bool, "features": {name: {"reference": {"nan", "posinf", "neginf", "n"},
        "candidate": {...}}}, "total": {"reference": int, "candidate": int}}``: only features
        with a non-finite value are listed.
    alpha : float
        Significance level of the verdict.
    partitioned : dict or None
        For a comparison from sums merged over partitions
        (:func:`~hepgen.validation.partitioned.validate_partitioned`): executor, partitions,
        subsample (seed, fraction, rows) and the error bounds of KS and W1; else None.
    label : str or None
        The class feature the Inception-score analogue predicted (``inception``).
    """

    n_reference: int
    n_candidate: int
    weighted: bool
    feature_names: list[str]
    n_eff_reference: float
    n_eff_candidate: float
    features: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    c2st: Any = None
    mmd: Any = None
    fpd: Any = None
    kpd: Any = None
    prdc: Any = None
    prd: Any = None
    ndb: Any = None
    memorisation: Any = None
    inception: Any = None
    conditional: dict[str, Any] | None = None
    baseline: ValidationResult | None = None
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)
    metrics: list[str] = dataclasses.field(default_factory=list)
    nonfinite: dict[str, Any] = dataclasses.field(default_factory=dict)
    alpha: float = DEFAULT_ALPHA
    partitioned: dict[str, Any] | None = None
    #: The class feature of the Inception-score analogue (``inception``), or None.
    label: str | None = None

    @property
    def failure(self) -> str | None:
        """One-line reason why the comparison must not pass (non-finite values that were not
        allowed), or None."""
        return nonfinite_failure(self.nonfinite, "allow_nonfinite=True (--allow-nonfinite)")

    def verdict(self) -> dict[str, Any]:
        """``{"verdict": "PASS" | "DIFFERENT" | "INCONCLUSIVE", "reasons": [...], "alpha"}``
        (:func:`hepgen.validation.verdict.decide_verdict`)."""
        return decide_verdict(self, self.alpha)

    def to_dict(self, arrays: bool = False) -> dict[str, Any]:
        """Plain-JSON content of ``metrics.json`` (no NaN; curves only when ``arrays``)."""

        def res(value: Any) -> Any:
            if value is None:
                return None
            return value.to_dict(arrays=arrays) if hasattr(value, "to_dict") else value

        out: dict[str, Any] = {
            "n_reference": self.n_reference,
            "n_candidate": self.n_candidate,
            "weighted": self.weighted,
            "n_eff_reference": self.n_eff_reference,
            "n_eff_candidate": self.n_eff_candidate,
            "feature_names": list(self.feature_names),
            "features": {
                name: {k: res(v) for k, v in metrics.items()}
                for name, metrics in self.features.items()
            },
        }
        for key in MULTIVARIATE_METRICS:
            out[key] = res(getattr(self, key))
        if out.get("inception") is not None:
            out["inception"]["label"] = self.label
        if self.conditional is not None:
            out["conditional"] = self.conditional
        out["summary"] = self.summary()
        multiple = self.multiple_testing()
        if multiple is not None:
            out["multiple_testing"] = multiple
        if self.baseline is not None:
            out["baseline"] = self.baseline.to_dict(arrays=False)
        out["timings"] = {k: round(v, 4) for k, v in self.timings.items()}
        out["notes"] = list(self.notes)
        if self.partitioned is not None:
            out["partitioned"] = self.partitioned
        if self.nonfinite:  # the baseline (two halves of the reference) has neither key
            out["nonfinite"] = self.nonfinite
            verdict = self.verdict()
            failure = self.failure
            if failure:
                verdict["failure"] = failure
            out["verdict"] = verdict
        return to_jsonable(out)

    def multiple_testing(self, alpha: float = 0.05) -> dict[str, Any] | None:
        """The per-feature p-values with their Holm and Benjamini-Hochberg adjustments and
        the count of rejections against chance
        (:func:`hepgen.validation.multiple.multiple_testing`), or None without p-values."""
        from hepgen.validation.multiple import multiple_testing

        return multiple_testing(self.features, alpha)

    def summary(self) -> dict[str, Any]:
        """Headline numbers: worst KS feature, per-feature p-value counts, AUC, MMD."""
        ks = {
            name: m["ks"].statistic for name, m in self.features.items() if m.get("ks") is not None
        }
        pvalues = [
            m[t].pvalue
            for m in self.features.values()
            for t in ("ks", "chi2")
            if m.get(t) is not None and m[t].pvalue is not None and math.isfinite(m[t].pvalue)
        ]
        worst = max(ks, key=ks.get) if ks else None
        multiple = self.multiple_testing()
        return {
            "max_ks": ks[worst] if worst is not None else None,
            "max_ks_feature": worst,
            "mean_ks": float(np.mean(list(ks.values()))) if ks else None,
            "n_pvalues": len(pvalues),
            # Under the null 5 % of the per-feature p-values fall below 0.05; many features
            # make a few small p-values expected (look-elsewhere), so the count is reported.
            "n_pvalues_below_0.05": int(sum(p < 0.05 for p in pvalues)),
            "min_pvalue_bonferroni": min(1.0, min(pvalues) * len(pvalues)) if pvalues else None,
            "expected_below_0.05": 0.05 * len(pvalues),
            "n_rejected_holm": (multiple or {}).get("holm", {}).get("n_rejected"),
            "n_rejected_bh": (multiple or {}).get("bh", {}).get("n_rejected"),
            "c2st_auc": self.c2st.auc if self.c2st is not None else None,
            "mmd": self.mmd.value if self.mmd is not None else None,
        }
