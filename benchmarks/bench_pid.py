"""``configs/toy_pid_flow.yaml`` on the PID ntuple: simulate -> train -> generate -> validate.

Workload (issue 15, "A second embedded default"): ``hepgen simulate --process pid`` writes a
training file (40k candidates, seed 1: 80k muon tracks, about 65 % signal) and an independent
held-out file (40k, seed 2); ``hepgen train configs/toy_pid_flow.yaml`` trains on the first
as it comes out (two tracks per row, sWeights, sentinels) within the config's time limit;
``generate_file`` replaces the PID responses of the held-out file; ``hepgen validate --config``
compares the generated file with the held-out one (sWeighted, classifier test beside its
reference-vs-reference baseline).

Reported: the held-out classifier AUC (target <= 0.52) and its baseline, the largest
per-feature KS statistic, the point-mass fractions generated vs true (-1000 sentinels of
``PIDK``/``PIDp``/``PIDmu``, exact zeros of ``PIDe``, ``ProbNNmu`` on its bounds; all tracks,
unweighted: their probabilities depend on the track's momentum and pseudorapidity only, the
conditions, so the generated fractions must match whatever the species), training rows/s
(tracks per second of training, from the model card), generate rows/s end to end and the
model's own rate (``FastSim.simulate`` on the same rows in memory), and the machine load
(``os.getloadavg``) before and after: the time limit is wall time, so a loaded machine trains
fewer epochs. ``quick``: 3000 / 2000 candidates, a small flow, 2 epochs (a smoke run; its AUC
means nothing).

``sweights_check`` (the issue's event-weights test, as in ``tests/test_pid_end_to_end.py``):
the same small flow (coupling, 4 x 32, 8 epochs, batch 256, seed 3) trained (a) on 8000
candidates with ``sw``, (b) on their truth-signal rows without weights, (c) on all of them
without weights, each generating the PID of the truth-signal rows of 3000 held-out
candidates: mean ``PIDmu`` (computed values), mean ``ProbNNmu`` and the fraction with
``ProbNNmu > 0.5``, beside the truth. (a) should equal (b); (c) is pulled down by the
background's pions and kaons.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import uproot

from hepgen.cli import main
from hepgen.fastsim import FastSim
from hepgen.generate import generate_file
from hepgen.resources import config_path
from hepgen.sim.pid import OBJECTS, PID_RESPONSES, SENTINEL, write_signal_only

__all__ = ["run"]

#: (branch suffix, stored value) of every point mass of the sample.
POINT_MASSES = (
    ("PIDK", SENTINEL),
    ("PIDp", SENTINEL),
    ("PIDmu", SENTINEL),
    ("PIDe", 0.0),
    ("ProbNNmu", 0.0),
    ("ProbNNmu", 1.0),
)


def _config(folder: Path, quick: bool) -> Path:
    text = config_path("toy_pid_flow.yaml").read_text()
    if quick:
        text = (
            text.replace("n_transforms: 6", "n_transforms: 2")
            .replace("hidden_features: 128", "hidden_features: 16")
            .replace("training:\n", "training:\n  max_epochs: 2\n", 1)
        )
    path = folder / "pid.yaml"
    path.write_text(text)
    return path


def _tracks(arrays: dict[str, np.ndarray], name: str) -> np.ndarray:
    return np.concatenate([arrays[f"{p}_{name}"] for p in OBJECTS])


def _fractions(arrays: dict[str, np.ndarray]) -> dict[str, float]:
    out = {}
    for name, value in POINT_MASSES:
        out[f"{name}={value:g}"] = float(np.mean(_tracks(arrays, name) == value))
    k, p = _tracks(arrays, "PIDK") == SENTINEL, _tracks(arrays, "PIDp") == SENTINEL
    out["PIDK,PIDp both -1000 / either"] = float((k & p).sum() / max(1, (k | p).sum()))
    return out


def _small_config(folder: Path, name: str, weights: bool) -> Path:
    text = config_path("toy_pid_flow.yaml").read_text()
    for old, new in (
        ("n_transforms: 6", "n_transforms: 4"),
        ("hidden_features: 128", "hidden_features: 32"),
        ("kind: autoregressive", "kind: coupling"),
        ("selection: ks ", "selection: loss "),
    ):
        text = text.replace(old, new)
    lines = []
    for line in text.splitlines():
        key = line.strip().split(":")[0]
        if key in ("max_epochs", "batch_size", "time_limit") or (key == "weights" and not weights):
            continue
        lines.append(line)
        if line == "training:":
            lines += ["  max_epochs: 8", "  batch_size: 256"]
    path = folder / name
    path.write_text("\n".join(lines) + "\n")
    return path


def _response_summary(arrays: dict[str, np.ndarray]) -> dict[str, float]:
    pid_mu, prob = _tracks(arrays, "PIDmu"), _tracks(arrays, "ProbNNmu")
    return {
        "mean_PIDmu": round(float(pid_mu[pid_mu != SENTINEL].mean()), 4),
        "mean_ProbNNmu": round(float(prob.mean()), 4),
        "frac_ProbNNmu_gt_0.5": round(float(np.mean(prob > 0.5)), 4),
    }


def sweights_check(folder: Path) -> dict[str, Any]:
    """Models (a) sw-weighted, (b) truth signal, (c) unweighted; see the module docstring."""
    full = folder / "sw_train.root"
    assert main(["simulate", "--process", "pid", "-n", "8000", "-o", str(full), "--quiet"]) == 0
    held = folder / "sw_heldout.root"
    args = ["simulate", "--process", "pid", "-n", "3000", "-o", str(held), "--seed", "2"]
    assert main([*args, "--quiet"]) == 0
    signal, held = (
        write_signal_only(full, folder / "sw_sig.root"),
        write_signal_only(held, folder / "h.root"),
    )
    weighted = _small_config(folder, "sw_weighted.yaml", weights=True)
    plain = _small_config(folder, "sw_plain.yaml", weights=False)
    out: dict[str, Any] = {}
    for label, config, train_file in (
        ("a_sweighted_full", weighted, full),
        ("b_truth_signal", plain, signal),
        ("c_unweighted_full", plain, full),
    ):
        model = folder / f"model_{label}"
        args = ["train", str(config), "--files", str(train_file), "-o", str(model), "--seed", "3"]
        assert main([*args, "--quiet", "--device", "cpu"]) == 0
        gen = folder / f"gen_{label}.root"
        assert main(["generate", str(model), str(held), "-o", str(gen), "--quiet"]) == 0
        out[label] = _response_summary(uproot.open(gen)["DecayTree"].arrays(library="np"))
    out["truth_signal"] = _response_summary(uproot.open(held)["DecayTree"].arrays(library="np"))
    return out


def run(quick: bool = False) -> dict[str, Any]:
    """Run the workload; returns the JSON-ready results (see the module docstring)."""
    n_train, n_heldout = (3000, 2000) if quick else (40_000, 40_000)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        train_file, heldout = folder / "train.root", folder / "heldout.root"
        start = time.perf_counter()
        for path, n, seed in ((train_file, n_train, 1), (heldout, n_heldout, 2)):
            args = ["simulate", "--process", "pid", "-n", str(n), "-o", str(path)]
            assert main([*args, "--seed", str(seed), "--quiet"]) == 0
        simulate_s = time.perf_counter() - start

        config = _config(folder, quick)
        model = folder / "model"
        start = time.perf_counter()
        args = ["train", str(config), "--files", str(train_file), "-o", str(model)]
        assert main([*args, "--quiet", "--device", "cpu"]) == 0
        train_s = time.perf_counter() - start
        card = json.loads((model / "hepgen-model.json").read_text())
        history = card["training"]["history"]
        epoch_s = sum(h["seconds"] for h in history)
        rates = [h["events_per_second"] for h in history]

        out = folder / "fast.root"
        gen_info = generate_file(model, heldout, out, seed=1, quiet=True)
        sim = FastSim.load(model)
        rows = uproot.open(heldout)["DecayTree"].arrays(library="ak")
        start = time.perf_counter()
        sim.simulate(rows, seed=1, domain_counts={})
        model_s = time.perf_counter() - start

        report = folder / "report"
        args = ["validate", str(heldout), str(out), "-o", str(report), "--config", str(config)]
        start = time.perf_counter()
        assert main([*args, "--quiet", "--device", "cpu"]) in (0, 1)
        validate_s = time.perf_counter() - start
        metrics = json.loads((report / "metrics.json").read_text())

        true = uproot.open(heldout)["DecayTree"].arrays(library="np")
        fast = uproot.open(out)["DecayTree"].arrays(library="np")
        ks = {name: f["ks"]["statistic"] for name, f in metrics["features"].items()}
        ks_targets = {k: v for k, v in ks.items() if k in PID_RESPONSES}
        worst = max(ks_targets, key=ks_targets.get)
        baseline = (metrics.get("baseline") or {}).get("c2st") or {}
        n_tracks = len(OBJECTS) * n_heldout
        return {
            "n_train_candidates": n_train,
            "n_heldout_candidates": n_heldout,
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "cpu_count": os.cpu_count(),
            "simulate_s": round(simulate_s, 2),
            "train": {
                "wall_s": round(train_s, 1),
                "epochs": len(history),
                "stopped": card["training"].get("stopped"),
                "selected_epoch": card["training"].get("selected_epoch"),
                "time_limit": card["config"]["training"].get("time_limit"),
                "rows_per_s": round(float(np.mean(rates)), 1) if rates else None,
                "epoch_s": round(epoch_s, 1),
                "settings": {
                    k: card["config"]["training"].get(k)
                    for k in ("batch_size", "max_epochs", "learning_rate", "schedule")
                },
            },
            "generate": {
                "seconds": round(gen_info["seconds"], 2),
                "rows_per_s": round(n_tracks / gen_info["seconds"], 1),
                "candidates_per_s": round(n_heldout / gen_info["seconds"], 1),
                "model_rows_per_s": round(n_tracks / model_s, 1),
                "ratio_to_model": round(model_s / gen_info["seconds"], 3),
            },
            "validate_s": round(validate_s, 1),
            "auc": metrics["c2st"]["auc"],
            "auc_ci": metrics["c2st"].get("auc_ci"),
            "auc_baseline": baseline.get("auc"),
            "auc_target": 0.52,
            "auc_ok": bool(metrics["c2st"]["auc"] <= 0.52),
            "worst_ks_target": {"feature": worst, "statistic": ks_targets[worst]},
            "ks": ks,
            "verdict": (metrics.get("verdict") or {}).get("verdict"),
            "point_masses": {"true": _fractions(true), "generated": _fractions(fast)},
            "n_eff_reference": metrics.get("n_eff_reference"),
            "weighted_sw_sum": float(ak.sum(rows.sw)),
            "sweights_check": None if quick else sweights_check(folder),
        }


if __name__ == "__main__":
    print(json.dumps(run(quick=True), indent=2))
