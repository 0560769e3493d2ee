"""Retention: rules stored in the database, expiry on every read path and at compaction.

Timestamps are relative to now (points days old against rules of a day or more), so no test
sleeps or depends on how fast it runs.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import numpy as np
import pyarrow.dataset as pads
import pytest
from _support import NO_SYNC

import synarrow
from synarrow.check import check_database
from synarrow.cli import main
from synarrow.engine.retention import MAX_RETENTION_BYTES, RETENTION_NAME
from synarrow.errors import CorruptionError, InvalidArgumentError, KeyNotFoundError, ReadOnlyError

DAY = 86_400_000_000


def _now() -> int:
    return time.time_ns() // 1000


def _fill(db: synarrow.SynaDB) -> int:
    """``s/a``: points 10, 5, 3 and 0.5 days old; ``s/b``: 10 and 9 days old; ``t``: 10 days."""
    now = _now()
    db.append_batch(
        "s/a", [1.0, 2.0, 3.0], timestamps=[now - 10 * DAY, now - 5 * DAY, now - 3 * DAY]
    )
    db.append("s/a", 4.0, timestamp=now - DAY // 2)
    db.append_batch("s/b", [5.0, 6.0], timestamps=[now - 10 * DAY, now - 9 * DAY])
    db.append("t", 7.0, timestamp=now - 10 * DAY)
    return now


def _values(db: synarrow.SynaDB, key: str) -> list[float]:
    return db.get_history(key).column("value").to_pylist()


def _columnar_rows(db: synarrow.SynaDB) -> int:
    return sum(f.rows for f in db._engine.columnar.manifest.files)


def test_rules_stored_and_seen_by_every_handle(db_path: Path) -> None:
    with synarrow.SynaDB(db_path, NO_SYNC) as db:
        assert db.retention() == {}
        db.set_retention("s/*", "4d")
        db.set_retention("t", dt.timedelta(hours=12))
        db.set_retention("x?", np.timedelta64(90, "s"))
        db.set_retention("y", 1_000_000)
        assert db.retention() == {
            "s/*": dt.timedelta(days=4),
            "t": dt.timedelta(hours=12),
            "x?": dt.timedelta(seconds=90),
            "y": dt.timedelta(seconds=1),
        }
        db.set_retention("y", None)
        db.set_retention("never-set", None)  # removing a rule that is not there is fine
    with synarrow.SynaDB(db_path, readonly=True) as ro:
        assert set(ro.retention()) == {"s/*", "t", "x?"}
        with pytest.raises(ReadOnlyError):
            ro.set_retention("z", "1d")
    with synarrow.SynaDB(db_path, NO_SYNC) as again:
        assert again.retention()["s/*"] == dt.timedelta(days=4)
        again.set_retention("s/*", "30d")  # replaces the rule
        assert again.retention()["s/*"] == dt.timedelta(days=30)


def test_expiry_on_every_read_path(db: synarrow.SynaDB, tmp_path: Path) -> None:
    now = _fill(db)
    db.set_retention("s/*", "4d")
    assert _values(db, "s/a") == [3.0, 4.0]
    assert db.get_history_floats("s/a").tolist() == [3.0, 4.0]
    assert db.get_history_tensor("s/a").tolist() == [3.0, 4.0]
    assert db.to_pandas("s/a")["value"].tolist() == [3.0, 4.0]
    assert db.get_history("s/a", start=now - 20 * DAY).num_rows == 2
    assert db.get_history("s/a", last=5).num_rows == 2
    # s/b: every point expired, so it is not live; t has no rule.
    assert db.keys() == ["s/a", "t"]
    assert db.keys("s/*") == ["s/a"]
    assert len(db) == 2 and db.stats()["keys"] == 2
    assert not db.exists("s/b")
    assert db.get("s/b", "gone") == "gone"
    with pytest.raises(KeyNotFoundError):
        db.get_history("s/b")
    with pytest.raises(KeyNotFoundError):
        db.get_float("s/b")
    assert db.get("s/a") == 4.0 and db.get_float("s/a") == 4.0
    assert _values(db, "t") == [7.0]
    rows = db.sql("SELECT key, value FROM history ORDER BY key, ts").to_pylist()
    assert rows == [
        {"key": "s/a", "value": 3.0},
        {"key": "s/a", "value": 4.0},
        {"key": "t", "value": 7.0},
    ]
    latest = db.sql("SELECT key, value FROM latest ORDER BY key").to_pylist()
    assert latest == [{"key": "s/a", "value": 4.0}, {"key": "t", "value": 7.0}]
    assert db.sql('SELECT sum(value) AS s FROM "s/a"').column("s").to_pylist() == [7.0]
    db.export_dataset(tmp_path / "out", partition_by=None)
    exported = pads.dataset(tmp_path / "out").to_table()
    assert sorted(exported.column("value").to_pylist()) == [3.0, 4.0, 7.0]


def test_shortest_rule_wins_and_clearing_restores(db: synarrow.SynaDB) -> None:
    _fill(db)
    db.set_retention("s/*", "30d")
    db.set_retention("s/a", "4d")
    assert _values(db, "s/a") == [3.0, 4.0]
    assert _values(db, "s/b") == [5.0, 6.0]
    db.set_retention("*", "2d")
    assert _values(db, "s/a") == [4.0]
    assert db.keys() == ["s/a"]
    db.set_retention("*", None)
    db.set_retention("s/a", None)
    assert _values(db, "s/a") == [1.0, 2.0, 3.0, 4.0]  # nothing dropped before a compaction
    assert db.keys() == ["s/a", "s/b", "t"]


def test_get_returns_the_default_once_the_latest_expired(db: synarrow.SynaDB) -> None:
    now = _now()
    db.append("v", 1.0, timestamp=now - 3 * DAY)
    db.append("v", 2.0, timestamp=now - 2 * DAY)
    db.compact()
    db.append("v", "late text", timestamp=now - DAY // 4)
    db.set_retention("v", "1d")
    assert db.get("v") == "late text"
    assert db.get_text("v") == "late text"
    db.set_retention("v", "1h")
    assert db.get("v") is None
    assert db.get("v", 0) == 0
    assert not db.exists("v")


def test_dropped_at_compaction(db_path: Path) -> None:
    with synarrow.SynaDB(db_path, NO_SYNC) as db:
        _fill(db)
        db.compact()
        assert _columnar_rows(db) == 7
        db.set_retention("s/*", "4d")
        db.append("s/a", 8.0, timestamp=_now())  # a tail entry: s/a is rewritten
        result = db.compact()
        assert result["entries_written"] == 4  # s/a's 3, and t moved out of a dying file
        assert _columnar_rows(db) == 4  # s/a: 3, t: 1; s/b is gone
        assert db.stats()["entries"] == 4
        assert _values(db, "s/a") == [3.0, 4.0, 8.0]
        assert not db.exists("s/b")
        db.set_retention("s/*", None)  # dropped points do not come back
        assert _values(db, "s/a") == [3.0, 4.0, 8.0]
        assert not db.exists("s/b")
    with synarrow.SynaDB(db_path, NO_SYNC) as again:
        assert again.keys() == ["s/a", "t"]
        assert _values(again, "s/a") == [3.0, 4.0, 8.0]


def test_compaction_of_a_key_without_new_entries_still_drops(db: synarrow.SynaDB) -> None:
    _fill(db)
    db.compact()
    db.set_retention("t", "1d")
    db.set_retention("s/a", "4d")
    db.compact()
    assert _columnar_rows(db) == 4  # s/a 2, s/b 2; t gone
    assert sorted(db.keys()) == ["s/a", "s/b"]


@pytest.mark.parametrize(
    ("pattern", "max_age"),
    [
        ("s/*", "0s"),
        ("s/*", -5),
        ("s/*", "soon"),
        ("s/*", 1.5),
        ("s/*", True),
        ("", "1d"),
        (None, "1d"),
        ("x" * 5000, "1d"),
    ],
)
def test_bad_rules_store_nothing(db: synarrow.SynaDB, pattern: object, max_age: object) -> None:
    with pytest.raises(InvalidArgumentError):
        db.set_retention(pattern, max_age)  # type: ignore[arg-type]
    assert db.retention() == {}
    assert not (db.path / RETENTION_NAME).exists()


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"\xff\xfe",
        b"[]",
        b'{"format": 2, "rules": {}}',
        b'{"format": 1, "rules": {"a": -1}}',
        b'{"format": 1, "rules": {"a": "1d"}}',
        b'{"format": 1, "rules": {"": 5}}',
        b'{"format": 1, "rules": []}',
        b" " * (MAX_RETENTION_BYTES + 1),
    ],
)
def test_damaged_retention_file(db_path: Path, content: bytes) -> None:
    with synarrow.SynaDB(db_path, NO_SYNC) as db:
        db.append("k", 1.0)
    (db_path / RETENTION_NAME).write_bytes(content)
    with pytest.raises(CorruptionError, match="retention"):
        synarrow.SynaDB(db_path, NO_SYNC)
    with pytest.raises(CorruptionError, match="retention"):
        synarrow.SynaDB(db_path, readonly=True)
    report = check_database(db_path)
    assert any(RETENTION_NAME in line for line in report.damage), report.damage


def test_symlinked_retention_file_is_refused(db_path: Path, tmp_path: Path) -> None:
    with synarrow.SynaDB(db_path, NO_SYNC) as db:
        db.append("k", 1.0)
    outside = tmp_path / "outside.json"
    outside.write_text('{"format": 1, "rules": {"k": 1}}')
    os.symlink(outside, db_path / RETENTION_NAME)
    with pytest.raises(CorruptionError):
        synarrow.SynaDB(db_path, NO_SYNC)
    assert outside.read_text() == '{"format": 1, "rules": {"k": 1}}'
    assert not check_database(db_path).ok


def test_check_accepts_a_retention_file(db_path: Path) -> None:
    with synarrow.SynaDB(db_path, NO_SYNC) as db:
        db.append("k", 1.0)
        db.set_retention("k", "1d")
    report = check_database(db_path)
    assert report.ok, report.damage


def test_info_shows_rules(db_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with synarrow.SynaDB(db_path, NO_SYNC) as db:
        db.append("k", 1.0)
        db.set_retention("sensor/*", "30d")
    assert main(["info", str(db_path)]) == 0
    out = capsys.readouterr().out
    assert "retention" in out and "sensor/* 30 days" in out
    assert main(["info", "--json", str(db_path)]) == 0
    assert '"sensor/*": 2592000.0' in capsys.readouterr().out


def test_a_new_database_directory_accepts_the_file(db_path: Path) -> None:
    """The retention file (and a temporary of it left by a crash) is the database's own."""
    with synarrow.SynaDB(db_path, NO_SYNC) as db:
        db.set_retention("k", "1d")
    (db_path / f".{RETENTION_NAME}.tmp-0123456789ab").write_bytes(b"partial")
    with synarrow.SynaDB(db_path, NO_SYNC) as again:
        assert again.retention() == {"k": dt.timedelta(days=1)}
    assert not (db_path / f".{RETENTION_NAME}.tmp-0123456789ab").exists()
