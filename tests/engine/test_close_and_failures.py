"""close() releases the database only when nothing of it still runs; a batch whose entries
were written but could not be made visible is cut out, never half-applied."""

from __future__ import annotations

import errno
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import synarrow
from synarrow import DbConfig
from synarrow.engine import batches
from synarrow.errors import DatabaseClosedError, InvalidValueError


def test_close_waits_for_a_compaction_running_on_another_thread(tmp_path: Path) -> None:
    db = synarrow.SynaDB(tmp_path / "e.db", DbConfig(sync_on_write=False, auto_compact=False))
    for i in range(500):
        db.append_batch(f"k{i}", np.arange(20_000, dtype=np.float64))
    done: dict[str, Any] = {}

    def compact() -> None:
        try:
            db.compact(full=True)
            done["at"] = time.perf_counter()
        except DatabaseClosedError:
            done["refused"] = True  # close came first: the compaction never started

    thread = threading.Thread(target=compact)
    thread.start()
    time.sleep(0.05)
    db.close()
    closed_at = time.perf_counter()
    thread.join()
    assert done.get("refused") or done["at"] <= closed_at, "a compaction outlived close()"
    with synarrow.SynaDB(tmp_path / "e.db") as again:  # the lock is free, nothing was lost
        assert len(again) == 500
        assert again.get_history_floats("k499").tolist() == list(range(20_000))


def test_no_automatic_compaction_outlives_close(tmp_path: Path) -> None:
    cfg = DbConfig(sync_on_write=False, compact_threshold_bytes=4096, max_log_file_size=64 * 1024)
    for attempt in range(10):
        db = synarrow.SynaDB(tmp_path / f"d{attempt}.db", cfg)
        started = threading.Event()

        def write(db: synarrow.SynaDB = db, started: threading.Event = started) -> None:
            started.set()
            try:
                while True:
                    db.append("k", 1.0)
            except DatabaseClosedError:
                pass

        thread = threading.Thread(target=write)
        thread.start()
        started.wait()
        time.sleep(0.05)
        db.close()
        alive = [
            t for t in threading.enumerate() if t.name == "synarrow-auto-compact" and t.is_alive()
        ]
        thread.join()
        assert not alive, f"attempt {attempt}: a compaction is still running after close()"


def test_a_second_close_returns_once_the_first_is_done(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    db = synarrow.SynaDB(path)
    db.append("k", 1.0)
    db.on_close(lambda: time.sleep(0.5))  # a slow attached resource, such as a query ending
    first = threading.Thread(target=db.close)
    first.start()
    time.sleep(0.1)
    db.close()
    with synarrow.SynaDB(path) as again:  # released: no DatabaseLockedError
        assert again.get("k") == 1.0
    first.join()


@pytest.mark.parametrize("values", [[1.0, "a"], [1, "a"], ["a", b"b"]])
def test_mixed_type_batches_are_refused(tmp_path: Path, values: list[Any]) -> None:
    with synarrow.SynaDB(tmp_path / "m.db") as db:
        with pytest.raises(InvalidValueError, match="mixes"):
            db.append_batch("q", values)
        assert db.next_sequence == 0


def _enomem(*args: object, **kwargs: object) -> Any:
    raise OSError(errno.ENOMEM, "Cannot allocate memory")


def test_a_batch_that_cannot_be_mapped_is_copied(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "b.db"
    values = np.arange(200_000, dtype=np.float64)  # large enough to be mapped normally
    with synarrow.SynaDB(path, DbConfig(sync_on_write=False, auto_compact=False)) as db:
        monkeypatch.setattr(batches, "mapped_chunks", _enomem)
        assert db.append_batch("k", values) == len(values)
        assert np.array_equal(db.get_history_floats("k"), values)
    with synarrow.SynaDB(path) as again:
        assert np.array_equal(again.get_history_floats("k"), values)


def test_a_batch_that_cannot_be_made_visible_is_cut_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "b.db"
    with synarrow.SynaDB(path, DbConfig(sync_on_write=False, auto_compact=False)) as db:
        db.append("a", 1.0)
        monkeypatch.setattr(batches, "mapped_chunks", _enomem)
        monkeypatch.setattr(batches, "copied_chunk", _enomem)
        with pytest.raises(OSError):
            db.append_batches([("b", np.arange(10.0), None), ("c", np.arange(200_000.0), None)])
        assert "b" not in db and "c" not in db and db.next_sequence == 1
        monkeypatch.undo()
        db.append("a", 2.0)  # the log goes on right after the cut
    with synarrow.SynaDB(path) as again:
        assert again.keys() == ["a"]
        assert again.get_history_floats("a").tolist() == [1.0, 2.0]
