"""An Inception-score analogue: a physics classifier stands in for the Inception network.

A gradient-boosted multiclass classifier (xgboost ``multi:softprob``, or scikit-learn's
histogram gradient boosting where xgboost is not installed) learns a class label carried by
every row (e.g. the jet flavour ``GenJet_hadronFlavour`` 0/4/5) from the other features (the
reco features) on a stratified part of the reference, with early stopping on the log-loss of
a validation split of that part.  It then scores the held-out reference and the candidate,
neither of which it has seen, and :func:`inception_score` reports for both:

* the Inception score ``IS = exp E_x KL(p(y|x) || p(y))``, ``p(y)`` the sample's mean
  prediction (Salimans et al. 2016): high when each row is classified confidently *and*
  the classes are all populated;
* the mode score (Che et al. 2017), ``IS * exp(-KL(p(y) || p*(y)))`` with ``p*`` the
  training label distribution: it also penalises a predicted class mix unlike the data's;
* the confusion matrix (rows: the true class carried by the row, columns: the predicted
  class), row-normalised, and the per-class accuracy: a model that blurs b and light jets
  shows a larger b-row / light-column entry than the reference;
* a calibrated p-value: the rows of the two confusion matrices (predicted-class counts per
  true class) compared by Gagunashvili's two-sample chi2 (:mod:`.univariate.chi2`, "UU", or
  "WW" with weights), summed over the true classes with their degrees of freedom.

Why a test on the confusion rows and not on the IS itself: the IS has no known null
distribution (its noise depends on the classifier and on the class mix), it mixes classes
(a generator whose light jets look like b jets and whose b jets look light keeps the same
IS), and it depends on the candidate's label mix, which a conditional generator takes from
its input.  Conditioning on the true class removes the label mix, and because the classifier
is trained on rows neither sample contains, the predicted classes of the held-out reference
and of the candidate are, under the null, draws from the same multinomial per true class:
the chi2 is calibrated whatever the classifier's quality (a poor classifier only costs
power).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from scipy import stats

from hepgen.devices import xgboost_device
from hepgen.errors import InputError
from hepgen.validation._checks import MetricResult, as_matrix, check_weights, rng_from
from hepgen.validation._classifiers import resolve_classifier
from hepgen.validation.univariate.binning import Histograms
from hepgen.validation.univariate.chi2 import chi2_from_histograms

__all__ = ["MAX_CLASSES", "InceptionResult", "inception_score"]

#: More distinct label values than this are not a class label.
MAX_CLASSES = 20
#: Fewest reference training rows per class.
MIN_TRAIN_PER_CLASS = 5
#: Cells of a confusion row with fewer (reference + candidate) rows are merged.
MIN_CELL = 10


@dataclasses.dataclass(frozen=True)
class InceptionResult(MetricResult):
    """Result of :func:`inception_score`.

    Attributes
    ----------
    classes : list of int
        The class labels, in the order of the confusion rows and columns.
    inception_score_reference, inception_score_candidate : float
        ``exp E_x KL(p(y|x) || p(y))`` of the held-out reference and of the candidate
        (dimensionless, between 1 and the number of classes).
    inception_score_reference_error, inception_score_candidate_error : float
        Their standard errors (delta method, Kish effective sizes; the classifier fixed).
    mode_score_reference, mode_score_candidate : float
        ``exp(E_x KL(p(y|x) || p(y)) - KL(p(y) || p*(y)))``, ``p*`` the training label mix.
    mode_score_reference_error, mode_score_candidate_error : float
        Their standard errors (delta method).
    confusion_reference, confusion_candidate : list of list of float, K x K
        Row-normalised confusion matrices (row: true class, column: predicted class);
        a class absent from a sample has a row of NaN (``None`` in JSON).
    accuracy_reference, accuracy_candidate : list of float, length K
        Per-class accuracy (the diagonals).
    statistic : float
        Sum over the true classes of the two-sample chi2 of the confusion rows.
    ndf : int
        Its degrees of freedom (cells minus one per true class, after merging sparse cells).
    pvalue : float or None
        ``P(chi2_ndf >= statistic)``; ``None`` when ``ndf == 0``.
    pvalues_per_class : list of float or None, length K
        The chi2 p-value of each true class's row (``None`` where untestable).
    n_train : int
        Reference rows used to train the classifier (early-stopping split included).
    n_reference, n_candidate : int
        Rows scored: held-out reference and candidate (after capping at ``max_events``).
    classifier : str
        ``"xgboost"`` or ``"sklearn-hgb"``.
    best_iteration : int
        The boosting round early stopping kept (0-based).
    note : str
        Subsampling, fallbacks, weights handling; empty when there is nothing to say.

    References
    ----------
    See :func:`inception_score`.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 400)
    >>> x = rng.normal(y[:, None], 1.0, (400, 1))
    >>> d = inception_score(x, x, y, y, device="cpu", n_jobs=1).to_dict(arrays=False)
    >>> len(d["confusion_reference"]), d["classes"], d["n_train"]
    (2, [0, 1], 200)
    """

    # the K x K confusions are small and what a reader looks at: kept in metrics.json
    _array_fields: ClassVar[tuple[str, ...]] = ()

    classes: list[int]
    inception_score_reference: float
    inception_score_candidate: float
    mode_score_reference: float
    mode_score_candidate: float
    confusion_reference: list[list[float]]
    confusion_candidate: list[list[float]]
    accuracy_reference: list[float]
    accuracy_candidate: list[float]
    statistic: float
    ndf: int
    pvalue: float | None
    n_train: int
    n_reference: int
    n_candidate: int
    note: str = ""
    inception_score_reference_error: float = float("nan")
    inception_score_candidate_error: float = float("nan")
    mode_score_reference_error: float = float("nan")
    mode_score_candidate_error: float = float("nan")
    pvalues_per_class: list[float | None] = dataclasses.field(default_factory=list)
    classifier: str = "xgboost"
    best_iteration: int = 0


def inception_score(
    reference: Any,
    candidate: Any,
    reference_labels: Any,
    candidate_labels: Any,
    reference_weights: Any = None,
    candidate_weights: Any = None,
    *,
    feature_names: Sequence[str] | None = None,
    classes: Sequence[float] | None = None,
    train_fraction: float = 0.5,
    max_events: int = 100_000,
    max_train: int = 50_000,
    classifier: str = "auto",
    device: str = "auto",
    learning_rate: float = 0.3,
    max_depth: int = 4,
    n_estimators: int = 200,
    early_stopping_rounds: int = 10,
    n_jobs: int | None = None,
    seed: int | np.random.Generator | None = 0,
) -> InceptionResult:
    """Inception score, mode score, confusion and a calibrated test with a physics classifier.

    Parameters
    ----------
    reference, candidate : array-like of shape (n1, d) and (n2, d)
        The classifier's input features (physical units; trees need no scaling).
    reference_labels, candidate_labels : array-like of shape (n1,) and (n2,)
        The class of each row (e.g. the gen jet flavour 0/4/5), integer or float codes
        (``5.0`` is class 5); for the candidate, the class it was generated for.
    reference_weights, candidate_weights : array-like of shape (n1,) and (n2,), optional
        Per-row weights (negative allowed).  Training uses them clipped at 0; the scores,
        confusions and the chi2 ("WW") use the signed weights.
    feature_names : sequence of str, optional
        Names of the d features (only checked and used in messages).
    classes : sequence of numbers, optional
        The classes, in the order wanted; default: the sorted label values of the reference.
        Every label of both samples must be one of them.
    train_fraction : float
        Part of the reference (stratified by class) that trains the classifier; the rest is
        the held-out reference.  A fifth of the training part is the early-stopping split.
    max_events : int
        Most rows scored per sample (held-out reference, candidate); a seeded subsample.
    max_train : int
        Most reference rows used for training.
    classifier : {"auto", "xgboost", "sklearn"}
        The boosted trees (:func:`hepgen.validation._classifiers.resolve_classifier`).
    device : str
        xgboost's device (``"auto"``, ``"cpu"``, ``"cuda"``, ...).
    learning_rate, max_depth, n_estimators, early_stopping_rounds : float, int, int, int
        Boosting settings (shrinkage, depth, most rounds, patience on the validation log-loss).
    n_jobs : int or None
        Threads (None: the library default).
    seed : int, numpy.random.Generator or None
        Seeds the split, the subsampling and the booster; same seed, same result.

    Returns
    -------
    InceptionResult

    Raises
    ------
    InputError
        Shapes or feature counts that do not match, labels that are not class codes (not
        integer-valued, or more than ``MAX_CLASSES`` values), a candidate label the reference
        lacks, a class with fewer than 5 training rows, bad weights or settings.

    Notes
    -----
    The p-value tests the confusion rows, not the IS: the IS has no known null distribution,
    ignores which class is which, and moves with the candidate's label mix (see the module
    docstring).  The IS and the mode score are effect sizes, to be read against the held-out
    reference's values (the reference-vs-reference baseline) and their standard errors.

    References
    ----------
    - T. Salimans et al., "Improved Techniques for Training GANs", NeurIPS 2016,
      arXiv:1606.03498 (the Inception score).
    - T. Che et al., "Mode Regularized Generative Adversarial Networks", ICLR 2017,
      arXiv:1612.02136 (the mode score).  Written with ``p*`` in the first KL, as it is
      sometimes quoted, the expression reduces algebraically to the IS; the marginal
      penalty ``KL(p(y) || p*(y))`` is what the score adds, so it is applied to the IS.
    - N. D. Gagunashvili, Nucl. Instrum. Meth. A 614 (2010) 287, arXiv:0905.4221 (the chi2).

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> y1, y2 = rng.integers(0, 2, 600), rng.integers(0, 2, 300)
    >>> x1 = rng.normal(2.0 * y1[:, None], 1.0, (600, 2))
    >>> x2 = rng.normal(2.0 * y2[:, None], 1.0, (300, 2))
    >>> r = inception_score(x1, x2, y1, y2, device="cpu", n_jobs=1)
    >>> r.classes, r.ndf, 1.0 < r.inception_score_reference < 2.0
    ([0, 1], 2, True)
    """
    rng = rng_from(seed)
    x1 = as_matrix(reference, "reference")
    x2 = as_matrix(candidate, "candidate", n_features=x1.shape[1])
    if feature_names is not None and len(feature_names) != x1.shape[1]:
        raise InputError(
            f"feature_names: {len(feature_names)} names for {x1.shape[1]} feature columns"
        )
    y1 = _labels(reference_labels, x1.shape[0], "reference_labels")
    y2 = _labels(candidate_labels, x2.shape[0], "candidate_labels")
    w1 = check_weights(reference_weights, x1.shape[0], "reference weights")
    w2 = check_weights(candidate_weights, x2.shape[0], "candidate weights")
    if not 0.0 < train_fraction < 1.0:
        raise InputError(f"train_fraction={train_fraction}: expected a number in (0, 1)")
    if max_events < 2 or max_train < 2 * MIN_TRAIN_PER_CLASS:
        raise InputError(f"max_events={max_events}, max_train={max_train}: too small")
    cls = _classes(y1, y2, classes)
    k1, k2 = np.searchsorted(cls, y1), np.searchsorted(cls, y2)
    notes: list[str] = []
    backend, backend_note = resolve_classifier(classifier)
    if backend_note:
        notes.append(backend_note.replace("the classifier test", "the Inception-score analogue"))
    run_on = "cpu"
    if backend == "xgboost":
        run_on, device_note = xgboost_device(device, "the Inception-score analogue")
        if device_note:
            notes.append(device_note)

    train, held = _stratified_split(k1, len(cls), train_fraction, rng)
    train = _cap(train, max_train, rng, "reference training part", notes)
    held = _cap(held, max_events, rng, "held-out reference", notes)
    cand = _cap(np.arange(x2.shape[0]), max_events, rng, "candidate", notes)
    counts = np.bincount(k1[train], minlength=len(cls))
    if counts.min() < MIN_TRAIN_PER_CLASS:
        bad = [f"{cls[i]} ({counts[i]} rows)" for i in np.flatnonzero(counts < MIN_TRAIN_PER_CLASS)]
        raise InputError(
            f"reference_labels: class {', '.join(bad)} in the training part; at least "
            f"{MIN_TRAIN_PER_CLASS} rows per class are needed (pass classes= without it, or "
            "more reference events)"
        )
    wt = None if w1 is None else np.clip(w1[train], 0.0, None)
    if w1 is not None and (w1[train] < 0).any():
        notes.append("negative training weights set to 0 (boosted trees need w >= 0)")
    fit_seed = int(rng.integers(2**31 - 1))
    prob, best = _fit_predict(
        backend,
        x1[train],
        k1[train],
        wt,
        [x1[held], x2[cand]],
        len(cls),
        rng,
        params={
            "learning_rate": learning_rate,
            "max_depth": max_depth,
            "n_estimators": n_estimators,
            "early_stopping_rounds": early_stopping_rounds,
            "device": run_on,
            "n_jobs": n_jobs,
            "seed": fit_seed,
        },
    )
    # p*: the training label mix (weights clipped like the training itself).
    prior = np.bincount(k1[train], weights=wt, minlength=len(cls)).astype(np.float64)
    prior = np.clip(prior / prior.sum(), 1e-12, None)
    v1 = None if w1 is None else w1[held]
    v2 = None if w2 is None else w2[cand]
    s1 = _scores(prob[0], v1, prior)
    s2 = _scores(prob[1], v2, prior)
    conf1, tot1 = _confusion(k1[held], prob[0].argmax(axis=1), v1, len(cls))
    conf2, tot2 = _confusion(k2[cand], prob[1].argmax(axis=1), v2, len(cls))
    statistic, ndf, per_class = _chi2_rows(
        k1[held], prob[0].argmax(axis=1), v1, k2[cand], prob[1].argmax(axis=1), v2, len(cls)
    )
    if w1 is not None or w2 is not None:
        notes.append("weighted: scores and confusions use signed weights, the chi2 is 'WW'")
    with np.errstate(invalid="ignore", divide="ignore"):
        norm1 = conf1 / tot1[:, None]
        norm2 = conf2 / tot2[:, None]
    return InceptionResult(
        classes=[int(c) for c in cls],
        inception_score_reference=s1[0],
        inception_score_candidate=s2[0],
        mode_score_reference=s1[2],
        mode_score_candidate=s2[2],
        confusion_reference=norm1.tolist(),
        confusion_candidate=norm2.tolist(),
        accuracy_reference=np.diag(norm1).tolist(),
        accuracy_candidate=np.diag(norm2).tolist(),
        statistic=statistic,
        ndf=ndf,
        pvalue=float(stats.chi2.sf(statistic, ndf)) if ndf > 0 else None,
        n_train=int(train.size),
        n_reference=int(held.size),
        n_candidate=int(cand.size),
        note="; ".join(notes),
        inception_score_reference_error=s1[1],
        inception_score_candidate_error=s2[1],
        mode_score_reference_error=s1[3],
        mode_score_candidate_error=s2[3],
        pvalues_per_class=per_class,
        classifier="xgboost" if backend == "xgboost" else "sklearn-hgb",
        best_iteration=best,
    )


# --------------------------------------------------------------------------------------------
# Labels, classes, splits
# --------------------------------------------------------------------------------------------


def _labels(labels: Any, n: int, name: str) -> np.ndarray:
    """Class codes as int64, shape (n,); raise unless integer-valued, finite and few."""
    try:
        arr = np.asarray(labels, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InputError(f"{name}: expected numeric class codes (e.g. 0, 4, 5): {err}") from None
    if arr.ndim != 1 or arr.shape[0] != n:
        raise InputError(f"{name}: expected shape ({n},) (one label per row), got {arr.shape}")
    if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
        raise InputError(
            f"{name}: not a class label (values must be finite integer codes such as 0, 4, 5)"
        )
    if np.unique(arr).size > MAX_CLASSES:
        raise InputError(
            f"{name}: {np.unique(arr).size} distinct values, more than {MAX_CLASSES}: "
            "not a class label (a continuous feature?)"
        )
    return arr.astype(np.int64)


def _classes(y1: np.ndarray, y2: np.ndarray, classes: Sequence[float] | None) -> np.ndarray:
    """The sorted class codes; every label of both samples must be one of them."""
    if classes is None:
        cls = np.unique(y1)
    else:
        cls = np.unique(_labels(np.asarray(classes), len(classes), "classes"))
        if cls.size < len(classes):
            raise InputError("classes: repeated values")
    if cls.size < 2:
        raise InputError(f"reference_labels: only class {cls.tolist()}; at least 2 are needed")
    for y, name in ((y1, "reference_labels"), (y2, "candidate_labels")):
        extra = np.setdiff1d(np.unique(y), cls)
        if extra.size:
            raise InputError(
                f"{name}: class {extra.tolist()} is not among the classes {cls.tolist()} "
                "(the reference must contain every class the candidate carries)"
            )
    return cls


def _stratified_split(
    k: np.ndarray, n_classes: int, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the training part (``fraction`` of each class) and of the rest."""
    train, held = [], []
    for c in range(n_classes):
        idx = rng.permutation(np.flatnonzero(k == c))
        cut = round(fraction * idx.size)
        train.append(idx[:cut])
        held.append(idx[cut:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(held))


def _cap(
    idx: np.ndarray, cap: int, rng: np.random.Generator, name: str, notes: list[str]
) -> np.ndarray:
    """At most ``cap`` of ``idx`` (a seeded subsample, stated in ``notes``)."""
    if idx.size <= cap:
        return idx
    notes.append(f"{name}: {idx.size} rows, subsampled to {cap}")
    return np.sort(rng.choice(idx, cap, replace=False))


# --------------------------------------------------------------------------------------------
# The classifier
# --------------------------------------------------------------------------------------------


def _fit_predict(
    backend: str,
    x: np.ndarray,
    k: np.ndarray,
    w: np.ndarray | None,
    score: list[np.ndarray],
    n_classes: int,
    rng: np.random.Generator,
    params: dict[str, Any],
) -> tuple[list[np.ndarray], int]:
    """Train on 4/5 of ``x``, stop early on the log-loss of the other 1/5, return the class
    probabilities (n_i, K) of each array of ``score`` and the best round."""
    n_val = max(n_classes, x.shape[0] // 5)
    perm = rng.permutation(x.shape[0])
    va, fi = perm[:n_val], perm[n_val:]
    wf = None if w is None else w[fi]
    wv = None if w is None else w[va]
    if backend == "xgboost":
        import xgboost as xgb

        nthread = params["n_jobs"]
        booster_params = {
            "objective": "multi:softprob",
            "num_class": n_classes,
            "eval_metric": "mlogloss",
            "tree_method": "hist",
            "device": params["device"],
            "eta": float(params["learning_rate"]),
            "max_depth": int(params["max_depth"]),
            "verbosity": 0,
            "seed": params["seed"],
            **({} if nthread is None else {"nthread": int(nthread)}),
        }
        # config_context restores xgboost's global thread setting on exit.
        ctx: dict[str, Any] = {} if nthread is None else {"nthread": int(nthread)}
        with xgb.config_context(**ctx):
            dfit = xgb.QuantileDMatrix(x[fi], label=k[fi], weight=wf, nthread=nthread)
            dval = xgb.QuantileDMatrix(x[va], label=k[va], weight=wv, ref=dfit, nthread=nthread)
            booster = xgb.train(
                booster_params,
                dfit,
                num_boost_round=int(params["n_estimators"]),
                evals=[(dval, "validation")],
                verbose_eval=False,
                callbacks=[
                    xgb.callback.EarlyStopping(
                        rounds=int(params["early_stopping_rounds"]),
                        metric_name="mlogloss",
                        data_name="validation",
                        save_best=True,
                    )
                ],
            )
            best = int(getattr(booster, "best_iteration", booster.num_boosted_rounds() - 1))
            # inplace_predict skips building a DMatrix (a third of the scoring time).
            out = [np.asarray(booster.inplace_predict(s), np.float64) for s in score]
        return [p.reshape(-1, n_classes) for p in out], best
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    model = HistGradientBoostingClassifier(
        learning_rate=float(params["learning_rate"]),
        max_depth=int(params["max_depth"]),
        max_iter=int(params["n_estimators"]),
        early_stopping=True,
        scoring="loss",
        n_iter_no_change=int(params["early_stopping_rounds"]),
        random_state=params["seed"],
    )
    with threadpool_limits(limits=params["n_jobs"], user_api="openmp"):
        model.fit(x[fi], k[fi], sample_weight=wf, X_val=x[va], y_val=k[va], sample_weight_val=wv)
        out = [model.predict_proba(s) for s in score]
    # A class missing from the fit split has no column: put the columns in class order.
    full = []
    for p in out:
        q = np.zeros((p.shape[0], n_classes))
        q[:, model.classes_] = p
        full.append(q)
    return full, int(model.n_iter_) - 1


# --------------------------------------------------------------------------------------------
# Scores, confusions, the test
# --------------------------------------------------------------------------------------------


def _scores(p: np.ndarray, w: np.ndarray | None, prior: np.ndarray) -> tuple[float, ...]:
    """(IS, its error, mode score, its error) of class probabilities ``p`` (n, K).

    The standard errors follow from the influence functions of the log scores: for
    ``log IS = mean_x KL(p_x || pbar)`` the influence of row x is ``KL(p_x || pbar)`` itself
    (the derivative of the marginal's entropy cancels the rest), and ``log MS = log IS -
    KL(pbar || p*)`` adds ``-sum_y p_xy log(pbar_y / p*_y)``.
    """
    w = np.ones(p.shape[0]) if w is None else w
    total = w.sum()
    if total <= 0:
        return (np.nan,) * 4
    p = np.clip(p, 1e-12, 1.0)
    p = p / p.sum(axis=1, keepdims=True)
    pbar = np.clip(w @ p / total, 1e-12, None)
    kl_rows = np.sum(p * (np.log(p) - np.log(pbar)), axis=1)
    log_is = float(w @ kl_rows / total)
    marginal = float(np.sum(pbar * (np.log(pbar) - np.log(prior))))
    log_ms = log_is - marginal
    ms_rows = kl_rows - p @ (np.log(pbar) - np.log(prior))
    n_eff = total**2 / float(w @ w)

    def err(rows: np.ndarray) -> float:
        mean = w @ rows / total
        var = float(w @ (rows - mean) ** 2 / total)
        return float(np.sqrt(max(var, 0.0) / n_eff))

    is_, ms = float(np.exp(log_is)), float(np.exp(log_ms))
    return is_, is_ * err(kl_rows), ms, ms * err(ms_rows)


def _confusion(
    true: np.ndarray, pred: np.ndarray, w: np.ndarray | None, n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sums of weights per (true, predicted) class, shape (K, K), and per true class (K,)."""
    flat = np.bincount(true * n_classes + pred, weights=w, minlength=n_classes * n_classes)
    conf = flat.astype(np.float64).reshape(n_classes, n_classes)
    return conf, conf.sum(axis=1)


def _chi2_rows(
    t1: np.ndarray,
    p1: np.ndarray,
    w1: np.ndarray | None,
    t2: np.ndarray,
    p2: np.ndarray,
    w2: np.ndarray | None,
    n_classes: int,
) -> tuple[float, int, list[float | None]]:
    """Summed two-sample chi2 of the confusion rows, its ndf and each row's p-value."""
    weighted = w1 is not None or w2 is not None
    a = np.ones(t1.size) if w1 is None else w1
    b = np.ones(t2.size) if w2 is None else w2
    statistic, ndf, per_class = 0.0, 0, []
    for c in range(n_classes):
        m1, m2 = t1 == c, t2 == c
        if not m1.any() or not m2.any():
            per_class.append(None)
            continue
        n1 = np.bincount(p1[m1], minlength=n_classes)
        n2 = np.bincount(p2[m2], minlength=n_classes)
        groups = _merge_cells(n1 + n2)
        if len(groups) < 2:
            per_class.append(None)
            continue

        def sums(pred: np.ndarray, wt: np.ndarray, g: list[np.ndarray]) -> tuple[np.ndarray, ...]:
            h = np.bincount(pred, weights=wt, minlength=n_classes)
            s = np.bincount(pred, weights=wt * wt, minlength=n_classes)
            return np.array([h[i].sum() for i in g]), np.array([s[i].sum() for i in g])

        h1, s1 = sums(p1[m1], a[m1], groups)
        h2, s2 = sums(p2[m2], b[m2], groups)
        live = (s1 + s2) > 0  # cells of zero weights only carry no information
        h1, s1, h2, s2 = h1[live], s1[live], h2[live], s2[live]
        if h1.size < 2:
            per_class.append(None)
            continue
        if h1.sum() <= 0 or h2.sum() <= 0:
            per_class.append(None)
            continue
        edges = np.arange(h1.size + 1, dtype=np.float64)
        res = chi2_from_histograms(Histograms(edges, h1, s1, h2, s2), weighted)
        statistic += res.statistic
        ndf += res.ndf
        per_class.append(res.pvalue)
    return float(statistic), int(ndf), per_class


def _merge_cells(counts: np.ndarray) -> list[np.ndarray]:
    """Groups of predicted-class cells with at least ``MIN_CELL`` rows (both samples): the
    sparse cells are pooled, and a pool that is still sparse joins the smallest full cell."""
    full = [np.array([i]) for i in np.flatnonzero(counts >= MIN_CELL)]
    sparse = np.flatnonzero((counts > 0) & (counts < MIN_CELL))
    if sparse.size == 0:
        return full
    if counts[sparse].sum() >= MIN_CELL or not full:
        return [*full, sparse]
    smallest = int(np.argmin([counts[g].sum() for g in full]))
    full[smallest] = np.concatenate([full[smallest], sparse])
    return full
