"""The sampling trade-off of the validation report: PRDC of a fast simulation's samples per
truncation threshold psi or temperature T (hepgen.validation.tradeoff, ``hepgen validate
--tradeoff``).

Small fast simulations are trained for real (a flow: 3000 events, 3 epochs; a GAN: 3000
events, 8 epochs; fixed epochs, no time limit) and sampled at the conditions of a reference
file of 2000 events (about 4600 matched jets: two halves of about 2300).  Strong truncation or
low temperature must lower recall and coverage clearly while precision does not drop.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import train_small_fastsim

from hepgen.cli import main
from hepgen.config import load_config
from hepgen.errors import InputError
from hepgen.fastsim import FastSim
from hepgen.resources import config_path
from hepgen.sim import simulate_to_file
from hepgen.validation import sampling_tradeoff, validate_files
from hepgen.validation.inputs import load_config_pairs
from hepgen.validation.tradeoff import default_tradeoff, parse_tradeoff_values

KEYS = {
    "knob",
    "values",
    "as_trained",
    "precision",
    "recall",
    "density",
    "coverage",
    "baseline",
    "n_events",
    "k",
    "seed",
    "kind",
    "features",
    "notes",
}


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A small flow fast simulation, its config, its training file and a reference file."""
    d = tmp_path_factory.mktemp("tradeoff_flow")
    model = train_small_fastsim(d, 3000, 3, "--seed", "1")
    simulate_to_file(d / "ref.root", "jets", n_events=2000, seed=5, quiet=True)
    return {"dir": d, "model": model, "config": d / "cfg.yaml", "ref": d / "ref.root"}


@pytest.fixture(scope="module")
def flow_reference(flow):
    """The reference's matched pairs (conditions, targets, responses) and the fitted flow."""
    group, _ = load_config_pairs(load_config(flow["config"]), flow["ref"], flow["ref"])
    return FastSim.load(flow["model"]), group.reference


def test_low_temperature_trades_recall_for_precision(flow_reference):
    sim, reference = flow_reference
    found = sampling_tradeoff(sim, reference, "temperature", [0.3, 1.0], seed=0)
    low, trained = 0, found.as_trained
    assert found.knob == "temperature" and trained == 1
    # measured (2304 rows per half): T=0.3 precision 0.957 recall 0.458 coverage 0.591;
    # T=1 precision 0.862 recall 0.958 coverage 0.821; baseline 0.983 / 0.980 / 0.972
    assert found.recall[low] < found.recall[trained] - 0.25  # drop 0.50
    assert found.coverage[low] < found.coverage[trained] - 0.1  # drop 0.23
    assert found.precision[low] > found.precision[trained]  # rises by 0.095
    assert found.density[low] > found.density[trained]  # 1.00 vs 0.67
    # the baseline is a perfect model at this size: coverage near 1 - 2^-5 = 0.969
    assert found.baseline["coverage"] > 0.93 and found.baseline["recall"] > 0.93
    assert found.n_reference == found.n_candidate > 2000


def test_strong_truncation_trades_recall_for_precision_and_is_deterministic(flow_reference):
    sim, reference = flow_reference
    found = sampling_tradeoff(sim, reference, "truncation", [0.3, None], seed=3)
    # measured (seed 0): psi=0.3 precision 0.961 recall 0.217 coverage 0.471;
    # untruncated 0.862 / 0.958 / 0.821
    assert found.as_trained == 1
    assert found.recall[0] < found.recall[1] - 0.4  # drop 0.74
    assert found.coverage[0] < found.coverage[1] - 0.15  # drop 0.35
    assert found.precision[0] > found.precision[1]  # rises by 0.10
    out = found.to_dict()
    assert set(out) == KEYS
    assert out["values"] == [0.3, None] and out["seed"] == 3 and out["kind"] == "flow"
    assert set(out["baseline"]) == {"precision", "recall", "density", "coverage"}
    assert out["features"] == sim.condition_names + sim.target_names
    json.dumps(out, allow_nan=False)  # plain JSON
    again = sampling_tradeoff(sim, reference, "truncation", [0.3, None], seed=3).to_dict()
    assert again == out


