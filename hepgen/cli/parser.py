"""The arguments of the ``hepgen`` command: one function per command, so that each command's
options are found (and changed) in one place."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, NoReturn

from hepgen._version import __version__

__all__ = ["build_parser", "device_argument"]


def device_argument(text: str) -> str:
    """``--device``: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (:mod:`hepgen.devices`)."""
    from hepgen.devices import check_device
    from hepgen.errors import ConfigError

    try:
        return check_device(text)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


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


def _overrides(parser: argparse.ArgumentParser, example: str) -> None:
    """``--set KEY=VALUE`` (repeatable): a config key set over the file's, checked as the file
    is (:func:`hepgen.config.apply_overrides`)."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        type=_key_value,
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config key, e.g. --set {example} (repeatable; checked like the file)",
    )


def _add_simulate(sub: Any) -> None:
    """The ``simulate`` command's arguments."""
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


def _add_inspect(sub: Any) -> None:
    """The ``inspect`` command's arguments."""
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
    p.add_argument(
        "--step-size",
        type=int,
        default=100_000,
        help="events per partition (a worker holds one at a time)",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the summary as JSON")
    _common(p)


def _add_prepare(sub: Any) -> None:
    """The ``prepare`` command's arguments."""
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


def _add_train(sub: Any) -> None:
    """The ``train`` command's arguments."""
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
        type=device_argument,
        metavar="DEVICE",
        help="where to train (default: the config's training.device, else auto)",
    )
    _overrides(p, "training.batch_size=1024 or model.flow.n_bins=8")
    p.add_argument("--max-epochs", type=int, default=None, help="override training.max_epochs")
    p.add_argument("--seed", type=int, default=None, help="override the config's seed")
    p.add_argument(
        "--resume", action="store_true", help="continue from MODEL_DIR/checkpoints (same settings)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace a model already in MODEL_DIR")
    p.add_argument(
        "--devices",
        type=int,
        default=1,
        metavar="N",
        help="train on N processes with DistributedDataParallel (one GPU each on CUDA, else N "
        "CPU processes): runs this command again under torchrun --standalone --nproc_per_node "
        "N; default 1. Several nodes: run torchrun yourself (docs/distributed-training.md)",
    )
    _common(p)


_INPUTS_HELP = (
    "input ROOT files, glob patterns, URLs, or @LIST.txt (a text file of paths, one per line)"
)
_OUTPUT_HELP = (
    "output ROOT file (OUT.root), or folder: one output per input file of the same name "
    "and manifest.json (see --output-layout)"
)
_OVERWRITE_HELP = "replace an existing OUT.root or the outputs in an output folder"


def _executor(p: argparse.ArgumentParser) -> None:
    """Where a data-parallel command runs: in-process (default), local Dask cluster, scheduler."""
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="run on a local Dask cluster of N worker processes, started and stopped here "
        "(needs pip install 'hepgen[dask]')",
    )
    g.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="run on an existing Dask scheduler, e.g. tcp://host:8786 (dask-jobqueue, "
        "dask-gateway, a coffea cluster)",
    )


def _production(p: argparse.ArgumentParser) -> None:
    """The output and executor options of generate and score over many files."""
    _output_format(p)
    _executor(p)
    p.add_argument(
        "--output-layout",
        choices=("single", "per-file", "per-partition"),
        default=None,
        help="one output file (default when -o ends in .root), one file per input file "
        "under the -o folder (default otherwise), or one file per partition; folders get "
        "manifest.json",
    )
    p.add_argument(
        "--seed-block",
        type=int,
        default=10_000,
        metavar="N",
        help="entries per seed block (default 10000): events are seeded by (seed, file UUID, "
        "entry // N), so the output is the same for any step size and any number of workers",
    )
    p.add_argument("--overwrite", action="store_true", help=_OVERWRITE_HELP)


