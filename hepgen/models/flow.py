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

The pitfalls of nflows 0.14 on current torch, and what this module does about each, are in
the notes of :class:`ConditionalFlow`; the file format in :func:`save_flow`.

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
import torch.nn.functional as F
from nflows.distributions.normal import StandardNormal
from nflows.flows.base import Flow
from nflows.nn.nets import ResidualNet
from nflows.transforms import (
    CompositeTransform,
    LULinear,
    MaskedPiecewiseRationalQuadraticAutoregressiveTransform,
    PiecewiseRationalQuadraticCouplingTransform,
    RandomPermutation,
)
from nflows.transforms.base import Transform
from torch import Tensor, nn

from hepgen.models.files import load_module, save_module
from hepgen.models.modules import check_module_args, module_device
from hepgen.settings.models import FlowSettings

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

KINDS = ("coupling", "autoregressive")
MIXINGS = ("lu", "permutation", "none")

# nflows' defaults: every bin is at least 1e-3 of the interval wide and high, every interior
# knot derivative at least 1e-3.
MIN_BIN_WIDTH = 1e-3
MIN_BIN_HEIGHT = 1e-3
MIN_DERIVATIVE = 1e-3


# --------------------------------------------------------------------------------------------
# the spline
# --------------------------------------------------------------------------------------------


