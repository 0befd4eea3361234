"""Paired gen/reco objects for training, read from ROOT files in bounded-memory chunks.

The fast simulation learns three things from full simulation, and this module gathers the
rows for each of them from the configured collections:

* the **efficiency**: every gen object, with a flag saying whether a reco object was matched
  to it;
* the **response** p(reco | gen): the matched pairs, gen features as conditions and reco
  features as targets;
* the **fakes**: reco objects without a gen match (pile-up, noise), kept separately with their
  own features so that they can be modelled per event rather than per gen object.

Only the branches that the feature schema names (plus the matching branches and the weight
branch) are read, chunk by chunk, so the peak memory is set by ``step_size`` and by the size
of the kept numpy columns, not by the file size.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from hepgen.config import Config
from hepgen.errors import InputError
from hepgen.io.collections import flatten_collection
from hepgen.io.matching import Matching, match_by_deltar, match_by_index
from hepgen.io.reader import count_entries, iterate_events, resolve_files
from hepgen.progress import progress

__all__ = ["PairedObjects", "load_pairs"]

log = logging.getLogger(__name__)


@dataclass
class PairedObjects:
    """Gen objects, their reco matches and the unmatched reco objects, as flat columns.

    Attributes
    ----------
    gen : dict of str to np.ndarray
        Condition columns of every gen object, shape (n_gen,) each.
    matched : np.ndarray
        Whether each gen object has a reco match, shape (n_gen,), bool.
    reco : dict of str to np.ndarray
        Target columns of the matched reco object of each *matched* gen object, shape
        (n_matched,) each, aligned with ``gen[...][matched]``.
    fakes : dict of str to np.ndarray
        Target columns of reco objects without a gen match, shape (n_fakes,) each.
    gen_weights, fake_weights : np.ndarray
        Event weights broadcast to the objects (ones when no weight branch is configured).
    gen_event, fake_event : np.ndarray
        Global event number of each gen / fake object, shape (n_gen,) / (n_fakes,).
    n_events : int
        Events read.
    n_out_of_range, n_duplicates : int
        Matching-index problems, counted (see :mod:`hepgen.io.matching`).
    """

    gen: dict[str, np.ndarray]
    matched: np.ndarray
    reco: dict[str, np.ndarray]
    fakes: dict[str, np.ndarray]
    gen_weights: np.ndarray
    fake_weights: np.ndarray
    gen_event: np.ndarray
    fake_event: np.ndarray
    n_events: int
    n_out_of_range: int = 0
    n_duplicates: int = 0
    files: list[str] = field(default_factory=list)

    @property
    def n_gen(self) -> int:
        return len(self.matched)

    @property
    def n_matched(self) -> int:
        return int(self.matched.sum())

    @property
    def n_fakes(self) -> int:
        return len(self.fake_event)

    def pairs(self) -> dict[str, np.ndarray]:
        """Conditions and targets of the matched pairs in one mapping, shape (n_matched,) each."""
        out = {k: v[self.matched] for k, v in self.gen.items()}
        out.update(self.reco)
        return out

    def summary(self) -> dict[str, float | int]:
        """Counts and fractions for logs and reports."""
        return {
            "n_events": self.n_events,
            "n_gen": self.n_gen,
            "n_matched": self.n_matched,
            "n_fakes": self.n_fakes,
            "efficiency": self.n_matched / self.n_gen if self.n_gen else 0.0,
            "fake_fraction": self.n_fakes / (self.n_fakes + self.n_matched)
            if self.n_fakes + self.n_matched
            else 0.0,
            "n_out_of_range": self.n_out_of_range,
            "n_duplicates": self.n_duplicates,
        }


def _match(config: Config, events, gen, reco) -> Matching:
    data = config.data
    if data.matching.method == "index":
        branch = data.index_branch
        return match_by_index(events[branch], gen.counts, branch=branch)
    g, r = data.gen, data.reco
    return match_by_deltar(
        events[f"{g}_eta"],
        events[f"{g}_phi"],
        events[f"{r}_eta"],
        events[f"{r}_phi"],
        max_dr=data.matching.max_dr,
    )


def _branches(config: Config) -> list[str]:
    data = config.data
    schema = config.schema
    names = [f.name for f in schema]
    if data.matching.method == "index":
        names.append(data.index_branch)
    else:
        names += [f"{c}_{v}" for c in (data.gen, data.reco) for v in ("eta", "phi")]
    if data.weights:
        names.append(data.weights)
    return list(dict.fromkeys(names))


def load_pairs(
    config: Config, files: Sequence[str] | None = None, quiet: bool = False
) -> PairedObjects:
    """Read, match and flatten the configured collections of all input files.

    Parameters
    ----------
    config : Config
        A validated configuration (``data`` and ``features`` sections).
    files : sequence of str or None
        Input files overriding ``config.data.files``.
    quiet : bool
        Silence the progress bar.

    Returns
    -------
    PairedObjects

    Raises
    ------
    InputError
        Missing files, trees or branches, non-finite values (unless ``nonfinite: drop``),
        inconsistent collections, or no gen objects at all.
    """
    data = config.data
    paths = [str(p) for p in resolve_files(files if files is not None else config.input_files())]
    if not paths:
        raise InputError(f"{config.source or 'config'}: no input files (key 'data.files')")
    schema = config.schema
    cond_names = [f.name for f in schema.conditions]
    target_names = [f.name for f in schema.targets]
    branches = _branches(config)
    reco_fields = list(
        dict.fromkeys(
            target_names
            + (
                [data.index_branch]
                if data.matching.method == "index"
                else [f"{data.reco}_eta", f"{data.reco}_phi"]
            )
        )
    )
    total = count_entries(paths, data.tree)
    if data.max_events is not None:
        total = min(total, data.max_events)

    parts: dict[str, list[np.ndarray]] = {
        k: [] for k in ("matched", "gen_w", "fake_w", "gen_event", "fake_event")
    }
    gen_cols: dict[str, list[np.ndarray]] = {k: [] for k in cond_names}
    reco_cols: dict[str, list[np.ndarray]] = {k: [] for k in target_names}
    fake_cols: dict[str, list[np.ndarray]] = {k: [] for k in target_names}
    n_events = n_out = n_dup = 0
    with progress(total=total, desc="read", unit="events", quiet=quiet) as bar:
        for events in iterate_events(
            paths,
            branches,
            data.tree,
            step_size=data.step_size,
            nonfinite=data.nonfinite,
            entry_stop=data.max_events,
        ):
            gen = flatten_collection(events, data.gen, cond_names)
            reco = flatten_collection(events, data.reco, reco_fields)
            m = _match(config, events, gen, reco)
            n_out += m.n_out_of_range
            n_dup += m.n_duplicates
            gen_rows = np.flatnonzero(m.gen_matched)
            fake_rows = np.flatnonzero(~m.reco_matched)
            if data.weights:
                w_event = np.asarray(events[data.weights], dtype=np.float64)
                if w_event.ndim != 1:
                    raise InputError(
                        f"weight branch '{data.weights}' must hold one number per event"
                    )
            else:
                w_event = np.ones(len(events))
            for k in cond_names:
                gen_cols[k].append(gen[k])
            for k in target_names:
                reco_cols[k].append(reco[k][m.gen_to_reco[gen_rows]])
                fake_cols[k].append(reco[k][fake_rows])
            parts["matched"].append(m.gen_matched)
            parts["gen_w"].append(w_event[gen.event_index])
            parts["fake_w"].append(w_event[reco.event_index[fake_rows]])
            parts["gen_event"].append(gen.event_index + n_events)
            parts["fake_event"].append(reco.event_index[fake_rows] + n_events)
            n_events += len(events)
            bar.update(len(events))

    def cat(chunks: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(chunks) if chunks else np.zeros(0)

    result = PairedObjects(
        gen={k: cat(v) for k, v in gen_cols.items()},
        matched=cat(parts["matched"]).astype(bool),
        reco={k: cat(v) for k, v in reco_cols.items()},
        fakes={k: cat(v) for k, v in fake_cols.items()},
        gen_weights=cat(parts["gen_w"]),
        fake_weights=cat(parts["fake_w"]),
        gen_event=cat(parts["gen_event"]).astype(np.int64),
        fake_event=cat(parts["fake_event"]).astype(np.int64),
        n_events=n_events,
        n_out_of_range=n_out,
        n_duplicates=n_dup,
        files=paths,
    )
    if result.n_gen == 0:
        raise InputError(
            f"no '{data.gen}' objects in {n_events} events of {', '.join(paths)}: nothing to learn"
        )
    return result
