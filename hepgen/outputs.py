"""Output paths checked before any work, and the temporary files hepgen writes beside them.

Every command calls :func:`check_output_file` or :func:`check_output_dir` on its outputs
*before* it reads data or trains anything, so that a path that cannot be written, a file
where a folder is expected (or the reverse), an output that is also an input, or an existing
output without ``--overwrite`` ends the command at once with a one-line
:class:`~hepgen.errors.InputError` instead of after minutes of work.

Temporary files
---------------
Outputs are written to a temporary file beside the target and renamed onto it when complete
(:func:`hepgen.utils.atomic_path`, :class:`hepgen.io.writer.RootWriter`). Their names are
unmistakably hepgen's::

    .{target name}.hepgen-tmp-{host tag}-{pid}-{8 random characters}{suffix}

(``host tag``: 6 hex digits of the SHA-1 of the host name; ``suffix``: ``.tmp``,
``.tmp.root``, ``.png``, ...). A process killed with SIGKILL cannot remove its temporary
file; the next write to the same target (:func:`make_temp_file`) removes the ones of exactly
this pattern whose writer, a process of this host, is no longer alive, and logs a warning
naming them. Files of any other name, and files of live or foreign-host writers, are never
touched.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterable
from pathlib import Path

from hepgen.errors import InputError

__all__ = [
    "TEMP_TAG",
    "check_output_dir",
    "check_output_file",
    "clean_stale_temps",
    "make_temp_file",
    "temp_prefix",
]

log = logging.getLogger(__name__)

#: Marker in the name of every temporary file hepgen creates.
TEMP_TAG = "hepgen-tmp"

PathLike = str | os.PathLike


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode("utf-8")).hexdigest()[:6]


def temp_prefix(target: PathLike) -> str:
    """The name prefix of this process's temporary files for ``target``.

    Parameters
    ----------
    target : path-like
        The final output path.

    Returns
    -------
    str
        ``".{name}.hepgen-tmp-{host tag}-{pid}-"``; ``tempfile.mkstemp`` appends 8 random
        characters and the suffix.
    """
    return f".{Path(target).name}.{TEMP_TAG}-{_host_tag()}-{os.getpid()}-"


def _temp_pattern(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"\.{re.escape(name)}\.{TEMP_TAG}-(?P<host>[0-9a-f]{{6}})-(?P<pid>[0-9]+)-"
        r"[a-z0-9_]{8}(?:\.[A-Za-z0-9_.]*)?"
    )


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host may still run (conservative: True when unsure)."""
    if pid <= 0 or pid == os.getpid() or os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, another user's
        return True
    return True


def clean_stale_temps(target: PathLike, folders: bool = False) -> list[Path]:
    """Remove hepgen temporary files (or folders) of ``target`` left by writers that no
    longer run.

    Only entries in ``target``'s folder whose name matches hepgen's temporary-file pattern for
    exactly this target (see the module docstring), written on this host by a process that
    is no longer alive, are removed; a warning names them.

    Parameters
    ----------
    target : path-like
        The final output path.
    folders : bool
        Remove temporary folders (:func:`hepgen.utils.atomic_directory`, ``*.dir`` and
        ``*.dir.old``) instead of files; never a symlink.

    Returns
    -------
    list of Path
        The removed files (empty when there were none).
    """
    target = Path(target)
    folder = target.parent
    pattern = _temp_pattern(target.name)
    start = f".{target.name}.{TEMP_TAG}-"
    host = _host_tag()
    removed: list[Path] = []
    try:
        names = [n for n in os.listdir(folder) if n.startswith(start)]
    except OSError:
        return removed
    for name in sorted(names):
        match = pattern.fullmatch(name)
        if match is None or match["host"] != host or _pid_alive(int(match["pid"])):
            continue
        path = folder / name
        try:
            if path.is_symlink() or not (path.is_dir() if folders else path.is_file()):
                continue
            if folders:
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError:
            continue
        removed.append(path)
    if removed:
        log.warning(
            "removed %d stale temporary %s of an interrupted hepgen run writing '%s': %s",
            len(removed),
            "folder(s)" if folders else "file(s)",
            target,
            ", ".join(p.name for p in removed),
        )
    return removed


def make_temp_file(target: PathLike, suffix: str = ".tmp") -> Path:
    """Create an empty temporary file beside ``target`` (after cleaning stale ones).

    Parameters
    ----------
    target : path-like
        The final output path; its folder must exist.
    suffix : str
        End of the temporary name (``".tmp"``, ``".tmp.root"``, ``".png"``).

    Returns
    -------
    Path
        The new file, mode 0o600, named after :func:`temp_prefix`.
    """
    target = Path(target)
    clean_stale_temps(target)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(target), suffix=suffix, dir=target.parent)
    os.close(fd)
    return Path(tmp)


