"""The regression of negative event weights (hepgen.sweights): unbiased, non-negative, and
what makes weighted training converge."""

from __future__ import annotations

import numpy as np
import pytest

from hepgen.errors import InputError
from hepgen.sweights import regress_weights


def _splot_like(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Features x (2 columns), signal truth, and sWeight-like weights: for each event the
    weight is 1 - noise for signal and -noise' for background such that E[w | x] is the
    signal probability at x, with about a quarter of the weights negative."""
    rng = np.random.default_rng(seed)
    signal = rng.random(n) < 0.5
    x = np.where(signal[:, None], rng.normal(1.0, 1.0, (n, 2)), rng.normal(-1.0, 1.5, (n, 2)))
    # the mass-fit part of an sWeight: independent of x given the species, mean 1 (signal)
    # or 0 (background), wide enough that many weights are negative
    w = np.where(signal, rng.normal(1.0, 0.8, n), rng.normal(0.0, 0.8, n))
    return x, signal, w


def test_regressed_weights_keep_weighted_averages_and_are_non_negative():
    x, signal, w = _splot_like(40_000, 1)
    w_reg, info = regress_weights(x, w, seed=0)
    assert (w_reg >= 0).all()
    assert info["fraction_negative"] > 0.25
    assert w_reg.sum() == pytest.approx(w.sum())
    # weighted averages of functions of x: the same as with the raw weights (and as the
    # signal truth) within their statistical errors
    for f in (x[:, 0], x[:, 1] ** 2, (x[:, 0] > 1.5).astype(float)):
        raw = np.sum(w * f) / w.sum()
        reg = np.sum(w_reg * f) / w_reg.sum()
        truth = f[signal].mean()
        err = np.sqrt(np.sum((w * (f - raw)) ** 2)) / w.sum()
        # both estimate the signal truth; the raw one fluctuates by its error
        assert abs(raw - truth) < 3 * err, (raw, truth, err)
        assert abs(reg - truth) < 2 * err, (reg, truth, err)
    # and far less noisy per event: the regression averages the noise away
    assert np.std(w_reg) < 0.5 * np.std(w)


def test_cross_fitting_does_not_hand_back_each_events_own_weight():
    # weights that are pure noise around 0.5, independent of x: a regressor that memorised
    # its training rows would return them; cross-fitted predictions stay near 0.5
    rng = np.random.default_rng(2)
    x = rng.normal(size=(5000, 3))
    w = 0.5 + rng.normal(0, 1.0, 5000)
    w_reg, info = regress_weights(x, w, seed=1)
    assert abs(info["correlation"]) < 0.1
    assert np.percentile(w_reg, 5) > 0.3 and np.percentile(w_reg, 95) < 0.7


def test_few_rows_are_clipped_and_bad_weights_refused():
    w_reg, info = regress_weights(np.zeros((50, 1)), np.linspace(-0.5, 1.5, 50))
    assert (w_reg >= 0).all() and "clipped" in info["method"]
    with pytest.raises(InputError, match="NaN or inf"):
        regress_weights(np.zeros((300, 1)), np.full(300, np.nan))
    with pytest.raises(InputError, match="expected"):
        regress_weights(np.zeros((300, 1)), np.ones(10))
