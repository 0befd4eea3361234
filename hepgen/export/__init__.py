"""``hepgen export``: a trained model as ONNX or TorchScript graphs, checked for parity.

:func:`export_model` writes an export folder: the model directory copied unchanged (so it
still loads as a model), one static graph per generator and role (a flow's sampling and
density graphs, a GAN's generator on given noise; :mod:`hepgen.export.graphs`), written by
:mod:`hepgen.export.onnx` or :mod:`hepgen.export.torchscript`, and ``export.json``.  Each graph
file is run against the eager Python model on the same inputs
(:mod:`hepgen.export.parity`) and the folder is renamed into place only when every one
passes.  The graphs work in model space; preprocessing and the efficiency model stay the
documented separate steps (``docs/export.md``).

Nothing here imports torch, onnx or onnxruntime until an export runs.
"""

from __future__ import annotations

from hepgen.export.parity import DEFAULT_TOLERANCE, ParityFailed, tolerances
from hepgen.export.writer import (
    EXPORT_FILE,
    EXPORT_FORMAT,
    EXPORT_FORMAT_VERSION,
    TARGETS,
    ExportResult,
    export_model,
)

__all__ = [
    "DEFAULT_TOLERANCE",
    "EXPORT_FILE",
    "EXPORT_FORMAT",
    "EXPORT_FORMAT_VERSION",
    "TARGETS",
    "ExportResult",
    "ParityFailed",
    "export_model",
    "tolerances",
]
