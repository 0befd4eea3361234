"""Read the two ROOT files of ``hepgen validate`` into feature tables.

Two ways to choose what is compared: **branches** (every numeric branch in both files, or the
``features`` names/patterns), grouped by granularity (event level, one group per jagged
collection flattened to one row per object), or **a config** (``--config``: the matched
gen/reco pairs, conditions and detector responses, plus efficiency and fake fraction).  In
branch mode, bookkeeping branches (run and event numbers, indices, weights) say nothing about
the physics and are left out by the named rules of :data:`BOOKKEEPING_RULES`, which the report
lists; collection counters such as ``nJet`` are physics and stay.  The details are in
docs/validation.md ("inputs").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from hepgen.errors import InputError, did_you_mean
from hepgen.io.reader import expand_names, inspect_tree, read_events
from hepgen.validation.samples import Table
from hepgen.validation.verdict import count_nonfinite

__all__ = [
    "BOOKKEEPING_RULES",
    "SampleGroup",
    "bookkeeping_rule",
    "choose_branches",
    "load_branch_groups",
    "load_config_pairs",
    "load_train_table",
    "response_columns",
]

EVENT = "event"

#: ``(glob pattern, why)``: branches that are bookkeeping, not physics, and are not compared
#: unless named literally (case-sensitive ``fnmatch`` patterns, NanoAOD naming).
BOOKKEEPING_RULES: tuple[tuple[str, str], ...] = (
    ("run", "run number"),
    ("luminosityBlock", "luminosity-block number"),
    ("event", "event number"),
    ("bunchCrossing", "bunch-crossing number"),
    ("orbit*", "LHC orbit number"),
    ("*Idx", "index into another collection"),
    ("*_idx", "index into another collection"),
    ("*Weight", "weight"),
    ("*Weight_*", "weight or weight variation"),
    ("weight", "weight"),
    ("*_weight", "weight"),
    ("hepgen_draw", "draw number of hepgen generate --oversample"),
)


def bookkeeping_rule(name: str) -> str | None:
    """The rule of :data:`BOOKKEEPING_RULES` that ``name`` falls under, or None (physics).

    Examples
    --------
    >>> bookkeeping_rule("Jet_genJetIdx"), bookkeeping_rule("nJet"), bookkeeping_rule("genWeight")
    ("'*Idx' (index into another collection)", None, "'*Weight' (weight)")
    """
    import fnmatch

    for pattern, why in BOOKKEEPING_RULES:
        if fnmatch.fnmatchcase(name, pattern):
            return f"'{pattern}' ({why})"
    return None


def _listing(names: Sequence[str], most: int = 12) -> str:
    return ", ".join(names[:most]) + (f", ... ({len(names)} in all)" if len(names) > most else "")


@dataclass
class SampleGroup:
    """Reference and candidate tables of one granularity (event-level or one collection)."""

    name: str
    reference: Table
    candidate: Table
    primary: bool = False
    notes: list[str] = field(default_factory=list)
    #: Bookkeeping branches left out: ``{branch: rule}`` (on the primary group).
    excluded: dict[str, str] = field(default_factory=dict)
    #: Non-finite counts of branches skipped for having no finite value:
    #: ``{"reference": {branch: counts}, "candidate": {...}}`` (on the primary group).
    skipped_nonfinite: dict[str, dict[str, Any]] = field(default_factory=dict)


def _groups(info: Any) -> dict[str, str]:
    """Map branch -> group name (collection, or ``"event"``)."""
    out = dict.fromkeys(info.branches, EVENT)
    for coll, names in info.collections.items():
        for n in names:
            out[n] = coll
    return out


def _read_file(path: Path, tree: str, branches: list[str], max_events: int | None) -> Any:
    """All branches of one file in one read (uproot is far faster reading once than per group)."""
    return read_events(path, branches, tree=tree, nonfinite="keep", entry_stop=max_events)


def _table(
    events: Any,
    path: Path,
    tree: str,
    branches: list[str],
    weights: str | None,
    label: str,
    group: str,
) -> Table:
    columns = []
    integer = []
    counts = None
    for b in branches:
        col = events[b]
        if col.ndim > 1:
            counts = ak.to_numpy(ak.num(col, axis=1))
            col = ak.flatten(col, axis=1)
        arr = ak.to_numpy(col)
        integer.append(bool(np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_))
        columns.append(arr.astype(np.float64))
    w = None
    if weights:
        wcol = events[weights]
        if wcol.ndim > 1:
            if group == EVENT:
                raise InputError(
                    f"file '{path}', tree '{tree}': weight branch '{weights}' is per object; "
                    "event-level features need an event-level weight"
                )
            w = ak.to_numpy(ak.flatten(wcol, axis=1)).astype(np.float64)
        else:
            w = ak.to_numpy(wcol).astype(np.float64)
            if counts is not None:
                w = np.repeat(w, counts)
        if w.shape[0] != columns[0].shape[0]:
            raise InputError(
                f"file '{path}', tree '{tree}': weight branch '{weights}' does not match the "
                f"objects of collection '{group}'"
            )
    values = np.column_stack(columns) if columns else np.empty((0, 0))
    return Table(names=list(branches), values=values, weights=w, integer=integer, label=label)


def load_branch_groups(
    reference: str | Path,
    candidate: str | Path,
    *,
    tree: str = "Events",
    features: Sequence[str] | None = None,
    weights: str | None = None,
    max_events: int | None = None,
) -> list[SampleGroup]:
    """Read the branches common to both files, grouped by granularity.

    Parameters
    ----------
    reference, candidate : path
        ROOT files.
    tree : str
        Tree name in both files.
    features : sequence of str or None
        Branch names or glob patterns (default: every numeric branch in both files that is
        not bookkeeping, see :data:`BOOKKEEPING_RULES`).
    weights : str or None
        Event-weight branch (in both files); it is not compared as a feature.
    max_events : int or None
        Read at most this many events of each file.

    Returns
    -------
    list of SampleGroup
        The primary group first; its ``excluded`` names the bookkeeping branches left out.

    Raises
    ------
    InputError
        No physics branch in common (naming what each file has), a missing feature or weight
        branch, different collections.
    """
    chosen, by_group, excluded, notes = choose_branches(
        reference, candidate, tree, features, weights
    )
    to_read = [*chosen, *([weights] if weights else [])]
    ref_events = _read_file(reference, tree, to_read, max_events)
    cand_events = _read_file(candidate, tree, to_read, max_events)
    skipped: dict[str, dict[str, Any]] = {}
    groups = []
    for name, branches in by_group.items():
        ref_t = _table(ref_events, reference, tree, branches, weights, "reference", name)
        cand_t = _table(cand_events, candidate, tree, branches, weights, "candidate", name)
        if not features:
            keep = _finite_branches(branches, ref_t, cand_t, notes, skipped)
            if not keep:
                continue
            ref_t, cand_t = ref_t.select_columns(keep), cand_t.select_columns(keep)
        groups.append(SampleGroup(name=name, reference=ref_t, candidate=cand_t))
    if not groups:
        raise InputError(f"no branch of '{reference}' and '{candidate}' has finite values")
    return _primary_first(groups, notes, excluded, skipped)


def choose_branches(
    reference: str | Path,
    candidate: str | Path,
    tree: str,
    features: Sequence[str] | None,
    weights: str | None,
) -> tuple[list[str], dict[str, list[str]], dict[str, str], list[str]]:
    """The branches to compare, chosen from the two files' metadata (nothing is read).

    Returns
    -------
    (chosen, by_group, excluded, notes)
        The compared branch names (the weight branch left out), the same by collection
        group, the bookkeeping branches left out with the reason, and notes for the report.

    Raises
    ------
    InputError
        As :func:`load_branch_groups`.
    """
    ref_info = inspect_tree(reference, tree)
    cand_info = inspect_tree(candidate, tree)
    ref_names, cand_names = list(ref_info.branches), list(cand_info.branches)
    notes: list[str] = []
    if features:
        chosen, excluded = _named_branches(
            features, ref_names, cand_names, reference, candidate, tree, weights
        )
    else:
        chosen, excluded = _common_branches(
            ref_names, cand_names, reference, candidate, tree, weights, notes
        )
    if weights:
        for path, names in ((reference, ref_names), (candidate, cand_names)):
            if weights not in names:
                raise InputError(
                    f"file '{path}', tree '{tree}': no weight branch '{weights}'"
                    + did_you_mean(weights, names)
                )
        chosen = [n for n in chosen if n != weights]
    return chosen, _by_group(chosen, ref_info, cand_info), excluded, notes


def _named_branches(
    features: Sequence[str],
    ref_names: list[str],
    cand_names: list[str],
    reference: str | Path,
    candidate: str | Path,
    tree: str,
    weights: str | None,
) -> tuple[list[str], dict[str, str]]:
    """The branches that ``features`` names (literally or by pattern), less the bookkeeping
    ones matched only by a pattern: ``(chosen, {excluded branch: rule})``."""
    chosen = expand_names(
        features,
        ref_names,
        f"reference file '{reference}', tree '{tree}'",
        what="numeric branch",
    )
    literal = set(features)
    excluded: dict[str, str] = {}
    for n in chosen:
        rule = None if n in literal else bookkeeping_rule(n)
        if rule is not None and n != weights:
            excluded[n] = rule
    chosen = [n for n in chosen if n not in excluded]
    if not chosen:
        raise InputError(
            f"--features {list(features)} match only bookkeeping branches "
            f"({_listing(list(excluded))}); name them literally to compare them"
        )
    missing = [n for n in chosen if n not in cand_names]
    if missing:
        raise InputError(
            f"candidate file '{candidate}', tree '{tree}' lacks feature branch(es) {missing} "
            f"that the reference has"
        )
    return chosen, excluded


def _common_branches(
    ref_names: list[str],
    cand_names: list[str],
    reference: str | Path,
    candidate: str | Path,
    tree: str,
    weights: str | None,
    notes: list[str],
) -> tuple[list[str], dict[str, str]]:
    """Every branch in both files that is not bookkeeping: ``(chosen, {excluded: rule})``;
    ``notes`` gets the physics branches that only one file has."""
    common = [n for n in ref_names if n in cand_names]
    excluded = {n: r for n in common if n != weights and (r := bookkeeping_rule(n))}
    chosen = [n for n in common if n not in excluded]
    physics_ref = [n for n in ref_names if n != weights and bookkeeping_rule(n) is None]
    physics_cand = [n for n in cand_names if n != weights and bookkeeping_rule(n) is None]
    only_ref = [n for n in physics_ref if n not in cand_names]
    only_cand = [n for n in physics_cand if n not in ref_names]
    for only, where in ((only_ref, "reference"), (only_cand, "candidate")):
        if only:
            notes.append(
                f"{len(only)} branch(es) only in the {where}, not compared: "
                f"{only[:10]}{' ...' if len(only) > 10 else ''}"
            )
    if not [n for n in chosen if n != weights]:
        shared = f" (they share only bookkeeping: {_listing(list(excluded))})" if excluded else ""
        raise InputError(
            f"the files share no physics feature to compare{shared}: reference "
            f"'{reference}' (tree '{tree}') has [{_listing(physics_ref)}], candidate "
            f"'{candidate}' has [{_listing(physics_cand)}]; name branches with --features "
            "to compare them anyway"
        )
    return chosen, excluded


def _by_group(chosen: list[str], ref_info: Any, cand_info: Any) -> dict[str, list[str]]:
    """``{group: branches}``, in the order of ``chosen``; a branch must belong to the same
    group in both files.  The counter of a collection (``nJet``) is an event-level feature
    (the multiplicity)."""
    ref_groups, cand_groups = _groups(ref_info), _groups(cand_info)
    by_group: dict[str, list[str]] = {}
    for n in chosen:
        if ref_groups[n] != cand_groups[n]:
            raise InputError(
                f"branch '{n}' belongs to '{ref_groups[n]}' in the reference but to "
                f"'{cand_groups[n]}' in the candidate (different counters)"
            )
        by_group.setdefault(ref_groups[n], []).append(n)
    return by_group


def _finite_branches(
    branches: list[str],
    ref_t: Table,
    cand_t: Table,
    notes: list[str],
    skipped: dict[str, dict[str, Any]],
) -> list[str]:
    """The branches with a finite value in both tables (branch-wide mode).

    A branch without a single finite value (all NaN, or an empty collection) cannot be
    compared: it is skipped with a note instead of stopping, and its non-finite counts go to
    ``skipped`` (a candidate that is NaN everywhere must not pass).
    """
    keep = []
    for j, b in enumerate(branches):
        empty = [t.label for t in (ref_t, cand_t) if not np.isfinite(t.values[:, j]).any()]
        if empty:
            notes.append(f"branch '{b}' skipped: no finite value in the {' and '.join(empty)}")
            for t in (ref_t, cand_t):
                skipped.setdefault(t.label, {}).update(count_nonfinite([b], t.values[:, j : j + 1]))
        else:
            keep.append(b)
    return keep


def _primary_first(
    groups: list[SampleGroup],
    notes: list[str],
    excluded: dict[str, str],
    skipped: dict[str, dict[str, Any]],
) -> list[SampleGroup]:
    """The groups with the primary one (most features) first, holding the notes, the
    excluded bookkeeping branches and the skipped branches' counts."""
    groups.sort(key=lambda g: -len(g.reference.names))
    primary = groups[0]
    primary.primary = True
    primary.notes = notes
    primary.excluded = excluded
    primary.skipped_nonfinite = skipped
    if excluded:
        notes.append(
            f"{len(excluded)} bookkeeping branch(es) not compared (name them in --features to "
            "compare them): " + ", ".join(f"{n} {r}" for n, r in excluded.items())
        )
    if len(groups) > 1:
        others = ", ".join(f"'{g.name}' ({len(g.reference.names)})" for g in groups[1:])
        notes.append(
            f"multivariate tests use the '{primary.name}' group "
            f"({len(primary.reference.names)} features); per-feature tests only for {others}"
        )
    return groups


