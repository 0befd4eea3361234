"""compare(): the metrics.json contract, baseline, conditional bins, and bad input."""

from __future__ import annotations

import json

import awkward as ak
import numpy as np
import pytest

from hepgen.errors import InputError
from hepgen.validation.compare import compare, parse_condition_bins

FAST = {"c2st": {"n_estimators": 200}, "mmd": {"n_permutations": 100}}


def _sample(rng: np.random.Generator, n: int, shift: float = 0.0) -> dict[str, np.ndarray]:
    c = rng.normal(size=n)
    return {
        "cond": c,
        "x": 0.5 * c + rng.normal(size=n) + shift,
        "k": rng.poisson(5, size=n),
        "b": np.clip(rng.beta(2, 5, size=n), 0, 1),
    }


def test_contract_keys_and_no_nan() -> None:
    rng = np.random.default_rng(0)
    res = compare(_sample(rng, 3000), _sample(rng, 3000), options=FAST, seed=1)
    d = res.to_dict()
    text = json.dumps(d, allow_nan=False)  # raises on NaN
    assert "NaN" not in text
    for key in (
        "n_reference",
        "n_candidate",
        "weighted",
        "features",
        "c2st",
        "mmd",
        "fpd",
        "kpd",
        "baseline",
    ):
        assert key in d
    assert d["n_reference"] == 3000 and d["weighted"] is False
    for name in ("cond", "x", "k", "b"):
        f = d["features"][name]
        assert set(f["ks"]) >= {"statistic", "pvalue"}
        assert set(f["chi2"]) >= {"statistic", "ndf", "pvalue"}
        assert isinstance(f["w1"], float)
    assert set(d["c2st"]) >= {"auc", "auc_ci", "pvalue", "n_train", "n_test"}
    assert set(d["mmd"]) >= {"value", "pvalue", "kernel"}
    assert set(d["fpd"]) >= {"value", "error"} and set(d["kpd"]) >= {"value", "error"}
    # the baseline carries the same metrics, between two halves of the reference
    assert set(d["baseline"]["features"]) == {"cond", "x", "k", "b"}
    assert d["baseline"]["n_reference"] == d["baseline"]["n_candidate"] == 1500
    assert "c2st" in d["baseline"] and d["baseline"]["c2st"]["auc"] is not None
    # same distribution: nothing stands out
    assert 0.45 < d["c2st"]["auc"] < 0.56
    assert d["c2st"]["pvalue"] > 1e-3 and d["mmd"]["pvalue"] > 1e-3
    assert all(t > 0 for t in d["timings"].values())


def test_detects_shift_and_names_the_feature() -> None:
    rng = np.random.default_rng(2)
    ref, cand = _sample(rng, 6000), _sample(rng, 6000, shift=0.3)
    res = compare(ref, cand, options=FAST, seed=3)
    assert res.features["x"]["ks"].pvalue < 1e-3
    assert res.features["k"]["ks"].pvalue > 1e-3
    assert res.c2st.pvalue < 1e-3 and res.c2st.auc > res.baseline.c2st.auc
    assert next(iter(res.c2st.importances)) == "x"
    assert res.mmd.pvalue < 1e-2
    assert res.fpd.value > res.baseline.fpd.value + 3 * res.fpd.error
    assert res.summary()["max_ks_feature"] == "x"


def test_conditional_bins_find_a_local_distortion() -> None:
    """A 30 % width change of x only for cond > 1 (16 % of rows) shows up in that bin."""
    rng = np.random.default_rng(4)
    n = 20000
    ref = _sample(rng, n)
    cand = _sample(rng, n)
    hi = cand["cond"] > 1
    cand["x"][hi] = 0.5 * cand["cond"][hi] + 1.3 * rng.normal(size=hi.sum())
    res = compare(
        ref,
        cand,
        metrics=["ks", "chi2", "w1"],
        baseline=False,
        condition_bins={"cond": [-10, -1, 0, 1, 10]},
    )
    bins = res.conditional["variables"]["cond"]["bins"]
    p_x = [b["features"]["x"]["ks"]["pvalue"] for b in bins]
    assert p_x[3] < 1e-4
    assert min(p_x[:3]) > 1e-3
    assert res.conditional["variables"]["cond"]["worst"]["x"]["lo"] == 1.0
    # conditioning variable itself is not tested inside its own bins
    assert "cond" not in bins[0]["features"]


def test_weighted_and_awkward_inputs() -> None:
    rng = np.random.default_rng(5)
    counts = rng.integers(0, 4, size=1500)
    n = int(counts.sum())
    ref = ak.unflatten(ak.zip({"pt": rng.exponential(30, n), "eta": rng.normal(0, 1.5, n)}), counts)
    counts2 = rng.integers(0, 4, size=1500)
    n2 = int(counts2.sum())
    cand = ak.unflatten(
        ak.zip({"pt": rng.exponential(30, n2), "eta": rng.normal(0, 1.5, n2)}), counts2
    )
    w_ref = rng.exponential(1.0, n)
    res = compare(
        ref,
        cand,
        w_ref,
        None,
        metrics=["ks", "chi2", "w1", "mmd"],
        baseline=False,
        options={"mmd": {"n_permutations": 50}},
    )
    assert res.weighted and res.n_reference == n and res.n_candidate == n2
    assert res.n_eff_reference < n
    assert res.features["pt"]["ks"].pvalue > 1e-3


