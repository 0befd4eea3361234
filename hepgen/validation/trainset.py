"""Where a candidate's training sample is: given, from the model card, or from the candidate.

The data-copying test (:mod:`hepgen.validation.memorisation`) needs the rows the generator was
trained on.  ``hepgen validate`` finds them in this order:

1. ``--train FILE`` (``train=``): the files given;
2. ``--model MODEL_DIR`` (``model=``): the input files recorded in the model card's
   provenance (``hepgen train`` records each file's path and SHA-256);
3. the candidate's ``hepgen_metadata`` (written by ``hepgen generate`` into every output
   file): the model directory it names, when that directory still exists and its hash is the
   one recorded, and then that model's card as in 2.

Files that no longer exist, or whose content changed since training (another SHA-256), are
left out with a note: a test against the wrong training set would say nothing.  A training
file that is the reference itself is refused with a note too: the reference must be held out.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hepgen.errors import InputError

__all__ = ["candidate_model", "training_files"]


def candidate_model(candidate: Any) -> Path | None:
    """The model directory named in a ``hepgen generate`` output's ``hepgen_metadata``, when
    it exists and its hash is the one recorded; else None (never raises).

    Parameters
    ----------
    candidate : path
        One local ROOT file (a URL or a list gives None).
    """
    if not isinstance(candidate, str | os.PathLike) or "://" in str(candidate):
        return None
    try:
        import uproot

        from hepgen.io.writer import METADATA_KEY
        from hepgen.modeldir import model_hash

        with uproot.open(candidate) as f:
            if METADATA_KEY not in f:
                return None
            meta = json.loads(str(f[METADATA_KEY]))
        model = meta.get("model")
        if not model or not Path(model).is_dir():
            return None
        recorded = meta.get("model_hash")
        if recorded and model_hash(model) != recorded:
            return None
        return Path(model)
    except Exception:  # an unreadable or foreign file simply names no model
        return None


def _card_inputs(model: Any) -> tuple[list[dict[str, Any]], str]:
    """The provenance input records of a model (directory or fitted FastSim) and its name."""
    if hasattr(model, "sample") and hasattr(model, "config"):
        prov = getattr(model, "provenance_", None) or {}
        source = getattr(model, "source_", None)
        return list(prov.get("inputs") or []), str(source or "the given fast simulation")
    from hepgen.modeldir import read_card

    _, card = read_card(model)
    prov = card.get("provenance") or {}
    return list(prov.get("inputs") or []), f"model '{model}'"


def _recorded_files(model: Any) -> tuple[list[Path], list[str]]:
    """The model's training files that still exist with their recorded content."""
    from hepgen.provenance import file_sha256

    records, name = _card_inputs(model)
    files, notes = [], []
    for rec in records:
        path = rec.get("path")
        if not path:
            notes.append(f"{name}: training input {rec.get('url')} is remote, not read")
            continue
        p = Path(path)
        if not p.is_file():
            notes.append(f"{name}: training file '{p}' no longer exists")
            continue
        sha = rec.get("sha256")
        if sha and file_sha256(p) != sha:
            notes.append(f"{name}: training file '{p}' changed since training (SHA-256)")
            continue
        files.append(p)
    if not records:
        notes.append(f"{name}: its card records no training files")
    return files, notes


def training_files(
    train: str | os.PathLike | Sequence[str | os.PathLike] | None,
    model: Any,
    candidate: Any,
    reference: Any = None,
) -> tuple[list[Path], list[str]]:
    """The generator's training files and notes on how they were found.

    Parameters
    ----------
    train : path, sequence of paths or None
        Given files (checked to exist).
    model : path, FastSim or None
        A model whose card names its training files.
    candidate : path
        The candidate file, whose ``hepgen_metadata`` may name the model.
    reference : path or None
        The reference file: a training file that is the reference is left out (with a note).

    Returns
    -------
    files : list of Path
        Empty when none was found (the data-copying test is then not run).
    notes : list of str

    Raises
    ------
    InputError
        A given ``train`` file that does not exist.
    """
    notes: list[str] = []
    if train is not None:
        given = [train] if isinstance(train, str | os.PathLike) else list(train)
        files = [Path(f) for f in given]
        for f in files:
            if not f.is_file():
                raise InputError(f"training file '{f}' (--train): no such file")
        how = "given (--train)"
    else:
        found = model if model is not None else candidate_model(candidate)
        if found is None:
            return [], []
        files, notes = _recorded_files(found)
        if model is None:
            how = f"from the card of model '{found}', named in the candidate's hepgen_metadata"
        else:
            how = "from the model's card"
    if reference is not None and isinstance(reference, str | os.PathLike):
        ref = Path(reference).resolve()
        same = [f for f in files if f.resolve() == ref]
        if same:
            notes.append(
                f"training file '{same[0]}' is the reference itself: the data-copying test "
                "needs a reference held out from training, not run"
            )
            return [], notes
    if files:
        shown = ", ".join(str(f) for f in files[:3]) + (" ..." if len(files) > 3 else "")
        notes.append(f"training sample {how}: {shown}")
    return files, notes
