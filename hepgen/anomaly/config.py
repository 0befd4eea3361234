"""Scan configuration files (``hepgen scan CONFIG.yaml``), validated on load.

Example
-------
.. code-block:: yaml

    data:
      files: [events.root]       # flat tree, one row per event; relative to this file
      tree: Events
    resonance: {name: mjj, kind: continuous}
    features:
      - {name: mj2, kind: positive}
      - {name: tau21_j1, kind: bounded, bounds: [0.0, 1.0]}
    label: label                 # optional truth branch (1 signal, 0 background)
    scan: {start: 2.9, stop: 4.3, width: 0.4, step: 0.2, sideband: 0.4}

Without ``data.files`` the events come from the built-in reference simulation
(``data.simulate``: the dijet process with an optional resonance), so the config runs
anywhere.  Every section is typed and checked on load (the same did-you-mean errors as
the fast-simulation config, :mod:`hepgen.config`): ``resonance`` and ``features`` are feature
specs (:class:`hepgen.features.FeatureSpec`), ``flow`` and ``training`` the settings of the
density model's flow and training, ``scan.classifier`` the CATHODE classifier's xgboost
settings, ``scan.start``/``stop`` finite with ``start < stop``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, PrivateAttr, ValidationError, model_validator

from hepgen.config import FeatureConfig, apply_overrides, read_yaml
from hepgen.errors import ConfigError, InputError
from hepgen.settings.base import Device, NestedProblems, one_line, problems
from hepgen.settings.base import Strict as _Strict
from hepgen.settings.scan import (
    DENSITY_FLOW,
    DENSITY_TRAINING,
    DensityFlow,
    DensityTraining,
    ScanSection,
    ScanSettings,
)

__all__ = [
    "ScanConfig",
    "ScanFeature",
    "load_scan_config",
    "parse_scan_config",
    "read_scan_columns",
    "scan_from_config",
]


_Finite = Annotated[float, Field(allow_inf_nan=False)]
_Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class ScanFeature(FeatureConfig):
    """A feature of the scan (``resonance`` or an entry of ``features``): the keys of
    :class:`hepgen.features.FeatureSpec`; ``role`` is implied (the resonance is the flows'
    condition, the features their targets)."""

    role: Literal["condition", "target"] | None = None  # type: ignore[assignment]
    name: str = Field(min_length=1)
    bounds: list[_Finite] | None = None
    categories: list[_Finite] | None = None
    sentinels: list[_Finite] | None = None

    def spec_dict(self, role: str) -> dict[str, Any]:
        """The mapping of the keys given (``role`` filled in), as the density model takes it."""
        d = self.model_dump(exclude_unset=True)
        d.setdefault("role", role)
        return d


class SimulateSection(_Strict):
    """Events of the reference dijet simulation (:class:`hepgen.sim.DijetSimulation`)."""

    process: Literal["dijet"] = "dijet"
    n_events: int = Field(gt=0, le=100_000_000)
    seed: int = Field(0, ge=0, lt=2**63)
    signal_fraction: float = Field(0.0, ge=0.0, le=1.0)
    mx: _Positive = 3.5
    my1: _Positive = 0.5
    my2: _Positive = 0.1
    mx_width: _Positive = 0.06


class DataSection(_Strict):
    """Where the events come from: ROOT files, or the reference simulation."""

    files: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    tree: str = Field("Events", min_length=1)
    step_size: int = Field(500_000, gt=0)
    simulate: SimulateSection | None = None


class ScanConfig(_Strict):
    """A whole scan config (module docstring)."""

    data: DataSection
    resonance: ScanFeature
    features: list[ScanFeature] = Field(min_length=1)
    label: str | None = Field(None, min_length=1)
    scan: ScanSection
    flow: DensityFlow = DENSITY_FLOW
    training: DensityTraining = DENSITY_TRAINING
    seed: int = Field(0, ge=0, lt=2**63)
    device: Device = "auto"

    _source: str = PrivateAttr("<config>")

    @model_validator(mode="after")
    def _features(self) -> ScanConfig:
        from hepgen.features import FeatureSchema, FeatureSpec

        specs = []
        for key, feature, role in (
            ("resonance", self.resonance, "condition"),
            *((f"features[{i}]", f, "target") for i, f in enumerate(self.features)),
        ):
            if feature.role not in (None, role):
                raise NestedProblems(
                    f"key '{key}.role': a scan's {key.split('[')[0]} has "
                    f"role '{role}', got '{feature.role}'"
                )
            try:
                specs.append(FeatureSpec.from_dict(feature.spec_dict(role)))
            except ConfigError as err:
                raise NestedProblems(f"key '{key}': {err}") from None
        try:
            FeatureSchema(specs)
        except ConfigError as err:
            raise NestedProblems(f"key 'features': {err}") from None
        return self

    def settings(self, device: str | None = None, seed: int | None = None) -> ScanSettings:
        """The :class:`~hepgen.settings.ScanSettings` of this config (``device``/``seed``
        override)."""
        return ScanSettings(
            **dict(self.scan),
            resonance=self.resonance.spec_dict("condition"),
            features=[f.spec_dict("target") for f in self.features],
            flow=self.flow,
            training=self.training,
            label=self.label,
            seed=self.seed if seed is None else seed,
            device=device or self.device,
        )


def parse_scan_config(data: Any, source: str = "<config>") -> ScanConfig:
    """Validate a scan configuration given as a mapping.

    Raises
    ------
    ConfigError
        Naming ``source`` and every offending key.
    """
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping at the top level, got {type(data).__name__}"
        )
    try:
        config = ScanConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(one_line(f"{source}: {problems(err, ScanConfig)}")) from None
    config._source = source
    try:
        config.settings()  # checks the scan settings now, not in the first window
    except ConfigError as err:
        raise ConfigError(one_line(f"{source}: {err}")) from None
    if not config.data.files and config.data.simulate is None:
        raise ConfigError(
            f"{source}: 'data' needs 'files' (ROOT files) or 'simulate' (reference simulation)"
        )
    return config


def load_scan_config(
    path: str | os.PathLike, overrides: Sequence[tuple[str, Any]] = ()
) -> ScanConfig:
    """Read and validate a scan config YAML file (errors name the file and the key);
    ``overrides``: dotted keys set over the file's (:func:`hepgen.config.apply_overrides`)."""
    source = os.fspath(path)
    return parse_scan_config(apply_overrides(read_yaml(path), overrides, source), source=source)


