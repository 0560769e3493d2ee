"""The read snapshot: what a reader sees stays put while writers and compactions go on."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import synarrow
from synarrow.engine.snapshot import ReadSnapshot

NO_SYNC = synarrow.DbConfig(sync_on_write=False, auto_compact=False)


def _values(snap: ReadSnapshot, key: str) -> list[object]:
    chunks = snap.keys[key].chunks()
    return pa.concat_arrays([c.values for c in chunks]).to_pylist()


def _timestamps(snap: ReadSnapshot, key: str) -> list[int]:
    return np.concatenate([np.asarray(c.ts) for c in snap.keys[key].chunks()]).tolist()


@pytest.mark.parametrize("compacted_first", [False, True])
def test_snapshot_keeps_its_data_through_appends_deletes_and_compaction(
    db_path: Path, compacted_first: bool
) -> None:
    with synarrow.SynaDB(db_path, NO_SYNC) as db:
        db.append_batch("batch", np.arange(1000.0), timestamps=np.arange(1000))
        for i in range(5):
            db.append("single", i, timestamp=10 + i)
        db.append("text", "old", timestamp=1)
        if compacted_first:
            db.compact()
        snap = db.read_snapshot()
        ts_before = _timestamps(snap, "single")
        # Writers go on: appends to the open builder, new keys, deletes, compactions.
        for i in range(5, 50):
            db.append("single", i, timestamp=10 + i)
        db.append_batch("batch", np.arange(1000.0, 2000.0), timestamps=np.arange(1000, 2000))
        db.append("new", 1.5)
        assert db.delete("text")
        db.compact(full=True)
        db.append("single", 99, timestamp=1000)
        assert db.delete("batch")
        db.compact(full=True)
        # The snapshot still reads what was there when it was taken.
        assert set(snap.keys) == {"batch", "single", "text"}
        assert _values(snap, "batch") == list(np.arange(1000.0))
        assert _values(snap, "single") == [0, 1, 2, 3, 4]
        assert _timestamps(snap, "single") == ts_before == [10, 11, 12, 13, 14]
        assert _values(snap, "text") == ["old"]
        assert len(snap.keys["single"]) == 5
        assert snap.keys["text"].last().values.to_pylist() == ["old"]
        # ... and a new snapshot sees the changes.
        now = db.read_snapshot()
        assert set(now.keys) == {"single", "new"}
        assert _values(now, "single") == [*range(50), 99]
        assert snap.version != now.version


def test_snapshot_of_some_keys_skips_absent_and_deleted_ones(db: synarrow.SynaDB) -> None:
    db.append("a", 1.0)
    db.append("b", 2.0)
    db.delete("b")
    snap = db.read_snapshot(["a", "b", "missing", 5])  # type: ignore[list-item]
    assert list(snap) == ["a"]
    assert "a" in snap and "b" not in snap and len(snap) == 1


def test_data_version_changes_with_every_kind_of_write(db: synarrow.SynaDB) -> None:
    seen = [db.data_version]

    def changed() -> None:
        assert db.data_version not in seen
        assert db.read_snapshot().version == db.data_version
        seen.append(db.data_version)

    db.append("k", 1.0)
    changed()
    db.append("k", "text")
    changed()
    db.append_batch("k", np.arange(10))
    changed()
    db.append_batches([("a", [1.0], None), ("b", ["x"], None)])
    changed()
    assert db.delete("k")
    changed()
    db.compact()
    changed()
    # Reads and no-op deletes change nothing.
    db.get("a")
    db.get_history("a")
    db.read_snapshot()
    assert not db.delete("never-there")
    assert db.data_version == seen[-1]


def test_snapshot_and_version_after_close(db_path: Path) -> None:
    db = synarrow.SynaDB(db_path, NO_SYNC)
    db.append("k", 1.0)
    snap = db.read_snapshot()
    db.close()
    assert _values(snap, "k") == [1.0]  # taken before: still readable
    with pytest.raises(synarrow.DatabaseClosedError):
        db.read_snapshot()


def test_snapshots_taken_while_writing_and_compacting_are_consistent_prefixes(
    db_path: Path,
) -> None:
    """Each snapshot of a key being appended to holds an exact prefix of its history, and
    later snapshots never hold less, while automatic compactions fold the log meanwhile."""
    cfg = synarrow.DbConfig(
        sync_on_write=False, auto_compact=True, compact_threshold_bytes=64 * 1024
    )
    n = 20_000
    with synarrow.SynaDB(db_path, cfg) as db:
        done = threading.Event()
        errors: list[BaseException] = []

        def write() -> None:
            try:
                for i in range(n):
                    db.append("k", float(i))
                    if i % 1000 == 999:
                        db.append_batch("b", np.arange(i - 999, i + 1, dtype=np.int64))
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)
            finally:
                done.set()

        thread = threading.Thread(target=write)
        thread.start()
        seen, last_len, last_version = 0, 0, (0, 0)
        while not done.is_set() or seen < 3:
            snap = db.read_snapshot()
            seen += 1
            assert snap.version >= last_version
            last_version = snap.version
            if "k" in snap:
                values = _values(snap, "k")
                assert values == [float(i) for i in range(len(values))]
                assert len(values) >= last_len
                last_len = len(values)
            if "b" in snap:
                batch = _values(snap, "b")
                assert batch == list(range(len(batch))) and len(batch) % 1000 == 0
        thread.join()
        assert not errors
        db.wait_for_compaction()
        assert db.stats()["columnar_files"] > 0  # compactions did run meanwhile
        final = db.read_snapshot()
        assert _values(final, "k") == [float(i) for i in range(n)]
