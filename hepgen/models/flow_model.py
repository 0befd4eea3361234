"""``FlowModel``: the model protocol (fit, sample, log_prob, save, load) around a conditional flow.

:class:`~hepgen.models.flow.ConditionalFlow` is the torch module; this class gives it the
numpy-level protocol of :mod:`hepgen.models.base` that the fast simulation, the CLI and the
anomaly scores call:

* ``fit`` trains by maximum likelihood with the shared loop of :mod:`hepgen.training`; the loss
  of an event is ``-log p(x | c)`` and its weight enters as described there (negative sWeights
  allowed).  The checkpoint kept at the end is chosen by ``selection``: a physics metric of
  one draw per validation condition (:mod:`hepgen.models.selection`: ``"ks"``, the default,
  the mean per-feature Kolmogorov-Smirnov statistic; ``"c2st"``, a quick classifier test),
  which the loss does not see directly (a flow can gain likelihood on the bulk while a tail is
  off); or ``"loss"``.  Both the metric's and the loss's best epochs are recorded.  Drawing
  the validation sample can cost more than a training epoch (an autoregressive flow samples
  in one pass per target), so unless ``metric_every`` is set the metric runs as often as
  keeps it near a tenth of the training time (:data:`SAMPLE_COST_PER_PASS`), and always at
  the last epoch.
* ``sample`` draws one target row per condition row, in batches, with a seeded
  ``torch.Generator`` (reproducible, independent of the global RNG);
* ``log_prob`` returns log-densities in model space (add the preprocessing's log-Jacobian for
  physical units: :meth:`hepgen.preprocessing.Preprocessor.target_log_abs_det_jacobian`).

References
----------
C. Durkan, A. Bekasov, I. Murray, G. Papamakarios, "Neural Spline Flows", NeurIPS 2019,
arXiv:1906.04032 (the RQ-spline flows that CMS FlashSim uses for NanoAOD jets; ANCHORS.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hepgen.errors import InputError
from hepgen.models.base import (
    GenerativeModel,
    check_model_inputs,
    sample_module,
    training_arrays,
)
from hepgen.models.selection import check_selection, metric_cost, selection_metric

__all__ = ["DEFAULT_BATCH_SIZE", "SAMPLE_COST_PER_PASS", "FlowModel", "resolve_device"]

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


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when torch sees a GPU, else ``"cpu"``; a CUDA request
    without a GPU is an :class:`~hepgen.errors.InputError`."""
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {device!r} requested but torch sees no CUDA device")
    return str(device)


