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

Every view reads each key's ordered timeline (``KeyView.chunks()``: sorted by ``ts``, equal
timestamps in arrival order, the duplicates policy and retention applied), so SQL sees what
``get_history`` returns, and ``latest`` holds the entry with the latest timestamp.
Compacted data is registered as slices of the memory-mapped record batches (zero-copy: DuckDB
reads the mapping, projecting only the columns a query uses); log-tail chunks are registered
as Arrow tables built from the in-memory index.

Time ranges: DuckDB scans a registered Arrow table in full and filters afterwards (it pushes
filters only into a ``pyarrow.dataset``, whose in-memory scanner still evaluates them on
every row; measured here, a 1-day filter over a 30-day 1 Hz key cost about as much as the
full scan). So a per-key view is registered for each query as just the slice its ``WHERE``
needs: :func:`synarrow.sql_ranges.key_range` reads the bounds on ``ts`` off DuckDB's parse
of the query (``ts >= / > / < / <= / = / BETWEEN`` constants, top-level ``AND`` terms of the
``SELECT`` reading the key, the key named once), and the view is the zero-copy slice found
by binary search; DuckDB still applies the whole ``WHERE``. Where that cannot be shown
safe (``OR``, parameters, ``now()``, joins in the same ``FROM``, the key named twice) the
view holds the whole history. ``history`` is registered once per database version for
every query, so a ``WHERE key = ... AND ts ...`` on it is applied by DuckDB while scanning
all keys; use the per-key view (or ``db.get_history(key, start, end)``) for range reads.

The views of one query are registered from one read snapshot of the database
(``db.read_snapshot()``), so ``history``, ``latest`` and the per-key views agree with each
other whatever writers do meanwhile; a session registers ``history`` / ``latest`` again only
when ``db.data_version`` changed, or on every query while retention rules exist (points
expire with time, and rules change without a write).

Every connection comes from :mod:`synarrow.sandbox` (no file access, no extensions, settings
locked), and :func:`~synarrow.duck.check_statements` refuses ``EXPORT`` / ``ATTACH`` /
``LOAD`` before DuckDB sees them. :class:`SqlSession` is a :class:`~synarrow.duck.DuckSession`
kept current for a database: ``db.sql`` owns one (closed by ``db.close()``); servers open one
per request.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from synarrow.columnar.ipc import data_schema, key_column
from synarrow.columnar.schema import TS_TYPE, history_table, string_array, ts_array
from synarrow.columnar.store import SQL_MERGE_ROWS
from synarrow.duck import DuckSession, check_statements
from synarrow.engine.snapshot import KeyView, ReadSnapshot
from synarrow.engine.timeline import slice_chunk
from synarrow.errors import InvalidArgumentError, SQLError
from synarrow.layout import COLUMNS, NAIVE_TS_TYPE, atom_of_type
from synarrow.log.memtable import TailChunk
from synarrow.reading import SnapshotSource
from synarrow.sandbox import new_connection
from synarrow.sql_ranges import key_range, may_bound_ts

__all__ = [
    "INTERNAL_PREFIX",
    "RESERVED_VIEWS",
    "SQLError",
    "SqlSession",
    "check_statements",
    "close_session",
    "connect",
    "is_internal_name",
    "key_names",
    "key_table",
    "naive_ts",
    "referenced_names",
    "register",
    "register_keys",
    "run_sql",
    "session",
]

RESERVED_VIEWS = {"history", "latest"}
INTERNAL_PREFIX = "_synarrow"


def _projection(value_type: pa.DataType, name: str) -> str:
    """SELECT mapping a source whose ``value`` is ``value_type`` to the history columns."""
    if pa.types.is_struct(value_type):  # a mixed-type history: one field per atom type
        atoms = [(f.name, f"value.{f.name}") for f in value_type]
    else:
        atoms = [(atom_of_type(value_type) or "null", "value")]
    columns = []
    for c in COLUMNS:
        exprs = [f"CAST({expr} AS {c.sql_type})" for atom, expr in atoms if c.holds(atom)]
        columns.append(f"{_coalesce(exprs) or f'CAST(NULL AS {c.sql_type})'} AS {c.name}")
    select = ", ".join(columns)
    cases = " ".join(f"WHEN {expr} IS NOT NULL THEN '{atom}'" for atom, expr in atoms)
    return f"SELECT key, ts, {select}, CASE {cases} ELSE 'null' END AS type FROM \"{name}\""


def _coalesce(exprs: list[str]) -> str:
    if not exprs:
        return ""
    return exprs[0] if len(exprs) == 1 else f"coalesce({', '.join(exprs)})"


def naive_ts(table: pa.Table) -> pa.Table:
    """The table with ``ts`` viewed as ``timestamp[us]`` without a zone (no copy)."""
    i = table.schema.get_field_index("ts")
    ts = table.column(i)
    naive = pa.chunked_array([c.view(NAIVE_TS_TYPE) for c in ts.chunks], type=NAIVE_TS_TYPE)
    return table.set_column(i, pa.field("ts", NAIVE_TS_TYPE, nullable=False), naive)


