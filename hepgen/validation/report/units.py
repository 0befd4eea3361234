"""Physical units of feature names, for axis labels and tables of the validation report.

A user map (``{"Jet_pt": "GeV"}``) wins; otherwise the unit is inferred from the name's last
``_``-separated token, the NanoAOD convention: momenta, masses and energies (``pt``, ``mass``,
``energy``, ``E``, ``met``, ``sumEt``, ...) are in GeV; angles ``phi`` in rad;
pseudorapidity, rapidity, ratios (``a/b``), counts (``n...``), flavours, tag scores and
everything unknown are dimensionless (no unit shown).  A difference ``a-b`` of two features
takes their unit when both agree; a product/ratio of two features is dimensionless only when
both share the same unit (``Jet_pt/GenJet_pt``), else unknown (dimensionless).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["axis_label", "infer_unit", "unit_of"]

#: Last-token (lower case) -> unit.
_GEV = {
    "pt",
    "mass",
    "m",
    "energy",
    "e",
    "et",
    "met",
    "sumet",
    "ht",
    "mht",
    "px",
    "py",
    "pz",
    "p",
    "msoftdrop",
    "rawpt",
}
_RAD = {"phi", "dphi", "deltaphi", "theta"}


def infer_unit(name: str) -> str:
    """The unit of a feature inferred from its name ("" = dimensionless).

    Parameters
    ----------
    name : str
        Feature name, e.g. ``"Jet_pt"``, ``"Jet_pt/GenJet_pt"``, ``"Jet_phi-GenJet_phi"``.

    Returns
    -------
    str
        ``"GeV"``, ``"rad"`` or ``""``.

    References
    ----------
    CMS NanoAOD branch conventions (momenta, masses, energies in GeV; angles in rad):
    https://cms-nanoaod-integration.web.cern.ch/autoDoc/

    Examples
    --------
    >>> [infer_unit(n) for n in ("Jet_pt", "MET_pt", "Jet_eta", "Jet_phi", "nJet")]
    ['GeV', 'GeV', '', 'rad', '']
    >>> infer_unit("Jet_pt/GenJet_pt"), infer_unit("Jet_phi-GenJet_phi"), infer_unit("E")
    ('', 'rad', 'GeV')
    """
    name = name.strip()
    if "/" in name or "*" in name:
        return ""
    parts = [p for p in re.split(r"(?<!^)-", name) if p]
    if len(parts) > 1:
        units = {infer_unit(p) for p in parts}
        return units.pop() if len(units) == 1 else ""
    token = re.split(r"[_.]", name)[-1]
    if token == "E":
        return "GeV"
    low = token.lower()
    if low in _GEV:
        return "GeV"
    if low in _RAD:
        return "rad"
    return ""


def unit_of(name: str, units: Mapping[str, str] | None = None) -> str:
    """The unit of ``name``: ``units[name]`` when given, else :func:`infer_unit`.

    Parameters
    ----------
    name : str
        Feature name.
    units : mapping or None
        User units, ``{name: unit}`` ("" = dimensionless).

    Returns
    -------
    str

    References
    ----------
    See :func:`infer_unit`.

    Examples
    --------
    >>> unit_of("Jet_pt", {"Jet_pt": "TeV"}), unit_of("Jet_pt")
    ('TeV', 'GeV')
    """
    if units and name in units:
        return str(units[name] or "")
    return infer_unit(name)


def axis_label(name: str, units: Mapping[str, str] | None = None) -> str:
    """``"Jet_pt [GeV]"``, or the bare name for a dimensionless feature.

    Parameters
    ----------
    name : str
        Feature name.
    units : mapping or None
        User units, see :func:`unit_of`.

    Returns
    -------
    str

    References
    ----------
    See :func:`infer_unit`.

    Examples
    --------
    >>> axis_label("Jet_pt"), axis_label("Jet_eta")
    ('Jet_pt [GeV]', 'Jet_eta')
    """
    unit = unit_of(name, units)
    return f"{name} [{unit}]" if unit else name
