"""The key index: per key, in key order, the slices of its history in the data files.

An Arrow IPC file (plain types, readable by any Arrow implementation) with one row per
slice, oldest first within a key. Format 2 adds where each slice's record batch lies in its
file and that batch's XXH3-64, and (since time-ordered compaction) each slice's first and
last timestamp: a slice written with them is sorted by timestamp, so the latest entry of a
key is known at open without mapping any data. An index of format 2 without the two
timestamp columns (written before) still opens: its slices' latest entries are found by
reading them. The whole index file is checksummed in the manifest and memory-mapped
at open (its columns are views, not copies); every field is checked before use
(:func:`read_index`), with whole-column bounds first and per-slice tests only where those
do not settle it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from synarrow.columnar.checksum import xxh3
from synarrow.columnar.manifest import Manifest
from synarrow.columnar.schema import numeric_array, numpy_dtype, string_array
from synarrow.errors import CorruptionError
from synarrow.fileio import map_bytes, remove_file, write_atomic
from synarrow.log.format import Atom

__all__ = [
    "INDEX_SCHEMA",
    "INDEX_SCHEMA_V1",
    "INDEX_SCHEMA_V2",
    "IndexRows",
    "column_numbers",
    "index_table",
    "key_starts",
    "read_index",
    "write_index",
]

INDEX_SCHEMA_V1 = pa.schema(
    [
        ("key", pa.large_string()),
        ("file", pa.int32()),
        ("batch", pa.int32()),
        ("row", pa.int64()),
        ("count", pa.int64()),
        ("atom", pa.int8()),  # atom of the values, -1 for a mixed-type (struct) slice
        ("last_atom", pa.int8()),  # atom of the slice's last entry
    ]
)
INDEX_SCHEMA_V2 = pa.schema(
    [
        *INDEX_SCHEMA_V1,
        ("offset", pa.int64()),  # byte offset of the slice's record batch in its file
        ("length", pa.int64()),  # bytes of that record batch
        ("xxh3", pa.uint64()),  # XXH3-64 of those bytes
    ]
)
INDEX_SCHEMA = pa.schema(
    [
        *INDEX_SCHEMA_V2,
        ("first_ts", pa.int64()),  # timestamp of the slice's first row (the slice is sorted)
        ("last_ts", pa.int64()),  # timestamp of its last row, the greatest
    ]
)
_NUMERIC = [f.name for f in INDEX_SCHEMA if f.name != "key"]
_NUMERIC_V2 = [f.name for f in INDEX_SCHEMA_V2 if f.name != "key"]
_ATOMS = {int(a) for a in Atom}
_MAX_KEY_BYTES = 65535
_INT64_MAX = int(np.iinfo(np.int64).max)


class IndexRows:
    """The index, one entry per slice, validated: numpy columns and the key column.

    ``keys`` and ``columns`` (Python lists) are made on first use: opening a database only
    needs the arrays (a list per column of 100k slices would cost more than the rest of
    the open).
    """

    def __init__(
        self,
        key_array: pa.Array,
        arrays: dict[str, np.ndarray],
        checksummed: bool,
        starts: np.ndarray | None = None,
    ) -> None:
        self.key_array = key_array
        """The ``key`` column as one Arrow (large string) array."""
        self.arrays = arrays
        """file, batch, row, count, atom, last_atom[, offset, length, xxh3[, first_ts,
        last_ts]] as numpy arrays."""
        self.checksummed = checksummed
        """Format 2: ``offset``, ``length`` and ``xxh3`` are present."""
        self.starts = key_starts(key_array) if starts is None else starts
        """Row of each distinct key's first slice, then the number of rows."""
        self._keys: list[str] | None = None
        self._columns: dict[str, list[int]] | None = None

    @property
    def keys(self) -> list[str]:
        """The key of each slice, as a list."""
        if self._keys is None:
            self._keys = self.key_array.to_pylist()
        return self._keys

    @property
    def columns(self) -> dict[str, list[int]]:
        """The numeric columns as lists."""
        if self._columns is None:
            self._columns = {k: v.tolist() for k, v in self.arrays.items()}
        return self._columns

    @property
    def timed(self) -> bool:
        """Whether ``first_ts`` and ``last_ts`` are present (slices sorted by timestamp)."""
        return "last_ts" in self.arrays

    def __len__(self) -> int:
        return len(self.key_array)


