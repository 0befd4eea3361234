"""The settings layer: one way of checking and reporting settings, from Python and from files."""

from __future__ import annotations

import numpy as np
import pytest

from hepgen.config import parse_config
from hepgen.errors import ConfigError
from hepgen.settings import (
    EfficiencySettings,
    FlowSettings,
    GANSettings,
    ScanSettings,
    TrainingSettings,
)

ALL = [FlowSettings, GANSettings, EfficiencySettings, TrainingSettings]


@pytest.mark.parametrize("cls", ALL)
def test_defaults_round_trip_through_json_types(cls):
    s = cls()
    assert cls.from_dict(s.to_dict()) == s
    with pytest.raises(ConfigError, match="must be a mapping"):
        cls.from_dict([("a", 1)])
    with pytest.raises(ConfigError, match=f"unknown {cls.family} setting 'nope'"):
        cls(nope=1)


@pytest.mark.parametrize("cls", ALL)
def test_settings_are_frozen_and_replace_validates(cls):
    s = cls()
    field = next(iter(cls.model_fields))
    with pytest.raises(Exception, match="frozen"):
        setattr(s, field, getattr(s, field))
    with pytest.raises(ConfigError, match=f"{cls.family} setting 'nope'"):
        s.replace(nope=1)


def test_numpy_scalars_are_numbers_and_arrays_are_refused_cleanly():
    s = TrainingSettings(max_epochs=np.int64(3), learning_rate=np.float32(0.5))
    assert s.max_epochs == 3 and isinstance(s.max_epochs, int)
    assert s.learning_rate == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="training setting 'max_epochs'"):
        TrainingSettings(max_epochs=np.array([3, 4]))
    with pytest.raises(ConfigError, match="training setting 'max_epochs'"):
        TrainingSettings(max_epochs=True)  # a bool is not an integer


def test_yaml_exponents_read_as_strings_are_numbers():
    # YAML 1.1 reads 3e-4 (no dot) as the string "3e-4"
    assert TrainingSettings.from_dict({"learning_rate": "3e-4"}).learning_rate == 3e-4
    with pytest.raises(ConfigError, match="'learning_rate': Input should be a valid number"):
        TrainingSettings(learning_rate="fast")


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1"])
def test_one_device_syntax_everywhere(device):
    assert TrainingSettings(device=device).device == device
    assert EfficiencySettings(device=device).device == device
    scan = dict(resonance={"name": "m"}, features=[{"name": "x"}], start=1.0, stop=2.0)
    s = ScanSettings(**scan, width=0.2, step=0.2, sideband=0.1, device=device)
    assert s.device == device


@pytest.mark.parametrize("device", ["gpu", "cuda:", "cpu:0", "CUDA"])
def test_bad_device_names_are_refused_with_the_accepted_forms(device):
    for cls in (TrainingSettings, EfficiencySettings):
        with pytest.raises(ConfigError, match="expected 'auto', 'cpu', 'cuda' or 'cuda:N'"):
            cls(device=device)
        with pytest.raises(ConfigError, match="'device': Input should be a valid string"):
            cls(device=0)


def test_nested_settings_report_the_full_key_not_the_python_message():
    """Validating a file does not go through the settings' own __init__ (which words errors
    for Python callers): the key is located from the top of the file."""
    data = {
        "data": {"files": ["a.root"], "gen": "GenJet", "reco": "Jet"},
        "features": [
            {"name": "GenJet_pt", "role": "condition"},
            {"name": "Jet_pt", "role": "target"},
        ],
        "model": {"gan": {"adam_betas": [0.5, 1.0]}, "efficiency": {"max_depth": 0}},
    }
    with pytest.raises(ConfigError) as info:
        parse_config(data, "cfg.yaml")
    text = str(info.value)
    assert text.startswith("cfg.yaml: ")
    assert "key 'model.gan.adam_betas': must lie in [0, 1)" in text
    assert "key 'model.efficiency.max_depth': Input should be greater than or equal to 1" in text
    assert "setting" not in text


def test_gan_n_critic_follows_the_loss_unless_given():
    assert GANSettings(loss="wgan-gp").n_critic == 5
    assert GANSettings(loss="cramer").n_critic == 1
    assert GANSettings(loss="wgan-gp", n_critic=2).n_critic == 2
