"""YAML configuration files, validated on load with errors that name the file and the key.

A configuration describes where the paired gen/reco objects come from (``data``) and which
features the model sees (``features``), which generator learns them (``model``) and how it is
trained (``training``). Unknown or mistyped keys, values of the wrong type and
missing required keys are all errors: a typo must never silently fall back to a default.

Example
-------
.. code-block:: yaml

    data:
      files: [sim.root]          # paths or glob patterns, relative to this file
      tree: Events
      gen: GenJet                # collection whose features are the conditions
      reco: Jet                  # collection whose features are the targets
      matching: {method: index, index_branch: Jet_genJetIdx}
    features:
      - {name: GenJet_pt, role: condition, kind: positive}
      - {name: Jet_pt, role: target, kind: positive, relative_to: GenJet_pt}
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from hepgen.errors import ConfigError, did_you_mean
from hepgen.features import FeatureSchema, FeatureSpec

__all__ = [
    "Config",
    "DataConfig",
    "FeatureConfig",
    "MatchingConfig",
    "ModelConfig",
    "TrainingConfig",
    "load_config",
    "parse_config",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class MatchingConfig(_Strict):
    """How reco objects are paired with gen objects."""

    method: Literal["index", "deltar"] = "index"
    index_branch: str | None = Field(
        None, description="Reco branch holding the gen index; default '{reco}_gen{Gen}Idx'"
    )
    max_dr: float = Field(0.4, gt=0, description="Cone size for deltaR matching")


class DataConfig(_Strict):
    """Input files and the gen/reco collections."""

    files: list[str] = Field(default_factory=list, description="ROOT files or glob patterns")
    tree: str = "Events"
    gen: str = Field(description="Gen collection, e.g. GenJet")
    reco: str = Field(description="Reco collection, e.g. Jet")
    matching: MatchingConfig = MatchingConfig()
    step_size: int = Field(100_000, gt=0, description="Events per chunk")
    max_events: int | None = Field(None, gt=0)
    nonfinite: Literal["error", "drop"] = "error"
    weights: str | None = Field(None, description="Per-event weight branch, e.g. genWeight")

    @field_validator("files", mode="before")
    @classmethod
    def _one_file(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @property
    def index_branch(self) -> str:
        """The reco branch with the gen index (``Jet_genJetIdx`` for gen=GenJet, reco=Jet)."""
        if self.matching.index_branch:
            return self.matching.index_branch
        return f"{self.reco}_{self.gen[:1].lower()}{self.gen[1:]}Idx"


class FeatureConfig(_Strict):
    """One feature; see :class:`hepgen.features.FeatureSpec`."""

    name: str
    role: Literal["condition", "target"]
    kind: Literal["continuous", "positive", "bounded", "integer", "categorical"] = "continuous"
    bounds: list[float] | None = None
    categories: list[float] | None = None
    relative_to: str | None = None
    periodic: bool = False
    transforms: list[str | dict[str, Any]] | None = None
    sentinels: list[float] | None = Field(
        None, description="Values stored exactly (e.g. -1, -999 defaults), modelled as a flag"
    )

    @field_validator("bounds")
    @classmethod
    def _two_bounds(cls, value: list[float] | None) -> list[float] | None:
        if value is not None and len(value) != 2:
            raise ValueError(f"expected two numbers [low, high], got {len(value)}")
        return value

    def to_spec(self) -> FeatureSpec:
        transforms = None
        if self.transforms is not None:
            transforms = tuple({"type": t} if isinstance(t, str) else dict(t) for t in self.transforms)
        return FeatureSpec(
            name=self.name,
            role=self.role,
            kind=self.kind,
            bounds=tuple(self.bounds) if self.bounds is not None else None,
            categories=tuple(self.categories) if self.categories is not None else None,
            relative_to=self.relative_to,
            periodic=self.periodic,
            transforms=transforms,
            **({"sentinels": tuple(self.sentinels)} if self.sentinels is not None else {}),
        )


class ModelConfig(_Strict):
    """``model``: which generator, its architecture, and the efficiency classifier.

    ``kind`` chooses the generator of the response (and of the fakes): ``flow`` (a conditional
    normalizing flow, with a likelihood) or ``gan`` (a conditional GAN, no likelihood).
    ``flow`` holds the keys of :class:`hepgen.models.flow.FlowSettings`, ``gan`` those of
    :class:`hepgen.models.gan.GANSettings` and ``efficiency`` the constructor arguments of
    :class:`hepgen.models.efficiency.EfficiencyModel`; all are checked here, so a typo is
    reported when the file is read, not after hours of training.  Switching ``kind`` is the
    only change needed to move between a flow and a GAN.
    """

    kind: Literal["flow", "gan"] = "flow"
    flow: dict[str, Any] = Field(default_factory=dict)
    gan: dict[str, Any] = Field(default_factory=dict)
    efficiency: dict[str, Any] = Field(default_factory=dict)
    fakes: bool = True

    @model_validator(mode="after")
    def _settings(self) -> ModelConfig:
        if self.kind == "flow" or self.flow:
            self.flow_settings()
        if self.kind == "gan" or self.gan:
            self.gan_settings()
        from hepgen.models.efficiency import EfficiencyModel

        valid = list(EfficiencyModel().get_params())
        unknown = [k for k in self.efficiency if k not in valid]
        if unknown:
            hints = "".join(did_you_mean(k, valid) for k in unknown)
            raise ValueError(
                f"unknown efficiency setting(s) {', '.join(map(repr, unknown))}{hints}; "
                f"valid: {', '.join(valid)}"
            )
        return self

    def flow_settings(self) -> Any:
        """The :class:`~hepgen.models.flow.FlowSettings` of ``model.flow``."""
        from hepgen.models.flow import FlowSettings

        try:
            return FlowSettings.from_dict(self.flow)
        except ConfigError as err:
            raise ValueError(f"flow: {err}") from None

    def gan_settings(self) -> Any:
        """The :class:`~hepgen.models.gan.GANSettings` of ``model.gan``."""
        from hepgen.models.gan import GANSettings

        try:
            return GANSettings.from_dict(self.gan)
        except ConfigError as err:
            raise ValueError(f"gan: {err}") from None

    def generator_settings(self) -> Any:
        """The settings of the generator that ``kind`` selects."""
        return self.gan_settings() if self.kind == "gan" else self.flow_settings()


class TrainingConfig(BaseModel):
    """``training``: the keys of :class:`hepgen.training.TrainingSettings` (max_epochs,
    batch_size, learning_rate, ...) plus how the data are split and the checkpoint chosen."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)

    validation_fraction: float = Field(0.2, gt=0.0, lt=0.9)
    selection: Literal["ks", "c2st", "loss"] = "ks"
    max_objects: int | None = Field(None, ge=100)

    @model_validator(mode="after")
    def _settings(self) -> TrainingConfig:
        self.settings()
        return self

    def settings(self) -> Any:
        """The :class:`~hepgen.training.TrainingSettings` of the remaining keys."""
        from hepgen.training import TrainingSettings

        try:
            return TrainingSettings.from_dict(dict(self.model_extra or {}))
        except ConfigError as err:
            raise ValueError(str(err)) from None


