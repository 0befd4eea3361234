"""Preprocessing: exact round trips through float32, Jacobians, weighted fits, JSON, errors."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
from scipy import special, stats

import hepgen
import hepgen.features
from hepgen.errors import ConfigError, InputError
from hepgen.features import FeatureSchema, FeatureSpec
from hepgen.preprocessing import (
    TRANSFORMS,
    Dequantize,
    Difference,
    FeaturePipeline,
    Index,
    Log,
    Logit,
    NotFittedError,
    OneHot,
    Preprocessor,
    QuantileGaussian,
    Ratio,
    Standardize,
    Transform,
    default_transforms,
    weighted_quantile,
)

N = 20_000
RTOL = 1e-5


def wrap(a):
    return np.mod(np.asarray(a, dtype=np.float64) + np.pi, 2 * np.pi) - np.pi


def make_jets(n: int = N, seed: int = 0) -> dict[str, np.ndarray]:
    """Jet-like columns in NanoAOD dtypes: falling pt spectrum, responses, b-tag with bound
    masses, uint8 constituent counts, hadron flavours {0, 4, 5}."""
    rng = np.random.default_rng(seed)
    gen_pt = (15.0 * (1.0 - rng.random(n)) ** (-1 / 3)).astype(np.float32)  # ~ pt^-4
    gen_eta = rng.uniform(-2.5, 2.5, n).astype(np.float32)
    gen_phi = rng.uniform(-np.pi, np.pi, n).astype(np.float32)
    gen_mass = (gen_pt * rng.lognormal(np.log(0.1), 0.3, n)).astype(np.float32)
    flav = rng.choice(np.array([0, 4, 5], dtype=np.uint8), n, p=[0.8, 0.1, 0.1])
    resolution = 0.05 + 1.0 / np.sqrt(gen_pt)
    pt = (gen_pt * np.abs(rng.normal(1.0, resolution))).astype(np.float32)
    eta = (gen_eta + rng.normal(0, 0.02, n)).astype(np.float32)
    phi = wrap(gen_phi + rng.normal(0, 0.02, n)).astype(np.float32)
    mass = (gen_mass * rng.lognormal(0, 0.2, n)).astype(np.float32)
    btag = np.where(flav == 5, rng.beta(5, 1, n), rng.beta(1, 8, n))
    u = rng.random(n)
    btag[u < 0.05] = 0.0  # point masses on both bounds
    btag[u > 0.97] = 1.0
    n_const = np.clip(rng.poisson(5 + gen_pt / 10), 1, 255).astype(np.uint8)
    reco_flav = np.where(rng.random(n) < 0.9, flav, 0).astype(np.int32)
    return {
        "GenJet_pt": gen_pt,
        "GenJet_eta": gen_eta,
        "GenJet_phi": gen_phi,
        "GenJet_mass": gen_mass,
        "GenJet_hadronFlavour": flav,
        "Jet_pt": pt,
        "Jet_eta": eta,
        "Jet_phi": phi,
        "Jet_mass": mass,
        "Jet_btagDeepFlavB": btag.astype(np.float32),
        "Jet_nConstituents": n_const,
        "Jet_hadronFlavour": reco_flav,
    }


def make_schema(quantile_mass: bool = True) -> FeatureSchema:
    mass = (
        [{"type": "log"}, {"type": "quantile_gaussian", "n_quantiles": 500}]
        if quantile_mass
        else None
    )
    return FeatureSchema(
        [
            FeatureSpec("GenJet_pt", "condition", "positive"),
            FeatureSpec("GenJet_eta", "condition"),
            FeatureSpec("GenJet_phi", "condition", periodic=True),
            FeatureSpec("GenJet_mass", "condition", "positive"),
            FeatureSpec("GenJet_hadronFlavour", "condition", "categorical"),
            FeatureSpec("Jet_pt", "target", "positive", relative_to="GenJet_pt"),
            FeatureSpec("Jet_eta", "target", relative_to="GenJet_eta"),
            FeatureSpec("Jet_phi", "target", periodic=True, relative_to="GenJet_phi"),
            FeatureSpec("Jet_mass", "target", "positive", transforms=mass),
            FeatureSpec("Jet_btagDeepFlavB", "target", "bounded", bounds=(0.0, 1.0)),
            FeatureSpec("Jet_nConstituents", "target", "integer"),
            FeatureSpec("Jet_hadronFlavour", "target", "categorical"),
        ]
    )


@pytest.fixture(scope="module")
def jets() -> dict[str, np.ndarray]:
    return make_jets()


@pytest.fixture(scope="module")
def fitted(jets) -> Preprocessor:
    return Preprocessor(make_schema()).fit(jets)


def f32_round_trip(t: Transform, x, ctx=None, rng=None):
    y = t.forward(x, ctx, rng)
    return t.inverse(y.astype(np.float32), ctx)


def assert_close(back, x, atol=0.0):
    np.testing.assert_allclose(
        np.asarray(back, np.float64), np.asarray(x, np.float64), rtol=RTOL, atol=atol
    )


# ----------------------------------------------------------------------------------------------
# single transforms
# ----------------------------------------------------------------------------------------------


def test_registry_holds_every_type():
    assert set(TRANSFORMS) == {
        "log",
        "logit",
        "ratio",
        "difference",
        "standardize",
        "quantile_gaussian",
        "dequantize",
        "onehot",
        "index",
    }


def test_log_round_trip_and_offset(jets):
    x = jets["GenJet_pt"].astype(np.float64)
    assert_close(f32_round_trip(Log().fit(x), x), x)
    m = np.array([-0.5, 0.0, 3.0])
    t = Log(offset=1.0).fit(m)
    np.testing.assert_allclose(t.forward(m), np.log(m + 1.0))
    assert_close(f32_round_trip(t, m), m, atol=1e-7)


def test_log_rejects_non_positive_with_counts():
    x = np.linspace(1, 10, 1000)
    x[:3] = [-1.0, 0.0, -5.0]
    with pytest.raises(InputError, match=r"3 of 1000 values are <= 0; log needs positive values"):
        Log().fit(x)
    pipe = FeaturePipeline(FeatureSpec("Jet_pt", "target", "positive"))
    with pytest.raises(InputError, match=r"^feature 'Jet_pt': 3 of 1000 values are <= 0"):
        pipe.fit(x)


def test_logit_bounds_round_trip_exactly():
    x = np.concatenate([[0.0, 1.0, 0.0, 1.0], np.linspace(0, 1, 1001), [1e-3, 1 - 1e-5]])
    t = Logit(low=0.0, high=1.0).fit(x)
    back = f32_round_trip(t, x)
    on_bound = (x == 0) | (x == 1)
    assert np.array_equal(back[on_bound], x[on_bound])  # exactly, despite the float32 cast
    assert_close(back, x, atol=1.001e-6)  # the eps band: |error| <= eps * (high - low)
    # precise near the upper bound (the distance to high is computed directly)
    assert abs(back[-1] - (1 - 1e-5)) < 1e-10


def test_logit_snaps_after_standardize_and_float32():
    x = np.concatenate([np.zeros(300), np.ones(200), np.random.default_rng(3).beta(2, 3, 500)])
    spec = FeatureSpec("Jet_btag", "target", "bounded", bounds=(0.0, 1.0))
    pipe = FeaturePipeline(spec).fit(x)
    back = pipe.inverse(pipe.forward(x).astype(np.float32))
    assert np.array_equal(back[:500], x[:500])


def test_logit_tolerates_float32_bounds_but_rejects_outside():
    lo, hi = -2.4, 2.4
    x = np.array([np.float32(-2.4), np.float32(2.4), 0.0], dtype=np.float64)
    assert x[1] > hi  # float32(2.4) lies a hair above 2.4
    t = Logit(low=lo, high=hi).fit(x)
    back = f32_round_trip(t, x)
    assert back[0] == lo and back[1] == hi
    bad = np.linspace(0, 1, 1000)
    bad[[1, 2]] = [-0.1, 1.2]
    with pytest.raises(
        InputError,
        match=r"2 of 1000 values lie outside the declared bounds \[0, 1\] \(1 below, 1 above",
    ):
        Logit(low=0.0, high=1.0).fit(bad)


def test_ratio_and_difference_round_trip(jets):
    ctx = {k: jets[k].astype(np.float64) for k in ("GenJet_pt", "GenJet_eta", "GenJet_phi")}
    pt = jets["Jet_pt"].astype(np.float64)
    t = Ratio(to="GenJet_pt").fit(pt, ctx)
    np.testing.assert_allclose(t.forward(pt, ctx), pt / ctx["GenJet_pt"])
    assert_close(f32_round_trip(t, pt, ctx), pt)
    eta = jets["Jet_eta"].astype(np.float64)
    t = Difference(to="GenJet_eta").fit(eta, ctx)
    assert_close(f32_round_trip(t, eta, ctx), eta, atol=1e-6)
    with pytest.raises(InputError, match="needs the condition 'GenJet_pt'"):
        Ratio(to="GenJet_pt").forward(pt, {"GenJet_eta": ctx["GenJet_eta"]})


def test_ratio_rejects_non_positive_denominator():
    ctx = {"GenJet_pt": np.array([10.0, 0.0, -1.0, 5.0])}
    with pytest.raises(InputError, match=r"denominator 'GenJet_pt' has 2 of 4 values <= 0"):
        Ratio(to="GenJet_pt").fit(np.ones(4), ctx)


def test_periodic_difference_wraps(jets):
    gen = np.array([3.0, -3.0, 0.0, np.pi - 1e-9])
    reco = np.array([-3.0, 3.0, 0.1, -np.pi])
    t = Difference(to="g", periodic=True).fit(reco, {"g": gen})
    d = t.forward(reco, {"g": gen})
    np.testing.assert_allclose(d, [2 * np.pi - 6, 6 - 2 * np.pi, 0.1, 1e-9], atol=1e-12)
    assert (d >= -np.pi).all() and (d < np.pi).all()
    back = t.inverse(d, {"g": gen})
    assert (back >= -np.pi).all() and (back < np.pi).all()
    np.testing.assert_allclose(wrap(back - reco), 0, atol=1e-12)
    # real phi columns, through float32
    ctx = {"GenJet_phi": jets["GenJet_phi"].astype(np.float64)}
    phi = jets["Jet_phi"].astype(np.float64)
    t = Difference(to="GenJet_phi", periodic=True).fit(phi, ctx)
    np.testing.assert_allclose(wrap(f32_round_trip(t, phi, ctx) - phi), 0, atol=1e-7)


def test_standardize_weighted_mean():
    x = np.r_[np.zeros(500), np.ones(500)]
    assert Standardize().fit(x).mean == pytest.approx(0.5)
    w = np.r_[np.ones(500), 3 * np.ones(500)]
    t = Standardize().fit(x, weights=w)
    assert t.mean == pytest.approx(0.75)
    assert t.scale == pytest.approx(np.sqrt(0.75 * 0.25))
    # negative sWeights: the weighted mean still follows sum(w x) / sum(w)
    rng = np.random.default_rng(4)
    x = rng.normal(2.0, 1.0, 5000)
    w = rng.normal(1.0, 1.5, 5000)  # about a quarter negative
    assert (w < 0).mean() > 0.2 and w.sum() > 0
    t = Standardize().fit(x, weights=w)
    assert t.mean == pytest.approx(np.sum(w * x) / np.sum(w))
    assert_close(f32_round_trip(t, x), x, atol=1e-6)


def test_standardize_constant_feature_warns():
    with pytest.warns(UserWarning, match="constant"):
        t = Standardize().fit(np.full(10, 3.0))
    assert t.scale == 1.0 and t.mean == 3.0


def test_bad_weights():
    x = np.arange(4.0)
    with pytest.raises(InputError, match="weights sum to -2"):
        Standardize().fit(x, weights=np.array([1.0, -1.0, -1.0, -1.0]))
    with pytest.raises(InputError, match="1 of 4 weights are NaN or inf"):
        Standardize().fit(x, weights=np.array([1.0, np.nan, 1.0, 1.0]))
    with pytest.raises(InputError, match=r"weights have shape \(3,\)"):
        Standardize().fit(x, weights=np.ones(3))


def test_weighted_quantile():
    rng = np.random.default_rng(5)
    x = rng.exponential(size=999)
    q = np.linspace(0, 1, 11)
    np.testing.assert_allclose(weighted_quantile(x, q), np.quantile(x, q, method="hazen"))
    # zero weight == row removed
    w = (rng.random(999) < 0.7).astype(float)
    np.testing.assert_allclose(
        weighted_quantile(x, q, w), np.quantile(x[w > 0], q, method="hazen"), rtol=1e-12
    )
    # weights shift the median the expected way
    y = np.r_[np.zeros(100), np.ones(100)]
    assert weighted_quantile(y, 0.5, np.r_[np.ones(100), 3 * np.ones(100)]) == 1.0
    # negative weights: still monotone in q
    wn = rng.normal(1, 1.5, 999)
    qs = weighted_quantile(x, np.linspace(0, 1, 101), wn)
    assert (np.diff(qs) >= 0).all()


def test_quantile_gaussian_is_standard_normal(jets):
    x = jets["Jet_mass"].astype(np.float64)
    t = QuantileGaussian().fit(x)
    z = t.forward(x)
    assert abs(z.mean()) < 0.01
    assert abs(z.std() - 1) < 0.01
    assert stats.kstest(z, "norm").statistic < 0.005
    assert_close(f32_round_trip(t, x), x)
    assert np.all(np.diff(t.knots_x) > 0) and np.all(np.diff(t.knots_z) > 0)


def test_quantile_gaussian_weighted_with_negative_weights():
    rng = np.random.default_rng(6)
    x = rng.gamma(3.0, size=20000)
    # sWeight-like: a quarter of the rows carry negative weight, the net density stays positive
    w = rng.normal(1.0, 1.5, 20000)
    assert (w < 0).mean() > 0.2
    t = QuantileGaussian(n_quantiles=200).fit(x, weights=w)
    z = t.forward(x)
    mean = np.average(z, weights=w)
    assert abs(mean) < 0.05
    assert abs(np.sqrt(np.average((z - mean) ** 2, weights=w)) - 1) < 0.05
    assert np.all(np.diff(t.knots_z) > 0)
    assert_close(f32_round_trip(t, x), x, atol=1e-6)
    # weights move the quantiles the expected way: up-weighting large x shifts the knots up
    heavy = QuantileGaussian(n_quantiles=200).fit(x, weights=np.where(x > 3, 3.0, 1.0))
    assert np.interp(0.0, heavy.knots_z, heavy.knots_x) > np.interp(0.0, t.knots_z, t.knots_x)


def test_quantile_gaussian_ties_and_extrapolation():
    rng = np.random.default_rng(7)
    x = np.r_[np.zeros(3000), rng.integers(1, 5, 2000).astype(float), rng.exponential(size=5000)]
    t = QuantileGaussian(n_quantiles=300).fit(x)
    assert np.all(np.diff(t.knots_x) > 0) and np.all(np.diff(t.knots_z) > 0)
    z = t.forward(x)
    assert np.unique(z[x == 0]).size == 1  # the point mass maps to one value
    outside = np.array([-5.0, -0.1, x.max() + 1, 2 * x.max()])
    y = t.forward(outside)
    assert np.all(np.diff(y) > 0) and y[0] < t.knots_z[0] and y[-1] > t.knots_z[-1]
    np.testing.assert_allclose(t.inverse(y), outside, rtol=1e-12)
    assert_close(f32_round_trip(t, x), x, atol=1e-6)


def test_quantile_gaussian_constant_warns():
    with pytest.warns(UserWarning, match="constant"):
        t = QuantileGaussian().fit(np.full(50, 2.0))
    np.testing.assert_allclose(t.forward(np.array([2.0, 3.0])), [0.0, 1.0])


def test_dequantize_exact_and_deterministic(jets):
    x = jets["Jet_nConstituents"].astype(np.float64)
    t = Dequantize().fit(x)
    y = t.forward(x)
    assert (
        np.all(np.abs(y - x) < 0.495) and np.all(np.abs(y - x) > 0) and np.unique(y).size > N // 2
    )
    assert np.array_equal(y, t.forward(x))  # default: fixed seed
    y2 = t.forward(x, rng=np.random.default_rng(99))
    assert not np.array_equal(y, y2)
    for yy in (y, y2):
        assert np.array_equal(t.inverse(yy.astype(np.float32)), x)
    # generated values beyond the fitted range are clipped into it
    np.testing.assert_array_equal(t.inverse(np.array([-10.0, 1e4])), [x.min(), x.max()])
    assert np.array_equal(Dequantize(noise=False).fit(x).forward(x), x)


def test_dequantize_errors_and_declared_bounds():
    with pytest.raises(InputError, match="2 of 5 values are not integers"):
        Dequantize().fit(np.array([1.0, 2.5, 3.0, 4.1, 5.0]))
    t = Dequantize(low=1, high=255)
    with pytest.raises(
        InputError, match=r"1 of 3 values lie outside the declared bounds \[1, 255\] \(1 below"
    ):
        t.fit(np.array([0.0, 1.0, 3.0]))
    t.fit(np.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(t.inverse(np.array([-3.0, 300.0])), [1.0, 255.0])


def test_onehot(jets):
    x = jets["GenJet_hadronFlavour"].astype(np.float64)
    t = OneHot().fit(x)
    y = t.forward(x)
    assert y.shape == (N, 3) and np.all(y.sum(axis=1) == 1)
    assert np.array_equal(t.inverse(y.astype(np.float32) + 0.1 * (y - 0.5)), x)
    declared = OneHot(categories=[5, 4, 0]).fit(x)
    np.testing.assert_array_equal(declared.forward(np.array([5.0, 0.0])), [[1, 0, 0], [0, 0, 1]])
    bad = x.copy()
    bad[:4] = [1.0, 1.0, 21.0, 3.0]
    with pytest.raises(
        InputError,
        match=r"4 of 20000 values are not among the 3 known categories \[0, 4, 5\] \(unknown: 1, 3, 21\)",
    ):
        t.forward(bad)
    with pytest.raises(InputError, match="not among the 2 known categories"):
        OneHot(categories=[0, 5]).fit(x)


def test_index_round_trip(jets):
    x = jets["Jet_hadronFlavour"].astype(np.float64)
    t = Index().fit(x)
    np.testing.assert_array_equal(np.unique(t.forward(x)), [0, 1, 2])
    assert np.array_equal(t.inverse(t.forward(x).astype(np.float32)), x)
    np.testing.assert_array_equal(t.inverse(np.array([-3.0, 0.6, 1.4, 9.0])), [0, 4, 4, 5])


def test_transform_dict_round_trip(jets):
    x = jets["Jet_mass"].astype(np.float64)
    ctx = {"GenJet_mass": jets["GenJet_mass"].astype(np.float64)}
    cases = [
        (Log(offset=0.5), x),
        (Logit(low=0.0, high=200.0, eps=1e-5), np.clip(x, 0, 200)),
        (Ratio(to="GenJet_mass"), x),
        (Difference(to="GenJet_mass", periodic=False), x),
        (Standardize(), x),
        (QuantileGaussian(n_quantiles=100), x),
        (Dequantize(low=0, high=255), jets["Jet_nConstituents"].astype(float)),
        (OneHot(), jets["GenJet_hadronFlavour"].astype(float)),
        (Index(categories=[5, 4, 0]), jets["GenJet_hadronFlavour"].astype(float)),
    ]
    for t, xx in cases:
        t.fit(xx, ctx)
        d = json.loads(json.dumps(t.to_dict(), allow_nan=False))
        again = Transform.from_dict(d)
        assert type(again) is type(t) and again.to_dict() == d
        assert np.array_equal(again.forward(xx, ctx), t.forward(xx, ctx))
        y = t.forward(xx, ctx)
        assert np.array_equal(again.inverse(y, ctx), t.inverse(y, ctx))


def test_transform_dict_errors():
    with pytest.raises(
        ConfigError, match=r"unknown transform type 'stdandardize'.*did you mean 'standardize'"
    ):
        Transform.from_dict({"type": "stdandardize"})
    with pytest.raises(ConfigError, match="incomplete fitted state"):
        Transform.from_dict({"type": "standardize", "mean": 1.0})
    with pytest.raises(ConfigError, match="key 'scale' must be > 0"):
        Transform.from_dict({"type": "standardize", "mean": 1.0, "scale": 0.0})
    with pytest.raises(ConfigError, match="strictly increasing"):
        Transform.from_dict(
            {"type": "quantile_gaussian", "knots_x": [0, 0, 1], "knots_z": [0, 1, 2]}
        )


def test_not_fitted():
    with pytest.raises(NotFittedError):
        Standardize().forward(np.ones(3))
    with pytest.raises(NotFittedError):
        Preprocessor(make_schema()).transform_conditions({})
    assert Log().is_fitted and not Standardize().is_fitted


# ----------------------------------------------------------------------------------------------
# log|det J| against finite differences
# ----------------------------------------------------------------------------------------------


def finite_difference_log_slope(f, x, h):
    with np.errstate(divide="ignore"):  # flat (clipped) regions give log(0); callers mask them
        return np.log(np.abs((f(x + h) - f(x - h)) / (2 * h)))


@pytest.mark.parametrize(
    "make",
    [
        lambda: Log(),
        lambda: Log(offset=2.0),
        lambda: Logit(low=-1.0, high=3.0),
        lambda: Ratio(to="g"),
        lambda: Difference(to="g", periodic=True),
        lambda: Standardize(),
    ],
)
def test_log_det_jacobian_finite_differences(make):
    rng = np.random.default_rng(8)
    x = rng.uniform(0.1, 2.9, 2000)
    ctx = {"g": rng.uniform(1.0, 2.0, 2000)}
    t = make().fit(x, ctx)
    h = 1e-6
    fd = finite_difference_log_slope(lambda v: t.forward(v, ctx), x, h)
    np.testing.assert_allclose(t.log_abs_det_jacobian(x, ctx), fd, atol=1e-6)


def test_quantile_log_det_finite_differences():
    x = np.random.default_rng(9).gamma(2.0, size=5000)
    t = QuantileGaussian(n_quantiles=200).fit(x)
    k = t.knots_x
    mid = np.r_[0.5 * (k[1:] + k[:-1]), k[0] - 1.0, k[-1] + 3.0]  # inside segments, and beyond
    h = 1e-4 * np.diff(k).min()
    fd = finite_difference_log_slope(t.forward, mid, h)
    np.testing.assert_allclose(t.log_abs_det_jacobian(mid), fd, atol=1e-5)


def test_preprocessor_log_det_matches_finite_differences(jets):
    pre = Preprocessor(make_schema(quantile_mass=False)).fit(jets)
    ladj = pre.target_log_abs_det_jacobian(jets)
    cols = {k: v.astype(np.float64) for k, v in jets.items()}
    interior = (cols["Jet_btagDeepFlavB"] > 1e-3) & (cols["Jet_btagDeepFlavB"] < 1 - 1e-3)
    expected = np.zeros(N)
    for spec in pre.schema.targets:
        pipe = pre.pipelines[spec.name]
        if spec.kind in ("integer", "categorical"):
            # dequantize and index have log|J| = 0: only the final standardize contributes
            expected += -np.log(pipe.transforms[-1].scale)
            continue
        x = cols[spec.name]
        h = 1e-7 * np.maximum(np.abs(x), 1e-3)
        expected += finite_difference_log_slope(lambda v, p=pipe: p.forward(v, cols), x, h)
    np.testing.assert_allclose(ladj[interior], expected[interior], atol=2e-5)
    # = the sum of the pipelines' Jacobians
    total = sum(
        pre.pipelines[s.name].log_abs_det_jacobian(cols[s.name], cols) for s in pre.schema.targets
    )
    np.testing.assert_allclose(ladj, total, rtol=1e-12)


# ----------------------------------------------------------------------------------------------
# whole preprocessor
# ----------------------------------------------------------------------------------------------


def test_default_pipelines_by_kind():
    def types(spec):
        return [t["type"] for t in default_transforms(spec)]

    assert types(FeatureSpec("a", "target")) == ["standardize"]
    assert types(FeatureSpec("a", "target", relative_to="g")) == ["difference", "standardize"]
    assert default_transforms(FeatureSpec("a", "target", periodic=True, relative_to="g"))[0] == {
        "type": "difference",
        "to": "g",
        "periodic": True,
    }
    assert types(FeatureSpec("a", "target", "positive", relative_to="g")) == [
        "ratio",
        "log",
        "standardize",
    ]
    assert types(FeatureSpec("a", "target", "bounded", bounds=(0, 1))) == ["logit", "standardize"]
    assert default_transforms(FeatureSpec("a", "target", "integer", bounds=(1, 9)))[0] == {
        "type": "dequantize",
        "noise": True,
        "low": 1.0,
        "high": 9.0,
    }
    assert default_transforms(FeatureSpec("a", "condition", "integer"))[0]["noise"] is False
    assert types(FeatureSpec("a", "condition", "categorical")) == ["onehot"]
    assert types(FeatureSpec("a", "target", "categorical")) == [
        "index",
        "dequantize",
        "standardize",
    ]
    explicit = FeatureSpec("a", "target", "positive", relative_to="g", transforms=[{"type": "log"}])
    assert types(explicit) == ["ratio", "log"]
    explicit = FeatureSpec("a", "target", "bounded", bounds=(0, 2), transforms=[{"type": "logit"}])
    assert default_transforms(explicit)[0]["high"] == 2.0


def test_preprocessor_shapes_columns_and_dtypes(fitted, jets):
    assert fitted.is_fitted
    assert fitted.condition_columns == [
        "GenJet_pt",
        "GenJet_eta",
        "GenJet_phi",
        "GenJet_mass",
        "GenJet_hadronFlavour==0",
        "GenJet_hadronFlavour==4",
        "GenJet_hadronFlavour==5",
    ]
    assert fitted.target_columns == [s.name for s in fitted.schema.targets]
    assert (fitted.condition_dim, fitted.target_dim) == (7, 7)
    c = fitted.transform_conditions(jets)
    z = fitted.transform_targets(jets)
    assert c.dtype == z.dtype == np.float32 and c.flags.c_contiguous and z.flags.c_contiguous
    assert c.shape == (N, 7) and z.shape == (N, 7)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=0.02)
    np.testing.assert_allclose(z.std(axis=0), 1, atol=0.02)
    assert fitted.dtypes["Jet_nConstituents"] == "uint8"
    assert fitted.dtypes["Jet_hadronFlavour"] == "int32"
    assert fitted.domain["GenJet_hadronFlavour"] == {"categories": [0.0, 4.0, 5.0]}
    assert fitted.domain["GenJet_pt"]["min"] == float(jets["GenJet_pt"].min())


def test_preprocessor_target_round_trip(fitted, jets):
    z = fitted.transform_targets(jets, rng=np.random.default_rng(11))
    back = fitted.inverse_targets(z, jets)
    assert set(back) == {s.name for s in fitted.schema.targets}
    assert back["Jet_nConstituents"].dtype == np.uint8
    assert back["Jet_hadronFlavour"].dtype == np.int32
    assert np.array_equal(back["Jet_nConstituents"], jets["Jet_nConstituents"])
    assert np.array_equal(back["Jet_hadronFlavour"], jets["Jet_hadronFlavour"])
    btag = jets["Jet_btagDeepFlavB"]
    on_bound = (btag == 0) | (btag == 1)
    assert on_bound.sum() > 1000
    assert np.array_equal(back["Jet_btagDeepFlavB"][on_bound], btag[on_bound])
    assert_close(back["Jet_btagDeepFlavB"], btag, atol=1.001e-6)
    assert_close(back["Jet_pt"], jets["Jet_pt"])
    assert_close(back["Jet_mass"], jets["Jet_mass"])
    assert_close(back["Jet_eta"], jets["Jet_eta"], atol=1e-7)
    np.testing.assert_allclose(wrap(back["Jet_phi"] - jets["Jet_phi"]), 0, atol=1e-7)
    assert np.all((back["Jet_phi"] >= -np.pi) & (back["Jet_phi"] < np.pi))


def test_preprocessor_condition_round_trip(fitted, jets):
    back = fitted.inverse_conditions(fitted.transform_conditions(jets))
    assert back["GenJet_hadronFlavour"].dtype == np.uint8
    assert np.array_equal(back["GenJet_hadronFlavour"], jets["GenJet_hadronFlavour"])
    for name in ("GenJet_pt", "GenJet_mass"):
        assert_close(back[name], jets[name])
    assert_close(back["GenJet_eta"], jets["GenJet_eta"], atol=1e-6)
    np.testing.assert_allclose(wrap(back["GenJet_phi"] - jets["GenJet_phi"]), 0, atol=1e-6)


def test_integer_condition_is_not_smeared():
    rng = np.random.default_rng(12)
    data = {"GenJet_n": rng.poisson(8, 500).astype(np.int16), "Jet_x": rng.normal(size=500)}
    schema = FeatureSchema(
        [FeatureSpec("GenJet_n", "condition", "integer"), FeatureSpec("Jet_x", "target")]
    )
    pre = Preprocessor(schema).fit(data)
    c = pre.transform_conditions(data)
    assert np.unique(c[:, 0]).size == np.unique(data["GenJet_n"]).size
    back = pre.inverse_conditions(c)["GenJet_n"]
    assert back.dtype == np.int16 and np.array_equal(back, data["GenJet_n"])


def test_generated_values_stay_valid(fitted, jets):
    """Arbitrary model outputs map to valid physics values (bounds, categories, angles)."""
    z = np.random.default_rng(13).normal(0, 3, size=(N, fitted.target_dim)).astype(np.float32)
    out = fitted.inverse_targets(z, jets)
    assert np.all((out["Jet_btagDeepFlavB"] >= 0) & (out["Jet_btagDeepFlavB"] <= 1))
    assert np.all(out["Jet_pt"] > 0)
    assert set(np.unique(out["Jet_hadronFlavour"])) <= {0, 4, 5}
    n = out["Jet_nConstituents"]
    assert n.min() >= jets["Jet_nConstituents"].min() and n.max() <= jets["Jet_nConstituents"].max()
    assert np.all((out["Jet_phi"] >= -np.pi) & (out["Jet_phi"] < np.pi))


def test_dequantisation_noise_is_independent_across_features(fitted, jets):
    z = fitted.transform_targets(jets)
    cols = fitted.target_columns
    pipes = fitted.pipelines
    noise = []
    for name in ("Jet_nConstituents", "Jet_hadronFlavour"):
        std = pipes[name].transforms[-1]
        y = z[:, cols.index(name)].astype(np.float64) * std.scale + std.mean
        noise.append(y - np.rint(y))
    assert abs(np.corrcoef(noise)[0, 1]) < 0.05
    assert np.array_equal(z, fitted.transform_targets(jets))  # rng=None is deterministic


def test_weighted_fit(jets):
    schema = make_schema()
    w = np.where(jets["GenJet_hadronFlavour"] == 5, 5.0, 1.0)
    w[::7] *= -0.3  # some negative sWeights
    pre = Preprocessor(schema).fit(jets, weights=w)
    std = pre.pipelines["Jet_btagDeepFlavB"].transforms[-1]
    unweighted = Preprocessor(schema).fit(jets).pipelines["Jet_btagDeepFlavB"].transforms[-1]
    assert std.mean > unweighted.mean + 0.5  # b jets (high b-tag) weigh more
    back = pre.inverse_targets(pre.transform_targets(jets), jets)
    assert_close(back["Jet_pt"], jets["Jet_pt"])
    assert pre.to_dict()["weighted"] is True


def test_save_load_identical(fitted, jets, tmp_path):
    path = fitted.save(tmp_path / "preprocessing.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preprocessing.json"]  # no temp file left

    def no_nan(token):
        raise AssertionError(f"non-standard JSON constant {token}")

    d = json.loads(path.read_text(), parse_constant=no_nan)
    assert d["format"] == "hepgen.preprocessor" and d["fitted"] is True
    loaded = Preprocessor.load(path)
    assert loaded.schema == fitted.schema
    assert loaded.condition_columns == fitted.condition_columns
    assert loaded.domain == fitted.domain and loaded.dtypes == fitted.dtypes
    assert np.array_equal(loaded.transform_conditions(jets), fitted.transform_conditions(jets))
    z = fitted.transform_targets(jets, rng=np.random.default_rng(1))
    assert np.array_equal(loaded.transform_targets(jets, rng=np.random.default_rng(1)), z)
    a, b = loaded.inverse_targets(z, jets), fitted.inverse_targets(z, jets)
    assert all(np.array_equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
    assert np.array_equal(
        loaded.target_log_abs_det_jacobian(jets), fitted.target_log_abs_det_jacobian(jets)
    )
    assert loaded.to_dict() == fitted.to_dict()
    # an unfitted preprocessor serialises too
    unfitted = Preprocessor.from_dict(Preprocessor(make_schema()).to_dict())
    assert not unfitted.is_fitted


def test_load_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        Preprocessor.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        Preprocessor.load(bad)
    bad.write_text('{"format": "something else"}')
    with pytest.raises(ConfigError, match="not a hepgen preprocessor"):
        Preprocessor.load(bad)
    bad.write_text('{"format": "hepgen.preprocessor", "format_version": 99}')
    with pytest.raises(ConfigError, match="format_version 99 is not supported"):
        Preprocessor.load(bad)


def test_input_errors(fitted, jets):
    data = dict(jets)
    del data["Jet_eta"]
    with pytest.raises(InputError, match=r"missing column: 'Jet_eta' \(target\)"):
        Preprocessor(make_schema()).fit(data)
    data["Jet_eta_"] = jets["Jet_eta"]
    with pytest.raises(InputError, match=r"'Jet_eta' \(target\) \(did you mean 'Jet_eta_'"):
        fitted.transform_targets(data)
    only_targets = {s.name: jets[s.name] for s in fitted.schema.targets}
    with pytest.raises(
        InputError, match="'GenJet_pt' \\(condition that target 'Jet_pt' is relative to\\)"
    ):
        fitted.transform_targets(only_targets)

    data = {k: v.copy() for k, v in jets.items()}
    data["Jet_pt"][[1, 2, 3]] = np.nan
    data["Jet_pt"][4] = np.inf
    data["GenJet_eta"][:2] = np.nan
    with pytest.raises(
        InputError,
        match=r"feature 'GenJet_eta': 2 of 20000 values are not finite \(2 NaN, 0 inf\); feature 'Jet_pt': 4 of 20000 values are not finite \(3 NaN, 1 inf\)",
    ):
        Preprocessor(make_schema()).fit(data)

    data = dict(jets)
    data["Jet_mass"] = jets["Jet_mass"][:-1]
    with pytest.raises(
        InputError, match="column 'Jet_mass' has 19999 rows, but column 'GenJet_pt' has 20000"
    ):
        Preprocessor(make_schema()).fit(data)

    data = dict(jets)
    data["Jet_pt"] = jets["Jet_pt"].copy()
    data["Jet_pt"][:3] = -1.0
    with pytest.raises(
        InputError,
        match=r"feature 'Jet_pt' \(after ratio\): 3 of 20000 values are <= 0; log needs positive values",
    ):
        fitted.transform_targets(data)

    data = dict(jets)
    data["GenJet_hadronFlavour"] = jets["GenJet_hadronFlavour"].copy()
    data["GenJet_hadronFlavour"][:2] = 21
    with pytest.raises(
        InputError, match=r"feature 'GenJet_hadronFlavour': 2 of 20000 values are not among"
    ):
        fitted.transform_conditions(data)

    data = dict(jets)
    data["Jet_btagDeepFlavB"] = jets["Jet_btagDeepFlavB"].copy()
    data["Jet_btagDeepFlavB"][:5] = -1.0  # NanoAOD "not computed" sentinel
    with pytest.raises(
        InputError,
        match=r"feature 'Jet_btagDeepFlavB': 5 of 20000 values lie outside the declared bounds \[0, 1\]",
    ):
        fitted.transform_targets(data)

    with pytest.raises(InputError, match=r"shape \(n, 7\)"):
        fitted.inverse_targets(np.zeros((10, 6), np.float32), jets)
    z = np.zeros((N, 7), np.float32)
    z[:3, 1] = np.nan
    with pytest.raises(InputError, match=r"'Jet_eta': 3 of 20000"):
        fitted.inverse_targets(z, jets)
    with pytest.raises(
        InputError, match="column 'GenJet_pt' has 20000 rows, but the model matrix has 10"
    ):
        fitted.inverse_targets(np.zeros((10, 7), np.float32), jets)
    with pytest.raises(InputError, match="expected numbers"):
        fitted.transform_conditions({**jets, "GenJet_pt": np.array(["a"] * N)})


def test_out_of_domain(fitted, jets):
    assert set(fitted.out_of_domain(jets).values()) == {0}
    data = dict(jets)
    data["GenJet_pt"] = jets["GenJet_pt"] * 10
    assert fitted.out_of_domain(data)["GenJet_pt"] > 0


def _hepgen_imports(path: Path) -> set[str]:
    """The hepgen modules a source file imports (anywhere in it, lazy imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("hepgen"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("hepgen")}
    return found


def test_layering_transforms_below_features_below_preprocessing():
    # transforms -> features -> preprocessing, never the reverse (no import cycle)
    root = Path(hepgen.__file__).parent
    for path in sorted((root / "transforms").glob("*.py")):
        upward = {
            m for m in _hepgen_imports(path) if m.startswith(("hepgen.features", "hepgen.prep"))
        }
        assert not upward, (path.name, upward)
    features = _hepgen_imports(root / "features.py")
    assert not {m for m in features if m.startswith("hepgen.preprocessing")}, features
    assert _hepgen_imports(root / "stats.py") == {"hepgen.errors"}


def test_public_names_are_the_transforms_and_stats_objects():
    import hepgen.preprocessing as preprocessing
    import hepgen.stats
    import hepgen.transforms

    for name in hepgen.transforms.__all__:
        assert getattr(preprocessing, name) is getattr(hepgen.transforms, name), name
    assert preprocessing.weighted_quantile is hepgen.stats.weighted_quantile
    assert preprocessing.default_transforms is hepgen.features.default_transforms
    assert sorted(preprocessing.__all__) == sorted(
        [
            *hepgen.transforms.__all__,
            *("FeaturePipeline", "Preprocessor", "SentinelFlag"),
            *("default_transforms", "weighted_quantile"),
        ]
    )


def test_pipeline_dict_round_trip(fitted):
    pipe = fitted.pipelines["Jet_mass"]
    again = FeaturePipeline.from_dict(json.loads(json.dumps(pipe.to_dict())))
    assert again.spec == pipe.spec and again.to_dict() == pipe.to_dict()
    assert repr(again) == "FeaturePipeline('Jet_mass', ['log', 'quantile_gaussian'])"


def test_other_column_containers_and_empty_data(jets):
    schema = FeatureSchema(
        [FeatureSpec("GenJet_pt", "condition", "positive"), FeatureSpec("Jet_eta", "target")]
    )
    rec = np.zeros(100, dtype=[("GenJet_pt", "f4"), ("Jet_eta", "f8")])
    rec["GenJet_pt"] = jets["GenJet_pt"][:100]
    rec["Jet_eta"] = jets["Jet_eta"][:100]
    pre = Preprocessor(schema).fit(rec)  # a structured array works like a mapping
    assert pre.transform_conditions(rec).shape == (100, 1)
    with pytest.raises(InputError, match="no rows to fit"):
        Preprocessor(schema).fit({"GenJet_pt": np.zeros(0), "Jet_eta": np.zeros(0)})
    with pytest.raises(TypeError, match="needs a FeatureSchema"):
        Preprocessor([FeatureSpec("Jet_eta", "target")])  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# sentinel values (point masses)
# ----------------------------------------------------------------------------------------------

BTAG_SENTINELS = (-1.0, -3000.0)


def make_sentinel_jets(n: int = N, seed: int = 21) -> dict[str, np.ndarray]:
    """NanoAOD-like float32 columns with stored defaults: a b-tag in [0, 1] with 20 % at -1
    ("not computed"), 5 % at -3000 and exact 0 / 1 on the bounds; a gen mass with -999 for
    8 % of the jets (a condition); a raw pt that is -1 for 10 % of the jets (a target relative
    to GenJet_pt, so the condition rows must follow the sentinel split)."""
    rng = np.random.default_rng(seed)
    gen_pt = (15.0 * (1.0 - rng.random(n)) ** (-1 / 3)).astype(np.float32)
    u = rng.random(n)
    btag = rng.beta(1, 8, n)
    btag[u < 0.20] = -1.0
    btag[(u >= 0.20) & (u < 0.25)] = -3000.0
    btag[(u >= 0.25) & (u < 0.28)] = 0.0
    btag[(u >= 0.28) & (u < 0.30)] = 1.0
    gen_mass = gen_pt * rng.lognormal(np.log(0.1), 0.3, n)
    gen_mass[rng.random(n) < 0.08] = -999.0
    raw_pt = gen_pt * np.abs(rng.normal(1.0, 0.1, n))
    raw_pt[rng.random(n) < 0.10] = -1.0
    return {
        "GenJet_pt": gen_pt,
        "GenJet_mass": gen_mass.astype(np.float32),
        "Jet_rawPt": raw_pt.astype(np.float32),
        "Jet_btagDeepFlavB": btag.astype(np.float32),
    }


def sentinel_schema() -> FeatureSchema:
    return FeatureSchema(
        [
            FeatureSpec("GenJet_pt", "condition", "positive"),
            FeatureSpec("GenJet_mass", "condition", "positive", sentinels=(-999,)),
            FeatureSpec(
                "Jet_rawPt", "target", "positive", relative_to="GenJet_pt", sentinels=(-1,)
            ),
            FeatureSpec(
                "Jet_btagDeepFlavB", "target", "bounded", bounds=(0, 1), sentinels=(-1, -3000)
            ),
        ]
    )


@pytest.fixture(scope="module")
def sentinel_jets() -> dict[str, np.ndarray]:
    return make_sentinel_jets()


@pytest.fixture(scope="module")
def sentinel_fitted(sentinel_jets) -> Preprocessor:
    return Preprocessor(sentinel_schema()).fit(sentinel_jets)


def bits(a) -> np.ndarray:
    return np.asarray(a, dtype=np.float32).view(np.uint32)


def test_sentinel_columns_and_standardised_matrix(sentinel_fitted, sentinel_jets):
    pre = sentinel_fitted
    assert pre.condition_columns == ["GenJet_pt", "GenJet_mass:sentinel", "GenJet_mass"]
    assert pre.target_columns == [
        "Jet_rawPt:sentinel",
        "Jet_rawPt",
        "Jet_btagDeepFlavB:sentinel",
        "Jet_btagDeepFlavB",
    ]
    assert (pre.condition_dim, pre.target_dim) == (3, 4)
    z = pre.transform_targets(sentinel_jets)
    assert z.shape == (N, 4) and z.dtype == np.float32 and z.flags.c_contiguous
    # flags (dequantised) and continuous columns (ordinary rows + N(0, 1) filler) all ~ N(0, 1)
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=0.02)
    np.testing.assert_allclose(z.std(axis=0), 1, atol=0.02)
    assert np.array_equal(z, pre.transform_targets(sentinel_jets))  # rng=None: deterministic
    # the continuous chain never saw a sentinel: logit would reject -1, standardize be ruined
    btag = sentinel_jets["Jet_btagDeepFlavB"].astype(np.float64)
    ordinary = btag >= 0
    std = pre.pipelines["Jet_btagDeepFlavB"].transforms[-1]
    logit_u = special.logit(np.clip(btag[ordinary], 1e-6, 1 - 1e-6))
    assert std.mean == pytest.approx(logit_u.mean(), rel=1e-9)
    assert std.scale == pytest.approx(logit_u.std(), rel=1e-9)


