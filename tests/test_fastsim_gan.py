"""FastSim with ``model.kind: gan``: the same API, model directory and CLI as with a flow.

A small Cramer GAN is trained for real on the reference simulation; the tests check the model
directory (no pickle, ``gan.*`` files, the card), the NanoAOD layout and rates of
``simulate``, reproducibility after save/load, the response's location and width against the
full simulation, the clear error of ``log_prob``, and that a flow config turns into a GAN by
changing ``model.kind`` alone.
"""

from __future__ import annotations

import json

import awkward as ak
import numpy as np
import pytest
import yaml

from hepgen.cli import main
from hepgen.config import load_config
from hepgen.errors import ConfigError
from hepgen.fastsim import FastSim
from hepgen.io.reader import read_events
from hepgen.models import GANModel, NoLikelihoodError
from hepgen.resources import config_path

GEN = ["nGenJet", "GenJet_pt", "GenJet_eta", "GenJet_phi", "GenJet_mass", "GenJet_hadronFlavour"]
SMALL_GAN = {
    "latent_dim": 8,
    "hidden_features": 64,
    "critic_hidden_features": 64,
    "n_blocks": 1,
    "critic_blocks": 1,
}


def small_gan_text(max_epochs: int = 12, **gan: object) -> str:
    """configs/toy_jets_gan.yaml with a small GAN (``gan`` overrides) and a short training of
    a fixed number of epochs (no time limit: results must not depend on the machine's load)."""
    raw = yaml.safe_load(config_path("toy_jets_gan.yaml").read_text())
    raw["model"]["gan"].update({**SMALL_GAN, **gan})
    raw["training"].update(time_limit=None, max_epochs=max_epochs, batch_size=512)
    return yaml.safe_dump(raw, sort_keys=False)


@pytest.fixture(scope="module")
def fitted(jets_file, tmp_path_factory):
    d = tmp_path_factory.mktemp("gan")
    (d / "cfg.yaml").write_text(small_gan_text())
    sim = FastSim(load_config(d / "cfg.yaml"), device="cpu").fit(
        files=[str(jets_file)], output=d / "model", quiet=True
    )
    return sim, d / "model"


def matched_ratio(reco: ak.Array, gen_pt: ak.Array) -> np.ndarray:
    """reco pt / gen pt of the reconstructed gen jets (flat)."""
    idx = reco["Jet_genJetIdx"]
    ok = idx >= 0
    matched_gen = gen_pt[ak.where(ok, idx, 0)][ok]
    return ak.to_numpy(ak.flatten(reco["Jet_pt"][ok] / matched_gen))


def test_model_directory_holds_gan_weights_and_no_pickle(fitted):
    sim, out = fitted
    assert isinstance(sim.response_, GANModel)
    names = {p.name for p in out.iterdir()}
    assert {
        "hepgen-model.json",
        "gan.safetensors",
        "gan.json",
        "fakes_gan.safetensors",
        "fakes_gan.json",
        "efficiency.json",
    } <= names
    assert not {"flow.safetensors", "fakes_flow.safetensors"} & names
    assert not [p for p in out.rglob("*") if p.suffix in (".pt", ".pkl", ".pickle")]
    card = json.loads((out / "hepgen-model.json").read_text())
    assert card["kind"] == "gan"
    assert card["architecture"]["settings"]["loss"] == "cramer"
    # the checkpoint is chosen by the quick classifier test; recall/coverage recorded per epoch
    assert card["config"]["training"]["selection"] == "c2st"
    assert card["training"]["selection"] == "metric"
    details = [h["metric_details"] for h in card["training"]["history"] if "metric_details" in h]
    assert details and {"recall", "coverage"} <= set(details[-1])
    assert 0.0 <= details[-1]["coverage"] <= 1.0


def test_simulate_layout_rates_and_response(fitted, jets_file):
    _, out = fitted
    sim = FastSim.load(out)
    events = read_events(jets_file, [*GEN, "nJet", "Jet_pt", "Jet_genJetIdx"])
    reco = sim.simulate(events[GEN], seed=5)
    assert len(reco) == len(events)
    assert ak.all(ak.num(reco["Jet_pt"]) == ak.num(reco["Jet_genJetIdx"]))
    idx = reco["Jet_genJetIdx"]
    n_gen, n_matched = ak.sum(events["nGenJet"]), ak.sum(idx >= 0)
    full_matched = ak.sum(events["Jet_genJetIdx"] >= 0)
    # efficiency and fake rate as in the full simulation (5000 events, ~16k gen jets)
    assert abs(n_matched / n_gen - full_matched / n_gen) < 0.03
    full_fakes, fast_fakes = ak.sum(events["Jet_genJetIdx"] < 0), ak.sum(idx < 0)
    assert abs(fast_fakes / full_fakes - 1) < 0.15
    # valid values: positive pt, b-tag in [0, 1], integer constituents >= 1
    pt = ak.to_numpy(ak.flatten(reco["Jet_pt"]))
    btag = ak.to_numpy(ak.flatten(reco["Jet_btagDeepFlavB"]))
    n_const = ak.to_numpy(ak.flatten(reco["Jet_nConstituents"]))
    assert (pt > 0).all() and ((btag >= 0) & (btag <= 1)).all()
    assert (n_const >= 1).all() and np.array_equal(n_const, np.round(n_const))
    # the response pt/gen: median and central width close to the full simulation's
    fast = matched_ratio(reco, events["GenJet_pt"])
    full = matched_ratio(events, events["GenJet_pt"])
    assert abs(np.median(fast) - np.median(full)) < 0.03, (np.median(fast), np.median(full))
    iqr = [np.subtract(*np.percentile(r, [75, 25])) for r in (fast, full)]
    assert abs(iqr[0] / iqr[1] - 1) < 0.3, iqr


