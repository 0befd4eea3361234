"""Feature schema: which columns are conditions (gen level) and which are targets (reco level).

hepgen learns a detector response ``p(reco | gen)``: the gen-level object features are the
*conditions* of the model, the reco-level features its *targets*.  A :class:`FeatureSpec`
describes one column (its role, its kind of values, a ``relative_to`` column, sentinel values)
and :class:`FeatureSchema` is the validated, ordered list of them; :func:`default_transforms`
gives the default chain of preprocessing steps of each kind.  The fitted map from raw columns
to model matrices is :mod:`hepgen.preprocessing`.  The kinds and their default chains, and
sentinel values, are described in ``docs/data.md``, section "Feature schema".

Examples
--------
>>> from hepgen.features import FeatureSchema, FeatureSpec
>>> schema = FeatureSchema([
...     FeatureSpec("GenJet_pt", "condition", "positive"),
...     FeatureSpec("GenJet_hadronFlavour", "condition", "categorical"),
...     FeatureSpec("Jet_pt", "target", "positive", relative_to="GenJet_pt"),
...     FeatureSpec("Jet_btagDeepFlavB", "target", "bounded", bounds=(0.0, 1.0),
...                 sentinels=(-1, -3000)),
... ])
>>> [f.name for f in schema.targets]
['Jet_pt', 'Jet_btagDeepFlavB']
>>> schema["Jet_btagDeepFlavB"].sentinels
(-1.0, -3000.0)
>>> FeatureSchema.from_dict(schema.to_dict()) == schema
True
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from hepgen.errors import ConfigError, did_you_mean

__all__ = [
    "KINDS",
    "ROLES",
    "SENTINEL_RTOL",
    "FeatureSchema",
    "FeatureSpec",
    "Kind",
    "Role",
    "default_transforms",
]

Role = Literal["condition", "target"]
Kind = Literal["continuous", "positive", "bounded", "integer", "categorical"]

#: The allowed values of :attr:`FeatureSpec.role`.
ROLES: tuple[str, ...] = get_args(Role)
#: The allowed values of :attr:`FeatureSpec.kind`.
KINDS: tuple[str, ...] = get_args(Kind)

#: Relative tolerance for recognising a sentinel ``s``: ``|x - s| <= SENTINEL_RTOL * |s|``
#: (exact equality for ``s = 0``).  Covers a sentinel stored in float32 (relative rounding
#: <= 6e-8); two sentinels of one feature must be further apart than this.
SENTINEL_RTOL = 1e-6

#: Transform types that refer to another column through their ``to`` setting.
_RELATIVE_TYPES = ("ratio", "difference")


def _where(name: object) -> str:
    return f"feature {name!r}"


def _one_of(values: Sequence[str]) -> str:
    return ", ".join(repr(v) for v in values)


def _finite_number(value: object, where: str, key: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise ConfigError(f"{where}: key {key!r} must hold numbers, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"{where}: key {key!r} must hold finite numbers, got {value!r}")
    return value


def _plain_number(value: float) -> float | int:
    """``5.0 -> 5`` for readable JSON/YAML; other floats unchanged."""
    if value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


@dataclass(frozen=True)
class FeatureSpec:
    """One column of the model: its role, the kind of values it holds and how to preprocess it.

    Parameters
    ----------
    name : str
        Column (branch) name, e.g. ``"Jet_pt"``.
    role : {"condition", "target"}
        ``"condition"``: a gen-level input of the model; ``"target"``: a reco-level output.
    kind : {"continuous", "positive", "bounded", "integer", "categorical"}
        What the values are; selects the default pipeline (see the module docstring).
    bounds : (float, float) or None
        ``(low, high)`` with ``low < high``, in the column's units.  Required for ``bounded``
        (values may sit exactly on a bound); optional for ``integer``, where it is the valid
        range (values outside it are an error, generated values are clipped into it).
    categories : tuple of float or None
        The allowed values of a ``categorical`` feature, in the order of the one-hot columns /
        indices.  When ``None`` the sorted distinct values seen in ``fit`` are used.
    relative_to : str or None
        Name of a *condition*: a positive target is modelled as the ratio to it, a continuous
        target as the difference to it.  Targets only.
    periodic : bool
        The feature is an angle in [-pi, pi) (rad): differences are wrapped into [-pi, pi) and
        generated values are wrapped back into it.  Continuous kind only.
    transforms : tuple of dict or None
        An explicit pipeline replacing the kind's default, e.g.
        ``({"type": "log"}, {"type": "quantile_gaussian", "n_quantiles": 500})``; each dict is
        a transform's ``type`` and settings (see :mod:`hepgen.transforms`).  The
        ``relative_to`` step is still prepended.  ``logit``, ``dequantize``, ``onehot`` and
        ``index`` take their bounds/categories from the spec when the dict omits them.
    sentinels : tuple of float or None
        Special values stored exactly (defaults such as ``-1``, ``-999``, ``-3000``, or an exact
        ``0``), each modelled as a point mass: a flag column beside the continuous one (see the
        module docstring).  Finite and distinct; may lie outside ``bounds``.  Not allowed for
        kind ``categorical`` nor with a ``onehot`` step.

    Raises
    ------
    ConfigError
        For an invalid combination; the message names the feature and the key.

    Notes
    -----
    The spec is immutable and hashable; lists given for the tuple fields are converted.

    Examples
    --------
    >>> spec = FeatureSpec("Jet_eta", "target", relative_to="GenJet_eta")
    >>> spec.to_dict()
    {'name': 'Jet_eta', 'role': 'target', 'kind': 'continuous', 'relative_to': 'GenJet_eta'}
    >>> FeatureSpec.from_dict(spec.to_dict()) == spec
    True
    """

    name: str
    role: Role
    kind: Kind = "continuous"
    bounds: tuple[float, float] | None = None
    categories: tuple[float, ...] | None = None
    relative_to: str | None = None
    periodic: bool = False
    transforms: tuple[dict, ...] | None = None
    sentinels: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ConfigError(f"feature name must be a non-empty string, got {self.name!r}")
        where = _where(self.name)
        if self.role not in ROLES:
            raise ConfigError(
                f"{where}: key 'role': unknown role {self.role!r}; expected one of "
                f"{_one_of(ROLES)}{did_you_mean(str(self.role), ROLES)}"
            )
        if self.kind not in KINDS:
            raise ConfigError(
                f"{where}: key 'kind': unknown kind {self.kind!r}; expected one of "
                f"{_one_of(KINDS)}{did_you_mean(str(self.kind), KINDS)}"
            )
        self._normalise_bounds(where)
        self._normalise_categories(where)
        self._check_relative(where)
        if not isinstance(self.periodic, bool):
            raise ConfigError(
                f"{where}: key 'periodic' must be true or false, got {self.periodic!r}"
            )
        if self.periodic and self.kind != "continuous":
            raise ConfigError(
                f"{where}: key 'periodic' is only allowed for kind 'continuous' "
                f"(an angle in [-pi, pi)), not {self.kind!r}"
            )
        self._normalise_transforms(where)
        self._normalise_sentinels(where)

    # -- validation helpers (run once, in __post_init__) -------------------------------------

    def _normalise_bounds(self, where: str) -> None:
        bounds = self.bounds
        if bounds is None:
            if self.kind == "bounded":
                raise ConfigError(
                    f"{where}: key 'bounds' is required for kind 'bounded' (give [low, high])"
                )
            return
        if self.kind not in ("bounded", "integer"):
            raise ConfigError(
                f"{where}: key 'bounds' is only allowed for kinds 'bounded' and 'integer', "
                f"not {self.kind!r}"
            )
        if isinstance(bounds, (str, bytes)) or not isinstance(bounds, Sequence) or len(bounds) != 2:
            raise ConfigError(f"{where}: key 'bounds' must be [low, high], got {bounds!r}")
        lo, hi = (_finite_number(b, where, "bounds") for b in bounds)
        if not lo < hi:
            raise ConfigError(f"{where}: key 'bounds' needs low < high, got [{lo:g}, {hi:g}]")
        object.__setattr__(self, "bounds", (lo, hi))

    def _normalise_categories(self, where: str) -> None:
        cats = self.categories
        if cats is None:
            return
        if self.kind != "categorical":
            raise ConfigError(
                f"{where}: key 'categories' is only allowed for kind 'categorical', not {self.kind!r}"
            )
        if isinstance(cats, (str, bytes)) or not isinstance(cats, Sequence) or len(cats) == 0:
            raise ConfigError(
                f"{where}: key 'categories' must be a non-empty list of numbers, got {cats!r}"
            )
        values = tuple(_finite_number(c, where, "categories") for c in cats)
        if len(set(values)) != len(values):
            dup = sorted({v for v in values if values.count(v) > 1})
            raise ConfigError(
                f"{where}: key 'categories' lists {', '.join(f'{d:g}' for d in dup)} more than once"
            )
        object.__setattr__(self, "categories", values)

    def _check_relative(self, where: str) -> None:
        rel = self.relative_to
        if rel is None:
            return
        if not isinstance(rel, str) or not rel:
            raise ConfigError(f"{where}: key 'relative_to' must be a feature name, got {rel!r}")
        if self.role != "target":
            raise ConfigError(f"{where}: key 'relative_to' is only allowed for targets")
        if self.kind not in ("positive", "continuous"):
            raise ConfigError(
                f"{where}: key 'relative_to' is only allowed for kinds 'positive' (ratio) and "
                f"'continuous' (difference), not {self.kind!r}"
            )
        if rel == self.name:
            raise ConfigError(f"{where}: key 'relative_to' names the feature itself")

    def _normalise_transforms(self, where: str) -> None:
        tfs = self.transforms
        if tfs is None:
            return
        if isinstance(tfs, (str, bytes, Mapping)) or not isinstance(tfs, Sequence):
            raise ConfigError(
                f"{where}: key 'transforms' must be a list of transform settings, got {tfs!r}"
            )
        # Imported when needed: the transforms (a lower layer) import scipy, which a schema
        # without explicit steps does not need.
        from hepgen.transforms import Transform

        normalised = []
        for i, cfg in enumerate(tfs):
            step = f"{where}: key 'transforms' step {i + 1}"
            if not isinstance(cfg, Mapping):
                raise ConfigError(f"{step} must be a mapping with a 'type', got {cfg!r}")
            # Validates the type (with suggestions) and the settings; no fitted state allowed.
            try:
                transform = Transform.from_config(_complete_config(cfg, self), feature=self.name)
            except ConfigError as err:
                raise ConfigError(str(err).replace(f"{where}: ", f"{step}: ", 1)) from None
            kind = transform.type
            if kind == "onehot" and (self.role != "condition" or i != len(tfs) - 1):
                raise ConfigError(
                    f"{step}: 'onehot' is only allowed as the last step of a condition "
                    f"(targets need one column each)"
                )
            if kind in _RELATIVE_TYPES:
                if self.role != "target":
                    raise ConfigError(f"{step}: {kind!r} is only allowed for targets")
                if self.relative_to is not None:
                    raise ConfigError(
                        f"{step}: {kind!r} conflicts with relative_to={self.relative_to!r}, "
                        "which already puts that step first; remove one of them"
                    )
            normalised.append(copy.deepcopy(dict(cfg)))
        object.__setattr__(self, "transforms", tuple(normalised))

    def _normalise_sentinels(self, where: str) -> None:
        sents = self.sentinels
        if sents is None:
            return
        if self.kind == "categorical":
            raise ConfigError(
                f"{where}: key 'sentinels' is not allowed for kind 'categorical' (list the "
                "value among the categories instead)"
            )
        if (
            isinstance(sents, (str, bytes, Mapping))
            or not isinstance(sents, (Sequence, np.ndarray))
            or len(sents) == 0
        ):
            raise ConfigError(
                f"{where}: key 'sentinels' must be a non-empty list of numbers, got {sents!r}"
            )
        values = tuple(_finite_number(v, where, "sentinels") for v in sents)
        if len(set(values)) != len(values):
            dup = sorted({v for v in values if values.count(v) > 1})
            raise ConfigError(
                f"{where}: key 'sentinels' lists {', '.join(f'{d:g}' for d in dup)} more than once"
            )
        for i, a in enumerate(values):
            for b in values[i + 1 :]:
                if abs(a - b) <= SENTINEL_RTOL * max(abs(a), abs(b)):
                    raise ConfigError(
                        f"{where}: key 'sentinels': {a!r} and {b!r} are too close to tell apart "
                        f"(relative tolerance {SENTINEL_RTOL:g})"
                    )
        if any(cfg.get("type") == "onehot" for cfg in self.transforms or ()):
            raise ConfigError(
                f"{where}: key 'sentinels' is not allowed with a 'onehot' step (a categorical "
                "feature: list the value among the categories instead)"
            )
        object.__setattr__(self, "sentinels", values)

    # -- public API ---------------------------------------------------------------------------

    @property
    def references(self) -> tuple[str, ...]:
        """Names of the conditions this feature's pipeline reads (``relative_to``, ``to``)."""
        refs = [self.relative_to] if self.relative_to else []
        for cfg in self.transforms or ():
            if cfg.get("type") in _RELATIVE_TYPES and cfg.get("to") not in refs:
                refs.append(cfg["to"])
        return tuple(refs)

    def to_dict(self) -> dict:
        """Plain, JSON-ready dict; fields at their default value are left out.

        Returns
        -------
        dict
            Keys ``name``, ``role``, ``kind`` and any non-default field.
        """
        d: dict[str, Any] = {"name": self.name, "role": self.role, "kind": self.kind}
        if self.bounds is not None:
            d["bounds"] = list(self.bounds)
        if self.categories is not None:
            d["categories"] = [_plain_number(c) for c in self.categories]
        if self.relative_to is not None:
            d["relative_to"] = self.relative_to
        if self.periodic:
            d["periodic"] = True
        if self.transforms is not None:
            d["transforms"] = copy.deepcopy([dict(t) for t in self.transforms])
        if self.sentinels is not None:
            d["sentinels"] = [_plain_number(v) for v in self.sentinels]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureSpec:
        """Build a spec from :meth:`to_dict` output (or a config file's mapping).

        Parameters
        ----------
        d : mapping
            Must hold ``name`` and ``role``; the other fields are optional.

        Raises
        ------
        ConfigError
            Missing or unknown keys (with suggestions) or invalid values.
        """
        if not isinstance(d, Mapping):
            raise ConfigError(f"a feature must be a mapping, got {d!r}")
        keys = [f.name for f in cls.__dataclass_fields__.values()]
        name = d.get("name")
        where = _where(name) if name is not None else "feature"
        for key in ("name", "role"):
            if key not in d:
                raise ConfigError(f"{where}: missing key {key!r}")
        unknown = [k for k in d if k not in keys]
        if unknown:
            k = unknown[0]
            raise ConfigError(
                f"{where}: unknown key {k!r}; expected some of {_one_of(keys)}"
                f"{did_you_mean(str(k), keys)}"
            )
        return cls(**dict(d))

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))


