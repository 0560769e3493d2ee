"""Damaged model bytes on disk are detected by SHA-256 and never returned as a model."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import synarrow
from synarrow import ChecksumError, CorruptionError

SIZE = 3 * 1024 * 1024 + 123  # several chunks of the small chunk size below


@pytest.fixture
def saved(tmp_path: Path):
    reg = synarrow.ModelRegistry(tmp_path / "models.db", chunk_size=1024 * 1024)
    payload = np.random.default_rng(7).bytes(SIZE)
    info = reg.save_model("m", payload, {"a": 1})
    yield reg, info, payload
    reg.close()


def _blob(reg: synarrow.ModelRegistry, checksum: str) -> Path:
    return reg.path / "blobs" / checksum


@pytest.mark.parametrize("offset", [0, SIZE // 2, SIZE - 1])
def test_flipped_byte_raises_checksum_error(saved, tmp_path: Path, offset: int) -> None:
    reg, info, payload = saved
    assert reg.load_model("m")[0] == payload
    blob = _blob(reg, info.checksum)
    with open(blob, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(ChecksumError) as err:
        reg.load_model("m")
    assert info.checksum in str(err.value)
    dest = tmp_path / "out.bin"
    with pytest.raises(ChecksumError):
        reg.load_model("m", path=dest)
    assert not dest.exists()
    assert not list(tmp_path.glob(".out.bin.tmp-*"))  # the partial copy is removed
    problems = reg.verify()
    assert [p[:2] for p in problems] == [("m", 1)]
    assert "do not match" in problems[0][2] and info.checksum in problems[0][2]
    with pytest.raises(CorruptionError):  # ChecksumError is a CorruptionError
        reg.load_model("m", 1)


def test_truncated_or_extended_file(saved) -> None:
    reg, info, _ = saved
    blob = _blob(reg, info.checksum)
    os.truncate(blob, SIZE - 10)
    with pytest.raises(ChecksumError, match="expected"):
        reg.load_model("m")
    with open(blob, "ab") as f:
        f.write(b"\0" * 20)
    with pytest.raises(ChecksumError):
        reg.load_model("m")


def test_missing_file(saved) -> None:
    reg, info, _ = saved
    _blob(reg, info.checksum).unlink()
    with pytest.raises(CorruptionError, match="missing"):
        reg.load_model("m")
    assert len(reg.verify("m")) == 1


def test_good_versions_still_load_and_verify_is_clean(saved) -> None:
    reg, info, _ = saved
    other = reg.save_model("m", b"second")
    assert reg.verify() == []
    with open(_blob(reg, info.checksum), "r+b") as f:
        f.write(b"X")
    assert reg.load_model("m", other.version)[0] == b"second"
    assert [p[:2] for p in reg.verify()] == [("m", 1)]
