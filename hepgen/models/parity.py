"""Parity of two implementations of one generator: same latent draws in, differences out.

An exported graph (ONNX, TorchScript), a compiled one or one with bfloat16 conditioners is
accepted only when it computes the same function as the Python model it came from.  The check
here feeds both the *same* base-space draws and contexts and compares the outputs elementwise;
:func:`sample_parity` reports the largest and the 99th-percentile absolute difference and
whether they pass a tolerance.  (Statistical agreement of the samples, e.g. a classifier AUC,
is a different question, answered by :mod:`hepgen.validation`.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["ParityReport", "parity_inputs", "sample_parity"]


@dataclasses.dataclass(frozen=True)
class ParityReport:
    """Elementwise differences of two implementations on the same inputs.

    Attributes
    ----------
    max_abs : float
        Largest absolute difference over every row and column (model-space units).
    p99_abs : float
        99th percentile of the absolute differences.
    n_rows : int
        Rows compared.
    tolerance : float
        The ``max_abs`` allowed.
    what : str
        What was compared (for messages and reports).
    """

    max_abs: float
    p99_abs: float
    n_rows: int
    tolerance: float
    what: str = "samples"

    @property
    def passed(self) -> bool:
        """``max_abs <= tolerance`` (and both finite)."""
        return bool(np.isfinite(self.max_abs) and self.max_abs <= self.tolerance)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the attributes and ``passed``."""
        return {**dataclasses.asdict(self), "passed": self.passed}

    def summary(self) -> str:
        """One line: what, max and p99 difference, tolerance, verdict."""
        verdict = "pass" if self.passed else "FAIL"
        return (
            f"{self.what}: max |diff| {self.max_abs:.2e}, 99th percentile {self.p99_abs:.2e} "
            f"over {self.n_rows} rows (tolerance {self.tolerance:.0e}): {verdict}"
        )


def parity_inputs(
    n_rows: int, n_features: int, conditions: np.ndarray, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Base-space draws and contexts for a parity check, float32.

    Parameters
    ----------
    n_rows : int
        Rows wanted.
    n_features : int
        D, the width of the base-space draws.
    conditions : np.ndarray of shape (m, C)
        Model-space contexts to draw rows from (with replacement), e.g. the training
        conditions; their spread is what the check covers.
    seed : int
        Seeds the draws and the row choice.

    Returns
    -------
    z : np.ndarray of shape (n_rows, D)
        Standard normal draws, with a few rows pushed to +-5 sigma (the tails, where float32
        precision is lowest).
    c : np.ndarray of shape (n_rows, C)
    """
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n_rows, n_features)).astype(np.float32)
    tail = rng.random(n_rows) < 0.01
    z[tail] = 5.0 * np.sign(z[tail])
    rows = rng.integers(0, len(conditions), n_rows)
    return z, np.ascontiguousarray(conditions[rows], dtype=np.float32)


def sample_parity(
    reference: Callable[[np.ndarray, np.ndarray], np.ndarray],
    candidate: Callable[[np.ndarray, np.ndarray], np.ndarray],
    z: np.ndarray,
    c: np.ndarray,
    tolerance: float = 1e-4,
    what: str = "samples",
) -> ParityReport:
    """Compare two ``(z, c) -> outputs`` functions on the same inputs.

    Parameters
    ----------
    reference, candidate : callable
        Take float32 arrays ``z`` (n, D) and ``c`` (n, C), return an array of n rows (samples
        (n, D) or log-densities (n,)).
    z, c : np.ndarray
        The shared inputs (:func:`parity_inputs`).
    tolerance : float
        Largest absolute difference accepted.
    what : str
        Label of the comparison.

    Returns
    -------
    ParityReport
        NaN or inf in either output counts as an infinite difference (a failed check).

    Examples
    --------
    >>> import numpy as np
    >>> z, c = parity_inputs(1000, 2, np.zeros((10, 3)), seed=1)
    >>> r = sample_parity(lambda z, c: z, lambda z, c: z + 1e-6, z, c)
    >>> r.passed, f"{r.max_abs:.0e}"
    (True, '1e-06')
    """
    a = np.asarray(reference(z, c), dtype=np.float64)
    b = np.asarray(candidate(z, c), dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"{what}: shapes differ, {a.shape} and {b.shape}")
    diff = np.abs(a - b)
    diff[~(np.isfinite(a) & np.isfinite(b))] = np.inf
    return ParityReport(
        max_abs=float(diff.max()) if diff.size else 0.0,
        p99_abs=float(np.percentile(diff, 99)) if diff.size else 0.0,
        n_rows=len(z),
        tolerance=float(tolerance),
        what=what,
    )
