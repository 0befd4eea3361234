"""RNTuple in and out: reading (alone and mixed with TTrees), writing, bit-exact round trips,
and the CLI writing the input's format by default."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot

from hepgen.cli import main
from hepgen.errors import InputError
from hepgen.io.reader import (
    count_entries,
    inspect_tree,
    is_rntuple,
    iterate_events,
    open_tree,
    read_events,
    select_branches,
    tree_format,
)
from hepgen.io.writer import RootWriter, check_format, rntuple_fields, write_events


def nanoaod_like(n: int, seed: int = 0) -> ak.Array:
    """Events with every dtype NanoAOD uses: scalars, a counter-sharing jagged collection
    (float32, float64, int8 ... uint64, bool; empty events included), NaN and inf values."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(2.0, n)
    total = int(counts.sum())
    pt = rng.exponential(40, total).astype(np.float32)
    pt[::97] = np.nan  # values that only bit-exact comparisons see
    return ak.Array(
        {
            "run": np.full(n, 1, dtype=np.uint32),
            "event": np.arange(n, dtype=np.uint64) + 2**40,
            "genWeight": rng.normal(1, 0.1, n).astype(np.float32),
            "MET_sumEt": rng.exponential(500, n),  # float64
            "PV_npvs": rng.integers(0, 60, n).astype(np.int32),
            "HLT_IsoMu24": rng.random(n) > 0.3,
            "Jet_pt": ak.unflatten(pt, counts),
            "Jet_eta": ak.unflatten(rng.normal(0, 2, total), counts),
            "Jet_jetId": ak.unflatten(rng.integers(0, 7, total).astype(np.int32), counts),
            "Jet_nConstituents": ak.unflatten(rng.integers(1, 80, total).astype(np.uint8), counts),
            "Jet_hadronFlavour": ak.unflatten(rng.integers(-5, 6, total).astype(np.int8), counts),
            "Jet_cleanmask": ak.unflatten(rng.integers(0, 2**16, total).astype(np.uint16), counts),
            "Jet_id64": ak.unflatten(rng.integers(-(2**40), 2**40, total), counts),
            "Jet_isGood": ak.unflatten(rng.random(total) > 0.5, counts),
            "Jet_inf": ak.unflatten(np.where(rng.random(total) > 0.9, np.inf, 1.0), counts),
        }
    )


