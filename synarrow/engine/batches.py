"""Batch writes: slicing a batch into log entries, encoding them, and viewing them afterwards.

``append_batches`` writes each batch as one or more batch entries of at most
:func:`~synarrow.log.format.max_batch_entry_bytes` value bytes (the segment size, within
64 MiB..1 GiB), so a batch up to that size reads back as one contiguous view. LZ4 work for
calls with several entries runs on a small thread pool first (:func:`encoder`; LZ4 releases
the GIL). Once written, large numeric batches are read back as read-only mappings of the
segment (:func:`mapped_chunks`, the bytes are in the page cache) instead of being copied;
other batches are copied once (:func:`copied_chunk`).
The checksum of a large batch entry is computed on that pool while the entry is written
(:func:`overlap_checksum`; xxhash and the write both run outside the GIL) and written into
the entry's header afterwards. The timestamps of a batch appended without any are not made
until read (:meth:`TailChunk.sequence <synarrow.log.memtable.TailChunk.sequence>`).
"""

from __future__ import annotations

import builtins
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from synarrow.fileio import open_fd
from synarrow.log import codec
from synarrow.log.format import Atom, entry_parts_checksum, max_batch_entry_bytes
from synarrow.log.memtable import TailChunk, values_array
from synarrow.log.values import BatchValues

__all__ = [
    "MAP_BATCH_BYTES",
    "OVERLAP_HASH_BYTES",
    "POOL_MIN_BYTES",
    "Placed",
    "batch_slices",
    "copied_chunk",
    "default_timestamps",
    "encode_slice",
    "encoder",
    "entry_bytes",
    "mapped_chunks",
    "overlap_checksum",
    "slice_batch",
    "slice_bytes",
]

#: Batches at least this large are read back through a read-only mapping of the log segment
#: instead of being copied into memory.
MAP_BATCH_BYTES = 1 << 20

#: Where one entry of a batch went: ``(payload offset in the segment, lo, hi, lz4?)``.
Placed = tuple[int, int, int, bool]


def _width(batch: BatchValues) -> int:
    """Bytes per value of a fixed-width batch."""
    if batch.atom == Atom.VECTOR:
        assert batch.vectors is not None
        return 4 * int(batch.vectors.shape[1])
    return 8


#: Entries of a multi-entry append smaller than this are LZ4-encoded on the calling thread.
POOL_MIN_BYTES = 256 * 1024


def entry_bytes(max_log_file_size: int) -> int:
    """The most value bytes one batch entry holds (looked up at every call, so tests can
    lower it): :func:`~synarrow.log.format.max_batch_entry_bytes`."""
    return max_batch_entry_bytes(max_log_file_size)


def slice_bytes(batch: BatchValues, lo: int, hi: int) -> int:
    """Bytes of values ``lo:hi`` of ``batch`` (before encoding)."""
    if batch.offsets is not None:
        return int(batch.offsets[hi] - batch.offsets[lo]) + 8 * (hi - lo)
    return _width(batch) * (hi - lo)


