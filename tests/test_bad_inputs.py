"""Drills: every command given an ordinary mistake exits 2 with one line that names the thing.

Each row of the table is one bad input (a truncated, binary or misnamed file, a config key, an
option value, a model of the wrong kind, ...).  Every row asserts exit code 2, exactly one
stderr line starting with ``hepgen: error:``, that the line names the offending file, tree,
branch, key or path, and that nothing was created or changed: the whole working folder (inputs,
models, outputs) is snapshotted before and after.  The CLI runs in-process
(:func:`hepgen.cli.main`).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import awkward as ak
import numpy as np
import pytest
import uproot

from hepgen.cli import main
from hepgen.resources import config_path

SCAN = config_path("toy_anomaly_scan.yaml").read_text()


@pytest.fixture(scope="module")
def ws(jets_file, tmp_path_factory) -> SimpleNamespace:
    """The drills' files: good inputs, broken copies, configs and two tiny trained models."""
    from hepgen.anomaly.density import DensityModel
    from hepgen.config import load_config
    from hepgen.fastsim import FastSim
    from hepgen.io.reader import read_events
    from hepgen.sim import simulate_to_file

    d = tmp_path_factory.mktemp("bad_inputs")
    jets = d / "jets.root"
    shutil.copy(jets_file, jets)
    data = jets.read_bytes()
    (d / "trunc.root").write_bytes(data[: len(data) // 3])  # header fine, baskets cut off
    (d / "tiny.root").write_bytes(data[:1000])  # cut inside the header
    (d / "notroot.root").write_text("this is a text file, not ROOT\n")
    with uproot.recreate(d / "rntuple.root") as f:  # RNTuples are read; a string field is not
        f["Events"] = {"x": np.arange(5.0), "label": ["a", "b", "c", "d", "e"]}
    (d / "adir").mkdir()
    # Jet_eta written with its own counter and one entry short in event 120
    ev = read_events(jets, entry_stop=300)
    cols = {f: ev[f] for f in ev.fields if not f.startswith("n")}
    eta = ak.to_list(ev["Jet_eta"])
    eta[120] = eta[120][:-1] if eta[120] else [0.0]
    cols["Jet_eta"] = ak.Array(eta)
    with uproot.recreate(d / "mismatch.root") as f:
        f.mktree("Events", {k: v.type for k, v in cols.items()})
        f["Events"].extend(cols)
    simulate_to_file(d / "dijet.root", "dijet", n_events=2000, seed=3, quiet=True)
    dijet = (d / "dijet.root").read_bytes()
    (d / "dijet_trunc.root").write_bytes(dijet[: len(dijet) // 3])

    text = config_path("toy_jets.yaml").read_text()
    good = "\n".join(
        "  files: [jets.root]" if line.strip().startswith("files:") else line
        for line in text.splitlines()
    )
    assert "files: [jets.root]" in good
    (d / "good.yaml").write_text(good)

    density = DensityModel(
        [{"name": "mj1", "kind": "positive"}],
        [{"name": "mjj", "kind": "positive"}],
        flow={"n_transforms": 1, "hidden_features": 8, "n_blocks": 1},
        training={"max_epochs": 1, "batch_size": 512},
        device="cpu",
    )
    events = read_events(d / "dijet.root")
    density.fit({k: ak.to_numpy(events[k]) for k in events.fields}, quiet=True)
    density.save(d / "density")

    cfg = load_config(config_path("toy_jets.yaml")).override(
        {
            "model.flow": {"n_transforms": 1, "hidden_features": 8, "n_bins": 4},
            "model.fakes": False,
            "training": {"max_epochs": 1, "batch_size": 1024, "selection": "loss"},
        }
    )
    FastSim(cfg, device="cpu").fit(files=[str(jets)], output=d / "fastsim", quiet=True)
    return SimpleNamespace(d=d, good=good)


def edit(ws: SimpleNamespace, name: str, old: str, new: str, base: str | None = None) -> str:
    """Write a copy of the good fast-simulation config (or ``base``) with one edit."""
    text = ws.good if base is None else base
    assert old in text, old
    path = ws.d / name
    path.write_text(text.replace(old, new, 1))
    return str(path)


def scan_edit(ws: SimpleNamespace, name: str, old: str, new: str) -> str:
    return edit(ws, name, old, new, base=SCAN)


def no_targets(ws: SimpleNamespace) -> str:
    lines = [x for x in ws.good.splitlines() if "role: target" not in x]
    (ws.d / "no_targets.yaml").write_text("\n".join(lines))
    return str(ws.d / "no_targets.yaml")


def binary_yaml(ws: SimpleNamespace) -> str:
    (ws.d / "latin1.yaml").write_bytes(
        ws.good.replace("reco: Jet", "reco: J\xe9t").encode("latin-1")
    )
    return str(ws.d / "latin1.yaml")


def write(ws: SimpleNamespace, name: str, text: str) -> str:
    (ws.d / name).write_text(text)
    return str(ws.d / name)


def no_cuda(argv: list[str]) -> list[str]:
    """``argv`` of a ``--device cuda`` drill: skipped where torch sees a CUDA device."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: --device cuda is not a mistake here")
    return argv


def existing_output(ws: SimpleNamespace) -> str:
    """An output file already there (and its content must survive the failed command)."""
    path = ws.d / "out" / "kept.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text('{"kept": true}\n')
    return str(path)


Case = Callable[[SimpleNamespace], tuple[list[str], list[str]]]

# id: (argv builder -> (argv, what the message must name)), xfail reason or None (a check
# another area is still adding: "area X in progress")
CASES: dict[str, tuple[Case, str | None]] = {
    # ---- inspect ---------------------------------------------------------------------------
    "inspect-missing-file": (
        lambda w: (["inspect", f"{w.d}/missing.root"], ["missing.root", "does not exist"]),
        None,
    ),
    "inspect-not-root": (
        lambda w: (["inspect", f"{w.d}/notroot.root"], ["notroot.root", "is not a ROOT file"]),
        None,
    ),
    "inspect-truncated": (
        lambda w: (
            ["inspect", f"{w.d}/trunc.root"],
            ["trunc.root", "tree 'Events'", "entries", "truncated or corrupt"],
        ),
        None,
    ),
    "inspect-truncated-header": (
        lambda w: (["inspect", f"{w.d}/tiny.root"], ["tiny.root", "not a readable ROOT file"]),
        None,
    ),
    "inspect-rntuple-string-field": (
        lambda w: (
            ["inspect", f"{w.d}/rntuple.root", "--branches", "label"],
            ["rntuple.root", "field 'label' has type 'std::string'"],
        ),
        None,
    ),
    "inspect-tree-typo": (
        lambda w: (
            ["inspect", f"{w.d}/jets.root", "--tree", "Event"],
            ["no tree 'Event'", "did you mean 'Events'"],
        ),
        None,
    ),
    "inspect-branch-typo": (
        lambda w: (
            ["inspect", f"{w.d}/jets.root", "--branches", "Jet_ptt"],
            ["jets.root", "no branch 'Jet_ptt'", "'Jet_pt'"],
        ),
        None,
    ),
    "inspect-empty-glob": (
        lambda w: (["inspect", f"{w.d}/nothing*.root"], ["nothing*.root", "no file matches"]),
        None,
    ),
    "inspect-directory": (lambda w: (["inspect", f"{w.d}/adir"], ["adir", "is a directory"]), None),
    "inspect-step-size-0": (
        lambda w: (
            ["inspect", f"{w.d}/jets.root", "--step-size", "0", "--json", f"{w.d}/out/s.json"],
            ["--step-size"],
        ),
        None,
    ),
    "inspect-truncated-keeps-json": (
        lambda w: (["inspect", f"{w.d}/trunc.root", "--json", existing_output(w)], ["trunc.root"]),
        None,
    ),
    # ---- prepare ---------------------------------------------------------------------------
    "prepare-missing-config": (
        lambda w: (
            ["prepare", f"{w.d}/nope.yaml", "-o", f"{w.d}/out/p"],
            ["nope.yaml", "does not exist"],
        ),
        None,
    ),
    "prepare-root-file-as-config": (
        lambda w: (
            ["prepare", f"{w.d}/jets.root", "-o", f"{w.d}/out/p"],
            ["jets.root", "is a ROOT file"],
        ),
        None,
    ),
    "prepare-directory-as-config": (
        lambda w: (["prepare", f"{w.d}/adir", "-o", f"{w.d}/out/p"], ["adir", "is a directory"]),
        None,
    ),
    "prepare-non-utf8-config": (
        lambda w: (
            ["prepare", binary_yaml(w), "-o", f"{w.d}/out/p"],
            ["latin1.yaml", "byte 0xe9 at line", "UTF-8"],
        ),
        None,
    ),
    "prepare-yaml-syntax": (
        lambda w: (
            ["prepare", write(w, "syntax.yaml", "data: {files: [a\n"), "-o", f"{w.d}/out/p"],
            ["syntax.yaml", "not valid YAML at line"],
        ),
        None,
    ),
    "prepare-empty-config": (
        lambda w: (
            ["prepare", write(w, "empty.yaml", "# nothing\n"), "-o", f"{w.d}/out/p"],
            ["empty.yaml", "empty"],
        ),
        None,
    ),
    "prepare-list-config": (
        lambda w: (
            ["prepare", write(w, "list.yaml", "- a\n- b\n"), "-o", f"{w.d}/out/p"],
            ["list.yaml", "mapping"],
        ),
        None,
    ),
    "prepare-no-targets": (
        lambda w: (
            ["prepare", no_targets(w), "-o", f"{w.d}/out/p"],
            ["no_targets.yaml", "no feature has role 'target'"],
        ),
        None,
    ),
    "prepare-empty-tree-name": (
        lambda w: (
            ["prepare", edit(w, "tree.yaml", "tree: Events", "tree: ''"), "-o", f"{w.d}/out/p"],
            ["tree.yaml", "key 'data.tree'"],
        ),
        None,
    ),
    "prepare-unknown-top-key": (
        lambda w: (
            ["prepare", edit(w, "featurs.yaml", "features:", "featurs:"), "-o", f"{w.d}/out/p"],
            ["featurs.yaml", "unknown key 'featurs'", "did you mean 'features'"],
        ),
        None,
    ),
    "prepare-efficiency-value": (
        lambda w: (
            [
                "prepare",
                edit(
                    w, "eff.yaml", "\nfeatures:", "\nmodel: {efficiency: {max_depth: 0}}\nfeatures:"
                ),
                "-o",
                f"{w.d}/out/p",
            ],
            ["eff.yaml", "key 'model.efficiency.max_depth'"],
        ),
        None,
    ),
    "prepare-efficiency-typo": (
        lambda w: (
            [
                "prepare",
                edit(
                    w, "efft.yaml", "\nfeatures:", "\nmodel: {efficiency: {max_dept: 3}}\nfeatures:"
                ),
                "-o",
                f"{w.d}/out/p",
            ],
            ["unknown key 'model.efficiency.max_dept'", "did you mean 'max_depth'"],
        ),
        None,
    ),
    "prepare-feature-kind": (
        lambda w: (
            [
                "prepare",
                edit(w, "kind.yaml", "kind: positive}", "kind: positiv}"),
                "-o",
                f"{w.d}/out/p",
            ],
            ["kind.yaml", "key 'features[0].kind'"],
        ),
        None,
    ),
    "prepare-missing-data-file": (
        lambda w: (
            ["prepare", edit(w, "nofile.yaml", "[jets.root]", "[gone.root]"), "-o", f"{w.d}/out/p"],
            ["gone.root", "does not exist"],
        ),
        None,
    ),
    "prepare-output-is-the-config": (
        lambda w: (["prepare", f"{w.d}/good.yaml", "-o", f"{w.d}/good.yaml"], ["good.yaml"]),
        None,
    ),
    "prepare-truncated-data": (
        lambda w: (
            ["prepare", f"{w.d}/good.yaml", "--files", f"{w.d}/trunc.root", "-o", f"{w.d}/out/p"],
            ["trunc.root", "truncated or corrupt"],
        ),
        None,
    ),
    "prepare-mismatched-jagged-counts": (
        lambda w: (
            [
                "prepare",
                f"{w.d}/good.yaml",
                "--files",
                f"{w.d}/mismatch.root",
                "-o",
                f"{w.d}/out/p",
            ],
            ["mismatch.root", "'Jet_pt' and 'Jet_eta'", "entry 120"],
        ),
        None,
    ),
    # ---- train -----------------------------------------------------------------------------
    "train-root-file-as-config": (
        lambda w: (
            ["train", f"{w.d}/jets.root", "-o", f"{w.d}/out/m"],
            ["jets.root", "is a ROOT file"],
        ),
        None,
    ),
    "train-directory-as-config": (
        lambda w: (["train", f"{w.d}/adir", "-o", f"{w.d}/out/m"], ["adir", "is a directory"]),
        None,
    ),
    "train-no-targets": (
        lambda w: (["train", no_targets(w), "-o", f"{w.d}/out/m"], ["no_targets.yaml", "target"]),
        None,
    ),
    "train-max-epochs-0": (
        lambda w: (
            ["train", f"{w.d}/good.yaml", "-o", f"{w.d}/out/m", "--max-epochs", "0"],
            ["--max-epochs"],
        ),
        None,
    ),
    "train-seed-negative": (
        lambda w: (["train", f"{w.d}/good.yaml", "-o", f"{w.d}/out/m", "--seed", "-1"], ["--seed"]),
        None,
    ),
    "train-bad-device-choice": (
        lambda w: (
            ["train", f"{w.d}/good.yaml", "-o", f"{w.d}/out/m", "--device", "tpu"],
            ["--device", "tpu"],
        ),
        None,
    ),
    "train-device-cuda-without-gpu": (
        lambda w: (
            no_cuda(["train", f"{w.d}/good.yaml", "-o", f"{w.d}/out/m", "--device", "cuda"]),
            ["'cuda'", "no CUDA device"],
        ),
        None,
    ),
    # ---- generate --------------------------------------------------------------------------
    "generate-seed-negative": (
        lambda w: (
            [
                "generate",
                f"{w.d}/fastsim",
                f"{w.d}/jets.root",
                "-o",
                f"{w.d}/out/g.root",
                "--seed",
                "-1",
            ],
            ["--seed", "-1"],
        ),
        None,
    ),
    "generate-device-cuda-without-gpu": (
        lambda w: (
            no_cuda(
                [
                    "generate",
                    f"{w.d}/fastsim",
                    f"{w.d}/jets.root",
                    "-o",
                    f"{w.d}/out/g.root",
                    "--device",
                    "cuda",
                ]
            ),
            ["'cuda'", "no CUDA device"],
        ),
        None,
    ),
    "generate-density-model": (
        lambda w: (
            ["generate", f"{w.d}/density", f"{w.d}/jets.root", "-o", f"{w.d}/out/g.root"],
            ["density", "holds a density model", "hepgen score"],
        ),
        None,
    ),
    "generate-no-model": (
        lambda w: (
            ["generate", f"{w.d}/adir", f"{w.d}/jets.root", "-o", f"{w.d}/out/g.root"],
            ["adir", "not a hepgen model directory"],
        ),
        None,
    ),
    "generate-truncated-input": (
        lambda w: (
            ["generate", f"{w.d}/fastsim", f"{w.d}/trunc.root", "-o", f"{w.d}/out/g.root"],
            ["trunc.root", "truncated or corrupt"],
        ),
        None,
    ),
    "generate-not-root-input": (
        lambda w: (
            ["generate", f"{w.d}/fastsim", f"{w.d}/notroot.root", "-o", f"{w.d}/out/g.root"],
            ["notroot.root", "not a ROOT file"],
        ),
        None,
    ),
    "generate-batch-size-0": (
        lambda w: (
            [
                "generate",
                f"{w.d}/fastsim",
                f"{w.d}/jets.root",
                "-o",
                f"{w.d}/out/g.root",
                "--batch-size",
                "0",
            ],
            ["--batch-size"],
        ),
        None,
    ),
    "generate-overwrite-input": (
        lambda w: (
            ["generate", f"{w.d}/fastsim", f"{w.d}/jets.root", "-o", f"{w.d}/jets.root"],
            ["jets.root"],
        ),
        None,
    ),
    "generate-missing-condition-branches": (
        lambda w: (
            ["generate", f"{w.d}/fastsim", f"{w.d}/dijet.root", "-o", f"{w.d}/out/g.root"],
            ["dijet.root", "GenJet_pt"],
        ),
        None,
    ),
    "generate-output-is-a-directory": (
        lambda w: (
            [
                "generate",
                f"{w.d}/fastsim",
                f"{w.d}/jets.root",
                "-o",
                f"{w.d}/adir",
                "--output-layout",
                "single",
            ],
            ["adir", "is a directory"],
        ),
        None,
    ),
    "generate-folder-holds-a-file": (
        lambda w: (
            ["generate", f"{w.d}/fastsim", f"{w.d}/jets.root", "-o", f"{w.d}/jets.root/out"],
            ["jets.root"],
        ),
        None,
    ),
    "generate-missing-model-directory": (
        lambda w: (
            ["generate", f"{w.d}/nomodel", f"{w.d}/jets.root", "-o", f"{w.d}/out/g.root"],
            ["nomodel", "does not exist"],
        ),
        None,
    ),
    # ---- score -----------------------------------------------------------------------------
    "score-no-model": (
        lambda w: (
            ["score", f"{w.d}/adir", f"{w.d}/dijet.root", "-o", f"{w.d}/out/s.root"],
            ["adir", "not a hepgen model directory"],
        ),
        None,
    ),
    "score-truncated-input": (
        lambda w: (
            ["score", f"{w.d}/density", f"{w.d}/dijet_trunc.root", "-o", f"{w.d}/out/s.root"],
            ["dijet_trunc.root", "truncated or corrupt"],
        ),
        None,
    ),
    "score-model-is-a-file": (
        lambda w: (
            ["score", f"{w.d}/jets.root", f"{w.d}/dijet.root", "-o", f"{w.d}/out/s.root"],
            ["jets.root", "expected a model directory"],
        ),
        None,
    ),
    "score-missing-branches": (
        lambda w: (
            ["score", f"{w.d}/density", f"{w.d}/jets.root", "-o", f"{w.d}/out/s.root"],
            ["jets.root", "mjj"],
        ),
        None,
    ),
    "score-step-size-0": (
        lambda w: (
            [
                "score",
                f"{w.d}/density",
                f"{w.d}/dijet.root",
                "-o",
                f"{w.d}/out/s.root",
                "--step-size",
                "0",
            ],
            ["--step-size"],
        ),
        None,
    ),
    "score-device-cuda-without-gpu": (
        lambda w: (
            no_cuda(
                [
                    "score",
                    f"{w.d}/density",
                    f"{w.d}/dijet.root",
                    "-o",
                    f"{w.d}/out/s.root",
                    "--device",
                    "cuda",
                ]
            ),
            ["'cuda'", "no CUDA device"],
        ),
        None,
    ),
    # ---- scan (the config is checked on load, before any event is read) --------------------
    "scan-start-nan": (
        lambda w: (
            ["scan", scan_edit(w, "nan.yaml", "start: 2.5", "start: .nan"), "-o", f"{w.d}/out/r"],
            ["nan.yaml", "key 'scan.start'", "finite"],
        ),
        None,
    ),
    "scan-stop-inf": (
        lambda w: (
            ["scan", scan_edit(w, "inf.yaml", "stop: 4.7", "stop: .inf"), "-o", f"{w.d}/out/r"],
            ["key 'scan.stop'", "finite"],
        ),
        None,
    ),
    "scan-start-above-stop": (
        lambda w: (
            ["scan", scan_edit(w, "order.yaml", "start: 2.5", "start: 5.0"), "-o", f"{w.d}/out/r"],
            ["order.yaml", "'start' (5.0) must be below 'stop'"],
        ),
        None,
    ),
    "scan-resonance-typo": (
        lambda w: (
            ["scan", scan_edit(w, "res.yaml", "{name: mjj", "{nmae: mjj"), "-o", f"{w.d}/out/r"],
            ["unknown key 'resonance.nmae'", "did you mean 'name'"],
        ),
        None,
    ),
    "scan-feature-kind": (
        lambda w: (
            [
                "scan",
                scan_edit(
                    w, "fkind.yaml", "{name: mj2, kind: positive}", "{name: mj2, kind: banana}"
                ),
                "-o",
                f"{w.d}/out/r",
            ],
            ["key 'features[0].kind'"],
        ),
        None,
    ),
    "scan-feature-bounds": (
        lambda w: (
            [
                "scan",
                scan_edit(w, "fb.yaml", "bounds: [-0.1, 1.1]", "bounds: x"),
                "-o",
                f"{w.d}/out/r",
            ],
            ["key 'features[2].bounds'"],
        ),
        None,
    ),
    "scan-flow-typo": (
        lambda w: (
            [
                "scan",
                scan_edit(w, "flow.yaml", "n_transforms: 4", "n_transfroms: 4"),
                "-o",
                f"{w.d}/out/r",
            ],
            ["flow.yaml", "key 'flow.n_transfroms'", "did you mean 'n_transforms'"],
        ),
        None,
    ),
    "scan-training-value": (
        lambda w: (
            [
                "scan",
                scan_edit(w, "train.yaml", "batch_size: 512", "batch_size: 0"),
                "-o",
                f"{w.d}/out/r",
            ],
            ["key 'training.batch_size'", "greater than or equal to 1"],
        ),
        None,
    ),
    "scan-classifier-value": (
        lambda w: (
            [
                "scan",
                scan_edit(w, "clf.yaml", "max_depth: 3", "max_depth: deep"),
                "-o",
                f"{w.d}/out/r",
            ],
            ["key 'scan.classifier.max_depth'"],
        ),
        None,
    ),
    "scan-root-file-as-config": (
        lambda w: (
            ["scan", f"{w.d}/jets.root", "-o", f"{w.d}/out/r"],
            ["jets.root", "is a ROOT file"],
        ),
        None,
    ),
    "scan-truncated-data": (
        lambda w: (
            [
                "scan",
                write(w, "scanfiles.yaml", SCAN),
                "--files",
                f"{w.d}/dijet_trunc.root",
                "-o",
                f"{w.d}/out/r",
            ],
            ["dijet_trunc.root", "truncated or corrupt"],
        ),
        None,
    ),
    # ---- info ------------------------------------------------------------------------------
    "info-no-model": (lambda w: (["info", f"{w.d}/adir"], ["adir", "no hepgen-model.json"]), None),
    "info-missing-directory": (
        lambda w: (["info", f"{w.d}/nowhere"], ["nowhere", "does not exist"]),
        None,
    ),
    # ---- validate --------------------------------------------------------------------------
    "validate-truncated-candidate": (
        lambda w: (
            ["validate", f"{w.d}/jets.root", f"{w.d}/trunc.root", "-o", f"{w.d}/out/v"],
            ["trunc.root", "truncated or corrupt"],
        ),
        None,
    ),
    "validate-not-root-reference": (
        lambda w: (
            ["validate", f"{w.d}/notroot.root", f"{w.d}/jets.root", "-o", f"{w.d}/out/v"],
            ["notroot.root", "not a ROOT file"],
        ),
        None,
    ),
    "validate-rntuple": (
        lambda w: (
            ["validate", f"{w.d}/rntuple.root", f"{w.d}/jets.root", "-o", f"{w.d}/out/v"],
            ["rntuple.root", "jets.root"],
        ),
        None,
    ),
    "validate-max-events-0": (
        lambda w: (
            [
                "validate",
                f"{w.d}/jets.root",
                f"{w.d}/jets.root",
                "-o",
                f"{w.d}/out/v",
                "--max-events",
                "0",
            ],
            ["--max-events"],
        ),
        None,
    ),
    "validate-config-binary": (
        lambda w: (
            [
                "validate",
                f"{w.d}/jets.root",
                f"{w.d}/jets.root",
                "-o",
                f"{w.d}/out/v",
                "--config",
                f"{w.d}/jets.root",
            ],
            ["jets.root", "is a ROOT file"],
        ),
        None,
    ),
    "validate-unknown-metric": (
        lambda w: (
            [
                "validate",
                f"{w.d}/jets.root",
                f"{w.d}/jets.root",
                "-o",
                f"{w.d}/out/v",
                "--metrics",
                "kss",
            ],
            ["kss"],
        ),
        None,
    ),
    # ---- simulate --------------------------------------------------------------------------
    "simulate-set-yaml-error": (
        lambda w: (
            ["simulate", "-n", "10", "-o", f"{w.d}/out/s.root", "--set", "signal_fraction=[1,"],
            ["--set", "'signal_fraction'", "not valid YAML"],
        ),
        None,
    ),
    "simulate-set-unknown-option": (
        lambda w: (
            [
                "simulate",
                "-n",
                "10",
                "-o",
                f"{w.d}/out/s.root",
                "--process",
                "dijet",
                "--set",
                "signl_fraction=0.1",
            ],
            ["signl_fraction"],
        ),
        None,
    ),
    "simulate-events-0": (
        lambda w: (["simulate", "-n", "0", "-o", f"{w.d}/out/s.root"], ["--events"]),
        None,
    ),
    "simulate-events-not-int": (
        lambda w: (["simulate", "-n", "ten", "-o", f"{w.d}/out/s.root"], ["-n/--events", "'ten'"]),
        None,
    ),
    # ---- demo ------------------------------------------------------------------------------
    "demo-train-seconds-0": (
        lambda w: (["demo", "-o", f"{w.d}/out/demo", "--train-seconds", "0"], ["--train-seconds"]),
        None,
    ),
    "demo-events-0": (
        lambda w: (["demo", "-o", f"{w.d}/out/demo", "-n", "0"], ["-n/--events", "got 0"]),
        None,
    ),
    "demo-seed-negative": (
        lambda w: (["demo", "-o", f"{w.d}/out/demo", "--seed", "-2"], ["--seed", "-2"]),
        None,
    ),
}


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` with a hash of its bytes, and every folder."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


def test_the_table_is_large_and_covers_every_command():
    assert len(CASES) >= 40
    commands = {name.split("-")[0] for name in CASES}
    assert commands >= {
        "inspect",
        "prepare",
        "train",
        "generate",
        "score",
        "scan",
        "info",
        "validate",
        "simulate",
    }


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=pytest.mark.xfail(strict=False, reason=r)) if r else n
        for n, (_, r) in CASES.items()
    ],
)
def test_bad_input_exits_2_with_one_line_naming_it(name, ws, capsys):
    build, _ = CASES[name]
    argv, named = build(ws)
    capsys.readouterr()
    before = _snapshot(ws.d)
    code = main([*argv, "--quiet"])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("hepgen: error: "), err
    for text in named:
        assert text in lines[0], (text, lines[0])
    assert _snapshot(ws.d) == before, "a failed command created or changed files"
