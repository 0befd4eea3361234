"""Scan report directory: ``scan.json`` (machine-readable), ``report.html`` (self-contained,
plots embedded) and the plot images.

``scan.json`` holds one entry per window (in the order of the resonance variable) with
``lo``, ``hi``, ``n_observed``, ``n_expected``, ``significance``, ``threshold`` at the ranking
efficiency, every selection, the sideband fit, ``max_sic`` (and ``max_sic_uncapped``) when
labels exist, and, when computed, the template ``fidelity``, the ensemble's ``seed_spread``,
the ``sculpting`` check and the per-event likelihood ``pvalues``; at the top level the
``global_significance`` of the most significant window
(:meth:`~hepgen.anomaly.scan.ScanResult.to_dict`).  Values are plain JSON (no NaN).

``report.html`` opens with the headline (the most significant window's local and global
significance, its seed spread and max SIC), then the windows table and one section per
computed check (global significance, seed spread, sculpting, per-event p-values, template
fidelity), then the plots and notes; a section whose data is absent (an older scan) is left
out.  The plots are drawn in memory first (:mod:`hepgen.anomaly.report_plots`), then every
file is written atomically, ``report.html`` last: a failure while drawing leaves the previous
report as it was.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hepgen._version import __version__
from hepgen.anomaly import report_plots as rp
from hepgen.anomaly.report_plots import format_window
from hepgen.anomaly.scan import ScanResult
from hepgen.utils import atomic_write_bytes, atomic_write_text, to_jsonable, write_json
from hepgen.validation.report._base import CSS, scroll

__all__ = ["PLOT_FILES", "global_headline", "render_scan_html", "write_scan_report"]

#: The plots of a report and their file names in the report directory.
PLOT_FILES: dict[str, str] = {
    "significance": "significance.png",
    "counts": "counts.png",
    "full_spectrum": "spectrum.png",
    "spectrum_best": "spectrum_best.png",
    "roc": "roc.png",
    "sic": "sic.png",
    "global_significance": "global_significance.png",
    "seed_spread": "seed_spread.png",
    "sculpting": "sculpting.png",
    "pvalues": "pvalues.png",
    "fidelity": "fidelity.png",
}

#: The page's own additions to the validation report's CSS: larger section figures, a
#: compact windows table.
_CSS = (
    "section .grid img{width:600px}table.windows{font-size:0.8em}"
    "table.windows td,table.windows th{padding:2px 4px}"
)

_CAPTIONS = {
    "significance": "local significance per window",
    "counts": "observed vs expected after the ranking selection",
    "full_spectrum": "spectrum of all events",
    "spectrum_best": "most significant window before/after the selections",
    "roc": "ROC per window (SR events, truth labels)",
    "sic": "SIC per window (SR events, truth labels)",
}


def _fmt(v: Any, fmt: str = ".3g") -> str:
    if v is None:
        return "&ndash;"
    if isinstance(v, bool | int | np.integer):
        return str(v)
    if isinstance(v, float | np.floating):
        return "&ndash;" if not np.isfinite(v) else format(float(v), fmt)
    return html.escape(str(v))


def _pm(v: Any, e: Any, fmt: str = ".3g") -> str:
    return _fmt(v, fmt) if e is None else f"{_fmt(v, fmt)} &plusmn; {_fmt(e, fmt)}"


def _factor(v: Any) -> str:
    """A trials factor: whole numbers from 100 on (4100, not 4.1e+03)."""
    if v is None or not np.isfinite(v):
        return "&ndash;"
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"


def _img_src(png: bytes | Path) -> str:
    data = png if isinstance(png, bytes) else Path(png).read_bytes()
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _figure(plots: Mapping[str, bytes | Path], key: str, caption: str) -> str:
    if key not in plots:
        return ""
    return (
        f"<figure><img src='{_img_src(plots[key])}' alt='{html.escape(caption)}'>"
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _best(scan: Mapping[str, Any]) -> dict[str, Any]:
    """The most significant window's entry (rank 1)."""
    for w in scan["windows"]:
        if w.get("rank") == 1:
            return w
    return scan["windows"][0]


