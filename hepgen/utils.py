"""Small shared helpers: atomic file writes and JSON that never contains NaN.

Every file hepgen writes goes through :func:`atomic_path` or :func:`atomic_directory`, so that
a reader (or a run killed half-way) sees either the old content or the complete new one, with
the permissions a plain ``open()`` would give.  The helpers never change the caller's process
state: the umask is read, never set.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "atomic_directory",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "default_file_mode",
    "to_jsonable",
    "write_json",
]


def default_file_mode() -> int:
    """The permissions a plain ``open(path, "w")`` would give: 0o666 less the umask.

    ``tempfile.mkstemp`` creates files readable by the owner only (0o600); outputs renamed
    from temporary files get these permissions instead, so shared outputs stay readable.  The
    umask is read without changing it (see :func:`_umask`).

    Returns
    -------
    int
        A mode such as ``0o644`` (umask 022).

    Examples
    --------
    >>> default_file_mode() & 0o600  # the owner can always read and write
    384
    """
    return 0o666 & ~_umask()


#: Where Linux (>= 4.7) reports a process's umask.
_PROC_STATUS = "/proc/self/status"


def _umask() -> int:
    """The process's umask, read without ever changing it.

    ``os.umask`` has no getter: setting it and setting it back would change the caller's
    process state for a moment, a race for the caller's other threads (their files created
    in between get the wrong permissions).  Linux reports it in ``/proc/self/status``;
    elsewhere a probe file is created with mode 0o777 in the temporary folder, and the bits
    the kernel removed are the umask.
    """
    try:
        with open(_PROC_STATUS, encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return _probe_umask()


def _probe_umask() -> int:
    """The umask as the kernel applies it to a new file (mode 0o777) in the temporary folder."""
    import secrets
    import tempfile

    path = os.path.join(tempfile.gettempdir(), f".hepgen-umask-{secrets.token_hex(8)}")
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o777)
    try:
        mode = os.fstat(fd).st_mode & 0o777
    finally:
        os.close(fd)
        os.unlink(path)
    return 0o777 & ~mode


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
    writer of hepgen goes through here (JSON, safetensors, xgboost JSON, plots). The temporary
    name is hepgen's own (:func:`hepgen.outputs.make_temp_file`): stale ones of a killed run
    for the same target are removed first, with a warning.

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
    from hepgen.outputs import make_temp_file

    tmp = os.fspath(make_temp_file(path, suffix=suffix))
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


#: ``renameat2`` flag of Linux (>= 3.15): swap two paths atomically.
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange_paths(a: Path, b: Path) -> bool:
    """Swap ``a`` and ``b`` in one step with Linux ``renameat2(RENAME_EXCHANGE)`` (via libc).

    Returns False where the call does not exist (not Linux, old glibc or kernel, a file system
    without support), so that the caller falls back to two renames.
    """
    import ctypes
    import errno
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_int,
        ctypes.c_char_p,
        ctypes.c_uint,
    ]
    renameat2.restype = ctypes.c_int
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), os.fspath(b))


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty hidden folder beside ``path``; on success it replaces ``path`` whole.

    The folder is built as ``.{name}.hepgen-tmp-{host}-{pid}-{random}.dir`` in ``path``'s
    parent (same file system), then swapped with an existing ``path`` in one step
    (``renameat2(RENAME_EXCHANGE)`` on Linux; elsewhere the old folder is renamed aside and the
    new one renamed in), and the old content is removed.  A reader sees either the complete
    old folder or the complete new one, never a mix.  On any error (or a signal that Python
    sees) the hidden folder is removed and ``path`` is left untouched.  Hidden folders of this
    naming left by a killed writer (SIGKILL) are removed at the next call for the same
    ``path``, with a warning naming them; nothing else is ever removed.  Whatever ``path``
    held before is replaced: the caller must check that it owns ``path``.

    Parameters
    ----------
    path : path-like
        The final folder (created; its parent too).

    Yields
    ------
    Path
        The temporary folder to fill (permissions of a plain ``mkdir``).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "report"
    >>> with atomic_directory(target) as tmp:
    ...     _ = (tmp / "a.txt").write_text("new")
    >>> sorted(p.name for p in target.iterdir())
    ['a.txt']
    """
    import shutil
    import tempfile

    from hepgen.outputs import clean_stale_temps, temp_prefix

    path = Path(path)
    if path.exists() and not path.is_dir():
        from hepgen.errors import InputError

        raise InputError(f"output folder '{path}' is an existing file, expected a folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temps(path, folders=True)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(path), suffix=".dir", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if not path.exists():
            os.rename(tmp, path)
        elif _exchange_paths(tmp, path):
            shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old content
        else:
            aside = Path(f"{tmp}.old")
            os.rename(path, aside)
            os.rename(tmp, path)
            shutil.rmtree(aside, ignore_errors=True)
        with contextlib.suppress(OSError):
            fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
