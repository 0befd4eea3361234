"""``hepgen score``: per-event (or per-object) anomaly scores ``-log p`` written into ROOT files.

The score of a row is its negative log-likelihood under a trained flow, in nats, with the
density in the physical units of the modelled columns: ``-log p(x | m)`` per event for a
:class:`~hepgen.anomaly.density.DensityModel`, ``-log p(reco | gen)`` per matched reco object
(NaN for unmatched ones) or per object of a flat / objects layout for a flow
:class:`~hepgen.fastsim.FastSim`; a GAN has no likelihood
(:class:`~hepgen.models.base.NoLikelihoodError`).  :func:`score_file` reads the inputs in
chunks, keeps every input branch and writes the scores as ``float64`` branches, atomically.
With ``pvalue_samples=K`` it also writes each scored row's likelihood p-value
``P(log p(X | c) <= log p(x | c))`` from ``K`` model draws at the row's conditions
(:mod:`hepgen.anomaly.pvalues`) into ``{score branch}_pvalue``.  What each kind writes and the
rules for inputs are in ``docs/anomaly.md``, section "Per-event anomaly scores".

References
----------
B. Nachman, D. Shih, "Anomaly Detection with Density Estimation", arXiv:2001.04990.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np

from hepgen.anomaly.density import DensityModel, nonfinite_problems
from hepgen.anomaly.pvalues import density_pvalues, fastsim_pvalues, summarize_counts
from hepgen.devices import torch_threads
from hepgen.errors import InputError
from hepgen.fastsim import FastSim
from hepgen.io.collections import flatten_collection
from hepgen.io.matching import match_collections, matching_branches
from hepgen.io.reader import inspect_tree, resolve_files, tree_format
from hepgen.io.writer import check_format
from hepgen.modeldir import FASTSIM_KINDS, ModelHandle, load_model, model_hash
from hepgen.models.base import NoLikelihoodError
from hepgen.parallel import SEED_BLOCK, check_outputs, plan_partitions, produce

__all__ = ["BOUNDS", "DEFAULT_BRANCH", "MIN_PVALUE_SAMPLES", "load_scorer", "score_file"]

log = logging.getLogger(__name__)

#: Default name of the score branch.
DEFAULT_BRANCH = "anomaly_score"
#: Suffix of the p-value branch after the score branch's name.
PVALUE_SUFFIX = "_pvalue"
#: The fewest model draws per row for p-values: a resolution 1/(K+1) of 0.05 or finer.
MIN_PVALUE_SAMPLES = 19
_BRANCH_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def load_scorer(model: Any, device: str = "cpu") -> DensityModel | FastSim:
    """The model of a directory, by the ``kind`` of its ``hepgen-model.json``
    (:func:`hepgen.modeldir.load_model`).

    Parameters
    ----------
    model : DensityModel, FastSim or path
        A fitted model, returned as is, or a model directory.
    device : str
        Where the flow runs.

    Returns
    -------
    DensityModel or FastSim

    Raises
    ------
    InputError
        Not a model directory, or damaged (the file named).
    """
    if isinstance(model, (DensityModel, FastSim)):
        return model
    return load_model(model, device, accept=("density", *FASTSIM_KINDS), command="score")


#: The lower bounds ``hepgen score --bound`` takes for a VAE fast simulation.
BOUNDS = ("elbo", "iwae")


def _scorer(
    model: DensityModel | FastSim,
    model_dir: Any,
    branch: str,
    bound: str | None = None,
    iwae_samples: int | None = None,
    pvalue_samples: int | None = None,
) -> _Scorer:
    """The scorer of a model (``pvalue_samples``: also the p-values, from K draws per row).

    Raises
    ------
    NoLikelihoodError
        A fast simulation whose response has no likelihood (a GAN), or a VAE without an
        explicit ``bound``.
    InputError
        A ``bound`` for a model with an exact likelihood, or an unknown bound.
    """
    where = f"'{model_dir}'" if not isinstance(model_dir, DensityModel | FastSim) else "this model"
    if bound is not None and bound not in BOUNDS:
        raise InputError(f"--bound {bound!r}: expected one of {BOUNDS}")
    has_bound = isinstance(model, FastSim) and hasattr(model.response_, "log_prob_bound")
    if bound is not None and not has_bound:
        raise InputError(
            f"--bound {bound}: {where} has an exact likelihood (or none); a bound is for a "
            "VAE fast simulation"
        )
    if not isinstance(model, FastSim):
        return _DensityScorer(model, branch, pvalue_samples)
    kind = model.response_.kind
    if has_bound and bound is None:
        raise NoLikelihoodError(
            f"{where} is a fast simulation with a VAE response (model.kind: {kind}): it has a "
            "lower bound on log p, not log p, and the bound's gap differs between events and "
            "models, so its scores are no likelihood ratios; to score with the bound anyway "
            "say which: --bound iwae (tighter) or --bound elbo"
        )
    if not model.response_.has_likelihood and not has_bound:
        raise NoLikelihoodError(
            f"{where} is a fast simulation with a {kind.upper()} response (model.kind: {kind}), "
            "which has no tractable likelihood to score with; train it with model.kind: "
            "flow, or score with a density model"
        )
    if bound is None:
        density: Any = lambda targets, conds, seed: model.log_prob(targets, conds)  # noqa: E731
    else:

        def density(targets: Any, conds: Any, seed: int) -> np.ndarray:
            return model.log_prob_bound(targets, conds, method=bound, k=iwae_samples, seed=seed)

    if pvalue_samples is not None and model.sampling_.truncation is not None:
        raise InputError(
            f"--pvalue: {where} draws with the truncation trick (model.sampling truncation "
            f"{model.sampling_.truncation}), not from its density; p-values need the model's "
            "own draws: set model.sampling.truncation to null"
        )
    if model.layout == "collections":
        return _FastSimScorer(model, branch, density, pvalue_samples)
    return _RowScorer(model, branch, density, pvalue_samples)


def _check_branch_name(branch: str) -> None:
    if not isinstance(branch, str) or not _BRANCH_NAME.match(branch):
        raise InputError(
            f"score branch name {branch!r} is not valid: use letters, digits and "
            "underscores, not starting with a digit"
        )


def _check_finite(columns: dict[str, np.ndarray], where: str, what: str) -> None:
    bad = nonfinite_problems(columns, what)
    if bad:
        raise InputError(
            f"{where}: non-finite values in branches the model reads: "
            + "; ".join(bad)
            + "; fix or drop those events before scoring"
        )


def score_file(
    model_dir: Any,
    inputs: Any,
    output: str | os.PathLike,
    *,
    branch: str = DEFAULT_BRANCH,
    tree: str | None = None,
    step_size: int = 100_000,
    device: str = "cpu",
    quiet: bool = False,
    output_format: str | None = None,
    layout: str | None = None,
    workers: int | None = None,
    scheduler: Any = None,
    block: int = SEED_BLOCK,
    bound: str | None = None,
    iwae_samples: int | None = None,
    pvalue_samples: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Write ``output``: every event of ``inputs`` with its anomaly score (module docstring).

    Parameters
    ----------
    model_dir : path, DensityModel or FastSim
        A model directory (``kind: density``, or a flow fast simulation) or a fitted model.
    inputs : path, glob, ``@list.txt`` or sequence of them
        ROOT files holding the branches the model reads.
    output : path
        Output ROOT file (``layout="single"``, the default for a name ending in ``.root``)
        or folder (written atomically; must not be an input).
    branch : str
        Name of the score branch (density model), or its suffix after ``{reco}_`` (fast
        simulation).  Must not exist in the input.
    tree : str or None
        Tree name; default ``"Events"`` for a density model, ``data.tree`` of a fast simulation.
    step_size : int
        Events per partition (rounded up to a multiple of ``block``).
    device : str
        Where the flow runs.
    quiet : bool
        Silence the progress bar.
    output_format : {"ttree", "rntuple"} or None
        Format of the output tree; ``None`` writes the format of the first input file.
    layout, workers, scheduler, block
        As :func:`hepgen.generate.generate_file`: one output file, one per input file or
        one per partition; in-process, a local Dask cluster or a scheduler; the block that
        partitions are aligned to (the p-values' and a bound's draws are seeded per block).
    bound : {"iwae", "elbo"} or None
        For a VAE fast simulation only, which has no exact likelihood: score with this lower
        bound on log p (its negative).  Required for a VAE (refused otherwise), so that nobody
        takes a bound for a likelihood by accident.  The IWAE's samples are seeded per seed
        block, so the scores do not depend on the step size.
    iwae_samples : int or None
        Importance samples K of the IWAE bound (default: the model's ``iwae_samples``).
    pvalue_samples : int or None
        Also write the likelihood p-value of every scored row into ``{score branch}_pvalue``
        (float64; NaN where the score is NaN or not finite), estimated from this many model
        draws K (>= :data:`MIN_PVALUE_SAMPLES`) at the row's conditions
        (:func:`hepgen.anomaly.pvalues.likelihood_pvalues`): ``(k + 1) / (K + 1)``, uniform for
        rows drawn from the model, resolution ``1 / (K + 1)``.  Costs K draws and K density
        evaluations per row (about 6 to 8 minutes per 1e4 events at K = 1000 for the
        default density flow on one CPU thread).  ``None``: no p-values.  With ``bound`` the
        statistic is the bound (still a valid p-value of it).
    seed : int
        Seeds the p-values' draws and the IWAE bound's samples, per seed block (``block``):
        the output does not depend on ``step_size`` or the number of workers.

    Returns
    -------
    dict
        ``kind`` (``"density"`` or ``"fastsim"``), ``branch`` (the written branch),
        ``n_events``, ``n_rows`` (events, or reco objects), ``n_scored`` (rows with a score:
        every event, or the matched reco objects), ``n_unmatched`` (reco objects left NaN; 0
        for a density model), ``n_nonfinite`` (scored rows whose score is not finite),
        ``outside_domain`` (rows per condition outside the training range), ``seconds``,
        ``rows_per_second``, ``output``, ``manifest`` (also ``<folder>/manifest.json``);
        with p-values ``pvalue``: ``branch``, ``n_samples`` (K), ``resolution``
        (``1 / (K + 1)``), ``seed``, ``n_pvalues`` (rows with one), ``n_nan`` (scored rows
        without one: non-finite score), ``n_draws_nonfinite`` (draws counted as least likely),
        ``mean`` and ``fraction_below`` (``{"0.01": ..., "0.05": ...}``, of the rows with a
        p-value).

    Raises
    ------
    InputError
        Missing files, trees or branches (the file named), non-finite model inputs, an
        output that is an input, a score branch already in the input.
    NoLikelihoodError
        A GAN fast simulation, or a VAE one without ``bound``.
    """
    _check_branch_name(branch)
    if (
        isinstance(step_size, bool)
        or not isinstance(step_size, (int, np.integer))
        or (step_size < 1)
    ):
        raise InputError(f"step size must be a positive number of events, got {step_size!r}")
    if pvalue_samples is not None and (
        isinstance(pvalue_samples, bool)
        or not isinstance(pvalue_samples, (int, np.integer))
        or pvalue_samples < MIN_PVALUE_SAMPLES
    ):
        raise InputError(
            f"p-value samples {pvalue_samples!r}: expected an integer K >= "
            f"{MIN_PVALUE_SAMPLES} (resolution 1/(K+1) of 0.05 or finer)"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**63:
        raise InputError(f"seed must be an integer with 0 <= seed < 2**63, got {seed!r}")
    model = load_scorer(model_dir, device=device)
    scorer = _scorer(model, model_dir, branch, bound, iwae_samples, pvalue_samples)
    tree = tree or (model.config.data.tree if isinstance(model, FastSim) else "Events")
    fmt = check_format(output_format) if output_format is not None else None
    paths = resolve_files(inputs)
    for path in paths:
        scorer.check_file(path, tree)
    fmt = fmt or check_format(tree_format(paths[0], tree))  # the first input's by default
    layout = layout or ("single" if Path(output).suffix == ".root" else "per-file")
    plan = plan_partitions(paths, tree, step_size, block)
    check_outputs(plan, output, layout, paths)
    model_path = None if isinstance(model_dir, (DensityModel, FastSim)) else model_dir
    kinds = ("density", *FASTSIM_KINDS)
    handle = ModelHandle(model_path or model, device, accept=kinds, command="score")
    handle.model = model  # already loaded here
    job = _ScoreJob(handle, model_dir, branch, bound, iwae_samples, pvalue_samples)
    extra = {
        "command": "score",
        "model": os.fspath(Path(model_path).resolve()) if model_path is not None else None,
        "model_hash": model_hash(model_path) if model_path is not None else None,
        "branch": scorer.branch,
        "format": fmt,
        "score": "-log p" if bound is None else f"-{bound} bound on log p",
    }
    if bound == "iwae":
        extra["iwae_samples"] = iwae_samples
    if pvalue_samples is not None:
        extra["pvalue"] = {
            "branch": scorer.pvalue_branch,
            "definition": "P(log p(X | c) <= log p(x | c)), X drawn from the model at the "
            "row's conditions c: (k + 1) / (K + 1), k of K draws at most as likely",
            "n_samples": int(pvalue_samples),
            "resolution": 1.0 / (int(pvalue_samples) + 1),
            "seed": int(seed),
        }
    manifest = produce(
        job,
        plan,
        output,
        workers=workers,
        scheduler=scheduler,
        layout=layout,
        seed=int(seed),
        block=block,
        fmt=fmt,
        quiet=quiet,
        desc="score",
        manifest=extra,
    )
    counts = {k: manifest["counts"].get(k, 0) for k in _COUNTS}
    seconds = manifest["seconds"]
    bad = {k: v for k, v in manifest["counts"].get("outside", {}).items() if v}
    if bad:
        log.warning(
            "conditions outside the training range (rows per condition, whole input): "
            "%s; their scores are extrapolations",
            bad,
        )
    if counts["n_nonfinite"]:
        log.warning(
            "%d scores are not finite (density 0 or infinite at those rows)", counts["n_nonfinite"]
        )
    result: dict[str, Any] = {}
    if pvalue_samples is not None:
        summary = summarize_counts(manifest["counts"].get("pvalue", {}))
        result["pvalue"] = {
            **{k: v for k, v in extra["pvalue"].items() if k != "definition"},
            **summary,
        }
    return {
        "kind": scorer.kind,
        "branch": scorer.branch,
        "score": extra["score"],
        **counts,
        **result,
        "outside_domain": bad,
        "seconds": seconds,
        "rows_per_second": counts["n_rows"] / seconds if seconds > 0 else None,
        "output_format": fmt,
        "output": os.fspath(Path(output)),
        "output_layout": layout,
        "manifest": manifest,
    }


_COUNTS = ("n_events", "n_rows", "n_scored", "n_unmatched", "n_nonfinite")


class _ScoreJob:
    """Scores one seed block of events (picklable for Dask: a model read from a directory is
    reloaded on the worker, once per process)."""

    def __init__(
        self,
        model: ModelHandle,
        model_dir: Any,
        branch: str,
        bound: str | None = None,
        iwae_samples: int | None = None,
        pvalue_samples: int | None = None,
    ) -> None:
        self.model, self.model_dir, self.branch = model, model_dir, branch
        self.bound, self.iwae_samples = bound, iwae_samples
        self.pvalue_samples = pvalue_samples
        self.scorer: _Scorer | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "scorer": None}  # rebuilt from the model where it runs

    def process(self, events: ak.Array, where: str, seed: int) -> tuple[ak.Array, dict[str, Any]]:
        if self.scorer is None:
            self.scorer = _scorer(
                self.model.get(),
                self.model_dir,
                self.branch,
                self.bound,
                self.iwae_samples,
                self.pvalue_samples,
            )
        outside: dict[str, int] = {}
        with torch_threads():  # one thread count wherever it runs: the same bits
            out, counts = self.scorer.score(events, where, outside, seed)
        return out, {**counts, "n_events": len(events), "outside": outside}


