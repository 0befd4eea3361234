"""Conditional flows (:mod:`hepgen.models.flow`): training, sampling and log_prob throughput,
hepgen beside the same architecture built from plain nflows parts.

Workload: D = 6 targets given C = 7 conditions, jet-like model-space data: the conditions are
standard normal, the targets ``x = A c + s(c) * noise`` with a fixed random ``A`` and a
condition-dependent noise width ``s(c)``, standardised per column (a response-like
conditional structure, as the fast simulation sees after preprocessing).

Flows: the default :class:`~hepgen.models.flow.FlowSettings` (RQ-spline coupling, 6
transforms, 128 hidden features, 2 residual blocks, 16 bins, tail bound 4, LU mixing) and the
same with ``kind="autoregressive"``.  The *plain* reference is built from nflows parts
directly with the same architecture: ``nflows.flows.Flow`` with a ``CompositeTransform`` of
(``RandomPermutation``, ``LULinear``, ``PiecewiseRationalQuadraticCouplingTransform`` with
``ResidualNet`` conditioners / ``MaskedPiecewiseRationalQuadraticAutoregressiveTransform``
with residual MADE blocks) per step, a closing ``LULinear``, ``tails="linear"``, the same
tail bound, bins, hidden size and blocks, a ``StandardNormal`` base and nflows' own
initialisation.  What differs is hepgen's: its own spline (``torch.where`` instead of
boolean-mask indexing, robust inverse), conditioner inputs clamped to the tail bound, and the
training loop (:func:`hepgen.training.train`: seeded shuffling, nearly equal batches, cosine
schedule, gradient clipping at 5, NaN guard, per-epoch bookkeeping) against a bare AdamW loop
(same learning rate and weight decay, no schedule, no clipping).

Measured on the CPU (and on CUDA too when ``torch.cuda.is_available()``):

* ``training``: :meth:`FlowModel.fit` for 2 epochs (batch 4096, ``selection="loss"``, no
  validation, quiet) on 200k events (20k with ``quick``), whole call timed, beside the plain
  loop over the same number of events; events/s = 2 * n / seconds.
* ``sampling``: :meth:`FlowModel.sample` ``(conditions, seed, batch_size=B)`` at B = 1, 100,
  1e4, 1e5 (quick: up to 1e4) over ``max(B, 2e4)`` condition rows (1e4 with ``quick``); B = 1
  is 200 single-row calls.  Plain: ``flow.sample(1, context=c)`` per batch of B contexts
  (nflows' one-sample-per-context API) reshaped to (B, D), under ``torch.no_grad``.  Both
  take numpy conditions and return numpy arrays, so both pay the same conversions.
* ``log_prob``: :meth:`FlowModel.log_prob` ``(x, c, batch_size=B)`` beside plain
  ``flow.log_prob(x, context=c)`` per batch under ``torch.inference_mode``, same batch sizes
  and rows.

Training is timed once, after a one-batch warm-up run of each loop; sampling and log_prob
times are the best of up to 3 calls (one when a call takes 2 s or more); on CUDA each timed
call ends with a device synchronisation.  Every ``ratio`` is
**hepgen events/s divided by plain nflows events/s** in the same run: above 1 hepgen is
faster, below 1 it pays that factor for its extras (protocol checks, seeded generator,
numpy round trip, training-loop bookkeeping).  Absolute rates on shared machines are noisy;
compare the ratios, and compare absolute rates with the ``anchors`` (ANCHORS.md, "Flow
libraries on these machines": 2 CPU threads, 5 transforms, batch 8192, thousands of events/s,
log_prob / sample) only roughly, as those flows are unconditional and smaller.
Autoregressive sampling costs D = 6 network passes per transform, coupling sampling one.
Speed targets are judged from the JSON, never asserted in tests.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import torch
from _timing import best_time
from nflows.distributions.normal import StandardNormal
from nflows.flows.base import Flow
from nflows.nn.nets import ResidualNet
from nflows.transforms import (
    CompositeTransform,
    LULinear,
    MaskedPiecewiseRationalQuadraticAutoregressiveTransform,
    PiecewiseRationalQuadraticCouplingTransform,
    RandomPermutation,
)

from hepgen.models.flow import FlowSettings
from hepgen.models.flow_model import FlowModel
from hepgen.training import TrainingSettings

__all__ = ["run"]

N_FEATURES = 6
N_CONDITIONS = 7
BATCH_SIZE = 4096
EPOCHS = 2
SINGLE_CALLS = 200

# ../shared/ANCHORS.md, "Flow libraries on these machines" (2 CPU threads, 5 transforms,
# batch 8192, unconditional): thousands of events/s, [log_prob, sample].
ANCHORS = {
    "source": "ANCHORS.md: Flow libraries on these machines (2 CPU threads, 5 transforms, "
    "batch 8192, k events/s, log_prob / sample)",
    "nflows MAF (affine)": {"D=4": [61, 16], "D=16": [71, 5]},
    "nflows RQ-NSF autoregressive": {"D=4": ["21-55", 12], "D=16": [32, 2]},
    "nflows RQ-NSF coupling": {"D=4": [58, 64], "D=16": [42, 40]},
    "zuko RQ-NSF coupling": {"D=4": [81, 38], "D=16": [29, 19]},
}


# ------------------------------------------------------------------------------------ data


def make_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Model-space (targets (n, 6), conditions (n, 7)), float32: ``x = A c + s(c) noise``."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((n, N_CONDITIONS))
    a = np.random.default_rng(12345).normal(0.0, 0.6, (N_FEATURES, N_CONDITIONS))
    width = 0.3 + 0.2 * np.abs(np.tanh(c[:, :1]))  # a resolution that depends on the "pt"
    x = c @ a.T + width * rng.standard_normal((n, N_FEATURES))
    x = (x - x.mean(0)) / x.std(0)
    return x.astype(np.float32), c.astype(np.float32)


# ------------------------------------------------------------------------------ plain nflows


def plain_flow(
    settings: FlowSettings,
    seed: int,
    n_features: int = N_FEATURES,
    n_conditions: int = N_CONDITIONS,
) -> Flow:
    """The settings' architecture from nflows parts directly (nflows' own initialisation)."""
    s = settings
    torch.manual_seed(seed)
    transforms = []
    for i in range(s.n_transforms):
        transforms += [RandomPermutation(n_features), LULinear(n_features, identity_init=True)]
        if s.kind == "coupling":
            mask = torch.zeros(n_features, dtype=torch.int64)
            mask[i % 2 :: 2] = 1
            transforms.append(
                PiecewiseRationalQuadraticCouplingTransform(
                    mask=mask,
                    transform_net_create_fn=lambda n_in, n_out: ResidualNet(
                        n_in,
                        n_out,
                        hidden_features=s.hidden_features,
                        context_features=n_conditions,
                        num_blocks=s.n_blocks,
                    ),
                    num_bins=s.n_bins,
                    tails="linear",
                    tail_bound=s.tail_bound,
                )
            )
        else:
            transforms.append(
                MaskedPiecewiseRationalQuadraticAutoregressiveTransform(
                    features=n_features,
                    hidden_features=s.hidden_features,
                    context_features=n_conditions,
                    num_bins=s.n_bins,
                    tails="linear",
                    tail_bound=s.tail_bound,
                    num_blocks=s.n_blocks,
                    use_residual_blocks=True,
                    random_mask=False,
                )
            )
    transforms.append(LULinear(n_features, identity_init=True))
    return Flow(CompositeTransform(transforms), StandardNormal([n_features]))


def train_plain(
    flow: Flow, x: np.ndarray, c: np.ndarray, device: str, seed: int, epochs: int = EPOCHS
) -> float:
    """Bare AdamW loop (lr 1e-3, weight decay 1e-5, shuffled batches of 4096); returns the
    mean loss of the last epoch."""
    flow.to(device).train()
    torch.manual_seed(seed)
    xt = torch.from_numpy(x).to(device)
    ct = torch.from_numpy(c).to(device)
    opt = torch.optim.AdamW(flow.parameters(), lr=1e-3, weight_decay=1e-5)
    total = 0.0
    for _ in range(epochs):
        perm = torch.randperm(len(xt), device=device)
        total = torch.zeros((), device=device)
        for start in range(0, len(xt), BATCH_SIZE):
            idx = perm[start : start + BATCH_SIZE]
            loss = -flow.log_prob(xt[idx], context=ct[idx]).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * len(idx)
    flow.eval()
    return float(total) / len(xt)


def plain_sample(flow: Flow, c: np.ndarray, batch_size: int, device: str) -> np.ndarray:
    out = []
    with torch.no_grad():
        for start in range(0, len(c), batch_size):
            cb = torch.from_numpy(c[start : start + batch_size]).to(device)
            out.append(flow.sample(1, context=cb).reshape(len(cb), -1).cpu().numpy())
    return np.concatenate(out)


def plain_log_prob(
    flow: Flow, x: np.ndarray, c: np.ndarray, batch_size: int, device: str
) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for start in range(0, len(c), batch_size):
            xb = torch.from_numpy(x[start : start + batch_size]).to(device)
            cb = torch.from_numpy(c[start : start + batch_size]).to(device)
            out.append(flow.log_prob(xb, context=cb).cpu().numpy())
    return np.concatenate(out)


# ----------------------------------------------------------------------------------- timing


def _timed(fn, device: str, budget_s: float = 2.0, max_calls: int = 3) -> float:
    """Best wall time (s) of up to ``max_calls`` calls of ``fn``, calling again only while the
    calls so far took less than ``budget_s`` together (synchronised on CUDA).  The long
    measurements are single calls; their first-call overheads are small beside them."""

    def call():
        result = fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return result

    best, _ = best_time(call, 1)
    spent, calls = best, 1
    while calls < max_calls and spent < budget_s:
        t, _ = best_time(call, 1)
        best, spent, calls = min(best, t), spent + t, calls + 1
    return best


def _rate(n: int, seconds: float) -> float:
    return round(n / seconds, 1)


def _throughput(hepgen_fn, plain_fn, n_rows: int, device: str) -> dict:
    """events/s of both and the ratio hepgen / plain; a plain failure is recorded."""
    row: dict = {"rows": n_rows}
    t_h = _timed(hepgen_fn, device)
    row["hepgen_events_per_s"] = _rate(n_rows, t_h)
    try:
        t_p = _timed(plain_fn, device)
    except (AssertionError, RuntimeError, ValueError) as err:  # nflows issue 87 and friends
        row["plain_error"] = f"{type(err).__name__}: {err}"[:300]
        return row
    row["plain_events_per_s"] = _rate(n_rows, t_p)
    row["ratio"] = round(t_p / t_h, 3)
    return row


def _one_flow(
    settings: FlowSettings, device: str, n_train: int, batch_sizes: list[int], min_rows: int
) -> dict:
    out: dict = {}
    x, c = make_data(n_train, seed=1)
    n_events = EPOCHS * n_train

    # training, after one warm-up epoch of each on one batch (lazy initialisations)
    warm = slice(0, BATCH_SIZE)
    FlowModel(settings, seed=0, device=device).fit(
        x[warm],
        c[warm],
        training=TrainingSettings(max_epochs=1, device=device),
        selection="loss",
        quiet=True,
    )
    train_plain(plain_flow(settings, seed=0), x[warm], c[warm], device, seed=0, epochs=1)
    model = FlowModel(settings, seed=0, device=device)
    training = TrainingSettings(max_epochs=EPOCHS, batch_size=BATCH_SIZE, device=device, seed=0)
    t0 = time.perf_counter()
    result = model.fit(x, c, training=training, selection="loss", quiet=True)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t_hepgen = time.perf_counter() - t0
    flow = plain_flow(settings, seed=0)
    t0 = time.perf_counter()
    plain_loss = train_plain(flow, x, c, device, seed=0)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    t_plain = time.perf_counter() - t0
    out["training"] = {
        "n_events": n_train,
        "epochs": EPOCHS,
        "batch_size": BATCH_SIZE,
        "hepgen_s": round(t_hepgen, 3),
        "plain_s": round(t_plain, 3),
        "hepgen_events_per_s": _rate(n_events, t_hepgen),
        "plain_events_per_s": _rate(n_events, t_plain),
        "ratio": round(t_plain / t_hepgen, 3),
        "hepgen_last_train_loss": round(float(result.history[-1]["train_loss"]), 4),
        "plain_last_train_loss": round(plain_loss, 4),
        "n_parameters": {
            "hepgen": int(sum(p.numel() for p in model.flow_.parameters())),
            "plain": int(sum(p.numel() for p in flow.parameters())),
        },
    }

    # sampling and log_prob, on fresh evaluation rows
    xe, ce = make_data(max(max(batch_sizes), min_rows), seed=2)
    sampling, log_prob = {}, {}
    for b in batch_sizes:
        if b == 1:
            n_rows = SINGLE_CALLS
            xs, cs = xe[:n_rows], ce[:n_rows]

            def h_sample(cs=cs):
                return [model.sample(cs[i : i + 1], seed=i, batch_size=1) for i in range(len(cs))]

            def p_sample(cs=cs):
                return [plain_sample(flow, cs[i : i + 1], 1, device) for i in range(len(cs))]

            def h_logp(xs=xs, cs=cs):
                return [
                    model.log_prob(xs[i : i + 1], cs[i : i + 1], batch_size=1)
                    for i in range(len(cs))
                ]

            def p_logp(xs=xs, cs=cs):
                return [
                    plain_log_prob(flow, xs[i : i + 1], cs[i : i + 1], 1, device)
                    for i in range(len(cs))
                ]
        else:
            n_rows = max(b, min_rows)
            xs, cs = xe[:n_rows], ce[:n_rows]

            def h_sample(cs=cs, b=b):
                return model.sample(cs, seed=0, batch_size=b)

            def p_sample(cs=cs, b=b):
                return plain_sample(flow, cs, b, device)

            def h_logp(xs=xs, cs=cs, b=b):
                return model.log_prob(xs, cs, batch_size=b)

            def p_logp(xs=xs, cs=cs, b=b):
                return plain_log_prob(flow, xs, cs, b, device)

        sampling[str(b)] = _throughput(h_sample, p_sample, n_rows, device)
        log_prob[str(b)] = _throughput(h_logp, p_logp, n_rows, device)
    out["sampling"] = sampling
    out["log_prob"] = log_prob
    return out


def run(quick: bool = False) -> dict:
    """Run the benchmark and return its measurements.

    Parameters
    ----------
    quick : bool
        Train on 2e4 events instead of 2e5, batch sizes up to 1e4 instead of 1e5, and
        evaluate on at least 1e4 rows instead of 2e4.

    Returns
    -------
    dict
        Per device and flow kind: ``training``, ``sampling`` and ``log_prob`` with events/s of
        hepgen and plain nflows and their ratio (hepgen / plain); the ANCHORS reference
        numbers and the torch thread count.
    """
    warnings.filterwarnings("ignore", message=".*triangular_solve.*")  # plain LULinear.inverse
    n_train = 20_000 if quick else 200_000
    batch_sizes = [1, 100, 10_000] if quick else [1, 100, 10_000, 100_000]
    min_rows = 10_000 if quick else 20_000
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    out: dict = {
        "n_features": N_FEATURES,
        "n_conditions": N_CONDITIONS,
        "torch_threads": torch.get_num_threads(),
        "devices": devices,
        "settings": {},
        "ratio": "hepgen events/s / plain nflows events/s (> 1: hepgen faster)",
        "anchors": ANCHORS,
    }
    for device in devices:
        per_kind = {}
        for kind in ("coupling", "autoregressive"):
            settings = FlowSettings(kind=kind)
            out["settings"][kind] = settings.to_dict()
            per_kind[kind] = _one_flow(settings, device, n_train, batch_sizes, min_rows)
        out[device] = per_kind
    return out
