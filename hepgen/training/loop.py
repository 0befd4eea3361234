"""The training loop: :func:`train` runs epochs until a stopping rule, checkpoints, selects.

:func:`train` sets a run up (device, data, size-based settings, a fresh seed or a resumed
checkpoint), trains epoch after epoch until ``max_epochs``, early stopping or the time limit,
writes checkpoints, and ends with the selected weights.  ``torch.manual_seed(seed)`` at the
start and a seeded shuffle generator make two runs with the same seed on CPU bit-identical
(CUDA kernels are not guaranteed to be deterministic).

* **Checkpoints** (``checkpoint_dir``, files: :mod:`hepgen.training.checkpoint`) are written
  after the first epoch of a call, then after an epoch when :data:`CHECKPOINT_SECONDS` have
  passed since the last one, and after the last epoch: a crash costs at most that much
  training (a small data set's epoch takes a second or two; writing the checkpoint of a large
  model takes a tenth of that).
* **Resume.**  ``resume=True`` continues exactly where ``last.safetensors`` left off: on CPU,
  3 epochs plus 3 resumed give the same bits as 6 straight.  The settings that shape the
  trajectory (:data:`~hepgen.training.checkpoint.RESUME_FIXED_SETTINGS` and the objective's
  ``describe()``) must be unchanged; ``max_epochs``, ``patience``, ``min_delta``,
  ``max_bad_batches``, ``device``, ``time_limit`` and ``metric_every`` may change.
* **Time limit.**  ``time_limit`` counts the wall time of the current call; with the cosine
  schedule training stops with ``stopped="time_limit"`` at the end of the horizon fitted to it
  (:mod:`hepgen.training.schedule`).  A run that stopped on its time limit is finished:
  resuming it restores its final state and trains no further.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hepgen.devices import torch_device
from hepgen.errors import ConfigError
from hepgen.progress import progress
from hepgen.settings.training import TrainingSettings
from hepgen.training.checkpoint import _LAST
from hepgen.training.data import _prepare_sets
from hepgen.training.distributed import init_from_env, is_main_process
from hepgen.training.evaluation import MetricFn
from hepgen.training.objective import LikelihoodObjective, LossFn, Objective
from hepgen.training.result import TrainingResult
from hepgen.training.run import _Run

__all__ = ["CHECKPOINT_SECONDS", "train"]

logger = logging.getLogger("hepgen.training")

#: After the first epoch of a call, checkpoints are written at most every this many seconds
#: (and after the last epoch): a checkpoint of a large model costs ~0.15 s, a tenth of a
#: small data set's epoch.
CHECKPOINT_SECONDS = 30.0


def train(
    module: torch.nn.Module,
    loss_fn: LossFn | None,
    train_data: Mapping[str, np.ndarray],
    validation_data: Mapping[str, np.ndarray] | None,
    settings: TrainingSettings,
    checkpoint_dir: str | os.PathLike | None = None,
    resume: bool = False,
    metric_fn: MetricFn | None = None,
    quiet: bool = False,
    objective: Objective | None = None,
    metric_cost: float | None = None,
) -> TrainingResult:
    """Train ``module`` by minimising the weighted mean of ``loss_fn`` over ``train_data``
    (or as ``objective`` says).

    Parameters
    ----------
    module : torch.nn.Module
        The model; moved to the settings' device and trained in place.  At the end it holds
        the selected weights (:mod:`hepgen.training.run`) and its original train/eval mode.
    loss_fn : callable ``(module, batch) -> torch.Tensor``
        ``batch`` maps every key of the data dicts except ``"w"`` to a tensor of that batch's
        rows on the device (dtype as given: pass float32).  Returns the per-event losses,
        shape ``(len(batch),)``, differentiable w.r.t. the module's parameters.  ``None``
        when ``objective`` is given.
    train_data : mapping of str to numpy.ndarray
        Arrays with one row per event (``n`` rows each), e.g. ``{"x": (n, D), "c": (n, C)}``,
        with optional event weights ``"w"`` of shape ``(n,)`` (negative allowed,
        ``mean(w) > 0``).
    validation_data : mapping of str to numpy.ndarray or None
        The same keys, held-out events; drives early stopping, the plateau schedule and the
        choice of the final weights.  ``None``: none of these.
    settings : TrainingSettings
        Optimizer, schedule, stopping, device, seed.
    checkpoint_dir : path or None
        Folder for the per-epoch checkpoints (created when missing); ``None``: no files.
    resume : bool
        Continue from ``checkpoint_dir/last.safetensors`` instead of starting afresh.
    metric_fn : callable ``(module) -> float | Mapping[str, float]`` or None
        Lower is better (e.g. the mean per-feature KS statistic of samples drawn on the
        validation conditions).  Called in eval mode under ``torch.no_grad`` every
        ``settings.metric_every`` epochs; its random draws do not affect the training.  A
        mapping gives the selecting value under ``"metric"`` and extra values to record (the
        history's ``metric_details``).
    quiet : bool
        No progress bar (the per-epoch log lines go to the ``hepgen.training`` logger).
    objective : Objective or None
        How a batch updates the module (several optimizers, adversarial training); exclusive
        with ``loss_fn``.  ``None``: ``LikelihoodObjective(loss_fn)``.
    metric_cost : float or None
        The caller's estimate of one ``metric_fn`` call, in units of one training epoch
        (e.g. a flow's sampling of the validation rows); with ``settings.metric_every`` left
        ``None`` it sets how often the metric runs (:meth:`TrainingSettings.resolve`).

    Returns
    -------
    TrainingResult

    Notes
    -----
    Under ``torchrun`` (``WORLD_SIZE > 1``) every process calls ``train`` with the same data
    and settings; the call joins the process group (:mod:`hepgen.training.distributed`) and
    trains with DistributedDataParallel: each rank takes its slice of every batch, on
    ``cuda:LOCAL_RANK`` or the CPU; rank 0 alone writes checkpoints and shows progress; every
    rank returns the same result and ends with the same weights.

    Raises
    ------
    InputError
        Under torchrun: an ``objective`` other than a plain loss, or fewer rows per batch
        than processes.
    InputError
        Arrays of unequal length, non-finite values, bad weights, mismatched validation keys.
    ConfigError
        ``resume=True`` without a ``checkpoint_dir``.
    InputError
        A CUDA device that torch does not see (:func:`hepgen.devices.torch_device`).
    TrainingError
        ``max_bad_batches`` consecutive non-finite batches; a missing, corrupt or
        incompatible checkpoint on resume.

    Examples
    --------
    >>> import numpy as np, torch
    >>> from hepgen.training import TrainingSettings, train
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(2000, 1)).astype(np.float32)
    >>> y = (2.0 * x + 1.0 + 0.1 * rng.normal(size=(2000, 1))).astype(np.float32)
    >>> model = torch.nn.Linear(1, 1)
    >>> def squared_error(module, batch):
    ...     return ((module(batch["x"]) - batch["y"]) ** 2).sum(dim=1)
    >>> settings = TrainingSettings(max_epochs=20, batch_size=100, learning_rate=0.05,
    ...                             device="cpu")
    >>> result = train(model, squared_error, {"x": x, "y": y}, None, settings, quiet=True)
    >>> round(model.weight.item(), 2), round(model.bias.item(), 2), result.stopped
    (2.0, 1.0, 'max_epochs')
    """
    objective = _objective(loss_fn, objective, settings)
    started = time.monotonic()
    dist = init_from_env(settings.device)
    if dist is not None:
        settings = settings.replace(device=dist.device)
        quiet = quiet or not dist.is_main
    device = torch_device(settings.device)
    train_set, val_set, mean_weight = _prepare_sets(train_data, validation_data)
    settings, chosen = settings.resolve(train_set.n, metric_cost if metric_fn else None)
    if chosen:
        logger.info(
            "chosen from the %d training rows: %s",
            train_set.n,
            ", ".join(f"{name}={getattr(settings, name)}" for name in chosen),
        )
    if resume and checkpoint_dir is None:
        raise ConfigError("resume=True needs a checkpoint_dir")
    run = _Run(
        module, objective, settings, device, train_set, val_set, mean_weight, metric_fn, dist
    )
    folder = None if checkpoint_dir is None else Path(checkpoint_dir)
    _start(run, folder, resume)
    was_training = module.training
    module.train()
    try:  # rank 0 alone writes checkpoints
        _train_epochs(run, _Checkpoints(folder if is_main_process() else None), started, quiet)
    finally:
        module.train(was_training)
    return _finish(run, module, chosen)


def _objective(
    loss_fn: LossFn | None, objective: Objective | None, settings: TrainingSettings
) -> Objective:
    """Check :func:`train`'s arguments; the objective to train with."""
    if not isinstance(settings, TrainingSettings):
        raise TypeError(f"settings must be a TrainingSettings, got {type(settings).__name__}")
    if (loss_fn is None) == (objective is None):
        raise TypeError("train needs exactly one of loss_fn and objective")
    if objective is None:
        return LikelihoodObjective(loss_fn)
    if not isinstance(objective, Objective):
        raise TypeError(f"objective must be an Objective, got {type(objective).__name__}")
    return objective


def _start(run: _Run, folder: Path | None, resume: bool) -> None:
    """Seed a fresh run or restore a checkpointed one, and decide whether it is already over.

    A resumed run decides anew (``max_epochs`` or ``patience`` may have grown), except after
    its time limit: that run is finished (its cosine horizon is spent).
    """
    settings = run.settings
    if resume:
        assert folder is not None
        run.restore(folder / _LAST)
    else:
        torch.manual_seed(settings.seed)
        run.shuffle.manual_seed(settings.seed)
    if folder is not None and is_main_process():
        folder.mkdir(parents=True, exist_ok=True)
    state = run.state
    timed_out = resume and state.stopped == "time_limit"
    state.stopped = None
    if timed_out:
        state.stopped = "time_limit"
        logger.info(
            "the checkpointed run stopped on its time limit after epoch %d: finished, "
            "not trained further",
            state.epoch,
        )
    elif state.epoch >= settings.max_epochs:
        state.stopped = "max_epochs"
    elif run.val_set is not None and state.es_bad_epochs >= settings.patience:
        state.stopped = "early_stopping"


@dataclass
class _Checkpoints:
    """When to write checkpoints: after the first epoch of the call, every
    :data:`CHECKPOINT_SECONDS`, and after the last epoch; the best-weight files are rewritten
    when the best improved since the last checkpoint."""

    folder: Path | None
    last_save: float | None = None
    pending_loss: bool = False
    pending_metric: bool = False

    def after_epoch(self, run: _Run, improved_loss: bool, improved_metric: bool) -> None:
        """Note the epoch's improvements; write a checkpoint when one is due."""
        self.pending_loss = self.pending_loss or improved_loss
        self.pending_metric = self.pending_metric or improved_metric
        if self.folder is not None and (
            self.last_save is None
            or run.state.stopped is not None
            or time.monotonic() - self.last_save >= CHECKPOINT_SECONDS
        ):
            run.save(self.folder, self.pending_loss, self.pending_metric)
            self.pending_loss = self.pending_metric = False
            self.last_save = time.monotonic()


def _train_epochs(run: _Run, checkpoints: _Checkpoints, started: float, quiet: bool) -> None:
    """Train epochs until a stopping rule says why, with a checkpoint and a report after each."""
    settings, state = run.settings, run.state
    total = run.train_set.n * max(0, settings.max_epochs - state.epoch)
    deadline = None if settings.time_limit is None else started + settings.time_limit
    with progress(total=total, desc="training", unit="events", quiet=quiet) as bar:
        while state.stopped is None:
            record, improved_loss, improved_metric = run.epoch(bar, deadline)
            state.stopped = _stop_reason(run, record, started)
            if run.dist is not None:  # rank 0's clock decides for every rank
                _agree_on_stop(run)
            checkpoints.after_epoch(run, improved_loss, improved_metric)
            _report_epoch(run, record, bar, started)


def _stop_reason(run: _Run, record: Mapping[str, Any], started: float) -> str | None:
    """Why training stops after this epoch (``None``: it goes on); with a time limit, fits
    the cosine horizon to it after the first epoch."""
    settings, state = run.settings, run.state
    if run.val_set is not None and state.es_bad_epochs >= settings.patience:
        return "early_stopping"
    if state.epoch >= settings.max_epochs:
        return "max_epochs"
    if settings.time_limit is not None:
        left = settings.time_limit - (time.monotonic() - started)
        run.schedule.fit_to_time_limit(state.epoch, left, record["seconds"])
        horizon = run.schedule.timed_horizon
        if left <= 0 or (horizon is not None and state.epoch >= horizon):
            return "time_limit"
    return None


def _agree_on_stop(run: _Run) -> None:
    """Every rank takes rank 0's stop reason and time-limit horizon."""
    assert run.dist is not None
    schedule = run.schedule
    stopped, horizon = run.dist.broadcast((run.state.stopped, schedule.timed_horizon))
    run.state.stopped = stopped
    if horizon != schedule.timed_horizon:
        schedule.timed_horizon = horizon
        schedule.total = (
            run.settings.max_epochs if horizon is None else horizon
        ) * schedule.steps_per_epoch


def _report_epoch(run: _Run, record: Mapping[str, Any], bar: Any, started: float) -> None:
    """Progress bar (total, postfix) and one log line for the epoch just trained."""
    settings, state = run.settings, run.state
    if state.stopped is not None and not bar.disable:
        bar.total = bar.n  # ends at 100 % whatever stopped it
    elif settings.time_limit is not None:
        _fit_bar_to_time_limit(bar, settings.time_limit - (time.monotonic() - started))
    if not is_main_process():
        return
    bar.set_postfix(
        epoch=state.epoch,
        train=_fmt(record["train_loss"]),
        val=_fmt(record["val_loss"]),
        refresh=False,
    )
    logger.info(
        "epoch %d/%d: train %s, val %s, metric %s, lr %.3g, %.1f s, %.3g events/s, %d bad batches",
        state.epoch,
        settings.max_epochs,
        _fmt(record["train_loss"]),
        _fmt(record["val_loss"]),
        _fmt(record["metric"]),
        record["lr"],
        record["seconds"],
        record["events_per_second"],
        record["n_bad_batches"],
    )


def _finish(run: _Run, module: torch.nn.Module, chosen: list[str]) -> TrainingResult:
    """Load the selected weights into ``module``; the run's :class:`TrainingResult`."""
    state = run.state
    selection, selected_epoch, selected = run.selected()
    if selected is not None:
        module.load_state_dict(selected)
    logger.info(
        "training stopped (%s) after epoch %d; the module holds epoch %d (selected by %s)",
        state.stopped,
        state.epoch,
        selected_epoch,
        selection,
    )
    return TrainingResult(
        history=state.history,
        best_loss_epoch=state.best_loss_epoch,
        best_metric_epoch=state.best_metric_epoch,
        selected_epoch=selected_epoch,
        selection=selection,
        stopped=str(state.stopped),
        n_bad_batches=state.n_bad_batches,
        best_loss=state.best_loss,
        best_metric=state.best_metric,
        settings=run.settings.to_dict(),
        chosen_from_data_size=chosen,
        n_train=run.n_train,
    )


def _fit_bar_to_time_limit(bar: Any, seconds_left: float) -> None:
    """Shrink the bar's total to the events the time limit leaves at the current rate, so that
    its ETA is the time training will really take (never grows it beyond max_epochs)."""
    if bar.disable:
        return
    elapsed = bar.format_dict.get("elapsed") or 0.0
    if bar.total is None or bar.n <= 0 or elapsed <= 0:
        return
    reachable = bar.n + int(bar.n / elapsed * max(0.0, seconds_left))
    if reachable < bar.total:
        bar.total = reachable
        bar.refresh()


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.5g}"
