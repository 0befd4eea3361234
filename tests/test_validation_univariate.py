"""Per-feature two-sample statistics: correctness against scipy and hand computations,
calibration under the null, power against typical generator distortions, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from hepgen.errors import InputError
from hepgen.validation.univariate import (
    Chi2Result,
    KSResult,
    chi2_test,
    histogram_edges,
    ks_test,
    separation_power,
    wasserstein1,
    weighted_quantile,
)

ALPHA = 0.05


def draw(kind: str, rng: np.random.Generator, n: int) -> np.ndarray:
    """One sample of a test feature: continuous, integer or bounded with a point mass."""
    if kind == "normal":
        return rng.normal(size=n)
    if kind == "exponential":
        return rng.exponential(size=n)
    if kind == "poisson":  # e.g. a jet's number of constituents
        return rng.poisson(20.0, n).astype(np.float64)
    if kind == "beta0":  # a tagger score on [0, 1] with 10% exact zeros (not computed)
        x = rng.beta(2.0, 5.0, n)
        x[rng.random(n) < 0.1] = 0.0
        return x
    raise ValueError(kind)


def null_pvalues(
    kind: str, weighting: str, reps: int, n: int, seed: int
) -> tuple[np.ndarray, np.ndarray, set[str]]:
    """KS and chi2 p-values of ``reps`` pairs of samples of one distribution.

    ``weighting``: "none"; "both" (exponential(1) weights, Kish n_eff = n/2, on both samples);
    "one" (weighted reference, unweighted candidate); "negative" (weights N(1, 1), about 16%
    negative, on both).
    """
    rng = np.random.default_rng(seed)
    p_ks, p_chi2, methods = [], [], set()
    for _ in range(reps):
        a, b = draw(kind, rng, n), draw(kind, rng, n)
        wa = wb = None
        if weighting in ("both", "one"):
            wa = rng.exponential(size=n)
        if weighting == "both":
            wb = rng.exponential(size=n)
        if weighting == "negative":
            wa, wb = rng.normal(1.0, 1.0, n), rng.normal(1.0, 1.0, n)
        ks = ks_test(a, b, wa, wb, seed=rng)
        p_ks.append(ks.pvalue)
        methods.add(ks.method)
        p_chi2.append(chi2_test(a, b, wa, wb).pvalue)
    return np.array(p_ks), np.array(p_chi2), methods


CALIBRATION_CASES = [
    ("normal", "none", {"exact"}),
    ("poisson", "none", {"permutation"}),
    ("beta0", "none", {"exact"}),
    ("exponential", "both", {"weighted-asymp"}),
    ("normal", "one", {"weighted-asymp"}),
    ("poisson", "both", {"multiplier"}),
    ("beta0", "one", {"weighted-asymp"}),
    ("normal", "negative", {"weighted-asymp"}),
]


# ---------------------------------------------------------------------------------------------
# correctness
# ---------------------------------------------------------------------------------------------


def test_ks_unit_weights_equal_scipy():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=700), rng.normal(0.1, 1.0, 900)
    ref = stats.ks_2samp(a, b)
    r = ks_test(a, b, np.ones(700), np.full(900, 3.0))  # equal weights are no weights
    assert r.method == "exact"
    assert r.statistic == pytest.approx(ref.statistic, abs=1e-15)
    assert r.pvalue == pytest.approx(ref.pvalue, rel=1e-12)
    assert r.location == ref.statistic_location
    # the weighted code path: a zero weight removes an event, the rest have weight 1
    extra = np.concatenate([a, [10.0]])
    w = np.concatenate([np.ones(700), [0.0]])
    rw = ks_test(extra, b, w)
    assert rw.method == "weighted-asymp"
    assert rw.statistic == pytest.approx(ref.statistic, abs=1e-12)
    assert rw.n_eff_reference == pytest.approx(700.0)


def test_ks_integer_weights_equal_duplicated_events():
    rng = np.random.default_rng(1)
    a = np.round(rng.normal(size=300), 1)  # rounded: ties within and across the samples
    b = np.round(rng.normal(0.2, 1.0, 400), 1)
    wa = rng.integers(1, 3, 300).astype(np.float64)  # weights 1 and 2
    wb = rng.integers(1, 3, 400).astype(np.float64)
    r = ks_test(a, b, wa, wb, method="asymp")
    dup = stats.ks_2samp(np.repeat(a, wa.astype(int)), np.repeat(b, wb.astype(int)))
    assert r.statistic == pytest.approx(dup.statistic, abs=1e-12)
    # Kish sizes: (sum w)^2 / sum w^2
    assert r.n_eff_reference == pytest.approx(wa.sum() ** 2 / (wa**2).sum())


def test_ks_permutation_on_counts_matches_shuffling_events():
    """The multivariate-hypergeometric shortcut has the distribution of a label shuffle."""
    rng = np.random.default_rng(2)
    a, b = rng.poisson(3.0, 150).astype(float), rng.poisson(3.4, 120).astype(float)
    r = ks_test(a, b, n_permutations=4000, seed=3)
    assert r.method == "permutation" and r.n_resamples == 4000
    pooled = np.concatenate([a, b])
    shuffled = []
    for _ in range(4000):
        perm = rng.permutation(pooled)
        shuffled.append(stats.ks_2samp(perm[:150], perm[150:]).statistic)
    p_shuffle = (1 + np.sum(np.array(shuffled) >= r.statistic - 1e-12)) / 4001
    # both Monte Carlo estimates of one p-value: within 4 binomial standard deviations
    se = np.sqrt(2 * p_shuffle * (1 - p_shuffle) / 4000)
    assert 0.005 < p_shuffle < 0.5
    assert abs(r.pvalue - p_shuffle) < 4 * se


def test_chi2_uu_hand_computation_and_contingency_table():
    # bins [0.5, 1.5), [1.5, 2.5), [2.5, 3.5]: reference n = (5, 10, 5), N = 20;
    # candidate m = (10, 10, 20), M = 40.  X2 = 1/(N M) sum (M n_i - N m_i)^2 / (n_i + m_i):
    #   bin 1: (40*5 - 20*10)^2 / 15 = 0
    #   bin 2: (40*10 - 20*10)^2 / 20 = 40000 / 20 = 2000
    #   bin 3: (40*5 - 20*20)^2 / 25 = 40000 / 25 = 1600
    #   X2 = 3600 / 800 = 4.5, ndf = 2, p = exp(-4.5 / 2) (chi2 with 2 dof)
    ref = np.repeat([1.0, 2.0, 3.0], [5, 10, 5])
    cand = np.repeat([1.0, 2.0, 3.0], [10, 10, 20])
    r = chi2_test(ref, cand, bins=np.array([0.5, 1.5, 2.5, 3.5]), min_count=0)
    assert isinstance(r, Chi2Result) and r.method == "UU"
    assert r.statistic == pytest.approx(4.5, rel=1e-12)
    assert r.ndf == 2
    assert r.pvalue == pytest.approx(np.exp(-2.25), rel=1e-12)
    np.testing.assert_array_equal(r.reference_counts, [5, 10, 5])
    np.testing.assert_array_equal(r.edges, [0.5, 1.5, 2.5, 3.5])
    # UU is Pearson's chi2 of the 2 x r contingency table (Gagunashvili 2010, sec. 2)
    table = np.array([[5, 10, 5], [10, 10, 20]])
    pearson = stats.chi2_contingency(table, correction=False)
    assert r.statistic == pytest.approx(pearson.statistic, rel=1e-12)
    assert r.pvalue == pytest.approx(pearson.pvalue, rel=1e-12)


def test_chi2_ww_hand_computation():
    # ROOT TH1::Chi2Test "WW": X2 = sum (W1 w2_i - W2 w1_i)^2 / (W1^2 s2_i + W2^2 s1_i)
    # reference: bin 1 holds weights 1 and 2 (w1 = 3, s1 = 1 + 4 = 5), bin 2 weight 4
    # (w1 = 4, s1 = 16); W1 = 7.  candidate unweighted (weight 1): bin 1 three events
    # (w2 = s2 = 3), bin 2 one event (w2 = s2 = 1); W2 = 4.
    #   bin 1: (7*3 - 4*3)^2 / (49*3 + 16*5) = 81 / 227
    #   bin 2: (7*1 - 4*4)^2 / (49*1 + 16*16) = 81 / 305
    ref, wref = np.array([1.0, 1.0, 2.0]), np.array([1.0, 2.0, 4.0])
    cand = np.array([1.0, 1.0, 1.0, 2.0])
    r = chi2_test(ref, cand, wref, bins=np.array([0.5, 1.5, 2.5]), min_count=0)
    assert r.method == "WW" and r.ndf == 1
    assert r.statistic == pytest.approx(81 / 227 + 81 / 305, rel=1e-12)
    assert r.pvalue == pytest.approx(stats.chi2.sf(81 / 227 + 81 / 305, 1), rel=1e-12)
    # an unweighted sample counts as weight 1: explicit unit weights give the same
    r1 = chi2_test(ref, cand, wref, np.ones(4), bins=np.array([0.5, 1.5, 2.5]), min_count=0)
    assert r1.statistic == r.statistic


def test_wasserstein_equals_scipy():
    rng = np.random.default_rng(4)
    a, b = np.round(rng.normal(size=1000), 2), rng.exponential(size=800)  # ties in a
    wa, wb = rng.exponential(size=1000), rng.uniform(0, 2, 800)
    for args in [(), (wa, None), (None, wb), (wa, wb)]:
        ours = wasserstein1(a, b, *args)
        theirs = stats.wasserstein_distance(a, b, *args)
        assert ours == pytest.approx(theirs, rel=1e-9)
    # negative weights (sWeights): scipy refuses, ours is the integral of |F_ref - F_cand|
    ws = wa.copy()
    ws[:100] = -0.5
    with pytest.raises(ValueError):
        stats.wasserstein_distance(a, b, ws, None)
    x = np.linspace(min(a.min(), b.min()), max(a.max(), b.max()), 200_001)  # Riemann sum
    order = np.argsort(a)
    f_ref = np.concatenate([[0], np.cumsum(ws[order])])[np.searchsorted(a[order], x, "right")]
    f_cand = np.searchsorted(np.sort(b), x, "right") / b.size
    numeric = np.sum(np.abs(f_ref / ws.sum() - f_cand)[:-1] * np.diff(x))
    assert wasserstein1(a, b, ws) == pytest.approx(numeric, rel=1e-3)


def test_separation_power_limits_and_hand_value():
    rng = np.random.default_rng(5)
    a = rng.normal(size=2000)
    assert separation_power(a, a) == 0.0
    assert separation_power(a, rng.normal(10.0, 1.0, 1500)) == pytest.approx(1.0, abs=1e-12)
    # p = (1/2, 1/2), q = (1/4, 3/4): 1/2 [(1/4)^2 / (3/4) + (1/4)^2 / (5/4)] = 1/15
    ref = np.array([0.0, 0.0, 1.0, 1.0])
    cand = np.array([0.0, 1.0, 1.0, 1.0])
    sp = separation_power(ref, cand, bins=np.array([-0.5, 0.5, 1.5]), min_count=0)
    assert sp == pytest.approx(1 / 15, rel=1e-12)
    # weighted: reference weights (1, 1, 2, 2) give p = (1/3, 2/3), q = (1/4, 3/4):
    # 1/2 [(1/12)^2 / (7/12) + (1/12)^2 / (17/12)] = 1/2 (1/84 + 1/204)
    spw = separation_power(
        ref, cand, [1.0, 1.0, 2.0, 2.0], bins=np.array([-0.5, 0.5, 1.5]), min_count=0
    )
    assert spw == pytest.approx(0.5 * (1 / 84 + 1 / 204), rel=1e-12)


def test_weighted_quantile_against_numpy():
    rng = np.random.default_rng(6)
    x = rng.exponential(size=501)
    q = np.linspace(0, 1, 23)
    expected = np.quantile(x, q, method="hazen")
    np.testing.assert_allclose(weighted_quantile(x, q), expected, rtol=1e-12)
    np.testing.assert_allclose(weighted_quantile(x, q, np.full(501, 0.3)), expected, rtol=1e-12)
    # a zero weight removes the value
    w = np.ones(501)
    w[7] = 0.0
    np.testing.assert_allclose(
        weighted_quantile(x, q, w), np.quantile(np.delete(x, 7), q, method="hazen"), rtol=1e-12
    )
    assert weighted_quantile([1.0, 2.0, 3.0, 4.0], 0.5, [1.0, 1.0, 1.0, 5.0]) == 3.5
    with pytest.raises(InputError, match="quantiles must lie in"):
        weighted_quantile(x, 1.5)


# ---------------------------------------------------------------------------------------------
# binning
# ---------------------------------------------------------------------------------------------


def test_default_binning_reference_quantiles_with_under_and_overflow():
    rng = np.random.default_rng(7)
    ref, cand = rng.normal(size=2000), rng.normal(size=3000)
    edges = histogram_edges(ref, cand)
    # r = min(50, max(5, 2000 / 25)) = 50 quantile bins; candidate events beyond the
    # reference range (a few per side) are merged into the first and last bins
    assert edges.size == 51
    assert edges[0] == min(ref.min(), cand.min()) and edges[-1] == max(ref.max(), cand.max())
    np.testing.assert_allclose(
        edges[1:-1], np.quantile(ref, np.linspace(0, 1, 51)[1:-1], method="hazen")
    )
    r = chi2_test(ref, cand)
    assert r.reference_counts.sum() == 2000 and r.candidate_counts.sum() == 3000
    np.testing.assert_array_equal(r.edges, edges)
    assert histogram_edges(ref[:100], cand[:100]).size == 6  # 100 / 25 = 4 -> at least 5 bins


def test_integer_feature_half_integer_edges_and_point_masses():
    rng = np.random.default_rng(8)
    ref, cand = rng.poisson(20, 3000).astype(float), rng.poisson(20, 3000).astype(float)
    edges = histogram_edges(ref, cand)
    np.testing.assert_array_equal(edges % 1.0, 0.5)  # every edge is k + 1/2
    r = chi2_test(ref, cand)
    assert r.reference_counts.sum() == 3000
    assert r.reference_counts.min() + r.candidate_counts.min() >= 10
    # a point mass (10% exact zeros) lies in a single bin and duplicate edges collapse
    x = draw("beta0", rng, 3000)
    edges = histogram_edges(x, draw("beta0", rng, 3000))
    assert np.all(np.diff(edges) > 0)
    first = chi2_test(x, x, bins=None).reference_counts[0]
    assert first == pytest.approx(np.sum(x < edges[1]))
    assert edges[0] == 0.0 and np.sum(x == 0.0) <= first <= np.sum(x == 0.0) + 3000 / 50 + 1


def test_merging_depends_only_on_pooled_content():
    rng = np.random.default_rng(9)
    ref = rng.exponential(size=400)
    cand = rng.exponential(size=300)
    bins = np.linspace(0, 8, 41)  # the tail bins are sparse
    e1 = histogram_edges(ref, cand, bins=bins)
    # move events between the samples without changing the pooled sample
    pooled = np.concatenate([ref, cand])
    swapped = rng.permutation(pooled)
    e2 = histogram_edges(swapped[:400], swapped[400:], bins=bins)
    np.testing.assert_array_equal(e1, e2)
    counts = chi2_test(ref, cand, bins=bins)
    assert np.all(counts.reference_counts + counts.candidate_counts >= 10)
    # values beyond the given edges are kept in the under- and overflow
    r = chi2_test(ref, cand, bins=np.array([0.5, 1.0, 1.5]))
    assert r.reference_counts.sum() == 400 and r.candidate_counts.sum() == 300
    assert r.edges[0] == pooled.min() and r.edges[-1] == pooled.max()


# ---------------------------------------------------------------------------------------------
# calibration and power
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "weighting", "methods"), CALIBRATION_CASES)
def test_null_calibration(kind, weighting, methods):
    """500 null repetitions of n = 2000 per sample: KS and chi2 reject at alpha = 0.05 with a
    rate in [0.02, 0.09] (the binomial standard deviation of a rate is 0.01)."""
    p_ks, p_chi2, used = null_pvalues(kind, weighting, reps=500, n=2000, seed=10)
    assert used == methods
    assert 0.02 <= np.mean(p_ks < ALPHA) <= 0.09
    assert 0.02 <= np.mean(p_chi2 < ALPHA) <= 0.09
    assert np.all((p_ks > 0) & (p_ks <= 1)) and np.all((p_chi2 > 0) & (p_chi2 <= 1))


def test_null_pvalues_uniform_continuous():
    """1000 null repetitions, normal, n = 2000 unweighted: p-values are U(0, 1)."""
    p_ks, p_chi2, _ = null_pvalues("normal", "none", reps=1000, n=2000, seed=11)
    assert stats.kstest(p_ks, "uniform").pvalue > 1e-3
    assert stats.kstest(p_chi2, "uniform").pvalue > 1e-3


def test_plain_ks_is_conservative_on_integers():
    """Why ties need the permutation p-value: 500 null repetitions of a Poisson(20) feature,
    n = 2000, with scipy's continuous-distribution p-value reject at ~1.5% instead of 5%."""
    rng = np.random.default_rng(12)
    plain, auto = [], []
    for _ in range(500):
        a, b = draw("poisson", rng, 2000), draw("poisson", rng, 2000)
        plain.append(ks_test(a, b, method="asymp").pvalue)
        auto.append(ks_test(a, b, n_permutations=200, seed=rng).pvalue)
    assert np.mean(np.array(plain) < ALPHA) < 0.03
    assert 0.02 <= np.mean(np.array(auto) < ALPHA) <= 0.09


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "weighting", "methods"), CALIBRATION_CASES)
def test_null_calibration_large(kind, weighting, methods):
    """2000 null repetitions of n = 5000 per sample: rejection rate within [0.035, 0.065]
    (three binomial standard deviations of 0.005 around 0.05)."""
    p_ks, p_chi2, used = null_pvalues(kind, weighting, reps=2000, n=5000, seed=13)
    assert used == methods
    assert 0.035 <= np.mean(p_ks < ALPHA) <= 0.065
    assert 0.035 <= np.mean(p_chi2 < ALPHA) <= 0.065


