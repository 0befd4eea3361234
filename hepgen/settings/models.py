"""Settings of the models: the flow and GAN generators and the efficiency classifier (the
VAE's are :mod:`hepgen.settings.vae`).

These are the ``model.flow``, ``model.gan`` and ``model.efficiency`` sections of a
configuration and the arguments of :class:`hepgen.models.flow.ConditionalFlow`,
:class:`hepgen.models.gan.ConditionalGAN` and :class:`hepgen.models.efficiency.EfficiencyModel`:
one typed declaration each, checked when a file is read (no torch needed).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, get_args

from pydantic import Field, field_validator, model_validator

from hepgen.settings.base import Device, Float, Settings
from hepgen.settings.vae import VAESettings

__all__ = [
    "COUPLING_KINDS",
    "DEFAULT_ADAM_BETAS",
    "DEFAULT_GAN_LEARNING_RATES",
    "DEFAULT_GAN_OPTIMIZER",
    "DEFAULT_GP_LAMBDA",
    "DEFAULT_N_CRITIC",
    "FLOW_KINDS",
    "GAN_LOSSES",
    "GENERATOR_SETTINGS",
    "KIND_DEFAULTS",
    "KIND_LEARNING_RATES",
    "SAMPLERS",
    "SPLINE_KINDS",
    "EfficiencySettings",
    "FlowSettings",
    "GANSettings",
]

#: The adversarial losses of ``model.gan.loss`` (:mod:`hepgen.models.gan_losses`).
GANLoss = Literal["cramer", "wgan-gp", "wgan-clip", "minimax", "non-saturating", "hinge"]
GAN_LOSSES: tuple[str, ...] = get_args(GANLoss)
#: Critic updates per generator update when ``n_critic`` is left out, by GAN loss: 5 for the
#: Wasserstein critics (Arjovsky et al. 2017; Gulrajani et al. 2017) and for the hinge loss
#: with spectral normalisation (Miyato et al. 2018, their ResNet setting), 1 for the original
#: GAN (Goodfellow et al. 2014: k = 1) and for the Cramer GAN (its critic is not trained to
#: convergence: Bellemare et al. 2017).
DEFAULT_N_CRITIC = {
    "cramer": 1,
    "wgan-gp": 5,
    "wgan-clip": 5,
    "minimax": 1,
    "non-saturating": 1,
    "hinge": 5,
}
#: Gradient-penalty weight when ``gp_lambda`` is left out, by loss: 10 for the penalised
#: Wasserstein and Cramer critics (Gulrajani et al.), none where the paper has none (weight
#: clipping bounds the WGAN critic; the minimax and hinge critics are unconstrained, or
#: spectrally normalised).
DEFAULT_GP_LAMBDA = {
    "cramer": 10.0,
    "wgan-gp": 10.0,
    "wgan-clip": 0.0,
    "minimax": 0.0,
    "non-saturating": 0.0,
    "hinge": 0.0,
}
#: Optimizer of both networks when ``optimizer`` is left out, by loss: RMSProp for the
#: weight-clipped WGAN (Arjovsky et al.: momentum made its training unstable), Adam otherwise.
DEFAULT_GAN_OPTIMIZER = {loss: "rmsprop" if loss == "wgan-clip" else "adam" for loss in GAN_LOSSES}
#: Adam's betas when ``adam_betas`` is left out, by loss: (0, 0.9) of Gulrajani et al. and
#: Miyato et al. (hinge), (0.5, 0.999) of the DCGAN recipe for the original GAN (Radford et
#: al. 2016, arXiv:1511.06434); unused with RMSProp.
DEFAULT_ADAM_BETAS = {
    "cramer": (0.0, 0.9),
    "wgan-gp": (0.0, 0.9),
    "wgan-clip": (0.0, 0.9),
    "minimax": (0.5, 0.999),
    "non-saturating": (0.5, 0.999),
    "hinge": (0.0, 0.9),
}
#: Learning rate of ``training.learning_rate: null`` (and of
#: :func:`hepgen.models.gan_objective.default_gan_training`), by loss: WGAN with clipping
#: 5e-5 (Arjovsky et al.), the DCGAN and SN-GAN value 2e-4 for minimax, non-saturating and
#: hinge (Radford et al.; Miyato et al.), 3e-4 for WGAN-GP and 1e-3 for Cramer (measured on
#: the toys of the tests: see :func:`~hepgen.models.gan_objective.default_gan_training`).
DEFAULT_GAN_LEARNING_RATES = {
    "cramer": 1e-3,
    "wgan-gp": 3e-4,
    "wgan-clip": 5e-5,
    "minimax": 2e-4,
    "non-saturating": 2e-4,
    "hinge": 2e-4,
}


#: The flow families of ``model.flow.kind``: the RQ-spline kinds (nflows layers, with a static
#: inference graph, bfloat16 and ONNX export), the affine and additive families of the
#: literature, residual flows and conditional flow matching (:mod:`hepgen.models.flows`).
FlowKind = Literal[
    "coupling",
    "autoregressive",
    "nice",
    "realnvp",
    "glow",
    "maf",
    "iaf",
    "residual",
    "flow-matching",
]
FLOW_KINDS: tuple[str, ...] = get_args(FlowKind)
#: The spline kinds: :class:`hepgen.models.flow.ConditionalFlow`.
SPLINE_KINDS = ("coupling", "autoregressive")
#: The kinds built of coupling layers: the ones a multi-scale architecture (``levels``) applies to.
COUPLING_KINDS = ("coupling", "nice", "realnvp", "glow")
#: Samplers of flow matching: fixed-step Euler, midpoint and RK4, adaptive Dormand-Prince 5(4).
Sampler = Literal["euler", "midpoint", "rk4", "dopri5"]
SAMPLERS: tuple[str, ...] = get_args(Sampler)

#: Defaults that differ by kind, applied where a setting is left out (so the card and the
#: model file always hold the values used).  Flow matching evaluates one velocity field
#: 2 x n_steps times per draw (midpoint): 128 x 2 keeps the midpoint sampler with 4 steps
#: above 40k rows/s per core, and 256 x 3 was no better on the jets task (10k rows/s).
KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "flow-matching": {"hidden_features": 128, "n_blocks": 2},
    "residual": {
        "n_transforms": 8,
        "hidden_features": 128,
        "n_blocks": 1,
        "inverse_tolerance": 1e-7,  # to float32 resolution (the stall rule ends it there)
    },
}


#: Learning rates of ``training.learning_rate: null`` that differ from 1e-3, by kind: flow
#: matching regresses a velocity field and reached a held-out AUC of 0.532 at 1e-3, 0.519 at
#: 3e-3 and 0.512 at 1e-2 on the jets task (60 epochs, midpoint sampler with 4 steps).
KIND_LEARNING_RATES: dict[str, float] = {"flow-matching": 1e-2}


class FlowSettings(Settings):
    """Architecture of a conditional normalizing flow (every family of ``model.flow.kind``).

    Parameters
    ----------
    kind : str
        The family (:data:`FLOW_KINDS`; :mod:`hepgen.models.flows` compares their costs):
        ``"coupling"`` (RQ-spline coupling, the default) and ``"autoregressive"`` (masked
        autoregressive RQ spline); ``"nice"`` (additive coupling), ``"realnvp"`` (affine
        coupling), ``"glow"`` (ActNorm, LU linear, affine coupling), ``"maf"`` / ``"iaf"``
        (masked / inverse autoregressive affine), ``"residual"`` (invertible residual blocks)
        and ``"flow-matching"`` (a continuous flow: a velocity field trained by conditional
        optimal-transport flow matching, sampled by an ODE solver).
    n_transforms : int
        Number of transforms, i.e. coupling, autoregressive or residual steps (>= 1; not used
        by flow matching).
    hidden_features : int
        Width of the conditioner networks (of the velocity field for flow matching; of the
        embedding net's hidden layer).  Default 128.
    n_blocks : int
        Residual blocks per conditioner (>= 1).  Default 2 (1 for residual flows: hidden
        layers per residual branch).
    n_bins : int
        Spline bins per dimension (1 to 999; spline kinds).
    tail_bound : float
        The splines act on [-tail_bound, tail_bound] (model-space units, i.e. standard
        deviations of the standardised data); outside it each transform is the identity.  The
        conditioners of every discrete-step family see their inputs clamped to this interval.
    mixing : {"lu", "permutation", "none"}
        Layer between two spline, additive or affine transforms: a learned LU-decomposed
        linear map, a fixed random permutation, or nothing (Glow always uses ActNorm and an LU
        map, its invertible 1x1 convolution).
    embedding_features : int
        Output width of the context embedding MLP; 0 gives the raw context to every
        conditioner.
    dropout : float
        Dropout probability inside the conditioners, in [0, 1).
    levels : int
        Multi-scale architecture of the coupling kinds (``coupling``, ``nice``, ``realnvp``,
        ``glow``): the transforms are spread over ``levels`` levels and half of the remaining
        dimensions leave to the base distribution after each level but the last (RealNVP's
        factor-out).  1 (default) is a single scale; each level needs >= 2 dimensions.
    lipschitz : float
        Residual flows: the Lipschitz bound of each residual branch, in (0, 1), enforced by
        spectral normalisation.
    inverse_tolerance : float
        Residual flows: the fixed-point inverse stops when no coordinate moves by more than
        this times max(1, |x|) (default 1e-7 for the residual kind: float32's resolution;
        a row whose steps stop shrinking within 16x of it has reached that resolution).
    inverse_max_iterations : int
        Residual flows: iteration cap of the fixed-point inverse; not converging by then is an
        error.
    sampler : {"euler", "midpoint", "rk4", "dopri5"}
        Flow matching: the ODE solver of sampling (fixed-step Euler, midpoint or RK4, or the
        adaptive Dormand-Prince 5(4)).
    n_steps : int
        Flow matching: steps of a fixed-step sampler (1 to 1000).
    ode_tolerance : float
        Flow matching: absolute and relative tolerance of the adaptive solver (sampling with
        ``"dopri5"``, and every ``log_prob``).

    Raises
    ------
    ConfigError
        A value of the wrong type or out of range, or ``levels`` > 1 with a kind that is not
        a coupling flow (the message names the setting).

    References
    ----------
    C. Durkan et al., "Neural Spline Flows", NeurIPS 2019, arXiv:1906.04032; the other
    families' papers are cited by their classes in :mod:`hepgen.models.flows`.

    Examples
    --------
    >>> s = FlowSettings(kind="autoregressive", n_bins=8)
    >>> FlowSettings.from_dict(s.to_dict()) == s
    True
    >>> FlowSettings(kind="residual").n_transforms
    8
    >>> FlowSettings(n_bins=0)
    Traceback (most recent call last):
    ...
    hepgen.errors.ConfigError: flow setting 'n_bins': Input should be greater than or equal to 1, got 0
    """

    family: ClassVar[str] = "flow"

    kind: FlowKind = "coupling"
    n_transforms: int = Field(6, ge=1)
    hidden_features: int = Field(128, ge=1)
    n_blocks: int = Field(2, ge=1)
    n_bins: int = Field(16, ge=1, le=999)
    tail_bound: Float = Field(4.0, gt=0, allow_inf_nan=False)
    mixing: Literal["lu", "permutation", "none"] = "lu"
    embedding_features: int = Field(0, ge=0)
    dropout: Float = Field(0.0, ge=0, lt=1)
    levels: int = Field(1, ge=1, le=8)
    lipschitz: Float = Field(0.9, gt=0, lt=1)
    inverse_tolerance: Float = Field(1e-6, gt=0, allow_inf_nan=False)
    inverse_max_iterations: int = Field(200, ge=1)
    sampler: Sampler = "midpoint"
    n_steps: int = Field(4, ge=1, le=1000)
    ode_tolerance: Float = Field(1e-5, gt=0, lt=1)

    @model_validator(mode="before")
    @classmethod
    def _kind_defaults(cls, data: Any) -> Any:
        """Fill the settings left out with the kind's defaults (:data:`KIND_DEFAULTS`)."""
        kind = data.get("kind") if isinstance(data, dict) else None
        if isinstance(kind, str) and kind in KIND_DEFAULTS:
            return {**KIND_DEFAULTS[kind], **data}
        return data

    @model_validator(mode="after")
    def _levels_for_coupling(self) -> FlowSettings:
        if self.levels > 1 and self.kind not in COUPLING_KINDS:
            raise ValueError(
                f"levels > 1 (multi-scale) applies to the coupling kinds {COUPLING_KINDS}, "
                f"not to kind {self.kind!r}"
            )
        return self


class GANSettings(Settings):
    """Architecture and adversarial recipe of a conditional GAN.

    Parameters
    ----------
    loss : {"cramer", "wgan-gp", "wgan-clip", "minimax", "non-saturating", "hinge"}
        The adversarial loss (:mod:`hepgen.models.gan_losses`): the Cramer (energy-distance)
        GAN, the Wasserstein GAN with gradient penalty or with weight clipping, the original
        GAN's minimax loss and its non-saturating generator loss, or the hinge loss.
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
        Size k of the Cramer critic's output h(x, c) in R^k; the other critics output 1
        number (a logit for minimax and non-saturating).
    n_critic : int or None
        Critic updates per generator update; left out: the loss's default
        (:data:`DEFAULT_N_CRITIC`).
    gp_lambda : float or None
        Weight of the gradient penalty (>= 0; 0: none); left out: the loss's default
        (:data:`DEFAULT_GP_LAMBDA`: 10 for Cramer and WGAN-GP, 0 for the others).
    optimizer : {"adam", "rmsprop"} or None
        Optimizer of both networks; left out: RMSProp for ``wgan-clip``, Adam otherwise
        (:data:`DEFAULT_GAN_OPTIMIZER`).
    adam_betas : tuple of two floats or None
        Adam's (beta1, beta2) for both networks, each in [0, 1); left out: the loss's default
        (:data:`DEFAULT_ADAM_BETAS`).  Unused with RMSProp.
    clip_value : float
        ``wgan-clip``: every critic parameter is clipped to [-c, c] after each critic update
        (default 0.01, Arjovsky et al.); unused by the other losses.
    spectral_norm : bool
        Spectral normalisation of every linear layer of the critic (Miyato et al. 2018): each
        weight is divided by its largest singular value, estimated by one power iteration per
        forward pass.  Usable with every loss.
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
        the conditions for the per-feature location a and log-scale s, instead of
        ``MLP(z, c)``: a detector response is mostly noise whose width depends on the
        conditions, a product that a ReLU network of ``(z, c)`` only approximates piecewise.

    Raises
    ------
    ConfigError
        A value of the wrong type or out of range (the message names the setting).

    References
    ----------
    I. Goodfellow et al., "Generative adversarial nets", NeurIPS 2014, arXiv:1406.2661;
    M. Arjovsky, S. Chintala, L. Bottou, "Wasserstein GAN", arXiv:1701.07875;
    I. Gulrajani et al., "Improved training of Wasserstein GANs", arXiv:1704.00028;
    M. G. Bellemare et al., "The Cramer distance as a solution to biased Wasserstein
    gradients", arXiv:1705.10743; J. H. Lim, J. C. Ye, "Geometric GAN", arXiv:1705.02894;
    T. Miyato et al., "Spectral normalization for generative adversarial networks",
    ICLR 2018, arXiv:1802.05957.

    Examples
    --------
    >>> s = GANSettings(loss="wgan-gp", latent_dim=8)
    >>> s.n_critic, s.gp_lambda, s.optimizer, s.adam_betas
    (5, 10.0, 'adam', (0.0, 0.9))
    >>> GANSettings.from_dict(s.to_dict()) == s
    True
    >>> c = GANSettings(loss="wgan-clip")
    >>> c.n_critic, c.gp_lambda, c.optimizer, c.clip_value
    (5, 0.0, 'rmsprop', 0.01)
    >>> GANSettings(loss="hinge", spectral_norm=True, n_critic=1).n_critic
    1
    """

    family: ClassVar[str] = "gan"

    loss: GANLoss = "cramer"
    latent_dim: int = Field(16, ge=1)
    hidden_features: int = Field(128, ge=1)
    n_blocks: int = Field(2, ge=0)
    critic_hidden_features: int = Field(128, ge=1)
    critic_blocks: int = Field(2, ge=0)
    critic_output_dim: int = Field(32, ge=1)
    n_critic: int | None = Field(None, ge=1)
    gp_lambda: Float = Field(10.0, ge=0, allow_inf_nan=False)
    optimizer: Literal["adam", "rmsprop"] = "adam"
    adam_betas: tuple[Float, Float] = (0.0, 0.9)
    clip_value: Float = Field(0.01, gt=0, allow_inf_nan=False)
    spectral_norm: bool = False
    ema: Float | None = Field(0.999, gt=0, lt=1)
    dropout: Float = Field(0.0, ge=0, lt=1)
    layer_norm: bool = False
    conditional_scale: bool = True

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        """``n_critic``, ``gp_lambda``, ``optimizer`` and ``adam_betas`` left out (or null)
        take the loss's defaults; ``adam_betas`` given as a list (YAML, JSON) is a pair."""
        if isinstance(data, dict):
            data = dict(data)
            loss = data.get("loss", "cramer")
            tables = {
                "n_critic": DEFAULT_N_CRITIC,
                "gp_lambda": DEFAULT_GP_LAMBDA,
                "optimizer": DEFAULT_GAN_OPTIMIZER,
                "adam_betas": DEFAULT_ADAM_BETAS,
            }
            for key, table in tables.items():
                if data.get(key) is None and isinstance(loss, str) and loss in table:
                    data[key] = table[loss]
            if isinstance(data.get("adam_betas"), list):
                data["adam_betas"] = tuple(data["adam_betas"])
        return data

    @field_validator("adam_betas")
    @classmethod
    def _betas(cls, value: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in value):
            raise ValueError("must lie in [0, 1)")
        return value

    @property
    def critic_outputs(self) -> int:
        """Outputs of the critic network: ``critic_output_dim`` (Cramer) or 1 (the others)."""
        return self.critic_output_dim if self.loss == "cramer" else 1


class EfficiencySettings(Settings):
    """``model.efficiency``: the gradient-boosted classifier of P(reconstructed | gen).

    Parameters
    ----------
    n_estimators : int
        Most boosting rounds.
    learning_rate : float
        Shrinkage, in (0, 1].
    max_depth : int
        Depth of each tree.
    min_child_weight : float
        Smallest sum of hessians in a leaf.
    early_stopping_rounds : int
        Rounds without a better validation log-loss before boosting stops.
    validation_fraction : float
        Share of the objects held out for early stopping and calibration, in (0, 0.5].
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (:mod:`hepgen.devices`).
    n_jobs : int or None
        CPU threads of xgboost (``None``: all).
    seed : int
        Seed of the split and of xgboost.

    References
    ----------
    T. Chen and C. Guestrin, "XGBoost: a scalable tree boosting system", KDD 2016,
    arXiv:1603.02754.

    Examples
    --------
    >>> EfficiencySettings(max_depth=4).max_depth
    4
    """

    family: ClassVar[str] = "efficiency"

    n_estimators: int = Field(2000, ge=1, description="Most boosting rounds")
    learning_rate: Float = Field(0.05, gt=0.0, le=1.0, allow_inf_nan=False)
    max_depth: int = Field(6, ge=1)
    min_child_weight: Float = Field(1.0, ge=0.0, allow_inf_nan=False)
    early_stopping_rounds: int = Field(50, ge=1)
    validation_fraction: Float = Field(0.2, gt=0.0, le=0.5, allow_inf_nan=False)
    device: Device = "auto"
    n_jobs: int | None = Field(None, ge=1)
    seed: int = Field(0, ge=0, lt=2**63)


#: The settings class of each generator kind (``model.kind``).
GENERATOR_SETTINGS: dict[str, type[Settings]] = {
    "flow": FlowSettings,
    "gan": GANSettings,
    "vae": VAESettings,
}
