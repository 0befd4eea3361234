"""Settings of the conditional variational autoencoder (``model.kind: vae``, ``model.vae``).

One typed declaration, checked when a configuration is read (no torch needed); the argument of
:class:`hepgen.models.vae.ConditionalVAE`.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from hepgen.settings.base import Float, Settings

__all__ = ["VAESettings"]


class VAESettings(Settings):
    """Architecture and objective of a conditional VAE.

    Parameters
    ----------
    latent_dim : int
        Size of the latent space z.
    hidden_features : int
        Width of the encoder's, decoder's and prior's residual MLPs.
    n_blocks : int
        Residual blocks of the encoder and the decoder (>= 0; the prior network has
        ``max(1, n_blocks // 2)``).
    beta : float
        Weight of the KL term after the warm-up (>= 0; 1: the ELBO).
    kl_warmup_steps : int
        Optimizer steps over which the KL weight rises linearly from 0 to ``beta`` (0: none).
    free_bits : float
        Nats per latent dimension below which the KL of that dimension is not penalised
        (averaged over the batch; >= 0; 0: off).
    conditional_prior : bool
        Learn the prior p(z | c) as a diagonal Gaussian of the conditions (Sohn et al.),
        instead of the standard normal N(0, 1).
    iwae_samples : int
        Importance samples K of the IWAE bound when none is given.

    Raises
    ------
    ConfigError
        A value of the wrong type or out of range (the message names the setting).

    References
    ----------
    D. P. Kingma, M. Welling, "Auto-encoding variational Bayes", ICLR 2014, arXiv:1312.6114;
    K. Sohn, H. Lee, X. Yan, "Learning structured output representation using deep
    conditional generative models", NeurIPS 2015 (the conditional VAE);
    D. P. Kingma et al., "Improved variational inference with inverse autoregressive flow",
    NeurIPS 2016, arXiv:1606.04934 (free bits).

    Examples
    --------
    >>> s = VAESettings(latent_dim=4)
    >>> VAESettings.from_dict(s.to_dict()) == s
    True
    """

    family: ClassVar[str] = "vae"

    latent_dim: int = Field(8, ge=1)
    hidden_features: int = Field(128, ge=1)
    n_blocks: int = Field(2, ge=0)
    beta: Float = Field(1.0, ge=0, allow_inf_nan=False)
    kl_warmup_steps: int = Field(2000, ge=0)
    free_bits: Float = Field(0.05, ge=0, allow_inf_nan=False)
    conditional_prior: bool = True
    iwae_samples: int = Field(64, ge=1)
