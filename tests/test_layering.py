"""The import layering of docs/architecture.md, kept true: a package imports only from its own
layer or below (lazy imports inside functions included), packages of one layer import each other
without cycles, and reading a configuration imports no torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "hepgen"

#: The layers of docs/architecture.md, bottom first: the top-level modules and packages of
#: hepgen.  Keep this table and the page in step.
LAYERS: list[set[str]] = [
    {"_version", "errors"},
    {"outputs", "provenance", "resources", "progress", "stats", "devices", "utils"},
    {"settings", "transforms", "io", "sweights"},
    {"features", "preprocessing", "config", "summary", "sim", "parallel"},
    {"dataset", "prepare", "training"},
    {"models"},
    {"modeldir"},
    {"fastsim", "validation", "anomaly", "generate", "modelcard", "export"},
    {"cli", "demo", "hepgen", "__main__"},
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "hepgen"


def _edges() -> dict[tuple[str, str], list[str]]:
    """(importing package, imported package) -> the files and lines where it happens."""
    edges: dict[tuple[str, str], list[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        source = _package(".".join(parts))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                if name == "hepgen" or name.startswith("hepgen."):
                    target = _package(name)
                    if target != source:
                        edges.setdefault((source, target), []).append(f"{rel}:{node.lineno}")
    return edges


def test_every_package_has_a_layer():
    modules = {p.stem for p in ROOT.glob("*.py")} - {"__init__"}
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    missing = sorted((modules | packages) - set(LAYER))
    assert not missing, f"add {missing} to LAYERS here and to docs/architecture.md"


def test_no_package_imports_a_layer_above_its_own():
    upward = [
        f"{a} (layer {LAYER[a]}) imports {b} (layer {LAYER[b]}) at {', '.join(where)}"
        for (a, b), where in _edges().items()
        if a in LAYER and b in LAYER and LAYER[b] > LAYER[a]
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for a, b in _edges():
        graph.setdefault(a, set()).add(b)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    cycles = sorted(a for a in graph if reaches(a, a, {a}))
    assert not cycles, f"packages in an import cycle: {cycles}"


@pytest.mark.parametrize(
    "code",
    [
        "import hepgen.config as c; from hepgen.resources import config_path; "
        "c.load_config(config_path('toy_jets_flow.yaml'))",
        "import hepgen.anomaly.config as c; from hepgen.resources import config_path; "
        "c.load_scan_config(config_path('toy_anomaly_scan.yaml'))",
        "import hepgen.settings, hepgen.devices, hepgen.modeldir",
    ],
)
def test_reading_a_configuration_imports_no_torch(code):
    check = f"{code}; import sys; assert 'torch' not in sys.modules, 'torch imported'"
    run = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
