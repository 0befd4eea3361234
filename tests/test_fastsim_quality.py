"""End-to-end quality of the default fast simulation, and the default config on real NanoAOD.

The issue's target (held-out classifier AUC <= 0.55 and every target's KS <= 0.02 after at
most 15 minutes of training on at most 500k jets) in a smaller, faster version: the default
model of ``configs/toy_jets_flow.yaml`` trained for 19 epochs (what 60 s gave on an idle
2-core machine; a fixed epoch count, never a time limit, so that a busy machine gets the same
model) on 25k simulated events, then
``hepgen generate`` on 10k held-out events and ``hepgen validate --config`` against their full
simulation.  Thresholds are set from measured values with margin for the smaller training (see
each assertion); they check quality, not time.

The GAN config (``configs/toy_jets_gan.yaml``) gets 18 epochs on the same events; its
thresholds are looser (the issue's GAN target is AUC <= 0.60).

The same unchanged flow config then runs end to end (train, generate, validate) on the 200-event
CMS Open Data file of ../shared/data when it is present.
"""

from __future__ import annotations

import json
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import yaml

from hepgen.cli import main
from hepgen.io.reader import read_events
from hepgen.resources import config_path
from hepgen.sim import simulate_to_file

TARGETS = ["Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", "Jet_btagDeepFlavB", "Jet_nConstituents"]


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("quality")
    simulate_to_file(d / "train.root", "jets", n_events=25_000, seed=21, quiet=True)
    simulate_to_file(d / "heldout.root", "jets", n_events=10_000, seed=22, quiet=True)
    return d


def train_generate_validate(d: Path, config: str, kind: str, epochs: int) -> tuple[dict, Path]:
    """The shipped config trained for a fixed number of epochs (no time limit: the result
    must not depend on the machine's speed or load): train, generate the held-out events,
    validate them against their full simulation; (metrics.json, work folder)."""
    raw = yaml.safe_load(config_path(config).read_text())
    raw["training"].update(time_limit=None, max_epochs=epochs)
    cfg = d / f"cfg_{kind}.yaml"
    cfg.write_text(yaml.safe_dump(raw, sort_keys=False))
    model, generated, report = d / f"model_{kind}", d / f"gen_{kind}.root", d / f"report_{kind}"
    assert (
        main(
            [
                "train",
                str(cfg),
                "--files",
                str(d / "train.root"),
                "-o",
                str(model),
                "--quiet",
                "--device",
                "cpu",
                "--seed",
                "3",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "generate",
                str(model),
                str(d / "heldout.root"),
                "-o",
                str(generated),
                "--quiet",
                "--device",
                "cpu",
                "--seed",
                "4",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "validate",
                str(d / "heldout.root"),
                str(generated),
                "-o",
                str(report),
                "--config",
                str(cfg),
                "--quiet",
                "--device",
                "cpu",
                "--metrics",
                "ks",
                "chi2",
                "c2st",
            ]
        )
        == 0
    )
    return json.loads((report / "metrics.json").read_text()), d


@pytest.fixture(scope="module")
def report(samples) -> tuple[dict, Path]:
    # 19 epochs: what the former 60 s time limit gave on an idle 2-core machine
    return train_generate_validate(samples, "toy_jets_flow.yaml", "flow", epochs=19)


@pytest.fixture(scope="module")
def gan_report(samples) -> tuple[dict, Path]:
    # 18 epochs: what the former 60 s time limit gave on an idle 2-core machine
    return train_generate_validate(samples, "toy_jets_gan.yaml", "gan", epochs=18)


def test_held_out_classifier_auc(report):
    metrics, _ = report
    auc = metrics["c2st"]["auc"]
    # measured 0.523 [0.519, 0.527] here (19 epochs, epoch 15 kept; baseline 0.495); the
    # full-size run reaches 0.505 (issue target 0.55).  Fixed epochs: a slower or busier
    # machine trains the same model, so the margin only covers floating-point differences.
    assert auc <= 0.54, metrics["c2st"]
    assert metrics["n_candidate"] > 15_000  # matched pairs compared


