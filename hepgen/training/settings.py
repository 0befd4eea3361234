"""Training settings: what the loop's optimizer, schedule, stopping rules and device are.

:class:`TrainingSettings` is a frozen dataclass checked on construction (every message names
the training setting), read from a config's ``training`` section by
:meth:`~TrainingSettings.from_dict`, and completed by :meth:`~TrainingSettings.resolve` with
defaults chosen from the number of training rows (small data sets get smaller batches and more
epochs).  This module imports no torch, so that configs are validated cheaply.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from hepgen.devices import DEVICE_NAMES, check_device
from hepgen.errors import ConfigError, did_you_mean

__all__ = [
    "AUTO_BATCH_RANGE",
    "AUTO_EPOCH_RANGE",
    "AUTO_FIELDS",
    "AUTO_METRIC_EVERY_MAX",
    "AUTO_METRIC_SHARE",
    "AUTO_ROWS_PER_BATCH",
    "AUTO_STEPS",
    "RESUME_FIXED_SETTINGS",
    "TrainingSettings",
]

#: Size-based defaults (:meth:`TrainingSettings.resolve`): training rows per batch ...
AUTO_ROWS_PER_BATCH = 50
#: ... with the batch size a power of two in this range ...
AUTO_BATCH_RANGE = (256, 4096)
#: ... and enough epochs for about this many optimizer steps ...
AUTO_STEPS = 8000
#: ... but this many epochs at least and at most; patience: max(10, ceil(max_epochs / 10)).
AUTO_EPOCH_RANGE = (20, 500)
#: With ``metric_every`` left out, the selection metric takes at most about this share of the
#: training time (from the model's estimate of its cost) ...
AUTO_METRIC_SHARE = 0.1
#: ... evaluated at least every this many epochs (and always at the last epoch).
AUTO_METRIC_EVERY_MAX = 10
#: Fields that ``None`` leaves to :meth:`TrainingSettings.resolve` (the data size).
AUTO_FIELDS = ("batch_size", "max_epochs", "patience", "metric_every")

_INT_FIELDS = {
    "max_epochs": 1,
    "batch_size": 1,
    "warmup_steps": 0,
    "patience": 1,
    "max_bad_batches": 1,
    "metric_every": 1,
}
_SCHEDULES = ("cosine", "plateau", "constant")


#: Settings that must be the same when a run is resumed (they shape the trajectory; the others
#: may change).
RESUME_FIXED_SETTINGS = (
    "batch_size",
    "learning_rate",
    "weight_decay",
    "schedule",
    "warmup_steps",
    "grad_clip",
    "seed",
)


@dataclass(frozen=True)
class TrainingSettings:
    """How :func:`train` trains: optimizer, schedule, stopping, NaN guard, device, seed.

    Attributes
    ----------
    max_epochs : int or None
        Passes over the training set at most.  ``None``: chosen from the data size (below).
    batch_size : int or None
        Events per batch at most (batches are nearly equal: :mod:`hepgen.training.data`).
        ``None``: chosen from the data size.
    learning_rate : float
        Peak AdamW learning rate.
    weight_decay : float
        AdamW's decoupled weight decay.
    schedule : {"cosine", "plateau", "constant"}
        Learning-rate schedule after the warm-up (:mod:`hepgen.training.schedule`).  The default cosine decay
        adapts to any data size through its horizon, ``max_epochs`` (size-chosen when left
        out) or the epochs that fit in ``time_limit``.
    warmup_steps : int
        Batches of linear warm-up from ``learning_rate / warmup_steps`` to ``learning_rate``.
    grad_clip : float or None
        Maximum global L2 norm of the gradient; ``None`` does not clip.
    patience : int or None
        Epochs without an improvement of the validation loss by more than ``min_delta``
        before training stops.  ``None``: chosen from the data size.
    min_delta : float
        Smallest decrease of the validation loss that counts as an improvement.
    max_bad_batches : int
        Consecutive batches with a non-finite loss or gradient norm before
        :class:`TrainingError`.
    device : str
        ``"auto"`` (CUDA when torch sees a GPU, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
    seed : int
        Seed of torch's global generator and of the shuffling.
    time_limit : float or None
        Wall-clock seconds; training stops after the epoch that crosses it (with the cosine
        schedule, at the end of the horizon fitted to it after the first epoch).
    metric_every : int or None
        Evaluate ``metric_fn`` every this many epochs, and always at the last epoch.
        ``None``: as often as keeps it to about :data:`AUTO_METRIC_SHARE` of the training
        time, by the model's estimate of the metric's cost (``metric_cost`` of
        :func:`train`); every epoch without an estimate.

    Notes
    -----
    **Size-based defaults.**  A small training set (tens of thousands of rows) needs smaller
    batches and more epochs than a large one for the same number of optimizer steps.  The
    fields left ``None`` are chosen by :meth:`resolve` from ``n``, the number of training
    rows (explicit values always win):

    * ``batch_size``: ``n / 50`` rounded to a power of two, clipped to [256, 4096]
      (:data:`AUTO_ROWS_PER_BATCH`, :data:`AUTO_BATCH_RANGE`): 28k rows -> 512, 100k ->
      2048, 300k -> 4096;
    * ``max_epochs``: enough epochs for about 8000 optimizer steps (:data:`AUTO_STEPS`),
      clipped to [20, 500]: 22.4k rows (44 batches of 512) -> 182 epochs, 240k rows (59
      batches of 4096) -> 136;
    * ``patience``: ``max(10, ceil(max_epochs / 10))``;
    * ``metric_every``: see above.

    :func:`train` records the resolved values and which of them were chosen from the data
    size in :class:`TrainingResult` (``settings``, ``chosen_from_data_size``).

    References
    ----------
    I. Loshchilov and F. Hutter, "Decoupled weight decay regularization", ICLR 2019,
    arXiv:1711.05101; "SGDR: stochastic gradient descent with warm restarts", ICLR 2017,
    arXiv:1608.03983.

    Examples
    --------
    >>> from hepgen.training import TrainingSettings
    >>> s = TrainingSettings.from_dict({"max_epochs": 20, "learning_rate": "3e-4"})
    >>> s.max_epochs, s.learning_rate, s.schedule
    (20, 0.0003, 'cosine')
    >>> TrainingSettings.from_dict(s.to_dict()) == s
    True
    """

    max_epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float = 1e-3
    weight_decay: float = 1e-5
    schedule: Literal["cosine", "plateau", "constant"] = "cosine"
    warmup_steps: int = 0
    grad_clip: float | None = 5.0
    patience: int | None = None
    min_delta: float = 0.0
    max_bad_batches: int = 20
    device: str = "auto"
    seed: int = 0
    time_limit: float | None = None
    metric_every: int | None = None

    def __post_init__(self) -> None:
        for name, minimum in _INT_FIELDS.items():
            value = getattr(self, name)
            if value is None and name in AUTO_FIELDS:
                continue
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ConfigError(f"training setting {name}={value!r}: expected an integer")
            if value < minimum:
                raise ConfigError(f"training setting {name}={value!r}: expected >= {minimum}")
            object.__setattr__(self, name, int(value))
        if isinstance(self.seed, bool) or not isinstance(self.seed, int | np.integer):
            raise ConfigError(f"training setting seed={self.seed!r}: expected an integer")
        if not 0 <= int(self.seed) < 2**63:
            raise ConfigError(f"training setting seed={self.seed!r}: expected 0 <= seed < 2**63")
        object.__setattr__(self, "seed", int(self.seed))
        self._set_float("learning_rate", positive=True)
        self._set_float("weight_decay", positive=False)
        self._set_float("min_delta", positive=False)
        self._set_float("grad_clip", positive=True, optional=True)
        self._set_float("time_limit", positive=True, optional=True)
        if self.schedule not in _SCHEDULES:
            raise ConfigError(
                f"training setting schedule={self.schedule!r}: expected one of "
                + ", ".join(repr(s) for s in _SCHEDULES)
            )
        try:
            check_device(self.device)
        except ConfigError:
            raise ConfigError(
                f"training setting device={self.device!r}: expected {DEVICE_NAMES}"
            ) from None

    def _set_float(self, name: str, positive: bool, optional: bool = False) -> None:
        value = getattr(self, name)
        if value is None and optional:
            return
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise ConfigError(f"training setting {name}={value!r}: expected a number")
        value = float(value)
        bad = not math.isfinite(value) or (value <= 0 if positive else value < 0)
        if bad:
            raise ConfigError(
                f"training setting {name}={value!r}: expected a finite number "
                + ("> 0" if positive else ">= 0")
            )
        object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain JSON-ready dict (every field, in declaration order)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def resolve(
        self, n_train: int, metric_cost: float | None = None
    ) -> tuple[TrainingSettings, list[str]]:
        """The settings with every field left ``None`` chosen from the data size (class notes).

        Parameters
        ----------
        n_train : int
            Training rows (>= 1).
        metric_cost : float or None
            The model's estimate of one evaluation of its selection metric, in units of one
            training epoch's time; ``None``: unknown (the metric runs every epoch).

        Returns
        -------
        settings : TrainingSettings
            No field ``None`` among :data:`AUTO_FIELDS`.
        chosen : list of str
            The fields chosen here, in :data:`AUTO_FIELDS` order.

        Examples
        --------
        >>> s, chosen = TrainingSettings().resolve(22_400)
        >>> s.batch_size, s.max_epochs, s.patience, s.metric_every, chosen
        (512, 182, 19, 1, ['batch_size', 'max_epochs', 'patience', 'metric_every'])
        >>> TrainingSettings(batch_size=1000).resolve(240_000)[0].batch_size
        1000
        """
        n = max(1, int(n_train))
        low, high = AUTO_BATCH_RANGE
        batch = self.batch_size
        if batch is None:
            batch = min(high, max(low, 2 ** round(math.log2(max(n / AUTO_ROWS_PER_BATCH, 1)))))
        epochs = self.max_epochs
        if epochs is None:
            steps = math.ceil(n / batch)
            epochs = min(
                AUTO_EPOCH_RANGE[1], max(AUTO_EPOCH_RANGE[0], math.ceil(AUTO_STEPS / steps))
            )
        patience = self.patience
        if patience is None:
            patience = max(10, math.ceil(epochs / 10))
        every = self.metric_every
        if every is None:
            every = 1
            if metric_cost is not None and metric_cost > 0 and math.isfinite(metric_cost):
                every = min(AUTO_METRIC_EVERY_MAX, math.ceil(metric_cost / AUTO_METRIC_SHARE))
        chosen = [name for name in AUTO_FIELDS if getattr(self, name) is None]
        values = {"batch_size": batch, "max_epochs": epochs, "patience": patience}
        return dataclasses.replace(self, metric_every=every, **values), chosen

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainingSettings:
        """Build settings from a dict; missing keys take their defaults.

        Numbers written as strings (``"1e-3"``: YAML 1.1 reads exponents without a dot as
        strings) are accepted for the float settings.

        Raises
        ------
        ConfigError
            For unknown keys (naming them and the valid ones) and invalid values.
        """
        if not isinstance(d, Mapping):
            raise ConfigError(f"training settings: expected a mapping, got {type(d).__name__}")
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = [str(k) for k in d if k not in valid]
        if unknown:
            hints = "".join(did_you_mean(k, valid) for k in unknown)
            raise ConfigError(
                "unknown training setting(s) "
                + ", ".join(repr(k) for k in unknown)
                + f"{hints}; valid: {', '.join(valid)}"
            )
        values = dict(d)
        for name in ("learning_rate", "weight_decay", "min_delta", "grad_clip", "time_limit"):
            value = values.get(name)
            if isinstance(value, str):
                try:
                    values[name] = float(value)
                except ValueError:
                    raise ConfigError(
                        f"training setting {name}={value!r}: expected a number"
                    ) from None
        return cls(**values)
