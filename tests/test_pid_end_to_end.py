"""configs/toy_pid_flow.yaml end to end on the PID ntuple of ``hepgen simulate --process pid``.

simulate -> train -> generate -> validate through :func:`hepgen.cli.main` at reduced size
(a small flow, fixed epochs), and the sWeights check of issue 15: training with ``sw`` on the
background-contaminated sample recovers the response of the signal muons alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import uproot

from hepgen.cli import main
from hepgen.resources import config_path
from hepgen.sim.pid import OBJECTS, PID_RESPONSES, SENTINEL, write_signal_only

SMALL_FLOW = {
    "n_transforms: 6": "n_transforms: 4",
    "hidden_features: 128": "hidden_features: 32",
    "kind: autoregressive": "kind: coupling",
    "selection: ks ": "selection: loss ",
}


def pid_config_text(max_epochs: int, batch_size: int, weights: bool = True) -> str:
    """configs/toy_pid_flow.yaml with a small coupling flow trained for ``max_epochs`` epochs
    (no time limit); ``weights=False`` drops ``data.weights``."""
    text = config_path("toy_pid_flow.yaml").read_text()
    for old, new in SMALL_FLOW.items():
        if old in text:
            text = text.replace(old, new)
    lines = []
    for line in text.splitlines():
        key = line.strip().split(":")[0]
        if key in ("max_epochs", "batch_size", "time_limit"):
            continue
        if key == "weights" and not weights:
            continue
        lines.append(line)
        if line == "training:":
            lines += [f"  max_epochs: {max_epochs}", f"  batch_size: {batch_size}"]
    return "\n".join(lines) + "\n"


def both(arrays: dict, name: str) -> np.ndarray:
    return np.concatenate([arrays[f"{p}_{name}"] for p in OBJECTS])


def simulate(path: Path, n: int, seed: int) -> Path:
    args = ["simulate", "--process", "pid", "-n", str(n), "-o", str(path), "--seed", str(seed)]
    assert main([*args, "--quiet"]) == 0
    return path


def train(config: Path, files: list[Path], model: Path) -> Path:
    args = ["train", str(config), "--files", *map(str, files), "-o", str(model)]
    assert main([*args, "--quiet", "--device", "cpu", "--seed", "3"]) == 0
    return model


def generate(model: Path, source: Path, out: Path) -> dict[str, np.ndarray]:
    assert (
        main(["generate", str(model), str(source), "-o", str(out), "--quiet", "--seed", "4"]) == 0
    )
    return uproot.open(out)["DecayTree"].arrays(library="np")


def test_pid_config_end_to_end(tmp_path: Path) -> None:
    train_file = simulate(tmp_path / "train.root", 3000, seed=1)
    heldout = simulate(tmp_path / "heldout.root", 2000, seed=2)
    config = tmp_path / "pid.yaml"
    config.write_text(pid_config_text(max_epochs=12, batch_size=128))
    model = train(config, [train_file], tmp_path / "model")
    card = json.loads((model / "hepgen-model.json").read_text())
    assert card["config"]["data"]["layout"] == "objects"
    assert card["config"]["data"]["weights"] == "sw"

    out = tmp_path / "fast.root"
    gen = generate(model, heldout, out)
    src = uproot.open(heldout)["DecayTree"].arrays(library="np")
    # every branch kept, row order kept; the targets replaced, the originals kept as FullSim_
    targets = [f"{p}_{t}" for p in OBJECTS for t in PID_RESPONSES]
    assert set(gen) == set(src) | {f"FullSim_{t}" for t in targets}
    for name, values in src.items():
        kept = gen[f"FullSim_{name}" if name in targets else name]
        assert kept.dtype == values.dtype and np.array_equal(kept, values), name
    for name in targets:
        assert gen[name].dtype == np.float64 and np.isfinite(gen[name]).all()
        assert not np.array_equal(gen[name], src[name]), name

    # point masses are restored exactly, with about the true frequency
    p = both(src, "P")
    for name, value, tolerance in (("PIDK", SENTINEL, 0.015), ("PIDe", 0.0, 0.015)):
        true, fast = both(src, name), both(gen, name)
        f_true, f_fast = np.mean(true == value), np.mean(fast == value)
        assert f_true > 0.01 and abs(f_fast - f_true) < tolerance, (name, f_true, f_fast)
    # the sentinel follows the momentum as in the full simulation
    fast_k = both(gen, "PIDK")
    assert np.mean(fast_k[p > 80_000] == SENTINEL) > 3 * np.mean(fast_k[p < 40_000] == SENTINEL)
    # no values near the sentinel other than the sentinel itself
    assert np.all((fast_k == SENTINEL) | (fast_k > -300.0))
    prob = both(gen, "ProbNNmu")
    assert prob.min() >= 0.0 and prob.max() <= 1.0

    report = tmp_path / "report"
    args = ["validate", str(heldout), str(out), "-o", str(report), "--config", str(config)]
    assert main([*args, "--quiet", "--device", "cpu", "--c2st-repeats", "1"]) == 0
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["weighted"] is True and metrics["n_reference"] == 2 * 2000
    assert set(metrics["features"]) >= {"P", "ETA", "nTracks", *PID_RESPONSES}
    assert 0.4 < metrics["c2st"]["auc"] < 0.75


def _summary(arrays: dict) -> np.ndarray:
    """Mean PIDmu (computed), mean ProbNNmu and the fraction with ProbNNmu > 0.5."""
    pid_mu, prob = both(arrays, "PIDmu"), both(arrays, "ProbNNmu")
    return np.array(
        [pid_mu[pid_mu != SENTINEL].mean(), prob.mean(), np.mean(prob > 0.5)], dtype=np.float64
    )


@pytest.mark.slow  # three trainings: ~40 s on an idle 2-core machine (make test-slow)
def test_sweights_recover_the_signal_response(tmp_path: Path) -> None:
    """(a) full sample with sw, (b) truth signal only, (c) full sample unweighted: the same
    flow, epochs and seed, generated on the same held-out conditions. (a) ~ (b); (c) is off
    (the background's pions and kaons pull the muon response down)."""
    full = simulate(tmp_path / "train.root", 8000, seed=1)
    signal = write_signal_only(full, tmp_path / "signal.root")
    heldout = write_signal_only(
        simulate(tmp_path / "heldout.root", 3000, seed=2), tmp_path / "h.root"
    )
    weighted, plain = tmp_path / "weighted.yaml", tmp_path / "plain.yaml"
    weighted.write_text(pid_config_text(max_epochs=8, batch_size=256))
    plain.write_text(pid_config_text(max_epochs=8, batch_size=256, weights=False))

    results = {}
    for label, config, files in (
        ("a", weighted, [full]),
        ("b", plain, [signal]),
        ("c", plain, [full]),
    ):
        model = train(config, files, tmp_path / f"model_{label}")
        results[label] = _summary(generate(model, heldout, tmp_path / f"gen_{label}.root"))
    truth = _summary(uproot.open(heldout)["DecayTree"].arrays(library="np"))

    off = np.abs(results["c"] - results["b"])
    close = np.abs(results["a"] - results["b"])
    # decisive: the unweighted model is off by far more than the weighted one
    assert np.all(off > np.array([1.0, 0.05, 0.05])), (results, truth)
    assert np.all(close < 0.3 * off), (results, truth)
    # and the weighted model is close to the truth of the signal muons
    assert np.all(np.abs(results["a"] - truth) < np.array([0.8, 0.04, 0.04])), (results, truth)
