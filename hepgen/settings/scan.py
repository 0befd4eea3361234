"""Settings of an anomaly-detection scan and of its density models.

:class:`ScanSection` is the ``scan`` section of a scan configuration (windows, score,
selections, the CATHODE classifier); :class:`ScanSettings` adds what the whole file says
(the resonance, the features, the flows' and training's settings, seed, device) and is what
:func:`hepgen.anomaly.scan.run_scan` takes.  The density models' defaults (a small
autoregressive flow, 100 epochs of batches of 512) differ from the fast simulation's:
:data:`DENSITY_FLOW` and :data:`DENSITY_TRAINING`, over which a configuration's keys apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import BeforeValidator, Field, field_validator, model_validator

from hepgen.errors import ConfigError, InputError
from hepgen.settings.base import Device, Float, Settings
from hepgen.settings.models import FlowSettings
from hepgen.settings.training import TrainingSettings

__all__ = [
    "CLASSIFIER_DEFAULTS",
    "DENSITY_FLOW",
    "DENSITY_TRAINING",
    "ESTIMATES",
    "MAX_WINDOWS",
    "SCORES",
    "ClassifierSettings",
    "DensityFlow",
    "DensityTraining",
    "ScanSection",
    "ScanSettings",
    "Window",
    "density_flow",
    "density_training",
    "make_windows",
]

#: The anomaly scores of a scan (``scan.score``).
SCORES = ("cathode", "anode")
#: The background estimates after the selection (``scan.background_estimate``).
ESTIMATES = ("calibrated", "template", "fit")

#: Most windows a scan may have (each trains flows: more is a typo in start/stop/step).
MAX_WINDOWS = 1000

#: The density models' flow: a small masked autoregressive RQ-spline flow (the most
#: expressive per parameter; sampling costs one pass per feature, cheap for a search's few).
DENSITY_FLOW = FlowSettings(
    kind="autoregressive", n_transforms=4, hidden_features=64, n_blocks=2, n_bins=8
)
#: The density models' training, for about 1e4 to 1e5 events: batches of 512,
#: cosine-annealed AdamW from 1e-3, early stopping after 10 epochs without a better
#: validation likelihood.
DENSITY_TRAINING = TrainingSettings(
    max_epochs=100, batch_size=512, learning_rate=1e-3, schedule="cosine", patience=10
)

_Finite = Annotated[Float, Field(allow_inf_nan=False)]
_Positive = Annotated[Float, Field(gt=0, allow_inf_nan=False)]
_Efficiency = Annotated[Float, Field(gt=0, lt=1, allow_inf_nan=False)]


@dataclass(frozen=True)
class Window:
    """One signal region ``[lo, hi)`` and its sidebands ``[sb_lo, lo)``, ``[hi, sb_hi)``
    (units of the resonance variable, e.g. TeV)."""

    lo: float
    hi: float
    sb_lo: float
    sb_hi: float

    @property
    def centre(self) -> float:
        """Centre of the signal region."""
        return 0.5 * (self.lo + self.hi)


def make_windows(
    start: float,
    stop: float,
    width: float,
    step: float,
    sideband: float,
    data_range: tuple[float, float] | None = None,
) -> list[Window]:
    """Signal regions of ``width`` from ``start`` in steps of ``step`` while ``hi <= stop``.

    Parameters
    ----------
    start, stop : float
        Lower edge of the first and upper bound of the last signal region.
    width, step, sideband : float
        Signal-region width, step between windows, width of each sideband (> 0).
    data_range : (float, float) or None
        The data's range of the resonance variable: every window with its sidebands must lie
        inside it.

    Raises
    ------
    ConfigError
        Non-positive sizes or no window between ``start`` and ``stop``.
    InputError
        A window's sidebands reach outside ``data_range`` (the window and the range named).
    """
    for name, value in (("width", width), ("step", step), ("sideband", sideband)):
        if not np.isfinite(value) or value <= 0:
            raise ConfigError(f"scan: '{name}' must be a positive number, got {value}")
    n = int(np.floor((stop - start - width) / step + 1e-9)) + 1
    if n < 1:
        raise ConfigError(
            f"scan: no signal region of width {width} fits in [start, stop] = [{start}, {stop}]"
        )
    windows = []
    for i in range(n):
        lo = start + i * step
        w = Window(float(lo), float(lo + width), float(lo - sideband), float(lo + width + sideband))
        if data_range is not None and (w.sb_lo < data_range[0] or w.sb_hi > data_range[1]):
            raise InputError(
                f"scan: window [{w.lo:.4g}, {w.hi:.4g}) with its sidebands "
                f"[{w.sb_lo:.4g}, {w.sb_hi:.4g}) reaches outside the data range "
                f"[{data_range[0]:.4g}, {data_range[1]:.4g}] of the resonance variable; "
                "narrow scan.start/scan.stop or the sidebands"
            )
        windows.append(w)
    return windows


def density_flow(values: Any) -> Any:
    """``values`` (a mapping of flow settings) over :data:`DENSITY_FLOW`; settings as given."""
    if isinstance(values, dict):
        return {**DENSITY_FLOW.model_dump(), **values}
    return values


def density_training(values: Any) -> Any:
    """``values`` (a mapping of training settings) over :data:`DENSITY_TRAINING`."""
    if isinstance(values, dict):
        return {**DENSITY_TRAINING.model_dump(), **values}
    return values


#: The density models' flow settings: a mapping applies over :data:`DENSITY_FLOW`.
DensityFlow = Annotated[FlowSettings, BeforeValidator(density_flow)]
#: Their training settings: a mapping applies over :data:`DENSITY_TRAINING`.
DensityTraining = Annotated[TrainingSettings, BeforeValidator(density_training)]


class ClassifierSettings(Settings):
    """``scan.classifier``: the xgboost classifier of CATHODE's data-vs-template test.

    Examples
    --------
    >>> ClassifierSettings().max_depth
    3
    """

    family: ClassVar[str] = "scan.classifier"

    n_estimators: int = Field(300, ge=1)
    max_depth: int = Field(3, ge=1)
    learning_rate: Float = Field(0.1, gt=0, le=1, allow_inf_nan=False)
    early_stopping_rounds: int = Field(20, ge=1)
    validation_fraction: Float = Field(0.2, gt=0, lt=1, allow_inf_nan=False)
    min_child_weight: Float = Field(1.0, ge=0, allow_inf_nan=False)
    subsample: Float = Field(1.0, gt=0, le=1, allow_inf_nan=False)


#: The CATHODE classifier's defaults (``scan.classifier``).
CLASSIFIER_DEFAULTS: dict[str, Any] = ClassifierSettings().to_dict()


class ScanSection(Settings):
    """The ``scan`` section: the windows, the score and the selections.

    Parameters
    ----------
    start, stop, width, step, sideband : float
        Signal-region windows of ``width`` every ``step`` from ``start`` to ``stop``, with
        sidebands of ``sideband`` on each side (units of the resonance variable).
    score : {"cathode", "anode"}
        The anomaly score (CATHODE: a classifier of data vs the background template; ANODE:
        the likelihood ratio of two flows).
    efficiencies : tuple of float
        Background efficiencies of the selections, in (0, 1).
    ranking_efficiency : float
        The efficiency whose significance ranks the windows (one of ``efficiencies``).
    background_estimate : {"calibrated", "template", "fit"}
        Which estimate the significance uses (all three are reported).
    oversample : int
        Template events per signal-region event.
    max_train_events : int
        The background flow trains on at most this many sideband events.
    trend : int
        Degree (0 to 3) of the polynomial trend in the resonance variable of the flows'
        model-space features (0: none).
    conditional : bool
        Whether the flows see the resonance variable beyond the trend.
    closure_margin : float or None
        The sideband closure uses sideband events at least this far from the signal region
        (``None``: half the sideband width); in [0, sideband).
    folds : int
        Out-of-fold scoring (>= 2).
    fit_bins : int
        Bins of the dijet-function fits over the sidebands (>= 8).
    classifier : ClassifierSettings
        The CATHODE classifier.

    References
    ----------
    A. Hallin et al., "Classifying anomalies through outer density estimation" (CATHODE),
    arXiv:2109.00546; B. Nachman and D. Shih, "Anomaly detection with density estimation"
    (ANODE), arXiv:2001.04990.
    """

    family: ClassVar[str] = "scan"

    start: _Finite
    stop: _Finite
    width: _Positive
    step: _Positive
    sideband: _Positive
    score: Literal["cathode", "anode"] = "cathode"
    efficiencies: tuple[_Efficiency, ...] = Field((0.1, 0.01, 0.001), min_length=1)
    ranking_efficiency: _Efficiency = 0.01
    background_estimate: Literal["calibrated", "template", "fit"] = "calibrated"
    oversample: int = Field(4, ge=1)
    max_train_events: int = Field(60_000, ge=100)
    trend: int = Field(1, ge=0, le=3)
    conditional: bool = False
    closure_margin: Annotated[Float, Field(ge=0, allow_inf_nan=False)] | None = None
    folds: int = Field(5, ge=2)
    fit_bins: int = Field(40, ge=8)
    classifier: ClassifierSettings = Field(default_factory=ClassifierSettings)

    @field_validator("efficiencies", mode="before")
    @classmethod
    def _tuple(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @model_validator(mode="after")
    def _consistent(self) -> ScanSection:
        if not self.start < self.stop:
            raise ValueError(f"'start' ({self.start}) must be below 'stop' ({self.stop})")
        n = (self.stop - self.start - self.width) / self.step + 1
        if not n < MAX_WINDOWS + 1:
            raise ValueError(
                f"start {self.start}, stop {self.stop}, width {self.width} and step "
                f"{self.step} make {n:.3g} windows; at most {MAX_WINDOWS} are allowed"
            )
        if self.ranking_efficiency not in self.efficiencies:
            raise ValueError(
                f"'ranking_efficiency' {self.ranking_efficiency} must be one of the "
                f"efficiencies {list(self.efficiencies)}"
            )
        make_windows(self.start, self.stop, self.width, self.step, self.sideband)
        if self.closure_margin is not None and not self.closure_margin < self.sideband:
            raise ValueError(
                f"'closure_margin' must lie in [0, sideband = {self.sideband}), "
                f"got {self.closure_margin}"
            )
        return self

    def windows(self, data_range: tuple[float, float] | None = None) -> list[Window]:
        """The scan's windows (:func:`make_windows`)."""
        return make_windows(self.start, self.stop, self.width, self.step, self.sideband, data_range)

    @property
    def closure_margin_value(self) -> float:
        """``closure_margin``, or half the sideband width when it is ``None``."""
        if self.closure_margin is None:
            return 0.5 * self.sideband
        return self.closure_margin


