"""``FastSim``: a learned fast simulation of one object collection, from gen objects to reco.

A fast simulation is three models and the preprocessing that links them to physical units:

1. **efficiency** (:class:`~hepgen.models.efficiency.EfficiencyModel`): P(a gen object is
   reconstructed | its gen features);
2. **response**: p(reco features | gen features) of the reconstructed objects, learned on
   matched gen/reco pairs by the generator that ``model.kind`` selects
   (:class:`~hepgen.models.flow_model.FlowModel` or :class:`~hepgen.models.gan.GANModel`);
3. **fakes**: reco objects without a gen match (pile-up, noise).  They cannot be generated per
   gen object, so they are generated per event: the number of fakes is drawn from its observed
   distribution in bins of the event's gen-object multiplicity, and their features from a
   second generator (of the same kind) conditioned on that multiplicity, with the same target
   preprocessing except that nothing is expressed relative to a gen object (there is none).
   Switch off with ``model.fakes: false``.

:meth:`FastSim.simulate` takes events with the gen collection (an awkward array in NanoAOD
layout) and returns the reco collection in the same layout: per event, the reconstructed gen
objects in gen order, then the fakes; ``{reco}_{gen}Idx`` points to the gen object (-1 for
fakes), as in NanoAOD.

The ``flat`` and ``objects`` layouts (``data.layout``, :mod:`hepgen.io.layouts`) have no
collections to pair: every object of a row is a "gen" object with its conditions, a row is the
"event" of the split (the objects of one row stay together), and there are no fakes.  Without
``data.reconstructed`` every object counts as reconstructed and **no efficiency model** is
trained (:attr:`FastSim.efficiency_` is None, the efficiency is 1, the model card says so);
with it, the efficiency model learns P(reconstructed | conditions) and the response trains on
the reconstructed objects only.  On such layouts :meth:`FastSim.simulate` returns one record per
input row with the target branches under their full names (``mu1_PIDK``, ...) and the
reconstruction flags when configured; targets of objects drawn as not reconstructed hold
:func:`hepgen.io.layouts.missing_value` (NaN for floats).

Training uses a split by **event** (never objects of one event on both sides), and the model
directory follows the contract of DESIGN.md: ``hepgen-model.json`` (format version, config,
feature schema and fitted preprocessing, the conditions' validity domain, architecture,
training settings and history, provenance) plus the response's weights under the name of
``model.kind`` (``flow.safetensors`` + ``flow.json``, or ``gan.safetensors`` + ``gan.json``),
``efficiency.json`` (xgboost's native format) and, with fakes, ``fakes_flow.*`` or
``fakes_gan.*``.  Loading executes no code.  During training ``checkpoints/`` holds the
training loop's per-epoch checkpoints of the response (``checkpoints/``) and of the fakes
(``checkpoints/fakes/``) and each finished stage (``checkpoints/finished/``), so that
``fit(resume=True)`` goes on from wherever a crash stopped it.

References
----------
CMS FlashSim (ANCHORS.md); C. Durkan et al., "Neural Spline Flows", arXiv:1906.04032;
A. Maevskiy et al., arXiv:1905.11825 (the LHCb RICH GAN).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hepgen.config import Config, parse_config
from hepgen.errors import InputError, require
from hepgen.features import FeatureSchema, FeatureSpec
from hepgen.models.base import GenerativeModel, NoLikelihoodError
from hepgen.models.efficiency import EfficiencyModel
from hepgen.models.flow_model import FlowModel, resolve_device
from hepgen.models.gan import GANModel
from hepgen.models.stages import check_resumable, clear_checkpoints, run_stage
from hepgen.preprocessing import Preprocessor
from hepgen.utils import write_json

__all__ = [
    "MODEL_FORMAT",
    "MODEL_FORMAT_VERSION",
    "OVERSAMPLE_DRAW",
    "OVERSAMPLE_WEIGHT",
    "FastSim",
    "event_split",
    "repeat_events",
    "table_columns",
    "with_draw_fields",
]

log = logging.getLogger(__name__)

MODEL_FORMAT = "hepgen-model"
MODEL_FORMAT_VERSION = 1
MODEL_FILE = "hepgen-model.json"
#: Event fields added by oversampling: the weight 1/K and the draw number 0 ... K-1.
OVERSAMPLE_WEIGHT = "hepgen_weight"
OVERSAMPLE_DRAW = "hepgen_draw"
#: Gen-object multiplicities above this share one bin of the fake-multiplicity table.
MAX_MULTIPLICITY_BIN = 8
#: Fewer training fakes than this: no fake model (a note in the model card says so).
MIN_FAKES = 50
#: Share of ``training.time_limit`` given to the response model when fakes are modelled.
RESPONSE_SHARE = 0.75


def table_columns(table: Any, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The named 1-D columns of a flat table (one row per object), dtypes kept.

    Parameters
    ----------
    table : pandas.DataFrame, mapping of str to 1-D arrays, numpy structured array, or 2-D
        array whose columns are ``names`` in order
    names : sequence of str
        The columns wanted.

    Returns
    -------
    dict of str to np.ndarray, each of shape (n,)

    Raises
    ------
    InputError
        A missing column (named), columns of different lengths, or an array of the wrong shape.
    """
    names = list(names)
    source = table
    if type(table).__module__.startswith("pandas"):
        available = [str(c) for c in table.columns]
    elif isinstance(table, Mapping):
        available = list(table)
    else:
        source = np.asarray(table)
        if source.dtype.names is None:
            if source.ndim != 2 or source.shape[1] != len(names):
                raise InputError(
                    f"a flat table as an array must have shape (n, {len(names)}) "
                    f"with the columns {names}, got shape {source.shape}"
                )
            return {name: source[:, j] for j, name in enumerate(names)}
        available = list(source.dtype.names)
    missing = [n for n in names if n not in available]
    if missing:
        raise InputError(f"the table has no column(s) {missing}; it has {available}")
    columns = {n: np.asarray(source[n]) for n in names}
    shapes = {n: v.shape for n, v in columns.items()}
    if any(len(sh) != 1 for sh in shapes.values()) or len({sh[0] for sh in shapes.values()}) > 1:
        raise InputError(f"table columns must be 1-D and of equal length, got shapes {shapes}")
    return columns


