"""The fidelity/diversity trade-off of a fast simulation's sampling knobs (truncation, temperature).

The truncation trick and the sampling temperature (:mod:`hepgen.models.latent`) move a
generator's draws towards the core of its latent distribution.  What that buys and costs is
measured here with precision, recall, density and coverage (PRDC,
:func:`~hepgen.validation.fidelity.prdc`): precision and density say how many generated rows
lie on the reference's manifold (fidelity), recall and coverage how much of the reference the
generated rows reach (diversity).  A smaller threshold ``psi`` or temperature ``T`` should raise
the first pair and lower the second.

Protocol of :func:`sampling_tradeoff`: the reference's rows (one per matched gen/reco pair,
conditions and targets in physical units) are split at random into two halves A and B.  For
each knob value the model draws the targets at the conditions of half B, and PRDC compares
these rows (conditions + generated targets) with half A; the same comparison of the real half
B with half A is the baseline, a perfect model at that sample size.  Both sides of every row of
the table therefore share the conditions and the sizes: only the targets differ.  Every value
is drawn with the same seed (common random numbers), so differences between values are not
sampling noise of the model.  The knob not swept stays at the trained model's setting
(temperature 1, no truncation), whatever the model's configured ``model.sampling``.

References
----------
M. F. Naeem, S. J. Oh, Y. Uh, Y. Choi, J. Yoo, "Reliable Fidelity and Diversity Metrics for
Generative Models", ICML 2020, arXiv:2002.09797.
A. Brock, J. Donahue, K. Simonyan, "Large scale GAN training for high fidelity natural image
synthesis", ICLR 2019, arXiv:1809.11096 (the truncation trick and its trade-off curve).
D. P. Kingma, P. Dhariwal, "Glow: generative flow with invertible 1x1 convolutions",
NeurIPS 2018, arXiv:1807.03039 (sampling temperature).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hepgen.errors import InputError
from hepgen.models.latent import LatentOptions
from hepgen.validation.fidelity import prdc
from hepgen.validation.samples import Table, as_table

__all__ = [
    "KNOBS",
    "SamplingTradeoff",
    "default_tradeoff",
    "parse_tradeoff_values",
    "sampling_tradeoff",
]

#: The sampling knobs that can be swept.
KNOBS = ("truncation", "temperature")

#: Default knob and values per response kind: the truncation trick for a GAN (``None``: not
#: truncated, as trained), the temperature for flows and VAEs (1: as trained).
DEFAULT_TRADEOFF: dict[str, tuple[str, tuple[float | None, ...]]] = {
    "gan": ("truncation", (0.5, 1.0, 1.5, 2.0, None)),
    "flow": ("temperature", (0.6, 0.8, 1.0, 1.2)),
    "vae": ("temperature", (0.6, 0.8, 1.0, 1.2)),
}

_METRICS = ("precision", "recall", "density", "coverage")


@dataclasses.dataclass(frozen=True)
class SamplingTradeoff:
    """Result of :func:`sampling_tradeoff`: PRDC of generated vs reference rows per knob value.

    Attributes
    ----------
    knob : str
        ``"truncation"`` (threshold psi) or ``"temperature"`` (T).
    values : list of float or None
        The knob's values, in the order given; ``None``: as trained (no truncation, T = 1).
    precision, recall, density, coverage : list of float
        One per value (dimensionless; density is unbounded above, the others lie in [0, 1]).
    baseline : dict of str to float
        The four metrics of the reference's half B against half A: a perfect model.
    as_trained : int or None
        Index in ``values`` of the trained model's setting (``None`` or T = 1), if swept.
    n_reference, n_candidate : int
        Rows of half A (the "real" side) and of half B (the generated side), after PRDC's
        unweighting.
    k : int
        Nearest-neighbour order of PRDC.
    seed : int
        Seed of the split, the draws and PRDC.
    kind : str
        The response's ``model.kind``.
    features : list of str
        The compared columns: conditions, then targets.
    notes : list of str
        Rows dropped (non-finite values), unweighting.
    """

    knob: str
    values: list[float | None]
    precision: list[float]
    recall: list[float]
    density: list[float]
    coverage: list[float]
    baseline: dict[str, float]
    as_trained: int | None
    n_reference: int
    n_candidate: int
    k: int
    seed: int
    kind: str
    features: list[str]
    notes: list[str] = dataclasses.field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (the ``tradeoff`` key of ``metrics.json``)."""
        return {
            "knob": self.knob,
            "values": list(self.values),
            "as_trained": self.as_trained,
            **{m: [round(v, 6) for v in getattr(self, m)] for m in _METRICS},
            "baseline": {m: round(self.baseline[m], 6) for m in _METRICS},
            "n_events": {"reference": self.n_reference, "candidate": self.n_candidate},
            "k": self.k,
            "seed": self.seed,
            "kind": self.kind,
            "features": list(self.features),
            "notes": list(self.notes),
        }


