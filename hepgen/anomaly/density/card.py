"""The ``hepgen-model.json`` of a density model: what is written, and its reading.

The card (``kind`` ``"density"``, ``format_version`` 2; version 1 had no trend and was always
conditional) holds the feature schema, the fitted preprocessing, the conditions' validity
domain with the largest empty interval seen in fit, the architecture, flow and training
settings, the trend, the training history and provenance; the flow's weights are
``flow.safetensors`` + ``flow.json`` beside it.  The card's format and kinds are those of
:mod:`hepgen.modeldir`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hepgen.errors import ConfigError, InputError
from hepgen.modeldir import DENSITY_FORMAT_VERSION, MODEL_FORMAT
from hepgen.models.flow import FlowSettings
from hepgen.preprocessing import Preprocessor
from hepgen.training import TrainingResult, TrainingSettings

if TYPE_CHECKING:
    from hepgen.anomaly.density.model import DensityModel

__all__ = ["FLOW_NAME", "DensityCard", "density_card", "parse_density_card"]

#: File stem of the flow's weights in the model directory.
FLOW_NAME = "flow"


def density_card(model: DensityModel) -> dict[str, Any]:
    """The content of a fitted density model's ``hepgen-model.json``."""
    schema = model.preprocessor_.schema
    training = model.training_.to_dict()
    return {
        "format": MODEL_FORMAT,
        "format_version": DENSITY_FORMAT_VERSION,
        "kind": model.kind,
        "features": [s.to_dict() for s in schema.targets],
        "conditions": [s.to_dict() for s in schema.conditions],
        "schema": schema.to_dict(),
        "preprocessing": model.preprocessor_.to_dict(),
        "domain": model.domain_,
        "architecture": model.flow_.describe(),
        "trend": None
        if model.trend_ is None
        else {"degree": int(model.trend), "coefficients": model.trend_.tolist()},
        "conditional": bool(model.conditional_),
        "flow": model.flow_settings_.to_dict(),
        "training": {
            **training,
            "settings": model.training_settings_.to_dict(),
            "validation_fraction": model.validation_fraction_,
        },
        "data_summary": {
            "n_train": model.n_train_,
            "n_validation": model.n_validation_,
            "weighted": bool(getattr(model, "weighted_", False)),
        },
        "seed": int(model.seed),
        "provenance": getattr(model, "provenance_", None),
    }


@dataclasses.dataclass
class DensityCard:
    """The parsed content of a density model's card (the fitted state but the flow)."""

    preprocessor: Preprocessor
    flow_settings: FlowSettings
    training_settings: TrainingSettings
    validation_fraction: float
    result: TrainingResult
    summary: dict[str, Any]
    seed: int
    domain: dict[str, Any]
    trend: np.ndarray | None
    degree: int
    conditional: bool


def parse_density_card(path: Path, card: dict[str, Any]) -> DensityCard:
    """The fitted state a density model's card describes.

    Parameters
    ----------
    path : Path
        The card's path, for messages.
    card : dict
        Its content (format, kind and version already checked, :func:`hepgen.modeldir.read_card`).

    Raises
    ------
    InputError
        A missing key or invalid content (the file named).
    """
    try:
        pre = Preprocessor.from_dict(card["preprocessing"])
        flow_settings = FlowSettings.from_dict(card["flow"])
        tr = dict(card["training"])
        settings = TrainingSettings.from_dict(tr.pop("settings"))
        fraction = float(tr.pop("validation_fraction"))
        fields = {f.name for f in dataclasses.fields(TrainingResult)}
        trend = card.get("trend")
        coef = None if trend is None else np.asarray(trend["coefficients"], dtype=np.float64)
        degree = 0 if trend is None else int(trend["degree"])
        if coef is not None and coef.shape != (1 + degree * pre.condition_dim, pre.target_dim):
            raise ValueError(
                f"trend coefficients of shape {coef.shape}, expected "
                f"{(1 + degree * pre.condition_dim, pre.target_dim)}"
            )
        return DensityCard(
            preprocessor=pre,
            flow_settings=flow_settings,
            training_settings=settings,
            validation_fraction=fraction,
            result=TrainingResult(**{k: v for k, v in tr.items() if k in fields}),
            summary=card["data_summary"],
            seed=int(card["seed"]),
            domain=dict(card["domain"]),
            trend=coef,
            degree=degree,
            conditional=bool(card.get("conditional", True)),
        )
    except KeyError as err:
        raise InputError(f"'{path}': missing key {err}") from None
    except (ConfigError, TypeError, ValueError, AttributeError) as err:
        raise InputError(f"'{path}': invalid content: {err}") from None
