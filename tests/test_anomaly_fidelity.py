"""Tests of the template-fidelity test (:mod:`hepgen.anomaly.scan.fidelity`): the out-of-fold
classifier AUC of two samples, its null calibration, its power and its input checks."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("xgboost")

from hepgen.anomaly.scan.fidelity import null_auc_error, two_sample_auc
from hepgen.errors import InputError
from hepgen.settings.scan import ScanSettings


def _settings(**classifier) -> ScanSettings:
    return ScanSettings(
        start=3.0,
        stop=3.4,
        width=0.4,
        step=0.2,
        sideband=0.4,
        resonance={"name": "m", "kind": "positive"},
        features=[{"name": "x", "kind": "continuous"}, {"name": "y", "kind": "continuous"}],
        classifier=classifier,
        device="cpu",
    )


def test_null_error_is_hanley_mcneil():
    assert null_auc_error(100, 300) == pytest.approx(np.sqrt(401 / (12 * 100 * 300)))


def test_null_calibration():
    """Two samples of one distribution: |AUC - 0.5| <= 3 errors in >= 95 % of 40 seeds, and
    the AUCs scatter like the stated error."""
    settings = _settings(n_estimators=50)
    aucs, errors = [], []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        a, b = rng.normal(size=(400, 2)), rng.normal(size=(600, 2))
        r = two_sample_auc(a, b, settings, np.random.default_rng(1000 + seed))
        assert (r["n_a"], r["n_b"]) == (400, 600)
        aucs.append(r["auc"])
        errors.append(r["auc_error"])
    pulls = (np.array(aucs) - 0.5) / np.array(errors)
    assert np.mean(np.abs(pulls) <= 3) >= 0.95
    assert abs(np.mean(pulls)) < 3 / np.sqrt(40) * 1.5  # no bias beyond ~1.5 x its noise
    assert 0.5 < np.std(pulls) < 1.5  # the error describes the scatter


def test_power_at_a_tenth_of_a_sigma():
    """A 0.1-sd shift of one of two features is seen at 20k events per class, with nearly
    the AUC of the optimal score (the shifted feature itself) on the same events."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(11)
    a = rng.normal(size=(20_000, 2))
    b = rng.normal(size=(20_000, 2))
    a[:, 0] += 0.1
    r = two_sample_auc(a, b, _settings(), np.random.default_rng(8))
    # expected optimum Phi(0.1 / sqrt(2)) = 0.528, on these events 0.533; null error 0.0029
    optimal = roc_auc_score(np.r_[np.ones(20_000), np.zeros(20_000)], np.r_[a[:, 0], b[:, 0]])
    assert r["auc"] > 0.52
    assert r["auc"] > optimal - 0.01
    assert (r["auc"] - 0.5) / r["auc_error"] > 5


def test_weights_b_reweight_the_sample():
    """Importance weights that turn N(0, 1) into N(0.5, 1) make it indistinguishable from it;
    the same sample unweighted is not."""
    rng = np.random.default_rng(3)
    a = rng.normal(0.5, size=(5_000, 1))
    b = rng.normal(size=(10_000, 1))
    w = np.exp(0.5 * b[:, 0] - 0.125)
    settings = _settings()
    weighted = two_sample_auc(a, b, settings, np.random.default_rng(4), weights_b=w)
    plain = two_sample_auc(a, b, settings, np.random.default_rng(4))
    assert abs(weighted["auc"] - 0.5) < 3 * weighted["auc_error"]
    assert weighted["auc_error"] > null_auc_error(5_000, 10_000)  # Kish effective size
    assert plain["auc"] > 0.6


def test_seeded():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(300, 2)), rng.normal(0.3, size=(300, 2))
    settings = _settings(n_estimators=30)
    r1 = two_sample_auc(a, b, settings, np.random.default_rng(5))
    r2 = two_sample_auc(a, b, settings, np.random.default_rng(5))
    assert r1 == r2


@pytest.mark.parametrize(
    ("a", "b", "weights", "message"),
    [
        ((50, 2), (50, 3), None, "x_a has 2 features and x_b 3"),
        ((5, 2), (50, 2), None, "x_a has 5 rows, expected >= 10"),
        ((50, 2), (50, 2), np.full(49, 1.0), "weights_b"),
        ((50, 2), (50, 2), np.full(50, -1.0), "weights_b"),
        ((50, 2, 1), (50, 2), None, "x_a has shape (50, 2, 1)"),
    ],
)
def test_bad_input(a, b, weights, message):
    rng = np.random.default_rng(0)
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        two_sample_auc(rng.normal(size=a), rng.normal(size=b), _settings(), rng, weights)


def test_non_finite_rows_are_named():
    x = np.zeros((50, 2))
    x[3, 1] = np.nan
    with pytest.raises(InputError, match="1 of 50 rows of x_b are not finite"):
        two_sample_auc(np.zeros((50, 2)), x, _settings(), np.random.default_rng(0))
