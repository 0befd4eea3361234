"""Physics and I/O tests of the reference simulations in :mod:`hepgen.sim`."""

from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot

import hepgen.sim
import hepgen.sim._common
import hepgen.sim.dijet
import hepgen.sim.jets
from hepgen.errors import InputError
from hepgen.sim import PROCESSES, DijetSimulation, JetSimulation, PidSimulation, simulate_to_file
from hepgen.sim._common import crystal_ball


def flat(array: ak.Array) -> np.ndarray:
    return ak.to_numpy(ak.flatten(array, axis=None))


@pytest.fixture(scope="module")
def jets() -> ak.Array:
    """Default settings."""
    return JetSimulation().generate(40_000, seed=11)


@pytest.fixture(scope="module")
def hard_jets() -> ak.Array:
    """A harder spectrum so that high-pt bins are populated."""
    return JetSimulation(pt_index=1.2, b_fraction=0.15, c_fraction=0.1).generate(40_000, seed=12)


def matched(events: ak.Array) -> dict[str, np.ndarray]:
    """Flat columns of the reco jets matched to a gen jet, with their gen partners."""
    idx = events.Jet_genJetIdx
    ok = idx >= 0
    safe = ak.where(ok, idx, 0)
    out = {
        "pt": events.Jet_pt[ok],
        "eta": events.Jet_eta[ok],
        "phi": events.Jet_phi[ok],
        "mass": events.Jet_mass[ok],
        "btag": events.Jet_btagDeepFlavB[ok],
        "nconst": events.Jet_nConstituents[ok],
        "hadron": events.Jet_hadronFlavour[ok],
    }
    for name in ("pt", "eta", "phi", "mass", "hadronFlavour", "partonFlavour"):
        out["gen_" + name] = events["GenJet_" + name][safe][ok]
    return {k: flat(v).astype(np.float64) for k, v in out.items()}


def gen_matched_mask(events: ak.Array) -> np.ndarray:
    """Flat boolean per gen jet: has a reco partner."""
    counts = ak.to_numpy(ak.num(events.GenJet_pt))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    idx = events.Jet_genJetIdx
    local = ak.to_numpy(ak.flatten(idx))
    evt = np.repeat(np.arange(len(events)), ak.to_numpy(ak.num(idx)))
    keep = local >= 0
    out = np.zeros(offsets[-1], dtype=bool)
    out[offsets[evt[keep]] + local[keep]] = True
    return out


def robust_width(x: np.ndarray) -> float:
    q16, q50, q84 = np.percentile(x, [16, 50, 84])
    return (q84 - q16) / 2 / q50


# -- jets: structure --------------------------------------------------------------------------


def test_jets_deterministic_for_a_seed() -> None:
    sim = JetSimulation()
    a, b, c = sim.generate(500, seed=5), sim.generate(500, seed=5), sim.generate(500, seed=6)
    for field in a.fields:
        assert np.array_equal(flat(a[field]), flat(b[field])), field
    assert not np.array_equal(flat(a.GenJet_pt), flat(c.GenJet_pt)[: len(flat(a.GenJet_pt))])
    assert not np.array_equal(flat(a.Jet_pt)[:100], flat(c.Jet_pt)[:100])


def test_jets_branches_and_dtypes(jets: ak.Array) -> None:
    assert list(jets.fields) == list(hepgen.sim.jets.BRANCHES)
    for name, dtype in hepgen.sim.jets.BRANCHES.items():
        assert flat(jets[name]).dtype == dtype, name
    for prefix in ("GenJet", "Jet"):
        counts = [ak.to_numpy(ak.num(jets[f])) for f in jets.fields if f.startswith(prefix + "_")]
        assert all(np.array_equal(c, counts[0]) for c in counts[1:])
    event = ak.to_numpy(jets.event)
    assert np.array_equal(event, np.arange(1, len(jets) + 1))
    assert np.all(ak.to_numpy(jets.run) == 1) and np.all(ak.to_numpy(jets.genWeight) == 1)
    assert ak.to_numpy(jets.luminosityBlock)[-1] == 40


def test_empty_generate() -> None:
    events = JetSimulation().generate(0, seed=1)
    assert len(events) == 0 and list(events.fields) == list(hepgen.sim.jets.BRANCHES)


