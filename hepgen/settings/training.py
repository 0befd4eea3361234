"""Settings of the training loop (:func:`hepgen.training.train`), with their size-based
defaults.

The ``training`` section of a configuration; the fields left out are chosen from the number
of training rows by :meth:`TrainingSettings.resolve`, so that the same configuration trains
well on ten thousand rows and on a million.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

from pydantic import Field

from hepgen.settings.base import Device, Float, Settings

__all__ = [
    "AUTO_BATCH_RANGE",
    "AUTO_EPOCH_RANGE",
    "AUTO_FIELDS",
    "AUTO_METRIC_EVERY_MAX",
    "AUTO_METRIC_SHARE",
    "AUTO_ROWS_PER_BATCH",
    "AUTO_STEPS",
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


class TrainingSettings(Settings):
    """How the training loop trains: optimizer, schedule, stopping, NaN guard, device, seed.

    Parameters
    ----------
    max_epochs : int or None
        Passes over the training set at most.  ``None``: chosen from the data size (below).
    batch_size : int or None
        Events per batch at most.  ``None``: chosen from the data size.
    learning_rate : float or None
        Peak AdamW learning rate (default 1e-3).  ``None``: the model's own default, chosen
        when it is fitted (1e-3 for the likelihood flows, 1e-2 for flow matching, the GAN's
        recipe), else 1e-3.
    weight_decay : float
        AdamW's decoupled weight decay.
    schedule : {"cosine", "plateau", "constant"}
        Learning-rate schedule after the warm-up.  The default cosine decay adapts to any data
        size through its horizon, ``max_epochs`` (size-chosen when left out) or the epochs
        that fit in ``time_limit``.
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
        Consecutive batches with a non-finite loss or gradient norm before training fails.
    device : str
        ``"auto"`` (CUDA when torch sees a GPU, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
    seed : int
        Seed of torch's global generator and of the shuffling.
    time_limit : float or None
        Wall-clock seconds; training stops after the epoch that crosses it (with the cosine
        schedule, at the end of the horizon fitted to it after the first epoch).
    metric_every : int or None
        Evaluate the model's selection metric every this many epochs, and always at the last
        epoch.  ``None``: as often as keeps it to about :data:`AUTO_METRIC_SHARE` of the
        training time, by the model's estimate of the metric's cost; every epoch without an
        estimate.

    Notes
    -----
    **Size-based defaults.**  A small training set (tens of thousands of rows) needs smaller
    batches and more epochs than a large one for the same number of optimizer steps.  The
    fields left ``None`` are chosen by :meth:`resolve` from ``n``, the number of training
    rows (explicit values always win):

    * ``batch_size``: ``n / 50`` rounded to a power of two, clipped to [256, 4096]: 28k rows
      -> 512, 100k -> 2048, 300k -> 4096;
    * ``max_epochs``: enough epochs for about 8000 optimizer steps, clipped to [20, 500]:
      22.4k rows (44 batches of 512) -> 182 epochs, 240k rows (59 batches of 4096) -> 136;
    * ``patience``: ``max(10, ceil(max_epochs / 10))``;
    * ``metric_every``: see above.

    References
    ----------
    I. Loshchilov and F. Hutter, "Decoupled weight decay regularization", ICLR 2019,
    arXiv:1711.05101; "SGDR: stochastic gradient descent with warm restarts", ICLR 2017,
    arXiv:1608.03983.

    Examples
    --------
    >>> s = TrainingSettings.from_dict({"max_epochs": 20, "learning_rate": "3e-4"})
    >>> s.max_epochs, s.learning_rate, s.schedule
    (20, 0.0003, 'cosine')
    >>> TrainingSettings.from_dict(s.to_dict()) == s
    True
    """

    family: ClassVar[str] = "training"

    max_epochs: int | None = Field(None, ge=1)
    batch_size: int | None = Field(None, ge=1)
    learning_rate: Float | None = Field(1e-3, gt=0, allow_inf_nan=False)
    weight_decay: Float = Field(1e-5, ge=0, allow_inf_nan=False)
    schedule: Literal["cosine", "plateau", "constant"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    grad_clip: Float | None = Field(5.0, gt=0, allow_inf_nan=False)
    patience: int | None = Field(None, ge=1)
    min_delta: Float = Field(0.0, ge=0, allow_inf_nan=False)
    max_bad_batches: int = Field(20, ge=1)
    device: Device = "auto"
    seed: int = Field(0, ge=0, lt=2**63)
    time_limit: Float | None = Field(None, gt=0, allow_inf_nan=False)
    metric_every: int | None = Field(None, ge=1)

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
        values: dict[str, Any] = {
            "learning_rate": 1e-3 if self.learning_rate is None else self.learning_rate,
            "batch_size": batch,
            "max_epochs": epochs,
            "patience": patience,
            "metric_every": every,
        }
        return self.replace(**values), chosen
