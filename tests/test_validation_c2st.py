"""Tests of the classifier two-sample test (hepgen.validation.c2st).

Calibration checks count rejections at alpha = 0.05 under the null; power checks demand
p < 1e-3 on a characteristic distortion at a stated sample size.  Everything is seeded.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

pytest.importorskip("xgboost")

from sklearn.metrics import roc_auc_score

from hepgen.errors import InputError
from hepgen.validation._auc import RankedScores, bootstrap_ci
from hepgen.validation.c2st import (
    MIN_EVENTS_PER_CLASS,
    C2STResult,
    classifier_test,
    delong_auc,
)

# Small, fast classifier settings for the many-repetition checks (~10 ms per fit).  One
# thread: tiny fits gain nothing from more, and OpenMP threads on a busy machine
# (oversubscribed cores) make each boosting round wait on barriers, 10-50x slower.
FAST = {
    "n_estimators": 50,
    "early_stopping_rounds": 5,
    "max_depth": 3,
    "device": "cpu",
    "n_jobs": 1,
}


def mixed_sample(rng: np.random.Generator, n: int) -> np.ndarray:
    """d=3: a continuous, an integer (Poisson) and a bounded (Beta on [0, 1]) feature."""
    return np.column_stack([rng.normal(size=n), rng.poisson(3.0, n), rng.beta(2.0, 5.0, n)])


def null_sd(n0: int, n1: int) -> float:
    return math.sqrt((n0 + n1 + 1) / (12.0 * n0 * n1))


# --------------------------------------------------------------------------------------------
# AUC statistics
# --------------------------------------------------------------------------------------------


def test_delong_equals_bruteforce_structural_components():
    rng = np.random.default_rng(3)
    pos = rng.integers(0, 6, 23).astype(float)  # integer scores: many ties
    neg = rng.integers(0, 5, 17).astype(float)
    auc, var = delong_auc(pos, neg)
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10 = psi.mean(axis=1)  # per positive: fraction of negatives below (ties 1/2)
    v01 = psi.mean(axis=0)  # per negative: fraction of positives above (ties 1/2)
    brute = v10.var(ddof=1) / pos.size + v01.var(ddof=1) / neg.size
    assert auc == pytest.approx(psi.mean(), abs=1e-12)
    assert auc == pytest.approx(
        roc_auc_score(np.r_[np.ones(23), np.zeros(17)], np.r_[pos, neg]), abs=1e-12
    )
    assert var == pytest.approx(brute, rel=1e-10)
    assert var > 0


def test_delong_degenerate_and_bad_input():
    assert delong_auc([1.0, 1.0, 1.0], [1.0, 1.0]) == (0.5, 0.0)
    with pytest.raises(InputError, match="at least 2"):
        delong_auc([1.0], [0.0, 1.0])


def test_weighted_auc_helper_matches_sklearn_and_signed_bruteforce():
    rng = np.random.default_rng(4)
    scores = rng.integers(0, 30, 400).astype(float)
    labels = rng.integers(0, 2, 400)
    ranked = RankedScores(scores, labels)
    w = rng.uniform(0.1, 3.0, 400)
    assert ranked.auc(w) == pytest.approx(roc_auc_score(labels, scores, sample_weight=w), 1e-12)
    signed = rng.normal(1.0, 1.0, 400)  # sWeights: some negative; sklearn refuses these
    p, n = labels == 1, labels == 0
    psi = (scores[p][:, None] > scores[n][None, :]) + 0.5 * (
        scores[p][:, None] == scores[n][None, :]
    )
    brute = signed[p] @ psi @ signed[n] / (signed[p].sum() * signed[n].sum())
    assert ranked.auc(signed) == pytest.approx(brute, rel=1e-10)


def test_delong_interval_covers_known_auc():
    """200 replicas of two unit Gaussians 0.5 sigma apart, 200 scores each: the AUC is
    Phi(0.5 / sqrt 2) = 0.638; the 68% DeLong interval must cover it in 55-80% of replicas."""
    rng = np.random.default_rng(11)
    true_auc = stats.norm.cdf(0.5 / math.sqrt(2.0))
    hits = 0
    for _ in range(200):
        auc, var = delong_auc(rng.normal(size=200) + 0.5, rng.normal(size=200))
        hits += abs(auc - true_auc) <= stats.norm.ppf(0.84) * math.sqrt(var)
    assert 0.55 <= hits / 200 <= 0.80


@pytest.mark.parametrize("weighted", [False, True])
def test_bootstrap_interval_covers_known_auc(weighted):
    """100 replicas, 300 scores per class (weights independent of the scores when weighted,
    so the weighted AUC is still Phi(0.5 / sqrt 2)); 68% percentile-bootstrap coverage in
    55-80%."""
    rng = np.random.default_rng(12 + weighted)
    true_auc = stats.norm.cdf(0.5 / math.sqrt(2.0))
    labels = np.r_[np.ones(300, dtype=int), np.zeros(300, dtype=int)]
    hits = 0
    for _ in range(100):
        scores = np.r_[rng.normal(size=300) + 0.5, rng.normal(size=300)]
        w = rng.uniform(0.2, 1.8, 600) if weighted else np.ones(600)
        lo, hi = bootstrap_ci(RankedScores(scores, labels), w, labels, 0.68, rng)
        hits += lo <= true_auc <= hi
    assert 0.55 <= hits / 100 <= 0.80


# --------------------------------------------------------------------------------------------
# Calibration under the null
# --------------------------------------------------------------------------------------------


def test_null_calibration_unweighted():
    """400 repetitions, 300 vs 300 events, d=3 (continuous, integer, bounded), fast settings.

    Rejection rate at alpha=0.05 in [0.02, 0.09]; the held-out AUC (150 vs 150 events) has
    mean 0.5 and standard deviation sqrt((n0+n1+1)/(12 n0 n1)) = 0.0334 within 30%; the 68%
    DeLong interval covers 0.5 (the AUC of any classifier under the null) in 55-80% of them.
    Measured: rate 0.06, sd 0.033.
    """
    rng = np.random.default_rng(2024)
    pvalues, aucs, covered = [], [], 0
    for rep in range(400):
        res = classifier_test(mixed_sample(rng, 300), mixed_sample(rng, 300), seed=rep, **FAST)
        assert res.n_test == 300 and res.n_train == 300
        pvalues.append(res.pvalue)
        aucs.append(res.auc)
        covered += res.auc_ci[0] <= 0.5 <= res.auc_ci[1]
    rate = np.mean(np.array(pvalues) < 0.05)
    assert 0.02 <= rate <= 0.09
    assert abs(np.mean(aucs) - 0.5) < 0.01
    assert np.std(aucs, ddof=1) == pytest.approx(null_sd(150, 150), rel=0.3)
    assert 0.55 <= covered / 400 <= 0.80


def test_null_calibration_weighted():
    """200 repetitions of an importance-weighted null, 300 vs 300 events, fast settings.

    The reference's continuous feature is drawn from N(0.3, 1) and weighted by the density
    ratio N(0, 1) / N(0.3, 1), so its weighted distribution equals the candidate's.  Rejection
    rate at alpha=0.05 (normal approximation with Kish effective sizes) in [0.02, 0.09];
    bootstrap 68% interval covers 0.5 in 55-80%.  Measured: rate 0.05.
    """
    rng = np.random.default_rng(77)
    rejected, covered = 0, 0
    for rep in range(200):
        ref = mixed_sample(rng, 300)
        ref[:, 0] += 0.3
        w = np.exp(-0.3 * ref[:, 0] + 0.045)
        res = classifier_test(ref, mixed_sample(rng, 300), reference_weights=w, seed=rep, **FAST)
        rejected += res.pvalue < 0.05
        covered += res.auc_ci[0] <= 0.5 <= res.auc_ci[1]
    assert 0.02 <= rejected / 200 <= 0.09
    assert 0.55 <= covered / 200 <= 0.80


@pytest.mark.slow
def test_null_calibration_default_settings():
    """500 repetitions, 2000 vs 2000 events, d=3, default classifier settings (up to 1000
    rounds, eta 0.05, depth 3, early stopping 50).  Rate in the binomial 99.9% range for 500
    trials at 0.05, [0.022, 0.084]; AUC sd within 20% of the theory (1000 vs 1000 held out).
    Measured: 0.036, AUC sd 0.0113 against 0.0129 (the old defaults eta 0.1, depth 6,
    patience 20 gave 0.028 here and 0.065 over 800 other repetitions); ~10-20 s."""
    rng = np.random.default_rng(5)
    pvalues, aucs = [], []
    for rep in range(500):
        res = classifier_test(
            mixed_sample(rng, 2000), mixed_sample(rng, 2000), seed=rep, device="cpu", n_jobs=1
        )
        pvalues.append(res.pvalue)
        aucs.append(res.auc)
    assert 0.022 <= np.mean(np.array(pvalues) < 0.05) <= 0.084
    assert np.std(aucs, ddof=1) == pytest.approx(null_sd(1000, 1000), rel=0.2)


# --------------------------------------------------------------------------------------------
# Power
# --------------------------------------------------------------------------------------------


def test_power_correlation_with_identical_marginals():
    """2-D Gaussians, correlation 0 vs 0.3, 10000 events per class: p < 1e-3 (measured
    ~1e-26, AUC 0.56) although every marginal is the same N(0, 1)."""
    rng = np.random.default_rng(8)
    ref = rng.normal(size=(10_000, 2))
    cand = rng.multivariate_normal([0.0, 0.0], [[1.0, 0.3], [0.3, 1.0]], size=10_000)
    res = classifier_test(ref, cand, seed=1, device="cpu", n_jobs=1)
    assert res.pvalue < 1e-3
    assert res.auc > 0.53
    assert res.auc_ci[0] < res.auc < res.auc_ci[1]


def test_power_small_mean_shift():
    """A 0.1 sigma mean shift in one Gaussian feature, 50000 events per class (1e5 in all):
    p < 1e-3 (measured < 1e-11 over 20 seeds); AUC near Phi(0.1/sqrt 2) = 0.528."""
    rng = np.random.default_rng(9)
    ref = rng.normal(size=50_000)
    cand = rng.normal(size=50_000) + 0.1
    res = classifier_test(ref, cand, seed=2, device="cpu", n_jobs=1)
    assert res.pvalue < 1e-3
    assert 0.515 < res.auc < 0.535
    assert res.n_test == 50_000 and res.n_train == 50_000


def test_importances_rank_the_distorted_feature_first():
    """4 features, only 'c' distorted (width x1.25), 10000 events per class."""
    rng = np.random.default_rng(10)
    ref = rng.normal(size=(10_000, 4))
    cand = rng.normal(size=(10_000, 4))
    cand[:, 2] *= 1.25
    res = classifier_test(
        ref, cand, feature_names=["a", "b", "c", "d"], seed=3, device="cpu", n_jobs=1
    )
    assert res.pvalue < 1e-3
    assert next(iter(res.importances)) == "c"
    assert res.importances["c"] > 0.3
    values = list(res.importances.values())
    assert values == sorted(values, reverse=True)
    assert sum(values) == pytest.approx(1.0)


# --------------------------------------------------------------------------------------------
# Repeats, weights, reporting
# --------------------------------------------------------------------------------------------


def test_repeats_combine_as_documented():
    rng = np.random.default_rng(12)
    ref = rng.normal(size=(600, 2))
    cand = rng.normal(size=(600, 2)) + np.array([0.0, 0.15])
    res = classifier_test(ref, cand, n_repeats=3, seed=4, **FAST)
    assert len(res.aucs) == 3 and len(res.pvalues) == 3
    assert len(set(res.aucs)) == 3  # different splits and models
    assert res.auc == pytest.approx(np.mean(res.aucs))
    assert res.auc_std == pytest.approx(np.std(res.aucs, ddof=1))
    assert res.pvalue == pytest.approx(min(1.0, 2.0 * np.median(res.pvalues)))
    assert "3 repeats" in res.method
    single = classifier_test(ref, cand, seed=4, **FAST)
    assert math.isnan(single.auc_std) and single.to_dict()["auc_std"] is None


def test_weighted_with_negative_weights_runs_and_serialises():
    rng = np.random.default_rng(13)
    ref = rng.normal(size=(800, 3))
    cand = rng.normal(size=(500, 3))
    w = rng.normal(1.0, 0.8, 800)  # sWeight-like: ~10% negative
    assert (w < 0).any()
    res = classifier_test(ref, cand, reference_weights=w, n_repeats=2, seed=5, **FAST)
    assert isinstance(res, C2STResult)
    assert 0.35 < res.auc < 0.65 and res.pvalue > 1e-3
    assert res.n_train + res.n_test == 1300  # weighted: no subsampling to balance
    assert any("negative weights" in note for note in res.notes)
    assert any("bootstrap" in note for note in res.notes)
    d = res.to_dict()
    text = json.dumps(d, allow_nan=False)
    assert json.loads(text)["auc"] == pytest.approx(res.auc)
    assert len(d["fpr"]) == len(d["tpr"]) <= 200
    assert "fpr" not in res.to_dict(arrays=False)


def test_balancing_subsample_roc_and_reproducibility():
    rng = np.random.default_rng(14)
    ref = rng.normal(size=(3000, 2))
    cand = rng.normal(size=(1000, 2)) + 0.5
    ref[:, 1] = cand[:, 1] = 7.0  # a constant feature is fine: never split on
    res = classifier_test(ref, cand, seed=6, **FAST)
    assert res.n_train + res.n_test == 2000
    assert res.n_test == 1000
    assert any("reference: 3000 events, subsampled to 1000" in n for n in res.notes)
    assert res.pvalue < 1e-3
    assert res.importances == {"x0": pytest.approx(1.0), "x1": 0.0}
    fpr, tpr = res.fpr, res.tpr
    assert 2 <= fpr.size <= 200 and fpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == 1
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    again = classifier_test(ref, cand, seed=6, **FAST)
    assert again.auc == res.auc and again.pvalue == res.pvalue
    capped = classifier_test(ref, cand, max_events=400, seed=6, **FAST)
    assert capped.n_train + capped.n_test == 800
    assert any("max_events" in n for n in capped.notes)


def test_identical_constant_samples_give_no_evidence():
    res = classifier_test(np.zeros((100, 2)), np.zeros((100, 2)), seed=0, **FAST)
    assert res.auc == 0.5 and res.pvalue == 1.0
    assert any("no split" in n for n in res.notes)


def test_large_roc_curve_is_thinned():
    rng = np.random.default_rng(15)
    res = classifier_test(
        rng.normal(size=(5000, 3)), rng.normal(size=(5000, 3)) + 0.3, seed=1, device="cpu"
    )
    assert 50 <= res.fpr.size <= 200
    assert res.fpr[0] == 0 and res.tpr[-1] == 1
    assert res.best_iteration >= 1


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------


def test_bad_inputs_name_the_sample():
    rng = np.random.default_rng(16)
    ref, cand = rng.normal(size=(100, 3)), rng.normal(size=(100, 3))
    with pytest.raises(InputError, match=r"candidate has shape \(100, 2\).*reference .*\(100, 3\)"):
        classifier_test(ref, cand[:, :2], **FAST)
    with pytest.raises(InputError, match="reference: no events"):
        classifier_test(np.empty((0, 3)), cand, **FAST)
    bad = cand.copy()
    bad[5, 1] = np.nan
    with pytest.raises(InputError, match="candidate: 1 of 100 events have NaN"):
        classifier_test(ref, bad, **FAST)
    with pytest.raises(InputError, match=f"candidate: 12 events.*at least {MIN_EVENTS_PER_CLASS}"):
        classifier_test(ref, cand[:12], **FAST)
    with pytest.raises(InputError, match="reference: weights have shape"):
        classifier_test(ref, cand, reference_weights=np.ones(99), **FAST)
    with pytest.raises(InputError, match="feature_names: 2 names for 3"):
        classifier_test(ref, cand, feature_names=["a", "b"], **FAST)
    with pytest.raises(InputError, match="test_fraction"):
        classifier_test(ref, cand, test_fraction=1.0, **FAST)
    with pytest.raises(InputError, match="ci="):
        classifier_test(ref, cand, ci="wald", **FAST)
    with pytest.raises(InputError, match="too few"):
        classifier_test(ref[:20], cand[:20], test_fraction=0.95, **FAST)
