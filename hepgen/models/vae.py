"""The torch network of a conditional variational autoencoder, and its files.

:class:`ConditionalVAE` holds an encoder q(z | x, c), a decoder p(x | z, c) and a prior
p(z | c) (learned, or the standard normal), all diagonal Gaussians computed by residual MLPs
(x the targets, c the conditions, z the latent vector, model-space float32);
:func:`save_vae` / :func:`load_vae` store it as safetensors + JSON (no pickle).  The training
objective (the ELBO with a beta weight, KL warm-up and free bits) is
:mod:`hepgen.models.vae_objective`, the model protocol :mod:`hepgen.models.vae_model`.

References
----------
D. P. Kingma, M. Welling, "Auto-encoding variational Bayes", ICLR 2014, arXiv:1312.6114.
K. Sohn, H. Lee, X. Yan, "Learning structured output representation using deep conditional
generative models", NeurIPS 2015 (the conditional VAE).
Y. Burda, R. Grosse, R. Salakhutdinov, "Importance weighted autoencoders", ICLR 2016,
arXiv:1509.00519 (the IWAE bound, active latent dimensions).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from hepgen.models.files import load_module, save_module
from hepgen.models.latent import DEFAULT_LATENT, LatentOptions, draw_latent
from hepgen.models.modules import check_module_args, module_device
from hepgen.settings.vae import VAESettings

__all__ = [
    "ACTIVITY_THRESHOLD",
    "VAE_FORMAT",
    "VAE_FORMAT_VERSION",
    "ConditionalVAE",
    "VAESettings",
    "gaussian_kl",
    "gaussian_log_prob",
    "load_vae",
    "save_vae",
]

VAE_FORMAT = "hepgen-vae"
VAE_FORMAT_VERSION = 1
#: A latent dimension is active when the variance over the data of its posterior mean (less
#: the prior mean) exceeds this (Burda et al. 2016, section 5.2).
ACTIVITY_THRESHOLD = 0.01
#: Soft bound of every log-scale: ``S tanh(s / S)`` keeps exp(s) in [e^-6, e^6].
_MAX_LOG_SCALE = 6.0
_LEAKY_SLOPE = 0.2
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def gaussian_log_prob(x: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    """Element-wise log N(x; mean, exp(log_scale)^2) (nats), broadcast; sum the last axis for
    a diagonal Gaussian.

    Examples
    --------
    >>> import torch
    >>> round(float(gaussian_log_prob(torch.zeros(1), torch.zeros(1), torch.zeros(1))), 4)
    -0.9189
    """
    return -0.5 * ((x - mean) * torch.exp(-log_scale)) ** 2 - log_scale - _HALF_LOG_2PI


def gaussian_kl(mean_q: Tensor, log_scale_q: Tensor, mean_p: Tensor, log_scale_p: Tensor) -> Tensor:
    """Element-wise KL(N(mean_q, s_q^2) || N(mean_p, s_p^2)) in nats (per latent dimension).

    Examples
    --------
    >>> import torch
    >>> z = torch.zeros(1)
    >>> float(gaussian_kl(z, z, z, z)), round(float(gaussian_kl(z + 1, z, z, z)), 3)
    (0.0, 0.5)
    """
    ratio = torch.exp(2.0 * (log_scale_q - log_scale_p))
    shift = ((mean_q - mean_p) * torch.exp(-log_scale_p)) ** 2
    return log_scale_p - log_scale_q + 0.5 * (ratio + shift - 1.0)


def _bounded(log_scale: Tensor) -> Tensor:
    return _MAX_LOG_SCALE * torch.tanh(log_scale / _MAX_LOG_SCALE)


class _Block(nn.Module):
    """Pre-activation residual block ``h + W2 act(W1 act(h))``."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.linear1 = nn.Linear(width, width)
        self.linear2 = nn.Linear(width, width)

    def forward(self, h: Tensor) -> Tensor:
        out = self.linear1(nn.functional.leaky_relu(h, _LEAKY_SLOPE))
        return h + self.linear2(nn.functional.leaky_relu(out, _LEAKY_SLOPE))


