"""The windows of a scan: a signal region ``[lo, hi)`` and the two sidebands beside it.

The signal region slides over the resonance variable ``m`` in steps; the sidebands
``[lo - s, lo)`` and ``[hi, hi + s)`` hold the background that the signal region's is
learned from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hepgen.errors import ConfigError, InputError

__all__ = ["Window", "make_windows"]


@dataclass(frozen=True)
class Window:
    """One signal region ``[lo, hi)`` and its sidebands ``[sb_lo, lo)``, ``[hi, sb_hi)``
    (units of the resonance variable, e.g. TeV)."""

    lo: float
    hi: float
    sb_lo: float
    sb_hi: float

    @property
    def centre(self) -> float:
        """Centre of the signal region."""
        return 0.5 * (self.lo + self.hi)


def make_windows(
    start: float,
    stop: float,
    width: float,
    step: float,
    sideband: float,
    data_range: tuple[float, float] | None = None,
) -> list[Window]:
    """Signal regions of ``width`` from ``start`` in steps of ``step`` while ``hi <= stop``.

    Parameters
    ----------
    start, stop : float
        Lower edge of the first and upper bound of the last signal region.
    width, step, sideband : float
        Signal-region width, step between windows, width of each sideband (> 0).
    data_range : (float, float) or None
        The data's range of the resonance variable: every window with its sidebands must lie
        inside it.

    Raises
    ------
    ConfigError
        Non-positive sizes or no window between ``start`` and ``stop``.
    InputError
        A window's sidebands reach outside ``data_range`` (the window and the range named).

    Examples
    --------
    >>> [(round(w.lo, 6), round(w.hi, 6)) for w in make_windows(3.0, 3.8, 0.4, 0.2, 0.3)]
    [(3.0, 3.4), (3.2, 3.6), (3.4, 3.8)]
    """
    for name, value in (("width", width), ("step", step), ("sideband", sideband)):
        if not np.isfinite(value) or value <= 0:
            raise ConfigError(f"scan: '{name}' must be a positive number, got {value}")
    n = int(np.floor((stop - start - width) / step + 1e-9)) + 1
    if n < 1:
        raise ConfigError(
            f"scan: no signal region of width {width} fits in [start, stop] = [{start}, {stop}]"
        )
    windows = []
    for i in range(n):
        lo = start + i * step
        w = Window(float(lo), float(lo + width), float(lo - sideband), float(lo + width + sideband))
        if data_range is not None and (w.sb_lo < data_range[0] or w.sb_hi > data_range[1]):
            raise InputError(
                f"scan: window [{w.lo:.4g}, {w.hi:.4g}) with its sidebands "
                f"[{w.sb_lo:.4g}, {w.sb_hi:.4g}) reaches outside the data range "
                f"[{data_range[0]:.4g}, {data_range[1]:.4g}] of the resonance variable; "
                "narrow scan.start/scan.stop or the sidebands"
            )
        windows.append(w)
    return windows