def rational_quadratic_spline(
    inputs: Tensor,
    unnormalized_widths: Tensor,
    unnormalized_heights: Tensor,
    unnormalized_derivatives: Tensor,
    *,
    inverse: bool = False,
    tail_bound: float = 4.0,
    min_bin_width: float = MIN_BIN_WIDTH,
    min_bin_height: float = MIN_BIN_HEIGHT,
    min_derivative: float = MIN_DERIVATIVE,
    with_logabsdet: bool = True,
) -> tuple[Tensor, Tensor]:
    """Monotonic rational-quadratic spline on [-B, B] with linear (identity) tails.

    The same function as nflows' ``unconstrained_rational_quadratic_spline`` with
    ``tails="linear"`` (same parametrisation: softmax bin fractions with a floor, softplus knot
    derivatives with a floor, derivative 1 at the two ends), written without boolean-mask
    indexing and with a robust inverse: the discriminant of the quadratic is clamped at 0, the
    root is taken in the form without cancellation, and the bin coordinate is clamped to
    [0, 1] (see the module docstring; nflows issue 87).

    Parameters
    ----------
    inputs : Tensor of shape (...)
        Points to transform (x for the forward direction, y for the inverse).
    unnormalized_widths, unnormalized_heights : Tensor of shape (..., K)
        Unconstrained bin widths and heights (softmax logits), K bins.
    unnormalized_derivatives : Tensor of shape (..., K - 1)
        Unconstrained derivatives at the K - 1 interior knots.
    inverse : bool
        Evaluate the inverse spline.
    tail_bound : float
        B; outside [-B, B] the spline is the identity with log-Jacobian 0.
    min_bin_width, min_bin_height, min_derivative : float
        Floors of the bin fractions and of the knot derivatives.
    with_logabsdet : bool
        Compute the log-Jacobian; ``False`` (sampling) returns zeros in its place and skips
        about a fifth of the arithmetic.

    Returns
    -------
    outputs : Tensor of shape (...)
    logabsdet : Tensor of shape (...)
        ``log |d outputs / d inputs|`` per element (nats); zeros when ``with_logabsdet`` is
        false.

    References
    ----------
    C. Durkan et al., "Neural Spline Flows", NeurIPS 2019, arXiv:1906.04032 (section 3.1 and
    appendix A: the spline, its derivative and its inverse).

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.linspace(-5.0, 5.0, 11)
    >>> w, h = torch.randn(11, 4, generator=g), torch.randn(11, 4, generator=g)
    >>> d = torch.randn(11, 3, generator=g)
    >>> y, lad = rational_quadratic_spline(x, w, h, d)
    >>> x2, lad2 = rational_quadratic_spline(y, w, h, d, inverse=True)
    >>> bool(torch.allclose(x2, x, atol=1e-5)), bool(torch.allclose(lad, -lad2, atol=1e-4))
    (True, True)
    >>> float(y[0]), float(y[-1])  # beyond the tail bound: the identity
    (-5.0, 5.0)
    """
    n_bins = unnormalized_widths.shape[-1]
    if min_bin_width * n_bins > 1.0 or min_bin_height * n_bins > 1.0:
        raise ValueError(f"minimal bin width/height too large for {n_bins} bins")
    bound = float(tail_bound)
    inside = (inputs >= -bound) & (inputs <= bound)
    # Out-of-interval elements are evaluated on a clamped copy (finite values, finite
    # gradients) and replaced by the identity at the end.
    v = inputs.clamp(-bound, bound)

    xs, widths = _knots(unnormalized_widths, min_bin_width, bound)
    ys, heights = _knots(unnormalized_heights, min_bin_height, bound)
    one = unnormalized_derivatives.new_ones((*unnormalized_derivatives.shape[:-1], 1))
    # .contiguous(): torch's CPU softplus is ~10x slower on a strided slice (the derivative
    # logits are the tail of each row of conditioner outputs).
    derivatives = torch.cat(
        [one, min_derivative + F.softplus(unnormalized_derivatives.contiguous()), one], dim=-1
    )

    knots = ys if inverse else xs
    # Bin k holds knots[k] <= v < knots[k + 1]; v == B belongs to the last bin.
    idx = torch.searchsorted(knots, v.unsqueeze(-1), right=True) - 1
    idx = idx.clamp(0, n_bins - 1)
    x_k = xs.gather(-1, idx).squeeze(-1)
    w_k = widths.gather(-1, idx).squeeze(-1)
    y_k = ys.gather(-1, idx).squeeze(-1)
    h_k = heights.gather(-1, idx).squeeze(-1)
    d_k = derivatives.gather(-1, idx).squeeze(-1)
    d_k1 = derivatives[..., 1:].gather(-1, idx).squeeze(-1)
    s_k = h_k / w_k
    curvature = d_k + d_k1 - 2.0 * s_k

    if inverse:
        dy = v - y_k
        a = h_k * (s_k - d_k) + dy * curvature
        b = h_k * d_k - dy * curvature
        c = -s_k * dy
        # Exact arithmetic gives a discriminant >= 0 inside the bin; float32 rounding can make
        # it slightly negative when b^2 ~ 4ac (nflows issue 87): clamp instead of asserting.
        root = torch.sqrt((b * b - 4.0 * a * c).clamp_min(0.0))
        # The root (-b + root) / (2a) = 2c / (-b - root), each form taken where it adds two
        # numbers of the same sign (no cancellation); the other branch sees a safe divisor.
        positive = b >= 0
        xi = torch.where(
            positive,
            (2.0 * c) / torch.where(positive, -b - root, -1.0),
            (-b + root) / torch.where(positive, 1.0, 2.0 * a),
        ).clamp(0.0, 1.0)
    else:
        xi = ((v - x_k) / w_k).clamp(0.0, 1.0)
    if inverse:
        out = x_k + xi * w_k
        if not with_logabsdet:
            return torch.where(inside, out, inputs), torch.zeros_like(inputs)
    t = xi * (1.0 - xi)
    denominator = s_k + curvature * t
    if not inverse:
        out = y_k + h_k * (s_k * xi * xi + d_k * t) / denominator
        if not with_logabsdet:
            return torch.where(inside, out, inputs), torch.zeros_like(inputs)
    numerator = s_k * s_k * (d_k1 * xi * xi + 2.0 * s_k * t + d_k * (1.0 - xi) * (1.0 - xi))
    logabsdet = torch.log(numerator) - 2.0 * torch.log(denominator)
    if inverse:
        logabsdet = -logabsdet
    outputs = torch.where(inside, out, inputs)
    logabsdet = torch.where(inside, logabsdet, torch.zeros_like(logabsdet))
    return outputs, logabsdet