def default_transforms(spec: FeatureSpec) -> list[dict[str, Any]]:
    """The pipeline of a feature as a list of transform settings, before fitting.

    The kind's default chain (see the module docstring) or ``spec.transforms``, with the
    ``relative_to`` step first and bounds/categories filled in from the spec.

    Parameters
    ----------
    spec : FeatureSpec
        The feature.

    Returns
    -------
    list of dict
        ``[{"type": ..., **settings}, ...]``.

    Examples
    --------
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


class FeatureSchema:
    """An ordered, validated list of :class:`FeatureSpec`: the conditions and the targets.

    Parameters
    ----------
    features : sequence of FeatureSpec (or of dicts accepted by :meth:`FeatureSpec.from_dict`)
        The features in the order of the model's columns (conditions and targets keep their
        relative order).

    Raises
    ------
    ConfigError
        No features, duplicate names, or a ``relative_to`` / ``to`` that does not name an
        existing *condition*.

    Attributes
    ----------
    conditions : list of FeatureSpec
        The features with role ``"condition"``, in order.
    targets : list of FeatureSpec
        The features with role ``"target"``, in order.
    names : list of str
        All feature names, in order.

    Examples
    --------
    >>> schema = FeatureSchema([
    ...     FeatureSpec("GenJet_eta", "condition"),
    ...     FeatureSpec("Jet_eta", "target", relative_to="GenJet_eta"),
    ... ])
    >>> len(schema), schema["Jet_eta"].relative_to
    (2, 'GenJet_eta')
    """

    def __init__(self, features: Sequence[FeatureSpec]):
        if isinstance(features, (str, bytes, Mapping)) or not isinstance(features, Sequence):
            raise ConfigError(f"features must be a list of feature specs, got {features!r}")
        specs = [f if isinstance(f, FeatureSpec) else FeatureSpec.from_dict(f) for f in features]
        if not specs:
            raise ConfigError("the feature schema has no features")
        seen: dict[str, int] = {}
        for i, spec in enumerate(specs):
            if spec.name in seen:
                raise ConfigError(
                    f"feature {spec.name!r}: duplicate name (features {seen[spec.name] + 1} "
                    f"and {i + 1})"
                )
            seen[spec.name] = i
        by_name = {s.name: s for s in specs}
        conditions = [s.name for s in specs if s.role == "condition"]
        for spec in specs:
            refs = [("relative_to", spec.relative_to)] if spec.relative_to else []
            refs += [
                ("transforms", cfg["to"])
                for cfg in spec.transforms or ()
                if cfg.get("type") in _RELATIVE_TYPES
            ]
            for key, ref in refs:
                other = by_name.get(ref)
                if other is None:
                    raise ConfigError(
                        f"feature {spec.name!r}: key {key!r} names {ref!r}, which is not a "
                        f"feature of the schema{did_you_mean(ref, conditions)}"
                    )
                if other.role != "condition":
                    raise ConfigError(
                        f"feature {spec.name!r}: key {key!r} names {ref!r}, which is a "
                        f"{other.role}; it must name a condition"
                    )
                if other.kind == "categorical":
                    raise ConfigError(
                        f"feature {spec.name!r}: key {key!r} names {ref!r}, which is "
                        "categorical; ratios and differences need a numeric condition"
                    )
        self._features = specs
        self._by_name = by_name
        self.conditions: list[FeatureSpec] = [s for s in specs if s.role == "condition"]
        self.targets: list[FeatureSpec] = [s for s in specs if s.role == "target"]
        self.names: list[str] = [s.name for s in specs]

    def __iter__(self) -> Iterator[FeatureSpec]:
        return iter(self._features)

    def __len__(self) -> int:
        return len(self._features)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> FeatureSpec:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(
                f"no feature {name!r} in the schema{did_you_mean(str(name), self.names)}"
            ) from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FeatureSchema):
            return NotImplemented
        return self._features == other._features

    __hash__ = None  # type: ignore[assignment]  # mutable container semantics, like a list

    def __repr__(self) -> str:
        return (
            f"FeatureSchema(conditions={[s.name for s in self.conditions]}, "
            f"targets={[s.name for s in self.targets]})"
        )

    def to_dict(self) -> dict:
        """Plain, JSON-ready dict ``{"features": [spec.to_dict(), ...]}``."""
        return {"features": [s.to_dict() for s in self._features]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureSchema:
        """Build a schema from :meth:`to_dict` output.

        Raises
        ------
        ConfigError
            When ``d`` is not ``{"features": [...]}`` or a feature is invalid.
        """
        if not isinstance(d, Mapping):
            raise ConfigError(f"a feature schema must be a mapping, got {type(d).__name__}")
        unknown = [k for k in d if k != "features"]
        if unknown:
            raise ConfigError(
                f"feature schema: unknown key {unknown[0]!r}; expected 'features'"
                f"{did_you_mean(str(unknown[0]), ['features'])}"
            )
        if "features" not in d:
            raise ConfigError("feature schema: missing key 'features'")
        return cls(d["features"])
