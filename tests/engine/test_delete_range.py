"""``delete_range``: a durable range tombstone, applied at once, in replay and at compaction."""

from __future__ import annotations

import datetime as dt
import struct
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from _support import NO_SYNC, STATES, bring_to_state
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import synarrow
from synarrow.check import check_database
from synarrow.errors import (
    CorruptionError,
    InvalidArgumentError,
    InvalidKeyError,
    ReadOnlyError,
)
from synarrow.log.range_tombstone import decode_range, encode_range

T0 = 1_700_000_000_000_000  # microseconds


def _values(db: synarrow.SynaDB, key: str) -> list[float]:
    return db.get_history(key).column("value").to_pylist()


def _ts(db: synarrow.SynaDB, key: str) -> list[int]:
    return db.get_history(key).column("ts").cast("int64").to_pylist()


def _fill(db: synarrow.SynaDB, half: int) -> None:
    """k: 0..19 at T0 + i seconds (half 0: 0..9, half 1: 10..19), one batch and singles."""
    lo = half * 10
    db.append_batch(
        "k",
        np.arange(lo, lo + 5, dtype=np.float64),
        timestamps=[T0 + i * 1_000_000 for i in range(lo, lo + 5)],
    )
    for i in range(lo + 5, lo + 10):
        db.append("k", float(i), timestamp=T0 + i * 1_000_000)


def _columnar_rows(db: synarrow.SynaDB) -> int:
    return sum(f.rows for f in db._engine.columnar.manifest.files)


def _sec(i: int) -> int:
    return T0 + i * 1_000_000


@pytest.mark.parametrize("state", STATES)
@pytest.mark.parametrize(
    ("start", "end", "left"),
    [
        (0, 3, list(range(3, 20))),  # the start
        (7, 13, [*range(7), *range(13, 20)]),  # the middle, across halves
        (15, 20, list(range(15))),  # the end
        (0, 20, []),  # the whole history
        (None, 5, list(range(5, 20))),  # unbounded below
        (12, None, list(range(12))),  # unbounded above
        (4, 4, list(range(20))),  # an empty range
    ],
)
def test_ranges_in_every_state(
    db_path: Path, state: str, start: int | None, end: int | None, left: list[int]
) -> None:
    db = bring_to_state(db_path, state, _fill)
    lo = None if start is None else _sec(start)
    hi = None if end is None else _sec(end)
    removed = db.delete_range("k", lo, hi)
    assert removed == 20 - len(left)
    expected = [float(i) for i in left]
    assert (_values(db, "k") if left else []) == expected
    db.close()
    for step in ("reopen", "compact", "reopen after compact"):
        db = synarrow.SynaDB(db_path, NO_SYNC)
        if step == "compact":
            db.compact()
        assert (_values(db, "k") if left else []) == expected, step
        assert db.exists("k") == bool(left)
        assert ("k" in db.keys()) == bool(left)
        db.close()


def test_appends_after_the_delete_stay(db: synarrow.SynaDB) -> None:
    _fill(db, 0)
    assert db.delete_range("k", _sec(2), _sec(6)) == 4
    db.append("k", 100.0, timestamp=_sec(3))  # inside the deleted range, written after it
    db.append_batch("k", [101.0, 102.0], timestamps=[_sec(4), _sec(5)])
    expected = [0.0, 1.0, 100.0, 101.0, 102.0, 6.0, 7.0, 8.0, 9.0]
    assert _values(db, "k") == expected
    db.close()
    with synarrow.SynaDB(db.path, NO_SYNC) as again:
        assert _values(again, "k") == expected  # replay applies the tombstone in log order
        again.compact()
        assert _values(again, "k") == expected
    with synarrow.SynaDB(db.path, NO_SYNC) as again:
        assert _values(again, "k") == expected


def test_get_after_deleting_the_latest(db: synarrow.SynaDB) -> None:
    _fill(db, 0)
    db.delete_range("k", _sec(8), None)
    assert db.get("k") == 7.0
    assert db.get_float("k") == 7.0
    db.compact()
    assert db.get("k") == 7.0
    db.delete_range("k", _sec(5), None)
    db.close()
    with synarrow.SynaDB(db.path, NO_SYNC) as again:
        assert again.get("k") == 4.0
        assert _ts(again, "k")[-1] == _sec(4)


