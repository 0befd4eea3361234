"""PRD curves (Sajjadi et al. 2018): permutation calibration, power on a dropped mode (recall
drops, precision does not), weights, bad input, reproducibility."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hepgen.errors import InputError
from hepgen.validation.prd import PRDResult, prd_curve

MEANS = np.array(
    [
        [0.0, 0.0, 0.0, 0.0, 0.0],
        [4.0, 0.0, 0.0, 0.0, 0.0],
        [0.0, 4.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 4.0, 4.0, 0.0],
    ]
)
SCALES = np.array([10.0, 1.0, 0.1, 3.0, 50.0])  # physical units of very different sizes


def mixture(rng, n, probs=(0.25, 0.25, 0.25, 0.25)):
    comp = rng.choice(4, n, p=np.asarray(probs) / np.sum(probs))
    return (MEANS[comp] + rng.normal(size=(n, 5))) * SCALES, comp


# Small settings keep the repetitions fast; the permutation test is exact for any settings.
FAST = {"n_clusters": 10, "n_runs": 3, "n_permutations": 99}


def _null_pvalues(reps, weighted=False, n=1000):
    out = []
    q = np.array([0.4, 0.3, 0.2, 0.1])
    for i in range(reps):
        rng = np.random.default_rng(9000 + i)
        if weighted:  # importance-weighted reference, equal in distribution to the candidate
            x, comp = mixture(rng, 3 * n, q)
            w = 0.25 / q[comp]
        else:
            x, w = mixture(rng, n)[0], None
        y = mixture(rng, n)[0]
        out.append(prd_curve(x, y, w, seed=i, **FAST).pvalue)
    return np.array(out)


def test_null_rejection_rate_default_suite():
    # 60 reference-vs-reference repetitions at alpha 0.05 with 99 permutations (P(p <= 0.05)
    # = 5/100 exactly): rejections are Binomial(60, 0.05), mean 3, P(X >= 9) = 0.002, so the
    # band is <= 8.
    p = _null_pvalues(60)
    assert np.count_nonzero(p <= 0.05) <= 8


@pytest.mark.slow
@pytest.mark.parametrize("weighted", [False, True])
def test_null_rejection_rate_300(weighted):
    rate = np.mean(_null_pvalues(300, weighted=weighted) <= 0.05)
    assert 0.02 <= rate <= 0.09


def test_weighted_null_passes_default_suite():
    # 30 repetitions with an importance-weighted reference (unweighted by accept-reject):
    # Binomial(30, 0.05), mean 1.5, P(X >= 6) = 0.008, so the band is <= 5.
    p = _null_pvalues(30, weighted=True)
    assert np.count_nonzero(p <= 0.05) <= 5


def test_dropped_mode_recall_drops_precision_does_not():
    # 2000 vs 2000 rows in 5 features, paper defaults (K = 20, 10 runs, 1001 angles) and
    # 2000 permutations (p-value floor 1/2001): the candidate lacks one of four components.
    rng = np.random.default_rng(1)
    x = mixture(rng, 2000)[0]
    y = mixture(rng, 2000, probs=(1, 1, 1, 0))[0]
    res = prd_curve(x, y, n_permutations=2000, seed=2)
    assert res.pvalue < 1e-3
    assert res.f_8 < 0.85 and res.f_1_8 > 0.95
    assert res.recall.max() < 0.85  # a quarter of the reference is never reached
    assert res.precision.max() > 0.95
    # The reference-vs-reference curve at the same size reaches (1, 1) closely.
    base = prd_curve(x, mixture(rng, 2000)[0], n_permutations=0, seed=2)
    assert base.f_8 > 0.95 and base.f_1_8 > 0.95 and base.pvalue is None


def test_added_mode_precision_drops_recall_does_not():
    rng = np.random.default_rng(3)
    x = mixture(rng, 2000, probs=(1, 1, 1, 0))[0]
    y = mixture(rng, 2000)[0]
    res = prd_curve(x, y, n_permutations=999, seed=0)
    assert res.pvalue < 0.01
    assert res.f_1_8 < 0.85 and res.f_8 > 0.95


def test_curve_shapes_and_to_dict():
    rng = np.random.default_rng(4)
    res = prd_curve(mixture(rng, 500)[0], mixture(rng, 400)[0], n_angles=21, seed=0, **{
        "n_clusters": 5, "n_runs": 2, "n_permutations": 19})  # fmt: skip
    assert isinstance(res, PRDResult)
    assert res.precision.shape == res.recall.shape == (21,)
    assert np.all((res.precision >= 0) & (res.precision <= 1))
    assert np.all(np.diff(res.precision) >= -1e-12)  # precision grows with the slope
    assert res.statistic == pytest.approx(1 - min(res.f_8, res.f_1_8))
    assert (res.n_reference, res.n_candidate, res.n_angles) == (500, 400, 21)
    d = res.to_dict()
    json.dumps(d)
    assert set(d) == {
        "precision", "recall", "f_8", "f_1_8", "statistic", "pvalue", "n_permutations",
        "n_clusters", "n_runs", "n_angles", "n_reference", "n_candidate", "note",
    }  # fmt: skip
    assert "precision" not in res.to_dict(arrays=False)
    assert res.pvalue >= 1 / 20


def test_max_events_subsamples_and_says_so():
    rng = np.random.default_rng(5)
    res = prd_curve(mixture(rng, 3000)[0], mixture(rng, 1000)[0], max_events=800, seed=0, **FAST)
    assert (res.n_reference, res.n_candidate) == (800, 800)
    assert "reference subsampled to 800" in res.note


def test_negative_weights_are_counted_as_zero_and_said():
    rng = np.random.default_rng(6)
    x, y = mixture(rng, 1200)[0], mixture(rng, 1000)[0]
    w = np.ones(1200)
    w[:100] = -0.5
    res = prd_curve(x, y, w, seed=0, **FAST)
    assert "unweighted by accept-reject" in res.note
    assert "100 negative weights treated as 0" in res.note
    assert res.n_reference == 1100


def test_same_seed_same_result_and_seed_matters():
    rng = np.random.default_rng(7)
    x, y = mixture(rng, 800)[0], mixture(rng, 800)[0]
    a = prd_curve(x, y, seed=3, **FAST).to_dict()
    assert a == prd_curve(x, y, seed=3, **FAST).to_dict()
    assert a != prd_curve(x, y, seed=4, **FAST).to_dict()


def test_device_is_accepted():
    rng = np.random.default_rng(8)
    x, y = mixture(rng, 300)[0], mixture(rng, 300)[0]
    a = prd_curve(x, y, device="cpu", seed=0, **FAST).to_dict()
    assert a == prd_curve(x, y, device="auto", seed=0, **FAST).to_dict()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"candidate": np.zeros((50, 3))}, "candidate: has 3 features"),
        ({"reference_weights": np.ones(10)}, "reference"),
        ({"candidate_weights": -np.ones(200)}, "candidate: weights sum"),
        ({"n_clusters": 1}, "n_clusters"),
        ({"n_runs": 0}, "n_runs"),
        ({"n_angles": 2}, "n_angles"),
        ({"n_permutations": -1}, "n_permutations"),
        ({"n_permutations": 9.5}, "n_permutations"),
        ({"max_events": 1}, "max_events"),
        ({"feature_names": ["a"]}, "feature_names: 1 names for 5"),
        ({"n_clusters": 500}, "reference: 200 rows .*n_clusters=500 needs at least 500"),
    ],
)
def test_bad_input_raises(kwargs, match):
    rng = np.random.default_rng(0)
    args = {"reference": mixture(rng, 200)[0], "candidate": mixture(rng, 200)[0]}
    args.update(kwargs)
    ref, cand = args.pop("reference"), args.pop("candidate")
    with pytest.raises(InputError, match=match):
        prd_curve(ref, cand, **args)


def test_nan_input_raises():
    y = np.zeros((100, 2))
    y[5, 0] = np.inf
    with pytest.raises(InputError, match="candidate: 1 of 100 events have NaN or infinite"):
        prd_curve(np.zeros((100, 2)), y)
