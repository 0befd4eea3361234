"""``hepgen generate``: run a trained fast simulation over a ROOT file, chunk by chunk.

Every input branch is kept except the reco collection being simulated: its old jagged
branches and its counter are replaced by the generated ones (the modelled targets and
``{reco}_{gen}Idx``, in NanoAOD layout).  Inputs larger than memory are processed in chunks
of ``step_size`` events; chunk ``i`` is seeded by ``SeedSequence([seed, i])``, so the
output is reproducible for a seed and a step size.  Branches pass through with their NaN/inf
values untouched (real files have all-NaN branches); only the conditions must be finite.
The output is written atomically and never overwrites an input.

With ``oversample = K > 1`` every input event is written K times in a row, each copy with its
own draw of the reco collection and the event branches ``hepgen_weight`` (1/K) and
``hepgen_draw`` (0 ... K-1): K times the statistics of the generated sample for the price of
the generation alone (the draws of one event are correlated through its gen content).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from hepgen.errors import InputError
from hepgen.fastsim import FastSim, repeat_events, with_draw_fields
from hepgen.io.collections import replace_collection
from hepgen.io.reader import count_entries, inspect_tree, iterate_events, resolve_files
from hepgen.io.writer import RootWriter
from hepgen.progress import progress

__all__ = ["generate_file"]

log = logging.getLogger(__name__)


def _chunks(paths: list[Any], tree: str, step_size: int) -> Any:
    """(file, first entry, events) for each chunk of each file in order; branches pass through
    with their NaN/inf values (only the conditions are checked, by the model)."""
    for path in paths:
        first = 0
        for events in iterate_events(path, None, tree=tree, step_size=step_size, nonfinite="keep"):
            yield path, first, events
            first += len(events)


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
) -> dict[str, Any]:
    """Generate the reco collection for every event of ``inputs`` and write ``output``.

    Parameters
    ----------
    model : FastSim or path
        A fitted fast simulation or its model directory.
    inputs : path, glob or sequence of them
        ROOT files with the gen collection's branches.
    output : path
        Output ROOT file (written atomically; must not be an input).
    tree : str or None
        Tree name (default: the model's ``data.tree``).
    step_size : int
        Events per chunk (bounds the memory).
    seed : int
        Seed of the generation.
    device : str
        Where the flows run.
    quiet : bool
        Silence the progress bar.
    oversample : int
        K >= 1 draws per input event (see the module docstring).

    Returns
    -------
    dict
        Counts and timing: events, gen objects, generated reco objects (matched, fakes),
        conditions outside the training domain, seconds, objects per second.
    """
    if isinstance(oversample, bool) or not isinstance(oversample, int) or oversample < 1:
        raise InputError(f"oversample must be a positive integer, got {oversample!r}")
    if not isinstance(model, FastSim):
        _check_fastsim_directory(model)
    sim = model if isinstance(model, FastSim) else FastSim.load(model, device=device)
    tree = tree or sim.config.data.tree
    paths = resolve_files(inputs)
    for path in paths:
        info = inspect_tree(path, tree)
        missing = [b for b in sim.condition_names if b not in info.branches]
        if missing:
            raise InputError(
                f"file '{path}', tree '{tree}': missing condition branch(es) {missing} that "
                f"the model needs (conditions: {sim.condition_names})"
            )
    total = count_entries(paths, tree)
    counts = {"events": 0, "gen_objects": 0, "reco_objects": 0, "fakes": 0}
    start = time.perf_counter()
    outside: dict[str, int] = {}
    idx_name = sim.config.data.index_branch
    with (
        RootWriter(output, tree=tree, protect=paths) as writer,
        progress(total=total, desc="generate", unit="event", quiet=quiet) as bar,
    ):
        for i, (path, first, events) in enumerate(_chunks(paths, tree, step_size)):
            chunk_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
            n_events = len(events)
            n_gen = int(ak.sum(ak.num(events[sim.condition_names[0]], axis=1)))
            events = repeat_events(events, oversample)
            try:
                reco = sim.simulate(events, seed=chunk_seed, domain_counts=outside)
            except InputError as err:  # e.g. NaN in a condition: say where
                raise InputError(
                    f"file '{path}', tree '{tree}', entries {first}-{first + n_events - 1}: {err}"
                ) from None
            branches = {f: reco[f] for f in reco.fields}
            writer.extend(
                with_draw_fields(replace_collection(events, sim.reco, branches), oversample)
            )
            idx = ak.to_numpy(ak.flatten(reco[idx_name]))
            counts["events"] += n_events
            counts["gen_objects"] += n_gen
            counts["reco_objects"] += int(idx.size)
            counts["fakes"] += int(np.sum(idx < 0))
            bar.update(len(events))
    seconds = time.perf_counter() - start
    bad = {k: v for k, v in outside.items() if v}
    if bad:
        log.warning(
            "%s conditions outside the training domain (objects per feature, whole "
            "file): %s; generated values there are extrapolations",
            sim.gen,
            bad,
        )
    return {
        **counts,
        "oversample": oversample,
        "outside_domain": bad,
        "seconds": seconds,
        # simulated gen objects (K per input object with oversampling) per second
        "gen_objects_per_second": counts["gen_objects"] * oversample / seconds
        if seconds > 0
        else None,
        "output": os.fspath(Path(output)),
    }


def _check_fastsim_directory(directory: str | os.PathLike) -> None:
    """Refuse, naming what it is, a model directory that holds no fast simulation.

    Raises
    ------
    InputError
        No model in ``directory``, or a model of another kind (a density model: which
        commands take it).
    """
    from hepgen.anomaly.density import read_model_card

    try:
        _, card = read_model_card(directory)
    except InputError as err:
        raise InputError(
            f"{err}; 'hepgen generate' expects the model directory of a fast "
            "simulation ('hepgen train')"
        ) from None
    kind = card.get("kind")
    if kind == "density":
        raise InputError(
            f"'{directory}' holds a density model (kind 'density', an anomaly score "
            "p(features | conditions)), not a fast simulation; density models are used by "
            "'hepgen score' and 'hepgen info'; 'hepgen generate' needs the model directory of "
            "'hepgen train'"
        )
    if kind not in ("flow", "gan"):
        raise InputError(
            f"'{directory}' holds a model of kind {kind!r}; 'hepgen generate' needs a fast "
            "simulation (kind 'flow' or 'gan', written by 'hepgen train')"
        )
