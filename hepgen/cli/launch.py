"""``hepgen train --devices N``: the same command again, under ``torchrun``, on N processes.

:func:`launch_train` checks the request (N >= 1, not already inside torchrun, N GPUs visible
for a CUDA device), rebuilds the command line from the parsed arguments without ``--devices``
(:func:`train_argv`) and runs ``python -m torch.distributed.run --standalone
--nproc_per_node N -m hepgen train ...``, returning its exit code.  The processes train with
DistributedDataParallel (:mod:`hepgen.training.distributed`).
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from typing import Any

from hepgen.errors import InputError

__all__ = ["check_devices", "launch_train", "torchrun_command", "train_argv"]

logger = logging.getLogger("hepgen")

#: ``train`` options rebuilt as ``--flag VALUE`` (dest, flag); store_true flags are below.
_VALUED = (("device", "--device"), ("max_epochs", "--max-epochs"), ("seed", "--seed"))
_FLAGS = (("resume", "--resume"), ("overwrite", "--overwrite"), ("quiet", "--quiet"))
_FLAGS += (("debug", "--debug"),)
#: Parsed ``train`` arguments that the rebuilt command line does not need to carry.
_HANDLED = {"command", "config", "output", "files", "overrides", "devices"}


def _yaml_value(value: Any) -> str:
    """A ``--set`` value as YAML text that parses back to ``value``."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30).strip()
    return text[: -len("...")].strip() if text.endswith("...") else text


def train_argv(args: argparse.Namespace) -> list[str]:
    """The ``train`` command line of the parsed ``args``, without ``--devices``.

    Raises
    ------
    ValueError
        ``args`` holds an option this function does not know how to pass on.

    Examples
    --------
    >>> from hepgen.cli.parser import build_parser
    >>> args = build_parser().parse_args(["train", "c.yaml", "-o", "m", "--devices", "2",
    ...                                   "--set", "training.batch_size=512", "--resume"])
    >>> train_argv(args)
    ['train', 'c.yaml', '-o', 'm', '--set', 'training.batch_size=512', '--resume']
    """
    argv = ["train", str(args.config), "-o", str(args.output)]
    if args.files:
        argv += ["--files", *map(str, args.files)]
    for key, value in args.overrides:
        argv += ["--set", f"{key}={_yaml_value(value)}"]
    for dest, flag in _VALUED:
        if getattr(args, dest, None) is not None:
            argv += [flag, str(getattr(args, dest))]
    for dest, flag in _FLAGS:
        if getattr(args, dest, False):
            argv.append(flag)
    known = _HANDLED | {d for d, _ in _VALUED} | {d for d, _ in _FLAGS}
    unknown = sorted(k for k in vars(args) if k not in known)
    if unknown:
        raise ValueError(f"train_argv does not pass on the option(s) {', '.join(unknown)}")
    return argv


def check_devices(n: int, device: str) -> None:
    """InputError unless ``n`` processes can train on ``device`` here (one GPU each for CUDA).

    Examples
    --------
    >>> check_devices(2, "cpu")
    >>> check_devices(0, "cpu")
    Traceback (most recent call last):
    ...
    hepgen.errors.InputError: --devices must be positive, got 0
    """
    from hepgen.devices import check_device
    from hepgen.training.distributed import launched

    if n < 1:
        raise InputError(f"--devices must be positive, got {n}")
    if n > 1 and launched():
        raise InputError(
            "--devices: this process already runs under torchrun (WORLD_SIZE is set); "
            "leave out --devices and set the processes with torchrun --nproc_per_node"
        )
    name = check_device(device)
    if n == 1 or name == "cpu":
        return
    import torch

    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if name == "auto" and visible == 0:
        return  # auto without a GPU: n CPU processes
    if visible < n:
        raise InputError(
            f"--devices {n} with device '{name}': torch sees {visible} GPU(s); use "
            f"--devices {max(visible, 1)} or less, or --device cpu for {n} CPU processes"
        )


def torchrun_command(n: int, argv: list[str]) -> list[str]:
    """``python -m torch.distributed.run --standalone --nproc_per_node N -m hepgen ARGV``.

    Examples
    --------
    >>> torchrun_command(2, ["train", "c.yaml", "-o", "m"])[1:6]
    ['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2']
    """
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        str(n),
        "-m",
        "hepgen",
        *argv,
    ]


def launch_train(args: argparse.Namespace, config: Any) -> int:
    """Run ``train`` (``args`` without ``--devices``) on ``args.devices`` processes under
    torchrun; returns torchrun's exit code (0: every process succeeded).

    ``config`` (:class:`hepgen.config.Config`, overrides applied) gives the device and the
    model kind, checked here so that a refused request ends with exit code 2 and one line
    (a generator without a likelihood, i.e. a GAN, does not train under DDP).  Each process
    gets ``OMP_NUM_THREADS`` = CPU cores // N unless the variable is set.
    """
    from hepgen.models.registry import model_class

    n = int(args.devices)
    check_devices(n, config.training.device)
    kind = config.model.kind
    if n > 1 and not model_class(kind).distributed_training:
        raise InputError(
            f"--devices {n}: model.kind '{kind}' trains in one process only "
            "(DistributedDataParallel is for the flows); use --devices 1"
        )
    command = torchrun_command(n, train_argv(args))
    env = dict(os.environ)
    if "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // n))
    logger.info("launching %d processes: %s", n, " ".join(command))
    return subprocess.run(command, env=env, check=False).returncode
