"""Tests of the LHCb-like PID calibration ntuple (:mod:`hepgen.sim.pid`) and its sPlot."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot

from hepgen.cli import main
from hepgen.errors import InputError
from hepgen.sim import PROCESSES, PidSimulation, chunk_seeds, simulate_to_file
from hepgen.sim.pid import BRANCHES, OBJECTS, PID_RESPONSES, SENTINEL
from hepgen.sim.splot import MassModel, fit_splot

N = 40_000


@pytest.fixture(scope="module")
def pid() -> ak.Array:
    return PidSimulation().generate(N, seed=5)


def both(events: ak.Array, name: str) -> np.ndarray:
    """The column ``name`` of both tracks, mu1 then mu2, shape (2 n,)."""
    return np.concatenate([ak.to_numpy(events[f"{p}_{name}"]) for p in OBJECTS])


def weighted_ecdf_distance(x: np.ndarray, w: np.ndarray, y: np.ndarray) -> float:
    """sup |F_w(t) - G(t)| of the weighted ECDF of x and the ECDF of y (KS statistic)."""
    grid = np.unique(np.concatenate([x, y]))
    order = np.argsort(x)
    cw = np.cumsum(w[order]) / w.sum()
    f = np.concatenate([[0.0], cw])[np.searchsorted(x[order], grid, side="right")]
    g = np.searchsorted(np.sort(y), grid, side="right") / len(y)
    return float(np.max(np.abs(f - g)))


def test_registered_with_tree_name() -> None:
    assert PROCESSES["pid"] is PidSimulation
    assert PidSimulation.tree_name == "DecayTree"


def test_branches_and_dtypes(pid: ak.Array) -> None:
    assert pid.fields == list(BRANCHES)
    for name, dtype in BRANCHES.items():
        assert ak.to_numpy(pid[name]).dtype == dtype, name
    assert len(BRANCHES) == 6 + 2 * 9
    kinematics = {"P", "PT", "ETA"}
    for prefix in OBJECTS:
        for name in (*PID_RESPONSES, *kinematics, "TRUEID"):
            assert f"{prefix}_{name}" in BRANCHES


def test_kinematics(pid: ak.Array) -> None:
    p, pt, eta = both(pid, "P"), both(pid, "PT"), both(pid, "ETA")
    assert p.min() >= 3000.0 and p.max() <= 500_000.0
    assert eta.min() >= 1.9 and eta.max() <= 4.9 and pt.min() >= 500.0
    assert np.allclose(pt, p / np.cosh(eta), rtol=1e-12)
    sig = np.tile(ak.to_numpy(pid.is_signal) == 1, 2)
    # background is softer
    assert np.median(p[sig]) > 1.25 * np.median(p[~sig])
    # the two tracks of a candidate are correlated in ln P
    r = np.corrcoef(np.log(ak.to_numpy(pid.mu1_P)), np.log(ak.to_numpy(pid.mu2_P)))[0, 1]
    assert 0.3 < r < 0.6
    n_tracks = ak.to_numpy(pid.nTracks)
    assert 5 <= n_tracks.min() and n_tracks.max() <= 999 and 130 < n_tracks.mean() < 175


def test_truth_ids(pid: ak.Array) -> None:
    sig = ak.to_numpy(pid.is_signal) == 1
    assert 0.63 < sig.mean() < 0.67
    assert np.all(ak.to_numpy(pid.mu1_TRUEID)[sig] == -13)  # mu+
    assert np.all(ak.to_numpy(pid.mu2_TRUEID)[sig] == 13)  # mu-
    bkg = np.abs(ak.to_numpy(pid.mu1_TRUEID)[~sig])
    fractions = [np.mean(bkg == k) for k in (211, 321, 13)]
    assert np.allclose(fractions, [0.65, 0.20, 0.15], atol=0.02)


def test_sentinels_a_few_percent_and_at_high_momentum(pid: ak.Array) -> None:
    p = both(pid, "P")
    pid_k, pid_p, pid_mu = both(pid, "PIDK"), both(pid, "PIDp"), both(pid, "PIDmu")
    k_sentinel = pid_k == SENTINEL
    # documented: ~2-3 % of the tracks, PIDK and PIDp on the same rows
    assert 0.015 < k_sentinel.mean() < 0.05
    assert np.array_equal(k_sentinel, pid_p == SENTINEL)
    high, low = p > 100_000.0, p < 50_000.0
    assert k_sentinel[high].mean() > 0.25 and k_sentinel[low].mean() < 0.02
    assert 0.002 < np.mean(pid_mu == SENTINEL) < 0.015
    # nothing else comes near the sentinel
    assert np.all((pid_k == SENTINEL) | (pid_k > -200.0))
    for name in ("PIDe", "ProbNNmu"):
        assert not np.any(both(pid, name) == SENTINEL)


def test_exact_zeros(pid: ak.Array) -> None:
    pid_e, eta = both(pid, "PIDe"), both(pid, "ETA")
    zero = pid_e == 0.0
    assert 0.015 < zero.mean() < 0.05
    assert zero[eta > 4.6].mean() > 0.5 and zero[eta < 4.0].mean() < 0.03
    prob = both(pid, "ProbNNmu")
    assert prob.min() == 0.0 and prob.max() == 1.0
    assert 0.001 < np.mean(prob == 0.0) < 0.02 and 0.001 < np.mean(prob == 1.0) < 0.03


def test_values_on_the_1e4_grid(pid: ak.Array) -> None:
    for name in PID_RESPONSES:
        x = both(pid, name)
        steps = x * 1e4
        assert np.max(np.abs(steps - np.rint(steps))) < 1e-6, name
        assert len(np.unique(x)) > 5000, name  # a grid, not a few values
    # kinematics are not rounded
    p = both(pid, "P")
    assert np.max(np.abs(p * 1e4 - np.rint(p * 1e4))) > 1e-3


def test_responses_correlated_with_each_other_and_with_conditions(pid: ak.Array) -> None:
    sig = np.tile(ak.to_numpy(pid.is_signal) == 1, 2)
    pid_k, pid_p, pid_mu = both(pid, "PIDK"), both(pid, "PIDp"), both(pid, "PIDmu")
    ok = sig & (pid_k != SENTINEL) & (pid_mu != SENTINEL)
    assert np.corrcoef(pid_k[ok], pid_p[ok])[0, 1] > 0.4
    prob = both(pid, "ProbNNmu")
    assert np.corrcoef(pid_mu[ok], prob[ok])[0, 1] > 0.4
    # muon DLL grows with momentum; RICH DLLs widen with the multiplicity
    p = both(pid, "P")
    soft, hard = ok & (p < 15_000), ok & (p > 40_000)
    assert np.median(pid_mu[hard]) > np.median(pid_mu[soft]) + 2.0
    n_tracks = np.tile(ak.to_numpy(pid.nTracks), 2)
    quiet, busy = ok & (n_tracks < 100), ok & (n_tracks > 250)
    iqr = [np.subtract(*np.percentile(pid_k[s], [75, 25])) for s in (busy, quiet)]
    assert iqr[0] > 1.3 * iqr[1]
    # long tails: beyond 5 robust sigmas far more often than a Gaussian (6e-7)
    centred = pid_k[ok] - np.median(pid_k[ok])
    width = np.subtract(*np.percentile(pid_k[ok], [84, 16])) / 2
    assert np.mean(np.abs(centred) > 5 * width) > 1e-3


def test_background_has_a_different_pid_response(pid: ak.Array) -> None:
    truth = both(pid, "TRUEID")
    pid_mu, pid_k = both(pid, "PIDmu"), both(pid, "PIDK")
    muon, pion, kaon = np.abs(truth) == 13, np.abs(truth) == 211, np.abs(truth) == 321
    assert np.median(pid_mu[muon & (pid_mu != SENTINEL)]) > 7
    assert np.median(pid_mu[pion & (pid_mu != SENTINEL)]) < -2
    assert (
        np.median(pid_k[kaon & (pid_k != SENTINEL)])
        > np.median(pid_k[pion & (pid_k != SENTINEL)]) + 8
    )


def test_mass_independent_of_pid_and_kinematics_within_species(pid: ak.Array) -> None:
    mass = ak.to_numpy(pid.Jpsi_M)
    for species in (0, 1):
        sel = ak.to_numpy(pid.is_signal) == species
        for name in ("mu1_P", "mu1_ETA", "mu1_ProbNNmu", "mu2_PIDe", "nTracks"):
            r = np.corrcoef(mass[sel], ak.to_numpy(pid[name])[sel])[0, 1]
            assert abs(r) < 0.03, (species, name, r)


def test_sweights_from_an_extended_ml_fit(pid: ak.Array) -> None:
    mass, sw = ak.to_numpy(pid.Jpsi_M), ak.to_numpy(pid.sw)
    fit = fit_splot(mass)
    assert fit.converged
    assert np.allclose(sw, fit.sweights(mass), rtol=0, atol=1e-12)
    assert sw.sum() == pytest.approx(fit.signal_yield, rel=1e-9)
    background = fit.sweights(mass, species=1)
    assert np.allclose(sw + background, 1.0, atol=1e-9)  # sWeights of all species sum to 1
    n_true = int(ak.sum(pid.is_signal))
    error = fit.to_dict()["signal_yield_error"]
    assert 100 < error < 300 and abs(fit.signal_yield - n_true) < 3 * error
    assert 0.1 < np.mean(sw < 0) < 0.4 and sw.min() > -1.0 and sw.max() < 1.5
    assert fit.model.mean == pytest.approx(3096.9, abs=0.5)
    assert fit.model.sigma == pytest.approx(14.0, abs=0.5)


@pytest.mark.parametrize("name", ["PIDmu", "ProbNNmu", "PIDK"])
def test_sweighted_pid_is_the_signal_pid_and_unweighted_is_not(pid: ak.Array, name: str) -> None:
    x = both(pid, name)
    sw = np.tile(ak.to_numpy(pid.sw), 2)
    sig = np.tile(ak.to_numpy(pid.is_signal) == 1, 2)
    truth = x[sig]
    d_weighted = weighted_ecdf_distance(x, sw, truth)
    d_plain = weighted_ecdf_distance(x, np.ones_like(x), truth)
    # the sWeighted ECDF matches the signal one within its statistical noise (~1/sqrt(n_eff))
    n_eff = sw.sum() ** 2 / np.sum(sw**2)
    assert d_weighted < 2.0 / np.sqrt(n_eff)
    # the unweighted sample is far off: the test has power
    assert d_plain > 5 * d_weighted and d_plain > 0.03
    ok = x != SENTINEL
    mean_w = np.sum((sw * x)[ok]) / np.sum(sw[ok])
    spread = np.std(truth[truth != SENTINEL])
    assert abs(mean_w - truth[truth != SENTINEL].mean()) < 0.05 * spread
    if name != "PIDK":  # pions (negative) and kaons (positive) nearly cancel in the mean
        assert abs(x[ok].mean() - truth[truth != SENTINEL].mean()) > 0.2 * spread


def test_reproducible_for_a_seed() -> None:
    a = PidSimulation().generate(500, seed=3)
    b = PidSimulation().generate(500, seed=3)
    c = PidSimulation().generate(500, seed=4)
    for name in BRANCHES:
        assert np.array_equal(ak.to_numpy(a[name]), ak.to_numpy(b[name])), name
    assert not np.array_equal(ak.to_numpy(a.mu1_PIDK), ak.to_numpy(c.mu1_PIDK))
    # species and masses come from their own stream
    is_signal, mass = PidSimulation().draw_species_mass(500, seed=3)
    assert np.array_equal(mass, ak.to_numpy(a.Jpsi_M))
    assert np.array_equal(is_signal, ak.to_numpy(a.is_signal) == 1)


def test_file_sweights_from_one_fit_of_the_whole_file(tmp_path) -> None:
    n, chunk = 3000, 1000
    path = simulate_to_file(
        tmp_path / "pid.root", "pid", n_events=n, seed=8, chunk_size=chunk, quiet=True
    )
    tree = uproot.open(path)["DecayTree"]
    types = {k: v.typename for k, v in tree.items()}
    assert types["eventNumber"] == "uint64_t" and types["nTracks"] == "int32_t"
    assert types["mu1_PIDK"] == "double" and types["mu2_TRUEID"] == "int32_t"
    data = tree.arrays(library="np")
    assert list(data) == list(BRANCHES)
    assert np.array_equal(data["eventNumber"], np.arange(1, n + 1))
    assert np.array_equal(data["runNumber"], 250_000 + (np.arange(n) // 10_000))
    # one fit over all chunks: the sWeights of the file sum to its fitted yield, and each
    # chunk's do not sum to the yield of a fit of that chunk alone
    fit = fit_splot(data["Jpsi_M"])
    assert np.allclose(data["sw"], fit.sweights(data["Jpsi_M"]), atol=1e-12)
    assert data["sw"].sum() == pytest.approx(fit.signal_yield, rel=1e-9)
    first = data["Jpsi_M"][:chunk]
    assert abs(data["sw"][:chunk].sum() - fit_splot(first).signal_yield) > 1e-6
    # chunk i is generate(size_i, child seed i, splot=the file's fit), renumbered
    (_, child) = chunk_seeds(8, n, chunk)[1]
    events = PidSimulation().generate(chunk, seed=child, splot=fit)
    for name in ("mu1_PIDK", "mu2_ProbNNmu", "Jpsi_M", "sw", "nTracks"):
        assert np.array_equal(data[name][chunk : 2 * chunk], ak.to_numpy(events[name])), name
    # one chunk: the file is generate() of that chunk's seed (its own fit)
    single = simulate_to_file(tmp_path / "one.root", "pid", n_events=n, seed=8, quiet=True)
    whole = uproot.open(single)["DecayTree"].arrays(["sw", "Jpsi_M"], library="np")
    direct = PidSimulation().generate(n, seed=chunk_seeds(8, n, n)[0][1])
    assert np.array_equal(whole["sw"], ak.to_numpy(direct.sw))


def test_bad_settings_and_sizes() -> None:
    with pytest.raises(InputError, match="signal_fraction"):
        PidSimulation(signal_fraction=0.0).generate(200, seed=1)
    with pytest.raises(InputError, match="sentinel_scale"):
        PidSimulation(sentinel_scale=3).generate(200, seed=1)
    with pytest.raises(InputError, match="at least 100 candidates"):
        PidSimulation().generate(50, seed=1)
    with pytest.raises(InputError, match="unknown option 'signal_frac'"):
        PidSimulation.from_options(signal_frac=0.5)
    empty = PidSimulation().generate(0, seed=1)
    assert len(empty) == 0 and empty.fields == list(BRANCHES)
    with pytest.raises(InputError, match="inside the fit window"):
        fit_splot(np.full(200, 2900.0))


def test_settings_change_the_sample() -> None:
    pure = PidSimulation(signal_fraction=0.95, sentinel_scale=0.0).generate(4000, seed=2)
    assert ak.mean(pure.is_signal) > 0.93
    assert not ak.any(pure.mu1_PIDK == SENTINEL) and not ak.any(pure.mu2_PIDmu == SENTINEL)
    sharp = PidSimulation(resolution_scale=0.5).generate(4000, seed=2)
    base = PidSimulation().generate(4000, seed=2)
    sel = ak.to_numpy(base.is_signal == 1) & ak.to_numpy(base.mu1_PIDK != SENTINEL)
    assert np.std(ak.to_numpy(sharp.mu1_PIDK)[sel]) < 0.7 * np.std(ak.to_numpy(base.mu1_PIDK)[sel])


def test_mass_model_normalised_and_sampled() -> None:
    model = MassModel()
    grid = np.linspace(model.low, model.high, 200_001)
    assert np.trapezoid(model.signal_pdf(grid), grid) == pytest.approx(1.0, abs=1e-6)
    assert np.trapezoid(model.background_pdf(grid), grid) == pytest.approx(1.0, abs=1e-6)
    rng = np.random.default_rng(0)
    sig = model.sample_signal(rng, 50_000)
    assert sig.min() >= model.low and sig.max() <= model.high
    # fraction within +-1 sigma of the peak as the density says
    inside = (grid > model.mean - model.sigma) & (grid < model.mean + model.sigma)
    expected = np.trapezoid(model.signal_pdf(grid) * inside, grid)
    assert np.mean(np.abs(sig - model.mean) < model.sigma) == pytest.approx(expected, abs=0.01)
    flat = MassModel(slope=0.0)
    assert flat.background_pdf(np.array([3100.0]))[0] == pytest.approx(1 / 200)


def test_cli_simulate_pid(tmp_path) -> None:
    out = tmp_path / "pid.root"
    command = ["simulate", "--process", "pid", "--quiet"]
    assert main([*command, "-n", "1000", "-o", str(out), "--set", "signal_fraction=0.8"]) == 0
    tree = uproot.open(out)["DecayTree"]
    assert tree.num_entries == 1000
    assert 0.75 < tree["is_signal"].array(library="np").mean() < 0.85
    # too few candidates for the mass fit: exit code 2, nothing written
    assert main([*command, "-n", "20", "-o", str(tmp_path / "x.root")]) == 2
    assert not (tmp_path / "x.root").exists()
