"""The columns and directory names of an export: one schema for every database.

Every exported file (Parquet or Arrow) has the same columns, whatever the keys hold::

    key        string, not null      the key, exactly (also in the directory name)
    ts         timestamp[us, UTC]    not null
    value      float64               floats, and ints as doubles (as in the SQL view)
    int_value  int64                 ints, exactly (also above 2**53)
    text       large_string
    bytes      large_binary
    vector     fixed_size_list<float32>[d] when every vector of the export has dimension d,
               else list<float32>
    type       dictionary<int8, string>, not null: null, float, int, text, bytes or vector

So adding a text key to a database of floats does not change the schema downstream jobs see.

Directory names follow Hive's and Spark's escaping, which every engine decodes the same way:
only ``%``, ``/``, ``=``, control characters and ``"#'*:?[\\]^{`` are percent-escaped (one
escape per ASCII character); everything else, non-ASCII letters included, is written as it
is (UTF-8). Spark decodes a percent escape as one character, so escaping the UTF-8 bytes of
``ü`` (as ``urllib.parse.quote`` does) would come back as ``Ã¼`` there.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synarrow.errors import InvalidArgumentError

__all__ = [
    "EXPORT_LAYOUT_VERSION",
    "EXPORT_METADATA_KEY",
    "TS_TYPE",
    "TYPE_NAMES",
    "TYPE_TYPE",
    "VALUE_COLUMNS",
    "Layout",
    "conform",
    "key_array",
    "parquet_options",
    "partition_dir",
    "partition_value",
    "plan_layout",
]

TS_TYPE = pa.timestamp("us", tz="UTC")
#: Schema metadata key every exported file carries (how ``overwrite`` knows an export).
EXPORT_METADATA_KEY = b"synarrow.export"
#: Version of the export layout, the value of :data:`EXPORT_METADATA_KEY`.
EXPORT_LAYOUT_VERSION = 2
VALUE_COLUMNS = ("value", "int_value", "text", "bytes", "vector")
#: The ``type`` column's name for the rows of each value column.
TYPE_NAMES = {
    "value": "float",
    "int_value": "int",
    "text": "text",
    "bytes": "bytes",
    "vector": "vector",
}
_VARIABLE_VECTOR = pa.list_(pa.float32())
#: The ``type`` column: a dictionary of the atom type names (categorical in pandas / polars,
#: a string in Spark and DuckDB). Written from its codes, so Parquet hashes no strings.
TYPE_TYPE = pa.dictionary(pa.int8(), pa.string())
_TYPE_ORDER = ("null", "float", "int", "text", "bytes", "vector")
_TYPE_CODES = {name: i for i, name in enumerate(_TYPE_ORDER)}
# One dictionary for every batch: an Arrow IPC file allows no dictionary replacement.
_TYPE_DICTIONARY = pa.array(_TYPE_ORDER, pa.string())
# Directory names are limited to 255 bytes on common file systems.
_MAX_SEGMENT_BYTES = 255
# Hive's FileUtils.escapePathName set (Spark uses the same one), plus the controls.
_ESCAPED = frozenset("\"#%'*/:=?[\\]^{") | {chr(c) for c in range(0x20)} | {"\x7f"}
# Spark and Hive read this partition value as NULL.
_HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


def partition_value(key: str) -> str:
    """A key as Hive / Spark escape it in a directory name (see the module docstring)."""
    return "".join(f"%{ord(c):02X}" if c in _ESCAPED else c for c in key)


def partition_dir(key: str) -> str:
    """The Hive directory name of a key: ``key=`` and the escaped key.

    >>> partition_dir("sensor/1"), partition_dir("Zürich")
    ('key=sensor%2F1', 'key=Zürich')
    """
    if key == _HIVE_NULL:
        # Escaping cannot help: pyarrow compares the decoded name with it.
        raise InvalidArgumentError(
            f"the key {key!r} is the name Hive, Spark and pyarrow read as a null partition",
            hint="export it with partition_by=None (one file with a key column)",
        )
    segment = "key=" + partition_value(key)
    if len(segment.encode("utf-8")) > _MAX_SEGMENT_BYTES:
        raise InvalidArgumentError(
            f"key {key[:40]!r}... is too long for a directory name once escaped "
            f"({_MAX_SEGMENT_BYTES} bytes at most)",
            hint="export it with partition_by=None (one file with a key column)",
        )
    return segment


@dataclass(frozen=True)
class Layout:
    """The export schema; only the type of ``vector`` depends on the data."""

    vector_type: pa.DataType = field(default=_VARIABLE_VECTOR)

    @property
    def columns(self) -> tuple[str, ...]:
        """The value columns, in file order."""
        return VALUE_COLUMNS

    def schema(self, *, with_key: bool = True) -> pa.Schema:
        """Arrow schema of exported tables (``key`` first when the table carries it)."""
        fields = [pa.field("key", pa.string(), nullable=False)] if with_key else []
        fields += [
            pa.field("ts", TS_TYPE, nullable=False),
            pa.field("value", pa.float64()),
            pa.field("int_value", pa.int64()),
            pa.field("text", pa.large_string()),
            pa.field("bytes", pa.large_binary()),
            pa.field("vector", self.vector_type),
            pa.field("type", TYPE_TYPE, nullable=False),
        ]
        return pa.schema(fields, metadata={EXPORT_METADATA_KEY: str(EXPORT_LAYOUT_VERSION)})


def parquet_options(compression: str | None) -> dict[str, object]:
    """Parquet writer options for the export columns.

    Timestamps and ints are delta-encoded instead of dictionary-encoded (pyarrow's default,
    which builds a dictionary of unique timestamps only to throw it away); the other
    columns keep dictionaries, which suit sensor readings, keys and type names. On the
    benchmark's sensor data the files are about a ninth of the size of pyarrow's defaults.
    Min/max statistics (for pruning row groups) only on the numeric columns: the key is one
    value per file and in its directory name, and string statistics cost a sixth of the
    writing time.
    """
    return {
        "compression": compression,
        "write_statistics": ["ts", "value", "int_value"],
        "use_dictionary": ["key", "value", "type", "text", "bytes"],
        "column_encoding": {"ts": "DELTA_BINARY_PACKED", "int_value": "DELTA_BINARY_PACKED"},
    }


def _kind(t: pa.DataType) -> str | None:
    if pa.types.is_floating(t):
        return "value"
    if pa.types.is_integer(t):
        return "int_value"
    if pa.types.is_large_string(t) or pa.types.is_string(t):
        return "text"
    if pa.types.is_large_binary(t) or pa.types.is_binary(t):
        return "bytes"
    if pa.types.is_fixed_size_list(t) or pa.types.is_large_list(t) or pa.types.is_list(t):
        return "vector"
    return None


def plan_layout(value_types: Iterable[pa.DataType]) -> Layout:
    """The layout for histories whose ``value`` columns have these types.

    ``vector`` keeps its fixed size when every vector has one dimension.
    """
    vectors: set[pa.DataType] = set()
    for t in value_types:
        members = [f.type for f in t] if pa.types.is_struct(t) else [t]
        vectors.update(m for m in members if _kind(m) == "vector")
    if len(vectors) == 1:
        (only,) = vectors
        if pa.types.is_fixed_size_list(only):
            return Layout(pa.list_(pa.float32(), only.list_size))
    return Layout()


def key_array(key: str, n: int) -> pa.Array:
    """A string column repeating ``key`` ``n`` times, built without a Python loop."""
    raw = key.encode("utf-8")
    total = len(raw) * n
    big = total >= 2**31
    offsets = np.arange(n + 1, dtype=np.int64 if big else np.int32) * len(raw)
    arr = pa.Array.from_buffers(
        pa.large_string() if big else pa.string(),
        n,
        [None, pa.py_buffer(offsets), pa.py_buffer(raw * n)],
    )
    return arr if not big else arr.cast(pa.string())


def _parts(values: pa.ChunkedArray) -> dict[str, pa.ChunkedArray | pa.Array]:
    """The value columns present in a history's ``value`` column."""
    t = values.type
    if pa.types.is_null(t):
        return {}
    if not pa.types.is_struct(t):
        kind = _kind(t)
        return {kind: values} if kind is not None else {}
    flat = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    parts: dict[str, pa.ChunkedArray | pa.Array] = {}
    for i, f in enumerate(t):
        kind = _kind(f.type)
        if kind is not None:
            # A null struct row (a None value) leaves its children unset: mask them.
            child = flat.field(i)
            parts[kind] = (
                pc.if_else(flat.is_valid(), child, pa.nulls(1, child.type)[0])
                if flat.null_count
                else child
            )
    return parts


