"""The training loop: convergence, weights, early stopping, NaN guard, checkpoints, resume."""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import hepgen.training
import hepgen.training.checkpoint
import hepgen.training.loop
import hepgen.training.run
from hepgen.errors import ConfigError, InputError
from hepgen.training import TrainingError, TrainingResult, TrainingSettings, train
from hepgen.training.data import _weighted_batch_loss

# Truth of the linear-Gaussian regression: y | x ~ N(mu(x), sigma(x)^2) with
# mu = W_MU . x + B_MU and log sigma = W_LS . x + B_LS.
W_MU, B_MU = np.array([1.5, -2.0, 0.5]), 0.3
W_LS, B_LS = np.array([0.2, 0.0, 0.0]), -0.5


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one torch thread is faster and immune to a busy machine's other load."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def regression(n: int, seed: int, shift: float = 0.0) -> dict[str, np.ndarray]:
    """Events of the linear-Gaussian truth (``shift`` moves the mean: a different process)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    mu = x @ W_MU + B_MU + shift
    y = mu + np.exp(x @ W_LS + B_LS) * rng.normal(size=n)
    return {"x": x.astype(np.float32), "y": y[:, None].astype(np.float32)}


def gaussian_nll(module: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-event Gaussian NLL (without log sqrt(2 pi)); its minimum expectation is E[log s] + 1/2."""
    out = module(batch["x"])
    mu, log_sigma = out[:, 0], out[:, 1]
    return 0.5 * ((batch["y"][:, 0] - mu) / torch.exp(log_sigma)) ** 2 + log_sigma


def linear_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Linear(3, 2)


