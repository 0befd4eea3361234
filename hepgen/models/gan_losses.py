"""The adversarial losses of a conditional GAN, per event: what the critic and the generator
minimise for each ``GANSettings.loss``.

Every function here returns one number per event (row) of a batch, so that the objective
(:class:`~hepgen.models.gan_objective.GANObjective`) takes their weighted mean exactly like the
flow loss: the generated samples of a row are drawn at that row's conditions, so an
expectation over the joint (c, x) is a weighted mean over rows.

* ``minimax`` [1]: the critic minimises ``softplus(-D_r) + softplus(D_g)``, the generator
  ``-softplus(D_g) = log(1 - s(D_g))``;
* ``non-saturating`` [1]: the same critic; the generator minimises ``softplus(-D_g) =
  -log s(D_g)``;
* ``wgan-clip`` [2]: the critic minimises ``D_g - D_r`` with its parameters clipped to
  [-c, c] (:func:`clip_parameters`), the generator ``-D_g``;
* ``wgan-gp`` [3]: as ``wgan-clip``, with a gradient penalty instead of clipping;
* ``hinge`` [4, 5]: the critic minimises ``relu(1 - D_r) + relu(1 + D_g)``, the generator
  ``-D_g``;
* ``cramer`` [6]: :func:`cramer_critic` and :func:`cramer_generator`.

``D_r = D(x_r, c)`` and ``D_g = D(G(z, c), c)`` are the critic's single output at the real and
generated event of a row (a logit for the two losses of the original GAN: ``s = sigmoid(D)``
is the probability "real"); ``softplus(t) = log(1 + e^t)``, so ``softplus(-D) = -log s`` and
``softplus(D) = -log(1 - s)``, computed without overflow.

References
----------
[1] I. Goodfellow et al., "Generative adversarial nets", NeurIPS 2014, arXiv:1406.2661
(eq. 1; the non-saturating generator loss of its section 3).
[2] M. Arjovsky, S. Chintala, L. Bottou, "Wasserstein GAN", ICML 2017, arXiv:1701.07875.
[3] I. Gulrajani et al., "Improved training of Wasserstein GANs", NeurIPS 2017,
arXiv:1704.00028.
[4] J. H. Lim, J. C. Ye, "Geometric GAN", arXiv:1705.02894.
[5] T. Miyato et al., "Spectral normalization for generative adversarial networks",
ICLR 2018, arXiv:1802.05957.
[6] M. G. Bellemare et al., "The Cramer distance as a solution to biased Wasserstein
gradients", arXiv:1705.10743.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = [
    "SINGLE_OUTPUT_LOSSES",
    "clip_parameters",
    "cramer_critic",
    "cramer_generator",
    "critic_losses",
    "generator_losses",
    "row_norm",
]

#: The losses whose critic outputs one number per event (every one but ``"cramer"``).
SINGLE_OUTPUT_LOSSES = ("wgan-gp", "wgan-clip", "minimax", "non-saturating", "hinge")
_NORM_EPS = 1e-12


def row_norm(v: Tensor) -> Tensor:
    """Row-wise Euclidean norm with a finite derivative at 0: ``sqrt(|v|^2 + 1e-12)``."""
    return torch.sqrt(v.pow(2).sum(dim=1) + _NORM_EPS)


def _check(loss: str) -> None:
    if loss not in SINGLE_OUTPUT_LOSSES:
        raise ValueError(f"loss {loss!r}: expected one of {SINGLE_OUTPUT_LOSSES}")


def critic_losses(loss: str, d_real: Tensor, d_fake: Tensor) -> Tensor:
    """Per-event critic loss of a single-output critic (see the module's table).

    Parameters
    ----------
    loss : str
        One of :data:`SINGLE_OUTPUT_LOSSES`.
    d_real, d_fake : Tensor of shape (n,)
        The critic's output at each row's real event and at its generated event (same
        conditions).

    Returns
    -------
    Tensor of shape (n,)

    Examples
    --------
    >>> import torch
    >>> d_r, d_g = torch.tensor([2.0, 0.0]), torch.tensor([-2.0, 0.5])
    >>> critic_losses("hinge", d_r, d_g).tolist()
    [0.0, 2.5]
    >>> round(critic_losses("minimax", torch.zeros(1), torch.zeros(1)).item(), 4)  # 2 log 2
    1.3863
    """
    _check(loss)
    if loss in ("wgan-gp", "wgan-clip"):
        return d_fake - d_real
    if loss == "hinge":
        return F.relu(1.0 - d_real) + F.relu(1.0 + d_fake)
    return F.softplus(-d_real) + F.softplus(d_fake)  # -log s(D_r) - log(1 - s(D_g))


def generator_losses(loss: str, d_fake: Tensor) -> Tensor:
    """Per-event generator loss of a single-output critic (see the module's table).

    ``"minimax"`` minimises ``log(1 - s(D_g)) = -softplus(D_g)``, whose gradient vanishes
    where the critic rejects the generated events confidently (``D_g << 0``: early in
    training); ``"non-saturating"`` minimises ``-log s(D_g) = softplus(-D_g)`` instead, with
    the same fixed point and a gradient that is largest there (Goodfellow et al., sec. 3).

    Parameters
    ----------
    loss : str
        One of :data:`SINGLE_OUTPUT_LOSSES`.
    d_fake : Tensor of shape (n,)
        The critic's output at each row's generated event.

    Returns
    -------
    Tensor of shape (n,)

    Examples
    --------
    >>> import torch
    >>> d = torch.tensor([-8.0], requires_grad=True)  # a confidently rejected event
    >>> for loss in ("minimax", "non-saturating"):
    ...     (grad,) = torch.autograd.grad(generator_losses(loss, d).sum(), d)
    ...     print(loss, round(grad.item(), 4))
    minimax -0.0003
    non-saturating -0.9997
    """
    _check(loss)
    if loss == "minimax":
        return -F.softplus(d_fake)
    if loss == "non-saturating":
        return F.softplus(-d_fake)
    return -d_fake


def cramer_critic(
    h: Callable[[Tensor], Tensor], x_real: Tensor, x_fake: Tensor, h_ref: Tensor
) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
    """Per-event critic loss of the Cramer GAN and the critic's surrogate ``f``.

    Parameters
    ----------
    h : callable ``x (n, D) -> (n, k)``
        The critic's map at the rows' conditions.
    x_real, x_fake : Tensor of shape (n, D)
        Each row's real event and one generated event.
    h_ref : Tensor of shape (n, k)
        ``h`` of a second, independent generated event of each row.

    Returns
    -------
    losses : Tensor of shape (n,)
        ``-(f(x_r) - f(x_g))`` with ``f(x) = ||h(x) - h(x_g')|| - ||h(x)||`` (Bellemare et al.,
        Algorithm 1).
    f : callable
        The surrogate, for the gradient penalty.
    """

    def f(xx: Tensor) -> Tensor:
        out = h(xx)
        return row_norm(out - h_ref) - row_norm(out)

    return f(x_fake) - f(x_real), f


def cramer_generator(h_real: Tensor, h_fake: Tensor, h_fake2: Tensor) -> Tensor:
    """Per-event generator loss of the Cramer GAN: the energy distance in critic space,
    ``||h_r - h_g|| + ||h_r - h_g'|| - ||h_g - h_g'||`` (each (n, k); returns (n,))."""
    return row_norm(h_real - h_fake) + row_norm(h_real - h_fake2) - row_norm(h_fake - h_fake2)


@torch.no_grad()
def clip_parameters(parameters: Iterable[Tensor], clip_value: float) -> None:
    """Clip every parameter into ``[-clip_value, clip_value]`` in place: the Lipschitz
    constraint of the WGAN critic (Arjovsky et al., Algorithm 1), after each critic update.

    Examples
    --------
    >>> import torch
    >>> layer = torch.nn.Linear(3, 2)
    >>> clip_parameters(layer.parameters(), 0.01)
    >>> bool(layer.weight.abs().max() <= 0.01)
    True
    """
    for p in parameters:
        p.clamp_(-clip_value, clip_value)
