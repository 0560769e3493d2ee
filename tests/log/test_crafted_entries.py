"""Log entries that pass their CRC but hold inconsistent payloads are refused at open.

Each test writes a real database, closes it, rewrites one entry of its segment with a
crafted payload and a recomputed CRC (so only the decoder's checks stand between the bytes
and numpy / Arrow), and reopens. Where the old behaviour was a crash later on (an Arrow
array with offsets outside its buffer), the reopen and the reads run in a subprocess, and
the test asserts it was not killed by a signal.
"""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import synarrow
from synarrow.errors import CorruptionError
from synarrow.log import codec
from synarrow.log.format import (
    ENTRY_HEADER,
    ENTRY_HEADER_SIZE,
    FILE_HEADER_SIZE,
    FLAG_BATCH,
    FLAG_LZ4,
    Atom,
    encode_entry,
    flags_byte,
)

CFG = synarrow.DbConfig(sync_on_write=False, auto_compact=False, compression=None)


def entries(segment: Path) -> tuple[bytes, list[list]]:
    """The file header and every entry as [ts, key, value, flags]."""
    data = segment.read_bytes()
    out = []
    off = FILE_HEADER_SIZE
    while off < len(data):
        _, ts, kl, vl, fb = ENTRY_HEADER.unpack_from(data, off)
        key = data[off + ENTRY_HEADER_SIZE : off + ENTRY_HEADER_SIZE + kl]
        value = data[off + ENTRY_HEADER_SIZE + kl : off + ENTRY_HEADER_SIZE + kl + vl]
        out.append([ts, key, value, fb])
        off += ENTRY_HEADER_SIZE + kl + vl
    return data[:FILE_HEADER_SIZE], out


def rewrite(segment: Path, header: bytes, items: list[list]) -> None:
    """Write the segment back, every entry with a freshly computed CRC; drop the sidecar."""
    segment.write_bytes(header + b"".join(encode_entry(*item) for item in items))
    segment.with_suffix(".idx").unlink(missing_ok=True)


def batch_db(path: Path, values: object) -> tuple[Path, bytes, list[list]]:
    with synarrow.SynaDB(path, CFG) as db:
        db.append("before", 1.0)
        db.append_batch("b", values)
    seg = path / "log" / "00000001.log"
    header, items = entries(seg)
    assert items[1][1] == b"b" and items[1][3] & FLAG_BATCH
    return seg, header, items


def split_text_payload(payload: bytes) -> tuple[int, int, np.ndarray, bytes]:
    count, _, ts_mode, pad, _ = codec.BATCH_HEADER.unpack_from(payload, 0)
    assert ts_mode == codec.TS_SEQUENCE
    start = codec.BATCH_HEADER.size + pad
    offsets = np.frombuffer(payload, "<i8", count + 1, start).copy()
    return count, start, offsets, payload[start + 8 * (count + 1) :]


READ_EVERYTHING = """
import sys, synarrow
try:
    db = synarrow.SynaDB(sys.argv[1], readonly=True)
    for key in db.keys():
        db.get(key)
        db.get_history(key).to_pylist()
    db.export_dataset(sys.argv[2])
    print("OPENED")
except synarrow.SynaError as exc:
    print(type(exc).__name__, exc)
"""


def open_in_subprocess(path: Path, tmp_path: Path) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", READ_EVERYTHING, str(path), str(tmp_path / "export")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode >= 0, f"killed by signal {-proc.returncode}: {proc.stderr[-2000:]}"
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.parametrize(
    "patch",
    [
        "negative_offset",
        "offset_past_data",
        "decreasing_offsets",
        "first_offset_not_zero",
    ],
)
def test_crafted_text_offsets_are_refused_not_crashing(tmp_path: Path, patch: str) -> None:
    path = tmp_path / "t.db"
    seg, header, items = batch_db(path, ["alpha", "beta", "gamma", "delta"])
    _, start, offsets, data = split_text_payload(items[1][2])
    if patch == "negative_offset":
        offsets[2] = -(1 << 40)
    elif patch == "offset_past_data":
        offsets[2] = 1 << 30
    elif patch == "decreasing_offsets":
        offsets[1], offsets[2] = offsets[2], offsets[1]
    else:
        offsets[0] = 3
    payload = items[1][2][:start] + offsets.astype("<i8").tobytes() + data
    items[1][2] = payload
    rewrite(seg, header, items)
    out = open_in_subprocess(path, tmp_path)
    assert out.startswith("CorruptionError"), out
    assert "00000001.log" in out and "does not decode" in out


