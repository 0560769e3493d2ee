"""A database over Arrow Flight and Arrow Flight SQL: Flight clients (C++, Rust, Java, Go,
Python) and Flight SQL clients (ADBC, the Flight SQL JDBC driver, BI tools) read and write
it as Arrow record batches.

Server (``synarrow serve data.db`` runs one)::

    server = FlightServer(db, token="...")         # grpc://127.0.0.1:<free port>
    server.serve()                                 # blocks until shutdown()

Security: loopback by default; another host needs a bearer token (``token``) or an explicit
``insecure=True``; TLS with ``tls_cert`` / ``tls_key``. SQL runs in sandboxed read-only
DuckDB sessions (no file access, no extensions, no settings), one per request, interrupted
after ``query_timeout`` seconds. Tickets, commands and batches are size-capped.

Plain Flight protocol:

``do_get(ticket)``
    The ticket is JSON: ``{"key": "sensor/1"}`` streams that key's history (``ts``,
    ``value``); ``{"sql": "SELECT ..."}`` streams the result of a query over the ``history`` /
    ``latest`` views. A ticket that is not JSON is taken as a key name.
``list_flights(criteria)``
    One flight per live key (``criteria``: an optional glob such as ``sensor/*``), with its
    schema, row count and a ticket for ``do_get``.
``get_flight_info`` / ``get_schema``
    For a path descriptor ``[key]``, or a command descriptor holding a ticket (or SQL text).
``do_put(descriptor, stream)``
    Appends the stream to the key named by the path descriptor ``[key]``: a column ``value``
    and optionally ``ts`` (timestamps, or int64 microseconds since the epoch). Without a path,
    batches need a ``key`` column and rows go to their keys. The whole stream is checked
    before anything is written: all of it is appended or none. Each batch is acknowledged
    with ``{"rows": <rows received so far>, "committed": false}``; the last message,
    ``{"rows": <total>, "committed": true}``, is sent once every row is in the log.
``do_action``
    ``stats``, ``compact`` and ``delete`` (body: the key) return JSON.

Flight SQL commands (protobuf ``Any`` messages in descriptors, tickets and action bodies)
are routed to :mod:`synarrow.flightsql.service`.

Errors reach clients as Flight errors whose ``extra_info`` names the synarrow error class;
:class:`FlightClient` raises that class again.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight

from synarrow import errors
from synarrow.errors import InvalidArgumentError, ReadOnlyError, SynaError
from synarrow.flightsql import messages as flightsql_messages
from synarrow.flightsql.service import ACTIONS as FLIGHT_SQL_ACTIONS
from synarrow.reading import history, select_snapshot
from synarrow.serving.ingest import MAX_BATCH_BYTES, MAX_PUT_BYTES, PutStager
from synarrow.serving.query import QueryRunner
from synarrow.serving.wire import (
    MAX_REQUEST_BYTES,
    check_size,
    flight_error,
    guard,
    guarded_batches,
    rebatch,
)

if TYPE_CHECKING:
    from synarrow.db import SynaDB

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8815
PUT_BATCH_ROWS = 1 << 17


def encode_ticket(*, key: str | None = None, sql: str | None = None) -> bytes:
    """The ticket bytes for a key's history or a SQL query (exactly one of them)."""
    if (key is None) == (sql is None):
        raise InvalidArgumentError("a ticket names either a key or a SQL query")
    return json.dumps({"key": key} if key is not None else {"sql": sql}).encode()


