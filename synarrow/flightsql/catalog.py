"""The Flight SQL metadata results: server info, catalogs, schemas, tables and table types.

The database appears as DuckDB names it inside a session: catalog ``temp``, schema
``main``, holding the views ``history`` and ``latest`` (table type ``VIEW``) and one table
per live key (type ``TABLE``, columns ``ts`` and ``value``), so the names a client browses
are names its queries can use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from synarrow.engine.snapshot import ReadSnapshot
from synarrow.errors import InvalidArgumentError
from synarrow.reading import SnapshotSource, history
from synarrow.sql import RESERVED_VIEWS, is_internal_name, naive_ts

if TYPE_CHECKING:
    from synarrow.serving.query import QueryRunner

CATALOG = "temp"
DB_SCHEMA = "main"
TABLE_TYPES = ["TABLE", "VIEW"]
MAX_KEYS_LISTED = 100_000

# SqlInfo ids (Flight SQL specification, enum SqlInfo).
SERVER_NAME = 0
SERVER_VERSION = 1
SERVER_ARROW_VERSION = 2
SERVER_READ_ONLY = 3
SERVER_SQL = 4
SERVER_SUBSTRAIT = 5
SERVER_TRANSACTION = 8
SERVER_CANCEL = 9
SERVER_BULK_INGESTION = 10
SERVER_INGEST_TRANSACTIONS = 11
SERVER_STATEMENT_TIMEOUT = 100
SQL_DDL_CATALOG = 500
SQL_DDL_SCHEMA = 501
SQL_DDL_TABLE = 502
SQL_IDENTIFIER_CASE = 503
SQL_IDENTIFIER_QUOTE_CHAR = 504
SQL_QUOTED_IDENTIFIER_CASE = 505
CASE_INSENSITIVE = 2  # SqlSupportedCaseSensitivity.SQL_CASE_SENSITIVITY_CASE_INSENSITIVE

_SQL_INFO_VALUE = pa.dense_union(
    [
        pa.field("string_value", pa.utf8()),
        pa.field("bool_value", pa.bool_()),
        pa.field("bigint_value", pa.int64()),
        pa.field("int32_bitmask", pa.int32()),
        pa.field("string_list", pa.list_(pa.utf8())),
        pa.field("int32_to_int32_list_map", pa.map_(pa.int32(), pa.list_(pa.int32()))),
    ],
    type_codes=[0, 1, 2, 3, 4, 5],
)
SQL_INFO_SCHEMA = pa.schema(
    [pa.field("info_name", pa.uint32(), nullable=False), pa.field("value", _SQL_INFO_VALUE, False)]
)
CATALOGS_SCHEMA = pa.schema([pa.field("catalog_name", pa.utf8(), nullable=False)])
DB_SCHEMAS_SCHEMA = pa.schema(
    [pa.field("catalog_name", pa.utf8()), pa.field("db_schema_name", pa.utf8(), nullable=False)]
)
_TABLES_FIELDS = [
    pa.field("catalog_name", pa.utf8()),
    pa.field("db_schema_name", pa.utf8()),
    pa.field("table_name", pa.utf8(), nullable=False),
    pa.field("table_type", pa.utf8(), nullable=False),
]
TABLES_SCHEMA = pa.schema(_TABLES_FIELDS)
TABLES_WITH_SCHEMA = pa.schema([*_TABLES_FIELDS, pa.field("table_schema", pa.binary(), False)])
TABLE_TYPES_SCHEMA = pa.schema([pa.field("table_type", pa.utf8(), nullable=False)])


# Longest table / schema filter pattern a client may send (names are at most 64 KiB).
_MAX_PATTERN = 70_000


def sql_info(ids: list[int], *, read_only: bool) -> pa.Table:
    """The SqlInfo rows asked for (all known ones when ``ids`` is empty)."""
    from synarrow import __version__

    known: dict[int, tuple[int, Any]] = {
        SERVER_NAME: (0, "synarrow"),
        SERVER_VERSION: (0, __version__),
        SERVER_ARROW_VERSION: (0, pa.__version__),
        SERVER_READ_ONLY: (1, read_only),
        SERVER_SQL: (1, True),
        SERVER_SUBSTRAIT: (1, False),
        SERVER_TRANSACTION: (3, 0),  # SQL_SUPPORTED_TRANSACTION_NONE
        SERVER_CANCEL: (1, False),
        SERVER_BULK_INGESTION: (1, not read_only),
        SERVER_INGEST_TRANSACTIONS: (1, False),
        SERVER_STATEMENT_TIMEOUT: (3, 0),
        SQL_DDL_CATALOG: (1, False),
        SQL_DDL_SCHEMA: (1, False),
        SQL_DDL_TABLE: (1, False),
        SQL_IDENTIFIER_CASE: (3, CASE_INSENSITIVE),
        SQL_IDENTIFIER_QUOTE_CHAR: (0, '"'),
        SQL_QUOTED_IDENTIFIER_CASE: (3, CASE_INSENSITIVE),
    }
    rows = [(i, known[i]) for i in (ids or sorted(known)) if i in known]
    children: list[list[Any]] = [[] for _ in range(6)]
    codes, offsets = [], []
    for _, (code, value) in rows:
        codes.append(code)
        offsets.append(len(children[code]))
        children[code].append(value)
    arrays = [
        pa.array(values, type=_SQL_INFO_VALUE.field(code).type)
        for code, values in enumerate(children)
    ]
    union = pa.UnionArray.from_dense(
        pa.array(codes, pa.int8()),
        pa.array(offsets, pa.int32()),
        arrays,
        [f.name for f in _SQL_INFO_VALUE],
        list(range(6)),
    )
    return pa.Table.from_arrays(
        [pa.array([i for i, _ in rows], pa.uint32()), union], schema=SQL_INFO_SCHEMA
    )


def like(pattern: str | None) -> str | None:
    """A Flight SQL filter pattern (``%`` any run, ``_`` any one character), checked."""
    if pattern is None:
        return None
    if len(pattern) > _MAX_PATTERN:
        raise InvalidArgumentError(
            f"a filter pattern of {len(pattern)} characters is longer than {_MAX_PATTERN}"
        )
    return pattern


def matching(values: list[str], pattern: str | None) -> list[bool]:
    """Which ``values`` match a LIKE ``pattern``, in linear time (RE2 through Arrow, never a
    backtracking regex a crafted pattern could make exponential)."""
    if pattern is None:
        return [True] * len(values)
    if not values:
        return []
    return pc.match_like(pa.array(values, pa.large_string()), pattern).to_pylist()


def _matches(value: str, pattern: str | None) -> bool:
    return matching([value], pattern)[0]


def catalogs() -> pa.Table:
    """GetCatalogs: the one catalog."""
    return pa.Table.from_pylist([{"catalog_name": CATALOG}], schema=CATALOGS_SCHEMA)


def db_schemas(catalog: str | None, schema_pattern: str | None) -> pa.Table:
    """GetDbSchemas: the one schema, if it passes the filters."""
    rows = []
    if catalog in (None, CATALOG) and _matches(DB_SCHEMA, like(schema_pattern)):
        rows.append({"catalog_name": CATALOG, "db_schema_name": DB_SCHEMA})
    return pa.Table.from_pylist(rows, schema=DB_SCHEMAS_SCHEMA)


def tables(
    db: SnapshotSource,
    queries: QueryRunner,
    *,
    catalog: str | None,
    schema_pattern: str | None,
    table_pattern: str | None,
    table_types: list[str],
    include_schema: bool,
) -> pa.Table:
    """GetTables: the views and the keys that pass the filters, with their Arrow schemas."""
    out_schema = TABLES_WITH_SCHEMA if include_schema else TABLES_SCHEMA
    if catalog not in (None, CATALOG) or not _matches(DB_SCHEMA, like(schema_pattern)):
        return out_schema.empty_table()
    wanted = {t.upper() for t in table_types} or set(TABLE_TYPES)
    name_re = like(table_pattern)
    found: list[tuple[str, str]] = []
    if "VIEW" in wanted:
        views = sorted(RESERVED_VIEWS)
        found += [(v, "VIEW") for v, ok in zip(views, matching(views, name_re)) if ok]
    snapshot = db.read_snapshot()  # every key and schema as of one moment
    if "TABLE" in wanted:
        keys = list(snapshot)[:MAX_KEYS_LISTED]
        names = [k for k in keys if not is_internal_name(k)]
        found += [(k, "TABLE") for k, ok in zip(names, matching(names, name_re)) if ok]
    rows = []
    for name, kind in found:
        row: dict[str, Any] = {
            "catalog_name": CATALOG,
            "db_schema_name": DB_SCHEMA,
            "table_name": name,
            "table_type": kind,
        }
        if include_schema:
            schema = _table_schema(snapshot, queries, name, kind)
            row["table_schema"] = schema.serialize().to_pybytes()
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=out_schema)


def _table_schema(snapshot: ReadSnapshot, queries: QueryRunner, name: str, kind: str) -> pa.Schema:
    if kind == "VIEW":
        return queries.schema(f'SELECT * FROM "{name}"')
    return naive_ts(history(snapshot.keys[name]).slice(0, 0)).schema


def table_types() -> pa.Table:
    """GetTableTypes."""
    return pa.Table.from_pylist([{"table_type": t} for t in TABLE_TYPES], schema=TABLE_TYPES_SCHEMA)


__all__ = [
    "CATALOG",
    "DB_SCHEMA",
    "catalogs",
    "db_schemas",
    "like",
    "sql_info",
    "table_types",
    "tables",
]
