"""Report figures: per-feature histograms with ratio panels, correlation differences, ROC curves.

Histograms are filled with :mod:`hist` (weighted storage, so the error bars are sqrt(sum w^2))
and drawn with :mod:`mplhep` in the experiment-neutral ROOT style.  Every figure is drawn on a
detached :class:`~matplotlib.figure.Figure` inside a style context, so that neither pyplot's
figure list nor the caller's global style (nor a notebook's backend) changes, and written
atomically (temporary file + rename) as PNG; the functions return the path written.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import hist
import matplotlib
import matplotlib.style
import matplotlib.ticker
import mplhep
import numpy as np
from matplotlib.figure import Figure

from hepgen.utils import atomic_path

__all__ = [
    "plot_conditional",
    "plot_correlation_difference",
    "plot_edges",
    "plot_feature",
    "plot_roc",
    "plot_tradeoff",
    "weighted_correlation",
]

REFERENCE_STYLE = {"color": "black", "label": "reference"}
CANDIDATE_STYLE = {"color": "tab:red", "label": "candidate"}


#: Report-sized fonts on top of mplhep's ROOT style.
REPORT_FONTS = {
    "font.size": 12,
    "axes.labelsize": 14,
    "xtick.labelsize": 11,
    "ytick.labelsize": 11,
    "legend.fontsize": 11,
}

_F = TypeVar("_F", bound=Callable[..., Any])


def _styled(plot: _F) -> _F:
    """Run ``plot`` in mplhep's experiment-neutral ROOT style at report-sized fonts; the
    global ``matplotlib.rcParams`` are restored when it returns (or raises)."""

    @functools.wraps(plot)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with matplotlib.style.context(mplhep.style.ROOT), matplotlib.rc_context(REPORT_FONTS):
            return plot(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _save(fig: Figure, path: Path, dpi: int = 90) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically (inside the style context: some style
    settings apply when the figure is drawn)."""
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    return Path(path)


def plot_edges(
    reference: np.ndarray, candidate: np.ndarray, integer: bool | None = None, bins: int = 50
) -> tuple[np.ndarray, bool]:
    """Display binning for a feature: ``(edges, log_x)``.

    The test binning (reference quantiles, :func:`~hepgen.validation.univariate.histogram_edges`)
    is right for chi2 but unreadable on a plot; here the range is the pooled 0.1-99.9 %
    quantiles (values outside land in the first/last bin), with one bin per integer for
    integer features with at most 80 values in range, logarithmic bins for positive features
    whose range spans more than a factor 20, and ``bins`` uniform bins otherwise.
    """
    pooled = np.concatenate([reference, candidate])
    lo, hi = np.quantile(pooled, [0.001, 0.999])
    if hi <= lo:
        lo, hi = float(pooled.min()), float(pooled.max())
    if hi <= lo:
        return np.array([lo - 0.5, lo + 0.5]), False
    if integer is None:
        integer = bool(np.all(pooled == np.round(pooled)))
    if integer and hi - lo <= 80:
        return np.arange(np.floor(lo) - 0.5, np.ceil(hi) + 1.0), False
    if lo > 0 and hi / lo > 20:
        return np.geomspace(lo, hi, bins + 1), True
    return np.linspace(lo, hi, bins + 1), False


def _filled(values: np.ndarray, weights: np.ndarray | None, edges: np.ndarray) -> hist.Hist:
    h = hist.Hist(
        hist.axis.Variable(edges, underflow=False, overflow=False), storage=hist.storage.Weight()
    )
    # Under- and overflow go into the first and last bins so that nothing is hidden.
    h.fill(np.clip(values, edges[0], np.nextafter(edges[-1], -np.inf)), weight=weights)
    return h


@_styled
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
) -> Path:
    """Normalised histograms of one feature with a candidate/reference ratio panel.

    Parameters
    ----------
    path : path
        PNG file to write.
    name : str
        Feature name (x-axis label).
    reference, candidate : np.ndarray
        Shape (n,) and (m,).
    edges : np.ndarray
        Bin edges, shape (k + 1,); values outside go to the first/last bin.
    reference_weights, candidate_weights : np.ndarray or None
        Per-row weights.
    annotation : str
        Text drawn in the upper panel (e.g. the KS statistic and p-value).
    log_x : bool
        Logarithmic x axis (for logarithmic bins, see :func:`plot_edges`).
    """
    edges = np.asarray(edges, dtype=np.float64)
    fig = Figure(figsize=(6, 5.2))
    ax, rax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.05})
    h_ref = _filled(reference, reference_weights, edges)
    h_cand = _filled(candidate, candidate_weights, edges)
    width = np.diff(edges)
    out = {}
    for key, h in (("ref", h_ref), ("cand", h_cand)):
        total = h.values().sum()
        scale = 1.0 / (total * width) if total > 0 else np.zeros_like(width)
        out[key] = (h.values() * scale, np.sqrt(np.maximum(h.variances(), 0)) * scale)
    mplhep.histplot(
        out["ref"][0], edges, yerr=out["ref"][1], ax=ax, histtype="step", **REFERENCE_STYLE
    )
    mplhep.histplot(
        out["cand"][0],
        edges,
        yerr=out["cand"][1],
        ax=ax,
        histtype="errorbar",
        marker="o",
        markersize=3,
        **CANDIDATE_STYLE,
    )
    positive = out["ref"][0][out["ref"][0] > 0]
    if positive.size and positive.max() / positive.min() > 1e3:
        ax.set_yscale("log")
    ax.set_ylabel("normalised density")
    ax.legend(loc="best", fontsize=11)
    if annotation:
        ax.text(
            0.03,
            0.96,
            annotation,
            transform=ax.transAxes,
            va="top",
            fontsize=9,
            bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none"},
        )
    ref_v, ref_e = out["ref"]
    cand_v, cand_e = out["cand"]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(ref_v > 0, cand_v / ref_v, np.nan)
        ratio_err = np.where(
            ref_v > 0, np.sqrt((cand_e / ref_v) ** 2 + (cand_v * ref_e / ref_v**2) ** 2), np.nan
        )
    centres = 0.5 * (edges[1:] + edges[:-1])
    rax.errorbar(centres, ratio, yerr=ratio_err, fmt="o", color="tab:red", markersize=3)
    rax.axhline(1.0, color="black", lw=1)
    rax.set_ylim(0.5, 1.5)
    rax.set_ylabel("cand./ref.")
    rax.set_xlabel(name)
    if log_x:
        rax.set_xscale("log")
        rax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    return _save(fig, path)


