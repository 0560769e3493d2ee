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

``ts`` is a DuckDB ``TIMESTAMP`` holding UTC (Arrow ``timestamp[us]`` without a zone, a
zero-copy view of the stored ``timestamp[us, UTC]``): ``time_bucket`` then buckets in UTC
whatever the session time zone, and runs about twice as fast as on ``TIMESTAMPTZ``. Write
``ts AT TIME ZONE 'UTC'`` where a ``TIMESTAMPTZ`` is wanted.

Columnar data is registered as slices of the memory-mapped record batches (zero-copy: DuckDB
reads the mapping, projecting only the columns a query uses); the log tail is registered as
Arrow tables built from the in-memory index. DuckDB applies a ``key = ...`` filter on
``history`` while scanning; a per-key view reads only that key's rows.

Every connection comes from :mod:`synarrow.sandbox` (no file access, no extensions, settings
locked), and :func:`check_statements` refuses ``EXPORT`` / ``ATTACH`` / ``LOAD`` before
DuckDB sees them. :class:`SqlSession` is one such connection kept current for a database:
``db.sql`` owns one (closed by ``db.close()``); servers open one per request.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections import defaultdict
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pyarrow as pa

from synarrow.columnar.ipc import data_schema, key_column
from synarrow.columnar.schema import string_array, ts_array
from synarrow.columnar.store import keyed_table
from synarrow.errors import DatabaseClosedError, InvalidArgumentError, SynaError
from synarrow.log.memtable import TailChunk
from synarrow.sandbox import new_connection

if TYPE_CHECKING:
    from synarrow.db import SynaDB

RESERVED_VIEWS = {"history", "latest"}
INTERNAL_PREFIX = "_synarrow"


class SQLError(SynaError, ValueError):
    """A query failed in DuckDB (syntax, binding, a missing column ...)."""

    default_hint = "views: history(key, ts, value, int_value, text, bytes, vector, type), latest"


_COLUMN_TYPES = {
    "value": "DOUBLE",
    "int_value": "BIGINT",
    "text": "VARCHAR",
    "bytes": "BLOB",
    "vector": "FLOAT[]",
}
# Where a value of each atom type goes in the history view.
_ATOM_COLUMNS = {
    "float": {"value": "{v}"},
    "int": {"value": "{v}::DOUBLE", "int_value": "{v}"},
    "text": {"text": "{v}"},
    "bytes": {"bytes": "{v}"},
    "vector": {"vector": "{v}::FLOAT[]"},
}


def _atom_name(value_type: pa.DataType) -> str:
    if pa.types.is_floating(value_type):
        return "float"
    if pa.types.is_integer(value_type):
        return "int"
    if pa.types.is_large_string(value_type):
        return "text"
    if pa.types.is_large_binary(value_type):
        return "bytes"
    if pa.types.is_fixed_size_list(value_type) or pa.types.is_large_list(value_type):
        return "vector"
    return "null"


def _projection(value_type: pa.DataType, name: str) -> str:
    """SELECT mapping a source whose ``value`` is ``value_type`` to the history columns."""
    cols: dict[str, list[str]] = {c: [] for c in _COLUMN_TYPES}
    if pa.types.is_struct(value_type):  # a mixed-type history: one field per atom type
        atoms = [(f.name, f"value.{f.name}") for f in value_type]
    else:
        atoms = [(_atom_name(value_type), "value")]
    for atom, expr in atoms:
        for col, template in _ATOM_COLUMNS.get(atom, {}).items():
            cols[col].append(template.format(v=expr))
    cases = " ".join(f"WHEN {expr} IS NOT NULL THEN '{atom}'" for atom, expr in atoms)
    select = ", ".join(
        f"CAST({_coalesce(cols[c])} AS {t}) AS {c}" for c, t in _COLUMN_TYPES.items()
    )
    return f"SELECT key, ts, {select}, CASE {cases} ELSE 'null' END AS type FROM \"{name}\""


def _coalesce(exprs: list[str]) -> str:
    if not exprs:
        return "NULL"
    return exprs[0] if len(exprs) == 1 else f"coalesce({', '.join(exprs)})"


_NAIVE_TS = pa.timestamp("us")


