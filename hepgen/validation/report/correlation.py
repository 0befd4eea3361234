"""Correlation matrices of the report: weighted Pearson correlations and their heat maps.

The reference and candidate correlation matrices are drawn beside their difference; panel
size and fonts scale with the number of features, cell numbers only where legible.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from hepgen.validation.report.style import experiment_label, save_png, styled

__all__ = ["plot_correlation_difference", "weighted_correlation"]


def weighted_correlation(values: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Weighted Pearson correlation matrix, shape (d, d), of ``values`` of shape (n, d).

    Hand-written rather than ``np.cov(aweights=...)`` because sWeights can be negative, which
    numpy rejects; constant columns get correlation 0 (and 1 on the diagonal).

    Parameters
    ----------
    values : np.ndarray
        Shape (n, d), finite.
    weights : np.ndarray or None
        Per-row weights, shape (n,) (may be negative), None for unit weights.

    Returns
    -------
    np.ndarray
        Shape (d, d), dimensionless.

    References
    ----------
    K. Pearson, Proc. R. Soc. Lond. 58 (1895) 240.

    Examples
    --------
    >>> x = np.array([[0.0, 1.0], [1.0, 3.0], [2.0, 5.0]])
    >>> weighted_correlation(x).round(6).tolist()
    [[1.0, 1.0], [1.0, 1.0]]
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


def _matrix_panel(fig: Figure, ax: Any, matrix: np.ndarray, names: Sequence[str], vmax: float,
                  cmap: str, title: str, fontsize: float, cell_font: float) -> None:  # fmt: skip
    """One heat map; numbers in the cells when ``cell_font`` (points) is legible (>= 5)."""
    d = len(names)
    im = ax.imshow(matrix, cmap=cmap, vmin=-vmax, vmax=vmax)
    ax.set_xticks(range(d), labels=list(names), rotation=60, ha="right", fontsize=fontsize)
    ax.set_yticks(range(d), labels=list(names), fontsize=fontsize)
    ax.minorticks_off()
    ax.tick_params(top=False, right=False)
    ax.set_title(title, fontsize=fontsize + 1)
    if cell_font >= 5:
        fmt = ".2f" if vmax >= 0.5 else ("+.3f" if vmax < 0.1 else "+.2f")
        for i in range(d):
            for j in range(d):
                v = matrix[i, j]
                if np.isfinite(v):
                    ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=cell_font,
                            color="white" if abs(v) > 0.6 * vmax else "black")  # fmt: skip
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)


@styled
def plot_correlation_difference(
    path: Path,
    names: Sequence[str],
    diff: np.ndarray,
    reference: np.ndarray | None = None,
    candidate: np.ndarray | None = None,
) -> Path:
    """Heat map of a correlation difference ``diff`` (d, d), corr(candidate) - corr(reference),
    beside the correlations themselves when given (one matrix: the reference below the
    diagonal, the candidate above it).

    Use :func:`weighted_correlation` on both samples to compute them.  Panels are sized for a
    1400 px page (about 7 in at 80 dpi at most), fonts scale with d, and numbers are printed in
    the cells only while they are legible (about d <= 18); the difference's colour range is
    symmetric, from its largest off-diagonal value (at least 0.02), the correlations' -1 to 1.

    Parameters
    ----------
    path : path
        PNG file to write.
    names : sequence of str
        Feature names, length d.
    diff : np.ndarray
        Shape (d, d).
    reference, candidate : np.ndarray or None
        Correlation matrices, shape (d, d), drawn left of the difference.
    style : str or None
        Keyword only: experiment style, None for the neutral ROOT style.

    Returns
    -------
    Path

    References
    ----------
    K. Pearson, Proc. R. Soc. Lond. 58 (1895) 240 (correlation coefficient).

    Examples
    --------
    >>> import tempfile
    >>> d = np.array([[0.0, 0.01], [0.01, 0.0]])
    >>> plot_correlation_difference(Path(tempfile.mkdtemp()) / "c.png", ["a", "b"], d).suffix
    '.png'
    """
    d = len(names)
    diff = np.asarray(diff, dtype=float)
    off = diff[~np.eye(d, dtype=bool)] if d > 1 else diff.ravel()
    dmax = max(0.02, float(np.abs(off).max()) if off.size else 0.0)
    panels = [(diff, "RdBu_r", "corr(candidate) - corr(reference)", dmax)]
    if reference is not None and candidate is not None:
        both = np.where(
            np.tri(d, k=-1, dtype=bool), np.asarray(reference, float), np.asarray(candidate, float)
        )
        np.fill_diagonal(both, np.nan)
        title = "corr: reference (lower), candidate (upper)"
        panels.insert(0, (both, "PuOr_r", title, 1.0))
    size = float(np.clip(0.45 * d + 1.5, 4.0, 7.0))
    cell_pt = 72.0 * 0.8 * size / max(d, 1)
    cell_font = min(9.0, 0.9 * cell_pt / 3.6)
    fontsize = float(np.clip(0.45 * cell_pt, 6.0, 11.0))
    fig = Figure(figsize=(len(panels) * (size + 1.3), size + 0.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (matrix, cmap, title, vmax) in zip(axes, panels, strict=True):
        _matrix_panel(fig, ax, matrix, names, vmax, cmap, title, fontsize, cell_font)
    experiment_label(axes[0])
    return save_png(fig, path, dpi=80)
