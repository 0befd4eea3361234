"""``hepgen validate`` with the model behind the candidate: the held-out likelihood, the
training sample (given, from the model card, or from the candidate's ``hepgen_metadata``), the
data-copying test flagging a copier and not a real fast simulation, the Inception analogue on
the gen flavour, and bad options ending in exit code 2 with one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import train_small_fastsim

from hepgen.cli import main
from hepgen.validation.trainset import training_files


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small flow trained on train.root (3000 events), held-out reference events (seed 12)
    and the flow's candidate for them (``hepgen generate``)."""
    from hepgen.sim import simulate_to_file

    folder = tmp_path_factory.mktemp("validate_models")
    model = train_small_fastsim(folder, 3000, 3)
    heldout = simulate_to_file(folder / "heldout.root", "jets", n_events=3000, seed=12, quiet=True)
    cand = folder / "cand.root"
    command = ["generate", str(model), str(heldout), "-o", str(cand), "--seed", "1"]
    assert main([*command, "--quiet", "--device", "cpu"]) == 0
    return {
        "folder": folder,
        "model": model,
        "train": folder / "train.root",
        "heldout": heldout,
        "cand": cand,
        "config": folder / "cfg.yaml",
    }


def _validate(made: dict[str, Path], out: str, candidate: Path, *extra: str) -> dict:
    command = ["validate", str(made["heldout"]), str(candidate), "-o", str(made["folder"] / out)]
    command += ["--config", str(made["config"]), "--quiet", "--device", "cpu", *extra]
    assert main(command) == 0
    return json.loads((made["folder"] / out / "metrics.json").read_text())


def test_every_metric_with_the_model(made: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    m = _validate(made, "all", made["cand"], "--model", str(made["model"]))
    out = capsys.readouterr().out
    like = m["likelihood"]
    assert like["exact"] and like["method"] == "exact" and like["kind"] == "flow"
    assert like["total"]["n"] > 500 and like["total"]["stderr"] > 0
    assert set(like["per_target"]) >= {"Jet_pt", "Jet_btagDeepFlavB"}
    assert "held-out log-likelihood" in out
    # the training file came from the model's card; a real flow does not copy it
    assert any("training sample from the model's card" in n for n in m["notes"])
    assert m["memorisation"]["pvalue"] > 1e-3
    assert "copies" not in " ".join(m["verdict"]["reasons"])
    # the Inception analogue predicts the gen flavour, the config's categorical condition
    assert m["inception"]["classes"] == [0, 4, 5]
    for key in ("prd", "ndb", "multiple_testing"):
        assert m[key] is not None, key
    for key in ("prd", "ndb", "memorisation", "inception"):
        assert m["baseline"][key] is not None, key
        assert key in m["timings"]
    assert "likelihood" in m["timings"]


def test_training_sample_found_through_the_candidate(made: dict[str, Path]) -> None:
    m = _validate(made, "auto", made["cand"], "--metrics", "ks", "memorisation")
    assert any("named in the candidate's hepgen_metadata" in n for n in m["notes"])
    assert m["memorisation"]["n_train"] > 1000


def test_a_copier_is_flagged(made: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    """The training file itself as the candidate: every generated row is a training row."""
    metrics = ["--metrics", "ks", "c2st", "mmd", "memorisation"]
    m = _validate(made, "copier", made["train"], "--train", str(made["train"]), *metrics)
    assert m["memorisation"]["pvalue"] < 1e-3
    assert m["memorisation"]["statistic"] < -3
    assert m["verdict"]["verdict"] != "PASS"
    assert "copies its training sample" in m["verdict"]["reasons"][0]
    assert "data-copying test" in capsys.readouterr().out


def test_training_file_that_is_the_reference_is_refused(made: dict[str, Path]) -> None:
    files, notes = training_files(made["train"], None, made["cand"], made["train"])
    assert files == [] and "is the reference itself" in notes[0]
    files, notes = training_files(None, made["model"], made["cand"], made["heldout"])
    assert [f.name for f in files] == ["train.root"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--train", "nope.root"], "training file 'nope.root' (--train): no such file"),
        (["--label", "Jet_ptt"], "--label 'Jet_ptt': not a compared feature"),
        (["--units", "Jet_pt"], "--units 'Jet_pt': expected NAME=UNIT"),
        (["--style", "Belle"], "Belle"),
    ],
)
def test_bad_options_exit_2(
    made: dict[str, Path], capsys: pytest.CaptureFixture, extra: list[str], message: str
) -> None:
    command = ["validate", str(made["heldout"]), str(made["cand"])]
    command += ["-o", str(made["folder"] / "bad"), "--config", str(made["config"]), *extra]
    assert main([*command, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_model_needs_a_config(made: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    command = ["validate", str(made["heldout"]), str(made["cand"]), "-o", "x"]
    assert main([*command, "--model", str(made["model"])]) == 2
    assert "--model needs --config" in capsys.readouterr().err
