"""Reading segments: load a file, walk its entries, verify checksums, find damage.

A walk stops at the first entry that does not verify. What follows decides what it was:

* the entry runs past the end of the file, or nothing after it verifies: a **torn tail**
  (a write cut short by a crash). The writer truncates it before appending again.
* a verifying entry follows later: **corruption** in the middle of the log. Reported as
  :class:`~synarrow.errors.CorruptionError` naming the file and byte range, or, with
  ``repair=True``, the range is skipped and reported in the scan result.

Damaged bytes are never decoded into values.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from synarrow.errors import CorruptionError
from synarrow.log.format import (
    ENTRY_HEADER_SIZE,
    ENTRY_LENGTHS,
    ENTRY_LENGTHS_OFFSET,
    FILE_HEADER_SIZE,
    crc32,
    decode_file_header,
)
from synarrow.log.sidecar import read_sidecar

_CRC_AND_LENGTHS = struct.Struct("<I8xHI")
assert ENTRY_HEADER_SIZE == 19 and ENTRY_LENGTHS_OFFSET == 12

# Extra zero bytes after the data, so vectorised 8-byte reads of short values never run off.
PAD = 8


@dataclass
class SegmentScan:
    """Where the verified entries of one segment are, and what damage was found."""

    path: Path
    segment: int
    base_seq: int
    data: bytearray  # file contents followed by PAD zero bytes
    size: int  # file size in bytes
    offsets: np.ndarray  # int64 start of each verified entry, in file order
    valid_end: int  # byte after the last verified entry (where a writer may append)
    skipped: list[tuple[int, int]] = field(default_factory=list)  # repaired ranges
    dropped: int = 0  # verified entries dropped in repair: their delta base was damaged

    @property
    def torn_bytes(self) -> int:
        """Bytes after the last verified entry (a torn tail, cut off on open)."""
        return self.size - self.valid_end


def read_padded(path: Path) -> bytearray:
    """The file's bytes followed by ``PAD`` zero bytes, read in one go."""
    size = os.path.getsize(path)
    buf = bytearray(size + PAD)
    with open(path, "rb", buffering=0) as f:
        view = memoryview(buf)[:size]
        got = 0
        while got < size:
            n = f.readinto(view[got:])
            if not n:
                break
            got += n
    if got < size:
        del buf[got:size]
    return buf


def entry_ok(data: bytearray | bytes, off: int, size: int) -> int:
    """End offset of a verifying entry at ``off``, or -1."""
    if off + ENTRY_HEADER_SIZE > size:
        return -1
    kl, vl = ENTRY_LENGTHS.unpack_from(data, off + ENTRY_LENGTHS_OFFSET)
    end = off + ENTRY_HEADER_SIZE + kl + vl
    if kl == 0 or end > size or (data[off + ENTRY_HEADER_SIZE - 1] >> 4) > 5:
        return -1
    mv = memoryview(data)
    if crc32(mv[off + 4 : end]) != int.from_bytes(mv[off : off + 4], "little"):
        return -1
    return end


def find_next_entry(data: bytearray, start: int, size: int) -> int:
    """First offset >= ``start`` where a verifying entry begins, or -1.

    Candidates are filtered with numpy (plausible lengths and flags) before checksums are
    computed, so a long stretch of garbage or zeros is searched quickly.
    """
    if start + ENTRY_HEADER_SIZE > size:
        return -1
    b = np.frombuffer(data, dtype=np.uint8, count=size)
    n = size - start - ENTRY_HEADER_SIZE + 1
    window = 1 << 22
    for lo in range(0, n, window):
        hi = min(n, lo + window)
        base = start + lo
        kl = b[base + 12 : base + 12 + hi - lo].astype(np.int64)
        kl |= b[base + 13 : base + 13 + hi - lo].astype(np.int64) << 8
        vl = np.zeros(hi - lo, dtype=np.int64)
        for i in range(4):
            vl |= b[base + 14 + i : base + 14 + i + hi - lo].astype(np.int64) << (8 * i)
        atom = b[base + 18 : base + 18 + hi - lo] >> 4
        pos = np.arange(base, base + hi - lo, dtype=np.int64)
        cand = (kl > 0) & (atom <= 5) & (pos + ENTRY_HEADER_SIZE + kl + vl <= size)
        for p in np.flatnonzero(cand):
            if entry_ok(data, int(pos[p]), size) >= 0:
                return int(pos[p])
    return -1


def walk(data: bytearray, start: int, size: int) -> tuple[list[int], int]:
    """Offsets of consecutive verifying entries from ``start``; and where the walk stopped."""
    offsets: list[int] = []
    append = offsets.append
    unpack = _CRC_AND_LENGTHS.unpack_from
    check = crc32
    mv = memoryview(data)
    off = start
    limit = size - ENTRY_HEADER_SIZE
    while off <= limit:
        crc, kl, vl = unpack(data, off)
        end = off + 19 + kl + vl
        if end > size or not kl or check(mv[off + 4 : end]) != crc:
            break
        append(off)
        off = end
    mv.release()
    return offsets, off


def scan_segment(path: Path, *, repair: bool = False) -> SegmentScan:
    """Read and verify one segment file.

    Raises :class:`CorruptionError` for a damaged header or for damage followed by valid
    entries (unless ``repair``); a torn tail is reported through ``valid_end``.
    """
    data = read_padded(path)
    size = len(data) - PAD
    try:
        _, segment, base_seq = decode_file_header(bytes(data[:FILE_HEADER_SIZE]))
    except ValueError as exc:
        raise CorruptionError(f"log segment {path}: {exc}") from exc
    known = read_sidecar(path, data, size)
    if known is not None:
        return SegmentScan(path, segment, base_seq, data, size, known, size)
    offsets, stop = walk(data, FILE_HEADER_SIZE, size)
    skipped: list[tuple[int, int]] = []
    while stop < size:
        nxt = find_next_entry(data, stop + 1, size)
        if nxt < 0:
            break  # torn tail
        if not repair:
            raise CorruptionError(
                f"log segment {path}: damaged bytes {stop}..{nxt} are followed by valid "
                "entries; refusing to guess their values"
            )
        skipped.append((stop, nxt))
        more, stop = walk(data, nxt, size)
        offsets.extend(more)
    return SegmentScan(
        path=path,
        segment=segment,
        base_seq=base_seq,
        data=data,
        size=size,
        offsets=np.array(offsets, dtype=np.int64),
        valid_end=stop if stop <= size else size,
        skipped=skipped,
    )
