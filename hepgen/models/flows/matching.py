"""Conditional flow matching (``kind: "flow-matching"``): a continuous flow whose velocity field
is trained by regression on straight (optimal-transport) conditional paths.

Time runs from t = 0 (the standard normal base) to t = 1 (the data).  Training draws
x0 ~ N(0, I) and a time t per event and regresses the velocity field v(x, t; c) on the
conditional OT path of Lipman et al.,

    x_t = (1 - (1 - sigma_min) t) x0 + t x1,        u = x1 - (1 - sigma_min) x0,

(the per-event loss is ``mean over the D columns of (v(x_t, t; c) - u)^2``), with t drawn
from the logit-normal distribution, ``t = sigmoid(N(0, 1))`` (Esser et al. 2024), rather than
U(0, 1): it spends the training on the middle of the paths, where the regression target is
least predictable, rather than on the ends, where the optimal field is simple (at t = 0 the
conditional mean minus x; at t = 1 the point has arrived); for the same training it gave a clearly better classifier AUC on the jets task
(see :class:`FlowMatching`).  Sampling integrates dx/dt = v from t = 0 to 1 with a fixed-step or adaptive solver
(:mod:`hepgen.models.flows.ode`); densities integrate backwards from t = 1 to 0 with the
instantaneous change of variables, ``log p_1(x) = log N(z) - int_0^1 div v(x_t, t) dt``, the
divergence computed exactly by pushing the D unit tangents through the network by hand (no
autograd, so it runs under ``torch.inference_mode``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hepgen.models.flows.base import FlowModule, check_rows
from hepgen.models.flows.ode import FIXED_STEP_METHODS, augment, dopri5, integrate_fixed
from hepgen.settings.models import SAMPLERS, FlowSettings

__all__ = [
    "ACTIVATION",
    "CHUNK_ROWS",
    "DENSITY_CHUNK_ROWS",
    "EVAL_SEED",
    "INPUT_BOUND_FACTOR",
    "MAX_ODE_STEPS",
    "SIGMA_MIN",
    "TIME_FREQUENCIES",
    "FlowMatching",
    "VelocityField",
    "time_features",
]

#: Width of the conditional paths at the data end (t = 1), model-space units.
SIGMA_MIN = 1e-4
#: The velocity network sees targets and contexts clamped to +-INPUT_BOUND_FACTOR * tail_bound.
INPUT_BOUND_FACTOR = 3.0
#: Step cap (accepted and rejected) of the adaptive solver per call.
MAX_ODE_STEPS = 2000
#: Rows integrated together by sampling (one step size per chunk for the adaptive solver);
#: larger batches are split, which keeps the hidden layers in the caches.
CHUNK_ROWS = 4096
#: Rows integrated together by densities: their D tangents make each row D + 1 times larger
#: (1024 rows ran 1.8x faster per row than 4096 on one CPU core, D = 7, 128 hidden).
DENSITY_CHUNK_ROWS = 1024
#: Seed of the noise and times of the loss in eval mode (validation losses comparable).
EVAL_SEED = 0
#: Time features: t and sin/cos(pi * f * t) for these f.
TIME_FREQUENCIES = (1.0, 2.0, 4.0)
#: Activation of the velocity network: "silu" (smooth) or "relu" (cheaper on the CPU).
ACTIVATION = "silu"


def time_features(t: Tensor) -> Tensor:
    """Time embedding of the velocity field.

    Parameters
    ----------
    t : Tensor of shape (...)
        Times in [0, 1].

    Returns
    -------
    Tensor of shape (..., 1 + 2 * len(TIME_FREQUENCIES))
        ``[t, sin(pi f t), cos(pi f t) for f in TIME_FREQUENCIES]``.
    """
    freqs = torch.tensor(TIME_FREQUENCIES, dtype=t.dtype, device=t.device) * math.pi
    angles = t.unsqueeze(-1) * freqs
    return torch.cat((t.unsqueeze(-1), torch.sin(angles), torch.cos(angles)), dim=-1)


def _act(h: Tensor, kind: str) -> Tensor:
    return torch.relu(h) if kind == "relu" else F.silu(h)


def _act_grad(h: Tensor, kind: str) -> Tensor:
    if kind == "relu":
        return (h > 0).to(h.dtype)
    s = torch.sigmoid(h)
    return s * (1.0 + h * (1.0 - s))


class VelocityField(nn.Module):
    """Residual MLP v(x, t; c) of a flow-matching model, with its exact divergence in x.

    ``h = W_x clamp(x) + e_0``, then ``n_blocks`` residual blocks
    ``h <- h + W2_k a(W1_k a(h) + e_k)`` and ``v = W_out a(h) + b_out``, where
    ``e_k = U_k c + V_k phi(t) + b_k`` brings the context and the time into every block,
    ``a`` is the activation (:data:`ACTIVATION`) and ``phi`` the time features
    (:func:`time_features`).

    Parameters
    ----------
    n_features : int
        D, the columns of x and v.
    n_context : int
        Columns of the (already embedded) context c.
    hidden_features : int
        Width H of the hidden layers.
    n_blocks : int
        Residual blocks (two linear layers each).
    bound : float
        x is clamped to [-bound, bound] on entry (model-space units).
    dropout : float
        Dropout probability between the two layers of each block (training mode only).

    Notes
    -----
    The context terms ``U_k c + b_k`` of all blocks are one product (:meth:`context_term`),
    which a solver computes once per call; the time terms ``V_k phi(t)`` are one (H,) vector
    per step for the whole batch.  The linear layers inside the blocks have no bias (``b_k``
    takes its place), so each is one fused ``addmm``.  :meth:`with_divergence` propagates the
    D unit tangents of x (zero where the clamp is active) through the same layers: the trace
    of dv/dx exactly, at about D + 1 times the cost of a forward pass.
    """

    def __init__(
        self,
        n_features: int,
        n_context: int,
        hidden_features: int,
        n_blocks: int,
        bound: float,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        n_time = 1 + 2 * len(TIME_FREQUENCIES)
        width = hidden_features * (1 + n_blocks)
        self.bound = float(bound)
        self.hidden_features = hidden_features
        self.activation = ACTIVATION
        self.x_layer = nn.Linear(n_features, hidden_features, bias=False)
        self.c_layer = nn.Linear(n_context, width)
        self.t_layer = nn.Linear(n_time, width, bias=False)
        self.blocks = nn.ModuleList(
            nn.ModuleList(
                (
                    nn.Linear(hidden_features, hidden_features, bias=False),
                    nn.Linear(hidden_features, hidden_features, bias=False),
                )
            )
            for _ in range(n_blocks)
        )
        self.out_layer = nn.Linear(hidden_features, n_features)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    def context_term(self, c: Tensor) -> Tensor:
        """``U c + b`` (n, H * (1 + n_blocks)): the context part of every block's input, once
        per solver call."""
        return self.c_layer(c)

    def _terms(self, x: Tensor, t: float | Tensor, context_term: Tensor) -> list[Tensor]:
        if isinstance(t, Tensor):
            time_term = self.t_layer(time_features(t.to(x.dtype)))  # (n, width)
        else:
            tt = torch.tensor(float(t), dtype=x.dtype, device=x.device)
            time_term = self.t_layer(time_features(tt))  # (width,)
        return list((context_term + time_term).split(self.hidden_features, dim=1))

    def forward(self, x: Tensor, t: float | Tensor, context_term: Tensor) -> Tensor:
        """Velocity, shape (n, D), of x (n, D) at time t (a float or a tensor (n,)), given
        :meth:`context_term`."""
        act = self.activation
        terms = self._terms(x, t, context_term)
        h = torch.addmm(terms[0], x.clamp(-self.bound, self.bound), self.x_layer.weight.t())
        for (first, second), term in zip(self.blocks, terms[1:], strict=True):
            r = _act(torch.addmm(term, _act(h, act), first.weight.t()), act)
            if self.dropout is not None:
                r = self.dropout(r)
            h = torch.addmm(h, r, second.weight.t())
        return self.out_layer(_act(h, act))

    def with_divergence(
        self, x: Tensor, t: float | Tensor, context_term: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Velocity (n, D) and its exact divergence ``tr(dv/dx)`` (n,), 1/time units."""
        act = self.activation
        terms = self._terms(x, t, context_term)
        inside = (x.abs() < self.bound).to(x.dtype)
        h = torch.addmm(terms[0], x.clamp(-self.bound, self.bound), self.x_layer.weight.t())
        # tangents[r, i, :] = dh[r] / dx[r, i]
        tangents = inside.unsqueeze(-1) * self.x_layer.weight.t().unsqueeze(0)
        for (first, second), term in zip(self.blocks, terms[1:], strict=True):
            a_tan = _act_grad(h, act).unsqueeze(1) * tangents
            pre = torch.addmm(term, _act(h, act), first.weight.t())
            r = _act(pre, act)
            r_tan = _act_grad(pre, act).unsqueeze(1) * (a_tan @ first.weight.t())
            if self.dropout is not None and self.training:
                keep = self.dropout(torch.ones_like(r))
                r, r_tan = r * keep, r_tan * keep.unsqueeze(1)
            h = torch.addmm(h, r, second.weight.t())
            tangents = tangents + r_tan @ second.weight.t()
        v = self.out_layer(_act(h, act))
        out_tan = _act_grad(h, act).unsqueeze(1) * tangents  # (n, D, H)
        div = (out_tan * self.out_layer.weight.unsqueeze(0)).sum(dim=(1, 2))
        return v, div


