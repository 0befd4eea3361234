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
  all re-exported by :mod:`~hepgen.models.gan` (the losses: :mod:`~hepgen.models.gan_losses`);
* :mod:`~hepgen.models.vae` (network, files), :mod:`~hepgen.models.vae_objective` and
  :mod:`~hepgen.models.vae_model` (:class:`VAEModel`): the conditional VAE;
* :mod:`~hepgen.models.latent`: how the generators draw their noise (temperature, truncation);
* :mod:`~hepgen.models.selection`: the physics metrics that choose the kept checkpoint;
* :mod:`~hepgen.models.efficiency`: P(reconstructed | gen features), an xgboost classifier.

Everything here works on model-space float32 matrices; ROOT files, configs and physical units
live in the layers above.  The training engine (:mod:`hepgen.training`) is the layer below.
:mod:`~hepgen.models.onnx_backend` runs exported generators in onnxruntime, without torch.

The names that need torch (the networks and the torch models) or xgboost are imported on
first use (PEP 562), so that ``import hepgen.models`` and the torch-free ONNX path
(:class:`~hepgen.models.onnx_backend.OnnxGenerator`) never load torch.
"""

from typing import Any

from hepgen.models.base import GenerativeModel, NoEncoderError, NoLikelihoodError, TorchModel
from hepgen.models.registry import KINDS, MODEL_CLASSES, model_class

__all__ = [
    "KINDS",
    "MODEL_CLASSES",
    "ConditionalFlow",
    "ConditionalGAN",
    "ConditionalVAE",
    "EfficiencyModel",
    "FlowModel",
    "FlowSettings",
    "GANModel",
    "GANSettings",
    "GenerativeModel",
    "NoEncoderError",
    "NoLikelihoodError",
    "TorchModel",
    "VAEModel",
    "VAESettings",
    "load_flow",
    "load_gan",
    "model_class",
    "save_flow",
    "save_gan",
]

#: Names imported on first use (they import torch or xgboost): name -> module.
_LAZY = {
    "ConditionalFlow": "hepgen.models.flow",
    "FlowSettings": "hepgen.models.flow",
    "load_flow": "hepgen.models.flow",
    "save_flow": "hepgen.models.flow",
    "FlowModel": "hepgen.models.flow_model",
    "ConditionalGAN": "hepgen.models.gan",
    "GANModel": "hepgen.models.gan",
    "GANSettings": "hepgen.models.gan",
    "load_gan": "hepgen.models.gan",
    "save_gan": "hepgen.models.gan",
    "ConditionalVAE": "hepgen.models.vae",
    "VAEModel": "hepgen.models.vae_model",
    "VAESettings": "hepgen.settings.vae",
    "EfficiencyModel": "hepgen.models.efficiency",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # the next access is a plain lookup
        return value
    raise AttributeError(f"module 'hepgen.models' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
