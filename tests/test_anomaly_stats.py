"""Bump-hunt statistics: dijet sideband fit (recovery, pulls, reference simulation),
significance calibration, efficiency thresholds, ROC/SIC, and error messages."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import integrate, stats

from hepgen.anomaly.stats import (
    MIN_SIDEBAND_EVENTS,
    ROC,
    SidebandFit,
    dijet_function,
    fit_sidebands,
    poisson_pvalue,
    roc_sic,
    significance,
    significances,
    threshold_at_efficiency,
)
from hepgen.anomaly.stats.likelihood import PoissonModel
from hepgen.errors import InputError

TRUE4 = (1.0, 8.0, 4.0, 0.3)  # p0 is replaced by the normalisation of each toy
SR = (3.3, 3.7)


def sample_dijet(
    params, a: float, b: float, mean_events: float, rng: np.random.Generator, sqrt_s: float = 13.0
) -> tuple[np.ndarray, np.ndarray]:
    """Poisson(mean_events) masses on [a, b] from the dijet function by inverse-CDF sampling
    (CDF tabulated on 20001 points in ln m); returns the masses and the true parameters with
    p0 normalised to the mean number of events on [a, b]."""
    t = np.linspace(np.log(a), np.log(b), 20001)
    g = dijet_function(np.exp(t), params, sqrt_s) * np.exp(t)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (g[1:] + g[:-1]) * np.diff(t))])
    true = np.array(params, dtype=np.float64)
    true[0] *= mean_events / cdf[-1]
    n = rng.poisson(mean_events)
    return np.exp(np.interp(rng.random(n), cdf / cdf[-1], t)), true


def log_space(params: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ln p0, p1, p2, p3) and its covariance."""
    jac = np.array([params[0], 1.0, 1.0, 1.0])
    theta = np.array(params, dtype=np.float64)
    theta[0] = np.log(theta[0])
    return theta, cov / np.outer(jac, jac)


# ------------------------------------------------------------------------------ dijet function


def test_dijet_function_values_and_support() -> None:
    m = np.array([-1.0, 0.0, 2.6, 6.5, 13.0, 14.0])
    p = (2.0, 6.0, 3.0, 0.5)
    x = 2.6 / 13.0
    expected = 2.0 * (1 - x) ** 6 / x ** (3.0 + 0.5 * np.log(x))
    f = dijet_function(m, p)
    assert f[2] == pytest.approx(expected, rel=1e-13)
    assert f[3] == pytest.approx(2.0 * 0.5**6 / 0.5 ** (3.0 + 0.5 * np.log(0.5)), rel=1e-13)
    assert f[[0, 1, 4, 5]].tolist() == [0.0, 0.0, 0.0, 0.0]
    np.testing.assert_allclose(dijet_function(m, p[:3]), dijet_function(m, (*p[:3], 0.0)))
    # sqrt_s scales x
    assert dijet_function(2.6, p, sqrt_s=8.0) == pytest.approx(
        2.0 * (1 - 2.6 / 8) ** 6 / (2.6 / 8) ** (3.0 + 0.5 * np.log(2.6 / 8)), rel=1e-13
    )
    with pytest.raises(InputError, match=r"3 or 4 parameters.*got 2"):
        dijet_function(m, (1.0, 2.0))
    with pytest.raises(InputError, match="sqrt_s"):
        dijet_function(m, p, sqrt_s=0.0)


# ------------------------------------------------------------------------------ sideband fit


def test_fit_recovers_generating_parameters() -> None:
    rng = np.random.default_rng(11)
    m, true = sample_dijet(TRUE4, 1.5, 7.0, 1_000_000, rng)
    fit = fit_sidebands(m, *SR, (1.5, 7.0), bins=100)
    assert fit.n_parameters == 4 and fit.note == ""
    theta, cov = log_space(fit.params, fit.covariance)
    theta_true, _ = log_space(true, fit.covariance)
    pulls = (theta - theta_true) / np.sqrt(np.diag(cov))
    assert np.all(np.abs(pulls) < 4), pulls
    # the parameters are strongly correlated: test them jointly, chi2 with 4 dof (p = 0.001)
    d = theta - theta_true
    assert d @ np.linalg.solve(cov, d) < stats.chi2.ppf(0.999, 4)
    assert fit.pvalue > 1e-3 and fit.ndf > 50
    # extended ML: the fitted expectation sums to the observed sideband count
    assert fit.expected.sum() == pytest.approx(fit.observed.sum(), rel=1e-6)
    assert fit.observed.sum() == fit.n_left + fit.n_right
    # the blinded fit predicts the signal region (3.3-3.7 TeV holds ~4 % of 1e6 events)
    n_sr = np.count_nonzero((m >= SR[0]) & (m < SR[1]))
    pred, err = fit.integral(*SR), fit.integral_error(*SR)
    assert abs(n_sr - pred) < 3 * math.hypot(err, math.sqrt(pred))
    # the true integral is known exactly: compare the fit with the generating function
    exact = SidebandFit(true, np.zeros((4, 4)), 4, 0.0, 1, 1.0, *SR, 13.0).integral(*SR)
    assert abs(pred - exact) < 4 * err


