"""Files and the wrapper protocol of every generator kind, one test per property, parametrised
over the kinds (as zuko's tests are over flows): save -> load keeps what was saved, and every
corrupt, truncated or mismatched file is an InputError that names the file or the tensor.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from hepgen.errors import InputError
from hepgen.models import model_class
from hepgen.models.base import GenerativeModel, NoLikelihoodError, TorchModel
from hepgen.models.flow import ConditionalFlow, FlowSettings, load_flow, save_flow
from hepgen.models.flow_model import FlowModel
from hepgen.models.gan import ConditionalGAN, GANModel, GANSettings, load_gan, save_gan
from hepgen.models.registry import KINDS, MODEL_CLASSES
from hepgen.training import TrainingSettings


@dataclass(frozen=True)
class Kind:
    """What differs between the kinds in these tests."""

    name: str
    model: type[TorchModel]
    settings: Any  # small settings, hidden width 16
    module: type[torch.nn.Module]
    save: Any
    load: Any
    #: (settings change, regex of the error): a wrong shape, a missing and an unexpected tensor
    mismatches: tuple[tuple[dict[str, Any], str], ...]


FLOW = Kind(
    "flow",
    FlowModel,
    FlowSettings(n_transforms=3, hidden_features=16, n_bins=8),
    ConditionalFlow,
    save_flow,
    load_flow,
    (
        ({"hidden_features": 32}, r"tensor 'flow\._transform\..*' has shape"),
        ({"n_transforms": 4}, r"missing tensor\(s\) flow\._transform"),
        ({"n_transforms": 2}, r"unexpected tensor\(s\) flow\._transform"),
    ),
)
GAN = Kind(
    "gan",
    GANModel,
    GANSettings(
        hidden_features=16, critic_hidden_features=16, n_blocks=1, critic_blocks=1, latent_dim=4
    ),
    ConditionalGAN,
    save_gan,
    load_gan,
    (
        ({"hidden_features": 32}, r"tensor 'generator\.mlp\.inp\.weight' has shape"),
        ({"n_blocks": 2}, r"missing tensor\(s\) generator\.mlp\.blocks\.1"),
        ({"ema": None}, r"unexpected tensor\(s\) generator_ema\."),
    ),
)
ALL = [pytest.param(FLOW, id="flow"), pytest.param(GAN, id="gan")]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks: one torch thread (the box is shared)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def toy(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(n, 2)).astype(np.float32)
    x = (c @ np.array([[0.8, -0.5], [0.3, 0.6]]) + 0.5 * rng.normal(size=(n, 2))).astype(np.float32)
    return x, c


def fitted(kind: Kind, seed: int = 7, device: str = "cpu") -> TorchModel:
    x, c = toy(600, seed=0)
    model = kind.model(kind.settings, seed=seed, device=device)
    training = TrainingSettings(max_epochs=1, batch_size=200, seed=seed, device="cpu")
    model.fit(x, c, training=training, quiet=True)
    return model


# --------------------------------------------------------------------------------------------
# the registry and the wrapper protocol
# --------------------------------------------------------------------------------------------


def test_registry_maps_every_kind_to_its_class():
    assert KINDS == ("flow", "gan", "vae")
    assert model_class("flow") is FlowModel and model_class("gan") is GANModel
    assert model_class("vae").__name__ == "VAEModel"
    for kind, cls in MODEL_CLASSES.items():
        assert cls.kind == kind and issubclass(cls, GenerativeModel)
    assert FlowModel.has_likelihood and not GANModel.has_likelihood
    with pytest.raises(
        InputError, match=r"unknown model kind 'flows'; expected 'flow', 'gan' or 'vae'"
    ):
        model_class("flows")
    with pytest.raises(InputError, match=r"did you mean 'gan'\?"):
        model_class("GAN")
    with pytest.raises(InputError, match="unknown model kind None"):
        model_class(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ALL)
def test_save_load_keeps_seed_device_request_and_settings(kind: Kind, tmp_path: Path):
    model = fitted(kind, seed=7)
    files = model.save(tmp_path)
    assert [p.name for p in files] == [f"{kind.name}.safetensors", f"{kind.name}.json"]
    for device in ("cpu", "auto"):
        loaded = kind.model.load(tmp_path, device=device)
        assert type(loaded) is kind.model
        assert loaded.seed == 7  # the flow used to come back with seed 0
        assert loaded.device == device  # the request, not what it resolved to
        assert loaded.settings == model.settings
        assert (loaded.n_features_, loaded.n_conditions_) == (2, 2)
        assert loaded.describe() == model.describe()
    c = toy(50, seed=1)[1]
    assert np.array_equal(loaded.sample(c, seed=3), model.sample(c, seed=3))
    assert not loaded.module_.training
    model.save(tmp_path, name="fakes")  # another stem in the same folder
    again = kind.model.load(tmp_path, name="fakes")
    assert again.seed == 7 and np.array_equal(again.sample(c, seed=3), model.sample(c, seed=3))


@pytest.mark.parametrize("kind", ALL)
def test_unfitted_model_and_likelihood(kind: Kind, tmp_path: Path):
    model = kind.model(kind.settings)
    for call in (
        lambda: model.sample(np.zeros((2, 2), np.float32)),
        model.describe,
        lambda: model.save(tmp_path),
    ):
        with pytest.raises(RuntimeError, match=f"{kind.model.__name__}: call fit"):
            call()
    if not kind.model.has_likelihood:
        with pytest.raises(NoLikelihoodError, match=f"'{kind.name}' model has no tractable"):
            model.log_prob(np.zeros((2, 2), np.float32), np.zeros((2, 2), np.float32))


@pytest.mark.parametrize("kind", ALL)
def test_settings_of_another_kind_are_refused(kind: Kind):
    other = GAN if kind is FLOW else FLOW
    x, c = toy(100, seed=0)
    with pytest.raises(TypeError, match=f"settings must be a {type(kind.settings).__name__}"):
        kind.model(other.settings).fit(x, c, quiet=True)


# --------------------------------------------------------------------------------------------
# corrupt files
# --------------------------------------------------------------------------------------------


@pytest.fixture
def saved(request, tmp_path: Path) -> tuple[Kind, Path]:
    kind = request.param
    kind.save(kind.module(2, 3, kind.settings, seed=1), tmp_path)
    return kind, tmp_path


@pytest.mark.parametrize("saved", ALL, indirect=True)
def test_load_missing_files(saved: tuple[Kind, Path], tmp_path: Path):
    kind, folder = saved
    with pytest.raises(InputError, match=f"{kind.name} metadata not found"):
        kind.load(tmp_path / "nowhere")
    (folder / f"{kind.name}.safetensors").unlink()
    with pytest.raises(InputError, match=rf"{kind.name} weights not found: .*\.safetensors"):
        kind.load(folder)


@pytest.mark.parametrize("saved", ALL, indirect=True)
def test_load_truncated_weights(saved: tuple[Kind, Path]):
    kind, folder = saved
    weights = folder / f"{kind.name}.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(InputError, match=rf"{kind.name}\.safetensors do not match the checksum"):
        kind.load(folder)
    # without the recorded checksum the safetensors parser itself catches it
    meta_path = folder / f"{kind.name}.json"
    meta = json.loads(meta_path.read_text())
    del meta["weights_sha256"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(InputError, match=rf"cannot read {kind.name} weights .*: corrupt"):
        kind.load(folder)


@pytest.mark.parametrize("saved", ALL, indirect=True)
def test_load_other_format_version_and_bad_json(saved: tuple[Kind, Path]):
    kind, folder = saved
    meta_path = folder / f"{kind.name}.json"
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "format_version": 2}))
    with pytest.raises(InputError, match=r"format_version 2.*reads format_version 1"):
        kind.load(folder)
    other = "hepgen-gan" if kind is FLOW else "hepgen-flow"
    meta_path.write_text(json.dumps({**meta, "format": other}))
    with pytest.raises(InputError, match=f"not a hepgen {kind.name} file"):
        kind.load(folder)
    meta_path.write_text(json.dumps({**meta, "settings": {**meta["settings"], "n_layer": 3}}))
    with pytest.raises(InputError, match=rf"{kind.name}\.json.*'n_layer'"):
        kind.load(folder)
    meta_path.write_text(json.dumps({**meta, "n_features": 0}))
    with pytest.raises(InputError, match="'n_features' must be a positive integer"):
        kind.load(folder)
    meta_path.write_text(json.dumps({**meta, "seed": "7"}))
    with pytest.raises(InputError, match="'seed' must be an integer"):
        kind.load(folder)
    meta_path.write_text(meta_path.read_text()[:40])
    with pytest.raises(InputError, match="not valid JSON"):
        kind.load(folder)


@pytest.mark.parametrize("saved", ALL, indirect=True)
def test_load_architecture_mismatch_names_the_tensor(saved: tuple[Kind, Path]):
    kind, folder = saved
    meta_path = folder / f"{kind.name}.json"
    meta = json.loads(meta_path.read_text())
    for change, match in kind.mismatches:
        meta_path.write_text(json.dumps({**meta, "settings": {**meta["settings"], **change}}))
        with pytest.raises(InputError, match=match):
            kind.load(folder)


@pytest.mark.parametrize("kind", ALL)
def test_save_is_atomic_and_rejects_bad_names(kind: Kind, tmp_path: Path):
    module = kind.module(2, 2, kind.settings)
    kind.save(module, tmp_path)
    kind.save(module, tmp_path)  # overwrite in place, no temporary files left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        f"{kind.name}.json",
        f"{kind.name}.safetensors",
    ]
    for name in ("../x", "", "."):
        with pytest.raises(ValueError, match="plain file stem"):
            kind.save(module, tmp_path, name=name)