def test_gen_spectrum_range_and_falling(jets: ak.Array) -> None:
    pt = flat(jets.GenJet_pt)
    assert pt.min() >= 20.0 and pt.max() <= 1000.0
    assert pt.max() > 500.0
    counts, _ = np.histogram(pt, bins=np.geomspace(20, 1000, 9))
    assert np.all(np.diff(counts) < 0), counts
    # steep: each factor ~1.6 in pt costs more than a factor 1.5 in rate
    assert counts[0] > 15 * counts[5]
    eta = flat(jets.GenJet_eta)
    assert np.abs(eta).max() < 5.0 and np.mean(np.abs(eta) > 2.5) > 0.05
    phi = flat(jets.GenJet_phi)
    assert phi.min() >= -np.pi and phi.max() < np.pi
    n = ak.to_numpy(ak.num(jets.GenJet_pt))
    assert n.min() >= 2 and 2.8 < n.mean() < 4.0


def test_sorted_by_pt(jets: ak.Array) -> None:
    for field in ("GenJet_pt", "Jet_pt"):
        pt = jets[field]
        assert ak.all(pt[:, 1:] <= pt[:, :-1]), field


def test_gen_jet_index_valid_and_unique(jets: ak.Array) -> None:
    idx = jets.Jet_genJetIdx
    ngen = ak.num(jets.GenJet_pt)
    assert ak.all((idx == -1) | ((idx >= 0) & (idx < ngen)))
    matched_idx = idx[idx >= 0]
    sorted_idx = ak.sort(matched_idx, axis=1)
    assert ak.all(sorted_idx[:, 1:] != sorted_idx[:, :-1])
    m = matched(jets)
    # matched jets are close to their gen partner
    dphi = np.remainder(m["phi"] - m["gen_phi"] + np.pi, 2 * np.pi) - np.pi
    assert np.percentile(np.hypot(m["eta"] - m["gen_eta"], dphi), 99) < 0.2
    assert np.array_equal(m["hadron"], m["gen_hadronFlavour"])


def test_flavour_consistency(jets: ak.Array) -> None:
    hadron = flat(jets.GenJet_hadronFlavour).astype(int)
    parton = flat(jets.GenJet_partonFlavour)
    pt = flat(jets.GenJet_pt)
    assert set(np.unique(hadron)) == {0, 4, 5}
    assert set(np.unique(np.abs(parton))) == {1, 2, 3, 4, 5, 21}
    assert np.all(hadron[np.abs(parton) == 5] == 5)
    assert np.all(hadron[np.abs(parton) == 4] == 4)
    assert np.all(hadron[np.abs(parton) <= 3] == 0)
    assert 0.05 < np.mean(hadron == 5) < 0.07 and 0.07 < np.mean(hadron == 4) < 0.09
    assert np.mean(parton[(hadron == 5)] == 21) < 0.25  # gluon splitting only
    gluon_lo = np.mean(parton[(pt < 30)] == 21)
    gluon_hi = np.mean(parton[(pt > 200)] == 21)
    assert gluon_lo > 0.55 and gluon_hi < gluon_lo - 0.15
    # gluon jets are heavier than quark jets at fixed pt
    sel = (pt > 50) & (pt < 100) & (hadron == 0)
    mass = flat(jets.GenJet_mass)
    assert np.median(mass[sel & (parton == 21)]) > 1.25 * np.median(mass[sel & (parton != 21)])


# -- jets: detector response ------------------------------------------------------------------


def test_flavour_dependent_response(hard_jets: ak.Array) -> None:
    m = matched(hard_jets)
    r = m["pt"] / m["gen_pt"]
    sel = (m["gen_pt"] > 60) & (m["gen_pt"] < 400) & (np.abs(m["gen_eta"]) < 2.5)
    light = sel & (m["gen_hadronFlavour"] == 0) & (np.abs(m["gen_partonFlavour"]) <= 3)
    b = sel & (m["gen_hadronFlavour"] == 5)
    assert b.sum() > 2000 and light.sum() > 5000
    assert abs(np.median(r[light]) - 1.0) < 0.02
    assert np.median(r[b]) < np.median(r[light]) - 0.02
    # semileptonic decays: heavier low tail for b jets
    tail_b, tail_light = np.mean(r[b] < 0.75), np.mean(r[light] < 0.75)
    assert tail_b > 0.08 and tail_b > 3 * tail_light
    # gluon jets respond lower than light-quark jets
    gluon = sel & (m["gen_hadronFlavour"] == 0) & (m["gen_partonFlavour"] == 21)
    assert np.median(r[gluon]) < np.median(r[light]) - 0.01


