"""``hepgen export``: the export folder, its parity with the Python model, and its refusals.

A small fast simulation is trained for real (``conftest.train_small_fastsim``) and exported to
ONNX with the default exporter (dynamo): the folder layout, ``export.json``, the parity
recomputed here with onnxruntime on fresh inputs of another row count, and a model directory
left byte for byte as it was.  Then TorchScript, bfloat16, a GAN, a density model, a
sabotaged graph (refused: nothing written) and the command line's exit codes.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import train_small_fastsim

from hepgen.cli import main
from hepgen.errors import InputError
from hepgen.export import ParityFailed, export_model
from hepgen.modeldir import model_hash

ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

GEN = ["GenJet_pt", "GenJet_eta", "GenJet_phi", "GenJet_mass", "GenJet_hadronFlavour"]


def snapshot(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` (checkpoints included), by relative path."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def flow_model(tmp_path_factory) -> Path:
    return train_small_fastsim(tmp_path_factory.mktemp("export_flow"), 1000, 1, "--seed", "1")


@pytest.fixture(scope="module")
def onnx_export(flow_model, tmp_path_factory):
    """The flow model exported to ONNX with the defaults (dynamo exporter), and the model
    directory's snapshot taken before."""
    before = snapshot(flow_model)
    out = tmp_path_factory.mktemp("onnx_out") / "exported"
    result = export_model(flow_model, out, "onnx")
    return result, out, before


def real_conditions(model: Path) -> dict[str, np.ndarray]:
    """Gen-jet conditions of the training file (flat), and the gen multiplicity per jet."""
    import awkward as ak

    from hepgen.io.reader import read_events

    events = read_events(model.parent / "train.root", [*GEN, "nGenJet"])
    out = {k: ak.to_numpy(ak.flatten(events[k])) for k in GEN}
    out["nGenJet"] = ak.to_numpy(events["nGenJet"])
    return out


