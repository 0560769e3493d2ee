"""Review of issue 14 (time-native histories) through the public API: each test is a
finding of the review of the merged branch; they fail until the cause is fixed."""

from __future__ import annotations

import numpy as np
import pytest

import synarrow
from synarrow.errors import InvalidArgumentError, SynaError

INT64_MAX = (1 << 63) - 1
INT64_MIN = -(1 << 63)


def _cfg() -> synarrow.DbConfig:
    return synarrow.DbConfig(sync_on_write=False, auto_compact=False)


def test_get_history_tensor_takes_start_end_positionally_like_get_history(tmp_path):
    """API.md: ``get_history(key, start=None, end=None, *, last=None)``, "same on
    get_history_tensor". ``dtype`` sits second, so a positional range is read as a dtype
    and numpy's bare TypeError escapes."""
    db = synarrow.SynaDB(tmp_path / "db", config=_cfg())
    db.append_batch("k", np.arange(5.0), timestamps=[40, 10, 30, 20, 0])
    expected = db.get_history_floats("k", 10, 35)
    try:
        got = db.get_history_tensor("k", 10, 35)
    except SynaError:
        pytest.fail("get_history_tensor(key, start, end) is refused")
    assert list(got) == list(expected) == [1.0, 3.0, 2.0]
    db.close()


def test_delete_range_up_to_int64_max_is_refused_and_writes_nothing(tmp_path):
    """The range tombstone stores "no upper bound" as ``end = INT64_MAX``, so an explicit
    ``[start, INT64_MAX)`` (which keeps an entry at ``ts == INT64_MAX``) would read back as
    unbounded after a reopen: it is refused instead, and ``end=None`` removes it all."""
    path = tmp_path / "db"
    db = synarrow.SynaDB(path, config=_cfg())
    db.append_batch("e", np.array([1.0, 2.0, 3.0]), timestamps=[0, 10, INT64_MAX])
    before = db.data_version
    with pytest.raises(InvalidArgumentError, match="end=None"):
        db.delete_range("e", 5, INT64_MAX)
    assert db.data_version == before
    assert db.delete_range("e", 5, None) == 2
    live = list(db.get_history_floats("e"))
    assert live == [1.0]
    db.close()
    db = synarrow.SynaDB(path, config=_cfg())
    assert list(db.get_history_floats("e")) == live
    assert db.get("e") == 1.0
    db.close()


def test_delete_range_from_int64_min_matches_after_reopen(tmp_path):
    """The lower side is symmetric (``start = INT64_MIN`` is the "unbounded" sentinel, and
    half-open ``[INT64_MIN, end)`` includes INT64_MIN either way): it must hold too."""
    path = tmp_path / "db"
    db = synarrow.SynaDB(path, config=_cfg())
    db.append_batch("f", np.array([1.0, 2.0, 3.0]), timestamps=[INT64_MIN, 0, 10])
    assert db.delete_range("f", INT64_MIN, 5) == 2
    live = list(db.get_history_floats("f"))
    db.close()
    db = synarrow.SynaDB(path, config=_cfg())
    assert list(db.get_history_floats("f")) == live == [3.0]
    db.close()


def test_append_after_reopen_comes_after_a_batch_with_default_timestamps(tmp_path):
    """append_batch without timestamps gives now, now + 1 us, ...; its docstring promises
    "later appends without a timestamp come after the last of them". The engine's clock
    (Engine.last_ts) starts at 0 on every open and is not seeded from the replayed log, so
    right after a reopen a default-timestamp append lands inside the batch's span (5 s of
    microseconds here) and ``get`` does not return it."""
    path = tmp_path / "db"
    n = 5_000_000
    db = synarrow.SynaDB(path, config=_cfg())
    db.append_batch("b", np.zeros(n))
    db.close()
    db = synarrow.SynaDB(path, config=_cfg())
    db.append("b", 7.0)
    assert db.get("b") == 7.0
    assert db.get_history("b", last=1).column("value").to_pylist() == [7.0]
    db.close()


def _rows(db: synarrow.SynaDB, query: str) -> int:
    return db.sql(query).column(0).to_pylist()[0]


