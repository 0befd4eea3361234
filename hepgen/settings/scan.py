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
    "EnsembleSettings",
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

    def edge(v: float) -> float:
        # start + i * step accumulates binary rounding (3.3000000000000003): edges are
        # rounded to 12 significant digits, far below any resolution of the variable
        return float(f"{v:.12g}")

    for i in range(n):
        lo = start + i * step
        w = Window(edge(lo), edge(lo + width), edge(lo - sideband), edge(lo + width + sideband))
        if data_range is not None and (w.sb_lo < data_range[0] or w.sb_hi > data_range[1]):
            raise InputError(
                f"scan: window [{w.lo:.4g}, {w.hi:.4g}) with its sidebands "
                f"[{w.sb_lo:.4g}, {w.sb_hi:.4g}) reaches outside the data range "
                f"[{data_range[0]:.4g}, {data_range[1]:.4g}] of the resonance variable; "
                "narrow scan.start/scan.stop or the sidebands"
            )
        windows.append(w)
    return windows


def _round_out(v: float, up: bool) -> float:
    """``v`` rounded to 6 significant digits: down (``<= v``) or up (strictly ``> v``)."""
    if not np.isfinite(v) or v == 0:
        return float(v)
    q = 10.0 ** (int(np.floor(np.log10(abs(v)))) - 5)  # a unit of the 6th digit
    r = float(f"{v:.6g}")  # nearest: |r - v| <= q / 2, so one step of q puts it outside
    if up and r <= v:
        r = float(f"{r + q:.6g}")
    elif not up and r > v:
        r = float(f"{r - q:.6g}")
    return r


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


class EnsembleSettings(Settings):
    """``scan.ensemble``: seed ensembles of a window's models, averaged as CATHODE does.

    ``flows`` background flows with different seeds each give an equal share of the template
    (their mixture is the ensemble's density); ``classifiers`` CATHODE classifiers (or ANODE
    data flows) per fold with different seeds are averaged (the mean log-odds).  Each member
    is also scored alone, and the spread of the members' significances is reported.

    Examples
    --------
    >>> EnsembleSettings(flows=2).classifiers
    1
    """

    family: ClassVar[str] = "scan.ensemble"

    flows: int = Field(1, ge=1, le=20)
    classifiers: int = Field(1, ge=1, le=50)


