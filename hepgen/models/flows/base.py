"""The protocol every conditional flow family implements: :class:`FlowModule`.

A flow module is a ``torch.nn.Module`` for a density p(x | c) of a target vector x (D columns)
given a context vector c (C columns), both standardised ``float32`` model-space matrices.  A
family implements two maps between the targets and a standard normal base space,

``_to_latent(x, c) -> (z, logabsdet)``
    ``z = f(x; c)`` and ``log|det df/dx|`` per row (the density direction);
``_from_latent(z, c) -> x``
    ``x = f^-1(z; c)`` (the sampling direction),

and this base class gives them the common methods (``log_prob``, ``sample``, ``to_latent``,
``from_latent``, ``loss``, ``describe``, ``cost``) with the input checks (shapes, dtype,
device, empty batches) done once.  A family whose training loss is not ``-log p(x | c)``
(flow matching) overrides :meth:`FlowModule.loss`; one whose density needs more than the two
maps overrides :meth:`FlowModule.log_prob`.

The cost class (:meth:`FlowModule.cost`) says how many network passes a draw and a density
cost, the trade-off the families make differently: a coupling flow is one pass both ways, an
autoregressive flow (MAF) samples in D passes, an inverse autoregressive flow (IAF) evaluates
densities in D passes, a residual flow inverts by fixed-point iteration, flow matching
integrates an ODE.  The model card and ``hepgen info`` print it.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from hepgen.models.latent import DEFAULT_LATENT, LatentOptions, draw_latent
from hepgen.models.modules import check_module_args, module_device
from hepgen.settings.models import FlowSettings

__all__ = ["FlowModule", "autoregressive_cost", "check_rows", "standard_normal_log_prob"]

_LOG_2PI = math.log(2 * math.pi)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """``log N(z; 0, I)`` per row of ``z`` (n, D): shape (n,), nats."""
    return -0.5 * (z * z).sum(dim=1) - 0.5 * z.shape[1] * _LOG_2PI


def check_rows(x: Tensor, c: Tensor) -> None:
    """``ValueError`` unless ``x`` and ``c`` have the same number of rows."""
    if x.shape[0] != c.shape[0]:
        raise ValueError(
            f"targets and contexts must have the same number of rows, got {x.shape[0]} and "
            f"{c.shape[0]}"
        )


def autoregressive_cost(n_features: int, sampling: bool) -> dict[str, Any]:
    """The cost class of an autoregressive flow: one pass one way, one per target (D) the
    other way, in sampling (``sampling=True``: MAF, the autoregressive spline) or in
    densities (IAF)."""
    d = (f"D = {n_features} passes (one per target)", n_features)
    one = ("1 pass", 1)
    sample, log_prob = (d, one) if sampling else (one, d)
    return {
        "sample": sample[0],
        "log_prob": log_prob[0],
        "sample_passes": sample[1],
        "log_prob_passes": log_prob[1],
    }


class FlowModule(nn.Module):
    """Base class of the conditional flow families (see the module docstring).

    Parameters
    ----------
    n_features : int
        D, the number of target columns (>= 1).
    n_conditions : int
        C, the number of context columns (>= 1).
    settings : FlowSettings
        Architecture; ``settings.kind`` must be one of the subclass's :attr:`kinds`.
    seed : int
        Seeds the initialisation (subclasses build their layers under
        ``torch.random.fork_rng`` seeded with it): the same seed builds identical parameters,
        and the caller's global RNG is left untouched.

    Notes
    -----
    Inputs of any float dtype or device are cast to ``float32`` on the module's device.
    ``sample`` never builds an autograd graph; ``log_prob`` does when gradients are enabled.
    """

    #: The ``FlowSettings.kind`` values this class builds.
    kinds: tuple[str, ...] = ()
    #: Whether :mod:`hepgen.models.flow_graph` builds static graphs of this flow (the graph
    #: and bfloat16 engines, ONNX export): the single-scale RQ-spline flows.
    has_graph: bool = False

    def __init__(
        self, n_features: int, n_conditions: int, settings: FlowSettings, seed: int = 0
    ) -> None:
        super().__init__()
        check_module_args(n_features, n_conditions, settings, FlowSettings, seed)
        if self.kinds and settings.kind not in self.kinds:
            raise ValueError(
                f"{type(self).__name__} builds the kinds {self.kinds}, got {settings.kind!r}"
            )
        self.n_features = n_features
        self.n_conditions = n_conditions
        self.settings = settings
        self.seed = seed

    # -- what a family implements ---------------------------------------------------------------

    def _to_latent(self, x: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def _from_latent(self, z: Tensor, c: Tensor) -> Tensor:
        raise NotImplementedError

    def cost(self) -> dict[str, Any]:
        """The cost class: network passes per draw and per density.

        Returns
        -------
        dict
            ``sample`` and ``log_prob``: short texts ("1 pass", "D = 6 passes", "fixed-point
            iteration, at most 200 passes per block", ...); ``sample_passes`` and
            ``log_prob_passes``: the number of network evaluations per row (an upper bound
            or ``None`` where it depends on the data, as for an adaptive solver).
        """
        return {"sample": "1 pass", "log_prob": "1 pass", "sample_passes": 1, "log_prob_passes": 1}

    # -- the protocol ---------------------------------------------------------------------------

    def log_prob(self, x: Tensor, c: Tensor) -> Tensor:
        """Log-density of targets given contexts, in model space.

        Parameters
        ----------
        x : Tensor of shape (n, D)
            Targets (any float dtype; cast to float32 on the module's device).
        c : Tensor of shape (n, C)
            Contexts, one per row of ``x``.

        Returns
        -------
        Tensor of shape (n,), float32
            ``log p(x | c)`` in nats per event.  Differentiable when gradients are enabled.
        """
        x = self._as_input(x, self.n_features, "x")
        c = self._as_input(c, self.n_conditions, "c")
        check_rows(x, c)
        if x.shape[0] == 0:
            return x.new_zeros(0)
        z, logabsdet = self._to_latent(x, c)
        return standard_normal_log_prob(z) + logabsdet

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        """:meth:`log_prob`."""
        return self.log_prob(x, c)

    def loss(self, x: Tensor, c: Tensor) -> Tensor:
        """Per-event training loss, shape (n,): ``-log p(x | c)`` unless a family says
        otherwise (the training loop minimises its weighted mean)."""
        return -self.log_prob(x, c)

    def sample(
        self,
        c: Tensor,
        generator: torch.Generator | None = None,
        latent: LatentOptions = DEFAULT_LATENT,
    ) -> Tensor:
        """One draw of x ~ p(x | c) per row of ``c``.

        Parameters
        ----------
        c : Tensor of shape (n, C)
            Contexts (any float dtype; cast to float32 on the module's device).
        generator : torch.Generator or None
            Source of the base noise (drawn on the generator's device, then moved to the
            module's); ``None`` uses the global RNG.
        latent : LatentOptions
            Temperature and truncation of the base noise (:mod:`hepgen.models.latent`).

        Returns
        -------
        Tensor of shape (n, D), float32
            Samples in model space; no autograd graph is built.
        """
        c = self._as_input(c, self.n_conditions, "c")
        with torch.no_grad():
            z = draw_latent((c.shape[0], self.n_features), generator, c.device, latent)
            return self.from_latent(z, c)

    def to_latent(self, x: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """Map targets to the base space: ``z = f(x; c)`` and ``log|det df/dx|``.

        Parameters
        ----------
        x : Tensor of shape (n, D)
        c : Tensor of shape (n, C)

        Returns
        -------
        z : Tensor of shape (n, D), float32
        logabsdet : Tensor of shape (n,), float32
        """
        x = self._as_input(x, self.n_features, "x")
        c = self._as_input(c, self.n_conditions, "c")
        check_rows(x, c)
        if x.shape[0] == 0:
            return x.new_zeros((0, self.n_features)), x.new_zeros(0)
        return self._to_latent(x, c)

    def from_latent(self, z: Tensor, c: Tensor) -> Tensor:
        """Map base-space points to targets: ``x = f^-1(z; c)`` (what :meth:`sample` applies).

        Parameters
        ----------
        z : Tensor of shape (n, D)
        c : Tensor of shape (n, C)

        Returns
        -------
        Tensor of shape (n, D), float32
        """
        z = self._as_input(z, self.n_features, "z")
        c = self._as_input(c, self.n_conditions, "c")
        check_rows(z, c)
        if z.shape[0] == 0:
            return z.new_zeros((0, self.n_features))
        return self._from_latent(z, c)

    def describe(self) -> dict[str, Any]:
        """Architecture summary: ``n_features``, ``n_conditions``, ``settings`` (a dict),
        ``n_parameters``, ``cost`` (:meth:`cost`)."""
        return {
            "n_features": self.n_features,
            "n_conditions": self.n_conditions,
            "settings": self.settings.to_dict(),
            "n_parameters": int(sum(p.numel() for p in self.parameters())),
            "cost": self.cost(),
        }

    def _as_input(self, t: Any, width: int, name: str) -> Tensor:
        device = module_device(self)
        t = torch.as_tensor(t).to(device=device, dtype=torch.float32)
        if t.ndim != 2 or t.shape[1] != width:
            raise ValueError(
                f"{name} must have shape (n, {width}) for this flow, got {tuple(t.shape)}"
            )
        return t

    def extra_repr(self) -> str:
        return (
            f"n_features={self.n_features}, n_conditions={self.n_conditions}, "
            f"kind={self.settings.kind!r}, seed={self.seed}"
        )