def dropout_model(seed: int = 0) -> torch.nn.Module:
    """A small MLP with dropout: its training consumes torch's global random numbers."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Dropout(0.1), torch.nn.Linear(16, 2)
    )


def assert_fitted(model: torch.nn.Linear, tol: float) -> None:
    weight, bias = model.weight.detach().numpy(), model.bias.detach().numpy()
    np.testing.assert_allclose(weight[0], W_MU, atol=tol)
    np.testing.assert_allclose(weight[1], W_LS, atol=tol)
    np.testing.assert_allclose(bias, [B_MU, B_LS], atol=tol)


def states_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def settings(**kwargs) -> TrainingSettings:
    base = {"max_epochs": 12, "batch_size": 256, "learning_rate": 0.02, "device": "cpu"}
    return TrainingSettings(**{**base, **kwargs})


TRAIN = regression(12_000, seed=1)
VALID = regression(3_000, seed=2)


# --------------------------------------------------------------------------------------------
# Convergence and weights
# --------------------------------------------------------------------------------------------


def test_converges_to_known_parameters() -> None:
    model = linear_model()
    result = train(model, gaussian_nll, TRAIN, VALID, settings(), quiet=True)
    # MLE standard errors are ~0.006 for 12k events; 0.03 leaves room for SGD noise.
    assert_fitted(model, tol=0.03)
    assert result.stopped == "max_epochs" and len(result.history) == 12
    assert result.selection == "loss"
    assert result.selected_epoch == result.best_loss_epoch
    # The expected NLL at the truth is E[log sigma] + 1/2 = B_LS + 1/2 = 0.
    assert abs(result.best_loss) < 0.05
    assert result.history[0]["train_loss"] > result.history[-1]["train_loss"]
    losses = [h["val_loss"] for h in result.history]
    assert result.best_loss == min(losses) == losses[result.best_loss_epoch - 1]
    assert all(h["n_bad_batches"] == 0 and h["events_per_second"] > 0 for h in result.history)
    assert set(result.history[0]) == {
        "epoch", "train_loss", "val_loss", "metric", "lr", "seconds", "n_bad_batches",
        "events_per_second",
    }  # fmt: skip
    json.dumps(result.to_dict(), allow_nan=False)


def test_batch_loss_normalisation_uses_the_training_mean_weight() -> None:
    losses = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert _weighted_batch_loss(losses, None, 1.0).item() == pytest.approx(2.5)
    # sWeights of this batch sum to -1: dividing by their sum would flip the gradient's sign.
    w = torch.tensor([1.0, -1.0, 0.5, -1.5])
    expected = (1.0 - 2.0 + 1.5 - 6.0) / (4 * 0.8)
    assert _weighted_batch_loss(losses, w, 0.8).item() == pytest.approx(expected)


def capture_first_gradient(data: dict[str, np.ndarray]) -> tuple[list[torch.Tensor], dict]:
    """Gradient of the single first step (one batch), and the parameters after it."""
    model = linear_model(seed=5)
    grads: list[torch.Tensor] = []
    for p in model.parameters():
        p.register_hook(lambda g: grads.append(g.detach().clone()))
    s = settings(max_epochs=1, batch_size=100_000, grad_clip=None, weight_decay=0.0)
    train(model, gaussian_nll, data, None, s, quiet=True)
    return grads, {k: v.clone() for k, v in model.state_dict().items()}


def test_integer_weights_act_as_duplicated_events() -> None:
    data = regression(2000, seed=3)
    w = np.random.default_rng(4).integers(1, 3, size=2000)  # weights 1 and 2
    weighted = {**data, "w": w.astype(np.float32)}
    duplicated = {k: np.repeat(v, w, axis=0) for k, v in data.items()}
    grads_w, after_w = capture_first_gradient(weighted)
    grads_d, after_d = capture_first_gradient(duplicated)
    assert len(grads_w) == len(grads_d) == 2
    for gw, gd in zip(grads_w, grads_d, strict=True):
        torch.testing.assert_close(gw, gd, rtol=1e-5, atol=1e-6)
    for k in after_w:
        torch.testing.assert_close(after_w[k], after_d[k], rtol=1e-5, atol=1e-6)
    # A global scale of the weights changes nothing (the loss is divided by the mean weight).
    grads_s, _ = capture_first_gradient({**data, "w": 3.7 * w.astype(np.float32)})
    for gw, gs in zip(grads_w, grads_s, strict=True):
        torch.testing.assert_close(gw, gs, rtol=1e-5, atol=1e-6)


def test_weighted_train_and_validation_losses() -> None:
    """With a loss that ignores the parameters, the losses are exact weighted means."""
    rng = np.random.default_rng(6)

    def data(n: int) -> dict[str, np.ndarray]:
        w = rng.normal(1.0, 1.5, size=n)  # about a quarter negative
        return {"v": rng.exponential(2.0, size=n), "w": w}

    train_data, valid_data = data(5000), data(3000)

    def constant_loss(module, batch):
        return batch["v"] + 0.0 * module.weight.sum()

    model = torch.nn.Linear(1, 1).double()
    result = train(model, constant_loss, train_data, valid_data, settings(max_epochs=2), quiet=True)
    for d, key in ((train_data, "train_loss"), (valid_data, "val_loss")):
        expected = np.sum(d["w"] * d["v"]) / np.sum(d["w"])
        assert min(d["w"]) < 0
        for record in result.history:
            assert record[key] == pytest.approx(expected, rel=1e-9)


def test_negative_weights_cancel_events() -> None:
    """Events of another process added with weight +1 and again with -1 leave the fit as is."""
    other = regression(4000, seed=7, shift=3.0)
    data = {
        k: np.concatenate([TRAIN[k], other[k], other[k]]) for k in ("x", "y")
    }  # fmt: skip
    data["w"] = np.concatenate([np.ones(12_000), np.ones(4000), -np.ones(4000)]).astype(np.float32)
    model = linear_model()
    result = train(model, gaussian_nll, data, VALID, settings(max_epochs=15), quiet=True)
    assert_fitted(model, tol=0.05)
    assert result.n_bad_batches == 0
    # Unweighted, the shifted events pull the intercept far off (control).
    unweighted = {k: v for k, v in data.items() if k != "w"}
    control = linear_model()
    train(control, gaussian_nll, unweighted, VALID, settings(max_epochs=3), quiet=True)
    assert abs(control.bias[0].item() - B_MU) > 0.5


# --------------------------------------------------------------------------------------------
# Stopping
# --------------------------------------------------------------------------------------------


def test_early_stopping_on_a_plateau() -> None:
    def flat(module, batch):
        return batch["v"] + 0.0 * module.weight.sum()

    data = {"v": np.ones(500, dtype=np.float32)}
    s = settings(max_epochs=50, patience=3, min_delta=1e-3, schedule="plateau")
    result = train(torch.nn.Linear(1, 1), flat, data, data, s, quiet=True)
    assert result.stopped == "early_stopping"
    assert len(result.history) == 1 + 3  # one improvement (from nothing), then 3 without
    assert result.best_loss_epoch == 1
    # "plateau" halves the rate after max(1, patience // 2) = 1 epoch without improvement.
    assert [h["lr"] for h in result.history] == [0.02, 0.02, 0.01, 0.005]


def test_early_stopping_on_overfitting(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(3, 64), torch.nn.Tanh(), torch.nn.Linear(64, 64), torch.nn.Tanh(),
        torch.nn.Linear(64, 2),
    )  # fmt: skip
    tiny = regression(40, seed=8)
    s = settings(
        max_epochs=300, batch_size=40, learning_rate=0.01, schedule="constant",
        weight_decay=0.0, patience=8,
    )  # fmt: skip
    result = train(model, gaussian_nll, tiny, VALID, s, checkpoint_dir=tmp_path, quiet=True)
    assert result.stopped == "early_stopping"
    n = len(result.history)
    assert n < 150
    assert result.best_loss_epoch == n - 8
    val = [h["val_loss"] for h in result.history]
    train_losses = [h["train_loss"] for h in result.history]
    # Overfitting: the training loss keeps falling while the validation loss rises.
    assert train_losses[-1] < train_losses[result.best_loss_epoch - 1]
    assert val[-1] > min(val) + 0.1
    # The module ends with the best-validation weights, which best_loss.safetensors holds.
    best = load_file(tmp_path / "best_loss.safetensors")
    assert states_equal(model.state_dict(), best)
    assert result.selected_epoch == result.best_loss_epoch


def test_time_limit_stops_after_the_epoch_that_crosses_it(monkeypatch) -> None:
    # every batch takes 2 ms of (fake) time, so the first epoch alone crosses 0.01 s on any
    # machine, however fast or busy
    clock = FakeClock()
    use_clock(monkeypatch, clock)

    def slow_nll(module, batch):
        clock.now += 0.002
        return gaussian_nll(module, batch)

    s = settings(max_epochs=100, time_limit=0.01)
    result = train(linear_model(), slow_nll, TRAIN, VALID, s, quiet=True)
    assert result.stopped == "time_limit"
    assert len(result.history) == 1


# --------------------------------------------------------------------------------------------
# NaN guard
# --------------------------------------------------------------------------------------------


def test_nan_guard_skips_and_counts_bad_batches() -> None:
    calls = {"n": 0, "bad": 0}

    def flaky_nll(module, batch):
        losses = gaussian_nll(module, batch)
        if not module.training:
            return losses
        calls["n"] += 1
        if calls["n"] % 7 == 0:  # non-finite loss
            calls["bad"] += 1
            return losses * float("nan")
        if calls["n"] % 11 == 0:  # finite loss, NaN gradient: d sqrt(0 * p) / dp = inf * 0
            calls["bad"] += 1
            return losses + torch.sqrt(0.0 * module.weight.sum())
        return losses

    model = linear_model()
    result = train(model, flaky_nll, TRAIN, VALID, settings(), quiet=True)
    assert calls["n"] == 12 * 47  # 47 batches per epoch
    assert calls["bad"] == sum(1 for i in range(1, 12 * 47 + 1) if i % 7 == 0 or i % 11 == 0)
    assert result.n_bad_batches == calls["bad"]
    assert sum(h["n_bad_batches"] for h in result.history) == calls["bad"]
    assert_fitted(model, tol=0.03)


def test_nan_guard_gives_up_after_max_bad_batches() -> None:
    def nan_loss(module, batch):
        return gaussian_nll(module, batch) * float("nan")

    data = regression(1000, seed=9)  # 3 batches of 334/333/333 per epoch
    s = settings(batch_size=400, max_bad_batches=7)
    with pytest.raises(
        TrainingError, match=r"epoch 3, batch 1 of 3: 7 consecutive batches.*max_bad_batches=7"
    ):
        train(linear_model(), nan_loss, data, None, s, quiet=True)


# --------------------------------------------------------------------------------------------
# Checkpoints and resume
# --------------------------------------------------------------------------------------------


def metric_from_samples(module: torch.nn.Module) -> float:
    """A metric that draws random numbers (like sampling a model) and prefers small |sigma - 0.6|."""
    noise = torch.randn(100, 3)
    log_sigma = module(noise)[:, 1]
    return float(abs(torch.exp(log_sigma).mean() - 0.6))


def resume_settings(**kwargs) -> TrainingSettings:
    return settings(max_epochs=6, batch_size=512, warmup_steps=10, **kwargs)


WEIGHTED = {**TRAIN, "w": np.random.default_rng(10).uniform(0.5, 1.5, 12_000)}


def test_resume_after_a_crash_is_bit_identical(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(
        hepgen.training.loop, "CHECKPOINT_SECONDS", 0.0
    )  # a checkpoint after every epoch
    straight = dropout_model()
    result_a = train(
        straight, gaussian_nll, WEIGHTED, VALID, resume_settings(), tmp_path / "a",
        metric_fn=metric_from_samples, quiet=True,
    )  # fmt: skip

    calls = {"n": 0}

    def crashing_nll(module, batch):
        if module.training:
            calls["n"] += 1
            if calls["n"] > 3 * 24:  # 24 batches per epoch: crash inside epoch 4
                raise RuntimeError("simulated crash")
        return gaussian_nll(module, batch)

    with pytest.raises(RuntimeError, match="simulated crash"):
        train(
            dropout_model(), crashing_nll, WEIGHTED, VALID, resume_settings(), tmp_path / "b",
            metric_fn=metric_from_samples, quiet=True,
        )  # fmt: skip
    assert json.loads((tmp_path / "b" / "last.json").read_text())["epoch"] == 3
    torch.manual_seed(123)  # the resumed run must not depend on the global RNG's state
    resumed = dropout_model(seed=99)  # other initial weights: they are overwritten
    result_b = train(
        resumed, gaussian_nll, WEIGHTED, VALID, resume_settings(), tmp_path / "b", resume=True,
        metric_fn=metric_from_samples, quiet=True,
    )  # fmt: skip
    assert states_equal(straight.state_dict(), resumed.state_dict())
    last_a = load_file(tmp_path / "a" / "last.safetensors")
    last_b = load_file(tmp_path / "b" / "last.safetensors")
    assert states_equal(last_a, last_b)  # module, optimizer, RNGs, best weights
    keys = ("epoch", "train_loss", "val_loss", "metric", "lr", "n_bad_batches")
    assert [[h[k] for k in keys] for h in result_a.history] == [
        [h[k] for k in keys] for h in result_b.history
    ]
    assert (result_a.selected_epoch, result_a.selection) == (result_b.selected_epoch, "metric")


def test_resume_with_more_epochs(tmp_path: Path) -> None:
    """constant schedule: 3 epochs, then resumed up to 6, equals 6 straight."""
    six = resume_settings(schedule="constant")
    train(dropout_model(), gaussian_nll, TRAIN, VALID, six, tmp_path / "a", quiet=True)
    three = settings(max_epochs=3, batch_size=512, warmup_steps=10, schedule="constant")
    result = train(dropout_model(), gaussian_nll, TRAIN, VALID, three, tmp_path / "b", quiet=True)
    assert result.stopped == "max_epochs" and len(result.history) == 3
    result = train(
        dropout_model(), gaussian_nll, TRAIN, VALID, six, tmp_path / "b", resume=True, quiet=True
    )
    assert len(result.history) == 6
    last_a = load_file(tmp_path / "a" / "last.safetensors")
    last_b = load_file(tmp_path / "b" / "last.safetensors")
    assert states_equal(last_a, last_b)


def test_resume_errors_name_the_file_and_the_differences(tmp_path: Path) -> None:
    s = settings(max_epochs=2)
    with pytest.raises(TrainingError, match=r"last\.safetensors does not exist"):
        train(linear_model(), gaussian_nll, TRAIN, VALID, s, tmp_path, resume=True, quiet=True)
    train(linear_model(), gaussian_nll, TRAIN, VALID, s, tmp_path, quiet=True)
    with pytest.raises(TrainingError, match=r"batch_size: 256 in the checkpoint, 128 now.*"
                       r"learning_rate: 0\.02 in the checkpoint, 0\.01 now"):  # fmt: skip
        changed = settings(max_epochs=4, batch_size=128, learning_rate=0.01)
        train(linear_model(), gaussian_nll, TRAIN, VALID, changed, tmp_path, resume=True)
    with pytest.raises(TrainingError, match="12000 training events, the training data now have"):
        fewer = {k: v[:1000] for k, v in TRAIN.items()}
        train(linear_model(), gaussian_nll, fewer, VALID, s, tmp_path, resume=True, quiet=True)
    with pytest.raises(TrainingError, match="does not fit this module"):
        train(torch.nn.Linear(3, 3), gaussian_nll, TRAIN, VALID, s, tmp_path, resume=True)
    path = tmp_path / "last.safetensors"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(TrainingError, match=r"last\.safetensors is corrupt or truncated"):
        train(linear_model(), gaussian_nll, TRAIN, VALID, s, tmp_path, resume=True, quiet=True)
    with pytest.raises(ConfigError, match="checkpoint_dir"):
        train(linear_model(), gaussian_nll, TRAIN, VALID, s, None, resume=True)


def test_resume_of_a_finished_run_trains_no_more(tmp_path: Path) -> None:
    s = settings(max_epochs=2)
    model = linear_model()
    train(model, gaussian_nll, TRAIN, VALID, s, tmp_path, quiet=True)
    again = linear_model(seed=4)
    result = train(again, gaussian_nll, TRAIN, VALID, s, tmp_path, resume=True, quiet=True)
    assert result.stopped == "max_epochs" and len(result.history) == 2
    assert states_equal(model.state_dict(), again.state_dict())


def test_checkpoint_files_are_safetensors_and_json_only(tmp_path: Path) -> None:
    model = linear_model()
    result = train(
        model, gaussian_nll, TRAIN, VALID, settings(max_epochs=3), tmp_path,
        metric_fn=metric_from_samples, quiet=True,
    )  # fmt: skip
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["best_loss.safetensors", "best_metric.safetensors", "last.json",
                     "last.safetensors"]  # fmt: skip
    assert not list(tmp_path.rglob("*.pt")) and not list(tmp_path.rglob("*.pkl"))
    for name in names:
        assert not (tmp_path / name).read_bytes().startswith(b"\x80")  # pickle protocol 2+
    for name in ("best_loss.safetensors", "best_metric.safetensors"):
        weights = load_file(tmp_path / name)
        assert weights.keys() == model.state_dict().keys()
    assert states_equal(load_file(tmp_path / "best_metric.safetensors"), model.state_dict())
    last = load_file(tmp_path / "last.safetensors")
    assert {"module.weight", "module.bias", "rng.torch", "rng.shuffle"} <= last.keys()
    assert {"optimizer.0.exp_avg", "optimizer.0.exp_avg_sq", "optimizer.0.step"} <= last.keys()
    assert last["rng.torch"].dtype == torch.uint8
    state = json.loads((tmp_path / "last.json").read_text())
    with safe_open(str(tmp_path / "last.safetensors"), framework="pt") as handle:
        assert json.loads(handle.metadata()["hepgen_state"]) == state
    assert state["format_version"] == 1 and state["epoch"] == 3
    assert len(state["history"]) == 3 and state["settings"]["max_epochs"] == 3
    assert state["best_metric_epoch"] == result.best_metric_epoch
    assert state["schedule"]["step"] == 3 * 47


# --------------------------------------------------------------------------------------------
# Metric-based selection
# --------------------------------------------------------------------------------------------


def test_metric_selects_its_best_epoch(tmp_path: Path) -> None:
    snapshots: dict[int, dict[str, torch.Tensor]] = {}

    def metric(module):
        epoch = len(snapshots) + 1
        snapshots[epoch] = {k: v.clone() for k, v in module.state_dict().items()}
        torch.randn(1000)  # like sampling: must not change the training's random numbers
        return (epoch - 4) ** 2 + 1.0  # minimum at epoch 4

    model = dropout_model()
    s = settings(max_epochs=8)
    result = train(
        model, gaussian_nll, TRAIN, VALID, s, tmp_path / "m", metric_fn=metric, quiet=True
    )
    assert result.best_metric_epoch == 4 and result.selected_epoch == 4
    assert result.selection == "metric" and result.best_metric == 1.0
    assert result.best_loss_epoch != 4  # the loss alone would choose another epoch
    assert states_equal(model.state_dict(), snapshots[4])
    assert states_equal(load_file(tmp_path / "m" / "best_metric.safetensors"), snapshots[4])
    assert [h["metric"] for h in result.history] == [(e - 4) ** 2 + 1.0 for e in range(1, 9)]

    # Evaluating the metric (and its random draws) leaves the training trajectory as it is.
    train(dropout_model(), gaussian_nll, TRAIN, VALID, s, tmp_path / "n", quiet=True)
    last_m = load_file(tmp_path / "m" / "last.safetensors")
    last_n = load_file(tmp_path / "n" / "last.safetensors")
    assert states_equal(
        {k: v for k, v in last_m.items() if k.startswith("module.")},
        {k: v for k, v in last_n.items() if k.startswith("module.")},
    )


def test_metric_every_and_ties_prefer_the_lower_loss() -> None:
    model = linear_model()
    s = settings(max_epochs=6, metric_every=2)
    result = train(model, gaussian_nll, TRAIN, VALID, s, metric_fn=lambda m: 0.5, quiet=True)
    assert [h["metric"] for h in result.history] == [None, 0.5, None, 0.5, None, 0.5]
    even = {e: result.history[e - 1]["val_loss"] for e in (2, 4, 6)}
    assert result.best_metric_epoch == min(even, key=even.get)
    assert result.selection == "metric"


def test_no_validation_keeps_the_last_weights() -> None:
    result = train(linear_model(), gaussian_nll, TRAIN, None, settings(max_epochs=3), quiet=True)
    assert result.selection == "last" and result.selected_epoch == 3
    assert result.best_loss_epoch is None and result.stopped == "max_epochs"
    assert all(h["val_loss"] is None for h in result.history)


# --------------------------------------------------------------------------------------------
# Determinism, schedule, settings, input checks, progress and logging
# --------------------------------------------------------------------------------------------


def test_same_seed_same_parameters_other_seed_others() -> None:
    runs = []
    for seed in (0, 0, 1):
        model = dropout_model()
        train(model, gaussian_nll, TRAIN, None, settings(max_epochs=3, seed=seed), quiet=True)
        runs.append(model.state_dict())
    assert states_equal(runs[0], runs[1])
    assert not states_equal(runs[0], runs[2])


def test_cosine_schedule_with_warmup() -> None:
    s = settings(max_epochs=4, batch_size=1000, warmup_steps=5, schedule="cosine")
    data = regression(3000, seed=11)  # 3 batches per epoch, 12 steps
    result = train(linear_model(), gaussian_nll, data, None, s, quiet=True)
    lr = [h["lr"] for h in result.history]
    # The last batch of epoch e is step 3e - 1 (0-based); warm-up covers steps 0..4.
    assert lr[0] == pytest.approx(0.02 * 3 / 5)
    for e in (2, 3, 4):
        frac = (3 * e - 1 - 5) / (12 - 5)
        assert lr[e - 1] == pytest.approx(0.02 * 0.5 * (1 + math.cos(math.pi * frac)))


class FakeClock:
    """``time.monotonic`` of the training loop, advanced only by the test: the loop sees
    exactly the durations the test says, however busy the machine is."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def use_clock(monkeypatch, clock: FakeClock) -> None:
    """Make the training loop and its epochs read ``clock`` instead of ``time``."""
    for module in (hepgen.training.loop, hepgen.training.run):
        monkeypatch.setattr(module, "time", clock)


