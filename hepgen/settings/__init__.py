"""One typed settings layer: every model kind, the training loop, the scan and the efficiency
model declared once, as frozen pydantic models, validated on load with the same errors
(the key named, did-you-mean suggestions), and importing no torch.

Configuration files (:mod:`hepgen.config`, :mod:`hepgen.anomaly.config`) are built from these
classes, command-line overrides go through them, and the runtime objects take them as they
are instead of checking their arguments again.
"""

from hepgen.settings.base import Device, Float, Settings, Strict
from hepgen.settings.models import (
    DEFAULT_N_CRITIC,
    GENERATOR_SETTINGS,
    EfficiencySettings,
    FlowSettings,
    GANSettings,
)
from hepgen.settings.sampling import SamplingSettings
from hepgen.settings.scan import (
    DENSITY_FLOW,
    DENSITY_TRAINING,
    ClassifierSettings,
    EnsembleSettings,
    ScanSection,
    ScanSettings,
)
from hepgen.settings.training import TrainingSettings
from hepgen.settings.vae import VAESettings

__all__ = [
    "DEFAULT_N_CRITIC",
    "DENSITY_FLOW",
    "DENSITY_TRAINING",
    "GENERATOR_SETTINGS",
    "ClassifierSettings",
    "Device",
    "EfficiencySettings",
    "EnsembleSettings",
    "Float",
    "FlowSettings",
    "GANSettings",
    "SamplingSettings",
    "ScanSection",
    "ScanSettings",
    "Settings",
    "Strict",
    "TrainingSettings",
    "VAESettings",
]
