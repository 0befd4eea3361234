"""hepgen score / score_file: -log p of a density model per event, of a flow fast simulation per
matched reco object; every input branch kept; atomic output that never replaces an input;
errors that name the file and the branch."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from hepgen.anomaly.density import DensityModel
from hepgen.anomaly.score import score_file
from hepgen.cli import main
from hepgen.config import load_config
from hepgen.errors import InputError
from hepgen.fastsim import FastSim
from hepgen.io.matching import match_by_index
from hepgen.io.reader import read_events
from hepgen.io.writer import write_events
from hepgen.models import GANModel, NoLikelihoodError
from hepgen.resources import config_path
from hepgen.sim import simulate_to_file

FEATURES = [
    {"name": "mj1", "kind": "positive"},
    {"name": "mj2", "kind": "positive"},
    {"name": "tau21_j1", "kind": "bounded", "bounds": [0, 1]},
    {"name": "tau21_j2", "kind": "bounded", "bounds": [0, 1]},
]
CONDITIONS = [{"name": "mjj", "kind": "positive"}]


def columns(events):
    return {k: ak.to_numpy(events[k]) for k in events.fields}


@pytest.fixture(scope="module")
def dijet(tmp_path_factory):
    """A density model of QCD dijets (a trend in mjj and an unconditional residual flow; 10k
    background events, 5 epochs, about 4 s) and a
    file of 3000 events with 10 % resonance signal to score."""
    d = tmp_path_factory.mktemp("score")
    simulate_to_file(d / "bkg.root", "dijet", n_events=10_000, seed=1, quiet=True)
    simulate_to_file(
        d / "data.root", "dijet", n_events=3000, seed=2, quiet=True, signal_fraction=0.1
    )
    model = DensityModel(
        FEATURES,
        CONDITIONS,
        trend=1,
        conditional=False,
        flow={"n_transforms": 2, "hidden_features": 32, "n_blocks": 1},
        training={"max_epochs": 5, "batch_size": 512, "learning_rate": 3e-3},
        device="cpu",
    )
    model.fit(columns(read_events(d / "bkg.root")), quiet=True)
    model.save(d / "model")
    return d, model


@pytest.fixture(scope="module")
def fastsim_dir(jets_file, tmp_path_factory):
    """A tiny flow fast simulation of the reference jets (1 epoch, about 2 s)."""
    cfg = load_config(config_path("toy_jets.yaml")).override(
        {
            "model.flow": {"n_transforms": 1, "hidden_features": 16, "n_bins": 4},
            "model.fakes": False,
            "training": {"max_epochs": 1, "batch_size": 1024, "selection": "loss"},
        }
    )
    out = tmp_path_factory.mktemp("fastsim") / "model"
    FastSim(cfg, device="cpu").fit(files=[str(jets_file)], output=out, quiet=True)
    return out


def test_density_scores_every_event_and_keeps_the_branches(dijet):
    d, model = dijet
    out = d / "scored.root"
    stats = score_file(d / "model", d / "data.root", out, step_size=700, quiet=True)
    assert stats["kind"] == "density" and stats["branch"] == "anomaly_score"
    assert stats["n_events"] == stats["n_scored"] == 3000 and stats["n_nonfinite"] == 0
    src, got = read_events(d / "data.root"), read_events(out)
    assert got.fields == [*src.fields, "anomaly_score"]
    for field in src.fields:
        a, b = ak.to_numpy(src[field]), ak.to_numpy(got[field])
        assert a.dtype == b.dtype and np.array_equal(a, b), field
    score = ak.to_numpy(got["anomaly_score"])
    assert score.dtype == np.float64
    # the model's own log_prob (up to float32 rounding: the flow's batches differ in chunks)
    assert np.allclose(score, -model.log_prob(columns(src)), rtol=0, atol=1e-5)
    # resonance events are unlikely under the QCD density: measured AUC 0.9998, mean score
    # 9.4 nats for signal against -5.6 for background
    labels = ak.to_numpy(src["label"])
    assert labels.sum() == 300
    assert roc_auc_score(labels, score) > 0.9
    assert score[labels == 1].mean() > score[labels == 0].mean() + 5


def test_density_score_errors(dijet, tmp_path):
    d, _ = dijet
    data = d / "data.root"
    before = data.read_bytes()
    with pytest.raises(InputError, match="never overwrites its input"):
        score_file(d / "model", data, data, quiet=True)
    assert data.read_bytes() == before
    events = read_events(data)
    lacking = tmp_path / "lacking.root"
    write_events(
        lacking, ak.zip({k: events[k] for k in events.fields if k != "tau21_j2"}, depth_limit=1)
    )
    with pytest.raises(
        InputError,
        match=r"lacking\.root', tree 'Events': missing branch\(es\) "
        r"\['tau21_j2'\]",
    ):
        score_file(d / "model", lacking, tmp_path / "o.root", quiet=True)
    nan = tmp_path / "nan.root"
    mj1 = ak.to_numpy(events["mj1"]).copy()
    mj1[[2500, 2600]] = np.nan
    write_events(nan, ak.with_field(events, mj1, "mj1"))
    with pytest.raises(
        InputError,
        match=r"nan\.root', tree 'Events', entries 2000-2999: "
        r".*'mj1': 2 of 1000 events are not finite \(2 NaN",
    ):
        score_file(d / "model", nan, tmp_path / "o.root", step_size=1000, block=1000, quiet=True)
    assert not (tmp_path / "o.root").exists()
    with pytest.raises(InputError, match="already has a branch 'label'"):
        score_file(d / "model", data, tmp_path / "o.root", branch="label", quiet=True)
    with pytest.raises(InputError, match="not valid"):
        score_file(d / "model", data, tmp_path / "o.root", branch="a b", quiet=True)


def test_fastsim_scores_matched_reco_objects(fastsim_dir, tmp_path):
    src_path = tmp_path / "jets.root"
    simulate_to_file(src_path, "jets", n_events=400, seed=21, quiet=True)
    out = tmp_path / "scored.root"
    stats = score_file(fastsim_dir, src_path, out, step_size=150, quiet=True)
    one_chunk = tmp_path / "one_chunk.root"
    score_file(fastsim_dir, src_path, one_chunk, quiet=True)
    assert stats["kind"] == "fastsim" and stats["branch"] == "Jet_anomaly_score"
    src, got = read_events(src_path, nonfinite="keep"), read_events(out, nonfinite="keep")
    assert set(got.fields) == {*src.fields, "Jet_anomaly_score"}
    for field in src.fields:
        assert ak.all(ak.ravel(got[field]) == ak.ravel(src[field])), field
    score = ak.to_numpy(ak.flatten(got["Jet_anomaly_score"]))
    assert ak.all(ak.num(got["Jet_anomaly_score"]) == got["nJet"])
    matching = match_by_index(src["Jet_genJetIdx"], ak.to_numpy(src["nGenJet"]))
    matched = matching.reco_matched
    assert (~matched).sum() > 50 and matched.sum() > 500  # pile-up jets and real ones
    assert np.isnan(score[~matched]).all()
    assert np.isfinite(score[matched]).all()
    assert stats["n_scored"] == matched.sum() and stats["n_unmatched"] == (~matched).sum()
    # the values are -FastSim.log_prob of the matched pairs (in one chunk: the integer
    # target Jet_nConstituents is scored at one dequantisation draw per chunk)
    sim = FastSim.load(fastsim_dir)
    gen_rows, reco_rows = matching.pairs()
    flat = {k: ak.to_numpy(ak.flatten(src[k])) for k in sim.condition_names + sim.target_names}
    conds = {k: flat[k][gen_rows] for k in sim.condition_names}
    targets = {k: flat[k][reco_rows] for k in sim.target_names}
    whole = ak.to_numpy(
        ak.flatten(
            read_events(one_chunk, ["Jet_anomaly_score"], nonfinite="keep")["Jet_anomaly_score"]
        )
    )
    assert np.array_equal(np.isnan(whole), np.isnan(score))
    assert np.allclose(whole[reco_rows], -sim.log_prob(targets, conds), rtol=0, atol=1e-5)
    # in chunks of 150 events only the dequantisation draws differ (measured correlation
    # 0.988; single rows move by up to 1.5 nats)
    assert np.corrcoef(whole[reco_rows], score[reco_rows])[0, 1] > 0.95
    # a density model refuses a fast simulation's directory, by name
    with pytest.raises(InputError, match="holds a fast simulation"):
        DensityModel.load(fastsim_dir)


def test_gan_fastsim_has_no_likelihood(fastsim_dir, jets_file, tmp_path):
    sim = FastSim.load(fastsim_dir)
    sim.response_ = GANModel()
    with pytest.raises(NoLikelihoodError, match="GAN response"):
        score_file(sim, jets_file, tmp_path / "o.root", quiet=True)
    assert not (tmp_path / "o.root").exists()


def test_cli_score_and_info(dijet, tmp_path, capsys):
    d, _ = dijet
    out = tmp_path / "cli.root"
    assert (
        main(
            [
                "score",
                str(d / "model"),
                str(d / "data.root"),
                "-o",
                str(out),
                "--branch",
                "nll",
                "--step-size",
                "1000",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "scored 3000 events" in printed and "into branch nll" in printed
    assert "nll" in read_events(out).fields
    assert (
        main(
            [
                "score",
                str(d / "model"),
                str(d / "data.root"),
                "-o",
                str(tmp_path / "q.root"),
                "--quiet",
            ]
        )
        == 0
    )
    # --quiet silences progress only: the result lines are output
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 2 and printed[0].startswith("scored 3000 events")
    assert printed[1] == f"output: {tmp_path / 'q.root'}"
    # an existing output needs --overwrite
    assert main(["score", str(d / "model"), str(d / "data.root"), "-o", str(out)]) == 2
    assert "already exists; use --overwrite" in capsys.readouterr().err
    assert (
        main(
            [
                "score",
                str(d / "model"),
                str(d / "data.root"),
                "-o",
                str(out),
                "--quiet",
                "--overwrite",
            ]
        )
        == 0
    )
    assert "anomaly_score" in read_events(out).fields
    assert main(["info", str(d / "model")]) == 0
    info = capsys.readouterr().out
    assert "kind: density" in info and "conditions: mjj (positive)" in info
    assert "kept epoch" in info and "validity domain" in info
    assert "trend: degree 1 polynomial" in info and "residuals without the conditions" in info
    # bad input: one line, exit code 2
    assert (
        main(
            ["score", str(d / "model"), str(tmp_path / "none.root"), "-o", str(tmp_path / "x.root")]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith("hepgen: error: ") and err.count("\n") == 1
    assert main(["score", str(tmp_path), str(d / "data.root"), "-o", str(tmp_path / "x.root")]) == 2
    assert "not a hepgen model directory" in capsys.readouterr().err
