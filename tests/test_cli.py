"""The command line: exit codes, one-line errors naming what is wrong, --quiet."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hepgen.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "hepgen", *args], capture_output=True, text=True, timeout=300
    )


def test_help_lists_commands():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("simulate", "inspect", "prepare", "demo"):
        assert command in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["inspect", "missing.root"], "file 'missing.root' does not exist"),
        (["prepare", "missing.yaml", "-o", "x"], "config file 'missing.yaml' does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args, message, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"hepgen: error: {message}"]


def test_debug_shows_the_traceback():
    result = run_cli("inspect", "missing.root", "--debug")
    assert result.returncode != 0
    assert "Traceback" in result.stderr


def test_bad_usage_exits_2():
    result = run_cli("simulate", "-n", "ten", "-o", "x.root")
    assert result.returncode == 2
    # one line, naming the command and the option (no usage block)
    assert result.stderr.splitlines() == [
        "hepgen: error: hepgen simulate: argument -n/--events: invalid int value: 'ten' "
        "(see 'hepgen simulate --help')"
    ]


def test_usage_errors_in_process_return_2_and_help_returns_0(capsys):
    assert main(["inspect"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "hepgen: error: hepgen inspect: the following arguments are required: files "
        "(see 'hepgen inspect --help')"
    ]
    assert main(["--version"]) == 0
    assert "hepgen" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (
            "signal_fraction=[1,",
            "argument --set: the value of 'signal_fraction': not valid YAML at line 1, column 4",
        ),
        ("signal_fraction={a: b", "argument --set: the value of 'signal_fraction': not valid YAML"),
        ("=0.1", "argument --set: expected KEY=VALUE with a key, got '=0.1'"),
        ("signal_fraction", "argument --set: expected KEY=VALUE, got 'signal_fraction'"),
    ],
)
def test_set_values_that_are_not_yaml_are_one_line_errors(value, named, tmp_path, capsys):
    out = tmp_path / "x.root"
    assert main(["simulate", "-n", "10", "-o", str(out), "--process", "dijet", "--set", value]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("hepgen: error: hepgen simulate: ")
    assert named in err[0]
    assert not out.exists()


def test_set_values_are_parsed_as_yaml():
    from hepgen.cli.parser import _key_value

    assert _key_value("signal_fraction=0.01") == ("signal_fraction", 0.01)
    assert _key_value(" mx = [3.5, 4]") == ("mx", [3.5, 4])
    assert _key_value("label=a=b") == ("label", "a=b")


def test_inspect_missing_tree_and_branch(jets_file, capsys):
    assert main(["inspect", str(jets_file), "--tree", "Event"]) == 2
    assert "did you mean 'Events'" in capsys.readouterr().err
    assert main(["inspect", str(jets_file), "--branches", "Jet_ptt"]) == 2
    assert "did you mean 'Jet_pt'" in capsys.readouterr().err


def test_inspect_summarises_and_writes_json(jets_file, tmp_path, capsys):
    out = tmp_path / "summary.json"
    assert (
        main(["inspect", str(jets_file), "--branches", "Jet_pt", "nJet", "--json", str(out)]) == 0
    )
    text = capsys.readouterr().out
    assert "5000 events" in text and "Jet_pt" in text
    summary = json.loads(out.read_text())
    assert summary["n_events"] == 5000
    stats = summary["branches"]["Jet_pt"]
    assert stats["min"] >= 15.0  # NanoAOD-like reco threshold
    assert (
        stats["count"] == summary["branches"]["nJet"]["count"] * summary["branches"]["nJet"]["mean"]
    )


def test_simulate_quiet_prints_only_its_result_and_is_deterministic(tmp_path):
    a, b = tmp_path / "a.root", tmp_path / "b.root"
    for path in (a, b):
        result = run_cli("simulate", "-n", "300", "-o", str(path), "--seed", "5", "--quiet")
        assert result.returncode == 0, result.stderr
        # --quiet silences the progress bar only: the one-line result is output
        assert result.stdout.startswith(f"wrote 300 jets events to {path} in ")
        assert result.stdout.count("\n") == 1 and result.stderr == ""
    import uproot

    ta, tb = (
        uproot.open(a)["Events"].arrays(library="np"),
        uproot.open(b)["Events"].arrays(library="np"),
    )
    assert all(
        (ta[k] == tb[k]).all()
        if ta[k].dtype != object
        else all((x == y).all() for x, y in zip(ta[k], tb[k], strict=True))
        for k in ta
    )


def test_simulate_unknown_option_is_an_error(tmp_path, capsys):
    assert (
        main(
            [
                "simulate",
                "-n",
                "10",
                "-o",
                str(tmp_path / "x.root"),
                "--set",
                "signl_fraction=0.1",
                "--process",
                "dijet",
            ]
        )
        == 2
    )
    assert "signl_fraction" in capsys.readouterr().err
    assert not (tmp_path / "x.root").exists()


def test_a_closed_pipe_is_no_traceback(nanoaod_file):
    # `hepgen inspect FILE | head -2` where head has gone: the reader end of stdout is closed
    # before hepgen writes, so its first print meets EPIPE
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        writer = subprocess.run(
            [sys.executable, "-m", "hepgen", "inspect", str(nanoaod_file), "--quiet"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
        )
    finally:
        os.close(write_end)
    assert "Traceback" not in writer.stderr, writer.stderr
    assert "BrokenPipe" not in writer.stderr, writer.stderr
    assert writer.returncode == 1


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--set", "training.max_epoch=1"], "unknown key 'training.max_epoch' (did you mean"),
        (["--set", "model.flow.n_bins=0"], "key 'model.flow.n_bins': Input should be greater"),
        (["--set", "data.tree.name=x"], "--set data.tree.name: 'data.tree'"),
        (["--max-epochs", "0"], "--max-epochs must be positive"),
        (["--device", "gpu"], "expected 'auto', 'cpu', 'cuda' or 'cuda:N'"),
    ],
)
def test_train_overrides_are_checked_like_the_file(args, named, tmp_path, capsys):
    from hepgen.resources import config_path

    config = str(config_path("toy_jets_flow.yaml"))
    assert main(["train", config, "-o", str(tmp_path / "m"), *args]) == 2
    err = capsys.readouterr().err
    assert named in err and err.count("\n") == 1, err
    assert not (tmp_path / "m").exists()


def test_scan_overrides_and_cuda_n_devices(tmp_path, capsys):
    import torch

    from hepgen.resources import config_path

    config = str(config_path("toy_anomaly_scan.yaml"))
    out = str(tmp_path / "r")
    assert main(["scan", config, "-o", out, "--set", "scan.step=-1"]) == 2
    assert "key 'scan.step': Input should be greater than 0" in capsys.readouterr().err
    if not torch.cuda.is_available():  # cuda:1 is a device name everywhere; absent here
        assert main(["scan", config, "-o", out, "--device", "cuda:1"]) == 2
        assert "torch sees no CUDA device" in capsys.readouterr().err
