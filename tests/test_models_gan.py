"""Tests of hepgen.models.gan: conditional WGAN-GP and Cramer GANs under the model protocol.

Quality, not only shapes: the gradient penalty and the energy score against analytic values,
and real short trainings of both losses on a heteroscedastic conditional Gaussian toy, checked
by one-sample KS tests against the true p(x | c) at held-out conditions and by the conditional
means and widths; negative weights that cancel a contamination; bit-identical resume; the NaN
guard; seeded sampling; files.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from scipy import stats

import hepgen.training.loop
from hepgen.errors import ConfigError, InputError
from hepgen.models import GANModel as ExportedGANModel
from hepgen.models.base import NoLikelihoodError
from hepgen.models.gan import (
    ConditionalGAN,
    GANModel,
    GANObjective,
    GANSettings,
    default_gan_training,
    energy_score,
    gradient_penalty,
    knn_recall_coverage,
)
from hepgen.training import StepContext, TrainingError

SMALL = GANSettings(
    hidden_features=32, critic_hidden_features=32, n_blocks=1, critic_blocks=1, latent_dim=4
)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks and batches: one torch thread (a second gains little on a busy 2-core box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------------------------
# the toy: x | c ~ N(A c, diag(s(c))^2), c ~ N(0, 1)^2 (both widths depend on c)
# --------------------------------------------------------------------------------------------

A = np.array([[0.8, 0.3], [-0.5, 0.6]])
POINTS = np.array([[0.5, -0.5], [-1.0, 1.0], [1.2, 0.8]], np.float32)  # held-out conditions


def widths(c: np.ndarray) -> np.ndarray:
    return np.stack([0.5 * np.exp(0.3 * c[:, 1]), 0.4 * np.exp(-0.2 * c[:, 0])], axis=1)


def toy(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    c = rng.normal(size=(n, 2))
    x = c @ A.T + widths(c) * rng.normal(size=(n, 2))
    return x.astype(np.float32), c.astype(np.float32)


def quality(model: GANModel, n: int = 20_000) -> dict[str, float]:
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


# The WGAN-GP recipe with the plain generator output: with the conditional frame
# (conditional_scale) it needs more than the 15 epochs below on this toy (pooled KS 0.09).
WGAN = GANSettings(
    loss="wgan-gp", hidden_features=64, critic_hidden_features=64, conditional_scale=False
)


def pooled_ks(model: GANModel) -> float:
    """Worst per-feature two-sample KS of held-out events vs one draw per held-out condition
    (the marginals; noise level ~0.014 for 20k vs 20k)."""
    x, c = toy(np.random.default_rng(99), 20_000)
    s = model.sample(c, seed=12)
    return max(stats.ks_2samp(x[:, j], s[:, j]).statistic for j in range(2))


def train_toy(
    settings: GANSettings,
    epochs: int,
    lr: float,
    batch_size: int = 256,
    n: int = 20_000,
    seed: int = 0,
    **fit,
) -> tuple[GANModel, object]:
    rng = np.random.default_rng(seed)
    x, c = toy(rng, n)
    xv, cv = toy(rng, 2000)
    model = GANModel(settings, seed=seed)
    training = default_gan_training(
        max_epochs=epochs, batch_size=batch_size, learning_rate=lr, patience=epochs, device="cpu"
    )
    result = model.fit(x, c, validation={"x": xv, "c": cv}, training=training, quiet=True, **fit)
    return model, result


# --------------------------------------------------------------------------------------------
# settings
# --------------------------------------------------------------------------------------------


def test_settings_round_trip_and_defaults():
    s = GANSettings()
    assert (s.loss, s.latent_dim, s.hidden_features, s.n_critic, s.gp_lambda) == (
        "cramer", 16, 128, 1, 10.0)  # fmt: skip
    assert s.adam_betas == (0.0, 0.9) and s.ema == 0.999 and s.critic_outputs == 32
    w = GANSettings(loss="wgan-gp")
    assert w.n_critic == 5 and w.critic_outputs == 1
    assert GANSettings(loss="wgan-gp", n_critic=2).n_critic == 2
    for settings in (s, w, GANSettings(ema=None, layer_norm=True, dropout=0.1)):
        d = json.loads(json.dumps(settings.to_dict()))
        assert GANSettings.from_dict(d) == settings
    assert GANSettings.from_dict({"adam_betas": [0.5, 0.99]}).adam_betas == (0.5, 0.99)


def test_settings_unknown_keys_are_named():
    with pytest.raises(ConfigError, match=r"unknown gan setting 'n_critics'.*"
                       r"did you mean 'n_critic'"):  # fmt: skip
        GANSettings.from_dict({"n_critics": 3})
    with pytest.raises(ConfigError, match="must be a mapping"):
        GANSettings.from_dict([("loss", "cramer")])


@pytest.mark.parametrize(
    ("key", "value"),
    [("loss", "wgan"), ("latent_dim", 0), ("hidden_features", 2.5), ("n_blocks", -1),
     ("critic_output_dim", True), ("n_critic", 0), ("gp_lambda", -1.0),
     ("adam_betas", [0.5]), ("adam_betas", [0.5, 1.0]), ("ema", 1.0), ("dropout", 1.0),
     ("layer_norm", "yes"), ("conditional_scale", 1)],
)  # fmt: skip
def test_settings_bad_values_name_the_field(key, value):
    with pytest.raises(ConfigError, match=f"gan setting '{key}"):
        GANSettings.from_dict({key: value})


# --------------------------------------------------------------------------------------------
# networks
# --------------------------------------------------------------------------------------------


def test_no_batch_norm_and_layer_norm_only_in_the_critic():
    gan = ConditionalGAN(3, 2, GANSettings(layer_norm=True, dropout=0.1), seed=0)
    norms = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.SyncBatchNorm,
             torch.nn.InstanceNorm1d)  # fmt: skip
    assert not any(isinstance(m, norms) for m in gan.modules())
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in gan.generator.modules())
    assert sum(isinstance(m, torch.nn.LayerNorm) for m in gan.critic.modules()) == 2
    assert sum(isinstance(m, torch.nn.Dropout) for m in gan.critic.modules()) == 2
    assert not any(p.requires_grad for p in gan.generator_ema.parameters())
    # the EMA generator starts as a copy of the generator
    for a, b in zip(gan.generator.parameters(), gan.generator_ema.parameters(), strict=True):
        assert torch.equal(a, b)
    assert ConditionalGAN(3, 2, GANSettings(ema=None)).generator_ema is None


def test_conditional_scale_starts_as_the_plain_generator_and_scales_per_condition():
    s = GANSettings(hidden_features=16, critic_hidden_features=16)
    gan = ConditionalGAN(2, 3, s, seed=4)
    z, c = gan.latent(6), torch.randn(6, 3)
    inputs = torch.cat([z, c], dim=1)
    # zero-initialised frame: a = 0, exp(s) = 1
    assert torch.equal(gan.generator(inputs), gan.generator.mlp(inputs))
    with torch.no_grad():
        gan.generator.frame[-1].bias.copy_(torch.tensor([1.0, -1.0, 0.0, np.log(3.0)]))
    # log-scale log 3, softly bounded at |s| <= 5: exp(5 tanh(log(3) / 5)) = 2.95
    scale = float(np.exp(5 * np.tanh(np.log(3.0) / 5)))
    expected = torch.tensor([1.0, -1.0]) + torch.tensor([1.0, scale]) * gan.generator.mlp(inputs)
    assert torch.allclose(gan.generator(inputs), expected, atol=1e-4)
    plain = ConditionalGAN(2, 3, GANSettings(conditional_scale=False), seed=4)
    assert plain.generator.frame is None


def test_critic_treats_events_independently():
    """No coupling between rows (the gradient penalty needs per-event gradients)."""
    gan = ConditionalGAN(3, 2, GANSettings(layer_norm=True), seed=1).eval()
    x = torch.randn(5, 3, requires_grad=True)
    c = torch.randn(5, 2)
    jac = torch.autograd.functional.jacobian(lambda t: gan.critic_output(t, c)[:, 0], x)
    off_diagonal = jac.clone()
    for i in range(5):
        off_diagonal[i, i] = 0
    assert off_diagonal.abs().max() == 0 and jac.abs().max() > 0


def test_seeded_initialisation_leaves_the_callers_rng():
    torch.manual_seed(5)
    state = torch.get_rng_state()
    a, b = ConditionalGAN(2, 2, SMALL, seed=7), ConditionalGAN(2, 2, SMALL, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    other = ConditionalGAN(2, 2, SMALL, seed=8)
    sa, sb, so = a.state_dict(), b.state_dict(), other.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], so[k]) for k in sa)


# --------------------------------------------------------------------------------------------
# losses
# --------------------------------------------------------------------------------------------


def test_gradient_penalty_of_a_linear_critic_is_analytic():
    """D(x, c) = w.x + v.c: grad_x D = w everywhere, so the penalty is (|w| - 1)^2 per event,
    and its gradient w.r.t. w is 2 (|w| - 1) w / |w|."""
    w = torch.tensor([0.6, -1.2, 2.0], dtype=torch.float64, requires_grad=True)
    v = torch.tensor([3.0, -4.0], dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    real, fake = (torch.randn(50, 3, generator=g, dtype=torch.float64) for _ in range(2))
    c = torch.randn(50, 2, generator=g, dtype=torch.float64)
    eps = torch.rand(50, 1, generator=g, dtype=torch.float64)
    gp = gradient_penalty(lambda x, cc: x @ w + cc @ v, real, fake, c, eps)
    norm = math.sqrt(0.36 + 1.44 + 4.0)
    assert gp.shape == (50,)
    torch.testing.assert_close(gp, torch.full((50,), (norm - 1) ** 2, dtype=torch.float64))
    gp.mean().backward()
    torch.testing.assert_close(w.grad, 2 * (norm - 1) * w.detach() / norm)


def test_gradient_penalty_interpolates_with_the_rows_conditions():
    """D(x, c) = |x|^2 / 2 + x.c: grad_x D = x_hat + c, with x_hat = e x_r + (1 - e) x_g."""
    g = torch.Generator().manual_seed(1)
    real, fake, c = (torch.randn(40, 2, generator=g, dtype=torch.float64) for _ in range(3))
    eps = torch.rand(40, 1, generator=g, dtype=torch.float64)
    gp = gradient_penalty(lambda x, cc: 0.5 * (x**2).sum(1) + (x * cc).sum(1), real, fake, c,
                          eps)  # fmt: skip
    x_hat = eps * real + (1 - eps) * fake
    torch.testing.assert_close(gp, ((x_hat + c).norm(dim=1) - 1) ** 2)


def test_energy_score_is_analytic_and_proper():
    """For x ~ N(0, s^2) and draws from N(mu, t^2): E[score] = E|G - x| - E|G - G'| / 2 with
    E|G - x| = sqrt(2 (s^2 + t^2 + mu^2) / pi) ... for mu = 0; the truth scores s / sqrt(pi)
    and beats a wider, a narrower and a shifted model."""
    g = torch.Generator().manual_seed(2)
    n, s = 200_000, 0.7
    x = s * torch.randn(n, 1, generator=g, dtype=torch.float64)

    def score(mu: float, t: float) -> float:
        draws = mu + t * torch.randn(4, n, 1, generator=g, dtype=torch.float64)
        return energy_score(draws, x).mean().item()

    truth = score(0.0, s)
    assert truth == pytest.approx(s / math.sqrt(math.pi), rel=0.01)
    wide = math.sqrt(2 * (s**2 + 1.0) / math.pi) - 0.5 * 2 * 1.0 / math.sqrt(math.pi)
    assert score(0.0, 1.0) == pytest.approx(wide, rel=0.01)
    for mu, t in ((0.0, 1.0), (0.0, 0.4), (0.3, s)):
        assert score(mu, t) > truth + 0.01


@pytest.mark.parametrize("loss", ["cramer", "wgan-gp"])
def test_weights_enter_every_term_as_in_the_flow_loss(monkeypatch, loss):
    """Rows (a, b, b) with weights (2, 1, -1): b cancels, and the loss is sum w l / (n mean w)
    = 2 l_a / (3 mean w), for the critic and the generator.  The latent noise is frozen at 0
    so that generated events depend on their row's conditions only."""
    gan = ConditionalGAN(2, 2, GANSettings(loss=loss, gp_lambda=0.0, hidden_features=16,
                                           critic_hidden_features=16), seed=3)  # fmt: skip
    monkeypatch.setattr(gan, "latent", lambda n, *a, **k: torch.zeros(n, 16))
    objective = GANObjective(gan.settings)
    g = torch.Generator().manual_seed(4)
    x, c = torch.randn(2, 2, generator=g), torch.randn(2, 2, generator=g)
    xs, cs = x[[0, 1, 1]], c[[0, 1, 1]]
    w = torch.tensor([2.0, 1.0, -1.0])
    weighted = StepContext({}, lr=0.0, index=0, mean_weight=0.7, grad_clip=None)
    plain = StepContext({}, lr=0.0, index=0, mean_weight=1.0, grad_clip=None)
    for name in ("critic_loss", "generator_loss"):
        got = getattr(objective, name)(gan, xs, cs, w, weighted)
        alone = getattr(objective, name)(gan, x[:1], c[:1], None, plain)
        torch.testing.assert_close(got, 2 * alone / (3 * 0.7))


