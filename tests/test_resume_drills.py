"""Crash drills: ``hepgen train`` killed with SIGKILL in each stage, then ``--resume``.

Each drill runs ``python -m hepgen train`` in a subprocess on a tiny config with a fixed number
of seeded epochs, polls the checkpoint folder until the stage it aims at is under way (never a
fixed sleep), kills the process with SIGKILL (asserting that it was killed, not finished),
resumes with ``--resume`` and compares every file of the model directory with an
uninterrupted run of the same seed: every tensor equal (``torch.equal``) and every weights
file byte-identical, so ``weights_sha256`` is the same too.  Also: the canonical safetensors
header, a planted pickle refused, ``--resume`` without checkpoints, ``--seed -1`` and
``--device cuda`` without a GPU.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from hepgen.cli import main
from hepgen.errors import InputError
from hepgen.resources import config_path
from hepgen.training import TrainingError, canonical_safetensors, save_safetensors

EPOCHS = 6  # per generator stage: a kill after epoch 1 leaves 5 to go, the stage cannot end first
POLL_TIMEOUT = 300.0  # seconds: a generous bound, only reached when something is broken


def tiny_config(tmp_path: Path) -> Path:
    """configs/toy_jets.yaml with a tiny flow, a small xgboost and 6 fixed epochs."""
    raw = yaml.safe_load(config_path("toy_jets.yaml").read_text())
    raw["model"] = {
        "kind": "flow",
        "fakes": True,
        "flow": {"n_transforms": 2, "hidden_features": 16, "n_bins": 4},
        "efficiency": {"max_depth": 2, "learning_rate": 0.3, "n_estimators": 20},
    }
    raw["training"] = {
        "max_epochs": EPOCHS,
        "batch_size": 512,
        "learning_rate": 2e-3,
        "selection": "loss",
        "patience": 100,
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def command(config: Path, jets: Path, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "hepgen",
        "train",
        str(config),
        "-o",
        str(out),
        "--files",
        str(jets),
        "--device",
        "cpu",
        "--quiet",
        *extra,
    ]


def env() -> dict[str, str]:
    # one thread each: the same arithmetic in every run, and the 2 cores are shared
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def run_to_end(config: Path, jets: Path, out: Path, *extra: str) -> None:
    done = subprocess.run(
        command(config, jets, out, *extra), env=env(), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]


def epoch(path: Path) -> int:
    try:
        return int(json.loads(path.read_text())["epoch"])
    except (OSError, ValueError, KeyError):
        return 0


def run_and_kill(config: Path, jets: Path, out: Path, condition: Callable[[Path], bool]) -> None:
    """Start training, SIGKILL it as soon as ``condition(checkpoints)`` holds."""
    proc = subprocess.Popen(
        command(config, jets, out),
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + POLL_TIMEOUT
    try:
        while not condition(out / "checkpoints"):
            assert proc.poll() is None, f"training ended before the drill's stage: {proc.stderr}"
            assert time.monotonic() < deadline, "the drill's stage never started"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL  # killed, not finished
    assert not (out / "hepgen-model.json").exists()


def assert_same_model(reference: Path, resumed: Path) -> None:
    """Every tensor equal, every weights file byte-identical, same weights_sha256."""
    weights = sorted(p.name for p in reference.glob("*.safetensors"))
    assert weights == sorted(p.name for p in resumed.glob("*.safetensors"))
    assert {"flow.safetensors", "fakes_flow.safetensors"} <= set(weights)
    for name in weights:
        a, b = load_file(reference / name), load_file(resumed / name)
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}: tensor {key} differs"
        assert (reference / name).read_bytes() == (resumed / name).read_bytes(), name
        meta = name.replace(".safetensors", ".json")
        sha_a = json.loads((reference / meta).read_text())["weights_sha256"]
        sha_b = json.loads((resumed / meta).read_text())["weights_sha256"]
        assert sha_a == sha_b == hashlib.sha256((resumed / name).read_bytes()).hexdigest()
    # the efficiency booster (xgboost JSON) too
    assert (reference / "efficiency.json").read_bytes() == (
        resumed / "efficiency.json"
    ).read_bytes()
    card_a = json.loads((reference / "hepgen-model.json").read_text())["training"]
    card_b = json.loads((resumed / "hepgen-model.json").read_text())["training"]
    assert [h["val_loss"] for h in card_a["history"]] == [h["val_loss"] for h in card_b["history"]]
    assert card_a["selected_epoch"] == card_b["selected_epoch"]


@pytest.fixture(scope="module")
def setup(jets_file: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(config, input file, the uninterrupted reference model directory)."""
    tmp = tmp_path_factory.mktemp("drills")
    config = tiny_config(tmp)
    reference = tmp / "reference"
    run_to_end(config, jets_file, reference)
    return config, jets_file, reference


