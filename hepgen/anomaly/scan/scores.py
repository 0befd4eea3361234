r"""Out-of-fold anomaly scores of a window (step 3 of a scan): CATHODE and ANODE.

* ``cathode``: an xgboost classifier separates SR data (label 1) from the template (label 0,
  weighted to the same total) on ``x`` alone (``m`` is left out so the classifier cannot
  learn the ``m`` spectrum); the score is its log-odds.  Where there is no signal the
  classifier cannot do better than chance (if the template is good); a signal makes the data
  richer than the template where it lives.
* ``anode``: the likelihood ratio :math:`\log p_{data}(x | m) - \log p_{bg}(x | m)`, with a
  second flow :math:`p_{data}` trained on the SR data.  A raw density :math:`-\log p(x)`
  changes with the choice of coordinates; the ratio does not.

Every SR event and every template event is scored **out of fold**: the events are split in
``folds`` parts, the classifier (or the data flow) is trained without a part and scores only
that part.  Scoring the events a model was trained on would make data look more data-like
than the template, an excess without a signal.  The sideband events and the closure template
are scored by every fold's model (the mean); the ANODE data flows extrapolate outside the SR
there.

References
----------
B. Nachman, D. Shih, Phys. Rev. D 101, 075042 (2020), arXiv:2001.04990 (ANODE).
A. Hallin et al., Phys. Rev. D 106, 055006 (2022), arXiv:2109.00546 (CATHODE).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hepgen.anomaly.density import DensityModel
from hepgen.anomaly.scan.background import Templates, checkpointing, density_model
from hepgen.anomaly.scan.events import WindowEvents
from hepgen.devices import xgboost_device
from hepgen.errors import require
from hepgen.settings.scan import ScanSettings

__all__ = [
    "CATHODE_PURPOSE",
    "MEMBER_KEYS",
    "WindowScores",
    "anode_scores",
    "cathode_scores",
    "log_mean_exp",
    "score_window",
    "train_booster",
]

#: What xgboost is needed for, named when it is missing.
CATHODE_PURPOSE = "the CATHODE classifier (scan.score: cathode)"
#: The score arrays of one ensemble member: SR data, SR template, sideband + closure template.
MEMBER_KEYS = ("data", "template", "side")


def _xgb_params(settings: ScanSettings, notes: list[str]) -> dict[str, Any]:
    """xgboost parameters of the CATHODE classifier (the device resolved by
    :func:`hepgen.devices.xgboost_device`: CUDA only with a GPU and a CUDA build of xgboost;
    a fallback is noted)."""
    c = settings.classifier.to_dict()
    device, note = xgboost_device(settings.device, CATHODE_PURPOSE)
    if note:
        notes.append(note)
    return {
        "objective": "binary:logistic",
        "eval_metric": "logloss",
        "tree_method": "hist",
        "device": device,
        "max_depth": int(c["max_depth"]),
        "eta": float(c["learning_rate"]),
        "min_child_weight": float(c["min_child_weight"]),
        "subsample": float(c["subsample"]),
        "nthread": 0,
    }


def _folds(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """A fold index (0 ... k-1) per row, balanced."""
    return rng.permutation(np.arange(n) % k)


def train_booster(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    settings: ScanSettings,
    rng: np.random.Generator,
    base: dict[str, Any],
) -> Any:
    """An xgboost classifier of ``y`` (0/1) from ``x`` with row weights ``w``, stopped early
    on a seeded random ``classifier.validation_fraction`` of the rows.

    Parameters
    ----------
    x : np.ndarray of shape (n, d)
    y, w : np.ndarray of shape (n,)
    settings : ScanSettings
        ``classifier``: trees, early stopping, validation share.
    rng : np.random.Generator
        Draws the validation rows and the booster's seed.
    base : dict
        xgboost parameters (:func:`_xgb_params`).

    Returns
    -------
    xgboost.Booster
        Keeping its best iteration (``best_iteration``).
    """
    xgb: Any = require("xgboost", CATHODE_PURPOSE)
    c = settings.classifier.to_dict()
    params = {**base, "seed": int(rng.integers(2**31 - 1))}
    val = rng.random(len(y)) < float(c["validation_fraction"])
    dfit = xgb.QuantileDMatrix(x[~val], label=y[~val], weight=w[~val])
    dval = xgb.QuantileDMatrix(x[val], label=y[val], weight=w[val], ref=dfit)
    return xgb.train(
        params,
        dfit,
        num_boost_round=int(c["n_estimators"]),
        evals=[(dval, "val")],
        verbose_eval=False,
        callbacks=[
            xgb.callback.EarlyStopping(rounds=int(c["early_stopping_rounds"]), save_best=True)
        ],
    )


def _cathode_member(
    x_data: np.ndarray,
    x_tmpl: np.ndarray,
    x_side: np.ndarray,
    settings: ScanSettings,
    rng: np.random.Generator,
    base: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """One classifier member: its own folds, out-of-fold log-odds (see :func:`cathode_scores`)."""
    xgb: Any = require("xgboost", CATHODE_PURPOSE)
    k = int(settings.folds)
    f_data, f_tmpl = _folds(len(x_data), k, rng), _folds(len(x_tmpl), k, rng)
    s_data, s_tmpl = np.empty(len(x_data)), np.empty(len(x_tmpl))
    s_side = np.zeros(len(x_side))
    w_tmpl = len(x_data) / len(x_tmpl)  # the template weighs as much as the data in total
    iterations = []
    for fold in range(k):
        tr_d, tr_t = np.flatnonzero(f_data != fold), np.flatnonzero(f_tmpl != fold)
        x = np.concatenate([x_data[tr_d], x_tmpl[tr_t]])
        y = np.concatenate([np.ones(len(tr_d)), np.zeros(len(tr_t))])
        w = np.concatenate([np.ones(len(tr_d)), np.full(len(tr_t), w_tmpl)])
        booster = train_booster(x, y, w, settings, rng, base)
        iterations.append(int(booster.best_iteration) + 1)

        def predict(a: np.ndarray, b: Any = booster) -> np.ndarray:
            return b.predict(xgb.DMatrix(a), output_margin=True).astype(np.float64)

        s_data[f_data == fold] = predict(x_data[f_data == fold])
        s_tmpl[f_tmpl == fold] = predict(x_tmpl[f_tmpl == fold])
        if len(x_side):
            s_side += predict(x_side) / k
    return s_data, s_tmpl, s_side, iterations


def cathode_scores(
    x_data: np.ndarray,
    x_tmpl: np.ndarray,
    x_side: np.ndarray,
    settings: ScanSettings,
    rng: np.random.Generator,
    notes: list[str],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Out-of-fold classifier log-odds of SR data, template and (fold mean) sideband events.

    With ``ensemble.classifiers`` > 1 every member draws its own folds and seeds, and the
    scores are the members' mean log-odds (each member's scores are out of fold, so is their
    mean); ``info["members"]`` then holds each member's scores (arrays of shape (members, n)).
    """
    base = _xgb_params(settings, notes)
    members = [
        _cathode_member(x_data, x_tmpl, x_side, settings, rng, base)
        for _ in range(int(settings.ensemble.classifiers))
    ]
    info: dict[str, Any] = {"classifier_trees": [it for m in members for it in m[3]]}
    if len(members) > 1:
        info["members"] = {
            key: np.stack([m[i] for m in members]) for i, key in enumerate(MEMBER_KEYS)
        }
    s_data, s_tmpl, s_side = (np.mean([m[i] for m in members], axis=0) for i in range(3))
    return s_data, s_tmpl, s_side, info


