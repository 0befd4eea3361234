"""A VAE fast simulation through the command line: the card, scores that need an explicit
bound, ONNX export with parity and generation without torch's draws, and its latent walk.

One small VAE (latent 4, 32 hidden features) is trained for a fixed number of epochs on the
reference simulation; the numbers checked are the bound's relation to the flow-free
quantities it bounds, the ONNX graph's parity with the torch module, and the walk's ends.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import uproot
import yaml

from hepgen.cli import main
from hepgen.fastsim import FastSim
from hepgen.models import NoLikelihoodError
from hepgen.resources import config_path


def small_vae_text(max_epochs: int = 6) -> str:
    """configs/toy_jets_vae.yaml with a small VAE, trained for a fixed number of epochs."""
    raw = yaml.safe_load(config_path("toy_jets_vae.yaml").read_text())
    raw["model"]["vae"].update(latent_dim=4, hidden_features=32, n_blocks=1, kl_warmup_steps=50)
    raw["training"].update(time_limit=None, max_epochs=max_epochs, batch_size=256)
    return yaml.safe_dump(raw, sort_keys=False)


@pytest.fixture(scope="module")
def vae_dir(jets_file, tmp_path_factory):
    d = tmp_path_factory.mktemp("vae")
    (d / "cfg.yaml").write_text(small_vae_text())
    code = main(["train", str(d / "cfg.yaml"), "--files", str(jets_file), "-o", str(d / "model"),
                 "--device", "cpu", "--quiet"])  # fmt: skip
    assert code == 0
    return d / "model"


def test_info_shows_the_vae_and_its_active_dimensions(vae_dir, capsys):
    assert main(["info", str(vae_dir)]) == 0
    out = capsys.readouterr().out
    assert "kind: vae" in out and "vae: latent 4, " in out and " active, " in out
    assert "ELBO and IWAE lower bounds" in out
    card = json.loads((vae_dir / "hepgen-model.json").read_text())
    assert 0 <= card["architecture"]["active_dimensions"] <= 4


def test_score_refuses_a_vae_without_an_explicit_bound(vae_dir, jets_file, tmp_path, capsys):
    out = tmp_path / "s.root"
    assert main(["score", str(vae_dir), str(jets_file), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--bound iwae" in err and "lower bound" in err
    assert not out.exists()
    code = main(["score", str(vae_dir), str(jets_file), "-o", str(out), "--iwae-samples", "8"])
    assert code == 2 and "--bound iwae" in capsys.readouterr().err


def test_score_with_the_iwae_bound_is_tighter_than_the_elbo(vae_dir, jets_file, tmp_path):
    scores = {}
    for bound in ("elbo", "iwae"):
        out = tmp_path / f"{bound}.root"
        command = ["score", str(vae_dir), str(jets_file), "-o", str(out), "--bound", bound]
        assert main([*command, "--iwae-samples", "16"] if bound == "iwae" else command) == 0
        with uproot.open(out) as f:
            values = f["Events"]["Jet_anomaly_score"].array(library="np")
            meta = json.loads(str(f["hepgen_metadata"]))
        scores[bound] = np.concatenate(values)
        assert meta["score"] == f"-{bound} bound on log p"
    finite = np.isfinite(scores["elbo"])
    assert finite.sum() > 1000 and np.array_equal(finite, np.isfinite(scores["iwae"]))
    # -IWAE <= -ELBO on average (IWAE is the tighter lower bound on log p; the ELBO is a
    # one-draw estimate, so single rows scatter): measured mean gap 0.076 nats with K = 16
    # for this small model, positive on 70 % of the rows
    gap = scores["elbo"][finite] - scores["iwae"][finite]
    assert gap.mean() > 0.02 and np.median(gap) > 0


def test_the_bound_is_refused_for_a_flow(fastsim_dir_small, jets_file, tmp_path, capsys):
    code = main(["score", str(fastsim_dir_small), str(jets_file), "-o",
                 str(tmp_path / "f.root"), "--bound", "iwae"])  # fmt: skip
    assert code == 2 and "a bound is for a VAE" in capsys.readouterr().err


@pytest.fixture(scope="module")
def fastsim_dir_small(tmp_path_factory):
    from tests.conftest import train_small_fastsim

    return train_small_fastsim(tmp_path_factory.mktemp("flow"), 2000, 2)


def test_fastsim_log_prob_points_to_the_bound(vae_dir):
    sim = FastSim.load(vae_dir)
    with pytest.raises(NoLikelihoodError, match=r"VAE .*log_prob_bound"):
        sim.log_prob({"Jet_pt": np.ones(1)}, {"GenJet_pt": np.ones(1)})


def test_onnx_export_of_a_vae_generates_without_torch_draws(vae_dir, jets_file, tmp_path):
    exported = tmp_path / "exported"
    assert main(["export", str(vae_dir), "--format", "onnx", "-o", str(exported)]) == 0
    manifest = json.loads((exported / "export.json").read_text())
    graph = manifest["graphs"]["vae"]
    assert graph["kind"] == "vae" and graph["n_latent"] == 4 + graph["n_features"]
    parity = manifest["parity"]["vae.sample"]
    assert parity["passed"] and parity["max_abs"] < 1e-4  # measured 1.4e-6
    out = tmp_path / "onnx.root"
    code = main(["generate", str(exported), str(jets_file), "-o", str(out), "--backend", "onnx",
                 "--quiet", "--truncation", "1.0"])  # fmt: skip
    assert code == 0
    with uproot.open(out) as f:
        meta = json.loads(str(f["hepgen_metadata"]))
        pt = np.concatenate(f["Events"]["Jet_pt"].array(library="np"))
    assert meta["backend"] == "onnx" and meta["sampling"]["truncation"] == 1.0
    assert np.all(np.isfinite(pt)) and pt.size > 1000


def test_a_vae_walk_ends_at_its_reconstructions(vae_dir):
    sim = FastSim.load(vae_dir)
    n = 2
    cond = {
        "GenJet_pt": np.array([60.0, 60.0]),
        "GenJet_eta": np.zeros(n),
        "GenJet_phi": np.zeros(n),
        "GenJet_mass": np.full(n, 8.0),
        "GenJet_hadronFlavour": np.array([0, 5]),
    }
    objects = {**cond, **sim.sample(cond, seed=3)}
    # each end encoded alone, as the walk does (integer targets are dequantised with a fixed
    # seed, so a row's code depends on its place in the batch)
    ends = [{k: v[i : i + 1] for k, v in objects.items()} for i in range(2)]
    recon = [sim.decode(sim.encode(e), {k: e[k] for k in sim.condition_names}) for e in ends]
    walk = sim.interpolate(*({k: v[0] for k, v in e.items()} for e in ends), steps=5)
    for name in sim.target_names:
        assert np.isclose(walk[name][0], recon[0][name][0], rtol=1e-4, atol=1e-4), name
        assert np.isclose(walk[name][-1], recon[1][name][0], rtol=1e-4, atol=1e-4), name
    assert not np.isclose(walk["Jet_btagDeepFlavB"][0], walk["Jet_btagDeepFlavB"][-1])
