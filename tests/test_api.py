"""The top-level API: the names analysis code uses exist, are documented, and ``import hepgen``
stays light (no torch)."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import hepgen

PUBLIC = ["FastSim", "load_model", "load_config", "compare", "simulate"]


@pytest.mark.parametrize("name", PUBLIC)
def test_top_level_names_exist_and_are_documented(name):
    obj = getattr(hepgen, name)
    assert name in hepgen.__all__ and name in dir(hepgen)
    doc = inspect.getdoc(obj)
    assert doc and len(doc.splitlines()) > 3, f"hepgen.{name} has no real docstring"


def test_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        hepgen.nothing  # noqa: B018


def test_import_hepgen_does_not_import_torch():
    code = (
        "import sys, hepgen; "
        "assert 'torch' not in sys.modules, 'import hepgen imported torch'; "
        "hepgen.load_model; hepgen.simulate; "
        "assert 'torch' not in sys.modules, 'hepgen.load_model imported torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
