"""Write events to ROOT TTrees or RNTuples in NanoAOD layout, atomically, never onto inputs.

Jagged fields with a common collection prefix and the same per-event counts (``Jet_pt``,
``Jet_eta``) are written as one collection with a single counter branch (``nJet``), the layout
that NanoAOD readers expect.  :class:`RootWriter` writes to a temporary name and renames it
into place when complete, so a crash never leaves a truncated file; a path that is an input of
the job or cannot be written is refused before anything is written.  ``fmt="rntuple"`` writes
an RNTuple instead; TTree is the default.  Atomic writes, counters (dtypes, and what a round
trip between the two formats keeps) and the format choice are described in ``docs/data.md``,
section "Writing ROOT files".

By default the writer converts and compresses on a thread of its own (``background=True``):
:meth:`RootWriter.extend` checks and arranges a chunk, hands it over through a queue of one
chunk and returns, so the caller computes the next chunk while this one is compressed
(zlib and lz4 release the GIL) and written.  The chunks are written in order, the file is
the same; an error of the writing thread is raised by the next :meth:`~RootWriter.extend` or
by the end of the ``with`` block, and the temporary file is then removed.
"""

from __future__ import annotations

import os
import queue
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Literal

import awkward as ak
import numpy as np
import uproot

from hepgen.errors import InputError
from hepgen.outputs import check_output_file, make_temp_file
from hepgen.utils import default_file_mode

__all__ = [
    "FORMATS",
    "METADATA_KEY",
    "OutputFormat",
    "RootWriter",
    "check_format",
    "check_local_output",
    "collection_of",
    "group_collections",
    "rntuple_fields",
    "write_events",
]

OutputFormat = Literal["ttree", "rntuple"]
#: The formats :class:`RootWriter` writes.
FORMATS: tuple[str, ...] = ("ttree", "rntuple")
#: Key of the JSON text (a ``TObjString``) that hepgen's productions write beside the tree:
#: the command, the model and its hash, the seed and the sampling settings of the file.
METADATA_KEY = "hepgen_metadata"


def check_format(fmt: object, what: str = "output format") -> OutputFormat:
    """``fmt`` if it is ``"ttree"`` or ``"rntuple"`` (any case); else :class:`InputError`."""
    text = fmt.lower() if isinstance(fmt, str) else fmt
    if text not in FORMATS:
        raise InputError(f"{what} {fmt!r} is not known; expected 'ttree' or 'rntuple'")
    return text  # type: ignore[return-value]


#: A URL, also after ``pathlib.Path`` has merged its ``//`` (``https:/host/f.root``); a
#: one-letter scheme would be a Windows drive.
_URL_LIKE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]+:/")


def check_local_output(path: str | os.PathLike) -> Path:
    """``path`` as a :class:`~pathlib.Path`; :class:`InputError` if it is a URL.

    hepgen reads inputs from URLs but writes its outputs to local paths only.
    """
    text = os.fspath(path)
    if _URL_LIKE.match(text):
        raise InputError(
            f"output '{text}' is a URL; hepgen writes its outputs to local paths only "
            "(write locally, then copy the file)"
        )
    return Path(text)


def collection_of(name: str) -> str:
    """Return the collection prefix of a branch name: ``"Jet_pt" -> "Jet"``.

    A name without an underscore is its own collection.
    """
    return name.split("_", 1)[0]


def _is_jagged(array: ak.Array) -> bool:
    return array.ndim > 1


def _check_writable(name: str, array: ak.Array) -> None:
    layout_type = str(ak.type(array))
    if "?" in layout_type or "option" in layout_type:
        raise InputError(
            f"branch '{name}' has missing values (type {layout_type}); ROOT branches cannot "
            "store None: fill or drop them before writing"
        )
    if "string" in layout_type or "union" in layout_type:
        raise InputError(f"branch '{name}' has type {layout_type}, which hepgen does not write")


