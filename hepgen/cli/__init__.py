"""The ``hepgen`` command line: a thin layer over the Python API.

Every command has ``--help``, ``--quiet`` and ``--debug`` (tracebacks).
Bad usage or bad input ends with a one-line ``hepgen: error: ...`` message on stderr and exit
code 2; success exits 0.

What ``--quiet`` silences (the rule every command follows, through :func:`_print`):

* silenced: progress bars and informational log lines (chatter about work in progress);
* never silenced: warnings (``hepgen: ...`` on stderr, e.g. conditions outside the training
  domain, stale temporary files removed), errors, and the command's actual output on stdout:
  what it reports or prints (``inspect``'s table, ``info``'s card) and the result lines
  naming what was written (``wrote N events to X``, ``output: X``, headline numbers).

Outputs are checked before any work (:mod:`hepgen.outputs`): a path that cannot be written,
a file where a folder is expected (or the reverse), an output that is also an input, or an
existing output file without ``--overwrite`` is refused at once.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from hepgen.cli.commands import COMMANDS
from hepgen.cli.parser import build_parser
from hepgen.errors import HepgenError

__all__ = ["build_parser", "configure_process", "main"]


def configure_process(environ: dict[str, str] | None = None) -> None:
    """Process-level settings of the ``hepgen`` command, made before torch or xgboost load.

    OpenMP: unless the user set ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``, idle OpenMP
    threads sleep at once (``OMP_WAIT_POLICY=PASSIVE``) instead of spinning.  torch, MKL and
    xgboost each run a libgomp pool; a spinning pool takes the cores that the other pools and
    the other jobs of a shared machine need, and a training step (tens of parallel kernels)
    then waits at every barrier for a descheduled thread.  On a busy 2-core machine the
    autoregressive PID flow (batch 512) trained at 34 rows/s with a bounded spin
    (``GOMP_SPINCOUNT=30000``) and at 3.7k rows/s with ``PASSIVE``
    (``benchmarks/bench_train_speed.py``).  The runtimes read the variables when they start,
    so this only takes effect before torch is imported; the library itself never changes
    the environment (Python users on shared machines set the variable themselves).

    Parameters
    ----------
    environ : dict or None
        The environment to update (default ``os.environ``).
    """
    env = os.environ if environ is None else environ
    if "OMP_WAIT_POLICY" not in env and "GOMP_SPINCOUNT" not in env:
        env["OMP_WAIT_POLICY"] = "PASSIVE"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``hepgen`` command; returns the exit code."""
    from hepgen.devices import retain_freed_memory

    configure_process()
    retain_freed_memory()  # the command's own process: see hepgen.devices.MALLOC_SETTINGS
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, or a one-line usage error (code 2)
        return exit_.code if isinstance(exit_.code, int) else 0 if exit_.code is None else 2
    logging.basicConfig(
        level=logging.DEBUG if args.debug else (logging.WARNING if args.quiet else logging.INFO),
        format="hepgen: %(levelname)s: %(message)s" if args.debug else "hepgen: %(message)s",
        stream=sys.stderr,
    )
    if not args.debug:  # Dask's own chatter (cluster start/stop, closed comms) only with --debug
        # (read by dask.distributed when it is imported, here and in its worker processes)
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
    try:
        return COMMANDS[args.command](args)
    except HepgenError as err:
        if args.debug:
            raise
        message = " ".join(str(err).split())  # one line, whatever the message holds
        print(f"hepgen: error: {message}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("hepgen: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of our output went away (`hepgen info DIR | head`): not an error of the
        # command; send what is left to /dev/null so that the exit does not raise again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
