"""hepgen: learned fast simulation, anomaly scores and validation for high-energy physics.

The top-level names are the ones analysis code needs; heavy modules (torch, xgboost) are
imported on first use so that ``import hepgen`` and ``hepgen --help`` stay fast.
"""

import os
from typing import Any

# torch and xgboost each run an OpenMP thread pool in this process. With the default active
# wait policy, the idle pool of one spins on the cores the other needs: on 2 cores a
# validation (MMD in torch, then the xgboost classifier test) took 36.8 s instead of 2.7 s.
# The runtime reads this variable when it starts, so it is set before torch/xgboost load;
# an explicit user setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from hepgen._version import __version__
from hepgen.errors import ConfigError, HepgenError, InputError

__all__ = ["ConfigError", "HepgenError", "InputError", "__version__", "compare",
           "validate_files"]

_LAZY = {"compare": "hepgen.validation.compare", "validate_files": "hepgen.validation.files"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hepgen' has no attribute {name!r}")
