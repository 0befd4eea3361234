"""The multivariate metrics of a comparison, run on two tables (and what some of them need).

:func:`run_multivariate` is the part of :func:`~hepgen.validation.compare.compare` that runs
every metric on all features together: the classifier test, MMD, FPD, KPD, PRDC, PRD curves,
NDB, and, when their extra inputs are there (:class:`MetricInputs`), the data-copying test
(the training sample) and the Inception-score analogue (a class label).  Rows with a
non-finite value are left out, and so are features constant in both samples; a metric that
cannot run leaves a note instead of failing the comparison.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from hepgen.errors import InputError
from hepgen.progress import progress
from hepgen.validation._checks import check_weights
from hepgen.validation.result import MULTIVARIATE_METRICS
from hepgen.validation.samples import Table, as_table
from hepgen.validation.verdict import metric_function

__all__ = ["MetricInputs", "finite_rows", "run_multivariate", "timed", "train_table"]


def finite_rows(table: Table) -> Table:
    rows = np.isfinite(table.values).all(axis=1)
    return table if rows.all() else table.select_rows(rows)


def timed(
    timings: dict[str, float], key: str, fn: Callable[..., Any], *args: Any, **kwargs: Any
) -> Any:
    t0 = time.perf_counter()
    try:
        return fn(*args, **kwargs)
    finally:
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - t0


def run_multivariate(
    ref: Table,
    cand: Table,
    metrics: Sequence[str],
    options: Mapping[str, Mapping[str, Any]],
    seeds: list[int],
    device: str,
    timings: dict[str, float],
    notes: list[str],
    quiet: bool,
    extra: MetricInputs | None = None,
) -> dict[str, Any]:
    ref, cand = finite_rows(ref), finite_rows(cand)
    if min(ref.n, cand.n) == 0:
        notes.append("no rows finite in every feature: multivariate tests not run")
        return dict.fromkeys(MULTIVARIATE_METRICS)
    # A feature constant (and equal) in both samples carries no information and makes
    # covariance matrices singular; leave it out of the multivariate tests.
    keep = []
    for j, name in enumerate(ref.names):
        both = np.concatenate([ref.values[:, j], cand.values[:, j]])
        if both.min() == both.max():
            notes.append(f"{name}: constant in both samples, left out of the multivariate tests")
        else:
            keep.append(j)
    out: dict[str, Any] = dict.fromkeys(MULTIVARIATE_METRICS)
    if not keep:
        notes.append("no non-constant features: multivariate tests not run")
        return out
    x, y = ref.values[:, keep], cand.values[:, keep]
    wx, wy = ref.weights, cand.weights
    names = [ref.names[j] for j in keep]
    calls = _calls(ref, cand, x, y, wx, wy, names, options, seeds, device, extra or MetricInputs())
    todo = [m for m in MULTIVARIATE_METRICS if m in metrics]
    with progress(total=len(todo), desc="multivariate tests", unit="test", quiet=quiet) as bar:
        for key in todo:
            call = calls[key]
            if isinstance(call, str):  # the reason it cannot run
                notes.append(f"{key}: not computed: {call}")
                bar.update(1)
                continue
            try:
                out[key] = timed(timings, key, call)
            except InputError as exc:
                # e.g. too few events for the classifier or for FPD: flagged, not fatal
                notes.append(f"{key}: not computed: {exc}")
            bar.update(1)
    return out


@dataclasses.dataclass
class MetricInputs:
    """What the metrics beyond two samples need: the training sample (memorisation) and the
    class label with the classifier's inputs (Inception-score analogue)."""

    train: Table | None = None
    label: str | None = None
    label_inputs: Sequence[str] | None = None