def batch_slices(batch: BatchValues, max_log_file_size: int) -> Iterator[tuple[int, int]]:
    """The ``(lo, hi)`` value ranges of the entries ``batch`` is written as in a log of
    ``max_log_file_size`` segments: each at most :func:`entry_bytes` of it (a single value
    larger than that is one entry of its own)."""
    n = batch.count
    chunk_bytes = entry_bytes(max_log_file_size)
    if batch.atom in (Atom.TEXT, Atom.BYTES):
        assert batch.offsets is not None
        lo = 0
        while lo < n:
            limit = int(batch.offsets[lo]) + chunk_bytes
            hi = int(np.searchsorted(batch.offsets, limit, side="right")) - 1
            hi = max(hi, lo + 1)
            yield lo, min(hi, n)
            lo = min(hi, n)
        return
    step = max(1, chunk_bytes // max(_width(batch), 1))
    for lo in range(0, n, step):
        yield lo, min(n, lo + step)


def slice_batch(batch: BatchValues, lo: int, hi: int) -> BatchValues:
    """Values ``lo:hi`` of ``batch`` (views, no copy)."""
    if lo == 0 and hi == batch.count:
        return batch
    if batch.atom in (Atom.TEXT, Atom.BYTES):
        assert batch.offsets is not None and batch.data is not None
        offs = batch.offsets[lo : hi + 1]
        return BatchValues(
            batch.atom,
            hi - lo,
            offsets=offs - offs[0],
            data=batch.data[int(offs[0]) : int(offs[-1])],
        )
    return BatchValues(
        batch.atom,
        hi - lo,
        numbers=None if batch.numbers is None else batch.numbers[lo:hi],
        vectors=None if batch.vectors is None else batch.vectors[lo:hi],
    )


def encode_slice(
    batch: BatchValues,
    ts: np.ndarray | None,
    lo: int,
    hi: int,
    threshold: int | None,
    file_offset: int | None = None,
) -> tuple[list[bytes | memoryview], int]:
    """One batch entry's payload buffers and flags, for values ``lo:hi`` of ``batch``."""
    part = slice_batch(batch, lo, hi)
    return codec.encode_batch(
        part.atom,
        None if ts is None else ts[lo:hi],
        part.vectors if part.atom == Atom.VECTOR else part.numbers,
        offsets=part.offsets,
        data=part.data,
        count=hi - lo,
        compress_threshold=threshold,
        file_offset=file_offset,
    )


_ENCODER: ThreadPoolExecutor | None = None
_ENCODER_LOCK = threading.Lock()


def encoder() -> ThreadPoolExecutor:
    """The threads that LZ4-encode the entries of a multi-entry append (LZ4 releases the GIL)."""
    global _ENCODER
    with _ENCODER_LOCK:
        if _ENCODER is None:
            workers = max(1, min(4, os.cpu_count() or 1))
            _ENCODER = ThreadPoolExecutor(workers, thread_name_prefix="synarrow-encode")
        return _ENCODER


#: Batch entries of at least this many bytes get their checksum from
#: :func:`overlap_checksum` (for smaller ones the thread hand-off costs more than it saves).
OVERLAP_HASH_BYTES = 1 << 20


def overlap_checksum(record: list[bytes | memoryview]) -> Future[bytes]:
    """Start computing the checksum of a batch entry encoded with ``checksum=False``, on
    the pool, to run while the entry is written (``LogWriter.write_parts(checksum=)``)."""
    return encoder().submit(entry_parts_checksum, record)


def default_timestamps(now: int, lo: int, hi: int) -> np.ndarray:
    """The timestamps of values ``lo:hi`` of a batch appended without any at ``now``:
    ``now + lo, now + lo + 1, ...`` (strictly increasing microseconds, as the log's
    ``TS_SEQUENCE`` batch entries store them)."""
    return np.arange(now + lo, now + hi, dtype=np.int64)


def mapped_chunks(
    path: Path,
    batch: BatchValues,
    ts: np.ndarray | None,
    placed: list[Placed],
    now: int,
) -> list[TailChunk] | None:
    """Tail chunks viewing the batch's entries in the segment file, or None to copy instead.

    Values without their own timestamps get :func:`default_timestamps` from ``now``, made
    when first read (:meth:`TailChunk.sequence`).
    """
    if batch.atom not in (Atom.FLOAT, Atom.INT, Atom.VECTOR) or any(c for *_, c in placed):
        return None
    if batch.count * _width(batch) < MAP_BATCH_BYTES:
        return None
    chunks = []
    for payload_at, lo, hi, _ in placed:
        n = hi - lo
        start = codec.batch_values_offset(payload_at)
        chunk_ts: np.ndarray | None = None
        if ts is not None:
            chunk_ts = _map_segment(path, "<i8", start, (n,))
            start += 8 * n
        if batch.atom == Atom.VECTOR:
            dim = _width(batch) // 4
            vec = _map_segment(path, "<f4", start, (n, dim))
            values = values_array(Atom.VECTOR, n, vectors=vec)
        else:
            dtype = "<f8" if batch.atom == Atom.FLOAT else "<i8"
            nums = _map_segment(path, dtype, start, (n,))
            values = values_array(batch.atom, n, numbers=nums)
        chunks.append(
            TailChunk(batch.atom, chunk_ts, values)
            if chunk_ts is not None
            else TailChunk.sequence(batch.atom, now + lo, values)
        )
    return chunks


def copied_chunk(batch: BatchValues, ts: np.ndarray | None, now: int) -> TailChunk:
    """The whole batch as one tail chunk, copied (the caller may reuse its arrays); values
    without timestamps get :func:`default_timestamps` from ``now``, made when first read."""
    values = values_array(
        batch.atom,
        batch.count,
        numbers=None if batch.numbers is None else batch.numbers.copy(),
        offsets=batch.offsets,
        data=batch.data,
        vectors=None if batch.vectors is None else batch.vectors.copy(),
    )
    if ts is None:
        return TailChunk.sequence(batch.atom, now, values)
    return TailChunk(batch.atom, np.array(ts, dtype=np.int64), values)


def _map_segment(path: Path, dtype: str, offset: int, shape: tuple[int, ...]) -> Any:
    """A read-only numpy view of part of a segment, opened without following symlinks."""
    with builtins.open(open_fd(path, os.O_RDONLY, what="log segment"), "rb") as f:
        return np.memmap(f, dtype=dtype, mode="r", offset=offset, shape=shape)
