"""The working folder of a resonance scan: finished windows kept, interrupted flows resumable.

:func:`hepgen.anomaly.scan.run_scan` with a ``work_dir`` (``hepgen scan`` uses
``REPORT_DIR/work``) keeps there:

* ``scan-state.json``: the scan's fingerprint (settings, windows, number of events and a
  SHA-256 of the input columns).  A resumed scan must have the same, else
  :class:`~hepgen.training.TrainingError` says what differs;
* ``window-NNN/``: while window NNN runs, the per-epoch checkpoints of its density flows
  (``background/``, ``data-flow-K/`` for ANODE), so an interrupted flow continues where it
  was (:func:`hepgen.training.train`'s exact resume);
* ``window-NNN.npz`` + ``window-NNN.json``: the finished window's per-event arrays (numpy's
  ``.npz``, read with ``allow_pickle=False``) and every other field of its
  :class:`~hepgen.anomaly.scan.WindowResult` (JSON, NaN and infinities kept).  Each is written
  atomically, the JSON last: a window is finished when its JSON exists.  The window's flow
  checkpoints are then removed.

A resumed scan loads the finished windows and reruns the others; the seeds of each window
derive from the scan's seed and the window's index, and the flows resume bit for bit, so the
result equals that of an uninterrupted scan.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hepgen.anomaly.scan import ScanSettings, Window, WindowResult
from hepgen.anomaly.stats import roc_sic
from hepgen.training import TrainingError
from hepgen.utils import atomic_path, atomic_write_text

__all__ = ["SCAN_STATE", "ScanWork"]

SCAN_STATE = "scan-state.json"
_FORMAT = "hepgen-scan-work"
_VERSION = 1


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def _dumps(value: Any) -> str:
    """JSON that keeps NaN and infinities (Python's json reads them back exactly)."""
    return json.dumps(value, default=_plain, allow_nan=True, sort_keys=True)


def _columns_sha256(columns: Mapping[str, np.ndarray], names: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for name in names:
        array = np.ascontiguousarray(np.asarray(columns[name]))
        digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


class ScanWork:
    """The working folder of one scan (module docstring).

    Parameters
    ----------
    folder : Path
        The working folder (created when missing).
    columns : mapping of str to array
        The scan's input columns (hashed into the fingerprint).
    settings : ScanSettings
    windows : sequence of Window
    resume : bool
        Keep the finished windows and flow checkpoints of an earlier run of the same scan;
        False: start afresh (the folder's earlier content is removed).

    Raises
    ------
    TrainingError
        ``resume`` with no earlier state in ``folder``, or a state of another scan.
    """

    def __init__(
        self,
        folder: Path,
        columns: Mapping[str, np.ndarray],
        settings: ScanSettings,
        windows: Sequence[Window],
        resume: bool,
    ) -> None:
        self.folder = Path(folder)
        names = [settings.resonance_name, *settings.feature_names]
        if settings.label is not None and settings.label in columns:
            names.append(settings.label)
        self.fingerprint = json.loads(
            _dumps(
                {
                    "format": _FORMAT,
                    "format_version": _VERSION,
                    "settings": settings.to_dict(),
                    "windows": [dataclasses.asdict(w) for w in windows],
                    "n_events": len(np.asarray(columns[settings.resonance_name])),
                    "columns_sha256": _columns_sha256(columns, names),
                }
            )
        )
        state = self.folder / SCAN_STATE
        if resume:
            if not state.is_file():
                raise TrainingError(
                    f"cannot resume: '{self.folder.parent}' holds no scan to resume (no "
                    f"{state}); scan without --resume to start afresh"
                )
            try:
                saved = json.loads(state.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise TrainingError(f"cannot resume: {state} is unreadable ({exc})") from None
            diffs = sorted(
                k
                for k in set(saved) | set(self.fingerprint)
                if saved.get(k) != self.fingerprint.get(k)
            )
            if diffs:
                raise TrainingError(
                    f"cannot resume the scan in {self.folder}: " + ", ".join(diffs) + " differ "
                    "from the interrupted scan's; scan without --resume to start afresh"
                )
        else:
            if self.folder.is_dir():
                shutil.rmtree(self.folder)
            self.folder.mkdir(parents=True)
            atomic_write_text(state, _dumps(self.fingerprint))

    def window_dir(self, index: int) -> Path:
        """Checkpoint folder of window ``index``'s flows while it runs."""
        return self.folder / f"window-{index:03d}"

    def load(self, index: int, window: Window) -> WindowResult | None:
        """The finished window ``index``, or None when it did not finish."""
        meta = self.folder / f"window-{index:03d}.json"
        if not meta.is_file():
            return None
        d = json.loads(meta.read_text(encoding="utf-8"))
        if d["window"] != dataclasses.asdict(window):
            raise TrainingError(f"cannot resume: {meta} is not window {window}")
        with np.load(self.folder / f"window-{index:03d}.npz", allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        roc = None
        if d.pop("has_roc"):
            roc = roc_sic(arrays["score_sr"], (arrays["label_sr"] == 1).astype(np.int8))
        d["window"] = window
        d["n_sideband"] = tuple(d["n_sideband"])
        result = WindowResult(**d, roc=roc)
        result.arrays = arrays
        return result

    def save(self, index: int, result: WindowResult) -> None:
        """Persist a finished window (arrays, then the JSON) and drop its flow checkpoints."""
        with atomic_path(self.folder / f"window-{index:03d}.npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, **result.arrays)
        fields = {
            f.name: getattr(result, f.name)
            for f in dataclasses.fields(result)
            if f.name not in ("arrays", "roc", "background_models")
        }
        fields["window"] = dataclasses.asdict(result.window)
        fields["has_roc"] = result.roc is not None
        atomic_write_text(self.folder / f"window-{index:03d}.json", _dumps(fields))
        shutil.rmtree(self.window_dir(index), ignore_errors=True)
