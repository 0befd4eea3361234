"""The torch modules that ``hepgen export`` writes, read from a model directory.

A model directory holds one or two generators in model space: a fast simulation's response
(stem ``flow`` or ``gan``) and, when it was trained, its fakes (``fakes_flow`` / ``fakes_gan``);
a density model of :mod:`hepgen.anomaly.density` holds one flow (stem ``flow``).  For each,
:func:`load_graphs` builds an :class:`ExportGraph`: the pure functions to export

* a flow: :class:`~hepgen.models.flow_graph.SamplingGraph` ``(z, c) -> x`` and
  :class:`~hepgen.models.flow_graph.DensityGraph` ``(x, c) -> log_prob``;
* a GAN: :class:`GeneratorGraph` ``(z, c) -> x``, the generator network that
  :meth:`~hepgen.models.gan_nets.ConditionalGAN.sample` applies (the moving-average one when
  there is one) on noise given by the caller;

with the eager Python functions they must match (the reference of the parity check:
:meth:`ConditionalFlow.from_latent` / :meth:`ConditionalFlow.log_prob`,
:meth:`ConditionalGAN.generate`) and model-space conditions to check them on
(:func:`domain_conditions`).  Preprocessing, the efficiency model, the fake multiplicities and
a density model's trend stay outside the graphs (``docs/export.md``).
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from hepgen.errors import InputError
from hepgen.models.flow_graph import PRECISIONS, DensityGraph, SamplingGraph

__all__ = [
    "PARITY_CONDITIONS",
    "ExportGraph",
    "GeneratorGraph",
    "VAEGraph",
    "domain_conditions",
    "generator_graph",
    "load_graphs",
    "model_files",
    "vae_sample_path",
]

#: Rows of conditions drawn from the training domain for the parity check.
PARITY_CONDITIONS = 4096

#: How the parity conditions were made (the ``conditions`` entry of each graph in export.json).
FROM_DOMAIN = "training domain: raw conditions uniform over the ranges and categories stored"
FROM_NORMAL = "standard normal model-space contexts (no usable training domain stored)"
FROM_CONSTANT = "the constant context of an unconditional density model (zeros)"

Array = np.ndarray


class GeneratorGraph(nn.Module):
    """``x = G(z, c)``: a GAN's generator network on noise given by the caller.

    Parameters
    ----------
    gan : ConditionalGAN
        The trained GAN; the network that sampling uses is taken (its moving average when the
        GAN has one, else the generator) and copied, so the GAN is never changed.

    Notes
    -----
    ``forward(z, c)`` takes standard normal draws ``z`` (n, latent_dim) and model-space
    conditions ``c`` (n, C), float32, and returns the targets (n, D): what
    :meth:`~hepgen.models.gan_nets.ConditionalGAN.sample` returns for the same noise.

    Examples
    --------
    >>> import torch
    >>> from hepgen.models.gan_nets import ConditionalGAN, GANSettings
    >>> gan = ConditionalGAN(2, 3, GANSettings(hidden_features=16, latent_dim=4), seed=1)
    >>> z, c = torch.randn(5, 4), torch.randn(5, 3)
    >>> bool(torch.equal(GeneratorGraph(gan)(z, c), gan.generate(z, c, ema=True)))
    True
    """

    def __init__(self, gan: Any) -> None:
        super().__init__()
        net = gan.generator_ema if gan.generator_ema is not None else gan.generator
        self.net = copy.deepcopy(net).eval().requires_grad_(False)
        self.n_features = int(gan.n_features)
        self.n_conditions = int(gan.n_conditions)
        self.n_latent = int(gan.settings.latent_dim)

    def forward(self, z: Tensor, c: Tensor) -> Tensor:
        return self.net(torch.cat([z, c], dim=1))


class VAEGraph(nn.Module):
    """``x = decoder(prior(e_z; c), c) + noise``: a VAE's sampling path on noise given by the
    caller.

    Parameters
    ----------
    vae : ConditionalVAE
        The trained VAE; its prior (when conditional) and decoder are copied, so the VAE is
        never changed.

    Notes
    -----
    ``forward(e, c)`` takes standard normal draws ``e`` (n, latent_dim + D): the first
    ``latent_dim`` columns give ``z = m_p(c) + s_p(c) e_z`` from the prior, the last D the
    decoder's noise, ``x = m_x(z, c) + s_x(z, c) e_x``; what
    :meth:`~hepgen.models.vae.ConditionalVAE.sample` computes from its two draws.

    References
    ----------
    D. P. Kingma, M. Welling, arXiv:1312.6114; K. Sohn, H. Lee, X. Yan, NeurIPS 2015.
    """

    def __init__(self, vae: Any) -> None:
        super().__init__()
        self.vae = copy.deepcopy(vae).eval().requires_grad_(False)
        self.n_features = int(vae.n_features)
        self.n_conditions = int(vae.n_conditions)
        self.latent_dim = int(vae.latent_dim)
        self.n_latent = self.latent_dim + self.n_features

    def forward(self, e: Tensor, c: Tensor) -> Tensor:
        return vae_sample_path(self.vae, e, c, self.latent_dim)


def vae_sample_path(vae: Any, e: Tensor, c: Tensor, latent_dim: int) -> Tensor:
    """The VAE's sample of noise ``e`` (n, latent_dim + D) at conditions ``c`` (n, C)."""
    e_z, e_x = e[:, :latent_dim], e[:, latent_dim:]
    mean_p, log_p = vae.prior_params(c)
    mean_x, log_x = vae.decode(mean_p + torch.exp(log_p) * e_z, c)
    return mean_x + torch.exp(log_x) * e_x