def decode_ticket(raw: bytes) -> dict[str, str]:
    """``{"key": ...}`` or ``{"sql": ...}`` from ticket bytes (plain UTF-8 means a key)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidArgumentError("ticket is not UTF-8") from exc
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise InvalidArgumentError(f"ticket is not valid JSON: {exc}") from exc
        if isinstance(obj, dict) and len(obj) == 1:
            (kind, value), *_ = obj.items()
            if kind in ("key", "sql") and isinstance(value, str):
                return {kind: value}
        raise InvalidArgumentError('a JSON ticket is {"key": "..."} or {"sql": "..."}')
    if not text:
        raise InvalidArgumentError("empty ticket")
    return {"key": text}


def _descriptor_request(descriptor: flight.FlightDescriptor) -> dict[str, str]:
    if descriptor.descriptor_type == flight.DescriptorType.PATH:
        path = [p.decode("utf-8") if isinstance(p, bytes) else p for p in descriptor.path]
        if len(path) != 1:
            raise InvalidArgumentError(f"a path descriptor names one key, got {path!r}")
        return {"key": path[0]}
    command = descriptor.command
    text = command.decode("utf-8") if isinstance(command, bytes) else str(command)
    if text.lstrip().startswith("{"):
        return decode_ticket(text.encode())
    return {"sql": text}


class FlightServer(flight.FlightServerBase):  # type: ignore[misc]
    """An Arrow Flight and Arrow Flight SQL server over one open :class:`~synarrow.SynaDB`.

    >>> with synarrow.SynaDB("data.db") as db:              # doctest: +SKIP
    ...     server = FlightServer(db, port=8815, token="s3cret-token")
    ...     server.serve()

    Args:
        db: the database; the caller keeps it open while the server runs and closes it after.
            A handle opened with ``SynaDB(path, snapshot=tag)`` serves that tag, read-only
            (``synarrow serve PATH --snapshot TAG``); the tag cannot be dropped meanwhile.
        host: the interface to listen on: loopback by default, so nothing outside this
            machine can connect. Any other host needs ``token`` (or ``insecure=True``).
        port: the TCP port; 0 picks a free one (see :attr:`port`).
        readonly: refuse ``do_put``, ingest and the writing actions (always true for a
            read-only db).
        token: clients must send ``authorization: Bearer <token>`` on every call.
        tls_cert, tls_key: PEM files; with them the server speaks TLS (``grpc+tls://``).
        query_timeout: seconds a query may run before it is interrupted (None: no limit).
        insecure: allow a non-loopback ``host`` without a token.
        max_request_bytes: the largest ticket, command or action body accepted.
        max_batch_bytes: the largest record batch a put may send.
        max_put_bytes: the most one put may send in all (it is staged whole, then written).
        **kwargs: passed to ``pyarrow.flight.FlightServerBase``.
    """

    def __init__(
        self,
        db: SynaDB,
        *,
        host: str = DEFAULT_HOST,
        port: int = 0,
        readonly: bool = False,
        token: str | None = None,
        tls_cert: str | os.PathLike[str] | None = None,
        tls_key: str | os.PathLike[str] | None = None,
        query_timeout: float | None = None,
        insecure: bool = False,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        max_batch_bytes: int = MAX_BATCH_BYTES,
        max_put_bytes: int = MAX_PUT_BYTES,
        **kwargs: Any,
    ) -> None:
        from synarrow.flightsql.service import FlightSqlService
        from synarrow.serving.auth import BearerAuthFactory, check_exposure, read_token

        token = read_token(token=token)
        check_exposure(host, token=token, insecure=insecure)
        if (tls_cert is None) != (tls_key is None):
            raise InvalidArgumentError("TLS needs both a certificate and a key file")
        self.tls = tls_cert is not None
        if self.tls:
            kwargs["tls_certificates"] = [
                flight.CertKeyPair(_read_pem(tls_cert), _read_pem(tls_key))  # type: ignore[arg-type]
            ]
        if token is not None:
            kwargs.setdefault("middleware", {})["auth"] = BearerAuthFactory(token)
        self.db = db
        self.host = host
        self.readonly = readonly or db.readonly
        self.max_request_bytes = max_request_bytes
        self.max_batch_bytes = max_batch_bytes
        self.max_put_bytes = max_put_bytes
        self.queries = QueryRunner(db, timeout=query_timeout)
        self.flight_sql = FlightSqlService(
            db,
            self.queries,
            readonly=self.readonly,
            max_batch_bytes=max_batch_bytes,
            max_put_bytes=max_put_bytes,
        )
        scheme = "grpc+tls" if self.tls else "grpc+tcp"
        bind = f"[{host}]" if ":" in host and not host.startswith("[") else host
        super().__init__(f"{scheme}://{bind}:{port}", **kwargs)
        self._thread: threading.Thread | None = None

    @property
    def location(self) -> str:
        """The URI the server listens on, such as ``grpc://127.0.0.1:8815``.

        For a wildcard host (``0.0.0.0``, ``::``) it names the wildcard: clients on this
        machine can use it as is, others replace it with the machine's address.
        """
        host = self.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{'grpc+tls' if self.tls else 'grpc'}://{host}:{self.port}"

    def serve_in_thread(self) -> FlightServer:
        """Serve from a daemon thread (for tests and notebooks); returns ``self``."""
        self._thread = threading.Thread(target=self.serve, name="synarrow-flight", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Interrupt running queries, shut the server down and wait for its thread."""
        self.queries.stop()
        self.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.queries.close()

    def __enter__(self) -> FlightServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- routing ---------------------------------------------------------------------------

    def _flight_sql(self, raw: bytes, what: str) -> tuple[str, Any] | None:
        check_size(raw, what, self.max_request_bytes)
        try:
            return flightsql_messages.unpack(raw)
        except ValueError as exc:
            raise InvalidArgumentError(str(exc)) from exc

    def _command(self, descriptor: flight.FlightDescriptor) -> tuple[str, Any] | None:
        if descriptor.descriptor_type != flight.DescriptorType.CMD:
            return None
        return self._flight_sql(bytes(descriptor.command), "a command")

    # -- reading ---------------------------------------------------------------------------

    def _info(self, request: dict[str, str], schema: pa.Schema, rows: int) -> flight.FlightInfo:
        if "key" in request:
            descriptor = flight.FlightDescriptor.for_path(request["key"])
        else:
            descriptor = flight.FlightDescriptor.for_command(encode_ticket(sql=request["sql"]))
        ticket = flight.Ticket(encode_ticket(**request))
        return flight.FlightInfo(schema, descriptor, [flight.FlightEndpoint(ticket, [])], rows, -1)

    def _schema(self, request: dict[str, str]) -> tuple[pa.Schema, int]:
        if "key" in request:
            table = self.db.get_history(request["key"])
            return table.schema, table.num_rows
        return self.queries.schema(request["sql"]), -1

    @guard
    def list_flights(self, context: Any, criteria: bytes) -> list[flight.FlightInfo]:
        """One FlightInfo per live key (``criteria``: an optional glob pattern)."""
        pattern = check_size(criteria, "criteria", self.max_request_bytes).decode("utf-8")
        snapshot, keys = select_snapshot(self.db, pattern=pattern or None)
        infos = []
        for key in keys:  # every key as of one snapshot
            table = history(snapshot.keys[key])
            infos.append(self._info({"key": key}, table.schema, table.num_rows))
        return infos

    @guard
    def get_flight_info(
        self, context: Any, descriptor: flight.FlightDescriptor
    ) -> flight.FlightInfo:
        """Schema, row count and ticket of a key (path), a query or a Flight SQL command."""
        sql = self._command(descriptor)
        if sql is not None:
            return self.flight_sql.flight_info(sql[0], sql[1], descriptor)
        request = _descriptor_request(descriptor)
        return self._info(request, *self._schema(request))

    def get_schema(self, context: Any, descriptor: flight.FlightDescriptor) -> flight.SchemaResult:
        """The schema of a key's history, a query's result or a Flight SQL command."""
        try:
            sql = self._command(descriptor)
            if sql is not None:
                return flight.SchemaResult(self.flight_sql.schema(*sql))
            return flight.SchemaResult(self._schema(_descriptor_request(descriptor))[0])
        except flight.FlightError as exc:
            error = exc
        except Exception as exc:
            error = flight_error(exc)
        # pyarrow reports any exception of get_schema with its traceback, chained causes
        # included: raised bare here, the client sees the message and this one frame.
        raise error from None

    @guard
    def do_get(self, context: Any, ticket: flight.Ticket) -> flight.FlightDataStream:
        """Stream a key's history (zero-copy ~8 MiB batches), a query's result or a Flight
        SQL ticket; query results are computed batch by batch as the client reads."""
        raw = ticket.ticket
        sql = self._flight_sql(raw, "a ticket")
        if sql is not None:
            return self.flight_sql.do_get(*sql)
        request = decode_ticket(raw)
        if "key" in request:
            return flight.RecordBatchStream(rebatch(self.db.get_history(request["key"])))
        schema, batches = self.queries.stream(request["sql"])
        return flight.GeneratorStream(schema, guarded_batches(batches))

    # -- writing ---------------------------------------------------------------------------

    def _check_writable(self) -> None:
        if self.readonly:
            raise ReadOnlyError(f"this server exposes {self.db.path} read-only")

    @guard
    def do_put(
        self,
        context: Any,
        descriptor: flight.FlightDescriptor,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.FlightMetadataWriter,
    ) -> None:
        """Append the stream (``value`` [, ``ts``] [, ``key``]); all of it or none of it."""
        sql = self._command(descriptor)
        if sql is not None:
            return self.flight_sql.do_put(sql[0], sql[1], reader, writer)
        self._check_writable()
        key: str | None = None
        if descriptor.descriptor_type == flight.DescriptorType.PATH or descriptor.command:
            key = _descriptor_request(descriptor).get("key")
            if key is None:
                raise InvalidArgumentError("do_put needs a path descriptor naming the key")
        stager = PutStager(
            key=key, max_batch_bytes=self.max_batch_bytes, max_put_bytes=self.max_put_bytes
        )
        for chunk in reader:
            if chunk.data is not None:
                staged = stager.add(chunk.data)
                ack = {"rows": staged, "committed": False}
                writer.write(pa.py_buffer(json.dumps(ack).encode()))
        rows = stager.commit(self.db)
        writer.write(pa.py_buffer(json.dumps({"rows": rows, "committed": True}).encode()))
        return None

    # -- actions ---------------------------------------------------------------------------

    def list_actions(self, context: Any) -> list[tuple[str, str]]:
        """The actions this server understands."""
        return [
            ("stats", "counts and sizes of the database (JSON)"),
            ("compact", "fold the log into columnar files (JSON result)"),
            ("delete", "delete the key given as the action body"),
            *FLIGHT_SQL_ACTIONS.items(),
        ]

    @guard
    def do_action(self, context: Any, action: flight.Action) -> list[flight.Result]:
        """Run ``stats``, ``compact``, ``delete`` (one JSON result) or a Flight SQL action."""
        kind = action.type
        body = check_size(action.body.to_pybytes(), "an action body", self.max_request_bytes)
        if kind in FLIGHT_SQL_ACTIONS:
            return self.flight_sql.do_action(kind, body)
        if kind == "stats":
            result: Any = _jsonable(self.db.stats())
        elif kind in ("compact", "delete"):
            self._check_writable()
            if kind == "compact":
                result = self.db.compact()
            else:
                result = {"deleted": self.db.delete(body.decode("utf-8"))}
        else:
            raise InvalidArgumentError(f"unknown action {kind!r}; see list_actions")
        return [flight.Result(pa.py_buffer(json.dumps(result).encode()))]


def _read_pem(path: str | os.PathLike[str]) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 20)
    except OSError as exc:
        raise InvalidArgumentError(f"cannot read the TLS file {path}: {exc}") from exc
    if b"-----BEGIN" not in data:
        raise InvalidArgumentError(f"{path} is not a PEM file")
    return data


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


