"""The byte layout of segments and entries, as documented in docs/FORMAT.md."""

from __future__ import annotations

import struct
import zlib

import pytest

from synarrow.log import format as fmt


def test_entry_layout_is_as_documented() -> None:
    entry = fmt.encode_entry(1_700_000_000_000_000, b"temp", b"\x01\x02", 0x12)
    crc, ts, kl, vl, flags = struct.unpack_from("<IqHIB", entry)
    assert (ts, kl, vl, flags) == (1_700_000_000_000_000, 4, 2, 0x12)
    assert entry[19:23] == b"temp" and entry[23:] == b"\x01\x02"
    assert crc == zlib.crc32(entry[4:])
    assert len(entry) == fmt.ENTRY_HEADER_SIZE + 4 + 2


def test_entry_parts_equal_joined_entry() -> None:
    parts = fmt.encode_entry_parts(5, b"k", [b"ab", memoryview(b"cd")], 0x38)
    # Entries written in parts are the large ones: checksummed with XXH3.
    joined = fmt.encode_entry(5, b"k", b"abcd", 0x38 | fmt.FLAG_XXH3)
    assert b"".join(bytes(p) for p in parts) == joined


def test_flags_byte_packs_atom_in_high_nibble() -> None:
    b = fmt.flags_byte(fmt.FLAG_DELTA | fmt.FLAG_BATCH, fmt.Atom.VECTOR)
    assert b == 0x59
    assert fmt.split_flags(b) == (fmt.FLAG_DELTA | fmt.FLAG_BATCH, fmt.Atom.VECTOR)


def test_file_header_round_trip_and_damage() -> None:
    head = fmt.encode_file_header(7, 12345)
    assert len(head) == fmt.FILE_HEADER_SIZE == 32
    assert fmt.decode_file_header(head) == (fmt.FORMAT_VERSION, 7, 12345)
    damaged = bytearray(head)
    damaged[20] ^= 1
    with pytest.raises(ValueError, match="checksum"):
        fmt.decode_file_header(bytes(damaged))
    with pytest.raises(ValueError, match="magic"):
        fmt.decode_file_header(b"NOTALOG!" + head[8:])
    with pytest.raises(ValueError, match="shorter"):
        fmt.decode_file_header(head[:10])


def test_atom_vector_helper() -> None:
    v = fmt.Atom.vector([1, 2, 3])
    assert v.dtype.str == "<f4" and v.tolist() == [1.0, 2.0, 3.0]
