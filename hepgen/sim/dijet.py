"""Reference simulation of the dijet anomaly-detection benchmark (LHC-Olympics-2020-like).

Each event is a pair of large-radius jets summarised by the high-level features of the LHC
Olympics 2020 R&D data set: ``mjj``, the jet masses ``mj1``, ``mj2`` (**j1 is the heavier
jet**) and their N-subjettiness ratios ``tau21_j1``, ``tau21_j2``, in TeV. The QCD
background follows the dijet function in ``mjj``, with jet masses and ``tau21`` that depend
on ``mjj`` (so a background model must interpolate into a signal region); an optional
``X -> Y Z`` resonance (``signal_fraction``) gives the anomaly. Every formula, branch and
setting is documented in the project's ``data/README.md`` (process ``dijet``).
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from hepgen.sim._common import SeedLike, Simulation, build_events, check_n_events, soft_cap

__all__ = ["BRANCHES", "DijetSimulation"]

#: Branch name -> numpy dtype of every field returned by :meth:`DijetSimulation.generate`.
BRANCHES: dict[str, np.dtype] = {
    "event": np.dtype(np.uint64),
    "label": np.dtype(np.int32),
    "mjj": np.dtype(np.float32),
    "mj1": np.dtype(np.float32),
    "mj2": np.dtype(np.float32),
    "tau21_j1": np.dtype(np.float32),
    "tau21_j2": np.dtype(np.float32),
}

_GRID = 8192
_KAPPA_BKG = 14.0
_KAPPA_SIG = 12.0
_TAU21_SIG = 0.30
_HARD_SPLIT = 0.10


def _truncated_normal(
    rng: np.random.Generator,
    mean: np.ndarray | float,
    sigma: float,
    low: float,
    high: float,
    size: int,
) -> np.ndarray:
    """Normal draws redrawn until they fall in [low, high] (clipped after 100 rounds)."""
    mean = np.broadcast_to(np.asarray(mean, dtype=np.float64), (size,))
    x = rng.normal(mean, sigma)
    bad = np.flatnonzero((x < low) | (x > high))
    for _ in range(100):
        if not len(bad):
            break
        x[bad] = rng.normal(mean[bad], sigma)
        bad = bad[(x[bad] < low) | (x[bad] > high)]
    return np.clip(x, low, high)


class DijetSimulation(Simulation):
    """LHC-Olympics-like dijet events: QCD background plus an optional resonance.

    The constructor only stores the settings; :meth:`generate` draws events. The physics
    model (every formula) is documented in the project's ``data/README.md``. Masses in TeV.

    Parameters
    ----------
    signal_fraction : float
        Fraction of all events that are signal, in [0, 1] (default 0).
    mx : float
        Resonance mass ``m_X`` in TeV (default 3.5).
    my1, my2 : float
        Masses of the two daughters Y and Z in TeV (defaults 0.5, 0.1); ``my1 + my2 < mx``.
    mjj_min, mjj_max : float
        Range of ``mjj`` in TeV (defaults 1.5, 7).
    sqrt_s : float
        Collision energy in TeV setting ``x = mjj / sqrt_s`` of the dijet function
        (default 13).
    p1, p2 : float
        Exponents of the dijet function ``(1 - x)^p1 / x^p2`` (defaults 6, 3).
    mx_width : float
        Relative Gaussian width of the signal ``mjj`` peak (default 0.06).
    my_resolution : float
        Relative jet-mass resolution of the signal jets (default 0.07).

    References
    ----------
    .. [1] G. Kasieczka et al., "The LHC Olympics 2020: a community challenge for anomaly
       detection in high energy physics", Rep. Prog. Phys. 84 (2021) 124201,
       arXiv:2101.08320.
    .. [2] CMS Collaboration, "Search for narrow and broad dijet resonances in
       proton-proton collisions at 13 TeV", JHEP 08 (2018) 130, arXiv:1806.00843
       (dijet function).
    .. [3] J. Dolen et al., "Thinking outside the ROCs: designing decorrelated taggers
       (DDT) for jet substructure", JHEP 05 (2016) 156, arXiv:1603.00027.

    Examples
    --------
    >>> from hepgen.sim import DijetSimulation
    >>> events = DijetSimulation(signal_fraction=0.01).generate(10_000, seed=3)
    >>> int(ak.sum(events.label))
    100
    >>> bool(ak.all(events.mj1 >= events.mj2))
    True
    """

    process = "dijet"

    def __init__(
        self,
        signal_fraction: float = 0.0,
        mx: float = 3.5,
        my1: float = 0.5,
        my2: float = 0.1,
        mjj_min: float = 1.5,
        mjj_max: float = 7.0,
        sqrt_s: float = 13.0,
        p1: float = 6.0,
        p2: float = 3.0,
        mx_width: float = 0.06,
        my_resolution: float = 0.07,
    ) -> None:
        self.signal_fraction = signal_fraction
        self.mx = mx
        self.my1 = my1
        self.my2 = my2
        self.mjj_min = mjj_min
        self.mjj_max = mjj_max
        self.sqrt_s = sqrt_s
        self.p1 = p1
        self.p2 = p2
        self.mx_width = mx_width
        self.my_resolution = my_resolution

    def _check(self) -> None:
        self._require_number("signal_fraction", 0.0, 1.0)
        sqrt_s = self._require_number("sqrt_s", 0.0, low_open=True)
        lo = self._require_number("mjj_min", 0.0, low_open=True)
        self._require_number("mjj_max", lo, sqrt_s, low_open=True, high_open=True)
        mx = self._require_number("mx", 0.0, low_open=True)
        my1 = self._require_number("my1", 0.0, low_open=True)
        my2 = self._require_number("my2", 0.0, low_open=True)
        self._require(my1 + my2 < mx, "my1", f"my1 + my2 < mx = {mx} TeV (my2 is {my2})")
        self._require(
            lo <= mx <= float(self.mjj_max),
            "mx",
            f"inside the mjj range [{lo}, {self.mjj_max}] TeV",
        )
        self._require_number("p1", 0.0)
        self._require_number("p2", 0.0)
        self._require_number("mx_width", 0.0, 0.5, low_open=True)
        self._require_number("my_resolution", 0.0, 0.5)

    # ------------------------------------------------------------------------------------
    def background_pdf(self, mjj: np.ndarray) -> np.ndarray:
        """Normalised background density of ``mjj`` (TeV^-1), zero outside the range.

        Parameters
        ----------
        mjj : array of shape (n,), TeV

        Returns
        -------
        np.ndarray of shape (n,)
        """
        self._check()
        mjj = np.asarray(mjj, dtype=np.float64)
        inside = (mjj >= float(self.mjj_min)) & (mjj <= float(self.mjj_max))
        return np.where(inside, self._dijet_function(mjj) / self._mjj_table()[2], 0.0)

    def _dijet_function(self, mjj: np.ndarray) -> np.ndarray:
        x = np.asarray(mjj, dtype=np.float64) / float(self.sqrt_s)
        return np.clip(1.0 - x, 0.0, None) ** float(self.p1) / x ** float(self.p2)

    def _mjj_table(self) -> tuple[np.ndarray, np.ndarray, float]:
        """Grid in ln(mjj), normalised CDF on it, and the integral of f over the range."""
        t = np.linspace(np.log(float(self.mjj_min)), np.log(float(self.mjj_max)), _GRID)
        g = self._dijet_function(np.exp(t)) * np.exp(t)  # density in ln(mjj)
        cdf = np.concatenate([[0.0], np.cumsum(0.5 * (g[1:] + g[:-1]) * np.diff(t))])
        return t, cdf / cdf[-1], float(cdf[-1])

    def _sample_mjj(self, rng: np.random.Generator, size: int) -> np.ndarray:
        t, cdf, _ = self._mjj_table()
        u = rng.random(size)
        # linear interpolation of the inverse CDF inside each grid cell
        return np.exp(np.interp(u, cdf, t))

    # ------------------------------------------------------------------------------------
    def generate(self, n_events: int, seed: SeedLike = None) -> ak.Array:
        """Simulate ``n_events`` dijet events.

        Parameters
        ----------
        n_events : int
            Number of events (>= 0).
        seed : int, numpy.random.SeedSequence or None
            Seed of the random generator; the same seed gives the same events.

        Returns
        -------
        ak.Array
            Shape (n_events,): one record per event with the scalar fields of
            :data:`BRANCHES` (``mjj``, ``mj1``, ``mj2`` in TeV).

        Raises
        ------
        InputError
            If a setting is out of range or ``n_events`` is not an integer >= 0.
        """
        self._check()
        n = check_n_events(n_events)
        rng = np.random.default_rng(seed)
        n_sig = round(float(self.signal_fraction) * n)
        is_sig = np.zeros(n, dtype=bool)
        is_sig[rng.choice(n, size=n_sig, replace=False)] = True
        sig = np.flatnonzero(is_sig)
        bkg = np.flatnonzero(~is_sig)

        mjj = np.empty(n)
        m1 = np.empty(n)
        m2 = np.empty(n)
        t1 = np.empty(n)
        t2 = np.empty(n)
        mjj[bkg], m1[bkg], m2[bkg], t1[bkg], t2[bkg] = self._background(rng, len(bkg))
        mjj[sig], m1[sig], m2[sig], t1[sig], t2[sig] = self._signal(rng, len(sig))

        swap = m2 > m1  # j1 is the heavier jet
        m1, m2 = np.where(swap, m2, m1), np.where(swap, m1, m2)
        t1, t2 = np.where(swap, t2, t1), np.where(swap, t1, t2)
        scalars = {
            "event": np.arange(1, n + 1, dtype=np.uint64),
            "label": is_sig.astype(np.int32),
            "mjj": mjj.astype(np.float32),
            "mj1": m1.astype(np.float32),
            "mj2": m2.astype(np.float32),
            "tau21_j1": t1.astype(np.float32),
            "tau21_j2": t2.astype(np.float32),
        }
        return build_events(n, scalars, {})

    def _background(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
        mjj = self._sample_mjj(rng, n)
        y_star = _truncated_normal(rng, 0.0, 0.6, -1.3, 1.3, n)
        pt = mjj / (2.0 * np.cosh(y_star))
        g_frac = np.clip(0.72 - 0.06 * (mjj - 1.5), 0.2, 0.8)
        xi0 = rng.standard_normal(n)
        out = []
        for _ in range(2):
            gluon = rng.random(n) < g_frac
            r0 = np.where(gluon, 0.085, 0.060)
            ln_rho = (
                np.log(r0)
                - 0.15 * np.log(pt)
                + 0.5 * (0.5 * xi0 + np.sqrt(0.75) * rng.standard_normal(n))
            )
            mass = pt * soft_cap(np.exp(ln_rho), 0.7)
            rho_ddt = np.log((mass * 1e3) ** 2 / (pt * 1e3))
            hard = rng.random(n) < _HARD_SPLIT
            mean = np.clip(0.50 + 0.063 * rho_ddt + 0.03 * gluon - 0.15 * hard, 0.15, 0.85)
            tau = rng.beta(mean * _KAPPA_BKG, (1.0 - mean) * _KAPPA_BKG)
            out += [mass, tau]
        return mjj, out[0], out[2], out[1], out[3]

    def _signal(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
        mx = float(self.mx)
        mjj = _truncated_normal(
            rng, mx, float(self.mx_width) * mx, float(self.mjj_min), float(self.mjj_max), n
        )
        res = float(self.my_resolution)
        out = []
        for my in (float(self.my1), float(self.my2)):
            f = np.where(rng.random(n) < 0.10, rng.beta(1.5, 10.0, n), 0.0)
            mass = np.maximum(my * (1.0 + res * rng.standard_normal(n)) * (1.0 - f), 1e-4)
            tau = rng.beta(_TAU21_SIG * _KAPPA_SIG, (1.0 - _TAU21_SIG) * _KAPPA_SIG, n)
            out += [mass, tau]
        return mjj, out[0], out[2], out[1], out[3]