def test_resolution_shrinks_with_pt(hard_jets: ak.Array) -> None:
    m = matched(hard_jets)
    r = m["pt"] / m["gen_pt"]
    base = (np.abs(m["gen_eta"]) < 1.3) & (m["gen_hadronFlavour"] == 0)
    widths = []
    for lo, hi in [(40, 60), (100, 150), (300, 1000)]:
        sel = base & (m["gen_pt"] > lo) & (m["gen_pt"] < hi)
        assert sel.sum() > 1500
        widths.append(robust_width(r[sel]))
    assert widths[0] > widths[1] > widths[2]
    assert 0.12 < widths[0] < 0.22 and 0.04 < widths[2] < 0.08
    # forward jets are measured worse than central ones at the same pt
    fwd = (np.abs(m["gen_eta"]) > 3.0) & (m["gen_pt"] > 40) & (m["gen_pt"] < 60)
    assert fwd.sum() > 300
    assert robust_width(r[fwd]) > 1.15 * widths[0]


def test_response_has_tails_beyond_gaussian() -> None:
    z = crystal_ball(np.random.default_rng(0), 400_000, 1.8, 5.0, 2.2, 8.0)
    q16, q50, q84 = np.percentile(z, [16, 50, 84])
    sigma = (q84 - q16) / 2
    assert abs(q50) < 0.02 and abs(sigma - 1.0) < 0.05
    assert np.mean(z < -4) > 20 * 3.2e-5  # Gaussian: P(z < -4) = 3.2e-5
    assert np.mean(z > 4) > 5 * 3.2e-5
    assert np.mean(z < -4) > np.mean(z > 4)


def test_mass_and_direction_response(hard_jets: ak.Array) -> None:
    m = matched(hard_jets)
    r_pt = np.log(m["pt"] / m["gen_pt"])
    r_m = np.log(m["mass"] / m["gen_mass"])
    assert np.corrcoef(r_pt, r_m)[0, 1] > 0.2
    low = (m["gen_pt"] > 30) & (m["gen_pt"] < 40) & (np.abs(m["gen_eta"]) < 2.5)
    high = (m["gen_pt"] > 300) & (np.abs(m["gen_eta"]) < 2.5)
    d_eta = m["eta"] - m["gen_eta"]
    assert np.std(d_eta[low]) > 3 * np.std(d_eta[high])
    assert robust_width(m["mass"][high] / m["gen_mass"][high]) < robust_width(
        m["mass"][low] / m["gen_mass"][low]
    )


def test_efficiency_turn_on_and_acceptance(hard_jets: ak.Array) -> None:
    found = gen_matched_mask(hard_jets)
    pt = flat(hard_jets.GenJet_pt)
    abseta = np.abs(flat(hard_jets.GenJet_eta))
    central = abseta < 1.0
    eff = [
        found[central & (pt > lo) & (pt < hi)].mean()
        for lo, hi in [(20, 25), (30, 40), (60, 100), (200, 1000)]
    ]
    assert eff[0] < 0.7 and eff[0] < eff[1] < eff[2]
    assert eff[2] > 0.97 and abs(eff[3] - 0.99) < 0.01
    hard = pt > 60
    assert found[hard & (abseta > 4.8)].mean() < 0.05
    dip = found[hard & (abseta > 1.4) & (abseta < 1.5)].mean()
    barrel = found[hard & central].mean()
    assert dip < barrel - 0.02
    reco_eta = flat(hard_jets.Jet_eta)
    assert np.abs(reco_eta).max() < 4.7 and flat(hard_jets.Jet_pt).min() > 15.0


