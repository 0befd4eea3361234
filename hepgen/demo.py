"""``hepgen demo``: the whole chain that exists so far, on the built-in reference simulation.

1. simulate jets (and a small dijet-resonance sample) with :mod:`hepgen.sim`;
2. read them back in chunks, match reco to gen jets, flatten, fit the feature preprocessing of
   ``configs/toy_jets.yaml`` and check that it inverts exactly (:mod:`hepgen.prepare`);
3. summarise the detector response that the fast simulation will have to learn (efficiency vs
   gen pt, response scale and resolution per flavour, fakes) in ``demo_summary.json`` and
   plots;
4. train the fast simulation of ``configs/toy_jets_flow.yaml`` on the simulated jets
   (``model/``), generate reco jets for held-out events (``fastsim_jets_heldout.root``) and
   validate them against the held-out full simulation (``validation/report.html``).

Later stages (train, generate, validate) are added here as they land.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from hepgen.config import load_config
from hepgen.dataset import PairedObjects, load_pairs
from hepgen.io.reader import read_events
from hepgen.prepare import prepare
from hepgen.resources import config_path
from hepgen.sim import simulate_to_file
from hepgen.utils import write_json

__all__ = ["response_summary", "run_demo"]

FLAVOURS = {"light": 0, "c": 4, "b": 5}
#: Held-out events simulated for generation and validation.
HELDOUT_EVENTS = 50_000


def _quantile_width(x: np.ndarray) -> float:
    """Half the 16-84 % interquantile range: a Gaussian-equivalent width robust to tails."""
    lo, hi = np.quantile(x, [0.16, 0.84])
    return float((hi - lo) / 2)


def response_summary(pairs: PairedObjects, pt_edges: np.ndarray) -> dict[str, Any]:
    """Efficiency and pt response (median, width) in gen-pt bins, per hadron flavour.

    Parameters
    ----------
    pairs : PairedObjects
        With conditions ``GenJet_pt``, ``GenJet_hadronFlavour`` and target ``Jet_pt``.
    pt_edges : np.ndarray
        Gen-pt bin edges in GeV, shape (n_bins + 1,).
    """
    gen_pt = pairs.gen["GenJet_pt"]
    flav = pairs.gen["GenJet_hadronFlavour"]
    response = pairs.reco["Jet_pt"] / gen_pt[pairs.matched]
    flav_matched = flav[pairs.matched]
    pt_matched = gen_pt[pairs.matched]
    out: dict[str, Any] = {"pt_edges": pt_edges.tolist(), "efficiency": [], "flavours": {}}
    idx = np.digitize(gen_pt, pt_edges) - 1
    for b in range(len(pt_edges) - 1):
        sel = idx == b
        out["efficiency"].append(float(pairs.matched[sel].mean()) if sel.any() else None)
    for label, code in FLAVOURS.items():
        rows = []
        for lo, hi in itertools.pairwise(pt_edges):
            sel = (flav_matched == code) & (pt_matched >= lo) & (pt_matched < hi)
            if sel.sum() < 50:
                rows.append(None)
                continue
            r = response[sel]
            rows.append(
                {
                    "n": int(sel.sum()),
                    "median": float(np.median(r)),
                    "width": _quantile_width(r),
                    "low_tail_fraction": float(np.mean(r < 0.7)),
                }
            )
        out["flavours"][label] = rows
    return out


def _plots(pairs: PairedObjects, summary: dict[str, Any], output: Path) -> list[str]:
    # a detached Figure in a style context: the caller's pyplot state, backend and style are
    # left as they are
    import matplotlib.pyplot as plt
    import mplhep
    from matplotlib.figure import Figure

    with plt.style.context(mplhep.style.CMS):
        return _draw_plots(pairs, summary, output, Figure, mplhep)


def _draw_plots(
    pairs: PairedObjects, summary: dict[str, Any], output: Path, Figure: Any, mplhep: Any
) -> list[str]:
    files = []
    gen_pt = pairs.gen["GenJet_pt"][pairs.matched]
    response = pairs.reco["Jet_pt"] / gen_pt
    flav = pairs.gen["GenJet_hadronFlavour"][pairs.matched]
    fig = Figure(figsize=(8, 6))
    ax = fig.subplots()
    bins = np.linspace(0.2, 1.6, 71)
    for label, code in FLAVOURS.items():
        counts, edges = np.histogram(response[flav == code], bins=bins, density=True)
        mplhep.histplot(counts, edges, ax=ax, label=f"{label} jets")
    ax.set_xlabel(r"$p_T^{reco} / p_T^{gen}$")
    ax.set_ylabel("density")
    ax.set_yscale("log")
    ax.legend()
    mplhep.cms.label("Reference simulation", data=False, ax=ax, rlabel="")
    path = output / "response.png"
    fig.savefig(path, dpi=90, bbox_inches="tight")
    files.append(path.name)

    fig = Figure(figsize=(8, 6))
    ax = fig.subplots()
    edges = np.asarray(summary["pt_edges"])
    centres = np.sqrt(edges[:-1] * edges[1:])
    eff = np.array([np.nan if e is None else e for e in summary["efficiency"]])
    ax.plot(centres, eff, "o-")
    ax.set_xscale("log")
    ax.set_xlabel(r"$p_T^{gen}$ [GeV]")
    ax.set_ylabel("reconstruction efficiency")
    ax.set_ylim(0, 1.05)
    path = output / "efficiency.png"
    fig.savefig(path, dpi=90, bbox_inches="tight")
    files.append(path.name)
    return files


def report_objects(metrics_path: Path) -> dict[str, Any]:
    """The ``objects`` entry (efficiency, fake fraction) of a report's ``metrics.json``."""
    import json

    return json.loads(Path(metrics_path).read_text()).get("objects") or {}