def test_knn_recall_and_coverage_catch_a_collapse():
    rng = np.random.default_rng(3)
    real = rng.normal(size=(3000, 3))
    recall, coverage = knn_recall_coverage(real, rng.normal(size=(3000, 3)))
    assert recall > 0.95 and coverage == pytest.approx(1 - 2**-5, abs=0.02)
    half = rng.normal(size=(3000, 3))
    half[:, 0] = np.abs(half[:, 0])  # one mode of two: half the space is never generated
    recall, coverage = knn_recall_coverage(real, half)
    assert recall < 0.6 and coverage < 0.6
    with pytest.raises(ValueError, match="more than k=5"):
        knn_recall_coverage(real[:5], real[:5])


def test_log_prob_raises_no_likelihood():
    model = GANModel(SMALL)
    with pytest.raises(NoLikelihoodError, match="'gan' model has no tractable likelihood"):
        model.log_prob(np.zeros((3, 2), np.float32), np.zeros((3, 2), np.float32))
    assert issubclass(NoLikelihoodError, TypeError)
    assert ExportedGANModel is GANModel and GANModel.kind == "gan"


# --------------------------------------------------------------------------------------------
# training for real
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cramer():
    torch.set_num_threads(1)
    return train_toy(GANSettings(hidden_features=64, critic_hidden_features=64), epochs=8,
                     lr=1e-3)  # fmt: skip


