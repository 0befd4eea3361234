"""Tests of hepgen.models.flows.residual: conditional residual flows (invertible ResNets).

Real numbers: the exact log-determinant against autograd's Jacobian of the whole flow, the
training estimator's mean against the exact value (statistical, tolerance from the sample
standard error), the fixed-point inverse to 1e-5 on 1e5 rows of a trained flow and its error
when it cannot converge, the spectral norms against the Lipschitz bound, and a short seeded
fit of a heteroscedastic 2-D toy that must reach the true conditional means and widths.
"""

from __future__ import annotations

import math

import pytest
import torch

from hepgen.models.flows.residual import ResidualFlow
from hepgen.settings.models import FlowSettings


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny batches on a shared 2-core machine: one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def settings(**overrides) -> FlowSettings:
    return FlowSettings(
        **{"kind": "residual", "n_transforms": 3, "hidden_features": 16, **overrides}
    )


def jets_like(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """D = 6 targets given C = 7 contexts: a nonlinear mean, heteroscedastic noise, one
    discrete-ish column (like the jets task's b-tag / constituent counts)."""
    c = torch.randn(n, 7, generator=g)
    a = torch.linspace(-0.6, 0.6, 42).view(7, 6)
    x = torch.tanh(c @ a) * 2 + (0.2 + 0.5 * torch.sigmoid(c[:, :6])) * torch.randn(
        n, 6, generator=g
    )
    x[:, 4] = torch.round(x[:, 4] * 2) / 2 + 0.01 * torch.randn(n, generator=g)
    return x, c


def train(flow: ResidualFlow, data, steps: int, lr: float, batch: int, seed: int) -> None:
    """Seeded AdamW steps (cosine-decayed learning rate) on ``flow.loss`` in training mode,
    the estimator's randomness seeded too."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(flow.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    flow.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for _ in range(steps):
            x, c = data(batch, g)
            loss = flow.loss(x, c).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            schedule.step()
    flow.eval()


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"n_blocks": 2, "embedding_features": 4},
        {"n_blocks": 3, "dropout": 0.2, "lipschitz": 0.97},
    ],
)
def test_exact_logdet_matches_autograd_jacobian(overrides):
    flow = ResidualFlow(3, 2, settings(tail_bound=2.5, **overrides), seed=1).eval()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():  # a non-trivial ActNorm
        for step in flow.steps:
            step.log_scale.copy_(torch.rand(3, generator=g) * 0.6 - 0.3)
            step.shift.copy_(torch.rand(3, generator=g) * 0.6 - 0.3)
    x = torch.randn(5, 3, generator=g)
    x[4, 1] = 3.5  # beyond the tail bound: that column no longer moves the branch
    c = torch.randn(5, 2, generator=g)
    _, logdet = flow.to_latent(x, c)
    with torch.inference_mode():
        _, logdet_inference = flow.to_latent(x, c)
    for i in range(5):
        jac = torch.autograd.functional.jacobian(
            lambda row, i=i: flow.to_latent(row[None], c[i : i + 1])[0][0], x[i]
        )
        reference = torch.linalg.slogdet(jac.double())[1].item()
        assert logdet[i].item() == pytest.approx(reference, abs=1e-4)
        assert logdet_inference[i].item() == pytest.approx(reference, abs=1e-4)
    # the residual branches contribute, beyond the ActNorm scales
    branches = logdet - sum(step.log_scale.sum() for step in flow.steps)
    assert branches.abs().max() > 0.01  # 100x the tolerance


def test_training_estimator_is_unbiased():
    # a block with a strong Jacobian (eigenvalues about -0.3 to -0.6): the output layer
    # undoes the input layer, and the hidden units sit in SiLU's linear regime
    flow = ResidualFlow(3, 2, settings(n_transforms=1, lipschitz=0.6), seed=2)
    step = flow.steps[0]
    with torch.no_grad():
        step.out.weight.copy_(-step.x_in.weight.t())
        step.c_in.bias.fill_(4.0)
        step.c_in.weight.mul_(0.1)
    g = torch.Generator().manual_seed(3)
    x, c = torch.randn(8, 3, generator=g), torch.randn(8, 2, generator=g)
    flow.train()
    n = 4000
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(4)
        for _ in range(30):  # let the power iteration catch up with the new weights
            step.weights()
        weights, biases, c_weight, c_bias = step.effective()
        slopes = []
        _, mask = step.branch(x, torch.addmm(c_bias, c, c_weight.t()), weights, biases, slopes)
        exact = step.exact_logdet(weights, slopes, mask)
        jac = step.jacobian(weights, slopes, mask)
        draws = [step.estimate_logdet(weights, slopes, mask) for _ in range(n)]
    estimates = torch.stack([d[0] for d in draws])
    terms = torch.tensor([float(d[1]) for d in draws])
    standard_error = estimates.std(dim=0) / math.sqrt(n)
    assert exact.max() < -1.5
    # random (std ~0.55 nats), and its mean is the exact value within 4.5 standard errors
    assert (estimates.std(dim=0) > 0.2).all()
    assert ((estimates.mean(dim=0) - exact).abs() <= 4.5 * standard_error).all()
    # ... while the series cut after its two exact terms is off by > 15 standard errors
    two_terms = torch.diagonal(jac - jac @ jac / 2, dim1=1, dim2=2).sum(dim=1)
    assert ((two_terms - exact).abs() > 15 * standard_error).all()
    # Russian roulette: 2 exact terms + a geometric(1/2) number, 3 on average
    assert terms.min() == 2
    assert terms.mean().item() == pytest.approx(3.0, abs=0.1)


def test_training_loss_uses_estimator_and_eval_is_exact():
    flow = ResidualFlow(3, 2, settings(n_transforms=2, lipschitz=0.95), seed=5)
    g = torch.Generator().manual_seed(6)
    x, c = torch.randn(4, 3, generator=g), torch.randn(4, 2, generator=g)
    exact = flow.eval().log_prob(x, c).detach()
    assert torch.equal(flow.log_prob(x, c).detach(), exact)  # eval: deterministic
    flow.train()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        draws = torch.stack([flow.log_prob(x, c).detach() for _ in range(1000)])
        with torch.no_grad():  # training mode without gradients: exact
            no_grad = flow.log_prob(x, c)
    assert draws.std(dim=0).min() > 1e-3
    se = draws.std(dim=0) / math.sqrt(1000)
    assert ((draws.mean(dim=0) - exact).abs() <= 4.5 * se + 1e-4).all()
    torch.testing.assert_close(no_grad, exact, atol=1e-4, rtol=0)


def test_fixed_point_inverse_round_trip_on_1e5_rows():
    flow = ResidualFlow(6, 7, FlowSettings(kind="residual"), seed=0)
    train(flow, jets_like, steps=30, lr=2e-3, batch=256, seed=1)
    g = torch.Generator().manual_seed(8)
    z, c = torch.randn(100_000, 6, generator=g), torch.randn(100_000, 7, generator=g)
    with torch.inference_mode():
        x = flow.from_latent(z, c)
        iterations = flow.last_inverse_iterations
        z_back, logdet = flow.to_latent(x, c)
    relative = ((z_back - z).abs() / z.abs().clamp(min=1.0)).max().item()
    assert relative <= 1e-5
    assert torch.isfinite(logdet).all()
    assert len(iterations) == 8 and 3 <= max(iterations) <= 30
    # a tolerance at float32's resolution: steps stall near 2e-7 x max(1, |x|) on some rows,
    # which count as converged (within 16x the tolerance and no longer shrinking)
    tight = ResidualFlow(6, 7, FlowSettings(kind="residual", inverse_tolerance=1e-7), seed=0)
    tight.load_state_dict(flow.state_dict())
    tight.eval()
    with torch.inference_mode():
        x = tight.from_latent(z[:20_000], c[:20_000])
        z_back, _ = tight.to_latent(x, c[:20_000])
    relative = ((z_back - z[:20_000]).abs() / z[:20_000].abs().clamp(min=1.0)).max().item()
    assert relative <= 5e-6
    assert max(tight.last_inverse_iterations) <= 40


def test_inverse_raises_when_it_cannot_converge():
    flow = ResidualFlow(3, 2, settings(inverse_tolerance=1e-30, inverse_max_iterations=3), 0)
    g = torch.Generator().manual_seed(9)
    z, c = torch.randn(50, 3, generator=g), torch.randn(50, 2, generator=g)
    with pytest.raises(RuntimeError, match=r"block 2 .*inverse_max_iterations = 3") as info:
        flow.eval().from_latent(z, c)
    assert "inverse_tolerance = 1e-30" in str(info.value)


def test_spectral_norms_respect_the_lipschitz_bound():
    lipschitz = 0.8
    flow = ResidualFlow(6, 7, settings(n_blocks=2, hidden_features=32, lipschitz=lipschitz), 0)
    train(flow, jets_like, steps=20, lr=1e-2, batch=128, seed=2)
    bounds = flow.lipschitz_bounds()
    assert (bounds <= lipschitz + 1e-4).all()
    assert bounds.max() > 0.5 * lipschitz  # the constraint is active, not vacuous
    coef = lipschitz ** (1 / 3)
    for step in flow.steps:
        for w in step.weights():
            assert torch.linalg.matrix_norm(w, ord=2).item() <= coef + 1e-5
    # eval mode takes the exact norm: stale power-iteration vectors cannot loosen the bound
    with torch.no_grad():
        for p in flow.steps[0].hidden.parameters():
            p.mul_(100.0)
    assert flow.lipschitz_bounds()[0].item() <= lipschitz + 1e-4
    state = flow.state_dict()
    assert {"steps.0.x_in.u", "steps.0.x_in.v"} <= set(state)
    assert all(isinstance(t, torch.Tensor) for t in state.values())


def test_fit_heteroscedastic_toy():
    def width(c):
        return 0.3 * torch.exp(0.4 * c[:, 1:2])

    def data(n, g):
        c = torch.rand(n, 2, generator=g) * 3 - 1.5
        return c + width(c) * torch.randn(n, 2, generator=g), c

    x_val, c_val = data(4000, torch.Generator().manual_seed(10))
    true_nll = -torch.distributions.Normal(c_val, width(c_val)).log_prob(x_val).sum(1).mean()
    flow = ResidualFlow(2, 2, settings(n_transforms=4, hidden_features=32), seed=0)
    with torch.no_grad():
        before = flow.eval().loss(x_val, c_val).mean().item()
    train(flow, data, steps=300, lr=5e-3, batch=256, seed=11)
    with torch.no_grad():
        after = flow.loss(x_val, c_val).mean().item()
    assert before > 2.5
    assert after < true_nll.item() + 0.03  # the true density scores 0.435 nats
    for context in ([-1.0, -1.0], [0.5, 0.0], [1.0, 1.2]):
        c = torch.tensor([context]).expand(4000, 2)
        draws = flow.sample(c, generator=torch.Generator().manual_seed(12))
        assert draws.mean(0).sub(torch.tensor(context)).abs().max() < 0.06
        truth = width(c[:1]).item()
        assert draws.std(0).sub(truth).abs().max() < 0.1 * truth


def test_adversarial_batches_are_finite_both_ways():
    flow = ResidualFlow(6, 7, settings(), seed=3).eval()
    g = torch.Generator().manual_seed(13)
    cases = [
        (torch.full((3, 6), 1e4), torch.randn(3, 7, generator=g)),
        (torch.full((3, 6), -1e4), torch.randn(3, 7, generator=g)),
        (torch.randn(3, 6, generator=g), torch.full((3, 7), 1e4)),
        (torch.randn(3, 6, generator=g), torch.full((3, 7), 1e-30)),
        (torch.ones(4, 6), torch.ones(4, 7)),
        (torch.randn(1, 6, generator=g), torch.randn(1, 7, generator=g)),
    ]
    for x, c in cases:
        with torch.inference_mode():
            assert torch.isfinite(flow.log_prob(x, c)).all()
            back = flow.from_latent(x, c)
        assert torch.isfinite(back).all()
        flow.train()
        assert torch.isfinite(flow.loss(x, c)).all()
        flow.eval()
    # outliers are translated, not folded: the round trip holds at 1e4
    x = torch.full((3, 6), 1e4)
    c = torch.randn(3, 7, generator=g)
    with torch.no_grad():
        z, _ = flow.to_latent(x, c)
        torch.testing.assert_close(flow.from_latent(z, c), x, rtol=1e-6, atol=0)


def test_seeding_state_dict_and_cost():
    s = settings(embedding_features=3)
    state = torch.random.get_rng_state()
    a, b = ResidualFlow(3, 2, s, seed=4), ResidualFlow(3, 2, s, seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(
        torch.equal(p, q)
        for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )
    assert not torch.equal(
        a.steps[0].x_in.weight, ResidualFlow(3, 2, s, seed=5).steps[0].x_in.weight
    )
    # train a, copy its state into b: the same densities and draws
    train(
        a,
        lambda n, g: (torch.randn(n, 3, generator=g), torch.randn(n, 2, generator=g)),
        5,
        1e-2,
        64,
        0,
    )
    b.load_state_dict(a.state_dict())
    b.eval()
    c = torch.randn(6, 2)
    x = a.sample(c, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(b.sample(c, generator=torch.Generator().manual_seed(1)), x)
    torch.testing.assert_close(b.log_prob(x, c), a.log_prob(x, c))
    cost = a.cost()
    assert cost["sample_passes"] == 200 and cost["log_prob_passes"] == 4
    assert "fixed-point" in cost["sample"] and "exact log-det" in cost["log_prob"]
    with pytest.raises(ValueError, match="residual"):
        ResidualFlow(3, 2, FlowSettings(kind="realnvp"))
