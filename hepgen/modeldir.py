"""The model directory: one card format for every kind of model, and :func:`load_model`.

A model directory holds ``hepgen-model.json`` (the *card*: ``format``, ``format_version``,
``kind`` and everything but the weights) beside the weights (safetensors, xgboost JSON; no
pickle).  This module owns that contract: the card's constants, :func:`read_card` (read and
check a card, with errors naming the directory, the file and what was expected) and
:func:`load_model`, which picks the model class from the card's ``kind`` in :data:`KINDS`.
Classes are named by import path and imported on first use, so this module imports no torch
and sits below the models it loads; a new kind of model is its module plus one entry in
:data:`KINDS` (a new generator kind of a fast simulation needs none: its settings entry in
:data:`hepgen.settings.GENERATOR_SETTINGS` makes it a kind here).  Every class here has
``from_card(directory, card, device)``.

Examples
--------
>>> sorted(KINDS)
['density', 'flow', 'gan', 'vae']
>>> KINDS["density"].what
'a density model'
>>> read_card("no/such/dir")
Traceback (most recent call last):
...
hepgen.errors.InputError: 'no/such/dir' is not a hepgen model directory: no hepgen-model.json
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hepgen.errors import InputError
from hepgen.settings.models import GENERATOR_SETTINGS

__all__ = [
    "DENSITY_FORMAT_VERSION",
    "FASTSIM_FORMAT_VERSION",
    "FASTSIM_KINDS",
    "KINDS",
    "MODEL_FILE",
    "MODEL_FORMAT",
    "ModelHandle",
    "ModelKind",
    "cached_model",
    "load_model",
    "model_hash",
    "model_kind",
    "read_card",
]

#: ``format`` of every ``hepgen-model.json``.
MODEL_FORMAT = "hepgen-model"
#: The card's name in a model directory.
MODEL_FILE = "hepgen-model.json"
#: ``format_version`` that :class:`hepgen.FastSim` writes (kinds ``flow``, ``gan``).
FASTSIM_FORMAT_VERSION = 1
#: ``format_version`` that :class:`hepgen.anomaly.DensityModel` writes (1: no trend).
DENSITY_FORMAT_VERSION = 2


@dataclass(frozen=True)
class ModelKind:
    """One kind of model directory (a ``kind`` of ``hepgen-model.json``).

    Attributes
    ----------
    kind : str
        The card's ``kind``.
    loader : str
        ``"module:Class"`` of the class whose ``from_card(directory, card, device)`` loads it.
    what : str
        What it is, for messages (``"a fast simulation"``).
    made_by : str
        What writes it (``"'hepgen train'"``).
    used_by : str
        What uses it, for messages naming where a directory of this kind belongs.
    versions : tuple of int
        The ``format_version`` values this hepgen reads.
    """

    kind: str
    loader: str
    what: str
    made_by: str
    used_by: str
    versions: tuple[int, ...]

    def model_class(self) -> type:
        """The loader class, imported now."""
        module, name = self.loader.split(":")
        return getattr(importlib.import_module(module), name)


_FASTSIM = "hepgen.fastsim:FastSim"
#: The kinds of a fast simulation's card: one per generator kind (``model.kind``).
FASTSIM_KINDS: tuple[str, ...] = tuple(GENERATOR_SETTINGS)


def _fastsim_kind(kind: str) -> ModelKind:
    """The entry of a fast simulation whose generator is of ``kind``."""
    return ModelKind(
        kind,
        _FASTSIM,
        "a fast simulation",
        "'hepgen train'",
        "'hepgen generate', 'hepgen score' (generators with a likelihood: flow) and "
        "'hepgen info' (hepgen.FastSim)",
        (FASTSIM_FORMAT_VERSION,),
    )


#: The registry of model kinds, keyed by the card's ``kind``: a fast simulation per generator
#: kind of :data:`hepgen.settings.GENERATOR_SETTINGS`, and the density model.
KINDS: dict[str, ModelKind] = {
    **{kind: _fastsim_kind(kind) for kind in FASTSIM_KINDS},
    "density": ModelKind(
        "density",
        "hepgen.anomaly.density:DensityModel",
        "a density model",
        "DensityModel.save",
        "'hepgen score' and 'hepgen info' (hepgen.anomaly.DensityModel)",
        (1, DENSITY_FORMAT_VERSION),
    ),
}


def model_kind(kind: Any) -> ModelKind | None:
    """The registry entry of ``kind`` (None for an unknown kind or a non-string)."""
    return KINDS.get(kind) if isinstance(kind, str) else None


def _kinds_text(kinds: Iterable[str]) -> str:
    """``kind 'flow'`` / ``kinds 'flow' or 'gan'``."""
    kinds = [repr(k) for k in kinds]
    if len(kinds) == 1:
        return f"kind {kinds[0]}"
    return f"kinds {', '.join(kinds[:-1])} or {kinds[-1]}"


def _accepted_text(accept: Iterable[str]) -> str:
    """``a fast simulation (kinds 'flow' or 'gan', written by 'hepgen train')``, per
    description."""
    groups: dict[tuple[str, str], list[str]] = {}
    for kind in accept:
        entry = KINDS[kind]
        groups.setdefault((entry.what, entry.made_by), []).append(kind)
    return " or ".join(
        f"{what} ({_kinds_text(kinds)}, written by {made_by})"
        for (what, made_by), kinds in groups.items()
    )


def _parse(directory: Path) -> tuple[Path, Any]:
    """The card's path and its parsed JSON (InputError naming the file otherwise)."""
    path = directory / MODEL_FILE
    if not path.is_file():
        raise InputError(f"'{directory}' is not a hepgen model directory: no {MODEL_FILE}")
    try:
        return path, json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(
            f"'{path}' is not valid JSON ({err}); the model directory is corrupt or truncated"
        ) from None
    except OSError as err:
        raise InputError(f"cannot read '{path}': {err.strerror}") from None