def test_cosine_anneals_within_the_time_limit(tmp_path: Path, monkeypatch) -> None:
    # Each batch takes 20 ms of (fake) time, 3 batches per epoch: 10 epochs fit in 0.6 s,
    # far fewer than max_epochs, so the horizon comes from the time limit and the rate
    # reaches ~0.  A fake clock makes the epoch count independent of the machine's load.
    clock = FakeClock()
    use_clock(monkeypatch, clock)

    def slow_nll(module, batch):
        clock.now += 0.02
        return gaussian_nll(module, batch)

    s = settings(max_epochs=1000, batch_size=1000, schedule="cosine", time_limit=0.6)
    data = regression(3000, seed=11)
    result = train(linear_model(), slow_nll, data, None, s, checkpoint_dir=tmp_path, quiet=True)
    lr = [h["lr"] for h in result.history]
    assert result.stopped == "time_limit"
    assert len(lr) == 10
    assert all(a > b for a, b in itertools.pairwise(lr))
    assert lr[-1] < 0.2 * 0.02
    # The checkpoint keeps the horizon, so a resumed run follows the same schedule.
    state, _ = hepgen.training.checkpoint._read_checkpoint(tmp_path / "last.safetensors")
    assert state["schedule"]["timed_horizon"] == len(lr)


