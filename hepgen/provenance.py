"""Provenance of trained models: input file hashes, seed, package versions, machine.

Stored in ``hepgen-model.json`` (:mod:`hepgen.modeldir`) so that a model can be traced to
the exact inputs and software that produced it, and ``hepgen info`` can show it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import os
import platform
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hepgen.errors import InputError

__all__ = ["PACKAGES", "file_sha256", "package_versions", "provenance"]

#: Packages whose versions are recorded (those that change numbers when they change).
PACKAGES = (
    "hepgen",
    "torch",
    "nflows",
    "numpy",
    "scipy",
    "uproot",
    "awkward",
    "xgboost",
    "xgboost-cpu",
    "scikit-learn",
    "safetensors",
)


def file_sha256(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes, read in chunks (bounded memory), as a hex string.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x"
    >>> _ = p.write_bytes(b"abc")
    >>> file_sha256(p)[:16]
    'ba7816bf8f01cfea'
    """
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            while block := handle.read(chunk_size):
                digest.update(block)
    except OSError as err:
        raise InputError(f"cannot read '{path}' to hash it: {err.strerror}") from None
    return digest.hexdigest()


def package_versions(packages: Iterable[str] = PACKAGES) -> dict[str, str]:
    """Installed versions of ``packages`` (those not installed are left out)."""
    out = {}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def provenance(files: Iterable[str | os.PathLike], seed: int, **extra: Any) -> dict[str, Any]:
    """The provenance record of a training run.

    Parameters
    ----------
    files : iterable of path-like
        Input ROOT files (hashed; the path, size and modification time are recorded too);
        URLs are recorded as ``{"url": ..., "sha256": None}``.
    seed : int
        The run's random seed.
    **extra
        More keys (e.g. the config file name).
    """
    records: list[dict[str, Any]] = []
    for f in files:
        if isinstance(f, str) and "://" in f:  # a remote input: not downloaded to be hashed
            records.append({"url": f, "sha256": None})
            continue
        p = Path(f)
        stat = p.stat()
        records.append(
            {
                "path": os.fspath(p.resolve()),
                "sha256": file_sha256(p),
                "bytes": stat.st_size,
                "modified": _dt.datetime.fromtimestamp(stat.st_mtime, _dt.timezone.utc).isoformat(),
            }
        )
    return {
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "inputs": records,
        "seed": int(seed),
        "versions": package_versions(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **extra,
    }