class Config(_Strict):
    """A whole configuration file."""

    data: DataConfig
    features: list[FeatureConfig] = Field(min_length=1)
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    seed: int = 0
    _source: str | None = PrivateAttr(None)

    @property
    def source(self) -> str | None:
        """The file the configuration was read from, if any."""
        return self._source

    @model_validator(mode="after")
    def _collections(self) -> Config:
        for i, f in enumerate(self.features):
            expected = self.data.gen if f.role == "condition" else self.data.reco
            if not f.name.startswith(expected + "_"):
                raise ValueError(
                    f"features[{i}] '{f.name}' is a {f.role} and should belong to collection "
                    f"'{expected}' ('{expected}_...')"
                )
        return self

    @property
    def schema(self) -> FeatureSchema:
        """The feature schema (validated: see :class:`hepgen.features.FeatureSchema`)."""
        try:
            return FeatureSchema([f.to_spec() for f in self.features])
        except ConfigError as err:
            raise ConfigError(f"{self.source or 'config'}: {err}") from None

    def input_files(self) -> list[str]:
        """The data files, relative paths taken relative to the config file's folder."""
        base = Path(self.source).parent if self.source else Path.cwd()
        return [f if os.path.isabs(f) else os.fspath(base / f) for f in self.data.files]


def _location(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("str", "dict[str,any]", "function-after[_one_file(), list[str]]"):
            continue  # union-member tags that pydantic puts into the location
        else:
            out += ("." if out else "") + str(part)
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
        args = getattr(annotation, "__args__", ())
        candidates = [annotation, *args]
        current = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if current is None:
            return []
    return list(getattr(current, "model_fields", {}))


def _describe(err: dict[str, Any], model: type[BaseModel] | None = None) -> str:
    """One pydantic error as ``key 'a.b': message, got value`` (``model``: the validated
    top-level model, default :class:`Config`, for did-you-mean suggestions)."""
    key = _location(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model or Config, err["loc"])
        suggestion = did_you_mean(str(err["loc"][-1]), allowed)
        return f"unknown key '{key}'{suggestion}"
    if kind == "missing":
        return f"missing required key '{key}'"
    got = err.get("input")
    got_text = f", got {got!r}" if not isinstance(got, dict | list) else ""
    message = err["msg"].removeprefix("Value error, ")
    return f"key '{key}': {message}{got_text}" if key else f"{message}{got_text}"


def parse_config(data: Any, source: str = "<config>") -> Config:
    """Validate a configuration given as a mapping (e.g. from YAML).

    Parameters
    ----------
    data : mapping
        The configuration.
    source : str
        Where it came from (a file name), used in messages and to resolve relative paths.

    Raises
    ------
    ConfigError
        Naming the source and every offending key.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of keys at the top level, got {type(data).__name__}")
    try:
        config = Config.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(_describe(e) for e in err.errors())
        raise ConfigError(f"{source}: {problems}") from None
    config._source = source
    config.schema  # noqa: B018  (validates the feature schema now, not at first use)
    return config


def read_yaml(path: str | os.PathLike) -> Any:
    """The parsed content of a YAML file.

    Raises
    ------
    ConfigError
        If the file is missing, empty or not valid YAML (the line and column named).
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file '{path}' does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {getattr(err, 'problem', err)}") from None
    if data is None:
        raise ConfigError(f"{path}: the file is empty")
    return data


def load_config(path: str | os.PathLike) -> Config:
    """Read and validate a YAML configuration file.

    Raises
    ------
    ConfigError
        If the file is missing, not valid YAML, or does not validate; the message names the
        file and the key.
    """
    return parse_config(read_yaml(path), source=os.fspath(path))
