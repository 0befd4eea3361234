"""Shared pieces of the report's HTML: colour classes, CSS, number cells, embedded images.

See :mod:`hepgen.validation.report.html` for the colour rules of :func:`status`.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

__all__ = ["BAD", "CSS", "NONE", "OK", "WARN", "breakable", "scroll", "status"]

OK, WARN, BAD, NONE = "ok", "warn", "bad", "none"

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;
color:#222;max-width:1400px}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;margin:8px 0;font-size:0.9em}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td.name,th.name{text-align:left;font-family:monospace}
td.ok{background:#d9f2d9}td.warn{background:#fcebc2}td.bad{background:#f7c6c6}
.grid{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start}.grid figure{margin:0}
.grid img{width:420px}figcaption{font-size:0.8em;text-align:center;font-family:monospace}
.notes li{font-size:0.9em}.legend span{padding:2px 8px;margin-right:6px}
.small{font-size:0.85em;color:#555}
.verdict{font-size:1.2em;padding:6px 10px;border-radius:4px}
.v-PASS{background:#d9f2d9}.v-DIFFERENT{background:#f7c6c6}.v-INCONCLUSIVE{background:#fcebc2}
.alarm{border:2px solid #c00;padding:4px 12px;background:#fdeaea}.alarm h2{color:#c00}
.scroll{max-width:100%;overflow-x:auto}.scroll table{margin:0}
td{white-space:nowrap}th.wrap{white-space:normal;max-width:8em;vertical-align:bottom}
.glance{display:flex;flex-wrap:wrap;gap:8px;margin:8px 0}
.glance div{border:1px solid #ccc;border-radius:4px;padding:4px 10px;min-width:150px}
.glance div b{font-size:1.25em}.glance .lbl{font-size:0.8em;color:#444}
div.ok,span.ok{background:#d9f2d9}div.warn,span.warn{background:#fcebc2}
div.bad,span.bad{background:#f7c6c6}
.wide img{max-width:100%}
"""


def _num(value: Any, fmt: str = ".4g") -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    try:
        return format(float(value), fmt)
    except (TypeError, ValueError):
        return html.escape(str(value))


def status(
    value: float | None,
    baseline: float | None = None,
    pvalue: float | None = None,
    kind: str = "test",
    error: float | None = None,
    baseline_error: float | None = None,
) -> str:
    """Colour class of a number against its baseline (see the module docstring)."""
    if value is None:
        return NONE
    if kind == "test":
        if pvalue is None:
            return NONE
        if pvalue >= 0.01:
            return OK
        if baseline is not None and abs(value) <= 2 * abs(baseline):
            return WARN
        return BAD
    if kind == "error":
        if baseline is None or error is None:
            return NONE
        spread = (error**2 + (baseline_error or 0.0) ** 2) ** 0.5
        return (
            OK
            if value <= baseline + 3 * spread
            else (WARN if value <= baseline + 6 * spread else BAD)
        )
    if kind == "difference":  # PRDC: closeness to the baseline value
        if baseline is None:
            return NONE
        gap = abs(value - baseline)
        return OK if gap <= 0.05 else (WARN if gap <= 0.1 else BAD)
    if baseline is None or baseline <= 0:
        return NONE
    ratio = value / baseline
    return OK if ratio <= 2 else (WARN if ratio <= 5 else BAD)


def _td(value: Any, cls: str = NONE, fmt: str = ".4g") -> str:
    cls_attr = f' class="{cls}"' if cls != NONE else ""
    return f"<td{cls_attr}>{_num(value, fmt)}</td>"


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"data:image/png;base64,{data}"


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def breakable(name: str) -> str:
    """An escaped feature name that may wrap after ``_``, ``/`` and ``-`` (table headers)."""
    out = html.escape(name)
    for ch in ("_", "/", "-"):
        out = out.replace(ch, ch + "<wbr>")
    return out


def scroll(table_html: str) -> str:
    """Wrap a table in a box that scrolls sideways (the page itself never does)."""
    return f"<div class='scroll'>{table_html}</div>"