def test_sql_history_and_latest_views_follow_a_retention_change(tmp_path):
    """The ``history`` / ``latest`` views are registered again only when
    ``db.data_version`` changes (sql.SqlSession.prepare); ``set_retention`` does not change
    it, so after a rule is set, changed or cleared they keep the old visibility while the
    per-key views, get_history and resample follow the rule."""
    import time

    db = synarrow.SynaDB(tmp_path / "db", config=_cfg())
    now = int(time.time() * 1e6)
    hour = 3600 * 10**6
    db.append_batch(
        "k", np.array([1.0, 2.0, 3.0]), timestamps=[now - 10 * hour, now - 2 * hour, now + hour]
    )
    db.set_retention("k", "5h")
    assert _rows(db, "select count(*) from history") == 2  # first registration: right
    db.set_retention("k", "1h")
    assert len(db.get_history_floats("k")) == 1
    assert _rows(db, 'select count(*) from "k"') == 1
    assert _rows(db, "select count(*) from history") == 1
    db.set_retention("k", None)
    assert _rows(db, 'select count(*) from "k"') == 3
    assert _rows(db, "select count(*) from history") == 3
    db.close()


def test_sql_latest_view_follows_a_retention_change(tmp_path):
    """Same cause as above, seen on ``latest``: the key whose every point expired after
    the views were registered is still listed."""
    import time

    db = synarrow.SynaDB(tmp_path / "db", config=_cfg())
    now = int(time.time() * 1e6)
    db.append("old", 1.0, timestamp=now - 10 * 3600 * 10**6)
    db.append("new", 2.0, timestamp=now)
    assert sorted(db.sql("select key from latest").column(0).to_pylist()) == ["new", "old"]
    db.set_retention("old", "1h")
    assert not db.exists("old")
    assert db.sql("select key from latest").column(0).to_pylist() == ["new"]
    db.close()


@pytest.mark.parametrize("keys", [None, ["k", 5], b"k"], ids=["none", "list-with-int", "bytes"])
def test_read_table_bad_keys_argument_is_a_clear_syna_error(tmp_path, keys):
    """read_table sorts ``set(keys_or_pattern)`` before checking the keys: ``None`` and a
    list mixing str and int raise a bare TypeError; bytes are iterated into ints ("keys must
    be str, got int 107"). resample refuses the same arguments with InvalidArgumentError
    naming keys_or_pattern."""
    db = synarrow.SynaDB(tmp_path / "db", config=_cfg())
    db.append_batch("k", np.arange(3.0), timestamps=[2, 0, 1])
    with pytest.raises(SynaError, match="keys_or_pattern"):
        db.read_table(keys)
    db.close()


def test_cli_import_of_a_long_csv_with_a_null_ts_writes_nothing_and_names_ts(tmp_path, capsys):
    """``synarrow import PATH file.csv`` on a long key/ts/value file (no frame flags) takes
    the old import_dataset path (export.import_dataset): a null ts in the second key's rows
    leaves the first key written, and the message is pyarrow's ("Float value nan was
    truncated converting to int64"). With ``--key-column key`` the same file is refused
    whole, naming the ts column (frames.stage_table). The issue asks for the long-format
    import in one all-or-nothing call, and bad input writes nothing."""
    from synarrow.cli import EXIT_OK, main

    src = tmp_path / "null_ts.csv"
    src.write_text("key,ts,value\na,3,1.5\nb,,2.5\n")
    db_path = tmp_path / "db"
    rc = main(["import", str(db_path), str(src), "--no-progress"])
    err = capsys.readouterr().err.replace(str(src), "SOURCE")
    assert rc != EXIT_OK
    with synarrow.SynaDB(db_path, readonly=True) as db:
        assert db.keys() == []
    assert "null" in err and "ts" in err, err


@pytest.mark.parametrize("reopen", [False, True], ids=["live", "replayed"])
def test_keep_first_get_of_an_unsorted_batch_with_ties_at_its_latest(tmp_path, reopen):
    """Under keep_first, ``get`` is the first written of the entries at the greatest
    timestamp. A batch [40, 3, 40] makes get return the second 40 (518.0) while
    get_history, get(at=), SQL ``latest`` and compaction keep the first (40.0).
    memtable.latest_row: when the chunk is not in order but its last ts is the maximum,
    the ``ts[-2] == top`` shortcut only looks at the row before the last (in-order
    reasoning), so the earlier row at the same ts is missed."""
    path = tmp_path / "db"
    cfg = synarrow.DbConfig(duplicates="keep_first", sync_on_write=False, auto_compact=False)
    db = synarrow.SynaDB(path, config=cfg)
    db.append_batch("k", np.array([40.0, 7.0, 518.0]), timestamps=[40, 3, 40])
    if reopen:
        db.close()
        db = synarrow.SynaDB(path, config=cfg)
    assert list(db.get_history_floats("k")) == [7.0, 40.0]
    assert db.get("k", at=40) == 40.0
    assert db.sql("select value from latest").column(0).to_pylist() == [40.0]
    assert db.get("k") == 40.0
    db.close()
