"""Invertible, JSON-serialisable one-feature transforms: the steps of a preprocessing chain.

Each step maps one feature (a 1-D ``float64`` array in the feature's units) to a value the
models train on and back, reports ``log|dy/dx|`` so that densities can be quoted in physical
units, and stores its settings and fitted state as plain JSON.  The ``type`` of a step in a
feature's ``transforms`` (:class:`~hepgen.features.FeatureSpec`) is a key of
:data:`TRANSFORMS`: ``log``, ``logit``, ``standardize``, ``quantile_gaussian``
(:mod:`~hepgen.transforms.continuous`), ``ratio``, ``difference``
(:mod:`~hepgen.transforms.relative`), ``dequantize``, ``onehot``, ``index``
(:mod:`~hepgen.transforms.discrete`); :func:`register_transform` adds a new one.  The chains
are fitted and applied per feature by :mod:`hepgen.preprocessing`.  This package sits below
:mod:`hepgen.features` (which validates a spec's steps with it) and knows no feature schema.

Examples
--------
>>> import numpy as np
>>> from hepgen.transforms import Transform
>>> t = Transform.from_config({"type": "log", "offset": 1.0}).fit(np.array([0.0, 9.0]))
>>> t.forward(np.array([0.0, 9.0])).round(4).tolist()
[0.0, 2.3026]
>>> sorted(TRANSFORMS)[:3]
['dequantize', 'difference', 'index']
"""

from hepgen.transforms.base import (
    DEFAULT_SEED,
    TRANSFORMS,
    NotFittedError,
    Transform,
    register_transform,
)
from hepgen.transforms.continuous import Log, Logit, QuantileGaussian, Standardize
from hepgen.transforms.discrete import Dequantize, Index, OneHot
from hepgen.transforms.relative import Difference, Ratio

__all__ = [
    "DEFAULT_SEED",
    "TRANSFORMS",
    "Dequantize",
    "Difference",
    "Index",
    "Log",
    "Logit",
    "NotFittedError",
    "OneHot",
    "QuantileGaussian",
    "Ratio",
    "Standardize",
    "Transform",
    "register_transform",
]
