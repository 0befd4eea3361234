"""Objectives: how the loop updates a module on one batch and scores a validation batch.

A plain per-event loss ``loss_fn(module, batch) -> losses`` of shape ``(batch,)`` (for a flow,
``-log p(x | c)``) is the :class:`LikelihoodObjective`: one AdamW, one update per batch.
Models not trained by minimising one loss with one optimizer (adversarial training: a generator
and a critic, each with its own optimizer and several critic updates per generator update)
subclass :class:`Objective`: it names its optimizers and does the update(s) of a batch through
:meth:`StepContext.update`, which applies the NaN guard, the gradient clipping and the
learning rate to each optimizer separately.  With several optimizers the NaN check is per
update: the first non-finite update ends the batch's step (updates done before it in that batch
stay), and the batch counts as bad.  Batches, weights, schedule, checkpoints, resume and
selection stay the loop's.

References
----------
- I. Loshchilov and F. Hutter, "Decoupled weight decay regularization", ICLR 2019,
  arXiv:1711.05101 (AdamW).
- R. Pascanu, T. Mikolov and Y. Bengio, "On the difficulty of training recurrent neural
  networks", ICML 2013, arXiv:1211.5063 (gradient-norm clipping).
- I. Gulrajani et al., "Improved training of Wasserstein GANs", NeurIPS 2017,
  arXiv:1704.00028 (alternating critic and generator updates).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from hepgen.training.data import _check_losses, _weighted_batch_loss

if TYPE_CHECKING:
    from hepgen.settings.training import TrainingSettings

__all__ = ["LikelihoodObjective", "LossFn", "Objective", "StepContext"]

#: ``loss_fn(module, batch) -> losses``: per-event losses, shape ``(batch,)``.
LossFn = Callable[[torch.nn.Module, dict[str, torch.Tensor]], torch.Tensor]

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
        without weights): the loop's batch normalisation (:mod:`hepgen.training.data`)."""
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


class _LossModule(torch.nn.Module):
    """``forward(batch) = loss_fn(module, batch)``: the per-event losses as one module's
    forward, so that DistributedDataParallel sees the calls (``module.log_prob``, ...) that
    use the parameters and can synchronise their gradients."""

    def __init__(self, module: torch.nn.Module, loss_fn: LossFn) -> None:
        super().__init__()
        self.module = module
        self.loss_fn = loss_fn

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.loss_fn(self.module, batch)


class _DistributedLikelihood(LikelihoodObjective):
    """:class:`LikelihoodObjective` on one rank's slice of each batch, under
    DistributedDataParallel (:mod:`hepgen.training.distributed`).

    Rank ``r`` back-propagates ``N sum_{B_r} w l / (|B| mean(w))`` through the DDP-wrapped
    :class:`_LossModule`; DDP's average over the N ranks is then the single-process gradient
    of ``sum_B w l / (|B| mean(w))``.  One gather per batch gives ``|B|`` and the batch's
    global loss, identical on every rank, so that every rank skips a non-finite batch.
    """

    def __init__(self, loss_fn: LossFn, wrapped: torch.nn.Module, dist: Any) -> None:
        super().__init__(loss_fn)
        self.wrapped = wrapped
        self.dist = dist

    def step(
        self,
        module: torch.nn.Module,
        batch: dict[str, torch.Tensor],
        weights: torch.Tensor | None,
        context: StepContext,
    ) -> float | None:
        """One synchronised AdamW step; the global batch loss (None when not finite)."""
        n = next(iter(batch.values())).shape[0]
        losses = _check_losses(self.wrapped(batch), n)
        partial = losses.sum() if weights is None else (weights.to(losses.dtype) * losses).sum()
        stats = torch.stack(
            [partial.detach().to(torch.float64), partial.new_tensor(float(n), dtype=torch.float64)]
        )
        total, rows = (float(v) for v in self.dist.sum(stats))
        norm = rows * context.mean_weight
        value = total / norm
        name = next(iter(context.optimizers))
        if not math.isfinite(value):
            context.optimizers[name].zero_grad(set_to_none=True)
            return None
        if not context.update(name, partial * (self.dist.world_size / norm)):
            return None
        return value
