"""Large batch entries get their checksum while their bytes are written, stored in place
afterwards (``encode_entry_parts(checksum=False)``, ``LogWriter.write_parts(checksum=)``).

The stored entry is the one the serial encoder makes; a failed checksum leaves no entry; a
reader that sees the entry before its checksum takes it on a later refresh even when the
in-place write changed neither size nor time of the file; a writer killed with SIGKILL
between the bytes and the checksum leaves a torn tail that the next open cuts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import synarrow
from synarrow.check import check_database
from synarrow.engine import batches
from synarrow.log.format import (
    FLAG_BATCH,
    Atom,
    encode_entry_parts,
    entry_parts_checksum,
    flags_byte,
)

CFG = synarrow.DbConfig(sync_on_write=False, auto_compact=False, compression=None)
BIG = np.arange(1 << 18, dtype=np.float64)  # 2 MiB: over OVERLAP_HASH_BYTES


def _log_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in (path / "log").iterdir() if f.suffix == ".log")


@settings(max_examples=100, deadline=None)
@given(
    ts=st.integers(-(1 << 63), (1 << 63) - 1),
    key=st.binary(min_size=1, max_size=40),
    parts=st.lists(st.binary(max_size=300), max_size=5),
    atom=st.sampled_from([Atom.FLOAT, Atom.INT, Atom.TEXT]),
)
def test_the_checksum_made_apart_is_the_serial_one(
    ts: int, key: bytes, parts: list[bytes], atom: Atom
) -> None:
    flags = flags_byte(FLAG_BATCH, atom)
    serial = encode_entry_parts(ts, key, list(parts), flags)
    apart = encode_entry_parts(ts, key, list(parts), flags, checksum=False)
    assert bytes(apart[0][:4]) == b"\0\0\0\0"
    stored = entry_parts_checksum(apart)
    assert stored + bytes(apart[0][4:]) == bytes(serial[0])
    assert [bytes(p) for p in apart[1:]] == [bytes(p) for p in serial[1:]]


def test_a_large_batch_reads_back_and_checks(tmp_path: Path) -> None:
    assert BIG.nbytes >= batches.OVERLAP_HASH_BYTES
    path = tmp_path / "db"
    with synarrow.SynaDB(path, CFG) as db:
        db.append("k", 1.0)
        db.append_batch("big", BIG)
        db.append("k", 2.0)
        assert np.array_equal(db.get_history_floats("big"), BIG)
    with synarrow.SynaDB(path, readonly=True) as db:  # every checksum verified on open
        assert np.array_equal(db.get_history_floats("big"), BIG)
        assert db.get("k") == 2.0
    report = check_database(path)
    assert report.ok, report


def test_a_failed_checksum_leaves_no_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "db"
    with synarrow.SynaDB(path, CFG) as db:
        db.append_batch("big", BIG)
        db.flush()
        size = _log_bytes(path)

        def broken(record: list[bytes | memoryview]) -> Future[bytes]:
            fut: Future[bytes] = Future()
            fut.set_exception(MemoryError("no memory for the hash"))
            return fut

        monkeypatch.setattr(batches, "overlap_checksum", broken)
        with pytest.raises(MemoryError):
            db.append_batch("big", BIG + 1)
        assert _log_bytes(path) == size  # cut back out
        assert len(db.get_history_floats("big")) == len(BIG)
        monkeypatch.undo()
        db.append_batch("big", BIG + 2)
        assert db.get("big") == BIG[-1] + 2
    with synarrow.SynaDB(path, readonly=True) as db:
        got = db.get_history_floats("big")
        assert np.array_equal(got, np.concatenate([BIG, BIG + 2]))


def test_a_reader_takes_the_entry_once_its_checksum_is_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "db"
    pending: Future[bytes] = Future()
    hashed: list[list[bytes | memoryview]] = []

    def held(record: list[bytes | memoryview]) -> Future[bytes]:
        hashed.append(record)
        return pending

    with synarrow.SynaDB(path, CFG) as db:
        db.append("k", 1.0)
        db.flush()
        reader = synarrow.SynaDB(
            path, readonly=True, config=synarrow.DbConfig(refresh_interval=None)
        )
        try:
            monkeypatch.setattr(batches, "overlap_checksum", held)
            size = _log_bytes(path)
            writing = threading.Thread(target=db.append_batch, args=("big", BIG))
            writing.start()
            deadline = time.monotonic() + 30
            while _log_bytes(path) < size + BIG.nbytes and time.monotonic() < deadline:
                time.sleep(0.01)
            seg = max((path / "log").glob("*.log"))
            seen = os.stat(seg)
            # the bytes are in the file, the checksum not yet: not visible, not damage
            reader.refresh()
            assert not reader.exists("big") and reader.get("k") == 1.0
            pending.set_result(entry_parts_checksum(hashed[0]))
            writing.join(30)
            assert not writing.is_alive()
            # as a coarse file system clock would leave it: same size, same time
            os.utime(seg, ns=(seen.st_atime_ns, seen.st_mtime_ns))
            assert os.stat(seg).st_size == seen.st_size
            assert reader.refresh()
            assert np.array_equal(reader.get_history_floats("big"), BIG)
            assert not reader.refresh()  # settled: nothing new
        finally:
            reader.close()


KILLED_BETWEEN = textwrap.dedent(
    """
    import sys
    from concurrent.futures import Future
    from pathlib import Path
    import numpy as np, synarrow
    from synarrow.engine import batches
    cfg = synarrow.DbConfig(sync_on_write=True, auto_compact=False, compression=None)
    db = synarrow.SynaDB(sys.argv[1], cfg)
    for i in range(5):
        db.append("k", float(i))
    db.append_batch("small", np.arange(10.0))
    # the checksum never comes: the write stops between the entry's bytes and its checksum
    batches.overlap_checksum = lambda record: Future()
    # the acknowledged (durable) bytes, measured here: the parent would race the write below
    acked = sum(f.stat().st_size for f in (Path(sys.argv[1]) / "log").glob("*.log"))
    print("acked", acked, flush=True)
    db.append_batch("big", np.arange(1 << 18, dtype=np.float64))
    """
)


def test_a_writer_killed_between_bytes_and_checksum(tmp_path: Path) -> None:
    path = tmp_path / "db"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_BETWEEN, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        word, before = line.split() if line.startswith("acked ") else (line, "")
        assert word == "acked", proc.stderr.read() if proc.stderr else ""
        before = int(before)  # the acknowledged (durable) entries
        deadline = time.monotonic() + 60
        while _log_bytes(path) < before + BIG.nbytes and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _log_bytes(path) >= before + BIG.nbytes  # every value byte written
        assert proc.poll() is None  # still waiting for the checksum
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    with synarrow.SynaDB(path, readonly=True) as db:  # a reader ignores the torn tail
        assert not db.exists("big")
        assert db.get_history_floats("k").tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    with synarrow.SynaDB(path, CFG) as db:  # the writer cuts it and goes on
        assert db.stats()["torn_bytes_cut_on_open"] > BIG.nbytes
        assert not db.exists("big")
        assert np.array_equal(db.get_history_floats("small"), np.arange(10.0))
        db.append_batch("big", BIG)
    with synarrow.SynaDB(path, readonly=True) as db:
        assert np.array_equal(db.get_history_floats("big"), BIG)
        assert db.get("k") == 4.0
    assert check_database(path).ok
