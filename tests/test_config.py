"""YAML configs: strict validation with errors that name the file and the key."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from hepgen.config import load_config, parse_config
from hepgen.errors import ConfigError
from hepgen.resources import config_path, list_configs

GOOD = textwrap.dedent(
    """
    data:
      files: [sim.root]
      gen: GenJet
      reco: Jet
      matching: {method: index}
    features:
      - {name: GenJet_pt, role: condition, kind: positive}
      - {name: GenJet_hadronFlavour, role: condition, kind: categorical}
      - {name: Jet_pt, role: target, kind: positive, relative_to: GenJet_pt}
      - {name: Jet_btagDeepFlavB, role: target, kind: bounded, bounds: [0, 1]}
    """
)


def write(tmp_path, text, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_config_loads_with_defaults_and_relative_paths(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    assert config.data.tree == "Events"
    assert config.data.step_size == 100_000
    assert config.data.index_branch == "Jet_genJetIdx"
    assert config.input_files() == [str(tmp_path / "sim.root")]
    schema = config.schema
    assert [f.name for f in schema.conditions] == ["GenJet_pt", "GenJet_hadronFlavour"]
    assert [f.name for f in schema.targets] == ["Jet_pt", "Jet_btagDeepFlavB"]
    assert schema["Jet_btagDeepFlavB"].bounds == (0, 1)


def test_index_branch_default_follows_nanoaod_naming():
    config = parse_config(
        {"data": {"gen": "GenPart", "reco": "Muon"},
         "features": [{"name": "GenPart_pt", "role": "condition"},
                      {"name": "Muon_pt", "role": "target"}]}
    )
    assert config.data.index_branch == "Muon_genPartIdx"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("matching: {method: index}", "matchng: {method: index}"),
         r"cfg.yaml: unknown key 'data.matchng' \(did you mean 'matching'\?\)"),
        (("  gen: GenJet\n", ""), r"cfg.yaml: missing required key 'data.gen'"),
        (("kind: positive, relative_to", "kind: postive, relative_to"),
         r"key 'features\[2\].kind'.*'postive'"),
        (("files: [sim.root]", "files: [sim.root]\n  step_size: '1000'"),
         r"key 'data.step_size'.*integer.*'1000'"),
        (("bounds: [0, 1]", "bounds: [0, 1, 2]"), r"key 'features\[3\].bounds'.*two numbers"),
        (("method: index", "method: dR"), r"key 'data.matching.method'.*'index' or 'deltar'"),
        (("features:", "extra_section: 1\nfeatures:"), r"unknown key 'extra_section'"),
        (("{name: Jet_pt, role: target", "{name: Muon_pt, role: target"),
         r"'Muon_pt' is a target and should belong to collection 'Jet'"),
    ],
)
def test_bad_configs_name_file_and_key(tmp_path, edit, message):
    text = GOOD.replace(*edit)
    assert text != GOOD
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_schema_errors_name_the_feature(tmp_path):
    text = GOOD.replace("relative_to: GenJet_pt", "relative_to: GenJet_eta")
    with pytest.raises(ConfigError, match=r"cfg.yaml: .*Jet_pt.*GenJet_eta"):
        load_config(write(tmp_path, text))


def test_yaml_syntax_empty_and_missing_files(tmp_path):
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+"):
        load_config(write(tmp_path, "data: [unclosed\n"))
    with pytest.raises(ConfigError, match="the file is empty"):
        load_config(write(tmp_path, ""))
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_shipped_configs_validate():
    from hepgen.anomaly.config import load_scan_config

    assert "toy_jets.yaml" in list_configs()
    for name in list_configs():
        if "scan" in yaml.safe_load(config_path(name).read_text()):
            assert load_scan_config(config_path(name)).features  # a resonance-scan config
            continue
        config = load_config(config_path(name))
        assert len(config.schema) > 0


MODEL = GOOD + textwrap.dedent(
    """
    model:
      kind: flow
      flow: {kind: autoregressive, n_transforms: 3, hidden_features: 32}
      efficiency: {max_depth: 4}
    training:
      max_epochs: 7
      learning_rate: 3e-4
      validation_fraction: 0.25
      selection: loss
    """
)


def test_model_and_training_sections(tmp_path):
    config = load_config(write(tmp_path, MODEL))
    flow = config.model.flow_settings()
    assert (flow.kind, flow.n_transforms, flow.hidden_features) == ("autoregressive", 3, 32)
    settings = config.training.settings()
    assert settings.max_epochs == 7 and settings.learning_rate == pytest.approx(3e-4)
    assert config.training.validation_fraction == 0.25 and config.training.selection == "loss"
    defaults = load_config(write(tmp_path, GOOD, "plain.yaml"))
    assert defaults.model.kind == "flow" and defaults.training.settings().max_epochs == 100


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("max_epochs: 7", "max_epoch: 7"),
         r"cfg.yaml: key 'training': unknown training setting\(s\) 'max_epoch' "
         r"\(did you mean 'max_epochs'\?\)"),
        (("n_transforms: 3", "n_transform: 3"), r"key 'model': flow: .*'n_transform'"),
        (("max_depth: 4", "max_dept: 4"),
         r"key 'model': unknown efficiency setting\(s\) 'max_dept' \(did you mean 'max_depth'"),
        (("kind: flow", "kind: gann"), r"key 'model.kind'"),
        (("selection: loss", "selection: auc"), r"key 'training.selection'"),
    ],
)
def test_bad_model_and_training_keys(tmp_path, edit, message):
    text = MODEL.replace(*edit)
    assert text != MODEL
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))