def test_save_load_reproduces_samples(fitted, jets_file):
    sim, out = fitted
    events = read_events(jets_file, GEN, entry_stop=500)
    a = sim.simulate(events, seed=9)
    b = FastSim.load(out).simulate(events, seed=9)
    c = FastSim.load(out).simulate(events, seed=10)
    flat = [ak.to_numpy(ak.flatten(x["Jet_pt"])) for x in (a, b, c)]
    assert np.array_equal(flat[0], flat[1])
    assert not np.array_equal(flat[0], flat[2])


def test_log_prob_raises_a_clear_error(fitted):
    sim, _ = fitted
    cond = {
        "GenJet_pt": np.array([50.0]),
        "GenJet_eta": np.array([0.1]),
        "GenJet_phi": np.array([0.2]),
        "GenJet_mass": np.array([8.0]),
        "GenJet_hadronFlavour": np.array([0]),
    }
    targ = {
        "Jet_pt": np.array([48.0]),
        "Jet_eta": np.array([0.1]),
        "Jet_phi": np.array([0.2]),
        "Jet_mass": np.array([7.0]),
        "Jet_btagDeepFlavB": np.array([0.1]),
        "Jet_nConstituents": np.array([20]),
    }
    with pytest.raises(NoLikelihoodError, match=r"GAN \(model.kind: gan\).*no tractable"):
        sim.log_prob(targ, cond)
    with pytest.raises(NoLikelihoodError, match=r"model\.kind: flow"):
        sim.response_.log_prob(np.zeros((1, 6), np.float32), np.zeros((1, 7), np.float32))


def test_flow_config_becomes_a_gan_by_model_kind_alone(jets_file, tmp_path, capsys):
    text = config_path("toy_jets_flow.yaml").read_text()
    gan = text.replace("  kind: flow\n", "  kind: gan\n").replace("max_epochs: 60", "max_epochs: 1")
    assert gan.count("kind: gan") == 1
    (tmp_path / "cfg.yaml").write_text(gan)
    model = tmp_path / "model"
    assert (
        main(
            [
                "train",
                str(tmp_path / "cfg.yaml"),
                "--files",
                str(jets_file),
                "-o",
                str(model),
                "--quiet",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert (model / "gan.safetensors").is_file()
    assert main(["info", str(model)]) == 0
    out = capsys.readouterr().out
    assert "kind: gan" in out and "gan: loss cramer" in out
    assert (
        main(
            [
                "generate",
                str(model),
                str(jets_file),
                "-o",
                str(tmp_path / "gen.root"),
                "--quiet",
                "--seed",
                "2",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    gen = read_events(tmp_path / "gen.root", ["nGenJet", "nJet", "Jet_pt", "Jet_genJetIdx"])
    assert len(gen) == 5000 and ak.all(ak.num(gen["Jet_pt"]) == gen["nJet"])
    # the generate input is never overwritten; a second train refuses the existing model
    assert (
        main(
            [
                "train",
                str(tmp_path / "cfg.yaml"),
                "--files",
                str(jets_file),
                "-o",
                str(model),
                "--quiet",
            ]
        )
        == 2
    )
    assert "already holds a model" in capsys.readouterr().err


def test_bad_gan_settings_name_the_key(tmp_path):
    (tmp_path / "bad.yaml").write_text(small_gan_text(latent_dims=8))
    with pytest.raises(ConfigError, match=r"latent_dims.*did you mean 'latent_dim'"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "neg.yaml").write_text(small_gan_text(latent_dim=0))
    with pytest.raises(ConfigError, match="latent_dim"):
        load_config(tmp_path / "neg.yaml")


def test_gan_model_directory_damage_is_reported(fitted, tmp_path):
    _, out = fitted
    broken = tmp_path / "broken"
    broken.mkdir()
    for p in out.iterdir():
        if p.is_file():
            (broken / p.name).write_bytes(p.read_bytes())
    data = (broken / "gan.safetensors").read_bytes()
    (broken / "gan.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(Exception, match=r"gan\.safetensors"):
        FastSim.load(broken)
    (broken / "gan.safetensors").unlink()
    with pytest.raises(Exception, match=r"gan\.safetensors"):
        FastSim.load(broken)