def response_columns(config: Any, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The detector response of every target defined ``relative_to`` a condition.

    ``"Jet_pt/GenJet_pt"`` (ratio, positive kinds) or ``"Jet_eta-GenJet_eta"`` (difference,
    wrapped into [-pi, pi) for periodic features).  They are compared as features of their own:
    a resolution or scale error hides in the steeply falling marginal of ``Jet_pt`` but is plain
    in the response, and tree classifiers cannot easily learn a ratio of two raw inputs.
    """
    out: dict[str, np.ndarray] = {}
    for spec in config.schema.targets:
        ref = spec.relative_to
        if ref is None:
            continue
        x = np.asarray(columns[spec.name], dtype=np.float64)
        g = np.asarray(columns[ref], dtype=np.float64)
        if spec.kind == "positive":
            with np.errstate(divide="ignore", invalid="ignore"):
                out[f"{spec.name}/{ref}"] = np.where(g != 0, x / g, np.nan)
        else:
            d = x - g
            if spec.periodic:
                d = np.mod(d + np.pi, 2 * np.pi) - np.pi
            out[f"{spec.name}-{ref}"] = d
    return out


def load_config_pairs(
    config: Any,
    reference: str | Path,
    candidate: str | Path,
    *,
    max_events: int | None = None,
    quiet: bool = True,
) -> tuple[SampleGroup, dict[str, Any]]:
    """Read the matched gen/reco pairs of a config from both files.

    Every layout of ``data.layout`` works: for ``flat`` / ``objects`` the rows are the
    (reconstructed) objects, stacked as for training (:mod:`hepgen.io.layouts`).  The
    config's ``data.weights`` (per event or row, negative sWeights allowed) become the rows'
    weights in both tables, and so reach every weighted test of :func:`compare`.

    Non-finite values: events holding any are dropped whatever the config's
    ``data.nonfinite`` (validation has its own policy, ``allow_nonfinite``); the values are
    counted per branch first (one extra read of the config's branches) and returned in
    ``group.skipped_nonfinite`` so that the comparison can fail on them.  In the flat/objects
    layouts only the values that the comparison reads count: conditions and weights of every
    object, targets of reconstructed objects (a target left NaN for an object generated as not
    reconstructed is not a failure).

    Returns
    -------
    group : SampleGroup
        Columns: the config's conditions, targets, then the responses of the targets defined
        relative to a condition (:func:`response_columns`), one row per matched pair.
    objects : dict
        Efficiency and fake fraction of both files, with a two-proportion z-test p-value each.
    """
    from scipy import stats

    from hepgen.dataset import config_branches, resolve_layout

    update: dict[str, Any] = {"nonfinite": "drop"}
    if max_events is not None:
        update["max_events"] = max_events
    config = config.model_copy(update={"data": config.data.model_copy(update=update)})
    nonfinite: dict[str, dict[str, Any]] = {}
    rows = config.data.layout != "collections"
    for path, label in ((reference, "reference"), (candidate, "candidate")):
        events = read_events(
            str(path),
            config_branches(config, str(path)),
            tree=config.data.tree,
            nonfinite="keep",
            entry_stop=config.data.max_events,
        )
        counts = nonfinite.setdefault(label, {})
        if rows:
            counts.update(_row_nonfinite(resolve_layout(config, str(path)), events))
            continue
        for name in events.fields:
            col = events[name]
            values = ak.to_numpy(ak.flatten(col, axis=None)).astype(np.float64)
            counts.update(count_nonfinite([name], values[:, None]))
    tables = []
    summaries = []
    for path, label in ((reference, "reference"), (candidate, "candidate")):
        table, summary = _pairs_table(config, [str(path)], label, quiet)
        tables.append(table)
        summaries.append(summary)
    objects: dict[str, Any] = {}
    for key, num, den in (("efficiency", "n_matched", "n_gen"), ("fake_fraction", "n_fakes", None)):
        k1 = summaries[0][num]
        k2 = summaries[1][num]
        n1 = summaries[0][den] if den else summaries[0]["n_fakes"] + summaries[0]["n_matched"]
        n2 = summaries[1][den] if den else summaries[1]["n_fakes"] + summaries[1]["n_matched"]
        entry: dict[str, Any] = {
            "reference": k1 / n1 if n1 else None,
            "candidate": k2 / n2 if n2 else None,
            "n_reference": n1,
            "n_candidate": n2,
            "pvalue": None,
        }
        if n1 and n2:
            pooled = (k1 + k2) / (n1 + n2)
            se = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
            if se > 0:
                z = (k2 / n2 - k1 / n1) / se
                entry["pvalue"] = float(2 * stats.norm.sf(abs(z)))
        objects[key] = entry
    objects["reference_summary"] = summaries[0]
    objects["candidate_summary"] = summaries[1]
    group = SampleGroup(
        name=config.data.reco if not rows else config.data.layout,
        reference=tables[0],
        candidate=tables[1],
        primary=True,
        skipped_nonfinite=nonfinite,
    )
    return group, objects


def _pairs_table(
    config: Any, files: Sequence[str], label: str, quiet: bool
) -> tuple[Table, dict[str, Any]]:
    """The matched pairs of ``files`` as a table (conditions, targets, responses) and the
    pairs' summary (counts of gen, matched and fake objects)."""
    from hepgen.dataset import load_pairs

    pairs = load_pairs(config, files=[str(f) for f in files], quiet=quiet)
    cols = pairs.pairs()
    names = [f.name for f in config.schema.conditions] + [f.name for f in config.schema.targets]
    for response, values in response_columns(config, cols).items():
        cols[response] = values
        names.append(response)
    values = np.column_stack([np.asarray(cols[n], dtype=np.float64) for n in names])
    integer = [bool(np.issubdtype(np.asarray(cols[n]).dtype, np.integer)) for n in names]
    w = pairs.gen_weights[pairs.matched] if config.data.weights else None
    table = Table(names=names, values=values, weights=w, integer=integer, label=label)
    return table, pairs.summary()


def load_train_table(
    files: Sequence[str | Path],
    names: Sequence[str],
    *,
    config: Any = None,
    tree: str = "Events",
    weights: str | None = None,
    max_events: int | None = None,
    quiet: bool = True,
) -> Table:
    """The training sample of a generator, as a table of the compared features ``names``.

    With ``config``, the matched gen/reco pairs of the files as for the reference
    (:func:`load_config_pairs`; events with a non-finite value dropped); without, the branches
    ``names`` of the files (object collections flattened), all files concatenated.

    Raises
    ------
    InputError
        Naming the file and the branch or feature that is missing.
    """
    if config is not None:
        update: dict[str, Any] = {"nonfinite": "drop"}
        if max_events is not None:
            update["max_events"] = max_events
        config = config.model_copy(update={"data": config.data.model_copy(update=update)})
        table, _ = _pairs_table(config, [str(f) for f in files], "training sample", quiet)
        missing = [n for n in names if n not in table.names]
        if missing:
            raise InputError(f"training sample: no feature(s) {missing} from the config's pairs")
        return table.select_columns(list(names))
    parts = []
    branches = [str(n) for n in names] + ([weights] if weights else [])
    for f in files:
        path = Path(f)
        events = _read_file(path, tree, branches, max_events)
        parts.append(_table(events, path, tree, list(names), weights, "training sample", "train"))
    if len(parts) == 1:
        return parts[0]
    w = None if weights is None else np.concatenate([p.weights for p in parts])
    return Table(
        names=list(names),
        values=np.concatenate([p.values for p in parts]),
        weights=w,
        integer=parts[0].integer,
        label="training sample",
    )


def _row_nonfinite(resolved: Any, events: Any) -> dict[str, dict[str, int]]:
    """Non-finite counts per branch of a flat/objects layout, counting only what the
    comparison reads: conditions and weights of every object, targets of reconstructed
    objects (:func:`load_config_pairs`)."""
    layout = resolved.layout
    n_rows = len(events)
    names = list(layout.conditions) + list(layout.targets)
    columns = resolved.stack(events, names)
    flags = resolved.stack_flags(events)
    k = layout.n_objects
    out: dict[str, dict[str, int]] = {}
    for name in names:
        values = np.asarray(columns[name], dtype=np.float64).reshape(n_rows, k)
        for j, branch in enumerate(resolved.sources[name]):
            column = values[:, j]
            if name in layout.targets and flags is not None:
                column = column[flags.reshape(n_rows, k)[:, j]]
            entry = count_nonfinite([branch], column[:, None])[branch]
            if branch in out:  # a row-level branch shared by the objects: count it once
                continue
            out[branch] = entry
    if layout.weights:
        w = np.asarray(events[layout.weights], dtype=np.float64)
        out.update(count_nonfinite([layout.weights], w[:, None]))
    return out
