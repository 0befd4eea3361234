"""Calibration, power and input checks of the data-copying test (Meehan et al. 2020)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hepgen.errors import InputError
from hepgen.validation.memorisation import _nearest_train_distances, data_copying_test

# Sizes of the power and null tests: 2000 training rows, 1000 reference, 1000 candidate, 3
# features, 5 cells (~0.05 s per call).
N_TRAIN, N_REF, N_CAND, DIM, CELLS = 2000, 1000, 1000, 3, 5


def _run(train, ref, cand, seed=0, **kw):
    kw.setdefault("n_cells", CELLS)
    return data_copying_test(train, ref, cand, device="cpu", seed=seed, **kw)


def _null_pvalues(reps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """C_T and near-duplicate p-values when train, reference and candidate are fresh draws."""
    rng = np.random.default_rng(seed)
    p_ct, p_near = [], []
    for i in range(reps):
        tr = rng.normal(size=(N_TRAIN, DIM))
        x, y = rng.normal(size=(N_REF, DIM)), rng.normal(size=(N_CAND, DIM))
        res = _run(tr, x, y, seed=i)
        p_ct.append(res.pvalue)
        p_near.append(res.near_duplicates["pvalue"])
    return np.asarray(p_ct), np.asarray(p_near)


def _copier(rng, train, n, fraction, noise=1e-3):
    """A generator that returns training rows (plus tiny noise) for ``fraction`` of its rows."""
    out = rng.normal(size=(n, train.shape[1]))
    k = round(fraction * n)
    src = train[rng.choice(train.shape[0], k, replace=False)]
    out[:k] = src + noise * rng.normal(size=src.shape)
    return out


def test_null_rejection_rate_default():
    # 60 repetitions at alpha 0.05: Binomial(60, 0.05) has mean 3; P(X >= 9) = 0.003, so at
    # most 8 rejections (the exact full-count band is in the slow test below).
    p_ct, p_near = _null_pvalues(60, seed=11)
    assert np.sum(p_ct < 0.05) <= 8
    assert np.sum(p_near < 0.05) <= 8
    assert 0.35 < p_ct.mean() < 0.65  # roughly uniform


@pytest.mark.slow
def test_null_rejection_rate_full():
    p_ct, p_near = _null_pvalues(200, seed=12)
    assert 0.02 <= np.mean(p_ct < 0.05) <= 0.09
    # Fisher's exact test is conservative (discrete): only the upper bound applies.
    assert np.mean(p_near < 0.05) <= 0.09


def test_full_copier_flagged():
    rng = np.random.default_rng(1)
    tr, x = rng.normal(size=(N_TRAIN, DIM)), rng.normal(size=(N_REF, DIM))
    res = _run(tr, x, _copier(rng, tr, N_CAND, 1.0))
    assert res.pvalue < 1e-3 and res.statistic < -5 and res.z < -10
    assert res.near_duplicates["pvalue"] < 1e-3
    assert res.near_duplicates["candidate_fraction"] > 0.95
    assert res.median_distance_candidate < 0.01 < res.median_distance_reference
    scored = [c for c in res.cells if c["z"] is not None]
    assert scored and all(c["z"] < -3 for c in scored)  # over-copied cells are listed


def test_partial_copier_flagged():
    # 25 % of the generated rows are training rows with noise 1e-3 (standardised units).
    rng = np.random.default_rng(2)
    tr, x = rng.normal(size=(N_TRAIN, DIM)), rng.normal(size=(N_REF, DIM))
    res = _run(tr, x, _copier(rng, tr, N_CAND, 0.25))
    assert res.pvalue < 1e-3 and res.statistic < 0
    assert res.near_duplicates["pvalue"] < 1e-3
    assert 0.2 < res.near_duplicates["candidate_fraction"] < 0.3


def test_faithful_model_not_flagged():
    rng = np.random.default_rng(3)
    tr, x, y = (rng.normal(size=(n, DIM)) for n in (N_TRAIN, N_REF, N_CAND))
    res = _run(tr, x, y)
    assert res.pvalue > 1e-3 and res.near_duplicates["pvalue"] > 1e-3
    assert abs(res.statistic) < 2
    assert res.near_duplicates["reference_fraction"] == pytest.approx(0.01, abs=0.002)


def test_too_narrow_model_reads_as_copying_but_has_no_near_duplicates():
    # Documented behaviour (Meehan et al. sec. 3-4: C_T measures closeness to the training
    # set, so a model concentrated on the dense core of each cell also scores < 0): an
    # under-dispersed generator (width 0.8) is flagged by C_T, not by the near-duplicate
    # count; a too-wide one (1.2) gives C_T > 0 (under-fitting).
    rng = np.random.default_rng(4)
    tr, x = rng.normal(size=(N_TRAIN, DIM)), rng.normal(size=(N_REF, DIM))
    narrow = _run(tr, x, 0.8 * rng.normal(size=(N_CAND, DIM)))
    assert narrow.statistic < 0 and narrow.pvalue < 1e-3
    assert narrow.near_duplicates["pvalue"] > 0.01
    wide = _run(tr, x, 1.2 * rng.normal(size=(N_CAND, DIM)))
    assert wide.statistic > 2 and wide.pvalue > 0.5


def test_tied_integer_features():
    rng = np.random.default_rng(5)
    tr, x, y = (rng.poisson(3.0, size=(n, DIM)).astype(float) for n in (N_TRAIN, N_REF, N_CAND))
    res = _run(tr, x, y)
    # Most rows coincide with a training row: epsilon is 0 ("identical"), the test stays sane.
    assert res.near_duplicates["epsilon"] == 0.0
    assert res.near_duplicates["reference_fraction"] > 0.5
    assert "coincide with a training row" in res.note
    assert np.isfinite(res.statistic) and res.pvalue > 1e-3
    assert res.near_duplicates["pvalue"] > 1e-3
    copy = _run(tr, x, tr[:N_CAND])
    assert copy.pvalue < 1e-3 and copy.near_duplicates["pvalue"] < 1e-3


def test_all_distances_tied_gives_none():
    tr, x, y = np.ones((50, 2)), np.ones((40, 2)), np.ones((40, 2))
    res = data_copying_test(tr, x, y, n_cells=2, device="cpu")
    assert all(c["z"] is None for c in res.cells)
    out = res.to_dict()
    assert out["statistic"] is None and out["pvalue"] is None
    assert "C_T undefined" in res.note


def test_weights_unweight_and_note():
    # The candidate holds copies (weight 1) and fresh rows (weight 0 or negative): after
    # accept-reject unweighting only copies remain.
    rng = np.random.default_rng(6)
    tr, x = rng.normal(size=(N_TRAIN, DIM)), rng.normal(size=(N_REF, DIM))
    y = np.vstack([tr[:N_CAND], rng.normal(size=(N_CAND, DIM))])
    wy = np.concatenate([np.ones(N_CAND), rng.choice([0.0, -0.2], size=N_CAND)])
    res = _run(tr, x, y, candidate_weights=wy)
    assert res.n_candidate == N_CAND
    assert res.near_duplicates["candidate_fraction"] == 1.0 and res.pvalue < 1e-3
    assert "candidate: unweighted by accept-reject" in res.note
    assert "negative weights" in res.note
    # Train and reference weights are accepted too.
    res = _run(
        tr,
        x,
        y[N_CAND:],
        train_weights=np.full(N_TRAIN, 2.0),
        reference_weights=np.full(N_REF, 0.5),
    )
    assert res.n_train == N_TRAIN and res.pvalue > 1e-3


def test_to_dict_keys_and_seed():
    rng = np.random.default_rng(7)
    tr, x, y = (rng.normal(size=(n, 2)) for n in (600, 300, 300))
    a = data_copying_test(tr, x, y, feature_names=["pt", "eta"], n_cells=4, device="cpu", seed=3)
    b = data_copying_test(tr, x, y, feature_names=["pt", "eta"], n_cells=4, device="cpu", seed=3)
    assert a.to_dict() == b.to_dict()
    d = a.to_dict()
    json.dumps(d)
    assert set(d) == {
        "statistic",
        "pvalue",
        "z",
        "n_cells",
        "cells",
        "near_duplicates",
        "median_distance_candidate",
        "median_distance_reference",
        "n_train",
        "n_reference",
        "n_candidate",
        "note",
    }
    assert a.to_dict(arrays=False) == d  # the cells are small: kept in metrics.json
    cell = d["cells"][0]
    assert set(cell) == {"index", "n_train", "n_reference", "n_candidate", "z", "centroid"}
    assert set(cell["centroid"]) == {"pt", "eta"}
    assert sum(c["n_reference"] for c in d["cells"]) == 300
    assert set(d["near_duplicates"]) == {
        "epsilon",
        "candidate",
        "candidate_fraction",
        "reference",
        "reference_fraction",
        "pvalue",
    }


def test_centroids_in_physical_units():
    rng = np.random.default_rng(8)
    shift = np.array([100.0, -3.0])
    tr, x, y = (shift + rng.normal(size=(n, 2)) for n in (600, 300, 300))
    res = data_copying_test(tr, x, y, n_cells=1, device="cpu")
    c = res.cells[0]["centroid"]
    assert c["x0"] == pytest.approx(100.0, abs=0.2) and c["x1"] == pytest.approx(-3.0, abs=0.2)


def test_caps_are_applied_and_stated():
    rng = np.random.default_rng(9)
    tr, x, y = (rng.normal(size=(n, 2)) for n in (3000, 1500, 1500))
    res = data_copying_test(tr, x, y, n_cells=4, max_train=1000, max_events=500, device="cpu")
    assert (res.n_train, res.n_reference, res.n_candidate) == (1000, 500, 500)
    assert "train: 1000 of 3000 rows used" in res.note


def test_brute_force_matches_kdtree():
    rng = np.random.default_rng(10)
    t, q = rng.normal(size=(3000, 7)), rng.normal(size=(500, 7))
    q[:10] = t[:10]  # exact copies: distance 0 in both
    (kd,) = _nearest_train_distances(t, (q,), "kdtree", "cpu")
    (bf,) = _nearest_train_distances(t, (q,), "cpu", "cpu")
    np.testing.assert_allclose(bf, kd, rtol=1e-10, atol=1e-12)
    assert np.all(bf[:10] == 0.0)
    # More than 6 features use the brute force on the CPU.
    res = data_copying_test(t, q, t[:500], n_cells=3, device="cpu")
    assert "search: cpu, exact" in res.note and res.pvalue < 1e-3


@pytest.mark.parametrize(
    ("args", "kw", "match"),
    [
        ((np.zeros((10, 2)), np.zeros((10, 3)), np.zeros((10, 2))), {}, "reference: has 3"),
        ((np.zeros((10, 2)), np.zeros((10, 2)), np.zeros((0, 2))), {}, "candidate: no events"),
        ((np.zeros((0, 2)), np.zeros((10, 2)), np.zeros((10, 2))), {}, "train: no events"),
        ((np.ones((30, 2)),) * 3, {"feature_names": ["a"]}, "feature_names: 1 names"),
        ((np.ones((30, 2)),) * 3, {"n_cells": 0}, "n_cells=0"),
        ((np.ones((30, 2)),) * 3, {"epsilon": -1.0}, "epsilon=-1.0"),
        ((np.ones((30, 2)),) * 3, {"max_events": 1}, "max_events=1"),
        ((np.ones((30, 2)),) * 3, {"n_cells": 40}, "needs at least 40"),
    ],
)
def test_input_errors(args, kw, match):
    with pytest.raises(InputError, match=match):
        data_copying_test(*args, device="cpu", **kw)


def test_weight_shape_error():
    with pytest.raises(InputError, match="candidate: weights have shape"):
        data_copying_test(np.ones((30, 2)), np.ones((30, 2)), np.ones((30, 2)), None, None, [1.0])
