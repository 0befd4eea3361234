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

from hepgen.anomaly.config import ScanConfig, load_scan_config, scan_from_config
from hepgen.anomaly.density import DensityModel
from hepgen.anomaly.scan import ScanResult, ScanSettings, Window, make_windows, run_scan
from hepgen.anomaly.score import score_file
from hepgen.anomaly.stats import fit_sidebands, roc_sic, significance

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
