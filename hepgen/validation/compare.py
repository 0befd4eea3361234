"""Compare a candidate sample with a reference: every metric, a baseline, conditional bins.

:func:`compare` is the one entry point that ``hepgen validate`` and analysis code use.  It runs
the per-feature tests (KS, chi2, Wasserstein-1, separation power), the multivariate ones
(classifier test, MMD, FPD, KPD, PRDC), optionally the per-feature tests in bins of condition
variables, and the same metrics between two halves of the reference (the **baseline**: what
pure noise gives at about the same sample size), into a :class:`ValidationResult` whose
:meth:`to_dict` is ``metrics.json`` (keys listed in the README).  Bad input never crashes the
report: non-finite values are counted and left out, and fail the comparison unless
``allow_nonfinite``.  The rules are in docs/validation.md ("compare"); the verdict is
:mod:`hepgen.validation.verdict`.

References
----------
- N. D. Gagunashvili, "Chi-square tests for comparing weighted histograms", Nucl. Instrum.
  Meth. A 614 (2010) 287, arXiv:0905.4221 (the weighted chi2).
- D. Lopez-Paz and M. Oquab, "Revisiting classifier two-sample tests", ICLR 2017,
  arXiv:1610.06545 (the classifier test).
- A. Gretton et al., "A Kernel Two-Sample Test", JMLR 13 (2012) 723 (MMD).
- R. Kansal et al., "Evaluating generative models in high energy physics", Phys. Rev. D 107
  (2023) 076017, arXiv:2211.10295 (FPD, KPD).
- M. F. Naeem et al., "Reliable Fidelity and Diversity Metrics for Generative Models",
  ICML 2020, arXiv:2002.09797 (PRDC).
"""

from __future__ import annotations

import functools
import itertools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from hepgen.errors import InputError, did_you_mean
from hepgen.stats import effective_sample_size as effective_n
from hepgen.utils import to_jsonable
from hepgen.validation._checks import check_weights
from hepgen.validation.multivariate import (
    MetricInputs,
    run_multivariate,
    timed,
    train_table,
)
from hepgen.validation.result import MULTIVARIATE_METRICS, PER_FEATURE_METRICS, ValidationResult
from hepgen.validation.samples import Table, as_table, check_same_features
from hepgen.validation.verdict import (
    DEFAULT_ALPHA,
    check_settings,
    count_nonfinite,
    merge_nonfinite,
)

__all__ = [
    "MULTIVARIATE_METRICS",
    "PER_FEATURE_METRICS",
    "ValidationResult",
    "compare",
    "parse_condition_bins",
]

log = logging.getLogger(__name__)

#: Smallest number of rows in a condition bin (per sample) for which the tests are run.
MIN_BIN_EVENTS = 20


def parse_condition_bins(specs: Sequence[str]) -> dict[str, Any]:
    """Parse ``--condition-bins`` values: ``NAME=e0,e1,...`` (edges) or ``NAME:K`` (K bins).

    Parameters
    ----------
    specs : sequence of str
        E.g. ``["GenJet_pt=20,50,100,300", "GenJet_eta:4"]``.

    Returns
    -------
    dict
        ``{name: edges (list of float) or number of reference-quantile bins (int)}``.
    """
    out: dict[str, Any] = {}
    for spec in specs:
        for part in str(spec).split(";"):
            part = part.strip()
            if not part:
                continue
            if "=" in part:
                name, _, rest = part.partition("=")
                try:
                    edges = [float(v) for v in rest.split(",") if v.strip()]
                except ValueError:
                    raise InputError(
                        f"--condition-bins '{part}': edges must be numbers, e.g. NAME=0,10,20"
                    ) from None
                if len(edges) < 2 or np.any(np.diff(edges) <= 0):
                    raise InputError(
                        f"--condition-bins '{part}': need at least two increasing edges"
                    )
                out[name.strip()] = edges
            elif ":" in part:
                name, _, rest = part.partition(":")
                try:
                    k = int(rest)
                except ValueError:
                    raise InputError(
                        f"--condition-bins '{part}': expected NAME:K with K an integer"
                    ) from None
                if k < 1:
                    raise InputError(f"--condition-bins '{part}': K must be >= 1")
                out[name.strip()] = k
            else:
                raise InputError(f"--condition-bins '{part}': expected NAME=e0,e1,... or NAME:K")
    return out


