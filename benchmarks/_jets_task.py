"""The jets task shared by the benchmarks that train fast simulations (``bench_models``,
``bench_zoo``): the same simulated training and held-out files, and the held-out quality
numbers read from ``hepgen validate``'s ``metrics.json``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hepgen.sim import simulate_to_file

__all__ = ["CONFIG", "HELDOUT_SEED", "TRAIN_SEED", "held_out_quality", "simulate_task", "sizes"]

#: The shipped config of the task (``configs/toy_jets_flow.yaml``).
CONFIG = "toy_jets_flow.yaml"
#: Seeds of the reference simulation's training and held-out files.
TRAIN_SEED, HELDOUT_SEED = 31, 32


def sizes(quick: bool) -> tuple[int, int]:
    """Training and held-out events: 60k and 20k (6k and 5k with ``quick``)."""
    return (6_000, 5_000) if quick else (60_000, 20_000)


def simulate_task(folder: Path, n_train: int, n_heldout: int) -> tuple[Path, Path]:
    """Simulate the ``jets`` process into ``folder/train.root`` and ``folder/heldout.root``
    (seeds :data:`TRAIN_SEED`, :data:`HELDOUT_SEED`); returns the two paths."""
    train = simulate_to_file(folder / "train.root", "jets", n_train, seed=TRAIN_SEED, quiet=True)
    heldout = simulate_to_file(
        folder / "heldout.root", "jets", n_heldout, seed=HELDOUT_SEED, quiet=True
    )
    return Path(train), Path(heldout)


def held_out_quality(metrics: Mapping[str, Any], targets: Iterable[str]) -> dict[str, Any]:
    """Classifier AUC (with its 95% CI and the reference-vs-reference baseline), the largest
    and the per-target KS statistic, from ``metrics.json`` of ``hepgen validate --config``."""
    ks = {t: round(metrics["features"][t]["ks"]["statistic"], 5) for t in targets}
    return {
        "auc": round(metrics["c2st"]["auc"], 5),
        "auc_ci": [round(v, 5) for v in metrics["c2st"]["auc_ci"]],
        "auc_baseline": round(metrics["baseline"]["c2st"]["auc"], 5),
        "ks_max": max(ks.values()),
        "ks": ks,
    }
