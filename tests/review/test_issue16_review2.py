"""Second review of issue 16 (vector store metadata, insert times, compaction): lost or wrong
data after crashes, snapshots, compaction and writes through ``store.db``. Each test is a
finding of the review of the merged branch; they fail until the cause is fixed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import synarrow
from synarrow.errors import InvalidArgumentError

A = [1.0, 0.0, 0.0]
B = [0.0, 1.0, 0.0]


def _cfg() -> synarrow.DbConfig:
    return synarrow.DbConfig(sync_on_write=False)


def _open(path: Path, **kw) -> synarrow.VectorStore:
    return synarrow.VectorStore(path, config=_cfg(), auto_compact=False, **kw)


def _inserted_at(store: synarrow.VectorStore, key: str) -> int:
    """The insert time (microseconds) the store reports for ``key``."""
    table = store.to_arrow(with_metadata=True)
    row = table["key"].to_pylist().index(key)
    return table["inserted_at"][row].value


def _log_ts(store: synarrow.VectorStore, key: str) -> int:
    """The timestamp (microseconds) of ``key``'s latest entry in the log."""
    return store.db.get_history(key, last=1)["ts"][0].value


def _micros_later(ts: int) -> None:
    """Wait until the clock is past ``ts`` (so the next write gets a later timestamp)."""
    while time.time_ns() // 1000 <= ts + 1:
        time.sleep(0.0005)


def test_metadata_of_a_deleted_key_comes_back_when_it_is_reinserted_without_any(tmp_path):
    """A key inserted without metadata has none ("A key's record is replaced with its
    vector"). But once a fold of the metadata log (any catch-up: ``flush()`` after writing
    through ``store.db``, or the open after a crash) finds no live record, the store forgets
    every field, and an insert then writes *no* metadata log entry. The next fold matches the
    key's vector fingerprint against the deleted key's old entry and brings its old record
    back: ``metadata("a")`` turns from ``{}`` into ``{"x": 1}`` and ``where="x = 1"`` finds a
    document that has no such field. Re-inserting an embedding after a delete (same text,
    same vector) is ordinary use; the folds here are the documented ``store.db`` path, and a
    crash-and-reopen triggers the same fold."""
    store = _open(tmp_path / "v.db", dimensions=3)
    try:
        store.insert("a", A, {"x": 1})
        store.insert("b", B)
        store.delete("a")
        store.db.put_float("other", 1.0)
        store.flush()  # catch-up: folds the log, no live record is left
        store.insert("a", A)  # no metadata
        assert store.metadata("a") == {}
        store.db.put_float("other", 2.0)
        store.flush()  # the next fold
        assert store.metadata("a") == {}, store.metadata("a")
        # No document holds x any more: the field may be forgotten (where= on it is then a
        # missing field), but it must never match the deleted key's old record.
        try:
            assert store.search(A, k=2, where="x = 1") == []
        except InvalidArgumentError as exc:
            assert "x" in str(exc)
    finally:
        store.close()


