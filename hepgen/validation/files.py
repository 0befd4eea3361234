"""Validate one ROOT file against another and write the report: what ``hepgen validate`` runs.

See :mod:`hepgen.validation.inputs` for how features are chosen and read (bookkeeping
branches left out), :func:`~hepgen.validation.compare.compare` for the metrics and
:mod:`hepgen.validation.verdict` for the verdict and the non-finite policy.

The output folder is checked before any data is read (:func:`check_report_dir`) and the
report is written as a whole folder, swapped in at the end
(:func:`hepgen.utils.atomic_directory`): a reader, or a run killed half-way, sees the old
report or the new one, never a mix.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hepgen.errors import InputError
from hepgen.io.sources import is_url
from hepgen.validation.compare import (
    MULTIVARIATE_METRICS,
    PER_FEATURE_METRICS,
    ValidationResult,
    compare,
)
from hepgen.validation.inputs import (
    SampleGroup,
    load_branch_groups,
    load_config_pairs,
    load_train_table,
)
from hepgen.validation.report import REPORT_CONTENTS, ReportFiles, write_report
from hepgen.validation.samples import Table
from hepgen.validation.trainset import training_files
from hepgen.validation.verdict import DEFAULT_ALPHA, check_settings, merge_nonfinite

__all__ = ["check_report_dir", "default_condition_bins", "validate_files"]


def check_report_dir(output: str | Path, inputs: Sequence[str | Path] = ()) -> Path:
    """Check, before any work, that ``output`` can take a report folder.

    The report replaces the folder whole, so beyond the checks of
    :func:`hepgen.outputs.check_output_dir` (an existing file, an input, no permission) the
    folder must be new, empty or an earlier report (only :data:`REPORT_CONTENTS` and their
    hidden temporary files), and no input may lie inside it.

    Parameters
    ----------
    output : path
        The report folder.
    inputs : sequence of path
        Input files (ROOT files, config).

    Returns
    -------
    Path

    Raises
    ------
    InputError
        Naming the path and what was expected.
    """
    from hepgen.outputs import check_output_dir

    output = check_output_dir(output, inputs=inputs, contents=REPORT_CONTENTS, what="report folder")
    here = output.resolve()
    for item in inputs:
        path = Path(item).resolve()
        if here == path or here in path.parents:
            raise InputError(
                f"report folder '{output}' holds the input '{item}'; the report "
                "replaces the folder whole: choose another folder"
            )
    if output.is_dir():
        # besides the report, only temporary files of an earlier, interrupted report
        foreign = sorted(
            n
            for n in os.listdir(output)
            if n not in REPORT_CONTENTS
            and not n.startswith(tuple(f".{c}." for c in REPORT_CONTENTS))
        )
        if foreign:
            shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
            raise InputError(
                f"report folder '{output}' holds files that are not a hepgen report ({shown}); "
                "the report replaces the folder whole: choose a new or empty folder"
            )
    return output


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
    allow_nonfinite: bool = False,
    alpha: float = DEFAULT_ALPHA,
    tradeoff: Any = None,
    tradeoff_knob: str | None = None,
    tradeoff_values: Sequence[float | None] | None = None,
    train: str | Path | Sequence[str | Path] | None = None,
    model: Any = None,
    label: str | None = None,
    style: str | None = None,
    units: Mapping[str, str] | None = None,
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
        Most feature histograms drawn (>= 0).
    quiet : bool
        Silence progress bars.
    allow_nonfinite : bool
        Accept NaN/inf values (always counted, reported and left out of the tests).  Without
        it a sample holding any still gets its report, but ``result.failure`` says why the
        comparison fails (``hepgen validate`` exits 1) and the verdict is not PASS.
    alpha : float
        Significance level of the verdict.
    tradeoff : path, FastSim or None
        A fast simulation (its model directory, or a fitted :class:`~hepgen.FastSim`) whose
        fidelity/diversity trade-off the report shows: precision, recall, density and
        coverage of its samples at the reference's conditions for each value of
        ``tradeoff_knob`` (:func:`~hepgen.validation.tradeoff.sampling_tradeoff`), in
        ``metrics.json`` under ``tradeoff`` and in the section "Sampling trade-off".
        Config mode only; the model's conditions and targets must be the config's.  Seeded
        by ``seed`` (0 when None); timed as ``timings["tradeoff"]``.
    tradeoff_knob : {"truncation", "temperature"} or None
        Default: truncation for a GAN response, temperature for a flow or VAE.
    tradeoff_values : sequence of (float or None) or None
        Thresholds psi or temperatures T; ``None`` in it: as trained.  Default: see
        :func:`~hepgen.validation.tradeoff.default_tradeoff`.
    train : path, sequence of paths or None
        The generator's training file(s), read like the reference: the data-copying test
        (:func:`~hepgen.validation.memorisation.data_copying_test`) compares the candidate's
        and the reference's distances to its rows.  Default: the input files recorded in
        ``model``'s card, or in the card of the model named in the candidate's
        ``hepgen_metadata`` (``hepgen generate`` output) when that directory exists; a note
        says which.  Left out (with a note) when a training file is the reference itself.
    model : path, FastSim or None
        The fast simulation that made the candidate (config mode): the report gains its
        held-out log-likelihood on the reference
        (:func:`~hepgen.validation.likelihood.heldout_likelihood`; a VAE's IWAE bound,
        labelled as a bound), and its card names the training files.
    label : str or None
        Class feature of the Inception-score analogue
        (:func:`~hepgen.validation.inception.inception_score`).  Default with a config: its
        first categorical condition (e.g. the gen flavour), predicted from the reco features.
    style : {"CMS", "ATLAS", "LHCb", "ALICE"} or None
        Experiment style of the plots (mplhep); None: neutral.
    units : mapping of str to str or None
        Units of features for axis labels (``{"Jet_pt": "GeV"}``), over the units inferred
        from the names.

    Returns
    -------
    result : ValidationResult
        ``result.verdict()`` is the headline, ``result.failure`` the reason to fail or None.
    files : ReportFiles

    Raises
    ------
    InputError
        Bad settings or output folder (before any data is read), unreadable inputs, files
        that share no physics feature, a trade-off without a config or with a model of
        other conditions or targets.
    """
    # a URL stays a string (uproot reads it); a Path would merge the '//' of 'https://'
    reference, candidate = (p if is_url(p) else Path(p) for p in (reference, candidate))
    output = Path(output)
    _check_options(max_plots, max_events, metrics, options, alpha)
    from hepgen.validation.report.style import check_style

    check_style(style)  # before any work
    sources = [reference, candidate]
    if config is not None and getattr(config, "source", None):
        sources.append(Path(config.source))
    check_report_dir(output, sources)
    sweep = _tradeoff_setup(tradeoff, tradeoff_knob, tradeoff_values, config, device)
    sim = _model_setup(model, config, device)
    train_files, train_notes = training_files(train, model, candidate, reference)
    t_read = time.perf_counter()
    groups, extra, config, condition_bins, tree = _read(
        reference,
        candidate,
        config=config,
        features=features,
        weights=weights,
        tree=tree,
        max_events=max_events,
        condition_bins=condition_bins,
        quiet=quiet,
    )
    primary = groups[0]
    train_table = None
    if train_files:  # read like the reference (config mode: the config's pairs and weights)
        names = primary.reference.names
        train_table = load_train_table(
            train_files,
            names,
            config=config,
            tree=tree,
            weights=weights,
            max_events=max_events,
            quiet=quiet,
        )
    t_read = time.perf_counter() - t_read
    _check_condition_bins(primary, condition_bins)
    label, label_inputs = _label(label, config, primary)
    result = _compare_groups(
        groups,
        train=train_table,
        label=label,
        label_inputs=label_inputs,
        metrics=metrics,
        condition_bins=condition_bins,
        baseline=baseline,
        options=options,
        device=device,
        seed=seed,
        quiet=quiet,
        allow_nonfinite=allow_nonfinite,
        alpha=alpha,
    )
    result.timings = {"read": t_read, **result.timings}
    result.notes.extend(train_notes)
    if sweep is not None:
        extra["tradeoff"] = _run_tradeoff(sweep, primary, result, seed, device)
    if sim is not None:
        extra["likelihood"] = _run_likelihood(sim, model, primary, result, seed)
    if primary.excluded:
        extra["excluded"] = dict(primary.excluded)
    inputs = _report_inputs(reference, candidate, tree, result, config, weights, primary)
    files = write_report(
        output,
        result,
        [(g.reference, g.candidate) for g in groups],
        extra=extra,
        inputs=inputs,
        max_plots=max_plots,
        quiet=quiet,
        **{k: v for k, v in (("style", style), ("units", units)) if v is not None},
    )
    return result, files