@dataclasses.dataclass
class ExportGraph:
    """One generator of a model directory, ready to export and to check.

    Attributes
    ----------
    stem : str
        File stem (``flow``, ``gan``, ``fakes_flow``, ``fakes_gan``).
    role : {"response", "fakes", "density"}
        What the generator is in its model directory.
    kind : {"flow", "gan", "vae"}
    n_features, n_conditions, n_latent : int
        Widths D of the targets, C of the conditions and of the noise ``z`` (D for a flow,
        ``latent_dim`` for a GAN, ``latent_dim + D`` for a VAE).
    sample : nn.Module
        ``forward(z, c) -> x``.
    log_prob : nn.Module or None
        ``forward(x, c) -> log_prob`` (flows only).
    reference_sample : callable
        The eager model: float32 ``(z, c) -> x`` as numpy arrays.
    reference_log_prob : callable or None
        The eager model: float32 ``(x, c) -> log_prob`` (nats, model space).
    conditions : np.ndarray of shape (m, C)
        Model-space conditions for the parity check.
    conditions_from : str
        How ``conditions`` were made (written to export.json).
    precision : {"float32", "bfloat16"}
        Of the conditioners' matrix products (a GAN's graph is always float32).
    """

    stem: str
    role: str
    kind: str
    n_features: int
    n_conditions: int
    n_latent: int
    sample: nn.Module
    log_prob: nn.Module | None
    reference_sample: Callable[[Array, Array], Array]
    reference_log_prob: Callable[[Array, Array], Array] | None
    conditions: Array
    conditions_from: str
    precision: str = "float32"

    def entry(self, folder: str, suffix: str) -> dict[str, Any]:
        """The graph's entry of export.json (``folder``: ``onnx`` or ``torchscript``,
        ``suffix``: ``.onnx`` or ``.pt``)."""
        return {
            "role": self.role,
            "kind": self.kind,
            "n_features": self.n_features,
            "n_conditions": self.n_conditions,
            "n_latent": self.n_latent,
            "noise": "standard_normal",
            "sample": f"{folder}/{self.stem}.sample{suffix}",
            "log_prob": f"{folder}/{self.stem}.log_prob{suffix}" if self.log_prob else None,
            "precision": self.precision,
            "conditions": self.conditions_from,
        }


def _numpy_fn(fn: Callable[[Tensor, Tensor], Tensor]) -> Callable[[Array, Array], Array]:
    """A torch function of two float32 tensors as a numpy function (no gradients)."""

    def run(a: Array, b: Array) -> Array:
        with torch.no_grad():
            out = fn(torch.from_numpy(np.ascontiguousarray(a)), torch.from_numpy(b))
        return out.detach().cpu().numpy()

    return run