def _where(w: Mapping[str, Any]) -> str:
    return format_window(w.get("lo"), w.get("hi"))


_NULL = "background-only pseudo-scans"


def global_headline(g: Mapping[str, Any] | None) -> str:
    """One line on the global significance of ``scan["global_significance"]`` (plain text).

    Parameters
    ----------
    g : mapping or None
        ``method`` ("pseudo-scans": trials factor measured; "bound": too few pseudo-scans
        reached the observed Z, the union bound over ``n_windows`` windows gives a lower bound
        on the global Z), ``global_significance``, ``global_p``, ``n_pseudo_scans``; None when
        no pseudo-scan ran.

    References
    ----------
    E. Gross, O. Vitells, Eur. Phys. J. C 70 (2010) 525, arXiv:1005.1891.

    Returns
    -------
    str

    Examples
    --------
    >>> global_headline({"method": "pseudo-scans", "global_significance": 3.09,
    ...                  "global_p": 1e-3, "n_pseudo_scans": 10000})
    'global Z = 3.09 (p = 0.001, 10000 background-only pseudo-scans)'
    >>> g = {"method": "bound", "global_significance": 3.72, "global_p": 1e-4,
    ...      "n_pseudo_scans": 10000, "n_windows": 10}
    >>> print(global_headline(g))  # doctest: +NORMALIZE_WHITESPACE
    global Z > 3.72 (p < 0.0001 by the union bound over 10 windows;
    10000 background-only pseudo-scans)
    >>> global_headline(None)
    'local only: no look-elsewhere correction computed'
    """
    if not g or g.get("global_significance") is None:
        return "local only: no look-elsewhere correction computed"
    z, p, n = g["global_significance"], g.get("global_p"), g.get("n_pseudo_scans")
    ps = "?" if p is None else f"{p:.2g}"
    if g.get("method") == "bound":
        w = g.get("n_windows")
        over = "the windows" if w is None else f"{w} windows"
        return f"global Z > {z:.2f} (p < {ps} by the union bound over {over}; {n} {_NULL})"
    return f"global Z = {z:.2f} (p = {ps}, {n} {_NULL})"


def _summary(scan: Mapping[str, Any]) -> str:
    best = _best(scan)
    g = scan.get("global_significance")
    items = [
        f"{scan['n_events']} events; score <b>{html.escape(str(scan['score']))}</b>, background "
        f"after the selection from the <b>{html.escape(str(scan['estimate']))}</b> estimate",
        f"most significant window: <b>{_where(best)}</b> with local "
        f"<b>Z = {_fmt(best.get('significance'), '.2f')}</b> at background efficiency "
        f"{scan['ranking_efficiency']:g} and <b>{html.escape(global_headline(g))}</b>",
    ]
    if g and g.get("trials_factor") is not None:
        items.append(
            f"trials factor {_factor(g['trials_factor'])}"
            + (" (union bound)" if g.get("method") == "bound" else "")
            + f": global p = local p {_fmt(g.get('local_p'), '.2g')} &times; trials factor "
            f"= {_fmt(g.get('global_p'), '.2g')}"
        )
    sp = best.get("seed_spread")
    if sp:
        items.append(
            f"seed spread of that window's Z over the ensemble's {sp.get('n_members')} members: "
            f"{_pm(sp.get('significance_mean'), sp.get('significance_std'), '.2f')} "
            f"(min {_fmt(sp.get('significance_min'), '.2f')}, "
            f"max {_fmt(sp.get('significance_max'), '.2f')})"
        )
    if best.get("max_sic") is not None or best.get("max_sic_uncapped") is not None:
        items.append(
            f"with the truth labels, that window's <b>max SIC = {_fmt(best.get('max_sic'), '.2f')}"
            f"</b> (uncapped {_fmt(best.get('max_sic_uncapped'), '.2f')}): the headline counts "
            f"only cuts passed by &ge; 20 background events (FPR &ge; "
            f"{_fmt(best.get('sic_min_fpr'), '.2g')}), the uncapped maximum goes down to one"
        )
    return "<h2>Summary</h2><ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"


