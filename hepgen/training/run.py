"""One training run's state: epochs, the NaN guard, early stopping, the best weights.

:class:`_Run` holds the module, the optimizers, the schedule, the shuffle generator, the
counters and the best weights of a call of :func:`~hepgen.training.train`, trains one epoch at a
time, and writes or restores itself as a checkpoint (:mod:`hepgen.training.checkpoint`).

* **NaN guard.**  A batch whose loss or global gradient norm is not finite is skipped (no
  optimizer step, gradients cleared) and counted; after ``max_bad_batches`` *consecutive* bad
  batches :class:`~hepgen.training.TrainingError` names the epoch, the batch and the count.
* **Early stopping.**  An epoch improves when its validation loss is below the best so far
  minus ``min_delta``; training stops after ``patience`` epochs without one.  Without
  validation data there is no early stopping.
* **Final weights.**  With ``metric_fn`` (lower is better; evaluated every ``metric_every``
  epochs and at the last epoch, whatever ends the training) the module ends with the weights
  of the epoch with the best metric (ties: lower validation loss, then the earlier epoch);
  else of the epoch with the lowest validation loss; without validation data, the last
  epoch's.  ``TrainingResult.selection`` says which.

References
----------
- P. Micikevicius et al., "Mixed precision training", ICLR 2018, arXiv:1710.03740 (skipping
  steps with non-finite gradients).
- L. Prechelt, "Early stopping - but when?", in Neural Networks: Tricks of the Trade,
  Springer 1998, doi:10.1007/3-540-49430-8_3.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hepgen.errors import InputError
from hepgen.settings.training import TrainingSettings
from hepgen.training.checkpoint import (
    _BEST_LOSS,
    _BEST_METRIC,
    _LAST,
    _LAST_JSON,
    _STATE_KEY,
    CHECKPOINT_FORMAT_VERSION,
    _check_resumable,
    _load_optimizers,
    _optimizer_tensors,
    _read_checkpoint,
    _save_tensors,
    _state_copy,
    _with_prefix,
)
from hepgen.training.data import _batches, _Data
from hepgen.training.distributed import DistributedContext
from hepgen.training.errors import TrainingError
from hepgen.training.evaluation import EVAL_BATCH_SIZE, MetricFn, _metric, _validation_loss
from hepgen.training.objective import (
    LikelihoodObjective,
    Objective,
    StepContext,
    _check_optimizers,
    _DistributedLikelihood,
    _LossModule,
)
from hepgen.training.schedule import _Schedule
from hepgen.utils import to_jsonable, write_json

__all__: list[str] = []  # the engine's internals: hepgen.training exports what users need

logger = logging.getLogger("hepgen.training")


@dataclass
class _State:
    """Everything of a run that the checkpoint's JSON holds, besides the settings."""

    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_loss: float | None = None
    best_loss_epoch: int | None = None
    best_metric: float | None = None
    best_metric_loss: float | None = None
    best_metric_epoch: int | None = None
    es_best: float | None = None  # early stopping's reference loss (None: none yet)
    es_bad_epochs: int = 0
    consecutive_bad_batches: int = 0
    n_bad_batches: int = 0
    stopped: str | None = None


def _distributed_objective(
    module: torch.nn.Module,
    objective: Objective,
    dist: DistributedContext,
    device: torch.device,
    rows_per_batch: int,
) -> Objective:
    """The objective of one rank: a plain loss through DistributedDataParallel.

    Raises
    ------
    InputError
        An objective other than a plain per-event loss (adversarial training), or fewer
        rows per batch than processes.
    """
    if type(objective) is not LikelihoodObjective:
        raise InputError(
            f"{type(objective).__name__}: training on {dist.world_size} processes "
            "(DistributedDataParallel) supports a plain per-event loss only (model.kind: "
            "flow); adversarial training (several optimizers, the gradient penalty's double "
            "backward) runs in one process: use --devices 1 or leave out torchrun"
        )
    if rows_per_batch < dist.world_size:
        raise InputError(
            f"training.batch_size: {rows_per_batch} rows per batch cannot be split over "
            f"{dist.world_size} processes; use a larger batch_size or fewer processes"
        )
    from torch.nn.parallel import DistributedDataParallel

    wrapped = DistributedDataParallel(
        _LossModule(module, objective.loss_fn),
        device_ids=[device.index] if device.type == "cuda" else None,
    )
    return _DistributedLikelihood(objective.loss_fn, wrapped, dist)