def assert_bit_identical(a: ak.Array, b: ak.Array, skip: tuple[str, ...] = ()) -> None:
    """Same fields, types, list lengths and bytes (NaN payloads included) in every branch."""
    assert [f for f in a.fields if f not in skip] == [f for f in b.fields if f not in skip]
    for name in a.fields:
        if name in skip:
            continue
        x, y = a[name], b[name]
        assert str(ak.type(x)) == str(ak.type(y)), name
        if x.ndim > 1:
            assert np.array_equal(ak.num(x, axis=1), ak.num(y, axis=1)), name
        vx, vy = np.asarray(ak.ravel(x)), np.asarray(ak.ravel(y))
        assert vx.dtype == vy.dtype, name
        assert vx.tobytes() == vy.tobytes(), name


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same 3000 events as a TTree and as an RNTuple, and a second RNTuple file."""
    d = tmp_path_factory.mktemp("rntuple")
    ev = nanoaod_like(3000)
    return {
        "ttree": write_events(d / "tt.root", ev),
        "rntuple": write_events(d / "rn.root", ev, fmt="rntuple"),
        "rntuple2": write_events(d / "rn2.root", nanoaod_like(1234, seed=1), fmt="rntuple"),
        "dir": d,
    }


# ---------------------------------------------------------------- reading


def test_rntuple_opens_and_reads_like_the_ttree(files):
    tt, rn = open_tree(files["ttree"]), open_tree(files["rntuple"])
    assert not is_rntuple(tt) and is_rntuple(rn)
    assert tree_format(files["ttree"]) == "ttree" and tree_format(files["rntuple"]) == "rntuple"
    assert select_branches(rn, None, files["rntuple"]) == select_branches(tt, None, files["ttree"])
    assert_bit_identical(
        read_events(files["ttree"], nonfinite="keep"),
        read_events(files["rntuple"], nonfinite="keep"),
    )


def test_inspect_finds_the_same_collections(files):
    tt, rn = inspect_tree(files["ttree"]), inspect_tree(files["rntuple"])
    assert (tt.format, rn.format) == ("ttree", "rntuple")
    assert rn.num_entries == tt.num_entries == 3000
    assert rn.branches == tt.branches
    assert rn.collections == tt.collections
    assert set(rn.collections) == {"Jet"} and len(rn.collections["Jet"]) == 9


def test_mixed_list_is_chunked_across_files_and_formats(files):
    paths = [files["rntuple"], files["ttree"], files["rntuple2"]]
    assert count_entries(paths) == 7234
    whole = read_events(paths, ["run", "event", "Jet_*"], nonfinite="keep")
    assert len(whole) == 7234 and whole.fields[:2] == ["run", "event"]
    chunks = list(iterate_events(paths, ["event", "Jet_pt"], step_size=1000, nonfinite="keep"))
    assert [len(c) for c in chunks] == [1000, 1000, 1000] * 2 + [1000, 234]
    assert chunks[3].attrs["@hepgen_source"].startswith(f"file '{files['ttree']}'")
    assert chunks[3].attrs["@hepgen_entry_start"] == (0, 1000)
    joined = ak.concatenate(chunks)
    assert np.array_equal(joined["event"], whole["event"])
    assert ak.array_equal(joined["Jet_pt"], whole["Jet_pt"], equal_nan=True)
    # entry_stop spans the formats: all of the first file and 500 of the TTree
    head = read_events(paths, ["event"], entry_stop=3500, step_size=700)
    assert len(head) == 3500 and np.array_equal(head["event"][3000:], whole["event"][3000:3500])


def test_branch_selection_and_errors_name_the_field(files, tmp_path):
    rn = open_tree(files["rntuple"])
    assert select_branches(rn, ["Jet_pt", "MET_*"], "f") == ["MET_sumEt", "Jet_pt"]
    with pytest.raises(InputError, match=r"no branch 'Jet_ptt'.*did you mean 'Jet_pt'"):
        select_branches(rn, ["Jet_ptt"], "f")
    with pytest.raises(InputError, match="no branch matches the pattern 'Muon_"):
        read_events(files["rntuple"], ["Muon_*"])
    # fields hepgen does not read: a string, nested lists, a string in a record collection
    path = tmp_path / "types.root"
    with uproot.recreate(path) as f:
        f["Events"] = {
            "x": np.arange(3.0),
            "label": ["a", "bb", "c"],
            "hits": ak.Array([[[1, 2]], [], [[3]]]),
            "Track": ak.zip({"pt": [[1.0], [], [2.0, 3.0]], "algo": [["a"], [], ["b", "c"]]}),
        }
    assert inspect_tree(path).branches == ("nTrack", "Track_pt", "x")
    assert read_events(path, ["x", "Track_pt"])["Track_pt"].tolist() == [[1.0], [], [2.0, 3.0]]
    with pytest.raises(InputError, match=r"field 'Track_algo' has type 'std::string'"):
        read_events(path, ["Track_*"])
    with pytest.raises(InputError) as info:
        read_events(path, ["x", "label"])
    message = str(info.value)
    assert f"file '{path}', tree 'Events': field 'label' has type 'std::string'" in message
    assert "expected a number or a list of numbers" in message and "\n" not in message
    with pytest.raises(InputError, match=r"field 'hits' has type 'std::vector<std::vector<"):
        read_events(path, ["hits"])


def test_a_field_type_uproot_cannot_read_is_named_with_its_type(files, monkeypatch):
    """uproot failing on a field (an unsupported ROOT type) is reported as that field."""
    model = type(open_tree(files["rntuple"]))
    real = model.to_akform

    def to_akform(self, *args, **kwargs):
        names = kwargs.get("filter_name")
        if names is None or "Jet_eta" in names:
            raise NotImplementedError("column type 'SplitReal32Quant' is not supported")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(model, "to_akform", to_akform)
    assert "Jet_eta" not in inspect_tree(files["rntuple"]).branches
    with pytest.raises(InputError) as info:
        read_events(files["rntuple"], ["Jet_pt", "Jet_eta"])
    message = str(info.value)
    assert "field 'Jet_eta' has type 'std::vector<double>', which uproot cannot read" in message
    assert "SplitReal32Quant" in message and "\n" not in message


def test_a_failing_chunk_names_the_field_uproot_cannot_read(files, monkeypatch):
    rn = open_tree(files["rntuple"])
    model = type(rn)
    real_iterate, real_arrays = model.iterate, model.arrays

    def iterate(self, *args, **kwargs):
        raise NotImplementedError("unknown column type 0x77")
        yield  # a generator, as uproot's

    def arrays(self, expressions=None, *args, **kwargs):
        if expressions == ["Jet_jetId"]:
            raise NotImplementedError("unknown column type 0x77")
        return real_arrays(self, expressions, *args, **kwargs)

    monkeypatch.setattr(model, "iterate", iterate)
    monkeypatch.setattr(model, "arrays", arrays)
    with pytest.raises(
        InputError,
        match=r"entries 0-999: field 'Jet_jetId' has type "
        r"'std::vector<std::int32_t>', which uproot cannot read",
    ):
        read_events(files["rntuple"], ["Jet_pt", "Jet_jetId"], step_size=1000)
    assert real_iterate is not None


def test_nonfinite_policies_on_an_rntuple(files, caplog):
    with pytest.raises(
        InputError,
        match=r"rn\.root', tree 'Events': non-finite values in \d+ "
        r"events \('Jet_pt': \d+ NaN, 0 inf; 'Jet_inf': 0 NaN, \d+ inf\)",
    ):
        read_events(files["rntuple"], ["Jet_pt", "Jet_inf"])
    kept = read_events(files["rntuple"], ["Jet_pt", "Jet_inf"], nonfinite="keep")
    dropped = read_events(files["rntuple"], ["Jet_pt", "Jet_inf"], nonfinite="drop")
    bad = ak.any(np.isnan(kept["Jet_pt"]) | np.isinf(kept["Jet_inf"]), axis=1)
    assert len(dropped) == len(kept) - int(ak.sum(bad)) > 0
    assert "dropped" in caplog.text
    # the same drops as in the TTree
    tt = read_events(files["ttree"], ["Jet_pt", "Jet_inf"], nonfinite="drop", step_size=700)
    assert_bit_identical(tt, dropped)


def test_rntuple_without_counters_reads_and_matches(tmp_path):
    """An RNTuple written by plain uproot (no nJet) is read: lists carry their own offsets."""
    from hepgen.io.collections import flatten_collection

    ev = nanoaod_like(200)
    path = tmp_path / "plain.root"
    with uproot.recreate(path) as f:
        f["Events"] = {k: ev[k] for k in ev.fields}
    back = read_events(path, nonfinite="keep")
    assert sorted(back.fields) == sorted(ev.fields)  # uproot orders the fields by name
    assert_bit_identical(ev[back.fields], back)
    flat = flatten_collection(back, "Jet", ["Jet_pt", "Jet_eta"])
    assert np.array_equal(flat.counts, ak.num(ev["Jet_pt"]))


def test_cms_record_layout_reads_as_nanoaod_branches(tmp_path):
    """CMS writes NanoAOD RNTuples with a collection as a vector of records (Jet: {pt, ...})
    and a singleton as a record (MET: {pt, phi}): read as nJet (uint32), Jet_pt, MET_pt."""
    ev = nanoaod_like(500)
    jet = [f for f in ev.fields if f.startswith("Jet_")]
    records = {
        "run": ev["run"],
        "event": ev["event"],
        "Jet": ak.zip({f[4:]: ev[f] for f in jet}),
        "MET": ak.zip({"sumEt": ev["MET_sumEt"], "npvs": ev["PV_npvs"]}),
    }
    path = tmp_path / "cms.root"
    with uproot.recreate(path) as f:
        data = ak.Array(records)
        f.mkrntuple("Events", data.layout.form).extend(data)
    info = inspect_tree(path)
    assert info.format == "rntuple"
    assert info.branches == ("run", "event", "nJet", *jet, "MET_sumEt", "MET_npvs")
    assert info.collections == {"Jet": tuple(jet)}
    back = read_events(path, nonfinite="keep")
    expected = ak.zip(
        {
            "run": ev["run"],
            "event": ev["event"],
            "nJet": np.asarray(ak.num(ev["Jet_pt"]), dtype=np.uint32),
            **{f: ev[f] for f in jet},
            "MET_sumEt": ev["MET_sumEt"],
            "MET_npvs": ev["PV_npvs"],
        },
        depth_limit=1,
    )
    assert_bit_identical(expected, back)
    # a counter or one subfield alone, in chunks, mixed with a TTree of the same events
    tt = write_events(tmp_path / "tt.root", expected)
    parts = list(iterate_events([path, tt], ["nJet", "Jet_eta"], step_size=300))
    assert [len(p) for p in parts] == [300, 200, 300, 200]
    assert np.array_equal(
        np.asarray(ak.concatenate(parts[:2])["nJet"]), np.asarray(expected["nJet"])
    )
    assert ak.array_equal(ak.concatenate(parts[2:])["Jet_eta"], expected["Jet_eta"])


# ---------------------------------------------------------------- writing


def test_round_trip_ttree_to_rntuple_and_back_is_bit_exact(files, tmp_path):
    tt = read_events(files["ttree"], nonfinite="keep")
    assert tt["nJet"].type.content.primitive == "int32"
    rn_path = write_events(tmp_path / "to_rn.root", tt, fmt="rntuple")
    rn = read_events(rn_path, nonfinite="keep")
    assert tree_format(rn_path) == "rntuple"
    assert_bit_identical(tt, rn)  # counters included
    back_path = write_events(tmp_path / "back.root", rn, fmt="ttree")
    assert tree_format(back_path) == "ttree"
    back = read_events(back_path, nonfinite="keep")
    assert sorted(back.fields) == sorted(tt.fields)
    assert_bit_identical(tt, back[tt.fields])


def test_counter_dtype_is_kept_in_an_rntuple_and_int32_in_a_ttree(tmp_path):
    ev = nanoaod_like(300)
    nanoaod = ak.with_field(ev, np.asarray(ak.num(ev["Jet_pt"]), dtype=np.uint32), "nJet")
    rn = read_events(write_events(tmp_path / "a.root", nanoaod, fmt="rntuple"), nonfinite="keep")
    assert_bit_identical(nanoaod, rn)  # NanoAOD's uint32 counter kept as it was
    tt = read_events(write_events(tmp_path / "b.root", rn), nonfinite="keep")
    assert sorted(tt.fields) == sorted(rn.fields)
    assert_bit_identical(rn, tt[rn.fields], skip=("nJet",))
    assert tt["nJet"].type.content.primitive == "int32"
    assert np.array_equal(np.asarray(tt["nJet"]), np.asarray(rn["nJet"]))
    # a collection without a counter gets an int32 one before its first branch, as in a TTree
    fields = rntuple_fields(ev)
    assert list(fields).index("nJet") == list(fields).index("Jet_pt") - 1
    assert fields["nJet"].type.content.primitive == "int32"


def test_chunked_rntuple_writing_equals_one_shot(files, tmp_path):
    ev = read_events(files["ttree"], nonfinite="keep")
    with RootWriter(tmp_path / "chunks.root", fmt="rntuple") as writer:
        for start in range(0, len(ev), 700):
            writer.extend(ev[start : start + 700])
        writer.extend(ev[:0])  # an empty chunk is fine
    assert writer.n_written == 3000
    ntuple = open_tree(tmp_path / "chunks.root")
    assert is_rntuple(ntuple) and len(ntuple.cluster_summaries) == 5  # one cluster per chunk
    assert_bit_identical(ev, read_events(tmp_path / "chunks.root", nonfinite="keep"))


def test_rntuple_writer_errors_and_atomicity(files, tmp_path):
    ev = nanoaod_like(50)
    out = tmp_path / "out.root"
    out.write_bytes(b"old")
    with pytest.raises(InputError, match="different branches than the first chunk"):
        with RootWriter(out, fmt="rntuple") as writer:
            writer.extend(ev)
            writer.extend(ev[["run", "event"]])
    assert out.read_bytes() == b"old"  # left as it was, no temporary file behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.root"]
    bad = ak.Array({"Jet_pt": [[1.0, 2.0], [3.0]], "Jet_eta": [[0.1], [0.2]]})
    with pytest.raises(InputError, match=r"'Jet_pt' and 'Jet_eta' have different numbers"):
        write_events(tmp_path / "bad.root", bad, fmt="rntuple")
    with pytest.raises(InputError, match=r"output format 'parquet' is not known"):
        RootWriter(tmp_path / "x.root", fmt="parquet")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="is also an input"):
        with RootWriter(files["rntuple"], protect=[files["rntuple"]], fmt="rntuple"):
            pass
    assert check_format("RNTuple") == "rntuple"


def test_real_nanoaod_as_an_rntuple_is_bit_exact(nanoaod_file, tmp_path):
    """All 947 branches of the CMS NanoAOD file, TTree -> RNTuple: uint32 counters included."""
    tt = read_events(nanoaod_file, nonfinite="keep")
    rn_path = write_events(tmp_path / "nano_rn.root", tt, fmt="rntuple")
    rn = read_events(rn_path, nonfinite="keep")
    assert len(rn.fields) == len(tt.fields) == 947
    assert rn["nJet"].type.content.primitive == "uint32"
    assert_bit_identical(tt, rn)
    assert inspect_tree(rn_path).collections == inspect_tree(nanoaod_file).collections


# ---------------------------------------------------------------- command line


def test_cli_inspect_reads_an_rntuple(files, capsys):
    assert main(["inspect", str(files["rntuple"]), str(files["ttree"]), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "2 file(s)" in out and "6000 events" in out and "Jet (9 branches)" in out


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import train_small_fastsim

    return train_small_fastsim(tmp_path_factory.mktemp("rntuple_model"), 1000, 1, "--seed", "1")


def test_cli_generate_writes_the_input_format_or_the_one_asked(tiny_model, tmp_path, capsys):
    from hepgen.sim import simulate_to_file

    tt_in = simulate_to_file(tmp_path / "new.root", "jets", n_events=800, seed=5, quiet=True)
    events = read_events(tt_in, nonfinite="keep")
    rn_in = write_events(tmp_path / "new_rn.root", events, fmt="rntuple")
    model = str(tiny_model)
    common = ["--seed", "3", "--device", "cpu", "--quiet", "--batch-size", "300"]
    assert main(["generate", model, str(rn_in), "-o", str(tmp_path / "a.root"), *common]) == 0
    assert tree_format(tmp_path / "a.root") == "rntuple"
    assert (
        main(
            [
                "generate",
                model,
                str(rn_in),
                "-o",
                str(tmp_path / "b.root"),
                *common,
                "--output-format",
                "ttree",
            ]
        )
        == 0
    )
    assert tree_format(tmp_path / "b.root") == "ttree"
    assert main(["generate", model, str(tt_in), "-o", str(tmp_path / "c.root"), *common]) == 0
    assert tree_format(tmp_path / "c.root") == "ttree"
    # the same input and seed give the same events whatever the output format (the seeds
    # come from the input file's UUID and entries, so another file gets other draws)
    a, b = (read_events(tmp_path / n, nonfinite="keep") for n in ("a.root", "b.root"))
    assert_bit_identical(a, b)
    assert tree_format(tmp_path / "c.root") == "ttree" and count_entries(tmp_path / "c.root") == 800
    # a mixed list: the first input decides
    out = tmp_path / "mixed.root"
    assert main(["generate", model, str(rn_in), str(tt_in), "-o", str(out), *common]) == 0
    assert tree_format(out) == "rntuple" and count_entries(out) == 1600
    capsys.readouterr()
    assert (
        main(
            [
                "generate",
                model,
                str(rn_in),
                "-o",
                str(tmp_path / "d.root"),
                *common,
                "--output-format",
                "parquet",
            ]
        )
        == 2
    )
    assert "--output-format" in capsys.readouterr().err


def test_training_pairs_are_the_same_from_an_rntuple(jets_file, tmp_path):
    """prepare/train read through hepgen.dataset: the same pairs from either format."""
    from hepgen.config import load_config
    from hepgen.dataset import load_pairs
    from hepgen.resources import config_path

    config = load_config(config_path("toy_jets.yaml"))
    events = read_events(jets_file, nonfinite="keep")
    rn = write_events(tmp_path / "jets_rn.root", events, fmt="rntuple")
    a = load_pairs(config, files=[str(jets_file)], quiet=True)
    b = load_pairs(config, files=[str(rn)], quiet=True)
    mixed = load_pairs(config, files=[str(rn), str(jets_file)], quiet=True)
    assert np.array_equal(a.matched, b.matched)
    for k in a.gen:
        assert a.gen[k].tobytes() == b.gen[k].tobytes()
        assert np.array_equal(mixed.gen[k], np.concatenate([a.gen[k], a.gen[k]]))
    for k in a.reco:
        assert a.reco[k].tobytes() == b.reco[k].tobytes()


def test_cli_score_writes_the_input_format_or_the_one_asked(tiny_model, tmp_path):
    from hepgen.sim import simulate_to_file

    tt_in = simulate_to_file(tmp_path / "s.root", "jets", n_events=400, seed=6, quiet=True)
    rn_in = write_events(
        tmp_path / "s_rn.root", read_events(tt_in, nonfinite="keep"), fmt="rntuple"
    )
    common = ["--device", "cpu", "--quiet"]
    assert (
        main(["score", str(tiny_model), str(rn_in), "-o", str(tmp_path / "a.root"), *common]) == 0
    )
    assert tree_format(tmp_path / "a.root") == "rntuple"
    argv = ["score", str(tiny_model), str(rn_in), "-o", str(tmp_path / "b.root"), *common]
    assert main([*argv, "--output-format", "ttree"]) == 0
    assert tree_format(tmp_path / "b.root") == "ttree"
    a = read_events(tmp_path / "a.root", ["Jet_anomaly_score"], nonfinite="keep")
    b = read_events(tmp_path / "b.root", ["Jet_anomaly_score"], nonfinite="keep")
    assert_bit_identical(a, b)
    assert int(ak.sum(np.isfinite(a["Jet_anomaly_score"]))) > 100
