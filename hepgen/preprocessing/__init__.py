"""Fitted, invertible, JSON-serialisable preprocessing: raw physics columns <-> model matrices.

A :class:`Preprocessor` built from a :class:`~hepgen.features.FeatureSchema` fits one
:class:`FeaturePipeline` per feature (a chain of :mod:`hepgen.transforms` steps, with a
:class:`SentinelFlag` for point masses).  It maps raw columns to the ``float32`` matrices that
flows and GANs train on and back, with the original dtypes restored, and adds up the steps'
``log|dy/dx|`` so that densities can be quoted in physical units; everything fitted is stored
as plain JSON.  See ``docs/data.md``, section "Preprocessing".

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
