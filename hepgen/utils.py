"""Small shared helpers: atomic file writes and JSON that never contains NaN."""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "default_file_mode",
    "to_jsonable",
    "write_json",
]


def check_weights(weights: Any, n: int, name: str = "sample") -> np.ndarray | None:
    """Per-event weights as float64, checked: ``None`` stays ``None``; otherwise shape
    ``(n,)``, finite, with a positive sum (negative entries such as sWeights are allowed).

    Raises
    ------
    InputError
        The shape, the count of NaN/inf, or the sum, prefixed by ``name``.
    """
    from hepgen.errors import InputError

    if weights is None:
        return None
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise InputError(f"{name}: weights have shape {w.shape}, expected ({n},), one per event")
    bad = n - int(np.count_nonzero(np.isfinite(w)))
    if bad:
        raise InputError(f"{name}: {bad} of {n} weights are NaN or inf")
    total = float(w.sum())
    if not total > 0:
        raise InputError(f"{name}: weights sum to {total:g}; the sum must be positive")
    return w


def default_file_mode() -> int:
    """The permissions a plain ``open(path, "w")`` would give: 0o666 less the umask.

    ``tempfile.mkstemp`` creates files readable by the owner only (0o600); outputs renamed
    from temporary files get these permissions instead, so shared outputs stay readable.
    """
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def to_jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays and tuples to plain JSON types; NaN and inf become None."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [to_jsonable(v) for v in value.tolist()]
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return os.fspath(value)
    return value


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    The temporary file is created in the target's folder (so ``os.replace`` is a rename on the
    same file system), synced to disk, given the permissions of a plain ``open()`` (umask), and
    renamed over ``path``; on any error it is removed and ``path`` is left untouched.  Every
    writer of hepgen goes through here (JSON, safetensors, xgboost JSON, plots).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "out.txt"
    >>> with atomic_path(target) as tmp:
    ...     _ = pathlib.Path(tmp).write_text("done")
    >>> target.read_text()
    'done'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write bytes to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write text (UTF-8) to ``path`` atomically (see :func:`atomic_path`)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON atomically; NaN/inf are written as null."""
    return atomic_write_text(path, json.dumps(to_jsonable(data), indent=2, allow_nan=False) + "\n")