# -- client ----------------------------------------------------------------------------------


def _raise_syna(exc: flight.FlightError) -> None:
    """Re-raise a server-side synarrow error as its own class."""
    name = "SynaError"
    info = getattr(exc, "extra_info", None)
    if info:
        try:
            name = json.loads(bytes(info)).get("error", name)
        except (ValueError, AttributeError):
            pass
    cls = getattr(errors, name, None)
    if not (isinstance(cls, type) and issubclass(cls, SynaError)):
        if isinstance(exc, (flight.FlightUnavailableError, flight.FlightTimedOutError)):
            raise exc
        cls = SynaError
    message = str(exc).split(". Detail:")[0]
    raise cls(message, hint="") from exc


class FlightClient:
    """A small client for :class:`FlightServer` (any Flight client works; this one is handy).

    >>> with FlightClient("grpc://127.0.0.1:8815") as c:   # doctest: +SKIP
    ...     c.append_batch("sensor/1", [20.5, 20.7])
    ...     c.history("sensor/1").num_rows
    2

    ``timeout`` (seconds) bounds every call; ``token`` is sent as ``authorization: Bearer``;
    ``**kwargs`` go to ``pyarrow.flight.connect`` (``tls_root_certs`` for a self-signed
    server certificate, middleware ...).
    """

    def __init__(
        self,
        location: str = f"grpc://{DEFAULT_HOST}:{DEFAULT_PORT}",
        *,
        timeout: float | None = None,
        token: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.location = location
        headers = [(b"authorization", f"Bearer {token}".encode())] if token else None
        self.options = flight.FlightCallOptions(timeout=timeout, headers=headers)
        self.client = flight.connect(location, **kwargs)

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except flight.FlightError as exc:
            _raise_syna(exc)

    def keys(self, pattern: str | None = None) -> list[str]:
        """The live keys (optionally those matching a glob), from ``list_flights``."""
        infos = self._call(
            lambda: list(
                self.client.list_flights(pattern.encode() if pattern else b"", self.options)
            )
        )
        return [info.descriptor.path[0].decode("utf-8") for info in infos]

    def reader(self, *, key: str | None = None, sql: str | None = None) -> pa.RecordBatchReader:
        """A RecordBatchReader streaming a key's history or a query's result."""
        ticket = flight.Ticket(encode_ticket(key=key, sql=sql))
        return self._call(lambda: self.client.do_get(ticket, self.options).to_reader())

    def history(self, key: str) -> pa.Table:
        """A key's whole history (``ts``, ``value``)."""
        ticket = flight.Ticket(encode_ticket(key=key))
        return self._call(lambda: self.client.do_get(ticket, self.options).read_all())

    def sql(self, query: str) -> pa.Table:
        """The result of a SQL query run by the server (views ``history``, ``latest``)."""
        ticket = flight.Ticket(encode_ticket(sql=query))
        return self._call(lambda: self.client.do_get(ticket, self.options).read_all())

    def put_table(
        self, key: str | None, table: pa.Table, *, batch_rows: int = PUT_BATCH_ROWS
    ) -> int:
        """Send a table (``value`` [, ``ts``] [, ``key`` when ``key`` is None]); returns rows."""
        descriptor = (
            flight.FlightDescriptor.for_path(key)
            if key is not None
            else flight.FlightDescriptor.for_command(b"")
        )

        def put() -> int:
            writer, acks = self.client.do_put(descriptor, table.schema, self.options)
            try:
                writer.write_table(table, max_chunksize=batch_rows)
                writer.done_writing()
                rows = 0
                while True:
                    ack = acks.read()
                    if ack is None:
                        break
                    rows = json.loads(ack.to_pybytes())["rows"]
            finally:
                writer.close()
            return rows

        return self._call(put)  # type: ignore[no-any-return]

    def append_batch(self, key: str, values: Any, *, timestamps: Any = None) -> int:
        """Like :meth:`SynaDB.append_batch <synarrow.SynaDB.append_batch>`, over the wire."""
        from synarrow import inputs
        from synarrow.columnar.schema import ts_array

        if isinstance(values, np.ndarray) and values.ndim == 2:
            flat = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
            arr = pa.FixedSizeListArray.from_arrays(pa.array(flat), values.shape[1])
        elif isinstance(values, (pa.Array, pa.ChunkedArray)):
            arr = values
        else:
            arr = pa.array(values)
        columns = {"value": arr}
        ts = inputs.to_timestamps(timestamps, len(arr))
        if ts is not None:
            columns = {"ts": ts_array(ts), "value": arr}
        return self.put_table(key, pa.table(columns))

    def _action(self, kind: str, body: bytes = b"") -> Any:
        results = self._call(
            lambda: list(self.client.do_action(flight.Action(kind, body), self.options))
        )
        return json.loads(results[0].body.to_pybytes())

    def stats(self) -> dict[str, Any]:
        """The server database's ``stats()``."""
        return self._action("stats")  # type: ignore[no-any-return]

    def compact(self) -> dict[str, Any]:
        """Run ``compact()`` on the server."""
        return self._action("compact")  # type: ignore[no-any-return]

    def delete(self, key: str) -> bool:
        """Delete a key on the server; whether it existed."""
        return bool(self._action("delete", key.encode("utf-8"))["deleted"])

    def close(self) -> None:
        """Close the connection."""
        self.client.close()

    def __enter__(self) -> FlightClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(
    location: str = f"grpc://{DEFAULT_HOST}:{DEFAULT_PORT}",
    *,
    timeout: float | None = None,
    token: str | None = None,
    **kwargs: Any,
) -> FlightClient:
    """A :class:`FlightClient` for a synarrow Flight server."""
    return FlightClient(location, timeout=timeout, token=token, **kwargs)


def serve(db: SynaDB, **options: Any) -> None:
    """Serve ``db`` until shutdown (keyword options as for :class:`FlightServer`)."""
    options.setdefault("port", DEFAULT_PORT)
    FlightServer(db, **options).serve()


__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "FlightClient",
    "FlightServer",
    "connect",
    "decode_ticket",
    "encode_ticket",
    "serve",
]
