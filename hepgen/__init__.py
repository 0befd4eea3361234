"""hepgen: learned fast simulation, anomaly scores and validation for high-energy physics.

The top-level names are the ones analysis code needs: :func:`simulate` (the reference "full
simulation", written to a ROOT file), :func:`load_config`, :class:`FastSim` (train, simulate,
save), :func:`load_model` (any model directory) and :func:`compare` (validation metrics).
Heavy modules (torch, xgboost) are imported on first use of a name, so that ``import hepgen``
and ``hepgen --help`` stay fast.  Importing hepgen changes nothing in the process: the OpenMP
wait policy that the ``hepgen`` command sets is :func:`hepgen.cli.configure_process`'s.

Examples
--------
>>> import hepgen
>>> hepgen.simulate.__name__, hepgen.load_model.__module__
('simulate_to_file', 'hepgen.modeldir')
"""

from typing import Any

from hepgen._version import __version__
from hepgen.errors import ConfigError, HepgenError, InputError

__all__ = [
    "ConfigError",
    "FastSim",
    "HepgenError",
    "InputError",
    "__version__",
    "compare",
    "load_config",
    "load_model",
    "simulate",
    "validate_files",
]

#: Lazily imported names: name -> (module, attribute).
_LAZY = {
    "FastSim": ("hepgen.fastsim", "FastSim"),
    "compare": ("hepgen.validation.compare", "compare"),
    "load_config": ("hepgen.config", "load_config"),
    "load_model": ("hepgen.modeldir", "load_model"),
    "simulate": ("hepgen.sim", "simulate_to_file"),
    "validate_files": ("hepgen.validation.files", "validate_files"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'hepgen' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
