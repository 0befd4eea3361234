r"""Selections of a window and the background expected after them (steps 4 to 6 of a scan).

For each background efficiency :math:`\epsilon` the threshold is the score the template
exceeds with probability :math:`\epsilon` (:func:`selection`).  Three estimates of the
background that passes it are reported (:func:`estimate_window`), and ``background_estimate``
chooses the one that the significance (:func:`~hepgen.anomaly.stats.significance`) uses:
``template`` (the sideband fit times the template's pass fraction), ``calibrated`` (the
default: the template estimate times the sideband closure, :func:`calibration`) and ``fit`` (a
diagnostic: the dijet function fitted to the selected sidebands, :func:`fit_estimate`).  Why
the calibrated estimate is the default, with the numbers measured on the reference null
sample, is in ``docs/anomaly.md``, section "Background estimates after a selection".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hepgen.anomaly.scan.scores import WindowScores
from hepgen.anomaly.stats import (
    SidebandFit,
    fit_sidebands,
    significance,
    threshold_at_efficiency,
)
from hepgen.errors import InputError
from hepgen.settings.scan import ScanSettings, Window

__all__ = ["calibration", "estimate_window", "fit_estimate", "selection"]


def calibration(s_closure: np.ndarray, s_template: np.ndarray, t: float) -> tuple[float, float]:
    """The sideband closure at threshold ``t``: data over template pass fraction, and its error.

    Parameters
    ----------
    s_closure : np.ndarray of shape (k,)
        Scores of the sideband data events the closure template was drawn at.
    s_template : np.ndarray of shape (j,)
        Scores of the closure template.
    t : float
        The threshold (``score > t`` passes).

    Returns
    -------
    closure, error : float
        The ratio of the pass fractions (each ``(k + 0.5) / (n + 1)``) and its binomial
        one-sigma uncertainty.

    Examples
    --------
    10 of 100 sideband events and 20 of 200 template events pass:

    >>> closure, error = calibration(np.arange(100.0), np.arange(200.0) / 2, 89.5)
    >>> round(closure, 3), round(error, 3)
    (1.019, 0.366)
    """
    k_d, k_t = int(np.sum(s_closure > t)), int(np.sum(s_template > t))
    p_d, p_t = (k_d + 0.5) / (s_closure.size + 1.0), (k_t + 0.5) / (s_template.size + 1.0)
    closure = p_d / p_t
    error = closure * float(
        np.sqrt(
            (1 - p_d) / (p_d * (s_closure.size + 1.0)) + (1 - p_t) / (p_t * (s_template.size + 1.0))
        )
    )
    return closure, error


def fit_estimate(
    m_passed: np.ndarray, window: Window, settings: ScanSettings
) -> tuple[float, float]:
    """Background in the SR from the dijet function fitted to the selected sideband spectrum.

    Parameters
    ----------
    m_passed : np.ndarray of shape (k,)
        Resonance variable of the sideband events that pass the selection.
    window : Window
    settings : ScanSettings
        ``fit_bins``: half of them (at least 8) are fitted; ``sqrt_s`` (units of ``m``).

    Returns
    -------
    n, error : float
        Events expected in the SR and their one-sigma uncertainty.

    Raises
    ------
    InputError
        The fit is impossible (too few events) or does not converge.
    """
    fit = fit_sidebands(
        m_passed,
        window.lo,
        window.hi,
        (window.sb_lo, window.sb_hi),
        bins=max(8, settings.fit_bins // 2),
        n_parameters=3,
        sqrt_s=settings.sqrt_s,
    )
    return float(fit.integral(window.lo, window.hi)), float(
        fit.integral_error(window.lo, window.hi)
    )


def _z(n_obs: int, n_exp: float | None, err: float | None) -> float | None:
    """:func:`significance`, or None without a positive estimate."""
    if n_exp is None or n_exp <= 0:
        return None
    return float(significance(n_obs, n_exp, err or 0.0))


def selection(
    eff: float,
    scores: WindowScores,
    m_sideband: np.ndarray,
    window: Window,
    background: tuple[float, float],
    settings: ScanSettings,
    notes: list[str],
) -> dict[str, Any]:
    """Threshold at background efficiency ``eff`` on the template, counts and the estimates.

    Parameters
    ----------
    eff : float
        Background efficiency of the selection, in (0, 1).
    scores : WindowScores
    m_sideband : np.ndarray of shape (n_sb,)
        Resonance variable of the sideband events.
    window : Window
    background : (float, float)
        Events expected in the SR before the selection (the sideband fit) and their error.
    settings : ScanSettings
        ``background_estimate`` chooses the estimate of ``n_expected``.
    notes : list of str
        Notes of the window (a failed fit estimate).

    Returns
    -------
    dict
        The ``selections`` entry of ``scan.json``: threshold, counts, each estimate with its
        error and significance.
    """
    n_hat, n_hat_err = background
    s_tmpl = scores.template
    t = threshold_at_efficiency(s_tmpl, eff)
    eff_t = float(np.mean(s_tmpl > t))
    n_obs = int(np.sum(scores.data > t))
    # template estimate: fitted SR background x template pass fraction
    n_exp_t = n_hat * eff_t
    err_t = float(np.hypot(eff_t * n_hat_err, n_hat * np.sqrt(eff_t * (1 - eff_t) / s_tmpl.size)))
    # calibrated estimate: the template estimate x the data/template pass-fraction ratio in
    # the sidebands (the flow's closure where it was trained), binomial errors on both
    closure, closure_err = calibration(scores.closure, scores.sideband_template, t)
    n_exp_c = n_exp_t * closure
    err_c = float(np.hypot(err_t * closure, n_exp_t * closure_err))
    # fit estimate: dijet function through the selected sideband spectrum
    n_exp_f = err_f = None
    passed = m_sideband[scores.sideband > t]
    try:
        n_exp_f, err_f = fit_estimate(passed, window, settings)
    except InputError as err:
        notes.append(f"efficiency {eff:g}: no sideband fit after the selection ({err})")
    if settings.background_estimate == "calibrated":
        n_exp, err, used = n_exp_c, err_c, "calibrated"
    elif settings.background_estimate == "template" or n_exp_f is None:
        n_exp, err, used = n_exp_t, err_t, "template"
    else:
        n_exp, err, used = n_exp_f, err_f, "fit"
    return {
        "efficiency": float(eff),
        "threshold": float(t),
        "template_efficiency": eff_t,
        "n_observed": n_obs,
        "n_expected": float(n_exp),
        "n_expected_error": float(err),
        "estimate": used,
        "significance": _z(n_obs, n_exp, err),
        "n_expected_template": float(n_exp_t),
        "n_expected_template_error": err_t,
        "significance_template": float(significance(n_obs, n_exp_t, err_t)),
        "sideband_closure": closure,
        "sideband_closure_error": closure_err,
        "n_expected_calibrated": float(n_exp_c),
        "n_expected_calibrated_error": err_c,
        "significance_calibrated": float(significance(n_obs, n_exp_c, err_c)),
        "n_expected_fit": n_exp_f,
        "n_expected_fit_error": err_f,
        "significance_fit": _z(n_obs, n_exp_f, err_f),
        "n_sideband_selected": int(passed.size),
    }


def estimate_window(
    scores: WindowScores,
    m_sideband: np.ndarray,
    window: Window,
    settings: ScanSettings,
    notes: list[str],
) -> tuple[SidebandFit, tuple[float, float], list[dict[str, Any]]]:
    """The SR background before any selection, and every selection of ``settings``.

    Parameters
    ----------
    scores : WindowScores
    m_sideband : np.ndarray of shape (n_sb,)
        Resonance variable of the sideband events.
    window : Window
    settings : ScanSettings
        ``efficiencies``, ``fit_bins`` and ``sqrt_s`` (the collision energy in the units of
        the resonance variable).
    notes : list of str
        Notes of the window.

    Returns
    -------
    fit : SidebandFit
        The dijet function fitted to the unselected sidebands.
    background : (float, float)
        Its integral over the SR (events) and that integral's error.
    selections : list of dict
        :func:`selection` for each efficiency.
    """
    fit = fit_sidebands(
        m_sideband,
        window.lo,
        window.hi,
        (window.sb_lo, window.sb_hi),
        bins=settings.fit_bins,
        sqrt_s=settings.sqrt_s,
    )
    background = (fit.integral(window.lo, window.hi), fit.integral_error(window.lo, window.hi))
    selections = [
        selection(eff, scores, m_sideband, window, background, settings, notes)
        for eff in settings.efficiencies
    ]
    return fit, background, selections