def test_mixed_types_latest_atom(db: synarrow.SynaDB) -> None:
    db.append("m", 1.0, timestamp=_sec(0))
    db.append("m", "text", timestamp=_sec(1))
    db.append("m", b"raw", timestamp=_sec(2))
    db.delete_range("m", _sec(2), None)
    assert db.get("m") == "text"
    assert db.get_text("m") == "text"
    db.delete_range("m", _sec(1), _sec(2))
    assert db.get_float("m") == 1.0


def test_empty_key_is_not_live_and_can_start_again(db: synarrow.SynaDB) -> None:
    _fill(db, 0)
    assert db.delete_range("k") == 10
    assert not db.exists("k")
    assert db.get("k", "gone") == "gone"
    assert "k" not in db.keys()
    assert "k" not in db.read_snapshot()
    assert db.sql("SELECT count(*) AS n FROM history").column("n").to_pylist() == [0]
    db.append("k", 1.0, timestamp=_sec(0))
    assert _values(db, "k") == [1.0]
    db.close()
    with synarrow.SynaDB(db.path, NO_SYNC) as again:
        assert _values(again, "k") == [1.0]


def test_times_as_users_give_them(db: synarrow.SynaDB) -> None:
    base = dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc)
    stamps = [base + dt.timedelta(hours=h) for h in range(6)]
    db.append_batch("h", np.arange(6.0), timestamps=stamps)
    assert db.delete_range("h", "2024-05-01T01:00:00Z", np.datetime64("2024-05-01T03:00")) == 2
    assert db.delete_range("h", dt.datetime(2024, 5, 1, 4), "2024-05-01T07:00+02:00") == 1
    assert _values(db, "h") == [0.0, 3.0, 5.0]


def test_unsorted_history_and_duplicates(db_path: Path) -> None:
    cfg = synarrow.DbConfig(sync_on_write=False, auto_compact=False, duplicates="keep_last")
    with synarrow.SynaDB(db_path, cfg) as db:
        db.append_batch("u", [5.0, 1.0, 3.0, 3.5, 2.0], timestamps=[50, 10, 30, 30, 20])
        assert db.delete_range("u", 20, 30) == 1
        assert _values(db, "u") == [1.0, 3.5, 5.0]  # keep_last of the two at 30
        assert db.delete_range("u", 30, 31) == 1  # as reads saw them; both stored go
        assert _values(db, "u") == [1.0, 5.0]


def test_missing_key_and_nothing_in_range_write_nothing(db: synarrow.SynaDB) -> None:
    _fill(db, 0)
    before = db.next_sequence
    assert db.delete_range("absent", None, None) == 0
    assert db.delete_range("k", _sec(100), _sec(200)) == 0
    assert db.next_sequence == before
    db.delete("k")
    assert db.delete_range("k") == 0


@pytest.mark.parametrize(
    ("start", "end", "error"),
    [
        (_sec(5), _sec(1), InvalidArgumentError),  # start after end
        ("yesterday-ish", None, InvalidArgumentError),
        (None, [1, 2], InvalidArgumentError),
        (True, None, InvalidArgumentError),
    ],
)
def test_bad_input_writes_nothing(
    db: synarrow.SynaDB, start: object, end: object, error: type
) -> None:
    _fill(db, 0)
    before = db.next_sequence
    with pytest.raises(error):
        db.delete_range("k", start, end)
    with pytest.raises(InvalidKeyError):
        db.delete_range("", 0, 1)
    assert db.next_sequence == before
    assert len(_values(db, "k")) == 10


def test_read_only_handle_refused(db_path: Path) -> None:
    with synarrow.SynaDB(db_path, NO_SYNC) as db:
        _fill(db, 0)
    with synarrow.SynaDB(db_path, readonly=True) as ro:
        with pytest.raises(ReadOnlyError):
            ro.delete_range("k", _sec(0), _sec(3))
        assert len(_values(ro, "k")) == 10


