"""Reconstruction efficiency: the probability that a gen object is reconstructed at all.

A fast simulation first decides whether a generator-level object leaves a reconstructed
object, then samples that object's features from the conditional generator.  The first step is
a classifier of ``P(reconstructed | gen features)``; :class:`EfficiencyModel` is that
classifier, a gradient-boosted decision-tree ensemble (xgboost), as in LHCb's Lamarr.  Its
input checks are in :mod:`hepgen.models.efficiency_inputs`, its file format in
:mod:`hepgen.models.efficiency_files`.

References
----------
- T. Chen and C. Guestrin, "XGBoost: a scalable tree boosting system", KDD 2016,
  arXiv:1603.02754.
- J. Friedman, T. Hastie and R. Tibshirani, "Additive logistic regression: a statistical view
  of boosting", Ann. Statist. 28 (2000) 337.
- A. Niculescu-Mizil and R. Caruana, "Predicting good probabilities with supervised learning",
  ICML 2005.
- L. Anderlini et al. (LHCb Simulation Project), "Lamarr: LHCb ultra-fast simulation based on
  machine learning models deployed within Gauss", ACAT 2022, arXiv:2303.11428 (gradient
  boosted trees for the efficiencies, generative models for the resolution).
"""

from __future__ import annotations

import hashlib
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hepgen.devices import DEVICE_NAMES, check_device, xgboost_device
from hepgen.errors import ConfigError, InputError, require
from hepgen.models.efficiency_files import (
    FORMAT_NAME,
    FORMAT_VERSION,
    SETTINGS,
    check_name,
    read_booster,
    read_meta,
)
from hepgen.models.efficiency_inputs import (
    check_conditions,
    check_feature_names,
    check_labels,
    nonnegative_weights,
    stratified_split,
)
from hepgen.settings.models import EfficiencySettings
from hepgen.utils import atomic_write_bytes, to_jsonable, write_json

__all__ = ["FORMAT_VERSION", "MIN_OBJECTS", "EfficiencyModel"]

#: Fewest objects (with positive weight) that :meth:`EfficiencyModel.fit` accepts.
MIN_OBJECTS = 20

#: What xgboost is needed for, in messages.
_PURPOSE = "the efficiency model (P(reconstructed | gen))"


