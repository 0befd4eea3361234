"""Conditional GANs for the detector response: the Cramer (energy-distance) GAN, WGAN-GP,
WGAN with weight clipping, the original minimax GAN and its non-saturating variant, the hinge
loss, and spectral normalisation of the critic.

One name space for the GAN kind (``model.kind: gan``), re-exported from the modules that hold
each idea: the settings, networks and files (:mod:`hepgen.models.gan_nets`:
:class:`GANSettings`, :class:`ConditionalGAN`, :func:`save_gan`, :func:`load_gan`), the
adversarial objective (:mod:`hepgen.models.gan_objective`: :class:`GANObjective`,
:func:`gradient_penalty`, :func:`energy_score`, :func:`default_gan_training`), the per-event
losses (:mod:`hepgen.models.gan_losses`: :func:`critic_losses`, :func:`generator_losses`,
:func:`clip_parameters`) and the model
protocol (:mod:`hepgen.models.gan_model`: :class:`GANModel`); the recall and coverage recorded
each epoch are :func:`hepgen.models.selection.knn_recall_coverage`.  ``docs/gans.md`` says
which loss to pick, with the measurements.

References
----------
I. Goodfellow et al., "Generative adversarial nets", NeurIPS 2014, arXiv:1406.2661.
M. Arjovsky, S. Chintala, L. Bottou, "Wasserstein GAN", ICML 2017, arXiv:1701.07875.
I. Gulrajani et al., "Improved training of Wasserstein GANs", NeurIPS 2017, arXiv:1704.00028.
M. G. Bellemare et al., "The Cramer distance as a solution to biased Wasserstein gradients",
arXiv:1705.10743.
J. H. Lim, J. C. Ye, "Geometric GAN", arXiv:1705.02894.
T. Miyato et al., "Spectral normalization for generative adversarial networks", ICLR 2018,
arXiv:1802.05957.
A. Maevskiy et al. (LHCb), "Fast data-driven simulation of Cherenkov detectors using
generative adversarial networks", arXiv:1905.11825.
"""

from __future__ import annotations

from hepgen.models.gan_losses import clip_parameters, critic_losses, generator_losses
from hepgen.models.gan_model import DEFAULT_BATCH_SIZE, GANModel
from hepgen.models.gan_nets import (
    GAN_FORMAT,
    GAN_FORMAT_VERSION,
    LOSSES,
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
    "LOSSES",
    "ConditionalGAN",
    "GANModel",
    "GANObjective",
    "GANSettings",
    "clip_parameters",
    "critic_losses",
    "default_gan_training",
    "energy_score",
    "generator_losses",
    "gradient_penalty",
    "knn_recall_coverage",
    "load_gan",
    "save_gan",
]
