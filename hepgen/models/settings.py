"""Checks shared by the model settings dataclasses (:class:`~hepgen.models.flow.FlowSettings`,
:class:`~hepgen.models.gan.GANSettings`).

Each settings class validates its fields in ``__post_init__`` and is built from a config
mapping by ``from_dict``; the helpers here give every model the same error messages, naming
the model family (``"flow"``, ``"gan"``), the setting and what was expected.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, TypeVar

import torch
from torch import nn

from hepgen.errors import ConfigError, did_you_mean

__all__ = [
    "check_choice",
    "check_float",
    "check_int",
    "check_module_args",
    "module_device",
    "settings_from_dict",
]

T = TypeVar("T")


def check_choice(family: str, name: str, value: Any, choices: tuple[str, ...]) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(
            f"{family} setting '{name}' must be one of {', '.join(map(repr, choices))},"
            f" got {value!r}"
        )


def check_int(family: str, name: str, value: Any, minimum: int, maximum: int | None = None) -> None:
    """Raise :class:`ConfigError` unless ``value`` is an int (not a bool) in the bounds."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{family} setting '{name}' must be an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ConfigError(f"{family} setting '{name}' must be {bound}, got {value}")


def check_float(family: str, name: str, value: Any) -> float:
    """``value`` as a finite float; :class:`ConfigError` for bools, non-numbers, NaN, inf."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{family} setting '{name}' must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"{family} setting '{name}' must be finite, got {value}")
    return value


def settings_from_dict(cls: type[T], d: Any, family: str) -> T:
    """Build the dataclass ``cls`` from the mapping ``d``; missing keys get defaults.

    Raises
    ------
    ConfigError
        ``d`` is not a mapping or has unknown keys (all named, with suggestions); the
        dataclass's own checks raise for invalid values.
    """
    if not isinstance(d, Mapping):
        raise ConfigError(f"{family} settings must be a mapping, got {type(d).__name__}")
    known = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = [str(k) for k in d if k not in known]
    if unknown:
        hints = "".join(f"; '{k}'{did_you_mean(k, known)}" for k in unknown)
        raise ConfigError(
            f"unknown {family} setting(s) {', '.join(repr(k) for k in unknown)}"
            f" (known: {', '.join(known)}){hints}"
        )
    return cls(**dict(d))


def module_device(module: nn.Module) -> torch.device:
    """The device of the module's first parameter (CPU for a module without parameters)."""
    for p in module.parameters():
        return p.device
    return torch.device("cpu")


def check_module_args(
    n_features: Any, n_conditions: Any, settings: Any, settings_cls: type, seed: Any
) -> None:
    """Check a torch model's constructor arguments: positive int sizes, settings of the
    expected class, an int seed (``ValueError``/``TypeError`` naming the argument)."""
    for name, value in (("n_features", n_features), ("n_conditions", n_conditions)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not isinstance(settings, settings_cls):
        raise TypeError(
            f"settings must be a {settings_cls.__name__}, got {type(settings).__name__}"
        )
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
