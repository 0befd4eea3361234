"""The files of an efficiency classifier: ``NAME.json`` (the booster) and ``NAME.meta.json``.

The booster is stored in xgboost's own JSON format (what ``Booster.save_model("name.json")``
writes; no pickle); ``NAME.meta.json`` holds the format and its version, the settings, the
feature names, the training summary and the SHA-256 of the booster file, which lets loading
detect a booster and metadata from different saves.  This module checks names and parses the
metadata; :class:`~hepgen.models.efficiency.EfficiencyModel` writes and reads both files.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from hepgen.errors import InputError, require
from hepgen.settings.models import EfficiencySettings

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "SETTINGS", "check_name", "read_booster", "read_meta"]

#: Version of the ``name.meta.json`` layout written by
#: :meth:`~hepgen.models.efficiency.EfficiencyModel.save`.
FORMAT_VERSION = 1

#: The ``format`` entry of ``name.meta.json``.
FORMAT_NAME = "hepgen-efficiency"

#: The constructor settings of :class:`~hepgen.models.efficiency.EfficiencyModel`, all stored.
SETTINGS = tuple(EfficiencySettings.model_fields)


def check_name(name: Any) -> None:
    """``name`` must be a file stem of letters, digits, ``-``, ``_`` and ``.`` (InputError)."""
    ok = (
        isinstance(name, str)
        and name
        and name not in (".", "..")
        and all(ch.isalnum() or ch in "-_." for ch in name)
    )
    if not ok:
        raise InputError(
            f"efficiency model name {name!r}: use letters, digits, '-', '_' and '.' only (a "
            "file stem, not a path)"
        )


def read_meta(path: Path) -> dict[str, Any]:
    """Parse and check ``name.meta.json``; every problem is an InputError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(
            f"{path}: efficiency model metadata not found (is {path.parent} a model directory "
            "written by EfficiencyModel.save?)"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read the efficiency model metadata: {err}") from None
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(
            f"{path}: corrupt JSON at line {err.lineno}, column {err.colno}: {err.msg}"
        ) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise InputError(f'{path}: not an efficiency model file (no "format": "{FORMAT_NAME}")')
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        newer = isinstance(version, int) and version > FORMAT_VERSION
        raise InputError(
            f"{path}: format_version {version!r}, this hepgen reads version {FORMAT_VERSION}"
            + ("; the model was written by a newer hepgen, upgrade hepgen" if newer else "")
        )

    def expect(key: str, ok: bool, expected: str) -> None:
        if not ok:
            raise InputError(f"{path}: key {key!r} is missing or invalid, expected {expected}")

    kind = meta.get("kind")
    expect("kind", kind in ("xgboost", "constant"), "'xgboost' or 'constant'")
    n_features = meta.get("n_features")
    expect("n_features", isinstance(n_features, int) and n_features >= 1, "an integer >= 1")
    names = meta.get("feature_names")
    expect(
        "feature_names",
        isinstance(names, list)
        and len(names) == n_features
        and all(isinstance(s, str) for s in names),
        f"a list of {n_features} strings",
    )
    settings = meta.get("settings")
    expect(
        "settings",
        isinstance(settings, dict) and all(k in settings for k in SETTINGS),
        "a dict with " + ", ".join(SETTINGS),
    )
    expect("summary", isinstance(meta.get("summary"), dict), "a dict")
    if kind == "constant":
        c = meta.get("constant")
        expect(
            "constant",
            isinstance(c, int | float) and not isinstance(c, bool) and 0.0 <= c <= 1.0,
            "a probability in [0, 1]",
        )
    else:
        booster_file = meta.get("booster_file")
        expect(
            "booster_file",
            isinstance(booster_file, str)
            and booster_file not in ("", ".", "..")
            and Path(booster_file).name == booster_file
            and "\\" not in booster_file,
            "a file name in the same folder",
        )
        expect("booster_sha256", isinstance(meta.get("booster_sha256"), str), "a hex digest")
    return meta


def read_booster(directory: Path, meta_path: Path, meta: dict[str, Any]) -> Any:
    """The xgboost booster named by the checked metadata ``meta`` of an ``"xgboost"`` model.

    Raises
    ------
    InputError
        The booster file is missing or unreadable, does not match the SHA-256 recorded in
        ``meta_path``, is not an xgboost model, or takes another number of features.
    MissingDependencyError
        xgboost is not installed.
    """
    xgb: Any = require("xgboost", f"the efficiency model of '{directory}'")

    booster_path = directory / str(meta["booster_file"])
    try:
        raw = booster_path.read_bytes()
    except FileNotFoundError:
        raise InputError(
            f"{booster_path}: efficiency booster file not found (named in {meta_path.name})"
        ) from None
    except OSError as err:
        raise InputError(f"{booster_path}: cannot read the efficiency booster: {err}") from None
    if hashlib.sha256(raw).hexdigest() != meta["booster_sha256"]:
        raise InputError(
            f"{booster_path}: the booster file does not match its metadata "
            f"({meta_path.name} records another SHA-256): the file was changed, truncated "
            "or comes from another save"
        )
    booster = xgb.Booster()
    try:
        booster.load_model(bytearray(raw))
    except xgb.core.XGBoostError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise InputError(f"{booster_path}: not a valid xgboost model: {first}") from None
    if booster.num_features() != meta["n_features"]:
        raise InputError(
            f"{booster_path}: the booster takes {booster.num_features()} features, the "
            f"metadata lists {meta['n_features']}"
        )
    return booster
