"""Multiple testing (``hepgen.validation.multiple``): Holm and BH against their definitions,
the family-wise error rate of Holm on real per-feature tests under the null, the power on a
distorted feature, and the keys in ``metrics.json``."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy import stats

from hepgen.errors import InputError
from hepgen.validation import compare
from hepgen.validation.multiple import benjamini_hochberg, holm, multiple_testing


def _holm_by_definition(p: np.ndarray, alpha: float) -> np.ndarray:
    """Rejections of Holm's step-down procedure as Holm (1979) states it."""
    order = np.argsort(p)
    reject = np.zeros(p.size, bool)
    for rank, i in enumerate(order):
        if p[i] > alpha / (p.size - rank):
            break
        reject[i] = True
    return reject


@pytest.mark.parametrize("seed", range(5))
def test_holm_and_bh_match_their_definitions(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.uniform(size=20), rng.uniform(0, 1e-3, 5)])
    rng.shuffle(p)
    for alpha in (0.01, 0.05, 0.2):
        assert np.array_equal(holm(p) <= alpha, _holm_by_definition(p, alpha))
        # BH: reject the k smallest, k the largest rank with p_(k) <= k alpha / m
        sorted_p = np.sort(p)
        ok = np.flatnonzero(sorted_p <= np.arange(1, p.size + 1) * alpha / p.size)
        k = ok[-1] + 1 if ok.size else 0
        assert int((benjamini_hochberg(p) <= alpha).sum()) == k
    assert np.all(holm(p) >= p) and np.all(holm(p) <= 1)


def test_edge_cases_and_bad_input() -> None:
    assert holm([]).size == 0 and benjamini_hochberg([]).size == 0
    assert holm([0.5]).tolist() == [0.5]
    for bad in ([1.2], [np.nan], [[0.1]]):
        with pytest.raises(InputError):
            holm(bad)
    assert multiple_testing({"a": {"ks": None}}) is None
    with pytest.raises(InputError, match="alpha"):
        multiple_testing({}, alpha=1.0)


def _pvalues_null(n_rep: int, n_features: int = 6, n: int = 400) -> np.ndarray:
    out = []
    for rep in range(n_rep):
        rng = np.random.default_rng(1000 + rep)
        res = compare(
            rng.normal(size=(n, n_features)),
            rng.normal(size=(n, n_features)),
            metrics=["ks", "chi2"],
            baseline=False,
            seed=rep,
        )
        out.append(res.multiple_testing())
    return out


def test_holm_holds_the_family_wise_error_rate_under_the_null() -> None:
    """60 reference-vs-reference comparisons of 6 features x (KS, chi2) = 12 tests each:
    raw p < 0.05 somewhere in most of them, Holm-adjusted in about 5 % (at most 5 % for any
    dependence).  Binomial band: 60 draws of a rate <= 0.05 exceed 9 with probability < 0.2 %;
    the raw any-rejection rate (1 - 0.95^12 = 0.46 if independent; KS and chi2 of a feature
    are correlated) is far above it."""
    found = _pvalues_null(60)
    any_raw = np.mean([m["n_rejected"] > 0 for m in found])
    any_holm = np.mean([m["holm"]["n_rejected"] > 0 for m in found])
    assert any_holm <= 9 / 60, any_holm
    assert any_raw > 0.2, any_raw
    mean_rejected = np.mean([m["n_rejected"] for m in found])
    assert abs(mean_rejected - 0.05 * 12) < 0.3  # the count "expected by chance" is right
    assert found[0]["expected"] == pytest.approx(0.6)


@pytest.mark.slow
def test_holm_family_wise_error_rate_200_repetitions() -> None:
    found = _pvalues_null(200)
    any_holm = np.mean([m["holm"]["n_rejected"] > 0 for m in found])
    assert 0.005 <= any_holm <= 0.07, any_holm


def test_power_a_distorted_feature_survives_the_correction() -> None:
    rng = np.random.default_rng(5)
    ref = rng.normal(size=(10_000, 8))
    cand = rng.normal(size=(10_000, 8))
    cand[:, 3] *= 1.15  # 15 % too wide in one feature
    res = compare(ref, cand, metrics=["ks", "chi2"], baseline=False)
    mt = res.multiple_testing()
    flagged = {t["feature"] for t in mt["tests"] if t["holm"] < 1e-3}
    assert flagged == {"x3"}
    assert mt["n_rejected"] >= 2  # KS and chi2 of x3
    # in metrics.json, and in the summary line numbers
    d = res.to_dict()
    assert d["multiple_testing"]["holm"]["n_rejected"] >= 1
    assert d["summary"]["n_rejected_holm"] == mt["holm"]["n_rejected"]
    assert d["summary"]["expected_below_0.05"] == pytest.approx(0.05 * mt["n_tests"])


def test_count_pvalue_is_the_binomial_tail() -> None:
    p = {f"f{i}": {"ks": {"pvalue": v}} for i, v in enumerate([0.01, 0.02, 0.5, 0.9])}
    mt = multiple_testing(p)
    assert mt["n_rejected"] == 2 and mt["n_tests"] == 4
    assert mt["pvalue_count"] == pytest.approx(stats.binom.sf(1, 4, 0.05))
    assert [t["feature"] for t in mt["tests"]] == ["f0", "f1", "f2", "f3"]
    assert all(a["holm"] >= a["pvalue"] for a in mt["tests"])
    assert list(itertools.accumulate(sorted(t["holm"] for t in mt["tests"]), max)) == sorted(
        t["holm"] for t in mt["tests"]
    )
