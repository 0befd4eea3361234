"""Evaluation between epochs: the validation loss and the selection metric.

Both run with ``module.eval()``, under :func:`torch.no_grad`, inside
:func:`torch.random.fork_rng`: they consume no random numbers of the training, so adding a
metric or changing ``metric_every`` leaves the trajectory as is.  The validation loss starts
from torch's global generator seeded with ``seed``: a validation loss that draws random numbers
(a GAN's energy score) uses the same draws every epoch, so epochs compare without that noise.
``metric_fn`` (lower is better) may return extra numbers besides the one that selects (a
mapping with key ``"metric"``); they go to the history as ``metric_details`` (e.g. recall and
coverage, which catch a GAN's mode collapse).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch

from hepgen.training.data import _batches, _check_losses, _Data
from hepgen.training.distributed import DistributedContext
from hepgen.training.objective import Objective
from hepgen.utils import to_jsonable

__all__ = ["EVAL_BATCH_SIZE", "MetricFn"]

logger = logging.getLogger("hepgen.training")

#: Rows per batch of the validation loss at least (no gradients: larger batches, fewer calls).
EVAL_BATCH_SIZE = 4096
#: ``metric_fn(module) -> value``: lower is better; a mapping gives the value under
#: ``"metric"`` and extra numbers to record.
MetricFn = Callable[[torch.nn.Module], "float | Mapping[str, float]"]


@contextmanager
def _evaluating(
    module: torch.nn.Module, device: torch.device, seed: int | None = None
) -> Iterator[None]:
    """eval mode, no grad, and RNG draws that do not disturb the training's generators
    (starting from ``seed`` when given: the CPU generator and the device's)."""
    devices: list[int] = []
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    was_training = module.training
    module.eval()
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            if seed is not None:
                torch.random.default_generator.manual_seed(seed)
                for index in devices:
                    with torch.cuda.device(index):
                        torch.cuda.manual_seed(seed)
            yield
    finally:
        module.train(was_training)


def _validation_loss(
    module: torch.nn.Module,
    objective: Objective,
    data: _Data,
    batch_size: int,
    device: torch.device,
    seed: int,
    dist: DistributedContext | None = None,
) -> float | None:
    """``sum w l / sum w`` over the whole set (plain mean without weights); None if not finite.

    With ``dist`` each rank scores its contiguous slice of the rows and the partial sums are
    added in rank order (:meth:`DistributedContext.sum`): every rank gets the same value.
    """
    start, stop = (0, data.n) if dist is None else dist.bounds(data.n)
    total = torch.zeros((), dtype=torch.float64, device=device)
    if stop > start:
        n_batches = max(1, math.ceil((stop - start) / batch_size))
        order = torch.arange(start, stop)
        with _evaluating(module, device, seed):
            for batch, w, n in _batches(data, order, n_batches, device):
                losses = _check_losses(objective.validation_losses(module, batch), n)
                losses = losses.to(torch.float64)
                total += losses.sum() if w is None else (w.to(torch.float64) * losses).sum()
    if dist is not None:
        total = dist.sum(total)[0]
    norm = data.n if data.weights is None else float(data.weights.to(torch.float64).sum())
    value = float(total) / norm
    return value if math.isfinite(value) else None


def _metric(
    module: torch.nn.Module, metric_fn: MetricFn, device: torch.device
) -> tuple[float | None, dict[str, Any] | None]:
    """(the selecting value or None when not finite, the extra values of a mapping or None)."""
    with _evaluating(module, device):
        result = metric_fn(module)
    details = None
    if isinstance(result, Mapping):
        if "metric" not in result:
            raise ValueError(
                "metric_fn returned a mapping without the key 'metric' (the value that selects "
                f"the epoch); keys: {', '.join(map(str, result))}"
            )
        details = to_jsonable({str(k): v for k, v in result.items() if k != "metric"})
        result = result["metric"]
    value = float(result)
    if not math.isfinite(value):
        logger.warning("metric_fn returned %r; the epoch is not eligible for selection", value)
        return None, details
    return value, details
