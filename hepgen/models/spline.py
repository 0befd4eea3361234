"""The rational-quadratic spline of Neural Spline Flows and the nflows layers that evaluate it.

:func:`rational_quadratic_spline` is nflows' ``unconstrained_rational_quadratic_spline`` with
linear tails (same parametrisation, so state dicts move freely between the two) written for
float32 sampling: a robust inverse (nflows issue 87) and no boolean-mask indexing.  The nflows
subclasses here route nflows' coupling and masked autoregressive transforms through it, feed
their conditioners inputs clamped to the tail bound, and invert ``LULinear`` with
``torch.linalg``.  :class:`~hepgen.models.flow.ConditionalFlow` assembles them; its Notes say
which nflows 0.14 pitfall each one answers.

References
----------
C. Durkan, A. Bekasov, I. Murray, G. Papamakarios, "Neural Spline Flows", NeurIPS 2019,
arXiv:1906.04032.
G. Papamakarios, T. Pavlakou, I. Murray, "Masked Autoregressive Flow for Density Estimation",
NeurIPS 2017, arXiv:1705.07057.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from nflows.nn.nets import ResidualNet
from nflows.transforms import (
    LULinear,
    MaskedPiecewiseRationalQuadraticAutoregressiveTransform,
    PiecewiseRationalQuadraticCouplingTransform,
)
from torch import Tensor, nn

__all__ = [
    "MIN_BIN_HEIGHT",
    "MIN_BIN_WIDTH",
    "MIN_DERIVATIVE",
    "ClampedResidualNet",
    "LinalgLULinear",
    "RQAutoregressiveTransform",
    "RQCouplingTransform",
    "rational_quadratic_spline",
    "without_logabsdet",
]

#: nflows' defaults: every bin is at least 1e-3 of the interval wide and high, every interior
#: knot derivative at least 1e-3.
MIN_BIN_WIDTH = 1e-3
MIN_BIN_HEIGHT = 1e-3
MIN_DERIVATIVE = 1e-3


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
    [0, 1] (see the Notes; nflows issue 87).

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

    Notes
    -----
    The inverse solves a quadratic ``a xi^2 + b xi + c = 0`` per element.  nflows asserts
    that its discriminant ``b^2 - 4ac`` is non-negative, which fails in float32 when ``b^2``
    and ``4ac`` nearly cancel (small knot derivatives, inputs near a knot): a whole sampling
    run dies on one event.  Here the discriminant is clamped at 0, the bin coordinate ``xi``
    to [0, 1], and each root is taken in the form without cancellation for the sign of ``b``
    (nflows uses one form for both; on extreme splines this cut the float32 error of
    ``forward(inverse(y)) - y`` from 4e-3 to 2e-5).  Why clamp rather than re-draw the
    offending rows: for an input inside its bin the exact discriminant is non-negative (it
    equals ``(h d_k)^2`` and ``(h d_{k+1})^2`` at the two knots), so a negative value is pure
    rounding of order ``eps * b^2``; clamping changes the root by a rounding-sized amount,
    whereas re-drawing would reject exactly the events near knots with small derivatives,
    i.e. bias the sampled distribution, and would make the number of random draws data
    dependent.

    nflows selects the in-interval elements with boolean-mask indexing (data-dependent
    shapes: a host sync on GPUs, graph breaks under ``torch.compile``); this function
    evaluates every element (out-of-interval ones on clamped inputs, so no NaN reaches the
    gradient) and selects with ``torch.where``.

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
    # Bin k holds knots[k] <= v < knots[k + 1]; v == B belongs to the last bin: k is the
    # number of interior knots <= v.  A comparison count rather than torch.searchsorted: the
    # same index, no data-dependent search, and it exports (ONNX has no searchsorted) and
    # fuses under torch.compile.
    idx = (v.unsqueeze(-1) >= knots[..., 1:-1]).sum(dim=-1, keepdim=True)
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
    with_logabsdet = not transform.skip_logabsdet
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


class ClampedResidualNet(ResidualNet):
    """nflows' ``ResidualNet`` that sees its inputs clamped to [-bound, bound] (state dict
    unchanged): a coupling conditioner, fed the untouched half of the features.

    Parameters
    ----------
    *args, **kwargs
        Those of ``nflows.nn.nets.ResidualNet`` (in_features, out_features,
        hidden_features, context_features, num_blocks, ...).
    bound : float
        The tail bound of the splines the net parametrises (model-space units).

    Notes
    -----
    Beyond the tail bound a coordinate passes through its own spline unchanged, but it is
    also an input of the conditioners of the other coordinates, whose ReLU networks
    extrapolate linearly: at 10 sigma they put out extreme spline parameters (bins of
    near-zero slope), and the inverse loses all float32 precision there (round-trip errors of
    order 1 were measured on untrained autoregressive flows).  Clamping the conditioner's
    inputs (elementwise, so the coupling structure is kept) gives an outlier the spline
    parameters of the boundary; inside [-bound, bound] the net is, for the same weights,
    nflows' own.  :class:`RQAutoregressiveTransform` does the same for MADE.

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


