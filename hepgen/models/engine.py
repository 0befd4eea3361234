"""How a trained flow is evaluated: nflows layers, the static graph, or the compiled graph.

:class:`FlowEngine` evaluates a :class:`~hepgen.models.flow.ConditionalFlow` for sampling
(``from_latent``) and densities (``log_prob``) with one of

``"eager"``
    The nflows layers themselves, as trained (the reference every other engine is checked
    against).
``"graph"``
    :class:`~hepgen.models.flow_graph.SamplingGraph` / :class:`~hepgen.models.flow_graph.DensityGraph`:
    the same function with the linear pieces folded and the context products batched.
``"compiled"``
    The graph through ``torch.compile`` (inductor: the elementwise spline and gate arithmetic
    fused into a few loops).  Compiling costs tens of seconds per process and per shape
    regime (inductor caches its kernels on disk, so a second process compiles faster); it
    pays from a few million rows on.  When compilation fails (no C++ compiler, an
    unsupported platform) the engine warns once and runs the graph.
``"auto"``
    The module itself for the flow families without a static graph (every kind but the
    single-scale RQ-spline flows: their own code is their only engine).  For the spline
    flows, on the CPU in float32 the nflows layers: the graph computes the same function at the
    same speed there (both spend their time in the conditioners' matrix products and in
    memory-bound elementwise operations; measured 40-48k rows/s each on one core, the layers
    slightly ahead), and the layers give exactly the draws of earlier hepgen versions.  On a
    GPU, or with a reduced precision, the graph (its fewer, larger operations are what a GPU
    needs).  Compiling is left to an explicit choice because of its start-up cost.

``precision="bfloat16"`` (graph and compiled engines) evaluates the conditioners' matrix
products in bfloat16 and the spline in float32; :func:`check_precision` decides whether a
model keeps its quality that way (parity of samples for the same latent draws and the
classifier AUC against held-out data), and :class:`~hepgen.fastsim.FastSim` records the
verdict in its model card.

A graph copies the flow's weights: the engine rebuilds it when the flow's parameters change
(every in-place update bumps a tensor's version counter, which the engine compares).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

from hepgen.models.parity import ParityReport, sample_parity

__all__ = [
    "ENGINES",
    "FlowEngine",
    "auc_standard_error",
    "batch_size_for",
    "check_engine",
    "check_precision",
]

log = logging.getLogger(__name__)

ENGINES = ("auto", "eager", "graph", "compiled")

#: Rows per call of the flow by device type: on the CPU the working set of a 4096-row batch
#: still fits the caches (bench_flow: 77k rows/s at 4096 against 37k at 65536); a GPU needs
#: large batches to fill its cores.
BATCH_SIZES = {"cpu": 4096, "cuda": 262144}


def check_engine(engine: str, precision: str) -> None:
    """Raise ``ValueError`` for an unknown engine or precision, or bfloat16 on ``"eager"``."""
    from hepgen.models.flow_graph import PRECISIONS

    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if engine == "eager" and precision != "float32":
        raise ValueError("the eager engine runs in float32 only; use engine 'graph'")


def batch_size_for(device: Any) -> int:
    """Default rows per flow call on ``device`` (a torch device or its name)."""
    kind = str(device).split(":")[0]
    return BATCH_SIZES.get(kind, BATCH_SIZES["cpu"])


class FlowEngine:
    """Evaluates one :class:`~hepgen.models.flow.ConditionalFlow` with the chosen engine.

    Parameters
    ----------
    flow : ConditionalFlow
        The flow; it is never modified.
    engine : {"auto", "eager", "graph", "compiled"}
        See the module docstring.
    precision : {"float32", "bfloat16"}
        Of the conditioners' matrix products (not with ``"eager"``).

    Examples
    --------
    >>> import torch
    >>> from hepgen.models.flow import ConditionalFlow, FlowSettings
    >>> flow = ConditionalFlow(2, 1, FlowSettings(n_transforms=2, hidden_features=8), seed=0)
    >>> engine = FlowEngine(flow, "graph")
    >>> z, c = torch.randn(3, 2), torch.randn(3, 1)
    >>> with torch.no_grad():
    ...     bool(torch.allclose(engine.from_latent(z, c), flow.from_latent(z, c), atol=1e-5))
    True
    """

    def __init__(self, flow: Any, engine: str = "auto", precision: str = "float32") -> None:
        check_engine(engine, precision)
        self.flow = flow
        graphs = bool(getattr(flow, "has_graph", False))
        if engine == "auto":
            on_gpu = next(flow.parameters()).device.type != "cpu"
            engine = "graph" if graphs and (on_gpu or precision != "float32") else "eager"
        if not graphs and (engine != "eager" or precision != "float32"):
            what = f"engine {engine!r}" if engine != "eager" else f"precision {precision!r}"
            raise ValueError(
                f"{what} needs a single-scale RQ-spline flow (kind coupling or "
                f"autoregressive, levels 1); this flow is kind {flow.settings.kind!r} with "
                f"levels {flow.settings.levels}: use engine 'eager' (or 'auto') in float32"
            )
        self.engine = engine
        self.precision = precision
        self._graphs: dict[str, Any] = {}
        self._key: tuple[Any, ...] | None = None

    def from_latent(self, z: Any, c: Any) -> Any:
        """Samples ``x = f^-1(z; c)``, (n, D) float32 tensors in model space (no graph of
        gradients is built)."""
        import torch

        if self.engine == "eager":
            with torch.no_grad():
                return self.flow.from_latent(z, c)
        z = self.flow._as_input(z, self.flow.n_features, "z")
        c = self.flow._as_input(c, self.flow.n_conditions, "c")
        if z.shape[0] == 0:
            return z.new_zeros((0, self.flow.n_features))
        with torch.no_grad():
            return self._graph("sample")(z, c)

    def log_prob(self, x: Any, c: Any) -> Any:
        """``log p(x | c)``, (n,) float32 tensor (nats, model space), without gradients."""
        import torch

        if self.engine == "eager":
            with torch.no_grad():
                return self.flow.log_prob(x, c)
        x = self.flow._as_input(x, self.flow.n_features, "x")
        c = self.flow._as_input(c, self.flow.n_conditions, "c")
        if x.shape[0] == 0:
            return x.new_zeros(0)
        with torch.no_grad():
            return self._graph("log_prob")(x, c)

    def _graph(self, role: str) -> Any:
        key = tuple((p.data_ptr(), p._version) for p in self.flow.parameters())
        if key != self._key:
            self._graphs, self._key = {}, key
        if role not in self._graphs:
            self._graphs[role] = self._build(role)
        return self._graphs[role]

    def _build(self, role: str) -> Any:
        from hepgen.models.flow_graph import DensityGraph, SamplingGraph

        cls = SamplingGraph if role == "sample" else DensityGraph
        graph = cls(self.flow, self.precision)
        if self.engine != "compiled":
            return graph
        return _compiled(graph)


def _compiled(graph: Any) -> Any:
    """``torch.compile`` of a graph, or the graph itself (with one warning) when compiling
    fails: a compiler problem must not stop a production job.

    The compiled function may be called from several threads (seed blocks side by side):
    the calls that compile (the first one of a batch of one row and the first of a larger
    batch: the graph is compiled for a symbolic batch size, but PyTorch specialises sizes 0
    and 1) run one at a time; later calls run concurrently (measured: the same bits as one
    after the other, and 1.5-1.6x the rate on two threads of two cores).
    """
    import threading

    import torch

    compiled = torch.compile(graph, dynamic=True)
    lock = threading.Lock()
    compiled_for: set[bool] = set()

    def call(a: Any, b: Any) -> Any:
        nonlocal compiled
        try:
            return compiled(a, b)
        except Exception as err:  # any compiler failure falls back to the graph
            log.warning(
                "torch.compile failed (%s: %s); sampling with the uncompiled graph",
                type(err).__name__,
                str(err).splitlines()[0] if str(err) else "",
            )
            compiled = graph
            return graph(a, b)

    def run(a: Any, b: Any) -> Any:
        if compiled is graph:
            return graph(a, b)
        single = a.shape[0] <= 1
        if single in compiled_for:
            return call(a, b)
        with lock:
            out = call(a, b)
            compiled_for.add(single)
        return out

    return run


# --------------------------------------------------------------------------------------------
# accepting a reduced precision
# --------------------------------------------------------------------------------------------


def auc_standard_error(auc: float, n_positive: int, n_negative: int) -> float:
    """Standard error of a ROC AUC (Hanley & McNeil 1982, Radiology 143, 29)."""
    a = min(max(auc, 1e-6), 1 - 1e-6)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n_positive - 1) * (q1 - a * a) + (n_negative - 1) * (q2 - a * a)) / (
        n_positive * n_negative
    )
    return math.sqrt(max(var, 0.0))


def check_precision(
    model: Any,
    targets: np.ndarray,
    conditions: np.ndarray,
    precision: str = "bfloat16",
    seed: int = 0,
    tolerance: float = 0.05,
) -> dict[str, Any]:
    """Decide whether a flow keeps its quality with ``precision`` conditioners.

    Two checks, both must pass:

    * **parity**: the float32 graph and the reduced-precision graph get the same latent draws
      and contexts (:func:`hepgen.models.parity.parity_inputs` from ``conditions``); the
      largest absolute difference of the samples must not exceed ``tolerance`` (model-space
      units, i.e. standard deviations of the standardised targets); the 99th percentile is
      reported too;
    * **quality**: the held-out classifier AUC of real against generated rows
      (:func:`hepgen.models.selection.classifier_auc_metric`, the same seed, so the same rows,
      split and draws) with the reduced precision lies inside the 95 % interval of the float32
      AUC (Hanley-McNeil standard error).

    Parameters
    ----------
    model : FlowModel
        A fitted flow model.
    targets, conditions : np.ndarray
        Held-out data in model space, (n, D) and (n, C).
    precision : str
        The candidate precision (``"bfloat16"``).
    seed : int
        Seeds the draws and the classifier.
    tolerance : float
        Largest sample difference accepted.

    Returns
    -------
    dict
        ``precision``, ``parity`` (:meth:`ParityReport.to_dict`), ``auc_float32``,
        ``auc``, ``auc_interval`` ([low, high]), ``accepted`` (bool).
    """
    import torch

    from hepgen.models.parity import parity_inputs
    from hepgen.models.selection import C2ST_EVENTS, classifier_auc_metric

    flow = model.module_
    reference = FlowEngine(flow, "graph", "float32")
    candidate = FlowEngine(flow, "graph", precision)

    def run(engine: FlowEngine) -> Any:
        return lambda z, c: engine.from_latent(torch.from_numpy(z), torch.from_numpy(c)).numpy()

    z, c = parity_inputs(8192, flow.n_features, conditions, seed=seed)
    parity: ParityReport = sample_parity(
        run(reference), run(candidate), z, c, tolerance=tolerance, what=f"{precision} samples"
    )

    def sampler(engine: FlowEngine) -> Any:
        def sample(cc: np.ndarray, s: int) -> np.ndarray:
            g = torch.Generator().manual_seed(int(s))
            zz = torch.randn((len(cc), flow.n_features), generator=g)
            return engine.from_latent(zz, torch.from_numpy(np.asarray(cc, np.float32))).numpy()

        return sample

    auc32 = classifier_auc_metric(sampler(reference), targets, conditions, seed=seed)
    auc = classifier_auc_metric(sampler(candidate), targets, conditions, seed=seed)
    n_test = min(len(targets), C2ST_EVENTS) - min(len(targets), C2ST_EVENTS) // 2
    half = 1.96 * auc_standard_error(auc32, n_test, n_test)
    interval = [auc32 - half, auc32 + half]
    return {
        "precision": precision,
        "parity": parity.to_dict(),
        "auc_float32": auc32,
        "auc": auc,
        "auc_interval": interval,
        "accepted": bool(parity.passed and interval[0] <= auc <= interval[1]),
    }
