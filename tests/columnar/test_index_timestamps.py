"""The key index's first_ts / last_ts columns, compaction writing each key sorted, and an
index written before the columns existed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from columnar_damage import rewrite_index

import synarrow
from synarrow.columnar import compact as compact_mod
from synarrow.columnar.index import INDEX_SCHEMA, INDEX_SCHEMA_V2
from synarrow.columnar.manifest import read_manifest
from synarrow.errors import CorruptionError

T0 = 1_700_000_000_000_000
CFG = synarrow.DbConfig(sync_on_write=False, auto_compact=False)


def index_table(path: Path) -> pa.Table:
    col = path / "columnar"
    name = read_manifest(col).index
    return pa.ipc.open_file(pa.py_buffer((col / name).read_bytes())).read_all()


def shuffled(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return np.arange(n, dtype=np.float64)[order], (T0 + np.arange(n, dtype=np.int64))[order]


def test_compaction_writes_each_key_sorted_with_its_time_bounds(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with synarrow.SynaDB(path, CFG) as db:
        values, ts = shuffled(5000)
        db.append_batch("a", values, timestamps=ts)
        db.append("b", 2.0, timestamp=T0 + 9)
        db.append("b", 1.0, timestamp=T0 + 3)
        db.compact()
        table = index_table(path)
        assert table.schema == INDEX_SCHEMA
        rows = table.to_pylist()
        assert [(r["key"], r["first_ts"], r["last_ts"]) for r in rows] == [
            ("a", T0, T0 + 4999),
            ("b", T0 + 3, T0 + 9),
        ]
        # The columnar data itself is sorted: the whole key is one zero-copy slice.
        floats = db.get_history_floats("a")
        assert floats.tolist() == list(range(5000)) and not floats.flags.writeable
    with synarrow.SynaDB(path, CFG) as db:  # the latest comes from the index, not the data
        assert db.get("a") == 4999.0 and db.get("b") == 2.0


def test_append_plan_only_for_an_in_order_tail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compact_mod, "REWRITE_LIMIT_BYTES", 0)  # a large base: append if it can
    with synarrow.SynaDB(tmp_path / "db", CFG) as db:
        db.append_batch("k", np.arange(100.0), timestamps=T0 + np.arange(100))
        db.compact()
        db.append_batch("k", [100.0, 101.0], timestamps=[T0 + 100, T0 + 101])
        assert db.compact()["keys_appended"] == 1  # in order, after the base: one more slice
        db.append("k", -1.0, timestamp=T0 - 1)  # late: before the base
        result = db.compact()
        assert result["keys_appended"] == 0 and result["keys_rewritten"] == 1
        assert db.get_history_floats("k").tolist() == [-1.0, *range(102)]
        assert [r["count"] for r in index_table(db.path).to_pylist()] == [103]


def test_keep_last_appends_no_tail_that_repeats_the_last_timestamp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compact_mod, "REWRITE_LIMIT_BYTES", 0)
    cfg = synarrow.DbConfig(sync_on_write=False, auto_compact=False, duplicates="keep_last")
    with synarrow.SynaDB(tmp_path / "db", cfg) as db:
        db.append_batch("k", [1.0, 2.0], timestamps=[T0, T0 + 1])
        db.compact()
        db.append("k", 3.0, timestamp=T0 + 1)  # replaces the entry at T0 + 1
        assert db.compact()["keys_rewritten"] == 1
        assert db.get_history("k").column("value").to_pylist() == [1.0, 3.0]
        assert db.stats()["entries"] == 2  # the duplicate is gone from the files


def test_index_without_time_columns_still_opens(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with synarrow.SynaDB(path, CFG) as db:
        db.append_batch("k", [1.0, 3.0, 2.0], timestamps=[T0 + 1, T0 + 3, T0 + 2])
        db.append("t", "x", timestamp=T0)
        db.compact()

    def drop_times(cols: dict) -> None:
        del cols["first_ts"], cols["last_ts"]

    rewrite_index(path, drop_times, schema=INDEX_SCHEMA_V2)
    assert index_table(path).schema == INDEX_SCHEMA_V2
    with synarrow.SynaDB(path, CFG) as db:
        assert db.get_history("k").column("value").to_pylist() == [1.0, 2.0, 3.0]
        assert db.get("k") == 3.0 and db.get("t") == "x"
        db.append("k", 0.5, timestamp=T0)
        assert db.get_history_floats("k").tolist() == [0.5, 1.0, 2.0, 3.0]
        result = db.compact()  # keys of the old index are rewritten with their bounds
        assert result["keys_rewritten"] == 2
        assert index_table(path).schema == INDEX_SCHEMA
        assert db.get("k") == 3.0
    with synarrow.SynaDB(path, CFG) as db:
        assert db.get("k") == 3.0 and db.get("t") == "x"


def test_crafted_time_bounds_are_corruption(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with synarrow.SynaDB(path, CFG) as db:
        db.append_batch("k", [1.0, 2.0], timestamps=[T0, T0 + 5])
        db.compact()

    def swap(cols: dict) -> None:
        cols["first_ts"][0], cols["last_ts"][0] = cols["last_ts"][0], cols["first_ts"][0]

    rewrite_index(path, swap)
    with pytest.raises(CorruptionError, match="first timestamp is after its last"):
        synarrow.SynaDB(path, CFG)

    def lie(cols: dict) -> None:
        cols["first_ts"][0], cols["last_ts"][0] = T0, T0 + 4

    rewrite_index(path, lie)
    with synarrow.SynaDB(path, CFG) as db, pytest.raises(CorruptionError, match="index says"):
        db.get_history("k")
