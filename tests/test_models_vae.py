"""Tests of the conditional VAE (``model.kind: vae``): hepgen.models.vae, vae_objective,
vae_model.

Quality, not only shapes: the Gaussian algebra against torch.distributions; real short
trainings on two conditional toys with known densities: a heteroscedastic Gaussian (the
samples against the truth by KS, means and widths; the IWAE bound against the true
log-density) and a bimodal response that needs the latent (active dimensions, IWAE rising
with K, reconstruction through encode/decode); temperature and truncation; weights that cancel
a contamination; bit-identical resume; files.
"""

from __future__ import annotations

import itertools
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from scipy import stats

import hepgen.training.loop
from hepgen.errors import ConfigError, InputError
from hepgen.models.base import NoLikelihoodError
from hepgen.models.registry import model_class
from hepgen.models.vae import ConditionalVAE, gaussian_kl, gaussian_log_prob
from hepgen.models.vae_model import VAEModel
from hepgen.models.vae_objective import VAEObjective, default_vae_training, kl_weight
from hepgen.settings.vae import VAESettings
from hepgen.training import StepContext, TrainingError

SMALL = VAESettings(hidden_features=64, n_blocks=1, latent_dim=2, kl_warmup_steps=200)


@pytest.fixture(autouse=True)
def one_thread():
    """Small networks and batches: one torch thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------------------------
# the toys
# --------------------------------------------------------------------------------------------

A = np.array([[0.8, 0.3], [-0.5, 0.6]])
POINTS = np.array([[0.5, -0.5], [-1.0, 1.0], [1.2, 0.8]], np.float32)  # held-out conditions


def widths(c: np.ndarray) -> np.ndarray:
    return np.stack([0.5 * np.exp(0.3 * c[:, 1]), 0.4 * np.exp(-0.2 * c[:, 0])], axis=1)


def gaussian_toy(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """x | c ~ N(A c, diag(s(c))^2), c ~ N(0, 1)^2 (both widths depend on c)."""
    c = rng.normal(size=(n, 2))
    x = c @ A.T + widths(c) * rng.normal(size=(n, 2))
    return x.astype(np.float32), c.astype(np.float32)


def gaussian_log_density(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    return stats.norm.logpdf(x, c @ A.T, widths(c)).sum(axis=1)


SHIFT, SIGMA = np.array([1.0, -0.6]), 0.25


def bimodal_toy(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """x | c ~ N(A c + m d, 0.25^2) with m = +-1 at random: a decoder Gaussian in x alone
    cannot make two modes, the latent must choose m."""
    c = rng.normal(size=(n, 2))
    m = rng.choice([-1.0, 1.0], size=(n, 1))
    x = c @ A.T + m * SHIFT + SIGMA * rng.normal(size=(n, 2))
    return x.astype(np.float32), c.astype(np.float32)


def bimodal_log_density(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    mu = c @ A.T
    a = stats.norm.logpdf(x, mu + SHIFT, SIGMA).sum(axis=1)
    b = stats.norm.logpdf(x, mu - SHIFT, SIGMA).sum(axis=1)
    return np.logaddexp(a, b) - np.log(2.0)


def quality(model: VAEModel, n: int = 20_000) -> dict[str, float]:
    """Worst one-sample KS (vs the true normal CDF), mean error and relative width error over
    the held-out points and features; the KS noise level of n = 20000 draws is ~0.01."""
    ks, mean_err, width_err = [], [], []
    for point in POINTS:
        s = model.sample(np.tile(point, (n, 1)), seed=11).astype(np.float64)
        mu, sd = A @ point, widths(point[None])[0]
        ks += [stats.kstest(s[:, j], "norm", args=(mu[j], sd[j])).statistic for j in range(2)]
        mean_err.append(np.abs(s.mean(0) - mu).max())
        width_err.append(np.abs(s.std(0) / sd - 1).max())
    return {"ks": max(ks), "mean": max(mean_err), "width": max(width_err)}


def train_toy(toy, epochs: int, settings: VAESettings = SMALL, seed: int = 0, n: int = 20_000,
              **fit) -> tuple[VAEModel, object]:  # fmt: skip
    rng = np.random.default_rng(seed)
    x, c = toy(rng, n)
    xv, cv = toy(rng, 2000)
    model = VAEModel(settings, seed=seed)
    training = default_vae_training(max_epochs=epochs, batch_size=256, patience=epochs,
                                    learning_rate=1e-3, device="cpu")  # fmt: skip
    result = model.fit(x, c, validation={"x": xv, "c": cv}, training=training, quiet=True, **fit)
    return model, result


@pytest.fixture(scope="module")
def gaussian():
    torch.set_num_threads(1)
    return train_toy(gaussian_toy, epochs=15)


@pytest.fixture(scope="module")
def bimodal():
    torch.set_num_threads(1)
    return train_toy(bimodal_toy, epochs=15, seed=1, selection="loss")


# --------------------------------------------------------------------------------------------
# settings, algebra, objective
# --------------------------------------------------------------------------------------------


def test_settings_round_trip_defaults_and_errors():
    s = VAESettings()
    assert (s.latent_dim, s.beta, s.conditional_prior, s.iwae_samples) == (8, 1.0, True, 64)
    assert VAESettings.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    with pytest.raises(ConfigError, match=r"vae setting 'free_bit'.*did you mean 'free_bits'"):
        VAESettings.from_dict({"free_bit": 0.1})
    for key, value in (("latent_dim", 0), ("beta", -1.0), ("free_bits", float("nan")),
                       ("kl_warmup_steps", -1), ("conditional_prior", 1), ("iwae_samples", 0)):  # fmt: skip
        with pytest.raises(ConfigError, match=f"vae setting '{key}'"):
            VAESettings.from_dict({key: value})
    assert model_class("vae") is VAEModel and not VAEModel.has_likelihood


def test_gaussian_algebra_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mq, lq, mp, lp, x = (torch.randn(50, 3, generator=g, dtype=torch.float64) for _ in range(5))
    q = torch.distributions.Normal(mq, lq.exp())
    p = torch.distributions.Normal(mp, lp.exp())
    torch.testing.assert_close(gaussian_kl(mq, lq, mp, lp), torch.distributions.kl_divergence(q, p))
    torch.testing.assert_close(gaussian_log_prob(x, mq, lq), q.log_prob(x))


def test_kl_warm_up_and_free_bits():
    s = VAESettings(beta=0.5, kl_warmup_steps=10, free_bits=0.2, latent_dim=3, hidden_features=8)
    assert [kl_weight(s, i) for i in (0, 4, 9, 100)] == [0.05, 0.25, 0.5, 0.5]
    assert kl_weight(VAESettings(beta=2.0, kl_warmup_steps=0), 0) == 2.0
    vae = ConditionalVAE(2, 2, s, seed=0)
    g = torch.Generator().manual_seed(1)
    x, c = torch.randn(64, 2, generator=g), torch.randn(64, 2, generator=g)
    objective = VAEObjective(s)
    ctx = StepContext({}, lr=0.0, index=99, mean_weight=1.0, grad_clip=None)
    torch.manual_seed(0)
    nll, kl = vae.elbo_terms(x, c)
    torch.manual_seed(0)
    loss = objective.loss(vae, x, c, None, ctx)
    expected = nll.mean() + 0.5 * kl.mean(0).clamp(min=0.2).sum()
    torch.testing.assert_close(loss, expected)
    # every dimension below its free bits: the KL term is the constant b_t L lambda, and
    # the loss differs from the reconstruction term by that constant, with no gradient
    free = VAEObjective(VAESettings(free_bits=100.0, latent_dim=3, hidden_features=8))
    torch.manual_seed(0)
    total = free.loss(vae, x, c, None, ctx)
    torch.manual_seed(0)
    kl_part = total - vae.elbo_terms(x, c)[0].mean()
    assert float(kl_part.detach()) == pytest.approx(kl_weight(free.settings, 99) * 3 * 100.0)
    kl_part.backward()
    assert all(p.grad is None or p.grad.abs().max() == 0 for p in vae.parameters())


def test_weights_enter_as_in_the_flow_loss(monkeypatch):
    """Rows (a, b, b) with weights (2, 1, -1): b cancels in every term, the reconstruction
    and each dimension's KL: the loss is that of row a alone with weight 2 / (3 mean w).  The
    reparameterisation noise is frozen at 0 so that a row's terms depend on the row only."""
    monkeypatch.setattr(torch, "randn_like", lambda t, **k: torch.zeros_like(t))
    s = VAESettings(latent_dim=3, hidden_features=16, free_bits=0.0, kl_warmup_steps=0)
    vae = ConditionalVAE(2, 2, s, seed=3)
    g = torch.Generator().manual_seed(4)
    x, c = torch.randn(2, 2, generator=g), torch.randn(2, 2, generator=g)
    w = torch.tensor([2.0, 1.0, -1.0])
    weighted = StepContext({}, lr=0.0, index=0, mean_weight=0.7, grad_clip=None)
    plain = StepContext({}, lr=0.0, index=0, mean_weight=1.0, grad_clip=None)
    got = VAEObjective(s).loss(vae, x[[0, 1, 1]], c[[0, 1, 1]], w, weighted)
    alone = VAEObjective(s).loss(vae, x[:1], c[:1], None, plain)
    torch.testing.assert_close(got, 2 * alone / (3 * 0.7))


