"""Density models: a conditional normalizing flow p(x | m) on flat per-event columns.

The building block of the likelihood-based anomaly searches: a :class:`DensityModel` estimates
the density of a few event features ``x`` (jet masses, N-subjettiness ratios) given a resonance
variable ``m`` (the dijet mass), one row per event.  ``-log p(x | m)`` is an anomaly score
(:mod:`hepgen.anomaly.score`); trained in the sidebands of a signal region and interpolated
into it, the model is the background estimate of ANODE and CATHODE
(:mod:`hepgen.anomaly.scan`).  The modules: :mod:`hepgen.anomaly.density.model`,
:mod:`~hepgen.anomaly.density.inputs`, :mod:`~hepgen.anomaly.density.trend`,
:mod:`~hepgen.anomaly.density.card`.  Why the model interpolates through the gap is explained
in ``docs/anomaly.md``, section "Density models".

References
----------
B. Nachman, D. Shih, "Anomaly Detection with Density Estimation", Phys. Rev. D 101 (2020)
075042, arXiv:2001.04990 (ANODE).
A. Hallin et al., "Classifying Anomalies THrough Outer Density Estimation (CATHODE)",
Phys. Rev. D 106 (2022) 055006, arXiv:2109.00546.
C. Durkan, A. Bekasov, I. Murray, G. Papamakarios, "Neural Spline Flows", NeurIPS 2019,
arXiv:1906.04032.
G. Papamakarios, T. Pavlakou, I. Murray, "Masked Autoregressive Flow for Density Estimation",
NeurIPS 2017, arXiv:1705.07057.

Examples
--------
>>> import numpy as np
>>> from hepgen.anomaly.density import DensityModel
>>> rng = np.random.default_rng(0)
>>> m = rng.uniform(0.0, 1.0, 4000)
>>> data = {"m": m, "x": 2.0 * m + rng.normal(0.0, 0.5, 4000)}
>>> model = DensityModel([{"name": "x"}], [{"name": "m"}],
...                      flow={"n_transforms": 1, "hidden_features": 8},
...                      training={"max_epochs": 2, "batch_size": 500}, device="cpu")
>>> model = model.fit(data, quiet=True)
>>> model.log_prob(data)[:3].shape
(3,)
>>> sorted(model.sample({"m": m[:5]}, seed=1))
['m', 'x']
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hepgen.anomaly.density.card import FLOW_NAME
from hepgen.anomaly.density.inputs import nonfinite_problems
from hepgen.anomaly.density.model import DEFAULT_FLOW, DEFAULT_TRAINING, DensityModel
from hepgen.modeldir import DENSITY_FORMAT_VERSION, MODEL_FILE, MODEL_FORMAT, read_card

__all__ = [
    "DEFAULT_FLOW",
    "DEFAULT_TRAINING",
    "DENSITY_FORMAT_VERSION",
    "FLOW_NAME",
    "MODEL_FILE",
    "MODEL_FORMAT",
    "DensityModel",
    "nonfinite_problems",
    "read_model_card",
]


def read_model_card(directory: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """Read and check the ``hepgen-model.json`` of a model directory of any kind
    (:func:`hepgen.modeldir.read_card`): the card's path and content.

    Raises
    ------
    InputError
        No such file, invalid JSON, not a hepgen model card, or an unknown kind or version.
    """
    return read_card(directory)