def test_read_only_handle_replays_it(db_path: Path) -> None:
    with synarrow.SynaDB(db_path, NO_SYNC) as db:
        _fill(db, 0)
        db.delete_range("k", _sec(0), _sec(8))
    with synarrow.SynaDB(db_path, readonly=True) as ro:
        assert _values(ro, "k") == [8.0, 9.0]
    assert check_database(db_path).ok  # check decodes range tombstones as valid entries


def test_space_reclaimed_at_compaction(db: synarrow.SynaDB) -> None:
    db.append_batch("big", np.arange(10_000.0), timestamps=np.arange(10_000) + T0)
    db.append_batch("other", np.arange(10.0), timestamps=np.arange(10) + T0)
    db.compact()
    assert _columnar_rows(db) == 10_010
    db.delete_range("big", T0 + 100, None)
    assert db.stats()["entries"] == 110
    db.compact()
    assert _columnar_rows(db) == 110
    assert db.get_history_floats("big").tolist() == list(np.arange(100.0))


def test_compaction_racing_a_delete_range(db_path: Path) -> None:
    """A delete_range while a compaction writes: the compaction's view of the key is not
    installed over it, and the tombstone (after the compaction's segment switch) holds."""
    db = synarrow.SynaDB(db_path, NO_SYNC)
    _fill(db, 0)
    db.compact()
    _fill(db, 1)
    compactor = db._engine.compactor
    from synarrow.columnar import compact as columnar_compact

    real = columnar_compact.write_generation

    def write_then_delete(*args: object, **kwargs: object) -> object:
        result = real(*args, **kwargs)  # type: ignore[arg-type]
        db.delete_range("k", _sec(5), _sec(15))  # between the write and the install
        return result

    columnar_compact.write_generation = write_then_delete  # type: ignore[assignment]
    try:
        compactor.run(full=False)
    finally:
        columnar_compact.write_generation = real
    expected = [float(i) for i in [*range(5), *range(15, 20)]]
    assert _values(db, "k") == expected
    db.close()
    with synarrow.SynaDB(db_path, NO_SYNC) as again:
        assert _values(again, "k") == expected
        again.compact()
        assert _values(again, "k") == expected


def test_range_tombstone_encoding() -> None:
    assert decode_range(encode_range(None, None)) == (None, None)
    assert decode_range(encode_range(-5, 7)) == (-5, 7)
    with pytest.raises(ValueError, match="16 bytes"):
        decode_range(b"\0" * 15)
    with pytest.raises(ValueError, match="after end"):
        decode_range(struct.pack("<qq", 9, 1))


def test_damaged_tombstone_is_corruption(db_path: Path) -> None:
    """A range tombstone that passes its CRC but holds start > end: CorruptionError on open,
    and ``check`` names it; nothing is silently applied."""
    from synarrow.log.format import encode_entry
    from synarrow.log.range_tombstone import RANGE_TOMBSTONE_FLAGS

    with synarrow.SynaDB(db_path, NO_SYNC) as db:
        _fill(db, 0)
    seg = sorted((db_path / "log").glob("*.log"))[-1]
    with open(seg, "ab") as f:
        f.write(encode_entry(T0, b"k", struct.pack("<qq", 9, 1), RANGE_TOMBSTONE_FLAGS))
    with pytest.raises(CorruptionError, match="range tombstone"):
        synarrow.SynaDB(db_path, NO_SYNC)
    report = check_database(db_path)
    assert not report.ok
    assert any("range tombstone" in line for line in report.damage), report.damage


# -- against a model ---------------------------------------------------------------------------

DAY = 86_400_000_000
_t = st.integers(0, 40)  # a point is 40 - t days old

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("append"), _t),
        st.tuples(st.just("batch"), st.lists(_t, min_size=1, max_size=6)),
        st.tuples(st.just("delete_range"), st.one_of(st.none(), _t), st.one_of(st.none(), _t)),
        st.tuples(st.just("retention"), st.one_of(st.none(), st.integers(1, 45))),
        st.tuples(st.just("compact")),
        st.tuples(st.just("reopen")),
    ),
    max_size=25,
)