def test_three_parameter_fit_recovers_parameters() -> None:
    rng = np.random.default_rng(12)
    m, true = sample_dijet((1.0, 6.0, 3.0), 1.5, 7.0, 300_000, rng)
    fit = fit_sidebands(m, *SR, (1.5, 7.0), n_parameters=3)
    assert fit.n_parameters == 3 and fit.params[3] == 0.0
    assert np.all(fit.covariance[3] == 0) and np.all(fit.covariance[:, 3] == 0)
    errors = np.sqrt(np.diag(fit.covariance))[:3]
    assert np.all(np.abs(fit.params[:3] - true[:3]) < 4 * errors)
    assert errors[1] < 0.15 and errors[2] < 0.04  # p1, p2 well measured with 3 parameters


def test_blinded_prediction_pulls_over_toys() -> None:
    """50 Poisson toys of ~20k events on [2.5, 5] TeV: pull of the SR count is N(0, 1).

    With 50 toys the mean pull has a standard error of 0.14 and the standard deviation one
    of 0.10: tolerances of ~3 standard errors.  The error of the prediction (~40 events) must
    match the toy-to-toy spread of the predictions (standard error ~10 %).
    """
    rng = np.random.default_rng(13)
    pulls, preds, errs = [], [], []
    for _ in range(50):
        m, true = sample_dijet(TRUE4, 2.5, 5.0, 20_000, rng)
        fit = fit_sidebands(m, *SR, (2.5, 5.0))
        n_sr = np.count_nonzero((m >= SR[0]) & (m < SR[1]))
        pred, err = fit.integral(*SR), fit.integral_error(*SR)
        pulls.append((n_sr - pred) / math.sqrt(pred + err**2))
        preds.append(pred)
        errs.append(err)
    exact = SidebandFit(true, np.zeros((4, 4)), 4, 0.0, 1, 1.0, *SR, 13.0).integral(*SR)
    assert abs(np.mean(pulls)) < 0.45
    assert 0.7 < np.std(pulls) < 1.35
    assert abs(np.mean(preds) - exact) < 3 * np.mean(errs) / math.sqrt(50)
    assert 0.7 < np.std(preds) / np.mean(errs) < 1.35


def test_fit_on_reference_dijet_simulation() -> None:
    from hepgen.sim.dijet import DijetSimulation

    m = np.asarray(DijetSimulation().generate(200_000, seed=21)["mjj"], dtype=np.float64)
    fit = fit_sidebands(m, *SR, (2.5, 5.0))
    assert fit.pvalue > 0.01, (fit.chi2, fit.ndf)
    n_sr = np.count_nonzero((m >= SR[0]) & (m < SR[1]))
    pred, err = fit.integral(*SR), fit.integral_error(*SR)
    assert abs(n_sr - pred) < 3 * math.hypot(err, math.sqrt(n_sr))
    # the simulation's mjj is the 3-parameter form with p1 = 6, p2 = 3 (sqrt_s = 13)
    fit3 = fit_sidebands(m, *SR, (2.5, 5.0), n_parameters=3)
    err3 = np.sqrt(np.diag(fit3.covariance))
    assert abs(fit3.params[1] - 6.0) < 4 * err3[1] and abs(fit3.params[2] - 3.0) < 4 * err3[2]
    # JSON round trip with plain types
    d = json.loads(json.dumps(fit.to_dict(), allow_nan=False))
    assert d["n_parameters"] == 4 and len(d["params"]) == 4 and len(d["covariance"]) == 4
    assert d["lo"] == SR[0] and d["fit_range"] == [2.5, 5.0]


