"""bfloat16 conditioners in a fast simulation: checked after training, recorded in the model
card, used only when accepted (or forced)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import small_flow_config_text

from hepgen.cli import main
from hepgen.config import load_config
from hepgen.errors import ConfigError, InputError
from hepgen.fastsim import FastSim
from hepgen.modeldir import FASTSIM_KINDS, read_card
from hepgen.sim import simulate_to_file


@pytest.fixture(scope="module")
def bf16_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bf16")
    simulate_to_file(folder / "train.root", "jets", n_events=4000, seed=11, quiet=True)
    text = small_flow_config_text(max_epochs=4).replace(
        "  kind: flow\n", "  kind: flow\n  precision: bfloat16\n", 1
    )
    (folder / "cfg.yaml").write_text(text)
    model = folder / "model"
    argv = ["train", str(folder / "cfg.yaml"), "--files", str(folder / "train.root")]
    assert main([*argv, "-o", str(model), "--quiet", "--device", "cpu"]) == 0
    return model


def test_the_check_is_recorded_and_used(bf16_model: Path) -> None:
    _, card = read_card(bf16_model, FASTSIM_KINDS, user="test")
    check = card["inference"]["checks"]["bfloat16"]
    assert card["inference"]["precision"] == "bfloat16"
    assert check["accepted"], check
    assert 0 < check["parity"]["max_abs"] <= check["parity"]["tolerance"]
    low, high = check["auc_interval"]
    assert low <= check["auc"] <= high and low < check["auc_float32"] < high
    sim = FastSim.load(bf16_model)
    assert (sim.response_.engine, sim.response_.precision) == ("auto", "bfloat16")
    assert sim.fakes_.model.precision == "float32"  # the fakes flow is not checked
    conditions = {
        name: np.full(500, value)
        for name, value in zip(sim.condition_names, [60.0, 0.3, 1.0, 8.0, 0], strict=False)
    }
    bf16 = sim.sample(conditions, seed=3)
    f32 = sim.set_inference(precision="float32").sample(conditions, seed=3)
    # the same latent draws: the samples differ by the bf16 rounding of the conditioners
    diff = np.abs(bf16["Jet_pt"] - f32["Jet_pt"]) / f32["Jet_pt"]
    assert 0 < np.median(diff) < 0.01


def test_a_reduced_precision_needs_an_accepted_check(bf16_model: Path, tmp_path: Path) -> None:
    sim = FastSim.load(bf16_model)
    sim.inference_ = {"precision": "float32", "checks": {}}
    with pytest.raises(InputError, match=r"no check of it was made: train with model\.precision"):
        sim.set_inference(precision="bfloat16")
    sim.inference_ = {"precision": "bfloat16", "checks": {"bfloat16": {"accepted": False}}}
    with pytest.raises(InputError, match="its check after training was refused"):
        sim.set_inference(precision="bfloat16")
    assert sim.set_inference().response_.precision == "float32"  # refused: float32
    assert sim.set_inference(precision="bfloat16", force=True).response_.precision == "bfloat16"


def test_precision_is_for_flows(tmp_path: Path) -> None:
    from hepgen.resources import config_path

    text = config_path("toy_jets_flow.yaml").read_text()
    path = tmp_path / "gan.yaml"
    path.write_text(text.replace("  kind: flow\n", "  kind: gan\n  precision: bfloat16\n", 1))
    with pytest.raises(ConfigError, match=r"model\.precision: bfloat16 is for flows"):
        load_config(path)


def test_generate_takes_engine_and_precision(bf16_model: Path, tmp_path: Path, capsys) -> None:
    import json
    import shutil

    import uproot

    events = simulate_to_file(tmp_path / "in.root", "jets", n_events=300, seed=5, quiet=True)
    out = tmp_path / "out.root"
    argv = ["generate", str(bf16_model), str(events), "-o", str(out), "--quiet"]
    assert main([*argv, "--engine", "graph", "--precision", "bfloat16"]) == 0
    with uproot.open(out) as f:
        assert f["Events"].num_entries == 300
    # a copy whose card holds no accepted check: bfloat16 is refused with one line, exit 2
    unchecked = tmp_path / "unchecked"
    shutil.copytree(bf16_model, unchecked)
    card_path = unchecked / "hepgen-model.json"
    card = json.loads(card_path.read_text())
    card["inference"] = {"precision": "float32", "checks": {}}
    card_path.write_text(json.dumps(card))
    capsys.readouterr()
    argv = ["generate", str(unchecked), str(events), "-o", str(tmp_path / "o2.root")]
    assert main([*argv, "--precision", "bfloat16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "precision bfloat16 is not accepted" in err[0], err
    assert not (tmp_path / "o2.root").exists()


def test_info_shows_the_check(bf16_model: Path, capsys) -> None:
    assert main(["info", str(bf16_model)]) == 0
    out = capsys.readouterr().out
    assert "generation precision (model.precision): bfloat16" in out
    assert "bfloat16 check: accepted; samples max |diff|" in out
