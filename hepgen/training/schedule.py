"""The learning-rate schedule: a function of the batch counter, so its state is a few numbers.

``"cosine"`` decays the rate per batch from ``learning_rate`` to 0 over ``max_epochs`` epochs
(SGDR without restarts), or, with a ``time_limit``, over the epochs that fit in it: after the
first epoch the horizon becomes ``min(max_epochs, 1 + floor(time left / first epoch's
seconds))`` and is kept from then on (checkpoints store it), so the rate anneals before the
time runs out.  ``"plateau"`` multiplies the rate by :data:`PLATEAU_FACTOR` after
``max(1, patience // 2)`` epochs without an improvement of the monitored loss (validation,
else training) by more than ``min_delta``, down to :data:`PLATEAU_MIN_SCALE` times
``learning_rate``.  ``"constant"`` keeps it.  ``warmup_steps`` batches of linear warm-up
precede any of them.  The counter advances on skipped batches too, so the schedule follows the
progress through the data; growing ``max_epochs`` on resume stretches the cosine from that
point on (unless the time limit fixed the horizon).

References
----------
- I. Loshchilov and F. Hutter, "SGDR: stochastic gradient descent with warm restarts",
  ICLR 2017, arXiv:1608.03983 (cosine schedule).
- P. Goyal et al., "Accurate, large minibatch SGD: training ImageNet in 1 hour",
  arXiv:1706.02677 (linear warm-up).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from hepgen.settings.training import TrainingSettings

__all__ = ["PLATEAU_FACTOR", "PLATEAU_MIN_SCALE"]

#: The ``"plateau"`` schedule multiplies the learning rate by this factor ...
PLATEAU_FACTOR = 0.5
#: ... but not below this fraction of ``learning_rate``.
PLATEAU_MIN_SCALE = 1e-3


class _Schedule:
    """Learning rate as a function of the batch counter (plus the plateau's scale)."""

    def __init__(self, settings: TrainingSettings, steps_per_epoch: int) -> None:
        self.settings = settings
        self.steps_per_epoch = steps_per_epoch
        self.total = settings.max_epochs * steps_per_epoch
        self.timed_horizon: int | None = None  # epochs, when fixed by the time limit
        self.step = 0
        self.scale = 1.0
        self.best = math.inf
        self.bad_epochs = 0

    def lr(self) -> float:
        s = self.settings
        rate = s.learning_rate * self.scale
        if self.step < s.warmup_steps:
            return rate * (self.step + 1) / s.warmup_steps
        if s.schedule == "cosine":
            span = max(1, self.total - s.warmup_steps)
            frac = min(1.0, (self.step - s.warmup_steps) / span)
            return rate * 0.5 * (1.0 + math.cos(math.pi * frac))
        return rate

    def fit_to_time_limit(
        self, epochs_done: int, seconds_left: float, epoch_seconds: float
    ) -> None:
        """Fix the cosine horizon to the epochs that fit in the time left (once)."""
        s = self.settings
        if s.schedule != "cosine" or self.timed_horizon is not None or epoch_seconds <= 0:
            return
        fit = epochs_done + max(1, math.floor(seconds_left / epoch_seconds))
        self.timed_horizon = max(epochs_done + 1, min(s.max_epochs, fit))
        self.total = self.timed_horizon * self.steps_per_epoch

    def end_epoch(self, monitored: float | None) -> None:
        if self.settings.schedule != "plateau":
            return
        if monitored is not None and monitored < self.best - self.settings.min_delta:
            self.best = monitored
            self.bad_epochs = 0
            return
        self.bad_epochs += 1
        if self.bad_epochs >= max(1, self.settings.patience // 2):
            self.scale = max(self.scale * PLATEAU_FACTOR, PLATEAU_MIN_SCALE)
            self.bad_epochs = 0

    def state(self) -> dict[str, Any]:
        best = self.best if math.isfinite(self.best) else None
        return {
            "step": self.step,
            "scale": self.scale,
            "best": best,
            "bad_epochs": self.bad_epochs,
            "timed_horizon": self.timed_horizon,
        }

    def load(self, state: Mapping[str, Any]) -> None:
        self.step = int(state["step"])
        self.scale = float(state["scale"])
        self.best = math.inf if state["best"] is None else float(state["best"])
        self.bad_epochs = int(state["bad_epochs"])
        horizon = state.get("timed_horizon")
        if horizon is not None:
            self.timed_horizon = int(horizon)
            self.total = self.timed_horizon * self.steps_per_epoch
