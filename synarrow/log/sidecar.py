"""Entry-offset sidecars: let a cleanly closed segment reopen without walking it.

When a segment is closed (database close, rotation) the writer saves ``NNNNNNNN.idx``:
the offsets of its entries and the CRC32 of the whole segment file as it was. On open, a
sidecar whose size and whole-file CRC32 match proves the segment is byte for byte what was
written and verified, so the per-entry walk is skipped. Any mismatch (a crash before the
sidecar was written, a damaged byte anywhere) falls back to the full verifying walk, which
reports damage exactly. Sidecars are derived data: deleting them is always safe.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import lz4.block
import numpy as np

from synarrow.log.format import crc32

MAGIC = b"SYNAIDX2"
# magic, segment size, entry count, segment crc32, crc32 of the body (LZ4 of u32 lengths)
HEAD = struct.Struct("<8sQQII")


def sidecar_path(segment_file: Path) -> Path:
    """The sidecar of a segment file."""
    return segment_file.with_suffix(".idx")


def write_sidecar(segment_file: Path, offsets: np.ndarray, size: int) -> None:
    """Save the offsets of a closed segment of ``size`` bytes (best effort, not fsynced:
    a lost or stale sidecar only costs a slower open)."""
    with open(segment_file, "rb") as f:
        file_crc = crc32(f.read(size))
    # Entry lengths (offset differences) compress to a fraction of a byte per entry.
    lengths = np.diff(np.asarray(offsets, dtype=np.int64), prepend=0).astype("<u4")
    body = lz4.block.compress(lengths.tobytes(), store_size=True)
    head = HEAD.pack(MAGIC, size, len(offsets), file_crc, crc32(body))
    tmp = sidecar_path(segment_file).with_suffix(".idx.tmp")
    with open(tmp, "wb") as f:
        f.write(head + body)
    os.replace(tmp, sidecar_path(segment_file))


def read_sidecar(segment_file: Path, data: bytearray | bytes, size: int) -> np.ndarray | None:
    """Entry offsets if a sidecar exists and matches the segment's bytes exactly, else None."""
    path = sidecar_path(segment_file)
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    if len(raw) < HEAD.size:
        return None
    magic, rec_size, count, file_crc, body_crc = HEAD.unpack_from(raw, 0)
    body = memoryview(raw)[HEAD.size :]
    if magic != MAGIC or rec_size != size or crc32(body) != body_crc:
        return None
    if crc32(memoryview(data)[:size]) != file_crc:
        return None
    try:
        lengths = np.frombuffer(lz4.block.decompress(body), dtype="<u4")
    except (ValueError, RuntimeError):
        return None
    if len(lengths) != count:
        return None
    return np.cumsum(lengths, dtype=np.int64)


def remove_sidecar(segment_file: Path) -> None:
    """Drop a segment's sidecar (before the segment is appended to again)."""
    sidecar_path(segment_file).unlink(missing_ok=True)
