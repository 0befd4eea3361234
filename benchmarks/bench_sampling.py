"""Raw sampling and log_prob rows/s of the default flow, every engine, beside nflows, zuko and
the compute bound of the hardware (issue 18).

Workload: the default :class:`~hepgen.models.flow.FlowSettings` (RQ-spline coupling, 6
transforms, 128 hidden features, 2 residual blocks, 16 bins, tail bound 4, LU mixing) with
D = 7 targets and C = 7 conditions, as in the default fast simulation.  The weights are the
identity initialisation **perturbed** with seeded Gaussian noise (standard deviation 0.05 on
every parameter, 0.1 on the conditioners' zero-initialised last layers), so the splines, the
LU layers and the gates are far from trivial (samples move by ~1 standard deviation from
their latent draws) without a training run; the speed of a flow does not depend on how well
it is trained.  Latent draws and contexts are standard normal float32.

Paths, and what their rows/s include (none draws its noise unless said so; each gets
pre-made inputs already on the device, so none pays a numpy round trip unless said so):

* ``eager``: :meth:`ConditionalFlow.from_latent` ``(z, c)`` / :meth:`ConditionalFlow.log_prob`
  ``(x, c)``, the nflows layers under ``torch.inference_mode``.
* ``model``: :meth:`FlowModel.sample` ``(c, seed=0, batch_size=B)`` (sampling only): numpy
  contexts in, input checks, the seeded noise drawn batch by batch, the model's default
  engine (recorded), numpy samples out: what the model protocol costs over ``eager``.
* ``graph``, ``graph_bf16``: :class:`~hepgen.models.flow_graph.SamplingGraph` /
  :class:`~hepgen.models.flow_graph.DensityGraph` in float32 and with ``precision="bfloat16"``
  (conditioner matmuls only), under ``torch.inference_mode``.  On CUDA also ``graph_tf32``:
  the float32 graph with TF32 matmuls allowed.
* ``compiled``: the float32 graph through ``torch.compile(dynamic=True)`` under
  ``torch.no_grad`` (via :class:`hepgen.models.engine.FlowEngine` ``"compiled"``, which adds its
  input checks); the first call's time is ``compile_s`` and is not counted; a compile failure
  (the engine then runs the graph) is recorded as ``compile_error``.
* ``onnxruntime``: both graphs exported (``torch.onnx.export(dynamo=True)``, opset 18, dynamic
  batch; the legacy exporter when that raises; ``export_s`` recorded) and run by an
  ``InferenceSession`` (all graph optimisations, intra-op threads = torch's thread count, one
  inter-op thread, no spinning of idle threads, as the hepgen command sets for OpenMP; the
  CUDA provider on CUDA when onnxruntime-gpu is installed, else skipped): numpy in, numpy out
  (on CUDA that includes the host-device copies).
* ``nflows``: the same architecture from plain nflows parts (``bench_flow.plain_flow``) with
  **the same weights** (the state dict loads as is): ``flow._transform.inverse(z, context=c)``
  (given z; nflows also computes the inverse's log-determinant) / ``flow.log_prob``.  The
  same function up to hepgen's clamping of conditioner inputs to the tail bound.
  ``nflows_sample``: ``flow.sample(1, context=c)``, which draws its noise (global RNG).
* ``zuko`` (when importable): ``zuko.flows.NSF(features=7, context=7, bins=16, transforms=6,
  passes=2, hidden_features=[128] * 4)``, zuko's initialisation: ``flow(c).transform.inv(z)`` /
  ``flow(c).log_prob(x)``.  zuko's conditioner is a plain masked MLP with the context at its
  input only (nflows: residual blocks with a context gate each) and its 2-pass coupling
  inverts in 2 network passes per transform; its spline bound is 5 (nflows 4) and it has no LU
  layers.  Four hidden layers make its multiply-adds per pass closest to nflows' (the
  ``flop_per_row`` entries give both).

Batches: 1e3, 1e4, 1e5 (quick: 1e3, 1e4; CUDA: up to 1e6); each rate covers
``max(B, 2e4)`` rows (quick 1e4) in calls of B rows, the best of up to 3 timings (one when a
timing takes 2 s or more), after one warm-up call of each path; the timings go round all the
paths in turn, so that a change of a shared machine's load hits them alike.  On CUDA each
timing ends with a synchronisation and the peak memory of each path and batch
(``torch.cuda.max_memory_allocated``, the pre-made inputs and the weights included;
onnxruntime's own allocations are not seen) is recorded.  ``phase_s`` says where the run's
time went (building and exporting, compiling, parity, each batch).

Compute bound: :func:`flops_per_row` counts the float multiply-adds of one sampled row in the
graph (2 x in x out of every matmul, the context product included); the same-shape matmul
``(B, 128) @ (128, 128)`` is timed in float32 and bfloat16 at every batch, and the bound is
GFLOP/s / FLOP per row.  ``ratio_vs_nflows`` = path rows/s / nflows rows/s (same batch, same
run; > 1: faster); ``fraction_of_bound`` = rows/s / the bound of the path's matmul precision.
The device comes from ``HEPGEN_BENCH_DEVICE`` (default ``cpu``; ``benchmarks/gpu.sh`` sets
``cuda``), the batch list from ``HEPGEN_BENCH_BATCHES`` (comma-separated, optional).
"""