class _Scorer:
    """Checks the inputs for one model and adds its score branch to chunks of events."""

    kind = ""
    branch = ""
    #: Model draws per row for p-values (None: no p-values), and their branch.
    pvalue_samples: int | None = None
    pvalue_branch = ""

    def check_file(self, path: Path, tree: str) -> None:
        raise NotImplementedError

    def score(
        self, events: ak.Array, where: str, outside: dict[str, int], seed: int = 0
    ) -> tuple[ak.Array, dict[str, int]]:
        """The chunk with its score branch, and its counts (``seed``: of a bound's draws)."""
        raise NotImplementedError

    @staticmethod
    def _check_branches(
        path: Path, tree: str, needed: list[str], what: str, branch: str, *more: str
    ) -> Any:
        info = inspect_tree(path, tree)
        missing = [b for b in needed if b not in info.branches]
        if missing:
            raise InputError(
                f"file '{path}', tree '{tree}': missing branch(es) {missing} that "
                f"the {what} reads (it needs {needed})"
            )
        for name in (branch, *(m for m in more if m)):
            if name in info.branches:
                raise InputError(
                    f"file '{path}', tree '{tree}' already has a branch '{name}'; "
                    "choose another score branch name (--branch)"
                )
        return info


class _DensityScorer(_Scorer):
    kind = "density"

    def __init__(self, model: DensityModel, branch: str, pvalue_samples: int | None = None) -> None:
        self.model = model
        self.branch = branch
        self.names = model.feature_names + model.condition_names
        self.pvalue_samples = pvalue_samples
        self.pvalue_branch = branch + PVALUE_SUFFIX if pvalue_samples is not None else ""

    def check_file(self, path: Path, tree: str) -> None:
        info = self._check_branches(
            path, tree, self.names, "density model", self.branch, self.pvalue_branch
        )
        jagged = [b for b in self.names if any(b in v for v in info.collections.values())]
        if jagged:
            raise InputError(
                f"file '{path}', tree '{tree}': branch(es) {jagged} hold a list per "
                "event; a density model scores flat per-event branches"
            )

    def score(
        self, events: ak.Array, where: str, outside: dict[str, int], seed: int = 0
    ) -> tuple[ak.Array, dict[str, int]]:
        cols = {k: ak.to_numpy(events[k]) for k in self.names}
        _check_finite(cols, where, "events")
        if len(events):
            score = -self.model.log_prob(cols, domain_counts=outside)
        else:
            score = np.zeros(0)
        out = ak.with_field(events, score.astype(np.float64), self.branch)
        n = len(events)
        counts: dict[str, Any] = {
            "n_rows": n,
            "n_scored": n,
            "n_nonfinite": n - int(np.count_nonzero(np.isfinite(score))),
        }
        if self.pvalue_samples is not None:
            pv = density_pvalues(self.model, cols, self.pvalue_samples, seed, log_p=-score)
            out = ak.with_field(out, pv.p, self.pvalue_branch)
            counts["pvalue"] = pv.counts()
        return out, counts


