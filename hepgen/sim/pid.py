"""Reference simulation of an LHCb-like particle-identification (PID) calibration ntuple.

One row per ``J/psi -> mu+ mu-`` candidate, two tracks ``mu1`` (positive) and ``mu2``
(negative) per row: the "several objects per row" layout of LHCb DecayTreeTuple output
(``mu1_P``, ``mu1_PIDK``, ...; TTree ``DecayTree``, MeV). Signal muon pairs and
combinatorial background (mostly mis-identified pions and kaons) carry five PID responses
with the traps of real ntuples (-1000 sentinels, exact zeros, a 1e-4 grid); the candidate
mass ``Jpsi_M`` is drawn independently of everything else within each species, so the
sWeights ``sw`` of its sPlot fit (:mod:`hepgen.sim.splot`) unfold the signal's PID
distributions. Every formula, branch and setting is documented in the project's
``data/README.md`` (process ``pid``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import awkward as ak
import numpy as np
from scipy import special

from hepgen.sim._common import SeedLike, Simulation, build_events, check_n_events
from hepgen.sim.splot import MassModel, SPlotFit, fit_splot

__all__ = [
    "BRANCHES",
    "OBJECTS",
    "PID_RESPONSES",
    "SENTINEL",
    "PidSimulation",
    "write_signal_only",
]

#: Prefixes of the two tracks of a candidate (mu1: positive, mu2: negative).
OBJECTS: tuple[str, str] = ("mu1", "mu2")
#: The five PID responses of every track (the targets of a PID fast simulation).
PID_RESPONSES: tuple[str, ...] = ("PIDK", "PIDp", "PIDe", "PIDmu", "ProbNNmu")
#: Value stored where a response was not computed.
SENTINEL = -1000.0
#: Candidates per run number.
EVENTS_PER_RUN = 10_000
FIRST_RUN = 250_000

_TRACK_BRANCHES: dict[str, np.dtype] = {
    "P": np.dtype(np.float64),
    "PT": np.dtype(np.float64),
    "ETA": np.dtype(np.float64),
    **{name: np.dtype(np.float64) for name in PID_RESPONSES},
    "TRUEID": np.dtype(np.int32),
}

#: Branch name -> numpy dtype of every field returned by :meth:`PidSimulation.generate`.
BRANCHES: dict[str, np.dtype] = {
    "runNumber": np.dtype(np.uint32),
    "eventNumber": np.dtype(np.uint64),
    "nTracks": np.dtype(np.int32),
    "Jpsi_M": np.dtype(np.float64),
    "sw": np.dtype(np.float64),
    "is_signal": np.dtype(np.int32),
    **{f"{p}_{name}": dtype for p in OBJECTS for name, dtype in _TRACK_BRANCHES.items()},
}

MUON, PION, KAON = 0, 1, 2
_PDG = np.array([13, 211, 321])
_MUON_SIGN = (-1, 1)  # mu+ is PDG -13: muons carry the opposite sign of hadrons
_NOISE_CORRELATION = np.array(
    [
        [1.00, 0.65, 0.10, 0.05],
        [0.65, 1.00, 0.10, 0.05],
        [0.10, 0.10, 1.00, 0.25],
        [0.05, 0.05, 0.25, 1.00],
    ]
)
_NU = 5.0
GEV = 1000.0


def _expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _streams(seed: SeedLike) -> tuple[np.random.Generator, np.random.Generator]:
    """Two independent generators derived from ``seed``: species and mass; everything else."""
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    children = [
        np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, k), pool_size=ss.pool_size)
        for k in (0, 1)
    ]
    return np.random.default_rng(children[0]), np.random.default_rng(children[1])


class PidSimulation(Simulation):
    """LHCb-like PID calibration ntuple: J/psi -> mu mu candidates with background.

    The constructor only stores the settings; :meth:`generate` draws candidates. The model
    (every formula, the sentinel and zero fractions) is documented in the project's
    ``data/README.md``.

    Parameters
    ----------
    signal_fraction : float
        Probability that a candidate is signal, in (0, 1) (default 0.65).
    resolution_scale : float
        Multiplies every PID response width (default 1).
    sentinel_scale : float
        Multiplies the probabilities of the -1000 sentinels (default 1; at most 1.9).

    Attributes
    ----------
    tree_name : str
        ``"DecayTree"``, the TTree :func:`hepgen.sim.simulate_to_file` writes.
    event_branch : str
        ``"eventNumber"``.

    References
    ----------
    .. [1] LHCb Collaboration, "Performance of the LHCb RICH detector at the LHC",
       Eur. Phys. J. C 73 (2013) 2431, arXiv:1211.6759.
    .. [2] R. Aaij et al., "Selection and processing of calibration samples to measure the
       particle identification performance of the LHCb experiment in Run 2",
       EPJ Tech. Instrum. 6 (2019) 1, arXiv:1803.00824.
    .. [3] M. Pivk, F. R. Le Diberder, Nucl. Instrum. Meth. A 555 (2005) 356 (sPlot).

    Examples
    --------
    >>> from hepgen.sim import PidSimulation
    >>> events = PidSimulation().generate(2000, seed=1)
    >>> events.fields[:6]
    ['runNumber', 'eventNumber', 'nTracks', 'Jpsi_M', 'sw', 'is_signal']
    >>> bool(ak.any(events.mu1_PIDK == -1000.0)), bool(ak.any(events.sw < 0))
    (True, True)
    """

    process = "pid"
    tree_name: ClassVar[str] = "DecayTree"
    event_branch: ClassVar[str] = "eventNumber"

    def __init__(
        self,
        signal_fraction: float = 0.65,
        resolution_scale: float = 1.0,
        sentinel_scale: float = 1.0,
    ) -> None:
        self.signal_fraction = signal_fraction
        self.resolution_scale = resolution_scale
        self.sentinel_scale = sentinel_scale

    def _check(self) -> None:
        self._require_number("signal_fraction", 0.0, 1.0, low_open=True, high_open=True)
        self._require_number("resolution_scale", 0.0, 10.0, low_open=True)
        self._require_number("sentinel_scale", 0.0, 1.9)

    # -- species and mass (their own random stream) --------------------------------------
    def draw_species_mass(self, n_events: int, seed: SeedLike = None) -> tuple[np.ndarray, ...]:
        """Truth species and mass of ``n_events`` candidates, as :meth:`generate` draws them.

        Returns
        -------
        is_signal : np.ndarray of shape (n,), bool
        mass : np.ndarray of shape (n,), float64, MeV
        """
        self._check()
        n = check_n_events(n_events)
        return self._species_mass(_streams(seed)[0], n)

    def _species_mass(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        is_signal = rng.random(n) < float(self.signal_fraction)
        model = MassModel()
        mass = np.empty(n)
        mass[is_signal] = model.sample_signal(rng, int(is_signal.sum()))
        mass[~is_signal] = model.sample_background(rng, int((~is_signal).sum()))
        return is_signal, mass

    def file_options(self, chunks: Iterable[tuple[int, np.random.SeedSequence]]) -> dict[str, Any]:
        """Fit the masses of a whole file once, before it is written chunk by chunk.

        Parameters
        ----------
        chunks : iterable of (size, seed sequence)
            The chunks of :func:`hepgen.sim.iter_chunk_seeds`.

        Returns
        -------
        dict
            ``{"splot": SPlotFit}``, keyword arguments for every chunk's :meth:`generate`, so
            that the sWeights of every chunk come from the fit of the whole file. Holds the
            masses in memory meanwhile (8 bytes per candidate).
        """
        masses = [self.draw_species_mass(size, seed=child)[1] for size, child in chunks]
        return {"splot": fit_splot(np.concatenate(masses) if masses else np.zeros(0))}

    def renumber(self, events: ak.Array, first: int) -> ak.Array:
        """Number ``events`` from ``first`` (``eventNumber``, ``runNumber``), in place."""
        number = np.arange(first, first + len(events), dtype=np.uint64)
        events["eventNumber"] = number
        events["runNumber"] = (FIRST_RUN + (number - 1) // EVENTS_PER_RUN).astype(np.uint32)
        return events

    # ------------------------------------------------------------------------------------
    def generate(
        self, n_events: int, seed: SeedLike = None, splot: SPlotFit | None = None
    ) -> ak.Array:
        """Simulate ``n_events`` candidates.

        Parameters
        ----------
        n_events : int
            Number of candidates (0, or at least 100 without ``splot``: the mass fit needs
            them).
        seed : int, numpy.random.SeedSequence or None
            Seed; the same seed gives the same candidates. ``None`` draws fresh entropy.
        splot : SPlotFit, optional
            A mass fit to compute the sWeights with (that of a whole file); by default the
            masses of these candidates are fitted.

        Returns
        -------
        ak.Array
            Shape (n_events,): one record per candidate with the fields of :data:`BRANCHES`.

        Raises
        ------
        InputError
            A setting out of range, ``n_events`` not an integer >= 0, or too few candidates
            for the mass fit.
        """
        self._check()
        n = check_n_events(n_events)
        rng_mass, rng = _streams(seed)
        is_signal, mass = self._species_mass(rng_mass, n)
        if splot is None:
            sw = fit_splot(mass).sweights(mass) if n else np.zeros(0)
        else:
            sw = splot.sweights(mass)

        p, eta = self._kinematics(rng, is_signal)
        mu_tracks = rng.gamma(4.0, np.where(is_signal, 140.0, 175.0) / 4.0)
        n_tracks = np.clip(rng.poisson(mu_tracks), 5, 999).astype(np.int32)
        number = np.arange(1, n + 1, dtype=np.uint64)
        scalars: dict[str, np.ndarray] = {
            "runNumber": (FIRST_RUN + (number - 1) // EVENTS_PER_RUN).astype(np.uint32),
            "eventNumber": number,
            "nTracks": n_tracks,
            "Jpsi_M": mass,
            "sw": sw,
            "is_signal": is_signal.astype(np.int32),
        }
        u = rng.random((2, n))
        bkg_type = np.where(u < 0.65, PION, np.where(u < 0.85, KAON, MUON))
        for i, prefix in enumerate(OBJECTS):
            ptype = np.where(is_signal, MUON, bkg_type[i])
            pid = self._responses(rng, ptype, p[i], eta[i], n_tracks)
            scalars[f"{prefix}_P"] = p[i]
            scalars[f"{prefix}_PT"] = p[i] / np.cosh(eta[i])
            scalars[f"{prefix}_ETA"] = eta[i]
            scalars.update({f"{prefix}_{k}": v for k, v in pid.items()})
            sign = np.where(ptype == MUON, _MUON_SIGN[i], -_MUON_SIGN[i])
            scalars[f"{prefix}_TRUEID"] = (sign * _PDG[ptype]).astype(np.int32)
        return build_events(n, scalars, {})

    # ------------------------------------------------------------------------------------
    @staticmethod
    def _kinematics(rng: np.random.Generator, is_signal: np.ndarray) -> tuple[np.ndarray, ...]:
        """Momenta (MeV) and pseudorapidities of both tracks, each of shape (2, n)."""
        n = len(is_signal)
        ln_p0 = np.log(np.where(is_signal, 25.0, 14.0) * GEV)
        s = np.where(is_signal, 0.75, 0.80)
        eta0 = np.where(is_signal, 3.2, 3.4)
        p = np.empty((2, n))
        eta = np.empty((2, n))
        todo = np.arange(n)
        for _ in range(200):
            if not len(todo):
                break
            k = len(todo)
            xi = rng.standard_normal((3, k))
            zeta = rng.standard_normal((3, k))
            p[:, todo] = np.exp(ln_p0[todo] + s[todo] * np.sqrt(0.5) * (xi[0] + xi[1:]))
            eta[:, todo] = eta0[todo] + 0.55 * (np.sqrt(0.4) * zeta[0] + np.sqrt(0.6) * zeta[1:])
            sub_p, sub_eta = p[:, todo], eta[:, todo]
            pt = sub_p / np.cosh(sub_eta)
            bad = (
                (sub_p < 3.0 * GEV)
                | (sub_p > 500.0 * GEV)
                | (sub_eta < 1.9)
                | (sub_eta > 4.9)
                | (pt < 500.0)
            ).any(axis=0)
            todo = todo[bad]
        if len(todo):  # pragma: no cover - probability ~ 0.3^200
            p[:, todo] = 20.0 * GEV
            eta[:, todo] = 3.2
        return p, eta

    def _responses(
        self,
        rng: np.random.Generator,
        ptype: np.ndarray,
        p: np.ndarray,
        eta: np.ndarray,
        n_tracks: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """The five PID responses of one track per candidate (data/README.md, pid)."""
        n = len(p)
        res = float(self.resolution_scale)
        g = 1.0 / (1.0 + (p / (80.0 * GEV)) ** 1.5)
        th = _expit((p - 9.3 * GEV) / (1.5 * GEV))
        occ = 1.0 + n_tracks / 300.0
        r_eta = 1.0 + 0.15 * (eta - 3.2) ** 2
        chol = np.linalg.cholesky(_NOISE_CORRELATION)
        # Gaussian copula with Student-t marginals: correlated, long-tailed, each DLL's tail
        # independent of the others' given the correlation
        e = special.stdtrit(_NU, special.ndtr(chol @ rng.standard_normal((4, n))))
        mu, pi, k = ptype == MUON, ptype == PION, ptype == KAON

        m_k = np.select([mu, pi], [-6.0 * g, -9.0 * g], g * (27.0 * th - 9.0))
        w_k = np.select([mu, pi], [4.0, 5.0], 6.0)
        m_p = np.select([mu, pi], [-4.0 * g, -7.0 * g], g * (8.0 * th - 5.0))
        w_p = np.select([mu, pi], [5.0, 6.0], 6.0)
        m_e = np.select([mu, pi], [-4.5, -3.5], -5.0)
        w_e = np.select([mu, pi], [3.0, 3.5], 3.0)
        dif = rng.random(n) < np.minimum(0.3, 0.12 * (10.0 * GEV / p) ** 0.7) * np.where(k, 0.5, 1)
        m_mu = np.select(
            [mu, dif, pi],
            [10.0 + 2.0 * np.log(p / (20.0 * GEV)), np.full(n, 6.0), np.full(n, -5.0)],
            -6.0,
        )
        w_mu = 3.0
        pid_k = m_k + res * w_k * occ * r_eta * e[0]
        pid_p = m_p + res * w_p * occ * r_eta * e[1]
        pid_e = m_e + res * w_e * np.sqrt(occ) * e[2]
        pid_mu = m_mu + res * w_mu * np.sqrt(occ) * e[3]

        xi = rng.standard_normal(n)
        scale = float(self.sentinel_scale)
        no_rich = rng.random(n) < scale * (0.01 + 0.5 * _expit((p - 100.0 * GEV) / (15.0 * GEV)))
        no_muon = rng.random(n) < scale * (0.003 + 0.25 * np.exp(-(p - 3.0 * GEV) / (1.5 * GEV)))
        no_calo = rng.random(n) < 0.02 + 0.9 * _expit((eta - 4.5) / 0.08)
        prob_mu = np.where(
            no_muon,
            _expit(-2.0 + 0.8 * xi),
            _expit(0.4 * (pid_mu - 3.0) - 0.05 * pid_k + 0.5 * occ * xi),
        )
        out = {
            "PIDK": np.where(no_rich, SENTINEL, np.round(pid_k, 4)),
            "PIDp": np.where(no_rich, SENTINEL, np.round(pid_p, 4)),
            "PIDe": np.where(no_calo, 0.0, np.round(pid_e, 4)),
            "PIDmu": np.where(no_muon, SENTINEL, np.round(pid_mu, 4)),
            "ProbNNmu": np.round(prob_mu, 4),
        }
        # a rounded DLL is never exactly 0 by accident (the zeros mean "no information")
        out["PIDe"][~no_calo & (out["PIDe"] == 0.0)] = 1e-4
        return out


def write_signal_only(
    source: str | os.PathLike, output: str | os.PathLike, tree: str = "DecayTree"
) -> Path:
    """Write the truth-signal candidates (``is_signal == 1``) of a ``pid`` file, every branch
    kept: the "signal-only truth" that a training with sWeights is compared with.

    Parameters
    ----------
    source : path
        A file written by ``hepgen simulate --process pid``.
    output : path
        The new file (written atomically; must not be ``source``).
    tree : str
        The tree name.

    Returns
    -------
    Path
        ``output``.
    """
    from hepgen.io.reader import read_events
    from hepgen.io.writer import write_events

    events = read_events(source, None, tree=tree, nonfinite="keep")
    keep = np.asarray(events["is_signal"]) == 1
    return write_events(output, events[keep], tree=tree, protect=[source])