def model_class(kind: str) -> type[GenerativeModel]:
    """The generator class of ``model.kind``: :class:`FlowModel` or
    :class:`~hepgen.models.gan.GANModel`."""
    if kind == "gan":
        return GANModel
    if kind == "flow":
        return FlowModel
    raise InputError(f"unknown model kind {kind!r}; expected 'flow' or 'gan'")


def repeat_events(events: Any, k: int) -> Any:
    """Each event K times in a row (event i at rows i*K ... i*K + K - 1); K = 1: unchanged."""
    return events if k == 1 else events[np.repeat(np.arange(len(events)), k)]


def with_draw_fields(events: Any, k: int) -> Any:
    """Add the oversampling fields (weight 1/K, draw 0 ... K-1) to K-fold repeated records
    (:func:`repeat_events`); K = 1: unchanged."""
    if k == 1:
        return events
    import awkward as ak

    fields = {f: events[f] for f in events.fields}
    fields[OVERSAMPLE_WEIGHT] = np.full(len(events), 1.0 / k, np.float32)
    fields[OVERSAMPLE_DRAW] = np.tile(np.arange(k, dtype=np.int32), len(events) // k)
    return ak.zip(fields, depth_limit=1)


def event_split(n_events: int, fraction: float, seed: int) -> np.ndarray:
    """Validation flag per event (shape (n_events,), bool): a seeded random ``fraction``."""
    rng = np.random.default_rng([seed, 1])
    flags = np.zeros(n_events, dtype=bool)
    n_val = round(fraction * n_events)
    flags[rng.choice(n_events, n_val, replace=False)] = True
    return flags


def _check_seed(seed: Any) -> None:
    """The config's seed must be an integer in [0, 2**63) (InputError otherwise)."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or not 0 <= seed < 2**63:
        raise InputError(f"seed={seed!r}: expected an integer with 0 <= seed < 2**63")


def _regressed(
    columns: Mapping[str, np.ndarray], names: Sequence[str], weights: np.ndarray, seed: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """:func:`hepgen.sweights.regress_weights` of ``weights`` on the columns ``names``."""
    from hepgen.sweights import regress_weights

    x = np.column_stack([np.asarray(columns[k], dtype=np.float64) for k in names])
    return regress_weights(x, weights, seed=seed)


def _take(columns: Mapping[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    return {k: np.asarray(v)[rows] for k, v in columns.items()}


def _stored_dtypes(pre: Preprocessor, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Cast generated columns to the dtypes of the training data (float32 in NanoAOD), so that
    generated files have the layout of the full-simulation ones."""
    dtypes = pre.dtypes
    return {
        k: np.asarray(v).astype(dtypes.get(k, np.asarray(v).dtype), copy=False)
        for k, v in columns.items()
    }


def _fake_schema(schema: FeatureSchema, multiplicity: str) -> FeatureSchema:
    """The targets without ``relative_to`` (fakes have no gen partner), conditioned on the
    event's gen-object multiplicity."""
    targets = [dataclasses.replace(s, relative_to=None) for s in schema.targets]
    return FeatureSchema([FeatureSpec(multiplicity, "condition", "integer"), *targets])


@dataclasses.dataclass
class _Fakes:
    """Per-event fake multiplicity table and the generator of fake features."""

    table: np.ndarray  # (MAX_MULTIPLICITY_BIN + 1, k_max + 1): P(k fakes | gen multiplicity bin)
    preprocessor: Preprocessor
    model: GenerativeModel  # the flow or GAN of the fake features
    multiplicity: str

    def counts(self, n_gen: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        bins = np.minimum(n_gen, MAX_MULTIPLICITY_BIN)
        cdf = np.cumsum(self.table, axis=1)
        u = rng.random(len(bins))
        return (u[:, None] > cdf[bins]).sum(axis=1).astype(np.int64)

    def sample(self, n_gen_per_fake: np.ndarray, seed: int) -> dict[str, np.ndarray]:
        cond = {self.multiplicity: n_gen_per_fake.astype(np.int64)}
        c = self.preprocessor.transform_conditions(cond)
        z = self.model.sample(c, seed=seed)
        return _stored_dtypes(self.preprocessor, self.preprocessor.inverse_targets(z, cond))


class FastSim:
    """Learned fast simulation of one object collection (efficiency x response + fakes).

    Parameters
    ----------
    config : Config
        ``data`` (collections, matching), ``features``, ``model`` and ``training`` sections.
    device : {"auto", "cpu", "cuda"}
        Where the generators (flows or GANs) train and sample.

    Attributes
    ----------
    response_ : FlowModel or GANModel
        The response generator, after :meth:`fit` or :meth:`load`.

    Examples
    --------
    >>> sim = FastSim.load("model_dir")             # doctest: +SKIP
    >>> reco = sim.simulate(events)                  # doctest: +SKIP
    """

    def __init__(self, config: Config, device: str = "auto") -> None:
        self.config = config
        self.device = device

    # ------------------------------------------------------------------ properties
    @property
    def layout(self) -> str:
        """``data.layout``: ``collections``, ``flat`` or ``objects``."""
        return self.config.data.layout

    @property
    def gen(self) -> str:
        """The gen collection (``GenJet``); for flat/objects layouts a description of the
        objects (``"objects mu1, mu2"``, ``"flat rows"``), for messages."""
        data = self.config.data
        return data.gen if data.layout == "collections" else self.row_layout.label

    @property
    def reco(self) -> str:
        """The reco collection (``Jet``); for flat/objects layouts as :attr:`gen`."""
        data = self.config.data
        return data.reco if data.layout == "collections" else self.row_layout.label

    @property
    def row_layout(self) -> Any:
        """The :class:`hepgen.io.layouts.RowLayout` of a flat/objects layout."""
        from hepgen.io.layouts import RowLayout

        return RowLayout.from_config(self.config)

    @property
    def has_efficiency_model(self) -> bool:
        """Whether an efficiency model is trained: always for collections, with
        ``data.reconstructed`` for flat/objects layouts."""
        data = self.config.data
        return data.layout == "collections" or data.reconstructed is not None

    @property
    def condition_names(self) -> list[str]:
        return [f.name for f in self.config.schema.conditions]

    @property
    def target_names(self) -> list[str]:
        return [f.name for f in self.config.schema.targets]

    def _check_fitted(self) -> None:
        if not hasattr(self, "response_"):
            raise RuntimeError("FastSim: call fit() or load() first")

    # ------------------------------------------------------------------ training
    def _training_settings(self) -> Any:
        settings = self.config.training.settings()
        extra = self.config.training.model_extra or {}
        changes: dict[str, Any] = {}
        if "seed" not in extra:
            changes["seed"] = self.config.seed
        if "device" not in extra:
            changes["device"] = self.device
        return dataclasses.replace(settings, **changes)

    def fit(
        self,
        pairs: Any = None,
        files: Sequence[str] | None = None,
        output: str | os.PathLike | None = None,
        resume: bool = False,
        quiet: bool = False,
    ) -> FastSim:
        """Learn the efficiency, the response and the fakes from paired full simulation.

        Parameters
        ----------
        pairs : PairedObjects or None
            Already loaded pairs (:func:`hepgen.dataset.load_pairs`); else read from ``files``
            (default: the config's ``data.files``).
        files : sequence of str or None
            Input ROOT files.
        output : path or None
            Model directory: checkpoints go to ``output/checkpoints`` during training and the
            model is saved there at the end.
        resume : bool
            Continue an interrupted training from ``output/checkpoints``, stage by stage
            (:mod:`hepgen.models.stages`): a finished stage (efficiency, response, fakes) is
            loaded from ``checkpoints/finished``, an interrupted one continues from its last
            epoch, one never started starts afresh.  The result equals an uninterrupted run's,
            tensor for tensor.  Without ``resume`` an earlier run's checkpoints are removed.
        quiet : bool
            Silence progress bars.

        Raises
        ------
        InputError
            A seed outside [0, 2**63), a CUDA device that torch does not see (both before any
            data is read), unusable data.
        TrainingError
            ``resume`` without checkpoints in ``output`` (the directory named), or with
            checkpoints of other settings.
        """
        from hepgen.dataset import load_pairs
        from hepgen.provenance import provenance

        cfg = self.config
        seed = cfg.seed
        _check_seed(seed)
        checkpoints = Path(output) / "checkpoints" if output is not None else None
        if resume:
            if checkpoints is None:
                raise InputError("resume=True needs the model directory (output) to resume in")
            check_resumable(checkpoints, output)
        settings = self._training_settings()
        resolve_device(settings.device)  # an absent GPU is found before reading any data
        if self.has_efficiency_model:  # a bare install has no xgboost: say so before reading
            require("xgboost", "the efficiency model (P(reconstructed | gen))")
        if pairs is None:
            pairs = load_pairs(cfg, files=files, quiet=quiet)
        if pairs.n_matched < 2:
            what = (
                f"matched {self.gen}/{self.reco} pairs"
                if self.layout == "collections"
                else f"reconstructed objects ({self.gen})"
            )
            raise InputError(f"only {pairs.n_matched} {what}: nothing to learn a response from")
        weighted = cfg.data.weights is not None
        is_val = event_split(pairs.n_events, cfg.training.validation_fraction, seed)
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
        train_cols, val_cols = _take(pair_cols, train_rows), _take(pair_cols, val_rows)
        w_train = pair_w[train_rows] if weighted else None
        w_val = pair_w[val_rows] if weighted else None
        gen_train = np.flatnonzero(~gen_val)
        w_gen = pairs.gen_weights[gen_train] if weighted else None
        weight_notes: dict[str, Any] = {}
        if weighted and cfg.data.negative_weights == "regress" and (pairs.gen_weights < 0).any():
            # sWeights: a weighted likelihood with negative weights is unbounded below; train
            # on E[w | features] instead (hepgen.sweights), per split, cross-fitted
            names = self.condition_names + self.target_names
            w_train, weight_notes["response_training"] = _regressed(
                train_cols, names, w_train, seed
            )
            w_val, weight_notes["response_validation"] = _regressed(
                val_cols, names, w_val, seed + 1
            )
            if self.has_efficiency_model:
                gen_cols = {**_take(pairs.gen, gen_train), "reconstructed": matched[gen_train]}
                w_gen, weight_notes["efficiency"] = _regressed(
                    gen_cols, [*self.condition_names, "reconstructed"], w_gen, seed + 2
                )

        self.preprocessor_ = Preprocessor(cfg.schema).fit(train_cols, weights=w_train)
        pre = self.preprocessor_

        if checkpoints is not None and not resume:
            clear_checkpoints(checkpoints)

        # efficiency on every gen object of the training events
        self.efficiency_: EfficiencyModel | None = None
        if self.has_efficiency_model:
            eff_c = pre.transform_conditions(_take(pairs.gen, gen_train))
            params = {"seed": seed, **cfg.model.efficiency}
            self.efficiency_, _ = run_stage(
                "efficiency",
                checkpoints,
                resume,
                self._fingerprint(settings, gen_train.size),
                fit=lambda _: (
                    EfficiencyModel(**params).fit(
                        eff_c,
                        matched[gen_train],
                        w_gen,
                        feature_names=pre.condition_columns,
                    ),
                    None,
                ),
                save=lambda model, folder, stem: model.save(folder, name=stem),
                load=lambda folder, stem: EfficiencyModel.load(folder, name=stem),
            )

        # response
        x = pre.transform_targets(train_cols, rng=np.random.default_rng([seed, 3]))
        c = pre.transform_conditions(train_cols)
        xv = pre.transform_targets(val_cols, rng=np.random.default_rng([seed, 4]))
        cv = pre.transform_conditions(val_cols)
        validation = {"x": xv, "c": cv, **({"w": w_val} if weighted else {})}
        # training.time_limit bounds the whole fit: the response gets RESPONSE_SHARE of
        # it, the fakes' generator what is left (at least the rest of its share).
        budget = settings.time_limit
        start = time.perf_counter()
        response_settings = settings
        if budget is not None and cfg.fakes and pairs.n_fakes >= MIN_FAKES:
            response_settings = dataclasses.replace(settings, time_limit=RESPONSE_SHARE * budget)

        def fit_response(resume_loop: bool) -> tuple[GenerativeModel, Any]:
            model = model_class(cfg.model.kind)(
                cfg.model.generator_settings(), seed=seed, device=self.device
            )
            return model, model.fit(
                x,
                c,
                w_train,
                validation,
                training=response_settings,
                selection=cfg.training.selection,
                checkpoint_dir=checkpoints,
                resume=resume_loop,
                quiet=quiet,
            )

        self.response_, self.training_ = self._stage(
            "response", fit_response, checkpoints, resume, settings, x.shape[0], checkpoints
        )
        fake_settings = settings
        if budget is not None:
            left = max(budget - (time.perf_counter() - start), (1 - RESPONSE_SHARE) * budget)
            fake_settings = dataclasses.replace(settings, time_limit=left)
        self.fakes_ = self._fit_fakes(pairs, is_val, fake_settings, checkpoints, resume, quiet)
        self.notes_: list[str] = []
        if self.efficiency_ is None:
            self.notes_.append(
                f"no efficiency model: data.layout '{self.layout}' without "
                "data.reconstructed, every object counts as reconstructed (efficiency 1)"
            )
        if self.fakes_ is None and cfg.fakes:
            self.notes_.append(
                f"fewer than {MIN_FAKES} fakes in the training events: "
                "no fake model, generated events have no unmatched reco objects"
            )
        self.provenance_ = provenance(pairs.files, seed, config=cfg.source)
        if weight_notes:
            self.notes_.append(
                "negative event weights (data.weights: "
                f"{cfg.data.weights}) replaced by their regression on the features for "
                "training (data.negative_weights: regress)"
            )
        self.summary_ = {
            **pairs.summary(),
            **({"weights": weight_notes} if weight_notes else {}),
            "n_train_pairs": int(train_rows.size),
            "n_validation_pairs": int(val_rows.size),
        }
        if output is not None:
            self.save(output)
        return self

    def _fit_fakes(
        self,
        pairs: Any,
        is_val: np.ndarray,
        settings: Any,
        checkpoints: Path | None,
        resume: bool,
        quiet: bool,
    ) -> _Fakes | None:
        cfg = self.config
        if not cfg.fakes:
            return None
        fake_train = ~is_val[pairs.fake_event]
        if int(fake_train.sum()) < MIN_FAKES:
            return None
        n_gen = np.bincount(pairs.gen_event, minlength=pairs.n_events)
        n_fake = np.bincount(pairs.fake_event, minlength=pairs.n_events)
        train_events = np.flatnonzero(~is_val)
        bins = np.minimum(n_gen[train_events], MAX_MULTIPLICITY_BIN)
        k = n_fake[train_events]
        table = np.zeros((MAX_MULTIPLICITY_BIN + 1, int(k.max()) + 1))
        np.add.at(table, (bins, k), 1.0)
        # a multiplicity bin never seen in training falls back to the overall distribution
        overall = table.sum(axis=0) / table.sum()
        totals = table.sum(axis=1, keepdims=True)
        table = np.where(totals > 0, table / np.maximum(totals, 1), overall)
        multiplicity = f"n{self.gen}"
        schema = _fake_schema(cfg.schema, multiplicity)
        rows = np.flatnonzero(fake_train)
        cols = _take(pairs.fakes, rows)
        cols[multiplicity] = n_gen[pairs.fake_event[rows]].astype(np.int64)
        pre = Preprocessor(schema).fit(cols)
        val_rows = np.flatnonzero(~fake_train)
        validation = None
        if val_rows.size >= 10:
            vcols = _take(pairs.fakes, val_rows)
            vcols[multiplicity] = n_gen[pairs.fake_event[val_rows]].astype(np.int64)
            validation = {
                "x": pre.transform_targets(vcols, rng=np.random.default_rng(5)),
                "c": pre.transform_conditions(vcols),
            }
        fakes_dir = checkpoints / "fakes" if checkpoints is not None else None

        def fit_fakes(resume_loop: bool) -> tuple[GenerativeModel, Any]:
            model = model_class(cfg.model.kind)(
                cfg.model.generator_settings(), seed=cfg.seed + 1, device=self.device
            )
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

        model, _ = self._stage(
            "fakes", fit_fakes, checkpoints, resume, settings, rows.size, fakes_dir
        )
        return _Fakes(table=table, preprocessor=pre, model=model, multiplicity=multiplicity)

    def _fingerprint(self, settings: Any, n: int) -> dict[str, Any]:
        """What shapes a training stage; a resumed stage must have the same (stages.py)."""
        from hepgen.training import RESUME_FIXED_SETTINGS

        cfg = self.config
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

    def _stage(
        self,
        stage: str,
        fit: Any,
        checkpoints: Path | None,
        resume: bool,
        settings: Any,
        n: int,
        loop_dir: Path | None,
    ) -> tuple[Any, Any]:
        """A generator stage through :func:`hepgen.models.stages.run_stage`."""
        kind = self.config.model.kind
        return run_stage(
            stage,
            checkpoints,
            resume,
            self._fingerprint(settings, n),
            fit=fit,
            save=lambda model, folder, stem: model.save(folder, name=stem),
            load=lambda folder, stem: model_class(kind).load(folder, device=self.device, name=stem),
            loop_checkpoint=None if loop_dir is None else loop_dir / "last.safetensors",
            max_epochs=settings.max_epochs,
        )

    # ------------------------------------------------------------------ inference
    def sample(
        self, conditions: Mapping[str, np.ndarray], seed: int | None = None
    ) -> dict[str, np.ndarray]:
        """Reco features for every gen row (no efficiency step): raw targets, physical units.

        Parameters
        ----------
        conditions : mapping of str to array of shape (n,)
            Every condition feature (gen units, e.g. GeV).
        seed : int or None
            Seeds the draws.

        Returns
        -------
        dict of str to np.ndarray
            Each target, shape (n,), in the dtype seen in training (integers stay integers).
        """
        self._check_fitted()
        c = self.preprocessor_.transform_conditions(conditions)
        z = self.response_.sample(c, seed=seed)
        return _stored_dtypes(self.preprocessor_, self.preprocessor_.inverse_targets(z, conditions))

    def log_prob(
        self, targets: Mapping[str, np.ndarray], conditions: Mapping[str, np.ndarray]
    ) -> np.ndarray:
        """log p(reco | gen) in the targets' physical units, shape (n,) (nats).

        The model-space density plus the preprocessing's log-Jacobian; for integer targets it
        is the density of the dequantised value (about the log-probability of the value).

        Raises
        ------
        NoLikelihoodError
            The response is a GAN (``model.kind: gan``), which has no tractable likelihood.
        """
        self._check_fitted()
        if isinstance(self.response_, GANModel):
            raise NoLikelihoodError(
                "FastSim.log_prob: this fast simulation's response is a GAN (model.kind: gan), "
                "which has no tractable likelihood; train it with model.kind: flow for "
                "log-densities (anomaly scores, likelihood ratios)"
            )
        data = {**conditions, **targets}
        pre = self.preprocessor_
        z = pre.transform_targets(data, rng=np.random.default_rng(0))
        c = pre.transform_conditions(data)
        jac = pre.target_log_abs_det_jacobian(data, rng=np.random.default_rng(0))
        return self.response_.log_prob(z, c) + jac

    def efficiency(self, conditions: Mapping[str, np.ndarray]) -> np.ndarray:
        """P(reconstructed | gen features), shape (n,); ones without an efficiency model
        (flat/objects layouts without ``data.reconstructed``)."""
        self._check_fitted()
        c = self.preprocessor_.transform_conditions(conditions)
        if self.efficiency_ is None:
            return np.ones(c.shape[0])
        return self.efficiency_.predict(c)

    def simulate(
        self,
        events: Any,
        seed: int | None = None,
        domain_counts: dict[str, int] | None = None,
        oversample: int = 1,
    ) -> Any:
        """Reco objects for gen objects: events in NanoAOD layout, or a flat table.

        Parameters
        ----------
        events : ak.Array, or a flat table (pandas.DataFrame, mapping of str to 1-D arrays,
            numpy structured array, or 2-D array with the conditions as columns in
            :attr:`condition_names` order)
            Awkward records with the gen collection's jagged fields (``GenJet_pt``, ...), or
            one row per gen object with the condition columns (gen units, e.g. GeV).
        seed : int or None
            Seeds efficiency draws, response samples and fakes.
        domain_counts : dict or None
            When given, the numbers of objects whose conditions lie outside the training
            domain are added to it (per condition) instead of being logged as a warning (for
            callers that process a file in chunks and warn once).
        oversample : int
            K >= 1 independent draws per event (per row for tables): each input event appears
            K times in a row (event i at outputs i*K ... i*K + K - 1), every draw with its own
            efficiency decisions, responses and fakes, and with weight 1/K.

        Returns
        -------
        ak.Array (for awkward events)
            One record per event and draw with the reco fields (``Jet_pt``, ...; jagged) and
            ``{reco}_{gen}Idx`` (index of the gen object in its event, -1 for fakes); with
            ``oversample > 1`` also the event fields ``hepgen_weight`` (1/K, float32) and
            ``hepgen_draw`` (0 ... K-1, int32).  Multiply ``hepgen_weight`` into any event
            weight of the input.  For the flat/objects layouts: one record per input row with
            every target branch (``mu1_PIDK``, ...; :func:`hepgen.io.layouts.missing_value`
            where the object was drawn as not reconstructed) and, with
            ``data.reconstructed``, the flag branches (bool).
        pandas.DataFrame or dict of np.ndarray (for flat tables: a DataFrame for a DataFrame)
            One row per input row and draw: the condition columns, every target (sampled for
            every row: the response if the object is reconstructed), ``efficiency``
            (P(reconstructed), float32) and ``reconstructed`` (bool, drawn from it); with
            ``oversample > 1`` also ``hepgen_weight`` and ``hepgen_draw``.  Fakes need the
            event structure and are only generated for awkward events.
        """
        self._check_fitted()
        if (
            isinstance(oversample, bool)
            or not isinstance(oversample, int | np.integer)
            or (oversample < 1)
        ):
            raise ValueError(f"oversample must be a positive integer, got {oversample!r}")
        k = int(oversample)
        if type(events).__module__.startswith("awkward"):
            if self.layout != "collections":
                out = self._simulate_rows(repeat_events(events, k), seed, domain_counts)
            else:
                out = self._simulate_events(repeat_events(events, k), seed, domain_counts)
            return with_draw_fields(out, k)
        return self._simulate_table(events, seed, domain_counts, k)

    def _check_domain(
        self, conds: Mapping[str, np.ndarray], domain_counts: dict[str, int] | None
    ) -> None:
        outside = self.preprocessor_.out_of_domain(conds) if len(next(iter(conds.values()))) else {}
        bad = {k: v for k, v in outside.items() if v}
        if domain_counts is not None:
            for k, v in bad.items():
                domain_counts[k] = domain_counts.get(k, 0) + v
        elif bad:
            log.warning(
                "%s conditions outside the training domain (objects per feature): %s", self.gen, bad
            )

    def _simulate_table(
        self, table: Any, seed: int | None, domain_counts: dict[str, int] | None, k: int
    ) -> Any:
        conds = table_columns(table, self.condition_names)
        n = len(next(iter(conds.values())))
        if k > 1:
            conds = {name: np.repeat(v, k) for name, v in conds.items()}
        self._check_domain(conds, domain_counts)
        seeds = np.random.SeedSequence(seed).spawn(2)
        efficiency = self.efficiency(conds) if n else np.zeros(0)
        reconstructed = efficiency > np.random.default_rng(seeds[0]).random(len(efficiency))
        dtypes = self.preprocessor_.dtypes
        reco = (
            self.sample(conds, seed=int(seeds[1].generate_state(1)[0]))
            if n
            else {t: np.zeros(0, dtype=dtypes[t]) for t in self.target_names}
        )
        out: dict[str, np.ndarray] = {
            **conds,
            **reco,
            "efficiency": efficiency.astype(np.float32),
            "reconstructed": reconstructed,
        }
        if k > 1:
            out[OVERSAMPLE_WEIGHT] = np.full(n * k, 1.0 / k, np.float32)
            out[OVERSAMPLE_DRAW] = np.tile(np.arange(k, dtype=np.int32), n)
        if type(table).__module__.startswith("pandas"):
            import pandas as pd

            return pd.DataFrame(out)
        return out

    def _simulate_rows(
        self, events: Any, seed: int | None, domain_counts: dict[str, int] | None
    ) -> Any:
        """:meth:`simulate` for awkward rows of the flat/objects layouts (no per-row loop)."""
        import awkward as ak

        from hepgen.io.layouts import missing_value

        resolved = self.row_layout.resolve(events.fields, "the events", targets=False)
        n_rows = len(events)
        conds = resolved.stack(events, self.condition_names, "the events")
        n = n_rows * resolved.layout.n_objects
        self._check_domain(conds, domain_counts)
        seeds = np.random.SeedSequence(seed).spawn(2)
        keep = np.ones(n, dtype=bool)
        if self.efficiency_ is not None and n:
            keep = self.efficiency(conds) > np.random.default_rng(seeds[0]).random(n)
        dtypes = self.preprocessor_.dtypes
        columns: dict[str, np.ndarray] = {}
        if keep.all():
            columns = self.sample(conds, seed=int(seeds[1].generate_state(1)[0])) if n else {}
        elif keep.any():
            kept = self.sample(
                {k: v[keep] for k, v in conds.items()}, seed=int(seeds[1].generate_state(1)[0])
            )
            for t, values in kept.items():
                full = np.full(n, missing_value(values.dtype), dtype=values.dtype)
                full[keep] = values
                columns[t] = full
        for t in self.target_names:
            if t not in columns:
                dtype = np.dtype(dtypes.get(t, np.float64))
                columns[t] = np.full(n, missing_value(dtype), dtype=dtype)
        columns = {t: columns[t] for t in self.target_names}
        out = resolved.unstack(columns, n_rows)
        layout = resolved.layout
        if layout.reconstructed is not None:
            out.update(resolved.unstack({layout.reconstructed: keep}, n_rows))
        return ak.zip(out, depth_limit=1) if out else ak.Array([{}] * n_rows)

    def _simulate_events(
        self, events: Any, seed: int | None, domain_counts: dict[str, int] | None
    ) -> Any:
        import awkward as ak

        from hepgen.io.collections import flatten_collection

        seeds = np.random.SeedSequence(seed).spawn(3)
        flat = flatten_collection(events, self.gen, self.condition_names)
        conds = {k: flat[k] for k in self.condition_names}
        self._check_domain(conds, domain_counts)
        rng = np.random.default_rng(seeds[0])
        keep = (self.efficiency(conds) > rng.random(len(flat))) if len(flat) else np.zeros(0, bool)
        kept = {k: v[keep] for k, v in conds.items()}
        dtypes = self.preprocessor_.dtypes
        reco = (
            self.sample(kept, seed=int(seeds[1].generate_state(1)[0]))
            if keep.any()
            else {t: np.zeros(0, dtype=dtypes[t]) for t in self.target_names}
        )
        n_events = flat.n_events
        matched_counts = np.bincount(flat.event_index[keep], minlength=n_events)
        idx_name = self.config.data.index_branch
        gen_idx = flat.local_index[keep].astype(np.int32)
        columns = {t: np.asarray(reco[t]) for t in self.target_names}
        counts = matched_counts
        if self.fakes_ is not None:
            frng = np.random.default_rng(seeds[2])
            n_fake = self.fakes_.counts(flat.counts, frng)
            if n_fake.sum():
                fake_event = np.repeat(np.arange(n_events), n_fake)
                fakes = self.fakes_.sample(flat.counts[fake_event], seed=int(frng.integers(2**31)))
                # per event: matched objects first, then the fakes
                order_key = np.concatenate([flat.event_index[keep], fake_event])
                is_fake = np.concatenate(
                    [np.zeros(keep.sum(), bool), np.ones(len(fake_event), bool)]
                )
                order = np.lexsort((is_fake, order_key))
                for t in self.target_names:
                    # both parts already carry the stored dtype (_stored_dtypes)
                    columns[t] = np.concatenate([columns[t], fakes[t]])[order]
                gen_idx = np.concatenate([gen_idx, np.full(len(fake_event), -1, np.int32)])[order]
                counts = matched_counts + n_fake
        out = {t: ak.unflatten(columns[t], counts) for t in self.target_names}
        out[idx_name] = ak.unflatten(gen_idx, counts)
        return ak.zip(out, depth_limit=1)

    # ------------------------------------------------------------------ persistence
    def card(self) -> dict[str, Any]:
        """The content of ``hepgen-model.json`` (everything but the weights)."""
        self._check_fitted()
        cfg = self.config
        fakes = None
        if self.fakes_ is not None:
            fakes = {
                "multiplicity": self.fakes_.multiplicity,
                "table": self.fakes_.table.tolist(),
                "preprocessing": self.fakes_.preprocessor.to_dict(),
            }
        return {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "kind": cfg.model.kind,
            "config": {
                "data": cfg.data.model_dump(
                    mode="json",
                    exclude={"gen", "reco", "matching"}
                    if cfg.data.layout != "collections"
                    else {"objects", "reconstructed"},
                ),
                "features": [f.model_dump(mode="json", exclude_none=True) for f in cfg.features],
                "model": cfg.model.model_dump(mode="json"),
                "training": cfg.training.model_dump(mode="json"),
                "seed": cfg.seed,
            },
            "preprocessing": self.preprocessor_.to_dict(),
            "domain": self.preprocessor_.domain,
            "architecture": self.response_.describe(),
            "efficiency": self.efficiency_.describe() if self.efficiency_ is not None else None,
            "fakes": fakes,
            "training": getattr(self, "training_", None).to_dict()
            if getattr(self, "training_", None) is not None
            else None,
            "data_summary": getattr(self, "summary_", None),
            "provenance": getattr(self, "provenance_", None),
            "notes": getattr(self, "notes_", []),
        }

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the model directory (JSON + safetensors + xgboost JSON; no pickle)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        kind = self.config.model.kind
        self.response_.save(directory, name=kind)
        if self.efficiency_ is not None:
            self.efficiency_.save(directory, name="efficiency")
        if self.fakes_ is not None:
            self.fakes_.model.save(directory, name=f"fakes_{kind}")
        write_json(directory / MODEL_FILE, self.card())
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike, device: str = "cpu") -> FastSim:
        """Read a model directory written by :meth:`save` (no code is executed).

        Raises
        ------
        InputError
            Missing or corrupt files, or a ``format_version`` this hepgen cannot read.
        """
        device = resolve_device(device)
        directory = Path(directory)
        path = directory / MODEL_FILE
        if not path.is_file():
            raise InputError(f"'{directory}' is not a hepgen model directory: no {MODEL_FILE}")
        try:
            card = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise InputError(
                f"'{path}' is not valid JSON ({err}); the model directory is corrupt or truncated"
            ) from None
        if not isinstance(card, dict) or card.get("format") != MODEL_FORMAT:
            raise InputError(
                f"'{path}' is not a hepgen model card (format "
                f"{card.get('format') if isinstance(card, dict) else None!r})"
            )
        version = card.get("format_version")
        if version != MODEL_FORMAT_VERSION:
            raise InputError(
                f"'{path}' has format_version {version!r}; this hepgen reads version "
                f"{MODEL_FORMAT_VERSION} (written by hepgen "
                f"{(card.get('provenance') or {}).get('versions', {}).get('hepgen', '?')})"
            )
        try:
            config = parse_config(card["config"], source=os.fspath(path))
            sim = cls(config, device=device)
            sim.preprocessor_ = Preprocessor.from_dict(card["preprocessing"])
            fakes = card.get("fakes")
        except KeyError as err:
            raise InputError(f"'{path}': missing key {err}") from None
        kind = config.model.kind
        model = model_class(kind)
        sim.response_ = model.load(directory, device=device, name=kind)
        sim.efficiency_ = (
            EfficiencyModel.load(directory, name="efficiency")
            if card.get("efficiency") is not None or sim.has_efficiency_model
            else None
        )
        sim.fakes_ = None
        if fakes:
            sim.fakes_ = _Fakes(
                table=np.asarray(fakes["table"]),
                preprocessor=Preprocessor.from_dict(fakes["preprocessing"]),
                model=model.load(directory, device=device, name=f"fakes_{kind}"),
                multiplicity=fakes["multiplicity"],
            )
        sim.card_ = card
        sim.notes_ = card.get("notes", [])
        return sim
