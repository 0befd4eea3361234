"""The model protocol that every generator of hepgen answers, and its torch implementation.

The command line, :class:`~hepgen.fastsim.FastSim` and the validation never ask which kind of
model they hold: they call ``fit``, ``sample``, ``log_prob`` (flows; models without a
likelihood raise :class:`NoLikelihoodError`, and :attr:`GenerativeModel.has_likelihood` says
which beforehand), ``save``/``load`` (JSON metadata + safetensors weights, no code executed)
and ``describe`` (the architecture summary that model cards show).  :class:`TorchModel` is that
protocol for one torch module trained by :func:`hepgen.training.train`: a kind of model
supplies only its network, objective, checkpoint metric and file functions.  Everything here
works on model-space float32 matrices (the output of
:class:`~hepgen.preprocessing.Preprocessor`); physical units and ROOT files live above.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from hepgen.devices import resolve_device
from hepgen.errors import HepgenError, InputError
from hepgen.models.latent import DEFAULT_LATENT, LatentOptions
from hepgen.models.selection import check_selection, selection_metric

__all__ = [
    "GenerativeModel",
    "NoEncoderError",
    "NoLikelihoodError",
    "TorchModel",
    "check_model_inputs",
    "map_rows",
    "sample_module",
    "training_arrays",
]

_M = TypeVar("_M", bound="TorchModel")


class NoLikelihoodError(HepgenError, TypeError):
    """Raised by ``log_prob`` of models without a tractable likelihood (GANs, VAEs)."""


class NoEncoderError(HepgenError, TypeError):
    """Raised by ``encode`` of models that cannot map an event to its latent code (GANs)."""


def check_model_inputs(
    conditions: Any,
    targets: Any = None,
    n_conditions: int | None = None,
    n_targets: int | None = None,
    where: str = "model input",
) -> tuple[np.ndarray, np.ndarray | None]:
    """Validate model-space matrices: float32 C-contiguous ``(n, C)`` and ``(n, D)``, finite.

    Parameters
    ----------
    conditions : array of shape (n, C)
    targets : array of shape (n, D) or None
    n_conditions, n_targets : int or None
        Expected widths (the model's), when known.
    where : str
        Prefix of error messages.

    Returns
    -------
    conditions, targets : np.ndarray
        float32 copies/views.

    Raises
    ------
    InputError
        Wrong shape or width, or NaN/inf values (with the count and the first bad column).
    """
    c = np.ascontiguousarray(conditions, dtype=np.float32)
    if c.ndim != 2:
        raise InputError(f"{where}: conditions must have shape (n, n_conditions), got {c.shape}")
    if n_conditions is not None and c.shape[1] != n_conditions:
        raise InputError(
            f"{where}: conditions have {c.shape[1]} columns, the model expects {n_conditions}"
        )
    _finite(c, "conditions", where)
    x = None
    if targets is not None:
        x = np.ascontiguousarray(targets, dtype=np.float32)
        if x.ndim != 2 or x.shape[0] != c.shape[0]:
            raise InputError(
                f"{where}: targets must have shape ({c.shape[0]}, n_targets), got {x.shape}"
            )
        if n_targets is not None and x.shape[1] != n_targets:
            raise InputError(
                f"{where}: targets have {x.shape[1]} columns, the model expects {n_targets}"
            )
        _finite(x, "targets", where)
    return c, x


def _finite(a: np.ndarray, what: str, where: str) -> None:
    bad = ~np.isfinite(a)
    if bad.any():
        col = int(np.flatnonzero(bad.any(axis=0))[0])
        raise InputError(
            f"{where}: {int(bad.any(axis=1).sum())} rows of the {what} have NaN or infinite "
            f"values (first in column {col})"
        )


def training_arrays(
    targets: Any,
    conditions: Any,
    weights: Any = None,
    validation: Mapping[str, Any] | None = None,
    where: str = "fit",
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
    """The training loop's ``data`` and ``val`` dicts (``"x"``, ``"c"``, optional ``"w"``).

    Parameters
    ----------
    targets, conditions : array of shape (n, D), (n, C)
    weights : array of shape (n,) or None
        Event weights (float32; negative sWeights allowed).
    validation : mapping or None
        ``{"x": (m, D), "c": (m, C)}`` and optionally ``"w"`` (m,); checked against the
        training widths.
    where : str
        Prefix of error messages (e.g. ``"flow fit"``).

    Raises
    ------
    InputError
        As :func:`check_model_inputs`, for the training or the validation matrices.
    """
    c, x = check_model_inputs(conditions, targets, where=where)
    assert x is not None
    data: dict[str, np.ndarray] = {"x": x, "c": c}
    if weights is not None:
        data["w"] = np.asarray(weights, dtype=np.float32)
    val = None
    if validation is not None:
        vc, vx = check_model_inputs(
            validation["c"], validation["x"], c.shape[1], x.shape[1], where=f"{where}, validation"
        )
        assert vx is not None
        val = {"x": vx, "c": vc}
        if validation.get("w") is not None:
            val["w"] = np.asarray(validation["w"], dtype=np.float32)
    return data, val


def map_rows(
    module: Any,
    fn: Callable[..., Any],
    arrays: tuple[np.ndarray, ...],
    batch_size: int,
    width: int,
    dtype: Any = np.float32,
) -> np.ndarray:
    """``fn(*tensors)`` batch by batch over the rows of ``arrays`` (numpy, same length), on
    the module's device, in eval mode and inference mode; the results concatenated.

    Returns
    -------
    np.ndarray of shape (n, width) (or (n,) for ``width=0``), of ``dtype``
    """
    import torch

    from hepgen.models.modules import module_device

    device = module_device(module)
    n = arrays[0].shape[0]
    out = []
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode():
            for start in range(0, n, batch_size):
                batch = (torch.from_numpy(a[start : start + batch_size]).to(device) for a in arrays)
                out.append(fn(*batch).cpu().numpy().astype(dtype, copy=False))
    finally:
        module.train(was_training)
    if not out:
        return np.empty((0, width) if width else (0,), dtype=dtype)
    return np.concatenate(out)


def sample_module(
    module: Any,
    conditions: np.ndarray,
    seed: int | None,
    batch_size: int,
    sampler: Callable[[Any, Any], Any] | None = None,
    latent: LatentOptions = DEFAULT_LATENT,
) -> np.ndarray:
    """Draw one sample per row of ``conditions`` from a torch module with
    ``sample(c, generator=..., latent=...)`` and ``n_features``, batch by batch in eval mode.

    ``sampler(c, generator)`` replaces ``module.sample`` when given (a flow evaluated by its
    :class:`~hepgen.models.engine.FlowEngine`; it applies the latent options itself);
    ``latent`` is the temperature and truncation of the noise (:mod:`hepgen.models.latent`).

    A seeded :class:`torch.Generator` on the module's device makes the draws reproducible for
    the same seed and batch size; ``seed=None`` draws a fresh seed.  The module's train/eval
    state is restored afterwards.

    Returns
    -------
    np.ndarray of shape (n, n_features), float32
    """
    import torch

    from hepgen.models.modules import module_device

    device = module_device(module)
    generator = torch.Generator(device=device)
    # a fresh seed from the OS, not torch.seed(), which would reseed the caller's global RNG
    fresh = int(np.random.SeedSequence().entropy % 2**63)
    generator.manual_seed(int(seed) if seed is not None else fresh)
    draw = sampler or (lambda c, g: module.sample(c, generator=g, latent=latent))
    out = []
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode():
            for start in range(0, conditions.shape[0], batch_size):
                c = torch.from_numpy(conditions[start : start + batch_size]).to(device)
                out.append(draw(c, generator).cpu().numpy())
    finally:
        module.train(was_training)
    if not out:
        return np.empty((0, module.n_features), dtype=np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)


class GenerativeModel(abc.ABC):
    """Base class of hepgen's conditional generators (see the module docstring).

    Subclasses set :attr:`kind` (the ``model.kind`` of the config and of ``hepgen-model.json``)
    and implement the abstract methods.  Constructors only store settings (scikit-learn style).

    Parameters
    ----------
    settings : Any
        The kind's architecture settings (``None``: its defaults).
    seed : int
        Seed of the initialisation (and default seed of the training loop).
    device : {"auto", "cpu", "cuda", "cuda:N"}
        Where the model runs (:mod:`hepgen.devices`); kept as requested, resolved on use.
    """

    kind: ClassVar[str] = ""
    #: Whether :meth:`log_prob` gives a density (flows) or raises :class:`NoLikelihoodError`
    #: (GANs); callers that need a likelihood ask this, never the class.
    has_likelihood: ClassVar[bool] = False

    def __init__(self, settings: Any = None, seed: int = 0, device: str = "auto") -> None:
        self.settings = settings
        self.seed = seed
        self.device = device

    @abc.abstractmethod
    def fit(
        self,
        targets: np.ndarray,
        conditions: np.ndarray,
        weights: np.ndarray | None = None,
        validation: Mapping[str, np.ndarray] | None = None,
        **training: Any,
    ) -> Any:
        """Learn p(targets | conditions); returns the training result (history)."""

    @abc.abstractmethod
    def sample(
        self,
        conditions: np.ndarray,
        seed: int | None = None,
        batch_size: int | None = None,
        *,
        temperature: float | None = None,
        truncation: float | None = None,
    ) -> np.ndarray:
        """One draw per row of ``conditions`` (n, C) -> targets (n, D), float32; the noise
        at ``temperature`` (default 1) and truncated at ``truncation`` (default: not)
        (:class:`~hepgen.models.latent.LatentOptions`)."""

    def log_prob(self, targets: np.ndarray, conditions: np.ndarray) -> np.ndarray:
        """Log-density (n,) in model space; models without a likelihood raise."""
        raise NoLikelihoodError(
            f"a '{self.kind}' model has no tractable likelihood: log_prob needs a flow "
            "(model.kind: flow)"
        )

    #: Whether :meth:`fit` runs under DistributedDataParallel (torchrun): one optimizer and
    #: one per-event loss (flows); adversarial training (two optimizers) runs in one process.
    distributed_training: ClassVar[bool] = False
    #: Whether :meth:`encode` maps events to latent codes (flows: exactly; VAEs: the
    #: posterior mean) or raises :class:`NoEncoderError` (GANs).
    has_encoder: ClassVar[bool] = False

    def encode(self, targets: np.ndarray, conditions: np.ndarray) -> np.ndarray:
        """Latent codes (n, latent size) of events ``targets`` (n, D) at ``conditions``
        (n, C), model space; models without an encoder raise :class:`NoEncoderError`."""
        raise NoEncoderError(
            f"a '{self.kind}' model has no encoder: latent codes of given events need a flow "
            "(exact) or a VAE (the posterior mean)"
        )

    def decode(self, latent: np.ndarray, conditions: np.ndarray) -> np.ndarray:
        """Events (n, D) of latent codes (n, latent size) at ``conditions`` (n, C), model
        space: the inverse of :meth:`encode` (a VAE: the decoder's mean)."""
        raise NoEncoderError(f"a '{self.kind}' model has no encoder to decode with")

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """Architecture summary for model cards: ``settings`` (a dict), ``n_parameters``, sizes."""

    @abc.abstractmethod
    def save(self, directory: str | Path, name: str | None = None) -> list[Path]:
        """Write ``{name}.safetensors`` (weights) and ``{name}.json`` (metadata) into
        ``directory``; ``name`` defaults to the model's kind."""

    @classmethod
    @abc.abstractmethod
    def load(
        cls, directory: str | Path, device: str = "cpu", name: str | None = None
    ) -> GenerativeModel:
        """Read a model written by :meth:`save` under ``name`` (no code is executed)."""


class TorchModel(GenerativeModel):
    """The model protocol around one torch module: fit, sample, describe, save and load.

    A kind of model subclasses this and supplies what differs between kinds: the network
    (:meth:`_build`), the training objective (:meth:`_objective`), the default settings
    (:meth:`_default_settings`, :meth:`_default_training`), optionally the checkpoint metric
    (:meth:`_metric_fn`, :meth:`_metric_cost`), and the weights files (:meth:`_write`,
    :meth:`_read`).  The module must have ``sample(c, generator=...)``, ``describe()``,
    ``n_features``, ``n_conditions``, ``settings`` and ``seed``.

    ``fit`` trains with the shared loop of :mod:`hepgen.training` and keeps the checkpoint
    chosen by ``selection`` (:mod:`hepgen.models.selection`); ``sample`` draws batch by batch
    with a seeded ``torch.Generator`` (reproducible, independent of the global RNG); ``load``
    restores the settings and the seed that were saved, and keeps the device as requested.

    Attributes
    ----------
    module_ : torch.nn.Module
        The trained or loaded network (after :meth:`fit` or :meth:`load`).
    n_features_, n_conditions_ : int
        Widths D of the targets and C of the conditions.
    training_ : TrainingResult
        The training history (after :meth:`fit`).
    """

    #: Rows per network pass in :meth:`sample` (and in the checkpoint metric's draws).
    default_batch_size: ClassVar[int] = 8192

    # ------------------------------------------------------------------ what a kind supplies
    @classmethod
    @abc.abstractmethod
    def _default_settings(cls) -> Any:
        """The architecture settings used when the constructor got ``settings=None``."""

    @abc.abstractmethod
    def _build(self, n_features: int, n_conditions: int, settings: Any) -> Any:
        """A new, seeded torch module for these widths (it checks the settings' type)."""

    @abc.abstractmethod
    def _objective(self, settings: Any) -> Any:
        """The :class:`~hepgen.training.Objective` that trains the module."""

    def _default_training(self, settings: Any) -> Any:
        """Loop settings when ``fit`` got none: the defaults with this model's seed, device."""
        from hepgen.training import TrainingSettings

        return TrainingSettings(seed=self.seed, device=self.device)

    def _default_learning_rate(self, settings: Any) -> float:
        """The learning rate of ``training.learning_rate: null`` for these settings."""
        return 1e-3

    def _metric_fn(
        self, val: Mapping[str, np.ndarray], selection: str, seed: int
    ) -> Callable[[Any], float | Mapping[str, float | None] | None]:
        """The checkpoint metric of a module: ``selection`` on one draw per validation row."""
        batch_size = self.default_batch_size

        def metric(module: Any) -> float | None:
            return selection_metric(
                selection,
                lambda cc, s: sample_module(module, cc, s, batch_size),
                val["x"],
                val["c"],
                seed=seed,
            )

        return metric

    def _metric_cost(
        self, selection: str, n_validation: int, n_train: int, settings: Any
    ) -> float | None:
        """One evaluation of the metric in training epochs (``None``: not estimated)."""
        return None

    @staticmethod
    @abc.abstractmethod
    def _write(module: Any, directory: str | Path, name: str) -> list[Path]:
        """Write the module's weights and metadata files; returns them."""

    @staticmethod
    @abc.abstractmethod
    def _read(directory: str | Path, name: str, device: str) -> Any:
        """Rebuild a module written by :meth:`_write`, in evaluation mode on ``device``."""

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        targets: np.ndarray,
        conditions: np.ndarray,
        weights: np.ndarray | None = None,
        validation: Mapping[str, np.ndarray] | None = None,
        *,
        training: Any = None,
        selection: str = "ks",
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
        quiet: bool = False,
    ) -> Any:
        """Train the module; returns the :class:`~hepgen.training.TrainingResult`.

        Parameters
        ----------
        targets, conditions : np.ndarray
            Model-space matrices (n, D) and (n, C).
        weights : np.ndarray or None
            Event weights (n,), negative allowed (mean > 0).
        validation : mapping or None
            ``{"x": (m, D), "c": (m, C)}`` and optionally ``"w"``: validation loss, early
            stopping and the checkpoint choice.
        training : TrainingSettings or None
            Loop settings (default: the kind's defaults with this model's seed and device).
        selection : {"ks", "c2st", "loss"}
            How the final checkpoint is chosen (:mod:`hepgen.models.selection`): a metric of
            one draw per validation condition (recorded in each epoch's history as
            ``metric``), or the validation loss.  The metrics need validation data.
        checkpoint_dir : path or None
            Where the loop checkpoints each epoch (``resume`` continues from there).
        resume : bool
            Continue an interrupted run from ``checkpoint_dir``.
        quiet : bool
            Silence the progress bar.

        Raises
        ------
        InputError
            Bad matrices (shape, width, NaN) or an unknown ``selection``.
        TypeError
            Settings of another kind's class.
        """
        from hepgen.training import train

        data, val = training_arrays(targets, conditions, weights, validation, f"{self.kind} fit")
        x, c = data["x"], data["c"]
        check_selection(selection)
        settings = self.settings if self.settings is not None else self._default_settings()
        module = self._build(x.shape[1], c.shape[1], settings)
        if training is None:
            training = self._default_training(settings)
        if training.learning_rate is None:
            training = training.replace(learning_rate=self._default_learning_rate(settings))
        self.module_ = module
        self.n_features_, self.n_conditions_ = x.shape[1], c.shape[1]
        metric = cost = None
        if val is not None and selection != "loss":
            metric = self._metric_fn(val, selection, training.seed)
            cost = self._metric_cost(selection, val["x"].shape[0], x.shape[0], settings)
        self.training_ = train(
            module,
            None,
            data,
            val,
            training,
            checkpoint_dir=checkpoint_dir,
            resume=resume,
            metric_fn=metric,
            quiet=quiet,
            objective=self._objective(settings),
            metric_cost=cost,
        )
        return self.training_

    # ------------------------------------------------------------------ inference
    def _check_fitted(self) -> None:
        if not hasattr(self, "module_"):
            raise RuntimeError(f"{type(self).__name__}: call fit() or load() first")

    def sample(
        self,
        conditions: np.ndarray,
        seed: int | None = None,
        batch_size: int | None = None,
        *,
        temperature: float | None = None,
        truncation: float | None = None,
    ) -> np.ndarray:
        """One draw per row of ``conditions`` (n, C): targets (n, D), float32, model space.

        A seeded :class:`torch.Generator` on the module's device draws the noise batch after
        batch: the same seed and batch size give the same samples; ``batch_size`` defaults
        to :attr:`default_batch_size`.  ``temperature`` and ``truncation`` change how the
        noise is drawn (:class:`~hepgen.models.latent.LatentOptions`; default: as trained).

        Raises
        ------
        InputError
            Bad conditions, or a temperature or truncation that is not positive and finite.
        """
        self._check_fitted()
        latent = LatentOptions.of(temperature, truncation)
        c, _ = check_model_inputs(
            conditions, n_conditions=self.n_conditions_, where=f"{self.kind} sample"
        )
        batch = self.default_batch_size if batch_size is None else batch_size
        return sample_module(self.module_, c, seed, batch, latent=latent)

    # ------------------------------------------------------------------ persistence
    def describe(self) -> dict[str, Any]:
        """Architecture summary for model cards: sizes, settings (a dict), number of
        parameters (the module's ``describe()``)."""
        self._check_fitted()
        return self.module_.describe()

    def save(self, directory: str | Path, name: str | None = None) -> list[Path]:
        """Write ``{name}.safetensors`` and ``{name}.json`` into ``directory`` (created when
        missing); ``name`` defaults to the kind.  Returns ``[weights, metadata]``."""
        self._check_fitted()
        return self._write(self.module_, directory, self.kind if name is None else name)

    @classmethod
    def load(
        cls: type[_M], directory: str | Path, device: str = "cpu", name: str | None = None
    ) -> _M:
        """Read a model written by :meth:`save` (safetensors + JSON; no code executed).

        Parameters
        ----------
        directory : path
        device : {"auto", "cpu", "cuda", "cuda:N"}
            Where the module runs; kept as :attr:`device` as requested.
        name : str or None
            File stem given to :meth:`save` (default: the kind).

        Returns
        -------
        TorchModel
            With the saved settings and seed.

        Raises
        ------
        InputError
            A missing, corrupt or mismatched file (the file named), or an absent GPU.
        """
        module = cls._read(directory, cls.kind if name is None else name, resolve_device(device))
        model = cls(settings=module.settings, seed=module.seed, device=device)
        model.module_ = module
        model.n_features_, model.n_conditions_ = module.n_features, module.n_conditions
        return model