def test_cramer_gan_learns_the_conditional_density(cramer):
    # measured (8 epochs of 20k events, ~8 s): worst KS 0.030, mean error 0.021, width error
    # 0.116 (the widths are the slowest to settle: 0.04 to 0.2 across recipes at 8 epochs),
    # pooled KS 0.012
    model, result = cramer
    q = quality(model)
    assert q["ks"] < 0.06 and q["mean"] < 0.05 and q["width"] < 0.2, q
    assert pooled_ks(model) < 0.03
    assert result.n_bad_batches == 0


def test_checkpoint_chosen_by_ks_with_recall_and_coverage_recorded(cramer):
    model, result = cramer
    metrics = [h["metric"] for h in result.history]
    assert result.selection == "metric"
    assert result.selected_epoch == result.best_metric_epoch == int(np.argmin(metrics)) + 1
    for h in result.history:
        assert set(h["metric_details"]) == {"recall", "coverage"}
        assert h["val_loss"] is not None and h["train_loss"] is not None
    best = result.history[result.selected_epoch - 1]
    # a healthy generator: coverage near 1 - 2^-5 = 0.97 of identical samples, recall ~ 1
    assert best["metric_details"]["recall"] > 0.95 and best["metric_details"]["coverage"] > 0.9
    # the validation energy score of the truth on this toy is ~0.41; the first epochs are above
    assert min(h["val_loss"] for h in result.history) < 0.43
    # the model holds the selected weights: its metric is the best one recorded
    rng = np.random.default_rng(0)
    toy(rng, 20_000)
    xv, cv = toy(rng, 2000)
    from hepgen.models.selection import mean_ks_metric

    ks = mean_ks_metric(lambda c, s: model.sample(c, seed=s), xv, cv, seed=0)
    assert ks == pytest.approx(min(metrics), abs=1e-6)