def test_every_target_ks(report):
    metrics, _ = report
    ks = {t: metrics["features"][t]["ks"]["statistic"] for t in TARGETS}
    # measured <= 0.0149 (Jet_pt) here, where the 5 % critical value under the null is 0.0127
    # for 23k vs 23k pairs; the full-size run reaches <= 0.0092 per target (issue target 0.02)
    assert max(ks.values()) <= 0.025, ks
    responses = {
        k: v["ks"]["statistic"]
        for k, v in metrics["features"].items()
        if k.startswith("Jet_") and ("/" in k or "-" in k)
    }
    assert responses and max(responses.values()) <= 0.03, responses


def test_efficiency_and_fakes(report):
    metrics, _ = report
    objects = metrics["objects"]
    eff = objects["efficiency"]
    assert abs(eff["candidate"] - eff["reference"]) <= 0.01, eff
    fakes = objects["fake_fraction"]
    assert abs(fakes["candidate"] - fakes["reference"]) <= 0.02, fakes


def test_gan_held_out_classifier_auc_and_ks(gan_report):
    metrics, d = gan_report
    card = json.loads((d / "model_gan" / "hepgen-model.json").read_text())
    assert card["kind"] == "gan"
    auc = metrics["c2st"]["auc"]
    # measured 0.590 [0.587, 0.594] here (18 epochs, epoch 18 kept; baseline 0.495); the
    # 15-minute run reaches 0.564 (issue target 0.60).  Fixed epochs: the same model on any
    # machine, the margin covers floating-point differences.
    assert auc <= 0.62, metrics["c2st"]
    ks = {t: metrics["features"][t]["ks"]["statistic"] for t in TARGETS}
    # measured <= 0.0235 (b-tag) here; 0.013 in the 15-minute run
    assert max(ks.values()) <= 0.04, ks
    objects = metrics["objects"]
    eff, fakes = objects["efficiency"], objects["fake_fraction"]
    assert abs(eff["candidate"] - eff["reference"]) <= 0.01, eff
    assert abs(fakes["candidate"] - fakes["reference"]) <= 0.02, fakes


def test_default_config_runs_unchanged_on_real_nanoaod(nanoaod_file, tmp_path):
    config = str(config_path("toy_jets_flow.yaml"))
    model = tmp_path / "model"
    assert (
        main(
            [
                "train",
                config,
                "--files",
                str(nanoaod_file),
                "-o",
                str(model),
                "--quiet",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    card = json.loads((model / "hepgen-model.json").read_text())
    assert card["data_summary"]["n_train_pairs"] > 200  # 362 usable pairs in the file
    out = tmp_path / "generated.root"
    assert (
        main(
            [
                "generate",
                str(model),
                str(nanoaod_file),
                "-o",
                str(out),
                "--quiet",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    src = read_events(nanoaod_file, ["event", "nGenJet", "GenJet_pt"], nonfinite="keep")
    gen = read_events(
        out,
        [
            "event",
            "nGenJet",
            "nJet",
            "Jet_pt",
            "Jet_genJetIdx",
            "Jet_btagDeepFlavB",
            "Jet_nConstituents",
        ],
        nonfinite="keep",
    )
    assert len(gen) == len(src) == 200
    assert ak.all(gen["event"] == src["event"])
    assert ak.all(ak.num(gen["Jet_pt"]) == gen["nJet"])
    assert ak.all(gen["Jet_genJetIdx"] < gen["nGenJet"][:, None])
    # this file's b-tag is the sentinel -3000 everywhere: the model reproduces the sentinel
    btag = ak.to_numpy(ak.flatten(gen["Jet_btagDeepFlavB"]))
    assert btag.size and np.all(btag == -3000.0)
    n_const = ak.to_numpy(ak.flatten(gen["Jet_nConstituents"]))
    assert n_const.min() >= 1 and np.all(n_const == np.round(n_const))
    report_dir = tmp_path / "report"
    assert (
        main(
            [
                "validate",
                str(nanoaod_file),
                str(out),
                "-o",
                str(report_dir),
                "--config",
                config,
                "--quiet",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    metrics = json.loads((report_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["c2st"]["auc"] <= 1.0 and "Jet_pt" in metrics["features"]
