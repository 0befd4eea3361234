"""Every flow family of ``model.flow.kind`` under the same checks (zuko's style: one test,
parametrised over the families): the inverse is exact, the log-determinant is autograd's,
adversarial batches are survived, the files round-trip, and each family trains on the jets
task to a sensible response."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp

from hepgen.config import load_config
from hepgen.dataset import load_pairs
from hepgen.fastsim import FastSim
from hepgen.models.flow import load_flow, save_flow
from hepgen.models.flows import FAMILIES, build_flow
from hepgen.resources import config_path
from hepgen.settings.models import FLOW_KINDS, FlowSettings
from hepgen.sim import simulate_to_file

KINDS = list(FLOW_KINDS)

#: Settings per kind for the exactness checks: flow matching inverts its ODE with the
#: adaptive solver at a tight tolerance (a fixed-step sampler is not the inverse of the
#: density direction).
EXACT = {
    "flow-matching": {"sampler": "dopri5", "ode_tolerance": 1e-7, "hidden_features": 32},
}


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def nontrivial(kind: str, d: int, c: int, **settings) -> torch.nn.Module:
    """A family's flow with its identity-like initialisation perturbed (seeded), in eval mode:
    a new flow is (nearly) the identity, which would make every check below trivial."""
    s = FlowSettings(kind=kind, **{**EXACT.get(kind, {}), **settings})
    flow = build_flow(d, c, s, seed=3)
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    return flow.eval()


def test_every_kind_has_a_family():
    assert set(FAMILIES) == set(FLOW_KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_inverse_is_exact(kind):
    """to_latent(from_latent(z)) == z to 1e-5 relative (|dz| / max(|z|, 1)) on 1e5 rows (1e4
    for flow matching, whose two ODE solves cost 40 s at 1e5 here: its 1e5-row check is
    ``test_flows_matching.py::test_inverse_is_consistent_to_1e5_relative_on_1e5_rows``)."""
    flow = nontrivial(kind, 6, 4, hidden_features=32, n_transforms=4)
    g = torch.Generator().manual_seed(0)
    n = 10_000 if kind == "flow-matching" else 100_000
    z, c = torch.randn(n, 6, generator=g), torch.randn(n, 4, generator=g)
    with torch.no_grad():
        x = flow.from_latent(z, c)
        back, _ = flow.to_latent(x, c)
    assert not torch.allclose(x, z, atol=1e-2), "the flow is still the identity"
    err = ((back - z).abs() / z.abs().clamp_min(1.0)).max().item()
    assert err < 1e-5, f"{kind}: round trip off by {err:.2e}"


@pytest.mark.parametrize("kind", KINDS)
def test_log_det_is_autograds(kind):
    """The log|det dz/dx| of to_latent against the log-determinant of autograd's Jacobian."""
    flow = nontrivial(kind, 3, 2, hidden_features=16, n_transforms=3)
    g = torch.Generator().manual_seed(1)
    x, c = torch.randn(4, 3, generator=g), torch.randn(4, 2, generator=g)
    _, logdet = flow.to_latent(x, c)
    for i in range(4):
        jac = torch.autograd.functional.jacobian(
            lambda row, i=i: flow.to_latent(row[None], c[i : i + 1])[0][0], x[i]
        )
        expected = torch.linalg.slogdet(jac.double())[1].item()
        assert logdet[i].item() == pytest.approx(expected, abs=2e-4), kind


@pytest.mark.parametrize("kind", KINDS)
def test_log_prob_normalises(kind):
    """A 1-D conditional density integrates to one (trapezoid on a fine grid)."""
    loose = {"ode_tolerance": 1e-5} if kind == "flow-matching" else {}  # 1e-7 stalls at |x| > 10
    flow = nontrivial(kind, 1, 2, hidden_features=16, n_transforms=3, **loose)
    grid = torch.linspace(-12, 12, 6001)[:, None]
    c = torch.full((len(grid), 2), 0.3)
    with torch.no_grad():
        density = flow.log_prob(grid, c).exp()
    assert torch.trapezoid(density, grid[:, 0]).item() == pytest.approx(1.0, abs=2e-3)


