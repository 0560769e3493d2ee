"""The generation policy of compaction (synarrow/columnar/compact.py).

* files are shared by keys of one value type: their number does not grow with the keys;
* a later compaction writes only keys with new entries (small ones whole, large ones as one
  more slice, re-merged past ``MAX_SLICES``); untouched keys stay where they are;
* a file under half alive is rewritten away; ``full=True`` rewrites every key.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import synarrow
import synarrow.columnar.compact as compact_mod

NO_SYNC = synarrow.DbConfig(sync_on_write=False, auto_compact=False)


def data_files(path: Path) -> list[str]:
    return sorted(f.name for f in (path / "columnar").glob("*.arrow"))


def test_ten_thousand_keys_make_a_handful_of_files(db: synarrow.SynaDB, db_path: Path) -> None:
    for i in range(10_000):
        key = f"sensor/{i:05d}"
        if i % 4 == 0:
            db.append(key, f"label {i}")
        else:
            db.append(key, float(i))
    result = db.compact()
    assert result["keys"] == 10_000
    assert len(result["files_written"]) <= 3
    assert len(data_files(db_path)) <= 4  # data files (one per value type) + key index
    assert db.stats()["columnar_files"] <= 3
    db.close()
    with synarrow.SynaDB(db_path, NO_SYNC) as again:
        assert len(again) == 10_000
        assert again.get("sensor/00000") == "label 0"
        assert again.get("sensor/09999") == 9999.0
        assert again.keys("sensor/0999?") == [f"sensor/0999{i}" for i in range(10)]


def test_second_compaction_rewrites_only_changed_keys(db: synarrow.SynaDB) -> None:
    for i in range(1000):
        db.append_batch(f"k{i}", np.arange(10.0) + i, timestamps=np.arange(10))
    first = db.compact()
    assert first["keys_rewritten"] == 1000 and first["entries_written"] == 10_000
    for key in ("k1", "k500", "k999"):
        db.append(key, -1.0)
    second = db.compact()
    assert second["keys"] == 1000
    assert second["keys_rewritten"] + second["keys_appended"] == 3
    assert second["entries_written"] <= 3 * 11
    assert len(second["files_written"]) == 1
    for key in ("k1", "k500", "k999"):
        h = db.get_history_floats(key)
        assert len(h) == 11 and h[-1] == -1.0
    np.testing.assert_array_equal(db.get_history_floats("k2"), np.arange(10.0) + 2)


def test_compaction_with_nothing_new_writes_no_data(db: synarrow.SynaDB, db_path: Path) -> None:
    db.append_batch("a", np.arange(100.0))
    db.compact()
    files = data_files(db_path)
    result = db.compact()
    assert result["files_written"] == []
    assert result["keys_rewritten"] == 0 and result["keys_appended"] == 0
    assert result["entries_written"] == 0
    assert [f for f in data_files(db_path) if "index" not in f] == [
        f for f in files if "index" not in f
    ]


def test_full_compaction_rewrites_every_key(db: synarrow.SynaDB) -> None:
    for i in range(20):
        db.append(f"k{i}", float(i))
    db.compact()
    db.append("k0", 1.5)
    result = db.compact(full=True)
    assert result["keys_rewritten"] == 20
    assert result["entries_written"] == 21
    assert [db.get(f"k{i}") for i in range(1, 20)] == [float(i) for i in range(1, 20)]


def test_large_key_gets_its_new_entries_appended_as_a_slice(
    db: synarrow.SynaDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compact_mod, "REWRITE_LIMIT_BYTES", 1024)
    # Only the slice policy is under test here: keep the small-file merge out of the way.
    monkeypatch.setattr(compact_mod, "MAX_SMALL_FILES", 100)
    values = np.arange(10_000.0)
    db.append_batch("big", values, timestamps=np.arange(10_000))
    db.append("small", 1.0)
    db.compact()
    expected = list(values)
    for round_ in range(compact_mod.MAX_SLICES - 1):
        db.append("big", -float(round_))
        expected.append(-float(round_))
        result = db.compact()
        assert result["keys_appended"] == 1 and result["keys_rewritten"] == 0
        assert result["entries_written"] == 1  # not the 10k already in a file
        table = db.get_history("big")
        assert table.column("value").num_chunks == round_ + 2
        np.testing.assert_array_equal(db.get_history_floats("big"), expected)
    db.append("big", 7.0)  # past MAX_SLICES slices the key is merged back into one
    expected.append(7.0)
    result = db.compact()
    # "big" is merged back; "small" moves too, as its file is left mostly dead.
    assert result["keys_rewritten"] == 2
    assert result["entries_written"] == len(expected) + 1
    assert db.get_history("big").column("value").num_chunks == 1
    np.testing.assert_array_equal(db.get_history_floats("big"), expected)
    assert db.get("small") == 1.0


def test_appended_slices_survive_reopen(db_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compact_mod, "REWRITE_LIMIT_BYTES", 1024)
    with synarrow.SynaDB(db_path, NO_SYNC) as db:
        db.append_batch("big", np.arange(1000.0))
        db.compact()
        db.append_batch("big", np.arange(3.0))
        db.compact()
        db.append("big", 5.0)
    with synarrow.SynaDB(db_path, NO_SYNC) as db:
        want = np.concatenate([np.arange(1000.0), np.arange(3.0), [5.0]])
        np.testing.assert_array_equal(db.get_history_floats("big"), want)


def _six_of_ten_rewritten(db: synarrow.SynaDB, db_path: Path) -> list[str]:
    for i in range(10):
        db.append(f"k{i}", float(i))
    db.compact()
    first = [f for f in data_files(db_path) if "index" not in f]
    for i in range(6):  # 6 of 10 rows move to the next generation: the first file is dying
        db.append(f"k{i}", 100.0 + i)
    return first


def _values_after_six(db: synarrow.SynaDB) -> None:
    assert [db.get(f"k{i}") for i in range(10)] == [100.0 + i for i in range(6)] + [
        float(i) for i in range(6, 10)
    ]
    assert len(db.get_history_floats("k0")) == 2


def test_a_mostly_dead_file_is_removed_by_the_next_compaction(
    db: synarrow.SynaDB, db_path: Path
) -> None:
    first = _six_of_ten_rewritten(db, db_path)
    db.compact()
    db.compact()
    assert not set(first) & set(data_files(db_path))
    _values_after_six(db)


def test_a_file_left_mostly_dead_is_removed_by_the_same_compaction(
    db: synarrow.SynaDB, db_path: Path
) -> None:
    first = _six_of_ten_rewritten(db, db_path)
    result = db.compact()
    _values_after_six(db)
    assert set(first) <= set(result["files_removed"])
    assert not set(first) & set(data_files(db_path))


def test_a_mostly_live_file_is_left_alone(db: synarrow.SynaDB, db_path: Path) -> None:
    for i in range(10):
        db.append(f"k{i}", float(i))
    db.compact()
    first = [f for f in data_files(db_path) if "index" not in f]
    db.append("k0", 1.5)
    result = db.compact()
    assert result["keys_rewritten"] + result["keys_appended"] == 1
    assert set(first) <= set(data_files(db_path))


def test_files_stay_bounded_over_many_small_compactions(db: synarrow.SynaDB, db_path: Path) -> None:
    for i in range(100):
        db.append(f"k{i}", float(i))
    db.compact()
    for j in range(25):  # each compaction touches one key: the first file stays mostly live
        db.append(f"k{j}", -1.0)
        db.compact()
    assert db.stats()["columnar_files"] <= 10
    assert len(data_files(db_path)) <= 11


def test_stats_report_columnar_state(db: synarrow.SynaDB) -> None:
    assert db.stats()["columnar_files"] == 0
    assert db.stats()["columnar_bytes"] == 0
    assert db.stats()["last_compaction"] is None
    db.append_batch("a", np.arange(1000.0))
    result = db.compact()
    stats = db.stats()
    assert stats["columnar_files"] == len(result["files_written"]) == 1
    assert stats["columnar_bytes"] >= 16 * 1000
    assert stats["last_compaction"] is not None
    assert result["generation"] == 1
    assert db.compact()["generation"] == 2
