"""The sampling engine: static graphs of every flow family against the nflows layers, sampling
that never fails on adversarial batches (float32 and bfloat16), engine bookkeeping, and the
acceptance check of a reduced precision."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hepgen.models.engine import FlowEngine, auc_standard_error, check_precision
from hepgen.models.flow import ConditionalFlow, FlowSettings
from hepgen.models.flow_graph import DensityGraph, SamplingGraph
from hepgen.models.flow_model import FlowModel
from hepgen.models.spline import rational_quadratic_spline
from hepgen.training import TrainingSettings

FAMILIES = [
    ("coupling", "lu", 0),
    ("coupling", "permutation", 0),
    ("coupling", "none", 4),
    ("autoregressive", "lu", 0),
    ("autoregressive", "permutation", 3),
]


def perturbed_flow(kind: str, mixing: str, embedding: int, scale: float = 0.1) -> ConditionalFlow:
    """A small flow with every weight moved off its identity initialisation (non-trivial
    splines and LU layers)."""
    settings = FlowSettings(
        kind=kind,
        mixing=mixing,
        embedding_features=embedding,
        n_transforms=3,
        hidden_features=32,
        n_bins=8,
    )
    flow = ConditionalFlow(5, 3, settings, seed=2).eval()
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return flow


@pytest.mark.parametrize(("kind", "mixing", "embedding"), FAMILIES)
def test_graphs_compute_the_flow(kind: str, mixing: str, embedding: int) -> None:
    flow = perturbed_flow(kind, mixing, embedding)
    g = torch.Generator().manual_seed(0)
    z, c = torch.randn(3000, 5, generator=g), torch.randn(3000, 3, generator=g)
    with torch.no_grad():
        x_ref = flow.from_latent(z, c)
        x = SamplingGraph(flow)(z, c)
        lp_ref = flow.log_prob(x_ref, c)
        lp = DensityGraph(flow)(x_ref, c)
    # float32 rounding only: the same function with the linear pieces folded in float64
    assert float((x - x_ref).abs().max()) < 2e-4
    assert float((lp - lp_ref).abs().max()) < 2e-3
    assert float((lp - lp_ref).abs().median()) < 1e-4


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
@pytest.mark.parametrize(("kind", "mixing", "embedding"), FAMILIES)
def test_sampling_never_fails_on_adversarial_batches(
    kind: str, mixing: str, embedding: int, precision: str
) -> None:
    """Extreme latent draws and contexts, exact tail bounds, signed zeros and subnormals, on
    a flow with extreme spline parameters (last layers scaled up: bins of near-zero width and
    slope): every sample is finite, and inside the tail bound it is a consistent inverse."""
    flow = perturbed_flow(kind, mixing, embedding, scale=0.5)
    with torch.no_grad():
        for name, p in flow.named_parameters():
            if "final_layer" in name:
                p.mul_(30.0)
    bound = flow.settings.tail_bound
    special = torch.tensor(
        [0.0, -0.0, 1e-40, -1e-40, bound, -bound, bound * (1 + 1e-7), 40.0, -40.0, 1e3, -1e3]
    )
    g = torch.Generator().manual_seed(3)
    rows = []
    for value in special:
        rows.append(torch.full((4, 5), float(value)))
        mixed = torch.randn(4, 5, generator=g)
        mixed[:, int(abs(float(value)) * 7) % 5] = value
        rows.append(mixed)
    z = torch.cat([*rows, 6.0 * torch.randn(2000, 5, generator=g)])
    c = torch.cat([torch.full((len(special) * 8, 3), 1e3), 3.0 * torch.randn(2000, 3, generator=g)])
    c[::3] *= -1
    engine = FlowEngine(flow, "graph", precision)
    x = engine.from_latent(z, c)
    assert torch.isfinite(x).all()
    assert torch.isfinite(FlowEngine(flow, "graph", precision).log_prob(x, c)).all()
    if precision == "float32":
        with torch.no_grad():
            reference = flow.from_latent(z, c)
        assert torch.isfinite(reference).all()
        # the same function: on such extreme splines float32 rounding is amplified by bins
        # of slope ~1e-3 in a few rows, so the bulk is compared
        assert float((x - reference).abs().median()) < 1e-4


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    spread=st.floats(0.0, 30.0),
    value=st.floats(-1e4, 1e4, allow_nan=False, allow_subnormal=True),
)
def test_the_spline_inverse_is_always_finite(seed: int, spread: float, value: float) -> None:
    g = torch.Generator().manual_seed(seed)
    w, h = spread * torch.randn(64, 6, generator=g), spread * torch.randn(64, 6, generator=g)
    d = spread * torch.randn(64, 5, generator=g)
    y = torch.cat([torch.full((32,), value), 5.0 * torch.randn(32, generator=g)])
    x, _ = rational_quadratic_spline(y, w, h, d, inverse=True)
    assert torch.isfinite(x).all()
    inside = y.abs() <= 4.0
    assert (x[inside].abs() <= 4.0).all()
    assert torch.equal(x[~inside], y[~inside])


def test_the_engine_follows_the_flow_s_weights() -> None:
    flow = perturbed_flow("coupling", "lu", 0)
    engine = FlowEngine(flow, "graph")
    z, c = torch.randn(50, 5), torch.randn(50, 3)
    before = engine.from_latent(z, c)
    with torch.no_grad():
        next(flow.parameters()).add_(0.5)
        after_ref = flow.from_latent(z, c)
    after = engine.from_latent(z, c)
    assert not torch.allclose(before, after)
    assert torch.allclose(after, after_ref, atol=2e-4)


def test_engine_arguments_are_checked() -> None:
    flow = perturbed_flow("coupling", "lu", 0)
    with pytest.raises(ValueError, match="engine must be one of"):
        FlowEngine(flow, "fast")
    with pytest.raises(ValueError, match="float32 only"):
        FlowEngine(flow, "eager", "bfloat16")
    with pytest.raises(ValueError, match="precision must be one of"):
        FlowEngine(flow, "graph", "float16")


def test_a_failing_compiler_falls_back_to_the_graph(monkeypatch, caplog) -> None:
    flow = perturbed_flow("coupling", "lu", 0)

    def broken(*args, **kwargs):
        def run(*a, **k):
            raise RuntimeError("no C++ compiler here")

        return run

    monkeypatch.setattr(torch, "compile", broken)
    z, c = torch.randn(20, 5), torch.randn(20, 3)
    with caplog.at_level(logging.WARNING, logger="hepgen.models.engine"):
        x = FlowEngine(flow, "compiled").from_latent(z, c)
    assert "torch.compile failed (RuntimeError: no C++ compiler here)" in caplog.text
    assert torch.allclose(x, FlowEngine(flow, "graph").from_latent(z, c))


@pytest.mark.slow
def test_the_compiled_engine_computes_the_graph_also_on_threads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    flow = perturbed_flow("coupling", "lu", 0)
    engine, graph = FlowEngine(flow, "compiled"), FlowEngine(flow, "graph")
    g = torch.Generator().manual_seed(1)
    batches = [
        (torch.randn(n, 5, generator=g), torch.randn(n, 3, generator=g))
        for n in (1, 7, 300, 1, 64, 300)
    ]
    with ThreadPoolExecutor(3) as pool:  # the first calls compile while others wait
        threaded = list(pool.map(lambda zc: engine.from_latent(*zc), batches))
    for (z, c), x in zip(batches, threaded, strict=True):
        assert torch.allclose(x, graph.from_latent(z, c), atol=1e-5)
        assert torch.equal(x, engine.from_latent(z, c))


def test_every_engine_draws_the_same_noise() -> None:
    """FlowModel.sample: the same seed gives the same latent draws whatever the engine, so
    engines differ by float32 rounding only."""
    rng = np.random.default_rng(0)
    c = rng.normal(size=(3000, 2)).astype(np.float32)
    x = (c[:, :1] + 0.5 * rng.normal(size=(3000, 1))).astype(np.float32)
    model = FlowModel(FlowSettings(n_transforms=2, hidden_features=16, n_bins=4))
    model.fit(x, c, training=TrainingSettings(max_epochs=2, batch_size=500), quiet=True)
    eager = model.set_inference("eager").sample(c, seed=5)
    graph = model.set_inference("graph").sample(c, seed=5)
    assert np.abs(eager - graph).max() < 1e-4
    assert np.abs(eager - model.set_inference("eager").sample(c, seed=6)).max() > 0.1
    lp_eager = model.set_inference("eager").log_prob(x, c)
    lp_graph = model.set_inference("graph").log_prob(x, c)
    assert np.abs(lp_eager - lp_graph).max() < 1e-3


def test_auc_standard_error_matches_hanley_mcneil() -> None:
    # Hanley & McNeil (1982), table 1 style value: AUC 0.5 with 100 + 100 cases -> 0.041
    assert auc_standard_error(0.5, 100, 100) == pytest.approx(0.0408, abs=5e-4)
    assert auc_standard_error(0.9, 100, 100) < auc_standard_error(0.5, 100, 100)


def test_check_precision_accepts_bf16_and_refuses_a_broken_candidate() -> None:
    rng = np.random.default_rng(1)
    n = 6000
    c = rng.normal(size=(n, 3)).astype(np.float32)
    x = np.stack(
        [c[:, 0] + 0.4 * rng.normal(size=n), c[:, 1] * c[:, 2] + 0.3 * rng.normal(size=n)], axis=1
    ).astype(np.float32)
    model = FlowModel(FlowSettings(n_transforms=3, hidden_features=32, n_bins=8), seed=1)
    model.fit(
        x[:4000], c[:4000], training=TrainingSettings(max_epochs=6, batch_size=256), quiet=True
    )
    result = check_precision(model, x[4000:], c[4000:], "bfloat16", seed=2)
    assert result["accepted"], result
    assert 0 < result["parity"]["max_abs"] < 0.05
    assert result["parity"]["p99_abs"] <= result["parity"]["max_abs"]
    low, high = result["auc_interval"]
    assert low <= result["auc"] <= high
    # the same candidate held to float32 parity fails: the check can say no
    strict = check_precision(model, x[4000:], c[4000:], "bfloat16", seed=2, tolerance=1e-6)
    assert not strict["accepted"]
