"""ROOT input and output: reading in chunks, object collections, gen <-> reco matching, writing.

This layer knows nothing of models: it turns ROOT files into awkward/numpy arrays and back.

Example
-------
>>> from hepgen.io import iterate_events, flatten_collection, match_by_index
>>> for events in iterate_events("sim.root", ["GenJet_*", "Jet_*"], step_size=50_000):  # doctest: +SKIP
...     gen = flatten_collection(events, "GenJet")
...     reco = flatten_collection(events, "Jet")
...     matching = match_by_index(events["Jet_genJetIdx"], gen.counts)
"""

from hepgen.io.collections import (
    FlatCollection,
    collection_fields,
    flatten_collection,
    replace_collection,
    unflatten_collection,
)
from hepgen.io.layouts import ResolvedLayout, RowLayout, missing_value
from hepgen.io.matching import (
    Matching,
    delta_phi,
    delta_r,
    match_by_deltar,
    match_by_index,
    match_collections,
    matching_branches,
)
from hepgen.io.reader import (
    TreeInfo,
    count_entries,
    inspect_tree,
    iterate_chunks,
    iterate_events,
    open_tree,
    read_events,
    resolve_files,
    select_branches,
)
from hepgen.io.writer import RootWriter, group_collections, write_events

__all__ = [
    "FlatCollection",
    "Matching",
    "ResolvedLayout",
    "RootWriter",
    "RowLayout",
    "TreeInfo",
    "collection_fields",
    "count_entries",
    "delta_phi",
    "delta_r",
    "flatten_collection",
    "group_collections",
    "inspect_tree",
    "iterate_chunks",
    "iterate_events",
    "match_by_deltar",
    "match_by_index",
    "match_collections",
    "matching_branches",
    "missing_value",
    "open_tree",
    "read_events",
    "replace_collection",
    "resolve_files",
    "select_branches",
    "unflatten_collection",
    "write_events",
]
