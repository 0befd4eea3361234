"""Conditional generative models and the reconstruction-efficiency classifier.

* :mod:`~hepgen.models.base`: the protocol every generator answers (fit, sample, log_prob,
  save, load);
* :mod:`~hepgen.models.efficiency`: P(reconstructed | gen features), an xgboost classifier;
* :mod:`~hepgen.models.flow`: conditional rational-quadratic spline flows on nflows (the
  torch module, its settings and its safetensors files);
* :mod:`~hepgen.models.flow_model`: :class:`FlowModel`, the model protocol around it
  (training with :mod:`hepgen.training`, checkpoint chosen by a KS metric, seeded sampling).

Everything here works on model-space float32 matrices; ROOT files, configs and physical units
live in the layers above.
"""

from hepgen.models.base import GenerativeModel, NoLikelihoodError
from hepgen.models.efficiency import EfficiencyModel
from hepgen.models.flow import ConditionalFlow, FlowSettings, load_flow, save_flow
from hepgen.models.flow_model import FlowModel

__all__ = [
    "ConditionalFlow",
    "EfficiencyModel",
    "FlowModel",
    "FlowSettings",
    "GenerativeModel",
    "NoLikelihoodError",
    "load_flow",
    "save_flow",
]