def test_sentinel_target_round_trip_is_exact(sentinel_fitted, sentinel_jets):
    z = sentinel_fitted.transform_targets(sentinel_jets, rng=np.random.default_rng(5))
    back = sentinel_fitted.inverse_targets(z, sentinel_jets)
    btag = sentinel_jets["Jet_btagDeepFlavB"]
    out = back["Jet_btagDeepFlavB"]
    assert out.dtype == np.float64
    for value, fraction in [(-1.0, 0.20), (-3000.0, 0.05), (0.0, 0.03), (1.0, 0.02)]:
        m = btag == value
        assert abs(m.mean() - fraction) < 0.01
        # bit-exact after casting back to the stored float32
        assert np.array_equal(bits(out[m]), bits(btag[m])), value
        assert np.count_nonzero(out == value) == m.sum()
    assert_close(out, btag, atol=1.001e-6)  # the logit's eps band, as without sentinels
    raw = sentinel_jets["Jet_rawPt"]
    s = raw == -1
    assert np.array_equal(bits(back["Jet_rawPt"][s]), bits(raw[s]))
    assert_close(back["Jet_rawPt"], raw)


def test_sentinel_flag_fractions_preserved(sentinel_fitted, sentinel_jets):
    pre = sentinel_fitted
    btag = sentinel_jets["Jet_btagDeepFlavB"]
    flag = pre.pipelines["Jet_btagDeepFlavB"].flag
    expected = [np.mean(btag >= 0), np.mean(btag == -1), np.mean(btag == -3000)]
    np.testing.assert_allclose(flag.fractions, expected, rtol=1e-12)
    assert flag.values.tolist() == [-1.0, -3000.0] and flag.continuous
    z = pre.transform_targets(sentinel_jets, rng=np.random.default_rng(6))
    j = pre.target_columns.index("Jet_btagDeepFlavB:sentinel")
    # the flag column is dequantised: each category is an interval of width < 1, no point mass
    std = flag.transforms[-1]
    raw_flag = z[:, j].astype(np.float64) * std.scale + std.mean
    assert np.unique(z[:, j]).size > N // 2
    categories = np.rint(raw_flag).astype(int)
    assert np.abs(raw_flag - categories).max() < 0.5
    np.testing.assert_allclose(np.bincount(categories, minlength=3) / N, expected, rtol=1e-12)
    back = pre.inverse_targets(z, sentinel_jets)["Jet_btagDeepFlavB"]
    got = [np.mean(back >= 0), np.mean(back == -1), np.mean(back == -3000)]
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    # arbitrary model output: every row is a valid value (a sentinel or inside the bounds)
    gen = np.random.default_rng(7).normal(0, 2, size=z.shape).astype(np.float32)
    out = pre.inverse_targets(gen, sentinel_jets)["Jet_btagDeepFlavB"]
    assert np.all(np.isin(out, [-1.0, -3000.0]) | ((out >= 0) & (out <= 1)))


