"""The database directory's one definition: marker, own files, preparation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import synarrow
from synarrow.engine import directory


def test_a_new_database_holds_only_its_own_files(db_path: Path) -> None:
    synarrow.SynaDB(db_path).close()
    names = set(os.listdir(db_path))
    assert directory.MARKER_NAME in names
    assert names - {directory.MARKER_NAME} <= directory.OWN_FILES
    assert (db_path / directory.MARKER_NAME).read_text() == directory.MARKER_TEXT
    assert directory.is_database(db_path)


def test_is_database_refuses_look_alikes(tmp_path: Path) -> None:
    assert not directory.is_database(tmp_path / "missing")
    assert not directory.is_database(tmp_path)
    (tmp_path / "file").write_text("x")
    assert not directory.is_database(tmp_path / "file")
    real = tmp_path / "real"
    synarrow.SynaDB(real).close()
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / directory.MARKER_NAME).symlink_to(real / directory.MARKER_NAME)
    assert not directory.is_database(fake)
    with pytest.raises(synarrow.SynaError):
        synarrow.SynaDB(fake, readonly=True)


def test_linked_log_directory_is_refused(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    synarrow.SynaDB(a).close()
    with synarrow.SynaDB(b) as db:
        db.append("k", 1.0)
    for p in (b / "log").iterdir():
        p.unlink()
    (b / "log").rmdir()
    (b / "log").symlink_to(a / "log")
    with pytest.raises(synarrow.SynaError):
        directory.require_own_directories(b)
    with pytest.raises(synarrow.SynaError):
        synarrow.SynaDB(b)
    with synarrow.SynaDB(a, readonly=True) as other:
        assert other.keys() == []


def test_a_foreign_directory_is_not_taken_over(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(synarrow.InvalidPathError):
        directory.prepare_directory(tmp_path, readonly=False)
    assert os.listdir(tmp_path) == ["notes.txt"]
    with pytest.raises(synarrow.InvalidPathError):
        directory.prepare_directory(tmp_path, readonly=True)


def test_prepare_returns_the_writer_lock(db_path: Path) -> None:
    lock = directory.prepare_directory(db_path, readonly=False)
    assert lock is not None
    try:
        with pytest.raises(synarrow.DatabaseLockedError):
            synarrow.SynaDB(db_path)
        assert directory.prepare_directory(db_path, readonly=True) is None
    finally:
        lock.release()
    synarrow.SynaDB(db_path).close()