def session(path: Path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_onnx_export_folder_manifest_and_parity(onnx_export, flow_model):
    """The proof of the feature: default ONNX export of a trained fast simulation, its
    folder, its manifest, and parity recomputed independently (fresh z and real
    conditions, 1000 and 1 rows: another batch size than the trace's and the check's)."""
    from hepgen.fastsim import FastSim

    result, out, before = onnx_export
    # the folder: every model file copied unchanged, four graphs, the manifest
    for name in before:
        if "/" not in name:
            assert (out / name).read_bytes() == (flow_model / name).read_bytes(), name
    assert not (out / "checkpoints").exists()
    graphs = sorted(p.name for p in (out / "onnx").iterdir())
    assert graphs == [
        "fakes_flow.log_prob.onnx",
        "fakes_flow.sample.onnx",
        "flow.log_prob.onnx",
        "flow.sample.onnx",
    ]
    manifest = json.loads((out / "export.json").read_text())
    assert manifest == json.loads(json.dumps(result.manifest))
    assert (manifest["format"], manifest["format_version"], manifest["target"]) == (
        "hepgen-export",
        1,
        "onnx",
    )
    assert (manifest["opset"], manifest["precision"]) == (18, "float32")
    assert manifest["model_hash"] == model_hash(flow_model)
    flow = manifest["graphs"]["flow"]
    assert flow["role"] == "response" and flow["kind"] == "flow"
    assert (flow["n_features"], flow["n_conditions"], flow["n_latent"]) == (7, 7, 7)
    assert flow["sample"] == "onnx/flow.sample.onnx"
    assert flow["log_prob"] == "onnx/flow.log_prob.onnx"
    assert flow["exporter"] == {"sample": "dynamo", "log_prob": "dynamo"}
    assert manifest["graphs"]["fakes_flow"]["role"] == "fakes"
    assert manifest["graphs"]["fakes_flow"]["n_conditions"] == 1
    assert set(manifest["parity"]) == {
        "flow.sample",
        "flow.log_prob",
        "fakes_flow.sample",
        "fakes_flow.log_prob",
    }
    for key, report in manifest["parity"].items():
        limit = 1e-4 if key.endswith("sample") else 1e-3
        assert report["passed"] and report["n_rows"] == 4096 and report["tolerance"] == limit
        assert 0 <= report["max_abs"] <= limit, key

    # the parity, again, here: onnxruntime against the eager model, on inputs of our own
    sim = FastSim.load(out, device="cpu")  # the export folder is still a model directory
    raw = real_conditions(flow_model)
    rng = np.random.default_rng(123)
    cases = [
        ("flow", sim.response_, sim.preprocessor_.transform_conditions(raw)),
        (
            "fakes_flow",
            sim.fakes_.model,
            sim.fakes_.preprocessor.transform_conditions({"nGenJet": raw["nGenJet"]}),
        ),
    ]
    for stem, model, conditions in cases:
        flow_module = model.module_.eval()
        sample, density = session(out / f"onnx/{stem}.sample.onnx"), None
        density = session(out / f"onnx/{stem}.log_prob.onnx")
        assert [i.name for i in sample.get_inputs()] == ["z", "c"]
        assert [o.name for o in density.get_outputs()] == ["log_prob"]
        for n in (1000, 1):
            c = conditions[rng.integers(0, len(conditions), n)].astype(np.float32)
            z = rng.standard_normal((n, 7)).astype(np.float32)
            x = sample.run(None, {"z": z, "c": c})[0]
            with torch.no_grad():
                ref = flow_module.from_latent(torch.from_numpy(z), torch.from_numpy(c)).numpy()
                ref_lp = flow_module.log_prob(torch.from_numpy(ref), torch.from_numpy(c)).numpy()
            lp = density.run(None, {"x": ref, "c": c})[0]
            assert x.shape == (n, 7) and lp.shape == (n,)
            assert np.abs(x - ref).max() <= 1e-4, stem
            assert np.abs(lp - ref_lp).max() <= 1e-3, stem


def test_export_leaves_the_model_directory_byte_identical(onnx_export, flow_model):
    _, _, before = onnx_export
    assert snapshot(flow_model) == before


def test_torchscript_export_through_the_command_line(flow_model, tmp_path, capsys):
    out = tmp_path / "ts"
    code = main(["export", str(flow_model), "--format", "torchscript", "-o", str(out), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 5 and all(": pass" in line for line in printed[:4])
    assert printed[-1] == f"exported 4 graphs (torchscript, float32) to {out}"
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["target"] == "torchscript" and manifest["opset"] is None
    assert manifest["graphs"]["flow"]["sample"] == "torchscript/flow.sample.pt"
    assert manifest["graphs"]["flow"]["exporter"]["sample"] == "torch.jit.trace"
    # the traced graph runs at another batch size and matches the eager flow
    from hepgen.fastsim import FastSim

    flow = FastSim.load(flow_model, device="cpu").response_.module_.eval()
    graph = torch.jit.load(str(out / "torchscript/flow.sample.pt"))
    z, c = torch.randn(777, 7), torch.randn(777, 7)
    with torch.no_grad():
        assert (graph(z, c) - flow.from_latent(z, c)).abs().max().item() <= 1e-4


def test_bfloat16_torchscript_reports_its_tolerance_and_onnx_bf16_is_refused(flow_model, tmp_path):
    result = export_model(flow_model, tmp_path / "bf16", "torchscript", precision="bfloat16")
    assert result.manifest["precision"] == "bfloat16"
    sample = result.manifest["parity"]["flow.sample"]
    assert sample["tolerance"] == 0.05 and sample["passed"]
    assert 0 < sample["max_abs"] < 0.05  # reduced precision: not zero, within the bound
    assert result.manifest["parity"]["flow.log_prob"]["tolerance"] == pytest.approx(0.5)
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime with CUDA may run bfloat16 MatMul")
    with pytest.raises(InputError, match="no bfloat16 MatMul"):
        export_model(flow_model, tmp_path / "bf16_onnx", "onnx", precision="bfloat16")
    assert not (tmp_path / "bf16_onnx").exists()


def sabotage(monkeypatch) -> None:
    """Make the sampling graph builder shift one bias of the last affine map by 0.01."""
    import hepgen.export.graphs as graphs

    original = graphs.SamplingGraph

    def perturbed(flow, precision="float32"):
        graph = original(flow, precision)
        graph.map0_b[0] += 0.01
        return graph

    monkeypatch.setattr(graphs, "SamplingGraph", perturbed)


def test_a_sabotaged_graph_is_refused_and_nothing_is_written(flow_model, tmp_path, monkeypatch):
    sabotage(monkeypatch)
    out = tmp_path / "refused"
    with pytest.raises(ParityFailed, match=r"flow\.sample: max \|diff\| 1\.00e-02.*FAIL"):
        export_model(flow_model, out, "onnx", exporter="legacy")
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no temporary folder left
    # with --overwrite, an earlier export stays as it was
    (out / "onnx").mkdir(parents=True)
    (out / "export.json").write_text("{}")
    code = main(
        ["export", str(flow_model), "--format", "torchscript", "-o", str(out), "--overwrite"]
    )
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "onnx"]
    assert (out / "export.json").read_text() == "{}"


def test_command_line_refusals_exit_2(flow_model, tmp_path, capsys, monkeypatch):
    def run(*argv: str) -> tuple[int, str]:
        code = main(["export", *argv])
        err = capsys.readouterr().err
        assert err.count("\n") == 1, err  # one line
        return code, err

    code, err = run(str(tmp_path / "nope"), "--format", "onnx", "-o", str(tmp_path / "o"))
    assert code == 2 and "does not exist" in err
    (tmp_path / "empty").mkdir()
    code, err = run(str(tmp_path / "empty"), "--format", "onnx", "-o", str(tmp_path / "o"))
    assert code == 2 and "not a hepgen model directory" in err
    existing = tmp_path / "existing"
    existing.mkdir()
    code, err = run(str(flow_model), "--format", "onnx", "-o", str(existing))
    assert code == 2 and "already exists; use --overwrite" in err
    assert list(existing.iterdir()) == []
    code, err = run(str(flow_model), "--format", "onnx", "-o", str(flow_model / "onnx_out"))
    assert code == 2 and "inside the model directory" in err
    code, err = run(
        str(flow_model), "--format", "onnx", "-o", str(tmp_path / "o"), "--tolerance", "-1"
    )
    assert code == 2 and "--tolerance" in err
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    code, err = run(str(flow_model), "--format", "onnx", "-o", str(tmp_path / "o"))
    assert code == 2 and "pip install 'hepgen[onnx]'" in err
    assert not (tmp_path / "o").exists()
    assert main(["export", str(flow_model), "-o", str(tmp_path / "o")]) == 2  # --format needed


def test_gan_fast_simulation_exports_its_generator_on_given_noise(tmp_path):
    gan = {
        "model.kind": "gan",
        "model.gan.hidden_features": 16,
        "model.gan.critic_hidden_features": 16,
        "model.gan.n_blocks": 1,
        "model.gan.critic_blocks": 1,
        "model.gan.latent_dim": 4,
    }
    extra = [arg for k, v in gan.items() for arg in ("--set", f"{k}={v}")]
    model = train_small_fastsim(tmp_path, 1000, 1, "--seed", "1", *extra)
    result = export_model(model, tmp_path / "out", "onnx")
    graphs = result.manifest["graphs"]
    assert set(graphs) == {"gan", "fakes_gan"}
    assert graphs["gan"]["log_prob"] is None and graphs["gan"]["n_latent"] == 4
    assert sorted(p.name for p in (tmp_path / "out/onnx").iterdir()) == [
        "fakes_gan.sample.onnx",
        "gan.sample.onnx",
    ]
    from hepgen.fastsim import FastSim

    gan_module = FastSim.load(model, device="cpu").response_.module_.eval()
    rng = np.random.default_rng(5)
    z = rng.standard_normal((300, 4)).astype(np.float32)
    c = rng.standard_normal((300, 7)).astype(np.float32)
    x = session(tmp_path / "out/onnx/gan.sample.onnx").run(None, {"z": z, "c": c})[0]
    with torch.no_grad():
        ref = gan_module.generate(torch.from_numpy(z), torch.from_numpy(c), ema=True).numpy()
    assert np.abs(x - ref).max() <= 1e-4


def test_density_model_exports_its_flow(tmp_path):
    from hepgen.anomaly.density import DensityModel

    rng = np.random.default_rng(0)
    m = rng.uniform(0.0, 1.0, 3000)
    data = {"m": m, "x": 2.0 * m + rng.normal(0.0, 0.5, 3000), "y": rng.normal(size=3000)}
    model = DensityModel(
        [{"name": "x"}, {"name": "y"}],
        [{"name": "m"}],
        flow={"n_transforms": 1, "hidden_features": 8},
        training={"max_epochs": 1, "batch_size": 500},
        trend=1,
        device="cpu",
    ).fit(data, quiet=True)
    model.save(tmp_path / "density")
    result = export_model(tmp_path / "density", tmp_path / "out", "onnx", exporter="legacy")
    entry = result.manifest["graphs"]["flow"]
    assert entry["role"] == "density" and (entry["n_features"], entry["n_conditions"]) == (2, 1)
    assert entry["exporter"] == {"sample": "legacy", "log_prob": "legacy"}
    assert all(r.passed for r in result.reports) and len(result.reports) == 2
