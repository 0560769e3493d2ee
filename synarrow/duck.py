"""The one DuckDB session helper: a sandboxed connection synarrow owns, queried safely.

:class:`DuckSession` is what every synarrow layer that runs a user's query uses (``db.sql``,
the Flight servers, experiments, vector stores). It

* opens its connection through :mod:`synarrow.sandbox` (or takes a sandboxed cursor), owns
  it and closes it (:meth:`DuckSession.close`, or ``with``);
* refuses statements that reach outside the database before DuckDB sees them
  (:func:`check_statements`), and every write when ``read_only``;
* runs one query at a time per session and turns DuckDB's errors into
  :class:`~synarrow.errors.SQLError`, or :class:`~synarrow.errors.QueryTimeoutError` when its
  deadline (:meth:`DuckSession.start_deadline`) interrupted the query.

What a session shows is up to its user: a ``prepare(connection)`` callback registers the
views right before each query (:class:`synarrow.sql.SqlSession` registers a database's).

>>> with DuckSession(read_only=True) as s:
...     s.query("SELECT 40 + 2 AS answer").column("answer").to_pylist()
[42]
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

import duckdb
import pyarrow as pa

from synarrow.errors import (
    DatabaseClosedError,
    InvalidArgumentError,
    QueryTimeoutError,
    SQLError,
    SynaError,
)
from synarrow.sandbox import new_connection

__all__ = ["DuckSession", "Prepare", "check_statements"]

#: Registers what a query may read on the session's connection, right before it runs.
Prepare = Callable[[duckdb.DuckDBPyConnection], None]

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
    kinds: list[str] = []
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

    >>> try:
    ...     check_statements("ATTACH 'other.db'")
    ... except SQLError as exc:
    ...     print(exc.message)
    ATTACH statements are not allowed here
    """
    for kind in _statement_kinds(query):
        if kind in _OUTSIDE or (read_only and kind not in _READ):
            raise SQLError(
                f"{kind} statements are not allowed here",
                hint="synarrow SQL reads the database's views; DuckDB's file, attach and "
                "extension statements are off"
                + ("" if read_only else " (db.duckdb(external_access=True) opts in)"),
            )


def _params(params: Iterable[Any] | None) -> Any:
    if params is None or isinstance(params, dict):
        return params
    return list(params)


class DuckSession:
    """One sandboxed DuckDB connection, owned by this object, and the queries run on it.

    ``read_only`` admits only ``SELECT`` and ``EXPLAIN`` statements. ``connection``: a
    sandboxed connection to use instead of a new one, such as ``base.cursor()`` of a
    :func:`~synarrow.sandbox.new_connection` (a cursor is its own connection, with its own
    views, to the same in-memory DuckDB, and far cheaper to open); the session closes it.
    ``hint``: the hint of the ``SQLError`` a failed query raises (what the views are).
    """

    def __init__(
        self,
        *,
        read_only: bool = False,
        connection: duckdb.DuckDBPyConnection | None = None,
        hint: str | None = None,
    ) -> None:
        self.read_only = read_only
        self.hint = hint
        self.con = connection if connection is not None else new_connection()
        self.lock = threading.Lock()
        """Held by :meth:`query` while a query runs (take it around :meth:`relation`)."""
        self._closed = False
        self._timer: threading.Timer | None = None
        self._timeout: float | None = None
        self._timed_out = False

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called (the connection is then closed)."""
        return self._closed

    def prepare(self, query: str) -> None:
        """Register what ``query`` may read; called before each query (nothing by default)."""

    def relation(
        self,
        query: str,
        params: Iterable[Any] | None = None,
        *,
        prepare: Prepare | None = None,
    ) -> Any:
        """The DuckDB relation of ``query`` (None for statements without a result).

        ``prepare(connection)`` runs after the statement checks and :meth:`prepare`, right
        before DuckDB gets the query.
        """
        if not isinstance(query, str) or not query.strip():
            raise InvalidArgumentError("sql() needs a non-empty query string")
        if self._closed:
            raise DatabaseClosedError("this SQL session is closed")
        check_statements(query, read_only=self.read_only)
        try:
            self.prepare(query)
            if prepare is not None:
                prepare(self.con)
            return self.con.sql(query, params=_params(params))
        except (duckdb.Error, pa.ArrowException) as exc:
            raise self.error(exc) from exc

    def query(
        self,
        query: str,
        params: Iterable[Any] | None = None,
        *,
        prepare: Prepare | None = None,
    ) -> pa.Table:
        """Run ``query``; its whole result as an Arrow table (empty for statements)."""
        with self.lock:
            rel = self.relation(query, params, prepare=prepare)
            try:
                return pa.table({}) if rel is None else rel.to_arrow_table()
            except (duckdb.Error, pa.ArrowException) as exc:
                raise self.error(exc) from exc

    def error(self, exc: BaseException) -> SynaError:
        """The synarrow error for a failure of a query on this session.

        DuckDB and Arrow errors become :class:`SQLError`, or :class:`QueryTimeoutError` if the
        deadline interrupted the query; synarrow's own errors are returned as they are.
        """
        if isinstance(exc, SynaError) and not isinstance(exc, SQLError):
            return exc
        if self._timed_out:
            return QueryTimeoutError(
                f"the query ran past the server's timeout of {self._timeout:g} s and was stopped"
            )
        if isinstance(exc, SQLError):
            return exc
        if self.hint is not None:
            return SQLError(f"query failed: {exc}", hint=self.hint)
        return SQLError(f"query failed: {exc}")

    @property
    def timed_out(self) -> bool:
        """Whether the deadline passed and interrupted the session's query."""
        return self._timed_out

    def start_deadline(self, timeout: float) -> None:
        """Interrupt the session's query once ``timeout`` seconds have passed (it then fails
        with :class:`QueryTimeoutError`)."""
        if not timeout > 0:
            raise InvalidArgumentError(
                f"a timeout is a positive number of seconds, got {timeout!r}"
            )
        self.cancel_deadline()
        self._timeout = timeout
        self._timer = threading.Timer(timeout, self._deadline_passed)
        self._timer.daemon = True
        self._timer.start()

    def cancel_deadline(self) -> None:
        """Stop the deadline's timer (the query finished in time). Idempotent."""
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    def _deadline_passed(self) -> None:
        self._timed_out = True
        self.interrupt()

    def interrupt(self) -> None:
        """Stop the query running on this session (it fails with an SQLError)."""
        if not self._closed:
            try:
                self.con.interrupt()
            except duckdb.Error:
                pass  # closed meanwhile: nothing left to stop

    def close(self) -> None:
        """Close the connection (and the deadline's timer). Idempotent."""
        self.cancel_deadline()
        if not self._closed:
            self._closed = True
            self.con.close()

    def __enter__(self) -> DuckSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
