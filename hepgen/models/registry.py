"""The registry of generator kinds: ``model.kind`` of a config or model card -> its class.

Every layer that builds or loads a generator by kind (the fast simulation, the model directory,
the command line) asks :func:`model_class` instead of naming classes, so a new kind is one
module with a :class:`~hepgen.models.base.GenerativeModel` subclass plus one entry in
:data:`MODEL_CLASSES`.  Whether a kind has a likelihood is the class's
:attr:`~hepgen.models.base.GenerativeModel.has_likelihood`, never an ``isinstance`` check.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from hepgen.errors import InputError, did_you_mean
from hepgen.models.base import GenerativeModel
from hepgen.models.flow_model import FlowModel
from hepgen.models.gan_model import GANModel

__all__ = ["KINDS", "MODEL_CLASSES", "model_class"]

#: The generator class of each kind (read-only; each class's ``kind`` is its key).
MODEL_CLASSES: Mapping[str, type[GenerativeModel]] = MappingProxyType(
    {
        "flow": FlowModel,
        "gan": GANModel,
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
    hepgen.errors.InputError: unknown model kind 'flows'; expected 'flow' or 'gan' (did you ...
    """
    cls = MODEL_CLASSES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        known = " or ".join(", ".join(repr(k) for k in KINDS).rsplit(", ", 1))
        hint = did_you_mean(kind, KINDS) if isinstance(kind, str) else ""
        raise InputError(f"unknown model kind {kind!r}; expected {known}{hint}")
    return cls
