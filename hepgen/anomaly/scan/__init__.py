r"""Sliding-window resonance scans with learned background templates (ANODE and CATHODE).

A scan looks for a localized excess in a resonance variable ``m`` (the dijet mass) without a
signal model.  A signal region slides over ``m`` (:func:`~hepgen.settings.scan.make_windows`);
in each window (:func:`scan_window`) a density model trained in the sidebands gives a
background template, events are scored against it (``cathode`` or ``anode``), and the observed
count after a cut on the score is compared with the expected background.  :func:`run_scan`
runs every window; the results are :class:`WindowResult` and :class:`ScanResult`.  The six
steps of a window are in ``docs/anomaly.md``, section "Sliding-window resonance scans".

References
----------
B. Nachman, D. Shih, "Anomaly Detection with Density Estimation" (ANODE), Phys. Rev. D 101,
075042 (2020), arXiv:2001.04990.
A. Hallin et al., "Classifying Anomalies THrough Outer Density Estimation" (CATHODE),
Phys. Rev. D 106, 055006 (2022), arXiv:2109.00546.
G. Kasieczka et al., "The LHC Olympics 2020", Rep. Prog. Phys. 84, 124201 (2021),
arXiv:2101.08320.
"""

from hepgen.anomaly.scan.events import MIN_SIDEBAND_EVENTS
from hepgen.anomaly.scan.results import ScanResult, WindowResult
from hepgen.anomaly.scan.run import run_scan
from hepgen.anomaly.scan.window import scan_window
from hepgen.settings.scan import (
    CLASSIFIER_DEFAULTS,
    ESTIMATES,
    SCORES,
    ScanSettings,
    Window,
    make_windows,
)

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
