"""Cost of a resonance scan: the shipped 10-window scan on 1M events (``hepgen scan``).

Workload: ``configs/toy_anomaly_scan.yaml`` as shipped (1M reference dijet events with the
injected resonance, 10 windows of 0.4 TeV in steps of 0.2 TeV, 0.4 TeV sidebands, CATHODE
with 5 folds, each background flow trained for at most 60 s).  ``quick``: 200k events, the
3 windows around the resonance, 10 s per flow.

Reported: total and per-window wall seconds, the split of a window into background-flow
training, template sampling, scoring (5 classifiers) and estimates, the events in the
signal region and sidebands per window, and the headline numbers of the scan (most
significant window, its local significance, max SIC) so that speed is never read without
the quality it bought.  ``ratio_flow_share`` is the background flow's share of a window
(the part a GPU speeds up); ``xgboost_rows_per_s`` puts the classifier stage beside a plain
``xgboost.train`` on the same number of rows, measured in the same run.
"""

from __future__ import annotations

import time

import numpy as np
import yaml

from hepgen.anomaly.config import parse_scan_config, read_scan_columns
from hepgen.anomaly.scan import run_scan
from hepgen.resources import config_path

__all__ = ["run"]


def _plain_xgboost(n_rows: int, n_features: int, n_trees: int) -> float:
    """Seconds of a plain xgboost.train (hist, depth 3) on ``n_rows`` random rows."""
    import xgboost as xgb

    rng = np.random.default_rng(0)
    x = rng.normal(size=(n_rows, n_features)).astype(np.float32)
    y = (x[:, 0] + rng.normal(size=n_rows) > 0).astype(np.float32)
    start = time.perf_counter()
    xgb.train(
        {
            "tree_method": "hist",
            "max_depth": 3,
            "eta": 0.1,
            "objective": "binary:logistic",
            "nthread": 0,
        },
        xgb.QuantileDMatrix(x, label=y),
        num_boost_round=n_trees,
    )
    return time.perf_counter() - start


def run(quick: bool = False) -> dict:
    raw = yaml.safe_load(config_path("toy_anomaly_scan.yaml").read_text())
    if quick:
        raw["data"]["simulate"]["n_events"] = 200_000
        raw["scan"].update(start=3.1, stop=3.9)
        raw["training"]["time_limit"] = 10
    config = parse_scan_config(raw, "toy_anomaly_scan.yaml")
    start = time.perf_counter()
    columns = read_scan_columns(config)
    t_read = time.perf_counter() - start
    settings = config.settings(device="auto")
    result = run_scan(columns, settings, quiet=True)
    windows = []
    for w in result.windows:
        t = w.training["timings"]
        windows.append(
            {
                "lo": w.window.lo,
                "hi": w.window.hi,
                "seconds": round(w.seconds, 2),
                "n_signal_region": w.n_signal_region,
                "n_sideband": sum(w.n_sideband),
                **{k: round(v, 2) for k, v in t.items()},
                "background_flow_epochs": w.training["background_flow_epochs"],
                "significance": w.significance,
                "max_sic": None if w.roc is None else w.roc.max_sic,
            }
        )
    per_window = np.array([w["seconds"] for w in windows])
    flow_share = np.array([w["background_flow_s"] / w["seconds"] for w in windows])
    # the classifier stage against plain xgboost on as many rows (data + template, one fold)
    w0 = result.windows[len(result.windows) // 2]
    n_rows = int(w0.n_signal_region * (1 + settings.oversample) * (1 - 1 / settings.folds))
    trees = int(np.mean(w0.training["classifier_trees"]))
    plain = _plain_xgboost(n_rows, len(settings.feature_names), max(trees, 1))
    ours = w0.training["timings"]["scores_s"] / settings.folds
    best = result.best
    return {
        "n_events": result.n_events,
        "n_windows": len(result.windows),
        "device": settings.device,
        "read_or_simulate_s": round(t_read, 2),
        "scan_s": round(result.seconds, 2),
        "per_window_s": {
            "mean": float(per_window.mean()),
            "min": float(per_window.min()),
            "max": float(per_window.max()),
        },
        "ratio_flow_share": float(flow_share.mean()),
        "classifier_fold_s": ours,
        "plain_xgboost_s": plain,
        "xgboost_rows_per_s": n_rows / plain,
        "ratio_classifier_fold_to_plain": ours / plain,
        "best_window": {
            "lo": best.window.lo,
            "hi": best.window.hi,
            "significance": best.significance,
        },
        "windows": windows,
    }
