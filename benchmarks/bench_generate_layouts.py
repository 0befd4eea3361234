"""``hepgen generate`` on every data layout, against the model's own sampling rate.

Issue 15: "generate must run within 20 % of the model's own sampling rate on every layout".
For each layout a fast simulation is trained for one epoch (the rate does not depend on how
well it is trained) and then, in the same process, after a warm-up call:

* ``sample``: :meth:`hepgen.fastsim.FastSim.sample` on the conditions of every object of the
  generation file, already in memory (numpy columns): the flow plus the preprocessing and its
  inverse, nothing else;
* ``generate``: :func:`hepgen.generate.generate_file` over the same file, ROOT in, ROOT out:
  reading every branch, the efficiency draw (collections), fakes (collections), unstacking,
  keeping the full-simulation branches, writing every branch.

``ratio`` = generate's drawn objects/s / sample objects/s (1: no overhead; the target is
>= 0.8), where generate's drawn objects are those whose features a flow drew: the
reconstructed objects and, for collections, the fakes (from the fakes' own flow).
The layouts:

``collections``
    the reference ``jets`` simulation (NanoAOD layout) with ``configs/toy_jets_flow.yaml``
    (coupling flow, efficiency model, fakes);
``objects``
    the ``pid`` simulation (two muon tracks per row) with ``configs/toy_pid_flow.yaml``
    (autoregressive flow, 5 targets);
``flat``
    the same PID rows reduced to their first track, one object per row, branch names without
    the prefix (``P``, ``PIDK``, ...), and the same features.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import uproot
from _timing import best_time

from hepgen.config import load_config, parse_config
from hepgen.fastsim import FastSim
from hepgen.generate import generate_file
from hepgen.io.layouts import RowLayout
from hepgen.io.writer import write_events
from hepgen.resources import config_path
from hepgen.sim import simulate_to_file

__all__ = ["run"]


def _one_epoch(cfg: Any) -> Any:
    return cfg.override(
        {"training.max_epochs": 1, "training.time_limit": None, "training.selection": "loss"}
    )


def _flat_config(cfg: Any) -> Any:
    """``cfg`` (objects layout) as a flat layout over the same features."""
    raw = {
        "data": {
            "tree": cfg.data.tree,
            "layout": "flat",
            "weights": cfg.data.weights,
        },
        "features": [f.model_dump(mode="json", exclude_none=True) for f in cfg.features],
        "model": cfg.model.model_dump(mode="json", exclude_none=True),
        "training": cfg.training.model_dump(mode="json"),
    }
    return parse_config(raw, source="flat variant of toy_pid_flow.yaml")


def _flatten_pid(source: Path, output: Path, tree: str) -> Path:
    """The first track of every row of a pid file, prefix removed; other branches kept."""
    arrays = uproot.open(f"{source}:{tree}").arrays(library="np")
    out = {}
    for name, values in arrays.items():
        if name.startswith("mu2_"):
            continue
        out[name.removeprefix("mu1_")] = values
    return write_events(output, out, tree=tree)


def _conditions(sim: FastSim, path: Path) -> dict[str, np.ndarray]:
    """Every object's conditions in ``path`` as numpy columns (what ``sample`` gets)."""
    tree = uproot.open(f"{path}:{sim.config.data.tree}")
    if sim.layout == "collections":
        arrays = tree.arrays(sim.condition_names, library="np")
        return {k: np.concatenate(list(v)) for k, v in arrays.items()}
    layout = RowLayout.from_config(sim.config)
    resolved = layout.resolve(tree.keys(), str(path), targets=False)
    arrays = tree.arrays(library="np")
    return resolved.stack(arrays, sim.condition_names, str(path))


def _layout(name: str, cfg: Any, train: Path, gen: Path, work: Path) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small toys: unused sentinels, short training
        t0 = time.perf_counter()
        sim = FastSim(_one_epoch(cfg), device="cpu").fit(
            files=[str(train)], output=work / f"model_{name}", quiet=True
        )
        train_s = time.perf_counter() - t0
    sim = FastSim.load(work / f"model_{name}", device="cpu")
    conds = _conditions(sim, gen)
    n = len(next(iter(conds.values())))
    sim.sample({k: v[:1000] for k, v in conds.items()}, seed=0)  # warm-up
    t_sample, _ = best_time(lambda: sim.sample(conds, seed=1), 2)

    def job() -> dict[str, Any]:
        return generate_file(sim, gen, work / f"out_{name}.root", seed=1, quiet=True)

    job()  # warm-up (first reads, allocations)
    t_generate, stats = best_time(job, 2)
    assert stats["gen_objects"] == n, (stats["gen_objects"], n)
    sample_rate = n / t_sample
    # the objects whose features generate drew from a flow: reconstructed ones and fakes
    drawn = stats["reco_objects"]
    generate_rate = drawn / t_generate
    return {
        "objects": n,
        "drawn_objects": drawn,
        "fakes": stats.get("fakes", 0),
        "rows_or_events": stats["events"],
        "train_one_epoch_s": round(train_s, 2),
        "sample_s": round(t_sample, 3),
        "generate_s": round(t_generate, 3),
        "sample_objects_per_s": round(sample_rate, 1),
        "generate_objects_per_s": round(generate_rate, 1),
        "ratio": round(generate_rate / sample_rate, 3),
        "meets_target": bool(generate_rate / sample_rate >= 0.8),
    }


def run(quick: bool = False) -> dict:
    """Run the benchmark and return its measurements.

    Parameters
    ----------
    quick : bool
        Smaller files (generation: 5e3 PID rows / 1e4 jet events instead of 4e4 / 1e5).

    Returns
    -------
    dict
        Per layout: objects, sample and generate seconds and objects/s, ``ratio``
        (generate / sample, target >= 0.8) and ``meets_target``.
    """
    n_pid = 5_000 if quick else 40_000
    n_jets = 10_000 if quick else 100_000
    out: dict[str, Any] = {
        "ratio": "generate objects/s / FastSim.sample objects/s (1: no overhead; target >= 0.8)",
    }
    with tempfile.TemporaryDirectory(prefix="hepgen_bench_layouts_") as tmp:
        work = Path(tmp)
        jets_cfg = load_config(config_path("toy_jets_flow.yaml"))
        pid_cfg = load_config(config_path("toy_pid_flow.yaml"))
        tree = pid_cfg.data.tree
        jets_train = simulate_to_file(work / "jets_train.root", "jets", 20_000, seed=1, quiet=True)
        jets_gen = simulate_to_file(work / "jets_gen.root", "jets", n_jets, seed=2, quiet=True)
        pid_train = simulate_to_file(work / "pid_train.root", "pid", 10_000, seed=1, quiet=True)
        pid_gen = simulate_to_file(work / "pid_gen.root", "pid", n_pid, seed=2, quiet=True)
        flat_train = _flatten_pid(Path(pid_train), work / "flat_train.root", tree)
        flat_gen = _flatten_pid(Path(pid_gen), work / "flat_gen.root", tree)
        out["collections"] = _layout("collections", jets_cfg, jets_train, jets_gen, work)
        out["objects"] = _layout("objects", pid_cfg, pid_train, pid_gen, work)
        out["flat"] = _layout("flat", _flat_config(pid_cfg), flat_train, flat_gen, work)
    return out