def _columns_and_collections(
    events: ak.Array | Mapping[str, ak.Array],
) -> tuple[dict[str, ak.Array], dict[str, list[str]]]:
    """The branches of ``events`` and their jagged collections (prefix -> branch names), after
    checking that each branch is writable and each collection shares one counter."""
    fields = list(events.fields) if isinstance(events, ak.Array) else list(events)
    columns = {name: ak.Array(events[name]) for name in fields}
    jagged: dict[str, list[str]] = {}
    for name, array in columns.items():
        _check_writable(name, array)
        if _is_jagged(array):
            jagged.setdefault(collection_of(name), []).append(name)
    for prefix, names in jagged.items():
        counts = [np.asarray(ak.num(columns[n], axis=1)) for n in names]
        for other, c in zip(names[1:], counts[1:], strict=True):
            if not np.array_equal(c, counts[0]):
                event = int(np.flatnonzero(c != counts[0])[0])
                raise InputError(
                    f"collection '{prefix}': branches '{names[0]}' and '{other}' have different "
                    f"numbers of entries in event {event} ({counts[0][event]} vs {c[event]}); "
                    "all branches of a collection must share one counter"
                )
        counter = "n" + prefix
        if counter in columns and not _is_jagged(columns[counter]):
            stored = np.asarray(columns[counter])
            if not np.array_equal(stored.astype(np.int64), counts[0]):
                event = int(np.flatnonzero(stored.astype(np.int64) != counts[0])[0])
                raise InputError(
                    f"collection '{prefix}': counter '{counter}' says {stored[event]} in event "
                    f"{event} but '{names[0]}' has {counts[0][event]} entries"
                )
    return columns, jagged


def group_collections(events: ak.Array | Mapping[str, ak.Array]) -> dict[str, ak.Array]:
    """Arrange flat branch fields into what ``uproot.mktree`` writes as NanoAOD collections.

    Parameters
    ----------
    events : ak.Array or mapping of str to ak.Array
        One record per event whose fields are branch names: scalars (``run``, ``MET_pt``)
        or jagged lists (``Jet_pt``).

    Returns
    -------
    dict of str to ak.Array
        Scalar branches unchanged; jagged branches of one collection zipped into a record
        under the collection name (``"Jet"`` with fields ``pt``, ``eta``, ...), a lone jagged
        branch without a prefix unchanged. Counter branches of written collections
        (``nJet``) are dropped: the writer regenerates them from the lists.

    Raises
    ------
    InputError
        If the branches of one collection differ in their per-event counts.
    """
    columns, jagged = _columns_and_collections(events)
    regenerated = {"n" + prefix for prefix in jagged}
    out: dict[str, ak.Array] = {}
    for name, array in columns.items():
        if not _is_jagged(array) and name not in regenerated:
            out[name] = array
    for prefix, names in jagged.items():
        if names == [prefix]:
            out[prefix] = columns[prefix]
        else:
            out[prefix] = ak.zip({n[len(prefix) + 1 :]: columns[n] for n in names}, depth_limit=2)
    return out


def rntuple_fields(events: ak.Array | Mapping[str, ak.Array]) -> dict[str, ak.Array]:
    """The top-level fields of an RNTuple for ``events``: one per branch, same name and dtype.

    Parameters
    ----------
    events : ak.Array or mapping of str to ak.Array
        As for :func:`group_collections`.

    Returns
    -------
    dict of str to ak.Array
        Every branch in its order, jagged ones packed (list offsets from 0); a collection
        without a counter gets an ``int32`` counter ``n{prefix}`` before its first branch,
        an existing counter is kept as it is (see the module notes).

    Raises
    ------
    InputError
        If the branches of one collection differ in their per-event counts, or a counter
        disagrees with them.
    """
    columns, jagged = _columns_and_collections(events)
    first = {names[0]: prefix for prefix, names in jagged.items()}
    out: dict[str, ak.Array] = {}
    for name, array in columns.items():
        prefix = first.get(name)
        if prefix is not None and "n" + prefix not in columns:
            out["n" + prefix] = ak.Array(np.asarray(ak.num(array, axis=1), dtype=np.int32))
        out[name] = ak.to_packed(array) if _is_jagged(array) else array
    return out