def test_bins_end_on_the_signal_region_and_straddling_bins_are_dropped() -> None:
    rng = np.random.default_rng(14)
    m, _ = sample_dijet(TRUE4, 2.5, 5.0, 50_000, rng)
    lo, hi = 3.33, 3.71
    fit = fit_sidebands(m, lo, hi, (2.5, 5.0), bins=50)
    edges = fit.bin_edges
    assert lo in edges[:, 1] and hi in edges[:, 0]
    assert edges[0, 0] == 2.5 and edges[-1, 1] == 5.0
    assert np.all((edges[:, 1] <= lo) | (edges[:, 0] >= hi))
    # every sideband event is in a bin (the last bin includes its upper edge)
    assert fit.observed.sum() == np.count_nonzero((m >= 2.5) & (m < lo) | (m >= hi) & (m <= 5))
    # explicit edges every 0.1 TeV: [3.3, 3.4) and [3.7, 3.8) straddle the SR and are dropped
    fixed = fit_sidebands(m, lo, hi, (2.5, 5.0), bins=np.linspace(2.0, 5.5, 36))
    kept = fixed.bin_edges
    assert np.all((kept[:, 1] <= lo + 1e-12) | (kept[:, 0] >= hi - 1e-12))
    assert kept[:, 0].min() >= 2.5 - 1e-12 and kept[:, 1].max() <= 5.0 + 1e-12
    assert len(kept) == 25 - 2 - 3  # 25 bins in [2.5, 5], 3 inside the SR, 2 straddling it
    n_sr = np.count_nonzero((m >= lo) & (m < hi))
    for f in (fit, fixed):
        pred, err = f.integral(lo, hi), f.integral_error(lo, hi)
        assert abs(n_sr - pred) < 3 * math.hypot(err, math.sqrt(pred))


def test_integral_error_matches_sampling_of_the_covariance() -> None:
    rng = np.random.default_rng(15)
    m, _ = sample_dijet(TRUE4, 2.5, 5.0, 20_000, rng)
    fit = fit_sidebands(m, *SR, (2.5, 5.0))
    theta, cov = log_space(fit.params, fit.covariance)
    draws = rng.multivariate_normal(theta, cov, size=2000)
    values = []
    for t in draws:
        p = t.copy()
        p[0] = np.exp(p[0])
        values.append(SidebandFit(p, cov, 4, 0, 1, 1.0, *SR, 13.0).integral(*SR))
    assert fit.integral_error(*SR) == pytest.approx(np.std(values), rel=0.1)
    # integral agrees with a fine trapezoid of the density
    grid = np.linspace(*SR, 20001)
    assert fit.integral(*SR) == pytest.approx(
        integrate.trapezoid(fit.density(grid), grid), rel=1e-7
    )
    assert fit.integral(3.5, 3.5) == 0.0
    with pytest.raises(InputError, match=r"4\.0 TeV is below the lower limit 4\.5"):
        fit.integral(4.5, 4.0)


def test_weighted_fit_scales_with_the_weights() -> None:
    rng = np.random.default_rng(16)
    m, _ = sample_dijet(TRUE4, 2.5, 5.0, 20_000, rng)
    plain = fit_sidebands(m, *SR, (2.5, 5.0))
    doubled = fit_sidebands(m, *SR, (2.5, 5.0), weights=np.full(m.size, 2.0))
    assert doubled.params[0] == pytest.approx(2 * plain.params[0], rel=1e-5)
    np.testing.assert_allclose(doubled.params[1:], plain.params[1:], rtol=1e-5, atol=1e-8)
    # the precision is that of the number of events, not of the sum of weights
    assert doubled.integral(*SR) == pytest.approx(2 * plain.integral(*SR), rel=1e-5)
    assert doubled.integral_error(*SR) == pytest.approx(2 * plain.integral_error(*SR), rel=0.02)
    assert doubled.chi2 == pytest.approx(plain.chi2, rel=0.02)


def test_fallback_to_three_parameters(monkeypatch: pytest.MonkeyPatch) -> None:
    original = PoissonModel.fit

    def failing(self):
        c, h, ok, why = original(self)
        return (c, h, False, "forced failure") if self.k == 4 else (c, h, ok, why)

    monkeypatch.setattr(PoissonModel, "fit", failing)
    rng = np.random.default_rng(17)
    m, _ = sample_dijet(TRUE4, 2.5, 5.0, 20_000, rng)
    fit = fit_sidebands(m, *SR, (2.5, 5.0))
    assert fit.n_parameters == 3 and fit.params[3] == 0.0
    assert "4-parameter fit failed (forced failure)" in fit.note and "3-parameter" in fit.note
    # both forms fail: an error naming the sideband counts
    monkeypatch.setattr(
        PoissonModel, "fit", lambda self: (*original(self)[:2], False, "forced failure")
    )
    n_left = np.count_nonzero((m >= 2.5) & (m < SR[0]))
    with pytest.raises(InputError, match=f"did not converge.*; {n_left} and"):
        fit_sidebands(m, *SR, (2.5, 5.0))


