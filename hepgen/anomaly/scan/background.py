r"""The background model of a window and the templates drawn from it (steps 1 and 2 of a scan).

A density model :math:`p_{bg}(x | m)` (:class:`~hepgen.anomaly.density.DensityModel`) is
trained on the sideband events and interpolated into the signal region (SR).  The features
``x`` (jet masses, N-subjettiness) depend smoothly on ``m``.  By default (``trend`` 1,
``conditional`` false) a straight line in the preprocessed ``m`` carries that dependence
through the gap and an unconditional flow models the residuals: a conditional flow's
networks, free inside the gap, interpolated far worse there (module docstring of
:mod:`hepgen.anomaly.density`).

The *template* is what the SR would hold without a signal: ``m`` drawn from a Gaussian kernel
density estimate of the SR data's ``m`` (``oversample`` times as many as SR events) and ``x``
from :math:`p_{bg}(x | m)`.  With an ensemble of ``ensemble.flows`` background flows (different
seeds) each flow draws an equal share of the template: their mixture is the ensemble's
density, and each template event records which flow drew it.  The flow also samples a
*closure template*, ``oversample`` events per sideband event at least ``closure_margin`` from
the SR (at its ``m``; a signal's tails leak into the sidebands' inner edges), which
calibrates the template where the flow was trained (:mod:`~hepgen.anomaly.scan.estimates`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hepgen.anomaly.density import DensityModel
from hepgen.anomaly.scan.events import MIN_SIDEBAND_EVENTS, WindowEvents
from hepgen.settings.scan import ScanSettings, Window

__all__ = [
    "Templates",
    "best_val_loss",
    "checkpointing",
    "density_model",
    "sample_mixture",
    "sample_templates",
    "train_background",
    "train_backgrounds",
]

log = logging.getLogger(__name__)


def density_model(settings: ScanSettings, seed: int) -> DensityModel:
    """An untrained density flow of the scan (background or ANODE data flow).

    Parameters
    ----------
    settings : ScanSettings
        Features, resonance variable, flow and training settings, trend, device.
    seed : int
        Seed of the flow's initialisation and training.
    """
    return DensityModel(
        settings.features,
        [settings.resonance],
        flow=settings.flow,
        training=settings.training,
        trend=int(settings.trend),
        conditional=bool(settings.conditional),
        seed=seed,
        device=settings.device,
    )


def checkpointing(work: Path | None, name: str, resume: bool) -> dict[str, Any]:
    """``checkpoint_dir``/``resume`` of one density flow of a window: resume only where its
    checkpoint exists (else it starts afresh, logged).

    Parameters
    ----------
    work : Path or None
        The window's checkpoint folder; None: no checkpoints (an empty dict).
    name : str
        The flow's sub-folder (``background``, ``data-flow-K``).
    resume : bool
        Continue from the flow's checkpoint where there is one.

    Returns
    -------
    dict
        Keyword arguments of :meth:`DensityModel.fit`.
    """
    if work is None:
        return {}
    folder = work / name
    has = (folder / "last.safetensors").is_file()
    if resume and not has:
        log.info("scan: no checkpoint of the %s flow in %s, training it afresh", name, work)
    return {"checkpoint_dir": folder, "resume": resume and has}


def best_val_loss(model: DensityModel) -> float | None:
    """The lowest validation loss of a trained flow (None when none was recorded)."""
    losses = [h.get("val_loss") for h in model.training_.history if h.get("val_loss") is not None]
    return float(min(losses)) if losses else None


def train_background(
    sideband: dict[str, np.ndarray],
    settings: ScanSettings,
    rng: np.random.Generator,
    *,
    quiet: bool,
    work: Path | None,
    resume: bool,
    notes: list[str],
) -> DensityModel:
    """The background flow trained on (at most ``max_train_events`` of) the sideband events.

    Parameters
    ----------
    sideband : dict of str to np.ndarray of shape (n_sb,)
        The sideband events' resonance variable and features.
    settings : ScanSettings
    rng : np.random.Generator
        Draws the flow's seed and the training subset.
    quiet : bool
        Silence the flow's progress bar.
    work : Path or None
        The window's checkpoint folder (:func:`checkpointing`).
    resume : bool
        Continue from a checkpoint in ``work``.
    notes : list of str
        Notes of the window (a training subset is noted).
    """
    bg = density_model(settings, int(rng.integers(2**31 - 1)))
    n_sb = len(next(iter(sideband.values())))
    rows = np.arange(n_sb)
    if n_sb > settings.max_train_events:
        rows = np.sort(rng.choice(n_sb, int(settings.max_train_events), replace=False))
        notes.append(f"background flow trained on {rows.size} of {n_sb} sideband events")
    bg.fit(
        {n: v[rows] for n, v in sideband.items()},
        quiet=quiet,
        **checkpointing(work, "background", resume),
    )
    return bg


def train_backgrounds(
    sideband: dict[str, np.ndarray],
    settings: ScanSettings,
    rng: np.random.Generator,
    *,
    quiet: bool,
    work: Path | None,
    resume: bool,
    notes: list[str],
) -> list[DensityModel]:
    """The ``ensemble.flows`` background flows of a window (:func:`train_background` each,
    with its own seed; checkpoints in ``background/``, ``member-2/background/``, ...)."""
    models = []
    for k in range(int(settings.ensemble.flows)):
        member_notes: list[str] = []
        models.append(
            train_background(
                sideband,
                settings,
                rng,
                quiet=quiet,
                work=None if work is None else (work if k == 0 else work / f"member-{k + 1}"),
                resume=resume,
                notes=member_notes,
            )
        )
        if k == 0:
            notes.extend(member_notes)
    return models


@dataclass(frozen=True, eq=False)
class Templates:
    """The background flow's samples for one window (see :func:`sample_templates`).

    Attributes
    ----------
    signal_region : dict of str to np.ndarray of shape (n_sr * oversample,)
        The SR template: resonance variable and features.
    sideband : dict of str to np.ndarray of shape (n_sb + k * oversample,)
        The sideband data followed by the closure template (``k`` closure events).
    in_closure : np.ndarray of bool, shape (n_sb,)
        Which sideband events the closure template was drawn at.
    member : np.ndarray of int, shape (n_sr * oversample,)
        Which flow of the ensemble drew each SR template event (0 ... flows - 1).
    member_closure : np.ndarray of int, shape (k * oversample,)
        The same for the closure template.
    """

    signal_region: dict[str, np.ndarray]
    sideband: dict[str, np.ndarray]
    in_closure: np.ndarray
    member: np.ndarray
    member_closure: np.ndarray


def sample_mixture(
    models: Sequence[DensityModel],
    conditions: dict[str, np.ndarray],
    rng: np.random.Generator,
    outside: dict[str, int],
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """One draw per row of ``conditions`` from the equal mixture of ``models``.

    Parameters
    ----------
    models : sequence of DensityModel
        The ensemble members (``K`` of them).
    conditions : dict of str to ndarray
        Each condition's values, shape ``(n,)``, in the data's units.
    rng : numpy.random.Generator
        Source of each member's sampling seed.
    outside : dict of str to int
        Domain-violation counters, passed to each member's ``sample``.

    Returns
    -------
    draws : dict of str to ndarray
        The drawn features, shape ``(n,)`` each: row ``i`` from member ``i % K``.
    member : ndarray of int, shape (n,)
        The member that drew each row.
    """
    n = len(next(iter(conditions.values())))
    member = np.arange(n) % len(models)
    out: dict[str, np.ndarray] = {}
    for k, model in enumerate(models):
        rows = member == k
        draw = model.sample(
            {c: v[rows] for c, v in conditions.items()},
            seed=int(rng.integers(2**31 - 1)),
            domain_counts=outside,
        )
        for name, values in draw.items():
            if name not in out:
                out[name] = np.empty(n, dtype=np.asarray(values).dtype)
            out[name][rows] = values
    return out, member


def _template_masses(
    m_sr: np.ndarray, n: int, window: Window, rng: np.random.Generator
) -> np.ndarray:
    """``n`` draws from a Gaussian KDE of the SR's ``m``, reflected back into the SR."""
    from scipy.stats import gaussian_kde

    kde = gaussian_kde(m_sr.astype(np.float64))
    m_t = kde.resample(n, seed=rng).ravel()
    # keep the draws inside the SR (reflect the kernel tails back in)
    m_t = np.where(m_t < window.lo, 2 * window.lo - m_t, m_t)
    m_t = np.where(m_t >= window.hi, 2 * window.hi - m_t, m_t)
    return np.clip(m_t, window.lo, np.nextafter(window.hi, window.lo))