from __future__ import annotations

import os
import re
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _sampling_ways import ROLES, C, D, Inputs, Way, sync, tf32_matmuls, ways_of
from _timing import best_time

from hepgen.models.flow import ConditionalFlow, FlowSettings, save_flow
from hepgen.models.flow_graph import DensityGraph, SamplingGraph
from hepgen.models.flow_model import FlowModel
from hepgen.models.parity import parity_inputs, sample_parity

__all__ = ["flops_per_row", "matmul_gflops", "run"]

SEED = 0
PERTURB_SCALE = 0.05
PERTURB_LAST = 0.1
HIDDEN = 128
DEVICE_ENV = "HEPGEN_BENCH_DEVICE"
BATCHES_ENV = "HEPGEN_BENCH_BATCHES"


# ------------------------------------------------------------------------------- the model


def make_model(device: str) -> FlowModel:
    """The default-settings flow (D = 7, C = 7), identity initialisation perturbed (seeded),
    as a :class:`FlowModel` loaded onto ``device`` through the public save/load path."""
    flow = ConditionalFlow(D, C, FlowSettings(), seed=SEED)
    g = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for name, p in flow.named_parameters():
            scale = PERTURB_LAST if "final_layer" in name else PERTURB_SCALE
            p.add_(torch.randn(p.shape, generator=g) * scale)
    with tempfile.TemporaryDirectory() as tmp:
        save_flow(flow, tmp, name="flow")
        model = FlowModel.load(tmp, device=device)
    model.module_.eval()
    return model


# --------------------------------------------------------------------------- compute bound


def flops_per_row(graph: torch.nn.Module) -> int:
    """Float operations of the matrix products per row of a flow graph.

    ``2 x in x out`` summed over every stored matmul weight of the graph (the conditioners, the
    one context product, the folded affine maps); an autoregressive
    :class:`~hepgen.models.flow_graph.SamplingGraph` runs its conditioners D times per
    transform (one output slice per pass).  The spline and activations are not counted.

    Parameters
    ----------
    graph : SamplingGraph or DensityGraph

    Returns
    -------
    int
        FLOP per row (one multiply-add = 2 FLOP).

    Examples
    --------
    >>> from hepgen.models.flow import ConditionalFlow, FlowSettings
    >>> from hepgen.models.flow_graph import SamplingGraph
    >>> s = FlowSettings(n_transforms=1, hidden_features=4, n_blocks=1, n_bins=2)
    >>> flops_per_row(SamplingGraph(ConditionalFlow(2, 1, s)))  # 2 (1*4 + 2*4*4 + 4*5 + 1*8 + 2*2*2)
    144
    """
    passes = graph.n_features if graph.kind == "autoregressive" else 1
    sliced = isinstance(graph, SamplingGraph) and graph.kind == "autoregressive"
    total = 0
    for name, w in graph.named_buffers():
        if not name.endswith("_w") or w.ndim != 2:
            continue
        macs = int(w.shape[0]) * int(w.shape[1])
        if re.fullmatch(r"s\d+_(in|b\d+_\d)_w", name):
            macs *= passes
        elif re.fullmatch(r"s\d+_out_w", name) and sliced:
            macs = 0  # sampling uses the per-pass slices s{i}_out{j}
        total += macs
    return 2 * total


