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

``data.layout`` says how the objects are stored (:mod:`hepgen.io.layouts`): ``collections``
(the default above: NanoAOD-style jagged gen/reco collections paired by ``matching``), ``flat``
(one object per row; features are branch names) or ``objects`` (several objects per row,
``objects: [mu1, mu2]``; a feature ``P`` is read from ``mu1_P``, ``mu2_P``, or from a row-level
branch ``P`` shared by the row's objects when no per-object branch exists).  ``flat`` and
``objects`` take no ``gen``, ``reco`` or ``matching``; an optional boolean branch
``reconstructed`` (per object in the ``objects`` layout: ``mu1_<name>``) says whether the
object was reconstructed, and then the efficiency model is trained on it.

.. code-block:: yaml

    data:
      files: [pid.root]
      tree: DecayTree
      layout: objects
      objects: [mu1, mu2]
      weights: sw                # per-row weight, negative sWeights allowed
    features:
      - {name: P, role: condition, kind: positive}
      - {name: nTracks, role: condition, kind: integer, bounds: [0, 1000]}  # row-level
      - {name: PIDK, role: target, sentinels: [-1000.0]}
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from hepgen.errors import ConfigError
from hepgen.features import FeatureSchema, FeatureSpec
from hepgen.settings.base import NestedProblems, check_nested, one_line, problems
from hepgen.settings.base import Strict as _Strict
from hepgen.settings.models import (
    GENERATOR_SETTINGS,
    SPLINE_KINDS,
    EfficiencySettings,
    FlowSettings,
    GANSettings,
)
from hepgen.settings.sampling import SamplingSettings
from hepgen.settings.training import TrainingSettings
from hepgen.settings.vae import VAESettings

__all__ = [
    "LAYOUTS",
    "Config",
    "DataConfig",
    "FeatureConfig",
    "MatchingConfig",
    "ModelConfig",
    "NestedProblems",
    "TrainingConfig",
    "apply_overrides",
    "check_nested",
    "load_config",
    "one_line",
    "parse_config",
    "parse_yaml",
    "read_yaml",
]


class MatchingConfig(_Strict):
    """How reco objects are paired with gen objects."""

    method: Literal["index", "deltar"] = "index"
    index_branch: str | None = Field(
        None,
        min_length=1,
        description="Reco branch holding the gen index; default '{reco}_gen{Gen}Idx'",
    )
    max_dr: float = Field(
        0.4, gt=0, allow_inf_nan=False, description="Cone size for deltaR matching"
    )


#: The layouts of ``data.layout`` (:mod:`hepgen.io.layouts`).
LAYOUTS = ("collections", "flat", "objects")
_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class DataConfig(_Strict):
    """Input files, their layout, and the gen/reco collections (``collections`` layout) or
    the objects of a row (``flat`` / ``objects`` layouts)."""

    files: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, description="ROOT files or glob patterns"
    )
    tree: str = Field("Events", min_length=1)
    layout: Literal["collections", "flat", "objects"] = "collections"
    objects: list[Annotated[str, Field(min_length=1)]] | None = Field(
        None, description="objects layout: the objects' branch prefixes, e.g. [mu1, mu2]"
    )
    reconstructed: str | None = Field(
        None,
        min_length=1,
        description="flat/objects: boolean branch (objects: per-object suffix) saying whether "
        "the object was reconstructed",
    )
    gen: str | None = Field(None, min_length=1, description="Gen collection, e.g. GenJet")
    reco: str | None = Field(None, min_length=1, description="Reco collection, e.g. Jet")
    matching: MatchingConfig = MatchingConfig()
    step_size: int = Field(100_000, gt=0, description="Events per chunk")
    max_events: int | None = Field(None, gt=0)
    nonfinite: Literal["error", "drop"] = "error"
    weights: str | None = Field(
        None, min_length=1, description="Per-event (per-row) weight branch, e.g. genWeight, sw"
    )
    negative_weights: Literal["regress", "keep"] = Field(
        "regress",
        description="with negative weights (sWeights): train on their cross-fitted regression "
        "on the features (hepgen.sweights; a weighted likelihood with negative weights is "
        "unbounded below) or keep them as they are",
    )

    @field_validator("files", mode="before")
    @classmethod
    def _one_file(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _layout(self) -> DataConfig:
        layout = self.layout
        if layout == "collections":
            missing = [k for k in ("gen", "reco") if getattr(self, k) is None]
            if missing:
                raise NestedProblems("; ".join(f"missing required key 'data.{k}'" for k in missing))
            for key in ("objects", "reconstructed"):
                if getattr(self, key) is not None:
                    raise NestedProblems(
                        f"key 'data.{key}' is only used with data.layout 'flat' or 'objects', "
                        f"not with layout 'collections'"
                    )
            return self
        given = [k for k in ("gen", "reco") if getattr(self, k) is not None]
        if "matching" in self.model_fields_set:
            given.append("matching")
        if given:
            raise NestedProblems(
                "; ".join(
                    f"key 'data.{k}' is not used with data.layout '{layout}' (features are "
                    f"{'branch names' if layout == 'flat' else 'per-object branch suffixes'}; "
                    "only the 'collections' layout pairs gen and reco collections): remove it"
                    for k in given
                )
            )
        if layout == "objects":
            if not self.objects:
                raise NestedProblems(
                    "missing required key 'data.objects': data.layout 'objects' needs the "
                    "objects' branch prefixes, e.g. objects: [mu1, mu2]"
                )
            bad = [p for p in self.objects if not _PREFIX.match(p)]
            if bad:
                raise NestedProblems(
                    f"key 'data.objects': {bad[0]!r} is not a branch-name prefix (letters, "
                    "digits and underscores, not starting with a digit)"
                )
            twice = sorted({p for p in self.objects if self.objects.count(p) > 1})
            if twice:
                raise NestedProblems(f"key 'data.objects': {twice} given more than once")
        elif self.objects is not None:
            raise NestedProblems(
                "key 'data.objects' is only used with data.layout 'objects', not with layout "
                "'flat' (one object per row)"
            )
        return self

    @property
    def index_branch(self) -> str:
        """The reco branch with the gen index (``Jet_genJetIdx`` for gen=GenJet, reco=Jet);
        collections layout only."""
        if self.matching.index_branch:
            return self.matching.index_branch
        if self.gen is None or self.reco is None:
            raise ConfigError(f"data.layout '{self.layout}' has no gen/reco index branch")
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
            transforms = tuple(
                {"type": t} if isinstance(t, str) else dict(t) for t in self.transforms
            )
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
    normalizing flow, with a likelihood), ``gan`` (a conditional GAN, no likelihood) or
    ``vae`` (a conditional variational autoencoder: a lower bound on the likelihood).
    ``flow``, ``gan``, ``vae`` and ``efficiency`` are typed settings
    (:class:`~hepgen.settings.FlowSettings`, :class:`~hepgen.settings.GANSettings`,
    :class:`~hepgen.settings.VAESettings`, :class:`~hepgen.settings.EfficiencySettings`),
    checked when the file is read, not after hours of training.  Switching ``kind`` is the
    only change needed to move between the generator families.
    """

    kind: Literal["flow", "gan", "vae"] = "flow"
    flow: FlowSettings = Field(default_factory=FlowSettings)
    gan: GANSettings = Field(default_factory=GANSettings)
    vae: VAESettings = Field(default_factory=VAESettings)
    sampling: SamplingSettings = Field(default_factory=SamplingSettings)
    efficiency: EfficiencySettings = Field(default_factory=EfficiencySettings)
    fakes: bool | None = Field(
        None,
        description="Model unmatched reco objects; default: the layout's (true for "
        "collections, false for flat/objects, where true is refused)",
    )

    precision: Literal["float32", "bfloat16"] = Field(
        "float32",
        description="Precision of the flow's conditioner matrix products when generating; "
        "bfloat16 is checked after training (sample parity for the same latent draws and the "
        "held-out classifier AUC, recorded in the model card) and used only when it passes",
    )

    @model_validator(mode="after")
    def _precision_of_flows(self) -> ModelConfig:
        if self.precision != "float32" and self.kind != "flow":
            raise ValueError(
                f"model.precision: {self.precision} is for flows (model.kind: flow); a "
                f"{self.kind} generates in float32"
            )
        if self.precision != "float32" and (
            self.flow.kind not in SPLINE_KINDS or self.flow.levels > 1
        ):
            raise ValueError(
                f"model.precision: {self.precision} needs a single-scale RQ-spline flow "
                f"(model.flow.kind coupling or autoregressive, levels 1); kind "
                f"{self.flow.kind!r} generates in float32"
            )
        return self

    def generator_settings(self) -> FlowSettings | GANSettings | VAESettings:
        """The settings of the generator that ``kind`` selects."""
        settings = getattr(self, self.kind)
        assert isinstance(settings, GENERATOR_SETTINGS[self.kind])
        return settings


class TrainingConfig(TrainingSettings):
    """``training``: the :class:`~hepgen.settings.TrainingSettings` of the loop (max_epochs,
    batch_size, learning_rate, ...) plus how the data are split and the checkpoint chosen."""

    validation_fraction: float = Field(0.2, gt=0.0, lt=0.9)
    selection: Literal["ks", "c2st", "loss"] = "ks"
    max_objects: int | None = Field(None, ge=100)

    def settings(self) -> TrainingSettings:
        """The :class:`~hepgen.settings.TrainingSettings` of this section."""
        return TrainingSettings(**self.model_dump(include=set(TrainingSettings.model_fields)))


class Config(_Strict):
    """A whole configuration file."""

    data: DataConfig
    features: list[FeatureConfig] = Field(min_length=1)
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    seed: int = Field(0, ge=0, lt=2**63)
    _source: str | None = PrivateAttr(None)

    @property
    def source(self) -> str | None:
        """The file the configuration was read from, if any."""
        return self._source

    @model_validator(mode="after")
    def _collections(self) -> Config:
        data = self.data
        roles = {f.role for f in self.features}
        layout = data.layout
        for role, what in (("target", "reco"), ("condition", "gen")):
            if role not in roles:
                example = (
                    f"a '{getattr(data, what)}_...' branch"
                    if layout == "collections"
                    else ("a branch" if layout == "flat" else "a per-object branch suffix")
                )
                raise ValueError(
                    f"key 'features': no feature has role '{role}'; at least one {role} "
                    f"({example}) is needed"
                )
        if layout == "collections":
            for i, f in enumerate(self.features):
                expected = data.gen if f.role == "condition" else data.reco
                if not f.name.startswith(f"{expected}_"):
                    raise ValueError(
                        f"features[{i}] '{f.name}' is a {f.role} and should belong to "
                        f"collection '{expected}' ('{expected}_...')"
                    )
        elif self.model.fakes:
            raise ValueError(
                f"key 'model.fakes': true is not possible with data.layout '{layout}': a flat "
                "table has no unmatched reco objects (remove it or set false)"
            )
        if data.reconstructed is not None:
            clash = [f.name for f in self.features if f.name == data.reconstructed]
            if clash:
                raise ValueError(
                    f"key 'data.reconstructed': '{clash[0]}' is also a feature; the "
                    "reconstruction flag is modelled by the efficiency, not as a feature"
                )
        return self

    @property
    def fakes(self) -> bool:
        """Whether fakes are modelled: ``model.fakes``, or the layout's default (true for
        ``collections``, false for ``flat`` / ``objects``)."""
        if self.model.fakes is not None:
            return self.model.fakes
        return self.data.layout == "collections"

    @property
    def schema(self) -> FeatureSchema:
        """The feature schema (validated: see :class:`hepgen.features.FeatureSchema`)."""
        try:
            return FeatureSchema([f.to_spec() for f in self.features])
        except ConfigError as err:
            raise ConfigError(f"{self.source or 'config'}: {err}") from None

    def override(self, overrides: Mapping[str, Any] | Sequence[tuple[str, Any]]) -> Config:
        """A new configuration with dotted keys set over this one's, validated as a file is.

        Parameters
        ----------
        overrides : mapping or sequence of (str, Any)
            ``{"training.max_epochs": 5, "model.flow": {"n_bins": 8}}``: a key naming a
            section replaces the whole section (:func:`apply_overrides`).

        Examples
        --------
        >>> from hepgen.resources import config_path
        >>> config = load_config(config_path("toy_jets_flow.yaml"))
        >>> config.override({"training.max_epochs": 3, "seed": 7}).training.max_epochs
        3
        """
        items = list(overrides.items()) if isinstance(overrides, Mapping) else list(overrides)
        source = self.source or "<config>"
        data = apply_overrides(self.model_dump(exclude_unset=True), items, source)
        config = parse_config(data, source=source)
        config._source = self.source
        return config

    def input_files(self) -> list[str]:
        """The data files, relative paths taken relative to the config file's folder (URLs,
        ``scheme://...``, as they are)."""
        base = Path(self.source).parent if self.source else Path.cwd()
        return [
            f if os.path.isabs(f) or "://" in f else os.fspath(base / f) for f in self.data.files
        ]


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
        raise ConfigError(
            f"{source}: expected a mapping of keys at the top level, got {type(data).__name__}"
        )
    try:
        config = Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(one_line(f"{source}: {problems(err, Config)}")) from None
    config._source = source
    config.schema  # noqa: B018  (validates the feature schema now, not at first use)
    return config


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text; a syntax error is a :class:`ConfigError` naming ``source``, the line
    and the column (one line).

    Parameters
    ----------
    text : str
        The YAML document.
    source : str
        Where it came from (a file name, ``--set KEY``), for messages.
    """
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or err
        raise ConfigError(one_line(f"{source}: not valid YAML{where}: {problem}")) from None
    except (ValueError, OverflowError, RecursionError) as err:
        # a scalar that parses but cannot be built, e.g. the date 2024-13-45
        raise ConfigError(one_line(f"{source}: not valid YAML: {err}")) from None


def read_yaml(path: str | os.PathLike) -> Any:
    """The parsed content of a YAML file.

    Raises
    ------
    ConfigError
        If the file is missing, a directory, binary (a ROOT file, say), not UTF-8 text, empty
        or not valid YAML (the line and column named).
    """
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file '{path}' does not exist")
    if path.is_dir():
        raise ConfigError(f"config file '{path}' is a directory; expected a YAML file")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(one_line(f"config file '{path}' cannot be read: {err}")) from None
    if raw.startswith(b"root") or b"\0" in raw[:8192]:
        what = "a ROOT file" if raw.startswith(b"root") else "a binary file"
        raise ConfigError(f"config file '{path}' is {what}; expected a YAML config (text)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
        raise ConfigError(
            f"config file '{path}': byte 0x{raw[err.start]:02x} at line {line}, column {column} "
            "is not UTF-8; expected a UTF-8 YAML text file"
        ) from None
    data = parse_yaml(text, os.fspath(path))
    if data is None:
        raise ConfigError(f"{path}: the file is empty")
    return data


def apply_overrides(
    data: Any, overrides: Sequence[tuple[str, Any]], source: str = "<config>"
) -> Any:
    """``data`` (a parsed configuration) with ``overrides`` applied: ``("training.max_epochs",
    5)`` sets ``data["training"]["max_epochs"]``, creating the sections that are missing.

    The result is validated as the file would be, so an override with an unknown key or a bad
    value gets the file's error (the key named, with suggestions).

    Parameters
    ----------
    data : mapping
        The configuration as read (not modified).
    overrides : sequence of (str, Any)
        Dotted keys and their values (``--set KEY=VALUE``, ``--max-epochs``).
    source : str
        The file, named in errors.

    Raises
    ------
    ConfigError
        A key that is empty or that goes through a value that is not a section.

    Examples
    --------
    >>> apply_overrides({"training": {"max_epochs": 10}}, [("training.max_epochs", 2),
    ...                 ("model.flow.n_bins", 8)])
    {'training': {'max_epochs': 2}, 'model': {'flow': {'n_bins': 8}}}
    """
    out = copy.deepcopy(data) if isinstance(data, dict) else data
    for key, value in overrides:
        parts = str(key).split(".")
        if not isinstance(out, dict) or not all(parts):
            raise ConfigError(f"--set {key}: expected a dotted key such as training.max_epochs")
        section = out
        for i, part in enumerate(parts[:-1]):
            if not isinstance(section.setdefault(part, {}), dict):
                where = ".".join(parts[: i + 1])
                raise ConfigError(
                    f"--set {key}: '{where}' in {source} is a value, not a section of keys"
                )
            section = section[part]
        section[parts[-1]] = value
    return out


def load_config(path: str | os.PathLike, overrides: Sequence[tuple[str, Any]] = ()) -> Config:
    """Read and validate a YAML configuration file.

    Parameters
    ----------
    path : path
        The YAML file.
    overrides : sequence of (str, Any)
        Dotted keys set over the file's (:func:`apply_overrides`; ``hepgen train --set``).

    Raises
    ------
    ConfigError
        If the file is missing, not valid YAML, or does not validate; the message names the
        file and the key.
    """
    source = os.fspath(path)
    return parse_config(apply_overrides(read_yaml(path), overrides, source), source=source)