def test_fit_input_errors_name_the_numbers() -> None:
    rng = np.random.default_rng(18)
    m = np.concatenate(
        [rng.uniform(2.5, 3.3, 7), rng.uniform(3.3, 3.7, 100), rng.uniform(3.7, 5.0, 5)]
    )
    with pytest.raises(InputError) as err:
        fit_sidebands(m, *SR, (2.5, 5.0))
    msg = str(err.value)
    assert "7 events in the lower sideband" in msg and "5 in the upper sideband" in msg
    assert "12 in all" in msg and str(MIN_SIDEBAND_EVENTS) in msg
    m = rng.uniform(2.5, 5.0, 1000)
    with pytest.raises(
        InputError,
        match=r"signal region \[2.0, 3.0\] TeV must lie inside the "
        r"fit range \[2.5, 5.0\]",
    ):
        fit_sidebands(m, 2.0, 3.0, (2.5, 5.0))
    with pytest.raises(InputError, match=r"\[3.7, 3.3\].*lo < hi"):
        fit_sidebands(m, 3.7, 3.3, (2.5, 5.0))
    with pytest.raises(InputError, match=r"sqrt_s = 13\.0"):
        fit_sidebands(m, *SR, (2.5, 14.0))
    with pytest.raises(InputError, match="n_parameters: expected 3 or 4, got 5"):
        fit_sidebands(m, *SR, (2.5, 5.0), n_parameters=5)
    with pytest.raises(InputError, match="1 of 1001 values are NaN"):
        fit_sidebands(np.append(m, np.nan), *SR, (2.5, 5.0))
    with pytest.raises(InputError, match="weights have shape"):
        fit_sidebands(m, *SR, (2.5, 5.0), weights=np.ones(3))
    with pytest.raises(InputError, match=r"2 bins outside.*at least 5"):
        fit_sidebands(m, *SR, (2.5, 5.0), bins=np.array([2.5, 3.3, 3.7, 5.0]))


# ------------------------------------------------------------------------------ significance


@pytest.mark.parametrize("b", [50.0, 500.0])
def test_significance_is_standard_normal_under_background(b: float) -> None:
    """Z of n ~ Pois(b): the exact moments (sum over the pmf) are mean -0.024 / -0.007 and
    standard deviation 1.0014 / 1.0001 for b = 50 / 500; 20000 toys add standard errors of
    0.007 (mean) and 0.005 (std), hence tolerances of 0.05 and 0.03."""
    rng = np.random.default_rng(int(b))
    z = significances(rng.poisson(b, 20_000), b)
    assert abs(z.mean()) < 0.05
    assert abs(z.std() - 1.0) < 0.03
    n = np.arange(0, int(b + 15 * math.sqrt(b)))
    p = stats.poisson.pmf(n, b)
    zn = significances(n, b)
    assert abs(p @ zn) < 0.03 and abs(math.sqrt(p @ zn**2) - 1.0) < 0.003


def test_significance_values_power_and_background_uncertainty() -> None:
    assert significance(100, 100) == 0.0
    assert significance(150, 100) == pytest.approx(math.sqrt(2 * (150 * math.log(1.5) - 50)))
    assert significance(0, 50) == pytest.approx(-10.0)  # -sqrt(2 b)
    assert significance(50, 100) < 0
    # sigma_b -> 0 is continuous; at n = 0 the formula is b^2/s^2 ln(1 + s^2 / b)
    assert significance(150, 100, 1e-4) == pytest.approx(significance(150, 100), rel=1e-6)
    assert significance(0, 50, 5.0) == pytest.approx(
        -math.sqrt(2 * 50**2 / 25 * math.log1p(25 / 50)), rel=1e-12
    )
    for b in (50.0, 500.0, 1e6):
        n = b + 5 * math.sqrt(b)
        assert significance(n, b) == pytest.approx(5.0, abs=0.5)
        assert significance(n, b, 0.1 * math.sqrt(b)) < significance(n, b)
        assert significance(n, b, 0.5 * math.sqrt(b)) < significance(n, b, 0.1 * math.sqrt(b))
    assert significance(1e6 + 5e3, 1e6) == pytest.approx(5.0, abs=0.01)
    # Z with sigma_b approaches s / sqrt(b + sigma_b^2) for large b
    assert significance(1e6 + 5e3, 1e6, 1e3) == pytest.approx(5e3 / math.sqrt(2e6), rel=0.01)
    n = np.arange(0, 301)
    for sigma in (0.0, 10.0):
        z = significances(n, 100.0, sigma)
        assert np.all(np.diff(z) > 0)
    # broadcasting
    assert significances([[10], [20]], [5.0, 10.0, 20.0]).shape == (2, 3)


