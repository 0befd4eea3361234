"""Training in stages that resume: a finished stage is loaded, an interrupted one continues.

:meth:`hepgen.fastsim.FastSim.fit` trains several models one after the other (the efficiency
classifier, the response generator, the fakes' generator), and a crash or a ``SIGKILL`` can
stop it in any of them; :func:`run_stage` runs one stage so that ``resume=True`` picks up
exactly where the run was (its Notes give the rules and the files under the checkpoint
folder).

Examples
--------
>>> import tempfile, pathlib
>>> from hepgen.models.stages import run_stage
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> def fit(resume):
...     return {"value": 42}, None
>>> def save(model, directory, stem):
...     (directory / f"{stem}.txt").write_text(str(model["value"]))
>>> def load(directory, stem):
...     return {"value": int((directory / f"{stem}.txt").read_text())}
>>> run_stage("answer", folder, False, {"n": 1}, fit=fit, save=save, load=load)[0]
{'value': 42}
>>> run_stage("answer", folder, True, {"n": 1}, fit=None, save=save, load=load)[0]
{'value': 42}
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hepgen.utils import to_jsonable, write_json

if TYPE_CHECKING:  # hepgen.training imports torch: imported where a stage runs
    from hepgen.training import TrainingResult

__all__ = [
    "FINISHED",
    "STAGE_FORMAT",
    "STAGE_FORMAT_VERSION",
    "check_resumable",
    "clear_checkpoints",
    "run_stage",
]

log = logging.getLogger(__name__)

STAGE_FORMAT = "hepgen-stage"
STAGE_FORMAT_VERSION = 1
#: Sub-folder of the checkpoint folder holding the finished stages.
FINISHED = "finished"


def check_resumable(checkpoints: Path, directory: str | Path) -> None:
    """Raise :class:`TrainingError` naming ``directory`` when ``checkpoints`` holds no file."""
    from hepgen.training import TrainingError

    if not checkpoints.is_dir() or not any(p.is_file() for p in checkpoints.rglob("*")):
        raise TrainingError(
            f"cannot resume: '{directory}' holds no training checkpoints (no files in "
            f"{checkpoints}); train without --resume to start afresh"
        )


def clear_checkpoints(checkpoints: Path) -> None:
    """Remove the checkpoints of an earlier run before a fresh (non-resumed) training, so that a
    later resume never mixes stages of two runs."""
    if checkpoints.is_dir():
        log.info("fresh training: removing the earlier run's checkpoints in %s", checkpoints)
        shutil.rmtree(checkpoints)


def _marker(checkpoints: Path, stage: str) -> Path:
    return checkpoints / FINISHED / f"done-{stage}.json"


def _canonical(value: Any) -> str:
    return json.dumps(to_jsonable(value), sort_keys=True, separators=(",", ":"))


def _read_marker(path: Path, stage: str, fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    from hepgen.training import TrainingError

    try:
        marker = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TrainingError(f"cannot resume: stage marker {path} is unreadable ({exc})") from None
    if (
        not isinstance(marker, dict)
        or marker.get("format") != STAGE_FORMAT
        or marker.get("format_version") != STAGE_FORMAT_VERSION
        or marker.get("stage") != stage
    ):
        raise TrainingError(
            f"cannot resume: {path} is not a hepgen stage marker of stage {stage!r} "
            f"(format {STAGE_FORMAT} version {STAGE_FORMAT_VERSION})"
        )
    saved = marker.get("fingerprint") or {}
    now = json.loads(_canonical(fingerprint))
    diffs = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if diffs:
        raise TrainingError(
            f"cannot resume: stage {stage!r} in {path} was trained with other settings ("
            + ", ".join(diffs)
            + " differ); train without --resume to start afresh"
        )
    return marker


def run_stage(
    stage: str,
    checkpoints: Path | None,
    resume: bool,
    fingerprint: Mapping[str, Any],
    *,
    fit: Callable[[bool], tuple[Any, TrainingResult | None]] | None,
    save: Callable[[Any, Path, str], Any],
    load: Callable[[Path, str], Any],
    loop_checkpoint: Path | None = None,
    max_epochs: int | None = None,
) -> tuple[Any, TrainingResult | None]:
    """Run (or load, or continue) one stage of a training; returns (model, training result).

    Parameters
    ----------
    stage : str
        Name of the stage (a file stem: ``"efficiency"``, ``"response"``, ``"fakes"``).
    checkpoints : Path or None
        The checkpoint folder; ``None``: just ``fit(False)``, nothing written.
    resume : bool
        Load the stage when finished, continue it from ``loop_checkpoint`` when that exists.
    fingerprint : mapping
        JSON-ready settings that shape the stage; must be unchanged on resume.
    fit : callable ``(resume) -> (model, TrainingResult or None)``
        Trains the stage; ``resume`` is True when ``loop_checkpoint`` is there to continue.
    save : callable ``(model, folder, stem)``
        Writes the model's files (no pickle).
    load : callable ``(folder, stem) -> model``
        Reads what ``save`` wrote.
    loop_checkpoint : Path or None
        The training loop's ``last.safetensors`` of this stage (``None``: the stage has no
        per-epoch checkpoints, e.g. xgboost).
    max_epochs : int or None
        The stage's ``max_epochs`` now: a finished stage that stopped on ``max_epochs`` with
        fewer epochs continues from its checkpoint instead of being loaded.

    Returns
    -------
    tuple
        ``(model, TrainingResult or None)``.

    Raises
    ------
    TrainingError
        An unreadable marker, or one written with another fingerprint.

    Notes
    -----
    With ``resume=True``:

    * a **finished** stage (its marker exists) is loaded from the checkpoint folder, not
      trained again, whatever stopped it (``max_epochs``, early stopping, the time limit);
    * an **interrupted** stage with a checkpoint of the training loop (``loop_checkpoint``,
      ``last.safetensors``) continues from it (:func:`hepgen.training.train` with
      ``resume=True``);
    * a stage that never started (no checkpoint) starts afresh, and the log says so.

    Layout, under the checkpoint folder (``MODEL_DIR/checkpoints``)::

        finished/STAGE.*             the stage's model, written by ``save`` (safetensors +
                                     JSON, or xgboost's native JSON): no pickle
        finished/done-STAGE.json     the marker, written last and atomically: format,
                                     version, the stage's fingerprint, its TrainingResult
                                     (or null)

    The marker is written after the model files, so a crash in between leaves a stage that
    is trained again from its last checkpoint (the loop restores its final epoch and stops
    at once). The fingerprint (the settings that shape the stage: features, model, seed,
    fixed training settings, number of events) must be unchanged on resume, else
    :class:`TrainingError` names the marker and what differs.  Under torchrun
    (:mod:`hepgen.training.distributed`) every rank runs the stage and rank 0 alone writes
    its files.
    """
    from hepgen.training import TrainingResult
    from hepgen.training.distributed import is_main_process

    if checkpoints is None:
        if fit is None:
            raise ValueError("run_stage without a checkpoint folder needs fit")
        return fit(False)
    marker_path = _marker(checkpoints, stage)
    folder = checkpoints / FINISHED
    has_loop = loop_checkpoint is not None and loop_checkpoint.is_file()
    if resume and marker_path.is_file():
        marker = _read_marker(marker_path, stage, fingerprint)
        result = marker.get("training")
        n_done = len(result["history"]) if isinstance(result, dict) else 0
        grown = (
            isinstance(result, dict)
            and result.get("stopped") == "max_epochs"
            and max_epochs is not None
            and max_epochs > n_done
            and has_loop
        )
        if not grown:
            log.info("stage %s: finished earlier, loaded from %s", stage, folder)
            training = None if result is None else TrainingResult(**result)
            return load(folder, stage), training
        log.info(
            "stage %s: max_epochs grew from %d to %d, continuing from %s",
            stage,
            n_done,
            max_epochs,
            loop_checkpoint,
        )
    if fit is None:
        raise ValueError("run_stage needs fit for a stage that is not finished")
    writer = is_main_process()  # under torchrun, rank 0 alone writes the stage's files
    if writer:
        marker_path.unlink(missing_ok=True)
    if resume and loop_checkpoint is not None and not has_loop:
        log.info("stage %s: no checkpoint (%s), starting afresh", stage, loop_checkpoint)
    elif resume and loop_checkpoint is None:
        log.info("stage %s: not finished before, training it afresh", stage)
    model, training = fit(resume and has_loop)
    if not writer:
        return model, training
    folder.mkdir(parents=True, exist_ok=True)
    save(model, folder, stage)
    write_json(
        marker_path,
        {
            "format": STAGE_FORMAT,
            "format_version": STAGE_FORMAT_VERSION,
            "stage": stage,
            "fingerprint": json.loads(_canonical(fingerprint)),
            "training": None if training is None else training.to_dict(),
        },
    )
    return model, training
