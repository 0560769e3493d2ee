"""Normalising what each engine reads into ``{key: [(ts_us, type, value), ...]}``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa

#: The columns of every exported file, in order (the documented, stable export schema).
EXPORT_COLUMNS = ["key", "ts", "value", "int_value", "text", "bytes", "vector", "type"]


def _py(value: Any) -> Any:
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def cell(kind: str, value: Any, int_value: Any, text: Any, raw: Any, vector: Any) -> Any:
    """The value of one exported row, from the column its ``type`` names."""
    if kind == "float":
        return _py(value)
    if kind == "int":
        return int(_py(int_value))
    if kind == "text":
        return _py(text)
    if kind == "bytes":
        return _py(raw)
    if kind == "vector":
        return [float(x) for x in _py(vector)]
    return None


def rows_by_key(rows: Any) -> dict[str, list[tuple[int, str, Any]]]:
    """``{key: [(ts_us, type, value), ...]}`` sorted by time, from dict-like rows."""
    out: dict[str, list[tuple[int, str, Any]]] = {}
    for r in rows:
        kind = str(r["type"])
        v = cell(kind, r["value"], r["int_value"], r["text"], r["bytes"], r["vector"])
        out.setdefault(str(r["key"]), []).append((int(r["ts"]), kind, v))
    return {k: sorted(v, key=lambda t: t[0]) for k, v in out.items()}


def table_rows(table: pa.Table) -> dict[str, list[tuple[int, str, Any]]]:
    """:func:`rows_by_key` of an Arrow table (``ts`` as a timestamp or as microseconds)."""
    if pa.types.is_timestamp(table.schema.field("ts").type):
        ts = table.column("ts").cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
        table = table.set_column(table.schema.get_field_index("ts"), "ts", ts)
    return rows_by_key(table.to_pylist())
