"""Per-event likelihood p-values (hepgen.anomaly.pvalues, hepgen score --pvalue): uniform for
events drawn from the model, piled up near 0 for events from elsewhere, comparable across
conditions, seeded and independent of the chunking."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
from scipy import stats

from hepgen.anomaly.density import DensityModel
from hepgen.anomaly.pvalues import (
    PValues,
    density_pvalues,
    fastsim_pvalues,
    likelihood_pvalues,
    summarize_counts,
)
from hepgen.anomaly.score import score_file
from hepgen.cli import main
from hepgen.errors import InputError
from hepgen.fastsim import FastSim
from hepgen.io.reader import read_events
from hepgen.io.writer import write_events
from hepgen.sim import simulate_to_file

# ---------------------------------------------------------------- a closed-form model


def gauss_log_prob(cols):
    """N(x; mu = 3 c, sigma = c): the density's scale depends on the condition c."""
    c = cols["c"]
    return -0.5 * ((cols["x"] - 3.0 * c) / c) ** 2 - np.log(c * np.sqrt(2.0 * np.pi))


def gauss_sample(conds, seed):
    c = conds["c"]
    return {"x": np.random.default_rng(seed).normal(3.0 * c, c)}


def gauss_events(c, seed, shift=0.0):
    """Events of the closed-form model at conditions ``c``, ``shift`` standard deviations off."""
    x = np.random.default_rng(seed).normal(3.0 * c, c) + shift * c
    return {"x": x, "c": c}


def test_gaussian_pvalues_are_uniform_at_every_condition_and_powerful():
    """Two condition bins whose densities differ by a factor 10 in scale: the raw -log p are
    not comparable between them, the p-values are uniform in each; events 1.5 sigma off pile
    up near 0."""
    c = np.repeat([0.5, 5.0], 5000)
    events = gauss_events(c, seed=1)
    pv = likelihood_pvalues(gauss_log_prob, gauss_sample, events, ["c"], n_samples=200, seed=2)
    score = -gauss_log_prob(events)
    low, high = c == 0.5, c == 5.0
    # -log p differs by log(10) = 2.3 nats between the bins: a cut on it selects by c
    assert score[high].mean() - score[low].mean() == pytest.approx(np.log(10.0), abs=0.05)
    cut = np.quantile(score[low], 0.95)
    assert np.mean(score[high] > cut) > 0.5  # measured 1.0: "anomalous" only by its c
    for rows in (low, high):
        p = pv.p[rows]
        assert stats.kstest(p, "uniform").pvalue > 0.01
        assert abs(p.mean() - 0.5) < 0.01
        assert abs(np.mean(p <= 0.05) - 0.05) < 0.01
    # power: 1.5 sigma off, both bins alike; measured fraction below 0.05: 0.32, mean 0.25
    shifted = gauss_events(c, seed=3, shift=1.5)
    alt = likelihood_pvalues(gauss_log_prob, gauss_sample, shifted, ["c"], n_samples=200, seed=2)
    for rows in (low, high):
        assert np.mean(alt.p[rows] <= 0.05) > 0.25 and alt.p[rows].mean() < 0.3
    # 3 sigma off: most events below 0.05 (measured 0.84)
    far = gauss_events(c, seed=3, shift=3.0)
    assert (
        np.mean(likelihood_pvalues(gauss_log_prob, gauss_sample, far, ["c"], 200).p <= 0.05) > 0.8
    )