def run_demo(
    output: str | os.PathLike = "demo_out",
    n_events: int = 200_000,
    seed: int = 1,
    quiet: bool = False,
    train_seconds: float = 420.0,
) -> dict[str, Any]:
    """Run the demo chain and print its headline numbers.

    Parameters
    ----------
    output : path-like
        Folder for the simulated files, ``preprocessing.json``, ``summary.json``,
        ``demo_summary.json`` and the plots.
    n_events : int
        Events of the jets simulation (the dijet sample has the same number).
    seed : int
        Random seed of the simulations.
    quiet : bool
        No progress bars; the headline numbers are printed all the same (they are the demo's
        output).
    train_seconds : float
        Wall-time limit of the flow training (the demo is sized to about 10 minutes).

    Returns
    -------
    dict
        The content of ``demo_summary.json``.
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    start = time.perf_counter()
    jets_file = simulate_to_file(output / "sim_jets.root", "jets", n_events, seed=seed, quiet=quiet)
    timings["simulate_jets_s"] = time.perf_counter() - start
    start = time.perf_counter()
    dijet_file = simulate_to_file(
        output / "sim_dijet.root",
        "dijet",
        n_events,
        seed=seed + 1,
        quiet=quiet,
        signal_fraction=0.003,
    )
    timings["simulate_dijet_s"] = time.perf_counter() - start

    config = load_config(config_path("toy_jets.yaml"))
    start = time.perf_counter()
    pairs = load_pairs(config, files=[os.fspath(jets_file)], quiet=quiet)
    prepared = prepare(config, output, quiet=quiet, pairs=pairs)
    timings["prepare_s"] = time.perf_counter() - start
    response = response_summary(pairs, np.array([20, 30, 50, 100, 200, 500, 1000.0]))
    plots = _plots(pairs, response, output)
    training_summary, validation = _fastsim_chain(
        output, pairs, seed, quiet, train_seconds, timings
    )
    summary = {
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "jets": prepared["data"],
        "jets_per_second_simulated": prepared["data"]["n_gen"] / timings["simulate_jets_s"],
        "response": response,
        "round_trip_max_rel_error": prepared["round_trip_max_rel_error"],
        "fastsim": training_summary,
        "validation": validation,
        "dijet": _dijet_summary(dijet_file),
        "outputs": {
            "jets": jets_file.name,
            "dijet": dijet_file.name,
            "preprocessing": "preprocessing.json",
            "summary": "summary.json",
            "plots": plots,
        },
    }
    write_json(output / "demo_summary.json", summary)
    _say_summary(summary, prepared, output)
    return summary


def _fastsim_chain(
    output: Path,
    pairs: PairedObjects,
    seed: int,
    quiet: bool,
    train_seconds: float,
    timings: dict[str, float],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train the fast simulation on the simulated jets, generate reco jets for held-out events
    and validate them against the held-out full simulation; the training and validation
    summaries (``timings`` gets the steps' seconds)."""
    from hepgen.fastsim import FastSim
    from hepgen.generate import generate_file
    from hepgen.validation.files import validate_files

    flow_config = load_config(config_path("toy_jets_flow.yaml")).override(
        {"training.time_limit": float(train_seconds), "seed": seed}
    )
    start = time.perf_counter()
    heldout_file = simulate_to_file(
        output / "sim_jets_heldout.root", "jets", HELDOUT_EVENTS, seed=seed + 2, quiet=quiet
    )
    timings["simulate_heldout_s"] = time.perf_counter() - start
    start = time.perf_counter()
    sim = FastSim(flow_config).fit(pairs=pairs, output=output / "model", quiet=quiet)
    timings["train_s"] = time.perf_counter() - start
    start = time.perf_counter()
    gen_stats = generate_file(
        sim, heldout_file, output / "fastsim_jets_heldout.root", seed=seed, quiet=quiet
    )
    timings["generate_s"] = time.perf_counter() - start
    start = time.perf_counter()
    result, report = validate_files(
        heldout_file,
        output / "fastsim_jets_heldout.root",
        output / "validation",
        config=flow_config,
        seed=seed,
        quiet=quiet,
        model=sim,  # its held-out likelihood; its training file for the data-copying test
    )
    timings["validate_s"] = time.perf_counter() - start
    vsum = result.summary()
    history = sim.training_.history
    objects = report_objects(report.metrics)
    validation = {
        "n_pairs_reference": result.n_reference,
        "n_pairs_candidate": result.n_candidate,
        "c2st_auc": vsum["c2st_auc"],
        "c2st_auc_ci": list(result.c2st.auc_ci) if result.c2st is not None else None,
        "baseline_c2st_auc": result.baseline.summary()["c2st_auc"] if result.baseline else None,
        "target_ks": {t: result.features[t]["ks"].statistic for t in sim.target_names},
        "max_target_ks": max(result.features[t]["ks"].statistic for t in sim.target_names),
        "efficiency": objects.get("efficiency"),
        "fake_fraction": objects.get("fake_fraction"),
        "report": os.fspath(report.html.relative_to(output)),
        "verdict": result.verdict(),
        "heldout_log_likelihood": (
            json.loads(report.metrics.read_text()).get("likelihood") or {}
        ).get("total"),
        "data_copying_pvalue": result.memorisation.pvalue if result.memorisation else None,
        "prd_f8_f1_8": [result.prd.f_8, result.prd.f_1_8] if result.prd else None,
    }
    training_summary = {
        "epochs": len(history),
        "stopped": sim.training_.stopped,
        "selected_epoch": sim.training_.selected_epoch,
        "selection": sim.training_.selection,
        "train_pairs": sim.summary_["n_train_pairs"],
        "generate_gen_jets_per_second": gen_stats["gen_objects_per_second"],
    }

    return training_summary, validation


