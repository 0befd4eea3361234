"""Small explicit ODE integrators for batched states: the samplers of flow matching.

Every integrator solves ``dy/dt = f(t, y)`` from ``t0`` to ``t1`` (either direction) for a
state ``y`` of shape (n, K) (n independent rows integrated together, K columns) and a
right-hand side ``f(t, y) -> Tensor`` of the same shape, with ``t`` a Python ``float``:

* :func:`euler`, :func:`midpoint`, :func:`rk4`: fixed steps (orders 1, 2, 4; 1, 2 and 4
  evaluations of ``f`` per step);
* :func:`dopri5`: the adaptive Dormand-Prince 5(4) pair with local extrapolation and FSAL
  (6 evaluations per accepted step), one step size for the whole batch, the step accepted when
  the worst row's RMS error over its columns is within ``atol + rtol * |y|``.

An augmented state (a flow's log-determinant beside its point) is one more column:
:func:`augment` wraps ``g(t, x) -> (v, s)`` into the ``f`` of ``cat([x, s])``.

Nothing here asserts on values: a step whose error is not finite is rejected and retried
smaller, and :func:`dopri5` raises :class:`ODEStepLimitError` after ``max_steps`` attempts
or when the step size underflows.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "FIXED_STEP_METHODS",
    "ODEStepLimitError",
    "augment",
    "dopri5",
    "euler",
    "integrate_fixed",
    "midpoint",
    "rk4",
]

RHS = Callable[[float, Tensor], Tensor]

#: Evaluations of ``f`` per step of each fixed-step method.
FIXED_STEP_METHODS: dict[str, int] = {"euler": 1, "midpoint": 2, "rk4": 4}


class ODEStepLimitError(RuntimeError):
    """The adaptive solver did not reach the end point within its step cap (or its step size
    underflowed): the tolerance is too tight for float32, or the field is not smooth."""


def _check_steps(n_steps: int) -> None:
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")


def euler(f: RHS, y0: Tensor, t0: float, t1: float, n_steps: int) -> Tensor:
    """Explicit Euler, ``n_steps`` equal steps (order 1, 1 evaluation per step).

    Parameters
    ----------
    f : callable
        ``f(t, y) -> dy/dt``, with ``t`` a float and ``y``, ``dy/dt`` of shape (n, K).
    y0 : Tensor of shape (n, K)
        State at ``t0``.
    t0, t1 : float
        Start and end times (``t1 < t0`` integrates backwards).
    n_steps : int
        Number of equal steps (>= 1).

    Returns
    -------
    Tensor of shape (n, K)
        The state at ``t1``.

    Examples
    --------
    >>> import torch
    >>> y = euler(lambda t, y: -y, torch.ones(1, 1), 0.0, 1.0, 1000)
    >>> round(float(y), 3)  # exp(-1) = 0.368 to first order in the step
    0.368
    """
    _check_steps(n_steps)
    h = (t1 - t0) / n_steps
    y = y0
    for i in range(n_steps):
        y = y + h * f(t0 + i * h, y)
    return y


def midpoint(f: RHS, y0: Tensor, t0: float, t1: float, n_steps: int) -> Tensor:
    """Explicit midpoint rule, ``n_steps`` equal steps (order 2, 2 evaluations per step).

    Parameters and returns as :func:`euler`.

    Examples
    --------
    >>> import torch
    >>> y = midpoint(lambda t, y: -y, torch.ones(1, 1), 0.0, 1.0, 100)
    >>> abs(float(y) - 0.36787944) < 1e-5
    True
    """
    _check_steps(n_steps)
    h = (t1 - t0) / n_steps
    y = y0
    for i in range(n_steps):
        t = t0 + i * h
        k1 = f(t, y)
        y = y + h * f(t + 0.5 * h, y + (0.5 * h) * k1)
    return y


def rk4(f: RHS, y0: Tensor, t0: float, t1: float, n_steps: int) -> Tensor:
    """Classical fourth-order Runge-Kutta, ``n_steps`` equal steps (4 evaluations per step).

    Parameters and returns as :func:`euler`.

    Examples
    --------
    >>> import torch
    >>> y = rk4(lambda t, y: -y, torch.ones(1, 1), 0.0, 1.0, 10)
    >>> abs(float(y) - 0.36787944) < 1e-5
    True
    """
    _check_steps(n_steps)
    h = (t1 - t0) / n_steps
    y = y0
    for i in range(n_steps):
        t = t0 + i * h
        k1 = f(t, y)
        k2 = f(t + 0.5 * h, y + (0.5 * h) * k1)
        k3 = f(t + 0.5 * h, y + (0.5 * h) * k2)
        k4 = f(t + h, y + h * k3)
        y = y + (h / 6.0) * (k1 + 2.0 * (k2 + k3) + k4)
    return y


_FIXED = {"euler": euler, "midpoint": midpoint, "rk4": rk4}


def integrate_fixed(method: str, f: RHS, y0: Tensor, t0: float, t1: float, n_steps: int) -> Tensor:
    """Dispatch to :func:`euler`, :func:`midpoint` or :func:`rk4` by name (``ValueError`` for
    another name); arguments and returns as :func:`euler`."""
    if method not in _FIXED:
        raise ValueError(f"unknown fixed-step method {method!r}; expected one of {tuple(_FIXED)}")
    return _FIXED[method](f, y0, t0, t1, n_steps)


# Dormand & Prince (1980), RK5(4)7FM: nodes, stages, 5th-order weights (= the last stage, FSAL)
# and the difference between the 5th- and 4th-order weights (the error estimate).
_C = (0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0)
_A = (
    (),
    (1 / 5,),
    (3 / 40, 9 / 40),
    (44 / 45, -56 / 15, 32 / 9),
    (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
    (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
    (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84),
)
_B5 = _A[6] + (0.0,)
_B4 = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
_E = tuple(b5 - b4 for b5, b4 in zip(_B5, _B4, strict=True))


def _combine(y: Tensor, h: float, coefs: tuple[float, ...], ks: list[Tensor]) -> Tensor:
    out = y
    for a, k in zip(coefs, ks, strict=False):
        if a != 0.0:
            out = out + (h * a) * k
    return out


def _error_norm(err: Tensor, y0: Tensor, y1: Tensor, atol: float, rtol: float) -> float:
    """Worst row's RMS over columns of ``err / (atol + rtol * max(|y0|, |y1|))``: inf if a row
    that was finite at the start of the step is not at its end; rows already not finite at the
    start (a NaN input) are left out, so they cannot stall the batch."""
    ratio = (err / (atol + rtol * torch.maximum(y0.abs(), y1.abs()))).square().mean(dim=1)
    ratio = torch.where(torch.isfinite(y0).all(dim=1), ratio, torch.zeros_like(ratio))
    value = float(ratio.max().detach())
    return math.sqrt(value) if math.isfinite(value) else math.inf


def _rms(v: Tensor, scale: Tensor) -> float:
    """Worst row's RMS of ``v / scale`` (inf if not finite)."""
    value = float((v / scale).square().mean(dim=1).max().detach())
    return math.sqrt(value) if math.isfinite(value) else math.inf