class FlowModel(GenerativeModel):
    """A conditional normalizing flow with the hepgen model protocol.

    Parameters
    ----------
    settings : FlowSettings or None
        Architecture (default :class:`~hepgen.models.flow.FlowSettings`: RQ-spline coupling).
    seed : int
        Seed of the initialisation (and default seed of the training loop).
    device : {"auto", "cpu", "cuda"}
        Where the flow runs for training, sampling and densities.

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

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        targets: np.ndarray,
        conditions: np.ndarray,
        weights: np.ndarray | None = None,
        validation: Mapping[str, np.ndarray] | None = None,
        *,
        training: Any = None,
        selection: str = "ks",
        checkpoint_dir: str | Path | None = None,
        resume: bool = False,
        quiet: bool = False,
    ) -> Any:
        """Train by maximum likelihood; returns the :class:`~hepgen.training.TrainingResult`.

        Parameters
        ----------
        targets, conditions : np.ndarray
            Model-space matrices (n, D) and (n, C).
        weights : np.ndarray or None
            Event weights (n,), negative allowed.
        validation : mapping or None
            ``{"x": (m, D), "c": (m, C)}`` and optionally ``"w"``: early stopping and the
            checkpoint choice.
        training : TrainingSettings or None
            Loop settings (default :class:`~hepgen.training.TrainingSettings` with this
            model's seed and device).  Fields left ``None`` are chosen from the number of
            training rows; a ``metric_every`` left ``None`` from the metric's estimated cost
            (:data:`SAMPLE_COST_PER_PASS`).
        selection : {"ks", "c2st", "loss"}
            How the final checkpoint is chosen (:mod:`hepgen.models.selection`); the metrics
            need validation data.
        checkpoint_dir : path or None
            Where the loop checkpoints each epoch (``resume`` continues from there).
        resume : bool
            Continue an interrupted run from ``checkpoint_dir``.
        quiet : bool
            Silence the progress bar.
        """

        from hepgen.models.flow import ConditionalFlow, FlowSettings
        from hepgen.training import TrainingSettings, train

        data, val = training_arrays(targets, conditions, weights, validation, where="flow fit")
        x, c = data["x"], data["c"]
        settings = self.settings if self.settings is not None else FlowSettings()
        if training is None:
            training = TrainingSettings(seed=self.seed, device=self.device)
        self.flow_ = ConditionalFlow(x.shape[1], c.shape[1], settings, seed=self.seed)
        self.n_features_, self.n_conditions_ = x.shape[1], c.shape[1]
        check_selection(selection)
        metric = None
        cost = None
        if selection != "loss" and val is not None:
            passes = x.shape[1] if settings.kind == "autoregressive" else 1
            cost = metric_cost(
                selection, val["x"].shape[0], x.shape[0], SAMPLE_COST_PER_PASS * passes
            )

            def metric(module: Any) -> float | None:
                return selection_metric(
                    selection,
                    lambda cc, s: sample_module(module, cc, s, DEFAULT_BATCH_SIZE),
                    val["x"],
                    val["c"],
                    seed=training.seed,
                )

        def loss(module: Any, batch: dict[str, Any]) -> Any:
            return -module.log_prob(batch["x"], batch["c"])

        self.training_ = train(
            self.flow_,
            loss,
            data,
            val,
            training,
            checkpoint_dir=checkpoint_dir,
            resume=resume,
            metric_fn=metric,
            quiet=quiet,
            metric_cost=cost,
        )
        return self.training_

    # ------------------------------------------------------------------ inference
    def _check_fitted(self) -> None:
        if not hasattr(self, "flow_"):
            raise RuntimeError("FlowModel: call fit() or load() first")

    def sample(
        self,
        conditions: np.ndarray,
        seed: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> np.ndarray:
        """One draw per row of ``conditions`` (n, C): targets (n, D), float32, model space."""
        self._check_fitted()
        c, _ = check_model_inputs(conditions, n_conditions=self.n_conditions_, where="flow sample")
        return sample_module(self.flow_, c, seed, batch_size)

    def log_prob(
        self,
        targets: np.ndarray,
        conditions: np.ndarray,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> np.ndarray:
        """log p(targets | conditions) in model space, shape (n,), float64 (nats)."""
        import torch

        self._check_fitted()
        c, x = check_model_inputs(
            conditions, targets, self.n_conditions_, self.n_features_, where="flow log_prob"
        )
        device = next(self.flow_.parameters()).device
        out = []
        self.flow_.eval()
        with torch.inference_mode():
            for start in range(0, c.shape[0], batch_size):
                xb = torch.from_numpy(x[start : start + batch_size]).to(device)
                cb = torch.from_numpy(c[start : start + batch_size]).to(device)
                out.append(self.flow_.log_prob(xb, cb).double().cpu().numpy())
        return np.concatenate(out) if out else np.empty(0)

    # ------------------------------------------------------------------ persistence
    def describe(self) -> dict[str, Any]:
        """Architecture summary for model cards: sizes, settings, number of parameters."""
        self._check_fitted()
        return self.flow_.describe()

    def save(self, directory: str | Path, name: str = "flow") -> list[Path]:
        """Write ``{name}.safetensors`` and ``{name}.json`` into ``directory``."""
        from hepgen.models.flow import save_flow

        self._check_fitted()
        return save_flow(self.flow_, directory, name=name)

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu", name: str = "flow") -> FlowModel:
        """Read a flow written by :meth:`save` (safetensors + JSON; no code executed)."""
        from hepgen.models.flow import load_flow

        flow = load_flow(directory, name=name, device=resolve_device(device))
        model = cls(settings=flow.settings, device=device)
        model.flow_ = flow
        model.n_features_, model.n_conditions_ = flow.n_features, flow.n_conditions
        return model