ADVERSARIAL = {
    "huge": (torch.full((5, 4), 1e4), torch.zeros(5, 3)),
    "minus huge": (torch.full((5, 4), -1e4), torch.zeros(5, 3)),
    "mixed": (torch.tensor([[1e4, -1e4, 0.0, 30.0]] * 3), torch.tensor([[1e3, -1e3, 0.0]] * 3)),
    "one row": (torch.randn(1, 4, generator=torch.Generator().manual_seed(2)), torch.ones(1, 3)),
    "all equal": (torch.full((64, 4), 0.5), torch.full((64, 3), -0.5)),
    "tiny": (torch.full((4, 4), 1e-30), torch.full((4, 3), 1e-30)),
}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("batch", list(ADVERSARIAL))
def test_adversarial_batches(kind, batch):
    """No assert, exception, NaN or inf for extreme but finite inputs, in both directions."""
    flow = nontrivial(kind, 4, 3, hidden_features=16, n_transforms=3)
    values, c = ADVERSARIAL[batch]
    with torch.no_grad():
        x = flow.from_latent(values, c)
        z, logdet = flow.to_latent(values, c)
        lp = flow.log_prob(values, c)
    for t in (x, z, logdet):
        assert torch.isfinite(t).all(), f"{kind} on {batch}"
    assert not torch.isnan(lp).any()


@pytest.mark.parametrize("kind", KINDS)
def test_files_round_trip(kind, tmp_path: Path):
    """safetensors + JSON: the loaded flow has the same densities and draws."""
    flow = nontrivial(kind, 4, 3, hidden_features=16, n_transforms=3)
    save_flow(flow, tmp_path)
    loaded = load_flow(tmp_path)
    assert type(loaded) is type(flow) and loaded.settings == flow.settings
    c = torch.randn(50, 3, generator=torch.Generator().manual_seed(4))
    x = flow.sample(c, generator=torch.Generator().manual_seed(1))
    assert torch.equal(loaded.sample(c, generator=torch.Generator().manual_seed(1)), x)
    with torch.no_grad():
        assert torch.equal(loaded.log_prob(x, c), flow.log_prob(x, c))
    assert loaded.describe()["cost"] == flow.cost()


@pytest.mark.parametrize("kind", ["coupling", "nice", "realnvp", "glow"])
def test_multiscale_on_eight_targets(kind):
    """levels = 2 on 8 targets: half the columns leave after the first level (their
    conditioners never see them again), and the flow stays exact."""
    flow = nontrivial(kind, 8, 2, hidden_features=16, n_transforms=4, levels=2)
    g = torch.Generator().manual_seed(0)
    z, c = torch.randn(1000, 8, generator=g), torch.randn(1000, 2, generator=g)
    with torch.no_grad():
        back, _ = flow.to_latent(flow.from_latent(z, c), c)
    assert (back - z).abs().max().item() < 1e-4
    single = nontrivial(kind, 8, 2, hidden_features=16, n_transforms=4)
    assert sum(p.numel() for p in flow.parameters()) < sum(p.numel() for p in single.parameters())
    with pytest.raises(ValueError, match="levels=4 needs at least 16 targets"):
        build_flow(8, 2, FlowSettings(kind=kind, levels=4))


def test_levels_only_for_coupling_kinds():
    from hepgen.errors import ConfigError

    with pytest.raises(ConfigError, match="coupling kinds"):
        FlowSettings(kind="maf", levels=2)


# --------------------------------------------------------------------------------------------
# training on the jets task
# --------------------------------------------------------------------------------------------

#: Fixed epochs per family at a reduced size (the benchmark compares them at full size).
EPOCHS = {"iaf": 3, "residual": 3}


@pytest.fixture(scope="module")
def jets(tmp_path_factory) -> tuple[object, object, Path]:
    d = tmp_path_factory.mktemp("jets")
    simulate_to_file(d / "train.root", "jets", n_events=12_000, seed=21, quiet=True)
    simulate_to_file(d / "heldout.root", "jets", n_events=6_000, seed=22, quiet=True)
    config = load_config(config_path("toy_jets_flow.yaml"), [("model.fakes", False)])
    return (
        load_pairs(config, [str(d / "train.root")], quiet=True),
        load_pairs(config, [str(d / "heldout.root")], quiet=True),
        d,
    )


