"""The fitted mapping between raw physics columns and model matrices: :class:`Preprocessor`.

A :class:`Preprocessor` holds one :class:`~hepgen.preprocessing.FeaturePipeline` per feature of
a :class:`~hepgen.features.FeatureSchema`; it maps the raw condition and target columns to the
standardised ``float32`` matrices that flows and GANs train on and back, restores the raw
integer dtypes, records the conditions' domain, and is stored as plain JSON.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hepgen._version import __version__
from hepgen.errors import ConfigError, InputError
from hepgen.features import FeatureSchema, FeatureSpec
from hepgen.preprocessing.columns import cast_to_dtype, check_matrix, read_columns
from hepgen.preprocessing.pipeline import FeaturePipeline
from hepgen.stats import check_weights
from hepgen.transforms import Index, NotFittedError, OneHot
from hepgen.transforms.base import seeded_rng
from hepgen.utils import atomic_write_text

__all__ = ["Preprocessor"]

_FORMAT = "hepgen.preprocessor"
_FORMAT_VERSION = 2


class Preprocessor:
    """Fitted mapping between raw columns and the standardised float32 model matrices.

    Parameters
    ----------
    schema : FeatureSchema
        Conditions and targets; the constructor only stores it, :meth:`fit` does the work.

    Notes
    -----
    * Dequantisation noise: ``rng=None`` uses a generator seeded with
      :data:`~hepgen.transforms.DEFAULT_SEED`, shared across the target features in schema
      order, so outputs are reproducible; pass a fresh generator (e.g. per epoch) for new noise.
    * Continuous targets are returned as float64, integer and categorical ones in the dtype seen
      in ``fit`` (e.g. ``uint8``).  Values are not clipped to the fitted range, except by the
      transforms themselves (``logit`` keeps bounds, ``dequantize`` clips to its range).
    * :attr:`domain` records the range of each condition seen in ``fit`` (``min``/``max``, or
      ``categories``; with sentinels the range of the other values and the ``sentinels`` seen)
      so that generation outside the trained domain can be flagged (:meth:`out_of_domain`).
    * A feature with sentinels has two columns, ``"name:sentinel"`` and ``"name"`` (see
      :mod:`hepgen.preprocessing.sentinels`); its sentinels come back exactly as stored.

    References
    ----------
    Theis et al., arXiv:1511.01844 (dequantisation); Krause & Shih, arXiv:2106.05285 (logit of
    bounded data); Maevskiy et al., arXiv:1905.11825 (quantile preprocessing).

    Examples
    --------
    >>> rng = np.random.default_rng(2)
    >>> n = 500
    >>> data = {"GenJet_eta": rng.uniform(-2.4, 2.4, n),
    ...         "GenJet_hadronFlavour": rng.choice([0, 4, 5], n).astype(np.int32),
    ...         "Jet_nConstituents": rng.poisson(12, n).astype(np.uint8)}
    >>> data["Jet_eta"] = data["GenJet_eta"] + rng.normal(0, 0.02, n)
    >>> schema = FeatureSchema([
    ...     FeatureSpec("GenJet_eta", "condition"),
    ...     FeatureSpec("GenJet_hadronFlavour", "condition", "categorical"),
    ...     FeatureSpec("Jet_eta", "target", relative_to="GenJet_eta"),
    ...     FeatureSpec("Jet_nConstituents", "target", "integer")])
    >>> pre = Preprocessor(schema).fit(data)
    >>> pre.condition_columns
    ['GenJet_eta', 'GenJet_hadronFlavour==0', 'GenJet_hadronFlavour==4', 'GenJet_hadronFlavour==5']
    >>> back = pre.inverse_targets(pre.transform_targets(data), data)
    >>> back["Jet_nConstituents"].dtype, bool((back["Jet_nConstituents"] == data["Jet_nConstituents"]).all())
    (dtype('uint8'), True)
    """

    def __init__(self, schema: FeatureSchema):
        if not isinstance(schema, FeatureSchema):
            raise TypeError(f"Preprocessor needs a FeatureSchema, got {type(schema).__name__}")
        self.schema = schema
        self._pipelines: dict[str, FeaturePipeline] | None = None
        self._dtypes: dict[str, np.dtype] = {}
        self._domain: dict[str, dict[str, Any]] = {}
        self._n_fit = 0
        self._weighted = False

    # -- properties ---------------------------------------------------------------------------

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` (or :meth:`load`) has run."""
        return self._pipelines is not None

    def _require_fitted(self) -> dict[str, FeaturePipeline]:
        if self._pipelines is None:
            raise NotFittedError("the Preprocessor is not fitted; call fit() or load() first")
        return self._pipelines

    @property
    def pipelines(self) -> dict[str, FeaturePipeline]:
        """The fitted pipeline of each feature, by name."""
        return dict(self._require_fitted())

    @property
    def condition_columns(self) -> list[str]:
        """Names of the columns of :meth:`transform_conditions` (one-hot expanded)."""
        p = self._require_fitted()
        return [c for s in self.schema.conditions for c in p[s.name].columns]

    @property
    def target_columns(self) -> list[str]:
        """Names of the columns of :meth:`transform_targets`."""
        p = self._require_fitted()
        return [c for s in self.schema.targets for c in p[s.name].columns]

    @property
    def condition_dim(self) -> int:
        """Number of condition columns."""
        return len(self.condition_columns)

    @property
    def target_dim(self) -> int:
        """Number of target columns."""
        return len(self.target_columns)

    @property
    def domain(self) -> dict[str, dict[str, Any]]:
        """Validity domain of the conditions seen in fit.

        ``{name: {"min": float, "max": float}}`` for numeric conditions,
        ``{name: {"categories": [float, ...]}}`` for categorical ones; with sentinels
        ``{name: {"min", "max", "sentinels": [float, ...]}}``: the range of the other values
        (absent if there were none) and the sentinels seen, as stored.
        """
        self._require_fitted()
        return copy.deepcopy(self._domain)

    @property
    def dtypes(self) -> dict[str, str]:
        """The dtype of each raw column seen in fit, by name (e.g. ``"uint8"``)."""
        self._require_fitted()
        return {k: v.name for k, v in self._dtypes.items()}

    # -- inputs -------------------------------------------------------------------------------

    def _target_inputs(self, pipelines, with_targets: bool) -> tuple[list[str], dict[str, str]]:
        names: list[str] = []
        why: dict[str, str] = {}
        if with_targets:
            for s in self.schema.targets:
                names.append(s.name)
                why[s.name] = "target"
        for s in self.schema.targets:
            for c in pipelines[s.name].context_names:
                if c not in why:
                    names.append(c)
                    why[c] = f"condition that target {s.name!r} is relative to"
        return names, why

    # -- fit ------------------------------------------------------------------------------------

    def fit(
        self, data: Mapping[str, np.ndarray], weights: np.ndarray | None = None
    ) -> Preprocessor:
        """Fit every feature's pipeline and record dtypes and the conditions' domain.

        Parameters
        ----------
        data : mapping of str to array of shape (n,)
            Raw columns of all conditions and targets (physical units); extra columns are
            ignored.
        weights : array of shape (n,), optional
            Per-row weights, e.g. sWeights (negative values allowed, positive sum).

        Returns
        -------
        Preprocessor
            ``self``.

        Raises
        ------
        InputError
            Missing columns, unequal lengths, NaN/inf, or values a transform cannot take.
        """
        names = self.schema.names
        why = {s.name: s.role for s in self.schema}
        cols, dtypes, n = read_columns(data, names, why)
        if n == 0:
            raise InputError("no rows to fit")
        w = check_weights(weights, n, "fit")
        pipelines = {s.name: FeaturePipeline(s) for s in self.schema}
        context = {s.name: cols[s.name] for s in self.schema.conditions}
        domain: dict[str, dict[str, Any]] = {}
        for s in self.schema.conditions:
            x = cols[s.name]
            pipe = pipelines[s.name]
            pipe._fit(x, None, w, seeded_rng(None), dtypes[s.name])
            if s.kind == "categorical":
                last = pipe.transforms[-1]
                cats = last.classes if isinstance(last, (OneHot, Index)) else np.unique(x)
                domain[s.name] = {"categories": [float(c) for c in cats]}
            elif pipe.flag is not None:
                idx = pipe.flag.match(x)
                dom: dict[str, Any] = {}
                ordinary = x[idx == 0]
                if len(ordinary):
                    dom.update(min=float(ordinary.min()), max=float(ordinary.max()))
                seen = np.unique(idx[idx > 0])
                dom["sentinels"] = [float(pipe.flag.values[k - 1]) for k in seen]
                domain[s.name] = dom
            else:
                domain[s.name] = {"min": float(x.min()), "max": float(x.max())}
        rng = seeded_rng(None)
        for s in self.schema.targets:
            pipelines[s.name]._fit(cols[s.name], context, w, rng, dtypes[s.name])
        self._pipelines = pipelines
        self._dtypes = dtypes
        self._domain = domain
        self._n_fit = n
        self._weighted = w is not None
        return self

    # -- conditions -----------------------------------------------------------------------------

    def transform_conditions(self, data: Mapping[str, np.ndarray]) -> np.ndarray:
        """Raw condition columns -> model condition matrix.

        Parameters
        ----------
        data : mapping of str to array of shape (n,)
            Must hold every condition.

        Returns
        -------
        ndarray of float32, shape (n, condition_dim)
            Columns as in :attr:`condition_columns`.
        """
        p = self._require_fitted()
        specs = self.schema.conditions
        cols, _, n = read_columns(
            data, [s.name for s in specs], {s.name: "condition" for s in specs}
        )
        out = np.empty((n, self.condition_dim), dtype=np.float32)
        j = 0
        for s in specs:
            y = p[s.name]._forward(cols[s.name], None, None)[0]
            k = p[s.name].n_out
            out[:, j : j + k] = y.reshape(n, k)
            j += k
        return out

    def inverse_conditions(self, c: np.ndarray) -> dict[str, np.ndarray]:
        """Model condition matrix -> raw condition columns.

        Parameters
        ----------
        c : array of shape (n, condition_dim)

        Returns
        -------
        dict of str to ndarray of shape (n,)
            Integer and categorical conditions in their recorded dtype, others float64.
        """
        p = self._require_fitted()
        c = check_matrix(c, self.condition_dim, self.condition_columns, "condition")
        out: dict[str, np.ndarray] = {}
        j = 0
        for s in self.schema.conditions:
            k = p[s.name].n_out
            y = c[:, j] if k == 1 else c[:, j : j + k]
            out[s.name] = self._restore(s, p[s.name].inverse(y, None))
            j += k
        return out

    def out_of_domain(self, data: Mapping[str, np.ndarray]) -> dict[str, int]:
        """Count the rows of each condition outside the domain seen in fit.

        Parameters
        ----------
        data : mapping of str to array of shape (n,)
            Must hold every condition.

        Returns
        -------
        dict of str to int
            For each condition, the number of values below ``min``, above ``max`` or not
            among the fitted categories.
        """
        p = self._require_fitted()
        specs = self.schema.conditions
        cols, _, _ = read_columns(
            data, [s.name for s in specs], {s.name: "condition" for s in specs}
        )
        counts = {}
        for s in specs:
            x, dom = cols[s.name], self._domain[s.name]
            if "categories" in dom:
                counts[s.name] = int(np.count_nonzero(~np.isin(x, dom["categories"])))
                continue
            flag = p[s.name].flag
            if flag is None:
                counts[s.name] = int(np.count_nonzero((x < dom["min"]) | (x > dom["max"])))
                continue
            idx = flag.match(x)
            ordinary = idx == 0
            if "min" in dom:
                inside = ordinary & (x >= dom["min"]) & (x <= dom["max"])
            else:
                inside = np.zeros(len(x), dtype=bool)
            seen = [k + 1 for k, v in enumerate(flag.values) if float(v) in dom["sentinels"]]
            inside |= np.isin(idx, seen)
            counts[s.name] = int(np.count_nonzero(~inside))
        return counts

    # -- targets --------------------------------------------------------------------------------

    def transform_targets(
        self, data: Mapping[str, np.ndarray], rng: np.random.Generator | int | None = None
    ) -> np.ndarray:
        """Raw target columns -> model target matrix.

        Parameters
        ----------
        data : mapping of str to array of shape (n,)
            Every target, and the conditions that targets are relative to.
        rng : numpy.random.Generator, int or None
            Dequantisation noise; ``None``: fixed seed :data:`~hepgen.transforms.DEFAULT_SEED` (deterministic).

        Returns
        -------
        ndarray of float32, shape (n, target_dim)
        """
        p = self._require_fitted()
        names, why = self._target_inputs(p, with_targets=True)
        cols, _, n = read_columns(data, names, why)
        gen = seeded_rng(rng)
        out = np.empty((n, self.target_dim), dtype=np.float32)
        j = 0
        for s in self.schema.targets:
            k = p[s.name].n_out
            out[:, j : j + k] = p[s.name]._forward(cols[s.name], cols, gen)[0].reshape(n, k)
            j += k
        return out

    def inverse_targets(
        self, z: np.ndarray, data: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Model target matrix (e.g. generated) -> raw target columns.

        Parameters
        ----------
        z : array of shape (n, target_dim)
            float32 or float64.
        data : mapping of str to array of shape (n,)
            The conditions that targets are relative to (may be empty otherwise).

        Returns
        -------
        dict of str to ndarray of shape (n,)
            Integer and categorical targets in their recorded dtype (e.g. ``uint8``), the others
            as float64, in physical units.
        """
        p = self._require_fitted()
        z = check_matrix(z, self.target_dim, self.target_columns, "target")
        names, why = self._target_inputs(p, with_targets=False)
        ctx, _, _ = read_columns(data, names, why, n=len(z))
        out: dict[str, np.ndarray] = {}
        j = 0
        for s in self.schema.targets:
            k = p[s.name].n_out
            y = z[:, j] if k == 1 else z[:, j : j + k]
            out[s.name] = self._restore(s, p[s.name].inverse(y, ctx))
            j += k
        return out

    def target_log_abs_det_jacobian(
        self, data: Mapping[str, np.ndarray], rng: np.random.Generator | int | None = None
    ) -> np.ndarray:
        """``sum over targets of log|dz/dx|`` at the raw targets, shape (n,).

        ``log p(x | c) = log p_z(z | c) + target_log_abs_det_jacobian(x)`` gives the density in
        the targets' physical units (per unit of the integer for discrete targets).

        Parameters
        ----------
        data : mapping of str to array of shape (n,)
            As for :meth:`transform_targets`.
        rng : numpy.random.Generator, int or None
            Only matters when a non-affine step follows ``dequantize``; the same ``rng`` state
            as given to :meth:`transform_targets` evaluates at the same dequantised point.

        Returns
        -------
        ndarray of float64, shape (n,)
        """
        p = self._require_fitted()
        names, why = self._target_inputs(p, with_targets=True)
        cols, _, n = read_columns(data, names, why)
        gen = seeded_rng(rng)
        total = np.zeros(n)
        for s in self.schema.targets:
            total += p[s.name]._forward(cols[s.name], cols, gen, log_det=True)[1]
        return total

    # -- helpers --------------------------------------------------------------------------------

    def _restore(self, spec: FeatureSpec, x: np.ndarray) -> np.ndarray:
        if spec.kind in ("integer", "categorical"):
            return cast_to_dtype(x, self._dtypes.get(spec.name, np.dtype(np.float64)))
        return x

    # -- serialisation ------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict: schema, fitted pipelines, dtypes, domain."""
        # Version 2 added sentinels; files without them keep version 1, readable by older hepgen.
        version = _FORMAT_VERSION if any(s.sentinels for s in self.schema) else 1
        d: dict[str, Any] = {
            "format": _FORMAT,
            "format_version": version,
            "hepgen_version": __version__,
            "schema": self.schema.to_dict(),
            "fitted": self.is_fitted,
        }
        if self._pipelines is not None:
            d["n_fit"] = self._n_fit
            d["weighted"] = self._weighted
            d["dtypes"] = {k: v.name for k, v in self._dtypes.items()}
            d["domain"] = self.domain
            d["pipelines"] = {k: _pipeline_entry(p) for k, p in self._pipelines.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Preprocessor:
        """Build from :meth:`to_dict` output.

        Raises
        ------
        ConfigError
            Wrong format or version, or invalid content.
        """
        if not isinstance(d, Mapping) or d.get("format") != _FORMAT:
            raise ConfigError(f"not a hepgen preprocessor (expected 'format': {_FORMAT!r})")
        version = d.get("format_version")
        if not isinstance(version, int) or version > _FORMAT_VERSION:
            raise ConfigError(
                f"preprocessor format_version {version!r} is not supported (this hepgen reads "
                f"up to {_FORMAT_VERSION}); upgrade hepgen"
            )
        pre = cls(FeatureSchema.from_dict(d.get("schema", {})))
        if not d.get("fitted"):
            return pre
        try:
            pipes = d["pipelines"]
            dtypes = {k: np.dtype(v) for k, v in d["dtypes"].items()}
            domain = {k: dict(v) for k, v in d["domain"].items()}
            n_fit = int(d["n_fit"])
            weighted = bool(d["weighted"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"fitted preprocessor: missing or invalid entry {exc}") from None
        pipelines = {}
        for spec in pre.schema:
            if spec.name not in pipes:
                raise ConfigError(f"fitted preprocessor: no pipeline for feature {spec.name!r}")
            entry = pipes[spec.name]
            if isinstance(entry, Mapping):  # format_version 2: a feature with sentinels
                unknown = [k for k in entry if k not in ("transforms", "sentinel")]
                if unknown or "transforms" not in entry:
                    raise ConfigError(
                        f"fitted preprocessor: the pipeline of feature {spec.name!r} must be a "
                        "list of transforms or {'transforms': [...], 'sentinel': {...}}"
                    )
                pipe = FeaturePipeline._build(spec, entry["transforms"], entry.get("sentinel"))
            else:
                pipe = FeaturePipeline._build(spec, entry, None)
            if not pipe.is_fitted:
                raise ConfigError(f"fitted preprocessor: feature {spec.name!r} lacks fitted state")
            pipelines[spec.name] = pipe
        pre._pipelines = pipelines
        pre._dtypes = dtypes
        pre._domain = domain
        pre._n_fit = n_fit
        pre._weighted = weighted
        return pre

    def save(self, path: str | os.PathLike) -> Path:
        """Write :meth:`to_dict` as JSON, atomically (temporary file + ``os.replace``).

        Parameters
        ----------
        path : str or path-like
            Target file, conventionally ``*.json``; missing parent folders are created.

        Returns
        -------
        pathlib.Path
            The written path.
        """
        return atomic_write_text(path, _dumps(self.to_dict()) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> Preprocessor:
        """Read a file written by :meth:`save`.

        Raises
        ------
        InputError
            The file is missing or not JSON.
        ConfigError
            The JSON is not a valid preprocessor.
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputError(f"preprocessor file {str(path)!r} not found") from None
        except OSError as exc:
            raise InputError(f"cannot read preprocessor file {str(path)!r}: {exc}") from None
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"preprocessor file {str(path)!r} is not valid JSON: {exc}") from None
        return cls.from_dict(d)

    def __repr__(self) -> str:
        state = "fitted" if self.is_fitted else "unfitted"
        return f"Preprocessor({self.schema!r}, {state})"


def _pipeline_entry(pipe: FeaturePipeline) -> list[dict[str, Any]] | dict[str, Any]:
    """A pipeline in the preprocessor's JSON: its transforms, plus the sentinel state if any."""
    d = pipe.to_dict()
    if "sentinel" in d:
        return {"transforms": d["transforms"], "sentinel": d["sentinel"]}
    return d["transforms"]


def _dumps(obj: Any, indent: int = 0) -> str:
    """JSON with nested objects indented but lists of scalars on one line (compact knots)."""
    pad = "  " * (indent + 1)
    if isinstance(obj, Mapping) and obj:
        items = [f"{pad}{json.dumps(str(k))}: {_dumps(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + "  " * indent + "}"
    if isinstance(obj, list) and any(isinstance(v, (Mapping, list)) for v in obj):
        items = [f"{pad}{_dumps(v, indent + 1)}" for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + "  " * indent + "]"
    return json.dumps(obj, allow_nan=False)
