"""Writing and memory-mapping the Arrow IPC files of the columnar layer.

A data file holds the histories of many keys whose values share one Arrow type, as record
batches with columns ``key`` (run-end encoded: a few bytes per key, not per row), ``ts`` and
``value``. Uncompressed files are read as zero-copy views of the mapping; compressed ones
(LZ4 / ZSTD buffers) decompress into memory on read.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from synarrow.columnar.schema import TS_TYPE, numeric_array, string_array

KEY_TYPE = pa.run_end_encoded(pa.int32(), pa.large_string())
# Record batches are cut at about this many bytes, bounding memory while compacting.
BATCH_BYTES = 64 * 1024 * 1024


def data_schema(value_type: pa.DataType) -> pa.Schema:
    """Schema of a data file whose values are of ``value_type``."""
    return pa.schema(
        [
            pa.field("key", KEY_TYPE, nullable=False),
            pa.field("ts", TS_TYPE, nullable=False),
            pa.field("value", value_type),
        ]
    )


def key_column(keys: Sequence[str], counts: Sequence[int]) -> pa.Array:
    """Run-end encoded key column: one run per key."""
    ends = np.cumsum(np.asarray(counts, dtype=np.int64)).astype(np.int32)
    length = int(ends[-1]) if len(ends) else 0
    # from_buffers, not RunEndEncodedArray.from_arrays, which imports pandas.
    return pa.Array.from_buffers(
        KEY_TYPE, length, [None], children=[numeric_array(ends, pa.int32()), string_array(keys)]
    )


class DataFileWriter:
    """Streams (key, timestamps, values) of one value type into an IPC file."""

    def __init__(self, path: Path, value_type: pa.DataType, compression: str | None) -> None:
        self.path = path
        self.schema = data_schema(value_type)
        options = ipc.IpcWriteOptions(compression=compression) if compression else None
        self._sink = pa.OSFile(str(path), "wb")
        self._writer = ipc.new_file(self._sink, self.schema, options=options)
        self._keys: list[str] = []
        self._counts: list[int] = []
        self._ts: list[pa.Array] = []
        self._values: list[pa.Array] = []
        self._pending_bytes = 0
        self._pending_rows = 0
        self.batches = 0
        self.rows = 0

    def add(self, key: str, ts: pa.Array, values: pa.Array) -> tuple[int, int]:
        """Queue a key's rows; returns (batch index, first row in batch) where they will be."""
        if self._pending_bytes >= BATCH_BYTES:
            self._write_pending()
        row = self._pending_rows
        n = len(ts)
        self._keys.append(key)
        self._counts.append(n)
        self._ts.append(ts)
        self._values.append(values)
        width = values.type.bit_width // 8 if pa.types.is_primitive(values.type) else 0
        self._pending_bytes += n * (8 + width) if width else values.nbytes + 8 * n
        self._pending_rows += n
        self.rows += n
        return self.batches, row

    def _write_pending(self) -> None:
        if not self._keys:
            return
        batch = pa.RecordBatch.from_arrays(
            [
                key_column(self._keys, self._counts),
                pa.concat_arrays(self._ts),
                pa.concat_arrays(self._values),
            ],
            schema=self.schema,
        )
        self._writer.write_batch(batch)
        self.batches += 1
        self._keys, self._counts, self._ts, self._values = [], [], [], []
        self._pending_bytes = 0
        self._pending_rows = 0

    def close(self) -> int:
        """Write what is queued, fsync, close; returns the file size."""
        self._write_pending()
        self._writer.close()
        self._sink.flush()
        os.fsync(self._sink.fileno())
        self._sink.close()
        return self.path.stat().st_size


class MappedFile:
    """A memory-mapped data file; record batches are read on first use and kept."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._map = pa.memory_map(str(path), "r")
        self._reader = ipc.open_file(self._map)
        self._batches: dict[int, pa.RecordBatch] = {}

    @property
    def num_batches(self) -> int:
        """How many record batches the file holds."""
        return int(self._reader.num_record_batches)

    def batch(self, i: int) -> pa.RecordBatch:
        """Record batch ``i`` (zero-copy over the mapping when uncompressed)."""
        b = self._batches.get(i)
        if b is None:
            b = self._batches[i] = self._reader.get_batch(i)
        return b

    def table(self) -> pa.Table:
        """The whole file as a table of its batches (no copy)."""
        return pa.Table.from_batches(
            [self.batch(i) for i in range(self.num_batches)], schema=self._reader.schema
        )

    def close(self) -> None:
        """Drop this handle's references (views handed out stay valid)."""
        self._batches.clear()
