"""The latent space of a fast simulation's response: encode objects, decode codes, and walk
between two objects.

A flow maps an object to its latent point exactly (``z = f(x; c)``, invertible); a VAE gives
the posterior mean of q(z | x, c) and decodes with the decoder's mean; a GAN has no encoder
(:class:`~hepgen.models.base.NoEncoderError`).  Everything here takes and returns physical
units: the preprocessing of the fast simulation is applied on the way in and undone on the way
out, so a walk is a sequence of reco objects a physicist can plot.

References
----------
T. White, "Sampling generative networks", arXiv:1609.04468 (spherical interpolation of
Gaussian latent codes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from hepgen.errors import InputError
from hepgen.fastsim.columns import stored_dtypes
from hepgen.models.base import NoEncoderError

if TYPE_CHECKING:
    from hepgen.fastsim.simulator import FastSim

__all__ = ["PATHS", "decode", "encode", "interpolate", "path_points"]

#: The interpolation paths of :func:`interpolate`.
PATHS = ("linear", "slerp")


def _check_encoder(sim: FastSim, what: str) -> None:
    if not getattr(sim.response_, "has_encoder", False):
        raise NoEncoderError(
            f"FastSim.{what}: this fast simulation's response is a {sim.config.model.kind} "
            "(model.kind), which has no encoder; latent codes of given objects need a flow "
            "(exact) or a VAE (posterior mean)"
        )


def encode(sim: FastSim, objects: Mapping[str, Any]) -> np.ndarray:
    """Latent codes of reco objects at their gen conditions (model space of the response).

    Parameters
    ----------
    sim : FastSim
        A fitted fast simulation whose response has an encoder (flow or VAE).
    objects : mapping of str to array of shape (n,)
        Every condition and target feature (physical units).

    Returns
    -------
    np.ndarray of shape (n, latent size), float32
        Flows: the exact base-space point (size D); VAEs: the posterior mean.  Integer
        targets are dequantised with a fixed seed, as :meth:`FastSim.log_prob` does.

    Raises
    ------
    NoEncoderError
        The response is a GAN.
    """
    _check_encoder(sim, "encode")
    pre = sim.preprocessor_
    x = pre.transform_targets(objects, rng=np.random.default_rng(0))
    c = pre.transform_conditions(objects)
    return sim.response_.encode(x, c)


def decode(sim: FastSim, latent: Any, conditions: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Reco objects of latent codes at gen conditions (the inverse of :func:`encode`).

    Parameters
    ----------
    latent : array of shape (n, latent size)
    conditions : mapping of str to array of shape (n,)
        Every condition feature (physical units).

    Returns
    -------
    dict of str to np.ndarray of shape (n,)
        Each target in physical units and its stored dtype.
    """
    _check_encoder(sim, "decode")
    pre = sim.preprocessor_
    c = pre.transform_conditions(conditions)
    z = np.ascontiguousarray(latent, dtype=np.float32)
    x = sim.response_.decode(z, c)
    return stored_dtypes(pre.dtypes, pre.inverse_targets(x, conditions))


def path_points(
    a: np.ndarray, b: np.ndarray, t: np.ndarray, path: Literal["linear", "slerp"] = "slerp"
) -> np.ndarray:
    """Points between latent codes ``a`` and ``b`` (each of shape (d,)) at fractions ``t``
    (shape (m,)): shape (m, d).

    ``"linear"``: ``(1 - t) a + t b``.  ``"slerp"``: along the great circle between the two
    directions, with the norm interpolated linearly, so that midway points keep the norm a
    Gaussian code typically has (the midpoint of a straight line is closer to the origin, a
    region of latent space the model rarely saw; White 2016).

    Examples
    --------
    >>> a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    >>> np.round(path_points(a, b, np.array([0.5]), "slerp"), 4)
    array([[0.7071, 0.7071]])
    >>> np.round(path_points(a, b, np.array([0.5]), "linear"), 4)
    array([[0.5, 0.5]])
    """
    a, b, t = (np.asarray(v, dtype=np.float64) for v in (a, b, t))
    tt = t[:, None]
    if path == "linear":
        return (1.0 - tt) * a + tt * b
    if path != "slerp":
        raise InputError(f"interpolation path {path!r}: expected one of {PATHS}")
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0.0 or nb == 0.0:
        return (1.0 - tt) * a + tt * b
    ua, ub = a / na, b / nb
    omega = float(np.arccos(np.clip(ua @ ub, -1.0, 1.0)))
    if omega < 1e-6:  # (anti)parallel to numerical precision: the directions coincide
        direction = (1.0 - tt) * ua + tt * ub
    else:
        direction = (np.sin((1.0 - tt) * omega) * ua + np.sin(tt * omega) * ub) / np.sin(omega)
    return direction * ((1.0 - tt) * na + tt * nb)


