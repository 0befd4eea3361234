"""``model.sampling``: how a fast simulation draws its generator's noise by default.

The sampling temperature and the truncation threshold of :mod:`hepgen.models.latent`, as a
typed section of the configuration (no torch needed).  Left at its defaults (temperature 1, no
truncation) the samples follow the trained model; otherwise the model card records the values
and ``hepgen generate`` uses them unless ``--temperature`` / ``--truncation`` say otherwise.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from hepgen.settings.base import Float, Settings

__all__ = ["SamplingSettings"]


class SamplingSettings(Settings):
    """The default noise of generation: temperature and truncation.

    Parameters
    ----------
    temperature : float
        Scale of the noise (> 0; 1: the trained model).
    truncation : float or None
        Threshold psi > 0 of the truncated normal noise (the truncation trick); ``None``: not
        truncated.

    References
    ----------
    D. P. Kingma, P. Dhariwal, arXiv:1807.03039 (temperature); A. Brock, J. Donahue,
    K. Simonyan, arXiv:1809.11096 (truncation).

    Examples
    --------
    >>> SamplingSettings(truncation=1.5).is_default
    False
    """

    family: ClassVar[str] = "sampling"

    temperature: Float = Field(1.0, gt=0, allow_inf_nan=False)
    truncation: Float | None = Field(None, gt=0, allow_inf_nan=False)

    @property
    def is_default(self) -> bool:
        """Temperature 1 and no truncation: the samples follow the trained model."""
        return self.temperature == 1.0 and self.truncation is None