def naive_ts(table: pa.Table) -> pa.Table:
    """The table with ``ts`` viewed as ``timestamp[us]`` without a zone (no copy)."""
    i = table.schema.get_field_index("ts")
    ts = table.column(i)
    naive = pa.chunked_array([c.view(_NAIVE_TS) for c in ts.chunks], type=_NAIVE_TS)
    return table.set_column(i, pa.field("ts", _NAIVE_TS, nullable=False), naive)


def _sources(db: SynaDB) -> tuple[list[pa.Table], list[pa.Table]]:
    """Tables of (key, ts, value) covering every live key, and those of ``latest``.

    Taken under the database lock as references only (chunks are immutable); the tables are
    assembled outside it, one zero-copy record batch per columnar slice.
    """
    bases: list[tuple[str, Any]] = []
    tails: dict[pa.DataType, list[tuple[str, TailChunk]]] = defaultdict(list)
    lasts: dict[pa.DataType, list[tuple[str, TailChunk]]] = defaultdict(list)
    with db._lock:
        if db._closed:
            raise DatabaseClosedError(f"database {db.path} is closed")
        for key, st in db._keys.items():
            if st.latest_atom is None:
                continue
            bases.extend((key, ref) for ref in st.base)
            tail = st.tail_chunks()
            for c in tail:
                tails[c.values.type].append((key, c))
            last = tail[-1] if tail else st.base[-1].chunk()
            lasts[last.values.type].append((key, last))

    by_type: dict[pa.DataType, list[tuple[str, Any]]] = defaultdict(list)
    for key, ref in bases:  # each slice is a zero-copy view of a mapped record batch
        by_type[ref.chunk().values.type].append((key, ref))
    tables = [naive_ts(keyed_table(items)) for items in by_type.values()]
    tables += [_keyed_table(t, items, last_only=False) for t, items in tails.items()]
    latest = [_keyed_table(t, items, last_only=True) for t, items in lasts.items()]
    return tables, latest


def _keyed_table(
    value_type: pa.DataType, items: list[tuple[str, TailChunk]], *, last_only: bool
) -> pa.Table:
    """A (key, ts, value) table from chunks of one value type (or their last entries)."""
    keys = [k for k, _ in items]
    if last_only:
        counts = [1] * len(items)
        ts = np.array([c.ts[-1] for _, c in items], dtype=np.int64)
        values = pa.concat_arrays([c.values.slice(len(c) - 1) for _, c in items])
    else:
        counts = [len(c) for _, c in items]
        ts = np.concatenate([c.ts for _, c in items]).astype(np.int64, copy=False)
        values = pa.concat_arrays([c.values for _, c in items])
    return naive_ts(
        pa.Table.from_arrays(
            [key_column(keys, counts), ts_array(ts), values], schema=data_schema(value_type)
        )
    )


def register(
    con: duckdb.DuckDBPyConnection,
    db: SynaDB,
    *,
    prefix: str = "_synarrow",
    previous: set[str] | None = None,
) -> set[str]:
    """Register the ``history`` and ``latest`` views of ``db`` on ``con``.

    Returns the names of the source tables registered; pass them as ``previous`` to the next
    registration on the same connection so sources no longer needed are dropped.
    """
    tables, latest = _sources(db)
    registered: set[str] = set()
    for view, sources in (("history", tables), ("latest", latest)):
        selects = []
        for i, table in enumerate(sources):
            name = f"{prefix}_{view}_{i}"
            con.register(name, table)
            registered.add(name)
            selects.append(_projection(table.schema.field("value").type, name))
        if not selects:
            empty = pa.table(
                {
                    "key": string_array([]),
                    "ts": ts_array(np.empty(0, np.int64)).view(_NAIVE_TS),
                    "value": pa.nulls(0, pa.float64()),
                }
            )
            name = f"{prefix}_{view}_empty"
            con.register(name, empty)
            registered.add(name)
            selects.append(_projection(pa.float64(), name))
        con.execute(f'CREATE OR REPLACE TEMP VIEW "{view}" AS ' + " UNION ALL ".join(selects))
    # Sources of an earlier registration that are no longer used would pin old tables.
    for name in (previous or set()) - registered:
        con.unregister(name)
    return registered


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


def is_internal_name(name: str) -> bool:
    """Whether a name is one of synarrow's own views or sources (DuckDB folds case)."""
    folded = name.lower()
    return folded in RESERVED_VIEWS or folded.startswith(INTERNAL_PREFIX)


