"""FastSim: fit on the reference simulation, save/load, simulate in NanoAOD layout, bad input."""

from __future__ import annotations

import json

import awkward as ak
import numpy as np
import pytest

from hepgen.config import load_config
from hepgen.errors import InputError
from hepgen.fastsim import FastSim, event_split
from hepgen.io.reader import read_events
from hepgen.resources import config_path

GEN = ["nGenJet", "GenJet_pt", "GenJet_eta", "GenJet_phi", "GenJet_mass", "GenJet_hadronFlavour"]


def small_config():
    return load_config(config_path("toy_jets.yaml")).override(
        {
            "model.flow": {"n_transforms": 3, "hidden_features": 32, "n_bins": 8},
            "training": {"max_epochs": 3, "batch_size": 1024, "learning_rate": 2e-3},
        }
    )


@pytest.fixture(scope="module")
def fitted(jets_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "m"
    sim = FastSim(small_config(), device="cpu").fit(files=[str(jets_file)], output=out, quiet=True)
    return sim, out


def test_event_split_is_seeded_and_sized():
    a, b = event_split(1000, 0.2, 3), event_split(1000, 0.2, 3)
    assert np.array_equal(a, b) and a.sum() == 200
    assert not np.array_equal(a, event_split(1000, 0.2, 4))


def test_model_directory_contract(fitted):
    sim, out = fitted
    names = {p.name for p in out.iterdir()}
    assert {
        "hepgen-model.json",
        "flow.safetensors",
        "flow.json",
        "efficiency.json",
        "efficiency.meta.json",
        "fakes_flow.safetensors",
        "fakes_flow.json",
    } <= names
    assert not [p for p in out.rglob("*") if p.suffix in (".pt", ".pkl", ".pickle")]
    card = json.loads((out / "hepgen-model.json").read_text())
    assert card["format"] == "hepgen-model" and card["format_version"] == 1
    assert card["provenance"]["inputs"][0]["sha256"]
    assert {"torch", "nflows", "hepgen"} <= set(card["provenance"]["versions"])
    assert set(card["domain"]) == set(sim.condition_names)
    assert card["training"]["selection"] == "metric"
    assert card["training"]["best_loss_epoch"] >= 1  # both choices recorded
    assert card["data_summary"]["n_train_pairs"] > 0


def test_simulate_layout_and_rates(fitted, jets_file):
    _, out = fitted
    loaded = FastSim.load(out)
    events = read_events(jets_file, GEN, entry_stop=2000)
    reco = loaded.simulate(events, seed=1)
    again = loaded.simulate(events, seed=1)
    assert ak.all(reco["Jet_pt"] == again["Jet_pt"])  # seeded
    assert len(reco) == 2000
    assert reco.fields == [*loaded.target_names, "Jet_genJetIdx"]
    idx = reco["Jet_genJetIdx"]
    n_gen = ak.to_numpy(events["nGenJet"])
    assert ak.all(idx < n_gen[:, None]) and ak.all(idx >= -1)
    # dtypes of the full simulation (float32, uint8) come back
    assert str(ak.type(reco["Jet_pt"]).content.content) == "float32"
    assert str(ak.type(reco["Jet_nConstituents"]).content.content) == "uint8"
    # efficiency and fake rate match the full simulation within a few per cent
    full = read_events(jets_file, ["Jet_genJetIdx"], entry_stop=2000)
    truth_idx = ak.flatten(full["Jet_genJetIdx"])
    truth_eff = float(ak.sum(truth_idx >= 0)) / n_gen.sum()
    eff = float(ak.sum(ak.flatten(idx) >= 0)) / n_gen.sum()
    assert eff == pytest.approx(truth_eff, abs=0.03)
    truth_fakes = float(ak.sum(truth_idx < 0)) / len(full)
    fakes = float(ak.sum(ak.flatten(idx) < 0)) / len(reco)
    assert fakes == pytest.approx(truth_fakes, rel=0.15)
    # the response is learned: median reco/gen pt of matched jets near the full simulation's
    gen_pt = events["GenJet_pt"]
    matched = idx >= 0
    resp = ak.flatten(reco["Jet_pt"][matched] / gen_pt[idx[matched]])
    assert float(np.median(ak.to_numpy(resp))) == pytest.approx(1.0, abs=0.05)


def test_oversampling_gives_independent_draws_with_weights(fitted, jets_file):
    sim, _ = fitted
    events = read_events(jets_file, GEN, entry_stop=500)
    k = 4
    reco = sim.simulate(events, seed=2, oversample=k)
    assert len(reco) == k * len(events)
    assert np.all(ak.to_numpy(reco["hepgen_weight"]) == np.float32(0.25))
    assert np.array_equal(ak.to_numpy(reco["hepgen_draw"]), np.tile(np.arange(k), len(events)))
    idx = reco["Jet_genJetIdx"]
    n_gen = np.repeat(ak.to_numpy(events["nGenJet"]), k)
    assert ak.all(idx < n_gen[:, None])
    # the draws of one event differ (own efficiency decisions, responses and fakes) ...
    first = ak.to_numpy(ak.firsts(reco["Jet_pt"][::k], axis=1), allow_missing=True)
    second = ak.to_numpy(ak.firsts(reco["Jet_pt"][1::k], axis=1), allow_missing=True)
    assert np.mean(first != second) > 0.9
    # ... and the weighted oversampled sample has the efficiency of a plain one
    plain = sim.simulate(events[np.repeat(np.arange(len(events)), k)], seed=3)
    eff_k = float(ak.sum(ak.flatten(idx) >= 0)) / n_gen.sum()
    eff_1 = float(ak.sum(ak.flatten(plain["Jet_genJetIdx"]) >= 0)) / n_gen.sum()
    assert eff_k == pytest.approx(eff_1, abs=0.02)
    with pytest.raises(ValueError, match="oversample"):
        sim.simulate(events, oversample=0)


def test_flat_tables_numpy_mapping_and_pandas(fitted, jets_file):
    sim, _ = fitted
    events = read_events(jets_file, GEN, entry_stop=1500)
    flat = {k: ak.to_numpy(ak.flatten(events[k])) for k in sim.condition_names}
    n = len(flat["GenJet_pt"])
    out = sim.simulate(flat, seed=4)
    assert set(out) == {*sim.condition_names, *sim.target_names, "efficiency", "reconstructed"}
    assert all(len(v) == n for v in out.values())
    assert out["Jet_nConstituents"].dtype == np.uint8 and out["reconstructed"].dtype == bool
    # the efficiency draw follows the model's probabilities; the responses are those of sample()
    assert np.mean(out["reconstructed"]) == pytest.approx(np.mean(out["efficiency"]), abs=0.03)
    matrix = np.column_stack([flat[k] for k in sim.condition_names])
    assert np.array_equal(sim.simulate(matrix, seed=4)["Jet_pt"], out["Jet_pt"])
    twice = sim.simulate(flat, seed=4, oversample=2)
    assert len(twice["Jet_pt"]) == 2 * n and np.all(twice["hepgen_weight"] == np.float32(0.5))
    assert np.array_equal(twice["GenJet_pt"][::2], flat["GenJet_pt"])
    with pytest.raises(InputError, match=r"no column\(s\) \['GenJet_mass'\]"):
        sim.simulate({k: v for k, v in flat.items() if k != "GenJet_mass"})
    with pytest.raises(InputError, match=r"shape \(n, 5\)"):
        sim.simulate(matrix[:, :3])
    pd = pytest.importorskip("pandas")
    frame = sim.simulate(pd.DataFrame(flat), seed=4)
    assert isinstance(frame, pd.DataFrame) and len(frame) == n
    assert np.array_equal(frame["Jet_pt"].to_numpy(), out["Jet_pt"])


def test_save_load_identical(fitted, jets_file):
    sim, out = fitted
    loaded = FastSim.load(out)
    events = read_events(jets_file, GEN, entry_stop=300)
    flat = {k: ak.to_numpy(ak.flatten(events[k])) for k in sim.condition_names}
    a, b = sim.sample(flat, seed=5), loaded.sample(flat, seed=5)
    for k in a:
        assert np.array_equal(a[k], b[k])
    assert np.allclose(sim.log_prob(a, flat), loaded.log_prob(b, flat))


def test_bad_model_directories(fitted, tmp_path):
    _, out = fitted
    with pytest.raises(InputError, match="not a hepgen model directory"):
        FastSim.load(tmp_path)
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    card = json.loads((broken / "hepgen-model.json").read_text())
    card["format_version"] = 99
    (broken / "hepgen-model.json").write_text(json.dumps(card))
    with pytest.raises(InputError, match="format_version 99; this hepgen reads version 1"):
        FastSim.load(broken)
    truncated = tmp_path / "truncated"
    shutil.copytree(out, truncated)
    data = (truncated / "flow.safetensors").read_bytes()
    (truncated / "flow.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"flow\.safetensors"):
        FastSim.load(truncated)
    (truncated / "hepgen-model.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        FastSim.load(truncated)


def test_bad_inputs_name_what(fitted, jets_file):
    sim, _ = fitted
    events = read_events(jets_file, ["nGenJet", "GenJet_pt", "GenJet_eta"], entry_stop=10)
    with pytest.raises(InputError, match="GenJet_phi"):
        sim.simulate(events)
    flat = {k: np.ones(5) for k in sim.condition_names}
    flat["GenJet_pt"] = np.array([30.0, np.nan, 40.0, 50.0, 60.0])
    with pytest.raises(InputError, match="GenJet_pt"):
        sim.sample(flat)


def test_load_model_picks_the_class_by_kind(fitted, tmp_path):
    """hepgen.load_model reads the card once and returns a FastSim for kind flow; a command
    that takes only another kind names the kind found and where it belongs."""
    import hepgen

    sim, out = fitted
    loaded = hepgen.load_model(out)
    assert isinstance(loaded, FastSim) and loaded.card_["kind"] == "flow"
    assert loaded.target_names == sim.target_names
    with pytest.raises(
        InputError,
        match=r"holds a fast simulation \(kind 'flow'\); 'hepgen info' takes a density model "
        r"\(kind 'density'.*'hepgen generate', 'hepgen score'",
    ):
        hepgen.load_model(out, accept=("density",), command="info")
    with pytest.raises(InputError, match=r"not a hepgen model directory.*'hepgen generate' takes"):
        hepgen.load_model(tmp_path, command="generate")


def test_fakes_drawn_beside_the_response_give_the_same_bits(fitted, jets_file, monkeypatch):
    """The fakes run on a second thread while the efficiency and the response run on this
    one (hepgen.fastsim.assembly): the events are the bits of one after the other."""
    import hepgen.fastsim.assembly as assembly

    sim, _ = fitted
    events = read_events(jets_file, GEN, entry_stop=1000)
    monkeypatch.setattr(assembly, "use_threads", lambda: True)
    threaded = sim.simulate(events, seed=7)
    monkeypatch.setattr(assembly, "use_threads", lambda: False)
    alone = sim.simulate(events, seed=7)
    assert threaded.fields == alone.fields and ak.sum(alone["Jet_genJetIdx"] < 0) > 0
    for f in alone.fields:
        assert ak.array_equal(threaded[f], alone[f]) and threaded[f].type == alone[f].type


def test_matched_then_fakes_is_the_order_of_a_stable_sort_by_event():
    from hepgen.fastsim.assembly import jagged_records, matched_then_fakes

    rng = np.random.default_rng(0)
    m, f = rng.integers(0, 4, 60), rng.integers(0, 3, 60)
    m[:3], f[1:4] = 0, 0  # events without matched objects, without fakes, with neither
    a = rng.normal(size=m.sum()).astype(np.float32)
    b = rng.normal(size=f.sum()).astype(np.float32)
    cols, counts = matched_then_fakes(m, f, {"x": a}, {"x": b})
    event = np.concatenate([np.repeat(np.arange(60), m), np.repeat(np.arange(60), f)])
    is_fake = np.concatenate([np.zeros(m.sum()), np.ones(f.sum())])
    order = np.lexsort((is_fake, event))
    assert np.array_equal(cols["x"], np.concatenate([a, b])[order])
    assert cols["x"].dtype == np.float32 and np.array_equal(counts, m + f)
    records = jagged_records(cols, counts)
    assert ak.array_equal(records.x, ak.unflatten(cols["x"], counts))
    with pytest.raises(ValueError, match="column 'x'"):
        jagged_records({"x": a}, counts)


def test_an_error_while_writing_is_the_generate_error_and_leaves_no_file(
    fitted, jets_file, tmp_path, monkeypatch
):
    """The writing thread's error is raised by generate (at the next chunk or at the end);
    the output is atomic: an existing file is left as it was, no temporary file remains."""
    import threading

    from hepgen.generate import generate_file
    from hepgen.io.writer import RootWriter

    _, out = fitted
    threads = []

    def failing(self, data, first, n):
        threads.append(threading.current_thread().name)
        raise OSError("no space left on device")

    monkeypatch.setattr(RootWriter, "_write", failing)
    target = tmp_path / "out.root"
    target.write_bytes(b"earlier")
    with pytest.raises(OSError, match="no space left"):  # 5 chunks: raised by the second
        generate_file(out, jets_file, target, quiet=True, step_size=1000, block=1000)
    with pytest.raises(OSError, match="no space left"), RootWriter(target) as writer:
        writer.extend(ak.Array({"run": [1, 2]}))  # one chunk: raised at the end
    assert threads[0] == "hepgen-writer" and len(threads) == 2
    assert target.read_bytes() == b"earlier" and [p.name for p in tmp_path.iterdir()] == [
        "out.root"
    ]
