"""Writing and memory-mapping the Arrow IPC data files of the columnar layer.

A data file (format 2) is a plain Arrow IPC file with columns ``ts`` and ``value``, holding
the histories of keys whose values share one Arrow type, **one record batch per key slice**
with the key in the batch's custom metadata (``synarrow.key``). It uses only types every
Arrow implementation reads (pyarrow, polars, arrow-js ...). Uncompressed files are read as
zero-copy views of the mapping; compressed ones (LZ4 / ZSTD buffers) decompress on read.

Every batch's bytes (its whole IPC message, the first one including the file header) and the
footer carry an XXH3-64 checksum, computed when the file is written. :class:`MappedFile`
verifies the footer when a file is opened and a batch the first time it is read (or never,
or all at open: see ``DbConfig.verify``), and checks its structure before handing it out.
Format-1 files (an earlier version: a run-end encoded ``key`` column, several keys per batch,
no checksums) are still read, with pyarrow's full validation instead.
"""

from __future__ import annotations

import mmap
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from synarrow.columnar.checksum import xxh3
from synarrow.columnar.manifest import DataFile
from synarrow.columnar.schema import TS_TYPE, numeric_array, string_array
from synarrow.columnar.validate import allowed_value_type, check_batch
from synarrow.errors import CorruptionError
from synarrow.fileio import fd_path, open_fd, remove_file

__all__ = [
    "KEY_METADATA",
    "KEY_TYPE",
    "VERIFY_POLICIES",
    "DataFileWriter",
    "MappedFile",
    "Span",
    "data_schema",
    "file_schema",
    "key_column",
]

#: In-memory key column of (key, ts, value) tables (SQL sources; the key column of format 1).
KEY_TYPE = pa.run_end_encoded(pa.int32(), pa.large_string())
#: Custom metadata field of each record batch naming its key.
KEY_METADATA = "synarrow.key"
#: ``DbConfig.verify`` values.
VERIFY_POLICIES = ("first-read", "open", "never")
_FORMAT_METADATA = {"synarrow.format": "2", "synarrow.layout": "one record batch per key slice"}


class Span(NamedTuple):
    """Where a record batch's bytes are in its file, and their XXH3-64."""

    offset: int
    length: int
    xxh3: int


def file_schema(value_type: pa.DataType) -> pa.Schema:
    """Schema of a format-2 data file whose values are of ``value_type``."""
    return pa.schema(
        [pa.field("ts", TS_TYPE, nullable=False), pa.field("value", value_type)],
        metadata=_FORMAT_METADATA,
    )


def data_schema(value_type: pa.DataType) -> pa.Schema:
    """Schema of in-memory (key, ts, value) tables, as the SQL views scan them."""
    return pa.schema(
        [
            pa.field("key", KEY_TYPE, nullable=False),
            pa.field("ts", TS_TYPE, nullable=False),
            pa.field("value", value_type),
        ]
    )


def key_column(keys: Sequence[str], counts: Sequence[int]) -> pa.Array:
    """Run-end encoded key column: one run per key (built in memory, never stored)."""
    ends = np.cumsum(np.asarray(counts, dtype=np.int64)).astype(np.int32)
    length = int(ends[-1]) if len(ends) else 0
    # from_buffers, not RunEndEncodedArray.from_arrays, which imports pandas.
    return pa.Array.from_buffers(
        KEY_TYPE, length, [None], children=[numeric_array(ends, pa.int32()), string_array(keys)]
    )