def _initial_step(
    f: RHS,
    t0: float,
    y0: Tensor,
    f0: Tensor,
    direction: float,
    length: float,
    atol: float,
    rtol: float,
    counts: dict[str, int],
) -> float:
    """Hairer, Norsett & Wanner's starting step (Solving ODEs I, II.4) for the worst row."""
    scale = atol + rtol * y0.abs()
    d0, d1 = _rms(y0, scale), _rms(f0, scale)
    ok = math.isfinite(d0) and math.isfinite(d1) and d0 > 1e-5 and d1 > 1e-5
    h0 = min(0.01 * d0 / d1 if ok else 1e-6, length)
    f1 = f(t0 + direction * h0, y0 + (direction * h0) * f0)
    counts["n_evals"] += 1
    d2 = _rms(f1 - f0, scale) / h0
    top = max(d1, d2)
    if not math.isfinite(top):
        return h0
    h1 = (0.01 / top) ** 0.2 if top > 1e-15 else max(1e-6, h0 * 1e-3)
    return min(100.0 * h0, h1, length)


def dopri5(
    f: RHS,
    y0: Tensor,
    t0: float,
    t1: float,
    atol: float = 1e-5,
    rtol: float = 1e-5,
    max_steps: int = 10_000,
    stats: dict[str, int] | None = None,
) -> Tensor:
    """Adaptive Dormand-Prince 5(4) with one step size for the whole batch.

    Parameters
    ----------
    f : callable
        ``f(t, y) -> dy/dt``, with ``t`` a float and ``y``, ``dy/dt`` of shape (n, K).
    y0 : Tensor of shape (n, K)
        State at ``t0``.
    t0, t1 : float
        Start and end times (``t1 < t0`` integrates backwards).
    atol, rtol : float
        Absolute and relative tolerances of the local error, per entry: a step is accepted
        when, for every row, the RMS over its K columns of ``err / (atol + rtol * |y|)`` is
        at most 1.
    max_steps : int
        Cap on attempted steps (accepted and rejected).
    stats : dict or None
        When given, filled with ``n_steps`` (accepted), ``n_rejected`` and ``n_evals``.

    Returns
    -------
    Tensor of shape (n, K)
        The state at ``t1`` (the fifth-order solution).

    Raises
    ------
    ODEStepLimitError
        ``max_steps`` attempts without reaching ``t1``, or a step size below 1e-12 of the span.

    Notes
    -----
    Standard controller: ``h <- h * clip(0.9 * err^(-1/5), 0.2, 10)``; a rejected step does
    not grow the step.  The last stage of an accepted step is the first of the next (FSAL).

    References
    ----------
    J. R. Dormand and P. J. Prince, "A family of embedded Runge-Kutta formulae", J. Comput.
    Appl. Math. 6 (1980) 19; E. Hairer, S. P. Norsett, G. Wanner, "Solving Ordinary
    Differential Equations I", Springer 1993, II.4-II.5.

    Examples
    --------
    >>> import torch
    >>> y = dopri5(lambda t, y: -y, torch.ones(2, 1), 0.0, 1.0, atol=1e-8, rtol=1e-8)
    >>> y.dtype, abs(float(y[0, 0]) - 0.36787944) < 1e-6
    (torch.float32, True)
    """
    span = t1 - t0
    counts = {"n_steps": 0, "n_rejected": 0, "n_evals": 0}
    if stats is not None:
        stats.update(counts)
    if span == 0.0 or y0.numel() == 0:
        return y0
    direction = 1.0 if span > 0 else -1.0
    length = abs(span)
    t = t0
    y = y0
    k1 = f(t, y)
    counts["n_evals"] += 1
    h = _initial_step(f, t, y, k1, direction, length, atol, rtol, counts)
    attempts = 0
    while direction * (t1 - t) > 1e-12 * length:
        if attempts >= max_steps:
            raise ODEStepLimitError(
                f"dopri5 did not reach t = {t1} within {max_steps} steps (at t = {t:.6g}, step "
                f"{h:.3g}, atol = {atol:g}, rtol = {rtol:g}): loosen the tolerance "
                "(settings.ode_tolerance) or check the inputs"
            )
        if h < 1e-12 * length:
            raise ODEStepLimitError(
                f"dopri5 step size underflow at t = {t:.6g} (step {h:.3g}, atol = {atol:g}, "
                f"rtol = {rtol:g}): the field is not finite or not smooth for these inputs"
            )
        attempts += 1
        remaining = direction * (t1 - t)
        last = h >= remaining
        step = remaining if last else h
        hs = direction * step
        ks = [k1]
        for i in range(1, 7):
            ks.append(f(t + _C[i] * hs, _combine(y, hs, _A[i], ks)))
        counts["n_evals"] += 6
        y_new = _combine(y, hs, _B5, ks[:6])
        err = _combine(torch.zeros_like(y), hs, _E, ks)
        norm = _error_norm(err, y, y_new, atol, rtol)
        if norm <= 1.0:
            t = t1 if last else t + hs
            y = y_new
            k1 = ks[6]
            counts["n_steps"] += 1
            factor = 10.0 if norm == 0.0 else min(10.0, max(0.2, 0.9 * norm**-0.2))
            h = step * factor
        else:
            counts["n_rejected"] += 1
            factor = 0.2 if not math.isfinite(norm) else min(1.0, max(0.2, 0.9 * norm**-0.2))
            h = step * factor
    if stats is not None:
        stats.update(counts)
    return y


def augment(g: Callable[[float, Tensor], tuple[Tensor, Tensor]], n_state: int) -> RHS:
    """Right-hand side of an augmented state ``cat([x, s], dim=1)``.

    Parameters
    ----------
    g : callable
        ``g(t, x) -> (dx/dt, ds/dt)`` with ``x`` of shape (n, n_state) and ``ds/dt`` of
        shape (n,) or (n, m).
    n_state : int
        Columns of ``x`` (the remaining columns of the augmented state are ``s``).

    Returns
    -------
    callable
        ``f(t, y)`` for ``y = cat([x, s])``, as the integrators take it.

    Examples
    --------
    >>> import torch
    >>> f = augment(lambda t, x: (-x, x.sum(dim=1)), 1)  # s' = x: s(1) = 1 - exp(-1)
    >>> y = rk4(f, torch.tensor([[1.0, 0.0]]), 0.0, 1.0, 20)
    >>> [round(v, 4) for v in y[0].tolist()]
    [0.3679, 0.6321]
    """

    def f(t: float, y: Tensor) -> Tensor:
        dx, ds = g(t, y[:, :n_state])
        return torch.cat((dx, ds.reshape(dx.shape[0], -1)), dim=1)

    return f