def test_seeding_chunks_resolution_and_nan():
    c = np.full(300, 2.0)
    events = gauss_events(c, seed=4)
    a = likelihood_pvalues(gauss_log_prob, gauss_sample, events, ["c"], 99, seed=5, chunk=40)
    b = likelihood_pvalues(gauss_log_prob, gauss_sample, events, ["c"], 99, seed=5, chunk=40)
    other = likelihood_pvalues(gauss_log_prob, gauss_sample, events, ["c"], 99, seed=6, chunk=40)
    assert np.array_equal(a.p, b.p) and not np.array_equal(a.p, other.p)
    # the draws of a chunk depend on (seed, its first row): the first rows' p-values do not
    # depend on how many rows follow
    head = {k: v[:100] for k, v in events.items()}
    part = likelihood_pvalues(gauss_log_prob, gauss_sample, head, ["c"], 99, seed=5, chunk=40)
    assert np.array_equal(part.p, a.p[:100])
    # the grid (k + 1) / (K + 1) and its resolution
    assert a.resolution == 0.01 and a.n_samples == 99
    assert np.allclose(a.p * 100, np.round(a.p * 100)) and a.p.min() >= 0.01 and a.p.max() <= 1
    assert a.to_dict()["resolution"] == 0.01 and a.to_dict()["n_events"] == 300
    # an event whose log p is not finite: NaN, counted, no draws made for it
    log_p = gauss_log_prob(events)
    log_p[[3, 7]] = [np.nan, -np.inf]
    calls = []

    def sample(conds, seed):
        calls.append(len(conds["c"]))
        return gauss_sample(conds, seed)

    nan = likelihood_pvalues(gauss_log_prob, sample, events, ["c"], 99, seed=5, log_p=log_p)
    assert np.isnan(nan.p[[3, 7]]).all() and nan.n_nan == 2 and np.isfinite(nan.p).sum() == 298
    assert sum(calls) == 298 * 99

    # draws outside the model's domain (non-finite, or a NaN log p) count as least likely
    def bad_sample(conds, seed):
        x = gauss_sample(conds, seed)["x"]
        x[::2] = np.nan
        return {"x": x}

    worst = likelihood_pvalues(gauss_log_prob, bad_sample, events, ["c"], 10, seed=1)
    assert worst.n_draws_nonfinite == 300 * 5 and (worst.p >= 6 / 11).all()
    # the summary of summed counts
    total = {k: a.counts()[k] + nan.counts()[k] for k in a.counts()}
    summary = summarize_counts(total)
    assert summary["n_pvalues"] == 598 and summary["n_nan"] == 2
    assert summary["mean"] == pytest.approx((a.p.sum() + np.nansum(nan.p)) / 598)
    assert isinstance(a, PValues)


def test_bad_arguments():
    events = gauss_events(np.ones(5), seed=1)
    for kwargs, match in [
        ({"n_samples": 0}, "n_samples must be an integer >= 1"),
        ({"seed": -1}, "seed must be an integer >= 0"),
        ({"chunk": 0}, "chunk must be an integer >= 1"),
        ({"log_p": np.zeros(4)}, r"log p of shape \(4,\), expected \(5,\)"),
    ]:
        with pytest.raises(InputError, match=match):
            likelihood_pvalues(gauss_log_prob, gauss_sample, events, ["c"], **kwargs)
    with pytest.raises(InputError, match=r"condition column\(s\) \['m'\] missing"):
        likelihood_pvalues(gauss_log_prob, gauss_sample, events, ["m"])


# ---------------------------------------------------------------- a trained density model


@pytest.fixture(scope="module")
def toy():
    """A small density model p(x1, x2 | m) of x1 = 2m + N(0, 0.5), x2 = -m + N(0, 0.3),
    m ~ U(0, 1) (20k events, 3 epochs, about 3 s)."""
    rng = np.random.default_rng(0)
    m = rng.uniform(0.0, 1.0, 20_000)
    data = {"m": m, "x1": 2 * m + rng.normal(0, 0.5, m.size), "x2": -m + rng.normal(0, 0.3, m.size)}
    return DensityModel(
        [{"name": "x1"}, {"name": "x2"}],
        [{"name": "m"}],
        flow={"n_transforms": 1, "hidden_features": 16, "n_blocks": 1},
        training={"max_epochs": 3, "batch_size": 500},
        device="cpu",
    ).fit(data, quiet=True)