def test_a_run_stopped_by_its_time_limit_is_finished_on_resume(tmp_path: Path, monkeypatch) -> None:
    # Resuming a run that ended on its time limit restores its last state and trains no
    # further epoch (its cosine horizon is spent): the same weights, the same history.
    clock = FakeClock()
    use_clock(monkeypatch, clock)

    def slow_nll(module, batch):
        clock.now += 0.02
        return gaussian_nll(module, batch)

    s = settings(max_epochs=1000, batch_size=1000, schedule="cosine", time_limit=0.6)
    data = regression(3000, seed=11)
    model = linear_model()
    first = train(model, slow_nll, data, None, s, checkpoint_dir=tmp_path, quiet=True)
    assert first.stopped == "time_limit" and len(first.history) == 10
    again = linear_model()
    second = train(again, slow_nll, data, None, s, checkpoint_dir=tmp_path, resume=True, quiet=True)
    assert second.stopped == "time_limit"
    assert second.history == first.history
    assert all(
        torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True)
    )


def test_settings_round_trip_and_errors() -> None:
    s = TrainingSettings(max_epochs=7, grad_clip=None, schedule="plateau", time_limit=60)
    assert TrainingSettings.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert TrainingSettings.from_dict({"learning_rate": "1e-3"}).learning_rate == 1e-3
    with pytest.raises(ConfigError, match=r"unknown training setting 'learnig_rate' "
                       r"\(did you mean 'learning_rate'\?\)"):  # fmt: skip
        TrainingSettings.from_dict({"learnig_rate": 0.1})
    for bad, match in (
        ({"batch_size": 0}, "'batch_size': Input should be greater than or equal to 1, got 0"),
        ({"max_epochs": 2.5}, "'max_epochs': Input should be a valid integer, got 2.5"),
        ({"learning_rate": -1.0}, "'learning_rate': Input should be greater than 0, got -1.0"),
        ({"schedule": "linear"}, "'schedule': Input should be 'cosine', 'plateau' or 'constant'"),
        ({"device": "tpu"}, "'device': expected 'auto', 'cpu', 'cuda' or 'cuda:N', got 'tpu'"),
        ({"grad_clip": 0}, "grad_clip"),
    ):
        with pytest.raises(ConfigError, match=match):
            TrainingSettings.from_dict(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="'cuda' requested but torch sees no CUDA device"):
        train(linear_model(), gaussian_nll, TRAIN, None, settings(device="cuda"), quiet=True)


