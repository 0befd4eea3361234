"""ROOT I/O: reading in chunks, collections, matching, atomic writing, and clear errors."""

from __future__ import annotations

import logging
import os

import awkward as ak
import numpy as np
import pytest
import uproot

from hepgen.errors import InputError
from hepgen.io import (
    RootWriter,
    flatten_collection,
    iterate_events,
    match_by_deltar,
    match_by_index,
    open_tree,
    read_events,
    replace_collection,
    resolve_files,
    select_branches,
    unflatten_collection,
    write_events,
)
from hepgen.io.matching import delta_r
from hepgen.io.reader import inspect_tree


def random_events(n: int, seed: int = 0) -> ak.Array:
    """Events with a jagged Jet collection of mixed dtypes, including empty events."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(2.5, n)
    total = counts.sum()
    return ak.Array(
        {
            "run": np.ones(n, dtype=np.uint32),
            "event": np.arange(n, dtype=np.uint64),
            "MET_pt": rng.exponential(30, n).astype(np.float32),
            "Jet_pt": ak.unflatten(rng.exponential(50, total).astype(np.float32), counts),
            "Jet_eta": ak.unflatten(rng.normal(0, 2, total).astype(np.float32), counts),
            "Jet_nConstituents": ak.unflatten(rng.integers(1, 60, total).astype(np.uint8), counts),
            "Jet_isGood": ak.unflatten(rng.random(total) > 0.5, counts),
        }
    )


# ---------------------------------------------------------------- collections


def test_flatten_unflatten_round_trip_is_exact():
    events = random_events(500)
    flat = flatten_collection(events, "Jet")
    assert flat.n_events == 500
    assert len(flat) == int(ak.sum(ak.num(events.Jet_pt)))
    assert flat["Jet_nConstituents"].dtype == np.uint8
    assert np.array_equal(flat.event_index, np.repeat(np.arange(500), flat.counts))
    # local index restarts at 0 in each event
    assert np.all(flat.local_index[flat.offsets[:-1][flat.counts > 0]] == 0)
    back = unflatten_collection(flat)
    for name, column in back.items():
        assert ak.all(ak.num(column) == ak.num(events[name]))
        assert ak.all(ak.ravel(column) == ak.ravel(events[name]))
        assert str(ak.type(column)) == str(ak.type(events[name]))


def test_flatten_rejects_mismatched_jagged_counts():
    events = ak.Array({"Jet_pt": [[1.0, 2.0], [3.0]], "Jet_eta": [[0.1], [0.2]]})
    with pytest.raises(InputError, match=r"'Jet_pt' and 'Jet_eta'.*event 0 \(2 vs 1\)"):
        flatten_collection(events, "Jet")


def test_flatten_rejects_counter_disagreeing_with_lists():
    events = ak.Array({"nJet": [2, 2], "Jet_pt": [[1.0, 2.0], [3.0]]})
    with pytest.raises(InputError, match="counter 'nJet' is 2 in event 1"):
        flatten_collection(events, "Jet")


def test_missing_collection_suggests_close_names():
    events = random_events(3)
    with pytest.raises(InputError, match="did you mean 'Jet'"):
        flatten_collection(events, "Jets")


def test_select_keeps_event_alignment():
    events = random_events(50)
    flat = flatten_collection(events, "Jet")
    hard = flat.select(flat["Jet_pt"] > 50)
    assert hard.n_events == 50
    back = unflatten_collection(hard)["Jet_pt"]
    assert ak.all(back == events.Jet_pt[events.Jet_pt > 50])


# ---------------------------------------------------------------- writing / reading


def test_write_read_round_trip_keeps_dtypes_and_nanoaod_layout(tmp_path):
    events = random_events(300)
    path = write_events(tmp_path / "out.root", events)
    tree = uproot.open(path)["Events"]
    assert tree["Jet_pt"].count_branch.name == "nJet"
    assert tree["Jet_nConstituents"].count_branch.name == "nJet"
    back = tree.arrays(library="ak")
    for name in events.fields:
        assert str(ak.type(back[name])) == str(ak.type(events[name])), name
        assert ak.all(ak.ravel(back[name]) == ak.ravel(events[name])), name
    assert np.array_equal(np.asarray(back.nJet), np.asarray(ak.num(events.Jet_pt)))


def test_chunked_iteration_matches_full_read_over_several_files(tmp_path):
    a, b = random_events(1000, seed=1), random_events(700, seed=2)
    write_events(tmp_path / "a.root", a)
    write_events(tmp_path / "b.root", b)
    chunks = list(iterate_events(str(tmp_path / "*.root"), ["Jet_*", "event"], step_size=256))
    assert max(len(c) for c in chunks) <= 256
    assert sum(len(c) for c in chunks) == 1700
    joined = ak.concatenate(chunks)
    expected = ak.concatenate([a, b])
    assert ak.all(ak.ravel(joined.Jet_pt) == ak.ravel(expected.Jet_pt))
    assert sorted(joined.fields) == [
        "Jet_eta",
        "Jet_isGood",
        "Jet_nConstituents",
        "Jet_pt",
        "event",
    ]
    limited = read_events([tmp_path / "a.root", tmp_path / "b.root"], ["event"], entry_stop=1200)
    assert len(limited) == 1200


def test_writer_is_atomic_and_leaves_existing_output_on_error(tmp_path):
    target = tmp_path / "out.root"
    target.write_bytes(b"previous content")
    with pytest.raises(RuntimeError, match="boom"), RootWriter(target) as writer:
        writer.extend(random_events(10))
        raise RuntimeError("boom")
    assert target.read_bytes() == b"previous content"
    assert os.listdir(tmp_path) == ["out.root"]  # no temporary file left behind


def test_writer_refuses_to_overwrite_its_input(tmp_path):
    src = write_events(tmp_path / "in.root", random_events(5))
    before = src.read_bytes()
    with pytest.raises(InputError, match="never overwrites its input"):
        write_events(tmp_path / "." / "in.root", random_events(5), protect=[src])
    assert src.read_bytes() == before


def test_writer_rejects_inconsistent_chunks(tmp_path):
    events = random_events(10)
    with (
        pytest.raises(InputError, match="different branches"),
        RootWriter(tmp_path / "x.root") as w,
    ):
        w.extend(events)
        w.extend(events[["run", "event"]])


def test_replace_collection_changes_objects_and_keeps_other_branches(tmp_path):
    events = random_events(200)
    rng = np.random.default_rng(3)
    counts = rng.poisson(1.0, len(events))
    new = {"Jet_pt": ak.unflatten(rng.random(counts.sum()).astype(np.float32), counts)}
    replaced = replace_collection(events, "Jet", new)
    assert "Jet_eta" not in replaced.fields
    assert ak.all(replaced.MET_pt == events.MET_pt)
    back = uproot.open(write_events(tmp_path / "r.root", replaced))["Events"].arrays()
    assert np.array_equal(np.asarray(back.nJet), counts)


# ---------------------------------------------------------------- errors


def test_missing_file_and_glob_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        resolve_files(tmp_path / "nope.root")
    with pytest.raises(InputError, match="no file matches"):
        resolve_files(str(tmp_path / "*.root"))


def test_not_a_root_file(tmp_path):
    bad = tmp_path / "bad.root"
    bad.write_text("this is not ROOT")
    with pytest.raises(InputError, match=r"file '.*bad.root' is not a ROOT file") as info:
        open_tree(bad)
    assert "\n" not in str(info.value)


def test_truncated_file_is_an_input_error_naming_file_and_entries(tmp_path):
    """A file cut short: the header opens, the baskets are missing; every chunked read says
    which file and which entries, on one line."""
    path = write_events(tmp_path / "full.root", random_events(3000), tree="Events")
    data = path.read_bytes()
    cut = tmp_path / "cut.root"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(
        InputError,
        match=r"cut.root', tree 'Events', entries \d+-\d+: cannot be "
        r"read, the file is truncated or corrupt",
    ) as info:
        read_events(cut, step_size=500)
    assert "\n" not in str(info.value)
    tiny = tmp_path / "tiny.root"
    tiny.write_bytes(data[:1000])
    with pytest.raises(InputError, match=r"tiny\.root' is not a readable ROOT file"):
        open_tree(tiny)


def test_rntuple_is_read_and_listed_when_the_name_is_wrong(tmp_path):
    path = tmp_path / "rntuple.root"
    with uproot.recreate(path) as f:
        f["Events"] = {"x": np.arange(5.0)}  # uproot >= 5.7 writes an RNTuple here
    assert read_events(path)["x"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    with pytest.raises(InputError, match=r"no tree 'Evts'.*RNTuples in the file: 'Events'"):
        open_tree(path, "Evts")


def test_missing_tree_lists_trees(tmp_path):
    path = write_events(tmp_path / "t.root", random_events(5), tree="Events")
    with pytest.raises(InputError, match=r"no tree 'Event'.*did you mean 'Events'"):
        open_tree(path, "Event")


def test_missing_branch_suggests_close_names(tmp_path):
    path = write_events(tmp_path / "t.root", random_events(5))
    with pytest.raises(InputError, match=r"no branch 'Jet_Pt'.*did you mean 'Jet_pt'"):
        read_events(path, ["Jet_Pt"])
    with pytest.raises(InputError, match="no branch matches the pattern 'Muon_\\*'"):
        read_events(path, ["Muon_*"])


def test_non_numeric_branch_is_rejected():
    class Branch:
        typename = "TString"
        interpretation = uproot.interpretation.strings.AsStrings()

    class Tree:
        name = "Events"

        def keys(self, recursive=False):
            return ["title"]

        def __getitem__(self, key):
            return Branch()

    with pytest.raises(InputError, match="'title' has type 'TString'; expected a number"):
        select_branches(Tree(), ["title"], "f.root")
    assert select_branches(Tree(), None, "f.root") == []


def test_empty_tree_is_an_error(tmp_path):
    path = tmp_path / "empty.root"
    with uproot.recreate(path) as f:
        f.mktree("Events", {"x": np.float32})
    with pytest.raises(InputError, match="has no entries"):
        read_events(path)


def test_nonfinite_values_are_counted_or_dropped(tmp_path, caplog):
    events = random_events(100, seed=4)
    pt = ak.to_numpy(ak.flatten(events.Jet_pt)).copy()
    pt[[0, 5]] = np.nan
    pt[7] = np.inf
    events = ak.with_field(events, ak.unflatten(pt, ak.num(events.Jet_pt)), "Jet_pt")
    bad_events = int(np.sum(~ak.all(np.isfinite(events.Jet_pt), axis=1)))
    path = write_events(tmp_path / "nan.root", events)
    with pytest.raises(
        InputError, match=r"non-finite values in \d+ events \('Jet_pt': 2 NaN, 1 inf\)"
    ):
        read_events(path)
    with caplog.at_level(logging.WARNING):
        kept = read_events(path, nonfinite="drop")
    assert len(kept) == 100 - bad_events
    assert f"dropped {bad_events} events" in caplog.text
    assert len(read_events(path, nonfinite="keep")) == 100


# ---------------------------------------------------------------- matching


def test_match_by_index_handles_unmatched_out_of_range_and_duplicates(caplog):
    reco_idx = ak.Array([[0, -1, 1], [2, 0], [], [0, 0]])
    gen_counts = np.array([2, 1, 0, 1])
    with caplog.at_level(logging.WARNING):
        m = match_by_index(reco_idx, gen_counts, branch="Jet_genJetIdx")
    # flat gen rows: event0 -> 0,1 ; event1 -> 2 ; event3 -> 3
    assert m.reco_to_gen.tolist() == [0, -1, 1, -1, 2, 3, -1]
    assert m.gen_to_reco.tolist() == [0, 2, 4, 5]
    assert (m.n_out_of_range, m.n_duplicates, m.n_matched) == (1, 1, 4)
    assert "1 of 7 reco objects have 'Jet_genJetIdx' pointing past" in caplog.text


def greedy_reference(ge, gp, re_, rp, max_dr):
    """Plain-loop greedy matching, event by event, to check the vectorised one."""
    r2g = []
    g_off = 0
    for e in range(len(ge)):
        cands = sorted(
            (delta_r(ge[e][i], gp[e][i], re_[e][j], rp[e][j]), i, j)
            for i in range(len(ge[e]))
            for j in range(len(re_[e]))
        )
        used_g, used_r, local = set(), set(), [-1] * len(re_[e])
        for d, i, j in cands:
            if d < max_dr and i not in used_g and j not in used_r:
                used_g.add(i)
                used_r.add(j)
                local[j] = i + g_off
        r2g += local
        g_off += len(ge[e])
    return np.array(r2g)


def test_match_by_deltar_equals_greedy_loop():
    rng = np.random.default_rng(11)
    n = 300
    gc, rc = rng.poisson(4, n), rng.poisson(4, n)
    ge = ak.unflatten(rng.uniform(-2, 2, gc.sum()), gc)
    gp = ak.unflatten(rng.uniform(-np.pi, np.pi, gc.sum()), gc)
    re_ = ak.unflatten(rng.uniform(-2, 2, rc.sum()), rc)
    rp = ak.unflatten(rng.uniform(-np.pi, np.pi, rc.sum()), rc)
    m = match_by_deltar(ge, gp, re_, rp, max_dr=0.8)
    expected = greedy_reference(ge.tolist(), gp.tolist(), re_.tolist(), rp.tolist(), 0.8)
    assert np.array_equal(m.reco_to_gen, expected)
    assert m.n_matched > 100
    rows = m.reco_to_gen[m.reco_to_gen >= 0]
    assert len(np.unique(rows)) == len(rows)  # unique


def test_match_by_deltar_wraps_phi_and_respects_cone():
    gen_eta, gen_phi = ak.Array([[0.0, 1.0]]), ak.Array([[3.10, 0.0]])
    reco_eta, reco_phi = ak.Array([[0.0, 1.0, 1.05]]), ak.Array([[-3.10, 0.5, 0.02]])
    m = match_by_deltar(gen_eta, gen_phi, reco_eta, reco_phi, max_dr=0.2)
    # reco 0 at phi=-3.10 is 0.083 from gen 0 across the wrap; reco 1 is 0.5 away: unmatched;
    # reco 2 is the closest to gen 1
    assert m.reco_to_gen.tolist() == [0, -1, 1]


# ---------------------------------------------------------------- real CMS NanoAOD


def test_real_nanoaod_read_and_match(nanoaod_file, caplog):
    events = read_events(nanoaod_file, ["Jet_*", "GenJet_*", "nJet", "nGenJet"])
    jets = flatten_collection(events, "Jet")
    gen = flatten_collection(events, "GenJet")
    assert (len(events), len(jets), len(gen)) == (200, 537, 527)
    assert int(np.sum(jets["Jet_genJetIdx"] >= 0)) == 373
    with caplog.at_level(logging.WARNING):
        m = match_by_index(events.Jet_genJetIdx, gen.counts, branch="Jet_genJetIdx")
    assert (m.n_matched, m.n_out_of_range) == (362, 11)
    assert "11 of 537 reco objects" in caplog.text
    # deltaR matching agrees with the stored index on every usable pair
    md = match_by_deltar(events.GenJet_eta, events.GenJet_phi, events.Jet_eta, events.Jet_phi)
    assert np.array_equal(md.reco_to_gen[m.reco_matched], m.reco_to_gen[m.reco_matched])


def test_real_nanoaod_replace_jet_collection_preserves_everything_else(nanoaod_file, tmp_path):
    original = read_events(nanoaod_file, nonfinite="keep")  # HTXS_Higgs_y is all NaN: kept as is
    tree = open_tree(nanoaod_file)
    jets = flatten_collection(original, "Jet", ["Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass"])
    jets.columns["Jet_pt"] = (jets["Jet_pt"] * 1.1).astype(np.float32)
    new = replace_collection(original, "Jet", jets)
    out = write_events(tmp_path / "fastsim.root", new, protect=[nanoaod_file])
    back_tree = uproot.open(out)["Events"]
    back = back_tree.arrays(library="ak")
    new_jet = {"Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", "nJet"}
    old_jet = {k for k in tree.keys() if k.startswith("Jet_")}
    assert set(back_tree.keys()) == (set(tree.keys()) - old_jet) | new_jet
    assert back_tree["Jet_pt"].count_branch.name == "nJet"
    for name in new.fields:
        a, b = back[name], new[name]
        # counters come back as int32 (uproot), values identical; everything else type-exact
        if not name.startswith("n"):
            assert str(ak.type(a)) == str(ak.type(b)), name
        fa, fb = ak.to_numpy(ak.ravel(a)), ak.to_numpy(ak.ravel(b))
        assert np.array_equal(fa, fb, equal_nan=fa.dtype.kind == "f"), name
    assert ak.all(back.Jet_pt == original.Jet_pt * np.float32(1.1))


@pytest.fixture(scope="module")
def small_root_bytes(tmp_path_factory) -> bytes:
    path = write_events(
        tmp_path_factory.mktemp("corrupt") / "small.root", random_events(400), tree="Events"
    )
    return path.read_bytes()


def _corrupt_reads_give_only_input_errors(tmp_dir, data: bytes, edits) -> None:
    b = bytearray(data)
    for kind, pos, n in edits:
        pos %= len(b)
        if kind == "cut":
            del b[pos:]
            break
        for j in range(pos, min(len(b), pos + n)):
            b[j] = 0 if kind == "zero" else b[j] ^ 0xFF
    path = tmp_dir / "corrupt.root"
    path.write_bytes(bytes(b))
    try:
        inspect_tree(path)
        read_events(path, nonfinite="keep", step_size=100)
    except InputError as err:
        assert "corrupt.root" in str(err) and "\n" not in str(err)


def test_corrupt_root_files_give_only_input_errors(small_root_bytes, tmp_path_factory):
    """Byte-level damage anywhere in a ROOT file (flipped, zeroed, cut off) ends as an
    InputError naming the file, never as uproot's or zlib's exception."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    tmp_dir = tmp_path_factory.mktemp("corrupt_reads")
    edit = st.tuples(
        st.sampled_from(["flip", "zero", "cut"]),
        st.integers(0, 10**7),
        st.sampled_from([1, 8, 64, 1024]),
    )

    @settings(max_examples=60, deadline=None, derandomize=True)
    @given(st.lists(edit, min_size=1, max_size=3))
    def check(edits):
        _corrupt_reads_give_only_input_errors(tmp_dir, small_root_bytes, edits)

    check()