def test_poisson_pvalue_and_significance_errors() -> None:
    assert poisson_pvalue(0, 3.0) == 1.0
    assert poisson_pvalue(5, 3.0) == pytest.approx(1 - stats.poisson.cdf(4, 3.0), rel=1e-12)
    # the non-integer extension lies between the neighbouring integers
    assert poisson_pvalue(6, 3.0) < poisson_pvalue(5.5, 3.0) < poisson_pvalue(5, 3.0)
    # Z and the Poisson tail agree for large counts
    assert stats.norm.isf(poisson_pvalue(550, 500.0)) == pytest.approx(
        significance(550, 500.0), abs=0.05
    )
    with pytest.raises(
        InputError,
        match=r"n_expected must be finite and > 0; 1 of 1 values"
        r" are not \(first: 0.0\)",
    ):
        significance(5, 0.0)
    with pytest.raises(InputError, match=r"n_observed.*first: -1\.0"):
        significance(-1, 5.0)
    with pytest.raises(InputError, match=r"sigma_expected.*first: -2\.0"):
        significance(1, 5.0, -2.0)
    with pytest.raises(InputError, match="n_expected must be finite and > 0, got -3"):
        poisson_pvalue(2, -3)


# ------------------------------------------------------------------------------ thresholds


def test_threshold_at_efficiency_unweighted_and_weighted() -> None:
    rng = np.random.default_rng(30)
    x = rng.normal(size=50_000)
    for eff in (0.5, 0.1, 0.01, 0.001):
        t = threshold_at_efficiency(x, eff)
        assert np.mean(x > t) == pytest.approx(eff, abs=1.0 / x.size)
        # standard error of a sample quantile: sqrt(eff (1 - eff) / n) / pdf(t)
        q = stats.norm.isf(eff)
        se = math.sqrt(eff * (1 - eff) / x.size) / stats.norm.pdf(q)
        assert t == pytest.approx(q, abs=4 * se)
    # weights w = exp(mu x - mu^2 / 2) turn N(0, 1) into N(mu, 1)
    mu = 0.5
    w = np.exp(mu * x - mu**2 / 2)
    for eff in (0.5, 0.1, 0.01):
        t = threshold_at_efficiency(x, eff, weights=w)
        assert np.sum(w[x > t]) / w.sum() == pytest.approx(eff, abs=w.max() / w.sum())
        assert t == pytest.approx(mu + stats.norm.isf(eff), abs=0.06)
    # integer weights act like repeated events
    k = rng.integers(1, 4, size=2000)
    assert threshold_at_efficiency(
        x[:2000], 0.2, weights=k.astype(float)
    ) == threshold_at_efficiency(np.repeat(x[:2000], k), 0.2)


def test_threshold_ties_and_errors() -> None:
    assert threshold_at_efficiency(np.arange(10.0), 0.3) == 6.5
    # ties are never split: the closest achievable fraction above the cut
    ties = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2], dtype=float)
    assert threshold_at_efficiency(ties, 0.3) == 1.5
    assert threshold_at_efficiency(ties, 0.6) == 0.5  # 70 % pass (30 % is further away)
    for bad in (0.0, 1.0, -0.1, 1.5, math.nan):
        with pytest.raises(InputError, match="efficiency must be in"):
            threshold_at_efficiency(np.arange(10.0), bad)
    with pytest.raises(
        InputError,
        match=r"efficiency 0.001 of 500 events keeps 0.5 < 1 event"
        r".*at least 1000 events",
    ):
        threshold_at_efficiency(np.arange(500.0), 0.001)
    with pytest.raises(InputError, match="all 10 values are equal"):
        threshold_at_efficiency(np.ones(10), 0.5)
    with pytest.raises(InputError, match=r"weights have shape \(3,\), expected \(10,\)"):
        threshold_at_efficiency(np.arange(10.0), 0.5, weights=np.ones(3))