def test_seeded_initialisation_leaves_the_callers_rng_and_prior_starts_standard():
    torch.manual_seed(5)
    state = torch.get_rng_state()
    a, b = ConditionalVAE(2, 2, SMALL, seed=7), ConditionalVAE(2, 2, SMALL, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    mean, log_scale = a.prior_params(torch.randn(4, 2))
    assert mean.abs().max() == 0 and log_scale.abs().max() == 0
    assert ConditionalVAE(2, 2, VAESettings(conditional_prior=False)).prior is None
    assert a.describe()["active_dimensions"] is None  # before the diagnostics


# --------------------------------------------------------------------------------------------
# training for real
# --------------------------------------------------------------------------------------------


def test_vae_learns_the_conditional_gaussian(gaussian):
    # measured (15 epochs of 20k events, ~4 s unloaded): worst KS 0.026, mean error 0.029,
    # width error 0.020; the KS noise of 20k draws is ~0.01, a 10 % width error gives ~0.04
    model, result = gaussian
    q = quality(model)
    assert q["ks"] < 0.05 and q["mean"] < 0.06 and q["width"] < 0.06, q
    assert result.n_bad_batches == 0
    losses = [h["val_loss"] for h in result.history]
    # the truth's negative log-density on this toy is ~1.27 nats; the first epoch is ~2.0
    assert min(losses) < 1.30 < losses[0]


def test_iwae_bound_is_close_to_the_true_log_density(gaussian):
    """On the Gaussian toy the decoder alone can be exact, so the bounds approach the true
    log-density: measured mean(iwae, K=64) - mean(log p) = -0.003 nats, elbo -0.013."""
    model, _ = gaussian
    x, c = gaussian_toy(np.random.default_rng(5), 2000)
    truth = gaussian_log_density(x, c).mean()
    elbo = model.log_prob_bound(x, c, method="elbo", k=64)
    iwae = model.log_prob_bound(x, c, method="iwae", k=64)
    assert elbo.dtype == np.float64 and elbo.shape == (2000,)
    assert np.all(iwae >= elbo - 1e-9)  # the same draws: log-mean-exp >= mean-log, per row
    assert abs(iwae.mean() - truth) < 0.02 and abs(elbo.mean() - truth) < 0.05
    # seeded: the same seed gives the same values, another seed others
    assert np.array_equal(model.log_prob_bound(x[:50], c[:50], k=8, seed=3),
                          model.log_prob_bound(x[:50], c[:50], k=8, seed=3))  # fmt: skip
    assert not np.array_equal(model.log_prob_bound(x[:50], c[:50], k=8, seed=3),
                              model.log_prob_bound(x[:50], c[:50], k=8, seed=4))  # fmt: skip


def test_bimodal_response_uses_the_latent_and_iwae_rises_with_k(bimodal):
    # measured (15 epochs, 20k events): activity [0.012, 9.96], KL per dimension [0.06, 1.13];
    # iwae - truth for K = 1, 4, 16, 64: -0.31, -0.21, -0.19, -0.18 nats (the model is not
    # exact); elbo stays at -0.32
    model, _ = bimodal
    card = model.describe()
    assert card["active_dimensions"] >= 1 and max(card["latent_activity"]) > 1.0
    assert max(card["kl_per_dimension"]) > 0.5
    x, c = bimodal_toy(np.random.default_rng(5), 2000)
    truth = bimodal_log_density(x, c).mean()
    bounds = [model.log_prob_bound(x, c, k=k, seed=1).mean() for k in (1, 4, 16, 64)]
    elbo = model.log_prob_bound(x, c, method="elbo", k=64, seed=1).mean()
    assert bounds[0] == pytest.approx(elbo, abs=0.03)  # K = 1: the ELBO
    # rising in K (the increments fall: 0.087, 0.016, 0.004 measured; the noise of a
    # difference on these 2000 rows with the same seed is < 0.002)
    assert all(b > a - 0.002 for a, b in itertools.pairwise(bounds)), bounds
    assert bounds[1] - bounds[0] > 0.03 and bounds[-1] - elbo > 0.06, (bounds, elbo)
    assert truth - 0.4 < bounds[-1] < truth + 0.02  # a lower bound (noise ~0.01), not loose
    # the samples are bimodal: few draws between the modes (measured 0.064, and 0.69 near the
    # modes; a unimodal Gaussian of the same variance puts 0.23 between them)
    point = np.array([[0.3, -0.2]], np.float32)
    s = model.sample(np.tile(point, (20_000, 1)), seed=3)
    along = (s - point @ A.T) @ SHIFT / (SHIFT @ SHIFT)
    assert np.mean(np.abs(along) < 0.3) < 0.15 and np.mean(np.abs(np.abs(along) - 1) < 0.3) > 0.5


def test_the_latent_carries_the_mode_of_the_bimodal_response(bimodal):
    """Which of two well separated modes an event is in is log 2 = 0.69 nats of information
    about x given c: a VAE that draws both modes must carry at least that in its latent
    (the mean KL bounds the mutual information from above).  Measured: 1.19 nats in all
    (the Gaussian toy, which needs none, keeps 0.68: the latent is used without need)."""
    card = bimodal[0].describe()
    assert sum(card["kl_per_dimension"]) > np.log(2.0)
    assert len(card["kl_per_dimension"]) == len(card["latent_activity"]) == 2


def test_encode_decode_reconstructs_better_than_the_prior_mean(bimodal):
    # measured: mean squared error 0.039 through the posterior mean, 0.75 from the prior mean
    model, _ = bimodal
    x, c = bimodal_toy(np.random.default_rng(6), 2000)
    z = model.encode(x, c)
    assert z.dtype == np.float32 and z.shape == (2000, model.latent_dim)
    rec = model.decode(z, c)
    prior_mean = model.vae_.prior_params(torch.from_numpy(c))[0].detach().numpy()
    from_prior = model.decode(prior_mean, c)
    err, err_prior = np.mean((rec - x) ** 2), np.mean((from_prior - x) ** 2)
    assert err < 0.1 and err < 0.25 * err_prior, (err, err_prior)
    drawn = model.decode(z, c, seed=2, mean=False)
    assert np.array_equal(drawn, model.decode(z, c, seed=2, mean=False))
    assert 0 < np.mean((drawn - rec) ** 2) < 0.2  # the decoder's noise, ~2 x 0.25^2
    with pytest.raises(InputError, match="latent has 3 columns, the model's latent_dim is 2"):
        model.decode(np.zeros((4, 3), np.float32), c[:4])


def test_temperature_shrinks_and_truncation_bounds_the_draws(gaussian, monkeypatch):
    model, _ = gaussian
    c = np.tile(POINTS[0], (20_000, 1))
    spread = [model.sample(c, seed=1, temperature=t).std(0) for t in (1.0, 0.5)]
    assert np.all(spread[1] < 0.7 * spread[0])
    vae = model.vae_
    seen = []
    decode = vae.decode

    def recording(z, cc):
        seen.append(z.clone())
        return decode(z, cc)

    monkeypatch.setattr(vae, "decode", recording)
    model.sample(c[:5000], seed=1, truncation=0.5)
    mean_p, log_p = vae.prior_params(torch.from_numpy(c[:5000]))
    e = ((seen[-1] - mean_p) / log_p.exp()).detach()
    assert e.abs().max() <= 0.5 + 1e-5 and e.abs().max() > 0.45
    with pytest.raises(InputError, match="temperature"):
        model.sample(c[:5], temperature=0.0)


def test_log_prob_refers_to_the_bound_and_bad_arguments_are_named(gaussian):
    model, _ = gaussian
    x, c = gaussian_toy(np.random.default_rng(7), 10)
    with pytest.raises(NoLikelihoodError, match=r"no tractable likelihood.*log_prob_bound"):
        model.log_prob(x, c)
    with pytest.raises(InputError, match="method 'exact': expected 'iwae' or 'elbo'"):
        model.log_prob_bound(x, c, method="exact")
    with pytest.raises(InputError, match="k=0: expected a positive integer"):
        model.log_prob_bound(x, c, k=0)
    with pytest.raises(InputError, match="targets have 3 columns"):
        model.log_prob_bound(np.zeros((10, 3), np.float32), c)
    assert model.log_prob_bound(x[:0], c[:0]).shape == (0,)


def test_negative_weights_cancel_a_contamination():
    """Signal (weight 1) + a contamination (weight 1) + an independent sample of the same
    contamination (weight -1): the weighted data are the signal alone."""
    rng = np.random.default_rng(4)
    x_s, c_s = gaussian_toy(rng, 12_000)

    def contamination(n: int) -> tuple[np.ndarray, np.ndarray]:
        c = rng.normal(0.5, 0.7, size=(n, 2)).astype(np.float32)
        x = (np.array([1.5, -1.5]) + 0.3 * rng.normal(size=(n, 2))).astype(np.float32)
        return x, c

    (x_a, c_a), (x_b, c_b) = contamination(6000), contamination(6000)
    x, c = np.concatenate([x_s, x_a, x_b]), np.concatenate([c_s, c_a, c_b])
    w = np.concatenate([np.ones(18_000), -np.ones(6000)]).astype(np.float32)
    xv, cv = gaussian_toy(rng, 2000)
    model = VAEModel(SMALL, seed=1)
    training = default_vae_training(
        max_epochs=15, batch_size=256, patience=15, learning_rate=1e-3, device="cpu"
    )
    result = model.fit(x, c, w, validation={"x": xv, "c": cv}, training=training, quiet=True,
                       selection="loss")  # fmt: skip
    q = quality(model)
    # measured (15 epochs, checkpoint of epoch 10 by the validation ELBO): worst KS 0.057,
    # mean error 0.078, width error 0.073 (unweighted on the signal alone: 0.030, 0.024,
    # 0.047); the contamination left in would move the means by ~0.4
    assert q["ks"] < 0.09 and q["mean"] < 0.12 and q["width"] < 0.15, q
    assert result.n_bad_batches == 0
    assert np.mean(x[:18_000] - c[:18_000] @ A.T, axis=0)[0] > 0.3  # the control
    s = model.sample(np.tile(POINTS[0], (20_000, 1)), seed=3)
    near = np.mean(np.linalg.norm(s - np.array([1.5, -1.5]), axis=1) < 0.5)
    assert near < 0.01  # the truth: 1e-4 there; unweighted, ~a third of the rows near c


# --------------------------------------------------------------------------------------------
# resume and files
# --------------------------------------------------------------------------------------------


def small_fit(tmp: Path, resume: bool = False, epochs: int = 4, **settings) -> VAEModel:
    rng = np.random.default_rng(6)
    x, c = gaussian_toy(rng, 3000)
    xv, cv = gaussian_toy(rng, 600)
    w = rng.uniform(0.5, 1.5, 3000).astype(np.float32)
    s = VAESettings(**{"hidden_features": 16, "n_blocks": 1, "latent_dim": 2,
                       "kl_warmup_steps": 30, **settings})  # fmt: skip
    model = VAEModel(s, seed=2)
    training = default_vae_training(max_epochs=epochs, batch_size=256, warmup_steps=5,
                                    device="cpu")  # fmt: skip
    model.fit(x, c, w, validation={"x": xv, "c": cv}, training=training, checkpoint_dir=tmp,
              resume=resume, quiet=True)  # fmt: skip
    return model


def test_resume_after_a_crash_is_bit_identical(tmp_path: Path, monkeypatch):
    """The KL warm-up (30 steps, 12 batches per epoch) straddles the crash in epoch 3."""
    monkeypatch.setattr(hepgen.training.loop, "CHECKPOINT_SECONDS", 0.0)  # after every epoch
    straight = small_fit(tmp_path / "a")
    calls = {"n": 0}
    step = VAEObjective.step

    def crashing(self, *args):
        calls["n"] += 1
        if calls["n"] > 2 * 12 + 3:
            raise RuntimeError("simulated crash")
        return step(self, *args)

    with monkeypatch.context() as m:
        m.setattr(VAEObjective, "step", crashing)
        with pytest.raises(RuntimeError, match="simulated crash"):
            small_fit(tmp_path / "b")
    assert json.loads((tmp_path / "b" / "last.json").read_text())["epoch"] == 2
    torch.manual_seed(123)  # the resumed run must not depend on the global RNG's state
    resumed = small_fit(tmp_path / "b", resume=True)
    a, b = straight.vae_.state_dict(), resumed.vae_.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    last_a = load_file(tmp_path / "a" / "last.safetensors")
    last_b = load_file(tmp_path / "b" / "last.safetensors")
    assert all(torch.equal(last_a[k], last_b[k]) for k in last_a)
    history_a = json.loads((tmp_path / "a" / "last.json").read_text())["history"]
    history_b = json.loads((tmp_path / "b" / "last.json").read_text())["history"]
    keys = ("train_loss", "val_loss", "metric")
    assert [[h[k] for k in keys] for h in history_a] == [[h[k] for k in keys] for h in history_b]
    with pytest.raises(TrainingError, match="objective free_bits"):
        small_fit(tmp_path / "b", resume=True, epochs=6, free_bits=0.5)


def test_save_load_round_trip_executes_no_code(gaussian, tmp_path: Path, monkeypatch):
    model, _ = gaussian
    files = model.save(tmp_path / "m")
    assert [p.name for p in files] == ["vae.safetensors", "vae.json"]
    meta = json.loads(files[1].read_text())
    assert meta["format"] == "hepgen-vae" and meta["format_version"] == 1
    assert meta["settings"] == model.settings.to_dict()
    assert meta["active_dimensions"] == model.describe()["active_dimensions"] is not None
    assert len(meta["kl_per_dimension"]) == 2 and len(meta["weights_sha256"]) == 64

    def refuse(*args, **kwargs):
        raise AssertionError("loading a VAE unpickled something")

    with monkeypatch.context() as m:
        m.setattr(pickle, "loads", refuse)
        m.setattr(pickle, "load", refuse)
        m.setattr(torch, "load", refuse)
        loaded = VAEModel.load(tmp_path / "m")
    c = gaussian_toy(np.random.default_rng(10), 300)[1]
    assert np.array_equal(loaded.sample(c, seed=5), model.sample(c, seed=5))
    assert loaded.describe() == model.describe() and not loaded.vae_.training
    (tmp_path / "m" / "vae.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(InputError, match="do not match the checksum"):
        VAEModel.load(tmp_path / "m")


def test_jets_config_reads_as_a_vae():
    from hepgen.config import load_config
    from hepgen.resources import config_path

    config = load_config(config_path("toy_jets_vae.yaml"))
    assert config.model.kind == "vae"
    assert isinstance(config.model.generator_settings(), VAESettings)


# --------------------------------------------------------------------------------------------
# the fast simulation with model.kind: vae
# --------------------------------------------------------------------------------------------


def test_fastsim_trains_a_vae_from_the_shipped_config(jets_file, tmp_path: Path):
    """configs/toy_jets_vae.yaml with a small VAE for 8 epochs (no time limit) on 5000
    reference events: the model directory holds VAE weights and no pickle, the card reports
    the active dimensions, and the pt response is close to the full simulation's."""
    import awkward as ak
    import yaml

    from hepgen.config import load_config
    from hepgen.fastsim import FastSim
    from hepgen.io.reader import read_events
    from hepgen.resources import config_path

    raw = yaml.safe_load(config_path("toy_jets_vae.yaml").read_text())
    raw["model"]["vae"].update(latent_dim=4, hidden_features=64, n_blocks=1, kl_warmup_steps=100)
    raw["training"].update(time_limit=None, max_epochs=8, selection="loss")
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    out = tmp_path / "model"
    FastSim(load_config(tmp_path / "cfg.yaml"), device="cpu").fit(
        files=[str(jets_file)], output=out, quiet=True
    )
    names = {p.name for p in out.iterdir()}
    assert {"vae.safetensors", "vae.json", "fakes_vae.safetensors", "fakes_vae.json"} <= names
    assert not [p for p in out.rglob("*") if p.suffix in (".pt", ".pkl", ".pickle")]
    card = json.loads((out / "hepgen-model.json").read_text())
    assert card["kind"] == "vae" and 1 <= card["architecture"]["active_dimensions"] <= 4
    sim = FastSim.load(out)
    assert isinstance(sim.response_, VAEModel)
    gen = ["nGenJet", "GenJet_pt", "GenJet_eta", "GenJet_phi", "GenJet_mass",
           "GenJet_hadronFlavour"]  # fmt: skip
    events = read_events(jets_file, [*gen, "Jet_pt", "Jet_genJetIdx"])
    reco = sim.simulate(events[gen], seed=5)

    def ratio(r: ak.Array) -> np.ndarray:
        idx = r["Jet_genJetIdx"]
        ok = idx >= 0
        gen_pt = events["GenJet_pt"][ak.where(ok, idx, 0)][ok]
        return ak.to_numpy(ak.flatten(r["Jet_pt"][ok] / gen_pt))

    fast, full = ratio(reco), ratio(events)
    # measured: median 1.005 vs 1.005 (full), IQR 0.271 vs 0.269 (ratio 1.01), 4 of 4 active
    assert abs(np.median(fast) - np.median(full)) < 0.03, (np.median(fast), np.median(full))
    iqr = [np.subtract(*np.percentile(r, [75, 25])) for r in (fast, full)]
    assert abs(iqr[0] / iqr[1] - 1) < 0.2, iqr
