"""FPD, KPD (JetNet definitions) and PRDC: closed forms, null values, sensitivity, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import linalg
from scipy.spatial.distance import cdist

from hepgen.errors import InputError
from hepgen.validation.distances import (
    DistanceResult,
    frechet_distance,
    frechet_physics_distance,
    kernel_physics_distance,
)
from hepgen.validation.fidelity import PRDCResult, prdc
from hepgen.validation.mmd import mmd2_unbiased

# ----------------------------------------------------------------------------- Frechet distance


def test_frechet_distance_closed_form_for_diagonal_covariances() -> None:
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    s1, s2 = rng.uniform(0.5, 2.0, 4), rng.uniform(0.5, 2.0, 4)
    # |dmu|^2 + sum (sigma1 - sigma2)^2 with sigma the standard deviations
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(
        expected, rel=1e-12
    )


def test_frechet_distance_matches_sqrtm_and_handles_singular_covariances() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 5)), rng.normal(size=(5, 5))
    c1, c2 = a @ a.T + 0.1 * np.eye(5), b @ b.T + 0.1 * np.eye(5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    ref = (
        np.sum((mu1 - mu2) ** 2)
        + np.trace(c1)
        + np.trace(c2)
        - 2 * np.trace(linalg.sqrtm(c1 @ c2).real)
    )
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(ref, rel=1e-9)
    assert frechet_distance(mu2, c2, mu1, c1) == pytest.approx(ref, rel=1e-9)
    # a constant feature: zero row and column in both covariances
    s1, s2 = np.diag([1.0, 0.0]), np.diag([4.0, 0.0])
    assert frechet_distance([0, 3], s1, [0, 3], s2) == pytest.approx(1.0, rel=1e-12)
    assert frechet_distance(mu1, c1, mu1, c1) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(InputError, match="shapes"):
        frechet_distance([0, 0], np.eye(2), [0, 0, 0], np.eye(3))


# ------------------------------------------------------------------------------------------ FPD


@pytest.fixture(scope="module")
def gaussians():
    rng = np.random.default_rng(2)
    n = 100_000
    return rng.normal(size=(n, 3)), rng.normal(size=(n, 3)), rng.normal(size=(n, 3))


def test_fpd_null_compatible_with_zero(gaussians) -> None:
    """Same distribution, 1e5 events, JetNet settings: value within 3 errors of the FD expected
    between two finite samples, (2 d + d (d + 1) / 2) / n = 1.2e-4 (the error covers only the
    batch noise; see the FPD Notes)."""
    ref, cand, _ = gaussians
    res = frechet_physics_distance(ref, cand, normalise="std", seed=1)
    assert isinstance(res, DistanceResult) and res.note == ""
    d, n = 3, len(ref)
    finite_sample = (2 * d + d * (d + 1) / 2) / n
    assert 0 <= res.value < 3 * res.error + 2 * finite_sample, res
    json.dumps(res.to_dict(), allow_nan=False)


def test_fpd_of_a_tenth_sigma_shift(gaussians) -> None:
    """A 0.1-sigma shift of one of 3 features: FD = |dmu|^2 = 0.01 (covariances equal)."""
    ref, _, other = gaussians
    cand = other + np.array([0.1, 0.0, 0.0])
    res = frechet_physics_distance(ref, cand, normalise="std", seed=1)
    assert res.value == pytest.approx(0.01, abs=max(0.002, 3 * res.error)), res
    assert res.value > 10 * res.error
    # JetNet normalisation divides by the reference's max |value| per feature
    scale = np.abs(ref).max(axis=0)
    jetnet = frechet_physics_distance(ref, cand, seed=1)
    raw = frechet_physics_distance(ref / scale, cand / scale, normalise=False, seed=1)
    assert jetnet.value == pytest.approx(raw.value, rel=1e-12)
    assert jetnet.value == pytest.approx(0.01 / scale[0] ** 2, rel=0.3)


def test_fpd_weighted_reference() -> None:
    """Importance weights w = exp(0.1 x - 0.005) turn N(0, 1) into N(0.1, 1): FPD against an
    N(0.1, 1) candidate is ~0 with the weights and ~0.01 without."""
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(60_000, 2))
    w = np.exp(0.1 * ref[:, 0] - 0.005)
    cand = rng.normal(size=(60_000, 2)) + np.array([0.1, 0.0])
    weighted = frechet_physics_distance(ref, cand, w, normalise=False, seed=1)
    plain = frechet_physics_distance(ref, cand, normalise=False, seed=1)
    assert weighted.value < 3 * weighted.error + 5e-4, weighted
    assert plain.value == pytest.approx(0.01, abs=0.003)


def test_fpd_small_samples_shrink_the_range_and_say_so() -> None:
    rng = np.random.default_rng(4)
    res = frechet_physics_distance(rng.normal(size=(1000, 2)), rng.normal(size=(3000, 2)), seed=1)
    assert "only 1000 events" in res.note and "400-1000" in res.note
    assert (res.n_reference, res.n_candidate) == (1000, 3000)
    with pytest.raises(InputError, match="candidate: 150 events; FPD needs at least 200"):
        frechet_physics_distance(rng.normal(size=(1000, 2)), rng.normal(size=(150, 2)))
    with pytest.raises(InputError, match="min_samples=500 must be smaller"):
        frechet_physics_distance(
            rng.normal(size=(1000, 2)), rng.normal(size=(1000, 2)), min_samples=500, max_samples=400
        )


# ------------------------------------------------------------------------------------------ KPD


def test_kpd_null_and_shift(gaussians) -> None:
    """JetNet settings (10 batches of 5000, 1e5 events): null within 3 errors of 0; a
    0.1-sigma shift of one feature is > 3 errors away, a 0.3-sigma shift > 10 errors."""
    ref, cand, other = gaussians
    null = kernel_physics_distance(ref, cand, seed=1)
    assert abs(null.value) < 3 * null.error + 1e-6, null
    small = kernel_physics_distance(ref, other + np.array([0.1, 0.0, 0.0]), normalise="std", seed=1)
    assert small.value > 3 * small.error, small
    shifted = kernel_physics_distance(
        ref, other + np.array([0.3, 0.0, 0.0]), normalise="std", seed=1
    )
    assert shifted.value > 10 * shifted.error, shifted
    assert shifted.value == pytest.approx(9 * small.value, rel=0.5)  # ~ quadratic in the shift
    assert null.note == "" and shifted.n_candidate == 100_000


def test_kpd_uses_the_unbiased_polynomial_mmd() -> None:
    """KPD is the median over batches of mmd.py's unbiased polynomial-kernel MMD^2: with 40
    batches of 100 events it agrees with that MMD^2 on the full samples within errors."""
    rng = np.random.default_rng(5)
    ref, cand = rng.normal(size=(400, 2)), rng.normal(0.5, 1.0, size=(400, 2))
    res = kernel_physics_distance(
        ref, cand, num_batches=40, batch_size=100, normalise=False, seed=2
    )
    full = mmd2_unbiased(ref, cand, kernel="polynomial", dtype="float64")
    # the median over batches estimates the same quantity as the full-sample MMD^2
    assert res.value == pytest.approx(full, abs=3 * res.error)
    assert res.error > 0


def test_kpd_small_samples_and_errors() -> None:
    rng = np.random.default_rng(6)
    res = kernel_physics_distance(rng.normal(size=(3000, 2)), rng.normal(size=(3000, 2)), seed=1)
    assert "batches of 1500 instead of 5000" in res.note
    with pytest.raises(InputError, match="reference: 50 events; KPD needs at least 100"):
        kernel_physics_distance(rng.normal(size=(50, 2)), rng.normal(size=(500, 2)))
    with pytest.raises(InputError, match="candidate: has 3 features where 2"):
        kernel_physics_distance(rng.normal(size=(500, 2)), rng.normal(size=(500, 3)))
    bad = rng.normal(size=(500, 2))
    bad[3, 0] = np.inf
    with pytest.raises(InputError, match="reference: 1 of 500 events have NaN or infinite"):
        kernel_physics_distance(bad, rng.normal(size=(500, 2)))
    with pytest.raises(InputError, match="candidate: no events"):
        frechet_physics_distance(rng.normal(size=(500, 2)), np.empty((0, 2)))
    with pytest.raises(InputError, match="normalise='minmax'"):
        frechet_physics_distance(
            rng.normal(size=(500, 2)), rng.normal(size=(500, 2)), normalise="minmax"
        )


# ----------------------------------------------------------------------------------------- PRDC


def brute_prdc(x, y, k):
    """Naeem et al.'s definitions with full numpy distance matrices (closed balls)."""
    dxx, dyy, dxy = cdist(x, x), cdist(y, y), cdist(x, y)
    r = np.sort(dxx, axis=1)[:, k]
    s = np.sort(dyy, axis=1)[:, k]
    inside = dxy <= r[:, None]  # (real, fake)
    return (
        inside.any(axis=0).mean(),
        (dxy <= s[None, :]).any(axis=1).mean(),
        inside.sum() / (k * len(y)),
        inside.any(axis=1).mean(),
    )