def register_keys(
    con: duckdb.DuckDBPyConnection, db: SynaDB, query: str, previous: set[str] | None = None
) -> set[str]:
    """Register a view for every live key the query names in FROM / JOIN; returns them.

    Views of ``previous`` (registered for an earlier query on this connection) are dropped
    first, so a deleted key is no longer readable. DuckDB names are case-insensitive, so
    a query naming two keys that differ only in case is refused, and so is a key whose name
    is one of synarrow's views or sources (``History``, ``_synarrow_history_0`` ...): it
    cannot replace them, and is read through ``history WHERE key = ...`` instead.
    """
    for name in previous or ():
        con.unregister(name)
    named = {n for n in referenced_names(query) if n}
    keys = [n for n in named if n not in RESERVED_VIEWS and db.exists(n)]
    folded: dict[str, str] = {}
    for name in keys:
        if is_internal_name(name):
            raise SQLError(
                f"key {name!r} has the name of a synarrow view, so it cannot be queried by name",
                hint=f"query it as SELECT ts, value FROM history WHERE key = '{_quote(name)}'",
            )
        other = folded.setdefault(name.lower(), name)
        if other != name:
            raise SQLError(
                f"keys {other!r} and {name!r} differ only in case, which DuckDB names cannot tell "
                "apart",
                hint=f"query them as history WHERE key = '{_quote(other)}' / "
                f"key = '{_quote(name)}'",
            )
    for name in keys:
        con.register(name, naive_ts(db.get_history(name)))
    return set(keys)


def _quote(key: str) -> str:
    return key.replace("'", "''")


def connect(db: SynaDB, *, external_access: bool = False) -> duckdb.DuckDBPyConnection:
    """A new sandboxed DuckDB connection with ``history`` and ``latest`` registered.

    ``external_access=True`` leaves DuckDB's file functions (``read_csv``, ``COPY``,
    ``ATTACH`` ...) on, for a connection the caller owns (see :mod:`synarrow.sandbox`).
    """
    con = new_connection(external_access=external_access)
    register(con, db)
    return con


# Statements that reach outside the connection. The sandbox already makes them fail, but
# EXPORT DATABASE creates its directory before the permission check: refuse them unparsed.
_OUTSIDE = {"EXPORT", "COPY_DATABASE", "ATTACH", "DETACH", "LOAD", "EXTENSION"}
# What a read-only client (a server) may run: queries and their plans.
_READ = {"SELECT", "EXPLAIN", "RELATION"}


# The head of an EXPLAIN statement: EXPLAIN [ANALYZE] [(options)]. What follows it is checked
# as a statement of its own, since EXPLAIN ANALYZE runs it.
_EXPLAIN_HEAD = re.compile(
    r"^\s*EXPLAIN\b(?:\s+ANALYZE\b)?(?:\s*\([^()]*\))?", re.IGNORECASE | re.DOTALL
)


def _statement_kinds(query: str, depth: int = 0) -> list[str]:
    """The statement types of ``query``, with the statement inside each EXPLAIN as well."""
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise SQLError(f"query failed: {exc}") from exc
    kinds = []
    for st in statements:
        kind = st.type.name
        if kind == "EXPLAIN":
            inner = _EXPLAIN_HEAD.sub("", st.query, count=1)
            if depth > 4 or inner == st.query or not inner.strip():
                raise SQLError("this EXPLAIN statement is not one synarrow can check")
            inner_kinds = _statement_kinds(inner, depth + 1)
            # EXPLAIN of a query is a read; EXPLAIN ANALYZE of anything else runs it.
            kinds.extend(k if k != "SELECT" else "EXPLAIN" for k in inner_kinds)
        else:
            kinds.append(kind)
    return kinds


def check_statements(query: str, *, read_only: bool = False) -> None:
    """Refuse statements that reach outside the database (and, if ``read_only``, any write).

    The statement an ``EXPLAIN`` (``EXPLAIN ANALYZE`` runs it) wraps is checked too.
    """
    for kind in _statement_kinds(query):
        if kind in _OUTSIDE or (read_only and kind not in _READ):
            raise SQLError(
                f"{kind} statements are not allowed here",
                hint="synarrow SQL reads the database's views; DuckDB's file, attach and "
                "extension statements are off"
                + ("" if read_only else " (db.duckdb(external_access=True) opts in)"),
            )


