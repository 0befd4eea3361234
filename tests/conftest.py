"""Shared fixtures: the real CMS NanoAOD file (skipped when absent) and small simulated files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hepgen.cli import configure_process

# The test process runs torch's and xgboost's OpenMP pools side by side on a shared machine:
# the wait policy of the hepgen command, set before torch loads.
configure_process()


def _share_the_cores() -> None:
    """Under pytest-xdist (``make test``), give each of the N workers cores // N OpenMP threads
    (torch, xgboost and the subprocesses they start), unless OMP_NUM_THREADS is set, so that N
    workers do not start N pools of all the cores' threads, which wait at every barrier for a
    descheduled thread (see :func:`hepgen.cli.configure_process`).  Set before torch loads;
    xdist exports the worker count before this file runs."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        os.environ["OMP_NUM_THREADS"] = str(max(1, (cores or 1) // workers))


_share_the_cores()

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
NANOAOD = SHARED_DATA / "nanoAOD_2015_CMS_Open_Data_ttbar.root"


@pytest.fixture(scope="session")
def nanoaod_file() -> Path:
    """The 200-event CMS Open Data NanoAOD file of ../shared/data; skip when it is absent."""
    if not NANOAOD.is_file():
        pytest.skip(f"real NanoAOD test file not found at {NANOAOD}")
    return NANOAOD


@pytest.fixture(scope="session")
def jets_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small file of the reference simulation's jets process (5000 events, seed 7)."""
    from hepgen.sim import simulate_to_file

    path = tmp_path_factory.mktemp("sim") / "jets.root"
    return simulate_to_file(path, "jets", n_events=5000, seed=7, quiet=True)


def small_flow_config_text(max_epochs: int) -> str:
    """configs/toy_jets_flow.yaml with a tiny flow (2 transforms, 16 hidden features) trained
    for ``max_epochs`` epochs: for tests that need a real but quick fast simulation."""
    from hepgen.resources import config_path

    text = config_path("toy_jets_flow.yaml").read_text()
    small = (
        text.replace("n_transforms: 6", "n_transforms: 2")
        .replace("hidden_features: 128", "hidden_features: 16")
        .replace("max_epochs: 60", f"max_epochs: {max_epochs}")
    )
    assert small.count("\n") == text.count("\n") and "n_transforms: 2" in small
    assert f"max_epochs: {max_epochs}\n" in small or f"max_epochs: {max_epochs} " in small
    return small


def train_small_fastsim(folder: Path, n_events: int, max_epochs: int, *extra: str) -> Path:
    """Simulate ``n_events`` reference events into ``folder/train.root`` (seed 11) and train
    the :func:`small_flow_config_text` fast simulation on them with ``hepgen train`` on CPU
    (``extra``: more CLI arguments, e.g. ``"--seed", "1"``); returns the model directory."""
    from hepgen.cli import main
    from hepgen.sim import simulate_to_file

    simulate_to_file(folder / "train.root", "jets", n_events=n_events, seed=11, quiet=True)
    (folder / "cfg.yaml").write_text(small_flow_config_text(max_epochs=max_epochs))
    model = folder / "model"
    command = ["train", str(folder / "cfg.yaml"), "--files", str(folder / "train.root")]
    assert main([*command, "-o", str(model), "--quiet", "--device", "cpu", *extra]) == 0
    return model
