"""The Arrow schema of a key's history, and the assembly of history chunks into a table.

A history is a table ``ts`` (``timestamp[us, tz=UTC]``) and ``value``. The type of ``value``:

* one atom type: its natural Arrow type (float64, int64, large_string, large_binary,
  ``fixed_size_list<float32>[dim]``); ``None`` values are nulls of that type;
* vectors of several dimensions: ``large_list<float32>``;
* several atom types: a struct with one nullable field per type present (``float``, ``int``,
  ``text``, ``bytes``, ``vector``) and exactly one field set per row, which DuckDB, pandas
  and polars all read (Arrow unions are not readable by all three);
* only ``None`` values: the null type.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from synarrow.log.format import ATOM_NAMES, Atom
from synarrow.log.memtable import TailChunk

__all__ = [
    "ATOM_ARROW_TYPES",
    "TS_TYPE",
    "VARIABLE_VECTOR_TYPE",
    "conform",
    "history_table",
    "numeric_array",
    "numpy_dtype",
    "string_array",
    "ts_array",
    "value_type",
]

TS_TYPE = pa.timestamp("us", tz="UTC")

ATOM_ARROW_TYPES: dict[Atom, pa.DataType] = {
    Atom.NULL: pa.null(),
    Atom.FLOAT: pa.float64(),
    Atom.INT: pa.int64(),
    Atom.TEXT: pa.large_string(),
    Atom.BYTES: pa.large_binary(),
}
VARIABLE_VECTOR_TYPE = pa.large_list(pa.float32())


_NUMPY_DTYPES = {
    pa.int8(): np.int8,
    pa.int16(): np.int16,
    pa.int32(): np.int32,
    pa.int64(): np.int64,
    pa.uint8(): np.uint8,
    pa.uint16(): np.uint16,
    pa.uint32(): np.uint32,
    pa.uint64(): np.uint64,
    pa.float16(): np.float16,
    pa.float32(): np.float32,
    pa.float64(): np.float64,
}


def numpy_dtype(arrow_type: pa.DataType) -> np.dtype:
    """The numpy dtype of a numeric Arrow type (``to_pandas_dtype`` would import pandas)."""
    try:
        return np.dtype(_NUMPY_DTYPES[arrow_type])
    except KeyError:
        raise TypeError(f"no numpy dtype for Arrow type {arrow_type}") from None


def numeric_array(values: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    """Zero-copy Arrow array over a contiguous numpy array of the matching width.

    Used instead of ``pa.array``, which imports pandas on its first call (about a second).
    """
    values = np.ascontiguousarray(values, dtype=numpy_dtype(arrow_type))
    return pa.Array.from_buffers(arrow_type, len(values), [None, pa.py_buffer(values)])


def string_array(items: Sequence[str]) -> pa.Array:
    """A ``large_string`` array of Python strings (see :func:`numeric_array`)."""
    encoded = [s.encode("utf-8") for s in items]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    return pa.Array.from_buffers(
        pa.large_string(),
        len(encoded),
        [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))],
    )


def ts_array(ts: np.ndarray) -> pa.Array:
    """Zero-copy ``timestamp[us, UTC]`` array over int64 microseconds."""
    ts = np.ascontiguousarray(ts, dtype=np.int64)
    return pa.Array.from_buffers(TS_TYPE, len(ts), [None, pa.py_buffer(ts)])


_NAME_ATOMS = {name: atom for atom, name in ATOM_NAMES.items()}


def _member_types(chunk: TailChunk) -> dict[Atom, pa.DataType]:
    """Atom -> Arrow type of the non-null values a chunk may hold."""
    if chunk.atom is None:  # a mixed-type struct chunk from a columnar file
        return {_NAME_ATOMS[f.name]: f.type for f in chunk.values.type}
    if chunk.atom == Atom.NULL:
        return {}
    return {chunk.atom: chunk.values.type}


def _vector_type(chunks: Sequence[TailChunk]) -> pa.DataType:
    types = {t for c in chunks for a, t in _member_types(c).items() if a == Atom.VECTOR}
    if len(types) == 1:
        return types.pop()
    return VARIABLE_VECTOR_TYPE


def value_type(chunks: Sequence[TailChunk]) -> pa.DataType:
    """The ``value`` type of a history made of ``chunks`` (see the module docstring)."""
    atoms = sorted({a for c in chunks if len(c) for a in _member_types(c)})
    if not atoms:
        return pa.null()
    fields = []
    for atom in atoms:
        t = _vector_type(chunks) if atom == Atom.VECTOR else ATOM_ARROW_TYPES[atom]
        if len(atoms) == 1:
            return t
        fields.append(pa.field(ATOM_NAMES[atom], t))
    return pa.struct(fields)


def conform(chunk: TailChunk, target: pa.DataType) -> pa.Array:
    """The chunk's values as an array of the history type ``target``."""
    values = chunk.values
    if values.type == target:
        return values
    n = len(chunk)
    if chunk.atom == Atom.NULL:
        return pa.nulls(n, target)
    if pa.types.is_struct(target):
        if chunk.atom is None:
            own = {f.name: values.field(i) for i, f in enumerate(values.type)}
            mask = values.is_null() if values.null_count else None
        else:
            own = {ATOM_NAMES[chunk.atom]: values}
            mask = None
        children = []
        for f in target:
            child = own.get(f.name)
            if child is None:
                children.append(pa.nulls(n, f.type))
            else:
                children.append(child if child.type == f.type else child.cast(f.type))
        return pa.StructArray.from_arrays(children, fields=list(target), mask=mask)
    return values.cast(target)


def history_table(chunks: Sequence[TailChunk]) -> pa.Table:
    """Assemble chunks (oldest first) into the history table, without copying when possible.

    Only zero-length chunks (an empty range of a key) give an empty table of their type."""
    given = list(chunks)
    chunks = [c for c in given if len(c)]
    target = value_type(chunks) if chunks or not given else given[-1].values.type
    if not chunks:
        return pa.table(
            {"ts": ts_array(np.empty(0, np.int64)), "value": pa.nulls(0, target)},
        )
    ts = pa.chunked_array([ts_array(c.ts) for c in chunks], type=TS_TYPE)
    values = pa.chunked_array([conform(c, target) for c in chunks], type=target)
    return pa.Table.from_arrays([ts, values], names=["ts", "value"])
