"""Conditional GANs for the detector response: WGAN-GP and the Cramer (energy-distance) GAN.

One name space for the GAN kind (``model.kind: gan``), re-exported from the modules that hold
each idea: the settings, networks and files (:mod:`hepgen.models.gan_nets`:
:class:`GANSettings`, :class:`ConditionalGAN`, :func:`save_gan`, :func:`load_gan`), the
adversarial objective (:mod:`hepgen.models.gan_objective`: :class:`GANObjective`,
:func:`gradient_penalty`, :func:`energy_score`, :func:`default_gan_training`) and the model
protocol (:mod:`hepgen.models.gan_model`: :class:`GANModel`); the recall and coverage recorded
each epoch are :func:`hepgen.models.selection.knn_recall_coverage`.

References
----------
I. Goodfellow et al., "Generative adversarial nets", NeurIPS 2014, arXiv:1406.2661.
I. Gulrajani et al., "Improved training of Wasserstein GANs", NeurIPS 2017, arXiv:1704.00028.
M. G. Bellemare et al., "The Cramer distance as a solution to biased Wasserstein gradients",
arXiv:1705.10743.
A. Maevskiy et al. (LHCb), "Fast data-driven simulation of Cherenkov detectors using
generative adversarial networks", arXiv:1905.11825.
"""

from __future__ import annotations

from hepgen.models.gan_model import DEFAULT_BATCH_SIZE, GANModel
from hepgen.models.gan_nets import (
    GAN_FORMAT,
    GAN_FORMAT_VERSION,
    ConditionalGAN,
    GANSettings,
    load_gan,
    save_gan,
)
from hepgen.models.gan_objective import (
    ENERGY_SCORE_DRAWS,
    GANObjective,
    default_gan_training,
    energy_score,
    gradient_penalty,
)
from hepgen.models.selection import knn_recall_coverage

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "ENERGY_SCORE_DRAWS",
    "GAN_FORMAT",
    "GAN_FORMAT_VERSION",
    "ConditionalGAN",
    "GANModel",
    "GANObjective",
    "GANSettings",
    "default_gan_training",
    "energy_score",
    "gradient_penalty",
    "knn_recall_coverage",
    "load_gan",
    "save_gan",
]
