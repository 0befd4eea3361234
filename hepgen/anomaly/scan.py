r"""Sliding-window resonance scans with learned background templates (ANODE and CATHODE).

A scan looks for a localized excess in a resonance variable ``m`` (the dijet mass) without a
signal model.  The signal region (SR) ``[lo, hi)`` slides over ``m`` in steps; the sidebands
(SB) ``[lo - s, lo)`` and ``[hi, hi + s)`` beside it hold the background.  Per window:

1. **Background model.**  A density model :math:`p_{bg}(x | m)` (:class:`DensityModel`) is
   trained on the sideband events and interpolated into the SR.  The features ``x`` (jet
   masses, N-subjettiness) depend smoothly on ``m``.  By default (``trend`` 1,
   ``conditional`` false) a straight line in the preprocessed ``m`` carries that dependence
   through the gap and an unconditional flow models the residuals: a conditional flow's
   networks, free inside the gap, interpolated far worse there (module docstring of
   :mod:`hepgen.anomaly.density`).
2. **Background template.**  ``m`` values are drawn from a Gaussian kernel density estimate of
   the SR data's ``m`` (``oversample`` times as many as SR events), and ``x`` from
   :math:`p_{bg}(x | m)`: the template is what the SR would hold without a signal.
3. **Score** (``score``):

   * ``cathode``: an xgboost classifier separates SR data (label 1) from the template
     (label 0, weighted to the same total) on ``x`` alone (``m`` is left out so the classifier
     cannot learn the ``m`` spectrum); the score is its log-odds.  Where there is no signal the
     classifier cannot do better than chance (if the template is good); a signal makes the
     data richer than the template where it lives.
   * ``anode``: the likelihood ratio :math:`\log p_{data}(x | m) - \log p_{bg}(x | m)`, with a
     second flow :math:`p_{data}` trained on the SR data.  A raw density :math:`-\log p(x)`
     changes with the choice of coordinates; the ratio does not.

   Every SR event and every template event is scored **out of fold**: the events are split in
   ``folds`` parts, the classifier (or the data flow) is trained without a part and scores only
   that part.  Scoring the events a model was trained on would make data look more
   data-like than the template, an excess without a signal.
4. **Selection.**  For each background efficiency :math:`\epsilon` (10 %, 1 %, 0.1 %) the
   threshold is the score the template exceeds with probability :math:`\epsilon`.
5. **Background after the selection** (``background_estimate``):

   * ``template``: :math:`n_{exp} = \hat N_{SR}\,\hat\epsilon` where :math:`\hat N_{SR}` is the
     background in the SR from a fit of the dijet function to the *unselected* sideband
     spectrum (:func:`~hepgen.anomaly.stats.fit_sidebands`) and :math:`\hat\epsilon` the
     template's pass fraction; its uncertainty combines the fit's and the template's
     binomial one.  It trusts the flow's tails: wherever the flow is too thin, the
     classifier selects data there without any signal, and the template estimate comes out
     low (on the reference 1M-event null sample the data exceeded it by up to 43 % at 1 %
     efficiency in the windows above 3.7 TeV, where the sidebands hold only 10-30k events).
   * ``calibrated`` (default): the template estimate times the *sideband closure*: the
     background flow also samples ``oversample`` template events per sideband event at least
     ``closure_margin`` from the SR (at its ``m``; a signal's tails leak into the sidebands'
     inner edges), the same classifiers score sideband data and sideband template, and the ratio of their pass
     fractions corrects the template where the flow mis-models it.  This works because the
     flow's errors are the same in the SR as in the sidebands: the trend carries the ``m``
     dependence and the residual flow does not see ``m`` (with a conditional flow the errors
     inside the gap were 3-4 times those in the sidebands and the closure did not follow
     them).  The closure's binomial uncertainty enters the error, which costs sensitivity at
     tight selections where few sideband events pass; a signal leaking into the sidebands
     raises the closure and lowers the SR's excess (a conservative bias).
   * ``fit``: the sideband events are scored by the same models (the fold models' mean), the
     selection is applied, and the dijet function fitted to the selected sideband spectrum is
     integrated over the SR.  It does not rely on the template, but it needs a selection
     whose efficiency the dijet function can follow across ``m``.  With features that scale
     with ``m`` (jet masses) a classifier trained inside the SR selects a region of ``x``
     that the sidebands populate differently, and the fit fails: on the reference null
     sample it predicted 2-10 times too few events at 1 %.  Reported as a diagnostic.

6. **Significance.**  The local significance of the observed count against the expected one,
   with the background uncertainty profiled (:func:`~hepgen.anomaly.stats.significance`).
   Windows are ranked by the significance at ``ranking_efficiency``.  A global significance
   would need the look-elsewhere effect (overlapping windows are correlated); it is not
   computed.

When a truth label branch exists, each window also reports the ROC curve and the
significance improvement characteristic SIC = TPR / sqrt(FPR) of its score on the SR events.

References
----------
B. Nachman, D. Shih, "Anomaly Detection with Density Estimation" (ANODE), Phys. Rev. D 101,
075042 (2020), arXiv:2001.04990.
A. Hallin et al., "Classifying Anomalies THrough Outer Density Estimation" (CATHODE),
Phys. Rev. D 106, 055006 (2022), arXiv:2109.00546.
G. Kasieczka et al., "The LHC Olympics 2020", Rep. Prog. Phys. 84, 124201 (2021),
arXiv:2101.08320.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hepgen.anomaly.density import DensityModel, nonfinite_problems
from hepgen.anomaly.stats import (
    ROC,
    fit_sidebands,
    roc_sic,
    significance,
    threshold_at_efficiency,
)
from hepgen.errors import ConfigError, InputError, require
from hepgen.models.flow_model import resolve_device
from hepgen.progress import progress

__all__ = [
    "CLASSIFIER_DEFAULTS",
    "ESTIMATES",
    "MIN_SIDEBAND_EVENTS",
    "SCORES",
    "ScanResult",
    "ScanSettings",
    "Window",
    "WindowResult",
    "make_windows",
    "run_scan",
    "scan_window",
]

log = logging.getLogger(__name__)

#: Score kinds of :class:`ScanSettings`.
SCORES = ("cathode", "anode")
#: Background estimates after the selection.
ESTIMATES = ("calibrated", "template", "fit")
#: Fewest sideband events (each side) that a background model is trained on.
MIN_SIDEBAND_EVENTS = 200


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


@dataclass
class WindowResult:
    """What one window found (see :meth:`to_dict` for the ``scan.json`` entry)."""

    window: Window
    n_signal_region: int
    n_sideband: tuple[int, int]
    n_background_fit: float
    n_background_fit_error: float
    selections: list[dict[str, Any]]
    ranking_efficiency: float
    estimate: str
    roc: ROC | None = None
    sideband_fit: dict[str, Any] | None = None
    training: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    # per-event results kept for plots (not written to scan.json)
    arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def headline(self) -> dict[str, Any]:
        """The selection at the ranking efficiency."""
        for s in self.selections:
            if s["efficiency"] == self.ranking_efficiency:
                return s
        raise KeyError(self.ranking_efficiency)

    @property
    def significance(self) -> float:
        """Local significance at the ranking efficiency with the configured estimate (NaN
        when there was no background estimate)."""
        z = self.headline["significance"]
        return float("nan") if z is None else float(z)

    def to_dict(self) -> dict[str, Any]:
        """The ``scan.json`` entry: ``lo``, ``hi``, ``n_observed``, ``n_expected``,
        ``significance``, ``threshold`` (at the ranking efficiency), every selection,
        ``max_sic`` when labels exist."""
        h = self.headline
        d: dict[str, Any] = {
            "lo": self.window.lo,
            "hi": self.window.hi,
            "sideband_lo": self.window.sb_lo,
            "sideband_hi": self.window.sb_hi,
            "n_signal_region": self.n_signal_region,
            "n_sideband": list(self.n_sideband),
            "n_background_fit": self.n_background_fit,
            "n_background_fit_error": self.n_background_fit_error,
            "efficiency": self.ranking_efficiency,
            "estimate": self.estimate,
            "n_observed": h["n_observed"],
            "n_expected": h["n_expected"],
            "n_expected_error": h["n_expected_error"],
            "significance": h["significance"],
            "threshold": h["threshold"],
            "selections": self.selections,
            "sideband_fit": self.sideband_fit,
            "training": self.training,
            "seconds": self.seconds,
            "notes": self.notes,
        }
        if self.roc is not None:
            d["max_sic"] = self.roc.max_sic
            d["auc"] = self.roc.auc
            d["roc"] = self.roc.to_dict()
        return d


@dataclass
class ScanResult:
    """All windows of a scan, ranked by significance."""

    settings: ScanSettings
    windows: list[WindowResult]
    n_events: int
    has_labels: bool
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ranking(self) -> list[int]:
        """Window indices, most significant first."""

        def key(i: int) -> float:
            z = self.windows[i].significance
            return -z if np.isfinite(z) else np.inf

        return sorted(range(len(self.windows)), key=key)

    @property
    def best(self) -> WindowResult:
        """The most significant window."""
        return self.windows[self.ranking[0]]

    def to_dict(self) -> dict[str, Any]:
        """``scan.json``: settings, one entry per window (in m order) with its ``rank``."""
        rank = {i: r + 1 for r, i in enumerate(self.ranking)}
        entries = []
        for i, w in enumerate(self.windows):
            entries.append({"rank": rank[i], **w.to_dict()})
        return {
            "n_events": self.n_events,
            "resonance": self.settings.resonance_name,
            "features": self.settings.feature_names,
            "score": self.settings.score,
            "estimate": self.settings.background_estimate,
            "ranking_efficiency": self.settings.ranking_efficiency,
            "has_labels": self.has_labels,
            "windows": entries,
            "best": {
                "lo": self.best.window.lo,
                "hi": self.best.window.hi,
                "significance": self.best.significance,
            },
            "settings": self.settings.to_dict(),
            "seconds": self.seconds,
            "notes": self.notes,
        }


# --------------------------------------------------------------------------------------------
# one window
# --------------------------------------------------------------------------------------------


def _density(settings: ScanSettings, seed: int) -> DensityModel:
    return DensityModel(
        settings.features,
        [settings.resonance],
        flow=settings.flow or None,
        training=settings.training or None,
        trend=int(settings.trend),
        conditional=bool(settings.conditional),
        seed=seed,
        device=settings.device,
    )


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


def _xgb_params(settings: ScanSettings, notes: list[str]) -> dict[str, Any]:
    """xgboost parameters of the CATHODE classifier (the device resolved like the C2ST's:
    CUDA only with a GPU and a CUDA build of xgboost; a fallback is noted)."""
    from hepgen.validation.c2st import xgboost_device

    c = {**CLASSIFIER_DEFAULTS, **settings.classifier}
    device, note = xgboost_device(settings.device)
    if note:
        notes.append(note)
    return {
        "objective": "binary:logistic",
        "eval_metric": "logloss",
        "tree_method": "hist",
        "device": device,
        "max_depth": int(c["max_depth"]),
        "eta": float(c["learning_rate"]),
        "min_child_weight": float(c["min_child_weight"]),
        "subsample": float(c["subsample"]),
        "nthread": 0,
    }


def _folds(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """A fold index (0 ... k-1) per row, balanced."""
    return rng.permutation(np.arange(n) % k)


def _cathode_scores(
    x_data: np.ndarray,
    x_tmpl: np.ndarray,
    x_side: np.ndarray,
    settings: ScanSettings,
    rng: np.random.Generator,
    notes: list[str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Out-of-fold classifier log-odds of SR data, template and (fold mean) sideband events."""
    xgb: Any = require("xgboost", "the CATHODE classifier (scan.score: cathode)")

    c = {**CLASSIFIER_DEFAULTS, **settings.classifier}
    base = _xgb_params(settings, notes)
    k = int(settings.folds)
    f_data, f_tmpl = _folds(len(x_data), k, rng), _folds(len(x_tmpl), k, rng)
    s_data, s_tmpl = np.empty(len(x_data)), np.empty(len(x_tmpl))
    s_side = np.zeros(len(x_side))
    w_tmpl = len(x_data) / len(x_tmpl)  # the template weighs as much as the data in total
    iterations = []
    for fold in range(k):
        params = {**base, "seed": int(rng.integers(2**31 - 1))}
        tr_d, tr_t = np.flatnonzero(f_data != fold), np.flatnonzero(f_tmpl != fold)
        x = np.concatenate([x_data[tr_d], x_tmpl[tr_t]])
        y = np.concatenate([np.ones(len(tr_d)), np.zeros(len(tr_t))])
        w = np.concatenate([np.ones(len(tr_d)), np.full(len(tr_t), w_tmpl)])
        val = rng.random(len(y)) < float(c["validation_fraction"])
        dfit = xgb.QuantileDMatrix(x[~val], label=y[~val], weight=w[~val])
        dval = xgb.QuantileDMatrix(x[val], label=y[val], weight=w[val], ref=dfit)
        booster = xgb.train(
            params,
            dfit,
            num_boost_round=int(c["n_estimators"]),
            evals=[(dval, "val")],
            verbose_eval=False,
            callbacks=[
                xgb.callback.EarlyStopping(rounds=int(c["early_stopping_rounds"]), save_best=True)
            ],
        )
        iterations.append(int(booster.best_iteration) + 1)

        def predict(a: np.ndarray, b: Any = booster) -> np.ndarray:
            return b.predict(xgb.DMatrix(a), output_margin=True).astype(np.float64)

        s_data[f_data == fold] = predict(x_data[f_data == fold])
        s_tmpl[f_tmpl == fold] = predict(x_tmpl[f_tmpl == fold])
        if len(x_side):
            s_side += predict(x_side) / k
    return s_data, s_tmpl, s_side, {"classifier_trees": iterations}


