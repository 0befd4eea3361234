"""FlowModel: the numpy-level model protocol around the conditional flow, trained for real."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from hepgen.errors import InputError
from hepgen.models.flow import FlowSettings
from hepgen.models.flow_model import FlowModel
from hepgen.models.selection import mean_ks_metric
from hepgen.training import TrainingSettings

SMALL = FlowSettings(n_transforms=4, hidden_features=64, n_bins=8)


def toy(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """x | c: a Gaussian whose mean follows c0 and whose width follows |c1| (heteroscedastic)."""
    c = rng.normal(size=(n, 2)).astype(np.float32)
    sigma = 0.3 + 0.4 * np.abs(c[:, 1])
    x = (c[:, 0] + sigma * rng.normal(size=n))[:, None].astype(np.float32)
    return x, c


def true_log_prob(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    return stats.norm.logpdf(x[:, 0], c[:, 0], 0.3 + 0.4 * np.abs(c[:, 1]))


@pytest.fixture(scope="module")
def trained() -> tuple[FlowModel, object, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    x, c = toy(rng, 30_000)
    xv, cv = toy(rng, 5_000)
    model = FlowModel(SMALL, seed=1)
    result = model.fit(
        x,
        c,
        validation={"x": xv, "c": cv},
        quiet=True,
        training=TrainingSettings(max_epochs=10, batch_size=512, learning_rate=2e-3, seed=1),
    )
    return model, result, (xv, cv)


def test_learns_the_conditional_density(trained):
    model, _, (xv, cv) = trained
    gap = np.mean(true_log_prob(xv, cv)) - np.mean(model.log_prob(xv, cv))
    assert 0 <= gap < 0.03  # nats per event (the truth is the best possible)
    # samples at fixed conditions: the mean follows c0, the width follows |c1|
    for c0, c1 in ((-1.0, -1.0), (0.5, 1.5)):  # in the bulk, away from the kink at c1 = 0
        cc = np.tile(np.array([[c0, c1]], dtype=np.float32), (20_000, 1))
        s = model.sample(cc, seed=4)[:, 0]
        assert s.mean() == pytest.approx(c0, abs=0.05)
        assert s.std() == pytest.approx(0.3 + 0.4 * abs(c1), rel=0.07)  # flat: 0.62


def test_checkpoint_chosen_by_ks_and_both_recorded(trained):
    model, result, (xv, cv) = trained
    metrics = [h["metric"] for h in result.history]
    assert result.selection == "metric"
    assert result.best_metric_epoch == int(np.argmin(metrics)) + 1
    assert result.selected_epoch == result.best_metric_epoch
    assert result.best_loss_epoch >= 1
    # the model holds the selected weights: its metric is the best one recorded
    ks = mean_ks_metric(lambda c, s: model.sample(c, seed=s), xv, cv, seed=1)
    assert ks == pytest.approx(min(metrics), abs=1e-6)


def test_sampling_is_seeded(trained):
    model, _, (_, cv) = trained
    a, b = model.sample(cv[:100], seed=3), model.sample(cv[:100], seed=3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, model.sample(cv[:100], seed=4))
    # batching does not change the draws' distribution, and shapes follow the conditions
    assert model.sample(cv[:1000], seed=3, batch_size=64).shape == (1000, 1)


def test_save_load_round_trip(trained, tmp_path):
    model, _, (xv, cv) = trained
    files = model.save(tmp_path)
    assert sorted(p.name for p in files) == ["flow.json", "flow.safetensors"]
    loaded = FlowModel.load(tmp_path)
    assert np.array_equal(loaded.log_prob(xv, cv), model.log_prob(xv, cv))
    assert np.array_equal(loaded.sample(cv[:50], seed=9), model.sample(cv[:50], seed=9))


def test_bad_input_is_named(trained):
    model, _, (xv, cv) = trained
    bad = cv.copy()
    bad[3, 1] = np.nan
    with pytest.raises(InputError, match="flow sample: 1 rows of the conditions have NaN"):
        model.sample(bad)
    with pytest.raises(InputError, match="conditions have 3 columns, the model expects 2"):
        model.log_prob(xv, np.zeros((len(xv), 3), np.float32))
    with pytest.raises(RuntimeError, match="fit"):
        FlowModel().sample(cv)


def test_weights_reweight_the_target():
    """Weights w(x) = exp(x) turn N(0, 1) into N(1, 1): the weighted fit learns the shift."""
    rng = np.random.default_rng(5)
    n = 20_000
    c = np.zeros((n, 1), np.float32)
    x = rng.normal(size=(n, 1)).astype(np.float32)
    w = np.exp(x[:, 0]).astype(np.float32)
    model = FlowModel(FlowSettings(n_transforms=2, hidden_features=16, n_bins=8), seed=2)
    model.fit(
        x,
        c,
        w,
        quiet=True,
        selection="loss",
        training=TrainingSettings(max_epochs=6, batch_size=500, learning_rate=3e-3),
    )
    s = model.sample(np.zeros((20_000, 1), np.float32), seed=1)[:, 0]
    assert s.mean() == pytest.approx(1.0, abs=0.08)
    assert s.std() == pytest.approx(1.0, abs=0.08)


def test_metric_period_follows_its_estimated_cost():
    # Sampling an autoregressive flow makes one pass per target: with 4 targets and as many
    # validation as training rows, one KS evaluation costs 1000 * 0.35 * 4 / 1000 = 1.4
    # epochs, so the metric runs every 10th epoch (the most) and at the last one.
    rng = np.random.default_rng(3)
    c = rng.normal(size=(2000, 2)).astype(np.float32)
    x = (c @ rng.normal(size=(2, 4)) + 0.5 * rng.normal(size=(2000, 4))).astype(np.float32)
    tiny = FlowSettings(kind="autoregressive", n_transforms=2, hidden_features=16, n_bins=4)
    result = FlowModel(tiny, seed=0, device="cpu").fit(
        x[:1000],
        c[:1000],
        validation={"x": x[1000:], "c": c[1000:]},
        training=TrainingSettings(max_epochs=3, device="cpu"),
        quiet=True,
    )
    assert result.settings["metric_every"] == 10 and result.settings["batch_size"] == 256
    assert result.chosen_from_data_size == ["batch_size", "patience", "metric_every"]
    assert [h["metric"] is not None for h in result.history] == [False, False, True]
    assert result.selection == "metric" and result.selected_epoch == 3
    # a coupling flow samples in one pass: 1000 * 0.35 / 1000 = 0.35 epochs -> every 4th
    coupling = FlowSettings(n_transforms=2, hidden_features=16, n_bins=4)
    again = FlowModel(coupling, seed=0, device="cpu").fit(
        x[:1000],
        c[:1000],
        validation={"x": x[1000:], "c": c[1000:]},
        training=TrainingSettings(max_epochs=1, device="cpu"),
        quiet=True,
    )
    assert again.settings["metric_every"] == 4 and again.history[0]["metric"] is not None
