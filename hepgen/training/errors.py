"""The training engine's error: training cannot go on.

:class:`TrainingError` is raised by the NaN guard of the loop (persistent non-finite losses or
gradients) and by resume (a missing, corrupt or incompatible checkpoint).  It lives in a module
of its own so that every part of the engine can raise it without importing the others.
"""

from __future__ import annotations

from hepgen.errors import HepgenError

__all__ = ["TrainingError"]


class TrainingError(HepgenError):
    """Training cannot go on: persistent NaN/inf, or a checkpoint that cannot be resumed.

    The message names the epoch and batch, or the checkpoint file, and says what to do.

    References
    ----------
    P. Micikevicius et al., "Mixed precision training", ICLR 2018, arXiv:1710.03740 (skip a
    step whose gradient is not finite; give up when it keeps happening).

    Examples
    --------
    >>> from hepgen.training import TrainingError
    >>> issubclass(TrainingError, Exception)
    True
    """
