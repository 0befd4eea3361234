"""Where the partitions of a data-parallel job run: in this process, on a local Dask cluster
that hepgen starts and stops, or on an existing Dask scheduler.

:func:`executor` gives an :class:`Executor` whose :meth:`~Executor.map` calls a function on
every item (a :class:`~hepgen.parallel.partitions.Partition`) and yields the results as they
complete, with a progress bar (rate, ETA).  In-process is the default and imports no Dask;
the others use ``dask.distributed`` (the extra ``hepgen[dask]``): futures submitted with
``client.map``, so a worker that dies has its tasks re-run by the scheduler on another worker
(the functions hepgen maps are idempotent: a re-run writes the same bytes to the same place).

The cluster engine is Dask's own; hepgen adds only the partition plan, the seeding
(:mod:`hepgen.parallel.partitions`) and the progress bar.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from hepgen.errors import InputError, MissingDependencyError
from hepgen.progress import progress

__all__ = ["RETRIES", "Executor", "executor", "import_distributed"]

log = logging.getLogger(__name__)

#: Times Dask re-runs a task that raised before the error is reported.
RETRIES = 2


def import_distributed() -> Any:
    """``dask.distributed``, or :class:`MissingDependencyError` naming the extra."""
    try:
        import distributed
    except ImportError as err:
        raise MissingDependencyError(
            f"running on Dask needs the packages dask and distributed ({err}); install them "
            "with: pip install 'hepgen[dask]'"
        ) from None
    return distributed


class Executor:
    """Runs a function over items, here or on a Dask cluster (see :func:`executor`).

    Parameters
    ----------
    client : distributed.Client or None
        ``None``: in-process.
    kind : {"in-process", "local", "scheduler"}
        How the executor was made (for manifests and reports).

    Examples
    --------
    >>> with executor() as ex:
    ...     sorted(ex.map(abs, [-1, 2, -3], quiet=True))
    [(0, 1), (1, 2), (2, 3)]
    """

    def __init__(self, client: Any = None, kind: str = "in-process") -> None:
        self.client = client
        self.kind = kind

    @property
    def in_process(self) -> bool:
        """True when the work runs in this process."""
        return self.client is None

    def describe(self) -> dict[str, Any]:
        """``{"kind", "workers", "threads", "scheduler"}`` for manifests and reports."""
        if self.client is None:
            return {"kind": self.kind, "workers": 1, "threads": None, "scheduler": None}
        info = self.client.scheduler_info()
        workers = info.get("workers", {})
        return {
            "kind": self.kind,
            "workers": len(workers),
            "threads": sum(int(w.get("nthreads", 0)) for w in workers.values()),
            "scheduler": info.get("address"),
        }

    def map(
        self,
        fn: Callable[[Any], Any],
        items: Sequence[Any],
        *,
        sizes: Sequence[float] | None = None,
        desc: str = "",
        unit: str = "event",
        quiet: bool = False,
        key: str = "hepgen",
    ) -> Iterator[tuple[int, Any]]:
        """Call ``fn(item)`` for every item; yield ``(index, result)`` as results complete.

        Parameters
        ----------
        fn : callable
            Picklable (a module-level function, or a ``functools.partial`` / instance of a
            module-level class) and idempotent: Dask re-runs the task of a dead worker.
        items : sequence
            The work items (partitions).
        sizes : sequence of float or None
            How far each item advances the progress bar (default 1 each).
        desc, unit : str
            Progress bar label and unit.
        quiet : bool
            No progress bar.
        key : str
            Prefix of the Dask task keys (shown on the Dask dashboard).

        Yields
        ------
        (int, object)
            The item's index and ``fn(item)``; in item order in-process, in completion
            order on Dask.

        Raises
        ------
        Exception
            The first exception raised by ``fn`` (on Dask: re-raised here with its type); the
            remaining tasks are cancelled.
        """
        sizes = [1.0] * len(items) if sizes is None else list(sizes)
        with progress(total=sum(sizes), desc=desc, unit=unit, quiet=quiet) as bar:
            if self.client is None:
                for i, item in enumerate(items):
                    yield i, fn(item)
                    bar.update(sizes[i])
                return
            yield from self._map_dask(fn, items, sizes, bar, key)

    def _map_dask(
        self, fn: Callable[[Any], Any], items: Sequence[Any], sizes: list[float], bar: Any, key: str
    ) -> Iterator[tuple[int, Any]]:
        distributed = import_distributed()
        from dask.base import tokenize

        token = tokenize(fn, list(items))
        keys = [f"{key}-{i}-{token}" for i in range(len(items))]
        # a dead worker's tasks are re-run by the scheduler (allowed-failures); retries= also
        # re-runs a task that raised, for the transient read errors of remote files (a
        # deterministic error is raised after the retries)
        futures = self.client.map(fn, list(items), key=keys, pure=False, retries=RETRIES)
        index = {f.key: i for i, f in enumerate(futures)}
        try:
            for future in distributed.as_completed(futures):
                i = index[future.key]
                result = future.result()  # re-raises the task's exception
                future.release()
                yield i, result
                bar.update(sizes[i])
        finally:
            self.client.cancel([f for f in futures if not f.done()])


def _check_workers(workers: Any) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise InputError(f"--workers must be a positive number of processes, got {workers!r}")
    return workers


@contextlib.contextmanager
def executor(
    workers: int | None = None, scheduler: Any = None, quiet: bool = False
) -> Iterator[Executor]:
    """The executor of a job: in-process, a local Dask cluster, or an existing scheduler.

    Parameters
    ----------
    workers : int or None
        Start a local Dask cluster of this many worker processes (one thread each: the
        models' own torch/BLAS threads are left to one core per worker), stopped on exit.
    scheduler : str, distributed.Client or None
        An existing Dask scheduler (``"tcp://host:port"``) or a client of one; hepgen
        connects and leaves the cluster running.
    quiet : bool
        Not used by Dask (its informational logging is always off: warnings stay).

    Yields
    ------
    Executor

    Raises
    ------
    InputError
        Both ``workers`` and ``scheduler``, a bad worker count, an unreachable scheduler.
    MissingDependencyError
        A cluster asked for without dask.distributed installed.
    """
    if workers is not None and scheduler is not None:
        raise InputError("give either --workers (a local cluster) or --scheduler, not both")
    if workers is None and scheduler is None:
        yield Executor()
        return
    distributed = import_distributed()
    if scheduler is not None and not isinstance(scheduler, str):
        if not isinstance(scheduler, distributed.Client):
            raise InputError(
                f"scheduler must be an address 'tcp://host:port' or a dask.distributed.Client, "
                f"got {type(scheduler).__name__}"
            )
        yield Executor(scheduler, "scheduler")
        return
    environ = dict(os.environ)
    with contextlib.ExitStack() as stack:
        # Dask's nanny writes its workers' environment into this process's os.environ when
        # it starts (or restarts) a worker: put the caller's back afterwards
        stack.callback(_restore_environ, environ)
        if scheduler is not None:
            try:
                client = stack.enter_context(distributed.Client(scheduler, timeout="30s"))
            except (OSError, TimeoutError) as err:
                raise InputError(
                    f"cannot connect to the Dask scheduler '{scheduler}' ({err}); expected "
                    "the address of a running scheduler, e.g. tcp://host:8786"
                ) from None
            kind = "scheduler"
        else:
            cluster = stack.enter_context(_local_cluster(distributed, _check_workers(workers)))
            client = stack.enter_context(distributed.Client(cluster))
            kind = "local"
        log.info("running on Dask (%s): %s", kind, client.dashboard_link or client.scheduler)
        yield Executor(client, kind)


def _restore_environ(environ: dict[str, str]) -> None:
    for key in set(os.environ) - set(environ):
        del os.environ[key]
    os.environ.update(environ)


def _local_cluster(distributed: Any, workers: int) -> Any:
    """A local cluster of ``workers`` one-thread processes.

    Dask's default ``MALLOC_TRIM_THRESHOLD_=65536`` for its workers makes our partitions
    (many short-lived arrays) about 2x slower (measured: 1.72 s vs 0.67 s for a warm 50k-event
    partition); our workers get :data:`hepgen.devices.MALLOC_SETTINGS` instead (a scheduler's
    own workers: set ``distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_`` and the
    other two in their config).
    """
    import dask

    from hepgen.devices import MALLOC_SETTINGS

    # our workers keep their freed memory (hepgen.devices.MALLOC_SETTINGS) where Dask's
    # default trims at 64 KiB (a partition ran 2x slower with it)
    malloc = {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in MALLOC_SETTINGS.items()}
    with dask.config.set(malloc):
        return distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",  # a free port: never a clash with a running one
            silence_logs=logging.WARNING,
        )
