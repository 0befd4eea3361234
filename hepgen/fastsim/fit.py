"""The steps of :meth:`hepgen.FastSim.fit`: split, weights, efficiency, response, fakes.

Training uses a split by **event** (never objects of one event on both sides).  Each model is
one stage of :func:`hepgen.models.stages.run_stage`, so that ``fit(resume=True)`` goes on from
wherever a crash stopped it: a finished stage is loaded from ``checkpoints/finished``, an
interrupted one continues from its training loop's last epoch (``checkpoints/`` for the
response, ``checkpoints/fakes/`` for the fakes).  Negative event weights (sWeights) can be
replaced by their regression on the features (``data.negative_weights: regress``,
:mod:`hepgen.sweights`), per split.
Under torchrun (:mod:`hepgen.training.distributed`) every rank runs every stage except the
efficiency classifier, which rank 0 trains while the others wait and then load its files;
rank 0 alone writes.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hepgen.errors import InputError
from hepgen.fastsim.columns import take_rows
from hepgen.fastsim.fakes import MIN_FAKES, Fakes, fake_schema, multiplicity_table
from hepgen.models.base import GenerativeModel
from hepgen.models.efficiency import EfficiencyModel
from hepgen.models.registry import model_class
from hepgen.models.stages import run_stage
from hepgen.preprocessing import Preprocessor

if TYPE_CHECKING:
    from hepgen.dataset import PairedObjects
    from hepgen.fastsim.simulator import FastSim

__all__ = [
    "RESPONSE_SHARE",
    "PairSplit",
    "check_distributed",
    "check_seed",
    "fit_efficiency",
    "fit_fakes",
    "fit_response",
    "split_pairs",
    "time_shares",
    "training_notes",
]

#: Share of ``training.time_limit`` given to the response model when fakes are modelled.
RESPONSE_SHARE = 0.75


def check_seed(seed: Any) -> None:
    """The config's seed must be an integer in [0, 2**63) (InputError otherwise)."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**63:
        raise InputError(f"seed={seed!r}: expected an integer with 0 <= seed < 2**63")


def check_distributed(sim: FastSim, dist: Any) -> None:
    """Under torchrun (``dist``: :class:`hepgen.training.distributed.DistributedContext`),
    refuse a generator whose class does not train distributed
    (:attr:`~hepgen.models.base.GenerativeModel.distributed_training`; InputError, before
    any data is read): DistributedDataParallel runs one loss and one optimizer (adversarial
    training has two optimizers and a double backward)."""
    kind = sim.config.model.kind
    if not model_class(kind).distributed_training:
        raise InputError(
            f"model.kind '{kind}': training on {dist.world_size} processes "
            "(DistributedDataParallel) is for the flows; a "
            f"{kind} trains in one process: use --devices 1 or leave out torchrun"
        )