def test_sentinel_condition(sentinel_fitted, sentinel_jets):
    pre = sentinel_fitted
    mass = sentinel_jets["GenJet_mass"]
    c = pre.transform_conditions(sentinel_jets)
    flag_col, cont_col = c[:, 1], c[:, 2]
    s = mass == -999
    # no noise on a condition: one value per category; the filler is 0
    assert np.unique(flag_col[s]).size == 1 and np.unique(flag_col[~s]).size == 1
    assert flag_col[s][0] > flag_col[~s][0]
    assert np.all(cont_col[s] == 0)
    np.testing.assert_allclose(cont_col[~s].mean(), 0, atol=1e-5)
    back = pre.inverse_conditions(c)
    assert np.array_equal(bits(back["GenJet_mass"][s]), bits(mass[s]))
    assert_close(back["GenJet_mass"], mass)
    dom = pre.domain["GenJet_mass"]
    assert dom == {
        "min": float(mass[~s].min()),
        "max": float(mass[~s].max()),
        "sentinels": [-999.0],
    }
    assert pre.out_of_domain(sentinel_jets)["GenJet_mass"] == 0
    data = dict(sentinel_jets)
    data["GenJet_mass"] = mass.copy()
    data["GenJet_mass"][:3] = [-5.0, 1e6, -998.0]  # below, above, not quite the sentinel
    assert pre.out_of_domain(data)["GenJet_mass"] == 3