@pytest.mark.parametrize(
    "values, patch",
    [
        (np.arange(6, dtype=np.float64), "count_too_large"),
        (np.arange(6, dtype=np.float64), "count_too_small"),
        (np.arange(6, dtype=np.int64), "unknown_ts_mode"),
        (np.ones((3, 4), dtype=np.float32), "zero_dimension"),
        (np.ones((3, 4), dtype=np.float32), "huge_dimension"),
        (["é", "ü"], "split_character"),
        (["ok", "fine"], "invalid_utf8"),
    ],
)
def test_inconsistent_batch_headers_raise_corruption(
    tmp_path: Path, values: object, patch: str
) -> None:
    path = tmp_path / "t.db"
    seg, header, items = batch_db(path, values)
    payload = bytearray(items[1][2])
    count, dim, ts_mode, pad, res = codec.BATCH_HEADER.unpack_from(payload, 0)
    if patch == "count_too_large":
        count += 1
    elif patch == "count_too_small":
        count -= 1
    elif patch == "unknown_ts_mode":
        ts_mode = 7
    elif patch == "zero_dimension":
        dim = 0
    elif patch == "huge_dimension":
        dim = 1 << 31
    elif patch == "split_character":
        # "é" + "ü" as b"\xc3" | b"\xa9\xc3\xbc": the whole is UTF-8, the values are not.
        _, start, offsets, _ = split_text_payload(bytes(payload))
        offsets[1] = 1
        payload[start : start + 8 * (count + 1)] = offsets.astype("<i8").tobytes()
    elif patch == "invalid_utf8":
        payload[-1] = 0xFF
    codec.BATCH_HEADER.pack_into(payload, 0, count, dim, ts_mode, pad, res)
    items[1][2] = bytes(payload)
    rewrite(seg, header, items)
    with pytest.raises(CorruptionError, match="does not decode"):
        synarrow.SynaDB(path, CFG)
    with pytest.raises(CorruptionError):
        synarrow.SynaDB(path, readonly=True)


@pytest.mark.parametrize(
    "atom, value, flags",
    [
        (Atom.FLOAT, b"\x00" * 7, 0),  # a plain float of 7 bytes (was struct.error)
        (Atom.INT, b"\x00" * 9, 0),
        (Atom.VECTOR, b"\x00" * 6, 0),  # not a whole number of float32
        (Atom.VECTOR, b"", 0),
        (Atom.NULL, b"junk", 0),
        (Atom.TEXT, b"\xff\xfe", 0),
        (6, b"\x00" * 8, 0),  # an atom type that does not exist
        (7, b"\x00" * 8, 0),
        (0xE, b"\x00" * 8, 0),  # the same with the XXH3 checksum bit (0x80) set
        (Atom.BYTES, struct.pack("<I", 0xFFFFFFF0) + b"\x00" * 12, FLAG_LZ4),  # claims 4 GiB
        (Atom.BYTES, b"\x05\x00", FLAG_LZ4),  # shorter than its stored size
        (Atom.TEXT, struct.pack("<I", 100) + b"\x99" * 40, FLAG_LZ4),  # not LZ4 at all
    ],
)
def test_crafted_single_entries_raise_corruption(
    tmp_path: Path, atom: int, value: bytes, flags: int
) -> None:
    path = tmp_path / "t.db"
    with synarrow.SynaDB(path, CFG) as db:
        db.append("a", 1.0)
        db.append("z", b"placeholder")
    seg = path / "log" / "00000001.log"
    header, items = entries(seg)
    items[1][2] = value
    items[1][3] = flags_byte(flags, atom)
    rewrite(seg, header, items)
    with pytest.raises(CorruptionError, match="does not decode"):
        synarrow.SynaDB(path, CFG)