def _uses_views(query: str) -> bool:
    """Whether a query may read ``history`` / ``latest`` (True when it cannot be told)."""
    try:
        names = duckdb.get_table_names(query)
    except duckdb.Error:
        return True
    return any(name.lower() in RESERVED_VIEWS for name in names)


class SqlSession:
    """One sandboxed DuckDB connection over a database, its views kept current per query.

    ``db.sql`` keeps one per database (closed by ``db.close()``); a server opens one per
    request, so a slow query holds only its own connection and :meth:`interrupt` stops it.
    ``read_only`` admits only ``SELECT`` and ``EXPLAIN`` statements. ``connection``: a
    connection to use instead of a new one, such as ``base.cursor()`` of a sandboxed
    ``base`` (a cursor is its own connection, with its own views, to the same in-memory
    DuckDB, and costs far less to open); the session closes it.
    """

    def __init__(
        self,
        db: SynaDB,
        *,
        read_only: bool = False,
        connection: duckdb.DuckDBPyConnection | None = None,
    ) -> None:
        self.db = db
        self.read_only = read_only
        self.con = connection if connection is not None else new_connection()
        self.lock = threading.Lock()
        self._state: tuple[int, int] | None = None
        self._sources: set[str] | None = None
        self._keys: set[str] | None = None
        self._closed = False

    def _prepare(self, query: str) -> None:
        db = self.db
        state = (db._next_seq, db._columnar.manifest.generation)
        if self._state != state and _uses_views(query):
            self._sources = register(self.con, db, previous=self._sources)
            self._state = state
        self._keys = register_keys(self.con, db, query, self._keys)

    def relation(self, query: str, params: Iterable[Any] | None = None) -> Any:
        """The DuckDB relation of ``query`` (None for statements without a result)."""
        if not isinstance(query, str) or not query.strip():
            raise InvalidArgumentError("sql() needs a non-empty query string")
        if self._closed:
            raise DatabaseClosedError(f"the SQL session of {self.db.path} is closed")
        check_statements(query, read_only=self.read_only)
        try:
            self._prepare(query)
            if isinstance(params, dict):
                return self.con.sql(query, params=params)
            return self.con.sql(query, params=list(params) if params is not None else None)
        except duckdb.Error as exc:
            raise SQLError(f"query failed: {exc}") from exc

    def query(self, query: str, params: Iterable[Any] | None = None) -> pa.Table:
        """Run ``query``; its result as an Arrow table (empty for statements)."""
        with self.lock:
            rel = self.relation(query, params)
            try:
                return pa.table({}) if rel is None else rel.to_arrow_table()
            except duckdb.Error as exc:
                raise SQLError(f"query failed: {exc}") from exc

    def interrupt(self) -> None:
        """Stop the query running on this session (it fails with an SQLError)."""
        if not self._closed:
            try:
                self.con.interrupt()
            except duckdb.Error:
                pass  # closed meanwhile: nothing left to stop

    def close(self) -> None:
        """Close the connection. Idempotent."""
        if not self._closed:
            self._closed = True
            self.con.close()


_SESSIONS_LOCK = threading.Lock()
_SESSIONS: weakref.WeakKeyDictionary[SynaDB, SqlSession] = weakref.WeakKeyDictionary()


def session(db: SynaDB) -> SqlSession:
    """The database's own :class:`SqlSession` (created on first use; ``db.close()`` ends it)."""
    with _SESSIONS_LOCK:
        db.require_open()
        current = _SESSIONS.get(db)
        if current is None:
            current = _SESSIONS[db] = SqlSession(db)
            created = True
        else:
            created = False
    if created:
        db.on_close(lambda: close_session(db))  # at once if db closed meanwhile
    return current


def close_session(db: SynaDB) -> None:
    """Close the database's :class:`SqlSession`, if it has one."""
    with _SESSIONS_LOCK:
        current = _SESSIONS.pop(db, None)
    if current is not None:
        with current.lock:
            current.close()


def run_sql(db: SynaDB, query: str, params: Iterable[Any] | None = None) -> pa.Table:
    """Run ``query`` on the database's sandboxed session; returns an Arrow table."""
    if not isinstance(query, str) or not query.strip():
        raise InvalidArgumentError("sql() needs a non-empty query string")
    return session(db).query(query, params)
