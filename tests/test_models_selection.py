"""Checkpoint-selection metrics: what each one sees, reproducibility, errors."""

from __future__ import annotations

import numpy as np
import pytest

from hepgen.errors import InputError
from hepgen.models.selection import (
    check_selection,
    classifier_auc_metric,
    mean_ks_metric,
    selection_metric,
)


def response_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A detector-like toy: the resolution of x shrinks with the condition c (like pt)."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(0.0, 1.0, size=(n, 1))
    x = rng.normal(size=(n, 1)) * (0.2 + 0.8 * c)
    return x.astype(np.float32), c.astype(np.float32)


def truth(cc: np.ndarray, s: int) -> np.ndarray:
    return (np.random.default_rng([s, 9]).normal(size=cc.shape) * (0.2 + 0.8 * cc)).astype(
        np.float32
    )


def blind(cc: np.ndarray, s: int) -> np.ndarray:
    """The right marginal of x, drawn without looking at c: shuffled truth draws."""
    draws = truth(cc, s)
    return draws[np.random.default_rng([s, 3]).permutation(len(draws))]


def test_classifier_sees_a_wrong_conditional_that_ks_misses():
    x, c = response_data(20_000, seed=1)
    ks_truth = mean_ks_metric(truth, x, c, seed=2)
    ks_blind = mean_ks_metric(blind, x, c, seed=2)
    auc_truth = classifier_auc_metric(truth, x, c, seed=2)
    auc_blind = classifier_auc_metric(blind, x, c, seed=2)
    # both draws have the true marginal: KS cannot tell them apart (noise ~0.01 at 2e4)
    assert ks_truth < 0.02 and ks_blind < 0.02
    # the classifier sees the missing dependence on c; the truth stays at 0.5 +- noise
    # (AUC standard deviation ~0.004 for 1e4 vs 1e4 test rows)
    assert abs(auc_truth - 0.5) < 0.02, auc_truth
    assert auc_blind > 0.6, auc_blind


def test_metrics_are_reproducible_for_a_seed():
    x, c = response_data(6000, seed=4)
    assert classifier_auc_metric(blind, x, c, seed=5) == classifier_auc_metric(blind, x, c, seed=5)
    assert selection_metric("ks", truth, x, c, 5) == mean_ks_metric(truth, x, c, seed=5)
    assert selection_metric("loss", truth, x, c, 5) is None


def test_bad_selection_and_tiny_validation():
    with pytest.raises(InputError, match=r"selection 'auc': expected one of 'ks', 'c2st', 'loss'"):
        check_selection("auc")
    x, c = response_data(10, seed=1)
    with pytest.raises(InputError, match=r"needs >= 20 validation rows, got 10"):
        classifier_auc_metric(truth, x, c)