def test_sweights_with_negative_entries() -> None:
    rng = np.random.default_rng(6)
    x = rng.normal(size=(4000, 2))
    w = rng.normal(1.0, 0.8, size=4000)  # about 10 % negative, like sWeights
    assert (w < 0).mean() > 0.05
    res = compare(
        x, rng.normal(size=(4000, 2)), w, None, metrics=["ks", "chi2", "w1"], baseline=True
    )
    json.dumps(res.to_dict(), allow_nan=False)
    assert res.features["x0"]["ks"].pvalue > 1e-3


def test_bad_input() -> None:
    rng = np.random.default_rng(7)
    ref = _sample(rng, 500)
    cand = _sample(rng, 500)
    del cand["k"]
    cand["extra"] = rng.normal(size=500)
    with pytest.raises(InputError, match=r"only in the reference: \['k'\].*only in the candidate"):
        compare(ref, cand, metrics=["ks"])
    with pytest.raises(InputError, match="candidate: no events"):
        compare(rng.normal(size=(10, 2)), np.empty((0, 2)), metrics=["ks"])
    bad = _sample(rng, 500)
    bad["x"] = np.full(500, np.nan)
    with pytest.raises(InputError, match="candidate: feature 'x' is NaN or infinite in all 500"):
        compare(_sample(rng, 500), bad, metrics=["ks"])
    with pytest.raises(InputError, match="weights sum to"):
        compare(
            rng.normal(size=(50, 1)), rng.normal(size=(50, 1)), -np.ones(50), None, metrics=["ks"]
        )
    with pytest.raises(InputError, match="unknown metric"):
        compare(rng.normal(size=(50, 1)), rng.normal(size=(50, 1)), metrics=["kss"])
    with pytest.raises(InputError, match="not a compared feature"):
        compare(_sample(rng, 100), _sample(rng, 100), metrics=["ks"], condition_bins={"kond": 3})


def test_nan_rows_dropped_and_constant_feature_flagged() -> None:
    rng = np.random.default_rng(8)
    ref = _sample(rng, 2000)
    cand = _sample(rng, 2000)
    cand["x"][:7] = np.nan
    ref["const"] = np.zeros(2000)
    cand["const"] = np.zeros(2000)
    res = compare(
        ref,
        cand,
        metrics=["ks", "chi2", "w1", "mmd", "fpd"],
        baseline=False,
        options={"mmd": {"n_permutations": 50}, "fpd": {"min_samples": 500, "max_samples": 1500}},
    )
    d = res.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["n_candidate"] == 2000
    assert any("candidate: 7 of 2000 rows have NaN" in n for n in d["notes"])
    assert d["features"]["const"]["chi2"]["pvalue"] is None
    assert d["features"]["const"]["ks"]["statistic"] == 0.0
    assert any("const: constant in both samples" in n for n in d["notes"])
    assert d["mmd"]["value"] is not None and d["fpd"]["value"] is not None


def test_parse_condition_bins() -> None:
    assert parse_condition_bins(["a=0,1,2.5", "b:3"]) == {"a": [0.0, 1.0, 2.5], "b": 3}
    assert parse_condition_bins(["a=0,1;b:2"]) == {"a": [0.0, 1.0], "b": 2}
    for bad in ("a=1", "a=2,1", "a:x", "a", "a=1,b"):
        with pytest.raises(InputError, match="--condition-bins"):
            parse_condition_bins([bad])


def test_changed_correlation_only_the_multivariate_tests_see_it() -> None:
    """rho 0 -> 0.3 with identical N(0, 1) marginals, n = 10000 per sample: KS and chi2 stay
    quiet on both features, the classifier test and MMD reject with p < 1e-3 (MMD with the
    block estimator: 200 permutations could not go below p = 1/201)."""
    rng = np.random.default_rng(11)
    n = 10_000
    ref = rng.normal(size=(n, 2))
    cov = [[1.0, 0.3], [0.3, 1.0]]
    cand = rng.multivariate_normal([0, 0], cov, size=n)
    res = compare(
        ref,
        cand,
        metrics=["ks", "chi2", "c2st", "mmd"],
        baseline=False,
        seed=2,
        options={"mmd": {"max_quadratic": 5000, "block_size": 500}},
    )
    for name in ("x0", "x1"):
        assert res.features[name]["ks"].pvalue > 1e-3
        assert res.features[name]["chi2"].pvalue > 1e-3
    assert res.c2st.pvalue < 1e-3
    assert res.mmd.pvalue < 1e-3