def log_mean_exp(values: list[np.ndarray]) -> np.ndarray:
    """An ensemble's log-density from its members': ``log(mean(exp(v)))``, computed stably.

    Parameters
    ----------
    values : list of ndarray
        Each member's log-density (nats), all of the same shape ``(n,)``.

    Returns
    -------
    ndarray, shape (n,)
        The log of the members' mean density (nats).

    Examples
    --------
    >>> log_mean_exp([np.log([1.0, 2.0]), np.log([3.0, 4.0])]).round(6).tolist()
    [0.693147, 1.098612]
    """
    if len(values) == 1:
        return values[0]
    from scipy.special import logsumexp

    return logsumexp(np.stack(values), axis=0) - np.log(len(values))


def anode_scores(
    data: Mapping[str, np.ndarray],
    tmpl: Mapping[str, np.ndarray],
    side: Mapping[str, np.ndarray],
    bg: DensityModel | Sequence[DensityModel],
    settings: ScanSettings,
    rng: np.random.Generator,
    quiet: bool,
    outside: dict[str, int],
    work: Path | None = None,
    resume: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
    """Out-of-fold log p_data - log p_bg of SR data, template and (fold mean) sideband events.

    An ensemble of background flows is their mixture (the log of the mean density); with
    ``ensemble.classifiers`` > 1, as many data flows per fold (own folds and seeds) are
    averaged the same way, and ``info["members"]`` holds each one's scores.
    """
    bgs = [bg] if isinstance(bg, DensityModel) else list(bg)
    k = int(settings.folds)
    n_d = len(next(iter(data.values())))
    n_t = len(next(iter(tmpl.values())))
    n_s = len(next(iter(side.values())))
    members: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    epochs = []
    for c in range(int(settings.ensemble.classifiers)):
        f_data, f_tmpl = _folds(n_d, k, rng), _folds(n_t, k, rng)
        lp_data, lp_tmpl = np.empty(n_d), np.empty(n_t)
        lp_side = np.zeros(n_s)
        for fold in range(k):
            model = density_model(settings, int(rng.integers(2**31 - 1)))
            train_rows = f_data != fold
            name = f"data-flow-{fold}" if c == 0 else f"data-flow-{fold}-member-{c + 1}"
            model.fit(
                {n: v[train_rows] for n, v in data.items()},
                quiet=quiet,
                **checkpointing(work, name, resume),
            )
            epochs.append(len(model.training_.history))
            lp_data[~train_rows] = model.log_prob(
                {n: v[~train_rows] for n, v in data.items()}, domain_counts=outside
            )
            sel = f_tmpl == fold
            lp_tmpl[sel] = model.log_prob(
                {n: v[sel] for n, v in tmpl.items()}, domain_counts=outside
            )
            if n_s:
                # the data flows extrapolate outside the SR here (see the module docstring)
                lp_side += model.log_prob(side, domain_counts={}) / k
        members.append((lp_data, lp_tmpl, lp_side))
    lb_data = log_mean_exp([b.log_prob(data, domain_counts=outside) for b in bgs])
    lb_tmpl = log_mean_exp([b.log_prob(tmpl, domain_counts=outside) for b in bgs])
    lb_side = log_mean_exp([b.log_prob(side, domain_counts=outside) for b in bgs]) if n_s else 0.0
    lb = (lb_data, lb_tmpl, lb_side)
    s_data, s_tmpl, s_side = (log_mean_exp([m[i] for m in members]) - lb[i] for i in range(3))
    info: dict[str, Any] = {"data_flow_epochs": epochs}
    if len(members) > 1:
        info["members"] = {
            key: np.stack([m[i] - lb[i] for m in members]) for i, key in enumerate(MEMBER_KEYS)
        }
    return s_data, s_tmpl, s_side, info


def _finite_scores(s: np.ndarray, what: str, notes: list[str]) -> np.ndarray:
    """NaN scores (a density underflow in both flows) become -inf, the least anomalous;
    +-inf stay as they are.  Their count is noted."""
    bad = ~np.isfinite(s)
    if bad.any():
        notes.append(f"{int(bad.sum())} {what} scores were not finite (NaN -> least anomalous)")
        s = np.where(np.isnan(s), -np.inf, s)
    return s


@dataclass(frozen=True, eq=False)
class WindowScores:
    """The anomaly scores of one window (higher is more anomalous; NaN made ``-inf``).

    Attributes
    ----------
    data : np.ndarray of shape (n_sr,)
        SR data, out of fold.
    template : np.ndarray of shape (n_sr * oversample,)
        SR template, out of fold.
    sideband : np.ndarray of shape (n_sb,)
        Sideband data, the mean of the fold models.
    closure : np.ndarray of shape (k,)
        The ``sideband`` scores of the ``k`` events the closure template was drawn at.
    sideband_template : np.ndarray of shape (k * oversample,)
        The closure template, the mean of the fold models.
    members : list of WindowScores
        Each ensemble member's own scores (empty without an ensemble of classifiers).
    """

    data: np.ndarray
    template: np.ndarray
    sideband: np.ndarray
    closure: np.ndarray
    sideband_template: np.ndarray
    members: list[WindowScores] = field(default_factory=list)


def _window_scores(
    s_data: np.ndarray,
    s_tmpl: np.ndarray,
    s_side_all: np.ndarray,
    n_sb: int,
    in_closure: np.ndarray,
    notes: list[str],
) -> WindowScores:
    """The scores split into their parts, non-finite ones made ``-inf`` (and noted)."""
    s_side, s_side_tmpl = s_side_all[:n_sb], s_side_all[n_sb:]
    # in this order: the notes on non-finite scores read in it
    s_data = _finite_scores(s_data, "signal-region", notes)
    s_tmpl = _finite_scores(s_tmpl, "template", notes)
    s_side = _finite_scores(s_side, "sideband", notes)
    s_side_tmpl = _finite_scores(s_side_tmpl, "sideband template", notes)
    return WindowScores(
        data=s_data,
        template=s_tmpl,
        sideband=s_side,
        closure=s_side[in_closure],
        sideband_template=s_side_tmpl,
    )


def score_window(
    events: WindowEvents,
    templates: Templates,
    bg: DensityModel | Sequence[DensityModel],
    settings: ScanSettings,
    rng: np.random.Generator,
    *,
    quiet: bool,
    outside: dict[str, int],
    work: Path | None,
    resume: bool,
    notes: list[str],
) -> tuple[WindowScores, dict[str, Any]]:
    """Score the SR data, the SR template, the sideband data and the closure template.

    Parameters
    ----------
    events : WindowEvents
    templates : Templates
    bg : DensityModel or sequence of DensityModel
        The trained background flow or ensemble (ANODE's denominator).
    settings : ScanSettings
        ``score`` chooses CATHODE or ANODE.
    rng : np.random.Generator
        Draws the folds and the models' seeds.
    quiet : bool
        Silence the ANODE data flows' progress bars.
    outside : dict of str to int
        Counts of events outside the flows' domain (updated).
    work : Path or None
        Checkpoint folder of the ANODE data flows.
    resume : bool
        Continue the ANODE data flows from their checkpoints.
    notes : list of str
        Notes of the window (a device fallback, non-finite scores).

    Returns
    -------
    scores : WindowScores
    info : dict
        Training record: ``classifier_trees`` or ``data_flow_epochs`` per fold.
    """
    data, tmpl, side_all = events.signal_region, templates.signal_region, templates.sideband
    if settings.score == "cathode":
        feats = settings.feature_names

        def matrix(d: Mapping[str, np.ndarray]) -> np.ndarray:
            return np.column_stack([np.asarray(d[n], dtype=np.float32) for n in feats])

        s_data, s_tmpl, s_side, info = cathode_scores(
            matrix(data), matrix(tmpl), matrix(side_all), settings, rng, notes
        )
    else:
        s_data, s_tmpl, s_side, info = anode_scores(
            data, tmpl, side_all, bg, settings, rng, quiet, outside, work, resume
        )
    n_sb, in_closure = events.n_sideband, templates.in_closure
    scores = _window_scores(s_data, s_tmpl, s_side, n_sb, in_closure, notes)
    members = info.pop("members", None)
    if members is not None:
        scores.members.extend(
            _window_scores(d, t, sd, n_sb, in_closure, [])
            for d, t, sd in zip(*(members[key] for key in MEMBER_KEYS), strict=True)
        )
    return scores, info
