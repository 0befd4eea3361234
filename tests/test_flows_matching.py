"""Conditional flow matching (``kind: "flow-matching"``) and its ODE integrators."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hepgen.models.flows.matching import FlowMatching, VelocityField
from hepgen.models.flows.ode import ODEStepLimitError, augment, dopri5, integrate_fixed
from hepgen.settings.models import FlowSettings

torch.set_num_threads(1)

# A rotation with decay, y' = A y: y(t) = expm(A t) y0 (closed form below).
_A = torch.tensor([[-0.5, 2.0], [-2.0, -0.5]], dtype=torch.float64)


def _exact(y0: torch.Tensor, t: float) -> torch.Tensor:
    c, s, d = math.cos(2.0 * t), math.sin(2.0 * t), math.exp(-0.5 * t)
    m = d * torch.tensor([[c, s], [-s, c]], dtype=torch.float64)
    return y0 @ m.t()


def _linear(t: float, y: torch.Tensor) -> torch.Tensor:
    return y @ _A.t()


def _settings(**kw) -> FlowSettings:
    base = {"kind": "flow-matching", "hidden_features": 32, "n_blocks": 2}
    return FlowSettings(**{**base, **kw})


def _nontrivial(d: int = 2, c: int = 1, seed: int = 3, scale: float = 4.0, **kw) -> FlowMatching:
    """An untrained flow whose field moves points by O(1): the output layer scaled up."""
    flow = FlowMatching(d, c, _settings(**kw), seed=seed)
    with torch.no_grad():
        flow.velocity.out_layer.weight.mul_(scale)
        flow.velocity.out_layer.bias.mul_(scale)
    return flow.eval()


# -- the integrators -------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "order"), [("euler", 1), ("midpoint", 2), ("rk4", 4)])
def test_fixed_step_methods_converge_at_their_order(method: str, order: int) -> None:
    y0 = torch.tensor([[1.0, 0.5], [-0.3, 2.0]], dtype=torch.float64)
    exact = _exact(y0, 1.5)
    errors = [
        float((integrate_fixed(method, _linear, y0, 0.0, 1.5, n) - exact).abs().max())
        for n in (16, 32, 64)
    ]
    observed = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
    assert all(abs(o - order) < 0.15 for o in observed), observed
    # backwards: from the exact end point back to y0
    back = integrate_fixed(method, _linear, exact, 1.5, 0.0, 64)
    assert float((back - y0).abs().max()) < 4 * errors[2]


@pytest.mark.parametrize("tol", [1e-4, 1e-6, 1e-9])
def test_dopri5_meets_its_tolerance(tol: float) -> None:
    y0 = torch.tensor([[1.0, 0.5], [-0.3, 2.0], [0.0, 0.0]], dtype=torch.float64)
    stats: dict[str, int] = {}
    y = dopri5(_linear, y0, 0.0, 3.0, atol=tol, rtol=tol, stats=stats)
    err = float((y - _exact(y0, 3.0)).abs().max())
    assert err < 3 * tol
    assert stats["n_evals"] >= 6 * stats["n_steps"]
    # backwards the solution grows by exp(1.5): so does the global error
    back = dopri5(_linear, _exact(y0, 3.0), 3.0, 0.0, atol=tol, rtol=tol)
    assert float((back - y0).abs().max()) < 3 * math.exp(1.5) * tol


def test_dopri5_uses_fewer_steps_at_looser_tolerance_and_counts_them() -> None:
    y0 = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    steps = []
    for tol in (1e-3, 1e-6, 1e-9):
        stats: dict[str, int] = {}
        dopri5(_linear, y0, 0.0, 3.0, atol=tol, rtol=tol, stats=stats)
        steps.append(stats["n_steps"])
    assert steps[0] < steps[1] < steps[2]
    # fifth order: 1000x tighter costs about 1000^(1/5) = 4x more steps
    assert 2.0 < steps[2] / steps[1] < 8.0


def test_dopri5_step_cap_raises_a_clear_error() -> None:
    y0 = torch.ones(1, 2, dtype=torch.float64)
    with pytest.raises(ODEStepLimitError, match="within 3 steps"):
        dopri5(_linear, y0, 0.0, 100.0, atol=1e-10, rtol=1e-10, max_steps=3)
    # a field that blows up in finite time (y' = y^2 from 1: y = 1 / (1 - t)) underflows the
    # step or hits the cap instead of hanging
    with pytest.raises(ODEStepLimitError):
        dopri5(lambda t, y: y * y, y0, 0.0, 2.0, atol=1e-6, rtol=1e-6, max_steps=500)


def test_dopri5_is_not_stalled_by_a_row_that_is_already_nan() -> None:
    y0 = torch.tensor([[1.0, 0.5], [math.nan, 0.0]], dtype=torch.float64)
    stats: dict[str, int] = {}
    y = dopri5(_linear, y0, 0.0, 1.0, atol=1e-8, rtol=1e-8, stats=stats)
    assert float((y[0] - _exact(y0[:1], 1.0)[0]).abs().max()) < 1e-7
    assert stats["n_steps"] < 100


def test_augment_integrates_a_log_determinant_column() -> None:
    # x' = A x, s' = tr(A) = -1: s(t) = -t; and x as the closed form
    f = augment(lambda t, x: (_linear(t, x), torch.full((x.shape[0],), -1.0)), 2)
    y0 = torch.tensor([[1.0, 0.5, 0.0]], dtype=torch.float64)
    y = dopri5(f, y0, 0.0, 2.0, atol=1e-9, rtol=1e-9)
    assert abs(float(y[0, 2]) + 2.0) < 1e-8
    assert float((y[:, :2] - _exact(y0[:, :2], 2.0)).abs().max()) < 1e-8


# -- the velocity field and its divergence ---------------------------------------------------


@pytest.mark.parametrize("embedding", [0, 5])
def test_exact_divergence_matches_the_autograd_jacobian_trace(embedding: int) -> None:
    flow = _nontrivial(3, 2, embedding_features=embedding).double()
    gen = torch.Generator().manual_seed(0)
    x = 3.0 * torch.randn(64, 3, generator=gen, dtype=torch.float64)
    x[:4, 0] = torch.tensor([20.0, -20.0, 11.99, -30.0])  # beyond the clamp (bound 12)
    c = torch.randn(64, 2, generator=gen, dtype=torch.float64)
    term = flow._context_term(c)
    for t in (0.0, 0.37, torch.rand(64, generator=gen, dtype=torch.float64)):
        v, div = flow.velocity.with_divergence(x, t, term)
        jac = torch.func.vmap(
            torch.func.jacrev(lambda xi, ti, ci: flow.velocity(xi[None], ti, ci[None])[0]),
            in_dims=(0, 0 if isinstance(t, torch.Tensor) else None, 0),
        )(x, t[:, None] if isinstance(t, torch.Tensor) else t, term)
        trace = jac.diagonal(dim1=1, dim2=2).sum(dim=1).detach()
        div = div.detach()
        assert torch.allclose(v, flow.velocity(x, t, term), atol=1e-12)  # same field
        assert float((div - trace).abs().max()) < 1e-5 * max(1.0, float(trace.abs().max()))
        assert float(trace.abs().max()) > 0.1  # a nontrivial field
    # float32, and under inference mode (no autograd available there)
    flow32 = _nontrivial(3, 2, embedding_features=embedding)
    with torch.inference_mode():
        _, div32 = flow32.velocity.with_divergence(x.float(), 0.37, flow32._context_term(c.float()))
    with torch.no_grad():
        _, div64 = flow.velocity.with_divergence(x, 0.37, term)
    assert float((div32.double() - div64).abs().max()) < 1e-5


def test_log_prob_matches_the_numerical_jacobian_of_the_sampling_map() -> None:
    flow = _nontrivial(2, 1).double().requires_grad_(False)
    flow.set_sampler("dopri5")
    tol = 1e-10
    flow.settings = flow.settings.replace(ode_tolerance=tol)
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(6, 2, generator=gen, dtype=torch.float64)
    c = torch.randn(6, 1, generator=gen, dtype=torch.float64)
    x = flow._from_latent(z, c)
    assert float((x - z).abs().max()) > 0.2  # the map is far from the identity
    eps = 1e-5
    cols = []
    for j in range(2):
        dz = torch.zeros_like(z)
        dz[:, j] = eps
        cols.append((flow._from_latent(z + dz, c) - flow._from_latent(z - dz, c)) / (2 * eps))
    jac = torch.stack(cols, dim=2)  # (n, 2, 2): dx/dz
    log_det_dxdz = torch.linalg.slogdet(jac)[1]
    expected = -0.5 * (z * z).sum(1) - math.log(2 * math.pi) - log_det_dxdz
    z_back, logabsdet = flow._to_latent(x, c)
    got = -0.5 * (z_back * z_back).sum(1) - math.log(2 * math.pi) + logabsdet
    assert float((got - expected).abs().max()) < 1e-3
    assert float(log_det_dxdz.abs().max()) > 0.05  # the volume changes


def test_inverse_is_consistent_to_1e5_relative_on_1e5_rows() -> None:
    # float32 throughout, dopri5 at atol = rtol = 1e-6 both ways
    flow = _nontrivial(
        2, 1, scale=2.0, hidden_features=16, n_blocks=1, ode_tolerance=1e-6, sampler="dopri5"
    )
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(100_000, 2, generator=gen)
    c = torch.randn(100_000, 1, generator=gen)
    with torch.inference_mode():
        x = flow.from_latent(z, c)
        z_back, logabsdet = flow.to_latent(x, c)
    assert float((x - z).abs().mean()) > 0.1
    rel = ((z_back - z).abs() / z.abs().clamp_min(1.0)).max()
    assert float(rel) < 1e-5
    assert bool(torch.isfinite(logabsdet).all())


# -- training --------------------------------------------------------------------------------


def _toy(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x | c: x0 = 2c + 0.3 e0, x1 = 0.2 + 0.5 (1 + c) e1 (width grows with c)."""
    gen = torch.Generator().manual_seed(seed)
    c = 2.0 * torch.rand(n, 1, generator=gen) - 1.0
    e = torch.randn(n, 2, generator=gen)
    x = torch.cat((2.0 * c + 0.3 * e[:, :1], 0.2 + 0.5 * (1.0 + c) * e[:, 1:]), dim=1)
    return x, c


