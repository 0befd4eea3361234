"""hepgen: learned fast simulation, anomaly scores and validation for high-energy physics.

The top-level names are the ones analysis code needs; heavy modules (torch, xgboost) are
imported on first use so that ``import hepgen`` and ``hepgen --help`` stay fast.  Importing
hepgen changes nothing in the process: the OpenMP wait policy that the ``hepgen`` command sets
is :func:`hepgen.cli.configure_process`'s.
"""

from typing import Any

from hepgen._version import __version__
from hepgen.errors import ConfigError, HepgenError, InputError

__all__ = ["ConfigError", "HepgenError", "InputError", "__version__", "compare", "validate_files"]

_LAZY = {"compare": "hepgen.validation.compare", "validate_files": "hepgen.validation.files"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hepgen' has no attribute {name!r}")