def _get(w: Mapping[str, Any], key: str, sub: str) -> Any:
    d = w.get(key)
    return d.get(sub) if isinstance(d, Mapping) else None


def _auc_td(auc: Any, se: Any) -> str:
    """An AUC cell; its standard error in the tooltip (the table stays narrow)."""
    title = "" if se is None else f" title='standard error {_fmt(se, '.2g')}'"
    return f"<td{title}>{_fmt(auc, '.3f')}</td>"


def _windows_table(scan: Mapping[str, Any]) -> str:
    ws = scan["windows"]
    eff = scan["ranking_efficiency"]
    has = {k: any(w.get(k) for w in ws) for k in ("seed_spread", "fidelity", "sculpting")}
    has_sic = any(w.get("max_sic") is not None or "max_sic_uncapped" in w for w in ws)
    has_tpl = any(_get(w, "fidelity", "template_auc") is not None for w in ws)
    cols: list[tuple[str, str]] = [
        ("rank", "rank by the local significance Z at the ranking efficiency"),
        ("signal region", "signal region [lo, hi) of the resonance variable"),
        ("SR events", "events in the signal region"),
        ("SB events", "events in the two sidebands"),
        ("bkg fit in SR", "background in the SR from the dijet-function fit to the sidebands"),
        ("threshold", "score threshold at the ranking efficiency"),
        ("observed", "SR events passing the threshold"),
        ("expected", "expected background passing (the configured estimate) ± its error"),
        ("Z", "local significance with the configured estimate"),
    ]
    if has["seed_spread"]:
        cols.append(("Z spread", "standard deviation of Z over the ensemble's members (seeds)"))
    cols += [
        ("Z (template)", "Z with the template estimate"),
        ("SB closure", "sideband closure: observed / template-expected passing in the sidebands"),
        ("Z (calibrated)", "Z with the closure-calibrated template estimate"),
        ("Z (fit)", "Z with the dijet fit to the selected sidebands (diagnostic)"),
    ]
    if has["fidelity"]:
        tip = "; 0.5: indistinguishable; hover over a cell for its standard error"
        cols.append(("AUC data vs template", "out-of-fold AUC of SR data vs template" + tip))
        if has_tpl:
            what = "out-of-fold AUC of template vs the SR's true background events"
            cols.append(("AUC template vs bkg (labels)", what + tip))
    if has["sculpting"]:
        cols.append(("sculpting p", "p-value of the sculpting check (shape after vs before)"))
    if has_sic:
        cols += [
            ("max SIC (labels)", "max TPR/√FPR over cuts passed by ≥ 20 background events"),
            ("max SIC uncapped", "max TPR/√FPR over every cut (down to one background event)"),
        ]
    cols.append(("time [s]", "wall-clock seconds this window took (flows, scores, estimates)"))
    head = (
        "<tr>"
        + "".join(
            f"<th class='wrap' title='{html.escape(t, quote=True)}'>{html.escape(n)}</th>"
            for n, t in cols
        )
        + "</tr>"
    )
    rows = []
    for w in ws:
        z = w.get("significance")
        cls = " class='bad'" if (z or 0) >= 3 else (" class='warn'" if (z or 0) >= 2 else "")
        sel = next((s for s in w["selections"] if s["efficiency"] == eff), {})
        cells = [
            f"<td>{w['rank']}</td>",
            f"<td class='name'>{_where(w)}</td>",
            f"<td>{w['n_signal_region']}</td><td>{sum(w['n_sideband'])}</td>",
            f"<td>{_pm(w['n_background_fit'], w['n_background_fit_error'], '.0f')}</td>",
            f"<td>{_fmt(w['threshold'], '.3g')}</td><td>{w['n_observed']}</td>",
            f"<td>{_pm(w['n_expected'], w['n_expected_error'], '.1f')}</td>",
            f"<td{cls}>{_fmt(z, '.2f')}</td>",
        ]
        if has["seed_spread"]:
            cells.append(f"<td>{_fmt(_get(w, 'seed_spread', 'significance_std'), '.2f')}</td>")
        cells += [
            f"<td>{_fmt(sel.get('significance_template'), '.2f')}</td>",
            f"<td>{_fmt(sel.get('sideband_closure'), '.3f')}</td>",
            f"<td>{_fmt(sel.get('significance_calibrated'), '.2f')}</td>",
            f"<td>{_fmt(sel.get('significance_fit'), '.2f')}</td>",
        ]
        if has["fidelity"]:
            f = w.get("fidelity") or {}
            cells.append(_auc_td(f.get("data_template_auc"), f.get("data_template_auc_error")))
            if has_tpl:
                cells.append(_auc_td(f.get("template_auc"), f.get("template_auc_error")))
        if has["sculpting"]:
            p = _get(w, "sculpting", "p_value")
            warn = " class='warn'" if p is not None and p < 0.01 else ""
            cells.append(f"<td{warn}>{_fmt(p, '.2g')}</td>")
        if has_sic:
            cells.append(f"<td>{_fmt(w.get('max_sic'), '.2f')}</td>")
            cells.append(f"<td>{_fmt(w.get('max_sic_uncapped'), '.2f')}</td>")
        cells.append(f"<td>{_fmt(float(w.get('seconds') or 0.0), '.0f')}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f"<h2>Windows (at &epsilon;<sub>B</sub> = {eff:g})</h2>"
        + scroll(f"<table class='windows'>{head}{''.join(rows)}</table>")
        + "<p class='small'>Hover over a column header for its meaning.</p>"
    )


