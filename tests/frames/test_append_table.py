"""``append_table``: a long frame from pandas, polars, Arrow or an Arrow C stream gives the
same histories as appending each key's rows with ``append_batch``; wide frames; timestamps of
every unit and zone; all-or-nothing on bad input."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from _support import NO_SYNC
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import synarrow
from synarrow.errors import InvalidArgumentError, InvalidKeyError, InvalidValueError, SynaError

pd = pytest.importorskip("pandas")
pl = pytest.importorskip("polars")

KEYS = ["a", "b", "sensor/1", "ü"]


class CStream:
    """An object that only offers ``__arrow_c_stream__`` (like a nanoarrow or DuckDB result)."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        return self.table.__arrow_c_stream__(requested_schema)


def as_format(table: pa.Table, fmt: str) -> Any:
    if fmt == "pandas":
        return table.to_pandas()
    if fmt == "polars":
        return pl.from_arrow(table)
    if fmt == "batch":
        return table.combine_chunks().to_batches()[0] if table.num_rows else table
    if fmt == "reader":
        return pa.RecordBatchReader.from_batches(table.schema, table.to_batches(max_chunksize=3))
    if fmt == "stream":
        return CStream(table)
    return table


FORMATS = ["arrow", "batch", "reader", "stream", "pandas", "polars"]

VALUES = {
    "float": (st.floats(allow_nan=False, width=64), pa.float64()),
    "int": (st.integers(-(2**63), 2**63 - 1), pa.int64()),
    "text": (st.text(max_size=5), pa.string()),
}


@st.composite
def long_frames(draw: Any) -> pa.Table:
    kind = draw(st.sampled_from(sorted(VALUES)))
    values, arrow_type = VALUES[kind]
    n = draw(st.integers(0, 30))
    keys = draw(st.lists(st.sampled_from(KEYS), min_size=n, max_size=n))
    ts = draw(st.lists(st.integers(0, 20), min_size=n, max_size=n))  # duplicates, disorder
    vals = draw(st.lists(values, min_size=n, max_size=n))
    return pa.table(
        {
            "key": pa.array(keys, pa.string()),
            "ts": pa.array(ts, pa.int64()),
            "value": pa.array(vals, arrow_type),
        }
    )


def histories(db: synarrow.SynaDB) -> dict[str, list[tuple[Any, Any]]]:
    return {
        k: list(zip(*(db.get_history(k).column(c).to_pylist() for c in ("ts", "value"))))
        for k in db.keys()
    }


def by_append_batch(db: synarrow.SynaDB, table: pa.Table) -> None:
    rows = table.to_pylist()
    for key in sorted({r["key"] for r in rows}):
        mine = [r for r in rows if r["key"] == key]
        values = pa.array([r["value"] for r in mine], table.column("value").type)
        db.append_batch(key, values, timestamps=np.array([r["ts"] for r in mine], np.int64))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(table=long_frames(), fmt=st.sampled_from(FORMATS), compact=st.booleans())
def test_long_frame_matches_append_batch_per_key(
    tmp_path: Path, table: pa.Table, fmt: str, compact: bool
) -> None:
    root = tmp_path / "h"
    shutil.rmtree(root, ignore_errors=True)
    with (
        synarrow.SynaDB(root / "frame.db", NO_SYNC) as db,
        synarrow.SynaDB(root / "model.db", NO_SYNC) as model,
    ):
        assert db.append_table(as_format(table, fmt)) == table.num_rows
        by_append_batch(model, table)
        if compact:
            db.compact()
        assert histories(db) == histories(model)
        everything = db.read_table("*")
        assert everything.to_pylist() == model.read_table(model.keys()).to_pylist()
        assert everything.column("key").to_pylist() == sorted(everything.column("key").to_pylist())


def test_rows_already_grouped_and_scattered_give_the_same(db: synarrow.SynaDB) -> None:
    n = 1000
    rng = np.random.default_rng(1)
    keys = np.array([f"k{i % 7}" for i in range(n)], dtype=object)
    frame = pd.DataFrame({"key": keys, "ts": rng.integers(0, 50, n), "value": rng.random(n)})
    grouped = frame.sort_values("key", kind="stable")
    assert db.append_table(frame, prefix="scattered/") == n
    assert db.append_table(grouped, prefix="grouped/") == n
    for i in range(7):
        a = db.get_history(f"scattered/k{i}")
        b = db.get_history(f"grouped/k{i}")
        assert a.equals(b)


