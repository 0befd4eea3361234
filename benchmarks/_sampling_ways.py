"""The ways of evaluating a flow that ``bench_sampling`` times: each a :class:`Way` with a
``sample(z, c)`` and a ``log_prob(x, c)`` on one call's inputs (see bench_sampling's docstring
for what each includes)."""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_flow import plain_flow

from hepgen.models.flow import FlowSettings
from hepgen.models.flow_graph import DensityGraph, SamplingGraph

__all__ = [
    "ROLES",
    "Inputs",
    "ModelWay",
    "Way",
    "module_flops_per_row",
    "sync",
    "tf32_matmuls",
    "ways_of",
]

D = 7
C = 7
SEED = 0
HIDDEN = 128
ZUKO_HIDDEN_LAYERS = 4

ROLES = ("sample", "log_prob")

Fn = Callable[[Any, Any], Any]


def module_flops_per_row(module: torch.nn.Module, passes: int = 1) -> int:
    """``2 x in x out`` of every ``nn.Linear`` of a module (nflows' ``LULinear``: D x D), times
    ``passes`` network evaluations: the matmul FLOP per row of plain nflows and zuko flows."""
    from nflows.transforms import LULinear

    total = 0
    for m in module.modules():
        if isinstance(m, torch.nn.Linear):
            total += m.in_features * m.out_features * passes
        elif isinstance(m, LULinear):
            total += m.features * m.features
    return 2 * total


# --------------------------------------------------------------------------------- timing


def sync(device: str) -> None:
    """Wait for the device's queued work (CUDA); nothing on the CPU."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@contextlib.contextmanager
def tf32_matmuls(device: str, enabled: bool) -> Iterator[None]:
    """TF32 float32 matmuls on (``enabled``) or off inside the block (CUDA only)."""
    if not device.startswith("cuda"):
        yield
        return
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


class Inputs:
    """The evaluation rows of one batch size, pre-split into calls of ``batch`` rows, as
    device tensors and as numpy arrays."""

    def __init__(self, z: np.ndarray, c: np.ndarray, x: np.ndarray, batch: int, device: str):
        def split(a: np.ndarray) -> list[np.ndarray]:
            return [np.ascontiguousarray(a[i : i + batch]) for i in range(0, len(a), batch)]

        self.n_rows, self.batch = len(z), batch
        self.c_numpy = c
        self.numpy = list(zip(split(z), split(x), split(c), strict=True))
        self.torch = [tuple(torch.from_numpy(a).to(device) for a in row) for row in self.numpy]

    def head(self) -> Inputs:
        """The first call's inputs only (a warm-up)."""
        first = copy.copy(self)
        first.numpy, first.torch = self.numpy[:1], self.torch[:1]
        first.n_rows = len(self.numpy[0][0])
        return first


# --------------------------------------------------------------------------------- paths


class Way:
    """One way of evaluating the flow: ``sample(z, c)`` and ``log_prob(x, c)`` on one call's
    inputs (torch tensors, or numpy arrays when ``numpy``), under ``mode``."""

    def __init__(
        self,
        sample: Fn | None,
        log_prob: Fn | None,
        numpy: bool = False,
        mode: Callable[[], Any] = torch.inference_mode,
        precision: str = "float32",
        note: str = "",
    ) -> None:
        self.sample, self.log_prob, self.numpy, self.mode = sample, log_prob, numpy, mode
        self.precision, self.note = precision, note
        self.info: dict[str, Any] = {}

    def has(self, role: str) -> bool:
        """Whether the way evaluates ``role`` ("sample" or "log_prob")."""
        return (self.sample if role == "sample" else self.log_prob) is not None

    def run(self, role: str, inputs: Inputs) -> None:
        """Evaluate ``role`` on every call's inputs of ``inputs``."""
        fn = self.sample if role == "sample" else self.log_prob
        rows = inputs.numpy if self.numpy else inputs.torch
        with self.mode():
            for z, x, c in rows:
                fn(z if role == "sample" else x, c)


