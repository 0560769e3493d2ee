"""A database over Arrow Flight: any Arrow Flight client (C++, Rust, Java, Go, JS, Python)
reads and writes it as Arrow record batches.

Server (``synarrow serve data.db`` runs one)::

    server = FlightServer(db)                      # grpc://127.0.0.1:<free port>
    server.serve()                                 # blocks until shutdown() or SIGINT / SIGTERM

Protocol:

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
    Appends every batch to the key named by the path descriptor ``[key]``: a column ``value``
    and optionally ``ts`` (timestamps, or int64 microseconds since the epoch). Without a path,
    batches need a ``key`` column and rows go to their keys. Each batch is acknowledged with
    metadata ``{"rows": <rows appended so far>}``; the last message carries the total, sent
    once every row is in the log.
``do_action``
    ``stats``, ``compact`` and ``delete`` (body: the key) return JSON.

Errors reach clients as Flight errors whose ``extra_info`` names the synarrow error class;
:class:`FlightClient` raises that class again.
"""

from __future__ import annotations

import dataclasses
import json
import queue
import threading
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.flight as flight

from synarrow import errors
from synarrow.errors import InvalidArgumentError, InvalidValueError, ReadOnlyError, SynaError

if TYPE_CHECKING:
    from synarrow.db import SynaDB

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8815
# Batches of about this size stream fastest on loopback (whole-history messages stall gRPC).
STREAM_BATCH_BYTES = 8 * 1024 * 1024
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


