"""The plots of a scan report (:mod:`hepgen.anomaly.report`), each rendered to PNG bytes.

Every function draws one figure on a detached :class:`~matplotlib.figure.Figure` in mplhep's
ROOT style and returns the PNG: neither pyplot's figure list, nor the global
style, nor the logging or warning filters of the process change.  Labels use plain Unicode
(``√``, ``±``) rather than mathtext beyond a subscript: under the ROOT style's mathtext fonts
``$\\sqrt{...}$`` logged ``No TeX to Unicode mapping for '\\__radicalbig__'`` to the
terminal; font messages still logged while drawing (glyph substitutions, ``findfont``) are
dropped by a filter that exists only during the call.

The scan-wide plots take a :class:`~hepgen.anomaly.scan.ScanResult`; those of the sections
added with the global significance, the seed spread, the sculpting check, the per-event
p-values and the template fidelity take the ``scan.json`` dict (plain JSON, ``None`` where
a number is missing), so a report can be redrawn from ``scan.json`` alone.
"""

from __future__ import annotations

import functools
import io
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import hist
import matplotlib
import matplotlib.pyplot as plt
import mplhep
import numpy as np
from matplotlib.figure import Figure

from hepgen.anomaly.scan import ScanResult, WindowResult

__all__ = [
    "EPS_B",
    "draw_plots",
    "format_edge",
    "format_window",
    "plot_fidelity",
    "plot_global",
    "plot_pvalues",
    "plot_sculpting",
    "plot_seed_spread",
]

#: The background efficiency's symbol in plot labels (a plain subscript, which mathtext draws
#: from the label font itself).
EPS_B = r"$\epsilon_B$"

#: Loggers whose font messages are dropped while a plot is drawn.
_FONT_LOGGERS = ("matplotlib.mathtext", "matplotlib._mathtext", "matplotlib.font_manager")


def format_edge(v: float | None) -> str:
    """A window edge without binary-rounding noise (6 significant digits).

    Parameters
    ----------
    v : float or None
        The edge (units of the resonance variable).

    Returns
    -------
    str

    Examples
    --------
    >>> format_edge(2.5 + 4 * 0.2), format_edge(3.7), format_edge(None)
    ('3.3', '3.7', '?')
    """
    return "?" if v is None else f"{float(v):.6g}"


def format_window(lo: float | None, hi: float | None) -> str:
    """``[lo, hi)`` of a signal region, edges by :func:`format_edge`.

    Examples
    --------
    >>> format_window(2.5 + 4 * 0.2, 3.7)
    '[3.3, 3.7)'
    """
    return f"[{format_edge(lo)}, {format_edge(hi)})"


@contextmanager
def _quiet_fonts() -> Iterator[None]:
    """Within the block, matplotlib's font messages reach neither the log nor the terminal;
    the filters are removed afterwards (the process's logging is as it was)."""

    def flt(record: logging.LogRecord) -> bool:  # below ERROR: glyph substitutions, findfont
        return record.levelno >= logging.ERROR

    loggers = [logging.getLogger(name) for name in _FONT_LOGGERS]
    for lg in loggers:
        lg.addFilter(flt)
    try:
        with warnings.catch_warnings():
            # "Glyph ... missing from font(s)" of a label character the font lacks
            warnings.filterwarnings(
                "ignore", message=r"Glyph \d+ .*missing from", module="matplotlib"
            )
            yield
    finally:
        for lg in loggers:
            lg.removeFilter(flt)


def _styled(plot: Callable[..., Figure]) -> Callable[..., bytes]:
    """Decorator: draw ``plot``'s figure in mplhep's ROOT style, quietly (:func:`_quiet_fonts`),
    and return it as PNG bytes (90 dpi); the style is restored afterwards and the figure is
    saved inside the block, since text is laid out only when it is drawn."""

    @functools.wraps(plot)
    def wrapper(*args: Any, **kwargs: Any) -> bytes:
        with (
            _quiet_fonts(),
            plt.style.context(mplhep.style.ROOT),
            matplotlib.rc_context({"font.size": 12, "axes.labelsize": 14, "legend.fontsize": 10}),
        ):
            fig = plot(*args, **kwargs)
            buf = io.BytesIO()
            fig.savefig(buf, dpi=90, bbox_inches="tight", format="png")
        return buf.getvalue()

    return wrapper


