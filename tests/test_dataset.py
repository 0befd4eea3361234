"""Config -> matched pairs, efficiency flags and fakes; prepare() and its round-trip check."""

from __future__ import annotations

import json

import numpy as np
import pytest
import uproot

from hepgen.config import load_config
from hepgen.dataset import load_pairs
from hepgen.prepare import prepare
from hepgen.resources import config_path


@pytest.fixture(scope="module")
def config():
    return load_config(config_path("toy_jets.yaml"))


def test_pairs_are_aligned_and_counted(config, jets_file):
    pairs = load_pairs(config, files=[str(jets_file)], quiet=True)
    idx = uproot.open(jets_file)["Events"]["Jet_genJetIdx"].array(library="np")
    flat_idx = np.concatenate(idx)
    assert pairs.n_events == 5000
    assert pairs.n_matched == int(np.sum(flat_idx >= 0))
    assert pairs.n_fakes == int(np.sum(flat_idx < 0))
    # matched reco jets point the same way as their gen jets
    deta = pairs.reco["Jet_eta"] - pairs.gen["GenJet_eta"][pairs.matched]
    assert np.quantile(np.abs(deta), 0.99) < 0.1
    response = pairs.reco["Jet_pt"] / pairs.gen["GenJet_pt"][pairs.matched]
    assert 0.9 < np.median(response) < 1.1
    # efficiency rises with gen pt (turn-on at ~20 GeV)
    pt = pairs.gen["GenJet_pt"]
    assert pairs.matched[pt < 22].mean() < 0.7 < 0.95 < pairs.matched[pt > 60].mean()
    assert np.all(pairs.gen_weights == 1.0)


def test_deltar_matching_agrees_with_index(config, jets_file):
    dr_config = config.model_copy(
        update={
            "data": config.data.model_copy(
                update={"matching": config.data.matching.model_copy(update={"method": "deltar"})}
            )
        }
    )
    by_index = load_pairs(config, files=[str(jets_file)], quiet=True)
    by_dr = load_pairs(dr_config, files=[str(jets_file)], quiet=True)
    agree = np.mean(by_index.matched == by_dr.matched)
    assert agree > 0.97


def test_prepare_writes_outputs_and_inverts(config, jets_file, tmp_path):
    summary = prepare(config, tmp_path, files=[str(jets_file)], quiet=True)
    assert (tmp_path / "preprocessing.json").is_file()
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk["data"] == summary["data"]
    errors = summary["round_trip_max_rel_error"]
    assert errors["Jet_nConstituents"] == 0.0
    assert max(errors.values()) < 1e-5


def test_prepare_runs_on_real_nanoaod(config, nanoaod_file, tmp_path):
    summary = prepare(config, tmp_path, files=[str(nanoaod_file)], quiet=True)
    data = summary["data"]
    assert (data["n_events"], data["n_gen"], data["n_matched"]) == (200, 527, 362)
    assert data["n_out_of_range"] == 11
    assert data["n_fakes"] == 537 - 362
    assert max(summary["round_trip_max_rel_error"].values()) < 1e-5
