"""Scan report directory: ``scan.json`` (machine-readable), ``report.html`` (self-contained,
plots embedded) and the plot images.

``scan.json`` holds one entry per window (in the order of the resonance variable) with
``lo``, ``hi``, ``n_observed``, ``n_expected``, ``significance``, ``threshold`` at the ranking
efficiency, every selection, the sideband fit, and ``max_sic`` when labels exist
(:meth:`~hepgen.anomaly.scan.ScanResult.to_dict`).  Values are plain JSON (no NaN).
"""

from __future__ import annotations

import datetime as _dt
import functools
import html
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hist
import matplotlib
import matplotlib.pyplot as plt
import mplhep
import numpy as np
from matplotlib.figure import Figure

from hepgen._version import __version__
from hepgen.anomaly.scan import ScanResult, WindowResult
from hepgen.utils import atomic_path, atomic_write_text, to_jsonable, write_json
from hepgen.validation.report.html import CSS

__all__ = ["write_scan_report"]


def _save(fig: Figure, path: Path) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=90, bbox_inches="tight", format="png")
    return path


def _styled(plot: Callable[..., Any]) -> Callable[..., Any]:
    """Draw in mplhep's ROOT style on a detached :class:`~matplotlib.figure.Figure`: neither
    pyplot's figure list nor the global style (nor the backend of a notebook) changes."""

    @functools.wraps(plot)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with (
            plt.style.context(mplhep.style.ROOT),
            matplotlib.rc_context({"font.size": 12, "axes.labelsize": 14, "legend.fontsize": 10}),
        ):
            return plot(*args, **kwargs)

    return wrapper


@_styled
def plot_significance(result: ScanResult, path: Path) -> Path:
    """Local significance per window (centre of the SR) for every efficiency."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    centres = [w.window.centre for w in result.windows]
    for k, eff in enumerate(result.settings.efficiencies):
        z = [
            next(s["significance"] for s in w.selections if s["efficiency"] == eff)
            for w in result.windows
        ]
        z = [np.nan if v is None else v for v in z]
        style = "o-" if eff == result.settings.ranking_efficiency else "s--"
        ax.plot(centres, z, style, label=f"$\\epsilon_B$ = {eff:g}", alpha=1.0 - 0.2 * k)
    for level in (2, 3, 5):
        ax.axhline(level, color="grey", lw=0.8, ls=":")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel(f"signal-region centre of {result.settings.resonance_name}")
    ax.set_ylabel("local significance $Z$")
    ax.legend()
    return _save(fig, path)


@_styled
def plot_counts(result: ScanResult, path: Path) -> Path:
    """Observed and expected events after the ranking selection, per window."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    c = np.array([w.window.centre for w in result.windows])
    obs = np.array([w.headline["n_observed"] for w in result.windows], dtype=float)
    exp = np.array([w.headline["n_expected"] for w in result.windows], dtype=float)
    err = np.array([w.headline["n_expected_error"] for w in result.windows], dtype=float)
    ax.fill_between(
        c,
        exp - np.hypot(err, np.sqrt(exp)),
        exp + np.hypot(err, np.sqrt(exp)),
        color="tab:blue",
        alpha=0.25,
        step="mid",
        label="expected $\\pm 1\\sigma$",
    )
    ax.plot(c, exp, "-", color="tab:blue", drawstyle="steps-mid")
    ax.errorbar(c, obs, yerr=np.sqrt(obs), fmt="o", color="black", label="observed")
    ax.set_xlabel(f"signal-region centre of {result.settings.resonance_name}")
    ax.set_ylabel(f"events after $\\epsilon_B$ = {result.settings.ranking_efficiency:g}")
    ax.legend()
    return _save(fig, path)


