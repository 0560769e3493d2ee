"""Reading segments: load a file, walk its entries, verify checksums, find damage.

A walk stops at the first entry that does not verify. What follows decides what it was:

* the entry runs past the end of the file, or nothing after it verifies: a **torn tail**
  (a write cut short by a crash). The writer truncates it before appending again.
* a verifying entry follows later: **corruption** in the middle of the log. Reported as
  :class:`~synarrow.errors.CorruptionError` naming the file and byte range, or, with
  ``repair=True``, the range is skipped and reported in the scan result.

Damaged bytes are never decoded into values.

Segments are opened without following symlinks (a planted link raises
:class:`~synarrow.errors.CorruptionError`). A segment much larger than the database's
``max_log_file_size`` is first verified by streaming it through a fixed-size buffer, and
only its verified prefix is read into memory: a crafted or sparse multi-GiB file costs
bounded memory, never a read of the whole file.
"""

from __future__ import annotations

import errno
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from synarrow.errors import CorruptionError
from synarrow.fileio import open_fd
from synarrow.log.format import (
    ENTRY_CHECKSUMS,
    ENTRY_HEADER_SIZE,
    ENTRY_LENGTHS,
    ENTRY_LENGTHS_OFFSET,
    FILE_HEADER_SIZE,
    EntryHasher,
    decode_file_header,
    entry_checksum,
    max_batch_entry_bytes,
    strip_checksum_bit,
)
from synarrow.log.sidecar import read_sidecar

__all__ = [
    "PAD",
    "SegmentScan",
    "entry_ok",
    "find_next_entry",
    "never_written",
    "oversize_limit",
    "read_padded",
    "scan_open_segment",
    "scan_segment",
    "scan_segment_from",
    "walk",
]

_CRC_AND_LENGTHS = struct.Struct("<I8xHIB")  # and the flags byte: it names the checksum
assert ENTRY_HEADER_SIZE == 19 and ENTRY_LENGTHS_OFFSET == 12

# Extra zero bytes after the data, so vectorised 8-byte reads of short values never run off.
PAD = 8
# How far past the largest batch entry a segment may grow before it counts as oversized:
# that entry's key and headers.
_ENTRY_SLACK = 1 << 17
# How many times its size a segment may be hashed while searching past damage.
SEARCH_BUDGET_FACTOR = 4


def oversize_limit(max_log_file_size: int) -> int:
    """The size past which a segment of a log with ``max_log_file_size`` is oversized: the
    limit plus the entry that crosses it (at most :func:`max_batch_entry_bytes` of values)
    and that entry's key."""
    return max_log_file_size + max_batch_entry_bytes(max_log_file_size) + _ENTRY_SLACK


# Buffer of the streamed verification of oversized segments.
_WINDOW = 1 << 24


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
    unread: int = 0  # bytes of an oversized segment's torn tail that were never read
    # the latest timestamp replay found on a batch stamped by the engine (no timestamps given)
    clock: int = 0
    # the file offset of data[0]: offsets, size and valid_end count from there (0 but for
    # scan_segment_from)
    origin: int = 0
    # each entry's key and value lengths (int64), when known already (from a sidecar check)
    key_lengths: np.ndarray | None = None
    value_lengths: np.ndarray | None = None

    @property
    def torn_bytes(self) -> int:
        """Bytes after the last verified entry (a torn tail, cut off on open)."""
        return self.size + self.unread - self.valid_end

    @property
    def file_size(self) -> int:
        """The segment file's size when it was scanned."""
        return self.size + self.unread


