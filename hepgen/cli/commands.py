"""The ``hepgen`` commands: each reads its arguments, calls the Python API and prints the
results (errors are raised as :class:`~hepgen.errors.HepgenError` and reported by
:func:`hepgen.cli.main`)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from hepgen.cli.validate import cmd_validate
from hepgen.errors import InputError

__all__ = ["COMMANDS"]


def _print(args: argparse.Namespace, *text: Any, chatter: bool = False) -> None:
    """Print a command's output to stdout; ``chatter=True`` lines are silenced by --quiet.

    A command's results (what it found, what it wrote where, headline numbers) are output and
    always printed; only chatter about work in progress is silenced (see the module docstring).
    """
    if not (chatter and args.quiet):
        print(*text, flush=True)


def _cmd_simulate(args: argparse.Namespace) -> int:
    from hepgen.outputs import check_output_file
    from hepgen.sim import simulate_to_file

    if args.events < 1:
        raise InputError(f"-n/--events must be positive, got {args.events}")
    check_output_file(args.output, overwrite=args.overwrite)
    start = time.perf_counter()
    path = simulate_to_file(
        args.output,
        process=args.process,
        n_events=args.events,
        seed=args.seed,
        chunk_size=args.chunk_size,
        quiet=args.quiet,
        **dict(args.options),
    )
    _print(
        args,
        f"wrote {args.events} {args.process} events to {path} "
        f"in {time.perf_counter() - start:.1f} s",
    )
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from hepgen.summary import format_summary, summarise_files

    if args.step_size < 1:
        raise InputError(f"--step-size must be positive, got {args.step_size}")
    if args.json:
        from hepgen.outputs import check_output_file

        check_output_file(args.json, inputs=args.files, overwrite=True, what="JSON summary")
    summary = summarise_files(args.files, args.branches, args.tree, args.step_size, args.quiet)
    if args.json:
        from hepgen.utils import write_json

        write_json(args.json, summary)
    _print(args, format_summary(summary))
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    from hepgen.config import load_config
    from hepgen.outputs import check_output_dir
    from hepgen.prepare import prepare

    config = load_config(args.config)
    check_output_dir(
        args.output,
        inputs=[args.config, *(args.files or config.input_files())],
        contents=("preprocessing.json", "summary.json"),
    )
    if args.drop_nonfinite:
        config = config.override({"data.nonfinite": "drop"})
    summary = prepare(config, args.output, files=args.files, quiet=args.quiet)
    _print(args, json.dumps(summary["data"], indent=2))
    _print(args, f"outputs in {args.output}")
    return 0


def _check_seed_and_device(args: argparse.Namespace) -> None:
    """``--seed`` in [0, 2**63) and a ``--device cuda`` that torch sees, before any data is
    read (train, scan, generate, score, demo; a command without the option skips its check)."""
    seed = getattr(args, "seed", None)
    if seed is not None and not 0 <= seed < 2**63:
        raise InputError(f"--seed must be an integer with 0 <= seed < 2**63, got {seed}")
    device = getattr(args, "device", None)
    onnx = getattr(args, "backend", "torch") == "onnx"  # onnxruntime checks its own devices
    if device is not None and device.startswith("cuda") and not onnx:
        from hepgen.devices import resolve_device

        resolve_device(args.device)


def _cmd_train(args: argparse.Namespace) -> int:
    from hepgen.config import load_config
    from hepgen.fastsim import FastSim
    from hepgen.modeldir import MODEL_FILE
    from hepgen.outputs import check_output_dir
    from hepgen.training.distributed import env_rank

    if env_rank() != 0:  # under torchrun: rank 0 alone shows progress and results
        import logging

        args.quiet = True
        logging.getLogger().setLevel(logging.WARNING)
    _check_seed_and_device(args)
    if args.max_epochs is not None and args.max_epochs < 1:
        raise InputError(f"--max-epochs must be positive, got {args.max_epochs}")
    overrides = list(args.overrides)
    for key, value in (
        ("training.max_epochs", args.max_epochs),
        ("training.device", args.device),
        ("seed", args.seed),
    ):
        if value is not None:
            overrides.append((key, value))
    config = load_config(args.config, overrides)
    out = args.output
    check_output_dir(
        out, inputs=[args.config, *(args.files or config.input_files())], what="model directory"
    )
    if (out / MODEL_FILE).exists() and not (args.resume or args.overwrite):
        raise InputError(
            f"'{out}' already holds a model; use --resume to continue its "
            "training, --overwrite to replace it, or another directory"
        )
    if args.devices != 1:  # the same command on N processes, under torchrun
        from hepgen.cli.launch import launch_train

        return launch_train(args, config)
    start = time.perf_counter()
    sim = FastSim(config, device=config.training.device).fit(
        files=args.files, output=out, resume=args.resume, quiet=args.quiet
    )
    r = sim.training_
    if env_rank() != 0:
        return 0
    last = r.history[-1] if r.history else {}
    _print(
        args,
        f"trained in {time.perf_counter() - start:.0f} s: {len(r.history)} epochs "
        f"({r.stopped}); kept epoch {r.selected_epoch} (by {r.selection}); "
        f"validation loss {last.get('val_loss', float('nan')):.4f}",
    )
    _print(args, f"model: {out}")
    return 0


def _check_model_directory(path: Path) -> None:
    """A missing model directory or a file given as one, named (before anything is read)."""
    if not path.exists():
        raise InputError(f"model directory '{path}' does not exist")
    if not path.is_dir():
        raise InputError(
            f"'{path}' is a file; expected a model directory (holding hepgen-model.json)"
        )


def _check_model_job(args: argparse.Namespace, step_option: str, step: int) -> None:
    """The checks of ``generate`` and ``score`` before any work: the model directory, seed and
    device, the partition size, the executor, and local outputs that may be written (not an
    input); sets ``args.output_layout`` to the layout used."""
    from hepgen.io.writer import check_local_output
    from hepgen.outputs import check_output_dir, check_output_file
    from hepgen.parallel import MANIFEST

    _check_model_directory(args.model)
    _check_seed_and_device(args)
    if step < 1:
        raise InputError(f"{step_option} must be positive, got {step}")
    if args.workers is not None and args.workers < 1:
        raise InputError(f"--workers must be a positive number of processes, got {args.workers}")
    if args.seed_block < 1:
        raise InputError(
            f"--seed-block must be a positive number of entries, got {args.seed_block}"
        )
    single = args.output.suffix == ".root"
    args.output_layout = args.output_layout or ("single" if single else "per-file")
    check_local_output(args.output)
    if args.output_layout == "single":
        check_output_file(args.output, inputs=args.input, overwrite=args.overwrite)
    else:
        check_output_dir(
            args.output,
            inputs=args.input,
            overwrite=args.overwrite,
            contents=(MANIFEST,),
            what="output folder",
        )


def _production_args(args: argparse.Namespace) -> dict[str, Any]:
    """The arguments that ``generate_file`` and ``score_file`` share: tree, device, progress,
    output format and layout, executor, seed block."""
    return {
        "tree": args.tree,
        "device": args.device,
        "quiet": args.quiet,
        "output_format": args.output_format,
        "layout": args.output_layout,
        "workers": args.workers,
        "scheduler": args.scheduler,
        "block": args.seed_block,
    }


def _print_outputs(args: argparse.Namespace, stats: dict[str, Any]) -> None:
    """Where a production's outputs are."""
    if stats["output_layout"] == "single":
        _print(args, f"output: {stats['output']}")
        return
    manifest = stats["manifest"]
    _print(
        args,
        f"outputs: {len(manifest['outputs'])} files in {stats['output']} "
        f"({manifest['partitions']} partitions on {manifest['executor']['kind']}); manifest: "
        f"{Path(stats['output']) / 'manifest.json'}",
    )