def _input_paths(inputs: Iterable[PathLike]) -> list[Path]:
    """Local paths of the inputs: glob patterns expanded, URLs left out."""
    paths: list[Path] = []
    for item in inputs:
        text = os.fspath(item)
        if "://" in text:
            continue
        if not os.path.exists(text) and glob.has_magic(text):
            paths.extend(Path(p) for p in glob.glob(text))
        else:
            paths.append(Path(text))
    return paths


def _is_input(path: Path, inputs: Iterable[PathLike]) -> Path | None:
    target = path.resolve()
    for item in _input_paths(inputs):
        try:
            if item.resolve() == target or (
                item.exists() and path.exists() and os.path.samefile(item, path)
            ):
                return item
        except OSError:
            continue
    return None


def _check_folder(path: Path, what: str) -> None:
    """The folder that will hold ``path`` exists or can be created, and is writable."""
    parent = path.parent
    ancestor = parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"cannot write {what} '{path}': '{ancestor}' is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {what} '{path}': no permission to write in '{ancestor}'")
    # os.access says yes to root on read-only or virtual file systems (/sys, /proc, a
    # read-only mount): a real, immediately removed probe file settles it
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{TEMP_TAG}-probe-{os.getpid()}-", dir=ancestor)
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise InputError(
            f"cannot write {what} '{path}': cannot create files in '{ancestor}' ({reason})"
        ) from None
    os.close(fd)
    os.unlink(probe)


def check_output_file(
    path: PathLike,
    *,
    inputs: Iterable[PathLike] = (),
    overwrite: bool = False,
    what: str = "output",
) -> Path:
    """Check, before any work, that ``path`` can be written as a new output file.

    Parameters
    ----------
    path : path-like
        The output file.
    inputs : iterable of path-like
        Input files (or glob patterns) of the job; symlinks are resolved and existing files
        compared with :func:`os.path.samefile`.
    overwrite : bool
        Allow replacing an existing file.
    what : str
        How the message names the output ("output", "JSON summary").

    Returns
    -------
    Path
        ``path`` as a :class:`~pathlib.Path`.

    Raises
    ------
    InputError
        If ``path`` is an input of the job, is an existing folder, exists and ``overwrite``
        is false, or its folder cannot be created or written.
    """
    path = Path(path)
    if not os.fspath(path) or path.name in ("", ".", ".."):
        raise InputError(f"{what} '{path}' is not a file name")
    same = _is_input(path, inputs)
    if same is not None:
        raise InputError(
            f"{what} '{path}' is also an input of this job ('{same}'); hepgen "
            "never overwrites its input: choose another output path"
        )
    if path.is_dir():
        raise InputError(f"{what} '{path}' is a directory, expected a file path")
    if path.exists() or path.is_symlink():
        if not path.is_file():
            raise InputError(f"{what} '{path}' exists and is not a regular file")
        if not overwrite:
            raise InputError(
                f"{what} '{path}' already exists; use --overwrite to replace it, "
                "or choose another path"
            )
    _check_folder(path, what)
    return path


def check_output_dir(
    path: PathLike,
    *,
    inputs: Iterable[PathLike] = (),
    overwrite: bool = True,
    contents: Iterable[str] = (),
    what: str = "output folder",
) -> Path:
    """Check, before any work, that ``path`` can be used as an output folder.

    Parameters
    ----------
    path : path-like
        The output folder; created later by the writer if missing.
    inputs : iterable of path-like
        Input files (or glob patterns) of the job: none may be ``path`` itself nor one of
        ``contents`` inside it.
    overwrite : bool
        When false, a folder already holding any of ``contents`` is refused.
    contents : iterable of str
        Names of the files the command writes into the folder (``"report.html"``,
        ``"metrics.json"``).
    what : str
        How the message names the folder ("report folder", "model directory").

    Returns
    -------
    Path
        ``path`` as a :class:`~pathlib.Path`.

    Raises
    ------
    InputError
        If ``path`` is an existing file (or an input), an input would be overwritten, the
        folder holds outputs and ``overwrite`` is false, or it cannot be created or written.
    """
    path = Path(path)
    if not os.fspath(path):
        raise InputError(f"{what} is empty")
    contents = list(contents)
    same = _is_input(path, inputs)
    if same is not None:
        raise InputError(
            f"{what} '{path}' is also an input of this job ('{same}'); choose another folder"
        )
    if path.exists() and not path.is_dir():
        raise InputError(f"{what} '{path}' is an existing file, expected a folder")
    for name in contents:
        same = _is_input(path / name, inputs)
        if same is not None:
            raise InputError(
                f"{what} '{path}' would overwrite the input '{same}'; hepgen "
                "never overwrites its input: choose another folder"
            )
    if not overwrite:
        present = [n for n in contents if (path / n).exists()]
        if present:
            raise InputError(
                f"{what} '{path}' already holds {', '.join(present)}; use "
                "--overwrite to replace it, or choose another folder"
            )
    if path.is_dir():
        _check_folder(path / "x", what)
    else:
        _check_folder(path, what)
    return path