def test_density_model_pvalues_are_calibrated(toy):
    """1e4 events drawn from the model itself at conditions spread over its range, K = 200:
    measured KS p 0.27, mean 0.5004, fraction at or below 0.05 0.0505."""
    m = np.random.default_rng(1).uniform(0.01, 0.99, 10_000)
    events = toy.sample({"m": m}, seed=2)
    pv = density_pvalues(toy, events, n_samples=200, seed=3)
    assert pv.n_nan == 0 and pv.n_draws_nonfinite == 0
    assert stats.kstest(pv.p, "uniform").pvalue > 0.01
    # the exact mean of (k + 1) / (K + 1) for uniform k is (K + 2) / (2 (K + 1)) = 0.5025
    assert abs(pv.p.mean() - 0.5) < 0.01
    assert abs(np.mean(pv.p <= 0.05) - 0.05) < 0.007  # 3 sigma of a binomial of 1e4
    # the same within each half of the condition range
    for rows in (m < 0.5, m >= 0.5):
        assert stats.kstest(pv.p[rows], "uniform").pvalue > 0.01


def _widened(toy, m, seed, factor):
    """Model draws whose deviations from the toy's means are ``factor`` times wider."""
    d = toy.sample({"m": m}, seed=seed)
    return {"m": m, "x1": 2 * m + factor * (d["x1"] - 2 * m), "x2": -m + factor * (d["x2"] + m)}


def test_density_model_pvalues_pile_up_for_other_events(toy):
    """Events three times as wide as the model (1000 events, K = 200): measured fraction at
    or below 0.05: 0.73 (1e4 events: 0.72); +1.5 sd in both features: 0.30, +2 sd: 0.51."""
    m = np.random.default_rng(4).uniform(0.01, 0.99, 1000)
    pv = density_pvalues(toy, _widened(toy, m, 5, 3.0), n_samples=200, seed=3)
    assert np.mean(pv.p <= 0.05) > 0.6 and pv.p.mean() < 0.2
    d = toy.sample({"m": m}, seed=6)
    shifted = {"m": m, "x1": d["x1"] + 1.5 * 0.5, "x2": d["x2"] + 1.5 * 0.3}
    alt = density_pvalues(toy, shifted, n_samples=200, seed=3)
    assert np.mean(alt.p <= 0.05) > 0.2 and alt.p.mean() < 0.3


@pytest.mark.slow
def test_density_model_power_on_1e4_events(toy):
    """The brief's numbers on 1e4 events (about 30 s): fraction at or below 0.05 of events
    three times as wide 0.72, of events +2 sd off in both features 0.51."""
    m = np.random.default_rng(7).uniform(0.01, 0.99, 10_000)
    pv = density_pvalues(toy, _widened(toy, m, 8, 3.0), n_samples=200, seed=3)
    assert np.mean(pv.p <= 0.05) > 0.65
    d = toy.sample({"m": m}, seed=9)
    shifted = {"m": m, "x1": d["x1"] + 2 * 0.5, "x2": d["x2"] + 2 * 0.3}
    assert np.mean(density_pvalues(toy, shifted, n_samples=200, seed=3).p <= 0.05) > 0.45


# ---------------------------------------------------------------- hepgen score --pvalue


@pytest.fixture(scope="module")
def toy_files(toy, tmp_path_factory):
    """The toy model's directory and a file of 2500 events: 2000 from the model, 500 far off."""
    d = tmp_path_factory.mktemp("pvalues")
    toy.save(d / "model")
    m = np.random.default_rng(10).uniform(0.01, 0.99, 2500)
    events = toy.sample({"m": m}, seed=11)
    events["x1"][2000:] += 3.0
    events["label"] = (np.arange(2500) >= 2000).astype(np.int32)
    write_events(d / "data.root", ak.zip(events, depth_limit=1))
    return d