def read_scan_columns(config: ScanConfig, files: list[str] | None = None) -> dict[str, np.ndarray]:
    """The scan's columns (resonance, features, label when present), one row per event.

    Parameters
    ----------
    config : ScanConfig
    files : list of str or None
        Override ``data.files`` (paths relative to the working directory).

    Raises
    ------
    InputError
        A missing file, tree or branch (named), or non-finite values.
    """
    import awkward as ak

    names = [config.resonance.name, *(f.name for f in config.features)]
    paths = files if files else [_resolve(config, f) for f in config.data.files]
    if not paths:
        sim = config.data.simulate
        assert sim is not None
        from hepgen.sim import DijetSimulation

        events = DijetSimulation(
            signal_fraction=sim.signal_fraction,
            mx=sim.mx,
            my1=sim.my1,
            my2=sim.my2,
            mx_width=sim.mx_width,
        ).generate(sim.n_events, seed=sim.seed)
        cols = {n: ak.to_numpy(events[n]) for n in [*names, "label"] if n in events.fields}
        return cols
    from hepgen.io.reader import inspect_tree, iterate_events, resolve_files

    resolved = resolve_files(paths)
    info = inspect_tree(resolved[0], config.data.tree)
    branches = list(names)
    if config.label is not None and config.label in info.branches:
        branches.append(config.label)
    for path in resolved:
        available = inspect_tree(path, config.data.tree).branches
        missing = [b for b in branches if b not in available]
        if missing:
            raise InputError(
                f"{path}: tree '{config.data.tree}' has no branch(es) {missing} "
                "needed by the scan config"
            )
    chunks: dict[str, list[np.ndarray]] = {b: [] for b in branches}
    for events in iterate_events(
        resolved, branches, tree=config.data.tree, step_size=config.data.step_size
    ):
        for b in branches:
            chunks[b].append(ak.to_numpy(events[b]))
    return {b: np.concatenate(v) for b, v in chunks.items()}


def _resolve(config: ScanConfig, file: str) -> str:
    """A config path relative to the config file's folder."""
    if os.path.isabs(file) or config._source.startswith("<"):
        return file
    return os.fspath(Path(config._source).parent / file)


def scan_from_config(
    config: str | os.PathLike | ScanConfig,
    output: str | os.PathLike,
    *,
    files: list[str] | None = None,
    device: str | None = None,
    seed: int | None = None,
    quiet: bool = False,
    resume: bool = False,
    overrides: Sequence[tuple[str, Any]] = (),
) -> Any:
    """``hepgen scan``: read the events, run the scan, write the report directory.

    The scan keeps its working state in ``output/work`` (each finished window's result, the
    running window's flow checkpoints), so that ``resume=True`` continues a scan that was
    killed: finished windows are loaded, an interrupted flow continues from its checkpoint.

    Parameters
    ----------
    config : path or ScanConfig
    output : path
        Report directory (``scan.json``, ``report.html``, plots, ``work/``).
    files : list of str or None
        Override ``data.files``.
    device, seed : optional overrides of the config's.
    overrides : sequence of (str, Any)
        Dotted keys set over a config file's (``--set``).
    quiet : bool
        No progress output.
    resume : bool
        Continue from ``output/work``.

    Returns
    -------
    ScanResult

    Raises
    ------
    InputError
        ``resume=True`` with no interrupted scan in ``output``.
    """
    from hepgen.anomaly.report import write_scan_report
    from hepgen.anomaly.scan import run_scan

    cfg = config if isinstance(config, ScanConfig) else load_scan_config(config, overrides)
    settings = cfg.settings(device=device, seed=seed)
    work = Path(output) / "work"
    if resume and not work.is_dir():
        raise InputError(
            f"cannot resume: '{output}' holds no interrupted scan (no {work}); "
            "scan without --resume to start afresh"
        )
    columns = read_scan_columns(cfg, files=files)
    result = run_scan(columns, settings, quiet=quiet, work_dir=work, resume=resume)
    inputs = {
        "config": cfg._source,
        "events": ", ".join(files or cfg.data.files)
        or f"reference simulation ({cfg.data.simulate.model_dump() if cfg.data.simulate else ''})",
    }
    write_scan_report(result, output, m=columns[settings.resonance_name], inputs=inputs)
    return result
