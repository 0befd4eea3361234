"""Checkpoint files: canonical ``safetensors``, the resume state, optimizers as tensors.

A checkpoint folder holds, never pickled, each file written atomically (temporary file in the
same folder + :func:`os.replace`) with a canonical header (:func:`save_safetensors`: sorted
keys, so the same tensors give the same bytes):

- ``last.safetensors``: the module's state (``module.<name>``), the AdamW state flattened into
  tensors (``optimizer.<index>.<key>``; with several optimizers, each one's under its name:
  ``optimizer.<optimizer name>.<index>.<key>``), the torch CPU (and CUDA) RNG states and the
  shuffle generator's state as uint8 tensors (``rng.*``), the best weights so far
  (``best_loss.<name>``, ``best_metric.<name>``), and in its metadata (key ``hepgen_state``) the
  JSON state: epoch, history, best epochs, early-stopping and NaN counters, schedule state,
  settings, the objective's ``describe()`` (key ``objective``, when not empty) and
  ``format_version``.  One file holds everything a resume needs, so a crash can never leave a
  checkpoint half of one epoch, half of another.
- ``last.json``: the same JSON state, indented, for people and scripts.
- ``best_loss.safetensors``, ``best_metric.safetensors``: the module's weights only (plain
  state-dict names; ``module.load_state_dict(safetensors.torch.load_file(path))``), written
  with the checkpoint after the best improved.

Resuming requires the settings that shape the trajectory
(:data:`RESUME_FIXED_SETTINGS`, the objective's ``describe()``) and
the numbers of training and validation events to be unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from hepgen.settings.training import TrainingSettings
from hepgen.training.errors import TrainingError
from hepgen.utils import atomic_write_bytes

__all__ = [
    "CHECKPOINT_FORMAT_VERSION",
    "RESUME_FIXED_SETTINGS",
    "canonical_safetensors",
    "save_safetensors",
]

#: Settings that must be the same when a run is resumed (they shape the trajectory; the others
#: may change).
RESUME_FIXED_SETTINGS = (
    "batch_size",
    "learning_rate",
    "weight_decay",
    "schedule",
    "warmup_steps",
    "grad_clip",
    "seed",
)

#: Version of the checkpoint layout (``last.safetensors`` / ``last.json``).
CHECKPOINT_FORMAT_VERSION = 1
_STATE_KEY = "hepgen_state"
_LAST = "last.safetensors"
_LAST_JSON = "last.json"
_BEST_LOSS = "best_loss.safetensors"
_BEST_METRIC = "best_metric.safetensors"


def _cpu_copy(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().to("cpu", copy=True).contiguous()


def _state_copy(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the module's state dict (tensors only: no pickle anywhere)."""
    out = {}
    for name, value in module.state_dict().items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(
                f"module state entry {name!r} is a {type(value).__name__}, not a tensor: "
                "hepgen checkpoints hold tensors only (no pickle)"
            )
        out[name] = _cpu_copy(value)
    return out


def canonical_safetensors(
    tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> bytes:
    """The bytes of a ``safetensors`` file with a canonical header: same tensors, same bytes.

    ``safetensors`` writes its JSON header (the metadata and the tensor entries) in an order
    that varies from run to run, so two identical models gave files with different SHA-256.
    Here the header is re-serialised with sorted keys and no spaces, padded with spaces to a
    multiple of 8 bytes (as ``safetensors`` pads); the data section (whose layout depends on
    the names and dtypes only) is kept.  Any ``safetensors`` reader reads the result.

    Parameters
    ----------
    tensors : mapping of str to Tensor
        CPU, contiguous tensors.
    metadata : mapping of str to str or None
        The header's ``__metadata__``.

    Returns
    -------
    bytes
        The whole file: 8-byte little-endian header length, header JSON, data.
    """
    from safetensors.torch import save

    raw = save(dict(tensors), metadata=None if metadata is None else dict(metadata))
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + raw[8 + n :]


def save_safetensors(
    path: str | os.PathLike,
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str] | None = None,
) -> str:
    """Write :func:`canonical_safetensors` to ``path`` atomically; returns its SHA-256 (hex).

    Every hepgen writer of ``safetensors`` files goes through here, so identical tensors and
    metadata always give byte-identical files.
    """
    data = canonical_safetensors(tensors, metadata)
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def _save_tensors(
    path: Path, tensors: Mapping[str, torch.Tensor], metadata: dict[str, str]
) -> None:
    """``safetensors`` file written atomically (:func:`save_safetensors`)."""
    save_safetensors(path, tensors, metadata)


