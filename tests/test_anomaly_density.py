"""DensityModel: learns a known conditional density (physical units, Jacobian included),
interpolates into a gap of the condition it never saw, is reproducible, saves and loads, and
says clearly what is wrong with bad inputs and damaged model directories."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from hepgen.anomaly.density import DensityModel, read_model_card
from hepgen.errors import ConfigError, InputError

GAP = (0.4, 0.6)
RHO = 0.6
FEATURES = [{"name": "x1"}, {"name": "x2", "kind": "positive"}]
CONDITIONS = [{"name": "m"}]
SMALL_FLOW = {"n_transforms": 2, "hidden_features": 32, "n_blocks": 1}


def truth_params(m):
    """Mean and width of x1 and of log x2 given m (x2 is log-normal), their correlation RHO."""
    return 1.0 + 2.0 * m, 0.5 + 0.5 * m, 1.0 - m, 0.3 + 0.0 * m


def true_log_density(x1, x2, m):
    """log p(x1, x2 | m) in physical units: the bivariate normal of (x1, log x2) times the
    Jacobian 1 / x2 of x2 -> log x2."""
    mu1, s1, mu2, s2 = truth_params(m)
    y2 = np.log(x2)
    z1, z2 = (x1 - mu1) / s1, (y2 - mu2) / s2
    q = (z1**2 - 2 * RHO * z1 * z2 + z2**2) / (1 - RHO**2)
    return -np.log(2 * np.pi * s1 * s2 * np.sqrt(1 - RHO**2)) - 0.5 * q - y2


def _conditions(n, seed, m, gap):
    """The generator and m: given, or ~ U(0, 1) outside ``gap`` (when given)."""
    rng = np.random.default_rng(seed)
    if m is None:
        m = rng.uniform(0.0, 1.0, n)
        if gap is not None:
            m = m[(m < gap[0]) | (m > gap[1])]
    return rng, m


def draw(n, seed, m=None, gap=None):
    """Rows of (m, x1, x2) with m ~ U(0, 1) (outside ``gap`` when given) and the true log p."""
    rng, m = _conditions(n, seed, m, gap)
    n = len(m)
    e1, e2 = rng.normal(size=(2, n))
    mu1, s1, mu2, s2 = truth_params(m)
    x1 = (mu1 + s1 * e1).astype(np.float32)
    x2 = np.exp(mu2 + s2 * (RHO * e1 + np.sqrt(1 - RHO**2) * e2)).astype(np.float32)
    cols = {"m": m, "x1": x1, "x2": x2}
    return cols, true_log_density(x1.astype(np.float64), x2.astype(np.float64), m)


@pytest.fixture(scope="module")
def fitted():
    """A background model in the ANODE/CATHODE sense: trained on the 'sidebands' m outside
    GAP only (about 9600 events, 15 epochs, about 3 s on 2 cores)."""
    data, _ = draw(12_000, seed=1, gap=GAP)
    model = DensityModel(
        FEATURES,
        CONDITIONS,
        flow=SMALL_FLOW,
        training={"max_epochs": 15, "batch_size": 512, "learning_rate": 3e-3},
        seed=0,
        device="cpu",
    )
    return model.fit(data, quiet=True)


@pytest.fixture(scope="module")
def saved(fitted, tmp_path_factory):
    return fitted.save(tmp_path_factory.mktemp("density") / "model")


def test_learns_the_true_conditional_density(fitted):
    test, truth = draw(20_000, seed=2, gap=GAP)
    est = fitted.log_prob(test)
    assert est.dtype == np.float64 and est.shape == truth.shape
    # measured: -0.010 nats from the true mean log density (-1.59), -0.02 at worst over model
    # seeds 0-4; a model cannot beat the truth on held-out data by more than noise
    assert abs(est.mean() - truth.mean()) < 0.06
    assert np.corrcoef(est, truth)[0, 1] > 0.96  # measured 0.990 (0.977 at worst)
    # in-distribution rows are more likely than the same rows shifted by 2 widths in x1
    shifted = dict(test, x1=test["x1"] + 2 * truth_params(test["m"])[1])
    drop = est - fitted.log_prob(shifted)
    assert np.mean(drop > 0) > 0.85  # measured 0.897
    # truth: E[drop] = 2^2 / (2 (1 - rho^2)) = 3.1 nats (the cross term has mean 0);
    # measured 2.97
    assert drop.mean() == pytest.approx(2.0 / (1 - RHO**2), abs=0.5)


def test_density_is_in_physical_units(fitted):
    """x2 is log-normal, preprocessed by log + standardize: the density in x2's own units
    needs the Jacobian -log x2 - log(scale).  It integrates to 1 over (x1, x2), and matches
    the analytic density row by row."""
    m = 0.8
    mu1, s1, mu2, s2 = truth_params(m)
    g1 = np.linspace(mu1 - 6 * s1, mu1 + 6 * s1, 241)
    g2 = np.linspace(np.exp(mu2 - 6 * s2), np.exp(mu2 + 6 * s2), 241)
    x1, x2 = (a.ravel() for a in np.meshgrid(g1, g2))
    logp = fitted.log_prob({"m": np.full(len(x1), m), "x1": x1, "x2": x2})
    integral = np.exp(logp).sum() * (g1[1] - g1[0]) * (g2[1] - g2[0])
    assert integral == pytest.approx(1.0, abs=0.03)  # measured 0.99996
    test, truth = draw(5000, seed=5, m=np.full(5000, m))
    diff = fitted.log_prob(test) - truth
    # measured median -0.008; without the Jacobian a row would be off by log x2 + log(0.44)
    # (0.44: the standardisation scale of log x2), -0.6 on average here
    assert abs(np.median(diff)) < 0.1


def test_interpolates_into_the_gap_it_never_saw(fitted):
    assert fitted.domain_["m"]["largest_gap"] == pytest.approx(GAP, abs=0.002)
    m = np.full(20_000, 0.5)
    s = fitted.sample({"m": m}, seed=3)
    mu1, s1, mu2, s2 = truth_params(0.5)
    # measured: x1 2.03 +- 0.77 (truth 2.0 +- 0.75), log x2 0.506 +- 0.301 (0.5 +- 0.3), corr 0.60
    assert s["x1"].mean() == pytest.approx(mu1, abs=0.1)
    assert s["x1"].std() == pytest.approx(s1, rel=0.1)
    assert np.log(s["x2"]).mean() == pytest.approx(mu2, abs=0.05)
    assert np.log(s["x2"]).std() == pytest.approx(s2, rel=0.1)
    assert np.corrcoef(s["x1"], np.log(s["x2"]))[0, 1] == pytest.approx(RHO, abs=0.1)
    # and the density inside the gap is as good as outside (measured -0.009 nats)
    test, truth = draw(8000, seed=6, m=np.random.default_rng(7).uniform(*GAP, 8000))
    assert abs(fitted.log_prob(test).mean() - truth.mean()) < 0.08


def test_sample_is_seeded_and_returns_the_conditions(fitted):
    m = np.linspace(0.0, 1.0, 500)
    a, b = fitted.sample({"m": m}, seed=11), fitted.sample({"m": m}, seed=11)
    c = fitted.sample({"m": m}, seed=12)
    assert list(a) == ["m", "x1", "x2"]
    assert np.array_equal(a["m"], m)
    assert a["x1"].dtype == np.float32 and a["x2"].dtype == np.float32  # dtypes of the fit data
    assert np.array_equal(a["x1"], b["x1"]) and np.array_equal(a["x2"], b["x2"])
    assert not np.array_equal(a["x1"], c["x1"])
    assert (a["x2"] > 0).all()


def test_same_seed_same_fit():
    data, _ = draw(3000, seed=8)
    kw = {
        "flow": {"n_transforms": 1, "hidden_features": 8, "n_blocks": 1},
        "training": {"max_epochs": 2, "batch_size": 256},
        "device": "cpu",
    }
    one = DensityModel(FEATURES, CONDITIONS, seed=4, **kw).fit(data, quiet=True)
    two = DensityModel(FEATURES, CONDITIONS, seed=4, **kw).fit(data, quiet=True)
    other = DensityModel(FEATURES, CONDITIONS, seed=5, **kw).fit(data, quiet=True)
    assert np.array_equal(one.log_prob(data), two.log_prob(data))
    assert not np.allclose(one.log_prob(data), other.log_prob(data))
    assert one.n_train_ == 2400 and one.n_validation_ == 600
    assert one.training_.selection == "loss"


def test_resume_continues_an_interrupted_fit(tmp_path):
    data, _ = draw(3000, seed=8)
    flow = {"n_transforms": 1, "hidden_features": 8, "n_blocks": 1}

    def model(epochs):
        training = {"max_epochs": epochs, "batch_size": 256, "schedule": "constant"}
        return DensityModel(FEATURES, CONDITIONS, flow=flow, training=training, device="cpu")

    straight = model(2).fit(data, quiet=True)
    model(1).fit(data, checkpoint_dir=tmp_path, quiet=True)
    resumed = model(2).fit(data, checkpoint_dir=tmp_path, resume=True, quiet=True)
    assert len(resumed.training_.history) == 2
    assert np.array_equal(resumed.log_prob(data), straight.log_prob(data))


def test_save_load_round_trip(fitted, saved):
    assert {p.name for p in saved.iterdir()} == {
        "hepgen-model.json",
        "flow.safetensors",
        "flow.json",
    }
    _, card = read_model_card(saved)
    assert card["kind"] == "density" and card["format"] == "hepgen-model"
    assert card["format_version"] == 2
    assert card["trend"] is None and card["conditional"] is True
    assert [f["name"] for f in card["features"]] == ["x1", "x2"]
    assert card["conditions"] == [{"name": "m", "role": "condition", "kind": "continuous"}]
    assert card["flow"]["kind"] == "autoregressive"
    assert card["training"]["settings"]["batch_size"] == 512
    assert card["training"]["selection"] == "loss" and card["training"]["history"]
    assert {"torch", "nflows", "hepgen"} <= set(card["provenance"]["versions"])
    assert card["domain"]["m"]["min"] >= 0 and card["domain"]["m"]["max"] <= 1
    loaded = DensityModel.load(saved)
    test, _ = draw(2000, seed=9)
    assert np.array_equal(loaded.log_prob(test), fitted.log_prob(test))
    m = {"m": test["m"]}
    assert np.array_equal(loaded.sample(m, seed=2)["x1"], fitted.sample(m, seed=2)["x1"])
    assert loaded.feature_names == ["x1", "x2"] and loaded.condition_names == ["m"]
    assert loaded.training_.selected_epoch == fitted.training_.selected_epoch


def test_reads_version_1_cards(fitted, saved, tmp_path):
    """A version-1 card (before the trend) is a conditional flow without a trend."""
    old = tmp_path / "v1"
    shutil.copytree(saved, old)
    card = json.loads((old / "hepgen-model.json").read_text())
    del card["trend"], card["conditional"]
    (old / "hepgen-model.json").write_text(json.dumps({**card, "format_version": 1}))
    loaded = DensityModel.load(old)
    test, _ = draw(500, seed=11)
    assert loaded.trend_ is None and loaded.conditional_ is True
    assert np.array_equal(loaded.log_prob(test), fitted.log_prob(test))


# ---- trend + unconditional residual flow -----------------------------------------------------
SLOPE, BETA = 3.0, 0.4  # x1 = 1 + SLOPE m + Gumbel(0, BETA); log x3 = 0.5 m + N(0, 0.3)


def draw_shifted(n, seed, m=None, gap=None):
    """Rows whose features depend on m only through a shift (of x1 and of log x3), with a
    skewed residual; and the true log p(x1, x3 | m)."""
    rng, m = _conditions(n, seed, m, gap)
    n = len(m)
    g = rng.gumbel(0.0, BETA, n)
    x1 = (1.0 + SLOPE * m + g).astype(np.float32)
    x3 = np.exp(0.5 * m + 0.3 * rng.normal(size=n)).astype(np.float32)
    u = (x1.astype(np.float64) - 1.0 - SLOPE * m) / BETA
    y3 = np.log(x3.astype(np.float64))
    logp = (
        -np.log(BETA)
        - u
        - np.exp(-u)
        - 0.5 * ((y3 - 0.5 * m) / 0.3) ** 2
        - np.log(0.3 * np.sqrt(2 * np.pi))
        - y3
    )
    return {"m": m, "x1": x1, "x3": x3}, logp


@pytest.fixture(scope="module")
def trend_model():
    data, _ = draw_shifted(12_000, seed=21, gap=GAP)
    model = DensityModel(
        [{"name": "x1"}, {"name": "x3", "kind": "positive"}],
        CONDITIONS,
        flow=SMALL_FLOW,
        trend=1,
        conditional=False,
        training={"max_epochs": 15, "batch_size": 512, "learning_rate": 3e-3},
        seed=0,
        device="cpu",
    )
    return model.fit(data, quiet=True)


def test_trend_carries_a_shift_through_the_gap(trend_model):
    assert trend_model.trend_.shape == (2, 2)  # intercept and slope, per feature
    m = np.full(20_000, 0.5)
    s = trend_model.sample({"m": m}, seed=4)
    # truth at m = 0.5: E[x1] = 1 + 1.5 + 0.5772 BETA = 2.731, skewness 1.14; E[log x3] 0.25
    assert s["x1"].mean() == pytest.approx(1 + SLOPE * 0.5 + 0.5772 * BETA, abs=0.03)
    x = s["x1"] - s["x1"].mean()
    assert (x**3).mean() / x.std() ** 3 == pytest.approx(1.14, abs=0.3)
    assert np.log(s["x3"]).mean() == pytest.approx(0.25, abs=0.02)
    test, truth = draw_shifted(5000, seed=22, m=np.full(5000, 0.5))
    diff = trend_model.log_prob(test) - truth
    assert abs(diff.mean()) < 0.05 and np.corrcoef(trend_model.log_prob(test), truth)[0, 1] > 0.95


def test_unconditional_flow_ignores_m_beyond_the_trend(trend_model):
    """The residual's distribution is the same at every m: samples at two m differ by the
    trend alone (the same seed gives the same residual draws)."""
    a = trend_model.sample({"m": np.full(1000, 0.2)}, seed=5)
    b = trend_model.sample({"m": np.full(1000, 0.8)}, seed=5)
    slope = float(np.mean(b["x1"] - a["x1"])) / 0.6
    assert np.std(b["x1"] - a["x1"]) < 1e-4
    assert slope == pytest.approx(SLOPE, abs=0.1)


def test_trend_model_round_trip(trend_model, tmp_path):
    path = trend_model.save(tmp_path / "trend")
    _, card = read_model_card(path)
    assert card["conditional"] is False and card["trend"]["degree"] == 1
    assert np.asarray(card["trend"]["coefficients"]).shape == (2, 2)
    loaded = DensityModel.load(path)
    test, _ = draw_shifted(2000, seed=23)
    assert np.array_equal(loaded.log_prob(test), trend_model.log_prob(test))
    assert np.array_equal(
        loaded.sample({"m": test["m"]}, seed=1)["x3"],
        trend_model.sample({"m": test["m"]}, seed=1)["x3"],
    )


def test_damaged_or_foreign_directories(saved, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(saved, bad)
    weights = bad / "flow.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(InputError, match=r"flow\.safetensors"):
        DensityModel.load(bad)
    card = json.loads((saved / "hepgen-model.json").read_text())
    (bad / "hepgen-model.json").write_text(json.dumps({**card, "format_version": 99}))
    with pytest.raises(InputError, match=r"hepgen-model\.json' has format_version 99"):
        DensityModel.load(bad)
    (bad / "hepgen-model.json").write_text(json.dumps(card)[:200])
    with pytest.raises(InputError, match=r"hepgen-model\.json' is not valid JSON"):
        DensityModel.load(bad)
    # a fast simulation's directory (same card format, kind flow)
    (bad / "hepgen-model.json").write_text(
        json.dumps({"format": "hepgen-model", "format_version": 1, "kind": "flow"})
    )
    with pytest.raises(InputError, match="holds a fast simulation"):
        DensityModel.load(bad)
    with pytest.raises(InputError, match="not a hepgen model directory"):
        DensityModel.load(tmp_path)


def test_load_model_and_the_kinds_it_refuses(saved, tmp_path):
    import hepgen
    from hepgen.modeldir import read_card

    model = hepgen.load_model(saved)
    assert isinstance(model, DensityModel) and model.card_["kind"] == "density"
    with pytest.raises(
        InputError,
        match=r"holds a density model \(kind 'density'\); 'hepgen generate' takes a fast "
        r"simulation \(kinds 'flow' or 'gan'.*used by 'hepgen score'",
    ):
        hepgen.load_model(saved, accept=("flow", "gan"), command="generate")
    with pytest.raises(InputError, match=r"holds a density model.*FastSim.load takes"):
        hepgen.FastSim.load(saved)
    card = json.loads((saved / "hepgen-model.json").read_text())
    other = tmp_path / "other"
    other.mkdir()
    (other / "hepgen-model.json").write_text(json.dumps({**card, "kind": "diffusion"}))
    with pytest.raises(InputError, match=r"kind 'diffusion'.*does not know"):
        read_card(other)
    (other / "hepgen-model.json").write_text(json.dumps([1, 2]))
    with pytest.raises(InputError, match=r"not a hepgen model card \(format 'list'"):
        read_card(other)


def test_bad_inputs_are_named(fitted):
    data, _ = draw(200, seed=10)
    with pytest.raises(InputError, match=r"missing column\(s\) 'x2' \(feature\).*available: m, x1"):
        fitted.log_prob({"m": data["m"], "x1": data["x1"]})
    nan = dict(data, x1=data["x1"].copy())
    nan["x1"][[3, 7]] = np.nan
    with pytest.raises(InputError, match=r"'x1': 2 of 200 values are not finite"):
        fitted.log_prob(nan)
    with pytest.raises(InputError, match="missing column"):
        fitted.sample({"mass": data["m"]})
    model = DensityModel(FEATURES, CONDITIONS, training={"batch_size": 512}, device="cpu")
    with pytest.raises(InputError, match=r"160 training events \(200 given, 40 held out"):
        model.fit(data, quiet=True)


def test_settings_are_checked():
    with pytest.raises(ConfigError, match="'quantile_gaussian' is not allowed for the conditions"):
        DensityModel(FEATURES, [{"name": "m", "transforms": [{"type": "quantile_gaussian"}]}]).fit(
            {}, quiet=True
        )
    with pytest.raises(ConfigError, match="role 'condition'"):
        _ = DensityModel([{"name": "x1", "role": "condition"}], CONDITIONS).feature_names
    with pytest.raises(ConfigError, match="at least one of its conditions"):
        _ = DensityModel(FEATURES, []).condition_names
    with pytest.raises(ConfigError, match="unknown flow setting"):
        DensityModel(FEATURES, CONDITIONS, flow={"n_layers": 3}).fit({}, quiet=True)
    with pytest.raises(ConfigError, match="validation_fraction"):
        DensityModel(FEATURES, CONDITIONS).fit(draw(10, 0)[0], validation_fraction=1.0)
    for bad in (-1, 4, 1.5, True):
        with pytest.raises(ConfigError, match="trend must be an integer"):
            DensityModel(FEATURES, CONDITIONS, trend=bad).fit(draw(10, 0)[0])
    with pytest.raises(ConfigError, match="conditional must be true or false"):
        DensityModel(FEATURES, CONDITIONS, conditional="no").fit(draw(10, 0)[0])
    # a positive condition (log + standardize) is fine
    assert DensityModel(FEATURES, [{"name": "m", "kind": "positive"}]).condition_names == ["m"]
