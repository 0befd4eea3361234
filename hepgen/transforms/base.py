"""The base of every preprocessing step: :class:`Transform`, its registry and shared checks.

A transform is an invertible map of one feature: ``x`` is a 1-D ``float64`` array of shape
``(n,)`` in the feature's units, ``context`` maps condition names to their raw columns (for
``ratio`` and ``difference``).  Its settings and fitted state are plain JSON, so that a fitted
preprocessor is stored without pickle.  Every elementwise transform reports ``log|dy/dx|``, so
that densities can be quoted in physical units.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from hepgen.errors import ConfigError, InputError, did_you_mean
from hepgen.stats import check_weights

__all__ = [
    "DEFAULT_SEED",
    "TRANSFORMS",
    "NotFittedError",
    "Transform",
    "as_1d",
    "check_number",
    "check_numbers",
    "format_number",
    "register_transform",
    "seeded_rng",
]

#: Seed of the generator used for dequantisation noise when no ``rng`` is given, so that
#: repeated calls give identical outputs.
DEFAULT_SEED = 0

#: Registry of transform classes by their ``type`` name.
TRANSFORMS: dict[str, type[Transform]] = {}


class NotFittedError(RuntimeError):
    """A transform, pipeline or preprocessor was used before ``fit`` (a programming error)."""


# ---------------------------------------------------------------------------------------------
# checks shared by the transforms, the sentinel flag and the pipeline
# ---------------------------------------------------------------------------------------------


def as_1d(x: Any, label: str) -> np.ndarray:
    """``x`` as a 1-D float64 array of shape (n,); :class:`InputError` prefixed by ``label``.

    Examples
    --------
    >>> as_1d([1, 2], "feature 'x'")
    array([1., 2.])
    """
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise InputError(f"{label}: expected a 1-D array of shape (n,), got shape {a.shape}")
    return a


def seeded_rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    """A numpy Generator: ``rng`` itself, one seeded with it, or with :data:`DEFAULT_SEED`.

    ``None`` gives the fixed seed (not fresh entropy), so that preprocessing is reproducible
    unless the caller passes its own generator.

    Examples
    --------
    >>> float(seeded_rng(None).random()) == float(seeded_rng(DEFAULT_SEED).random())
    True
    """
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(DEFAULT_SEED if rng is None else rng)


def format_number(v: float) -> str:
    """A number in messages: ``f"{v:g}"``."""
    return f"{v:g}"


def check_number(value: Any, where: str, key: str, *, optional: bool = False) -> float | None:
    """A finite number setting as float (``None`` passes when ``optional``); else ConfigError.

    Parameters
    ----------
    value : Any
        The setting as given.
    where, key : str
        Message prefix (``"feature 'x': transform 'log'"``) and the setting's name.
    optional : bool
        Whether ``None`` is allowed.

    Examples
    --------
    >>> check_number(3, "transform 'log'", "offset")
    3.0
    """
    if value is None and optional:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise ConfigError(f"{where}: key {key!r} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"{where}: key {key!r} must be finite, got {value!r}")
    return value


def check_numbers(value: Any, where: str, key: str, *, min_len: int = 1) -> np.ndarray:
    """A list setting of at least ``min_len`` finite numbers as a float64 array; else ConfigError.

    Examples
    --------
    >>> check_numbers([0, 4, 5], "transform 'onehot'", "categories")
    array([0., 4., 5.])
    """
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (Sequence, np.ndarray)):
        raise ConfigError(f"{where}: key {key!r} must be a list of numbers, got {value!r}")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: key {key!r} must be a list of numbers") from None
    if arr.ndim != 1 or len(arr) < min_len or not np.isfinite(arr).all():
        raise ConfigError(
            f"{where}: key {key!r} must be a list of at least {min_len} finite numbers"
        )
    return arr


# ---------------------------------------------------------------------------------------------
# the base class and its registry
# ---------------------------------------------------------------------------------------------


def register_transform(cls: type[Transform]) -> type[Transform]:
    """Class decorator adding a :class:`Transform` subclass to :data:`TRANSFORMS` by ``type``."""
    if not cls.type:
        raise TypeError(f"{cls.__name__} needs a non-empty class attribute 'type'")
    TRANSFORMS[cls.type] = cls
    return cls


class Transform:
    """Base class of the invertible one-feature preprocessing steps.

    Subclasses set the class attributes ``type`` (registry name), ``params`` (the settings,
    which are also the constructor's keyword arguments) and ``state`` (the fitted attributes),
    and implement ``_fit``, ``forward``, ``inverse`` and ``log_abs_det_jacobian``.  The
    constructor only stores settings; validation happens in :meth:`from_config` /
    :meth:`from_dict` and at the start of :meth:`fit`.

    Attributes
    ----------
    label : str
        Prefix of error messages, e.g. ``"feature 'Jet_pt'"``; set by :class:`FeaturePipeline`.
    """

    type: ClassVar[str] = ""
    params: ClassVar[tuple[str, ...]] = ()
    state: ClassVar[tuple[str, ...]] = ()
    #: One output value per input value (``False`` for ``onehot``).
    elementwise: ClassVar[bool] = True

    def __init__(self) -> None:
        self.label = f"transform {self.type!r}"
        self._fitted = not self.state

    # -- settings and state -------------------------------------------------------------------

    def get_params(self) -> dict[str, Any]:
        """The settings as a plain dict (JSON-ready)."""
        return {k: _jsonable(getattr(self, k)) for k in self.params}

    def get_state(self) -> dict[str, Any]:
        """The fitted state as a plain dict (JSON-ready); ``{}`` when not fitted."""
        if not self._fitted:
            return {}
        return {k: _jsonable(getattr(self, k)) for k in self.state}

    def _validate(self, where: str) -> None:
        """Check and normalise the settings; raise :class:`ConfigError`."""

    def _set_state(self, state: Mapping[str, Any], where: str) -> None:
        for k in self.state:
            setattr(self, k, state[k])
        self._fitted = True

    @property
    def is_fitted(self) -> bool:
        """Whether the transform can be applied (stateless transforms always can)."""
        return self._fitted

    @property
    def n_out(self) -> int:
        """Number of output columns per input value."""
        return 1

    @property
    def context_names(self) -> tuple[str, ...]:
        """Names of the condition columns read from ``context``."""
        return ()

    def _require_fitted(self) -> None:
        if not self._fitted:
            raise NotFittedError(f"{self.label}: transform {self.type!r} is not fitted; call fit()")

    # -- work -----------------------------------------------------------------------------------

    def fit(
        self,
        x: np.ndarray,
        context: Mapping[str, np.ndarray] | None = None,
        weights: np.ndarray | None = None,
    ) -> Transform:
        """Learn the fitted state from one feature.

        Parameters
        ----------
        x : array of shape (n,)
            Values in the feature's units (after the previous steps of its pipeline).
        context : mapping of str to array of shape (n,), optional
            Raw condition columns (for ``ratio`` / ``difference``).
        weights : array of shape (n,), optional
            Per-row weights; negative values (sWeights) are allowed, their sum must be > 0.

        Returns
        -------
        Transform
            ``self``.
        """
        self._validate(self.label)
        x = as_1d(x, self.label)
        w = check_weights(weights, len(x), self.label)
        self._fit(x, context, w)
        self._fitted = True
        return self

    def _fit(self, x: np.ndarray, context: Mapping[str, np.ndarray] | None, w) -> None:
        return None

    def forward(
        self,
        x: np.ndarray,
        context: Mapping[str, np.ndarray] | None = None,
        rng: np.random.Generator | int | None = None,
    ) -> np.ndarray:
        """Map physical values to the transformed space.

        Parameters
        ----------
        x : array of shape (n,)
            Input values.
        context : mapping, optional
            Raw condition columns of shape (n,).
        rng : numpy.random.Generator, int or None
            Randomness for stochastic steps (``dequantize``); ``None`` means a generator seeded
            with :data:`DEFAULT_SEED`, so that the output is deterministic.

        Returns
        -------
        ndarray
            Shape (n,), or (n, k) for ``onehot``; float64.
        """
        raise NotImplementedError

    def inverse(self, y: np.ndarray, context: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Map transformed values back to the input space; shape (n,) (``onehot``: from (n, k))."""
        raise NotImplementedError

    def log_abs_det_jacobian(
        self, x: np.ndarray, context: Mapping[str, np.ndarray] | None = None
    ) -> np.ndarray:
        """``log|dy/dx|`` at ``x`` (input units), shape (n,); 0 for the discrete steps."""
        raise NotImplementedError(f"transform {self.type!r} is not elementwise")

    # -- serialisation ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """``{"type": ..., **settings, **fitted state}`` as plain JSON-ready values."""
        return {"type": self.type, **self.get_params(), **self.get_state()}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], feature: str | None = None) -> Transform:
        """Build an unfitted transform from ``{"type": ..., **settings}`` (a spec's step).

        Raises
        ------
        ConfigError
            Unknown type or key (with suggestions), fitted state given, invalid setting.
        """
        return cls._build(config, feature, allow_state=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], feature: str | None = None) -> Transform:
        """Build a transform from :meth:`to_dict` output, fitted when the state is present."""
        return cls._build(d, feature, allow_state=True)

    @classmethod
    def _build(cls, d: Mapping[str, Any], feature: str | None, allow_state: bool) -> Transform:
        where = f"feature {feature!r}" if feature is not None else "transform"
        if not isinstance(d, Mapping) or "type" not in d:
            raise ConfigError(
                f"{where}: a transform must be a mapping with a key 'type', got {d!r}"
            )
        name = d["type"]
        if not isinstance(name, str) or name not in TRANSFORMS:
            raise ConfigError(
                f"{where}: key 'type': unknown transform type {name!r}; known types are "
                f"{', '.join(repr(t) for t in TRANSFORMS)}{did_you_mean(str(name), TRANSFORMS)}"
            )
        klass = TRANSFORMS[name]
        if cls is not Transform and not issubclass(klass, cls):
            raise ConfigError(f"{where}: expected a {cls.type!r} transform, got {name!r}")
        where = f"{where}: transform {name!r}"
        allowed = list(klass.params) + (list(klass.state) if allow_state else [])
        for key in d:
            if key == "type" or key in allowed:
                continue
            if key in klass.state:
                raise ConfigError(
                    f"{where}: key {key!r} is fitted state, not a setting; it is learned in fit"
                )
            hint = f"; settings are {', '.join(map(repr, allowed))}" if allowed else ""
            raise ConfigError(
                f"{where}: unknown key {key!r}{hint}{did_you_mean(str(key), allowed)}"
            )
        obj = klass(**{k: d[k] for k in klass.params if k in d})
        if feature is not None:
            obj.label = f"feature {feature!r}"
        obj._validate(where)
        present = [k for k in klass.state if k in d]
        if present:
            missing = [k for k in klass.state if k not in d]
            if missing:
                raise ConfigError(f"{where}: incomplete fitted state, missing {missing}")
            obj._set_state({k: d[k] for k in klass.state}, where)
        return obj

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        fitted = "" if self._fitted else ", unfitted"
        return f"{type(self).__name__}({args}{fitted})"


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, tuple):
        return list(v)
    return v