# ------------------------------------------------------------------------ scan-wide plots


@_styled
def _plot_significance(result: ScanResult) -> Figure:
    """Local significance per window (centre of the SR) for every efficiency."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    centres = [w.window.centre for w in result.windows]
    for k, eff in enumerate(result.settings.efficiencies):
        z = [
            next((s["significance"] for s in w.selections if s["efficiency"] == eff), None)
            for w in result.windows
        ]
        z = [np.nan if v is None else v for v in z]
        style = "o-" if eff == result.settings.ranking_efficiency else "s--"
        ax.plot(centres, z, style, label=f"{EPS_B} = {eff:g}", alpha=1.0 - 0.2 * k)
    for level in (2, 3, 5):
        ax.axhline(level, color="grey", lw=0.8, ls=":")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel(f"signal-region centre of {result.settings.resonance_name}")
    ax.set_ylabel("local significance Z")
    ax.legend()
    return fig


@_styled
def _plot_counts(result: ScanResult) -> Figure:
    """Observed and expected events after the ranking selection, per window."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    c = np.array([w.window.centre for w in result.windows])
    obs = np.array([w.headline["n_observed"] for w in result.windows], dtype=float)
    exp = np.array([w.headline["n_expected"] for w in result.windows], dtype=float)
    err = np.array([w.headline["n_expected_error"] for w in result.windows], dtype=float)
    band = np.hypot(err, np.sqrt(exp))
    ax.fill_between(
        c, exp - band, exp + band, color="tab:blue", alpha=0.25, step="mid", label="expected ± 1σ"
    )
    ax.plot(c, exp, "-", color="tab:blue", drawstyle="steps-mid")
    ax.errorbar(c, obs, yerr=np.sqrt(obs), fmt="o", color="black", label="observed")
    ax.set_xlabel(f"signal-region centre of {result.settings.resonance_name}")
    ax.set_ylabel(f"events after {EPS_B} = {result.settings.ranking_efficiency:g}")
    ax.legend()
    return fig