def _sources(snapshot: ReadSnapshot) -> tuple[list[pa.Table], list[pa.Table]]:
    """Tables of (key, ts, value) covering every key of a snapshot, and those of ``latest``.

    Each key is read as its ordered timeline (:meth:`KeyView.chunks`: sorted by ``ts``, the
    duplicates policy and retention applied), so SQL sees what ``get_history`` returns.
    Chunks of one value type make one table; chunks of at least ``SQL_MERGE_ROWS`` rows
    (compacted slices) stay zero-copy views of the mapped files, runs of smaller ones (log
    tail) are concatenated. ``latest`` holds each key's entry with the latest timestamp.
    """
    chunks: dict[pa.DataType, list[tuple[str, TailChunk]]] = defaultdict(list)
    lasts: dict[pa.DataType, list[tuple[str, TailChunk]]] = defaultdict(list)
    for key, view in snapshot.keys.items():
        timeline = view.chunks()
        for c in timeline:
            chunks[c.values.type].append((key, c))
        if timeline:  # empty when retention expired every entry
            last = timeline[-1]
            last = slice_chunk(last, len(last) - 1, len(last))
            lasts[last.values.type].append((key, last))
    tables = [_keyed_table(t, items) for t, items in chunks.items()]
    latest = [_keyed_table(t, items) for t, items in lasts.items()]
    return tables, latest


def _keyed_table(value_type: pa.DataType, items: list[tuple[str, TailChunk]]) -> pa.Table:
    """A (key, ts, value) table of chunks of one value type, in the order given."""
    ts: list[pa.Array] = []
    values: list[pa.Array] = []
    pending: list[TailChunk] = []  # a run of small chunks, concatenated into one

    def merge() -> None:
        if pending:
            ts.append(ts_array(np.concatenate([c.ts for c in pending])))
            values.append(pa.concat_arrays([c.values for c in pending]))
            pending.clear()

    for _, c in items:
        if len(c) < SQL_MERGE_ROWS:
            pending.append(c)
            continue
        merge()
        ts.append(ts_array(c.ts))  # zero-copy: a view of the chunk's (mapped) timestamps
        values.append(c.values)
    merge()
    keys = key_column([k for k, _ in items], [len(c) for _, c in items])
    table = pa.Table.from_arrays(
        [keys, pa.chunked_array(ts, TS_TYPE), pa.chunked_array(values, value_type)],
        schema=data_schema(value_type),
    )
    return naive_ts(table)


def register(
    con: duckdb.DuckDBPyConnection,
    source: SnapshotSource | ReadSnapshot,
    *,
    prefix: str = INTERNAL_PREFIX,
    previous: set[str] | None = None,
) -> set[str]:
    """Register the ``history`` and ``latest`` views of a database on ``con``.

    ``source``: a database (a snapshot of it is taken now) or a snapshot; every key is
    read as of that one snapshot. Returns the names of the source tables registered; pass
    them as ``previous`` to the next registration on the same connection so sources no
    longer needed are dropped.
    """
    snapshot = source if isinstance(source, ReadSnapshot) else source.read_snapshot()
    tables, latest = _sources(snapshot)
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
                    "ts": ts_array(np.empty(0, np.int64)).view(NAIVE_TS_TYPE),
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


def key_names(query: str) -> set[str]:
    """The names in a query's FROM / JOIN that may be keys (not ``history`` / ``latest``)."""
    return {n for n in referenced_names(query) if n and n not in RESERVED_VIEWS}


def register_keys(
    con: duckdb.DuckDBPyConnection,
    snapshot: ReadSnapshot,
    query: str,
    previous: set[str] | None = None,
    *,
    names: set[str] | None = None,
) -> set[str]:
    """Register a view for every key of ``snapshot`` the query names in FROM / JOIN.

    Returns the names registered. Views of ``previous`` (registered for an earlier query on
    this connection) are dropped first, so a deleted key is no longer readable. DuckDB names
    are case-insensitive, so a query naming two keys that differ only in case is refused,
    and so is a key whose name is one of synarrow's views or sources (``History``,
    ``_synarrow_history_0`` ...): it cannot replace them, and is read through
    ``history WHERE key = ...`` instead.

    ``names``: :func:`key_names` of the query, when the caller has them already.
    """
    for name in previous or ():
        con.unregister(name)
    keys = [n for n in (key_names(query) if names is None else names) if n in snapshot]
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
        bounds = key_range(con, query, name) if may_bound_ts(query) else None
        con.register(name, naive_ts(key_table(snapshot.keys[name], bounds)))
    return set(keys)


