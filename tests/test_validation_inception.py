"""Tests of the Inception-score analogue (hepgen.validation.inception).

The toy: jets of three flavours (light 0, charm 4, bottom 5; fractions 0.6 / 0.15 / 0.25)
with overlapping but flavour-dependent features: a b-tag-like score (beta distributions),
a secondary-vertex-mass-like feature (normal, GeV), a track count (Poisson) and a
flavour-independent pt (log-normal, GeV).  Calibration counts rejections at alpha = 0.05
under the null (candidate = fresh draws of the same model); power demands p < 1e-3 on a
b/light flavour mix-up at a stated size.  Everything is seeded.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from scipy import stats

from hepgen.errors import InputError
from hepgen.validation.inception import MAX_CLASSES, InceptionResult, inception_score

FLAVOURS = (0, 4, 5)
LIGHT, CHARM, BOTTOM = 0, 1, 2  # rows / columns of the confusion matrices
# Small boosted trees, one thread (tiny fits gain nothing from more threads on a busy machine).
FAST = {"n_estimators": 60, "early_stopping_rounds": 5, "device": "cpu", "n_jobs": 1}


def jet_features(flavour: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Features (n, 4) of jets generated as ``flavour``: pt [GeV], b-tag score, mass [GeV],
    number of tracks."""
    b, c = flavour == 5, flavour == 4
    btag = rng.beta(np.select([b, c], [5.0, 2.0], 1.0), np.select([b, c], [1.5, 3.0], 5.0))
    mass = rng.normal(np.select([b, c], [12.0, 10.0], 8.0), 3.0)
    ntrk = rng.poisson(np.select([b, c], [10.0, 8.0], 6.0)).astype(np.float64)
    pt = rng.lognormal(3.5, 0.5, flavour.size)
    return np.column_stack([pt, btag, mass, ntrk])


