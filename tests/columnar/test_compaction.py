"""Compaction against a plain model: histories survive compaction, reopen and more appends.

The model is a list of ``(ts_low, ts_high, value)`` per key, in append order. Explicit batch
timestamps are exact (``ts_low == ts_high``); entries stamped "now" by the database are
bracketed by the clock read just before and after the write (plus a little slack: a batch's
values get now, now + 1 us, ...). Reads return a history ordered by timestamp, equal ones in
append order, so the model is sorted by (``ts_low``, append order) before comparing (random
explicit timestamps practically never fall inside a bracket).
"""

from __future__ import annotations

import shutil
import struct
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import synarrow
from synarrow.columnar.manifest import read_manifest

NO_SYNC = synarrow.DbConfig(sync_on_write=False, auto_compact=False)
KEYS = ["a", "s/1", "ключ", "x y"]

# -- the model and how a history table is turned into it --------------------------------------


def scalar_value(s: pa.Scalar) -> Any:
    """A history cell as the Python value that was appended (vectors as float32 arrays)."""
    if not s.is_valid:
        return None
    t = s.type
    if pa.types.is_struct(t):
        for v in s.values():
            if v.is_valid:
                return scalar_value(v)
        return None
    if pa.types.is_fixed_size_list(t) or pa.types.is_large_list(t) or pa.types.is_list(t):
        return s.values.to_numpy(zero_copy_only=False)
    return s.as_py()


def same_value(got: Any, want: Any) -> bool:
    """Exact equality: float bit patterns (NaN payloads, -0.0), types, vectors byte for byte."""
    if want is None or got is None:
        return got is None and want is None
    if isinstance(want, np.ndarray):
        return (
            isinstance(got, np.ndarray)
            and got.dtype == np.float32
            and got.shape == want.shape
            and got.tobytes() == want.astype(np.float32).tobytes()
        )
    if isinstance(want, float):
        return type(got) is float and struct.pack("<d", got) == struct.pack("<d", want)
    return type(got) is type(want) and got == want


def now_us() -> int:
    return time.time_ns() // 1000


Model = dict[str, list[tuple[int, int, Any]]]


SLACK_US = 1000


def in_time_order(hist: list[tuple[int, int, Any]]) -> list[tuple[int, int, Any]]:
    """The model of a history as reads return it: by timestamp, then append order."""
    return [hist[i] for i in sorted(range(len(hist)), key=lambda i: (hist[i][0], i))]


def check_history(db: synarrow.SynaDB, key: str, want: list[tuple[int, int, Any]]) -> None:
    want = in_time_order(want)
    table = db.get_history(key)
    assert table.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert table.num_rows == len(want), key
    ts = table.column("ts").cast(pa.int64()).to_numpy()
    values = table.column("value")
    for i, (lo, hi, value) in enumerate(want):
        assert lo <= ts[i] <= hi, (key, i, ts[i], lo, hi)
        got = scalar_value(values[i])
        assert same_value(got, value), (key, i, got, value)


def check_db(db: synarrow.SynaDB, model: Model) -> None:
    live = sorted(k for k, h in model.items() if h)
    assert db.keys() == live
    assert len(db) == len(live)
    for key, hist in model.items():
        if hist:
            assert db.exists(key)
            check_history(db, key, hist)
            assert same_value(db.get(key), in_time_order(hist)[-1][2])
        else:
            assert not db.exists(key)
            assert db.get(key) is None
            with pytest.raises(synarrow.KeyNotFoundError):
                db.get_history(key)


# -- strategies ---------------------------------------------------------------------------------

# Any 64-bit pattern as a float: NaN payloads, signalling NaNs, -0.0, subnormals, infinities.
any_bits_float = st.integers(0, 2**64 - 1).map(
    lambda b: struct.unpack("<d", struct.pack("<Q", b))[0]
)
floats = st.one_of(st.floats(), any_bits_float)
ints = st.integers(-(2**63), 2**63 - 1)
texts = st.text(max_size=12)
blobs = st.binary(max_size=12)


def vectors(dim: int) -> st.SearchStrategy[np.ndarray]:
    return st.lists(st.floats(width=32), min_size=dim, max_size=dim).map(
        lambda xs: np.array(xs, dtype=np.float32)
    )


singles = st.one_of(
    st.none(),
    floats,
    ints,
    texts,
    blobs,
    st.sampled_from([1, 3]).flatmap(vectors),
)


