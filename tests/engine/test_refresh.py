"""Read-only handles follow the one writer: ``SynaDB.refresh()`` and the automatic check.

After every ``flush()`` of the writer and ``refresh()`` of a reader (in this process or in
another one), the reader shows exactly what the writer shows: keys, count, latest values and
whole histories, through appends, batches, deletes, range deletes, rotation and compaction.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule

import synarrow
from synarrow.errors import ConfigError

NO_SYNC = synarrow.DbConfig(sync_on_write=False, auto_compact=False)
MANUAL = synarrow.DbConfig(refresh_interval=None)
KEYS = ("a", "b", "c/1")
T0 = 1_700_000_000_000_000


def view(db: synarrow.SynaDB) -> dict[str, Any]:
    """Everything a reader is compared on."""
    keys = db.keys()
    return {
        "keys": keys,
        "len": len(db),
        "latest": {k: db.get(k) for k in keys},
        "history": {k: db.get_history(k).column("value").to_pylist() for k in keys},
        "exists": {k: db.exists(k) for k in KEYS},
    }


@pytest.fixture
def writer(tmp_path: Path) -> Any:
    db = synarrow.SynaDB(tmp_path / "db", NO_SYNC)
    yield db
    db.close()


def reader_of(db: synarrow.SynaDB, config: synarrow.DbConfig = MANUAL) -> synarrow.SynaDB:
    return synarrow.SynaDB(db.path, config, readonly=True)


def test_reader_follows_appends_batches_deletes_and_compaction(writer: Any) -> None:
    writer.append("a", 1.0, timestamp=T0)
    writer.flush()
    with reader_of(writer) as reader:
        assert view(reader) == view(writer)
        assert reader.refresh() is False  # nothing changed
        writer.append("a", 2.0, timestamp=T0 + 1)
        writer.append_batch("b", [1, 2, 3], timestamps=[T0, T0 + 1, T0 + 2])
        writer.append("c/1", "text", timestamp=T0)
        writer.flush()
        assert reader.get("b") is None  # no refresh yet (refresh_interval=None)
        assert reader.refresh() is True
        assert view(reader) == view(writer)
        writer.delete_range("b", T0, T0 + 2)
        writer.delete("c/1")
        writer.flush()
        assert reader.refresh() is True
        assert view(reader) == view(writer)
        assert reader.get_history("b").column("value").to_pylist() == [3]
        writer.compact()
        assert reader.refresh() is True
        assert view(reader) == view(writer)
        assert reader.refresh() is False
        writer.append("a", 3.0, timestamp=T0 + 5)
        writer.compact(full=True)
        assert reader.refresh() is True
        assert view(reader) == view(writer)


def test_results_before_a_refresh_stay_valid(writer: Any) -> None:
    writer.append_batch("a", np.arange(1000, dtype=np.float64), timestamps=T0 + np.arange(1000))
    writer.compact()
    with reader_of(writer) as reader:
        floats = reader.get_history_floats("a")
        table = reader.get_history("a")
        writer.append_batch(
            "a", np.arange(10, dtype=np.float64), timestamps=T0 + 2000 + np.arange(10)
        )
        writer.compact(full=True)  # the files the old views map are replaced and removed
        assert reader.refresh() is True
        assert len(reader.get_history("a")) == 1010
        assert floats.sum() == np.arange(1000).sum()
        assert table.column("value").to_pylist() == [float(i) for i in range(1000)]


def test_writer_and_snapshot_refresh_do_nothing(writer: Any) -> None:
    writer.append("a", 1.0)
    writer.snapshot("v1")
    assert writer.refresh() is False
    with synarrow.SynaDB(writer.path, snapshot="v1") as tagged:
        writer.append("a", 2.0)
        writer.compact()
        assert tagged.refresh() is False
        assert tagged.get("a") == 1.0


def test_refresh_on_a_closed_reader_is_refused(writer: Any) -> None:
    reader = reader_of(writer)
    reader.close()
    with pytest.raises(synarrow.DatabaseClosedError):
        reader.refresh()


def test_automatic_check_after_the_interval(writer: Any) -> None:
    writer.append("a", 1.0)
    writer.flush()
    with reader_of(writer, synarrow.DbConfig(refresh_interval=0.05)) as reader:
        assert reader.get("a") == 1.0
        writer.append("a", 2.0)
        writer.flush()
        deadline = time.monotonic() + 60
        while reader.get("a") != 2.0:  # no timed assertion: it must come, however late
            assert time.monotonic() < deadline
            time.sleep(0.01)
        writer.append("b", 5)
        writer.flush()
        while "b" not in reader.keys():
            assert time.monotonic() < deadline
            time.sleep(0.01)


def test_interval_zero_checks_on_every_read(writer: Any) -> None:
    with reader_of(writer, synarrow.DbConfig(refresh_interval=0)) as reader:
        for i in range(5):
            writer.append("a", i)
            writer.flush()
            assert reader.get("a") == i
            assert reader.exists("a")
            assert len(reader) == 1
            assert reader.sql("SELECT count(*) AS n FROM history").column("n")[0].as_py() == i + 1
            assert len(reader.read_table("a")) == i + 1


def test_interval_none_never_refreshes_on_its_own(writer: Any) -> None:
    writer.append("a", 1.0)
    writer.flush()
    with reader_of(writer) as reader:
        writer.append("a", 2.0)
        writer.flush()
        time.sleep(0.05)
        for _ in range(3):
            assert reader.get("a") == 1.0
            assert reader.keys() == ["a"]
        assert reader.refresh() is True
        assert reader.get("a") == 2.0


def test_refresh_interval_is_validated() -> None:
    for bad in (-1, float("inf"), float("nan"), "1", True):
        with pytest.raises(ConfigError):
            synarrow.DbConfig(refresh_interval=bad)  # type: ignore[arg-type]
    assert synarrow.DbConfig(refresh_interval=0).refresh_interval == 0


def test_refresh_across_segment_rotation(tmp_path: Path) -> None:
    config = NO_SYNC.replace(max_log_file_size=64 * 1024)
    with synarrow.SynaDB(tmp_path / "db", config) as writer:
        writer.append("a", "x" * 100)
        writer.flush()
        with reader_of(writer) as reader:
            for i in range(300):  # about 6 segments
                writer.append("a", f"{i:04d}" + "x" * 1000)
            writer.flush()
            assert len(list((tmp_path / "db" / "log").glob("*.log"))) > 2
            assert reader.refresh() is True
            assert view(reader) == view(writer)


def test_refresh_follows_automatic_compaction(tmp_path: Path) -> None:
    config = synarrow.DbConfig(
        sync_on_write=False, compact_threshold_bytes=4096, max_log_file_size=64 * 1024
    )
    with synarrow.SynaDB(tmp_path / "db", config) as writer, reader_of(writer) as reader:
        for i in range(2000):
            writer.append(KEYS[i % 3], float(i), timestamp=T0 + i)
            if i % 97 == 0:
                writer.flush()
                reader.refresh()  # may meet a compaction in progress
        writer.wait_for_compaction()
        writer.flush()
        assert writer.stats()["columnar_files"] > 0
        reader.refresh()
        assert view(reader) == view(writer)


def test_reader_refreshing_while_the_writer_compacts(tmp_path: Path) -> None:
    """Segments and columnar files removed while the reader reads never fail it."""
    with synarrow.SynaDB(tmp_path / "db", NO_SYNC) as writer:
        writer.append("a", 0.0, timestamp=T0)
        writer.flush()
        errors: list[BaseException] = []
        done = threading.Event()

        def write() -> None:
            try:
                for i in range(1, 400):
                    writer.append_batch(KEYS[i % 3], [float(i)] * 20, timestamps=None)
                    writer.flush()
                    if i % 10 == 0:
                        writer.compact(full=i % 20 == 0)
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)
            finally:
                done.set()

        with reader_of(writer) as reader:
            thread = threading.Thread(target=write)
            thread.start()
            while not done.is_set():
                reader.refresh()
                for key in reader.keys():
                    reader.get_history(key)
            thread.join()
            assert not errors
            reader.refresh()
            assert view(reader) == view(writer)


def _segment(db_path: Path) -> Path:
    (segment,) = sorted((db_path / "log").glob("*.log"))
    return segment


def test_torn_entry_is_not_corruption_and_is_seen_once_complete(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with synarrow.SynaDB(path, NO_SYNC) as writer:
        writer.append("a", 1.0, timestamp=T0)
        writer.flush()
        before = _segment(path).stat().st_size
        writer.append("a", "a longer text value " * 5, timestamp=T0 + 1)
    for sidecar in (path / "log").glob("*.idx"):
        sidecar.unlink()  # as while the writer still writes the segment
    segment = _segment(path)
    data = segment.read_bytes()
    entry = data[before:]
    assert len(entry) > 20
    segment.write_bytes(data[:before])
    with synarrow.SynaDB(path, MANUAL, readonly=True) as reader:
        assert reader.get("a") == 1.0
        for cut in (1, len(entry) // 2, len(entry) - 1):  # the entry being written
            with open(segment, "r+b") as f:
                f.truncate(before)
                f.seek(before)
                f.write(entry[:cut])
            reader.refresh()
            assert reader.get("a") == 1.0
            assert reader.get_history("a").column("value").to_pylist() == [1.0]
        with open(segment, "ab") as f:
            f.write(entry[len(entry) - 1 :])
        assert reader.refresh() is True
        assert reader.get("a") == "a longer text value " * 5


def test_damage_in_the_middle_still_raises(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with synarrow.SynaDB(path, NO_SYNC) as writer:
        writer.append("a", 1.0)
        writer.flush()
        reader = reader_of(writer)
        writer.append("a", 2.0)
        writer.append("a", 3.0)
        writer.flush()
    for sidecar in (path / "log").glob("*.idx"):
        sidecar.unlink()
    segment = _segment(path)
    data = bytearray(segment.read_bytes())
    size = len(data)
    # entries of 28, 28 and 27 bytes after the 32-byte header: size - 40 is inside the
    # second entry (the reader has not read it yet), the third stays valid
    data[size - 40] ^= 0xFF
    segment.write_bytes(bytes(data))
    with reader, pytest.raises(synarrow.CorruptionError):
        reader.refresh()


def test_damage_behind_what_a_reader_read_is_found_by_the_next_open(tmp_path: Path) -> None:
    """A refresh verifies what it reads; bytes read before are not read again (their
    entries are in memory), so damage there shows on the next open and in ``check``."""
    path = tmp_path / "db"
    with synarrow.SynaDB(path, NO_SYNC) as writer:
        writer.append("a", 1.0)
        writer.flush()
        reader = reader_of(writer)
        segment = _segment(path)
        data = bytearray(segment.read_bytes())
        data[40] ^= 0xFF  # inside the first entry, which the reader holds
        segment.write_bytes(bytes(data))
        writer.append("a", 2.0)
        writer.flush()
        with reader:
            assert reader.refresh() is True
            assert reader.get_history_floats("a").tolist() == [1.0, 2.0]
    for sidecar in (path / "log").glob("*.idx"):
        sidecar.unlink()  # written at close over the damaged bytes: it would vouch for them
    with pytest.raises(synarrow.CorruptionError):
        synarrow.SynaDB(path, readonly=True)


_CHILD = """
import json, sys
import synarrow
reader = synarrow.SynaDB(sys.argv[1], synarrow.DbConfig(refresh_interval=None), readonly=True)
for line in sys.stdin:
    if line.strip() == "refresh":
        reader.refresh()
    keys = reader.keys()
    print(json.dumps({
        "keys": keys,
        "len": len(reader),
        "latest": {k: reader.get(k) for k in keys},
        "history": {k: reader.get_history(k).column("value").to_pylist() for k in keys},
    }), flush=True)
