"""Learned fast simulation of one object collection, from gen objects to reco.

A fast simulation (:class:`FastSim`) is an **efficiency** model P(reconstructed | gen), a
**response** generator p(reco | gen) of the reconstructed objects (a conditional flow or GAN,
``model.kind``) and the **fakes**, reco objects without a gen match, drawn per event
(:mod:`hepgen.fastsim.fakes`).  :meth:`FastSim.simulate` takes events with the gen collection
(NanoAOD layout) and returns the reco collection in the same layout: per event the
reconstructed gen objects in gen order, then the fakes, with ``{reco}_{gen}Idx`` pointing to
the gen object (-1 for fakes).  For the ``flat`` and ``objects`` layouts
(:mod:`hepgen.io.layouts`) a row is the "event", every object a "gen" object with its
conditions, there are no fakes, and without ``data.reconstructed`` no efficiency model
(efficiency 1).  The model directory (README, "The fast simulation") is ``hepgen-model.json``
(:mod:`hepgen.modeldir`) plus the generators' safetensors and the efficiency's xgboost JSON;
loading executes no code.  The package: :mod:`~hepgen.fastsim.simulator` (the object),
:mod:`~hepgen.fastsim.fit` (the training steps), :mod:`~hepgen.fastsim.fakes`,
:mod:`~hepgen.fastsim.columns` (table and oversampling helpers).

References
----------
F. Vaselli et al., "End-to-end simulation of particle physics events with flow matching and
generator oversampling", arXiv:2402.13684 (CMS FlashSim); C. Durkan et al., "Neural Spline
Flows", arXiv:1906.04032; A. Maevskiy et al., arXiv:1905.11825 (the LHCb RICH GAN).
"""

from hepgen.fastsim.columns import (
    OVERSAMPLE_DRAW,
    OVERSAMPLE_WEIGHT,
    event_split,
    repeat_events,
    table_columns,
    with_draw_fields,
)
from hepgen.fastsim.fakes import MAX_MULTIPLICITY_BIN, MIN_FAKES
from hepgen.fastsim.fit import RESPONSE_SHARE
from hepgen.fastsim.lazy import dask_simulate
from hepgen.fastsim.simulator import FastSim
from hepgen.modeldir import FASTSIM_FORMAT_VERSION as MODEL_FORMAT_VERSION
from hepgen.modeldir import MODEL_FILE, MODEL_FORMAT
from hepgen.models.registry import model_class

__all__ = [
    "MAX_MULTIPLICITY_BIN",
    "MIN_FAKES",
    "MODEL_FILE",
    "MODEL_FORMAT",
    "MODEL_FORMAT_VERSION",
    "OVERSAMPLE_DRAW",
    "OVERSAMPLE_WEIGHT",
    "RESPONSE_SHARE",
    "FastSim",
    "dask_simulate",
    "event_split",
    "model_class",
    "repeat_events",
    "table_columns",
    "with_draw_fields",
]