def test_prdc_matches_brute_force_with_small_chunks() -> None:
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(300, 3)), rng.normal(0.3, 1.2, size=(200, 3))
    res = prdc(x, y, chunk_size=64, standardize=False)
    expected = brute_prdc(x, y, 5)
    got = (res.precision, res.recall, res.density, res.coverage)
    # float32 distances: at most an event or two can sit on a ball's edge
    np.testing.assert_allclose(got, expected, atol=2.5 / 200)
    assert (res.k, res.n_reference, res.n_candidate) == (5, 300, 200)
    assert isinstance(res, PRDCResult)
    json.dumps(res.to_dict(), allow_nan=False)


def test_prdc_same_distribution() -> None:
    """5000 vs 5000 Gaussian events in 3-D, k = 5: density ~ 1, coverage ~ 1 - 2^-5 = 0.969."""
    rng = np.random.default_rng(8)
    res = prdc(rng.normal(size=(5000, 3)), rng.normal(size=(5000, 3)), seed=1)
    assert 0.9 <= res.density <= 1.1
    assert res.coverage == pytest.approx(1 - 2**-5, abs=0.015)
    assert res.precision > 0.9 and res.recall > 0.9


def test_prdc_mode_collapse() -> None:
    """Reference: two well separated modes; candidate: only one of them.  Recall and coverage
    halve, precision stays high, and density stays ~1 (the candidates sit where reference
    events are, each inside ~k reference balls)."""
    rng = np.random.default_rng(9)
    ref = rng.normal(size=(6000, 2)) + np.where(rng.random(6000) < 0.5, -6.0, 6.0)[:, None]
    cand = rng.normal(size=(3000, 2)) + 6.0
    res = prdc(ref, cand, seed=1)
    assert res.precision > 0.9
    assert res.recall == pytest.approx(0.5, abs=0.05)
    assert res.coverage == pytest.approx(0.5 * (1 - 2**-5), abs=0.05)
    assert res.density == pytest.approx(1.0, abs=0.1)


