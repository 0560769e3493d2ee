"""Torn tails and damaged bytes: detected on open, never returned as data.

These tests really truncate and really flip bytes in copies of a database's files.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import synarrow
from synarrow.log.format import FILE_HEADER_SIZE

CFG = synarrow.DbConfig(sync_on_write=False, auto_compact=False)


def _history(db: synarrow.SynaDB) -> dict[str, list]:
    out = {}
    for k in db.keys():
        vals = db.get_history(k).column("value").to_pylist()
        out[k] = [v.tolist() if isinstance(v, np.ndarray) else v for v in vals]
    return out


def _write_mixed(path: Path) -> dict[str, list]:
    """A small database with every kind of entry; returns its expected contents."""
    with synarrow.SynaDB(path, CFG) as db:
        for i in range(40):
            db.append("f", 20.0 + i / 8)
            db.append("i", i * 3 - 50)
            if i % 5 == 0:
                db.append("t", f"text {i}" * (i + 1))
                db.append("b", bytes([i]) * 200)
                db.append("v", np.arange(4, dtype=np.float32) + i)
            if i == 20:
                db.append_batch("batch", np.arange(100, dtype=np.float64))
                db.delete("i")
        return _history(db)


def _segment(path: Path) -> Path:
    (seg,) = sorted((path / "log").glob("*.log"))
    return seg


def _drop_sidecars(path: Path) -> None:
    for f in (path / "log").glob("*.idx"):
        f.unlink()


def test_reopen_sees_everything(tmp_path: Path) -> None:
    path = tmp_path / "db"
    expected = _write_mixed(path)
    with synarrow.SynaDB(path, CFG) as db:
        assert _history(db) == expected


def _is_prefix_state(got: dict[str, list], expected_states: list[dict[str, list]]) -> bool:
    return got in expected_states


def _prefix_states(path: Path, tmp_path: Path) -> tuple[list[int], list[dict[str, list]]]:
    """Entry end offsets of the segment and the database contents after each prefix."""
    from synarrow.log.reader import scan_segment

    seg = _segment(path)
    scan = scan_segment(seg)
    ends = [*scan.offsets.tolist()[1:], scan.valid_end]
    states = []
    for end in [FILE_HEADER_SIZE, *ends]:
        copy = tmp_path / f"prefix-{end}"
        shutil.copytree(path, copy)
        _drop_sidecars(copy)
        os.truncate(_segment(copy), end)
        with synarrow.SynaDB(copy, CFG, readonly=True) as db:
            states.append(_history(db))
        shutil.rmtree(copy)
    return [FILE_HEADER_SIZE, *ends], states


def test_torn_tail_at_many_offsets_keeps_every_complete_entry(tmp_path: Path) -> None:
    path = tmp_path / "db"
    _write_mixed(path)
    ends, states = _prefix_states(path, tmp_path)
    size = ends[-1]
    rng = np.random.default_rng(7)
    cuts = sorted(set(rng.integers(FILE_HEADER_SIZE, size, 60).tolist()) | {size - 1, ends[5] + 1})
    for cut in cuts:
        copy = tmp_path / f"cut-{cut}"
        shutil.copytree(path, copy)
        _drop_sidecars(copy)
        os.truncate(_segment(copy), cut)
        complete = max(e for e in ends if e <= cut)
        with synarrow.SynaDB(copy, CFG) as db:
            assert _history(db) == states[ends.index(complete)]
            assert db.stats()["torn_bytes_cut_on_open"] == cut - complete
            # The torn bytes are gone before anything new is written ...
            db.append("after", 1.0)
        # ... so the new entry survives the next reopen, behind the kept entries.
        with synarrow.SynaDB(copy, CFG) as db:
            assert db.get("after") == 1.0
            got = _history(db)
            del got["after"]
            assert got == states[ends.index(complete)]
        shutil.rmtree(copy)


def test_garbage_and_zero_filled_tails_are_cut(tmp_path: Path) -> None:
    path = tmp_path / "db"
    expected = _write_mixed(path)
    for junk in (b"\x00" * 4096, np.random.default_rng(3).bytes(3000)):
        copy = tmp_path / f"junk-{len(junk)}"
        shutil.copytree(path, copy)
        _drop_sidecars(copy)
        with open(_segment(copy), "ab") as f:
            f.write(junk)
        with synarrow.SynaDB(copy, CFG) as db:
            assert _history(db) == expected
            assert db.stats()["torn_bytes_cut_on_open"] == len(junk)


def test_bit_flips_are_detected_never_returned(tmp_path: Path) -> None:
    path = tmp_path / "db"
    expected = _write_mixed(path)
    ends, states = _prefix_states(path, tmp_path)
    size = ends[-1]
    rng = np.random.default_rng(11)
    positions = sorted(set(rng.integers(FILE_HEADER_SIZE, size, 80).tolist()))
    detected = 0
    for pos in positions:
        copy = tmp_path / f"flip-{pos}"
        shutil.copytree(path, copy)
        seg = _segment(copy)
        with open(seg, "r+b") as f:
            f.seek(pos)
            byte = f.read(1)[0]
            f.seek(pos)
            f.write(bytes([byte ^ (1 << int(rng.integers(8)))]))
        try:
            with synarrow.SynaDB(copy, CFG, readonly=True) as db:
                got = _history(db)
        except synarrow.CorruptionError as exc:
            assert str(seg) in str(exc)
            detected += 1
        else:
            # Only a flip in the last entry can open: it is then a torn tail, dropped whole.
            assert got != expected or pos >= ends[-2]
            assert got in states
        shutil.rmtree(copy)
    assert detected >= len(positions) * 0.8


def test_repair_skips_damaged_entries_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with synarrow.SynaDB(path, CFG) as db:
        for i in range(2000):
            db.append(f"k{i % 10}", float(i))
    seg = _segment(path)
    data = bytearray(seg.read_bytes())
    data[len(data) // 2] ^= 0xFF
    seg.write_bytes(bytes(data))
    with pytest.raises(synarrow.CorruptionError, match="damaged bytes"):
        synarrow.SynaDB(path, CFG)
    with synarrow.SynaDB(path, CFG, repair=True) as db:
        stats = db.stats()
        assert len(stats["repaired_ranges"]) == 1
        total = sum(len(db.get_history(k)) for k in db.keys())
        # Delta chains crossing the damage are dropped up to their next absolute entry.
        assert 2000 - 1 - 10 * 31 <= total < 2000
        assert total + stats["entries_dropped_in_repair"] == 1999
        for k in db.keys():
            values = db.get_history_floats(k)
            assert all(int(v) % 10 == int(k[1:]) for v in values)  # only real values
            assert np.all(np.diff(values) > 0)


def test_damaged_segment_header_is_corruption(tmp_path: Path) -> None:
    path = tmp_path / "db"
    _write_mixed(path)
    seg = _segment(path)
    data = bytearray(seg.read_bytes())
    data[3] ^= 0x20
    seg.write_bytes(bytes(data))
    with pytest.raises(synarrow.CorruptionError, match="magic"):
        synarrow.SynaDB(path, CFG)


def test_stale_sidecar_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "db"
    expected = _write_mixed(path)
    seg = _segment(path)
    assert seg.with_suffix(".idx").exists()
    data = bytearray(seg.read_bytes())
    data[len(data) // 2] ^= 1  # the sidecar no longer matches: full verifying walk
    seg.write_bytes(bytes(data))
    with pytest.raises(synarrow.CorruptionError):
        synarrow.SynaDB(path, CFG)
    data[len(data) // 2] ^= 1
    seg.write_bytes(bytes(data))
    with synarrow.SynaDB(path, CFG) as db:
        assert _history(db) == expected


@pytest.mark.parametrize("damage", ["short", "zeroed"])
def test_interrupted_segment_creation_is_dropped(tmp_path: Path, damage: str) -> None:
    """A crash while a new segment was being started leaves a short or zero-filled file
    (its size persisted before its data); it never held an entry and is removed on open."""
    path = tmp_path / "db"
    expected = _write_mixed(path)
    nxt = path / "log" / "00000002.log"
    nxt.write_bytes(b"SYNAR" if damage == "short" else bytes(FILE_HEADER_SIZE + 64))
    with synarrow.SynaDB(path, CFG) as db:
        assert _history(db) == expected
        db.append("after", 1.0)
    with synarrow.SynaDB(path, CFG) as db:
        assert db.get("after") == 1.0


def test_damaged_header_of_a_segment_with_entries_is_corruption(tmp_path: Path) -> None:
    path = tmp_path / "db"
    _write_mixed(path)
    seg = _segment(path)
    data = bytearray(seg.read_bytes())
    data[0:8] = bytes(8)
    seg.write_bytes(bytes(data))
    with pytest.raises(synarrow.CorruptionError, match="magic"):
        synarrow.SynaDB(path, CFG)
