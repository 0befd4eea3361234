"""Throughput of the reference simulations (:mod:`hepgen.sim`).

Measures ``generate()`` of the ``jets`` and ``dijet`` processes (events/s, jets/s) at 1e5
events (1e4 with ``quick``) and the end-to-end rate of :func:`hepgen.sim.simulate_to_file`
(generation + writing a ROOT file through :class:`hepgen.io.writer.RootWriter`). As a
same-run reference it times a plain numpy baseline of comparable size: drawing one Gaussian
smearing ``pt * (1 + 0.1 N(0, 1))`` per jet (jets) or five Gaussian features per event
(dijet); the ratios ``*_vs_numpy`` say how many times slower than that bare minimum the
full simulation is. Each timing is the best of ``repeats`` runs.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import awkward as ak
import numpy as np
from _timing import best_time

from hepgen.sim import DijetSimulation, JetSimulation, simulate_to_file

__all__ = ["run"]


def run(quick: bool = False) -> dict:
    """Run the benchmark and return its measurements.

    Parameters
    ----------
    quick : bool
        Use 1e4 instead of 1e5 events per measurement (1e5 instead of 1e6 for the dijet
        file).

    Returns
    -------
    dict
        Rates in events/s or jets/s, times in s, ratios against the numpy baseline.
    """
    n = 10_000 if quick else 100_000
    repeats = 2 if quick else 3
    out: dict = {"n_events": n, "repeats": repeats}

    # jets: generate
    sim = JetSimulation()
    t_jets, events = best_time(lambda: sim.generate(n, seed=1), repeats)
    n_gen = int(ak.sum(ak.num(events.GenJet_pt)))
    n_reco = int(ak.sum(ak.num(events.Jet_pt)))
    rng = np.random.default_rng(0)
    pt = rng.uniform(20.0, 1000.0, n_gen)
    t_base, _ = best_time(lambda: pt * (1.0 + 0.1 * rng.standard_normal(n_gen)), repeats)
    out["jets"] = {
        "generate_s": t_jets,
        "events_per_s": n / t_jets,
        "gen_jets_per_s": n_gen / t_jets,
        "reco_jets_per_s": n_reco / t_jets,
        "gen_jets_per_event": n_gen / n,
        "reco_jets_per_event": n_reco / n,
        "numpy_gaussian_smear_s": t_base,
        "generate_vs_numpy": t_jets / t_base,
    }

    # dijet: generate
    dsim = DijetSimulation(signal_fraction=0.01)
    t_dijet, _ = best_time(lambda: dsim.generate(n, seed=1), repeats)
    t_dbase, _ = best_time(lambda: rng.standard_normal((n, 5)).astype(np.float32), repeats)
    out["dijet"] = {
        "generate_s": t_dijet,
        "events_per_s": n / t_dijet,
        "numpy_gaussian_features_s": t_dbase,
        "generate_vs_numpy": t_dijet / t_dbase,
    }

    # end to end: generate + write ROOT
    with tempfile.TemporaryDirectory() as tmp:
        for process, n_file, chunk in (("jets", n, max(n // 4, 1)), ("dijet", 10 * n, n)):
            path = Path(tmp) / f"{process}.root"
            t_file, _ = best_time(
                lambda process=process, n_file=n_file, chunk=chunk, path=path: simulate_to_file(
                    path, process, n_events=n_file, seed=2, chunk_size=chunk, quiet=True
                ),
                1,
            )
            out[process]["file"] = {
                "n_events": n_file,
                "chunk_size": chunk,
                "seconds": t_file,
                "events_per_s": n_file / t_file,
                "megabytes": path.stat().st_size / 1e6,
            }
    out["jets"]["file"]["gen_jets_per_s"] = (
        out["jets"]["gen_jets_per_event"] * out["jets"]["file"]["events_per_s"]
    )
    gen_only = out["jets"]["file"]["n_events"] / out["jets"]["events_per_s"]
    out["jets"]["file"]["write_fraction"] = 1.0 - gen_only / out["jets"]["file"]["seconds"]
    return out


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
