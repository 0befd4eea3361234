"""Built-in reference detector simulations: the "slow full simulation" that hepgen learns from.

Three processes, in :data:`PROCESSES`: ``jets`` (:class:`JetSimulation`, CMS-like AK4 jets
and their reconstruction in NanoAOD layout, GeV), ``dijet`` (:class:`DijetSimulation`,
LHC-Olympics-2020-like dijet features with an optional resonance, TeV) and ``pid``
(:class:`PidSimulation`, an LHCb-like PID calibration ntuple with sWeights, MeV). Each class
only stores its physics settings (scikit-learn style); ``generate(n_events, seed)`` returns
an awkward Array with one record per event whose fields are ROOT branch names, and
:func:`simulate_to_file` writes a process to a ROOT file in chunks (``hepgen simulate``).
The physics models, branches, units and dtypes are documented in the project's
``data/README.md``.

Example
-------
>>> from hepgen.sim import PROCESSES
>>> events = PROCESSES["jets"]().generate(100, seed=0)
>>> events.fields[:4]
['run', 'luminosityBlock', 'event', 'genWeight']
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from hepgen.errors import InputError, did_you_mean
from hepgen.progress import progress
from hepgen.sim._common import Simulation, check_n_events
from hepgen.sim.dijet import DijetSimulation
from hepgen.sim.jets import EVENTS_PER_LUMI, JetSimulation
from hepgen.sim.pid import PidSimulation

__all__ = [
    "BYTES_PER_EVENT",
    "PROCESSES",
    "DijetSimulation",
    "JetSimulation",
    "PidSimulation",
    "chunk_seeds",
    "estimated_file_size",
    "iter_chunk_seeds",
    "make_simulation",
    "simulate_to_file",
]

#: Process name (``--process``) -> simulation class.
PROCESSES: dict[str, type[Simulation]] = {
    "jets": JetSimulation,
    "dijet": DijetSimulation,
    "pid": PidSimulation,
}

#: Lower bounds of the compressed size of one event written by :func:`simulate_to_file`
#: (bytes; measured with the default settings at 1e5 events: jets 143, dijet 19.4, pid 106).
BYTES_PER_EVENT: dict[str, float] = {"jets": 100.0, "dijet": 15.0, "pid": 80.0}


def make_simulation(process: str = "jets", **options: Any) -> Simulation:
    """Construct the simulation of ``process`` from user options, validating them.

    Parameters
    ----------
    process : str
        A key of :data:`PROCESSES`.
    **options
        Settings of the process class (see its constructor).

    Returns
    -------
    Simulation
        A :class:`JetSimulation` or :class:`DijetSimulation`.

    Raises
    ------
    InputError
        For an unknown process, an unknown option (named in the message, with close
        matches suggested) or a value out of range.
    """
    if process not in PROCESSES:
        raise InputError(
            f"unknown process '{process}'{did_you_mean(process, PROCESSES)}; "
            f"available: {', '.join(PROCESSES)}"
        )
    return PROCESSES[process].from_options(**options)


def chunk_seeds(
    seed: int, n_events: int, chunk_size: int
) -> list[tuple[int, np.random.SeedSequence]]:
    """Return ``(size, seed sequence)`` of every chunk :func:`simulate_to_file` generates.

    Chunk ``i`` holds ``min(chunk_size, n_events - i * chunk_size)`` events and is seeded
    with ``np.random.SeedSequence(seed).spawn(n_chunks)[i]``.
    """
    return list(iter_chunk_seeds(seed, n_events, chunk_size))


def iter_chunk_seeds(
    seed: int, n_events: int, chunk_size: int
) -> Iterator[tuple[int, np.random.SeedSequence]]:
    """Yield what :func:`chunk_seeds` returns one chunk at a time, in constant memory.

    ``SeedSequence(seed).spawn(n)[i]`` is ``SeedSequence(seed, spawn_key=(i,))``, so no list
    of all children is built (``simulate -n 10**15`` would otherwise spend minutes and
    gigabytes spawning seeds before writing anything).
    """
    n_chunks = -(-n_events // chunk_size)
    for i in range(n_chunks):
        size = min(chunk_size, n_events - i * chunk_size)
        yield size, np.random.SeedSequence(seed, spawn_key=(i,))


def estimated_file_size(process: str, n_events: int) -> float:
    """A lower bound of the size in bytes of :func:`simulate_to_file`'s output.

    Parameters
    ----------
    process : str
        A key of :data:`PROCESSES`.
    n_events : int
        Number of events.

    Returns
    -------
    float
        ``n_events * BYTES_PER_EVENT[process]`` (bytes).
    """
    return float(n_events) * BYTES_PER_EVENT.get(process, 10.0)


def _format_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} PB"  # pragma: no cover


def _check_disk_space(path: Path, process: str, n_events: int) -> None:
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    need = estimated_file_size(process, n_events)
    if need > free:
        raise InputError(
            f"{n_events} {process} events would take at least {_format_bytes(need)} "
            f"(~{BYTES_PER_EVENT.get(process, 10.0):g} bytes per event) but only "
            f"{_format_bytes(free)} are free in '{folder}'; simulate fewer events"
        )


def simulate_to_file(
    path: str | os.PathLike,
    process: str = "jets",
    n_events: int = 10_000,
    seed: int = 0,
    chunk_size: int = 100_000,
    quiet: bool = False,
    **options: Any,
) -> Path:
    """Simulate ``n_events`` events of ``process`` and write them to a ROOT file.

    Events are generated in chunks of ``chunk_size``; chunk ``i`` is
    ``PROCESSES[process](**options).generate(size_i, seed=SeedSequence(seed).spawn(n)[i])``
    (see :func:`chunk_seeds`), with ``event`` (and, for ``jets``, ``luminosityBlock``;
    ``eventNumber`` and ``runNumber`` for ``pid``) renumbered to count through the whole file
    from 1. The output therefore depends only on ``seed``, ``n_events``, ``chunk_size`` and the
    options. The file is written atomically (temporary file, renamed on success) as a TTree
    ``Events`` in NanoAOD layout: jagged branches of one collection share a counter branch
    (``nJet``, ``nGenJet``); ``pid`` writes a flat TTree ``DecayTree`` (the class attribute
    ``tree_name``). A process with a ``file_options(chunks)`` method (``pid``: the sPlot fit
    of the masses of the whole file, so that the sWeights do not depend on the chunking) is
    asked for keyword arguments of every chunk's ``generate`` before the first chunk is
    written.

    Parameters
    ----------
    path : str or os.PathLike
        Output ``.root`` file; its folder is created if needed. An existing file is
        replaced (``hepgen simulate`` refuses that without ``--overwrite``); temporary files
        that a killed run left for it are removed (see :mod:`hepgen.outputs`).
    process : str
        ``"jets"``, ``"dijet"`` or ``"pid"`` (a key of :data:`PROCESSES`).
    n_events : int
        Number of events to write (>= 0; 0 writes an empty tree).
    seed : int
        Master seed (>= 0).
    chunk_size : int
        Events generated and written per step (>= 1); bounds the memory use.
    quiet : bool
        Suppress the progress bar.
    **options
        Settings of the process class, e.g. ``signal_fraction=0.01`` for ``dijet``.

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    InputError
        For an unknown process or option, a setting out of range, or bad sizes; for an
        output that cannot be written (see :class:`~hepgen.io.writer.RootWriter`), and,
        before anything is generated, when the estimated file size
        (:func:`estimated_file_size`, a lower bound) exceeds the free disk space.
        Memory use is bounded by ``chunk_size`` whatever ``n_events`` is: chunks are
        seeded and written one at a time from the start.

    Examples
    --------
    >>> import tempfile, os, uproot
    >>> out = simulate_to_file(os.path.join(tempfile.mkdtemp(), "dijet.root"), "dijet",
    ...                        n_events=1000, seed=1, quiet=True, signal_fraction=0.1)
    >>> uproot.open(out)["Events"].num_entries
    1000
    """
    from hepgen.io.writer import RootWriter

    sim = make_simulation(process, **options)
    n_events = check_n_events(n_events)
    if (
        isinstance(chunk_size, bool)
        or not isinstance(chunk_size, (int, np.integer))
        or chunk_size < 1
    ):
        raise InputError(f"chunk size is {chunk_size!r}; expected an integer >= 1")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError(f"seed is {seed!r}; expected an integer >= 0")
    path = Path(path)
    _check_disk_space(path, process, n_events)
    chunks = (
        iter_chunk_seeds(int(seed), n_events, int(chunk_size))
        if n_events
        else iter([(0, np.random.SeedSequence(seed))])
    )
    file_options = getattr(sim, "file_options", None)
    generate_options: dict[str, Any] = (
        file_options(iter_chunk_seeds(int(seed), n_events, int(chunk_size)))
        if file_options is not None and n_events
        else {}
    )
    renumber = getattr(sim, "renumber", None)
    first = 1
    with (
        RootWriter(path, tree=getattr(sim, "tree_name", "Events")) as writer,
        progress(total=n_events, desc="simulate", unit="events", quiet=quiet) as bar,
    ):
        for size, child in chunks:
            events = sim.generate(size, seed=child, **generate_options)
            if first != 1 and renumber is not None:
                events = renumber(events, first)
            elif first != 1:
                event = np.arange(first, first + size, dtype=np.uint64)
                events["event"] = event
                if "luminosityBlock" in events.fields:
                    lumi = 1 + (event - 1) // EVENTS_PER_LUMI
                    events["luminosityBlock"] = lumi.astype(np.uint32)
            writer.extend(events)
            first += size
            bar.update(size)
    return path
