"""Fidelity of the scan's background template, recipe by recipe (issue 22).

Workload: ``configs/toy_anomaly_scan.yaml`` (1M reference dijet events, sim seed 7, S/B
~0.6 % in the resonance window) and its resonance window ``[3.3, 3.7)`` TeV with 0.4 TeV
sidebands.  Each *trial* is a recipe of the background model (:data:`TRIALS`): the library's
steps (``select_events``, ``train_background``, ``sample_templates``, ``cathode_scores``)
run with the config's settings plus the trial's overrides.  ``quick``: 200k events and tiny
flows (2 transforms of 16 hidden features, 2 epochs), a smoke run of every trial.

Reported per trial (``trials.<name>``):

* ``template_auc`` +- ``template_auc_error``: out-of-fold AUC of an xgboost classifier (the
  scan's classifier settings, 5 folds) between the SR template (label 1) and the SR's true
  background events (label 0) (:func:`hepgen.anomaly.scan.fidelity.two_sample_auc`); 0.5 is
  a template indistinguishable from background (target <= 0.505);
* ``data_template_auc``: AUC of CATHODE's out-of-fold scores, SR data against the template
  (what the scan's classifier sees);
* ``max_sic`` (at least 20 background events passing) and ``max_sic_uncapped``, and
  ``signal_auc``: CATHODE's scores of the SR data against the truth label (target >= 12 for
  the ``idealised`` trial);
* ``flow_epochs`` (per flow), ``flow_s`` (training and sampling), ``seconds`` (the trial).

Trials: ``shipped`` (the config as is: 60 s per flow), ``long`` (no time limit, 100 epochs,
patience 100), ``large`` (``long`` with 8 transforms of 128), ``ensemble3`` (three ``long``
flows, the template an equal mixture of their samples), ``bounded`` (``long`` with the jet
masses logit-of-min-max-scaled, trend degree 2, a conditional flow), ``cathode-maf`` (the
CATHODE paper's MAF as far as the settings allow: see :data:`TRIALS`), ``idealised`` (the
best recipe so far trained on the SR events of an independent background-only sample, sim
seed 8) and ``perfect`` (those independent SR events themselves as the template: the
idealised anomaly detector, the reference).  Variants: ``shipped-seed2/3`` and
``long-seed2`` (other seeds: the spread of a recipe), ``epochs30`` and its ``-seed2/3``
(30 epochs, no time limit: the shipped budget, seeded), ``ensemble3-shipped`` (three shipped flows),
``bounded-masses`` (the logit masses alone), ``bounded-shipped`` (``bounded`` with the shipped
training), ``large-300s`` (``large`` within 300 s), ``cathode-maf-600s`` (``cathode-maf``
with a 600 s guard) and ``cathode-maf-trend`` (the paper's MAF and training on the scan's
trend and unconditional flow).  The shipped recipe's 60 s limit makes its epochs depend on
the machine's load: its results are not reproducible from the seed alone.

Run alone (``python benchmarks/bench_anomaly_fidelity.py [--quick] [--trials a b]``) it writes
``benchmarks/results/anomaly_fidelity.json`` after every trial, so that a long run keeps what
finished.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from sklearn.metrics import roc_auc_score

from hepgen.anomaly.config import parse_scan_config, read_scan_columns
from hepgen.anomaly.scan.background import best_val_loss, sample_templates, train_background
from hepgen.anomaly.scan.events import select_events
from hepgen.anomaly.scan.fidelity import two_sample_auc
from hepgen.anomaly.scan.scores import cathode_scores
from hepgen.anomaly.stats import roc_sic
from hepgen.resources import config_path
from hepgen.settings.scan import Window

__all__ = ["TRIALS", "run"]

HERE = Path(__file__).resolve().parent
WINDOW = Window(3.3, 3.7, 2.9, 4.1)
LONG = {"time_limit": None, "max_epochs": 100, "patience": 100}

#: The recipes: overrides of the config's ``flow``, ``training`` and ``scan`` sections,
#: ``bounded`` (feature names made ``kind: bounded`` with bounds 1 % of the range outside the
#: data's), ``flows`` (ensemble size), ``source`` (``sideband``; ``independent``: trained on
#: an independent background sample's SR; ``perfect``: that sample is the template).
TRIALS: dict[str, dict[str, Any]] = {
    "shipped": {},
    "long": {"training": LONG},
    "large": {"training": LONG, "flow": {"n_transforms": 8, "hidden_features": 128}},
    "ensemble3": {"training": LONG, "flows": 3},
    "bounded": {
        "training": LONG,
        "bounded": ["mj1", "mj2"],
        "scan": {"trend": 2, "conditional": True},
    },
    # CATHODE (arXiv:2109.00546, sec. III): a conditional MAF of 15 MADE blocks (128 hidden),
    # Adam lr 1e-4, batch 256, 100 epochs, every feature min-max scaled + logit; the paper
    # averages the 10 epochs of lowest validation loss (here: the best epoch is kept) and
    # puts batch normalisation between the MADEs (not available: LU mixing instead).
    "cathode-maf": {
        "flow": {"kind": "maf", "n_transforms": 15, "hidden_features": 128, "n_blocks": 1},
        "training": {
            "time_limit": None,
            "max_epochs": 100,
            "patience": 100,
            "learning_rate": 1e-4,
            "batch_size": 256,
            "schedule": "constant",
        },
        "bounded": ["mj1", "mj2", "tau21_j1", "tau21_j2"],
        "scan": {"trend": 0, "conditional": True},
    },
    # cheaper variants, run where the 100-epoch ones did not fit the time (1 thread)
    "shipped-seed2": {"seed": 2},
    "shipped-seed3": {"seed": 3},
    "epochs30": {"training": {**LONG, "max_epochs": 30}},
    "epochs30-seed2": {"training": {**LONG, "max_epochs": 30}, "seed": 2},
    "epochs30-seed3": {"training": {**LONG, "max_epochs": 30}, "seed": 3},
    "ensemble3-shipped": {"flows": 3},
    "bounded-masses": {"bounded": ["mj1", "mj2"]},
    "bounded-shipped": {"bounded": ["mj1", "mj2"], "scan": {"trend": 2, "conditional": True}},
    "large-300s": {
        "training": {**LONG, "time_limit": 300},
        "flow": {"n_transforms": 8, "hidden_features": 128},
    },
    "long-seed2": {"training": LONG, "seed": 2},
    "idealised": {"source": "independent"},  # + the best recipe so far (see run)
    "perfect": {"source": "perfect"},
}
TRIALS["cathode-maf-600s"] = copy.deepcopy(TRIALS["cathode-maf"])
TRIALS["cathode-maf-600s"]["training"]["time_limit"] = 600
# the paper's MAF and training with the scan's linear trend and unconditional residual flow
TRIALS["cathode-maf-trend"] = {**TRIALS["cathode-maf-600s"], "scan": {"trend": 1}}
#: The quick mode's flows and training (every trial).
QUICK_FLOW = {"n_transforms": 2, "hidden_features": 16}
QUICK_TRAINING = {"time_limit": None, "max_epochs": 2, "patience": 100}


def _raw(quick: bool, seed: int | None = None, signal_fraction: float | None = None) -> dict:
    """The shipped config as a mapping (200k events with ``quick``; simulation overrides)."""
    raw = yaml.safe_load(config_path("toy_anomaly_scan.yaml").read_text())
    sim = raw["data"]["simulate"]
    if quick:
        sim["n_events"] = 200_000
    if seed is not None:
        sim["seed"] = seed
    if signal_fraction is not None:
        sim["signal_fraction"] = signal_fraction
    return raw


def _settings(raw: dict, trial: dict[str, Any], columns: dict[str, np.ndarray], quick: bool):
    """The ScanSettings of a trial: the config with the trial's overrides."""
    raw = copy.deepcopy(raw)
    raw["flow"].update(trial.get("flow", {}))
    raw["training"].update(trial.get("training", {}))
    raw["scan"].update(trial.get("scan", {}))
    if quick:
        raw["flow"].update(QUICK_FLOW)
        raw["training"].update(QUICK_TRAINING)
        raw["scan"]["classifier"]["n_estimators"] = 50
    for f in raw["features"]:
        if f["name"] in trial.get("bounded", ()):
            v = np.asarray(columns[f["name"]], dtype=np.float64)
            pad = 0.01 * (v.max() - v.min())
            f.update(kind="bounded", bounds=[float(v.min() - pad), float(v.max() + pad)])
    return parse_scan_config(raw, "toy_anomaly_scan.yaml").settings(device="auto")


