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
        {
            "data": {"gen": "GenPart", "reco": "Muon"},
            "features": [
                {"name": "GenPart_pt", "role": "condition"},
                {"name": "Muon_pt", "role": "target"},
            ],
        }
    )
    assert config.data.index_branch == "Muon_genPartIdx"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("matching: {method: index}", "matchng: {method: index}"),
            r"cfg.yaml: unknown key 'data.matchng' \(did you mean 'matching'\?\)",
        ),
        (("  gen: GenJet\n", ""), r"cfg.yaml: missing required key 'data.gen'"),
        (
            ("kind: positive, relative_to", "kind: postive, relative_to"),
            r"key 'features\[2\].kind'.*'postive'",
        ),
        (
            ("files: [sim.root]", "files: [sim.root]\n  step_size: '1000'"),
            r"key 'data.step_size'.*integer.*'1000'",
        ),
        (("bounds: [0, 1]", "bounds: [0, 1, 2]"), r"key 'features\[3\].bounds'.*two numbers"),
        (("method: index", "method: dR"), r"key 'data.matching.method'.*'index' or 'deltar'"),
        (("features:", "extra_section: 1\nfeatures:"), r"unknown key 'extra_section'"),
        (
            ("{name: Jet_pt, role: target", "{name: Muon_pt, role: target"),
            r"'Muon_pt' is a target and should belong to collection 'Jet'",
        ),
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
    flow = config.model.flow
    assert (flow.kind, flow.n_transforms, flow.hidden_features) == ("autoregressive", 3, 32)
    settings = config.training.settings()
    assert settings.max_epochs == 7 and settings.learning_rate == pytest.approx(3e-4)
    assert config.training.validation_fraction == 0.25 and config.training.selection == "loss"
    defaults = load_config(write(tmp_path, GOOD, "plain.yaml"))
    # left out: chosen from the number of training rows when training starts
    assert defaults.model.kind == "flow" and defaults.training.settings().max_epochs is None


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("max_epochs: 7", "max_epoch: 7"),
            r"cfg.yaml: unknown key 'training.max_epoch' \(did you mean 'max_epochs'",
        ),
        (
            ("n_transforms: 3", "n_transform: 3"),
            r"unknown key 'model.flow.n_transform' \(did you mean 'n_transforms'",
        ),
        (
            ("max_depth: 4", "max_dept: 4"),
            r"unknown key 'model.efficiency.max_dept' \(did you mean 'max_depth'",
        ),
        (
            ("max_depth: 4", "max_depth: 0"),
            r"key 'model.efficiency.max_depth': Input should be greater than or equal to 1, got 0",
        ),
        (
            ("max_depth: 4", "learning_rate: .nan"),
            r"key 'model.efficiency.learning_rate': Input should be a finite number",
        ),
        (
            ("max_depth: 4", "device: gpu"),
            r"key 'model.efficiency.device': expected 'auto', 'cpu', 'cuda' or 'cuda:N', got 'gpu'",
        ),
        (("max_depth: 4", "n_estimators: true"), r"key 'model.efficiency.n_estimators'"),
        (("kind: flow", "kind: gann"), r"key 'model.kind'"),
        (("selection: loss", "selection: auc"), r"key 'training.selection'"),
    ],
)
def test_bad_model_and_training_keys(tmp_path, edit, message):
    text = MODEL.replace(*edit)
    assert text != MODEL
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_efficiency_section_knows_every_efficiency_model_setting():
    from hepgen.models.efficiency import EfficiencyModel
    from hepgen.settings import EfficiencySettings

    assert set(EfficiencySettings.model_fields) == set(EfficiencyModel().get_params())
    defaults = EfficiencySettings().model_dump()
    assert defaults == EfficiencyModel().get_params()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("  gen: GenJet", "  tree: ''\n  gen: GenJet"),
            r"key 'data.tree': String should have at least 1 character",
        ),
        (("reco: Jet", "reco: ''"), r"key 'data.reco'"),
    ],
)
def test_empty_names_are_refused(tmp_path, edit, message):
    text = GOOD.replace(*edit)
    assert text != GOOD
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_a_config_without_targets_is_refused_on_load(tmp_path):
    lines = [line for line in GOOD.splitlines() if "role: target" not in line]
    with pytest.raises(
        ConfigError, match=r"cfg.yaml: key 'features': no feature has role 'target'"
    ):
        load_config(write(tmp_path, "\n".join(lines)))


def test_unreadable_config_files_name_the_file_and_what_was_expected(tmp_path):
    (tmp_path / "adir").mkdir()
    with pytest.raises(ConfigError, match=r"config file '.*adir' is a directory"):
        load_config(tmp_path / "adir")
    root = tmp_path / "data.root"
    root.write_bytes(b"root\x00\x00\xf3\x01binary")
    with pytest.raises(
        ConfigError, match=r"config file '.*data.root' is a ROOT file; expected a YAML"
    ):
        load_config(root)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(GOOD.replace("reco: Jet", "reco: J\xe9t").encode("latin-1"))
    line = GOOD.splitlines().index("  reco: Jet") + 1
    with pytest.raises(ConfigError, match=rf"byte 0xe9 at line {line}, column 10 is not UTF-8"):
        load_config(latin)
    broken = tmp_path / "broken.yaml"
    broken.write_text("data: {files: [a.root\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: not valid YAML at line \d+") as info:
        load_config(broken)
    assert "\n" not in str(info.value)