def _is_trained(knob: str, value: float | None) -> bool:
    return value is None or (knob == "temperature" and value == 1.0)


def default_tradeoff(
    kind: str, knob: str | None = None, values: Sequence[float | None] | None = None
) -> tuple[str, list[float | None]]:
    """The knob and values to sweep for a response of ``kind``, checked.

    Parameters
    ----------
    kind : str
        ``model.kind`` of the response (``"gan"``, ``"flow"``, ``"vae"``).
    knob : {"truncation", "temperature"} or None
        ``None``: truncation for a GAN, temperature otherwise.
    values : sequence of (float or None) or None
        Positive finite values, ``None`` for as trained; default: psi (0.5, 1, 1.5, 2, none)
        for truncation, T (0.6, 0.8, 1, 1.2) for temperature.

    Returns
    -------
    knob : str
    values : list of float or None

    Raises
    ------
    InputError
        An unknown knob, no value, a value that is not a positive finite number or ``None``,
        or a value given twice (``None`` and 1 are the same temperature).

    Examples
    --------
    >>> default_tradeoff("gan")
    ('truncation', [0.5, 1.0, 1.5, 2.0, None])
    >>> default_tradeoff("flow", "truncation", [1, None])
    ('truncation', [1.0, None])
    """
    kind_knob, kind_values = DEFAULT_TRADEOFF.get(kind, DEFAULT_TRADEOFF["flow"])
    if knob is None:
        knob = kind_knob
    if knob not in KNOBS:
        raise InputError(f"tradeoff knob {knob!r}: expected one of {list(KNOBS)}")
    if values is None:
        values = (
            kind_values
            if knob == kind_knob
            else DEFAULT_TRADEOFF["gan" if knob == "truncation" else "flow"][1]
        )
    if isinstance(values, str | bytes) or not isinstance(values, Sequence) or not values:
        raise InputError(f"tradeoff values {values!r}: expected a non-empty list of numbers")
    out: list[float | None] = []
    seen: set[float | None] = set()
    for v in values:
        if v is not None:
            # the same checks and message as the sampling options
            LatentOptions(**{knob: v})
            v = float(v)
        key = 1.0 if (knob == "temperature" and v is None) else v
        if key in seen:
            raise InputError(
                f"tradeoff values {list(values)!r}: {v!r} given twice"
                + (" (none is temperature 1)" if knob == "temperature" else "")
            )
        seen.add(key)
        out.append(v)
    return knob, out


def parse_tradeoff_values(text: str) -> list[float | None]:
    """Knob values from the command line: ``"0.5,1,1.5,2,none"`` -> ``[0.5, 1.0, 1.5, 2.0, None]``.

    Raises
    ------
    InputError
        An empty item, or one that is neither a positive finite number nor ``none``.

    Examples
    --------
    >>> parse_tradeoff_values("0.5, 1,none")
    [0.5, 1.0, None]
    """
    out: list[float | None] = []
    for item in str(text).split(","):
        item = item.strip()
        if item.lower() == "none":
            out.append(None)
            continue
        try:
            value = float(item)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise InputError(
                f"--tradeoff-values {text!r}: {item!r} is not a positive number or 'none' "
                "(expected e.g. 0.5,1,1.5,2,none)"
            )
        out.append(value)
    return out


