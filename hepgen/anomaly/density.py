"""``DensityModel``: a conditional normalizing flow p(x | m) on flat per-event columns.

The building block of the likelihood-based anomaly searches: an estimate of the density of a
few event features ``x`` (jet masses, N-subjettiness ratios, ...) given a resonance variable
``m`` (the dijet mass), one row per event.

* As an **anomaly score**, ``-log p(x | m)`` is high for events the model finds unlikely
  (``hepgen score``, :mod:`hepgen.anomaly.score`).
* In **ANODE** (Nachman & Shih) a flow trained in the sidebands of a signal region (SR) and
  *interpolated* into it estimates the background density ``p_bg(x | m)``; a second one trained
  inside the SR estimates the data density ``p_data(x | m)``; their ratio is the
  likelihood-ratio anomaly score.
* In **CATHODE** (Hallin et al.) the sideband flow is sampled at the SR's ``m`` values to
  produce synthetic background events, on which a classifier is trained against the SR data.

Both rely on the background model behaving well *inside the gap* it never saw.  That is why
the conditions are only ever preprocessed by smooth, fixed, monotone maps (``standardize``,
``log`` + ``standardize`` for a positive mass, ``logit`` for a bounded one): the flow's
networks then see the gap as an ordinary interval between the sidebands and interpolate
linearly in it.  A ``quantile_gaussian`` transform of a condition is refused: fitted on the
sidebands only, its empirical CDF is flat across the gap, which squeezes the whole signal
region onto one point of model space (and its knots extrapolate as a constant beyond the
range), so the background model could not depend on ``m`` inside the SR at all.

Interpolating into the gap
--------------------------
A flexible conditional flow fits each sideband well but nothing ties down what its networks
do in between: on the reference dijet simulation, whose jet masses grow like ``mjj^0.85``,
a sideband-trained MAF sampled in a 0.4 TeV signal region gave 18 % more data than
template at a 10 % classifier selection, against 5 % in the sidebands it was trained on.
Two settings address this:

* ``trend`` (a degree ``d``): before the flow, every model-space feature has a
  least-squares polynomial of degree ``d`` in the model-space conditions subtracted (no cross
  terms), fitted on the training rows and added back when sampling.  A shift has unit
  Jacobian, so densities are unchanged in meaning.  The trend carries the smooth ``m``
  dependence through the gap by construction (degree 1 in ``log m`` is a power law).
* ``conditional=False``: the flow models the residuals without seeing ``m`` (it gets a
  constant context), so it cannot invent a dependence inside the gap.  The model is then
  ``x = trend(m) + e`` with ``e`` independent of ``m``: exact for shape-preserving trends,
  an approximation where the residual's shape changes with ``m`` (over a window and its
  sidebands it rarely does much).

With both (``trend=1, conditional=False``, the scan's default) the same test gave 4 % at
10 % in the signal region.

Implementation
--------------
No new flow: the features are targets and ``m`` the conditions of a
:class:`~hepgen.features.FeatureSchema`; a :class:`~hepgen.preprocessing.Preprocessor` maps
them to model space and a :class:`~hepgen.models.flow_model.FlowModel` (by default a small
masked autoregressive RQ-spline flow, the best density estimator of :mod:`hepgen.models.flow`)
is trained by maximum likelihood with the shared loop of :mod:`hepgen.training`; the kept
checkpoint is the epoch with the lowest validation negative log-likelihood (``selection``
``"loss"``: a density model is judged by its likelihood).  :meth:`DensityModel.log_prob`
returns the density in the features' *physical* units: the flow's model-space density plus the
preprocessing's log-Jacobian, as :meth:`hepgen.fastsim.FastSim.log_prob` does.

Model directory
---------------
``hepgen-model.json`` (``format`` ``"hepgen-model"``, ``kind`` ``"density"``,
``format_version`` :data:`DENSITY_FORMAT_VERSION`, the feature schema, the fitted
preprocessing, the conditions' validity domain with the largest empty interval seen in fit,
the architecture, flow and training settings, the training history, provenance) plus the
flow's weights ``flow.safetensors`` + ``flow.json``.  No pickle; loading executes no code.

References
----------
B. Nachman, D. Shih, "Anomaly Detection with Density Estimation", Phys. Rev. D 101 (2020)
075042, arXiv:2001.04990 (ANODE).
A. Hallin et al., "Classifying Anomalies THrough Outer Density Estimation (CATHODE)",
Phys. Rev. D 106 (2022) 055006, arXiv:2109.00546.
C. Durkan, A. Bekasov, I. Murray, G. Papamakarios, "Neural Spline Flows", NeurIPS 2019,
arXiv:1906.04032.
G. Papamakarios, T. Pavlakou, I. Murray, "Masked Autoregressive Flow for Density Estimation",
NeurIPS 2017, arXiv:1705.07057.

Example
-------
>>> import numpy as np
>>> from hepgen.anomaly.density import DensityModel
>>> rng = np.random.default_rng(0)
>>> m = rng.uniform(0.0, 1.0, 4000)
>>> data = {"m": m, "x": 2.0 * m + rng.normal(0.0, 0.5, 4000)}
>>> model = DensityModel([{"name": "x"}], [{"name": "m"}],
...                      flow={"n_transforms": 1, "hidden_features": 8},
...                      training={"max_epochs": 2, "batch_size": 500}, device="cpu")
>>> model = model.fit(data, quiet=True)
>>> model.log_prob(data)[:3].shape
(3,)
>>> sorted(model.sample({"m": m[:5]}, seed=1))
['m', 'x']
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from hepgen.errors import ConfigError, InputError, did_you_mean
from hepgen.features import FeatureSchema, FeatureSpec
from hepgen.models.flow import FlowSettings
from hepgen.models.flow_model import FlowModel
from hepgen.preprocessing import Preprocessor, default_transforms
from hepgen.training import TrainingResult, TrainingSettings
from hepgen.utils import check_weights, write_json

__all__ = [
    "DEFAULT_FLOW",
    "DEFAULT_TRAINING",
    "DENSITY_FORMAT_VERSION",
    "DensityModel",
    "nonfinite_problems",
    "read_model_card",
]

log = logging.getLogger(__name__)

#: ``format`` of ``hepgen-model.json``: the model-directory contract shared with FastSim.
MODEL_FORMAT = "hepgen-model"
#: The card's name in a model directory.
MODEL_FILE = "hepgen-model.json"
#: ``format_version`` of the density models' ``hepgen-model.json``.
DENSITY_FORMAT_VERSION = 2
#: Versions :meth:`DensityModel.load` reads (1: no trend, always conditional).
_READABLE_VERSIONS = (1, 2)
#: File stem of the flow's weights in the model directory.
FLOW_NAME = "flow"

#: The default flow: a small masked autoregressive RQ-spline flow (the most expressive per
#: parameter; sampling costs one pass per feature, cheap for the few features of a search).
DEFAULT_FLOW = FlowSettings(
    kind="autoregressive",
    n_transforms=4,
    hidden_features=64,
    n_blocks=2,
    n_bins=8,
    tail_bound=4.0,
)
#: The default training, for about 1e4 to 1e5 events: batches of 512, cosine-annealed AdamW
#: from 1e-3, early stopping after 10 epochs without a better validation likelihood.
DEFAULT_TRAINING = TrainingSettings(
    max_epochs=100,
    batch_size=512,
    learning_rate=1e-3,
    schedule="cosine",
    patience=10,
)
#: Transform types refused for conditions (see the module docstring).
_CONDITION_FORBIDDEN = ("quantile_gaussian",)


def read_model_card(directory: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """Read and check the ``hepgen-model.json`` of a model directory.

    Parameters
    ----------
    directory : path
        A model directory (``hepgen train`` or :meth:`DensityModel.save`).

    Returns
    -------
    path : Path
        The card's path.
    card : dict
        Its content; ``card["kind"]`` is ``"density"`` for a density model and the
        generator kind (``"flow"``, ``"gan"``) for a fast simulation.

    Raises
    ------
    InputError
        No such file, invalid JSON, or not a hepgen model card (the file named).
    """
    directory = Path(directory)
    path = directory / MODEL_FILE
    if not path.is_file():
        raise InputError(f"'{directory}' is not a hepgen model directory: no {MODEL_FILE}")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(
            f"'{path}' is not valid JSON ({err}); the model directory is corrupt or truncated"
        ) from None
    except OSError as err:
        raise InputError(f"cannot read '{path}': {err.strerror}") from None
    if not isinstance(card, dict) or card.get("format") != MODEL_FORMAT:
        found = card.get("format") if isinstance(card, dict) else type(card).__name__
        raise InputError(
            f"'{path}' is not a hepgen model card (format {found!r}, expected {MODEL_FORMAT!r})"
        )
    return path, card


def _spec(item: FeatureSpec | Mapping[str, Any], role: str, where: str) -> FeatureSpec:
    """A feature spec with the given role (set when a mapping omits it)."""
    if isinstance(item, FeatureSpec):
        spec = item
    elif isinstance(item, Mapping):
        d = dict(item)
        d.setdefault("role", role)
        spec = FeatureSpec.from_dict(d)
    else:
        raise ConfigError(
            f"{where}: each entry must be a feature mapping ({{name, kind, ...}}) "
            f"or a FeatureSpec, got {item!r}"
        )
    if spec.role != role:
        raise ConfigError(
            f"{where}: feature {spec.name!r} has role {spec.role!r}; "
            f"the {where} of a density model have role {role!r}"
        )
    return spec


def nonfinite_problems(columns: Mapping[str, np.ndarray], what: str) -> list[str]:
    """One line per floating-point column with NaN/inf: ``"'name': k of n <what> (a NaN,
    b inf)"``; empty when every value is finite."""
    bad = []
    for name, a in columns.items():
        if a.dtype.kind == "f":
            n_bad = len(a) - int(np.count_nonzero(np.isfinite(a)))
            if n_bad:
                n_nan = int(np.count_nonzero(np.isnan(a)))
                bad.append(
                    f"'{name}': {n_bad} of {len(a)} {what} are not finite ({n_nan} NaN, "
                    f"{n_bad - n_nan} inf)"
                )
    return bad


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
        out = []
        for label, items, role in (
            ("features", self.features, "target"),
            ("conditions", self.conditions, "condition"),
        ):
            if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Sequence):
                raise ConfigError(
                    f"{label} must be a list of feature mappings or FeatureSpecs, got {items!r}"
                )
            if not items:
                raise ConfigError(f"a density model needs at least one of its {label}")
            out.append([_spec(item, role, label) for item in items])
        targets, conditions = out
        for spec in conditions:
            for step in default_transforms(spec):
                if step.get("type") in _CONDITION_FORBIDDEN:
                    raise ConfigError(
                        f"condition {spec.name!r}: transform {step['type']!r} is not allowed for "
                        "the conditions of a density model: fitted on the sidebands, its "
                        "empirical CDF is flat across the signal-region gap, so the model "
                        "could not interpolate into it; use a smooth map (standardize, or "
                        "log + standardize: kind 'positive')"
                    )
        return targets, conditions

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
            return FlowSettings.from_dict({**DEFAULT_FLOW.to_dict(), **flow})
        raise ConfigError(f"flow must be FlowSettings or a mapping of flow settings, got {flow!r}")

    def _training_settings(self) -> TrainingSettings:
        training = self.training
        if training is None:
            settings = DEFAULT_TRAINING
        elif isinstance(training, TrainingSettings):
            settings = training
        elif isinstance(training, Mapping):
            settings = TrainingSettings.from_dict({**DEFAULT_TRAINING.to_dict(), **training})
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
        return dataclasses.replace(settings, **changes)

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

    @staticmethod
    def _design(c: np.ndarray, degree: int) -> np.ndarray:
        """Shape (n, 1 + degree * C): 1, then c_j, c_j^2, ... per condition column."""
        c = np.asarray(c, dtype=np.float64)
        cols = [np.ones(len(c))] + [
            c[:, j] ** k for j in range(c.shape[1]) for k in range(1, degree + 1)
        ]
        return np.column_stack(cols)

    @classmethod
    def _fit_trend(
        cls, x: np.ndarray, c: np.ndarray, w: np.ndarray | None, degree: int
    ) -> np.ndarray:
        """Weighted least-squares coefficients, shape (1 + degree * C, D).  Written out (normal
        equations) because numpy's lstsq takes no weights and sWeights may be negative."""
        a = cls._design(c, degree)
        wa = a if w is None else a * w[:, None]
        gram = wa.T @ a
        rhs = wa.T @ np.asarray(x, dtype=np.float64)
        try:
            return np.linalg.solve(gram, rhs)
        except np.linalg.LinAlgError:
            raise InputError(
                f"DensityModel.fit: the trend of degree {degree} in the conditions cannot be "
                "fitted (the conditions take too few distinct values); use a lower trend"
            ) from None

    def _residuals(self, z: np.ndarray, c: np.ndarray, sign: float = -1.0) -> np.ndarray:
        """Model-space features minus the trend (``sign=+1``: plus it, back from residuals);
        ``z`` itself without a trend."""
        if self.trend_ is None:
            return z
        degree = (self.trend_.shape[0] - 1) // max(c.shape[1], 1)
        shift = self._design(c, degree) @ self.trend_
        return (z + sign * shift).astype(z.dtype, copy=False)

    def _flow_context(self, c: np.ndarray) -> np.ndarray:
        """The flow's context: the conditions, or a constant column when not conditional."""
        if self.conditional_:
            return c
        return np.zeros((len(c), 1), dtype=c.dtype)

    # ------------------------------------------------------------------ inputs
    @staticmethod
    def _columns(
        columns: Mapping[str, Any], names: Sequence[str], roles: Mapping[str, str], where: str
    ) -> tuple[dict[str, np.ndarray], int]:
        """The named 1-D numeric columns, checked: present, equal length, finite."""
        if not isinstance(columns, Mapping) and not hasattr(columns, "keys"):
            raise InputError(
                f"{where}: columns must be a mapping of column name to 1-D array, "
                f"got {type(columns).__name__}"
            )
        available = [str(k) for k in columns.keys()]
        missing = [n for n in names if n not in available]
        if missing:
            parts = [f"{n!r} ({roles[n]}){did_you_mean(n, available)}" for n in missing]
            raise InputError(
                f"{where}: missing column(s) {'; '.join(parts)}; available: "
                f"{', '.join(available) or 'none'}"
            )
        out: dict[str, np.ndarray] = {}
        n = None
        for name in names:
            a = np.asarray(columns[name])
            if a.ndim != 1:
                raise InputError(
                    f"{where}: column {name!r} must be 1-D (one value per event), "
                    f"got shape {a.shape}"
                )
            if a.dtype.kind not in "biuf":
                raise InputError(f"{where}: column {name!r} must hold numbers, got dtype {a.dtype}")
            if n is None:
                n = len(a)
            elif len(a) != n:
                raise InputError(
                    f"{where}: column {name!r} has {len(a)} rows, column "
                    f"{names[0]!r} has {n}; columns must have equal length"
                )
            out[name] = a
        bad = nonfinite_problems(out, "values")
        if bad:
            raise InputError(f"{where}: " + "; ".join(bad))
        return out, int(n or 0)

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
        from hepgen.fastsim import event_split
        from hepgen.provenance import provenance

        schema = self._schema()
        flow_settings = self._flow_settings()
        settings = self._training_settings()
        degree, conditional = self._check_structure()
        if (
            isinstance(validation_fraction, bool)
            or not isinstance(validation_fraction, (int, float, np.floating))
            or not 0.0 <= float(validation_fraction) < 1.0
        ):
            raise ConfigError(
                f"validation_fraction must be a number in [0, 1), got {validation_fraction!r}"
            )
        names = [s.name for s in schema.targets] + [s.name for s in schema.conditions]
        roles = {s.name: "feature" if s.role == "target" else "condition" for s in schema}
        cols, n = self._columns(columns, names, roles, "DensityModel.fit")
        w = check_weights(weights, n, "DensityModel.fit")
        is_val = event_split(n, float(validation_fraction), int(self.seed))
        train_rows, val_rows = np.flatnonzero(~is_val), np.flatnonzero(is_val)
        need = 2 * settings.batch_size
        if train_rows.size < need:
            raise InputError(
                f"DensityModel.fit: {train_rows.size} training events ({n} given, "
                f"{val_rows.size} held out for validation) is fewer than two batches of "
                f"{settings.batch_size} ({need}); give more events or a smaller "
                "training batch_size"
            )
        if validation_fraction > 0 and val_rows.size == 0:
            raise InputError(
                f"DensityModel.fit: validation_fraction {validation_fraction} of "
                f"{n} events leaves no validation event"
            )
        train = {k: v[train_rows] for k, v in cols.items()}
        val = {k: v[val_rows] for k, v in cols.items()}
        w_train = w[train_rows] if w is not None else None
        w_val = w[val_rows] if w is not None else None

        pre = Preprocessor(schema).fit(train, weights=w_train)
        seed = int(self.seed)
        x = pre.transform_targets(train, rng=np.random.default_rng([seed, 3]))
        c = pre.transform_conditions(train)
        self.conditional_ = conditional
        self.trend_ = self._fit_trend(x, c, w_train, degree) if degree else None
        x = self._residuals(x, c)
        validation = None
        if val_rows.size:
            c_val = pre.transform_conditions(val)
            x_val = pre.transform_targets(val, rng=np.random.default_rng([seed, 4]))
            validation = {"x": self._residuals(x_val, c_val), "c": self._flow_context(c_val)}
            if w_val is not None:
                validation["w"] = w_val
        flow = FlowModel(flow_settings, seed=seed, device=settings.device)
        result = flow.fit(
            x,
            self._flow_context(c),
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
        self.training_ = result
        self.n_train_ = int(train_rows.size)
        self.n_validation_ = int(val_rows.size)
        self.flow_settings_ = flow_settings
        self.training_settings_ = settings
        self.validation_fraction_ = float(validation_fraction)
        self.domain_ = self._domain(pre, train)
        self.provenance_ = provenance(files, seed, model="DensityModel")
        self.weighted_ = w is not None
        return self

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
        cols, n = self._columns(columns, names, roles, "DensityModel.log_prob")
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
        cond, _ = self._columns(
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
        """The content of ``hepgen-model.json`` (everything but the weights)."""
        self._check_fitted()
        schema = self.preprocessor_.schema
        training = self.training_.to_dict()
        return {
            "format": MODEL_FORMAT,
            "format_version": DENSITY_FORMAT_VERSION,
            "kind": self.kind,
            "features": [s.to_dict() for s in schema.targets],
            "conditions": [s.to_dict() for s in schema.conditions],
            "schema": schema.to_dict(),
            "preprocessing": self.preprocessor_.to_dict(),
            "domain": self.domain_,
            "architecture": self.flow_.describe(),
            "trend": None
            if self.trend_ is None
            else {"degree": int(self.trend), "coefficients": self.trend_.tolist()},
            "conditional": bool(self.conditional_),
            "flow": self.flow_settings_.to_dict(),
            "training": {
                **training,
                "settings": self.training_settings_.to_dict(),
                "validation_fraction": self.validation_fraction_,
            },
            "data_summary": {
                "n_train": self.n_train_,
                "n_validation": self.n_validation_,
                "weighted": bool(getattr(self, "weighted_", False)),
            },
            "seed": int(self.seed),
            "provenance": getattr(self, "provenance_", None),
        }

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
        device : {"auto", "cpu", "cuda"}
            Where the flow runs.

        Raises
        ------
        InputError
            No ``hepgen-model.json``, invalid JSON, another kind of model directory (a fast
            simulation), an unsupported ``format_version``, invalid content or damaged
            weights (the file named).
        """
        path, card = read_model_card(directory)
        kind = card.get("kind")
        if kind != cls.kind:
            what = (
                f"a fast simulation (model.kind: {kind}; use hepgen generate / FastSim.load)"
                if kind in ("flow", "gan")
                else f"a model of kind {kind!r}"
            )
            raise InputError(f"'{path}' describes {what}, not a density model (kind 'density')")
        version = card.get("format_version")
        if version not in _READABLE_VERSIONS:
            written = ((card.get("provenance") or {}).get("versions") or {}).get("hepgen", "?")
            raise InputError(
                f"'{path}' has format_version {version!r}; this hepgen reads "
                "density models of version "
                f"{', '.join(map(str, _READABLE_VERSIONS))} (written by hepgen "
                f"{written})"
            )
        try:
            pre = Preprocessor.from_dict(card["preprocessing"])
            schema = pre.schema
            flow_settings = FlowSettings.from_dict(card["flow"])
            tr = dict(card["training"])
            settings = TrainingSettings.from_dict(tr.pop("settings"))
            fraction = float(tr.pop("validation_fraction"))
            fields = {f.name for f in dataclasses.fields(TrainingResult)}
            result = TrainingResult(**{k: v for k, v in tr.items() if k in fields})
            summary = card["data_summary"]
            seed = int(card["seed"])
            domain = dict(card["domain"])
            trend = card.get("trend")
            coef = None if trend is None else np.asarray(trend["coefficients"], dtype=np.float64)
            degree = 0 if trend is None else int(trend["degree"])
            conditional = bool(card.get("conditional", True))
            if coef is not None and coef.shape != (1 + degree * pre.condition_dim, pre.target_dim):
                raise ValueError(
                    f"trend coefficients of shape {coef.shape}, expected "
                    f"{(1 + degree * pre.condition_dim, pre.target_dim)}"
                )
        except KeyError as err:
            raise InputError(f"'{path}': missing key {err}") from None
        except (ConfigError, TypeError, ValueError, AttributeError) as err:
            raise InputError(f"'{path}': invalid content: {err}") from None
        model = cls(
            [s.to_dict() for s in schema.targets],
            [s.to_dict() for s in schema.conditions],
            flow_settings,
            settings,
            trend=degree,
            conditional=conditional,
            seed=seed,
            device=device,
        )
        flow = FlowModel.load(directory, device=device, name=FLOW_NAME)
        context_dim = pre.condition_dim if conditional else 1
        if (flow.n_features_, flow.n_conditions_) != (pre.target_dim, context_dim):
            raise InputError(
                f"'{Path(directory) / (FLOW_NAME + '.json')}': the flow has "
                f"{flow.n_features_} features and {flow.n_conditions_} conditions, the "
                f"preprocessing in '{path}' gives {pre.target_dim} and {context_dim}"
            )
        model.preprocessor_ = pre
        model.flow_ = flow
        model.trend_ = coef
        model.conditional_ = conditional
        model.training_ = result
        model.n_train_ = int(summary.get("n_train", 0))
        model.n_validation_ = int(summary.get("n_validation", 0))
        model.weighted_ = bool(summary.get("weighted", False))
        model.flow_settings_ = flow_settings
        model.training_settings_ = settings
        model.validation_fraction_ = fraction
        model.domain_ = domain
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