class DataFileWriter:
    """Writes (key, timestamps, values) slices of one value type into a new IPC file."""

    def __init__(self, path: Path, value_type: pa.DataType, compression: str | None) -> None:
        self.path = path
        self.name = path.name
        self.schema = file_schema(value_type)
        self.compression = compression
        options = ipc.IpcWriteOptions(compression=compression) if compression else None
        # A file (or symlink) planted at our new name is removed, never written through.
        remove_file(path)
        fd = open_fd(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, what="new columnar file")
        created = os.fstat(fd)
        try:
            # Reopened through the descriptor, never by name: a link swapped in at the name
            # after the no-follow create is not followed (nor truncated).
            # (Without /proc, by name: the inode check below then catches a swap.)
            self._sink = pa.OSFile(fd_path(fd) or str(path), "wb")
            opened = os.fstat(self._sink.fileno())
            if (opened.st_dev, opened.st_ino) != (created.st_dev, created.st_ino):
                self._sink.close()
                raise CorruptionError(f"{path} was replaced while synarrow was creating it")
        finally:
            os.close(fd)
        self._writer = ipc.new_file(self._sink, self.schema, options=options)
        self._ranges: list[tuple[int, int]] = []
        self.rows = 0
        self._closed = False

    @property
    def batches(self) -> int:
        """Record batches written so far."""
        return len(self._ranges)

    def add(self, key: str, ts: pa.Array, values: pa.Array) -> tuple[int, int]:
        """Write one key slice as a record batch; returns (batch index, first row in it)."""
        batch = pa.RecordBatch.from_arrays([ts, values], schema=self.schema)
        start = self._ranges[-1][1] if self._ranges else 0  # batch 0 includes the header
        self._writer.write_batch(batch, custom_metadata={KEY_METADATA: key})
        self._ranges.append((start, self._sink.tell()))
        self.rows += len(ts)
        return len(self._ranges) - 1, 0

    def close(self) -> tuple[DataFile, list[Span]]:
        """Finish, fsync and close the file; returns its manifest entry and batch spans.

        The checksums are computed from the file as written (read back through a mapping,
        from the page cache), so they cover exactly the bytes a reader will see.
        """
        footer = self._sink.tell()
        self._writer.close()
        self._sink.flush()
        os.fsync(self._sink.fileno())
        self._sink.close()
        self._closed = True
        fd = open_fd(self.path, what="columnar file")
        try:
            size = os.fstat(fd).st_size
            with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as mm:
                view = memoryview(mm)
                try:
                    spans = [Span(a, b - a, xxh3(view[a:b])) for a, b in self._ranges]
                    footer_sum = xxh3(view[footer:size])
                finally:
                    view.release()
        finally:
            os.close(fd)
        df = DataFile(self.name, self.rows, size, len(spans), footer, footer_sum, self.compression)
        return df, spans

    def abandon(self) -> None:
        """Close without finishing (the file is removed by the caller's cleanup)."""
        if not self._closed:
            self._closed = True
            try:
                self._writer.close()
            finally:
                self._sink.close()