def test_kill_during_fakes_epochs_then_resume(setup, tmp_path: Path) -> None:
    # the reported bug: the fakes stage had no checkpoint of its own to resume from
    config, jets, reference = setup
    out = tmp_path / "m"
    run_and_kill(config, jets, out, lambda c: epoch(c / "fakes" / "last.json") >= 1)
    assert (out / "checkpoints" / "finished" / "done-response.json").is_file()
    assert not (out / "checkpoints" / "finished" / "done-fakes.json").exists()
    fakes_state = out / "checkpoints" / "fakes" / "last.json"
    before = json.loads(fakes_state.read_text())["history"]
    run_to_end(config, jets, out, "--resume")
    assert_same_model(reference, out)
    after = json.loads(fakes_state.read_text())["history"]
    # continued, not restarted: the killed run's epochs (with their own timings) are kept
    assert len(after) == EPOCHS and after[: len(before)] == before


def test_kill_during_response_epochs_then_resume(setup, tmp_path: Path) -> None:
    config, jets, reference = setup
    out = tmp_path / "m"
    run_and_kill(config, jets, out, lambda c: epoch(c / "last.json") >= 1)
    assert not (out / "checkpoints" / "finished" / "done-response.json").exists()
    assert not (out / "checkpoints" / "fakes").exists()
    run_to_end(config, jets, out, "--resume")
    assert_same_model(reference, out)


def test_kill_after_efficiency_then_resume(setup, tmp_path: Path) -> None:
    config, jets, reference = setup
    out = tmp_path / "m"
    run_and_kill(config, jets, out, lambda c: (c / "finished" / "done-efficiency.json").is_file())
    assert not (out / "checkpoints" / "finished" / "done-response.json").exists()
    booster = (out / "checkpoints" / "finished" / "efficiency.json").stat().st_mtime_ns
    run_to_end(config, jets, out, "--resume")
    # the finished efficiency stage was loaded, not trained again
    assert (out / "checkpoints" / "finished" / "efficiency.json").stat().st_mtime_ns == booster
    assert_same_model(reference, out)


def test_resume_of_a_finished_run_trains_nothing_again(setup, tmp_path: Path) -> None:
    config, jets, reference = setup
    out = tmp_path / "m"
    run_to_end(config, jets, out)
    assert_same_model(reference, out)  # two identical runs: byte-identical weights files
    finished = out / "checkpoints" / "finished"
    stamps = {p.name: p.stat().st_mtime_ns for p in finished.iterdir()}
    last = (out / "checkpoints" / "last.safetensors").stat().st_mtime_ns
    run_to_end(config, jets, out, "--resume")
    assert {p.name: p.stat().st_mtime_ns for p in finished.iterdir()} == stamps
    assert (out / "checkpoints" / "last.safetensors").stat().st_mtime_ns == last
    assert_same_model(reference, out)


