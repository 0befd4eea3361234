"""The scan report (hepgen.anomaly.report): scan.json and report.html with the global
significance, the seed spread, the sculpting check, the per-event p-values and the template
fidelity; old scans without them; clean edges; a silent, atomic write.

Nothing is trained: the windows are built directly with seeded toy numbers.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from scipy import stats

from hepgen.anomaly import report
from hepgen.anomaly import report_plots as rp
from hepgen.anomaly.report import PLOT_FILES, render_scan_html, write_scan_report
from hepgen.anomaly.scan import ScanResult, ScanSettings, Window, WindowResult
from hepgen.anomaly.stats import roc_sic

N_WINDOWS = 10
BEST = 4  # the window [2.5 + 4 * 0.2, ...) = [3.3000000000000003, 3.7)
NEW_SECTIONS = ("global-significance", "seed-spread", "sculpting", "pvalues", "fidelity")


def _selections(z: float) -> list[dict]:
    return [
        {
            "efficiency": eff,
            "threshold": 1.2,
            "template_efficiency": eff,
            "n_observed": 30,
            "n_expected": 20.0,
            "n_expected_error": 2.0,
            "estimate": "calibrated",
            "significance": z,
            "n_expected_template": 21.0,
            "n_expected_template_error": 2.0,
            "significance_template": z,
            "sideband_closure": 1.01,
            "sideband_closure_error": 0.05,
            "n_expected_calibrated": 20.0,
            "n_expected_calibrated_error": 2.0,
            "significance_calibrated": z,
            "n_expected_fit": 22.0,
            "n_expected_fit_error": 3.0,
            "significance_fit": None,
            "n_sideband_selected": 27,
        }
        for eff in (0.1, 0.01, 0.001)
    ]


def _new_keys(w: WindowResult, i: int, rng: np.random.Generator) -> None:
    """Fill every key added with issue 22 (schema of the report's brief)."""
    z_members = w.significance + rng.normal(0, 0.4, 5)
    w.seed_spread = {
        "n_members": 5,
        "members": ["flow 1", "classifier 1", "classifier 2", "classifier 3", "classifier 4"],
        "significance": z_members.tolist(),
        "significance_mean": float(z_members.mean()),
        "significance_std": float(z_members.std()),
        "significance_min": float(z_members.min()),
        "significance_max": float(z_members.max()),
        "max_sic": (w.roc.max_sic + rng.normal(0, 0.3, 5)).tolist(),
        "max_sic_mean": w.roc.max_sic,
        "max_sic_std": 0.3,
    }
    w.fidelity = {
        "data_template_auc": 0.5 + (0.03 if i == BEST else rng.normal(0, 0.003)),
        "data_template_auc_error": 0.003,
        "template_auc": 0.5 + abs(rng.normal(0, 0.004)),
        "template_auc_error": 0.0035,
        "n_template": 8000,
        "n_background": 1980,
    }
    edges = np.linspace(w.window.sb_lo, w.window.sb_hi, 25)
    before = rng.poisson(1000 * np.exp(-(edges[:-1] - edges[0])))
    w.sculpting = {
        "efficiency": 0.001,
        "test": "two-sample Kolmogorov-Smirnov, passed vs rejected",
        "p_value": 0.42,
        "statistic": 21.3,
        "events": "template events of the SR and sideband data (background only)",
        "n_before": int(before.sum()),
        "n_after": int(before.sum() // 100),
        "edges": edges.tolist(),
        "before": before.tolist(),
        "after": rng.binomial(before, 0.01).tolist(),
    }
    counts_b = rng.multinomial(1980, np.full(20, 0.05))
    counts_s = np.zeros(20, dtype=int)
    counts_s[:2] = [15, 5]
    w.pvalues = {
        "n_samples": 200,
        "resolution": 1 / 201,
        "n_events": int(counts_b.sum()),
        "edges": np.linspace(0, 1, 21).tolist(),
        "counts": (counts_b + counts_s).tolist(),
        "counts_signal": counts_s.tolist(),
        "counts_background": counts_b.tolist(),
        "ks_p_background": 0.61,
        "ks_p": 0.003,
        "fraction_below_0.01": 0.012,
    }


def _scan(full: bool = True, method: str = "pseudo-scans", seed: int = 0) -> ScanResult:
    """Ten windows from 2.5 in steps of 0.2 (edges with binary noise), a signal in BEST."""
    rng = np.random.default_rng(seed)
    settings = ScanSettings(
        resonance={"name": "mjj"},
        features=[{"name": "mj1"}],
        start=2.5,
        stop=4.7,
        width=0.4,
        step=0.2,
        sideband=0.4,
        label="label",
        device="cpu",
    )
    windows = []
    for i in range(N_WINDOWS):
        lo = 2.5 + i * 0.2  # no rounding: the report must print these edges cleanly
        win = Window(lo, lo + 0.4, lo - 0.4, lo + 0.8)
        n_sr = 2000
        y = (rng.random(n_sr) < (0.02 if i == BEST else 0.005)).astype(np.int8)
        y[:2] = 1
        score = rng.normal(size=n_sr) + 2.5 * y
        z = 3.0 if i == BEST else float(rng.normal(0, 0.7))
        w = WindowResult(
            window=win,
            n_signal_region=n_sr,
            n_sideband=(1500, 1200),
            n_background_fit=1990.0,
            n_background_fit_error=30.0,
            selections=_selections(z),
            ranking_efficiency=0.01,
            estimate="calibrated",
            roc=roc_sic(score, y),
            seconds=12.3 + i,
        )
        w.arrays = {
            "m_sr": rng.uniform(win.lo, win.hi, n_sr),
            "score_sr": score,
            "m_sideband": rng.uniform(win.sb_lo, win.sb_hi, 2700),
            "score_sideband": rng.normal(size=2700),
            "score_template": rng.normal(size=4 * n_sr),
            "label_sr": y,
        }
        if full:
            _new_keys(w, i, rng)
        windows.append(w)
    result = ScanResult(settings=settings, windows=windows, n_events=100_000, has_labels=True)
    if full:
        # the shapes of hepgen.anomaly.scan.lookelsewhere.global_significance
        bound = method == "bound"
        edges = np.arange(-3.0, 6.01, 0.25)
        counts = np.histogram(rng.normal(1.6, 0.6, 10_000), edges)[0]
        local_p = float(stats.norm.sf(3.0))
        trials = 10.0 if bound else 4.1
        result.global_significance = {
            "method": method,
            "n_pseudo_scans": 10_000,
            "n_windows": N_WINDOWS,
            "local_significance": 3.0,
            "local_p": local_p,
            "global_p": local_p * trials,
            "global_p_error": 7e-4,
            "global_significance": float(stats.norm.isf(local_p * trials)),
            "global_p_pseudo_scans": 5.5e-3,
            "n_exceeding": 55,
            "n_exceeding_window": 3 if bound else 13,
            "trials_factor": trials,
            "max_z_quantiles": {"0.5": 1.6, "0.9": 2.4, "0.95": 2.6, "0.99": 3.0},
            "max_z_histogram": {"edges": edges.tolist(), "counts": counts.tolist()},
            "single_window_above_2": 0.024,
            "note": "of 10000 background-only pseudo-scans, 55 reached local Z >= 3.00",
        }
    return result


def _section(page: str, key: str) -> str:
    m = re.search(rf"<section id='{key}'>(.*?)</section>", page, re.S)
    return m.group(1) if m else ""


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    files = write_scan_report(_scan(), out, m=np.random.default_rng(1).uniform(2, 5.5, 20_000))
    return out, files, (out / "report.html").read_text()


def test_summary_has_local_and_global_z_seed_spread_and_sic(full_report):
    page = full_report[2]
    summary = page.split("<h2>Summary</h2>")[1].split("<h2>")[0]
    assert "[3.3, 3.7)" in summary and "Z = 3.00" in summary
    assert "global Z = 2.54 (p = 0.0055, 10000 background-only pseudo-scans)" in summary
    assert "trials factor 4.1: global p = local p 0.0013 &times; trials factor = 0.0055" in summary
    best = _scan().windows[BEST]
    sp = best.seed_spread
    assert f"{sp['significance_mean']:.2f} &plusmn; {sp['significance_std']:.2f}" in summary
    assert f"max SIC = {best.roc.max_sic:.2f}</b> (uncapped {best.roc.max_sic_uncapped:.2f})" in (
        summary
    )


def test_global_bound_and_local_only_headlines(tmp_path):
    page = render_scan_html(json.loads(json.dumps(_scan(method="bound").to_dict())), {})
    summary = page.split("<h2>Summary</h2>")[1].split("<h2>")[0]
    assert "global Z &gt; 2.21 (p &lt; 0.013 by the union bound over 10 windows;" in summary
    old = render_scan_html(json.loads(json.dumps(_scan(full=False).to_dict())), {})
    assert "local only" in old.split("<h2>Summary</h2>")[1].split("<h2>")[0]


def test_windows_table_edges_time_and_new_columns(full_report):
    _, _, page = full_report
    table = page.split("<h2>Windows")[1].split("</table>")[0]
    assert "[3.3, 3.7)" in table and "3.3000000000000003" not in page
    assert "[2.5, 2.9)" in table and "[4.3, 4.7)" in table
    assert re.search(r"<th class='wrap' title='wall-clock seconds[^']*'>time \[s\]</th>", table)
    for header in (
        "Z spread",
        "AUC data vs template",
        "AUC template vs bkg (labels)",
        "sculpting p",
        "max SIC (labels)",
        "max SIC uncapped",
    ):
        assert f">{header}</th>" in table, header
    assert table.count("<tr>") == N_WINDOWS + 1


def test_each_new_section_has_its_image_and_numbers(full_report):
    out, _, page = full_report
    for key in NEW_SECTIONS:
        body = _section(page, key)
        assert "data:image/png;base64," in body, key
        assert (out / PLOT_FILES[key.replace("-", "_")]).read_bytes()[:4] == b"\x89PNG"
    assert "10000" in _section(page, "global-significance")
    assert "K</th><td>200" in _section(page, "pvalues").replace("samples per event ", "")
    assert "resolution" in _section(page, "pvalues")
    assert "template events of the SR" in _section(page, "sculpting")
    assert "0.42" in _section(page, "sculpting")
    scan = json.loads((out / "scan.json").read_text())
    assert scan["global_significance"]["n_pseudo_scans"] == 10_000
    assert scan["windows"][BEST]["lo"] == 2.5 + 4 * 0.2  # kept as it came (rounded at source)
    assert {"fidelity", "seed_spread", "sculpting", "pvalues", "max_sic_uncapped"} <= set(
        scan["windows"][BEST]
    )


def test_old_scan_without_new_keys_renders_as_before(full_report, tmp_path):
    out = tmp_path / "report"
    shutil.copytree(full_report[0], out)  # over a full report: its extra images are dropped
    files = write_scan_report(_scan(full=False), out)
    page = files["report_html"].read_text()
    for key in NEW_SECTIONS:
        assert f"<section id='{key}'>" not in page
    assert "Z spread" not in page and "max SIC uncapped" in page
    kept = ("significance", "counts", "spectrum_best", "roc", "sic")
    assert set(files) == {*kept, "scan_json", "report_html"}
    assert {p.name for p in out.iterdir()} == {PLOT_FILES[k] for k in kept} | {
        "scan.json",
        "report.html",
    }
    # a scan.json of an older hepgen (keys missing altogether) renders too
    scan = json.loads(files["scan_json"].read_text())
    del scan["global_significance"]
    for w in scan["windows"]:
        for k in ("fidelity", "seed_spread", "sculpting", "pvalues", "max_sic_uncapped"):
            w.pop(k, None)
    assert "local only" in render_scan_html(scan, {})


_SILENT = """
import sys
sys.path.insert(0, {tests!r})
import numpy as np
from test_anomaly_report import _scan
from hepgen.anomaly.report import write_scan_report
write_scan_report(_scan(), {out!r}, m=np.random.default_rng(1).uniform(2, 5.5, 5000))
"""


def test_writing_a_report_prints_nothing(tmp_path):
    """matplotlib's mathtext/font messages (No TeX to Unicode mapping, findfont) stay quiet."""
    code = _SILENT.format(tests=str(Path(__file__).parent), out=str(tmp_path / "r"))
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "MPLBACKEND": "Agg", "PYTHONWARNINGS": "default"},
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == "" and run.stderr == ""
    assert (tmp_path / "r" / "report.html").exists()


def test_plots_leave_the_process_state_alone():
    before = (
        dict(matplotlib.rcParams),
        [list(logging.getLogger(n).filters) for n in rp._FONT_LOGGERS],
        list(warnings.filters),
        plt.get_fignums(),
    )
    png = rp.plot_global(_scan().global_significance)
    assert png[:4] == b"\x89PNG"
    after = (
        dict(matplotlib.rcParams),
        [list(logging.getLogger(n).filters) for n in rp._FONT_LOGGERS],
        list(warnings.filters),
        plt.get_fignums(),
    )
    assert before == after


def test_the_report_is_written_atomically(full_report, tmp_path, monkeypatch):
    out = tmp_path / "report"
    shutil.copytree(full_report[0], out)
    old = {p.name: p.read_bytes() for p in out.iterdir()}

    def boom(*args, **kwargs):
        raise RuntimeError("plot failed")

    monkeypatch.setattr(report.rp, "plot_fidelity", boom)
    with pytest.raises(RuntimeError, match="plot failed"):
        write_scan_report(_scan(seed=1), out)  # fails at the last plot
    assert {p.name: p.read_bytes() for p in out.iterdir()} == old  # untouched, no temps