@_styled
def plot_spectrum(w: WindowResult, resonance: str, path: Path) -> Path:
    """The window's resonance spectrum (sidebands + SR) before and after each selection."""
    a = w.arrays
    m = np.concatenate([a["m_sideband"], a["m_sr"]])
    s = np.concatenate([a["score_sideband"], a["score_sr"]])
    axis = hist.axis.Regular(40, w.window.sb_lo, w.window.sb_hi, name=resonance)
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    mplhep.histplot(hist.Hist(axis).fill(m), ax=ax, color="black", label="all events")
    for sel in w.selections:
        h = hist.Hist(axis).fill(m[s > sel["threshold"]])
        mplhep.histplot(
            h,
            ax=ax,
            label=f"$\\epsilon_B$ = {sel['efficiency']:g}: "
            f"{sel['n_observed']} obs / {sel['n_expected']:.1f} exp in SR",
        )
    for edge in (w.window.lo, w.window.hi):
        ax.axvline(edge, color="grey", ls="--", lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel(resonance)
    ax.set_ylabel("events / bin")
    ax.legend(fontsize=9)
    ax.set_title(f"window [{w.window.lo:.3g}, {w.window.hi:.3g})", fontsize=12)
    return _save(fig, path)


@_styled
def plot_full_spectrum(m: np.ndarray, result: ScanResult, path: Path) -> Path:
    """The resonance spectrum of all events with the scanned signal regions."""
    lo = min(w.window.sb_lo for w in result.windows)
    hi = max(w.window.sb_hi for w in result.windows)
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    h = hist.Hist(hist.axis.Regular(60, lo, hi, name="m")).fill(m[(m >= lo) & (m < hi)])
    mplhep.histplot(h, ax=ax, color="black", label="all events")
    best = result.best.window
    ax.axvspan(best.lo, best.hi, color="tab:red", alpha=0.15, label="most significant SR")
    ax.set_yscale("log")
    ax.set_xlabel(result.settings.resonance_name)
    ax.set_ylabel("events / bin")
    ax.legend()
    return _save(fig, path)


@_styled
def plot_roc_sic(result: ScanResult, path_roc: Path, path_sic: Path) -> tuple[Path, Path]:
    """ROC (background rejection vs signal efficiency) and SIC curves of every window."""
    fig_r, fig_s = Figure(figsize=(6, 4.5)), Figure(figsize=(6, 4.5))
    ax_r, ax_s = fig_r.subplots(), fig_s.subplots()
    for w in result.windows:
        if w.roc is None:
            continue
        label = f"[{w.window.lo:.3g}, {w.window.hi:.3g})"
        ok = w.roc.fpr > 0
        ax_r.plot(w.roc.tpr[ok], 1.0 / w.roc.fpr[ok], label=label)
        ax_s.plot(w.roc.tpr, w.roc.sic, label=f"{label} max {w.roc.max_sic:.2f}")
    ax_r.set_yscale("log")
    ax_r.set_xlabel("signal efficiency (TPR)")
    ax_r.set_ylabel("background rejection 1/FPR")
    ax_s.axhline(1, color="grey", lw=0.8, ls=":")
    ax_s.set_xlabel("signal efficiency (TPR)")
    ax_s.set_ylabel("SIC = TPR/$\\sqrt{FPR}$")
    for ax in (ax_r, ax_s):
        ax.legend(fontsize=8)
    return _save(fig_r, path_roc), _save(fig_s, path_sic)


def _img(path: Path) -> str:
    import base64

    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _fmt(v: Any, fmt: str = ".3g") -> str:
    if v is None:
        return "&ndash;"
    if isinstance(v, float):
        return format(v, fmt)
    return html.escape(str(v))


def render_scan_html(scan: dict[str, Any], plots: dict[str, Path], inputs: dict[str, Any]) -> str:
    """The report page for a ``scan.json`` dict and its plots."""
    title = "hepgen resonance scan"
    out = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{CSS}</style></head><body><h1>{title}</h1>"
    ]
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out.append(f"<p class='small'>hepgen {__version__}, {stamp}</p><table>")
    for k, v in inputs.items():
        out.append(
            f"<tr><th class='name'>{html.escape(str(k))}</th>"
            f"<td class='name'>{html.escape(str(v))}</td></tr>"
        )
    out.append("</table>")
    best = scan["best"]
    out.append(
        f"<h2>Summary</h2><ul><li>{scan['n_events']} events; score <b>{scan['score']}</b>, "
        f"background after the selection from the <b>{scan['estimate']}</b> estimate</li>"
        f"<li>most significant window: [{best['lo']:.4g}, {best['hi']:.4g}) with local "
        f"<b>Z = {_fmt(best['significance'], '.2f')}</b> at background efficiency "
        f"{scan['ranking_efficiency']:g} (no look-elsewhere correction)</li></ul>"
    )
    head = (
        "<tr><th>rank</th><th>lo</th><th>hi</th><th>SR events</th><th>SB events</th>"
        "<th>bkg fit in SR</th><th>threshold</th><th>observed</th><th>expected</th>"
        "<th>Z</th><th>Z (template)</th><th>SB closure</th><th>Z (calibrated)</th>"
        "<th>Z (fit)</th><th>max SIC</th><th>s</th></tr>"
    )
    rows = []
    for w in scan["windows"]:
        cls = (
            " class='bad'"
            if (w["significance"] or 0) >= 3
            else (" class='warn'" if (w["significance"] or 0) >= 2 else "")
        )
        sel = next(s for s in w["selections"] if s["efficiency"] == scan["ranking_efficiency"])
        rows.append(
            f"<tr><td>{w['rank']}</td><td>{w['lo']:.4g}</td><td>{w['hi']:.4g}</td>"
            f"<td>{w['n_signal_region']}</td><td>{sum(w['n_sideband'])}</td>"
            f"<td>{w['n_background_fit']:.1f} &plusmn; {w['n_background_fit_error']:.1f}</td>"
            f"<td>{w['threshold']:.3g}</td><td>{w['n_observed']}</td>"
            f"<td>{w['n_expected']:.1f} &plusmn; {w['n_expected_error']:.1f}</td>"
            f"<td{cls}>{_fmt(w['significance'], '.2f')}</td>"
            f"<td>{_fmt(sel['significance_template'], '.2f')}</td>"
            f"<td>{_fmt(sel['sideband_closure'], '.3f')}</td>"
            f"<td>{_fmt(sel['significance_calibrated'], '.2f')}</td>"
            f"<td>{_fmt(sel['significance_fit'], '.2f')}</td>"
            f"<td>{_fmt(w.get('max_sic'), '.2f')}</td><td>{w['seconds']:.0f}</td></tr>"
        )
    out.append(
        f"<h2>Windows (at &epsilon;<sub>B</sub> = {scan['ranking_efficiency']:g})</h2>"
        f"<table>{head}{''.join(rows)}</table>"
    )
    out.append("<h2>Plots</h2><div class='grid'>")
    captions = {
        "significance": "local significance per window",
        "counts": "observed vs expected after the ranking selection",
        "full_spectrum": "spectrum of all events",
        "spectrum_best": "most significant window before/after the selections",
        "roc": "ROC per window (SR events, truth labels)",
        "sic": "SIC per window (SR events, truth labels)",
    }
    for key, caption in captions.items():
        if key in plots:
            out.append(
                f"<figure><img src='{_img(plots[key])}'><figcaption>{caption}</figcaption></figure>"
            )
    out.append("</div>")
    notes = list(scan.get("notes") or [])
    for w in scan["windows"]:
        notes += [f"[{w['lo']:.4g}, {w['hi']:.4g}): {n}" for n in w.get("notes") or []]
    if notes:
        out.append(
            "<h2>Notes</h2><ul class='notes'>"
            + "".join(f"<li>{html.escape(str(n))}</li>" for n in notes)
            + "</ul>"
        )
    out.append("</body></html>")
    return "\n".join(out)


