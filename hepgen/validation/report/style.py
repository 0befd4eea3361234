"""Plot style of the validation report: neutral ROOT style or an experiment's, series colours.

Every report figure is drawn inside :func:`style_context`: mplhep's experiment-neutral ROOT
style (default) or the CMS, ATLAS, LHCb or ALICE style, at report-sized fonts; the global
``matplotlib.rcParams`` are restored on exit, so a caller's style (or a notebook's) is never
changed.  With an experiment style, :func:`experiment_label` writes the experiment's
"Simulation" label above the axes (``mplhep.cms.label(..., data=False)`` and friends).
Series of many lines get one colour each from a 20-colour qualitative map, combined with
markers and line styles (:func:`series_style`).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import matplotlib
import matplotlib.style
import mplhep
from matplotlib.figure import Figure

from hepgen.utils import atomic_path

__all__ = [
    "STYLES",
    "check_style",
    "experiment_label",
    "save_png",
    "series_style",
    "style_context",
    "styled",
]

#: Allowed experiment styles (lower case) -> (mplhep style name, mplhep label module).
STYLES = {"cms": ("CMS", "cms"), "atlas": ("ATLAS", "atlas"), "lhcb": ("LHCb", "lhcb"),
          "alice": ("ALICE", "alice")}  # fmt: skip

#: Report-sized fonts on top of the style.
REPORT_FONTS = {
    "font.size": 12,
    "axes.labelsize": 14,
    "xtick.labelsize": 11,
    "ytick.labelsize": 11,
    "legend.fontsize": 11,
}

_CURRENT: contextvars.ContextVar[str | None] = contextvars.ContextVar("style", default=None)

#: 20 qualitative colours (matplotlib's tab20, dark shades first, then the light ones).
_TAB20 = [matplotlib.colormaps["tab20"](i) for i in list(range(0, 20, 2)) + list(range(1, 20, 2))]
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
_LINES = ("-", "--", "-.", ":")


def check_style(style: str | None) -> str | None:
    """The canonical (lower-case) experiment style, or None for the neutral ROOT style.

    Parameters
    ----------
    style : str or None
        ``"CMS"``, ``"ATLAS"``, ``"LHCb"`` or ``"ALICE"`` (case-insensitive), or None.

    Returns
    -------
    str or None

    Raises
    ------
    hepgen.errors.InputError
        For any other name.

    References
    ----------
    mplhep experiment styles: https://mplhep.readthedocs.io/en/latest/api.html

    Examples
    --------
    >>> check_style("CMS"), check_style(None)
    ('cms', None)
    """
    if style is None:
        return None
    from hepgen.errors import InputError

    key = str(style).strip().lower()
    if key not in STYLES:
        allowed = ", ".join(v[0] for v in STYLES.values())
        raise InputError(f"style must be one of {allowed} or None, got {style!r}")
    return key


@contextlib.contextmanager
def style_context(style: str | None = None) -> Iterator[None]:
    """Draw inside the report style: ``with style_context("CMS"): ...``.

    Parameters
    ----------
    style : str or None
        Experiment style (see :func:`check_style`) or None for mplhep's ROOT style.

    References
    ----------
    mplhep styles: https://mplhep.readthedocs.io/en/latest/api.html

    Examples
    --------
    >>> size = matplotlib.rcParams["font.size"]
    >>> with style_context("ATLAS"):
    ...     pass
    >>> matplotlib.rcParams["font.size"] == size
    True
    """
    key = check_style(style)
    base = mplhep.style.ROOT if key is None else getattr(mplhep.style, STYLES[key][0])
    token = _CURRENT.set(key)
    try:
        with matplotlib.style.context(base), matplotlib.rc_context(REPORT_FONTS):
            yield
    finally:
        _CURRENT.reset(token)


def experiment_label(ax: Any) -> None:
    """Write the current experiment style's "Simulation" label above ``ax`` (nothing in the
    neutral style).

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Axes to label.

    References
    ----------
    mplhep labels: https://mplhep.readthedocs.io/en/latest/api.html

    Examples
    --------
    >>> from matplotlib.figure import Figure
    >>> with style_context("CMS"):
    ...     experiment_label(Figure().subplots())
    """
    key = _CURRENT.get()
    if key is None:
        return
    module = getattr(mplhep, STYLES[key][1])
    kwargs: dict[str, Any] = {"ax": ax, "data": False, "loc": 0, "fontsize": 12}
    if key != "atlas":
        kwargs["rlabel"] = ""
    module.label(**kwargs)


def series_style(i: int) -> dict[str, Any]:
    """Colour, marker and line style of series ``i``: 20 distinct colours, and a different
    marker/line combination for every series up to 40.

    Parameters
    ----------
    i : int
        Series index (>= 0).

    Returns
    -------
    dict
        ``{"color", "marker", "linestyle"}`` for :meth:`matplotlib.axes.Axes.plot`.

    References
    ----------
    Tableau 20 qualitative palette, as ``matplotlib.colormaps["tab20"]``.

    Examples
    --------
    >>> series_style(0)["marker"], series_style(1)["color"] != series_style(0)["color"]
    ('o', True)
    """
    return {
        "color": _TAB20[i % 20],
        "marker": _MARKERS[i % len(_MARKERS)],
        "linestyle": _LINES[(i // len(_MARKERS)) % len(_LINES)],
    }


_F = TypeVar("_F", bound=Callable[..., Any])


def styled(plot: _F) -> _F:
    """Run ``plot`` in the report style (keyword ``style``: None for mplhep's ROOT style, or
    an experiment's); the global ``matplotlib.rcParams`` are restored when it returns (or
    raises)."""

    @functools.wraps(plot)
    def wrapper(*args: Any, style: str | None = None, **kwargs: Any) -> Any:
        with style_context(style):
            return plot(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def save_png(fig: Figure, path: Path, dpi: int = 90, tight: bool = False) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically (inside the style context: some style
    settings apply when the figure is drawn).  ``tight`` crops to the drawn artists (draws
    the figure twice: only for figures whose extent is not known beforehand)."""
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(
            tmp, dpi=dpi, bbox_inches="tight" if tight else None, format="png", facecolor="white"
        )
    return Path(path)
