"""Entry-offset sidecars: let a cleanly closed segment reopen without walking it.

When a segment is closed (database close, rotation) the writer saves ``NNNNNNNN.idx``:
the offsets of its entries and the XXH3-64 of the whole segment file as it was (sidecars
of format ``SYNAIDX2``, from earlier versions, hold a CRC32 and are still read). On open, a
sidecar whose size and whole-file checksum match proves the segment is byte for byte what was
written and verified, so the per-entry walk is skipped. Any mismatch (a crash before the
sidecar was written, a damaged byte anywhere) falls back to the full verifying walk, which
reports damage exactly. Sidecars are derived data: deleting them is always safe.

A sidecar is opened without following symlinks (a planted link raises
:class:`~synarrow.errors.CorruptionError`), and what it says is checked before use: the
entry count must fit the segment, the offsets must start right after the file header, and
every entry's own key and value lengths must end exactly where the next entry starts (the
last one at the end of the file). So even a crafted sidecar whose checksums were recomputed
cannot make a reader index outside an entry.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import NamedTuple

import lz4.block
import numpy as np

from synarrow.errors import CorruptionError
from synarrow.fileio import lstat_regular, open_fd, read_bytes, write_atomic
from synarrow.log.format import (
    ENTRY_HEADER_SIZE,
    ENTRY_LENGTHS_OFFSET,
    FILE_HEADER_SIZE,
    crc32,
)
from synarrow.log.format import xxh3_64 as _xxh3  # the faster whole-file hash, as batches use

__all__ = [
    "HEAD",
    "HEAD_V2",
    "MAGIC",
    "MAGIC_V2",
    "SidecarEntries",
    "entry_lengths",
    "lz4_bound",
    "offsets_fit",
    "read_sidecar",
    "remove_sidecar",
    "sidecar_path",
    "write_sidecar",
]

MAGIC = b"SYNAIDX3"
# magic, segment size, entry count, XXH3-64 of the segment, XXH3-64 of the body (LZ4 of u32
# lengths). XXH3 reads the segment several times faster than CRC32 (see format.FLAG_XXH3).
HEAD = struct.Struct("<8sQQQQ")
# Written by earlier versions: the same with CRC32s.
MAGIC_V2 = b"SYNAIDX2"
HEAD_V2 = struct.Struct("<8sQQII")
_LENGTHS = np.dtype([("kl", "<u2"), ("vl", "<u4")])  # an entry's lengths, at byte 12


def sidecar_path(segment_file: Path) -> Path:
    """The sidecar of a segment file."""
    return segment_file.with_suffix(".idx")


def write_sidecar(segment_file: Path, offsets: np.ndarray, size: int) -> None:
    """Save the offsets of a closed segment of ``size`` bytes (best effort, not fsynced:
    a lost or stale sidecar only costs a slower open)."""
    fd = open_fd(segment_file, os.O_RDONLY, what="log segment")
    with open(fd, "rb", closefd=True) as f:
        file_hash = _xxh3(f.read(size))
    # Entry lengths (offset differences) compress to a fraction of a byte per entry.
    lengths = np.diff(np.asarray(offsets, dtype=np.int64), prepend=0).astype("<u4")
    body = lz4.block.compress(lengths.tobytes(), store_size=True)
    head = HEAD.pack(MAGIC, size, len(offsets), file_hash, _xxh3(body))
    write_atomic(sidecar_path(segment_file), head + body, durable=False)


class SidecarEntries(NamedTuple):
    """What a matching sidecar gives: the entries' offsets, and the key and value lengths
    read from their headers while checking that they tile the segment (int64 each)."""

    offsets: np.ndarray
    key_lengths: np.ndarray
    value_lengths: np.ndarray


def read_sidecar(segment_file: Path, data: bytearray | bytes, size: int) -> SidecarEntries | None:
    """The entries if a sidecar exists and matches the segment's bytes exactly, else None."""
    path = sidecar_path(segment_file)
    # At most one entry per ENTRY_HEADER_SIZE + 1 bytes, 4 bytes each before LZ4.
    max_count = max(0, size - FILE_HEADER_SIZE) // (ENTRY_HEADER_SIZE + 1)
    try:
        if lstat_regular(path, what="log sidecar").st_size > HEAD.size + lz4_bound(4 * max_count):
            return None  # too large to be the sidecar of this segment: walk instead
        raw = read_bytes(path, what="log sidecar")
    except CorruptionError:
        raise  # a planted link or special file: refuse, do not fall back silently
    except OSError:
        return None
    head, check = (HEAD, _xxh3) if raw[:8] == MAGIC else (HEAD_V2, crc32)
    if len(raw) < head.size + 4:
        return None
    magic, rec_size, count, file_sum, body_sum = head.unpack_from(raw, 0)
    body = memoryview(raw)[head.size :]
    if magic not in (MAGIC, MAGIC_V2) or rec_size != size or check(body) != body_sum:
        return None
    if count > max_count or int.from_bytes(body[:4], "little") != 4 * count:
        return None  # claims more entries than the segment can hold
    if check(memoryview(data)[:size]) != file_sum:
        return None
    try:
        lengths = np.frombuffer(lz4.block.decompress(body), dtype="<u4")
    except (ValueError, RuntimeError, lz4.block.LZ4BlockError):
        return None
    if len(lengths) != count:
        return None
    offsets = np.cumsum(lengths, dtype=np.int64)
    fields = entry_lengths(data, size, offsets)
    return None if fields is None else SidecarEntries(offsets, *fields)


