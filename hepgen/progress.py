"""Progress reporting for long work: a tqdm bar with rate and ETA, silenced by ``quiet``.

On a terminal the bar redraws in place; when stderr is not a terminal (CI logs, batch jobs)
tqdm would flood the log, so a plain line is printed at most every ``mininterval`` seconds.
"""

from __future__ import annotations

import sys
from typing import Any

# tqdm.std rather than tqdm.auto: the notebook widget needs ipywidgets, which hepgen does not
# require; the text bar works in notebooks too.
from tqdm.std import tqdm

__all__ = ["progress"]


def progress(
    total: float | None = None,
    desc: str = "",
    unit: str = "it",
    quiet: bool = False,
    **kwargs: Any,
) -> tqdm:
    """Create a progress bar that shows rate and ETA, or a silent one when ``quiet``.

    Parameters
    ----------
    total : float or None
        Expected number of units (events, batches); ``None`` when unknown (no ETA).
    desc : str
        Short label shown before the bar.
    unit : str
        Name of one unit ("events", "jets", "batch").
    quiet : bool
        When true the bar prints nothing.
    **kwargs
        Passed on to :class:`tqdm.tqdm`.

    Returns
    -------
    tqdm.tqdm
        Use as a context manager and call ``update(n)``.
    """
    interactive = sys.stderr.isatty()
    kwargs.setdefault("mininterval", 0.2 if interactive else 10.0)
    kwargs.setdefault("unit_scale", True)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(total=total, desc=desc, unit=unit, disable=quiet, file=sys.stderr, **kwargs)