def test_resume_without_checkpoints_names_the_directory(
    tmp_path: Path, jets_file: Path, capsys
) -> None:
    config = tiny_config(tmp_path)
    out = tmp_path / "empty"
    assert (
        main(
            [
                "train",
                str(config),
                "-o",
                str(out),
                "--files",
                str(jets_file),
                "--device",
                "cpu",
                "--resume",
                "--quiet",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "cannot resume" in err and str(out) in err and "Traceback" not in err


def test_seed_and_device_are_checked_up_front(tmp_path: Path, capsys) -> None:
    config = tiny_config(tmp_path)
    missing = tmp_path / "missing.root"  # never read: the arguments fail first
    assert (
        main(
            [
                "train",
                str(config),
                "-o",
                str(tmp_path / "m"),
                "--files",
                str(missing),
                "--seed",
                "-1",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "--seed must be an integer with 0 <= seed" in err and "Traceback" not in err
    if not torch.cuda.is_available():
        assert (
            main(
                [
                    "train",
                    str(config),
                    "-o",
                    str(tmp_path / "m"),
                    "--files",
                    str(missing),
                    "--device",
                    "cuda",
                ]
            )
            == 2
        )
        err = capsys.readouterr().err
        assert "torch sees no CUDA device" in err and "missing.root" not in err


def test_fastsim_rejects_a_negative_seed_in_the_api(tmp_path: Path) -> None:
    from hepgen.config import load_config
    from hepgen.fastsim import FastSim

    cfg = load_config(tiny_config(tmp_path))
    cfg = cfg.model_copy(update={"seed": -1})
    with pytest.raises(InputError, match=r"seed=-1: expected an integer with 0 <= seed"):
        FastSim(cfg, device="cpu").fit(files=[str(tmp_path / "never_read.root")], quiet=True)


def test_canonical_safetensors_header_is_sorted_and_byte_stable(tmp_path: Path) -> None:
    tensors = {"b.weight": torch.arange(6.0).reshape(2, 3), "a": torch.tensor([1, 2, 3])}
    one = canonical_safetensors(tensors, {"z": "1", "format": "x", "m": "2"})
    two = canonical_safetensors(
        dict(reversed(tensors.items())), {"m": "2", "format": "x", "z": "1"}
    )
    assert one == two
    n = int.from_bytes(one[:8], "little")
    assert n % 8 == 0
    header = one[8 : 8 + n].decode().rstrip(" ")
    assert header == json.dumps(json.loads(header), sort_keys=True, separators=(",", ":"))
    digest = save_safetensors(tmp_path / "t.safetensors", tensors, {"format": "x"})
    assert digest == hashlib.sha256((tmp_path / "t.safetensors").read_bytes()).hexdigest()
    loaded = load_file(tmp_path / "t.safetensors")
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())


class _Planted:
    """Unpickling this would create a file: the proof that code ran."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (Path.touch, (self.target,))


def test_a_planted_pickle_is_refused_and_never_executed(setup, tmp_path: Path) -> None:
    from hepgen.fastsim import FastSim

    _, _, reference = setup
    model = tmp_path / "model"
    model.mkdir()
    for p in reference.iterdir():
        if p.is_file():
            (model / p.name).write_bytes(p.read_bytes())
    proof = tmp_path / "code_ran"
    payload = pickle.dumps({"weights": _Planted(proof)})
    (model / "flow.safetensors").write_bytes(payload)
    meta = json.loads((model / "flow.json").read_text())
    meta["weights_sha256"] = hashlib.sha256(payload).hexdigest()  # even with a valid checksum
    (model / "flow.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="corrupt or truncated safetensors"):
        FastSim.load(model)
    assert not proof.exists()


def test_no_pickle_or_torch_load_in_the_package() -> None:
    package = Path(__file__).resolve().parent.parent / "hepgen"
    for path in package.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "import pickle" not in text and "torch.load(" not in text, path


def test_stage_marker_with_other_settings_is_refused(tmp_path: Path) -> None:
    from hepgen.models.stages import run_stage

    def fit(resume: bool):
        return 1, None

    def save(model, folder, stem):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{stem}.txt").write_text(str(model))

    def load(folder, stem):
        return int((folder / f"{stem}.txt").read_text())

    assert run_stage("s", tmp_path, False, {"n": 1}, fit=fit, save=save, load=load) == (1, None)
    with pytest.raises(
        TrainingError,
        match=r"stage 's' in .*done-s\.json was trained with "
        r"other settings \(n differ\)",
    ):
        run_stage("s", tmp_path, True, {"n": 2}, fit=fit, save=save, load=load)


# ---------------------------------------------------------------------------- scan resume

SCAN_FEATURES = [
    {"name": "mj2", "kind": "positive"},
    {"name": "mj1", "kind": "positive"},
    {"name": "tau21_j1", "kind": "bounded", "bounds": [0.0, 1.0]},
]


class _Interrupt(Exception):
    """Stands in for a crash in the middle of a scan."""


def _scan_inputs():
    import awkward as ak

    from hepgen.anomaly.scan import ScanSettings
    from hepgen.sim import DijetSimulation

    ev = DijetSimulation(signal_fraction=0.004).generate(40_000, seed=21)
    cols = {f: ak.to_numpy(ev[f]) for f in ("mjj", "mj1", "mj2", "tau21_j1", "label")}
    settings = ScanSettings(
        resonance={"name": "mjj", "kind": "positive"},
        features=SCAN_FEATURES,
        start=3.3,
        stop=3.9,
        width=0.4,
        step=0.2,
        sideband=0.4,
        label="label",
        seed=3,
        flow={"kind": "coupling", "n_transforms": 2, "hidden_features": 16, "n_bins": 4},
        training={"batch_size": 512, "max_epochs": 3, "patience": 5, "learning_rate": 2e-3},
        device="cpu",
        folds=2,
        oversample=2,
    )
    return cols, settings


def _comparable(result) -> dict:
    d = result.to_dict()
    d.pop("seconds")
    for w in d["windows"]:
        w.pop("seconds")
        w["training"].pop("timings")
    return json.loads(json.dumps(d, default=str))


def test_interrupted_scan_resumes_to_the_same_result(tmp_path: Path, monkeypatch) -> None:
    import hepgen.training.loop
    import hepgen.training.run
    from hepgen.anomaly.scan import run_scan

    cols, settings = _scan_inputs()
    reference = run_scan(cols, settings, quiet=True, work_dir=tmp_path / "ref")
    assert len(reference.windows) == 2

    # crash in window 2's background flow, right after its epoch-2 checkpoint (saves 1-3:
    # window 1's flow; 4, 5: window 2's)
    work = tmp_path / "work"
    save = hepgen.training.run._Run.save
    calls = []

    def crashing_save(self, *args, **kwargs):
        save(self, *args, **kwargs)
        calls.append(self.state.epoch)
        if len(calls) == 5:
            raise _Interrupt

    monkeypatch.setattr(hepgen.training.loop, "CHECKPOINT_SECONDS", 0.0)  # after every epoch
    monkeypatch.setattr(hepgen.training.run._Run, "save", crashing_save)
    with pytest.raises(_Interrupt):
        run_scan(cols, settings, quiet=True, work_dir=work)
    monkeypatch.setattr(hepgen.training.run._Run, "save", save)
    assert calls == [1, 2, 3, 1, 2]
    assert (work / "window-000.json").is_file() and not (work / "window-000").exists()
    assert not (work / "window-001.json").exists()
    assert epoch(work / "window-001" / "background" / "last.json") == 2

    resumed_epochs = []

    def counting_save(self, *args, **kwargs):
        save(self, *args, **kwargs)
        resumed_epochs.append(self.state.epoch)

    monkeypatch.setattr(hepgen.training.run._Run, "save", counting_save)
    resumed = run_scan(cols, settings, quiet=True, work_dir=work, resume=True)
    assert resumed_epochs == [3]  # window 1 loaded; window 2's flow continued at epoch 3
    assert _comparable(resumed) == _comparable(reference)
    for a, b in zip(reference.windows, resumed.windows, strict=True):
        assert a.arrays.keys() == b.arrays.keys()
        for key in a.arrays:
            np.testing.assert_array_equal(a.arrays[key], b.arrays[key])


def test_scan_resume_refuses_another_scan_and_a_missing_state(tmp_path: Path) -> None:

    from hepgen.anomaly.scan_cache import ScanWork

    cols, settings = _scan_inputs()
    windows = settings.windows()
    with pytest.raises(TrainingError, match=r"cannot resume: .* holds no scan to resume"):
        ScanWork(tmp_path / "work", cols, settings, windows, resume=True)
    ScanWork(tmp_path / "work", cols, settings, windows, resume=False)
    other = settings.replace(seed=4)
    with pytest.raises(TrainingError, match=r"settings differ from the interrupted scan's"):
        ScanWork(tmp_path / "work", cols, other, windows, resume=True)
    cols = {**cols, "mj1": cols["mj1"] * 1.01}
    with pytest.raises(TrainingError, match=r"columns_sha256 differ"):
        ScanWork(tmp_path / "work", cols, settings, windows, resume=True)


def test_cli_scan_resume_without_a_work_folder_and_bad_seed(tmp_path: Path, capsys) -> None:
    config = Path(__file__).resolve().parents[1] / "configs" / "toy_anomaly_scan.yaml"
    out = tmp_path / "report"
    assert main(["scan", str(config), "-o", str(out), "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"cannot resume: '{out}' holds no interrupted scan" in err
    assert main(["scan", str(config), "-o", str(out), "--seed", "-1", "--quiet"]) == 2
    assert "--seed must be an integer with 0 <= seed" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["scan", str(config), "-o", str(out), "--device", "cuda", "--quiet"]) == 2
        assert "torch sees no CUDA device" in capsys.readouterr().err


def test_stage_finished_on_max_epochs_continues_when_max_epochs_grew(tmp_path: Path) -> None:
    from hepgen.models.stages import run_stage
    from hepgen.training import TrainingResult

    def result(n: int) -> TrainingResult:
        history = [{"epoch": e + 1, "val_loss": 1.0 / (e + 1)} for e in range(n)]
        return TrainingResult(
            history=history,
            best_loss_epoch=n,
            best_metric_epoch=None,
            selected_epoch=n,
            selection="loss",
            stopped="max_epochs",
            n_bad_batches=0,
        )

    resumed = []

    def fit(resume: bool):
        resumed.append(resume)
        return len(resumed), result(2 if len(resumed) == 1 else 4)

    def save(model, folder, stem):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{stem}.txt").write_text(str(model))

    def load(folder, stem):
        return int((folder / f"{stem}.txt").read_text())

    loop = tmp_path / "last.safetensors"
    loop.write_bytes(b"stands for the loop's checkpoint")
    kw = {"fit": fit, "save": save, "load": load, "loop_checkpoint": loop}
    run_stage("r", tmp_path, False, {"n": 1}, max_epochs=2, **kw)
    model, training = run_stage("r", tmp_path, True, {"n": 1}, max_epochs=2, **kw)
    assert (model, len(training.history), resumed) == (1, 2, [False])  # loaded
    model, training = run_stage("r", tmp_path, True, {"n": 1}, max_epochs=4, **kw)
    assert (model, len(training.history), resumed) == (2, 4, [False, True])  # continued