def weighted_correlation(values: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Weighted Pearson correlation matrix, shape (d, d), of ``values`` of shape (n, d).

    Hand-written rather than ``np.cov(aweights=...)`` because sWeights can be negative, which
    numpy rejects; constant columns get correlation 0 (and 1 on the diagonal).
    """
    x = np.asarray(values, dtype=np.float64)
    w = np.ones(x.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    mean = (w[:, None] * x).sum(axis=0) / w.sum()
    xc = x - mean
    cov = (w[:, None] * xc).T @ xc / w.sum()
    sd = np.sqrt(np.clip(np.diag(cov), 0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = cov / np.outer(sd, sd)
    corr[~np.isfinite(corr)] = 0.0
    np.fill_diagonal(corr, 1.0)
    return corr


@_styled
def plot_correlation_difference(path: Path, names: Sequence[str], diff: np.ndarray) -> Path:
    """Heat map of a correlation difference ``diff`` (d, d), corr(candidate) - corr(reference).

    Use :func:`weighted_correlation` on both samples to compute it.
    """
    d = len(names)
    size = min(14.0, max(4.5, 0.45 * d + 2))
    fig = Figure(figsize=(size + 1, size))
    ax = fig.subplots()
    vmax = max(0.05, float(np.abs(diff).max()))
    im = ax.imshow(diff, cmap="RdBu_r", vmin=-vmax, vmax=vmax)
    ax.set_xticks(range(d), labels=list(names), rotation=60, ha="right", fontsize=9)
    ax.set_yticks(range(d), labels=list(names), fontsize=9)
    if d <= 14:
        for i in range(d):
            for j in range(d):
                ax.text(j, i, f"{diff[i, j]:+.3f}", ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax, label="corr(candidate) - corr(reference)")
    return _save(fig, path)


@_styled
def plot_roc(path: Path, curves: Sequence[tuple[str, Any, Any, float]]) -> Path:
    """ROC curves of the classifier test: ``curves`` = [(label, fpr, tpr, auc), ...]."""
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    for (label, fpr, tpr, auc), color in zip(
        curves, ["tab:red", "tab:gray", "tab:blue"], strict=False
    ):
        ax.plot(fpr, tpr, color=color, label=f"{label} (AUC {auc:.4f})")
    ax.plot([0, 1], [0, 1], color="black", ls=":", lw=1, label="no separation")
    ax.set_xlabel("false positive rate (reference)")
    ax.set_ylabel("true positive rate (candidate)")
    ax.legend(loc="lower right", fontsize=10)
    return _save(fig, path)


@_styled
def plot_conditional(path: Path, variable: str, entry: dict[str, Any]) -> Path:
    """KS statistic of every feature in each bin of ``variable`` (from ``compare``'s JSON)."""
    fig = Figure(figsize=(6.5, 4.5))
    ax = fig.subplots()
    bins = entry["bins"]
    centres = np.arange(len(bins))
    names: list[str] = []
    for b in bins:
        for n in b.get("features") or {}:
            if n not in names:
                names.append(n)
    for name in names:
        ks = [((b.get("features") or {}).get(name) or {}).get("ks") or {} for b in bins]
        ax.plot(centres, [k.get("statistic", np.nan) for k in ks], "o-", label=name)
    ax.set_xticks(
        centres,
        labels=[f"[{b['lo']:.3g}, {b['hi']:.3g})" for b in bins],
        rotation=30,
        ha="right",
        fontsize=9,
    )
    ax.set_xlabel(f"bin of {variable}")
    ax.set_ylabel("KS statistic")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8, ncol=2)
    return _save(fig, path)


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


@_styled
def plot_tradeoff(path: Path, entry: dict[str, Any]) -> Path:
    """Precision and recall (left), density and coverage (right) against the knob value of
    a sampling trade-off (the ``tradeoff`` entry of ``metrics.json``), with the
    reference-vs-reference baseline as dashed lines and the trained setting marked."""
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
    return _save(fig, path)