def test_negative_weights_cancel_a_contamination():
    """Signal (weight 1) + a contamination (weight 1) + an independent sample of the same
    contamination (weight -1): the weighted data are the signal alone.  The contamination sits
    at x = (1.5, -1.5) whatever c (its conditions are drawn from another distribution too), a
    third of the unweighted events; the GAN trained on the weighted set ignores it."""
    rng = np.random.default_rng(4)
    x_s, c_s = toy(rng, 12_000)

    def contamination(n: int) -> tuple[np.ndarray, np.ndarray]:
        c = rng.normal(0.5, 0.7, size=(n, 2)).astype(np.float32)
        x = (np.array([1.5, -1.5]) + 0.3 * rng.normal(size=(n, 2))).astype(np.float32)
        return x, c

    (x_a, c_a), (x_b, c_b) = contamination(6000), contamination(6000)
    x = np.concatenate([x_s, x_a, x_b])
    c = np.concatenate([c_s, c_a, c_b])
    w = np.concatenate([np.ones(18_000), -np.ones(6000)]).astype(np.float32)
    xv, cv = toy(rng, 2000)
    model = GANModel(GANSettings(hidden_features=64, critic_hidden_features=64), seed=1)
    training = default_gan_training(max_epochs=8, batch_size=256, learning_rate=1e-3,
                                    device="cpu")  # fmt: skip
    result = model.fit(x, c, w, validation={"x": xv, "c": cv}, training=training, quiet=True)
    q = quality(model)
    # measured (~9 s): worst KS 0.055, mean error 0.027, width error 0.18
    assert q["ks"] < 0.09 and q["mean"] < 0.06 and q["width"] < 0.3, q
    assert result.n_bad_batches == 0
    # control: unweighted, the contamination moves the mean of x1 - A c by ~0.4
    mean_shift = np.mean(x[:18_000] - c[:18_000] @ A.T, axis=0)
    assert mean_shift[0] > 0.3
    # and the generator puts no third of its events on the contamination
    s = model.sample(np.tile(POINTS[0], (20_000, 1)), seed=3)
    near = np.mean(np.linalg.norm(s - np.array([1.5, -1.5]), axis=1) < 0.5)
    assert near < 0.01  # the truth: 1e-4 there


