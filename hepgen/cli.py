"""The ``hepgen`` command line: a thin layer over the Python API.

Every command has ``--help``, ``--quiet`` and ``--debug`` (tracebacks).
Bad usage or bad input ends with a one-line ``hepgen: error: ...`` message on stderr and exit
code 2; success exits 0.

What ``--quiet`` silences (the rule every command follows, through :func:`_print`):

* silenced: progress bars and informational log lines (chatter about work in progress);
* never silenced: warnings (``hepgen: ...`` on stderr, e.g. conditions outside the training
  domain, stale temporary files removed), errors, and the command's actual output on stdout:
  what it reports or prints (``inspect``'s table, ``info``'s card) and the result lines
  naming what was written (``wrote N events to X``, ``output: X``, headline numbers).

Outputs are checked before any work (:mod:`hepgen.outputs`): a path that cannot be written,
a file where a folder is expected (or the reverse), an output that is also an input, or an
existing output file without ``--overwrite`` is refused at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from hepgen._version import __version__
from hepgen.errors import HepgenError, InputError

__all__ = ["build_parser", "configure_process", "main"]

log = logging.getLogger("hepgen")


def _output_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output-format",
        choices=["ttree", "rntuple"],
        default=None,
        help="write OUT.root's tree as a TTree or an RNTuple (default: the format of the "
        "first input file)",
    )


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="no progress bars or informational logs; warnings, errors and "
        "the command's results are still printed",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")


def _key_value(text: str) -> tuple[str, Any]:
    from hepgen.config import parse_yaml
    from hepgen.errors import ConfigError

    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got '{text}'")
    key, value = text.split("=", 1)
    if not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with a key, got '{text}'")
    try:
        return key.strip(), parse_yaml(value, f"the value of '{key.strip()}'")
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


class _Parser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (``hepgen: error: ...``), exit 2."""

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())
        self.exit(2, f"hepgen: error: {self.prog}: {text} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``hepgen`` command (exposed for documentation and tests)."""
    parser = _Parser(
        prog="hepgen",
        description="Learned fast simulation, anomaly scores and validation for HEP.",
    )
    parser.add_argument("--version", action="version", version=f"hepgen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "simulate",
        help="run the built-in reference detector simulation",
        description="Run the built-in reference ('full') detector simulation and write a "
        "NanoAOD-style ROOT file, or with --process pid an LHCb-style PID ntuple (see "
        "data/README.md for the physics models).",
    )
    p.add_argument("-n", "--events", type=int, required=True, help="number of events")
    p.add_argument("-o", "--output", type=Path, required=True, help="output ROOT file")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--process",
        choices=["jets", "dijet", "pid"],
        default="jets",
        help="jets: NanoAOD-like gen/reco jets (tree Events); dijet: LHC-Olympics-like dijet "
        "features (tree Events); pid: LHCb-like PID calibration ntuple, two muon tracks per "
        "row with sWeights (tree DecayTree; ~40000 candidates make a realistic sample)",
    )
    p.add_argument("--chunk-size", type=int, default=100_000, help="events per chunk")
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT.root")
    p.add_argument(
        "--set",
        dest="options",
        action="append",
        type=_key_value,
        default=[],
        metavar="KEY=VALUE",
        help="physics option, e.g. --set signal_fraction=0.01 (repeatable)",
    )
    _common(p)

    p = sub.add_parser(
        "inspect",
        help="summarise the trees, collections and branches of ROOT files",
        description="Read ROOT files in chunks and print entries, collections and per-branch "
        "statistics (min, mean, max, non-finite counts).",
    )
    p.add_argument("files", nargs="+", help="ROOT files or glob patterns")
    p.add_argument("--tree", default="Events")
    p.add_argument(
        "--branches",
        nargs="+",
        default=None,
        metavar="NAME",
        help="branch names or patterns (default: all numeric branches)",
    )
    p.add_argument("--step-size", type=int, default=100_000, help="events per chunk")
    p.add_argument("--json", type=Path, default=None, help="also write the summary as JSON")
    _common(p)

    p = sub.add_parser(
        "prepare",
        help="read, match and preprocess the data of a config; check the round trip",
        description="Read the configured gen/reco collections in chunks, match them, fit the "
        "feature preprocessing and check that it inverts exactly. Writes preprocessing.json "
        "and summary.json to the output folder.",
    )
    p.add_argument("config", type=Path, help="YAML configuration")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    p.add_argument("--files", nargs="+", default=None, help="input files overriding data.files")
    p.add_argument(
        "--drop-nonfinite",
        action="store_true",
        help="drop events with NaN/inf instead of stopping (counted in a warning)",
    )
    _common(p)

    p = sub.add_parser(
        "train",
        help="train a fast simulation (efficiency, response flow, fakes) from a config",
        description="Read the paired gen/reco objects of CONFIG's data, train the efficiency "
        "classifier, the conditional flow of the response and the fake model, and write the "
        "model directory (hepgen-model.json + safetensors; no pickle). Checkpoints each epoch "
        "into MODEL_DIR/checkpoints; --resume continues after a crash.",
    )
    p.add_argument("config", type=Path, help="YAML configuration (e.g. configs/toy_jets_flow.yaml)")
    p.add_argument("-o", "--output", type=Path, required=True, help="model directory")
    p.add_argument("--files", nargs="+", default=None, help="input files overriding data.files")
    p.add_argument(
        "--device",
        default=None,
        choices=["auto", "cpu", "cuda"],
        help="where to train (default: the config's training.device, else auto)",
    )
    p.add_argument("--max-epochs", type=int, default=None, help="override training.max_epochs")
    p.add_argument("--seed", type=int, default=None, help="override the config's seed")
    p.add_argument(
        "--resume", action="store_true", help="continue from MODEL_DIR/checkpoints (same settings)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace a model already in MODEL_DIR")
    _common(p)

    p = sub.add_parser(
        "generate",
        help="run a trained fast simulation over a ROOT file",
        description="Generate the reco collection (collections layout) or the target "
        "branches (flat/objects layouts) for every event or row of INPUT (chunked; inputs "
        "larger than memory are fine) and write OUT.root with every other input branch kept "
        "and the replaced full-simulation branches kept as FullSimJet_* (collections) or "
        "FullSim_* (flat/objects). Warns with counts when conditions fall outside the "
        "training domain; never overwrites its input.",
    )
    p.add_argument("model", type=Path, help="model directory (hepgen train)")
    p.add_argument("input", nargs="+", help="input ROOT files or glob patterns")
    p.add_argument("-o", "--output", type=Path, required=True, help="output ROOT file")
    p.add_argument("--batch-size", type=int, default=100_000, help="events per chunk")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tree", default=None, help="tree name (default: the model's)")
    p.add_argument(
        "--oversample",
        type=int,
        default=1,
        metavar="K",
        help="K draws per input event: each event written K times in a row with "
        "the branches hepgen_weight (1/K) and hepgen_draw (0..K-1)",
    )
    p.add_argument(
        "--drop-full-sim",
        action="store_true",
        help="do not keep the replaced full-simulation branches (FullSimJet_*, FullSim_*); "
        "the log names what was dropped",
    )
    _output_format(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT.root")
    _common(p)

    p = sub.add_parser(
        "score",
        help="write per-event anomaly scores -log p of a density model or a fast simulation",
        description="Score every event of INPUT with the flow of MODEL_DIR and write OUT.root "
        "with every input branch kept plus the score (float64, nats). A density model "
        "(kind density) adds the branch NAME = -log p(features | conditions) per event; a "
        "fast simulation with a flow adds {reco}_NAME = -log p(reco | gen) per matched reco "
        "object (NaN for unmatched ones). Chunked; never overwrites its input.",
    )
    p.add_argument("model", type=Path, help="model directory (density model or hepgen train)")
    p.add_argument("input", nargs="+", help="input ROOT files or glob patterns")
    p.add_argument("-o", "--output", type=Path, required=True, help="output ROOT file")
    p.add_argument(
        "--branch",
        default="anomaly_score",
        metavar="NAME",
        help="score branch name (default anomaly_score)",
    )
    p.add_argument(
        "--tree", default=None, help="tree name (default: Events, or the fast simulation's)"
    )
    p.add_argument("--step-size", type=int, default=100_000, help="events per chunk")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    _output_format(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing OUT.root")
    _common(p)

    p = sub.add_parser(
        "scan",
        help="sliding-window resonance scan with learned backgrounds (CATHODE / ANODE)",
        description="Slide signal-region windows over the resonance variable of CONFIG; per "
        "window learn the background in the sidebands with a conditional flow, score the "
        "signal-region events (classifier or likelihood ratio, out of fold), select at fixed "
        "background efficiencies and compare observed with expected counts. Writes scan.json "
        "(one entry per window) and report.html into REPORT_DIR.",
    )
    p.add_argument(
        "config", type=Path, help="scan config YAML (e.g. configs/toy_anomaly_scan.yaml)"
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="report directory")
    p.add_argument(
        "--files",
        nargs="+",
        default=None,
        help="input ROOT files (override data.files of the config)",
    )
    p.add_argument("--device", default=None, choices=["auto", "cpu", "cuda"])
    p.add_argument("--seed", type=int, default=None, help="override the config's seed")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted scan from REPORT_DIR/work: finished windows "
        "are kept, an interrupted flow continues from its checkpoint",
    )
    _common(p)

    p = sub.add_parser(
        "info",
        help="print the model card of a model directory",
        description="Print what a model directory holds: features, architecture, training "
        "history summary, validity domain of the conditions and provenance.",
    )
    p.add_argument("model", type=Path, help="model directory")
    p.add_argument("--json", action="store_true", help="print hepgen-model.json instead")
    _common(p)

    p = sub.add_parser(
        "validate",
        help="compare a candidate ROOT file with a reference: tests, distances, HTML report",
        description="Compare CANDIDATE with REFERENCE feature by feature (KS, chi2, W1, "
        "separation power) and on all features together (xgboost classifier test, MMD, FPD, "
        "KPD, precision/recall/density/coverage), beside a reference-vs-reference baseline. "
        "Writes report.html (self-contained), metrics.json and plots/ to REPORT_DIR. By default "
        "every numeric branch present in both files is compared (object collections "
        "flattened), except bookkeeping (run, event, luminosityBlock, *Idx, weights; listed in "
        "the report; name them in --features to compare them); with --config, the matched "
        "gen/reco pairs of that config. The output ends with a verdict, PASS, DIFFERENT or "
        "INCONCLUSIVE, from the multivariate tests against the baseline. Exit code 1 when a "
        "sample holds NaN/inf values (unless --allow-nonfinite) or, with --fail-on-different, "
        "when the verdict is DIFFERENT; the report is written either way.",
    )
    p.add_argument("reference", help="reference ROOT file (e.g. full simulation)")
    p.add_argument("candidate", help="candidate ROOT file (e.g. hepgen generate)")
    p.add_argument("-o", "--output", type=Path, required=True, help="report directory")
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="compare the matched gen/reco pairs of this config's features",
    )
    p.add_argument(
        "--features",
        nargs="+",
        default=None,
        metavar="NAME",
        help="branch names or glob patterns (default: all numeric branches in both)",
    )
    p.add_argument("--weights", default=None, metavar="BRANCH", help="event-weight branch")
    p.add_argument("--tree", default="Events")
    p.add_argument("--max-events", type=int, default=None, help="read at most N events per file")
    p.add_argument(
        "--condition-bins",
        nargs="+",
        default=None,
        metavar="SPEC",
        help="per-feature tests inside bins: NAME=e0,e1,... (edges) or NAME:K (K quantile "
        "bins); default with --config: 4 bins of each condition",
    )
    p.add_argument(
        "--baseline",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add the reference-vs-reference baseline (default: on)",
    )
    p.add_argument(
        "--metrics",
        nargs="+",
        default=None,
        metavar="NAME",
        help="subset of: ks chi2 w1 separation_power c2st mmd fpd kpd prdc",
    )
    p.add_argument(
        "--c2st-repeats",
        type=int,
        default=1,
        help="retrain the classifier test with K seeds (default 1)",
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-plots", type=int, default=60, help="most feature histograms drawn")
    p.add_argument(
        "--allow-nonfinite",
        action="store_true",
        help="accept NaN/inf values: they are counted, reported (red) and left out "
        "of the tests; without this flag a sample holding any fails (exit 1, after "
        "writing the report)",
    )
    p.add_argument(
        "--fail-on-different",
        action="store_true",
        help="exit 1 when the verdict is DIFFERENT (to gate a production in CI)",
    )
    p.add_argument(
        "--alpha",
        type=float,
        default=0.01,
        help="significance level of the PASS/DIFFERENT/INCONCLUSIVE verdict "
        "(default 0.01, split over the multivariate tests)",
    )
    _common(p)

    p = sub.add_parser(
        "demo",
        help="run the whole chain on the built-in reference simulation",
        description="Simulate the built-in reference detector simulation, train the fast "
        "simulation of configs/toy_jets_flow.yaml on it, generate reco jets for held-out "
        "events and validate them (about 10 minutes on 2 CPU cores); prints the headline "
        "numbers and where the report is.",
    )
    p.add_argument("-o", "--output", type=Path, default=Path("demo_out"), help="output folder")
    p.add_argument("-n", "--events", type=int, default=200_000, help="events to simulate")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--train-seconds",
        type=float,
        default=420.0,
        help="wall-time limit of the flow training (default 420)",
    )
    _common(p)
    return parser


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
        config = config.model_copy(
            update={"data": config.data.model_copy(update={"nonfinite": "drop"})}
        )
        config._source = os.fspath(args.config)
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
    if device is not None and device.startswith("cuda"):
        from hepgen.models.flow_model import resolve_device

        resolve_device(args.device)


def _cmd_train(args: argparse.Namespace) -> int:
    from hepgen.config import load_config
    from hepgen.fastsim import MODEL_FILE, FastSim
    from hepgen.outputs import check_output_dir

    _check_seed_and_device(args)
    config = load_config(args.config)
    out = args.output
    check_output_dir(
        out, inputs=[args.config, *(args.files or config.input_files())], what="model directory"
    )
    if (out / MODEL_FILE).exists() and not (args.resume or args.overwrite):
        raise InputError(
            f"'{out}' already holds a model; use --resume to continue its "
            "training, --overwrite to replace it, or another directory"
        )
    training = dict(config.training.model_dump())
    if args.max_epochs is not None:
        if args.max_epochs < 1:
            raise InputError(f"--max-epochs must be positive, got {args.max_epochs}")
        training["max_epochs"] = args.max_epochs
    updates: dict[str, Any] = {"training": type(config.training)(**training)}
    if args.seed is not None:
        updates["seed"] = args.seed
    source = config.source
    config = config.model_copy(update=updates)
    config._source = source
    device = args.device or (config.training.model_extra or {}).get("device", "auto")
    start = time.perf_counter()
    sim = FastSim(config, device=device).fit(
        files=args.files, output=out, resume=args.resume, quiet=args.quiet
    )
    r = sim.training_
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
    device, the chunk size, and a local output that may be written (not an input)."""
    from hepgen.io.writer import check_local_output
    from hepgen.outputs import check_output_file

    _check_model_directory(args.model)
    _check_seed_and_device(args)
    if step < 1:
        raise InputError(f"{step_option} must be positive, got {step}")
    check_local_output(args.output)
    check_output_file(args.output, inputs=args.input, overwrite=args.overwrite)


def _cmd_generate(args: argparse.Namespace) -> int:
    from hepgen.generate import generate_file

    _check_model_job(args, "--batch-size", args.batch_size)
    stats = generate_file(
        args.model,
        args.input,
        args.output,
        tree=args.tree,
        step_size=args.batch_size,
        seed=args.seed,
        device=args.device,
        quiet=args.quiet,
        oversample=args.oversample,
        output_format=args.output_format,
        keep_full_sim=not args.drop_full_sim,
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
    _print(args, f"output: {stats['output']}")
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from hepgen.anomaly.score import score_file

    _check_model_job(args, "--step-size", args.step_size)
    stats = score_file(
        args.model,
        args.input,
        args.output,
        branch=args.branch,
        tree=args.tree,
        step_size=args.step_size,
        device=args.device,
        quiet=args.quiet,
        output_format=args.output_format,
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
        f"({stats['rows_per_second'] or 0:.0f} rows/s) into branch {stats['branch']}",
    )
    _print(args, f"output: {stats['output']}")
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
    from hepgen.anomaly.density import DensityModel, read_model_card
    from hepgen.fastsim import FastSim
    from hepgen.modelcard import format_card

    _check_model_directory(args.model)
    _, card = read_model_card(args.model)
    if card.get("kind") == DensityModel.kind:
        card = DensityModel.load(args.model).card_
    else:
        card = FastSim.load(args.model).card_
    if args.json:
        print(json.dumps(card, indent=2))
    else:
        print(format_card(card))
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
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
    config = None
    if args.config is not None:
        from hepgen.config import load_config

        config = load_config(args.config)
    bins = parse_condition_bins(args.condition_bins) if args.condition_bins else None
    options = {"c2st": {"n_repeats": args.c2st_repeats}} if args.c2st_repeats != 1 else None
    start = time.perf_counter()
    result, files = validate_files(
        args.reference,
        args.candidate,
        args.output,
        config=config,
        features=args.features,
        weights=args.weights,
        tree=args.tree,
        max_events=args.max_events,
        condition_bins=bins,
        baseline=args.baseline,
        metrics=args.metrics,
        options=options,
        device=args.device,
        seed=args.seed,
        max_plots=args.max_plots,
        quiet=args.quiet,
        allow_nonfinite=args.allow_nonfinite,
        alpha=args.alpha,
    )
    s = result.summary()
    lines = [
        f"compared {result.n_reference} reference and {result.n_candidate} candidate rows, "
        f"{len(result.features)} features, in {time.perf_counter() - start:.1f} s"
    ]
    total = (result.nonfinite or {}).get("total") or {}
    if any(total.values()):
        lines.append(
            f"  NON-FINITE values (NaN/inf): {total.get('reference', 0)} in the "
            f"reference, {total.get('candidate', 0)} in the candidate, in "
            f"{len(result.nonfinite['features'])} feature(s)"
            + (" (allowed, left out of the tests)" if args.allow_nonfinite else "")
        )
    if s["c2st_auc"] is not None:
        base = result.baseline.summary()["c2st_auc"] if result.baseline is not None else None
        lines.append(
            f"  classifier AUC {s['c2st_auc']:.4f}"
            + (f" (reference vs reference {base:.4f})" if base is not None else "")
        )
    if s["max_ks"] is not None:
        lines.append(f"  largest KS statistic {s['max_ks']:.4f} ({s['max_ks_feature']})")
    lines.append(
        f"  per-feature p-values below 0.05: {s['n_pvalues_below_0.05']} of {s['n_pvalues']}"
    )
    lines.append(f"report: {files.html}")
    verdict = result.verdict()
    lines.append(f"verdict: {verdict['verdict']} ({'; '.join(verdict['reasons'])})")
    _print(args, "\n".join(lines))
    failure = nonfinite_failure(result.nonfinite, "--allow-nonfinite")
    if failure:
        raise ValidationFailed(failure)
    if args.fail_on_different and verdict["verdict"] == "DIFFERENT":
        raise ValidationFailed(f"verdict DIFFERENT (--fail-on-different): {verdict['reasons'][0]}")
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
    "validate": _cmd_validate,
    "demo": _cmd_demo,
}


def configure_process(environ: dict[str, str] | None = None) -> None:
    """Process-level settings of the ``hepgen`` command, made before torch or xgboost load.

    OpenMP: unless the user set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``, idle OpenMP
    threads sleep at once (``OMP_WAIT_POLICY=PASSIVE``) instead of spinning.  torch, MKL and
    xgboost each run a libgomp pool; a spinning pool takes the cores that the other pools and
    the other jobs of a shared machine need, and a training step (tens of parallel kernels)
    then waits at every barrier for a descheduled thread.  On a busy 2-core machine the
    autoregressive PID flow (batch 512) trained at 34 rows/s with a bounded spin
    (``GOMP_SPINCOUNT=30000``) and at 3.7k rows/s with ``PASSIVE``
    (``benchmarks/bench_train_speed.py``).  The runtimes read the variables when they start,
    so this only takes effect before torch is imported; the library itself never changes
    the environment (Python users on shared machines set the variable themselves).

    Parameters
    ----------
    environ : dict or None
        The environment to update (default ``os.environ``).
    """
    env = os.environ if environ is None else environ
    if "OMP_WAIT_POLICY" not in env and "GOMP_SPINCOUNT" not in env:
        env["OMP_WAIT_POLICY"] = "PASSIVE"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``hepgen`` command; returns the exit code."""
    configure_process()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, or a one-line usage error (code 2)
        return exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 2
    logging.basicConfig(
        level=logging.DEBUG if args.debug else (logging.WARNING if args.quiet else logging.INFO),
        format="hepgen: %(levelname)s: %(message)s" if args.debug else "hepgen: %(message)s",
        stream=sys.stderr,
    )
    try:
        return COMMANDS[args.command](args)
    except HepgenError as err:
        if args.debug:
            raise
        message = " ".join(str(err).split())  # one line, whatever the message holds
        print(f"hepgen: error: {message}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("hepgen: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of our output went away (`hepgen info DIR | head`): not an error of the
        # command; send what is left to /dev/null so that the exit does not raise again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
