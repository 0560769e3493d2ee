"""Closing a handle releases its native resources at once, not at interpreter shutdown.

DuckDB connections (with Arrow datasets over the mapped files registered) left for the
garbage collector end up destroyed during interpreter teardown, next to pyarrow's C++
thread pools, where they can abort the process (apache/arrow#34314).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pytest

import synarrow
import synarrow.sql as sql_mod
from synarrow import DbConfig


def test_close_closes_the_sql_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[duckdb.DuckDBPyConnection] = []
    real_connect = sql_mod.duckdb.connect

    def connect(*args: object, **kwargs: object) -> duckdb.DuckDBPyConnection:
        con = real_connect(*args, **kwargs)
        opened.append(con)
        return con

    monkeypatch.setattr(sql_mod.duckdb, "connect", connect)
    db = synarrow.SynaDB(tmp_path / "db", DbConfig(sync_on_write=False))
    db.append_batch("x", np.arange(10.0))
    db.compact()
    assert db.sql("SELECT sum(value) AS s FROM history").to_pylist() == [{"s": 45.0}]
    assert opened, "sql() used no connection"
    db.close()
    for con in opened:
        with pytest.raises(duckdb.ConnectionException):
            con.execute("SELECT 1")
    with pytest.raises(synarrow.DatabaseClosedError):
        db.sql("SELECT 1")