def _pair_normal(n: int, seed: int, loc: float = 0.0, scale: float = 1.0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=n), rng.normal(loc, scale, n)


def test_power_mean_shift():
    """0.1 sigma shift at n = 20000 per sample: KS and chi2 p < 1e-3 (measured 1e-13, 4e-9);
    W1 at n = 1e5 is 0.1 sigma within 0.015 (its statistical error is ~0.005)."""
    ref, cand = _pair_normal(20_000, 20, loc=0.1)
    assert ks_test(ref, cand).pvalue < 1e-3
    assert chi2_test(ref, cand).pvalue < 1e-3
    ref, cand = _pair_normal(100_000, 21, loc=0.1)
    assert wasserstein1(ref, cand) == pytest.approx(0.1, abs=0.015)
    assert wasserstein1(ref, ref) == 0.0
    # weighted (exponential weights, n_eff = n/2): still found at n = 40000
    rng = np.random.default_rng(22)
    ref, cand = _pair_normal(40_000, 23, loc=0.1)
    w1, w2 = rng.exponential(size=40_000), rng.exponential(size=40_000)
    assert ks_test(ref, cand, w1, w2).pvalue < 1e-3
    assert chi2_test(ref, cand, w1, w2).pvalue < 1e-3


def test_power_width_change():
    """5% wider candidate: chi2 p < 1e-3 at n = 20000 per sample; KS, whose largest CDF
    difference is only ~0.012, needs n = 1e5 per sample."""
    ref, cand = _pair_normal(20_000, 30, scale=1.05)
    assert chi2_test(ref, cand).pvalue < 1e-3
    ref, cand = _pair_normal(100_000, 31, scale=1.05)
    assert ks_test(ref, cand).pvalue < 1e-3