def _model_setup(model: Any, config: Any, device: str) -> Any:
    """The fast simulation whose held-out likelihood the report shows (loaded before any
    data is read), or None."""
    if model is None:
        return None
    if config is None:
        raise InputError(
            "the held-out likelihood (--model) needs --config: the model is evaluated on the "
            "config's matched pairs"
        )
    if hasattr(model, "sample") and hasattr(model, "config"):
        sim = model
    else:
        from hepgen.modeldir import FASTSIM_KINDS, load_model

        sim = load_model(model, device=device, accept=FASTSIM_KINDS, command="validate")
    _check_model_features(sim, config, "the model (--model)")
    return sim


def _label(
    label: str | None, config: Any, primary: SampleGroup
) -> tuple[str | None, list[str] | None]:
    """The Inception analogue's class feature and its classifier's inputs: as given, or the
    config's first categorical condition predicted from the targets and responses."""
    names = primary.reference.names
    if label is not None:
        if label not in names:
            from hepgen.errors import did_you_mean

            raise InputError(
                f"--label '{label}': not a compared feature" + did_you_mean(label, names)
            )
        if config is None:
            return label, None
    if config is None:
        return None, None
    conditions = [f.name for f in config.schema.conditions]
    if label is None:
        label = next((f.name for f in config.schema.conditions if f.kind == "categorical"), None)
        if label is None:
            return None, None
    return label, [n for n in names if n not in conditions]