def test_short_seeded_fit_learns_the_conditional_mean_and_width() -> None:
    torch.manual_seed(0)
    flow = FlowMatching(2, 1, _settings(hidden_features=64, n_steps=8), seed=0)
    x, c = _toy(8192, 0)
    xv, cv = _toy(2048, 1)
    opt = torch.optim.AdamW(flow.parameters(), lr=3e-3)
    flow.eval()
    with torch.no_grad():
        before = float(flow.loss(xv, cv).mean())
    for _epoch in range(12):
        flow.train()
        for idx in torch.randperm(8192).split(256):
            opt.zero_grad()
            flow.loss(x[idx], c[idx]).mean().backward()
            opt.step()
    flow.eval()
    with torch.no_grad():
        after = float(flow.loss(xv, cv).mean())
        again = float(flow.loss(xv, cv).mean())
    assert after == again  # eval-mode loss: a deterministic function of the weights
    assert after < 0.75 * before
    gen = torch.Generator().manual_seed(5)
    for cval in (-0.6, 0.6):
        s = flow.sample(torch.full((4000, 1), cval), generator=gen)
        assert abs(float(s[:, 0].mean()) - 2 * cval) < 0.08
        assert abs(float(s[:, 0].std()) - 0.3) < 0.06
        width = 0.5 * (1 + cval)
        assert abs(float(s[:, 1].mean()) - 0.2) < 0.08
        assert abs(float(s[:, 1].std()) - width) < 0.15 * width


