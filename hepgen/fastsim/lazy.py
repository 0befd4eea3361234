"""A coffea-style entry point: the fast simulation of a dask-awkward events array, lazily.

:func:`dask_simulate` takes the events of an analysis as a ``dask_awkward.Array`` (from
``uproot.dask(...)``, with flat NanoAOD fields ``GenJet_pt``, ..., or from coffea's
``NanoEventsFactory``, with the collection as records ``events.GenJet.pt``) and a model
directory, and returns the reco collection of :meth:`hepgen.fastsim.FastSim.simulate` per
event as a new lazy ``dask_awkward.Array`` (``dask_awkward.map_partitions``), with the
partitions of the input.  Nothing runs until ``.compute()``; then every partition is
simulated where Dask runs it (a thread, a process, a worker of a cluster), the model loaded
once per worker process (:func:`hepgen.modeldir.cached_model`: the function sent to the
workers carries the directory's path, not the torch model).  Column projection works: only
the gen conditions are read from the files.

Seeds.  A partition's function does not know which file and entries it holds, so it is seeded
by :func:`partition_seed`: a hash of the seed and the partition's gen conditions (their
values and objects per event).  The result is reproducible for a given partitioning and does
not depend on the scheduler, the cluster or the task order; it changes when the same events
are cut into other partitions (another ``step_size``).  The command line (``hepgen generate``,
:mod:`hepgen.parallel.partitions`) seeds by file and entry block instead, which does not depend
on the partitioning either.

Usage inside an analysis (``uproot.dask`` or coffea events; not run as a doctest because it
needs a trained model)::

    import uproot
    from hepgen.fastsim import dask_simulate

    events = uproot.dask({"a.root": "Events", "b.root": "Events"}, step_size=100_000)
    reco = dask_simulate(events, "model/", seed=1)     # lazy, same partitions as events
    pt = reco.Jet_pt[reco.Jet_genJetIdx >= 0]          # still lazy
    counts = dask.compute(ak.num(pt, axis=1))          # runs here, or on a Client's cluster
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any

import awkward as ak
import numpy as np

from hepgen.errors import InputError, MissingDependencyError
from hepgen.fastsim.fit import check_seed
from hepgen.fastsim.simulator import FastSim

__all__ = ["dask_simulate", "partition_seed"]

#: blake2b personalisation of :func:`partition_seed` (separates it from other hashes).
_PERSON = b"hepgen-lazy-sim"


def _import_dask_awkward() -> Any:
    """``dask_awkward``, or :class:`MissingDependencyError` naming the extra."""
    try:
        import dask_awkward
    except ImportError as err:
        raise MissingDependencyError(
            f"dask_simulate needs the packages dask and dask-awkward ({err}); install them "
            "with: pip install 'hepgen[dask]'"
        ) from None
    return dask_awkward


def partition_seed(seed: int, conditions: Mapping[str, Any] | ak.Array) -> int:
    """The seed of one partition: a hash of ``seed`` and the gen conditions' content.

    Parameters
    ----------
    seed : int
        The user's seed, ``0 <= seed < 2**63``.
    conditions : ak.Array of records or mapping of str to array
        The condition fields of the partition's events (flat names, ``GenJet_pt``, ...): jagged
        (objects per event) or one value per row.  Their names, dtypes, objects per event and
        values enter the hash, in the order given.

    Returns
    -------
    int
        In ``[0, 2**63)``; equal for equal content, whatever the memory layout of the arrays.

    Examples
    --------
    >>> import awkward as ak
    >>> a = ak.Array({"GenJet_pt": [[20.0, 35.5], [], [41.0]]})
    >>> partition_seed(1, a) == partition_seed(1, ak.Array(a.to_list()))
    True
    >>> partition_seed(1, a) == partition_seed(2, a), partition_seed(1, a) == partition_seed(1, a[1:])
    (False, False)
    """
    check_seed(seed)
    h = hashlib.blake2b(digest_size=16, person=_PERSON)
    h.update(np.int64(seed).tobytes())
    names = conditions.fields if isinstance(conditions, ak.Array) else list(conditions)
    for name in names:
        column = ak.Array(conditions[name])
        h.update(name.encode() + b"\0")
        if column.ndim > 1:
            h.update(np.asarray(ak.num(column, axis=1), dtype=np.int64).tobytes())
            column = ak.flatten(column, axis=None)
        values = np.ascontiguousarray(ak.to_numpy(column))
        h.update(values.dtype.str.encode() + b"\0" + values.tobytes())
    return int.from_bytes(h.digest()[:8], "little") & (2**63 - 1)


class _SimulatePartition:
    """The function mapped over the partitions (picklable: a model given as a directory
    travels as its path, :class:`hepgen.modeldir.ModelHandle`, and is loaded on the worker
    once per process).

    ``sources`` maps each condition's flat name to its place in the partition: the same name
    (flat form) or the field of the collection record (nested form).
    """

    def __init__(
        self, model: Any, seed: int, oversample: int, sources: dict[str, str], form: str
    ) -> None:
        self.model, self.seed, self.oversample = model, seed, oversample
        self.sources, self.form = sources, form

    def flat(self, part: ak.Array) -> ak.Array:
        """The partition as flat-named condition fields (what FastSim.simulate reads)."""
        if all(name == src for name, src in self.sources.items()):
            return part
        return ak.zip({name: part[src] for name, src in self.sources.items()}, depth_limit=1)

    def __call__(self, part: ak.Array) -> ak.Array:
        if ak.backend(part) == "typetracer":
            # dask-awkward's column optimisation: say which inputs are read, return the form
            ak.typetracer.touch_data(part)
            return ak.Array(ak.typetracer.typetracer_from_form(ak.forms.from_json(self.form)))
        events = self.flat(part)
        seed = partition_seed(self.seed, events)
        return self.model.get().simulate(events, seed=seed, oversample=self.oversample)


def _sources(sim: FastSim, events: Any) -> tuple[dict[str, str], Any]:
    """Where the conditions are in ``events``, and the lazy selection of just those fields."""
    fields = list(events.fields)
    if sim.layout != "collections":
        resolved = sim.row_layout.resolve(fields, "the dask-awkward events", targets=False)
        return {b: b for b in resolved.branches}, events[resolved.branches]
    names = list(sim.condition_names)
    if all(n in fields for n in names):
        return {n: n for n in names}, events[names]
    gen = sim.gen
    inner = list(events[gen].fields) if gen in fields else []
    short = {n: n[len(gen) + 1 :] for n in names if n.startswith(f"{gen}_")}
    if inner and len(short) == len(names) and all(s in inner for s in short.values()):
        return short, events[gen][list(short.values())]
    missing = [n for n in names if n not in fields]
    raise InputError(
        f"the dask-awkward events have neither the flat fields {missing} nor a collection "
        f"'{gen}' with fields {[n.removeprefix(gen + '_') for n in names]} (the gen "
        f"conditions of the model); fields: {fields[:12]}{' ...' if len(fields) > 12 else ''}"
    )


def _handle(model: FastSim | str | os.PathLike, device: str) -> Any:
    """The model as a :class:`hepgen.modeldir.ModelHandle`, loaded here (for the meta)."""
    from hepgen.modeldir import FASTSIM_KINDS, ModelHandle

    if isinstance(model, FastSim):
        if not hasattr(model, "preprocessor_"):
            raise InputError("dask_simulate needs a fitted FastSim or a model directory")
    elif not isinstance(model, str | os.PathLike):
        raise InputError(
            f"model must be a model directory or a FastSim, got {type(model).__name__}"
        )
    handle = ModelHandle(model, device, accept=FASTSIM_KINDS, command="dask_simulate")
    handle.get()
    return handle


def dask_simulate(
    events: Any,
    model: FastSim | str | os.PathLike,
    *,
    seed: int = 0,
    device: str = "cpu",
    oversample: int = 1,
) -> Any:
    """The fast-simulated reco collection of lazy events (dask-awkward), lazily.

    Parameters
    ----------
    events : dask_awkward.Array
        One record per event with the model's gen conditions: flat fields (``GenJet_pt``, ...,
        as ``uproot.dask`` gives them) or a collection of records (``events.GenJet.pt``, as
        coffea's NanoEvents give them; ``collections`` layout only).  Other fields are not
        read.
    model : path or FastSim
        A model directory (``hepgen train``; loaded once per worker process), or a fitted
        :class:`FastSim` (pickled into the task graph: prefer a directory on a cluster).
    seed : int
        Each partition is seeded with :func:`partition_seed` of this seed and its gen
        conditions: reproducible for a given partitioning, whatever the scheduler, cluster
        or task order, but different when the events are partitioned differently (the
        command line's seeding by file and entry block is the one that is not).
    device : str
        Where the generators run on every worker (``"cpu"``, ``"cuda"``, ``"cuda:N"``).
    oversample : int
        K >= 1 draws per event (:meth:`FastSim.simulate`): K records per input event with
        ``hepgen_weight`` and ``hepgen_draw``.

    Returns
    -------
    dask_awkward.Array
        Lazy; per event (per draw) the fields of :meth:`FastSim.simulate` (``Jet_pt``, ...,
        jagged, and ``Jet_genJetIdx``, -1 for fakes), partitioned like ``events`` (with
        known divisions multiplied by K).  The output form comes from running the model on
        zero events (``meta``), so the model is never called on a typetracer.

    Raises
    ------
    InputError
        ``events`` not a dask-awkward array, conditions missing (naming them), a bad seed,
        oversample or model.
    MissingDependencyError
        dask-awkward not installed (``pip install 'hepgen[dask]'``).

    Examples
    --------
    With a trained model, see the module docstring.  The input is checked before anything
    is imported or loaded:

    >>> dask_simulate({"GenJet_pt": [[30.0]]}, "model/")
    Traceback (most recent call last):
    ...
    hepgen.errors.InputError: dask_simulate takes a dask_awkward.Array of events (e.g. from uproot.dask), got dict
    """
    if not type(events).__module__.startswith("dask_awkward"):
        raise InputError(
            "dask_simulate takes a dask_awkward.Array of events (e.g. from uproot.dask), "
            f"got {type(events).__name__}"
        )
    check_seed(seed)
    if (
        isinstance(oversample, bool)
        or not isinstance(oversample, int | np.integer)
        or oversample < 1
    ):
        raise InputError(f"oversample must be a positive integer, got {oversample!r}")
    dak = _import_dask_awkward()
    from dask.base import tokenize

    handle = _handle(model, device)
    sim = handle.get()
    sources, selected = _sources(sim, events)
    fn = _SimulatePartition(handle, int(seed), int(oversample), sources, "")
    empty = ak.Array(selected._meta.layout.form.length_zero_array())
    out = sim.simulate(fn.flat(empty), seed=0, oversample=int(oversample))
    fn.form = out.layout.form.to_json()
    meta = ak.Array(out.layout.to_typetracer(forget_length=True))
    from hepgen.modeldir import model_hash

    identity = model_hash(handle.directory) if handle.directory else id(sim)
    token = tokenize(selected, handle.directory, identity, device, int(seed), int(oversample))
    return dak.map_partitions(
        fn,
        selected,
        label="hepgen-simulate",
        token=token,
        meta=meta,
        output_divisions=int(oversample),
    )
