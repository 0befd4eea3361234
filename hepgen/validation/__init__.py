"""Validation: is a generated (candidate) sample compatible with a reference sample?

Layers, each usable on its own with plain numpy arrays and optional per-event weights:

* :mod:`~hepgen.validation.univariate`: per-feature KS (weighted), two-sample chi2 of weighted
  histograms (Gagunashvili), Wasserstein-1, separation power;
* :mod:`~hepgen.validation.c2st`: the boosted-tree classifier two-sample test (held-out ROC
  AUC; xgboost, or scikit-learn where xgboost is not installed);
* :mod:`~hepgen.validation.mmd`: maximum mean discrepancy with permutation or block p-values;
* :mod:`~hepgen.validation.distances`: FPD and KPD (JetNet definitions);
* :mod:`~hepgen.validation.fidelity`: precision, recall, density and coverage (PRDC);
* :mod:`~hepgen.validation.tradeoff`: PRDC of a fast simulation's samples against the
  reference for each sampling temperature or truncation threshold (the fidelity/diversity
  trade-off, the report's "Sampling trade-off" section);
* :mod:`~hepgen.validation.compare`: all of them at once, with a reference-vs-reference
  baseline and conditional bins (:func:`compare`), into a
  :class:`~hepgen.validation.result.ValidationResult`;
* :mod:`~hepgen.validation.verdict`: non-finite counts, settings checks and the headline
  verdict (PASS / DIFFERENT / INCONCLUSIVE against the baseline);
* :mod:`~hepgen.validation.report`: ``report.html`` + ``metrics.json`` + plots, written as a
  whole folder atomically;
* :mod:`~hepgen.validation.files`: the same from two ROOT files (``hepgen validate``), with
  bookkeeping branches (run, event, indices, weights) left out;
* :mod:`~hepgen.validation.partitioned`: the same from many files, partition by partition
  (in-process or on Dask), from per-feature sums merged across partitions and a seeded
  subsample for the multivariate tests.

Example
-------
>>> import numpy as np
>>> from hepgen.validation import compare
>>> rng = np.random.default_rng(0)
>>> res = compare(rng.normal(size=(1000, 2)), rng.normal(0.3, 1, size=(1000, 2)),
...               metrics=["ks"], baseline=False)
>>> res.features["x0"]["ks"].pvalue < 1e-3
True
"""

from hepgen.validation.c2st import C2STResult, classifier_test, delong_auc
from hepgen.validation.compare import ValidationResult, compare, parse_condition_bins
from hepgen.validation.distances import (
    DistanceResult,
    frechet_distance,
    frechet_physics_distance,
    kernel_physics_distance,
)
from hepgen.validation.fidelity import PRDCResult, prdc
from hepgen.validation.files import validate_files
from hepgen.validation.mmd import MMDResult, mmd2_unbiased, mmd_test
from hepgen.validation.partitioned import validate_partitioned
from hepgen.validation.report import write_report
from hepgen.validation.samples import Table, as_table
from hepgen.validation.tradeoff import SamplingTradeoff, sampling_tradeoff
from hepgen.validation.univariate import (
    Chi2Result,
    KSResult,
    chi2_test,
    histogram_edges,
    ks_test,
    separation_power,
    wasserstein1,
    weighted_quantile,
)
from hepgen.validation.verdict import decide_verdict

__all__ = [
    "C2STResult",
    "Chi2Result",
    "DistanceResult",
    "KSResult",
    "MMDResult",
    "PRDCResult",
    "SamplingTradeoff",
    "Table",
    "ValidationResult",
    "as_table",
    "chi2_test",
    "classifier_test",
    "compare",
    "decide_verdict",
    "delong_auc",
    "frechet_distance",
    "frechet_physics_distance",
    "histogram_edges",
    "kernel_physics_distance",
    "ks_test",
    "mmd2_unbiased",
    "mmd_test",
    "parse_condition_bins",
    "prdc",
    "sampling_tradeoff",
    "separation_power",
    "validate_files",
    "validate_partitioned",
    "wasserstein1",
    "weighted_quantile",
    "write_report",
]
