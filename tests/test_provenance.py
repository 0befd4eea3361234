"""Provenance records: file hashes (chunked), versions, and a clear error for missing files."""

from __future__ import annotations

import hashlib

import pytest

from hepgen.errors import InputError
from hepgen.provenance import file_sha256, package_versions, provenance


def test_hash_matches_hashlib_across_chunks(tmp_path):
    data = bytes(range(256)) * 5000  # 1.28 MB: several chunks of 64 kB
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert file_sha256(path, chunk_size=65536) == hashlib.sha256(data).hexdigest()


def test_provenance_record(tmp_path):
    path = tmp_path / "in.root"
    path.write_bytes(b"not really root")
    rec = provenance([path], seed=7, config="c.yaml")
    assert rec["seed"] == 7 and rec["config"] == "c.yaml"
    assert rec["inputs"][0]["bytes"] == 15
    assert rec["inputs"][0]["sha256"] == hashlib.sha256(b"not really root").hexdigest()
    versions = package_versions()
    assert {"hepgen", "torch", "nflows", "numpy"} <= set(versions)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(InputError, match=r"nope\.root"):
        file_sha256(tmp_path / "nope.root")