def test_sentinel_log_det_jacobian(sentinel_fitted, sentinel_jets):
    pre = sentinel_fitted
    cols = {k: v.astype(np.float64) for k, v in sentinel_jets.items()}
    pipe = pre.pipelines["Jet_btagDeepFlavB"]
    x = cols["Jet_btagDeepFlavB"]
    ladj = pipe.log_abs_det_jacobian(x)
    flag_term = -np.log(pipe.flag.transforms[-1].scale)
    sentinel = x < 0
    # a point mass: the flag's term only (per unit of the category, ~ its probability)
    np.testing.assert_allclose(ladj[sentinel], flag_term, rtol=1e-12)
    interior = (x > 1e-3) & (x < 1 - 1e-3)
    h = 1e-7 * np.maximum(np.abs(x[interior]), 1e-3)
    fd = finite_difference_log_slope(lambda v: pipe.forward(v)[:, 1], x[interior], h)
    np.testing.assert_allclose(ladj[interior], flag_term + fd, atol=2e-5)
    total = sum(
        pre.pipelines[s.name].log_abs_det_jacobian(cols[s.name], cols) for s in pre.schema.targets
    )
    np.testing.assert_allclose(pre.target_log_abs_det_jacobian(sentinel_jets), total, rtol=1e-12)