def test_wgan_gp_short_training_learns_the_marginals():
    """The issue's recipe (lambda = 10, 5 critic steps per generator step, Adam (0, 0.9)) in
    15 epochs: ~230 generator updates, enough for the marginals, not yet for p(x | c), whose
    energy score still falls (the Cramer GAN gets both in 8 epochs: see the module notes)."""
    # measured (~8 s): pooled KS 0.027, validation energy score 0.98 -> 0.60 (truth ~0.41),
    # but per-point mean error 0.6 and width error 1.1
    model, result = train_toy(WGAN, epochs=15, lr=3e-4)
    assert pooled_ks(model) < 0.06
    scores = [h["val_loss"] for h in result.history]
    assert min(scores) < 0.7 * scores[0]
    assert result.selection == "metric" and result.n_bad_batches == 0


@pytest.mark.slow
def test_wgan_gp_learns_the_conditional_density():
    """100 epochs take WGAN-GP from the marginals (15 epochs: per-point mean error 0.6, width
    error 1.1) to most of p(x | c), not to the Cramer GAN's 8-epoch quality.

    The trajectory oscillates (the per-epoch KS of the marginals swings between 0.02 and 0.3)
    and is chaotic: rounding differences (today's code against that of commit 06dd028, same
    seeds) part the trajectories after ~12 epochs.  The numbers first recorded here (worst KS
    0.078 at the KS-chosen epoch 61) were one trajectory that does not reproduce: the code of
    that commit with the same torch (2.13.0) gives 0.237 on this machine (AMD EPYC), the
    failure of the old bound of 0.12: not a regression.  The checkpoint is now chosen by the
    energy score, a proper score of p(x | c), instead of the marginals' KS.
    Measured (100 epochs, 2-3 min on a loaded core; four runs: seeds 0 and 1, by energy score
    and by KS, and the old commit): worst KS 0.14-0.24, mean error 0.08-0.23, width error
    0.25-0.50, best energy score 0.427-0.448 (Cramer, 8 epochs: 0.413; the truth ~0.41);
    seed 0 here: 0.144, 0.185, 0.297, 0.437.
    """
    model, result = train_toy(WGAN, epochs=100, lr=3e-4, selection="loss")
    q = quality(model)
    assert q["ks"] < 0.3 and q["mean"] < 0.3 and q["width"] < 0.65, q
    assert min(h["val_loss"] for h in result.history) < 0.46


