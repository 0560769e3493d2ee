"""SQL reads one snapshot per query: views of every key agree, whatever writers do meanwhile.

A :class:`WritesAfterSnapshot` database appends to its keys right after each snapshot is
taken (the moment a concurrent writer would), so a view built from the database's live state
instead of the snapshot would see rows the snapshot does not hold.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import synarrow
from synarrow import errors, sql
from synarrow.engine.snapshot import ReadSnapshot
from synarrow.reading import history
from synarrow.sql import SqlSession

SRC = Path(synarrow.__file__).parent


class WritesAfterSnapshot:
    """A database whose every snapshot is followed at once by an append to each key."""

    def __init__(self, db: synarrow.SynaDB) -> None:
        self.db = db
        self.full_snapshots = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)

    @property
    def data_version(self) -> tuple[int, int]:
        return self.db.data_version

    def read_snapshot(self, keys: Iterable[str] | None = None) -> ReadSnapshot:
        snapshot = self.db.read_snapshot(keys)
        self.full_snapshots += keys is None
        for key in self.db.keys():
            self.db.append(key, 1e9)  # a concurrent write, just after the snapshot
        return snapshot


def _fill(db: synarrow.SynaDB) -> None:
    db.append_batch("a", np.arange(100, dtype=np.float64))
    db.append_batch("b", np.arange(50, dtype=np.float64))
    db.compact()
    db.append_batch("a", np.arange(10, dtype=np.float64))  # a log tail after the files


def test_every_view_of_a_query_reads_the_same_snapshot(db: synarrow.SynaDB) -> None:
    _fill(db)
    source = WritesAfterSnapshot(db)
    with SqlSession(source) as session:
        for _ in range(3):  # a first registration, then the data_version changed each time
            expected = {k: len(v) for k, v in db.read_snapshot().keys.items()}
            got = session.query(
                'SELECT (SELECT count(*) FROM "a") AS a_by_name, '
                "(SELECT count(*) FROM history WHERE key = 'a') AS a_history, "
                "(SELECT count(*) FROM history WHERE key = 'b') AS b_history, "
                "(SELECT max(value) FROM latest) AS latest_max"
            ).to_pylist()[0]
            assert session.snapshot is not None
            snap = {k: len(v) for k, v in session.snapshot.keys.items()}
            assert snap == expected  # the snapshot of the query's start, none of the appends
            assert got["a_by_name"] == got["a_history"] == snap["a"]
            assert got["b_history"] == snap["b"]
            lasts = [history(v).column("value")[-1].as_py() for v in session.snapshot.keys.values()]
            assert got["latest_max"] == max(lasts)  # latest agrees with history
            assert len(db.get_history("a")) == snap["a"] + 1  # the writes did happen


def test_views_are_registered_again_only_when_the_data_version_changes(
    db: synarrow.SynaDB,
) -> None:
    _fill(db)

    class Counting(WritesAfterSnapshot):
        def read_snapshot(self, keys: Iterable[str] | None = None) -> ReadSnapshot:
            self.full_snapshots += keys is None
            return self.db.read_snapshot(keys)

    source = Counting(db)
    with SqlSession(source) as session:
        assert session.query("SELECT count(*) AS n FROM history")["n"][0].as_py() == 160
        assert session.query("SELECT count(*) AS n FROM latest")["n"][0].as_py() == 2
        assert source.full_snapshots == 1  # nothing written: the registered views serve
        db.append("b", 7.0)
        assert session.query("SELECT count(*) AS n FROM history")["n"][0].as_py() == 161
        assert source.full_snapshots == 2
        assert session.query('SELECT count(*) AS n FROM "b"')["n"][0].as_py() == 51
        assert source.full_snapshots == 2  # a per-key view needs only a snapshot of that key


def test_a_key_deleted_after_registration_is_gone_from_every_view(db: synarrow.SynaDB) -> None:
    _fill(db)
    assert db.sql('SELECT count(*) AS n FROM "b"')["n"][0].as_py() == 50
    db.delete("b")
    assert db.sql("SELECT count(*) AS n FROM history WHERE key = 'b'")["n"][0].as_py() == 0
    with pytest.raises(errors.SQLError, match="b"):
        db.sql('SELECT count(*) FROM "b"')


def test_the_database_session_closes_its_connection_with_the_database(
    db_path: Path,
) -> None:
    db = synarrow.SynaDB(db_path, sync_on_write=False)
    db.append("x", 1.0)
    assert db.sql("SELECT value FROM latest")["value"].to_pylist() == [1.0]
    own = sql.session(db)
    assert sql.session(db) is own  # one per database
    db.close()
    assert own.closed
    with pytest.raises(Exception, match=r"(?i)closed"):
        own.con.execute("SELECT 1")  # the DuckDB connection itself is closed
    with pytest.raises(errors.DatabaseClosedError):
        db.sql("SELECT 1")
    with pytest.raises(errors.DatabaseClosedError):
        own.query("SELECT 1")


def test_errors_are_the_classes_of_errors_py(db: synarrow.SynaDB) -> None:
    from synarrow import cli, duck

    assert sql.SQLError is errors.SQLError
    assert cli.CliError is errors.CliError
    assert issubclass(errors.SQLError, errors.SynaError)
    assert issubclass(errors.CliError, errors.SynaError)
    db.append("x", 1.0)
    with pytest.raises(errors.SQLError, match="query failed") as caught:
        db.sql("SELECT nope FROM history")
    assert "history(key, ts" in caught.value.hint  # the message and hint are kept
    with pytest.raises(errors.SQLError, match="ATTACH statements are not allowed"):
        duck.check_statements("ATTACH 'x.db'")


def test_reading_layers_do_not_import_the_database_class() -> None:
    """sql.py and export.py (and the modules they use) speak to the database through the
    SnapshotSource protocol, so db.py may import them without a circle."""
    for name in ("sql.py", "export.py", "reading.py", "duck.py", "layout.py", "text_format.py"):
        tree = ast.parse((SRC / name).read_text(encoding="utf-8"))
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
                imported.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                imported.update(a.name for a in node.names)
        assert "synarrow.db" not in imported, name
        assert "synarrow.SynaDB" not in imported, name
