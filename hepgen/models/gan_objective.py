"""The adversarial objective of a conditional GAN for the shared training loop.

:class:`GANObjective` is the training step of a :class:`~hepgen.models.gan_nets.ConditionalGAN`
under :func:`hepgen.training.train` (the losses of :mod:`hepgen.models.gan_losses`, an optional
conditional gradient penalty, weight clipping for the original WGAN, weighted events, EMA of
the generator); :func:`energy_score` is its validation loss and :func:`default_gan_training`
the loop settings a GAN trains with when none are given.

References
----------
I. Goodfellow et al., "Generative adversarial nets", NeurIPS 2014, arXiv:1406.2661.
M. Arjovsky, S. Chintala, L. Bottou, "Wasserstein GAN", ICML 2017, arXiv:1701.07875.
I. Gulrajani, F. Ahmed, M. Arjovsky, V. Dumoulin, A. Courville, "Improved training of
Wasserstein GANs", NeurIPS 2017, arXiv:1704.00028.
M. G. Bellemare et al., "The Cramer distance as a solution to biased Wasserstein gradients",
arXiv:1705.10743.
J. H. Lim, J. C. Ye, "Geometric GAN", arXiv:1705.02894 (hinge loss).
T. Miyato et al., "Spectral normalization for generative adversarial networks", ICLR 2018,
arXiv:1802.05957.
T. Gneiting, A. E. Raftery, "Strictly proper scoring rules, prediction, and estimation",
JASA 102 (2007) 359, doi:10.1198/016214506000001437 (energy score).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from hepgen.models.gan_losses import (
    clip_parameters,
    cramer_critic,
    cramer_generator,
    critic_losses,
    generator_losses,
    row_norm,
)
from hepgen.models.gan_nets import ConditionalGAN, GANSettings
from hepgen.settings.models import DEFAULT_GAN_LEARNING_RATES
from hepgen.training import Objective, StepContext, TrainingSettings

__all__ = [
    "ENERGY_SCORE_DRAWS",
    "GANObjective",
    "default_gan_training",
    "energy_score",
    "gradient_penalty",
]

#: Generated draws per event in the validation energy score.
ENERGY_SCORE_DRAWS = 4


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
    return (row_norm(grad) - 1.0) ** 2


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

    Two optimizers, ``"critic"`` and ``"generator"`` (Adam(W) with ``settings.adam_betas``, or
    RMSProp, with the loop's learning rate and weight decay); each batch makes one critic
    update and every ``n_critic``-th batch one generator update (see the notes).  ``step``
    returns the critic's loss (e.g. ``-W + GP`` for WGAN-GP, ``-surrogate + GP`` for Cramer);
    ``validation_losses`` is the per-event energy score.  Training data:
    ``{"x": (n, D), "c": (n, C)}`` and optionally ``"w"``.

    Parameters
    ----------
    settings : GANSettings
        The module's settings (loss, n_critic, gp_lambda, optimizer, adam_betas, clip_value).

    Notes
    -----
    * **Losses** (``GANSettings.loss``; the per-event formulas are in
      :mod:`hepgen.models.gan_losses`).  ``"wgan-gp"`` (Gulrajani et al. 2017): the critic
      minimises ``E[D(x_g, c)] - E[D(x_r, c)] + lambda E[(||grad_x D(x_hat, c)|| - 1)^2]`` and
      the generator minimises ``-E[D(x_g, c)]``.  ``"wgan-clip"`` (Arjovsky et al. 2017): the
      same losses without penalty; after every critic update each critic parameter is
      clipped to ``[-clip_value, clip_value]``.  ``"minimax"`` and ``"non-saturating"``
      (Goodfellow et al. 2014): the critic's single output is a logit, trained by binary
      cross-entropy; the generator minimises ``E log(1 - s(D_g))`` or ``-E log s(D_g)``.
      ``"hinge"`` (Lim & Ye 2017; Miyato et al. 2018): the critic minimises
      ``E relu(1 - D_r) + E relu(1 + D_g)``, the generator ``-E D_g``.  ``"cramer"``
      (Bellemare et al. 2017, the LHCb RICH GAN of Maevskiy et al. 2019): the critic
      ``h(x, c)`` maps to R^k (``critic_output_dim``); with two independent generated samples
      ``x_g, x_g'`` at the same conditions the generator minimises the energy distance in
      critic space ``E||h(x_r) - h(x_g)|| + E||h(x_r) - h(x_g')|| - E||h(x_g) - h(x_g')||``
      and the critic maximises the surrogate ``f(x_r) - f(x_g)`` with
      ``f(x) = ||h(x) - h(x_g')|| - ||h(x)||``, less the same gradient penalty on ``f``.
      Default ``"cramer"``, because it trains far faster here: on the conditional Gaussian toy
      of the tests (D = 2, C = 2, mean and widths depending on c, 20k events, one CPU thread)
      it reaches a worst KS of 0.03 against the true p(x | c) at held-out conditions after 8
      epochs (~8 s), whereas WGAN-GP with the recipe of Gulrajani et al. (lambda 10, 5 critic
      steps, Adam (0, 0.9)) has only the marginals right after 15 epochs, and after 100
      epochs, oscillating on the way, is at 0.14 to 0.24 (the trajectory is chaotic).  Reasons: one critic step per generator step instead
      of five, and the energy distance's unbiased sample gradients (Bellemare et al.), which
      suit small batches.  ``docs/gans.md`` compares all the losses on the jets task.
    * **Conditional gradient penalty** (any loss with ``gp_lambda > 0``).  The interpolate
      ``x_hat = e x_r + (1 - e) x_g`` (``e ~ U(0, 1)`` per event) keeps the row's conditions
      ``c``, and the gradient is taken with respect to ``x`` only: the critic must be
      1-Lipschitz in ``x`` for every ``c``; it may depend on ``c`` freely.  The norm is
      ``sqrt(|g|^2 + 1e-12)`` so that a zero gradient has a finite derivative.  The penalised
      function is ``D`` (single-output critics) or the Cramer surrogate ``f``.
    * **Penalty weight.**  ``gp_lambda`` defaults to 10 for Cramer and WGAN-GP (Gulrajani et
      al.) and to 0 for the others.  For the Cramer GAN of ``configs/toy_jets_gan.yaml`` it
      is 1: a detector response has narrow conditional distributions, whose differences a
      strongly Lipschitz-bounded critic barely registers; in 5-minute trials on the reference
      simulation the validation classifier AUC reached 0.60 with 1 against 0.66 with 10.
    * **Spectral normalisation** (``spectral_norm``): a property of the critic network
      (:class:`~hepgen.models.gan_nets.ConditionalGAN`); the power-iteration vectors advance
      on every critic evaluation in training mode and live in the state dict (checkpoints,
      resume and files carry them).
    * **Event weights** (negative sWeights allowed).  Every term of every loss is a per-event
      quantity: the generated samples of row ``i`` are drawn at ``c_i``, so the expectations
      over the joint (c, x) are weighted means over rows, ``sum_i w_i l_i / (n mean(w))`` with
      the training set's mean weight, exactly like the flow loss (:mod:`hepgen.training`).
      Weighting the generated terms too is what makes a negatively weighted contamination
      cancel in the conditions as well as in the targets.  The gradient penalty is a
      regulariser, not an expectation over the data: it is an unweighted mean (a negative
      weight would reward a steep critic).
    * **Updates.**  Each training batch makes one critic update (then the weight clipping of
      ``wgan-clip``); every ``n_critic``-th batch (the loop's batch counter, restored on
      resume) also makes one generator update on the same conditions, followed by the EMA
      update (:class:`ConditionalGAN`).  AdamW with ``adam_betas`` (e.g. (0, 0.9), Gulrajani
      et al.) or RMSProp (``optimizer: rmsprop``, the default of ``wgan-clip``: Arjovsky et
      al. found momentum destabilising with a clipped critic), with the loop's weight decay (0
      in :func:`default_gan_training`: plain Adam); the loop's learning-rate schedule,
      clipping of gradient norms and NaN guard apply to each optimizer separately.
    * **Validation loss**: the conditional energy score (:func:`energy_score`) of the sampler
      in model space with :data:`ENERGY_SCORE_DRAWS` draws per event: strictly proper, linear
      in the event (weighted means are exact), independent of the critic and of the loss, and
      (drawn from the same seed every epoch) comparable between epochs and between losses.
      The critic's own loss (the history's ``train_loss``) is not: the critic changes under
      it.

    References
    ----------
    I. Goodfellow et al., arXiv:1406.2661; M. Arjovsky et al., arXiv:1701.07875
    (Algorithm 1); I. Gulrajani et al., arXiv:1704.00028 (Algorithm 1); M. G. Bellemare et
    al., arXiv:1705.10743 (Algorithm 1); J. H. Lim, J. C. Ye, arXiv:1705.02894; T. Miyato et
    al., arXiv:1802.05957; A. Maevskiy et al. (LHCb), arXiv:1905.11825; T. Gneiting,
    A. E. Raftery, JASA 102 (2007) 359 (energy score).

    Examples
    --------
    >>> import numpy as np
    >>> from hepgen.training import TrainingSettings, train
    >>> s = GANSettings(loss="hinge", spectral_norm=True, hidden_features=8,
    ...                 critic_hidden_features=8, n_blocks=1, critic_blocks=1)
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
        """``{"critic": ..., "generator": ...}``: AdamW (``adam_betas``) or RMSProp."""
        gan = _as_gan(module)
        lr, decay = settings.learning_rate, settings.weight_decay

        def build(params: Any) -> torch.optim.Optimizer:
            if self.settings.optimizer == "rmsprop":
                return torch.optim.RMSprop(params, lr=lr, weight_decay=decay)
            return torch.optim.AdamW(
                params, lr=lr, betas=self.settings.adam_betas, weight_decay=decay
            )

        return {
            "critic": build(gan.critic.parameters()),
            "generator": build(gan.generator.parameters()),
        }

    def describe(self) -> dict[str, Any]:
        """The GAN settings that shape the trajectory (checked on resume): loss, n_critic,
        gp_lambda, ema, the optimizer (``adam_betas`` for Adam, ``optimizer: "rmsprop"``
        otherwise), ``clip_value`` (``wgan-clip``) and ``spectral_norm`` (when set).  The
        last three are left out where they do not apply, so that checkpoints written before
        they existed still resume."""
        s = self.settings
        out: dict[str, Any] = {
            "loss": s.loss,
            "n_critic": s.n_critic,
            "gp_lambda": s.gp_lambda,
            "ema": s.ema,
        }
        if s.optimizer == "adam":
            out["adam_betas"] = list(s.adam_betas)
        else:
            out["optimizer"] = s.optimizer
        if s.loss == "wgan-clip":
            out["clip_value"] = s.clip_value
        if s.spectral_norm:
            out["spectral_norm"] = True
        return out

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
        loss = self.settings.loss
        cramer = loss == "cramer"
        with torch.no_grad():
            fake = gan.generate(gan.latent(n), c)
            fake2 = gan.generate(gan.latent(n), c) if cramer else None
        eps = torch.rand((n, 1), device=x.device, dtype=x.dtype)
        score: Callable[[Tensor, Tensor], Tensor]
        if cramer:
            assert fake2 is not None
            per_event, f = cramer_critic(
                lambda xx: gan.critic_output(xx, c), x, fake, gan.critic_output(fake2, c)
            )

            def score(xx: Tensor, cc: Tensor) -> Tensor:
                return f(xx)

        else:

            def score(xx: Tensor, cc: Tensor) -> Tensor:
                return gan.critic_output(xx, cc)[:, 0]

            per_event = critic_losses(loss, score(x, c), score(fake, c))
        adversarial = context.weighted_mean(per_event, weights)
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
            per_event = cramer_generator(*(gan.critic_output(t, c) for t in (x, fake, fake2)))
        else:
            per_event = generator_losses(self.settings.loss, gan.critic_output(fake, c)[:, 0])
        return context.weighted_mean(per_event, weights)

    # -- the protocol ----------------------------------------------------------------------------

    def step(
        self,
        module: torch.nn.Module,
        batch: dict[str, Tensor],
        weights: Tensor | None,
        context: StepContext,
    ) -> float | None:
        """One critic update (then the weight clipping of ``wgan-clip``), plus a generator
        update every ``n_critic``-th batch."""
        gan = _as_gan(module)
        x, c = batch["x"], batch["c"]
        loss = self.critic_loss(gan, x, c, weights, context)
        if not context.update("critic", loss):
            return None
        if self.settings.loss == "wgan-clip":
            clip_parameters(gan.critic.parameters(), self.settings.clip_value)
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


def default_gan_training(
    settings: GANSettings | None = None, seed: int = 0, device: str = "auto", **overrides: Any
) -> TrainingSettings:
    """The :class:`~hepgen.training.TrainingSettings` a :class:`GANModel` trains with when
    none are given; ``overrides`` replace any field.

    Batch 256 with a cosine decay from the loss's learning rate
    (:data:`~hepgen.settings.models.DEFAULT_GAN_LEARNING_RATES`: 1e-3 for Cramer; 3e-4 for
    WGAN-GP, which oscillated at 1e-3 on the toys of the tests, where Gulrajani et al. use
    1e-4 with batch 64; the papers' 5e-5 for the clipped WGAN and 2e-4 for minimax,
    non-saturating and hinge), no weight decay (Adam, as in the papers), gradient norms
    clipped at 10 per network (a guard, not a regulariser), and patience 20 epochs of the
    validation energy score (which moves slowly once converged).

    Examples
    --------
    >>> default_gan_training(GANSettings(loss="wgan-gp"), max_epochs=5).learning_rate
    0.0003
    >>> default_gan_training(GANSettings(loss="wgan-clip")).learning_rate
    5e-05
    """
    loss = "cramer" if settings is None else settings.loss
    values = {
        "learning_rate": DEFAULT_GAN_LEARNING_RATES[loss],
        "batch_size": 256,
        "grad_clip": 10.0,
        "patience": 20,
        "weight_decay": 0.0,
        "seed": seed,
        "device": device,
        **overrides,
    }
    return TrainingSettings(**values)
