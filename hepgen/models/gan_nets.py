"""The torch networks of a conditional GAN: its settings, generator and critic, and their files.

:class:`ConditionalGAN` holds a generator ``G(z, c) -> x`` (z ~ N(0, 1) of ``latent_dim``
numbers, c the conditions, x the targets, all model-space float32) and a critic ``D(x, c)``,
both residual MLPs without batch normalisation (the critic optionally spectrally normalised),
configured by :class:`GANSettings`;
:func:`save_gan` / :func:`load_gan` store it as safetensors + JSON (no pickle).  The
adversarial objective is in :mod:`hepgen.models.gan_objective`, the model protocol in
:mod:`hepgen.models.gan_model`.

References
----------
M. Mirza, S. Osindero, "Conditional generative adversarial nets", arXiv:1411.1784.
I. Gulrajani et al., "Improved training of Wasserstein GANs", NeurIPS 2017, arXiv:1704.00028.
M. G. Bellemare et al., "The Cramer distance as a solution to biased Wasserstein gradients",
arXiv:1705.10743.
T. Miyato et al., "Spectral normalization for generative adversarial networks", ICLR 2018,
arXiv:1802.05957.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from hepgen.models.files import load_module, save_module
from hepgen.models.latent import DEFAULT_LATENT, LatentOptions, draw_latent
from hepgen.models.modules import check_module_args, module_device
from hepgen.settings.models import DEFAULT_N_CRITIC, GAN_LOSSES, GANSettings

__all__ = [
    "DEFAULT_N_CRITIC",
    "GAN_FORMAT",
    "GAN_FORMAT_VERSION",
    "LOSSES",
    "ConditionalGAN",
    "GANSettings",
    "load_gan",
    "save_gan",
]

GAN_FORMAT = "hepgen-gan"
GAN_FORMAT_VERSION = 1
#: The losses of ``GANSettings.loss`` (:mod:`hepgen.models.gan_losses`).
LOSSES = GAN_LOSSES
_LEAKY_SLOPE = 0.2
#: Soft bound of the generator's conditional log-scale (``conditional_scale``).
_MAX_LOG_SCALE = 5.0


# --------------------------------------------------------------------------------------------
# networks
# --------------------------------------------------------------------------------------------


class _Block(nn.Module):
    """Pre-activation residual block: ``h + W2 act(drop(W1 act(norm(h))))``."""

    def __init__(self, width: int, dropout: float, layer_norm: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width) if layer_norm else nn.Identity()
        self.linear1 = nn.Linear(width, width)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.linear2 = nn.Linear(width, width)

    def forward(self, h: Tensor) -> Tensor:
        out = self.linear1(nn.functional.leaky_relu(self.norm(h), _LEAKY_SLOPE))
        out = self.linear2(self.dropout(nn.functional.leaky_relu(out, _LEAKY_SLOPE)))
        return h + out


class _ResidualMLP(nn.Module):
    """``Linear -> blocks -> act -> Linear``: a residual MLP without batch normalisation."""

    def __init__(
        self,
        n_in: int,
        n_out: int,
        width: int,
        n_blocks: int,
        dropout: float = 0.0,
        layer_norm: bool = False,
    ) -> None:
        super().__init__()
        self.inp = nn.Linear(n_in, width)
        self.blocks = nn.ModuleList(_Block(width, dropout, layer_norm) for _ in range(n_blocks))
        self.out = nn.Linear(width, n_out)

    def forward(self, inputs: Tensor) -> Tensor:
        h = self.inp(inputs)
        for block in self.blocks:
            h = block(h)
        return self.out(nn.functional.leaky_relu(h, _LEAKY_SLOPE))


class _Generator(nn.Module):
    """``G(z, c)``: a residual MLP of ``[z, c]``, optionally in a conditional affine frame
    ``a(c) + exp(s(c)) * MLP(z, c)`` (:class:`GANSettings` ``conditional_scale``)."""

    def __init__(self, n_conditions: int, n_features: int, s: GANSettings) -> None:
        super().__init__()
        self.n_conditions = n_conditions
        self.mlp = _ResidualMLP(
            s.latent_dim + n_conditions, n_features, s.hidden_features, s.n_blocks
        )
        self.frame: nn.Module | None = None
        if s.conditional_scale:
            width = max(16, s.hidden_features // 4)
            last = nn.Linear(width, 2 * n_features)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
            self.frame = nn.Sequential(
                nn.Linear(n_conditions, width), nn.LeakyReLU(_LEAKY_SLOPE), last
            )

    def forward(self, inputs: Tensor) -> Tensor:
        out = self.mlp(inputs)
        if self.frame is None:
            return out
        loc, log_scale = self.frame(inputs[:, -self.n_conditions :]).chunk(2, dim=1)
        # a soft bound of |s| <= 5 keeps exp(s) finite whatever the critic pushes for
        return loc + torch.exp(_MAX_LOG_SCALE * torch.tanh(log_scale / _MAX_LOG_SCALE)) * out


def _spectral_norm(net: nn.Module) -> None:
    """Spectrally normalise every linear layer of ``net`` in place (Miyato et al. 2018); the
    power-iteration vectors are drawn from the global RNG (seeded by the caller)."""
    from torch.nn.utils.parametrizations import spectral_norm

    for layer in [m for m in net.modules() if isinstance(m, nn.Linear)]:
        spectral_norm(layer)


class ConditionalGAN(nn.Module):
    """Generator ``G(z, c) -> x`` and critic ``D(x, c)`` of a conditional GAN (residual MLPs).

    Parameters
    ----------
    n_features : int
        D, the number of target columns (>= 1).
    n_conditions : int
        C, the number of condition columns (>= 1).
    settings : GANSettings
        Architecture and loss.
    seed : int
        Seeds the initialisation: the same seed builds identical parameters; the caller's
        global torch RNG is left untouched.

    Attributes
    ----------
    generator : nn.Module
        ``[z, c] (latent_dim + C) -> x (D)``.
    critic : nn.Module
        ``[x, c] (D + C) -> (critic_outputs,)``.
    generator_ema : nn.Module or None
        The moving average of the generator (no gradients), when ``settings.ema`` is set.

    Notes
    -----
    The module is float32; inputs are cast to float32 on the module's device.  Neither network
    has batch normalisation: it would couple the events of a batch, and the conditional
    gradient penalty needs per-event gradients; the critic may use layer normalisation.

    With ``settings.spectral_norm`` every linear layer of the critic is spectrally normalised
    (Miyato et al. 2018; :func:`torch.nn.utils.parametrizations.spectral_norm`): its weight is
    ``W / sigma(W)``, with ``sigma`` estimated by one power iteration per forward pass in
    training mode (the stored estimate in evaluation mode).  The state dict holds ``W``
    (``...parametrizations.weight.original``) and the power-iteration vectors (``_u``,
    ``_v``), so files, checkpoints and resume carry the estimate.  A residual block is then
    at most 2-Lipschitz, the critic at most ``2^critic_blocks`` (with leaky ReLUs; layer
    normalisation is not bounded).

    With ``settings.ema`` set, a copy of the generator follows its weights,
    ``theta_ema <- d theta_ema + (1 - d) theta`` after each generator update with
    ``d = min(ema, (1 + t) / (10 + t))`` (t: generator updates so far, so early averages do not
    remember the initialisation; the warm-up factor stays below 0.999 for ~9000 updates, so in
    short runs it sets the decay); sampling, the validation loss and the checkpoint metric use
    the averaged generator (Yazici et al. 2019).  It lives in the state dict, so checkpoints
    and resume carry it.

    Initialisation is seeded (:func:`torch.random.fork_rng`: the caller's RNG is untouched);
    sampling draws the latent noise from the ``torch.Generator`` it is given.

    References
    ----------
    M. Mirza, S. Osindero, "Conditional generative adversarial nets", arXiv:1411.1784.
    I. Gulrajani et al., "Improved training of Wasserstein GANs", arXiv:1704.00028.
    M. G. Bellemare et al., "The Cramer distance as a solution to biased Wasserstein
    gradients", arXiv:1705.10743.
    Y. Yazici et al., "The unusual effectiveness of averaging in GAN training", ICLR 2019,
    arXiv:1806.04498.
    T. Miyato et al., "Spectral normalization for generative adversarial networks",
    ICLR 2018, arXiv:1802.05957.

    Examples
    --------
    >>> import torch
    >>> gan = ConditionalGAN(2, 3, GANSettings(hidden_features=16, critic_hidden_features=16),
    ...                      seed=1)
    >>> c = torch.zeros(4, 3)
    >>> x = gan.sample(c, generator=torch.Generator().manual_seed(0))
    >>> x.shape, gan.critic_output(x, c).shape
    (torch.Size([4, 2]), torch.Size([4, 32]))
    """

    def __init__(
        self,
        n_features: int,
        n_conditions: int,
        settings: GANSettings = GANSettings(),
        seed: int = 0,
    ) -> None:
        super().__init__()
        check_module_args(n_features, n_conditions, settings, GANSettings, seed)
        self.n_features = n_features
        self.n_conditions = n_conditions
        self.settings = settings
        self.seed = seed
        s = settings
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.generator = _Generator(n_conditions, n_features, s)
            self.critic = _ResidualMLP(
                n_features + n_conditions,
                s.critic_outputs,
                s.critic_hidden_features,
                s.critic_blocks,
                s.dropout,
                s.layer_norm,
            )
            if s.spectral_norm:
                _spectral_norm(self.critic)
        self.generator_ema: nn.Module | None = None
        if s.ema is not None:
            self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)
        self.float()

    # -- networks ------------------------------------------------------------------------------

    def generate(self, z: Tensor, c: Tensor, ema: bool = False) -> Tensor:
        """``G(z, c)``: latent noise (n, latent_dim) and conditions (n, C) -> targets (n, D).

        ``ema=True`` uses the averaged generator (the trained one when there is none).
        Differentiable w.r.t. the generator's parameters when gradients are enabled.
        """
        net = self.generator_ema if ema and self.generator_ema is not None else self.generator
        return net(torch.cat([z, c], dim=1))

    forward = generate

    def critic_output(self, x: Tensor, c: Tensor) -> Tensor:
        """``D(x, c)``: shape (n, critic_outputs) (k for Cramer's h, 1 for the others)."""
        return self.critic(torch.cat([x, c], dim=1))

    def latent(
        self,
        n: int,
        generator: torch.Generator | None = None,
        device: torch.device | None = None,
        options: LatentOptions = DEFAULT_LATENT,
    ) -> Tensor:
        """Latent noise (n, latent_dim), float32: standard normal, or with the temperature
        and truncation of ``options`` (:mod:`hepgen.models.latent`), drawn on ``generator``'s
        device (the global RNG when None) and moved to ``device`` (default: the module's)."""
        device = module_device(self) if device is None else device
        return draw_latent((n, self.settings.latent_dim), generator, device, options)

    def sample(
        self,
        c: Tensor,
        generator: torch.Generator | None = None,
        latent: LatentOptions = DEFAULT_LATENT,
    ) -> Tensor:
        """One draw x ~ G(., c) per row of ``c`` (n, C) with the sampling generator (the EMA
        one when there is one); float32 (n, D), no autograd graph.  ``latent``: temperature
        and truncation of the noise (the truncation trick)."""
        c = self._as_input(c, self.n_conditions, "c")
        with torch.no_grad():
            return self.generate(self.latent(c.shape[0], generator, options=latent), c, ema=True)

    @torch.no_grad()
    def update_ema(self, n_updates: int) -> None:
        """Move the EMA generator towards the generator after generator update ``n_updates``
        (0-based): decay ``min(ema, (1 + t) / (10 + t))``.  No-op without EMA."""
        if self.generator_ema is None or self.settings.ema is None:
            return
        decay = min(self.settings.ema, (1.0 + n_updates) / (10.0 + n_updates))
        for ema_p, p in zip(
            self.generator_ema.parameters(), self.generator.parameters(), strict=True
        ):
            ema_p.lerp_(p.detach(), 1.0 - decay)

    def describe(self) -> dict[str, Any]:
        """Architecture summary: ``n_features``, ``n_conditions``, ``settings`` (a dict),
        ``n_parameters`` (generator and critic; the EMA copy not counted), ``sampler``."""
        trainable = [*self.generator.parameters(), *self.critic.parameters()]
        return {
            "n_features": self.n_features,
            "n_conditions": self.n_conditions,
            "settings": self.settings.to_dict(),
            "n_parameters": int(sum(p.numel() for p in trainable)),
            "sampler": "generator_ema" if self.generator_ema is not None else "generator",
        }

    def _as_input(self, t: Any, width: int, name: str) -> Tensor:
        t = torch.as_tensor(t).to(device=module_device(self), dtype=torch.float32)
        if t.ndim != 2 or t.shape[1] != width:
            raise ValueError(
                f"{name} must have shape (n, {width}) for this GAN, got {tuple(t.shape)}"
            )
        return t

    def extra_repr(self) -> str:
        return (
            f"n_features={self.n_features}, n_conditions={self.n_conditions}, "
            f"loss={self.settings.loss!r}, seed={self.seed}"
        )


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------


def save_gan(gan: ConditionalGAN, directory: str | Path, name: str = "gan") -> list[Path]:
    """Write ``NAME.safetensors`` (state dict) and ``NAME.json`` (metadata), atomically.

    Parameters
    ----------
    gan : ConditionalGAN
    directory : path
        Created when missing.
    name : str
        File stem (no path separators).

    Returns
    -------
    list of Path
        ``[weights, metadata]``.  The JSON is written last and records the SHA-256 of the
        weights, so a crash between the two leaves a detectable mismatch.

    Notes
    -----
    ``NAME.safetensors`` holds the whole state dict (generator, critic, EMA generator:
    training can continue from it); ``NAME.json`` holds :meth:`ConditionalGAN.describe` plus
    ``format`` ("hepgen-gan"), ``format_version`` (1), the seed, the SHA-256 of the weights
    file and the torch version.
    """
    return save_module(
        gan,
        directory,
        name,
        fmt=GAN_FORMAT,
        version=GAN_FORMAT_VERSION,
        description=gan.describe(),
        seed=gan.seed,
        versions={"torch": torch.__version__},
    )


def load_gan(
    directory: str | Path, name: str = "gan", device: str | torch.device = "cpu"
) -> ConditionalGAN:
    """Rebuild a GAN written by :func:`save_gan` (JSON + safetensors; no code is executed).

    Parameters
    ----------
    directory : path
    name : str
        File stem used by :func:`save_gan`.
    device : str or torch.device
        Where to put the module.

    Returns
    -------
    ConditionalGAN
        In evaluation mode.

    Raises
    ------
    InputError
        A missing file, invalid JSON, another format or format version (found and supported
        versions named), invalid settings, a weights file that is corrupt, truncated or does
        not match its checksum (the file named), or a tensor missing, unexpected or of the
        wrong shape (the tensor named).
    """
    return load_module(
        directory,
        name,
        fmt=GAN_FORMAT,
        version=GAN_FORMAT_VERSION,
        label="gan",
        settings_from_dict=GANSettings.from_dict,
        device=device,
        build=lambda d, c, settings, seed: ConditionalGAN(d, c, settings, seed=seed),
    )
