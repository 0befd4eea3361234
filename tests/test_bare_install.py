"""A bare ``pip install hepgen`` (no extras, so no xgboost) must still validate.

xgboost comes in two builds under one import name (``xgboost-cpu`` and the CUDA ``xgboost``),
so hepgen depends on neither by default (extras ``cpu`` / ``cuda``).  Without it the
classifier two-sample test runs scikit-learn's HistGradientBoostingClassifier and says so;
the work that has no fallback (the efficiency model, the CATHODE scan) stops with one line
naming the package and the extra.  The CLI runs are subprocesses whose ``import xgboost``
fails (a ``sitecustomize`` on ``PYTHONPATH`` blocks it), as in an environment without it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

from hepgen.errors import InputError, MissingDependencyError
from hepgen.validation.c2st import classifier_test

REPO = Path(__file__).resolve().parent.parent

BLOCKER = """\
import sys


class _NoXgboost:
    def find_spec(self, name, path=None, target=None):
        if name == "xgboost" or name.startswith("xgboost."):
            raise ImportError(f"No module named {name!r} (blocked by the bare-install test)")
        return None


sys.meta_path.insert(0, _NoXgboost())
"""


def _hepgen_without_xgboost(
    tmp_path: Path, *args: str, timeout: float = 900
) -> subprocess.CompletedProcess:
    block = tmp_path / "block"
    block.mkdir(exist_ok=True)
    (block / "sitecustomize.py").write_text(BLOCKER)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(block), str(REPO)])}
    code = "import sys; from hepgen.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_base_dependencies_do_not_include_xgboost():
    # the installed package's metadata (pip install -e . writes it from pyproject.toml)
    requires = metadata.requires("hepgen") or []
    base = [r for r in requires if "extra ==" not in r]
    assert base and not any(r.lower().startswith("xgboost") for r in base), base

    def extra(name: str) -> list[str]:
        return [r for r in requires if f"extra == '{name}'" in r.replace('"', "'")]

    cpu, cuda = extra("cpu"), extra("cuda")
    assert any(r.startswith("xgboost-cpu") for r in cpu), cpu
    assert any(r.startswith("xgboost") and not r.startswith("xgboost-cpu") for r in cuda), cuda


def test_sklearn_classifier_is_calibrated_and_has_power():
    rng = np.random.default_rng(5)
    # level: 40 null comparisons of 300 vs 300 events; the rejection rate at 5 % must stay
    # near 5 % (9 or more rejections has probability 0.4 % for a calibrated test)
    rejected = 0
    for i in range(40):
        a, b = rng.normal(size=(300, 3)), rng.normal(size=(300, 3))
        res = classifier_test(a, b, classifier="sklearn", n_estimators=100, n_jobs=1, seed=i)
        rejected += res.pvalue < 0.05
        assert res.classifier == "sklearn-hgb"
    assert rejected <= 8, rejected
    # power: a 0.25-sigma shift of one of three features in 3000 vs 3000 events
    a, b = rng.normal(size=(3000, 3)), rng.normal(size=(3000, 3))
    b[:, 1] += 0.25
    res = classifier_test(
        a, b, feature_names=["u", "shifted", "w"], classifier="sklearn", n_jobs=1, seed=0
    )
    assert res.pvalue < 1e-4 and 0.54 < res.auc < 0.62, (res.pvalue, res.auc)
    assert next(iter(res.importances)) == "shifted"
    assert "scikit-learn" in res.method


def test_auto_falls_back_and_xgboost_on_request_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "xgboost", None)  # `import xgboost` now fails
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 2)), rng.normal(size=(200, 2))
    res = classifier_test(a, b, n_estimators=20, n_jobs=1, seed=0)
    assert res.classifier == "sklearn-hgb"
    assert any("xgboost is not installed" in n for n in res.notes)
    with pytest.raises(InputError, match=r"classifier='xgboost' but xgboost is not installed"):
        classifier_test(a, b, classifier="xgboost", n_jobs=1, seed=0)
    from hepgen.models.efficiency import EfficiencyModel

    x = rng.normal(size=(200, 2)).astype(np.float32)
    with pytest.raises(MissingDependencyError, match=r"needs xgboost.*hepgen\[cpu\]"):
        EfficiencyModel(n_jobs=1).fit(x, x[:, 0] > 0)


def test_validate_runs_without_xgboost(tmp_path):
    from hepgen.sim import simulate_to_file

    for name, seed in (("ref.root", 1), ("cand.root", 2)):
        simulate_to_file(tmp_path / name, "jets", n_events=1500, seed=seed, quiet=True)
    args = ("validate", "ref.root", "cand.root", "-o", "report", "--quiet")
    run = _hepgen_without_xgboost(tmp_path, *args)
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stderr
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    c2st = metrics["c2st"]
    assert c2st["classifier"] == "sklearn-hgb"
    assert 0.4 < c2st["auc"] < 0.6  # two samples of one simulation
    assert any("xgboost is not installed" in note for note in c2st["notes"])
    html = (tmp_path / "report" / "report.html").read_text()
    assert "classifier test (scikit-learn HistGradientBoosting)" in html


def test_train_without_xgboost_names_the_missing_package(tmp_path):
    from conftest import small_flow_config_text

    from hepgen.sim import simulate_to_file

    simulate_to_file(tmp_path / "train.root", "jets", n_events=600, seed=3, quiet=True)
    (tmp_path / "cfg.yaml").write_text(small_flow_config_text(max_epochs=1))
    args = ("train", "cfg.yaml", "--files", "train.root", "-o", "model", "--quiet")
    run = _hepgen_without_xgboost(tmp_path, *args, "--device", "cpu")
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in run.stderr, run.stderr
    assert "needs xgboost" in lines[0] and "hepgen[cpu]" in lines[0]