class _FastSimScorer(_Scorer):
    kind = "fastsim"

    def __init__(
        self, sim: FastSim, branch: str, density: Any, pvalue_samples: int | None = None
    ) -> None:
        data = sim.config.data
        self.sim, self.density = sim, density
        self.branch = f"{data.reco}_{branch}"
        self.pvalue_samples = pvalue_samples
        self.pvalue_branch = self.branch + PVALUE_SUFFIX if pvalue_samples is not None else ""
        self.conditions = sim.condition_names
        self.targets = sim.target_names
        # the branches of the matching, as hepgen.dataset reads them for training
        gen_match, reco_match = matching_branches(data)
        self.reco_fields = list(dict.fromkeys(self.targets + reco_match))
        self.needed = list(dict.fromkeys(self.conditions + gen_match + self.reco_fields))

    def check_file(self, path: Path, tree: str) -> None:
        self._check_branches(
            path, tree, self.needed, "fast simulation", self.branch, self.pvalue_branch
        )

    def score(
        self, events: ak.Array, where: str, outside: dict[str, int], seed: int = 0
    ) -> tuple[ak.Array, dict[str, int]]:
        sim = self.sim
        data = sim.config.data
        try:
            gen = flatten_collection(events, data.gen, self.conditions)
            reco = flatten_collection(events, data.reco, self.reco_fields)
        except InputError as err:
            raise InputError(f"{where}: {err}") from None
        matching = match_collections(data, events, gen, reco)
        reco_rows = np.flatnonzero(matching.reco_matched)
        gen_rows = matching.reco_to_gen[reco_rows]
        conds = {k: gen[k][gen_rows] for k in self.conditions}
        targets = {k: reco[k][reco_rows] for k in self.targets}
        _check_finite({**conds, **targets}, where, "matched objects")
        score = np.full(len(reco), np.nan)
        if reco_rows.size:
            bad = sim.preprocessor_.out_of_domain(conds)
            for k, v in bad.items():
                if v:
                    outside[k] = outside.get(k, 0) + v
            score[reco_rows] = -self.density(targets, conds, seed)
        out = ak.with_field(events, ak.unflatten(score, reco.counts), self.branch)
        scored = score[reco_rows]
        counts: dict[str, Any] = {
            "n_rows": len(reco),
            "n_scored": int(reco_rows.size),
            "n_unmatched": len(reco) - int(reco_rows.size),
            "n_nonfinite": int(reco_rows.size) - int(np.count_nonzero(np.isfinite(scored))),
        }
        if self.pvalue_samples is not None:
            p = np.full(len(reco), np.nan)
            pv = fastsim_pvalues(
                self.sim, conds, targets, self.pvalue_samples, seed, -scored, self.density
            )
            p[reco_rows], counts["pvalue"] = pv.p, pv.counts()
            out = ak.with_field(out, ak.unflatten(p, reco.counts), self.pvalue_branch)
        return out, counts


