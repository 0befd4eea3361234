"""The conditional flow families of ``model.flow.kind``, one per module, and their registry.

=================  ==========================================  ===============  ===============
kind               class                                       sample           log_prob
=================  ==========================================  ===============  ===============
``coupling``       :class:`hepgen.models.flow.ConditionalFlow`  1 pass           1 pass
``autoregressive`` :class:`hepgen.models.flow.ConditionalFlow`  D passes         1 pass
``nice``           :class:`~.nice.NICEFlow`                    1 pass           1 pass
``realnvp``        :class:`~.realnvp.RealNVPFlow`              1 pass           1 pass
``glow``           :class:`~.glow.GlowFlow`                    1 pass           1 pass
``maf``            :class:`~.autoregressive.MAFFlow`           D passes         1 pass
``iaf``            :class:`~.autoregressive.IAFFlow`           1 pass           D passes
``residual``       :class:`~.residual.ResidualFlow`            fixed-point      exact log-det
                                                               iterations       (D tangents)
``flow-matching``  :class:`~.matching.FlowMatching`            ODE steps        adaptive ODE
=================  ==========================================  ===============  ===============

Every class implements :class:`~hepgen.models.flows.base.FlowModule` (``log_prob``,
``sample``, ``to_latent``, ``from_latent``, ``loss``, ``describe``, ``cost``), so
:class:`~hepgen.models.flow_model.FlowModel`, the model files and the fast simulation treat
them alike.  :func:`build_flow` builds the class of a kind; the modules are imported on first
use.
"""

from __future__ import annotations

import importlib
from typing import Any

from hepgen.settings.models import FLOW_KINDS, FlowSettings

__all__ = ["FAMILIES", "FLOW_KINDS", "build_flow", "flow_class"]

#: kind -> "module:Class" of its flow module.
FAMILIES = {
    "coupling": "hepgen.models.flow:ConditionalFlow",
    "autoregressive": "hepgen.models.flow:ConditionalFlow",
    "nice": "hepgen.models.flows.nice:NICEFlow",
    "realnvp": "hepgen.models.flows.realnvp:RealNVPFlow",
    "glow": "hepgen.models.flows.glow:GlowFlow",
    "maf": "hepgen.models.flows.autoregressive:MAFFlow",
    "iaf": "hepgen.models.flows.autoregressive:IAFFlow",
    "residual": "hepgen.models.flows.residual:ResidualFlow",
    "flow-matching": "hepgen.models.flows.matching:FlowMatching",
}


def flow_class(kind: str) -> type:
    """The flow module class of ``kind`` (one of :data:`FLOW_KINDS`)."""
    if kind not in FAMILIES:
        raise ValueError(f"flow kind must be one of {FLOW_KINDS}, got {kind!r}")
    module, name = FAMILIES[kind].split(":")
    return getattr(importlib.import_module(module), name)


def build_flow(
    n_features: int, n_conditions: int, settings: FlowSettings | None = None, seed: int = 0
) -> Any:
    """A new flow module of ``settings.kind``.

    Parameters
    ----------
    n_features, n_conditions : int
        D targets and C conditions.
    settings : FlowSettings or None
        Architecture (default: the RQ-spline coupling flow).
    seed : int
        Seeds the initialisation.

    Returns
    -------
    FlowModule

    Examples
    --------
    >>> flow = build_flow(3, 2, FlowSettings(kind="realnvp", n_transforms=2, hidden_features=8))
    >>> type(flow).__name__, flow.cost()["sample"]
    ('RealNVPFlow', '1 pass')
    """
    settings = settings if settings is not None else FlowSettings()
    if not isinstance(settings, FlowSettings):
        raise TypeError(f"settings must be a FlowSettings, got {type(settings).__name__}")
    return flow_class(settings.kind)(n_features, n_conditions, settings, seed=seed)
