"""``FlowModel``: the model protocol (fit, sample, log_prob, save, load) around a conditional flow.

:class:`~hepgen.models.flow.ConditionalFlow` is the torch module; :class:`FlowModel` gives it the
numpy-level protocol of :class:`~hepgen.models.base.TorchModel`, trains it by maximum
likelihood and adds ``log_prob``: log-densities in model space (add the preprocessing's
log-Jacobian for physical units:
:meth:`hepgen.preprocessing.Preprocessor.target_log_abs_det_jacobian`).

References
----------
C. Durkan, A. Bekasov, I. Murray, G. Papamakarios, "Neural Spline Flows", NeurIPS 2019,
arXiv:1906.04032 (the RQ-spline flows that CMS FlashSim uses for NanoAOD jets).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hepgen.models.base import TorchModel, check_model_inputs, map_rows, sample_module
from hepgen.models.selection import metric_cost

__all__ = ["DEFAULT_BATCH_SIZE", "SAMPLE_COST_PER_PASS", "FlowModel"]

#: Rows per forward pass in sample/log_prob. On 2 CPU cores the default coupling flow runs at
#: 77/78 k events/s (log_prob/sample) with 4096 rows, 72/72 with 8192 and 37/35 with 65536
#: (benchmarks/bench_flow.py): large batches fall out of the caches.
DEFAULT_BATCH_SIZE = 4096

#: Drawing one row costs about this share of one training row (forward, backward, AdamW) per
#: network pass: 0.33 for the autoregressive flow, 0.22 for the coupling flow (6 x 128, 2 CPU
#: cores).  Sampling an autoregressive flow makes one pass per target, a coupling flow one:
#: with 9 targets, the KS metric on 5.6k validation rows costs 0.8 epochs of 22.4k rows, so
#: by default it runs every 8th epoch (:meth:`hepgen.training.TrainingSettings.resolve`).
SAMPLE_COST_PER_PASS = 0.35


def _flow_loss(module: Any, batch: dict[str, Any]) -> Any:
    """The per-event loss of a flow, shape (n,): ``-log p(x | c)``, or the family's own
    (:meth:`hepgen.models.flows.base.FlowModule.loss`)."""
    return module.loss(batch["x"], batch["c"])


class FlowModel(TorchModel):
    """A conditional normalizing flow with the hepgen model protocol.

    Parameters
    ----------
    settings : FlowSettings or None
        Architecture (default :class:`~hepgen.models.flow.FlowSettings`: RQ-spline coupling).
    seed : int
        Seed of the initialisation (and default seed of the training loop).
    device : {"auto", "cpu", "cuda", "cuda:N"}
        Where the flow runs for training, sampling and densities.

    Notes
    -----
    ``fit`` minimises ``-log p(x | c)`` with the shared loop of :mod:`hepgen.training` (event
    weights, negative sWeights included, enter as described there).  The checkpoint kept at
    the end is chosen by ``selection``: a physics metric of one draw per validation condition
    (:mod:`hepgen.models.selection`: ``"ks"``, the default, or ``"c2st"``), which the loss
    does not see directly (a flow can gain likelihood on the bulk while a tail is off); or
    ``"loss"``.  Both the metric's and the loss's best epochs are recorded.  Drawing the
    validation sample can cost more than a training epoch (an autoregressive flow samples in
    one pass per target), so unless ``metric_every`` is set the metric runs as often as keeps
    it near a tenth of the training time (:data:`SAMPLE_COST_PER_PASS`), and always at the
    last epoch.

    References
    ----------
    C. Durkan et al., "Neural Spline Flows", NeurIPS 2019, arXiv:1906.04032.

    Examples
    --------
    >>> import numpy as np
    >>> from hepgen.models.flow import FlowSettings
    >>> from hepgen.training import TrainingSettings
    >>> rng = np.random.default_rng(0)
    >>> c = rng.normal(size=(2000, 1)).astype("float32")
    >>> x = (c + 0.5 * rng.normal(size=(2000, 1))).astype("float32")
    >>> model = FlowModel(FlowSettings(n_transforms=2, hidden_features=16, n_bins=4))
    >>> _ = model.fit(x, c, training=TrainingSettings(max_epochs=2, batch_size=500),
    ...               quiet=True)
    >>> model.sample(c[:3], seed=1).shape
    (3, 1)
    """

    kind = "flow"
    has_likelihood = True
    has_encoder = True
    distributed_training = True
    default_batch_size = DEFAULT_BATCH_SIZE

    def __init__(
        self,
        settings: Any = None,
        seed: int = 0,
        device: str = "auto",
        engine: str = "auto",
        precision: str = "float32",
    ) -> None:
        super().__init__(settings=settings, seed=seed, device=device)
        self.engine = engine
        self.precision = precision

    def set_inference(self, engine: str = "auto", precision: str = "float32") -> FlowModel:
        """Choose how :meth:`sample` and :meth:`log_prob` evaluate the flow; returns ``self``.

        Parameters
        ----------
        engine : {"auto", "eager", "graph", "compiled"}
            :mod:`hepgen.models.engine`.
        precision : {"float32", "bfloat16"}
            Of the conditioners' matrix products (not with ``"eager"``); accept a reduced
            precision only after :func:`hepgen.models.engine.check_precision`.
        """
        from hepgen.models.engine import check_engine

        check_engine(engine, precision)
        if hasattr(self, "module_"):  # the family must support it (ValueError otherwise)
            from hepgen.models.engine import FlowEngine

            FlowEngine(self.module_, engine, precision)
        self.engine, self.precision = engine, precision
        self.__dict__.pop("engine_", None)
        return self

    @property
    def engine_(self) -> Any:
        """The :class:`~hepgen.models.engine.FlowEngine` of :attr:`engine` and
        :attr:`precision` (built on first use)."""
        from hepgen.models.engine import FlowEngine

        engine = self.__dict__.get("engine_")
        if engine is None or engine.flow is not self.module_:
            engine = FlowEngine(self.module_, self.engine, self.precision)
            self.__dict__["engine_"] = engine
        return engine

    @property
    def flow_(self) -> Any:
        """The :class:`~hepgen.models.flow.ConditionalFlow` (``module_``)."""
        return self.module_

    # ------------------------------------------------------------------ the kind's parts
    @classmethod
    def _default_settings(cls) -> Any:
        from hepgen.models.flow import FlowSettings

        return FlowSettings()

    def _build(self, n_features: int, n_conditions: int, settings: Any) -> Any:
        from hepgen.models.flows import build_flow

        return build_flow(n_features, n_conditions, settings, seed=self.seed)

    def _default_learning_rate(self, settings: Any) -> float:
        from hepgen.settings.models import KIND_LEARNING_RATES

        return KIND_LEARNING_RATES.get(settings.kind, 1e-3)

    def _objective(self, settings: Any) -> Any:
        from hepgen.training import LikelihoodObjective

        return LikelihoodObjective(_flow_loss)

    def _metric_cost(
        self, selection: str, n_validation: int, n_train: int, settings: Any
    ) -> float | None:
        passes = self.module_.cost()["sample_passes"] if hasattr(self, "module_") else None
        if passes is None:  # data-dependent (an adaptive solver, fixed-point iterations)
            passes = self.n_features_
        return metric_cost(selection, n_validation, n_train, SAMPLE_COST_PER_PASS * passes)

    @staticmethod
    def _write(module: Any, directory: str | Path, name: str) -> list[Path]:
        from hepgen.models.flow import save_flow

        return save_flow(module, directory, name=name)

    @staticmethod
    def _read(directory: str | Path, name: str, device: str) -> Any:
        from hepgen.models.flow import load_flow

        return load_flow(directory, name=name, device=device)

    # ------------------------------------------------------------------ densities
    def log_prob(
        self,
        targets: np.ndarray,
        conditions: np.ndarray,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> np.ndarray:
        """log p(targets | conditions) in model space, shape (n,), float64 (nats).

        Parameters
        ----------
        targets, conditions : np.ndarray
            Model-space matrices (n, D) and (n, C).
        batch_size : int
            Rows per forward pass.

        Raises
        ------
        InputError
            Wrong widths or NaN/inf values.
        """
        import torch

        self._check_fitted()
        c, x = check_model_inputs(
            conditions, targets, self.n_conditions_, self.n_features_, where="flow log_prob"
        )
        assert x is not None
        device = next(self.module_.parameters()).device
        engine = self.engine_
        out = []
        was_training = self.module_.training
        self.module_.eval()
        try:
            with torch.inference_mode():
                for start in range(0, c.shape[0], batch_size):
                    xb = torch.from_numpy(x[start : start + batch_size]).to(device)
                    cb = torch.from_numpy(c[start : start + batch_size]).to(device)
                    out.append(engine.log_prob(xb, cb).double().cpu().numpy())
        finally:
            self.module_.train(was_training)
        return np.concatenate(out) if out else np.empty(0)

    # ------------------------------------------------------------------ latent space
    def encode(
        self, targets: np.ndarray, conditions: np.ndarray, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> np.ndarray:
        """The exact latent point ``z = f(x; c)`` of each event: shape (n, D), float32.

        Raises
        ------
        InputError
            Wrong widths or NaN/inf values.
        """
        self._check_fitted()
        c, x = check_model_inputs(
            conditions, targets, self.n_conditions_, self.n_features_, where="flow encode"
        )
        assert x is not None
        flow = self.module_
        return map_rows(
            flow, lambda xb, cb: flow.to_latent(xb, cb)[0], (x, c), batch_size, self.n_features_
        )

    def decode(
        self, latent: np.ndarray, conditions: np.ndarray, batch_size: int = DEFAULT_BATCH_SIZE
    ) -> np.ndarray:
        """Events ``x = f^-1(z; c)`` of latent points (n, D): shape (n, D), float32 (the
        inverse of :meth:`encode`, evaluated by :attr:`engine_`).

        Raises
        ------
        InputError
            Wrong widths or NaN/inf values.
        """
        self._check_fitted()
        c, z = check_model_inputs(
            conditions, latent, self.n_conditions_, self.n_features_, where="flow decode"
        )
        assert z is not None
        engine = self.engine_
        return map_rows(self.module_, engine.from_latent, (z, c), batch_size, self.n_features_)

    # ------------------------------------------------------------------ sampling
    def sample(
        self,
        conditions: np.ndarray,
        seed: int | None = None,
        batch_size: int | None = None,
        *,
        temperature: float | None = None,
        truncation: float | None = None,
    ) -> np.ndarray:
        """One draw per row of ``conditions`` (n, C): targets (n, D), float32, model space.

        The base noise comes from a seeded :class:`torch.Generator` on the flow's device,
        batch after batch (the same seed and batch size give the same noise, whatever the
        engine); the flow is evaluated by :attr:`engine_`.  ``batch_size`` defaults to
        :func:`hepgen.models.engine.batch_size_for` the device.  ``temperature`` scales the
        base noise and ``truncation`` truncates it (:mod:`hepgen.models.latent`).
        """
        from hepgen.models.engine import batch_size_for
        from hepgen.models.latent import LatentOptions, draw_latent

        self._check_fitted()
        latent = LatentOptions.of(temperature, truncation)
        c, _ = check_model_inputs(
            conditions, n_conditions=self.n_conditions_, where=f"{self.kind} sample"
        )
        flow, engine = self.module_, self.engine_
        device = next(flow.parameters()).device

        def draw(cb: Any, generator: Any) -> Any:
            z = draw_latent((cb.shape[0], flow.n_features), generator, device, latent)
            return engine.from_latent(z, cb)

        return sample_module(flow, c, seed, batch_size or batch_size_for(device), sampler=draw)
