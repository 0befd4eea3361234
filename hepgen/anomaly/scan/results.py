"""What a scan found: :class:`WindowResult` per window and :class:`ScanResult` for the scan.

Their :meth:`~ScanResult.to_dict` is the content of ``scan.json``
(:mod:`hepgen.anomaly.report`); the per-event arrays kept for the plots are not written there
(:mod:`hepgen.anomaly.scan_cache` keeps them for a resumed scan).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hepgen.anomaly.stats import ROC
from hepgen.settings.scan import ScanSettings, Window

__all__ = ["ScanResult", "WindowResult"]


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
    # template fidelity: out-of-fold AUC of SR data vs template and, with labels, of the
    # template vs the SR's true background events (0.5: indistinguishable)
    fidelity: dict[str, Any] | None = None
    # the ensemble's members scored alone: their significances (and max SIC) and spread
    seed_spread: dict[str, Any] | None = None
    # mjj of the (background) events before and after the tightest selection, with a p-value
    sculpting: dict[str, Any] | None = None
    # histogram of the SR events' likelihood p-values under the background model
    pvalues: dict[str, Any] | None = None
    # per-event results kept for plots (not written to scan.json)
    arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    # the window's trained background flows (kept in memory only, not by a resumed scan)
    background_models: list[Any] = field(default_factory=list, repr=False)

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
            "fidelity": self.fidelity,
            "seed_spread": self.seed_spread,
            "sculpting": self.sculpting,
            "pvalues": self.pvalues,
            "seconds": self.seconds,
            "notes": self.notes,
        }
        if self.roc is not None:
            # the headline counts only cuts passed by >= 20 background events (ROC.min_fpr);
            # the uncapped maximum (down to one event) is what parts of the literature quote
            d["max_sic"] = self.roc.max_sic
            d["max_sic_uncapped"] = self.roc.max_sic_uncapped
            d["sic_min_fpr"] = self.roc.min_fpr
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
    # the most significant window's local and global significance (look-elsewhere effect
    # measured with background-only pseudo-scans; hepgen.anomaly.scan.lookelsewhere)
    global_significance: dict[str, Any] | None = None

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
                "global_significance": (self.global_significance or {}).get("global_significance"),
            },
            "global_significance": self.global_significance,
            "settings": self.settings.to_dict(),
            "seconds": self.seconds,
            "notes": self.notes,
        }
