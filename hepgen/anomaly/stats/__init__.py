"""Statistics of a sliding-window bump hunt in a resonance variable ``m`` (dijet mass, TeV).

A weakly supervised resonance search (ANODE, CATHODE) selects the most anomalous events in a
signal region (SR) ``[lo, hi)`` of ``m`` and compares the number selected with the number a
smooth background would give.  This package holds the statistics of that last step, one
idea per module:

* :mod:`~hepgen.anomaly.stats.dijet`: the dijet function ``f(m)`` of the LHC searches;
* :mod:`~hepgen.anomaly.stats.likelihood`: its binned, extended Poisson likelihood and the
  minimiser;
* :mod:`~hepgen.anomaly.stats.sideband_fit`: :func:`fit_sidebands`, the background fit with
  the SR blinded, and its result :class:`SidebandFit`;
* :mod:`~hepgen.anomaly.stats.counting`: the local significance of the count in the SR and
  the Poisson p-value;
* :mod:`~hepgen.anomaly.stats.selection`: thresholds at fixed background efficiency, ROC,
  AUC and SIC.

References
----------
G. Cowan, K. Cranmer, E. Gross, O. Vitells, Eur. Phys. J. C 71 (2011) 1554, arXiv:1007.1727
(significance).  CMS Collaboration, JHEP 05 (2020) 033, arXiv:1911.03947, and ATLAS
Collaboration, JHEP 03 (2020) 145, arXiv:1910.08447 (dijet function).  B. Nachman, D. Shih,
Phys. Rev. D 101 (2020) 075042, arXiv:2001.04990 (ANODE, SIC), and A. Hallin et al.,
Phys. Rev. D 106 (2022) 055006, arXiv:2109.00546 (CATHODE).
"""

from hepgen.anomaly.stats.counting import poisson_pvalue, significance, significances
from hepgen.anomaly.stats.dijet import dijet_function
from hepgen.anomaly.stats.selection import (
    MIN_SIC_BACKGROUND,
    MIN_SIC_FPR,
    ROC,
    roc_sic,
    threshold_at_efficiency,
)
from hepgen.anomaly.stats.sideband_fit import MIN_SIDEBAND_EVENTS, SidebandFit, fit_sidebands

__all__ = [
    "MIN_SIC_BACKGROUND",
    "MIN_SIC_FPR",
    "MIN_SIDEBAND_EVENTS",
    "ROC",
    "SidebandFit",
    "dijet_function",
    "fit_sidebands",
    "poisson_pvalue",
    "roc_sic",
    "significance",
    "significances",
    "threshold_at_efficiency",
]
