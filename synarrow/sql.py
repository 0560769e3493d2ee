"""DuckDB over a database's history, scanning the memory-mapped Arrow data without copying it.

Views registered on a connection:

``history``
    Every live key: ``key``, ``ts`` (TIMESTAMPTZ, UTC), ``value`` (DOUBLE: floats, and ints
    converted), ``int_value`` (BIGINT, exact), ``text`` (VARCHAR), ``bytes`` (BLOB),
    ``vector`` (FLOAT[]) and ``type`` (the atom type of the row: float, int, text, bytes,
    vector or null). Keys of any mix of types are readable side by side.
``latest``
    One row per live key with its latest entry, same columns.
one view per key, by name
    ``db.sql('SELECT avg(value) FROM "sensor/1"')``: a key named in a query's FROM / JOIN
    is registered as a view of just its history (``ts``, ``value`` in the key's own Arrow
    type), so DuckDB touches only that key's rows.

Columnar data is registered as slices of the memory-mapped record batches (zero-copy: DuckDB
reads the mapping, projecting only the columns a query uses); the log tail is registered as
Arrow tables built from the in-memory index.
"""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa

from synarrow.columnar.ipc import data_schema, key_column
from synarrow.columnar.schema import history_table, string_array, ts_array
from synarrow.errors import InvalidArgumentError, SynaError

if TYPE_CHECKING:
    from synarrow.db import SynaDB

HISTORY_COLUMNS = ("key", "ts", "value", "int_value", "text", "bytes", "vector", "type")
RESERVED_VIEWS = {"history", "latest"}


class SQLError(SynaError, ValueError):
    """A query failed in DuckDB (syntax, binding, a missing column ...)."""

    default_hint = "views: history(key, ts, value, int_value, text, bytes, vector, type), latest"


def _projection(value_type: pa.DataType, name: str) -> str:
    """SELECT list mapping a source with ``value`` of ``value_type`` to the history columns."""
    v = "value"
    cols = {c: "NULL" for c in ("value", "int_value", "text", "bytes", "vector")}
    kind = "'null'"
    if pa.types.is_struct(value_type):
        fields = {f.name: f.type for f in value_type}
        parts = []
        if "float" in fields:
            parts.append("value.float")
            cols["value"] = "value.float"
        if "int" in fields:
            cols["int_value"] = "value.int"
            cols["value"] = (
                "coalesce(value.float, value.int::DOUBLE)"
                if "float" in fields
                else "value.int::DOUBLE"
            )
        if "text" in fields:
            cols["text"] = "value.text"
        if "bytes" in fields:
            cols["bytes"] = "value.bytes"
        if "vector" in fields:
            cols["vector"] = "value.vector::FLOAT[]"
        cases = " ".join(f"WHEN value.{f} IS NOT NULL THEN '{f}'" for f in fields)
        kind = f"CASE {cases} ELSE 'null' END"
        del parts
    elif pa.types.is_floating(value_type):
        cols["value"] = v
        kind = "CASE WHEN value IS NULL THEN 'null' ELSE 'float' END"
    elif pa.types.is_integer(value_type):
        cols["value"], cols["int_value"] = "value::DOUBLE", v
        kind = "CASE WHEN value IS NULL THEN 'null' ELSE 'int' END"
    elif pa.types.is_large_string(value_type):
        cols["text"] = v
        kind = "CASE WHEN value IS NULL THEN 'null' ELSE 'text' END"
    elif pa.types.is_large_binary(value_type):
        cols["bytes"] = v
        kind = "CASE WHEN value IS NULL THEN 'null' ELSE 'bytes' END"
    elif pa.types.is_fixed_size_list(value_type) or pa.types.is_large_list(value_type):
        cols["vector"] = "value::FLOAT[]"
        kind = "CASE WHEN value IS NULL THEN 'null' ELSE 'vector' END"
    typed = {
        "value": "DOUBLE",
        "int_value": "BIGINT",
        "text": "VARCHAR",
        "bytes": "BLOB",
        "vector": "FLOAT[]",
    }
    select = ", ".join(f"CAST({cols[c]} AS {typed[c]}) AS {c}" for c in typed)
    return f'SELECT key, ts, {select}, {kind} AS type FROM "{name}"'