def conform(history: pa.Table, layout: Layout) -> pa.Table:
    """A key's history (``ts``, ``value``) in the export layout, without the ``key`` column.

    Float columns pass through without a copy; ints are converted to doubles for ``value``
    without a range check (exact in ``int_value``).
    """
    n = history.num_rows
    parts = _parts(history.column("value"))
    codes: pa.Array | pa.ChunkedArray
    if len(parts) == 1:
        ((col, arr),) = parts.items()
        code = np.int8(_TYPE_CODES[TYPE_NAMES[col]])
        codes = (
            pa.array(np.full(n, code, dtype=np.int8))
            if not arr.null_count
            else pc.if_else(arr.is_valid(), code, np.int8(0))
        )
    else:
        codes = pa.array(np.zeros(n, dtype=np.int8))  # "null" until a column holds the row
        for col, arr in parts.items():
            codes = pc.if_else(arr.is_valid(), np.int8(_TYPE_CODES[TYPE_NAMES[col]]), codes)
    if "int_value" in parts:
        doubles = pc.cast(parts["int_value"], pa.float64(), safe=False)
        parts["value"] = pc.coalesce(parts["value"], doubles) if "value" in parts else doubles
    schema = layout.schema(with_key=False)
    arrays: list[pa.Array | pa.ChunkedArray] = [history.column("ts")]
    for col in VALUE_COLUMNS:
        target = schema.field(col).type
        arr = parts.get(col)
        if arr is None:
            arrays.append(pa.nulls(n, target))
        elif arr.type != target:
            arrays.append(pc.cast(arr, target))
        else:
            arrays.append(arr)
    if isinstance(codes, pa.ChunkedArray):
        codes = codes.combine_chunks()
    arrays.append(pa.DictionaryArray.from_arrays(codes, _TYPE_DICTIONARY))
    return pa.Table.from_arrays(
        [a if isinstance(a, pa.ChunkedArray) else pa.chunked_array([a]) for a in arrays],
        schema=schema,
    )
