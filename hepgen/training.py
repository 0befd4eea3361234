"""One training loop for every hepgen model: AdamW, schedule, clipping, early stopping, resume.

:func:`train` minimises the weighted mean of a per-event loss over numpy arrays.  It knows
nothing of flows, ROOT, configs or preprocessing: a model is a :class:`torch.nn.Module` and a
``loss_fn(module, batch) -> losses`` that returns one loss per event, shape ``(batch,)``
(for a flow, ``-log p(x | c)``).  Everything else is here, once: device choice, seeded
shuffling, AdamW with a learning-rate schedule, gradient clipping, a NaN/inf guard, early
stopping on the validation loss, a checkpoint every epoch with exact resume, the choice of the
final weights by a physics metric, progress with rate and ETA, and one log line per epoch.

Models that are not trained by minimising one loss with one optimizer (adversarial training:
a generator and a critic, each with its own optimizer and several critic updates per generator
update) pass an :class:`Objective` instead of ``loss_fn``: it names its optimizers and does
the update(s) of one batch through :meth:`StepContext.update`, which applies the NaN guard,
the gradient clipping and the learning-rate schedule to each optimizer separately.  Everything
else (batches, weights, schedule counter, checkpoints, resume, selection, progress) is the same
loop.  ``loss_fn`` is the :class:`LikelihoodObjective`: one AdamW, one update per batch.

Design choices
--------------
* **Event weights** (key ``"w"`` of the data dicts, optional, may be negative, e.g. sWeights).
  The loss of a training batch ``B`` is ``sum_{i in B} w_i l_i / (|B| * mean(w))``, where
  ``mean(w)`` is taken over the *whole* training set.  Averaged over the batches this is the
  weighted mean ``sum w l / sum w`` of the whole training set, and integer weights act exactly
  as duplicated events.  Dividing instead by the batch's own ``sum w`` would be wrong for
  sWeights: a batch's weights can sum to zero or below, which would blow up or flip the sign
  of its gradient.  A training set with ``mean(w) <= 0`` is rejected.  The validation loss is
  the weighted mean over the whole validation set, ``sum w l / sum w`` (which must be > 0).
  ``loss_fn`` never sees ``"w"``: the loop applies the weights, so they cannot be applied twice.
  An :class:`Objective` receives the batch's weights and applies them itself, with the same
  normalisation (:meth:`StepContext.weighted_mean`).
* **Batches.**  Each epoch draws a permutation from a seeded :class:`torch.Generator` and cuts
  it into ``ceil(n / batch_size)`` nearly equal batches (``torch.tensor_split``), so every
  event is used and no batch is a tiny remainder.  Batches are cut from CPU tensors that share
  the numpy memory and moved to the device per batch; on CUDA the whole set is moved once when
  it takes less than half of the free GPU memory.  Arrays keep their dtype (give float32).
* **Schedule** (``TrainingSettings.schedule``), a pure function of the batch counter, so its
  state is a few numbers: ``"cosine"`` decays the rate per batch from ``learning_rate`` to 0
  over ``max_epochs`` epochs (SGDR without restarts), or, with a ``time_limit``, over the
  epochs that fit in it: after the first epoch the horizon becomes
  ``min(max_epochs, 1 + floor(time left / first epoch's seconds))`` and is kept from then on
  (checkpoints store it), so the rate anneals before the time runs out, and training stops
  with ``stopped="time_limit"`` at the end of that horizon; ``"plateau"`` multiplies it by
  :data:`PLATEAU_FACTOR` after ``max(1, patience // 2)`` epochs without an improvement of the
  validation loss (of the training loss when there is no validation set) by more than
  ``min_delta``, down to :data:`PLATEAU_MIN_SCALE` times ``learning_rate``; ``"constant"``
  keeps it.  ``warmup_steps`` batches of linear warm-up precede any of them.  The counter
  advances on skipped batches too, so the schedule follows the progress through the data.
  Growing ``max_epochs`` on resume stretches the cosine from that point on (unless the horizon
  was fixed by the time limit).
* **NaN guard.**  A batch whose loss or global gradient norm is not finite is skipped (no
  optimizer step, gradients cleared) and counted; after ``max_bad_batches`` *consecutive* bad
  batches :class:`TrainingError` names the epoch, the batch and the count.  With several
  optimizers (an :class:`Objective`) the check is per update: the first non-finite update ends
  the batch's step (updates done before it in that batch stay), and the batch counts as bad.
* **Early stopping.**  An epoch improves when its validation loss is below the best so far
  minus ``min_delta``; training stops after ``patience`` epochs without one.  Without
  validation data there is no early stopping.
* **Final weights.**  With ``metric_fn`` (lower is better; evaluated every ``metric_every``
  epochs and at the last epoch, whatever ends the training) the module ends with the weights of the epoch with the best metric (ties: lower
  validation loss, then the earlier epoch); else of the epoch with the lowest validation loss;
  without validation data, the last epoch's.  :attr:`TrainingResult.selection` says which.
* **Evaluation** (validation loss, ``metric_fn``) runs with ``module.eval()``, under
  :func:`torch.no_grad`, inside :func:`torch.random.fork_rng`: it consumes no random numbers of
  the training, so adding a metric or changing ``metric_every`` leaves the trajectory as is.
  The validation loss starts from torch's global generator seeded with ``seed``: a validation
  loss that draws random numbers (a GAN's energy score) uses the same draws every epoch, so
  epochs compare without that noise.  ``metric_fn`` may return extra numbers besides the one
  that selects (a mapping with key ``"metric"``); they go to the history as
  ``metric_details`` (e.g. recall and coverage, which catch a GAN's mode collapse).
* **Determinism.**  ``torch.manual_seed(seed)`` at the start, a seeded shuffle generator: two
  runs with the same seed on CPU give bit-identical parameters.  CUDA kernels are not
  guaranteed to be deterministic.
* **Checkpoints** (``checkpoint_dir``), written atomically (temporary file in the same
  folder + :func:`os.replace`) after the first epoch of a call, then after an epoch when
  :data:`CHECKPOINT_SECONDS` have passed since the last one, and after the last epoch (a crash
  costs at most that much training; a small data set's epoch takes a second or two, and
  writing the checkpoint of a large model takes a tenth of that); never with pickle, with a
  canonical header (:func:`save_safetensors`: sorted keys, so the same tensors give the same
  bytes):

  - ``last.safetensors``: the module's state (``module.<name>``), the AdamW state flattened
    into tensors (``optimizer.<index>.<key>``; with several optimizers, those of each under
    its name: ``optimizer.<optimizer name>.<index>.<key>``), the torch CPU (and CUDA) RNG
    states and the
    shuffle generator's state as uint8 tensors (``rng.*``), the best weights so far
    (``best_loss.<name>``, ``best_metric.<name>``), and in its metadata (key
    ``hepgen_state``) the JSON state: epoch, history, best epochs, early-stopping and NaN
    counters, schedule state, settings, :meth:`Objective.describe` (key ``objective``, when
    not empty), ``format_version``.  One file holds everything a
    resume needs, so a crash can never leave a checkpoint half of one epoch, half of another.
  - ``last.json``: the same JSON state, indented, for people and scripts.
  - ``best_loss.safetensors``, ``best_metric.safetensors``: the module's weights only (plain
    state-dict names; ``module.load_state_dict(safetensors.torch.load_file(path))``), written
    with the checkpoint after the best improved.

  ``resume=True`` continues exactly where ``last.safetensors`` left off: on CPU, 3 epochs plus
  3 resumed give the same bits as 6 straight.  Settings that shape the trajectory
  (:data:`RESUME_FIXED_SETTINGS` and the objective's :meth:`~Objective.describe`) must be
  unchanged; the others (``max_epochs``, ``patience``,
  ``min_delta``, ``max_bad_batches``, ``device``, ``time_limit``, ``metric_every``) may change.
  ``time_limit`` counts the wall time of the current call.  A run that stopped on its time
  limit is finished: resuming it restores its final state and trains no further.

References
----------
- I. Loshchilov and F. Hutter, "Decoupled weight decay regularization", ICLR 2019,
  arXiv:1711.05101 (AdamW).
- I. Loshchilov and F. Hutter, "SGDR: stochastic gradient descent with warm restarts",
  ICLR 2017, arXiv:1608.03983 (cosine schedule).
- P. Goyal et al., "Accurate, large minibatch SGD: training ImageNet in 1 hour",
  arXiv:1706.02677 (linear warm-up).
- R. Pascanu, T. Mikolov and Y. Bengio, "On the difficulty of training recurrent neural
  networks", ICML 2013, arXiv:1211.5063 (gradient-norm clipping).
- L. Prechelt, "Early stopping - but when?", in Neural Networks: Tricks of the Trade,
  Springer 1998, doi:10.1007/3-540-49430-8_3.
- P. Micikevicius et al., "Mixed precision training", ICLR 2018, arXiv:1710.03740 (skipping
  steps with non-finite gradients).
- I. Gulrajani et al., "Improved training of Wasserstein GANs", NeurIPS 2017,
  arXiv:1704.00028 (alternating critic and generator updates: :class:`Objective`).
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors import safe_open

from hepgen.errors import ConfigError, HepgenError, InputError, did_you_mean
from hepgen.progress import progress
from hepgen.utils import atomic_write_bytes, to_jsonable, write_json

__all__ = [
    "AUTO_FIELDS",
    "CHECKPOINT_FORMAT_VERSION",
    "CHECKPOINT_SECONDS",
    "PLATEAU_FACTOR",
    "PLATEAU_MIN_SCALE",
    "RESUME_FIXED_SETTINGS",
    "LikelihoodObjective",
    "Objective",
    "StepContext",
    "TrainingError",
    "TrainingResult",
    "TrainingSettings",
    "canonical_safetensors",
    "save_safetensors",
    "train",
]

logger = logging.getLogger("hepgen.training")

#: Version of the checkpoint layout (``last.safetensors`` / ``last.json``).
CHECKPOINT_FORMAT_VERSION = 1
#: The ``"plateau"`` schedule multiplies the learning rate by this factor ...
PLATEAU_FACTOR = 0.5
#: ... but not below this fraction of ``learning_rate``.
PLATEAU_MIN_SCALE = 1e-3
#: After the first epoch of a call, checkpoints are written at most every this many seconds
#: (and after the last epoch): a checkpoint of a large model costs ~0.15 s, a tenth of a
#: small data set's epoch.
CHECKPOINT_SECONDS = 30.0
#: Rows per batch of the validation loss at least (no gradients: larger batches, fewer calls).
EVAL_BATCH_SIZE = 4096
#: Settings that must be the same when a run is resumed.
RESUME_FIXED_SETTINGS = (
    "batch_size",
    "learning_rate",
    "weight_decay",
    "schedule",
    "warmup_steps",
    "grad_clip",
    "seed",
)

_WEIGHT_KEY = "w"
_STATE_KEY = "hepgen_state"
_LAST = "last.safetensors"
_LAST_JSON = "last.json"
_BEST_LOSS = "best_loss.safetensors"
_BEST_METRIC = "best_metric.safetensors"

LossFn = Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor]
MetricFn = Callable[[torch.nn.Module], "float | Mapping[str, float]"]


class TrainingError(HepgenError):
    """Training cannot go on: persistent NaN/inf, or a checkpoint that cannot be resumed.

    The message names the epoch and batch, or the checkpoint file, and says what to do.

    References
    ----------
    P. Micikevicius et al., "Mixed precision training", ICLR 2018, arXiv:1710.03740 (skip a
    step whose gradient is not finite; give up when it keeps happening).

    Examples
    --------
    >>> from hepgen.training import TrainingError
    >>> issubclass(TrainingError, Exception)
    True
    """


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------

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


@dataclass(frozen=True)
class TrainingSettings:
    """How :func:`train` trains: optimizer, schedule, stopping, NaN guard, device, seed.

    Attributes
    ----------
    max_epochs : int or None
        Passes over the training set at most.  ``None``: chosen from the data size (below).
    batch_size : int or None
        Events per batch at most (batches are nearly equal, see the module notes).  ``None``:
        chosen from the data size.
    learning_rate : float
        Peak AdamW learning rate.
    weight_decay : float
        AdamW's decoupled weight decay.
    schedule : {"cosine", "plateau", "constant"}
        Learning-rate schedule after the warm-up (module notes).  The default cosine decay
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
        _parse_device(self.device)

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


