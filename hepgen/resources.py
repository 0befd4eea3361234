"""Files shipped with hepgen: the example configurations of ``configs/``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from hepgen.errors import InputError

__all__ = ["config_path", "list_configs"]

_REPO_CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def _folders() -> list[Path]:
    # In a wheel the configs are packaged as hepgen/configs; in an editable install (the
    # README's `make` targets) they stay in the repository's configs/ folder.
    folders = [Path(str(resources.files("hepgen") / "configs")), _REPO_CONFIGS]
    return [f for f in folders if f.is_dir()]


def list_configs() -> list[str]:
    """Names of the shipped example configurations."""
    return sorted({p.name for folder in _folders() for p in folder.glob("*.yaml")})


def config_path(name: str) -> Path:
    """Path of a shipped configuration, e.g. ``config_path("toy_jets.yaml")``."""
    for folder in _folders():
        if (folder / name).is_file():
            return folder / name
    raise InputError(f"no shipped config '{name}'; available: {', '.join(list_configs())}")
