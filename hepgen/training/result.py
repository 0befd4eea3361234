"""What a training run did: :class:`TrainingResult`, the history and the selected epoch.

:func:`~hepgen.training.train` returns it; model wrappers keep it (``to_dict``) in their
model directory, so that a user can see how the kept weights were chosen.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from hepgen.utils import to_jsonable

__all__ = ["TrainingResult"]


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