def test_btag_shape(hard_jets: ak.Array) -> None:
    score = flat(hard_jets.Jet_btagDeepFlavB)
    assert score.min() >= 0.0 and score.max() <= 1.0
    m = matched(hard_jets)
    tracker = (np.abs(m["eta"]) < 2.4) & (m["gen_pt"] > 30) & (m["gen_pt"] < 200)
    b = m["btag"][tracker & (m["gen_hadronFlavour"] == 5)]
    c = m["btag"][tracker & (m["gen_hadronFlavour"] == 4)]
    light = m["btag"][tracker & (m["gen_hadronFlavour"] == 0)]
    assert np.mean(b > 0.5) > 0.6 and np.mean(light < 0.1) > 0.8
    assert np.mean(light > 0.5) < 0.04
    assert np.mean(light > 0.5) < np.mean(c > 0.5) < np.mean(b > 0.5)
    # peaks near 0 and 1
    hist, _ = np.histogram(score, bins=20, range=(0, 1))
    assert hist[0] > hist[10] and hist[-1] > hist[10]
    # performance degrades outside the tracker and at high pt
    is_b = m["gen_hadronFlavour"] == 5
    forward = m["btag"][is_b & (np.abs(m["eta"]) > 2.5)]
    high = m["btag"][is_b & (np.abs(m["eta"]) < 2.4) & (m["gen_pt"] > 500)]
    assert np.mean(forward > 0.5) < 0.1
    assert np.mean(high > 0.5) < np.mean(b > 0.5) - 0.05


def test_constituents_gluon_vs_quark(hard_jets: ak.Array) -> None:
    m = matched(hard_jets)
    n = m["nconst"]
    assert n.min() >= 1 and n.max() <= 255 and np.all(n == np.round(n))
    light = m["gen_hadronFlavour"] == 0
    gluon = light & (m["gen_partonFlavour"] == 21)
    quark = light & (np.abs(m["gen_partonFlavour"]) <= 3)
    for lo, hi in [(50, 80), (200, 400)]:
        sel = (m["gen_pt"] > lo) & (m["gen_pt"] < hi)
        ratio = n[sel & gluon].mean() / n[sel & quark].mean()
        assert 1.3 < ratio < 1.6, (lo, ratio)
    sel_q = quark & (m["gen_pt"] > 50) & (m["gen_pt"] < 80)
    # over-dispersed (negative-binomial-like) counts
    assert n[sel_q].var() > n[sel_q].mean()
    assert n[quark & (m["gen_pt"] > 300)].mean() > 1.4 * n[sel_q].mean()


def test_fake_jets(jets: ak.Array) -> None:
    fake = jets.Jet_genJetIdx == -1
    n_fake = ak.to_numpy(ak.sum(fake, axis=1))
    assert 0.9 < n_fake.mean() < 1.1  # Poisson(1)
    assert 0.9 < n_fake.var() < 1.1
    assert np.all(flat(jets.Jet_hadronFlavour[fake]) == 0)
    pt = flat(jets.Jet_pt[fake])
    assert pt.min() > 15.0 and np.median(pt) < 22.0
    assert np.mean(flat(jets.Jet_btagDeepFlavB[fake]) < 0.1) > 0.75
    none = JetSimulation(pileup_jets=0.0).generate(2000, seed=1)
    assert not ak.any(none.Jet_genJetIdx == -1)


# -- dijet --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dijet() -> ak.Array:
    return DijetSimulation(signal_fraction=0.05).generate(200_000, seed=21)


def test_dijet_deterministic_and_branches() -> None:
    sim = DijetSimulation(signal_fraction=0.1)
    a, b, c = sim.generate(1000, seed=1), sim.generate(1000, seed=1), sim.generate(1000, seed=2)
    assert list(a.fields) == list(hepgen.sim.dijet.BRANCHES)
    for name, dtype in hepgen.sim.dijet.BRANCHES.items():
        assert ak.to_numpy(a[name]).dtype == dtype
        assert np.array_equal(ak.to_numpy(a[name]), ak.to_numpy(b[name]))
    assert not np.array_equal(ak.to_numpy(a.mjj), ak.to_numpy(c.mjj))


def test_dijet_signal_fraction_and_label(dijet: ak.Array) -> None:
    label = ak.to_numpy(dijet.label)
    assert set(np.unique(label)) == {0, 1}
    assert label.sum() == 10_000
    assert ak.sum(DijetSimulation().generate(5000, seed=1).label) == 0
    mj1, mj2 = ak.to_numpy(dijet.mj1), ak.to_numpy(dijet.mj2)
    assert np.all(mj1 >= mj2) and np.all(mj2 > 0)
    for name in ("tau21_j1", "tau21_j2"):
        tau = ak.to_numpy(dijet[name])
        assert tau.min() >= 0 and tau.max() <= 1


