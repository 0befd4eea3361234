"""MMD: exactness against brute force, calibration under the null, power, errors."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest

from hepgen.errors import InputError
from hepgen.validation.mmd import DEFAULT_MAX_EVENTS, MMDResult, mmd2_unbiased, mmd_test


def brute_mmd2(x, y, w, v, kernel, bandwidths):
    """Weighted unbiased MMD^2 from full numpy kernel matrices (the definition, written out)."""

    def gram(a, b):
        if kernel == "polynomial":
            return (a @ b.T / a.shape[1] + 1.0) ** 4
        d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
        return sum(np.exp(-d2 / (2 * h * h)) for h in bandwidths)

    w = np.ones(len(x)) if w is None else w
    v = np.ones(len(y)) if v is None else v
    kxx, kyy, kxy = gram(x, x), gram(y, y), gram(x, y)
    xx = (w @ kxx @ w - np.sum(w * w * np.diag(kxx))) / (w.sum() ** 2 - np.sum(w * w))
    yy = (v @ kyy @ v - np.sum(v * v * np.diag(kyy))) / (v.sum() ** 2 - np.sum(v * v))
    return xx + yy - 2 * (w @ kxy @ v) / (w.sum() * v.sum())


def mixed_sample(rng, n):
    """Continuous, integer (Poisson) and bounded (point mass at 0, uniform on [0, 1]) features."""
    bounded = np.where(rng.random(n) < 0.2, 0.0, rng.random(n))
    return np.column_stack([rng.normal(size=n), rng.poisson(3.0, n), bounded])


def bimodal(rng, n, d):
    """Mixture of N(+-0.8, 0.6^2) per dimension: mean 0 and variance 0.64 + 0.36 = 1."""
    return rng.choice([-0.8, 0.8], size=(n, d)) + 0.6 * rng.normal(size=(n, d))


def correlated(rng, n, rho):
    """2-D standard normal with correlation rho: identical N(0, 1) marginals for any rho."""
    z1, z2 = rng.normal(size=(2, n))
    return np.column_stack([z1, rho * z1 + np.sqrt(1 - rho * rho) * z2])


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 3))
    y = rng.normal(0.2, 1.1, size=(200, 3))
    w = rng.uniform(-0.2, 2.0, 300)  # some negative weights (sWeights)
    v = rng.uniform(0.5, 1.5, 200)
    return x, y, w, v


@pytest.mark.parametrize("kernel", ["gaussian", "polynomial"])
@pytest.mark.parametrize("weighted", [False, True])
def test_unbiased_mmd2_matches_brute_force(pair, kernel, weighted) -> None:
    x, y, w, v = pair
    w, v = (w, v) if weighted else (None, None)
    bw = (0.7, 1.5, 3.0)
    expected = brute_mmd2(x, y, w, v, kernel, bw)
    for chunk in (4096, 64):
        got = mmd2_unbiased(
            x, y, w, v, kernel=kernel, bandwidths=bw, chunk_size=chunk, dtype="float64"
        )
        np.testing.assert_allclose(got, expected, rtol=1e-5)
        got32 = mmd2_unbiased(x, y, w, v, kernel=kernel, bandwidths=bw, chunk_size=chunk)
        np.testing.assert_allclose(got32, expected, rtol=1e-4)


def test_gaussian_bandwidths_not_powers_of_two(pair) -> None:
    """Bandwidth ratios that are not powers of two take the exp path, not the squaring one."""
    x, y, _, _ = pair
    bw = (0.3, 0.9, 1.0, 2.0, 4.4)
    np.testing.assert_allclose(
        mmd2_unbiased(x, y, bandwidths=bw, chunk_size=100, dtype="float64"),
        brute_mmd2(x, y, None, None, "gaussian", bw),
        rtol=1e-10,
    )


def test_mmd_test_value_is_the_unbiased_estimate_on_standardised_data(pair) -> None:
    x, y, w, v = pair
    res = mmd_test(x, y, w, v, n_permutations=20, seed=3, dtype="float64", chunk_size=128)
    mean = np.average(x, axis=0, weights=w)
    std = np.sqrt(np.average((x - mean) ** 2, axis=0, weights=w))
    expected = brute_mmd2((x - mean) / std, (y - mean) / std, w, v, "gaussian", res.bandwidths)
    np.testing.assert_allclose(res.value, expected, rtol=1e-6)
    assert isinstance(res, MMDResult)
    assert res.method == "quadratic-permutation" and res.kernel == "gaussian"
    assert (res.n_reference, res.n_candidate) == (300, 200)
    # bandwidths: multiples 0.5, 1, 2, 4 of one median distance
    np.testing.assert_allclose(np.array(res.bandwidths) / res.bandwidths[1], [0.5, 1, 2, 4])
    d = res.to_dict()
    json.dumps(d, allow_nan=False)
    assert set(d) >= {"value", "pvalue", "kernel", "method", "bandwidths", "std"}


def rejection_rate(pvalues, alpha=0.05):
    return float(np.mean(np.asarray(pvalues) < alpha))


def test_permutation_test_calibrated_on_mixed_features() -> None:
    """200 repetitions, 200 vs 200 events of continuous + integer + bounded features, 100
    permutations, Gaussian kernel: rejection rate at alpha = 0.05 in [0.02, 0.09]."""
    rng = np.random.default_rng(11)
    pvals = [
        mmd_test(
            mixed_sample(rng, 200), mixed_sample(rng, 200), n_permutations=100, seed=rng
        ).pvalue
        for _ in range(200)
    ]
    rate = rejection_rate(pvals)
    assert 0.02 <= rate <= 0.09, rate
    # and the p-values spread over [0, 1] (not piled at one end)
    assert 0.4 < np.mean(pvals) < 0.6


def test_weighted_permutation_test_calibrated() -> None:
    """200 repetitions, 200 vs 200 weighted events, 100 permutations.  Both samples draw
    (event, weight) pairs from the same law (weights depend on x, 10 % are negative), which
    makes the labels exchangeable: rejection rate in [0.02, 0.09]."""
    rng = np.random.default_rng(12)

    def sample(n):
        x = rng.normal(size=(n, 2))
        w = np.exp(0.5 * x[:, 0]) * np.where(rng.random(n) < 0.1, -0.3, 1.0)
        return x, w

    pvals = []
    for _ in range(200):
        (x, w), (y, v) = sample(200), sample(200)
        pvals.append(mmd_test(x, y, w, v, n_permutations=100, seed=rng).pvalue)
    rate = rejection_rate(pvals)
    assert 0.02 <= rate <= 0.09, rate


def test_block_test_calibrated() -> None:
    """200 repetitions, 4000 vs 4000 mixed features, blocks of 200 (20 blocks), normal
    approximation: rejection rate in [0.02, 0.09]."""
    rng = np.random.default_rng(13)
    pvals = []
    for _ in range(200):
        res = mmd_test(
            mixed_sample(rng, 4000),
            mixed_sample(rng, 4000),
            max_quadratic=1000,
            block_size=200,
            seed=rng,
        )
        pvals.append(res.pvalue)
    assert res.method == "block-normal" and res.n_reference == 4000
    rate = rejection_rate(pvals)
    assert 0.02 <= rate <= 0.09, rate


@pytest.mark.slow
def test_calibration_slow() -> None:
    """1000 repetitions each (binomial sd 0.007): polynomial kernel 300 vs 300 (100
    permutations; measured 0.039) and the block test 20000 vs 20000 in 40 blocks of 500
    (measured 0.030: the studentised mean of right-skewed block values is slightly
    conservative); rejection rates in [0.02, 0.08].  ~4 minutes."""
    rng = np.random.default_rng(14)
    poly = [
        mmd_test(
            mixed_sample(rng, 300),
            mixed_sample(rng, 300),
            kernel="polynomial",
            n_permutations=100,
            seed=rng,
        ).pvalue
        for _ in range(1000)
    ]
    assert 0.02 <= rejection_rate(poly) <= 0.08
    block = [
        mmd_test(
            mixed_sample(rng, 20000),
            mixed_sample(rng, 20000),
            max_quadratic=1000,
            block_size=500,
            seed=rng,
        ).pvalue
        for _ in range(1000)
    ]
    assert 0.02 <= rejection_rate(block) <= 0.08


def test_power_bimodal_with_equal_mean_and_variance() -> None:
    """N(0, 1) against the mixture of N(+-0.8, 0.6^2): same mean 0 and variance 1.
    Permutation test at 2000 vs 2000 (1-D, 1999 permutations) and block test at 30000 vs
    30000 (2-D, 30 blocks of 1000): both p < 1e-3."""
    rng = np.random.default_rng(21)
    mix = bimodal(rng, 2000, 1)
    np.testing.assert_allclose([mix.mean(), mix.var()], [0.0, 1.0], atol=0.06)
    res = mmd_test(rng.normal(size=(2000, 1)), mix, n_permutations=1999, seed=1)
    assert res.pvalue < 1e-3 and res.value > 5 * res.std
    res = mmd_test(rng.normal(size=(30000, 2)), bimodal(rng, 30000, 2), seed=2)
    assert res.method == "block-normal"
    assert res.pvalue < 1e-3, res


def test_power_correlation_with_identical_marginals() -> None:
    """rho = 0 against rho = 0.2 in 2-D (identical N(0, 1) marginals), 30000 vs 30000,
    block test: p < 1e-3."""
    rng = np.random.default_rng(22)
    res = mmd_test(correlated(rng, 30000, 0.0), correlated(rng, 30000, 0.2), seed=3)
    assert res.method == "block-normal" and res.n_reference == 30000
    assert res.pvalue < 1e-3, res


def test_polynomial_kernel_sees_a_shift() -> None:
    rng = np.random.default_rng(23)
    res = mmd_test(
        rng.normal(size=(1000, 3)),
        rng.normal(0.2, 1, size=(1000, 3)),
        kernel="polynomial",
        n_permutations=999,
        seed=1,
    )
    assert res.kernel == "polynomial" and res.bandwidths == ()
    assert res.pvalue == pytest.approx(1e-3)


def test_max_events_and_seeding() -> None:
    rng = np.random.default_rng(24)
    x, y = rng.normal(size=(3000, 2)), rng.normal(size=(2500, 2))
    a = mmd_test(x, y, max_events=400, n_permutations=50, seed=5)
    b = mmd_test(x, y, max_events=400, n_permutations=50, seed=5)
    assert a == b
    assert (a.n_reference, a.n_candidate) == (400, 400)
    assert a.method == "quadratic-permutation"
    # block test with unequal sizes: min(n, m) // block_size blocks of block_size per side
    c = mmd_test(x, y, max_quadratic=1000, block_size=300, seed=5)
    assert c.method == "block-normal" and (c.n_reference, c.n_candidate) == (2400, 2400)


def test_max_events_cap_is_stated_in_the_result() -> None:
    """The default caps both samples at DEFAULT_MAX_EVENTS; a cut is named in ``note`` with
    the original sizes, and no cut leaves ``note`` empty."""
    assert inspect.signature(mmd_test).parameters["max_events"].default == DEFAULT_MAX_EVENTS
    rng = np.random.default_rng(25)
    x, y = rng.normal(size=(3000, 2)), rng.normal(size=(2500, 2))
    res = mmd_test(x, y, max_events=1000, max_quadratic=500, block_size=250, seed=5)
    assert res.method == "block-normal" and (res.n_reference, res.n_candidate) == (1000, 1000)
    assert "reference: 3000 events" in res.note and "candidate: 2500 events" in res.note
    assert "max_events=1000" in res.note and res.to_dict()["note"] == res.note
    only_ref = mmd_test(x, y[:900], max_events=1000, n_permutations=20, seed=5)
    assert "reference: 3000" in only_ref.note and "candidate" not in only_ref.note
    assert mmd_test(x[:500], y[:500], n_permutations=20, seed=5).note == ""


@pytest.mark.slow
def test_power_at_the_default_cap() -> None:
    """1e6 vs 1e6, rho = 0 against rho = 0.1 (identical marginals): the block test on the
    default 2e5-event subsamples still finds it at p < 1e-3 (measured p = 8.5e-10, z = 6.0;
    4 s on one loaded core)."""
    rng = np.random.default_rng(26)
    n = 1_000_000
    res = mmd_test(correlated(rng, n, 0.0), correlated(rng, n, 0.1), seed=4, device="cpu")
    assert res.n_reference == res.n_candidate == DEFAULT_MAX_EVENTS
    assert "1000000 events" in res.note
    assert res.pvalue < 1e-3, res


def test_constant_feature_and_one_dimensional_input() -> None:
    rng = np.random.default_rng(25)
    x = np.column_stack([rng.normal(size=300), np.full(300, 4.0)])
    y = np.column_stack([rng.normal(size=300), np.full(300, 4.0)])
    res = mmd_test(x, y, n_permutations=50, seed=1)
    assert np.isfinite(res.value) and 0 < res.pvalue <= 1
    res1 = mmd_test(rng.normal(size=200), rng.normal(size=150), n_permutations=50, seed=1)
    assert (res1.n_reference, res1.n_candidate) == (200, 150)
    # all events identical: bandwidth falls back to 1, value exactly 0
    same = mmd_test(np.ones((50, 2)), np.ones((40, 2)), n_permutations=20, seed=1)
    assert same.value == pytest.approx(0.0, abs=1e-6) and same.bandwidths[1] == 1.0


def test_bad_input_names_the_sample() -> None:
    rng = np.random.default_rng(26)
    x = rng.normal(size=(100, 3))
    with pytest.raises(InputError, match="candidate: has 2 features where 3"):
        mmd_test(x, rng.normal(size=(100, 2)))
    with pytest.raises(InputError, match="reference: no events"):
        mmd_test(np.empty((0, 3)), x)
    bad = x.copy()
    bad[5, 1] = np.nan
    with pytest.raises(InputError, match="candidate: 1 of 100 events have NaN"):
        mmd_test(x, bad)
    with pytest.raises(InputError, match="reference: weights have shape"):
        mmd_test(x, x, np.ones(99))
    with pytest.raises(InputError, match="kernel 'laplace'"):
        mmd_test(x, x, kernel="laplace")
    with pytest.raises(InputError, match="block_size=80"):
        mmd_test(x, x, max_quadratic=50, block_size=80)
    with pytest.raises(InputError, match="candidate: the unbiased MMD needs"):
        mmd2_unbiased(x, x[:1])
    with pytest.raises(InputError, match="bandwidths"):
        mmd2_unbiased(x, x, bandwidths=[0.0])
    with pytest.raises(InputError, match="n_permutations"):
        mmd_test(x, x, n_permutations=0)