def generator_graph(
    model: Any,
    stem: str,
    role: str,
    conditions: Array,
    conditions_from: str,
    precision: str = "float32",
) -> ExportGraph:
    """The :class:`ExportGraph` of a fitted generator (``FlowModel`` or ``GANModel``).

    Parameters
    ----------
    model : FlowModel or GANModel
        Fitted, on the CPU; its ``module_`` is read, never changed.
    stem, role : str
        As in :class:`ExportGraph`.
    conditions : np.ndarray of shape (m, C)
        Model-space conditions for the parity check.
    conditions_from : str
        How they were made.
    precision : {"float32", "bfloat16"}
        Dtype of a flow's conditioner matrix products (:mod:`hepgen.models.flow_graph`); a
        GAN is always exported in float32.

    Returns
    -------
    ExportGraph
    """
    if precision not in PRECISIONS:
        raise InputError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    module = model.module_.eval()
    kind = model.kind
    if kind == "flow" and not getattr(module, "has_graph", False):
        s = module.settings
        raise InputError(
            f"the {role} flow is kind {s.kind!r} (levels {s.levels}); export writes the static "
            "graphs of the single-scale RQ-spline flows (kind coupling or autoregressive, "
            "levels 1): generate this model with the torch backend"
        )
    if kind == "flow":
        sample: nn.Module = SamplingGraph(module, precision).eval()
        log_prob: nn.Module | None = DensityGraph(module, precision).eval()
        reference_sample = _numpy_fn(module.from_latent)
        reference_log_prob: Callable | None = _numpy_fn(module.log_prob)
        n_latent = int(module.n_features)
        used = precision
    elif kind == "gan":
        sample = GeneratorGraph(module).eval()
        log_prob = reference_log_prob = None
        reference_sample = _numpy_fn(lambda z, c: module.generate(z, c, ema=True))
        n_latent = int(module.settings.latent_dim)
        used = "float32"
    elif kind == "vae":
        sample = VAEGraph(module).eval()
        log_prob = reference_log_prob = None
        latent_dim = int(module.latent_dim)
        reference_sample = _numpy_fn(lambda e, c: vae_sample_path(module, e, c, latent_dim))
        n_latent = latent_dim + int(module.n_features)
        used = "float32"
    else:
        raise InputError(
            f"the {role} generator is a {kind}: export writes the graphs of flows, GANs and "
            "VAEs; generate this model with the torch backend"
        )
    return ExportGraph(
        stem=stem,
        role=role,
        kind=kind,
        n_features=int(module.n_features),
        n_conditions=int(module.n_conditions),
        n_latent=n_latent,
        sample=sample,
        log_prob=log_prob,
        reference_sample=reference_sample,
        reference_log_prob=reference_log_prob,
        conditions=np.ascontiguousarray(conditions, dtype=np.float32),
        conditions_from=conditions_from,
        precision=used,
    )


# --------------------------------------------------------------------------------------------
# conditions of the parity check
# --------------------------------------------------------------------------------------------


def _raw_condition(dom: dict[str, Any], dtype: np.dtype, n: int, rng: np.random.Generator) -> Array:
    """``n`` raw values of one condition inside its stored domain (uniform over the range,
    the categories, or both with 5 % sentinels)."""
    if "categories" in dom:
        return rng.choice(np.asarray(dom["categories"], dtype=np.float64), n).astype(dtype)
    sentinels = np.asarray(dom.get("sentinels", []), dtype=np.float64)
    if "min" in dom:
        lo, hi = float(dom["min"]), float(dom["max"])
        if np.issubdtype(dtype, np.integer):
            values = rng.integers(int(np.ceil(lo)), int(np.floor(hi)) + 1, n).astype(np.float64)
        else:
            values = rng.uniform(lo, hi, n)
        if sentinels.size:
            flagged = rng.random(n) < 0.05
            values[flagged] = rng.choice(sentinels, int(flagged.sum()))
    elif sentinels.size:
        values = rng.choice(sentinels, n)
    else:
        raise KeyError("no range, categories or sentinels")
    return values.astype(dtype)


