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

from synarrow.columnar.schema import TS_TYPE, string_array
from synarrow.errors import InvalidArgumentError
from synarrow.log.format import ATOM_NAMES, Atom

__all__ = [
    "COLUMNS",
    "EXPORT_LAYOUT_VERSION",
    "EXPORT_METADATA_KEY",
    "NAIVE_TS_TYPE",
    "TYPE_NAMES",
    "TYPE_ORDER",
    "TYPE_TYPE",
    "VALUE_COLUMNS",
    "Layout",
    "ValueColumn",
    "atom_of_type",
    "column_of_type",
    "conform",
    "key_array",
    "parquet_options",
    "partition_dir",
    "partition_value",
    "plan_layout",
]

#: ``ts`` as SQL sees it: ``timestamp[us]`` without a zone, holding UTC (a zero-copy view of
#: the stored :data:`~synarrow.columnar.schema.TS_TYPE`; DuckDB reads it as ``TIMESTAMP``).
NAIVE_TS_TYPE = pa.timestamp("us")


@dataclass(frozen=True)
class ValueColumn:
    """One value column of the SQL ``history`` / ``latest`` views and of every export."""

    name: str
    """The column's name."""
    atom: str
    """The atom type (a name of :data:`synarrow.log.format.ATOM_NAMES`) of the rows it holds;
    the row's ``type``."""
    arrow_type: pa.DataType
    """Its Arrow type in exports (``vector``: the variable-size form, see :class:`Layout`)."""
    sql_type: str
    """Its DuckDB type in the SQL views."""
    also: tuple[str, ...] = ()
    """Other atom types converted into it (ints as doubles in ``value``)."""

    def holds(self, atom: str) -> bool:
        """Whether values of atom type ``atom`` appear in this column."""
        return atom == self.atom or atom in self.also


_NAMES = ATOM_NAMES
_VARIABLE_VECTOR = pa.list_(pa.float32())
#: The value columns, in file (and view) order: the one table SQL and export both follow.
COLUMNS = (
    ValueColumn("value", _NAMES[Atom.FLOAT], pa.float64(), "DOUBLE", also=(_NAMES[Atom.INT],)),
    ValueColumn("int_value", _NAMES[Atom.INT], pa.int64(), "BIGINT"),
    ValueColumn("text", _NAMES[Atom.TEXT], pa.large_string(), "VARCHAR"),
    ValueColumn("bytes", _NAMES[Atom.BYTES], pa.large_binary(), "BLOB"),
    ValueColumn("vector", _NAMES[Atom.VECTOR], _VARIABLE_VECTOR, "FLOAT[]"),
)
VALUE_COLUMNS = tuple(c.name for c in COLUMNS)
#: The ``type`` column's name for the rows of each value column.
TYPE_NAMES = {c.name: c.atom for c in COLUMNS}
_COLUMN_OF_ATOM = {c.atom: c.name for c in COLUMNS}
#: Every atom type name in the order of the atom codes (``null`` first).
TYPE_ORDER = tuple(ATOM_NAMES[a] for a in sorted(Atom))


def atom_of_type(t: pa.DataType) -> str | None:
    """The atom type name of values of the (non-struct) Arrow type ``t``, None if none is.

    Accepts the stored types and the ones other engines write (``string``, ``binary``,
    ``list<float>`` ...).

    >>> atom_of_type(pa.float64()), atom_of_type(pa.large_string()), atom_of_type(pa.null())
    ('float', 'text', 'null')
    """
    if pa.types.is_floating(t):
        return _NAMES[Atom.FLOAT]
    if pa.types.is_integer(t):
        return _NAMES[Atom.INT]
    if pa.types.is_large_string(t) or pa.types.is_string(t):
        return _NAMES[Atom.TEXT]
    if pa.types.is_large_binary(t) or pa.types.is_binary(t):
        return _NAMES[Atom.BYTES]
    if pa.types.is_fixed_size_list(t) or pa.types.is_large_list(t) or pa.types.is_list(t):
        return _NAMES[Atom.VECTOR]
    if pa.types.is_null(t):
        return _NAMES[Atom.NULL]
    return None


def column_of_type(t: pa.DataType) -> str | None:
    """The value column that holds values of Arrow type ``t`` (None for nulls and others)."""
    atom = atom_of_type(t)
    return None if atom is None else _COLUMN_OF_ATOM.get(atom)


#: Schema metadata key every exported file carries (how ``overwrite`` knows an export).
EXPORT_METADATA_KEY = b"synarrow.export"
#: Version of the export layout, the value of :data:`EXPORT_METADATA_KEY`.
EXPORT_LAYOUT_VERSION = 2
#: The ``type`` column: a dictionary of the atom type names (categorical in pandas / polars,
#: a string in Spark and DuckDB). Written from its codes, so Parquet hashes no strings.
TYPE_TYPE = pa.dictionary(pa.int8(), pa.string())
_TYPE_CODES = {name: i for i, name in enumerate(TYPE_ORDER)}
# One dictionary for every batch: an Arrow IPC file allows no dictionary replacement.
# (Built from buffers: pa.array imports pandas on first use, which SQL must not pay for.)
_TYPE_DICTIONARY = string_array(TYPE_ORDER).cast(pa.string())
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
        fields.append(pa.field("ts", TS_TYPE, nullable=False))
        fields += [
            pa.field(c.name, self.vector_type if c.name == "vector" else c.arrow_type)
            for c in COLUMNS
        ]
        fields.append(pa.field("type", TYPE_TYPE, nullable=False))
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


def plan_layout(value_types: Iterable[pa.DataType]) -> Layout:
    """The layout for histories whose ``value`` columns have these types.

    ``vector`` keeps its fixed size when every vector has one dimension.
    """
    vectors: set[pa.DataType] = set()
    for t in value_types:
        members = [f.type for f in t] if pa.types.is_struct(t) else [t]
        vectors.update(m for m in members if column_of_type(m) == "vector")
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
        kind = column_of_type(t)
        return {kind: values} if kind is not None else {}
    flat = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    parts: dict[str, pa.ChunkedArray | pa.Array] = {}
    for i, f in enumerate(t):
        kind = column_of_type(f.type)
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