# --------------------------------------------------------------------------------------------
# the training loop: resume, NaN guard
# --------------------------------------------------------------------------------------------

RESUME_LOSS = "wgan-gp"  # n_critic = 5: generator updates straddle the epochs (12 batches)


def small_fit(tmp: Path, resume: bool = False, epochs: int = 4, **settings) -> GANModel:
    rng = np.random.default_rng(6)
    x, c = toy(rng, 3000)
    xv, cv = toy(rng, 600)
    w = rng.uniform(0.5, 1.5, 3000).astype(np.float32)
    s = GANSettings(
        **{
            "hidden_features": 16,
            "critic_hidden_features": 16,
            "n_blocks": 1,
            "critic_blocks": 1,
            "latent_dim": 4,
            "dropout": 0.1,
            **settings,
        }
    )
    model = GANModel(s, seed=2)
    training = default_gan_training(max_epochs=epochs, batch_size=256, learning_rate=1e-3,
                                    warmup_steps=5, device="cpu")  # fmt: skip
    model.fit(x, c, w, validation={"x": xv, "c": cv}, training=training, checkpoint_dir=tmp,
              resume=resume, quiet=True)  # fmt: skip
    return model


@pytest.mark.parametrize("loss", ["wgan-gp", "cramer"])
def test_resume_after_a_crash_is_bit_identical(tmp_path: Path, monkeypatch, loss):
    monkeypatch.setattr(hepgen.training.loop, "CHECKPOINT_SECONDS", 0.0)  # after every epoch
    straight = small_fit(tmp_path / "a", loss=loss)
    calls = {"n": 0}
    step = GANObjective.step

    def crashing(self, *args):
        calls["n"] += 1
        if calls["n"] > 2 * 12 + 3:  # 12 batches per epoch: crash inside epoch 3
            raise RuntimeError("simulated crash")
        return step(self, *args)

    with monkeypatch.context() as m:
        m.setattr(GANObjective, "step", crashing)
        with pytest.raises(RuntimeError, match="simulated crash"):
            small_fit(tmp_path / "b", loss=loss)
    assert json.loads((tmp_path / "b" / "last.json").read_text())["epoch"] == 2
    torch.manual_seed(123)  # the resumed run must not depend on the global RNG's state
    resumed = small_fit(tmp_path / "b", resume=True, loss=loss)
    a, b = straight.gan_.state_dict(), resumed.gan_.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    last_a = load_file(tmp_path / "a" / "last.safetensors")
    last_b = load_file(tmp_path / "b" / "last.safetensors")
    assert last_a.keys() == last_b.keys()
    assert all(torch.equal(last_a[k], last_b[k]) for k in last_a)  # G, D, EMA, both Adams, RNGs
    assert {"optimizer.critic.0.exp_avg", "optimizer.generator.0.exp_avg_sq",
            "module.generator_ema.mlp.inp.weight"} <= last_a.keys()  # fmt: skip
    history_a = json.loads((tmp_path / "a" / "last.json").read_text())["history"]
    history_b = json.loads((tmp_path / "b" / "last.json").read_text())["history"]
    keys = ("train_loss", "val_loss", "metric", "metric_details")
    assert [[h[k] for k in keys] for h in history_a] == [[h[k] for k in keys] for h in history_b]
    # the GAN recipe may not change on resume
    with pytest.raises(TrainingError, match=r"objective n_critic: \d in the checkpoint, 3 now"):
        small_fit(tmp_path / "b", resume=True, epochs=6, loss=loss, n_critic=3)