def _kv_table(rows: list[tuple[str, str]]) -> str:
    return (
        "<table>"
        + "".join(f"<tr><th class='name'>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
        + "</table>"
    )


def _section(key: str, title: str, body: str) -> str:
    return f"<section id='{key}'><h2>{html.escape(title)}</h2>{body}</section>"


def _global_section(g: Mapping[str, Any], plots: Mapping[str, bytes | Path]) -> str:
    q = g.get("max_z_quantiles") or {}
    bound = g.get("method") == "bound"
    rows = [
        ("method", html.escape(str(g.get("method")))),
        ("background-only pseudo-scans", _fmt(g.get("n_pseudo_scans"))),
        ("windows", _fmt(g.get("n_windows"))),
        ("observed largest local Z", _fmt(g.get("local_significance"), ".2f")),
        ("local p-value", _fmt(g.get("local_p"), ".2g")),
        ("pseudo-scans with largest Z ≥ observed", _fmt(g.get("n_exceeding"))),
        ("... with Z ≥ observed in this window", _fmt(g.get("n_exceeding_window"))),
        (
            "fraction of pseudo-scans with largest Z ≥ observed",
            _pm(g.get("global_p_pseudo_scans"), g.get("global_p_error"), ".2g"),
        ),
        ("trials factor" + (" (union bound)" if bound else ""), _factor(g.get("trials_factor"))),
        (
            ("global p-value (upper bound)" if bound else "global p-value"),
            _fmt(g.get("global_p"), ".2g"),
        ),
        (
            "global Z" + (" (lower bound)" if bound else ""),
            ("&gt; " if bound else "") + _fmt(g.get("global_significance"), ".2f"),
        ),
        ("rate of a local Z ≥ 2 in one window", _fmt(g.get("single_window_above_2"), ".3g")),
    ] + [(f"{float(k):.0%} quantile of the largest local Z", _fmt(v, ".2f")) for k, v in q.items()]
    if g.get("note"):
        rows.append(("note", html.escape(str(g["note"]))))
    text = (
        "<p>Look-elsewhere correction of the most significant window, measured with "
        "background-only pseudo-scans of the windows (Gross and Vitells): the histogram is the "
        "largest local Z of each pseudo-scan over all windows. "
        f"{html.escape(global_headline(g))}.</p>"
    )
    fig = _figure(plots, "global_significance", "largest local Z of the null pseudo-scans")
    return _section(
        "global-significance",
        "Global significance",
        text + f"<div class='grid'>{fig}{_kv_table(rows)}</div>",
    )


def _seed_section(scan: Mapping[str, Any], plots: Mapping[str, bytes | Path]) -> str:
    head = (
        "<tr><th>signal region</th><th>members</th><th>Z (ensemble)</th><th>Z mean &plusmn; "
        "std</th><th>Z min</th><th>Z max</th><th>max SIC mean &plusmn; std</th></tr>"
    )
    rows = []
    for w in scan["windows"]:
        sp = w.get("seed_spread")
        if not sp:
            continue
        rows.append(
            f"<tr><td class='name'>{_where(w)}</td><td>{_fmt(sp.get('n_members'))}</td>"
            f"<td>{_fmt(w.get('significance'), '.2f')}</td>"
            f"<td>{_pm(sp.get('significance_mean'), sp.get('significance_std'), '.2f')}</td>"
            f"<td>{_fmt(sp.get('significance_min'), '.2f')}</td>"
            f"<td>{_fmt(sp.get('significance_max'), '.2f')}</td>"
            f"<td>{_pm(sp.get('max_sic_mean'), sp.get('max_sic_std'), '.2f')}</td></tr>"
        )
    text = (
        "<p>Each member of the window's ensemble (one background flow or one classifier, each "
        "with its own seed) scored alone, with the ensemble's selection and estimate: the "
        "spread of their local Z is how much one seed alone would vary; the ensemble averages "
        "them (CATHODE).</p>"
    )
    fig = _figure(plots, "seed_spread", "members' Z per window (ensemble Z: red bar)")
    return _section(
        "seed-spread",
        "Seed spread",
        text
        + f"<div class='grid'>{fig}{scroll(f'<table>{head}{chr(10).join(rows)}</table>')}</div>",
    )


def _sculpting_section(
    w: Mapping[str, Any], resonance: str, plots: Mapping[str, bytes | Path]
) -> str:
    sc = w["sculpting"]
    p = sc.get("p_value")
    verdict = (
        "the selection changes the shape (p &lt; 0.01): a bump may be sculpted"
        if p is not None and p < 0.01
        else "no significant change of shape"
    )
    rows = [
        ("window", _where(w)),
        ("events", html.escape(str(sc.get("events")))),
        ("selection", f"tightest: &epsilon;<sub>B</sub> = {_fmt(sc.get('efficiency'), 'g')}"),
        ("events before / after", f"{_fmt(sc.get('n_before'))} / {_fmt(sc.get('n_after'))}"),
        ("test", html.escape(str(sc.get("test")))),
        ("statistic", _fmt(sc.get("statistic"), ".3g")),
        ("p-value", _fmt(p, ".3g")),
    ]
    text = (
        f"<p>Does the selection sculpt a bump into the background (LaCATHODE)? The "
        f"{html.escape(resonance)} spectrum of background events before and after the "
        f"tightest selection of the most significant window, as normalised shapes: {verdict}."
        "</p>"
    )
    fig = _figure(plots, "sculpting", f"{resonance} shape before/after the tightest selection")
    return _section(
        "sculpting", "Sculpting check", text + f"<div class='grid'>{fig}{_kv_table(rows)}</div>"
    )


def _pvalues_section(w: Mapping[str, Any], plots: Mapping[str, bytes | Path]) -> str:
    pv = w["pvalues"]
    rows = [
        ("window", _where(w)),
        ("SR events histogrammed", _fmt(pv.get("n_events", int(sum(pv.get("counts") or []))))),
        ("samples per event K", _fmt(pv.get("n_samples"))),
        ("resolution", _fmt(pv.get("resolution"), ".2g")),
        ("KS p, uniformity (all events)", _fmt(pv.get("ks_p"), ".3g")),
        ("KS p, uniformity (true background)", _fmt(pv.get("ks_p_background"), ".3g")),
        ("fraction with p ≤ 0.01", _fmt(pv.get("fraction_below_0.01"), ".3g")),
    ]
    text = (
        "<p>Each signal-region event's likelihood p-value under the background model, "
        "P(log p(X | m) &le; log p(x | m)), estimated from K samples of the model at the event's "
        f"m (resolution {_fmt(pv.get('resolution'), '.2g')}). For background and a faithful "
        "model the histogram is flat; signal piles up near 0.</p>"
    )
    fig = _figure(plots, "pvalues", "likelihood p-values of the SR events")
    return _section(
        "pvalues",
        "Per-event likelihood p-values",
        text + f"<div class='grid'>{fig}{_kv_table(rows)}</div>",
    )


def _fidelity_section(scan: Mapping[str, Any], plots: Mapping[str, bytes | Path]) -> str:
    fids = [(w, w["fidelity"]) for w in scan["windows"] if w.get("fidelity")]
    tpl = [(w, f) for w, f in fids if f.get("template_auc") is not None]
    text = (
        "<p>Out-of-fold AUC of a classifier (the scan's xgboost settings) between the SR data "
        "and the background template, and, with the truth labels, between the template and "
        "the SR's true background events. 0.5: the classifier cannot tell them apart; the band "
        "is 0.5 &plusmn; 2 standard errors. Data vs template exceeds 0.5 where there is a "
        "signal; template vs true background measures the template's own mismatch, which the "
        "CATHODE classifier would otherwise learn.</p>"
    )
    if tpl:
        w, f = max(tpl, key=lambda t: t[1]["template_auc"])
        auc = _pm(f["template_auc"], f.get("template_auc_error"), ".3f")
        text += (
            f"<p>Largest template-vs-background AUC: <b>{auc}</b> in {_where(w)} "
            f"({_fmt(f.get('n_template'))} template, {_fmt(f.get('n_background'))} background "
            "events).</p>"
        )
    fig = _figure(plots, "fidelity", "template fidelity per window")
    return _section("fidelity", "Template fidelity", text + f"<div class='grid'>{fig}</div>")


def render_scan_html(
    scan: Mapping[str, Any],
    plots: Mapping[str, bytes | Path],
    inputs: Mapping[str, Any] | None = None,
) -> str:
    """The report page for a ``scan.json`` dict and its plots.

    Parameters
    ----------
    scan : mapping
        The content of ``scan.json`` (:meth:`~hepgen.anomaly.scan.ScanResult.to_dict`, made
        JSON-safe); the keys added with issue 22 (``global_significance``, per window
        ``fidelity``, ``seed_spread``, ``sculpting``, ``pvalues``, ``max_sic_uncapped``) may be
        missing or None: their columns and sections are then left out.
    plots : mapping of str to bytes or Path
        PNG images by the keys of :data:`PLOT_FILES` (any may be missing).
    inputs : mapping or None
        Shown in the report header (config, files, command).

    Returns
    -------
    str
        A self-contained HTML page.

    Examples
    --------
    >>> sel = {"efficiency": 0.01, "significance_template": 1.0, "sideband_closure": 1.0,
    ...        "significance_calibrated": 1.0, "significance_fit": None}
    >>> w = {"rank": 1, "lo": 2.5 + 4 * 0.2, "hi": 3.7, "n_signal_region": 900,
    ...      "n_sideband": [500, 400], "n_background_fit": 880.0, "n_background_fit_error": 9.0,
    ...      "threshold": 0.3, "n_observed": 12, "n_expected": 9.0, "n_expected_error": 1.0,
    ...      "significance": 0.9, "selections": [sel], "seconds": 4.0}
    >>> scan = {"n_events": 2000, "score": "cathode", "estimate": "calibrated",
    ...         "ranking_efficiency": 0.01, "windows": [w]}
    >>> page = render_scan_html(scan, {})
    >>> "[3.3, 3.7)" in page, "local only" in page, "time [s]" in page
    (True, True, True)
    """
    title = "hepgen resonance scan"
    out = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{CSS}{_CSS}</style></head><body><h1>{title}</h1>"
    ]
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out.append(f"<p class='small'>hepgen {__version__}, {stamp}</p><table>")
    for k, v in (inputs or {}).items():
        out.append(
            f"<tr><th class='name'>{html.escape(str(k))}</th>"
            f"<td class='name'>{html.escape(str(v))}</td></tr>"
        )
    out.append("</table>")
    out.append(_summary(scan))
    out.append(_windows_table(scan))
    best = _best(scan)
    resonance = str(scan.get("resonance") or "m")
    if scan.get("global_significance"):
        out.append(_global_section(scan["global_significance"], plots))
    if any(w.get("seed_spread") for w in scan["windows"]):
        out.append(_seed_section(scan, plots))
    if best.get("sculpting"):
        out.append(_sculpting_section(best, resonance, plots))
    if best.get("pvalues"):
        out.append(_pvalues_section(best, plots))
    if any(w.get("fidelity") for w in scan["windows"]):
        out.append(_fidelity_section(scan, plots))
    out.append("<h2>Plots</h2><div class='grid'>")
    out += [_figure(plots, key, caption) for key, caption in _CAPTIONS.items()]
    out.append("</div>")
    notes = list(scan.get("notes") or [])
    for w in scan["windows"]:
        notes += [f"{_where(w)}: {n}" for n in w.get("notes") or []]
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
    """Write ``scan.json``, the plots and ``report.html`` into ``directory``.

    Everything is drawn in memory first; then each file is written atomically, the plots,
    ``scan.json``, and ``report.html`` last.  Plot files of an earlier report that this one
    does not have (a section without data) are removed.  Nothing is printed.

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
        ``scan_json``, ``report_html`` and each plot (keys of :data:`PLOT_FILES`).

    Examples
    --------
    >>> import tempfile
    >>> from hepgen.anomaly.scan import ScanSettings, Window, WindowResult
    >>> sel = {"efficiency": 0.01, "threshold": 0.3, "n_observed": 5, "n_expected": 4.0,
    ...        "n_expected_error": 1.0, "significance": 0.4}
    >>> w = WindowResult(Window(3.3, 3.7, 2.9, 4.1), 100, (60, 40), 98.0, 5.0, [sel], 0.01,
    ...                  "calibrated")
    >>> rng = np.random.default_rng(0)
    >>> w.arrays = {"m_sr": rng.uniform(3.3, 3.7, 100), "score_sr": rng.normal(size=100),
    ...             "m_sideband": rng.uniform(2.9, 3.3, 100), "score_sideband": np.zeros(100)}
    >>> settings = ScanSettings(resonance={"name": "mjj"}, features=[{"name": "x"}],
    ...                         start=3.3, stop=3.7, width=0.4, step=0.2, sideband=0.4,
    ...                         efficiencies=[0.01])
    >>> result = ScanResult(settings, [w], n_events=200, has_labels=False)
    >>> files = write_scan_report(result, tempfile.mkdtemp())
    >>> sorted(files)
    ['counts', 'report_html', 'scan_json', 'significance', 'spectrum_best']
    """
    out = Path(directory)
    scan = to_jsonable(result.to_dict())
    plots = rp.draw_plots(result, scan, m)
    page = render_scan_html(scan, plots, inputs or {})
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for key, png in plots.items():
        files[key] = atomic_write_bytes(out / PLOT_FILES[key], png)
    for key, name in PLOT_FILES.items():
        if key not in plots:
            (out / name).unlink(missing_ok=True)
    files["scan_json"] = write_json(out / "scan.json", scan)
    files["report_html"] = atomic_write_text(out / "report.html", page)
    return files