def test_eval_loss_is_deterministic_and_leaves_the_global_rng_alone() -> None:
    flow = _nontrivial(2, 1)
    x, c = _toy(300, 2)
    state = torch.random.get_rng_state()
    with torch.no_grad():
        a, b = flow.loss(x, c), flow.loss(x, c)
    assert torch.equal(a, b) and a.shape == (300,)
    assert torch.equal(state, torch.random.get_rng_state())
    flow.train()
    torch.manual_seed(1)
    t1 = flow.loss(x, c)
    t2 = flow.loss(x, c)
    assert not torch.equal(t1, t2)  # training mode: fresh noise and times
    t1.mean().backward()
    assert all(p.grad is not None for p in flow.parameters())


def test_init_is_seeded_and_does_not_touch_the_global_rng() -> None:
    state = torch.random.get_rng_state()
    a = FlowMatching(3, 2, _settings(embedding_features=4), seed=7)
    assert torch.equal(state, torch.random.get_rng_state())
    b = FlowMatching(3, 2, _settings(embedding_features=4), seed=7)
    c = FlowMatching(3, 2, _settings(embedding_features=4), seed=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


# -- samplers, cost, save/load ---------------------------------------------------------------


def test_set_sampler_changes_the_settings_the_cost_and_the_samples() -> None:
    flow = _nontrivial(2, 1)
    c = torch.randn(500, 1, generator=torch.Generator().manual_seed(0))

    def draw() -> torch.Tensor:
        return flow.sample(c, generator=torch.Generator().manual_seed(3))

    assert flow.cost()["sample_passes"] == 8  # the default: midpoint, 4 steps
    flow.set_sampler("euler", 4)
    assert flow.describe()["settings"]["sampler"] == "euler"
    assert flow.cost()["sample"] == "euler, 4 steps: 4 velocity evaluations"
    euler = draw()
    flow.set_sampler("rk4", 50)
    assert flow.describe()["settings"]["n_steps"] == 50
    assert flow.cost()["sample_passes"] == 200
    rk4 = draw()
    assert float((euler - rk4).abs().max()) > 1e-2
    flow.set_sampler("dopri5")
    assert flow.describe()["settings"]["n_steps"] == 50  # kept
    assert flow.cost()["sample_passes"] is None
    flow.settings = flow.settings.replace(ode_tolerance=1e-7)
    assert float((draw() - rk4).abs().max()) < 1e-4
    with pytest.raises(ValueError, match="sampler"):
        flow.set_sampler("heun")
    with pytest.raises(ValueError):
        flow.set_sampler("rk4", 0)


def test_the_context_is_projected_once_per_sampling_call() -> None:
    flow = _nontrivial(2, 3, embedding_features=4)
    calls = []
    flow.velocity.c_layer.register_forward_hook(lambda *a: calls.append(1))
    flow.embedding.register_forward_hook(lambda *a: calls.append(2))
    flow.sample(torch.randn(10, 3))  # midpoint, 4 steps: 8 velocity evaluations
    assert calls == [2, 1]


def test_state_round_trips_through_safetensors(tmp_path) -> None:
    from safetensors.torch import load_file, save_file

    flow = _nontrivial(3, 2, embedding_features=4)
    save_file(flow.state_dict(), str(tmp_path / "flow.safetensors"))
    settings = FlowSettings.from_dict(flow.settings.to_dict())
    other = FlowMatching(3, 2, settings, seed=99)
    other.load_state_dict(load_file(str(tmp_path / "flow.safetensors")))
    other.eval()
    c = torch.randn(50, 2)
    gen = [torch.Generator().manual_seed(4) for _ in range(2)]
    assert torch.equal(flow.sample(c, gen[0]), other.sample(c, gen[1]))
    x = torch.randn(50, 3)
    assert torch.equal(flow.log_prob(x, c), other.log_prob(x, c))


# -- float32 safety --------------------------------------------------------------------------


@pytest.mark.parametrize("sampler", ["euler", "midpoint", "rk4", "dopri5"])
def test_adversarial_batches_give_finite_outputs(sampler: str) -> None:
    flow = _nontrivial(3, 2, sampler=sampler)
    batches = {
        "far": torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [1e18, -1e18, 1.0]]),
        "equal": torch.full((64, 3), 0.7),
        "one": torch.tensor([[0.1, -0.2, 0.3]]),
    }
    contexts = {"tiny": 1e-30, "huge": 1e30, "normal": 0.5}
    for x in batches.values():
        for cv in contexts.values():
            c = torch.full((x.shape[0], 2), cv)
            with torch.inference_mode():
                lp = flow.log_prob(x, c)
                z, lad = flow.to_latent(x, c)
                s = flow.from_latent(x, c)
                draw = flow.sample(c)
            for out in (lp, z, lad, s, draw):
                assert bool(torch.isfinite(out).all())
            loss = flow.loss(x, c)
            assert bool(torch.isfinite(loss).all()) or bool((x.abs() > 1e30).any())
    empty = flow.log_prob(torch.zeros(0, 3), torch.zeros(0, 2))
    assert empty.shape == (0,)
    assert flow.sample(torch.zeros(0, 2)).shape == (0, 3)