@_styled
def _plot_spectrum(w: WindowResult, resonance: str) -> Figure:
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
            label=f"{EPS_B} = {sel['efficiency']:g}: "
            f"{sel['n_observed']} obs / {sel['n_expected']:.1f} exp in SR",
        )
    for edge in (w.window.lo, w.window.hi):
        ax.axvline(edge, color="grey", ls="--", lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel(resonance)
    ax.set_ylabel("events / bin")
    ax.legend(fontsize=9)
    ax.set_title(f"window {format_window(w.window.lo, w.window.hi)}", fontsize=12)
    return fig


@_styled
def _plot_full_spectrum(m: np.ndarray, result: ScanResult) -> Figure:
    """The resonance spectrum of all events with the most significant signal region."""
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
    return fig


def _labelled(result: ScanResult) -> list[WindowResult]:
    return [w for w in result.windows if w.roc is not None]


@_styled
def _plot_roc(result: ScanResult) -> Figure:
    fig = Figure(figsize=(6, 4.5))
    ax = fig.subplots()
    for w in _labelled(result):
        ok = w.roc.fpr > 0
        ax.plot(w.roc.tpr[ok], 1.0 / w.roc.fpr[ok], label=format_window(w.window.lo, w.window.hi))
    ax.set_yscale("log")
    ax.set_xlabel("signal efficiency (TPR)")
    ax.set_ylabel("background rejection 1/FPR")
    ax.legend(fontsize=8)
    return fig


@_styled
def _plot_sic(result: ScanResult) -> Figure:
    fig = Figure(figsize=(6, 4.5))
    ax = fig.subplots()
    for w in _labelled(result):
        label = f"{format_window(w.window.lo, w.window.hi)} max {w.roc.max_sic:.2f}"
        ax.plot(w.roc.tpr, w.roc.sic, label=label)
    ax.axhline(1, color="grey", lw=0.8, ls=":")
    ax.set_xlabel("signal efficiency (TPR)")
    ax.set_ylabel("SIC = TPR/√FPR")
    ax.legend(fontsize=8)
    return fig


# ----------------------------------------------------- sections drawn from the scan.json dict


def _f(v: Any) -> float:
    """A JSON number as float (None: NaN)."""
    return float("nan") if v is None else float(v)


@_styled
def plot_global(g: dict[str, Any]) -> Figure:
    """Largest local Z of the background-only pseudo-scans (histogram), observed Z marked.

    Parameters
    ----------
    g : dict
        ``scan["global_significance"]`` (``max_z_histogram``, ``max_z_quantiles``,
        ``local_significance``, ``n_pseudo_scans``).

    Returns
    -------
    bytes
        The PNG (fraction of pseudo-scans against the largest local Z, log scale).

    References
    ----------
    E. Gross, O. Vitells, "Trial factors for the look elsewhere effect in high energy
    physics", Eur. Phys. J. C 70 (2010) 525, arXiv:1005.1891.

    Examples
    --------
    >>> g = {"n_pseudo_scans": 100, "local_significance": 3.2,
    ...      "max_z_quantiles": {"0.5": 1.5, "0.95": 2.5},
    ...      "max_z_histogram": {"edges": [0, 1, 2, 3, 4], "counts": [10, 50, 35, 5]}}
    >>> plot_global(g)[:4]
    b'\\x89PNG'
    """
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    h = g.get("max_z_histogram") or {}
    edges = np.asarray(h.get("edges") or [], dtype=float)
    counts = np.asarray(h.get("counts") or [], dtype=float)
    if edges.size >= 2 and counts.size == edges.size - 1 and counts.sum() > 0:
        frac = counts / counts.sum()
        label = f"largest local Z of {g.get('n_pseudo_scans')} pseudo-scans"
        style = {"histtype": "fill", "alpha": 0.4, "color": "tab:blue"}
        mplhep.histplot(frac, edges, ax=ax, label=label, **style)
        ax.set_yscale("log")
        ax.set_ylim(0.3 / counts.sum(), 30.0)  # headroom for the legend
        filled = np.flatnonzero(counts)
        lo, hi = edges[filled[0]], edges[filled[-1] + 1]
    colours = {"0.5": "tab:green", "0.9": "tab:olive", "0.95": "tab:orange", "0.99": "tab:purple"}
    for q, v in (g.get("max_z_quantiles") or {}).items():
        if v is not None:
            label = f"{float(q):.0%}: {v:.2f}"
            ax.axvline(v, color=colours.get(q, "grey"), ls=":", lw=1.2, label=label)
    z = _f(g.get("local_significance"))
    if np.isfinite(z):
        ax.axvline(z, color="tab:red", lw=2, label=f"observed local Z = {z:.2f}")
    if edges.size >= 2 and counts.sum() > 0:  # the filled bins and the observed Z
        span = [lo, hi, z] if np.isfinite(z) else [lo, hi]
        ax.set_xlim(min(span) - 0.5, max(span) + 0.5)
    ax.set_xlabel("largest local significance Z over the windows")
    ax.set_ylabel("fraction of pseudo-scans")
    ax.legend(fontsize=9, loc="upper left", ncol=2)
    return fig


@_styled
def plot_seed_spread(windows: Sequence[dict[str, Any]], resonance: str) -> Figure:
    """Each ensemble member's Z per window (strip plot) with the ensemble's Z marked.

    Parameters
    ----------
    windows : sequence of dict
        ``scan["windows"]`` (``lo``, ``hi``, ``significance``, ``seed_spread``).
    resonance : str
        Name of the resonance variable (x axis).

    Returns
    -------
    bytes
        The PNG (members' Z against the SR centre).

    References
    ----------
    A. Hallin et al., Phys. Rev. D 106 (2022) 055006, arXiv:2109.00546 (CATHODE's ensembles).

    Examples
    --------
    >>> w = {"lo": 3.3, "hi": 3.7, "significance": 2.1,
    ...      "seed_spread": {"significance": [1.8, 2.0, 2.5]}}
    >>> plot_seed_spread([w], "mjj")[:4]
    b'\\x89PNG'
    """
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    first = True
    for w in windows:
        sp = w.get("seed_spread")
        if not sp:
            continue
        c = 0.5 * (w["lo"] + w["hi"])
        z = np.array([_f(v) for v in sp.get("significance") or []])
        width = 0.15 * (w["hi"] - w["lo"])
        # a fixed-offset strip (not random jitter): the same scan draws the same plot
        dx = np.linspace(-width, width, z.size) if z.size > 1 else np.zeros(z.size)
        members, ensemble = ("members (one seed each)", "ensemble") if first else (None, None)
        ax.plot(c + dx, z, "o", color="tab:blue", alpha=0.6, ms=5, label=members)
        zc, x = _f(w.get("significance")), [c - 1.6 * width, c + 1.6 * width]
        ax.plot(x, [zc, zc], "-", color="tab:red", lw=2.5, label=ensemble)
        first = False
    for level in (2, 3, 5):
        ax.axhline(level, color="grey", lw=0.8, ls=":")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlabel(f"signal-region centre of {resonance}")
    ax.set_ylabel("local significance Z")
    ax.legend(fontsize=9)
    return fig


@_styled
def plot_sculpting(w: dict[str, Any], resonance: str) -> Figure:
    """Normalised resonance-variable shapes of the sculpting check's events before and after
    the tightest selection, with their ratio.

    Parameters
    ----------
    w : dict
        A ``scan["windows"]`` entry with ``sculpting`` (``edges``, ``before``, ``after``,
        ``efficiency``, ``events``).
    resonance : str
        Name (and unit) of the resonance variable (x axis).

    Returns
    -------
    bytes
        The PNG (shapes per unit of the resonance variable; ratio panel after / before).

    References
    ----------
    A. Hallin et al., "Resonant anomaly detection without background sculpting" (LaCATHODE),
    Phys. Rev. D 107 (2023) 114012, arXiv:2210.14924.

    Examples
    --------
    >>> sc = {"edges": [2.9, 3.3, 3.7, 4.1], "before": [500, 400, 300], "after": [5, 4, 3],
    ...       "efficiency": 0.01, "p_value": 0.9, "test": "chi2"}
    >>> plot_sculpting({"lo": 3.3, "hi": 3.7, "sculpting": sc}, "mjj")[:4]
    b'\\x89PNG'
    """
    sc = w["sculpting"]
    edges = np.asarray(sc["edges"], dtype=float)
    before = np.asarray(sc["before"], dtype=float)
    after = np.asarray(sc["after"], dtype=float)
    width = np.diff(edges)
    nb, na = max(before.sum(), 1.0), max(after.sum(), 1.0)
    fig = Figure(figsize=(7, 5.5))
    ax, rax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.05})
    mplhep.histplot(
        before / nb / width, edges, ax=ax, color="black", label=f"before ({int(nb)} events)"
    )
    label = f"after {EPS_B} = {_f(sc.get('efficiency')):g} ({int(after.sum())} events)"
    err = np.sqrt(after) / na / width
    mplhep.histplot(after / na / width, edges, yerr=err, ax=ax, color="tab:red", label=label)
    for edge in (w["lo"], w["hi"]):
        ax.axvline(edge, color="grey", ls="--", lw=0.8)
    ax.set_ylabel("normalised shape / unit")
    ax.legend(fontsize=9, title=f"p = {_f(sc.get('p_value')):.3g}", title_fontsize=9)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (after / na) / (before / nb)
        rerr = np.sqrt(after) / na / (before / nb)
    centres = 0.5 * (edges[1:] + edges[:-1])
    rax.errorbar(centres, ratio, yerr=rerr, fmt="o", color="tab:red", ms=3)
    rax.axhline(1, color="black", lw=0.8)
    rax.set_ylim(0, 2)
    rax.set_ylabel("after / before")
    rax.set_xlabel(resonance)
    return fig


