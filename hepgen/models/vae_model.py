"""``VAEModel``: the model protocol (fit, sample, save, load) around a conditional VAE.

:class:`~hepgen.models.vae.ConditionalVAE` is the torch module and
:class:`~hepgen.models.vae_objective.VAEObjective` its training objective; :class:`VAEModel`
gives it the numpy-level protocol of :class:`~hepgen.models.base.TorchModel` and the
latent-space tools: :meth:`VAEModel.encode` (the posterior mean), :meth:`VAEModel.decode`,
and lower bounds on the log-likelihood, :meth:`VAEModel.log_prob_bound` (ELBO or IWAE).  A VAE
has no exact density: ``log_prob`` raises :class:`~hepgen.models.base.NoLikelihoodError`.

References
----------
D. P. Kingma, M. Welling, arXiv:1312.6114; K. Sohn, H. Lee, X. Yan, NeurIPS 2015;
Y. Burda, R. Grosse, R. Salakhutdinov, arXiv:1509.00519.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hepgen.errors import InputError
from hepgen.models.base import NoLikelihoodError, TorchModel, check_model_inputs, map_rows
from hepgen.settings.vae import VAESettings

__all__ = ["BOUND_METHODS", "DIAGNOSTIC_ROWS", "VAEModel"]

#: The lower bounds of :meth:`VAEModel.log_prob_bound`.
BOUND_METHODS = ("elbo", "iwae")
#: Rows (at most; validation rows when given, else training rows) of the active-dimension
#: statistics computed at the end of ``fit``.
DIAGNOSTIC_ROWS = 50_000
#: Importance draws times rows per network pass in :meth:`VAEModel.log_prob_bound`.
_BOUND_ROWS_PER_PASS = 65_536


class VAEModel(TorchModel):
    """A conditional variational autoencoder with the hepgen model protocol.

    Parameters
    ----------
    settings : VAESettings or None
        Architecture and objective (default :class:`~hepgen.settings.VAESettings`).
    seed : int
        Seed of the initialisation (and default seed of the training loop).
    device : {"auto", "cpu", "cuda", "cuda:N"}
        Where the VAE runs.

    Notes
    -----
    ``fit`` minimises the negative ELBO (:class:`~hepgen.models.vae_objective.VAEObjective`:
    beta weight, KL warm-up, free bits; event weights as in the flow loss) with
    :func:`~hepgen.models.vae_objective.default_vae_training` unless loop settings are given;
    the kept checkpoint is chosen by ``selection`` on one draw per validation condition, as
    for the other kinds.  At the end of ``fit`` the active latent dimensions (Burda et al.
    2016) and the mean KL per dimension are computed on up to :data:`DIAGNOSTIC_ROWS`
    validation rows (training rows without validation data) and reported by
    :meth:`describe` (``active_dimensions``, ``kl_per_dimension``): few active dimensions
    mean a collapsed posterior, whose samples ignore the latent space.

    ``sample``'s ``temperature`` and ``truncation`` apply to the prior's draw and to the
    decoder's noise alike (:class:`~hepgen.models.vae.ConditionalVAE`).

    Burda et al.'s criterion counts a dimension as active when its posterior mean varies by
    more than 0.01 over the data; with free bits, a dimension kept at the floor (KL close to
    ``free_bits``) carries that little information for free and may count as active, so
    read ``kl_per_dimension`` with it: on the jets task with ``latent_dim`` 16, 5 dimensions
    carried 0.66 to 1.17 nats and the other 11 sat at the 0.05-nat floor (all 16 active);
    with 8 dimensions and no free bits, 6 or 7 of 8 were active.

    The choices of ``configs/toy_jets_vae.yaml`` (held-out classifier AUC on the jets task,
    60k events, 30 epochs each, one CPU thread): the learned conditional prior (after 12
    epochs, validation AUC 0.60 against 0.74 with N(0, 1)); beta 1 (0.5: AUC 0.684, prior
    draws fall where no posterior was); ``latent_dim`` 8 (4: 0.563, 16: 0.551, 8: 0.550);
    learning rate 3e-3 (0.536; 1e-3: 0.550); free bits 0.05 nats cost nothing (0.538
    without).

    References
    ----------
    D. P. Kingma, M. Welling, arXiv:1312.6114; K. Sohn, H. Lee, X. Yan, NeurIPS 2015;
    Y. Burda, R. Grosse, R. Salakhutdinov, arXiv:1509.00519; D. P. Kingma et al.,
    arXiv:1606.04934 (free bits).

    Examples
    --------
    >>> import numpy as np
    >>> from hepgen.models.vae_objective import default_vae_training
    >>> rng = np.random.default_rng(0)
    >>> c = rng.normal(size=(2000, 1)).astype("float32")
    >>> x = (c + 0.5 * rng.normal(size=(2000, 1))).astype("float32")
    >>> model = VAEModel(VAESettings(latent_dim=2, hidden_features=16, n_blocks=1))
    >>> _ = model.fit(x, c, training=default_vae_training(max_epochs=2, device="cpu"),
    ...               quiet=True)
    >>> model.sample(c[:3], seed=1).shape, model.encode(x[:3], c[:3]).shape
    ((3, 1), (3, 2))
    >>> bound = model.log_prob_bound(x[:3], c[:3], k=8)
    >>> bound.shape, bound.dtype
    ((3,), dtype('float64'))
    """

    kind = "vae"
    has_likelihood = False
    has_encoder = True

    @property
    def vae_(self) -> Any:
        """The :class:`~hepgen.models.vae.ConditionalVAE` (``module_``)."""
        return self.module_

    @property
    def latent_dim(self) -> int:
        """Size of the latent space (of the settings; of the module once fitted or loaded)."""
        if hasattr(self, "module_"):
            return int(self.module_.latent_dim)
        settings = self.settings if self.settings is not None else self._default_settings()
        return int(settings.latent_dim)

    # ------------------------------------------------------------------ the kind's parts
    @classmethod
    def _default_settings(cls) -> VAESettings:
        return VAESettings()

    def _build(self, n_features: int, n_conditions: int, settings: Any) -> Any:
        from hepgen.models.vae import ConditionalVAE

        return ConditionalVAE(n_features, n_conditions, settings, seed=self.seed)

    def _objective(self, settings: VAESettings) -> Any:
        from hepgen.models.vae_objective import VAEObjective

        return VAEObjective(settings)

    def _default_training(self, settings: VAESettings) -> Any:
        from hepgen.models.vae_objective import default_vae_training

        return default_vae_training(seed=self.seed, device=self.device)

    def _default_learning_rate(self, settings: VAESettings) -> float:
        from hepgen.models.vae_objective import DEFAULT_LEARNING_RATE

        return DEFAULT_LEARNING_RATE

    @staticmethod
    def _write(module: Any, directory: str | Path, name: str) -> list[Path]:
        from hepgen.models.vae import save_vae

        return save_vae(module, directory, name=name)

    @staticmethod
    def _read(directory: str | Path, name: str, device: str) -> Any:
        from hepgen.models.vae import load_vae

        return load_vae(directory, name=name, device=device)

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        targets: np.ndarray,
        conditions: np.ndarray,
        weights: np.ndarray | None = None,
        validation: Mapping[str, np.ndarray] | None = None,
        **kwargs: Any,
    ) -> Any:
        """:meth:`TorchModel.fit`, then the latent diagnostics of the kept weights (see the
        class notes); same parameters and errors."""
        result = super().fit(targets, conditions, weights, validation, **kwargs)
        if validation is not None:
            x, c = validation["x"], validation["c"]
        else:
            x, c = targets, conditions
        c, x = check_model_inputs(c, x, where="vae fit")
        assert x is not None
        if x.shape[0] > DIAGNOSTIC_ROWS:
            rows = np.sort(
                np.random.default_rng(self.seed).choice(x.shape[0], DIAGNOSTIC_ROWS, replace=False)
            )
            x, c = x[rows], c[rows]
        if x.shape[0] >= 2:
            self._run(lambda xb, cb: self.module_.latent_diagnostics(xb, cb), x, c)
        return result

    # ------------------------------------------------------------------ latent space
    def _run(self, fn: Any, *arrays: np.ndarray) -> Any:
        """``fn`` of the arrays as tensors on the module's device, in eval mode, no grad."""
        import torch

        device = next(self.module_.parameters()).device
        was_training = self.module_.training
        self.module_.eval()
        try:
            with torch.no_grad():
                return fn(*(torch.from_numpy(a).to(device) for a in arrays))
        finally:
            self.module_.train(was_training)

    def _batched(self, fn: Any, a: np.ndarray, b: np.ndarray, width: int) -> np.ndarray:
        """``fn`` row block by row block (:attr:`default_batch_size` rows): (n, width)
        float32 numpy (:func:`~hepgen.models.base.map_rows`)."""
        return map_rows(self.module_, fn, (a, b), self.default_batch_size, width)

    def encode(self, targets: np.ndarray, conditions: np.ndarray) -> np.ndarray:
        """The posterior mean E_q[z | x, c] of each row: (n, latent_dim) float32.

        Raises
        ------
        InputError
            Wrong widths or NaN/inf values.
        """
        self._check_fitted()
        c, x = check_model_inputs(
            conditions, targets, self.n_conditions_, self.n_features_, where="vae encode"
        )
        assert x is not None
        return self._batched(lambda xb, cb: self.module_.encode(xb, cb)[0], x, c, self.latent_dim)

    def decode(
        self,
        latent: np.ndarray,
        conditions: np.ndarray,
        seed: int | None = None,
        mean: bool = True,
    ) -> np.ndarray:
        """Targets from latent vectors: the decoder's mean of p(x | z, c) (``mean=True``) or
        one draw from it (``mean=False``, seeded by ``seed``); (n, D) float32, model space.

        Parameters
        ----------
        latent : np.ndarray of shape (n, latent_dim)
        conditions : np.ndarray of shape (n, C)

        Raises
        ------
        InputError
            Wrong shapes or NaN/inf values.
        """
        import torch

        self._check_fitted()
        c, z = check_model_inputs(conditions, latent, self.n_conditions_, where="vae decode")
        assert z is not None
        if z.shape[1] != self.latent_dim:
            raise InputError(
                f"vae decode: latent has {z.shape[1]} columns, the model's latent_dim is "
                f"{self.latent_dim}"
            )

        device = next(self.module_.parameters()).device
        g = torch.Generator(device=device)
        g.manual_seed(
            int(seed) if seed is not None else int(np.random.SeedSequence().entropy % 2**63)
        )

        def run(zb: Any, cb: Any) -> Any:
            loc, log_scale = self.module_.decode(zb, cb)
            if mean:
                return loc
            noise = torch.randn(loc.shape, generator=g, device=device, dtype=loc.dtype)
            return loc + torch.exp(log_scale) * noise

        return self._batched(run, z, c, self.n_features_)

    # ------------------------------------------------------------------ likelihood bounds
    def log_prob(self, targets: np.ndarray, conditions: np.ndarray) -> np.ndarray:
        """A VAE has no tractable density: raises :class:`NoLikelihoodError` (use
        :meth:`log_prob_bound` for a lower bound)."""
        raise NoLikelihoodError(
            "a 'vae' model has no tractable likelihood: log_prob needs a flow "
            "(model.kind: flow); for a lower bound on log p(x | c) use "
            "VAEModel.log_prob_bound(targets, conditions, method='iwae' or 'elbo')"
        )

    def log_prob_bound(
        self,
        targets: np.ndarray,
        conditions: np.ndarray,
        method: str = "iwae",
        k: int | None = None,
        seed: int = 0,
        batch_size: int | None = None,
    ) -> np.ndarray:
        """A stochastic lower bound on log p(x | c) per row: (n,) float64, nats, model space.

        With K posterior draws ``z_k ~ q(z | x, c)`` and importance weights
        ``w_k = p(x | z_k, c) p(z_k | c) / q(z_k | x, c)``:

        * ``"elbo"``: ``mean_k log w_k``, a K-sample estimate of the ELBO;
        * ``"iwae"``: ``log mean_k w_k`` (Burda et al. 2016), a tighter bound that rises with
          K towards log p(x | c) (in expectation); computed by log-sum-exp in float64.

        Both use the same draws, so row by row ``iwae >= elbo``.  Add the preprocessing's
        log-Jacobian for physical units
        (:meth:`hepgen.preprocessing.Preprocessor.target_log_abs_det_jacobian`).

        Parameters
        ----------
        targets, conditions : np.ndarray
            Model-space matrices (n, D) and (n, C).
        method : {"iwae", "elbo"}
        k : int or None
            Draws per row (default ``settings.iwae_samples``).
        seed : int
            Seed of the draws (a torch.Generator on the module's device): the same seed and
            batch size give the same values.
        batch_size : int or None
            Rows per pass (default: ``65536 // k``, at least 1).

        Raises
        ------
        InputError
            An unknown method, ``k`` or ``batch_size`` not a positive integer, wrong widths
            or NaN/inf values.

        References
        ----------
        Y. Burda, R. Grosse, R. Salakhutdinov, "Importance weighted autoencoders", ICLR 2016,
        arXiv:1509.00519.
        """
        import torch

        self._check_fitted()
        if method not in BOUND_METHODS:
            raise InputError(f"log_prob_bound method {method!r}: expected 'iwae' or 'elbo'")
        k = self.module_.settings.iwae_samples if k is None else k
        for name, value in (("k", k), ("batch_size", batch_size)):
            bad = isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1
            if value is not None and bad:
                raise InputError(f"log_prob_bound {name}={value!r}: expected a positive integer")
        k = int(k)
        batch = max(1, _BOUND_ROWS_PER_PASS // k) if batch_size is None else int(batch_size)
        c, x = check_model_inputs(
            conditions, targets, self.n_conditions_, self.n_features_, where="vae log_prob_bound"
        )
        assert x is not None
        device = next(self.module_.parameters()).device
        g = torch.Generator(device=device)
        g.manual_seed(int(seed))
        log_k = math.log(k)

        def run(xx: Any, cc: Any) -> Any:
            out = []
            for start in range(0, xx.shape[0], batch):
                lw = self.module_.log_weights(
                    xx[start : start + batch], cc[start : start + batch], k, g
                )
                out.append(lw.mean(0) if method == "elbo" else torch.logsumexp(lw, 0) - log_k)
            return torch.cat(out) if out else torch.empty(0, dtype=torch.float64)

        return self._run(run, x, c).cpu().numpy().astype(np.float64, copy=False)
