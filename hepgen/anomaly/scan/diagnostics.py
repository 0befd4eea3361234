r"""What a window reports beside its significance: template fidelity, the ensemble's seed
spread, the sculpting check and the SR events' likelihood p-values.

* :func:`template_fidelity`: how well the background template matches background.  The
  out-of-fold AUC of the CATHODE scores of SR data against the template is free; with truth
  labels a dedicated classifier separates the template from the SR's *true background* events
  (:func:`~hepgen.anomaly.scan.fidelity.two_sample_auc`).  0.5 means indistinguishable; its
  standard error under the null is given beside it.
* :func:`seed_spread`: every member of the window's ensemble scored alone (each classifier
  member's own scores; each background flow's own share of the template with the ensemble's
  score), with the same selection and estimate as the ensemble: the spread of their
  significances is what one seed alone would have varied by.
* :func:`sculpting_check`: the resonance variable's spectrum of the (background) events of the
  window, SR and sidebands, after the tightest selection against the events it rejects
  (two-sample Kolmogorov-Smirnov test).  A classifier whose inputs correlate with ``m`` sculpts
  the spectrum (the concern of LaCATHODE): a bump-hunt fit of the selected spectrum is then
  biased.
* :func:`pvalue_histogram`: per-event likelihood p-values of the SR events under the background
  model (:func:`hepgen.anomaly.pvalues.likelihood_pvalues`): flat for background the model
  describes, piled up near 0 for events it cannot explain.

References
----------
A. Hallin et al., "Classifying anomalies through outer density estimation" (CATHODE),
Phys. Rev. D 106, 055006 (2022), arXiv:2109.00546 (ensembles).
A. Hallin et al., "Resonant anomaly detection without background sculpting" (LaCATHODE),
Phys. Rev. D 107, 114012 (2023), arXiv:2210.14924.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import stats

from hepgen.anomaly.density import DensityModel
from hepgen.anomaly.scan.background import Templates
from hepgen.anomaly.scan.events import WindowEvents
from hepgen.anomaly.scan.fidelity import null_auc_error, two_sample_auc
from hepgen.anomaly.scan.scores import WindowScores
from hepgen.anomaly.stats import roc_sic
from hepgen.settings.scan import ScanSettings, Window

__all__ = [
    "PVALUE_EVENTS",
    "SCULPTING_BINS",
    "pvalue_histogram",
    "sculpting_check",
    "seed_spread",
    "template_fidelity",
]

#: Bins of the spectra of the sculpting check (over the window with its sidebands).
SCULPTING_BINS = 20
#: SR events whose likelihood p-values are computed (a seeded random subset; all signal
#: events besides, with labels): the histogram needs no more, and each costs
#: ``pvalue_samples`` draws of the background model.
PVALUE_EVENTS = 1000


def template_fidelity(
    scores: WindowScores,
    templates: Templates,
    events: WindowEvents,
    labels_sr: np.ndarray | None,
    settings: ScanSettings,
    rng: np.random.Generator,
) -> dict[str, Any]:
    """AUCs of SR data vs template (the window's own out-of-fold scores) and, with labels,
    of a dedicated classifier of the template vs the SR's true background events.

    Parameters
    ----------
    scores : WindowScores
    templates : Templates
    events : WindowEvents
    labels_sr : np.ndarray of shape (n_sr,) or None
        Truth of the SR events (1 signal, 0 background).
    settings : ScanSettings
    rng : np.random.Generator
        Seeds the dedicated classifier.

    Returns
    -------
    dict
        ``data_template_auc`` and its null standard error, ``template_auc`` and its error
        (None without labels), ``n_template``, ``n_background``.
    """
    from sklearn.metrics import roc_auc_score

    s_d, s_t = scores.data, scores.template
    y = np.r_[np.ones(s_d.size), np.zeros(s_t.size)]
    out: dict[str, Any] = {
        "data_template_auc": float(roc_auc_score(y, np.r_[s_d, s_t])),
        "data_template_auc_error": null_auc_error(s_d.size, s_t.size),
        "template_auc": None,
        "template_auc_error": None,
        "n_template": int(s_t.size),
        "n_background": None,
    }
    if labels_sr is None or not (labels_sr == 0).any():
        return out
    feats = settings.feature_names

    def matrix(d: Mapping[str, np.ndarray], rows: Any = slice(None)) -> np.ndarray:
        return np.column_stack([np.asarray(d[n], dtype=np.float32)[rows] for n in feats])

    background = labels_sr == 0
    res = two_sample_auc(
        matrix(templates.signal_region), matrix(events.signal_region, background), settings, rng
    )
    out.update(
        template_auc=float(res["auc"]),
        template_auc_error=float(res["auc_error"]),
        n_background=int(background.sum()),
    )
    return out


def _summary(values: Sequence[float], key: str) -> dict[str, Any]:
    v = np.asarray([np.nan if x is None else x for x in values], dtype=float)
    ok = v[np.isfinite(v)]
    return {
        key: [None if not np.isfinite(x) else float(x) for x in v],
        f"{key}_mean": float(ok.mean()) if ok.size else None,
        f"{key}_std": float(ok.std(ddof=1)) if ok.size > 1 else None,
        f"{key}_min": float(ok.min()) if ok.size else None,
        f"{key}_max": float(ok.max()) if ok.size else None,
    }


def seed_spread(
    scores: WindowScores,
    templates: Templates,
    select: Any,
    labels_sr: np.ndarray | None,
    n_flows: int,
) -> dict[str, Any] | None:
    """Each ensemble member's significance at the ranking efficiency (and max SIC), alone.

    Parameters
    ----------
    scores : WindowScores
        The ensemble's scores; ``scores.members`` each classifier member's own.
    templates : Templates
        ``member`` / ``member_closure``: which background flow drew each template event.
    select : callable
        ``select(WindowScores) -> dict``: the window's selection at the ranking efficiency
        (threshold, counts, estimate, ``significance``).
    labels_sr : np.ndarray of shape (n_sr,) or None
        Truth of the SR events: each classifier member's max SIC.
    n_flows : int
        Background flows of the ensemble.

    Returns
    -------
    dict or None
        ``n_members``, ``members`` (names), ``significance`` per member with its mean, std, min
        and max, ``max_sic`` likewise (classifier members, with labels); None without an
        ensemble.
    """
    names: list[str] = []
    z: list[float | None] = []
    sic: list[float | None] = []
    has_labels = labels_sr is not None and (labels_sr == 1).any() and (labels_sr == 0).any()
    for k, member in enumerate(scores.members):
        names.append(f"classifier {k + 1}")
        z.append(select(member)["significance"])
        if has_labels:
            sic.append(roc_sic(member.data, (labels_sr == 1).astype(np.int8)).max_sic)
    if n_flows > 1:
        for j in range(n_flows):
            share = WindowScores(
                data=scores.data,
                template=scores.template[templates.member == j],
                sideband=scores.sideband,
                closure=scores.closure,
                sideband_template=scores.sideband_template[templates.member_closure == j],
            )
            names.append(f"flow {j + 1}")
            z.append(select(share)["significance"])
    if not names:
        return None
    out = {"n_members": len(names), "members": names, **_summary(z, "significance")}
    if sic:
        out.update(_summary(sic, "max_sic"))
    else:
        out.update(max_sic=None, max_sic_mean=None, max_sic_std=None)
    return out


def sculpting_check(
    m: np.ndarray,
    score: np.ndarray,
    threshold: float,
    efficiency: float,
    window: Window,
    events: str,
) -> dict[str, Any]:
    """The spectrum of ``m`` after a selection against the events it rejects.

    Parameters
    ----------
    m : np.ndarray of shape (n,)
        Resonance variable of the window's (background) events, SR and sidebands.
    score : np.ndarray of shape (n,)
        Their scores (``score > threshold`` passes).
    threshold, efficiency : float
        The selection and its background efficiency on the template.
    window : Window
    events : str
        Which events these are (for the report).

    Returns
    -------
    dict
        ``test``, ``statistic``, ``p_value`` (two-sample KS of passed vs rejected ``m``; NaN
        with fewer than 2 passing events), ``n_before``, ``n_after``, ``edges``, ``before``,
        ``after`` (counts per bin).

    Examples
    --------
    A selection independent of ``m`` does not sculpt:

    >>> rng = np.random.default_rng(0)
    >>> m = rng.uniform(2.9, 4.1, 20_000)
    >>> w = Window(3.3, 3.7, 2.9, 4.1)
    >>> r = sculpting_check(m, rng.normal(size=m.size), 1.64, 0.05, w, "background")
    >>> r["p_value"] > 0.01, r["n_after"] < 1500
    (True, True)
    """
    m = np.asarray(m, dtype=np.float64)
    passed = np.asarray(score) > threshold
    edges = np.linspace(window.sb_lo, window.sb_hi, SCULPTING_BINS + 1)
    if passed.sum() >= 2 and (~passed).sum() >= 2:
        res = stats.ks_2samp(m[passed], m[~passed])
        statistic, p = float(res.statistic), float(res.pvalue)
    else:
        statistic = p = float("nan")
    return {
        "efficiency": float(efficiency),
        "test": "two-sample Kolmogorov-Smirnov, passed vs rejected",
        "statistic": statistic,
        "p_value": p,
        "events": events,
        "n_before": int(m.size),
        "n_after": int(passed.sum()),
        "edges": edges.tolist(),
        "before": np.histogram(m, edges)[0].tolist(),
        "after": np.histogram(m[passed], edges)[0].tolist(),
    }


def pvalue_histogram(
    models: Sequence[DensityModel],
    sr: Mapping[str, np.ndarray],
    labels_sr: np.ndarray | None,
    n_samples: int,
    rng: np.random.Generator,
    bins: int = 20,
) -> dict[str, Any]:
    """Histogram of the SR events' likelihood p-values under the background model (the
    ensemble's mixture).

    Parameters
    ----------
    models : sequence of DensityModel
        The background flows (their equal mixture is the model).
    sr : mapping of str to np.ndarray of shape (n_sr,)
        The SR events' resonance variable and features.
    labels_sr : np.ndarray of shape (n_sr,) or None
        Truth: signal and background histograms besides.
    n_samples : int
        Draws of the model per event (resolution ``1 / (n_samples + 1)``).
    rng : np.random.Generator
        Picks the events (at most :data:`PVALUE_EVENTS`) and seeds the draws.
    bins : int
        Bins over [0, 1].

    Returns
    -------
    dict
        ``n_samples``, ``resolution``, ``n_events``, ``edges``, ``counts`` (the random subset),
        ``counts_signal`` / ``counts_background`` (with labels; every signal event), ``ks_p``
        and ``ks_p_background`` (uniformity), ``fraction_below_0.01``.
    """
    from hepgen.anomaly.pvalues import likelihood_pvalues
    from hepgen.anomaly.scan.background import sample_mixture
    from hepgen.anomaly.scan.scores import log_mean_exp

    n = len(next(iter(sr.values())))
    conds = models[0].condition_names

    def log_prob(cols: Mapping[str, np.ndarray]) -> np.ndarray:
        return log_mean_exp([mod.log_prob(cols, domain_counts={}) for mod in models])

    def sample(cond: Mapping[str, np.ndarray], seed: int) -> dict[str, np.ndarray]:
        draw, _ = sample_mixture(models, dict(cond), np.random.default_rng(seed), {})
        return draw

    rows = np.sort(rng.choice(n, min(n, PVALUE_EVENTS), replace=False))
    signal = np.zeros(n, dtype=bool) if labels_sr is None else np.asarray(labels_sr) == 1
    pick = np.union1d(rows, np.flatnonzero(signal))
    seed = int(rng.integers(2**31 - 1))
    p_all = np.full(n, np.nan)
    p_all[pick] = likelihood_pvalues(
        log_prob,
        sample,
        {k: np.asarray(v)[pick] for k, v in sr.items()},
        conds,
        n_samples=int(n_samples),
        seed=seed,
    ).p
    edges = np.linspace(0.0, 1.0, bins + 1)

    def hist(p: np.ndarray) -> list[int]:
        return np.histogram(p[np.isfinite(p)], edges)[0].tolist()

    def ks(p: np.ndarray) -> float | None:
        p = p[np.isfinite(p)]
        return float(stats.kstest(p, "uniform").pvalue) if p.size >= 2 else None

    p_rand = p_all[rows]
    out: dict[str, Any] = {
        "n_samples": int(n_samples),
        "resolution": 1.0 / (int(n_samples) + 1),
        "n_events": int(rows.size),
        "edges": edges.tolist(),
        "counts": hist(p_rand),
        "ks_p": ks(p_rand),
        "fraction_below_0.01": float(np.mean(p_rand[np.isfinite(p_rand)] <= 0.01)),
        "counts_signal": None,
        "counts_background": None,
        "ks_p_background": None,
    }
    if labels_sr is not None and signal.any():
        bkg = p_all[rows][~signal[rows]]
        out.update(
            counts_signal=hist(p_all[signal]),
            counts_background=hist(bkg),
            ks_p_background=ks(bkg),
        )
    return out