def sampling_tradeoff(
    sim: Any,
    reference: Any,
    knob: str | None = None,
    values: Sequence[float | None] | None = None,
    *,
    seed: int = 0,
    max_events: int | None = 10000,
    k: int = 5,
    weights: Any = None,
    device: str = "auto",
) -> SamplingTradeoff:
    """PRDC of a fast simulation's samples against a reference, for each value of a knob.

    Parameters
    ----------
    sim : FastSim
        A fitted fast simulation (torch or onnx backend), or any object with ``sample(
        conditions, seed, *, temperature=, truncation=)``, ``condition_names``,
        ``target_names`` and ``config.model.kind``.
    reference : mapping of str to array of shape (n,), Table or DataFrame
        The reference's matched pairs, one row per object: every condition and target of
        ``sim`` in physical units (what ``hepgen validate --config`` reads); other columns
        are ignored.  A :class:`~hepgen.validation.samples.Table` brings its weights.
    knob : {"truncation", "temperature"} or None
        What is swept (default: truncation for a GAN response, temperature for a flow or VAE).
    values : sequence of (float or None) or None
        Thresholds psi or temperatures T (> 0); ``None``: as trained.  Default: psi
        (0.5, 1, 1.5, 2, none) or T (0.6, 0.8, 1, 1.2) (:func:`default_tradeoff`).
    seed : int
        Seeds the split into halves, every draw of the model (the same seed for each value)
        and PRDC's unweighting.
    max_events : int or None
        Most rows per half (seeded subsample); ``None``: all.  The cost grows as its square:
        about 2 s per value for 10 000 rows on one CPU core.
    k : int
        Nearest-neighbour order of PRDC.
    weights : array of shape (n,) or None
        Per-row weights of the reference (a Table's own are used otherwise); the generated
        rows carry the weights of the rows whose conditions they were drawn at.  PRDC
        unweights both sides by accept-reject.
    device : str
        Where PRDC's distances are computed (``"auto"``, ``"cpu"``, ``"cuda"``).

    Returns
    -------
    SamplingTradeoff
        ``to_dict()`` is plain JSON.

    Raises
    ------
    InputError
        A bad knob or value, a reference without a condition or target of ``sim``, fewer
        than ``2 (k + 1)`` finite rows, or a model that produced no finite row.

    References
    ----------
    M. F. Naeem et al., "Reliable Fidelity and Diversity Metrics for Generative Models",
    ICML 2020, arXiv:2002.09797.
    A. Brock, J. Donahue, K. Simonyan, ICLR 2019, arXiv:1809.11096 (the truncation trick).

    Examples
    --------
    A toy model ``y = c + T * noise`` of a reference it describes exactly at ``T = 1``:

    >>> import types
    >>> import numpy as np
    >>> from hepgen.models.latent import LatentOptions, draw_latent_numpy
    >>> class Toy:
    ...     config = types.SimpleNamespace(model=types.SimpleNamespace(kind="flow"))
    ...     condition_names, target_names = ["c"], ["y"]
    ...     def sample(self, conditions, seed=None, *, temperature=None, truncation=None):
    ...         noise = LatentOptions.of(temperature, truncation)
    ...         z = draw_latent_numpy(np.random.default_rng(seed), (len(conditions["c"]),), noise)
    ...         return {"y": conditions["c"] + z}
    >>> rng = np.random.default_rng(1)
    >>> c = rng.normal(size=4000)
    >>> res = sampling_tradeoff(Toy(), {"c": c, "y": c + rng.normal(size=4000)},
    ...                         values=[0.3, 1.0])
    >>> res.recall[0] < res.recall[1] - 0.2, res.precision[0] > 0.9, res.as_trained
    (True, True, 1)
    """
    kind = str(sim.config.model.kind)
    knob, values = default_tradeoff(kind, knob, values)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise InputError(f"seed {seed!r}: expected an integer >= 0")
    seed = int(seed)
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise InputError(f"k {k!r}: expected an integer >= 1")
    k = int(k)
    if max_events is not None and (
        isinstance(max_events, bool)
        or not isinstance(max_events, int | np.integer)
        or max_events <= k
    ):
        raise InputError(f"max_events {max_events!r}: expected an integer > k={k} or None")
    conditions, targets = list(sim.condition_names), list(sim.target_names)
    names = conditions + targets
    ref, notes = _reference_rows(reference, names, weights)
    half_a, half_b = _halves(ref.n, k, max_events, np.random.default_rng(seed))
    w = None if ref.weights is None else ref.weights
    wa = None if w is None else w[half_a]
    wb = None if w is None else w[half_b]
    x_a, x_b = ref.values[half_a], ref.values[half_b]
    cond_b = {n: x_b[:, i] for i, n in enumerate(conditions)}
    rows: dict[str, list[float]] = {m: [] for m in _METRICS}
    base = prdc(x_a, x_b, wa, wb, k=k, max_events=None, seed=seed, device=device)
    if base.note:
        notes.append(f"baseline: {base.note}")
    for v in values:
        options = LatentOptions(**({knob: v} if v is not None else {}))
        drawn = _draw(sim, cond_b, seed, options)
        y = np.column_stack(
            [x_b[:, : len(conditions)]] + [np.asarray(drawn[t], dtype=np.float64) for t in targets]
        )
        finite = np.isfinite(y).all(axis=1)
        if not finite.any():
            raise InputError(f"{knob} {v}: the model produced no finite row")
        if not finite.all():
            notes.append(f"{knob} {v}: {int((~finite).sum())} generated rows non-finite, dropped")
        res = prdc(
            x_a,
            y[finite],
            wa,
            None if wb is None else wb[finite],
            k=k,
            max_events=None,
            seed=seed,
            device=device,
        )
        for m in _METRICS:
            rows[m].append(float(getattr(res, m)))
    trained = [i for i, v in enumerate(values) if _is_trained(knob, v)]
    return SamplingTradeoff(
        knob=knob,
        values=values,
        **rows,
        baseline={m: float(getattr(base, m)) for m in _METRICS},
        as_trained=trained[0] if trained else None,
        n_reference=base.n_reference,
        n_candidate=base.n_candidate,
        k=k,
        seed=seed,
        kind=kind,
        features=names,
        notes=notes,
    )


