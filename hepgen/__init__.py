"""hepgen: learned fast simulation, anomaly scores and validation for high-energy physics."""

from hepgen._version import __version__
from hepgen.errors import ConfigError, HepgenError, InputError

__all__ = ["ConfigError", "HepgenError", "InputError", "__version__"]
