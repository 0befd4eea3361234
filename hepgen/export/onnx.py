"""Writing, checking and running ONNX graphs (the ``onnx`` target of ``hepgen export``).

A graph is written with torch's dynamo exporter (``torch.onnx.export(..., dynamo=True)``:
``torch.export`` then onnxscript) at opset :data:`OPSET` with a dynamic batch dimension; when
that exporter raises, the legacy TorchScript-based one (``dynamo=False``) writes it instead,
and the caller records which one did.  Every file is one self-contained ``.onnx`` (weights
inside, no external data file), checked by ``onnx.checker`` (with shape inference) and run in
ONNX Runtime for the parity check.  onnx and onnxruntime are the optional extra
``hepgen[onnx]``; they are imported here on first use only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hepgen.errors import InputError, MissingDependencyError

__all__ = [
    "EXPORTERS",
    "OPSET",
    "check_bfloat16_runs",
    "check_onnx",
    "onnx_runner",
    "require_onnx",
    "write_onnx",
]

#: The ONNX opset of every exported graph.
OPSET = 18
#: ``exporter`` choices: dynamo with the legacy exporter as fallback, or one of them only.
EXPORTERS = ("auto", "dynamo", "legacy")


def require_onnx(purpose: str = "hepgen export --format onnx") -> tuple[Any, Any]:
    """``(onnx, onnxruntime)``, or :class:`MissingDependencyError` naming ``hepgen[onnx]``."""
    missing = []
    modules = []
    for name in ("onnx", "onnxruntime"):
        try:
            modules.append(__import__(name))
        except ImportError:
            missing.append(name)
    if missing:
        raise MissingDependencyError(
            f"{purpose} needs {' and '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed: pip install 'hepgen[onnx]'"
        )
    return modules[0], modules[1]


def _providers(ort: Any, precision: str = "float32") -> list[str]:
    """The execution providers of the parity check: the CPU's for float32 (the reference
    runs there too, and no provider's TF32 products blur the comparison); for bfloat16 also
    CUDA's when this onnxruntime has it (the CPU provider has no bfloat16 MatMul)."""
    gpu = "CUDAExecutionProvider"
    if precision == "bfloat16" and gpu in ort.get_available_providers():
        return [gpu, "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def check_bfloat16_runs() -> None:
    """Raise :class:`InputError` when ONNX Runtime here cannot run a bfloat16 matrix product.

    The graphs of ``--precision bfloat16`` compute their conditioners' products in bfloat16
    (``MatMul`` on bfloat16 tensors); ONNX Runtime's CPU provider has no such kernel, so the
    exported graph could not be checked (nor run) on this machine.  A one-node probe model
    finds out in milliseconds, before anything is exported.
    """
    _, ort = require_onnx()
    from onnx import TensorProto, helper

    node = helper.make_node("MatMul", ["a", "b"], ["y"])
    graph = helper.make_graph(
        [node],
        "bf16_probe",
        [
            helper.make_tensor_value_info("a", TensorProto.BFLOAT16, [1, 1]),
            helper.make_tensor_value_info("b", TensorProto.BFLOAT16, [1, 1]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.BFLOAT16, [1, 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = min(model.ir_version, 10)
    try:
        ort.InferenceSession(model.SerializeToString(), providers=_providers(ort, "bfloat16"))
    except Exception:  # onnxruntime raises its own types (NOT_IMPLEMENTED)
        raise InputError(
            "--precision bfloat16 --format onnx: ONNX Runtime on this machine "
            f"({', '.join(_providers(ort, 'bfloat16'))}) has no bfloat16 MatMul, so the graph could not "
            "be checked or run; export --format torchscript for bfloat16, or float32 to ONNX"
        ) from None


@contextlib.contextmanager
def _quiet_exporters() -> Iterator[None]:
    """Silence the exporters' warnings and torch.onnx's log lines (e.g. about torchvision
    ops it skips) for the duration of an export."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _dynamo(module: Any, example: tuple[Any, ...], path: Path, names: Sequence[str]) -> None:
    import torch
    from torch.export import Dim

    n = Dim("n")
    torch.onnx.export(
        module,
        example,
        os.fspath(path),
        dynamo=True,
        opset_version=OPSET,
        input_names=list(names[:2]),
        output_names=list(names[2:]),
        dynamic_shapes=({0: n}, {0: n}),
        external_data=False,
        verbose=False,
    )


def _legacy(module: Any, example: tuple[Any, ...], path: Path, names: Sequence[str]) -> None:
    import torch

    torch.onnx.export(
        module,
        example,
        os.fspath(path),
        dynamo=False,
        opset_version=OPSET,
        input_names=list(names[:2]),
        output_names=list(names[2:]),
        dynamic_axes={name: {0: "n"} for name in names},
    )


def write_onnx(
    module: Any,
    example: tuple[Any, ...],
    path: str | os.PathLike,
    names: Sequence[str],
    exporter: str = "auto",
) -> tuple[str, str | None]:
    """Export ``module`` (two inputs, one output) to an ONNX file.

    Parameters
    ----------
    module : torch.nn.Module
        ``forward(a, b) -> y``, float32, rows in the first dimension.
    example : tuple of two Tensors
        Inputs to trace with (their row count is made dynamic: ``n``).
    path : path
        The file to write (its folder exists).
    names : sequence of three str
        Input and output names (``("z", "c", "x")``).
    exporter : {"auto", "dynamo", "legacy"}
        ``"auto"``: dynamo, and the legacy exporter when dynamo raises.

    Returns
    -------
    used : {"dynamo", "legacy"}
        The exporter that wrote the file.
    note : str or None
        Why dynamo was not used (its error, one line), for the manifest.
    """
    if exporter not in EXPORTERS:
        raise InputError(f"exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
    path = Path(path)
    with _quiet_exporters():
        if exporter == "legacy":
            _legacy(module, example, path, names)
            return "legacy", None
        try:
            _dynamo(module, example, path, names)
            return "dynamo", None
        except Exception as exc:
            if exporter == "dynamo":
                raise
            path.unlink(missing_ok=True)
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            note = f"dynamo exporter failed ({type(exc).__name__}: {first[:300]})"
        _legacy(module, example, path, names)
        return "legacy", note


def check_onnx(path: str | os.PathLike, names: Sequence[str]) -> None:
    """``onnx.checker`` with shape inference, plus the contract: opset :data:`OPSET`, the
    input and output names ``names``, a dynamic first dimension.

    Raises
    ------
    RuntimeError
        The file does not hold the promised graph (an exporter bug: a traceback, not a
        user's error).
    """
    onnx, _ = require_onnx()
    onnx.checker.check_model(os.fspath(path), full_check=True)
    model = onnx.load(os.fspath(path))
    opsets = {o.domain: o.version for o in model.opset_import}
    if opsets.get("", opsets.get("ai.onnx")) != OPSET:
        raise RuntimeError(f"'{path}': opset {opsets}, expected {OPSET}")
    found = [v.name for v in model.graph.input] + [v.name for v in model.graph.output]
    if found != list(names):
        raise RuntimeError(f"'{path}': inputs and outputs {found}, expected {list(names)}")
    for value in [*model.graph.input, *model.graph.output]:
        first = value.type.tensor_type.shape.dim[0]
        if first.HasField("dim_value"):
            raise RuntimeError(f"'{path}': {value.name} has a fixed batch size {first.dim_value}")


def onnx_runner(
    path: str | os.PathLike, precision: str = "float32"
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The graph of ``path`` in an ONNX Runtime session, as ``f(a, b) -> y`` on numpy
    (on the CPU; for ``precision="bfloat16"`` on CUDA when there is a GPU provider)."""
    _, ort = require_onnx()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # hepgen.devices.PRODUCTION_THREADS
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        os.fspath(path), sess_options=options, providers=_providers(ort, precision)
    )
    first, second = (i.name for i in session.get_inputs())

    def run(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return session.run(None, {first: a, second: b})[0]

    return run