def _dijet_summary(dijet_file: Path) -> dict[str, Any]:
    """Events, signal events and the mjj range of the dijet sample."""
    dijet = read_events(dijet_file, ["mjj", "label"])
    label = np.asarray(dijet["label"])
    mjj = np.asarray(dijet["mjj"])
    return {
        "n_events": len(label),
        "n_signal": int(label.sum()),
        "mjj_range_TeV": [float(mjj.min()), float(mjj.max())],
        "signal_mjj_median_TeV": float(np.median(mjj[label == 1])) if label.any() else None,
    }


def _say_summary(summary: dict[str, Any], prepared: dict[str, Any], output: Path) -> None:
    """Print the demo's headline numbers (its output: ``--quiet`` does not silence them)."""
    say = print
    response, plots = summary["response"], summary["outputs"]["plots"]
    training_summary, validation = summary["fastsim"], summary["validation"]
    d = prepared["data"]
    say("")
    say("hepgen demo: reference simulation -> match -> preprocess -> train -> generate -> validate")
    say(
        f"  events {d['n_events']}, gen jets {d['n_gen']}, matched {d['n_matched']}, "
        f"fakes {d['n_fakes']}"
    )
    say(
        f"  reconstruction efficiency {d['efficiency']:.3f}, fake fraction {d['fake_fraction']:.3f}"
    )
    for label_name in FLAVOURS:
        rows = response["flavours"][label_name]
        first = next((r for r in rows if r), None)
        last = next((r for r in reversed(rows) if r), None)
        if first and last:
            say(
                f"  {label_name:5s} jets: median response {first['median']:.3f} (20-30 GeV) -> "
                f"{last['median']:.3f} (high pt), width {first['width']:.3f} -> {last['width']:.3f}"
            )
    worst = max(prepared["round_trip_max_rel_error"].values())
    say(f"  preprocessing round trip through float32: max relative error {worst:.2e}")
    say(
        f"  dijet sample: {summary['dijet']['n_events']} events, "
        f"{summary['dijet']['n_signal']} signal"
    )
    say(
        f"  fast simulation: {training_summary['epochs']} epochs on "
        f"{training_summary['train_pairs']} jet pairs ({training_summary['stopped']}), kept epoch "
        f"{training_summary['selected_epoch']}; generate "
        f"{training_summary['generate_gen_jets_per_second']:.0f} gen jets/s with ROOT I/O"
    )
    say(
        f"  held-out validation ({validation['n_pairs_candidate']} jet pairs): classifier AUC "
        f"{validation['c2st_auc']:.4f} (reference vs reference "
        f"{validation['baseline_c2st_auc']:.4f}); largest target KS "
        f"{validation['max_target_ks']:.4f}"
    )
    say("  per-target KS: " + ", ".join(f"{k} {v:.4f}" for k, v in validation["target_ks"].items()))
    like, copy_p = validation["heldout_log_likelihood"], validation["data_copying_pvalue"]
    if like and copy_p is not None:
        say(
            f"  held-out log-likelihood {like['mean']:.3f} +- {like['stderr']:.3f} nats per jet; "
            f"data-copying test p {copy_p:.2g} (small: copies its training jets)"
        )
    say(f"  report: {output / validation['report']}")
    say(
        f"  verdict: {validation['verdict']['verdict']} "
        f"({'; '.join(validation['verdict']['reasons'])})"
    )
    say("  timings: " + ", ".join(f"{k} {v:.1f}" for k, v in summary["timings"].items()))
    say(
        f"  outputs in {output}/ (demo_summary.json, summary.json, preprocessing.json, "
        f"{', '.join(plots)})"
    )
