"""The model protocol: what every generator of hepgen answers, flows and GANs alike.

The command line, the training loop, :class:`~hepgen.fastsim.FastSim` and the validation never
ask which kind of model they hold; they call (DESIGN.md, "The model protocol"):

``fit(targets, conditions, weights=None, validation=None, ...)``
    Learn p(targets | conditions) from model-space matrices (float32, the output of
    :class:`~hepgen.preprocessing.Preprocessor`).
``sample(conditions, seed=None, batch_size=...)``
    One draw per row of ``conditions``; oversampling repeats rows.
``log_prob(targets, conditions)``
    Log-density in model space (flows); models without a likelihood raise
    :class:`NoLikelihoodError`.
``save(directory, name)`` / ``load(directory, device, name)``
    JSON metadata + safetensors weights; loading never executes code.
``describe()``
    The architecture summary that model cards show.

Everything here works on numpy arrays in model space; physical units, ROOT files and feature
names live in the layers above.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from hepgen.errors import HepgenError, InputError

__all__ = [
    "GenerativeModel",
    "NoLikelihoodError",
    "check_model_inputs",
    "sample_module",
    "training_arrays",
]


class NoLikelihoodError(HepgenError, TypeError):
    """Raised by ``log_prob`` of models without a tractable likelihood (GANs)."""


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


def sample_module(
    module: Any, conditions: np.ndarray, seed: int | None, batch_size: int
) -> np.ndarray:
    """Draw one sample per row of ``conditions`` from a torch module with
    ``sample(c, generator=...)`` and ``n_features``, batch by batch in eval mode.

    A seeded :class:`torch.Generator` on the module's device makes the draws reproducible for
    the same seed and batch size; ``seed=None`` draws a fresh seed.  The module's train/eval
    state is restored afterwards.

    Returns
    -------
    np.ndarray of shape (n, n_features), float32
    """
    import torch

    from hepgen.models.settings import module_device

    device = module_device(module)
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed) if seed is not None else int(torch.seed() % 2**63))
    out = []
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode():
            for start in range(0, conditions.shape[0], batch_size):
                c = torch.from_numpy(conditions[start : start + batch_size]).to(device)
                out.append(module.sample(c, generator=generator).cpu().numpy())
    finally:
        module.train(was_training)
    if not out:
        return np.empty((0, module.n_features), dtype=np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)


class GenerativeModel(abc.ABC):
    """Base class of hepgen's conditional generators (see the module docstring).

    Subclasses set :attr:`kind` (the ``model.kind`` of the config and of ``hepgen-model.json``)
    and implement the abstract methods.  Constructors only store settings (scikit-learn style).
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
        self, conditions: np.ndarray, seed: int | None = None, batch_size: int = 8192
    ) -> np.ndarray:
        """One draw per row of ``conditions`` (n, C) -> targets (n, D), float32."""

    def log_prob(self, targets: np.ndarray, conditions: np.ndarray) -> np.ndarray:
        """Log-density (n,) in model space; models without a likelihood raise."""
        raise NoLikelihoodError(
            f"a '{self.kind}' model has no tractable likelihood: log_prob needs a flow "
            "(model.kind: flow)"
        )

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """Architecture summary for model cards: ``settings`` (a dict), ``n_parameters``, sizes."""

    @abc.abstractmethod
    def save(self, directory: str | Path, name: str = "") -> list[Path]:
        """Write ``{name}.safetensors`` (weights) and ``{name}.json`` (metadata) into
        ``directory``; ``name`` defaults to the model's kind."""

    @classmethod
    @abc.abstractmethod
    def load(cls, directory: str | Path, device: str = "cpu", name: str = "") -> GenerativeModel:
        """Read a model written by :meth:`save` under ``name`` (no code is executed)."""