class MappedFile:
    """A memory-mapped data file: footer verified at open, batches verified on first use."""

    def __init__(self, path: Path, info: DataFile, *, verify: str = "first-read") -> None:
        self.path = path
        self.info = info
        self.verify = verify
        self._lock = threading.Lock()
        self._batches: dict[int, pa.RecordBatch] = {}
        self._spans: dict[int, Span | None] = {}
        self._hashed: set[int] = set()
        fd = open_fd(path, what="columnar file")
        try:
            size = os.fstat(fd).st_size
            if size != info.bytes:
                raise CorruptionError(
                    f"columnar file {path} is {size:,} bytes; the manifest says {info.bytes:,}"
                )
            if size == 0:
                raise CorruptionError(f"columnar file {path} is empty")
            self._map = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
        self._buffer = pa.py_buffer(self._map)
        self._base = self._buffer.address
        self.size = size
        if info.checksummed:
            assert info.footer is not None
            if xxh3(self._buffer[info.footer :]) != info.footer_xxh3:
                raise CorruptionError(
                    f"columnar file {path}: bytes {info.footer}..{size} (the IPC footer) fail "
                    "their checksum"
                )
        try:
            self._reader = ipc.open_file(pa.BufferReader(self._buffer))
            schema = self._reader.schema
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise CorruptionError(f"columnar file {path}: {exc}") from exc
        self.value_type = _check_schema(schema, info.checksummed, path)
        self.compressed = info.compression is not None
        n = self._reader.num_record_batches
        if info.checksummed and n != info.batches:
            raise CorruptionError(
                f"columnar file {path} holds {n} record batches; the manifest says {info.batches}"
            )
        self.num_batches = int(n)

    @property
    def data_end(self) -> int:
        """Where the record batches end (the footer starts)."""
        return self.info.footer if self.info.footer is not None else self.size

    def check_span(self, span: Span, what: str) -> None:
        """Raise unless ``span`` lies inside the file before the footer."""
        end = self.data_end
        if span.offset < 0 or span.length <= 0 or span.offset + span.length > end:
            raise CorruptionError(
                f"{what}: bytes {span.offset}..{span.offset + span.length} are outside the "
                f"{end:,} bytes of record batches in {self.path}"
            )

    def verify_batch(self, i: int, span: Span) -> None:
        """Hash batch ``i``'s bytes against ``span`` (once per handle)."""
        if i in self._hashed:
            return
        self.check_span(span, f"columnar file {self.path}, batch {i}")
        got = xxh3(self._buffer[span.offset : span.offset + span.length])
        if got != span.xxh3:
            raise CorruptionError(
                f"columnar file {self.path}: bytes {span.offset}..{span.offset + span.length} "
                f"(record batch {i}) fail their checksum"
            )
        self._hashed.add(i)

    @property
    def batches_verified(self) -> int:
        """Record batches whose checksum this handle has verified."""
        return len(self._hashed)

    def batch(self, i: int, span: Span | None) -> pa.RecordBatch:
        """Record batch ``i``, checked before it is returned (zero-copy when uncompressed).

        ``span`` is the batch's byte range and checksum from the key index (``None`` for
        format-1 files). The first call verifies the checksum (unless the policy is
        ``"never"``) and the structure; later calls return the cached batch at no cost.
        """
        b = self._batches.get(i)
        if b is not None:
            if self._spans[i] != span:
                raise CorruptionError(
                    f"columnar index entries disagree about record batch {i} of {self.path}"
                )
            return b
        with self._lock:
            b = self._batches.get(i)
            if b is None:
                b = self._load(i, span)
                self._spans[i] = span
                self._batches[i] = b
        return self.batch(i, span)

    def _load(self, i: int, span: Span | None) -> pa.RecordBatch:
        what = f"columnar file {self.path}, record batch {i}"
        if not 0 <= i < self.num_batches:
            raise CorruptionError(f"{what}: the file has {self.num_batches} batches")
        if span is None and self.info.checksummed:
            raise CorruptionError(f"{what}: the index gives no checksum for it")
        if span is not None:
            self.check_span(span, what)
            if self.verify != "never":
                self.verify_batch(i, span)
        try:
            b = self._reader.get_batch(i)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise CorruptionError(f"{what}: {exc}") from exc
        within = None
        if span is not None and not self.compressed:
            within = (self._base + span.offset, self._base + span.offset + span.length)
        elif span is None and not _has_heap_buffers(b, self._base, self.size):
            within = (self._base, self._base + self.size)
        # Where no checksum vouches for the bytes, pyarrow's full validation (UTF-8 too).
        check_batch(b, what, within=within, full=i not in self._hashed)
        return b

    def key_of(self, i: int) -> str | None:
        """The key named in batch ``i``'s metadata (``None`` if absent); for ``check``."""
        try:
            _, meta = self._reader.get_batch_with_custom_metadata(i)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise CorruptionError(f"columnar file {self.path}, record batch {i}: {exc}") from exc
        if meta is None:
            return None
        try:
            raw = meta.get(KEY_METADATA.encode())
            return None if raw is None else bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CorruptionError(
                f"columnar file {self.path}, record batch {i}: key metadata is not UTF-8"
            ) from exc

    def close(self) -> None:
        """Drop this handle's references (views handed out stay valid)."""
        self._batches.clear()


def _check_schema(schema: pa.Schema, checksummed: bool, path: Path) -> pa.DataType:
    names = schema.names
    expected = ["ts", "value"] if checksummed else ["key", "ts", "value"]
    if names != expected or schema.field("ts").type != TS_TYPE:
        raise CorruptionError(f"columnar file {path} has an unexpected schema: {schema}")
    if not checksummed and schema.field("key").type != KEY_TYPE:
        raise CorruptionError(f"columnar file {path} has an unexpected key column")
    value_type = schema.field("value").type
    if not allowed_value_type(value_type):
        raise CorruptionError(f"columnar file {path}: {value_type} is not a history type")
    return value_type


def _has_heap_buffers(batch: pa.RecordBatch, base: int, size: int) -> bool:
    # Buffers of a compressed format-1 file are decompressed into memory, not the mapping.
    for col in batch.columns:
        for buf in col.buffers():
            if buf is not None and buf.size and not (base <= buf.address < base + size):
                return True
    return False
