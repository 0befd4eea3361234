"""``GANModel``: the model protocol (fit, sample, save, load) around a conditional GAN.

:class:`~hepgen.models.gan_nets.ConditionalGAN` is the torch module and
:class:`~hepgen.models.gan_objective.GANObjective` its training step; :class:`GANModel` gives it
the numpy-level protocol of :class:`~hepgen.models.base.TorchModel`, without a likelihood
(``log_prob`` raises :class:`~hepgen.models.base.NoLikelihoodError`), and records the kNN
recall and coverage of the generator every epoch.

References
----------
M. G. Bellemare et al., arXiv:1705.10743; I. Gulrajani et al., arXiv:1704.00028;
I. Goodfellow et al., arXiv:1406.2661; M. Arjovsky et al., arXiv:1701.07875;
J. H. Lim, J. C. Ye, arXiv:1705.02894; T. Miyato et al., arXiv:1802.05957;
A. Maevskiy et al. (LHCb), "Fast data-driven simulation of Cherenkov detectors using
generative adversarial networks", arXiv:1905.11825 (the LHCb RICH GAN).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hepgen.models.base import TorchModel, sample_module
from hepgen.models.gan_nets import ConditionalGAN, GANSettings, load_gan, save_gan
from hepgen.models.gan_objective import GANObjective, default_gan_training
from hepgen.models.selection import knn_recall_coverage, selection_metric

__all__ = ["DEFAULT_BATCH_SIZE", "RECALL_COVERAGE_EVENTS", "GANModel"]

#: Rows per generator pass in :meth:`GANModel.sample`.
DEFAULT_BATCH_SIZE = 8192
#: Validation rows (at most) of the recall / coverage computed every epoch.
RECALL_COVERAGE_EVENTS = 5000


class GANModel(TorchModel):
    """A conditional GAN with the hepgen model protocol (no likelihood).

    Parameters
    ----------
    settings : GANSettings or None
        Architecture and loss (default :class:`~hepgen.models.gan_nets.GANSettings`: Cramer
        GAN; ``docs/gans.md`` compares the losses).
    seed : int
        Seed of the initialisation (and default seed of the training loop).
    device : {"auto", "cpu", "cuda", "cuda:N"}
        Where the GAN runs for training and sampling.

    Notes
    -----
    ``fit`` trains adversarially (:class:`~hepgen.models.gan_objective.GANObjective`) with
    :func:`~hepgen.models.gan_objective.default_gan_training` unless loop settings are given.
    The validation loss is the energy score of the sampler, never the GAN loss.  The kept
    checkpoint is chosen by a physics metric of one draw per validation condition
    (:mod:`hepgen.models.selection`): ``"ks"``, the mean per-feature KS statistic, or
    ``"c2st"``, the AUC of a quick classifier test on (x, c), which also sees how the response
    depends on the conditions (``configs/toy_jets_gan.yaml`` uses it: with KS selection, a
    5-minute run on the reference simulation kept epoch 4 of 23, at held-out AUC 0.68,
    because the marginals were best there while the conditional response kept improving);
    ``selection="loss"`` chooses by the energy score instead.  With a metric, every epoch also
    records the kNN recall and coverage (:func:`~hepgen.models.selection.knn_recall_coverage`)
    of (x, c) on up to :data:`RECALL_COVERAGE_EVENTS` validation rows in its
    ``metric_details``: a collapsing generator loses recall and coverage while its marginals
    may still look fine.

    References
    ----------
    M. G. Bellemare et al., arXiv:1705.10743; I. Gulrajani et al., arXiv:1704.00028;
    I. Goodfellow et al., arXiv:1406.2661; M. Arjovsky et al., arXiv:1701.07875;
    J. H. Lim, J. C. Ye, arXiv:1705.02894; T. Miyato et al., arXiv:1802.05957;
    A. Maevskiy et al., arXiv:1905.11825 (the LHCb RICH GAN).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> c = rng.normal(size=(2000, 1)).astype("float32")
    >>> x = (c + 0.5 * rng.normal(size=(2000, 1))).astype("float32")
    >>> model = GANModel(GANSettings(hidden_features=16, critic_hidden_features=16,
    ...                              n_blocks=1, critic_blocks=1))
    >>> _ = model.fit(x, c, training=default_gan_training(max_epochs=2, device="cpu"),
    ...               quiet=True)
    >>> model.sample(c[:3], seed=1).shape
    (3, 1)
    """

    kind = "gan"
    default_batch_size = DEFAULT_BATCH_SIZE

    @property
    def gan_(self) -> ConditionalGAN:
        """The :class:`~hepgen.models.gan_nets.ConditionalGAN` (``module_``)."""
        return self.module_

    # ------------------------------------------------------------------ the kind's parts
    @classmethod
    def _default_settings(cls) -> GANSettings:
        return GANSettings()

    def _build(self, n_features: int, n_conditions: int, settings: Any) -> ConditionalGAN:
        return ConditionalGAN(n_features, n_conditions, settings, seed=self.seed)

    def _objective(self, settings: GANSettings) -> GANObjective:
        return GANObjective(settings)

    def _default_training(self, settings: GANSettings) -> Any:
        return default_gan_training(settings, seed=self.seed, device=self.device)

    def _default_learning_rate(self, settings: GANSettings) -> float:
        return float(default_gan_training(settings).learning_rate)

    def _metric_fn(
        self, val: Mapping[str, np.ndarray], selection: str, seed: int
    ) -> Callable[[torch.nn.Module], Mapping[str, float | None]]:
        """The selecting metric, and recall/coverage on <= 5000 validation rows."""
        rng = np.random.default_rng(seed)
        n = val["x"].shape[0]
        rows = np.sort(rng.choice(n, min(n, RECALL_COVERAGE_EVENTS), replace=False))
        real = np.concatenate([val["x"][rows], val["c"][rows]], axis=1)

        def metric(module: torch.nn.Module) -> Mapping[str, float | None]:
            value = selection_metric(
                selection,
                lambda cc, s: sample_module(module, cc, s, DEFAULT_BATCH_SIZE),
                val["x"],
                val["c"],
                seed=seed,
            )
            fake_x = sample_module(module, val["c"][rows], seed + 1, DEFAULT_BATCH_SIZE)
            fake = np.concatenate([fake_x, val["c"][rows]], axis=1)
            recall, coverage = knn_recall_coverage(real, fake)
            return {"metric": value, "recall": recall, "coverage": coverage}

        return metric

    @staticmethod
    def _write(module: Any, directory: str | Path, name: str) -> list[Path]:
        return save_gan(module, directory, name=name)

    @staticmethod
    def _read(directory: str | Path, name: str, device: str) -> ConditionalGAN:
        return load_gan(directory, name=name, device=device)