def test_score_file_writes_pvalues_independent_of_step_size(toy_files, tmp_path):
    d = toy_files
    runs = {}
    for step in (1000, 100_000):
        out = tmp_path / f"step{step}.root"
        kw = {"step_size": step, "block": 500, "pvalue_samples": 50, "seed": 3, "quiet": True}
        runs[step] = score_file(d / "model", d / "data.root", out, **kw)
    stats_ = runs[1000]
    assert stats_["pvalue"]["branch"] == "anomaly_score_pvalue"
    assert stats_["pvalue"]["n_samples"] == 50 and stats_["pvalue"]["resolution"] == 1 / 51
    assert stats_["pvalue"]["n_pvalues"] == 2500 and stats_["pvalue"]["n_nan"] == 0
    assert stats_["manifest"]["pvalue"]["seed"] == 3
    a = read_events(tmp_path / "step1000.root")
    b = read_events(tmp_path / "step100000.root")
    p = ak.to_numpy(a["anomaly_score_pvalue"])
    assert p.dtype == np.float64
    assert np.array_equal(p, ak.to_numpy(b["anomaly_score_pvalue"]))
    # model events: about uniform; far-off events (x1 + 6 sd): mostly at the resolution
    # (measured 0.84 of them; mean 0.03)
    label = ak.to_numpy(a["label"])
    assert abs(p[label == 0].mean() - 0.5) < 0.03
    assert np.mean(p[label == 1] <= 1 / 51 + 1e-12) > 0.75 and p[label == 1].mean() < 0.06
    # another seed, other draws
    other = score_file(
        d / "model", d / "data.root", tmp_path / "s4.root", pvalue_samples=50, seed=4, quiet=True
    )
    assert other["pvalue"]["seed"] == 4
    q = ak.to_numpy(read_events(tmp_path / "s4.root")["anomaly_score_pvalue"])
    assert not np.array_equal(p, q) and abs(p.mean() - q.mean()) < 0.02
    with pytest.raises(InputError, match="expected an integer K >= 19"):
        score_file(d / "model", d / "data.root", tmp_path / "x.root", pvalue_samples=5)


