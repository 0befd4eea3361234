"""Error types that the command line turns into one-line messages and exit code 2.

Every error raised for bad *input* (a file, a tree, a branch, a config key, a value) derives
from :class:`HepgenError`; its message names the offending thing and says what was expected.
Programming errors stay ordinary Python exceptions so that they show a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "ConfigError",
    "HepgenError",
    "InputError",
    "MissingDependencyError",
    "ValidationFailed",
    "did_you_mean",
    "require",
]


class HepgenError(Exception):
    """Base class for errors caused by the user's input; the CLI exits with code 2."""

    exit_code = 2


class InputError(HepgenError, ValueError):
    """Bad input data: missing file, tree or branch; wrong type; non-finite values; ..."""


class ConfigError(HepgenError, ValueError):
    """A configuration file that does not validate (unknown, mistyped or missing key)."""


class MissingDependencyError(HepgenError, ImportError):
    """An optional package that the requested work needs is not installed (e.g. xgboost in a
    bare ``pip install hepgen``); the message names the package and the extra to install."""


def require(module: str, purpose: str, extra: str = "cpu") -> object:
    """Import ``module`` or raise :class:`MissingDependencyError` naming ``purpose``.

    Parameters
    ----------
    module : str
        The import name (``"xgboost"``).
    purpose : str
        What needs it, for the message (``"the efficiency model"``).
    extra : str
        The hepgen extra that installs it.

    Returns
    -------
    module
        The imported module.
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(
            f"{purpose} needs {module}, which is not installed: pip install 'hepgen[{extra}]' "
            "(CPU) or 'hepgen[cuda]' (GPU build)"
        ) from None


class ValidationFailed(HepgenError):
    """A comparison that ran but must not pass (e.g. non-finite values in a sample, or a
    DIFFERENT verdict with ``--fail-on-different``); the report is written, the CLI exits 1."""

    exit_code = 1


def did_you_mean(name: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ``" (did you mean 'a', 'b'?)"`` for the closest names, or ``""`` when none is close.

    Parameters
    ----------
    name : str
        The name that was not found.
    choices : iterable of str
        The names that exist.
    n : int
        At most this many suggestions.
    """
    choices = list(choices)
    close = difflib.get_close_matches(name, choices, n=n, cutoff=0.6)
    if not close:
        lowered = {c.lower(): c for c in choices}
        close = [
            lowered[c] for c in difflib.get_close_matches(name.lower(), lowered, n=n, cutoff=0.6)
        ]
    if not close:
        return ""
    return " (did you mean " + ", ".join(repr(c) for c in close) + "?)"