def _knots(unnormalized: Tensor, min_fraction: float, bound: float) -> tuple[Tensor, Tensor]:
    """Knot positions (..., K + 1) on [-bound, bound] (ends exact) and bin sizes (..., K)."""
    n_bins = unnormalized.shape[-1]
    fractions = min_fraction + (1.0 - min_fraction * n_bins) * torch.softmax(unnormalized, -1)
    inner = (2.0 * bound) * torch.cumsum(fractions[..., :-1], dim=-1) - bound
    end = inner.new_full((*inner.shape[:-1], 1), bound)
    knots = torch.cat([-end, inner, end], dim=-1)
    return knots, knots[..., 1:] - knots[..., :-1]


def _softmax_scale(net: nn.Module) -> float:
    """nflows divides the width/height logits by sqrt(hidden_features) when the net has it."""
    hidden = getattr(net, "hidden_features", None)
    return 1.0 / math.sqrt(hidden) if hidden else 1.0


def _spline_of_params(
    transform: Any, inputs: Tensor, params: Tensor, net: nn.Module, inverse: bool
) -> tuple[Tensor, Tensor]:
    """Split (..., 3K - 1) parameters like nflows and evaluate :func:`rational_quadratic_spline`."""
    k = transform.num_bins
    scale = _softmax_scale(net)
    with_logabsdet = not getattr(transform, "skip_logabsdet", False)
    return rational_quadratic_spline(
        inputs,
        params[..., :k] * scale,
        params[..., k : 2 * k] * scale,
        params[..., 2 * k :],
        inverse=inverse,
        tail_bound=transform.tail_bound,
        min_bin_width=transform.min_bin_width,
        min_bin_height=transform.min_bin_height,
        min_derivative=transform.min_derivative,
        with_logabsdet=with_logabsdet,
    )