class FlowMatching(FlowModule):
    """Conditional flow matching with a residual-MLP velocity field and ODE samplers.

    Parameters
    ----------
    n_features : int
        D, target columns.
    n_conditions : int
        C, context columns.
    settings : FlowSettings
        ``kind="flow-matching"``; uses ``hidden_features`` and ``n_blocks`` (the velocity
        field), ``embedding_features`` (context MLP C -> hidden -> E first, when > 0),
        ``dropout``, ``tail_bound`` (targets and contexts are clamped to
        +-:data:`INPUT_BOUND_FACTOR` ``* tail_bound`` at the network's entry), ``sampler``
        and ``n_steps`` (sampling), ``ode_tolerance`` (adaptive solver: sampling with
        ``"dopri5"`` and every density).
    seed : int
        Initialisation seed (the caller's global RNG is left untouched).

    Notes
    -----
    * Loss (:meth:`loss`): per event the mean over the D columns of the squared error of the
      velocity against the conditional OT target, t logit-normal (module docstring).  The
      pairs (x0, x1) are independent (Tong et al.'s I-CFM): a minibatch-OT coupling would
      pair the noise with targets of other contexts, and the noise given a context would no
      longer be N(0, I).  In training mode x0 and t come from the global RNG; in eval mode
      from a generator seeded with :data:`EVAL_SEED` on the input's device, so the
      validation loss is a deterministic function of the weights.
    * Sampling (:meth:`from_latent`): ``settings.sampler`` with ``settings.n_steps`` steps
      (``"euler"``, ``"midpoint"``, ``"rk4"``) or adaptive ``"dopri5"`` at
      ``atol = rtol = settings.ode_tolerance``.  :meth:`set_sampler` changes it after
      training.
    * Densities (:meth:`log_prob`, :meth:`to_latent`): dopri5 from t = 1 back to t = 0 on the
      augmented state ``[x, l]`` with ``dl/dt = div v`` exactly (``l(1) = 0``), so
      ``log|det dz/dx| = l(0) = -int_0^1 div v dt``.
    * Float32 safety: the network sees x and c clamped to +-3 ``tail_bound`` (12 standard
      deviations by default: no real standardised row is touched, and a row at 1e4 gets the
      velocity of the boundary, so v is bounded for any finite input and no row can blow up
      the solver; beyond the clamp x moves with a constant velocity and that coordinate's
      divergence is 0, the exact derivative of the clamped field).  The adaptive solver
      raises :class:`~hepgen.models.flows.ode.ODEStepLimitError` after
      :data:`MAX_ODE_STEPS` steps rather than hang.
    * Cost: a fixed-step draw is ``steps x stages`` passes of the velocity MLP (the context
      product once per call); a density is an adaptive dopri5 solve whose every evaluation
      carries D tangents, about D + 1 forward passes, so ``log_prob`` is one to two orders
      of magnitude slower than sampling.

    References
    ----------
    Y. Lipman, R. T. Q. Chen, H. Ben-Hamu, M. Nickel, M. Le, "Flow Matching for Generative
    Modeling", ICLR 2023, arXiv:2210.02747; A. Tong et al., "Improving and generalizing
    flow-based generative models with minibatch optimal transport", TMLR 2024,
    arXiv:2302.00482; R. T. Q. Chen et al., "Neural Ordinary Differential Equations",
    NeurIPS 2018, arXiv:1806.07366; W. Grathwohl et al., "FFJORD", ICLR 2019,
    arXiv:1810.01367; F. Vaselli et al. (CMS), "End-to-end simulation of particle physics
    events with flow matching and generator oversampling", arXiv:2402.13684; J. R. Dormand,
    P. J. Prince, J. Comput. Appl. Math. 6 (1980) 19; P. Esser et al., "Scaling Rectified
    Flow Transformers for High-Resolution Image Synthesis", arXiv:2403.03206 (logit-normal t).

    Examples
    --------
    >>> import torch
    >>> s = FlowSettings(kind="flow-matching", hidden_features=16, n_blocks=1, n_steps=2)
    >>> flow = FlowMatching(2, 1, s, seed=0)
    >>> c = torch.zeros(5, 1)
    >>> flow.sample(c, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([5, 2])
    >>> flow.log_prob(torch.zeros(5, 2), c).shape
    torch.Size([5])
    >>> flow.loss(torch.zeros(5, 2), c).shape
    torch.Size([5])
    >>> flow.cost()["sample_passes"]
    4
    >>> flow.set_sampler("rk4", 3).settings.sampler
    'rk4'
    """

    kinds = ("flow-matching",)

    def __init__(
        self,
        n_features: int,
        n_conditions: int,
        settings: FlowSettings = FlowSettings(kind="flow-matching"),
        seed: int = 0,
    ) -> None:
        super().__init__(n_features, n_conditions, settings, seed)
        self.input_bound = INPUT_BOUND_FACTOR * float(settings.tail_bound)
        hidden = settings.hidden_features
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if settings.embedding_features > 0:
                self.embedding: nn.Module | None = nn.Sequential(
                    nn.Linear(n_conditions, hidden),
                    nn.ReLU(),
                    nn.Linear(hidden, settings.embedding_features),
                )
                n_context = settings.embedding_features
            else:
                self.embedding = None
                n_context = n_conditions
            self.velocity = VelocityField(
                n_features,
                n_context,
                hidden,
                settings.n_blocks,
                bound=self.input_bound,
                dropout=settings.dropout,
            )
        self.float()

    # -- pieces ---------------------------------------------------------------------------------

    def _context_term(self, c: Tensor) -> Tensor:
        c = c.clamp(-self.input_bound, self.input_bound)
        if self.embedding is not None:
            c = self.embedding(c)
        return self.velocity.context_term(c)

    def velocity_at(self, x: Tensor, t: float | Tensor, c: Tensor) -> Tensor:
        """The velocity field v(x, t; c), shape (n, D), for x (n, D), c (n, C) and t a float or
        a tensor (n,) of times in [0, 1] (model-space units per unit time)."""
        return self.velocity(x, t, self._context_term(c))

    # -- the protocol ---------------------------------------------------------------------------

    def _from_latent(self, z: Tensor, c: Tensor) -> Tensor:
        if z.shape[0] > CHUNK_ROWS:
            parts = zip(z.split(CHUNK_ROWS), c.split(CHUNK_ROWS), strict=True)
            return torch.cat([self._from_latent(zi, ci) for zi, ci in parts])
        term = self._context_term(c)

        def f(t: float, y: Tensor) -> Tensor:
            return self.velocity(y, t, term)

        s = self.settings
        if s.sampler == "dopri5":
            tol = float(s.ode_tolerance)
            return dopri5(f, z, 0.0, 1.0, atol=tol, rtol=tol, max_steps=MAX_ODE_STEPS)
        return integrate_fixed(s.sampler, f, z, 0.0, 1.0, s.n_steps)

    def _to_latent(self, x: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        if x.shape[0] > DENSITY_CHUNK_ROWS:
            rows = DENSITY_CHUNK_ROWS
            parts = [
                self._to_latent(xi, ci) for xi, ci in zip(x.split(rows), c.split(rows), strict=True)
            ]
            return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        term = self._context_term(c)
        d = self.n_features

        def g(t: float, y: Tensor) -> tuple[Tensor, Tensor]:
            return self.velocity.with_divergence(y, t, term)

        tol = float(self.settings.ode_tolerance)
        y0 = torch.cat((x, x.new_zeros(x.shape[0], 1)), dim=1)
        y = dopri5(augment(g, d), y0, 1.0, 0.0, atol=tol, rtol=tol, max_steps=MAX_ODE_STEPS)
        return y[:, :d], y[:, d]

    def loss(self, x: Tensor, c: Tensor) -> Tensor:
        """Per-event conditional flow-matching loss.

        Parameters
        ----------
        x : Tensor of shape (n, D)
            Targets (the data end, x1).
        c : Tensor of shape (n, C)
            Contexts.

        Returns
        -------
        Tensor of shape (n,), float32
            ``mean_j (v_j(x_t, t; c) - u_j)^2`` (squared model-space units per unit time);
            deterministic in eval mode (see the class notes).
        """
        x = self._as_input(x, self.n_features, "x")
        c = self._as_input(c, self.n_conditions, "c")
        check_rows(x, c)
        n = x.shape[0]
        if n == 0:
            return x.new_zeros(0)
        generator = None
        if not self.training:
            generator = torch.Generator(device=x.device).manual_seed(EVAL_SEED)
        x0 = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        t = torch.sigmoid(torch.randn(n, generator=generator, device=x.device, dtype=x.dtype))
        tc = t.unsqueeze(1)
        xt = (1.0 - (1.0 - SIGMA_MIN) * tc) * x0 + tc * x
        target = x - (1.0 - SIGMA_MIN) * x0
        v = self.velocity_at(xt, t, c)
        return (v - target).square().mean(dim=1)

    def set_sampler(self, sampler: str, n_steps: int | None = None) -> FlowMatching:
        """Change the sampling solver after training (``describe()`` records it).

        Parameters
        ----------
        sampler : {"euler", "midpoint", "rk4", "dopri5"}
        n_steps : int or None
            Steps of a fixed-step sampler (1 to 1000); ``None`` keeps the current value.

        Returns
        -------
        FlowMatching
            ``self``, with ``settings`` replaced (checked like a configuration: a bad value
            raises ``ConfigError``).
        """
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
        steps = self.settings.n_steps if n_steps is None else n_steps
        self.settings = self.settings.replace(sampler=sampler, n_steps=steps)
        return self

    def cost(self) -> dict[str, Any]:
        """Network passes per draw (fixed-step: steps x stages; dopri5: adaptive) and per
        density (adaptive dopri5, D + 1 passes per evaluation with the exact divergence)."""
        s = self.settings
        log_prob = (
            f"adaptive dopri5 (tolerance {s.ode_tolerance:g}) with D + 1 = "
            f"{self.n_features + 1} passes per evaluation"
        )
        if s.sampler == "dopri5":
            sample = f"adaptive dopri5 (tolerance {s.ode_tolerance:g}), 6 evaluations per step"
            passes = None
        else:
            passes = FIXED_STEP_METHODS[s.sampler] * s.n_steps
            sample = f"{s.sampler}, {s.n_steps} steps: {passes} velocity evaluations"
        return {
            "sample": sample,
            "log_prob": log_prob,
            "sample_passes": passes,
            "log_prob_passes": None,
        }