def _read_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read ``last.safetensors``: (JSON state, tensors); TrainingError naming the file."""
    if not path.is_file():
        raise TrainingError(
            f"cannot resume: checkpoint file {path} does not exist "
            "(train without resume to start afresh)"
        )
    try:
        with safe_open(os.fspath(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:
        raise TrainingError(
            f"cannot resume: checkpoint file {path} is corrupt or truncated ({exc})"
        ) from exc
    try:
        state = json.loads(metadata[_STATE_KEY])
        if not isinstance(state, dict):
            raise ValueError("state is not a JSON object")
    except (KeyError, ValueError) as exc:
        raise TrainingError(
            f"cannot resume: checkpoint file {path} has no valid training state "
            f"(metadata {_STATE_KEY!r}: {exc})"
        ) from exc
    version = state.get("format_version")
    if version != CHECKPOINT_FORMAT_VERSION:
        raise TrainingError(
            f"cannot resume: checkpoint file {path} has format version {version!r}, this hepgen "
            f"reads version {CHECKPOINT_FORMAT_VERSION}"
        )
    return state, tensors


def _optimizer_tensors(optimizers: Mapping[str, torch.optim.Optimizer]) -> tuple[dict, dict]:
    """Optimizer states -> ({"optimizer.<i>.<key>": tensor}, {"<i>.<key>": number}); with
    several optimizers, each one's names start with its own name (``optimizer.<name>.<i>.``,
    ``<name>.<i>.``)."""
    tensors, scalars = {}, {}
    for name, optimizer in optimizers.items():
        prefix = "" if len(optimizers) == 1 else f"{name}."
        for index, entry in optimizer.state_dict()["state"].items():
            for key, value in entry.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optimizer.{prefix}{index}.{key}"] = _cpu_copy(value)
                else:
                    scalars[f"{prefix}{index}.{key}"] = value
    return tensors, scalars


def _load_optimizers(
    optimizers: Mapping[str, torch.optim.Optimizer],
    tensors: Mapping[str, torch.Tensor],
    scalars: Mapping[str, Any],
    path: Path,
) -> None:
    """Restore every optimizer from the layout of :func:`_optimizer_tensors`."""
    items = [(k[len("optimizer.") :], v) for k, v in tensors.items() if k.startswith("optimizer.")]
    entries = [*items, *scalars.items()]
    if len(optimizers) == 1:
        name, optimizer = next(iter(optimizers.items()))
        _load_optimizer(optimizer, entries, path, "")
        return
    by_name: dict[str, list[tuple[str, Any]]] = {name: [] for name in optimizers}
    for full, value in entries:
        name, _, rest = full.partition(".")
        if name not in by_name:
            raise TrainingError(
                f"cannot resume: checkpoint file {path} holds optimizer state {full!r}, but "
                f"this run's optimizers are {', '.join(map(repr, optimizers))}"
            )
        by_name[name].append((rest, value))
    for name, optimizer in optimizers.items():
        _load_optimizer(optimizer, by_name[name], path, f"{name!r} ")


def _load_optimizer(
    optimizer: torch.optim.Optimizer,
    entries: list[tuple[str, Any]],
    path: Path,
    which: str,
) -> None:
    n_params = sum(len(group["params"]) for group in optimizer.param_groups)
    state: dict[int, dict[str, Any]] = {}
    for name, value in entries:
        index, _, key = name.partition(".")
        if not index.isdigit() or int(index) >= n_params or not key:
            raise TrainingError(
                f"cannot resume: checkpoint file {path} holds optimizer {which}state {name!r} "
                f"for a module with other parameters (this {which}optimizer has {n_params} "
                "trainable tensors)"
            )
        state.setdefault(int(index), {})[key] = value
    full = {"state": state, "param_groups": optimizer.state_dict()["param_groups"]}
    try:
        optimizer.load_state_dict(full)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise TrainingError(
            f"cannot resume: optimizer state in {path} does not fit this module ({exc})"
        ) from exc


def _with_prefix(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def _check_resumable(
    path: Path,
    state: Mapping[str, Any],
    settings: TrainingSettings,
    objective_config: Mapping[str, Any],
    n_train: int,
    n_validation: int,
) -> None:
    """TrainingError when the checkpoint's fixed settings, objective or event counts differ
    from this run's (naming each difference)."""
    saved = state.get("settings") or {}
    diffs = [
        f"{k}: {saved.get(k)!r} in the checkpoint, {getattr(settings, k)!r} now"
        for k in RESUME_FIXED_SETTINGS
        if saved.get(k) != getattr(settings, k)
    ]
    saved_objective = state.get("objective") or {}
    diffs += [
        f"objective {k}: {saved_objective.get(k)!r} in the checkpoint, "
        f"{objective_config.get(k)!r} now"
        for k in sorted(set(saved_objective) | set(objective_config))
        if saved_objective.get(k) != objective_config.get(k)
    ]
    if diffs:
        raise TrainingError(
            f"cannot resume from {path}: settings differ from the checkpoint's: "
            + "; ".join(diffs)
            + " (only max_epochs, patience, min_delta, max_bad_batches, device, time_limit "
            "and metric_every may change on resume)"
        )
    for what, key, n_now in (
        ("training", "n_train", n_train),
        ("validation", "n_validation", n_validation),
    ):
        if state.get(key) != n_now:
            raise TrainingError(
                f"cannot resume from {path}: it was written for {state.get(key)} {what} "
                f"events, the {what} data now have {n_now}"
            )
