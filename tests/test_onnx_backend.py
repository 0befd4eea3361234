"""The ONNX backend: a fast simulation exported to ONNX runs in onnxruntime, without torch.

One tiny trained fast simulation (1000 events, 1 epoch) is exported once; its ONNX generators
(:class:`hepgen.models.onnx_backend.OnnxGenerator`) are compared with the torch backend's on
the same conditions: the same function for the same noise, the same distribution for the same
seed, the same log-densities, the same structure of simulated events; and the whole
``FastSim.load(..., backend="onnx")`` / ``hepgen generate --backend onnx`` path runs in a
subprocess where ``import torch`` fails.
"""

from __future__ import annotations

import copy
import json
import logging
import pickle
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
from conftest import train_small_fastsim

pytest.importorskip("onnxruntime")
uproot = pytest.importorskip("uproot")

from hepgen.cli import main  # noqa: E402
from hepgen.errors import InputError, MissingDependencyError  # noqa: E402
from hepgen.export import export_model  # noqa: E402
from hepgen.fastsim import FastSim  # noqa: E402
from hepgen.io.collections import flatten_collection  # noqa: E402
from hepgen.modeldir import ModelHandle, load_model  # noqa: E402
from hepgen.models.base import NoLikelihoodError  # noqa: E402
from hepgen.models.onnx_backend import (  # noqa: E402
    EXPORT_FILE,
    THREADS_ENV,
    OnnxGenerator,
    read_export,
)
from hepgen.sim import simulate_to_file  # noqa: E402

#: A finder that makes ``import torch`` fail, as in an environment without torch.
BLOCK_TORCH = """\
import sys

class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"No module named {name!r} (blocked by the test)")
        return None

sys.meta_path.insert(0, _NoTorch())
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny fast simulation, its ONNX export, 300 new events, and both backends loaded."""
    work = tmp_path_factory.mktemp("onnx")
    model = train_small_fastsim(work, n_events=1000, max_epochs=1)
    out = work / "exported"
    export_model(model, out, "onnx", exporter="legacy")  # the fast exporter, parity checked
    events_file = simulate_to_file(work / "events.root", "jets", n_events=300, seed=5, quiet=True)
    torch_sim = FastSim.load(out)
    onnx_sim = FastSim.load(out, backend="onnx")
    events = uproot.open(events_file)["Events"].arrays(torch_sim.condition_names)
    flat = flatten_collection(events, torch_sim.gen, torch_sim.condition_names)
    conds = {k: np.asarray(flat[k]) for k in torch_sim.condition_names}
    return {
        "work": work,
        "model": model,
        "out": out,
        "events_file": events_file,
        "events": events,
        "torch": torch_sim,
        "onnx": onnx_sim,
        "conds": conds,
        "c": torch_sim.preprocessor_.transform_conditions(conds),
    }


@pytest.fixture(autouse=True)
def _quiet_domain_warnings(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="hepgen")  # the tiny model's domain warnings


def test_loaded_generators_are_onnx(setup: dict) -> None:
    sim = setup["onnx"]
    assert isinstance(sim.response_, OnnxGenerator) and sim.response_.kind == "flow"
    assert isinstance(sim.fakes_.model, OnnxGenerator)
    assert sim.response_.has_likelihood and sim.backend_ == "onnx"
    assert setup["torch"].backend_ == "torch"
    module = setup["torch"].response_.module_
    assert (sim.response_.n_features_, sim.response_.n_conditions_) == (
        module.n_features,
        module.n_conditions,
    )
    assert sim.response_.describe()["threads"] == 1  # one intra-op thread by default