def test_nan_guard_counts_bad_critic_and_generator_updates(monkeypatch):
    calls = {"critic": 0, "generator": 0}
    critic_loss, generator_loss = GANObjective.critic_loss, GANObjective.generator_loss

    def bad_critic(self, *args):
        calls["critic"] += 1
        loss = critic_loss(self, *args)
        return loss * float("nan") if calls["critic"] % 10 == 0 else loss

    def bad_generator(self, *args):
        calls["generator"] += 1
        loss = generator_loss(self, *args)
        return loss + float("inf") if calls["generator"] % 4 == 0 else loss

    monkeypatch.setattr(GANObjective, "critic_loss", bad_critic)
    monkeypatch.setattr(GANObjective, "generator_loss", bad_generator)
    rng = np.random.default_rng(7)
    x, c = toy(rng, 3000)
    model = GANModel(SMALL, seed=0)
    result = model.fit(x, c, training=default_gan_training(max_epochs=5, batch_size=100,
                                                           device="cpu"), quiet=True)  # fmt: skip
    # 150 batches: 15 bad critic updates; the other 135 batches make 135 generator updates
    # (n_critic = 1), of which every 4th is bad: 33
    assert calls == {"critic": 150, "generator": 135}
    assert result.n_bad_batches == 15 + 135 // 4
    assert sum(h["n_bad_batches"] for h in result.history) == result.n_bad_batches
    assert all(torch.isfinite(p).all() for p in model.gan_.parameters())
    assert np.isfinite(model.sample(c[:100], seed=0)).all()


def test_nan_guard_gives_up_after_max_bad_batches(monkeypatch):
    monkeypatch.setattr(GANObjective, "critic_loss", lambda self, *a: torch.tensor(float("nan")))
    rng = np.random.default_rng(8)
    x, c = toy(rng, 1000)
    with pytest.raises(TrainingError, match="epoch 2, batch 2 of 4: 6 consecutive"):
        GANModel(SMALL).fit(x, c, quiet=True, training=default_gan_training(
            max_epochs=3, batch_size=250, max_bad_batches=6, device="cpu"))  # fmt: skip


# --------------------------------------------------------------------------------------------
# sampling and files
# --------------------------------------------------------------------------------------------


def test_sampling_is_seeded(cramer):
    model, _ = cramer
    c = toy(np.random.default_rng(9), 500)[1]
    a, b = model.sample(c, seed=3), model.sample(c, seed=3)
    assert a.dtype == np.float32 and a.shape == (500, 2)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, model.sample(c, seed=4))
    assert np.array_equal(model.sample(c, seed=3, batch_size=64)[:64], a[:64])
    assert model.sample(c[:0], seed=1).shape == (0, 2)
    with pytest.raises(InputError, match="gan sample: 1 rows of the conditions have NaN"):
        bad = c.copy()
        bad[2, 1] = np.nan
        model.sample(bad)
    with pytest.raises(InputError, match="conditions have 3 columns, the model expects 2"):
        model.sample(np.zeros((4, 3), np.float32))
    with pytest.raises(RuntimeError, match="fit"):
        GANModel().sample(c)


def test_save_load_round_trip(cramer, tmp_path: Path):
    model, _ = cramer
    files = model.save(tmp_path / "m")
    assert [p.name for p in files] == ["gan.safetensors", "gan.json"]
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["gan.json", "gan.safetensors"]
    meta = json.loads(files[1].read_text())
    assert meta["format"] == "hepgen-gan" and meta["format_version"] == 1
    assert meta["n_features"] == 2 and meta["n_conditions"] == 2
    assert meta["settings"] == model.settings.to_dict() and meta["sampler"] == "generator_ema"
    assert meta["n_parameters"] == model.describe()["n_parameters"] > 0
    assert len(meta["weights_sha256"]) == 64 and "torch" in meta["versions"]
    loaded = GANModel.load(tmp_path / "m")
    c = toy(np.random.default_rng(10), 300)[1]
    assert np.array_equal(loaded.sample(c, seed=5), model.sample(c, seed=5))
    assert not loaded.gan_.training
    model.save(tmp_path / "m", name="fakes_gan")  # the fast simulation's second generator
    assert np.array_equal(GANModel.load(tmp_path / "m", name="fakes_gan").sample(c, seed=5),
                          model.sample(c, seed=5))  # fmt: skip
    from safetensors import safe_open

    with safe_open(str(files[0]), framework="pt") as handle:  # plain safetensors, no pickle
        assert handle.metadata() == {"format": "hepgen-gan", "format_version": "1"}
        assert set(handle.keys()) == set(model.gan_.state_dict())
