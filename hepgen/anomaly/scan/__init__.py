r"""Sliding-window resonance scans with learned background templates (ANODE and CATHODE).

A scan looks for a localized excess in a resonance variable ``m`` (the dijet mass) without a
signal model.  The signal region (SR) ``[lo, hi)`` slides over ``m`` in steps; the sidebands
(SB) ``[lo - s, lo)`` and ``[hi, hi + s)`` beside it hold the background
(:func:`~hepgen.settings.scan.make_windows`).  Per window (:func:`scan_window`):

1. **Background model** (:mod:`~hepgen.anomaly.scan.background`): a density model
   :math:`p_{bg}(x | m)` trained on the sideband events and interpolated into the SR (by
   default a linear trend in ``m`` and an unconditional flow of the residuals).
2. **Background template**: ``m`` from a kernel density estimate of the SR data's ``m``,
   ``x`` from :math:`p_{bg}(x | m)`: what the SR would hold without a signal.
3. **Score** (:mod:`~hepgen.anomaly.scan.scores`), out of fold: ``cathode``, the log-odds of
   a classifier of SR data against the template; ``anode``, the likelihood ratio
   :math:`\log p_{data}(x | m) - \log p_{bg}(x | m)`.
4. **Selection** (:mod:`~hepgen.anomaly.scan.estimates`): for each background efficiency
   :math:`\epsilon` (10 %, 1 %, 0.1 %) the threshold is the score the template exceeds with
   probability :math:`\epsilon`.
5. **Background after the selection**: ``template`` (the sideband fit's SR background times
   the template's pass fraction), ``calibrated`` (the default: the template estimate
   corrected by the sideband closure) or ``fit`` (a diagnostic: the dijet function fitted to
   the selected sidebands).
6. **Significance**: the local significance of the observed count against the expected one,
   with the background uncertainty profiled (:func:`~hepgen.anomaly.stats.significance`).
   Windows are ranked by the significance at ``ranking_efficiency``.  A global significance
   would need the look-elsewhere effect (overlapping windows are correlated); it is not
   computed.

When a truth label branch exists, each window also reports the ROC curve and the
significance improvement characteristic SIC = TPR / sqrt(FPR) of its score on the SR events.
:func:`run_scan` runs every window (:mod:`~hepgen.anomaly.scan.run`); the results are
:class:`WindowResult` and :class:`ScanResult` (:mod:`~hepgen.anomaly.scan.results`).

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
