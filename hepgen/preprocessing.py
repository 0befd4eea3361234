"""Fitted, invertible, JSON-serialisable preprocessing: raw physics columns <-> model matrices.

A :class:`Preprocessor` is built from a :class:`~hepgen.features.FeatureSchema`.  ``fit`` learns
one :class:`FeaturePipeline` per feature (a chain of elementwise :class:`Transform` steps, see
the default pipelines in :mod:`hepgen.features`); afterwards it maps the raw condition and target
columns to the standardised ``float32`` matrices that flows and GANs train on, and maps generated
matrices back to physical columns, with the original integer dtypes restored.

Conventions
-----------
* A transform works on one feature: ``x`` is a 1-D ``float64`` array of shape ``(n,)`` in the
  feature's physical units; ``context`` maps condition names to their *raw* columns (needed by
  ``ratio`` and ``difference``).  All arithmetic is in ``float64``; only the matrices handed to
  the models are ``float32``.
* Every elementwise transform reports ``log|dy/dx|`` so that densities can be quoted in
  physical units: ``log p(x | c) = log p_z(z | c) + sum over steps of log|dy/dx|``.  For
  discrete features (``dequantize``, ``index``) the density is that of the dequantised variable,
  i.e. per unit of the integer, approximately the probability of the value.
* Everything fitted is stored as plain JSON (no pickle, no NaN); :meth:`Preprocessor.save` writes
  atomically.

Transform types (the ``type`` key of a transform's dict)
--------------------------------------------------------
``log``, ``logit``, ``ratio``, ``difference``, ``standardize``, ``quantile_gaussian``,
``dequantize``, ``onehot``, ``index``; see :data:`TRANSFORMS` and :func:`register_transform`.

Sentinel values (point masses)
------------------------------
Real ntuples store defaults (``Jet_btagDeepFlavB = -3000`` in the 2015 CMS open data, ``-1`` or
``-999`` where a tagger did not run, exact zeros).  Smearing such a value into a continuum is
wrong, and a flow cannot model a delta function, so a feature with ``FeatureSpec.sentinels``
models each sentinel as a discrete *flag* beside the continuous part, and the inverse restores
the exact stored value.

Design: the flag is a :class:`SentinelFlag` held by the feature's :class:`FeaturePipeline`,
beside its chain of transforms, not a :class:`Transform` step.  A step maps each value to a
value; a point mass instead splits the rows: the chain must be fitted and applied on the rows
without a sentinel only (``logit`` would reject ``-1`` outside [0, 1]; ``standardize`` would be
ruined by ``-3000``), and the output gains a column.  Keeping that in one place leaves every
transform, and every pipeline without sentinels, exactly as before.

* Columns: ``"name:sentinel"`` (the flag) first, then ``"name"`` (the continuous part).
* Flag: category 0 for an ordinary value, ``k`` for the k-th sentinel of the spec, encoded like
  an integer feature by ``dequantize`` + ``standardize``.  Targets get the uniform noise (a
  density a flow can model; ``rng`` as for the other dequantised targets), conditions none
  (one standardised column holding the exact category, like an integer condition; chosen over
  one 0/1 indicator per sentinel so that a feature has two columns whatever its role).  The
  inverse rounds and clips to the categories seen in ``fit``.
* A value is the sentinel ``s`` when ``|x - s| <= SENTINEL_RTOL * |s|`` (1e-6; exact for
  ``s = 0``), which recognises a sentinel stored in float32 (``float32(-999.9)``).
* Continuous part: fitted on the rows without a sentinel, with their weights.  On sentinel rows
  the column holds a filler: ``N(0, 1)`` noise from ``rng`` for targets (in the final,
  standardised space: the model learns it as independent noise; the inverse ignores it), 0 for
  conditions.
* Inverse: a row whose flag rounds to ``k >= 1`` gets exactly ``s_k`` as the raw column's dtype
  stored it (recorded in ``fit``: a float32 ``-3000`` or ``-999.9`` casts back bit-exactly);
  the others the chain's inverse.
* Only sentinels in the fit data (the real file above): the chain cannot be fitted; ``fit``
  warns, ``forward`` fills the continuous column (and rejects ordinary values), and ``inverse``
  gives a sentinel on every row, the most frequent one where the flag says "ordinary".  No
  sentinel in the fit data: the flag is constant 0 (with a warning), all else as without
  sentinels.
* Jacobian: the flag's ``standardize`` term on every row (as for integer targets: the density
  per unit of the category, about its probability), plus the chain's term on the ordinary rows.
  Sentinel rows get nothing for the continuous column: a point mass has a probability, not a
  density in ``x``, and the filler's density ``p_z`` is a nuisance factor, constant in
  expectation (the model should learn it as an independent ``N(0, 1)``).
* Serialisation: the preprocessor JSON (``format_version`` 2) stores such a feature's pipeline
  as ``{"transforms": [...], "sentinel": {"values", "fractions", "continuous", "flag"}}``
  instead of the list of transforms; files without sentinels keep ``format_version`` 1.

References
----------
L. Theis, A. van den Oord, M. Bethge, "A note on the evaluation of generative models",
ICLR 2016, arXiv:1511.01844 (dequantisation of discrete data).
C. Krause, D. Shih, "CaloFlow: Fast and Accurate Generation of Calorimeter Showers with
Normalizing Flows", arXiv:2106.05285 (logit preprocessing of bounded data).
A. Maevskiy et al., "Fast Data-Driven Simulation of Cherenkov Detectors Using Generative
Adversarial Networks", arXiv:1905.11825 (quantile transformation to a Gaussian).

Example
-------
>>> import numpy as np
>>> from hepgen.features import SENTINEL_RTOL, FeatureSchema, FeatureSpec
>>> from hepgen.preprocessing import Preprocessor
>>> rng = np.random.default_rng(1)
>>> gen_pt = 20 + rng.exponential(30, 1000)
>>> data = {"GenJet_pt": gen_pt, "Jet_pt": gen_pt * rng.normal(1, 0.1, 1000)}
>>> schema = FeatureSchema([FeatureSpec("GenJet_pt", "condition", "positive"),
...                         FeatureSpec("Jet_pt", "target", "positive", relative_to="GenJet_pt")])
>>> pre = Preprocessor(schema).fit(data)
>>> z = pre.transform_targets(data)
>>> z.dtype, z.shape
(dtype('float32'), (1000, 1))
>>> back = pre.inverse_targets(z, data)
>>> bool(np.allclose(back["Jet_pt"], data["Jet_pt"], rtol=1e-6))
True
"""

from __future__ import annotations

import copy
import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from scipy import special

from hepgen._version import __version__
from hepgen.errors import ConfigError, InputError, did_you_mean
from hepgen.features import SENTINEL_RTOL, FeatureSchema, FeatureSpec
from hepgen.utils import atomic_write_text, check_weights

__all__ = [
    "DEFAULT_SEED",
    "TRANSFORMS",
    "Dequantize",
    "Difference",
    "FeaturePipeline",
    "Index",
    "Log",
    "Logit",
    "NotFittedError",
    "OneHot",
    "Preprocessor",
    "QuantileGaussian",
    "Ratio",
    "SentinelFlag",
    "Standardize",
    "Transform",
    "default_transforms",
    "register_transform",
    "weighted_quantile",
]

#: Seed of the generator used for dequantisation noise when no ``rng`` is given, so that
#: repeated calls give identical outputs.
DEFAULT_SEED = 0

#: Registry of transform classes by their ``type`` name.
TRANSFORMS: dict[str, type[Transform]] = {}

_FORMAT = "hepgen.preprocessor"
_FORMAT_VERSION = 2
_TWO_PI = 2.0 * np.pi


class NotFittedError(RuntimeError):
    """A transform, pipeline or preprocessor was used before ``fit`` (a programming error)."""


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------


