"""One window of a scan: learn the background, score, select and count.

:func:`scan_window` runs the steps of :mod:`hepgen.anomaly.scan` for one signal region: the
events of the window (:mod:`~hepgen.anomaly.scan.events`), the background flow and its
templates (:mod:`~hepgen.anomaly.scan.background`), the out-of-fold scores
(:mod:`~hepgen.anomaly.scan.scores`), and the selections with their background estimates and
significances (:mod:`~hepgen.anomaly.scan.estimates`).  With a truth label it adds the ROC
curve and SIC of the score on the signal-region events.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hepgen.anomaly.scan.background import best_val_loss, sample_templates, train_background
from hepgen.anomaly.scan.estimates import estimate_window
from hepgen.anomaly.scan.events import WindowEvents, select_events
from hepgen.anomaly.scan.results import WindowResult
from hepgen.anomaly.scan.scores import WindowScores, score_window
from hepgen.anomaly.stats import ROC, roc_sic
from hepgen.settings.scan import ScanSettings, Window

__all__ = ["scan_window"]


def _label_roc(
    columns: Mapping[str, np.ndarray],
    label: str | None,
    in_sr: np.ndarray,
    s_data: np.ndarray,
    notes: list[str],
) -> ROC | None:
    """ROC and SIC of the SR scores against the truth ``label`` (None without both classes)."""
    if label is None or label not in columns:
        return None
    y = np.asarray(columns[label])[in_sr]
    if (y == 1).any() and (y == 0).any():
        return roc_sic(s_data, (y == 1).astype(np.int8))
    notes.append(f"label '{label}' has only class {int(y[0])} in the signal region: no ROC/SIC")
    return None


def _arrays(
    columns: Mapping[str, np.ndarray],
    events: WindowEvents,
    scores: WindowScores,
    settings: ScanSettings,
) -> dict[str, np.ndarray]:
    """The per-event arrays a window keeps for the plots (and a resumed scan)."""
    arrays = {
        "m_sr": events.signal_region[settings.resonance_name].astype(np.float64),
        "score_sr": scores.data,
        "m_sideband": events.m_sideband,
        "score_sideband": scores.sideband,
        "score_template": scores.template,
    }
    if settings.label is not None and settings.label in columns:
        arrays["label_sr"] = np.asarray(columns[settings.label])[events.in_signal_region]
    return arrays


def scan_window(
    columns: Mapping[str, np.ndarray],
    window: Window,
    settings: ScanSettings,
    seed: int = 0,
    quiet: bool = False,
    work: str | os.PathLike | None = None,
    resume: bool = False,
) -> WindowResult:
    """Learn the background around one window, score, select and count (module docstring).

    Parameters
    ----------
    columns : mapping of str to array of shape (n,)
        The resonance variable, the features and (optionally) the label, one row per event.
    window : Window
    settings : ScanSettings
    seed : int
        Seeds the flows, the template, the folds and the classifier.
    quiet : bool
        Silence the flows' progress bars.
    work : path or None
        Folder for the per-epoch checkpoints of the window's flows (``background/``,
        ``data-flow-K/``); None: no checkpoints.
    resume : bool
        Continue each flow from its checkpoint in ``work`` where there is one (a flow
        without one starts afresh): the same result as an uninterrupted run.

    Raises
    ------
    InputError
        Fewer than :data:`~hepgen.anomaly.scan.MIN_SIDEBAND_EVENTS` events in a sideband or
        too few SR events (the counts named).
    """
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    events = select_events(columns, window, settings)
    notes: list[str] = []
    work = None if work is None else Path(work)
    timings: dict[str, float] = {}

    tick = time.perf_counter()
    bg = train_background(
        events.sideband, settings, rng, quiet=quiet, work=work, resume=resume, notes=notes
    )
    timings["background_flow_s"] = time.perf_counter() - tick
    training: dict[str, Any] = {
        "background_flow_epochs": len(bg.training_.history),
        "background_flow_best_val_loss": best_val_loss(bg),
    }

    tick = time.perf_counter()
    outside: dict[str, int] = {}
    templates = sample_templates(bg, events, window, settings, rng, outside, notes)
    timings["template_s"] = time.perf_counter() - tick

    tick = time.perf_counter()
    scores, info = score_window(
        events,
        templates,
        bg,
        settings,
        rng,
        quiet=quiet,
        outside=outside,
        work=work,
        resume=resume,
        notes=notes,
    )
    training.update(info)
    if outside:
        training["outside_flow_domain"] = outside
    timings["scores_s"] = time.perf_counter() - tick

    tick = time.perf_counter()
    full_fit, (n_hat, n_hat_err), selections = estimate_window(
        scores, events.m_sideband, window, settings, notes
    )
    timings["estimates_s"] = time.perf_counter() - tick
    training["timings"] = timings

    result = WindowResult(
        window=window,
        n_signal_region=events.n_signal_region,
        n_sideband=(events.n_left, events.n_right),
        n_background_fit=float(n_hat),
        n_background_fit_error=float(n_hat_err),
        selections=selections,
        ranking_efficiency=float(settings.ranking_efficiency),
        estimate=settings.background_estimate,
        roc=_label_roc(columns, settings.label, events.in_signal_region, scores.data, notes),
        sideband_fit=full_fit.to_dict(),
        training=training,
        seconds=time.perf_counter() - t0,
        notes=notes,
    )
    result.arrays = _arrays(columns, events, scores, settings)
    return result