def domain_conditions(preprocessor: Any, n: int = PARITY_CONDITIONS, seed: int = 0) -> Array:
    """Model-space conditions drawn inside the training domain of a preprocessor.

    Each raw condition is drawn uniformly over what :attr:`Preprocessor.domain` stored in
    fit (the range of a numeric condition, integers for integer ones, the categories of a
    categorical one; 5 % of the rows at a stored sentinel) and the rows are mapped to model
    space by :meth:`Preprocessor.transform_conditions`.  Uniform over the range covers the
    edges of the domain as well as its bulk: the parity check needs the spread, not the
    training distribution.

    Parameters
    ----------
    preprocessor : Preprocessor
        Fitted.
    n : int
        Rows.
    seed : int

    Returns
    -------
    np.ndarray of shape (n, C), float32

    Raises
    ------
    KeyError, InputError
        No usable domain stored (the caller falls back to standard normal contexts).

    Examples
    --------
    >>> from hepgen.features import FeatureSchema, FeatureSpec
    >>> from hepgen.preprocessing import Preprocessor
    >>> rng = np.random.default_rng(0)
    >>> data = {"pt": rng.uniform(20, 200, 100), "x": rng.normal(size=100)}
    >>> pre = Preprocessor(FeatureSchema([FeatureSpec("pt", "condition", "positive"),
    ...                                   FeatureSpec("x", "target")])).fit(data)
    >>> domain_conditions(pre, 10).shape
    (10, 1)
    """
    rng = np.random.default_rng(seed)
    domain, dtypes = preprocessor.domain, preprocessor.dtypes
    raw = {
        spec.name: _raw_condition(
            domain[spec.name], np.dtype(dtypes.get(spec.name, "float64")), n, rng
        )
        for spec in preprocessor.schema.conditions
    }
    c = preprocessor.transform_conditions(raw)
    if not np.isfinite(c).all():
        raise InputError("non-finite model-space conditions from the stored domain")
    return c


def _conditions(preprocessor: Any, n_conditions: int, seed: int) -> tuple[Array, str]:
    """Domain conditions, or standard normal contexts when the domain is unusable."""
    try:
        c = domain_conditions(preprocessor, PARITY_CONDITIONS, seed)
        if c.shape[1] == n_conditions:
            return c, FROM_DOMAIN
    except (KeyError, TypeError, ValueError):  # InputError is a ValueError
        pass
    rng = np.random.default_rng(seed)
    return rng.standard_normal((PARITY_CONDITIONS, n_conditions)).astype(np.float32), FROM_NORMAL


# --------------------------------------------------------------------------------------------
# model directories
# --------------------------------------------------------------------------------------------


def load_graphs(model_dir: str | os.PathLike, precision: str = "float32") -> list[ExportGraph]:
    """The generators of a model directory as :class:`ExportGraph` objects (on the CPU).

    Parameters
    ----------
    model_dir : path
        A fast simulation (``hepgen train``) or a density model
        (:class:`hepgen.anomaly.DensityModel`); it is only read.
    precision : {"float32", "bfloat16"}
        Of the flows' conditioners.

    Returns
    -------
    list of ExportGraph
        The response first, then the fakes (fast simulation); the flow (density model).

    Raises
    ------
    InputError
        Not a model directory, or damaged files (the file named).
    """
    from hepgen.modeldir import model_kind, read_card

    _, card = read_card(model_dir, user="hepgen export", command="export")
    model = model_kind(card["kind"]).model_class().from_card(model_dir, card, device="cpu")
    if card["kind"] == "density":
        return [_density_graph(model, precision)]
    kind = model.response_.kind
    pre = model.preprocessor_
    c, how = _conditions(pre, model.response_.n_conditions_, seed=0)
    graphs = [generator_graph(model.response_, kind, "response", c, how, precision)]
    fakes = getattr(model, "fakes_", None)
    if fakes is not None:
        c, how = _conditions(fakes.preprocessor, fakes.model.n_conditions_, seed=1)
        graphs.append(generator_graph(fakes.model, f"fakes_{kind}", "fakes", c, how, precision))
    return graphs


def _density_graph(model: Any, precision: str) -> ExportGraph:
    """The flow of a density model; its context is the model-space conditions, or one zero
    column for an unconditional model (the trend, when there is one, stays outside)."""
    from hepgen.anomaly.density import FLOW_NAME

    flow = model.flow_
    if model.conditional_:
        c, how = _conditions(model.preprocessor_, flow.n_conditions_, seed=0)
    else:
        c, how = np.zeros((PARITY_CONDITIONS, 1), dtype=np.float32), FROM_CONSTANT
    return generator_graph(flow, FLOW_NAME, "density", c, how, precision)


def model_files(model_dir: str | os.PathLike) -> list[Path]:
    """The files of a model directory that an export copies: its top-level regular files
    (the card, weights, xgboost JSON), not hidden ones, not folders (checkpoints)."""
    return sorted(
        p for p in Path(model_dir).iterdir() if p.is_file() and not p.name.startswith(".")
    )
