"""The reco collection of a chunk of events: matched objects and fakes, merged per event.

:meth:`hepgen.fastsim.FastSim.simulate` draws the reconstructed objects (efficiency, then
response) and the fakes of a chunk; the fakes depend on the gen multiplicities only, so
:func:`beside` draws them on a second thread while the calling thread runs the efficiency
and the response.  Each generator still runs on one thread with its own seeded generator, as
it would alone: the draws are the same bits whether the two run side by side or one after
the other.  :func:`matched_then_fakes` puts every event's matched objects first and its fakes
after them without sorting, and :func:`jagged_records` cuts the columns into one record per
event with a single offsets array shared by every field.

Examples
--------
>>> import numpy as np
>>> cols, counts = matched_then_fakes(
...     np.array([2, 0, 1]), np.array([1, 1, 0]),
...     {"pt": np.array([10.0, 20.0, 30.0])}, {"pt": np.array([1.0, 2.0])})
>>> cols["pt"].tolist(), counts.tolist()
([10.0, 20.0, 1.0, 2.0, 30.0], [3, 1, 1])
>>> jagged_records(cols, counts).pt.tolist()
[[10.0, 20.0, 1.0], [2.0], [30.0]]
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np

__all__ = ["beside", "draw_fakes", "jagged_records", "matched_then_fakes", "use_threads"]


def use_threads() -> bool:
    """Whether :func:`beside` runs its function on a second thread: when more than one CPU
    is available to this process and torch (if imported) runs one intra-op thread (the
    production setting, :data:`hepgen.devices.PRODUCTION_THREADS`); with more intra-op
    threads the cores are already busy with each model call."""
    from hepgen.devices import usable_cpus
    from hepgen.parallel.production import BLOCK_THREAD

    if threading.current_thread().name.startswith(BLOCK_THREAD):  # blocks already in parallel
        return False
    torch = sys.modules.get("torch")
    return usable_cpus() > 1 and (torch is None or torch.get_num_threads() == 1)


@contextlib.contextmanager
def beside(fn: Callable[..., Any], *args: Any) -> Iterator[Future]:
    """Run ``fn(*args)`` on a second thread while the ``with`` block runs.

    Yields a :class:`~concurrent.futures.Future` of its result (``.result()`` waits and
    raises its error); the block does not end before ``fn`` does, also when it raises.
    Without threads (:func:`use_threads` false) ``fn`` runs first, in this thread.

    Examples
    --------
    >>> with beside(sum, [1, 2, 3]) as total:
    ...     total.result()
    6
    """
    if not use_threads():
        future: Future = Future()
        try:
            future.set_result(fn(*args))
        except Exception as err:  # raised by .result(), as from the thread
            future.set_exception(err)
        yield future
        return
    with ThreadPoolExecutor(1, thread_name_prefix="hepgen-beside") as pool:
        yield pool.submit(fn, *args)  # leaving the pool waits for fn


def draw_fakes(
    fakes: Any, n_gen: np.ndarray, seed: np.random.SeedSequence
) -> tuple[np.ndarray | None, dict[str, np.ndarray] | None]:
    """The fakes of every event and their features.

    Parameters
    ----------
    fakes : hepgen.fastsim.fakes.Fakes or None
        The fast simulation's fakes (``None``: none).
    n_gen : np.ndarray of shape (n_events,)
        Gen objects per event.
    seed : np.random.SeedSequence
        Seeds the multiplicities and the features.

    Returns
    -------
    n_fake : np.ndarray of shape (n_events,), int64, or None
        Fakes per event (``None`` without fakes).
    features : dict of str to np.ndarray, or None
        One row per fake, events in order, physical units; ``None`` when there is none.
    """
    if fakes is None:
        return None, None
    rng = np.random.default_rng(seed)
    n_fake = fakes.counts(n_gen, rng)
    if not n_fake.sum():
        return n_fake, None
    fake_event = np.repeat(np.arange(len(n_gen)), n_fake)
    return n_fake, fakes.sample(n_gen[fake_event], seed=int(rng.integers(2**31)))


def matched_then_fakes(
    matched_counts: np.ndarray,
    fake_counts: np.ndarray,
    matched: Mapping[str, np.ndarray],
    fakes: Mapping[str, np.ndarray],
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Merge two sets of per-object columns event by event: each event's matched objects in
    their order, then its fakes in theirs (no sort: every row is put where it belongs).

    Parameters
    ----------
    matched_counts, fake_counts : np.ndarray of shape (n_events,)
        Objects per event of each set; the rows of each set are grouped by event, events in
        order.
    matched, fakes : mapping of str to np.ndarray
        The same column names; shapes (matched_counts.sum(),) and (fake_counts.sum(),).

    Returns
    -------
    columns : dict of str to np.ndarray
        Every column merged, dtype as :func:`numpy.concatenate` of the two.
    counts : np.ndarray of shape (n_events,)
        Objects per event.
    """
    matched_counts = np.asarray(matched_counts, dtype=np.int64)
    fake_counts = np.asarray(fake_counts, dtype=np.int64)
    counts = matched_counts + fake_counts
    matched_end = np.cumsum(matched_counts)
    fakes_before = np.cumsum(fake_counts) - fake_counts
    # a matched row moves down by the fakes of the events before it; a fake row by the
    # matched objects of its event and of the events before it
    to_matched = np.arange(matched_end[-1] if len(counts) else 0) + np.repeat(
        fakes_before, matched_counts
    )
    to_fakes = np.arange(int(fake_counts.sum())) + np.repeat(matched_end, fake_counts)
    total = int(counts.sum())
    columns: dict[str, np.ndarray] = {}
    for name, values in matched.items():
        other = np.asarray(fakes[name])
        merged = np.empty(total, dtype=np.result_type(values, other))
        merged[to_matched] = values
        merged[to_fakes] = other
        columns[name] = merged
    return columns, counts


def jagged_records(columns: Mapping[str, np.ndarray], counts: np.ndarray) -> Any:
    """One record per event whose fields are the columns cut into lists of ``counts``
    objects (as ``ak.zip({k: ak.unflatten(v, counts)}, depth_limit=1)``, with one offsets
    array for every field).

    Raises
    ------
    ValueError
        A column whose length is not ``counts.sum()``.
    """
    import awkward as ak

    counts = np.asarray(counts, dtype=np.int64)
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    index = ak.index.Index64(offsets)
    contents = []
    for name, values in columns.items():
        values = np.asarray(values)
        if values.shape != (offsets[-1],):
            raise ValueError(f"column '{name}' has shape {values.shape}, expected ({offsets[-1]},)")
        contents.append(ak.contents.ListOffsetArray(index, ak.contents.NumpyArray(values)))
    return ak.Array(ak.contents.RecordArray(contents, list(columns), length=len(counts)))