def test_sentinel_weighted_fit(sentinel_jets):
    w = np.where(sentinel_jets["GenJet_pt"] > 30, 4.0, 1.0)
    w[::9] *= -0.2  # some negative sWeights
    pre = Preprocessor(sentinel_schema()).fit(sentinel_jets, weights=w)
    pipe = pre.pipelines["Jet_btagDeepFlavB"]
    btag = sentinel_jets["Jet_btagDeepFlavB"].astype(np.float64)
    ordinary = btag >= 0
    logit_u = special.logit(np.clip(btag[ordinary], 1e-6, 1 - 1e-6))
    assert pipe.transforms[-1].mean == pytest.approx(np.average(logit_u, weights=w[ordinary]))
    expected = [w[ordinary].sum(), w[btag == -1].sum(), w[btag == -3000].sum()]
    np.testing.assert_allclose(pipe.flag.fractions, np.array(expected) / w.sum(), rtol=1e-12)
    back = pre.inverse_targets(pre.transform_targets(sentinel_jets), sentinel_jets)
    assert np.array_equal(bits(back["Jet_btagDeepFlavB"][~ordinary]), bits(btag[~ordinary]))


def only_sentinel_round_trip(x: np.ndarray) -> None:
    """Fit a b-tag target on a column holding nothing but -3000 and check it round-trips."""
    n = len(x)
    schema = FeatureSchema(
        [
            FeatureSpec(
                "Jet_btagDeepFlavB", "target", "bounded", bounds=(0, 1), sentinels=BTAG_SENTINELS
            )
        ]
    )
    with pytest.warns(UserWarning, match=r"all \d+ values of the fit data are sentinels"):
        pre = Preprocessor(schema).fit({"Jet_btagDeepFlavB": x})
    pipe = pre.pipelines["Jet_btagDeepFlavB"]
    assert pipe.is_fitted and not pipe.flag.continuous
    assert not any(t.is_fitted for t in pipe.transforms if t.state)
    z = pre.transform_targets({"Jet_btagDeepFlavB": x}, rng=np.random.default_rng(8))
    assert z.shape == (n, 2) and np.isfinite(z).all()
    back = pre.inverse_targets(z, {})["Jet_btagDeepFlavB"]
    assert np.array_equal(bits(back), bits(x))
    # whatever the model generates, every row is the sentinel (the flag is constant)
    gen = np.random.default_rng(9).normal(0, 3, size=(n, 2)).astype(np.float32)
    assert np.all(pre.inverse_targets(gen, {})["Jet_btagDeepFlavB"] == -3000.0)
    # an ordinary value cannot be transformed: there is no continuous part
    with pytest.raises(InputError, match=r"1 of 2 values are not sentinels.*only sentinels"):
        pre.transform_targets({"Jet_btagDeepFlavB": np.array([-3000.0, 0.5], np.float32)})
    again = Preprocessor.from_dict(json.loads(json.dumps(pre.to_dict())))
    assert np.array_equal(
        again.transform_targets({"Jet_btagDeepFlavB": x}),
        pre.transform_targets({"Jet_btagDeepFlavB": x}),
    )
    assert np.array_equal(
        bits(again.inverse_targets(gen, {})["Jet_btagDeepFlavB"]), bits(np.full(n, -3000.0))
    )


