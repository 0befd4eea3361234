r"""Reference "full simulation" of AK4 jets: generator-level jets and their detector response.

The ``jets`` process writes NanoAOD-style branches (``GenJet_*``, ``Jet_*``, event numbers), so
every hepgen configuration written for it also runs on real CMS NanoAOD. The model is
parametric and fast, but its detector response has the features that make learning
``p(reco | gen)`` non-trivial: flavour-, pt- and eta-dependent scale and resolution,
non-Gaussian tails, correlated mass response, a bounded tagger output with flavour-dependent
shape, integer constituent counts, an efficiency turn-on, acceptance holes and fake jets.
All energies, momenta and masses are in GeV, angles in radians.

Generator level (one event)
---------------------------
* Leading jet ``pt1 ~ pt^-pt_index`` on ``[pt_min, pt_max]`` (inverse-CDF power law).
* Second jet balances it: ``pt2 = pt_min + (pt1 - pt_min) z`` with ``z ~ Beta(5, 1.3)``.
* ``n_extra ~ Poisson(extra_jets (1 + 0.4 ln(pt1/pt_min)))`` further jets, each with
  ``pt ~ pt^-3`` on ``[pt_min, pt2]`` (harder events radiate more).
* Rapidities: the leading pair ``eta_{1,2} = y_b ± y*`` with ``y_b ~ N(0, 1)`` and
  ``y* ~ N(0, 0.9)``; extra jets ``eta ~ N(0, 2)``. A jet outside ``|eta| < eta_max`` or with
  energy ``pt cosh(eta) > 6500`` (the beam energy) is redrawn from ``N(0, 1.35)``.
* Azimuth: ``phi1`` uniform, ``phi2 = phi1 + pi + N(0, 0.25)``, extra jets uniform; all
  wrapped into ``[-pi, pi)``.
* Flavour: ``GenJet_hadronFlavour`` is 5 with probability ``b_fraction``, 4 with
  ``c_fraction``, else 0. Heavy-flavour jets come from gluon splitting
  (``partonFlavour = 21``) with probability 0.15 (b) / 0.20 (c), otherwise from a heavy
  quark (``partonFlavour = ±5 / ±4``, either sign). A light jet is a gluon with probability
  ``g(pt) = clip(0.72 - 0.10 ln(pt / 20 GeV), 0.2, 0.8)`` (0.72 at 20 GeV, 0.33 at 1 TeV), else
  a d / u / s quark (0.35 / 0.45 / 0.20; positive sign with probability 0.6 for u, d
  (valence) and 0.5 for s). So ``|partonFlavour| = 5 ⇒ hadronFlavour = 5``,
  ``|partonFlavour| = 4 ⇒ 4``, ``|partonFlavour| ≤ 3 ⇒ 0``.
* Mass: ``m = pt cap(r)`` with ``ln r ~ N(ln r0 - 0.1 ln(pt/50 GeV), 0.4)``, ``r0 = 0.12``
  for gluon-initiated and 0.085 for quark-initiated jets, ``cap(r) = r/(1+(r/0.4)^4)^{1/4}``
  a soft bound at ``m/pt = 0.4``; heavy flavour adds the hadron mass in quadrature
  (``m -> sqrt(m² + m_h²)``, ``m_h = 4.8`` GeV for b, 1.5 GeV for c).

The response class of a jet is b (hadron flavour 5), c (4), gluon (flavour 0, parton 21) or
light quark (flavour 0, parton 1..3).

Detector response of a generator jet
------------------------------------
* pt response ``R = pt_reco / pt_gen``::

      R = response_scale · mu · (1 + sigma · z) · (1 - f_nu)
      mu    = 1 + d_class · (pt/30 GeV)^-0.3 + d_eta
      sigma = resolution_scale · k_class · sqrt(N²/pt² + S²/pt + C²)

  with the CMS jet-energy-resolution parametrisation (JINST 12 (2017) P02014) per |eta|
  region (GeV units for N and S):

  =============  =====  =====  ======  ======
  |eta|          N      S      C       d_eta
  =============  =====  =====  ======  ======
  [0, 1.3)       3.0    1.00   0.040   0.000
  [1.3, 2.5)     3.5    1.10   0.045   +0.010
  [2.5, 3.0)     5.0    1.20   0.060   +0.020
  [3.0, ...)     5.0    1.30   0.090   -0.015
  =============  =====  =====  ======  ======

  and per class ``d_class`` = +0.010 (light quark), -0.025 (gluon), -0.010 (c), -0.020 (b);
  ``k_class`` = 1.00, 1.05, 1.05, 1.10. ``z`` follows a double-sided Crystal Ball shape
  (Gaussian core, power-law tails beyond -1.8 (n = 5) and +2.2 (n = 8) standard deviations:
  about 5.4 % / 1.8 % of jets in the low / high tail). Semileptonic heavy-flavour decays
  make the neutrino escape: a fraction ``semileptonic_b`` of b jets (``semileptonic_c`` of c
  jets) loses ``f_nu ~ Beta(1.5, 6)`` (``Beta(1.5, 8)`` for c), mean 20 % (16 %) of its pt;
  otherwise ``f_nu = 0``. ``R`` is bounded below by 0.01.
* Mass: ``m_reco = m_gen · R · exp(s_m ξ)``, ``ξ ~ N(0, 1)``,
  ``s_m = 0.06 + 1.2 / sqrt(pt_gen/GeV)``: the mass follows the pt response (including the
  neutrino loss) with extra, pt-dependent smearing.
* Direction: ``eta`` and ``phi`` get Gaussian smearing
  ``sigma_eta = k_eta sqrt(0.003² + (0.8 GeV / pt)²)``, ``sigma_phi = 1.2 sigma_eta``,
  ``k_eta`` = 1, 1, 1.3, 2 in the four regions (coarser forward calorimetry).
* Efficiency: a jet is reconstructed with probability
  ``eps(pt, eta) = plateau(|eta|) / (1 + exp(-(pt_gen - p50)/5 GeV))``, ``p50 = 20 GeV``
  (24 GeV for |eta| >= 3), ``plateau = 0.99`` in the tracker (|eta| < 2.5), 0.97 up to 3.0,
  0.95 beyond, minus Gaussian dips of depth 0.05 at the barrel-endcap transition
  (|eta| = 1.45, width 0.07) and 0.06 at the endcap-forward transition (|eta| = 3.0,
  width 0.08), and it must pass ``pt_reco > reco_pt_min`` (15 GeV as in NanoAOD) and
  ``|eta_reco| < reco_eta_max`` (4.7).
* b-tag discriminant ``Jet_btagDeepFlavB`` in [0, 1]: a mixture of ``Beta(0.4, 12)``
  (peaks at 0), ``Beta(2, 2.5)`` and ``Beta(9, 0.45)`` (peaks at 1) with weights
  ``(1 - w_mid - w_high, w_mid, w_high)``::

      b:             w_high = 0.80 D(pt) T(eta) (x 0.7 from gluon splitting),
                     w_mid = 0.12 + 0.4 (0.80 - w_high)
      c:             w_high = 0.15 D(pt) T(eta),  w_mid = 0.35
      light quark:   w_high = 0.006 (1 + pt/250 GeV),  w_mid = 0.02
      gluon:         w_high = 0.010 (1 + pt/250 GeV),  w_mid = 0.035
      D(pt) = (1 - 0.35 exp(-(pt - 20 GeV)/30 GeV)) / sqrt(1 + (pt/600 GeV)²)
      T(eta) = 1 - 0.12 clip(|eta| - 1.5, 0, 1)

  with the generator pt and the reconstructed |eta|.
  Outside the tracker (|eta| >= 2.5) there are no tracks: ``w_high = 0.005`` (0.025 for b),
  ``w_mid = 0.06`` for every flavour.
* Constituents: ``Jet_nConstituents ~ Poisson(Gamma(25, mu_n/25))`` (negative binomial,
  variance ``mu_n + mu_n²/25``), ``mu_n = q · h · (4 + 4.5 ln(pt_gen/5 GeV)) · sqrt(R/mu) + 1.5``
  with ``q = 1.5`` for gluon-initiated and 1 for quark-initiated jets, ``h = 1.12`` (b),
  1.05 (c), 1 (light), bounded to [1, 255].

Pile-up and fake jets
---------------------
``n_fake ~ Poisson(pileup_jets)`` unmatched reco jets per event with
``pt ~ pt^-5`` on ``[reco_pt_min, 500 GeV]``, ``eta`` uniform in ``|eta| < reco_eta_max``,
``phi`` uniform, ``m = pt cap(r)`` with ``ln r ~ N(ln 0.15, 0.45)``, b-tag weights
``w_high = 0.003, w_mid = 0.03``, ``mu_n = 0.6 (4 + 4.5 ln(pt/5 GeV)) + 1.5``,
``Jet_genJetIdx = -1`` and ``Jet_hadronFlavour = 0``.

Output
------
Gen jets are sorted by pt and reco jets by reco pt, both descending, within each event;
``Jet_genJetIdx`` is the index of the matched jet in the event's ``GenJet`` list (each gen
jet is matched at most once), -1 for fakes. Branches and dtypes are listed in
:data:`BRANCHES`; ``event`` counts from 1, ``run = 1``, ``luminosityBlock`` advances every
1000 events, ``genWeight = 1``.
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

# |eta| region edges of the resolution table and its parameters (see module docstring)
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
    """Reconstruction efficiency of a gen jet, shape of ``pt`` (see module docstring)."""
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


class JetSimulation(Simulation):
    """Parametric simulation of generator jets and their CMS-like reconstruction.

    The constructor only stores the settings; :meth:`generate` draws events. The physics
    model (all formulas) is described in :mod:`hepgen.sim.jets`.

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
        pt, eta, phi = gen["pt"], gen["eta"], gen["phi"]
        hadron, parton = gen["hadron"], gen["parton"]
        ngen = len(pt)
        abseta = np.abs(eta)
        region = np.searchsorted(ETA_EDGES, abseta, side="right")
        cls = np.where(
            hadron == 5, BOTTOM, np.where(hadron == 4, CHARM, np.where(parton == 21, GLUON, LIGHT))
        )

        # pt response
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
        pt_reco = pt * response

        k = ANGLE_K[region]
        sigma_eta = k * np.sqrt(0.003**2 + (0.8 / pt) ** 2)
        eta_reco = eta + sigma_eta * rng.standard_normal(ngen)
        phi_reco = wrap_phi(phi + 1.2 * sigma_eta * rng.standard_normal(ngen))

        eff = _efficiency(pt, abseta)
        kept = (
            (rng.random(ngen) < eff)
            & (pt_reco > float(self.reco_pt_min))
            & (np.abs(eta_reco) < float(self.reco_eta_max))
        )
        sel = np.flatnonzero(kept)

        # quantities needed only for the reconstructed jets
        pt_g, pt_r = pt[sel], pt_reco[sel]
        r_sel = response[sel] / mu[sel]
        s_m = 0.06 + 1.2 / np.sqrt(pt_g)
        mass_reco = gen["mass"][sel] * response[sel] * np.exp(s_m * rng.standard_normal(len(sel)))
        btag = self._btag(rng, pt_g, np.abs(eta_reco[sel]), cls[sel], parton[sel])
        q = np.where(parton[sel] == 21, 1.5, 1.0)
        h = np.where(hadron[sel] == 5, 1.12, np.where(hadron[sel] == 4, 1.05, 1.0))
        n_const = _draw_constituents(
            rng, q * h * _mean_constituents(pt_g) * np.sqrt(np.maximum(r_sel, 0.05)) + 1.5
        )
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(gen["counts"], out=offsets[1:])
        evt_m = gen["evt"][sel]
        gen_idx = (sel - offsets[evt_m]).astype(np.int32)

        # pile-up / fake jets
        n_fake = rng.poisson(float(self.pileup_jets), n)
        evt_f = np.repeat(np.arange(n), n_fake)
        nf = len(evt_f)
        reco_min = max(float(self.reco_pt_min), 1.0)
        pt_f = power_law(rng, 5.0, reco_min, max(500.0, 2.0 * reco_min), nf)
        eta_max_f = float(self.reco_eta_max)
        eta_f = rng.uniform(-eta_max_f, eta_max_f, nf)
        phi_f = rng.uniform(-np.pi, np.pi, nf)
        mass_f = pt_f * soft_cap(0.15 * np.exp(0.45 * rng.standard_normal(nf)), 0.4)
        btag_f = draw_beta_mixture(rng, np.full(nf, 0.03), np.full(nf, 0.003))
        n_const_f = _draw_constituents(rng, 0.6 * _mean_constituents(pt_f) + 1.5)

        evt_all = np.concatenate([evt_m, evt_f])
        pt_all = np.concatenate([pt_r, pt_f])
        order = ordered_by(evt_all, pt_all)
        cols = {
            "Jet_pt": pt_all[order].astype(np.float32),
            "Jet_eta": np.concatenate([eta_reco[sel], eta_f])[order].astype(np.float32),
            "Jet_phi": np.concatenate([phi_reco[sel], phi_f])[order].astype(np.float32),
            "Jet_mass": np.concatenate([mass_reco, mass_f])[order].astype(np.float32),
            "Jet_btagDeepFlavB": np.concatenate([btag, btag_f])[order].astype(np.float32),
            "Jet_nConstituents": np.concatenate([n_const, n_const_f])[order],
            "Jet_hadronFlavour": np.concatenate(
                [hadron[sel].astype(np.int32), np.zeros(nf, np.int32)]
            )[order],
            "Jet_genJetIdx": np.concatenate([gen_idx, np.full(nf, -1, np.int32)])[order],
        }
        return {"counts": np.bincount(evt_all, minlength=n), "cols": cols}

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
