"""A database never follows a link or a foreign name out of its directory.

Each test writes a real database, closes it, plants a symlink (or a file with a name
synarrow does not write) in place of one of its files, reopens it, and checks that the
open is refused with a CorruptionError naming the file, and that the victim file outside
the database is unchanged, bytes and mtime.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from _victims import Victim

import synarrow
from synarrow.errors import CorruptionError

CFG = synarrow.DbConfig(sync_on_write=False, auto_compact=False)


@pytest.fixture
def victim(tmp_path: Path) -> Victim:
    return Victim(tmp_path / "victim.txt")


def make_db(path: Path, n: int = 10) -> Path:
    with synarrow.SynaDB(path, CFG) as db:
        for i in range(n):
            db.append("k", float(i))
        db.append("t", "text")
    return path


def plant_link(at: Path, target: Path) -> None:
    if at.exists() or at.is_symlink():
        at.unlink()
    at.symlink_to(target)


def test_lock_symlink_is_not_written_through(tmp_path: Path, victim: Victim) -> None:
    db = make_db(tmp_path / "a.db")
    plant_link(db / "LOCK", victim.path)
    with pytest.raises(CorruptionError, match="LOCK"):
        synarrow.SynaDB(db, CFG)
    assert victim.unchanged()
    # Reading needs no lock file: a read-only handle still works.
    with synarrow.SynaDB(db, readonly=True) as ro:
        assert ro.get("k") == 9.0


def test_dangling_lock_symlink_creates_nothing(tmp_path: Path) -> None:
    db = make_db(tmp_path / "a.db")
    target = tmp_path / "created-outside"
    plant_link(db / "LOCK", target)
    with pytest.raises(CorruptionError):
        synarrow.SynaDB(db, CFG)
    assert not target.exists()


def test_marker_symlink_creates_nothing(tmp_path: Path) -> None:
    db = make_db(tmp_path / "a.db")
    target = tmp_path / "marker-outside"
    plant_link(db / "SYNARROW", target)
    with pytest.raises(CorruptionError, match="marker"):
        synarrow.SynaDB(db, CFG)
    with pytest.raises(CorruptionError, match="marker"):
        synarrow.SynaDB(db, readonly=True)
    assert not target.exists()


def test_config_temporary_symlink_is_never_written(tmp_path: Path, victim: Victim) -> None:
    db = make_db(tmp_path / "a.db")
    # The fixed temporary name of older versions, and a guess at the new pattern.
    plant_link(db / "config.json.tmp", victim.path)
    plant_link(db / ".config.json.tmp-000000000000", victim.path)
    # A different config makes the open replace config.json.
    with synarrow.SynaDB(db, CFG.replace(write_buffer_bytes=4096)) as again:
        assert again.get("k") == 9.0
    assert victim.unchanged()
    assert synarrow.DbConfig.from_json((db / "config.json").read_text()).write_buffer_bytes == 4096
    # The crash leftover matching our temporary pattern was removed (the link, not its target).
    assert not (db / ".config.json.tmp-000000000000").is_symlink()


def test_config_symlink_is_refused(tmp_path: Path, victim: Victim) -> None:
    db = make_db(tmp_path / "a.db")
    victim = Victim(victim.path, (db / "config.json").read_bytes())
    plant_link(db / "config.json", victim.path)
    for kwargs in ({}, {"readonly": True}):
        with pytest.raises(CorruptionError, match=r"config\.json"):
            synarrow.SynaDB(db, CFG.replace(write_buffer_bytes=4096), **kwargs)
    with pytest.raises(CorruptionError):
        synarrow.open(db, write_buffer_bytes=8192)
    assert victim.unchanged()


def test_segment_linked_to_another_database_is_refused(tmp_path: Path) -> None:
    a = make_db(tmp_path / "a.db")
    b = make_db(tmp_path / "b.db", n=3)
    other = b / "log" / "00000001.log"
    before = (other.read_bytes(), other.stat().st_mtime_ns)
    for f in (a / "log").iterdir():
        f.unlink()
    plant_link(a / "log" / "00000001.log", other)
    for kwargs in ({}, {"readonly": True}):
        with pytest.raises(CorruptionError, match=r"00000001\.log"):
            synarrow.SynaDB(a, CFG, **kwargs)
    assert (other.read_bytes(), other.stat().st_mtime_ns) == before
    with synarrow.SynaDB(b, CFG) as db_b:
        assert db_b.get_history("k").num_rows == 3


def test_sidecar_symlink_is_refused(tmp_path: Path, victim: Victim) -> None:
    db = make_db(tmp_path / "a.db")
    sidecar = db / "log" / "00000001.idx"
    assert sidecar.exists()  # written when the segment was closed
    plant_link(sidecar, victim.path)
    with pytest.raises(CorruptionError, match=r"00000001\.idx"):
        synarrow.SynaDB(db, CFG)
    assert victim.unchanged()


@pytest.mark.parametrize("name", ["log", "columnar"])
def test_directory_symlinks_are_refused(tmp_path: Path, name: str) -> None:
    a = make_db(tmp_path / "a.db")
    b = make_db(tmp_path / "b.db", n=3)
    with synarrow.SynaDB(b, CFG) as db_b:
        db_b.compact()
    snapshot = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in b.rglob("*") if p.is_file()}
    target = b / name
    if (a / name).exists():
        for f in (a / name).iterdir():
            f.unlink()
        (a / name).rmdir()
    (a / name).symlink_to(target, target_is_directory=True)
    for kwargs in ({}, {"readonly": True}):
        with pytest.raises(CorruptionError, match=name):
            synarrow.SynaDB(a, CFG, **kwargs)
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in b.rglob("*") if p.is_file()}
    assert after == snapshot


@pytest.mark.parametrize("name", ["1.log", "000000001.log", "00000001.log.bak", "notes.txt"])
def test_foreign_names_in_the_log_directory_are_refused(tmp_path: Path, name: str) -> None:
    db = make_db(tmp_path / "a.db")
    (db / "log" / name).write_bytes(b"not ours")
    with pytest.raises(CorruptionError, match="not a name synarrow writes"):
        synarrow.SynaDB(db, CFG)
    assert (db / "log" / name).read_bytes() == b"not ours"  # refused, not deleted


def test_fifo_in_place_of_a_segment_is_refused_without_blocking(tmp_path: Path) -> None:
    db = make_db(tmp_path / "a.db")
    seg = db / "log" / "00000002.log"
    os.mkfifo(seg)
    with pytest.raises(CorruptionError, match=r"00000002\.log"):
        synarrow.SynaDB(db, CFG)


def test_compaction_and_rotation_leave_links_elsewhere_alone(tmp_path: Path) -> None:
    """The writer's own file handling (rotation, compaction removing folded segments,
    clean-up of temporaries) keeps working on a normal database after the changes."""
    db_path = tmp_path / "a.db"
    with synarrow.SynaDB(db_path, CFG.replace(max_log_file_size=64 * 1024)) as db:
        for i in range(20_000):
            db.append(f"k{i % 7}", float(i))
        db.compact()
        for i in range(100):
            db.append("k0", float(i))
    with synarrow.SynaDB(db_path, CFG) as db:
        assert db.get("k0") == 99.0
        assert len(db.get_history("k1")) == 20_000 // 7 + (1 if 20_000 % 7 > 1 else 0)


@pytest.mark.parametrize("name", ["LOCK", "log/00000001.log"])
def test_hard_linked_files_are_not_written_through(
    tmp_path: Path, victim: Victim, name: str
) -> None:
    db = make_db(tmp_path / "a.db")
    (db / "log" / "00000001.idx").unlink(missing_ok=True)
    if name == "LOCK":
        (db / name).unlink()
        os.link(victim.path, db / name)
    else:
        victim = Victim(victim.path, (db / name).read_bytes())
        (db / name).unlink()
        os.link(victim.path, db / name)
    with pytest.raises(CorruptionError, match="hard links"):
        synarrow.SynaDB(db, CFG)
    assert victim.unchanged()
    if name != "LOCK":  # reading does not write: a read-only handle is fine
        with synarrow.SynaDB(db, readonly=True) as ro:
            assert ro.get("k") == 9.0


def test_segment_planted_while_open_is_refused_at_rotation(tmp_path: Path, victim: Victim) -> None:
    db = synarrow.SynaDB(tmp_path / "a.db", CFG)
    try:
        db.append("k", 1.0)
        (tmp_path / "a.db" / "log" / "00000002.log").symlink_to(victim.path)
        with pytest.raises(CorruptionError, match="appeared while this database was open"):
            db.compact()  # rotates to segment 2 first
    finally:
        db.close()
    assert victim.unchanged()