def _check(path: Path, card: Any, accept: list[str], user: str) -> dict[str, Any]:
    """``card`` if it is a card of a known, accepted kind in a readable version."""
    if not isinstance(card, dict) or card.get("format") != MODEL_FORMAT:
        found = card.get("format") if isinstance(card, dict) else type(card).__name__
        raise InputError(
            f"'{path}' is not a hepgen model card (format {found!r}, expected {MODEL_FORMAT!r})"
        )
    kind = card.get("kind")
    written = ((card.get("provenance") or {}).get("versions") or {}).get("hepgen", "?")
    entry = model_kind(kind)
    if entry is None:
        raise InputError(
            f"'{path}' holds a model of kind {kind!r} (written by hepgen {written}), which "
            f"this hepgen does not know; it reads {_kinds_text(KINDS)}"
        )
    if kind not in accept:
        raise InputError(
            f"'{path.parent}' holds {entry.what} ({_kinds_text([kind])}); {user} takes "
            f"{_accepted_text(accept)}; {entry.what} is used by {entry.used_by}"
        )
    version = card.get("format_version")
    if version not in entry.versions:
        plural = "version" if len(entry.versions) == 1 else "versions"
        raise InputError(
            f"'{path}' has format_version {version!r}; this hepgen reads {plural} "
            f"{', '.join(map(str, entry.versions))} of {entry.what} ({_kinds_text([kind])}; "
            f"the card was written by hepgen {written})"
        )
    return card