def test_key_that_is_not_utf8_raises_corruption(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    with synarrow.SynaDB(path, CFG) as db:
        db.append("ab", 1.0)
    seg = path / "log" / "00000001.log"
    header, items = entries(seg)
    items[0][1] = b"\xff\xfe"
    rewrite(seg, header, items)
    with pytest.raises(CorruptionError, match="not UTF-8"):
        synarrow.SynaDB(path, CFG)


def test_untouched_entries_still_read_back(tmp_path: Path) -> None:
    """The checks accept everything the writer produces (no false alarms)."""
    path = tmp_path / "t.db"
    values = {
        "f": np.linspace(0, 1, 50),
        "i": np.arange(-20, 30, dtype=np.int64),
        "v": np.arange(12, dtype=np.float32).reshape(4, 3),
        "s": ["", "é", "日本", "x" * 3000],
        "b": [b"", b"\x00\xff", b"y" * 2000],
    }
    for compression in (None, "lz4"):
        with synarrow.SynaDB(path, CFG.replace(compression=compression)) as db:
            for key, vals in values.items():
                db.append_batch(key, vals)
            db.append("single", "ü" * 2000)
            db.append("n", None)
            db.append("vec", np.ones(3, dtype=np.float32))
        for f in (path / "log").glob("*.idx"):
            f.unlink()  # force the verifying walk and the full decode
        with synarrow.SynaDB(path, readonly=True) as db:
            assert db.get_history("s").column("value").to_pylist()[-4:] == values["s"]
            assert db.get_history("b").column("value").to_pylist()[-3:] == values["b"]
            assert db.get("single") == "ü" * 2000 and db.get("n") is None


def test_crafted_sidecar_offsets_fall_back_to_the_walk(tmp_path: Path) -> None:
    """A sidecar whose checksums were recomputed but whose offsets do not tile the segment
    is ignored: the verifying walk runs instead and the values are right."""
    import lz4.block

    from synarrow.log.format import crc32
    from synarrow.log.sidecar import HEAD, MAGIC

    path = tmp_path / "t.db"
    with synarrow.SynaDB(path, CFG) as db:
        for i in range(100):
            db.append("k", float(i))
    seg = path / "log" / "00000001.log"
    data = seg.read_bytes()
    for lengths in (
        np.array([FILE_HEADER_SIZE] + [1] * 99, dtype="<u4"),  # entries one byte long
        np.array([FILE_HEADER_SIZE + 7] + [30] * 99, dtype="<u4"),  # shifted
        np.array([FILE_HEADER_SIZE] + [0xFFFFFFFF] * 99, dtype="<u4"),  # past the end
    ):
        body = lz4.block.compress(lengths.tobytes(), store_size=True)
        head = HEAD.pack(MAGIC, len(data), len(lengths), crc32(data), crc32(body))
        seg.with_suffix(".idx").write_bytes(head + body)
        with synarrow.SynaDB(path, readonly=True) as db:
            assert db.get_history("k").column("value").to_pylist() == [float(i) for i in range(100)]
    # A sidecar claiming far more entries than the segment can hold is not decompressed.
    body = struct.pack("<I", 0xFFFFFFF0) + b"\x00" * 16
    head = HEAD.pack(MAGIC, len(data), 1 << 30, crc32(data), crc32(body))
    seg.with_suffix(".idx").write_bytes(head + body)
    with synarrow.SynaDB(path, readonly=True) as db:
        assert db.get("k") == 99.0