def _run_likelihood(
    sim: Any, model: Any, primary: SampleGroup, result: ValidationResult, seed: int | None
) -> dict[str, Any]:
    """The held-out log-likelihood of ``sim`` on the reference's pairs (timed), as JSON."""
    from hepgen.validation.likelihood import heldout_likelihood

    t0 = time.perf_counter()
    name = str(model) if not hasattr(model, "sample") else None
    found = heldout_likelihood(sim, primary.reference, seed=0 if seed is None else seed, model=name)
    result.timings["likelihood"] = time.perf_counter() - t0
    return found.to_dict()


def _check_model_features(sim: Any, config: Any, what: str) -> None:
    """Refuse a model whose conditions or targets are not the config's (before any data is
    read), naming the difference."""
    for role, have, want in (
        ("conditions", list(sim.condition_names), [f.name for f in config.schema.conditions]),
        ("targets", list(sim.target_names), [f.name for f in config.schema.targets]),
    ):
        if have != want:
            extra_ = [n for n in have if n not in want]
            missing = [n for n in want if n not in have]
            diff = "; ".join(
                [f"only the model has {extra_}"] * bool(extra_)
                + [f"only the config has {missing}"] * bool(missing)
            )
            raise InputError(
                f"{what}'s {role} {have} are not the config's {want} "
                f"({diff or 'the same names in another order'}): "
                "give the model trained with this config"
            )


def _tradeoff_setup(
    tradeoff: Any, knob: str | None, values: Any, config: Any, device: str
) -> tuple[Any, str, list[float | None]] | None:
    """The fast simulation, knob and values of the trade-off, checked before any data is
    read; ``None`` without a trade-off."""
    if tradeoff is None:
        if knob is not None or values is not None:
            raise InputError(
                "tradeoff_knob/tradeoff_values (--tradeoff-knob/--tradeoff-values) need a "
                "model to sample (tradeoff, --tradeoff MODEL_DIR)"
            )
        return None
    if config is None:
        raise InputError(
            "the sampling trade-off (--tradeoff) needs --config: the model is sampled at the "
            "conditions of the config's matched pairs"
        )
    from hepgen.modeldir import FASTSIM_KINDS, load_model
    from hepgen.validation.tradeoff import default_tradeoff

    sim = (
        tradeoff
        if hasattr(tradeoff, "sample") and hasattr(tradeoff, "config")
        else load_model(tradeoff, device=device, accept=FASTSIM_KINDS, command="validate")
    )
    _check_model_features(sim, config, "the trade-off model")
    knob, values = default_tradeoff(str(sim.config.model.kind), knob, values)
    return sim, knob, values


def _run_tradeoff(
    sweep: tuple[Any, str, list[float | None]],
    primary: SampleGroup,
    result: ValidationResult,
    seed: int | None,
    device: str,
) -> dict[str, Any]:
    """The trade-off on the reference's matched pairs (timed in ``result.timings``), as
    plain JSON."""
    from hepgen.validation.tradeoff import sampling_tradeoff

    sim, knob, values = sweep
    t0 = time.perf_counter()
    found = sampling_tradeoff(
        sim, primary.reference, knob, values, seed=0 if seed is None else seed, device=device
    )
    result.timings["tradeoff"] = time.perf_counter() - t0
    return found.to_dict()


def _read(
    reference: str | Path,
    candidate: str | Path,
    *,
    config: Any,
    features: Sequence[str] | None,
    weights: str | None,
    tree: str,
    max_events: int | None,
    condition_bins: Mapping[str, Any] | None,
    quiet: bool,
) -> tuple[list[SampleGroup], dict[str, Any], Any, Mapping[str, Any] | None, str]:
    """Read the compared features of both files, by config or by branch.

    Returns
    -------
    groups : list of SampleGroup
        The primary group first.
    extra : dict
        More keys of ``metrics.json`` (``objects``: efficiency and fake fraction, config mode).
    config : Config or None
        The config, with ``data.weights`` replaced by ``weights`` when given.
    condition_bins : mapping or None
        As given, or the config's conditions (config mode).
    tree : str
        The tree read.
    """
    extra: dict[str, Any] = {}
    if config is None:
        groups = load_branch_groups(
            reference,
            candidate,
            tree=tree,
            features=features,
            weights=weights,
            max_events=max_events,
        )
        return groups, extra, config, condition_bins, tree
    if features:
        raise InputError(
            "--features and --config exclude each other: the config's "
            "conditions and targets are the features"
        )
    if weights:
        config = config.model_copy(
            update={"data": config.data.model_copy(update={"weights": weights})}
        )
    group, extra["objects"] = load_config_pairs(
        config, reference, candidate, max_events=max_events, quiet=quiet
    )
    if condition_bins is None:
        condition_bins = default_condition_bins(config)
    return [group], extra, config, condition_bins, config.data.tree