def draw(
    n: int, rng: np.random.Generator, mixup: float = 0.0, collapse_to: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` jets and their true flavours.  ``mixup``: that fraction of the b jets is generated
    with light-jet features (labels stay 5); ``collapse_to``: every jet gets that flavour's
    features (a generator that collapsed all classes onto one)."""
    flavour = rng.choice(FLAVOURS, size=n, p=[0.6, 0.15, 0.25])
    generated = flavour.copy()
    if mixup:
        bs = np.flatnonzero(flavour == 5)
        generated[bs[rng.random(bs.size) < mixup]] = 0
    if collapse_to is not None:
        generated[:] = collapse_to
    return jet_features(generated, rng), flavour


def null_pvalues(reps: int, weighted: bool = False) -> np.ndarray:
    """p-values of ``reps`` reference (2000 jets) vs fresh candidate (1000 jets) comparisons;
    with ``weighted``, exponential weights on both samples."""
    out = []
    for s in range(reps):
        rng = np.random.default_rng(1000 + s)
        x1, y1 = draw(2000, rng)
        x2, y2 = draw(1000, rng)
        w1 = rng.exponential(1.0, 2000) if weighted else None
        w2 = rng.exponential(1.0, 1000) if weighted else None
        out.append(inception_score(x1, x2, y1, y2, w1, w2, seed=s, **FAST).pvalue)
    return np.array(out)


# ---------------------------------------------------------------------------------------------
# Calibration
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("weighted", [False, True])
def test_null_rejection_rate_default(weighted: bool) -> None:
    p = null_pvalues(50, weighted)
    # 50 repetitions: rejections ~ Binomial(50, 0.05) (mean 2.5); P(X >= 8) = 0.003, so at most
    # 7 (rate <= 0.14).  The lower end cannot be tested at this count (P(X = 0) = 0.077).
    assert (p < 0.05).sum() <= 7
    # The p-values are uniform under the null: KS against U(0, 1) must not reject at 1e-3.
    assert stats.kstest(p, "uniform").pvalue > 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("weighted", [False, True])
def test_null_rejection_rate_full(weighted: bool) -> None:
    p = null_pvalues(400, weighted)
    # Measured (these seeds and settings): 0.0525 unweighted, 0.0525 weighted.
    assert 0.02 <= (p < 0.05).mean() <= 0.09


# ---------------------------------------------------------------------------------------------
# Power: a b/light flavour mix-up
# ---------------------------------------------------------------------------------------------


def test_b_light_mixup_detected_and_visible_in_confusion() -> None:
    rng = np.random.default_rng(7)
    x1, y1 = draw(4000, rng)
    x2, y2 = draw(2000, rng, mixup=0.15)  # 15 % of the candidate's b jets look light
    r = inception_score(x1, x2, y1, y2, seed=0, **FAST)
    # Size: 2000 reference jets train, 2000 held out; 2000 candidate jets.  Measured over 100
    # seeds: p < 1e-3 in 100 % (median p 1e-11); with a 10 % mix-up in 98 %.
    assert (r.n_train, r.n_reference, r.n_candidate) == (2000, 2000, 2000)
    assert r.pvalue < 1e-3
    assert r.pvalues_per_class[BOTTOM] < 1e-3  # the b row is the one that differs
    # The b row's light column grows by about the mixed-up fraction.
    grow = r.confusion_candidate[BOTTOM][LIGHT] - r.confusion_reference[BOTTOM][LIGHT]
    assert 0.08 < grow < 0.25
    assert r.accuracy_candidate[BOTTOM] < r.accuracy_reference[BOTTOM] - 0.08
    # The light and charm rows are untouched.
    assert abs(r.accuracy_candidate[LIGHT] - r.accuracy_reference[LIGHT]) < 0.03


# ---------------------------------------------------------------------------------------------
# The scores
# ---------------------------------------------------------------------------------------------


def test_identical_samples_scores_agree_within_noise() -> None:
    diffs, errs, ms_diffs, ms_errs = [], [], [], []
    for s in range(25):
        rng = np.random.default_rng(500 + s)
        x1, y1 = draw(3000, rng)
        x2, y2 = draw(1500, rng)
        r = inception_score(x1, x2, y1, y2, seed=s, **FAST)
        assert 1.0 < r.inception_score_reference < 3.0  # between 1 and the number of classes
        diffs.append(r.inception_score_candidate - r.inception_score_reference)
        errs.append(np.hypot(r.inception_score_candidate_error, r.inception_score_reference_error))
        ms_diffs.append(r.mode_score_candidate - r.mode_score_reference)
        ms_errs.append(np.hypot(r.mode_score_candidate_error, r.mode_score_reference_error))
        assert abs(diffs[-1]) < 4 * errs[-1]
        assert abs(ms_diffs[-1]) < 4 * ms_errs[-1]
        # The held-out reference predicts the training label mix: MS is close to IS.
        assert r.mode_score_reference <= r.inception_score_reference
        assert r.mode_score_reference > 0.98 * r.inception_score_reference
    # The stated errors are the size of the real scatter (delta method, classifier fixed).
    # Measured scatter / stated error: 0.69 over these 25 seeds (the sample std of 25 values
    # has a relative error of ~14 %), 0.91 over 150 seeds, 0.98 over 400 draws scored by one
    # fixed classifier; the band is wide enough for 25 values.
    for d, e in ((diffs, errs), (ms_diffs, ms_errs)):
        ratio = np.std(d, ddof=1) / np.mean(e)
        assert 0.5 < ratio < 1.6, ratio


def test_collapsed_generator_has_lower_inception_score() -> None:
    rng = np.random.default_rng(3)
    x1, y1 = draw(4000, rng)
    x2, y2 = draw(2000, rng, collapse_to=5)  # every jet generated as a b jet
    r = inception_score(x1, x2, y1, y2, seed=0, **FAST)
    err = np.hypot(r.inception_score_candidate_error, r.inception_score_reference_error)
    assert r.inception_score_candidate < r.inception_score_reference - 5 * err
    assert r.inception_score_candidate < 1.3
    # The predicted mix is far from the training label mix: the mode score adds a penalty.
    assert r.mode_score_candidate < 0.9 * r.inception_score_candidate
    assert r.pvalue < 1e-3
    assert r.accuracy_candidate[LIGHT] < 0.2


# ---------------------------------------------------------------------------------------------
# Labels, inputs, results
# ---------------------------------------------------------------------------------------------


def test_float_labels_and_explicit_classes() -> None:
    rng = np.random.default_rng(1)
    x1, y1 = draw(1200, rng)
    x2, y2 = draw(600, rng)
    r = inception_score(x1, x2, y1.astype(float), y2.astype(np.float32), seed=0, **FAST)
    assert r.classes == [0, 4, 5]
    r2 = inception_score(x1, x2, y1, y2, classes=[5.0, 0, 4], seed=0, **FAST)
    assert r2.classes == [0, 4, 5] and r2.pvalue == r.pvalue


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"reference_labels": "half"}, "not a class label"),
        ({"reference_labels": "many"}, f"more than {MAX_CLASSES}"),
        ({"reference_labels": "short"}, "one label per row"),
        ({"candidate_labels": "new"}, "class [7] is not among"),
        ({"candidate": "narrow"}, "has 3 features where 4"),
        ({"feature_names": ["pt", "btag"]}, "2 names for 4"),
        ({"classes": [0, 4, 5, 9]}, "class 9 (0 rows)"),
        ({"train_fraction": 1.0}, "train_fraction"),
        ({"candidate_weights": "nan"}, "candidate weights"),
        ({"classifier": "torch"}, "classifier='torch'"),
    ],
)
def test_bad_inputs_raise_input_error(change: dict, message: str) -> None:
    rng = np.random.default_rng(2)
    x1, y1 = draw(600, rng)
    x2, y2 = draw(300, rng)
    kw = {
        "reference": x1,
        "candidate": x2,
        "reference_labels": y1,
        "candidate_labels": y2,
        **FAST,
    }
    for key, value in change.items():
        if value == "half":
            value = y1 + 0.5
        elif value == "many":
            value = np.arange(y1.size) % 25
        elif value == "short":
            value = y1[:-1]
        elif value == "new":
            value = np.where(np.arange(y2.size) == 0, 7, y2)
        elif value == "narrow":
            value = x2[:, :3]
        elif value == "nan":
            value = np.full(y2.size, np.nan)
        kw[key] = value
    with pytest.raises(InputError, match=re.escape(message)):
        inception_score(**kw)


def test_same_seed_same_result_and_json() -> None:
    rng = np.random.default_rng(4)
    x1, y1 = draw(1500, rng)
    x2, y2 = draw(800, rng)
    a = inception_score(x1, x2, y1, y2, seed=11, **FAST).to_dict()
    b = inception_score(x1, x2, y1, y2, seed=11, **FAST).to_dict()
    c = inception_score(x1, x2, y1, y2, seed=12, **FAST).to_dict()
    assert a == b and a != c
    json.dumps(a)
    for key in (
        "classes",
        "inception_score_reference",
        "inception_score_candidate",
        "mode_score_reference",
        "mode_score_candidate",
        "confusion_reference",
        "confusion_candidate",
        "accuracy_reference",
        "accuracy_candidate",
        "statistic",
        "ndf",
        "pvalue",
        "n_train",
        "n_reference",
        "n_candidate",
        "note",
    ):
        assert key in a
    assert len(a["confusion_reference"]) == 3 and len(a["confusion_reference"][0]) == 3
    compact = inception_score(x1, x2, y1, y2, seed=11, **FAST).to_dict(arrays=False)
    assert compact == a  # the confusions are small: kept in the compact form (metrics.json)


def test_caps_weights_and_absent_class_in_candidate() -> None:
    rng = np.random.default_rng(5)
    x1, y1 = draw(3000, rng)
    x2, y2 = draw(1000, rng)
    keep = y2 != 4  # the candidate carries no charm jets: its charm row is empty
    w1 = rng.normal(1.0, 0.6, y1.size)  # some negative (sWeight-like)
    r = inception_score(
        x1, x2[keep], y1, y2[keep], w1, max_events=500, max_train=800, seed=0, **FAST
    )
    assert isinstance(r, InceptionResult)
    assert (r.n_train, r.n_reference, r.n_candidate) == (800, 500, 500)
    assert "subsampled" in r.note and "negative training weights" in r.note and "'WW'" in r.note
    d = r.to_dict()
    assert d["confusion_candidate"][CHARM] == [None, None, None]
    assert d["pvalues_per_class"][CHARM] is None
    assert 2 <= r.ndf <= 4  # light and b rows, up to 3 cells each (sparse cells merged)


def test_sklearn_backend_and_process_state() -> None:
    xgb = pytest.importorskip("xgboost")
    before = xgb.get_config()
    rng = np.random.default_rng(6)
    x1, y1 = draw(1500, rng)
    x2, y2 = draw(800, rng)
    r = inception_score(x1, x2, y1, y2, classifier="sklearn", seed=0, **FAST)
    assert r.classifier == "sklearn-hgb" and 3 <= r.ndf <= 6 and 0.0 <= r.pvalue <= 1.0
    r = inception_score(x1, x2, y1, y2, classifier="xgboost", seed=0, **FAST)
    assert r.classifier == "xgboost"
    assert xgb.get_config() == before  # the thread setting is restored