def _cmd_generate(args: argparse.Namespace) -> int:
    from hepgen.generate import generate_file

    _check_model_job(args, "--batch-size", args.batch_size)
    stats = generate_file(
        args.model,
        args.input,
        args.output,
        step_size=args.batch_size,
        seed=args.seed,
        oversample=args.oversample,
        keep_full_sim=not args.drop_full_sim,
        backend=args.backend,
        engine=args.engine,
        precision=args.precision,
        temperature=args.temperature,
        truncation=args.truncation,
        **_production_args(args),
    )
    draws = f" x {args.oversample} draws" if args.oversample > 1 else ""
    if stats.get("layout", "collections") == "collections":
        _print(
            args,
            f"generated {stats['reco_objects']} reco objects ({stats['fakes']} fakes) for "
            f"{stats['gen_objects']} gen objects in {stats['events']} events{draws} in "
            f"{stats['seconds']:.1f} s ({stats['gen_objects_per_second']:.0f} gen objects/s)",
        )
    else:
        _print(
            args,
            f"generated the targets of {stats['gen_objects']} objects "
            f"({stats['reco_objects']} reconstructed) in {stats['events']} rows{draws} in "
            f"{stats['seconds']:.1f} s ({stats['gen_objects_per_second']:.0f} objects/s)",
        )
    kept, dropped = stats["full_sim"]["kept"], stats["full_sim"]["dropped"]
    if kept:
        names = list(kept.values())
        more = f" and {len(names) - 6} more" if len(names) > 6 else ""
        _print(args, f"full simulation kept as {len(names)} branches: {', '.join(names[:6])}{more}")
    if dropped and args.drop_full_sim:
        more = f" and {len(dropped) - 6} more" if len(dropped) > 6 else ""
        _print(
            args, f"dropped {len(dropped)} full-simulation branches: {', '.join(dropped[:6])}{more}"
        )
    _print_outputs(args, stats)
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from hepgen.anomaly.pvalues import DEFAULT_SAMPLES
    from hepgen.anomaly.score import score_file

    _check_model_job(args, "--step-size", args.step_size)
    if args.iwae_samples is not None and (args.bound != "iwae" or args.iwae_samples < 1):
        raise InputError(f"--iwae-samples {args.iwae_samples}: a positive K for --bound iwae")
    if args.pvalue_samples is not None and not args.pvalue:
        raise InputError(f"--pvalue-samples {args.pvalue_samples}: only with --pvalue")
    stats = score_file(
        args.model,
        args.input,
        args.output,
        branch=args.branch,
        step_size=args.step_size,
        bound=args.bound,
        iwae_samples=args.iwae_samples,
        pvalue_samples=(args.pvalue_samples or DEFAULT_SAMPLES) if args.pvalue else None,
        seed=args.seed,
        **_production_args(args),
    )
    if stats["kind"] == "density":
        what = f"{stats['n_scored']} events"
    else:
        what = (
            f"{stats['n_scored']} of {stats['n_rows']} reco objects ({stats['n_unmatched']} "
            f"unmatched: NaN) in {stats['n_events']} events"
        )
    _print(
        args,
        f"scored {what} in {stats['seconds']:.1f} s "
        f"({stats['rows_per_second'] or 0:.0f} rows/s) into branch {stats['branch']}"
        + ("" if args.bound is None else f" ({stats['score']})"),
    )
    pv = stats.get("pvalue")
    if pv is not None:
        below = pv["fraction_below"]["0.05"]
        _print(
            args,
            f"p-values of {pv['n_pvalues']} rows into branch {pv['branch']}: K = "
            f"{pv['n_samples']} model draws per row (resolution 1/(K+1) = "
            f"{pv['resolution']:.2g}), seed {pv['seed']}; "
            + (f"{below:.1%} at or below 0.05" if below is not None else "none finite")
            + (f"; {pv['n_nan']} NaN (non-finite score)" if pv["n_nan"] else ""),
        )
    _print_outputs(args, stats)
    return 0


