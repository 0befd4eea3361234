"""Summaries of ROOT files: entries, collections and per-branch statistics, read in chunks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import awkward as ak
import numpy as np

from hepgen.io.reader import Files, count_entries, inspect_tree, iterate_events, resolve_files
from hepgen.progress import progress

__all__ = ["format_summary", "summarise_files"]


def summarise_files(
    files: Files,
    branches: Sequence[str] | None = None,
    tree: str = "Events",
    step_size: int = 100_000,
    quiet: bool = False,
) -> dict[str, Any]:
    """Per-branch count, min, mean, max and non-finite counts over all files, in chunks.

    Returns
    -------
    dict
        ``{"files", "tree", "n_events", "collections", "branches": {name: stats}}``; stats
        are over all values (objects for jagged branches), non-finite values excluded.
    """
    paths = resolve_files(files)
    info = [inspect_tree(p, tree) for p in paths]
    stats: dict[str, dict[str, float]] = {}
    total = count_entries(paths, tree)
    with progress(total=total, desc="inspect", unit="events", quiet=quiet) as bar:
        for events in iterate_events(paths, branches, tree, step_size, nonfinite="keep"):
            for name in events.fields:
                values = np.asarray(ak.ravel(events[name]), dtype=np.float64)
                finite = np.isfinite(values)
                s = stats.setdefault(
                    name,
                    {"count": 0, "sum": 0.0, "min": np.inf, "max": -np.inf, "nan": 0, "inf": 0},
                )
                good = values[finite]
                s["count"] += len(good)
                s["sum"] += float(good.sum())
                if len(good):
                    s["min"] = min(s["min"], float(good.min()))
                    s["max"] = max(s["max"], float(good.max()))
                s["nan"] += int(np.isnan(values).sum())
                s["inf"] += int(np.isinf(values).sum())
            bar.update(len(events))
    for s in stats.values():
        s["mean"] = s.pop("sum") / s["count"] if s["count"] else None
        if not s["count"]:
            s["min"] = s["max"] = None
    collections: dict[str, int] = {}
    for i in info:
        for name, members in i.collections.items():
            collections[name] = max(collections.get(name, 0), len(members))
    return {
        "files": [str(p) for p in paths],
        "tree": tree,
        "n_events": total,
        "collections": collections,
        "branches": stats,
    }


def format_summary(summary: dict[str, Any], max_rows: int = 60) -> str:
    """A plain-text table of :func:`summarise_files`' result."""
    lines = [
        f"{len(summary['files'])} file(s), tree '{summary['tree']}', {summary['n_events']} events",
        "collections: "
        + (", ".join(f"{k} ({v} branches)" for k, v in summary["collections"].items()) or "none"),
        f"{'branch':32s} {'values':>10s} {'min':>12s} {'mean':>12s} {'max':>12s} {'nan':>6s} {'inf':>6s}",
    ]

    def num(x: float | None) -> str:
        return f"{x:12.5g}" if x is not None else f"{'-':>12s}"

    items = list(summary["branches"].items())
    for name, s in items[:max_rows]:
        lines.append(
            f"{name:32s} {s['count']:10d} {num(s['min'])} {num(s['mean'])} {num(s['max'])} "
            f"{s['nan']:6d} {s['inf']:6d}"
        )
    if len(items) > max_rows:
        lines.append(f"... and {len(items) - max_rows} more branches (use --json for all)")
    return "\n".join(lines)