def test_cli_score_pvalue(toy_files, tmp_path, capsys):
    d = toy_files
    out = tmp_path / "cli.root"
    args = ["score", str(d / "model"), str(d / "data.root"), "-o", str(out), "--quiet"]
    assert main([*args, "--pvalue", "--pvalue-samples", "50", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 3 and printed[0].startswith("scored 2500 events")
    assert printed[1].startswith("p-values of 2500 rows into branch anomaly_score_pvalue: K = 50")
    assert "resolution 1/(K+1) = 0.02" in printed[1] and "seed 0" in printed[1]
    assert "anomaly_score_pvalue" in read_events(out).fields
    for bad in (["--pvalue", "--pvalue-samples", "0"], ["--pvalue", "--pvalue-samples", "x"]):
        assert main([*args, "--overwrite", *bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("hepgen: error: ") and err.count("\n") == 1
        assert "K >= 19" in err and "Traceback" not in err
    assert main([*args, "--overwrite", "--pvalue-samples", "50"]) == 2
    err = capsys.readouterr().err
    assert "only with --pvalue" in err and err.count("\n") == 1


# ---------------------------------------------------------------- a flow fast simulation


@pytest.mark.filterwarnings("ignore:feature 'Jet_btagDeepFlavB'")
def test_fastsim_pvalues_per_matched_object(jets_file, tmp_path):
    """A tiny flow fast simulation (1 epoch): the p-value branch beside the score, NaN where the
    score is NaN (unmatched reco objects)."""
    from hepgen.config import load_config
    from hepgen.resources import config_path

    cfg = load_config(config_path("toy_jets.yaml")).override(
        {
            "model.flow": {"n_transforms": 1, "hidden_features": 16, "n_bins": 4},
            "model.fakes": False,
            "training": {"max_epochs": 1, "batch_size": 1024, "selection": "loss"},
        }
    )
    model = tmp_path / "model"
    FastSim(cfg, device="cpu").fit(files=[str(jets_file)], output=model, quiet=True)
    src = tmp_path / "jets.root"
    simulate_to_file(src, "jets", n_events=150, seed=21, quiet=True)
    out = tmp_path / "scored.root"
    res = score_file(model, src, out, pvalue_samples=20, seed=1, quiet=True)
    got = read_events(out, nonfinite="keep")
    score = ak.to_numpy(ak.flatten(got["Jet_anomaly_score"]))
    p = ak.to_numpy(ak.flatten(got["Jet_anomaly_score_pvalue"]))
    assert np.array_equal(np.isnan(score), np.isnan(p)) and np.isnan(p).any()
    assert res["pvalue"]["n_pvalues"] == res["n_scored"] == np.isfinite(p).sum()
    assert ((p >= 1 / 21 - 1e-12) & (p <= 1))[np.isfinite(p)].all()
    # the function itself on the matched objects: p-values in the grid, seeded
    sim = FastSim.load(model)
    gen = read_events(src)
    conds = {k: ak.to_numpy(ak.flatten(gen[k]))[:50] for k in sim.condition_names}
    targets = sim.sample(conds, seed=2)
    one = fastsim_pvalues(sim, conds, targets, 20, seed=5)
    assert np.array_equal(one.p, fastsim_pvalues(sim, conds, targets, 20, seed=5).p)
    assert one.n_nan == 0 and 0.2 < one.p.mean() < 0.8  # draws of the model: about uniform
    # draws with the truncation trick are not from the density: refused
    sim.set_sampling(truncation=1.0)
    with pytest.raises(InputError, match="truncation trick"):
        fastsim_pvalues(sim, conds, targets, 20)
    with pytest.raises(InputError, match="truncation trick"):
        score_file(sim, src, tmp_path / "t.root", pvalue_samples=20, quiet=True)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
def test_objects_layout_pvalues_per_object(tmp_path):
    """A two-muon objects layout (flow, 2 epochs): one p-value branch per object, NaN where the
    object was not reconstructed (its score is NaN)."""
    import uproot

    rng = np.random.default_rng(1)
    n = 3000
    cols = {"nTracks": rng.poisson(100, n).astype(np.int32)}
    for mu in ("mu1", "mu2"):
        momentum = np.exp(rng.normal(10, 0.7, n)).astype(np.float32)
        reco = rng.random(n) < 0.7
        pidk = (np.log(momentum) + rng.normal(0, 1, n)).astype(np.float32)
        pidk[~reco] = np.nan
        cols |= {f"{mu}_P": momentum, f"{mu}_PIDK": pidk, f"{mu}_isReco": reco}
    with uproot.recreate(tmp_path / "objects.root") as f:
        f["DecayTree"] = cols
    (tmp_path / "objects.yaml").write_text(
        "data:\n  files: [objects.root]\n  tree: DecayTree\n  layout: objects\n"
        "  objects: [mu1, mu2]\n  reconstructed: isReco\n"
        "features:\n"
        "  - {name: P, role: condition, kind: positive}\n"
        "  - {name: PIDK, role: target}\n"
        "model:\n  flow: {n_transforms: 1, hidden_features: 16, n_bins: 4}\n"
        "  efficiency: {n_estimators: 20}\n"
        "training: {max_epochs: 2, batch_size: 256, selection: loss}\n"
    )
    model = tmp_path / "model"
    args = ["train", str(tmp_path / "objects.yaml"), "-o", str(model), "--quiet"]
    assert main([*args, "--device", "cpu"]) == 0
    out = tmp_path / "scored.root"
    res = score_file(model, tmp_path / "objects.root", out, pvalue_samples=20, quiet=True)
    assert res["pvalue"]["branch"] == "mu1_anomaly_score_pvalue, mu2_anomaly_score_pvalue"
    got = read_events(out, tree="DecayTree", nonfinite="keep")
    for mu in ("mu1", "mu2"):
        score = ak.to_numpy(got[f"{mu}_anomaly_score"])
        p = ak.to_numpy(got[f"{mu}_anomaly_score_pvalue"])
        assert np.array_equal(np.isnan(p), ~cols[f"{mu}_isReco"])
        assert np.array_equal(np.isnan(p), np.isnan(score))
        assert abs(np.nanmean(p) - 0.5) < 0.1  # a model fitted to these rows
