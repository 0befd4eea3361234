"""Write a validation report directory: ``report.html``, ``metrics.json`` and ``plots/*.png``.

The directory layout is a contract (see the README): ``report.html`` is self-contained (the
plots are embedded, it opens offline), ``metrics.json`` holds the keys of
:meth:`~hepgen.validation.result.ValidationResult.to_dict`, and the plot images sit in
``plots/`` for reuse in notes and slides.  The whole folder is written atomically: it is
built as a hidden sibling and swapped in when complete (:func:`hepgen.utils.atomic_directory`),
so a reader, or a run killed half-way, sees the old report or the new one, never old plots
beside a new page; what the folder held before is replaced.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hepgen.progress import progress
from hepgen.utils import atomic_directory, atomic_write_text, write_json
from hepgen.validation.report.html import render_html
from hepgen.validation.report.plots import (
    plot_conditional,
    plot_correlation_difference,
    plot_edges,
    plot_feature,
    plot_prd,
    plot_roc,
    plot_tradeoff,
    weighted_correlation,
)
from hepgen.validation.report.style import check_style
from hepgen.validation.result import ValidationResult
from hepgen.validation.samples import Table

__all__ = ["REPORT_CONTENTS", "ReportFiles", "write_report"]

#: What a report folder holds (the folder is replaced whole by :func:`write_report`).
REPORT_CONTENTS = ("report.html", "metrics.json", "plots")

#: Most features drawn in the correlation-difference matrix.
MAX_CORRELATION_FEATURES = 30


@dataclass
class ReportFiles:
    """Paths written by :func:`write_report`."""

    directory: Path
    html: Path
    metrics: Path
    plots: dict[str, Any] = field(default_factory=dict)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "feature"


def _annotation(m: dict[str, Any]) -> str:
    parts = []
    ks = m.get("ks")
    if ks is not None:
        parts.append(
            f"KS {ks.statistic:.4f} (p {ks.pvalue:.3g})"
            if ks.pvalue is not None
            else f"KS {ks.statistic:.4f}"
        )
    chi2 = m.get("chi2")
    if chi2 is not None and chi2.ndf:
        p = f", p {chi2.pvalue:.3g}" if chi2.pvalue is not None else ""
        parts.append(f"chi2/ndf {chi2.statistic:.1f}/{chi2.ndf}{p}")
    return "\n".join(parts)


def write_report(
    directory: str | Path,
    result: ValidationResult,
    tables: Sequence[tuple[Table, Table]],
    *,
    extra: Mapping[str, Any] | None = None,
    inputs: Mapping[str, Any] | None = None,
    max_plots: int = 60,
    title: str = "hepgen validation report",
    quiet: bool = True,
    units: Mapping[str, str] | None = None,
    style: str | None = None,
) -> ReportFiles:
    """Write ``report.html``, ``metrics.json`` and ``plots/`` for a comparison.

    Parameters
    ----------
    directory : path
        Output folder (created; replaced whole, atomically: check first that it holds
        nothing else, see :func:`hepgen.validation.files.check_report_dir`).
    result : ValidationResult
        From :func:`~hepgen.validation.compare.compare` (possibly with features of several
        tables merged into it).
    tables : sequence of (Table, Table)
        Reference and candidate tables holding the compared features (for the histograms); the
        first pair is the one the multivariate tests ran on (correlation plot).
    extra : mapping or None
        More top-level keys for ``metrics.json`` (e.g. ``objects``; ``tradeoff``, from
        :meth:`~hepgen.validation.tradeoff.SamplingTradeoff.to_dict`, adds the section
        "Sampling trade-off" and ``plots/tradeoff.png``).
    inputs : mapping or None
        Shown at the top of the page (files, tree, options).
    max_plots : int
        Draw at most this many feature histograms (the first features, >= 0); a note says
        when features were left out.
    title : str
        Page title.
    quiet : bool
        Silence the progress bar.
    units : mapping or None
        ``{feature: unit}`` (e.g. ``{"Jet_pt": "GeV"}``; "" = dimensionless) over the unit
        inferred from each name (:func:`hepgen.validation.report.units.infer_unit`): axis
        labels read "Jet_pt [GeV]", and the tables give W1 with its unit.
    style : str or None
        Plot style: ``"CMS"``, ``"ATLAS"``, ``"LHCb"`` or ``"ALICE"`` (case-insensitive: the
        experiment's mplhep style and "Simulation" label), None for the neutral ROOT style.

    Returns
    -------
    ReportFiles

    Raises
    ------
    hepgen.errors.InputError
        For a bad ``max_plots``, ``units`` or ``style``.

    Notes
    -----
    ``metrics.json`` gets ``timings["plots"]`` (seconds drawing all figures) and
    ``plot_timings`` (seconds per kind: features, roc, prd, correlation, conditional,
    tradeoff).

    References
    ----------
    mplhep (experiment styles): https://mplhep.readthedocs.io

    Examples
    --------
    >>> import tempfile
    >>> from hepgen.validation.compare import compare
    >>> rng = np.random.default_rng(0)
    >>> x, y = rng.normal(size=(200, 1)), rng.normal(size=(200, 1))
    >>> res = compare(x, y, feature_names=["Jet_pt"], metrics=["ks"], baseline=False)
    >>> t = (Table(["Jet_pt"], x), Table(["Jet_pt"], y))
    >>> out = write_report(Path(tempfile.mkdtemp()) / "r", res, [t], max_plots=0, style="CMS")
    >>> sorted(p.name for p in out.directory.iterdir())
    ['metrics.json', 'plots', 'report.html']
    """
    from hepgen.errors import InputError

    if isinstance(max_plots, bool) or int(max_plots) != max_plots or max_plots < 0:
        raise InputError(f"max_plots must be an integer >= 0, got {max_plots!r}")
    style = check_style(style)
    if units is not None and not (
        isinstance(units, Mapping)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in units.items())
    ):
        raise InputError(f"units must map feature names to unit strings, got {units!r}")
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        files = _write(
            tmp,
            result,
            tables,
            extra=extra,
            inputs=inputs,
            max_plots=max_plots,
            title=title,
            quiet=quiet,
            units=units,
            style=style,
        )

    def final(path: Any) -> Any:
        if isinstance(path, dict):
            return {k: final(v) for k, v in path.items()}
        return None if path is None else directory / Path(path).relative_to(tmp)

    return ReportFiles(
        directory=directory,
        html=final(files.html),
        metrics=final(files.metrics),
        plots=final(files.plots),
    )


def _write(
    directory: Path,
    result: ValidationResult,
    tables: Sequence[tuple[Table, Table]],
    *,
    extra: Mapping[str, Any] | None,
    inputs: Mapping[str, Any] | None,
    max_plots: int,
    title: str,
    quiet: bool,
    units: Mapping[str, str] | None = None,
    style: str | None = None,
) -> ReportFiles:
    """Write the report into ``directory`` (the hidden folder that is swapped in later)."""
    plot_dir = directory / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)  # the layout holds plots/ even when empty
    metrics = result.to_dict()
    if extra:
        metrics.update(dict(extra))
    names = list(result.features)
    drawn = names[:max_plots]
    if len(names) > len(drawn):
        metrics["notes"].append(
            f"histograms drawn for the first {len(drawn)} of {len(names)} features "
            "(max_plots); all features are in the tables"
        )
    plots: dict[str, Any] = {"features": {}, "conditional": {}}
    conditional = (metrics.get("conditional") or {}).get("variables") or {}
    spent: dict[str, float] = {}

    def timed(kind: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, style=style, **kwargs)
        finally:
            spent[kind] = spent.get(kind, 0.0) + time.perf_counter() - start

    with progress(
        total=len(drawn) + 3 + len(conditional), desc="plots", unit="plot", quiet=quiet
    ) as bar:
        lookup: dict[str, tuple[Table, Table, int]] = {}
        for ref, cand in tables:
            for j, n in enumerate(ref.names):
                lookup.setdefault(n, (ref, cand, j))
        for name in drawn:
            if name in lookup:
                path = timed(
                    "features",
                    _feature_plot,
                    plot_dir,
                    name,
                    *lookup[name],
                    result.features[name],
                    units=units,
                )
                if path is not None:
                    plots["features"][name] = path
            bar.update(1)
        if result.c2st is not None and getattr(result.c2st, "fpr", None) is not None:
            plots["roc"] = timed("roc", _roc_plot, plot_dir, result)
        bar.update(1)
        if getattr(getattr(result, "prd", None), "precision", None) is not None:
            plots["prd"] = timed("prd", _prd_plot, plot_dir, result)
        bar.update(1)
        if tables and len(tables[0][0].names) >= 2:
            plots["correlation"] = timed(
                "correlation", _correlation_plot, plot_dir, *tables[0], metrics
            )
        bar.update(1)
        for var, entry in conditional.items():
            plots["conditional"][var] = timed(
                "conditional",
                plot_conditional,
                plot_dir / f"conditional_{_safe(var)}.png",
                var,
                entry,
                units=units,
            )
            bar.update(1)
        if metrics.get("tradeoff"):
            plots["tradeoff"] = timed(
                "tradeoff", plot_tradeoff, plot_dir / "tradeoff.png", metrics["tradeoff"]
            )
    metrics.setdefault("timings", {})["plots"] = round(sum(spent.values()), 4)
    metrics["plot_timings"] = {k: round(v, 4) for k, v in spent.items()}
    if units:
        metrics["units"] = dict(units)
    metrics_path = write_json(directory / "metrics.json", metrics)
    html_path = directory / "report.html"
    atomic_write_text(
        html_path, render_html(metrics, plots, title=title, inputs=inputs, units=units)
    )
    return ReportFiles(directory=directory, html=html_path, metrics=Path(metrics_path), plots=plots)


def _feature_plot(
    plot_dir: Path,
    name: str,
    ref: Table,
    cand: Table,
    j: int,
    tests: dict[str, Any],
    *,
    units: Mapping[str, str] | None = None,
    style: str | None = None,
) -> Path | None:
    """The histogram of column ``j`` of both tables (finite values), or None when a sample
    has no finite value."""
    x, y = ref.values[:, j], cand.values[:, j]
    wx, wy = ref.weights, cand.weights
    finite_x, finite_y = np.isfinite(x), np.isfinite(y)
    if not finite_x.all():  # (no copies of 1M values when all are finite)
        x, wx = x[finite_x], None if wx is None else wx[finite_x]
    if not finite_y.all():
        y, wy = y[finite_y], None if wy is None else wy[finite_y]
    if not (x.size and y.size):
        return None
    integer = True if (ref.integer[j] and cand.integer[j]) else None
    edges, log_x = plot_edges(x, y, integer=integer)
    return plot_feature(
        plot_dir / f"feature_{_safe(name)}.png",
        name,
        x,
        y,
        edges,
        wx,
        wy,
        annotation=_annotation(tests),
        log_x=log_x,
        units=units,
        style=style,
    )


def _roc_plot(plot_dir: Path, result: ValidationResult, *, style: str | None = None) -> Path:
    """ROC curves of the classifier test, with the reference-vs-reference baseline's."""
    curves = [("candidate vs reference", result.c2st.fpr, result.c2st.tpr, result.c2st.auc)]
    base = result.baseline.c2st if result.baseline is not None else None
    if base is not None and getattr(base, "fpr", None) is not None:
        curves.append(("reference vs reference", base.fpr, base.tpr, base.auc))
    return plot_roc(plot_dir / "roc.png", curves, style=style)


def _prd_plot(plot_dir: Path, result: ValidationResult, *, style: str | None = None) -> Path:
    """PRD curve of candidate vs reference beside the reference-vs-reference curve."""

    def summary(prd: Any) -> str:
        f8, f18 = getattr(prd, "f_8", None), getattr(prd, "f_1_8", None)
        return "" if f8 is None or f18 is None else f"F8 {f8:.3f}, F1/8 {f18:.3f}"

    prd = result.prd
    curves = [("candidate vs reference", prd.precision, prd.recall, summary(prd))]
    base = getattr(result.baseline, "prd", None) if result.baseline is not None else None
    if base is not None and getattr(base, "precision", None) is not None:
        curves.append(("reference vs reference", base.precision, base.recall, summary(base)))
    return plot_prd(plot_dir / "prd.png", curves, style=style)


def _correlation_plot(
    plot_dir: Path, ref: Table, cand: Table, metrics: dict[str, Any], *, style: str | None = None
) -> Path:
    """The correlation-difference matrix (rows finite in every feature); the full matrix goes
    to ``metrics["correlation_difference"]``, the plot shows at most
    :data:`MAX_CORRELATION_FEATURES` features (those whose correlations changed most)."""
    fx = np.isfinite(ref.values).all(axis=1)
    fy = np.isfinite(cand.values).all(axis=1)
    wx = None if ref.weights is None else ref.weights[fx]
    wy = None if cand.weights is None else cand.weights[fy]
    corr_ref = weighted_correlation(ref.values[fx], wx)
    corr_cand = weighted_correlation(cand.values[fy], wy)
    diff = corr_cand - corr_ref
    shown = np.arange(len(ref.names))
    if len(shown) > MAX_CORRELATION_FEATURES:
        shown = np.sort(np.argsort(-np.abs(diff).max(axis=0))[:MAX_CORRELATION_FEATURES])
        metrics["notes"].append(
            f"correlation plot: the {MAX_CORRELATION_FEATURES} of {len(ref.names)} "
            "features whose correlations changed most"
        )
    path = plot_correlation_difference(
        plot_dir / "correlation_difference.png",
        [ref.names[i] for i in shown],
        diff[np.ix_(shown, shown)],
        corr_ref[np.ix_(shown, shown)] if len(shown) <= 30 else None,
        corr_cand[np.ix_(shown, shown)] if len(shown) <= 30 else None,
        style=style,
    )
    metrics["correlation_difference"] = {
        "features": list(ref.names),
        "max_abs": float(np.abs(diff).max()),
        "matrix": diff.round(6).tolist(),
    }
    return path