def _anode_scores(
    data: Mapping[str, np.ndarray],
    tmpl: Mapping[str, np.ndarray],
    side: Mapping[str, np.ndarray],
    bg: DensityModel,
    settings: ScanSettings,
    rng: np.random.Generator,
    quiet: bool,
    outside: dict[str, int],
    work: Path | None = None,
    resume: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Out-of-fold log p_data - log p_bg of SR data, template and (fold mean) sideband events."""
    k = int(settings.folds)
    n_d = len(next(iter(data.values())))
    n_t = len(next(iter(tmpl.values())))
    n_s = len(next(iter(side.values())))
    f_data, f_tmpl = _folds(n_d, k, rng), _folds(n_t, k, rng)
    lp_data, lp_tmpl = np.empty(n_d), np.empty(n_t)
    lp_side = np.zeros(n_s)
    epochs = []
    for fold in range(k):
        model = _density(settings, int(rng.integers(2**31 - 1)))
        train_rows = f_data != fold
        model.fit(
            {n: v[train_rows] for n, v in data.items()},
            quiet=quiet,
            **_checkpointing(work, f"data-flow-{fold}", resume),
        )
        epochs.append(len(model.training_.history))
        lp_data[~train_rows] = model.log_prob(
            {n: v[~train_rows] for n, v in data.items()}, domain_counts=outside
        )
        sel = f_tmpl == fold
        lp_tmpl[sel] = model.log_prob({n: v[sel] for n, v in tmpl.items()}, domain_counts=outside)
        if n_s:
            # the data flows extrapolate outside the SR here (see the module docstring)
            lp_side += model.log_prob(side, domain_counts={}) / k
    s_data = lp_data - bg.log_prob(data, domain_counts=outside)
    s_tmpl = lp_tmpl - bg.log_prob(tmpl, domain_counts=outside)
    s_side = lp_side - bg.log_prob(side, domain_counts=outside) if n_s else lp_side
    return s_data, s_tmpl, s_side, {"data_flow_epochs": epochs}


def _checkpointing(work: Path | None, name: str, resume: bool) -> dict[str, Any]:
    """``checkpoint_dir``/``resume`` of one density flow of a window: resume only where its
    checkpoint exists (else it starts afresh, logged)."""
    if work is None:
        return {}
    folder = work / name
    has = (folder / "last.safetensors").is_file()
    if resume and not has:
        log.info("scan: no checkpoint of the %s flow in %s, training it afresh", name, work)
    return {"checkpoint_dir": folder, "resume": resume and has}


def _finite_scores(s: np.ndarray, what: str, notes: list[str]) -> np.ndarray:
    """NaN scores (a density underflow in both flows) become -inf, the least anomalous;
    +-inf stay as they are.  Their count is noted."""
    bad = ~np.isfinite(s)
    if bad.any():
        notes.append(f"{int(bad.sum())} {what} scores were not finite (NaN -> least anomalous)")
        s = np.where(np.isnan(s), -np.inf, s)
    return s


def scan_window(
    columns: Mapping[str, np.ndarray],
    window: Window,
    settings: ScanSettings,
    seed: int = 0,
    quiet: bool = False,
    work: str | os.PathLike | None = None,
    resume: bool = False,
) -> WindowResult:
    """Learn the background around one window, score, select and count (module docstring).

    Parameters
    ----------
    columns : mapping of str to array of shape (n,)
        The resonance variable, the features and (optionally) the label, one row per event.
    window : Window
    settings : ScanSettings
    seed : int
        Seeds the flows, the template, the folds and the classifier.
    quiet : bool
        Silence the flows' progress bars.
    work : path or None
        Folder for the per-epoch checkpoints of the window's flows (``background/``,
        ``data-flow-K/``); None: no checkpoints.
    resume : bool
        Continue each flow from its checkpoint in ``work`` where there is one (a flow
        without one starts afresh): the same result as an uninterrupted run.

    Raises
    ------
    InputError
        Fewer than :data:`MIN_SIDEBAND_EVENTS` events in a sideband or no SR event (the
        counts named).
    """
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    m = np.asarray(columns[settings.resonance_name], dtype=np.float64)
    names = [settings.resonance_name, *settings.feature_names]
    in_sr = (m >= window.lo) & (m < window.hi)
    left = (m >= window.sb_lo) & (m < window.lo)
    right = (m >= window.hi) & (m < window.sb_hi)
    n_left, n_right, n_sr = int(left.sum()), int(right.sum()), int(in_sr.sum())
    if min(n_left, n_right) < MIN_SIDEBAND_EVENTS or n_sr < 2 * settings.folds:
        raise InputError(
            f"scan: window [{window.lo:.4g}, {window.hi:.4g}) has {n_left} events in the lower "
            f"sideband [{window.sb_lo:.4g}, {window.lo:.4g}), {n_right} in the upper "
            f"[{window.hi:.4g}, {window.sb_hi:.4g}) and {n_sr} in the signal region; a "
            f"background model needs >= {MIN_SIDEBAND_EVENTS} per sideband: widen the "
            "sidebands or use more events"
        )
    notes: list[str] = []
    side = left | right
    data = {n: np.asarray(columns[n])[in_sr] for n in names}
    sb = {n: np.asarray(columns[n])[side] for n in names}

    # 1. background flow in the sidebands
    timings: dict[str, float] = {}
    tick = time.perf_counter()
    bg = _density(settings, int(rng.integers(2**31 - 1)))
    n_sb = n_left + n_right
    rows = np.arange(n_sb)
    if n_sb > settings.max_train_events:
        rows = np.sort(rng.choice(n_sb, int(settings.max_train_events), replace=False))
        notes.append(f"background flow trained on {rows.size} of {n_sb} sideband events")
    work = None if work is None else Path(work)
    bg.fit(
        {n: v[rows] for n, v in sb.items()},
        quiet=quiet,
        **_checkpointing(work, "background", resume),
    )
    timings["background_flow_s"] = time.perf_counter() - tick
    tick = time.perf_counter()
    training: dict[str, Any] = {
        "background_flow_epochs": len(bg.training_.history),
        "background_flow_best_val_loss": _best_val_loss(bg),
    }

    # 2. template: m from a KDE of the SR data's m, x from the background flow
    from scipy.stats import gaussian_kde

    n_tmpl = n_sr * int(settings.oversample)
    kde = gaussian_kde(data[settings.resonance_name].astype(np.float64))
    m_t = kde.resample(n_tmpl, seed=rng).ravel()
    # keep the draws inside the SR (reflect the kernel tails back in)
    m_t = np.where(m_t < window.lo, 2 * window.lo - m_t, m_t)
    m_t = np.where(m_t >= window.hi, 2 * window.hi - m_t, m_t)
    m_t = np.clip(m_t, window.lo, np.nextafter(window.hi, window.lo))
    outside: dict[str, int] = {}
    tmpl = bg.sample(
        {settings.resonance_name: m_t.astype(np.float32)},
        seed=int(rng.integers(2**31 - 1)),
        domain_counts=outside,
    )
    tmpl = {n: np.asarray(tmpl[n]) for n in names}
    # the background flow's closure in the sidebands, away from the SR by closure_margin (a
    # signal's tails leak into the sidebands' inner edges): `oversample` template events per
    # sideband event there (at its m), scored beside the sideband data to calibrate the
    # template's pass fractions
    m_side = sb[settings.resonance_name].astype(np.float64)
    margin = settings.closure_margin_value
    in_closure = (m_side < window.lo - margin) | (m_side >= window.hi + margin)
    if int(in_closure.sum()) < MIN_SIDEBAND_EVENTS:
        notes.append(
            f"only {int(in_closure.sum())} sideband events lie {margin:g} or more "
            "from the signal region: the closure uses every sideband event"
        )
        in_closure = np.ones(n_sb, dtype=bool)
    tmpl_sb = bg.sample(
        {
            settings.resonance_name: np.tile(
                sb[settings.resonance_name][in_closure], int(settings.oversample)
            )
        },
        seed=int(rng.integers(2**31 - 1)),
        domain_counts=outside,
    )
    side_all = {
        n: np.concatenate([sb[n], np.asarray(tmpl_sb[n], dtype=sb[n].dtype)]) for n in names
    }
    timings["template_s"] = time.perf_counter() - tick
    tick = time.perf_counter()

    # 3. scores, out of fold
    feats = settings.feature_names
    if settings.score == "cathode":

        def matrix(d: Mapping[str, np.ndarray]) -> np.ndarray:
            return np.column_stack([np.asarray(d[n], dtype=np.float32) for n in feats])

        s_data, s_tmpl, s_side, info = _cathode_scores(
            matrix(data), matrix(tmpl), matrix(side_all), settings, rng, notes
        )
    else:
        s_data, s_tmpl, s_side, info = _anode_scores(
            data, tmpl, side_all, bg, settings, rng, quiet, outside, work, resume
        )
    s_side, s_side_tmpl = s_side[:n_sb], s_side[n_sb:]
    training.update(info)
    if outside:
        training["outside_flow_domain"] = outside
    timings["scores_s"] = time.perf_counter() - tick
    tick = time.perf_counter()
    s_data = _finite_scores(s_data, "signal-region", notes)
    s_tmpl = _finite_scores(s_tmpl, "template", notes)
    s_side = _finite_scores(s_side, "sideband", notes)
    s_side_tmpl = _finite_scores(s_side_tmpl, "sideband template", notes)

    # 4.-6. background in the SR, selections, significance
    m_sb = m[side]
    fit_range = (window.sb_lo, window.sb_hi)
    full_fit = fit_sidebands(m_sb, window.lo, window.hi, fit_range, bins=settings.fit_bins)
    n_hat = full_fit.integral(window.lo, window.hi)
    n_hat_err = full_fit.integral_error(window.lo, window.hi)
    selections = []
    for eff in settings.efficiencies:
        sel = _selection(
            eff,
            s_data,
            s_tmpl,
            s_side,
            s_side[in_closure],
            s_side_tmpl,
            m_sb,
            window,
            n_hat,
            n_hat_err,
            settings,
            notes,
        )
        selections.append(sel)

    timings["estimates_s"] = time.perf_counter() - tick
    training["timings"] = timings
    roc = None
    label = settings.label
    if label is not None and label in columns:
        y = np.asarray(columns[label])[in_sr]
        if (y == 1).any() and (y == 0).any():
            roc = roc_sic(s_data, (y == 1).astype(np.int8))
        else:
            notes.append(
                f"label '{label}' has only class {int(y[0])} in the signal region: no ROC/SIC"
            )

    result = WindowResult(
        window=window,
        n_signal_region=n_sr,
        n_sideband=(n_left, n_right),
        n_background_fit=float(n_hat),
        n_background_fit_error=float(n_hat_err),
        selections=selections,
        ranking_efficiency=float(settings.ranking_efficiency),
        estimate=settings.background_estimate,
        roc=roc,
        sideband_fit=full_fit.to_dict(),
        training=training,
        seconds=time.perf_counter() - t0,
        notes=notes,
    )
    result.arrays = {
        "m_sr": data[settings.resonance_name].astype(np.float64),
        "score_sr": s_data,
        "m_sideband": m_sb,
        "score_sideband": s_side,
        "score_template": s_tmpl,
    }
    if label is not None and label in columns:
        result.arrays["label_sr"] = np.asarray(columns[label])[in_sr]
    return result


def _best_val_loss(model: DensityModel) -> float | None:
    losses = [h.get("val_loss") for h in model.training_.history if h.get("val_loss") is not None]
    return float(min(losses)) if losses else None


def _selection(
    eff: float,
    s_data: np.ndarray,
    s_tmpl: np.ndarray,
    s_side: np.ndarray,
    s_closure: np.ndarray,
    s_side_tmpl: np.ndarray,
    m_sb: np.ndarray,
    window: Window,
    n_hat: float,
    n_hat_err: float,
    settings: ScanSettings,
    notes: list[str],
) -> dict[str, Any]:
    """Threshold at background efficiency ``eff`` on the template, counts and both estimates."""
    t = threshold_at_efficiency(s_tmpl, eff)
    eff_t = float(np.mean(s_tmpl > t))
    n_t = s_tmpl.size
    n_obs = int(np.sum(s_data > t))
    # template estimate: fitted SR background x template pass fraction
    n_exp_t = n_hat * eff_t
    err_t = float(np.hypot(eff_t * n_hat_err, n_hat * np.sqrt(eff_t * (1 - eff_t) / n_t)))
    # calibrated estimate: the template estimate x the data/template pass-fraction ratio in
    # the sidebands (the flow's closure where it was trained), binomial errors on both
    k_d, k_t = int(np.sum(s_closure > t)), int(np.sum(s_side_tmpl > t))
    p_d, p_t = (k_d + 0.5) / (s_closure.size + 1.0), (k_t + 0.5) / (s_side_tmpl.size + 1.0)
    closure = p_d / p_t
    closure_err = closure * float(
        np.sqrt(
            (1 - p_d) / (p_d * (s_closure.size + 1.0))
            + (1 - p_t) / (p_t * (s_side_tmpl.size + 1.0))
        )
    )
    n_exp_c = n_exp_t * closure
    err_c = float(np.hypot(err_t * closure, n_exp_t * closure_err))
    # fit estimate: dijet function through the selected sideband spectrum
    n_exp_f = err_f = None
    passed = m_sb[s_side > t]
    try:
        fit = fit_sidebands(
            passed,
            window.lo,
            window.hi,
            (window.sb_lo, window.sb_hi),
            bins=max(8, settings.fit_bins // 2),
            n_parameters=3,
        )
        n_exp_f = float(fit.integral(window.lo, window.hi))
        err_f = float(fit.integral_error(window.lo, window.hi))
    except InputError as err:
        notes.append(f"efficiency {eff:g}: no sideband fit after the selection ({err})")
    if settings.background_estimate == "calibrated":
        n_exp, err, used = n_exp_c, err_c, "calibrated"
    elif settings.background_estimate == "template" or n_exp_f is None:
        n_exp, err, used = n_exp_t, err_t, "template"
    else:
        n_exp, err, used = n_exp_f, err_f, "fit"
    z = significance(n_obs, n_exp, err) if n_exp > 0 else None
    return {
        "efficiency": float(eff),
        "threshold": float(t),
        "template_efficiency": eff_t,
        "n_observed": n_obs,
        "n_expected": float(n_exp),
        "n_expected_error": float(err),
        "estimate": used,
        "significance": None if z is None else float(z),
        "n_expected_template": float(n_exp_t),
        "n_expected_template_error": err_t,
        "significance_template": float(significance(n_obs, n_exp_t, err_t)),
        "sideband_closure": closure,
        "sideband_closure_error": closure_err,
        "n_expected_calibrated": float(n_exp_c),
        "n_expected_calibrated_error": err_c,
        "significance_calibrated": float(significance(n_obs, n_exp_c, err_c)),
        "n_expected_fit": n_exp_f,
        "n_expected_fit_error": err_f,
        "significance_fit": (
            None
            if n_exp_f is None or n_exp_f <= 0
            else float(significance(n_obs, n_exp_f, err_f or 0.0))
        ),
        "n_sideband_selected": int(passed.size),
    }


# --------------------------------------------------------------------------------------------
# the scan
# --------------------------------------------------------------------------------------------


def run_scan(
    columns: Mapping[str, np.ndarray],
    settings: ScanSettings,
    *,
    quiet: bool = False,
    windows: Sequence[Window] | None = None,
    work_dir: str | os.PathLike | None = None,
    resume: bool = False,
) -> ScanResult:
    """Run :func:`scan_window` over every window of ``settings``.

    Parameters
    ----------
    columns : mapping of str to array of shape (n,)
        One row per event: the resonance variable, the features, optionally the label.
    settings : ScanSettings
    quiet : bool
        No progress output.
    windows : sequence of Window or None
        Override the windows of ``settings`` (e.g. one window).
    work_dir : path or None
        Working folder (:mod:`hepgen.anomaly.scan_cache`): each finished window's result and
        the running window's flow checkpoints; None: nothing kept.
    resume : bool
        Continue an interrupted scan from ``work_dir``: finished windows are loaded, not
        recomputed, and an interrupted flow continues from its checkpoint.  The result equals
        that of an uninterrupted scan with the same seed.

    Returns
    -------
    ScanResult

    Raises
    ------
    InputError
        A missing column (named, with the available ones), non-finite values (counted), a
        window outside the data range, too few sideband events.
    """
    t0 = time.perf_counter()
    resolve_device(settings.device or "auto")  # an absent GPU is an error before any work
    if settings.score == "cathode":  # a bare install has no xgboost: say so before any work
        require("xgboost", "the CATHODE classifier (scan.score: cathode)")
    if resume and work_dir is None:
        raise InputError("run_scan: resume=True needs the work_dir to resume from")
    names = [settings.resonance_name, *settings.feature_names]
    missing = [n for n in names if n not in columns]
    if missing:
        raise InputError(f"scan: missing column(s) {missing}; available: {sorted(columns)}")
    bad = nonfinite_problems({n: np.asarray(columns[n], dtype=np.float64) for n in names}, "values")
    if bad:
        raise InputError("scan: " + "; ".join(bad))
    m = np.asarray(columns[settings.resonance_name], dtype=np.float64)
    notes: list[str] = []
    has_labels = settings.label is not None and settings.label in columns
    if settings.label is None:
        notes.append("no label branch configured: ROC and SIC curves are omitted")
    elif not has_labels:
        notes.append(
            f"label branch '{settings.label}' is not in the input: ROC and SIC curves are omitted"
        )
    if windows is None:
        windows = settings.windows((float(m.min()), float(m.max())))
    seeds = np.random.SeedSequence(settings.seed).spawn(len(windows))
    cache = None
    if work_dir is not None:
        from hepgen.anomaly.scan_cache import ScanWork

        cache = ScanWork(Path(work_dir), columns, settings, windows, resume)
    results = []
    with progress(
        total=len(windows), desc="scan", unit="window", quiet=quiet, mininterval=0.0
    ) as bar:
        for i, (w, ss) in enumerate(zip(windows, seeds, strict=True)):
            r = None if cache is None or not resume else cache.load(i, w)
            if r is None:
                r = scan_window(
                    columns,
                    w,
                    settings,
                    seed=int(ss.generate_state(1)[0]),
                    quiet=True,
                    work=None if cache is None else cache.window_dir(i),
                    resume=resume,
                )
                if cache is not None:
                    cache.save(i, r)
            else:
                log.info("scan: window %d [%g, %g) finished earlier, loaded", i, w.lo, w.hi)
            results.append(r)
            bar.set_postfix_str(f"[{w.lo:.3g},{w.hi:.3g}) Z={r.significance:+.2f}")
            bar.update(1)
    return ScanResult(
        settings=settings,
        windows=results,
        n_events=int(m.size),
        has_labels=has_labels,
        notes=notes,
        seconds=time.perf_counter() - t0,
    )
