"""The notebooks run end to end on small data (their ``parameters`` cell is overridden)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hepgen.settings.models import FLOW_KINDS

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

# notebook -> replacement source of its cell tagged "parameters"
SMALL = {
    "01_fastsim_quickstart.ipynb": (
        "N_TRAIN_EVENTS = 6000\nN_TEST_EVENTS = 2000\nMAX_EPOCHS = 2\n"
        'FLOW = {"n_transforms": 2, "hidden_features": 16, "n_bins": 8}\nSEED = 1'
    ),
    "02_validation.ipynb": "N_EVENTS = 4000\nSEED = 1",
    "03_anomaly_scan.ipynb": (
        "N_EVENTS = 60_000\nSIGNAL_FRACTION = 0.003\nMAX_EPOCHS = 3\nSEED = 1"
    ),
    # every family, a few fixed epochs instead of a time budget
    "04_flow_zoo.ipynb": (
        "N_TRAIN_EVENTS = 2000\nN_TEST_EVENTS = 1000\nBUDGET = None\nMAX_EPOCHS = 1\n"
        f"FAMILIES = {list(FLOW_KINDS)!r}\nSEED = 1"
    ),
    # a flow and a VAE, two fixed epochs each, a short walk
    "05_latent_walk.ipynb": (
        "N_TRAIN_EVENTS = 4000\nN_PICK_EVENTS = 3000\n"
        'TRAINING = {"flow": {"max_epochs": 2, "batch_size": 1024}, "vae": {"max_epochs": 2}}\n'
        "STEPS = 7\nN_DRAWS = 500\nSEED = 1"
    ),
}


def _execute(name: str, tmp_path: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{name}: expected one cell tagged 'parameters'"
    tagged[0].source = SMALL[name]
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    return nb


def _text(nb: nbformat.NotebookNode) -> str:
    out = []
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            out.append(o.get("text", "") or "".join(o.get("data", {}).get("text/plain", "")))
    return "\n".join(out)


def test_02_validation(tmp_path: Path) -> None:
    nb = _execute("02_validation.ipynb", tmp_path)
    text = _text(nb)
    assert "classifier AUC" in text and "report:" in text
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 2


def test_01_fastsim_quickstart(tmp_path: Path) -> None:
    nb = _execute("01_fastsim_quickstart.ipynb", tmp_path)
    text = _text(nb)
    assert "kept epoch" in text and "classifier AUC" in text
    assert "matched fraction of gen jets" in text and "weighted jets per event" in text
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 2


def test_03_anomaly_scan(tmp_path: Path) -> None:
    nb = _execute("03_anomaly_scan.ipynb", tmp_path)
    text = _text(nb)
    assert "most significant window" in text and "report:" in text
    assert text.count("observed") >= 5  # one line per window
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 2


def test_04_flow_zoo(tmp_path: Path) -> None:
    nb = _execute("04_flow_zoo.ipynb", tmp_path)
    text = _text(nb)
    assert "reference vs reference classifier AUC" in text and "worst KS (target)" in text
    table = {}  # family -> its row of the printed table: AUC [CI], worst KS (target), NLL, ...
    for line in text.splitlines():
        parts = line.split()
        if len(parts) > 8 and parts[0] in FLOW_KINDS and parts[2].startswith("["):
            table[parts[0]] = parts
    assert sorted(table) == sorted(FLOW_KINDS)  # every family trained, sampled and compared
    for kind, row in table.items():
        auc, ks, nll = float(row[1]), float(row[4]), float(row[6])
        assert 0.45 < auc < 1.0 and 0.0 < ks < 0.5 and np.isfinite(nll), (kind, row)
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 2


def test_05_latent_walk(tmp_path: Path) -> None:
    nb = _execute("05_latent_walk.ipynb", tmp_path)
    text = _text(nb)
    assert "the ends of each walk" in text and "light simulated" in text
    ends = {}  # model -> largest difference of its walk's ends from the two jets (target SDs)
    for line in text.splitlines():
        if "the walk's ends differ from the two jets by at most" in line:
            ends[line.split(":")[0]] = float(line.split("at most")[1].split()[0])
    assert sorted(ends) == ["flow", "vae"]
    # A flow encodes exactly: its walk starts and ends at the two jets (measured 1e-7 to 3e-6
    # target standard deviations, float32); a wrong encode, decode or condition path is off
    # by more than 1e-2.  A VAE gives reconstructions (0.3 to 4 SDs after 2 to 24 epochs).
    assert ends["flow"] < 1e-3
    assert np.isfinite(ends["vae"])
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 2