def _parse_device(name: Any) -> torch.device:
    """Check a device name's form (not its availability)."""
    if not isinstance(name, str):
        raise ConfigError(f"training setting device={name!r}: expected a string")
    if name == "auto":
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ConfigError(
            f"training setting device={name!r}: expected 'auto', 'cpu', 'cuda' or 'cuda:N'"
        )
    return device


def _resolve_device(name: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; a CUDA device that is absent -> error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = _parse_device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {name!r} requested but torch sees no CUDA device "
                f"(torch {torch.__version__}); use device='auto' or 'cpu'"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {name!r} requested but torch sees {torch.cuda.device_count()} "
                "CUDA device(s)"
            )
    return device


# --------------------------------------------------------------------------------------------
# Result
# --------------------------------------------------------------------------------------------


@dataclass
class TrainingResult:
    """What :func:`train` did, epoch by epoch, and which weights the module ends with.

    Attributes
    ----------
    history : list of dict
        One dict per epoch: ``epoch`` (1-based), ``train_loss`` (weighted mean over the good
        batches, during the epoch), ``val_loss`` (weighted mean over the validation set after
        the epoch; ``None`` without validation data or when not finite), ``metric`` (``None``
        when not evaluated), ``lr`` (at the epoch's last batch), ``seconds`` (training and
        evaluation), ``n_bad_batches``, ``events_per_second`` (training phase only); and
        ``metric_details`` (a dict) in the epochs where ``metric_fn`` returned a mapping.
    best_loss_epoch : int or None
        Epoch with the lowest validation loss (``None`` without validation data).
    best_metric_epoch : int or None
        Epoch with the lowest metric (ties: lower validation loss); ``None`` without one.
    selected_epoch : int
        Epoch whose weights the module holds at the end.
    selection : {"metric", "loss", "last"}
        How ``selected_epoch`` was chosen.
    stopped : {"max_epochs", "early_stopping", "time_limit"}
        Why training ended.
    n_bad_batches : int
        Batches skipped by the NaN guard, over the whole run (resumed runs included).
    best_loss, best_metric : float or None
        The validation loss at ``best_loss_epoch`` and the metric at ``best_metric_epoch``.
    settings : dict or None
        The settings the run trained with, after :meth:`TrainingSettings.resolve` (every
        size-based default filled in).
    chosen_from_data_size : list of str
        The fields of ``settings`` that the configuration left out and that were chosen from
        the number of training rows, ``n_train``.
    n_train : int or None
        Training rows.

    References
    ----------
    L. Prechelt, "Early stopping - but when?", in Neural Networks: Tricks of the Trade,
    Springer 1998, doi:10.1007/3-540-49430-8_3.

    Examples
    --------
    >>> from hepgen.training import TrainingResult
    >>> r = TrainingResult(history=[], best_loss_epoch=None, best_metric_epoch=None,
    ...                    selected_epoch=0, selection="last", stopped="max_epochs",
    ...                    n_bad_batches=0)
    >>> r.to_dict()["stopped"]
    'max_epochs'
    """

    history: list[dict[str, Any]]
    best_loss_epoch: int | None
    best_metric_epoch: int | None
    selected_epoch: int
    selection: str
    stopped: str
    n_bad_batches: int
    best_loss: float | None = None
    best_metric: float | None = None
    settings: dict[str, Any] | None = None
    chosen_from_data_size: list[str] = field(default_factory=list)
    n_train: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (NaN/inf as ``None``)."""
        return to_jsonable(dataclasses.asdict(self))


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Objectives
# --------------------------------------------------------------------------------------------

_OPTIMIZER_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


@dataclass
class StepContext:
    """What :meth:`Objective.step` gets from the loop besides the batch.

    Attributes
    ----------
    optimizers : dict of str to torch.optim.Optimizer
        The objective's optimizers (:meth:`Objective.optimizers`), by name.
    lr : float
        The schedule's learning rate for this batch (``TrainingSettings.learning_rate`` times
        the warm-up, cosine or plateau factor).
    index : int
        0-based count of the batches of the whole run before this one (skipped ones included;
        restored on resume), e.g. to update a generator every ``n_critic`` batches.
    mean_weight : float
        Mean event weight of the whole training set (1 without weights).
    grad_clip : float or None
        ``TrainingSettings.grad_clip``, applied by :meth:`update` to each optimizer's
        parameters separately.

    References
    ----------
    R. Pascanu, T. Mikolov and Y. Bengio, "On the difficulty of training recurrent neural
    networks", ICML 2013, arXiv:1211.5063 (gradient-norm clipping).

    Examples
    --------
    >>> import torch
    >>> from hepgen.training import StepContext
    >>> layer = torch.nn.Linear(1, 1)
    >>> ctx = StepContext({"model": torch.optim.SGD(layer.parameters(), lr=0.1)}, lr=0.1,
    ...                   index=0, mean_weight=1.0, grad_clip=None)
    >>> ctx.update("model", layer(torch.ones(4, 1)).sum())
    True
    >>> ctx.update("model", torch.tensor(float("nan")))
    False
    """

    optimizers: Mapping[str, torch.optim.Optimizer]
    lr: float
    index: int
    mean_weight: float
    grad_clip: float | None

    def weighted_mean(self, losses: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
        """``sum_i w_i l_i / (n * mean_weight)`` of per-event ``losses`` (n,) (plain mean
        without weights): the loop's batch normalisation (module notes, "Event weights")."""
        return _weighted_batch_loss(losses, weights, self.mean_weight)

    def update(self, name: str, loss: torch.Tensor, lr: float | None = None) -> bool:
        """One guarded step of optimizer ``name`` on the scalar ``loss``.

        Clears that optimizer's gradients, and when ``loss`` is finite back-propagates into
        its parameters only (``backward(inputs=...)``: other parameters' gradients are left
        alone), checks the global gradient norm, clips it to ``grad_clip``, sets the learning
        rate (``lr``, default :attr:`lr`) and steps.

        Returns
        -------
        bool
            False when the loss or the gradient norm was not finite: no step was taken and the
            gradients are cleared (the caller returns ``None`` from :meth:`Objective.step`).
        """
        optimizer = self.optimizers[name]
        params = [p for group in optimizer.param_groups for p in group["params"]]
        optimizer.zero_grad(set_to_none=True)
        if not math.isfinite(float(loss.detach())):
            return False
        loss.backward(inputs=params)
        grads = [p.grad for p in params if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads) if grads else None
        if norm is not None and not bool(torch.isfinite(norm)):
            optimizer.zero_grad(set_to_none=True)
            return False
        if self.grad_clip is not None and norm is not None:
            torch.nn.utils.clip_grads_with_norm_(params, self.grad_clip, norm)
        rate = self.lr if lr is None else lr
        for group in optimizer.param_groups:
            group["lr"] = rate
        optimizer.step()
        return True


