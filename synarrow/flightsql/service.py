"""Arrow Flight SQL on top of the synarrow Flight server.

Handled: statement queries (``CommandStatementQuery`` -> ``TicketStatementQuery``),
prepared statements with parameters (``CreatePreparedStatement`` / ``ClosePreparedStatement``
actions, parameters bound by ``DoPut``), the metadata commands (SqlInfo, catalogs, schemas,
tables with their schemas, table types; primary and foreign keys are empty) and bulk ingest
(``CommandStatementIngest``: append to the key named as the table, or to each row's key when
the table is ``history`` and the data has a ``key`` column; all-or-nothing). SQL runs in
read-only sandboxed sessions (``SELECT`` / ``EXPLAIN``); updates are refused.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.flight as flight

from synarrow.errors import InvalidArgumentError, KeyNotFoundError, NotFoundError, ReadOnlyError
from synarrow.flightsql import catalog
from synarrow.flightsql import messages as m
from synarrow.serving.ingest import PutStager
from synarrow.serving.wire import guarded_batches

if TYPE_CHECKING:
    from synarrow.db import SynaDB
    from synarrow.serving.query import QueryRunner

ACTIONS = {
    "CreatePreparedStatement": "prepare a SQL query (Flight SQL)",
    "ClosePreparedStatement": "release a prepared statement (Flight SQL)",
}
MAX_PREPARED = 1024
MAX_PARAMETER_ROWS = 1024

_METADATA = {
    "CommandGetSqlInfo",
    "CommandGetCatalogs",
    "CommandGetDbSchemas",
    "CommandGetTables",
    "CommandGetTableTypes",
    "CommandGetPrimaryKeys",
    "CommandGetExportedKeys",
    "CommandGetImportedKeys",
    "CommandGetCrossReference",
}
_PK_SCHEMA = pa.schema(
    [
        pa.field("catalog_name", pa.utf8()),
        pa.field("db_schema_name", pa.utf8()),
        pa.field("table_name", pa.utf8(), False),
        pa.field("column_name", pa.utf8(), False),
        pa.field("key_name", pa.utf8()),
        pa.field("key_sequence", pa.int32(), False),
    ]
)
_FK_SCHEMA = pa.schema(
    [
        pa.field("pk_catalog_name", pa.utf8()),
        pa.field("pk_db_schema_name", pa.utf8()),
        pa.field("pk_table_name", pa.utf8(), False),
        pa.field("pk_column_name", pa.utf8(), False),
        pa.field("fk_catalog_name", pa.utf8()),
        pa.field("fk_db_schema_name", pa.utf8()),
        pa.field("fk_table_name", pa.utf8(), False),
        pa.field("fk_column_name", pa.utf8(), False),
        pa.field("key_sequence", pa.int32(), False),
        pa.field("fk_key_name", pa.utf8()),
        pa.field("pk_key_name", pa.utf8()),
        pa.field("update_rule", pa.uint8(), False),
        pa.field("delete_rule", pa.uint8(), False),
    ]
)


@dataclass
class _Prepared:
    query: str
    params: list[list[Any]] | None = None


class FlightSqlService:
    """The Flight SQL commands of one server; :class:`~synarrow.flight.FlightServer` routes to it."""

    def __init__(
        self,
        db: SynaDB,
        queries: QueryRunner,
        *,
        readonly: bool,
        max_batch_bytes: int,
        max_put_bytes: int,
    ) -> None:
        self.db = db
        self.queries = queries
        self.readonly = readonly
        self.max_batch_bytes = max_batch_bytes
        self.max_put_bytes = max_put_bytes
        self._prepared: OrderedDict[bytes, _Prepared] = OrderedDict()
        self._lock = threading.Lock()
        self._results = _ResultCache()

    # -- metadata ---------------------------------------------------------------------------

    def _metadata(self, name: str, msg: Any) -> pa.Table:
        if name == "CommandGetSqlInfo":
            return catalog.sql_info(list(msg.info), read_only=self.readonly)
        if name == "CommandGetCatalogs":
            return catalog.catalogs()
        if name == "CommandGetDbSchemas":
            return catalog.db_schemas(_opt(msg, "catalog"), _opt(msg, "db_schema_filter_pattern"))
        if name == "CommandGetTables":
            return catalog.tables(
                self.db,
                self.queries,
                catalog=_opt(msg, "catalog"),
                schema_pattern=_opt(msg, "db_schema_filter_pattern"),
                table_pattern=_opt(msg, "table_name_filter_pattern"),
                table_types=list(msg.table_types),
                include_schema=msg.include_schema,
            )
        if name == "CommandGetTableTypes":
            return catalog.table_types()
        if name == "CommandGetPrimaryKeys":
            return _PK_SCHEMA.empty_table()
        return _FK_SCHEMA.empty_table()  # keys have no foreign keys

    def _metadata_schema(self, name: str, msg: Any) -> pa.Schema:
        fixed = {
            "CommandGetSqlInfo": catalog.SQL_INFO_SCHEMA,
            "CommandGetCatalogs": catalog.CATALOGS_SCHEMA,
            "CommandGetDbSchemas": catalog.DB_SCHEMAS_SCHEMA,
            "CommandGetTableTypes": catalog.TABLE_TYPES_SCHEMA,
            "CommandGetPrimaryKeys": _PK_SCHEMA,
        }
        if name == "CommandGetTables":
            return catalog.TABLES_WITH_SCHEMA if msg.include_schema else catalog.TABLES_SCHEMA
        return fixed.get(name, _FK_SCHEMA)

    # -- queries ----------------------------------------------------------------------------

    def _prepared_statement(self, handle: bytes) -> _Prepared:
        with self._lock:
            prepared = self._prepared.get(handle)
            if prepared is None:
                raise NotFoundError(
                    "unknown or closed prepared statement", hint="prepare the query again"
                )
            self._prepared.move_to_end(handle)
            return prepared

    def _query_of(self, name: str, msg: Any) -> tuple[str, list[list[Any]] | None]:
        if name == "CommandStatementQuery":
            if msg.HasField("transaction_id"):
                raise InvalidArgumentError("this server has no transactions")
            return msg.query, None
        if name == "TicketStatementQuery":
            handle = _handle(msg.statement_handle)
            if "p" not in handle:
                return str(handle["q"]), None
            msg = m.new(
                "CommandPreparedStatementQuery",
                prepared_statement_handle=bytes.fromhex(handle["p"]),
            )
        prepared = self._prepared_statement(msg.prepared_statement_handle)
        return prepared.query, prepared.params

    def flight_info(
        self, name: str, msg: Any, descriptor: flight.FlightDescriptor
    ) -> flight.FlightInfo:
        """GetFlightInfo of a Flight SQL command: its schema and the ticket to fetch it.

        A query runs here already: a result of one small batch is kept for the DoGet of
        its ticket (which then costs no second run); a larger one is streamed by DoGet.
        """
        if name in _METADATA:
            table = self._metadata(name, msg)
            return _info(table.schema, descriptor, m.pack(msg), table.num_rows)
        if name not in ("CommandStatementQuery", "CommandPreparedStatementQuery"):
            raise InvalidArgumentError(f"{name} is not a query; send it with DoPut or DoAction")
        query, params = self._query_of(name, msg)
        if name == "CommandStatementQuery":
            handle: dict[str, Any] = {"q": query}
        else:
            handle = {"p": msg.prepared_statement_handle.hex()}
        if params and len(params) > 1:
            schema, rows = self.queries.schema(query, params[0]), -1
        else:
            schema, small = self.queries.first(query, params[0] if params else None)
            rows = -1 if small is None else small.num_rows
            if small is not None:
                handle["r"] = self._results.put(small)
        ticket = m.pack(m.new("TicketStatementQuery", statement_handle=_encode_handle(handle)))
        return _info(schema, descriptor, ticket, rows)

    def schema(self, name: str, msg: Any) -> pa.Schema:
        """GetSchema of a Flight SQL command."""
        if name in _METADATA:
            return self._metadata_schema(name, msg)
        if name in ("CommandStatementQuery", "CommandPreparedStatementQuery"):
            query, params = self._query_of(name, msg)
            return self.queries.schema(query, params[0] if params else None)
        raise InvalidArgumentError(f"{name} has no result schema")

    def do_get(self, name: str, msg: Any) -> flight.FlightDataStream:
        """DoGet of a ticket this service handed out."""
        if name in _METADATA:
            return flight.RecordBatchStream(self._metadata(name, msg))
        if name not in ("TicketStatementQuery", "CommandPreparedStatementQuery"):
            raise InvalidArgumentError(f"{name} is not a Flight SQL ticket")
        if name == "TicketStatementQuery":
            kept = self._results.take(_handle(msg.statement_handle).get("r"))
            if kept is not None:
                return flight.RecordBatchStream(kept)
        query, params = self._query_of(name, msg)
        if not params:
            schema, batches = self.queries.stream(query)
            return flight.GeneratorStream(schema, guarded_batches(batches))
        # Each bound parameter row runs once; the results follow each other.
        schema, first = self.queries.stream(query, params[0])

        def all_rows() -> Any:
            yield from first
            for row in params[1:]:
                _, more = self.queries.stream(query, row)
                yield from more

        return flight.GeneratorStream(schema, guarded_batches(all_rows()))

    # -- writes -----------------------------------------------------------------------------

    def do_put(
        self,
        name: str,
        msg: Any,
        reader: flight.MetadataRecordBatchReader,
        writer: flight.FlightMetadataWriter,
    ) -> None:
        """DoPut: bind prepared-statement parameters, or ingest rows into keys."""
        if name == "CommandPreparedStatementQuery":
            prepared = self._prepared_statement(msg.prepared_statement_handle)
            prepared.params = self._parameters(reader)
            result = m.new("DoPutPreparedStatementResult")
            result.prepared_statement_handle = msg.prepared_statement_handle
            writer.write(pa.py_buffer(result.SerializeToString()))
            return
        if name == "CommandStatementIngest":
            rows = self._ingest(msg, reader)
            writer.write(
                pa.py_buffer(m.new("DoPutUpdateResult", record_count=rows).SerializeToString())
            )
            return
        if name in ("CommandStatementUpdate", "CommandPreparedStatementUpdate"):
            raise InvalidArgumentError(
                "SQL over this server only reads (SELECT / EXPLAIN)",
                hint="write rows with bulk ingest (adbc_ingest) or plain Flight do_put",
            )
        raise InvalidArgumentError(f"{name} cannot be sent with DoPut")

    def _parameters(self, reader: flight.MetadataRecordBatchReader) -> list[list[Any]]:
        rows: list[list[Any]] = []
        size = 0
        for chunk in reader:
            batch = chunk.data
            if batch is None:
                continue
            size += batch.nbytes
            if size > self.max_batch_bytes or len(rows) + batch.num_rows > MAX_PARAMETER_ROWS:
                raise InvalidArgumentError(
                    f"parameters are limited to {MAX_PARAMETER_ROWS} rows and "
                    f"{self.max_batch_bytes:,} bytes"
                )
            columns = [col.to_pylist() for col in batch.columns]
            rows.extend([list(r) for r in zip(*columns)] if columns else [[]] * batch.num_rows)
        return rows

    def _ingest(self, msg: Any, reader: flight.MetadataRecordBatchReader) -> int:
        if self.readonly:
            raise ReadOnlyError(f"this server exposes {self.db.path} read-only")
        if msg.HasField("transaction_id"):
            raise InvalidArgumentError("this server has no transactions")
        if msg.temporary:
            raise InvalidArgumentError("keys cannot be temporary")
        if _opt(msg, "catalog") not in (None, catalog.CATALOG) or _opt(msg, "schema") not in (
            None,
            catalog.DB_SCHEMA,
        ):
            raise InvalidArgumentError(
                f"ingest targets catalog {catalog.CATALOG!r}, schema {catalog.DB_SCHEMA!r}"
            )
        table = msg.table
        options = msg.table_definition_options
        if options.if_exists == m.TABLE_EXISTS_REPLACE:
            raise InvalidArgumentError(
                "replace is not supported: a key's history is appended to, never swapped",
                hint="delete the key first (the delete action), then ingest",
            )
        many = table.lower() == "history"
        if not many:
            exists = self.db.exists(table)
            if exists and options.if_exists == m.TABLE_EXISTS_FAIL:
                raise InvalidArgumentError(
                    f"key {table!r} already exists", hint="ingest with mode append"
                )
            if not exists and options.if_not_exist == m.TABLE_NOT_EXIST_FAIL:
                raise KeyNotFoundError(f"key {table!r} does not exist")
        stager = PutStager(
            key=None if many else table,
            max_batch_bytes=self.max_batch_bytes,
            max_put_bytes=self.max_put_bytes,
        )
        for chunk in reader:
            if chunk.data is not None:
                stager.add(chunk.data)
        return stager.commit(self.db)

    # -- actions ----------------------------------------------------------------------------

    def do_action(self, kind: str, body: bytes) -> list[flight.Result]:
        """The Flight SQL actions (prepared statements)."""
        unpacked = m.unpack(body)
        if kind == "CreatePreparedStatement":
            if unpacked is None or unpacked[0] != "ActionCreatePreparedStatementRequest":
                raise InvalidArgumentError("CreatePreparedStatement needs its request message")
            request = unpacked[1]
            if request.HasField("transaction_id"):
                raise InvalidArgumentError("this server has no transactions")
            from synarrow.duck import check_statements

            check_statements(request.query, read_only=True)
            try:
                dataset = self.queries.schema(request.query).serialize().to_pybytes()
            except Exception:  # parameters not bound yet: the schema comes with GetFlightInfo
                dataset = b""
            handle = secrets.token_bytes(16)
            with self._lock:
                self._prepared[handle] = _Prepared(request.query)
                while len(self._prepared) > MAX_PREPARED:
                    self._prepared.popitem(last=False)
            result = m.new(
                "ActionCreatePreparedStatementResult",
                prepared_statement_handle=handle,
                dataset_schema=dataset,
            )
            return [flight.Result(pa.py_buffer(m.pack(result)))]
        if kind == "ClosePreparedStatement":
            if unpacked is None or unpacked[0] != "ActionClosePreparedStatementRequest":
                raise InvalidArgumentError("ClosePreparedStatement needs its request message")
            with self._lock:
                self._prepared.pop(unpacked[1].prepared_statement_handle, None)
            return []
        raise InvalidArgumentError(f"unknown Flight SQL action {kind!r}")


class _ResultCache:
    """Small query results computed by GetFlightInfo, each kept for one DoGet of its ticket.

    Bounded in entries and bytes (oldest dropped first); a ticket whose result was dropped
    runs its query again.
    """

    def __init__(self, *, max_entries: int = 256, max_bytes: int = 64 << 20) -> None:
        self._tables: OrderedDict[str, pa.Table] = OrderedDict()
        self._bytes = 0
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._lock = threading.Lock()

    def put(self, table: pa.Table) -> str:
        token = secrets.token_hex(16)
        with self._lock:
            self._tables[token] = table
            self._bytes += table.nbytes
            while self._tables and (
                len(self._tables) > self._max_entries or self._bytes > self._max_bytes
            ):
                _, old = self._tables.popitem(last=False)
                self._bytes -= old.nbytes
        return token

    def take(self, token: Any) -> pa.Table | None:
        if not isinstance(token, str):
            return None
        with self._lock:
            table = self._tables.pop(token, None)
            if table is not None:
                self._bytes -= table.nbytes
            return table


def _encode_handle(handle: dict[str, Any]) -> bytes:
    return json.dumps(handle).encode("utf-8")


def _handle(raw: bytes) -> dict[str, Any]:
    """A statement handle of this server: JSON with the query ("q") or prepared handle ("p")."""
    try:
        handle = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidArgumentError("not a statement handle of this server") from exc
    if not isinstance(handle, dict) or not (
        isinstance(handle.get("q"), str) or isinstance(handle.get("p"), str)
    ):
        raise InvalidArgumentError("not a statement handle of this server")
    return handle


def _opt(msg: Any, name: str) -> str | None:
    """An optional string field: its value when set, else None."""
    return getattr(msg, name) if msg.HasField(name) else None


def _info(
    schema: pa.Schema, descriptor: flight.FlightDescriptor, ticket: bytes, rows: int
) -> flight.FlightInfo:
    return flight.FlightInfo(
        schema, descriptor, [flight.FlightEndpoint(flight.Ticket(ticket), [])], rows, -1
    )


__all__ = ["ACTIONS", "FlightSqlService"]