def matmul_gflops(device: str, dtype: torch.dtype, batch: int, tf32: bool = False) -> float:
    """GFLOP/s of ``(batch, 128) @ (128, 128)`` in ``dtype`` on ``device``, best of 5 timings
    of enough products for ~50 ms each."""
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(batch, HIDDEN, generator=g, device=device).to(dtype)
    w = torch.randn(HIDDEN, HIDDEN, generator=g, device=device).to(dtype) / HIDDEN**0.5
    out = torch.empty(batch, HIDDEN, device=device, dtype=dtype)
    flop = 2.0 * batch * HIDDEN * HIDDEN
    repeats = max(1, int((2e11 if device.startswith("cuda") else 5e9) / flop))

    def call() -> None:
        for _ in range(repeats):
            torch.mm(a, w, out=out)
        sync(device)

    with tf32_matmuls(device, tf32):
        call()
        seconds, _ = best_time(call, 5)
    return flop * repeats / seconds / 1e9


# ------------------------------------------------------------------------------ measuring


def _numpy_call(way: Way, role: str, a: np.ndarray, c: np.ndarray, device: str) -> np.ndarray:
    """One call of a way on whole arrays, numpy out (for the parity checks)."""
    fn = way.sample if role == "sample" else way.log_prob
    with way.mode():
        if way.numpy:
            return np.asarray(fn(a, c))
        out = fn(torch.from_numpy(a).to(device), torch.from_numpy(c).to(device))
        return out.float().cpu().numpy()


def _parity(ways: dict[str, Way], eager: Way, device: str, n_rows: int) -> None:
    """Samples and log-densities of every way against the eager flow, same inputs; into
    ``way.info["parity"]``."""
    rng = np.random.default_rng(SEED + 2)
    z, c = parity_inputs(n_rows, D, rng.standard_normal((4096, C)).astype(np.float32), seed=3)
    x_ref = _numpy_call(eager, "sample", z, c, device)
    lp_ref = _numpy_call(eager, "log_prob", x_ref, c, device)
    for name, way in ways.items():
        if name in ("eager", "model", "nflows_sample", "zuko") or way.sample is None:
            continue
        reduced = way.precision != "float32"
        report = {}
        for role, a, ref, tol in (
            ("sample", z, x_ref, 5e-2 if reduced else 1e-4),
            ("log_prob", x_ref, lp_ref, 5e-1 if reduced else 1e-3),
        ):
            try:
                r = sample_parity(
                    lambda a_, c_, ref=ref: ref,
                    lambda a_, c_, role=role, way=way: _numpy_call(way, role, a_, c_, device),
                    a,
                    c,
                    tolerance=tol,
                    what=f"{name} {role}",
                )
                report[role] = {
                    "max_abs": float(f"{r.max_abs:.3g}"),
                    "p99_abs": float(f"{r.p99_abs:.3g}"),
                    "tolerance": tol,
                    "passed": r.passed,
                }
            except Exception as err:
                report[role] = {"error": f"{type(err).__name__}: {err}"[:300]}
        way.info["parity"] = report


def _measure_batch(ways: dict[str, Way], inputs: Inputs, device: str, warm: bool) -> dict:
    """rows/s of every way and role at one batch size: up to 3 rounds over all ways in turn
    (so that a change of the machine's load hits them alike), a way's next call only while
    its calls so far took less than 2 s; the best call counts.  ``warm``: one warm-up call
    of each first (the first batch size).  Returns ``{(name, role): row}``."""
    jobs = [(n, r) for n, w in ways.items() for r in ROLES if w.has(r)]
    best = dict.fromkeys(jobs, float("inf"))
    spent = dict.fromkeys(jobs, 0.0)
    rows: dict[tuple[str, str], dict[str, Any]] = {job: {} for job in jobs}
    for round_ in range(-1 if warm else 0, 3):
        for job in jobs:
            name, role = job
            if "error" in rows[job] or spent[job] >= 2.0:
                continue
            if device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            try:
                start = time.perf_counter()
                ways[name].run(role, inputs.head() if round_ < 0 else inputs)
                sync(device)
                seconds = time.perf_counter() - start
            except Exception as err:
                rows[job] = {"error": f"{type(err).__name__}: {err}"[:300]}
                continue
            if round_ < 0:
                continue
            best[job], spent[job] = min(best[job], seconds), spent[job] + seconds
            rows[job]["rows_per_s"] = round(inputs.n_rows / best[job], 1)
            if device.startswith("cuda"):
                mib = torch.cuda.max_memory_allocated() / 2**20
                rows[job]["peak_mem_mib"] = round(max(mib, rows[job].get("peak_mem_mib", 0)), 1)
    return rows