class _ClampedResidualNet(ResidualNet):
    """nflows' ``ResidualNet`` that sees its inputs clamped to [-bound, bound] (state dict
    unchanged): a coupling conditioner, fed the untouched half of the features.

    The context gate of each residual block, nflows' ``glu(cat(h, W c))``, is evaluated as
    ``h * sigmoid(W c)``: the same function without materialising the concatenation (the cat
    and the glu were a quarter of the sampling time on the CPU).
    """

    def __init__(self, *args: Any, bound: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bound = float(bound)

    def forward(self, inputs: Tensor, context: Tensor | None = None) -> Tensor:
        inputs = inputs.clamp(-self.bound, self.bound)
        if context is None or any(block.use_batch_norm for block in self.blocks):
            return super().forward(inputs, context)
        temps = self.initial_layer(torch.cat((inputs, context), dim=1))
        for block in self.blocks:
            hidden = block.linear_layers[0](block.activation(temps))
            hidden = block.linear_layers[1](block.dropout(block.activation(hidden)))
            temps = temps + hidden * torch.sigmoid(block.context_layer(context))
        return self.final_layer(temps)


class _RQCoupling(PiecewiseRationalQuadraticCouplingTransform):
    """nflows' RQ coupling transform evaluated by :func:`rational_quadratic_spline`."""

    def _piecewise_cdf(
        self, inputs: Tensor, transform_params: Tensor, inverse: bool = False
    ) -> tuple[Tensor, Tensor]:
        return _spline_of_params(self, inputs, transform_params, self.transform_net, inverse)


class _RQAutoregressive(MaskedPiecewiseRationalQuadraticAutoregressiveTransform):
    """nflows' masked autoregressive RQ transform evaluated by :func:`rational_quadratic_spline`."""

    def _elementwise(
        self, inputs: Tensor, autoregressive_params: Tensor, inverse: bool = False
    ) -> tuple[Tensor, Tensor]:
        n, d = inputs.shape
        params = autoregressive_params.view(n, d, self._output_dim_multiplier())
        out, logabsdet = _spline_of_params(self, inputs, params, self.autoregressive_net, inverse)
        return out, logabsdet.sum(dim=-1)

    def _params(self, inputs: Tensor, context: Tensor | None) -> Tensor:
        """MADE outputs for inputs clamped to the tail bound (elementwise: still autoregressive)."""
        bound = self.tail_bound
        return self.autoregressive_net(inputs.clamp(-bound, bound), context)

    def forward(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._elementwise(inputs, self._params(inputs, context))

    def inverse(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        # Pass i fixes output i: its parameters only depend on outputs < i, already final.
        n, d = inputs.shape
        if not getattr(self, "skip_logabsdet", False):
            outputs = torch.zeros_like(inputs)
            logabsdet = inputs.new_zeros(n)
            for _ in range(d):
                outputs, logabsdet = self._elementwise(
                    inputs, self._params(outputs, context), inverse=True
                )
            return outputs, logabsdet
        # Sampling: pass i inverts the spline of column i only (the spline was half the time
        # of a pass when every column was inverted each pass).  Same numbers: the MADE
        # outputs of column i do not depend on the columns >= i (their weights are masked
        # to exact zeros).
        columns: list[Tensor] = []
        rest = inputs.new_zeros((n, d))
        for i in range(d):
            current = torch.cat([*columns, rest[:, i:]], dim=1) if columns else rest
            params = self._params(current, context).view(n, d, -1)[:, i : i + 1]
            column, _ = _spline_of_params(
                self, inputs[:, i : i + 1], params, self.autoregressive_net, inverse=True
            )
            columns.append(column)
        return torch.cat(columns, dim=1), inputs.new_zeros(n)


class _LULinear(LULinear):
    """``LULinear`` whose inverse uses ``torch.linalg.solve_triangular`` (not the deprecated
    ``torch.triangular_solve``); parameters and state dict are those of ``LULinear``."""

    def inverse_no_cache(self, inputs: Tensor) -> tuple[Tensor, Tensor]:
        lower, upper = self._create_lower_upper()
        # x = U^-1 L^-1 (y - bias), for row vectors: solve x U^T L^T = (y - bias).
        rhs = inputs - self.bias
        outputs = torch.linalg.solve_triangular(lower, rhs.T, upper=False, unitriangular=True)
        outputs = torch.linalg.solve_triangular(upper, outputs, upper=True).T
        logabsdet = -self.logabsdet() * inputs.new_ones(inputs.shape[0])
        return outputs, logabsdet

    def weight_inverse(self) -> Tensor:
        lower, upper = self._create_lower_upper()
        eye = torch.eye(self.features, dtype=lower.dtype, device=lower.device)
        lower_inverse = torch.linalg.solve_triangular(lower, eye, upper=False, unitriangular=True)
        return torch.linalg.solve_triangular(upper, lower_inverse, upper=True)


# --------------------------------------------------------------------------------------------
# the flow
# --------------------------------------------------------------------------------------------


class ConditionalFlow(nn.Module):
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
      subclass :class:`_LULinear` inverts with ``torch.linalg.solve_triangular`` instead (same
      parameters, same state dict).
    * Sampling in ``float64`` fails inside nflows (``float32`` noise meets ``float64`` weights):
      the module is built and kept in ``float32``, and every input (targets, contexts, noise) is
      cast to ``float32`` on the module's device.
    * RQ splines with ``tails=None`` live on [0, 1]: the splines here always use linear tails on
      [-tail_bound, tail_bound] (default 4, for standardised data); outside that interval a
      transform is the identity, so a 10-sigma event has a finite density and round-trips.
    * The spline inverse solves a quadratic per element; nflows asserts that its discriminant
      ``b^2 - 4ac`` is non-negative, which fails in ``float32`` when ``b^2`` and ``4ac`` nearly
      cancel (small knot derivatives, inputs near a knot; nflows issue 87): a whole sampling run
      dies on one event.  The spline is therefore evaluated by
      :func:`rational_quadratic_spline`, our implementation of the same function (identical
      parametrisation, so a state dict loads into plain nflows transforms and back), used
      through the subclasses :class:`_RQCoupling` and :class:`_RQAutoregressive` of the nflows
      transforms.  Its inverse clamps the discriminant at 0 and the bin coordinate to [0, 1],
      and takes each root in the form without cancellation for the sign of ``b`` (nflows uses
      one form for both; on extreme splines this cut the float32 error of
      ``forward(inverse(y)) - y`` from 4e-3 to 2e-5).  Why clamp rather than re-draw the
      offending rows: for an input inside its bin the exact discriminant is non-negative (it
      equals ``(h d_k)^2`` and ``(h d_{k+1})^2`` at the two knots), so a negative value is pure
      rounding of order ``eps * b^2``; clamping changes the root by a rounding-sized amount,
      whereas re-drawing would reject exactly the events near knots with small derivatives, i.e.
      bias the sampled distribution, and would make the number of random draws data dependent.
    * Beyond the tail bound a coordinate passes through its own spline unchanged, but it is also
      an input of the conditioners of the other coordinates, whose ReLU networks extrapolate
      linearly: at 10 sigma they put out extreme spline parameters (bins of near-zero slope),
      and the inverse loses all float32 precision there (round-trip errors of order 1 were
      measured on untrained autoregressive flows).  The conditioners therefore see their inputs
      clamped to [-tail_bound, tail_bound] (:class:`_ClampedResidualNet`,
      :meth:`_RQAutoregressive._params`; elementwise, so the coupling and autoregressive
      structures are kept): an outlier gets the spline parameters of the boundary.  Inside
      [-tail_bound, tail_bound]^D the flow is, for the same weights, the plain nflows function.
    * nflows selects the in-interval elements with boolean-mask indexing (data-dependent shapes:
      a host sync on GPUs, graph breaks under ``torch.compile``).
      :func:`rational_quadratic_spline` evaluates every element (out-of-interval ones on clamped
      inputs, so no NaN reaches the gradient) and selects with ``torch.where``.

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

    def __init__(
        self,
        n_features: int,
        n_conditions: int,
        settings: FlowSettings = FlowSettings(),
        seed: int = 0,
    ) -> None:
        super().__init__()
        check_module_args(n_features, n_conditions, settings, FlowSettings, seed)
        self.n_features = n_features
        self.n_conditions = n_conditions
        self.settings = settings
        self.seed = seed
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.flow = _build_flow(n_features, n_conditions, settings)
        self.float()

    # -- evaluation ---------------------------------------------------------------------------

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
            ``log p(x | c)`` in nats per event (density per unit of the model-space
            coordinates).  Differentiable when gradients are enabled.
        """
        x = self._as_input(x, self.n_features, "x")
        c = self._as_input(c, self.n_conditions, "c")
        _check_rows(x, c)
        if x.shape[0] == 0:
            return x.new_zeros(0)
        return self.flow.log_prob(x, context=c)

    forward = log_prob

    def sample(self, c: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One draw of x ~ p(x | c) per row of ``c``.

        Parameters
        ----------
        c : Tensor of shape (n, C)
            Contexts (any float dtype; cast to float32 on the module's device).
        generator : torch.Generator or None
            Source of the base noise; ``None`` uses the global RNG.  The noise is drawn on the
            generator's device and moved to the module's, so a CPU generator gives the same
            noise whether the flow runs on CPU or CUDA.  The same generator state gives the
            same samples.

        Returns
        -------
        Tensor of shape (n, D), float32
            Samples in model space; no autograd graph is built.
        """
        c = self._as_input(c, self.n_conditions, "c")
        with torch.no_grad():
            noise_device = generator.device if generator is not None else c.device
            z = torch.randn(
                (c.shape[0], self.n_features),
                generator=generator,
                device=noise_device,
                dtype=torch.float32,
            )
            return self._inverse(z.to(c.device), c)

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
        _check_rows(x, c)
        return self.flow._transform(x, context=self.flow._embedding_net(c))

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
        _check_rows(z, c)
        return self._inverse(z, c)

    def _inverse(self, z: Tensor, c: Tensor) -> Tensor:
        if z.shape[0] == 0:
            return z.new_zeros((0, self.n_features))
        # The inverse's log-Jacobian is discarded here: the splines skip computing it.
        splines = [m for m in self.modules() if isinstance(m, _RQCoupling | _RQAutoregressive)]
        for m in splines:
            m.skip_logabsdet = True
        try:
            x, _ = self.flow._transform.inverse(z, context=self.flow._embedding_net(c))
        finally:
            for m in splines:
                m.skip_logabsdet = False
        return x

    def describe(self) -> dict[str, Any]:
        """Architecture summary: ``n_features``, ``n_conditions``, ``settings`` (a dict),
        ``n_parameters``."""
        return {
            "n_features": self.n_features,
            "n_conditions": self.n_conditions,
            "settings": self.settings.to_dict(),
            "n_parameters": int(sum(p.numel() for p in self.parameters())),
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


def _check_rows(x: Tensor, c: Tensor) -> None:
    if x.shape[0] != c.shape[0]:
        raise ValueError(
            f"targets and contexts must have the same number of rows, got {x.shape[0]} and "
            f"{c.shape[0]}"
        )


def _alternating_mask(n_features: int, odd: bool) -> Tensor:
    """1 marks the transformed features; with one feature it is always transformed (the
    spline then depends on the context only)."""
    if n_features == 1:
        return torch.ones(1, dtype=torch.int64)
    mask = torch.zeros(n_features, dtype=torch.int64)
    mask[int(odd) :: 2] = 1
    return mask


def _mixing(n_features: int, mixing: str) -> list[Transform]:
    if mixing == "lu":
        return [RandomPermutation(n_features), _LULinear(n_features, identity_init=True)]
    if mixing == "permutation":
        return [RandomPermutation(n_features)]
    return []


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


def _build_flow(n_features: int, n_conditions: int, s: FlowSettings) -> Flow:
    """The nflows ``Flow`` for the settings (uses the global RNG: call it seeded)."""
    context = s.embedding_features or n_conditions
    transforms: list[Transform] = []
    for i in range(s.n_transforms):
        transforms.extend(_mixing(n_features, s.mixing))
        if s.kind == "coupling":

            def conditioner(n_in: int, n_out: int) -> nn.Module:
                return _ClampedResidualNet(
                    n_in,
                    n_out,
                    hidden_features=s.hidden_features,
                    context_features=context,
                    num_blocks=s.n_blocks,
                    dropout_probability=s.dropout,
                    bound=s.tail_bound,
                )

            transforms.append(
                _RQCoupling(
                    mask=_alternating_mask(n_features, odd=bool(i % 2)),
                    transform_net_create_fn=conditioner,
                    num_bins=s.n_bins,
                    tails="linear",
                    tail_bound=s.tail_bound,
                )
            )
        else:
            transforms.append(
                _RQAutoregressive(
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
            )
    for t in transforms:
        if isinstance(t, _RQCoupling):
            _identity_init(t.transform_net.final_layer, s.n_bins)
        elif isinstance(t, _RQAutoregressive):
            _identity_init(t.autoregressive_net.final_layer, s.n_bins)
    if s.mixing == "lu":
        transforms.append(_LULinear(n_features, identity_init=True))
    embedding = None
    if s.embedding_features:
        embedding = nn.Sequential(
            nn.Linear(n_conditions, s.hidden_features),
            nn.ReLU(),
            nn.Linear(s.hidden_features, s.embedding_features),
        )
    return Flow(CompositeTransform(transforms), StandardNormal([n_features]), embedding)


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------


def save_flow(flow: ConditionalFlow, directory: str | Path, name: str = "flow") -> list[Path]:
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
) -> ConditionalFlow:
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
        build=lambda d, c, settings, seed: ConditionalFlow(d, c, settings, seed=seed),
    )