def _add_generate(sub: Any) -> None:
    """The ``generate`` command's arguments."""
    p = sub.add_parser(
        "generate",
        help="run a trained fast simulation over ROOT files",
        description="Generate the reco collection (collections layout) or the target "
        "branches (flat/objects layouts) for every event or row of INPUT (in partitions; "
        "inputs larger than memory are fine; in this process, or on Dask with --workers or "
        "--scheduler) and write OUT.root, or one file per input into a folder, with every "
        "other input branch kept "
        "and the replaced full-simulation branches kept as FullSimJet_* (collections) or "
        "FullSim_* (flat/objects). Warns with counts when conditions fall outside the "
        "training domain; never overwrites its input.",
    )
    p.add_argument("model", type=Path, help="model directory (hepgen train)")
    p.add_argument("input", nargs="+", help=_INPUTS_HELP)
    p.add_argument("-o", "--output", type=Path, required=True, help=_OUTPUT_HELP)
    p.add_argument(
        "--batch-size",
        "--step-size",
        dest="batch_size",
        type=int,
        metavar="N",
        default=100_000,
        help="events per partition (a worker holds one at a time), rounded up to a multiple "
        "of --seed-block",
    )
    p.add_argument(
        "--device",
        default="auto",
        type=device_argument,
        metavar="DEVICE",
        help="auto (default: a GPU when torch sees one), cpu, cuda or cuda:N",
    )
    p.add_argument(
        "--backend",
        choices=("torch", "onnx"),
        default="torch",
        help="what runs the generators: torch (default) or onnx, ONNX Runtime over an "
        "export folder (hepgen export MODEL --format onnx -o OUT; no torch needed; other "
        "draws than torch for a seed, the same distribution)",
    )
    p.add_argument(
        "--engine",
        choices=("auto", "eager", "graph", "compiled"),
        default="auto",
        help="how the flows evaluate (torch backend): eager (the nflows layers), graph (the "
        "static graph that is exported), compiled (torch.compile of the graph: tens of "
        "seconds to compile per process, then faster) or auto "
        "(default: eager on the CPU in float32, else graph)",
    )
    p.add_argument(
        "--precision",
        choices=("float32", "bfloat16"),
        default=None,
        help="of the response flow's conditioner matrix products (torch backend; default: the "
        "model's accepted model.precision, else float32); bfloat16 needs a check accepted "
        "after training (model card, inference)",
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=None,
        metavar="T",
        help="scale of the response's noise (default: the model's model.sampling, 1 unless "
        "configured): T < 1 trades diversity for fidelity (flows, VAEs, GANs); recorded in "
        "the manifest and in each output file's hepgen_metadata",
    )
    p.add_argument(
        "--truncation",
        type=float,
        default=None,
        metavar="PSI",
        help="the truncation trick: every noise component drawn from a normal truncated to "
        "[-PSI, PSI] (default: the model's model.sampling, none unless configured); recorded "
        "like --temperature",
    )
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
    _production(p)
    _common(p)


def _add_score(sub: Any) -> None:
    """The ``score`` command's arguments."""
    p = sub.add_parser(
        "score",
        help="write per-event anomaly scores -log p of a density model or a fast simulation",
        description="Score every event of INPUT with the flow of MODEL_DIR and write OUT.root "
        "with every input branch kept plus the score (float64, nats). A density model "
        "(kind density) adds the branch NAME = -log p(features | conditions) per event; a "
        "fast simulation with a flow adds {reco}_NAME = -log p(reco | gen) per matched reco "
        "object (NaN for unmatched ones). With --pvalue also NAME_pvalue, the event's "
        "likelihood p-value under the model at its conditions. Chunked; never overwrites "
        "its input.",
    )
    p.add_argument("model", type=Path, help="model directory (density model or hepgen train)")
    p.add_argument("input", nargs="+", help=_INPUTS_HELP)
    p.add_argument("-o", "--output", type=Path, required=True, help=_OUTPUT_HELP)
    p.add_argument(
        "--branch",
        default="anomaly_score",
        metavar="NAME",
        help="score branch name (default anomaly_score)",
    )
    p.add_argument(
        "--bound",
        choices=("iwae", "elbo"),
        default=None,
        help="a VAE fast simulation has no exact likelihood: score with the negative of this "
        "lower bound on log p instead (required for a VAE, refused for other models); the "
        "bound's gap differs between events and models, so it is not for likelihood ratios",
    )
    p.add_argument(
        "--iwae-samples",
        type=int,
        default=None,
        metavar="K",
        help="importance samples of --bound iwae (default: the model's iwae_samples)",
    )

    def pvalue_samples(text: str) -> int:
        # hepgen.anomaly.score.MIN_PVALUE_SAMPLES, not imported here (torch): 1/(K+1) <= 0.05
        try:
            k = int(text)
        except ValueError:
            k = 0
        if k < 19:
            raise argparse.ArgumentTypeError(
                f"expected an integer K >= 19 (resolution 1/(K+1) of 0.05 or finer), got '{text}'"
            )
        return k

    p.add_argument(
        "--pvalue",
        action="store_true",
        help="also write each scored row's likelihood p-value P(log p(X | c) <= log p(x | c)), "
        "X drawn from the model at the row's conditions c, into NAME_pvalue (float64; "
        "(k + 1) / (K + 1) from K model draws, uniform for rows drawn from the model, "
        "resolution 1/(K+1)); costs K draws and K density evaluations per row: about 6-8 "
        "minutes per 1e4 events at K = 1000 for the default density flow on one CPU thread",
    )
    p.add_argument(
        "--pvalue-samples",
        type=pvalue_samples,
        default=None,
        metavar="K",
        help="model draws per row for --pvalue (default 1000, at least 19)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seeds the --pvalue draws and the --bound iwae samples, per seed block (default 0)",
    )
    p.add_argument(
        "--tree", default=None, help="tree name (default: Events, or the fast simulation's)"
    )
    p.add_argument(
        "--step-size",
        type=int,
        default=100_000,
        help="events per partition (a worker holds one at a time)",
    )
    p.add_argument(
        "--device",
        default="auto",
        type=device_argument,
        metavar="DEVICE",
        help="auto (default: a GPU when torch sees one), cpu, cuda or cuda:N",
    )
    _production(p)
    _common(p)


