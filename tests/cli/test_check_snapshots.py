"""``synarrow check`` verifies every snapshot: its record and every file it pins, naming the
tag; damage is really made (bytes flipped, files deleted, the record's JSON edited)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import synarrow
from synarrow.check import check_database

CONFIG = synarrow.DbConfig(sync_on_write=False, auto_compact=False)


@pytest.fixture
def tagged(tmp_path: Path) -> tuple[Path, set[str]]:
    """A database whose tag ``old`` pins files the current state no longer names (returned),
    and whose tag ``now`` shares the current state's files."""
    path = tmp_path / "t.db"
    with synarrow.SynaDB(path, CONFIG) as db:
        db.append_batch("x", np.arange(20_000.0))
        db.append("t", "text")
        db.snapshot("old")
        db.append_batch("x", np.arange(10.0))
        db.delete("t")
        db.compact(full=True)
        db.snapshot("now")
        record = json.loads((path / "snapshots" / "old.json").read_text())
        live = {
            f["name"] for f in json.loads((path / "columnar" / "MANIFEST").read_text())["files"]
        }
    pinned = {f["name"] for f in record["manifest"]["files"]} - live
    pinned.add(record["manifest"]["index"])
    assert pinned  # the test needs files only the snapshot keeps
    return path, pinned


def _cli(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "synarrow.cli", "check", str(path), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_healthy_snapshots_pass(tagged: tuple[Path, set[str]]) -> None:
    path, pinned = tagged
    report = check_database(path)
    assert report.ok, report.damage
    assert not report.warnings  # pinned files are not leftovers
    assert report.snapshots == 2 and report.snapshot_files == len(pinned) - 1  # data files
    assert any(ln.startswith("snapshots/old.json:") and ln.endswith("OK") for ln in report.lines)
    proc = _cli(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 snapshots" in proc.stdout
    # A tag of the same state shares every batch: verified once, not again.
    with synarrow.SynaDB(path, CONFIG) as db:
        db.snapshot("again")
    again = check_database(path)
    assert again.ok and again.snapshots == 3
    assert again.bytes_checked == report.bytes_checked


def test_flipped_byte_in_a_file_only_a_snapshot_pins(tagged: tuple[Path, set[str]]) -> None:
    path, pinned = tagged
    victim = path / "columnar" / max(pinned, key=lambda n: (path / "columnar" / n).stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x40  # in the middle of the 20,000 floats
    victim.write_bytes(bytes(data))
    with synarrow.SynaDB(path, readonly=True) as db:  # the current state does not read it
        assert db.get_history_floats("x").size == 20_010
    report = check_database(path)
    assert not report.ok
    assert len(report.damage) == 1
    assert report.damage[0].startswith(f"snapshot 'old': columnar/{victim.name}: bytes ")
    proc = _cli(path)
    assert (
        proc.returncode == 3 and f"DAMAGED: snapshot 'old': columnar/{victim.name}" in proc.stdout
    )


def test_deleted_pinned_file(tagged: tuple[Path, set[str]]) -> None:
    path, pinned = tagged
    name = sorted(n for n in pinned if "index" not in n)[0]
    (path / "columnar" / name).unlink()
    report = check_database(path)
    assert report.damage == [f"snapshot 'old': columnar/{name}: named by the manifest but missing"]
    index = next(n for n in pinned if "index" in n)
    (path / "columnar" / index).unlink()
    report = check_database(path)
    assert len(report.damage) == 2
    assert report.damage[0].startswith(f"snapshot 'old': columnar/{index}: ")


def test_damaged_record(tagged: tuple[Path, set[str]]) -> None:
    path, pinned = tagged
    record = path / "snapshots" / "old.json"
    body = json.loads(record.read_text())
    body["entries"] += 1  # valid JSON, wrong checksum
    record.write_text(json.dumps(body))
    report = check_database(path)
    assert not report.ok
    assert len(report.damage) == 1
    assert report.damage[0].startswith("snapshot 'old': snapshots/old.json: ")
    assert "checksum" in report.damage[0]
    # The files it pinned are kept (nothing is removed while a record is unreadable) and
    # reported as such, not as plain leftovers.
    assert {w.split(":")[0] for w in report.warnings} == {f"columnar/{n}" for n in pinned}
    assert all("snapshot record is damaged" in w for w in report.warnings)
    record.write_bytes(b"{not json")
    proc = _cli(path)
    assert proc.returncode == 3
    assert "DAMAGED: snapshot 'old': snapshots/old.json:" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_leftovers_still_reported_and_foreign_names_are_damage(
    tagged: tuple[Path, set[str]],
) -> None:
    path, pinned = tagged
    with synarrow.SynaDB(path, CONFIG) as db:
        db.drop_snapshot("old")  # its files are removed at once
    assert not any((path / "columnar" / n).exists() for n in pinned)
    (path / "columnar" / "g000099-000.arrow").write_bytes(b"x" * 10)
    (path / "snapshots" / "notes.txt").write_text("hello")
    (path / "snapshots" / ".v9.json.tmp-0123456789ab").write_text("{")
    report = check_database(path)
    assert report.damage == ["snapshots/notes.txt: not a file synarrow writes"]
    assert any(
        w.startswith("columnar/g000099-000.arrow: not in the manifest") for w in report.warnings
    )
    assert any(w.startswith("snapshots/.v9.json.tmp-") for w in report.warnings)
    assert report.snapshots == 1
