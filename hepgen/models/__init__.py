"""Conditional generative models and the reconstruction-efficiency classifier.

* :mod:`~hepgen.models.base`: the protocol every generator answers (fit, sample, log_prob,
  save, load);
* :mod:`~hepgen.models.efficiency`: P(reconstructed | gen features), an xgboost classifier;
* :mod:`~hepgen.models.flow`: conditional rational-quadratic spline flows on nflows.

Everything here works on model-space float32 matrices; ROOT files, configs and physical units
live in the layers above.
"""

from hepgen.models.base import GenerativeModel, NoLikelihoodError
from hepgen.models.efficiency import EfficiencyModel

__all__ = ["EfficiencyModel", "GenerativeModel", "NoLikelihoodError"]
