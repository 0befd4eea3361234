"""The registry of generator kinds: ``model.kind`` of a config or model card -> its class.

Every layer that builds or loads a generator by kind (the fast simulation, the model directory,
the command line) asks :func:`model_class` instead of naming classes, so a new kind is one
module with a :class:`~hepgen.models.base.GenerativeModel` subclass plus one entry in
:data:`MODEL_CLASSES`.  Whether a kind has a likelihood is the class's
:attr:`~hepgen.models.base.GenerativeModel.has_likelihood`, never an ``isinstance`` check.
The classes are named by import path and imported on first use (they import torch), so that
the registry, and the fast simulation that reads it, load without torch (the ONNX backend).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from hepgen.errors import InputError, did_you_mean

if TYPE_CHECKING:
    from hepgen.models.base import GenerativeModel

__all__ = ["KINDS", "MODEL_CLASSES", "model_class"]


class _LazyClasses(Mapping[str, "type[GenerativeModel]"]):
    """A read-only mapping kind -> class whose classes are imported on first access."""

    def __init__(self, paths: Mapping[str, str]) -> None:
        self._paths = dict(paths)

    def __getitem__(self, kind: str) -> type[GenerativeModel]:
        module, name = self._paths[kind].split(":")
        return getattr(importlib.import_module(module), name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __len__(self) -> int:
        return len(self._paths)

    def __repr__(self) -> str:
        return f"MODEL_CLASSES({self._paths!r})"


#: The generator class of each kind (read-only; each class's ``kind`` is its key), imported
#: on first access.
MODEL_CLASSES: Mapping[str, type[GenerativeModel]] = _LazyClasses(
    {
        "flow": "hepgen.models.flow_model:FlowModel",
        "gan": "hepgen.models.gan_model:GANModel",
        "vae": "hepgen.models.vae_model:VAEModel",
    }
)

#: The known kinds, in registry order.
KINDS: tuple[str, ...] = tuple(MODEL_CLASSES)


def model_class(kind: str) -> type[GenerativeModel]:
    """The generator class of ``kind``.

    Parameters
    ----------
    kind : str
        A ``model.kind`` (:data:`KINDS`).

    Returns
    -------
    type[GenerativeModel]
        E.g. :class:`~hepgen.models.flow_model.FlowModel` for ``"flow"``.

    Raises
    ------
    InputError
        An unknown kind; the message names the known kinds and the closest ones.

    Examples
    --------
    >>> model_class("gan").__name__
    'GANModel'
    >>> model_class("flows")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    hepgen.errors.InputError: unknown model kind 'flows'; expected 'flow', 'gan' or 'vae' (did you ...
    """
    if not isinstance(kind, str) or kind not in KINDS:
        known = " or ".join(", ".join(repr(k) for k in KINDS).rsplit(", ", 1))
        hint = did_you_mean(kind, KINDS) if isinstance(kind, str) else ""
        raise InputError(f"unknown model kind {kind!r}; expected {known}{hint}")
    return MODEL_CLASSES[kind]
