"""The byte layout of log segments: file header, entry header, flags and checksum.

Pure encode/decode; no I/O. ``docs/FORMAT.md`` documents the same layout byte by byte.

Segment file::

    file header (32 bytes)  magic "SYNARLOG", version u16, reserved u16, segment number u32,
                            base sequence u64, CRC32 of the previous 24 bytes u32, reserved u32
    entry*                  back to back, no padding

Entry::

    crc32      u32   CRC32 of everything after this field: the rest of the header, key, value
    timestamp  i64   microseconds since the Unix epoch, UTC
    key_len    u16   bytes of UTF-8 key (1..65535)
    value_len  u32   bytes of stored value (after delta and LZ4 encoding)
    flags      u8    low nibble: DELTA 0x1, LZ4 0x2, TOMBSTONE 0x4, BATCH 0x8;
                     high nibble: atom type (0 null, 1 float, 2 int, 3 text, 4 bytes, 5 vector)
    key        key_len bytes
    value      value_len bytes

All integers are little-endian.
"""

from __future__ import annotations

import enum
import struct
import zlib
from typing import Any

__all__ = [
    "ATOM_NAMES",
    "CRC",
    "ENTRY_BODY_HEADER",
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
    "FORMAT_VERSION",
    "MAGIC",
    "MAX_KEY_BYTES",
    "MAX_VALUE_BYTES",
    "Atom",
    "crc32",
    "decode_file_header",
    "encode_entry",
    "encode_entry_parts",
    "encode_file_header",
    "flags_byte",
    "key_entry_struct",
    "split_flags",
]

MAGIC = b"SYNARLOG"
FORMAT_VERSION = 1

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

MAX_KEY_BYTES = 0xFFFF
MAX_VALUE_BYTES = 0xFFFFFFFF

crc32 = zlib.crc32


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
    """Unpack an entry's flags byte into (flags, atom type)."""
    return byte & 0x0F, byte >> 4


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
    """One complete entry: header with checksum, key, value."""
    body = ENTRY_BODY_HEADER.pack(ts_us, len(key), len(value), flags) + key + value
    return CRC.pack(crc32(body)) + body


def key_entry_struct(key_len: int) -> struct.Struct:
    """Packs an entry body's header followed by a key of ``key_len`` bytes (what
    :func:`encode_entry` packs before the value), for writers that keep one per key:
    ``CRC.pack(crc32(body)) + body`` with ``body = s.pack(ts, key_len, len(value), flags,
    key) + value`` is the same entry as ``encode_entry``."""
    return struct.Struct(f"{ENTRY_BODY_HEADER.format}{key_len}s")


def encode_entry_parts(
    ts_us: int, key: bytes, parts: list[bytes | memoryview], flags: int
) -> list[bytes | memoryview]:
    """An entry whose value is the concatenation of ``parts``, without copying them.

    Returns buffers to write one after another (header and key first); the checksum is
    computed incrementally over the parts.
    """
    size = sum(memoryview(p).nbytes for p in parts)
    head = ENTRY_BODY_HEADER.pack(ts_us, len(key), size, flags) + key
    crc = crc32(head)
    for p in parts:
        crc = crc32(p, crc)
    return [CRC.pack(crc) + head, *parts]
