"""Reconstruction efficiency: the probability that a gen object is reconstructed at all.

A fast simulation first decides whether a generator-level object leaves a reconstructed
object, then samples that object's features from the conditional generator.  The first step is
a classifier of ``P(reconstructed | gen features)``; :class:`EfficiencyModel` is that
classifier, a gradient-boosted decision-tree ensemble (xgboost).

Design choices
--------------
* **Objective.** ``binary:logistic``: boosting on the log-loss fits the conditional log-odds
  (Friedman, Hastie & Tibshirani 2000), so the predicted probabilities are calibrated by
  construction, unlike classifiers tuned for accuracy or AUC (Niculescu-Mizil & Caruana 2005).
  Trees need no preprocessing: the conditions may be raw physical columns or the standardised
  model matrices.  ``tree_method="hist"`` (256 quantile bins per feature).
* **Early stopping.** A seeded validation split (``validation_fraction``, stratified by the
  label) is held out; boosting stops when its (weighted) log-loss has not improved for
  ``early_stopping_rounds`` rounds, and the ensemble is cut back to the best round.  The
  validation objects are not refitted afterwards.
* **Weights.** Event weights enter the log-loss, its gradient and hessian as per-object
  factors.  They are rescaled to mean 1 first, so that the model does not depend on their
  overall scale (``min_child_weight`` is a hessian sum and would otherwise mean something
  different for cross-section weights of 1e-6).  xgboost refuses negative weights, so
  **negative weights are set to zero with a warning** that states how many there were and what
  share of the absolute weight they carried.  Why clip rather than raise: for negative
  generator (NLO) weights the efficiency, a property of the detector given the gen features,
  does not depend on the weight's sign, so dropping them only costs statistics; for sWeights
  (background subtraction) clipping biases the efficiency towards the background's, which the
  warning's weight share quantifies.  Objects with zero weight are left out of the fit.
* **Degenerate samples.** When every object (with positive weight) is reconstructed, or none
  is, there is nothing to classify: the model becomes a *constant* that predicts that fraction
  (exactly 1 or 0) with no xgboost involved, and is saved and loaded the same way.  The same
  happens, with a warning, when the rarer class has a single object, which cannot be split into
  a training and a validation part.  Fewer than :data:`MIN_OBJECTS` objects raise
  :class:`~hepgen.errors.InputError`.
* **Files.** :meth:`EfficiencyModel.save` writes the booster in xgboost's own JSON format (what
  ``Booster.save_model("name.json")`` writes; no pickle) and ``name.meta.json`` with the
  settings, the feature names, the training summary, ``format_version`` and the SHA-256 of the
  booster file, both atomically (a temporary file in the same folder, then a rename).  The
  hash lets :meth:`EfficiencyModel.load` detect a booster and metadata from different saves.
  Loading parses JSON only and never executes code.
* **Device.** ``device="auto"`` trains on the GPU when torch sees one *and* the installed
  xgboost is a CUDA build, else on the CPU; ``"cuda"`` demands both.  A loaded model predicts
  on the device that "auto" resolves to on the loading machine.
* **Determinism.** On the CPU, a fit is a deterministic function of the data, the settings and
  ``seed`` (the seed fixes the validation split and xgboost's own seed); :meth:`sample` draws
  from the numpy Generator it is given.

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
import json
import math
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hepgen.errors import ConfigError, InputError, require
from hepgen.utils import atomic_write_bytes, to_jsonable, write_json

__all__ = ["FORMAT_VERSION", "MIN_OBJECTS", "EfficiencyModel"]

#: Version of the ``name.meta.json`` layout written by :meth:`EfficiencyModel.save`.
FORMAT_VERSION = 1

#: Fewest objects (with positive weight) that :meth:`EfficiencyModel.fit` accepts.
MIN_OBJECTS = 20

_FORMAT_NAME = "hepgen-efficiency"
_SETTINGS = (
    "n_estimators",
    "learning_rate",
    "max_depth",
    "min_child_weight",
    "early_stopping_rounds",
    "validation_fraction",
    "device",
    "n_jobs",
    "seed",
)


class EfficiencyModel:
    """Classifier of the reconstruction probability ``P(reconstructed | conditions)``.

    Gradient-boosted trees (xgboost, ``binary:logistic``, ``tree_method="hist"``) with early
    stopping on the log-loss of a seeded validation split; see the module docstring for the
    design (weights, degenerate samples, file format).  The constructor only stores settings;
    they are checked by :meth:`fit` (:class:`~hepgen.errors.ConfigError` names the bad one).

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
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in _SETTINGS)
        return f"EfficiencyModel({args})"

    # ----------------------------------------------------------------------------------------
    # settings
    # ----------------------------------------------------------------------------------------

    def get_params(self) -> dict[str, Any]:
        """The constructor settings as a dict (JSON-serialisable)."""
        return {k: getattr(self, k) for k in _SETTINGS}

    def _check_settings(self) -> None:
        def bad(name: str, expected: str) -> ConfigError:
            return ConfigError(
                f"EfficiencyModel({name}={getattr(self, name)!r}): expected {expected}"
            )

        def is_int(v: Any) -> bool:
            return isinstance(v, int | np.integer) and not isinstance(v, bool)

        def is_real(v: Any) -> bool:
            return (
                isinstance(v, int | float | np.integer | np.floating)
                and not isinstance(v, bool)
                and math.isfinite(float(v))
            )

        if not (is_int(self.n_estimators) and self.n_estimators >= 1):
            raise bad("n_estimators", "an integer >= 1")
        if not (is_real(self.learning_rate) and 0.0 < self.learning_rate <= 1.0):
            raise bad("learning_rate", "a number in (0, 1]")
        if not (is_int(self.max_depth) and self.max_depth >= 1):
            raise bad("max_depth", "an integer >= 1")
        if not (is_real(self.min_child_weight) and self.min_child_weight >= 0.0):
            raise bad("min_child_weight", "a number >= 0")
        if not (is_int(self.early_stopping_rounds) and self.early_stopping_rounds >= 1):
            raise bad("early_stopping_rounds", "an integer >= 1")
        if not (is_real(self.validation_fraction) and 0.0 < self.validation_fraction <= 0.5):
            raise bad("validation_fraction", "a number in (0, 0.5]")
        if self.n_jobs is not None and not (is_int(self.n_jobs) and self.n_jobs >= 1):
            raise bad("n_jobs", "None or an integer >= 1")
        if not (is_int(self.seed) and self.seed >= 0):
            raise bad("seed", "an integer >= 0")
        _xgboost_device(self.device)

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
            :class:`UserWarning` (xgboost refuses them; see the module docstring); zero-weight
            objects are left out.
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
        x = _check_conditions(conditions, "fit")
        n, n_cols = x.shape
        if n < MIN_OBJECTS:
            raise InputError(
                f"efficiency fit: {n} objects, at least {MIN_OBJECTS} are needed to train and "
                "validate a classifier"
            )
        y = _check_labels(reconstructed, n)
        names = _check_feature_names(feature_names, n_cols)
        w, n_clipped = _check_weights(weights, n)

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
        efficiency = float(np.sum(w[y]) / n_used)
        n_pass = int(y.sum())
        n_fail = n_used - n_pass

        self.feature_names_ = names
        self.n_features_ = n_cols
        self.booster_ = None
        self.constant_ = None
        self._predict_device = "cpu"
        summary: dict[str, Any] = {
            "kind": "constant",
            "n_objects": n,
            "n_used": n_used,
            "n_reconstructed": n_pass,
            "n_train": n_used,
            "n_validation": 0,
            "weighted": weights is not None,
            "n_negative_weights_clipped": n_clipped,
            "efficiency": efficiency,
            "best_iteration": None,
            "n_trees": None,
            "validation_logloss": None,
            "device": None,
            "fit_seconds": 0.0,
            "importance": {},
        }

        if min(n_pass, n_fail) < 2:
            if min(n_pass, n_fail) == 1:
                which = "reconstructed" if n_pass == 1 else "not reconstructed"
                warnings.warn(
                    f"efficiency fit: only 1 of {n_used} objects is {which}; too few to train "
                    f"and validate a classifier, using a constant efficiency {efficiency:.6g}",
                    UserWarning,
                    stacklevel=2,
                )
            # All (or all but one) objects in one class: predict the observed fraction.
            self.constant_ = 1.0 if n_fail == 0 else 0.0 if n_pass == 0 else efficiency
            self.summary_ = summary
            return self

        xgb: Any = require("xgboost", "the efficiency model (P(reconstructed | gen))")

        start = time.perf_counter()
        device = _xgboost_device(self.device)
        rng = np.random.default_rng(self.seed)
        idx_fit, idx_val = _stratified_split(y, float(self.validation_fraction), rng)
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
        weighted = weights is not None
        yf = y.astype(np.float32)
        # xgboost's global thread count also governs the OpenMP regions of DMatrix building.
        with xgb.config_context(**({} if nthread is None else {"nthread": nthread})):
            dfit = xgb.QuantileDMatrix(
                x[idx_fit],
                label=yf[idx_fit],
                weight=w[idx_fit] if weighted else None,
                nthread=nthread,
            )
            dval = xgb.QuantileDMatrix(
                x[idx_val],
                label=yf[idx_val],
                weight=w[idx_val] if weighted else None,
                ref=dfit,
                nthread=nthread,
            )
            booster = xgb.train(
                params,
                dfit,
                num_boost_round=int(self.n_estimators),
                evals=[(dval, "validation")],
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
                stacklevel=2,
            )
        self.booster_ = booster
        self._predict_device = device
        summary.update(
            kind="xgboost",
            n_train=int(idx_fit.size),
            n_validation=int(idx_val.size),
            best_iteration=best,
            n_trees=int(booster.num_boosted_rounds()),
            validation_logloss=float(booster.best_score),
            device=device,
            fit_seconds=time.perf_counter() - start,
            importance=_importance(booster, names),
        )
        self.summary_ = summary
        return self

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
        x = _check_conditions(conditions, "predict", self.feature_names_)
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
        _check_name(name)
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
            "format": _FORMAT_NAME,
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
        _check_name(name)
        directory = Path(directory)
        meta_path = directory / f"{name}.meta.json"
        meta = _read_meta(meta_path)
        where = str(meta_path)
        settings = meta["settings"]
        model = cls(**{k: settings[k] for k in _SETTINGS})
        saved_device = settings["device"]
        if _device_name_ok(saved_device):
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

        xgb: Any = require("xgboost", f"the efficiency model of '{directory}'")

        booster_path = directory / str(meta["booster_file"])
        try:
            raw = booster_path.read_bytes()
        except FileNotFoundError:
            raise InputError(
                f"{booster_path}: efficiency booster file not found (named in {meta_path.name})"
            ) from None
        except OSError as err:
            raise InputError(f"{booster_path}: cannot read the efficiency booster: {err}") from None
        if hashlib.sha256(raw).hexdigest() != meta["booster_sha256"]:
            raise InputError(
                f"{booster_path}: the booster file does not match its metadata "
                f"({meta_path.name} records another SHA-256): the file was changed, truncated "
                "or comes from another save"
            )
        booster = xgb.Booster()
        try:
            booster.load_model(bytearray(raw))
        except xgb.core.XGBoostError as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise InputError(f"{booster_path}: not a valid xgboost model: {first}") from None
        if booster.num_features() != model.n_features_:
            raise InputError(
                f"{booster_path}: the booster takes {booster.num_features()} features, the "
                f"metadata lists {model.n_features_}"
            )
        device = _xgboost_device("auto")
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


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _xgboost_device(device: Any) -> str:
    """xgboost's device for the ``device`` setting (see :class:`EfficiencyModel`)."""
    if not _device_name_ok(device):
        raise ConfigError(
            f"EfficiencyModel(device={device!r}): expected 'auto', 'cpu', 'cuda' or 'cuda:N'"
        )
    if device == "cpu":
        return "cpu"
    import torch

    xgb: Any = require("xgboost", "the efficiency model (P(reconstructed | gen))")
    gpu = torch.cuda.is_available()
    cuda_build = str(xgb.build_info().get("USE_CUDA", False)).lower() in ("true", "1", "on")
    if device == "auto":
        return "cuda" if gpu and cuda_build else "cpu"
    if not gpu:
        raise ConfigError(
            f"EfficiencyModel(device={device!r}): torch sees no CUDA device; use 'auto' or 'cpu'"
        )
    if not cuda_build:
        raise ConfigError(
            f"EfficiencyModel(device={device!r}): the installed xgboost is a CPU-only build; "
            "install the CUDA build (pip install 'hepgen[cuda]') or use 'auto' or 'cpu'"
        )
    return device