def test_jets_threshold_detects_a_three_percent_bias(jets):
    """The KS <= 0.05 of :func:`test_trains_on_jets` has power on this held-out sample: a 3 %
    pt-scale bias or a 30 % wider response exceeds it (KS 0.063 and 0.066 measured)."""
    _, heldout, _ = jets
    pairs = heldout.pairs()
    ratio = pairs["Jet_pt"] / pairs["GenJet_pt"]
    assert ks_2samp(ratio * 1.03, ratio).statistic > 0.05
    assert ks_2samp(1 + (ratio - 1) * 1.3, ratio).statistic > 0.05


@pytest.mark.parametrize("kind", KINDS)
def test_trains_on_jets(kind, jets, tmp_path: Path):
    """Fixed seeded epochs on 12k events: the generated pt response (reco/gen pt of matched
    jets) agrees with held-out full simulation, KS <= 0.05."""
    train, heldout, _ = jets
    overrides = [
        ("model.fakes", False),
        ("model.flow", {"kind": kind, "n_transforms": 4, "hidden_features": 64}),
        ("training.max_epochs", EPOCHS.get(kind, 6)),
        ("training.batch_size", 512),
        ("training.time_limit", None),
        ("training.selection", "loss"),
        ("seed", 1),
    ]
    if kind == "flow-matching":
        overrides[1] = ("model.flow", {"kind": kind})
    config = load_config(config_path("toy_jets_flow.yaml"), overrides)
    sim = FastSim(config, device="cpu").fit(train, quiet=True)
    pairs = heldout.pairs()
    gen = {name: pairs[name] for name in sim.condition_names}
    fast = sim.sample(gen, seed=2)
    ratio_fast = fast["Jet_pt"] / gen["GenJet_pt"]
    ratio_full = pairs["Jet_pt"] / gen["GenJet_pt"]
    assert np.isfinite(ratio_fast).all()
    ks = ks_2samp(ratio_fast, ratio_full).statistic
    assert ks <= 0.05, f"{kind}: KS of the pt response {ks:.3f}"


@pytest.mark.parametrize("engine", ["graph", "compiled"])
def test_engines_beyond_eager_are_for_spline_flows(engine):
    from hepgen.models.engine import FlowEngine

    flow = nontrivial("realnvp", 3, 2, hidden_features=8, n_transforms=2)
    assert FlowEngine(flow, "auto").engine == "eager"
    with pytest.raises(ValueError, match=f"engine '{engine}' needs a single-scale RQ-spline"):
        FlowEngine(flow, engine)
    with pytest.raises(ValueError, match="precision 'bfloat16'"):
        FlowEngine(flow, "auto", "bfloat16")
    multiscale = nontrivial("coupling", 8, 2, hidden_features=8, n_transforms=2, levels=2)
    with pytest.raises(ValueError, match="levels 2"):
        FlowEngine(multiscale, engine)


def test_bfloat16_is_refused_for_other_kinds_in_the_config():
    from hepgen.errors import ConfigError

    with pytest.raises(ConfigError, match="needs a single-scale RQ-spline flow"):
        load_config(
            config_path("toy_jets_flow.yaml"),
            [("model.flow.kind", "glow"), ("model.precision", "bfloat16")],
        )


@pytest.mark.parametrize("kind", KINDS)
def test_card_states_the_cost_class(kind):
    """``hepgen info`` prints each family's architecture and its cost class."""
    from hepgen.modelcard import format_card

    flow = build_flow(6, 3, FlowSettings(kind=kind, n_transforms=2, hidden_features=8))
    text = format_card({"kind": "flow", "architecture": flow.describe()})
    line = next(t for t in text.splitlines() if t.startswith("  flow: "))
    assert (
        line.startswith(f"  flow: {kind}")
        and f"{flow.describe()['n_parameters']} parameters" in line
    )
    cost = flow.cost()
    assert f"  cost: sampling {cost['sample']}; density {cost['log_prob']}" in text
    expected = {"maf": "D = 6 passes", "autoregressive": "D = 6 passes", "iaf": "1 pass"}
    if kind in expected:
        assert cost["sample"].startswith(expected[kind])
    if kind == "iaf":
        assert cost["log_prob"].startswith("D = 6 passes")
    if kind == "flow-matching":
        assert "midpoint, 4 steps: 8 velocity evaluations" in text
