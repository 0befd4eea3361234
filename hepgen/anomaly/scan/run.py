"""A whole scan: every window in turn, resumable from a working folder.

:func:`run_scan` checks the input and the device before any work, then runs
:func:`~hepgen.anomaly.scan.window.scan_window` over the windows, each with its own seed
derived from the scan's seed and the window's index, so that a scan resumed from its working
folder (:mod:`hepgen.anomaly.scan_cache`) gives the result of an uninterrupted one.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from hepgen.anomaly.density import DensityModel, nonfinite_problems
from hepgen.anomaly.scan.results import ScanResult
from hepgen.anomaly.scan.scores import CATHODE_PURPOSE
from hepgen.anomaly.scan.window import scan_window
from hepgen.anomaly.stats.dijet import check_units
from hepgen.devices import resolve_device
from hepgen.errors import InputError, require
from hepgen.progress import progress
from hepgen.settings.scan import ScanSettings, Window

__all__ = ["run_scan"]

log = logging.getLogger(__name__)


def _check_columns(columns: Mapping[str, np.ndarray], settings: ScanSettings) -> None:
    """Every column of the scan present and finite, else an InputError naming them."""
    names = [settings.resonance_name, *settings.feature_names]
    missing = [n for n in names if n not in columns]
    if missing:
        raise InputError(f"scan: missing column(s) {missing}; available: {sorted(columns)}")
    bad = nonfinite_problems({n: np.asarray(columns[n], dtype=np.float64) for n in names}, "values")
    if bad:
        raise InputError("scan: " + "; ".join(bad))


def _label_notes(columns: Mapping[str, np.ndarray], label: str | None) -> list[str]:
    """Why the scan has no ROC and SIC curves, if it has none."""
    if label is None:
        return ["no label branch configured: ROC and SIC curves are omitted"]
    if label not in columns:
        return [f"label branch '{label}' is not in the input: ROC and SIC curves are omitted"]
    return []


def run_scan(
    columns: Mapping[str, np.ndarray],
    settings: ScanSettings,
    *,
    quiet: bool = False,
    windows: Sequence[Window] | None = None,
    work_dir: str | os.PathLike | None = None,
    resume: bool = False,
    backgrounds: Sequence[Sequence[DensityModel]] | None = None,
) -> ScanResult:
    """Run :func:`scan_window` over every window of ``settings``.

    Parameters
    ----------
    columns : mapping of str to array of shape (n,)
        One row per event: the resonance variable, the features, optionally the label.
    settings : ScanSettings
    quiet : bool
        No progress output.
    windows : sequence of Window or None
        Override the windows of ``settings`` (e.g. one window).
    work_dir : path or None
        Working folder (:mod:`hepgen.anomaly.scan_cache`): each finished window's result and
        the running window's flow checkpoints; None: nothing kept.
    resume : bool
        Continue an interrupted scan from ``work_dir``: finished windows are loaded, not
        recomputed, and an interrupted flow continues from its checkpoint.  The result equals
        that of an uninterrupted scan with the same seed.
    backgrounds : sequence (one per window) of sequences of DensityModel, or None
        Background flows already trained on each window's sidebands (the
        ``background_models`` of an earlier scan of the same background, e.g. without the
        injected signal of a sensitivity study): used instead of training new ones.

    Returns
    -------
    ScanResult

    Raises
    ------
    InputError
        A missing column (named, with the available ones), non-finite values (counted), a
        resonance variable reaching ``sqrt_s`` (other units), a window outside the data
        range, too few sideband events.
    """
    t0 = time.perf_counter()
    resolve_device(settings.device or "auto")  # an absent GPU is an error before any work
    if settings.score == "cathode":  # a bare install has no xgboost: say so before any work
        require("xgboost", CATHODE_PURPOSE)
    if resume and work_dir is None:
        raise InputError("run_scan: resume=True needs the work_dir to resume from")
    _check_columns(columns, settings)
    m = np.asarray(columns[settings.resonance_name], dtype=np.float64)
    check_units(m, settings.resonance_name, settings.sqrt_s)  # before any flow trains
    notes = _label_notes(columns, settings.label)
    if windows is None:
        windows = settings.windows((float(m.min()), float(m.max())))
    seeds = np.random.SeedSequence(settings.seed).spawn(len(windows))
    cache = None
    if work_dir is not None:
        from hepgen.anomaly.scan_cache import ScanWork

        cache = ScanWork(Path(work_dir), columns, settings, windows, resume)
    results = []
    with progress(
        total=len(windows), desc="scan", unit="window", quiet=quiet, mininterval=0.0
    ) as bar:
        for i, (w, ss) in enumerate(zip(windows, seeds, strict=True)):
            r = None if cache is None or not resume else cache.load(i, w)
            if r is None:
                r = scan_window(
                    columns,
                    w,
                    settings,
                    seed=int(ss.generate_state(1)[0]),
                    quiet=True,
                    work=None if cache is None else cache.window_dir(i),
                    resume=resume,
                    backgrounds=None if backgrounds is None else backgrounds[i],
                )
                if cache is not None:
                    cache.save(i, r)
            else:
                log.info("scan: window %d [%g, %g) finished earlier, loaded", i, w.lo, w.hi)
            results.append(r)
            bar.set_postfix_str(f"[{w.lo:.3g},{w.hi:.3g}) Z={r.significance:+.2f}")
            bar.update(1)
    result = ScanResult(
        settings=settings,
        windows=results,
        n_events=int(m.size),
        has_labels=settings.label is not None and settings.label in columns,
        notes=notes,
    )
    result.global_significance = _global(result, settings, notes)
    result.seconds = time.perf_counter() - t0
    return result


def _global(result: ScanResult, settings: ScanSettings, notes: list[str]) -> dict | None:
    """The best window's global significance from ``pseudo_scans`` null pseudo-scans
    (:func:`~hepgen.anomaly.scan.lookelsewhere.global_significance`); None when switched off
    or when no window has a significance."""
    if settings.pseudo_scans <= 0:
        return None
    usable = [w for w in result.windows if np.isfinite(w.significance)]
    if not usable:
        notes.append("no window has a local significance: no global significance")
        return None
    if any("index_sr" not in w.arrays for w in usable):
        notes.append(
            "windows resumed from an older scan lack their event indices: no global significance"
        )
        return None
    from hepgen.anomaly.scan.lookelsewhere import global_significance

    return global_significance(
        [w.arrays["index_sr"] for w in usable],
        [w.arrays["score_sr"] > w.headline["threshold"] for w in usable],
        np.array([w.headline["n_expected"] for w in usable]),
        np.array([w.headline["n_expected_error"] for w in usable]),
        np.array([w.significance for w in usable]),
        n_pseudo_scans=settings.pseudo_scans,
        seed=settings.seed,
    )
