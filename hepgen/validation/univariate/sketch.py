"""Mergeable one-feature summaries: the per-feature tests over data that never sits in memory.

A sample of many files is read partition by partition (:mod:`hepgen.validation.partitioned`);
each partition returns small arrays, and partitions are merged by adding them.  Two passes:

1. :class:`FeatureRange` (exact): rows, NaN/inf counts, minimum, maximum, sums of weights and
   of squared weights (Kish sizes), the weight range (equal weights count as unweighted, as in
   :func:`~hepgen.validation.univariate.ecdf.check_pair`) and whether every value is whole.
   With a seeded subsample of the reference they fix the bins: the chi2 bins by the rule of
   :func:`~hepgen.validation.univariate.binning.histogram_edges` (:func:`chi2_edges`) and many
   fine reference-quantile edges for KS and W1 (:func:`fine_edges`).
2. :class:`BinnedSample`: sums of weights and squared weights per chi2 bin, and on the fine
   edges the weight at or below each edge (the ECDF there), the weight *at* each edge and the
   weight strictly between two edges.

:func:`binned_tests` turns the merged sums into the results of the in-memory tests:

* **chi2** and **separation power**: the in-memory statistic exactly (the same sums, the same
  sparse-bin merging, :func:`~hepgen.validation.univariate.binning.merge_sparse`).
* **KS**: ``D`` evaluated at the fine edges, which is a lower bound of the exact ``D``; the
  exact one lies in ``[D, D + bound]`` with ``bound`` the largest fine-bin mass (weight
  strictly between two consecutive edges, over the sample's total) of either sample
  (:class:`BinnedKSResult`).  Proof: between two edges each ECDF moves by at most its open
  bin mass, and both move the same way (non-negative weights), so ``|F1 - F2|`` moves by at
  most the larger of the two; with negative weights the two masses are added.  Integer
  features with a short range get an edge at every integer: ``bound = 0``, the exact ``D``.
  p-value: the Kolmogorov distribution at the Kish effective sizes (scipy's asymptotic form);
  when ``bound = 0`` and the values are heavily tied, the permutation (multiplier when
  weighted) p-value of :func:`~hepgen.validation.univariate.ks.ks_test` on the counts per
  value, as in memory.
* **W1**: the integral of ``|F1 - F2|`` with each ECDF linear inside a fine bin, within
  ``sum_k width_k (m1_k + m2_k) / 2`` of the exact value (``m`` the open-bin masses).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from hepgen.validation.univariate.binning import (
    bin_index,
    default_n_bins,
    merge_sparse,
    quantile_edges,
)
from hepgen.validation.univariate.chi2 import (
    Chi2Result,
    chi2_from_histograms,
    separation_from_histograms,
)
from hepgen.validation.univariate.ks import (
    _MAX_DISTINCT_FOR_RESAMPLING,
    KSResult,
    kolmogorov_sf,
    multiplier_null,
    permutation_null,
)

__all__ = [
    "FINE_EDGES",
    "BinnedKSResult",
    "BinnedSample",
    "FeatureRange",
    "binned_tests",
    "chi2_edges",
    "chi2_note",
    "fine_edges",
]

#: Default number of fine reference-quantile bins for KS and W1.
FINE_EDGES = 2048


@dataclasses.dataclass
class FeatureRange:
    """Exact pass-1 summary of one feature of one sample; merge with ``+``.

    Attributes
    ----------
    n : int
        Rows.
    nan, posinf, neginf : int
        Non-finite values.
    lo, hi : float
        Smallest and largest finite value (``inf``, ``-inf`` when there is none).
    sum_w, sum_w2 : float
        Sums of the weights and squared weights of the rows with a finite value (counts
        when unweighted).
    w_lo, w_hi : float
        Smallest and largest of those weights (1 when unweighted).
    whole : bool
        Every finite value is a whole number.

    Examples
    --------
    >>> a = FeatureRange.of(np.array([1.0, 2.0, np.nan]), None)
    >>> b = FeatureRange.of(np.array([5.0]), None)
    >>> s = a + b
    >>> (s.n, s.nan, s.n_finite, s.lo, s.hi, s.whole)
    (4, 1, 3, 1.0, 5.0, True)
    """

    n: int = 0
    nan: int = 0
    posinf: int = 0
    neginf: int = 0
    lo: float = math.inf
    hi: float = -math.inf
    sum_w: float = 0.0
    sum_w2: float = 0.0
    w_lo: float = math.inf
    w_hi: float = -math.inf
    whole: bool = True

    @classmethod
    def of(cls, x: np.ndarray, w: np.ndarray | None) -> FeatureRange:
        """The summary of values ``x`` (shape (n,)) with weights ``w`` (shape (n,) or None)."""
        x = np.asarray(x, dtype=np.float64)
        finite = np.isfinite(x)
        xf = x[finite]
        wf = np.ones(xf.size) if w is None else np.asarray(w, dtype=np.float64)[finite]
        return cls(
            n=int(x.size),
            nan=int(np.isnan(x).sum()),
            posinf=int(np.isposinf(x).sum()),
            neginf=int(np.isneginf(x).sum()),
            lo=float(xf.min()) if xf.size else math.inf,
            hi=float(xf.max()) if xf.size else -math.inf,
            sum_w=float(wf.sum()),
            sum_w2=float((wf * wf).sum()),
            w_lo=float(wf.min()) if wf.size else math.inf,
            w_hi=float(wf.max()) if wf.size else -math.inf,
            whole=bool(np.all(xf == np.round(xf))),
        )

    def __add__(self, other: FeatureRange) -> FeatureRange:
        return FeatureRange(
            n=self.n + other.n,
            nan=self.nan + other.nan,
            posinf=self.posinf + other.posinf,
            neginf=self.neginf + other.neginf,
            lo=min(self.lo, other.lo),
            hi=max(self.hi, other.hi),
            sum_w=self.sum_w + other.sum_w,
            sum_w2=self.sum_w2 + other.sum_w2,
            w_lo=min(self.w_lo, other.w_lo),
            w_hi=max(self.w_hi, other.w_hi),
            whole=self.whole and other.whole,
        )

    @property
    def n_finite(self) -> int:
        """Rows with a finite value."""
        return self.n - self.nan - self.posinf - self.neginf

    @property
    def weighted(self) -> bool:
        """Unequal weights (equal weights give the unweighted distribution)."""
        return self.n_finite > 0 and self.w_lo != self.w_hi

    @property
    def n_eff(self) -> float:
        """Kish effective size of the finite values (the count when unweighted)."""
        if not self.weighted:
            return float(self.n_finite)
        return self.sum_w**2 / self.sum_w2 if self.sum_w2 > 0 else 0.0

    def nonfinite(self) -> dict[str, int]:
        """``{"nan", "posinf", "neginf", "n"}``, as
        :func:`~hepgen.validation.verdict.count_nonfinite` gives them."""
        return {"nan": self.nan, "posinf": self.posinf, "neginf": self.neginf, "n": self.n}


def chi2_edges(
    sub_x: np.ndarray,
    sub_w: np.ndarray | None,
    ref: FeatureRange,
    cand: FeatureRange,
) -> np.ndarray:
    """Inner chi2 edges from a subsample of the reference, by the rule of
    :func:`~hepgen.validation.univariate.binning.histogram_edges`: ``min(50, max(5,
    n_eff_min / 25))`` reference-quantile bins (Kish sizes of the whole samples), the
    reference's exact minimum and maximum as outer edges, half-integer edges for integers.

    Parameters
    ----------
    sub_x, sub_w : ndarray of shape (m,), and (m,) or None
        Finite values of the reference subsample and their weights.
    ref, cand : FeatureRange
        Merged pass-1 summaries of the whole samples.

    Returns
    -------
    ndarray of shape (k + 1,)
        Distinct inner edges (feature units).

    Examples
    --------
    >>> ref = FeatureRange.of(np.arange(1000.0) + 0.25, None)
    >>> chi2_edges(np.array([10.25, 500.25, 900.25]), None, ref, ref)[[0, -1]].tolist()
    [0.25, 999.25]
    """
    n_bins = default_n_bins(min(ref.n_eff, cand.n_eff))
    integer = ref.whole and cand.whole
    bounds = (ref.lo, ref.hi)
    if sub_x.size == 0:
        sub_x, sub_w = np.array([ref.lo, ref.hi]), None
    w = sub_w if ref.weighted else None
    edges = quantile_edges(sub_x, w, n_bins, integer, bounds=bounds)
    return np.repeat(edges, 2) if edges.size == 1 else edges


def fine_edges(
    sub_x: np.ndarray,
    sub_w: np.ndarray | None,
    ref: FeatureRange,
    cand: FeatureRange,
    n_edges: int = FINE_EDGES,
) -> np.ndarray:
    """Fine edges for KS and W1: ``n_edges`` reference-quantile bins of the subsample between
    the exact pooled minimum and maximum; for whole-number features spanning at most
    ``n_edges`` integers, every integer (then the binned KS statistic is exact).

    Returns
    -------
    ndarray of shape (k + 1,)
        Distinct edges, the first the pooled minimum, the last the pooled maximum.
    """
    lo, hi = min(ref.lo, cand.lo), max(ref.hi, cand.hi)
    if ref.whole and cand.whole and hi - lo <= n_edges:
        return np.arange(lo, hi + 1.0)
    inner = np.array([ref.lo, ref.hi])
    if sub_x.size:
        inner = quantile_edges(
            sub_x, sub_w if ref.weighted else None, n_edges, False, bounds=(ref.lo, ref.hi)
        )
    return np.unique(np.concatenate([[lo], inner, [hi]]))


@dataclasses.dataclass
class BinnedSample:
    """Pass-2 sums of one feature of one sample on fixed edges; merge with ``+``.

    Attributes
    ----------
    coarse_w, coarse_w2 : ndarray of shape (k + 2,)
        Sums of weights and squared weights per chi2 bin (underflow, ``k`` bins, overflow;
        :func:`~hepgen.validation.univariate.binning.bin_index`).
    below : ndarray of shape (m + 1,)
        Weight of the values in ``(e_{i-1}, e_i]`` (index 0: at or below ``e_0``); its
        cumulative sum is the weight at or below each fine edge.
    inside : ndarray of shape (m + 1,)
        Weight strictly between ``e_{i-1}`` and ``e_i`` (index 0: below ``e_0``).
    inside_abs : ndarray of shape (m + 1,)
        The same of ``|w|`` (equal to ``inside`` for non-negative weights).
    at_w2 : ndarray of shape (m + 1,)
        Sum of squared weights of the values equal to each edge (the multiplier bootstrap).
    at_n : ndarray of shape (m + 1,)
        Number of values equal to each edge (ties).
    n : int
        Finite values summed.
    """

    coarse_w: np.ndarray
    coarse_w2: np.ndarray
    below: np.ndarray
    inside: np.ndarray
    inside_abs: np.ndarray
    at_w2: np.ndarray
    at_n: np.ndarray
    n: int

    @classmethod
    def of(
        cls, x: np.ndarray, w: np.ndarray | None, coarse: np.ndarray, fine: np.ndarray
    ) -> BinnedSample:
        """Sum the finite values ``x`` (weights ``w`` or None) on the chi2 edges ``coarse``
        and the fine edges ``fine``."""
        x = np.asarray(x, dtype=np.float64)
        finite = np.isfinite(x)
        x = x[finite]
        w = None if w is None else np.asarray(w, dtype=np.float64)[finite]
        nc, nf = coarse.size + 1, fine.size

        def sums(idx: np.ndarray, weights: np.ndarray | None, size: int) -> np.ndarray:
            return np.bincount(idx, weights=weights, minlength=size).astype(np.float64)[:size]

        ci = bin_index(x, coarse)
        left = np.minimum(np.searchsorted(fine, x, side="left"), nf - 1)
        at = fine[left] == x
        w2 = None if w is None else w * w
        inside = sums(left[~at], None if w is None else w[~at], nf)
        return cls(
            coarse_w=sums(ci, w, nc),
            coarse_w2=sums(ci, w2, nc),
            below=sums(left, w, nf),
            inside=inside,
            inside_abs=inside if w is None else sums(left[~at], np.abs(w[~at]), nf),
            at_w2=sums(left[at], None if w2 is None else w2[at], nf),
            at_n=sums(left[at], None, nf),
            n=int(x.size),
        )

    def __add__(self, other: BinnedSample) -> BinnedSample:
        return BinnedSample(
            *(getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(self))
        )

    @property
    def total(self) -> float:
        """Sum of weights."""
        return float(self.below.sum())


@dataclasses.dataclass(frozen=True)
class BinnedKSResult(KSResult):
    """A :class:`~hepgen.validation.univariate.ks.KSResult` from binned ECDFs.

    Attributes
    ----------
    error_bound : float
        The exact KS statistic lies in ``[statistic, statistic + error_bound]``.
    n_edges : int
        Fine edges where the ECDFs were evaluated.
    """

    error_bound: float = 0.0
    n_edges: int = 0


def _ecdf_at_edges(s: BinnedSample) -> tuple[np.ndarray, float]:
    total = s.total
    return np.cumsum(s.below) / total, total


def _binned_ks(
    ref: BinnedSample,
    cand: BinnedSample,
    fine: np.ndarray,
    n_eff: tuple[float, float],
    weighted: bool,
    n_permutations: int,
    rng: np.random.Generator,
) -> tuple[BinnedKSResult, float, float]:
    """KS from binned ECDFs, and the W1 distance with its bound (see the module docstring)."""
    f1, t1 = _ecdf_at_edges(ref)
    f2, t2 = _ecdf_at_edges(cand)
    diff = f1 - f2
    k = int(np.argmax(np.abs(diff)))
    d = float(abs(diff[k]))
    m1, m2 = ref.inside_abs / abs(t1), cand.inside_abs / abs(t2)
    signed = bool(np.any(ref.inside_abs != ref.inside) or np.any(cand.inside_abs != cand.inside))
    bound = float(np.max(m1 + m2) if signed else np.max(np.maximum(m1, m2)))
    atoms1, atoms2 = ref.below - ref.inside, cand.below - cand.inside
    present = (ref.at_n + cand.at_n) > 0
    n_distinct, n_total = int(present.sum()), ref.n + cand.n
    if bound == 0.0:  # every value sits on an edge: the distinct values are known
        tied = n_distinct < n_total and (n_distinct < 1000 or n_distinct < 0.5 * n_total)
    else:  # the values between edges are unknown: tied where an edge holds several
        tied = bool(np.any(ref.at_n + cand.at_n > 1))
    note = (
        f"KS at {fine.size} fine reference-quantile edges: the exact statistic lies in "
        f"[D, D + {bound:.3g}]"
    )
    if bound == 0.0 and tied and n_distinct <= _MAX_DISTINCT_FOR_RESAMPLING:
        if weighted:
            null = multiplier_null(
                np.sqrt(ref.at_w2[present]),
                np.sqrt(cand.at_w2[present]),
                f1[present],
                f2[present],
                (t1, t2),
                n_permutations,
                rng,
            )
            method = "binned-multiplier"
        else:
            counts = (atoms1 + atoms2)[present]
            null = permutation_null(counts, ref.n, cand.n, n_permutations, rng)
            method = "binned-permutation"
        pvalue = (1.0 + int(np.count_nonzero(null >= d - 1e-12))) / (1.0 + n_permutations)
        resamples = n_permutations
        note += f"; ties: {n_distinct} distinct values among {n_total} events, resampled p-value"
    else:
        pvalue = kolmogorov_sf(d, n_eff[0] * n_eff[1] / (n_eff[0] + n_eff[1]))
        method, resamples = "binned-asymp", 0
        if tied:
            note += "; ties: the asymptotic p-value is conservative"
    ks = BinnedKSResult(
        d, pvalue, *n_eff, method, float(fine[k]), resamples, note, bound, int(fine.size)
    )
    # W1: each ECDF linear inside a fine bin (index i: between e_{i-1} and e_i)
    width = np.diff(fine)
    mid = diff[:-1] + (ref.inside[1:] / t1 - cand.inside[1:] / t2) / 2
    w1 = float(np.sum(np.abs(mid) * width))
    w1_bound = float(np.sum((m1[1:] + m2[1:]) * width) / 2)
    return ks, w1, w1_bound


def binned_tests(
    ref: BinnedSample,
    cand: BinnedSample,
    ref_range: FeatureRange,
    cand_range: FeatureRange,
    coarse: np.ndarray,
    fine: np.ndarray,
    metrics: tuple[str, ...] | list[str],
    *,
    min_count: float = 10,
    n_permutations: int = 1000,
    seed: Any = None,
) -> tuple[dict[str, Any], dict[str, float]]:
    """The per-feature tests of the merged sums of one feature.

    Parameters
    ----------
    ref, cand : BinnedSample
        Merged pass-2 sums (on the same edges).
    ref_range, cand_range : FeatureRange
        Merged pass-1 summaries (Kish sizes, pooled range, weights, whole numbers).
    coarse, fine : ndarray
        The chi2 inner edges and the fine edges the sums were made on.
    metrics : sequence of str
        Among ``ks``, ``chi2``, ``w1``, ``separation_power``.
    min_count : float
        Sparse-bin merging of the chi2 (as :func:`~hepgen.validation.univariate.chi2_test`).
    n_permutations : int
        Resamples of a tied KS p-value.
    seed : int, sequence or Generator
        Randomness of the resampling.

    Returns
    -------
    entry : dict
        ``{"ks": BinnedKSResult, "chi2": Chi2Result, "w1": float, "separation_power": float}``
        (the metrics asked for).
    bounds : dict
        ``{"ks": bound, "w1": bound}``: exact KS in ``[D, D + bound]``, exact W1 within
        ``bound`` of the value (feature units).
    """
    weighted = ref_range.weighted or cand_range.weighted
    entry: dict[str, Any] = {}
    bounds: dict[str, float] = {}
    if "ks" in metrics or "w1" in metrics:
        rng = np.random.default_rng(seed)
        n_eff = (ref_range.n_eff, cand_range.n_eff)
        ks, w1, w1_bound = _binned_ks(ref, cand, fine, n_eff, weighted, n_permutations, rng)
        if "ks" in metrics:
            entry["ks"] = ks
            bounds["ks"] = ks.error_bound
    if "chi2" in metrics or "separation_power" in metrics:
        pooled = (min(ref_range.lo, cand_range.lo), max(ref_range.hi, cand_range.hi))
        integer = ref_range.whole and cand_range.whole
        hist = merge_sparse(
            coarse,
            ref.coarse_w,
            ref.coarse_w2,
            cand.coarse_w,
            cand.coarse_w2,
            min_count,
            pooled,
            integer,
        )
        if "chi2" in metrics:
            entry["chi2"] = chi2_from_histograms(hist, weighted)
        if "separation_power" in metrics:
            entry["separation_power"] = separation_from_histograms(hist)
    if "w1" in metrics:
        entry["w1"] = w1
        bounds["w1"] = w1_bound
    return entry, bounds


def chi2_note(name: str, result: Chi2Result) -> str | None:
    """The note of a chi2 without p-value (one bin), as
    :func:`~hepgen.validation.compare.compare` writes it."""
    if result.pvalue is None:
        return f"{name}: chi2 p-value is null: a single populated bin (constant feature)"
    return None