# ------------------------------------------------------------------------------ ROC / SIC


def test_roc_perfect_separation() -> None:
    scores = np.concatenate([np.linspace(0, 1, 1000), np.linspace(2, 3, 500)])
    labels = np.concatenate([np.zeros(1000), np.ones(500)])
    roc = roc_sic(scores, labels)
    assert isinstance(roc, ROC)
    assert roc.auc == 1.0
    # min_fpr = max(1e-4, 20 / 1000) = 0.02: SIC = 1 / sqrt(0.02) at tpr = 1
    assert roc.min_fpr == pytest.approx(0.02)
    assert roc.max_sic == pytest.approx(1 / math.sqrt(0.02))
    assert roc.max_sic_tpr == 1.0 and roc.max_sic_fpr == pytest.approx(0.02)
    assert np.all(np.isnan(roc.sic[roc.fpr < 0.02]))
    # an explicit min_fpr overrides the rule
    assert roc_sic(scores, labels, min_fpr=0.25).max_sic == pytest.approx(2.0)


def test_roc_random_scores() -> None:
    rng = np.random.default_rng(40)
    scores = rng.random(40_000)
    labels = rng.integers(0, 2, size=40_000)
    roc = roc_sic(scores, labels)
    assert roc.auc == pytest.approx(0.5, abs=0.015)  # standard error 0.003
    # SIC = tpr / sqrt(fpr) ~ sqrt(fpr) <= 1 up to fluctuations, maximal near fpr = 1
    assert 0.99 <= roc.max_sic < 1.1
    assert roc.n_background == np.count_nonzero(labels == 0)


def test_roc_gaussian_shift_matches_closed_form() -> None:
    rng = np.random.default_rng(41)
    d, n = 1.0, 50_000
    scores = np.concatenate([rng.normal(size=n), rng.normal(d, size=n)])
    labels = np.repeat([0, 1], n)
    roc = roc_sic(scores, labels)
    assert roc.auc == pytest.approx(stats.norm.cdf(d / math.sqrt(2)), abs=0.006)
    # analytic SIC(t) = Phi(d - t) / sqrt(Phi(-t)), maximised where fpr >= 20 / n = 4e-4
    t = np.linspace(-5, stats.norm.isf(20 / n), 20001)
    best = np.max(stats.norm.sf(t - d) / np.sqrt(stats.norm.sf(t)))
    assert roc.max_sic == pytest.approx(best, rel=0.1)
    assert roc.max_sic_fpr >= roc.min_fpr == pytest.approx(4e-4)
    # weights: integer weights act like repeated events (same ROC, same AUC)
    k = rng.integers(1, 3, size=2 * n)
    rw = roc_sic(scores, labels, weights=k.astype(float), min_fpr=1e-3)
    rr = roc_sic(np.repeat(scores, k), np.repeat(labels, k), min_fpr=1e-3)
    assert rw.auc == pytest.approx(rr.auc, rel=1e-12)
    assert rw.max_sic == pytest.approx(rr.max_sic, rel=1e-12)
    # JSON summary: downsampled, plain types, NaN -> None, maximum kept
    d_ = roc.to_dict(n_points=100)
    text = json.dumps(d_, allow_nan=False)
    assert len(d_["fpr"]) <= 103 and len(d_["fpr"]) > 50
    assert d_["sic"][0] is None and d_["thresholds"][0] is None  # fpr = 0 and inf
    assert max(v for v in d_["sic"] if v is not None) == pytest.approx(roc.max_sic)
    assert '"auc"' in text and d_["fpr"] == sorted(d_["fpr"])


def test_roc_errors_name_the_counts() -> None:
    scores = np.arange(10.0)
    with pytest.raises(InputError, match=r"0 signal \(label 1\) and 10 background"):
        roc_sic(scores, np.zeros(10))
    with pytest.raises(InputError, match=r"10 signal \(label 1\) and 0 background"):
        roc_sic(scores, np.ones(10, dtype=bool))
    with pytest.raises(InputError, match=r"3 of 10 are not \(values \[2.0, 5.0\]\)"):
        roc_sic(scores, np.array([0, 1, 2, 2, 5, 0, 1, 0, 1, 0]))
    with pytest.raises(InputError, match=r"labels have shape \(9,\), expected \(10,\)"):
        roc_sic(scores, np.zeros(9))
    with pytest.raises(InputError, match="1 of 10 values are NaN"):
        roc_sic(np.append(scores[:9], np.nan), np.arange(10) % 2)