def read_card(
    directory: str | os.PathLike,
    accept: Iterable[str] | None = None,
    *,
    user: str = "this call",
    command: str | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Read and check the ``hepgen-model.json`` of a model directory.

    Parameters
    ----------
    directory : path
        A model directory (``hepgen train``, :meth:`hepgen.FastSim.save`,
        :meth:`hepgen.anomaly.DensityModel.save`).
    accept : iterable of str or None
        The kinds the caller takes (keys of :data:`KINDS`); ``None``: every known kind.
    user : str
        Who reads it (``"FastSim.load"``), for the message about a kind it does not take.
    command : str or None
        The ``hepgen`` command that reads it (``"generate"``): named instead of ``user``, and
        every message about a missing or damaged card says what the command takes.

    Returns
    -------
    path : Path
        The card's path.
    card : dict
        Its content; ``card["kind"]`` is a key of :data:`KINDS`.

    Raises
    ------
    InputError
        No such file, invalid JSON, not a hepgen model card, an unknown kind, a kind not in
        ``accept`` (naming the kind found, what the caller takes and what uses the kind
        found), or a ``format_version`` this hepgen cannot read (the file named).
    """
    accept = list(KINDS) if accept is None else list(accept)
    if command:
        user = f"'hepgen {command}'"
    try:
        path, card = _parse(Path(directory))
    except InputError as err:
        if not command:
            raise
        raise InputError(
            f"{err}; {user} takes the model directory of {_accepted_text(accept)}"
        ) from None
    return path, _check(path, card, accept, user)


def load_model(
    directory: str | os.PathLike,
    device: str = "cpu",
    *,
    accept: Iterable[str] | None = None,
    command: str | None = None,
    backend: str = "torch",
) -> Any:
    """The model of a directory, by the ``kind`` of its card (no code is executed).

    Parameters
    ----------
    directory : path
        A model directory.
    device : str
        Where its networks run: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    accept : iterable of str or None
        The kinds the caller takes (``("flow", "gan")`` for a fast simulation); ``None``:
        every kind in :data:`KINDS`.
    command : str or None
        The ``hepgen`` command that loads it (``"generate"``), named in the messages.
    backend : {"torch", "onnx"}
        What runs a fast simulation's generators (:meth:`hepgen.FastSim.load`): ``"onnx"``
        needs an export folder (``hepgen export DIR --format onnx -o OUT``) and no torch.

    Returns
    -------
    FastSim or DensityModel
        A :class:`hepgen.FastSim` for the kinds ``flow`` and ``gan``, a
        :class:`hepgen.anomaly.DensityModel` for ``density``.

    Raises
    ------
    InputError
        The errors of :func:`read_card`, damaged weights, or an absent CUDA device.
    """
    _, card = read_card(directory, accept, user="load_model", command=command)
    entry = model_kind(card["kind"])
    if backend == "torch":
        return entry.model_class().from_card(directory, card, device=device)
    if entry.loader != _FASTSIM:
        raise InputError(
            f"'{directory}' holds {entry.what}: backend {backend!r} runs fast simulations "
            "only; load it with backend 'torch'"
        )
    return entry.model_class().from_card(directory, card, device=device, backend=backend)


def model_hash(directory: str | os.PathLike) -> str:
    """A SHA-256 of a model directory: its card and weight files (the top-level files, by
    name and content; checkpoints and other folders left out).

    The same trained model gives the same hash wherever it is copied; it names the model in
    a production's manifest.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / MODEL_FILE).write_text("{}")
    >>> len(model_hash(d))
    64
    """
    from hepgen.provenance import file_sha256

    digest = hashlib.sha256()
    for path in sorted(Path(directory).iterdir()):
        if path.is_file() and not path.name.startswith("."):
            digest.update(f"{path.name}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


#: One model load at a time in a process (seed blocks run on threads).
_LOAD_LOCK = threading.Lock()

#: Models loaded by :func:`cached_model`, per process (Dask workers load a model once).
_CACHE: dict[tuple[str, str, str, str, str], Any] = {}


def cached_model(
    directory: str | os.PathLike,
    device: str = "cpu",
    *,
    accept: Iterable[str] | None = None,
    command: str | None = None,
    backend: str = "torch",
) -> Any:
    """:func:`load_model`, loaded once per process and model (keyed by the resolved path,
    device, backend and :func:`model_hash`: a retrained model in the same folder is loaded
    anew)."""
    path = Path(directory).resolve()
    key = (os.fspath(path), device, model_hash(path), ",".join(sorted(accept or ())), backend)
    if key not in _CACHE:
        if len(_CACHE) >= 4:  # a long-lived worker that saw many models keeps the newest
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = load_model(path, device, accept=accept, command=command, backend=backend)
    return _CACHE[key]


class ModelHandle:
    """A model for work on other processes: pickled as its directory, loaded there once per
    process (:func:`cached_model`); a model given as an object travels as it is.

    Parameters
    ----------
    model : path or model object
        A model directory, or a fitted model (e.g. a :class:`hepgen.FastSim` of the Python API).
    device : str
        Where the networks run (on every process).
    accept : iterable of str or None
        The kinds the caller takes (as :func:`load_model`).
    command : str or None
        Named in the messages.
    backend : {"torch", "onnx"}
        What runs the generators (as :func:`load_model`), on every process.
    inference : dict or None
        Keyword arguments of the model's ``set_inference`` (engine, precision), applied
        after loading on every process.
    sampling : dict or None
        Keyword arguments of the model's ``set_sampling`` (temperature, truncation), applied
        after loading on every process (``None``: the model's own, i.e. its config's).

    Examples
    --------
    >>> import copy
    >>> handle = ModelHandle("some/model", accept=FASTSIM_KINDS, command="generate")
    >>> handle.model = "a loaded model"
    >>> sent = copy.deepcopy(handle)  # what pickling for a worker keeps
    >>> sent.directory.endswith("model"), sent.model
    (True, None)
    """

    def __init__(
        self,
        model: Any,
        device: str = "cpu",
        *,
        accept: Iterable[str] | None = None,
        command: str | None = None,
        backend: str = "torch",
        inference: dict[str, Any] | None = None,
        sampling: dict[str, Any] | None = None,
    ) -> None:
        is_path = isinstance(model, str | os.PathLike)
        self.directory = os.fspath(Path(model).resolve()) if is_path else None
        self.model = None if is_path else model
        self.device, self.accept, self.command = device, tuple(accept or ()), command
        self.backend = backend
        self.inference = inference
        self.sampling = sampling

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if self.directory is not None:
            state["model"] = None  # loaded from the directory where it is used
        return state

    def get(self) -> Any:
        """The model (loaded on first use in this process; threads that ask at once wait for
        one load)."""
        if self.model is not None:
            return self.model
        with _LOAD_LOCK:
            if self.model is not None:
                return self.model
            assert self.directory is not None
            model = cached_model(
                self.directory,
                self.device,
                accept=self.accept or None,
                command=self.command,
                backend=getattr(self, "backend", "torch"),
            )
            if self.inference and hasattr(model, "set_inference"):
                model.set_inference(**self.inference)
            if hasattr(model, "set_sampling"):  # also resets a cached model's earlier choice
                model.set_sampling(**(getattr(self, "sampling", None) or {}))
            self.model = model
        return self.model