def _one_object(sim: FastSim, obj: Mapping[str, Any], name: str) -> dict[str, np.ndarray]:
    needed = sim.condition_names + sim.target_names
    missing = [k for k in needed if k not in obj]
    if missing:
        raise InputError(f"FastSim.interpolate: {name} lacks {missing} (it needs {needed})")
    out = {k: np.atleast_1d(np.asarray(obj[k])) for k in needed}
    bad = [k for k, v in out.items() if v.shape != (1,)]
    if bad:
        raise InputError(f"FastSim.interpolate: {name} must be one object; {bad} are not scalars")
    return out


def interpolate(
    sim: FastSim,
    start: Mapping[str, Any],
    end: Mapping[str, Any],
    steps: int = 11,
    path: Literal["linear", "slerp"] = "slerp",
) -> dict[str, np.ndarray]:
    """A walk in latent space from one reco object to another.

    Both objects are encoded at their own gen conditions (:func:`encode`); the latent code
    moves along ``path`` and the conditions move linearly between the two (in model space for
    the response, in physical units for the preprocessing's references, e.g. ``Jet_pt``
    relative to ``GenJet_pt``); each point is decoded (:func:`decode`).  With the same gen
    kinematics at both ends only what differs moves: for a light and a b jet, the flavour
    condition, whose midway values are mixtures the model never saw in training (read the
    middle of such a walk as an interpolation, not as a physical jet).

    Parameters
    ----------
    sim : FastSim
        Fitted, with a flow or VAE response.
    start, end : mapping of str to scalar or array of shape (1,)
        Every condition and target of one object each (physical units).
    steps : int
        Points of the walk, ends included (>= 2).
    path : {"slerp", "linear"}
        Of the latent code (:func:`path_points`).

    Returns
    -------
    dict of str to np.ndarray of shape (steps,)
        ``"t"`` (0 ... 1), every condition (physical, interpolated linearly) and every target
        decoded (physical units, stored dtype).  At ``t = 0`` and ``t = 1`` a flow gives back
        the two objects (integer targets up to their dequantisation); a VAE gives its
        reconstructions.

    Raises
    ------
    InputError
        A missing feature, more than one object per end, ``steps < 2`` or an unknown path.
    NoEncoderError
        A GAN response.
    """
    _check_encoder(sim, "interpolate")
    if isinstance(steps, bool) or not isinstance(steps, int | np.integer) or steps < 2:
        raise InputError(f"FastSim.interpolate: steps must be an integer >= 2, got {steps!r}")
    if path not in PATHS:
        raise InputError(f"interpolation path {path!r}: expected one of {PATHS}")
    a, b = _one_object(sim, start, "start"), _one_object(sim, end, "end")
    pre = sim.preprocessor_
    t = np.linspace(0.0, 1.0, int(steps))
    za, zb = encode(sim, a)[0], encode(sim, b)[0]
    z = path_points(za, zb, t, path).astype(np.float32)
    ca, cb = pre.transform_conditions(a)[0], pre.transform_conditions(b)[0]
    c = ((1.0 - t)[:, None] * ca + t[:, None] * cb).astype(np.float32)
    conditions = {
        k: (1.0 - t) * a[k].astype(np.float64)[0] + t * b[k].astype(np.float64)[0]
        for k in sim.condition_names
    }
    x = sim.response_.decode(z, c)
    targets = stored_dtypes(pre.dtypes, pre.inverse_targets(x, conditions))
    return {"t": t, **conditions, **targets}
