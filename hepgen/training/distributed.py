"""Training on several processes: torch DistributedDataParallel under ``torchrun``.

``torchrun --nproc_per_node N`` (or ``hepgen train --devices N``, which launches it) starts N
copies of the same command with ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT`` in their environment.  :func:`init_from_env` turns those into a process group
(backend ``gloo`` on the CPU, ``nccl`` on CUDA, where rank ``r`` of a node trains on
``cuda:LOCAL_RANK``) and a :class:`DistributedContext`; :func:`hepgen.training.train` and
:meth:`hepgen.FastSim.fit` call it themselves when ``WORLD_SIZE > 1``.  Without those variables
nothing here runs and :mod:`torch.distributed` is never initialised: training is one process,
as before.

What the loop does with N processes (:mod:`hepgen.training.loop`):

* **Data sharded by event.**  Every rank holds the whole training set and draws the same seeded
  permutation each epoch; each global batch of the single-process run (``torch.tensor_split``
  of the permutation) is cut into N contiguous slices (:func:`shard_bounds`) and rank ``r``
  takes slice ``r``.  Every event of a batch is used by exactly one rank.
* **The same gradient.**  The single-process batch loss is ``sum_B w l / (|B| mean(w))``.
  Rank ``r`` back-propagates ``N sum_{B_r} w l / (|B| mean(w))``; DDP averages the gradients
  over the N ranks, so the update is the single-process one up to float rounding, whatever the
  slices' own weight sums (sWeights included).  ``|B|`` comes from one small collective per
  batch, which also gives every rank the batch's global loss (history, NaN guard: all ranks
  skip a non-finite batch together).
* **The same decisions.**  The validation loss is sharded the same way and its partial sums
  are gathered and added in rank order (identical bits on every rank); the selection metric
  runs on rank 0 and is broadcast; the stop decision (time limit included) is rank 0's,
  broadcast.  Early stopping, the plateau schedule and the selected epoch are therefore the
  same on every rank.
* **Files and output from rank 0 only**: checkpoints, the model directory, the progress bar and
  the per-epoch log lines.  ``resume`` reads the checkpoint on every rank (a shared file
  system), and a run may resume with another number of processes.
* **Only likelihood training.**  Adversarial objectives (several optimizers, the gradient
  penalty's double backward) are refused with :class:`~hepgen.errors.InputError`.

Collectives wait at most ``HEPGEN_DDP_TIMEOUT`` seconds (default :data:`DEFAULT_TIMEOUT_S`):
ranks other than 0 wait at a barrier while rank 0 trains the efficiency model.

References
----------
S. Li et al., "PyTorch Distributed: experiences on accelerating data parallel training",
VLDB 2020, arXiv:2006.15704.
"""

from __future__ import annotations

import atexit
import datetime
import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from hepgen.devices import check_device, resolve_device
from hepgen.errors import InputError

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "ENV_VARS",
    "TIMEOUT_ENV",
    "DistributedContext",
    "barrier",
    "current",
    "env_rank",
    "init_from_env",
    "is_main_process",
    "launched",
    "shard_bounds",
]

logger = logging.getLogger("hepgen.training")

#: The variables torchrun sets for each process (MASTER_ADDR/PORT: the rendezvous).
ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
#: Environment variable: the collectives' timeout in seconds.
TIMEOUT_ENV = "HEPGEN_DDP_TIMEOUT"
#: Default timeout of a collective (seconds): long enough for rank 0's efficiency model.
DEFAULT_TIMEOUT_S = 4 * 3600

_CONTEXT: DistributedContext | None = None


def _env_int(name: str, environ: Mapping[str, str], default: int | None = None) -> int | None:
    text = environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise InputError(f"environment variable {name}={text!r}: expected an integer") from None