class RQCouplingTransform(PiecewiseRationalQuadraticCouplingTransform):
    """nflows' RQ coupling transform evaluated by :func:`rational_quadratic_spline`.

    Constructor and state dict are those of
    ``nflows.transforms.PiecewiseRationalQuadraticCouplingTransform``.  While the attribute
    ``skip_logabsdet`` is true (see :func:`without_logabsdet`) the spline returns zeros for
    the log-Jacobian.
    """

    @property
    def skip_logabsdet(self) -> bool:
        """Whether this thread samples with this transform (:func:`without_logabsdet`)."""
        return id(self) in _skipped()

    def _piecewise_cdf(
        self, inputs: Tensor, transform_params: Tensor, inverse: bool = False
    ) -> tuple[Tensor, Tensor]:
        return _spline_of_params(self, inputs, transform_params, self.transform_net, inverse)


class RQAutoregressiveTransform(MaskedPiecewiseRationalQuadraticAutoregressiveTransform):
    """nflows' masked autoregressive RQ transform evaluated by :func:`rational_quadratic_spline`.

    Constructor and state dict are those of
    ``nflows.transforms.MaskedPiecewiseRationalQuadraticAutoregressiveTransform``.  The MADE
    conditioner sees its inputs clamped to the tail bound (see :class:`ClampedResidualNet`).
    While ``skip_logabsdet`` is true (see :func:`without_logabsdet`) the inverse computes
    only what sampling needs: pass i inverts the spline of column i alone.
    """

    @property
    def skip_logabsdet(self) -> bool:
        """Whether this thread samples with this transform (:func:`without_logabsdet`)."""
        return id(self) in _skipped()

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
        if not self.skip_logabsdet:
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


#: Per thread, the ids of the spline transforms that skip their log-Jacobian: another thread
#: evaluating log p with the same model while this one samples must not see the flag.
_SKIP = threading.local()


def _skipped() -> set[int]:
    ids = getattr(_SKIP, "ids", None)
    if ids is None:
        ids = _SKIP.ids = set()
    return ids


@contextmanager
def without_logabsdet(module: nn.Module) -> Iterator[None]:
    """Within the block, the spline transforms inside ``module`` skip their log-Jacobian.

    For sampling, where the inverse's log-Jacobian is discarded: the splines return zeros in
    its place and skip that arithmetic.  The flag is reset on exit, also after an error, and
    it holds for the calling thread only: other threads may evaluate log p with the same
    model meanwhile.

    Parameters
    ----------
    module : torch.nn.Module
        Any module; its :class:`RQCouplingTransform` and :class:`RQAutoregressiveTransform`
        submodules are affected.
    """
    ids = {
        id(m)
        for m in module.modules()
        if isinstance(m, RQCouplingTransform | RQAutoregressiveTransform)
    }
    skipped = _skipped()
    new = ids - skipped  # nested blocks leave the outer block's flags alone
    skipped |= new
    try:
        yield
    finally:
        skipped -= new


class LinalgLULinear(LULinear):
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
