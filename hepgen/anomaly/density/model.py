"""``DensityModel``: a conditional normalizing flow p(x | m) on flat per-event columns.

The features ``x`` are the targets and ``m`` the conditions of a
:class:`~hepgen.features.FeatureSchema`; a :class:`~hepgen.preprocessing.Preprocessor` maps
them to model space (conditions by smooth, fixed, monotone maps only, so that the flow
interpolates into a signal-region gap), an optional trend (:mod:`hepgen.anomaly.density.trend`)
is subtracted, and a :class:`~hepgen.models.flow_model.FlowModel` (by default a small masked
autoregressive RQ-spline flow) is trained by maximum likelihood with the shared loop of
:mod:`hepgen.training`, keeping the epoch with the lowest validation loss.
:meth:`DensityModel.log_prob` is in the features' *physical* units: the flow's model-space
density plus the preprocessing's log-Jacobian, as :meth:`hepgen.FastSim.log_prob`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from hepgen.anomaly.density.card import FLOW_NAME, density_card, parse_density_card
from hepgen.anomaly.density.inputs import check_columns, check_specs
from hepgen.anomaly.density.trend import fit_trend, shift
from hepgen.errors import ConfigError, InputError
from hepgen.features import FeatureSchema, FeatureSpec
from hepgen.modeldir import MODEL_FILE, read_card
from hepgen.models.flow_model import FlowModel
from hepgen.preprocessing import Preprocessor
from hepgen.settings.models import FlowSettings
from hepgen.settings.scan import DENSITY_FLOW, DENSITY_TRAINING, density_flow, density_training
from hepgen.settings.training import TrainingSettings
from hepgen.stats import check_weights
from hepgen.utils import write_json

__all__ = ["DEFAULT_FLOW", "DEFAULT_TRAINING", "DensityModel"]

log = logging.getLogger(__name__)

#: The density models' defaults (:mod:`hepgen.settings.scan`), over which given keys apply.
DEFAULT_FLOW = DENSITY_FLOW
DEFAULT_TRAINING = DENSITY_TRAINING


class DensityModel:
    """Conditional density p(features | conditions) of flat per-event columns, by a flow.

    Parameters
    ----------
    features : sequence of FeatureSpec or mapping
        The modelled columns ``x`` (role ``"target"``; a mapping without ``role`` gets it),
        e.g. ``{"name": "mj1", "kind": "positive"}``; kinds and transforms as in
        :mod:`hepgen.features` (a target may be ``relative_to`` a condition).
    conditions : sequence of FeatureSpec or mapping
        The conditioning columns ``m`` (role ``"condition"``), e.g.
        ``{"name": "mjj", "kind": "positive"}``.  At least one.  Their pipelines must
        interpolate smoothly (``standardize``, ``log``, ``logit``, ...): ``quantile_gaussian``
        is refused (see the module docstring).
    flow : FlowSettings, mapping or None
        Architecture; a mapping overrides fields of :data:`DEFAULT_FLOW` (a masked
        autoregressive RQ-spline flow, 4 transforms, 64 hidden features x 2 blocks, 8 bins).
    training : TrainingSettings, mapping or None
        The loop's settings; a mapping overrides fields of :data:`DEFAULT_TRAINING` (batch
        512, lr 1e-3 cosine, patience 10, at most 100 epochs).  The loop's ``seed`` is always
        the model's ``seed``; its ``device``, when ``"auto"``, the model's ``device``.
    trend : int
        Degree of the polynomial in the model-space conditions subtracted from every
        model-space feature before the flow (0: none); see the module docstring.
    conditional : bool
        Whether the flow sees the conditions (``False``: it models the residuals of the
        trend alone).
    seed : int
        Seeds the validation split, the dequantisation noise, the flow's initialisation and the
        training loop: the same seed gives the same fit (on CPU, bit for bit).
    device : {"auto", "cpu", "cuda"}
        Where the flow trains and runs.

    Attributes
    ----------
    preprocessor_ : Preprocessor
        Fitted on the training rows.
    flow_ : FlowModel
        The trained flow (model space).
    training_ : TrainingResult
        History and the kept epoch (lowest validation loss).
    trend_ : np.ndarray of shape (1 + trend * C, D) or None
        The trend's coefficients (intercept, then the powers 1 ... ``trend`` of each
        model-space condition) per model-space feature column.
    n_train_, n_validation_ : int
        Rows used for training and validation.

    Notes
    -----
    The constructor only stores its arguments (scikit-learn style); they are checked by
    :meth:`fit`.  Discrete (integer, categorical) features are dequantised: their density is
    that of the dequantised value, evaluated at one seeded noise draw.

    References
    ----------
    Nachman & Shih, arXiv:2001.04990 (ANODE); Hallin et al., arXiv:2109.00546 (CATHODE);
    Durkan et al., arXiv:1906.04032 (neural spline flows).

    Examples
    --------
    >>> model = DensityModel(
    ...     features=[{"name": "mj1", "kind": "positive"},
    ...               {"name": "tau21_j1", "kind": "bounded", "bounds": [0, 1]}],
    ...     conditions=[{"name": "mjj", "kind": "positive"}])
    >>> model.feature_names, model.condition_names
    (['mj1', 'tau21_j1'], ['mjj'])
    """

    kind: ClassVar[str] = "density"

    def __init__(
        self,
        features: Sequence[FeatureSpec | Mapping],
        conditions: Sequence[FeatureSpec | Mapping],
        flow: FlowSettings | Mapping | None = None,
        training: TrainingSettings | Mapping | None = None,
        *,
        trend: int = 0,
        conditional: bool = True,
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        self.features = features
        self.conditions = conditions
        self.flow = flow
        self.training = training
        self.trend = trend
        self.conditional = conditional
        self.seed = seed
        self.device = device

    # ------------------------------------------------------------------ settings
    def _specs(self) -> tuple[list[FeatureSpec], list[FeatureSpec]]:
        """The checked feature and condition specs."""
        return check_specs(self.features, self.conditions)

    def _schema(self) -> FeatureSchema:
        targets, conditions = self._specs()
        return FeatureSchema([*conditions, *targets])

    def _flow_settings(self) -> FlowSettings:
        flow = self.flow
        if flow is None:
            return DEFAULT_FLOW
        if isinstance(flow, FlowSettings):
            return flow
        if isinstance(flow, Mapping):
            return FlowSettings.from_dict(density_flow(dict(flow)))
        raise ConfigError(f"flow must be FlowSettings or a mapping of flow settings, got {flow!r}")

    def _training_settings(self) -> TrainingSettings:
        training = self.training
        if training is None:
            settings = DEFAULT_TRAINING
        elif isinstance(training, TrainingSettings):
            settings = training
        elif isinstance(training, Mapping):
            settings = TrainingSettings.from_dict(density_training(dict(training)))
        else:
            raise ConfigError(
                "training must be TrainingSettings or a mapping of training "
                f"settings, got {training!r}"
            )
        seed = self.seed
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
        changes: dict[str, Any] = {"seed": int(seed)}
        if settings.device == "auto":
            changes["device"] = self.device
        return settings.replace(**changes)

    @property
    def feature_names(self) -> list[str]:
        """Names of the modelled columns ``x``, in model order."""
        if hasattr(self, "preprocessor_"):
            return [s.name for s in self.preprocessor_.schema.targets]
        return [s.name for s in self._specs()[0]]

    @property
    def condition_names(self) -> list[str]:
        """Names of the conditioning columns ``m``, in model order."""
        if hasattr(self, "preprocessor_"):
            return [s.name for s in self.preprocessor_.schema.conditions]
        return [s.name for s in self._specs()[1]]

    def _check_fitted(self) -> None:
        if not hasattr(self, "flow_"):
            raise RuntimeError("DensityModel: call fit() or load() first")

    def _check_structure(self) -> tuple[int, bool]:
        trend, conditional = self.trend, self.conditional
        if (
            isinstance(trend, bool)
            or not isinstance(trend, (int, np.integer))
            or not (0 <= trend <= 3)
        ):
            raise ConfigError(
                f"trend must be an integer polynomial degree in 0 ... 3, got {trend!r}"
            )
        if not isinstance(conditional, (bool, np.bool_)):
            raise ConfigError(f"conditional must be true or false, got {conditional!r}")
        return int(trend), bool(conditional)

    def _residuals(self, z: np.ndarray, c: np.ndarray, sign: float = -1.0) -> np.ndarray:
        """Model-space features minus the trend (``sign=+1``: plus it, back from residuals);
        ``z`` itself without a trend."""
        return shift(z, c, self.trend_, sign)

    def _flow_context(self, c: np.ndarray) -> np.ndarray:
        """The flow's context: the conditions, or a constant column when not conditional."""
        if self.conditional_:
            return c
        return np.zeros((len(c), 1), dtype=c.dtype)

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        columns: Mapping[str, np.ndarray],
        weights: np.ndarray | None = None,
        *,
        validation_fraction: float = 0.2,
        checkpoint_dir: str | os.PathLike | None = None,
        resume: bool = False,
        quiet: bool = False,
        files: Sequence[str | os.PathLike] = (),
    ) -> DensityModel:
        """Learn p(features | conditions) by maximum likelihood.

        Parameters
        ----------
        columns : mapping of str to array of shape (n,)
            One row per event: every feature and condition in physical units (e.g. TeV);
            extra columns are ignored.
        weights : array of shape (n,) or None
            Event weights (negative allowed, e.g. sWeights; positive mean).
        validation_fraction : float
            Seeded random share of the rows held out for early stopping and the choice of
            the kept epoch (lowest validation negative log-likelihood), in [0, 1); 0 trains
            on every row and keeps the last epoch.
        checkpoint_dir : path or None
            Checkpoints of the training loop, one per epoch (``resume`` continues there).
        resume : bool
            Continue an interrupted fit from ``checkpoint_dir`` (same data and settings).
        quiet : bool
            Silence the progress bar.
        files : sequence of path
            Input files the columns came from, hashed into the provenance (optional).

        Returns
        -------
        DensityModel
            ``self``, fitted.

        Raises
        ------
        ConfigError
            Invalid features, conditions or settings.
        InputError
            A missing column (named, with the available ones), non-finite values (counted
            per column), or fewer training rows than two batches.
        """
        from hepgen.provenance import provenance

        schema = self._schema()
        flow_settings = self._flow_settings()
        settings = self._training_settings()
        degree, conditional = self._check_structure()
        _check_fraction(validation_fraction)
        names = [s.name for s in schema.targets] + [s.name for s in schema.conditions]
        roles = {s.name: "feature" if s.role == "target" else "condition" for s in schema}
        cols, n = check_columns(columns, names, roles, "DensityModel.fit")
        w = check_weights(weights, n, "DensityModel.fit")
        train_rows, val_rows = self._split(n, float(validation_fraction), settings.batch_size)
        train = {k: v[train_rows] for k, v in cols.items()}
        w_train = w[train_rows] if w is not None else None
        pre = Preprocessor(schema).fit(train, weights=w_train)
        self.conditional_ = conditional
        x, c, validation = self._model_space(
            pre,
            train,
            w_train,
            {k: v[val_rows] for k, v in cols.items()} if val_rows.size else None,
            w[val_rows] if w is not None else None,
            degree,
        )
        flow = FlowModel(flow_settings, seed=int(self.seed), device=settings.device)
        self.training_ = flow.fit(
            x,
            c,
            w_train,
            validation,
            training=settings,
            selection="loss",
            checkpoint_dir=checkpoint_dir,
            resume=resume,
            quiet=quiet,
        )
        self.preprocessor_ = pre
        self.flow_ = flow
        self.n_train_ = int(train_rows.size)
        self.n_validation_ = int(val_rows.size)
        self.flow_settings_ = flow_settings
        self.training_settings_ = settings
        self.validation_fraction_ = float(validation_fraction)
        self.domain_ = self._domain(pre, train)
        self.provenance_ = provenance(files, int(self.seed), model="DensityModel")
        self.weighted_ = w is not None
        return self

    def _split(self, n: int, fraction: float, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """Training and validation rows (a seeded split of ``fraction``), at least two
        batches of training rows and, with ``fraction > 0``, one validation row."""
        from hepgen.fastsim.columns import event_split

        is_val = event_split(n, fraction, int(self.seed))
        train_rows, val_rows = np.flatnonzero(~is_val), np.flatnonzero(is_val)
        need = 2 * batch_size
        if train_rows.size < need:
            raise InputError(
                f"DensityModel.fit: {train_rows.size} training events ({n} given, "
                f"{val_rows.size} held out for validation) is fewer than two batches of "
                f"{batch_size} ({need}); give more events or a smaller "
                "training batch_size"
            )
        if fraction > 0 and val_rows.size == 0:
            raise InputError(
                f"DensityModel.fit: validation_fraction {fraction} of "
                f"{n} events leaves no validation event"
            )
        return train_rows, val_rows

    def _model_space(
        self,
        pre: Preprocessor,
        train: Mapping[str, np.ndarray],
        w_train: np.ndarray | None,
        val: Mapping[str, np.ndarray] | None,
        w_val: np.ndarray | None,
        degree: int,
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray] | None]:
        """The flow's training inputs (residuals of the trend, fitted here, and context) and
        its validation set (None without validation rows)."""
        seed = int(self.seed)
        x = pre.transform_targets(train, rng=np.random.default_rng([seed, 3]))
        c = pre.transform_conditions(train)
        self.trend_ = fit_trend(x, c, w_train, degree) if degree else None
        x = self._residuals(x, c)
        validation = None
        if val is not None:
            c_val = pre.transform_conditions(val)
            x_val = pre.transform_targets(val, rng=np.random.default_rng([seed, 4]))
            validation = {"x": self._residuals(x_val, c_val), "c": self._flow_context(c_val)}
            if w_val is not None:
                validation["w"] = w_val
        return x, self._flow_context(c), validation

    @staticmethod
    def _domain(pre: Preprocessor, train: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """The preprocessor's domain plus, for numeric conditions, ``largest_gap``: the largest
        interval between two consecutive training values.  For a sideband fit with enough
        events it is the signal region; otherwise usually a sparse tail (a plain fact, no
        judgement: it is recorded, not acted on)."""
        domain = pre.domain
        for spec in pre.schema.conditions:
            dom = domain.get(spec.name, {})
            if "min" not in dom:
                continue
            x = np.unique(train[spec.name])
            x = x[(x >= dom["min"]) & (x <= dom["max"])]
            if x.size >= 2:
                i = int(np.argmax(np.diff(x)))
                dom["largest_gap"] = [float(x[i]), float(x[i + 1])]
        return domain

    # ------------------------------------------------------------------ inference
    def log_prob(
        self,
        columns: Mapping[str, np.ndarray],
        batch_size: int = 65536,
        *,
        domain_counts: dict[str, int] | None = None,
    ) -> np.ndarray:
        """log p(features | conditions) per row, in the features' physical units.

        Parameters
        ----------
        columns : mapping of str to array of shape (n,)
            Every feature and condition (extra columns ignored); finite.
        batch_size : int
            Rows preprocessed at a time (bounds the memory); the flow evaluates them in
            batches of :data:`hepgen.models.flow_model.DEFAULT_BATCH_SIZE`.
        domain_counts : dict or None
            When given, the numbers of rows whose conditions lie outside the range seen in
            fit are added to it (per condition) instead of being logged as a warning.

        Returns
        -------
        np.ndarray of shape (n,), float64
            Nats; the density per unit of each feature's physical unit (e.g. TeV^-1 for a
            mass): the flow's model-space density plus the preprocessing's log-Jacobian.

        Raises
        ------
        InputError
            A missing column (named) or non-finite values (counted per column).
        """
        self._check_fitted()
        if (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, (int, np.integer))
            or (batch_size < 1)
        ):
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
        names = self.feature_names + self.condition_names
        roles = {
            **{k: "feature" for k in self.feature_names},
            **{k: "condition" for k in self.condition_names},
        }
        cols, n = check_columns(columns, names, roles, "DensityModel.log_prob")
        self._check_domain(cols, domain_counts)
        pre = self.preprocessor_
        out = np.empty(n, dtype=np.float64)
        for start in range(0, n, int(batch_size)):
            part = {k: v[start : start + batch_size] for k, v in cols.items()}
            z = pre.transform_targets(part, rng=np.random.default_rng(0))
            c = pre.transform_conditions(part)
            jac = pre.target_log_abs_det_jacobian(part, rng=np.random.default_rng(0))
            z = self._residuals(z, c)
            out[start : start + len(z)] = self.flow_.log_prob(z, self._flow_context(c)) + jac
        return out

    def _check_domain(
        self, cols: Mapping[str, np.ndarray], domain_counts: dict[str, int] | None
    ) -> None:
        if not len(next(iter(cols.values()))):
            return
        outside = self.preprocessor_.out_of_domain({k: cols[k] for k in self.condition_names})
        bad = {k: v for k, v in outside.items() if v}
        if domain_counts is not None:
            for k, v in bad.items():
                domain_counts[k] = domain_counts.get(k, 0) + v
        elif bad:
            log.warning(
                "density model: conditions outside the range seen in fit (rows per "
                "condition): %s; the density there is an extrapolation",
                bad,
            )

    def sample(
        self,
        conditions: Mapping[str, np.ndarray],
        seed: int | None = None,
        *,
        domain_counts: dict[str, int] | None = None,
    ) -> dict[str, np.ndarray]:
        """One draw of the features per row of ``conditions``.

        Parameters
        ----------
        conditions : mapping of str to array of shape (n,)
            Every condition (physical units); finite.  Extra columns are ignored.
        seed : int or None
            The same seed gives the same draws; ``None`` draws fresh ones.
        domain_counts : dict or None
            As in :meth:`log_prob`: collect the rows outside the fit range instead of warning.

        Returns
        -------
        dict of str to np.ndarray, each of shape (n,)
            The condition columns as given, then the features in physical units and in the
            dtypes seen in fit (float32 stays float32, integers stay integers).
        """
        self._check_fitted()
        names = self.condition_names
        cond, _ = check_columns(
            conditions, names, dict.fromkeys(names, "condition"), "DensityModel.sample"
        )
        self._check_domain(cond, domain_counts)
        pre = self.preprocessor_
        c = pre.transform_conditions(cond)
        z = self._residuals(self.flow_.sample(self._flow_context(c), seed=seed), c, +1.0)
        feats = pre.inverse_targets(z, cond)
        dtypes = pre.dtypes
        out: dict[str, np.ndarray] = {k: np.asarray(v) for k, v in cond.items()}
        for name in self.feature_names:
            dtype = np.dtype(dtypes.get(name, "float64"))
            out[name] = np.asarray(feats[name]).astype(dtype, copy=False)
        return out

    # ------------------------------------------------------------------ persistence
    def card(self) -> dict[str, Any]:
        """The content of ``hepgen-model.json`` (everything but the weights;
        :mod:`hepgen.anomaly.density.card`)."""
        self._check_fitted()
        return density_card(self)

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the model directory: ``flow.safetensors`` + ``flow.json``, then
        ``hepgen-model.json`` (each file atomically; no pickle).

        Returns
        -------
        Path
            The directory.
        """
        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.flow_.save(directory, name=FLOW_NAME)
        write_json(directory / MODEL_FILE, self.card())
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike, device: str = "cpu") -> DensityModel:
        """Read a model directory written by :meth:`save` (no code is executed).

        Parameters
        ----------
        directory : path
        device : {"auto", "cpu", "cuda", "cuda:N"}
            Where the flow runs.

        Raises
        ------
        InputError
            No ``hepgen-model.json``, invalid JSON, another kind of model directory (a fast
            simulation), an unsupported ``format_version``, invalid content or damaged
            weights (the file named).
        """
        _, card = read_card(directory, (cls.kind,), user="DensityModel.load")
        return cls.from_card(directory, card, device=device)

    @classmethod
    def from_card(
        cls, directory: str | os.PathLike, card: dict[str, Any], device: str = "cpu"
    ) -> DensityModel:
        """The density model of ``directory`` whose card :func:`hepgen.modeldir.read_card`
        has read and checked (what :func:`hepgen.load_model` calls).

        Raises
        ------
        InputError
            Invalid card content, or damaged weights or weights that do not fit the
            preprocessing (the file named).
        """
        path = Path(directory) / MODEL_FILE
        parsed = parse_density_card(path, card)
        pre = parsed.preprocessor
        model = cls(
            [s.to_dict() for s in pre.schema.targets],
            [s.to_dict() for s in pre.schema.conditions],
            parsed.flow_settings,
            parsed.training_settings,
            trend=parsed.degree,
            conditional=parsed.conditional,
            seed=parsed.seed,
            device=device,
        )
        flow = FlowModel.load(directory, device=device, name=FLOW_NAME)
        context_dim = pre.condition_dim if parsed.conditional else 1
        if (flow.n_features_, flow.n_conditions_) != (pre.target_dim, context_dim):
            raise InputError(
                f"'{Path(directory) / (FLOW_NAME + '.json')}': the flow has "
                f"{flow.n_features_} features and {flow.n_conditions_} conditions, the "
                f"preprocessing in '{path}' gives {pre.target_dim} and {context_dim}"
            )
        summary = parsed.summary
        model.preprocessor_ = pre
        model.flow_ = flow
        model.trend_ = parsed.trend
        model.conditional_ = parsed.conditional
        model.training_ = parsed.result
        model.n_train_ = int(summary.get("n_train", 0))
        model.n_validation_ = int(summary.get("n_validation", 0))
        model.weighted_ = bool(summary.get("weighted", False))
        model.flow_settings_ = parsed.flow_settings
        model.training_settings_ = parsed.training_settings
        model.validation_fraction_ = parsed.validation_fraction
        model.domain_ = parsed.domain
        model.provenance_ = card.get("provenance")
        model.card_ = card
        return model

    def __repr__(self) -> str:
        try:
            feats, conds = self.feature_names, self.condition_names
        except ConfigError:
            feats, conds = ["?"], ["?"]
        state = "fitted" if hasattr(self, "flow_") else "unfitted"
        return f"DensityModel(features={feats}, conditions={conds}, {state})"


def _check_fraction(fraction: Any) -> None:
    """A validation fraction must be a number in [0, 1) (ConfigError otherwise)."""
    if (
        isinstance(fraction, bool)
        or not isinstance(fraction, (int, float, np.floating))
        or not 0.0 <= float(fraction) < 1.0
    ):
        raise ConfigError(f"validation_fraction must be a number in [0, 1), got {fraction!r}")
