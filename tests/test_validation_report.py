"""``hepgen validate`` and the report directory: files, contract keys, power, bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from hepgen.cli import main
from hepgen.resources import config_path
from hepgen.sim import simulate_to_file

CONTRACT = ("n_reference", "n_candidate", "weighted", "features", "c2st", "mmd", "fpd", "kpd")


@pytest.fixture(scope="module")
def other_jets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Same physics as ``jets_file``, another seed: a perfect 'fast simulation'."""
    path = tmp_path_factory.mktemp("sim") / "jets_other.root"
    return simulate_to_file(path, "jets", n_events=5000, seed=8, quiet=True)


@pytest.fixture(scope="module")
def worse_jets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A candidate with a 15 % worse jet energy resolution (a realistic fast-sim failure)."""
    path = tmp_path_factory.mktemp("sim") / "jets_worse.root"
    return simulate_to_file(path, "jets", n_events=5000, seed=9, quiet=True, resolution_scale=1.15)


def _metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def test_validate_branches_writes_a_self_contained_report(jets_file, other_jets, tmp_path):
    out = tmp_path / "report"
    rc = main(
        [
            "validate",
            str(jets_file),
            str(other_jets),
            "-o",
            str(out),
            "--max-events",
            "1500",
            "--max-plots",
            "8",
            "--quiet",
        ]
    )
    assert rc == 0
    m = _metrics(out)
    for key in CONTRACT:
        assert key in m
    assert "baseline" in m and m["baseline"]["features"]
    # every numeric physics branch in both files, object collections flattened; collection
    # counters are physics (multiplicities), bookkeeping branches are listed, not compared
    assert {"Jet_pt", "GenJet_pt", "nJet", "nGenJet"} <= set(m["features"])
    assert set(m["excluded"]) == {"run", "luminosityBlock", "event", "genWeight", "Jet_genJetIdx"}
    assert not set(m["excluded"]) & set(m["features"])
    assert m["verdict"]["verdict"] == "PASS" and m["nonfinite"]["features"] == {}
    assert any("multivariate tests use the 'Jet' group" in n for n in m["notes"])
    assert 0.4 < m["c2st"]["auc"] < 0.6
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 8 + 2  # features + ROC + correlation
    assert not re.search(r"(src|href)=['\"]https?://", html)
    assert len(list((out / "plots").glob("feature_*.png"))) == 8
    assert (out / "plots" / "roc.png").is_file()
    assert (out / "plots" / "correlation_difference.png").is_file()
    assert "NaN" not in (out / "metrics.json").read_text()


def test_validate_config_detects_a_worse_resolution(jets_file, worse_jets, tmp_path):
    out = tmp_path / "report"
    rc = main(
        [
            "validate",
            str(jets_file),
            str(worse_jets),
            "-o",
            str(out),
            "--quiet",
            "--config",
            str(config_path("toy_jets.yaml")),
            "--metrics",
            "ks",
            "chi2",
            "w1",
            "c2st",
        ]
    )
    assert rc == 0
    m = _metrics(out)
    # the classifier sees gen and reco features together
    assert {"GenJet_pt", "Jet_pt", "Jet_mass"} <= set(m["c2st"]["importances"])
    # A 15 % worse resolution hides in the steeply falling Jet_pt marginal (measured p ~ 0.2)
    # but is plain in the response, which the config adds as a feature of its own.
    assert m["features"]["Jet_pt/GenJet_pt"]["ks"]["pvalue"] < 1e-6
    assert next(iter(m["c2st"]["importances"])) == "Jet_pt/GenJet_pt"
    assert m["c2st"]["pvalue"] < 1e-3
    assert m["c2st"]["auc"] > m["baseline"]["c2st"]["auc"] + 0.01
    # gen-level features are the same physics in both files
    assert m["features"]["GenJet_eta"]["ks"]["pvalue"] > 1e-3
    assert set(m["objects"]) >= {"efficiency", "fake_fraction"}
    assert 0.5 < m["objects"]["efficiency"]["reference"] < 0.9
    # conditional bins default to the config's non-periodic conditions
    assert set(m["conditional"]["variables"]) == {
        "GenJet_pt",
        "GenJet_eta",
        "GenJet_mass",
        "GenJet_hadronFlavour",
    }
    flav = m["conditional"]["variables"]["GenJet_hadronFlavour"]
    assert [b["lo"] for b in flav["bins"]] == [-0.5, 3.5, 4.5]


def test_validate_bad_input(jets_file, other_jets, tmp_path, capsys):
    out = str(tmp_path / "r")
    assert (
        main(
            [
                "validate",
                str(jets_file),
                str(other_jets),
                "-o",
                out,
                "--features",
                "Jet_ptt",
                "--quiet",
            ]
        )
        == 2
    )
    assert "no numeric branch 'Jet_ptt' (did you mean 'Jet_pt'" in capsys.readouterr().err
    assert (
        main(
            [
                "validate",
                str(jets_file),
                str(other_jets),
                "-o",
                out,
                "--features",
                "Jet_pt",
                "--weights",
                "genWeightt",
                "--quiet",
            ]
        )
        == 2
    )
    assert "no weight branch 'genWeightt'" in capsys.readouterr().err
    assert (
        main(
            [
                "validate",
                str(jets_file),
                str(other_jets),
                "-o",
                out,
                "--features",
                "Jet_pt",
                "--condition-bins",
                "GenJet_pt:3",
                "--quiet",
            ]
        )
        == 2
    )
    assert "condition-bins variable(s) ['GenJet_pt']" in capsys.readouterr().err
    assert main(["validate", str(jets_file), str(tmp_path / "nope.root"), "-o", out]) == 2
    assert "nope.root" in capsys.readouterr().err
    assert not Path(out).exists()


def test_validate_feature_subset_and_weights(jets_file, other_jets, tmp_path):
    out = tmp_path / "report"
    rc = main(
        [
            "validate",
            str(jets_file),
            str(other_jets),
            "-o",
            str(out),
            "--quiet",
            "--features",
            "Jet_pt",
            "Jet_eta",
            "Jet_mass",
            "--weights",
            "genWeight",
            "--no-baseline",
            "--metrics",
            "ks",
            "chi2",
            "w1",
            "mmd",
            "--condition-bins",
            "Jet_eta=-5,-1.5,0,1.5,5",
        ]
    )
    assert rc == 0
    m = _metrics(out)
    assert set(m["features"]) == {"Jet_pt", "Jet_eta", "Jet_mass"}
    assert m["weighted"] is True and "baseline" not in m
    assert m["mmd"]["pvalue"] > 1e-3
    assert len(m["conditional"]["variables"]["Jet_eta"]["bins"]) == 4


def test_validate_real_nanoaod_against_itself(nanoaod_file, tmp_path):
    """947 branches of the CMS open-data file: every comparable branch is tested, no crash on
    all-NaN (HTXS_Higgs_y) or constant (Jet_btagDeepFlavB = -3000) branches."""
    out = tmp_path / "report"
    args = [
        "validate",
        str(nanoaod_file),
        str(nanoaod_file),
        "-o",
        str(out),
        "--quiet",
        "--metrics",
        "ks",
        "chi2",
        "w1",
        "--max-plots",
        "4",
        "--no-baseline",
    ]
    # real NanoAOD holds NaN (HTXS_Higgs_y where there is no Higgs): counted, and the
    # comparison fails unless they are allowed
    assert main(args) == 1
    m = _metrics(out)
    assert m["nonfinite"]["features"]["HTXS_Higgs_y"]["candidate"]["nan"] > 0
    assert m["verdict"]["failure"].startswith("non-finite values")
    rc = main([*args, "--allow-nonfinite"])
    assert rc == 0
    m = _metrics(out)
    assert len(m["features"]) > 500
    assert m["features"]["Jet_pt"]["ks"]["statistic"] == 0.0
    assert m["features"]["Jet_btagDeepFlavB"]["chi2"]["pvalue"] is None
    assert "HTXS_Higgs_y" not in m["features"]
    assert any("HTXS_Higgs_y" in n for n in m["notes"])


def test_validate_empty_file_is_a_clear_error(jets_file, tmp_path, capsys):
    import numpy as np
    import uproot

    empty = tmp_path / "empty.root"
    with uproot.recreate(empty) as f:
        f.mktree("Events", {"genWeight": np.float32})
    assert (
        main(
            [
                "validate",
                str(jets_file),
                str(empty),
                "-o",
                str(tmp_path / "r"),
                "--features",
                "genWeight",
                "--quiet",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "empty.root', tree 'Events' has no entries" in err


def test_plots_leave_the_callers_matplotlib_state_alone(tmp_path):
    """Drawing the report's figures changes neither the global rcParams nor pyplot's figures."""
    import matplotlib
    import matplotlib.pyplot as plt
    import numpy as np

    from hepgen.validation.report.plots import (
        plot_conditional,
        plot_correlation_difference,
        plot_edges,
        plot_feature,
        plot_roc,
    )

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=500), rng.normal(0.1, 1.0, size=400)
    with matplotlib.rc_context({"font.size": 7.0, "axes.grid": True}):
        before = dict(matplotlib.rcParams)
        figures = plt.get_fignums()
        edges, log_x = plot_edges(x, y)
        plot_feature(tmp_path / "f.png", "x", x, y, edges, annotation="KS 0.1", log_x=log_x)
        plot_correlation_difference(tmp_path / "c.png", ["a", "b"], np.array([[0, 0.1], [0.1, 0]]))
        plot_roc(tmp_path / "r.png", [("cand", [0, 0.5, 1], [0, 0.7, 1], 0.6)])
        entry = {
            "bins": [
                {"lo": 0.0, "hi": 1.0, "features": {"x": {"ks": {"statistic": 0.1}}}},
                {"lo": 1.0, "hi": 2.0, "features": {"x": {"ks": {"statistic": 0.2}}}},
            ]
        }
        plot_conditional(tmp_path / "k.png", "v", entry)
        after = dict(matplotlib.rcParams)
        assert plt.get_fignums() == figures
    changed = {k for k in before if before[k] != after[k]}
    assert not changed, changed
    assert all((tmp_path / f"{n}.png").stat().st_size > 1000 for n in "fcrk")
