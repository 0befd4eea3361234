"""The inputs of a density model, checked: feature specs by role, and numeric columns.

A density model takes its features and conditions as :class:`~hepgen.features.FeatureSpec`
or mappings, and its data as a mapping of column name to 1-D array; these checks turn every
mistake into a :class:`~hepgen.errors.ConfigError` or :class:`~hepgen.errors.InputError`
naming the column, with the available ones.  Conditions must be preprocessed by smooth maps:
a ``quantile_gaussian`` transform fitted on the sidebands is flat across the signal-region
gap, so the model could not interpolate into it.

Examples
--------
>>> import numpy as np
>>> nonfinite_problems({"x": np.array([1.0, np.nan, np.inf])}, "values")
["'x': 2 of 3 values are not finite (1 NaN, 1 inf)"]
>>> check_columns({"x": np.ones(3)}, ["x", "m"], {"x": "feature", "m": "condition"}, "fit")
Traceback (most recent call last):
...
hepgen.errors.InputError: fit: missing column(s) 'm' (condition); available: x
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hepgen.errors import ConfigError, InputError, did_you_mean
from hepgen.features import FeatureSpec
from hepgen.preprocessing import default_transforms

__all__ = ["check_columns", "check_specs", "nonfinite_problems"]

#: Transform types refused for conditions (see the module docstring).
_CONDITION_FORBIDDEN = ("quantile_gaussian",)


def _spec(item: FeatureSpec | Mapping[str, Any], role: str, where: str) -> FeatureSpec:
    """A feature spec with the given role (set when a mapping omits it)."""
    if isinstance(item, FeatureSpec):
        spec = item
    elif isinstance(item, Mapping):
        d = dict(item)
        d.setdefault("role", role)
        spec = FeatureSpec.from_dict(d)
    else:
        raise ConfigError(
            f"{where}: each entry must be a feature mapping ({{name, kind, ...}}) "
            f"or a FeatureSpec, got {item!r}"
        )
    if spec.role != role:
        raise ConfigError(
            f"{where}: feature {spec.name!r} has role {spec.role!r}; "
            f"the {where} of a density model have role {role!r}"
        )
    return spec


def check_specs(features: Any, conditions: Any) -> tuple[list[FeatureSpec], list[FeatureSpec]]:
    """The checked feature (role ``target``) and condition specs of a density model.

    Raises
    ------
    ConfigError
        Not a list of feature mappings or specs, an empty list, a wrong role, or a
        condition transform that cannot interpolate (``quantile_gaussian``).
    """
    out = []
    for label, items, role in (
        ("features", features, "target"),
        ("conditions", conditions, "condition"),
    ):
        if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Sequence):
            raise ConfigError(
                f"{label} must be a list of feature mappings or FeatureSpecs, got {items!r}"
            )
        if not items:
            raise ConfigError(f"a density model needs at least one of its {label}")
        out.append([_spec(item, role, label) for item in items])
    targets, conds = out
    for spec in conds:
        for step in default_transforms(spec):
            if step.get("type") in _CONDITION_FORBIDDEN:
                raise ConfigError(
                    f"condition {spec.name!r}: transform {step['type']!r} is not allowed for "
                    "the conditions of a density model: fitted on the sidebands, its "
                    "empirical CDF is flat across the signal-region gap, so the model "
                    "could not interpolate into it; use a smooth map (standardize, or "
                    "log + standardize: kind 'positive')"
                )
    return targets, conds


def nonfinite_problems(columns: Mapping[str, np.ndarray], what: str) -> list[str]:
    """One line per floating-point column with NaN/inf: ``"'name': k of n <what> (a NaN,
    b inf)"``; empty when every value is finite."""
    bad = []
    for name, a in columns.items():
        if a.dtype.kind == "f":
            n_bad = len(a) - int(np.count_nonzero(np.isfinite(a)))
            if n_bad:
                n_nan = int(np.count_nonzero(np.isnan(a)))
                bad.append(
                    f"'{name}': {n_bad} of {len(a)} {what} are not finite ({n_nan} NaN, "
                    f"{n_bad - n_nan} inf)"
                )
    return bad


def check_columns(
    columns: Mapping[str, Any], names: Sequence[str], roles: Mapping[str, str], where: str
) -> tuple[dict[str, np.ndarray], int]:
    """The named 1-D numeric columns, checked: present, equal length, finite.

    Parameters
    ----------
    columns : mapping of str to array of shape (n,)
        The data (extra columns ignored).
    names : sequence of str
        The columns wanted.
    roles : mapping of str to str
        What each wanted column is (``"feature"``, ``"condition"``), for messages.
    where : str
        Who asks (``"DensityModel.fit"``), for messages.

    Returns
    -------
    columns : dict of str to np.ndarray
        The wanted columns, shape (n,) each.
    n : int
        Their length.

    Raises
    ------
    InputError
        A missing column (with close matches and the available ones), a column that is not
        1-D or not numeric, columns of different lengths, or non-finite values.
    """
    if not isinstance(columns, Mapping) and not hasattr(columns, "keys"):
        raise InputError(
            f"{where}: columns must be a mapping of column name to 1-D array, "
            f"got {type(columns).__name__}"
        )
    available = [str(k) for k in columns.keys()]
    missing = [n for n in names if n not in available]
    if missing:
        parts = [f"{n!r} ({roles[n]}){did_you_mean(n, available)}" for n in missing]
        raise InputError(
            f"{where}: missing column(s) {'; '.join(parts)}; available: "
            f"{', '.join(available) or 'none'}"
        )
    out: dict[str, np.ndarray] = {}
    n = None
    for name in names:
        a = np.asarray(columns[name])
        if a.ndim != 1:
            raise InputError(
                f"{where}: column {name!r} must be 1-D (one value per event), got shape {a.shape}"
            )
        if a.dtype.kind not in "biuf":
            raise InputError(f"{where}: column {name!r} must hold numbers, got dtype {a.dtype}")
        if n is None:
            n = len(a)
        elif len(a) != n:
            raise InputError(
                f"{where}: column {name!r} has {len(a)} rows, column "
                f"{names[0]!r} has {n}; columns must have equal length"
            )
        out[name] = a
    bad = nonfinite_problems(out, "values")
    if bad:
        raise InputError(f"{where}: " + "; ".join(bad))
    return out, int(n or 0)
