"""Conditional normalizing flows on nflows: rational-quadratic spline coupling and MAF.

A :class:`ConditionalFlow` learns a density p(x | c) of a target vector x (the reconstructed
features, D columns) given a context vector c (the generator-level features, C columns), both
already standardised ``float32`` model-space matrices.  Two families, chosen by
:attr:`FlowSettings.kind`:

``"coupling"`` (default)
    Rational-quadratic (RQ) spline coupling transforms (Durkan et al. 2019) with alternating
    binary masks; the spline parameters of the masked half come from a residual MLP
    (``nflows.nn.nets.ResidualNet``) of the other half and the context.  Density evaluation and
    sampling both cost one pass through the network.
``"autoregressive"``
    Masked autoregressive RQ spline transforms (MADE conditioner with the context added to
    every block).  The most expressive per parameter, but sampling inverts one dimension at a
    time: D passes (pass i evaluates the inverse spline of dimension i only).

Between two spline transforms a mixing layer: ``"lu"`` (a fixed random permutation followed
by ``nflows.transforms.LULinear`` with identity initialisation, the NSF recipe; a last LU
layer closes the chain), ``"permutation"`` (a fixed random permutation) or ``"none"``.  The base
distribution is a standard normal.  An optional embedding MLP (``embedding_features > 0``)
maps the context to ``embedding_features`` numbers, trained jointly, before it reaches the
conditioners (``nflows.flows.Flow``'s ``embedding_net``).

The pitfalls of nflows 0.14 on current torch, and what this package does about each, are in
the notes of :class:`ConditionalFlow` (the spline and its nflows layers are in
:mod:`hepgen.models.spline`); the file format in :func:`save_flow`.

References
----------
C. Durkan, A. Bekasov, I. Murray, G. Papamakarios, "Neural Spline Flows", NeurIPS 2019,
arXiv:1906.04032.
G. Papamakarios, T. Pavlakou, I. Murray, "Masked Autoregressive Flow for Density Estimation",
NeurIPS 2017, arXiv:1705.07057.
M. Germain, K. Gregor, I. Murray, H. Larochelle, "MADE: Masked Autoencoder for Distribution
Estimation", ICML 2015, arXiv:1502.03509.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from nflows.transforms.base import Transform
from torch import Tensor, nn

from hepgen.models.files import load_module, save_module
from hepgen.models.flows import build_flow
from hepgen.models.flows.base import FlowModule, autoregressive_cost
from hepgen.models.flows.transforms import (
    TransformFlow,
    alternating_mask,
    coupling_net,
    mixing_layers,
)
from hepgen.models.spline import (  # MIN_BIN_*: re-exported, their home before the split
    MIN_BIN_HEIGHT,  # noqa: F401
    MIN_BIN_WIDTH,  # noqa: F401
    MIN_DERIVATIVE,
    RQAutoregressiveTransform,
    RQCouplingTransform,
    rational_quadratic_spline,
    without_logabsdet,
)
from hepgen.settings.models import SPLINE_KINDS, FlowSettings

__all__ = [
    "FLOW_FORMAT",
    "FLOW_FORMAT_VERSION",
    "ConditionalFlow",
    "FlowSettings",
    "load_flow",
    "rational_quadratic_spline",
    "save_flow",
]

FLOW_FORMAT = "hepgen-flow"
FLOW_FORMAT_VERSION = 1

KINDS = SPLINE_KINDS
MIXINGS = ("lu", "permutation", "none")


# --------------------------------------------------------------------------------------------
# the flow
# --------------------------------------------------------------------------------------------


class ConditionalFlow(TransformFlow):
    """Conditional normalizing flow p(x | c) on nflows (RQ spline coupling or autoregressive).

    Parameters
    ----------
    n_features : int
        D, the number of target columns (>= 1).
    n_conditions : int
        C, the number of context columns (>= 1).
    settings : FlowSettings
        Architecture.
    seed : int
        Seeds the initialisation and the permutations: the same seed builds identical
        parameters.  The global torch RNG of the caller is left untouched.

    Notes
    -----
    The module is ``float32``; inputs of another dtype or device are cast to ``float32`` on the
    module's device.  As for any torch module, call ``.eval()`` before evaluation when
    ``dropout > 0``.  ``forward(x, c)`` is :meth:`log_prob`.

    nflows 0.14 on current torch, and what this module does about it:

    * ``NaiveLinear`` calls the removed ``torch.solve``: never used (``"lu"`` mixing is
      ``LULinear``).  ``LULinear.inverse`` calls the deprecated ``torch.triangular_solve``; the
      subclass :class:`~hepgen.models.spline.LinalgLULinear` inverts with
      ``torch.linalg.solve_triangular`` instead (same parameters, same state dict).
    * Sampling in ``float64`` fails inside nflows (``float32`` noise meets ``float64`` weights):
      the module is built and kept in ``float32``, and every input (targets, contexts, noise) is
      cast to ``float32`` on the module's device.
    * RQ splines with ``tails=None`` live on [0, 1]: the splines here always use linear tails on
      [-tail_bound, tail_bound] (default 4, for standardised data); outside that interval a
      transform is the identity, so a 10-sigma event has a finite density and round-trips.
    * The spline inverse of nflows asserts that the discriminant of its quadratic is
      non-negative, which fails in ``float32`` (nflows issue 87): a whole sampling run dies on
      one event.  The splines are therefore evaluated by
      :func:`~hepgen.models.spline.rational_quadratic_spline`, the same function (identical
      parametrisation, so a state dict loads into plain nflows transforms and back) with a
      robust inverse and no boolean-mask indexing (its Notes say how and why), through the
      subclasses :class:`~hepgen.models.spline.RQCouplingTransform` and
      :class:`~hepgen.models.spline.RQAutoregressiveTransform` of the nflows transforms.
    * Beyond the tail bound a coordinate passes through its own spline unchanged, but the
      conditioners of the other coordinates extrapolate linearly to extreme spline parameters,
      and the inverse loses all float32 precision there.  The conditioners therefore see their
      inputs clamped to [-tail_bound, tail_bound] (elementwise, so the coupling and
      autoregressive structures are kept; see :class:`~hepgen.models.spline.ClampedResidualNet`).
      Inside [-tail_bound, tail_bound]^D the flow is, for the same weights, the plain nflows
      function.

    Initialisation: identity.  The last layer of every conditioner is zeroed and its derivative
    biases are set so that each spline starts as the identity (equal bins, unit knot
    derivatives); with the identity-initialised LU layers a new flow is exactly N(0, 1) for
    every context: the natural start for standardised data.  nflows' own initialisation puts
    interior knot derivatives near softplus(0) = 0.69, and the default-size autoregressive flow
    (6 transforms) then starts with log-determinants down to -16 on N(0, 1) inputs, whose
    float32 inverse is off by up to 1e-2; after identity initialisation the round trip is exact
    to 2e-6.  Gradients reach the zeroed layer at once, so training starts normally.

    Sampling draws the base noise itself, from the ``torch.Generator`` it is given, instead of
    ``nflows.flows.Flow.sample`` (which uses the global RNG and draws ``num_samples`` per
    context): one draw per row of the context, reproducible for a seeded generator.

    Batching is the caller's job: :meth:`ConditionalFlow.log_prob` and
    :meth:`ConditionalFlow.sample` are tensor-level methods.  ``sample`` never builds an
    autograd graph; ``log_prob`` does when gradients are enabled (training) and works under
    ``torch.inference_mode()``.

    References
    ----------
    C. Durkan, A. Bekasov, I. Murray, G. Papamakarios, "Neural Spline Flows", NeurIPS 2019,
    arXiv:1906.04032.
    G. Papamakarios, T. Pavlakou, I. Murray, "Masked Autoregressive Flow for Density
    Estimation", NeurIPS 2017, arXiv:1705.07057.

    Examples
    --------
    >>> import torch
    >>> flow = ConditionalFlow(2, 3, FlowSettings(n_transforms=2, hidden_features=16), seed=1)
    >>> c = torch.zeros(4, 3)
    >>> x = flow.sample(c, generator=torch.Generator().manual_seed(0))
    >>> x.shape, flow.log_prob(x, c).shape
    (torch.Size([4, 2]), torch.Size([4]))
    """

    kinds = SPLINE_KINDS

    def __init__(
        self,
        n_features: int,
        n_conditions: int,
        settings: FlowSettings = FlowSettings(),
        seed: int = 0,
    ) -> None:
        super().__init__(n_features, n_conditions, settings, seed)

    @property
    def has_graph(self) -> bool:
        """Whether :mod:`hepgen.models.flow_graph` can build the static graphs (single scale)."""
        return self.settings.levels == 1

    def cost(self) -> dict[str, Any]:
        """The cost class (:meth:`hepgen.models.flows.base.FlowModule.cost`)."""
        if self.settings.kind == "autoregressive":
            return autoregressive_cost(self.n_features, sampling=True)
        return super().cost()

    # -- the chain ----------------------------------------------------------------------------

    def _step(self, index: int, n_features: int, context: int) -> list[Transform]:
        s = self.settings
        mixing = mixing_layers(n_features, s.mixing)  # first: the RNG order of hepgen <= 0.1
        if s.kind == "coupling":
            spline: Transform = RQCouplingTransform(
                mask=alternating_mask(n_features, odd=bool(index % 2)),
                transform_net_create_fn=coupling_net(s, context),
                num_bins=s.n_bins,
                tails="linear",
                tail_bound=s.tail_bound,
            )
        else:
            spline = RQAutoregressiveTransform(
                features=n_features,
                hidden_features=s.hidden_features,
                context_features=context,
                num_bins=s.n_bins,
                tails="linear",
                tail_bound=s.tail_bound,
                num_blocks=s.n_blocks,
                use_residual_blocks=True,
                random_mask=False,
                dropout_probability=s.dropout,
            )
        return [*mixing, spline]

    def _initialise(self, transform: Transform) -> None:
        if isinstance(transform, RQCouplingTransform):
            _identity_init(transform.transform_net.final_layer, self.settings.n_bins)
        elif isinstance(transform, RQAutoregressiveTransform):
            _identity_init(transform.autoregressive_net.final_layer, self.settings.n_bins)

    # -- evaluation ---------------------------------------------------------------------------

    def _from_latent(self, z: Tensor, c: Tensor) -> Tensor:
        # The inverse's log-Jacobian is discarded here: the splines skip computing it.
        with without_logabsdet(self):
            x, _ = self.flow._transform.inverse(z, context=self.flow._embedding_net(c))
        return x


def _identity_init(final_layer: nn.Linear, n_bins: int) -> None:
    """Zero the conditioner's last layer and set the derivative biases so that every spline
    starts as the identity (equal bins, unit knot derivatives).

    The outputs are laid out feature-major, ``3 K - 1`` per transformed feature (K width
    logits, K height logits, K - 1 derivative logits), for the coupling net and for MADE.
    """
    per_feature = 3 * n_bins - 1
    with torch.no_grad():
        final_layer.weight.zero_()
        bias = final_layer.bias.view(-1, per_feature)
        bias.zero_()
        bias[:, 2 * n_bins :] = math.log(math.expm1(1.0 - MIN_DERIVATIVE))


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------


def save_flow(flow: FlowModule, directory: str | Path, name: str = "flow") -> list[Path]:
    """Write ``NAME.safetensors`` (state dict) and ``NAME.json`` (metadata), atomically.

    Parameters
    ----------
    flow : ConditionalFlow
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
    ``NAME.safetensors`` holds the state dict;
    ``NAME.json`` holds :meth:`ConditionalFlow.describe` plus ``format``, ``format_version`` (1),
    the seed, the SHA-256 of the weights file and the torch/nflows versions.  Both are written
    atomically (temporary file in the same folder, then ``os.replace``); loading never executes
    code.
    """
    import nflows

    versions = {"torch": torch.__version__, "nflows": getattr(nflows, "__version__", None)}
    return save_module(
        flow,
        directory,
        name,
        fmt=FLOW_FORMAT,
        version=FLOW_FORMAT_VERSION,
        description=flow.describe(),
        seed=flow.seed,
        versions=versions,
    )


def load_flow(
    directory: str | Path, name: str = "flow", device: str | torch.device = "cpu"
) -> FlowModule:
    """Rebuild a flow written by :func:`save_flow` (JSON + safetensors; no code is executed).

    Parameters
    ----------
    directory : path
    name : str
        File stem used by :func:`save_flow`.
    device : str or torch.device
        Where to put the module.

    Returns
    -------
    ConditionalFlow
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
        fmt=FLOW_FORMAT,
        version=FLOW_FORMAT_VERSION,
        label="flow",
        settings_from_dict=FlowSettings.from_dict,
        device=device,
        build=lambda d, c, settings, seed: build_flow(d, c, settings, seed=seed),
    )
