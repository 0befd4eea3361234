"""Fitted, invertible, JSON-serialisable preprocessing: raw physics columns <-> model matrices.

A :class:`Preprocessor` is built from a :class:`~hepgen.features.FeatureSchema`.  ``fit`` learns
one :class:`FeaturePipeline` per feature (a chain of :class:`~hepgen.transforms.Transform`
steps, by default the kind's chain of :func:`~hepgen.features.default_transforms`, with a
:class:`SentinelFlag` for point masses); afterwards it maps the raw condition and target
columns to the standardised ``float32`` matrices that flows and GANs train on, and maps
generated matrices back to physical columns, with the original integer dtypes restored.
All arithmetic is in ``float64``; the steps' ``log|dy/dx|`` add up so that densities can be
quoted in physical units, ``log p(x | c) = log p_z(z | c) + sum of log|dy/dx|`` (for discrete
features, per unit of the integer); everything fitted is stored as plain JSON (no pickle, no
NaN), written atomically.

Modules: :mod:`~hepgen.preprocessing.sentinels` (point masses),
:mod:`~hepgen.preprocessing.pipeline` (one feature), :mod:`~hepgen.preprocessing.columns`
(input checks), :mod:`~hepgen.preprocessing.preprocessor` (all features, the JSON file).  The
steps themselves are :mod:`hepgen.transforms`, re-exported here.

References
----------
L. Theis, A. van den Oord, M. Bethge, arXiv:1511.01844 (dequantisation of discrete data).
C. Krause, D. Shih, arXiv:2106.05285 (logit preprocessing of bounded data).
A. Maevskiy et al., arXiv:1905.11825 (quantile transformation to a Gaussian).

Examples
--------
>>> import numpy as np
>>> from hepgen.features import FeatureSchema, FeatureSpec
>>> from hepgen.preprocessing import Preprocessor
>>> rng = np.random.default_rng(1)
>>> gen_pt = 20 + rng.exponential(30, 1000)
>>> data = {"GenJet_pt": gen_pt, "Jet_pt": gen_pt * rng.normal(1, 0.1, 1000)}
>>> schema = FeatureSchema([FeatureSpec("GenJet_pt", "condition", "positive"),
...                         FeatureSpec("Jet_pt", "target", "positive", relative_to="GenJet_pt")])
>>> pre = Preprocessor(schema).fit(data)
>>> z = pre.transform_targets(data)
>>> z.dtype, z.shape
(dtype('float32'), (1000, 1))
>>> back = pre.inverse_targets(z, data)
>>> bool(np.allclose(back["Jet_pt"], data["Jet_pt"], rtol=1e-6))
True
"""

from hepgen.features import default_transforms
from hepgen.preprocessing.pipeline import FeaturePipeline
from hepgen.preprocessing.preprocessor import Preprocessor
from hepgen.preprocessing.sentinels import SentinelFlag
from hepgen.stats import weighted_quantile
from hepgen.transforms import (
    DEFAULT_SEED,
    TRANSFORMS,
    Dequantize,
    Difference,
    Index,
    Log,
    Logit,
    NotFittedError,
    OneHot,
    QuantileGaussian,
    Ratio,
    Standardize,
    Transform,
    register_transform,
)

__all__ = [
    "DEFAULT_SEED",
    "TRANSFORMS",
    "Dequantize",
    "Difference",
    "FeaturePipeline",
    "Index",
    "Log",
    "Logit",
    "NotFittedError",
    "OneHot",
    "Preprocessor",
    "QuantileGaussian",
    "Ratio",
    "SentinelFlag",
    "Standardize",
    "Transform",
    "default_transforms",
    "register_transform",
    "weighted_quantile",
]
