"""Where input files come from: local paths, glob patterns and URLs, opened with uproot.

Local paths and glob patterns are expanded and checked here (a missing file, a pattern that
matches nothing, a folder, a file that is not ROOT); URLs go to uproot's own handlers:
``http://`` and ``https://`` to :class:`uproot.source.http.HTTPSource` (byte range requests,
standard library only), ``root://`` to uproot's XRootD handler (needs the XRootD Python
bindings), ``file://`` URLs are local paths. An unreachable URL is one
:class:`~hepgen.errors.InputError` line naming it. :mod:`hepgen.io.reader` builds on this.
"""

from __future__ import annotations

import glob
import os
import re
import struct
import urllib.parse
import urllib.request
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uproot

from hepgen.errors import InputError

__all__ = [
    "READ_ERRORS",
    "REMOTE_SCHEMES",
    "URL_TIMEOUT",
    "Files",
    "PathLike",
    "Source",
    "as_source",
    "is_url",
    "one_line",
    "open_file",
    "read_file_list",
    "resolve_files",
    "uproot_reason",
]

PathLike = str | os.PathLike
Files = PathLike | Sequence[PathLike]
#: One input file as :func:`resolve_files` returns it: a local :class:`~pathlib.Path`, or the
#: URL of a remote file as a ``str`` (a ``Path`` would merge the ``//`` of ``root://host//``).
Source = Path | str

#: URL schemes of remote inputs, read by uproot's own handlers (``file://`` is a local path).
REMOTE_SCHEMES = ("root", "http", "https")
_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://")
#: Seconds uproot waits for a remote server before the input is reported unreachable.
URL_TIMEOUT = 30.0


def is_url(path: object) -> bool:
    """True for a string that starts with a URL scheme (``https://...``); paths are never URLs."""
    return isinstance(path, str) and _URL.match(path) is not None


def as_source(text: str) -> Source:
    """A remote URL as is, a ``file://`` URL as its local path, anything else as a path.

    Raises
    ------
    InputError
        A URL scheme that hepgen cannot read, or a ``file://`` URL naming another host.
    """
    match = _URL.match(text)
    if match is None:
        return Path(text)
    scheme = match.group(1).lower()
    if scheme in REMOTE_SCHEMES:
        return text
    if scheme == "file":
        parsed = urllib.parse.urlparse(text)
        if parsed.netloc not in ("", "localhost"):
            raise InputError(
                f"input '{text}': a file:// URL names a local file (file:///path), not one on "
                f"host '{parsed.netloc}'"
            )
        return Path(urllib.request.url2pathname(parsed.path))
    raise InputError(
        f"input '{text}': URL scheme '{scheme}://' is not supported; expected a local path or "
        "a root://, http://, https:// or file:// URL"
    )


def read_file_list(path: str | os.PathLike) -> list[str]:
    """The entries of a text file of input paths (``@inputs.txt`` on the command line).

    One path, glob pattern or URL per line; blank lines and lines starting with ``#`` are
    skipped; a relative path is relative to the list file's folder (so a list travels with
    its files).

    Raises
    ------
    InputError
        A missing or unreadable list, or a list without any entry.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(
            f"file list '{path}' cannot be read ({type(err).__name__}: {err}); expected a "
            "text file with one ROOT file path or URL per line"
        ) from None
    entries = [line.strip() for line in lines]
    entries = [e for e in entries if e and not e.startswith("#")]
    if not entries:
        raise InputError(f"file list '{path}' lists no file (one path or URL per line)")
    return [
        e if is_url(e) or Path(e).is_absolute() else os.fspath(path.parent / e) for e in entries
    ]


def _expand_lists(files: Sequence[str | os.PathLike]) -> list[str | os.PathLike]:
    """Replace every ``@list.txt`` item by the entries of that file list."""
    out: list[str | os.PathLike] = []
    for item in files:
        if isinstance(item, str) and item.startswith("@"):
            out.extend(read_file_list(item[1:]))
        else:
            out.append(item)
    return out


def resolve_files(files: Files) -> list[Source]:
    """Expand paths and glob patterns into an ordered list of existing files; keep URLs.

    Parameters
    ----------
    files : path-like or sequence of path-like
        Files or glob patterns (``"data/*.root"``); a pattern's matches are sorted;
        ``"@list.txt"`` stands for the paths listed in that text file
        (:func:`read_file_list`). Strings
        starting with ``root://``, ``http://`` or ``https://`` are remote files, passed on to
        uproot unchanged (not globbed; reachability is checked when they are opened);
        ``file://`` URLs are local paths.

    Returns
    -------
    list of Path or str
        Local files as :class:`~pathlib.Path`, remote files as their URL.

    Raises
    ------
    InputError
        If a file does not exist, a pattern matches nothing, a URL scheme is not supported,
        or no file is given.
    """
    if isinstance(files, str | os.PathLike):
        files = [files]
    out: list[Source] = []
    for item in _expand_lists(files):
        source = as_source(item) if isinstance(item, str) else Path(item)
        if isinstance(source, str):
            out.append(source)
            continue
        text = os.fspath(source)
        if glob.has_magic(text) and not source.exists():
            matches = sorted(glob.glob(text))
            if not matches:
                raise InputError(f"no file matches the pattern '{text}'")
            out.extend(Path(m) for m in matches)
        else:
            if not source.exists():
                raise InputError(f"file '{text}' does not exist")
            if source.is_dir():
                raise InputError(f"'{text}' is a directory, expected a ROOT file")
            out.append(source)
    if not out:
        raise InputError("no input file given")
    return out


#: What uproot (and the decompressors under it) raise for a truncated, corrupt or non-ROOT
#: file.  Only calls into uproot are wrapped, so programming errors elsewhere still show a
#: traceback.  ``RuntimeError`` covers lz4/zstd decompression errors.
READ_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    EOFError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    RuntimeError,
    struct.error,
    zlib.error,
    uproot.deserialization.DeserializationError,
)


def one_line(text: object) -> str:
    """``text`` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(str(text).split())


