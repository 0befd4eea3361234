"""Reference "full simulation" of AK4 jets: generator-level jets and their detector response.

The ``jets`` process writes NanoAOD-style branches (``GenJet_*``, ``Jet_*``, event numbers), so
every hepgen configuration written for it also runs on real CMS NanoAOD. The model is
parametric and fast, but its response has what makes learning ``p(reco | gen)`` non-trivial:
flavour-, pt- and eta-dependent scale and resolution (the CMS jet-energy-resolution form),
Crystal-Ball tails, semileptonic b/c losses, a correlated mass response, a bounded b-tag
discriminant, integer constituent counts, an efficiency turn-on, acceptance holes and
pile-up jets. Energies, momenta and masses in GeV, angles in radians. Every formula, branch
and setting is documented in the project's ``data/README.md`` (process ``jets``).
"""

from __future__ import annotations

import awkward as ak
import numpy as np

from hepgen.sim._common import (
    SeedLike,
    Simulation,
    build_events,
    check_n_events,
    crystal_ball,
    draw_beta_mixture,
    ordered_by,
    power_law,
    soft_cap,
    wrap_phi,
)

__all__ = ["BRANCHES", "JetSimulation"]

#: Branch name -> numpy dtype of every field returned by :meth:`JetSimulation.generate`.
BRANCHES: dict[str, np.dtype] = {
    "run": np.dtype(np.uint32),
    "luminosityBlock": np.dtype(np.uint32),
    "event": np.dtype(np.uint64),
    "genWeight": np.dtype(np.float32),
    "GenJet_pt": np.dtype(np.float32),
    "GenJet_eta": np.dtype(np.float32),
    "GenJet_phi": np.dtype(np.float32),
    "GenJet_mass": np.dtype(np.float32),
    "GenJet_hadronFlavour": np.dtype(np.uint8),
    "GenJet_partonFlavour": np.dtype(np.int32),
    "Jet_pt": np.dtype(np.float32),
    "Jet_eta": np.dtype(np.float32),
    "Jet_phi": np.dtype(np.float32),
    "Jet_mass": np.dtype(np.float32),
    "Jet_btagDeepFlavB": np.dtype(np.float32),
    "Jet_nConstituents": np.dtype(np.uint8),
    "Jet_hadronFlavour": np.dtype(np.int32),
    "Jet_genJetIdx": np.dtype(np.int32),
}

#: Events per luminosity block.
EVENTS_PER_LUMI = 1000

BEAM_ENERGY = 6500.0  # GeV

# |eta| region edges of the resolution table and its parameters (data/README.md, jets)
ETA_EDGES = np.array([1.3, 2.5, 3.0])
JER_N = np.array([3.0, 3.5, 5.0, 5.0])
JER_S = np.array([1.00, 1.10, 1.20, 1.30])
JER_C = np.array([0.040, 0.045, 0.060, 0.090])
SCALE_ETA = np.array([0.0, 0.010, 0.020, -0.015])
ANGLE_K = np.array([1.0, 1.0, 1.3, 2.0])

# response classes
LIGHT, GLUON, CHARM, BOTTOM = 0, 1, 2, 3
SCALE_CLASS = np.array([0.010, -0.025, -0.010, -0.020])
RESOLUTION_CLASS = np.array([1.00, 1.05, 1.05, 1.10])

CB_TAILS = (1.8, 5.0, 2.2, 8.0)  # alpha_low, n_low, alpha_high, n_high
TRACKER_ETA = 2.5


def _efficiency(pt: np.ndarray, abseta: np.ndarray) -> np.ndarray:
    """Reconstruction efficiency of a gen jet, shape of ``pt`` (data/README.md, jets)."""
    plateau = np.where(abseta < TRACKER_ETA, 0.99, np.where(abseta < 3.0, 0.97, 0.95))
    plateau = plateau - 0.05 * np.exp(-0.5 * ((abseta - 1.45) / 0.07) ** 2)
    plateau = plateau - 0.06 * np.exp(-0.5 * ((abseta - 3.0) / 0.08) ** 2)
    p50 = np.where(abseta < 3.0, 20.0, 24.0)
    return plateau / (1.0 + np.exp(-(pt - p50) / 5.0))


