"""The scan on any resonance dataset (``hepgen scan``): units, names, many files, separate
signal-region and sideband samples.

The events are the reference dijet simulation's (80k events, a resonance at 3.5 TeV) written
as a user's ntuple would hold them: masses in GeV, branches renamed, split over three files.
The scans are tiny (one flow transform, 3 epochs, 30 trees; a fixed number of epochs, so
nothing depends on the machine's speed) and cover one window each.
"""

from __future__ import annotations

import json
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
import yaml

from hepgen.anomaly.config import (
    check_units,
    load_scan_config,
    parse_scan_config,
    read_scan_columns,
    scan_from_config,
)
from hepgen.cli import main
from hepgen.errors import ConfigError, InputError
from hepgen.settings.scan import ScanSection, Window
from hepgen.sim import DijetSimulation

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
N_EVENTS = 80_000
#: the toy's branch -> the user's branch (and whether it is a mass: TeV -> GeV)
RENAME = {
    "mjj": ("Mjj", True),
    "mj1": ("mJ1", True),
    "mj2": ("mJ2", True),
    "tau21_j1": ("tau21a", False),
    "tau21_j2": ("tau21b", False),
    "label": ("is_signal", False),
}
#: the tiny models of every scan here
FAST = {
    "flow": {"n_transforms": 1, "hidden_features": 16, "n_bins": 4},
    "training": {"max_epochs": 3},
    "seed": 1,
    "device": "cpu",
}
FAST_SCAN = {
    "folds": 2,
    "pseudo_scans": 0,
    "pvalue_samples": 0,
    "classifier": {"n_estimators": 30},
    "max_train_events": 20_000,
    "oversample": 1,
}


