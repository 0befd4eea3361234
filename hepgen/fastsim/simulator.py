"""``FastSim``: the fast simulation object, from gen objects to reco (fit, simulate, save, load).

A fast simulation is three models and the preprocessing that links them to physical units:
the **efficiency** P(a gen object is reconstructed | its gen features), the **response**
p(reco features | gen features) of the reconstructed objects (the generator that
``model.kind`` selects: a flow or a GAN), and the **fakes**, reco objects without a gen match
(:mod:`hepgen.fastsim.fakes`).  See :mod:`hepgen.fastsim` for the layouts and the model
directory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hepgen.config import Config, parse_config
from hepgen.devices import check_device, resolve_device
from hepgen.errors import InputError, require
from hepgen.fastsim import latent_space
from hepgen.fastsim.columns import (
    OVERSAMPLE_DRAW,
    OVERSAMPLE_WEIGHT,
    event_split,
    repeat_events,
    stored_dtypes,
    table_columns,
    with_draw_fields,
)
from hepgen.fastsim.fakes import MIN_FAKES, Fakes
from hepgen.fastsim.fit import (
    check_distributed,
    check_seed,
    fit_efficiency,
    fit_fakes,
    fit_response,
    split_pairs,
    time_shares,
    training_notes,
)
from hepgen.fastsim.inference import check_precisions, choose_precision
from hepgen.modeldir import (
    FASTSIM_FORMAT_VERSION,
    FASTSIM_KINDS,
    MODEL_FILE,
    MODEL_FORMAT,
    read_card,
)
from hepgen.models.base import NoLikelihoodError
from hepgen.models.efficiency import EfficiencyModel
from hepgen.models.latent import LatentOptions
from hepgen.models.onnx_backend import OnnxGenerator, check_backend, read_export
from hepgen.models.registry import model_class
from hepgen.models.stages import check_resumable, clear_checkpoints
from hepgen.preprocessing import Preprocessor
from hepgen.utils import write_json

__all__ = ["FastSim"]

log = logging.getLogger(__name__)


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
        given = self.config.training.model_fields_set
        changes: dict[str, Any] = {}
        if "seed" not in given:
            changes["seed"] = self.config.seed
        if "device" not in given:
            changes["device"] = self.device
        return settings.replace(**changes)

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

        Returns
        -------
        FastSim
            ``self``, fitted (and saved in ``output`` when given).

        Raises
        ------
        InputError
            A seed outside [0, 2**63), a CUDA device that torch does not see (both before any
            data is read), unusable data.
        TrainingError
            ``resume`` without checkpoints in ``output`` (the directory named), or with
            checkpoints of other settings.
        """
        from hepgen.provenance import provenance
        from hepgen.training.distributed import barrier, is_main_process

        cfg = self.config
        checkpoints = Path(output) / "checkpoints" if output is not None else None
        settings = self._check_before_reading(checkpoints, output, resume)
        pairs = self._read_pairs(pairs, files, quiet)
        is_val = event_split(pairs.n_events, cfg.training.validation_fraction, cfg.seed)
        split = split_pairs(self, pairs, is_val)
        self.preprocessor_ = Preprocessor(cfg.schema).fit(split.train, weights=split.w_train)
        if checkpoints is not None and not resume and is_main_process():
            clear_checkpoints(checkpoints)
        self.efficiency_ = fit_efficiency(self, pairs, split, settings, checkpoints, resume)
        with_fakes = bool(cfg.fakes) and pairs.n_fakes >= MIN_FAKES
        response_settings, fake_settings = time_shares(settings, with_fakes)
        self.response_, self.training_ = fit_response(
            self, split, settings, response_settings, checkpoints, resume, quiet
        )
        self.fakes_ = fit_fakes(self, pairs, is_val, fake_settings(), checkpoints, resume, quiet)
        self.inference_ = check_precisions(self, split)
        self.notes_ = training_notes(self, split.weight_notes)
        self.provenance_ = provenance(pairs.files, cfg.seed, config=cfg.source)
        self.summary_ = {
            **pairs.summary(),
            **({"weights": split.weight_notes} if split.weight_notes else {}),
            "n_train_pairs": split.n_train,
            "n_validation_pairs": split.n_validation,
        }
        if output is not None and is_main_process():  # rank 0 writes, the others wait
            self.save(output)
        barrier()
        return self

    def _check_before_reading(self, checkpoints: Path | None, output: Any, resume: bool) -> Any:
        """The checks before any data is read (seed, resumable checkpoints, device, xgboost);
        returns the training settings."""
        from hepgen.training.distributed import init_from_env

        check_seed(self.config.seed)
        if resume:
            if checkpoints is None:
                raise InputError("resume=True needs the model directory (output) to resume in")
            check_resumable(checkpoints, output)
        settings = self._training_settings()
        resolve_device(settings.device)  # an absent GPU is found before reading any data
        dist = init_from_env(settings.device)  # under torchrun: this rank's device
        if dist is not None:
            check_distributed(self, dist)
            self.device = dist.device
            settings = settings.replace(device=dist.device)
        if self.has_efficiency_model:  # a bare install has no xgboost: say so before reading
            require("xgboost", "the efficiency model (P(reconstructed | gen))")
        return settings

    def _read_pairs(self, pairs: Any, files: Sequence[str] | None, quiet: bool) -> Any:
        """``pairs``, or the pairs of ``files`` (:func:`hepgen.dataset.load_pairs`), with at
        least two matched."""
        from hepgen.dataset import load_pairs

        if pairs is None:
            pairs = load_pairs(self.config, files=files, quiet=quiet)
        if pairs.n_matched < 2:
            what = (
                f"matched {self.gen}/{self.reco} pairs"
                if self.layout == "collections"
                else f"reconstructed objects ({self.gen})"
            )
            raise InputError(f"only {pairs.n_matched} {what}: nothing to learn a response from")
        return pairs

    # ------------------------------------------------------------------ inference
    def sample(
        self,
        conditions: Mapping[str, np.ndarray],
        seed: int | None = None,
        *,
        temperature: float | None = None,
        truncation: float | None = None,
    ) -> dict[str, np.ndarray]:
        """Reco features for every gen row (no efficiency step): raw targets, physical units.

        Parameters
        ----------
        conditions : mapping of str to array of shape (n,)
            Every condition feature (gen units, e.g. GeV).
        seed : int or None
            Seeds the draws.
        temperature, truncation : float or None
            The noise's temperature and truncation threshold psi
            (:mod:`hepgen.models.latent`); ``None``: :attr:`sampling_` (the config's
            ``model.sampling`` or :meth:`set_sampling`; by default the trained model's).

        Returns
        -------
        dict of str to np.ndarray
            Each target, shape (n,), in the dtype seen in training (integers stay integers).
        """
        self._check_fitted()
        latent = self.sampling_
        c = self.preprocessor_.transform_conditions(conditions)
        z = self.response_.sample(
            c,
            seed=seed,
            temperature=latent.temperature if temperature is None else temperature,
            truncation=latent.truncation if truncation is None else truncation,
        )
        return stored_dtypes(
            self.preprocessor_.dtypes, self.preprocessor_.inverse_targets(z, conditions)
        )

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
        if not self.response_.has_likelihood:
            kind = self.response_.kind
            bound = (
                "; FastSim.log_prob_bound gives its ELBO or IWAE lower bound"
                if hasattr(self.response_, "log_prob_bound")
                else ""
            )
            raise NoLikelihoodError(
                f"FastSim.log_prob: this fast simulation's response is a {kind.upper()} (model.kind: "
                f"{kind}), which has no tractable likelihood{bound}; train it with "
                "model.kind: flow for log-densities (anomaly scores, likelihood ratios)"
            )
        data = {**conditions, **targets}
        z, c, jac = self._model_space(data)
        return self.response_.log_prob(z, c) + jac

    def log_prob_bound(
        self,
        targets: Mapping[str, np.ndarray],
        conditions: Mapping[str, np.ndarray],
        method: str = "iwae",
        k: int | None = None,
        seed: int = 0,
    ) -> np.ndarray:
        """A lower bound on log p(reco | gen) for a VAE response, physical units, shape (n,).

        ``method``: ``"elbo"`` or ``"iwae"`` with ``k`` importance samples (default: the
        model's ``iwae_samples``), plus the preprocessing's log-Jacobian as for
        :meth:`log_prob`.  A bound, not a density: its gap to log p differs between events and
        models, so a ratio of two bounds is not a likelihood ratio.

        Raises
        ------
        NoLikelihoodError
            A response without such a bound (a GAN; a flow has the exact :meth:`log_prob`).
        """
        self._check_fitted()
        if not hasattr(self.response_, "log_prob_bound"):
            raise NoLikelihoodError(
                f"FastSim.log_prob_bound: a {self.config.model.kind} response has no "
                "likelihood bound (a flow has the exact FastSim.log_prob)"
            )
        z, c, jac = self._model_space({**conditions, **targets})
        return self.response_.log_prob_bound(z, c, method=method, k=k, seed=seed) + jac

    def _model_space(self, data: Mapping[str, np.ndarray]) -> tuple[Any, Any, Any]:
        """Targets, conditions (model space) and the targets' log-Jacobian of ``data``."""
        pre = self.preprocessor_
        z = pre.transform_targets(data, rng=np.random.default_rng(0))
        c = pre.transform_conditions(data)
        jac = pre.target_log_abs_det_jacobian(data, rng=np.random.default_rng(0))
        return z, c, jac

    # ------------------------------------------------------------------ latent space
    @property
    def sampling_(self) -> LatentOptions:
        """The noise :meth:`sample` draws by default (:meth:`set_sampling`; initially the
        config's ``model.sampling``)."""
        options = self.__dict__.get("_sampling")
        if options is None:
            s = self.config.model.sampling
            options = LatentOptions(s.temperature, s.truncation)
        return options

    def set_sampling(
        self, temperature: float | None = None, truncation: float | None = None
    ) -> FastSim:
        """Draw every later sample at ``temperature`` with the noise truncated at
        ``truncation`` (:mod:`hepgen.models.latent`; ``None``, ``None``: back to the
        config's); returns ``self``.  Raises InputError for a non-positive value."""
        if temperature is None and truncation is None:
            self.__dict__.pop("_sampling", None)
        else:
            self.__dict__["_sampling"] = LatentOptions.of(temperature, truncation)
        return self

    def encode(self, objects: Mapping[str, np.ndarray]) -> np.ndarray:
        """Latent codes (n, size) of reco objects given with their gen conditions
        (:func:`hepgen.fastsim.latent_space.encode`: flows exact, VAEs the posterior mean)."""
        self._check_fitted()
        return latent_space.encode(self, objects)

    def decode(
        self, latent: np.ndarray, conditions: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Reco objects (physical units) of latent codes at gen conditions
        (:func:`hepgen.fastsim.latent_space.decode`)."""
        self._check_fitted()
        return latent_space.decode(self, latent, conditions)

    def interpolate(
        self,
        start: Mapping[str, Any],
        end: Mapping[str, Any],
        steps: int = 11,
        path: str = "slerp",
    ) -> dict[str, np.ndarray]:
        """A latent walk from one reco object to another
        (:func:`hepgen.fastsim.latent_space.interpolate`)."""
        self._check_fitted()
        return latent_space.interpolate(self, start, end, steps, path)  # type: ignore[arg-type]

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
        from hepgen.fastsim.assembly import beside, draw_fakes, jagged_records, matched_then_fakes
        from hepgen.io.collections import flatten_collection

        seeds = np.random.SeedSequence(seed).spawn(3)
        flat = flatten_collection(events, self.gen, self.condition_names)
        conds = {k: flat[k] for k in self.condition_names}
        self._check_domain(conds, domain_counts)
        # the fakes need the gen multiplicities only: drawn on a second thread meanwhile
        # (each generator on one thread with its own seed: the same bits as one by one)
        with beside(draw_fakes, self.fakes_, flat.counts, seeds[2]) as fakes_drawn:
            rng = np.random.default_rng(seeds[0])
            keep = (
                (self.efficiency(conds) > rng.random(len(flat))) if len(flat) else np.zeros(0, bool)
            )
            dtypes = self.preprocessor_.dtypes
            reco = (
                self.sample(
                    {k: v[keep] for k, v in conds.items()}, seed=int(seeds[1].generate_state(1)[0])
                )
                if keep.any()
                else {t: np.zeros(0, dtype=dtypes[t]) for t in self.target_names}
            )
            n_fake, fakes = fakes_drawn.result()
        idx_name = self.config.data.index_branch
        columns = {t: np.asarray(reco[t]) for t in self.target_names}
        columns[idx_name] = flat.local_index[keep].astype(np.int32)
        counts = np.bincount(flat.event_index[keep], minlength=flat.n_events)
        if fakes is not None:  # per event: matched objects first, then the fakes
            # both parts already carry the stored dtype (stored_dtypes)
            fakes = {t: fakes[t] for t in self.target_names}
            fakes[idx_name] = np.full(int(n_fake.sum()), -1, np.int32)
            columns, counts = matched_then_fakes(counts, n_fake, columns, fakes)
        return jagged_records(columns, counts)

    # ------------------------------------------------------------------ persistence
    def card(self) -> dict[str, Any]:
        """The content of ``hepgen-model.json`` (everything but the weights)."""
        self._check_fitted()
        cfg = self.config
        training = getattr(self, "training_", None)
        return {
            "format": MODEL_FORMAT,
            "format_version": FASTSIM_FORMAT_VERSION,
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
            "fakes": self.fakes_.card() if self.fakes_ is not None else None,
            "training": training.to_dict() if training is not None else None,
            "data_summary": getattr(self, "summary_", None),
            "provenance": getattr(self, "provenance_", None),
            "notes": getattr(self, "notes_", []),
            "inference": getattr(self, "inference_", None),
        }

    def save(self, directory: str | os.PathLike) -> Path:
        """Write the model directory (JSON + safetensors + xgboost JSON; no pickle).

        Returns
        -------
        Path
            The directory.
        """
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
    def load(
        cls, directory: str | os.PathLike, device: str = "cpu", backend: str = "torch"
    ) -> FastSim:
        """Read a model directory written by :meth:`save` (no code is executed).

        Parameters
        ----------
        directory : path
        device : {"auto", "cpu", "cuda", "cuda:N"}
            Where the generators run.
        backend : {"torch", "onnx"}
            What runs the generators: torch (the safetensors weights), or ONNX Runtime
            (:class:`~hepgen.models.onnx_backend.OnnxGenerator`) over the graphs of an export
            folder (``hepgen export DIR --format onnx -o OUT``; torch is then never imported).
            The onnx backend draws its noise with numpy: for a seed, other samples than the
            torch backend's, from the same distribution.

        Raises
        ------
        InputError
            Missing or corrupt files, a directory of another kind of model (a density
            model), a ``format_version`` this hepgen cannot read, an unknown backend, or
            ``backend="onnx"`` for a directory without an ONNX export.

        Examples
        --------
        >>> sim = FastSim.load("exported_dir", backend="onnx")  # doctest: +SKIP
        """
        backend = check_backend(backend)
        device = resolve_device(device) if backend == "torch" else check_device(device)
        _, card = read_card(directory, FASTSIM_KINDS, user="FastSim.load")
        return cls.from_card(directory, card, device=device, backend=backend)

    @classmethod
    def from_card(
        cls,
        directory: str | os.PathLike,
        card: dict[str, Any],
        device: str = "cpu",
        backend: str = "torch",
    ) -> FastSim:
        """The fast simulation of ``directory`` whose card :func:`hepgen.modeldir.read_card`
        has read and checked (what :func:`hepgen.load_model` calls); ``backend`` as
        :meth:`load`.

        Raises
        ------
        InputError
            Invalid card content, missing or damaged weights or graphs (the file named), or
            ``backend="onnx"`` without an ONNX export in ``directory``.
        """
        backend = check_backend(backend)
        device = resolve_device(device) if backend == "torch" else check_device(device)
        directory = Path(directory)
        path = directory / MODEL_FILE
        manifest = read_export(directory, "onnx") if backend == "onnx" else None
        try:
            config = parse_config(card["config"], source=os.fspath(path))
            sim = cls(config, device=device)
            sim.preprocessor_ = Preprocessor.from_dict(card["preprocessing"])
            fakes = card.get("fakes")
        except KeyError as err:
            raise InputError(f"'{path}': missing key {err}") from None
        kind = config.model.kind

        def generator(name: str) -> Any:
            if manifest is not None:
                return OnnxGenerator.from_export(directory, name, manifest, device=device)
            return model_class(kind).load(directory, device=device, name=name)

        sim.response_ = generator(kind)
        sim.efficiency_ = (
            EfficiencyModel.load(directory, name="efficiency")
            if card.get("efficiency") is not None or sim.has_efficiency_model
            else None
        )
        sim.fakes_ = None
        if fakes:
            sim.fakes_ = Fakes(
                table=np.asarray(fakes["table"]),
                preprocessor=Preprocessor.from_dict(fakes["preprocessing"]),
                model=generator(f"fakes_{kind}"),
                multiplicity=fakes["multiplicity"],
            )
        sim.backend_ = backend
        sim.card_ = card
        sim.notes_ = card.get("notes", [])
        sim.inference_ = card.get("inference")
        if backend == "torch":
            sim.set_inference()
        return sim

    def set_inference(
        self, engine: str = "auto", precision: str | None = None, force: bool = False
    ) -> FastSim:
        """Choose how the flows evaluate (:mod:`hepgen.models.engine`); returns ``self``.

        Parameters
        ----------
        engine : {"auto", "eager", "graph", "compiled"}
            For the response and the fakes flow.
        precision : {"float32", "bfloat16"} or None
            Of the response flow's conditioner matrix products.  ``None``: the configured
            ``model.precision`` when its check after training was accepted (model card,
            ``inference``), else float32.  The fakes flow stays float32 (it is not checked).
        force : bool
            Use a reduced ``precision`` that no accepted check in the model card covers.

        Raises
        ------
        InputError
            ``precision`` reduced without an accepted check and without ``force``, or a
            GAN's response asked for a reduced precision.
        """
        self._check_fitted()
        precision = choose_precision(getattr(self, "inference_", None), precision, force)
        response = self.response_
        if not hasattr(response, "set_inference"):
            if precision != "float32":
                raise InputError(f"precision {precision}: a {self.config.model.kind} has none")
            return self
        fakes = getattr(self.fakes_, "model", None)
        try:
            response.set_inference(engine, precision)
            if hasattr(fakes, "set_inference"):
                fakes.set_inference(engine, "float32")
        except ValueError as err:  # an engine the flow family has not (the graph engine)
            raise InputError(str(err)) from None
        return self
