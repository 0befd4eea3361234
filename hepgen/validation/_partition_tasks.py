"""The tasks of :func:`~hepgen.validation.partitioned.validate_partitioned` and how their
results are added up.

A task reads one partition (:func:`~hepgen.parallel.partitions.read_partition`) and returns
small arrays: in pass 1 the exact ranges of every feature
(:class:`~hepgen.validation.univariate.sketch.FeatureRange`), the group sums and the rows of
the seeded subsample; in pass 2 the histograms on fixed edges
(:class:`~hepgen.validation.univariate.sketch.BinnedSample`), also of the reference's two
baseline halves.  :func:`fold` adds them up on the client in partition order as they
complete.  The functions are module-level and their arguments plain data, so Dask can
pickle them; they are idempotent (a re-run of a dead worker's task returns the same sums).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hepgen.errors import InputError
from hepgen.parallel.partitions import Partition
from hepgen.validation.inputs import _table
from hepgen.validation.samples import Table
from hepgen.validation.univariate.sketch import BinnedSample, FeatureRange, chi2_edges, fine_edges
from hepgen.validation.verdict import merge_nonfinite

__all__ = [
    "HALVES_SALT",
    "SUBSAMPLE_SALT",
    "GroupSums",
    "TaskPlan",
    "add_sums",
    "concat",
    "edges_of",
    "finish1",
    "fold",
    "merge1",
    "merge2",
    "nonfinite_record",
    "pass1",
    "pass2",
    "screen",
]

#: Salts of the seeded row choices (:func:`~hepgen.parallel.partitions.row_uniforms`).
SUBSAMPLE_SALT = 17_001
HALVES_SALT = 17_002


@dataclasses.dataclass(frozen=True)
class TaskPlan:
    """What a task of one sample needs (sent to the workers)."""

    label: str
    groups: dict[str, tuple[str, ...]]
    weights: str | None
    seed: int
    block: int
    fraction: float = 1.0
    half: float = 0.0
    #: pass 2: ``{feature: (chi2 inner edges, fine edges, use the weights)}``
    edges: dict[str, tuple[np.ndarray, np.ndarray, bool]] | None = None


@dataclasses.dataclass
class GroupSums:
    """Rows and weight sums of one group (the Kish size of the whole sample)."""

    rows: int = 0
    bad_weights: int = 0
    sum_w: float = 0.0
    sum_w2: float = 0.0

    @classmethod
    def of(cls, table: Table) -> GroupSums:
        if table.weights is None:
            return cls(table.n, 0, float(table.n), float(table.n))
        w = table.weights
        ok = np.isfinite(w)
        return cls(table.n, int((~ok).sum()), float(w[ok].sum()), float((w[ok] ** 2).sum()))

    def __add__(self, other: GroupSums) -> GroupSums:
        return GroupSums(
            self.rows + other.rows,
            self.bad_weights + other.bad_weights,
            self.sum_w + other.sum_w,
            self.sum_w2 + other.sum_w2,
        )

    def n_eff(self, weighted: bool) -> float:
        if not weighted:
            return float(self.rows)
        return self.sum_w**2 / self.sum_w2 if self.sum_w2 > 0 else 0.0


def read_events_of(partition: Partition, plan: TaskPlan) -> Any:
    """The events of one partition: the compared branches and the weight branch."""
    from hepgen.parallel.partitions import read_partition

    branches = [b for names in plan.groups.values() for b in names]
    if plan.weights:
        branches.append(plan.weights)
    return read_partition(partition, branches)


def group_tables(events: Any, partition: Partition, plan: TaskPlan) -> dict[str, Table]:
    return {
        group: _table(
            events, partition.path, partition.tree, list(names), plan.weights, plan.label, group
        )
        for group, names in plan.groups.items()
    }


def pass1(item: tuple[str, Partition], plans: Mapping[str, TaskPlan]) -> dict[str, Any]:
    """Task of pass 1: exact ranges, group sums and the subsample of one partition."""
    from hepgen.parallel.partitions import row_uniforms

    label, partition = item
    plan = plans[label]
    events = read_events_of(partition, plan)
    tables = group_tables(events, partition, plan)
    ranges: dict[str, FeatureRange] = {}
    for table in tables.values():
        for j, name in enumerate(table.names):
            ranges[name] = FeatureRange.of(table.values[:, j], table.weights)
    u = row_uniforms(partition, plan.seed, plan.block, salt=SUBSAMPLE_SALT)
    keep = u < plan.fraction
    subsample = group_tables(events[keep], partition, plan) if plan.fraction < 1 else tables
    return {
        "ranges": ranges,
        "sums": {g: GroupSums.of(t) for g, t in tables.items()},
        "subsample": subsample,
    }


def binned(table: Table, plan: TaskPlan) -> dict[str, BinnedSample]:
    assert plan.edges is not None
    out = {}
    for j, name in enumerate(table.names):
        if name in plan.edges:
            coarse, fine, weighted = plan.edges[name]
            w = table.weights if weighted else None
            out[name] = BinnedSample.of(table.values[:, j], w, coarse, fine)
    return out


def pass2(item: tuple[str, Partition], plans: Mapping[str, TaskPlan]) -> dict[str, Any]:
    """Task of pass 2: the histograms of one partition (and of its rows in the reference's
    two baseline halves)."""
    from hepgen.parallel.partitions import row_uniforms

    label, partition = item
    plan = plans[label]
    events = read_events_of(partition, plan)
    out: dict[str, Any] = {"all": {}, "halves": None}
    for table in group_tables(events, partition, plan).values():
        out["all"].update(binned(table, plan))
    if plan.half > 0:
        u = row_uniforms(partition, plan.seed, plan.block, salt=HALVES_SALT)
        halves = []
        for rows in (u < plan.half, (u >= plan.half) & (u < 2 * plan.half)):
            part: dict[str, Any] = {"binned": {}, "ranges": {}, "sums": {}}
            for group, table in group_tables(events[rows], partition, plan).items():
                part["binned"].update(binned(table, plan))
                part["sums"][group] = GroupSums.of(table)
                for j, name in enumerate(table.names):
                    part["ranges"][name] = FeatureRange.of(table.values[:, j], table.weights)
            halves.append(part)
        out["halves"] = halves
    return out


def add_sums(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (a[k] + b[k]) if k in a else b[k] for k in b} | {
        k: v for k, v in a.items() if k not in b
    }


def concat(tables: Sequence[Table]) -> Table:
    first = tables[0]
    weights = None
    if first.weights is not None:
        weights = np.concatenate([t.weights for t in tables])
    return Table(
        names=list(first.names),
        values=np.concatenate([t.values for t in tables]),
        weights=weights,
        integer=list(first.integer),
        label=first.label,
    )


def fold(ex: Any, fn: Any, items: list[Any], merge: Any, state: Any, desc: str, quiet: bool) -> Any:
    """Add the results of ``fn`` over the items into ``state`` as they come, in item order
    (a result that completes early waits for its predecessors): the client holds the sums,
    not the per-partition results, and the sums are added in the same order whatever the
    executor, so they are bit-identical on 1 or 8 workers."""
    pending: dict[int, Any] = {}
    done = 0
    sizes = [float(p.entries) for _, p in items]
    for i, res in ex.map(fn, items, sizes=sizes, desc=desc, unit="event", quiet=quiet):
        pending[i] = res
        while done in pending:
            merge(state, items[done][0], pending.pop(done))
            done += 1
    return state


def merge1(state: dict[str, Any], label: str, res: dict[str, Any]) -> None:
    """Pass 1: add ranges and group sums, collect the subsample tables."""
    mine = state.setdefault(label, {"ranges": {}, "sums": {}, "subsample": {}})
    mine["ranges"] = add_sums(mine["ranges"], res["ranges"])
    mine["sums"] = add_sums(mine["sums"], res["sums"])
    for group, table in res["subsample"].items():
        mine["subsample"].setdefault(group, []).append(table)


def finish1(state: dict[str, Any]) -> dict[str, Any]:
    for label in ("reference", "candidate"):
        sub = state[label]["subsample"]
        state[label]["subsample"] = {g: concat(tables) for g, tables in sub.items()}
    return state


def merge2(state: dict[str, Any], label: str, res: dict[str, Any]) -> None:
    """Pass 2: add the histograms (and those of the baseline halves)."""
    state[label] = add_sums(state[label], res["all"])
    if res["halves"] is None:
        return
    if state["halves"] is None:
        state["halves"] = [{"binned": {}, "ranges": {}, "sums": {}} for _ in range(2)]
    for mine, new in zip(state["halves"], res["halves"], strict=True):
        for key in ("binned", "ranges", "sums"):
            mine[key] = add_sums(mine[key], new[key])


def screen(
    merged: dict[str, Any],
    groups: dict[str, tuple[str, ...]],
    named: bool,
    notes: list[str],
    skipped: dict[str, dict[str, Any]],
) -> dict[str, tuple[str, ...]]:
    """Refuse bad weights; leave out (or, when named, refuse) features without a finite value;
    note partial NaN counts."""
    for label in ("reference", "candidate"):
        for sums in merged[label]["sums"].values():
            if sums.bad_weights:
                raise InputError(f"{label}: {sums.bad_weights} weights are NaN or infinite")
    kept: dict[str, tuple[str, ...]] = {}
    for group, names in groups.items():
        keep = []
        for name in names:
            r, c = merged["reference"]["ranges"][name], merged["candidate"]["ranges"][name]
            empty = [lab for lab, x in (("reference", r), ("candidate", c)) if x.n_finite == 0]
            if empty and named:
                x = r if empty[0] == "reference" else c
                raise InputError(
                    f"{empty[0]}: feature '{name}' is NaN or infinite in all {x.n} rows"
                )
            if empty:
                notes.append(
                    f"branch '{name}' skipped: no finite value in the {' and '.join(empty)}"
                )
                skipped.setdefault("reference", {})[name] = r.nonfinite()
                skipped.setdefault("candidate", {})[name] = c.nonfinite()
            else:
                keep.append(name)
        if keep:
            kept[group] = tuple(keep)
    if not kept:
        raise InputError("no compared branch has finite values in both samples")
    for label in ("reference", "candidate"):
        bad = {
            n: x.n - x.n_finite
            for n, x in merged[label]["ranges"].items()
            if x.n_finite < x.n and any(n in v for v in kept.values())
        }
        if bad:
            notes.append(
                f"{label}: NaN or infinite values left out of the tests that use them "
                f"(per feature: {bad})"
            )
    return kept


def edges_of(
    merged: dict[str, Any], groups: dict[str, tuple[str, ...]], n_fine: int
) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray, bool]]]:
    """Per sample ``{feature: (chi2 inner edges, fine edges, use the weights)}``."""
    ref, cand = merged["reference"], merged["candidate"]
    out: dict[str, dict[str, Any]] = {"reference": {}, "candidate": {}}
    for group, names in groups.items():
        sub = ref["subsample"][group]
        for name in names:
            x = sub.column(name)
            ok = np.isfinite(x)
            w = None if sub.weights is None else sub.weights[ok]
            r, c = ref["ranges"][name], cand["ranges"][name]
            coarse = chi2_edges(x[ok], w, r, c)
            fine = fine_edges(x[ok], w, r, c, n_fine)
            out["reference"][name] = (coarse, fine, r.weighted)
            out["candidate"][name] = (coarse, fine, c.weighted)
    return out


def nonfinite_record(
    merged: dict[str, Any],
    groups: dict[str, tuple[str, ...]],
    skipped: dict[str, dict[str, Any]],
    allowed: bool,
) -> dict[str, Any]:
    """The ``nonfinite`` record of the compared features and the skipped ones."""
    names = [n for v in groups.values() for n in v]
    counts = {
        label: {n: merged[label]["ranges"][n].nonfinite() for n in names}
        for label in ("reference", "candidate")
    }
    record = merge_nonfinite({"allowed": bool(allowed)}, counts["reference"], counts["candidate"])
    return merge_nonfinite(record, skipped.get("reference") or {}, skipped.get("candidate") or {})