# --------------------------------------------------------------------------------------------
# internals


def _check_nonfinite(table: Table, notes: list[str]) -> None:
    """Raise for a feature that is NaN everywhere; note the counts of partial NaN.

    Rows with NaN are not dropped here: each per-feature test uses the finite values of its
    feature, the multivariate tests the rows finite in every feature.
    """
    bad = ~np.isfinite(table.values)
    for j, name in enumerate(table.names):
        if table.n > 0 and bad[:, j].all():
            raise InputError(
                f"{table.label}: feature '{name}' is NaN or infinite in all {table.n} rows"
            )
    if bad.any():
        per_feature = {
            name: int(bad[:, j].sum()) for j, name in enumerate(table.names) if bad[:, j].any()
        }
        notes.append(
            f"{table.label}: {int(bad.any(axis=1).sum())} of {table.n} rows have NaN or "
            f"infinite values, left out of the tests that use them (per feature: {per_feature})"
        )
    if table.weights is not None:
        bad_w = ~np.isfinite(table.weights)
        if bad_w.any():
            raise InputError(f"{table.label}: {int(bad_w.sum())} weights are NaN or infinite")


def _seeds(seed: int | None, n: int) -> list[int]:
    ss = np.random.SeedSequence(seed)
    return [int(s.generate_state(1)[0]) for s in ss.spawn(n)]