def uproot_reason(err: BaseException) -> str:
    """uproot's message on one line, without the file path it appends (already named)."""
    return one_line(err).split(" for file path ")[0].split(" in file ")[0]


def _open_local(path: Path) -> Any:
    """uproot's handle of a local file, after checking that it exists and is ROOT."""
    if not path.exists():
        raise InputError(f"file '{path}' does not exist")
    if path.is_dir():
        raise InputError(f"'{path}' is a directory, expected a ROOT file")
    try:
        with open(path, "rb") as stream:
            magic = stream.read(4)
    except OSError as err:
        raise InputError(f"file '{path}' cannot be opened: {one_line(err)}") from None
    if magic != b"root":
        raise InputError(
            f"file '{path}' is not a ROOT file (it does not start with the ROOT signature "
            "'root'); expected a ROOT file with a TTree or an RNTuple"
        )
    try:
        return uproot.open(path)
    except READ_ERRORS as err:  # uproot raises several types for non-ROOT content
        raise InputError(
            f"file '{path}' is not a readable ROOT file, it may be truncated "
            f"({type(err).__name__}: {uproot_reason(err)})"
        ) from None


class _HTTPSource(uproot.source.http.HTTPSource):
    """uproot's HTTP source, asked for no byte range when every basket a chunk needs is read
    already (uproot 5.7.7's ``HTTPSource.chunks`` raises ``IndexError`` on an empty list)."""

    def chunks(self, ranges: Any, notifications: Any) -> Any:
        if len(ranges) == 0:
            return []
        return super().chunks(ranges, notifications)


def _open_url(url: str) -> Any:
    """uproot's handle of a remote file; one-line errors naming the URL.

    ``http(s)://`` goes to uproot's own :class:`uproot.source.http.HTTPSource` (byte range
    requests, standard library only); ``root://`` to uproot's XRootD handler.
    """
    options: dict[str, Any] = {"timeout": URL_TIMEOUT}
    if url.lower().startswith(("http://", "https://")):
        options["handler"] = _HTTPSource
    try:
        # a dict {file: object path} keeps uproot from reading a ':port' as an object path
        return uproot.open({url: None}, **options)
    except ImportError as err:
        raise InputError(
            f"cannot open '{url}': reading this URL needs a package that is not installed "
            f"({one_line(err)}); for root:// install the XRootD Python bindings "
            "(pip install fsspec-xrootd)"
        ) from None
    except Exception as err:  # network and server errors of every kind
        reason = one_line(err).split(" Files may be specified as:")[0]
        raise InputError(
            f"cannot open '{url}': the URL is unreachable or not a ROOT file "
            f"({type(err).__name__}: {reason})"
        ) from None


def open_file(path: PathLike) -> tuple[Source, Any]:
    """Open a local file or a URL with uproot.

    Returns
    -------
    (Path or str, uproot.ReadOnlyDirectory)
        The file as :func:`as_source` gives it, and uproot's handle.

    Raises
    ------
    InputError
        A missing or unreadable local file, a file that is not ROOT, an unreachable URL.
    """
    source = as_source(path) if isinstance(path, str) else Path(path)
    handle = _open_url(source) if isinstance(source, str) else _open_local(source)
    return source, handle