def test_numpy_noise_through_the_graph_is_the_torch_flow(setup: dict) -> None:
    """The documented noise: default_rng(seed).standard_normal((n, D), float32), row order;
    through the graph it gives the torch flow's samples for that noise (float32 rounding)."""
    import torch

    gen, flow = setup["onnx"].response_, setup["torch"].response_.module_
    c = setup["c"]
    x = gen.sample(c, seed=3)
    z = np.random.default_rng(3).standard_normal((len(c), gen.n_noise_), dtype=np.float32)
    with torch.inference_mode():
        expected = flow.from_latent(torch.from_numpy(z), torch.from_numpy(c)).numpy()
    assert x.dtype == np.float32 and x.shape == expected.shape
    assert np.abs(x - expected).max() < 1e-4
    # the same seed gives the same samples whatever the batch size; another seed others
    assert np.array_equal(gen.sample(c, seed=3, batch_size=77), x)
    assert not np.array_equal(gen.sample(c, seed=4), x)


def test_samples_match_the_torch_backend_in_distribution(setup: dict) -> None:
    c = np.repeat(setup["c"], 3, axis=0)  # ~3000 rows, the same conditions for both
    assert len(c) > 2500
    x_onnx = setup["onnx"].response_.sample(c, seed=1)
    x_torch = setup["torch"].response_.sample(c, seed=1)
    from scipy.stats import ks_2samp

    pvalues = [ks_2samp(x_onnx[:, j], x_torch[:, j]).pvalue for j in range(x_onnx.shape[1])]
    assert min(pvalues) > 0.01, pvalues
    assert not np.array_equal(x_onnx, x_torch)  # other draws (numpy noise, not torch's)


def test_log_prob_matches_the_torch_model(setup: dict) -> None:
    c = setup["c"]
    x = setup["torch"].response_.sample(c, seed=2)
    lp_onnx = setup["onnx"].response_.log_prob(x, c)
    lp_torch = setup["torch"].response_.log_prob(x, c)
    assert lp_onnx.dtype == np.float64 and lp_onnx.shape == (len(c),)
    assert np.abs(lp_onnx - lp_torch).max() < 1e-3
    assert np.array_equal(setup["onnx"].response_.log_prob(x, c, batch_size=100), lp_onnx)
    # and in physical units, through FastSim (preprocessing and its Jacobian in numpy)
    sim_t, sim_o = setup["torch"], setup["onnx"]
    conds = setup["conds"]
    reco = sim_t.sample(conds, seed=4)
    assert np.abs(sim_o.log_prob(reco, conds) - sim_t.log_prob(reco, conds)).max() < 1e-3


def test_simulate_gives_the_torch_structure(setup: dict) -> None:
    events = setup["events"]
    reco_t = setup["torch"].simulate(events, seed=1)
    reco_o = setup["onnx"].simulate(events, seed=1)
    assert reco_o.fields == reco_t.fields
    assert str(reco_o.type) == str(reco_t.type)
    idx = setup["torch"].config.data.index_branch
    # efficiency and fake counts are numpy draws in both: the same objects, other values
    assert ak.array_equal(ak.num(reco_o[idx]), ak.num(reco_t[idx]))
    assert ak.array_equal(reco_o[idx], reco_t[idx])
    assert not np.array_equal(ak.flatten(reco_o.Jet_pt), ak.flatten(reco_t.Jet_pt))
    assert ak.array_equal(reco_o, setup["onnx"].simulate(events, seed=1))  # reproducible


