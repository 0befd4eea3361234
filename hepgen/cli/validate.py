"""The ``validate`` command: options to :func:`~hepgen.validation.files.validate_files` (or its
partitioned form) and the lines it prints."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from hepgen.errors import InputError

__all__ = ["cmd_validate"]


def cmd_validate(args: argparse.Namespace) -> int:
    from hepgen.errors import ValidationFailed
    from hepgen.validation.compare import parse_condition_bins
    from hepgen.validation.files import validate_files
    from hepgen.validation.verdict import nonfinite_failure

    if args.max_events is not None and args.max_events < 1:
        raise InputError(f"--max-events must be positive, got {args.max_events}")
    if args.c2st_repeats < 1:
        raise InputError(f"--c2st-repeats must be >= 1, got {args.c2st_repeats}")
    if args.max_plots < 0:
        raise InputError(f"--max-plots must be >= 0, got {args.max_plots}")
    if args.metrics is not None:
        from hepgen.validation.compare import MULTIVARIATE_METRICS, PER_FEATURE_METRICS

        known = PER_FEATURE_METRICS + MULTIVARIATE_METRICS
        unknown = [m for m in args.metrics if m not in known]
        if unknown or not args.metrics:
            raise InputError(f"--metrics: unknown metric(s) {unknown}; choose from {list(known)}")
    if not 0.0 < args.alpha < 1.0:
        raise InputError(f"--alpha must be strictly between 0 and 1, got {args.alpha}")
    tradeoff: dict[str, Any] = {}
    if args.tradeoff is not None or args.tradeoff_knob or args.tradeoff_values is not None:
        from hepgen.validation.tradeoff import parse_tradeoff_values

        if args.tradeoff is None:
            raise InputError("--tradeoff-knob/--tradeoff-values need --tradeoff MODEL_DIR")
        if args.config is None:
            raise InputError(
                "--tradeoff needs --config: the model is sampled at the conditions of the "
                "config's matched pairs"
            )
        tradeoff = {
            "tradeoff": args.tradeoff,
            "tradeoff_knob": args.tradeoff_knob,
            "tradeoff_values": (
                None
                if args.tradeoff_values is None
                else parse_tradeoff_values(args.tradeoff_values)
            ),
        }
    if args.model is not None and args.config is None:
        raise InputError(
            "--model needs --config: the held-out likelihood is evaluated on the config's "
            "matched pairs"
        )
    config = None
    if args.config is not None:
        from hepgen.config import load_config

        config = load_config(args.config)
    bins = parse_condition_bins(args.condition_bins) if args.condition_bins else None
    model_options = {
        "train": args.train,
        "model": args.model,
        "label": args.label,
        "style": args.style,
        "units": _parse_units(args.units),
    }
    options = {"c2st": {"n_repeats": args.c2st_repeats}} if args.c2st_repeats != 1 else None
    start = time.perf_counter()
    common = {
        "features": args.features,
        "weights": args.weights,
        "tree": args.tree,
        "baseline": args.baseline,
        "metrics": args.metrics,
        "options": options,
        "device": args.device,
        "seed": args.seed,
        "max_plots": args.max_plots,
        "quiet": args.quiet,
        "allow_nonfinite": args.allow_nonfinite,
        "alpha": args.alpha,
    }
    if _partitioned(args):
        result, files = _validate_partitioned(args, common)
    else:
        result, files = validate_files(
            args.reference,
            args.candidate,
            args.output,
            config=config,
            max_events=args.max_events,
            condition_bins=bins,
            **tradeoff,
            **model_options,
            **common,
        )
    verdict = result.verdict()
    lines = _validate_lines(result, files, verdict, time.perf_counter() - start, args)
    if tradeoff:
        t = json.loads(Path(files.metrics).read_text())["tradeoff"]
        shown = ", ".join("none" if v is None else f"{v:g}" for v in t["values"])
        lines.append(
            f"sampling trade-off ({t['knob']} {shown}): precision "
            + " ".join(f"{v:.3f}" for v in t["precision"])
            + ", recall "
            + " ".join(f"{v:.3f}" for v in t["recall"])
            + f" (reference vs reference {t['baseline']['precision']:.3f}, "
            f"{t['baseline']['recall']:.3f})"
        )
    print("\n".join(lines), flush=True)  # the command's output: never silenced by --quiet
    failure = nonfinite_failure(result.nonfinite, "--allow-nonfinite")
    if failure:
        raise ValidationFailed(failure)
    if args.fail_on_different and verdict["verdict"] == "DIFFERENT":
        raise ValidationFailed(f"verdict DIFFERENT (--fail-on-different): {verdict['reasons'][0]}")
    return 0


def _parse_units(specs: list[str] | None) -> dict[str, str] | None:
    """``--units NAME=UNIT ...`` as a mapping (None when not given)."""
    if not specs:
        return None
    out = {}
    for spec in specs:
        name, sep, unit = spec.partition("=")
        if not sep or not name.strip():
            raise InputError(f"--units '{spec}': expected NAME=UNIT, e.g. Jet_pt=GeV")
        out[name.strip()] = unit.strip()
    return out


def _partitioned(args: argparse.Namespace) -> bool:
    """Validate in partitioned mode: asked for by an executor or partition option, or many
    files on a side without an option that needs the in-memory mode."""
    from hepgen.io.sources import resolve_files

    asked = [
        name
        for name, value in (
            ("--workers", args.workers),
            ("--scheduler", args.scheduler),
            ("--step-size", args.step_size),
            ("--subsample", args.subsample),
        )
        if value is not None
    ]
    in_memory = [
        option
        for option, value in (
            ("--config", args.config),
            ("--condition-bins", args.condition_bins),
            ("--max-events", args.max_events),
            ("--train", args.train),
            ("--model", args.model),
            ("--label", args.label),
        )
        if value is not None
    ]
    if in_memory and asked:
        raise InputError(
            f"{in_memory[0]} is not available in partitioned mode ({', '.join(asked)}): "
            "leave it out, or validate in memory without the partitioned options"
        )
    many = len(resolve_files(args.reference)) > 1 or len(resolve_files(args.candidate)) > 1
    if not asked and (in_memory or not many):
        return False  # in memory, as before (many files with --config are read into memory)
    for option, value in (
        ("--workers", args.workers),
        ("--step-size", args.step_size),
        ("--subsample", args.subsample),
    ):
        if value is not None and value < 1:
            raise InputError(f"{option} must be a positive integer, got {value}")
    if not 0 <= args.seed < 2**63:
        raise InputError(f"--seed must be an integer with 0 <= seed < 2**63, got {args.seed}")
    return True


def _validate_partitioned(args: argparse.Namespace, common: dict[str, Any]) -> Any:
    """``validate_partitioned`` on the executor of the options (``common``: the arguments it
    shares with ``validate_files``)."""
    from hepgen.parallel import executor
    from hepgen.validation.partitioned import validate_partitioned

    optional = {
        k: v
        for k, v in (("step_size", args.step_size), ("subsample", args.subsample))
        if v is not None
    }
    optional.update(
        {k: v for k, v in (("style", args.style), ("units", _parse_units(args.units))) if v}
    )
    with executor(workers=args.workers, scheduler=args.scheduler, quiet=args.quiet) as ex:
        return validate_partitioned(
            args.reference, args.candidate, args.output, executor=ex, **common, **optional
        )


def _validate_lines(
    result: Any, files: Any, verdict: dict[str, Any], seconds: float, args: argparse.Namespace
) -> list[str]:
    """The lines ``hepgen validate`` prints: sizes, non-finite counts, headline tests, the
    report and the verdict."""
    s = result.summary()
    lines = [
        f"compared {result.n_reference} reference and {result.n_candidate} candidate rows, "
        f"{len(result.features)} features, in {seconds:.1f} s"
    ]
    total = (result.nonfinite or {}).get("total") or {}
    if any(total.values()):
        lines.append(
            f"  NON-FINITE values (NaN/inf): {total.get('reference', 0)} in the "
            f"reference, {total.get('candidate', 0)} in the candidate, in "
            f"{len(result.nonfinite['features'])} feature(s)"
            + (" (allowed, left out of the tests)" if args.allow_nonfinite else "")
        )
    part = getattr(result, "partitioned", None)
    if part:
        n_parts = sum(part["n_partitions"].values())
        sub = part["subsample"]
        bound = max(part.get("ks_error_bound", {}).values(), default=0.0)
        lines.append(
            f"  partitioned: {n_parts} partitions on {part['executor']['kind']} "
            f"({part['executor']['workers']} worker(s)); multivariate tests and plots on a "
            f"subsample of {sub['n_reference']} / {sub['n_candidate']} rows (seed "
            f"{sub['seed']}); binned KS statistics within {bound:.2g} of the exact ones"
        )
    if s["c2st_auc"] is not None:
        base = result.baseline.summary()["c2st_auc"] if result.baseline is not None else None
        lines.append(
            f"  classifier AUC {s['c2st_auc']:.4f}"
            + (f" (reference vs reference {base:.4f})" if base is not None else "")
        )
    if s["max_ks"] is not None:
        lines.append(f"  largest KS statistic {s['max_ks']:.4f} ({s['max_ks_feature']})")
    holm = s.get("n_rejected_holm")
    lines.append(
        f"  per-feature p-values below 0.05: {s['n_pvalues_below_0.05']} of {s['n_pvalues']}"
        + (
            f" ({s['expected_below_0.05']:.1f} expected by chance; {holm} after Holm)"
            if holm is not None
            else ""
        )
    )
    lines.extend(_new_metric_lines(result, files))
    lines.append(f"report: {files.html}")
    lines.append(f"verdict: {verdict['verdict']} ({'; '.join(verdict['reasons'])})")
    return lines


def _new_metric_lines(result: Any, files: Any) -> list[str]:
    """``validate``'s lines for PRD, NDB, the data-copying test, the Inception analogue and
    the held-out likelihood, each beside its reference-vs-reference value where there is one."""
    base = result.baseline
    lines = []

    def b(key: str, fmt: Any) -> str:
        other = getattr(base, key, None) if base is not None else None
        return f" (reference vs reference {fmt(other)})" if other is not None else ""

    if result.prd is not None:
        p = result.prd
        lines.append(
            f"  PRD F8/F1/8 {p.f_8:.3f}/{p.f_1_8:.3f}, p {p.pvalue:.2g}"
            + b("prd", lambda o: f"{o.f_8:.3f}/{o.f_1_8:.3f}")
        )
    if result.ndb is not None:
        n = result.ndb
        lines.append(
            f"  NDB {n.ndb} of {n.k} bins differ ({n.expected:.1f} expected by chance), "
            f"p {n.pvalue:.2g}" + b("ndb", lambda o: f"{o.ndb} of {o.k}")
        )
    if result.memorisation is not None:
        m = result.memorisation
        lines.append(
            f"  data-copying test C_T {m.statistic:.2f}, p {m.pvalue:.2g} (negative: generated "
            "rows closer to the training sample than held-out ones)"
        )
    if result.inception is not None:
        i = result.inception
        lines.append(
            f"  Inception-score analogue {i.inception_score_candidate:.3f} (reference "
            f"{i.inception_score_reference:.3f}), class-confusion p {i.pvalue:.2g}"
        )
    like = json.loads(Path(files.metrics).read_text()).get("likelihood")
    if like and like.get("total"):
        t = like["total"]
        bound = "" if like.get("exact") else f" ({like['method']}: a lower bound)"
        lines.append(
            f"  held-out log-likelihood {t['mean']:.4f} +- {t['stderr']:.4f} nats per object{bound}"
        )
    return lines
