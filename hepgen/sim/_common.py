"""Shared machinery of the reference simulations: settings, random draws, awkward layouts.

Nothing here is physics-specific. The process classes (:mod:`hepgen.sim.jets`,
:mod:`hepgen.sim.dijet`) derive from :class:`Simulation`, which gives them scikit-learn style
settings (the constructor only stores its keyword arguments; :meth:`Simulation.get_params`
lists them; values are checked when :meth:`generate` runs) and option validation with
:class:`hepgen.errors.InputError`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from typing import Any, ClassVar

import awkward as ak
import numpy as np
from scipy import special

from hepgen.errors import InputError, did_you_mean

__all__ = [
    "SeedLike",
    "Simulation",
    "build_events",
    "check_n_events",
    "crystal_ball",
    "draw_beta_mixture",
    "ordered_by",
    "power_law",
    "soft_cap",
    "wrap_phi",
]

#: What ``generate(..., seed=)`` accepts: anything :func:`numpy.random.default_rng` takes.
SeedLike = int | np.random.SeedSequence | None


class Simulation:
    """Base class of the reference simulations (scikit-learn style settings).

    Subclasses list their settings as keyword arguments of ``__init__`` and store each one
    unchanged under the same attribute name; :meth:`_check` validates them and
    :meth:`generate` draws events.
    """

    #: Short name of the process (the ``--process`` value of ``hepgen simulate``).
    process: ClassVar[str] = ""

    @classmethod
    def param_names(cls) -> list[str]:
        """Names of the settings accepted by the constructor, in signature order."""
        sig = inspect.signature(cls.__init__)
        return [p.name for p in sig.parameters.values() if p.name != "self"]

    @classmethod
    def from_options(cls, **options: Any) -> Simulation:
        """Construct from user options, rejecting unknown ones and bad values.

        Raises
        ------
        InputError
            If an option is not a setting of this process (the message names it and
            suggests close names), or if a value is out of range.
        """
        names = cls.param_names()
        for key in options:
            if key not in names:
                raise InputError(
                    f"unknown option '{key}' for process '{cls.process}'"
                    f"{did_you_mean(key, names)}; valid options: {', '.join(names)}"
                )
        sim = cls(**options)
        sim._check()
        return sim

    def get_params(self) -> dict[str, Any]:
        """Return the settings as a dict (name -> value), e.g. to store next to a sample."""
        return {name: getattr(self, name) for name in self.param_names()}

    def __repr__(self) -> str:
        sig = inspect.signature(type(self).__init__)
        changed = [
            f"{name}={getattr(self, name)!r}"
            for name, p in sig.parameters.items()
            if name != "self" and getattr(self, name) != p.default
        ]
        return f"{type(self).__name__}({', '.join(changed)})"

    def _check(self) -> None:  # pragma: no cover - overridden
        """Raise :class:`InputError` for settings out of range."""

    def generate(self, n_events: int, seed: SeedLike = None) -> ak.Array:  # pragma: no cover
        raise NotImplementedError

    # -- helpers for _check ---------------------------------------------------------------
    def _require(self, condition: bool, name: str, expected: str) -> None:
        if not condition:
            raise InputError(
                f"option '{name}' of process '{self.process}' is {getattr(self, name)!r}; "
                f"expected {expected}"
            )

    def _require_number(
        self,
        name: str,
        low: float | None = None,
        high: float | None = None,
        low_open: bool = False,
        high_open: bool = False,
    ) -> float:
        value = getattr(self, name)
        if isinstance(value, str):  # e.g. "1e-2" from the command line (YAML reads it as text)
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise InputError(
                f"option '{name}' of process '{self.process}' is {value!r}; expected a number"
            )
        value = float(value)
        ok = math.isfinite(value)
        if low is not None:
            ok = ok and (value > low if low_open else value >= low)
        if high is not None:
            ok = ok and (value < high if high_open else value <= high)
        if not ok:
            lo = "" if low is None else ("(" if low_open else "[") + f"{low:g}"
            hi = "" if high is None else f"{high:g}" + (")" if high_open else "]")
            rng = f"in {lo or '(-inf'}, {hi or 'inf)'}"
            raise InputError(
                f"option '{name}' of process '{self.process}' is {value!r}; expected a finite "
                f"number {rng}"
            )
        return value


def check_n_events(n_events: Any) -> int:
    """Return ``n_events`` as an int, raising :class:`InputError` unless it is an int >= 0."""
    if isinstance(n_events, bool) or not isinstance(n_events, (int, np.integer)):
        raise InputError(f"number of events is {n_events!r}; expected an integer >= 0")
    if n_events < 0:
        raise InputError(f"number of events is {n_events}; expected an integer >= 0")
    return int(n_events)


# -- random draws ---------------------------------------------------------------------------


def power_law(
    rng: np.random.Generator,
    index: float | np.ndarray,
    low: float | np.ndarray,
    high: float | np.ndarray,
    size: int,
) -> np.ndarray:
    """Draw from ``p(x) ∝ x**(-index)`` on ``[low, high]`` by inverting the CDF.

    Parameters
    ----------
    index : float or array
        Power (> 0; ``index == 1`` is handled as the log-uniform limit).
    low, high : float or array of shape (size,)
        Range, ``0 < low <= high``.
    size : int

    Returns
    -------
    np.ndarray of shape (size,), float64
    """
    u = rng.random(size)
    index = np.asarray(index, dtype=np.float64)
    low = np.asarray(low, dtype=np.float64)
    high = np.asarray(high, dtype=np.float64)
    if np.all(np.abs(index - 1.0) < 1e-9):
        return low * np.exp(u * np.log(high / low))
    k = 1.0 - index
    a = low**k
    b = high**k
    return (a + u * (b - a)) ** (1.0 / k)


def crystal_ball(
    rng: np.random.Generator,
    size: int,
    alpha_low: float,
    n_low: float,
    alpha_high: float,
    n_high: float,
) -> np.ndarray:
    """Draw from a standardised double-sided Crystal Ball shape.

    The density is a unit Gaussian core on ``[-alpha_low, alpha_high]`` continued by power
    laws, continuous with continuous first derivative::

        f(z) ∝ exp(-z²/2)                                 -alpha_low <= z <= alpha_high
        f(z) ∝ A_l (B_l - z)^(-n_low),   A_l = (n_low/alpha_low)^n_low exp(-alpha_low²/2),
                                          B_l = n_low/alpha_low - alpha_low          z < -alpha_low
        (and mirrored on the high side).

    Sampling is exact: pick the region with its integral as weight, then invert its CDF.

    Returns
    -------
    np.ndarray of shape (size,), float64
    """
    al, nl, ah, nh = float(alpha_low), float(n_low), float(alpha_high), float(n_high)
    w_low = nl / (al * (nl - 1.0)) * math.exp(-0.5 * al * al)
    w_high = nh / (ah * (nh - 1.0)) * math.exp(-0.5 * ah * ah)
    phi_lo, phi_hi = special.ndtr(-al), special.ndtr(ah)
    w_core = math.sqrt(2.0 * math.pi) * (phi_hi - phi_lo)
    total = w_low + w_core + w_high
    u = rng.random(size)
    v = rng.random(size)
    z = np.empty(size)
    low = u < w_low / total
    high = u >= (w_low + w_core) / total
    core = ~(low | high)
    z[core] = special.ndtri(phi_lo + v[core] * (phi_hi - phi_lo))
    # tail: P(T > t) = (t alpha/n)^(1-n) for t = B - z >= n/alpha
    t_low = (nl / al) * v[low] ** (-1.0 / (nl - 1.0))
    z[low] = (nl / al - al) - t_low
    t_high = (nh / ah) * v[high] ** (-1.0 / (nh - 1.0))
    z[high] = t_high - (nh / ah - ah)
    return z


#: Beta shapes (a, b) of the three b-tag discriminant components: light-like (peak at 0),
#: intermediate, and b-like (peak at 1).
BETA_COMPONENTS = ((0.4, 12.0), (2.0, 2.5), (9.0, 0.45))


def draw_beta_mixture(
    rng: np.random.Generator,
    w_mid: np.ndarray,
    w_high: np.ndarray,
    components: tuple[tuple[float, float], ...] = BETA_COMPONENTS,
) -> np.ndarray:
    """Draw from a per-element mixture of three Beta densities on [0, 1].

    Parameters
    ----------
    w_mid, w_high : np.ndarray of shape (n,)
        Weights of the second and third component; the first has ``1 - w_mid - w_high``.
    components : three (a, b) pairs

    Returns
    -------
    np.ndarray of shape (n,), float64 in [0, 1]
    """
    n = len(w_mid)
    u = rng.random(n)
    which = (u >= 1.0 - w_mid - w_high).astype(np.intp) + (u >= 1.0 - w_high)
    a = np.array([c[0] for c in components])[which]
    b = np.array([c[1] for c in components])[which]
    return rng.beta(a, b) if n else np.zeros(0)


def soft_cap(x: np.ndarray, cap: float, power: float = 4.0) -> np.ndarray:
    """Smoothly bound positive ``x`` below ``cap``: ``x / (1 + (x/cap)^p)^(1/p)``.

    Values well below ``cap`` are unchanged (relative change ``(x/cap)^p / p``).
    """
    return x / (1.0 + (x / cap) ** power) ** (1.0 / power)


def wrap_phi(phi: np.ndarray) -> np.ndarray:
    """Wrap angles (radians) into [-pi, pi)."""
    out = np.remainder(phi + np.pi, 2.0 * np.pi) - np.pi
    # remainder can round to exactly pi for tiny negative inputs
    return np.where(out >= np.pi, -np.pi, out)


def ordered_by(event: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Permutation that groups rows by ``event`` (ascending) and sorts by ``key`` descending.

    Stable, so equal keys keep their order.
    """
    return np.lexsort((-key, event))


