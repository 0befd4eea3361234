"""Shared helpers: atomic writes keep the caller's umask and never change it."""

from __future__ import annotations

import os
import stat
import tempfile
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


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o077])
def test_umask_without_proc_is_probed_not_set(tmp_path: Path, monkeypatch, umask: int):
    # Where /proc/self/status is missing (not Linux), the umask comes from a probe file;
    # os.umask, which would change the process's state, is never called.
    import hepgen.utils as utils

    previous = os.umask(umask)
    try:
        monkeypatch.setattr(utils, "_PROC_STATUS", os.fspath(tmp_path / "no-such-status"))

        def forbidden(mask: int) -> int:
            raise AssertionError("os.umask was called")

        monkeypatch.setattr(os, "umask", forbidden)
        assert default_file_mode() == 0o666 & ~umask
        path = atomic_write_text(tmp_path / "out.txt", "x")
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
        monkeypatch.undo()
        assert os.umask(umask) == umask
        assert not [p for p in os.listdir(tempfile.gettempdir()) if p.startswith(".hepgen-umask-")]
    finally:
        os.umask(previous)


def test_check_weights_lives_in_stats_only():
    import hepgen.stats
    import hepgen.utils

    assert callable(hepgen.stats.check_weights)
    assert not hasattr(hepgen.utils, "check_weights")  # one home, no re-export


def test_retain_freed_memory_respects_the_user_s_settings() -> None:
    import sys

    from hepgen.devices import retain_freed_memory

    assert retain_freed_memory({"MALLOC_TRIM_THRESHOLD_": "0"}) is False
    if sys.platform == "linux":  # glibc: the settings are applied
        assert retain_freed_memory({}) is True