def lz4_bound(n: int) -> int:
    """The most bytes LZ4 can turn ``n`` bytes into (``LZ4_COMPRESSBOUND``)."""
    return n + n // 255 + 16


def entry_lengths(
    data: bytearray | bytes, size: int, offsets: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """The key and value lengths of the entries at ``offsets`` if those tile the segment
    exactly (the first right after the file header, each entry's own lengths ending where
    the next begins, the last at ``size``), else None."""
    n = len(offsets)
    if n == 0:
        return (offsets, offsets) if size == FILE_HEADER_SIZE else None
    if offsets[0] != FILE_HEADER_SIZE or offsets[-1] > size - ENTRY_HEADER_SIZE - 1:
        return None
    # One gather per field through byte-stride views of the segment.
    count = size - ENTRY_LENGTHS_OFFSET - _LENGTHS.itemsize + 1
    kl = _field(data, "<u2", ENTRY_LENGTHS_OFFSET, count)[offsets].astype(np.int64)
    if not kl.all():
        return None
    vl = _field(data, "<u4", ENTRY_LENGTHS_OFFSET + 2, count)[offsets].astype(np.int64)
    ends = kl + vl
    ends += offsets
    ends += ENTRY_HEADER_SIZE  # each entry's end: the next offset, or the file's end
    # (The lengths are unsigned, so offsets never decrease; K >= 1 makes them increase.)
    if int(ends[-1]) != size or not np.array_equal(ends[:-1], offsets[1:]):
        return None
    return kl, vl


def offsets_fit(data: bytearray | bytes, size: int, offsets: np.ndarray) -> bool:
    """Whether ``offsets`` tile the segment exactly (see :func:`entry_lengths`)."""
    return entry_lengths(data, size, offsets) is not None


def _field(data: bytearray | bytes, dtype: str, offset: int, count: int) -> np.ndarray:
    """A view of ``data`` with one ``dtype`` element starting at every byte from ``offset``
    (``count`` of them)."""
    view: np.ndarray = np.ndarray(
        shape=(count,), dtype=dtype, buffer=data, offset=offset, strides=(1,)
    )
    return view


def remove_sidecar(segment_file: Path) -> None:
    """Drop a segment's sidecar (before the segment is appended to again)."""
    sidecar_path(segment_file).unlink(missing_ok=True)
