"""Validate many ROOT files against many, partition by partition: ``hepgen validate`` at scale.

:func:`validate_partitioned` writes the report of
:func:`~hepgen.validation.files.validate_files` for inputs that need not fit in memory.  The
files are cut into partitions (:func:`hepgen.parallel.partitions.plan_partitions`) that run
in this process or on Dask (:func:`hepgen.parallel.executor.executor`); a task reads one
partition and returns small arrays, and the client adds them up:

1. **Pass 1** (reference and candidate partitions): per feature the exact row count,
   NaN/inf counts, minimum, maximum, weight sums and whole-number flag
   (:class:`~hepgen.validation.univariate.sketch.FeatureRange`), and a seeded subsample of
   rows: an entry is kept when its uniform number, a function of ``(seed, file UUID, entry)``
   (:func:`~hepgen.parallel.partitions.row_uniforms`), is below ``subsample / entries``; the
   same rows whatever the partitioning or the number of workers.
2. The bins, from the reference subsample and the exact ranges: the chi2 bins of the
   in-memory rule and ``fine_edges`` reference-quantile edges for KS and W1.
3. **Pass 2**: per feature the weighted histograms on those bins
   (:class:`~hepgen.validation.univariate.sketch.BinnedSample`) of the reference, the
   candidate and, for the baseline, two disjoint seeded halves of the reference (each at
   most the candidate's size).
4. The per-feature tests from the merged sums
   (:func:`~hepgen.validation.univariate.sketch.binned_tests`: chi2 and separation power
   exact for these bins, KS and W1 with a stated error bound), and the multivariate tests
   (classifier test, MMD, FPD, KPD, PRDC) by :func:`~hepgen.validation.compare.compare` on the
   subsample, with its own reference-vs-reference baseline.

The result is a :class:`~hepgen.validation.result.ValidationResult` (verdict and report as
usual) whose ``partitioned`` entry (``metrics.json`` key ``partitioned``) states the
executor, the partitions, the subsample (seed, fraction, rows) and the error bounds.  Not
supported here: ``--config`` (matched gen/reco pairs) and conditional bins.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hepgen.errors import InputError
from hepgen.io.sources import is_url, resolve_files
from hepgen.parallel.partitions import SEED_BLOCK, Partition, plan_partitions
from hepgen.validation._partition_tasks import (
    TaskPlan,
    edges_of,
    finish1,
    fold,
    merge1,
    merge2,
    nonfinite_record,
    pass1,
    pass2,
    screen,
)
from hepgen.validation.compare import MULTIVARIATE_METRICS, PER_FEATURE_METRICS, compare
from hepgen.validation.files import _check_options, check_report_dir
from hepgen.validation.inputs import choose_branches
from hepgen.validation.report import ReportFiles, write_report
from hepgen.validation.result import ValidationResult
from hepgen.validation.samples import Table
from hepgen.validation.univariate.sketch import (
    FINE_EDGES,
    BinnedSample,
    FeatureRange,
    binned_tests,
    chi2_note,
)
from hepgen.validation.verdict import DEFAULT_ALPHA, check_settings

__all__ = ["DEFAULT_STEP_SIZE", "DEFAULT_SUBSAMPLE", "validate_partitioned"]

#: Entries per partition (rounded up to a multiple of the seed block).
DEFAULT_STEP_SIZE = 100_000
#: Rows of each sample kept for the multivariate tests and the plots.
DEFAULT_SUBSAMPLE = 100_000


def _choose(
    reference: Any, candidate: Any, tree: str, features: Sequence[str] | None, weights: str | None
) -> tuple[dict[str, tuple[str, ...]], dict[str, str], list[str]]:
    """The compared branches by group (from the first file of each side), the bookkeeping
    branches left out and the notes, as :func:`~hepgen.validation.inputs.load_branch_groups`."""
    _, by_group, excluded, notes = choose_branches(reference, candidate, tree, features, weights)
    # the primary group (most features) first, as in memory
    ordered = sorted(by_group.items(), key=lambda kv: -len(kv[1]))
    if excluded:
        notes.append(
            f"{len(excluded)} bookkeeping branch(es) not compared (name them in --features to "
            "compare them): " + ", ".join(f"{n} {r}" for n, r in excluded.items())
        )
    return {g: tuple(n) for g, n in ordered}, excluded, notes


def _check(subsample: Any, seed: Any, fine: Any, config: Any) -> None:
    if config is not None:
        raise InputError(
            "--config (matched gen/reco pairs) is not supported over partitions yet; "
            "compare branches (--features), or validate one file of each side in memory"
        )
    for value, what, low in ((subsample, "subsample (--subsample)", 1), (fine, "fine_edges", 2)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
            raise InputError(f"{what} must be an integer >= {low}, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InputError(
            f"seed must be an integer >= 0 over partitions (it fixes the subsample), got {seed!r}"
        )


def _per_feature(
    samples: tuple[Mapping[str, BinnedSample], Mapping[str, BinnedSample]],
    ranges: tuple[Mapping[str, FeatureRange], Mapping[str, FeatureRange]],
    groups: dict[str, tuple[str, ...]],
    edges: Mapping[str, tuple[np.ndarray, np.ndarray, bool]],
    metrics: Sequence[str],
    seed: int,
    notes: list[str],
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, float]]]:
    """The per-feature tests of every feature from the merged sums, and their error bounds;
    the resampling of a tied KS is seeded by ``(seed, column)`` as in memory."""
    features: dict[str, dict[str, Any]] = {}
    bounds: dict[str, dict[str, float]] = {}
    for names in groups.values():
        for j, name in enumerate(names):
            coarse, fine, _ = edges[name]
            features[name], bounds[name] = binned_tests(
                samples[0][name],
                samples[1][name],
                ranges[0][name],
                ranges[1][name],
                coarse,
                fine,
                metrics,
                seed=[seed, j],
            )
            chi2 = features[name].get("chi2")
            if chi2 is not None and (note := chi2_note(name, chi2)):
                notes.append(note)
    return features, bounds


def _multivariate(
    sub: tuple[Table, Table],
    metrics: Sequence[str],
    notes: list[str],
    **kwargs: Any,
) -> ValidationResult | None:
    """The multivariate tests (and their baseline) by :func:`compare` on the subsample."""
    todo = [m for m in MULTIVARIATE_METRICS if m in metrics]
    if not todo:
        return None
    if min(sub[0].n, sub[1].n) == 0:
        notes.append("the subsample is empty: multivariate tests not run (raise --subsample)")
        return None
    try:
        res = compare(sub[0], sub[1], metrics=todo, allow_nonfinite=True, **kwargs)
    except InputError as exc:
        notes.append(f"multivariate tests not run on the subsample: {exc}")
        return None
    notes.extend(f"[subsample] {n}" for n in res.notes)
    return res


def _listing(files: Sequence[Any]) -> str:
    shown = ", ".join(str(f) for f in files[:3])
    return shown + (f", ... ({len(files)} files)" if len(files) > 3 else "")


def validate_partitioned(
    reference: Any,
    candidate: Any,
    output: str | Path,
    *,
    executor: Any = None,
    step_size: int = DEFAULT_STEP_SIZE,
    subsample: int = DEFAULT_SUBSAMPLE,
    seed: int = 0,
    features: Sequence[str] | None = None,
    weights: str | None = None,
    tree: str = "Events",
    metrics: Sequence[str] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    config: Any = None,
    baseline: bool = True,
    device: str = "auto",
    max_plots: int = 60,
    quiet: bool = False,
    allow_nonfinite: bool = False,
    alpha: float = DEFAULT_ALPHA,
    block: int = SEED_BLOCK,
    fine_edges: int = FINE_EDGES,
    style: str | None = None,
    units: Mapping[str, str] | None = None,
) -> tuple[ValidationResult, ReportFiles]:
    """Compare many candidate files with many reference files from mergeable statistics.

    Parameters
    ----------
    reference, candidate : path, glob, ``@list.txt`` or sequence of them
        ROOT files (:func:`hepgen.io.sources.resolve_files`); the features are chosen from
        the first file of each side (every file must have them).
    output : path
        Report directory (``report.html``, ``metrics.json``, ``plots/``), written atomically.
    executor : Executor or None
        Where the partitions run (:func:`hepgen.parallel.executor.executor`); None: here.
    step_size : int
        Entries per partition (rounded up to a multiple of ``block``); a task holds one.
    subsample : int
        Rows of each sample (entries; a collection's objects follow their events) kept for the
        multivariate tests and the plots, about: each entry is kept with probability
        ``subsample / entries``, seeded by ``(seed, file UUID, entry)``.
    seed : int
        Seeds the subsample, the baseline halves and every test (>= 0).
    features, weights, tree, metrics, options, baseline, device, max_plots, quiet,
    allow_nonfinite, alpha
        As :func:`~hepgen.validation.files.validate_files`.
    config : None
        Not supported over partitions (an error names the alternative).
    block : int
        Seed block (entries): partitions start at its multiples.
    fine_edges : int
        Fine reference-quantile bins for KS and W1 (the KS error bound falls as about
        ``1 / fine_edges``).
    style, units
        Plot style and axis units of the report
        (:func:`~hepgen.validation.report.write_report`).

    Returns
    -------
    result : ValidationResult
        With ``result.partitioned``: executor, partitions, subsample, error bounds.
    files : ReportFiles

    Raises
    ------
    InputError
        Bad settings or output folder (before any data is read), unreadable inputs, files
        that share no physics feature.

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np, awkward as ak
    >>> from hepgen.io.writer import write_events
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> rng = np.random.default_rng(0)
    >>> for name in ("r1", "r2", "c1"):
    ...     _ = write_events(d / f"{name}.root", ak.Array({"x": rng.normal(size=3000)}))
    >>> res, _ = validate_partitioned([d / "r1.root", d / "r2.root"], d / "c1.root", d / "rep",
    ...     step_size=1000, block=1000, subsample=1000, metrics=["ks", "chi2"], quiet=True)
    >>> res.n_reference, res.partitioned["n_partitions"], res.features["x"]["chi2"].pvalue > 1e-3
    (6000, {'reference': 6, 'candidate': 3}, True)
    """
    from hepgen.parallel.executor import Executor

    _check(subsample, seed, fine_edges, config)
    _check_options(max_plots, None, metrics, options, alpha)
    # the data-copying test and the Inception analogue need inputs this mode does not take
    default = [m for m in MULTIVARIATE_METRICS if m not in ("memorisation", "inception")]
    metrics = check_settings(
        list(metrics) if metrics is not None else [*PER_FEATURE_METRICS, *default],
        options,
        PER_FEATURE_METRICS + MULTIVARIATE_METRICS,
        alpha,
    )
    output = Path(output)
    job = _plan(reference, candidate, output, tree, step_size, block, features, weights)
    job.seed, job.subsample, job.n_fine = int(seed), int(subsample), int(fine_edges)
    ex = executor if executor is not None else Executor()
    _passes(job, ex, baseline, bool(features), quiet)
    result = _results(
        job,
        metrics,
        baseline,
        allow_nonfinite,
        ex,
        dict(options=options, device=device, quiet=quiet, alpha=alpha),
    )
    files = write_report(
        output,
        result,
        [s for s in job.sub.values() if min(s[0].n, s[1].n) >= 2],
        extra={"excluded": dict(job.excluded)} if job.excluded else {},
        inputs=_inputs(job, result, ex),
        max_plots=max_plots,
        quiet=quiet,
        **{k: v for k, v in (("style", style), ("units", units)) if v is not None},
    )
    return result, files


@dataclasses.dataclass
class _Job:
    """What a partitioned validation knows as it goes."""

    files: dict[str, list[Any]]
    tree: str
    weights: str | None
    block: int
    step: int
    plans: dict[str, list[Partition]]
    groups: dict[str, tuple[str, ...]]
    excluded: dict[str, str]
    notes: list[str]
    timings: dict[str, float]
    seed: int = 0
    subsample: int = DEFAULT_SUBSAMPLE
    n_fine: int = FINE_EDGES
    half: float = 0.0
    merged: dict[str, Any] = dataclasses.field(default_factory=dict)
    sums: dict[str, Any] = dataclasses.field(default_factory=dict)
    edges: dict[str, Any] = dataclasses.field(default_factory=dict)
    skipped: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    sub: dict[str, tuple[Table, Table]] = dataclasses.field(default_factory=dict)

    @property
    def entries(self) -> dict[str, int]:
        return {k: sum(p.entries for p in v) for k, v in self.plans.items()}

    @property
    def items(self) -> list[tuple[str, Partition]]:
        return [(label, p) for label in ("reference", "candidate") for p in self.plans[label]]

    @property
    def fractions(self) -> dict[str, float]:
        return {k: min(1.0, self.subsample / n) for k, n in self.entries.items()}

    @property
    def primary(self) -> str:
        return next(iter(self.groups))


def _plan(
    reference: Any,
    candidate: Any,
    output: Path,
    tree: str,
    step_size: int,
    block: int,
    features: Sequence[str] | None,
    weights: str | None,
) -> _Job:
    """Resolve the files, check the output, plan the partitions, choose the features."""
    t0 = time.perf_counter()
    files = {"reference": resolve_files(reference), "candidate": resolve_files(candidate)}
    check_report_dir(output, [f for v in files.values() for f in v if not is_url(f)])
    plans = {k: plan_partitions(v, tree, step_size, block) for k, v in files.items()}
    for label, parts in plans.items():
        if not sum(p.entries for p in parts):
            raise InputError(f"{label}: no events in tree '{tree}' of {_listing(files[label])}")
    groups, excluded, notes = _choose(
        files["reference"][0], files["candidate"][0], tree, features, weights
    )
    step = -(-int(step_size) // block) * block
    job = _Job(files, tree, weights, block, step, plans, groups, excluded, notes, {})
    job.timings["plan"] = time.perf_counter() - t0
    return job


def _passes(job: _Job, ex: Any, baseline: bool, named: bool, quiet: bool) -> None:
    """Pass 1 (ranges, subsample), the bins, pass 2 (histograms), into ``job``."""
    t0 = time.perf_counter()
    plans = {
        k: TaskPlan(k, job.groups, job.weights, job.seed, job.block, fraction=f)
        for k, f in job.fractions.items()
    }
    fn = functools.partial(pass1, plans=plans)
    job.merged = finish1(fold(ex, fn, job.items, merge1, {}, "pass 1", quiet))
    job.timings["pass1"] = time.perf_counter() - t0
    job.groups = screen(job.merged, job.groups, named, job.notes, job.skipped)
    job.edges = edges_of(job.merged, job.groups, job.n_fine)
    entries = job.entries
    job.half = min(0.5, entries["candidate"] / entries["reference"]) if baseline else 0.0
    t0 = time.perf_counter()
    plans = {
        k: TaskPlan(
            k,
            job.groups,
            job.weights,
            job.seed,
            job.block,
            half=job.half if k == "reference" else 0.0,
            edges=job.edges[k],
        )
        for k in plans
    }
    fn = functools.partial(pass2, plans=plans)
    state = {"reference": {}, "candidate": {}, "halves": None}
    job.sums = fold(ex, fn, job.items, merge2, state, "pass 2", quiet)
    job.timings["pass2"] = time.perf_counter() - t0
    job.sub = {
        g: tuple(job.merged[k]["subsample"][g].select_columns(n) for k in job.plans)
        for g, n in job.groups.items()
    }


def _results(
    job: _Job,
    metrics: list[str],
    baseline: bool,
    allow_nonfinite: bool,
    ex: Any,
    compare_options: dict[str, Any],
) -> ValidationResult:
    """The per-feature tests from the sums, the multivariate ones on the subsample, the
    baseline and the ``partitioned`` description, as one result."""
    seeds = [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(job.seed).spawn(12)]
    per_feature = [m for m in PER_FEATURE_METRICS if m in metrics]
    t0 = time.perf_counter()
    ranges = (job.merged["reference"]["ranges"], job.merged["candidate"]["ranges"])
    samples = (job.sums["reference"], job.sums["candidate"])
    feats, bounds = _per_feature(
        samples, ranges, job.groups, job.edges["reference"], per_feature, seeds[5], job.notes
    )
    job.timings["per_feature"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    mv = _multivariate(
        job.sub[job.primary],
        metrics,
        job.notes,
        baseline=baseline,
        seed=job.seed,
        **compare_options,
    )
    job.timings["multivariate"] = time.perf_counter() - t0
    result = _assemble(job, feats, mv, metrics, compare_options["alpha"])
    result.nonfinite = nonfinite_record(job.merged, job.groups, job.skipped, allow_nonfinite)
    if baseline and job.sums["halves"] is not None:
        result.baseline = _baseline(job, per_feature, seeds, mv)
        job.notes.append(
            "baseline: two disjoint seeded halves of the reference (each a fraction "
            f"{job.half:.3g} of its entries) on the same bins; the multivariate baseline "
            "splits the reference subsample"
        )
    result.partitioned = _description(job, ex, bounds)
    n_ref, n_cand = (t.n for t in job.sub[job.primary])
    job.notes.append(
        f"partitioned: per-feature tests from sums merged over {len(job.items)} partitions "
        f"(exact chi2 and separation power; KS and W1 from {job.n_fine} fine bins, exact KS "
        f"within {result.partitioned['max_ks_error_bound']:.3g}); the multivariate tests and "
        f"the plots use a seeded subsample ({n_ref} reference, {n_cand} candidate rows, "
        f"seed {job.seed})"
    )
    return result


def _inputs(job: _Job, result: ValidationResult, ex: Any) -> dict[str, str]:
    """What the top of the report page lists."""
    n_ref, n_cand = (t.n for t in job.sub[job.primary])
    inputs = {
        "reference": _listing(job.files["reference"]),
        "candidate": _listing(job.files["candidate"]),
        "tree": job.tree,
        "compared": f"{len(result.features)} features",
        "executor": ", ".join(f"{k} {v}" for k, v in ex.describe().items() if v is not None),
        "subsample": f"{n_ref} reference / {n_cand} candidate rows (seed {job.seed}) for the "
        "multivariate tests and the plots",
    }
    if job.weights:
        inputs["weights"] = job.weights
    if job.excluded:
        inputs["not compared (bookkeeping)"] = ", ".join(job.excluded)
    return inputs


def _assemble(
    job: _Job,
    features: dict[str, dict[str, Any]],
    mv: ValidationResult | None,
    metrics: list[str],
    alpha: float,
) -> ValidationResult:
    """The result of the candidate against the reference (the primary group's counts)."""
    ref = job.merged["reference"]["sums"][job.primary]
    cand = job.merged["candidate"]["sums"][job.primary]
    weighted = job.weights is not None
    result = ValidationResult(
        n_reference=ref.rows,
        n_candidate=cand.rows,
        weighted=weighted,
        feature_names=list(job.groups[job.primary]),
        n_eff_reference=ref.n_eff(weighted),
        n_eff_candidate=cand.n_eff(weighted),
        features=features,
        notes=job.notes,
        timings=job.timings,
        metrics=list(metrics),
        alpha=alpha,
    )
    if mv is not None:
        for key in MULTIVARIATE_METRICS:
            setattr(result, key, getattr(mv, key))
        for key, value in mv.timings.items():
            job.timings[f"subsample_{key}"] = value
    return result


def _baseline(
    job: _Job, per_feature: list[str], seeds: list[int], mv: ValidationResult | None
) -> ValidationResult:
    """The reference-vs-reference baseline: per-feature tests of the two seeded halves, and
    the multivariate baseline of the subsample comparison."""
    a, b = job.sums["halves"]
    weighted = job.weights is not None
    notes: list[str] = []
    features, _ = _per_feature(
        (a["binned"], b["binned"]),
        (a["ranges"], b["ranges"]),
        job.groups,
        job.edges["reference"],
        per_feature,
        seeds[11],
        notes,
    )
    ga, gb = a["sums"][job.primary], b["sums"][job.primary]
    out = ValidationResult(
        n_reference=ga.rows,
        n_candidate=gb.rows,
        weighted=weighted,
        feature_names=list(job.groups[job.primary]),
        n_eff_reference=ga.n_eff(weighted),
        n_eff_candidate=gb.n_eff(weighted),
        features=features,
        notes=notes,
    )
    base = mv.baseline if mv is not None else None
    if base is not None:
        for key in MULTIVARIATE_METRICS:
            setattr(out, key, getattr(base, key))
    return out


def _description(job: _Job, ex: Any, bounds: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The ``partitioned`` entry of ``metrics.json``."""
    ks = {n: b["ks"] for n, b in bounds.items() if "ks" in b}
    w1 = {n: b["w1"] for n, b in bounds.items() if "w1" in b}
    n_ref, n_cand = (t.n for t in job.sub[job.primary])
    return {
        "executor": ex.describe(),
        "step_size": job.step,
        "block": job.block,
        "n_files": {k: len(v) for k, v in job.files.items()},
        "n_partitions": {k: len(v) for k, v in job.plans.items()},
        "entries": job.entries,
        "subsample": {
            "seed": job.seed,
            "target": job.subsample,
            "group": job.primary,
            "fraction": job.fractions,
            "n_reference": n_ref,
            "n_candidate": n_cand,
            "what": "each entry kept when its uniform number, a function of (seed, file UUID, "
            "entry), is below the fraction: the same rows for any partitioning or cluster; "
            "the multivariate tests, their baseline and the plots use it",
        },
        "fine_edges": job.n_fine,
        "ks_error_bound": ks,
        "max_ks_error_bound": max(ks.values(), default=0.0),
        "w1_error_bound": w1,
    }