def _bound(device: str, batch: int, flop: int) -> dict[str, float]:
    """Same-shape matmul GFLOP/s per precision at one batch, and the bound in rows/s."""
    precisions = {"float32": (torch.float32, False), "bfloat16": (torch.bfloat16, False)}
    if device.startswith("cuda"):
        precisions["tf32"] = (torch.float32, True)
    row: dict[str, float] = {}
    for name, (dtype, tf32) in precisions.items():
        gflops = matmul_gflops(device, dtype, batch, tf32=tf32)
        row[f"{name}_gflops"] = round(gflops, 1)
        row[f"{name}_rows_per_s"] = round(gflops * 1e9 / flop, 1)
    return row


def _ratios(paths: dict[str, dict], bounds: dict[str, dict]) -> None:
    """ratio_vs_nflows and fraction_of_bound of every hepgen way, in place."""
    reference = paths.get("nflows", {})
    for name, entry in paths.items():
        if name.startswith(("nflows", "zuko")):
            continue
        precision = entry.get("precision", "float32")
        for role in ("sample", "log_prob"):
            for b, row in entry.get(role, {}).items():
                rate = row.get("rows_per_s")
                plain = reference.get(role, {}).get(b, {}).get("rows_per_s")
                if rate and plain:
                    row["ratio_vs_nflows"] = round(rate / plain, 3)
                bound = bounds.get(b, {}).get(f"{precision}_rows_per_s")
                if rate and bound:
                    row["fraction_of_bound"] = round(rate / bound, 3)


def _table(paths: dict[str, dict], bounds: dict[str, dict], batches: list[int]) -> str:
    """rows/s (k), ratio vs nflows, fraction of the bound (and peak GPU memory), one line per
    way and role; the bounds; the parity of every way against the eager flow."""
    head = f"{'path':<14}{'role':<9}" + "".join(f"{f'batch {b:.0e}':>26}" for b in batches)
    lines = [head]
    for name, entry in paths.items():
        for role in ("sample", "log_prob"):
            rows = entry.get(role)
            if not rows:
                continue
            cells = []
            for b in batches:
                row = rows.get(str(b), {})
                if "rows_per_s" not in row:
                    cells.append(f"{'error' if 'error' in row else '-':>26}")
                    continue
                cell = f"{row['rows_per_s'] / 1e3:8.1f}k"
                if "ratio_vs_nflows" in row:
                    cell += f" x{row['ratio_vs_nflows']:.2f}"
                if "fraction_of_bound" in row:
                    cell += f" {row['fraction_of_bound']:4.0%} bnd"
                if "peak_mem_mib" in row:
                    cell += f" {row['peak_mem_mib']:.0f}MiB"
                cells.append(f"{cell:>26}")
            lines.append(f"{name:<14}{role:<9}" + "".join(cells))
    for precision in ("float32", "bfloat16", "tf32"):
        key = f"{precision}_rows_per_s"
        if key in bounds.get(str(batches[0]), {}):
            cells = "".join(f"{bounds[str(b)][key] / 1e3:25.1f}k" for b in batches)
            lines.append(f"{'bound ' + precision:<23}{cells}")
    for name, entry in paths.items():
        parity = entry.get("parity", {})
        if parity:
            text = ", ".join(
                f"{role} max {p['max_abs']:.1e} p99 {p['p99_abs']:.1e}"
                if "max_abs" in p
                else f"{role} {p.get('error', '?')[:60]}"
                for role, p in parity.items()
            )
            if name == "nflows":
                text += " (rows beyond the tail bound: hepgen clamps conditioner inputs)"
            lines.append(f"parity vs eager, {name}: {text}")
    return "\n".join(lines)


def _batches(quick: bool, device: str) -> list[int]:
    text = os.environ.get(BATCHES_ENV, "").strip()
    if text:
        return [int(float(b)) for b in text.split(",")]
    top = 6 if device.startswith("cuda") else 5
    return [10**k for k in range(3, (top if quick else top + 1))]