def _visible_rows(
    model: list[tuple[int, int, float]], days: int | None, duplicates: str
) -> list[tuple[int, int, float]]:
    """What reads show: sorted by (time, arrival), unexpired, the duplicates policy applied."""
    rows = sorted(e for e in model if days is None or 40 - e[0] < days)
    if duplicates == "keep_last":
        rows = [e for i, e in enumerate(rows) if i + 1 == len(rows) or rows[i + 1][0] != e[0]]
    elif duplicates == "keep_first":
        rows = [e for i, e in enumerate(rows) if i == 0 or rows[i - 1][0] != e[0]]
    return rows


def _inside(e: tuple[int, int, float], lo: int | None, hi: int | None) -> bool:
    return (lo is None or e[0] >= lo) and (hi is None or e[0] < hi)


def _visible(model: list[tuple[int, int, float]], days: int | None, duplicates: str) -> list[float]:
    return [v for _, _, v in _visible_rows(model, days, duplicates)]


@pytest.mark.parametrize("duplicates", ["keep_all", "keep_last", "keep_first"])
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=_ops)
def test_against_a_model(tmp_path: Path, duplicates: str, ops: list[tuple]) -> None:
    """Out-of-order appends, batches, range deletes, retention rules, compactions and
    reopens against a list of (t, arrival, value) read sorted by (t, arrival)."""
    path = tmp_path / f"m{uuid.uuid4().hex}.db"  # tmp_path is shared by the examples
    cfg = synarrow.DbConfig(sync_on_write=False, auto_compact=False, duplicates=duplicates)
    now = time.time_ns() // 1000

    def ts(t: int) -> int:
        return now - (40 - t) * DAY

    db = synarrow.SynaDB(path, cfg)
    model: list[tuple[int, int, float]] = []
    days: int | None = None  # the retention rule of "k", in days
    n = 0
    try:
        for op in ops:
            if op[0] == "append":
                db.append("k", float(n), timestamp=ts(op[1]))
                model.append((op[1], n, float(n)))
                n += 1
            elif op[0] == "batch":
                values = [float(n + i) for i in range(len(op[1]))]
                db.append_batch("k", values, timestamps=[ts(t) for t in op[1]])
                model += [(t, n + i, v) for i, (t, v) in enumerate(zip(op[1], values))]
                n += len(op[1])
            elif op[0] == "delete_range":
                lo, hi = op[1], op[2]
                if lo is not None and hi is not None and lo > hi:
                    lo, hi = hi, lo

                gone = [e for e in model if _inside(e, lo, hi)]
                seen = [e for e in _visible_rows(model, days, duplicates) if _inside(e, lo, hi)]
                if not _visible(model, days, duplicates):
                    gone = []  # a key with nothing visible is not live: nothing to remove
                removed = db.delete_range(
                    "k", None if lo is None else ts(lo), None if hi is None else ts(hi)
                )
                assert removed == len(seen)  # counted as reads saw them
                model = [e for e in model if e not in gone]
            elif op[0] == "retention":
                days = op[1]
                db.set_retention("k", None if days is None else f"{days}d")
            elif op[0] == "compact":
                db.compact()
                if days is not None:  # expired points are dropped for good
                    model = [e for e in model if 40 - e[0] < days]
            else:
                db.close()
                db = synarrow.SynaDB(path, cfg)
            expected = _visible(model, days, duplicates)
            if expected:
                assert _values(db, "k") == expected
                assert db.get_history_tensor("k").tolist() == expected
                sql = db.sql('SELECT value FROM "k"').column(0).to_pylist()
                assert sorted(sql) == sorted(expected)  # the per-key view reads the timeline
                if days is not None:  # with a rule, get reads the ordered timeline
                    assert db.get("k") == expected[-1]
            else:
                assert not db.exists("k")
                assert db.get("k") is None
        db.close()
        with synarrow.SynaDB(path, cfg) as again:
            expected = _visible(model, days, duplicates)
            assert (_values(again, "k") if expected else []) == expected
    finally:
        db.close()
