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

Any flat ntuple works: the branch names are the config's (``resonance.name``, the
features' names, ``label``), ``data.files`` lists files and glob patterns (``data/*.root``),
read in chunks of ``data.step_size`` events, and ``scan.sqrt_s`` gives the collision energy in
the resonance variable's units (13 for TeV, the default; 13000 for GeV).  Events already
split into a signal region and its sidebands (the LHC Olympics R&D processing's "innerdata"
and "outerdata") are two inputs with one fixed window:

.. code-block:: yaml

    data:
      signal_region: {files: [innerdata.root]}   # events with lo <= m < hi
      sidebands: {files: [outerdata.root]}       # events outside [lo, hi)
      tree: Events
    scan: {window: [3.3, 3.7]}                   # sidebands: the sideband events' range

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

from hepgen.anomaly.stats.dijet import check_units
from hepgen.config import FeatureConfig, apply_overrides, read_yaml
from hepgen.errors import ConfigError, InputError, did_you_mean
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


class InputSection(_Strict):
    """``data.signal_region`` or ``data.sidebands``: one of two separate samples."""

    files: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    tree: str | None = Field(None, min_length=1)


class DataSection(_Strict):
    """Where the events come from: ROOT files (one spectrum, or separate signal-region and
    sideband samples), or the reference simulation."""

    files: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    tree: str = Field("Events", min_length=1)
    step_size: int = Field(500_000, gt=0)
    simulate: SimulateSection | None = None
    signal_region: InputSection | None = None
    sidebands: InputSection | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> DataSection:
        if (self.signal_region is None) != (self.sidebands is None):
            given, other = (
                ("signal_region", "sidebands")
                if self.sidebands is None
                else ("sidebands", "signal_region")
            )
            raise NestedProblems(
                f"key 'data.{given}': separate samples need 'data.{other}' too (the events "
                "inside and outside scan.window)"
            )
        if self.signal_region is not None and self.files:
            raise NestedProblems(
                "key 'data.files': give either 'files' (one spectrum) or 'signal_region' and "
                "'sidebands' (separate samples), not both"
            )
        return self

    @property
    def split(self) -> bool:
        """Whether the events come as separate signal-region and sideband samples."""
        return self.signal_region is not None


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
        if self.data.split and self.scan.window is None:
            raise NestedProblems(
                "key 'scan.window': separate signal-region and sideband samples need the "
                "fixed window they were split at (scan: {window: [lo, hi]}) instead of "
                "sliding windows"
            )
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
    if not config.data.files and config.data.simulate is None and not config.data.split:
        raise ConfigError(
            f"{source}: 'data' needs 'files' (ROOT files), 'signal_region' and 'sidebands' "
            "(separate samples) or 'simulate' (reference simulation)"
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

    Separate signal-region and sideband samples (``data.signal_region``,
    ``data.sidebands``) are checked against ``scan.window`` and concatenated, signal-region
    events first.

    Parameters
    ----------
    config : ScanConfig
    files : list of str or None
        Override ``data.files`` (paths or glob patterns relative to the working directory).

    Returns
    -------
    dict of str to np.ndarray of shape (n,)
        Each branch as read (the resonance variable in its own units).

    Raises
    ------
    InputError
        A missing file, tree or branch (the file, the tree and the branch named), a pattern
        that matches nothing, non-finite values, or a signal-region (sideband) sample with
        events outside (inside) ``scan.window`` (counted, the file named).
    ConfigError
        ``files`` given for a config with separate samples.

    Examples
    --------
    >>> cfg = parse_scan_config({
    ...     "data": {"simulate": {"n_events": 2000, "seed": 1}},
    ...     "resonance": {"name": "mjj", "kind": "positive"},
    ...     "features": [{"name": "mj1", "kind": "positive"}],
    ...     "scan": {"start": 3.3, "stop": 3.7, "width": 0.4, "step": 0.2, "sideband": 0.4}})
    >>> cols = read_scan_columns(cfg)
    >>> sorted(cols), cols["mjj"].shape
    (['label', 'mj1', 'mjj'], (2000,))
    """
    return _read_inputs(config, files)[0]


def _read_inputs(
    config: ScanConfig, files: list[str] | None
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """:func:`read_scan_columns` and the report's lines on the inputs (name: description)."""
    data = config.data
    if files and data.split:
        raise ConfigError(
            f"{config._source}: --files replaces 'data.files', but this config reads "
            "'data.signal_region' and 'data.sidebands': set theirs instead, e.g. --set "
            "data.signal_region.files=[sr.root]"
        )
    if files:
        return _read_files(config, files, data.tree, "--files", None)
    if data.files:
        paths = [_resolve(config, f) for f in data.files]
        return _read_files(config, paths, data.tree, "data.files", None)
    if data.split:
        assert data.signal_region is not None and data.sidebands is not None
        cols, lines = {}, {}
        parts = []
        for key, section, inside in (
            ("signal_region", data.signal_region, True),
            ("sidebands", data.sidebands, False),
        ):
            paths = [_resolve(config, f) for f in section.files]
            c, line = _read_files(config, paths, section.tree or data.tree, f"data.{key}", inside)
            parts.append(c)
            lines[key.replace("_", " ")] = line["events"]
        common = [k for k in parts[0] if k in parts[1]]
        cols = {k: np.concatenate([parts[0][k], parts[1][k]]) for k in common}
        return cols, lines
    return _simulate(config)


def _simulate(config: ScanConfig) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The events of ``data.simulate`` (the reference dijet simulation)."""
    import awkward as ak

    from hepgen.sim import DijetSimulation

    sim = config.data.simulate
    assert sim is not None
    names = [config.resonance.name, *(f.name for f in config.features), "label"]
    events = DijetSimulation(
        signal_fraction=sim.signal_fraction,
        mx=sim.mx,
        my1=sim.my1,
        my2=sim.my2,
        mx_width=sim.mx_width,
    ).generate(sim.n_events, seed=sim.seed)
    cols = {n: ak.to_numpy(events[n]) for n in names if n in events.fields}
    return cols, {"events": f"reference simulation ({sim.model_dump()})"}


def _read_files(
    config: ScanConfig, paths: list[str], tree: str, key: str, inside: bool | None
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The scan's branches of ``paths`` (files or glob patterns), read file by file.

    ``inside``: every event must lie inside (True) or outside (False) ``scan.window``; None:
    no check.  ``key`` (the config key of the paths) starts the messages.
    """
    import awkward as ak

    from hepgen.io.reader import inspect_tree, iterate_events, resolve_files

    try:
        resolved = resolve_files(paths)
    except InputError as err:
        raise InputError(f"{key}: {err}") from None
    names = [config.resonance.name, *(f.name for f in config.features)]
    branches = list(names)
    if config.label is not None and config.label in inspect_tree(resolved[0], tree).branches:
        branches.append(config.label)
    for path in resolved:  # every branch of every file, before the first event is read
        available = inspect_tree(path, tree).branches
        missing = [b for b in branches if b not in available]
        if missing:
            b = missing[0]
            what = "label branch" if b == config.label else "branch"
            first = "" if path == resolved[0] else f"; the first file '{resolved[0]}' has it"
            raise InputError(
                f"{key}: file '{path}', tree '{tree}' has no {what} '{b}'"
                f"{did_you_mean(b, available)} (named in the scan config{first})"
            )
    chunks: dict[str, list[np.ndarray]] = {b: [] for b in branches}
    for path in resolved:
        m_file = []
        for events in iterate_events([path], branches, tree=tree, step_size=config.data.step_size):
            for b in branches:
                chunks[b].append(ak.to_numpy(events[b]))
            m_file.append(chunks[config.resonance.name][-1])
        if inside is not None and m_file:
            _check_side(np.concatenate(m_file), config, path, key, inside)
    cols = {b: np.concatenate(v) for b, v in chunks.items()}
    n = cols[config.resonance.name].size
    shown = ", ".join(os.fspath(p) for p in paths)
    count = f"{len(resolved)} file{'s' * (len(resolved) != 1)}, tree '{tree}', {n} events"
    return cols, {"events": f"{shown} ({count})"}


def _check_side(m: np.ndarray, config: ScanConfig, path: Any, key: str, inside: bool) -> None:
    """Every event of a signal-region (``inside``) or sideband sample on its side of the
    fixed window, else an InputError that counts them and names the file."""
    assert config.scan.window is not None
    lo, hi = config.scan.window
    m64 = np.asarray(m, dtype=np.float64)
    in_sr = (m64 >= lo) & (m64 < hi)
    wrong = ~in_sr if inside else in_sr
    n_wrong = int(wrong.sum())
    if n_wrong:
        name = config.resonance.name
        example = float(m64[wrong][0])
        where = "outside" if inside else "inside"
        raise InputError(
            f"{key}: file '{path}': {n_wrong} of {m64.size} events have {name} {where} "
            f"scan.window [{lo:g}, {hi:g}) (e.g. {name} = {example:.9g}); the "
            f"{'signal-region' if inside else 'sideband'} sample must hold only events "
            f"{'inside' if inside else 'outside'} the window: check scan.window, its units "
            "and which file is which"
        )


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
    columns, lines = _read_inputs(cfg, files)
    m = np.asarray(columns[settings.resonance_name], dtype=np.float64)
    if m.size == 0:
        raise InputError(f"{cfg._source}: the inputs hold no events")
    check_units(m, settings.resonance_name, settings.sqrt_s, cfg._source)
    finite = m[np.isfinite(m)]  # non-finite values: run_scan counts and names them
    windows = None
    if settings.window is not None and finite.size:
        # one fixed window; without scan.sideband its sidebands span the data's range (the
        # sideband sample's when the samples are separate)
        windows = settings.windows((float(finite.min()), float(finite.max())))
    result = run_scan(columns, settings, quiet=quiet, windows=windows, work_dir=work, resume=resume)
    inputs = {"config": cfg._source, **lines}
    write_scan_report(result, output, m=m, inputs=inputs)
    return result
