"""How a fast simulation's flows evaluate: the precision check after training and the choice at
generation time.

A reduced precision of the response flow's conditioners (``model.precision: bfloat16``) is
checked once, after training, on the validation pairs (:func:`check_precisions`; sample parity
and classifier AUC, :func:`hepgen.models.engine.check_precision`) and the verdict goes into the
model card (``inference``); :func:`choose_precision` reads it back when the model is used.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from hepgen.errors import InputError

if TYPE_CHECKING:
    from hepgen.fastsim.fit import PairSplit
    from hepgen.fastsim.simulator import FastSim

__all__ = ["check_precisions", "choose_precision"]

log = logging.getLogger(__name__)


def check_precisions(sim: FastSim, split: PairSplit) -> dict[str, Any]:
    """The ``inference`` entry of the model card: the configured ``model.precision`` and, for
    a reduced one, its check on the validation pairs
    (:func:`hepgen.models.engine.check_precision`), logged with its verdict."""
    from hepgen.models.engine import check_precision

    cfg = sim.config
    precision = cfg.model.precision
    entry: dict[str, Any] = {"precision": precision, "checks": {}}
    if precision == "float32":
        return entry
    seed = cfg.seed
    pre = sim.preprocessor_
    x = pre.transform_targets(split.validation, rng=np.random.default_rng([seed, 4]))
    c = pre.transform_conditions(split.validation)
    result = check_precision(sim.response_, x, c, precision, seed=seed)
    entry["checks"][precision] = result
    verdict = "accepted" if result["accepted"] else "REFUSED: generation stays in float32"
    message = (
        "%s conditioners %s (max |diff| %.2g, 99th percentile %.2g; classifier AUC %.3f, "
        "float32 %.3f, interval [%.3f, %.3f])"
    )
    args = (
        precision,
        verdict,
        result["parity"]["max_abs"],
        result["parity"]["p99_abs"],
        result["auc"],
        result["auc_float32"],
        *result["auc_interval"],
    )
    (log.info if result["accepted"] else log.warning)(message, *args)
    return entry


def choose_precision(inference: dict[str, Any] | None, precision: str | None, force: bool) -> str:
    """The precision to generate with, from the model card's ``inference`` entry.

    Parameters
    ----------
    inference : dict or None
        The card's ``inference`` entry (``None`` for models trained before it existed).
    precision : str or None
        Asked for; ``None``: the configured precision when its check was accepted, else
        float32.
    force : bool
        Allow a reduced precision without an accepted check.

    Raises
    ------
    InputError
        A reduced precision without an accepted check (and without ``force``).

    Examples
    --------
    >>> card = {"precision": "bfloat16", "checks": {"bfloat16": {"accepted": True}}}
    >>> choose_precision(card, None, False), choose_precision(None, None, False)
    ('bfloat16', 'float32')
    """
    inference = inference or {}
    checks = inference.get("checks", {})
    accepted = [p for p, check in checks.items() if check.get("accepted")]
    if precision is None:
        configured = inference.get("precision", "float32")
        return configured if configured in accepted else "float32"
    if precision != "float32" and precision not in accepted and not force:
        why = (
            "its check after training was refused (see the model card, inference.checks)"
            if precision in checks
            else f"no check of it was made: train with model.precision: {precision}"
        )
        raise InputError(f"precision {precision} is not accepted for this fast simulation: {why}")
    return precision
