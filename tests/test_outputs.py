"""Nothing lost, nothing half-written: outputs checked before any work, no silent overwrite,
stale temporary files of killed runs cleaned (only hepgen's own), --quiet keeps results and
warnings, and a SIGKILL in the middle of ``hepgen generate`` leaves the target unchanged."""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import awkward as ak
import pytest
from conftest import train_small_fastsim

from hepgen.cli import main
from hepgen.errors import InputError
from hepgen.io.reader import read_events
from hepgen.io.writer import write_events
from hepgen.outputs import (
    TEMP_TAG,
    check_output_dir,
    check_output_file,
    clean_stale_temps,
    make_temp_file,
    temp_prefix,
)
from hepgen.resources import config_path
from hepgen.sim import simulate_to_file
from hepgen.utils import atomic_write_text

REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hepgen", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        **kwargs,
    )


def dead_pid() -> int:
    """The PID of a process that has run and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]


def hidden_temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if TEMP_TAG in p.name)


# -- the up-front checks ----------------------------------------------------------------------


def test_check_output_file(tmp_path):
    data = tmp_path / "jets.root"
    data.write_bytes(b"input")
    assert check_output_file(tmp_path / "new" / "out.root") == tmp_path / "new" / "out.root"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    with pytest.raises(InputError, match="already exists; use --overwrite"):
        check_output_file(data)
    assert check_output_file(data, overwrite=True) == data
    with pytest.raises(InputError, match="is a directory, expected a file"):
        check_output_file(tmp_path, overwrite=True)
    with pytest.raises(InputError, match=r"'.*jets.root' is a file, not a folder"):
        check_output_file(data / "sub" / "out.root")
    # the output is an input: same path, a symlink to it, a hard link, a glob pattern
    link = tmp_path / "link.root"
    link.symlink_to(data)
    hard = tmp_path / "hard.root"
    os.link(data, hard)
    for out, inputs in [
        (data, [data]),
        (link, [data]),
        (hard, [data]),
        (data, [os.fspath(tmp_path / "*.root")]),
        (tmp_path / "x/../jets.root", [data]),
    ]:
        with pytest.raises(InputError, match="also an input of this job"):
            check_output_file(out, inputs=inputs, overwrite=True)
    assert data.read_bytes() == b"input"


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc")
def test_check_output_file_unwritable_folder():
    # os.access says yes to root on /proc; the probe file does not
    with pytest.raises(InputError, match=r"cannot write output '/proc/hepgen-x.root'"):
        check_output_file("/proc/hepgen-x.root")


def test_check_output_dir(tmp_path):
    afile = tmp_path / "afile.txt"
    afile.write_text("x")
    with pytest.raises(InputError, match="is an existing file, expected a folder"):
        check_output_dir(afile)
    with pytest.raises(InputError, match=r"'.*afile.txt' is a file, not a folder"):
        check_output_dir(afile / "report")
    report = tmp_path / "report"
    assert check_output_dir(report, contents=["report.html"]) == report
    report.mkdir()
    (report / "report.html").write_text("old")
    assert check_output_dir(report, contents=["report.html"]) == report
    with pytest.raises(InputError, match=r"already holds report.html; use --overwrite"):
        check_output_dir(report, contents=["report.html"], overwrite=False)
    with pytest.raises(InputError, match="would overwrite the input"):
        check_output_dir(report, inputs=[report / "report.html"], contents=["report.html"])


# -- stale temporary files ------------------------------------------------------------------


def test_stale_temps_of_dead_writers_are_removed_and_named(tmp_path, caplog):
    target = tmp_path / "out.root"
    tag = host_tag()
    dead, alive = dead_pid(), os.getppid()
    stale = tmp_path / f".out.root.{TEMP_TAG}-{tag}-{dead}-abcd_123.tmp.root"
    stale_json = tmp_path / f".out.root.{TEMP_TAG}-{tag}-{dead}-zzzzzzzz.tmp"
    kept = [
        tmp_path / f".out.root.{TEMP_TAG}-{tag}-{alive}-abcd1234.tmp.root",  # live writer
        tmp_path / f".out.root.{TEMP_TAG}-ffffff-{dead}-abcd1234.tmp.root"  # other host
        if tag != "ffffff"
        else tmp_path / f".out.root.{TEMP_TAG}-000000-{dead}-abcd1234.tmp",
        tmp_path / f".other.root.{TEMP_TAG}-{tag}-{dead}-abcd1234.tmp.root",  # other target
        tmp_path / ".out.root.3cy8gfq4.tmp.root",  # not hepgen's naming: someone else's
        tmp_path / f".out.root.{TEMP_TAG}-{tag}-{dead}-abcd1234.tmp.root.keep~",
        tmp_path / f"out.root.{TEMP_TAG}-{tag}-{dead}-abcd1234.tmp",  # not hidden
    ]
    for p in [stale, stale_json, *kept]:
        p.write_bytes(b"partial")
    with caplog.at_level(logging.WARNING, logger="hepgen"):
        atomic_write_text(target, "done")
    assert target.read_text() == "done"
    assert not stale.exists() and not stale_json.exists()
    assert all(p.exists() for p in kept)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["out.root", *(p.name for p in kept)]
    )
    message = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "removed 2 stale temporary file(s)" in message
    assert stale.name in message and stale_json.name in message
    # nothing left to clean: no warning, nothing removed
    caplog.clear()
    assert clean_stale_temps(target) == []
    assert not caplog.records


def test_temp_names_are_hepgen_s_own(tmp_path):
    tmp = make_temp_file(tmp_path / "x.root", suffix=".tmp.root")
    assert tmp.name.startswith(temp_prefix(tmp_path / "x.root"))
    assert tmp.name.startswith(f".x.root.{TEMP_TAG}-{host_tag()}-{os.getpid()}-")
    assert tmp.name.endswith(".tmp.root")
    assert clean_stale_temps(tmp_path / "x.root") == []  # our own live file stays
    assert tmp.exists()


# -- the commands -----------------------------------------------------------------------------


def test_simulate_refuses_to_overwrite_and_checks_before_work(tmp_path, capsys):
    out = tmp_path / "a.root"
    assert main(["simulate", "-n", "50", "-o", str(out), "--quiet"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote 50 jets events to {out}")
    before = out.read_bytes()
    assert main(["simulate", "-n", "80", "-o", str(out), "--seed", "3", "--quiet"]) == 2
    assert "already exists; use --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == before
    assert (
        main(["simulate", "-n", "80", "-o", str(out), "--seed", "3", "--quiet", "--overwrite"]) == 0
    )
    assert len(read_events(out, ["event"])) == 80
    afile = tmp_path / "afile.txt"
    afile.write_text("x")
    assert main(["simulate", "-n", "5", "-o", str(afile / "x.root")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.root", "afile.txt"]


def test_simulate_absurd_size_is_refused_at_once(tmp_path, capsys):
    out = tmp_path / "big.root"
    start = time.perf_counter()
    assert main(["simulate", "-n", "1000000000000000", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "1000000000000000 jets events would take at least 100 PB" in err
    assert "free in" in err
    assert time.perf_counter() - start < 20  # not minutes of spawning seeds (was > 15 s)
    assert not list(tmp_path.iterdir())


def test_inspect_quiet_prints_the_summary_and_checks_json_first(jets_file, tmp_path, capsys):
    assert main(["inspect", str(jets_file), "--branches", "Jet_pt", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "5000 events" in out and "Jet_pt" in out
    assert main(["inspect", str(jets_file), "--json", str(jets_file), "--quiet"]) == 2
    assert "also an input of this job" in capsys.readouterr().err
    assert main(["inspect", str(jets_file), "--json", str(jets_file / "s.json")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_train_refuses_a_file_as_model_directory_before_reading(jets_file, tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(config_path("toy_jets_flow.yaml").read_text())
    start = time.perf_counter()
    assert (
        main(
            [
                "train",
                str(cfg),
                "--files",
                str(jets_file),
                "-o",
                str(jets_file),
                "--device",
                "cpu",
                "--max-epochs",
                "1",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert f"model directory '{jets_file}' is also an input of this job" in err
    assert time.perf_counter() - start < 20
    afile = tmp_path / "afile.txt"
    afile.write_text("x")
    assert main(["train", str(cfg), "--files", str(jets_file), "-o", str(afile)]) == 2
    assert "is an existing file, expected a folder" in capsys.readouterr().err


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A tiny fast simulation (1 epoch of a 2-transform flow on 3000 events, seed 11)."""
    d = tmp_path_factory.mktemp("outputs")
    return train_small_fastsim(d, 3000, 1, "--seed", "1")