def _as_1d(x: Any, label: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 1:
        raise InputError(f"{label}: expected a 1-D array of shape (n,), got shape {a.shape}")
    return a


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(DEFAULT_SEED if rng is None else rng)


def _fmt(v: float) -> str:
    return f"{v:g}"


def _wrap(a: np.ndarray) -> np.ndarray:
    """Wrap angles (rad) into [-pi, pi)."""
    # floor() rather than np.mod: 5x faster, and values already in range come back unchanged.
    turns = a + np.pi
    turns /= _TWO_PI
    np.floor(turns, out=turns)
    turns *= _TWO_PI
    r = a - turns
    # Rounding can leave a value a hair outside [-pi, pi).
    r[r >= np.pi] -= _TWO_PI
    r[r < -np.pi] += _TWO_PI
    return r


def _wrap_outside(a: np.ndarray) -> np.ndarray:
    """Wrap only the values outside [-pi, pi), leaving the others bit-identical."""
    out = (a < -np.pi) | (a >= np.pi)
    if out.any():
        a = a.copy()
        a[out] = _wrap(a[out])
    return a


def _check_number(value: Any, where: str, key: str, *, optional: bool = False) -> float | None:
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


def _check_numbers(value: Any, where: str, key: str, *, min_len: int = 1) -> np.ndarray:
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


def weighted_quantile(
    x: np.ndarray, q: float | np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """Weighted quantiles with midpoint (Hazen) plotting positions; negative weights allowed.

    Without weights this equals ``numpy.quantile(x, q, method="hazen")``.  With weights the
    sorted value ``x_i`` sits at the cumulative probability ``(C_{i-1} + C_i) / 2``, where ``C``
    is the cumulative weight divided by the total; quantiles interpolate linearly between those
    points.  Rows whose weight adds no probability (zero, or negative sWeights, see below)
    are left out of the interpolation, so a zero weight is the same as removing the row.

    Parameters
    ----------
    x : array of shape (n,)
        Values, any units.
    q : float or array
        Probabilities in [0, 1]; below the first / above the last plotting position the
        smallest / largest value is returned.
    weights : array of shape (n,) or None
        Per-row weights (e.g. sWeights); their sum must be positive.

    Returns
    -------
    ndarray
        Quantiles, shape of ``q``, units of ``x``.

    Notes
    -----
    Written here because numpy's weighted quantiles are limited (only
    ``method="inverted_cdf"``, no interpolation, no negative weights).

    Example
    -------
    >>> float(weighted_quantile(np.array([1.0, 2.0, 3.0]), 0.5, np.array([1.0, 0.0, 1.0])))
    2.0
    """
    x = _as_1d(x, "weighted_quantile")
    w = check_weights(weights, len(x), "weighted_quantile")
    if len(x) == 0:
        raise InputError("weighted_quantile: no values")
    xs, probs = _plotting_positions(x, w)
    return np.interp(q, probs, xs)


def _plotting_positions(x: np.ndarray, w: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Sorted values and their midpoint cumulative probabilities, both strictly inside (0, 1)."""
    if w is None:
        xs = np.sort(x)
        n = len(xs)
        return xs, (np.arange(n, dtype=np.float64) + 0.5) / n
    order = np.argsort(x, kind="stable")
    xs = x[order]
    ws = w[order]
    total = float(ws.sum())
    # Negative sWeights make the running cumulative weight non-monotone (and it may dip below 0
    # or overshoot the total), which is not a CDF.  We clip the cumulative sum into [0, total]
    # and take its running maximum: a negative weight only cancels positive weight further down
    # the same tail, the CDF stays flat where the net weight is negative instead of decreasing.
    # This is the usual practical choice; the result is exact whenever all weights are >= 0.
    cum = np.maximum.accumulate(np.clip(np.cumsum(ws), 0.0, total))
    prev = np.empty_like(cum)
    prev[0] = 0.0
    prev[1:] = cum[:-1]
    keep = cum > prev  # rows that carry probability; others would distort the interpolation
    probs = 0.5 * (prev[keep] + cum[keep]) / total
    return xs[keep], probs


# ---------------------------------------------------------------------------------------------
# transforms
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
        x = _as_1d(x, self.label)
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


def _context_column(
    context: Mapping[str, np.ndarray] | None, name: str, n: int, label: str, step: str
) -> np.ndarray:
    if context is None or name not in context:
        keys = list(context) if context is not None else []
        raise InputError(
            f"{label}: step {step!r} needs the condition {name!r}, which is not in the "
            f"data{did_you_mean(name, keys)}"
        )
    c = np.asarray(context[name], dtype=np.float64)
    if c.shape != (n,):
        raise InputError(f"{label}: condition {name!r} has shape {c.shape}, expected ({n},)")
    return c


@register_transform
class Log(Transform):
    """``y = log(x + offset)`` for positive quantities (pt, energy, mass, responses).

    Parameters
    ----------
    offset : float
        Added before the logarithm (units of ``x``); 0 by default.

    Raises
    ------
    InputError
        When some ``x + offset <= 0`` (the message gives the count).

    Example
    -------
    >>> x = np.array([1.0, 10.0])
    >>> t = Log().fit(x)
    >>> t.forward(x).round(4).tolist(), bool(np.allclose(t.inverse(t.forward(x)), x))
    ([0.0, 2.3026], True)
    """

    type = "log"
    params = ("offset",)

    def __init__(self, offset: float = 0.0):
        super().__init__()
        self.offset = offset

    def _validate(self, where: str) -> None:
        self.offset = _check_number(self.offset, where, "offset")

    def _shifted(self, x: np.ndarray) -> np.ndarray:
        x = _as_1d(x, self.label)
        s = x + self.offset if self.offset else x
        n_bad = int(np.count_nonzero(~(s > 0)))
        if n_bad:
            what = f"values + offset ({_fmt(self.offset)})" if self.offset else "values"
            raise InputError(
                f"{self.label}: {n_bad} of {len(x)} {what} are <= 0; log needs positive values "
                f"(smallest {_fmt(float(s.min()))})"
            )
        return s

    def _fit(self, x, context, w):
        self._shifted(x)

    def forward(self, x, context=None, rng=None):
        return np.log(self._shifted(x))

    def inverse(self, y, context=None):
        x = np.exp(np.asarray(y, dtype=np.float64))
        return x - self.offset if self.offset else x

    def log_abs_det_jacobian(self, x, context=None):
        return -np.log(self._shifted(x))


@register_transform
class Logit(Transform):
    """Logit of the position inside declared bounds, for bounded scores (b-tag, isolation).

    ``u = (x - low) / (high - low)`` is clipped to ``[eps, 1 - eps]`` and ``y = log(u / (1-u))``,
    so values exactly on a bound (point masses, common for classifier scores) map to
    ``±logit(1 - eps) ≈ ±13.8``.  The inverse snaps values within the ``eps`` band (widened by
    a relative 1e-3 so that the float32 rounding of the model matrices still snaps) exactly back
    onto the bound, so bound values round-trip exactly.

    Parameters
    ----------
    low, high : float
        Declared bounds, units of ``x``; ``low < high``.
    eps : float
        Clipping margin in units of the range, ``0 < eps < 0.01``.

    Raises
    ------
    InputError
        Values outside ``[low, high]`` by more than a tiny tolerance (a few float32 ulps of the
        bounds, so that float32 branches of a value on a bound pass).

    References
    ----------
    C. Krause, D. Shih, arXiv:2106.05285 (CaloFlow), logit preprocessing of bounded data.

    Example
    -------
    >>> t = Logit(low=0.0, high=1.0).fit(np.array([0.0, 0.5, 1.0]))
    >>> t.inverse(t.forward(np.array([0.0, 0.5, 1.0])).astype(np.float32)).tolist()
    [0.0, 0.5, 1.0]
    """

    type = "logit"
    params = ("low", "high", "eps")
    #: Widening (in logit units, ~relative in u) of the band that snaps back onto a bound.
    SNAP_BAND = 1e-3

    def __init__(self, low: float | None = None, high: float | None = None, eps: float = 1e-6):
        super().__init__()
        self.low = low
        self.high = high
        self.eps = eps

    def _validate(self, where: str) -> None:
        for key in ("low", "high"):
            if getattr(self, key) is None:
                raise ConfigError(f"{where}: key {key!r} is required (the declared bounds)")
        self.low = _check_number(self.low, where, "low")
        self.high = _check_number(self.high, where, "high")
        self.eps = _check_number(self.eps, where, "eps")
        if not self.low < self.high:
            raise ConfigError(f"{where}: keys 'low', 'high' need low < high")
        if not 0 < self.eps < 0.01:
            raise ConfigError(f"{where}: key 'eps' must be in (0, 0.01), got {self.eps!r}")

    def _fraction(self, x: np.ndarray) -> np.ndarray:
        """Position inside the bounds in units of the range, clipped to [eps, 1 - eps]."""
        x = _as_1d(x, self.label)
        lo, hi = self.low, self.high
        tol = 4 * float(np.finfo(np.float32).eps) * max(abs(lo), abs(hi), hi - lo)
        below = int(np.count_nonzero(x < lo - tol))
        above = int(np.count_nonzero(x > hi + tol))
        if below or above:
            raise InputError(
                f"{self.label}: {below + above} of {len(x)} values lie outside the declared "
                f"bounds [{_fmt(lo)}, {_fmt(hi)}] ({below} below, {above} above; "
                f"min {_fmt(float(x.min()))}, max {_fmt(float(x.max()))})"
            )
        u = x - lo
        u /= hi - lo
        # Since 1 - u >= eps, computing 1 - u (inside logit) costs at most ~1e-10 relative.
        return np.clip(u, self.eps, 1.0 - self.eps, out=u)

    def _fit(self, x, context, w):
        self._fraction(x)

    def forward(self, x, context=None, rng=None):
        return special.logit(self._fraction(x))

    def inverse(self, y, context=None):
        y = np.asarray(y, dtype=np.float64)
        x = special.expit(y)
        x *= self.high - self.low
        x += self.low
        edge = -special.logit(self.eps) - self.SNAP_BAND  # |y| beyond this is on a bound
        x[y <= -edge] = self.low
        x[y >= edge] = self.high
        return x

    def log_abs_det_jacobian(self, x, context=None):
        u = self._fraction(x)
        # dy/dx = 1 / (width * u * (1 - u)); nominal (the clipped value) in the eps band.
        return -(math.log(self.high - self.low) + np.log(u) + np.log1p(-u))


@register_transform
class Ratio(Transform):
    """``y = x / context[to]``: a response relative to a gen-level condition (pt_reco / pt_gen).

    Parameters
    ----------
    to : str
        Name of the condition in the denominator; its values must be > 0.

    Example
    -------
    >>> t = Ratio(to="GenJet_pt").fit(np.array([30.0]), {"GenJet_pt": np.array([25.0])})
    >>> t.forward(np.array([30.0]), {"GenJet_pt": np.array([25.0])}).tolist()
    [1.2]
    """

    type = "ratio"
    params = ("to",)

    def __init__(self, to: str | None = None):
        super().__init__()
        self.to = to

    def _validate(self, where: str) -> None:
        if not isinstance(self.to, str) or not self.to:
            raise ConfigError(f"{where}: key 'to' must name a condition, got {self.to!r}")

    @property
    def context_names(self) -> tuple[str, ...]:
        return (self.to,)

    def _denominator(self, context, n: int) -> np.ndarray:
        d = _context_column(context, self.to, n, self.label, "ratio")
        n_bad = int(np.count_nonzero(~(d > 0)))
        if n_bad:
            raise InputError(
                f"{self.label}: the ratio's denominator {self.to!r} has {n_bad} of {n} values "
                "<= 0; it must be positive"
            )
        return d

    def _fit(self, x, context, w):
        self._denominator(context, len(x))

    def forward(self, x, context=None, rng=None):
        x = _as_1d(x, self.label)
        return x / self._denominator(context, len(x))

    def inverse(self, y, context=None):
        y = _as_1d(y, self.label)
        return y * self._denominator(context, len(y))

    def log_abs_det_jacobian(self, x, context=None):
        x = _as_1d(x, self.label)
        return -np.log(self._denominator(context, len(x)))


@register_transform
class Difference(Transform):
    """``y = x - context[to]``, wrapped into [-pi, pi) when ``periodic`` (angles, rad).

    Parameters
    ----------
    to : str
        Name of the condition to subtract.
    periodic : bool
        Wrap the difference, and the inverse's result, into [-pi, pi).

    Example
    -------
    >>> t = Difference(to="GenJet_phi", periodic=True)
    >>> ctx = {"GenJet_phi": np.array([3.0])}
    >>> round(float(t.forward(np.array([-3.0]), ctx)[0]), 4)
    0.2832
    """

    type = "difference"
    params = ("to", "periodic")

    def __init__(self, to: str | None = None, periodic: bool = False):
        super().__init__()
        self.to = to
        self.periodic = periodic

    def _validate(self, where: str) -> None:
        if not isinstance(self.to, str) or not self.to:
            raise ConfigError(f"{where}: key 'to' must name a condition, got {self.to!r}")
        if not isinstance(self.periodic, (bool, np.bool_)):
            raise ConfigError(f"{where}: key 'periodic' must be true or false")
        self.periodic = bool(self.periodic)

    @property
    def context_names(self) -> tuple[str, ...]:
        return (self.to,)

    def _fit(self, x, context, w):
        _context_column(context, self.to, len(x), self.label, "difference")

    def forward(self, x, context=None, rng=None):
        x = _as_1d(x, self.label)
        d = x - _context_column(context, self.to, len(x), self.label, "difference")
        return _wrap(d) if self.periodic else d

    def inverse(self, y, context=None):
        y = _as_1d(y, self.label)
        x = y + _context_column(context, self.to, len(y), self.label, "difference")
        return _wrap(x) if self.periodic else x

    def log_abs_det_jacobian(self, x, context=None):
        return np.zeros(len(_as_1d(x, self.label)))


@register_transform
class Standardize(Transform):
    """``y = (x - mean) / scale`` with the (weighted) mean and standard deviation.

    A constant feature gets ``scale = 1`` and a warning.  With negative weights the weighted
    variance can come out <= 0; then the variance with ``|weights|`` is used, with a warning.

    Example
    -------
    >>> t = Standardize().fit(np.array([1.0, 3.0]))
    >>> (t.mean, t.scale)
    (2.0, 1.0)
    """

    type = "standardize"
    state = ("mean", "scale")

    def _fit(self, x, context, w):
        if len(x) == 0:
            raise InputError(f"{self.label}: no values to fit")
        if w is None:
            mean = float(x.mean())
            var = float(np.mean(np.square(x - mean)))
        else:
            total = float(w.sum())
            mean = float(w @ x) / total
            dev2 = np.square(x - mean)
            var = float(w @ dev2) / total
            if not var > 0 and (w < 0).any():
                var_abs = float(np.abs(w) @ dev2) / float(np.abs(w).sum())
                if var_abs > 0:
                    warnings.warn(
                        f"{self.label}: the weighted variance is {var:g} (negative weights); "
                        "using the variance with |weights|",
                        UserWarning,
                        stacklevel=3,
                    )
                var = var_abs
        scale = math.sqrt(var) if var > 0 else 0.0
        if not scale > 1e-12 * abs(mean):
            warnings.warn(
                f"{self.label}: constant in the fit data (value {_fmt(mean)}); standardize uses "
                "scale 1",
                UserWarning,
                stacklevel=3,
            )
            scale = 1.0
        self.mean = mean
        self.scale = scale

    def _set_state(self, state, where):
        mean = _check_number(state["mean"], where, "mean")
        scale = _check_number(state["scale"], where, "scale")
        if not scale > 0:
            raise ConfigError(f"{where}: key 'scale' must be > 0, got {scale!r}")
        super()._set_state({"mean": mean, "scale": scale}, where)

    def forward(self, x, context=None, rng=None):
        self._require_fitted()
        y = _as_1d(x, self.label) - self.mean
        y /= self.scale
        return y

    def inverse(self, y, context=None):
        self._require_fitted()
        x = np.asarray(y, dtype=np.float64) * self.scale
        x += self.mean
        return x

    def log_abs_det_jacobian(self, x, context=None):
        self._require_fitted()
        return np.full(len(_as_1d(x, self.label)), -math.log(self.scale))


@register_transform
class QuantileGaussian(Transform):
    """Map a feature to a standard normal through its (weighted) quantiles.

    ``fit`` computes ``n_quantiles`` weighted quantiles ``x_j`` at probabilities ``p_j`` evenly
    spaced between the first and last midpoint plotting positions (``0.5/n`` and ``1 - 0.5/n``
    without weights), and the knots ``z_j = Phi^-1(p_j)``.  Tied knots (point masses) are merged
    into one knot at their mean ``z``, so the map is strictly monotone piecewise-linear, and it
    continues linearly with the end segments' slopes beyond the fitted range, so that it is
    invertible everywhere.  The Jacobian is piecewise constant.

    Parameters
    ----------
    n_quantiles : int
        Number of knots (at most the number of rows), >= 2.

    References
    ----------
    A. Maevskiy et al., arXiv:1905.11825: quantile transformation of the features to a
    Gaussian before training a generative model.

    Example
    -------
    >>> x = np.random.default_rng(0).exponential(size=10000)
    >>> z = QuantileGaussian(n_quantiles=200).fit(x).forward(x)
    >>> abs(float(z.mean())) < 0.01, abs(float(z.std()) - 1) < 0.02
    (True, True)
    """

    type = "quantile_gaussian"
    params = ("n_quantiles",)
    state = ("knots_x", "knots_z")

    def __init__(self, n_quantiles: int = 1000):
        super().__init__()
        self.n_quantiles = n_quantiles

    def _validate(self, where: str) -> None:
        n = self.n_quantiles
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 2:
            raise ConfigError(f"{where}: key 'n_quantiles' must be an integer >= 2, got {n!r}")
        self.n_quantiles = int(n)

    def _fit(self, x, context, w):
        if len(x) == 0:
            raise InputError(f"{self.label}: no values to fit")
        xs, probs = _plotting_positions(x, w)
        m = min(self.n_quantiles, len(probs))
        p = np.linspace(probs[0], probs[-1], m) if m > 1 else probs[:1]
        xk = np.interp(p, probs, xs)
        zk = special.ndtri(p)  # = scipy.stats.norm.ppf, without importing scipy.stats
        # De-duplicate tied knots (discrete values, point masses): one knot per distinct x at
        # the mean z of its run, which keeps z strictly increasing.
        ux, start = np.unique(xk, return_index=True)
        if len(ux) < len(xk):
            counts = np.diff(np.append(start, len(xk)))
            zk = np.add.reduceat(zk, start) / counts
            xk = ux
        if len(xk) < 2:
            c = float(xk[0])
            warnings.warn(
                f"{self.label}: constant in the fit data (value {_fmt(c)}); quantile_gaussian "
                "maps it to z = x - value",
                UserWarning,
                stacklevel=3,
            )
            xk = np.array([c - 1.0, c + 1.0])
            zk = np.array([-1.0, 1.0])
        self._set_knots(xk, zk)

    def _set_knots(self, xk: np.ndarray, zk: np.ndarray) -> None:
        self.knots_x = np.asarray(xk, dtype=np.float64)
        self.knots_z = np.asarray(zk, dtype=np.float64)
        slopes = np.diff(self.knots_z) / np.diff(self.knots_x)
        self._log_slopes = np.log(slopes)
        self._slope_lo = float(slopes[0])
        self._slope_hi = float(slopes[-1])

    def _set_state(self, state, where):
        xk = _check_numbers(state["knots_x"], where, "knots_x", min_len=2)
        zk = _check_numbers(state["knots_z"], where, "knots_z", min_len=2)
        if len(xk) != len(zk) or not (np.diff(xk) > 0).all() or not (np.diff(zk) > 0).all():
            raise ConfigError(
                f"{where}: keys 'knots_x', 'knots_z' must be strictly increasing and of equal length"
            )
        self._set_knots(xk, zk)
        self._fitted = True

    def forward(self, x, context=None, rng=None):
        self._require_fitted()
        x = _as_1d(x, self.label)
        xk, zk = self.knots_x, self.knots_z
        z = np.interp(x, xk, zk)
        lo = x < xk[0]
        if lo.any():
            z[lo] = zk[0] + (x[lo] - xk[0]) * self._slope_lo
        hi = x > xk[-1]
        if hi.any():
            z[hi] = zk[-1] + (x[hi] - xk[-1]) * self._slope_hi
        return z

    def inverse(self, y, context=None):
        self._require_fitted()
        z = np.asarray(y, dtype=np.float64)
        xk, zk = self.knots_x, self.knots_z
        x = np.interp(z, zk, xk)
        lo = z < zk[0]
        if lo.any():
            x[lo] = xk[0] + (z[lo] - zk[0]) / self._slope_lo
        hi = z > zk[-1]
        if hi.any():
            x[hi] = xk[-1] + (z[hi] - zk[-1]) / self._slope_hi
        return x

    def log_abs_det_jacobian(self, x, context=None):
        self._require_fitted()
        x = _as_1d(x, self.label)
        seg = np.searchsorted(self.knots_x, x, side="right") - 1
        np.clip(seg, 0, len(self._log_slopes) - 1, out=seg)
        return self._log_slopes[seg]


@register_transform
class Dequantize(Transform):
    """Integers to continuous values: ``y = x + u - 0.5`` with ``u ~ U(0.005, 0.995)``.

    The inverse rounds to the nearest integer and clips to the declared ``[low, high]`` or else
    the fitted ``[min, max]``, so integers round-trip exactly.  With ``noise=False`` the
    forward map is the identity (still checking integrality and bounds); hepgen uses that for
    integer *conditions*, which are model inputs rather than densities.  ``log|dy/dx| = 0``:
    the density of the dequantised variable is, per unit, the probability of the integer.

    Parameters
    ----------
    low, high : float or None
        Declared valid range (units of ``x``): values outside it are an error; generated values
        are clipped into it.
    noise : bool
        Add the uniform noise (default) or not.

    References
    ----------
    L. Theis, A. van den Oord, M. Bethge, arXiv:1511.01844 (uniform dequantisation).

    Example
    -------
    >>> t = Dequantize().fit(np.array([3.0, 7.0]))
    >>> y = t.forward(np.array([3.0, 7.0]), rng=np.random.default_rng(1))
    >>> t.inverse(y).tolist()
    [3.0, 7.0]
    """

    type = "dequantize"
    params = ("low", "high", "noise")
    state = ("min", "max")
    #: Noise ``u`` is drawn from ``U(MARGIN, 1 - MARGIN)`` so rounding back is never ambiguous.
    MARGIN = 0.005

    def __init__(self, low: float | None = None, high: float | None = None, noise: bool = True):
        super().__init__()
        self.low = low
        self.high = high
        self.noise = noise

    def _validate(self, where: str) -> None:
        self.low = _check_number(self.low, where, "low", optional=True)
        self.high = _check_number(self.high, where, "high", optional=True)
        if self.low is not None and self.high is not None and not self.low < self.high:
            raise ConfigError(f"{where}: keys 'low', 'high' need low < high")
        if not isinstance(self.noise, (bool, np.bool_)):
            raise ConfigError(f"{where}: key 'noise' must be true or false")
        self.noise = bool(self.noise)

    def _check(self, x: np.ndarray) -> None:
        n = len(x)
        n_frac = int(np.count_nonzero(x != np.rint(x)))
        if n_frac:
            raise InputError(
                f"{self.label}: {n_frac} of {n} values are not integers; dequantize needs "
                "integer values"
            )
        below = int(np.count_nonzero(x < self.low)) if self.low is not None else 0
        above = int(np.count_nonzero(x > self.high)) if self.high is not None else 0
        if below or above:
            lo = _fmt(self.low) if self.low is not None else "-inf"
            hi = _fmt(self.high) if self.high is not None else "inf"
            raise InputError(
                f"{self.label}: {below + above} of {n} values lie outside the declared bounds "
                f"[{lo}, {hi}] ({below} below, {above} above)"
            )

    def _fit(self, x, context, w):
        if len(x) == 0:
            raise InputError(f"{self.label}: no values to fit")
        self._check(x)
        self.min = float(x.min())
        self.max = float(x.max())

    def _set_state(self, state, where):
        lo = _check_number(state["min"], where, "min")
        hi = _check_number(state["max"], where, "max")
        if not lo <= hi:
            raise ConfigError(f"{where}: keys 'min', 'max' need min <= max")
        super()._set_state({"min": lo, "max": hi}, where)

    def forward(self, x, context=None, rng=None):
        self._require_fitted()
        x = _as_1d(x, self.label)
        self._check(x)
        if not self.noise:
            return x.copy()
        u = _rng(rng).uniform(self.MARGIN, 1.0 - self.MARGIN, size=len(x))
        u += x
        u -= 0.5
        return u

    def inverse(self, y, context=None):
        self._require_fitted()
        lo = math.ceil(self.low) if self.low is not None else self.min
        hi = math.floor(self.high) if self.high is not None else self.max
        return np.clip(np.rint(np.asarray(y, dtype=np.float64)), lo, hi)

    def log_abs_det_jacobian(self, x, context=None):
        return np.zeros(len(_as_1d(x, self.label)))


class _Categorical(Transform):
    """Shared lookup of category values for ``onehot`` and ``index``."""

    params = ("categories",)
    state = ("classes",)

    def __init__(self, categories: Sequence[float] | None = None):
        super().__init__()
        self.categories = categories

    def _validate(self, where: str) -> None:
        if self.categories is not None:
            cats = _check_numbers(self.categories, where, "categories")
            if len(np.unique(cats)) != len(cats):
                raise ConfigError(f"{where}: key 'categories' lists a value more than once")
            self.categories = cats.tolist()

    def get_params(self) -> dict[str, Any]:
        return {"categories": None if self.categories is None else list(self.categories)}

    def _fit(self, x, context, w):
        if len(x) == 0:
            raise InputError(f"{self.label}: no values to fit")
        if self.categories is None:
            classes = np.unique(x)
        else:
            classes = np.asarray(self.categories, dtype=np.float64)
        self._set_classes(classes)
        self._lookup(x)  # unknown categories (vs the declared ones) are an error

    def _set_classes(self, classes: np.ndarray) -> None:
        self.classes = np.asarray(classes, dtype=np.float64)
        self._order = np.argsort(self.classes, kind="stable")
        self._sorted = self.classes[self._order]

    def _set_state(self, state, where):
        classes = _check_numbers(state["classes"], where, "classes")
        if len(np.unique(classes)) != len(classes):
            raise ConfigError(f"{where}: key 'classes' lists a value more than once")
        self._set_classes(classes)
        self._fitted = True

    @property
    def n_classes(self) -> int:
        self._require_fitted()
        return len(self.classes)

    def _lookup(self, x: np.ndarray) -> np.ndarray:
        """Index of each value in ``classes``; InputError for values not among them."""
        pos = np.searchsorted(self._sorted, x)
        np.clip(pos, 0, len(self._sorted) - 1, out=pos)
        known = self._sorted[pos] == x
        if not known.all():
            unknown = np.unique(x[~known])
            shown = ", ".join(_fmt(v) for v in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
            raise InputError(
                f"{self.label}: {int(np.count_nonzero(~known))} of {len(x)} values are not among "
                f"the {len(self.classes)} known categories "
                f"[{', '.join(_fmt(c) for c in self.classes)}] (unknown: {shown})"
            )
        return self._order[pos]


@register_transform
class OneHot(_Categorical):
    """One-hot encoding of a categorical *condition*: (n,) -> (n, k), inverse by argmax.

    Parameters
    ----------
    categories : sequence of float or None
        Column order; ``None`` means the sorted distinct values seen in ``fit``.

    Example
    -------
    >>> t = OneHot().fit(np.array([0.0, 4.0, 5.0]))
    >>> t.forward(np.array([5.0, 0.0])).tolist()
    [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    """

    type = "onehot"
    elementwise = False

    @property
    def n_out(self) -> int:
        return self.n_classes

    def forward(self, x, context=None, rng=None):
        self._require_fitted()
        x = _as_1d(x, self.label)
        idx = self._lookup(x)
        out = np.zeros((len(x), len(self.classes)))
        out[np.arange(len(x)), idx] = 1.0
        return out

    def inverse(self, y, context=None):
        self._require_fitted()
        y = np.asarray(y, dtype=np.float64)
        if y.ndim != 2 or y.shape[1] != len(self.classes):
            raise InputError(
                f"{self.label}: onehot inverse expects shape (n, {len(self.classes)}), got {y.shape}"
            )
        return self.classes[np.argmax(y, axis=1)]


@register_transform
class Index(_Categorical):
    """Categories of a categorical *target* -> indices ``0..k-1`` (then dequantised).

    The inverse rounds and clips to a valid index, so every output is a valid category.

    Parameters
    ----------
    categories : sequence of float or None
        Index order; ``None`` means the sorted distinct values seen in ``fit``.

    Example
    -------
    >>> t = Index().fit(np.array([0.0, 4.0, 5.0]))
    >>> t.forward(np.array([5.0, 0.0])).tolist(), t.inverse(np.array([1.2, 7.0])).tolist()
    ([2.0, 0.0], [4.0, 5.0])
    """

    type = "index"

    def forward(self, x, context=None, rng=None):
        self._require_fitted()
        return self._lookup(_as_1d(x, self.label)).astype(np.float64)

    def inverse(self, y, context=None):
        self._require_fitted()
        idx = np.clip(np.rint(np.asarray(y, dtype=np.float64)), 0, len(self.classes) - 1)
        return self.classes[idx.astype(np.intp)]

    def log_abs_det_jacobian(self, x, context=None):
        return np.zeros(len(_as_1d(x, self.label)))


# ---------------------------------------------------------------------------------------------
# one feature
# ---------------------------------------------------------------------------------------------


def default_transforms(spec: FeatureSpec) -> list[dict[str, Any]]:
    """The pipeline of a feature as a list of transform settings, before fitting.

    The kind's default chain (see :mod:`hepgen.features`) or ``spec.transforms``, with the
    ``relative_to`` step first and bounds/categories filled in from the spec.

    Parameters
    ----------
    spec : FeatureSpec
        The feature.

    Returns
    -------
    list of dict
        ``[{"type": ..., **settings}, ...]``.

    Example
    -------
    >>> default_transforms(FeatureSpec("Jet_pt", "target", "positive", relative_to="GenJet_pt"))
    [{'type': 'ratio', 'to': 'GenJet_pt'}, {'type': 'log'}, {'type': 'standardize'}]
    """
    lo, hi = spec.bounds if spec.bounds is not None else (None, None)
    cats = list(spec.categories) if spec.categories is not None else None
    steps: list[dict[str, Any]] = []
    if spec.relative_to is not None:
        if spec.kind == "positive":
            steps.append({"type": "ratio", "to": spec.relative_to})
        else:
            steps.append({"type": "difference", "to": spec.relative_to, "periodic": spec.periodic})
    if spec.transforms is not None:
        return steps + [_complete_config(cfg, spec) for cfg in spec.transforms]
    noise = spec.role == "target"
    if spec.kind == "continuous":
        steps.append({"type": "standardize"})
    elif spec.kind == "positive":
        steps += [{"type": "log"}, {"type": "standardize"}]
    elif spec.kind == "bounded":
        steps += [{"type": "logit", "low": lo, "high": hi}, {"type": "standardize"}]
    elif spec.kind == "integer":
        deq: dict[str, Any] = {"type": "dequantize", "noise": noise}
        if spec.bounds is not None:
            deq.update(low=lo, high=hi)
        steps += [deq, {"type": "standardize"}]
    elif spec.role == "condition":  # categorical
        steps.append({"type": "onehot", "categories": cats})
    else:
        steps += [
            {"type": "index", "categories": cats},
            {"type": "dequantize", "noise": True},
            {"type": "standardize"},
        ]
    return steps


def _complete_config(cfg: Mapping[str, Any], spec: FeatureSpec) -> dict[str, Any]:
    """An explicit step's settings with the bounds / categories it omits taken from the spec."""
    cfg = dict(cfg)
    kind = cfg.get("type")
    if spec.bounds is not None and (
        kind == "logit" or (kind == "dequantize" and spec.kind == "integer")
    ):
        cfg.setdefault("low", spec.bounds[0])
        cfg.setdefault("high", spec.bounds[1])
    elif kind in ("onehot", "index") and spec.categories is not None:
        cfg.setdefault("categories", list(spec.categories))
    return cfg


def _category_label(v: float) -> str:
    return str(int(v)) if float(v).is_integer() and abs(v) < 2**53 else repr(float(v))


# ---------------------------------------------------------------------------------------------
# sentinel values (point masses)
# ---------------------------------------------------------------------------------------------


def _stored_values(sentinels: Sequence[float], dtype: np.dtype | None) -> np.ndarray:
    """The sentinels as a raw column of ``dtype`` holds them, as float64 (float32(-999.9), ...)."""
    values = np.asarray(sentinels, dtype=np.float64)
    if dtype is not None and np.dtype(dtype).kind == "f":
        with np.errstate(over="ignore"):
            cast = values.astype(dtype).astype(np.float64)
        # a sentinel beyond the dtype's range cannot be stored in it; keep the declared value
        values = np.where(np.isfinite(cast), cast, values)
    return values


class SentinelFlag:
    """The point masses of a feature with ``sentinels``: which rows hold one, as a flag column.

    The flag of a row is its category: 0 for an ordinary value, ``k`` for the k-th sentinel of
    the spec.  It is encoded like an integer feature, ``dequantize`` + ``standardize``, with
    uniform noise for targets (so that a flow models a density) and without for conditions.
    Used by :class:`FeaturePipeline`; see the module docstring.

    Parameters
    ----------
    spec : FeatureSpec
        A feature with ``sentinels``.
    transforms : sequence of Transform, optional
        The flag's ``[Dequantize, Standardize]`` (from :meth:`from_dict`); built by default.

    Attributes
    ----------
    values : ndarray of float64, shape (k,)
        The sentinels as stored in the raw column's dtype (``float32(-999.9)`` as float64), the
        exact values the inverse restores; set in :meth:`fit`.
    fractions : ndarray of float64, shape (k + 1,)
        (Weighted) fraction of the fit rows in each category, ordinary values first.
    continuous : bool
        Whether the fit data held ordinary values, so that the continuous chain was fitted.
    """

    #: Tolerance of :meth:`match`, see :data:`hepgen.features.SENTINEL_RTOL`.
    RTOL = SENTINEL_RTOL

    def __init__(self, spec: FeatureSpec, transforms: Sequence[Transform] | None = None):
        if not spec.sentinels:
            raise ValueError(f"feature {spec.name!r} has no sentinels")
        self.spec = spec
        self.sentinels: tuple[float, ...] = spec.sentinels
        if transforms is None:
            transforms = [Dequantize(noise=spec.role == "target"), Standardize()]
        self.transforms: list[Transform] = list(transforms)
        for t in self.transforms:
            t.label = f"feature {spec.name!r} (sentinel flag)"
        self.values: np.ndarray | None = None
        self.fractions: np.ndarray | None = None
        self.continuous = True

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` (or :meth:`from_dict` with state) has run."""
        return self.values is not None and all(t.is_fitted for t in self.transforms)

    @property
    def most_frequent(self) -> int:
        """Category (1..k) of the most frequent sentinel in the fit data."""
        return int(np.argmax(self.fractions[1:])) + 1

    def match(self, x: np.ndarray) -> np.ndarray:
        """Category of each value: ``k`` where ``|x - s_k| <= RTOL * |s_k|``, else 0; (n,) intp."""
        idx = np.zeros(len(x), dtype=np.intp)
        for k, s in enumerate(self.sentinels, start=1):
            hit = x == s if s == 0 else np.abs(x - s) <= self.RTOL * abs(s)
            hit &= idx == 0  # the spec keeps sentinels apart; the first one wins anyway
            idx[hit] = k
        return idx

    def fit(
        self,
        idx: np.ndarray,
        weights: np.ndarray | None,
        rng: np.random.Generator,
        dtype: np.dtype | None = None,
    ) -> SentinelFlag:
        """Fit the flag encoding on the categories ``idx`` (from :meth:`match`)."""
        w = weights
        counts = np.bincount(idx, weights=w, minlength=len(self.sentinels) + 1)
        total = float(counts.sum())
        self.fractions = counts / total if total > 0 else counts
        self.continuous = bool((idx == 0).any())
        self.values = _stored_values(self.sentinels, dtype)
        deq, std = self.transforms
        flag = idx.astype(np.float64)
        deq.fit(flag, None, w)
        y = deq.forward(flag, None, rng)
        if float(np.ptp(y)) == 0.0:
            # conditions (no noise) with one category only: nothing to scale, no extra warning
            std._set_state({"mean": float(y[0]), "scale": 1.0}, std.label)
        else:
            std.fit(y, None, w)
        return self

    def encode(self, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Categories (n,) -> the flag column (n,), float64."""
        y = idx.astype(np.float64)
        for t in self.transforms:
            y = t.forward(y, None, rng)
        return y

    def decode(self, y: np.ndarray) -> np.ndarray:
        """Flag column (n,) -> categories (n,) intp, rounded and clipped to the fitted range."""
        x = np.asarray(y, dtype=np.float64)
        for t in reversed(self.transforms):
            x = t.inverse(x, None)
        return x.astype(np.intp)

    def log_abs_det_jacobian(self, n: int) -> np.ndarray:
        """``log|dz/dflag|`` of the flag column: the final standardize's ``-log(scale)``."""
        return np.full(n, -math.log(self.transforms[-1].scale))

    def to_dict(self) -> dict[str, Any]:
        """``{"values", "fractions", "continuous", "flag": [transform dicts]}`` (JSON-ready)."""
        d: dict[str, Any] = {}
        if self.values is not None:
            d["values"] = self.values.tolist()
            d["fractions"] = self.fractions.tolist()
            d["continuous"] = self.continuous
        d["flag"] = [t.to_dict() for t in self.transforms]
        return d

    @classmethod
    def from_dict(cls, spec: FeatureSpec, d: Mapping[str, Any]) -> SentinelFlag:
        """Build from :meth:`to_dict` output.

        Raises
        ------
        ConfigError
            Unknown keys, or state that does not fit ``spec.sentinels``.
        """
        where = f"feature {spec.name!r}: sentinel state"
        keys = ("values", "fractions", "continuous", "flag")
        if not isinstance(d, Mapping) or "flag" not in d:
            raise ConfigError(f"{where} must be a mapping with a key 'flag'")
        unknown = [k for k in d if k not in keys]
        if unknown:
            raise ConfigError(
                f"{where}: unknown key {unknown[0]!r}{did_you_mean(str(unknown[0]), keys)}"
            )
        flag = d["flag"]
        if not isinstance(flag, Sequence) or len(flag) != 2:
            raise ConfigError(f"{where}: key 'flag' must list a dequantize and a standardize")
        transforms = [
            Dequantize.from_dict(flag[0], spec.name),
            Standardize.from_dict(flag[1], spec.name),
        ]
        obj = cls(spec, transforms)
        present = [k for k in keys[:3] if k in d]
        if present:
            if len(present) != 3:
                raise ConfigError(f"{where}: needs all of 'values', 'fractions', 'continuous'")
            k = len(spec.sentinels)
            values = _check_numbers(d["values"], where, "values")
            fractions = _check_numbers(d["fractions"], where, "fractions")
            if len(values) != k or len(fractions) != k + 1:
                raise ConfigError(
                    f"{where}: expected {k} 'values' and {k + 1} 'fractions' for the sentinels "
                    f"{list(spec.sentinels)}"
                )
            if not isinstance(d["continuous"], bool):
                raise ConfigError(f"{where}: key 'continuous' must be true or false")
            obj.values = values
            obj.fractions = fractions
            obj.continuous = d["continuous"]
        return obj

    def __repr__(self) -> str:
        return f"SentinelFlag({self.spec.name!r}, sentinels={list(self.sentinels)})"


# ---------------------------------------------------------------------------------------------
# one feature: the pipeline
# ---------------------------------------------------------------------------------------------


class FeaturePipeline:
    """The fitted chain of transforms of one feature, with its sentinel flag if any.

    Parameters
    ----------
    spec : FeatureSpec
        The feature.
    transforms : sequence of Transform, optional
        The steps; by default built from :func:`default_transforms`.
    flag : SentinelFlag, optional
        For a spec with ``sentinels``; by default a new, unfitted one.

    Notes
    -----
    A ``periodic`` feature's inverse output is wrapped back into [-pi, pi).

    With ``spec.sentinels`` the pipeline has two model columns, the flag (:class:`SentinelFlag`)
    and the continuous column; the transforms are fitted and applied on the rows that hold no
    sentinel only (see the module docstring).

    Example
    -------
    >>> p = FeaturePipeline(FeatureSpec("Jet_mass", "target", "positive"))
    >>> [t.type for t in p.transforms]
    ['log', 'standardize']
    >>> x = np.array([5.0, 10.0, 20.0])
    >>> bool(np.allclose(p.fit(x).inverse(p.forward(x)), x))
    True
    >>> b = FeaturePipeline(FeatureSpec("Jet_btag", "target", "bounded", bounds=(0, 1),
    ...                                 sentinels=(-1,)))
    >>> x = np.array([-1.0, 0.2, 0.7, 1.0], dtype=np.float32)
    >>> b.fit(x).columns, b.forward(x).shape
    (['Jet_btag:sentinel', 'Jet_btag'], (4, 2))
    >>> back = b.inverse(b.forward(x).astype(np.float32))  # the sentinel and bound exactly
    >>> back[[0, 3]].tolist(), bool(np.allclose(back, x, rtol=1e-5))
    ([-1.0, 1.0], True)
    """

    def __init__(
        self,
        spec: FeatureSpec,
        transforms: Sequence[Transform] | None = None,
        flag: SentinelFlag | None = None,
    ):
        self.spec = spec
        if transforms is None:
            transforms = [Transform.from_config(c, spec.name) for c in default_transforms(spec)]
        self.transforms: list[Transform] = list(transforms)
        names: list[str] = []
        for t in self.transforms:
            t.label = f"feature {spec.name!r}" + (f" (after {', '.join(names)})" if names else "")
            names.append(t.type)
        if flag is None and spec.sentinels:
            flag = SentinelFlag(spec)
        self.flag: SentinelFlag | None = flag

    @property
    def is_fitted(self) -> bool:
        """Whether every step is fitted (the continuous ones only if the fit data had any)."""
        if self.flag is not None:
            if not self.flag.is_fitted:
                return False
            if not self.flag.continuous:
                return True
        return all(t.is_fitted for t in self.transforms)

    @property
    def _continuous_out(self) -> int:
        return self.transforms[-1].n_out if self.transforms else 1

    @property
    def n_out(self) -> int:
        """Number of model columns (1; k for a one-hot condition; 2 with sentinels)."""
        if self.flag is not None:
            return 1 + self._continuous_out
        return self._continuous_out

    @property
    def columns(self) -> list[str]:
        """Model column names: ``[name]``, ``["name==c", ...]`` for one-hot, or
        ``["name:sentinel", name]`` with sentinels."""
        if self.flag is not None:
            return [f"{self.spec.name}:sentinel", self.spec.name]
        last = self.transforms[-1] if self.transforms else None
        if isinstance(last, OneHot):
            return [f"{self.spec.name}=={_category_label(c)}" for c in last.classes]
        return [self.spec.name]

    @property
    def context_names(self) -> tuple[str, ...]:
        """Condition columns the pipeline reads."""
        names: list[str] = []
        for t in self.transforms:
            names += [c for c in t.context_names if c not in names]
        return tuple(names)

    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"feature {self.spec.name!r}: pipeline is not fitted; call fit()")

    def _check_finite(self, x: np.ndarray) -> np.ndarray:
        x = _as_1d(x, f"feature {self.spec.name!r}")
        n_bad = len(x) - int(np.count_nonzero(np.isfinite(x)))
        if n_bad:
            n_nan = int(np.count_nonzero(np.isnan(x)))
            raise InputError(
                f"feature {self.spec.name!r}: {n_bad} of {len(x)} values are not finite "
                f"({n_nan} NaN, {n_bad - n_nan} inf)"
            )
        return x

    def _rows(
        self, context: Mapping[str, np.ndarray] | None, keep: np.ndarray
    ) -> Mapping[str, np.ndarray] | None:
        """The context columns the chain reads, restricted to the rows ``keep``."""
        if context is None:
            return None
        n = len(keep)
        sub: dict[str, np.ndarray] = {}
        for name in self.context_names:
            if name in context:
                c = np.asarray(context[name])
                # a column of the wrong shape is passed on whole for the transform's own error
                sub[name] = c[keep] if c.shape == (n,) else c
        return sub

    def fit(
        self,
        x: np.ndarray,
        context: Mapping[str, np.ndarray] | None = None,
        weights: np.ndarray | None = None,
        rng: np.random.Generator | int | None = None,
    ) -> FeaturePipeline:
        """Fit the steps one after the other, each on the previous steps' output.

        Parameters
        ----------
        x : array of shape (n,)
            Raw values, feature units.  With sentinels, its dtype (e.g. float32) fixes the
            exact values the inverse restores.
        context : mapping of str to array of shape (n,), optional
            Raw condition columns.
        weights : array of shape (n,), optional
            Per-row weights (negative allowed).
        rng : numpy.random.Generator, int or None
            Noise for dequantisation while fitting the later steps.

        Returns
        -------
        FeaturePipeline
            ``self``.
        """
        dtype = getattr(x, "dtype", None)
        return self._fit(self._check_finite(x), context, weights, _rng(rng), dtype)

    def _fit(self, x, context, weights, rng, dtype=None) -> FeaturePipeline:
        if self.flag is None:
            self._fit_chain(x, context, weights, rng)
            return self
        label = f"feature {self.spec.name!r}"
        w = check_weights(weights, len(x), label)
        if len(x) == 0:
            raise InputError(f"{label}: no values to fit")
        idx = self.flag.match(x)
        self.flag.fit(idx, w, rng, dtype)
        keep = idx == 0
        n_keep = int(np.count_nonzero(keep))
        shown = ", ".join(_fmt(s) for s in self.spec.sentinels)
        if n_keep == len(x):
            warnings.warn(
                f"{label}: none of the sentinels ({shown}) occur in the fit data; its flag "
                "column is constant (0)",
                UserWarning,
                stacklevel=3,
            )
            self._fit_chain(x, context, w, rng)
        elif n_keep == 0:
            common = _fmt(float(self.flag.values[self.flag.most_frequent - 1]))
            warnings.warn(
                f"{label}: all {len(x)} values of the fit data are sentinels; the continuous "
                f"part cannot be fitted, every generated value will be a sentinel (mostly "
                f"{common})",
                UserWarning,
                stacklevel=3,
            )
        else:
            self._fit_chain(x[keep], self._rows(context, keep), None if w is None else w[keep], rng)
        return self

    def _fit_chain(self, x, context, weights, rng) -> None:
        y = x
        for i, t in enumerate(self.transforms):
            t.fit(y, context, weights)
            if i < len(self.transforms) - 1:
                y = t.forward(y, context, rng)

    def forward(
        self,
        x: np.ndarray,
        context: Mapping[str, np.ndarray] | None = None,
        rng: np.random.Generator | int | None = None,
    ) -> np.ndarray:
        """Raw values (n,) -> transformed float64 values (n,) or (n, k); (n, 2) with sentinels."""
        self._require_fitted()
        return self._forward(self._check_finite(x), context, _rng(rng))[0]

    def _forward(self, x, context, rng, log_det: bool = False):
        if self.flag is None:
            return self._forward_chain(x, context, rng, log_det)
        n = len(x)
        idx = self.flag.match(x)
        keep = idx == 0
        out = np.empty((n, 2))
        out[:, 0] = self.flag.encode(idx, rng)
        total = self.flag.log_abs_det_jacobian(n) if log_det else None
        n_keep = int(np.count_nonzero(keep))
        if n_keep and not self.flag.continuous:
            raise InputError(
                f"feature {self.spec.name!r}: {n_keep} of {n} values are not sentinels, but "
                "the fit data held only sentinels, so the continuous part is not fitted"
            )
        if n_keep == n:  # no sentinel in the data: no copies
            y, ld = self._forward_chain(x, context, rng, log_det)
            out[:, 1] = y
            if log_det:
                total += ld
            return out, total
        if n_keep:
            y, ld = self._forward_chain(x[keep], self._rows(context, keep), rng, log_det)
            out[keep, 1] = y
            if log_det:
                total[keep] += ld
        # the filler of the sentinel rows: independent N(0, 1) noise for targets, 0 for conditions
        if self.spec.role == "target":
            out[~keep, 1] = rng.standard_normal(n - n_keep)
        else:
            out[~keep, 1] = 0.0
        return out, total

    def _forward_chain(self, x, context, rng, log_det: bool = False):
        y = x
        total = np.zeros(len(x)) if log_det else None
        for t in self.transforms:
            if log_det:
                total += t.log_abs_det_jacobian(y, context)
            y = t.forward(y, context, rng)
        return y, total

    def inverse(self, y: np.ndarray, context: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """Transformed values (n,), (n, k) or (n, 2) with sentinels -> raw float64 values (n,)."""
        self._require_fitted()
        y = np.asarray(y, dtype=np.float64)
        if self.flag is None:
            return self._inverse_chain(y, context)
        if y.ndim != 2 or y.shape[1] != 2:
            raise InputError(
                f"feature {self.spec.name!r}: the inverse expects the flag and the continuous "
                f"column, shape (n, 2), got {y.shape}"
            )
        idx = self.flag.decode(y[:, 0])
        if not self.flag.continuous:
            idx[idx == 0] = self.flag.most_frequent
        keep = idx == 0
        n_keep = int(np.count_nonzero(keep))
        if n_keep == len(y):
            return self._inverse_chain(y[:, 1], context)
        x = np.empty(len(y))
        x[~keep] = self.flag.values[idx[~keep] - 1]
        if n_keep:
            x[keep] = self._inverse_chain(y[keep, 1], self._rows(context, keep))
        return x

    def _inverse_chain(self, y, context) -> np.ndarray:
        x = y
        for t in reversed(self.transforms):
            x = t.inverse(x, context)
        if self.spec.periodic:
            x = _wrap_outside(x)
        return x

    def log_abs_det_jacobian(
        self,
        x: np.ndarray,
        context: Mapping[str, np.ndarray] | None = None,
        rng: np.random.Generator | int | None = None,
    ) -> np.ndarray:
        """``log|dz/dx|`` of the whole chain at raw ``x``, shape (n,).

        ``rng`` matters only for ``dequantize`` followed by a non-affine step; the same ``rng``
        state as in :meth:`forward` gives the Jacobian at the same dequantised point.  With
        sentinels: the flag's term on every row plus the chain's term on the ordinary rows
        (see the module docstring).
        """
        self._require_fitted()
        if not all(t.elementwise for t in self.transforms):
            raise TypeError(f"feature {self.spec.name!r}: the pipeline is not elementwise")
        return self._forward(self._check_finite(x), context, _rng(rng), log_det=True)[1]

    def to_dict(self) -> dict[str, Any]:
        """``{"feature": spec dict, "transforms": [transform dicts]}``, plus ``"sentinel"``
        (:meth:`SentinelFlag.to_dict`) for a feature with sentinels."""
        d = {
            "feature": self.spec.to_dict(),
            "transforms": [t.to_dict() for t in self.transforms],
        }
        if self.flag is not None:
            d["sentinel"] = self.flag.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeaturePipeline:
        """Build from :meth:`to_dict` output."""
        if not isinstance(d, Mapping) or not (
            {"feature", "transforms"} <= set(d) <= {"feature", "transforms", "sentinel"}
        ):
            raise ConfigError(
                "a feature pipeline must be {'feature': ..., 'transforms': [...]} (plus "
                "'sentinel': ... for a feature with sentinels)"
            )
        spec = FeatureSpec.from_dict(d["feature"])
        return cls._build(spec, d["transforms"], d.get("sentinel"))

    @classmethod
    def _build(cls, spec: FeatureSpec, transforms: Any, sentinel: Any) -> FeaturePipeline:
        where = f"feature {spec.name!r}"
        if isinstance(transforms, (str, bytes, Mapping)) or not isinstance(transforms, Sequence):
            raise ConfigError(f"{where}: the pipeline's transforms must be a list")
        if (sentinel is not None) != bool(spec.sentinels):
            raise ConfigError(
                f"{where}: "
                + (
                    "the spec lists sentinels, but the pipeline has no sentinel state"
                    if spec.sentinels
                    else "the pipeline has sentinel state, but the spec lists no sentinels"
                )
            )
        flag = SentinelFlag.from_dict(spec, sentinel) if sentinel is not None else None
        return cls(spec, [Transform.from_dict(t, spec.name) for t in transforms], flag)

    def __repr__(self) -> str:
        extra = f", sentinels={list(self.spec.sentinels)}" if self.flag is not None else ""
        return f"FeaturePipeline({self.spec.name!r}, {[t.type for t in self.transforms]}{extra})"


# ---------------------------------------------------------------------------------------------
# all features
# ---------------------------------------------------------------------------------------------


def _cast(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Cast float64 values to a recorded integer/bool/float dtype, rounding integers."""
    if dtype.kind == "b":
        return np.rint(x) != 0
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.rint(x), info.min, info.max).astype(dtype)
    return x.astype(dtype)


class Preprocessor:
    """Fitted mapping between raw columns and the standardised float32 model matrices.

    Parameters
    ----------
    schema : FeatureSchema
        Conditions and targets; the constructor only stores it, :meth:`fit` does the work.

    Notes
    -----
    * Dequantisation noise: ``rng=None`` uses a generator seeded with :data:`DEFAULT_SEED`,
      shared across the target features in schema order, so outputs are reproducible; pass a
      fresh generator (e.g. per epoch) for new noise.
    * Continuous targets are returned as float64, integer and categorical ones in the dtype seen
      in ``fit`` (e.g. ``uint8``).  Values are not clipped to the fitted range, except by the
      transforms themselves (``logit`` keeps bounds, ``dequantize`` clips to its range).
    * :attr:`domain` records the range of each condition seen in ``fit`` (``min``/``max``, or
      ``categories``; with sentinels the range of the other values and the ``sentinels`` seen)
      so that generation outside the trained domain can be flagged (:meth:`out_of_domain`).
    * A feature with sentinels has two columns, ``"name:sentinel"`` and ``"name"`` (see the
      module docstring); its sentinels come back exactly as stored.

    References
    ----------
    Theis et al., arXiv:1511.01844 (dequantisation); Krause & Shih, arXiv:2106.05285 (logit of
    bounded data); Maevskiy et al., arXiv:1905.11825 (quantile preprocessing).

    Example
    -------
    >>> rng = np.random.default_rng(2)
    >>> n = 500
    >>> data = {"GenJet_eta": rng.uniform(-2.4, 2.4, n),
    ...         "GenJet_hadronFlavour": rng.choice([0, 4, 5], n).astype(np.int32),
    ...         "Jet_nConstituents": rng.poisson(12, n).astype(np.uint8)}
    >>> data["Jet_eta"] = data["GenJet_eta"] + rng.normal(0, 0.02, n)
    >>> schema = FeatureSchema([
    ...     FeatureSpec("GenJet_eta", "condition"),
    ...     FeatureSpec("GenJet_hadronFlavour", "condition", "categorical"),
    ...     FeatureSpec("Jet_eta", "target", relative_to="GenJet_eta"),
    ...     FeatureSpec("Jet_nConstituents", "target", "integer")])
    >>> pre = Preprocessor(schema).fit(data)
    >>> pre.condition_columns
    ['GenJet_eta', 'GenJet_hadronFlavour==0', 'GenJet_hadronFlavour==4', 'GenJet_hadronFlavour==5']
    >>> back = pre.inverse_targets(pre.transform_targets(data), data)
    >>> back["Jet_nConstituents"].dtype, bool((back["Jet_nConstituents"] == data["Jet_nConstituents"]).all())
    (dtype('uint8'), True)
    """

    def __init__(self, schema: FeatureSchema):
        if not isinstance(schema, FeatureSchema):
            raise TypeError(f"Preprocessor needs a FeatureSchema, got {type(schema).__name__}")
        self.schema = schema
        self._pipelines: dict[str, FeaturePipeline] | None = None
        self._dtypes: dict[str, np.dtype] = {}
        self._domain: dict[str, dict[str, Any]] = {}
        self._n_fit = 0
        self._weighted = False

    # -- properties ---------------------------------------------------------------------------

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` (or :meth:`load`) has run."""
        return self._pipelines is not None

    def _require_fitted(self) -> dict[str, FeaturePipeline]:
        if self._pipelines is None:
            raise NotFittedError("the Preprocessor is not fitted; call fit() or load() first")
        return self._pipelines

    @property
    def pipelines(self) -> dict[str, FeaturePipeline]:
        """The fitted pipeline of each feature, by name."""
        return dict(self._require_fitted())

    @property
    def condition_columns(self) -> list[str]:
        """Names of the columns of :meth:`transform_conditions` (one-hot expanded)."""
        p = self._require_fitted()
        return [c for s in self.schema.conditions for c in p[s.name].columns]

    @property
    def target_columns(self) -> list[str]:
        """Names of the columns of :meth:`transform_targets`."""
        p = self._require_fitted()
        return [c for s in self.schema.targets for c in p[s.name].columns]

    @property
    def condition_dim(self) -> int:
        """Number of condition columns."""
        return len(self.condition_columns)

    @property
    def target_dim(self) -> int:
        """Number of target columns."""
        return len(self.target_columns)

    @property
    def domain(self) -> dict[str, dict[str, Any]]:
        """Validity domain of the conditions seen in fit.

        ``{name: {"min": float, "max": float}}`` for numeric conditions,
        ``{name: {"categories": [float, ...]}}`` for categorical ones; with sentinels
        ``{name: {"min", "max", "sentinels": [float, ...]}}``: the range of the other values
        (absent if there were none) and the sentinels seen, as stored.
        """
        self._require_fitted()
        return copy.deepcopy(self._domain)

    @property
    def dtypes(self) -> dict[str, str]:
        """The dtype of each raw column seen in fit, by name (e.g. ``"uint8"``)."""
        self._require_fitted()
        return {k: v.name for k, v in self._dtypes.items()}

    # -- input checking -----------------------------------------------------------------------

    def _columns(
        self,
        data: Mapping[str, Any],
        names: Sequence[str],
        why: Mapping[str, str],
        n: int | None = None,
    ) -> tuple[dict[str, np.ndarray], dict[str, np.dtype], int]:
        """Read, check and convert columns to float64; returns (columns, raw dtypes, n)."""
        keys: list[str] = []
        if hasattr(data, "keys"):
            keys = [str(k) for k in data.keys()]
        elif getattr(getattr(data, "dtype", None), "names", None):
            keys = list(data.dtype.names)
        raw: dict[str, Any] = {}
        missing = []
        for name in names:
            try:
                raw[name] = data[name]
            except (KeyError, ValueError, IndexError, TypeError):
                missing.append(name)
        if missing:
            parts = [f"{m!r} ({why[m]}){did_you_mean(m, keys)}" for m in missing]
            raise InputError(
                f"missing column{'s' if len(missing) > 1 else ''}: " + "; ".join(parts)
            )
        cols: dict[str, np.ndarray] = {}
        dtypes: dict[str, np.dtype] = {}
        ref = None
        for name in names:
            a = np.asarray(raw[name])
            if a.ndim != 1:
                raise InputError(f"column {name!r}: expected a 1-D array, got shape {a.shape}")
            if a.dtype.kind not in "biuf":
                raise InputError(f"column {name!r}: expected numbers, got dtype {a.dtype}")
            if n is None:
                n, ref = len(a), name
            elif len(a) != n:
                against = f"column {ref!r}" if ref is not None else "the model matrix"
                raise InputError(
                    f"column {name!r} has {len(a)} rows, but {against} has {n}; columns must "
                    "have equal length"
                )
            dtypes[name] = a.dtype
            cols[name] = a
        bad = []
        for name, a in cols.items():
            if a.dtype.kind != "f":
                continue
            # checked before the float64 conversion: half the memory traffic for float32
            n_bad = len(a) - int(np.count_nonzero(np.isfinite(a)))
            if n_bad:
                n_nan = int(np.count_nonzero(np.isnan(a)))
                bad.append(
                    f"feature {name!r}: {n_bad} of {len(a)} values are not finite "
                    f"({n_nan} NaN, {n_bad - n_nan} inf)"
                )
        if bad:
            raise InputError("; ".join(bad))
        cols = {name: a.astype(np.float64, copy=False) for name, a in cols.items()}
        return cols, dtypes, (n if n is not None else 0)

    def _target_inputs(self, pipelines, with_targets: bool) -> tuple[list[str], dict[str, str]]:
        names: list[str] = []
        why: dict[str, str] = {}
        if with_targets:
            for s in self.schema.targets:
                names.append(s.name)
                why[s.name] = "target"
        for s in self.schema.targets:
            for c in pipelines[s.name].context_names:
                if c not in why:
                    names.append(c)
                    why[c] = f"condition that target {s.name!r} is relative to"
        return names, why

    # -- fit ------------------------------------------------------------------------------------

    def fit(
        self, data: Mapping[str, np.ndarray], weights: np.ndarray | None = None
    ) -> Preprocessor:
        """Fit every feature's pipeline and record dtypes and the conditions' domain.

        Parameters
        ----------
        data : mapping of str to array of shape (n,)
            Raw columns of all conditions and targets (physical units); extra columns are
            ignored.
        weights : array of shape (n,), optional
            Per-row weights, e.g. sWeights (negative values allowed, positive sum).

        Returns
        -------
        Preprocessor
            ``self``.

        Raises
        ------
        InputError
            Missing columns, unequal lengths, NaN/inf, or values a transform cannot take.
        """
        names = self.schema.names
        why = {s.name: s.role for s in self.schema}
        cols, dtypes, n = self._columns(data, names, why)
        if n == 0:
            raise InputError("no rows to fit")
        w = check_weights(weights, n, "fit")
        pipelines = {s.name: FeaturePipeline(s) for s in self.schema}
        context = {s.name: cols[s.name] for s in self.schema.conditions}
        domain: dict[str, dict[str, Any]] = {}
        for s in self.schema.conditions:
            x = cols[s.name]
            pipe = pipelines[s.name]
            pipe._fit(x, None, w, _rng(None), dtypes[s.name])
            if s.kind == "categorical":
                last = pipe.transforms[-1]
                cats = last.classes if isinstance(last, _Categorical) else np.unique(x)
                domain[s.name] = {"categories": [float(c) for c in cats]}
            elif pipe.flag is not None:
                idx = pipe.flag.match(x)
                dom: dict[str, Any] = {}
                ordinary = x[idx == 0]
                if len(ordinary):
                    dom.update(min=float(ordinary.min()), max=float(ordinary.max()))
                seen = np.unique(idx[idx > 0])
                dom["sentinels"] = [float(pipe.flag.values[k - 1]) for k in seen]
                domain[s.name] = dom
            else:
                domain[s.name] = {"min": float(x.min()), "max": float(x.max())}
        rng = _rng(None)
        for s in self.schema.targets:
            pipelines[s.name]._fit(cols[s.name], context, w, rng, dtypes[s.name])
        self._pipelines = pipelines
        self._dtypes = dtypes
        self._domain = domain
        self._n_fit = n
        self._weighted = w is not None
        return self

    # -- conditions -----------------------------------------------------------------------------

    def transform_conditions(self, data: Mapping[str, np.ndarray]) -> np.ndarray:
        """Raw condition columns -> model condition matrix.

        Parameters
        ----------
        data : mapping of str to array of shape (n,)
            Must hold every condition.

        Returns
        -------
        ndarray of float32, shape (n, condition_dim)
            Columns as in :attr:`condition_columns`.
        """
        p = self._require_fitted()
        specs = self.schema.conditions
        cols, _, n = self._columns(
            data, [s.name for s in specs], {s.name: "condition" for s in specs}
        )
        out = np.empty((n, self.condition_dim), dtype=np.float32)
        j = 0
        for s in specs:
            y = p[s.name]._forward(cols[s.name], None, None)[0]
            k = p[s.name].n_out
            out[:, j : j + k] = y.reshape(n, k)
            j += k
        return out

    def inverse_conditions(self, c: np.ndarray) -> dict[str, np.ndarray]:
        """Model condition matrix -> raw condition columns.

        Parameters
        ----------
        c : array of shape (n, condition_dim)

        Returns
        -------
        dict of str to ndarray of shape (n,)
            Integer and categorical conditions in their recorded dtype, others float64.
        """
        p = self._require_fitted()
        c = self._matrix(c, self.condition_dim, self.condition_columns, "condition")
        out: dict[str, np.ndarray] = {}
        j = 0
        for s in self.schema.conditions:
            k = p[s.name].n_out
            y = c[:, j] if k == 1 else c[:, j : j + k]
            out[s.name] = self._restore(s, p[s.name].inverse(y, None))
            j += k
        return out

    def out_of_domain(self, data: Mapping[str, np.ndarray]) -> dict[str, int]:
        """Count the rows of each condition outside the domain seen in fit.

        Parameters
        ----------
        data : mapping of str to array of shape (n,)
            Must hold every condition.

        Returns
        -------
        dict of str to int
            For each condition, the number of values below ``min``, above ``max`` or not
            among the fitted categories.
        """
        p = self._require_fitted()
        specs = self.schema.conditions
        cols, _, _ = self._columns(
            data, [s.name for s in specs], {s.name: "condition" for s in specs}
        )
        counts = {}
        for s in specs:
            x, dom = cols[s.name], self._domain[s.name]
            if "categories" in dom:
                counts[s.name] = int(np.count_nonzero(~np.isin(x, dom["categories"])))
                continue
            flag = p[s.name].flag
            if flag is None:
                counts[s.name] = int(np.count_nonzero((x < dom["min"]) | (x > dom["max"])))
                continue
            idx = flag.match(x)
            ordinary = idx == 0
            if "min" in dom:
                inside = ordinary & (x >= dom["min"]) & (x <= dom["max"])
            else:
                inside = np.zeros(len(x), dtype=bool)
            seen = [k + 1 for k, v in enumerate(flag.values) if float(v) in dom["sentinels"]]
            inside |= np.isin(idx, seen)
            counts[s.name] = int(np.count_nonzero(~inside))
        return counts

    # -- targets --------------------------------------------------------------------------------

    def transform_targets(
        self, data: Mapping[str, np.ndarray], rng: np.random.Generator | int | None = None
    ) -> np.ndarray:
        """Raw target columns -> model target matrix.

        Parameters
        ----------
        data : mapping of str to array of shape (n,)
            Every target, and the conditions that targets are relative to.
        rng : numpy.random.Generator, int or None
            Dequantisation noise; ``None``: fixed seed :data:`DEFAULT_SEED` (deterministic).

        Returns
        -------
        ndarray of float32, shape (n, target_dim)
        """
        p = self._require_fitted()
        names, why = self._target_inputs(p, with_targets=True)
        cols, _, n = self._columns(data, names, why)
        gen = _rng(rng)
        out = np.empty((n, self.target_dim), dtype=np.float32)
        j = 0
        for s in self.schema.targets:
            k = p[s.name].n_out
            out[:, j : j + k] = p[s.name]._forward(cols[s.name], cols, gen)[0].reshape(n, k)
            j += k
        return out

    def inverse_targets(
        self, z: np.ndarray, data: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Model target matrix (e.g. generated) -> raw target columns.

        Parameters
        ----------
        z : array of shape (n, target_dim)
            float32 or float64.
        data : mapping of str to array of shape (n,)
            The conditions that targets are relative to (may be empty otherwise).

        Returns
        -------
        dict of str to ndarray of shape (n,)
            Integer and categorical targets in their recorded dtype (e.g. ``uint8``), the others
            as float64, in physical units.
        """
        p = self._require_fitted()
        z = self._matrix(z, self.target_dim, self.target_columns, "target")
        names, why = self._target_inputs(p, with_targets=False)
        ctx, _, _ = self._columns(data, names, why, n=len(z))
        out: dict[str, np.ndarray] = {}
        j = 0
        for s in self.schema.targets:
            k = p[s.name].n_out
            y = z[:, j] if k == 1 else z[:, j : j + k]
            out[s.name] = self._restore(s, p[s.name].inverse(y, ctx))
            j += k
        return out

    def target_log_abs_det_jacobian(
        self, data: Mapping[str, np.ndarray], rng: np.random.Generator | int | None = None
    ) -> np.ndarray:
        """``sum over targets of log|dz/dx|`` at the raw targets, shape (n,).

        ``log p(x | c) = log p_z(z | c) + target_log_abs_det_jacobian(x)`` gives the density in
        the targets' physical units (per unit of the integer for discrete targets).

        Parameters
        ----------
        data : mapping of str to array of shape (n,)
            As for :meth:`transform_targets`.
        rng : numpy.random.Generator, int or None
            Only matters when a non-affine step follows ``dequantize``; the same ``rng`` state
            as given to :meth:`transform_targets` evaluates at the same dequantised point.

        Returns
        -------
        ndarray of float64, shape (n,)
        """
        p = self._require_fitted()
        names, why = self._target_inputs(p, with_targets=True)
        cols, _, n = self._columns(data, names, why)
        gen = _rng(rng)
        total = np.zeros(n)
        for s in self.schema.targets:
            total += p[s.name]._forward(cols[s.name], cols, gen, log_det=True)[1]
        return total

    # -- helpers --------------------------------------------------------------------------------

    def _matrix(self, m: np.ndarray, dim: int, columns: list[str], what: str) -> np.ndarray:
        m = np.asarray(m)
        if m.ndim != 2 or m.shape[1] != dim:
            raise InputError(f"the {what} matrix must have shape (n, {dim}), got {m.shape}")
        if m.dtype.kind not in "biuf":
            raise InputError(f"the {what} matrix must hold numbers, got dtype {m.dtype}")
        # Columns are converted to float64 one at a time by the pipelines.
        finite = np.isfinite(m)
        if not finite.all():
            bad = (~finite).sum(axis=0)
            parts = [f"{columns[j]!r}: {int(b)} of {len(m)}" for j, b in enumerate(bad) if b]
            raise InputError(
                f"non-finite values (NaN or inf) in the {what} matrix: " + "; ".join(parts)
            )
        return m

    def _restore(self, spec: FeatureSpec, x: np.ndarray) -> np.ndarray:
        if spec.kind in ("integer", "categorical"):
            return _cast(x, self._dtypes.get(spec.name, np.dtype(np.float64)))
        return x

    # -- serialisation ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict: schema, fitted pipelines, dtypes, domain."""
        # Version 2 added sentinels; files without them keep version 1, readable by older hepgen.
        version = _FORMAT_VERSION if any(s.sentinels for s in self.schema) else 1
        d: dict[str, Any] = {
            "format": _FORMAT,
            "format_version": version,
            "hepgen_version": __version__,
            "schema": self.schema.to_dict(),
            "fitted": self.is_fitted,
        }
        if self._pipelines is not None:
            d["n_fit"] = self._n_fit
            d["weighted"] = self._weighted
            d["dtypes"] = {k: v.name for k, v in self._dtypes.items()}
            d["domain"] = self.domain
            d["pipelines"] = {k: _pipeline_entry(p) for k, p in self._pipelines.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Preprocessor:
        """Build from :meth:`to_dict` output.

        Raises
        ------
        ConfigError
            Wrong format or version, or invalid content.
        """
        if not isinstance(d, Mapping) or d.get("format") != _FORMAT:
            raise ConfigError(f"not a hepgen preprocessor (expected 'format': {_FORMAT!r})")
        version = d.get("format_version")
        if not isinstance(version, int) or version > _FORMAT_VERSION:
            raise ConfigError(
                f"preprocessor format_version {version!r} is not supported (this hepgen reads "
                f"up to {_FORMAT_VERSION}); upgrade hepgen"
            )
        pre = cls(FeatureSchema.from_dict(d.get("schema", {})))
        if not d.get("fitted"):
            return pre
        try:
            pipes = d["pipelines"]
            dtypes = {k: np.dtype(v) for k, v in d["dtypes"].items()}
            domain = {k: dict(v) for k, v in d["domain"].items()}
            n_fit = int(d["n_fit"])
            weighted = bool(d["weighted"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"fitted preprocessor: missing or invalid entry {exc}") from None
        pipelines = {}
        for spec in pre.schema:
            if spec.name not in pipes:
                raise ConfigError(f"fitted preprocessor: no pipeline for feature {spec.name!r}")
            entry = pipes[spec.name]
            if isinstance(entry, Mapping):  # format_version 2: a feature with sentinels
                unknown = [k for k in entry if k not in ("transforms", "sentinel")]
                if unknown or "transforms" not in entry:
                    raise ConfigError(
                        f"fitted preprocessor: the pipeline of feature {spec.name!r} must be a "
                        "list of transforms or {'transforms': [...], 'sentinel': {...}}"
                    )
                pipe = FeaturePipeline._build(spec, entry["transforms"], entry.get("sentinel"))
            else:
                pipe = FeaturePipeline._build(spec, entry, None)
            if not pipe.is_fitted:
                raise ConfigError(f"fitted preprocessor: feature {spec.name!r} lacks fitted state")
            pipelines[spec.name] = pipe
        pre._pipelines = pipelines
        pre._dtypes = dtypes
        pre._domain = domain
        pre._n_fit = n_fit
        pre._weighted = weighted
        return pre

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` as JSON, atomically (temporary file + ``os.replace``).

        Parameters
        ----------
        path : str or path-like
            Target file, conventionally ``*.json``; missing parent folders are created.

        Returns
        -------
        pathlib.Path
            The written path.
        """
        return atomic_write_text(path, _dumps(self.to_dict()) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Preprocessor:
        """Read a file written by :meth:`save`.

        Raises
        ------
        InputError
            The file is missing or not JSON.
        ConfigError
            The JSON is not a valid preprocessor.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputError(f"preprocessor file {str(path)!r} not found") from None
        except OSError as exc:
            raise InputError(f"cannot read preprocessor file {str(path)!r}: {exc}") from None
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"preprocessor file {str(path)!r} is not valid JSON: {exc}") from None
        return cls.from_dict(d)

    def __repr__(self) -> str:
        state = "fitted" if self.is_fitted else "unfitted"
        return f"Preprocessor({self.schema!r}, {state})"


def _pipeline_entry(pipe: FeaturePipeline) -> list[dict[str, Any]] | dict[str, Any]:
    """A pipeline in the preprocessor's JSON: its transforms, plus the sentinel state if any."""
    d = pipe.to_dict()
    if "sentinel" in d:
        return {"transforms": d["transforms"], "sentinel": d["sentinel"]}
    return d["transforms"]


def _dumps(obj: Any, indent: int = 0) -> str:
    """JSON with nested objects indented but lists of scalars on one line (compact knots)."""
    pad = "  " * (indent + 1)
    if isinstance(obj, Mapping) and obj:
        items = [f"{pad}{json.dumps(str(k))}: {_dumps(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * indent + "}"
    if isinstance(obj, list) and any(isinstance(v, (Mapping, list)) for v in obj):
        items = [f"{pad}{_dumps(v, indent + 1)}" for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + "  " * indent + "]"
    return json.dumps(obj, allow_nan=False)
