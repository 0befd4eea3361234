"""Kernel matrices in torch, tile by tile, and the weighted unbiased MMD^2 built on them.

The shared numerical core of :mod:`~hepgen.validation.mmd` (the MMD tests) and
:mod:`~hepgen.validation.distances` (KPD), plus the precision names that
:mod:`~hepgen.validation.fidelity` also uses.  The kernel matrix of a pooled sample is
evaluated in ``chunk_size`` x ``chunk_size`` tiles, each off-diagonal tile once, and any number
of labellings (permutations) of the pooled events is reduced in the same pass; see
docs/validation.md ("mmd").

References
----------
A. Gretton et al., "A Kernel Two-Sample Test", JMLR 13 (2012) 723, Lemma 6 (the unbiased
estimator).
R. Kansal et al., "Evaluating generative models in high energy physics", Phys. Rev. D 107
(2023) 076017, arXiv:2211.10295 (the polynomial kernel of KPD).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any

from hepgen.errors import InputError

__all__ = ["CPU_TILE", "KERNELS", "Kernel", "check_kernel", "pooled_mmd2", "torch_dtype"]

#: Kernel names: a sum of Gaussian (RBF) kernels, or KPD's polynomial ``(x.y / d + 1)^4``.
KERNELS = ("gaussian", "polynomial")
#: On CPU the kernel tiles are at most this size whatever chunk_size says.  A 1024 x 1024
#: float32 tile (4 MiB) is reused from the allocator's heap, while every 2048 x 2048 tile
#: (16 MiB) was a fresh mmap whose page faults dominated: the 1e6 vs 1e6 block test's
#: block test at 2e5 vs 2e5 events took 4.5 s with 1024 tiles against 12-15 s with 2048 tiles
#: at one thread, and 6.3 s against 44 s at two threads, on a loaded 2-core machine (load 3-4).
#: GPUs use chunk_size as given.
CPU_TILE = 1024
# Floors that keep Gaussian kernel values out of the subnormal range (see Kernel._gaussian_sum).
_EXP_FLOOR = 80.0
_SQUARE_FLOOR = 1e-18


def check_kernel(kernel: str) -> None:
    """Refuse a kernel name that is not one of :data:`KERNELS`.

    Parameters
    ----------
    kernel : str
        ``"gaussian"`` or ``"polynomial"``.

    Raises
    ------
    InputError
        Naming the accepted kernels.

    Examples
    --------
    >>> check_kernel("gaussian")
    >>> check_kernel("laplace")
    Traceback (most recent call last):
    ...
    hepgen.errors.InputError: kernel 'laplace': expected one of 'gaussian', 'polynomial'
    """
    if kernel not in KERNELS:
        raise InputError(f"kernel {kernel!r}: expected one of {', '.join(map(repr, KERNELS))}")


@dataclasses.dataclass(frozen=True)
class Kernel:
    """A kernel on torch tensors: ``prepare`` once per sample, then ``tile`` per block.

    Both kernels reduce to one matrix product of augmented vectors per tile (no separate
    broadcast passes): ``[a, |a|^2, 1] . [-2b, 1, |b|^2] = |a - b|^2`` for the Gaussian (on
    centred data, translation does not change it and centring limits float32 cancellation) and
    ``[a / d, 1] . [b, 1] = a.b / d + 1`` for the polynomial kernel.

    Attributes
    ----------
    name : {"gaussian", "polynomial"}
        ``"gaussian"``: ``sum_h exp(-|x - y|^2 / (2 h^2))``; ``"polynomial"``:
        ``(x.y / d + 1)^4`` for ``d`` features.
    bandwidths : tuple of float
        The Gaussian bandwidths ``h``, in the units of the data (empty for the polynomial).

    Examples
    --------
    >>> import torch
    >>> kern = Kernel("gaussian", (1.0,))
    >>> left, right = kern.prepare(torch.tensor([[0.0], [2.0]], dtype=torch.float64))
    >>> kern.tile(left, right)
    tensor([[1.0000, 0.1353],
            [0.1353, 1.0000]], dtype=torch.float64)
    """

    name: str
    bandwidths: tuple[float, ...] = ()

    def prepare(self, z: Any) -> tuple[Any, Any]:
        """Left and right factors of ``z`` (shape ``(..., N, d)``) for :meth:`tile`."""
        import torch

        one = torch.ones((*z.shape[:-1], 1), dtype=z.dtype, device=z.device)
        if self.name == "polynomial":
            return torch.cat([z / z.shape[-1], one], -1), torch.cat([z, one], -1)
        z = z - z.mean(dim=-2, keepdim=True)
        sq = (z * z).sum(-1, keepdim=True)
        return torch.cat([z, sq, one], -1), torch.cat([-2.0 * z, one, sq], -1)

    def tile(self, left: Any, right: Any, same: bool = False) -> Any:
        """Kernel values ``(..., n, m)`` between prepared rows; ``same``: a diagonal tile."""
        k = left @ right.mT
        if self.name == "polynomial":
            k.mul_(k)
            return k.mul_(k)  # (x.y / d + 1)^4 by two squarings
        k.clamp_(min=0.0)
        if same:
            # Exact zeros on the diagonal, so that k(x, x) is exactly the kernel's maximum
            # and the diagonal correction of the unbiased estimator cancels it exactly.
            k.diagonal(dim1=-2, dim2=-1).zero_()
        return self._gaussian_sum(k)

    def _gaussian_sum(self, d2: Any) -> Any:
        """``sum_h exp(-d2 / (2 h^2))``, overwriting ``d2``.

        Widest bandwidth first; when the next exponent is 2^p times the previous one (the
        default multiples 0.5, 1, 2, 4 give p = 2), ``exp(-2^p c d2)`` is the previous term
        squared p times, a multiplication instead of an exponential (~2x faster on CPU; the
        relative rounding error grows to ~2^p ulp, far below the statistical precision).

        Every term is kept above ~1e-36 (exponents clamped at -80, squares of values above
        1e-18): subnormal floats make CPU arithmetic ~100x slower, and kernel values below
        1e-35 change no sum.
        """
        import torch

        coefs = sorted(0.5 / (h * h) for h in self.bandwidths)
        out = torch.mul(d2, -coefs[0]).clamp_(min=-_EXP_FLOOR).exp_()
        if len(coefs) == 1:
            return out
        term = out.clone()
        for prev, c in itertools.pairwise(coefs):
            ratio = c / prev
            power = round(math.log2(ratio)) if ratio >= 1 else -1
            if 0 <= power <= 8 and abs(ratio - 2.0**power) <= 1e-12 * ratio:
                for _ in range(power):
                    term.clamp_(min=_SQUARE_FLOOR).mul_(term)
            else:
                torch.mul(d2, -c, out=term).clamp_(min=-_EXP_FLOOR).exp_()
            out.add_(term)
        return out


def torch_dtype(dtype: str) -> Any:
    """The torch dtype of a precision name.

    Parameters
    ----------
    dtype : {"float32", "float64"}
        Precision of the kernel (or distance) evaluation.

    Returns
    -------
    torch.dtype

    Raises
    ------
    InputError
        For any other name.

    Examples
    --------
    >>> torch_dtype("float64")
    torch.float64
    """
    import torch

    table = {"float32": torch.float32, "float64": torch.float64}
    if dtype not in table:
        raise InputError(f"dtype {dtype!r}: expected 'float32' or 'float64'")
    return table[dtype]


def pooled_mmd2(z: Any, u: Any, labels: Any, kernel: Kernel, chunk_size: int) -> Any:
    """Weighted unbiased MMD^2 for many labellings of one pooled sample.

    Parameters
    ----------
    z : torch.Tensor, shape (..., N, d)
        Pooled events (reference and candidate together).
    u : torch.Tensor, shape (..., N)
        Their weights, in the compute dtype.
    labels : torch.Tensor, shape (..., N, P)
        0/1 in the compute dtype: column p marks the events labelled "reference" in labelling p.
    kernel : Kernel
        The kernel, with its bandwidths fixed.
    chunk_size : int
        Tile size: at most ``chunk_size^2`` kernel values exist at a time (times the batch).

    Returns
    -------
    torch.Tensor, shape (..., P), float64
        MMD^2_u of each labelling.

    Notes
    -----
    With ``b = u * label`` (reference weights) and ``c = u - b`` (candidate weights) every term
    of the estimator is a quadratic form of the kernel matrix ``K``:
    ``b^T K b``, ``b^T K c = b^T K u - b^T K b`` and ``c^T K c = u^T K u - 2 b^T K u + b^T K b``.
    One tiled pass (one matrix product ``K_ij [B_j | u_j]`` per tile, each off-diagonal tile
    once) accumulates ``b^T K b`` and ``b^T K u`` for all columns and ``u^T K u``; the ``i = j``
    terms are removed with the diagonal of ``K``.  Products run in the compute dtype within a
    tile; all sums across tiles are float64.

    Examples
    --------
    Two labellings of four events in one dimension: ``{0, 1}`` against ``{3, 4}`` (far apart)
    and ``{0, 3}`` against ``{1, 4}`` (mixed):

    >>> import torch
    >>> z = torch.tensor([[0.0], [1.0], [3.0], [4.0]], dtype=torch.float64)
    >>> labels = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]], dtype=torch.float64)
    >>> u = torch.ones(4, dtype=torch.float64)
    >>> pooled_mmd2(z, u, labels, Kernel("gaussian", (1.0,)), chunk_size=2)
    tensor([ 1.1341, -0.6521], dtype=torch.float64)
    """
    import torch

    f64 = torch.float64
    if z.device.type == "cpu":
        chunk_size = min(chunk_size, CPU_TILE)
    n_total, n_cols = z.shape[-2], labels.shape[-1]
    left, right = kernel.prepare(z)
    b = labels * u.unsqueeze(-1)
    bu = torch.cat([b, u.unsqueeze(-1)], dim=-1)  # one product per tile gives K b and K u
    batch = z.shape[:-2]
    quad = torch.zeros((*batch, n_cols), dtype=f64, device=z.device)  # b^T K b
    bku = torch.zeros((*batch, n_cols), dtype=f64, device=z.device)  # b^T K u
    uku = torch.zeros(batch, dtype=f64, device=z.device)  # u^T K u
    kdiag = torch.zeros((*batch, n_total), dtype=f64, device=z.device)
    starts = list(range(0, n_total, chunk_size))
    for i0 in starts:
        i1 = min(i0 + chunk_size, n_total)
        li, bi, ui = left[..., i0:i1, :], b[..., i0:i1, :], u[..., i0:i1].unsqueeze(-2)
        for j0 in starts:
            if j0 < i0:
                continue  # symmetric: tile (j, i) is the transpose of tile (i, j)
            j1 = min(j0 + chunk_size, n_total)
            same = i0 == j0
            k = kernel.tile(li, right[..., j0:j1, :], same=same)
            m = k @ bu[..., j0:j1, :]  # (..., ti, P + 1): K_ij b_j and K_ij u_j
            kb, ku = m[..., :n_cols], m[..., n_cols:]
            q = (bi * kb).sum(-2, dtype=f64)  # b_i^T K_ij b_j
            r = (bi * ku).sum(-2, dtype=f64)  # b_i^T K_ij u_j
            t = (ui @ ku).squeeze(-1).squeeze(-1).to(f64)  # u_i^T K_ij u_j
            if same:
                quad += q
                bku += r
                uku += t
                kdiag[..., i0:i1] = k.diagonal(dim1=-2, dim2=-1)
            else:
                # the mirrored tile (j, i) adds the same b^T K b and u^T K u, and
                # b_j^T K_ji u_i = u_i^T K_ij b_j
                quad += 2.0 * q
                bku += r + (ui @ kb).squeeze(-2).to(f64)
                uku += 2.0 * t
            del k, m
    u64 = u.to(f64)
    # Per-column sums of b, b^2 and b^2 k_ii: b_i is u_i or 0, so each is a 0/1 label matrix
    # times a per-event vector; in float64, a slice of columns at a time.
    vecs = torch.stack([u64, u64 * u64, u64 * u64 * kdiag], dim=-1)  # (..., N, 3)
    col_step = max(1, (1 << 22) // max(n_total, 1))
    sums = torch.cat(
        [vecs.mT @ labels[..., c0 : c0 + col_step].to(f64) for c0 in range(0, n_cols, col_step)],
        dim=-1,
    )  # (..., 3, P)
    sx, qx, dx = sums.unbind(-2)
    big_u = u64.sum(-1, keepdim=True)
    big_q = (u64 * u64).sum(-1, keepdim=True)
    big_d = (u64 * u64 * kdiag).sum(-1, keepdim=True)
    uku = uku.unsqueeze(-1)
    sy, qy = big_u - sx, big_q - qx
    xx = quad - dx
    xy = bku - quad
    yy = uku - 2.0 * bku + quad - (big_d - dx)
    return xx / (sx * sx - qx) + yy / (sy * sy - qy) - 2.0 * xy / (sx * sy)