def _mean_constituents(pt: np.ndarray) -> np.ndarray:
    return 4.0 + 4.5 * np.log(np.maximum(pt, 5.0) / 5.0)


def _draw_constituents(rng: np.random.Generator, mean: np.ndarray) -> np.ndarray:
    shape = 25.0
    lam = rng.gamma(shape, mean / shape)
    return np.clip(rng.poisson(lam), 1, 255).astype(np.uint8)


def _response_class(hadron: np.ndarray, parton: np.ndarray) -> np.ndarray:
    """Response class of every jet: BOTTOM, CHARM, GLUON or LIGHT (hadron, then parton
    flavour)."""
    return np.where(
        hadron == 5, BOTTOM, np.where(hadron == 4, CHARM, np.where(parton == 21, GLUON, LIGHT))
    )


def _smear_direction(
    rng: np.random.Generator, gen: dict[str, np.ndarray], region: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Reco ``eta`` and ``phi`` of every gen jet: Gaussian smearing, coarser forward."""
    pt = gen["pt"]
    sigma_eta = ANGLE_K[region] * np.sqrt(0.003**2 + (0.8 / pt) ** 2)
    eta = gen["eta"] + sigma_eta * rng.standard_normal(len(pt))
    phi = wrap_phi(gen["phi"] + 1.2 * sigma_eta * rng.standard_normal(len(pt)))
    return eta, phi


def _merge_jets(
    n: int, matched: dict[str, np.ndarray], fakes: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Matched and fake reco jets in one collection, ordered by reco pt (descending) within
    each of the ``n`` events: ``{"counts": (n,), "cols": Jet_* branch -> flat array}``."""
    evt = np.concatenate([matched["evt"], fakes["evt"]])
    pt = np.concatenate([matched["pt"], fakes["pt"]])
    order = ordered_by(evt, pt)

    def column(key: str) -> np.ndarray:
        return np.concatenate([matched[key], fakes[key]])[order]

    cols = {
        "Jet_pt": pt[order].astype(np.float32),
        "Jet_eta": column("eta").astype(np.float32),
        "Jet_phi": column("phi").astype(np.float32),
        "Jet_mass": column("mass").astype(np.float32),
        "Jet_btagDeepFlavB": column("btag").astype(np.float32),
        "Jet_nConstituents": column("n_const"),
        "Jet_hadronFlavour": column("hadron"),
        "Jet_genJetIdx": column("gen_idx"),
    }
    return {"counts": np.bincount(evt, minlength=n), "cols": cols}


class JetSimulation(Simulation):
    """Parametric simulation of generator jets and their CMS-like reconstruction.

    The constructor only stores the settings; :meth:`generate` draws events. The physics
    model (every formula) is documented in the project's ``data/README.md``.

    Parameters
    ----------
    pt_min, pt_max : float
        Range of generator-jet pt in GeV (defaults 20, 1000).
    pt_index : float
        Power of the falling leading-jet spectrum ``pt^-pt_index`` (default 2.5).
    extra_jets : float
        Mean number of jets beyond the leading two at ``pt1 = pt_min`` (default 1).
    eta_max : float
        Generator-jet acceptance ``|eta| < eta_max`` (default 5).
    b_fraction, c_fraction : float
        Fractions of generator jets with hadron flavour 5 and 4 (defaults 0.06, 0.08).
    pileup_jets : float
        Mean number of unmatched pile-up / fake reco jets per event (default 1).
    reco_pt_min : float
        Reco-jet pt threshold in GeV (default 15, as in NanoAOD).
    reco_eta_max : float
        Reco-jet acceptance ``|eta| < reco_eta_max`` (default 4.7).
    resolution_scale : float
        Multiplies every relative pt resolution (default 1).
    response_scale : float
        Multiplies every pt response, i.e. a jet-energy-scale shift (default 1).
    semileptonic_b, semileptonic_c : float
        Fractions of b and c jets that lose pt to a neutrino (defaults 0.20, 0.10).

    References
    ----------
    .. [1] CMS Collaboration, "Jet energy scale and resolution in the CMS experiment in pp
       collisions at 8 TeV", JINST 12 (2017) P02014, arXiv:1607.03663.
    .. [2] CMS Collaboration, "Identification of heavy-flavour jets with the CMS detector
       in pp collisions at 13 TeV", JINST 13 (2018) P05011, arXiv:1712.07158.
    .. [3] CMS Collaboration, "Performance of quark/gluon discrimination in 8 TeV pp data",
       CMS-PAS-JME-13-002.

    Examples
    --------
    >>> from hepgen.sim import JetSimulation
    >>> events = JetSimulation(pileup_jets=0.5).generate(1000, seed=1)
    >>> len(events)
    1000
    >>> bool(ak.all(events.GenJet_pt >= 20.0))
    True
    >>> str(events.Jet_btagDeepFlavB.type.content)
    'var * float32'
    """

    process = "jets"

    def __init__(
        self,
        pt_min: float = 20.0,
        pt_max: float = 1000.0,
        pt_index: float = 2.5,
        extra_jets: float = 1.0,
        eta_max: float = 5.0,
        b_fraction: float = 0.06,
        c_fraction: float = 0.08,
        pileup_jets: float = 1.0,
        reco_pt_min: float = 15.0,
        reco_eta_max: float = 4.7,
        resolution_scale: float = 1.0,
        response_scale: float = 1.0,
        semileptonic_b: float = 0.20,
        semileptonic_c: float = 0.10,
    ) -> None:
        self.pt_min = pt_min
        self.pt_max = pt_max
        self.pt_index = pt_index
        self.extra_jets = extra_jets
        self.eta_max = eta_max
        self.b_fraction = b_fraction
        self.c_fraction = c_fraction
        self.pileup_jets = pileup_jets
        self.reco_pt_min = reco_pt_min
        self.reco_eta_max = reco_eta_max
        self.resolution_scale = resolution_scale
        self.response_scale = response_scale
        self.semileptonic_b = semileptonic_b
        self.semileptonic_c = semileptonic_c

    def _check(self) -> None:
        pt_min = self._require_number("pt_min", 0.0, low_open=True)
        pt_max = self._require_number("pt_max", pt_min)
        self._require(
            pt_max <= BEAM_ENERGY, "pt_max", f"at most the beam energy {BEAM_ENERGY:g} GeV"
        )
        self._require_number("pt_index", 0.0, low_open=True)
        self._require_number("extra_jets", 0.0, 50.0)
        self._require_number("eta_max", 0.0, 10.0, low_open=True)
        fb = self._require_number("b_fraction", 0.0, 1.0)
        fc = self._require_number("c_fraction", 0.0, 1.0)
        self._require(fb + fc <= 1.0, "c_fraction", f"b_fraction + c_fraction <= 1 (b is {fb})")
        self._require_number("pileup_jets", 0.0, 50.0)
        self._require_number("reco_pt_min", 0.0)
        self._require_number("reco_eta_max", 0.0, low_open=True)
        self._require_number("resolution_scale", 0.0)
        self._require_number("response_scale", 0.0, low_open=True)
        self._require_number("semileptonic_b", 0.0, 1.0)
        self._require_number("semileptonic_c", 0.0, 1.0)

    # ------------------------------------------------------------------------------------
    def generate(self, n_events: int, seed: SeedLike = None) -> ak.Array:
        """Simulate ``n_events`` events.

        Parameters
        ----------
        n_events : int
            Number of events (>= 0).
        seed : int, numpy.random.SeedSequence or None
            Seed of the random generator; the same seed gives the same events. ``None``
            draws fresh entropy.

        Returns
        -------
        ak.Array
            Shape (n_events,): one record per event with the fields of :data:`BRANCHES`;
            ``GenJet_*`` and ``Jet_*`` are jagged (``var``) lists sharing a counter per
            collection.

        Raises
        ------
        InputError
            If a setting is out of range or ``n_events`` is not an integer >= 0.
        """
        self._check()
        n = check_n_events(n_events)
        rng = np.random.default_rng(seed)
        gen = self._generate_gen(rng, n)
        reco = self._reconstruct(rng, n, gen)

        event = np.arange(1, n + 1, dtype=np.uint64)
        scalars = {
            "run": np.ones(n, dtype=np.uint32),
            "luminosityBlock": (1 + (event - 1) // EVENTS_PER_LUMI).astype(np.uint32),
            "event": event,
            "genWeight": np.ones(n, dtype=np.float32),
        }
        gen_cols = {
            "GenJet_pt": gen["pt"].astype(np.float32),
            "GenJet_eta": gen["eta"].astype(np.float32),
            "GenJet_phi": gen["phi"].astype(np.float32),
            "GenJet_mass": gen["mass"].astype(np.float32),
            "GenJet_hadronFlavour": gen["hadron"].astype(np.uint8),
            "GenJet_partonFlavour": gen["parton"].astype(np.int32),
        }
        return build_events(
            n, scalars, {"GenJet": (gen["counts"], gen_cols), "Jet": (reco["counts"], reco["cols"])}
        )

    # ------------------------------------------------------------------------------------
    def _generate_gen(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        pt_min, pt_max = float(self.pt_min), float(self.pt_max)
        pt1 = power_law(rng, float(self.pt_index), pt_min, pt_max, n)
        pt2 = pt_min + (pt1 - pt_min) * rng.beta(5.0, 1.3, n)
        lam = float(self.extra_jets) * (1.0 + 0.4 * np.log(pt1 / pt_min))
        n_extra = rng.poisson(lam)
        evt_extra = np.repeat(np.arange(n), n_extra)
        m = len(evt_extra)
        pt3 = power_law(rng, 3.0, pt_min, pt2[evt_extra], m)

        y_boost = rng.normal(0.0, 1.0, n)
        y_star = rng.normal(0.0, 0.9, n)
        phi1 = rng.uniform(-np.pi, np.pi, n)
        phi2 = phi1 + np.pi + rng.normal(0.0, 0.25, n)

        evt = np.concatenate([np.arange(n), np.arange(n), evt_extra])
        pt = np.concatenate([pt1, pt2, pt3])
        eta = np.concatenate([y_boost + y_star, y_boost - y_star, rng.normal(0.0, 2.0, m)])
        phi = wrap_phi(np.concatenate([phi1, phi2, rng.uniform(-np.pi, np.pi, m)]))
        eta = self._fix_eta(rng, pt, eta)

        order = ordered_by(evt, pt)
        evt, pt, eta, phi = evt[order], pt[order], eta[order], phi[order]
        counts = np.bincount(evt, minlength=n)
        hadron, parton = self._flavour(rng, pt)
        mass = self._gen_mass(rng, pt, hadron, parton)
        return {
            "evt": evt,
            "counts": counts,
            "pt": pt,
            "eta": eta,
            "phi": phi,
            "mass": mass,
            "hadron": hadron,
            "parton": parton,
        }

    def _fix_eta(self, rng: np.random.Generator, pt: np.ndarray, eta: np.ndarray) -> np.ndarray:
        eta_max = float(self.eta_max)
        bad = np.flatnonzero((np.abs(eta) >= eta_max) | (pt * np.cosh(eta) > BEAM_ENERGY))
        for _ in range(50):
            if not len(bad):
                return eta
            eta[bad] = rng.normal(0.0, 1.35, len(bad))
            sub = (np.abs(eta[bad]) >= eta_max) | (pt[bad] * np.cosh(eta[bad]) > BEAM_ENERGY)
            bad = bad[sub]
        # pathological settings (tiny eta_max): fall back to the allowed band
        limit = np.minimum(eta_max, np.arccosh(np.maximum(BEAM_ENERGY / pt[bad], 1.0)))
        eta[bad] = rng.uniform(-1.0, 1.0, len(bad)) * 0.999 * limit
        return eta

    def _flavour(self, rng: np.random.Generator, pt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(pt)
        fb, fc = float(self.b_fraction), float(self.c_fraction)
        u = rng.random(n)
        v = rng.random(n)
        sign = np.where(rng.random(n) < 0.5, 1, -1)
        hadron = np.where(u < fb, 5, np.where(u < fb + fc, 4, 0)).astype(np.uint8)
        # light jets: gluon fraction falling with pt; quarks d/u/s
        g_frac = np.clip(0.72 - 0.10 * np.log(pt / 20.0), 0.2, 0.8)
        w = rng.random(n)
        light_q = np.where(w < 0.35, 1, np.where(w < 0.80, 2, 3))
        valence = light_q <= 2
        light_sign = np.where(valence, np.where(rng.random(n) < 0.6, 1, -1), sign)
        light = np.where(v < g_frac, 21, light_q * light_sign)
        bottom = np.where(v < 0.15, 21, 5 * sign)
        charm = np.where(v < 0.20, 21, 4 * sign)
        parton = np.where(hadron == 5, bottom, np.where(hadron == 4, charm, light))
        return hadron, parton.astype(np.int32)

    @staticmethod
    def _gen_mass(
        rng: np.random.Generator, pt: np.ndarray, hadron: np.ndarray, parton: np.ndarray
    ) -> np.ndarray:
        r0 = np.where(parton == 21, 0.12, 0.085)
        r = r0 * (pt / 50.0) ** -0.1 * np.exp(0.4 * rng.standard_normal(len(pt)))
        mass = pt * soft_cap(r, 0.4)
        m_h = np.where(hadron == 5, 4.8, np.where(hadron == 4, 1.5, 0.0))
        return np.sqrt(mass * mass + m_h * m_h)

    # ------------------------------------------------------------------------------------
    def _reconstruct(
        self, rng: np.random.Generator, n: int, gen: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Reco jets of ``n`` events: ``{"counts": (n,), "cols": Jet_* branch -> flat array}``.

        The steps, in the order they draw from ``rng``: response and smearing of every gen
        jet, the efficiency and acceptance selection, the properties of the kept jets, the
        pile-up jets; then both sets are merged and ordered by reco pt within each event.
        """
        region = np.searchsorted(ETA_EDGES, np.abs(gen["eta"]), side="right")
        cls = _response_class(gen["hadron"], gen["parton"])
        mu, response = self._pt_response(rng, gen, region, cls)
        eta_reco, phi_reco = _smear_direction(rng, gen, region)
        reco = {
            "pt": gen["pt"] * response,
            "eta": eta_reco,
            "phi": phi_reco,
            "response": response,
            "mu": mu,
            "cls": cls,
        }
        sel = self._select(rng, gen, reco)
        matched = self._matched_jets(rng, n, gen, reco, sel)
        fakes = self._fake_jets(rng, n)
        return _merge_jets(n, matched, fakes)

    def _pt_response(
        self,
        rng: np.random.Generator,
        gen: dict[str, np.ndarray],
        region: np.ndarray,
        cls: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Mean response ``mu`` and pt response ``R`` of every gen jet (Crystal-Ball smearing
        and the semileptonic neutrino loss), both of shape (n_gen,)."""
        pt, hadron = gen["pt"], gen["hadron"]
        ngen = len(pt)
        mu = float(self.response_scale) * (
            1.0 + SCALE_CLASS[cls] * (pt / 30.0) ** -0.3 + SCALE_ETA[region]
        )
        sigma = (
            float(self.resolution_scale)
            * RESOLUTION_CLASS[cls]
            * np.sqrt(JER_N[region] ** 2 / pt**2 + JER_S[region] ** 2 / pt + JER_C[region] ** 2)
        )
        z = crystal_ball(rng, ngen, *CB_TAILS)
        u_nu = rng.random(ngen)
        semilep = ((hadron == 5) & (u_nu < float(self.semileptonic_b))) | (
            (hadron == 4) & (u_nu < float(self.semileptonic_c))
        )
        f_nu = np.zeros(ngen)
        idx = np.flatnonzero(semilep)
        f_nu[idx] = rng.beta(1.5, np.where(hadron[idx] == 5, 6.0, 8.0))
        response = np.maximum(mu * (1.0 + sigma * z) * (1.0 - f_nu), 0.01)
        return mu, response

    def _select(
        self, rng: np.random.Generator, gen: dict[str, np.ndarray], reco: dict[str, np.ndarray]
    ) -> np.ndarray:
        """Indices of the gen jets that are reconstructed (efficiency, pt threshold and
        acceptance), shape (n_kept,)."""
        eff = _efficiency(gen["pt"], np.abs(gen["eta"]))
        kept = (
            (rng.random(len(eff)) < eff)
            & (reco["pt"] > float(self.reco_pt_min))
            & (np.abs(reco["eta"]) < float(self.reco_eta_max))
        )
        return np.flatnonzero(kept)

    def _matched_jets(
        self,
        rng: np.random.Generator,
        n: int,
        gen: dict[str, np.ndarray],
        reco: dict[str, np.ndarray],
        sel: np.ndarray,
    ) -> dict[str, np.ndarray]:
        """The reco jets of the gen jets ``sel``: kinematics, mass, b-tag, constituents, hadron
        flavour and the index of the gen jet in its event (:func:`_merge_jets`'s keys)."""
        parton, hadron = gen["parton"][sel], gen["hadron"][sel]
        pt_g = gen["pt"][sel]
        response = reco["response"][sel]
        s_m = 0.06 + 1.2 / np.sqrt(pt_g)
        mass = gen["mass"][sel] * response * np.exp(s_m * rng.standard_normal(len(sel)))
        btag = self._btag(rng, pt_g, np.abs(reco["eta"][sel]), reco["cls"][sel], parton)
        q = np.where(parton == 21, 1.5, 1.0)
        h = np.where(hadron == 5, 1.12, np.where(hadron == 4, 1.05, 1.0))
        r = response / reco["mu"][sel]
        n_const = _draw_constituents(
            rng, q * h * _mean_constituents(pt_g) * np.sqrt(np.maximum(r, 0.05)) + 1.5
        )
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(gen["counts"], out=offsets[1:])
        evt = gen["evt"][sel]
        return {
            "evt": evt,
            "pt": reco["pt"][sel],
            "eta": reco["eta"][sel],
            "phi": reco["phi"][sel],
            "mass": mass,
            "btag": btag,
            "n_const": n_const,
            "hadron": hadron.astype(np.int32),
            "gen_idx": (sel - offsets[evt]).astype(np.int32),
        }

    def _fake_jets(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        """Unmatched pile-up / fake reco jets of ``n`` events (:func:`_merge_jets`'s keys)."""
        n_fake = rng.poisson(float(self.pileup_jets), n)
        evt = np.repeat(np.arange(n), n_fake)
        nf = len(evt)
        reco_min = max(float(self.reco_pt_min), 1.0)
        pt = power_law(rng, 5.0, reco_min, max(500.0, 2.0 * reco_min), nf)
        eta_max = float(self.reco_eta_max)
        eta = rng.uniform(-eta_max, eta_max, nf)
        phi = rng.uniform(-np.pi, np.pi, nf)
        mass = pt * soft_cap(0.15 * np.exp(0.45 * rng.standard_normal(nf)), 0.4)
        btag = draw_beta_mixture(rng, np.full(nf, 0.03), np.full(nf, 0.003))
        n_const = _draw_constituents(rng, 0.6 * _mean_constituents(pt) + 1.5)
        return {
            "evt": evt,
            "pt": pt,
            "eta": eta,
            "phi": phi,
            "mass": mass,
            "btag": btag,
            "n_const": n_const,
            "hadron": np.zeros(nf, np.int32),
            "gen_idx": np.full(nf, -1, np.int32),
        }

    @staticmethod
    def _btag(
        rng: np.random.Generator,
        pt: np.ndarray,
        abseta: np.ndarray,
        cls: np.ndarray,
        parton: np.ndarray,
    ) -> np.ndarray:
        d_pt = (1.0 - 0.35 * np.exp(-(pt - 20.0) / 30.0)) / np.sqrt(1.0 + (pt / 600.0) ** 2)
        t_eta = 1.0 - 0.12 * np.clip(abseta - 1.5, 0.0, 1.0)
        mistag = 1.0 + pt / 250.0
        w_b = 0.80 * d_pt * t_eta * np.where(parton == 21, 0.7, 1.0)
        w_high = np.select(
            [cls == BOTTOM, cls == CHARM, cls == GLUON],
            [w_b, 0.15 * d_pt * t_eta, 0.010 * mistag],
            0.006 * mistag,
        )
        w_mid = np.select(
            [cls == BOTTOM, cls == CHARM, cls == GLUON],
            [0.12 + 0.4 * (0.80 - w_b), np.full_like(pt, 0.35), np.full_like(pt, 0.035)],
            0.02,
        )
        outside = abseta >= TRACKER_ETA
        w_high = np.where(outside, np.where(cls == BOTTOM, 0.025, 0.005), w_high)
        w_mid = np.where(outside, 0.06, w_mid)
        return draw_beta_mixture(rng, w_mid, w_high)