def _report_inputs(
    reference: str | Path,
    candidate: str | Path,
    tree: str,
    result: ValidationResult,
    config: Any,
    weights: str | None,
    primary: SampleGroup,
) -> dict[str, str]:
    """What the top of the report page lists: files, tree, what was compared, weights."""
    inputs = {
        "reference": str(reference),
        "candidate": str(candidate),
        "tree": tree,
        "compared": f"{len(result.features)} features"
        + (f" (matched pairs of config '{config.source}')" if config is not None else ""),
    }
    weight_branch = weights or (config.data.weights if config is not None else None)
    if weight_branch:
        inputs["weights"] = weight_branch
    if primary.excluded:
        inputs["not compared (bookkeeping)"] = ", ".join(primary.excluded)
    return inputs


def _check_options(
    max_plots: Any,
    max_events: Any,
    metrics: Sequence[str] | None,
    options: Mapping[str, Mapping[str, Any]] | None,
    alpha: float,
) -> None:
    """Refuse bad settings before any data is read (``compare`` checks them again)."""
    if isinstance(max_plots, bool) or int(max_plots) != max_plots or max_plots < 0:
        raise InputError(f"max_plots (--max-plots) must be an integer >= 0, got {max_plots!r}")
    if max_events is not None and (
        isinstance(max_events, bool) or int(max_events) != max_events or max_events < 1
    ):
        raise InputError(f"max_events (--max-events) must be an integer >= 1, got {max_events!r}")
    check_settings(
        metrics if metrics is not None else PER_FEATURE_METRICS,
        options,
        PER_FEATURE_METRICS + MULTIVARIATE_METRICS,
        alpha,
    )


def _check_condition_bins(primary: SampleGroup, condition_bins: Mapping[str, Any] | None) -> None:
    """Every condition-bins variable must be a feature of the primary group."""
    if not condition_bins:
        return
    missing = [v for v in condition_bins if v not in primary.reference.names]
    if missing:
        raise InputError(
            f"condition-bins variable(s) {missing} are not features of the '{primary.name}' "
            f"group that the multivariate tests use (its features: {primary.reference.names})"
        )


def _compare_groups(
    groups: Sequence[SampleGroup],
    *,
    metrics: Sequence[str] | None,
    condition_bins: Mapping[str, Any] | None,
    baseline: bool,
    options: Mapping[str, Mapping[str, Any]] | None,
    device: str,
    seed: int | None,
    quiet: bool,
    allow_nonfinite: bool,
    alpha: float,
    train: Table | None = None,
    label: str | None = None,
    label_inputs: Sequence[str] | None = None,
) -> ValidationResult:
    """Compare the primary group on every metric and the other groups on the per-feature
    metrics, merged into one result with the primary group's notes and skipped branches."""
    primary = groups[0]
    result = compare(
        primary.reference,
        primary.candidate,
        train=train,
        label=label,
        label_inputs=label_inputs,
        metrics=metrics,
        condition_bins=condition_bins,
        baseline=baseline,
        options=options,
        device=device,
        seed=seed,
        quiet=quiet,
        allow_nonfinite=allow_nonfinite,
        alpha=alpha,
    )
    result.notes[:0] = primary.notes
    per_feature = [m for m in (metrics or PER_FEATURE_METRICS) if m in PER_FEATURE_METRICS]
    for group in groups[1:]:
        if not per_feature:
            break
        sub = compare(
            group.reference,
            group.candidate,
            metrics=per_feature,
            baseline=baseline,
            device=device,
            seed=seed,
            quiet=True,
            allow_nonfinite=allow_nonfinite,
        )
        result.features.update(sub.features)
        result.nonfinite["features"].update(sub.nonfinite.get("features") or {})
        result.notes.extend(f"[{group.name}] {n}" for n in sub.notes)
        for key, value in sub.timings.items():
            result.timings[key] = result.timings.get(key, 0.0) + value
        if result.baseline is not None and sub.baseline is not None:
            result.baseline.features.update(sub.baseline.features)
    skipped = primary.skipped_nonfinite
    merge_nonfinite(
        result.nonfinite, skipped.get("reference") or {}, skipped.get("candidate") or {}
    )
    return result
