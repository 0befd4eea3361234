"""Weighted one-dimensional two-sample statistics: KS, chi2, Wasserstein-1, separation power.

Every function compares one feature of a ``reference`` sample (e.g. the full simulation) with a
``candidate`` sample (e.g. the fast simulation), both 1-D arrays of shape ``(n,)`` in the
feature's units, each with optional per-event weights of shape ``(n,)``; weights may be
negative (sWeights) but must sum to a positive number.  The modules hold one idea each:
:mod:`.ks` (the KS test with its tie handling and resampling), :mod:`.binning` (the binning
shared by the tests and the plots), :mod:`.chi2` (chi2 test and separation power),
:mod:`.wasserstein` (Wasserstein-1 and weighted quantiles) and :mod:`.ecdf` (the checked pair
and its weighted ECDFs).  The estimators, their calibration and references are in
docs/validation.md ("univariate").

References
----------
* N. Smirnov, "Table for estimating the goodness of fit of empirical distributions",
  Ann. Math. Statist. 19 (1948) 279.
* L. Kish, "Survey Sampling", Wiley (1965): effective sample size ``(sum w)^2 / sum w^2``.
* N. D. Gagunashvili, "Chi-square tests for comparing weighted histograms",
  Nucl. Instrum. Meth. A 614 (2010) 287, arXiv:0905.4221.
* A. W. van der Vaart and J. A. Wellner, "Weak Convergence and Empirical Processes",
  Springer (1996), ch. 2.9 (multiplier bootstrap of empirical processes).
* C. Krause et al., "CaloChallenge 2022: A Community Challenge for Fast Calorimeter
  Simulation", arXiv:2410.21611 (separation power).

Examples
--------
>>> import numpy as np
>>> from hepgen.validation.univariate import ks_test, wasserstein1
>>> rng = np.random.default_rng(0)
>>> ref, cand = rng.normal(size=2000), rng.normal(0.2, 1.0, size=2000)
>>> ks_test(ref, cand).pvalue < 1e-3, round(wasserstein1(ref, cand), 1)
(True, 0.2)
"""

from hepgen.stats import weighted_quantile
from hepgen.validation.univariate.binning import histogram_edges
from hepgen.validation.univariate.chi2 import Chi2Result, chi2_test, separation_power
from hepgen.validation.univariate.ks import KSResult, ks_test
from hepgen.validation.univariate.wasserstein import wasserstein1

__all__ = [
    "Chi2Result",
    "KSResult",
    "chi2_test",
    "histogram_edges",
    "ks_test",
    "separation_power",
    "wasserstein1",
    "weighted_quantile",
]