class _WritingThread:
    """Runs the writes of one file in order on a thread, with at most ``depth`` waiting.

    The first error stops the writing: the writes after it are skipped and the error is
    raised in the caller's thread by :meth:`submit` or :meth:`check`.
    """

    def __init__(self, depth: int = 1) -> None:
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._cancelled = False
        self._thread = threading.Thread(target=self._run, name="hepgen-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            task = self._queue.get()
            if task is None:
                return
            if self._error is None and not self._cancelled:
                try:
                    task()
                except BaseException as err:  # raised in the caller's thread
                    self._error = err

    def check(self) -> None:
        """Raise the error of an earlier write, if any."""
        if self._error is not None:
            raise self._error

    def submit(self, task: Callable[[], None]) -> None:
        """Queue a write (waits while ``depth`` writes are waiting)."""
        self.check()
        self._queue.put(task)

    def close(self, cancel: bool = False) -> None:
        """Wait for the queued writes (``cancel``: skip those not yet started)."""
        self._cancelled = cancel
        self._queue.put(None)
        self._thread.join()


class RootWriter:
    """Write one TTree or RNTuple chunk by chunk into a ROOT file, atomically.

    Parameters
    ----------
    path : str or Path
        The output file, a local path (a URL is refused). Written as a temporary file in the
        same folder and renamed onto ``path`` when the ``with`` block ends without an error;
        on an error the temporary file is removed and an existing ``path`` is left as it was.
    tree : str
        Name of the TTree or RNTuple.
    protect : iterable of path-like
        Input files of the job: writing onto one of them raises :class:`InputError`.
    title : str
        The TTree title (the RNTuple description).
    fmt : {"ttree", "rntuple"}
        The format of the output (see the module docstring).
    background : bool
        Convert, compress and write on a thread of the writer's own, one chunk queued at
        most (see the module docstring); the arrays given to :meth:`extend` must then not be
        changed in place afterwards.  ``False``: :meth:`extend` writes before it returns.
    metadata : str or None
        Text (JSON) written as a ``TObjString`` under :data:`METADATA_KEY` when the file is
        complete; read it back with ``uproot.open(path)["hepgen_metadata"]``.

    Examples
    --------
    >>> import awkward as ak, tempfile, os
    >>> events = ak.Array({"run": [1, 1], "Jet_pt": [[50.0, 20.0], [30.0]]})
    >>> out = os.path.join(tempfile.mkdtemp(), "out.root")
    >>> with RootWriter(out) as writer:
    ...     writer.extend(events)
    >>> import uproot
    >>> sorted(uproot.open(out)["Events"].keys())
    ['Jet_pt', 'nJet', 'run']
    """

    def __init__(
        self,
        path: str | os.PathLike,
        tree: str = "Events",
        protect: Iterable[str | os.PathLike] = (),
        title: str = "",
        fmt: OutputFormat = "ttree",
        background: bool = True,
        metadata: str | None = None,
    ) -> None:
        self.path = check_local_output(path)
        self.metadata = metadata
        self.tree = tree
        self.fmt = check_format(fmt)
        # URLs of remote inputs cannot be the local output; only local paths are compared
        self.protect = [Path(p) for p in protect if "://" not in os.fspath(p)]
        self.title = title
        self.background = background
        self._file: uproot.WritableDirectory | None = None
        self._tree = None
        self._tmp: Path | None = None
        self._branches: list[str] | None = None
        self._branches_in_order: list[str] | None = None
        self._thread: _WritingThread | None = None
        self.n_written = 0

    def __enter__(self) -> RootWriter:
        check_output_file(self.path, inputs=self.protect, overwrite=True)
        target = self.path.resolve()
        target.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = make_temp_file(target, suffix=".tmp.root")
        self._file = uproot.recreate(self._tmp)
        return self

    def extend(self, events: ak.Array | Mapping[str, ak.Array]) -> None:
        """Append one chunk of events.

        Parameters
        ----------
        events : ak.Array or mapping of str to array
            Records whose fields are branch names (see :func:`group_collections`). Every
            chunk must have the same branches as the first.

        Raises
        ------
        InputError
            Branches that cannot be written, or other branches than the first chunk's.
        Exception
            With ``background=True``: the error of an earlier chunk's writing.
        """
        if self._file is None:
            raise RuntimeError("RootWriter.extend() called outside its 'with' block")
        if self._thread is not None:
            self._thread.check()
        rntuple = self.fmt == "rntuple"
        data = rntuple_fields(events) if rntuple else group_collections(events)
        if not data:
            raise InputError(f"nothing to write to '{self.path}': the events have no branches")
        first = self._branches is None
        if first:
            self._branches = sorted(data)
            self._branches_in_order = list(data)
        elif sorted(data) != self._branches:
            missing = sorted(set(self._branches) - set(data))  # type: ignore[arg-type]
            extra = sorted(set(data) - set(self._branches))  # type: ignore[arg-type]
            raise InputError(
                f"chunk written to '{self.path}' has different branches than the first chunk "
                f"(missing: {missing}, extra: {extra})"
            )
        if rntuple:  # one record array, its fields in the first chunk's order
            data = {k: data[k] for k in self._branches_in_order}  # type: ignore[union-attr]
        n = len(next(iter(data.values())))
        self.n_written += n
        if not self.background:
            self._write(data, first, n)
            return
        if self._thread is None:
            self._thread = _WritingThread()
        self._thread.submit(lambda: self._write(data, first, n))

    def _write(self, data: dict[str, ak.Array], first: bool, n: int) -> None:
        """Make the tree (first chunk) and append ``n`` rows (on the writing thread)."""
        assert self._file is not None
        if self.fmt == "rntuple":
            record = ak.zip(data, depth_limit=1)
            if first:
                self._tree = self._file.mkrntuple(
                    self.tree, record.layout.form, description=self.title
                )
            if n:
                self._tree.extend(record)
            return
        if first:
            self._tree = self._file.mktree(
                self.tree, {k: v.type for k, v in data.items()}, title=self.title
            )
        if n:
            self._tree.extend(data)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._tmp is not None
        error: BaseException | None = None
        try:
            if self._thread is not None:  # the queued chunks written (or, on an error, not)
                self._thread.close(cancel=exc_type is not None)
                error = self._thread._error
                self._thread = None
            if exc_type is None and error is None and self.metadata is not None:
                assert self._file is not None
                self._file[METADATA_KEY] = self.metadata
        finally:
            try:
                if self._file is not None:
                    self._file.close()
            finally:
                self._file = None
        if exc_type is None and error is not None:
            self._tmp.unlink(missing_ok=True)
            raise error
        if exc_type is None and self._branches is None:
            self._tmp.unlink(missing_ok=True)
            raise InputError(f"no events were written to '{self.path}'")
        if exc_type is None:
            os.chmod(self._tmp, default_file_mode())
            os.replace(self._tmp, self.path)
        else:
            self._tmp.unlink(missing_ok=True)


def write_events(
    path: str | os.PathLike,
    events: ak.Array | Mapping[str, ak.Array],
    tree: str = "Events",
    protect: Iterable[str | os.PathLike] = (),
    fmt: OutputFormat = "ttree",
) -> Path:
    """Write events to a new ROOT file in one go (atomically); see :class:`RootWriter`.

    Parameters
    ----------
    fmt : {"ttree", "rntuple"}
        The format of the output.

    Returns
    -------
    Path
        The written file.
    """
    with RootWriter(path, tree=tree, protect=protect, fmt=fmt) as writer:
        writer.extend(events)
    return Path(path)