def test_sample_statistics_of_an_untrained_flow_are_sane() -> None:
    # the zero-information check: every solver moves N(0, I) by the same bounded field
    flow = _nontrivial(2, 1)
    c = torch.zeros(2000, 1)
    outs = {}
    for sampler in ("euler", "midpoint", "rk4"):
        flow.set_sampler(sampler, 16)
        outs[sampler] = flow.sample(c, generator=torch.Generator().manual_seed(0)).numpy()
    assert np.abs(outs["midpoint"] - outs["rk4"]).max() < 2e-2
    assert np.abs(outs["euler"] - outs["rk4"]).max() < 0.3


def test_the_adaptive_solver_of_the_module_stops_with_a_clear_error(monkeypatch) -> None:
    from hepgen.models.flows import matching

    flow = _nontrivial(2, 1, sampler="dopri5", ode_tolerance=1e-9)
    monkeypatch.setattr(matching, "MAX_ODE_STEPS", 2)
    x, c = _toy(10, 0)
    with pytest.raises(ODEStepLimitError, match="ode_tolerance"):
        flow.log_prob(x, c)
    with pytest.raises(ODEStepLimitError, match="within 2 steps"):
        flow.sample(c)


def test_cost_states_the_density_passes() -> None:
    cost = _nontrivial(3, 2).cost()
    assert (
        cost["log_prob"] == "adaptive dopri5 (tolerance 1e-05) with D + 1 = 4 passes per evaluation"
    )
    assert cost["sample"] == "midpoint, 4 steps: 8 velocity evaluations"
    assert cost["log_prob_passes"] is None


def test_module_checks_its_inputs() -> None:
    flow = _nontrivial(2, 1)
    with pytest.raises(ValueError, match="shape"):
        flow.loss(torch.zeros(3, 3), torch.zeros(3, 1))
    with pytest.raises(ValueError, match="same number of rows"):
        flow.loss(torch.zeros(3, 2), torch.zeros(4, 1))
    with pytest.raises(ValueError, match="builds the kinds"):
        FlowMatching(2, 1, FlowSettings(kind="realnvp"))
    assert isinstance(flow.velocity, VelocityField)