def _compile_warmup(way: Way, device: str) -> None:
    """Time the first calls of the compiled way (the compilations), not counted later; a
    failure is recorded (the measurements then record theirs)."""
    z = torch.randn(1000, D, device=device)
    c = torch.randn(1000, C, device=device)
    for role in ROLES:
        start = time.perf_counter()
        try:
            with way.mode():
                (way.sample if role == "sample" else way.log_prob)(z, c)
            sync(device)
        except Exception as err:
            way.info["errors"].append(f"{type(err).__name__}: {err}"[:300])
        way.info[f"compile_s_{role}"] = round(time.perf_counter() - start, 2)


def run(quick: bool = False) -> dict:
    """Run the benchmark and return its measurements.

    Parameters
    ----------
    quick : bool
        Batches 1e3 and 1e4 (CUDA: up to 1e5), at least 1e4 rows per rate instead of 2e4,
        parity on 5e3 rows instead of 2e4.

    Returns
    -------
    dict
        ``paths``: per way its note, details (export and compile times, parity against the
        eager flow) and per role and batch ``rows_per_s``, ``ratio_vs_nflows``,
        ``fraction_of_bound`` (and ``peak_mem_mib`` on CUDA); ``bound``: matmul GFLOP/s and
        the bound in rows/s per batch and precision; ``flop_per_row``; ``skipped``: ways not
        run and why.
    """
    device = os.environ.get(DEVICE_ENV, "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"{DEVICE_ENV}={device} but torch sees no CUDA device")
    warnings.filterwarnings("ignore", message=".*triangular_solve.*")  # plain LULinear.inverse
    batches = _batches(quick, device)
    min_rows = 10_000 if quick else 20_000
    model = make_model(device)
    flop = flops_per_row(SamplingGraph(model.flow_))
    out: dict[str, Any] = {
        "device": device if device == "cpu" else torch.cuda.get_device_name(device),
        "torch_threads": torch.get_num_threads(),
        "n_features": D,
        "n_conditions": C,
        "settings": FlowSettings().to_dict(),
        "weights": f"identity init + N(0, {PERTURB_SCALE}) on every parameter, "
        f"N(0, {PERTURB_LAST}) on the conditioners' last layers (seed {SEED + 1})",
        "batches": batches,
        "flop_per_row": {
            "hepgen_sample": flop,
            "hepgen_log_prob": flops_per_row(DensityGraph(model.flow_)),
        },
        "ratio_vs_nflows": "hepgen rows/s / nflows (given z) rows/s, same batch (> 1: faster)",
        "fraction_of_bound": "rows/s / (matmul GFLOP/s of the path's precision / FLOP per row)",
        "bound": {},
        "phase_s": {},
    }
    phases = out["phase_s"]
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        phases[name] = round(time.perf_counter() - clock, 1)
        clock = time.perf_counter()

    with tempfile.TemporaryDirectory() as tmp:
        ways, out["skipped"] = ways_of(model, device, Path(tmp))
        lap("build_and_export")
        _compile_warmup(ways["compiled"], device)
        lap("compile")
        _parity(ways, ways["eager"], device, 5_000 if quick else 20_000)
        lap("parity")
        rng = np.random.default_rng(SEED + 4)
        z_all = rng.standard_normal((max(max(batches), min_rows), D)).astype(np.float32)
        c_all = rng.standard_normal((len(z_all), C)).astype(np.float32)
        x_all = _numpy_call(ways["eager"], "sample", z_all, c_all, device)
        paths: dict[str, dict] = {
            name: {"note": w.note, "precision": w.precision, **w.info, "sample": {}, "log_prob": {}}
            for name, w in ways.items()
        }
        for b in batches:
            n = max(b, min_rows)
            inputs = Inputs(z_all[:n], c_all[:n], x_all[:n], b, device)
            out_b = str(b)
            out["bound"][out_b] = _bound(device, b, flop)
            measured = _measure_batch(ways, inputs, device, warm=b == batches[0])
            for (name, role), row in measured.items():
                paths[name][role][out_b] = row
            del inputs
            lap(f"batch_{b}")
    _ratios(paths, out["bound"])
    for entry in paths.values():
        if "errors" in entry:
            errors = entry.pop("errors")
            if errors:
                entry["compile_error"] = errors[0]
    out["paths"] = paths
    print(_table(paths, out["bound"], batches), flush=True)
    return out
