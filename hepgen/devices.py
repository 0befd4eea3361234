"""Device names: one syntax, one resolution rule, one set of errors for every layer.

A device setting is ``"auto"`` (a CUDA GPU when torch sees one, else the CPU), ``"cpu"``,
``"cuda"`` or ``"cuda:N"``.  :func:`check_device` checks the name's form without importing
torch, so that configuration files are validated cheaply; :func:`torch_device` and
:func:`xgboost_device` resolve a name for the library that runs the work, and report a
requested GPU that is absent (or an xgboost build without CUDA) before any work starts.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from hepgen.errors import ConfigError, InputError, require

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEVICE_NAMES",
    "MALLOC_SETTINGS",
    "PRODUCTION_THREADS",
    "check_device",
    "resolve_device",
    "retain_freed_memory",
    "torch_device",
    "torch_threads",
    "usable_cpus",
    "xgboost_device",
]

#: What a device setting may be, in words (for messages).
DEVICE_NAMES = "'auto', 'cpu', 'cuda' or 'cuda:N'"
_DEVICE = re.compile(r"(auto|cpu|cuda|cuda:\d+)\Z")


def check_device(name: Any, what: str = "device") -> str:
    """``name`` if it is a well-formed device name (its availability is not checked).

    Parameters
    ----------
    name : Any
        The setting as given.
    what : str
        What the setting is called, for the message (``"training setting 'device'"``).

    Raises
    ------
    ConfigError
        Not a string of the form ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Examples
    --------
    >>> check_device("cuda:1")
    'cuda:1'
    >>> check_device("gpu")
    Traceback (most recent call last):
    ...
    hepgen.errors.ConfigError: device 'gpu': expected 'auto', 'cpu', 'cuda' or 'cuda:N'
    """
    if not isinstance(name, str) or not _DEVICE.match(name):
        raise ConfigError(f"{what} {name!r}: expected {DEVICE_NAMES}")
    return name


def resolve_device(name: str | None = "auto") -> str:
    """The concrete device name for torch: ``"auto"`` (or ``None``) becomes ``"cuda"`` when
    torch sees a GPU, else ``"cpu"``.

    Raises
    ------
    ConfigError
        A malformed name.
    InputError
        A CUDA device is requested but torch sees none, or fewer than its index needs, or
        torch is not installed (the torch-free ONNX path, where ``"auto"`` is the CPU).
    """
    name = check_device("auto" if name is None else name)
    try:
        import torch
    except ImportError:  # the ONNX backend without torch: no torch device to look for
        if name in ("auto", "cpu"):
            return "cpu"
        raise InputError(
            f"device {name!r} requested but torch is not installed; use device 'auto' or 'cpu'"
        ) from None
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(
                f"device {name!r} requested but torch sees no CUDA device "
                f"(torch {torch.__version__}); use device 'auto' or 'cpu'"
            )
        index = int(name[5:]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise InputError(
                f"device {name!r} requested but torch sees {torch.cuda.device_count()} "
                "CUDA device(s)"
            )
    return name


def torch_device(name: str | None = "auto") -> torch.device:
    """:func:`resolve_device` as a :class:`torch.device`."""
    import torch

    return torch.device(resolve_device(name))


def xgboost_device(name: str | None = "auto", purpose: str = "xgboost") -> tuple[str, str | None]:
    """xgboost's device for ``name``, and a note when ``"auto"`` fell back to the CPU.

    ``"auto"`` runs on the GPU only when torch sees one *and* the installed xgboost is a CUDA
    build; otherwise on the CPU, with a note when a GPU was there but xgboost cannot use it.

    Parameters
    ----------
    name : str or None
        The device setting (``None`` is ``"auto"``).
    purpose : str
        What xgboost is needed for, named when it is not installed.

    Returns
    -------
    device : str
        ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
    note : str or None
        Why ``"auto"`` ran on the CPU although a GPU is present.

    Raises
    ------
    ConfigError
        A malformed name.
    InputError
        A GPU is requested but absent, or the installed xgboost is a CPU-only build.
    MissingDependencyError
        xgboost is not installed (and the device is not ``"cpu"``).
    """
    name = check_device("auto" if name is None else name)
    if name == "cpu":
        return "cpu", None
    resolved = resolve_device(name)
    if resolved == "cpu":
        return "cpu", None
    xgb: Any = require("xgboost", purpose)
    if str(xgb.build_info().get("USE_CUDA", False)).lower() in ("true", "1", "on"):
        return resolved, None
    if name == "auto":
        return "cpu", "a GPU is present but the installed xgboost is a CPU-only build; ran on CPU"
    raise InputError(
        f"device {name!r}: the installed xgboost is a CPU-only build; install the CUDA build "
        "(pip install 'hepgen[cuda]') or use device 'cpu'"
    )


#: torch intra-op threads of a production's model calls (generate, score), in this process
#: and on every Dask worker: float32 reductions may round differently on another thread count,
#: so one count makes the outputs the same bits wherever they are computed.
PRODUCTION_THREADS = 1


@contextlib.contextmanager
def torch_threads(n: int = PRODUCTION_THREADS) -> Iterator[None]:
    """Run the block with ``n`` torch intra-op threads, restoring the caller's count after.

    When torch has not been imported in this process, nothing runs on torch here (the ONNX
    backend: its sessions have their own thread setting) and the block runs as it is,
    without importing torch.

    Examples
    --------
    >>> import torch
    >>> before = torch.get_num_threads()
    >>> with torch_threads(1):
    ...     torch.get_num_threads()
    1
    >>> torch.get_num_threads() == before
    True
    """
    torch = sys.modules.get("torch")
    if torch is None:  # no torch model in this process: nothing to set
        yield
        return
    before = torch.get_num_threads()
    if before == n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


#: glibc malloc settings of the processes hepgen owns (the ``hepgen`` command and the workers
#: of its local Dask clusters), as the environment variables that set them at a process's
#: start: freed memory stays in the process (trim threshold 1 GiB, 64 MiB of top padding) and
#: blocks below 256 MiB come from the heap, not from fresh ``mmap`` pages.  With glibc's
#: defaults every large tensor of a sampling call is a fresh mapping, paid for in page faults:
#: sampling 1e5 rows in one call of the default flow took 4.2 million minor page faults and
#: ran at 19-24k rows/s; with these settings 0.3 million and 31-37k rows/s (one thread, same
#: machine; at 4096-row batches +5-10 %).  The price is a resident size that stays at its
#: peak, which a batch job's memory limit already has to allow.
MALLOC_SETTINGS = {
    "MALLOC_TRIM_THRESHOLD_": str(2**30),
    "MALLOC_TOP_PAD_": str(2**26),
    "MALLOC_MMAP_THRESHOLD_": str(2**28),
}

_MALLOPT = {"MALLOC_TRIM_THRESHOLD_": -1, "MALLOC_TOP_PAD_": -2, "MALLOC_MMAP_THRESHOLD_": -3}


def retain_freed_memory(environ: dict[str, str] | None = None) -> bool:
    """Apply :data:`MALLOC_SETTINGS` to the running process (glibc ``mallopt``).

    A process-level setting: called by the ``hepgen`` command at its start, never by the
    library on its caller's behalf.  A setting the user gave in the environment (one of the
    ``MALLOC_*_`` variables) is left as it is.  Elsewhere than glibc (macOS, musl) nothing
    happens.

    Parameters
    ----------
    environ : dict or None
        Where to look for the user's own settings (default ``os.environ``).

    Returns
    -------
    bool
        Whether the settings were applied.
    """
    import ctypes
    import ctypes.util
    import os

    env = os.environ if environ is None else environ
    if sys.platform != "linux" or any(name in env for name in MALLOC_SETTINGS):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    return all(mallopt(_MALLOPT[name], int(value)) == 1 for name, value in MALLOC_SETTINGS.items())


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask; ``os.cpu_count()`` elsewhere)."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1
