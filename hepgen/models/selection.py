"""Physics metrics that choose the kept checkpoint on the validation split.

A model's loss says little about its samples (a GAN's loss not at all; a flow can gain
likelihood on the bulk while a tail is off), so :class:`~hepgen.models.flow_model.FlowModel`
and :class:`~hepgen.models.gan.GANModel` keep the epoch with the best value of one of these,
computed each epoch on one draw per validation condition (model space, the same validation rows
and seeds every epoch so that epochs compare fairly):

* ``"ks"`` (:func:`mean_ks_metric`): the mean over target columns of the two-sample
  Kolmogorov-Smirnov statistic, validation targets against the draws.  Cheap, but it sees the
  *marginals* only: a generator whose marginal response is right but whose dependence on the
  conditions is off (a GAN that spreads the resolution evenly over pt) scores well.
* ``"c2st"`` (:func:`classifier_auc_metric`): a quick classifier two-sample test on
  (targets, conditions): gradient-boosted trees (xgboost ``hist``) learn to tell real rows from
  generated ones on half of the rows; the metric is the ROC AUC on the other half (0.5: no
  difference).  It sees the conditional distribution and the correlations, which is what the
  held-out test of ``hepgen validate`` judges; it costs about a second per epoch for 2 x 20k
  rows on 2 CPU cores.

References
----------
D. Lopez-Paz and M. Oquab, "Revisiting classifier two-sample tests", ICLR 2017,
arXiv:1610.06545; the classifier AUC of the CaloChallenge 2022 evaluation (C. Krause et al.,
"CaloChallenge 2022: a community challenge for fast calorimeter simulation",
arXiv:2410.21611).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from hepgen.errors import InputError

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "SELECTIONS",
    "check_selection",
    "classifier_auc_metric",
    "knn_recall_coverage",
    "mean_ks_metric",
    "metric_cost",
    "selection_metric",
]

#: The checkpoint choices every model accepts: a metric of this module, or the validation loss.
SELECTIONS = ("ks", "c2st", "loss")

#: Validation rows the metrics use at most (seeded subsample).  KS: its noise at 50k rows is
#: about 0.004, below the epoch-to-epoch differences it chooses between.  Classifier: 2 x 20k
#: rows keep it near a second per epoch, with an AUC noise of about 0.004.
KS_EVENTS = 50_000
C2ST_EVENTS = 20_000

#: Cost of the classifier metric's trees per real row, in units of one training row of a flow
#: (xgboost, 100 trees of depth 5 on 2 x 20k rows: about a second on 2 CPU cores, the time a
#: default flow trains on 5k rows).
C2ST_ROW_COST = 0.25

Sampler = Callable[[np.ndarray, int], np.ndarray]


def metric_cost(selection: str, n_validation: int, n_train: int, sample_cost: float) -> float:
    """Estimated time of one evaluation of the selection metric, in training epochs.

    What :func:`hepgen.training.train` needs to choose ``metric_every`` when it is left out:
    the metric draws one sample per validation row used (at most :data:`KS_EVENTS` or
    :data:`C2ST_EVENTS`) and the classifier also trains its trees.

    Parameters
    ----------
    selection : {"ks", "c2st", "loss"}
    n_validation, n_train : int
        Validation and training rows.
    sample_cost : float
        Time to draw one row relative to one training row (forward, backward and optimizer
        step) of the same model: about 0.35 per network pass for a flow (an autoregressive
        flow makes one pass per target to sample), measured on 2 CPU cores.

    Returns
    -------
    float
        0 for ``"loss"``.

    Examples
    --------
    >>> round(metric_cost("ks", 5_600, 22_400, sample_cost=0.35 * 9), 2)
    0.79
    """
    check_selection(selection)
    if selection == "loss":
        return 0.0
    rows = min(n_validation, KS_EVENTS if selection == "ks" else C2ST_EVENTS)
    per_row = sample_cost + (C2ST_ROW_COST if selection == "c2st" else 0.0)
    return rows * per_row / max(1, n_train)


def _subsample(n: int, max_events: int, seed: int) -> np.ndarray | slice:
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, max_events, replace=False)) if n > max_events else slice(None)


def mean_ks_metric(
    sample: Sampler,
    targets: np.ndarray,
    conditions: np.ndarray,
    max_events: int = KS_EVENTS,
    seed: int = 0,
) -> float:
    """Mean over target columns of the two-sample KS statistic: validation targets vs samples.

    Parameters
    ----------
    sample : callable
        ``sample(conditions, seed) -> targets``, one draw per row.
    targets, conditions : np.ndarray
        Validation data in model space, shapes (n, D) and (n, C).
    max_events : int
        Use at most this many validation rows (seeded subsample) to keep the metric cheap.
    seed : int
        Seed of the subsample and the draws (the same every epoch, so epochs compare fairly).

    Returns
    -------
    float
        In [0, 1]; lower is better.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x, c = rng.normal(size=(5000, 2)), rng.normal(size=(5000, 1))
    >>> good = lambda cc, s: np.random.default_rng([s, 1]).normal(size=(len(cc), 2))
    >>> shifted = lambda cc, s: good(cc, s) + 0.5
    >>> mean_ks_metric(good, x, c) < 0.05 < mean_ks_metric(shifted, x, c)
    True
    """
    from scipy.stats import ks_2samp

    rows = _subsample(targets.shape[0], max_events, seed)
    x, c = targets[rows], conditions[rows]
    generated = sample(c, seed)
    stats = [ks_2samp(x[:, j], generated[:, j]).statistic for j in range(x.shape[1])]
    return float(np.mean(stats))


def classifier_auc_metric(
    sample: Sampler,
    targets: np.ndarray,
    conditions: np.ndarray,
    max_events: int = C2ST_EVENTS,
    seed: int = 0,
    n_trees: int = 100,
) -> float:
    """Held-out ROC AUC of a quick classifier between real and generated (targets, conditions).

    The draws reuse the real rows' conditions, so the classifier can only tell the two apart
    by how the targets depend on the conditions (and on each other).  Rows are split in
    halves (the same split for real and generated rows): xgboost (``hist``, depth 5, learning
    rate 0.2, ``n_trees`` rounds) trains on one, the AUC is measured on the other.

    Parameters
    ----------
    sample : callable
        ``sample(conditions, seed) -> targets``, one draw per row.
    targets, conditions : np.ndarray
        Validation data in model space, shapes (n, D) and (n, C).
    max_events : int
        Real rows used at most (seeded subsample); as many generated rows.
    seed : int
        Seed of the subsample, the draws, the split and the trees.
    n_trees : int
        Boosting rounds.

    Returns
    -------
    float
        AUC in [0, 1]; 0.5 when the classifier cannot tell; lower is better (values below 0.5
        are noise).

    Raises
    ------
    InputError
        Fewer than 20 validation rows.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> c = rng.normal(size=(4000, 1))
    >>> x = c + 0.3 * rng.normal(size=(4000, 1))               # x depends on c
    >>> good = lambda cc, s: cc + 0.3 * np.random.default_rng([s, 1]).normal(size=cc.shape)
    >>> blind = lambda cc, s: np.random.default_rng([s, 1]).normal(size=cc.shape) * 1.04
    >>> classifier_auc_metric(good, x, c) < 0.55 < classifier_auc_metric(blind, x, c)
    True
    """
    import xgboost as xgb
    from sklearn.metrics import roc_auc_score

    n = targets.shape[0]
    if n < 20:
        raise InputError(f"the classifier selection metric needs >= 20 validation rows, got {n}")
    rows = _subsample(n, max_events, seed)
    x, c = targets[rows], conditions[rows]
    generated = np.asarray(sample(c, seed), dtype=np.float32)
    real = np.concatenate([x, c], axis=1).astype(np.float32, copy=False)
    fake = np.concatenate([generated, c], axis=1).astype(np.float32, copy=False)
    m = real.shape[0]
    first = np.zeros(m, dtype=bool)
    first[np.random.default_rng([seed, 1]).permutation(m)[: m // 2]] = True

    def part(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = int(mask.sum())
        return (
            np.concatenate([real[mask], fake[mask]]),
            np.concatenate([np.ones(k, np.float32), np.zeros(k, np.float32)]),
        )

    (x_fit, y_fit), (x_test, y_test) = part(first), part(~first)
    params = {
        "objective": "binary:logistic",
        "tree_method": "hist",
        "max_depth": 5,
        "eta": 0.2,
        "subsample": 0.8,
        "seed": int(seed) % 2**31,
        "verbosity": 0,
    }
    booster = xgb.train(params, xgb.DMatrix(x_fit, label=y_fit), num_boost_round=n_trees)
    score = booster.predict(xgb.DMatrix(x_test))
    return float(roc_auc_score(y_test, score))


def knn_recall_coverage(
    real: np.ndarray | Tensor, fake: np.ndarray | Tensor, k: int = 5, tile: int = 1024
) -> tuple[float, float]:
    """kNN recall and coverage of ``fake`` against ``real`` (exact distances, in torch).

    Features are standardised with the mean and standard deviation of ``real`` (float32
    arithmetic); ``r_i`` is
    the distance of real event i to its k-th nearest other real event, ``s_j`` that of fake
    event j among the fakes.  Recall: the fraction of real events inside at least one closed
    ball ``B(Y_j, s_j)``; coverage: the fraction of real events whose ball ``B(X_i, r_i)``
    holds at least one fake (``1 - 2^-k`` expected for identical distributions of equal size).
    The same definitions as :mod:`hepgen.validation`'s PRDC, kept here because the models
    layer does not import the validation layer.  A GAN records both every epoch
    (:class:`~hepgen.models.gan_model.GANModel`): a collapsing generator loses recall and
    coverage while its marginals may still look fine.

    Parameters
    ----------
    real, fake : array of shape (n, F) and (m, F)
        E.g. ``[x, c]`` of validation events and of generated events at their conditions.
    k : int
        Neighbour order of the radii.
    tile : int
        Rows per distance block (memory ``tile * max(n, m)`` floats).

    Returns
    -------
    recall, coverage : float
        In [0, 1]; a collapsing generator loses both.

    References
    ----------
    M. F. Naeem et al., "Reliable fidelity and diversity metrics for generative models", ICML
    2020, arXiv:2002.09797; T. Kynkaanniemi et al., "Improved precision and recall metric for
    assessing generative models", NeurIPS 2019, arXiv:1904.06991.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> real = rng.normal(size=(2000, 2))
    >>> r, c = knn_recall_coverage(real, rng.normal(size=(2000, 2)))
    >>> bool(r > 0.9 and c > 0.9)
    True
    >>> r, c = knn_recall_coverage(real, 0.1 * rng.normal(size=(2000, 2)))  # collapsed
    >>> bool(r < 0.2 and c < 0.3)
    True
    """
    import torch

    a = torch.as_tensor(np.asarray(real), dtype=torch.float32)
    b = torch.as_tensor(np.asarray(fake), dtype=torch.float32)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"real and fake must be (n, F) and (m, F), got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    if min(a.shape[0], b.shape[0]) <= k:
        raise ValueError(f"knn_recall_coverage needs more than k={k} events in each sample")
    mean, std = a.mean(0), a.std(0).clamp_min(1e-12)
    a, b = (a - mean) / std, (b - mean) / std
    r = _kth_radius(a, k, tile)
    s = _kth_radius(b, k, tile)
    recalled = torch.zeros(a.shape[0], dtype=torch.bool)
    covered = torch.zeros(a.shape[0], dtype=torch.bool)
    for start in range(0, a.shape[0], tile):
        d = torch.cdist(a[start : start + tile], b)  # (tile, m)
        recalled[start : start + tile] = (d <= s.unsqueeze(0)).any(dim=1)
        covered[start : start + tile] = d.min(dim=1).values <= r[start : start + tile]
    return float(recalled.double().mean()), float(covered.double().mean())


def _kth_radius(a: Tensor, k: int, tile: int) -> Tensor:
    """Distance of each row to its k-th nearest other row."""
    import torch

    out = torch.empty(a.shape[0], dtype=a.dtype)
    for start in range(0, a.shape[0], tile):
        d = torch.cdist(a[start : start + tile], a)
        # the row itself is at distance 0: the (k+1)-th smallest is the k-th other neighbour
        # (topk is ~5x faster than kthvalue on CPU)
        out[start : start + tile] = d.topk(k + 1, dim=1, largest=False).values[:, k]
    return out


def selection_metric(
    selection: str, sample: Sampler, targets: np.ndarray, conditions: np.ndarray, seed: int
) -> float | None:
    """The value of ``selection`` (``"ks"`` or ``"c2st"``; ``None`` for ``"loss"``).

    Raises
    ------
    InputError
        An unknown selection (the message lists :data:`SELECTIONS`).
    """
    check_selection(selection)
    if selection == "ks":
        return mean_ks_metric(sample, targets, conditions, seed=seed)
    if selection == "c2st":
        return classifier_auc_metric(sample, targets, conditions, seed=seed)
    return None


def check_selection(selection: str) -> str:
    """``selection`` when it is one of :data:`SELECTIONS`, else :class:`InputError`."""
    if selection not in SELECTIONS:
        raise InputError(
            f"selection {selection!r}: expected one of {', '.join(map(repr, SELECTIONS))}"
        )
    return selection