def launched(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process is one of several started by torchrun (``WORLD_SIZE > 1``).

    Examples
    --------
    >>> launched({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
    True
    >>> launched({})
    False
    """
    env = os.environ if environ is None else environ
    return (_env_int("WORLD_SIZE", env, 1) or 1) > 1


def env_rank(environ: Mapping[str, str] | None = None) -> int:
    """This process's ``RANK`` under torchrun (0 without it), read without initialising
    anything (e.g. to keep the other ranks quiet before the process group exists).

    Examples
    --------
    >>> env_rank({"RANK": "3", "WORLD_SIZE": "4"}), env_rank({})
    (3, 0)
    """
    env = os.environ if environ is None else environ
    return int(_env_int("RANK", env, 0) or 0) if launched(env) else 0


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of rank ``rank``'s contiguous slice of ``n`` rows.

    The slices of ranks 0..N-1 follow each other and cover the ``n`` rows exactly once; the
    first ``n % N`` are one row longer (the rule of :func:`torch.tensor_split`).

    Examples
    --------
    >>> [shard_bounds(10, r, 3) for r in range(3)]
    [(0, 4), (4, 7), (7, 10)]
    """
    if world_size < 1 or not 0 <= rank < world_size or n < 0:
        raise ValueError(f"shard_bounds({n}, {rank}, {world_size}): bad arguments")
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (1 if rank < extra else 0)


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the process group, and the few collectives the loop uses.

    Attributes
    ----------
    rank, world_size, local_rank : int
        From torchrun's environment.
    backend : {"gloo", "nccl"}
        ``gloo`` on the CPU, ``nccl`` on CUDA.
    device : str
        Where this rank trains: ``"cpu"`` or ``"cuda:LOCAL_RANK"``.

    Examples
    --------
    >>> ctx = DistributedContext(rank=1, world_size=2, local_rank=1, backend="gloo",
    ...                          device="cpu")
    >>> ctx.is_main, ctx.bounds(5)
    (False, (3, 5))
    """

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: str

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes files, logs and shows progress."""
        return self.rank == 0

    def bounds(self, n: int) -> tuple[int, int]:
        """This rank's slice ``[start, stop)`` of ``n`` rows (:func:`shard_bounds`)."""
        return shard_bounds(n, self.rank, self.world_size)

    def barrier(self) -> None:
        """Wait until every rank got here."""
        import torch.distributed as dist

        if self.backend == "nccl":
            dist.barrier(device_ids=[self.local_rank])
        else:
            dist.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` (a picklable object) on every rank."""
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """The sum over ranks of ``values`` (1-D), float64, added in rank order: the same bits
        on every rank (an all-reduce's order of additions may differ between ranks)."""
        import torch.distributed as dist

        local = values.detach().to(device=self.device, dtype=torch.float64).reshape(-1)
        parts = [torch.empty_like(local) for _ in range(self.world_size)]
        dist.all_gather(parts, local)
        total = parts[0].clone()
        for part in parts[1:]:
            total += part
        return total


def current() -> DistributedContext | None:
    """The context made by :func:`init_from_env` in this process (None: one process)."""
    return _CONTEXT


def is_main_process() -> bool:
    """True in a single-process run and on rank 0 of a distributed one.

    Examples
    --------
    >>> is_main_process()
    True
    """
    return _CONTEXT is None or _CONTEXT.is_main


def barrier() -> None:
    """Wait for every rank (nothing in a single-process run)."""
    if _CONTEXT is not None:
        _CONTEXT.barrier()


def _timeout() -> datetime.timedelta:
    text = os.environ.get(TIMEOUT_ENV)
    if text is None:
        return datetime.timedelta(seconds=DEFAULT_TIMEOUT_S)
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise InputError(
            f"environment variable {TIMEOUT_ENV}={text!r}: expected a positive number of seconds"
        )
    return datetime.timedelta(seconds=seconds)


def _rank_device(device: str, local_rank: int) -> str:
    """``"cpu"`` or ``"cuda:LOCAL_RANK"`` for the device setting (InputError: no such GPU)."""
    name = check_device(device)
    if resolve_device(name) == "cpu":
        return "cpu"
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise InputError(
            f"LOCAL_RANK={local_rank} but torch sees {count} GPU(s) on this node: start at most "
            f"{count} processes per node (--nproc_per_node / --devices), or train on device 'cpu'"
        )
    rank_device = f"cuda:{local_rank}"
    if name.startswith("cuda:") and name != rank_device:
        logger.info("device %s: this process trains on %s (its LOCAL_RANK)", name, rank_device)
    return rank_device


def init_from_env(
    device: str = "auto", environ: Mapping[str, str] | None = None
) -> DistributedContext | None:
    """Join the process group that torchrun's environment describes (once per process).

    Parameters
    ----------
    device : {"auto", "cpu", "cuda", "cuda:N"}
        The training device setting: a CUDA device makes rank ``r`` train on
        ``cuda:LOCAL_RANK`` with the ``nccl`` backend; the CPU uses ``gloo``.
    environ : mapping or None
        The environment (default ``os.environ``).

    Returns
    -------
    DistributedContext or None
        None without ``WORLD_SIZE > 1`` (one process: nothing is initialised).  A second call
        returns the first call's context.

    Raises
    ------
    InputError
        A malformed variable, ``RANK`` or ``LOCAL_RANK`` missing, or more processes on a node
        than GPUs.
    """
    global _CONTEXT
    env = os.environ if environ is None else environ
    if not launched(env):
        return None
    if _CONTEXT is not None:
        return _CONTEXT
    import torch.distributed as dist

    world = int(_env_int("WORLD_SIZE", env) or 1)
    rank, local_rank = _env_int("RANK", env), _env_int("LOCAL_RANK", env)
    if rank is None or local_rank is None or not 0 <= rank < world or local_rank < 0:
        raise InputError(
            f"WORLD_SIZE={world} but RANK={env.get('RANK')!r}, LOCAL_RANK="
            f"{env.get('LOCAL_RANK')!r}: start the processes with torchrun, which sets "
            + ", ".join(ENV_VARS)
        )
    rank_device = _rank_device(device, local_rank)
    backend = "nccl" if rank_device.startswith("cuda") else "gloo"
    if rank_device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        extra = {"device_id": torch.device(rank_device)} if backend == "nccl" else {}
        dist.init_process_group(backend, rank=rank, world_size=world, timeout=_timeout(), **extra)
        atexit.register(_destroy)
    else:
        backend = str(dist.get_backend())
    _CONTEXT = DistributedContext(rank, world, local_rank, backend, rank_device)
    logger.debug("rank %d of %d (%s, %s)", rank, world, backend, rank_device)
    return _CONTEXT


def _destroy() -> None:
    """Leave the process group at exit (nccl warns otherwise)."""
    global _CONTEXT
    import torch.distributed as dist

    if dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # at interpreter exit: nothing left to report to
            pass
    _CONTEXT = None