@_styled
def plot_pvalues(w: dict[str, Any]) -> Figure:
    """Histogram of the signal-region events' likelihood p-values (all; signal and background
    separately with labels) with the flat line expected for background.

    Parameters
    ----------
    w : dict
        A ``scan["windows"]`` entry with ``pvalues`` (``edges``, ``counts``,
        ``counts_signal``, ``counts_background``, ``n_samples``, ``resolution``).

    Returns
    -------
    bytes
        The PNG (SR events per bin against the p-value, log scale).

    Examples
    --------
    >>> pv = {"edges": [0, 0.25, 0.5, 0.75, 1], "counts": [30, 20, 21, 19],
    ...       "counts_signal": None, "counts_background": None, "n_samples": 200}
    >>> plot_pvalues({"pvalues": pv})[:4]
    b'\\x89PNG'
    """
    pv = w["pvalues"]
    edges = np.asarray(pv["edges"], dtype=float)
    counts = np.asarray(pv["counts"], dtype=float)
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    n, n_sr = int(counts.sum()), w.get("n_signal_region")
    label = f"SR events ({n}" + (f" of {n_sr}, a random subset)" if n_sr and n < n_sr else ")")
    mplhep.histplot(counts, edges, ax=ax, color="black", label=label)
    sig, bkg = pv.get("counts_signal"), pv.get("counts_background")
    if bkg is not None:
        b = np.asarray(bkg, dtype=float)
        mplhep.histplot(
            b, edges, ax=ax, color="tab:blue", ls="--", label=f"background (truth, {int(b.sum())})"
        )
    if sig is not None:
        s = np.asarray(sig, dtype=float)
        label = f"signal (truth, all {int(s.sum())})"
        mplhep.histplot(s, edges, ax=ax, color="tab:red", label=label)
    flat = bkg if bkg is not None else counts
    share = np.diff(edges) / (edges[-1] - edges[0])
    label = "flat (background under a perfect model)"
    ax.stairs(float(np.sum(flat)) * share, edges, color="grey", ls=":", lw=1.5, label=label)
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.5)
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel(f"likelihood p-value (K = {pv.get('n_samples')} samples per event)")
    ax.set_ylabel("SR events / bin")
    ax.legend(fontsize=9)
    return fig


