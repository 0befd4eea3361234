"""Settings of the models: the flow and GAN generators and the efficiency classifier.

These are the ``model.flow``, ``model.gan`` and ``model.efficiency`` sections of a
configuration and the arguments of :class:`hepgen.models.flow.ConditionalFlow`,
:class:`hepgen.models.gan.ConditionalGAN` and :class:`hepgen.models.efficiency.EfficiencyModel`:
one typed declaration each, checked when a file is read (no torch needed).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from hepgen.settings.base import Device, Float, Settings

__all__ = [
    "DEFAULT_N_CRITIC",
    "GENERATOR_SETTINGS",
    "EfficiencySettings",
    "FlowSettings",
    "GANSettings",
]

#: Critic updates per generator update when ``n_critic`` is left out, by GAN loss.
DEFAULT_N_CRITIC = {"wgan-gp": 5, "cramer": 1}


class FlowSettings(Settings):
    """Architecture of a conditional rational-quadratic spline flow.

    Parameters
    ----------
    kind : {"coupling", "autoregressive"}
        RQ spline coupling flow (one pass to sample) or masked autoregressive RQ spline flow
        (D passes to sample).
    n_transforms : int
        Number of spline transforms (>= 1).
    hidden_features : int
        Width of the conditioner networks (and of the embedding net's hidden layer).
    n_blocks : int
        Residual blocks per conditioner (>= 1).
    n_bins : int
        Spline bins per dimension (1 to 999).
    tail_bound : float
        The splines act on [-tail_bound, tail_bound] (model-space units, i.e. standard
        deviations of the standardised data); outside it each transform is the identity.
    mixing : {"lu", "permutation", "none"}
        Layer between two spline transforms: a learned LU-decomposed linear map, a fixed
        random permutation, or nothing.
    embedding_features : int
        Output width of the context embedding MLP; 0 gives the raw context to every
        conditioner.
    dropout : float
        Dropout probability inside the conditioners, in [0, 1).

    Raises
    ------
    ConfigError
        A value of the wrong type or out of range (the message names the setting).

    References
    ----------
    C. Durkan et al., "Neural Spline Flows", NeurIPS 2019, arXiv:1906.04032.

    Examples
    --------
    >>> s = FlowSettings(kind="autoregressive", n_bins=8)
    >>> FlowSettings.from_dict(s.to_dict()) == s
    True
    >>> FlowSettings(n_bins=0)
    Traceback (most recent call last):
    ...
    hepgen.errors.ConfigError: flow setting 'n_bins': Input should be greater than or equal to 1, got 0
    """

    family: ClassVar[str] = "flow"

    kind: Literal["coupling", "autoregressive"] = "coupling"
    n_transforms: int = Field(6, ge=1)
    hidden_features: int = Field(128, ge=1)
    n_blocks: int = Field(2, ge=1)
    n_bins: int = Field(16, ge=1, le=999)
    tail_bound: Float = Field(4.0, gt=0, allow_inf_nan=False)
    mixing: Literal["lu", "permutation", "none"] = "lu"
    embedding_features: int = Field(0, ge=0)
    dropout: Float = Field(0.0, ge=0, lt=1)


class GANSettings(Settings):
    """Architecture and adversarial recipe of a conditional GAN.

    Parameters
    ----------
    loss : {"cramer", "wgan-gp"}
        Cramer (energy-distance) GAN or Wasserstein GAN with gradient penalty.
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
        Critic updates per generator update; left out: 5 for WGAN-GP, 1 for Cramer
        (:data:`DEFAULT_N_CRITIC`).
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
        the conditions for the per-feature location a and log-scale s, instead of
        ``MLP(z, c)``: a detector response is mostly noise whose width depends on the
        conditions, a product that a ReLU network of ``(z, c)`` only approximates piecewise.

    Raises
    ------
    ConfigError
        A value of the wrong type or out of range (the message names the setting).

    References
    ----------
    I. Gulrajani et al., "Improved training of Wasserstein GANs", arXiv:1704.00028;
    M. G. Bellemare et al., "The Cramer distance as a solution to biased Wasserstein
    gradients", arXiv:1705.10743.

    Examples
    --------
    >>> s = GANSettings(loss="wgan-gp", latent_dim=8)
    >>> s.n_critic, s.adam_betas
    (5, (0.0, 0.9))
    >>> GANSettings.from_dict(s.to_dict()) == s
    True
    """

    family: ClassVar[str] = "gan"

    loss: Literal["cramer", "wgan-gp"] = "cramer"
    latent_dim: int = Field(16, ge=1)
    hidden_features: int = Field(128, ge=1)
    n_blocks: int = Field(2, ge=0)
    critic_hidden_features: int = Field(128, ge=1)
    critic_blocks: int = Field(2, ge=0)
    critic_output_dim: int = Field(32, ge=1)
    n_critic: int | None = Field(None, ge=1)
    gp_lambda: Float = Field(10.0, ge=0, allow_inf_nan=False)
    adam_betas: tuple[Float, Float] = (0.0, 0.9)
    ema: Float | None = Field(0.999, gt=0, lt=1)
    dropout: Float = Field(0.0, ge=0, lt=1)
    layer_norm: bool = False
    conditional_scale: bool = True

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        """``n_critic`` left out (or null) takes the loss's default; ``adam_betas`` given as a
        list (YAML, JSON) is a pair."""
        if isinstance(data, dict):
            data = dict(data)
            if data.get("n_critic") is None:
                data["n_critic"] = DEFAULT_N_CRITIC.get(data.get("loss", "cramer"), 1)
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
        """Outputs of the critic network: ``critic_output_dim`` (Cramer) or 1 (WGAN-GP)."""
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
GENERATOR_SETTINGS: dict[str, type[Settings]] = {"flow": FlowSettings, "gan": GANSettings}
