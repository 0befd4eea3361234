"""Report figures: per-feature histograms with ratio panels, correlation differences, ROC curves.

Histograms are filled with :mod:`hist` (weighted storage, so the error bars are sqrt(sum w^2))
and drawn with :mod:`mplhep` in the experiment-neutral ROOT style or an experiment's (keyword
``style``, see :mod:`hepgen.validation.report.style`).  Every figure is drawn on a detached
:class:`~matplotlib.figure.Figure` inside a style context, so that neither pyplot's figure
list nor the caller's global style (nor a notebook's backend) changes, and written atomically
(temporary file + rename) as PNG; the functions return the path written.  Axis labels carry
units (``units``, see :mod:`hepgen.validation.report.units`).

Speed: a figure is drawn once (fixed margins instead of ``bbox_inches="tight"``, which draws
it twice), and the display range of a feature comes from quantiles of a seeded subsample of at
most :data:`QUANTILE_ROWS` rows, not of all 2M values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import hist
import matplotlib
import matplotlib.style
import matplotlib.ticker
import numpy as np
from matplotlib.figure import Figure

from hepgen.validation.report.correlation import (
    plot_correlation_difference,
    weighted_correlation,
)
from hepgen.validation.report.style import experiment_label, save_png, series_style, styled
from hepgen.validation.report.units import axis_label

__all__ = [
    "plot_conditional",
    "plot_correlation_difference",
    "plot_edges",
    "plot_feature",
    "plot_prd",
    "plot_roc",
    "plot_tradeoff",
    "weighted_correlation",
]

REFERENCE_STYLE = {"color": "black", "label": "reference"}
CANDIDATE_STYLE = {"color": "tab:red", "label": "candidate"}


#: Rows of each sample used for the display-range quantiles (seeded subsample above it).
QUANTILE_ROWS = 200_000


def _subsample(values: np.ndarray, rows: int = QUANTILE_ROWS, seed: int = 0) -> np.ndarray:
    """At most ``rows`` values of ``values`` (seeded uniform subsample without replacement)."""
    if values.size <= rows:
        return values
    return values[np.random.default_rng(seed).integers(0, values.size, rows)]


def plot_edges(
    reference: np.ndarray, candidate: np.ndarray, integer: bool | None = None, bins: int = 50
) -> tuple[np.ndarray, bool]:
    """Display binning for a feature: ``(edges, log_x)``.

    The test binning (reference quantiles, :func:`~hepgen.validation.univariate.histogram_edges`)
    is right for chi2 but unreadable on a plot; here the range is the pooled 0.1-99.9 %
    quantiles (of at most :data:`QUANTILE_ROWS` seeded rows per sample; values outside land in
    the first/last bin), with one bin per integer for integer features with at most 80 values
    in range, logarithmic bins for positive features whose range spans more than a factor 20,
    and ``bins`` uniform bins otherwise.

    Parameters
    ----------
    reference, candidate : np.ndarray
        Finite values, shapes (n,) and (m,), in the feature's unit.
    integer : bool or None
        Whether the feature holds integers (None: look at the values).
    bins : int
        Number of bins of a continuous feature.

    Returns
    -------
    (np.ndarray, bool)
        Edges, shape (k + 1,), and whether the x axis should be logarithmic.

    References
    ----------
    D. W. Scott, "Multivariate Density Estimation", Wiley (1992), ch. 3 (histogram binning).

    Examples
    --------
    >>> edges, log_x = plot_edges(np.arange(10.0), np.arange(10.0))
    >>> len(edges), log_x
    (11, False)
    """
    pooled = np.concatenate([_subsample(reference), _subsample(candidate, seed=1)])
    lo, hi = np.quantile(pooled, [0.001, 0.999])
    if hi <= lo:
        lo = float(min(reference.min(), candidate.min()))
        hi = float(max(reference.max(), candidate.max()))
    if hi <= lo:
        return np.array([lo - 0.5, lo + 0.5]), False
    if integer is None:
        integer = bool(np.all(pooled == np.round(pooled)))
    if integer and hi - lo <= 80:
        return np.arange(np.floor(lo) - 0.5, np.ceil(hi) + 1.0), False
    if lo > 0 and hi / lo > 20:
        return np.geomspace(lo, hi, bins + 1), True
    return np.linspace(lo, hi, bins + 1), False


def _axis(edges: np.ndarray) -> Any:
    """A :mod:`hist` axis of ``edges``: regular (or regular in log) when the edges are, which
    fills several times faster than a variable axis at 1M values."""
    n = len(edges) - 1
    opts = {"underflow": False, "overflow": False}
    if n >= 1 and np.allclose(np.diff(edges), (edges[-1] - edges[0]) / n, rtol=1e-9, atol=0):
        return hist.axis.Regular(n, edges[0], edges[-1], **opts)
    if n >= 1 and edges[0] > 0:
        logs = np.log(edges)
        if np.allclose(np.diff(logs), (logs[-1] - logs[0]) / n, rtol=1e-9, atol=0):
            # (a transformed axis keeps its flow bins: empty here, the values are clipped)
            return hist.axis.Regular(n, edges[0], edges[-1], transform=hist.axis.transform.log)
    return hist.axis.Variable(edges, **opts)


def _filled(values: np.ndarray, weights: np.ndarray | None, edges: np.ndarray) -> hist.Hist:
    h = hist.Hist(_axis(edges), storage=hist.storage.Weight())
    # Under- and overflow go into the first and last bins so that nothing is hidden.
    h.fill(np.clip(values, edges[0], np.nextafter(edges[-1], -np.inf)), weight=weights)
    return h


#: Half-range of the ratio panel around 1: at least this, at most :data:`RATIO_CAP`.
RATIO_FLOOR = 0.1
RATIO_CAP = 1.0
_NICE = (0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0)


def ratio_range(
    ratio: np.ndarray, error: np.ndarray, entries: np.ndarray | None = None, min_entries: int = 25
) -> float:
    """Half-range ``h`` of a ratio panel drawn over ``[1 - h, 1 + h]``.

    The 95th percentile of ``|ratio - 1| + error`` over the bins with at least
    ``min_entries`` reference entries (all finite bins when none has), enlarged by 10 % and
    rounded up to a round number in ``[RATIO_FLOOR, RATIO_CAP]``; bins beyond are drawn as
    arrows at the edge.

    Parameters
    ----------
    ratio, error : np.ndarray
        Candidate/reference ratio per bin and its error, shape (k,); NaN where undefined.
    entries : np.ndarray or None
        Reference entries (or effective entries) per bin, shape (k,).
    min_entries : int
        Bins with fewer entries do not set the range.

    Returns
    -------
    float

    References
    ----------
    ROOT's ``TRatioPlot`` (ratio panels of HEP histograms): https://root.cern/doc/master/classTRatioPlot.html

    Examples
    --------
    >>> ratio_range(np.array([1.02, 0.97, 1.3]), np.array([0.01, 0.01, 0.5]), np.array([900, 900, 4]))
    0.1
    >>> ratio_range(np.array([1.3, 0.8]), np.array([0.02, 0.02]))
    0.4
    """
    dev = np.abs(np.asarray(ratio, float) - 1.0) + np.nan_to_num(np.asarray(error, float))
    ok = np.isfinite(dev)
    if entries is not None and (ok & (np.asarray(entries) >= min_entries)).any():
        ok &= np.asarray(entries) >= min_entries
    if not ok.any():
        return RATIO_CAP
    want = 1.1 * float(np.quantile(dev[ok], 0.95))
    return next((h for h in _NICE if h >= want), RATIO_CAP)


@styled
def plot_feature(
    path: Path,
    name: str,
    reference: np.ndarray,
    candidate: np.ndarray,
    edges: np.ndarray,
    reference_weights: np.ndarray | None = None,
    candidate_weights: np.ndarray | None = None,
    annotation: str = "",
    log_x: bool = False,
    units: Mapping[str, str] | None = None,
) -> Path:
    """Normalised histograms of one feature with a candidate/reference ratio panel.

    Parameters
    ----------
    path : path
        PNG file to write.
    name : str
        Feature name (x-axis label, with its unit from ``units`` or inferred).
    reference, candidate : np.ndarray
        Shape (n,) and (m,), in the feature's unit.
    edges : np.ndarray
        Bin edges, shape (k + 1,); values outside go to the first/last bin.
    reference_weights, candidate_weights : np.ndarray or None
        Per-row weights.
    annotation : str
        Text drawn above the upper panel, never over the data (e.g. the KS statistic and
        p-value).
    log_x : bool
        Logarithmic x axis (for logarithmic bins, see :func:`plot_edges`).
    units : mapping or None
        ``{feature: unit}`` over the name-based default.
    style : str or None
        Keyword only: experiment style (``"CMS"``, ...), None for the neutral ROOT style.

    Returns
    -------
    Path
        The PNG written.

    References
    ----------
    mplhep histplot: https://mplhep.readthedocs.io/en/latest/api.html

    Examples
    --------
    >>> import tempfile
    >>> x = np.random.default_rng(0).normal(size=300)
    >>> out = plot_feature(Path(tempfile.mkdtemp()) / "x.png", "x", x, x + 0.1, plot_edges(x, x)[0])
    >>> out.stat().st_size > 0
    True
    """
    edges = np.asarray(edges, dtype=np.float64)
    fig = Figure(figsize=(6, 5.4))
    # fixed margins: one draw per figure (``bbox_inches="tight"`` draws twice)
    fig.subplots_adjust(left=0.15, right=0.97, top=0.86, bottom=0.12)
    ax, rax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.05})
    h_ref = _filled(reference, reference_weights, edges)
    h_cand = _filled(candidate, candidate_weights, edges)
    width = np.diff(edges)
    out = {}
    for key, h in (("ref", h_ref), ("cand", h_cand)):
        total = h.values().sum()
        scale = 1.0 / (total * width) if total > 0 else np.zeros_like(width)
        out[key] = (h.values() * scale, np.sqrt(np.maximum(h.variances(), 0)) * scale)
    ref_v, ref_e = out["ref"]
    cand_v, cand_e = out["cand"]
    centres = 0.5 * (edges[1:] + edges[:-1])
    ax.stairs(
        ref_v, edges, baseline=None, color=REFERENCE_STYLE["color"], label=REFERENCE_STYLE["label"]
    )
    ax.errorbar(
        centres, cand_v, yerr=cand_e, fmt="o", markersize=3, elinewidth=1, **CANDIDATE_STYLE
    )
    positive = ref_v[ref_v > 0]
    if positive.size and positive.max() / positive.min() > 1e3:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    ax.set_ylabel("normalised density")
    ax.legend(loc="best", fontsize=10)
    experiment_label(ax)
    if annotation:
        # above the axes, right-aligned: never over the data (the experiment label is left)
        ax.text(1.0, 1.02, annotation, transform=ax.transAxes, ha="right", va="bottom",
                fontsize=9)  # fmt: skip
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(ref_v > 0, cand_v / ref_v, np.nan)
        ratio_err = np.where(
            ref_v > 0, np.sqrt((cand_e / ref_v) ** 2 + (cand_v * ref_e / ref_v**2) ** 2), np.nan
        )
        # effective reference entries per bin: (sum w)^2 / sum w^2
        entries = np.where(h_ref.variances() > 0, h_ref.values() ** 2 / h_ref.variances(), 0.0)
    half = ratio_range(ratio, ratio_err, entries)
    lo, hi = 1.0 - half, 1.0 + half
    inside = (ratio >= lo) & (ratio <= hi)
    rax.errorbar(centres[inside], ratio[inside], yerr=ratio_err[inside], fmt="o",
                 color="tab:red", markersize=3, elinewidth=1)  # fmt: skip
    pad = 0.04 * (hi - lo)
    for mask, y, marker in ((ratio > hi, hi - pad, "^"), (ratio < lo, lo + pad, "v")):
        if mask.any():
            rax.plot(centres[mask], np.full(mask.sum(), y), ls="none", marker=marker,
                     color="tab:red", markersize=6)  # fmt: skip
    rax.axhline(1.0, color="black", lw=1)
    rax.set_ylim(lo, hi)
    rax.set_ylabel("cand./ref.")
    rax.set_xlabel(axis_label(name, units))
    if log_x:
        rax.set_xscale("log")
        # labels at 1, 2, 5 x 10^k (a bare "10^2" is all the default shows over a decade)
        rax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        rax.xaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:g}"))
        rax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    return save_png(fig, path)


@styled
def plot_roc(path: Path, curves: Sequence[tuple[str, Any, Any, float]]) -> Path:
    """ROC curves of the classifier test: ``curves`` = [(label, fpr, tpr, auc), ...].

    Parameters
    ----------
    path : path
        PNG file to write.
    curves : sequence of (str, array, array, float)
        Label, false and true positive rates (each shape (k,), in [0, 1]) and AUC.
    style : str or None
        Keyword only: experiment style.

    Returns
    -------
    Path

    References
    ----------
    D. Lopez-Paz and M. Oquab, "Revisiting classifier two-sample tests", ICLR 2017.

    Examples
    --------
    >>> import tempfile
    >>> plot_roc(Path(tempfile.mkdtemp()) / "r.png", [("c", [0, 1], [0, 1], 0.5)]).name
    'r.png'
    """
    fig = Figure(figsize=(5.5, 5.2))
    fig.subplots_adjust(left=0.16, right=0.96, top=0.9, bottom=0.13)
    ax = fig.subplots()
    for (label, fpr, tpr, auc), color in zip(
        curves, ["tab:red", "tab:gray", "tab:blue"], strict=False
    ):
        ax.plot(fpr, tpr, color=color, label=f"{label} (AUC {auc:.4f})")
    ax.plot([0, 1], [0, 1], color="black", ls=":", lw=1, label="no separation")
    ax.set_xlabel("false positive rate (reference)")
    ax.set_ylabel("true positive rate (candidate)")
    ax.legend(loc="lower right", fontsize=10)
    experiment_label(ax)
    return save_png(fig, path)


@styled
def plot_prd(path: Path, curves: Sequence[tuple[str, Any, Any, str]]) -> Path:
    """PRD curves (precision vs recall of distributions), ``curves`` = [(label, precision,
    recall, summary), ...], e.g. candidate vs reference beside reference vs reference.

    Parameters
    ----------
    path : path
        PNG file to write.
    curves : sequence of (str, array, array, str)
        Label, precision and recall (shape (k,), in [0, 1]) and a summary for the legend
        (e.g. ``"F8 0.97, F1/8 0.95"``).
    style : str or None
        Keyword only: experiment style.

    Returns
    -------
    Path

    References
    ----------
    M. S. M. Sajjadi et al., "Assessing generative models via precision and recall",
    NeurIPS 2018, arXiv:1806.00035.

    Examples
    --------
    >>> import tempfile
    >>> p = np.linspace(1, 0, 11); r = p[::-1]
    >>> plot_prd(Path(tempfile.mkdtemp()) / "p.png", [("c", p, r, "")]).name
    'p.png'
    """
    fig = Figure(figsize=(5.5, 5.2))
    fig.subplots_adjust(left=0.16, right=0.96, top=0.9, bottom=0.13)
    ax = fig.subplots()
    for (label, precision, recall, summary), color, ls in zip(
        curves, ["tab:red", "tab:gray", "tab:blue"], ["-", "--", ":"], strict=False
    ):
        text = f"{label} ({summary})" if summary else label
        ax.plot(recall, precision, color=color, ls=ls, lw=2, label=text)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(r"recall $\beta$ (reference covered)")
    ax.set_ylabel(r"precision $\alpha$ (candidate on reference)")
    ax.legend(loc="lower left", fontsize=9)
    experiment_label(ax)
    return save_png(fig, path)


@styled
def plot_conditional(
    path: Path, variable: str, entry: dict[str, Any], units: Mapping[str, str] | None = None
) -> Path:
    """KS statistic of every feature in each bin of ``variable`` (from ``compare``'s JSON).

    One colour, marker and line style per feature (:func:`series_style`), the legend outside
    the axes on the right.

    Parameters
    ----------
    path : path
        PNG file to write.
    variable : str
        The condition variable (x axis: its bins, with unit).
    entry : dict
        ``{"bins": [{"lo", "hi", "features": {name: {"ks": {"statistic"}}}}]}``.
    units : mapping or None
        ``{feature: unit}`` over the name-based default.
    style : str or None
        Keyword only: experiment style.

    Returns
    -------
    Path

    References
    ----------
    A. N. Kolmogorov (1933); N. Smirnov (1948): the two-sample KS statistic.

    Examples
    --------
    >>> import tempfile
    >>> e = {"bins": [{"lo": 0, "hi": 1, "features": {"a": {"ks": {"statistic": 0.1}}}}]}
    >>> plot_conditional(Path(tempfile.mkdtemp()) / "k.png", "v", e).name
    'k.png'
    """
    bins = entry["bins"]
    centres = np.arange(len(bins))
    names: list[str] = []
    for b in bins:
        for n in b.get("features") or {}:
            if n not in names:
                names.append(n)
    ncol = 1 if len(names) <= 16 else 2
    fig = Figure(figsize=(6.0 + 2.4 * ncol, 4.6), layout="constrained")
    ax = fig.subplots()
    for i, name in enumerate(names):
        ks = [((b.get("features") or {}).get(name) or {}).get("ks") or {} for b in bins]
        y = [np.nan if k.get("statistic") is None else k["statistic"] for k in ks]
        ax.plot(centres, y, label=name, markersize=5, lw=1.3, **series_style(i))
    unit = axis_label(variable, units)[len(variable) :]
    ax.set_xticks(
        centres,
        labels=[f"[{b['lo']:.3g}, {b['hi']:.3g})" for b in bins],
        rotation=30,
        ha="right",
        fontsize=9,
    )
    ax.minorticks_off()
    ax.set_xlabel(f"bin of {variable}{unit}")
    ax.set_ylabel("KS statistic")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, ncol=ncol, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    experiment_label(ax)
    return save_png(fig, path)


def _tradeoff_positions(knob: str, values: Sequence[float | None]) -> tuple[np.ndarray, list[str]]:
    """x positions and tick labels of a trade-off's knob values: a number at its value;
    ``None`` (as trained) at 1 for a temperature, and one step right of the largest threshold
    for a truncation (psi -> infinity is no truncation), labelled "none"."""
    finite = sorted(float(v) for v in values if v is not None)
    if knob == "temperature":
        none_at = 1.0
    elif finite:
        step = float(np.median(np.diff(finite))) if len(finite) > 1 else 0.5 * finite[0]
        none_at = finite[-1] + max(step, 0.1 * finite[-1])
    else:
        none_at = 1.0
    xs = np.array([none_at if v is None else float(v) for v in values])
    labels = ["none" if v is None else f"{float(v):g}" for v in values]
    return xs, labels


@styled
def plot_tradeoff(path: Path, entry: dict[str, Any]) -> Path:
    """Precision and recall (left), density and coverage (right) against the knob value of
    a sampling trade-off (the ``tradeoff`` entry of ``metrics.json``), with the
    reference-vs-reference baseline as dashed lines and the trained setting marked.

    Parameters
    ----------
    path : path
        PNG file to write.
    entry : dict
        ``{"knob", "values", "precision", "recall", "density", "coverage", "baseline",
        "as_trained"}``.
    style : str or None
        Keyword only: experiment style.

    Returns
    -------
    Path

    References
    ----------
    M. F. Naeem et al., "Reliable fidelity and diversity metrics for generative models",
    ICML 2020, arXiv:2002.09797.

    Examples
    --------
    >>> import tempfile
    >>> e = {"knob": "temperature", "values": [0.5, None], "precision": [0.9, 0.8],
    ...      "recall": [0.7, 0.8], "density": [1.0, 0.9], "coverage": [0.8, 0.9]}
    >>> plot_tradeoff(Path(tempfile.mkdtemp()) / "t.png", e).name
    't.png'
    """
    knob = entry["knob"]
    xs, labels = _tradeoff_positions(knob, entry["values"])
    order = np.argsort(xs, kind="stable")
    fig = Figure(figsize=(11, 4.3))
    axes = fig.subplots(1, 2)
    symbol = r"$\psi$" if knob == "truncation" else "$T$"
    base = entry.get("baseline") or {}
    panels = (
        (
            axes[0],
            (("precision", "tab:blue", "o"), ("recall", "tab:red", "s")),
            "precision (fidelity), recall (diversity)",
        ),
        (
            axes[1],
            (("density", "tab:green", "^"), ("coverage", "tab:purple", "D")),
            "density, coverage",
        ),
    )
    trained = entry.get("as_trained")
    for ax, metrics, ylabel in panels:
        for name, color, marker in metrics:
            ys = np.asarray(entry[name], dtype=float)
            ax.plot(xs[order], ys[order], marker=marker, color=color, label=name)
            if base.get(name) is not None:
                ax.axhline(base[name], color=color, ls="--", lw=1, label=f"{name}, ref. vs ref.")
        if trained is not None:
            ax.axvline(xs[trained], color="0.5", ls=":", lw=1.5)
            ax.text(
                xs[trained],
                0.02,
                " as trained",
                transform=ax.get_xaxis_transform(),
                color="0.4",
                fontsize=9,
                rotation=90,
                va="bottom",
                ha="right",
            )
        ax.set_xticks(xs, labels=labels)
        ax.margins(x=0.06)
        ax.set_xlabel(f"{knob} {symbol}")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8, loc="best")
    axes[0].set_ylim(0.0, 1.05)
    tops = [float(np.max(entry[m])) for m in ("density", "coverage")]
    tops += [base[m] for m in ("density", "coverage") if base.get(m) is not None]
    axes[1].set_ylim(0.0, max(1.05, 1.08 * max(tops)))
    return save_png(fig, path, tight=True)