@_styled
def plot_fidelity(windows: Sequence[dict[str, Any]], resonance: str) -> Figure:
    """Template fidelity per window: AUC of data vs template and of template vs true
    background, with the 0.5 line and the ±2 standard-error band of an indistinguishable pair.

    Parameters
    ----------
    windows : sequence of dict
        ``scan["windows"]`` (``lo``, ``hi``, ``fidelity``).
    resonance : str
        Name of the resonance variable (x axis).

    Returns
    -------
    bytes
        The PNG (AUC against the SR centre).

    References
    ----------
    D. Lopez-Paz, M. Oquab, "Revisiting classifier two-sample tests", ICLR 2017,
    arXiv:1610.06545.

    Examples
    --------
    >>> f = {"data_template_auc": 0.51, "data_template_auc_error": 0.003,
    ...      "template_auc": None, "template_auc_error": None}
    >>> plot_fidelity([{"lo": 3.3, "hi": 3.7, "fidelity": f}], "mjj")[:4]
    b'\\x89PNG'
    """
    rows = [w for w in windows if w.get("fidelity")]
    c = np.array([0.5 * (w["lo"] + w["hi"]) for w in rows])
    fid = [w["fidelity"] for w in rows]
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    ax.axhline(0.5, color="black", lw=0.8)
    series = (
        ("data_template_auc", "data vs template", "tab:blue", "o", -0.04),
        ("template_auc", "template vs true background", "tab:orange", "s", 0.04),
    )
    step = float(np.min(np.diff(np.sort(c)))) if c.size > 1 else 1.0
    errs = np.array(
        [[_f(f.get(key + "_error")) for key, *_ in series] for f in fid], dtype=float
    ).reshape(len(fid), len(series))
    se = np.nanmax(np.where(np.isfinite(errs), errs, -np.inf), axis=1)
    ok = np.isfinite(se)
    if ok.any():
        # the band spans each window's step: 0.5 +- 2 SE of an indistinguishable pair
        x = np.concatenate([c[ok] - step / 2, [c[ok][-1] + step / 2]])
        band = {"fill": True, "color": "grey", "alpha": 0.25}
        label = "0.5 ± 2 SE (indistinguishable)"
        ax.stairs(0.5 + 2 * se[ok], x, baseline=0.5 - 2 * se[ok], label=label, **band)
    for key, label, colour, marker, shift in series:
        auc = np.array([_f(f.get(key)) for f in fid])
        err = np.array([_f(f.get(key + "_error")) for f in fid])
        if not np.isfinite(auc).any():
            continue
        style = {"fmt": marker, "color": colour, "ms": 5, "capsize": 2}
        ax.errorbar(c + shift * step, auc, yerr=2 * err, label=f"{label} (bars: ±2 SE)", **style)
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi + 0.45 * (hi - lo))  # room for the legend above the points
    ax.legend(fontsize=8, loc="upper left", ncol=1)
    ax.set_xlabel(f"signal-region centre of {resonance}")
    ax.set_ylabel("out-of-fold classifier AUC")
    return fig


