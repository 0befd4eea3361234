"""How a generator's latent noise is drawn: the sampling temperature and the truncation trick.

Every generator of hepgen draws standard-normal noise and maps it to an event: the base
distribution of a flow, the prior of a VAE, the latent input of a GAN.  Two knobs trade
diversity for fidelity at sampling time, without retraining:

* **temperature** ``T`` scales the noise, ``z = T * e`` (Kingma & Dhariwal 2018, the
  "reduced-temperature" samples of Glow): ``T < 1`` concentrates the draws where the model is
  dense, ``T = 1`` is the trained model.
* **truncation** ``psi`` draws each noise component from the standard normal truncated to
  ``[-psi, psi]`` (Brock, Donahue & Simonyan 2019, the truncation trick of BigGAN): draws far
  in the tails, where a generator is least trained, are never made.

Both leave the model unchanged, and both bias the samples: ``T = 1`` and no truncation is the
only setting whose samples follow the learned p(x | c).  The truncated normal is drawn by the
inverse CDF of one uniform per component (float64, then float32), so the random stream is
consumed exactly as many numbers as without truncation: a seed gives the same rows whatever
``psi``, moved towards the core as ``psi`` shrinks.

References
----------
D. P. Kingma, P. Dhariwal, "Glow: generative flow with invertible 1x1 convolutions",
NeurIPS 2018, arXiv:1807.03039 (sampling temperature).
A. Brock, J. Donahue, K. Simonyan, "Large scale GAN training for high fidelity natural image
synthesis", ICLR 2019, arXiv:1809.11096 (the truncation trick).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from hepgen.errors import InputError

__all__ = ["DEFAULT_LATENT", "LatentOptions", "draw_latent", "draw_latent_numpy"]


@dataclasses.dataclass(frozen=True)
class LatentOptions:
    """The sampling temperature and truncation threshold of a generator's noise.

    Parameters
    ----------
    temperature : float
        Scale of the noise, > 0 and finite (1: the trained model).
    truncation : float or None
        Threshold psi > 0 of the truncated normal (each component in ``[-psi, psi]``);
        ``None``: not truncated.

    Raises
    ------
    InputError
        A temperature or threshold that is not a positive finite number (the value named).

    Examples
    --------
    >>> LatentOptions(temperature=0.8).to_dict()
    {'temperature': 0.8, 'truncation': None}
    >>> LatentOptions().is_default
    True
    >>> LatentOptions(truncation=-1.0)
    Traceback (most recent call last):
    ...
    hepgen.errors.InputError: truncation -1.0: expected a positive finite threshold psi (or none)
    """

    temperature: float = 1.0
    truncation: float | None = None

    def __post_init__(self) -> None:
        t = self.temperature
        if not _positive(t):
            raise InputError(f"temperature {t!r}: expected a positive finite number (1: none)")
        object.__setattr__(self, "temperature", float(t))
        psi = self.truncation
        if psi is not None:
            if not _positive(psi):
                raise InputError(
                    f"truncation {psi!r}: expected a positive finite threshold psi (or none)"
                )
            object.__setattr__(self, "truncation", float(psi))

    @property
    def is_default(self) -> bool:
        """Whether the noise is the trained model's: temperature 1, no truncation."""
        return self.temperature == 1.0 and self.truncation is None

    def to_dict(self) -> dict[str, Any]:
        """``{"temperature": T, "truncation": psi or None}`` (for metadata and model cards)."""
        return {"temperature": self.temperature, "truncation": self.truncation}

    @classmethod
    def of(cls, temperature: Any = None, truncation: Any = None) -> LatentOptions:
        """Options from optional arguments (``None`` temperature: 1)."""
        return cls(1.0 if temperature is None else temperature, truncation)


def _positive(value: Any) -> bool:
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float | np.floating | np.integer)
        and math.isfinite(float(value))
        and float(value) > 0
    )


#: Temperature 1, no truncation.
DEFAULT_LATENT = LatentOptions()


def _bounds(psi: float) -> tuple[float, float]:
    """CDF values ``(Phi(-psi), Phi(psi))`` in float64."""
    lo = 0.5 * math.erfc(psi / math.sqrt(2.0))
    return lo, 1.0 - lo


def draw_latent(
    shape: tuple[int, ...],
    generator: Any = None,
    device: Any = None,
    options: LatentOptions = DEFAULT_LATENT,
) -> Any:
    """Noise of ``shape`` for a torch generator: ``T * e`` with ``e`` standard normal, or
    truncated to ``[-psi, psi]`` component by component.

    Parameters
    ----------
    shape : tuple of int
        E.g. ``(n, latent_dim)``.
    generator : torch.Generator or None
        Source of the draws (on its own device, then moved to ``device``); ``None``: the
        global RNG.
    device : torch.device or None
        Where the noise is returned (default: the generator's device, else CPU).
    options : LatentOptions
        Temperature and truncation.

    Returns
    -------
    torch.Tensor of the given shape, float32

    Examples
    --------
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> z = draw_latent((1000, 2), g, options=LatentOptions(truncation=0.5))
    >>> bool(z.abs().max() <= 0.5)
    True
    """
    import torch

    source = generator.device if generator is not None else (device or torch.device("cpu"))
    target = source if device is None else device
    if options.truncation is None:
        z = torch.randn(shape, generator=generator, device=source, dtype=torch.float32)
    else:
        lo, hi = _bounds(options.truncation)
        u = torch.rand(shape, generator=generator, device=source, dtype=torch.float64)
        z = torch.special.ndtri(lo + (hi - lo) * u).clamp_(-options.truncation, options.truncation)
        z = z.to(torch.float32)
    if options.temperature != 1.0:
        z = z * options.temperature
    return z.to(target)


def draw_latent_numpy(
    rng: np.random.Generator, shape: tuple[int, ...], options: LatentOptions = DEFAULT_LATENT
) -> np.ndarray:
    """:func:`draw_latent` for numpy (the ONNX backend, without torch): float32 ``shape``.

    Examples
    --------
    >>> z = draw_latent_numpy(np.random.default_rng(0), (1000,), LatentOptions(truncation=1.0))
    >>> bool(np.abs(z).max() <= 1.0), z.dtype
    (True, dtype('float32'))
    """
    if options.truncation is None:
        z = rng.standard_normal(shape, dtype=np.float32)
    else:
        from scipy.special import ndtri

        lo, hi = _bounds(options.truncation)
        u = rng.random(shape)
        z = np.clip(ndtri(lo + (hi - lo) * u), -options.truncation, options.truncation)
        z = z.astype(np.float32)
    if options.temperature != 1.0:
        z = z * np.float32(options.temperature)
    return z
