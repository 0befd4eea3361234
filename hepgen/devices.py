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
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from hepgen.errors import ConfigError, InputError, require

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEVICE_NAMES",
    "PRODUCTION_THREADS",
    "check_device",
    "resolve_device",
    "torch_device",
    "torch_threads",
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
        A CUDA device is requested but torch sees none, or fewer than its index needs.
    """
    import torch

    name = check_device("auto" if name is None else name)
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
    import torch

    before = torch.get_num_threads()
    if before == n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