def test_prdc_integer_features_and_subsampling() -> None:
    """Integer-valued features (many coincident events, zero radii): closed balls keep
    precision and recall near 1 for identical distributions; max_events subsamples."""
    rng = np.random.default_rng(10)
    ref, cand = rng.poisson(2.0, size=(4000, 2)), rng.poisson(2.0, size=(4000, 2))
    res = prdc(ref, cand, max_events=3000, seed=1)
    assert (res.n_reference, res.n_candidate) == (3000, 3000)
    assert res.precision > 0.95 and res.recall > 0.95 and res.coverage > 0.95


def test_prdc_weights_by_accept_reject() -> None:
    """Reference N(0, 1) with weights exp(x0 - 0.5) (= N(1, 1) after reweighting) against an
    N(1, 1) candidate: with the weights the metrics match the null values."""
    rng = np.random.default_rng(11)
    ref = rng.normal(size=(12000, 2))
    w = np.exp(ref[:, 0] - 0.5)
    cand = rng.normal(size=(3000, 2)) + np.array([1.0, 0.0])
    res = prdc(ref, cand, w, max_events=3000, seed=1)
    assert "reference: unweighted by accept-reject" in res.note
    assert 0.9 <= res.density <= 1.1 and res.coverage > 0.94
    plain = prdc(ref, cand, max_events=3000, seed=1)
    assert plain.coverage < res.coverage - 0.05
    with pytest.raises(InputError, match="candidate: 5 events"):
        prdc(ref, cand[:5])


def test_prdc_bad_input_names_the_sample() -> None:
    rng = np.random.default_rng(12)
    x = rng.normal(size=(100, 2))
    with pytest.raises(InputError, match="candidate: has 3 features where 2"):
        prdc(x, rng.normal(size=(100, 3)))
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(InputError, match="reference: 1 of 100 events have NaN"):
        prdc(bad, x)
    with pytest.raises(InputError, match="reference: no events"):
        prdc(np.empty((0, 2)), x)
    with pytest.raises(InputError, match="candidate: weights sum to"):
        prdc(x, x, None, -np.ones(100))
    with pytest.raises(InputError, match="k=0"):
        prdc(x, x, k=0)