def draw_plots(
    result: ScanResult, scan: Mapping[str, Any] | None = None, m: np.ndarray | None = None
) -> dict[str, bytes]:
    """Every plot of a scan report as PNG bytes.

    Parameters
    ----------
    result : ScanResult
    scan : mapping or None
        ``result.to_dict()`` made JSON-safe (computed when None).
    m : np.ndarray of shape (n,) or None
        The resonance variable of all events (its units), for the full spectrum.

    Returns
    -------
    dict of str to bytes
        By the keys of :data:`hepgen.anomaly.report.PLOT_FILES`: ``significance``,
        ``counts``, ``spectrum_best`` always; ``full_spectrum`` with ``m``; ``roc`` and
        ``sic`` with truth labels; one per section whose data exists
        (``global_significance``, ``seed_spread``, ``sculpting``, ``pvalues``, ``fidelity``).

    References
    ----------
    B. Nachman, D. Shih, Phys. Rev. D 101 (2020) 075042, arXiv:2001.04990 (SIC).

    Examples
    --------
    >>> from hepgen.anomaly.scan import ScanSettings, Window, WindowResult
    >>> sel = {"efficiency": 0.01, "threshold": 0.3, "n_observed": 5, "n_expected": 4.0,
    ...        "n_expected_error": 1.0, "significance": 0.4}
    >>> w = WindowResult(Window(3.3, 3.7, 2.9, 4.1), 100, (60, 40), 98.0, 5.0, [sel], 0.01,
    ...                  "calibrated")
    >>> w.arrays = {"m_sr": np.linspace(3.3, 3.7, 100), "score_sr": np.zeros(100),
    ...             "m_sideband": np.linspace(2.9, 3.3, 60), "score_sideband": np.zeros(60)}
    >>> settings = ScanSettings(resonance={"name": "mjj"}, features=[{"name": "x"}],
    ...                         start=3.3, stop=3.7, width=0.4, step=0.2, sideband=0.4,
    ...                         efficiencies=[0.01])
    >>> sorted(draw_plots(ScanResult(settings, [w], n_events=200, has_labels=False)))
    ['counts', 'significance', 'spectrum_best']
    """
    from hepgen.utils import to_jsonable

    scan = to_jsonable(result.to_dict()) if scan is None else scan
    resonance = result.settings.resonance_name
    plots: dict[str, bytes] = {
        "significance": _plot_significance(result),
        "counts": _plot_counts(result),
        "spectrum_best": _plot_spectrum(result.best, resonance),
    }
    if m is not None:
        plots["full_spectrum"] = _plot_full_spectrum(np.asarray(m, dtype=float), result)
    if any(w.roc is not None for w in result.windows):
        plots["roc"], plots["sic"] = _plot_roc(result), _plot_sic(result)
    windows = scan["windows"]
    best = next((w for w in windows if w.get("rank") == 1), windows[0])
    if scan.get("global_significance"):
        plots["global_significance"] = plot_global(scan["global_significance"])
    if any(w.get("seed_spread") for w in windows):
        plots["seed_spread"] = plot_seed_spread(windows, resonance)
    if best.get("sculpting"):
        plots["sculpting"] = plot_sculpting(best, resonance)
    if best.get("pvalues"):
        plots["pvalues"] = plot_pvalues(best)
    if any(w.get("fidelity") for w in windows):
        plots["fidelity"] = plot_fidelity(windows, resonance)
    return plots
