"""Shared helpers: atomic writes keep the caller's umask and never change it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hepgen.utils import atomic_write_text, default_file_mode


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_atomic_writes_follow_the_umask_without_changing_it(tmp_path: Path, umask: int):
    previous = os.umask(umask)
    try:
        assert default_file_mode() == 0o666 & ~umask
        path = atomic_write_text(tmp_path / "out.txt", "x")
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
        # the process's umask is what the caller set, before and after
        assert os.umask(umask) == umask
    finally:
        os.umask(previous)
