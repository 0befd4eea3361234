"""Weights files of the torch models: ``NAME.safetensors`` + ``NAME.json``, no pickle.

Flows (:mod:`hepgen.models.flow`) and GANs (:mod:`hepgen.models.gan_nets`) store a module the
same way: the state dict in a safetensors file written atomically with a canonical header
(:func:`hepgen.training.save_safetensors`: identical weights give identical bytes), then a
JSON file with the format, its version, the module's description (sizes, settings), its seed,
the SHA-256 of the weights and library versions.  The JSON is written last, so a crash between
the two leaves a checksum mismatch that loading reports.  Loading rebuilds the module from the
JSON and checks every tensor's name and shape before it loads them; nothing is executed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from hepgen.errors import ConfigError, InputError
from hepgen.provenance import file_sha256 as sha256
from hepgen.utils import write_json

__all__ = ["check_name", "load_module", "read_meta", "save_module"]


def check_name(name: str) -> None:
    """``name`` must be a plain file stem (no separators, not ``.``/``..``)."""
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name in {".", ".."}:
        raise ValueError(f"name must be a plain file stem, got {name!r}")


def save_module(
    module: torch.nn.Module,
    directory: str | Path,
    name: str,
    *,
    fmt: str,
    version: int,
    description: Mapping[str, Any],
    seed: int,
    versions: Mapping[str, Any],
) -> list[Path]:
    """Write ``NAME.safetensors`` (the state dict) then ``NAME.json``, each atomically.

    Returns
    -------
    list of Path
        ``[weights, metadata]``.
    """
    from hepgen.training import save_safetensors

    check_name(name)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / f"{name}.safetensors"
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
    digest = save_safetensors(weights, tensors, {"format": fmt, "format_version": str(version)})
    meta = {
        "format": fmt,
        "format_version": version,
        **description,
        "seed": seed,
        "weights_sha256": digest,
        "versions": dict(versions),
    }
    return [weights, write_json(directory / f"{name}.json", meta)]


def read_meta(path: Path, fmt: str, version: int, label: str) -> dict[str, Any]:
    """The checked JSON metadata of a ``label`` ("flow", "gan") weights file.

    Raises
    ------
    InputError
        Missing file, invalid JSON, another format or version, or a bad size or settings
        entry (the file and the entry named).
    """
    if not path.is_file():
        raise InputError(f"{label} metadata not found: {path}")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(f"{path} is not valid JSON ({err}): corrupt or truncated") from None
    if not isinstance(meta, dict):
        raise InputError(f"{path} must hold a JSON object, got {type(meta).__name__}")
    if meta.get("format") != fmt:
        raise InputError(
            f"{path} is not a hepgen {label} file: format {meta.get('format')!r}, expected {fmt!r}"
        )
    found = meta.get("format_version")
    if found != version:
        raise InputError(
            f"{path} was written in {label} format_version {found!r}; this version of hepgen "
            f"reads format_version {version} only"
        )
    for key in ("n_features", "n_conditions"):
        value = meta.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{path}: '{key}' must be a positive integer, got {value!r}")
    if not isinstance(meta.get("settings"), dict):
        raise InputError(f"{path}: 'settings' must be a JSON object")
    return meta


def load_module(
    directory: str | Path,
    name: str,
    *,
    fmt: str,
    version: int,
    label: str,
    settings_from_dict: Callable[[Mapping[str, Any]], Any],
    build: Callable[[int, int, Any, int], torch.nn.Module],
    device: str | torch.device = "cpu",
) -> torch.nn.Module:
    """Rebuild a module written by :func:`save_module`, in evaluation mode on ``device``.

    ``build(n_features, n_conditions, settings, seed)`` constructs the empty module.

    Raises
    ------
    InputError
        See :func:`read_meta`; also invalid settings, a weights file that is missing, corrupt,
        truncated or not matching its checksum (the file named), or a tensor missing,
        unexpected or of the wrong shape (the tensor named).
    """
    from safetensors.torch import load_file

    check_name(name)
    directory = Path(directory)
    meta_path = directory / f"{name}.json"
    weights = directory / f"{name}.safetensors"
    meta = read_meta(meta_path, fmt, version, label)
    try:
        settings = settings_from_dict(meta["settings"])
    except (ConfigError, TypeError) as err:
        raise InputError(f"{meta_path}: {err}") from None
    if not weights.is_file():
        raise InputError(f"{label} weights not found: {weights} (named by {meta_path})")
    digest = meta.get("weights_sha256")
    if digest is not None and digest != sha256(weights):
        raise InputError(
            f"{label} weights {weights} do not match the checksum recorded in {meta_path}: the "
            "file is corrupt or truncated, or was replaced after the metadata was written"
        )
    try:
        tensors = load_file(weights, device="cpu")
    except Exception as err:  # safetensors raises its own SafetensorError, or OSError
        raise InputError(
            f"cannot read {label} weights {weights}: corrupt or truncated safetensors file ({err})"
        ) from None
    seed = meta.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError(f"{meta_path}: 'seed' must be an integer, got {seed!r}")
    module = build(meta["n_features"], meta["n_conditions"], settings, seed)
    expected = module.state_dict()
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing tensor(s) {', '.join(missing[:5])}")
        if unexpected:
            parts.append(f"unexpected tensor(s) {', '.join(unexpected[:5])}")
        raise InputError(
            f"{label} weights {weights} do not match the architecture in {meta_path}: "
            + "; ".join(parts)
        )
    for key, ref in expected.items():
        if tuple(tensors[key].shape) != tuple(ref.shape):
            raise InputError(
                f"{label} weights {weights}: tensor '{key}' has shape "
                f"{tuple(tensors[key].shape)}, the architecture in {meta_path} needs "
                f"{tuple(ref.shape)}"
            )
        tensors[key] = tensors[key].to(ref.dtype)
    module.load_state_dict(tensors, strict=True)
    return module.to(device).eval()