def _cmd_scan(args: argparse.Namespace) -> int:
    from hepgen.anomaly.config import scan_from_config
    from hepgen.outputs import check_output_dir

    _check_seed_and_device(args)
    check_output_dir(
        args.output,
        inputs=[args.config, *(args.files or [])],
        contents=("scan.json", "report.html"),
        what="report folder",
    )
    result = scan_from_config(
        args.config,
        args.output,
        files=args.files,
        device=args.device,
        seed=args.seed,
        quiet=args.quiet,
        resume=args.resume,
        overrides=args.overrides,
    )
    best = result.best
    _print(
        args,
        f"scanned {len(result.windows)} windows of {result.settings.resonance_name} "
        f"({result.n_events} events) in {result.seconds:.0f} s",
    )
    _print(
        args,
        f"most significant: [{best.window.lo:.4g}, {best.window.hi:.4g}) with "
        f"{best.headline['n_observed']} observed / {best.headline['n_expected']:.1f} expected "
        f"at background efficiency {result.settings.ranking_efficiency:g}: local Z = "
        f"{best.significance:.2f}",
    )
    _print(args, f"report: {Path(args.output) / 'report.html'}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from hepgen.modelcard import format_card
    from hepgen.modeldir import load_model

    _check_model_directory(args.model)
    card = load_model(args.model, command="info").card_
    if args.json:
        print(json.dumps(card, indent=2))
    else:
        print(format_card(card))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from hepgen.export import export_model

    result = export_model(
        args.model,
        args.output,
        target=args.target,
        precision=args.precision,
        tolerance=args.tolerance,
        overwrite=args.overwrite,
        on_report=lambda report: _print(args, report.summary()),
    )
    _print(args, result.summary_lines()[-1])
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from hepgen.demo import run_demo
    from hepgen.outputs import check_output_dir

    if args.train_seconds <= 0:
        raise InputError(f"--train-seconds must be positive, got {args.train_seconds}")
    if args.events < 1:
        raise InputError(f"-n/--events must be positive, got {args.events}")
    _check_seed_and_device(args)
    check_output_dir(args.output, what="demo folder")
    run_demo(
        args.output,
        n_events=args.events,
        seed=args.seed,
        quiet=args.quiet,
        train_seconds=args.train_seconds,
    )
    return 0


COMMANDS = {
    "simulate": _cmd_simulate,
    "inspect": _cmd_inspect,
    "prepare": _cmd_prepare,
    "train": _cmd_train,
    "generate": _cmd_generate,
    "score": _cmd_score,
    "scan": _cmd_scan,
    "info": _cmd_info,
    "export": _cmd_export,
    "validate": cmd_validate,
    "demo": _cmd_demo,
}
