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


# --- the report at a glance (issue 21): units, style, ratio range, new sections, timings ---


def new_metric_entries(names: list[str]) -> dict:
    """Synthetic ``metrics.json`` entries of the generative-model metrics (the shapes the
    metrics write), for rendering tests; ``baseline`` holds the reference-vs-reference ones."""
    import numpy as np

    rng = np.random.default_rng(0)

    def centroid() -> dict:
        return {n: float(rng.normal(40, 10)) for n in names}

    bins = [
        {
            "index": i,
            "centroid": centroid(),
            "reference_fraction": 0.02,
            "candidate_fraction": 0.03 if i % 3 == 0 else 0.01,
            "z": 4.0 - 0.1 * i if i % 3 == 0 else -3.0 - 0.1 * i,
            "pvalue": 10.0 ** (-3 - 0.1 * i),
            "significant": i % 3 != 2,
            "direction": ("over", "under", None)[i % 3],
        }
        for i in range(40)
    ]
    prd = {"f_8": 0.91, "f_1_8": 0.97, "statistic": 0.06, "pvalue": 1e-5, "n_clusters": 20,
           "n_runs": 10, "n_angles": 1001, "n_reference": 2000, "n_candidate": 2000,
           "note": "standardised"}  # fmt: skip
    ndb = {"ndb": 27, "k": 40, "ndb_over_k": 0.675, "alpha": 0.05, "expected": 0.05,
           "statistic": 120.0, "ndf": 39, "pvalue": 1e-8, "bins": bins, "feature_names": names,
           "n_reference": 2000, "n_candidate": 2000, "n_fit": 2000, "note": None}  # fmt: skip
    cells = [
        {
            "index": i,
            "n_train": 100,
            "n_reference": 50,
            "n_candidate": 50,
            "z": -5.0 + i,
            "centroid": centroid(),
        }
        for i in range(15)
    ]
    mem = {"statistic": -5.2, "pvalue": 1e-7, "n_cells": 15, "cells": cells,
           "near_duplicates": {"epsilon": 1e-6, "candidate": 812, "candidate_fraction": 0.4,
                               "reference": 0, "reference_fraction": 0.0, "pvalue": 1e-30},
           "median_distance_candidate": 0.01, "median_distance_reference": 0.2,
           "n_train": 2000, "n_reference": 1000, "n_candidate": 1000, "note": "unweighted"}  # fmt: skip
    conf = [[0.8, 0.1, 0.1], [0.2, 0.6, 0.2], [0.05, 0.05, 0.9]]
    inc = {"classes": ["light", "c", "b"], "inception_score_reference": 1.9,
           "inception_score_candidate": 1.6, "mode_score_reference": 1.85,
           "mode_score_candidate": 1.55, "confusion_reference": conf,
           "confusion_candidate": [[0.7, 0.1, 0.2], [0.2, 0.5, 0.3], [0.3, 0.1, 0.6]],
           "accuracy_reference": 0.8, "accuracy_candidate": 0.7, "statistic": 300.0, "ndf": 6,
           "pvalue": 1e-40, "n_train": 2000, "n_reference": 1000, "n_candidate": 1000,
           "note": None}  # fmt: skip
    lk = {"model": "toy_flow", "kind": "flow", "method": "iwae bound, k=64", "exact": False,
          "total": {"mean": -3.21, "stderr": 0.01, "n": 1000, "unit": "nats per jet"},
          "per_target": {n: {"model": {"mean": -1.1, "stderr": 0.01},
                             "reference": {"mean": -1.0, "stderr": 0.01}, "unit": "nats per jet"}
                         for n in names[:2]},
          "note": None}  # fmt: skip
    tests = [
        {"feature": n, "test": t, "pvalue": 0.5, "holm": 1.0, "bh": 0.9}
        for n in names
        for t in ("ks", "chi2")
    ]
    mt = {"alpha": 0.05, "n_tests": len(tests), "n_rejected": 0, "expected": 0.05 * len(tests),
          "pvalue_count": 1.0, "holm": {"n_rejected": 0}, "bh": {"n_rejected": 0},
          "tests": tests}  # fmt: skip
    baseline = {
        "prd": {**prd, "f_8": 0.985, "f_1_8": 0.986, "statistic": 0.01, "pvalue": 0.5},
        "ndb": {**ndb, "ndb": 2, "ndb_over_k": 0.05, "pvalue": 0.6, "bins": []},
        "memorisation": {**mem, "statistic": 0.3, "pvalue": 0.6, "cells": []},
        "inception": {**inc, "inception_score_candidate": 1.88, "pvalue": 0.4},
    }
    return {
        "prd": prd,
        "ndb": ndb,
        "memorisation": mem,
        "inception": inc,
        "label": "GenJet_hadronFlavour",
        "likelihood": lk,
        "multiple_testing": mt,
        "baseline": baseline,
    }


def _page(extra: dict) -> str:
    from hepgen.validation.report.html import render_html

    m = {"n_reference": 10, "n_candidate": 10, "weighted": False, "features": {}, **extra}
    return render_html(m, {})