@st.composite
def batches(draw: st.DrawFn) -> tuple[str, Any, list[Any], list[int] | None]:
    """(kind, values to pass, model values, timestamps or None)."""
    kind = draw(st.sampled_from(["float", "int", "text", "bytes", "vector"]))
    n = draw(st.integers(0, 6))
    if kind == "float":
        items = draw(st.lists(floats, min_size=n, max_size=n))
        arg: Any = np.array(items, dtype=np.float64)
        model = [float(x) for x in arg]
    elif kind == "int":
        items = draw(st.lists(ints, min_size=n, max_size=n))
        arg = np.array(items, dtype=np.int64)
        model = [int(x) for x in items]
    elif kind == "text":
        model = draw(st.lists(texts, min_size=n, max_size=n))
        arg = list(model)
    elif kind == "bytes":
        model = draw(st.lists(blobs, min_size=n, max_size=n))
        arg = list(model)
    else:
        dim = draw(st.sampled_from([1, 3]))
        rows = draw(st.lists(vectors(dim), min_size=n, max_size=n))
        arg = np.array(rows, dtype=np.float32).reshape(n, dim)
        model = [r.copy() for r in arg]
    timestamps = draw(
        st.one_of(
            st.none(),
            st.lists(st.integers(-(10**15), 4 * 10**15), min_size=n, max_size=n),
        )
    )
    return kind, arg, model, timestamps


ops = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.sampled_from(KEYS), singles),
        st.tuples(st.just("batch"), st.sampled_from(KEYS), batches()),
        st.tuples(st.just("delete"), st.sampled_from(KEYS), st.none()),
    ),
    max_size=25,
)


def apply_ops(db: synarrow.SynaDB, model: Model, todo: list[tuple[str, str, Any]]) -> None:
    for op, key, arg in todo:
        hist = model.setdefault(key, [])
        if op == "append":
            lo = now_us()
            db.append(key, arg)
            hist.append((lo, now_us() + SLACK_US, arg))
        elif op == "batch":
            _, values, expected, timestamps = arg
            lo = now_us()
            ts = None if timestamps is None else np.array(timestamps, dtype=np.int64)
            assert db.append_batch(key, values, timestamps=ts) == len(expected)
            hi = now_us() + SLACK_US
            for i, v in enumerate(expected):
                if timestamps is None:
                    hist.append((lo, hi, v))
                else:
                    hist.append((timestamps[i], timestamps[i], v))
        else:
            assert db.delete(key) == bool(hist)
            hist.clear()


# -- the property ------------------------------------------------------------------------------


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(first=ops, second=ops)
def test_history_equals_model_through_compaction_and_reopen(first: list, second: list) -> None:
    tmp = Path(tempfile.mkdtemp())
    path = tmp / "p.db"
    model: Model = {}
    db = synarrow.SynaDB(path, NO_SYNC)
    try:
        apply_ops(db, model, first)
        check_db(db, model)  # log only
        db.compact()
        check_db(db, model)  # compacted, same handle
        db.close()
        db = synarrow.SynaDB(path, NO_SYNC)
        check_db(db, model)  # compacted, reopened
        apply_ops(db, model, second)
        check_db(db, model)  # columnar base + log tail
        db.compact()
        check_db(db, model)  # partial compaction of what changed
        db.close()
        db = synarrow.SynaDB(path, NO_SYNC)
        check_db(db, model)
        rows = db.sql("SELECT key, count(*) AS n FROM history GROUP BY key").to_pydict()
        assert dict(zip(rows["key"], rows["n"])) == {k: len(h) for k, h in model.items() if h}
    finally:
        db.close()
        shutil.rmtree(tmp, ignore_errors=True)


