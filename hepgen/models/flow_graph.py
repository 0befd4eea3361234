"""Static inference graphs of a trained :class:`~hepgen.models.flow.ConditionalFlow`.

A trained flow is an nflows ``CompositeTransform``: per step a permutation, an ``LULinear``,
a spline transform whose conditioner is a residual MLP, and a closing ``LULinear``.  Evaluated
layer by layer in eager PyTorch, a sampling call issues thousands of small operations, of
which the conditioners' matrix products are only half the time.  The graphs here compute the
same function with fewer operations, and without the operations that exporters and compilers
refuse (on the CPU in eager PyTorch they are no faster than the layers: the memory-bound
elementwise work remains; :mod:`hepgen.models.engine` compiles them):

* Every linear piece between two spline transforms (inverse ``LULinear``, permutation,
  coupling split and merge) is folded into **one affine map per step**, its inverse
  precomputed in float64 once; no ``linalg.solve_triangular`` at run time.  The map writes its
  output with the next step's untouched (identity) columns first, so the coupling split is a
  view.
* What depends on the context only (the first layer's context half and every block's context
  layer or gate) is **one matrix product per step**.  (One product for all steps at once was
  slower: its (rows, steps x blocks x hidden) output falls out of the caches.)
* The spline finds its bin by counting knots
  (:func:`~hepgen.models.spline.rational_quadratic_spline`): no ``searchsorted``, no
  data-dependent control flow.

So a graph traces to a fixed sequence of tensor operations: it exports to ONNX (opset 18, both
exporters) and TorchScript and runs under ``torch.compile``.  The autoregressive family keeps
its D passes per step (one per target, as sampling needs), with the MADE masks applied to the
weights once.

``precision="bfloat16"`` evaluates the conditioners' matrix products in bfloat16 (their inputs
rounded to bfloat16, float32 accumulation in the kernels that have it) and everything else in
float32: the spline arithmetic, the affine maps, the log-determinants.  Reduced precision over
the spline itself breaks parity (a bin boundary moves), so it never reaches it; whether the
bf16 conditioners keep a given model's quality is for
:func:`hepgen.models.engine.check_precision` to decide.

Only the function is copied: a graph holds its own tensors (buffers, not parameters), so it
never trains and never changes the flow it came from.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from hepgen.models.spline import (
    ClampedResidualNet,
    LinalgLULinear,
    RQAutoregressiveTransform,
    RQCouplingTransform,
    rational_quadratic_spline,
)

__all__ = ["PRECISIONS", "DensityGraph", "SamplingGraph"]

#: Precisions of the conditioner matrix products; the spline is always float32.
PRECISIONS = ("float32", "bfloat16")

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


# --------------------------------------------------------------------------------------------
# reading the nflows chain
# --------------------------------------------------------------------------------------------


def _steps(flow: Any) -> tuple[list[list[Tensor]], list[nn.Module]]:
    """Split the chain into the linear maps before each spline transform and after the last.

    Returns ``(maps, splines)`` with ``len(maps) == len(splines) + 1``; ``maps[i]`` is the list
    of (D + 1, D) float64 augmented matrices (``[x, 1] @ M``) of the linear transforms between
    spline ``i - 1`` and spline ``i`` in forward order.
    """
    from nflows.transforms import Permutation

    maps: list[list[Tensor]] = [[]]
    splines: list[nn.Module] = []
    for t in flow.flow._transform._transforms:
        if isinstance(t, RQCouplingTransform | RQAutoregressiveTransform):
            splines.append(t)
            maps.append([])
        elif isinstance(t, Permutation):
            maps[-1].append(_permutation_matrix(t._permutation))
        elif isinstance(t, LinalgLULinear):
            maps[-1].append(_lu_matrix(t))
        else:  # pragma: no cover - every ConditionalFlow layer is one of the above
            raise TypeError(f"no graph for the flow layer {type(t).__name__}")
    return maps, splines


def _permutation_matrix(permutation: Tensor) -> Tensor:
    """``out = x[:, perm]`` as ``[x, 1] @ M``."""
    d = len(permutation)
    m = torch.zeros(d + 1, d, dtype=torch.float64)
    m[permutation.cpu(), torch.arange(d)] = 1.0
    return m


def _lu_matrix(layer: LinalgLULinear) -> Tensor:
    """``out = x @ (L U)^T + b`` as ``[x, 1] @ M``."""
    lower, upper = layer._create_lower_upper()
    weight = (lower.double() @ upper.double()).cpu()
    return torch.cat([weight.T, layer.bias.detach().double().cpu()[None]], dim=0)


def _then(first: Tensor, second: Tensor) -> Tensor:
    """Augmented matrix of ``second(first(x))``."""
    d = first.shape[1]
    weight = first[:d] @ second[:-1]
    bias = first[-1] @ second[:-1] + second[-1]
    return torch.cat([weight, bias[None]])


def _chain(matrices: list[Tensor], d: int) -> Tensor:
    out = torch.cat([torch.eye(d, dtype=torch.float64), torch.zeros(1, d, dtype=torch.float64)])
    for m in matrices:
        out = _then(out, m)
    return out


def _inverse(m: Tensor) -> Tensor:
    """Augmented matrix of the inverse map of ``[x, 1] @ m``."""
    d = m.shape[1]
    w_inv = torch.linalg.inv(m[:d])
    return torch.cat([w_inv, (-m[-1] @ w_inv)[None]])


def _layout(spline: nn.Module | None, d: int) -> Tensor:
    """Column order in which a step sees its input: identity columns first for couplings."""
    if isinstance(spline, RQCouplingTransform):
        return torch.cat([spline.identity_features, spline.transform_features]).cpu()
    return torch.arange(d)


def _reorder(m: Tensor, rows: Tensor | None, columns: Tensor | None) -> Tensor:
    """Augmented matrix whose input is laid out in ``rows`` order and whose output in
    ``columns`` order (``None``: natural order)."""
    d = m.shape[1]
    if rows is not None:
        m = torch.cat([m[:d][rows], m[-1:]])
    if columns is not None:
        m = m[:, columns]
    return m


# --------------------------------------------------------------------------------------------
# the graphs
# --------------------------------------------------------------------------------------------


class _FlowGraph(nn.Module):
    """What the sampling and density graphs share: the conditioners, read from the flow."""

    def __init__(self, flow: Any, precision: str = "float32") -> None:
        super().__init__()
        with torch.no_grad():
            self._read(flow, precision)

    def _read(self, flow: Any, precision: str) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.precision = precision
        self.n_features = int(flow.n_features)
        self.n_conditions = int(flow.n_conditions)
        self.kind = flow.settings.kind
        self._mm_dtype = _DTYPES[precision]
        device = next(flow.parameters()).device
        maps, splines = _steps(flow)
        self._maps = maps
        d = self.n_features
        self.layouts = [_layout(s, d) for s in splines]
        self.n_identity = [
            len(s.identity_features) if isinstance(s, RQCouplingTransform) else 0 for s in splines
        ]
        first = splines[0]
        self.n_bins = int(first.num_bins)
        self.tail_bound = float(first.tail_bound)
        self.min_bin_width = float(first.min_bin_width)
        self.min_bin_height = float(first.min_bin_height)
        self.min_derivative = float(first.min_derivative)
        embedding = flow.flow._embedding_net
        self.has_embedding = isinstance(embedding, nn.Sequential)
        if self.has_embedding:
            self._linear("embed0", embedding[0].weight, embedding[0].bias, device)
            self._linear("embed1", embedding[2].weight, embedding[2].bias, device)
        for i, s in enumerate(splines):
            net = s.transform_net if isinstance(s, RQCouplingTransform) else s.autoregressive_net
            if isinstance(s, RQCouplingTransform):
                self._coupling(i, net, device)
            else:
                self._made(i, net, device)
        self.hidden_width = int(flow.settings.hidden_features)
        self.n_blocks = int(flow.settings.n_blocks)

    # -- reading the conditioners -------------------------------------------------------------
    def _linear(self, name: str, weight: Tensor, bias: Tensor | None, device: Any) -> None:
        """Store ``weight`` transposed (in, out), in the matmul dtype, and ``bias`` (float32)."""
        self.register_buffer(
            f"{name}_w", weight.detach().T.contiguous().to(device, self._mm_dtype), persistent=False
        )
        b = bias.detach() if bias is not None else weight.new_zeros(weight.shape[0])
        self.register_buffer(f"{name}_b", b.to(device, torch.float32), persistent=False)

    def _context(self, i: int, terms: list[tuple[Tensor, Tensor]], device: Any) -> None:
        """One product for every context term of step ``i``: the first layer's, then each
        block's, side by side (``(weight (H, C), bias (H,))`` each)."""
        weight = torch.cat([w for w, _ in terms])
        bias = torch.cat([b for _, b in terms])
        self._linear(f"s{i}_ctx", weight, bias, device)

    def _coupling(self, i: int, net: ClampedResidualNet, device: Any) -> None:
        n_id = self.n_identity[i]
        w = net.initial_layer.weight
        self._linear(f"s{i}_in", w[:, :n_id], None, device)
        terms = [(w[:, n_id:], net.initial_layer.bias)]
        terms += [(b.context_layer.weight, b.context_layer.bias) for b in net.blocks]
        self._context(i, terms, device)
        for j, block in enumerate(net.blocks):
            self._linear(
                f"s{i}_b{j}_0", block.linear_layers[0].weight, block.linear_layers[0].bias, device
            )
            self._linear(
                f"s{i}_b{j}_1", block.linear_layers[1].weight, block.linear_layers[1].bias, device
            )
        self._final(i, net, net.final_layer.weight, device)

    def _final(self, i: int, net: nn.Module, weight: Tensor, device: Any) -> None:
        """The conditioner's last layer, with nflows' scaling of the width and height logits
        by 1 / sqrt(hidden_features) folded into its rows (feature-major, 3K - 1 each)."""
        hidden = getattr(net, "hidden_features", None)
        scale = torch.ones(3 * self.n_bins - 1, dtype=weight.dtype, device=weight.device)
        scale[: 2 * self.n_bins] = 1.0 / float(hidden) ** 0.5 if hidden else 1.0
        scale = scale.repeat(weight.shape[0] // len(scale))
        bias = net.final_layer.bias
        self._linear(f"s{i}_out", weight * scale[:, None], bias * scale, device)

    def _made(self, i: int, net: nn.Module, device: Any) -> None:
        def masked(layer: nn.Module) -> Tensor:
            return layer.weight * layer.mask

        self._linear(f"s{i}_in", masked(net.initial_layer), net.initial_layer.bias, device)
        terms = [(net.context_layer.weight, net.context_layer.bias)]
        terms += [(b.context_layer.weight, b.context_layer.bias) for b in net.blocks]
        self._context(i, terms, device)
        for j, block in enumerate(net.blocks):
            l0, l1 = block.linear_layers
            self._linear(f"s{i}_b{j}_0", masked(l0), l0.bias, device)
            self._linear(f"s{i}_b{j}_1", masked(l1), l1.bias, device)
        self._final(i, net, masked(net.final_layer), device)

    # -- evaluation pieces --------------------------------------------------------------------
    def _mm(self, x: Tensor, name: str) -> Tensor:
        """``x @ W + b`` of the stored layer ``name``, float32 out."""
        w = getattr(self, f"{name}_w")
        b = getattr(self, f"{name}_b")
        if self._mm_dtype == torch.float32:
            return torch.addmm(b, x, w)
        return torch.mm(x.to(self._mm_dtype), w).float() + b

    def _embedded(self, c: Tensor) -> Tensor:
        """The context the conditioners see (the embedding net's output, when there is one)."""
        if self.has_embedding:
            return self._mm(torch.relu(self._mm(c, "embed0")), "embed1")
        return c

    def _terms(self, i: int, c: Tensor) -> list[Tensor]:
        """The context terms of step ``i``: the first layer's (ReLU for MADE), then one per
        block (the sigmoid gates of a coupling net), from one product.  Computed step by step,
        not for all steps at once: a (rows, steps x blocks x hidden) block of them falls out
        of the caches and was slower than the separate products."""
        out = self._mm(c, f"s{i}_ctx")
        h = self.hidden_width
        first, rest = out[:, :h], out[:, h:]
        if self.kind == "coupling":
            rest = torch.sigmoid(rest)
        else:
            first = torch.relu(first)
        return [first] + [rest[:, j * h : (j + 1) * h] for j in range(self.n_blocks)]

    def _conditioner(self, i: int, x: Tensor, terms: list[Tensor], out: str = "out") -> Tensor:
        """Spline parameters of step ``i`` (rows, outputs of the net's layer ``out``) for
        conditioner inputs ``x`` (already in the step's layout) and the step's context
        ``terms`` (:meth:`_terms`)."""
        x = x.clamp(-self.tail_bound, self.tail_bound)
        h = self._mm(x, f"s{i}_in").add_(terms[0])
        coupling = self.kind == "coupling"
        for j, term in enumerate(terms[1:]):
            t = self._mm(torch.relu(h), f"s{i}_b{j}_0")
            if coupling:
                t = self._mm(t.relu_(), f"s{i}_b{j}_1").mul_(term)
            else:
                t = self._mm(t.add_(term).relu_(), f"s{i}_b{j}_1")
            h = h.add_(t)
        return self._mm(h, f"s{i}_{out}")

    def _spline(self, i: int, v: Tensor, params: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        k = self.n_bins
        params = params.view(v.shape[0], v.shape[1], 3 * k - 1)
        return rational_quadratic_spline(
            v,
            params[..., :k],
            params[..., k : 2 * k],
            params[..., 2 * k :],
            inverse=inverse,
            tail_bound=self.tail_bound,
            min_bin_width=self.min_bin_width,
            min_bin_height=self.min_bin_height,
            min_derivative=self.min_derivative,
            with_logabsdet=not inverse,
        )

    def _affine(self, name: str, m: Tensor, device: Any) -> None:
        """Store an augmented (D + 1, D) float64 matrix as float32 weight and bias."""
        d = m.shape[1]
        self.register_buffer(
            f"{name}_w", m[:d].to(device, torch.float32).contiguous(), persistent=False
        )
        self.register_buffer(f"{name}_b", m[-1].to(device, torch.float32), persistent=False)


class SamplingGraph(_FlowGraph):
    """``x = f^-1(z; c)`` of a :class:`~hepgen.models.flow.ConditionalFlow` as a static graph.

    Parameters
    ----------
    flow : ConditionalFlow
        The trained flow (left untouched; its current weights are copied).
    precision : {"float32", "bfloat16"}
        Dtype of the conditioners' matrix products; the spline and the affine maps are
        always float32.

    Notes
    -----
    ``forward(z, c)`` takes the base-space draws ``z`` (n, D) and the contexts ``c`` (n, C),
    both float32 on the graph's device, and returns the samples (n, D): for the same ``z``
    the samples of :meth:`ConditionalFlow.from_latent` up to float32 rounding (about 1e-6 in
    float32; for bfloat16 see :func:`hepgen.models.engine.check_precision`).  The noise is
    the caller's, so a graph is a pure function: exported, it needs no random-number
    generator.

    Examples
    --------
    >>> import torch
    >>> from hepgen.models.flow import ConditionalFlow, FlowSettings
    >>> flow = ConditionalFlow(3, 2, FlowSettings(n_transforms=2, hidden_features=16), seed=1)
    >>> graph = SamplingGraph(flow)
    >>> z, c = torch.randn(5, 3), torch.randn(5, 2)
    >>> bool(torch.allclose(graph(z, c), flow.from_latent(z, c), atol=1e-5))
    True
    """

    def _read(self, flow: Any, precision: str) -> None:
        super()._read(flow, precision)
        device = next(flow.parameters()).device
        maps, layouts, n = self._maps, self.layouts, len(self.layouts)
        for t in range(n + 1):
            m = _inverse(_chain(maps[t], self.n_features))
            rows = layouts[t] if t < n else None
            columns = layouts[t - 1] if t > 0 else None
            self._affine(f"map{t}", _reorder(m, rows, columns), device)
        if self.kind == "autoregressive":
            width = 3 * self.n_bins - 1
            for i in range(n):
                w, b = getattr(self, f"s{i}_out_w"), getattr(self, f"s{i}_out_b")
                for col in range(self.n_features):
                    part = slice(col * width, (col + 1) * width)
                    self.register_buffer(
                        f"s{i}_out{col}_w", w[:, part].contiguous(), persistent=False
                    )
                    self.register_buffer(f"s{i}_out{col}_b", b[part].contiguous(), persistent=False)
        del self._maps

    def forward(self, z: Tensor, c: Tensor) -> Tensor:
        c = self._embedded(c)
        n = len(self.layouts)
        y = torch.addmm(self.map_b(n), z, self.map_w(n))
        for i in range(n - 1, -1, -1):
            terms = self._terms(i, c)
            if self.kind == "coupling":
                k = self.n_identity[i]
                identity = y[:, :k]
                params = self._conditioner(i, identity, terms)
                x, _ = self._spline(i, y[:, k:], params, inverse=True)
                y = torch.cat([identity, x], dim=1)
            else:
                y = self._made_inverse(i, y, terms)
            y = torch.addmm(self.map_b(i), y, self.map_w(i))
        return y

    def _made_inverse(self, i: int, y: Tensor, terms: list[Tensor]) -> Tensor:
        # Pass j fixes column j; its parameters depend on the columns < j only.
        d = self.n_features
        columns: list[Tensor] = []
        zeros = y.new_zeros((y.shape[0], d))
        for j in range(d):
            current = torch.cat([*columns, zeros[:, j:]], dim=1) if columns else zeros
            params = self._conditioner(i, current, terms, out=f"out{j}")
            x, _ = self._spline(i, y[:, j : j + 1], params, inverse=True)
            columns.append(x)
        return torch.cat(columns, dim=1)

    def map_w(self, t: int) -> Tensor:
        return getattr(self, f"map{t}_w")

    def map_b(self, t: int) -> Tensor:
        return getattr(self, f"map{t}_b")


class DensityGraph(_FlowGraph):
    """``log p(x | c)`` of a :class:`~hepgen.models.flow.ConditionalFlow` as a static graph.

    Parameters
    ----------
    flow : ConditionalFlow
        The trained flow (left untouched; its current weights are copied).
    precision : {"float32", "bfloat16"}
        Dtype of the conditioners' matrix products; the spline, the affine maps and the
        log-determinants are always float32.

    Notes
    -----
    ``forward(x, c)`` takes targets (n, D) and contexts (n, C), float32, and returns
    ``log p(x | c)`` (n,) in nats, model space: :meth:`ConditionalFlow.log_prob` up to float32
    rounding.  The log-determinant of the affine maps is a constant of the graph (computed in
    float64).

    Examples
    --------
    >>> import torch
    >>> from hepgen.models.flow import ConditionalFlow, FlowSettings
    >>> flow = ConditionalFlow(3, 2, FlowSettings(n_transforms=2, hidden_features=16), seed=1)
    >>> x, c = torch.randn(5, 3), torch.randn(5, 2)
    >>> bool(torch.allclose(DensityGraph(flow)(x, c), flow.log_prob(x, c), atol=1e-4))
    True
    """

    def _read(self, flow: Any, precision: str) -> None:
        super()._read(flow, precision)
        device = next(flow.parameters()).device
        maps, layouts, n = self._maps, self.layouts, len(self.layouts)
        log_det = 0.0
        for t in range(n + 1):
            m = _chain(maps[t], self.n_features)
            log_det += float(torch.linalg.slogdet(m[:-1]).logabsdet)
            rows = layouts[t - 1] if t > 0 else None
            columns = layouts[t] if t < n else None
            self._affine(f"map{t}", _reorder(m, rows, columns), device)
        d = self.n_features
        self.constant = log_det - 0.5 * d * math.log(2.0 * math.pi)
        del self._maps

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        c = self._embedded(c)
        n = len(self.layouts)
        y = torch.addmm(self.map0_b, x, self.map0_w)
        total = x.new_zeros(x.shape[0])
        for i in range(n):
            terms = self._terms(i, c)
            if self.kind == "coupling":
                k = self.n_identity[i]
                identity = y[:, :k]
                params = self._conditioner(i, identity, terms)
                out, lad = self._spline(i, y[:, k:], params, inverse=False)
                y = torch.cat([identity, out], dim=1)
            else:
                params = self._conditioner(i, y, terms)
                y, lad = self._spline(i, y, params, inverse=False)
            total = total + lad.sum(dim=1)
            y = torch.addmm(getattr(self, f"map{i + 1}_b"), y, getattr(self, f"map{i + 1}_w"))
        return total - 0.5 * (y * y).sum(dim=1) + self.constant
