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
anywhere.  Unknown keys are errors naming the key, with a did-you-mean suggestion.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from hepgen.anomaly.scan import ScanSettings
from hepgen.config import _describe, read_yaml
from hepgen.errors import ConfigError, InputError

__all__ = [
    "ScanConfig",
    "load_scan_config",
    "parse_scan_config",
    "read_scan_columns",
    "scan_from_config",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SimulateSection(_Strict):
    """Events of the reference dijet simulation (:class:`hepgen.sim.DijetSimulation`)."""

    process: Literal["dijet"] = "dijet"
    n_events: int = Field(gt=0)
    seed: int = 0
    signal_fraction: float = Field(0.0, ge=0.0, le=1.0)
    mx: float = 3.5
    my1: float = 0.5
    my2: float = 0.1
    mx_width: float = 0.06


class DataSection(_Strict):
    """Where the events come from: ROOT files, or the reference simulation."""

    files: list[str] = []
    tree: str = "Events"
    step_size: int = Field(500_000, gt=0)
    simulate: SimulateSection | None = None


class ScanSection(_Strict):
    """The windows, the score, the selections (see :class:`ScanSettings`)."""

    start: float
    stop: float
    width: float = Field(gt=0)
    step: float = Field(gt=0)
    sideband: float = Field(gt=0)
    score: Literal["cathode", "anode"] = "cathode"
    efficiencies: list[float] = [0.1, 0.01, 0.001]
    ranking_efficiency: float = 0.01
    background_estimate: Literal["calibrated", "template", "fit"] = "calibrated"
    oversample: int = Field(4, ge=1)
    max_train_events: int = Field(60_000, ge=100)
    trend: int = Field(1, ge=0, le=3)
    conditional: bool = False
    closure_margin: float | None = None
    folds: int = Field(5, ge=2)
    fit_bins: int = Field(40, ge=8)
    classifier: dict[str, Any] = {}


class ScanConfig(_Strict):
    """A whole scan config (module docstring)."""

    data: DataSection
    resonance: dict[str, Any]
    features: list[dict[str, Any]]
    label: str | None = None
    scan: ScanSection
    flow: dict[str, Any] = {}
    training: dict[str, Any] = {}
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"

    _source: str = PrivateAttr("<config>")

    def settings(self, device: str | None = None, seed: int | None = None) -> ScanSettings:
        """The :class:`ScanSettings` of this config (``device``/``seed`` override)."""
        scan = self.scan.model_dump()  # the scan section's keys are ScanSettings fields
        scan["efficiencies"] = tuple(scan["efficiencies"])
        return ScanSettings(
            **scan,
            resonance=dict(self.resonance),
            features=[dict(f) for f in self.features],
            flow=dict(self.flow),
            training=dict(self.training),
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
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        config = ScanConfig.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(_describe(e, ScanConfig) for e in err.errors())
        raise ConfigError(f"{source}: {problems}") from None
    config._source = source
    try:
        config.settings()  # checks the scan settings now, not in the first window
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None
    if not config.data.files and config.data.simulate is None:
        raise ConfigError(
            f"{source}: 'data' needs 'files' (ROOT files) or 'simulate' (reference simulation)"
        )
    return config


def load_scan_config(path: str | os.PathLike) -> ScanConfig:
    """Read and validate a scan config YAML file (errors name the file and the key)."""
    return parse_scan_config(read_yaml(path), source=os.fspath(path))


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

    names = [str(config.resonance["name"]), *(str(f["name"]) for f in config.features)]
    paths = files if files else [_resolve(config, f) for f in config.data.files]
    if not paths:
        sim = config.data.simulate
        assert sim is not None
        from hepgen.sim import DijetSimulation

        events = DijetSimulation(
            signal_fraction=sim.signal_fraction, mx=sim.mx, my1=sim.my1, my2=sim.my2,
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
    for events in iterate_events(resolved, branches, tree=config.data.tree,
                                 step_size=config.data.step_size):
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
) -> Any:
    """``hepgen scan``: read the events, run the scan, write the report directory.

    Parameters
    ----------
    config : path or ScanConfig
    output : path
        Report directory (``scan.json``, ``report.html``, plots).
    files : list of str or None
        Override ``data.files``.
    device, seed : optional overrides of the config's.
    quiet : bool
        No progress output.

    Returns
    -------
    ScanResult
    """
    from hepgen.anomaly.report import write_scan_report
    from hepgen.anomaly.scan import run_scan

    cfg = config if isinstance(config, ScanConfig) else load_scan_config(config)
    settings = cfg.settings(device=device, seed=seed)
    columns = read_scan_columns(cfg, files=files)
    result = run_scan(columns, settings, quiet=quiet)
    inputs = {"config": cfg._source,
              "events": ", ".join(files or cfg.data.files) or "reference simulation "
              f"({cfg.data.simulate.model_dump() if cfg.data.simulate else ''})"}
    write_scan_report(result, output, m=columns[settings.resonance_name], inputs=inputs)
    return result
