"""Small helpers shared by the torch networks of :mod:`hepgen.models` (the flow and the GAN):
where a module lives and the checks of their constructors' arguments."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

__all__ = ["check_module_args", "module_device"]


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