def _write(path: Path, columns: dict[str, np.ndarray], rows: np.ndarray | None = None) -> Path:
    with uproot.recreate(path) as f:
        f["Events"] = {k: (v if rows is None else v[rows]) for k, v in columns.items()}
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The events in TeV (one file) and in GeV, renamed (three files, and split at the
    window [3300, 3700) GeV into a signal-region file and two sideband files)."""
    tmp = tmp_path_factory.mktemp("inputs")
    ev = DijetSimulation(signal_fraction=2e-3).generate(N_EVENTS, seed=4)
    tev = {k: ak.to_numpy(ev[k]) for k in RENAME}
    gev = {new: tev[old] * 1000 if mass else tev[old] for old, (new, mass) in RENAME.items()}
    parts = [
        _write(tmp / f"part_{i}.root", gev, rows)
        for i, rows in enumerate(np.array_split(np.arange(N_EVENTS), 3))
    ]
    in_sr = (gev["Mjj"] >= 3300) & (gev["Mjj"] < 3700)
    return {
        "dir": tmp,
        "tev": tev,
        "gev": gev,
        "in_sr": in_sr,
        "tev_file": _write(tmp / "tev.root", tev),
        "parts": parts,
        "sr_file": _write(tmp / "innerdata.root", gev, np.flatnonzero(in_sr)),
        "sb_files": [  # two files, given as a glob pattern
            _write(tmp / f"outerdata_{i}.root", gev, rows)
            for i, rows in enumerate(np.array_split(np.flatnonzero(~in_sr), 2))
        ],
    }


def _gev_config(data, **scan) -> dict:
    """A scan config of the GeV, renamed, three-file events: one window [3300, 3700)."""
    return {
        "data": {"files": [str(p) for p in data["parts"]], "tree": "Events"},
        "resonance": {"name": "Mjj", "kind": "positive"},
        "features": [
            {"name": "mJ2", "kind": "positive"},
            {"name": "mJ1", "kind": "positive"},
            {"name": "tau21a", "kind": "bounded", "bounds": [0.0, 1.0]},
            {"name": "tau21b", "kind": "bounded", "bounds": [0.0, 1.0]},
        ],
        "label": "is_signal",
        "scan": {
            "start": 3300,
            "stop": 3700,
            "width": 400,
            "step": 200,
            "sideband": 400,
            "closure_margin": 200,
            "sqrt_s": 13000,
            **FAST_SCAN,
            **scan,
        },
        **FAST,
    }


def _split_config(data, **scan) -> dict:
    """The same events as separate signal-region and sideband samples, window fixed."""
    d = _gev_config(data)
    d["data"] = {
        "signal_region": {"files": [str(data["sr_file"])]},
        "sidebands": {"files": [str(data["dir"] / "outerdata_*.root")]},
        "tree": "Events",
    }
    for k in ("start", "stop", "width", "step", "sideband"):
        del d["scan"][k]
    d["scan"].update({"window": [3300, 3700], **scan})
    return d


def _save(tmp: Path, d: dict, name: str = "scan.yaml") -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump(d))
    return path


def _cli(capsys, *args) -> tuple[int, str]:
    """``hepgen scan ARGS --quiet`` in this process: the exit code and stderr."""
    capsys.readouterr()
    code = main(["scan", *map(str, args), "--quiet", "--device", "cpu"])
    return code, capsys.readouterr().err


def _one_line_error(run: tuple[int, str]) -> str:
    code, err = run
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def gev_scan(data):
    out = data["dir"] / "gev-report"
    cfg = parse_scan_config(_gev_config(data), str(data["dir"] / "gev.yaml"))
    return scan_from_config(cfg, out, quiet=True), out


# ------------------------------------------------------------------ units, names, many files


def test_gev_renamed_three_file_ntuple_scans(data, gev_scan):
    result, out = gev_scan
    (w,) = result.windows
    assert w.window == Window(3300.0, 3700.0, 2900.0, 4100.0)
    assert result.n_events == N_EVENTS
    assert w.n_signal_region == int(data["in_sr"].sum())
    # the sideband fit's SR background against the true background count of the SR
    n_true = int((data["in_sr"] & (data["gev"]["is_signal"] == 0)).sum())
    assert abs(w.n_background_fit / n_true - 1) < 0.10
    assert w.sideband_fit["sqrt_s"] == 13000
    assert w.roc is not None  # the renamed label branch was found
    scan = json.loads((out / "scan.json").read_text())
    (jw,) = scan["windows"]
    assert [jw[k] for k in ("lo", "hi", "sideband_lo", "sideband_hi")] == [3300, 3700, 2900, 4100]
    html = (out / "report.html").read_text()
    assert "part_2.root" in html and "3 files" in html


def test_gev_scan_equals_the_tev_scan_of_the_same_events(data, gev_scan):
    gev, _ = gev_scan
    d = _gev_config(data)
    d["data"] = {"files": [str(data["tev_file"])]}
    d["resonance"]["name"] = "mjj"
    for f, name in zip(d["features"], ("mj2", "mj1", "tau21_j1", "tau21_j2"), strict=True):
        f["name"] = name
    d["label"] = "label"
    d["scan"].update(start=3.3, stop=3.7, width=0.4, step=0.2, sideband=0.4, closure_margin=0.2)
    del d["scan"]["sqrt_s"]  # TeV: the default 13
    cfg = parse_scan_config(d, str(data["dir"] / "tev.yaml"))
    tev = scan_from_config(cfg, data["dir"] / "tev-report", quiet=True)
    (wg,), (wt,) = gev.windows, tev.windows
    assert (wg.n_signal_region, wg.n_sideband) == (wt.n_signal_region, wt.n_sideband)
    # the fit is a function of m / sqrt_s: the same up to rounding (seen: 1.5e-14 relative)
    assert wg.n_background_fit == pytest.approx(wt.n_background_fit, rel=1e-6)
    assert wg.n_background_fit_error == pytest.approx(wt.n_background_fit_error, rel=1e-6)
    # the flows see log(m) standardised, the classifier is invariant under scaling: the
    # scores agree (seen: identical) and so do the selections
    np.testing.assert_allclose(wg.arrays["score_sr"], wt.arrays["score_sr"], atol=1e-4)
    for sg, st in zip(wg.selections, wt.selections, strict=True):
        assert sg["n_observed"] == st["n_observed"]
        assert sg["n_expected"] == pytest.approx(st["n_expected"], rel=1e-6)


def test_gev_data_without_sqrt_s_is_one_line_naming_sqrt_s_and_the_units(data, tmp_path, capsys):
    # windows in GeV, sqrt_s left at 13 (TeV): refused when the config is read
    d = _gev_config(data)
    del d["scan"]["sqrt_s"]
    with pytest.raises(ConfigError, match=r"reach 4100 >= sqrt_s 13.*13000 for GeV"):
        parse_scan_config(d, "gev.yaml")
    line = _one_line_error(_cli(capsys, _save(tmp_path, d), "-o", tmp_path / "a"))
    assert "sqrt_s" in line and "13000 for GeV" in line
    # a window that looks like TeV on GeV data: refused when the data are read, before any
    # training
    d = _split_config(data, window=[3.3, 3.7])
    d["data"] = {"files": [str(p) for p in data["parts"]]}
    del d["scan"]["sqrt_s"]
    d["scan"]["closure_margin"] = 0.1
    line = _one_line_error(_cli(capsys, _save(tmp_path, d, "b.yaml"), "-o", tmp_path / "b"))
    assert "Mjj reaches" in line and ">= sqrt_s 13" in line and "units of Mjj" in line
    assert not (tmp_path / "b" / "work").exists()


def test_check_units():
    check_units(np.array([1.5, 6.9]), "mjj", 13.0)
    check_units(np.array([1500.0, 6900.0, np.nan]), "mjj", 13000.0)
    with pytest.raises(InputError, match=r"^f.yaml: Mjj reaches 6900 >= sqrt_s 13: give scan"):
        check_units(np.array([1500.0, 6900.0]), "Mjj", 13.0, "f.yaml")


def test_glob_patterns_and_lists_read_the_same_events(data, tmp_path):
    listed = read_scan_columns(parse_scan_config(_gev_config(data), str(tmp_path / "a.yaml")))
    d = _gev_config(data)
    d["data"]["files"] = ["part_*.root"]  # relative to the config's folder
    cfg = load_scan_config(_save(data["dir"], d, "glob.yaml"))
    globbed = read_scan_columns(cfg)
    assert set(globbed) == {"Mjj", "mJ1", "mJ2", "tau21a", "tau21b", "is_signal"}
    for k, v in listed.items():
        np.testing.assert_array_equal(globbed[k], v)
    np.testing.assert_array_equal(globbed["Mjj"], data["gev"]["Mjj"])
    d["data"]["files"] = ["nothing_*.root"]
    with pytest.raises(InputError, match=r"^data.files: no file matches the pattern .*nothing_"):
        read_scan_columns(load_scan_config(_save(data["dir"], d, "glob2.yaml")))


def test_missing_branch_in_the_second_file_names_file_tree_and_branch(data, tmp_path, capsys):
    gev = {k: v for k, v in data["gev"].items() if k != "tau21b"}
    rows = np.arange(1000)
    files = [
        _write(tmp_path / "a.root", data["gev"], rows),
        _write(tmp_path / "b.root", gev, rows),
    ]
    d = _gev_config(data)
    d["data"]["files"] = [str(f) for f in files]
    line = _one_line_error(_cli(capsys, _save(tmp_path, d), "-o", tmp_path / "out"))
    assert "b.root" in line and "tree 'Events'" in line and "no branch 'tau21b'" in line
    # a typo in the config: suggested
    d["data"]["files"] = [str(files[0])]
    d["features"][3]["name"] = "tau21B"
    with pytest.raises(InputError, match=r"no branch 'tau21B' \(did you mean 'tau21b'"):
        read_scan_columns(parse_scan_config(d, "x.yaml"))
    d["data"]["files"] = [str(tmp_path / "missing.root")]
    line = _one_line_error(_cli(capsys, _save(tmp_path, d, "m.yaml"), "-o", tmp_path / "m"))
    assert "missing.root" in line and "does not exist" in line


# --------------------------------------------------- separate signal-region and sideband samples


def test_split_samples_scan_one_window_with_the_single_spectrum_counts(data, gev_scan, tmp_path):
    single, _ = gev_scan
    d = _split_config(data, sideband=400)  # the single-spectrum scan's sidebands
    out = tmp_path / "split"
    result = scan_from_config(parse_scan_config(d, str(tmp_path / "s.yaml")), out, quiet=True)
    (w,), (ws,) = result.windows, single.windows
    assert w.window == ws.window == Window(3300.0, 3700.0, 2900.0, 4100.0)
    assert (w.n_signal_region, w.n_sideband) == (ws.n_signal_region, ws.n_sideband)
    assert w.n_background_fit == pytest.approx(ws.n_background_fit, rel=1e-9)
    assert result.n_events == N_EVENTS
    assert json.loads((out / "scan.json").read_text())["windows"]
    html = (out / "report.html").read_text()
    assert "signal region" in html and "innerdata.root" in html and "outerdata_*.root" in html
    assert "2 files" in html


def test_cli_split_samples_sidebands_span_the_sideband_sample(data, tmp_path, capsys):
    # hepgen scan end to end on the user's ntuple: GeV, renamed branches, the sideband
    # sample in two files given by a glob pattern
    code, err = _cli(capsys, _save(tmp_path, _split_config(data)), "-o", tmp_path / "out")
    assert code == 0, err
    (w,) = json.loads((tmp_path / "out" / "scan.json").read_text())["windows"]
    m_sb = data["gev"]["Mjj"][~data["in_sr"]].astype(np.float64)
    assert (w["lo"], w["hi"]) == (3300, 3700)
    # the sideband sample's range, rounded outwards to 6 digits: every event counts
    assert (w["sideband_lo"], w["sideband_hi"]) == (1500.0, 6958.54)
    assert w["sideband_lo"] <= m_sb.min() < m_sb.max() < w["sideband_hi"]
    assert w["n_signal_region"] == int(data["in_sr"].sum())
    assert sum(w["n_sideband"]) == (~data["in_sr"]).sum()


def test_split_samples_on_the_wrong_side_of_the_window_are_refused(data, tmp_path, capsys):
    gev = data["gev"]
    rows = np.flatnonzero(data["in_sr"])
    bad_sr = np.append(rows[:500], np.flatnonzero(gev["Mjj"] > 4000)[:3])  # 3 from outside
    d = _split_config(data)
    d["data"]["signal_region"]["files"] = [
        str(data["sr_file"]),
        str(_write(tmp_path / "bad_sr.root", gev, bad_sr)),
    ]
    with pytest.raises(InputError) as info:
        read_scan_columns(parse_scan_config(d, "x.yaml"))
    msg = str(info.value)
    assert msg.startswith("data.signal_region: file '") and "bad_sr.root" in msg
    assert "3 of 503 events have Mjj outside scan.window [3300, 3700)" in msg
    d = _split_config(data)
    d["data"]["sidebands"]["files"] = [str(_write(tmp_path / "bad_sb.root", gev, rows[:7]))]
    with pytest.raises(InputError, match=r"bad_sb.root': 7 of 7 events have Mjj inside"):
        read_scan_columns(parse_scan_config(d, "x.yaml"))
    line = _one_line_error(_cli(capsys, _save(tmp_path, d), "-o", tmp_path / "out"))
    assert "bad_sb.root" in line


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda d: d["data"].update(files=["a.root"]),
            r"key 'data.files': give either 'files' \(one spectrum\) or 'signal_region'",
        ),
        (lambda d: d["data"].pop("sidebands"), r"key 'data.signal_region'.*'data.sidebands' too"),
        (
            lambda d: d["scan"].update(
                window=None, start=3300, stop=3700, width=400, step=200, sideband=400
            ),
            r"key 'scan.window': separate signal-region and sideband samples need the fixed",
        ),
        (lambda d: d["scan"].update(start=3300), r"'window' fixes the signal region: drop 'start'"),
        (lambda d: d["scan"].update(window=[3700, 3300]), r"'window' \[3700.0, 3300.0\]"),
        (lambda d: d["data"]["sidebands"].update(files=[]), r"key 'data.sidebands.files'"),
    ],
)
def test_split_config_errors_are_one_line(data, change, message):
    d = _split_config(data)
    change(d)
    with pytest.raises(ConfigError, match=message) as info:
        parse_scan_config(d, "x.yaml")
    assert str(info.value).startswith("x.yaml: ") and "\n" not in str(info.value)


def test_sliding_windows_need_every_key_and_files_override_is_refused_for_split(data):
    d = _gev_config(data)
    del d["scan"]["width"]
    with pytest.raises(ConfigError, match=r"missing 'width': give the sliding windows"):
        parse_scan_config(d, "x.yaml")
    cfg = parse_scan_config(_split_config(data), "x.yaml")
    with pytest.raises(ConfigError, match=r"--files replaces 'data.files'.*signal_region"):
        read_scan_columns(cfg, files=[str(data["parts"][0])])


def test_fixed_window_sidebands():
    assert ScanSection(window=[3.3, 3.7], sideband=0.4).windows() == [Window(3.3, 3.7, 2.9, 4.1)]
    assert ScanSection(window=[3.3, 3.7]).windows((1.6, 6.9)) == [
        Window(3.3, 3.7, 1.6, 6.90001)  # the largest value inside [hi, sb_hi)
    ]
    assert ScanSection(window=[3.3, 3.7]).closure_margin_value == pytest.approx(0.2)
    with pytest.raises(InputError, match=r"fixed window \[3.3, 3.7\) needs data on both sides"):
        ScanSection(window=[3.3, 3.7]).windows((3.4, 6.9))
    with pytest.raises(InputError, match="reaches outside the data range"):
        ScanSection(window=[3.3, 3.7], sideband=0.4).windows((3.0, 6.9))


def test_the_example_split_config_parses():
    cfg = load_scan_config(CONFIGS / "example_scan_sr_sb.yaml")
    assert cfg.data.split and cfg.scan.window == (3.3, 3.7)
    (w,) = cfg.settings().windows((1.5, 7.0))
    assert w == Window(3.3, 3.7, 1.5, 7.00001)