def _device_name_ok(device: Any) -> bool:
    return isinstance(device, str) and (
        device in ("auto", "cpu", "cuda") or (device.startswith("cuda:") and device[5:].isdigit())
    )


def _check_conditions(
    conditions: Any, where: str, feature_names: Sequence[str] | None = None
) -> np.ndarray:
    """``conditions`` as a C-contiguous float32 (n, C) matrix; InputError when unusable."""
    try:
        a = np.asarray(conditions)
    except (TypeError, ValueError) as err:
        raise InputError(f"efficiency {where}: conditions are not an array: {err}") from None
    if a.dtype.kind not in "biuf":
        raise InputError(
            f"efficiency {where}: conditions have dtype {a.dtype}, expected real numbers"
        )
    if a.ndim != 2:
        raise InputError(
            f"efficiency {where}: conditions have shape {a.shape}, expected (n_objects, "
            "n_features); reshape a single feature with x[:, None]"
        )
    if feature_names is not None and a.shape[1] != len(feature_names):
        raise InputError(
            f"efficiency {where}: conditions have {a.shape[1]} columns, the model was trained "
            f"on {len(feature_names)} ({', '.join(feature_names)})"
        )
    with np.errstate(over="ignore", invalid="ignore"):  # reported below
        x = np.ascontiguousarray(a, dtype=np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        cols = np.flatnonzero(bad.any(axis=0))
        col = int(cols[0])
        label = f"column {col}" if feature_names is None else f"'{feature_names[col]}'"
        row = int(np.flatnonzero(bad[:, col])[0])
        raise InputError(
            f"efficiency {where}: {int(bad.any(axis=1).sum())} objects have NaN or infinite "
            f"conditions (after conversion to float32), first in {label} at row {row}"
        )
    return x


def _check_labels(reconstructed: Any, n: int) -> np.ndarray:
    """``reconstructed`` as a bool (n,) array; 0/1 numbers are accepted."""
    r = np.asarray(reconstructed)
    if r.shape != (n,):
        raise InputError(
            f"efficiency fit: reconstructed has shape {r.shape}, expected ({n},), one flag per "
            "object"
        )
    if r.dtype == np.bool_:
        return r
    if r.dtype.kind not in "iuf":
        raise InputError(f"efficiency fit: reconstructed has dtype {r.dtype}, expected bool")
    bad = ~((r == 0) | (r == 1))
    if bad.any():
        raise InputError(
            f"efficiency fit: reconstructed must be bool or 0/1; {int(bad.sum())} values are "
            f"neither (first at row {int(np.flatnonzero(bad)[0])})"
        )
    return r == 1


def _check_weights(weights: Any, n: int) -> tuple[np.ndarray, int]:
    """Float64 (n,) weights with negatives set to zero (warned), and how many were negative."""
    if weights is None:
        return np.ones(n), 0
    w = np.asarray(weights)
    if w.dtype.kind not in "biuf":
        raise InputError(f"efficiency fit: weights have dtype {w.dtype}, expected real numbers")
    w = w.astype(np.float64)
    if w.shape != (n,):
        raise InputError(
            f"efficiency fit: weights have shape {w.shape}, expected ({n},), one per object"
        )
    finite = np.isfinite(w)
    if not finite.all():
        raise InputError(
            f"efficiency fit: {int((~finite).sum())} weights are NaN or infinite (first at row "
            f"{int(np.flatnonzero(~finite)[0])})"
        )
    negative = w < 0
    n_negative = int(negative.sum())
    if n_negative:
        share = float(-w[negative].sum() / np.abs(w).sum())
        warnings.warn(
            f"efficiency fit: {n_negative} of {n} weights are negative ({share:.1%} of the "
            "absolute weight); xgboost needs non-negative weights, so they are set to zero.  "
            "Harmless for negative generator weights; for sWeights it biases the efficiency "
            "towards that of the subtracted component",
            UserWarning,
            stacklevel=3,
        )
        w = np.where(negative, 0.0, w)
    if not w.sum() > 0:
        raise InputError("efficiency fit: no object has a positive weight")
    return w, n_negative


def _check_feature_names(feature_names: Sequence[str] | None, n_cols: int) -> list[str]:
    if feature_names is None:
        return [f"f{j}" for j in range(n_cols)]
    if isinstance(feature_names, str):
        raise InputError("efficiency fit: feature_names must be a sequence of names, not a string")
    names = list(feature_names)
    if len(names) != n_cols or not all(isinstance(s, str) and s for s in names):
        raise InputError(
            f"efficiency fit: feature_names must be {n_cols} non-empty strings, one per "
            f"column, got {names!r}"
        )
    if len(set(names)) != len(names):
        dup = sorted({s for s in names if names.count(s) > 1})
        raise InputError(f"efficiency fit: duplicated feature names {dup}")
    return names


def _stratified_split(
    y: np.ndarray, fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (training, validation) indices; each class split in the given proportion.

    Every class has at least 2 members; each part gets at least one of each class.
    """
    fit_parts, val_parts = [], []
    for cls in (False, True):
        idx = np.flatnonzero(y == cls)
        n_val = min(max(round(fraction * idx.size), 1), idx.size - 1)
        perm = rng.permutation(idx)
        val_parts.append(perm[:n_val])
        fit_parts.append(perm[n_val:])
    return np.sort(np.concatenate(fit_parts)), np.sort(np.concatenate(val_parts))


def _importance(booster: Any, names: list[str]) -> dict[str, float]:
    """Share of the total split gain per feature, largest first."""
    gain = booster.get_score(importance_type="total_gain")
    values = np.array([float(gain.get(f"f{j}", 0.0)) for j in range(len(names))])
    total = values.sum()
    if total > 0:
        values = values / total
    order = np.argsort(-values, kind="stable")
    return {names[j]: float(values[j]) for j in order}


def _check_name(name: Any) -> None:
    ok = (
        isinstance(name, str)
        and name
        and name not in (".", "..")
        and all(ch.isalnum() or ch in "-_." for ch in name)
    )
    if not ok:
        raise InputError(
            f"efficiency model name {name!r}: use letters, digits, '-', '_' and '.' only (a "
            "file stem, not a path)"
        )


def _read_meta(path: Path) -> dict[str, Any]:
    """Parse and check ``name.meta.json``; every problem is an InputError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(
            f"{path}: efficiency model metadata not found (is {path.parent} a model directory "
            "written by EfficiencyModel.save?)"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read the efficiency model metadata: {err}") from None
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(
            f"{path}: corrupt JSON at line {err.lineno}, column {err.colno}: {err.msg}"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT_NAME:
        raise InputError(f'{path}: not an efficiency model file (no "format": "{_FORMAT_NAME}")')
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise InputError(
            f"{path}: format_version {version!r}, this hepgen reads version {FORMAT_VERSION}"
            + ("; the model was written by a newer hepgen, upgrade hepgen" if newer else "")
        )

    def require(key: str, ok: bool, expected: str) -> None:
        if not ok:
            raise InputError(f"{path}: key {key!r} is missing or invalid, expected {expected}")

    kind = meta.get("kind")
    require("kind", kind in ("xgboost", "constant"), "'xgboost' or 'constant'")
    n_features = meta.get("n_features")
    require("n_features", isinstance(n_features, int) and n_features >= 1, "an integer >= 1")
    names = meta.get("feature_names")
    require(
        "feature_names",
        isinstance(names, list)
        and len(names) == n_features
        and all(isinstance(s, str) for s in names),
        f"a list of {n_features} strings",
    )
    settings = meta.get("settings")
    require(
        "settings",
        isinstance(settings, dict) and all(k in settings for k in _SETTINGS),
        "a dict with " + ", ".join(_SETTINGS),
    )
    require("summary", isinstance(meta.get("summary"), dict), "a dict")
    if kind == "constant":
        c = meta.get("constant")
        require(
            "constant",
            isinstance(c, int | float) and not isinstance(c, bool) and 0.0 <= c <= 1.0,
            "a probability in [0, 1]",
        )
    else:
        booster_file = meta.get("booster_file")
        require(
            "booster_file",
            isinstance(booster_file, str)
            and booster_file not in ("", ".", "..")
            and Path(booster_file).name == booster_file
            and "\\" not in booster_file,
            "a file name in the same folder",
        )
        require("booster_sha256", isinstance(meta.get("booster_sha256"), str), "a hex digest")
    return meta