def _graph_paths(flow: Any, device: str) -> dict[str, Way]:
    paths = {
        "graph": Way(SamplingGraph(flow), DensityGraph(flow)),
        "graph_bf16": Way(
            SamplingGraph(flow, "bfloat16"), DensityGraph(flow, "bfloat16"), precision="bfloat16"
        ),
    }
    if device.startswith("cuda"):
        sampling, density = paths["graph"].sample, paths["graph"].log_prob

        def tf32_mode():
            stack = contextlib.ExitStack()
            stack.enter_context(torch.inference_mode())
            stack.enter_context(tf32_matmuls(device, True))
            return stack

        paths["graph_tf32"] = Way(sampling, density, mode=tf32_mode, precision="tf32")
    return paths


def _compiled_path(flow: Any) -> Way:
    """The float32 graph under ``torch.compile(dynamic=True)``: through the engine helper when
    it exists, else directly; compile failures are recorded."""
    errors: list[str] = []
    try:
        from hepgen.models.engine import FlowEngine
    except ImportError:
        FlowEngine = None
    if FlowEngine is not None:
        engine = FlowEngine(flow, "compiled")
        sample, log_prob, how = engine.from_latent, engine.log_prob, "FlowEngine('compiled')"

        class Catch(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                errors.append(record.getMessage()[:300])

        logging.getLogger("hepgen.models.engine").addHandler(Catch(logging.WARNING))
    else:
        compiled = {
            "sample": torch.compile(SamplingGraph(flow), dynamic=True),
            "log_prob": torch.compile(DensityGraph(flow), dynamic=True),
        }

        def guarded(role: str) -> Fn:
            def call(a: Any, b: Any) -> Any:
                try:
                    return compiled[role](a, b)
                except Exception as err:
                    errors.append(f"{type(err).__name__}: {err}"[:300])
                    raise

            return call

        sample, log_prob, how = guarded("sample"), guarded("log_prob"), "torch.compile"
    path = Way(sample, log_prob, mode=torch.no_grad, note=how)
    path.info["errors"] = errors
    return path


def _export(graph: torch.nn.Module, example: tuple, path: Path) -> dict[str, Any]:
    """Write ``graph`` as ONNX (dynamo exporter, legacy when it raises); quiet."""
    from torch.export import Dim

    names = ["z", "c"] if isinstance(graph, SamplingGraph) else ["x", "c"]
    start = time.perf_counter()
    out: dict[str, Any] = {}
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            n = Dim("n")
            torch.onnx.export(
                graph.eval(),
                example,
                str(path),
                dynamo=True,
                opset_version=18,
                input_names=names,
                dynamic_shapes=({0: n}, {0: n}),
            )
            out["exporter"] = "dynamo"
        except Exception as err:
            out["dynamo_error"] = f"{type(err).__name__}: {err}"[:300]
            torch.onnx.export(
                graph.eval(),
                example,
                str(path),
                dynamo=False,
                opset_version=18,
                input_names=names,
                dynamic_axes={names[0]: {0: "n"}, "c": {0: "n"}},
            )
            out["exporter"] = "legacy"
    out["export_s"] = round(time.perf_counter() - start, 2)
    return out


def _ort_path(flow: Any, device: str, folder: Path) -> Way | str:
    """The exported graphs in onnxruntime, or why not."""
    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime is not installed (pip install 'hepgen[onnx]')"
    providers = ["CPUExecutionProvider"]
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return "no CUDAExecutionProvider (onnxruntime-gpu is not installed)"
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # idle pool threads sleep, as the hepgen command sets for OpenMP (OMP_WAIT_POLICY=PASSIVE)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    source = flow if device == "cpu" else copy.deepcopy(flow).cpu()  # exported from the CPU
    info: dict[str, Any] = {"providers": providers}
    sessions = {}
    for role, cls in (("sample", SamplingGraph), ("log_prob", DensityGraph)):
        graph = cls(source)
        example = (torch.zeros(16, D), torch.zeros(16, C))
        info[f"export_{role}"] = _export(graph, example, folder / f"{role}.onnx")
        sessions[role] = ort.InferenceSession(
            str(folder / f"{role}.onnx"), options, providers=providers
        )

    def runner(role: str) -> Fn:
        session = sessions[role]
        first, second = (i.name for i in session.get_inputs())
        return lambda a, c: session.run(None, {first: a, second: c})[0]

    path = Way(runner("sample"), runner("log_prob"), numpy=True, mode=contextlib.nullcontext)
    path.info.update(info)
    return path


def _plain_paths(flow: Any, device: str) -> dict[str, Way]:
    """nflows with the flow's own weights (given z, and its own sampling)."""
    plain = plain_flow(FlowSettings(), seed=SEED, n_features=D, n_conditions=C)
    plain.load_state_dict(flow.flow.state_dict())
    plain.to(device).eval()
    paths = {
        "nflows": Way(
            lambda z, c: plain._transform.inverse(z, context=c)[0],
            lambda x, c: plain.log_prob(x, context=c),
            note="flow._transform.inverse(z, context=c); same weights",
        ),
        "nflows_sample": Way(
            lambda z, c: plain.sample(1, context=c).reshape(len(c), -1),
            None,
            note="flow.sample(1, context=c): draws its noise",
        ),
    }
    paths["nflows"].info["flop_per_row"] = module_flops_per_row(plain)
    return paths


def _zuko_path(device: str) -> Way | str:
    try:
        import zuko
    except ImportError:
        return "zuko is not importable (pip install 'hepgen[bench]')"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        flow = zuko.flows.NSF(
            features=D,
            context=C,
            bins=16,
            transforms=6,
            passes=2,
            hidden_features=[HIDDEN] * ZUKO_HIDDEN_LAYERS,
        )
    flow.to(device).eval()
    path = Way(
        lambda z, c: flow(c).transform.inv(z),
        lambda x, c: flow(c).log_prob(x),
        note=f"NSF passes=2, hidden [{HIDDEN}] x {ZUKO_HIDDEN_LAYERS}, zuko init",
    )
    path.info["flop_per_row"] = module_flops_per_row(flow, passes=2)
    path.info["flop_per_row_log_prob"] = module_flops_per_row(flow, passes=1)
    return path


class ModelWay(Way):
    """``FlowModel.sample(c, seed=0, batch_size=B)`` over all rows of a batch size (numpy in
    and out, the seeded noise drawn batch by batch); sampling only."""

    def __init__(self, model: Any) -> None:
        super().__init__(None, None, numpy=True, mode=contextlib.nullcontext)
        self.model = model
        engine = getattr(model, "engine_", None)  # FlowModel's engine (issue 18), when present
        self.info["engine"] = engine.engine if engine is not None else "eager"
        self.info["engine_precision"] = engine.precision if engine is not None else "float32"

    def has(self, role: str) -> bool:
        return role == "sample"

    def run(self, role: str, inputs: Inputs) -> None:
        self.model.sample(inputs.c_numpy[: inputs.n_rows], seed=0, batch_size=inputs.batch)


def ways_of(model: Any, device: str, folder: Path) -> tuple[dict[str, Way], dict[str, str]]:
    """Every way of a :class:`FlowModel` on ``device`` (ONNX files written into ``folder``),
    and the ways skipped with the reason."""
    flow = model.flow_
    ways: dict[str, Way] = {
        "eager": Way(flow.from_latent, flow.log_prob),
        "model": ModelWay(model),
    }
    ways.update(_graph_paths(flow, device))
    skipped: dict[str, str] = {}
    ways["compiled"] = _compiled_path(flow)
    ort = _ort_path(flow, device, folder)
    if isinstance(ort, str):
        skipped["onnxruntime"] = ort
    else:
        ways["onnxruntime"] = ort
    ways.update(_plain_paths(flow, device))
    zuko = _zuko_path(device)
    if isinstance(zuko, str):
        skipped["zuko"] = zuko
    else:
        ways["zuko"] = zuko
    return ways, skipped