def _closure_events(
    m_side: np.ndarray, window: Window, settings: ScanSettings, notes: list[str]
) -> np.ndarray:
    """Which sideband events lie ``closure_margin`` or more from the SR (all when too few)."""
    margin = settings.closure_margin_value
    in_closure = (m_side < window.lo - margin) | (m_side >= window.hi + margin)
    if int(in_closure.sum()) < MIN_SIDEBAND_EVENTS:
        notes.append(
            f"only {int(in_closure.sum())} sideband events lie {margin:g} or more "
            "from the signal region: the closure uses every sideband event"
        )
        in_closure = np.ones(m_side.size, dtype=bool)
    return in_closure


def sample_templates(
    bg: DensityModel | Sequence[DensityModel],
    events: WindowEvents,
    window: Window,
    settings: ScanSettings,
    rng: np.random.Generator,
    outside: dict[str, int],
    notes: list[str],
) -> Templates:
    """The SR template and the sideband closure template of the background flow.

    Parameters
    ----------
    bg : DensityModel or sequence of DensityModel
        The trained background flow, or the ensemble of them (an equal mixture).
    events : WindowEvents
    window : Window
    settings : ScanSettings
    rng : np.random.Generator
        Draws the template masses and the flow's sampling seeds.
    outside : dict of str to int
        Counts of samples outside the flow's domain (updated).
    notes : list of str
        Notes of the window.
    """
    name = settings.resonance_name
    names = [name, *settings.feature_names]
    n_tmpl = events.n_signal_region * int(settings.oversample)
    models = [bg] if isinstance(bg, DensityModel) else list(bg)
    m_t = _template_masses(events.signal_region[name], n_tmpl, window, rng)
    tmpl, member = sample_mixture(models, {name: m_t.astype(np.float32)}, rng, outside)
    sb = events.sideband
    in_closure = _closure_events(sb[name].astype(np.float64), window, settings, notes)
    tmpl_sb, member_sb = sample_mixture(
        models, {name: np.tile(sb[name][in_closure], int(settings.oversample))}, rng, outside
    )
    return Templates(
        signal_region={n: np.asarray(tmpl[n]) for n in names},
        sideband={
            n: np.concatenate([sb[n], np.asarray(tmpl_sb[n], dtype=sb[n].dtype)]) for n in names
        },
        in_closure=in_closure,
        member=member,
        member_closure=member_sb,
    )
