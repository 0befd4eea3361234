"""Validate one ROOT file against another and write the report: what ``hepgen validate`` runs.

See :mod:`hepgen.validation.inputs` for how features are chosen and read, and
:func:`~hepgen.validation.compare.compare` for the metrics.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hepgen.errors import InputError
from hepgen.validation.compare import PER_FEATURE_METRICS, ValidationResult, compare
from hepgen.validation.inputs import load_branch_groups, load_config_pairs
from hepgen.validation.report import ReportFiles, write_report

__all__ = ["default_condition_bins", "validate_files"]


def default_condition_bins(config: Any, n_bins: int = 4) -> dict[str, int]:
    """Condition bins from a config: ``n_bins`` reference-quantile bins per condition feature
    (integer and categorical conditions with at most ``n_bins`` values get one bin per value);
    periodic conditions (phi) are left out, their bins say little about a detector response."""
    return {f.name: n_bins for f in config.schema.conditions if not f.periodic}


def validate_files(
    reference: str | Path,
    candidate: str | Path,
    output: str | Path,
    *,
    config: Any = None,
    features: Sequence[str] | None = None,
    weights: str | None = None,
    tree: str = "Events",
    max_events: int | None = None,
    condition_bins: Mapping[str, Any] | None = None,
    baseline: bool = True,
    metrics: Sequence[str] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    device: str = "auto",
    seed: int | None = 0,
    max_plots: int = 60,
    quiet: bool = False,
) -> tuple[ValidationResult, ReportFiles]:
    """Compare ``candidate`` with ``reference`` (ROOT files) and write a report to ``output``.

    Parameters
    ----------
    reference, candidate : path
        ROOT files (the candidate is typically the output of ``hepgen generate``).
    output : path
        Report directory (``report.html``, ``metrics.json``, ``plots/``).
    config : Config or None
        Compare the matched gen/reco pairs of this config (conditions and targets) instead of
        raw branches; conditional bins default to the config's conditions.
    features : sequence of str or None
        Branch names or glob patterns (default: every numeric branch in both files).
    weights : str or None
        Event-weight branch name (default: the config's ``data.weights``, else unweighted).
    tree : str
        Tree name (default: the config's ``data.tree``, else ``"Events"``).
    max_events : int or None
        Read at most this many events of each file.
    condition_bins : mapping or None
        ``{feature: edges or number of bins}``; see :func:`~hepgen.validation.compare.compare`.
    baseline : bool
        Add the reference-vs-reference baseline.
    metrics, options, device, seed
        Passed to :func:`~hepgen.validation.compare.compare`.
    max_plots : int
        Most feature histograms drawn.
    quiet : bool
        Silence progress bars.

    Returns
    -------
    result : ValidationResult
    files : ReportFiles
    """
    reference, candidate, output = Path(reference), Path(candidate), Path(output)
    for path in (reference, candidate):
        if output.resolve() == path.resolve():
            raise InputError(f"output directory '{output}' is an input file")
    extra: dict[str, Any] = {}
    t_read = time.perf_counter()
    if config is not None:
        if features:
            raise InputError("--features and --config exclude each other: the config's "
                             "conditions and targets are the features")
        if weights:
            config = config.model_copy(
                update={"data": config.data.model_copy(update={"weights": weights})}
            )
        group, objects = load_config_pairs(config, reference, candidate,
                                           max_events=max_events, quiet=quiet)
        groups = [group]
        extra["objects"] = objects
        if condition_bins is None:
            condition_bins = default_condition_bins(config)
        tree = config.data.tree
    else:
        groups = load_branch_groups(reference, candidate, tree=tree, features=features,
                                    weights=weights, max_events=max_events)
    t_read = time.perf_counter() - t_read
    primary = groups[0]
    if condition_bins:
        missing = [v for v in condition_bins if v not in primary.reference.names]
        if missing:
            raise InputError(
                f"condition-bins variable(s) {missing} are not features of the '{primary.name}' "
                f"group that the multivariate tests use (its features: {primary.reference.names})"
            )
    result = compare(
        primary.reference, primary.candidate, metrics=metrics, condition_bins=condition_bins,
        baseline=baseline, options=options, device=device, seed=seed, quiet=quiet,
    )
    result.notes[:0] = primary.notes
    result.timings = {"read": t_read, **result.timings}
    per_feature = [m for m in (metrics or PER_FEATURE_METRICS) if m in PER_FEATURE_METRICS]
    for group in groups[1:]:
        if not per_feature:
            break
        sub = compare(group.reference, group.candidate, metrics=per_feature, baseline=baseline,
                      device=device, seed=seed, quiet=True)
        result.features.update(sub.features)
        result.notes.extend(f"[{group.name}] {n}" for n in sub.notes)
        for key, value in sub.timings.items():
            result.timings[key] = result.timings.get(key, 0.0) + value
        if result.baseline is not None and sub.baseline is not None:
            result.baseline.features.update(sub.baseline.features)
    inputs = {"reference": str(reference), "candidate": str(candidate), "tree": tree,
              "compared": f"{len(result.features)} features"
              + (f" (matched pairs of config '{config.source}')" if config is not None else "")}
    if weights or (config is not None and config.data.weights):
        inputs["weights"] = weights or config.data.weights
    files = write_report(output, result, [(g.reference, g.candidate) for g in groups],
                         extra=extra, inputs=inputs, max_plots=max_plots, quiet=quiet)
    return result, files