def test_bad_inputs_are_named() -> None:
    s = settings(max_epochs=1)
    with pytest.raises(InputError, match="lengths x=12000, y=10"):
        train(linear_model(), gaussian_nll, {"x": TRAIN["x"], "y": TRAIN["y"][:10]}, None, s)
    nan_x = TRAIN["x"].copy()
    nan_x[5, 1] = np.nan
    with pytest.raises(InputError, match=r"train_data\['x'\]: 1 non-finite"):
        train(linear_model(), gaussian_nll, {**TRAIN, "x": nan_x}, None, s)
    with pytest.raises(InputError, match="mean weight is -1; it must be positive"):
        train(linear_model(), gaussian_nll, {**TRAIN, "w": -np.ones(12_000)}, None, s)
    with pytest.raises(InputError, match="validation_data has keys"):
        train(linear_model(), gaussian_nll, TRAIN, {"x": VALID["x"]}, s)
    with pytest.raises(ValueError, match=r"shape \(256,\), got \(\)"):
        train(linear_model(), lambda m, b: gaussian_nll(m, b).mean(), TRAIN, None, s)


def test_progress_and_log_lines(caplog, capsys) -> None:
    with caplog.at_level(logging.INFO, logger="hepgen.training"):
        train(linear_model(), gaussian_nll, TRAIN, VALID, settings(max_epochs=3), quiet=True)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert len(lines) == 3 and lines[0].startswith("epoch 1/3: train ")
    assert "events/s" in lines[0]
    assert capsys.readouterr().err == ""
    train(linear_model(), gaussian_nll, TRAIN, VALID, settings(max_epochs=2), quiet=False)
    err = capsys.readouterr().err
    assert "training" in err and "events/s" in err