def test_gan_defaults_to_the_truncation_trick(tmp_path):
    raw = yaml.safe_load(config_path("toy_jets_gan.yaml").read_text())
    raw["model"]["gan"].update(
        latent_dim=8, hidden_features=32, critic_hidden_features=32, n_blocks=1, critic_blocks=1
    )
    raw["model"]["fakes"] = False
    raw["training"].update(time_limit=None, max_epochs=8, batch_size=512)
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    simulate_to_file(tmp_path / "train.root", "jets", n_events=3000, seed=11, quiet=True)
    simulate_to_file(tmp_path / "ref.root", "jets", n_events=2000, seed=5, quiet=True)
    config = load_config(tmp_path / "cfg.yaml")
    sim = FastSim(config, device="cpu").fit(
        files=[str(tmp_path / "train.root")], output=tmp_path / "model", quiet=True
    )
    group, _ = load_config_pairs(config, tmp_path / "ref.root", tmp_path / "ref.root")
    found = sampling_tradeoff(sim, group.reference, values=[0.3, 1.0, None])
    assert found.knob == "truncation" and found.as_trained == 2
    # measured: psi 0.3 / 1 / none: precision 0.970 0.970 0.966, recall 0.155 0.229 0.399,
    # coverage 0.428 0.493 0.588 (a GAN of 8 epochs: recall well below the baseline 0.98)
    assert found.recall[0] < found.recall[2] - 0.12  # drop 0.24
    assert found.recall[0] < found.recall[1] < found.recall[2]
    assert found.coverage[0] < found.coverage[2] - 0.08  # drop 0.16
    assert found.precision[0] > found.precision[2] - 0.02  # no drop (+0.004)


def test_default_knobs_and_bad_values():
    assert default_tradeoff("gan") == ("truncation", [0.5, 1.0, 1.5, 2.0, None])
    assert default_tradeoff("vae") == ("temperature", [0.6, 0.8, 1.0, 1.2])
    assert default_tradeoff("flow", "truncation")[1][-1] is None
    assert parse_tradeoff_values("0.5,1, NONE") == [0.5, 1.0, None]
    for text in ("0.5,abc", "-1", "0", "1,,2", "inf"):
        with pytest.raises(InputError, match="--tradeoff-values"):
            parse_tradeoff_values(text)
    with pytest.raises(InputError, match="given twice"):
        default_tradeoff("flow", "temperature", [1.0, None])
    with pytest.raises(InputError, match="knob"):
        default_tradeoff("flow", "psi")


def test_reference_without_a_target_is_refused(flow_reference):
    sim, reference = flow_reference
    columns = {n: reference.column(n) for n in reference.names if n != "Jet_mass"}
    with pytest.raises(InputError, match=r"no column\(s\) \['Jet_mass'\]"):
        sampling_tradeoff(sim, columns)


def test_validate_report_has_the_tradeoff_section(flow, tmp_path, capsys):
    out = tmp_path / "report"
    code = main(
        [
            "validate",
            str(flow["ref"]),
            str(flow["dir"] / "train.root"),
            "-o",
            str(out),
            "--config",
            str(flow["config"]),
            "--tradeoff",
            str(flow["model"]),
            "--tradeoff-knob",
            "truncation",
            "--tradeoff-values",
            "0.3,1,none",
            "--metrics",
            "ks",
            "prdc",
            "--max-plots",
            "1",
            "--quiet",
        ]
    )
    assert code == 0
    assert "sampling trade-off (truncation 0.3, 1, none)" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    t = metrics["tradeoff"]
    assert set(t) == KEYS and t["values"] == [0.3, 1.0, None] and t["as_trained"] == 2
    assert t["recall"][0] < t["recall"][2] - 0.4  # as measured above, same rows
    assert metrics["timings"]["tradeoff"] > 0
    page = (out / "report.html").read_text()
    assert "<h2 id='tradeoff'>Sampling trade-off</h2>" in page and "(as trained)" in page
    assert (out / "plots" / "tradeoff.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--tradeoff", "MODEL"], "--tradeoff needs --config"),
        (["--config", "CFG", "--tradeoff", "MODEL", "--tradeoff-values", "0.5,x"], "'x'"),
        (["--config", "CFG", "--tradeoff", "MODEL", "--tradeoff-values", "-1"], "'-1'"),
        (["--config", "CFG", "--tradeoff-values", "1"], "need --tradeoff MODEL_DIR"),
        (["--config", "CFG", "--tradeoff", "MODEL", "--tradeoff-knob", "psi"], "invalid choice"),
    ],
)
def test_cli_refuses_bad_tradeoff_options(flow, tmp_path, capsys, extra, message):
    names = {"MODEL": str(flow["model"]), "CFG": str(flow["config"])}
    args = ["validate", str(flow["ref"]), str(flow["ref"]), "-o", str(tmp_path / "r")]
    assert main(args + [names.get(a, a) for a in extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "r").exists()


def test_model_of_other_features_is_refused_before_reading(flow, tmp_path):
    text = flow["config"].read_text()
    lines = [line for line in text.splitlines() if "name: GenJet_mass" not in line]
    assert len(lines) == text.count("\n") - 1
    (tmp_path / "other.yaml").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"conditions .*\(only the model has \['GenJet_mass'\]\)"):
        validate_files(
            tmp_path / "missing.root",  # never read: the check comes first
            tmp_path / "missing.root",
            tmp_path / "r",
            config=load_config(tmp_path / "other.yaml"),
            tradeoff=flow["model"],
        )