class EfficiencyModel:
    """Classifier of the reconstruction probability ``P(reconstructed | conditions)``.

    Gradient-boosted trees (xgboost, ``binary:logistic``, ``tree_method="hist"``) with early
    stopping on the log-loss of a seeded validation split (design in the notes below).  The
    constructor only stores settings; they are checked by :meth:`fit`
    (:class:`~hepgen.errors.ConfigError` names the bad one).

    Parameters
    ----------
    n_estimators : int
        Most boosting rounds (trees); early stopping usually ends well before.
    learning_rate : float
        Shrinkage ``eta`` in (0, 1].
    max_depth : int
        Depth of each tree (>= 1).
    min_child_weight : float
        Smallest hessian sum (weights rescaled to mean 1) allowed in a leaf (>= 0).
    early_stopping_rounds : int
        Stop after this many rounds without improvement of the validation log-loss.
    validation_fraction : float
        Fraction of the objects held out for early stopping, in (0, 0.5].
    device : str
        ``"auto"`` (GPU when torch sees one and xgboost is a CUDA build), ``"cpu"``, ``"cuda"``
        or ``"cuda:N"``.
    n_jobs : int or None
        xgboost threads for training and prediction; None uses all cores.
    seed : int
        Seed of the validation split and of xgboost.

    Attributes
    ----------
    feature_names_ : list of str
        Condition names, one per column (after :meth:`fit` or :meth:`load`).
    n_features_ : int
        Number of condition columns ``C``.
    constant_ : float or None
        The predicted probability of a constant (degenerate) model, else None.
    booster_ : xgboost.Booster or None
        The trained ensemble, cut back to the best round; None for a constant model.
    summary_ : dict
        Training summary (objects used, best iteration, validation log-loss, ...).

    References
    ----------
    T. Chen and C. Guestrin, "XGBoost: a scalable tree boosting system", KDD 2016,
    arXiv:1603.02754; J. Friedman, T. Hastie and R. Tibshirani, "Additive logistic regression:
    a statistical view of boosting", Ann. Statist. 28 (2000) 337.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> pt = rng.uniform(0.0, 50.0, size=(4000, 1))
    >>> reco = rng.random(4000) < pt[:, 0] / 50.0
    >>> model = EfficiencyModel(n_estimators=200, device="cpu", n_jobs=1)
    >>> model = model.fit(pt, reco, feature_names=["pt"])
    >>> p = model.predict(np.array([[5.0], [45.0]]))
    >>> bool(p[0] < 0.25 and p[1] > 0.75)
    True
    >>> model.sample(np.full((3, 1), 45.0), rng=np.random.default_rng(1)).dtype
    dtype('bool')
    """

    def __init__(
        self,
        n_estimators: int = 2000,
        learning_rate: float = 0.05,
        max_depth: int = 6,
        min_child_weight: float = 1.0,
        early_stopping_rounds: int = 50,
        validation_fraction: float = 0.2,
        device: str = "auto",
        n_jobs: int | None = None,
        seed: int = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.min_child_weight = min_child_weight
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction
        self.device = device
        self.n_jobs = n_jobs
        self.seed = seed

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in SETTINGS)
        return f"EfficiencyModel({args})"

    # ----------------------------------------------------------------------------------------
    # settings
    # ----------------------------------------------------------------------------------------

    def get_params(self) -> dict[str, Any]:
        """The constructor settings as a dict (JSON-serialisable)."""
        return {k: getattr(self, k) for k in SETTINGS}

    def _check_settings(self) -> EfficiencySettings:
        """The constructor's settings checked by :class:`~hepgen.settings.EfficiencySettings`
        (the one declaration of their types and ranges), and the device checked for xgboost.

        Raises
        ------
        ConfigError
            Naming the setting and what was expected.
        """
        try:
            settings = EfficiencySettings(**self.get_params())
        except ConfigError as err:
            raise ConfigError(f"EfficiencyModel: {err}") from None
        self._xgboost_device()
        return settings

    # ----------------------------------------------------------------------------------------
    # fit / predict / sample
    # ----------------------------------------------------------------------------------------

    def _xgboost_device(self) -> str:
        """xgboost's device for the ``device`` setting (see the notes).

        Raises
        ------
        ConfigError
            A malformed name; ``"cuda"`` without a GPU or without a CUDA build of xgboost.
        MissingDependencyError
            xgboost is not installed (and the device is not ``"cpu"``).
        """
        setting = f"EfficiencyModel(device={self.device!r})"
        try:
            check_device(self.device)
        except ConfigError:
            raise ConfigError(f"{setting}: expected {DEVICE_NAMES}") from None
        if self.device == "cpu":
            return "cpu"
        require("xgboost", _PURPOSE)
        try:
            return xgboost_device(self.device, _PURPOSE)[0]
        except InputError as err:
            raise ConfigError(f"{setting}: {err}") from None

    # ----------------------------------------------------------------------------------------
    # fit / predict / sample
    # ----------------------------------------------------------------------------------------

    def fit(
        self,
        conditions: np.ndarray,
        reconstructed: np.ndarray,
        weights: np.ndarray | None = None,
        feature_names: Sequence[str] | None = None,
    ) -> EfficiencyModel:
        """Learn ``P(reconstructed | conditions)``.

        Parameters
        ----------
        conditions : array of shape (n, C)
            Gen features of each object, any real dtype (raw physical units or preprocessed:
            trees are invariant under monotonic transforms).  Must be finite; converted to
            float32.
        reconstructed : array of shape (n,)
            Whether each object was reconstructed: bool, or integers/floats equal to 0 or 1.
        weights : array of shape (n,), optional
            Event weights.  Rescaled to mean 1; negative weights are set to zero with a
            :class:`UserWarning` (xgboost refuses them; see the notes of the class);
            zero-weight objects are left out.
        feature_names : sequence of str, optional
            One unique name per column; ``["f0", "f1", ...]`` when omitted.

        Returns
        -------
        EfficiencyModel
            ``self``, fitted.

        Raises
        ------
        InputError
            Wrong shapes, non-finite values, labels other than 0/1, bad weights, or fewer than
            :data:`MIN_OBJECTS` objects with positive weight (the message gives the count).
        ConfigError
            A bad constructor setting, or ``device="cuda"`` without a GPU or a CUDA build of
            xgboost.
        """
        self._check_settings()
        x, y, w, summary = self._training_data(conditions, reconstructed, weights, feature_names)
        self.booster_ = None
        self.constant_ = None
        self._predict_device = "cpu"
        n_pass = summary["n_reconstructed"]
        n_fail = summary["n_used"] - n_pass
        if min(n_pass, n_fail) < 2:
            self.constant_ = _constant_efficiency(n_pass, n_fail, summary["efficiency"])
        else:
            summary.update(self._train_booster(x, y, w if weights is not None else None))
        self.summary_ = summary
        return self

    def _training_data(
        self,
        conditions: Any,
        reconstructed: Any,
        weights: Any,
        feature_names: Sequence[str] | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Checked objects with a positive weight: conditions (m, C) float32, labels (m,)
        bool, weights (m,) of mean 1, and the summary of a constant model.  Sets
        ``feature_names_`` and ``n_features_``."""
        x = check_conditions(conditions, "fit")
        n, n_cols = x.shape
        if n < MIN_OBJECTS:
            raise InputError(
                f"efficiency fit: {n} objects, at least {MIN_OBJECTS} are needed to train and "
                "validate a classifier"
            )
        y = check_labels(reconstructed, n)
        names = check_feature_names(feature_names, n_cols)
        # warn at the caller of fit: nonnegative_weights <- here <- fit <- caller
        w, n_clipped = nonnegative_weights(weights, n, stacklevel=3)
        keep = w > 0
        n_used = int(keep.sum())
        if n_used < MIN_OBJECTS:
            raise InputError(
                f"efficiency fit: {n_used} of {n} objects have a positive weight, at least "
                f"{MIN_OBJECTS} are needed"
            )
        if not keep.all():
            x, y, w = x[keep], y[keep], w[keep]
        w = w * (n_used / float(w.sum()))  # mean 1: the fit does not depend on the scale
        self.feature_names_ = names
        self.n_features_ = n_cols
        summary: dict[str, Any] = {
            "kind": "constant",
            "n_objects": n,
            "n_used": n_used,
            "n_reconstructed": int(y.sum()),
            "n_train": n_used,
            "n_validation": 0,
            "weighted": weights is not None,
            "n_negative_weights_clipped": n_clipped,
            "efficiency": float(np.sum(w[y]) / n_used),
            "best_iteration": None,
            "n_trees": None,
            "validation_logloss": None,
            "device": None,
            "fit_seconds": 0.0,
            "importance": {},
        }
        return x, y, w, summary

    def _train_booster(self, x: np.ndarray, y: np.ndarray, w: np.ndarray | None) -> dict[str, Any]:
        """Boost on a stratified split with early stopping; sets ``booster_`` and returns the
        summary entries of an xgboost model.  ``w`` is None for an unweighted fit."""
        xgb: Any = require("xgboost", _PURPOSE)
        start = time.perf_counter()
        device = self._xgboost_device()
        rng = np.random.default_rng(self.seed)
        idx_fit, idx_val = stratified_split(y, float(self.validation_fraction), rng)
        params: dict[str, Any] = {
            "objective": "binary:logistic",
            "eval_metric": "logloss",
            "tree_method": "hist",
            "device": device,
            "eta": float(self.learning_rate),
            "max_depth": int(self.max_depth),
            "min_child_weight": float(self.min_child_weight),
            "seed": int(rng.integers(2**31 - 1)),
            "verbosity": 0,
        }
        nthread = None if self.n_jobs is None else int(self.n_jobs)
        if nthread is not None:
            params["nthread"] = nthread
        yf = y.astype(np.float32)

        def matrix(rows: np.ndarray, ref: Any = None) -> Any:
            weight = None if w is None else w[rows]
            return xgb.QuantileDMatrix(
                x[rows], label=yf[rows], weight=weight, ref=ref, nthread=nthread
            )

        # xgboost's global thread count also governs the OpenMP regions of DMatrix building.
        with xgb.config_context(**({} if nthread is None else {"nthread": nthread})):
            dfit = matrix(idx_fit)
            booster = xgb.train(
                params,
                dfit,
                num_boost_round=int(self.n_estimators),
                evals=[(matrix(idx_val, ref=dfit), "validation")],
                verbose_eval=False,
                callbacks=[
                    xgb.callback.EarlyStopping(
                        rounds=int(self.early_stopping_rounds),
                        metric_name="logloss",
                        data_name="validation",
                        save_best=True,
                    )
                ],
            )
        best = int(booster.best_iteration)
        if best >= int(self.n_estimators) - 1:
            warnings.warn(
                f"efficiency fit: early stopping did not trigger within "
                f"n_estimators={self.n_estimators}; the classifier may be under-trained "
                "(raise n_estimators or learning_rate)",
                UserWarning,
                stacklevel=3,
            )
        self.booster_ = booster
        self._predict_device = device
        return {
            "kind": "xgboost",
            "n_train": int(idx_fit.size),
            "n_validation": int(idx_val.size),
            "best_iteration": best,
            "n_trees": int(booster.num_boosted_rounds()),
            "validation_logloss": float(booster.best_score),
            "device": device,
            "fit_seconds": time.perf_counter() - start,
            "importance": _importance(booster, self.feature_names_),
        }

    def predict(self, conditions: np.ndarray) -> np.ndarray:
        """Reconstruction probability of each object.

        Parameters
        ----------
        conditions : array of shape (n, C)
            Gen features, the same columns (and transformation) as in :meth:`fit`; finite.

        Returns
        -------
        np.ndarray of shape (n,), float64
            Probabilities in [0, 1].

        Raises
        ------
        InputError
            Wrong number of columns (naming the expected features) or non-finite values.
        """
        self._check_fitted()
        x = check_conditions(conditions, "predict", self.feature_names_)
        if self.constant_ is not None:
            return np.full(x.shape[0], self.constant_, dtype=np.float64)
        if x.shape[0] == 0:
            return np.zeros(0, dtype=np.float64)
        import xgboost as xgb

        nthread = None if self.n_jobs is None else int(self.n_jobs)
        with xgb.config_context(**({} if nthread is None else {"nthread": nthread})):
            if self._predict_device == "cpu":
                p = self.booster_.inplace_predict(x)
            else:
                # numpy input to a GPU booster: a DMatrix avoids inplace_predict's fallback
                # warning about mismatched devices.
                p = self.booster_.predict(xgb.DMatrix(x, nthread=nthread))
        return np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)

    def sample(self, conditions: np.ndarray, rng: np.random.Generator | int) -> np.ndarray:
        """Draw whether each object is reconstructed.

        Parameters
        ----------
        conditions : array of shape (n, C)
            Gen features, as for :meth:`predict`.
        rng : numpy.random.Generator or int
            The source of randomness (an int seeds a new Generator).

        Returns
        -------
        np.ndarray of shape (n,), bool
            ``True`` with probability :meth:`predict` for each object, independently.
        """
        if isinstance(rng, int | np.integer) and not isinstance(rng, bool):
            rng = np.random.default_rng(int(rng))
        if not isinstance(rng, np.random.Generator):
            raise TypeError(
                f"rng must be a numpy.random.Generator or an int seed, got {type(rng).__name__}"
            )
        p = self.predict(conditions)
        return rng.random(p.size) < p

    # ----------------------------------------------------------------------------------------
    # persistence
    # ----------------------------------------------------------------------------------------

    def save(self, directory: str | os.PathLike, name: str = "efficiency") -> list[Path]:
        """Write the model into ``directory`` (created when missing); returns the files written.

        Files: ``name.json`` (the booster in xgboost's native JSON format; not written for a
        constant model) and ``name.meta.json`` (format version, settings, feature names,
        training summary, SHA-256 of the booster file).  Each is written atomically; the
        booster first, so the metadata never points at a file that is not there yet.

        Parameters
        ----------
        directory : path
            Target folder.
        name : str
            File stem: letters, digits, ``-``, ``_`` and ``.`` only.

        Returns
        -------
        list of Path
            ``[booster, metadata]``, or ``[metadata]`` for a constant model.
        """
        self._check_fitted()
        check_name(name)
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        written: list[Path] = []
        booster_file = None
        digest = None
        if self.booster_ is not None:
            raw = bytes(self.booster_.save_raw(raw_format="json"))
            booster_file = f"{name}.json"
            written.append(atomic_write_bytes(directory / booster_file, raw))
            digest = hashlib.sha256(raw).hexdigest()
        import xgboost

        from hepgen._version import __version__

        meta = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "kind": "constant" if self.constant_ is not None else "xgboost",
            "constant": self.constant_,
            "booster_file": booster_file,
            "booster_sha256": digest,
            "feature_names": list(self.feature_names_),
            "n_features": int(self.n_features_),
            "settings": self.get_params(),
            "summary": self.summary_,
            "versions": {"hepgen": __version__, "xgboost": xgboost.__version__},
        }
        written.append(write_json(directory / f"{name}.meta.json", meta))
        return written

    @classmethod
    def load(cls, directory: str | os.PathLike, name: str = "efficiency") -> EfficiencyModel:
        """Read a model written by :meth:`save` (JSON only; no code is executed).

        Parameters
        ----------
        directory : path
            The folder given to :meth:`save`.
        name : str
            The file stem given to :meth:`save`.

        Returns
        -------
        EfficiencyModel
            Fitted; predicts on the device that ``"auto"`` resolves to here.

        Raises
        ------
        InputError
            A missing or unreadable file, corrupt JSON, another file format or
            ``format_version``, missing or mistyped keys, or a booster file that does not
            match its metadata.
        """
        check_name(name)
        directory = Path(directory)
        meta_path = directory / f"{name}.meta.json"
        meta = read_meta(meta_path)
        where = str(meta_path)
        settings = meta["settings"]
        model = cls(**{k: settings[k] for k in SETTINGS})
        saved_device = settings["device"]
        if _is_device_name(saved_device):
            # A GPU-trained model must still load (and predict) on a machine without a GPU.
            model.device = "cpu"
        try:
            model._check_settings()
        except ConfigError as err:
            raise InputError(f"{where}: invalid settings: {err}") from None
        model.device = saved_device
        model.feature_names_ = list(meta["feature_names"])
        model.n_features_ = int(meta["n_features"])
        model.summary_ = dict(meta["summary"])
        model.booster_ = None
        model.constant_ = None
        model._predict_device = "cpu"
        if meta["kind"] == "constant":
            model.constant_ = float(meta["constant"])
            return model

        booster = read_booster(directory, meta_path, meta)
        device = xgboost_device("auto", _PURPOSE)[0]
        params: dict[str, Any] = {"device": device}
        if model.n_jobs is not None:
            params["nthread"] = int(model.n_jobs)
        booster.set_param(params)
        model.booster_ = booster
        model._predict_device = device
        return model

    def describe(self) -> dict[str, Any]:
        """A JSON-serialisable summary: settings, and once fitted the features and training.

        Returns
        -------
        dict
            ``{"model": "efficiency", "fitted": bool, "settings": {...}}``, plus when fitted
            ``kind`` ("xgboost" or "constant"), ``feature_names``, ``n_features``,
            ``constant`` and ``summary`` (objects used, efficiency, best iteration, number
            of trees, validation log-loss, feature importances by total gain, ...).
        """
        out: dict[str, Any] = {
            "model": "efficiency",
            "fitted": self._is_fitted(),
            "settings": self.get_params(),
        }
        if self._is_fitted():
            out.update(
                kind="constant" if self.constant_ is not None else "xgboost",
                feature_names=list(self.feature_names_),
                n_features=int(self.n_features_),
                constant=self.constant_,
                summary=dict(self.summary_),
            )
        return to_jsonable(out)

    # ----------------------------------------------------------------------------------------

    def _is_fitted(self) -> bool:
        return hasattr(self, "summary_")

    def _check_fitted(self) -> None:
        if not self._is_fitted():
            raise RuntimeError("this EfficiencyModel is not fitted: call fit() or load() first")


def _constant_efficiency(n_pass: int, n_fail: int, efficiency: float) -> float:
    """The probability a degenerate sample predicts: 1 or 0 when one class is empty, the
    observed (weighted) fraction, with a warning, when the rarer class has one object."""
    if min(n_pass, n_fail) == 1:
        which = "reconstructed" if n_pass == 1 else "not reconstructed"
        warnings.warn(
            f"efficiency fit: only 1 of {n_pass + n_fail} objects is {which}; too few to train "
            f"and validate a classifier, using a constant efficiency {efficiency:.6g}",
            UserWarning,
            stacklevel=3,
        )
    return 1.0 if n_fail == 0 else 0.0 if n_pass == 0 else efficiency


def _is_device_name(device: Any) -> bool:
    try:
        check_device(device)
    except ConfigError:
        return False
    return True


def _importance(booster: Any, names: list[str]) -> dict[str, float]:
    """Share of the total split gain per feature, largest first."""
    gain = booster.get_score(importance_type="total_gain")
    values = np.array([float(gain.get(f"f{j}", 0.0)) for j in range(len(names))])
    total = values.sum()
    if total > 0:
        values = values / total
    order = np.argsort(-values, kind="stable")
    return {names[j]: float(values[j]) for j in order}