def test_dijet_signal_shape(dijet: ak.Array) -> None:
    sig = ak.to_numpy(dijet.label) == 1
    mjj = ak.to_numpy(dijet.mjj)[sig]
    assert abs(np.median(mjj) - 3.5) < 0.02
    assert 0.05 < robust_width(mjj) < 0.07
    mj1, mj2 = ak.to_numpy(dijet.mj1)[sig], ak.to_numpy(dijet.mj2)[sig]
    assert abs(np.median(mj1) - 0.5) < 0.01 and abs(np.median(mj2) - 0.1) < 0.003
    assert robust_width(mj1) < 0.1
    for name in ("tau21_j1", "tau21_j2"):
        assert 0.2 < np.median(ak.to_numpy(dijet[name])[sig]) < 0.4
        assert np.median(ak.to_numpy(dijet[name])[~sig]) > 0.55


def test_dijet_background_spectrum_and_correlations(dijet: ak.Array) -> None:
    bkg = ak.to_numpy(dijet.label) == 0
    mjj = ak.to_numpy(dijet.mjj)[bkg]
    assert mjj.min() >= 1.5 and mjj.max() <= 7.0
    counts, _ = np.histogram(mjj, bins=np.linspace(1.5, 6.0, 10))
    assert np.all(np.diff(counts) < 0)
    # jet mass scales with mjj (jet pt ~ mjj / 2)
    mj1 = ak.to_numpy(dijet.mj1)[bkg]
    medians = [np.median(mj1[(mjj > lo) & (mjj < hi)]) for lo, hi in [(1.5, 2), (2.5, 3), (3.5, 5)]]
    assert medians[0] < medians[1] < medians[2] and medians[2] > 1.6 * medians[0]
    assert np.corrcoef(np.log(mjj), np.log(mj1))[0, 1] > 0.25
    # the two jet masses are correlated, and tau21 depends on the jet mass
    mj2 = ak.to_numpy(dijet.mj2)[bkg]
    assert np.corrcoef(np.log(mj1), np.log(mj2))[0, 1] > 0.2
    tau = ak.to_numpy(dijet.tau21_j1)[bkg]
    assert np.corrcoef(np.log(mj1), tau)[0, 1] > 0.1
    # the signal is rare in the background: heavy, two-prong j1 near m_Y
    window = (mjj > 3.3) & (mjj < 3.7)
    like_signal = window & (np.abs(mj1 - 0.5) < 0.05) & (tau < 0.35)
    assert like_signal.sum() < 0.002 * window.sum()


def test_dijet_bad_settings() -> None:
    with pytest.raises(InputError, match="my1"):
        DijetSimulation(my1=3.0, my2=1.0).generate(10)
    with pytest.raises(InputError, match="signal_fraction"):
        DijetSimulation(signal_fraction=1.5).generate(10)


# -- options and files ----------------------------------------------------------------------


def test_unknown_option_raises(tmp_path) -> None:
    with pytest.raises(InputError, match=r"'pt_mni'.*did you mean 'pt_min'"):
        simulate_to_file(tmp_path / "x.root", "jets", n_events=10, quiet=True, pt_mni=30.0)
    with pytest.raises(InputError, match="'mxx'"):
        simulate_to_file(tmp_path / "x.root", "dijet", n_events=10, quiet=True, mxx=3.0)
    with pytest.raises(InputError, match="unknown process 'jet'"):
        simulate_to_file(tmp_path / "x.root", "jet", n_events=10, quiet=True)
    with pytest.raises(InputError, match="pt_max"):
        simulate_to_file(tmp_path / "x.root", "jets", n_events=10, quiet=True, pt_max=10.0)
    with pytest.raises(InputError):
        JetSimulation().generate(-1)
    assert not list(tmp_path.iterdir())


