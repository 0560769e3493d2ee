"""The two entry checksums: CRC32 (every entry of version-1 segments, small entries) and the
low 32 bits of XXH3-64 (entries flagged ``FLAG_XXH3``: batch entries since format 2)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

import synarrow
from synarrow.errors import CorruptionError
from synarrow.log import format as fmt
from synarrow.log.reader import entry_ok, scan_segment, walk

CFG = synarrow.DbConfig(sync_on_write=False, auto_compact=False, compression=None)

flags_st = st.integers(0, 0x0F)
atom_st = st.integers(0, 5)


def test_the_checksum_bit_is_only_a_batch_entrys() -> None:
    # Range tombstones use the whole atom nibble (0xF0) without BATCH: a CRC32 as before.
    tomb = fmt.encode_entry(1, b"k", bytes(16), 0xF0)
    assert struct.unpack_from("<I", tomb)[0] == zlib.crc32(tomb[4:])
    assert fmt.split_flags(0xF0) == (0, 0xF)
    assert fmt.split_flags(0x80 | 0x58) == (0x08, 5)
    assert fmt.strip_checksum_bit(np.array([0xF0, 0xD8, 0x18], np.uint8)).tolist() == [
        0xF0,
        0x58,
        0x18,
    ]


def test_xxh3_entry_layout_is_as_documented() -> None:
    entry = fmt.encode_entry(7, b"k", b"value", fmt.flags_byte(fmt.FLAG_BATCH, 1) | fmt.FLAG_XXH3)
    (checksum,) = struct.unpack_from("<I", entry)
    assert checksum == xxhash.xxh3_64_intdigest(entry[4:]) & 0xFFFFFFFF
    assert checksum != zlib.crc32(entry[4:])
    assert fmt.split_flags(entry[18]) == (fmt.FLAG_BATCH, 1)


@settings(max_examples=200, deadline=None)
@given(
    ts=st.integers(-(2**63), 2**63 - 1),
    key=st.binary(min_size=1, max_size=40),
    parts=st.lists(st.binary(max_size=300), max_size=5),
    flags=flags_st,
    atom=atom_st,
)
def test_parts_round_trip_and_verify(
    ts: int, key: bytes, parts: list[bytes], flags: int, atom: int
) -> None:
    fb = fmt.flags_byte(flags, atom)
    entry = b"".join(bytes(p) for p in fmt.encode_entry_parts(ts, key, parts, fb))
    xxh3 = fmt.FLAG_XXH3 if flags & fmt.FLAG_BATCH else 0  # batch entries only
    assert entry == fmt.encode_entry(ts, key, b"".join(parts), fb | xxh3)
    data = bytearray(entry) + bytes(8)
    assert entry_ok(data, 0, len(entry)) == len(entry)
    old = fmt.encode_entry(ts, key, b"".join(parts), fb)  # CRC32, as format 1 wrote it
    assert entry_ok(bytearray(old) + bytes(8), 0, len(old)) == len(old)
    assert fmt.split_flags(entry[18]) == (flags, atom)


@settings(max_examples=300, deadline=None)
@given(
    key=st.binary(min_size=1, max_size=20),
    value=st.binary(min_size=0, max_size=200),
    xxh3=st.booleans(),
    where=st.integers(0, 10_000),
    bit=st.integers(0, 7),
)
def test_any_flipped_bit_is_detected(
    key: bytes, value: bytes, xxh3: bool, where: int, bit: int
) -> None:
    fb = fmt.flags_byte(fmt.FLAG_BATCH, 1) | (fmt.FLAG_XXH3 if xxh3 else 0)
    entry = bytearray(fmt.encode_entry(1, key, value, fb))
    entry[where % len(entry)] ^= 1 << bit
    data = entry + bytes(8)
    assert entry_ok(data, 0, len(entry)) == -1
    assert walk(data, 0, len(entry))[0] == []


def _batch_segment(path: Path, values: np.ndarray) -> Path:
    with synarrow.SynaDB(path, CFG) as db:
        db.append("a", 1.0)
        db.append_batch("b", values)
        db.append("c", 2.0)
    return path / "log" / "00000001.log"


def test_batch_entries_are_written_with_xxh3(tmp_path: Path) -> None:
    seg = _batch_segment(tmp_path / "t.db", np.arange(1000, dtype=np.float64))
    scan = scan_segment(seg)
    fbs = [scan.data[int(o) + 18] for o in scan.offsets]
    assert [bool(fb & fmt.FLAG_XXH3) for fb in fbs] == [False, True, False]
    assert fmt.decode_file_header(bytes(scan.data[:32]))[0] == fmt.FORMAT_VERSION == 2


@pytest.mark.parametrize("where", ["header", "key", "values", "last byte"])
def test_damaged_xxh3_batch_entry_is_corruption(tmp_path: Path, where: str) -> None:
    values = np.arange(1000, dtype=np.float64)
    seg = _batch_segment(tmp_path / "t.db", values)
    seg.with_suffix(".idx").unlink(missing_ok=True)
    scan = scan_segment(seg)
    start, nxt = int(scan.offsets[1]), int(scan.offsets[2])
    at = {"header": start + 8, "key": start + 19, "values": start + 400, "last byte": nxt - 1}
    data = bytearray(seg.read_bytes())
    data[at[where]] ^= 0x10
    seg.write_bytes(bytes(data))
    with pytest.raises(CorruptionError, match="damaged bytes"):
        synarrow.SynaDB(tmp_path / "t.db", readonly=True)
    with synarrow.SynaDB(tmp_path / "t.db", repair=True) as db:
        assert db.get("a") == 1.0 and db.get("c") == 2.0
        assert "b" not in db.keys()


def test_torn_xxh3_batch_entry_is_cut_off(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    with synarrow.SynaDB(path, CFG) as db:
        db.append("a", 1.0)
        db.append_batch("b", np.arange(5000, dtype=np.float64))
    seg = path / "log" / "00000001.log"
    seg.with_suffix(".idx").unlink(missing_ok=True)
    data = seg.read_bytes()
    seg.write_bytes(data[: len(data) - 100])
    with synarrow.SynaDB(path, CFG) as db:
        assert db.get("a") == 1.0 and "b" not in db.keys()
        db.append_batch("b", np.arange(3, dtype=np.float64))
    with synarrow.SynaDB(path, readonly=True) as db:
        assert db.get_history("b") is not None
        assert db.get("b") == 2.0


def _format1_segment(path: Path) -> Path:
    """A database whose segment is byte for byte what version 1 wrote: its header says
    version 1 and every entry, batches included, carries a CRC32."""
    with synarrow.SynaDB(path, CFG) as db:
        db.append("a", 1.0)
        db.append_batch("b", np.arange(100, dtype=np.float64))
        db.append("c", "text")
    seg = path / "log" / "00000001.log"
    data = seg.read_bytes()
    head = struct.pack("<8sHHIQ", fmt.MAGIC, 1, 0, *struct.unpack_from("<IQ", data, 12))
    out = [head + struct.pack("<II", zlib.crc32(head), 0)]
    for off in scan_segment(seg).offsets:
        _, ts, kl, vl, fb = fmt.ENTRY_HEADER.unpack_from(data, int(off))
        body = data[int(off) + 19 : int(off) + 19 + kl + vl]
        out.append(fmt.encode_entry(ts, body[:kl], body[kl:], fb & ~fmt.FLAG_XXH3))
    seg.write_bytes(b"".join(out))
    seg.with_suffix(".idx").unlink(missing_ok=True)
    return seg


def test_format1_segment_still_opens_and_continues(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    seg = _format1_segment(path)
    assert fmt.decode_file_header(seg.read_bytes()[:32])[0] == 1
    assert not any(seg.read_bytes()[int(o) + 18] & fmt.FLAG_XXH3 for o in scan_segment(seg).offsets)
    with synarrow.SynaDB(path, CFG) as db:
        assert db.get("a") == 1.0 and db.get("b") == 99.0 and db.get("c") == "text"
        db.append_batch("d", np.arange(10, dtype=np.float64))
    with synarrow.SynaDB(path, readonly=True) as db:
        assert db.get("b") == 99.0 and db.get("d") == 9.0
        assert len(db.get_history("b")) == 100


def test_format1_damage_is_still_corruption(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    seg = _format1_segment(path)
    scan = scan_segment(seg)
    data = bytearray(seg.read_bytes())
    data[int(scan.offsets[1]) + 300] ^= 0x01
    seg.write_bytes(bytes(data))
    with pytest.raises(CorruptionError, match="damaged bytes"):
        synarrow.SynaDB(path, readonly=True)


def test_sidecar_is_xxh3_and_an_old_crc32_sidecar_still_counts(tmp_path: Path) -> None:
    import lz4.block

    from synarrow.log import sidecar

    seg = _batch_segment(tmp_path / "t.db", np.arange(10, dtype=np.float64))
    idx = seg.with_suffix(".idx")
    raw = idx.read_bytes()
    assert raw[:8] == sidecar.MAGIC == b"SYNAIDX3"
    data = bytearray(seg.read_bytes()) + bytes(8)
    size = len(data) - 8
    known = sidecar.read_sidecar(seg, data, size)
    assert known is not None
    offsets = known.offsets
    walked = scan_segment(seg)
    assert offsets.tolist() == walked.offsets.tolist()
    # the lengths read while checking the offsets are each entry's own
    assert known.key_lengths.tolist() == [
        int.from_bytes(data[o + 12 : o + 14], "little") for o in offsets
    ]
    assert known.value_lengths.tolist() == [
        int.from_bytes(data[o + 14 : o + 18], "little") for o in offsets
    ]
    # The same offsets in the layout earlier versions wrote (CRC32s).
    lengths = np.diff(offsets, prepend=0).astype("<u4")
    body = lz4.block.compress(lengths.tobytes(), store_size=True)
    head = sidecar.HEAD_V2.pack(
        sidecar.MAGIC_V2, size, len(offsets), zlib.crc32(data[:size]), zlib.crc32(body)
    )
    idx.write_bytes(head + body)
    again = sidecar.read_sidecar(seg, data, size)
    assert again is not None and again.offsets.tolist() == offsets.tolist()
    # One byte of the segment changed: neither sidecar vouches for it any more.
    data[size - 1] ^= 1
    assert sidecar.read_sidecar(seg, data, size) is None
    idx.write_bytes(raw)
    assert sidecar.read_sidecar(seg, data, size) is None
