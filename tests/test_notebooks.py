"""The notebooks run end to end on small data (their ``parameters`` cell is overridden)."""

from __future__ import annotations

from pathlib import Path

import pytest

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