def test_torch_free_simulate_and_generate(setup: dict, tmp_path: Path) -> None:
    """With ``import torch`` failing: FastSim.load(OUT, backend="onnx").simulate and
    ``hepgen generate --backend onnx`` work, and torch is never imported."""
    output = tmp_path / "generated.root"
    script = BLOCK_TORCH + textwrap.dedent(
        f"""
        import json, uproot
        from hepgen.fastsim import FastSim
        sim = FastSim.load({str(setup["out"])!r}, backend="onnx")
        events = uproot.open({str(setup["events_file"])!r})["Events"].arrays(
            sim.condition_names
        )
        reco = sim.simulate(events, seed=1)
        from hepgen.cli import main
        rc = main(["generate", {str(setup["out"])!r}, {str(setup["events_file"])!r},
                   "-o", {str(output)!r}, "--backend", "onnx", "--quiet"])
        print(json.dumps({{"rc": rc, "n": len(reco), "fields": reco.fields,
                          "torch": "torch" in sys.modules}}))
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result == {
        "rc": 0,
        "n": 300,
        "fields": [*setup["torch"].target_names, "Jet_genJetIdx"],
        "torch": False,
    }
    # the output is a readable ROOT file with the generated jets and the kept full sim
    tree = uproot.open(output)["Events"]
    assert tree.num_entries == 300
    assert {"Jet_pt", "nJet", "FullSimJet_pt", "GenJet_pt"} <= set(tree.keys())
    counts = tree["nJet"].array(library="np")
    assert counts.sum() == len(ak.flatten(tree["Jet_pt"].array()))


def test_directory_without_export_is_refused(setup: dict, tmp_path: Path, capsys) -> None:
    model = setup["model"]
    argv = ["generate", str(model), str(setup["events_file"]), "-o", str(tmp_path / "o.root")]
    assert main([*argv, "--backend", "onnx"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert str(model) in err and f"hepgen export {model} --format onnx -o OUT" in err
    assert not (tmp_path / "o.root").exists()
    with pytest.raises(InputError, match="holds no ONNX export"):
        FastSim.load(model, backend="onnx")
    with pytest.raises(InputError, match="backend 'tensorrt': expected 'torch' or 'onnx'"):
        FastSim.load(setup["out"], backend="tensorrt")


def test_load_model_and_handles_carry_the_backend(setup: dict) -> None:
    sim = load_model(setup["out"], backend="onnx")
    assert isinstance(sim.response_, OnnxGenerator)
    handle = ModelHandle(setup["out"], "cpu", command="generate", backend="onnx")
    sent = copy.deepcopy(handle)  # what a Dask worker gets: the directory and the backend
    assert sent.model is None and sent.backend == "onnx"
    assert isinstance(sent.get().response_, OnnxGenerator)
    # a generator object travels as its graph paths and reopens them
    gen = pickle.loads(pickle.dumps(setup["onnx"].response_))
    c = setup["c"][:50]
    assert np.array_equal(gen.sample(c, seed=9), setup["onnx"].response_.sample(c, seed=9))


def test_bad_inputs_are_input_errors(setup: dict) -> None:
    gen = setup["onnx"].response_
    c = setup["c"][:10]
    with pytest.raises(InputError, match="conditions have 3 columns, the model expects 7"):
        gen.sample(c[:, :3])
    bad = c.copy()
    bad[4, 2] = np.nan
    with pytest.raises(InputError, match="1 rows of the conditions have NaN"):
        gen.sample(bad)
    with pytest.raises(InputError, match="targets have 2 columns"):
        gen.log_prob(np.zeros((10, 2), np.float32), c)
    with pytest.raises(InputError, match="batch_size must be a positive integer"):
        gen.sample(c, batch_size=0)
    assert gen.sample(c[:0], seed=1).shape == (0, gen.n_features_)
    assert gen.log_prob(np.zeros((0, gen.n_features_), np.float32), c[:0]).shape == (0,)
    with pytest.raises(InputError, match="cannot be saved"):
        gen.save(setup["work"] / "nowhere")


def test_generator_without_density_graph_has_no_likelihood(setup: dict, monkeypatch) -> None:
    graph = setup["onnx"].response_.sample_graph
    monkeypatch.setenv(THREADS_ENV, "2")
    gen = OnnxGenerator(graph, kind="gan")
    assert not gen.has_likelihood and gen.threads == 2
    with pytest.raises(NoLikelihoodError, match="'gan' model has no tractable likelihood"):
        gen.log_prob(np.zeros((1, 7), np.float32), np.zeros((1, 7), np.float32))
    monkeypatch.setenv(THREADS_ENV, "many")
    with pytest.raises(InputError, match=f"{THREADS_ENV}='many'"):
        OnnxGenerator(graph)
    with pytest.raises(InputError, match="positive number of threads"):
        OnnxGenerator(graph, threads=0)


def test_a_generator_with_its_own_noise_width(tmp_path: Path) -> None:
    """A GAN-shaped graph: noise (n, 4) and conditions (n, 3) -> x (n, 2); the noise width is
    the graph's, the draws numpy's."""
    import torch

    class Generator(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.net = torch.nn.Linear(7, 2)

        def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
            return self.net(torch.cat([z, c], dim=1))

    path = tmp_path / "gan.sample.onnx"
    net = Generator().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (torch.randn(3, 4), torch.randn(3, 3)),
            path,
            dynamo=False,
            opset_version=18,
            input_names=["z", "c"],
            output_names=["x"],
            dynamic_axes={"z": {0: "n"}, "c": {0: "n"}, "x": {0: "n"}},
        )
    gen = OnnxGenerator(path, kind="gan")
    assert (gen.n_noise_, gen.n_conditions_, gen.n_features_) == (4, 3, 2)
    c = np.random.default_rng(1).normal(size=(20, 3)).astype(np.float32)
    z = np.random.default_rng(5).standard_normal((20, 4), dtype=np.float32)
    with torch.inference_mode():
        expected = net(torch.from_numpy(z), torch.from_numpy(c)).numpy()
    assert np.abs(gen.sample(c, seed=5, batch_size=6) - expected).max() < 1e-5
    assert not gen.has_likelihood


def test_without_onnxruntime_the_extra_is_named(setup: dict, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime fails
    with pytest.raises(MissingDependencyError, match=r"pip install 'hepgen\[onnx\]'"):
        FastSim.load(setup["out"], backend="onnx")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format_version": 2}, "export format_version 2"),
        ({"target": "torchscript"}, "an export for 'torchscript', not 'onnx'"),
        ({"graphs": {}}, "no graph 'flow'"),
        ({"graphs.flow.sample": "../flow.sample.onnx"}, "a relative path inside the folder"),
        ({"graphs.flow.n_conditions": 3}, "graphs.flow.n_conditions is 3, its graph has 7"),
        ({"graphs.flow.sample": "onnx/missing.onnx"}, "ONNX graph not found"),
    ],
)
def test_damaged_manifests_are_refused(
    setup: dict, tmp_path: Path, change: dict, message: str
) -> None:
    out = tmp_path / "copy"
    shutil.copytree(setup["out"], out)
    manifest = json.loads((out / EXPORT_FILE).read_text())
    for key, value in change.items():
        *parents, last = key.split(".")
        target = manifest
        for part in parents:
            target = target[part]
        target[last] = value
    (out / EXPORT_FILE).write_text(json.dumps(manifest))
    with pytest.raises(InputError, match=message):
        FastSim.load(out, backend="onnx")
    (out / EXPORT_FILE).write_text("{not json")
    with pytest.raises(InputError, match="unreadable export manifest"):
        read_export(out)


def test_models_package_imports_no_torch() -> None:
    """Every public name of hepgen.models stays importable; the package itself, the registry
    and the ONNX backend load without torch (the heavy names on first use)."""
    code = BLOCK_TORCH + textwrap.dedent(
        """
        import hepgen.models as m
        from hepgen.models import KINDS, NoLikelihoodError, model_class
        from hepgen.models.onnx_backend import OnnxGenerator
        import hepgen.fastsim, hepgen.generate
        assert KINDS == ("flow", "gan", "vae")
        assert "torch" not in sys.modules
        try:
            m.ConditionalFlow
        except ImportError:
            print("lazy")
        """
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip() == "lazy", run.stderr
    import hepgen.models as models

    for name in models.__all__:
        assert getattr(models, name) is not None
    assert set(models.__all__) <= set(dir(models))
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        models.nothing  # noqa: B018
