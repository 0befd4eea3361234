"""The base of every settings class, and the one way their problems are reported.

Settings are frozen pydantic models: unknown keys, values of the wrong type and values out of
range are errors that name the key, with did-you-mean suggestions, whether the settings come
from a YAML file (``key 'model.flow.n_bins': ...``), a ``--set`` override or Python
(``FlowSettings(n_bins=0)``: ``flow setting 'n_bins': ...``).  Nothing here imports torch, so
reading a configuration stays fast.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, TypeVar

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from hepgen.devices import DEVICE_NAMES, check_device
from hepgen.errors import ConfigError, did_you_mean

__all__ = [
    "Device",
    "Float",
    "NestedProblems",
    "Settings",
    "Strict",
    "check_nested",
    "describe_error",
    "one_line",
    "problems",
]

S = TypeVar("S", bound="Settings")


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(str(text).split())


def _yaml_number(value: Any) -> Any:
    """A numeric string as a float: YAML 1.1 reads ``1e-3`` (no dot) as a string."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _device(value: str) -> str:
    try:
        return check_device(value)
    except ConfigError:
        raise ValueError(f"expected {DEVICE_NAMES}") from None


#: A float setting: ints and numeric strings (``"3e-4"``) are accepted, bools are not.
Float = Annotated[float, BeforeValidator(_yaml_number)]
#: A device setting (:mod:`hepgen.devices`): ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
Device = Annotated[str, AfterValidator(_device), Field(description=DEVICE_NAMES)]


class Strict(BaseModel):
    """A section of a configuration file: unknown keys are errors, types are not coerced."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Settings(Strict):
    """Base of the settings classes: validated on creation, immutable, JSON-ready.

    Subclasses set :attr:`family` (``"flow"``, ``"training"``, ...), named in the messages of
    settings built in Python.  ``Settings(**values)`` and :meth:`from_dict` raise
    :class:`~hepgen.errors.ConfigError` (never pydantic's ``ValidationError``).
    """

    family: ClassVar[str] = "settings"

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as err:
            raise ConfigError(
                one_line(problems(err, type(self), noun=f"{self.family} setting"))
            ) from None

    # Marks the override as pydantic's own __init__, so that validating a configuration
    # (nested settings) reports pydantic's located errors instead of calling it.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @model_validator(mode="before")
    @classmethod
    def _plain_scalars(cls, data: Any) -> Any:
        """numpy scalars as Python scalars (a value computed with numpy is still a number)."""
        if isinstance(data, Mapping):
            return {k: v.item() if isinstance(v, np.generic) else v for k, v in data.items()}
        return data

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain dict of JSON types (every field)."""
        return self.model_dump(mode="json")

    @classmethod
    def from_dict(cls: type[S], values: Any) -> S:
        """Build settings from a mapping such as :meth:`to_dict` writes; missing keys take
        their defaults.

        Raises
        ------
        ConfigError
            ``values`` is not a mapping, or has unknown keys or invalid values (all named).
        """
        if not isinstance(values, Mapping):
            raise ConfigError(
                f"{cls.family} settings must be a mapping, got {type(values).__name__}"
            )
        bad = [k for k in values if not isinstance(k, str)]
        if bad:
            raise ConfigError(f"{cls.family} settings: keys must be names, got {bad[0]!r}")
        return cls(**values)

    def replace(self: S, **changes: Any) -> S:
        """A copy with ``changes`` applied, validated like new settings."""
        return type(self)(**{**self.model_dump(), **changes})


class NestedProblems(ValueError):
    """Raised by a validator with problems already described with their full keys;
    :func:`describe_error` passes its message on unchanged."""


def check_nested(model: type[BaseModel], value: Any, key: str) -> None:
    """Validate ``value`` (a section kept as a plain mapping) against ``model``.

    Raises
    ------
    NestedProblems
        With every problem as ``key '<key>.<field>': ...`` (did-you-mean suggestions for
        unknown keys).
    """
    try:
        model.model_validate(value)
    except ValidationError as err:
        raise NestedProblems(problems(err, model, prefix=key)) from None


def problems(
    err: ValidationError, model: type[BaseModel], *, prefix: str = "", noun: str = "key"
) -> str:
    """Every problem of ``err`` as one ``; ``-separated text.

    Parameters
    ----------
    err : ValidationError
        From validating ``model``.
    model : pydantic model class
        What was validated (its fields give the did-you-mean suggestions).
    prefix : str
        The section's full key (``"model.flow"``), put before every key.
    noun : str
        What a key is called: ``"key"`` (files) or ``"flow setting"`` (Python).
    """
    return "; ".join(describe_error(e, model, prefix=prefix, noun=noun) for e in err.errors())


def describe_error(
    err: Mapping[str, Any], model: type[BaseModel], *, prefix: str = "", noun: str = "key"
) -> str:
    """One pydantic error as ``key 'a.b': message, got value`` (see :func:`problems`)."""
    nested = (err.get("ctx") or {}).get("error")
    if isinstance(nested, NestedProblems):
        return str(nested)
    key = _location(err["loc"])
    if prefix:
        key = f"{prefix}{'' if not key or key.startswith('[') else '.'}{key}"
    kind = err["type"]
    if kind == "extra_forbidden":
        suggestion = did_you_mean(str(err["loc"][-1]), _allowed_keys(model, err["loc"]))
        return f"unknown {noun} '{key}'{suggestion}"
    if kind == "missing":
        return f"missing required {noun} '{key}'"
    got = err.get("input")
    got_text = f", got {_short(got)}" if not isinstance(got, dict | list) else ""
    message = err["msg"].removeprefix("Value error, ")
    return f"{noun} '{key}': {message}{got_text}" if key else f"{message}{got_text}"


def _location(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and ("[" in part or part in ("str", "dict[str,any]")):
            continue  # union-member tags that pydantic puts into the location
        else:
            text = str(part)
            if not text.isprintable():  # a key with a newline or a control character
                text = text.encode("unicode_escape").decode("ascii")
            out += ("." if out else "") + text
    return out


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names of the (sub-)model at ``loc``, for did-you-mean suggestions."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        annotation = field.annotation
        candidates = [annotation, *getattr(annotation, "__args__", ())]
        for arg in list(candidates):  # list[Model] and Model | None
            candidates.extend(getattr(arg, "__args__", ()))
        current = next(
            (c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None
        )
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}))


def _short(value: Any, limit: int = 80) -> str:
    """``repr(value)`` on one line, shortened to about ``limit`` characters."""
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