def read_padded(path: Path | int, size: int | None = None, start: int = 0) -> bytearray:
    """Bytes ``start`` up to ``size`` (default: the end) of a file followed by ``PAD`` zero
    bytes.

    ``path`` is a path (opened without following symlinks) or an open file descriptor.
    """
    fd = path if isinstance(path, int) else open_fd(path, os.O_RDONLY, what="log segment")
    try:
        if size is None:
            size = os.fstat(fd).st_size
        size = max(0, size - start)
        buf = bytearray(size + PAD)
        view = memoryview(buf)[:size]
        got = 0
        while got < size:
            n = os.preadv(fd, [view[got:]], start + got)
            if not n:
                break
            got += n
        view.release()
    finally:
        if not isinstance(path, int):
            os.close(fd)
    if got < size:
        del buf[got:size]
    return buf


def never_written(path: Path) -> bool:
    """Whether a segment whose header does not verify can only be an interrupted creation:
    nothing but zeros (or nothing at all) follows the header bytes."""
    fd = open_fd(path, os.O_RDONLY, what="log segment")
    try:
        return _only_zeros(fd, FILE_HEADER_SIZE, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def _data_regions(fd: int, start: int, end: int) -> list[tuple[int, int]]:
    """The ranges of ``[start, end)`` that are not holes of a sparse file."""
    seek_data = getattr(os, "SEEK_DATA", None)
    if seek_data is None:  # pragma: no cover - platforms without sparse-file seeks
        return [(start, end)]
    regions = []
    pos = start
    while pos < end:
        try:
            lo = os.lseek(fd, pos, seek_data)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                break  # only a hole is left
            return [(start, end)]
        if lo >= end:
            break
        hi = min(end, os.lseek(fd, lo, os.SEEK_HOLE))
        regions.append((lo, hi))
        pos = hi
    return regions


def _only_zeros(fd: int, start: int, end: int) -> bool:
    """Whether ``[start, end)`` of the file holds only zero bytes (holes are skipped)."""
    for lo, hi in _data_regions(fd, start, end):
        for at in range(lo, hi, _WINDOW):
            chunk = os.pread(fd, min(_WINDOW, hi - at), at)
            if chunk.count(0) != len(chunk):
                return False
    return True


def _stream_walk(fd: int, start: int, size: int) -> tuple[int, bool]:
    """:func:`walk` through a fixed-size buffer: where the verified entries end, and
    whether what follows can only be a torn tail (the end of the file, a header cut
    short, or a last entry running past the end)."""
    off = start
    at, win = start, b""
    while off + ENTRY_HEADER_SIZE <= size:
        if off + ENTRY_HEADER_SIZE > at + len(win):
            at, win = off, os.pread(fd, _WINDOW, off)
            if len(win) < ENTRY_HEADER_SIZE:
                return off, True  # the file shrank under us
        crc, kl, vl, fb = _CRC_AND_LENGTHS.unpack_from(win, off - at)
        end = off + ENTRY_HEADER_SIZE + kl + vl
        if not kl:
            return off, False
        if end > size:
            return off, True
        view = memoryview(win)
        hasher = EntryHasher(fb)
        hasher.update(view[off + 4 - at : min(end, at + len(win)) - at])
        pos = at + len(win)
        while pos < end:
            chunk = os.pread(fd, min(_WINDOW, end - pos), pos)
            if not chunk:
                return off, True
            hasher.update(chunk)
            pos += len(chunk)
        view.release()
        if hasher.digest() != crc:
            return off, False
        off = end
    return off, True


def _verified_prefix(fd: int, size: int, path: Path) -> int:
    """The length of an oversized segment that is worth reading into memory.

    Everything after it must be a torn tail (a crash pattern): a last entry cut short, or
    zeros. Anything else raises :class:`CorruptionError` rather than reading the file whole.
    """
    stop, torn = _stream_walk(fd, FILE_HEADER_SIZE, size)
    if torn or _only_zeros(fd, stop, size):
        return stop
    raise CorruptionError(
        f"log segment {path} is {size} bytes, far more than this database's segments grow "
        f"to, and its bytes {stop}.. do not verify; refusing to read it whole",
        hint="open with repair=True to read it whole and skip the damaged range, or run "
        "`synarrow check PATH`",
    )


def entry_ok(data: bytearray | bytes, off: int, size: int) -> int:
    """End offset of a verifying entry at ``off``, or -1."""
    if off + ENTRY_HEADER_SIZE > size:
        return -1
    kl: int
    vl: int
    kl, vl = ENTRY_LENGTHS.unpack_from(data, off + ENTRY_LENGTHS_OFFSET)
    end = off + ENTRY_HEADER_SIZE + kl + vl
    fb = data[off + ENTRY_HEADER_SIZE - 1]
    if kl == 0 or end > size or (strip_checksum_bit(fb) >> 4) > 5:
        return -1
    mv = memoryview(data)
    if entry_checksum(mv[off + 4 : end], fb) != int.from_bytes(mv[off : off + 4], "little"):
        return -1
    return end


def _header_field(data: bytearray, at: int, count: int, dtype: str) -> np.ndarray:
    """One unaligned header field of the entries that would start at ``count`` successive
    offsets (a strided view: field ``i`` starts at byte ``at + i``)."""
    view: np.ndarray = np.ndarray((count,), dtype, buffer=data, offset=at, strides=(1,))
    return view


def _candidates(data: bytearray, start: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Offsets >= ``start`` whose header is plausible (a key, a known atom type, an end
    inside the file), and those ends; found with numpy, a window at a time."""
    n = size - start - ENTRY_HEADER_SIZE + 1
    window = 1 << 22
    found: list[np.ndarray] = [np.zeros(0, np.int64)]
    ends: list[np.ndarray] = [np.zeros(0, np.int64)]
    for lo in range(0, n, window):
        m = min(n, lo + window) - lo
        base = start + lo
        atom = strip_checksum_bit(_header_field(data, base + 18, m, "u1")) >> 4
        kl = _header_field(data, base + 12, m, "<u2")
        cand = np.flatnonzero((atom <= 5) & (kl > 0))
        vl = _header_field(data, base + 14, m, "<u4")[cand].astype(np.int64)
        end = cand + (base + ENTRY_HEADER_SIZE) + kl[cand] + vl
        inside = end <= size
        found.append(cand[inside] + base)
        ends.append(end[inside])
    return np.concatenate(found), np.concatenate(ends)


def _landings(pos: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """For each candidate, the index of the candidate its end lands on, or -1."""
    at = np.searchsorted(pos, ends)
    hit = (at < len(pos)) & (pos[np.minimum(at, len(pos) - 1)] == ends)
    landed: np.ndarray = np.where(hit, at, -1)
    return landed


def _followed_well(
    ends: np.ndarray, landings: np.ndarray, data: bytearray, size: int
) -> np.ndarray:
    """Which candidates end where the log can go on: at another candidate (``landings``),
    the end of the file, a header cut short, or zeros (a key length of 0)."""
    b = np.frombuffer(data, dtype=np.uint8, count=size)
    ok: np.ndarray = (landings >= 0) | (ends + ENTRY_HEADER_SIZE > size)
    inside = np.flatnonzero(~ok)
    at = ends[inside]
    ok[inside] = (b[at + 12] == 0) & (b[at + 13] == 0)
    return ok


def _claimed_end(data: bytearray, off: int, size: int) -> int:
    """Where the entry at ``off`` ends by its header, if a verifying entry begins there
    (damage inside an entry's key or value leaves its lengths intact), else -1."""
    if off + ENTRY_HEADER_SIZE > size:
        return -1
    kl, vl = ENTRY_LENGTHS.unpack_from(data, off + ENTRY_LENGTHS_OFFSET)
    end = off + ENTRY_HEADER_SIZE + kl + vl
    return end if kl and end < size and entry_ok(data, end, size) >= 0 else -1


def find_next_entry(data: bytearray, start: int, size: int) -> int:
    """First offset >= ``start`` where a verifying entry begins, or -1.

    Damaged or torn bytes (a large batch's values above all) hold many offsets whose header
    looks plausible, each claiming megabytes to checksum, so the search is ordered to cost
    about the size of the segment instead of its square:

    * candidates come from numpy filters (a key, a known atom type, an end inside the file);
    * those continued by two more plausible links (another candidate, or the end of the file,
      a header cut short or zeros) are checksummed first: the entries that follow damage come
      in chains, so the first of them is one of these unless at most two entries follow it;
    * then the others;

    each group shortest first, skipping offsets after one already verified, and each group
    hashing at most :data:`SEARCH_BUDGET_FACTOR` times the segment's size. A valid
    entry missed this way (one of the last two of a segment after damage and longer than the
    budget leaves, or behind a crafted maze of plausible headers) is taken as part of the
    damage or torn tail.
    """
    if start + ENTRY_HEADER_SIZE > size:
        return -1
    pos, ends = _candidates(data, start, size)
    if not len(pos):
        return -1
    landings = _landings(pos, ends)
    one = _followed_well(ends, landings, data, size)
    # and the link it lands on too (where it lands on a candidate)
    two = one & ((landings < 0) | one[np.maximum(landings, 0)])
    first = -1
    for group in (np.flatnonzero(two), np.flatnonzero(~two)):
        budget = SEARCH_BUDGET_FACTOR * size
        for i in group[np.argsort(ends[group] - pos[group], kind="stable")]:
            p = int(pos[i])
            if first >= 0 and p >= first:
                continue
            budget -= int(ends[i]) - p
            if budget < 0:
                break
            if entry_ok(data, p, size) >= 0:
                first = p
    return first


def walk(data: bytearray, start: int, size: int) -> tuple[list[int], int]:
    """Offsets of consecutive verifying entries from ``start``; and where the walk stopped."""
    offsets: list[int] = []
    append = offsets.append
    unpack = _CRC_AND_LENGTHS.unpack_from
    check = ENTRY_CHECKSUMS
    mv = memoryview(data)
    off = start
    limit = size - ENTRY_HEADER_SIZE
    while off <= limit:
        crc, kl, vl, fb = unpack(data, off)
        end = off + 19 + kl + vl
        if end > size or not kl or check[fb](mv[off + 4 : end]) != crc:
            break
        append(off)
        off = end
    mv.release()
    return offsets, off


def _walk_past_damage(
    path: Path, data: bytearray, start: int, size: int, repair: bool, origin: int
) -> tuple[list[int], int, list[tuple[int, int]]]:
    """:func:`walk` from ``start``, past damage that valid entries follow when ``repair``
    (else that is :class:`CorruptionError`): ``(offsets, stop, skipped ranges)``."""
    offsets, stop = walk(data, start, size)
    skipped: list[tuple[int, int]] = []
    while stop < size:
        nxt = _claimed_end(data, stop, size)
        if nxt < 0:
            nxt = find_next_entry(data, stop + 1, size)
        if nxt < 0:
            break  # torn tail
        if not repair:
            raise CorruptionError(
                f"log segment {path}: damaged bytes {origin + stop}..{origin + nxt} are "
                "followed by valid entries; refusing to guess their values"
            )
        skipped.append((stop, nxt))
        more, stop = walk(data, nxt, size)
        offsets.extend(more)
    return offsets, stop, skipped


#: :func:`scan_segment_from` reads from its start rounded down to this, so the values of
#: batch entries keep the alignment they have in the file.
_READ_ALIGN = 64


def scan_segment_from(path: Path, start: int) -> SegmentScan:
    """Read and verify the entries of a segment from byte ``start`` on (the end of the
    entries verified before; a reader following the writer). ``data`` holds the file from
    ``origin`` (``start`` rounded down to 64 bytes), and ``offsets``, ``size`` and
    ``valid_end`` count from there. Damage followed by valid entries is
    :class:`CorruptionError`; a torn tail is reported through ``valid_end``.
    """
    fd = open_fd(path, os.O_RDONLY, what="log segment")
    try:
        header = read_padded(fd, FILE_HEADER_SIZE)
        origin = max(0, start - start % _READ_ALIGN)
        data = read_padded(fd, None, origin)
    finally:
        os.close(fd)
    try:
        _, segment, base_seq = decode_file_header(bytes(header[:FILE_HEADER_SIZE]))
    except ValueError as exc:
        raise CorruptionError(f"log segment {path}: {exc}") from exc
    return _scanned_from(path, (segment, base_seq), data, origin, start)


def scan_open_segment(
    path: Path, fd: int, header: tuple[int, int], start: int, end: int
) -> SegmentScan:
    """:func:`scan_segment_from` of bytes ``start`` to ``end`` of a segment already open
    as ``fd`` whose header (segment number, base sequence) was read before: one read (a
    writer of a shared log reading the entries the others appended since its last turn)."""
    if start < FILE_HEADER_SIZE or end < start:
        raise CorruptionError(f"log segment {path}: no entries between bytes {start} and {end}")
    origin = start - start % _READ_ALIGN
    return _scanned_from(path, header, read_padded(fd, end, origin), origin, start)


def _scanned_from(
    path: Path, header: tuple[int, int], data: bytearray, origin: int, start: int
) -> SegmentScan:
    """The scan of ``data`` (the segment's bytes from ``origin``) from byte ``start``."""
    size = len(data) - PAD
    first = max(start, FILE_HEADER_SIZE) - origin
    if first > size:
        raise CorruptionError(
            f"log segment {path} is shorter ({origin + size} bytes) than the {start} bytes "
            "of entries verified in it before",
            hint=f"run `synarrow check {path.parent.parent}`",
        )
    return _walked(path, header, data, first, repair=False, origin=origin)


def _walked(
    path: Path,
    header: tuple[int, int],
    data: bytearray,
    start: int,
    *,
    repair: bool,
    origin: int = 0,
    unread: int = 0,
) -> SegmentScan:
    """The scan of ``data`` (a segment's bytes from ``origin``; ``header``: its segment
    number and base sequence) walked from ``start``."""
    size = len(data) - PAD
    offsets, stop, skipped = _walk_past_damage(path, data, start, size, repair, origin)
    return SegmentScan(
        path=path,
        segment=header[0],
        base_seq=header[1],
        data=data,
        size=size,
        offsets=np.array(offsets, dtype=np.int64),
        valid_end=min(stop, size),
        skipped=skipped,
        unread=unread,
        origin=origin,
    )


def scan_segment(
    path: Path, *, repair: bool = False, max_log_file_size: int | None = None
) -> SegmentScan:
    """Read and verify one segment file.

    Raises :class:`CorruptionError` for a damaged header or for damage followed by valid
    entries (unless ``repair``); a torn tail is reported through ``valid_end``. With
    ``max_log_file_size``, a segment larger than :func:`oversize_limit` of it is verified
    by streaming first and only its verified prefix is read (see :func:`_verified_prefix`).
    """
    fd = open_fd(path, os.O_RDONLY, what="log segment")
    try:
        file_size = os.fstat(fd).st_size
        limit = None
        if (
            max_log_file_size is not None
            and not repair
            and file_size > oversize_limit(max_log_file_size)
        ):
            limit = _verified_prefix(fd, file_size, path)
        data = read_padded(fd, limit)
    finally:
        os.close(fd)
    size = len(data) - PAD
    unread = file_size - size
    try:
        _, segment, base_seq = decode_file_header(bytes(data[:FILE_HEADER_SIZE]))
    except ValueError as exc:
        raise CorruptionError(f"log segment {path}: {exc}") from exc
    known = None if unread else read_sidecar(path, data, size)
    if known is not None:
        return SegmentScan(
            path,
            segment,
            base_seq,
            data,
            size,
            known.offsets,
            size,
            key_lengths=known.key_lengths,
            value_lengths=known.value_lengths,
        )
    return _walked(path, (segment, base_seq), data, FILE_HEADER_SIZE, repair=repair, unread=unread)