class CompactionMachine(RuleBasedStateMachine):
    """Appends, deletes, compactions (partial and full) and reopens in any order."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp())
        self.path = self.tmp / "m.db"
        self.db = synarrow.SynaDB(self.path, NO_SYNC)
        self.model: Model = {}

    @rule(key=st.sampled_from(KEYS), value=singles)
    def append(self, key: str, value: Any) -> None:
        apply_ops(self.db, self.model, [("append", key, value)])

    @rule(key=st.sampled_from(KEYS), batch=batches())
    def append_batch(self, key: str, batch: Any) -> None:
        apply_ops(self.db, self.model, [("batch", key, batch)])

    @rule(key=st.sampled_from(KEYS))
    def delete(self, key: str) -> None:
        apply_ops(self.db, self.model, [("delete", key, None)])

    @rule(full=st.booleans())
    def compact(self, full: bool) -> None:
        result = self.db.compact(full=full)
        live = sum(1 for h in self.model.values() if h)
        assert result["keys"] == live
        if full:
            assert result["keys_rewritten"] == live
        assert self.db.stats()["tail_entries"] == 0

    @rule()
    def reopen(self) -> None:
        self.db.close()
        self.db = synarrow.SynaDB(self.path, NO_SYNC)

    @invariant()
    def matches_model(self) -> None:
        check_db(self.db, self.model)

    def teardown(self) -> None:
        self.db.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


TestCompactionMachine = CompactionMachine.TestCase
TestCompactionMachine.settings = settings(
    max_examples=12,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- deleted keys, reclaimed space, the log tail ------------------------------------------------


def _columnar_files(path: Path) -> set[str]:
    return {f.name for f in (path / "columnar").iterdir()}


def _manifest_names(db: synarrow.SynaDB) -> set[str]:
    m = read_manifest(db.path / "columnar")
    return {f.name for f in m.files}


def test_deleted_key_disappears_and_its_file_is_removed(db: synarrow.SynaDB, db_path: Path) -> None:
    ts = np.arange(50_000, dtype=np.int64)
    db.append_batch("keep", np.arange(50_000, dtype=np.float64), timestamps=ts)
    db.append_batch("drop", [f"row {i}" for i in range(50_000)], timestamps=ts)
    db.compact()
    before = db.stats()["columnar_bytes"]
    files_before = _columnar_files(db_path)
    assert db.delete("drop")
    db.compact()
    after = db.stats()
    assert "drop" not in db.keys() and not db.exists("drop")
    assert db.get("drop") is None
    with pytest.raises(synarrow.KeyNotFoundError):
        db.get_history("drop")
    assert after["columnar_bytes"] < before / 2
    # The text file held only the deleted key: it is gone from disk, not only from the manifest.
    gone = files_before - _columnar_files(db_path)
    assert any(name.endswith(".arrow") for name in gone)
    assert all(
        f.name in _columnar_files(db_path) for f in read_manifest(db_path / "columnar").files
    )
    assert db.sql("SELECT count(*) FROM history WHERE key = 'drop'").column(0)[0].as_py() == 0
    db.close()
    with synarrow.SynaDB(db_path, NO_SYNC) as again:
        assert again.keys() == ["keep"]
        np.testing.assert_array_equal(again.get_history_floats("keep"), np.arange(50_000.0))


def test_deleting_most_keys_of_a_file_reclaims_it(db: synarrow.SynaDB, db_path: Path) -> None:
    ts = np.arange(10_000, dtype=np.int64)
    for i in range(4):
        db.append_batch(f"k{i}", np.full(10_000, float(i)), timestamps=ts)
    db.compact()
    first = set(_manifest_names(db))
    before = db.stats()["columnar_bytes"]
    for i in range(3):
        db.delete(f"k{i}")
    result = db.compact()
    assert db.keys() == ["k3"]
    assert not (first & _columnar_files(db_path)), "the mostly dead file was kept"
    assert set(result["files_removed"]) >= first
    assert db.stats()["columnar_bytes"] < before / 2
    np.testing.assert_array_equal(db.get_history_floats("k3"), np.full(10_000, 3.0))


def test_full_compaction_reclaims_every_deleted_key(db: synarrow.SynaDB) -> None:
    ts = np.arange(1000, dtype=np.int64)
    for i in range(10):
        db.append_batch(f"k{i}", np.arange(1000.0) + i, timestamps=ts)
    db.compact()
    before = db.stats()["columnar_bytes"]
    db.delete("k0")  # one key of ten: the file stays mostly live, so only full reclaims it
    result = db.compact(full=True)
    assert result["keys_rewritten"] == 9
    assert db.stats()["columnar_bytes"] < before
    assert db.keys() == [f"k{i}" for i in range(1, 10)]


def test_deleted_then_rewritten_key_starts_a_new_history(db: synarrow.SynaDB) -> None:
    db.append_batch("k", np.arange(5.0), timestamps=np.arange(5))
    db.compact()
    db.delete("k")
    db.append("k", "fresh")
    db.compact()
    table = db.get_history("k")
    assert table.column("value").to_pylist() == ["fresh"]
    assert table.schema.field("value").type == pa.large_string()


def test_log_holds_only_the_tail_after_compaction(db: synarrow.SynaDB, db_path: Path) -> None:
    for i in range(20_000):
        db.append("single", float(i))
    db.append_batch("batch", np.arange(200_000.0))
    assert db.stats()["log_bytes"] > 200_000
    db.compact()
    stats = db.stats()
    assert stats["log_bytes"] < 4096
    assert stats["tail_entries"] == 0
    assert sum(f.stat().st_size for f in (db_path / "log").glob("*.log")) < 4096
    for _ in range(10):
        db.append("single", -1.0)
    stats = db.stats()
    assert stats["tail_entries"] == 10
    assert stats["log_bytes"] < 4096
    assert stats["entries"] == 220_010


def test_leftover_temp_and_orphan_files_are_cleaned_on_open(db_path: Path) -> None:
    with synarrow.SynaDB(db_path, NO_SYNC) as db:
        db.append_batch("k", np.arange(100.0), timestamps=np.arange(100))
        db.compact()
        db.append("k", 100.0)
        live = _columnar_files(db_path)
        first_segment = read_manifest(db_path / "columnar").first_segment
    col, log = db_path / "columnar", db_path / "log"
    junk = [
        col / "g999999-000.arrow",  # a data file of a compaction that never committed
        col / "g999999-index.arrow",
        col / "MANIFEST.tmp",
        col / "g000002-000.arrow.tmp",
        log / "00000077.tmp",
    ]
    for f in junk:
        f.write_bytes(b"\x00garbage" * 100)
    folded = log / f"{first_segment - 1:08d}.log"  # a segment the manifest says is folded
    folded.write_bytes(b"SYNARLOG" + b"\x00" * 100)
    with synarrow.SynaDB(db_path, NO_SYNC) as db:
        assert _columnar_files(db_path) == live
        assert not any(f.exists() for f in junk)
        assert not folded.exists()
        np.testing.assert_array_equal(db.get_history_floats("k"), np.arange(101.0))


def test_auto_compact_runs_in_the_background_for_batches(db_path: Path) -> None:
    cfg = synarrow.DbConfig(sync_on_write=False, auto_compact=True, compact_threshold_bytes=4096)
    with synarrow.SynaDB(db_path, cfg) as db:
        model: list[float] = []
        for i in range(50):
            chunk = np.arange(100, dtype=np.float64) + 100 * i
            db.append_batch("k", chunk)
            model.extend(chunk.tolist())
        assert db.wait_for_compaction(timeout=120)  # the background thread has finished
        assert db.stats()["columnar_files"] > 0, "no automatic compaction started"
        np.testing.assert_array_equal(db.get_history_floats("k"), np.array(model))
    with synarrow.SynaDB(db_path, cfg) as db:
        np.testing.assert_array_equal(db.get_history_floats("k"), np.array(model))


def test_auto_compact_honours_a_small_threshold_for_single_appends(db_path: Path) -> None:
    cfg = synarrow.DbConfig(sync_on_write=False, auto_compact=True, compact_threshold_bytes=4096)
    with synarrow.SynaDB(db_path, cfg) as db:
        for i in range(3000):  # about 80 KiB of log: twenty times the threshold
            db.append("k", float(i))
        assert db.wait_for_compaction(timeout=120)  # the background thread has finished
        assert db.stats()["columnar_files"] > 0, "no automatic compaction started"
        np.testing.assert_array_equal(db.get_history_floats("k"), np.arange(3000.0))


def test_auto_compact_while_writers_keep_appending(db_path: Path) -> None:
    """Entries written while a background compaction runs are neither lost nor doubled."""
    cfg = synarrow.DbConfig(sync_on_write=False, auto_compact=True, compact_threshold_bytes=4096)
    expected: dict[str, list[float]] = {"a": [], "b": []}

    def writer(key: str, offset: float) -> None:
        for i in range(300):
            chunk = np.arange(20, dtype=np.float64) + offset + 20 * i
            db.append_batch(key, chunk)
            expected[key].extend(chunk.tolist())
            db.append(key, -1.0)
            expected[key].append(-1.0)

    with synarrow.SynaDB(db_path, cfg) as db:
        threads = [threading.Thread(target=writer, args=(k, o)) for k, o in (("a", 0), ("b", 1e6))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for key, values in expected.items():
            np.testing.assert_array_equal(db.get_history_floats(key), np.array(values))
    # close() waited for a compaction still running in the background.
    with synarrow.SynaDB(db_path, NO_SYNC) as db:
        assert db.stats()["last_compaction"] is not None
        for key, values in expected.items():
            np.testing.assert_array_equal(db.get_history_floats(key), np.array(values))