_REINSERT_AND_DIE = """
import os, signal, sys, synarrow
store = synarrow.VectorStore(sys.argv[1], auto_compact=False)
store.insert("a", [1.0, 0.0, 0.0], {"v": 2})   # acknowledged (sync_on_write=True)
print(store.to_arrow(with_metadata=True)["inserted_at"][0].value, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_insert_time_of_a_reinserted_vector_is_lost_in_a_crash(tmp_path):
    """Insert times are the vectors' log timestamps, and an acknowledged insert survives a
    SIGKILL with its metadata. Re-inserting a key with the *same* vector (new metadata for an
    unchanged embedding) is acknowledged with a new insert time; after a crash the reopened
    store catches up from the log, sees an unchanged fingerprint, keeps the checkpoint's
    *old* time and never reads the log's: ``inserted_at`` and ``start=`` / ``end=`` filters
    answer with the previous insert, while the metadata is the new one. The log, the metadata
    and the reported time then disagree for good (the next checkpoint saves the wrong time)."""
    path = tmp_path / "v.db"
    with synarrow.VectorStore(path, dimensions=3, auto_compact=False) as store:
        store.insert("a", A, {"v": 1})
        first = _inserted_at(store, "a")
    _micros_later(first)
    proc = subprocess.run(
        [sys.executable, "-c", _REINSERT_AND_DIE, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.returncode == -9, proc.stderr
    acknowledged = int(proc.stdout.split()[0])
    assert acknowledged > first
    with synarrow.VectorStore(path, auto_compact=False) as store:
        assert store.metadata("a") == {"v": 2}
        assert _log_ts(store, "a") == acknowledged
        assert _inserted_at(store, "a") == acknowledged, (first, acknowledged)
        hits = store.search(A, k=1, start=acknowledged)
        assert [h.key for h in hits] == ["a"]


def test_snapshot_reports_the_current_insert_time_of_an_unchanged_vector(tmp_path):
    """A snapshot reads exactly what was there when it was taken. A store opened at a tag
    starts from the current checkpoint and re-reads only vectors whose fingerprint differs,
    so a key re-inserted with the same vector after the tag keeps the *current* insert time:
    the tag's ``to_arrow(with_metadata=True)`` shows an ``inserted_at`` later than the
    snapshot itself, the tag's own log (``get_history``) disagrees, and ``search(end=...)``
    at the tag misses a document the tag holds."""
    path = tmp_path / "v.db"
    with _open(path, dimensions=3) as store:
        store.insert("a", A, {"v": 1})
        first = _inserted_at(store, "a")
        store.db.snapshot("s")
        _micros_later(first)
        store.insert("a", A, {"v": 2})
        assert _inserted_at(store, "a") > first
    with _open(path, snapshot="s") as tag:
        assert tag.metadata("a") == {"v": 1}
        assert _log_ts(tag, "a") == first
        assert _inserted_at(tag, "a") == first
        assert [h.key for h in tag.search(A, k=1, end=first + 1)] == ["a"]


def test_compact_deletes_the_current_vector_of_a_key_rewritten_through_db(tmp_path):
    """compact() must never drop the current vector of a key. It range-deletes each key's
    entries before the insert time the *index* knows, without catching up with the log
    first. A key deleted and written again through ``store.db`` with explicit (older)
    timestamps, as a backfill or replay of historical data does, holds entries that are all
    before the time the index remembers, so compact() removes every one of them: the key's
    current vector is gone from the log (``store.db.get`` is None) and from the store."""
    store = _open(tmp_path / "v.db", dimensions=3)
    try:
        store.insert("a", A)
        store.insert("a", [1.0, 1.0, 0.0])  # a replaced vector: compact has work to do
        store.insert("b", B)
        store.db.delete("a")
        now = time.time_ns() // 1000
        rows = np.array([[0.0, 0.0, 1.0], [0.0, 0.0, 2.0]], np.float32)
        store.db.put_vectors(["a"], rows[:1], timestamp=now - 10_000_000)
        store.db.put_vectors(["a"], rows[1:], timestamp=now - 9_000_000)
        assert np.array_equal(store.db.get("a"), rows[1])
        store.compact()
        assert np.array_equal(store.db.get("a"), rows[1]), store.db.get("a")
        got = store.get("a")
        assert got is not None and np.array_equal(got, rows[1])
    finally:
        store.close()


def test_metadata_folds_by_timestamp_so_a_newer_record_loses_after_a_reopen(tmp_path):
    """Metadata must agree with what was last inserted. The store stamps each write with
    ``max(now, last insert time + 1)``, but after a reopen "last insert time" is only that of
    the *live* vectors, while the metadata log is folded in timestamp order. Once a vector
    written through ``store.db`` with a later explicit timestamp (data from another clock)
    has raised the store's clock, metadata entries carry those later times; after the key
    is deleted and the store reopened, a new insert is stamped earlier than the old entry,
    so the next fold (a catch-up here, the open after a crash likewise) takes the *old*
    record as the newest: ``metadata("a")`` reads ``{"x": 1}`` after ``{"x": 2}`` was
    acknowledged."""
    path = tmp_path / "v.db"
    store = _open(path, dimensions=3)
    future = time.time_ns() // 1000 + 3600 * 10**6
    store.db.put_vectors(["z"], np.array([B], np.float32), timestamp=future)
    store.flush()
    store.insert("a", A, {"x": 1})
    store.delete_batch(["a", "z"])
    store.close()
    store = _open(path)
    try:
        store.insert("a", A, {"x": 2})
        assert store.metadata("a") == {"x": 2}
        store.db.put_float("other", 1.0)
        store.flush()  # catch-up: folds the metadata log
        assert store.metadata("a") == {"x": 2}, store.metadata("a")
    finally:
        store.close()
