"""The boosted-tree classifiers behind the classifier two-sample test.

:func:`hepgen.validation.c2st.classifier_test` trains a gradient-boosted tree classifier on
one split, stops early on the log-loss of a second split and scores a third.  Two
implementations answer that one call, :func:`fit_boosted`:

``"xgboost"``
    xgboost's ``hist`` trees (``QuantileDMatrix``, early stopping that keeps the best round,
    total-gain importances, GPU when present).  The default whenever xgboost is installed
    (the ``cpu`` and ``cuda`` extras of hepgen).
``"sklearn"``
    scikit-learn's :class:`~sklearn.ensemble.HistGradientBoostingClassifier`, the same
    histogram algorithm (LightGBM-style), used when xgboost is absent, so that a bare
    ``pip install hepgen`` still runs the validation's headline test.  Early stopping uses
    the given validation split (``X_val``); it stops ``early_stopping_rounds`` rounds after
    the best one and keeps them (scikit-learn has no "keep the best round"), which costs a
    little power, never level: the test split stays unseen either way.  scikit-learn has no
    split-gain importances, so importances are permutation importances (log-loss increase,
    clipped at 0) on the validation split.

Why two: xgboost ships two builds under one import name (``xgboost-cpu`` and the CUDA
``xgboost``, which pulls NVIDIA libraries); hepgen cannot depend on either without
overriding the other, so the bare install depends on neither and falls back here.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

import numpy as np

from hepgen.errors import InputError

__all__ = ["CLASSIFIERS", "BoostedFit", "fit_boosted", "resolve_classifier"]

#: Accepted values of ``classifier``.
CLASSIFIERS = ("auto", "xgboost", "sklearn")


@dataclasses.dataclass(frozen=True)
class BoostedFit:
    """One trained classifier's output.

    Attributes
    ----------
    scores : np.ndarray
        Margins (log-odds, float64) of the test rows, shape (n_test,).
    best_iteration : int
        The round early stopping chose (0-based; scikit-learn: the last round kept).
    gains : np.ndarray
        Importance of each feature, normalised to sum 1 (all zero when nothing was split),
        shape (d,).
    """

    scores: np.ndarray
    best_iteration: int
    gains: np.ndarray


def _has_xgboost() -> bool:
    try:
        import xgboost  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_classifier(classifier: str) -> tuple[Literal["xgboost", "sklearn"], str | None]:
    """The implementation that ``classifier`` selects, and a note when "auto" fell back.

    Raises
    ------
    InputError
        An unknown name, or "xgboost" asked for where it is not installed.
    """
    if classifier not in CLASSIFIERS:
        raise InputError(f"classifier={classifier!r}: expected one of {', '.join(CLASSIFIERS)}")
    if classifier == "sklearn":
        return "sklearn", None
    if _has_xgboost():
        return "xgboost", None
    if classifier == "xgboost":
        raise InputError(
            "classifier='xgboost' but xgboost is not installed: pip install 'hepgen[cpu]' "
            "(or 'hepgen[cuda]'), or use classifier='auto'"
        )
    return "sklearn", (
        "xgboost is not installed: the classifier test ran scikit-learn's "
        "HistGradientBoostingClassifier instead (pip install 'hepgen[cpu]' for xgboost)"
    )


def fit_boosted(
    backend: Literal["xgboost", "sklearn"],
    fit: tuple[np.ndarray, np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray, np.ndarray],
    x_test: np.ndarray,
    *,
    learning_rate: float,
    max_depth: int,
    n_estimators: int,
    early_stopping_rounds: int,
    seed: int,
    device: str = "cpu",
    n_jobs: int | None = None,
) -> BoostedFit:
    """Train on ``fit``, stop early on the log-loss of ``val``, score ``x_test``.

    Parameters
    ----------
    backend : {"xgboost", "sklearn"}
        See the module docstring (:func:`resolve_classifier` chooses it).
    fit, val : tuple of (x, y, w)
        Features (n, d) float, labels (n,) in {0, 1} and non-negative weights (n,).
    x_test : np.ndarray
        Rows to score, shape (n_test, d).
    learning_rate, max_depth, n_estimators, early_stopping_rounds : float, int, int, int
        Boosting settings (shrinkage, tree depth, most rounds, patience).
    seed : int
        Seed of the booster.
    device : str
        xgboost's device ("cpu", "cuda", "cuda:1"); scikit-learn always runs on the CPU.
    n_jobs : int or None
        Threads (None: the library's default, all cores).

    Returns
    -------
    BoostedFit
    """
    if backend == "xgboost":
        return _fit_xgboost(
            fit,
            val,
            x_test,
            params={
                "objective": "binary:logistic",
                "eval_metric": "logloss",
                "tree_method": "hist",
                "device": device,
                "eta": float(learning_rate),
                "max_depth": int(max_depth),
                "verbosity": 0,
                "seed": int(seed),
                **({} if n_jobs is None else {"nthread": int(n_jobs)}),
            },
            n_estimators=n_estimators,
            early_stopping_rounds=early_stopping_rounds,
        )
    return _fit_sklearn(
        fit,
        val,
        x_test,
        learning_rate=learning_rate,
        max_depth=max_depth,
        n_estimators=n_estimators,
        early_stopping_rounds=early_stopping_rounds,
        seed=seed,
        n_jobs=n_jobs,
    )


def _fit_xgboost(
    fit: tuple[np.ndarray, np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray, np.ndarray],
    x_test: np.ndarray,
    *,
    params: dict[str, Any],
    n_estimators: int,
    early_stopping_rounds: int,
) -> BoostedFit:
    import xgboost as xgb

    # The data matrices take the same thread count as the booster: their OpenMP regions
    # otherwise use every core, and spin-wait badly on a busy (oversubscribed) machine.
    nthread = params.get("nthread")
    dfit = xgb.QuantileDMatrix(fit[0], label=fit[1], weight=fit[2], nthread=nthread)
    dval = xgb.QuantileDMatrix(val[0], label=val[1], weight=val[2], ref=dfit, nthread=nthread)
    booster = xgb.train(
        params,
        dfit,
        num_boost_round=n_estimators,
        evals=[(dval, "validation")],
        verbose_eval=False,
        callbacks=[
            xgb.callback.EarlyStopping(
                rounds=early_stopping_rounds,
                metric_name="logloss",
                data_name="validation",
                save_best=True,
            )
        ],
    )
    best = int(getattr(booster, "best_iteration", booster.num_boosted_rounds() - 1))
    # Margins (log-odds) rank like probabilities but do not saturate in float32.
    scores = booster.predict(xgb.DMatrix(x_test, nthread=nthread), output_margin=True)
    d = fit[0].shape[1]
    gain = booster.get_score(importance_type="total_gain")
    gains = np.array([float(gain.get(f"f{j}", 0.0)) for j in range(d)])
    return BoostedFit(np.asarray(scores, np.float64), best, _normalised(gains))


def _fit_sklearn(
    fit: tuple[np.ndarray, np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray, np.ndarray],
    x_test: np.ndarray,
    *,
    learning_rate: float,
    max_depth: int,
    n_estimators: int,
    early_stopping_rounds: int,
    seed: int,
    n_jobs: int | None,
) -> BoostedFit:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.inspection import permutation_importance
    from threadpoolctl import threadpool_limits

    model = HistGradientBoostingClassifier(
        learning_rate=float(learning_rate),
        max_depth=int(max_depth),
        max_iter=int(n_estimators),
        early_stopping=True,
        scoring="loss",
        n_iter_no_change=int(early_stopping_rounds),
        random_state=int(seed) % 2**32,
    )
    # threadpool_limits restores the caller's OpenMP thread count on exit.
    with threadpool_limits(limits=n_jobs, user_api="openmp"):
        model.fit(
            fit[0],
            fit[1],
            sample_weight=fit[2],
            X_val=val[0],
            y_val=val[1],
            sample_weight_val=val[2],
        )
        scores = model.decision_function(x_test)
        d = fit[0].shape[1]
        gains = np.zeros(d)
        if model.n_iter_ > 0 and np.ptp(model.decision_function(val[0])) > 0:
            imp = permutation_importance(
                model,
                val[0],
                val[1],
                scoring="neg_log_loss",
                n_repeats=3,
                random_state=int(seed) % 2**32,
                sample_weight=val[2],
            )
            gains = np.clip(imp.importances_mean, 0.0, None)
    return BoostedFit(np.asarray(scores, np.float64), int(model.n_iter_) - 1, _normalised(gains))


def _normalised(gains: np.ndarray) -> np.ndarray:
    total = gains.sum()
    return gains / total if total > 0 else gains
