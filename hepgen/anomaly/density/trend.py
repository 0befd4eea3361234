"""The trend of a density model: a polynomial in the conditions, carried through the gap.

A flexible conditional flow fits each sideband of a signal region well, but nothing ties down
what its networks do in between: on the reference dijet simulation (jet masses growing like
``mjj^0.85``) a sideband-trained MAF sampled in a 0.4 TeV signal region gave 18 % more data
than template at a 10 % classifier selection, against 5 % in its sidebands.  With a trend of
degree ``d``, every model-space feature has a least-squares polynomial of degree ``d`` in the
model-space conditions subtracted (no cross terms) before the flow and added back when
sampling; a shift has unit Jacobian, so densities keep their meaning, and degree 1 in
``log m`` is a power law carried through the gap by construction.  With a flow that does not
see ``m`` (``conditional=False``: ``x = trend(m) + e``, ``e`` independent of ``m``) the same
test gave 4 %.

Examples
--------
>>> import numpy as np
>>> c = np.linspace(0.0, 1.0, 50)[:, None]
>>> x = np.column_stack([2.0 + 3.0 * c[:, 0]])
>>> coef = fit_trend(x, c, None, degree=1)
>>> np.round(coef.ravel(), 6).tolist()
[2.0, 3.0]
>>> float(np.abs(shift(x, c, coef)).max()) < 1e-9
True
"""

from __future__ import annotations

import numpy as np

from hepgen.errors import InputError

__all__ = ["design", "fit_trend", "shift"]


def design(c: np.ndarray, degree: int) -> np.ndarray:
    """The trend's design matrix, shape (n, 1 + degree * C): 1, then c_j, c_j^2, ... per
    condition column of ``c`` (shape (n, C))."""
    c = np.asarray(c, dtype=np.float64)
    cols = [np.ones(len(c))] + [
        c[:, j] ** k for j in range(c.shape[1]) for k in range(1, degree + 1)
    ]
    return np.column_stack(cols)


def fit_trend(x: np.ndarray, c: np.ndarray, w: np.ndarray | None, degree: int) -> np.ndarray:
    """Weighted least-squares coefficients of ``x`` (n, D) on :func:`design` ``(c, degree)``.

    Written out (normal equations) because numpy's lstsq takes no weights and sWeights may
    be negative.

    Returns
    -------
    np.ndarray of shape (1 + degree * C, D)

    Raises
    ------
    InputError
        The conditions take too few distinct values for the degree.
    """
    a = design(c, degree)
    wa = a if w is None else a * w[:, None]
    gram = wa.T @ a
    rhs = wa.T @ np.asarray(x, dtype=np.float64)
    try:
        return np.linalg.solve(gram, rhs)
    except np.linalg.LinAlgError:
        raise InputError(
            f"DensityModel.fit: the trend of degree {degree} in the conditions cannot be "
            "fitted (the conditions take too few distinct values); use a lower trend"
        ) from None


def shift(z: np.ndarray, c: np.ndarray, coef: np.ndarray | None, sign: float = -1.0) -> np.ndarray:
    """Model-space features ``z`` (n, D) minus the trend ``coef`` at ``c`` (``sign=+1``: plus
    it, back from residuals), in ``z``'s dtype; ``z`` itself without a trend."""
    if coef is None:
        return z
    degree = (coef.shape[0] - 1) // max(c.shape[1], 1)
    return (z + sign * (design(c, degree) @ coef)).astype(z.dtype, copy=False)
