"""Match reconstructed objects to generator-level objects, by index branch or by deltaR.

Both matchers work on whole chunks at once (no Python loop over events) and return a
:class:`Matching` of flat row indices into the flattened collections (see
:func:`hepgen.io.collections.flatten_collection`), ``-1`` for "unmatched".

By index
    NanoAOD stores the match as an index into the event's gen collection
    (``Jet_genJetIdx``, -1 = unmatched). Indices that point past the end of the stored gen
    collection (the gen object fell below the storage threshold) are treated as unmatched and
    counted, never wrapped around. When several reco objects point to one gen object, the
    first (highest-pt in NanoAOD order) keeps it and the others count as duplicates.

By deltaR
    Unique best matches inside a cone: pairs are accepted in increasing deltaR, each object
    used at most once (the usual greedy matching). It is computed by repeatedly accepting
    all pairs that are each other's nearest remaining partner, which gives the same result
    as the greedy loop (the globally closest remaining pair is always mutually nearest) in a
    handful of vectorised passes. deltaPhi is wrapped into [-pi, pi).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np

from hepgen.errors import InputError

__all__ = [
    "Matching",
    "delta_phi",
    "delta_r",
    "match_by_deltar",
    "match_by_index",
    "match_collections",
    "matching_branches",
]

log = logging.getLogger(__name__)


def delta_phi(phi1: np.ndarray, phi2: np.ndarray) -> np.ndarray:
    """Azimuthal difference ``phi1 - phi2`` wrapped into [-pi, pi), in radians."""
    d = np.asarray(phi1, dtype=np.float64) - np.asarray(phi2, dtype=np.float64)
    return np.remainder(d + np.pi, 2 * np.pi) - np.pi


def delta_r(eta1: np.ndarray, phi1: np.ndarray, eta2: np.ndarray, phi2: np.ndarray) -> np.ndarray:
    """Angular distance ``sqrt(deta^2 + dphi^2)`` with wrapped deltaPhi."""
    deta = np.asarray(eta1, dtype=np.float64) - np.asarray(eta2, dtype=np.float64)
    return np.hypot(deta, delta_phi(phi1, phi2))


@dataclass
class Matching:
    """Result of a gen <-> reco matching on flattened collections.

    Attributes
    ----------
    reco_to_gen : np.ndarray
        For each reco row, the matched gen row or -1, shape (n_reco,), int64.
    gen_to_reco : np.ndarray
        For each gen row, the matched reco row or -1, shape (n_gen,), int64.
    n_out_of_range : int
        Reco objects whose stored index pointed outside their event's gen collection
        (treated as unmatched).
    n_duplicates : int
        Reco objects whose gen object was already taken by an earlier reco object.
    """

    reco_to_gen: np.ndarray
    gen_to_reco: np.ndarray
    n_out_of_range: int = 0
    n_duplicates: int = 0

    @property
    def n_matched(self) -> int:
        """Number of matched pairs."""
        return int(np.count_nonzero(self.reco_to_gen >= 0))

    @property
    def reco_matched(self) -> np.ndarray:
        """Boolean mask of matched reco rows, shape (n_reco,)."""
        return self.reco_to_gen >= 0

    @property
    def gen_matched(self) -> np.ndarray:
        """Boolean mask of matched gen rows, shape (n_gen,)."""
        return self.gen_to_reco >= 0

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(gen_rows, reco_rows)`` of the matched pairs, ordered by reco row."""
        reco = np.flatnonzero(self.reco_to_gen >= 0)
        return self.reco_to_gen[reco], reco


def _offsets(counts: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts, dtype=np.int64)])