def _reference_rows(reference: Any, names: list[str], weights: Any) -> tuple[Table, list[str]]:
    """The reference's columns ``names`` (conditions, targets), rows with a non-finite value
    dropped; the notes say how many."""
    if isinstance(reference, Table):
        have = reference.names
    elif isinstance(reference, Mapping):
        have = [str(n) for n in reference]
    elif type(reference).__module__.startswith("pandas"):
        have = [str(n) for n in reference.columns]
    else:
        raise InputError(
            f"reference of type {type(reference).__name__}: expected a mapping of column "
            "name to array, a Table or a DataFrame"
        )
    missing = [n for n in names if n not in have]
    if missing:
        raise InputError(
            f"reference: no column(s) {missing} of the model's conditions and targets "
            f"(it has {list(have)})"
        )
    table = as_table(reference, feature_names=names, weights=weights, label="reference")
    notes: list[str] = []
    finite = np.isfinite(table.values).all(axis=1)
    if table.weights is not None:
        finite &= np.isfinite(table.weights)
    if not finite.all():
        notes.append(f"reference: {int((~finite).sum())} rows with a non-finite value dropped")
        table = table.select_rows(finite)
    return table, notes


def _halves(
    n: int, k: int, max_events: int | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of two disjoint random halves (A: the "real" side; B: the conditions of
    the generated side), at most ``max_events`` rows each."""
    if n < 2 * (k + 1):
        raise InputError(
            f"reference: {n} finite rows; the trade-off needs at least {2 * (k + 1)} "
            f"(two halves of more than k={k})"
        )
    order = rng.permutation(n)
    half = n // 2 if max_events is None else min(n // 2, int(max_events))
    return np.sort(order[:half]), np.sort(order[half : 2 * half])


def _draw(
    sim: Any, conditions: dict[str, np.ndarray], seed: int, options: LatentOptions
) -> Mapping[str, Any]:
    """``sim.sample`` with exactly ``options``: a model configured with a truncation
    (``model.sampling``) is sampled through a shallow copy set to no truncation when
    ``options`` has none (``truncation=None`` means "the configured one" to ``sample``)."""
    configured = getattr(sim, "sampling_", None)
    if options.truncation is None and getattr(configured, "truncation", None) is not None:
        sim = copy.copy(sim).set_sampling(temperature=options.temperature)
    return sim.sample(
        conditions, seed, temperature=options.temperature, truncation=options.truncation
    )