# -- awkward layout -------------------------------------------------------------------------


def build_events(
    n_events: int,
    scalars: Mapping[str, np.ndarray],
    collections: Mapping[str, tuple[np.ndarray, Mapping[str, np.ndarray]]],
) -> ak.Array:
    """Assemble an awkward Array of events from flat numpy columns without copying.

    Parameters
    ----------
    n_events : int
    scalars : mapping of branch name to np.ndarray of shape (n_events,)
    collections : mapping of collection name to ``(counts, columns)``
        ``counts`` of shape (n_events,), ``columns`` branch name to a flat array of shape
        (counts.sum(),), rows grouped by event in order.

    Returns
    -------
    ak.Array
        Records (one per event) with the scalar branches, then the jagged branches;
        branches of one collection share their offsets.
    """
    contents: list[ak.contents.Content] = []
    fields: list[str] = []
    for name, column in scalars.items():
        contents.append(ak.contents.NumpyArray(np.ascontiguousarray(column)))
        fields.append(name)
    for counts, columns in collections.values():
        offsets = np.zeros(n_events + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        index = ak.index.Index64(offsets)
        for name, column in columns.items():
            contents.append(
                ak.contents.ListOffsetArray(
                    index, ak.contents.NumpyArray(np.ascontiguousarray(column))
                )
            )
            fields.append(name)
    return ak.Array(ak.contents.RecordArray(contents, fields, length=n_events))
