"""The byte layout of log segments: file header, entry header, flags and checksum.

Pure encode/decode; no I/O. ``docs/FORMAT.md`` documents the same layout byte by byte.

Segment file::

    file header (32 bytes)  magic "SYNARLOG", version u16, reserved u16, segment number u32,
                            base sequence u64, CRC32 of the previous 24 bytes u32, reserved u32
                            (version 2 since XXH3-checked entries; 1 is still read)
    entry*                  back to back, no padding

Entry::

    checksum   u32   of everything after this field (the rest of the header, key, value):
                     CRC32, or with the XXH3 flag the low 32 bits of XXH3-64
    timestamp  i64   microseconds since the Unix epoch, UTC
    key_len    u16   bytes of UTF-8 key (1..65535)
    value_len  u32   bytes of stored value (after delta and LZ4 encoding)
    flags      u8    low nibble: DELTA 0x1, LZ4 0x2, TOMBSTONE 0x4, BATCH 0x8;
                     high nibble: atom type (0 null, 1 float, 2 int, 3 text, 4 bytes, 5 vector);
                     with BATCH, its top bit is XXH3 0x80: the checksum is XXH3's
    key        key_len bytes
    value      value_len bytes

All integers are little-endian.
"""

from __future__ import annotations

import enum
import struct
import zlib
from collections.abc import Callable
from typing import Any

import xxhash

__all__ = [
    "ATOM_NAMES",
    "CRC",
    "ENTRY_BODY_HEADER",
    "ENTRY_CHECKSUMS",
    "ENTRY_HEADER",
    "ENTRY_HEADER_SIZE",
    "ENTRY_LENGTHS",
    "ENTRY_LENGTHS_OFFSET",
    "FILE_HEADER",
    "FILE_HEADER_SIZE",
    "FLAG_BATCH",
    "FLAG_DELTA",
    "FLAG_LZ4",
    "FLAG_TOMBSTONE",
    "FLAG_XXH3",
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_BATCH_ENTRY_BYTES",
    "MAX_KEY_BYTES",
    "MAX_VALUE_BYTES",
    "MIN_BATCH_ENTRY_BYTES",
    "PENDING_CHECKSUM",
    "Atom",
    "EntryHasher",
    "crc32",
    "decode_file_header",
    "encode_entry",
    "encode_entry_parts",
    "encode_file_header",
    "entry_checksum",
    "entry_parts_checksum",
    "flags_byte",
    "key_entry_struct",
    "max_batch_entry_bytes",
    "split_flags",
    "strip_checksum_bit",
    "xxh3_32",
    "xxh3_64",
]

MAGIC = b"SYNARLOG"
# 2: entries may carry FLAG_XXH3 (version 1 segments are read the same way).
FORMAT_VERSION = 2

FILE_HEADER = struct.Struct("<8sHHIQII")
FILE_HEADER_SIZE = FILE_HEADER.size  # 32

ENTRY_HEADER = struct.Struct("<IqHIB")
ENTRY_HEADER_SIZE = ENTRY_HEADER.size  # 19
# The header without its leading checksum: what the writer packs before checksumming.
ENTRY_BODY_HEADER = struct.Struct("<qHIB")
CRC = struct.Struct("<I")
# key_len and value_len alone, read while walking a segment.
ENTRY_LENGTHS = struct.Struct("<HI")
ENTRY_LENGTHS_OFFSET = 12

FLAG_DELTA = 0x01
FLAG_LZ4 = 0x02
FLAG_TOMBSTONE = 0x04
FLAG_BATCH = 0x08
# With BATCH only: the entry's checksum is the low 32 bits of XXH3-64 instead of CRC32. XXH3
# hashes several times faster than zlib's CRC32, so it no longer stands in series with the
# copy of a large batch into the file. Batch atom types need three bits, so the atom nibble's
# top bit is free there (range tombstones use the whole nibble, 0xF, without BATCH).
FLAG_XXH3 = 0x80
_XXH3_BATCH = FLAG_XXH3 | FLAG_BATCH

MAX_KEY_BYTES = 0xFFFF
MAX_VALUE_BYTES = 0xFFFFFFFF