reader.close()
"""


def test_reader_in_another_process(tmp_path: Path) -> None:
    path = tmp_path / "db"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    with synarrow.SynaDB(path, NO_SYNC) as writer:
        writer.append("a", 1.0, timestamp=T0)
        writer.flush()
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert child.stdin is not None and child.stdout is not None

        def ask(command: str) -> dict[str, Any]:
            child.stdin.write(command + "\n")  # type: ignore[union-attr]
            child.stdin.flush()  # type: ignore[union-attr]
            return json.loads(child.stdout.readline())  # type: ignore[union-attr]

        def expected() -> dict[str, Any]:
            mine = view(writer)
            return {k: mine[k] for k in ("keys", "len", "latest", "history")}

        try:
            assert ask("look") == expected()
            steps = [
                lambda: writer.append_batch("b", [1, 2, 3], timestamps=[T0, T0 + 1, T0 + 2]),
                lambda: writer.append("c/1", "x", timestamp=T0),
                lambda: writer.delete_range("b", T0 + 1, None),
                lambda: writer.delete("a"),
                lambda: writer.compact(),
                lambda: writer.append("a", 4.0, timestamp=T0 + 9),
                lambda: writer.compact(full=True),
            ]
            for step in steps:
                before = expected()
                step()
                writer.flush()
                assert ask("look") == before  # refresh_interval=None: unchanged
                assert ask("refresh") == expected()
        finally:
            child.stdin.close()
            assert child.wait(timeout=120) == 0


def _plain(value: Any) -> Any:
    """A history value as it was appended (a mixed-type key's rows are structs with one
    field set)."""
    if isinstance(value, dict):
        return next((v for v in value.values() if v is not None), None)
    return value


class FollowMachine(RuleBasedStateMachine):
    """Writer operations and reader refreshes interleaved; after a flush and a refresh the
    reader shows what the writer does, what a reader opened afresh shows, and what a
    dict-of-lists model holds. Refreshes that only meet a longer log continue it (delta
    chains of floats and ints across refreshes, text between them, segment rotation);
    the others rebuild."""

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self.dir = tempfile.mkdtemp()
        config = NO_SYNC.replace(max_log_file_size=64 * 1024)
        self.writer = synarrow.SynaDB(Path(self.dir) / "db", config)
        self.reader = reader_of(self.writer)
        self.model: dict[str, list[tuple[int, Any]]] = {}
        self.ts = T0

    def _next_ts(self) -> int:
        self.ts += 10
        return self.ts

    @rule(key=st.sampled_from(KEYS), value=st.floats(-1e6, 1e6))
    def append(self, key: str, value: float) -> None:
        ts = self._next_ts()
        self.writer.append(key, value, timestamp=ts)
        self.model.setdefault(key, []).append((ts, value))

    @rule(key=st.sampled_from(["n", "n/2"]), value=st.integers(-(1 << 63), (1 << 63) - 1))
    def append_int(self, key: str, value: int) -> None:
        ts = self._next_ts()
        self.writer.append(key, value, timestamp=ts)
        self.model.setdefault(key, []).append((ts, value))

    @rule(key=st.sampled_from(["note", "n/2"]), size=st.sampled_from([1, 3000]))
    def append_text(self, key: str, size: int) -> None:
        ts = self._next_ts()
        value = f"{ts}:" + "t" * size  # 3000: a few of these fill a 64 KiB segment
        self.writer.append(key, value, timestamp=ts)
        self.model.setdefault(key, []).append((ts, value))

    @rule(key=st.sampled_from(KEYS), values=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=5))
    def batch(self, key: str, values: list[float]) -> None:
        stamps = [self._next_ts() for _ in values]
        self.writer.append_batch(key, values, timestamps=stamps)
        self.model.setdefault(key, []).extend(zip(stamps, values, strict=True))

    @rule(key=st.sampled_from(KEYS))
    def delete(self, key: str) -> None:
        self.writer.delete(key)
        self.model.pop(key, None)

    @rule(key=st.sampled_from(KEYS), back=st.integers(0, 60), width=st.integers(1, 60))
    def delete_range(self, key: str, back: int, width: int) -> None:
        start = self.ts - back
        self.writer.delete_range(key, start, start + width)
        kept = [e for e in self.model.get(key, []) if not start <= e[0] < start + width]
        if kept:
            self.model[key] = kept
        else:
            self.model.pop(key, None)

    @rule(full=st.booleans())
    def compact(self, full: bool) -> None:
        self.writer.compact(full=full)

    @rule()
    def refresh_early(self) -> None:
        self.reader.refresh()  # what the writer buffered is not visible yet: no check

    @rule()
    def flush_and_check(self) -> None:
        self.writer.flush()
        self.reader.refresh()
        assert self.reader.refresh() is False
        seen = view(self.reader)
        assert seen == view(self.writer)
        with reader_of(self.writer) as fresh:
            assert view(fresh) == seen
        expected = {k: [v for _, v in entries] for k, entries in self.model.items()}
        assert {k: [_plain(v) for v in vs] for k, vs in seen["history"].items()} == expected

    def teardown(self) -> None:
        import shutil

        self.reader.close()
        self.writer.close()
        shutil.rmtree(self.dir, ignore_errors=True)


TestFollow = FollowMachine.TestCase
TestFollow.settings = settings(
    max_examples=25,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.mark.parametrize("interval", [None, 3600.0])
def test_lock_free_get_of_a_reader_stops_at_retention_rules(writer: Any, interval: Any) -> None:
    """A reader's get reads the states without the lock until a refresh is due; once a
    refresh brings retention rules, expired values are not returned from that path."""
    writer.append("a", 1.0, timestamp=T0)  # long ago
    writer.flush()
    with reader_of(writer, synarrow.DbConfig(refresh_interval=interval)) as reader:
        for _ in range(3):
            assert reader.get("a") == 1.0
        writer.set_retention("a", "1d")
        assert reader.get("a") == 1.0  # not refreshed yet (no interval has passed)
        assert reader.refresh() is True
        for _ in range(3):
            assert reader.get("a") is None
            assert reader.get("a", 7) == 7
