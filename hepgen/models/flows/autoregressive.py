"""Masked and inverse autoregressive affine flows, ``model.flow.kind: maf | iaf``.

The same step, a MADE network giving an affine map of each feature from the features before
it, used in the two directions: MAF evaluates the density in one pass and samples in D
passes (one per feature); IAF is its inverse, sampling in one pass and evaluating densities
in D passes.  Which one to use is the choice between fast likelihood (anomaly scores,
training by maximum likelihood on big data) and fast generation.
"""

from __future__ import annotations

from typing import Any

from nflows.transforms.base import InverseTransform, Transform

from hepgen.models.flows.base import autoregressive_cost
from hepgen.models.flows.transforms import (
    ClampedAffineAutoregressive,
    TransformFlow,
    mixing_layers,
)
from hepgen.settings.models import FlowSettings

__all__ = ["IAFFlow", "MAFFlow"]


class MAFFlow(TransformFlow):
    """Conditional masked autoregressive flow: affine autoregressive steps, density in one pass.

    Each step maps ``z_i = x_i * s_i(x_<i; c) + m_i(x_<i; c)`` with a MADE network (residual
    blocks, the context added in each block) for all i at once, and the ``mixing`` layers
    between steps change the order.  Sampling inverts one feature at a time: D passes.

    Parameters
    ----------
    n_features, n_conditions : int
        D targets and C conditions.
    settings : FlowSettings
        ``kind="maf"``; ``n_transforms``, ``hidden_features``, ``n_blocks``, ``mixing``,
        ``tail_bound`` (the MADE's input clamp), ``embedding_features``, ``dropout``.
    seed : int
        Seeds the initialisation.

    Notes
    -----
    The scale is nflows' ``softplus(u) + 1e-3``; every step starts as the identity.

    References
    ----------
    G. Papamakarios, T. Pavlakou, I. Murray, "Masked Autoregressive Flow for Density
    Estimation", NeurIPS 2017, arXiv:1705.07057.
    M. Germain, K. Gregor, I. Murray, H. Larochelle, "MADE: Masked Autoencoder for
    Distribution Estimation", ICML 2015, arXiv:1502.03509.

    Examples
    --------
    >>> import torch
    >>> flow = MAFFlow(3, 2, FlowSettings(kind="maf", n_transforms=2, hidden_features=8))
    >>> c = torch.zeros(4, 2)
    >>> x = flow.sample(c, generator=torch.Generator().manual_seed(0))
    >>> x.shape, flow.log_prob(x, c).shape
    (torch.Size([4, 3]), torch.Size([4]))
    """

    kinds = ("maf",)

    def __init__(
        self,
        n_features: int,
        n_conditions: int,
        settings: FlowSettings = FlowSettings(kind="maf"),
        seed: int = 0,
    ) -> None:
        super().__init__(n_features, n_conditions, settings, seed)

    def _made(self, n_features: int, context: int) -> ClampedAffineAutoregressive:
        s = self.settings
        return ClampedAffineAutoregressive(
            features=n_features,
            hidden_features=s.hidden_features,
            context_features=context,
            num_blocks=s.n_blocks,
            dropout_probability=s.dropout,
            bound=s.tail_bound,
        )

    def _step(self, index: int, n_features: int, context: int) -> list[Transform]:
        return [*mixing_layers(n_features, self.settings.mixing), self._made(n_features, context)]

    def cost(self) -> dict[str, Any]:
        return autoregressive_cost(self.n_features, sampling=True)


class IAFFlow(MAFFlow):
    """Conditional inverse autoregressive flow: MAF's steps inverted, sampling in one pass.

    Each step maps ``x_i = z_i * s_i(z_<i; c) + m_i(z_<i; c)`` in the sampling direction, all
    i at once; evaluating a density inverts one feature at a time: D passes.  The layers and
    their settings are those of :class:`MAFFlow`.

    Parameters
    ----------
    n_features, n_conditions : int
        D targets and C conditions.
    settings : FlowSettings
        ``kind="iaf"``; as for :class:`MAFFlow`.
    seed : int
        Seeds the initialisation.

    Notes
    -----
    Training maximises the likelihood, so every training step pays the D passes: IAF trains
    about D times slower than MAF for the same network.

    References
    ----------
    D. P. Kingma, T. Salimans, R. Jozefowicz, X. Chen, I. Sutskever, M. Welling, "Improved
    Variational Inference with Inverse Autoregressive Flow", NeurIPS 2016, arXiv:1606.04934.

    Examples
    --------
    >>> import torch
    >>> flow = IAFFlow(3, 2, FlowSettings(kind="iaf", n_transforms=2, hidden_features=8))
    >>> c = torch.zeros(4, 2)
    >>> x = flow.sample(c, generator=torch.Generator().manual_seed(0))
    >>> x.shape, flow.log_prob(x, c).shape
    (torch.Size([4, 3]), torch.Size([4]))
    """

    kinds = ("iaf",)

    def __init__(
        self,
        n_features: int,
        n_conditions: int,
        settings: FlowSettings = FlowSettings(kind="iaf"),
        seed: int = 0,
    ) -> None:
        super().__init__(n_features, n_conditions, settings, seed)

    def _step(self, index: int, n_features: int, context: int) -> list[Transform]:
        mixing = mixing_layers(n_features, self.settings.mixing)
        return [*mixing, InverseTransform(self._made(n_features, context))]

    def cost(self) -> dict[str, Any]:
        return autoregressive_cost(self.n_features, sampling=False)