def test_only_sentinels_synthetic():
    only_sentinel_round_trip(np.full(500, -3000.0, dtype=np.float32))


def test_only_sentinels_real_nanoaod(nanoaod_file):
    uproot = pytest.importorskip("uproot")
    with uproot.open(nanoaod_file) as f:
        per_event = f["Events"]["Jet_btagDeepFlavB"].array(library="np")
    x = np.concatenate(list(per_event))
    assert x.dtype == np.float32 and len(x) > 100
    assert np.all(x == -3000.0)  # the 2015 open data never computed DeepFlavour
    only_sentinel_round_trip(x)


def test_no_sentinel_in_data_changes_nothing(jets):
    x = jets["Jet_btagDeepFlavB"]
    plain = FeaturePipeline(FeatureSpec("b", "target", "bounded", bounds=(0, 1))).fit(x)
    spec = FeatureSpec("b", "target", "bounded", bounds=(0, 1), sentinels=BTAG_SENTINELS)
    with pytest.warns(UserWarning, match=r"none of the sentinels \(-1, -3000\) occur"):
        pipe = FeaturePipeline(spec).fit(x)
    assert [t.to_dict() for t in pipe.transforms] == [t.to_dict() for t in plain.transforms]
    assert pipe.flag.fractions.tolist() == [1.0, 0.0, 0.0]
    y = pipe.forward(x, rng=np.random.default_rng(3))
    assert np.array_equal(y[:, 1], plain.forward(x))
    z = y.astype(np.float32)
    assert np.array_equal(pipe.inverse(z), plain.inverse(z[:, 1]))
    np.testing.assert_allclose(
        pipe.log_abs_det_jacobian(x),
        plain.log_abs_det_jacobian(x) - np.log(pipe.flag.transforms[-1].scale),
    )
    # generated flags all decode to "ordinary": no sentinel appears that the data never had
    gen = np.random.default_rng(4).normal(0, 3, size=(1000, 2))
    assert np.all(pipe.inverse(gen) >= 0)


