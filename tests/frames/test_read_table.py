"""``read_table``: many keys as one long table, ranged and patterned, against a model; and
the round trip ``append_table(read_table(...))``."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from _support import NO_SYNC
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import synarrow
from synarrow.errors import InvalidArgumentError, KeyNotFoundError

KEYS = ["s/1", "s/2", "t/1"]


@st.composite
def writes(draw: Any) -> list[tuple[str, int, float]]:
    n = draw(st.integers(1, 40))
    return [(draw(st.sampled_from(KEYS)), draw(st.integers(0, 30)), float(i)) for i in range(n)]


def model_rows(
    rows: list[tuple[str, int, float]], keys: list[str], lo: int | None, hi: int | None
) -> list[tuple[str, int, float]]:
    out = []
    for k in sorted(keys):
        mine = [(ts, i, v) for i, (kk, ts, v) in enumerate(rows) if kk == k]
        mine.sort()  # by (ts, arrival)
        out += [
            (k, ts, v) for ts, _, v in mine if (lo is None or ts >= lo) and (hi is None or ts < hi)
        ]
    return out


def as_rows(table: pa.Table) -> list[tuple[str, int, float]]:
    ts = table.column("ts").cast(pa.int64()).to_pylist()
    return list(zip(table.column("key").to_pylist(), ts, table.column("value").to_pylist()))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    rows=writes(),
    lo=st.none() | st.integers(0, 30),
    width=st.none() | st.integers(0, 30),
    which=st.sampled_from(["*", "s/*", "t/1", "list"]),
    compact_after=st.integers(0, 40),
)
def test_read_table_matches_the_model(
    tmp_path: Path,
    rows: list[tuple[str, int, float]],
    lo: int | None,
    width: int | None,
    which: str,
    compact_after: int,
) -> None:
    hi = None if width is None or lo is None else lo + width
    root = tmp_path / "r"
    shutil.rmtree(root, ignore_errors=True)
    with synarrow.SynaDB(root / "db", NO_SYNC) as db:
        for n, (k, ts, v) in enumerate(rows):
            if n == compact_after:
                db.compact()
            db.append(k, v, timestamp=ts)
        present = sorted({k for k, _, _ in rows})
        if which == "list":
            wanted: Any = list(reversed(present))
            keys = present
        elif which == "t/1":
            if "t/1" not in present:
                with pytest.raises(KeyNotFoundError):
                    db.read_table("t/1")
                return
            wanted, keys = which, ["t/1"]
        else:
            wanted = which
            keys = [k for k in present if k.startswith(which[:-1])]
        table = db.read_table(wanted, lo, hi)
        assert as_rows(table) == model_rows(rows, keys, lo, hi)
        if table.num_rows:
            assert table.schema.field("value").type == pa.float64()


def test_round_trip_through_append_table(db: synarrow.SynaDB, tmp_path: Path) -> None:
    for i in range(3):
        db.append_batch(f"k{i}", [float(i), float(i + 1)], timestamps=[10 - i, 5])
    db.append_batch("text", ["x", "y"], timestamps=[1, 2])
    db.compact()
    with synarrow.SynaDB(tmp_path / "copy.db", NO_SYNC) as copy:
        assert copy.append_table(db.read_table("k*")) == 6
        assert copy.append_table(db.read_table("text")) == 2
        for k in db.keys():
            assert copy.get_history(k).equals(db.get_history(k))


def test_ranges_take_any_time_form(db: synarrow.SynaDB) -> None:
    day = 86_400_000_000
    db.append_batch("a", [1.0, 2.0, 3.0], timestamps=[0, day, 2 * day])
    db.append_batch("b", [4.0], timestamps=[day])
    table = db.read_table("*", "1970-01-02T00:00:00Z", "1970-01-03")
    assert as_rows(table) == [("a", day, 2.0), ("b", day, 4.0)]
    assert as_rows(db.read_table(["a", "b"], last=1)) == [("a", 2 * day, 3.0), ("b", day, 4.0)]


def test_keys_of_different_types_give_a_struct_column(db: synarrow.SynaDB) -> None:
    db.append("f", 1.5, timestamp=1)
    db.append("i", 2, timestamp=2)
    table = db.read_table("*")
    assert pa.types.is_struct(table.schema.field("value").type)
    assert table.column("value").to_pylist() == [
        {"float": 1.5, "int": None},
        {"float": None, "int": 2},
    ]


def test_empty_and_bad_requests(db: synarrow.SynaDB) -> None:
    db.append("a", 1.0, timestamp=5)
    empty = db.read_table("nothing/*")
    assert empty.num_rows == 0 and empty.column_names == ["key", "ts", "value"]
    assert db.read_table("a", 6).num_rows == 0
    with pytest.raises(KeyNotFoundError, match="missing"):
        db.read_table(["a", "missing"])
    with pytest.raises(InvalidArgumentError, match="after end"):
        db.read_table("a", 10, 5)
    with pytest.raises(InvalidArgumentError, match="ISO"):
        db.read_table("a", "not a time")
    with pytest.raises(InvalidArgumentError, match="last"):
        db.read_table("a", last=-1)