class ScanSection(Settings):
    """The ``scan`` section: the windows, the score and the selections.

    Parameters
    ----------
    start, stop, width, step, sideband : float or None
        Signal-region windows of ``width`` every ``step`` from ``start`` to ``stop``, with
        sidebands of ``sideband`` on each side (units of the resonance variable).
    window : (float, float) or None
        Instead of the sliding windows: one fixed signal region ``[lo, hi)`` (``start``,
        ``stop``, ``width`` and ``step`` not given).  Its sidebands are ``sideband`` wide
        when that is given, else they reach over the whole range of the data (the sideband
        events of a separate sideband sample, or the rest of the spectrum).
    sqrt_s : float
        The collision energy in the units of the resonance variable (13 for TeV, 13000 for
        GeV): the dijet function of the sideband fits is a function of ``m / sqrt_s``.
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
    ensemble : EnsembleSettings
        Seed ensembles of background flows and classifiers per window.
    pseudo_scans : int
        Background-only pseudo-scans that measure the global significance (0: none).
    pvalue_samples : int
        Samples of the background model per signal-region event for the per-event likelihood
        p-values of the report (0: none).

    References
    ----------
    A. Hallin et al., "Classifying anomalies through outer density estimation" (CATHODE),
    arXiv:2109.00546; B. Nachman and D. Shih, "Anomaly detection with density estimation"
    (ANODE), arXiv:2001.04990.
    """

    family: ClassVar[str] = "scan"

    start: _Finite | None = None
    stop: _Finite | None = None
    width: _Positive | None = None
    step: _Positive | None = None
    sideband: _Positive | None = None
    window: tuple[_Finite, _Finite] | None = None
    sqrt_s: _Positive = 13.0
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
    ensemble: EnsembleSettings = Field(default_factory=EnsembleSettings)
    pseudo_scans: int = Field(10_000, ge=0, le=10_000_000)
    pvalue_samples: int = Field(100, ge=0, le=100_000)

    @field_validator("efficiencies", mode="before")
    @classmethod
    def _tuple(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @field_validator("window", mode="before")
    @classmethod
    def _pair(cls, value: Any) -> Any:
        return tuple(value) if isinstance(value, list) else value

    @model_validator(mode="after")
    def _consistent(self) -> ScanSection:
        sliding = ("start", "stop", "width", "step")
        if self.window is None:
            missing = [k for k in (*sliding, "sideband") if getattr(self, k) is None]
            if missing:
                raise ValueError(
                    f"missing {', '.join(repr(k) for k in missing)}: give the sliding windows "
                    "(start, stop, width, step, sideband) or one fixed 'window: [lo, hi]'"
                )
            self._check_sliding()
        else:
            given = [k for k in sliding if getattr(self, k) is not None]
            if given:
                raise ValueError(
                    f"'window' fixes the signal region: drop {', '.join(repr(k) for k in given)} "
                    "(they define sliding windows)"
                )
            lo, hi = self.window
            if not lo < hi:
                raise ValueError(f"'window' [{lo}, {hi}] must have lo < hi")
        if self.ranking_efficiency not in self.efficiencies:
            raise ValueError(
                f"'ranking_efficiency' {self.ranking_efficiency} must be one of the "
                f"efficiencies {list(self.efficiencies)}"
            )
        if (
            self.closure_margin is not None
            and self.sideband is not None
            and not self.closure_margin < self.sideband
        ):
            raise ValueError(
                f"'closure_margin' must lie in [0, sideband = {self.sideband}), "
                f"got {self.closure_margin}"
            )
        # the edges (a fixed window without sideband: lo and hi; the data are checked
        # against sqrt_s when they are read) must lie in (0, sqrt_s), the dijet fits' domain
        ws = self.windows()
        top = max(w.sb_hi if np.isfinite(w.sb_hi) else w.hi for w in ws)
        bottom = min(w.sb_lo if np.isfinite(w.sb_lo) else w.lo for w in ws)
        if top >= self.sqrt_s:
            raise ValueError(
                f"the windows reach {top:.6g} >= sqrt_s {self.sqrt_s:g}: give 'sqrt_s' in the "
                "units of the resonance variable, e.g. 13000 for GeV (the dijet fits use "
                "m / sqrt_s)"
            )
        if bottom <= 0:
            raise ValueError(
                f"the windows reach down to {bottom:.6g}: the dijet fits need a positive "
                "resonance variable (raise 'start'/'window' or narrow 'sideband')"
            )
        return self

    def _check_sliding(self) -> None:
        """The sliding windows' parameters consistent (ValueError naming them)."""
        assert self.start is not None and self.stop is not None
        assert self.width is not None and self.step is not None and self.sideband is not None
        if not self.start < self.stop:
            raise ValueError(f"'start' ({self.start}) must be below 'stop' ({self.stop})")
        n = (self.stop - self.start - self.width) / self.step + 1
        if not n < MAX_WINDOWS + 1:
            raise ValueError(
                f"start {self.start}, stop {self.stop}, width {self.width} and step "
                f"{self.step} make {n:.3g} windows; at most {MAX_WINDOWS} are allowed"
            )
        make_windows(self.start, self.stop, self.width, self.step, self.sideband)

    def windows(self, data_range: tuple[float, float] | None = None) -> list[Window]:
        """The scan's windows (:func:`make_windows`, or the fixed ``window``).

        Parameters
        ----------
        data_range : (float, float) or None
            The data's range of the resonance variable (units of the variable).  Sliding
            windows and a fixed window with ``sideband`` must lie inside it (else
            :class:`~hepgen.errors.InputError`); a fixed window without ``sideband`` takes
            it as its sidebands' outer edges, rounded outwards to 6 significant digits (the
            upper one strictly above the largest value, so that every event counts; readable
            edges such as 1500 rather than the float32 1500.000732421875), or infinite edges
            without a range.

        Examples
        --------
        >>> s = ScanSection(window=[3.3, 3.7], sideband=0.4)
        >>> s.windows()
        [Window(lo=3.3, hi=3.7, sb_lo=2.9, sb_hi=4.1)]
        >>> ScanSection(window=[3.3, 3.7]).windows((1.500000732, 7.25))
        [Window(lo=3.3, hi=3.7, sb_lo=1.5, sb_hi=7.25001)]
        """
        if self.window is None:
            assert self.start is not None and self.stop is not None
            assert self.width is not None and self.step is not None
            assert self.sideband is not None
            return make_windows(
                self.start, self.stop, self.width, self.step, self.sideband, data_range
            )
        lo, hi = (float(v) for v in self.window)
        if self.sideband is not None:
            w = make_windows(lo, hi, hi - lo, hi - lo, self.sideband, data_range)[0]
            return [Window(lo, hi, w.sb_lo, w.sb_hi)]
        if data_range is None:
            return [Window(lo, hi, -np.inf, np.inf)]
        a, b = float(data_range[0]), float(data_range[1])
        if not (a < lo and hi < b):
            raise InputError(
                f"scan: the fixed window [{lo:.6g}, {hi:.6g}) needs data on both sides; the "
                f"resonance variable spans [{a:.6g}, {b:.6g}]"
            )
        return [Window(lo, hi, _round_out(a, up=False), _round_out(b, up=True))]

    @property
    def closure_margin_value(self) -> float:
        """``closure_margin``; when it is ``None`` half the sideband width, or half the
        signal region's width for a fixed window without ``sideband``."""
        if self.closure_margin is not None:
            return self.closure_margin
        if self.sideband is not None:
            return 0.5 * self.sideband
        assert self.window is not None
        return 0.5 * (self.window[1] - self.window[0])


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
