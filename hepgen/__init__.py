"""hepgen: learned fast simulation, anomaly scores and validation for high-energy physics.

The top-level names are the ones analysis code needs; heavy modules (torch, xgboost) are
imported on first use so that ``import hepgen`` and ``hepgen --help`` stay fast.
"""

import os
from typing import Any

# torch and xgboost each run an OpenMP (libgomp) thread pool in this process.  An idle thread
# spins before it sleeps: with OMP_WAIT_POLICY=ACTIVE it spins almost forever, and the idle
# pool of one library takes the cores the other needs (2 cores: the validation tests took 22 s
# instead of 13 s; one small validation 36.8 s instead of 2.7 s).  With PASSIVE it never spins,
# and every one of the thousands of short torch kernels in flow sampling pays a thread wake-up
# (hepgen generate: 44k instead of 71k gen jets/s).  A bounded spin of 30000 iterations (tens
# of microseconds) keeps both fast.  The runtime reads the variable when it starts, so it is
# set before torch/xgboost load; any user setting of either variable wins.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "30000"

from hepgen._version import __version__
from hepgen.errors import ConfigError, HepgenError, InputError

__all__ = ["ConfigError", "HepgenError", "InputError", "__version__", "compare", "validate_files"]

_LAZY = {"compare": "hepgen.validation.compare", "validate_files": "hepgen.validation.files"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hepgen' has no attribute {name!r}")
