"""The Arrow Flight SQL protocol messages, built at import time from their field numbers.

Flight SQL commands travel as ``google.protobuf.Any`` messages inside Flight descriptors,
tickets and action bodies. The message classes here are made with ``descriptor_pb2`` and
``message_factory`` from a table of names and field numbers written from the public
specification (``FlightSql.proto`` of Apache Arrow), so no generated code or ``.proto`` file
is shipped. Only the messages a server needs are declared; a message with more fields than
declared still parses (protobuf keeps unknown fields).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "arrow.flight.protocol.sql"
TYPE_URL_PREFIX = f"type.googleapis.com/{PACKAGE}."

_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "string": _F.TYPE_STRING,
    "bytes": _F.TYPE_BYTES,
    "bool": _F.TYPE_BOOL,
    "uint32": _F.TYPE_UINT32,
    "int32": _F.TYPE_INT32,
    "int64": _F.TYPE_INT64,
}

# name -> [(field, number, type, flags)]; flags: "optional" (proto3 explicit presence),
# "repeated"; a type not in _SCALARS names an enum ("enum:...") or a message of this package.
_MESSAGES: dict[str, list[tuple[str, int, str, str]]] = {
    "CommandGetSqlInfo": [("info", 1, "uint32", "repeated")],
    "CommandGetXdbcTypeInfo": [("data_type", 1, "int32", "optional")],
    "CommandGetCatalogs": [],
    "CommandGetDbSchemas": [
        ("catalog", 1, "string", "optional"),
        ("db_schema_filter_pattern", 2, "string", "optional"),
    ],
    "CommandGetTables": [
        ("catalog", 1, "string", "optional"),
        ("db_schema_filter_pattern", 2, "string", "optional"),
        ("table_name_filter_pattern", 3, "string", "optional"),
        ("table_types", 4, "string", "repeated"),
        ("include_schema", 5, "bool", ""),
    ],
    "CommandGetTableTypes": [],
    "CommandGetPrimaryKeys": [
        ("catalog", 1, "string", "optional"),
        ("db_schema", 2, "string", "optional"),
        ("table", 3, "string", ""),
    ],
    "CommandGetExportedKeys": [
        ("catalog", 1, "string", "optional"),
        ("db_schema", 2, "string", "optional"),
        ("table", 3, "string", ""),
    ],
    "CommandGetImportedKeys": [
        ("catalog", 1, "string", "optional"),
        ("db_schema", 2, "string", "optional"),
        ("table", 3, "string", ""),
    ],
    "CommandGetCrossReference": [
        ("pk_catalog", 1, "string", "optional"),
        ("pk_db_schema", 2, "string", "optional"),
        ("pk_table", 3, "string", ""),
        ("fk_catalog", 4, "string", "optional"),
        ("fk_db_schema", 5, "string", "optional"),
        ("fk_table", 6, "string", ""),
    ],
    "ActionCreatePreparedStatementRequest": [
        ("query", 1, "string", ""),
        ("transaction_id", 2, "bytes", "optional"),
    ],
    "ActionCreatePreparedStatementResult": [
        ("prepared_statement_handle", 1, "bytes", ""),
        ("dataset_schema", 2, "bytes", ""),
        ("parameter_schema", 3, "bytes", ""),
    ],
    "ActionClosePreparedStatementRequest": [("prepared_statement_handle", 1, "bytes", "")],
    "CommandStatementQuery": [
        ("query", 1, "string", ""),
        ("transaction_id", 2, "bytes", "optional"),
    ],
    "TicketStatementQuery": [("statement_handle", 1, "bytes", "")],
    "CommandPreparedStatementQuery": [("prepared_statement_handle", 1, "bytes", "")],
    "CommandStatementUpdate": [
        ("query", 1, "string", ""),
        ("transaction_id", 2, "bytes", "optional"),
    ],
    "CommandPreparedStatementUpdate": [("prepared_statement_handle", 1, "bytes", "")],
    "TableDefinitionOptions": [
        ("if_not_exist", 1, "int32", ""),  # enum TableNotExistOption (same wire type)
        ("if_exists", 2, "int32", ""),  # enum TableExistsOption
    ],
    "CommandStatementIngest": [
        ("table_definition_options", 1, "TableDefinitionOptions", ""),
        ("table", 2, "string", ""),
        ("schema", 3, "string", "optional"),
        ("catalog", 4, "string", "optional"),
        ("temporary", 5, "bool", ""),
        ("transaction_id", 6, "bytes", "optional"),
    ],
    "DoPutUpdateResult": [("record_count", 1, "int64", "")],
    "DoPutPreparedStatementResult": [("prepared_statement_handle", 1, "bytes", "optional")],
}
# The nested message's real name in the specification (its wire format does not depend on it).
_NESTED = {"TableDefinitionOptions": "CommandStatementIngest.TableDefinitionOptions"}

# TableDefinitionOptions values.
TABLE_NOT_EXIST_CREATE = 1
TABLE_NOT_EXIST_FAIL = 2
TABLE_EXISTS_FAIL = 1
TABLE_EXISTS_APPEND = 2
TABLE_EXISTS_REPLACE = 3


def _file() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(
        name="synarrow/flightsql.proto", package=PACKAGE, syntax="proto3"
    )
    for name, fields in _MESSAGES.items():
        msg = proto.message_type.add(name=name)
        for field, number, kind, flags in fields:
            f = msg.field.add(name=field, number=number, json_name=field)
            f.label = _F.LABEL_REPEATED if flags == "repeated" else _F.LABEL_OPTIONAL
            if kind in _SCALARS:
                f.type = _SCALARS[kind]
            else:
                f.type = _F.TYPE_MESSAGE
                f.type_name = f".{PACKAGE}.{kind}"
            if flags == "optional":
                # proto3 `optional`: a synthetic one-field oneof gives the field presence.
                f.proto3_optional = True
                f.oneof_index = len(msg.oneof_decl)
                msg.oneof_decl.add(name=f"_{field}")
    return proto


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())
_CLASSES: dict[str, Any] = {
    name: message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{PACKAGE}.{name}"))
    for name in _MESSAGES
}


def new(name: str, **fields: Any) -> Any:
    """A new Flight SQL message, such as ``new("CommandStatementQuery", query="SELECT 1")``."""
    return _CLASSES[name](**fields)


def pack(message: Any) -> bytes:
    """``message`` wrapped in a ``google.protobuf.Any`` and serialized (Flight SQL's framing)."""
    wrapper = any_pb2.Any()
    wrapper.Pack(message)
    return wrapper.SerializeToString()  # type: ignore[no-any-return]


def type_url(name: str) -> str:
    """The ``Any.type_url`` of a Flight SQL message, as clients send it."""
    return TYPE_URL_PREFIX + _NESTED.get(name, name)


_BY_URL = {type_url(name): name for name in _MESSAGES}


def unpack(raw: bytes) -> tuple[str, Any] | None:
    """``(message name, message)`` if ``raw`` is a serialized Any of a Flight SQL message.

    ``None`` for anything else (a plain synarrow ticket or command); a Flight SQL message
    this server does not know raises ``ValueError`` with its type URL.
    """
    if not raw or raw[:1] != b"\n":  # field 1 (type_url), length-delimited
        return None
    wrapper = any_pb2.Any()
    try:
        wrapper.ParseFromString(raw)
    except Exception:  # DecodeError: not protobuf at all, so not Flight SQL
        return None
    url = wrapper.type_url
    if not url.startswith(TYPE_URL_PREFIX):
        return None
    name = _BY_URL.get(url)
    if name is None:
        raise ValueError(f"unsupported Flight SQL message {url[len(TYPE_URL_PREFIX) :]}")
    message = _CLASSES[name]()
    message.ParseFromString(wrapper.value)
    return name, message


__all__ = [
    "PACKAGE",
    "TABLE_EXISTS_APPEND",
    "TABLE_EXISTS_FAIL",
    "TABLE_EXISTS_REPLACE",
    "TABLE_NOT_EXIST_CREATE",
    "TABLE_NOT_EXIST_FAIL",
    "new",
    "pack",
    "type_url",
    "unpack",
]