def _add_scan(sub: Any) -> None:
    """The ``scan`` command's arguments."""
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
    p.add_argument(
        "--device",
        default=None,
        type=device_argument,
        metavar="DEVICE",
        help="auto, cpu, cuda or cuda:N (default: the config's device)",
    )
    _overrides(p, "scan.step=0.1 or flow.n_bins=8")
    p.add_argument("--seed", type=int, default=None, help="override the config's seed")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted scan from REPORT_DIR/work: finished windows "
        "are kept, an interrupted flow continues from its checkpoint",
    )
    _common(p)


def _add_info(sub: Any) -> None:
    """The ``info`` command's arguments."""
    p = sub.add_parser(
        "info",
        help="print the model card of a model directory",
        description="Print what a model directory holds: features, architecture, training "
        "history summary, validity domain of the conditions and provenance.",
    )
    p.add_argument("model", type=Path, help="model directory")
    p.add_argument("--json", action="store_true", help="print hepgen-model.json instead")
    _common(p)


def _add_export(sub: Any) -> None:
    """The ``export`` command's arguments."""
    p = sub.add_parser(
        "export",
        help="export a model's generators to ONNX or TorchScript, checked for parity",
        description="Write an export folder: the model directory copied unchanged, one graph "
        "per generator and role (onnx/<stem>.sample.onnx, onnx/<stem>.log_prob.onnx for "
        "flows; or torchscript/*.pt) and export.json. Every graph is run against the Python "
        "model on the same inputs (4096 rows); when one differs by more than the tolerance "
        "the export is refused (exit code 1) and nothing is written. The graphs work in "
        "model space: preprocessing and the efficiency model stay outside (docs/export.md).",
    )
    p.add_argument(
        "model",
        type=Path,
        metavar="MODEL_DIR",
        help="model directory (hepgen train, or a density model); only read",
    )
    p.add_argument(
        "--format",
        dest="target",
        required=True,
        choices=("onnx", "torchscript"),
        help="onnx (opset 18, ONNX Runtime) or torchscript (torch.jit)",
    )
    p.add_argument(
        "-o", "--output", type=Path, required=True, metavar="OUT", help="export folder to write"
    )
    p.add_argument(
        "--precision",
        choices=("float32", "bfloat16"),
        default="float32",
        help="dtype of the flows' conditioner matrix products (the splines stay float32); "
        "bfloat16 needs a runtime with bfloat16 kernels (torchscript on CPU)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=None,
        metavar="X",
        help="largest |difference| of the samples accepted, model-space units (log_prob: 10 X "
        "nats); default 1e-4 in float32, 0.05 in bfloat16",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing export folder")
    _common(p)


def _add_validate(sub: Any) -> None:
    """The ``validate`` command's arguments."""
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
    p.add_argument(
        "reference",
        help="reference ROOT file (e.g. full simulation), or many: a quoted glob or @LIST.txt",
    )
    p.add_argument(
        "candidate",
        help="candidate ROOT file (e.g. hepgen generate), or many: a quoted glob or @LIST.txt",
    )
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
        help="subset of: ks chi2 w1 separation_power c2st mmd fpd kpd prdc prd ndb "
        "memorisation inception (default: all; memorisation with a training sample, "
        "inception with a class label)",
    )
    p.add_argument(
        "--c2st-repeats",
        type=int,
        default=1,
        help="retrain the classifier test with K seeds (default 1)",
    )
    p.add_argument(
        "--device",
        default="auto",
        type=device_argument,
        metavar="DEVICE",
        help="auto (default: a GPU when torch sees one), cpu, cuda or cuda:N",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-plots", type=int, default=60, help="most feature histograms drawn")
    p.add_argument(
        "--tradeoff",
        type=Path,
        default=None,
        metavar="MODEL_DIR",
        help="with --config: add the section 'Sampling trade-off', the precision, recall, "
        "density and coverage of this fast simulation's samples at the reference's "
        "conditions for each truncation threshold psi or temperature T (the model trained "
        "with the config)",
    )
    p.add_argument(
        "--tradeoff-knob",
        choices=("truncation", "temperature"),
        default=None,
        help="the knob swept (default: truncation for a GAN response, temperature for a "
        "flow or VAE)",
    )
    p.add_argument(
        "--tradeoff-values",
        default=None,
        metavar="V,V,...",
        help="comma-separated values of the knob, 'none' for as trained (default: "
        "0.5,1,1.5,2,none for truncation, 0.6,0.8,1,1.2 for temperature)",
    )
    _add_model_options(p)
    _add_verdict_options(p)
    _executor(p)
    p.add_argument(
        "--step-size",
        type=int,
        default=None,
        metavar="N",
        help="partitioned mode (the default for many files or with --workers/--scheduler): "
        "entries per partition (default 100000); per-feature tests from sums merged over "
        "partitions",
    )
    p.add_argument(
        "--subsample",
        type=int,
        default=None,
        metavar="N",
        help="partitioned mode: rows of each sample for the multivariate tests and plots "
        "(default 100000), seeded by file and entry",
    )
    _common(p)


def _add_model_options(p: argparse.ArgumentParser) -> None:
    """``validate``'s options about the model, its training sample, class labels and style."""
    p.add_argument(
        "--train",
        nargs="+",
        type=Path,
        default=None,
        metavar="FILE",
        help="the generator's training file(s): adds the data-copying test (are generated rows "
        "closer to the training rows than held-out reference rows are?); default: the files "
        "recorded in the card of --model, or of the model named in the candidate's "
        "hepgen_metadata when it exists",
    )
    p.add_argument(
        "--model",
        type=Path,
        default=None,
        metavar="MODEL_DIR",
        help="with --config: the fast simulation that made the candidate; adds its held-out "
        "log-likelihood on the reference (a VAE: its IWAE bound) and names its training files",
    )
    p.add_argument(
        "--label",
        default=None,
        metavar="NAME",
        help="class feature of the Inception-score analogue (a classifier trained on the "
        "reference predicts it); default with --config: its first categorical condition",
    )
    p.add_argument(
        "--style",
        default=None,
        metavar="EXPERIMENT",
        help="experiment style of the plots: CMS, ATLAS, LHCb or ALICE (mplhep, with the "
        "experiment's 'Simulation' label; default: neutral)",
    )
    p.add_argument(
        "--units",
        nargs="+",
        default=None,
        metavar="NAME=UNIT",
        help="units for axis labels, e.g. Jet_pt=GeV Jet_phi=rad (default: inferred from the "
        "names: pt, mass, energy in GeV; phi in rad; eta and ratios dimensionless)",
    )


def _add_verdict_options(p: argparse.ArgumentParser) -> None:
    """``validate``'s options about non-finite values and the verdict."""
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


def _add_demo(sub: Any) -> None:
    """The ``demo`` command's arguments."""
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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``hepgen`` command (exposed for documentation and tests)."""
    parser = _Parser(
        prog="hepgen",
        description="Learned fast simulation, anomaly scores and validation for HEP.",
    )
    parser.add_argument("--version", action="version", version=f"hepgen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_simulate(sub)
    _add_inspect(sub)
    _add_prepare(sub)
    _add_train(sub)
    _add_generate(sub)
    _add_score(sub)
    _add_scan(sub)
    _add_info(sub)
    _add_export(sub)
    _add_validate(sub)
    _add_demo(sub)
    return parser
