"""Conditional generative models and the reconstruction-efficiency classifier.

* :mod:`~hepgen.models.base`: the protocol every generator answers (fit, sample, log_prob,
  save, load, describe) and :class:`~hepgen.models.base.TorchModel`, its implementation for
  one torch module;
* :mod:`~hepgen.models.registry`: the generator class of each ``model.kind``;
* :mod:`~hepgen.models.spline` (the RQ spline and its nflows layers),
  :mod:`~hepgen.models.flow` (network, files) and :mod:`~hepgen.models.flow_model`
  (:class:`FlowModel`): conditional rational-quadratic spline flows on nflows (settings:
  :class:`hepgen.settings.FlowSettings`);
* :mod:`~hepgen.models.gan_nets` (networks, files),
  :mod:`~hepgen.models.gan_objective` (the adversarial training step) and
  :mod:`~hepgen.models.gan_model` (:class:`GANModel`): conditional WGAN-GP and Cramer GANs,
  all re-exported by :mod:`~hepgen.models.gan`;
* :mod:`~hepgen.models.selection`: the physics metrics that choose the kept checkpoint;
* :mod:`~hepgen.models.efficiency`: P(reconstructed | gen features), an xgboost classifier.

Everything here works on model-space float32 matrices; ROOT files, configs and physical units
live in the layers above.  The training engine (:mod:`hepgen.training`) is the layer below.
"""

from hepgen.models.base import GenerativeModel, NoLikelihoodError, TorchModel
from hepgen.models.efficiency import EfficiencyModel
from hepgen.models.flow import ConditionalFlow, FlowSettings, load_flow, save_flow
from hepgen.models.flow_model import FlowModel
from hepgen.models.gan import ConditionalGAN, GANModel, GANSettings, load_gan, save_gan
from hepgen.models.registry import KINDS, MODEL_CLASSES, model_class

__all__ = [
    "KINDS",
    "MODEL_CLASSES",
    "ConditionalFlow",
    "ConditionalGAN",
    "EfficiencyModel",
    "FlowModel",
    "FlowSettings",
    "GANModel",
    "GANSettings",
    "GenerativeModel",
    "NoLikelihoodError",
    "TorchModel",
    "load_flow",
    "load_gan",
    "model_class",
    "save_flow",
    "save_gan",
]