def test_generate_quiet_still_warns_out_of_domain_and_prints_result(model_dir, tmp_path):
    src = tmp_path / "src.root"
    simulate_to_file(src, "jets", n_events=200, seed=5, quiet=True)
    events = read_events(src, nonfinite="keep")
    fields = {f: events[f] for f in events.fields}
    fields["GenJet_pt"] = events["GenJet_pt"] * 50.0  # far above the training domain
    far = tmp_path / "far.root"
    write_events(far, ak.zip(fields, depth_limit=1))
    out = tmp_path / "gen.root"
    result = run_cli(
        "generate", str(model_dir), str(far), "-o", str(out), "--quiet", "--device", "cpu"
    )
    assert result.returncode == 0, result.stderr
    assert "conditions outside the training domain" in result.stderr
    assert "GenJet_pt" in result.stderr
    assert result.stdout.startswith("generated ") and f"output: {out}" in result.stdout
    # a second run onto the same output needs --overwrite
    again = run_cli("generate", str(model_dir), str(far), "-o", str(out), "--quiet")
    assert again.returncode == 2
    assert again.stderr.strip() == (
        f"hepgen: error: output '{out}' already exists; use "
        "--overwrite to replace it, or choose another path"
    )


def test_crash_drill_sigkill_generate_mid_write(model_dir, tmp_path):
    """SIGKILL ``generate`` while it writes over an existing output: the target stays
    byte-identical; the next run removes the temporary file, names it, and succeeds."""
    src = tmp_path / "in.root"
    simulate_to_file(src, "jets", n_events=20_000, seed=9, quiet=True)
    out = tmp_path / "out.root"
    out.write_bytes(b"the previous output, not a ROOT file" * 100)
    before = out.read_bytes()
    command = [
        sys.executable,
        "-m",
        "hepgen",
        "generate",
        str(model_dir),
        str(src),
        "-o",
        str(out),
        "--batch-size",
        "20",
        "--device",
        "cpu",
        "--overwrite",
        "--quiet",
    ]
    proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        # wait until the temporary file exists and has received data (mid-write)
        while time.monotonic() < deadline and proc.poll() is None:
            temps = [p for p in tmp_path.iterdir() if TEMP_TAG in p.name]
            if temps and temps[0].stat().st_size > 10_000:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "generate ended before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert out.read_bytes() == before
    left = hidden_temps(tmp_path)
    assert len(left) == 1 and left[0].startswith(f".out.root.{TEMP_TAG}-")
    assert f"-{proc.pid}-" in left[0]
    # the next run cleans up after the killed one and says so (even with --quiet)
    small = tmp_path / "small.root"
    simulate_to_file(small, "jets", n_events=300, seed=2, quiet=True)
    result = run_cli(
        "generate",
        str(model_dir),
        str(small),
        "-o",
        str(out),
        "--device",
        "cpu",
        "--overwrite",
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    assert "removed 1 stale temporary file(s)" in result.stderr
    assert left[0] in result.stderr
    assert hidden_temps(tmp_path) == []
    assert len(read_events(out, ["event"])) == 300
