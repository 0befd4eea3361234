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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hepgen.anomaly.density import DensityModel
from hepgen.anomaly.scan.background import best_val_loss, sample_templates, train_backgrounds
from hepgen.anomaly.scan.diagnostics import (
    pvalue_histogram,
    sculpting_check,
    seed_spread,
    template_fidelity,
)
from hepgen.anomaly.scan.estimates import estimate_window, selection
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
        "index_sr": np.flatnonzero(events.in_signal_region),
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
    backgrounds: Sequence[DensityModel] | None = None,
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
    backgrounds : sequence of DensityModel or None
        Background flows already trained on this window's sidebands (e.g. of a scan of the
        same events without an injected signal, :attr:`WindowResult.background_models`):
        used instead of training new ones (noted).

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
    if backgrounds is None:
        bgs = train_backgrounds(
            events.sideband, settings, rng, quiet=quiet, work=work, resume=resume, notes=notes
        )
    else:
        bgs = list(backgrounds)
        notes.append(f"{len(bgs)} background flow(s) given, trained elsewhere")
    timings["background_flow_s"] = time.perf_counter() - tick
    training: dict[str, Any] = {
        "background_flow_epochs": len(bgs[0].training_.history),
        "background_flow_best_val_loss": best_val_loss(bgs[0]),
    }
    if len(bgs) > 1:
        training["background_flow_epochs_members"] = [len(b.training_.history) for b in bgs]
        training["background_flow_best_val_loss_members"] = [best_val_loss(b) for b in bgs]

    tick = time.perf_counter()
    outside: dict[str, int] = {}
    templates = sample_templates(bgs, events, window, settings, rng, outside, notes)
    timings["template_s"] = time.perf_counter() - tick

    tick = time.perf_counter()
    scores, info = score_window(
        events,
        templates,
        bgs,
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
    full_fit, background, selections = estimate_window(
        scores, events.m_sideband, window, settings, notes
    )
    timings["estimates_s"] = time.perf_counter() - tick

    tick = time.perf_counter()
    labels_sr = side_labels = None
    if settings.label is not None and settings.label in columns:
        label = np.asarray(columns[settings.label])
        labels_sr = label[events.in_signal_region]
        m_all = np.asarray(columns[settings.resonance_name], dtype=np.float64)
        side = ((m_all >= window.sb_lo) & (m_all < window.lo)) | (
            (m_all >= window.hi) & (m_all < window.sb_hi)
        )
        side_labels = label[side]
    fidelity = template_fidelity(scores, templates, events, labels_sr, settings, rng)

    def select(member: WindowScores) -> dict[str, Any]:
        eff = settings.ranking_efficiency
        return selection(eff, member, events.m_sideband, window, background, settings, [])

    spread = seed_spread(scores, templates, select, labels_sr, len(bgs))
    tightest = min(selections, key=lambda sel: sel["efficiency"])
    m_win = np.concatenate([events.signal_region[settings.resonance_name], events.m_sideband])
    s_win = np.concatenate([scores.data, scores.sideband])
    who = "all events of the window (no truth label)"
    if labels_sr is not None and side_labels is not None:
        bkg = np.concatenate([labels_sr, side_labels]) == 0
        m_win, s_win, who = m_win[bkg], s_win[bkg], "true background events (label 0)"
    sculpting = sculpting_check(
        m_win, s_win, tightest["threshold"], tightest["efficiency"], window, who
    )
    timings["diagnostics_s"] = time.perf_counter() - tick
    pvalues = None
    if settings.pvalue_samples > 0:
        tick = time.perf_counter()
        pvalues = pvalue_histogram(
            bgs, events.signal_region, labels_sr, settings.pvalue_samples, rng
        )
        timings["pvalues_s"] = time.perf_counter() - tick
    training["timings"] = timings

    result = WindowResult(
        window=window,
        n_signal_region=events.n_signal_region,
        n_sideband=(events.n_left, events.n_right),
        n_background_fit=float(background[0]),
        n_background_fit_error=float(background[1]),
        selections=selections,
        ranking_efficiency=float(settings.ranking_efficiency),
        estimate=settings.background_estimate,
        roc=_label_roc(columns, settings.label, events.in_signal_region, scores.data, notes),
        sideband_fit=full_fit.to_dict(),
        training=training,
        seconds=time.perf_counter() - t0,
        notes=notes,
        fidelity=fidelity,
        seed_spread=spread,
        sculpting=sculpting,
        pvalues=pvalues,
    )
    result.arrays = _arrays(columns, events, scores, settings)
    result.background_models = bgs
    return result