def test_units_are_inferred_from_names_and_overridden_by_a_map():
    from hepgen.validation.report.units import axis_label, infer_unit

    assert [infer_unit(n) for n in ("Jet_pt", "GenJet_mass", "MET_sumEt", "Jet_energy")] == [
        "GeV"
    ] * 4
    assert [infer_unit(n) for n in ("Jet_eta", "nJet", "Jet_hadronFlavour", "Jet_btagDeepB")] == [
        ""
    ] * 4
    assert infer_unit("Jet_phi") == infer_unit("Jet_phi-GenJet_phi") == "rad"
    assert infer_unit("Jet_pt-GenJet_pt") == "GeV" and infer_unit("Jet_pt/GenJet_pt") == ""
    assert axis_label("Jet_pt") == "Jet_pt [GeV]" and axis_label("Jet_eta") == "Jet_eta"
    assert axis_label("Jet_pt", {"Jet_pt": "TeV"}) == "Jet_pt [TeV]"
    assert axis_label("Jet_pt", {"Jet_pt": ""}) == "Jet_pt"


def test_ratio_range_adapts_and_ignores_sparse_bins():
    import numpy as np

    from hepgen.validation.report.plots import RATIO_CAP, RATIO_FLOOR, ratio_range

    ratio = np.r_[np.full(40, 1.0), 1.03, 0.97, 5.0]
    err = np.r_[np.full(42, 0.01), 2.0]
    entries = np.r_[np.full(42, 1000.0), 3.0]
    assert ratio_range(ratio, err, entries) == RATIO_FLOOR  # the sparse tail bin is ignored
    wide = np.r_[np.full(40, 1.0), np.linspace(0.3, 1.7, 10)]
    assert 0.5 <= ratio_range(wide, np.zeros(50)) <= RATIO_CAP
    assert ratio_range(np.full(3, np.nan), np.full(3, np.nan)) == RATIO_CAP


def test_experiment_styles_leave_rcparams_alone_and_bad_style_is_an_input_error(tmp_path):
    import matplotlib
    import numpy as np

    from hepgen.errors import InputError
    from hepgen.validation.report.plots import plot_edges, plot_feature
    from hepgen.validation.report.style import check_style

    x = np.random.default_rng(1).exponential(30.0, 2000)
    before = dict(matplotlib.rcParams)
    for style in ("CMS", "atlas", "LHCb", "ALICE", None):
        plot_feature(tmp_path / f"{style}.png", "Jet_pt", x, x * 1.02, plot_edges(x, x)[0],
                     annotation="KS 0.1", style=style)  # fmt: skip
        assert (tmp_path / f"{style}.png").stat().st_size > 1000
    changed = {k for k in before if before[k] != matplotlib.rcParams[k]}
    assert not changed, changed
    with pytest.raises(InputError, match="CMS, ATLAS, LHCb, ALICE"):
        check_style("D0")


def test_conditional_plot_gives_every_series_its_own_colour_and_marker():
    from hepgen.validation.report.style import series_style

    styles = [series_style(i) for i in range(20)]
    assert len({tuple(s["color"]) for s in styles}) == 20
    combos = {
        (tuple(s["color"]), s["marker"], s["linestyle"]) for s in map(series_style, range(40))
    }
    assert len(combos) == 40


def test_new_metric_sections_render_only_when_present():
    page = _page({})
    for anchor in ("id='prd'", "id='ndb'", "id='memorisation'", "id='inception'", "likelihood"):
        assert anchor not in page
    names = ["Jet_pt", "Jet_eta", "Jet_phi"]
    page = _page(new_metric_entries(names))
    for anchor in ("id='prd'", "id='ndb'", "id='memorisation'", "id='inception'"):
        assert anchor in page
    assert "Deciding numbers" in page and "NDB/K" in page and "IS analogue" in page
    # centroids in physical units; at most 10 over- and 10 under-populated bins, ordered
    assert "Jet_pt [GeV]" in page.replace("<wbr>", "") and "Jet_phi [rad]" in page.replace(
        "<wbr>", ""
    )
    assert "the 10 most significant shown" in page
    ndb = page[page.index("id='ndb'") : page.index("id='memorisation'")]
    assert ndb.count("<tr><td>") == 20
    # a bound is labelled as a bound
    assert "lower bound on the log-likelihood" in page and "(bound)" in page
    # Holm / BH next to the raw p-values and the count against chance in the summary
    assert "Holm / BH p" in page and "expected by chance" in page
    # None entries render nothing either
    assert "id='ndb'" not in _page({"ndb": None, "prd": None, "inception": None})


def test_report_times_its_plots_and_uses_units_and_style(tmp_path):
    import numpy as np

    from hepgen.errors import InputError
    from hepgen.validation.compare import compare
    from hepgen.validation.report import write_report
    from hepgen.validation.samples import Table

    rng = np.random.default_rng(2)
    names = ["Jet_pt", "Jet_eta", "nConst"]
    x = np.column_stack([rng.exponential(30, 800) + 20, rng.normal(0, 2, 800), rng.poisson(8, 800)])
    y = x * np.array([1.05, 1.0, 1.0])
    res = compare(x, y, feature_names=names, metrics=["ks", "chi2", "w1"], baseline=False)
    tables = [(Table(names, x), Table(names, y))]
    out = write_report(tmp_path / "r", res, tables, units={"nConst": ""}, style="lhcb")
    m = json.loads(out.metrics.read_text())
    assert m["timings"]["plots"] > 0 and set(m["plot_timings"]) >= {"features", "correlation"}
    assert abs(sum(m["plot_timings"].values()) - m["timings"]["plots"]) < 1e-3
    page = out.html.read_text()
    assert "<td class='name'>GeV</td>" in page  # the unit column of the per-feature table
    assert "class='scroll'" in page
    with pytest.raises(InputError, match="style must be one of"):
        write_report(tmp_path / "s", res, tables, style="CDF")
    with pytest.raises(InputError, match="units must map"):
        write_report(tmp_path / "s", res, tables, units={"Jet_pt": 1})
