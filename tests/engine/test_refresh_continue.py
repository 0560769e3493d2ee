"""A reader's refresh replays only what the log gained when nothing else changed.

Shown by making the full rebuild fail: refreshes that meet a longer log (appends with delta
chains running across refreshes, several atom types, batches, deletes, range deletes, a
segment rotation) still succeed and match a reader opened afresh; a compaction or a
retention rule needs the rebuild again. Damage in the new part of the log is still found.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import synarrow
from synarrow.engine import engine as engine_module
from synarrow.engine import recovery
from synarrow.errors import CorruptionError
from tests.engine.test_refresh import MANUAL, T0, view

CONFIG = synarrow.DbConfig(sync_on_write=False, auto_compact=False, max_log_file_size=64 * 1024)


def _no_rebuild(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("refresh rebuilt the key states from scratch")


def _same_as_fresh(reader: synarrow.SynaDB, path: Path) -> None:
    with synarrow.SynaDB(path, MANUAL, readonly=True) as fresh:
        assert view(reader) == view(fresh)
        for key in fresh.keys():
            assert reader.get_history(key).equals(fresh.get_history(key))


def test_refresh_continues_the_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "db"
    with synarrow.SynaDB(path, CONFIG) as writer:
        writer.append("f", 1.5, timestamp=T0)
        writer.append("i", 7, timestamp=T0)
        writer.flush()
        reader = synarrow.SynaDB(path, MANUAL, readonly=True)
        try:
            monkeypatch.setattr(engine_module, "recover", _no_rebuild)
            ts = T0
            for round_ in range(40):
                for j in range(20):  # delta entries continuing the chains of before
                    ts += 1
                    writer.append("f", 1.5 + round_ + j / 8, timestamp=ts)
                    writer.append("i", 7 + 3 * round_ - j, timestamp=ts)
                if round_ % 7 == 3:
                    # incompressible: a segment rotates every few of these
                    writer.append("t", os.urandom(10_000).hex(), timestamp=ts)
                if round_ % 11 == 5:
                    writer.append_batch("b", np.arange(round_, round_ + 50.0))
                if round_ % 13 == 6:
                    writer.delete_range("f", ts - 5, ts - 2)
                if round_ == 20:
                    writer.delete("i")
                writer.flush()
                assert reader.refresh() is True
                assert reader.get("f") == writer.get("f")
                assert reader.get("i") == writer.get("i")
                assert reader.refresh() is False
            assert len(list((path / "log").glob("*.log"))) > 2
            monkeypatch.undo()
            _same_as_fresh(reader, path)
            assert view(reader) == view(writer)

            writer.compact()  # a new manifest: only a rebuild can follow it
            monkeypatch.setattr(engine_module, "recover", _no_rebuild)
            with pytest.raises(AssertionError, match="from scratch"):
                reader.refresh()
            monkeypatch.undo()
            assert reader.refresh() is True
            _same_as_fresh(reader, path)

            monkeypatch.setattr(engine_module, "recover", _no_rebuild)
            writer.append("f", 99.0, timestamp=ts + 100)
            writer.flush()
            assert reader.refresh() is True and reader.get("f") == 99.0
        finally:
            reader.close()


def test_damage_in_the_new_entries_is_found(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with synarrow.SynaDB(path, CONFIG) as writer:
        writer.append("a", 1.0, timestamp=T0)
        writer.flush()
        with synarrow.SynaDB(path, MANUAL, readonly=True) as reader:
            seg = max((path / "log").glob("*.log"))
            start = seg.stat().st_size
            for i in range(3):
                writer.append("a", 2.0 + i, timestamp=T0 + 1 + i)
            writer.flush()
            end = seg.stat().st_size
            with open(seg, "r+b") as f:  # a flipped bit in the second new entry's value
                f.seek(start + (end - start) // 2)
                byte = f.read(1)
                f.seek(-1, 1)
                f.write(bytes([byte[0] ^ 0x10]))
            with pytest.raises(CorruptionError, match="damaged bytes"):
                reader.refresh()
            assert reader.get("a") == 1.0  # the states as they were


CRASHING_WRITER = """
import os, sys, synarrow
path, t0 = sys.argv[1], int(sys.argv[2])
cfg = synarrow.DbConfig(sync_on_write=False, auto_compact=False, max_log_file_size=64 * 1024)
db = synarrow.SynaDB(path, cfg)
db.append("a", 2.0, timestamp=t0 + 1)
db.flush()
seg = max(p for p in os.listdir(os.path.join(path, "log")) if p.endswith(".log"))
with open(os.path.join(path, "log", seg), "ab") as f:
    f.write(b"\\x07" * 11)  # half an entry: the writer dies writing it
os._exit(0)
"""


def test_a_writer_restarted_after_a_crash_is_followed(tmp_path: Path) -> None:
    """The torn tail a crashed writer left is cut by the next writer; the reader continues
    from the end of the entries it verified, before the cut."""
    path = tmp_path / "db"
    with synarrow.SynaDB(path, CONFIG) as writer:
        writer.append("a", 1.0, timestamp=T0)
    with synarrow.SynaDB(path, MANUAL, readonly=True) as reader:
        subprocess.run([sys.executable, "-c", CRASHING_WRITER, str(path), str(T0)], check=True)
        assert reader.refresh() is True and reader.get("a") == 2.0
        with synarrow.SynaDB(path, CONFIG) as again:
            assert again.stats()["torn_bytes_cut_on_open"] == 11
            again.append("a", 3.0, timestamp=T0 + 2)
        assert reader.refresh() is True
        assert reader.get_history_floats("a").tolist() == [1.0, 2.0, 3.0]


def test_a_refresh_that_fails_half_way_is_followed_by_a_rebuild(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An error other than damage while new entries are replayed (here: after they were
    applied) leaves the reader to rebuild next time, never to replay them twice."""
    path = tmp_path / "db"
    with synarrow.SynaDB(path, CONFIG) as writer:
        writer.append("a", 1.0, timestamp=T0)
        writer.flush()
        with synarrow.SynaDB(path, MANUAL, readonly=True) as reader:
            real = recovery.replay_segment

            def applied_then_failed(*args: Any, **kwargs: Any) -> int:
                real(*args, **kwargs)
                raise MemoryError("out of memory after the replay")

            monkeypatch.setattr(recovery, "replay_segment", applied_then_failed)
            writer.append("a", 2.0, timestamp=T0 + 1)
            writer.flush()
            with pytest.raises(MemoryError):
                reader.refresh()
            monkeypatch.undo()
            writer.append("a", 3.0, timestamp=T0 + 2)
            writer.flush()
            assert reader.refresh() is True
            assert reader.get_history_floats("a").tolist() == [1.0, 2.0, 3.0]
            _same_as_fresh(reader, path)