def test_integer_sentinel_restores_dtype():
    rng = np.random.default_rng(14)
    idx = rng.integers(0, 40, 2000).astype(np.int16)
    idx[rng.random(2000) < 0.3] = -1  # "no matched gen jet"
    data = {"Jet_genJetIdx": idx}
    schema = FeatureSchema(
        [FeatureSpec("Jet_genJetIdx", "target", "integer", bounds=(0, 100), sentinels=[-1])]
    )
    pre = Preprocessor(schema).fit(data)
    back = pre.inverse_targets(pre.transform_targets(data), {})["Jet_genJetIdx"]
    assert back.dtype == np.int16 and np.array_equal(back, idx)


def test_sentinel_matching_tolerates_float32():
    x = np.r_[np.float32(-999.9), np.float64(-999.9), 0.0, -0.0, 1e-30, 3.0]
    spec = FeatureSpec("m", "target", sentinels=(-999.9, 0))
    pipe = FeaturePipeline(spec).fit(np.r_[x, 5.0].astype(np.float32))
    assert pipe.flag.match(x).tolist() == [1, 1, 2, 2, 0, 0]
    # the restored value is the float32 one, bit-exact
    assert pipe.flag.values[0] == float(np.float32(-999.9)) != -999.9
    back = pipe.inverse(pipe.forward(x))
    assert np.array_equal(bits(back[:4]), bits([-999.9, -999.9, 0.0, 0.0]))