def match_by_index(
    reco_index: ak.Array | np.ndarray,
    gen_counts: np.ndarray,
    reco_counts: np.ndarray | None = None,
    branch: str = "genJetIdx",
) -> Matching:
    """Match by a stored index branch such as ``Jet_genJetIdx``.

    Parameters
    ----------
    reco_index : ak.Array or np.ndarray
        Jagged per-event indices into the event's gen collection, shape (n_events, var), or
        their flat values together with ``reco_counts``. -1 (any negative value) = unmatched.
    gen_counts : np.ndarray
        Gen objects per event, shape (n_events,).
    reco_counts : np.ndarray or None
        Reco objects per event when ``reco_index`` is flat.
    branch : str
        Name of the index branch, for messages.

    Returns
    -------
    Matching
    """
    if isinstance(reco_index, ak.Array) and reco_index.ndim == 2:
        reco_counts = np.asarray(ak.num(reco_index, axis=1), dtype=np.int64)
        flat = np.asarray(ak.flatten(reco_index, axis=1), dtype=np.int64)
    else:
        if reco_counts is None:
            raise ValueError("reco_counts is required when reco_index is flat")
        flat = np.asarray(reco_index, dtype=np.int64)
        reco_counts = np.asarray(reco_counts, dtype=np.int64)
    gen_counts = np.asarray(gen_counts, dtype=np.int64)
    if len(gen_counts) != len(reco_counts):
        raise InputError(
            f"'{branch}': {len(reco_counts)} events of reco objects but {len(gen_counts)} "
            "events of gen objects"
        )
    event = np.repeat(np.arange(len(reco_counts)), reco_counts)
    n_gen_of_event = gen_counts[event]
    valid = (flat >= 0) & (flat < n_gen_of_event)
    n_out_of_range = int(np.count_nonzero((flat >= 0) & ~valid))
    gen_row = np.where(valid, _offsets(gen_counts)[event] + flat, -1)

    gen_to_reco = np.full(int(gen_counts.sum()), -1, dtype=np.int64)
    reco_rows = np.flatnonzero(valid)
    # The first reco row (NanoAOD order: highest pt) pointing to a gen row keeps it.
    taken, first = np.unique(gen_row[reco_rows], return_index=True)
    gen_to_reco[taken] = reco_rows[first]
    winner = np.zeros(len(flat), dtype=bool)
    winner[reco_rows[first]] = True
    duplicate = valid & ~winner
    n_duplicates = int(np.count_nonzero(duplicate))
    reco_to_gen = np.where(valid & ~duplicate, gen_row, -1)
    if n_out_of_range:
        log.warning(
            "%d of %d reco objects have '%s' pointing past the stored gen collection; "
            "treated as unmatched",
            n_out_of_range,
            len(flat),
            branch,
        )
    if n_duplicates:
        log.warning(
            "%d reco objects share a gen object through '%s' with an earlier reco object; "
            "treated as unmatched",
            n_duplicates,
            branch,
        )
    return Matching(reco_to_gen, gen_to_reco, n_out_of_range, n_duplicates)


