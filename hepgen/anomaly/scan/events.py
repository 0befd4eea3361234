"""The events of one window: the signal region's and the two sidebands', counted and checked.

A background model needs enough sideband events on each side (:data:`MIN_SIDEBAND_EVENTS`)
and out-of-fold scoring at least two signal-region events per fold; a window short of them
is an :class:`~hepgen.errors.InputError` that gives the counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from hepgen.errors import InputError
from hepgen.settings.scan import ScanSettings, Window

__all__ = ["MIN_SIDEBAND_EVENTS", "WindowEvents", "select_events"]

#: Fewest sideband events (each side) that a background model is trained on.
MIN_SIDEBAND_EVENTS = 200


@dataclass(frozen=True, eq=False)
class WindowEvents:
    """The events of one window, split by region (see :func:`select_events`).

    Attributes
    ----------
    signal_region : dict of str to np.ndarray of shape (n_sr,)
        The resonance variable and the features of the signal-region events.
    sideband : dict of str to np.ndarray of shape (n_sb,)
        The same for the events of both sidebands (in input order).
    m_sideband : np.ndarray of shape (n_sb,), float64
        The resonance variable of the sideband events.
    in_signal_region : np.ndarray of bool, shape (n,)
        Which input events lie in the signal region.
    n_left, n_right : int
        Events in the lower and the upper sideband (``n_sb = n_left + n_right``).
    """

    signal_region: dict[str, np.ndarray]
    sideband: dict[str, np.ndarray]
    m_sideband: np.ndarray
    in_signal_region: np.ndarray
    n_left: int
    n_right: int

    @property
    def n_signal_region(self) -> int:
        """Events in the signal region."""
        return int(self.in_signal_region.sum())

    @property
    def n_sideband(self) -> int:
        """Events in both sidebands."""
        return self.n_left + self.n_right


def select_events(
    columns: Mapping[str, np.ndarray], window: Window, settings: ScanSettings
) -> WindowEvents:
    """Split the events into the window's signal region and sidebands.

    Parameters
    ----------
    columns : mapping of str to array of shape (n,)
        The resonance variable and the features (and more), one row per event.
    window : Window
    settings : ScanSettings
        Names the resonance variable and the features; ``folds`` sets the fewest
        signal-region events (two per fold).

    Returns
    -------
    WindowEvents

    Raises
    ------
    InputError
        Fewer than :data:`MIN_SIDEBAND_EVENTS` events in a sideband or too few in the signal
        region (the counts named).
    """
    m = np.asarray(columns[settings.resonance_name], dtype=np.float64)
    names = [settings.resonance_name, *settings.feature_names]
    in_sr = (m >= window.lo) & (m < window.hi)
    left = (m >= window.sb_lo) & (m < window.lo)
    right = (m >= window.hi) & (m < window.sb_hi)
    n_left, n_right, n_sr = int(left.sum()), int(right.sum()), int(in_sr.sum())
    if min(n_left, n_right) < MIN_SIDEBAND_EVENTS or n_sr < 2 * settings.folds:
        raise InputError(
            f"scan: window [{window.lo:.4g}, {window.hi:.4g}) has {n_left} events in the lower "
            f"sideband [{window.sb_lo:.4g}, {window.lo:.4g}), {n_right} in the upper "
            f"[{window.hi:.4g}, {window.sb_hi:.4g}) and {n_sr} in the signal region; a "
            f"background model needs >= {MIN_SIDEBAND_EVENTS} per sideband: widen the "
            "sidebands or use more events"
        )
    side = left | right
    return WindowEvents(
        signal_region={n: np.asarray(columns[n])[in_sr] for n in names},
        sideband={n: np.asarray(columns[n])[side] for n in names},
        m_sideband=m[side],
        in_signal_region=in_sr,
        n_left=n_left,
        n_right=n_right,
    )