def _batches(table: pa.Table, batch_bytes: int = STREAM_BATCH_BYTES) -> pa.Table:
    """The table re-cut into zero-copy slices of about ``batch_bytes``."""
    if table.num_rows == 0:
        return table
    row_bytes = max(1, table.nbytes // table.num_rows)
    rows = max(1024, batch_bytes // row_bytes)
    return pa.Table.from_batches(table.to_batches(max_chunksize=rows), table.schema)


def _flight_error(exc: BaseException) -> flight.FlightError:
    """A Flight error carrying the message and the synarrow class name (no traceback)."""
    name = type(exc).__name__
    extra = json.dumps({"error": name}).encode()
    if isinstance(exc, ReadOnlyError):
        return flight.FlightUnauthorizedError(str(exc), extra)
    if isinstance(exc, SynaError):
        return flight.FlightServerError(str(exc), extra)
    if isinstance(exc, (pa.ArrowInvalid, pa.ArrowTypeError, ValueError, TypeError)):
        return flight.FlightServerError(
            f"{name}: {exc}", json.dumps({"error": "SynaError"}).encode()
        )
    return flight.FlightInternalError(f"{name}: {exc}", extra)


def _guard(fn: Any) -> Any:
    """Turn exceptions of a handler into clean Flight errors."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except flight.FlightError:
            raise
        except Exception as exc:
            raise _flight_error(exc) from exc

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


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


def _ts_array(col: Any) -> Any:
    from synarrow.export import to_ts_column

    return to_ts_column(col, "us")


class FlightServer(flight.FlightServerBase):  # type: ignore[misc]
    """An Arrow Flight server over one open :class:`~synarrow.SynaDB`.

    >>> with synarrow.SynaDB("data.db") as db:              # doctest: +SKIP
    ...     server = FlightServer(db, port=8815)
    ...     server.serve()

    Args:
        db: the database; the caller keeps it open while the server runs and closes it after.
        host: the interface to listen on: loopback by default, so nothing outside this
            machine can connect. ``"0.0.0.0"`` listens everywhere (there is no
            authentication: put it behind TLS and auth middleware before doing that).
        port: the TCP port; 0 picks a free one (see :attr:`port`).
        readonly: refuse ``do_put`` and the writing actions (always true for a read-only db).
        **kwargs: passed to ``pyarrow.flight.FlightServerBase`` (``tls_certificates``,
            ``auth_handler``, ``middleware`` ...).
    """

    def __init__(
        self,
        db: SynaDB,
        *,
        host: str = DEFAULT_HOST,
        port: int = 0,
        readonly: bool = False,
        **kwargs: Any,
    ) -> None:
        self.db = db
        self.host = host
        self.readonly = readonly or db.readonly
        super().__init__(f"grpc+tcp://{host}:{port}", **kwargs)
        self._thread: threading.Thread | None = None

    @property
    def location(self) -> str:
        """The URI clients connect to, such as ``grpc://127.0.0.1:8815``."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"grpc://{host}:{self.port}"

    def serve_in_thread(self) -> FlightServer:
        """Serve from a daemon thread (for tests and notebooks); returns ``self``."""
        self._thread = threading.Thread(target=self.serve, name="synarrow-flight", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Shut the server down and wait for its thread, if it has one."""
        self.shutdown()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> FlightServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- reading ---------------------------------------------------------------------------

    def _table(self, request: dict[str, str]) -> pa.Table:
        if "key" in request:
            return self.db.get_history(request["key"])
        return self.db.sql(request["sql"])

    def _info(self, request: dict[str, str], table: pa.Table) -> flight.FlightInfo:
        if "key" in request:
            descriptor = flight.FlightDescriptor.for_path(request["key"])
        else:
            descriptor = flight.FlightDescriptor.for_command(encode_ticket(sql=request["sql"]))
        ticket = flight.Ticket(encode_ticket(**request))
        return flight.FlightInfo(
            table.schema, descriptor, [flight.FlightEndpoint(ticket, [])], table.num_rows, -1
        )

    @_guard
    def list_flights(self, context: Any, criteria: bytes) -> list[flight.FlightInfo]:
        """One FlightInfo per live key (``criteria``: an optional glob pattern)."""
        pattern = criteria.decode("utf-8") if criteria else None
        infos = []
        for key in self.db.keys(pattern or None):
            try:
                table = self.db.get_history(key)
            except errors.KeyNotFoundError:
                continue  # deleted meanwhile
            infos.append(self._info({"key": key}, table))
        return infos

    @_guard
    def get_flight_info(
        self, context: Any, descriptor: flight.FlightDescriptor
    ) -> flight.FlightInfo:
        """Schema, row count and ticket of a key (path) or a query (command)."""
        request = _descriptor_request(descriptor)
        return self._info(request, self._table(request))

    @_guard
    def get_schema(self, context: Any, descriptor: flight.FlightDescriptor) -> flight.SchemaResult:
        """The schema of a key's history or of a query's result."""
        return flight.SchemaResult(self._table(_descriptor_request(descriptor)).schema)

    @_guard
    def do_get(self, context: Any, ticket: flight.Ticket) -> flight.RecordBatchStream:
        """Stream a key's history or a query's result, in zero-copy ~8 MiB batches."""
        return flight.RecordBatchStream(_batches(self._table(decode_ticket(ticket.ticket))))

    # -- writing ---------------------------------------------------------------------------

    @_guard
    def do_put(
        self,
        context: Any,
        descriptor: flight.FlightDescriptor,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.FlightMetadataWriter,
    ) -> None:
        """Append each incoming batch (``value`` [, ``ts``] [, ``key``]) with append_batch."""
        if self.readonly:
            raise ReadOnlyError(f"this server exposes {self.db.path} read-only")
        key: str | None = None
        if descriptor.descriptor_type == flight.DescriptorType.PATH or descriptor.command:
            key = _descriptor_request(descriptor).get("key")
            if key is None:
                raise InvalidArgumentError("do_put needs a path descriptor naming the key")
        # Appending runs on a second thread so the next batch is received (and decoded by
        # gRPC) while this one is encoded into the log: the two overlap on separate cores.
        pending: queue.Queue[pa.RecordBatch | None] = queue.Queue(maxsize=4)
        state: dict[str, Any] = {"rows": 0, "error": None}

        def append_all() -> None:
            while True:
                batch = pending.get()
                if batch is None:
                    return
                if state["error"] is None:
                    try:
                        state["rows"] += self._append(key, batch)
                    except BaseException as exc:
                        state["error"] = exc

        worker = threading.Thread(target=append_all, name="synarrow-flight-put", daemon=True)
        worker.start()
        try:
            for chunk in reader:
                if state["error"] is not None:
                    break
                if chunk.data is not None:
                    pending.put(chunk.data)
                    writer.write(pa.py_buffer(json.dumps({"rows": state["rows"]}).encode()))
        finally:
            pending.put(None)
            worker.join()
        if state["error"] is not None:
            raise state["error"]
        writer.write(pa.py_buffer(json.dumps({"rows": state["rows"]}).encode()))

    def _append(self, key: str | None, batch: pa.RecordBatch) -> int:
        names = batch.schema.names
        if "value" not in names:
            raise InvalidValueError(f"a put batch needs a 'value' column, got {names}")
        if key is not None:
            return self._append_key(key, batch)
        if "key" not in names:
            raise InvalidValueError("without a key in the descriptor, batches need a 'key' column")
        from synarrow.export import split_by_key

        table = pa.Table.from_batches([batch])
        return sum(self._append_key(k, part) for k, part in split_by_key(table))

    def _append_key(self, key: str, batch: pa.RecordBatch | pa.Table) -> int:
        values = batch.column("value")
        ts = batch.column("ts") if "ts" in batch.schema.names else None
        if ts is not None and not pa.types.is_timestamp(ts.type):
            ts = _ts_array(ts)
        return self.db.append_batch(key, values, timestamps=ts)

    # -- actions ---------------------------------------------------------------------------

    def list_actions(self, context: Any) -> list[tuple[str, str]]:
        """The actions this server understands."""
        return [
            ("stats", "counts and sizes of the database (JSON)"),
            ("compact", "fold the log into columnar files (JSON result)"),
            ("delete", "delete the key given as the action body"),
        ]

    @_guard
    def do_action(self, context: Any, action: flight.Action) -> list[flight.Result]:
        """Run ``stats``, ``compact`` or ``delete``; one JSON result."""
        kind = action.type
        if kind == "stats":
            result: Any = _jsonable(self.db.stats())
        elif kind in ("compact", "delete"):
            if self.readonly:
                raise ReadOnlyError(f"this server exposes {self.db.path} read-only")
            if kind == "compact":
                result = self.db.compact()
            else:
                body = action.body.to_pybytes().decode("utf-8")
                result = {"deleted": self.db.delete(body)}
        else:
            raise InvalidArgumentError(f"unknown action {kind!r}; see list_actions")
        return [flight.Result(pa.py_buffer(json.dumps(result).encode()))]


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
    if cls is None and name == "SQLError":
        from synarrow.sql import SQLError

        cls = SQLError
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

    ``timeout`` (seconds) bounds every call; ``**kwargs`` go to ``pyarrow.flight.connect``
    (TLS roots, middleware ...).
    """

    def __init__(
        self,
        location: str = f"grpc://{DEFAULT_HOST}:{DEFAULT_PORT}",
        *,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        self.location = location
        self.options = flight.FlightCallOptions(timeout=timeout)
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
        from synarrow import _arrow
        from synarrow.columnar.schema import ts_array

        if isinstance(values, np.ndarray) and values.ndim == 2:
            flat = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
            arr = pa.FixedSizeListArray.from_arrays(pa.array(flat), values.shape[1])
        elif isinstance(values, (pa.Array, pa.ChunkedArray)):
            arr = values
        else:
            arr = pa.array(values)
        columns = {"value": arr}
        ts = _arrow.to_timestamps(timestamps, len(arr))
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
    **kwargs: Any,
) -> FlightClient:
    """A :class:`FlightClient` for a synarrow Flight server."""
    return FlightClient(location, timeout=timeout, **kwargs)


def serve(
    db: SynaDB, *, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, readonly: bool = False
) -> None:
    """Serve ``db`` until SIGINT / SIGTERM (what ``synarrow serve`` runs)."""
    server = FlightServer(db, host=host, port=port, readonly=readonly)
    server.serve()


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