def test_power_removed_tail():
    """Candidate without the values above the reference 99th percentile: chi2 sees it with
    p < 1e-3 at n = 20000 per sample (measured 1.5e-7: the last quantile bin holds 2% of the
    reference but 1% of the candidate); KS's distance is only ~0.01 (measured p = 0.02 here;
    p < 1e-3 would need n of order 2e5 per sample)."""
    rng = np.random.default_rng(40)
    n = 20_000
    ref = rng.normal(size=n)
    cut = np.quantile(ref, 0.99)
    cand = rng.normal(size=2 * n)
    cand = cand[cand <= cut][:n]
    r = chi2_test(ref, cand)
    assert r.pvalue < 1e-3
    # the signal is in the top bin: reference fraction 0.02, candidate fraction ~0.01
    assert r.reference_counts[-1] / n == pytest.approx(0.02, abs=0.002)
    assert r.candidate_counts[-1] / n == pytest.approx(0.01, abs=0.003)
    ks = ks_test(ref, cand)
    assert ks.statistic == pytest.approx(0.01, abs=0.006)


def test_power_integer_feature():
    """Poisson(20) vs Poisson(20.4) (a 2% shift) at n = 20000: KS (permutation) and chi2
    p < 1e-3; the permutation p-value is then its smallest value 1/(n_permutations + 1)."""
    rng = np.random.default_rng(50)
    a, b = rng.poisson(20.0, 20_000), rng.poisson(20.4, 20_000)
    ks = ks_test(a, b, seed=1)
    assert ks.method == "permutation" and ks.pvalue == pytest.approx(1 / 1001)
    assert chi2_test(a, b).pvalue < 1e-3