def index_table(keys: list[str], columns: dict[str, list[int]]) -> pa.Table:
    """The index rows of ``keys`` (one per slice) and their numeric ``columns`` as a table."""
    arrays = [string_array(keys)] + [
        numeric_array(
            np.array(columns[name], dtype=numpy_dtype(INDEX_SCHEMA.field(name).type)),
            INDEX_SCHEMA.field(name).type,
        )
        for name in _NUMERIC
    ]
    return pa.Table.from_arrays(arrays, schema=INDEX_SCHEMA)


def write_index(path: Path, table: pa.Table) -> tuple[int, int]:
    """Write the index ``table`` (:data:`INDEX_SCHEMA`, sorted by key) atomically and
    durably; returns (size in bytes, XXH3-64)."""
    sink = pa.BufferOutputStream()
    with ipc.new_file(sink, INDEX_SCHEMA) as w:
        w.write_table(table)
    data = sink.getvalue().to_pybytes()
    remove_file(path)  # a new generation's name: anything planted there is not ours
    write_atomic(path, data)
    return len(data), xxh3(data)


def read_index(path: Path, manifest: Manifest) -> IndexRows:
    """Read, verify and validate the index the manifest names.

    Raises :class:`CorruptionError` for a checksum mismatch, a damaged file, an unexpected
    schema, nulls, a key that is empty, too long or out of order, a file number outside the
    manifest (negative included), negative rows, counts, offsets or lengths, or an unknown
    atom. Batch numbers and byte ranges are checked against each file when it is mapped.
    """
    checksummed = manifest.format >= 2
    limit = manifest.index_bytes if checksummed else None
    try:
        # mapped, not read: the arrays below are views of the page cache (no copy of a
        # 100k-key index's 8.5 MB)
        data = map_bytes(path, max_size=limit, what="columnar index")
    except CorruptionError:
        raise
    except OSError as exc:
        raise CorruptionError(f"columnar index {path} cannot be read: {exc}") from exc
    if checksummed:
        if len(data) != manifest.index_bytes:
            raise CorruptionError(
                f"columnar index {path} is {len(data):,} bytes; the manifest says "
                f"{manifest.index_bytes:,}"
            )
        if xxh3(data) != manifest.index_xxh3:
            raise CorruptionError(
                f"columnar index {path}: bytes 0..{len(data)} fail their checksum"
            )
    try:
        table = ipc.open_file(pa.py_buffer(data)).read_all()
        if checksummed and table.schema == INDEX_SCHEMA:
            names = _NUMERIC
        elif checksummed and table.schema == INDEX_SCHEMA_V2:
            names = _NUMERIC_V2
        elif not checksummed and table.schema == INDEX_SCHEMA_V1:
            names = _NUMERIC[:6]
        else:
            raise CorruptionError(f"columnar index {path} has an unexpected schema")
        table.validate(full=True)
        if any(c.null_count for c in table.columns):
            raise CorruptionError(f"columnar index {path} holds nulls")
        key_column = table.column("key")
        # one chunk (what write_index makes): use it as is; combine_chunks copies even one
        key_array = (
            key_column.chunk(0) if key_column.num_chunks == 1 else key_column.combine_chunks()
        )
        starts = _checked_starts(path, key_array)
        cols = {name: column_numbers(table.column(name)) for name in names}
    except CorruptionError:
        raise
    except (pa.ArrowException, ValueError, OSError) as exc:
        raise CorruptionError(f"columnar index {path} is damaged: {exc}") from exc
    _check_fields(path, cols, len(manifest.files))
    return IndexRows(key_array, cols, checksummed, starts)


def column_numbers(column: pa.ChunkedArray) -> np.ndarray:
    """A numeric column as one numpy array (ChunkedArray.to_numpy would import pandas).

    A single chunk gives a read-only view of its buffer (no copy); several are concatenated.
    """
    dtype = numpy_dtype(column.type)
    parts = [
        np.frombuffer(ch.buffers()[1], dtype=dtype, count=ch.offset + len(ch))[ch.offset :]
        for ch in column.chunks
    ]
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts) if parts else np.empty(0, dtype)