def _sources(db: SynaDB) -> tuple[list[pa.Table], pa.Table]:
    """Tables of (key, ts, value) covering every live key, and the rows of ``latest``."""
    by_type: dict[pa.DataType, list[pa.RecordBatch]] = defaultdict(list)
    tails: dict[pa.DataType, list[tuple[str, pa.Table]]] = defaultdict(list)
    latest_keys: list[str] = []
    latest_parts: list[tuple[str, Any]] = []
    with db._lock:
        if db._closed:
            from synarrow.errors import DatabaseClosedError

            raise DatabaseClosedError(f"database {db.path} is closed")
        for key, st in db._keys.items():
            if st.latest_atom is None:
                continue
            for ref in st.base:
                batch = ref.file.batch(ref.batch).slice(ref.row, ref.count)  # type: ignore[attr-defined]
                by_type[batch.schema.field("value").type].append(batch)
            tail = st.tail_chunks()
            if tail:
                table = history_table(tail)
                tails[table.schema.field("value").type].append((key, table))
            latest_keys.append(key)
            latest_parts.append((key, st))
        last_chunks = [(k, st.parts()[-1]) for k, st in latest_parts]
    tables = [_merge_slices(batches) for batches in by_type.values()]
    for t, items in tails.items():
        keys = [k for k, _ in items]
        counts = [tab.num_rows for _, tab in items]
        ts = pa.concat_arrays([c for _, tab in items for c in tab.column("ts").chunks])
        values = pa.concat_arrays([c for _, tab in items for c in tab.column("value").chunks])
        tables.append(
            pa.Table.from_arrays([key_column(keys, counts), ts, values], schema=data_schema(t))
        )
    latest = [
        history_table([c]).slice(len(c) - 1).append_column("key", string_array([k]))
        for k, c in last_chunks
    ]
    return tables, latest  # type: ignore[return-value]


def _merge_slices(batches: list[pa.RecordBatch]) -> pa.Table:
    """One table over many slices of mapped batches (neighbouring slices stay separate views)."""
    return pa.Table.from_batches(batches)


def _latest_tables(latest: list[pa.Table]) -> list[pa.Table]:
    groups: dict[pa.DataType, list[pa.Table]] = defaultdict(list)
    for t in latest:
        groups[t.schema.field("value").type].append(t)
    out = []
    for vt, items in groups.items():
        keys = [t.column("key")[0].as_py() for t in items]
        ts = pa.concat_arrays([t.column("ts").combine_chunks() for t in items])
        values = pa.concat_arrays([t.column("value").combine_chunks() for t in items])
        out.append(
            pa.Table.from_arrays(
                [key_column(keys, [1] * len(keys)), ts, values], schema=data_schema(vt)
            )
        )
    return out


def register(con: duckdb.DuckDBPyConnection, db: SynaDB, *, prefix: str = "_synarrow") -> None:
    """Register the ``history`` and ``latest`` views of ``db`` on ``con``."""
    tables, latest = _sources(db)
    for view, sources in (("history", tables), ("latest", _latest_tables(latest))):
        selects = []
        for i, table in enumerate(sources):
            name = f"{prefix}_{view}_{i}"
            con.register(name, table)
            selects.append(_projection(table.schema.field("value").type, name))
        if not selects:
            empty = pa.table(
                {
                    "key": string_array([]),
                    "ts": ts_array(np.empty(0, np.int64)),
                    "value": pa.nulls(0, pa.float64()),
                }
            )
            name = f"{prefix}_{view}_empty"
            con.register(name, empty)
            selects.append(_projection(pa.float64(), name))
        con.execute(f'CREATE OR REPLACE TEMP VIEW "{view}" AS ' + " UNION ALL ".join(selects))


_FROM_NAME = re.compile(r'(?:FROM|JOIN)\s+("(?:[^"]|"")+"|[A-Za-z_][\w]*)', re.IGNORECASE)


def referenced_names(query: str) -> set[str]:
    """Table names a query refers to (DuckDB's parser, with a regex fallback)."""
    try:
        return set(duckdb.get_table_names(query))
    except duckdb.Error:
        names = set()
        for m in _FROM_NAME.finditer(query):
            name = m.group(1)
            names.add(name[1:-1].replace('""', '"') if name.startswith('"') else name)
        return names


def register_keys(con: duckdb.DuckDBPyConnection, db: SynaDB, query: str) -> None:
    """Register a view for every live key the query names in FROM / JOIN."""
    for name in referenced_names(query):
        if name in RESERVED_VIEWS or not name or not db.exists(name):
            continue
        con.register(name, db.get_history(name))


def connect(db: SynaDB) -> duckdb.DuckDBPyConnection:
    """A new DuckDB connection with ``history`` and ``latest`` registered."""
    con = duckdb.connect()
    register(con, db)
    return con


_SQL_LOCK = threading.Lock()


def run_sql(db: SynaDB, query: str, params: Iterable[Any] | None = None) -> pa.Table:
    """Run ``query`` on a connection with the views registered; returns an Arrow table."""
    if not isinstance(query, str) or not query.strip():
        raise InvalidArgumentError("sql() needs a non-empty query string")
    with _SQL_LOCK:
        con = getattr(db, "_duck", None)
        if con is None:
            con = db._duck = duckdb.connect()  # type: ignore[attr-defined]
        try:
            register(con, db)
            register_keys(con, db, query)
            rel = con.sql(query, params=list(params) if params is not None else None)
            if rel is None:
                return pa.table({})
            return rel.to_arrow_table()
        except duckdb.Error as exc:
            raise SQLError(f"query failed: {exc}") from exc