# ---- the scan config (hepgen scan): every section typed and checked on load -------------------

SCAN = yaml.safe_load(config_path("toy_anomaly_scan.yaml").read_text())


def _scan_with(path: tuple, value):
    import copy

    data = copy.deepcopy(SCAN)
    parent = data
    for key in path[:-1]:
        parent = parent[key]
    if value is _DROP:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return data


_DROP = object()


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("scan", "start"), float("nan"), r"key 'scan.start': Input should be a finite number"),
        (("scan", "stop"), float("-inf"), r"key 'scan.stop': Input should be a finite number"),
        (("scan", "start"), 4.7, r"key 'scan': 'start' \(4.7\) must be below 'stop' \(4.7\)"),
        (("scan", "step"), 1e-6, r"make 1.8e\+06 windows; at most 1000"),
        (("scan", "efficiencies"), [0.1, 1.5], r"key 'scan.efficiencies\[1\]'"),
        (("scan", "closure_margin"), -0.1, r"key 'scan.closure_margin'"),
        (
            ("scan", "classifier", "max_depth"),
            0,
            r"key 'scan.classifier.max_depth': Input should "
            r"be greater than or equal to 1",
        ),
        (("scan", "classifier", "learning_rate"), "fast", r"key 'scan.classifier.learning_rate'"),
        (
            ("scan", "classifier", "max_dept"),
            3,
            r"unknown key 'scan.classifier.max_dept' \(did "
            r"you mean 'max_depth'",
        ),
        (("resonance", "name"), _DROP, r"missing required key 'resonance.name'"),
        (("resonance", "kind"), "banana", r"key 'resonance.kind': Input should be 'continuous'"),
        (("resonance", "nmae"), "mjj", r"unknown key 'resonance.nmae' \(did you mean 'name'"),
        (("features", 0, "name"), 5, r"key 'features\[0\].name': Input should be a valid string"),
        (("features", 0, "name"), "", r"key 'features\[0\].name': String should have at least 1"),
        (("features", 2, "bounds"), [0.0, float("nan")], r"key 'features\[2\].bounds\[1\]'"),
        (
            ("features", 0, "role"),
            "condition",
            r"key 'features\[0\].role': a scan's features "
            r"has role 'target'",
        ),
        (("features", 1, "name"), "mj2", r"key 'features': feature 'mj2': duplicate name"),
        (("features",), [], r"key 'features': List should have at least 1 item"),
        (
            ("flow", "n_transfroms"),
            4,
            r"unknown key 'flow.n_transfroms' \(did you mean 'n_transforms'",
        ),
        (
            ("flow", "hidden_features"),
            -1,
            r"key 'flow.hidden_features': Input should be greater than or equal to 1",
        ),
        (
            ("training", "batch_size"),
            0,
            r"key 'training.batch_size': Input should be greater than or equal to 1",
        ),
        (
            ("training", "max_epoch"),
            3,
            r"unknown key 'training.max_epoch' \(did you mean 'max_epochs'",
        ),
        (("data", "tree"), "", r"key 'data.tree': String should have at least 1 character"),
        (("data", "simulate", "mx"), float("inf"), r"key 'data.simulate.mx'"),
        (("label",), "", r"key 'label': String should have at least 1 character"),
        (("seed",), -1, r"key 'seed': Input should be greater than or equal to 0"),
    ],
)
def test_scan_config_sections_are_typed(path, value, message):
    from hepgen.anomaly.config import parse_scan_config

    with pytest.raises(ConfigError, match=message) as info:
        parse_scan_config(_scan_with(path, value), "scan.yaml")
    assert str(info.value).startswith("scan.yaml: ")
    assert "\n" not in str(info.value)


def test_scan_config_passes_the_given_feature_keys_on():
    from hepgen.anomaly.config import parse_scan_config

    settings = parse_scan_config(SCAN, "scan.yaml").settings()
    assert settings.resonance == {"name": "mjj", "kind": "positive", "role": "condition"}
    assert settings.features[2] == {
        "name": "tau21_j1",
        "kind": "bounded",
        "bounds": [-0.1, 1.1],
        "role": "target",
    }
    assert len(settings.windows()) == 10


def test_every_model_kind_has_settings_a_config_section_and_a_class():
    """A new kind is added in three places (docs/architecture.md): they must agree."""
    from typing import get_args

    from hepgen.config import ModelConfig
    from hepgen.models.registry import MODEL_CLASSES
    from hepgen.settings import GENERATOR_SETTINGS

    kinds = set(get_args(ModelConfig.model_fields["kind"].annotation))
    assert kinds == set(GENERATOR_SETTINGS) == set(MODEL_CLASSES)
    for kind, settings in GENERATOR_SETTINGS.items():
        assert ModelConfig.model_fields[kind].annotation is settings
        assert MODEL_CLASSES[kind].kind == kind