#: The value bytes a batch entry may hold, whatever ``max_log_file_size`` is: at least
#: 64 MiB, at most 1 GiB (see :func:`max_batch_entry_bytes`).
MIN_BATCH_ENTRY_BYTES = 64 << 20
MAX_BATCH_ENTRY_BYTES = 1 << 30


def max_batch_entry_bytes(max_log_file_size: int) -> int:
    """The most value bytes one batch entry holds in a log of segments of
    ``max_log_file_size`` bytes: ``max_log_file_size`` itself, kept within
    64 MiB..1 GiB.

    A batch up to that size is one entry, so it reads back as one contiguous view of the
    mapped segment (a tensor of 188 MB with the default 256 MiB segments); larger batches are
    split over several entries. A segment therefore grows at most this much past
    ``max_log_file_size`` (plus the entry's key and headers) before the next one starts.
    """
    return min(max(MIN_BATCH_ENTRY_BYTES, max_log_file_size), MAX_BATCH_ENTRY_BYTES)


crc32 = zlib.crc32
_xxh3_64 = xxhash.xxh3_64_intdigest
_xxh3_state = xxhash.xxh3_64


def xxh3_64(data: Any) -> int:
    """XXH3-64 (seed 0) of a bytes-like object, as an unsigned int (the sidecar's hash)."""
    return int(_xxh3_64(data))


class Atom(enum.IntEnum):
    """The value types a log entry can hold (``synarrow.Atom``)."""

    NULL = 0
    FLOAT = 1
    INT = 2
    TEXT = 3
    BYTES = 4
    VECTOR = 5

    @staticmethod
    def vector(values: Any) -> Any:
        """A Vector atom from any sequence of numbers: a 1-D little-endian float32 array.

        >>> Atom.vector([0.5, 1.0]).dtype
        dtype('float32')
        """
        from synarrow.errors import InvalidValueError
        from synarrow.log.vectors import float32_values

        arr = float32_values(values, "a vector")
        if arr.ndim != 1 or arr.size == 0:
            raise InvalidValueError(f"a vector must be 1-D and non-empty, got shape {arr.shape}")
        return arr


ATOM_NAMES = {a: a.name.lower() for a in Atom}


def flags_byte(flags: int, atom: int) -> int:
    """Pack the flag bits and the atom type into the entry's flags byte."""
    return (atom << 4) | flags


def split_flags(byte: int) -> tuple[int, int]:
    """Unpack an entry's flags byte into (flags, atom type); the checksum bit
    :data:`FLAG_XXH3` of a batch entry is neither."""
    return byte & 0x0F, strip_checksum_bit(byte) >> 4


def strip_checksum_bit(byte: Any) -> Any:
    """The flags byte (an int or a numpy array of them) without a batch entry's
    :data:`FLAG_XXH3`: what it would be with a CRC32."""
    return byte & ~((byte & FLAG_BATCH) << 4)


def xxh3_32(data: Any) -> int:
    """The low 32 bits of XXH3-64 (seed 0): the checksum of an entry with :data:`FLAG_XXH3`."""
    return _xxh3_64(data) & 0xFFFFFFFF


#: The checksum function of an entry, indexed by its flags byte: the one place the hash is
#: chosen. A table rather than a branch, so a reader's walk calls zlib's CRC32 directly for
#: the many small entries (no Python frame per entry).
ENTRY_CHECKSUMS: tuple[Callable[[Any], int], ...] = tuple(
    xxh3_32 if fb & _XXH3_BATCH == _XXH3_BATCH else crc32 for fb in range(256)
)


def entry_checksum(body: Any, flags: int) -> int:
    """The checksum an entry whose flags byte is ``flags`` must store, over ``body`` (every
    byte of the entry after the checksum field); see :data:`ENTRY_CHECKSUMS`."""
    return ENTRY_CHECKSUMS[flags & 0xFF](body)


class EntryHasher:
    """:func:`entry_checksum` computed over a body given in pieces (streamed reads)."""

    def __init__(self, flags: int) -> None:
        """Start the hash of an entry whose flags byte is ``flags``."""
        self._xxh = _xxh3_state() if flags & _XXH3_BATCH == _XXH3_BATCH else None
        self._crc = 0

    def update(self, data: Any) -> None:
        """Add the next piece of the body."""
        if self._xxh is not None:
            self._xxh.update(data)
        else:
            self._crc = crc32(data, self._crc)

    def digest(self) -> int:
        """The checksum of everything added so far."""
        return self._xxh.intdigest() & 0xFFFFFFFF if self._xxh is not None else self._crc


