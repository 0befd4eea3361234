"""``hepgen validate`` must not pass a broken sample: non-finite values, bookkeeping branches,
the headline verdict, degenerate settings, output checks and the atomic report folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import uproot

from hepgen.cli import main
from hepgen.errors import InputError
from hepgen.utils import atomic_directory
from hepgen.validation.compare import compare

N = 2000


def _flat_file(
    path: Path, seed: int, *, nan_a: float = 0.0, inf_b: int = 0, scale: float = 1.0, extra: int = 0
) -> Path:
    """Event-level branches: bookkeeping (run, event, luminosityBlock, genWeight, x_idx) and
    physics (a, b, nObj, and ``extra`` more features)."""
    rng = np.random.default_rng(seed)
    a = rng.exponential(30.0, N) + 20.0
    a = a * scale
    if nan_a:
        a[rng.random(N) < nan_a] = np.nan
    b = rng.normal(0.0, 1.5, N)
    b[:inf_b] = np.inf
    branches = {
        "run": np.full(N, 1, np.int32),
        "event": np.arange(N, dtype=np.uint64),
        "luminosityBlock": np.arange(N, dtype=np.int32) // 100,
        "genWeight": np.ones(N),
        "x_idx": rng.integers(0, 5, N).astype(np.int32),
        "a": a,
        "b": b,
        "nObj": rng.poisson(3.0, N).astype(np.int32),
    }
    for i in range(extra):
        branches[f"f{i:02d}"] = rng.normal(i, 1.0, N)
    _write(path, branches)
    return path


def _write(path: Path, branches: dict[str, np.ndarray]) -> None:
    with uproot.recreate(path) as f:
        f.mktree("Events", {k: v.dtype for k, v in branches.items()})
        f["Events"].extend(branches)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("trust")
    return {
        "ref": _flat_file(d / "ref.root", 1),
        "same": _flat_file(d / "same.root", 2),
        "nan": _flat_file(d / "nan.root", 3, nan_a=0.3, inf_b=5),
    }


def _metrics(out: Path) -> dict:
    return json.loads((out / "metrics.json").read_text())


def _run(capsys, *args: str) -> tuple[int, str, str]:
    rc = main(["validate", *map(str, args), "--quiet"])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


# --------------------------------------------------------------------------------------------
# non-finite values


def test_nonfinite_values_fail_by_default_and_are_reported(files, tmp_path, capsys):
    out = tmp_path / "report"
    rc, stdout, err = _run(
        capsys, files["ref"], files["nan"], "-o", out, "--metrics", "ks", "chi2", "mmd"
    )
    assert rc == 1
    n_nan = int(np.isnan(uproot.open(files["nan"])["Events"]["a"].array(library="np")).sum())
    assert 500 < n_nan < 700
    # one line, naming the sample, the feature and the counts, and the way out
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        f"hepgen: error: non-finite values: candidate 'a' {n_nan} of "
        f"{N} ({n_nan} nan); candidate 'b' 5 of {N} (5 posinf)"
    )
    assert "--allow-nonfinite" in lines[0]
    # the report is written anyway, with the counts on top of it
    m = _metrics(out)
    nf = m["nonfinite"]
    assert nf["allowed"] is False
    assert nf["features"]["a"]["candidate"] == {"nan": n_nan, "posinf": 0, "neginf": 0, "n": N}
    assert nf["features"]["a"]["reference"]["nan"] == 0
    assert nf["features"]["b"]["candidate"]["posinf"] == 5
    assert nf["total"] == {"reference": 0, "candidate": n_nan + 5}
    assert m["verdict"]["verdict"] == "DIFFERENT"
    assert "'a' is non-finite in" in m["verdict"]["reasons"][0]
    html = (out / "report.html").read_text()
    assert html.index("Non-finite values") < html.index("Per-feature tests")
    assert f'<td class="bad">{n_nan}</td>' in html
    assert stdout.strip().splitlines()[-1].startswith("verdict: DIFFERENT")


def test_allow_nonfinite_proceeds_with_red_cells(files, tmp_path, capsys):
    out = tmp_path / "report"
    rc, _, err = _run(
        capsys, files["ref"], files["nan"], "-o", out, "--allow-nonfinite", "--metrics", "ks", "mmd"
    )
    assert rc == 0, err
    m = _metrics(out)
    assert m["nonfinite"]["allowed"] is True and "failure" not in m["verdict"]
    # the tests ran on the finite values only
    assert m["features"]["a"]["ks"]["pvalue"] is not None
    html = (out / "report.html").read_text()
    assert "<td class='name bad'>a</td>" in html and "<td class='name bad'>b</td>" in html
    assert "<td class='name'>nObj</td>" in html
    # the rate of non-finite values differs: DIFFERENT, which can gate a production
    assert m["verdict"]["verdict"] == "DIFFERENT"
    rc, _, err = _run(
        capsys,
        files["ref"],
        files["nan"],
        "-o",
        out,
        "--allow-nonfinite",
        "--metrics",
        "ks",
        "mmd",
        "--fail-on-different",
    )
    assert rc == 1 and "verdict DIFFERENT (--fail-on-different)" in err


def test_compare_api_counts_nonfinite_and_never_passes_them():
    rng = np.random.default_rng(0)
    ref = {"x": rng.normal(size=500), "y": rng.normal(size=500)}
    cand = {"x": rng.normal(size=500), "y": rng.normal(size=500)}
    cand["x"][:3] = [np.nan, np.inf, -np.inf]
    res = compare(ref, cand, metrics=["ks", "mmd"], seed=0)
    assert res.nonfinite["features"]["x"]["candidate"] == {
        "nan": 1,
        "posinf": 1,
        "neginf": 1,
        "n": 500,
    }
    assert res.failure is not None and "candidate 'x' 3 of 500" in res.failure
    assert res.verdict()["verdict"] != "PASS"
    ok = compare(ref, cand, metrics=["ks", "mmd"], seed=0, allow_nonfinite=True)
    assert ok.failure is None
    assert ok.to_dict()["nonfinite"]["total"] == {"reference": 0, "candidate": 3}


def test_config_validate_with_nan_advises_an_option_that_exists(jets_file, tmp_path, capsys):
    from hepgen.resources import config_path

    events = uproot.open(jets_file)["Events"].arrays()
    fields = {k: events[k] for k in events.fields if not k.startswith("n")}
    import awkward as ak

    flat = ak.to_numpy(ak.flatten(events["Jet_pt"])).copy()
    flat[::10] = np.nan
    fields["Jet_pt"] = ak.unflatten(flat, ak.num(events["Jet_pt"]))
    colls: dict[str, dict] = {}
    out_branches: dict = {}
    for k, v in fields.items():
        if k.startswith(("Jet_", "GenJet_")):
            c, f = k.split("_", 1)
            colls.setdefault(c, {})[f] = v
        else:
            out_branches[k] = v
    for c, f in colls.items():
        out_branches[c] = ak.zip(f)
    bad = tmp_path / "bad.root"
    with uproot.recreate(bad) as f:
        f.mktree(
            "Events",
            {k: v.type for k, v in out_branches.items()},
            field_name=lambda o, i: f"{o}_{i}",
            counter_name=lambda c: "n" + c,
        )
        f["Events"].extend(out_branches)
    out = tmp_path / "report"
    rc, _, err = _run(
        capsys,
        jets_file,
        bad,
        "-o",
        out,
        "--config",
        config_path("toy_jets.yaml"),
        "--metrics",
        "ks",
        "--max-events",
        "2000",
    )
    assert rc == 1
    assert "--drop-nonfinite" not in err and "--allow-nonfinite" in err
    assert "candidate 'Jet_pt'" in err
    m = _metrics(out)
    assert m["nonfinite"]["features"]["Jet_pt"]["candidate"]["nan"] > 0


# --------------------------------------------------------------------------------------------
# bookkeeping branches


def test_bookkeeping_branches_are_not_compared_unless_named(files, tmp_path, capsys):
    out = tmp_path / "report"
    rc, _, err = _run(capsys, files["ref"], files["same"], "-o", out, "--metrics", "ks")
    assert rc == 0, err
    m = _metrics(out)
    assert set(m["features"]) == {"a", "b", "nObj"}
    assert m["excluded"] == {
        "run": "'run' (run number)",
        "event": "'event' (event number)",
        "luminosityBlock": "'luminosityBlock' (luminosity-block number)",
        "genWeight": "'*Weight' (weight)",
        "x_idx": "'*_idx' (index into another collection)",
    }
    html = (out / "report.html").read_text()
    assert "not compared (bookkeeping)" in html
    assert any("bookkeeping branch(es) not compared" in n for n in m["notes"])
    # a name given literally wins over the rules; a pattern obeys them
    rc, _, err = _run(
        capsys,
        files["ref"],
        files["same"],
        "-o",
        out,
        "--metrics",
        "ks",
        "--features",
        "event",
        "a",
    )
    assert rc == 0, err
    assert set(_metrics(out)["features"]) == {"event", "a"}
    rc, _, err = _run(
        capsys, files["ref"], files["same"], "-o", out, "--metrics", "ks", "--features", "*"
    )
    assert rc == 0, err
    assert set(_metrics(out)["features"]) == {"a", "b", "nObj"}


def test_files_with_no_physics_in_common_are_refused(files, tmp_path, capsys):
    dijet = tmp_path / "dijet.root"
    _write(
        dijet, {"event": np.arange(N, dtype=np.uint64), "mjj": np.ones(N), "tau21_j1": np.ones(N)}
    )
    out = tmp_path / "report"
    rc, _, err = _run(capsys, files["ref"], dijet, "-o", out)
    assert rc == 2
    assert "share no physics feature" in err and "they share only bookkeeping: event" in err
    assert "has [a, b, nObj]" in err and "has [mjj, tau21_j1]" in err
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# the verdict


def _jets_like(rng: np.random.Generator, n: int, scale: float = 1.0) -> dict[str, np.ndarray]:
    return {
        "pt": (rng.exponential(30.0, n) + 20.0) * scale,
        "eta": rng.normal(0.0, 1.5, n),
        "m": rng.gamma(4.0, 2.0, n),
    }


_FAST = {"c2st": {"n_jobs": 1}}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_identical_distributions_pass(seed):
    rng = np.random.default_rng(seed)
    res = compare(
        _jets_like(rng, 12000),
        _jets_like(rng, 6000),
        metrics=["c2st", "mmd"],
        seed=seed,
        options=_FAST,
    )
    v = res.verdict()
    assert v["verdict"] == "PASS", v["reasons"]
    assert res.to_dict()["verdict"]["verdict"] == "PASS"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_five_percent_pt_scale_is_different(seed):
    rng = np.random.default_rng(seed)
    res = compare(
        _jets_like(rng, 12000),
        _jets_like(rng, 6000, scale=1.05),
        metrics=["c2st", "mmd"],
        seed=seed,
        options=_FAST,
    )
    v = res.verdict()
    assert v["verdict"] == "DIFFERENT", v["reasons"]
    assert "rejects" in v["reasons"][0]


def test_verdict_is_inconclusive_without_baseline_or_rows():
    rng = np.random.default_rng(5)
    res = compare(
        _jets_like(rng, 2000),
        _jets_like(rng, 1000, scale=1.3),
        metrics=["c2st", "mmd"],
        baseline=False,
        options=_FAST,
    )
    assert res.mmd.pvalue < 0.01  # a clear difference, but nothing to read it against
    v = res.verdict()
    assert v["verdict"] == "INCONCLUSIVE"
    assert any("no reference-vs-reference baseline" in r for r in v["reasons"])
    few = compare(_jets_like(rng, 200), _jets_like(rng, 50), metrics=["mmd"], seed=0)
    v = few.verdict()
    assert v["verdict"] == "INCONCLUSIVE" and any("fewer than 100 rows" in r for r in v["reasons"])
    none = compare(_jets_like(rng, 500), _jets_like(rng, 500), metrics=["ks"], seed=0)
    assert none.verdict()["verdict"] == "INCONCLUSIVE"


def test_cli_prints_the_verdict_last_and_gates_on_different(files, tmp_path, capsys):
    shifted = _flat_file(tmp_path / "shifted.root", 4, scale=1.3)
    out = tmp_path / "report"
    rc, stdout, err = _run(capsys, files["ref"], shifted, "-o", out, "--metrics", "ks", "mmd")
    assert rc == 0, err
    assert stdout.strip().splitlines()[-1].startswith("verdict: DIFFERENT (MMD^2")
    html = (out / "report.html").read_text()
    body = html[: html.rindex("</body>")]
    assert body.rstrip().splitlines()[-1].startswith("<p class='verdict v-DIFFERENT'")
    assert _metrics(out)["verdict"]["verdict"] == "DIFFERENT"
    rc, _, err = _run(
        capsys, files["ref"], shifted, "-o", out, "--metrics", "ks", "mmd", "--fail-on-different"
    )
    assert rc == 1 and err.startswith("hepgen: error: verdict DIFFERENT")
    rc, stdout, _ = _run(
        capsys,
        files["ref"],
        files["same"],
        "-o",
        out,
        "--metrics",
        "ks",
        "mmd",
        "--fail-on-different",
    )
    assert rc == 0 and stdout.strip().splitlines()[-1].startswith("verdict: PASS")


# --------------------------------------------------------------------------------------------
# degenerate settings and output paths, refused before any work


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--c2st-repeats", "0"], "--c2st-repeats must be >= 1, got 0"),
        (["--c2st-repeats", "-2"], "--c2st-repeats must be >= 1, got -2"),
        (["--max-plots", "-1"], "--max-plots must be >= 0, got -1"),
        (["--max-events", "0"], "--max-events must be positive, got 0"),
        (["--metrics", ""], "--metrics: unknown metric(s) ['']"),
        (["--metrics", "ks", "auc"], "--metrics: unknown metric(s) ['auc']"),
        (["--alpha", "0"], "--alpha must be strictly between 0 and 1"),
    ],
)
def test_degenerate_cli_settings_are_errors(args, message, tmp_path, capsys):
    # the inputs do not exist: the settings are refused before anything is read
    rc, _, err = _run(capsys, tmp_path / "a.root", tmp_path / "b.root", "-o", tmp_path / "r", *args)
    assert rc == 2
    assert err.startswith(f"hepgen: error: {message}")
    assert len(err.strip().splitlines()) == 1


def test_degenerate_api_settings_are_errors():
    x = np.random.default_rng(0).normal(size=(100, 2))
    with pytest.raises(InputError, match=r"n_repeats'\]=0: a degenerate setting"):
        compare(x, x, options={"c2st": {"n_repeats": 0}})
    with pytest.raises(InputError, match="metrics: empty"):
        compare(x, x, metrics=[])
    with pytest.raises(InputError, match=r"unknown metric\(s\) \['kss'\]"):
        compare(x, x, metrics=["kss"])
    with pytest.raises(InputError, match="unknown option 'n_repeat'"):
        compare(x, x, options={"c2st": {"n_repeat": 2}})
    with pytest.raises(InputError, match=r"n_permutations'\]=0"):
        compare(x, x, options={"mmd": {"n_permutations": 0}})


def test_bad_output_paths_are_refused_before_reading(files, tmp_path, capsys):
    afile = tmp_path / "afile.txt"
    afile.write_text("keep me")
    rc, _, err = _run(capsys, files["ref"], files["same"], "-o", afile)
    assert rc == 2 and f"report folder '{afile}' is an existing file" in err
    assert afile.read_text() == "keep me"
    # an input inside the report folder would be deleted by the swap
    folder = tmp_path / "holder"
    folder.mkdir()
    inner = folder / "ref.root"
    inner.write_bytes(files["ref"].read_bytes())
    rc, _, err = _run(capsys, inner, files["same"], "-o", folder)
    assert rc == 2 and "holds the input" in err
    # a folder with other content is not replaced
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    rc, _, err = _run(capsys, files["ref"], files["same"], "-o", other)
    assert rc == 2 and "not a hepgen report (notes.txt)" in err
    assert (other / "notes.txt").read_text() == "mine"
    hidden = tmp_path / "hidden"
    (hidden / ".git").mkdir(parents=True)
    rc, _, err = _run(capsys, files["ref"], files["same"], "-o", hidden)
    assert rc == 2 and "not a hepgen report (.git)" in err and (hidden / ".git").is_dir()
    # an input used as the output
    rc, _, err = _run(capsys, files["ref"], files["same"], "-o", files["same"])
    assert rc == 2 and "also an input" in err


# --------------------------------------------------------------------------------------------
# the atomic report folder


def test_atomic_directory_swaps_whole_and_keeps_old_on_error(tmp_path, monkeypatch):
    import hepgen.utils as utils

    target = tmp_path / "rep"
    with atomic_directory(target) as tmp:
        (tmp / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (tmp / "new.txt").write_text("new")
        raise RuntimeError("boom")
    assert sorted(os.listdir(target)) == ["old.txt"]
    assert sorted(os.listdir(tmp_path)) == ["rep"]
    # without renameat2: rename aside, rename in
    monkeypatch.setattr(utils, "_exchange_paths", lambda a, b: False)
    with atomic_directory(target) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(os.listdir(target)) == ["new.txt"]
    assert sorted(os.listdir(tmp_path)) == ["rep"]


def test_atomic_directory_removes_only_its_own_stale_folders(tmp_path, caplog):
    from hepgen.outputs import temp_prefix

    target = tmp_path / "rep"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / (
        temp_prefix(target).replace(f"-{os.getpid()}-", f"-{dead.pid}-") + "abcd1234.dir"
    )
    (stale / "plots").mkdir(parents=True)
    alive = tmp_path / (temp_prefix(target) + "efgh5678.dir")  # this very process: alive
    alive.mkdir()
    others = [
        tmp_path / ".rep.hepgen-tmp-notours",
        tmp_path / ".rep.backup",
        tmp_path / "rep.hepgen-tmp-0a0a0a-1-abcd1234.dir",
    ]
    for p in others:
        p.mkdir()
    with caplog.at_level("WARNING"), atomic_directory(target) as tmp:
        (tmp / "x").write_text("x")
    assert not stale.exists()
    assert alive.exists() and all(p.exists() for p in others)
    assert stale.name in caplog.text


def test_sigkill_during_plots_leaves_the_old_report(tmp_path, capsys):
    """Crash drill: kill validate while it draws, over an existing report."""
    d = tmp_path
    ref = _flat_file(d / "ref.root", 11, extra=40)
    cand = _flat_file(d / "cand.root", 12, extra=40)
    out = d / "report"
    args = [
        str(ref),
        str(cand),
        "-o",
        str(out),
        "--metrics",
        "ks",
        "--no-baseline",
        "--max-plots",
        "100",
    ]
    assert main(["validate", *args, "--quiet", "--max-plots", "2"]) == 0
    capsys.readouterr()
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert len([p for p in before if p.parts[0] == "plots"]) == 2 + 1  # features + correlation
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "hepgen", "validate", *args, "--quiet"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 300
    building = None
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            tmps = [p for p in d.glob(".report.hepgen-tmp-*.dir")]
            # kill once the new folder holds a few of its plots (mid-way through drawing)
            if tmps and len(list((tmps[0] / "plots").glob("feature_*.png"))) >= 3:
                building = tmps[0]
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.005)
    finally:
        if proc.poll() is None and building is None:
            proc.kill()
        proc.wait()
    assert building is not None, f"never saw the report being built: {proc.stderr.read()!r}"
    assert proc.returncode == -signal.SIGKILL
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # the old report, whole and unchanged
    assert building.exists()  # the killed run's leftover
    # the next run removes the leftover and swaps in a complete report
    assert main(["validate", *args, "--quiet", "--max-plots", "5"]) == 0
    assert sorted(p.name for p in d.iterdir() if p.name.startswith(".")) == []
    assert len(list((out / "plots").glob("feature_*.png"))) == 5