class _GaussianNet(nn.Module):
    """A residual MLP from its inputs to the mean and the (softly bounded) log-scale of a
    diagonal Gaussian of ``n_out`` numbers; ``zero_init``: the output layer starts at 0 (the
    standard normal)."""

    def __init__(self, n_in: int, n_out: int, width: int, n_blocks: int, zero_init: bool) -> None:
        super().__init__()
        self.inp = nn.Linear(n_in, width)
        self.blocks = nn.ModuleList(_Block(width) for _ in range(n_blocks))
        self.out = nn.Linear(width, 2 * n_out)
        if zero_init:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, inputs: Tensor) -> tuple[Tensor, Tensor]:
        h = self.inp(inputs)
        for block in self.blocks:
            h = block(h)
        mean, log_scale = self.out(nn.functional.leaky_relu(h, _LEAKY_SLOPE)).chunk(2, dim=1)
        return mean, _bounded(log_scale)


class ConditionalVAE(nn.Module):
    """Encoder q(z | x, c), decoder p(x | z, c) and prior p(z | c) of a conditional VAE.

    Parameters
    ----------
    n_features : int
        D, the number of target columns (>= 1).
    n_conditions : int
        C, the number of condition columns (>= 1).
    settings : VAESettings or None
        Architecture and objective (None: the defaults).
    seed : int
        Seeds the initialisation: the same seed builds identical parameters; the caller's
        global torch RNG is left untouched.

    Attributes
    ----------
    encoder : nn.Module
        ``[x, c] (D + C) -> (mean, log-scale)`` of q(z | x, c), each (latent_dim,).
    decoder : nn.Module
        ``[z, c] (latent_dim + C) -> (mean, log-scale)`` of p(x | z, c), each (D,).
    prior : nn.Module or None
        ``c (C) -> (mean, log-scale)`` of p(z | c) (``settings.conditional_prior``; ``None``:
        the standard normal).

    Notes
    -----
    * **Likelihood.**  hepgen's preprocessing makes every target continuous and unbounded in
      model space (a logit for bounded targets, dequantisation for integers, optionally a
      quantile map to a normal), so the decoder is a heteroscedastic diagonal Gaussian: a mean
      and a log-scale per target, both functions of (z, c).  The log-scales (of the encoder
      and the prior too) are softly bounded, ``6 tanh(s / 6)``, so that no scale can reach 0
      or infinity whatever the optimiser does.  The correlations between targets and any
      non-Gaussian shape of p(x | c) come from the latent z.
    * **Prior.**  With ``conditional_prior`` (Sohn et al. 2015) the prior is a diagonal
      Gaussian of c, whose output layer starts at zero (the standard normal); otherwise
      N(0, 1).
    * **Sampling** (:meth:`sample`): z from the prior, then x from the decoder's Gaussian.
      Both draws are "the base distribution" of the model: the temperature and truncation of
      ``latent`` (:class:`~hepgen.models.latent.LatentOptions`) apply to the standard-normal
      noise of each (``z = m_p + s_p e_z``, ``x = m_x + s_x e_x``).
    * **Activity** (:meth:`latent_diagnostics`): Burda et al.'s statistic of a latent dimension
      ``Var_x(E_q[z])``, here of ``E_q[z | x, c] - E_p[z | c]`` (what the posterior knows
      beyond the conditions; the same for the standard-normal prior), and the mean KL of each
      dimension, stored in buffers so that files carry them.

    References
    ----------
    D. P. Kingma, M. Welling, arXiv:1312.6114; K. Sohn, H. Lee, X. Yan, NeurIPS 2015;
    Y. Burda, R. Grosse, R. Salakhutdinov, arXiv:1509.00519.

    Examples
    --------
    >>> import torch
    >>> vae = ConditionalVAE(2, 3, VAESettings(latent_dim=4, hidden_features=16), seed=1)
    >>> c = torch.zeros(5, 3)
    >>> vae.sample(c, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([5, 2])
    >>> vae.encode(torch.zeros(5, 2), c)[0].shape
    torch.Size([5, 4])
    """

    def __init__(
        self,
        n_features: int,
        n_conditions: int,
        settings: VAESettings | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        settings = VAESettings() if settings is None else settings
        check_module_args(n_features, n_conditions, settings, VAESettings, seed)
        self.n_features = n_features
        self.n_conditions = n_conditions
        self.settings = settings
        self.seed = seed
        s = settings
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.encoder = _GaussianNet(
                n_features + n_conditions, s.latent_dim, s.hidden_features, s.n_blocks, False
            )
            self.decoder = _GaussianNet(
                s.latent_dim + n_conditions, n_features, s.hidden_features, s.n_blocks, False
            )
            self.prior: nn.Module | None = None
            if s.conditional_prior:
                self.prior = _GaussianNet(
                    n_conditions, s.latent_dim, s.hidden_features, max(1, s.n_blocks // 2), True
                )
        # -1: not yet computed (set by :meth:`latent_diagnostics` after training)
        self.register_buffer("latent_activity", torch.full((s.latent_dim,), -1.0))
        self.register_buffer("latent_kl", torch.full((s.latent_dim,), -1.0))
        self.float()

    @property
    def latent_dim(self) -> int:
        """Size of the latent space."""
        return self.settings.latent_dim

    # -- the three Gaussians --------------------------------------------------------------------

    def encode(self, x: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-scale of q(z | x, c), each (n, latent_dim)."""
        return self.encoder(torch.cat([x, c], dim=1))

    def decode(self, z: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-scale of p(x | z, c), each (n, D)."""
        return self.decoder(torch.cat([z, c], dim=1))

    def prior_params(self, c: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-scale of p(z | c), each (n, latent_dim) (zeros: standard normal)."""
        if self.prior is None:
            zeros = torch.zeros(c.shape[0], self.latent_dim, device=c.device, dtype=c.dtype)
            return zeros, zeros
        return self.prior(c)

    # -- the ELBO and the importance weights ------------------------------------------------------

    def elbo_terms(
        self, x: Tensor, c: Tensor, noise: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """One-sample reparameterised ELBO terms: the reconstruction NLL ``-log p(x | z, c)``
        (n,) at ``z = m_q + s_q e`` and the analytic KL(q(z | x, c) || p(z | c)) per latent
        dimension (n, latent_dim), both in nats; ``-ELBO = nll + kl.sum(1)``.

        ``noise``: the standard-normal ``e`` (n, latent_dim) (default: drawn from torch's
        global RNG).
        """
        mean_q, log_q = self.encode(x, c)
        mean_p, log_p = self.prior_params(c)
        e = torch.randn_like(mean_q) if noise is None else noise
        z = mean_q + torch.exp(log_q) * e
        mean_x, log_x = self.decode(z, c)
        nll = -gaussian_log_prob(x, mean_x, log_x).sum(dim=1)
        return nll, gaussian_kl(mean_q, log_q, mean_p, log_p)

    forward = elbo_terms

    def log_weights(self, x: Tensor, c: Tensor, k: int, generator: torch.Generator) -> Tensor:
        """Importance log-weights ``log p(x, z_k | c) - log q(z_k | x, c)`` of ``k`` posterior
        draws per row, shape (k, n), float64 (nats; the networks run in float32, the densities
        are evaluated in float64)."""
        n = x.shape[0]
        mean_q, log_q = (t.double() for t in self.encode(x, c))
        mean_p, log_p = (t.double() for t in self.prior_params(c))
        e = torch.randn(
            (k, n, self.latent_dim), generator=generator, device=generator.device,
            dtype=torch.float64,
        ).to(x.device)  # fmt: skip
        z = mean_q + torch.exp(log_q) * e  # (k, n, L)
        log_q_z = gaussian_log_prob(z, mean_q, log_q).sum(dim=2)
        log_p_z = gaussian_log_prob(z, mean_p, log_p).sum(dim=2)
        zc = z.reshape(k * n, -1).float()
        mean_x, log_x = (t.double() for t in self.decode(zc, c.repeat(k, 1)))
        xx = x.double().repeat(k, 1)
        log_p_x = gaussian_log_prob(xx, mean_x, log_x).sum(dim=1).reshape(k, n)
        return log_p_x + log_p_z - log_q_z

    # -- sampling -----------------------------------------------------------------------------

    def sample(
        self,
        c: Tensor,
        generator: torch.Generator | None = None,
        latent: LatentOptions = DEFAULT_LATENT,
    ) -> Tensor:
        """One draw per row of ``c`` (n, C): z ~ p(z | c), then x ~ p(x | z, c); float32 (n, D),
        no autograd graph.  One standard-normal block ``e`` (n, latent_dim + D) is drawn from
        ``generator`` with the temperature and truncation of ``latent``: its first
        ``latent_dim`` columns are the prior's noise, the last D the decoder's."""
        c = self._as_input(c, self.n_conditions, "c")
        device = module_device(self)
        n = c.shape[0]
        with torch.no_grad():
            e = draw_latent((n, self.latent_dim + self.n_features), generator, device, latent)
            e_z, e_x = e[:, : self.latent_dim], e[:, self.latent_dim :]
            mean_p, log_p = self.prior_params(c)
            mean_x, log_x = self.decode(mean_p + torch.exp(log_p) * e_z, c)
            return mean_x + torch.exp(log_x) * e_x

    # -- diagnostics --------------------------------------------------------------------------

    @torch.no_grad()
    def latent_diagnostics(self, x: Tensor, c: Tensor, batch_size: int = 8192) -> None:
        """Fill :attr:`latent_activity` (variance over the rows of each dimension of
        ``E_q[z | x, c] - E_p[z | c]``) and :attr:`latent_kl` (mean KL per dimension, nats)
        from the rows ``x`` (n, D), ``c`` (n, C), n >= 2."""
        shifts, kls = [], []
        for start in range(0, x.shape[0], batch_size):
            xb, cb = x[start : start + batch_size], c[start : start + batch_size]
            mean_q, log_q = self.encode(xb, cb)
            mean_p, log_p = self.prior_params(cb)
            shifts.append((mean_q - mean_p).double())
            kls.append(gaussian_kl(mean_q, log_q, mean_p, log_p).double())
        shift, kl = torch.cat(shifts), torch.cat(kls)
        self.latent_activity.copy_(shift.var(dim=0).float())
        self.latent_kl.copy_(kl.mean(dim=0).float())

    @property
    def active_dimensions(self) -> int | None:
        """Latent dimensions with activity > :data:`ACTIVITY_THRESHOLD` (``None``: not yet
        computed)."""
        if bool((self.latent_activity < 0).any()):
            return None
        return int((self.latent_activity > ACTIVITY_THRESHOLD).sum())

    def describe(self) -> dict[str, Any]:
        """Architecture summary: ``n_features``, ``n_conditions``, ``settings`` (a dict),
        ``n_parameters``, ``active_dimensions`` (int or None), ``latent_activity`` and
        ``kl_per_dimension`` (nats; lists, or None before the diagnostics)."""
        done = self.active_dimensions is not None
        return {
            "n_features": self.n_features,
            "n_conditions": self.n_conditions,
            "settings": self.settings.to_dict(),
            "n_parameters": int(sum(p.numel() for p in self.parameters())),
            "active_dimensions": self.active_dimensions,
            "latent_activity": (
                [round(float(v), 5) for v in self.latent_activity] if done else None
            ),
            "kl_per_dimension": [round(float(v), 5) for v in self.latent_kl] if done else None,
        }

    def _as_input(self, t: Any, width: int, name: str) -> Tensor:
        t = torch.as_tensor(t).to(device=module_device(self), dtype=torch.float32)
        if t.ndim != 2 or t.shape[1] != width:
            raise ValueError(
                f"{name} must have shape (n, {width}) for this VAE, got {tuple(t.shape)}"
            )
        return t

    def extra_repr(self) -> str:
        return (
            f"n_features={self.n_features}, n_conditions={self.n_conditions}, "
            f"latent_dim={self.latent_dim}, seed={self.seed}"
        )


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------


def save_vae(vae: ConditionalVAE, directory: str | Path, name: str = "vae") -> list[Path]:
    """Write ``NAME.safetensors`` (state dict) and ``NAME.json`` (metadata), atomically.

    Parameters
    ----------
    vae : ConditionalVAE
    directory : path
        Created when missing.
    name : str
        File stem (no path separators).

    Returns
    -------
    list of Path
        ``[weights, metadata]``; the JSON (written last) holds :meth:`ConditionalVAE.describe`,
        ``format`` ("hepgen-vae"), ``format_version`` (1), the seed, the SHA-256 of the
        weights and the torch version.
    """
    return save_module(
        vae,
        directory,
        name,
        fmt=VAE_FORMAT,
        version=VAE_FORMAT_VERSION,
        description=vae.describe(),
        seed=vae.seed,
        versions={"torch": torch.__version__},
    )


def load_vae(
    directory: str | Path, name: str = "vae", device: str | torch.device = "cpu"
) -> ConditionalVAE:
    """Rebuild a VAE written by :func:`save_vae` (JSON + safetensors; no code is executed).

    Returns
    -------
    ConditionalVAE
        In evaluation mode on ``device``.

    Raises
    ------
    InputError
        A missing file, invalid JSON, another format or version, invalid settings, a weights
        file that is corrupt or does not match its checksum, or a tensor missing, unexpected
        or of the wrong shape (the file or the tensor named).
    """
    return load_module(
        directory,
        name,
        fmt=VAE_FORMAT,
        version=VAE_FORMAT_VERSION,
        label="vae",
        settings_from_dict=VAESettings.from_dict,
        device=device,
        build=lambda d, c, settings, seed: ConditionalVAE(d, c, settings, seed=seed),
    )
