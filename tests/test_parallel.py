"""Data-parallel generate and score over many files (hepgen.parallel): partitions aligned to
seed blocks, outputs that do not depend on the step size, the layout or the executor, a
killed Dask worker's partitions re-run without lost or duplicated events, manifests."""

from __future__ import annotations

import json
import logging
import os
import signal
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from hepgen.cli import main
from hepgen.errors import InputError
from hepgen.parallel import (
    MANIFEST,
    Partition,
    block_seeds,
    executor,
    file_uuid,
    plan_partitions,
    row_uniforms,
)

BLOCK = 250


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A tiny trained fast simulation and three input files of different sizes."""
    from conftest import train_small_fastsim

    from hepgen.sim import simulate_to_file

    d = tmp_path_factory.mktemp("parallel")
    model = train_small_fastsim(d, 1000, 1, "--seed", "2")
    inputs = [
        simulate_to_file(d / f"in{i}.root", "jets", n_events=n, seed=30 + i, quiet=True)
        for i, n in enumerate((1100, 600, 1350))
    ]
    return {"model": model, "inputs": [str(p) for p in inputs], "dir": d}


def _read(paths: list[Path]) -> ak.Array:
    return ak.concatenate([uproot.open(p)["Events"].arrays() for p in paths])


def _assert_identical(a: ak.Array, b: ak.Array) -> None:
    """Same fields, list lengths and bytes in every branch."""
    assert sorted(a.fields) == sorted(b.fields)
    for name in a.fields:
        x, y = a[name], b[name]
        if x.ndim > 1:
            assert np.array_equal(ak.num(x, axis=1), ak.num(y, axis=1)), name
        vx, vy = np.asarray(ak.ravel(x)), np.asarray(ak.ravel(y))
        assert vx.dtype == vy.dtype and vx.tobytes() == vy.tobytes(), name


# ---------------------------------------------------------------- partitions and seeds


def test_partitions_are_aligned_to_the_seed_block_and_cover_every_entry(production):
    inputs = production["inputs"]
    plan = plan_partitions(inputs, "Events", step_size=600, block=BLOCK)  # rounded up to 750
    assert [(p.file_index, p.start, p.stop) for p in plan] == [
        (0, 0, 750),
        (0, 750, 1100),
        (1, 0, 600),
        (2, 0, 750),
        (2, 750, 1350),
    ]
    assert len({p.uuid for p in plan}) == 3 and plan[0].uuid == file_uuid(inputs[0])
    # a text file of paths (relative to the list) is the same input
    listing = production["dir"] / "inputs.txt"
    listing.write_text("# three files\n" + "\n".join(Path(p).name for p in inputs) + "\n\n")
    assert plan_partitions(f"@{listing}", "Events", 600, BLOCK) == plan
    with pytest.raises(InputError, match="step size must be a positive"):
        plan_partitions(inputs, "Events", 0, BLOCK)


def test_seeds_depend_on_file_and_entries_only():
    uid = "12" * 16
    whole = Partition("a.root", "Events", 0, 1000, 0, uid)
    moved = Partition("elsewhere/a_copy.root", "T", 500, 1000, 7, uid)  # same UUID
    assert block_seeds(whole, 4, block=250)[2:] == block_seeds(moved, 4, block=250)
    other = Partition("a.root", "Events", 0, 1000, 0, "13" * 16)
    assert block_seeds(other, 4, 250) != block_seeds(whole, 4, 250)
    assert block_seeds(whole, 5, 250) != block_seeds(whole, 4, 250)
    u = row_uniforms(whole, 4, block=250, salt=1)
    assert u.shape == (1000,) and np.array_equal(u[500:], row_uniforms(moved, 4, 250, salt=1))
    assert abs(u.mean() - 0.5) < 0.05
    with pytest.raises(InputError, match="multiple of the seed block"):
        block_seeds(Partition("a.root", "Events", 10, 20, 0, uid), 4, block=250)


def test_the_in_process_executor_keeps_order_and_raises_the_task_error():
    with executor() as ex:
        assert list(ex.map(abs, [-3, 1, -2], quiet=True)) == [(0, 3), (1, 1), (2, 2)]
        assert ex.describe()["kind"] == "in-process"
        with pytest.raises(TypeError):
            list(ex.map(abs, ["x"], quiet=True))
    with pytest.raises(InputError, match="either --workers"), executor(workers=2, scheduler="x"):
        pass


# ---------------------------------------------------------------- generate and score


def test_generate_is_the_same_for_any_step_and_layout(production, tmp_path):
    from hepgen.generate import generate_file

    model, inputs = production["model"], production["inputs"]
    run = {"seed": 9, "block": BLOCK, "quiet": True, "device": "cpu"}
    single = generate_file(model, inputs, tmp_path / "one.root", step_size=BLOCK, **run)
    folder = generate_file(model, inputs, tmp_path / "files", step_size=1000, **run)
    parts = generate_file(
        model, inputs, tmp_path / "parts", step_size=500, layout="per-partition", **run
    )
    reference = _read([tmp_path / "one.root"])
    assert len(reference) == 3050 == single["events"] == folder["events"] == parts["events"]
    names = [tmp_path / "files" / Path(p).name for p in inputs]
    _assert_identical(reference, _read(names))
    manifest = json.loads((tmp_path / "parts" / MANIFEST).read_text())
    _assert_identical(reference, _read([Path(o["path"]) for o in manifest["outputs"]]))
    assert manifest["partitions"] == 3 + 2 + 3 and manifest["events"] == 3050
    assert [i["uuid"] for i in manifest["inputs"]] == [file_uuid(p) for p in inputs]
    assert len(manifest["model_hash"]) == 64 and manifest["seed_block"] == BLOCK
    assert manifest["counts"]["events"] == 3050 and "_replaced" not in manifest["counts"]
    assert manifest["counts"]["reco_objects"] == parts["reco_objects"] > 0
    # another seed gives other events
    other = generate_file(
        model, inputs[1], tmp_path / "seed.root", step_size=BLOCK, **run | {"seed": 10}
    )
    first = _read([tmp_path / "seed.root"])
    mine = reference[1100:1700]
    assert not np.array_equal(ak.ravel(first["Jet_pt"]), ak.ravel(mine["Jet_pt"]))
    assert other["events"] == 600


def test_cli_generate_into_a_folder_from_a_file_list(production, tmp_path, capsys):
    model, inputs = production["model"], production["inputs"]
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(inputs))
    out = tmp_path / "prod"
    common = ["--seed", "1", "--device", "cpu", "--quiet", "--seed-block", str(BLOCK)]
    assert main(["generate", str(model), f"@{listing}", "-o", str(out), *common]) == 0
    printed = capsys.readouterr().out
    assert f"outputs: 3 files in {out}" in printed and "manifest" in printed
    manifest = json.loads((out / MANIFEST).read_text())
    assert [o["rows"] for o in manifest["outputs"]] == [1100, 600, 1350]
    assert manifest["executor"]["kind"] == "in-process" and not (out / ".hepgen-parts").exists()
    # a finished production is not replaced without --overwrite
    assert main(["generate", str(model), *inputs, "-o", str(out), *common]) == 2
    assert "manifest.json" in capsys.readouterr().err
    assert main(["generate", str(model), *inputs, "-o", str(out), "--overwrite", *common]) == 0
    assert main(["generate", str(model), *inputs, "-o", str(out), "--workers", "0", *common]) == 2
    assert "--workers must be a positive" in capsys.readouterr().err


def test_same_file_names_in_two_folders_are_refused_per_file(production, tmp_path):
    from hepgen.generate import generate_file

    other = tmp_path / "sub"
    other.mkdir()
    copy = other / Path(production["inputs"][1]).name
    copy.write_bytes(Path(production["inputs"][1]).read_bytes())
    with pytest.raises(InputError, match="have the same file name"):
        generate_file(production["model"], [production["inputs"][1], copy], tmp_path / "o")


def test_score_is_the_same_in_one_file_or_one_per_input(production, tmp_path):
    from hepgen.anomaly.score import score_file

    model, inputs = production["model"], production["inputs"]
    a = score_file(model, inputs, tmp_path / "s.root", step_size=500, block=BLOCK, quiet=True)
    b = score_file(model, inputs, tmp_path / "s", step_size=BLOCK, block=BLOCK, quiet=True)
    assert a["n_events"] == b["n_events"] == 3050 and a["n_scored"] == b["n_scored"] > 0
    _assert_identical(
        _read([tmp_path / "s.root"]), _read([tmp_path / "s" / Path(p).name for p in inputs])
    )


# ---------------------------------------------------------------- Dask


def _kill_once(distributed, marker_dir: str, targets: dict[str, str]):
    """A worker plugin that SIGKILLs its worker process when a chosen task starts executing
    (``"executing"``) or has just finished (``"memory"``: its part file is written), once per
    marker file."""

    class KillOnce(distributed.WorkerPlugin):
        name = "hepgen-test-kill"

        def transition(self, key, start, finish, **kwargs):
            name = key if isinstance(key, str) else str(key)
            for prefix, state in targets.items():
                marker = os.path.join(marker_dir, prefix)
                if name.startswith(prefix) and finish == state and not os.path.exists(marker):
                    open(marker, "w").close()
                    os.kill(os.getpid(), signal.SIGKILL)

    return KillOnce()


def test_dask_workers_give_the_same_events_even_when_a_worker_is_killed(production, tmp_path):
    distributed = pytest.importorskip("distributed")
    from hepgen.anomaly.score import score_file
    from hepgen.generate import generate_file

    model, inputs = production["model"], production["inputs"]
    run = {"seed": 9, "block": BLOCK, "quiet": True, "device": "cpu"}
    generate_file(model, inputs, tmp_path / "ref", step_size=2 * BLOCK, **run)
    reference = _read([tmp_path / "ref" / Path(p).name for p in inputs])
    # partitions of 2 blocks: 7 tasks; kill the worker that starts task 1 and the one that
    # has just written task 4's part file (its re-run overwrites the part)
    targets = {"hepgen-generate-1-": "executing", "hepgen-generate-4-": "memory"}
    markers = tmp_path / "markers"
    markers.mkdir()
    environ = dict(os.environ)  # a plain LocalCluster's nanny writes into it
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        client.register_plugin(_kill_once(distributed, str(markers), targets))
        stats = generate_file(
            model, inputs, tmp_path / "dask", step_size=2 * BLOCK, scheduler=client, **run
        )
        scored = score_file(
            model,
            inputs,
            tmp_path / "scored",
            step_size=BLOCK,
            block=BLOCK,
            scheduler=client,
            quiet=True,
        )
    os.environ.clear()
    os.environ.update(environ)
    assert sorted(os.listdir(markers)) == sorted(targets)  # both kills happened
    out = tmp_path / "dask"
    assert sorted(os.listdir(out)) == sorted([MANIFEST, *(Path(p).name for p in inputs)])
    _assert_identical(reference, _read([out / Path(p).name for p in inputs]))
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["events"] == stats["events"] == 3050
    assert manifest["executor"]["kind"] == "scheduler"
    assert [o["rows"] for o in manifest["outputs"]] == [1100, 600, 1350]
    assert scored["n_events"] == 3050
    local = score_file(model, inputs, tmp_path / "scored.root", block=BLOCK, quiet=True)
    # one torch thread for the model calls here and on the workers: the same bits
    _assert_identical(
        _read([tmp_path / "scored.root"]),
        _read([tmp_path / "scored" / Path(p).name for p in inputs]),
    )
    assert local["n_scored"] == scored["n_scored"]


def test_cli_validate_many_files_is_partitioned_and_refuses_in_memory_options(
    production, tmp_path, capsys
):
    inputs = production["inputs"]
    listing = tmp_path / "ref.txt"
    listing.write_text("\n".join(inputs[:2]))
    report = tmp_path / "report"
    common = ["--quiet", "--device", "cpu", "--metrics", "ks", "chi2", "c2st"]
    common += ["--features", "GenJet_pt", "GenJet_eta", "nGenJet"]
    # the same events on both sides, cut into other partitions: nothing may differ
    assert main(["validate", f"@{listing}", f"@{listing}", "-o", str(report), *common]) == 0
    printed = capsys.readouterr().out
    assert "partitioned: 4 partitions on in-process" in printed and "verdict: PASS" in printed
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["partitioned"]["entries"] == {"reference": 1700, "candidate": 1700}
    assert all(f["ks"]["statistic"] == 0.0 for f in metrics["features"].values())
    code = main(
        [
            "validate",
            inputs[0],
            inputs[1],
            "-o",
            str(report),
            "--workers",
            "2",
            "--max-events",
            "10",
            *common,
        ]
    )
    assert code == 2 and "--max-events is not available in partitioned mode" in (
        capsys.readouterr().err
    )


def test_a_local_cluster_leaves_the_environment_and_keeps_freed_memory(monkeypatch):
    from hepgen.devices import MALLOC_SETTINGS

    pytest.importorskip("distributed")
    for name in MALLOC_SETTINGS:
        monkeypatch.delenv(name, raising=False)  # left by another cluster
    before = dict(os.environ)
    with executor(workers=1) as ex:
        assert ex.describe()["workers"] == 1
        trims = ex.client.run(lambda: {k: os.environ.get(k) for k in MALLOC_SETTINGS})
        threads = ex.client.run(lambda: os.environ.get("OMP_NUM_THREADS"))
        assert list(ex.map(abs, [-4, 5], quiet=True, key="t")) in (
            [(0, 4), (1, 5)],
            [(1, 5), (0, 4)],
        )
    # Dask's own 64 KiB trim threshold is replaced by hepgen's settings
    assert list(trims.values()) == [MALLOC_SETTINGS] and list(threads.values()) == ["1"]
    assert dict(os.environ) == before
