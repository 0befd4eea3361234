"""``hepgen generate``: run a trained fast simulation over a ROOT file, chunk by chunk.

Every input branch is written, nothing silently dropped:

* **collections** layout: the reco collection being simulated is replaced by the generated
  one (the modelled targets and ``{reco}_{gen}Idx``, in NanoAOD layout, with its counter).
  The original reco collection is kept beside it under the prefix ``FullSim``: every one of
  its jagged branches, also those the model does not produce (``Jet_area``, ``Jet_jetId``,
  ...), becomes ``FullSimJet_*`` with its own counter ``nFullSimJet``, so that full and fast
  simulation can be compared from one file.
* **flat / objects** layouts (:mod:`hepgen.io.layouts`): the target branches (``mu1_PIDK``,
  ...) and, with ``data.reconstructed``, the reconstruction flags are replaced in place by the
  generated ones; the originals are kept as ``FullSim_<branch>`` (``FullSim_mu1_PIDK``).
  Row order and every other branch are kept as read.

``keep_full_sim=False`` (``hepgen generate --drop-full-sim``) drops the originals instead;
the log names what was kept or dropped (a warning when dropped).  Inputs larger than memory
are processed in partitions of ``step_size`` events, in this process or on Dask workers, into
one file, one file per input or one per partition (:mod:`hepgen.parallel.production`).  The
events of entries ``[b*block, (b+1)*block)`` of a file are generated with a seed of
``(seed, the file's ROOT UUID, b)`` (:mod:`hepgen.parallel.partitions`): the output is
bit-identical for a seed and a block whatever the step size, the layout or the number of
workers.  Branches pass through with their NaN/inf values untouched (real files have all-NaN
branches); only the conditions must be finite.  Outputs are written atomically and never
overwrite an input.

With ``oversample = K > 1`` every input event is written K times in a row, each copy with its
own draw of the reco collection and the event branches ``hepgen_weight`` (1/K) and
``hepgen_draw`` (0 ... K-1): K times the statistics of the generated sample for the price of
the generation alone (the draws of one event are correlated through its gen content).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from hepgen.devices import torch_threads
from hepgen.errors import InputError
from hepgen.fastsim import FastSim, repeat_events, with_draw_fields
from hepgen.io.collections import replace_collection
from hepgen.io.layouts import row_column
from hepgen.io.reader import inspect_tree, resolve_files
from hepgen.io.writer import check_format
from hepgen.modeldir import FASTSIM_KINDS, ModelHandle, load_model, model_hash
from hepgen.parallel import SEED_BLOCK, check_outputs, plan_partitions, produce

__all__ = ["FULL_SIM_PREFIX", "full_sim_name", "generate_file"]

log = logging.getLogger(__name__)

#: Prefix of the kept full-simulation branches (``FullSimJet_pt``, ``FullSim_mu1_PIDK``).
FULL_SIM_PREFIX = "FullSim"


def full_sim_name(branch: str, layout: str) -> str:
    """The name under which a replaced input branch is kept: ``Jet_pt -> FullSimJet_pt``
    (collections: the prefix joins the collection name, so the kept branches form the
    collection ``FullSimJet`` with the counter ``nFullSimJet``), ``mu1_PIDK ->
    FullSim_mu1_PIDK`` (flat/objects)."""
    if layout == "collections":
        return FULL_SIM_PREFIX + branch
    return f"{FULL_SIM_PREFIX}_{branch}"


def _listing(names: list[str], n: int = 8) -> str:
    more = f" and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def _assemble(
    sim: FastSim, events: ak.Array, generated: ak.Array, keep_full_sim: bool, where: str
) -> tuple[ak.Array, list[str]]:
    """The output records of one chunk and the input branches that were replaced.

    Collections: the reco collection replaced (its originals renamed ``FullSim{reco}_*``);
    flat/objects: the generated branches replace the input's in place (originals renamed
    ``FullSim_*``), new ones appended.  Every other field is passed through untouched.
    """
    layout = sim.layout
    fields = list(events.fields)
    if layout == "collections":
        prefix = f"{sim.reco}_"
        replaced = [f for f in fields if f.startswith(prefix) and events[f].ndim > 1]
        counter = f"n{sim.reco}"
        out_events = replace_collection(
            events, sim.reco, {f: generated[f] for f in generated.fields}
        )
        columns = {f: out_events[f] for f in out_events.fields}
        dropped_counter = [counter] if counter in fields else []
    else:
        replaced = [f for f in generated.fields if f in fields]
        columns = {f: generated[f] if f in replaced else events[f] for f in fields}
        for f in generated.fields:
            if f not in columns:
                columns[f] = generated[f]
        dropped_counter = []
    if keep_full_sim and replaced:
        for f in replaced:
            name = full_sim_name(f, layout)
            if name in columns or name in fields:
                raise InputError(
                    f"{where}: the input already has a branch '{name}', the name under which "
                    f"the full-simulation branch '{f}' is kept; drop the kept copies "
                    "(--drop-full-sim / keep_full_sim=False) or rename it"
                )
            columns[name] = events[f]
    return ak.zip(columns, depth_limit=1), replaced + dropped_counter


class _GenerateJob:
    """One seed block of events in, the generated output rows out (picklable for Dask: a
    model read from a directory is reloaded there, once per worker process)."""

    def __init__(self, model: ModelHandle, oversample: int, keep: bool) -> None:
        self.model, self.oversample, self.keep = model, oversample, keep

    def process(self, events: ak.Array, where: str, seed: int) -> tuple[ak.Array, dict[str, Any]]:
        sim, k = self.model.get(), self.oversample
        n_gen = _gen_objects(sim, events)
        copies = repeat_events(events, k)
        outside: dict[str, int] = {}
        try:  # one torch thread count wherever it runs: the same bits (devices.torch_threads)
            with torch_threads():
                reco = sim.simulate(copies, seed=seed, domain_counts=outside)
        except InputError as err:  # e.g. NaN in a condition: say where
            raise InputError(f"{where}: {err}") from None
        out, replaced = _assemble(sim, copies, reco, self.keep, where)
        counts: dict[str, Any] = {"events": 0, "gen_objects": 0, "reco_objects": 0, "fakes": 0}
        _count(sim, counts, len(events), n_gen, reco, k)
        counts["outside_domain"] = outside
        counts["_replaced"] = dict.fromkeys(replaced, 1)
        return with_draw_fields(out, k), counts


def generate_file(
    model: FastSim | str | os.PathLike,
    inputs: Any,
    output: str | os.PathLike,
    *,
    tree: str | None = None,
    step_size: int = 100_000,
    seed: int = 0,
    device: str = "cpu",
    quiet: bool = False,
    oversample: int = 1,
    keep_full_sim: bool = True,
    output_format: str | None = None,
    layout: str | None = None,
    workers: int | None = None,
    scheduler: Any = None,
    block: int = SEED_BLOCK,
    backend: str = "torch",
    engine: str = "auto",
    precision: str | None = None,
    temperature: float | None = None,
    truncation: float | None = None,
) -> dict[str, Any]:
    """Generate the reco collection (or the target branches) for every event (row) of
    ``inputs`` and write ``output`` (see the module docstring for what is kept).

    Parameters
    ----------
    model : FastSim or path
        A fitted fast simulation or its model directory.
    inputs : path, glob, ``@list.txt`` or sequence of them
        ROOT files with the gen collection's branches.
    output : path
        Output ROOT file (``layout="single"``, the default for a name ending in ``.root``)
        or output folder (written atomically; must not be an input).
    tree : str or None
        Tree name (default: the model's ``data.tree``).
    step_size : int
        Events per partition (bounds the memory of a worker), rounded up to a multiple of
        ``block``.
    seed : int
        Seed of the generation: events of entries ``[b*block, (b+1)*block)`` of a file are
        generated with a seed of ``(seed, the file's UUID, b)``
        (:mod:`hepgen.parallel.partitions`), so the output does not depend on the step size
        or the executor.
    device : str
        Where the flows run (on every worker).
    quiet : bool
        Silence the progress bar.
    oversample : int
        K >= 1 draws per input event (see the module docstring).
    keep_full_sim : bool
        Keep the replaced input branches under the ``FullSim`` prefix (default) or drop them
        (logged as a warning naming them).
    output_format : {"ttree", "rntuple"} or None
        Format of the output tree; ``None`` writes the format of the first input file.
    layout : {"single", "per-file", "per-partition"} or None
        One output file, one per input file in the folder ``output``, or one per partition
        (:mod:`hepgen.parallel.production`); ``None``: ``"single"`` when ``output`` ends in
        ``.root``, else ``"per-file"``.
    workers : int or None
        Run on a local Dask cluster of this many processes (:mod:`hepgen.parallel.executor`).
    scheduler : str, distributed.Client or None
        Run on an existing Dask scheduler.
    block : int
        Seed block in entries (:data:`~hepgen.parallel.partitions.SEED_BLOCK`).
    backend : {"torch", "onnx"}
        What runs the generators of a model directory, here and on every worker
        (:meth:`FastSim.load`): ``"onnx"`` needs an export folder (``hepgen export``) and
        never imports torch; its draws differ from torch's for a seed (same distribution).
    engine : {"auto", "eager", "graph", "compiled"}
        How the flows evaluate with the torch backend (:mod:`hepgen.models.engine`).
    precision : {"float32", "bfloat16"} or None
        Of the response flow's conditioners (:meth:`FastSim.set_inference`): ``None`` takes
        the model card's accepted ``model.precision``; a reduced precision without an
        accepted check is refused.
    temperature, truncation : float or None
        The response's noise: temperature and truncation threshold psi
        (:mod:`hepgen.models.latent`); ``None``: the model's ``model.sampling`` (by default
        the trained model's noise).  The values used are in the manifest (``sampling``) and
        in every output file's ``hepgen_metadata``.

    Returns
    -------
    dict
        Counts and timing: events (rows), gen objects, generated reco objects (matched,
        fakes), conditions outside the training domain, seconds, objects per second, and
        ``full_sim``: ``{"kept": {input branch: kept name}, "dropped": [input branches]}``
        (the replaced branches; the counter ``nJet`` is kept as ``nFullSimJet``), and
        ``manifest``: the production's manifest (also ``<folder>/manifest.json``).

    Raises
    ------
    InputError
        A directory without a fast simulation (a density model: which commands take it),
        missing files, trees or condition branches (the file named), non-finite conditions
        (the entries named), an output that is an input.
    """
    if isinstance(oversample, bool) or not isinstance(oversample, int) or oversample < 1:
        raise InputError(f"oversample must be a positive integer, got {oversample!r}")
    sim = (
        model
        if isinstance(model, FastSim)
        else load_model(model, device, accept=FASTSIM_KINDS, command="generate", backend=backend)
    )
    model_dir = None if isinstance(model, FastSim) else os.fspath(Path(model).resolve())
    tree = tree or sim.config.data.tree
    layout = layout or ("single" if Path(output).suffix == ".root" else "per-file")
    paths = resolve_files(inputs)
    fmt = _check_inputs(sim, paths, tree, output_format)
    plan = plan_partitions(paths, tree, step_size, block)
    inference = _inference(sim, backend, engine, precision)
    before = sim.sampling_  # a FastSim object given by the caller gets its own back
    sampling = _sampling(sim, temperature, truncation)
    handle = ModelHandle(
        model_dir or sim,
        device,
        accept=FASTSIM_KINDS,
        command="generate",
        backend=backend,
        inference=inference,
        sampling=sampling,
    )
    handle.model = sim  # already loaded here
    job = _GenerateJob(handle, oversample, keep_full_sim)
    extra = {
        "command": "generate",
        "model": model_dir,
        "model_hash": model_hash(model_dir) if model_dir else None,
        "backend": getattr(sim, "backend_", "torch"),
        **{k: v for k, v in (inference or {}).items() if k != "force"},
        "oversample": oversample,
        "keep_full_sim": keep_full_sim,
        "format": fmt,
        "sampling": sampling,
    }
    try:
        check_outputs(plan, output, layout, paths)
        manifest = produce(
            job,
            plan,
            output,
            workers=workers,
            scheduler=scheduler,
            layout=layout,
            seed=seed,
            block=block,
            fmt=fmt,
            quiet=quiet,
            desc="generate",
            manifest=extra,
        )
    finally:
        sim.set_sampling(before.temperature, before.truncation)
    counts = manifest["counts"]
    seconds = manifest["seconds"]
    full_sim = _report_full_sim(sim, list(counts.get("_replaced", {})), keep_full_sim)
    bad = {k: v for k, v in counts.get("outside_domain", {}).items() if v}
    if bad:
        log.warning(
            "%s conditions outside the training domain (objects per feature, whole "
            "production): %s; generated values there are extrapolations",
            sim.gen,
            bad,
        )
    return {
        **{k: counts.get(k, 0) for k in ("events", "gen_objects", "reco_objects", "fakes")},
        "oversample": oversample,
        "sampling": sampling,
        "outside_domain": bad,
        "seconds": seconds,
        # simulated gen objects (K per input object with oversampling) per second
        "gen_objects_per_second": counts.get("gen_objects", 0) * oversample / seconds
        if seconds > 0
        else None,
        "full_sim": full_sim,
        "layout": sim.layout,
        "output_format": fmt,
        "output": os.fspath(Path(output)),
        "output_layout": layout,
        "manifest": manifest,
    }


def _check_inputs(sim: FastSim, paths: list[Any], tree: str, output_format: str | None) -> str:
    """Check that every input has what the model reads (before any work); returns the
    output format (default: the first input's).

    Raises
    ------
    InputError
        A missing tree or condition branch (the file named).
    """
    fmt = check_format(output_format) if output_format is not None else None
    for path in paths:
        info = inspect_tree(path, tree)
        fmt = fmt or check_format(info.format)  # the first input's format by default
        if sim.layout != "collections":  # names what was looked for (per object and per row)
            sim.row_layout.resolve(info.branches, f"file '{path}', tree '{tree}'", targets=False)
            continue
        missing = [b for b in sim.condition_names if b not in info.branches]
        if missing:
            raise InputError(
                f"file '{path}', tree '{tree}': missing condition branch(es) {missing} that "
                f"the model needs (conditions: {sim.condition_names})"
            )
    return fmt or "ttree"


def _gen_objects(sim: FastSim, events: ak.Array) -> int:
    """The gen objects of a chunk (rows x objects for the flat/objects layouts)."""
    if sim.layout != "collections":
        return len(events) * sim.row_layout.n_objects
    return int(ak.sum(ak.num(events[sim.condition_names[0]], axis=1)))


def _count(
    sim: FastSim, counts: dict[str, int], n_events: int, n_gen: int, reco: ak.Array, k: int
) -> None:
    """Add a chunk's events, gen objects and generated reco objects (fakes) to ``counts``."""
    counts["events"] += n_events
    counts["gen_objects"] += n_gen
    if sim.layout != "collections":
        flags = sim.row_layout.flag_branches
        counts["reco_objects"] += (
            sum(int(np.count_nonzero(row_column(reco, f))) for f in flags) if flags else n_gen * k
        )
        return
    idx = ak.to_numpy(ak.flatten(reco[sim.config.data.index_branch]))
    counts["reco_objects"] += int(idx.size)
    counts["fakes"] += int(np.sum(idx < 0))


def _report_full_sim(sim: FastSim, replaced: list[str], keep: bool) -> dict[str, Any]:
    """Log (and return) what became of the replaced input branches."""
    layout = sim.layout
    counter = f"n{sim.reco}" if layout == "collections" else None
    if keep:
        renamed = [f for f in replaced if f != counter]
        kept = {f: full_sim_name(f, layout) for f in renamed}
        if kept and counter in replaced:
            # the writer gives the kept collection its own counter, equal to the old one
            kept[counter] = f"n{FULL_SIM_PREFIX}{sim.reco}"
        if kept:
            target = (
                f"{FULL_SIM_PREFIX}{sim.reco}_* (counter n{FULL_SIM_PREFIX}{sim.reco})"
                if layout == "collections"
                else f"{FULL_SIM_PREFIX}_*"
            )
            log.info(
                "kept %d replaced full-simulation branch(es) as %s: %s",
                len(kept),
                target,
                _listing(list(kept)),
            )
        return {"kept": kept, "dropped": [f for f in replaced if f not in kept]}
    if replaced:
        log.warning(
            "dropped %d full-simulation branch(es) replaced by the generated ones "
            "(--drop-full-sim): %s",
            len(replaced),
            _listing(replaced),
        )
    return {"kept": {}, "dropped": list(replaced)}


def _sampling(sim: FastSim, temperature: float | None, truncation: float | None) -> dict[str, Any]:
    """The response's noise for this production (the arguments over the model's
    ``model.sampling``), applied to ``sim``; logged when it is not the trained model's."""
    if temperature is not None or truncation is not None:
        base = sim.config.model.sampling
        sim.set_sampling(
            base.temperature if temperature is None else temperature,
            base.truncation if truncation is None else truncation,
        )
    options = sim.sampling_
    if not options.is_default:
        log.info(
            "sampling at temperature %g, truncation %s: the samples trade diversity for "
            "fidelity and no longer follow the trained model",
            options.temperature,
            "none" if options.truncation is None else f"{options.truncation:g}",
        )
    return options.to_dict()


def _inference(
    sim: FastSim, backend: str, engine: str, precision: str | None
) -> dict[str, Any] | None:
    """Apply ``engine`` and ``precision`` to ``sim`` (torch backend); returns them resolved
    for the workers and the manifest (``None`` for the ONNX backend, which takes neither)."""
    if backend != "torch":
        if engine != "auto" or precision is not None:
            raise InputError(
                f"engine and precision are settings of the torch backend; backend {backend!r} "
                "runs the graphs as exported (hepgen export --precision)"
            )
        return None
    sim.set_inference(engine, precision)
    resolved = getattr(sim.response_, "precision", "float32")
    return {"engine": engine, "precision": resolved, "force": True}
