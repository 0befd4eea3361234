"""ROOT reading: peak memory and throughput of chunked reading on a file with ~1M jets.

Each measurement runs in a fresh Python process so that its peak resident memory
(``ru_maxrss``) belongs to that measurement alone. Compared in the same run:

* ``uproot_full``: plain ``uproot`` reading every jet branch of the file at once;
* ``uproot_iterate``: plain ``uproot.iterate`` in chunks of the same size as hepgen;
* ``hepgen_iterate``: :func:`hepgen.io.iterate_events` with the NaN check, plus flattening of
  both collections and index matching (what training reads per chunk);
* ``hepgen_iterate_small``: the same with a 4x smaller step size: peak memory must follow the
  step size, not the file size.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
mode, path, step = sys.argv[1], sys.argv[2], int(sys.argv[3])
import numpy as np, uproot, awkward as ak
from hepgen.io import iterate_events, flatten_collection, match_by_index
branches = ["GenJet_pt", "GenJet_eta", "GenJet_phi", "GenJet_mass", "GenJet_hadronFlavour",
            "Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", "Jet_btagDeepFlavB",
            "Jet_nConstituents", "Jet_genJetIdx"]
import tracemalloc
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
tracemalloc.start()  # numpy/awkward buffers are traced: the peak of what reading allocates
start = time.perf_counter()
n_jets = 0
total = 0.0
if mode == "uproot_full":
    a = uproot.open(path)["Events"].arrays(branches)
    n_jets = int(ak.sum(ak.num(a.Jet_pt)))
    total = float(ak.sum(a.Jet_pt))
elif mode == "uproot_iterate":
    for a in uproot.iterate(path + ":Events", branches, step_size=step):
        n_jets += int(ak.sum(ak.num(a.Jet_pt)))
        total += float(ak.sum(a.Jet_pt))
else:
    for a in iterate_events(path, branches, step_size=step):
        gen = flatten_collection(a, "GenJet", branches[:5])
        jets = flatten_collection(a, "Jet", branches[5:])
        m = match_by_index(a["Jet_genJetIdx"], gen.counts)
        n_jets += len(jets)
        total += float(jets["Jet_pt"].sum())
elapsed = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
traced_peak = tracemalloc.get_traced_memory()[1]
print(json.dumps({"seconds": elapsed, "peak_traced_mb": traced_peak / 2**20, "peak_rss_mb": peak / 1024, "baseline_rss_mb": base / 1024,
                  "n_jets": n_jets, "checksum": total}))
"""


def _measure(mode: str, path: Path, step: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(path), str(step)],
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["jets_per_s"] = result["n_jets"] / result["seconds"]
    result["read_rss_mb"] = result["peak_rss_mb"] - result["baseline_rss_mb"]
    return result


def run(quick: bool = False) -> dict:
    from hepgen.io import count_entries
    from hepgen.sim import simulate_to_file

    n_events = 25_000 if quick else 310_000  # ~1M reco jets
    step = 25_000 if not quick else 5_000
    with tempfile.TemporaryDirectory() as tmp:
        path = simulate_to_file(Path(tmp) / "jets.root", "jets", n_events, seed=3, quiet=True)
        size_mb = path.stat().st_size / 2**20
        n_entries = count_entries(path)
        results = {
            "uproot_full": _measure("uproot_full", path, step),
            "uproot_iterate": _measure("uproot_iterate", path, step),
            "hepgen_iterate": _measure("hepgen_iterate", path, step),
            "hepgen_iterate_small": _measure("hepgen_iterate", path, step // 4),
        }
    full = results["uproot_full"]
    hep = results["hepgen_iterate"]
    return {
        "file": {"events": n_entries, "jets": full["n_jets"], "size_mb": round(size_mb, 1)},
        "step_size": step,
        "measurements": results,
        "ratios": {
            "hepgen_chunked_peak_memory_vs_uproot_full": hep["peak_traced_mb"]
            / full["peak_traced_mb"],
            "hepgen_vs_uproot_iterate_time": hep["seconds"] / results["uproot_iterate"]["seconds"],
            "small_step_vs_step_peak_memory": results["hepgen_iterate_small"]["peak_traced_mb"]
            / hep["peak_traced_mb"],
        },
        "target": "peak memory of chunked reading bounded by the step size, not the file size",
    }
