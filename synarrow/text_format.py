"""Text renderings of Arrow tables: CSV-safe columns and JSON lines.

CSV has no bytes, lists or structs, and JSON no NaN, bytes or timestamps: :func:`to_text_table`
carries bytes as base64 text and vectors as JSON arrays; :func:`json_lines` writes one JSON
object per row with ISO 8601 times. Exports (:mod:`synarrow.export`) and the command line
(:mod:`synarrow.cli`) render text through these.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = ["human_bytes", "json_lines", "json_value", "text_schema", "to_text_table"]


def text_schema(schema: pa.Schema) -> pa.Schema:
    """The schema after :func:`to_text_table`: bytes and vectors become strings."""
    return pa.schema(
        [
            pa.field(f.name, pa.string())
            if _needs_text(f.type) or pa.types.is_dictionary(f.type)
            else f
            for f in schema
        ]
    )


def _needs_text(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_fixed_size_list(t)
        or pa.types.is_list(t)
        or pa.types.is_large_list(t)
        or pa.types.is_struct(t)
    )


def _text_value(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, (bytes, bytearray)):
        return base64.b64encode(v).decode("ascii")
    if isinstance(v, list):
        return json.dumps(v)
    if isinstance(v, dict):
        return json.dumps({k: json_value(x) for k, x in v.items()})
    return v


def to_text_table(table: pa.Table) -> pa.Table:
    """Bytes as base64 text and vectors as JSON arrays, so CSV writers accept every column."""
    cols = []
    for f, col in zip(table.schema, table.columns):
        if _needs_text(f.type):
            col = pa.array([_text_value(v) for v in col.to_pylist()], pa.string())
        elif pa.types.is_dictionary(f.type):
            col = col.cast(f.type.value_type)
        cols.append(col)
    return pa.Table.from_arrays(cols, schema=text_schema(table.schema))


def json_value(v: Any) -> Any:
    """A Python value (as ``to_pylist`` gives) as JSON-ready data: bytes as base64 text,
    times in ISO 8601, NaN / infinity as null, numpy scalars as numbers.

    >>> json_value({"t": b"\\x00\\x01", "x": float("nan"), "v": [1.5]})
    {'t': 'AAE=', 'x': None, 'v': [1.5]}
    """
    if isinstance(v, float) and not np.isfinite(v):
        return None  # JSON has no NaN / Infinity
    if isinstance(v, (bytes, bytearray)):
        return base64.b64encode(v).decode("ascii")
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if isinstance(v, dict):
        return {k: json_value(x) for k, x in v.items()}
    if isinstance(v, list):
        return [json_value(x) for x in v]
    if isinstance(v, (np.generic,)):
        return v.item()
    if hasattr(v, "total_seconds"):
        return v.total_seconds()
    return v


def _json_default(value: Any) -> Any:
    """Values the json module does not know: decimals, intervals, numpy scalars ..."""
    import decimal

    if isinstance(value, decimal.Decimal):
        return float(value)
    converted = json_value(value)
    return converted if converted is not value else str(value)


_ENCODER = json.JSONEncoder(ensure_ascii=False, default=_json_default)


def json_lines(table: pa.Table | pa.RecordBatch, *, chunk_rows: int = 65536) -> Iterator[str]:
    """One JSON object per row (newline-terminated): timestamps in ISO 8601, bytes base64."""
    names = table.schema.names
    for lo in range(0, table.num_rows, chunk_rows):
        part = table.slice(lo, chunk_rows)
        cols = [_json_column(part.column(i)) for i in range(len(names))]
        encode = _ENCODER.encode
        for row in zip(*cols):
            yield encode(dict(zip(names, row))) + "\n"


def _json_column(col: pa.Array | pa.ChunkedArray) -> list[Any]:
    t = col.type
    if pa.types.is_floating(t):
        arr = col.to_numpy(zero_copy_only=False) if not col.null_count else None
        if arr is not None and np.isfinite(arr).all():
            return arr.tolist()  # type: ignore[no-any-return]
    if pa.types.is_integer(t) or pa.types.is_string(t) or pa.types.is_large_string(t):
        return col.to_pylist()  # type: ignore[no-any-return]
    if pa.types.is_timestamp(t):
        if t.tz:
            col = col.cast(pa.timestamp(t.unit, "UTC"))
        strs = pc.strftime(col, format="%Y-%m-%dT%H:%M:%S")
        if t.tz:
            strs = pc.binary_join_element_wise(strs, "+00:00", "")
        return strs.to_pylist()  # type: ignore[no-any-return]
    return [json_value(v) for v in col.to_pylist()]


def human_bytes(n: float) -> str:
    """A byte count for people: ``"512 B"``, ``"1.5 KiB"`` ... up to TiB.

    >>> human_bytes(512), human_bytes(1536), human_bytes(3 * 1024**5)
    ('512 B', '1.5 KiB', '3,072.0 TiB')
    """
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")  # pragma: no cover
