"""The coffea-style entry point ``hepgen.fastsim.dask_simulate`` on uproot.dask events."""

from __future__ import annotations

import logging
import sys

import awkward as ak
import numpy as np
import pytest
from conftest import train_small_fastsim

dak = pytest.importorskip("dask_awkward")
uproot = pytest.importorskip("uproot")

from hepgen.errors import InputError, MissingDependencyError  # noqa: E402
from hepgen.fastsim import FastSim, dask_simulate  # noqa: E402
from hepgen.fastsim.lazy import partition_seed  # noqa: E402
from hepgen.sim import simulate_to_file  # noqa: E402

STEP = 700  # entries per partition: 3 + 2 partitions over the two files


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny model (1000 events, 1 epoch) and two small files of new events."""
    work = tmp_path_factory.mktemp("lazy")
    model = train_small_fastsim(work, n_events=1000, max_epochs=1)
    files = {
        str(
            simulate_to_file(work / "a.root", "jets", n_events=1500, seed=21, quiet=True)
        ): "Events",
        str(simulate_to_file(work / "b.root", "jets", n_events=900, seed=22, quiet=True)): "Events",
    }
    return {"model": model, "files": files, "sim": FastSim.load(model)}


@pytest.fixture(autouse=True)
def _quiet_domain_warnings(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="hepgen")  # the tiny model's domain warnings


def _events(setup: dict, step: int = STEP):
    return uproot.dask(setup["files"], step_size=step)


def test_lazy_simulation_equals_fastsim_per_partition_and_is_reproducible(setup: dict) -> None:
    events = _events(setup)
    sim = setup["sim"]
    reco = dask_simulate(events, setup["model"], seed=5)
    # lazy, the partitions and divisions of the input; only the gen conditions are read
    assert isinstance(reco, dak.Array) and reco.npartitions == events.npartitions == 5
    assert reco.divisions == events.divisions
    (columns,) = dak.report_necessary_columns(reco).values()
    assert set(columns) == set(sim.condition_names)
    out = reco.compute(scheduler="synchronous")
    assert len(out) == 2400
    assert out.layout.form == reco._meta.layout.form  # the meta is the real output form
    assert out.fields == [*sim.target_names, "Jet_genJetIdx"]
    # exactly FastSim.simulate on each partition, seeded by partition_seed
    parts = []
    for i in range(events.npartitions):
        gen = events.partitions[i][sim.condition_names].compute(scheduler="synchronous")
        parts.append(sim.simulate(gen, seed=partition_seed(5, gen)))
    assert ak.array_equal(out, ak.concatenate(parts))
    # real objects: every reco jet points to a gen jet of its event or is a fake (-1)
    gen_pt = events.GenJet_pt.compute(scheduler="synchronous")
    idx = out.Jet_genJetIdx
    assert ak.all((idx >= -1) & (idx < ak.num(gen_pt, axis=1)))
    n_matched, n_gen = int(ak.sum(idx >= 0)), int(ak.sum(ak.num(gen_pt, axis=1)))
    assert 0.5 * n_gen < n_matched <= n_gen
    # the same again, and a different seed gives different jets
    assert ak.array_equal(out, reco.compute(scheduler="synchronous"))
    other = dask_simulate(events, setup["model"], seed=6).compute(scheduler="synchronous")
    assert not np.array_equal(ak.flatten(other.Jet_pt), ak.flatten(out.Jet_pt))


def test_nested_records_and_oversampling(setup: dict) -> None:
    """coffea's NanoEvents form (events.GenJet.pt) gives the flat form's result."""
    events = _events(setup)
    sim = setup["sim"]
    gen = dak.zip({n.removeprefix("GenJet_"): events[n] for n in sim.condition_names})
    nested = dak.zip({"GenJet": gen, "run": events.run}, depth_limit=1)
    flat = dask_simulate(events, setup["model"], seed=2).compute(scheduler="synchronous")
    assert ak.array_equal(
        dask_simulate(nested, setup["model"], seed=2).compute(scheduler="synchronous"), flat
    )
    twice = dask_simulate(events, setup["model"], seed=2, oversample=2)
    assert twice.divisions == tuple(2 * d for d in events.divisions)
    out = twice.compute(scheduler="synchronous")
    assert len(out) == 4800 and np.all(np.asarray(out.hepgen_weight) == np.float32(0.5))
    assert np.array_equal(np.asarray(out.hepgen_draw[:4]), [0, 1, 0, 1])


def test_distributed_two_processes_equal_synchronous(setup: dict) -> None:
    distributed = pytest.importorskip("distributed")
    events = _events(setup)
    reco = dask_simulate(events, setup["model"], seed=9)
    local = reco.compute(scheduler="synchronous")
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
        remote = client.compute(reco).result()
        # both workers loaded the model from its directory (the task carries the path only)
        pids = client.run(lambda: __import__("os").getpid())
    assert len(pids) == 2
    assert ak.array_equal(remote, local)


def test_bad_inputs(setup: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    events = _events(setup)
    with pytest.raises(InputError, match=r"dask_awkward\.Array"):
        dask_simulate(events.compute(), setup["model"])
    with pytest.raises(InputError, match=r"neither the flat fields \['GenJet_pt'"):
        dask_simulate(events[["run", "Jet_pt"]], setup["model"])
    with pytest.raises(InputError, match="seed"):
        dask_simulate(events, setup["model"], seed=-1)
    with pytest.raises(InputError, match="oversample"):
        dask_simulate(events, setup["model"], oversample=0)
    with pytest.raises(InputError, match="model must be"):
        dask_simulate(events, 3)
    monkeypatch.setitem(sys.modules, "dask_awkward", None)
    with pytest.raises(MissingDependencyError, match=r"hepgen\[dask\]"):
        dask_simulate(events, setup["model"])
