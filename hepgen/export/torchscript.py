"""Writing and running TorchScript graphs (the ``torchscript`` target of ``hepgen export``).

A graph is traced (``torch.jit.trace``): the flow and GAN graphs are fixed sequences of tensor
operations with no data-dependent control flow, so the trace is the whole function, for any
number of rows (the parity check runs it on another row count than the trace's).  The file
is a TorchScript archive (``torch.jit.save``), loadable from C++ with ``torch::jit::load`` or
from Python with ``torch.jit.load``, without hepgen.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

__all__ = ["torchscript_runner", "write_torchscript"]


def write_torchscript(
    module: torch.nn.Module, example: tuple[Any, ...], path: str | os.PathLike
) -> None:
    """Trace ``module`` on ``example`` (two float32 tensors) and save it to ``path``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> class Add(torch.nn.Module):
    ...     def forward(self, a, b):
    ...         return a + b
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "add.pt"
    >>> write_torchscript(Add(), (torch.ones(2, 1), torch.ones(2, 1)), path)
    >>> torchscript_runner(path)(np.ones((3, 1), "float32"), np.ones((3, 1), "float32")).ravel()
    array([2., 2., 2.], dtype=float32)
    """
    with warnings.catch_warnings():  # constant checks of Python numbers in the spline
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        with torch.no_grad():
            traced = torch.jit.trace(module.eval(), example, check_trace=False)
        torch.jit.save(traced, os.fspath(path))


def torchscript_runner(path: str | os.PathLike) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The graph of ``path`` (``torch.jit.load`` on the CPU) as ``f(a, b) -> y`` on numpy."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        graph = torch.jit.load(os.fspath(path), map_location="cpu")

    def run(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return graph(torch.from_numpy(a), torch.from_numpy(b)).numpy()

    return run