def match_by_deltar(
    gen_eta: ak.Array,
    gen_phi: ak.Array,
    reco_eta: ak.Array,
    reco_phi: ak.Array,
    max_dr: float = 0.4,
) -> Matching:
    """Unique best deltaR matching within a cone.

    Parameters
    ----------
    gen_eta, gen_phi : ak.Array
        Gen object directions, jagged (n_events, var); phi in radians.
    reco_eta, reco_phi : ak.Array
        Reco object directions, jagged (n_events, var).
    max_dr : float
        Cone size: pairs with deltaR >= max_dr are never matched.

    Returns
    -------
    Matching
    """
    if max_dr <= 0:
        raise InputError(f"max_dr must be positive, got {max_dr}")
    gen_counts = np.asarray(ak.num(gen_eta, axis=1), dtype=np.int64)
    reco_counts = np.asarray(ak.num(reco_eta, axis=1), dtype=np.int64)
    if len(gen_counts) != len(reco_counts):
        raise InputError(
            f"{len(reco_counts)} events of reco objects but {len(gen_counts)} of gen objects"
        )
    n_gen, n_reco = int(gen_counts.sum()), int(reco_counts.sum())
    gen_to_reco = np.full(n_gen, -1, dtype=np.int64)
    reco_to_gen = np.full(n_reco, -1, dtype=np.int64)
    if n_gen == 0 or n_reco == 0:
        return Matching(reco_to_gen, gen_to_reco)

    # All (gen, reco) pairs of each event as flat rows.
    pairs = ak.argcartesian([gen_eta, reco_eta], axis=1)
    pair_counts = np.asarray(ak.num(pairs, axis=1), dtype=np.int64)
    event = np.repeat(np.arange(len(gen_counts)), pair_counts)
    gi = np.asarray(ak.flatten(pairs["0"]), dtype=np.int64) + _offsets(gen_counts)[event]
    ri = np.asarray(ak.flatten(pairs["1"]), dtype=np.int64) + _offsets(reco_counts)[event]
    g_eta = np.asarray(ak.flatten(gen_eta), dtype=np.float64)
    g_phi = np.asarray(ak.flatten(gen_phi), dtype=np.float64)
    r_eta = np.asarray(ak.flatten(reco_eta), dtype=np.float64)
    r_phi = np.asarray(ak.flatten(reco_phi), dtype=np.float64)
    dr = delta_r(g_eta[gi], g_phi[gi], r_eta[ri], r_phi[ri])
    keep = dr < max_dr
    gi, ri, dr = gi[keep], ri[keep], dr[keep]
    # Order pairs by (deltaR, gen row, reco row) so that ties are broken reproducibly.
    order = np.lexsort((ri, gi, dr))
    gi, ri = gi[order], ri[order]
    rank = np.arange(len(gi))
    while len(gi):
        # Each object's nearest remaining partner: the first pair (lowest rank) it appears in.
        best_for_gen = np.full(n_gen, len(rank), dtype=np.int64)
        best_for_reco = np.full(n_reco, len(rank), dtype=np.int64)
        np.minimum.at(best_for_gen, gi, rank)
        np.minimum.at(best_for_reco, ri, rank)
        mutual = (best_for_gen[gi] == rank) & (best_for_reco[ri] == rank)
        gen_to_reco[gi[mutual]] = ri[mutual]
        reco_to_gen[ri[mutual]] = gi[mutual]
        free = (gen_to_reco[gi] < 0) & (reco_to_gen[ri] < 0)
        gi, ri = gi[free], ri[free]
        rank = np.arange(len(gi))
    return Matching(reco_to_gen, gen_to_reco)


def matching_branches(data: Any) -> tuple[list[str], list[str]]:
    """The branches the configured matching reads, gen side and reco side.

    Parameters
    ----------
    data : DataConfig
        The ``data`` section of a config (``gen``, ``reco``, ``matching.method``,
        ``index_branch``).

    Returns
    -------
    gen, reco : list of str
        ``[]`` and ``[index branch]`` by index; ``[{gen}_eta, {gen}_phi]`` and
        ``[{reco}_eta, {reco}_phi]`` by deltaR.
    """
    if data.matching.method == "index":
        return [], [data.index_branch]
    return [f"{data.gen}_eta", f"{data.gen}_phi"], [f"{data.reco}_eta", f"{data.reco}_phi"]


def match_collections(data: Any, events: ak.Array, gen: Any, reco: Any) -> Matching:
    """Match the configured reco collection to the gen collection of a chunk of events, as
    the ``data`` section says (by its index branch, or by deltaR within ``max_dr``).

    Parameters
    ----------
    data : DataConfig
        The ``data`` section of a config (see :func:`matching_branches`).
    events : ak.Array
        The chunk, with the branches of :func:`matching_branches`.
    gen, reco : FlatCollection
        The flattened gen and reco collections of ``events``
        (:func:`hepgen.io.collections.flatten_collection`).

    Returns
    -------
    Matching
    """
    if data.matching.method == "index":
        branch = data.index_branch
        return match_by_index(events[branch], gen.counts, branch=branch)
    g, r = data.gen, data.reco
    return match_by_deltar(
        events[f"{g}_eta"],
        events[f"{g}_phi"],
        events[f"{r}_eta"],
        events[f"{r}_phi"],
        max_dr=data.matching.max_dr,
    )
