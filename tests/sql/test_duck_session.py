"""The one DuckDB session helper: sandboxed, owns and closes its connection, maps errors."""

from __future__ import annotations

import threading

import duckdb
import numpy as np
import pyarrow as pa
import pytest

import synarrow
from synarrow import errors
from synarrow.duck import DuckSession
from synarrow.sandbox import new_connection
from synarrow.sql import register

# A query that runs far longer than any deadline below (about 10**11 rows joined).
LONG_QUERY = "SELECT sum(a.range * b.range) AS s FROM range(100000000) a, range(1000) b"


def test_a_session_runs_queries_and_closes_its_connection() -> None:
    with DuckSession() as session:
        con = session.con
        assert session.query("SELECT 1 + 1 AS x").to_pylist() == [{"x": 2}]
        session.query("CREATE TEMP TABLE t AS SELECT 1 AS a")
        assert session.query("SELECT a FROM t")["a"].to_pylist() == [1]
    assert session.closed
    with pytest.raises(Exception, match=r"(?i)closed"):
        con.execute("SELECT 1")
    with pytest.raises(errors.DatabaseClosedError):
        session.query("SELECT 1")
    session.close()  # idempotent


def test_the_connection_is_sandboxed() -> None:
    with DuckSession() as session:
        with pytest.raises(errors.SQLError, match="query failed"):
            session.query("SELECT * FROM read_csv('/etc/passwd')")
        with pytest.raises(errors.SQLError):
            session.query("SET enable_external_access = true")


def test_read_only_admits_queries_only() -> None:
    with DuckSession(read_only=True) as session:
        assert session.query("EXPLAIN SELECT 1").num_rows >= 1
        with pytest.raises(errors.SQLError, match="CREATE statements are not allowed"):
            session.query("CREATE TEMP TABLE t AS SELECT 1")
        with pytest.raises(errors.SQLError, match="not allowed"):
            session.query("EXPLAIN ANALYZE CREATE TEMP TABLE t AS SELECT 1")


def test_prepare_registers_what_the_query_reads_and_the_hint_is_the_sessions() -> None:
    with DuckSession(hint="views: numbers(n)") as session:

        def prepare(con: object) -> None:
            session.con.register("numbers", pa.table({"n": [1, 2, 3]}))

        got = session.query("SELECT sum(n) AS s FROM numbers", prepare=prepare)
        assert got["s"].to_pylist() == [6]
        with pytest.raises(errors.SQLError) as caught:
            session.query("SELECT missing FROM numbers", prepare=prepare)
        assert caught.value.hint == "views: numbers(n)"
        with pytest.raises(errors.InvalidArgumentError):
            session.query("  ")


def test_a_cursor_of_a_sandboxed_base_is_owned_by_its_session() -> None:
    base = new_connection()
    try:
        with DuckSession(read_only=True, connection=base.cursor()) as session:
            assert session.query("SELECT 42 AS x")["x"].to_pylist() == [42]
        assert base.sql("SELECT 1").fetchall() == [(1,)]  # only the cursor was closed
    finally:
        base.close()


def test_a_deadline_interrupts_the_query_with_a_timeout_error() -> None:
    with DuckSession() as session:
        session.start_deadline(0.2)
        with pytest.raises(errors.QueryTimeoutError, match=r"timeout of 0\.2 s"):
            session.query(LONG_QUERY)
        assert session.timed_out
    with pytest.raises(errors.InvalidArgumentError):
        DuckSession().start_deadline(0)


def test_interrupt_from_another_thread_stops_the_query() -> None:
    with DuckSession() as session:
        done = threading.Event()

        def stop() -> None:
            while not done.is_set():  # repeat: one may come before DuckDB starts the query
                session.interrupt()
                done.wait(0.05)

        stopper = threading.Thread(target=stop)
        stopper.start()
        try:
            with pytest.raises(errors.SQLError, match=r"(?i)interrupt"):
                session.query(LONG_QUERY)
        finally:
            done.set()
            stopper.join()


def test_a_session_over_a_database_views_and_tables_of_its_own(db: synarrow.SynaDB) -> None:
    """What a layer with views of its own (experiments, vector stores) runs: the database's
    views and its tables registered by ``prepare`` before each query."""
    db.append_batch("a", np.arange(3, dtype=np.float64))
    weights = pa.table({"key": ["a"], "w": [2.0]})

    def prepare(con: duckdb.DuckDBPyConnection) -> None:
        register(con, db)
        con.register("weights", weights)

    with DuckSession(hint="views: weights(key, w), history, latest") as session:
        query = "SELECT sum(h.value * w.w) AS s FROM history h JOIN weights w USING (key)"
        assert session.query(query, prepare=prepare)["s"].to_pylist() == [6.0]
        db.append("a", 10.0)
        assert session.query(query, prepare=prepare)["s"].to_pylist() == [26.0]
        with pytest.raises(errors.SQLError) as caught:
            session.query("SELECT nope FROM weights", prepare=prepare)
        assert caught.value.hint == "views: weights(key, w), history, latest"
