"""Every DuckDB connection synarrow makes is sandboxed: SQL sees the database and nothing else.

File-reaching forms fail through ``db.sql``, ``db.duckdb()``, ``Experiment.sql``,
``VectorStore.sql`` and the ``synarrow sql`` command, and no file appears; internal view names
cannot be shadowed by keys.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import synarrow
from synarrow import sql as sql_module
from synarrow.cli import main
from synarrow.sql import SQLError


def attacks(tmp: Path) -> dict[str, str]:
    """Queries that would read or create files outside the database, by name."""
    secret = tmp / "secret.txt"
    return {
        "read_csv": f"SELECT * FROM read_csv('{secret}')",
        "read_text": f"SELECT * FROM read_text('{secret}')",
        "glob": f"SELECT * FROM glob('{tmp}/*')",
        "copy_to": f"COPY (SELECT 1 AS x) TO '{tmp / 'copied.csv'}'",
        "attach": f"ATTACH '{tmp / 'attached.duckdb'}' AS other",
        "export": f"EXPORT DATABASE '{tmp / 'exported'}'",
        "install": "INSTALL httpfs",
        "load": "LOAD httpfs",
        "set_access": "SET enable_external_access = true",
        "set_threads": "SET threads = 1",
        "pragma": "PRAGMA threads = 1",
    }


def assert_no_file(tmp: Path) -> None:
    assert sorted(p.name for p in tmp.iterdir()) == ["secret.txt"]


@pytest.fixture
def db(tmp_path: Path) -> synarrow.SynaDB:
    d = synarrow.SynaDB(tmp_path / "s.db", config=synarrow.DbConfig(sync_on_write=False))
    d.append_batch("temp", np.arange(10.0))
    yield d
    d.close()


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    p = tmp_path / "outside"
    p.mkdir()
    (p / "secret.txt").write_text("a,b\n1,2\n")
    return p


@pytest.mark.parametrize("name", list(attacks(Path("/nonexistent")).keys()))
def test_db_sql_refuses_files_and_settings(db: synarrow.SynaDB, outside: Path, name: str) -> None:
    with pytest.raises(SQLError) as err:
        db.sql(attacks(outside)[name])
    assert "1,2" not in str(err.value)
    assert_no_file(outside)
    # The session still answers afterwards, with the views intact.
    assert db.sql("SELECT count(*) AS n FROM history").column("n").to_pylist() == [10]


def test_duckdb_connection_is_sandboxed_unless_asked(db: synarrow.SynaDB, outside: Path) -> None:
    import duckdb

    q = attacks(outside)
    with db.duckdb() as con:
        for name in ("read_csv", "copy_to", "attach", "set_access"):
            with pytest.raises(duckdb.Error):
                con.sql(q[name])
        assert con.sql("SELECT count(*) FROM history").fetchall() == [(10,)]
    assert_no_file(outside)
    # The documented opt-in: the caller's own connection with DuckDB's file functions.
    with db.duckdb(external_access=True) as con:
        assert con.sql(q["read_csv"]).fetchall() == [(1, 2)]
        assert con.sql("SELECT count(*) FROM history").fetchall() == [(10,)]


def test_experiment_and_vector_sql_are_sandboxed(tmp_path: Path, outside: Path) -> None:
    q = attacks(outside)
    exp = synarrow.Experiment("e", tmp_path / "exp.db")
    try:
        with exp.start_run() as run:
            run.log_metrics({"loss": 1.0}, step=0)
        for name in ("read_csv", "copy_to", "attach", "export"):
            with pytest.raises(SQLError):
                exp.sql(q[name])
        with exp.duckdb() as con, pytest.raises(Exception, match="disabled"):
            con.sql(q["read_text"])
        assert exp.sql("SELECT count(*) AS n FROM metrics").column("n").to_pylist() == [1]
    finally:
        exp.close()
    store = synarrow.VectorStore(tmp_path / "v.db", dimensions=3)
    try:
        store.insert("a", np.ones(3, np.float32))
        for name in ("read_csv", "copy_to", "export", "load"):
            with pytest.raises(SQLError):
                store.sql(q[name])
        assert store.sql("SELECT count(*) AS n FROM vectors").column("n").to_pylist() == [1]
    finally:
        store.close()
    assert_no_file(outside)


@pytest.mark.parametrize(
    "name", ["read_csv", "read_text", "copy_to", "attach", "export", "load", "set_access"]
)
def test_cli_sql_refuses_files(
    tmp_path: Path, outside: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.db"
    with synarrow.SynaDB(path) as d:
        d.append("x", 1.0)
    assert main(["sql", str(path), attacks(outside)[name]]) != 0
    err = capsys.readouterr().err
    assert "1,2" not in err
    assert_no_file(outside)


def test_session_closed_with_the_database(tmp_path: Path) -> None:
    d = synarrow.SynaDB(tmp_path / "c.db")
    d.append("x", 1.0)
    assert d.sql("SELECT 1 AS one").num_rows == 1
    con = sql_module.session(d).con  # the connection the session owns
    d.close()
    with pytest.raises(Exception, match="closed"):
        con.sql("SELECT 1")


def test_key_cannot_shadow_internal_sources(db: synarrow.SynaDB) -> None:
    db.append("_synarrow_history_0", 99.0)
    db.append("History", 7.0)
    db.append("LATEST", 8.0)
    # The history view still reads every key, its sources untouched.
    n = db.sql("SELECT count(*) AS n FROM history").column("n").to_pylist()
    assert n == [13]
    for key in ("_synarrow_history_0", "History", "LATEST"):
        with pytest.raises(SQLError, match="history WHERE key"):
            db.sql(f'SELECT * FROM "{key}"')
        got = db.sql(f"SELECT value FROM history WHERE key = '{key}'").column("value")
        assert got.to_pylist() == [{"_synarrow_history_0": 99.0, "History": 7.0}.get(key, 8.0)]
    assert db.sql("SELECT count(*) AS n FROM latest").column("n").to_pylist() == [4]


def test_keys_differing_in_case(db: synarrow.SynaDB) -> None:
    db.append("Temp", 5.0)
    # Each alone is queried by name; DuckDB cannot tell them apart within one query.
    assert db.sql('SELECT count(*) AS n FROM "Temp"').column("n").to_pylist() == [1]
    assert db.sql('SELECT count(*) AS n FROM "temp"').column("n").to_pylist() == [10]
    with pytest.raises(SQLError, match="differ only in case"):
        db.sql('SELECT * FROM "temp" JOIN "Temp" USING (ts)')


def test_no_spill_directory_in_cwd(db: synarrow.SynaDB, tmp_path: Path) -> None:
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        db.sql("SELECT count(*) FROM range(100000) a JOIN range(1000) b ON a.range = b.range")
    finally:
        os.chdir(cwd)
    assert not (tmp_path / ".tmp").exists()


@pytest.mark.parametrize(
    "query",
    [
        "EXPLAIN ANALYZE CREATE MACRO main.avg(x) AS 666",
        "EXPLAIN ANALYZE CREATE TABLE main.planted AS SELECT 1 AS x",
        "EXPLAIN ANALYZE INSERT INTO planted VALUES (1)",
        "EXPLAIN (FORMAT JSON) CREATE VIEW v AS SELECT 1",
        "SELECT 1; CREATE TABLE t AS SELECT 2",
    ],
)
def test_read_only_sql_checks_what_explain_runs(query: str) -> None:
    """EXPLAIN ANALYZE runs its statement: a read-only session (a server's) checks that too."""
    from synarrow.sql import check_statements

    with pytest.raises(SQLError, match="not allowed"):
        check_statements(query, read_only=True)
    for allowed in ("EXPLAIN SELECT 1", "EXPLAIN ANALYZE SELECT 42", "SELECT 1; SELECT 2"):
        check_statements(allowed, read_only=True)
