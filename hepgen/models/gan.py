"""Conditional GANs for the detector response: WGAN-GP and the Cramer (energy-distance) GAN.

A :class:`ConditionalGAN` holds a generator ``G(z, c) -> x`` (z ~ N(0, 1) of ``latent_dim``
numbers, c the conditions, x the targets, all model-space float32) and a critic ``D(x, c)``,
both residual MLPs; :class:`GANModel` gives it the model protocol of :mod:`hepgen.models.base`
(fit, sample, save, load; ``log_prob`` raises :class:`~hepgen.models.base.NoLikelihoodError`)
and trains it with the shared loop of :mod:`hepgen.training` through :class:`GANObjective`.

Design choices
--------------
* **Losses** (``GANSettings.loss``).  ``"wgan-gp"`` (Gulrajani et al. 2017): the critic
  minimises ``E[D(x_g, c)] - E[D(x_r, c)] + lambda E[(||grad_x D(x_hat, c)|| - 1)^2]`` and the
  generator minimises ``-E[D(x_g, c)]``.  ``"cramer"`` (Bellemare et al. 2017, the LHCb RICH
  GAN of Maevskiy et al. 2019): the critic ``h(x, c)`` maps to R^k (``critic_output_dim``);
  with two independent generated samples ``x_g, x_g'`` at the same conditions the generator
  minimises the energy distance in critic space
  ``E||h(x_r) - h(x_g)|| + E||h(x_r) - h(x_g')|| - E||h(x_g) - h(x_g')||`` and the critic
  maximises the surrogate ``f(x_r) - f(x_g)`` with ``f(x) = ||h(x) - h(x_g')|| - ||h(x)||``,
  less the same gradient penalty on ``f``.  Default ``"cramer"``, because it trains far
  faster here: on the conditional Gaussian toy of the tests (D = 2, C = 2, mean and widths
  depending on c, 20k events, one CPU thread) it reaches a worst KS of 0.03 against the true
  p(x | c) at held-out conditions after 8 epochs (~8 s), whereas WGAN-GP with the recipe of
  Gulrajani et al. (lambda 10, 5 critic steps, Adam (0, 0.9)) has only the marginals right
  after 15 epochs (KS 0.39 at fixed c) and needs ~100 epochs (~55 s) for 0.08, oscillating on
  the way (a minimal independent WGAN-GP loop behaved the same).  Reasons: one critic step
  per generator step instead of five, and the energy distance's unbiased sample gradients
  (Bellemare et al.), which suit small batches; it is also the LHCb RICH GAN's choice
  (ANCHORS.md).
* **Conditional gradient penalty.**  The interpolate ``x_hat = e x_r + (1 - e) x_g``
  (``e ~ U(0, 1)`` per event) keeps the row's conditions ``c``, and the gradient is taken with
  respect to ``x`` only: the critic must be 1-Lipschitz in ``x`` for every ``c``; it may
  depend on ``c`` freely.  Hence no batch normalisation anywhere (it would couple the events
  of a batch and the per-event gradient); the critic may use layer normalisation.  The norm is
  ``sqrt(|g|^2 + 1e-12)`` so that a zero gradient has a finite derivative.
* **Penalty weight.**  ``gp_lambda`` defaults to 10 (Gulrajani et al.; the issue's WGAN-GP
  recipe).  For the Cramer GAN of ``configs/toy_jets_gan.yaml`` it is 1: a detector response
  has narrow conditional distributions (the high-pt resolution is a fraction of the
  low-pt one in model space), whose differences a strongly Lipschitz-bounded critic barely
  registers (energy and Wasserstein distances between two narrow distributions are small);
  in 5-minute trials on the reference simulation the validation classifier AUC reached 0.60
  with 1 against 0.66 with 10.
* **Event weights** (negative sWeights allowed).  Every term of both losses is a per-event
  quantity: the generated samples of row ``i`` are drawn at ``c_i``, so the expectations over
  the joint (c, x) are weighted means over rows, ``sum_i w_i l_i / (n mean(w))`` with the
  training set's mean weight, exactly like the flow loss (:mod:`hepgen.training`).  Weighting
  the generated terms too is what makes a negatively weighted contamination cancel in the
  conditions as well as in the targets.  The gradient penalty is a regulariser, not an
  expectation over the data: it is an unweighted mean (a negative weight would reward a
  steep critic).
* **Updates.**  Each training batch makes one critic update; every ``n_critic``-th batch (the
  loop's batch counter, restored on resume) also makes one generator update on the same
  conditions.  AdamW with ``adam_betas`` (default (0, 0.9), Gulrajani et al.) and the loop's
  weight decay (0 in :func:`default_gan_training`: plain Adam); the loop's learning-rate
  schedule, clipping and NaN guard apply to each optimizer separately.
* **EMA.**  With ``ema`` set, a copy of the generator follows its weights,
  ``theta_ema <- d theta_ema + (1 - d) theta`` after each generator update with
  ``d = min(ema, (1 + t) / (10 + t))`` (t: generator updates so far, so early averages do not
  remember the initialisation; the warm-up factor stays below 0.999 for ~9000 updates, so in
  short runs it sets the decay); sampling, the validation loss and the checkpoint metric use
  the averaged generator (Yazici et al. 2019).  It lives in the module's state dict, so
  checkpoints and resume carry it.
* **Validation loss**: the conditional *energy score* (Gneiting & Raftery 2007) of the
  sampler in model space, per event ``(1/m) sum_j ||g_j - x|| - 1/(2 m (m - 1))
  sum_{j != l} ||g_j - g_l||`` with m = :data:`ENERGY_SCORE_DRAWS` draws ``g_j ~ G(., c)``:
  an unbiased estimate of ``E||G - x|| - E||G - G'|| / 2``, a strictly proper score (its
  expectation is lowest when the generator's p(x | c) is the truth), linear in the event so
  that weighted means (sWeights) are exact, independent of the critic, and (drawn from the
  same seed every epoch, :mod:`hepgen.training`) comparable between epochs.  The critic's
  own loss (the history's ``train_loss``) is not: the critic changes under it.
* **Checkpoint choice**: a physics metric of one draw per validation condition
  (:mod:`hepgen.models.selection`), never the GAN loss: ``"ks"``, the mean per-feature KS
  statistic, or ``"c2st"``, the AUC of a quick classifier test on (x, c), which also sees
  how the response depends on the conditions (``configs/toy_jets_gan.yaml`` uses it: with KS
  selection, a 5-minute run on the reference simulation kept epoch 4 of 23, at held-out AUC
  0.68, because the marginals were best there while the conditional response kept
  improving); ``selection="loss"`` chooses by the energy score instead.  With a metric, every
  epoch also records the kNN recall and coverage (:func:`knn_recall_coverage`) of (x, c) on up
  to 5000 validation rows: a collapsing generator loses recall and coverage while its
  marginals may still look fine.
* Initialisation is seeded (:func:`torch.random.fork_rng`: the caller's RNG is untouched);
  sampling draws the latent noise from the ``torch.Generator`` it is given.

Files (:func:`save_gan` / :func:`load_gan`): ``NAME.safetensors`` holds the whole state dict
(generator, critic, EMA generator: training can continue from it); ``NAME.json`` holds
:meth:`ConditionalGAN.describe` plus ``format`` ("hepgen-gan"), ``format_version`` (1), the
seed, the SHA-256 of the weights file and the torch version.  Both are written atomically;
loading never executes code.

References
----------
I. Goodfellow et al., "Generative adversarial nets", NeurIPS 2014, arXiv:1406.2661.
I. Gulrajani, F. Ahmed, M. Arjovsky, V. Dumoulin, A. Courville, "Improved training of
Wasserstein GANs", NeurIPS 2017, arXiv:1704.00028.
M. G. Bellemare et al., "The Cramer distance as a solution to biased Wasserstein gradients",
arXiv:1705.10743.
A. Maevskiy et al. (LHCb), "Fast data-driven simulation of Cherenkov detectors using
generative adversarial networks", arXiv:1905.11825; M. Mirza, S. Osindero, "Conditional
generative adversarial nets", arXiv:1411.1784.
Y. Yazici et al., "The unusual effectiveness of averaging in GAN training", ICLR 2019,
arXiv:1806.04498.
T. Gneiting, A. E. Raftery, "Strictly proper scoring rules, prediction, and estimation",
JASA 102 (2007) 359, doi:10.1198/016214506000001437 (energy score).
M. F. Naeem et al., "Reliable fidelity and diversity metrics for generative models", ICML
2020, arXiv:2002.09797; T. Kynkaanniemi et al., "Improved precision and recall metric for
assessing generative models", NeurIPS 2019, arXiv:1904.06991 (coverage, recall).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from hepgen.errors import ConfigError
from hepgen.models.base import (
    GenerativeModel,
    check_model_inputs,
    sample_module,
    training_arrays,
)
from hepgen.models.files import load_module, save_module
from hepgen.models.flow_model import resolve_device
from hepgen.models.selection import check_selection, selection_metric
from hepgen.models.settings import (
    check_choice,
    check_float,
    check_int,
    check_module_args,
    module_device,
    settings_from_dict,
)
from hepgen.training import Objective, StepContext, TrainingSettings

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

GAN_FORMAT = "hepgen-gan"
GAN_FORMAT_VERSION = 1
LOSSES = ("cramer", "wgan-gp")
#: Critic updates per generator update when ``n_critic`` is not given, per loss.
DEFAULT_N_CRITIC = {"wgan-gp": 5, "cramer": 1}
#: Generated draws per event in the validation energy score.
ENERGY_SCORE_DRAWS = 4
#: Rows per generator pass in :meth:`GANModel.sample`.
DEFAULT_BATCH_SIZE = 8192
#: Validation rows (at most) of the recall / coverage computed every epoch.
RECALL_COVERAGE_EVENTS = 5000
_NORM_EPS = 1e-12
_LEAKY_SLOPE = 0.2
#: Soft bound of the generator's conditional log-scale (``conditional_scale``).
_MAX_LOG_SCALE = 5.0


# --------------------------------------------------------------------------------------------
# settings
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GANSettings:
    """Architecture and adversarial recipe of a :class:`ConditionalGAN`; validated, JSON-ready.

    Parameters
    ----------
    loss : {"cramer", "wgan-gp"}
        Cramer (energy-distance) GAN or Wasserstein GAN with gradient penalty (module notes
        say why ``"cramer"`` is the default).
    latent_dim : int
        Gaussian noise numbers per event fed to the generator.
    hidden_features : int
        Width of the generator's residual MLP.
    n_blocks : int
        Residual blocks of the generator (two linear layers each; >= 0).
    critic_hidden_features : int
        Width of the critic's residual MLP.
    critic_blocks : int
        Residual blocks of the critic (>= 0).
    critic_output_dim : int
        Size k of the Cramer critic's output h(x, c) in R^k; the WGAN-GP critic outputs 1.
    n_critic : int or None
        Critic updates per generator update; ``None``: 5 for WGAN-GP, 1 for Cramer.
    gp_lambda : float
        Weight of the gradient penalty (>= 0).
    adam_betas : tuple of two floats
        Adam's (beta1, beta2) for both networks, each in [0, 1).
    ema : float or None
        Decay of the exponential moving average of the generator weights used for sampling,
        in (0, 1); ``None`` samples with the trained generator itself.
    dropout : float
        Dropout probability inside the critic's blocks, in [0, 1).
    layer_norm : bool
        Layer normalisation at the entry of each critic block (per event, so compatible with
        the gradient penalty; never batch normalisation).
    conditional_scale : bool
        The generator's output is ``a(c) + exp(s(c)) * MLP(z, c)`` with a small network of
        the conditions for the per-feature location a and log-scale s (started at 0 and 1),
        instead of ``MLP(z, c)``: a detector response is mostly noise whose width depends on
        the conditions (resolution falling with pt), a product that a ReLU network of
        ``(z, c)`` only approximates piecewise.

    Raises
    ------
    ConfigError
        A value of the wrong type or out of range (the message names the field).

    References
    ----------
    I. Gulrajani et al., arXiv:1704.00028; M. G. Bellemare et al., arXiv:1705.10743.

    Examples
    --------
    >>> s = GANSettings(loss="wgan-gp", latent_dim=8)
    >>> s.n_critic, s.adam_betas
    (5, (0.0, 0.9))
    >>> GANSettings.from_dict(s.to_dict()) == s
    True
    """

    loss: Literal["cramer", "wgan-gp"] = "cramer"
    latent_dim: int = 16
    hidden_features: int = 128
    n_blocks: int = 2
    critic_hidden_features: int = 128
    critic_blocks: int = 2
    critic_output_dim: int = 32
    n_critic: int | None = None
    gp_lambda: float = 10.0
    adam_betas: tuple[float, float] = (0.0, 0.9)
    ema: float | None = 0.999
    dropout: float = 0.0
    layer_norm: bool = False
    conditional_scale: bool = True

    def __post_init__(self) -> None:
        check_choice("gan", "loss", self.loss, LOSSES)
        check_int("gan", "latent_dim", self.latent_dim, 1)
        check_int("gan", "hidden_features", self.hidden_features, 1)
        check_int("gan", "n_blocks", self.n_blocks, 0)
        check_int("gan", "critic_hidden_features", self.critic_hidden_features, 1)
        check_int("gan", "critic_blocks", self.critic_blocks, 0)
        check_int("gan", "critic_output_dim", self.critic_output_dim, 1)
        if self.n_critic is None:
            object.__setattr__(self, "n_critic", DEFAULT_N_CRITIC[self.loss])
        check_int("gan", "n_critic", self.n_critic, 1)
        gp = check_float("gan", "gp_lambda", self.gp_lambda)
        if gp < 0:
            raise ConfigError(f"gan setting 'gp_lambda' must be >= 0, got {gp}")
        object.__setattr__(self, "gp_lambda", gp)
        betas = self.adam_betas
        if isinstance(betas, str) or not isinstance(betas, tuple | list) or len(betas) != 2:
            raise ConfigError(f"gan setting 'adam_betas' must be two numbers, got {betas!r}")
        betas = tuple(check_float("gan", "adam_betas", b) for b in betas)
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ConfigError(f"gan setting 'adam_betas' must lie in [0, 1), got {betas}")
        object.__setattr__(self, "adam_betas", betas)
        if self.ema is not None:
            ema = check_float("gan", "ema", self.ema)
            if not 0.0 < ema < 1.0:
                raise ConfigError(f"gan setting 'ema' must be in (0, 1) or null, got {ema}")
            object.__setattr__(self, "ema", ema)
        dropout = check_float("gan", "dropout", self.dropout)
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"gan setting 'dropout' must be in [0, 1), got {dropout}")
        object.__setattr__(self, "dropout", dropout)
        if not isinstance(self.conditional_scale, bool):
            raise ConfigError(
                f"gan setting 'conditional_scale' must be true or false, got "
                f"{self.conditional_scale!r}"
            )
        if not isinstance(self.layer_norm, bool):
            raise ConfigError(
                f"gan setting 'layer_norm' must be true or false, got {self.layer_norm!r}"
            )

    @property
    def critic_outputs(self) -> int:
        """Outputs of the critic network: ``critic_output_dim`` (Cramer) or 1 (WGAN-GP)."""
        return self.critic_output_dim if self.loss == "cramer" else 1

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain dict (JSON types only; ``adam_betas`` as a list)."""
        d = dataclasses.asdict(self)
        d["adam_betas"] = list(self.adam_betas)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GANSettings:
        """Build settings from a dict such as :meth:`to_dict` writes; missing keys get defaults.

        Raises
        ------
        ConfigError
            ``d`` is not a mapping, has unknown keys (all named, with suggestions), or a value
            is invalid.
        """
        return settings_from_dict(cls, d, "gan")


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
    has batch normalisation (the gradient penalty needs per-event gradients).

    References
    ----------
    M. Mirza, S. Osindero, "Conditional generative adversarial nets", arXiv:1411.1784.
    I. Gulrajani et al., "Improved training of Wasserstein GANs", arXiv:1704.00028.
    M. G. Bellemare et al., "The Cramer distance as a solution to biased Wasserstein
    gradients", arXiv:1705.10743.

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
        """``D(x, c)``: shape (n, critic_outputs) (k for Cramer's h, 1 for WGAN-GP)."""
        return self.critic(torch.cat([x, c], dim=1))

    def latent(
        self, n: int, generator: torch.Generator | None = None, device: torch.device | None = None
    ) -> Tensor:
        """Standard-normal latent noise (n, latent_dim), float32, drawn on ``generator``'s
        device (the global RNG when None) and moved to ``device`` (default: the module's)."""
        device = module_device(self) if device is None else device
        source = generator.device if generator is not None else device
        z = torch.randn(
            (n, self.settings.latent_dim), generator=generator, device=source, dtype=torch.float32
        )
        return z.to(device)

    def sample(self, c: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One draw x ~ G(., c) per row of ``c`` (n, C) with the sampling generator (the EMA
        one when there is one); float32 (n, D), no autograd graph."""
        c = self._as_input(c, self.n_conditions, "c")
        with torch.no_grad():
            return self.generate(self.latent(c.shape[0], generator), c, ema=True)

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
# losses
# --------------------------------------------------------------------------------------------


def _norm(v: Tensor) -> Tensor:
    """Row-wise Euclidean norm with a finite derivative at 0: ``sqrt(|v|^2 + 1e-12)``."""
    return torch.sqrt(v.pow(2).sum(dim=1) + _NORM_EPS)


def gradient_penalty(
    score: Callable[[Tensor, Tensor], Tensor],
    real: Tensor,
    fake: Tensor,
    c: Tensor,
    eps: Tensor,
) -> Tensor:
    """Per-event gradient penalty ``(||grad_x score(x_hat, c)|| - 1)^2`` at interpolates.

    Parameters
    ----------
    score : callable ``(x, c) -> Tensor (n,)``
        The critic's scalar function of an event (WGAN-GP: ``D``; Cramer: the surrogate
        ``f``), evaluated row by row (no coupling between rows).
    real, fake : Tensor of shape (n, D)
        Real events and generated events at the same conditions (``fake`` detached).
    c : Tensor of shape (n, C)
        The rows' conditions, shared by both ends of each interpolation.
    eps : Tensor of shape (n, 1)
        Interpolation fractions in [0, 1]: ``x_hat = eps real + (1 - eps) fake``.

    Returns
    -------
    Tensor of shape (n,)
        Differentiable w.r.t. the critic's parameters (``create_graph=True``).
    """
    x_hat = (eps * real + (1.0 - eps) * fake).detach().requires_grad_(True)
    out = score(x_hat, c)
    (grad,) = torch.autograd.grad(out.sum(), x_hat, create_graph=True)
    return (_norm(grad) - 1.0) ** 2


def energy_score(draws: Tensor, x: Tensor) -> Tensor:
    """Unbiased per-event energy score of ``m`` draws against the observed ``x``.

    Parameters
    ----------
    draws : Tensor of shape (m, n, D), m >= 2
        Independent draws from the model at each event's conditions.
    x : Tensor of shape (n, D)
        The observed events.

    Returns
    -------
    Tensor of shape (n,)
        ``mean_j ||g_j - x|| - sum_{j != l} ||g_j - g_l|| / (2 m (m - 1))``; its expectation
        ``E||G - x|| - E||G - G'|| / 2`` is lowest (over models) for the true p(x | c).

    Examples
    --------
    >>> import torch
    >>> g = torch.tensor([[[0.0]], [[2.0]]])  # two draws, 0 and 2, of one event at x = 1
    >>> energy_score(g, torch.tensor([[1.0]])).item()  # 1 - 2 / 2
    0.0
    """
    m = draws.shape[0]
    if m < 2:
        raise ValueError("energy_score needs at least 2 draws per event")
    to_x = torch.linalg.vector_norm(draws - x.unsqueeze(0), dim=2).mean(dim=0)
    pair = torch.zeros_like(to_x)
    for j in range(m):
        for k in range(j + 1, m):
            pair = pair + torch.linalg.vector_norm(draws[j] - draws[k], dim=1)
    return to_x - pair / (m * (m - 1))


class GANObjective(Objective):
    """Adversarial training step of a :class:`ConditionalGAN` for :func:`hepgen.training.train`.

    Two optimizers, ``"critic"`` and ``"generator"`` (Adam(W) with ``settings.adam_betas``, the
    loop's learning rate and weight decay); each batch makes one critic update and every
    ``n_critic``-th batch one generator update (module notes).  ``step`` returns the critic's
    loss (``-W + GP`` for WGAN-GP, ``-surrogate + GP`` for Cramer); ``validation_losses`` is
    the per-event energy score.  Training data: ``{"x": (n, D), "c": (n, C)}`` and optionally
    ``"w"``.

    Parameters
    ----------
    settings : GANSettings
        The module's settings (loss, n_critic, gp_lambda, adam_betas).

    References
    ----------
    I. Gulrajani et al., arXiv:1704.00028 (Algorithm 1); M. G. Bellemare et al.,
    arXiv:1705.10743 (Algorithm 1).

    Examples
    --------
    >>> import numpy as np
    >>> from hepgen.training import TrainingSettings, train
    >>> s = GANSettings(hidden_features=8, critic_hidden_features=8, n_blocks=1,
    ...                 critic_blocks=1)
    >>> gan = ConditionalGAN(1, 1, s, seed=0)
    >>> data = {"x": np.zeros((200, 1), np.float32), "c": np.ones((200, 1), np.float32)}
    >>> result = train(gan, None, data, None, TrainingSettings(max_epochs=1, batch_size=50,
    ...                device="cpu"), objective=GANObjective(s), quiet=True)
    >>> len(result.history), result.n_bad_batches
    (1, 0)
    """

    def __init__(self, settings: GANSettings) -> None:
        self.settings = settings

    def optimizers(
        self, module: torch.nn.Module, settings: TrainingSettings
    ) -> dict[str, torch.optim.Optimizer]:
        """``{"critic": AdamW(critic), "generator": AdamW(generator)}``."""
        gan = _as_gan(module)
        kwargs = {
            "lr": settings.learning_rate,
            "betas": self.settings.adam_betas,
            "weight_decay": settings.weight_decay,
        }
        return {
            "critic": torch.optim.AdamW(gan.critic.parameters(), **kwargs),
            "generator": torch.optim.AdamW(gan.generator.parameters(), **kwargs),
        }

    def describe(self) -> dict[str, Any]:
        """The GAN settings that shape the trajectory (checked on resume)."""
        s = self.settings
        return {
            "loss": s.loss,
            "n_critic": s.n_critic,
            "gp_lambda": s.gp_lambda,
            "adam_betas": list(s.adam_betas),
            "ema": s.ema,
        }

    # -- losses ----------------------------------------------------------------------------------

    def critic_loss(
        self,
        gan: ConditionalGAN,
        x: Tensor,
        c: Tensor,
        weights: Tensor | None,
        context: StepContext,
    ) -> Tensor:
        """The critic's batch loss (scalar), generated samples detached."""
        n = x.shape[0]
        cramer = self.settings.loss == "cramer"
        with torch.no_grad():
            fake = gan.generate(gan.latent(n), c)
            fake2 = gan.generate(gan.latent(n), c) if cramer else None
        eps = torch.rand((n, 1), device=x.device, dtype=x.dtype)
        if cramer:
            h_ref = gan.critic_output(fake2, c)

            def score(xx: Tensor, cc: Tensor) -> Tensor:
                h = gan.critic_output(xx, cc)
                return _norm(h - h_ref) - _norm(h)

            surrogate = score(x, c) - score(fake, c)
            adversarial = -context.weighted_mean(surrogate, weights)
        else:

            def score(xx: Tensor, cc: Tensor) -> Tensor:
                return gan.critic_output(xx, cc)[:, 0]

            adversarial = context.weighted_mean(score(fake, c) - score(x, c), weights)
        if self.settings.gp_lambda == 0:
            return adversarial
        penalty = gradient_penalty(score, x, fake, c, eps).mean()
        return adversarial + self.settings.gp_lambda * penalty

    def generator_loss(
        self,
        gan: ConditionalGAN,
        x: Tensor,
        c: Tensor,
        weights: Tensor | None,
        context: StepContext,
    ) -> Tensor:
        """The generator's batch loss (scalar), differentiable w.r.t. the generator."""
        n = x.shape[0]
        fake = gan.generate(gan.latent(n), c)
        if self.settings.loss == "cramer":
            fake2 = gan.generate(gan.latent(n), c)
            h_r, h_g, h_g2 = (gan.critic_output(t, c) for t in (x, fake, fake2))
            per_event = _norm(h_r - h_g) + _norm(h_r - h_g2) - _norm(h_g - h_g2)
        else:
            per_event = -gan.critic_output(fake, c)[:, 0]
        return context.weighted_mean(per_event, weights)

    # -- the protocol ----------------------------------------------------------------------------

    def step(
        self,
        module: torch.nn.Module,
        batch: dict[str, Tensor],
        weights: Tensor | None,
        context: StepContext,
    ) -> float | None:
        """One critic update, plus a generator update every ``n_critic``-th batch."""
        gan = _as_gan(module)
        x, c = batch["x"], batch["c"]
        loss = self.critic_loss(gan, x, c, weights, context)
        if not context.update("critic", loss):
            return None
        value = float(loss.detach())
        if (context.index + 1) % self.settings.n_critic == 0:
            if not context.update("generator", self.generator_loss(gan, x, c, weights, context)):
                return None
            gan.update_ema(context.index // self.settings.n_critic)
        return value

    def validation_losses(self, module: torch.nn.Module, batch: dict[str, Tensor]) -> Tensor:
        """Per-event energy score of the sampler (EMA generator when there is one)."""
        gan = _as_gan(module)
        x, c = batch["x"], batch["c"]
        draws = torch.stack(
            [gan.generate(gan.latent(x.shape[0]), c, ema=True) for _ in range(ENERGY_SCORE_DRAWS)]
        )
        return energy_score(draws, x)


def _as_gan(module: torch.nn.Module) -> ConditionalGAN:
    if not isinstance(module, ConditionalGAN):
        raise TypeError(f"GANObjective trains a ConditionalGAN, got {type(module).__name__}")
    return module


# --------------------------------------------------------------------------------------------
# recall and coverage
# --------------------------------------------------------------------------------------------


def knn_recall_coverage(
    real: np.ndarray | Tensor, fake: np.ndarray | Tensor, k: int = 5, tile: int = 1024
) -> tuple[float, float]:
    """kNN recall and coverage of ``fake`` against ``real`` (exact distances, in torch).

    Features are standardised with the mean and standard deviation of ``real`` (float32
    arithmetic); ``r_i`` is
    the distance of real event i to its k-th nearest other real event, ``s_j`` that of fake
    event j among the fakes.  Recall: the fraction of real events inside at least one closed
    ball ``B(Y_j, s_j)``; coverage: the fraction of real events whose ball ``B(X_i, r_i)``
    holds at least one fake (``1 - 2^-k`` expected for identical distributions of equal size).
    The same definitions as :mod:`hepgen.validation`'s PRDC, kept here because the models
    layer does not import the validation layer.

    Parameters
    ----------
    real, fake : array of shape (n, F) and (m, F)
        E.g. ``[x, c]`` of validation events and of generated events at their conditions.
    k : int
        Neighbour order of the radii.
    tile : int
        Rows per distance block (memory ``tile * max(n, m)`` floats).

    Returns
    -------
    recall, coverage : float
        In [0, 1]; a collapsing generator loses both.

    References
    ----------
    M. F. Naeem et al., arXiv:2002.09797; T. Kynkaanniemi et al., arXiv:1904.06991.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> real = rng.normal(size=(2000, 2))
    >>> r, c = knn_recall_coverage(real, rng.normal(size=(2000, 2)))
    >>> bool(r > 0.9 and c > 0.9)
    True
    >>> r, c = knn_recall_coverage(real, 0.1 * rng.normal(size=(2000, 2)))  # collapsed
    >>> bool(r < 0.2 and c < 0.3)
    True
    """
    a = torch.as_tensor(np.asarray(real), dtype=torch.float32)
    b = torch.as_tensor(np.asarray(fake), dtype=torch.float32)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"real and fake must be (n, F) and (m, F), got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    if min(a.shape[0], b.shape[0]) <= k:
        raise ValueError(f"knn_recall_coverage needs more than k={k} events in each sample")
    mean, std = a.mean(0), a.std(0).clamp_min(1e-12)
    a, b = (a - mean) / std, (b - mean) / std
    r = _kth_radius(a, k, tile)
    s = _kth_radius(b, k, tile)
    recalled = torch.zeros(a.shape[0], dtype=torch.bool)
    covered = torch.zeros(a.shape[0], dtype=torch.bool)
    for start in range(0, a.shape[0], tile):
        d = torch.cdist(a[start : start + tile], b)  # (tile, m)
        recalled[start : start + tile] = (d <= s.unsqueeze(0)).any(dim=1)
        covered[start : start + tile] = d.min(dim=1).values <= r[start : start + tile]
    return float(recalled.double().mean()), float(covered.double().mean())


def _kth_radius(a: Tensor, k: int, tile: int) -> Tensor:
    """Distance of each row to its k-th nearest other row."""
    out = torch.empty(a.shape[0], dtype=a.dtype)
    for start in range(0, a.shape[0], tile):
        d = torch.cdist(a[start : start + tile], a)
        # the row itself is at distance 0: the (k+1)-th smallest is the k-th other neighbour
        # (topk is ~5x faster than kthvalue on CPU)
        out[start : start + tile] = d.topk(k + 1, dim=1, largest=False).values[:, k]
    return out


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


# --------------------------------------------------------------------------------------------
# the model protocol
# --------------------------------------------------------------------------------------------


def default_gan_training(
    settings: GANSettings | None = None, seed: int = 0, device: str = "auto", **overrides: Any
) -> TrainingSettings:
    """The :class:`~hepgen.training.TrainingSettings` a :class:`GANModel` trains with when
    none are given; ``overrides`` replace any field.

    Batch 256 with a cosine decay from 1e-3 (Cramer) or 3e-4 (WGAN-GP: at 1e-3 it oscillated
    on the toys of the tests; Gulrajani et al. use 1e-4 with batch 64), no weight decay (Adam,
    as in both papers), gradient norms clipped at 10 per network (a guard, not a regulariser),
    and patience 20 epochs of the validation energy score (which moves slowly once converged).

    Examples
    --------
    >>> default_gan_training(GANSettings(loss="wgan-gp"), max_epochs=5).learning_rate
    0.0003
    """
    loss = "cramer" if settings is None else settings.loss
    values = {
        "learning_rate": 1e-3 if loss == "cramer" else 3e-4,
        "batch_size": 256,
        "grad_clip": 10.0,
        "patience": 20,
        "weight_decay": 0.0,
        "seed": seed,
        "device": device,
        **overrides,
    }
    return TrainingSettings(**values)


class GANModel(GenerativeModel):
    """A conditional GAN with the hepgen model protocol (no likelihood).

    Parameters
    ----------
    settings : GANSettings or None
        Architecture and loss (default :class:`GANSettings`: Cramer GAN).
    seed : int
        Seed of the initialisation (and default seed of the training loop).
    device : {"auto", "cpu", "cuda"}
        Where the GAN runs for training and sampling.

    References
    ----------
    M. G. Bellemare et al., arXiv:1705.10743; I. Gulrajani et al., arXiv:1704.00028;
    A. Maevskiy et al., arXiv:1905.11825 (the LHCb RICH GAN).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> c = rng.normal(size=(2000, 1)).astype("float32")
    >>> x = (c + 0.5 * rng.normal(size=(2000, 1))).astype("float32")
    >>> model = GANModel(GANSettings(hidden_features=16, critic_hidden_features=16,
    ...                              n_blocks=1, critic_blocks=1))
    >>> _ = model.fit(x, c, training=default_gan_training(max_epochs=2, device="cpu"),
    ...               quiet=True)
    >>> model.sample(c[:3], seed=1).shape
    (3, 1)
    """

    kind = "gan"

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        targets: np.ndarray,
        conditions: np.ndarray,
        weights: np.ndarray | None = None,
        validation: Mapping[str, np.ndarray] | None = None,
        *,
        training: Any = None,
        selection: str = "ks",
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
        quiet: bool = False,
    ) -> Any:
        """Train adversarially; returns the :class:`~hepgen.training.TrainingResult`.

        Parameters
        ----------
        targets, conditions : np.ndarray
            Model-space matrices (n, D) and (n, C).
        weights : np.ndarray or None
            Event weights (n,), negative allowed (mean > 0).
        validation : mapping or None
            ``{"x": (m, D), "c": (m, C)}`` and optionally ``"w"``: validation energy score,
            early stopping, the checkpoint choice, recall and coverage.
        training : TrainingSettings or None
            Loop settings (default :func:`default_gan_training` for these settings, with this
            model's seed and device).
        selection : {"ks", "c2st", "loss"}
            The final checkpoint: the lowest mean per-feature KS (default) or classifier AUC
            of one draw per validation condition (:mod:`hepgen.models.selection`; each
            epoch's history then records it as ``metric``, and ``metric_details`` holds
            ``recall`` and ``coverage``), or the lowest validation energy score
            (``val_loss``; no metric, recall or coverage computed).
        checkpoint_dir : path or None
            Where the loop checkpoints each epoch (``resume`` continues from there).
        resume : bool
            Continue an interrupted run from ``checkpoint_dir``.
        quiet : bool
            Silence the progress bar.
        """
        from hepgen.training import train

        data, val = training_arrays(targets, conditions, weights, validation, where="gan fit")
        x, c = data["x"], data["c"]
        settings = self.settings if self.settings is not None else GANSettings()
        if not isinstance(settings, GANSettings):
            raise TypeError(f"settings must be a GANSettings, got {type(settings).__name__}")
        if training is None:
            training = default_gan_training(settings, seed=self.seed, device=self.device)
        check_selection(selection)
        self.gan_ = ConditionalGAN(x.shape[1], c.shape[1], settings, seed=self.seed)
        self.n_features_, self.n_conditions_ = x.shape[1], c.shape[1]
        metric = None
        if val is not None and selection != "loss":
            metric = self._metric_fn(val, selection, training.seed)
        self.training_ = train(
            self.gan_,
            None,
            data,
            val,
            training,
            checkpoint_dir=checkpoint_dir,
            resume=resume,
            metric_fn=metric,
            quiet=quiet,
            objective=GANObjective(settings),
        )
        return self.training_

    def _metric_fn(
        self, val: Mapping[str, np.ndarray], selection: str, seed: int
    ) -> Callable[[torch.nn.Module], Mapping[str, float | None]]:
        """The selecting metric, and recall/coverage on <= 5000 validation rows."""
        rng = np.random.default_rng(seed)
        n = val["x"].shape[0]
        rows = np.sort(rng.choice(n, min(n, RECALL_COVERAGE_EVENTS), replace=False))
        real = np.concatenate([val["x"][rows], val["c"][rows]], axis=1)

        def metric(module: torch.nn.Module) -> Mapping[str, float]:
            value = selection_metric(
                selection,
                lambda cc, s: sample_module(module, cc, s, DEFAULT_BATCH_SIZE),
                val["x"],
                val["c"],
                seed=seed,
            )
            fake_x = sample_module(module, val["c"][rows], seed + 1, DEFAULT_BATCH_SIZE)
            fake = np.concatenate([fake_x, val["c"][rows]], axis=1)
            recall, coverage = knn_recall_coverage(real, fake)
            return {"metric": value, "recall": recall, "coverage": coverage}

        return metric

    # ------------------------------------------------------------------ inference
    def _check_fitted(self) -> None:
        if not hasattr(self, "gan_"):
            raise RuntimeError("GANModel: call fit() or load() first")

    def sample(
        self,
        conditions: np.ndarray,
        seed: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> np.ndarray:
        """One draw per row of ``conditions`` (n, C): targets (n, D), float32, model space.

        A seeded :class:`torch.Generator` on the GAN's device draws the latent noise batch
        after batch: the same seed and batch size give the same samples.
        """
        self._check_fitted()
        c, _ = check_model_inputs(conditions, n_conditions=self.n_conditions_, where="gan sample")
        return sample_module(self.gan_, c, seed, batch_size)

    # ------------------------------------------------------------------ persistence
    def describe(self) -> dict[str, Any]:
        """Architecture summary for model cards: sizes, settings, number of parameters,
        sampler (:meth:`ConditionalGAN.describe`)."""
        self._check_fitted()
        return self.gan_.describe()

    def save(self, directory: str | Path, name: str = "gan") -> list[Path]:
        """Write ``{name}.safetensors`` and ``{name}.json`` into ``directory``
        (:func:`save_gan`)."""
        self._check_fitted()
        return save_gan(self.gan_, directory, name=name)

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu", name: str = "gan") -> GANModel:
        """Read a GAN written by :meth:`save` (safetensors + JSON; no code executed)."""
        gan = load_gan(directory, name=name, device=resolve_device(device))
        model = cls(settings=gan.settings, seed=gan.seed, device=device)
        model.gan_ = gan
        model.n_features_, model.n_conditions_ = gan.n_features, gan.n_conditions
        return model
