"""Property-based fuzzing of both config loaders: whatever the input, only ``ConfigError``.

Arbitrary nested YAML-like data (dicts, lists, scalars with NaN, inf, huge integers, odd
strings) goes into :func:`hepgen.config.parse_config` and
:func:`hepgen.anomaly.config.parse_scan_config`; the shipped configs are mutated key by key
(dropped, replaced, retyped); and the shipped YAML files are mutated byte by byte and read with
the file loaders.  Any exception other than :class:`hepgen.errors.ConfigError` fails the test
(hypothesis prints the smallest input that does it).  The default run is bounded and
deterministic (``derandomize=True``); ``-m slow`` runs many more examples.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hepgen.anomaly.config import ScanConfig, load_scan_config, parse_scan_config
from hepgen.config import load_config, parse_config
from hepgen.errors import ConfigError
from hepgen.resources import config_path, list_configs

SHIPPED = {name: config_path(name).read_bytes() for name in list_configs()}
SCAN_NAMES = [n for n, b in SHIPPED.items() if "scan" in yaml.safe_load(b)]
FASTSIM_NAMES = [n for n in SHIPPED if n not in SCAN_NAMES]
PARSED = {name: yaml.safe_load(b) for name, b in SHIPPED.items()}


def _keys(value: Any, out: set[str]) -> set[str]:
    if isinstance(value, dict):
        for k, v in value.items():
            out.add(str(k))
            _keys(v, out)
    elif isinstance(value, list):
        for v in value:
            _keys(v, out)
    return out


#: Every key of the shipped configs: drawn as dict keys so that the fuzzer gets past the
#: top level into the sections.
KNOWN_KEYS = sorted(set().union(*(_keys(v, set()) for v in PARSED.values())))

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([0, 1, -1, 2**63, -(2**63) - 1, 10**30])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e308, 5e-324])
    | st.text(max_size=12)
    | st.sampled_from(
        [
            "",
            " ",
            "Events",
            "auto",
            "cuda",
            "flow",
            "gan",
            "positive",
            "index",
            "cathode",
            "anode",
            "-1",
            ".nan",
            "\x00",
            "é",
            "*",
        ]
    )
)
keys = st.sampled_from(KNOWN_KEYS) | st.text(max_size=8)
yaml_like = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=5),
    max_leaves=25,
)


def only_config_errors(parse: Callable[[Any], Any], value: Any) -> None:
    try:
        config = parse(value)
    except ConfigError as err:
        assert "\n" not in str(err), str(err)  # one line, always
        return
    # what the commands use of a config that loaded must work without another error
    if isinstance(config, ScanConfig):
        scan = config.settings()
        assert scan.windows() and scan.resonance_name and scan.feature_names
    else:
        assert len(config.schema) > 0
        config.model.generator_settings()
        config.training.settings()
        config.input_files()


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (tuple of keys and indices) into a nested dict/list, the root excluded."""
    out = []
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for k, v in items:
        out.append((*prefix, k))
        out.extend(_paths(v, (*prefix, k)))
    return out


@st.composite
def mutated(draw: st.DrawFn, names: list[str]) -> Any:
    """A shipped config with one to three keys dropped, replaced or retyped, or a key added."""
    data = copy.deepcopy(PARSED[draw(st.sampled_from(names))])
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(data)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = data
        for k in path[:-1]:
            parent = parent[k]
        key = path[-1]
        action = draw(st.sampled_from(["drop", "replace", "retype", "add"]))
        if action == "drop":
            del parent[key]
        elif action == "replace":
            parent[key] = draw(yaml_like)
        elif action == "retype":
            old = parent[key]
            parent[key] = (
                [old]
                if not isinstance(old, list)
                else {"x": old}
                if isinstance(old, list)
                else str(old)
            )
        elif isinstance(parent, dict):
            parent[draw(keys)] = draw(scalars)
        else:
            parent.append(draw(yaml_like))
    return data


@st.composite
def byte_mutated(draw: st.DrawFn) -> tuple[str, bytes]:
    """A shipped YAML file with a few bytes replaced, inserted or deleted."""
    name = draw(st.sampled_from(sorted(SHIPPED)))
    data = bytearray(SHIPPED[name])
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["replace", "insert", "delete"]))
        byte = draw(st.integers(0, 255) | st.sampled_from(list(b":-[]{}\n #'\"&*!|>%@`\t")))
        if action == "replace":
            data[pos] = byte
        elif action == "insert":
            data.insert(pos, byte)
        else:
            del data[pos]
    return name, bytes(data)


FAST = settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
SLOW = settings(
    max_examples=3000,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _fuzz_arbitrary(value: Any) -> None:
    only_config_errors(parse_config, value)
    only_config_errors(parse_scan_config, value)


def _fuzz_mutated_fastsim(value: Any) -> None:
    only_config_errors(parse_config, value)


def _fuzz_mutated_scan(value: Any) -> None:
    only_config_errors(parse_scan_config, value)


def _fuzz_bytes(tmp_dir, named: tuple[str, bytes]) -> None:
    name, data = named
    path = tmp_dir / name
    path.write_bytes(data)
    load = load_scan_config if name in SCAN_NAMES else load_config
    only_config_errors(load, path)
    other = load_config if name in SCAN_NAMES else load_scan_config
    only_config_errors(other, path)


def test_the_shipped_configs_load_unmutated():
    assert FASTSIM_NAMES and SCAN_NAMES
    for name in FASTSIM_NAMES:
        assert parse_config(copy.deepcopy(PARSED[name]), name).features
    for name in SCAN_NAMES:
        assert parse_scan_config(copy.deepcopy(PARSED[name]), name).features


@FAST
@given(yaml_like)
def test_arbitrary_data_gives_only_config_errors(value):
    _fuzz_arbitrary(value)


@FAST
@given(mutated(FASTSIM_NAMES))
def test_mutated_fastsim_configs_give_only_config_errors(value):
    _fuzz_mutated_fastsim(value)


@FAST
@given(mutated(SCAN_NAMES))
def test_mutated_scan_configs_give_only_config_errors(value):
    _fuzz_mutated_scan(value)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@FAST
@given(named=byte_mutated())
def test_byte_mutated_yaml_files_give_only_config_errors(fuzz_dir, named):
    _fuzz_bytes(fuzz_dir, named)


@pytest.mark.slow
@SLOW
@given(yaml_like)
def test_arbitrary_data_many(value):
    _fuzz_arbitrary(value)


@pytest.mark.slow
@SLOW
@given(mutated(FASTSIM_NAMES))
def test_mutated_fastsim_configs_many(value):
    _fuzz_mutated_fastsim(value)


@pytest.mark.slow
@SLOW
@given(mutated(SCAN_NAMES))
def test_mutated_scan_configs_many(value):
    _fuzz_mutated_scan(value)


@pytest.mark.slow
@SLOW
@given(named=byte_mutated())
def test_byte_mutated_yaml_files_many(fuzz_dir, named):
    _fuzz_bytes(fuzz_dir, named)
