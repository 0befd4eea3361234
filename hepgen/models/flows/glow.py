"""Glow: ActNorm, an invertible linear map and affine coupling, ``model.flow.kind: glow``."""

from __future__ import annotations

from nflows.transforms import RandomPermutation
from nflows.transforms.base import Transform

from hepgen.models.flows.transforms import (
    SafeActNorm,
    SoftClampedAffineCoupling,
    TransformFlow,
    alternating_mask,
    coupling_net,
    zero_last_layer,
)
from hepgen.models.spline import LinalgLULinear
from hepgen.settings.models import FlowSettings

__all__ = ["GlowFlow"]


class GlowFlow(TransformFlow):
    """Conditional Glow: steps of ActNorm, an LU-decomposed linear map and affine coupling.

    Glow's step for images is ActNorm (a per-channel affine map initialised from the first
    batch to zero mean and unit variance), an invertible 1x1 convolution (a learned linear map
    of the channels, LU-decomposed so its determinant is cheap) and an affine coupling layer.
    On a feature vector the 1x1 convolution is a linear map of the features: a fixed random
    permutation then an identity-initialised LU map (Glow initialises with a random
    rotation; a permutation is one).  The ``mixing`` setting is not used: Glow's step is
    fixed.  ``levels > 1`` gives the multi-scale architecture.  One pass in both directions.

    Parameters
    ----------
    n_features, n_conditions : int
        D targets and C conditions.
    settings : FlowSettings
        ``kind="glow"``; ``n_transforms``, ``hidden_features``, ``n_blocks``, ``levels``,
        ``tail_bound`` (the conditioners' input clamp), ``embedding_features``, ``dropout``.
    seed : int
        Seeds the initialisation.

    Notes
    -----
    ActNorm initialises on the first forward pass in training mode (:class:`SafeActNorm`);
    under several training processes each rank initialises from its own first batch.

    References
    ----------
    D. P. Kingma, P. Dhariwal, "Glow: Generative Flow with Invertible 1x1 Convolutions",
    NeurIPS 2018, arXiv:1807.03039.

    Examples
    --------
    >>> import torch
    >>> flow = GlowFlow(3, 2, FlowSettings(kind="glow", n_transforms=2, hidden_features=8))
    >>> c = torch.zeros(4, 2)
    >>> x = flow.sample(c, generator=torch.Generator().manual_seed(0))
    >>> x.shape, flow.log_prob(x, c).shape
    (torch.Size([4, 3]), torch.Size([4]))
    """

    kinds = ("glow",)

    def __init__(
        self,
        n_features: int,
        n_conditions: int,
        settings: FlowSettings = FlowSettings(kind="glow"),
        seed: int = 0,
    ) -> None:
        super().__init__(n_features, n_conditions, settings, seed)

    def _step(self, index: int, n_features: int, context: int) -> list[Transform]:
        return [
            SafeActNorm(n_features),
            RandomPermutation(n_features),
            LinalgLULinear(n_features, identity_init=True),
            SoftClampedAffineCoupling(
                mask=alternating_mask(n_features, odd=bool(index % 2)),
                transform_net_create_fn=coupling_net(self.settings, context),
            ),
        ]

    def _closing(self, n_features: int, context: int) -> list[Transform]:
        return [LinalgLULinear(n_features, identity_init=True)]

    def _initialise(self, transform: Transform) -> None:
        if isinstance(transform, SoftClampedAffineCoupling):
            zero_last_layer(transform.transform_net.final_layer)
