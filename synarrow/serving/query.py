"""Queries for network clients: a sandboxed session each, a deadline, results in batches.

Each query gets its own :class:`~synarrow.sql.SqlSession` (a fresh DuckDB connection that
admits only ``SELECT`` / ``EXPLAIN``), so one slow query never holds up another. The
session's deadline (:meth:`~synarrow.duck.DuckSession.start_deadline`) interrupts it when
the timeout passes; :meth:`QueryRunner.stop` interrupts
every running query at shutdown. Results are read from DuckDB's record batch reader as the
client consumes them instead of being built whole first.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

import duckdb
import pyarrow as pa

from synarrow.errors import InvalidStateError, SQLError, SynaError
from synarrow.reading import SnapshotSource, history
from synarrow.sandbox import new_connection
from synarrow.serving.wire import rebatch
from synarrow.sql import RESERVED_VIEWS, SqlSession, is_internal_name, naive_ts

STREAM_BATCH_ROWS = 1 << 19
SMALL_RESULT_BYTES = 4 << 20
_WHOLE_KEY = re.compile(
    r'\s*SELECT\s+\*\s+FROM\s+("(?:[^"]|"")+"|[A-Za-z_]\w*)\s*;?\s*', re.IGNORECASE
)


class _Batches:
    """The batches of a running query; its session is released when they are exhausted,
    fail, or the iterator is closed or dropped (even before the first batch is read)."""

    def __init__(self, runner: QueryRunner, reader: Any, session: SqlSession) -> None:
        self._runner = runner
        self._reader = reader
        self._session: SqlSession | None = session

    def __iter__(self) -> _Batches:
        return self

    def __next__(self) -> pa.RecordBatch:
        if self._session is None:
            raise StopIteration
        try:
            return self._reader.read_next_batch()
        except StopIteration:
            self.close()
            raise
        except (duckdb.Error, pa.ArrowException) as exc:
            error = self._runner.error(exc, self._session)
            self.close()
            raise error from exc
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the query's session (idempotent)."""
        session, self._session = self._session, None
        if session is not None:
            self._runner.finish(session)

    def __del__(self) -> None:
        self.close()