def key_table(view: KeyView, bounds: tuple[int | None, int | None] | None = None) -> pa.Table:
    """A key's history (``ts``, ``value``) as its per-key view shows it: the rows with
    ``start <= ts < end`` of ``bounds`` (all of them for ``None``), a zero-copy slice of the
    whole history's table, so the view has the same schema whatever the range."""
    chunks = view.chunks()
    table = history_table(chunks)
    if bounds is None:
        return table
    start, end = bounds
    lo = 0 if start is None else _rows_before(chunks, start)
    hi = len(table) if end is None else _rows_before(chunks, end)
    return table.slice(lo, max(0, hi - lo))


def _rows_before(timeline: list[TailChunk], ts: int) -> int:
    """How many entries of an ordered timeline are before ``ts`` (binary search per chunk)."""
    return sum(int(np.searchsorted(c.ts, ts, side="left")) for c in timeline)


def _quote(key: str) -> str:
    return key.replace("'", "''")


def connect(source: SnapshotSource, *, external_access: bool = False) -> duckdb.DuckDBPyConnection:
    """A new sandboxed DuckDB connection with ``history`` and ``latest`` registered.

    ``external_access=True`` leaves DuckDB's file functions (``read_csv``, ``COPY``,
    ``ATTACH`` ...) on, for a connection the caller owns (see :mod:`synarrow.sandbox`).
    """
    con = new_connection(external_access=external_access)
    try:
        register(con, source)
    except BaseException:
        con.close()
        raise
    return con


def _uses_views(query: str) -> bool:
    """Whether a query may read ``history`` / ``latest`` (True when it cannot be told)."""
    try:
        names = duckdb.get_table_names(query)
    except duckdb.Error:
        return True
    return any(name.lower() in RESERVED_VIEWS for name in names)


class SqlSession(DuckSession):
    """A :class:`~synarrow.duck.DuckSession` over a database, its views current per query.

    Before each query the session registers what it reads from **one** read snapshot: the
    ``history`` / ``latest`` views (registered again only when ``db.data_version`` changed)
    and the per-key views it names, so a query never mixes two moments of the database.

    ``db.sql`` keeps one per database (closed by ``db.close()``); a server opens one per
    request, so a slow query holds only its own connection and :meth:`interrupt` stops it.
    ``read_only`` and ``connection``: see :class:`~synarrow.duck.DuckSession`.
    """

    def __init__(
        self,
        db: SnapshotSource,
        *,
        read_only: bool = False,
        connection: duckdb.DuckDBPyConnection | None = None,
    ) -> None:
        super().__init__(read_only=read_only, connection=connection)
        self.db = db
        self._version: tuple[int, int] | None = None
        self._expiring = False  # the registered views depend on retention rules and time
        self._sources: set[str] | None = None
        self._keys: set[str] | None = None
        self.snapshot: ReadSnapshot | None = None
        """The snapshot the last query read."""

    def prepare(self, query: str) -> None:
        """Register the views ``query`` reads, all from one snapshot of the database."""
        db = self.db
        views = _uses_views(query)
        names = key_names(query)
        snapshot = None
        if not views or (self._version == db.data_version and not self._expiring):
            snapshot = db.read_snapshot(names)
            if views and (snapshot.version != self._version or snapshot.expiring):
                # written meanwhile, or retention rules were set (what the views show then
                # changes with time and the rules): the views need the new state too
                snapshot = None
        if snapshot is None:
            snapshot = db.read_snapshot()
            self._sources = register(self.con, snapshot, previous=self._sources)
            self._version = snapshot.version
            self._expiring = snapshot.expiring
        self._keys = register_keys(self.con, snapshot, query, self._keys, names=names)
        self.snapshot = snapshot


_SESSIONS_LOCK = threading.Lock()
_SESSIONS: weakref.WeakKeyDictionary[Any, SqlSession] = weakref.WeakKeyDictionary()


def session(db: SnapshotSource) -> SqlSession:
    """The database's own :class:`SqlSession` (created on first use; ``db.close()`` ends it)."""
    with _SESSIONS_LOCK:
        db.require_open()
        current = _SESSIONS.get(db)
        if current is not None:
            return current
        current = _SESSIONS[db] = SqlSession(db)
    db.on_close(lambda: close_session(db))  # at once if db closed meanwhile
    return current


def close_session(db: SnapshotSource) -> None:
    """Close the database's :class:`SqlSession`, if it has one (after its running query)."""
    with _SESSIONS_LOCK:
        current = _SESSIONS.pop(db, None)
    if current is not None:
        with current.lock:
            current.close()


def run_sql(db: SnapshotSource, query: str, params: Iterable[Any] | None = None) -> pa.Table:
    """Run ``query`` on the database's sandboxed session; returns an Arrow table."""
    if not isinstance(query, str) or not query.strip():
        raise InvalidArgumentError("sql() needs a non-empty query string")
    return session(db).query(query, params)
