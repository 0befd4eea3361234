"""The held-out log-likelihood of a fast simulation, in physical units.

Two flows (or a flow and a VAE) trained on the same data can be compared on the data itself:
the mean of log p(reco | gen) over held-out reference pairs, the higher the better, in nats per
object with the density taken in the targets' physical units (a density per GeV for a
transverse momentum), so that it does not depend on the model's preprocessing.  This is the
test-set negative log-likelihood of the density-estimation literature (e.g. Papamakarios et
al.), for the conditional response.

:func:`heldout_likelihood` reports

* **total**: the mean of ``FastSim.log_prob`` (a flow: exact) or of ``FastSim.log_prob_bound``
  (a VAE: the IWAE or ELBO lower bound, labelled as a bound) over the held-out rows, with its
  standard error; ``None`` for a GAN, which has no likelihood;
* **per target**: which target loses the likelihood?  The joint log p does not split by target
  (a coupling flow has no per-target factor), so each target's *marginal* held-out
  log-likelihood is estimated the same way for the model and for the data: a histogram of the
  model's samples drawn at the conditions of one half of the reference (``model``) and a
  histogram of that half's real values (``reference``, the baseline: a perfect model), both
  evaluated at the values of the other half.  Their difference estimates ``-KL(p_ref || p_model)``
  of that marginal (nats per object; 0 for a perfect model, within its standard error).  This
  part needs no likelihood, so it is given for every kind, GANs included.

The matched pairs only: the efficiency and fake models are not part of this likelihood.

References
----------
G. Papamakarios, T. Pavlakou, I. Murray, "Masked Autoregressive Flow for Density Estimation",
NeurIPS 2017, arXiv:1705.07057 (held-out log-likelihood as the yardstick of density models).
Y. Burda, R. Grosse, R. Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016,
arXiv:1509.00519 (the IWAE bound).
L. Theis, A. van den Oord, M. Bethge, "A note on the evaluation of generative models",
ICLR 2016, arXiv:1511.01844 (what likelihoods do and do not say about samples).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from hepgen.errors import InputError
from hepgen.stats import effective_sample_size
from hepgen.validation._checks import MetricResult, rng_from
from hepgen.validation.samples import Table

__all__ = ["HeldOutLikelihood", "heldout_likelihood"]

#: The bounds a VAE's likelihood can be read from.
BOUNDS = ("iwae", "elbo")


@dataclasses.dataclass(frozen=True)
class HeldOutLikelihood(MetricResult):
    """Result of :func:`heldout_likelihood` (nats per object, densities in physical units).

    Attributes
    ----------
    model : str
        Where the model came from (its directory), or its kind.
    kind : str
        The response's kind (``flow``, ``vae``, ``gan``).
    method : str
        ``"exact"``, ``"iwae bound, k=K"``, ``"elbo bound"`` or ``"none"`` (a GAN).
    exact : bool
        Whether ``total`` is the exact log-likelihood (a bound is a lower bound).
    total : dict or None
        ``{"mean", "stderr", "n", "unit"}`` of log p(reco | gen) over the held-out rows;
        None without a likelihood.
    per_target : dict
        ``{target: {"model": {"mean", "stderr"}, "reference": {"mean", "stderr"},
        "difference": {"mean", "stderr"}, "unit", "bins"}}``: the marginal held-out
        log-likelihood of each target from histograms (see the module docstring).
    n_evaluated, n_conditions : int
        Held-out rows evaluated; rows whose conditions the model was sampled at.
    note : str
        How the numbers were made (subsampling, weights).
    """

    model: str
    kind: str
    method: str
    exact: bool
    total: dict[str, Any] | None
    per_target: dict[str, dict[str, Any]]
    n_evaluated: int
    n_conditions: int
    note: str = ""


def _mean_se(values: np.ndarray, weights: np.ndarray | None) -> dict[str, float]:
    """Weighted mean and its standard error (effective sample size)."""
    if weights is None:
        n = values.size
        se = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
        return {"mean": float(values.mean()), "stderr": se}
    mean = float(np.average(values, weights=weights))
    n_eff = effective_sample_size(weights, values.size)
    var = float(np.average((values - mean) ** 2, weights=weights))
    return {"mean": mean, "stderr": math.sqrt(var / n_eff) if n_eff > 1 else float("nan")}


def _edges(values: np.ndarray, integer: bool, n_bins: int) -> np.ndarray:
    """Histogram edges: one bin per integer for integer targets with few values, else
    ``n_bins`` quantile bins of ``values`` (equal populations: a fair density estimate in
    the core and in the tails)."""
    lo, hi = float(values.min()), float(values.max())
    if integer and hi - lo <= 4 * n_bins:
        return np.arange(math.floor(lo) - 0.5, math.ceil(hi) + 1.0)
    edges = np.unique(np.quantile(values, np.linspace(0.0, 1.0, n_bins + 1)))
    if edges.size < 2:
        return np.array([lo - 0.5, hi + 0.5])
    return edges


def _log_density(
    sample: np.ndarray, weights: np.ndarray | None, edges: np.ndarray, at: np.ndarray
) -> np.ndarray:
    """log of the histogram density of ``sample`` at ``at`` (per unit of the feature).

    Half a count is added to every bin (and the totals accordingly), so an empty bin gives a
    finite, strongly negative density; values outside the edges are scored in the outer bins.
    """
    counts, _ = np.histogram(sample, bins=edges, weights=weights)
    counts = np.maximum(counts, 0.0) + 0.5
    density = counts / (counts.sum() * np.diff(edges))
    idx = np.clip(np.searchsorted(edges, at, side="right") - 1, 0, edges.size - 2)
    return np.log(density[idx])


def heldout_likelihood(
    sim: Any,
    reference: Table,
    *,
    bound: str = "iwae",
    k: int | None = None,
    n_bins: int = 50,
    max_events: int = 100_000,
    seed: int = 0,
    model: str | None = None,
) -> HeldOutLikelihood:
    """The mean held-out log-likelihood of ``sim``'s response, total and per target.

    Parameters
    ----------
    sim : FastSim
        A fitted fast simulation (``condition_names``, ``target_names``, ``sample``, and
        ``log_prob`` or ``log_prob_bound`` for the total).
    reference : Table
        Held-out matched pairs with every condition and target of ``sim`` in physical units
        (what ``hepgen validate --config`` reads); rows with a non-finite value are left
        out.  Its weights weight the means.
    bound : {"iwae", "elbo"}
        The bound used for a VAE response.
    k : int or None
        Importance samples of the IWAE bound (default: the model's).
    n_bins : int
        Quantile bins of the per-target histograms (integer targets: one bin per value).
    max_events : int
        At most this many rows per half (seeded subsample): the total is evaluated on one
        half, the per-target histograms built from the other.
    seed : int
        Seeds the split, the model's draws and the bound's noise.
    model : str or None
        How the result names the model (e.g. its directory).

    Returns
    -------
    HeldOutLikelihood

    Raises
    ------
    InputError
        A reference without the model's conditions or targets, fewer than 20 finite rows,
        an unknown ``bound``.

    References
    ----------
    G. Papamakarios et al., NeurIPS 2017, arXiv:1705.07057; Y. Burda et al., ICLR 2016,
    arXiv:1509.00519.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import stats
    >>> from hepgen.validation.samples import as_table
    >>> class Gauss:  # y | c ~ N(c, 1): a perfect model of the data below
    ...     condition_names, target_names = ["c"], ["y"]
    ...     config = None
    ...     def sample(self, conditions, seed=None):
    ...         rng = np.random.default_rng(seed)
    ...         return {"y": conditions["c"] + rng.normal(size=len(conditions["c"]))}
    ...     def log_prob(self, targets, conditions):
    ...         return stats.norm.logpdf(targets["y"] - conditions["c"])
    >>> rng = np.random.default_rng(0)
    >>> c = rng.normal(size=20000)
    >>> ref = as_table({"c": c, "y": c + rng.normal(size=c.size)})
    >>> res = heldout_likelihood(Gauss(), ref)
    >>> bool(abs(res.total["mean"] + 0.5 * np.log(2 * np.pi * np.e)) < 0.03)  # -1.419 nats
    True
    >>> bool(abs(res.per_target["y"]["difference"]["mean"]) < 0.02)
    True
    """
    if bound not in BOUNDS:
        raise InputError(f"bound '{bound}': expected one of {list(BOUNDS)}")
    if isinstance(max_events, bool) or int(max_events) != max_events or max_events < 10:
        raise InputError(f"max_events {max_events!r}: expected an integer >= 10")
    conditions, targets = list(sim.condition_names), list(sim.target_names)
    missing = [n for n in conditions + targets if n not in reference.names]
    if missing:
        raise InputError(
            f"reference: no column(s) {missing} of the model's conditions and targets "
            f"(it has {reference.names})"
        )
    table = reference.select_columns(conditions + targets)
    finite = np.isfinite(table.values).all(axis=1)
    notes = []
    if not finite.all():
        notes.append(f"{int((~finite).sum())} rows with a non-finite value left out")
        table = table.select_rows(finite)
    if table.n < 20:
        raise InputError(f"reference: {table.n} finite rows; the likelihood needs at least 20")
    rng = rng_from(seed)
    order = rng.permutation(table.n)
    half = min(table.n // 2, int(max_events))
    a, b = table.select_rows(np.sort(order[:half])), table.select_rows(np.sort(order[half:][:half]))
    if half < table.n // 2:
        notes.append(f"subsample: {half} rows per half of {table.n} (seed {seed})")
    kind = str(getattr(getattr(getattr(sim, "config", None), "model", None), "kind", "flow"))

    def columns(t: Table, names: list[str]) -> dict[str, np.ndarray]:
        return {n: t.column(n) for n in names}

    total, method, exact = _total(sim, a, conditions, targets, bound, k, seed, columns)
    drawn = sim.sample(columns(b, conditions), seed)
    per_target: dict[str, dict[str, Any]] = {}
    for j, name in enumerate(targets):
        at = a.column(name)
        real = b.column(name)
        fake = np.asarray(drawn[name], dtype=np.float64)
        ok = np.isfinite(fake)
        integer = bool(table.integer[len(conditions) + j])
        edges = _edges(real, integer, n_bins)
        ref_ll = _log_density(real, b.weights, edges, at)
        wf = None if b.weights is None else b.weights[ok]
        model_ll = _log_density(fake[ok], wf, edges, at)
        per_target[name] = {
            "model": _mean_se(model_ll, a.weights),
            "reference": _mean_se(ref_ll, a.weights),
            "difference": _mean_se(model_ll - ref_ll, a.weights),
            "bins": int(edges.size - 1),
        }
        if not ok.all():
            notes.append(f"{name}: {int((~ok).sum())} non-finite generated values left out")
    if a.weights is not None:
        notes.append("means weighted by the reference's weights (errors from n_eff)")
    return HeldOutLikelihood(
        model=model or kind,
        kind=kind,
        method=method,
        exact=exact,
        total=total,
        per_target=per_target,
        n_evaluated=a.n,
        n_conditions=b.n,
        note="; ".join(notes),
    )


def _total(
    sim: Any,
    rows: Table,
    conditions: list[str],
    targets: list[str],
    bound: str,
    k: int | None,
    seed: int,
    columns: Any,
) -> tuple[dict[str, Any] | None, str, bool]:
    """The mean log p (or its bound) of ``rows``: ``(total, method, exact)``."""
    from hepgen.models.base import NoLikelihoodError

    cond, targ = columns(rows, conditions), columns(rows, targets)
    response = getattr(sim, "response_", None)
    has_likelihood = getattr(response, "has_likelihood", True)
    try:
        if has_likelihood:
            values, method, exact = sim.log_prob(targ, cond), "exact", True
        elif hasattr(sim, "log_prob_bound") and hasattr(response, "log_prob_bound"):
            values = sim.log_prob_bound(targ, cond, method=bound, k=k, seed=seed)
            settings = getattr(getattr(response, "module_", None), "settings", None)
            shown = k if k is not None else getattr(settings, "iwae_samples", "default")
            method = f"iwae bound, k={shown}" if bound == "iwae" else "elbo bound"
            exact = False
        else:
            return None, "none", False
    except NoLikelihoodError:
        return None, "none", False
    values = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(values)
    w = rows.weights if rows.weights is None or ok.all() else rows.weights[ok]
    out: dict[str, Any] = {**_mean_se(values[ok], w), "n": int(ok.sum())}
    out["unit"] = "nats per object (density in the targets' physical units)"
    if not ok.all():
        out["n_nonfinite"] = int((~ok).sum())
    return out, method, exact