def write_scan_report(
    result: ScanResult,
    directory: str | os.PathLike,
    m: np.ndarray | None = None,
    inputs: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Write ``scan.json``, the plots and ``report.html`` into ``directory`` (atomically each).

    Parameters
    ----------
    result : ScanResult
    directory : path
        Created when missing.
    m : array of shape (n,) or None
        The resonance variable of all events, for the spectrum plot.
    inputs : dict or None
        Shown in the report header (config, files, command).

    Returns
    -------
    dict of str to Path
        ``scan_json``, ``report_html`` and each plot.
    """
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    scan = to_jsonable(result.to_dict())
    files: dict[str, Path] = {"scan_json": write_json(out / "scan.json", scan)}
    plots: dict[str, Path] = {
        "significance": plot_significance(result, out / "significance.png"),
        "counts": plot_counts(result, out / "counts.png"),
        "spectrum_best": plot_spectrum(
            result.best, result.settings.resonance_name, out / "spectrum_best.png"
        ),
    }
    if m is not None:
        plots["full_spectrum"] = plot_full_spectrum(
            np.asarray(m, dtype=float), result, out / "spectrum.png"
        )
    if any(w.roc is not None for w in result.windows):
        plots["roc"], plots["sic"] = plot_roc_sic(result, out / "roc.png", out / "sic.png")
    page = render_scan_html(scan, plots, inputs or {})
    files["report_html"] = atomic_write_text(out / "report.html", page)
    files.update(plots)
    return files