def _per_feature(
    ref: Table,
    cand: Table,
    metrics: Sequence[str],
    timings: dict[str, float],
    notes: list[str],
    prefix: str = "",
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    from hepgen.validation import univariate as uv

    out: dict[str, dict[str, Any]] = {}
    for j, name in enumerate(ref.names):
        x, y = ref.values[:, j], cand.values[:, j]
        wx, wy = ref.weights, cand.weights
        fx, fy = np.isfinite(x), np.isfinite(y)
        if not fx.all():
            x, wx = x[fx], None if wx is None else wx[fx]
        if not fy.all():
            y, wy = y[fy], None if wy is None else wy[fy]
        integer = True if (ref.integer[j] and cand.integer[j]) else None
        entry: dict[str, Any] = {}
        label = f"{prefix}{name}"
        args = (x, y, wx, wy)
        if "ks" in metrics:
            # the KS p-value of discrete features is resampled: seeded per feature
            rng = np.random.default_rng([seed, j])
            entry["ks"] = timed(timings, "ks", uv.ks_test, *args, name=label, seed=rng)
        if "chi2" in metrics:
            entry["chi2"] = timed(timings, "chi2", uv.chi2_test, *args, integer=integer, name=label)
            if entry["chi2"].pvalue is None:
                notes.append(
                    f"{label}: chi2 p-value is null: a single populated bin (constant feature)"
                )
        if "w1" in metrics:
            entry["w1"] = timed(timings, "w1", uv.wasserstein1, *args, name=label)
        if "separation_power" in metrics:
            entry["separation_power"] = timed(
                timings, "separation_power", uv.separation_power, *args, name=label
            )
        out[name] = entry
    return out


def _bin_edges(ref: Table, name: str, spec: Any) -> np.ndarray:
    col = ref.column(name)
    if isinstance(spec, int | np.integer):
        if ref.integer[ref.names.index(name)] and np.unique(col).size <= spec:
            values = np.unique(col)
            return np.concatenate([values - 0.5, [values[-1] + 0.5]])
        edges = np.unique(np.quantile(col, np.linspace(0, 1, int(spec) + 1)))
        edges[-1] = np.nextafter(edges[-1], np.inf)
        return edges
    return np.asarray(spec, dtype=np.float64)


def _conditional(
    ref: Table,
    cand: Table,
    condition_bins: Mapping[str, Any],
    metrics: Sequence[str],
    timings: dict[str, float],
    notes: list[str],
) -> dict[str, Any]:
    out: dict[str, Any] = {"variables": {}, "min_events": MIN_BIN_EVENTS}
    feature_metrics = [m for m in ("ks", "chi2", "w1") if m in metrics]
    for var, spec in condition_bins.items():
        if var not in ref.names:
            raise InputError(
                f"condition-bins variable '{var}' is not a compared feature"
                + did_you_mean(var, ref.names)
            )
        edges = _bin_edges(ref, var, spec)
        xr, xc = ref.column(var), cand.column(var)
        bins = []
        for lo, hi in itertools.pairwise(edges):
            in_r = (xr >= lo) & (xr < hi)
            in_c = (xc >= lo) & (xc < hi)
            entry: dict[str, Any] = {
                "lo": float(lo),
                "hi": float(hi),
                "n_reference": int(in_r.sum()),
                "n_candidate": int(in_c.sum()),
            }
            if min(entry["n_reference"], entry["n_candidate"]) < MIN_BIN_EVENTS:
                entry["features"] = None
                entry["note"] = f"fewer than {MIN_BIN_EVENTS} rows in a sample: not tested"
            else:
                sub_notes: list[str] = []
                others = [n for n in ref.names if n != var]
                res = _per_feature(
                    ref.select_rows(in_r).select_columns(others),
                    cand.select_rows(in_c).select_columns(others),
                    feature_metrics,
                    timings,
                    sub_notes,
                    prefix=f"{var} in [{lo:g}, {hi:g}): ",
                )
                entry["features"] = {
                    name: {
                        k: (v.to_dict(arrays=False) if hasattr(v, "to_dict") else v)
                        for k, v in m.items()
                    }
                    for name, m in res.items()
                }
            bins.append(entry)
        # The worst bin per feature, for a quick look.
        worst: dict[str, Any] = {}
        for b in bins:
            for name, m in (b["features"] or {}).items():
                ks = (m.get("ks") or {}).get("statistic")
                if ks is not None and (name not in worst or ks > worst[name]["ks"]):
                    worst[name] = {
                        "ks": ks,
                        "lo": b["lo"],
                        "hi": b["hi"],
                        "pvalue": (m.get("ks") or {}).get("pvalue"),
                    }
        out["variables"][var] = {"edges": edges.tolist(), "bins": bins, "worst": worst}
    return to_jsonable(out)


def _split_reference(ref: Table, n_candidate: int, rng: np.random.Generator) -> tuple[Table, Table]:
    perm = rng.permutation(ref.n)
    half = ref.n // 2
    size = min(half, n_candidate)
    return ref.select_rows(np.sort(perm[:size])), ref.select_rows(np.sort(perm[half : half + size]))


def _run(
    ref: Table,
    cand: Table,
    *,
    metrics: Sequence[str],
    options: Mapping[str, Mapping[str, Any]],
    condition_bins: Mapping[str, Any] | None,
    seeds: list[int],
    device: str,
    quiet: bool,
    extra: MetricInputs | None = None,
) -> ValidationResult:
    notes: list[str] = []
    timings: dict[str, float] = {}
    weighted = ref.weights is not None or cand.weights is not None
    result = ValidationResult(
        n_reference=ref.n,
        n_candidate=cand.n,
        weighted=weighted,
        feature_names=list(ref.names),
        n_eff_reference=effective_n(ref.weights, ref.n),
        n_eff_candidate=effective_n(cand.weights, cand.n),
        notes=notes,
        timings=timings,
    )
    per_feature = [m for m in PER_FEATURE_METRICS if m in metrics]
    if per_feature:
        result.features = _per_feature(ref, cand, per_feature, timings, notes, seed=seeds[5])
    if any(m in metrics for m in MULTIVARIATE_METRICS):
        mv = run_multivariate(
            ref, cand, metrics, options, seeds, device, timings, notes, quiet, extra
        )
        for key, value in mv.items():
            setattr(result, key, value)
        result.label = extra.label if extra is not None else None
    if condition_bins:
        result.conditional = timed(
            timings,
            "conditional",
            _conditional,
            ref,
            cand,
            condition_bins,
            metrics,
            timings,
            notes,
        )
    return result


def compare(
    reference: Any,
    candidate: Any,
    reference_weights: Any = None,
    candidate_weights: Any = None,
    *,
    feature_names: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    condition_bins: Mapping[str, Any] | None = None,
    baseline: bool = True,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    device: str = "auto",
    seed: int | None = 0,
    quiet: bool = True,
    allow_nonfinite: bool = False,
    alpha: float = DEFAULT_ALPHA,
    train: Any = None,
    train_weights: Any = None,
    label: str | None = None,
    label_inputs: Sequence[str] | None = None,
) -> ValidationResult:
    """Compare a candidate sample with a reference sample on every metric.

    Parameters
    ----------
    reference, candidate : array (n, d), mapping name -> (n,), DataFrame or awkward records
        The two samples, with the same features (names must match; a plain array takes
        ``feature_names``).  Object collections as awkward arrays are flattened.
    reference_weights, candidate_weights : array (n,) or None
        Per-row weights (negative sWeights allowed; each sum must be positive).
    feature_names : sequence of str or None
        Features to compare (default: all of the reference's).
    metrics : sequence of str or None
        Subset of ``PER_FEATURE_METRICS + MULTIVARIATE_METRICS`` (default: all, without
        ``memorisation`` when there is no ``train`` sample and without ``inception`` when
        there is no ``label``; asked for explicitly without them, they are noted as not run).
    condition_bins : mapping or None
        ``{feature: edges or number of reference-quantile bins}``: run KS, chi2 and W1 of the
        other features inside each bin of each listed feature (1-D bins per variable).
    baseline : bool
        Also compute the metrics between two disjoint halves of the reference (each at most the
        candidate's size) and store them as ``result.baseline``.
    options : mapping or None
        Keyword arguments per multivariate metric, e.g. ``{"c2st": {"n_repeats": 3}}``;
        unknown keywords and degenerate counts (``n_repeats=0``) raise.
    device : {"auto", "cpu", "cuda"}
        Where torch metrics and xgboost run.
    seed : int or None
        Seeds every random step (splits, subsamples, permutations).
    quiet : bool
        Silence progress bars.
    allow_nonfinite : bool
        Accept NaN/inf values: they are counted and left out of the tests either way, but
        only with this flag can the comparison pass (otherwise ``result.failure`` holds the
        reason and the verdict is not PASS).
    alpha : float
        Significance level of the verdict (:meth:`ValidationResult.verdict`).
    train : array (n, d), mapping, DataFrame, awkward records, Table or None
        The sample the generator was trained on, with the reference's features (a plain array:
        in the reference's order): the data-copying test
        (:func:`~hepgen.validation.memorisation.data_copying_test`) compares the candidate's
        and the reference's distances to it.  The reference must be held out from training.
    train_weights : array (n,) or None
        Per-row weights of ``train``.
    label : str or None
        A class feature (e.g. the gen flavour) for the Inception-score analogue
        (:func:`~hepgen.validation.inception.inception_score`): a classifier trained on part
        of the reference predicts it from ``label_inputs``.
    label_inputs : sequence of str or None
        The classifier's inputs (default: every other feature; with a config, the reco
        features).

    Returns
    -------
    ValidationResult

    Raises
    ------
    InputError
        Unknown or empty ``metrics``, unknown or degenerate ``options``, features that differ,
        a feature NaN everywhere, bad weights, an empty sample.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> ref, cand = rng.normal(size=(2000, 2)), rng.normal(size=(2000, 2))
    >>> res = compare(ref, cand, feature_names=["a", "b"], metrics=["ks", "chi2"], baseline=False)
    >>> res.features["a"]["ks"].pvalue > 0.001
    True
    """
    from hepgen.devices import resolve_device

    if metrics is None:
        metrics = [*PER_FEATURE_METRICS, *MULTIVARIATE_METRICS]
        metrics = [
            m
            for m in metrics
            if not (m == "memorisation" and train is None) and not (m == "inception" and not label)
        ]
    metrics = check_settings(
        list(metrics),
        options,
        PER_FEATURE_METRICS + MULTIVARIATE_METRICS,
        alpha,
    )
    resolve_device(device)  # a malformed name or an absent GPU, before any work
    ref, cand, nonfinite, pre_notes = _prepare(
        reference, candidate, reference_weights, candidate_weights, feature_names, allow_nonfinite
    )
    extra = MetricInputs(
        train=None if train is None else train_table(train, train_weights, ref),
        label=label,
        label_inputs=label_inputs,
    )
    if label is not None and label not in ref.names:
        raise InputError(
            f"label '{label}': not a compared feature" + did_you_mean(label, ref.names)
        )
    # 20 seeds: the first 12 as before the Inception/memorisation/PRD/NDB metrics came, so
    # that the older metrics' results do not change; main run 0-5 + 12-15, baseline the rest.
    seeds = _seeds(seed, 20)
    run = functools.partial(
        _run, metrics=metrics, options=options or {}, device=device, quiet=quiet, extra=extra
    )
    result = run(ref, cand, condition_bins=condition_bins, seeds=seeds[:6] + seeds[12:16])
    result.notes[:0] = pre_notes
    result.metrics, result.nonfinite, result.alpha = list(metrics), nonfinite, alpha
    if baseline:
        _add_baseline(result, ref, cand, run, seeds[6:12] + seeds[16:20])
    return result


def _prepare(
    reference: Any,
    candidate: Any,
    reference_weights: Any,
    candidate_weights: Any,
    feature_names: Sequence[str] | None,
    allow_nonfinite: bool,
) -> tuple[Table, Table, dict[str, Any], list[str]]:
    """The two samples as tables of the same features, their non-finite counts and notes.

    Raises
    ------
    InputError
        Features that differ, a feature NaN everywhere, bad weights, an empty sample.
    """
    ref = as_table(reference, feature_names, reference_weights, label="reference")
    # A plain array carries no names: its columns are the reference's features, in order.
    plain = isinstance(candidate, np.ndarray | list)
    cand_names = ref.names if (plain or feature_names is not None) else None
    cand = as_table(candidate, cand_names, candidate_weights, label="candidate")
    check_same_features(ref, cand)
    cand = cand.select_columns(ref.names)
    nonfinite = merge_nonfinite(
        {"allowed": bool(allow_nonfinite)},
        count_nonfinite(ref.names, ref.values),
        count_nonfinite(cand.names, cand.values),
    )
    notes: list[str] = []
    for table in (ref, cand):
        _check_nonfinite(table, notes)
    for table in (ref, cand):
        if table.n == 0:
            raise InputError(f"{table.label}: no events to compare")
        check_weights(table.weights, table.n, table.label)
    return ref, cand, nonfinite, notes


def _add_baseline(
    result: ValidationResult,
    ref: Table,
    cand: Table,
    run: Callable[..., ValidationResult],
    seeds: list[int],
) -> None:
    """Run the metrics between two disjoint halves of the reference into ``result.baseline``."""
    a, b = _split_reference(ref, cand.n, np.random.default_rng(seeds[0]))
    a.label, b.label = "reference half A", "reference half B"
    if min(a.n, b.n) < 2:
        result.notes.append("baseline not computed: fewer than 4 reference rows")
        return
    t0 = time.perf_counter()
    result.baseline = run(a, b, condition_bins=None, seeds=seeds)
    result.timings["baseline"] = time.perf_counter() - t0
    result.notes.append(
        f"baseline: reference half A ({a.n} rows) vs half B ({b.n} rows), disjoint, "
        f"each at most the candidate's size ({cand.n})"
    )
