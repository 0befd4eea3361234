"""Flows made of nflows transforms: :class:`TransformFlow`, the base of the discrete families.

The RQ-spline flows (:class:`hepgen.models.flow.ConditionalFlow`), NICE, RealNVP, Glow, MAF
and IAF are all a chain of invertible ``nflows`` transforms between the targets and a standard
normal: they differ in the steps of the chain.  :class:`TransformFlow` builds the chain from
a family's :meth:`TransformFlow._step` (the transforms of step i on a given number of
features) and :meth:`TransformFlow._closing` (transforms after the last step), wraps it in an
``nflows.flows.Flow`` with an optional context embedding, and, for the coupling kinds with
``levels > 1``, in RealNVP's multi-scale architecture: the steps are spread over the levels,
and after each level but the last half of the remaining dimensions leave for the base
distribution (``nflows.transforms.MultiscaleCompositeTransform``); later levels work on
fewer dimensions, so a deep flow costs less where the data need less.

The layers shared by several families are here too: :class:`ConditionalScaling` (NICE's
rescaling, conditional), :class:`SoftClampedAffineCoupling` (RealNVP's and Glow's step),
:class:`SafeActNorm` (Glow's activation normalisation) and
:class:`ClampedAffineAutoregressive` (MAF's step), each a thin layer on nflows.

References
----------
L. Dinh, J. Sohl-Dickstein, S. Bengio, "Density estimation using Real NVP", ICLR 2017,
arXiv:1605.08803 (multi-scale architecture).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from nflows.distributions.normal import StandardNormal
from nflows.flows.base import Flow
from nflows.transforms import (
    AffineCouplingTransform,
    CompositeTransform,
    MaskedAffineAutoregressiveTransform,
    MultiscaleCompositeTransform,
    RandomPermutation,
)
from nflows.transforms.base import Transform
from nflows.transforms.normalization import ActNorm
from torch import Tensor, nn

from hepgen.models.flows.base import FlowModule, check_rows
from hepgen.models.spline import ClampedResidualNet, LinalgLULinear
from hepgen.settings.models import FlowSettings

__all__ = [
    "MAX_LOG_SCALE",
    "ClampedAffineAutoregressive",
    "ConditionalScaling",
    "SafeActNorm",
    "SoftClampedAffineCoupling",
    "TransformFlow",
    "alternating_mask",
    "coupling_net",
    "mixing_layers",
]


class TransformFlow(FlowModule):
    """A conditional flow made of nflows transforms (see the module docstring).

    Subclasses implement :meth:`_step` and may override :meth:`_closing` and
    :meth:`_initialise`; everything else (the chain, the multi-scale levels, the embedding,
    the base distribution, both directions) is here.  The module keeps the nflows ``Flow`` as
    ``self.flow``, so its state dict has the keys of the nflows layers.
    """

    def __init__(
        self, n_features: int, n_conditions: int, settings: FlowSettings, seed: int = 0
    ) -> None:
        super().__init__(n_features, n_conditions, settings, seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.flow = self._build()
        self.float()

    # -- what a family implements ---------------------------------------------------------------

    def _step(self, index: int, n_features: int, context: int) -> list[Transform]:
        """The transforms of step ``index`` acting on ``n_features`` columns, with a context
        of width ``context``."""
        raise NotImplementedError

    def _closing(self, n_features: int, context: int) -> list[Transform]:
        """Transforms after the last step of a level on ``n_features`` columns, with a
        context of width ``context`` (default: a last LU map with ``mixing="lu"``, so that
        every output is a learned mix)."""
        return (
            [LinalgLULinear(n_features, identity_init=True)] if self.settings.mixing == "lu" else []
        )

    def _initialise(self, transform: Transform) -> None:
        """Initialise one transform of the chain after it is built (default: nothing)."""

    # -- the chain --------------------------------------------------------------------------------

    def _build(self) -> Flow:
        s, d = self.settings, self.n_features
        context = s.embedding_features or self.n_conditions
        widths = level_widths(d, s.levels)
        per_level = _spread(s.n_transforms, len(widths))
        chains: list[Transform] = []
        index = 0
        for width, n_steps in zip(widths, per_level, strict=True):
            steps: list[Transform] = []
            for _ in range(n_steps):
                steps.extend(self._step(index, width, context))
                index += 1
            steps.extend(self._closing(width, context))
            for t in steps:
                self._initialise(t)
            chains.append(CompositeTransform(steps))
        if len(chains) == 1:
            transform: Transform = chains[0]
        else:
            transform = MultiscaleCompositeTransform(len(chains))
            for chain, width in zip(chains, widths, strict=True):
                transform.add_transform(chain, (width,))
        embedding = None
        if s.embedding_features:
            embedding = nn.Sequential(
                nn.Linear(self.n_conditions, s.hidden_features),
                nn.ReLU(),
                nn.Linear(s.hidden_features, s.embedding_features),
            )
        return Flow(transform, StandardNormal([d]), embedding)

    def log_prob(self, x: Tensor, c: Tensor) -> Tensor:
        """:meth:`FlowModule.log_prob <hepgen.models.flows.base.FlowModule.log_prob>`,
        evaluated by nflows' ``Flow.log_prob`` (the numbers of earlier hepgen versions)."""
        x = self._as_input(x, self.n_features, "x")
        c = self._as_input(c, self.n_conditions, "c")
        check_rows(x, c)
        if x.shape[0] == 0:
            return x.new_zeros(0)
        return self.flow.log_prob(x, context=c)

    forward = log_prob

    def _to_latent(self, x: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        return self.flow._transform(x, context=self.flow._embedding_net(c))

    def _from_latent(self, z: Tensor, c: Tensor) -> Tensor:
        x, _ = self.flow._transform.inverse(z, context=self.flow._embedding_net(c))
        return x


def level_widths(n_features: int, levels: int) -> list[int]:
    """Columns each level of a multi-scale flow acts on: all, then half of the remaining
    after each level (``nflows.transforms.MultiscaleCompositeTransform`` keeps the second,
    smaller half).  ``ValueError`` when a level would have fewer than 2 columns."""
    widths = [n_features]
    for _ in range(levels - 1):
        widths.append(widths[-1] // 2)
    if levels > 1 and widths[-1] < 2:
        raise ValueError(
            f"levels={levels} needs at least {2 ** (levels - 1) * 2} targets for 2 columns "
            f"in the last level, got {n_features}"
        )
    return widths


def _spread(n: int, parts: int) -> list[int]:
    """``n`` steps over ``parts`` levels, at least one each, the first levels first."""
    n = max(n, parts)
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


# --------------------------------------------------------------------------------------------
# shared pieces
# --------------------------------------------------------------------------------------------


def alternating_mask(n_features: int, odd: bool) -> Tensor:
    """Coupling mask: 1 marks the transformed features, alternating between steps; with one
    feature it is always transformed (the step then depends on the context only)."""
    if n_features == 1:
        return torch.ones(1, dtype=torch.int64)
    mask = torch.zeros(n_features, dtype=torch.int64)
    mask[int(odd) :: 2] = 1
    return mask


def mixing_layers(n_features: int, mixing: str) -> list[Transform]:
    """The layers between two steps: a random permutation then an identity-initialised LU
    map (``"lu"``), the permutation alone, or nothing."""
    if mixing == "lu":
        return [RandomPermutation(n_features), LinalgLULinear(n_features, identity_init=True)]
    if mixing == "permutation":
        return [RandomPermutation(n_features)]
    return []


def coupling_net(settings: FlowSettings, context: int) -> Callable[[int, int], nn.Module]:
    """The ``transform_net_create_fn`` of an nflows coupling transform: a residual MLP of the
    untouched half and the context, inputs clamped to the tail bound
    (:class:`~hepgen.models.spline.ClampedResidualNet`)."""

    def create(n_in: int, n_out: int) -> nn.Module:
        return ClampedResidualNet(
            n_in,
            n_out,
            hidden_features=settings.hidden_features,
            context_features=context,
            num_blocks=settings.n_blocks,
            dropout_probability=settings.dropout,
            bound=settings.tail_bound,
        )

    return create


def zero_last_layer(layer: nn.Linear) -> None:
    """Zero a conditioner's last layer, so that a new step starts as a fixed map (the
    identity for additive steps), independent of its inputs."""
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.zero_()


#: Largest |log scale| of one affine coupling step: scales from e^-3 to e^3 (0.05 to 20).
MAX_LOG_SCALE = 3.0


class SoftClampedAffineCoupling(AffineCouplingTransform):
    """nflows' affine coupling step with the scale ``exp(3 tanh(u / 3))`` (RealNVP's
    exponential scale, soft-clamped to [e^-3, e^3]) instead of nflows' ``sigmoid(u + 2) +
    1e-3``.

    nflows' scale lies in (0.001, 1.001) in the density direction: a step can only contract,
    never stretch, a region of the targets, so a narrow peak (a detector response, a
    sentinel spike) can be widened to the Gaussian only by the linear mixing layers; the
    RealNVP flow reached a held-out AUC of 0.620 on the jets task with it, 0.541 with this
    scale (100 s of training on 30k events, one thread).
    The tanh keeps both directions finite in float32 (a step changes a value by at most a
    factor 20).  Same constructor and state dict as nflows' layer; a zero conditioner output
    is the identity.
    """

    def _scale_and_shift(self, transform_params: Tensor) -> tuple[Tensor, Tensor]:
        n = self.num_transform_features
        log_scale = MAX_LOG_SCALE * torch.tanh(transform_params[:, n:, ...] / MAX_LOG_SCALE)
        return torch.exp(log_scale), transform_params[:, :n, ...]


class ConditionalScaling(Transform):
    """``z = x * exp(s(c))``: a per-feature scale that is a function of the context, a small
    MLP (C -> hidden -> D, ReLU) whose output is soft-clamped to [-3, 3] by ``3 tanh(u / 3)``;
    it starts at 1 (zero last layer).

    Parameters
    ----------
    n_features : int
        D.
    context_features : int
        Width of the context it receives.
    hidden_features : int
        Width of its hidden layer.
    """

    def __init__(self, n_features: int, context_features: int, hidden_features: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(context_features, hidden_features),
            nn.ReLU(),
            nn.Linear(hidden_features, n_features),
        )
        zero_last_layer(self.net[-1])

    def _log_scale(self, context: Tensor | None, like: Tensor) -> Tensor:
        if context is None:
            return like.new_zeros(like.shape)
        return MAX_LOG_SCALE * torch.tanh(self.net(context) / MAX_LOG_SCALE)

    def forward(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        log_scale = self._log_scale(context, inputs)
        return inputs * torch.exp(log_scale), log_scale.sum(dim=1)

    def inverse(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        log_scale = self._log_scale(context, inputs)
        return inputs * torch.exp(-log_scale), -log_scale.sum(dim=1)


class SafeActNorm(ActNorm):
    """nflows' ``ActNorm`` (per-feature affine map initialised from the first training batch
    to zero mean, unit variance) whose initialisation survives a constant column: the
    standard deviation is floored at 1e-3 (nflows' own gives an infinite scale there).
    Same state dict as nflows' layer."""

    def _initialize(self, inputs: Tensor) -> None:
        with torch.no_grad():
            std = inputs.std(dim=0).clamp_min(1e-3) if inputs.shape[0] > 1 else None
            if std is None:
                std = torch.ones_like(inputs[0])
            mu = (inputs / std).mean(dim=0)
            self.log_scale.data = -torch.log(std)
            self.shift.data = -mu
            self.initialized.data = torch.tensor(True, dtype=torch.bool)


class ClampedAffineAutoregressive(MaskedAffineAutoregressiveTransform):
    """nflows' masked affine autoregressive step (MAF; ``z = x * s(x_<i) + m(x_<i)`` with
    ``s = softplus(.) + 1e-3``) whose MADE sees its inputs clamped to ``bound`` (see
    :class:`~hepgen.models.spline.ClampedResidualNet`); it starts as the identity.  Same
    state dict as nflows' layer.

    Parameters
    ----------
    features, hidden_features, context_features, num_blocks, dropout_probability
        Those of ``nflows.transforms.MaskedAffineAutoregressiveTransform`` (residual blocks,
        sequential masks).
    bound : float
        Clamp of the conditioner's inputs (model-space units).
    """

    def __init__(
        self,
        features: int,
        hidden_features: int,
        context_features: int,
        num_blocks: int,
        dropout_probability: float,
        bound: float,
    ) -> None:
        super().__init__(
            features=features,
            hidden_features=hidden_features,
            context_features=context_features,
            num_blocks=num_blocks,
            use_residual_blocks=True,
            random_mask=False,
            dropout_probability=dropout_probability,
        )
        self.bound = float(bound)
        final = self.autoregressive_net.final_layer
        with torch.no_grad():
            final.weight.zero_()
            bias = final.bias.view(features, 2)
            bias.zero_()
            bias[:, 0] = math.log(math.expm1(1.0 - self._epsilon))  # softplus(b) + eps = 1

    def _params(self, inputs: Tensor, context: Tensor | None) -> Tensor:
        return self.autoregressive_net(inputs.clamp(-self.bound, self.bound), context)

    def forward(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._elementwise_forward(inputs, self._params(inputs, context))

    def inverse(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        # Pass i fixes output i: its parameters depend on outputs < i only, already final.
        outputs = torch.zeros_like(inputs)
        logabsdet = inputs.new_zeros(inputs.shape[0])
        for _ in range(inputs.shape[1]):
            outputs, logabsdet = self._elementwise_inverse(inputs, self._params(outputs, context))
        return outputs, logabsdet
