"""The shared head of writers="many" handles: a dead writer's turn is cut, a damaged head
makes a handle rebuild from the files, temporaries in use are left alone."""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

from synarrow import DbConfig, SynaDB
from synarrow.fileio import ABANDONED_AFTER, DurableTemp, remove_abandoned
from synarrow.log.shared import HEAD_NAME

_HEAD = struct.Struct("<8sQQQQQQQ")


def _head(path: Path) -> tuple:
    return _HEAD.unpack((path / HEAD_NAME).read_bytes()[: _HEAD.size])


def test_a_turn_left_half_done_is_cut_by_the_next_writer(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with SynaDB(path) as db:
        db.append("k", 1.0)
    magic, seg, end, seq, gen, rules, _, spare = _head(path)
    # What a writer killed in its turn leaves: the head marked as being written and half
    # an entry after its end.
    (path / HEAD_NAME).write_bytes(_HEAD.pack(magic, seg, end, seq, gen, rules, 1, spare))
    segment = path / "log" / f"{seg:08d}.log"
    with open(segment, "ab") as f:
        f.write(b"\x07" * 11)
    a = SynaDB(path)  # opens under the append lock: its recovery cuts the torn tail
    b = SynaDB(path)
    try:
        # Again, while both are open, with a segment the dead turn had just started too.
        (path / HEAD_NAME).write_bytes(_HEAD.pack(*_head(path)[:6], 1, 0))
        active = a._engine.writer.segment
        with open(path / "log" / f"{active:08d}.log", "ab") as f:
            f.write(b"\x09" * 7)
        (path / "log" / f"{active + 1:08d}.log").write_bytes(b"\0" * 32)
        b.append("k", 2.0)  # b's turn finds the head marked: it cuts both first
        assert not (path / "log" / f"{active + 1:08d}.log").exists()
        a.append("k", 3.0)
        a.refresh()
        assert a.get_history_floats("k").tolist() == [1.0, 2.0, 3.0]
    finally:
        a.close()
        b.close()
    with SynaDB(path, readonly=True) as r:
        assert r.get_history_floats("k").tolist() == [1.0, 2.0, 3.0]
        assert r.stats()["torn_bytes_cut_on_open"] == 0


def test_a_damaged_head_makes_the_writer_rebuild_from_the_files(tmp_path: Path) -> None:
    path = tmp_path / "db"
    a = SynaDB(path, DbConfig(sync_on_write=False))
    b = SynaDB(path)
    try:
        a.append("k", 1.0)
        a.flush()
        (path / HEAD_NAME).write_bytes(b"garbage" * 3)
        b.append("k", 2.0)
        a.append("k", 3.0)
        a.flush()
        b.refresh()
        assert b.get_history_floats("k").tolist() == [1.0, 2.0, 3.0]
    finally:
        a.close()
        b.close()


def test_a_kept_head_makes_the_next_holder_read_the_end_from_the_files(tmp_path: Path) -> None:
    """What a writer that kept the lock and died leaves: a head marked kept whose end is
    from when it began keeping, its entries after that end, a torn entry last. The next
    holder keeps every entry (it does not cut at the stale end) and cuts the torn one."""
    path = tmp_path / "db"
    a = SynaDB(path)
    b = SynaDB(path)
    try:
        a.append("k", 1.0)
        b.append("k", 1.5)  # b's last turn ended with the head the dead keeper began with
        stale = _head(path)
        for v in (2.0, 3.0, 4.0):
            a.append("k", v)
        (path / HEAD_NAME).write_bytes(_HEAD.pack(*stale[:6], 2, 0))
        segment = path / "log" / f"{stale[1]:08d}.log"
        with open(segment, "ab") as f:
            f.write(b"\x03" * 9)
        b.append("k", 5.0)
        assert b.get_history_floats("k").tolist() == [1.0, 1.5, 2.0, 3.0, 4.0, 5.0]
        assert _head(path)[6] == 0
        a.append("k", 6.0)
        assert a.get_history_floats("k").tolist() == [1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0]
    finally:
        a.close()
        b.close()
    with SynaDB(path, readonly=True) as r:
        assert r.get_history_floats("k").tolist() == [1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0]


def test_temporaries_being_written_are_not_removed(tmp_path: Path) -> None:
    busy = DurableTemp(tmp_path / "tmp-busy")
    try:
        os.utime(busy.path, (0, 0))  # old, but its writer holds it
        assert not remove_abandoned(busy.path)
        assert busy.path.exists()
    finally:
        busy._close_fd()
    young = tmp_path / "tmp-young"
    young.write_bytes(b"x")
    assert not remove_abandoned(young)  # may have been created a moment ago
    old = tmp_path / "tmp-old"
    old.write_bytes(b"x")
    then = time.time() - ABANDONED_AFTER - 5
    os.utime(old, (then, then))
    assert remove_abandoned(old) and not old.exists()
