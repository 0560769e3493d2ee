"""``synarrow check`` reports every kind of damage a read could meet, and writes nothing."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import synarrow
from synarrow.check import check_database
from synarrow.log.format import FLAG_BATCH, Atom, encode_entry, flags_byte

CONFIG = synarrow.DbConfig(sync_on_write=False, auto_compact=False)


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("healthy") / "h.db"
    with synarrow.SynaDB(path, CONFIG) as db:
        db.append_batch("x", np.arange(1000.0))
        db.append("t", "text")
        db.compact()
        db.append("x", 1000.0)  # a log tail too
    return path


@pytest.fixture
def copy(healthy: Path, tmp_path: Path) -> Path:
    d = tmp_path / "c.db"
    shutil.copytree(healthy, d)
    return d


def _snapshot(path: Path) -> dict[str, tuple[bytes, int]]:
    return {str(f): (f.read_bytes(), f.stat().st_mtime_ns) for f in path.rglob("*") if f.is_file()}


def _cli_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "synarrow.cli", "check", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_healthy_store_passes_and_nothing_is_written(healthy: Path) -> None:
    before = _snapshot(healthy)
    report = check_database(healthy)
    assert report.ok, report.damage
    assert report.columnar_files == 2 and report.columnar_rows == 1001
    assert report.log_entries == 1 and not report.warnings
    assert _snapshot(healthy) == before


def test_log_entry_that_verifies_but_does_not_decode(copy: Path) -> None:
    segment = max((copy / "log").glob("*.log"))
    for sidecar in (copy / "log").glob("*.idx"):
        sidecar.unlink()
    # A batch claiming 1000 floats but holding one, with a correct CRC.
    payload = struct.pack("<IIBBH", 1000, 0, 0, 0, 0) + bytes(8)
    with open(segment, "ab") as f:
        f.write(encode_entry(1, b"bad", payload, flags_byte(FLAG_BATCH, int(Atom.FLOAT))))
    report = check_database(copy)
    assert not report.ok
    assert report.damage[0].startswith(f"log/{segment.name}: entries verify but do not decode")
    proc = _cli_check(copy)
    assert proc.returncode == 3 and f"log/{segment.name}" in proc.stdout


@pytest.mark.parametrize("where", ["log", "columnar", "root", "blobs"])
def test_symlinks_anywhere_are_damage(copy: Path, tmp_path: Path, where: str) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"x" * 64)
    folder = copy if where == "root" else copy / where
    folder.mkdir(exist_ok=True)
    name = (
        "a" * 64 if where == "blobs" else "00000099.log" if where == "log" else "g000009-000.arrow"
    )
    os.symlink(victim, folder / name)
    report = check_database(copy)
    assert not report.ok
    assert any("symbolic link" in d for d in report.damage), report.damage
    assert victim.read_bytes() == b"x" * 64


@pytest.mark.parametrize("where", ["log", "columnar"])
def test_foreign_files_in_log_and_columnar_are_damage(copy: Path, where: str) -> None:
    (copy / where / "stray.bin").write_bytes(b"?")
    report = check_database(copy)
    assert not report.ok and f"{where}/stray.bin: not a file synarrow writes" in report.damage


def test_check_json_lists_every_problem(copy: Path) -> None:
    (copy / "columnar" / "stray.bin").write_bytes(b"?")
    data = next((copy / "columnar").glob("g*-000.arrow"))
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 3] ^= 0xFF
    data.write_bytes(bytes(raw))
    proc = subprocess.run(
        [sys.executable, "-m", "synarrow.cli", "check", str(copy), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    import json

    result = json.loads(proc.stdout)
    assert proc.returncode == 3 and not result["ok"]
    assert len(result["damage"]) == 2
    assert any(f"columnar/{data.name}: bytes " in d for d in result["damage"])
