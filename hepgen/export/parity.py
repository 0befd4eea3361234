"""The parity check of an export: each written graph against the eager Python model.

Every graph file is run (ONNX Runtime, or ``torch.jit.load`` for TorchScript) on the same
inputs as the model it came from, :func:`hepgen.models.parity.parity_inputs`: base-space draws
(1 % of the rows at +-5 sigma) and model-space conditions from the training domain
(:func:`hepgen.export.graphs.domain_conditions`).  The reference is the eager model, not the
static graph: :meth:`ConditionalFlow.from_latent` for the samples and
:meth:`ConditionalFlow.log_prob` at the reference samples for the density;
:meth:`ConditionalGAN.generate` for a GAN.

Tolerances (largest absolute difference accepted, :func:`tolerances`):

* samples, float32: 1e-4 in model-space units (standardised coordinates: a 1e-4 shift is far
  below any detector resolution once mapped back; measured differences are ~3e-6);
* log_prob: **absolute**, ten times the sample tolerance: 1e-3 nats in float32.  Downstream,
  log-densities enter as differences (likelihood ratios, anomaly scores), which an absolute
  bound controls the same way everywhere (1e-3 nats is a 0.1 % change of the density); a
  relative bound would be loosest exactly in the tails, where ``|log p|`` is largest.  The
  factor ten covers the sum over D spline log-derivatives and D squared base coordinates
  that make one log-density (measured float32 differences ~2e-5 nats at log p ~ -94);
* ``--precision bfloat16``: ``--tolerance`` (default 0.05) for the samples and ten times it
  for log_prob, always reported.

A failed check refuses the export (:class:`ParityFailed`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from hepgen.errors import InputError, ValidationFailed
from hepgen.models.parity import ParityReport, parity_inputs, sample_parity

__all__ = [
    "DEFAULT_TOLERANCE",
    "LOG_PROB_FACTOR",
    "PARITY_ROWS",
    "ParityFailed",
    "check_graph",
    "tolerances",
]

#: Default largest absolute difference of the samples, per precision (model-space units).
DEFAULT_TOLERANCE = {"float32": 1e-4, "bfloat16": 0.05}
#: The log_prob tolerance (nats) is this many times the sample tolerance.
LOG_PROB_FACTOR = 10.0
#: Rows of the parity check per graph.
PARITY_ROWS = 4096

Runner = Callable[[np.ndarray, np.ndarray], np.ndarray]


class ParityFailed(ValidationFailed):
    """A written graph does not compute what the Python model computes (within tolerance):
    the export is refused and nothing is left at the output path.  Exit code 1, as every
    check that ran and must not pass (:class:`~hepgen.errors.ValidationFailed`): a script
    tells it from a bad command line or input (exit code 2)."""


def tolerances(precision: str, tolerance: float | None = None) -> dict[str, float]:
    """``{"sample": ..., "log_prob": ...}``: the largest absolute differences accepted.

    Parameters
    ----------
    precision : {"float32", "bfloat16"}
    tolerance : float or None
        The sample tolerance (``--tolerance``); ``None``: :data:`DEFAULT_TOLERANCE`.

    Examples
    --------
    >>> tolerances("float32")
    {'sample': 0.0001, 'log_prob': 0.001}
    >>> tolerances("bfloat16")["sample"]
    0.05
    """
    if tolerance is None:
        if precision not in DEFAULT_TOLERANCE:
            raise InputError(
                f"--precision must be one of {', '.join(DEFAULT_TOLERANCE)}, got {precision!r}"
            )
        tolerance = DEFAULT_TOLERANCE[precision]
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float):
        raise InputError(f"--tolerance must be a positive number, got {tolerance!r}")
    if not (np.isfinite(tolerance) and tolerance > 0):
        raise InputError(f"--tolerance must be a positive finite number, got {tolerance!r}")
    return {"sample": float(tolerance), "log_prob": LOG_PROB_FACTOR * float(tolerance)}


def check_graph(
    graph: Any,
    sample: Runner,
    log_prob: Runner | None,
    tolerance: dict[str, float],
    n_rows: int = PARITY_ROWS,
    seed: int = 0,
) -> list[ParityReport]:
    """The parity reports of one exported generator.

    Parameters
    ----------
    graph : ExportGraph
        The generator: its reference functions, widths and parity conditions.
    sample, log_prob : callable
        The written graphs, run from their files (``log_prob`` None for a GAN).
    tolerance : dict
        :func:`tolerances`.
    n_rows : int
        Rows compared.
    seed : int
        Of :func:`~hepgen.models.parity.parity_inputs`.

    Returns
    -------
    list of ParityReport
        ``<stem>.sample`` and, for a flow, ``<stem>.log_prob`` (its ``what``).
    """
    z, c = parity_inputs(n_rows, graph.n_latent, graph.conditions, seed=seed)
    reports = [
        sample_parity(
            graph.reference_sample, sample, z, c, tolerance["sample"], f"{graph.stem}.sample"
        )
    ]
    if log_prob is not None and graph.reference_log_prob is not None:
        x = np.ascontiguousarray(graph.reference_sample(z, c), dtype=np.float32)
        reports.append(
            sample_parity(
                graph.reference_log_prob,
                log_prob,
                x,
                c,
                tolerance["log_prob"],
                f"{graph.stem}.log_prob",
            )
        )
    return reports