def _calls(
    ref: Table,
    cand: Table,
    x: np.ndarray,
    y: np.ndarray,
    wx: np.ndarray | None,
    wy: np.ndarray | None,
    names: list[str],
    options: Mapping[str, Mapping[str, Any]],
    seeds: list[int],
    device: str,
    extra: MetricInputs,
) -> dict[str, Callable[[], Any] | str]:
    """Each multivariate metric as a call without arguments, or the reason it cannot run.

    A metric's module is imported only when its call runs."""

    def opts(key: str) -> dict[str, Any]:
        return dict(options.get(key, {}))

    def call(key: str, *args: Any, **kwargs: Any) -> Callable[[], Any]:
        return lambda: metric_function(key)(*args, **kwargs, **opts(key))

    on = {"device": device}
    named = {"feature_names": names, "device": device}
    calls: dict[str, Callable[[], Any] | str] = {
        "c2st": call("c2st", x, y, wx, wy, seed=seeds[0], **named),
        "mmd": call("mmd", x, y, wx, wy, seed=seeds[1], **on),
        "fpd": call("fpd", x, y, wx, wy, seed=seeds[2]),
        "kpd": call("kpd", x, y, wx, wy, seed=seeds[3], **on),
        "prdc": call("prdc", x, y, wx, wy, seed=seeds[4], **on),
        "prd": call("prd", x, y, wx, wy, seed=seeds[6], **named),
        "ndb": call("ndb", x, y, wx, wy, seed=seeds[7], **named),
    }
    calls["memorisation"] = _memorisation_call(
        extra.train, x, y, wx, wy, names, seeds[8], device, opts("memorisation")
    )
    calls["inception"] = _inception_call(ref, cand, extra, seeds[9], device, opts("inception"))
    return calls


def _memorisation_call(
    train: Table | None,
    x: np.ndarray,
    y: np.ndarray,
    wx: np.ndarray | None,
    wy: np.ndarray | None,
    names: list[str],
    seed: int,
    device: str,
    options: dict[str, Any],
) -> Callable[[], Any] | str:
    if train is None:
        return "no training sample (train=, hepgen validate --train FILE or --model MODEL_DIR)"
    missing = [n for n in names if n not in train.names]
    if missing:
        return f"the training sample lacks the feature(s) {missing}"
    t = finite_rows(train.select_columns(names))
    if t.n == 0:
        return "no training row finite in every feature"
    return lambda: metric_function("memorisation")(
        t.values,
        x,
        y,
        t.weights,
        wx,
        wy,
        feature_names=names,
        device=device,
        seed=seed,
        **options,
    )


def _inception_call(
    ref: Table,
    cand: Table,
    extra: MetricInputs,
    seed: int,
    device: str,
    options: dict[str, Any],
) -> Callable[[], Any] | str:
    label = extra.label
    if label is None:
        return (
            "no class label (label=, hepgen validate --label NAME; with --config a "
            "categorical condition such as the gen flavour is taken)"
        )
    if label not in ref.names:
        return f"the class label '{label}' is not a compared feature"
    inputs = [n for n in (extra.label_inputs or ref.names) if n != label and n in ref.names]
    if not inputs:
        return f"no feature to predict the class label '{label}' from"
    r, c = ref.select_columns([*inputs, label]), cand.select_columns([*inputs, label])
    return lambda: metric_function("inception")(
        r.values[:, :-1],
        c.values[:, :-1],
        r.values[:, -1],
        c.values[:, -1],
        r.weights,
        c.weights,
        feature_names=inputs,
        device=device,
        seed=seed,
        **options,
    )


def train_table(train: Any, weights: Any, ref: Table) -> Table:
    """The training sample as a table of the reference's features (checked: names, weights,
    not empty)."""
    plain = isinstance(train, np.ndarray | list)
    table = as_table(train, ref.names if plain else None, weights, label="training sample")
    missing = [n for n in ref.names if n not in table.names]
    if missing:
        raise InputError(
            f"training sample: no feature(s) {missing} of the compared ones (it has {table.names})"
        )
    table = table.select_columns(ref.names)
    if table.n == 0:
        raise InputError("training sample: no rows")
    check_weights(table.weights, table.n, table.label)
    return table