def test_simulate_to_file_jets(tmp_path) -> None:
    path = simulate_to_file(
        tmp_path / "sub" / "jets.root",
        "jets",
        n_events=2500,
        seed=4,
        chunk_size=1000,
        quiet=True,
        pileup_jets=2.0,
    )
    assert path.exists() and [p.name for p in path.parent.iterdir()] == ["jets.root"]
    tree = uproot.open(path)["Events"]
    assert tree.num_entries == 2500
    types = {k: v.typename for k, v in tree.items()}
    assert types["nJet"] in ("int32_t", "uint32_t") and types["nGenJet"] in ("int32_t", "uint32_t")
    expected = {
        "run": "uint32_t",
        "luminosityBlock": "uint32_t",
        "event": "uint64_t",
        "genWeight": "float",
        "GenJet_pt": "float[]",
        "GenJet_hadronFlavour": "uint8_t[]",
        "GenJet_partonFlavour": "int32_t[]",
        "Jet_pt": "float[]",
        "Jet_btagDeepFlavB": "float[]",
        "Jet_nConstituents": "uint8_t[]",
        "Jet_hadronFlavour": "int32_t[]",
        "Jet_genJetIdx": "int32_t[]",
    }
    for name, typename in expected.items():
        assert types[name] == typename, name
    arrays = tree.arrays(library="ak")
    assert np.array_equal(ak.to_numpy(arrays.event), np.arange(1, 2501))
    assert np.array_equal(ak.to_numpy(arrays.nJet), ak.to_numpy(ak.num(arrays.Jet_pt)))
    assert ak.to_numpy(arrays.luminosityBlock)[-1] == 3
    # chunk i is generate(size_i, SeedSequence(seed).spawn(n)[i]) with renumbered events
    child = np.random.SeedSequence(4).spawn(3)[1]
    chunk = JetSimulation(pileup_jets=2.0).generate(1000, seed=child)
    assert ak.all(arrays.Jet_pt[1000:2000] == chunk.Jet_pt)
    # reproducible
    again = simulate_to_file(
        tmp_path / "again.root",
        "jets",
        n_events=2500,
        seed=4,
        chunk_size=1000,
        quiet=True,
        pileup_jets=2.0,
    )
    other = uproot.open(again)["Events"].arrays(["Jet_pt"], library="ak")
    assert ak.all(other.Jet_pt == arrays.Jet_pt)


def test_simulate_to_file_dijet(tmp_path) -> None:
    path = simulate_to_file(
        tmp_path / "dijet.root",
        "dijet",
        n_events=3000,
        seed=0,
        chunk_size=1000,
        quiet=True,
        signal_fraction=0.01,
    )
    tree = uproot.open(path)["Events"]
    types = {k: v.typename for k, v in tree.items()}
    assert types == {
        "event": "uint64_t",
        "label": "int32_t",
        "mjj": "float",
        "mj1": "float",
        "mj2": "float",
        "tau21_j1": "float",
        "tau21_j2": "float",
    }
    data = tree.arrays(library="np")
    assert data["label"].sum() == 30
    assert np.array_equal(data["event"], np.arange(1, 3001))


def test_chunk_seeds_are_lazy_and_equal_to_spawned_ones() -> None:
    from hepgen.sim import chunk_seeds, iter_chunk_seeds

    spawned = np.random.SeedSequence(4).spawn(3)
    chunks = chunk_seeds(4, 2500, 1000)
    assert [size for size, _ in chunks] == [1000, 1000, 500]
    for (_, lazy), child in zip(chunks, spawned, strict=True):
        assert np.array_equal(lazy.generate_state(8), child.generate_state(8))
    # 10**10 chunks: the first is there at once, nothing is built up front
    first = next(iter_chunk_seeds(0, 10**15, 100_000))
    assert first[0] == 100_000
    assert np.array_equal(
        first[1].generate_state(4), np.random.SeedSequence(0).spawn(1)[0].generate_state(4)
    )


def test_simulate_refuses_outputs_larger_than_the_free_disk(tmp_path) -> None:
    import shutil

    from hepgen.sim import BYTES_PER_EVENT, estimated_file_size

    free = shutil.disk_usage(tmp_path).free
    n = int(free / BYTES_PER_EVENT["dijet"]) + 1000
    assert estimated_file_size("dijet", n) > free
    with pytest.raises(InputError, match=rf"{n} dijet events would take at least .* free in"):
        simulate_to_file(tmp_path / "sub" / "x.root", "dijet", n_events=n, quiet=True)
    assert not list(tmp_path.iterdir())
    # the bound is a lower bound of the real size
    out = simulate_to_file(tmp_path / "d.root", "dijet", n_events=20_000, quiet=True)
    assert out.stat().st_size > estimated_file_size("dijet", 20_000)
    out = simulate_to_file(tmp_path / "j.root", "jets", n_events=20_000, quiet=True)
    assert out.stat().st_size > estimated_file_size("jets", 20_000)


def test_processes_and_params() -> None:
    assert PROCESSES == {"jets": JetSimulation, "dijet": DijetSimulation, "pid": PidSimulation}
    sim = JetSimulation(pt_min=30.0)
    assert sim.get_params()["pt_min"] == 30.0
    assert repr(sim) == "JetSimulation(pt_min=30.0)"
