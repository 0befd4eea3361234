"""Conditional residual flows (invertible ResNets): ``kind: "residual"``.

Each step is an elementwise affine map (ActNorm) followed by a residual block
``y = x + g(x; c)`` whose branch ``g`` is a contraction in ``x`` (Lipschitz constant at most
``FlowSettings.lipschitz`` < 1, by spectral normalisation), so the block is invertible and its
inverse is the limit of the fixed-point iteration ``x <- y - g(x; c)`` (Banach).  The
log-determinant ``log det(I + J_g)`` is estimated without bias during training (power series,
Hutchinson trace estimator, Russian-roulette truncation) and computed exactly for evaluation
from the full D x D Jacobian, which forward-mode tangents through the branch give without
autograd (so it works under ``torch.inference_mode()``).  See :class:`ResidualFlow`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hepgen.models.flows.base import FlowModule
from hepgen.settings.models import FlowSettings

__all__ = ["ResidualFlow"]

#: Power-series terms the training estimator always evaluates (Chen et al. use 2).
N_EXACT_TERMS = 2
#: Success probability of the geometric number of further terms (expected 1/p - 1 = 1).
ROULETTE_P = 0.5
#: Power iterations that initialise the singular vectors of every normalised weight.
INIT_POWER_ITERATIONS = 50
#: Power iterations per training-mode call (warm-started from the buffers).
TRAIN_POWER_ITERATIONS = 2
#: A fixed-point iteration that stops shrinking within this factor of the tolerance has met
#: float32's resolution: converged.
_STALL_FACTOR = 16.0
#: Rows per chunk of the gradient-free passes (large tensors fall out of the caches).
_CHUNK_ROWS = 8192


class _SpectralLinear(nn.Module):
    """A linear map ``W x (+ b)`` whose weight is rescaled to spectral norm <= ``coef``.

    The effective weight is ``W * min(1, coef / sigma)`` (i-ResNet's soft normalisation:
    a weight already inside the ball is left alone).  In training mode ``sigma`` is the
    power-iteration estimate ``u^T W v`` after two more iterations of the singular-vector
    buffers ``u`` (out,) and ``v`` (in,) (Miyato et al.); in eval mode it is the exact largest
    singular value (``torch.linalg.matrix_norm(W, 2)``, deterministic), so the bound holds to
    float32 rounding however far the power iteration lags behind.
    """

    def __init__(self, in_features: int, out_features: int, coef: float, bias: bool) -> None:
        super().__init__()
        template = nn.Linear(in_features, out_features, bias=bias)
        self.weight = nn.Parameter(template.weight.detach().clone())
        self.bias = nn.Parameter(template.bias.detach().clone()) if bias else None
        self.coef = float(coef)
        u = F.normalize(torch.randn(out_features), dim=0)
        v = F.normalize(torch.randn(in_features), dim=0)
        with torch.no_grad():
            for _ in range(INIT_POWER_ITERATIONS):
                v = F.normalize(self.weight.t() @ u, dim=0, eps=1e-12)
                u = F.normalize(self.weight @ v, dim=0, eps=1e-12)
        self.register_buffer("u", u)
        self.register_buffer("v", v)

    def normalised_weight(self) -> Tensor:
        """The weight rescaled to spectral norm <= ``coef``, shape (out, in)."""
        w = self.weight
        if self.training:
            with torch.no_grad():
                u = self.u
                for _ in range(TRAIN_POWER_ITERATIONS):
                    v = F.normalize(w.t() @ u, dim=0, eps=1e-12)
                    u = F.normalize(w @ v, dim=0, eps=1e-12)
                self.v.copy_(v)
                self.u.copy_(u)
            sigma = self.u.clone() @ (w @ self.v.clone())
        else:
            sigma = torch.linalg.matrix_norm(w, ord=2)
        return w * (self.coef / torch.clamp(sigma, min=self.coef))

    def extra_repr(self) -> str:
        return f"in={self.weight.shape[1]}, out={self.weight.shape[0]}, coef={self.coef:.4g}"


def _silu_slope(h: Tensor, a: Tensor) -> Tensor:
    """The derivative of SiLU at ``h``, given ``a = SiLU(h) = h sigmoid(h)``."""
    s = torch.sigmoid(h)
    if torch.is_grad_enabled():
        return a * (1 - s) + s
    return torch.rsub(s, 1).mul_(a).add_(s)


class _ResidualStep(nn.Module):
    """ActNorm then the residual block ``x + g(clamp(x); c)`` (see :class:`ResidualFlow`).

    The LipSwish activations ``h sigmoid(beta h) / 1.1`` are evaluated as SiLU of ``beta h``
    with ``beta`` and ``1 / (1.1 beta)`` folded into the neighbouring weights (the same
    function, one fused kernel); :meth:`effective` gives those weights once per call.  The
    gradient-free passes go through the rows in chunks of 8192.
    """

    def __init__(self, d: int, context: int, s: FlowSettings, coef: float, bound: float) -> None:
        super().__init__()
        h = s.hidden_features
        self.log_scale = nn.Parameter(torch.zeros(d))
        self.shift = nn.Parameter(torch.zeros(d))
        self.x_in = _SpectralLinear(d, h, coef, bias=False)
        self.c_in = nn.Linear(context, h)
        self.hidden = nn.ModuleList(
            _SpectralLinear(h, h, coef, bias=True) for _ in range(s.n_blocks - 1)
        )
        self.out = _SpectralLinear(h, d, coef, bias=True)
        # LipSwish slopes beta = softplus(raw), one per hidden layer (Chen et al. 2019)
        self.beta_raw = nn.Parameter(torch.full((s.n_blocks,), 0.5))
        self.bound = float(bound)
        self.dropout = float(s.dropout)

    def weights(self) -> list[Tensor]:
        """Normalised weights: the x part of the first layer, the hidden layers, the output."""
        return [layer.normalised_weight() for layer in (self.x_in, *self.hidden, self.out)]

    def effective(self) -> tuple[list[Tensor], list[Tensor], Tensor, Tensor]:
        """Weights and biases with the LipSwish factors folded in (SiLU activations), then
        the context layer's weight and bias (the context's share of the first layer)."""
        betas = F.softplus(self.beta_raw)
        ws = self.weights()
        layers = [*self.hidden, self.out]
        weights = [ws[0] * betas[0]]
        biases = []
        for i, layer in enumerate(layers):
            factor = betas[i + 1] if i + 1 < len(betas) else betas.new_tensor(1.0)
            weights.append(ws[i + 1] * (factor / (1.1 * betas[i])))
            biases.append(layer.bias * factor)
        return weights, biases, self.c_in.weight * betas[0], self.c_in.bias * betas[0]

    def branch(
        self,
        x: Tensor,
        c_pre: Tensor,
        weights: list[Tensor],
        biases: list[Tensor],
        slopes: list[Tensor] | None = None,
        fixed: bool = False,
    ) -> tuple[Tensor, Tensor]:
        """``g(x; c)`` (n, D) and the clamp mask (n, D) (1 inside the bound; ``x`` itself
        when ``slopes`` is None).

        With a list ``slopes``, the slopes of the hidden layers (activation derivative times
        the dropout factor, (n, H) each) are appended to it.  ``fixed`` replaces the
        training-mode dropout mask by its expectation (a fixed map for the inverse)."""
        xc = x.clamp(-self.bound, self.bound)
        mask = (x == xc).to(x.dtype) if slopes is not None else x
        grad = torch.is_grad_enabled()
        pre = torch.addmm(c_pre, xc, weights[0].t())
        for i, bias in enumerate(biases):
            a = F.silu(pre) if grad or slopes is not None else F.silu(pre, inplace=True)
            slope = _silu_slope(pre, a) if slopes is not None else None
            if self.dropout > 0:
                if self.training and not fixed:
                    keep = torch.bernoulli(torch.full_like(a, 1 - self.dropout))
                else:
                    keep = a.new_tensor(1 - self.dropout)
                a = a * keep
                slope = slope * keep if slope is not None else None
            if slope is not None and slopes is not None:
                slopes.append(slope)
            pre = torch.addmm(bias, a, weights[i + 1].t())
        return pre, mask

    @staticmethod
    def jvp(v: Tensor, weights: list[Tensor], slopes: list[Tensor], mask: Tensor) -> Tensor:
        """``J_g v`` per row, v of shape (n, D): one forward-mode tangent pass."""
        t = (v * mask) @ weights[0].t()
        for i, slope in enumerate(slopes):
            t = (t * slope) @ weights[i + 1].t()
        return t

    @staticmethod
    def jacobian(weights: list[Tensor], slopes: list[Tensor], mask: Tensor) -> Tensor:
        """The full Jacobian ``J_g`` (n, D, D): the D unit tangents propagated at once."""
        n, d = mask.shape
        w_in, w_out = weights[0], weights[-1]
        if len(slopes) == 1:
            # J[n, i, j] = sum_h W_out[i, h] slope[n, h] W_in[h, j]: one (n, H) x (H, D^2) product
            pairs = (w_out.t()[:, :, None] * w_in[:, None, :]).reshape(w_in.shape[0], d * d)
            return (slopes[0] @ pairs).view(n, d, d) * mask[:, None, :]
        # t[n, j, :] is the hidden tangent of the unit input direction j
        t = w_in.t()[None] * slopes[0][:, None, :]
        for i in range(1, len(slopes)):
            t = (t @ weights[i].t()) * slopes[i][:, None, :]
        return (t @ w_out.t()).transpose(1, 2) * mask[:, None, :]

    def estimate_logdet(
        self, weights: list[Tensor], slopes: list[Tensor], mask: Tensor
    ) -> tuple[Tensor, int]:
        """Unbiased estimate of ``log det(I + J_g)`` per row (n,) and the number of terms."""
        n, d = mask.shape
        extra = math.floor(math.log1p(-float(torch.rand(()))) / math.log1p(-ROULETTE_P))
        n_terms = N_EXACT_TERMS + extra
        v = torch.randint(0, 2, (n, d), device=mask.device).to(mask.dtype) * 2 - 1
        w = v
        total = mask.new_zeros(n)
        for k in range(1, n_terms + 1):
            w = self.jvp(w, weights, slopes, mask)
            weight = (-1) ** (k + 1) / k
            if k > N_EXACT_TERMS:
                weight /= (1 - ROULETTE_P) ** (k - N_EXACT_TERMS)
            total = total + weight * (w * v).sum(dim=1)
        return total, n_terms

    def exact_logdet(self, weights: list[Tensor], slopes: list[Tensor], mask: Tensor) -> Tensor:
        """``log det(I + J_g)`` per row (n,) from the full Jacobian."""
        eye = torch.eye(mask.shape[1], dtype=mask.dtype, device=mask.device)
        return torch.linalg.slogdet(eye + self.jacobian(weights, slopes, mask))[1]

    def forward_step(self, x: Tensor, c: Tensor, exact: bool) -> tuple[Tensor, Tensor]:
        """The step's output (n, D) and ``log|det|`` (n,), rows in chunks when exact and
        gradient-free."""
        x = x * self.log_scale.exp() + self.shift
        weights, biases, c_weight, c_bias = self.effective()
        chunk = _CHUNK_ROWS if exact and not torch.is_grad_enabled() else x.shape[0]
        outs, logdets = [], []
        for start in range(0, x.shape[0], chunk):
            xs = x[start : start + chunk]
            c_pre = torch.addmm(c_bias, c[start : start + chunk], c_weight.t())
            slopes: list[Tensor] = []
            g, mask = self.branch(xs, c_pre, weights, biases, slopes)
            if exact:
                logdets.append(self.exact_logdet(weights, slopes, mask))
            else:
                logdets.append(self.estimate_logdet(weights, slopes, mask)[0])
            outs.append(xs + g)
        if len(outs) == 1:
            return outs[0], logdets[0] + self.log_scale.sum()
        return torch.cat(outs), torch.cat(logdets) + self.log_scale.sum()

    def inverse_step(
        self, y: Tensor, c: Tensor, tolerance: float, cap: int, index: int
    ) -> tuple[Tensor, int]:
        """The step's inverse by fixed-point iteration (rows in chunks), and the largest
        number of iterations a chunk took."""
        weights, biases, c_weight, c_bias = self.effective()
        parts, most = [], 0
        for start in range(0, y.shape[0], _CHUNK_ROWS):
            rows = slice(start, start + _CHUNK_ROWS)
            c_pre = torch.addmm(c_bias, c[rows], c_weight.t())
            x, used = self._fixed_point(y[rows], c_pre, weights, biases, tolerance, cap, index)
            parts.append(x)
            most = max(most, used)
        x = parts[0] if len(parts) == 1 else torch.cat(parts)
        return (x - self.shift) * (-self.log_scale).exp(), most

    def _fixed_point(
        self,
        y: Tensor,
        c_pre: Tensor,
        weights: list[Tensor],
        biases: list[Tensor],
        tolerance: float,
        cap: int,
        index: int,
    ) -> tuple[Tensor, int]:
        # Rows that pass the test are frozen at the accepted iterate; once at least half of
        # the rows in play are frozen, they are written out and the rest go on alone.
        out = y.clone()
        rows = torch.arange(y.shape[0], device=y.device)
        frozen = torch.zeros(y.shape[0], dtype=torch.bool, device=y.device)
        last_norm = torch.full((y.shape[0],), math.inf, device=y.device)
        xa, ya, ca = y, y, c_pre
        for iteration in range(1, cap + 1):
            xn = ya - self.branch(xa, ca, weights, biases, fixed=True)[0]
            xn = torch.where(frozen[:, None], xa, xn)
            step = (xn - xa).abs()
            scale = xn.abs().clamp(min=1.0)
            relative = step / scale
            norm = step.square().sum(dim=1)
            # converged: within the tolerance; or within 16x it and no longer shrinking, which
            # a contraction never does in exact arithmetic (float32's resolution is reached)
            stalled = (norm >= last_norm) & (relative <= _STALL_FACTOR * tolerance).all(dim=1)
            frozen = frozen | (relative <= tolerance).all(dim=1) | stalled
            last_norm = norm
            frozen = frozen | ~torch.isfinite(step).all(dim=1)  # non-finite rows pass through
            xa = xn
            left = int((~frozen).sum())
            if left == 0:
                break
            if iteration == cap:
                worst = float(relative[~frozen].max().detach())
                raise RuntimeError(
                    f"residual flow: the fixed-point inverse of block {index} did not converge "
                    f"within inverse_max_iterations = {cap} iterations: the largest step is "
                    f"{worst:.3g} x max(1, |x|), above inverse_tolerance = {tolerance:g} "
                    f"({left} of {y.shape[0]} rows); raise inverse_max_iterations or "
                    "inverse_tolerance, or lower lipschitz"
                )
            if 2 * left <= frozen.shape[0]:
                out[rows[frozen]] = xa[frozen]
                keep = ~frozen
                rows, xa, ya, ca = rows[keep], xa[keep], ya[keep], ca[keep]
                frozen, last_norm = frozen[keep], last_norm[keep]
        if rows.shape[0] == y.shape[0]:
            return xa, iteration
        out[rows] = xa
        return out, iteration


class ResidualFlow(FlowModule):
    """Conditional residual flow: ``n_transforms`` steps ActNorm -> ``x + g(x; c)``.

    Step i maps ``a = x * exp(s_i) + b_i`` (a learned elementwise affine map like Glow's
    ActNorm, initialised to the identity: the data are standardised, so there is no
    data-dependent initialisation) and then ``y = a + g_i(a; c)``.  The branch ``g_i`` is an MLP
    of ``n_blocks`` hidden layers ``hidden_features`` wide with LipSwish activations
    (1-Lipschitz): the first layer takes ``W_x clamp(a, -tail_bound, tail_bound) + W_c c' + b``
    with ``c'`` the context or its embedding (``embedding_features > 0``: Linear -> ReLU ->
    Linear, trained jointly).  The weights acting on ``a`` (``W_x``, the hidden and the output
    layers, ``n_blocks + 1`` matrices) are spectrally normalised to ``lipschitz ** (1 /
    (n_blocks + 1))`` each, so ``Lip(g_i in a) <= lipschitz``; ``W_c`` is free.  Beyond the
    tail bound a coordinate no longer moves the branch (its Jacobian column is 0), so outliers
    are translated, never folded.  Dropout (``dropout > 0``) multiplies the hidden
    activations by a 0/1 mask in training and by ``1 - dropout`` otherwise (classic dropout,
    which keeps the Lipschitz bound).

    Spectral norms.  In training mode each normalised weight is ``W min(1, coef / sigma)``
    with ``sigma`` from two power iterations per call on persistent singular-vector buffers
    (state-dict tensors, initialised with 50 iterations); in eval mode ``sigma`` is the exact
    largest singular value (an SVD of each weight per call: deterministic, and the bound is
    exact to float32 rounding, which the convergence of the inverse relies on).

    Log-determinant.  ``log det(I + J_g) = sum_k (-1)^(k+1) tr(J_g^k) / k`` (converges as
    ``||J_g|| < 1``).

    * Training (``self.training`` and gradients enabled): the unbiased Russian-roulette
      estimator of Chen et al. (2019): the first 2 terms always, then a geometric number N of
      further terms (``P(N >= m) = 0.5^m``, so 3 terms on average) each reweighted by
      ``1 / P(N >= m)``; ``tr(J^k)`` by Hutchinson's ``v^T J^k v`` with one Rademacher ``v``
      per row.  ``J^k v`` is k forward-mode tangent passes through the branch (matrix-vector
      products with the normalised weights and the activation slopes), and the gradient is
      back-propagated through the series directly (no Neumann-series gradient trick: memory
      grows with the number of terms, 3 on average).  The randomness comes from torch's
      global RNG.  Cost: 1 pass + (2 + N) tangent passes per step.
    * Otherwise (evaluation, ``no_grad``, ``inference_mode``): exact.  The D unit tangents are
      propagated through the branch together, giving ``J_g`` (n, D, D) (one (n, H) x (H, D^2)
      product with one hidden layer), then ``torch.linalg.slogdet(I + J_g)``.  Cost: 1 pass +
      D tangent passes per step; measured about 3x the time of the forward map alone at
      D = 6, H = 128 on a CPU (the activation slopes cost as much as the pass itself).

    Inverse.  Step by step from the last: ``x_{k+1} = y - g(x_k; c)`` from ``x_0 = y``; a row
    stops when every coordinate moved by at most ``inverse_tolerance * max(1, |x_{k+1}|)``
    (absolute for |x| <= 1, relative beyond), or when its step stopped shrinking while within
    16x that bound: a contraction's steps shrink by ``lipschitz`` or better in exact
    arithmetic, so a step that does not has met float32's resolution (measured at about
    3e-7 x max(1, |x|) at D = 6, H = 128; tolerances down to ~1e-7 therefore mean "to float32
    precision" rather than an error).  The error left in x is about the last step
    (at most ``lipschitz / (1 - lipschitz)`` times it).  A row that becomes non-finite stops
    too (and stays non-finite).  Rows still moving after ``inverse_max_iterations``
    iterations raise ``RuntimeError`` naming the block, the largest relative step reached,
    the tolerance and the cap (with the exact eval-mode bound the iteration contracts, so this
    takes a tolerance below float32's resolution or a cap below about ``log(tolerance) /
    log(lipschitz)``).  Measured: 7 to 9 iterations per block at lipschitz = 0.9 on lightly
    trained flows, 10 to 20 once training has made the bound active (D = 6, tolerance 1e-6),
    each about 0.8 of a forward pass.  The iterations of the last inverse (per step from the
    first, the most over the chunks of 8192 rows) are in :attr:`last_inverse_iterations`, a
    plain attribute (not state).

    Parameters
    ----------
    n_features : int
        D, the number of targets.
    n_conditions : int
        C, the number of context columns.
    settings : FlowSettings
        ``kind="residual"``; uses ``n_transforms``, ``hidden_features``, ``n_blocks`` (hidden
        layers per branch), ``tail_bound``, ``embedding_features``, ``dropout``,
        ``lipschitz``, ``inverse_tolerance`` and ``inverse_max_iterations``.
    seed : int
        Seeds the initialisation (the caller's RNG is left untouched).

    References
    ----------
    J. Behrmann, W. Grathwohl, R. T. Q. Chen, D. Duvenaud, J.-H. Jacobsen, "Invertible
    Residual Networks", ICML 2019, arXiv:1811.00995.
    R. T. Q. Chen, J. Behrmann, D. Duvenaud, J.-H. Jacobsen, "Residual Flows for Invertible
    Generative Modeling", NeurIPS 2019, arXiv:1906.02735.
    T. Miyato, T. Kataoka, M. Koyama, Y. Yoshida, "Spectral Normalization for Generative
    Adversarial Networks", ICLR 2018, arXiv:1802.05957.
    M. F. Hutchinson, "A stochastic estimator of the trace of the influence matrix for
    Laplacian smoothing splines", Commun. Stat. Simul. Comput. 18 (1989) 1059.

    Examples
    --------
    >>> s = FlowSettings(kind="residual", n_transforms=2, hidden_features=16)
    >>> flow = ResidualFlow(3, 2, s, seed=0).eval()
    >>> c = torch.randn(5, 2)
    >>> x = flow.sample(c, generator=torch.Generator().manual_seed(1))
    >>> z, logdet = flow.to_latent(x, c)
    >>> bool(torch.allclose(flow.from_latent(z, c), x, atol=1e-5))
    True
    >>> flow.log_prob(x, c).shape
    torch.Size([5])
    >>> bool((flow.lipschitz_bounds() <= 0.9 + 1e-4).all())
    True
    """

    kinds = ("residual",)

    def __init__(
        self,
        n_features: int,
        n_conditions: int,
        settings: FlowSettings = FlowSettings(kind="residual"),
        seed: int = 0,
    ) -> None:
        super().__init__(n_features, n_conditions, settings, seed)
        s = settings
        coef = s.lipschitz ** (1.0 / (s.n_blocks + 1))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.embedding: nn.Module | None = None
            if s.embedding_features:
                self.embedding = nn.Sequential(
                    nn.Linear(n_conditions, s.hidden_features),
                    nn.ReLU(),
                    nn.Linear(s.hidden_features, s.embedding_features),
                )
            context = s.embedding_features or n_conditions
            self.steps = nn.ModuleList(
                _ResidualStep(n_features, context, s, coef, s.tail_bound)
                for _ in range(s.n_transforms)
            )
        self.last_inverse_iterations: list[int] = []
        self.float()

    def _context(self, c: Tensor) -> Tensor:
        return self.embedding(c) if self.embedding is not None else c

    def _to_latent(self, x: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        c = self._context(c)
        exact = not (self.training and torch.is_grad_enabled())
        total = x.new_zeros(x.shape[0])
        for step in self.steps:
            x, logdet = step.forward_step(x, c, exact)
            total = total + logdet
        return x, total

    def _from_latent(self, z: Tensor, c: Tensor) -> Tensor:
        s = self.settings
        c = self._context(c)
        iterations = []
        x = z
        for index in range(len(self.steps) - 1, -1, -1):
            x, used = self.steps[index].inverse_step(
                x, c, s.inverse_tolerance, s.inverse_max_iterations, index
            )
            iterations.append(used)
        self.last_inverse_iterations = iterations[::-1]
        return x

    def lipschitz_bounds(self) -> Tensor:
        """Per step, the product of the spectral norms of the normalised weights acting on x,
        shape (n_transforms,): an upper bound of ``Lip(g_i in x)``.  In eval mode these are
        the weights every pass uses; in training mode, those of the power iteration (which
        this call advances, as a training pass would)."""
        with torch.no_grad():
            return torch.stack(
                [
                    torch.stack([torch.linalg.matrix_norm(w, ord=2) for w in step.weights()]).prod()
                    for step in self.steps
                ]
            )

    def cost(self) -> dict[str, Any]:
        s, d = self.settings, self.n_features
        return {
            "sample": (
                f"fixed-point iteration: up to {s.inverse_max_iterations} passes per block "
                f"({s.n_transforms} blocks; typically 10-30)"
            ),
            "log_prob": f"1 pass + D = {d} tangent passes per block (exact log-det)",
            "sample_passes": s.inverse_max_iterations,
            "log_prob_passes": 1 + d,
        }