def test_mismatched_jagged_counts_in_a_file_name_the_file_and_the_entry(tmp_path):
    """Jet_eta written with its own counter, one value short in entry 120: the chunk that
    holds it (entries 100-149) reports the file, the tree and the entry."""
    events = random_events(200)
    eta = ak.to_list(events["Jet_eta"])
    eta[120] = [*eta[120], 0.5]
    path = tmp_path / "mismatch.root"
    with uproot.recreate(path) as f:
        f.mktree("Events", {"Jet_pt": events["Jet_pt"].type, "Jet_eta": "var * float64"})
        f["Events"].extend({"Jet_pt": events["Jet_pt"], "Jet_eta": ak.Array(eta)})
    n = len(eta[120])
    chunks = iterate_events(path, ["Jet_pt", "Jet_eta"], step_size=50)
    with pytest.raises(
        InputError,
        match=rf"mismatch.root', tree 'Events': collection 'Jet': "
        rf"'Jet_pt' and 'Jet_eta' have different numbers of entries in entry "
        rf"120 \({n - 1} vs {n}\)",
    ):
        for chunk in chunks:
            flatten_collection(chunk, "Jet", ["Jet_pt", "Jet_eta"])
    # rows no longer those read (here: every other one): the index is the array's own
    chunk = next(iterate_events(path, ["Jet_pt", "Jet_eta"], step_size=200))
    with pytest.raises(InputError, match=r"in event 60 \("):
        flatten_collection(chunk[::2], "Jet", ["Jet_pt", "Jet_eta"])
