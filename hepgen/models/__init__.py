"""Conditional generative models and the reconstruction-efficiency classifier.

* :mod:`~hepgen.models.base`: the protocol every generator answers (fit, sample, log_prob,
  save, load);
* :mod:`~hepgen.models.efficiency`: P(reconstructed | gen features), an xgboost classifier;
* :mod:`~hepgen.models.flow`: conditional rational-quadratic spline flows on nflows (the
  torch module, its settings and its safetensors files);
* :mod:`~hepgen.models.flow_model`: :class:`FlowModel`, the model protocol around it
  (training with :mod:`hepgen.training`, checkpoint chosen by a KS metric, seeded sampling);
* :mod:`~hepgen.models.gan`: conditional WGAN-GP and Cramer GANs (:class:`ConditionalGAN`),
  their training step for the shared loop, and :class:`GANModel`, the same protocol without
  a likelihood.

Everything here works on model-space float32 matrices; ROOT files, configs and physical units
live in the layers above.
"""

from hepgen.models.base import GenerativeModel, NoLikelihoodError
from hepgen.models.efficiency import EfficiencyModel
from hepgen.models.flow import ConditionalFlow, FlowSettings, load_flow, save_flow
from hepgen.models.flow_model import FlowModel
from hepgen.models.gan import ConditionalGAN, GANModel, GANSettings, load_gan, save_gan

__all__ = [
    "ConditionalFlow",
    "ConditionalGAN",
    "EfficiencyModel",
    "FlowModel",
    "FlowSettings",
    "GANModel",
    "GANSettings",
    "GenerativeModel",
    "NoLikelihoodError",
    "load_flow",
    "load_gan",
    "save_flow",
    "save_gan",
]