def _fused_ok(params: list[torch.Tensor]) -> bool:
    """Whether AdamW's fused kernel takes these parameters (float CPU or CUDA tensors): one
    kernel for all parameters instead of a dozen small ones per tensor (the optimizer step of
    a 0.7M-parameter flow: 2.0 ms instead of 5.3 ms on the CPU)."""
    return bool(params) and all(
        p.device.type in ("cpu", "cuda") and p.dtype in (torch.float32, torch.float64)
        for p in params
    )


class Objective(abc.ABC):
    """How :func:`train` updates a module on one batch, and how it scores a validation batch.

    Subclass it for models trained with several optimizers or several updates per batch
    (adversarial training); a plain per-event loss needs none (``loss_fn``, i.e.
    :class:`LikelihoodObjective`).  The loop keeps everything else: batches, weights' mean,
    the schedule, the NaN-guard bookkeeping, checkpoints of every optimizer, resume, selection.

    An objective must be deterministic given torch's global RNG (the loop seeds it and saves
    its state in the checkpoints), and must hold no state that changes during training: what
    evolves lives in the module (state dict) or the optimizers, which the checkpoints save.

    References
    ----------
    I. Gulrajani et al., "Improved training of Wasserstein GANs", NeurIPS 2017,
    arXiv:1704.00028 (several critic updates per generator update).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from hepgen.training import Objective, TrainingSettings, train
    >>> class SquaredError(Objective):
    ...     def step(self, module, batch, weights, context):
    ...         losses = ((module(batch["x"]) - batch["y"]) ** 2).sum(dim=1)
    ...         loss = context.weighted_mean(losses, weights)
    ...         return float(loss.detach()) if context.update("model", loss) else None
    ...     def validation_losses(self, module, batch):
    ...         return ((module(batch["x"]) - batch["y"]) ** 2).sum(dim=1)
    >>> x = np.linspace(-1, 1, 1000, dtype=np.float32)[:, None]
    >>> _ = torch.manual_seed(0)
    >>> model = torch.nn.Linear(1, 1)
    >>> s = TrainingSettings(max_epochs=30, batch_size=100, learning_rate=0.05, device="cpu")
    >>> _ = train(model, None, {"x": x, "y": 3 * x}, None, s, objective=SquaredError(),
    ...           quiet=True)
    >>> round(model.weight.item(), 2)
    3.0
    """

    def optimizers(
        self, module: torch.nn.Module, settings: TrainingSettings
    ) -> dict[str, torch.optim.Optimizer]:
        """The optimizers by name (lower-case letters, digits, ``_``), built fresh; the default
        is one AdamW named ``"model"`` on every trainable parameter, with the settings'
        learning rate and weight decay (torch's fused implementation).  A checkpoint stores each one's state under its name
        (a single optimizer: the plain ``optimizer.`` layout)."""
        params = [p for p in module.parameters() if p.requires_grad]
        return {
            "model": torch.optim.AdamW(
                params,
                lr=settings.learning_rate,
                weight_decay=settings.weight_decay,
                fused=_fused_ok(params),
            )
        }

    @abc.abstractmethod
    def step(
        self,
        module: torch.nn.Module,
        batch: dict[str, torch.Tensor],
        weights: torch.Tensor | None,
        context: StepContext,
    ) -> float | None:
        """Update the module on one training batch.

        Parameters
        ----------
        module : torch.nn.Module
            In training mode, on the device.
        batch : dict of str to Tensor
            The batch's rows of every data array but ``"w"``, on the device.
        weights : Tensor of shape (n,) or None
            The batch's event weights (negative allowed); normalise with
            :meth:`StepContext.weighted_mean`.
        context : StepContext
            Optimizers, learning rate, batch counter; :meth:`StepContext.update` does a
            guarded optimizer step.

        Returns
        -------
        float or None
            The batch's training loss for the history (the weighted mean over the epoch's good
            batches is ``train_loss``); ``None`` when an update was skipped as non-finite (the
            NaN guard counts the batch).
        """

    @abc.abstractmethod
    def validation_losses(
        self, module: torch.nn.Module, batch: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """Per-event validation losses, shape ``(n,)`` (the loop takes their weighted mean
        over the validation set: lower is better, comparable between epochs).  Called in eval
        mode under :func:`torch.no_grad`, with torch's global RNG seeded the same way each
        epoch."""

    def describe(self) -> dict[str, Any]:
        """JSON-ready settings that shape the trajectory: stored in the checkpoint and
        required unchanged on resume (default: none)."""
        return {}


class LikelihoodObjective(Objective):
    """Minimise the weighted mean of a per-event loss with one AdamW: what ``loss_fn`` does.

    Parameters
    ----------
    loss_fn : callable ``(module, batch) -> torch.Tensor``
        Per-event losses, shape ``(n,)`` (for a flow, ``-log p(x | c)``); the same function
        gives the validation losses.

    References
    ----------
    I. Loshchilov and F. Hutter, "Decoupled weight decay regularization", ICLR 2019,
    arXiv:1711.05101 (AdamW).

    Examples
    --------
    >>> import torch
    >>> from hepgen.training import LikelihoodObjective
    >>> objective = LikelihoodObjective(lambda module, batch: (module(batch["x"]) ** 2)[:, 0])
    >>> objective.validation_losses(torch.nn.Linear(2, 1), {"x": torch.zeros(3, 2)}).shape
    torch.Size([3])
    """

    def __init__(self, loss_fn: LossFn) -> None:
        self.loss_fn = loss_fn

    def step(
        self,
        module: torch.nn.Module,
        batch: dict[str, torch.Tensor],
        weights: torch.Tensor | None,
        context: StepContext,
    ) -> float | None:
        """One AdamW step on ``sum w l / (n mean w)``; None when not finite."""
        n = next(iter(batch.values())).shape[0]
        losses = _check_losses(self.loss_fn(module, batch), n)
        loss = context.weighted_mean(losses, weights)
        if not context.update(next(iter(context.optimizers)), loss):
            return None
        return float(loss.detach())

    def validation_losses(
        self, module: torch.nn.Module, batch: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """``loss_fn(module, batch)``, checked to be per event."""
        n = next(iter(batch.values())).shape[0]
        return _check_losses(self.loss_fn(module, batch), n)


def _check_optimizers(optimizers: Any, module: torch.nn.Module) -> dict[str, Any]:
    """The objective's optimizers: a non-empty dict of valid names to optimizers over
    parameters of the module."""
    if not isinstance(optimizers, Mapping) or not optimizers:
        raise TypeError("Objective.optimizers must return a non-empty dict of optimizers")
    own = {id(p) for p in module.parameters()}
    for name, optimizer in optimizers.items():
        if (
            not isinstance(name, str)
            or not name
            or name[0].isdigit()
            or not set(name) <= _OPTIMIZER_NAME_CHARS
        ):
            raise ValueError(
                f"optimizer name {name!r}: expected lower-case letters, digits and '_', not "
                "starting with a digit"
            )
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer {name!r} is a {type(optimizer).__name__}")
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if not params:
            raise ValueError(f"optimizer {name!r} has no parameters")
        if any(id(p) not in own for p in params):
            raise ValueError(f"optimizer {name!r} holds parameters that are not the module's")
    return dict(optimizers)


# --------------------------------------------------------------------------------------------
# Schedule
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------


def _cpu_copy(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.detach().to("cpu", copy=True).contiguous()


def _state_copy(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the module's state dict (tensors only: no pickle anywhere)."""
    out = {}
    for name, value in module.state_dict().items():
        if not isinstance(value, torch.Tensor):
            raise TypeError(
                f"module state entry {name!r} is a {type(value).__name__}, not a tensor: "
                "hepgen checkpoints hold tensors only (no pickle)"
            )
        out[name] = _cpu_copy(value)
    return out


def canonical_safetensors(
    tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str] | None = None
) -> bytes:
    """The bytes of a ``safetensors`` file with a canonical header: same tensors, same bytes.

    ``safetensors`` writes its JSON header (the metadata and the tensor entries) in an order
    that varies from run to run, so two identical models gave files with different SHA-256.
    Here the header is re-serialised with sorted keys and no spaces, padded with spaces to a
    multiple of 8 bytes (as ``safetensors`` pads); the data section (whose layout depends on
    the names and dtypes only) is kept.  Any ``safetensors`` reader reads the result.

    Parameters
    ----------
    tensors : mapping of str to Tensor
        CPU, contiguous tensors.
    metadata : mapping of str to str or None
        The header's ``__metadata__``.

    Returns
    -------
    bytes
        The whole file: 8-byte little-endian header length, header JSON, data.
    """
    from safetensors.torch import save

    raw = save(dict(tensors), metadata=None if metadata is None else dict(metadata))
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + raw[8 + n :]


def save_safetensors(
    path: str | os.PathLike,
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, str] | None = None,
) -> str:
    """Write :func:`canonical_safetensors` to ``path`` atomically; returns its SHA-256 (hex).

    Every hepgen writer of ``safetensors`` files goes through here, so identical tensors and
    metadata always give byte-identical files.
    """
    data = canonical_safetensors(tensors, metadata)
    atomic_write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def _save_tensors(
    path: Path, tensors: Mapping[str, torch.Tensor], metadata: dict[str, str]
) -> None:
    """``safetensors`` file written atomically (:func:`save_safetensors`)."""
    save_safetensors(path, tensors, metadata)


def _read_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read ``last.safetensors``: (JSON state, tensors); TrainingError naming the file."""
    if not path.is_file():
        raise TrainingError(
            f"cannot resume: checkpoint file {path} does not exist "
            "(train without resume to start afresh)"
        )
    try:
        with safe_open(os.fspath(path), framework="pt", device="cpu") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:
        raise TrainingError(
            f"cannot resume: checkpoint file {path} is corrupt or truncated ({exc})"
        ) from exc
    try:
        state = json.loads(metadata[_STATE_KEY])
        if not isinstance(state, dict):
            raise ValueError("state is not a JSON object")
    except (KeyError, ValueError) as exc:
        raise TrainingError(
            f"cannot resume: checkpoint file {path} has no valid training state "
            f"(metadata {_STATE_KEY!r}: {exc})"
        ) from exc
    version = state.get("format_version")
    if version != CHECKPOINT_FORMAT_VERSION:
        raise TrainingError(
            f"cannot resume: checkpoint file {path} has format version {version!r}, this hepgen "
            f"reads version {CHECKPOINT_FORMAT_VERSION}"
        )
    return state, tensors


def _optimizer_tensors(optimizers: Mapping[str, torch.optim.Optimizer]) -> tuple[dict, dict]:
    """Optimizer states -> ({"optimizer.<i>.<key>": tensor}, {"<i>.<key>": number}); with
    several optimizers, each one's names start with its own name (``optimizer.<name>.<i>.``,
    ``<name>.<i>.``)."""
    tensors, scalars = {}, {}
    for name, optimizer in optimizers.items():
        prefix = "" if len(optimizers) == 1 else f"{name}."
        for index, entry in optimizer.state_dict()["state"].items():
            for key, value in entry.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optimizer.{prefix}{index}.{key}"] = _cpu_copy(value)
                else:
                    scalars[f"{prefix}{index}.{key}"] = value
    return tensors, scalars


def _load_optimizers(
    optimizers: Mapping[str, torch.optim.Optimizer],
    tensors: Mapping[str, torch.Tensor],
    scalars: Mapping[str, Any],
    path: Path,
) -> None:
    """Restore every optimizer from the layout of :func:`_optimizer_tensors`."""
    items = [(k[len("optimizer.") :], v) for k, v in tensors.items() if k.startswith("optimizer.")]
    entries = [*items, *scalars.items()]
    if len(optimizers) == 1:
        name, optimizer = next(iter(optimizers.items()))
        _load_optimizer(optimizer, entries, path, "")
        return
    by_name: dict[str, list[tuple[str, Any]]] = {name: [] for name in optimizers}
    for full, value in entries:
        name, _, rest = full.partition(".")
        if name not in by_name:
            raise TrainingError(
                f"cannot resume: checkpoint file {path} holds optimizer state {full!r}, but "
                f"this run's optimizers are {', '.join(map(repr, optimizers))}"
            )
        by_name[name].append((rest, value))
    for name, optimizer in optimizers.items():
        _load_optimizer(optimizer, by_name[name], path, f"{name!r} ")


def _load_optimizer(
    optimizer: torch.optim.Optimizer,
    entries: list[tuple[str, Any]],
    path: Path,
    which: str,
) -> None:
    n_params = sum(len(group["params"]) for group in optimizer.param_groups)
    state: dict[int, dict[str, Any]] = {}
    for name, value in entries:
        index, _, key = name.partition(".")
        if not index.isdigit() or int(index) >= n_params or not key:
            raise TrainingError(
                f"cannot resume: checkpoint file {path} holds optimizer {which}state {name!r} "
                f"for a module with other parameters (this {which}optimizer has {n_params} "
                "trainable tensors)"
            )
        state.setdefault(int(index), {})[key] = value
    full = {"state": state, "param_groups": optimizer.state_dict()["param_groups"]}
    try:
        optimizer.load_state_dict(full)
    except (ValueError, KeyError, RuntimeError) as exc:
        raise TrainingError(
            f"cannot resume: optimizer state in {path} does not fit this module ({exc})"
        ) from exc


def _with_prefix(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


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


def _batches(data: _Data, order: torch.Tensor, n_batches: int, device: torch.device):
    """Yield (batch dict, weights or None) for the index chunks of ``order``."""
    source = next(iter(data.tensors.values())).device
    for index in torch.tensor_split(order.to(source), n_batches):
        batch = {
            k: t.index_select(0, index).to(device, non_blocking=True)
            for k, t in data.tensors.items()
        }
        w = None
        if data.weights is not None:
            w = data.weights.index_select(0, index).to(device, non_blocking=True)
        yield batch, w


def _validation_loss(
    module: torch.nn.Module,
    objective: Objective,
    data: _Data,
    batch_size: int,
    device: torch.device,
    seed: int,
) -> float | None:
    """``sum w l / sum w`` over the whole set (plain mean without weights); None if not finite."""
    n_batches = max(1, math.ceil(data.n / batch_size))
    order = torch.arange(data.n)
    total = torch.zeros((), dtype=torch.float64, device=device)
    with _evaluating(module, device, seed):
        for batch, w in _batches(data, order, n_batches, device):
            n = next(iter(batch.values())).shape[0]
            losses = _check_losses(objective.validation_losses(module, batch), n)
            losses = losses.to(torch.float64)
            total += losses.sum() if w is None else (w.to(torch.float64) * losses).sum()
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
        the selected weights (see the module notes) and its original train/eval mode.
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

    Raises
    ------
    InputError
        Arrays of unequal length, non-finite values, bad weights, mismatched validation keys.
    ConfigError
        An unavailable device.
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
    if not isinstance(settings, TrainingSettings):
        raise TypeError(f"settings must be a TrainingSettings, got {type(settings).__name__}")
    if (loss_fn is None) == (objective is None):
        raise TypeError("train needs exactly one of loss_fn and objective")
    if objective is None:
        objective = LikelihoodObjective(loss_fn)
    elif not isinstance(objective, Objective):
        raise TypeError(f"objective must be an Objective, got {type(objective).__name__}")
    started = time.monotonic()
    device = _resolve_device(settings.device)
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
    run = _Run(module, objective, settings, device, train_set, val_set, mean_weight, metric_fn)
    ckpt = None if checkpoint_dir is None else Path(checkpoint_dir)
    if resume:
        assert ckpt is not None
        run.restore(ckpt / _LAST)
    else:
        torch.manual_seed(settings.seed)
        run.shuffle.manual_seed(settings.seed)
    if ckpt is not None:
        ckpt.mkdir(parents=True, exist_ok=True)

    state = run.state
    # A resumed run decides anew (max_epochs or patience may have grown), except after its
    # time limit: that run is finished (its cosine horizon is spent).
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
    elif val_set is not None and state.es_bad_epochs >= settings.patience:
        state.stopped = "early_stopping"
    was_training = module.training
    module.train()
    total = run.train_set.n * max(0, settings.max_epochs - state.epoch)
    deadline = None if settings.time_limit is None else started + settings.time_limit
    last_save: float | None = None
    pending_loss = pending_metric = False  # best weights improved since the last checkpoint
    try:
        with progress(total=total, desc="training", unit="events", quiet=quiet) as bar:
            while state.stopped is None:
                record, improved_loss, improved_metric = run.epoch(bar, deadline)
                pending_loss, pending_metric = (
                    pending_loss or improved_loss,
                    pending_metric or improved_metric,
                )
                if val_set is not None and state.es_bad_epochs >= settings.patience:
                    state.stopped = "early_stopping"
                elif state.epoch >= settings.max_epochs:
                    state.stopped = "max_epochs"
                elif settings.time_limit is not None:
                    left = settings.time_limit - (time.monotonic() - started)
                    run.schedule.fit_to_time_limit(state.epoch, left, record["seconds"])
                    horizon = run.schedule.timed_horizon
                    if left <= 0 or (horizon is not None and state.epoch >= horizon):
                        state.stopped = "time_limit"
                if ckpt is not None and (
                    last_save is None
                    or state.stopped is not None
                    or time.monotonic() - last_save >= CHECKPOINT_SECONDS
                ):
                    run.save(ckpt, pending_loss, pending_metric)
                    pending_loss = pending_metric = False
                    last_save = time.monotonic()
                if state.stopped is not None and not bar.disable:
                    bar.total = bar.n  # ends at 100 % whatever stopped it
                elif settings.time_limit is not None:
                    _fit_bar_to_time_limit(bar, settings.time_limit - (time.monotonic() - started))
                bar.set_postfix(
                    epoch=state.epoch,
                    train=_fmt(record["train_loss"]),
                    val=_fmt(record["val_loss"]),
                    refresh=False,
                )
                logger.info(
                    "epoch %d/%d: train %s, val %s, metric %s, lr %.3g, %.1f s, "
                    "%.3g events/s, %d bad batches",
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
    finally:
        module.train(was_training)

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
        settings=settings.to_dict(),
        chosen_from_data_size=chosen,
        n_train=train_set.n,
    )


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
    ) -> None:
        self.module = module.to(device)
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
        self.steps_per_epoch = max(1, math.ceil(train_set.n / settings.batch_size))
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
        if n_bad:
            logger.warning(
                "epoch %d: skipped %d of %d batches with a non-finite loss or gradient",
                state.epoch,
                n_bad,
                self.steps_per_epoch,
            )
        val_loss = None
        if self.val_set is not None:
            val_loss = _validation_loss(
                self.module,
                self.objective,
                self.val_set,
                max(s.batch_size, EVAL_BATCH_SIZE),
                self.device,
                s.seed,
            )
        if self.val_set is not None:
            reference = math.inf if state.es_best is None else state.es_best
            if val_loss is not None and val_loss < reference - s.min_delta:
                state.es_best, state.es_bad_epochs = val_loss, 0
            else:
                state.es_bad_epochs += 1
        horizon = self.schedule.timed_horizon
        last = (
            state.epoch >= s.max_epochs
            or (self.val_set is not None and state.es_bad_epochs >= s.patience)
            or (horizon is not None and state.epoch >= horizon)
            or (deadline is not None and time.monotonic() >= deadline)
        )
        metric, details = None, None
        if self.metric_fn is not None and (last or state.epoch % s.metric_every == 0):
            metric, details = _metric(self.module, self.metric_fn, self.device)
        self.schedule.end_epoch(val_loss if self.val_set is not None else train_loss)

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

    def _train_batches(self, bar: Any) -> tuple[float | None, int, float]:
        """One pass over the shuffled training set: (mean loss of good batches, n bad, lr)."""
        s, state, schedule = self.settings, self.state, self.schedule
        order = torch.randperm(self.n_train, generator=self.shuffle)
        sum_loss, n_good, n_bad, lr = 0.0, 0, 0, schedule.lr()
        batches = _batches(self.train_set, order, self.steps_per_epoch, self.device)
        for b, (batch, w) in enumerate(batches, start=1):
            n = next(iter(batch.values())).shape[0]
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
        saved = state.get("settings") or {}
        diffs = [
            f"{k}: {saved.get(k)!r} in the checkpoint, {getattr(self.settings, k)!r} now"
            for k in RESUME_FIXED_SETTINGS
            if saved.get(k) != getattr(self.settings, k)
        ]
        saved_objective = state.get("objective") or {}
        diffs += [
            f"objective {k}: {saved_objective.get(k)!r} in the checkpoint, "
            f"{self.objective_config.get(k)!r} now"
            for k in sorted(set(saved_objective) | set(self.objective_config))
            if saved_objective.get(k) != self.objective_config.get(k)
        ]
        if diffs:
            raise TrainingError(
                f"cannot resume from {path}: settings differ from the checkpoint's: "
                + "; ".join(diffs)
                + " (only max_epochs, patience, min_delta, max_bad_batches, device, time_limit "
                "and metric_every may change on resume)"
            )
        for what, key, n_now in (
            ("training", "n_train", self.n_train),
            ("validation", "n_validation", self.n_validation),
        ):
            if state.get(key) != n_now:
                raise TrainingError(
                    f"cannot resume from {path}: it was written for {state.get(key)} {what} "
                    f"events, the {what} data now have {n_now}"
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