def test_result_to_dict_is_json() -> None:
    result = TrainingResult([], None, None, 0, "last", "max_epochs", 0, best_loss=float("nan"))
    assert json.loads(json.dumps(result.to_dict()))["best_loss"] is None


def test_converges_tightly_on_many_events() -> None:
    data, valid = regression(200_000, seed=12), regression(20_000, seed=13)
    model = linear_model()
    s = settings(max_epochs=20, batch_size=1024, learning_rate=0.01)  # about 3 s
    train(model, gaussian_nll, data, valid, s, quiet=True)
    # MLE standard errors ~0.0015 at 200k events.
    assert_fitted(model, tol=0.01)


# --------------------------------------------------------------------------------------------
# Objectives: several optimizers, several updates per batch (adversarial training)
# --------------------------------------------------------------------------------------------


class TwoHeads(torch.nn.Module):
    """mu and log sigma from separate layers, each trained by its own optimizer."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.mu = torch.nn.Linear(3, 1)
        self.log_sigma = torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(3, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.mu(x), self.log_sigma(x)], dim=1)


class Alternating(hepgen.training.Objective):
    """Every batch updates the mean head; every ``every``-th batch also the width head (SGD)."""

    def __init__(self, every: int = 2, crash_after: int | None = None) -> None:
        self.every, self.crash_after, self.calls, self.indices = every, crash_after, 0, []

    def optimizers(self, module, settings):
        return {
            "mean": torch.optim.AdamW(module.mu.parameters(), lr=settings.learning_rate),
            "width": torch.optim.SGD(module.log_sigma.parameters(), lr=settings.learning_rate,
                                     momentum=0.9),
        }  # fmt: skip

    def describe(self):
        return {"every": self.every}

    def step(self, module, batch, weights, context):
        self.calls += 1
        self.indices.append(context.index)
        if self.crash_after is not None and self.calls > self.crash_after:
            raise RuntimeError("simulated crash")
        loss = context.weighted_mean(gaussian_nll(module, batch), weights)
        if not context.update("mean", loss):
            return None
        if (context.index + 1) % self.every == 0:
            loss = context.weighted_mean(gaussian_nll(module, batch), weights)
            if not context.update("width", loss, lr=0.5 * context.lr):
                return None
        return float(loss.detach())

    def validation_losses(self, module, batch):
        # a random validation loss: the loop seeds it, so epochs compare without this noise
        return gaussian_nll(module, batch) + torch.randn(batch["x"].shape[0])


def test_objective_with_two_optimizers_trains_and_checkpoints_both(tmp_path: Path) -> None:
    model, objective = TwoHeads(), Alternating(every=2)
    s = settings(max_epochs=12, grad_clip=1.0)
    result = train(model, None, TRAIN, VALID, s, tmp_path, objective=objective, quiet=True)
    np.testing.assert_allclose(model.mu.weight.detach().numpy()[0], W_MU, atol=0.05)
    np.testing.assert_allclose(model.log_sigma[1].weight.detach().numpy()[0], W_LS, atol=0.1)
    assert objective.indices == list(range(12 * 47))  # the loop's batch counter
    last = load_file(tmp_path / "last.safetensors")
    assert {"optimizer.mean.0.exp_avg", "optimizer.mean.1.exp_avg_sq",
            "optimizer.width.0.momentum_buffer"} <= last.keys()  # fmt: skip
    assert not any(k.startswith("optimizer.0.") for k in last)
    state = json.loads((tmp_path / "last.json").read_text())
    assert state["objective"] == {"every": 2}
    assert {"optimizer.mean.0.step", "optimizer.mean.1.step"} <= last.keys()
    assert result.n_bad_batches == 0 and result.selection == "loss"


def test_objective_validation_loss_uses_the_same_draws_every_epoch() -> None:
    """The validation noise is seeded: with a frozen module every epoch scores the same."""
    model, objective = TwoHeads(), Alternating()
    s = settings(max_epochs=3, learning_rate=1e-12)  # the weights barely move
    result = train(model, None, TRAIN, VALID, s, objective=objective, quiet=True)
    losses = [h["val_loss"] for h in result.history]
    assert losses[0] == pytest.approx(losses[2], abs=1e-7)
    shifted = train(TwoHeads(), None, TRAIN, VALID, settings(max_epochs=1, seed=5,
                    learning_rate=1e-12), objective=Alternating(), quiet=True)  # fmt: skip
    assert shifted.history[0]["val_loss"] != pytest.approx(losses[0], abs=1e-4)  # other draws


def test_objective_resume_after_a_crash_is_bit_identical(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(hepgen.training.loop, "CHECKPOINT_SECONDS", 0.0)  # after every epoch
    s = resume_settings()  # 24 batches per epoch; "width" every 5 batches straddles epochs
    straight = TwoHeads()
    train(straight, None, WEIGHTED, VALID, s, tmp_path / "a", objective=Alternating(5),
          metric_fn=metric_from_samples, quiet=True)  # fmt: skip
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(TwoHeads(), None, WEIGHTED, VALID, s, tmp_path / "b",
              objective=Alternating(5, crash_after=2 * 24 + 7), metric_fn=metric_from_samples,
              quiet=True)  # fmt: skip
    resumed = TwoHeads(seed=3)
    objective = Alternating(5)
    train(resumed, None, WEIGHTED, VALID, s, tmp_path / "b", resume=True, objective=objective,
          metric_fn=metric_from_samples, quiet=True)  # fmt: skip
    assert objective.indices[0] == 2 * 24  # the batch counter continues
    assert states_equal(straight.state_dict(), resumed.state_dict())
    assert states_equal(load_file(tmp_path / "a" / "last.safetensors"),
                        load_file(tmp_path / "b" / "last.safetensors"))  # fmt: skip
    with pytest.raises(TrainingError, match=r"objective every: 5 in the checkpoint, 3 now"):
        train(TwoHeads(), None, WEIGHTED, VALID, s, tmp_path / "b", resume=True,
              objective=Alternating(3), quiet=True)  # fmt: skip

    class Renamed(Alternating):
        def optimizers(self, module, settings):
            found = super().optimizers(module, settings)
            return {"location": found["mean"], "width": found["width"]}

    with pytest.raises(TrainingError, match=r"optimizer state 'mean\.0\.exp_avg', but this "
                       r"run's optimizers are 'location', 'width'"):  # fmt: skip
        train(TwoHeads(), None, WEIGHTED, VALID, s, tmp_path / "b", resume=True,
              objective=Renamed(5), quiet=True)  # fmt: skip


def test_objective_nan_guard_counts_skipped_updates() -> None:
    class Flaky(Alternating):
        def step(self, module, batch, weights, context):
            if self.calls % 5 == 4:  # the second ("width") update of every 5th call fails
                self.calls += 1
                loss = context.weighted_mean(gaussian_nll(module, batch), weights)
                assert context.update("mean", loss)
                return None if not context.update("width", loss * float("nan")) else 0.0
            return super().step(module, batch, weights, context)

    model = TwoHeads()
    result = train(model, None, TRAIN, None, settings(max_epochs=2), objective=Flaky(1),
                   quiet=True)  # fmt: skip
    assert result.n_bad_batches == 2 * 47 // 5
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_metric_mapping_goes_to_the_history_and_argument_errors() -> None:
    def metric(module):
        return {"metric": 0.25, "recall": 0.9, "coverage": np.float32(0.5)}

    result = train(linear_model(), gaussian_nll, TRAIN, VALID, settings(max_epochs=2),
                   metric_fn=metric, quiet=True)  # fmt: skip
    assert [h["metric"] for h in result.history] == [0.25, 0.25]
    assert result.history[0]["metric_details"] == {"recall": 0.9, "coverage": 0.5}
    assert (
        "metric_details"
        not in train(
            linear_model(), gaussian_nll, TRAIN, VALID, settings(max_epochs=1), quiet=True
        ).history[0]
    )
    with pytest.raises(ValueError, match="without the key 'metric'"):
        train(linear_model(), gaussian_nll, TRAIN, VALID, settings(max_epochs=1),
              metric_fn=lambda m: {"ks": 0.1}, quiet=True)  # fmt: skip
    with pytest.raises(TypeError, match="exactly one of loss_fn and objective"):
        train(TwoHeads(), gaussian_nll, TRAIN, None, settings(), objective=Alternating())
    with pytest.raises(TypeError, match="exactly one of loss_fn and objective"):
        train(TwoHeads(), None, TRAIN, None, settings())

    class BadName(Alternating):
        def optimizers(self, module, settings):
            return {"Mean": torch.optim.SGD(module.parameters(), lr=0.1)}

    with pytest.raises(ValueError, match="optimizer name 'Mean'"):
        train(TwoHeads(), None, TRAIN, None, settings(), objective=BadName())


# --------------------------------------------------------------------------------------------
# Size-based defaults, the metric's period, the checkpoint interval
# --------------------------------------------------------------------------------------------


def test_size_based_defaults_follow_the_documented_rule() -> None:
    small, chosen = TrainingSettings().resolve(22_400)  # the PID ntuple's training muons
    assert (small.batch_size, small.max_epochs, small.patience, small.metric_every) == (
        512, 182, 19, 1,
    )  # fmt: skip
    assert chosen == ["batch_size", "max_epochs", "patience", "metric_every"]
    large, _ = TrainingSettings().resolve(240_000)  # the 300k-jet task
    assert (large.batch_size, large.max_epochs, large.patience) == (4096, 136, 14)
    tiny, _ = TrainingSettings().resolve(2_000)
    assert (tiny.batch_size, tiny.max_epochs, tiny.patience) == (256, 500, 50)
    assert TrainingSettings().resolve(100_000)[0].batch_size == 2048
    # the metric's period keeps its estimated cost near a tenth of the training time
    assert TrainingSettings().resolve(22_400, metric_cost=0.79)[0].metric_every == 8
    assert TrainingSettings().resolve(22_400, metric_cost=0.05)[0].metric_every == 1
    assert TrainingSettings().resolve(22_400, metric_cost=50.0)[0].metric_every == 10


def test_explicit_settings_win_over_size_based_defaults() -> None:
    explicit = TrainingSettings(batch_size=1000, max_epochs=7, patience=3, metric_every=2)
    for n in (500, 22_400, 3_000_000):
        resolved, chosen = explicit.resolve(n, metric_cost=5.0)
        assert resolved == explicit and chosen == []
    partial, chosen = TrainingSettings(batch_size=1000).resolve(240_000)
    assert partial.batch_size == 1000 and partial.max_epochs == 34  # 8000 / 240 steps
    assert chosen == ["max_epochs", "patience", "metric_every"]


def test_training_result_records_the_resolved_settings(tmp_path: Path) -> None:
    s = TrainingSettings(max_epochs=2, learning_rate=0.02, device="cpu")  # batch size left out
    model = linear_model()
    result = train(model, gaussian_nll, TRAIN, VALID, s, tmp_path, quiet=True)
    assert result.n_train == 12_000
    assert result.settings["batch_size"] == 256  # 12000 / 50 = 240 -> 256
    assert result.settings["max_epochs"] == 2 and result.settings["patience"] == 10
    assert result.chosen_from_data_size == ["batch_size", "patience", "metric_every"]
    card = result.to_dict()
    assert card["settings"]["batch_size"] == 256 and "batch_size" in card["chosen_from_data_size"]
    assert TrainingResult(**json.loads(json.dumps(card))) == result  # the model card round trip
    # the checkpoint holds the resolved settings, so a resume compares like with like
    assert json.loads((tmp_path / "last.json").read_text())["settings"]["batch_size"] == 256
    again = train(linear_model(), gaussian_nll, TRAIN, VALID, s, tmp_path, resume=True, quiet=True)
    assert again.stopped == "max_epochs" and len(again.history) == 2


def test_metric_runs_at_its_period_and_at_the_last_epoch() -> None:
    calls: list[int] = []

    def metric(module):
        calls.append(1)
        return float(len(calls))

    s = settings(max_epochs=5, metric_every=3)
    result = train(linear_model(), gaussian_nll, TRAIN, VALID, s, metric_fn=metric, quiet=True)
    assert [h["metric"] is not None for h in result.history] == [False, False, True, False, True]
    assert result.selection == "metric" and result.selected_epoch == 3
    # early stopping ends the run on an epoch off the period: the metric runs there too
    stop = settings(max_epochs=50, metric_every=7, patience=2, min_delta=1e9)  # stops at 3
    stopped = train(linear_model(), gaussian_nll, TRAIN, VALID, stop, metric_fn=metric, quiet=True)
    assert stopped.stopped == "early_stopping"
    assert [h["metric"] is not None for h in stopped.history] == [False, False, True]


def test_checkpoints_after_the_first_epoch_then_by_the_clock(tmp_path: Path) -> None:
    # A fast run writes its checkpoint after epoch 1 and after the last epoch only (the
    # interval is 30 s); a crash in epoch 3 leaves epoch 1's checkpoint, which resumes exactly.
    calls = {"n": 0}

    def crashing_nll(module, batch):
        if module.training:
            calls["n"] += 1
            if calls["n"] > 2 * 47:  # 47 batches per epoch: crash inside epoch 3
                raise RuntimeError("simulated crash")
        return gaussian_nll(module, batch)

    s = settings(max_epochs=4, schedule="constant")
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(linear_model(), crashing_nll, TRAIN, VALID, s, tmp_path / "b", quiet=True)
    assert json.loads((tmp_path / "b" / "last.json").read_text())["epoch"] == 1
    resumed = linear_model(seed=5)
    train(resumed, gaussian_nll, TRAIN, VALID, s, tmp_path / "b", resume=True, quiet=True)
    straight = linear_model()
    train(straight, gaussian_nll, TRAIN, VALID, s, tmp_path / "a", quiet=True)
    assert states_equal(straight.state_dict(), resumed.state_dict())
    assert json.loads((tmp_path / "a" / "last.json").read_text())["epoch"] == 4


# --------------------------------------------------------------------------------------------
# Process settings: the command's, never the library's
# --------------------------------------------------------------------------------------------


def test_the_command_sets_a_passive_openmp_wait_unless_the_user_chose() -> None:
    from hepgen.cli import configure_process

    env: dict[str, str] = {}
    configure_process(env)
    assert env == {"OMP_WAIT_POLICY": "PASSIVE"}
    for user in ({"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "10000"}):
        chosen = dict(user)
        configure_process(chosen)
        assert chosen == user


def test_importing_and_training_leave_the_environment_alone() -> None:
    import subprocess
    import sys

    code = (
        "import os; before = dict(os.environ); import hepgen, hepgen.training, "
        "hepgen.models.flow_model; assert dict(os.environ) == before, "
        "set(os.environ) ^ set(before)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