class ScanSettings(ScanSection):
    """Everything a scan does: :class:`ScanSection` plus the variables, the density models'
    settings, the truth label, the seed and the device.

    Parameters
    ----------
    resonance : dict
        Feature spec of the resonance variable (the flows' condition), e.g.
        ``{"name": "mjj", "kind": "continuous"}``.
    features : list of dict
        Feature specs of ``x`` (the flows' targets, the classifier's inputs).
    flow : FlowSettings
        The density models' flow; a mapping applies over :data:`DENSITY_FLOW`.
    training : TrainingSettings
        Their training; a mapping applies over :data:`DENSITY_TRAINING`.
    label : str or None
        Truth branch (1 signal, 0 background): ROC and SIC when present.
    seed : int
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Examples
    --------
    >>> s = ScanSettings(resonance={"name": "mjj"}, features=[{"name": "mj1"}], start=3.0,
    ...                  stop=4.0, width=0.4, step=0.2, sideband=0.2, flow={"n_bins": 4})
    >>> s.flow.kind, s.flow.n_bins, s.training.max_epochs, s.feature_names
    ('autoregressive', 4, 100, ['mj1'])
    """

    resonance: dict[str, Any]
    features: list[dict[str, Any]] = Field(min_length=1)
    flow: DensityFlow = DENSITY_FLOW
    training: DensityTraining = DENSITY_TRAINING
    label: str | None = Field(None, min_length=1)
    seed: int = Field(0, ge=0, lt=2**63)
    device: Device = "auto"

    @property
    def resonance_name(self) -> str:
        """Branch name of the resonance variable."""
        return str(self.resonance["name"])

    @property
    def feature_names(self) -> list[str]:
        """Branch names of the features ``x``."""
        return [str(f["name"]) for f in self.features]