class _RowScorer(_Scorer):
    """Per-object scores of a fast simulation of the flat/objects layouts."""

    kind = "fastsim"

    def __init__(
        self, sim: FastSim, branch: str, density: Any, pvalue_samples: int | None = None
    ) -> None:
        self.sim, self.density = sim, density
        self.layout = sim.row_layout
        self.suffix = branch
        self.branches = list(self.layout.per_object(branch))
        self.branch = ", ".join(self.branches)
        self.pvalue_samples = pvalue_samples
        self.pvalue_branches: list[str] = []
        if pvalue_samples is not None:
            self.pvalue_branches = list(self.layout.per_object(branch + PVALUE_SUFFIX))
            self.pvalue_branch = ", ".join(self.pvalue_branches)

    def check_file(self, path: Path, tree: str) -> None:
        where = f"file '{path}', tree '{tree}'"
        info = inspect_tree(path, tree)
        self.layout.resolve(info.branches, where)
        clash = [b for b in self.branches + self.pvalue_branches if b in info.branches]
        if clash:
            raise InputError(
                f"{where} already has the branch(es) {clash}; choose another score branch "
                "name (--branch)"
            )

    def score(
        self, events: ak.Array, where: str, outside: dict[str, int], seed: int = 0
    ) -> tuple[ak.Array, dict[str, int]]:
        sim = self.sim
        resolved = self.layout.resolve(events.fields, where)
        n_rows = len(events)
        names = sim.condition_names + sim.target_names
        columns = resolved.stack(events, names, where)
        flags = resolved.stack_flags(events, where)
        n = n_rows * self.layout.n_objects
        rows = np.arange(n) if flags is None else np.flatnonzero(flags)
        conds = {k: columns[k][rows] for k in sim.condition_names}
        targets = {k: columns[k][rows] for k in sim.target_names}
        _check_finite({**conds, **targets}, where, "reconstructed objects")
        score = np.full(n, np.nan)
        if rows.size:
            for k, v in sim.preprocessor_.out_of_domain(conds).items():
                if v:
                    outside[k] = outside.get(k, 0) + v
            score[rows] = -self.density(targets, conds, seed)
        scored = score[rows]
        counts: dict[str, Any] = {
            "n_rows": n,
            "n_scored": int(rows.size),
            "n_unmatched": n - int(rows.size),
            "n_nonfinite": int(rows.size) - int(np.count_nonzero(np.isfinite(scored))),
        }
        new = {self.suffix: score}
        if self.pvalue_samples is not None:
            p = np.full(n, np.nan)
            pv = fastsim_pvalues(
                self.sim, conds, targets, self.pvalue_samples, seed, -scored, self.density
            )
            p[rows], counts["pvalue"] = pv.p, pv.counts()
            new[self.suffix + PVALUE_SUFFIX] = p
        out = events
        for name, values in resolved.unstack(new, n_rows).items():
            out = ak.with_field(out, values, name)
        return out, counts
