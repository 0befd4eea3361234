"""Tests of the reconstruction-efficiency classifier (hepgen.models.efficiency).

The reference is a known efficiency: a turn-on in pt, 0.95 on the plateau, times 0.7 in a
crack at 1.4 < |eta| < 1.6, for a falling pt spectrum; phi is an irrelevant third feature.
Everything is seeded; the quality checks compare with the true function on held-out points.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("xgboost")

import xgboost as xgb

from hepgen.errors import ConfigError, InputError
from hepgen.models.efficiency import FORMAT_VERSION, MIN_OBJECTS, EfficiencyModel

NAMES = ["pt", "eta", "phi"]

# One thread: results do not depend on it, and xgboost's OpenMP threads on a busy machine
# (other processes on the 2 cores) wait on barriers every boosting round, 10-50x slower.
FIT = {"device": "cpu", "n_jobs": 1}


def true_efficiency(pt: np.ndarray, eta: np.ndarray) -> np.ndarray:
    crack = (np.abs(eta) > 1.4) & (np.abs(eta) < 1.6)
    return 0.95 / (1.0 + np.exp(-(pt - 25.0) / 4.0)) * np.where(crack, 0.7, 1.0)


def make_objects(n: int, seed: int, pt_scale: float = 25.0):
    """Conditions (n, 3) [pt, eta, phi], reconstructed flags (n,) and the true efficiency."""
    rng = np.random.default_rng(seed)
    pt = 5.0 + rng.exponential(pt_scale, n)
    eta = rng.uniform(-2.5, 2.5, n)
    phi = rng.uniform(-math.pi, math.pi, n)
    eff = true_efficiency(pt, eta)
    return np.column_stack([pt, eta, phi]), rng.random(n) < eff, eff


@pytest.fixture(scope="module")
def train_data():
    return make_objects(100_000, seed=0)


@pytest.fixture(scope="module")
def test_data():
    return make_objects(50_000, seed=1)


@pytest.fixture(scope="module")
def model(train_data) -> EfficiencyModel:
    x, y, _ = train_data
    return EfficiencyModel(**FIT, seed=0).fit(x, y, feature_names=NAMES)


# --------------------------------------------------------------------------------------------
# quality
# --------------------------------------------------------------------------------------------


def test_predictions_match_the_true_efficiency(model, test_data):
    x, _, eff = test_data
    p = model.predict(x)
    assert p.dtype == np.float64 and p.shape == (x.shape[0],)
    assert p.min() >= 0.0 and p.max() <= 1.0
    mae = np.abs(p - eff).mean()
    assert mae < 0.02, mae  # measured 0.015
    # The features of the function are learnt: plateau, crack and turn-on.
    pt, eta = x[:, 0], x[:, 1]
    crack = (np.abs(eta) > 1.4) & (np.abs(eta) < 1.6)
    plateau = pt > 50
    assert p[plateau & ~crack].mean() == pytest.approx(0.95, abs=0.015)  # measured 0.943
    assert p[plateau & crack].mean() == pytest.approx(0.665, abs=0.03)  # measured 0.673
    low = pt < 12
    assert p[low & ~crack].mean() == pytest.approx(eff[low & ~crack].mean(), abs=0.01)
    summary = model.describe()["summary"]
    assert summary["importance"]["pt"] > summary["importance"]["eta"] > summary["importance"]["phi"]
    assert summary["n_train"] == 80_000 and summary["n_validation"] == 20_000
    assert 10 < summary["best_iteration"] < 2000 - 1  # early stopping triggered
    assert summary["n_trees"] == summary["best_iteration"] + 1  # cut back to the best round


def test_calibration_in_bins_of_predicted_probability(model, test_data):
    x, y, eff = test_data
    p = model.predict(x)
    bins = np.minimum((p * 10).astype(int), 9)
    checked = 0
    for b in range(10):
        sel = bins == b
        if sel.sum() < 100:
            continue
        expected = p[sel].mean()
        sigma = math.sqrt(np.sum(p[sel] * (1 - p[sel]))) / sel.sum()
        observed = y[sel].mean()
        assert abs(observed - expected) < 3 * sigma, (b, observed, expected, sigma)
        # Without label noise: the mean true efficiency in the bin.
        assert abs(eff[sel].mean() - expected) < 0.02, (b, eff[sel].mean(), expected)
        checked += 1
    assert checked >= 8


def test_sample_follows_predict_and_is_seeded(model, test_data):
    x, _, _ = test_data
    p = model.predict(x)
    draws = model.sample(x, np.random.default_rng(5))
    assert draws.dtype == np.bool_ and draws.shape == p.shape
    sigma = math.sqrt(np.sum(p * (1 - p)))
    assert abs(draws.sum() - p.sum()) < 4 * sigma
    high, low = p > 0.9, p < 0.1
    assert draws[high].mean() == pytest.approx(p[high].mean(), abs=0.01)
    assert draws[low].mean() == pytest.approx(p[low].mean(), abs=0.01)
    np.testing.assert_array_equal(draws, model.sample(x, np.random.default_rng(5)))
    np.testing.assert_array_equal(draws, model.sample(x, 5))  # an int seeds a Generator
    assert (draws != model.sample(x, np.random.default_rng(6))).any()
    with pytest.raises(TypeError, match="Generator"):
        model.sample(x, rng=None)


def test_fit_is_deterministic_for_a_seed():
    x, y, _ = make_objects(20_000, seed=11)
    a = EfficiencyModel(**FIT, seed=3).fit(x, y).predict(x[:2000])
    b = EfficiencyModel(**FIT, seed=3).fit(x, y).predict(x[:2000])
    np.testing.assert_array_equal(a, b)
    c = EfficiencyModel(**FIT, seed=4).fit(x, y).predict(x[:2000])
    assert not np.array_equal(a, c)  # another validation split


# --------------------------------------------------------------------------------------------
# weights
# --------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:efficiency fit. early stopping did not trigger")
def test_weight_two_equals_duplicated_rows(test_data):
    # Weight 2 on every reconstructed object doubles the odds: eff' = 2 eff / (1 + eff), a
    # large, known change.  Duplicated rows leak across the validation split (a copy on each
    # side), which defeats early stopping, so both fits run a fixed number of rounds.
    x, y, _ = make_objects(30_000, seed=21)
    settings = {**FIT, "n_estimators": 200, "early_stopping_rounds": 200, "max_depth": 4}
    weighted = EfficiencyModel(**settings).fit(x, y, weights=np.where(y, 2.0, 1.0))
    duplicated = EfficiencyModel(**settings).fit(
        np.concatenate([x, x[y]]), np.concatenate([y, y[y]])
    )
    unweighted = EfficiencyModel(**settings).fit(x, y)
    xt, _, eff = test_data
    doubled_odds = 2.0 * eff / (1.0 + eff)
    pw, pd, pu = weighted.predict(xt), duplicated.predict(xt), unweighted.predict(xt)
    assert np.abs(pw - doubled_odds).mean() < 0.025  # measured 0.017
    assert np.abs(pd - doubled_odds).mean() < 0.025  # measured 0.018
    assert np.abs(pw - pd).mean() < 0.02  # measured 0.014
    assert np.abs(pu - doubled_odds).mean() > 0.05  # measured 0.066: the weights matter
    assert weighted.describe()["summary"]["weighted"] is True


def test_weights_overall_scale_does_not_matter():
    x, y, _ = make_objects(10_000, seed=31)
    w = np.random.default_rng(32).uniform(0.5, 1.5, x.shape[0])
    a = EfficiencyModel(**FIT).fit(x, y, weights=w).predict(x[:1000])
    b = EfficiencyModel(**FIT).fit(x, y, weights=w * 1e-6).predict(x[:1000])
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_reweighting_the_spectrum_keeps_the_conditional_efficiency(model, train_data, test_data):
    # Reweight the falling spectrum (scale 25 GeV) to a harder one (scale 60 GeV): the
    # inclusive efficiency changes a lot, the efficiency as a function of pt and eta must not.
    x, y, _ = train_data
    pt = x[:, 0]
    w = np.exp((pt - 5.0) / 25.0 - (pt - 5.0) / 60.0) * (25.0 / 60.0)
    reweighted = EfficiencyModel(**FIT).fit(x, y, weights=w)
    inclusive_before = model.describe()["summary"]["efficiency"]
    inclusive_after = reweighted.describe()["summary"]["efficiency"]
    assert inclusive_after - inclusive_before > 0.2  # measured 0.43 -> 0.67
    xt, _, eff = test_data
    p = reweighted.predict(xt)
    assert np.abs(p - eff).mean() < 0.02  # measured 0.014
    assert np.abs(p - model.predict(xt)).mean() < 0.015  # measured 0.009
    # ... and on the harder spectrum that the weights describe.
    xh, _, effh = make_objects(20_000, seed=2, pt_scale=60.0)
    assert np.abs(reweighted.predict(xh) - effh).mean() < 0.025  # measured 0.019


def test_negative_weights_are_clipped_with_a_warning(test_data):
    # NLO-like weights: the sign is independent of reconstruction, so clipping costs only
    # statistics.
    x, y, _ = make_objects(30_000, seed=41)
    w = np.where(np.random.default_rng(42).random(x.shape[0]) < 0.15, -1.0, 1.0)
    with pytest.warns(UserWarning, match=r"weights are negative .* set to zero"):
        m = EfficiencyModel(**FIT).fit(x, y, weights=w)
    s = m.describe()["summary"]
    assert s["n_negative_weights_clipped"] == int((w < 0).sum())
    assert s["n_used"] == int((w > 0).sum())
    xt, _, eff = test_data
    assert np.abs(m.predict(xt) - eff).mean() < 0.03  # measured 0.023


@pytest.mark.parametrize(
    ("weights", "match"),
    [
        (np.ones(50)[:, None], r"shape \(50, 1\)"),
        (np.array([np.nan] + [1.0] * 49), "1 of 50 weights are NaN or inf"),
        (np.zeros(50), "weights sum to 0; the sum must be positive"),
        (np.array([-30.0] + [0.5] * 49), "weights sum to -5.5; the sum must be positive"),
        (np.array(["a"] * 50), "dtype"),
    ],
)
def test_bad_weights(weights, match):
    x, y, _ = make_objects(50, seed=0)
    with pytest.raises(InputError, match=match):
        EfficiencyModel(**FIT).fit(x, y, weights=weights)


# --------------------------------------------------------------------------------------------
# save / load
# --------------------------------------------------------------------------------------------


def test_save_load_round_trip(model, test_data, tmp_path):
    files = model.save(tmp_path / "model")
    assert [f.name for f in files] == ["efficiency.json", "efficiency.meta.json"]
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [
        "efficiency.json",
        "efficiency.meta.json",
    ]  # no temporary or pickle files left
    for f in files:  # both plain JSON, no pickle
        assert f.read_bytes()[:1] == b"{"
        json.loads(f.read_text())
    meta = json.loads(files[1].read_text())
    assert meta["format_version"] == FORMAT_VERSION and meta["kind"] == "xgboost"
    assert meta["feature_names"] == NAMES and meta["n_features"] == 3
    assert meta["summary"]["best_iteration"] == model.describe()["summary"]["best_iteration"]
    # The booster file is xgboost's native format, readable by xgboost alone.
    native = xgb.Booster(model_file=str(files[0]))
    assert native.num_boosted_rounds() == meta["summary"]["n_trees"]

    loaded = EfficiencyModel.load(tmp_path / "model")
    x, _, _ = test_data
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    np.testing.assert_array_equal(
        loaded.sample(x, np.random.default_rng(1)), model.sample(x, np.random.default_rng(1))
    )
    assert loaded.describe() == model.describe()
    assert loaded.get_params() == model.get_params()

    # Another name in the same folder; saving again overwrites atomically.
    model.save(tmp_path / "model", name="eff-jets")
    model.save(tmp_path / "model", name="eff-jets")
    again = EfficiencyModel.load(tmp_path / "model", name="eff-jets")
    np.testing.assert_array_equal(again.predict(x[:100]), model.predict(x[:100]))
    assert len(list((tmp_path / "model").iterdir())) == 4


def test_load_errors(model, tmp_path):
    folder = tmp_path / "m"
    booster, meta_path = model.save(folder)
    meta = json.loads(meta_path.read_text())

    with pytest.raises(InputError, match="metadata not found"):
        EfficiencyModel.load(tmp_path / "nowhere")
    with pytest.raises(InputError, match="file stem"):
        EfficiencyModel.load(folder, name="../m/efficiency")

    meta_path.write_text(json.dumps(meta)[:-20])
    with pytest.raises(InputError, match="corrupt JSON at line 1"):
        EfficiencyModel.load(folder)

    meta_path.write_text(json.dumps({**meta, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(InputError, match=r"format_version 2.*newer hepgen"):
        EfficiencyModel.load(folder)

    meta_path.write_text(json.dumps({**meta, "format": "something-else"}))
    with pytest.raises(InputError, match="not an efficiency model file"):
        EfficiencyModel.load(folder)

    meta_path.write_text(json.dumps({**meta, "feature_names": ["pt"]}))
    with pytest.raises(InputError, match="'feature_names' is missing or invalid"):
        EfficiencyModel.load(folder)

    meta_path.write_text(json.dumps({**meta, "booster_file": "../efficiency.json"}))
    with pytest.raises(InputError, match="'booster_file'"):
        EfficiencyModel.load(folder)

    bad_settings = {**meta["settings"], "learning_rate": -1}
    meta_path.write_text(json.dumps({**meta, "settings": bad_settings}))
    with pytest.raises(InputError, match=r"invalid settings.*learning_rate"):
        EfficiencyModel.load(folder)

    meta_path.write_text(json.dumps(meta))
    raw = booster.read_bytes()
    booster.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match="does not match its metadata"):
        EfficiencyModel.load(folder)

    # A booster that matches its hash but is not a model (hand-edited metadata).
    booster.write_bytes(b"{not a model")
    import hashlib

    meta_path.write_text(
        json.dumps({**meta, "booster_sha256": hashlib.sha256(b"{not a model").hexdigest()})
    )
    with pytest.raises(InputError, match="not a valid xgboost model"):
        EfficiencyModel.load(folder)

    booster.unlink()
    with pytest.raises(InputError, match="booster file not found"):
        EfficiencyModel.load(folder)


def test_a_gpu_trained_model_loads_without_a_gpu(model, test_data, tmp_path):
    _, meta_path = model.save(tmp_path)
    meta = json.loads(meta_path.read_text())
    meta["settings"]["device"] = "cuda"
    meta_path.write_text(json.dumps(meta))
    loaded = EfficiencyModel.load(tmp_path)
    assert loaded.device == "cuda"
    x, _, _ = test_data
    np.testing.assert_array_equal(loaded.predict(x[:500]), model.predict(x[:500]))


# --------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------


def test_predict_input_errors(model, test_data):
    x, _, _ = test_data
    with pytest.raises(InputError, match=r"2 columns, the model was trained on 3 \(pt, eta, phi\)"):
        model.predict(x[:10, :2])
    with pytest.raises(InputError, match=r"shape \(10,\)"):
        model.predict(x[:10, 0])
    bad = x[:10].copy()
    bad[4, 1] = np.nan
    with pytest.raises(InputError, match=r"1 objects have NaN .* first in 'eta' at row 4"):
        model.predict(bad)
    huge = x[:10].copy()
    huge[0, 0] = 1e300  # finite in float64, infinite in float32
    with pytest.raises(InputError, match="after conversion to float32"):
        model.predict(huge)
    with pytest.raises(InputError, match="dtype"):
        model.predict(np.array([["a", "b", "c"]]))
    assert model.predict(np.zeros((0, 3))).shape == (0,)
    # Integer and float32 inputs are fine.
    np.testing.assert_array_equal(model.predict(x[:5].astype(np.float32)), model.predict(x[:5]))


def test_fit_input_errors():
    x, y, _ = make_objects(100, seed=0)
    fit = EfficiencyModel(**FIT).fit
    with pytest.raises(InputError, match=r"reconstructed has shape \(99,\)"):
        fit(x, y[:99])
    with pytest.raises(InputError, match="neither"):
        fit(x, np.where(y, 2, 0))
    with pytest.raises(InputError, match=r"NaN or infinite conditions.*column 2 at row 7"):
        fit(np.where(np.arange(100)[:, None] * np.array([0, 0, 1]) == 7, np.inf, x), y)
    with pytest.raises(InputError, match="3 non-empty strings"):
        fit(x, y, feature_names=["pt", "eta"])
    with pytest.raises(InputError, match="duplicated feature names"):
        fit(x, y, feature_names=["pt", "pt", "phi"])
    # 0/1 integers are accepted as labels.
    with pytest.warns(UserWarning, match="early stopping did not trigger"):
        m = EfficiencyModel(**FIT, n_estimators=20).fit(x, y.astype(int))
    assert m.describe()["feature_names"] == ["f0", "f1", "f2"]
    with pytest.raises(RuntimeError, match="not fitted"):
        EfficiencyModel().predict(x)


@pytest.mark.parametrize(
    ("setting", "match"),
    [
        ({"learning_rate": 0.0}, "learning_rate.*got 0.0"),
        ({"n_estimators": 2.5}, "n_estimators"),
        ({"max_depth": 0}, "max_depth"),
        ({"min_child_weight": -1.0}, "min_child_weight"),
        ({"early_stopping_rounds": 0}, "early_stopping_rounds"),
        ({"validation_fraction": 0.9}, "validation_fraction"),
        ({"n_jobs": 0}, "n_jobs"),
        ({"seed": -1}, "seed"),
        ({"device": "tpu"}, "device.*'tpu'"),
    ],
)
def test_bad_settings_raise_config_error(setting, match):
    x, y, _ = make_objects(100, seed=0)
    with pytest.raises(ConfigError, match=match):
        EfficiencyModel(**setting).fit(x, y)


def test_device_resolution(model):
    import torch

    assert model.describe()["summary"]["device"] == "cpu"
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the CPU-only error does not apply")
    x, y, _ = make_objects(100, seed=0)
    with pytest.raises(ConfigError, match="no CUDA device"):
        EfficiencyModel(device="cuda").fit(x, y)
    auto = EfficiencyModel(device="auto", n_estimators=200, n_jobs=1).fit(x, y)
    assert auto.describe()["summary"]["device"] == "cpu"


# --------------------------------------------------------------------------------------------
# degenerate samples
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [True, False])
def test_all_or_none_reconstructed_gives_a_constant(value, tmp_path):
    x, _, _ = make_objects(200, seed=3)
    y = np.full(200, value)
    m = EfficiencyModel(**FIT).fit(x, y, weights=np.linspace(0.5, 2.0, 200))
    assert m.constant_ == float(value) and m.booster_ is None
    p = m.predict(x)
    assert p.dtype == np.float64
    np.testing.assert_array_equal(p, np.full(200, float(value)))
    np.testing.assert_array_equal(m.sample(x, 0), y)
    files = m.save(tmp_path)
    assert [f.name for f in files] == ["efficiency.meta.json"]
    loaded = EfficiencyModel.load(tmp_path)
    assert loaded.describe() == m.describe() and loaded.describe()["kind"] == "constant"
    np.testing.assert_array_equal(loaded.predict(x), p)
    with pytest.raises(InputError, match="2 columns"):
        loaded.predict(x[:, :2])


def test_a_single_failure_gives_a_constant_with_a_warning():
    x, _, _ = make_objects(1000, seed=4)
    y = np.ones(1000, dtype=bool)
    y[17] = False
    with pytest.warns(UserWarning, match="only 1 of 1000 objects is not reconstructed"):
        m = EfficiencyModel(**FIT).fit(x, y)
    np.testing.assert_array_equal(m.predict(x[:3]), np.full(3, 0.999))


def test_too_few_objects():
    x, y, _ = make_objects(MIN_OBJECTS - 1, seed=5)
    with pytest.raises(InputError, match=f"{MIN_OBJECTS - 1} objects, at least {MIN_OBJECTS}"):
        EfficiencyModel(**FIT).fit(x, y)
    x, y, _ = make_objects(30, seed=5)
    w = np.ones(30)
    w[:15] = 0.0
    with pytest.raises(InputError, match="15 of 30 objects have a positive weight"):
        EfficiencyModel(**FIT).fit(x, y, weights=w)
    # MIN_OBJECTS objects with both classes present are enough.
    x, _, _ = make_objects(MIN_OBJECTS, seed=5)
    y = np.arange(MIN_OBJECTS) % 2 == 0
    p = EfficiencyModel(**FIT).fit(x, y).predict(x)
    assert np.all((p > 0.1) & (p < 0.9))


@pytest.mark.slow
def test_million_objects_five_features(tmp_path: Path):
    rng = np.random.default_rng(7)
    n = 1_000_000
    x, y, eff = make_objects(n, seed=7)
    x = np.column_stack([x, rng.exponential(8.0, n), rng.choice([0, 4, 5], n)])
    start = time.perf_counter()
    m = EfficiencyModel(device="cpu").fit(x, y)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    p = m.predict(x)
    rate = n / (time.perf_counter() - start)
    assert np.abs(p - eff).mean() < 0.008
    print(f"fit 1e6 x 5: {fit_seconds:.1f} s; predict {rate:.3g} objects/s")
