"""Per-event likelihood p-values: how unlikely an event is under a model *at its conditions*.

The p-value of an event ``x`` at conditions ``c`` under a conditional density ``p(x | c)`` is
``P(log p(X | c) <= log p(x | c))`` for ``X`` drawn from the model at the same ``c``: the
probability that the model produces something at most as likely as ``x``.  Unlike the raw
score ``-log p(x | c)``, whose scale changes with ``c`` (a narrow density at one mass, a wide
one at another) and between models, the p-value means the same thing everywhere.

It is estimated from the model's own draws (the Monte-Carlo p-value): for each event, ``K``
draws at its conditions, their ``log p``, and ``p = (k + 1) / (K + 1)`` with ``k`` the number
of draws with ``log p <= log p(x | c)``.  The event and its ``K`` draws are ``K + 1``
exchangeable draws when the event comes from the model, so ``p`` is then uniform on
``{1/(K+1), ..., 1}`` (without ties) and ``P(p <= a) <= a`` for every ``a``: an exact,
conservative test at any ``K``, with resolution ``1 / (K + 1)``.  It costs ``K`` draws and
``K`` density evaluations per event, linear in ``K``: for the default density flow of the
dijet toy (4 autoregressive RQ-spline transforms, 4 features) at ``K = 1000``, about 6 to 8
minutes of one CPU thread per 1e4 events (sampling the autoregressive flow dominates).

References
----------
A. C. A. Hope, "A simplified Monte Carlo significance test procedure", J. R. Stat. Soc. B 30
(1968) 582 (the Monte-Carlo p-value ``(k + 1) / (K + 1)``).
B. V. North, D. Curtis, P. C. Sham, "A note on the calculation of empirical P values from
Monte Carlo procedures", Am. J. Hum. Genet. 71 (2002) 439.
B. Nachman, D. Shih, "Anomaly Detection with Density Estimation", arXiv:2001.04990 (ANODE).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hepgen.errors import InputError

__all__ = [
    "DEFAULT_SAMPLES",
    "PValues",
    "density_pvalues",
    "fastsim_pvalues",
    "likelihood_pvalues",
    "summarize_counts",
]

#: Default number of model draws per event ``K`` (resolution 1/1001).
DEFAULT_SAMPLES = 1000
#: Model draws per ``sample`` call when ``chunk`` is not given (bounds the memory).
_ROWS_PER_CALL = 100_000
#: Separates the p-values' seed stream from other uses of the same seed.
_SALT = 0x70_76_61_6C  # "pval"
#: The p-value cuts of :meth:`PValues.to_dict`'s ``fraction_below``.
_CUTS = (0.001, 0.01, 0.05)


@dataclass(frozen=True)
class PValues:
    """Per-event likelihood p-values and how they were estimated.

    Attributes
    ----------
    p : np.ndarray of shape (n,), float64
        ``(k + 1) / (K + 1)`` per event, in ``[1/(K+1), 1]``; NaN where the event's own
        ``log p`` is not finite.
    n_samples : int
        Model draws per event ``K``.
    seed : int
        The seed of the draws.
    chunk : int
        Events per ``sample`` call (the draws depend on ``seed`` and ``chunk``, not on ``n``).
    n_nan : int
        Events without a p-value (non-finite ``log p``).
    n_draws_nonfinite : int
        Model draws that were counted as least likely because they or their ``log p`` were
        not finite (outside the model's domain).

    Examples
    --------
    >>> pv = PValues(np.array([0.5, 1.0]), n_samples=1, seed=0, chunk=2)
    >>> pv.resolution
    0.5
    """

    p: np.ndarray
    n_samples: int
    seed: int
    chunk: int
    n_nan: int = 0
    n_draws_nonfinite: int = 0

    @property
    def resolution(self) -> float:
        """The smallest attainable p-value, ``1 / (K + 1)``."""
        return 1.0 / (self.n_samples + 1)

    def to_dict(self) -> dict[str, Any]:
        """A small JSON summary: ``n_events``, ``n_samples``, ``resolution``, ``seed``,
        ``chunk``, ``n_nan``, ``n_draws_nonfinite``, ``mean`` (of the finite p-values; 0.5
        for events from the model) and ``fraction_below`` (``{"0.05": ...}``: shares of the
        finite p-values at or below 0.001, 0.01, 0.05; at most the cut for events from the
        model)."""
        ok = self.p[np.isfinite(self.p)]
        below = {f"{a:g}": float(np.mean(ok <= a)) if ok.size else None for a in _CUTS}
        return {
            "n_events": int(self.p.size),
            "n_samples": int(self.n_samples),
            "resolution": self.resolution,
            "seed": int(self.seed),
            "chunk": int(self.chunk),
            "n_nan": int(self.n_nan),
            "n_draws_nonfinite": int(self.n_draws_nonfinite),
            "mean": float(ok.mean()) if ok.size else None,
            "fraction_below": below,
        }

    def counts(self) -> dict[str, int | float]:
        """Additive counts, to sum over chunks of events and pass to :func:`summarize_counts`:
        ``n`` (finite p-values), ``n_nan``, ``n_draws_nonfinite``, ``sum`` (of the finite
        p-values) and ``below_{cut}`` (how many at or below each cut 0.001, 0.01, 0.05)."""
        ok = self.p[np.isfinite(self.p)]
        return {
            "n": int(ok.size),
            "n_nan": int(self.n_nan),
            "n_draws_nonfinite": int(self.n_draws_nonfinite),
            "sum": float(ok.sum()),
            **{f"below_{a:g}": int(np.count_nonzero(ok <= a)) for a in _CUTS},
        }


def summarize_counts(counts: Mapping[str, Any]) -> dict[str, Any]:
    """The summary of summed :meth:`PValues.counts`: ``n_pvalues``, ``n_nan``,
    ``n_draws_nonfinite``, ``mean`` and ``fraction_below`` (``{"0.05": ...}``; ``None``
    without p-values).

    Examples
    --------
    >>> a = PValues(np.array([0.01, 0.5]), n_samples=99, seed=0, chunk=1).counts()
    >>> b = PValues(np.array([1.0, np.nan]), n_samples=99, seed=0, chunk=1, n_nan=1).counts()
    >>> total = {k: a[k] + b[k] for k in a}
    >>> s = summarize_counts(total)
    >>> s["n_pvalues"], s["n_nan"], round(s["mean"], 2), s["fraction_below"]["0.05"]
    (3, 1, 0.5, 0.3333333333333333)
    """
    n = int(counts.get("n", 0))
    return {
        "n_pvalues": n,
        "n_nan": int(counts.get("n_nan", 0)),
        "n_draws_nonfinite": int(counts.get("n_draws_nonfinite", 0)),
        "mean": float(counts.get("sum", 0.0)) / n if n else None,
        "fraction_below": {
            f"{a:g}": int(counts.get(f"below_{a:g}", 0)) / n if n else None for a in _CUTS
        },
    }


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _chunk_seed(seed: int, start: int) -> int:
    """The seed of the draws of the chunk of events that starts at row ``start``: a function
    of ``(seed, start)`` only, in ``[0, 2**63)``."""
    words = np.random.SeedSequence([int(seed), _SALT, int(start)]).generate_state(2)
    return int((int(words[0]) << 32 | int(words[1])) & (2**63 - 1))


def _finite_rows(columns: Mapping[str, np.ndarray], n: int) -> np.ndarray:
    """Rows whose numeric columns are all finite."""
    ok = np.ones(n, dtype=bool)
    for values in columns.values():
        values = np.asarray(values)
        if values.shape == (n,) and np.issubdtype(values.dtype, np.floating):
            ok &= np.isfinite(values)
    return ok


def likelihood_pvalues(
    log_prob: Callable[[dict[str, np.ndarray]], np.ndarray],
    sample: Callable[[dict[str, np.ndarray], int], dict[str, np.ndarray]],
    columns: Mapping[str, np.ndarray],
    condition_names: Sequence[str],
    n_samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    chunk: int | None = None,
    log_p: np.ndarray | None = None,
) -> PValues:
    """Monte-Carlo likelihood p-values ``P(log p(X | c) <= log p(x | c))``, one per event.

    For each event ``i``, ``K = n_samples`` draws ``X`` at its conditions ``c_i`` (its
    condition values repeated ``K`` times), their ``log p``, and
    ``p_i = (k_i + 1) / (K + 1)`` with ``k_i = #{draws with log p <= log p(x_i | c_i)}``.
    This is the exact Monte-Carlo p-value, the rank of the event among ``K + 1`` exchangeable
    draws: when ``x_i`` is itself drawn from the model, ``p_i`` is uniform on
    ``{1/(K+1), ..., 1}`` (without ties), so ``P(p_i <= a) <= a`` for any ``a`` and ``K``.
    The resolution is ``1 / (K + 1)``; small p-values mean unlikely under the model.

    Parameters
    ----------
    log_prob : callable
        ``log_prob(columns) -> log p`` of shape (m,) per row of a dict of columns of shape
        (m,) (features and conditions), in nats.
    sample : callable
        ``sample(conditions, seed) -> columns``: one draw of the features per row of a dict of
        condition columns of shape (m,); the returned dict holds the features (and may hold
        the conditions; those given are used).
    columns : mapping of str to array of shape (n,)
        The events: every column ``log_prob`` reads, in its units.
    condition_names : sequence of str
        The conditioning columns of ``columns`` (at least one).
    n_samples : int
        ``K`` (>= 1; 1000 gives a resolution of about 0.001).
    seed : int
        Seeds the draws: chunk ``j`` (events ``start = j * chunk ...``) uses the seed
        ``(seed, start)``, so the p-value of an event depends on ``seed``,
        ``chunk`` and its row, not on how many events follow.
    chunk : int or None
        Events per ``sample`` call (``chunk * K`` draws in memory at a time); ``None``:
        ``max(1, 100000 // K)``.
    log_p : array of shape (n,) or None
        The events' ``log p`` when already computed (else ``log_prob(columns)``).

    Returns
    -------
    PValues
        ``p`` of shape (n,): NaN for events whose ``log p`` is not finite (no draws are made
        for them).  Draws that are not finite, or whose ``log p`` is NaN or not finite, count
        as least likely (``log p = -inf``) and are counted in ``n_draws_nonfinite``.

    Raises
    ------
    InputError
        ``n_samples``, ``seed`` or ``chunk`` out of range, a missing condition column, columns
        of different lengths, a ``log_p`` or ``log_prob`` result of the wrong shape.

    References
    ----------
    A. C. A. Hope, J. R. Stat. Soc. B 30 (1968) 582; B. V. North, D. Curtis, P. C. Sham,
    Am. J. Hum. Genet. 71 (2002) 439.

    Examples
    --------
    A Gaussian whose width depends on the condition: events from the model get uniform
    p-values, events far out get small ones.

    >>> import numpy as np
    >>> def log_prob(cols):
    ...     s = cols["c"]
    ...     return -0.5 * (cols["x"] / s) ** 2 - np.log(s * np.sqrt(2 * np.pi))
    >>> def sample(conds, seed):
    ...     return {"x": np.random.default_rng(seed).normal(0.0, conds["c"])}
    >>> c = np.array([1.0, 10.0, 1.0])
    >>> pv = likelihood_pvalues(log_prob, sample, {"x": np.array([0.0, 0.0, 4.0]), "c": c},
    ...                         ["c"], n_samples=99, seed=1)
    >>> pv.p  # the peak at either width: 1; four sigma out: the smallest, 1/(K+1)
    array([1.  , 1.  , 0.01])
    >>> pv.resolution
    0.01
    """
    k = _check_int(n_samples, "n_samples", 1)
    seed = _check_int(seed, "seed", 0)
    if chunk is None:
        chunk = max(1, _ROWS_PER_CALL // k)
    chunk = _check_int(chunk, "chunk", 1)
    names = list(condition_names)
    if not names:
        raise InputError("likelihood_pvalues: at least one condition column is needed")
    missing = [c for c in names if c not in columns]
    if missing:
        raise InputError(
            f"likelihood_pvalues: condition column(s) {missing} missing from the events "
            f"(columns: {sorted(columns)})"
        )
    cols = {name: np.asarray(values) for name, values in columns.items()}
    n = len(cols[names[0]])
    bad = {name: cols[name].shape for name in names if cols[name].shape != (n,)}
    if bad:
        raise InputError(
            f"likelihood_pvalues: condition columns of shape {bad}, expected ({n},) each"
        )
    if log_p is None:
        log_p = log_prob(cols) if n else np.zeros(0)
    log_p = np.asarray(log_p, dtype=np.float64)
    if log_p.shape != (n,):
        raise InputError(f"likelihood_pvalues: log p of shape {log_p.shape}, expected ({n},)")
    p = np.full(n, np.nan)
    n_draws_bad = 0
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        rows = start + np.flatnonzero(np.isfinite(log_p[start:stop]))
        if not rows.size:
            continue
        conds = {name: np.repeat(cols[name][rows], k) for name in names}
        draws = {**sample(conds, _chunk_seed(seed, start)), **conds}
        m = rows.size * k
        ok = _finite_rows(draws, m)
        lp = np.full(m, -np.inf)
        if ok.any():
            part = draws if ok.all() else {key: v[ok] for key, v in draws.items()}
            lp[ok] = np.asarray(log_prob(part), dtype=np.float64)
        finite = np.isfinite(lp)
        n_draws_bad += m - int(np.count_nonzero(finite))
        lp[np.isnan(lp)] = -np.inf  # +inf stays: as likely as can be
        below = np.count_nonzero(lp.reshape(rows.size, k) <= log_p[rows, None], axis=1)
        p[rows] = (below + 1.0) / (k + 1.0)
    return PValues(
        p=p,
        n_samples=k,
        seed=seed,
        chunk=chunk,
        n_nan=int(np.count_nonzero(np.isnan(p))),
        n_draws_nonfinite=n_draws_bad,
    )


def density_pvalues(
    model: Any,
    columns: Mapping[str, np.ndarray],
    n_samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    *,
    chunk: int | None = None,
    log_p: np.ndarray | None = None,
    domain_counts: dict[str, int] | None = None,
) -> PValues:
    """:func:`likelihood_pvalues` of events under a fitted
    :class:`~hepgen.anomaly.density.DensityModel` ``p(features | conditions)``.

    Parameters
    ----------
    model : DensityModel
        Fitted; its :meth:`~hepgen.anomaly.density.DensityModel.sample` draws at the events'
        conditions, its :meth:`~hepgen.anomaly.density.DensityModel.log_prob` scores.
    columns : mapping of str to array of shape (n,)
        Every feature and condition of the model, physical units, finite.
    n_samples, seed, chunk, log_p
        As :func:`likelihood_pvalues` (``log_p``: the events' ``model.log_prob``).
    domain_counts : dict or None
        As :meth:`~hepgen.anomaly.density.DensityModel.log_prob`, for the events' conditions
        only (the draws share them, they are not counted again).

    Returns
    -------
    PValues
        ``p`` of shape (n,).

    Examples
    --------
    >>> import numpy as np
    >>> from hepgen.anomaly.density import DensityModel
    >>> rng = np.random.default_rng(0)
    >>> m = rng.uniform(0.0, 1.0, 2000)
    >>> data = {"m": m, "x": 2.0 * m + rng.normal(0.0, 0.5, 2000)}
    >>> model = DensityModel([{"name": "x"}], [{"name": "m"}],
    ...                      flow={"n_transforms": 1, "hidden_features": 8},
    ...                      training={"max_epochs": 1, "batch_size": 500}, device="cpu")
    >>> model = model.fit(data, quiet=True)
    >>> far = {"m": np.array([0.5]), "x": np.array([10.0])}
    >>> density_pvalues(model, far, n_samples=99, seed=0).p
    array([0.01])
    """
    if log_p is None:  # warns about conditions outside the fit range without domain_counts
        log_p = model.log_prob(columns, domain_counts=domain_counts)
    return likelihood_pvalues(
        lambda cols: model.log_prob(cols, domain_counts={}),
        lambda conds, s: model.sample(conds, seed=s, domain_counts={}),
        columns,
        model.condition_names,
        n_samples=n_samples,
        seed=seed,
        chunk=chunk,
        log_p=log_p,
    )


def fastsim_pvalues(
    sim: Any,
    conditions: Mapping[str, np.ndarray],
    targets: Mapping[str, np.ndarray],
    n_samples: int = DEFAULT_SAMPLES,
    seed: int = 0,
    log_p: np.ndarray | None = None,
    density: Callable[..., np.ndarray] | None = None,
    *,
    chunk: int | None = None,
) -> PValues:
    """:func:`likelihood_pvalues` of objects under a fast simulation's response
    ``p(reco | gen)``: draws at each object's gen conditions at temperature 1 and without
    truncation (the model's own density).

    Parameters
    ----------
    sim : FastSim
        Fitted, with a likelihood (a flow response) or ``density`` given.
    conditions, targets : mapping of str to array of shape (n,)
        The objects' gen conditions and reco targets (``sim.condition_names``,
        ``sim.target_names``), physical units, finite.
    n_samples, seed, chunk
        As :func:`likelihood_pvalues`.
    log_p : array of shape (n,) or None
        The objects' log density, when already computed (else ``density`` of them).
    density : callable or None
        ``density(targets, conditions, seed) -> log p`` (``seed``: of a bound's own draws);
        ``None``: :meth:`hepgen.fastsim.FastSim.log_prob`.

    Returns
    -------
    PValues
        ``p`` of shape (n,).

    Raises
    ------
    InputError
        The model draws with the truncation trick (``model.sampling``): its draws are not
        from its density.
    """
    truncation = sim.sampling_.truncation
    if truncation is not None:
        raise InputError(
            f"p-values: the fast simulation draws with the truncation trick (model.sampling "
            f"truncation {truncation}), not from its density; set it to null"
        )
    if density is None:

        def density(t: Mapping[str, np.ndarray], c: Mapping[str, np.ndarray], s: int) -> Any:
            return sim.log_prob(t, c)

    target_names, condition_names = list(sim.target_names), list(sim.condition_names)

    def log_prob(columns: dict[str, np.ndarray]) -> np.ndarray:
        t = {k: columns[k] for k in target_names}
        return density(t, {k: columns[k] for k in condition_names}, seed)

    def sample(conds: dict[str, np.ndarray], s: int) -> dict[str, np.ndarray]:
        return sim.sample(conds, seed=s, temperature=1.0)

    return likelihood_pvalues(
        log_prob,
        sample,
        {**conditions, **targets},
        condition_names,
        n_samples=n_samples,
        seed=seed,
        chunk=chunk,
        log_p=log_p,
    )
