"""Global significance of a scan from null pseudo-scans (hepgen.anomaly.scan.lookelsewhere).

Calibration: for background-only scans the global p-value is (at worst conservatively)
uniform; the trials factor is ~1 for windows that share every event and ~W for windows that
share none; a strong excess falls back on the union bound, a lower bound on the global Z.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from hepgen.anomaly.scan.lookelsewhere import MIN_EXCEEDING, global_significance, pass_patterns
from hepgen.anomaly.stats import significances


def _windows(w: int, size: int, shift: int) -> list[np.ndarray]:
    """``w`` windows of ``size`` events starting every ``shift`` events."""
    return [np.arange(k * shift, k * shift + size) for k in range(w)]


def _observe(indices, rate, mu, rng):
    """A background-only scan: each event passes with ``rate`` (the same for every window
    containing it: maximal correlation of overlapping windows), local Z per window."""
    n_events = max(int(i.max()) for i in indices) + 1
    passes = rng.random(n_events) < rate
    passed = [passes[i] for i in indices]
    n = np.array([p.sum() for p in passed])
    return passed, significances(n, mu, 0.0)


def test_pass_patterns_group_events_by_the_windows_they_pass():
    idx = [np.array([1, 2, 3, 4]), np.array([3, 4, 5, 6])]
    ok = [np.array([True, False, True, True]), np.array([True, False, True, False])]
    pat, n = pass_patterns(idx, ok)
    got = {tuple(p.astype(int)): int(c) for p, c in zip(pat, n, strict=True)}
    # 1 passes window 0 only; 3 passes both; 4 passes window 0 only; 5 passes window 1 only
    assert got == {(1, 0): 2, (1, 1): 1, (0, 1): 1}


@pytest.mark.parametrize(
    ("shift", "low", "high"),
    [(0, 1.0, 1.3), (500, 3.0, 9.5), (1000, 8.5, 10.0)],
    ids=["identical", "half-overlap", "disjoint"],
)
def test_trials_factor_follows_the_overlap(shift, low, high):
    w, size, rate = 10, 1000, 0.02
    idx = _windows(w, size, shift)
    rng = np.random.default_rng(4)
    passed, _ = _observe(idx, rate, np.full(w, size * rate), rng)
    z = np.r_[2.0, np.zeros(w - 1)]
    g = global_significance(idx, passed, np.full(w, size * rate), np.zeros(w), z, 20_000, seed=1)
    assert g["method"] == "pseudo-scans"
    assert low <= g["trials_factor"] <= high
    assert g["global_significance"] <= 2.0 + 1e-12
    # the pseudo-scans' local Z is a calibrated-or-conservative count test
    assert 0.012 < g["single_window_above_2"] < 0.03


def test_null_scans_give_calibrated_global_p_values():
    """Background-only scans of 10 half-overlapping windows: global p <= 0.05 in about 5 %
    (at most; the count test is slightly conservative for ~20 expected events).  120 scans:
    the binomial 99.9 % band of a 5 % rate is [0.5, 11.5] %, a conservative test sits lower."""
    w, size, rate = 10, 1000, 0.02
    idx = _windows(w, size, 500)
    mu = np.full(w, size * rate)
    rng = np.random.default_rng(11)
    p = []
    for k in range(120):
        passed, z = _observe(idx, rate, mu, rng)
        g = global_significance(idx, passed, mu, np.zeros(w), z, 2000, seed=k)
        p.append(g["global_p"])
    p = np.array(p)
    assert 0.0 <= np.mean(p <= 0.05) <= 0.115
    assert np.mean(p <= 0.5) > 0.3  # not degenerate at 1
    # the local p-values of the same scans would reject far more often
    assert np.median(p) > 0.2


def test_a_strong_excess_uses_the_union_bound():
    w, size, rate = 10, 1000, 0.02
    idx = _windows(w, size, 500)
    mu = np.full(w, size * rate)
    passed, _ = _observe(idx, rate, mu, np.random.default_rng(2))
    z = np.r_[np.zeros(4), 7.0, np.zeros(5)]
    g = global_significance(idx, passed, mu, np.full(w, 2.0), z, 5000, seed=0)
    assert g["method"] == "bound"
    assert g["n_exceeding_window"] < MIN_EXCEEDING
    assert g["trials_factor"] == w
    assert g["global_p"] == pytest.approx(w * stats.norm.sf(7.0))
    assert 6.0 < g["global_significance"] < 7.0


def test_background_uncertainty_widens_the_pseudo_scans():
    w, size, rate = 5, 1000, 0.02
    idx = _windows(w, size, 1000)
    mu = np.full(w, size * rate)
    passed, _ = _observe(idx, rate, mu, np.random.default_rng(3))
    z = np.r_[1.5, np.zeros(w - 1)]
    exact = global_significance(idx, passed, mu, np.zeros(w), z, 20_000, seed=0)
    loose = global_significance(idx, passed, mu, np.full(w, 6.0), z, 20_000, seed=0)
    # the same observed Z is more often reached by chance when the estimate is uncertain
    # (the local Z profiles the uncertainty, the pseudo-scans draw it)
    assert loose["max_z_quantiles"]["0.5"] <= exact["max_z_quantiles"]["0.5"] + 0.05
    assert exact["n_windows"] == loose["n_windows"] == w
    assert sum(exact["max_z_histogram"]["counts"]) == 20_000


def test_same_seed_same_result():
    idx = _windows(4, 500, 250)
    passed, z = _observe(idx, 0.04, np.full(4, 20.0), np.random.default_rng(0))
    a = global_significance(idx, passed, np.full(4, 20.0), np.ones(4), z, 3000, seed=5)
    b = global_significance(idx, passed, np.full(4, 20.0), np.ones(4), z, 3000, seed=5)
    assert a == b