def _matrix(d: dict[str, np.ndarray], names: list[str]) -> np.ndarray:
    return np.column_stack([np.asarray(d[n], dtype=np.float32) for n in names])


def _template(trial, settings, events, train_events, rng, notes):
    """Train the trial's flow(s) and draw the SR template (equal mixture for an ensemble)."""
    n_flows = int(trial.get("flows", 1))
    parts, epochs, losses = [], [], []
    n_tmpl = events.n_signal_region * int(settings.oversample)
    for i in range(n_flows):
        bg = train_background(
            train_events, settings, rng, quiet=True, work=None, resume=False, notes=notes
        )
        epochs.append(len(bg.training_.history))
        losses.append(best_val_loss(bg))
        tmpl = sample_templates(bg, events, WINDOW, settings, rng, {}, notes).signal_region
        x = _matrix(tmpl, settings.feature_names)
        if n_flows > 1:  # an equal share of each flow, the size of one template in all
            take = n_tmpl // n_flows + (i < n_tmpl % n_flows)
            x = x[rng.choice(len(x), take, replace=False)]
        parts.append(x)
    return np.concatenate(parts), {"flow_epochs": epochs, "flow_best_val_loss": losses}


def _evaluate(x_tmpl, x_sr, label_sr, settings, rng, notes) -> dict[str, Any]:
    """Template fidelity and CATHODE's performance with this template."""
    fid = two_sample_auc(x_tmpl, x_sr[label_sr == 0], settings, rng)
    empty = np.empty((0, x_sr.shape[1]), dtype=np.float32)
    s_data, s_tmpl, _, info = cathode_scores(x_sr, x_tmpl, empty, settings, rng, notes)
    y = np.concatenate([np.ones(len(s_data)), np.zeros(len(s_tmpl))])
    roc = roc_sic(s_data, label_sr)
    return {
        "template_auc": fid["auc"],
        "template_auc_error": fid["auc_error"],
        "n_template": fid["n_a"],
        "n_background_sr": fid["n_b"],
        "data_template_auc": float(roc_auc_score(y, np.concatenate([s_data, s_tmpl]))),
        "max_sic": roc.max_sic,
        "max_sic_uncapped": getattr(roc, "max_sic_uncapped", float("nan")),
        "max_sic_fpr": roc.max_sic_fpr,
        "signal_auc": roc.auc,
        "classifier_trees": info["classifier_trees"],
    }