def test_one_call_is_one_write(db: synarrow.SynaDB) -> None:
    """One batch entry per key, all in one call: the sequence grows by the number of keys."""
    frame = pa.table({"key": ["x", "y", "x", "z"], "ts": [4, 3, 2, 1], "value": [1, 2, 3, 4]})
    before = db.next_sequence
    db.append_table(frame)
    assert db.next_sequence == before + 3
    assert db.get_history("x").column("value").to_pylist() == [3, 1]


# -- timestamps ------------------------------------------------------------------------------

T0 = dt.datetime(2024, 5, 1, 12, tzinfo=dt.timezone.utc)
US0 = int(T0.timestamp()) * 1_000_000


@pytest.mark.parametrize(
    "ts_column",
    [
        pa.array([US0, US0 + 1_000_000], pa.int64()),
        pa.array([US0 // 1_000_000, US0 // 1_000_000 + 1], pa.timestamp("s")),
        pa.array([US0 * 1000, US0 * 1000 + 1_000_000_000], pa.timestamp("ns", tz="UTC")),
        pa.array([US0 // 1000, US0 // 1000 + 1000], pa.timestamp("ms", tz="Europe/Berlin")),
        pa.array(["2024-05-01T12:00:00Z", "2024-05-01T14:00:01+02:00"]),
        pa.array([T0, T0 + dt.timedelta(seconds=1)]),
    ],
    ids=["int-us", "s", "ns-utc", "ms-berlin", "iso", "datetime"],
)
def test_timestamp_units_and_zones(db: synarrow.SynaDB, ts_column: pa.Array) -> None:
    db.append_table(pa.table({"key": ["k", "k"], "ts": ts_column, "value": [1.0, 2.0]}))
    ts = db.get_history("k").column("ts").cast(pa.int64()).to_pylist()
    assert ts == [US0, US0 + 1_000_000]


def test_pandas_timestamps_with_zone_and_nanoseconds(db: synarrow.SynaDB) -> None:
    stamps = pd.to_datetime(
        ["2024-05-01 14:00:00.0000019", "2024-05-01 14:00:01.0000000"]
    ).tz_localize("Europe/Berlin")
    db.append_table(pd.DataFrame({"key": ["k", "k"], "ts": stamps, "value": [1, 2]}))
    ts = db.get_history("k").column("ts").cast(pa.int64()).to_pylist()
    assert ts == [US0 + 1, US0 + 1_000_000]  # nanoseconds truncated to microseconds


def test_default_timestamps_when_ts_is_none(db: synarrow.SynaDB) -> None:
    frame = pa.table({"key": ["a", "b", "a"], "value": [1.0, 2.0, 3.0]})
    before = synarrow.inputs.datetime_to_us(dt.datetime.now(dt.timezone.utc))
    assert db.append_table(frame, ts=None) == 3
    table = db.get_history("a")
    assert table.column("value").to_pylist() == [1.0, 3.0]
    assert min(table.column("ts").cast(pa.int64()).to_pylist()) >= before


# -- wide frames -----------------------------------------------------------------------------


def test_wide_pandas_frame_with_datetime_index(db: synarrow.SynaDB) -> None:
    index = pd.date_range("2024-05-01", periods=4, freq="1h", tz="UTC", name="time")
    frame = pd.DataFrame({"t1": [1.0, 2.0, 3.0, 4.0], "t2": [5, 6, 7, 8]}, index=index)
    assert db.append_table(frame, key=None, prefix="room/") == 8
    assert db.keys() == ["room/t1", "room/t2"]
    assert db.get_history("room/t2").column("value").to_pylist() == [5, 6, 7, 8]
    ts = db.get_history("room/t1").column("ts").to_pylist()
    assert ts[0] == dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc)
    assert ts[-1] - ts[0] == dt.timedelta(hours=3)


def test_wide_frame_with_ts_column_and_text(db: synarrow.SynaDB) -> None:
    frame = pl.DataFrame({"ts": [3, 1], "state": ["on", "off"], "level": [0.5, 0.25]})
    assert db.append_table(frame, key=None) == 4
    assert db.get_history("state").column("value").to_pylist() == ["off", "on"]
    assert db.get_history("level").column("ts").cast(pa.int64()).to_pylist() == [1, 3]


def test_vectors_as_values(db: synarrow.SynaDB) -> None:
    vecs = pa.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], pa.list_(pa.float32(), 2))
    db.append_table(pa.table({"key": ["v", "w", "v"], "ts": [1, 2, 3], "value": vecs}))
    assert db.get_history_tensor("v").tolist() == [[1.0, 2.0], [5.0, 6.0]]


# -- bad input: a clear error, nothing written -----------------------------------------------

BAD = {
    "no key column": (pa.table({"k": ["a"], "ts": [1], "value": [1.0]}), {}, "key column 'key'"),
    "no value column": (pa.table({"key": ["a"], "ts": [1]}), {}, "value column 'value'"),
    "no ts column": (pa.table({"key": ["a"], "value": [1.0]}), {}, "ts column 'ts'"),
    "null key": (pa.table({"key": ["a", None], "ts": [1, 2], "value": [1.0, 2.0]}), {}, "null"),
    "empty key": (pa.table({"key": ["a", ""], "ts": [1, 2], "value": [1.0, 2.0]}), {}, "empty"),
    "int keys": (pa.table({"key": [1, 2], "ts": [1, 2], "value": [1.0, 2.0]}), {}, "text"),
    "null ts": (
        pa.table({"key": ["a", "b"], "ts": pa.array([1, None], pa.int64()), "value": [1, 2]}),
        {},
        "null times",
    ),
    "float ts": (pa.table({"key": ["a"], "ts": [1.5], "value": [1.0]}), {}, "ts column"),
    "bad iso ts": (pa.table({"key": ["a"], "ts": ["yesterday"], "value": [1.0]}), {}, "ISO"),
    "null value": (
        pa.table({"key": ["a", "b"], "ts": [1, 2], "value": pa.array([1.0, None])}),
        {},
        "value column 'value' holds 1 nulls",
    ),
    "bool values": (
        pa.table({"key": ["a"], "ts": [1], "value": [True]}),
        {},
        "value column 'value'",
    ),
    "unsupported type": (
        pa.table({"key": ["a"], "ts": [1], "value": pa.array([{"x": 1}])}),
        {},
        "value column 'value'",
    ),
    "wide non-text column name": (pd.DataFrame({0: [1.0], "ts": [1]}), {"key": None}, "text"),
    "wide null": (
        pa.table({"ts": [1, 2], "x": [1.0, 2.0], "y": pa.array([1.0, None])}),
        {"key": None},
        "value column 'y'",
    ),
    "not a frame": ([1, 2, 3], {}, "append_table takes"),
    "duplicate columns": (
        pa.Table.from_arrays(
            [pa.array(["a"]), pa.array([1]), pa.array([2.0])], ["key", "ts", "ts"]
        ),
        {},
        "2 columns named 'ts'",
    ),
    "duplicate pandas columns": (
        pd.DataFrame([["a", 1, 2.0, 3.0]], columns=["key", "ts", "value", "value"]),
        {},
        "2 columns named 'value'",
    ),
    "option not a name": (pa.table({"key": ["a"]}), {"ts": 3}, "ts must be a column name"),
}


def mixed_pandas() -> Any:
    return pd.DataFrame({"key": ["a", "b"], "ts": [1, 2], "value": pd.Series([1.5, "x"])})


def none_pandas() -> Any:
    return pd.DataFrame({"key": ["a", "b"], "ts": [1, 2], "value": pd.Series(["x", None])})


def nat_pandas() -> Any:
    return pd.DataFrame(
        {"key": ["a", "b"], "ts": pd.to_datetime(["2024-01-01", None]), "value": [1.0, 2.0]}
    )


def null_key_pandas() -> Any:
    return pd.DataFrame({"key": ["a", None], "ts": [1, 2], "value": [1.0, 2.0]}, dtype=object)


PANDAS_BAD = {
    "mixed object values": (mixed_pandas, "mixes"),
    "None in object values": (none_pandas, "nulls"),
    "NaT": (nat_pandas, "null times"),
    "null key object": (null_key_pandas, "null"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_frames_are_refused_and_nothing_is_written(db: synarrow.SynaDB, name: str) -> None:
    data, options, words = BAD[name]
    db.append("existing", 1.0, timestamp=0)
    version = db.data_version
    with pytest.raises(SynaError, match=words):
        db.append_table(data, **options)
    assert db.data_version == version
    assert db.keys() == ["existing"]


@pytest.mark.parametrize("name", sorted(PANDAS_BAD))
def test_bad_pandas_frames_are_refused(db: synarrow.SynaDB, name: str) -> None:
    make, words = PANDAS_BAD[name]
    version = db.data_version
    with pytest.raises((InvalidValueError, InvalidKeyError, InvalidArgumentError), match=words):
        db.append_table(make())
    assert db.data_version == version
    assert db.keys() == []


def test_empty_frame_writes_nothing(db: synarrow.SynaDB) -> None:
    version = db.data_version
    empty = pa.table({"key": pa.array([], pa.string()), "ts": pa.array([], pa.int64())})
    assert db.append_table(empty.append_column("value", pa.array([], pa.float64()))) == 0
    assert db.data_version == version


def test_categorical_keys(db: synarrow.SynaDB) -> None:
    """Dictionary-encoded keys: unused categories get no key, equal entries share one."""
    frame = pd.DataFrame(
        {
            "key": pd.Categorical(["c", "d", "c"], categories=["unused", "d", "c"]),
            "ts": [3, 2, 1],
            "value": [1.0, 2.0, 3.0],
        }
    )
    assert db.append_table(frame) == 3
    polars_frame = pl.DataFrame({"key": ["p", "q", "p"], "ts": [1, 2, 3], "value": ["x", "y", "z"]})
    assert db.append_table(polars_frame.with_columns(pl.col("key").cast(pl.Categorical))) == 3
    repeated = pa.DictionaryArray.from_arrays(pa.array([0, 1, 0, 2], pa.int32()), ["h", "i", "h"])
    assert db.append_table(pa.table({"key": repeated, "ts": [1, 2, 3, 4], "value": [1, 2, 3, 4]}))
    assert db.keys() == ["c", "d", "h", "i", "p", "q"]
    assert db.get_history("c").column("value").to_pylist() == [3.0, 1.0]
    assert db.get_history("p").column("value").to_pylist() == ["x", "z"]
    assert db.get_history("h").column("value").to_pylist() == [1, 3, 4]


def test_long_pandas_frame_with_ts_as_its_index(db: synarrow.SynaDB) -> None:
    index = pd.DatetimeIndex(["2024-05-01 12:00:01", "2024-05-01 12:00:00"], name="ts")
    frame = pd.DataFrame({"key": ["k", "k"], "value": [2.0, 1.0]}, index=index)
    assert db.append_table(frame) == 2
    table = db.get_history("k")
    assert table.column("value").to_pylist() == [1.0, 2.0]
    assert table.column("ts").cast(pa.int64()).to_pylist() == [US0, US0 + 1_000_000]


def test_read_only_and_closed_databases_refuse(db_path: Path) -> None:
    frame = pa.table({"key": ["a"], "ts": [1], "value": [1.0]})
    synarrow.SynaDB(db_path, NO_SYNC).close()
    with (
        synarrow.SynaDB(db_path, readonly=True) as ro,
        pytest.raises(synarrow.errors.ReadOnlyError),
    ):
        ro.append_table(frame)
    handle = synarrow.SynaDB(db_path, NO_SYNC)
    handle.close()
    with pytest.raises(synarrow.errors.DatabaseClosedError):
        handle.append_table(frame)
    with synarrow.SynaDB(db_path, NO_SYNC) as again:
        assert again.keys() == []