def test_sentinel_save_load_identical(sentinel_fitted, sentinel_jets, tmp_path):
    path = sentinel_fitted.save(tmp_path / "preprocessing.json")
    d = json.loads(path.read_text())
    assert d["format_version"] == 2
    entry = d["pipelines"]["Jet_btagDeepFlavB"]
    assert set(entry) == {"transforms", "sentinel"}
    assert entry["sentinel"]["values"] == [-1.0, -3000.0]
    assert d["schema"]["features"][3]["sentinels"] == [-1, -3000]
    loaded = Preprocessor.load(path)
    assert loaded.schema == sentinel_fitted.schema and loaded.to_dict() == sentinel_fitted.to_dict()
    assert loaded.domain == sentinel_fitted.domain
    c = sentinel_fitted.transform_conditions(sentinel_jets)
    assert np.array_equal(loaded.transform_conditions(sentinel_jets), c)
    z = sentinel_fitted.transform_targets(sentinel_jets, rng=np.random.default_rng(2))
    assert np.array_equal(loaded.transform_targets(sentinel_jets, rng=np.random.default_rng(2)), z)
    a, b = (
        loaded.inverse_targets(z, sentinel_jets),
        sentinel_fitted.inverse_targets(z, sentinel_jets),
    )
    assert all(np.array_equal(a[k], b[k]) for k in a)
    a, b = loaded.inverse_conditions(c), sentinel_fitted.inverse_conditions(c)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert np.array_equal(
        loaded.target_log_abs_det_jacobian(sentinel_jets),
        sentinel_fitted.target_log_abs_det_jacobian(sentinel_jets),
    )
    pipe = sentinel_fitted.pipelines["Jet_btagDeepFlavB"]
    again = FeaturePipeline.from_dict(json.loads(json.dumps(pipe.to_dict())))
    assert again.to_dict() == pipe.to_dict()
    assert (
        repr(again)
        == "FeaturePipeline('Jet_btagDeepFlavB', ['logit', 'standardize'], sentinels=[-1.0, -3000.0])"
    )


def test_sentinel_serialisation_errors(sentinel_fitted):
    d = sentinel_fitted.to_dict()
    broken = json.loads(json.dumps(d))
    broken["pipelines"]["Jet_btagDeepFlavB"] = broken["pipelines"]["Jet_btagDeepFlavB"][
        "transforms"
    ]
    with pytest.raises(ConfigError, match="'Jet_btagDeepFlavB': the spec lists sentinels, but"):
        Preprocessor.from_dict(broken)
    broken = json.loads(json.dumps(d))
    broken["pipelines"]["Jet_btagDeepFlavB"]["sentinel"]["values"] = [-1.0]
    with pytest.raises(ConfigError, match="expected 2 'values' and 3 'fractions'"):
        Preprocessor.from_dict(broken)
    broken = json.loads(json.dumps(d))
    broken["pipelines"]["GenJet_pt"] = {
        "transforms": broken["pipelines"]["GenJet_pt"],
        "sentinel": {"flag": []},
    }
    with pytest.raises(ConfigError, match="'GenJet_pt': the pipeline has sentinel state, but"):
        Preprocessor.from_dict(broken)
    # a preprocessor without sentinels stays readable by hepgen versions before them
    assert Preprocessor(make_schema()).to_dict()["format_version"] == 1