def encode_file_header(segment: int, base_seq: int) -> bytes:
    """The 32-byte header that starts every segment file."""
    head = struct.pack("<8sHHIQ", MAGIC, FORMAT_VERSION, 0, segment, base_seq)
    return head + struct.pack("<II", crc32(head), 0)


def decode_file_header(data: bytes) -> tuple[int, int, int]:
    """Return (format version, segment number, base sequence), or raise ``ValueError``."""
    if len(data) < FILE_HEADER_SIZE:
        raise ValueError("segment shorter than its 32-byte header")
    magic, version, _, segment, base_seq, crc, _ = FILE_HEADER.unpack_from(data, 0)
    if magic != MAGIC:
        raise ValueError(f"bad magic {magic!r}, expected {MAGIC!r}")
    if crc != crc32(data[:24]):
        raise ValueError("segment header checksum mismatch")
    if version > FORMAT_VERSION:
        raise ValueError(f"format version {version} is newer than this synarrow ({FORMAT_VERSION})")
    return version, segment, base_seq


def encode_entry(ts_us: int, key: bytes, value: bytes, flags: int) -> bytes:
    """One complete entry: header with checksum, key, value (the checksum is the one
    ``flags`` names: XXH3 with :data:`FLAG_XXH3`, else CRC32)."""
    body = ENTRY_BODY_HEADER.pack(ts_us, len(key), len(value), flags) + key + value
    return CRC.pack(entry_checksum(body, flags)) + body


def key_entry_struct(key_len: int) -> struct.Struct:
    """Packs an entry body's header followed by a key of ``key_len`` bytes (what
    :func:`encode_entry` packs before the value), for writers that keep one per key:
    ``CRC.pack(crc32(body)) + body`` with ``body = s.pack(ts, key_len, len(value), flags,
    key) + value`` is the same entry as ``encode_entry``."""
    return struct.Struct(f"{ENTRY_BODY_HEADER.format}{key_len}s")


def encode_entry_parts(
    ts_us: int,
    key: bytes,
    parts: list[bytes | memoryview],
    flags: int,
    *,
    checksum: bool = True,
) -> list[bytes | memoryview]:
    """An entry whose value is the concatenation of ``parts``, without copying them.

    Returns buffers to write one after another (header and key first). A batch entry is
    checksummed with XXH3 (:data:`FLAG_XXH3` is set here), computed incrementally over the
    parts: these are the large entries, where CRC32 would cost about as much as the write.
    With ``checksum=False`` (batch entries only) the checksum field holds
    :data:`PENDING_CHECKSUM` for now: the writer computes :func:`entry_parts_checksum`
    while the buffers are written and stores it afterwards (an entry cut short by a crash
    in between fails its check like any torn entry).
    """
    if flags & FLAG_BATCH:
        flags |= FLAG_XXH3
    else:
        return [encode_entry(ts_us, key, b"".join(bytes(p) for p in parts), flags)]
    size = sum(memoryview(p).nbytes for p in parts)
    head = ENTRY_BODY_HEADER.pack(ts_us, len(key), size, flags) + key
    if not checksum:
        return [CRC.pack(PENDING_CHECKSUM) + head, *parts]
    h = _xxh3_state(head)
    for p in parts:
        h.update(p)
    return [CRC.pack(h.intdigest() & 0xFFFFFFFF) + head, *parts]


#: What the checksum field of a batch entry holds between the write of its bytes and the
#: write of its checksum (see :func:`encode_entry_parts`).
PENDING_CHECKSUM = 0


def entry_parts_checksum(record: list[bytes | memoryview]) -> bytes:
    """The 4 checksum bytes of a batch entry made by ``encode_entry_parts(...,
    checksum=False)`` (``record``: its buffers), to store at the entry's first byte.
    Runs outside the GIL for large parts (xxhash), so it can overlap the write."""
    h = _xxh3_state(memoryview(record[0])[CRC.size :])
    for p in record[1:]:
        h.update(p)
    return CRC.pack(h.intdigest() & 0xFFFFFFFF)
