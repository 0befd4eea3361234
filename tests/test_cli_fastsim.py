"""hepgen train / generate / info end to end on small data, and their bad-input errors."""

from __future__ import annotations

import json
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
from conftest import train_small_fastsim

from hepgen.cli import main
from hepgen.io.reader import read_events
from hepgen.sim import simulate_to_file


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("fastsim_cli")
    # --set goes through the config's validation and ends up in the model card
    train_small_fastsim(d, 8000, 2, "--set", "model.flow.n_bins=6")
    simulate_to_file(d / "test.root", "jets", n_events=2000, seed=12, quiet=True)
    return d


def test_train_writes_a_model_and_refuses_to_overwrite(workdir, capsys):
    assert (workdir / "model" / "hepgen-model.json").is_file()
    assert (
        main(
            [
                "train",
                str(workdir / "cfg.yaml"),
                "--files",
                str(workdir / "train.root"),
                "-o",
                str(workdir / "model"),
                "--quiet",
            ]
        )
        == 2
    )
    assert "already holds a model; use --resume" in capsys.readouterr().err


def test_set_overrides_reach_the_model(workdir):
    card = json.loads((workdir / "model" / "hepgen-model.json").read_text())
    assert card["config"]["model"]["flow"]["n_bins"] == 6
    assert card["architecture"]["settings"]["n_bins"] == 6


def test_info_prints_the_model_card(workdir, capsys):
    assert main(["info", str(workdir / "model")]) == 0
    out = capsys.readouterr().out
    for text in ("conditions: GenJet_pt", "validity domain", "sha256", "kept epoch", "nflows 0.14"):
        assert text in out


def test_generate_keeps_branches_and_writes_nanoaod_layout(workdir, capsys):
    out = workdir / "gen.root"
    assert (
        main(
            [
                "generate",
                str(workdir / "model"),
                str(workdir / "test.root"),
                "-o",
                str(out),
                "--batch-size",
                "700",
                "--seed",
                "3",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert "generated" in capsys.readouterr().out
    src = read_events(workdir / "test.root", nonfinite="keep")
    gen = read_events(out, nonfinite="keep")
    assert len(gen) == len(src) == 2000
    for field in ("run", "event", "genWeight", "GenJet_pt", "GenJet_hadronFlavour"):
        assert ak.all(gen[field] == src[field])
    assert ak.all(ak.num(gen["Jet_pt"]) == gen["nJet"])
    idx = gen["Jet_genJetIdx"]
    assert ak.all(idx < gen["nGenJet"][:, None])
    # the same seed and chunking reproduce the file
    again = workdir / "gen2.root"
    assert (
        main(
            [
                "generate",
                str(workdir / "model"),
                str(workdir / "test.root"),
                "-o",
                str(again),
                "--batch-size",
                "700",
                "--seed",
                "3",
                "--quiet",
            ]
        )
        == 0
    )
    assert np.array_equal(
        ak.to_numpy(ak.flatten(read_events(again, ["Jet_pt"])["Jet_pt"])),
        ak.to_numpy(ak.flatten(gen["Jet_pt"])),
    )


def test_generate_oversampling(workdir, capsys):
    out = workdir / "gen_k3.root"
    assert (
        main(
            [
                "generate",
                str(workdir / "model"),
                str(workdir / "test.root"),
                "-o",
                str(out),
                "--batch-size",
                "700",
                "--oversample",
                "3",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert "x 3 draws" in capsys.readouterr().out
    src = read_events(workdir / "test.root", ["event", "nGenJet"])
    gen = read_events(out, ["event", "nGenJet", "nJet", "Jet_pt", "hepgen_weight", "hepgen_draw"])
    assert len(gen) == 3 * len(src)
    assert np.array_equal(ak.to_numpy(gen["event"]), np.repeat(ak.to_numpy(src["event"]), 3))
    assert np.allclose(ak.to_numpy(gen["hepgen_weight"]), 1 / 3)
    assert np.array_equal(ak.to_numpy(gen["hepgen_draw"]), np.tile([0, 1, 2], len(src)))
    assert ak.all(ak.num(gen["Jet_pt"]) == gen["nJet"])
    assert (
        main(
            [
                "generate",
                str(workdir / "model"),
                str(workdir / "test.root"),
                "-o",
                str(workdir / "bad.root"),
                "--oversample",
                "0",
            ]
        )
        == 2
    )


def test_generate_bad_input(workdir, tmp_path, capsys):
    model = str(workdir / "model")
    assert (
        main(
            [
                "generate",
                model,
                str(workdir / "test.root"),
                "-o",
                str(workdir / "test.root"),
                "--quiet",
            ]
        )
        == 2
    )
    assert "never overwrites its input" in capsys.readouterr().err
    lacking = tmp_path / "lacking.root"
    import uproot

    with uproot.recreate(lacking) as f:
        f.mktree("Events", {"nGenJet": np.int32, "GenJet_pt": "var * float32"})
        f["Events"].extend({"nGenJet": np.array([1], np.int32), "GenJet_pt": ak.Array([[30.0]])})
    assert main(["generate", model, str(lacking), "-o", str(tmp_path / "o.root"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "missing condition branch(es) ['GenJet_eta', 'GenJet_phi'" in err
    nan_file = tmp_path / "nan.root"
    src = read_events(
        workdir / "test.root",
        ["nGenJet", "GenJet_pt", "GenJet_eta", "GenJet_phi", "GenJet_mass", "GenJet_hadronFlavour"],
        entry_stop=50,
    )
    eta = ak.to_numpy(ak.flatten(src["GenJet_eta"])).copy()
    eta[3] = np.nan
    fields = {f: src[f] for f in src.fields}
    fields["GenJet_eta"] = ak.unflatten(eta, ak.num(src["GenJet_eta"]))
    from hepgen.io.writer import write_events

    write_events(nan_file, ak.zip(fields, depth_limit=1))
    assert main(["generate", model, str(nan_file), "-o", str(tmp_path / "o.root"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "nan.root', tree 'Events', entries 0-49" in err and "GenJet_eta" in err, err
    assert "1 NaN" in err
    assert (
        main(
            [
                "generate",
                str(tmp_path),
                str(workdir / "test.root"),
                "-o",
                str(tmp_path / "o.root"),
                "--quiet",
            ]
        )
        == 2
    )
    assert "not a hepgen model directory" in capsys.readouterr().err
    assert not (tmp_path / "o.root").exists()