def _best(results: dict[str, dict]) -> str:
    """The recipe whose template AUC is closest to 0.5 (``shipped`` when none ran)."""
    done = [k for k, r in results.items() if k in TRIALS and "template_auc" in r]
    done = [k for k in done if TRIALS[k].get("source", "sideband") == "sideband"]
    return min(done, key=lambda k: abs(results[k]["template_auc"] - 0.5), default="shipped")


def run(
    quick: bool = False,
    trials: list[str] | None = None,
    best: str | None = None,
    on_trial: Any = None,
    previous: dict[str, dict] | None = None,
) -> dict:
    """Run the trials (all by default, in :data:`TRIALS` order) and return their numbers.

    ``best`` names the recipe of the ``idealised`` trial (default: the best so far);
    ``on_trial(results)`` is called after every trial (the standalone run writes the JSON);
    ``previous`` holds the trials of an earlier run, kept unless run again.
    """
    start = time.perf_counter()
    raw = _raw(quick)
    base = parse_scan_config(raw, "toy_anomaly_scan.yaml").settings(device="auto")
    columns = read_scan_columns(parse_scan_config(raw, "toy_anomaly_scan.yaml"))
    events = select_events(columns, WINDOW, base)
    label_sr = np.asarray(columns["label"])[events.in_signal_region].astype(np.int8)
    names = base.feature_names
    x_sr = _matrix(events.signal_region, names)
    out: dict[str, Any] = {
        "n_events": len(columns["label"]),
        "window": [WINDOW.lo, WINDOW.hi, WINDOW.sb_lo, WINDOW.sb_hi],
        "n_signal_region": events.n_signal_region,
        "n_signal_sr": int(label_sr.sum()),
        "n_sideband": events.n_sideband,
        "read_s": round(time.perf_counter() - start, 2),
        "trials": dict(previous or {}),
    }
    indep: dict[str, np.ndarray] | None = None
    for name in trials or list(TRIALS):
        trial = dict(TRIALS[name])
        source = trial.get("source", "sideband")
        if source != "sideband":
            recipe = best or _best(out["trials"])
            trial = {**TRIALS[recipe], "source": source}
        tick = time.perf_counter()
        notes: list[str] = []
        rng = np.random.default_rng(int(trial.get("seed", base.seed)))
        settings = _settings(raw, trial, columns, quick)
        record: dict[str, Any] = {}
        if source != "sideband":
            record["recipe"] = recipe
            if indep is None:
                indep_cols = read_scan_columns(
                    parse_scan_config(_raw(quick, seed=8, signal_fraction=0.0), "indep")
                )
                indep = select_events(indep_cols, WINDOW, base).signal_region
            record["n_independent_sr"] = len(indep[names[0]])
        if source == "perfect":
            x_tmpl = _matrix(indep, names)
            record["flow_s"] = 0.0
        else:
            train = events.sideband if source == "sideband" else indep
            x_tmpl, info = _template(trial, settings, events, train, rng, notes)
            record.update(info, flow_s=round(time.perf_counter() - tick, 1))
        record.update(_evaluate(x_tmpl, x_sr, label_sr, settings, rng, notes))
        record["seconds"] = round(time.perf_counter() - tick, 1)
        record["notes"] = notes
        out["trials"][name] = record
        print(f"[fidelity] {name}: {json.dumps(record)}", file=sys.stderr, flush=True)
        if on_trial is not None:
            on_trial(out)
    out["best_recipe"] = _best(out["trials"])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--trials", nargs="*", choices=list(TRIALS))
    parser.add_argument("--best", choices=list(TRIALS), help="recipe of the idealised trial")
    parser.add_argument("--output", type=Path, default=HERE / "results")
    parser.add_argument("--append", action="store_true", help="keep the JSON's other trials")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    from run import machine_facts

    from hepgen.cli import configure_process

    configure_process()
    args.output.mkdir(parents=True, exist_ok=True)
    out = args.output / "anomaly_fidelity.json"
    previous = None
    if args.append and out.is_file():
        previous = json.loads(out.read_text())["results"]["trials"]
    start = time.perf_counter()

    def write(results: dict) -> None:
        record = {
            "benchmark": "anomaly_fidelity",
            "quick": args.quick,
            "wall_s": round(time.perf_counter() - start, 3),
            "machine": machine_facts(),
            "results": results,
        }
        tmp = out.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, out)

    write(run(args.quick, args.trials, args.best, on_trial=write, previous=previous))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
