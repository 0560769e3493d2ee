"""Histories in timestamp order: out-of-order appends, ranges, ``last``, ``get(at=)``, the
duplicates policies, default batch timestamps, on every read path, across reopen and
compaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import synarrow
from synarrow.errors import InvalidArgumentError

T0 = 1_700_000_000_000_000  # 2023-11-14T22:13:20Z
CFG = {"sync_on_write": False, "auto_compact": False}


def open_db(path: Path, duplicates: str = "keep_all") -> synarrow.SynaDB:
    return synarrow.SynaDB(path, synarrow.DbConfig(**CFG, duplicates=duplicates))


def fill_out_of_order(db: synarrow.SynaDB) -> None:
    """ts 30, 10, 20 (single), then a batch 25, 5, 20, then 15 (single)."""
    db.append("k", 3.0, timestamp=T0 + 30)
    db.append("k", 1.0, timestamp=T0 + 10)
    db.append("k", 2.0, timestamp=T0 + 20)
    db.append_batch("k", [2.5, 0.5, 2.1], timestamps=[T0 + 25, T0 + 5, T0 + 20])
    db.append("k", 1.5, timestamp=T0 + 15)


# (ts offset, value) in time order, equal timestamps in arrival order.
ALL = [(5, 0.5), (10, 1.0), (15, 1.5), (20, 2.0), (20, 2.1), (25, 2.5), (30, 3.0)]
POLICY = {
    "keep_all": ALL,
    "keep_last": [e for e in ALL if e != (20, 2.0)],
    "keep_first": [e for e in ALL if e != (20, 2.1)],
}


def stages(path: Path, duplicates: str) -> Iterator[tuple[synarrow.SynaDB, str]]:
    """The same data log only, compacted, reopened, and reopened with a new tail."""
    db = open_db(path, duplicates)
    fill_out_of_order(db)
    yield db, "log"
    db.compact()
    yield db, "compacted"
    db.close()
    db = open_db(path, duplicates)
    yield db, "reopened"
    db.close()


@pytest.mark.parametrize("duplicates", ["keep_all", "keep_last", "keep_first"])
def test_every_read_path_is_in_time_order(tmp_path: Path, duplicates: str) -> None:
    want = POLICY[duplicates]
    want_ts = [T0 + t for t, _ in want]
    want_v = [v for _, v in want]
    for db, stage in stages(tmp_path / "db", duplicates):
        table = db.get_history("k")
        assert table.column("ts").cast(pa.int64()).to_pylist() == want_ts, stage
        assert table.column("value").to_pylist() == want_v, stage
        assert db.get_history_floats("k").tolist() == want_v
        assert db.get_history_tensor("k").tolist() == want_v
        reader = db.history_reader("k")
        assert reader.read_all().column("value").to_pylist() == want_v
        assert db.get("k") == 3.0 and db.get_float("k") == 3.0
        assert db.get("k", at=T0 + 20) == (2.0 if duplicates == "keep_first" else 2.1)
        pd = pytest.importorskip("pandas")
        df = db.to_pandas("k")
        assert isinstance(df, pd.DataFrame) and df["value"].tolist() == want_v
        assert df["ts"].is_monotonic_increasing
        pl = pytest.importorskip("polars")
        assert db.to_polars("k")["value"].to_list() == want_v
        torch = pytest.importorskip("torch")
        assert db.to_torch("k", copy=True).tolist() == want_v
        assert db.to_torch("k", copy=True, start=T0 + 10, end=T0 + 20).tolist() == [1.0, 1.5]
        assert isinstance(db.to_torch("k", last=1, copy=True), torch.Tensor)
        assert pl is not None


def test_latest_is_the_greatest_timestamp_not_the_last_written(tmp_path: Path) -> None:
    with open_db(tmp_path / "db") as db:
        db.append("k", "late", timestamp=T0 + 100)
        db.append("k", "early", timestamp=T0)
        assert db.get("k") == "late" and db.get_text("k") == "late"
        db.append_batch("k", ["b1", "b2"], timestamps=[T0 + 50, T0 + 60])
        assert db.get("k") == "late"
        db.append_batch("k", ["b3", "b4", "b5"], timestamps=[T0 + 200, T0 + 300, T0 + 1])
        assert db.get("k") == "b4"
        db.append("k", "tie", timestamp=T0 + 300)  # equal: the last written wins
        assert db.get("k") == "tie"
        db.compact()
        assert db.get("k") == "tie"
        db.append("k", "older", timestamp=T0 + 2)
        assert db.get("k") == "tie"
        latest = db.sql("SELECT text FROM latest WHERE key = 'k'")
        assert latest.column(0).to_pylist() == ["tie"]
    with open_db(tmp_path / "db") as db:
        assert db.get("k") == "tie"
        assert db.get_history("k", last=1).column("value").to_pylist() == ["tie"]


def test_keep_first_latest_is_the_first_of_equal_timestamps(tmp_path: Path) -> None:
    with open_db(tmp_path / "db", "keep_first") as db:
        db.append("k", 1, timestamp=T0)
        db.append("k", 2, timestamp=T0)
        db.append_batch("k", [3, 4], timestamps=[T0, T0 - 1])
        assert db.get("k") == 1 and db.get_int("k") == 1
        assert db.get_history("k").column("value").to_pylist() == [4, 1]
        db.compact()
        assert db.get("k") == 1
    with open_db(tmp_path / "db", "keep_first") as db:
        assert db.get("k") == 1
        db.append("k", 5, timestamp=T0)
        assert db.get("k") == 1
        assert db.get_history("k").column("value").to_pylist() == [4, 1]


def test_ranges_take_every_time_form(tmp_path: Path) -> None:
    with open_db(tmp_path / "db") as db:
        base = dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc)
        us = int(base.timestamp()) * 1_000_000
        ts = us + np.arange(48, dtype=np.int64) * 3_600_000_000  # hourly, two days
        db.append_batch("h", np.arange(48.0)[::-1], timestamps=ts[::-1])  # written backwards
        forms = [
            (base + dt.timedelta(hours=3), base + dt.timedelta(hours=6)),
            ("2024-05-01T03:00:00Z", "2024-05-01T06:00:00+00:00"),
            ("2024-05-01 05:00+02:00", "2024-05-01T06:00:00"),
            (np.datetime64("2024-05-01T03", "h"), np.datetime64("2024-05-01T06:00:00", "s")),
            (us + 3 * 3_600_000_000, us + 6 * 3_600_000_000),
        ]
        for stage in ("log", "compacted"):
            for start, end in forms:
                got = db.get_history("h", start, end).column("value").to_pylist()
                assert got == [3.0, 4.0, 5.0], (stage, start)
                assert db.get_history_floats("h", start, end).tolist() == [3.0, 4.0, 5.0]
            day2 = db.get_history("h", dt.date(2024, 5, 2))
            assert day2.num_rows == 24
            assert db.get_history("h", end="2024-05-01T02:00Z").num_rows == 2
            assert db.get_history("h", last=3).column("value").to_pylist() == [45.0, 46.0, 47.0]
            assert db.get_history("h", None, "2024-05-01T10:00Z", last=2).num_rows == 2
            assert db.get_history("h", last=0).num_rows == 0
            db.compact()


def test_empty_range_keeps_the_key_type(tmp_path: Path) -> None:
    with open_db(tmp_path / "db") as db:
        db.append_batch("f", [1.0, 2.0], timestamps=[T0, T0 + 1])
        db.append_batch("t", ["a", "b"], timestamps=[T0, T0 + 1])
        db.append_batch("v", np.ones((2, 3), dtype=np.float32), timestamps=[T0, T0 + 1])
        for _ in range(2):
            for key, t in [
                ("f", pa.float64()),
                ("t", pa.large_string()),
                ("v", pa.list_(pa.float32(), 3)),
            ]:
                empty = db.get_history(key, T0 + 5, T0 + 9)
                assert empty.num_rows == 0 and empty.schema.field("value").type == t
                assert db.get_history(key, T0, T0).num_rows == 0
            floats = db.get_history_floats("f", T0 + 5)
            assert floats.dtype == np.float64 and len(floats) == 0
            assert db.get_history_tensor("v", start=T0 + 5).shape == (0, 3)
            db.compact()


def test_bad_ranges_and_last_are_refused(tmp_path: Path) -> None:
    with open_db(tmp_path / "db") as db:
        db.append("k", 1.0, timestamp=T0)
        with pytest.raises(InvalidArgumentError, match="start"):
            db.get_history("k", T0 + 10, T0)
        with pytest.raises(InvalidArgumentError, match="start"):
            db.get_history_floats("k", T0 + 10, T0)
        with pytest.raises(InvalidArgumentError, match="ISO"):
            db.get_history("k", "yesterday")
        with pytest.raises(InvalidArgumentError, match="at"):
            db.get("k", at="not a time")
        with pytest.raises(InvalidArgumentError, match="at"):
            db.get("k", at=1.5)
        for bad in (-1, 1.5, True, "3"):
            with pytest.raises(InvalidArgumentError, match="last"):
                db.get_history("k", last=bad)
            with pytest.raises(InvalidArgumentError, match="last"):
                db.history_reader("k", last=bad)
        assert db.get_history("k").num_rows == 1  # nothing changed


def test_get_at(tmp_path: Path) -> None:
    with open_db(tmp_path / "db") as db:
        db.append("k", 1.0, timestamp=T0 + 10)
        db.append("k", 3.0, timestamp=T0 + 30)
        db.append("k", 2.0, timestamp=T0 + 20)
        db.append("vec", np.ones(2, dtype=np.float32), timestamp=T0)
        for _ in range(2):
            assert db.get("k", at=T0 + 9) is None
            assert db.get("k", "none", at=T0 + 9) == "none"
            assert db.get("k", at=T0 + 10) == 1.0
            assert db.get("k", at=T0 + 29) == 2.0
            assert db.get("k", at=dt.datetime(2100, 1, 1)) == 3.0
            assert db.get("absent", 7, at=T0) == 7
            vec = db.get("vec", at=T0)
            vec[:] = 5  # a copy: the stored value stays
            assert db.get("vec", at=T0).tolist() == [1.0, 1.0]
            db.compact()


def test_compacted_range_is_a_view_of_the_mapping(tmp_path: Path) -> None:
    with open_db(tmp_path / "db") as db:
        n = 10_000
        ts = T0 + np.arange(n, dtype=np.int64) * 1_000_000
        order = np.random.default_rng(1).permutation(n)  # every entry out of order
        db.append_batch("k", np.arange(n, dtype=np.float64)[order], timestamps=ts[order])
        db.compact()
        whole = db.get_history_floats("k")
        assert whole.tolist() == list(range(n))
        part = db.get_history_floats("k", T0 + 100 * 1_000_000, T0 + 200 * 1_000_000)
        assert part.tolist() == list(range(100, 200))
        assert np.shares_memory(part, whole) and not part.flags.writeable
        assert np.shares_memory(db.get_history_floats("k", last=5), whole)
        table = db.get_history("k", T0, T0 + 50 * 1_000_000)
        chunk = table.column("value").chunk(0)
        assert chunk.buffers()[1].address >= whole.ctypes.data
        assert db.stats()["tail_entries"] == 0


def test_default_batch_timestamps_increase_after_earlier_appends(tmp_path: Path) -> None:
    with open_db(tmp_path / "db") as db:
        db.append("k", -1.0)
        db.append_batch("k", np.arange(1000.0))
        db.append_batch("k", ["a", "b", "c"])
        db.append("k", 1e9)
        ts = db.get_history("k").column("ts").cast(pa.int64()).to_numpy()
        assert len(ts) == 1005 and bool(np.all(np.diff(ts) > 0))
        assert ts[2] - ts[1] == 1  # a batch's values one microsecond apart
        assert db.get("k") == 1e9
        # keep_last never collapses an untimed batch
        db.compact()
        after = db.get_history("k").column("ts").cast(pa.int64()).to_numpy()
        assert after.tolist() == ts.tolist()
    with open_db(tmp_path / "db", "keep_last") as db:
        db.append_batch("m", np.arange(3000.0))  # over 1 MiB? no: copied; mapped below
        db.append_batch("big", np.arange(200_000.0))  # read back as a mapping of the log
        assert len(db.get_history("m")) == 3000 and len(db.get_history("big")) == 200_000
        big_ts = db.get_history("big").column("ts").cast(pa.int64()).to_numpy()
        assert bool(np.all(np.diff(big_ts) == 1))
    with open_db(tmp_path / "db", "keep_last") as db:  # replayed from the log
        assert db.get_history("big").column("ts").cast(pa.int64()).to_numpy().tolist() == (
            big_ts.tolist()
        )
        assert db.get("big") == 199_999.0
        assert db.get_history("k").column("ts").cast(pa.int64()).to_numpy().tolist() == (
            ts.tolist()
        )


def test_untimed_items_of_one_call_naming_one_key_follow_each_other(tmp_path: Path) -> None:
    with open_db(tmp_path / "db", "keep_last") as db:
        db.append_batches([("k", [1.0, 2.0], None), ("j", [9.0], None), ("k", [3.0, 4.0], None)])
        assert db.get_history_floats("k").tolist() == [1.0, 2.0, 3.0, 4.0]
        assert db.get("k") == 4.0
        db.append("k", 5.0)
        assert db.get_history_floats("k").tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    with open_db(tmp_path / "db", "keep_last") as db:  # replayed from the log
        assert db.get_history_floats("k").tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_out_of_order_key_timeline_is_cached_until_it_changes(tmp_path: Path) -> None:
    with open_db(tmp_path / "db") as db:
        db.append_batch("k", [3.0, 1.0, 2.0], timestamps=[T0 + 3, T0 + 1, T0 + 2])
        first = db.get_history("k")
        again = db.get_history("k")
        assert first.column("value").chunk(0).buffers()[1].address == (
            again.column("value").chunk(0).buffers()[1].address
        )  # the sorted merge was kept, not made twice
        db.append("k", 0.0, timestamp=T0)
        assert db.get_history("k").column("value").to_pylist() == [0.0, 1.0, 2.0, 3.0]
        snap = db.read_snapshot()
        assert [len(c) for c in snap.keys["k"].chunks()] == [4]
        assert snap.keys["k"].last().values.to_pylist()[-1] == 3.0
        db.delete("k")
        db.append("k", 9.0, timestamp=T0 + 1)
        assert db.get_history("k").column("value").to_pylist() == [9.0]


def test_retention_hook_is_applied_by_every_read(tmp_path: Path) -> None:
    # What the corrections layer plugs in: Engine.cutoff and Engine.has_retention.
    with open_db(tmp_path / "db") as db:
        db.append_batch("k", [1.0, 2.0, 3.0], timestamps=[T0 + 10, T0 + 20, T0 + 30])
        db.append("old", 5.0, timestamp=T0)
        engine = db._engine
        engine.cutoff = lambda key: T0 + 15  # type: ignore[method-assign]
        engine.has_retention = True
        db._expiring = True  # what set_retention does on the handle
        engine.lock_free = False  # and on the engine
        for _ in range(2):
            assert db.get_history("k").column("value").to_pylist() == [2.0, 3.0]
            assert db.get_history_floats("k", last=5).tolist() == [2.0, 3.0]
            assert db.get("k", at=T0 + 12) is None and db.get("k", at=T0 + 25) == 2.0
            assert db.get("k") == 3.0
            assert db.get("old", "expired") == "expired"  # the lock-free path is not taken
            with pytest.raises(synarrow.KeyNotFoundError):
                db.get_float("old")
            snap = db.read_snapshot()
            assert [c.ts.tolist() for c in snap.keys["k"].chunks()] == [[T0 + 20, T0 + 30]]
            db.compact()  # expired entries are dropped from the files
        assert db.stats()["entries"] == 2


def test_large_out_of_order_batch_read_back_from_the_log_mapping(tmp_path: Path) -> None:
    n = 200_000  # over MAP_BATCH_BYTES: the batch is viewed in the segment, not copied
    order = np.random.default_rng(2).permutation(n)
    ts = (T0 + np.arange(n, dtype=np.int64))[order]
    with open_db(tmp_path / "db") as db:
        db.append_batch("k", order.astype(np.float64), timestamps=ts)
        assert db.get("k") == float(n - 1)
        assert db.get_history_floats("k")[:5].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert db.get("k", at=T0 + 10) == 10.0
    with open_db(tmp_path / "db") as db:  # replayed
        assert db.get("k") == float(n - 1)
        assert db.get_history_floats("k", T0 + 7, T0 + 9).tolist() == [7.0, 8.0]


def test_keep_first_after_compaction_under_keep_all(tmp_path: Path) -> None:
    with open_db(tmp_path / "db") as db:
        db.append_batch("k", [1.0, 2.0, 3.0], timestamps=[T0, T0 + 5, T0 + 5])
        db.compact()  # keep_all: both entries at T0 + 5 are in the file
    with open_db(tmp_path / "db", "keep_first") as db:
        assert db.get("k") == 2.0
        assert db.get_history("k").column("value").to_pylist() == [1.0, 2.0]
        db.compact(full=True)  # a key without new entries is rewritten only by a full one
        assert db.get("k") == 2.0 and db.stats()["entries"] == 2


def test_default_timestamps_continue_after_a_compacted_batch_is_reopened(tmp_path: Path) -> None:
    # 3M values stamped now, now + 1 us, ...: the batch ends 3 s ahead of the wall clock,
    # and after compaction the log no longer holds it: the manifest keeps the clock.
    with open_db(tmp_path / "db") as db:
        db.append_batch("b", np.zeros(3_000_000))
        end = int(db.get_history("b", last=1).column("ts").cast(pa.int64())[0].as_py())
        db.compact()
    with open_db(tmp_path / "db") as db:
        db.append("b", 7.0)
        assert db.get("b") == 7.0
        ts = db.get_history("b", last=1).column("ts").cast(pa.int64())[0].as_py()
        assert ts > end