def _regressed(
    columns: Mapping[str, np.ndarray], names: Sequence[str], weights: np.ndarray, seed: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """:func:`hepgen.sweights.regress_weights` of ``weights`` on the columns ``names``."""
    from hepgen.sweights import regress_weights

    x = np.column_stack([np.asarray(columns[k], dtype=np.float64) for k in names])
    return regress_weights(x, weights, seed=seed)


@dataclasses.dataclass
class PairSplit:
    """The training and validation rows of the response and of the efficiency.

    Attributes
    ----------
    train, validation : dict of str to np.ndarray
        Conditions and targets of the matched pairs, shape (n_train,) / (n_val,) each.
    w_train, w_val : np.ndarray or None
        Their weights (None without ``data.weights``).
    gen_train : np.ndarray
        Indices of the gen objects of the training events (the efficiency's rows).
    w_gen : np.ndarray or None
        Their weights.
    weight_notes : dict
        What the weight regression did, per use (empty without it).
    """

    train: dict[str, np.ndarray]
    validation: dict[str, np.ndarray]
    w_train: np.ndarray | None
    w_val: np.ndarray | None
    gen_train: np.ndarray
    w_gen: np.ndarray | None
    weight_notes: dict[str, Any]

    @property
    def n_train(self) -> int:
        """Training pairs."""
        return len(next(iter(self.train.values())))

    @property
    def n_validation(self) -> int:
        """Validation pairs."""
        return len(next(iter(self.validation.values())))


def split_pairs(sim: FastSim, pairs: PairedObjects, is_val: np.ndarray) -> PairSplit:
    """Split the pairs by event (``is_val`` per event), cap the training pairs at
    ``training.max_objects`` (seeded) and, with ``data.negative_weights: regress`` and
    negative weights, replace the weights by their regression on the features.

    Raises
    ------
    InputError
        No matched pair in the validation split.
    """
    cfg = sim.config
    seed = cfg.seed
    weighted = cfg.data.weights is not None
    gen_val = is_val[pairs.gen_event]
    matched = pairs.matched
    pair_cols = pairs.pairs()
    pair_val = gen_val[matched]
    pair_w = pairs.gen_weights[matched]
    train_rows = np.flatnonzero(~pair_val)
    if cfg.training.max_objects is not None and train_rows.size > cfg.training.max_objects:
        rng = np.random.default_rng([seed, 2])
        train_rows = np.sort(rng.choice(train_rows, cfg.training.max_objects, replace=False))
    val_rows = np.flatnonzero(pair_val)
    if val_rows.size == 0:
        raise InputError(
            "the validation split holds no matched pair; use more events or a "
            "larger training.validation_fraction"
        )
    gen_train = np.flatnonzero(~gen_val)
    split = PairSplit(
        train=take_rows(pair_cols, train_rows),
        validation=take_rows(pair_cols, val_rows),
        w_train=pair_w[train_rows] if weighted else None,
        w_val=pair_w[val_rows] if weighted else None,
        gen_train=gen_train,
        w_gen=pairs.gen_weights[gen_train] if weighted else None,
        weight_notes={},
    )
    if weighted and cfg.data.negative_weights == "regress" and (pairs.gen_weights < 0).any():
        _regress_weights(sim, pairs, split)
    return split


def _regress_weights(sim: FastSim, pairs: PairedObjects, split: PairSplit) -> None:
    """sWeights: a weighted likelihood with negative weights is unbounded below; train on
    E[w | features] instead (:mod:`hepgen.sweights`), per split, cross-fitted."""
    seed = sim.config.seed
    names = sim.condition_names + sim.target_names
    notes = split.weight_notes
    split.w_train, notes["response_training"] = _regressed(split.train, names, split.w_train, seed)
    split.w_val, notes["response_validation"] = _regressed(
        split.validation, names, split.w_val, seed + 1
    )
    if sim.has_efficiency_model:
        gen_cols = {
            **take_rows(pairs.gen, split.gen_train),
            "reconstructed": pairs.matched[split.gen_train],
        }
        split.w_gen, notes["efficiency"] = _regressed(
            gen_cols, [*sim.condition_names, "reconstructed"], split.w_gen, seed + 2
        )


def fingerprint(sim: FastSim, settings: Any, n: int) -> dict[str, Any]:
    """What shapes a training stage; a resumed stage must have the same
    (:mod:`hepgen.models.stages`)."""
    from hepgen.training import RESUME_FIXED_SETTINGS

    cfg = sim.config
    return {
        "n": int(n),
        "seed": cfg.seed,
        "features": [f.model_dump(mode="json", exclude_none=True) for f in cfg.features],
        "model": cfg.model.model_dump(mode="json"),
        "training": {k: getattr(settings, k) for k in RESUME_FIXED_SETTINGS},
        "selection": cfg.training.selection,
        "validation_fraction": cfg.training.validation_fraction,
        "max_objects": cfg.training.max_objects,
    }


def fit_efficiency(
    sim: FastSim,
    pairs: PairedObjects,
    split: PairSplit,
    settings: Any,
    checkpoints: Path | None,
    resume: bool,
) -> EfficiencyModel | None:
    """The efficiency classifier on every gen object of the training events (None when the
    layout has no efficiency model)."""
    from hepgen.training.distributed import barrier, current, is_main_process

    if not sim.has_efficiency_model:
        return None
    pre = sim.preprocessor_
    eff_c = pre.transform_conditions(take_rows(pairs.gen, split.gen_train))
    efficiency = sim.config.model.efficiency
    params = efficiency.to_dict()
    if "seed" not in efficiency.model_fields_set:
        params["seed"] = sim.config.seed
    reconstructed = pairs.matched[split.gen_train]
    shared = checkpoints is not None and not is_main_process()
    if shared:  # under torchrun rank 0 trains it alone; the others load its files
        barrier()
    model, _ = run_stage(
        "efficiency",
        checkpoints,
        resume or shared,
        fingerprint(sim, settings, split.gen_train.size),
        fit=lambda _: (
            EfficiencyModel(**params).fit(
                eff_c, reconstructed, split.w_gen, feature_names=pre.condition_columns
            ),
            None,
        ),
        save=lambda model, folder, stem: model.save(folder, name=stem),
        load=lambda folder, stem: EfficiencyModel.load(folder, name=stem),
    )
    if checkpoints is not None and current() is not None and is_main_process():
        barrier()
    return model


def _generator_stage(
    sim: FastSim,
    stage: str,
    fit: Any,
    checkpoints: Path | None,
    resume: bool,
    settings: Any,
    n: int,
    loop_dir: Path | None,
) -> tuple[Any, Any]:
    """A generator stage (response or fakes) through :func:`hepgen.models.stages.run_stage`."""
    kind = sim.config.model.kind
    return run_stage(
        stage,
        checkpoints,
        resume,
        fingerprint(sim, settings, n),
        fit=fit,
        save=lambda model, folder, stem: model.save(folder, name=stem),
        load=lambda folder, stem: model_class(kind).load(folder, device=sim.device, name=stem),
        loop_checkpoint=None if loop_dir is None else loop_dir / "last.safetensors",
        max_epochs=settings.max_epochs,
    )


def _new_generator(sim: FastSim, seed: int) -> GenerativeModel:
    cfg = sim.config
    return model_class(cfg.model.kind)(cfg.model.generator_settings(), seed=seed, device=sim.device)


def fit_response(
    sim: FastSim,
    split: PairSplit,
    settings: Any,
    stage_settings: Any,
    checkpoints: Path | None,
    resume: bool,
    quiet: bool,
) -> tuple[GenerativeModel, Any]:
    """The response generator p(reco | gen) on the training pairs, selected on the
    validation pairs; ``stage_settings`` are ``settings`` with the response's share of the
    time limit.  Returns the model and its training result."""
    cfg = sim.config
    seed = cfg.seed
    pre = sim.preprocessor_
    x = pre.transform_targets(split.train, rng=np.random.default_rng([seed, 3]))
    c = pre.transform_conditions(split.train)
    validation = {
        "x": pre.transform_targets(split.validation, rng=np.random.default_rng([seed, 4])),
        "c": pre.transform_conditions(split.validation),
        **({"w": split.w_val} if split.w_val is not None else {}),
    }

    def fit(resume_loop: bool) -> tuple[GenerativeModel, Any]:
        model = _new_generator(sim, seed)
        return model, model.fit(
            x,
            c,
            split.w_train,
            validation,
            training=stage_settings,
            selection=cfg.training.selection,
            checkpoint_dir=checkpoints,
            resume=resume_loop,
            quiet=quiet,
        )

    return _generator_stage(
        sim, "response", fit, checkpoints, resume, settings, x.shape[0], checkpoints
    )


def fit_fakes(
    sim: FastSim,
    pairs: PairedObjects,
    is_val: np.ndarray,
    settings: Any,
    checkpoints: Path | None,
    resume: bool,
    quiet: bool,
) -> Fakes | None:
    """The multiplicity table and the generator of the fakes of the training events (None
    with ``model.fakes: false`` or fewer than :data:`MIN_FAKES` training fakes)."""
    cfg = sim.config
    if not cfg.fakes:
        return None
    fake_train = ~is_val[pairs.fake_event]
    if int(fake_train.sum()) < MIN_FAKES:
        return None
    n_gen = np.bincount(pairs.gen_event, minlength=pairs.n_events)
    n_fake = np.bincount(pairs.fake_event, minlength=pairs.n_events)
    train_events = np.flatnonzero(~is_val)
    table = multiplicity_table(n_gen[train_events], n_fake[train_events])
    multiplicity = f"n{sim.gen}"

    def columns(rows: np.ndarray) -> dict[str, np.ndarray]:
        cols = take_rows(pairs.fakes, rows)
        cols[multiplicity] = n_gen[pairs.fake_event[rows]].astype(np.int64)
        return cols

    rows = np.flatnonzero(fake_train)
    cols = columns(rows)
    pre = Preprocessor(fake_schema(cfg.schema, multiplicity)).fit(cols)
    val_rows = np.flatnonzero(~fake_train)
    validation = None
    if val_rows.size >= 10:
        vcols = columns(val_rows)
        validation = {
            "x": pre.transform_targets(vcols, rng=np.random.default_rng(5)),
            "c": pre.transform_conditions(vcols),
        }
    fakes_dir = checkpoints / "fakes" if checkpoints is not None else None

    def fit(resume_loop: bool) -> tuple[GenerativeModel, Any]:
        model = _new_generator(sim, cfg.seed + 1)
        return model, model.fit(
            pre.transform_targets(cols, rng=np.random.default_rng([cfg.seed, 6])),
            pre.transform_conditions(cols),
            None,
            validation,
            training=settings,
            selection=cfg.training.selection if validation is not None else "loss",
            checkpoint_dir=fakes_dir,
            resume=resume_loop,
            quiet=quiet,
        )

    model, _ = _generator_stage(
        sim, "fakes", fit, checkpoints, resume, settings, rows.size, fakes_dir
    )
    return Fakes(table=table, preprocessor=pre, model=model, multiplicity=multiplicity)


def time_shares(settings: Any, with_fakes: bool) -> tuple[Any, Any]:
    """The response's settings now and a function giving the fakes' settings later.

    ``training.time_limit`` bounds the whole fit: the response gets :data:`RESPONSE_SHARE`
    of it when fakes are modelled, the fakes' generator what is left (at least the rest of
    its share), counted from this call.
    """
    budget = settings.time_limit
    start = time.perf_counter()
    response = settings
    if budget is not None and with_fakes:
        response = settings.replace(time_limit=RESPONSE_SHARE * budget)

    def fakes() -> Any:
        if budget is None:
            return settings
        left = max(budget - (time.perf_counter() - start), (1 - RESPONSE_SHARE) * budget)
        return settings.replace(time_limit=left)

    return response, fakes


def training_notes(sim: FastSim, weight_notes: Mapping[str, Any]) -> list[str]:
    """The model card's notes about what was not modelled and how weights were used."""
    cfg = sim.config
    notes: list[str] = []
    if sim.efficiency_ is None:
        notes.append(
            f"no efficiency model: data.layout '{sim.layout}' without "
            "data.reconstructed, every object counts as reconstructed (efficiency 1)"
        )
    if sim.fakes_ is None and cfg.fakes:
        notes.append(
            f"fewer than {MIN_FAKES} fakes in the training events: "
            "no fake model, generated events have no unmatched reco objects"
        )
    if weight_notes:
        notes.append(
            "negative event weights (data.weights: "
            f"{cfg.data.weights}) replaced by their regression on the features for "
            "training (data.negative_weights: regress)"
        )
    return notes