# ---------------------------------------------------------------------------------------------
# bad input and degenerate cases
# ---------------------------------------------------------------------------------------------

FUNCTIONS = [ks_test, chi2_test, wasserstein1, separation_power, histogram_edges]


@pytest.mark.parametrize("func", FUNCTIONS, ids=lambda f: f.__name__)
def test_bad_input_names_the_sample(func):
    good = np.arange(20.0)
    with pytest.raises(InputError, match="Jet_pt reference: no events"):
        func(np.array([]), good, name="Jet_pt")
    with pytest.raises(InputError, match="Jet_pt candidate: 1 of 20 values are NaN"):
        func(good, np.where(good == 3, np.nan, good), name="Jet_pt")
    with pytest.raises(InputError, match=r"Jet_pt candidate: weights have shape \(19,\)"):
        func(good, good, None, np.ones(19), name="Jet_pt")
    with pytest.raises(InputError, match="Jet_pt reference: weights sum to 0"):
        func(good, good, np.where(good < 10, 1.0, -1.0), name="Jet_pt")
    with pytest.raises(InputError, match="feature reference: weights sum to -20"):
        func(good, good, -np.ones(20))


def test_bad_options():
    x = np.arange(30.0)
    with pytest.raises(InputError, match="strictly increasing"):
        chi2_test(x, x, bins=np.array([0.0, 2.0, 1.0]))
    with pytest.raises(InputError, match="positive number of bins"):
        chi2_test(x, x, bins=0)
    with pytest.raises(InputError, match="no exact KS p-value for weighted"):
        ks_test(x, x, np.arange(1.0, 31.0), method="exact")
    with pytest.raises(InputError, match="method 'fast'"):
        ks_test(x, x, method="fast")


def test_constant_feature():
    const = np.full(500, 3.0)
    chi2 = chi2_test(const, np.full(300, 3.0))
    assert chi2.ndf == 0 and chi2.statistic == 0.0 and chi2.pvalue is None
    assert "single bin" in chi2.note
    d = chi2.to_dict()
    assert d["pvalue"] is None and d["edges"] == [2.5, 3.5]
    json.dumps(d, allow_nan=False)
    for weights in (None, np.linspace(0.5, 1.5, 500)):
        ks = ks_test(const, np.full(300, 3.0), weights)
        assert isinstance(ks, KSResult)
        assert ks.statistic == 0.0 and ks.pvalue == 1.0
        json.dumps(ks.to_dict(), allow_nan=False)
    cont = np.full(100, 0.25)  # not an integer: the single bin is padded for plotting
    assert chi2_test(cont, cont, cont, cont).edges.tolist() == [-0.25, 0.75]
    assert wasserstein1(const, const) == 0.0
    assert separation_power(const, const) == 0.0
    # a different constant: everything in one bin each -> two bins, total separation
    other = chi2_test(const, np.full(300, 4.0))
    assert other.ndf == 1 and other.pvalue < 1e-100
    assert separation_power(const, np.full(300, 4.0)) == 1.0
