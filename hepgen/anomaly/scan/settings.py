"""What a scan does: :class:`ScanSettings`, the ``scan`` section of a scan config.

The settings are checked when they are made (a :class:`~hepgen.errors.ConfigError` names the
setting); :mod:`hepgen.anomaly.config` builds them from a scan config file.  What each
setting does in the scan is described in :mod:`hepgen.anomaly.scan`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from hepgen.anomaly.scan.windows import Window, make_windows
from hepgen.errors import ConfigError

__all__ = ["CLASSIFIER_DEFAULTS", "ESTIMATES", "SCORES", "ScanSettings"]

#: Score kinds of :class:`ScanSettings`.
SCORES = ("cathode", "anode")
#: Background estimates after the selection.
ESTIMATES = ("calibrated", "template", "fit")

#: Settings of the CATHODE classifier (``scan.classifier``) and their defaults.
CLASSIFIER_DEFAULTS: dict[str, float] = {
    "n_estimators": 300,
    "max_depth": 3,
    "learning_rate": 0.1,
    "early_stopping_rounds": 20,
    "validation_fraction": 0.2,
    "min_child_weight": 1.0,
    "subsample": 1.0,
}


@dataclass
class ScanSettings:
    """What a scan does (the ``scan`` section of a scan config; see the module docstring).

    Parameters
    ----------
    resonance : dict
        Feature spec of the resonance variable (the flows' condition), e.g.
        ``{"name": "mjj", "kind": "continuous"}``.
    features : list of dict
        Feature specs of ``x`` (the flows' targets, the classifier's inputs).
    start, stop, width, step, sideband : float
        Windows (:func:`make_windows`), units of the resonance variable.
    score : {"cathode", "anode"}
    efficiencies : sequence of float
        Background efficiencies of the selections.
    ranking_efficiency : float
        The efficiency whose significance ranks the windows (one of ``efficiencies``).
    background_estimate : {"calibrated", "template", "fit"}
        Which estimate the significance uses (all three are reported).
    oversample : int
        Template events per SR event.
    max_train_events : int
        The background flow trains on at most this many sideband events (a random subset):
        under a time limit, more epochs on fewer events model the background better.
    trend : int
        Degree of the polynomial trend in ``m`` of the flows' model-space features
        (:class:`DensityModel` ``trend``; 0: none).
    conditional : bool
        Whether the flows see ``m`` beyond the trend (:class:`DensityModel` ``conditional``).
    closure_margin : float or None
        The sideband closure uses the sideband events at least this far from the SR (units of
        ``m``; ``None``: half the sideband width), where a signal's tails hardly reach.
    folds : int
        Out-of-fold scoring (>= 2).
    fit_bins : int
        Bins of the dijet-function fits over the sidebands.
    flow, training : dict
        :class:`DensityModel` flow and training settings (background and data flows).
    classifier : dict
        xgboost settings of the CATHODE classifier (``n_estimators``, ``max_depth``,
        ``learning_rate``, ``early_stopping_rounds``, ``validation_fraction``).
    label : str or None
        Truth branch (1 signal, 0 background): ROC and SIC when present.
    seed : int
    device : {"auto", "cpu", "cuda"}
    """

    resonance: dict[str, Any]
    features: list[dict[str, Any]]
    start: float
    stop: float
    width: float
    step: float
    sideband: float
    score: str = "cathode"
    efficiencies: tuple[float, ...] = (0.1, 0.01, 0.001)
    ranking_efficiency: float = 0.01
    background_estimate: str = "calibrated"
    oversample: int = 4
    max_train_events: int = 60_000
    trend: int = 1
    conditional: bool = False
    closure_margin: float | None = None
    folds: int = 5
    fit_bins: int = 40
    flow: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    classifier: dict[str, Any] = field(default_factory=dict)
    label: str | None = None
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.score not in SCORES:
            raise ConfigError(f"scan: 'score' must be one of {SCORES}, got {self.score!r}")
        if self.background_estimate not in ESTIMATES:
            raise ConfigError(
                f"scan: 'background_estimate' must be one of {ESTIMATES}, "
                f"got {self.background_estimate!r}"
            )
        effs = tuple(float(e) for e in self.efficiencies)
        if not effs or not all(0.0 < e < 1.0 for e in effs):
            raise ConfigError(f"scan: 'efficiencies' must lie in (0, 1), got {list(effs)}")
        self.efficiencies = effs
        if float(self.ranking_efficiency) not in effs:
            raise ConfigError(
                f"scan: 'ranking_efficiency' {self.ranking_efficiency} must be one of the "
                f"efficiencies {list(effs)}"
            )
        if int(self.folds) < 2:
            raise ConfigError(f"scan: 'folds' must be >= 2, got {self.folds}")
        if self.closure_margin is not None and not (
            0.0 <= float(self.closure_margin) < float(self.sideband)
        ):
            raise ConfigError(
                f"scan: 'closure_margin' must lie in [0, sideband = "
                f"{self.sideband}), got {self.closure_margin}"
            )
        if int(self.oversample) < 1:
            raise ConfigError(f"scan: 'oversample' must be >= 1, got {self.oversample}")
        if not self.features:
            raise ConfigError("scan: 'features' is empty; name the features x of the flows")
        unknown = sorted(set(self.classifier) - set(CLASSIFIER_DEFAULTS))
        if unknown:
            raise ConfigError(
                f"scan.classifier: unknown setting(s) {unknown} (known: "
                f"{', '.join(CLASSIFIER_DEFAULTS)})"
            )

    @property
    def closure_margin_value(self) -> float:
        """``closure_margin``, or half the sideband width when it is ``None``."""
        if self.closure_margin is None:
            return 0.5 * float(self.sideband)
        return float(self.closure_margin)

    @property
    def resonance_name(self) -> str:
        """Branch name of the resonance variable."""
        return str(self.resonance["name"])

    @property
    def feature_names(self) -> list[str]:
        """Branch names of the features ``x``."""
        return [str(f["name"]) for f in self.features]

    def windows(self, data_range: tuple[float, float] | None = None) -> list[Window]:
        """The scan's windows (:func:`make_windows`)."""
        return make_windows(self.start, self.stop, self.width, self.step, self.sideband, data_range)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON settings (recorded in ``scan.json``)."""
        d = dataclasses.asdict(self)
        d["efficiencies"] = list(self.efficiencies)
        return d