class _Run:
    """One training run: module, optimizer, schedule, generators, state, best weights."""

    def __init__(
        self,
        module: torch.nn.Module,
        objective: Objective,
        settings: TrainingSettings,
        device: torch.device,
        train_set: _Data,
        val_set: _Data | None,
        mean_weight: float,
        metric_fn: MetricFn | None,
        dist: DistributedContext | None = None,
    ) -> None:
        self.module = module.to(device)
        self.dist = dist
        self.steps_per_epoch = max(1, math.ceil(train_set.n / settings.batch_size))
        if dist is not None:
            objective = _distributed_objective(
                self.module, objective, dist, device, train_set.n // self.steps_per_epoch
            )
        self.objective = objective
        self.settings = settings
        self.device = device
        self.mean_weight = mean_weight
        self.metric_fn = metric_fn
        if not any(p.requires_grad for p in module.parameters()):
            raise ValueError("module has no trainable parameters")
        self.optimizers = _check_optimizers(objective.optimizers(self.module, settings), module)
        self.objective_config = to_jsonable(objective.describe())
        self.n_train = train_set.n
        self.n_validation = 0 if val_set is None else val_set.n
        self.schedule = _Schedule(settings, self.steps_per_epoch)
        self.shuffle = torch.Generator()
        if device.type == "cuda":  # preload when the data take under half the free memory
            free, _ = torch.cuda.mem_get_info(device)
            needed = train_set.nbytes() + (0 if val_set is None else val_set.nbytes())
            if needed < free // 2:
                train_set = train_set.to(device)
                val_set = None if val_set is None else val_set.to(device)
        self.train_set = train_set
        self.val_set = val_set
        self.state = _State()
        self.best_loss_weights: dict[str, torch.Tensor] | None = None
        self.best_metric_weights: dict[str, torch.Tensor] | None = None

    # ---- one epoch ------------------------------------------------------------------------

    def epoch(self, bar: Any, deadline: float | None = None) -> tuple[dict[str, Any], bool, bool]:
        """Train one epoch, evaluate, update the bests; (history record, improved flags).

        ``deadline`` (``time.monotonic()`` seconds): the time limit's end, so that the metric
        is also evaluated on an epoch that the time limit makes the last one.
        """
        s, state = self.settings, self.state
        state.epoch += 1
        start = time.monotonic()
        train_loss, n_bad, lr = self._train_batches(bar)
        train_seconds = time.monotonic() - start
        if n_bad and (self.dist is None or self.dist.is_main):
            logger.warning(
                "epoch %d: skipped %d of %d batches with a non-finite loss or gradient",
                state.epoch,
                n_bad,
                self.steps_per_epoch,
            )
        val_loss = self._validate()
        metric, details = None, None
        wanted = self.metric_fn is not None and (
            self._is_last(deadline) or state.epoch % s.metric_every == 0
        )
        if self.dist is not None:  # rank 0's clock decides, rank 0 evaluates
            wanted = self.dist.broadcast(wanted)
        if wanted:
            metric, details = self._metric()
        self.schedule.end_epoch(val_loss if self.val_set is not None else train_loss)
        improved_loss, improved_metric = self._update_bests(val_loss, metric)
        record = to_jsonable(
            {
                "epoch": state.epoch,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "metric": metric,
                "lr": lr,
                "seconds": time.monotonic() - start,
                "n_bad_batches": n_bad,
                "events_per_second": self.n_train / max(train_seconds, 1e-9),
                **({} if details is None else {"metric_details": details}),
            }
        )
        state.history.append(record)
        return record, improved_loss, improved_metric

    def _metric(self) -> tuple[float | None, dict[str, Any] | None]:
        """The selection metric now; with several ranks, rank 0's, broadcast."""
        assert self.metric_fn is not None
        if self.dist is None:
            return _metric(self.module, self.metric_fn, self.device)
        value = _metric(self.module, self.metric_fn, self.device) if self.dist.is_main else None
        return self.dist.broadcast(value)

    def _validate(self) -> float | None:
        """The validation loss after this epoch (None without validation data or when not
        finite), and the early-stopping counters updated with it."""
        if self.val_set is None:
            return None
        s, state = self.settings, self.state
        val_loss = _validation_loss(
            self.module,
            self.objective,
            self.val_set,
            max(s.batch_size, EVAL_BATCH_SIZE),
            self.device,
            s.seed,
            self.dist,
        )
        reference = math.inf if state.es_best is None else state.es_best
        if val_loss is not None and val_loss < reference - s.min_delta:
            state.es_best, state.es_bad_epochs = val_loss, 0
        else:
            state.es_bad_epochs += 1
        return val_loss

    def _is_last(self, deadline: float | None) -> bool:
        """Whether the epoch just trained ends the run (max_epochs, early stopping, the time
        limit's horizon or deadline)."""
        s, state = self.settings, self.state
        horizon = self.schedule.timed_horizon
        return (
            state.epoch >= s.max_epochs
            or (self.val_set is not None and state.es_bad_epochs >= s.patience)
            or (horizon is not None and state.epoch >= horizon)
            or (deadline is not None and time.monotonic() >= deadline)
        )

    def _update_bests(self, val_loss: float | None, metric: float | None) -> tuple[bool, bool]:
        """Keep the weights of this epoch when its validation loss or its metric (ties: lower
        validation loss) is the best so far; (loss improved, metric improved)."""
        state = self.state
        improved_loss = val_loss is not None and (
            state.best_loss is None or val_loss < state.best_loss
        )
        if improved_loss:
            state.best_loss, state.best_loss_epoch = val_loss, state.epoch
            self.best_loss_weights = _state_copy(self.module)
        improved_metric = metric is not None and (
            state.best_metric is None
            or metric < state.best_metric
            or (
                metric == state.best_metric
                and val_loss is not None
                and (state.best_metric_loss is None or val_loss < state.best_metric_loss)
            )
        )
        if improved_metric:
            state.best_metric, state.best_metric_epoch = metric, state.epoch
            state.best_metric_loss = val_loss
            self.best_metric_weights = _state_copy(self.module)
        return improved_loss, improved_metric

    def _train_batches(self, bar: Any) -> tuple[float | None, int, float]:
        """One pass over the shuffled training set: (mean loss of good batches, n bad, lr)."""
        s, state, schedule = self.settings, self.state, self.schedule
        order = torch.randperm(self.n_train, generator=self.shuffle)
        sum_loss, n_good, n_bad, lr = 0.0, 0, 0, schedule.lr()
        shard = None if self.dist is None else (self.dist.rank, self.dist.world_size)
        batches = _batches(self.train_set, order, self.steps_per_epoch, self.device, shard)
        for b, (batch, w, n) in enumerate(batches, start=1):
            lr = schedule.lr()
            context = StepContext(self.optimizers, lr, schedule.step, self.mean_weight, s.grad_clip)
            value = self.objective.step(self.module, batch, w, context)
            if value is not None and math.isfinite(float(value)):
                sum_loss += float(value) * n
                n_good += n
                state.consecutive_bad_batches = 0
            else:
                n_bad += 1
                state.n_bad_batches += 1
                state.consecutive_bad_batches += 1
                logger.debug("epoch %d batch %d: non-finite loss or gradient", state.epoch, b)
                if state.consecutive_bad_batches >= s.max_bad_batches:
                    raise TrainingError(
                        f"training stopped at epoch {state.epoch}, batch {b} of "
                        f"{self.steps_per_epoch}: {state.consecutive_bad_batches} consecutive "
                        "batches had a non-finite loss or gradient norm (max_bad_batches="
                        f"{s.max_bad_batches}; last loss {value!r}); check the inputs and the "
                        "loss, lower learning_rate or set grad_clip"
                    )
            schedule.step += 1
            bar.update(n)
        return (sum_loss / n_good if n_good else None), n_bad, lr

    def selected(self) -> tuple[str, int, dict[str, torch.Tensor] | None]:
        """(selection, epoch, weights or None for the current ones) for the end of training."""
        state = self.state
        if state.best_metric_epoch is not None and self.best_metric_weights is not None:
            return "metric", state.best_metric_epoch, self.best_metric_weights
        if state.best_loss_epoch is not None and self.best_loss_weights is not None:
            return "loss", state.best_loss_epoch, self.best_loss_weights
        return "last", state.epoch, None

    # ---- checkpoints ----------------------------------------------------------------------

    def save(self, folder: Path, improved_loss: bool, improved_metric: bool) -> None:
        """Write the best-weight files (when improved), ``last.safetensors``, ``last.json``."""
        info = {"epoch": str(self.state.epoch), "format_version": str(CHECKPOINT_FORMAT_VERSION)}
        if improved_loss and self.best_loss_weights is not None:
            _save_tensors(folder / _BEST_LOSS, self.best_loss_weights, info)
        if improved_metric and self.best_metric_weights is not None:
            _save_tensors(folder / _BEST_METRIC, self.best_metric_weights, info)
        tensors = {f"module.{k}": v for k, v in _state_copy(self.module).items()}
        optimizer_tensors, optimizer_scalars = _optimizer_tensors(self.optimizers)
        tensors.update(optimizer_tensors)
        for prefix, weights in (
            ("best_loss.", self.best_loss_weights),
            ("best_metric.", self.best_metric_weights),
        ):
            if weights is not None:
                tensors.update({prefix + k: v for k, v in weights.items()})
        tensors["rng.torch"] = torch.get_rng_state()
        tensors["rng.shuffle"] = self.shuffle.get_state()
        if self.device.type == "cuda":
            for i, rng in enumerate(torch.cuda.get_rng_state_all()):
                tensors[f"rng.cuda.{i:03d}"] = rng
        state = to_jsonable(
            {
                "format": "hepgen-training-checkpoint",
                "format_version": CHECKPOINT_FORMAT_VERSION,
                "settings": self.settings.to_dict(),
                "n_train": self.n_train,
                "n_validation": self.n_validation,
                "steps_per_epoch": self.steps_per_epoch,
                **dataclasses.asdict(self.state),
                "schedule": self.schedule.state(),
                "optimizer_scalars": optimizer_scalars,
                **({"objective": self.objective_config} if self.objective_config else {}),
            }
        )
        _save_tensors(
            folder / _LAST, tensors, {_STATE_KEY: json.dumps(state, allow_nan=False), **info}
        )
        write_json(folder / _LAST_JSON, state)

    def restore(self, path: Path) -> None:
        """Load ``last.safetensors`` into the module, optimizer, schedule, RNGs and state."""
        state, tensors = _read_checkpoint(path)
        _check_resumable(
            path, state, self.settings, self.objective_config, self.n_train, self.n_validation
        )
        try:
            self.module.load_state_dict(_with_prefix(tensors, "module."))
            known = {f.name for f in dataclasses.fields(_State)}
            self.state = _State(**{k: v for k, v in state.items() if k in known})
            self.schedule.load(state["schedule"])
            torch.set_rng_state(tensors["rng.torch"])
            self.shuffle.set_state(tensors["rng.shuffle"])
        except (RuntimeError, KeyError, TypeError, ValueError) as exc:
            raise TrainingError(
                f"cannot resume: {path} does not fit this module or run ({exc})"
            ) from exc
        _load_optimizers(self.optimizers, tensors, state.get("optimizer_scalars") or {}, path)
        cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
        if cuda_states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(cuda_states[: torch.cuda.device_count()])
        self.best_loss_weights = _with_prefix(tensors, "best_loss.") or None
        self.best_metric_weights = _with_prefix(tensors, "best_metric.") or None
        logger.info("resuming from %s after epoch %d", path, self.state.epoch)
