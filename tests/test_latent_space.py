"""The latent space of the generators: sampling temperature, the truncation trick, encoding,
decoding and latent walks, from the noise draw up to ``hepgen generate`` and its metadata.

The noise draws are checked against the exact truncated normal (calibration: KS p-values of
the right draws stay high; power: the same test rejects untruncated or unscaled draws), the
flow's latent maps against each other (``sample`` at a temperature is ``decode`` of the scaled
noise; ``decode(encode(x))`` is ``x``), and a small trained fast simulation walks between two
jets with its ends reproduced.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import uproot
from scipy import stats

from hepgen.cli import main
from hepgen.errors import InputError
from hepgen.fastsim import FastSim
from hepgen.modelcard import format_card
from hepgen.modeldir import FASTSIM_KINDS, ModelHandle
from hepgen.models import FlowModel
from hepgen.models.base import NoEncoderError
from hepgen.models.latent import LatentOptions, draw_latent, draw_latent_numpy
from hepgen.settings import FlowSettings, TrainingSettings
from tests.conftest import train_small_fastsim

N = 20_000


# ------------------------------------------------------------------ the noise
@pytest.mark.parametrize("bad", [0, -1.0, math.nan, math.inf, True, "1"])
def test_latent_options_refuse_bad_values_with_one_line(bad):
    for kwargs in ({"temperature": bad}, {"truncation": bad}):
        with pytest.raises(InputError) as err:
            LatentOptions(**kwargs)
        assert "\n" not in str(err.value) and repr(bad) in str(err.value)


@pytest.mark.parametrize("psi", [0.5, 1.5, 3.0])
@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_truncated_draws_follow_the_truncated_normal(psi, backend):
    options = LatentOptions(truncation=psi)
    if backend == "torch":
        z = draw_latent((N,), torch.Generator().manual_seed(3), options=options).numpy()
    else:
        z = draw_latent_numpy(np.random.default_rng(3), (N,), options)
    assert z.dtype == np.float32 and np.abs(z).max() <= psi
    exact = stats.truncnorm(-psi, psi)
    assert stats.kstest(z, exact.cdf).pvalue > 0.01
    # power: the same test rejects untruncated draws at psi <= 1.5 (at 3, 0.3 % lie outside)
    plain = np.random.default_rng(4).standard_normal(N)
    if psi <= 1.5:
        assert stats.kstest(plain, exact.cdf).pvalue < 1e-6


@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_temperature_scales_the_noise(backend):
    options = LatentOptions(temperature=0.6)
    if backend == "torch":
        z = draw_latent((N,), torch.Generator().manual_seed(5), options=options).numpy()
    else:
        z = draw_latent_numpy(np.random.default_rng(5), (N,), options)
    assert stats.kstest(z, stats.norm(scale=0.6).cdf).pvalue > 0.01
    assert stats.kstest(z, stats.norm(scale=0.7).cdf).pvalue < 1e-6  # power at 0.1 off


def test_default_draws_are_the_plain_normal_stream():
    a = draw_latent((7, 3), torch.Generator().manual_seed(9))
    b = torch.randn((7, 3), generator=torch.Generator().manual_seed(9))
    assert torch.equal(a, b)


# ------------------------------------------------------------------ a flow's latent space
@pytest.fixture(scope="module")
def flow_model():
    rng = np.random.default_rng(0)
    c = rng.normal(size=(3000, 1)).astype("float32")
    x = np.column_stack([c[:, 0] + 0.5 * rng.normal(size=3000), rng.gamma(2.0, size=3000)])
    x = (x - x.mean(axis=0)) / x.std(axis=0)  # model space: standardised, as preprocessed
    model = FlowModel(FlowSettings(n_transforms=2, hidden_features=16, n_bins=6), seed=1)
    training = TrainingSettings(max_epochs=10, batch_size=250, seed=1)
    model.fit(x.astype("float32"), c, training=training, quiet=True)
    return model, x.astype("float32"), c


def test_flow_encode_decode_round_trip(flow_model):
    model, x, c = flow_model
    z = model.encode(x, c)
    assert z.shape == x.shape and z.dtype == np.float32
    assert np.abs(model.decode(z, c) - x).max() < 1e-4 * max(1.0, np.abs(x).max())
    # the codes of the training data look like the base distribution (3 epochs: loosely)
    assert abs(z.mean()) < 0.2 and 0.7 < z.std() < 1.3


@pytest.mark.parametrize("temperature", [0.5, 1.0])
def test_flow_sample_at_a_temperature_decodes_the_scaled_noise(flow_model, temperature):
    model, _, c = flow_model
    options = LatentOptions(temperature=temperature)
    z = draw_latent((len(c), 2), torch.Generator().manual_seed(11), options=options)
    expected = model.decode(z.numpy(), c)
    got = model.sample(c, seed=11, temperature=temperature)
    assert np.allclose(got, expected, atol=1e-5)


def test_truncation_narrows_a_flow_response(flow_model):
    model, _, c = flow_model
    plain = model.sample(c, seed=2)[:, 0] - c[:, 0]
    cut = model.sample(c, seed=2, truncation=0.5)[:, 0] - c[:, 0]
    # truncated at 0.5 the noise's spread is 0.27 of the normal's; the response follows
    assert cut.std() < 0.5 * plain.std()


def test_a_gan_has_no_encoder():
    from hepgen.models import GANModel
    from hepgen.models.gan import GANSettings, default_gan_training

    rng = np.random.default_rng(0)
    c = rng.normal(size=(400, 1)).astype("float32")
    gan = GANModel(
        GANSettings(hidden_features=8, critic_hidden_features=8, n_blocks=1, critic_blocks=1)
    )
    gan.fit(c, c, training=default_gan_training(max_epochs=1, device="cpu"), quiet=True)
    assert not gan.has_encoder
    with pytest.raises(NoEncoderError, match="no encoder"):
        gan.encode(c, c)
    assert gan.sample(c, seed=0, truncation=0.5).shape == (400, 1)


# ------------------------------------------------------------------ a fast simulation
@pytest.fixture(scope="module")
def small_sim(tmp_path_factory):
    folder = tmp_path_factory.mktemp("latent")
    model = train_small_fastsim(folder, 3000, 3)
    return FastSim.load(model), folder


def _jets(sim: FastSim) -> dict[str, np.ndarray]:
    n = 6
    cond = {
        "GenJet_pt": np.array([50.0, 80.0, 120.0, 200.0, 40.0, 60.0]),
        "GenJet_eta": np.linspace(-1.0, 1.0, n),
        "GenJet_phi": np.zeros(n),
        "GenJet_mass": np.full(n, 8.0),
        "GenJet_hadronFlavour": np.array([0, 5, 0, 5, 4, 0]),
    }
    return {**cond, **sim.sample(cond, seed=1)}


def test_fastsim_encode_decode_in_physical_units(small_sim):
    sim, _ = small_sim
    objects = _jets(sim)
    z = sim.encode(objects)
    assert z.shape == (6, sim.response_.n_features_)  # targets + sentinel flags
    back = sim.decode(z, {k: objects[k] for k in sim.condition_names})
    for name in sim.target_names:
        assert back[name].dtype == objects[name].dtype
        assert np.allclose(back[name], objects[name], rtol=1e-4, atol=1e-5), name


@pytest.mark.parametrize("path", ["slerp", "linear"])
def test_interpolate_walks_from_one_jet_to_the_other(small_sim, path):
    sim, _ = small_sim
    jets = _jets(sim)
    light = {k: v[0] for k, v in jets.items()}
    b_jet = {k: v[1] for k, v in jets.items()}
    for k in ("GenJet_pt", "GenJet_eta", "GenJet_phi", "GenJet_mass"):
        b_jet[k] = light[k]  # the same gen kinematics
    gen = {k: np.array([b_jet[k]]) for k in sim.condition_names}
    b_jet.update({k: v[0] for k, v in sim.sample(gen, seed=4).items()})
    walk = sim.interpolate(light, b_jet, steps=7, path=path)
    assert np.array_equal(walk["t"], np.linspace(0, 1, 7))
    assert np.all(walk["GenJet_pt"] == light["GenJet_pt"])
    for name in sim.target_names:
        assert walk[name].shape == (7,)
        assert np.isclose(walk[name][0], light[name], rtol=1e-4, atol=1e-5), name
        assert np.isclose(walk[name][-1], b_jet[name], rtol=1e-4, atol=1e-5), name
    assert np.all(np.isfinite(walk["Jet_pt"]))


def test_interpolate_refuses_bad_requests(small_sim):
    sim, _ = small_sim
    jets = _jets(sim)
    one = {k: v[0] for k, v in jets.items()}
    with pytest.raises(InputError, match="steps must be an integer >= 2"):
        sim.interpolate(one, one, steps=1)
    with pytest.raises(InputError, match="lacks \\['Jet_pt'\\]"):
        sim.interpolate({k: v for k, v in one.items() if k != "Jet_pt"}, one)
    with pytest.raises(InputError, match="one object"):
        sim.interpolate(jets, one)
    with pytest.raises(InputError, match="path 'curved'"):
        sim.interpolate(one, one, path="curved")


def test_fastsim_temperature_narrows_the_response_and_set_sampling_sticks(small_sim):
    sim, _ = small_sim
    n = 4000
    cond = {
        "GenJet_pt": np.full(n, 60.0),
        "GenJet_eta": np.zeros(n),
        "GenJet_phi": np.zeros(n),
        "GenJet_mass": np.full(n, 8.0),
        "GenJet_hadronFlavour": np.zeros(n),
    }
    spread = {t: np.std(sim.sample(cond, seed=3, temperature=t)["Jet_pt"]) for t in (0.4, 1.0)}
    assert spread[0.4] < 0.6 * spread[1.0]
    sim.set_sampling(temperature=0.4)
    try:
        assert sim.sampling_.to_dict() == {"temperature": 0.4, "truncation": None}
        assert np.array_equal(
            sim.sample(cond, seed=3)["Jet_pt"], sim.sample(cond, seed=3, temperature=0.4)["Jet_pt"]
        )
    finally:
        sim.set_sampling()
    assert sim.sampling_.is_default


def test_generate_records_the_sampling_in_the_file_and_the_manifest(small_sim, tmp_path, capsys):
    _, folder = small_sim
    model, data = folder / "model", folder / "train.root"
    out = tmp_path / "gen.root"
    code = main(["generate", str(model), str(data), "-o", str(out), "--truncation", "0.7"])
    assert code == 0
    meta = json.loads(str(uproot.open(out)["hepgen_metadata"]))
    assert meta["sampling"] == {"temperature": 1.0, "truncation": 0.7}
    assert meta["command"] == "generate" and meta["seed"] == 0 and meta["model_hash"]
    # the default is written too, so a file always says how it was drawn
    main(["generate", str(model), str(data), "-o", str(tmp_path / "plain.root"), "--quiet"])
    plain = json.loads(str(uproot.open(tmp_path / "plain.root")["hepgen_metadata"]))
    assert plain["sampling"] == {"temperature": 1.0, "truncation": None}
    capsys.readouterr()
    code = main(["generate", str(model), str(data), "-o", str(tmp_path / "x.root"),
                 "--temperature", "-1"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "temperature -1.0" in err
    assert not (tmp_path / "x.root").exists()


def test_a_worker_handle_resets_a_cached_models_sampling(small_sim):
    _, folder = small_sim
    first = ModelHandle(folder / "model", accept=FASTSIM_KINDS, sampling={"truncation": 0.5})
    assert first.get().sampling_.truncation == 0.5
    second = ModelHandle(folder / "model", accept=FASTSIM_KINDS)
    assert second.get().sampling_.is_default  # the same cached object, reset


def test_the_card_shows_a_configured_sampling(small_sim):
    sim, _ = small_sim
    card = json.loads(json.dumps(sim.card()))
    assert "sampling:" not in format_card(card)
    card["config"]["model"]["sampling"] = {"temperature": 1.0, "truncation": 1.5}
    assert "sampling: temperature 1, truncation 1.5" in format_card(card)
