"""Anomaly detection with flow likelihoods: per-event scores, likelihood-ratio (ANODE) and
classifier-based (CATHODE) scores, and sliding-window resonance scans.

* :mod:`~hepgen.anomaly.density`: :class:`DensityModel`, a conditional flow p(x | m) on flat
  per-event columns (the background and data models);
* :mod:`~hepgen.anomaly.score`: ``hepgen score``, per-event or per-object -log p branches;
* :mod:`~hepgen.anomaly.stats`: sideband fits of the dijet function, local significance,
  thresholds at fixed background efficiency, ROC and SIC (one module per idea);
* :mod:`~hepgen.anomaly.scan`: the sliding-window scan (:func:`run_scan`): windows,
  settings, background templates, scores, estimates and results, one module each;
* :mod:`~hepgen.anomaly.scan_cache`: a scan's working folder (finished windows kept,
  interrupted flows resumable);
* :mod:`~hepgen.anomaly.config`: scan config files and ``hepgen scan``;
* :mod:`~hepgen.anomaly.report`: ``scan.json`` and ``report.html``.
"""

from typing import Any

# The names below are imported on first use (PEP 562), so that reading a scan config
# (hepgen.anomaly.config) does not import torch through the density model.
_LAZY = {
    "ScanConfig": "hepgen.anomaly.config",
    "load_scan_config": "hepgen.anomaly.config",
    "scan_from_config": "hepgen.anomaly.config",
    "DensityModel": "hepgen.anomaly.density",
    "ScanResult": "hepgen.anomaly.scan",
    "ScanSettings": "hepgen.anomaly.scan",
    "Window": "hepgen.anomaly.scan",
    "make_windows": "hepgen.anomaly.scan",
    "run_scan": "hepgen.anomaly.scan",
    "score_file": "hepgen.anomaly.score",
    "fit_sidebands": "hepgen.anomaly.stats",
    "roc_sic": "hepgen.anomaly.stats",
    "significance": "hepgen.anomaly.stats",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hepgen.anomaly' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "DensityModel",
    "ScanConfig",
    "ScanResult",
    "ScanSettings",
    "Window",
    "fit_sidebands",
    "load_scan_config",
    "make_windows",
    "roc_sic",
    "run_scan",
    "scan_from_config",
    "score_file",
    "significance",
]
