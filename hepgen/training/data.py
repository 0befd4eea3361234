"""Training data as tensors: checks, event weights and batches.

**Event weights** (key ``"w"`` of the data dicts, optional, may be negative, e.g. sWeights).
The loss of a training batch ``B`` is ``sum_{i in B} w_i l_i / (|B| * mean(w))``, where
``mean(w)`` is taken over the *whole* training set.  Averaged over the batches this is the
weighted mean ``sum w l / sum w`` of the whole training set, and integer weights act exactly
as duplicated events.  Dividing instead by the batch's own ``sum w`` would be wrong for
sWeights: a batch's weights can sum to zero or below, which would blow up or flip the sign of
its gradient.  A training set with ``mean(w) <= 0`` is rejected; the validation loss is the
weighted mean over the whole validation set (``sum w`` must be > 0).  ``loss_fn`` never sees
``"w"``: the loop applies the weights, so they cannot be applied twice.

**Batches.**  Each epoch draws a permutation from a seeded :class:`torch.Generator` and cuts it
into ``ceil(n / batch_size)`` nearly equal batches (``torch.tensor_split``), so every event is
used and no batch is a tiny remainder.  Batches are cut from CPU tensors that share the numpy
memory and moved to the device per batch (on CUDA the loop moves the whole set once when it
takes less than half of the free GPU memory).  Arrays keep their dtype (give float32).  With
several processes (:mod:`hepgen.training.distributed`) every rank cuts the same batches and
keeps its contiguous slice of each.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from hepgen.errors import InputError
from hepgen.training.distributed import shard_bounds

__all__: list[str] = []  # the engine's internals: hepgen.training exports what users need

#: The key of the event weights in the data dicts.
_WEIGHT_KEY = "w"


@dataclass
class _Data:
    """Arrays as tensors (sharing the numpy memory), with optional weights."""

    tensors: dict[str, torch.Tensor]
    weights: torch.Tensor | None
    n: int

    def to(self, device: torch.device) -> _Data:
        return _Data(
            {k: t.to(device) for k, t in self.tensors.items()},
            None if self.weights is None else self.weights.to(device),
            self.n,
        )

    def nbytes(self) -> int:
        total = sum(t.element_size() * t.numel() for t in self.tensors.values())
        if self.weights is not None:
            total += self.weights.element_size() * self.weights.numel()
        return total


def _prepare_data(data: Mapping[str, np.ndarray], what: str) -> _Data:
    """Check a data dict (equal lengths, finite floats, 1-D finite weights) -> tensors."""
    if not isinstance(data, Mapping) or not data:
        raise InputError(f"{what}: expected a non-empty dict of arrays, got {type(data).__name__}")
    tensors: dict[str, torch.Tensor] = {}
    weights = None
    lengths: dict[str, int] = {}
    for key, value in data.items():
        if not isinstance(key, str):
            raise InputError(f"{what}: keys must be strings, got {key!r}")
        array = np.asarray(value)
        if array.ndim == 0:
            raise InputError(f"{what}[{key!r}]: expected an array with one row per event")
        if array.dtype.kind not in "biuf":
            raise InputError(f"{what}[{key!r}]: unsupported dtype {array.dtype}")
        lengths[key] = array.shape[0]
        if array.dtype.kind == "f":
            n_bad = int(np.count_nonzero(~np.isfinite(array)))
            if n_bad:
                raise InputError(f"{what}[{key!r}]: {n_bad} non-finite values (NaN or inf)")
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        if key == _WEIGHT_KEY:
            if array.ndim != 1:
                raise InputError(
                    f"{what}[{key!r}]: event weights must have shape (n,), got {array.shape}"
                )
            weights = tensor
        else:
            tensors[key] = tensor
    if len(set(lengths.values())) > 1:
        raise InputError(
            f"{what}: arrays must have one row per event, got lengths "
            + ", ".join(f"{k}={n}" for k, n in lengths.items())
        )
    n = next(iter(lengths.values()))
    if n == 0:
        raise InputError(f"{what}: no events")
    if not tensors:
        raise InputError(f"{what}: only weights {_WEIGHT_KEY!r}, no data arrays")
    return _Data(tensors, weights, n)


def _weighted_batch_loss(
    losses: torch.Tensor, weights: torch.Tensor | None, mean_weight: float
) -> torch.Tensor:
    """``sum(w_i l_i) / (len(batch) * mean_weight)``, or ``mean(l)`` without weights.

    ``mean_weight`` is the mean weight over the whole training set, so a batch whose weights
    sum to zero or less (sWeights) still gets a finite gradient of the right sign.
    """
    if weights is None:
        return losses.mean()
    return (weights.to(losses.dtype) * losses).sum() / (losses.shape[0] * mean_weight)


def _check_losses(losses: Any, n: int) -> torch.Tensor:
    if not isinstance(losses, torch.Tensor) or losses.ndim != 1 or losses.shape[0] != n:
        shape = tuple(losses.shape) if isinstance(losses, torch.Tensor) else type(losses).__name__
        raise ValueError(
            f"loss_fn must return per-event losses as a tensor of shape ({n},), got {shape}"
        )
    return losses


def _prepare_sets(
    train_data: Mapping[str, np.ndarray], validation_data: Mapping[str, np.ndarray] | None
) -> tuple[_Data, _Data | None, float]:
    """Check both data dicts; return them as tensors and the training set's mean weight."""
    train_set = _prepare_data(train_data, "train_data")
    val_set = None
    if validation_data is not None:
        val_set = _prepare_data(validation_data, "validation_data")
        if set(val_set.tensors) != set(train_set.tensors):
            raise InputError(
                f"validation_data has keys {sorted(val_set.tensors)} but train_data has "
                f"{sorted(train_set.tensors)}"
            )
        if val_set.weights is not None and not float(val_set.weights.double().sum()) > 0:
            raise InputError("validation_data['w']: the weights must have a positive sum")
    mean_weight = 1.0
    if train_set.weights is not None:
        mean_weight = float(train_set.weights.double().mean())
        if not mean_weight > 0:
            raise InputError(
                f"train_data['w']: the mean weight is {mean_weight:.6g}; it must be positive "
                "(the loss is sum w l / (n mean w))"
            )
    return train_set, val_set, mean_weight


def _batches(
    data: _Data,
    order: torch.Tensor,
    n_batches: int,
    device: torch.device,
    shard: tuple[int, int] | None = None,
) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor | None, int]]:
    """Yield (batch dict, weights or None, rows of the whole batch) for the index chunks of
    ``order``.

    ``shard=(rank, world_size)``: each chunk is cut into ``world_size`` contiguous slices and
    the batch holds slice ``rank`` only (:func:`hepgen.training.distributed.shard_bounds`);
    the third item is still the whole chunk's length.
    """
    source = next(iter(data.tensors.values())).device
    for chunk in torch.tensor_split(order.to(source), n_batches):
        index = chunk
        if shard is not None:
            start, stop = shard_bounds(chunk.shape[0], *shard)
            index = chunk[start:stop]
        batch = {
            k: t.index_select(0, index).to(device, non_blocking=True)
            for k, t in data.tensors.items()
        }
        w = None
        if data.weights is not None:
            w = data.weights.index_select(0, index).to(device, non_blocking=True)
        yield batch, w, int(chunk.shape[0])