def key_starts(flat: pa.Array) -> np.ndarray:
    """Row of each distinct key's first slice in the sorted key column ``flat`` (no
    nulls), then ``len(flat)``: equal keys are neighbours."""
    n = len(flat)
    if not n:
        return np.zeros(1, dtype=np.int64)
    new = pc.not_equal(flat[1:], flat[:-1])
    return _starts_of(new, n)


def _starts_of(new: pa.BooleanArray, n: int) -> np.ndarray:
    """``[0, i + 1 for each true new[i], n]``: where the key changes."""
    bits = np.frombuffer(new.buffers()[1], dtype=np.uint8)
    change = np.unpackbits(bits, bitorder="little")[new.offset : new.offset + n - 1]
    return np.concatenate(([0], np.flatnonzero(change) + 1, [n])).astype(np.int64)


def _checked_starts(path: Path, flat: pa.Array) -> np.ndarray:
    """Check the key column (lengths, order) and return :func:`key_starts` of it. One
    comparison pass when every key has one slice (strictly increasing keys)."""
    n = len(flat)
    if not n:
        return np.zeros(1, dtype=np.int64)
    offsets = np.frombuffer(flat.buffers()[1], dtype=np.int64, count=flat.offset + n + 1)
    lengths = np.diff(offsets[flat.offset :])
    if lengths.min() < 1 or lengths.max() > _MAX_KEY_BYTES:
        raise CorruptionError(f"columnar index {path}: a key is empty or longer than 65535 bytes")
    if n == 1:
        return np.array([0, 1], dtype=np.int64)
    ahead, behind = flat[1:], flat[:-1]
    if not pc.any(pc.less_equal(ahead, behind)).as_py():
        return np.arange(n + 1, dtype=np.int64)
    if pc.any(pc.less(ahead, behind)).as_py():
        raise CorruptionError(f"columnar index {path}: keys are not in order")
    return _starts_of(pc.not_equal(ahead, behind), n)


def _codes(arr: np.ndarray) -> set[int]:
    """The distinct values of a small-int column, or a set that passes and fails the same
    subset tests against the atom codes (``np.unique`` would import ``numpy.ma``, 18 ms of
    every fresh process's first open)."""
    if not len(arr):
        return set()
    lo, hi = int(arr.min()), int(arr.max())
    if lo < -1 or hi > 127:
        return {lo, hi}
    if _ATOMS.issuperset(range(max(lo, 0), hi + 1)):
        # lo and hi occur, and every code between them is an atom: exact for the tests
        return set(range(lo, hi + 1))
    present = np.flatnonzero(np.bincount(arr.astype(np.int64) + 1)) - 1
    return set(present.tolist())


def _check_fields(path: Path, cols: dict[str, np.ndarray], nfiles: int) -> None:
    def bad(what: str) -> CorruptionError:
        return CorruptionError(f"columnar index {path}: {what}")

    f = cols["file"]
    if len(f) and (f.min() < 0 or f.max() >= nfiles):
        raise bad(
            f"a slice names file {int(f.min() if f.min() < 0 else f.max())}; the manifest lists {nfiles}"
        )
    for name in ("batch", "row"):
        if len(cols[name]) and cols[name].min() < 0:
            raise bad(f"a slice has a negative {name}")
    count = cols["count"]
    if len(count) and (
        count.min() <= 0
        # the exact test only when the bound of the sums does not already settle it
        or (
            int(cols["row"].max()) > _INT64_MAX - int(count.max())
            and bool(np.any(cols["row"] > _INT64_MAX - count))
        )
    ):
        raise bad("a slice has no rows or too many")
    atoms = _codes(cols["atom"])
    if not atoms <= _ATOMS | {-1}:
        raise bad(f"unknown atom types {sorted(atoms - _ATOMS - {-1})}")
    if not _codes(cols["last_atom"]) <= _ATOMS:
        raise bad("unknown atom type of a last entry")
    if "offset" in cols:
        off, length = cols["offset"], cols["length"]
        if len(off) and (off.min() < 0 or length.min() <= 0):
            raise bad("a slice has a negative byte offset or length")
    if "last_ts" in cols and bool(np.any(cols["first_ts"] > cols["last_ts"])):
        raise bad("a slice's first timestamp is after its last")
