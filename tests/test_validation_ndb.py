"""NDB (Richardson & Weiss 2018): calibration, power on a dropped mode, centroids in physical
units, weights, bad input, reproducibility."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hepgen.errors import InputError
from hepgen.validation.ndb import NDBResult, ndb_test

NAMES = ["pt", "eta", "mass", "btag"]
# Four components in physical units (GeV, dimensionless, GeV, dimensionless) with very
# different scales per feature, so that a centroid wrongly left in standardised units fails.
MEANS = np.array(
    [
        [40.0, 0.0, 10.0, 0.1],
        [120.0, 0.0, 10.0, 0.1],
        [40.0, 2.0, 10.0, 0.1],
        [60.0, -1.0, 30.0, 0.9],  # the "b-jet-like" component that gets dropped
    ]
)
SCALES = np.array([8.0, 0.3, 2.0, 0.05])


def mixture(rng, n, probs=(0.25, 0.25, 0.25, 0.25)):
    comp = rng.choice(4, n, p=np.asarray(probs) / np.sum(probs))
    return MEANS[comp] + SCALES * rng.normal(size=(n, 4)), comp


def _null_pvalues(reps, n=1000, weighted=False, n_bins=10):
    out = []
    q = np.array([0.4, 0.3, 0.2, 0.1])
    for i in range(reps):
        rng = np.random.default_rng(7000 + i)
        if weighted:  # importance-weighted reference, equal in distribution to the candidate
            x, comp = mixture(rng, 2 * n, q)
            w = 0.25 / q[comp]
        else:
            x, w = mixture(rng, 2 * n)[0], None
        y = mixture(rng, n)[0]
        out.append(ndb_test(x, y, w, n_bins=n_bins, seed=i).pvalue)
    return np.array(out)


def test_null_rejection_rate_default_suite():
    # 60 reference-vs-reference repetitions at alpha 0.05: under a calibrated test the number
    # of rejections is Binomial(60, 0.05) (mean 3); P(X >= 9) = 0.002, so <= 8 is the band.
    p = _null_pvalues(60)
    assert np.count_nonzero(p < 0.05) <= 8


def test_weighted_null_rejection_rate_default_suite():
    # Same binomial band (Binomial(60, 0.05), <= 8) with an importance-weighted reference.
    p = _null_pvalues(60, weighted=True)
    assert np.count_nonzero(p < 0.05) <= 8


@pytest.mark.slow
@pytest.mark.parametrize("weighted", [False, True])
def test_null_rejection_rate_300(weighted):
    rate = np.mean(_null_pvalues(300, weighted=weighted) < 0.05)
    assert 0.02 <= rate <= 0.09


@pytest.mark.slow
def test_null_ndb_over_k_near_alpha_default_bins():
    # Default K = 50 at 5000 rows: the mean NDB/K over repetitions is about alpha.
    fr = []
    for i in range(100):
        rng = np.random.default_rng(100 + i)
        r = ndb_test(mixture(rng, 10_000)[0], mixture(rng, 5000)[0], seed=i)
        fr.append(r.ndb_over_k)
    assert 0.03 <= np.mean(fr) <= 0.07


def test_dropped_mode_detected_and_located_in_physical_units():
    # 5000 reference vs 5000 candidate rows, K = 20; the candidate lacks component 3.
    rng = np.random.default_rng(1)
    x = mixture(rng, 10_000)[0]
    y = mixture(rng, 5000, probs=(1, 1, 1, 0))[0]
    res = ndb_test(x, y, feature_names=NAMES, n_bins=20, seed=3)
    assert res.pvalue < 1e-3
    assert res.ndb > res.expected
    under = res.under
    assert under, "the dropped mode must show as under-populated bins"
    # The most under-populated bin sits on the dropped component, in physical units.
    top = np.array([under[0]["centroid"][nm] for nm in NAMES])
    assert np.all(np.abs(top - MEANS[3]) < 2 * SCALES), top
    assert under[0]["candidate_fraction"] < 0.01 < under[0]["reference_fraction"]
    # Every under-populated bin lies on the dropped component, and together they hold it.
    for b in under:
        c = np.array([b["centroid"][nm] for nm in NAMES])
        assert np.all(np.abs(c - MEANS[3]) < 3 * SCALES), c
    assert sum(b["reference_fraction"] for b in under) > 0.2
    # The other components are over-populated instead.
    assert all(b["z"] > 0 for b in res.over)


def test_bins_sorted_and_counts_consistent():
    rng = np.random.default_rng(2)
    res = ndb_test(mixture(rng, 4000)[0], mixture(rng, 2000)[0], n_bins=12, alpha=0.1, seed=0)
    p = [b["pvalue"] for b in res.bins]
    assert p == sorted(p)
    assert sorted(b["index"] for b in res.bins) == list(range(12))
    assert res.ndb == sum(b["significant"] for b in res.bins)
    assert res.expected == pytest.approx(1.2)
    assert res.ndb_over_k == res.ndb / 12
    assert res.n_fit == 2000 and res.n_reference == 2000 and res.n_candidate == 2000
    assert res.feature_names == ["x0", "x1", "x2", "x3"]
    for b in res.bins:
        assert b["direction"] in (("over", "under") if b["significant"] else (None,))
    assert sum(b["reference_fraction"] for b in res.bins) == pytest.approx(1.0)


def test_to_dict_is_json_and_has_the_documented_keys():
    rng = np.random.default_rng(3)
    res = ndb_test(mixture(rng, 2000)[0], mixture(rng, 1000)[0], n_bins=8, seed=0)
    assert isinstance(res, NDBResult)
    d = res.to_dict()
    json.dumps(d)
    assert set(d) == {
        "ndb", "k", "ndb_over_k", "alpha", "expected", "statistic", "ndf", "pvalue", "bins",
        "feature_names", "n_reference", "n_candidate", "n_fit", "note",
    }  # fmt: skip
    assert set(d["bins"][0]) == {
        "index", "centroid", "reference_fraction", "candidate_fraction", "z", "pvalue",
        "significant", "direction",
    }  # fmt: skip


def test_negative_weights_background_subtraction():
    # sWeight-like reference: signal + background (weight +1) plus a background-only control
    # sample with weight -1; its net distribution is the signal, as is the candidate's.
    rng = np.random.default_rng(4)
    sig = mixture(rng, 6000, probs=(1, 1, 1, 0))[0]
    bkg = mixture(rng, 2000, probs=(0, 0, 0, 1))[0]
    ctl = mixture(rng, 2000, probs=(0, 0, 0, 1))[0]
    x = np.concatenate([sig, bkg, ctl])
    w = np.concatenate([np.ones(8000), -np.ones(2000)])
    y = mixture(rng, 6000, probs=(1, 1, 1, 0))[0]
    res = ndb_test(x, y, w, n_bins=10, seed=0)
    assert res.pvalue > 1e-3
    assert "weighted" in res.note
    # Without the subtraction the background shows up as the candidate's missing mode.
    res_unsub = ndb_test(x[:8000], y, n_bins=10, seed=0)
    assert res_unsub.pvalue < 1e-3 and res_unsub.under


def test_same_seed_same_result_and_seed_matters():
    rng = np.random.default_rng(5)
    x, y = mixture(rng, 3000)[0], mixture(rng, 1500)[0]
    a = ndb_test(x, y, n_bins=10, seed=11).to_dict()
    assert a == ndb_test(x, y, n_bins=10, seed=11).to_dict()
    assert a != ndb_test(x, y, n_bins=10, seed=12).to_dict()


def test_one_feature_works():
    rng = np.random.default_rng(6)
    res = ndb_test(rng.normal(size=400), rng.normal(size=300), n_bins=4, seed=0)
    assert res.k == 4 and list(res.bins[0]["centroid"]) == ["x0"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"candidate": np.zeros((50, 3))}, "candidate: has 3 features"),
        ({"reference_weights": np.ones(10)}, "reference"),
        ({"candidate_weights": -np.ones(200)}, "candidate: weights sum"),
        ({"n_bins": 1}, "n_bins"),
        ({"n_bins": 2.5}, "n_bins"),
        ({"alpha": 0.0}, "alpha"),
        ({"alpha": 1.5}, "alpha"),
        ({"max_fit_events": 3}, "max_fit_events"),
        ({"feature_names": ["a"]}, "feature_names: 1 names for 4"),
        ({"n_bins": 150}, "reference: 200 rows; NDB with n_bins=150 needs at least 300"),
    ],
)
def test_bad_input_raises(kwargs, match):
    rng = np.random.default_rng(0)
    args = {"reference": mixture(rng, 200)[0], "candidate": mixture(rng, 200)[0]}
    args.update(kwargs)
    ref, cand = args.pop("reference"), args.pop("candidate")
    with pytest.raises(InputError, match=match):
        ndb_test(ref, cand, **args)


def test_nan_input_raises():
    x = np.zeros((100, 2))
    x[3, 1] = np.nan
    with pytest.raises(InputError, match="reference: 1 of 100 events have NaN"):
        ndb_test(x, np.zeros((100, 2)))