class QueryRunner:
    """Runs the queries of one server: sessions per query, a timeout, interruption at stop."""

    def __init__(self, db: SnapshotSource, *, timeout: float | None = None) -> None:
        if timeout is not None and not timeout > 0:
            raise SQLError(f"a query timeout is a positive number of seconds, got {timeout!r}")
        self.db = db
        self.timeout = timeout
        # One sandboxed in-memory DuckDB; each query gets a cursor of it (its own
        # connection: views, registrations and interrupt() are per cursor).
        self._base = new_connection()
        self._active: set[SqlSession] = set()
        self._lock = threading.Lock()
        self._stopping = False

    def _open(self) -> SqlSession:
        with self._lock:
            if self._stopping:
                raise InvalidStateError("the server is shutting down")
            cursor = self._base.cursor()
        session = SqlSession(self.db, read_only=True, connection=cursor)
        with self._lock:
            if self._stopping:
                session.close()
                raise InvalidStateError("the server is shutting down")
            self._active.add(session)
        return session

    def error(self, exc: BaseException, session: SqlSession) -> SynaError:
        """The error a client gets for a query's failure (cancelled at shutdown, timed out)."""
        if isinstance(exc, SynaError) and not isinstance(exc, SQLError):
            return exc
        if self._stopping:
            return InvalidStateError("the query was cancelled: the server is shutting down")
        return session.error(exc)

    def _start(
        self, query: str, params: Iterable[Any] | None, fetch: Any
    ) -> tuple[Any, SqlSession]:
        """``fetch(relation)`` on a new session under the deadline; on failure it is closed."""
        session = self._open()
        if self.timeout is not None:
            session.start_deadline(self.timeout)
        try:
            rel = session.relation(query, params)
            if rel is None:
                raise SQLError("the statement returns no rows")
            return fetch(rel), session
        except BaseException as exc:
            self.finish(session)
            if isinstance(exc, (SynaError, duckdb.Error, pa.ArrowException)):
                raise self.error(exc, session) from exc
            raise

    def finish(self, session: SqlSession) -> None:
        """Release a query's session (its deadline stops with it)."""
        with self._lock:
            self._active.discard(session)
        session.close()

    def schema(self, query: str, params: Iterable[Any] | None = None) -> pa.Schema:
        """The Arrow schema of a query's result, without running it in full."""
        whole = self._whole_key(query, params)
        if whole is not None:
            return whole.schema
        schema, session = self._start(
            query, params, lambda rel: rel.limit(0).to_arrow_table().schema
        )
        self.finish(session)
        return schema  # type: ignore[no-any-return]

    def stream(
        self, query: str, params: Iterable[Any] | None = None
    ) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
        """The result's schema and an iterator of its batches, computed as they are read.

        The session closes when the iterator is exhausted, fails or is discarded; the
        deadline covers the whole read.
        """
        whole = self._whole_key(query, params)
        if whole is not None:
            return whole.schema, iter(rebatch(whole).to_batches())
        reader, session = self._start(
            query, params, lambda rel: rel.arrow(batch_size=STREAM_BATCH_ROWS)
        )
        return reader.schema, _Batches(self, reader, session)

    def first(
        self,
        query: str,
        params: Iterable[Any] | None = None,
        *,
        max_bytes: int = SMALL_RESULT_BYTES,
    ) -> tuple[pa.Schema, pa.Table | None]:
        """Run a query as far as its first batch: the schema, and the whole result when
        that is one batch of at most ``max_bytes`` (else None: stream it again)."""
        if self._whole_key(query, params) is not None:
            return self.schema(query, params), None
        schema, batches = self.stream(query, params)
        try:
            head = next(batches, None)
            if head is None:
                return schema, schema.empty_table()
            if head.nbytes > max_bytes or next(batches, None) is not None:
                return schema, None
            return schema, pa.Table.from_batches([head], schema)
        finally:
            if isinstance(batches, _Batches):
                batches.close()

    def table(self, query: str, params: Iterable[Any] | None = None) -> pa.Table:
        """A query's whole result (for small results such as one prepared-statement row)."""
        schema, batches = self.stream(query, params)
        return pa.Table.from_batches(list(batches), schema)

    def stop(self, *, wait: float = 2.0) -> None:
        """Refuse new queries and interrupt the running ones, for up to ``wait`` seconds.

        Interrupting is repeated: a query between its session's start and DuckDB's first
        step would otherwise miss a single interrupt and run on.
        """
        with self._lock:
            self._stopping = True
        deadline = time.monotonic() + wait
        while True:
            with self._lock:
                active = list(self._active)
            for session in active:
                session.interrupt()
            if not active or time.monotonic() > deadline:
                return
            time.sleep(0.05)

    def close(self) -> None:
        """Stop, then release the DuckDB instance."""
        self.stop(wait=0)
        self._base.close()

    def _whole_key(self, query: str, params: Iterable[Any] | None) -> pa.Table | None:
        """The history of the key a ``SELECT * FROM "<key>"`` reads, if that is the query.

        Such a query on a numeric key is answered from the memory-mapped history itself
        instead of through DuckDB: the same rows, columns and Arrow types DuckDB would give,
        at the speed of a key ticket.
        """
        if params:
            return None
        match = _WHOLE_KEY.fullmatch(query)
        if match is None:
            return None
        name = match.group(1)
        if name.startswith('"'):
            name = name[1:-1].replace('""', '"')
        if name in RESERVED_VIEWS or is_internal_name(name):
            return None
        try:
            view = self.db.read_snapshot([name]).keys.get(name)
        except SynaError:
            return None
        if view is None:
            return None
        table = naive_ts(history(view))
        value = table.schema.field("value").type
        if not (pa.types.is_floating(value) or pa.types.is_integer(value)):
            return None  # DuckDB returns text and vectors in other Arrow types: let it answer
        nullable = pa.schema([f.with_nullable(True) for f in table.schema])
        return pa.Table.from_arrays(table.columns, schema=nullable)


__all__ = ["QueryRunner"]
