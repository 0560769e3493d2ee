"""``db.resample`` against pandas ``resample`` on random data, and its bad input.

pandas is the reference: ``Series.resample(every, origin="epoch").agg(...)`` on the same
points, restricted to the non-empty buckets (``fill=None``) or with empty buckets set to NaN
and then ``ffill()`` / ``interpolate(limit_area="inside")`` / ``fillna(number)``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import synarrow
from synarrow.errors import (
    InvalidArgumentError,
    KeyNotFoundError,
    SynaError,
    TypeMismatchError,
)

T0 = 1_700_000_000_000_000  # 2023-11-14T22:13:20Z
SECOND = 1_000_000
HOUR = 3600 * SECOND
_SENTINEL = 1e300
AGGS = ["mean", "sum", "min", "max", "count", "first", "last"]


def _pandas(ts: np.ndarray, values: np.ndarray, every: int, agg: str) -> pd.DataFrame:
    """pandas' resample of the points: one column per aggregation, plus ``n`` (entries)."""
    s = pd.Series(values, index=pd.to_datetime(ts, unit="us", utc=True))
    r = s.resample(pd.Timedelta(microseconds=every), origin="epoch")
    frame = r.ohlc() if agg == "ohlc" else r.agg(agg).to_frame("value")
    frame["n"] = r.size()
    return frame


def _ours(table: pa.Table, columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(
        {c: table.column(c).to_numpy(zero_copy_only=False) for c in columns},
        index=pd.to_datetime(table.column("ts").cast(pa.int64()).to_numpy(), unit="us", utc=True),
    )
    return frame


def _columns(agg: str) -> list[str]:
    return ["open", "high", "low", "close"] if agg == "ohlc" else ["value"]


def _expected(frame: pd.DataFrame, agg: str, fill: object) -> pd.DataFrame:
    cols = _columns(agg)
    if fill is None:
        return frame.loc[frame["n"] > 0, cols]
    out = frame[cols].astype("float64" if agg != "count" else "int64")
    if agg == "count":
        return out
    # Only empty buckets are filled: a bucket of NaN values keeps its NaN, so stand it in
    # by a huge sentinel through pandas' fill and turn what it reached back into NaN.
    out[out.isna() & (frame["n"] > 0).to_numpy()[:, None]] = _SENTINEL
    out[frame["n"] == 0] = np.nan
    if fill == "ffill":
        out = out.ffill()
    elif fill == "linear":
        out = out.interpolate(limit_area="inside")
    else:
        out = out.fillna(fill)
    return out.mask(out.abs() > 1e280)


def _compare(table: pa.Table, ts, values, every, agg, fill) -> None:
    cols = _columns(agg)
    want = _expected(_pandas(ts, values, every, agg), agg, fill)
    got = _ours(table, cols)
    assert list(got.index) == list(want.index)
    for c in cols:
        a, b = got[c].to_numpy(dtype=float), want[c].to_numpy(dtype=float)
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9, equal_nan=True)
    if agg == "count":
        assert table.column("value").type == pa.int64()


@st.composite
def _points(draw):
    n = draw(st.integers(1, 60))
    span = draw(st.sampled_from([10 * SECOND, HOUR, 48 * HOUR]))
    offsets = draw(
        st.lists(st.integers(-span, span), min_size=n, max_size=n)
    )  # around T0, some before the epoch-aligned bucket of T0
    ts = np.sort(np.array(offsets, dtype=np.int64) + T0)
    values = draw(
        st.lists(st.one_of(st.floats(-1e6, 1e6), st.just(float("nan"))), min_size=n, max_size=n)
    )
    return ts, np.array(values, dtype=np.float64)


EVERY = st.sampled_from([SECOND, 7 * SECOND, 60 * SECOND, 15 * 60 * SECOND, HOUR, 86400 * SECOND])
FILLS = st.sampled_from([None, "ffill", "linear", -1.5])


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    with synarrow.SynaDB(tmp_path_factory.mktemp("r") / "db") as d:
        yield d


_NEXT = iter(range(10**9))


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(points=_points(), every=EVERY, agg=st.sampled_from(AGGS + ["ohlc"]), fill=FILLS)
def test_matches_pandas(shared, points, every, agg, fill) -> None:
    ts, values = points
    key = f"k{next(_NEXT)}"
    shared.append_batch(key, values, timestamps=ts)
    table = shared.resample(key, every, agg, fill=fill)
    assert table.column_names[:2] == ["key", "ts"]
    assert set(table.column("key").to_pylist()) <= {key}
    _compare(table, ts, values, every, agg, fill)


@pytest.fixture
def db(tmp_path: Path):
    with synarrow.SynaDB(tmp_path / "db") as d:
        yield d


@pytest.mark.parametrize("state", ["log", "compacted", "tail"])
def test_int_keys_every_state_and_several_keys(db, state) -> None:
    rng = np.random.default_rng(1)
    ts = np.sort(rng.choice(6 * 3600, 4000, replace=False)).astype(np.int64) * SECOND + T0
    ints = rng.integers(-1000, 1000, 4000)
    floats = rng.normal(size=4000)
    half = 2000 if state == "tail" else 4000
    for key, vals in (("s/ints", ints), ("s/floats", floats)):
        db.append_batch(key, vals[:half], timestamps=ts[:half])
    if state != "log":
        db.compact()
    if state == "tail":
        for key, vals in (("s/ints", ints), ("s/floats", floats)):
            db.append_batch(key, vals[half:], timestamps=ts[half:])
    db.append("other", "text")
    table = db.resample("s/*", "10min", ["mean", "sum", "count", "max"])
    assert table.column_names == ["key", "ts", "mean", "sum", "count", "max"]
    keys = table.column("key").to_pylist()
    assert keys == sorted(keys) and set(keys) == {"s/floats", "s/ints"}
    for key, vals in (("s/floats", floats), ("s/ints", ints)):
        part = table.filter(pa.compute.equal(table.column("key"), key))
        for agg in ("mean", "sum", "count", "max"):
            want = _pandas(ts, vals.astype(float), 10 * 60 * SECOND, agg)["value"]
            np.testing.assert_allclose(part.column(agg).to_numpy(), want.to_numpy(dtype=float))
    listed = db.resample(["s/ints", "s/floats"], "10min")
    assert listed.column("key").to_pylist() == keys


def test_buckets_are_epoch_aligned_and_start_end_are_half_open(db) -> None:
    db.append_batch(
        "k", [1.0, 2.0, 3.0, 4.0], timestamps=[0, 59 * SECOND, 60 * SECOND, 150 * SECOND]
    )
    t = db.resample("k", dt.timedelta(minutes=1), "sum")
    assert t.column("ts").cast(pa.int64()).to_pylist() == [0, 60 * SECOND, 120 * SECOND]
    assert t.column("value").to_pylist() == [3.0, 3.0, 4.0]
    assert t.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    ranged = db.resample("k", "1min", "sum", start=59 * SECOND, end=150 * SECOND)
    assert ranged.column("value").to_pylist() == [2.0, 3.0]


def test_iso_strings_with_z_and_offsets(db) -> None:
    base = dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc)
    ts = [base + dt.timedelta(minutes=30 * i) for i in range(8)]  # 00:00 .. 03:30
    db.append_batch("k", np.arange(8.0), timestamps=ts)
    z = db.resample("k", "1h", "first", start="2024-05-01T01:00:00Z", end="2024-05-01T03:00Z")
    offset = db.resample(
        "k", "1h", "first", start="2024-05-01 03:00+02:00", end="2024-05-01T05:00+02:00"
    )
    assert z.column("value").to_pylist() == [2.0, 4.0]
    assert offset.equals(z)


def test_fill_covers_the_whole_range(db) -> None:
    db.append_batch("k", [1.0, 5.0], timestamps=[HOUR, 3 * HOUR])
    kw = {"start": 0, "end": 5 * HOUR}
    assert db.resample("k", "1h", fill="ffill", **kw).column("value").to_pylist() == [
        None,
        1.0,
        1.0,
        5.0,
        5.0,
    ]
    assert db.resample("k", "1h", fill="linear", **kw).column("value").to_pylist() == [
        None,
        1.0,
        3.0,
        5.0,
        None,
    ]
    assert db.resample("k", "1h", fill=0, **kw).column("value").to_pylist() == [
        0.0,
        1.0,
        0.0,
        5.0,
        0.0,
    ]
    assert db.resample("k", "1h", "count", fill="ffill", **kw).column("value").to_pylist() == [
        0,
        1,
        0,
        1,
        0,
    ]
    empty = db.resample("k", "1h", fill=2.5, start=10 * HOUR, end=12 * HOUR)
    assert empty.column("value").to_pylist() == [2.5, 2.5]


def test_out_of_order_input_is_resampled_in_time_order(db) -> None:
    # Written late: the reads order by timestamp (the ordered timeline of core's engine).
    db.append_batch("k", [3.0, 1.0, 2.0], timestamps=[2 * HOUR, 0, HOUR])
    db.append("k", 0.5, timestamp=HOUR // 2)
    t = db.resample("k", "1h", ["first", "last"])
    assert t.column("first").to_pylist() == [1.0, 2.0, 3.0]
    assert t.column("last").to_pylist() == [0.5, 2.0, 3.0]


def test_nones_count_as_nan(db) -> None:
    db.append("k", 1.0, timestamp=0)
    db.append("k", None, timestamp=1)
    db.append("k", 3.0, timestamp=2)
    t = db.resample("k", "1s", ["mean", "count", "last"])
    assert t.column("mean").to_pylist() == [2.0]
    assert t.column("count").to_pylist() == [2]
    assert t.column("last").to_pylist() == [3.0]


def test_an_empty_pattern_gives_an_empty_table(db) -> None:
    db.append("k", 1.0)
    t = db.resample("nothing*", "1h", "ohlc")
    assert t.num_rows == 0
    assert t.column_names == ["key", "ts", "open", "high", "low", "close"]


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"every": 0}, InvalidArgumentError, "every"),
        ({"every": "-1h"}, InvalidArgumentError, "every"),
        ({"every": "1 fortnight"}, InvalidArgumentError, "unit"),
        ({"every": 1.5}, InvalidArgumentError, "every"),
        ({"every": "1h", "agg": "median"}, InvalidArgumentError, "aggregation"),
        ({"every": "1h", "agg": []}, InvalidArgumentError, "agg"),
        ({"every": "1h", "agg": ["mean", "mean"]}, InvalidArgumentError, "twice"),
        ({"every": "1h", "fill": "bfill"}, InvalidArgumentError, "fill"),
        ({"every": "1h", "fill": True}, InvalidArgumentError, "fill"),
        ({"every": "1h", "start": "yesterday"}, InvalidArgumentError, "start"),
        ({"every": "1h", "start": 10, "end": 5}, InvalidArgumentError, "after"),
        ({"every": "1us", "fill": 0, "start": 0, "end": 10**15}, InvalidArgumentError, "buckets"),
    ],
)
def test_bad_input(db, kwargs, error, words) -> None:
    db.append("k", 1.0, timestamp=0)
    with pytest.raises(error) as info:
        db.resample("k", **kwargs)
    assert words in str(info.value)
    assert db.get_history("k").num_rows == 1


def test_bad_keys(db) -> None:
    db.append("k", 1.0)
    db.append("t", "text")
    with pytest.raises(KeyNotFoundError, match="missing"):
        db.resample("missing", "1h")
    with pytest.raises(KeyNotFoundError, match="gone"):
        db.resample(["k", "gone"], "1h")
    with pytest.raises(TypeMismatchError, match="'t'"):
        db.resample("*", "1h")
    with pytest.raises(InvalidArgumentError):
        db.resample(42, "1h")  # type: ignore[arg-type]
    db.append("v", np.ones(3, np.float32))
    with pytest.raises(SynaError, match="not numbers"):
        db.resample("v", "1h")


def test_timestamps_at_the_ends_of_the_int64_range(db) -> None:
    top, bottom = 2**63 - 1, -(2**63)
    db.append_batch("k", [1.0, 2.0], timestamps=[top - 1, top])
    t = db.resample("k", 2**62, "sum")
    assert t.column("value").to_pylist() == [3.0]
    assert t.column("ts").cast(pa.int64()).to_pylist() == [2**62]
    db.append_batch("low", [1.0], timestamps=[bottom + 1])
    with pytest.raises(InvalidArgumentError, match="earliest"):
        db.resample("low", 3, "sum")
    assert db.resample("low", 2**62, "sum").column("value").to_pylist() == [1.0]


def _reference(ts, values, every, agg, fill, start, end) -> pd.DataFrame:
    """pandas on the points in ``[start, end)``, on the bucket grid ``db.resample`` returns."""
    keep = np.ones(len(ts), bool)
    if start is not None:
        keep &= ts >= start
    if end is not None:
        keep &= ts < end
    ts, values = ts[keep], values[keep]
    cols = _columns(agg)
    frame = _pandas(ts, values, every, agg) if len(ts) else None
    if fill is None:
        return frame.loc[frame["n"] > 0, cols] if frame is not None else pd.DataFrame(columns=cols)
    first = start // every if start is not None else (ts[0] // every if len(ts) else None)
    last = (end - 1) // every if end is not None else (ts[-1] // every if len(ts) else None)
    if first is None or last is None:
        return pd.DataFrame(columns=cols)
    grid = pd.to_datetime(np.arange(first, last + 1) * every, unit="us", utc=True)
    if frame is None:
        frame = pd.DataFrame({c: np.nan for c in cols}, index=grid)
    frame = frame.reindex(grid)
    frame["n"] = frame["n"].fillna(0) if "n" in frame else 0
    if agg == "count":
        frame["value"] = frame["value"].fillna(0)
    return _expected(frame, agg, fill)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    points=_points(),
    every=EVERY,
    agg=st.sampled_from(AGGS + ["ohlc"]),
    fill=FILLS,
    start=st.one_of(st.none(), st.integers(-2 * HOUR, 2 * HOUR)),
    length=st.one_of(st.none(), st.integers(0, 4 * HOUR)),
    align=st.booleans(),
)
def test_ranges_match_pandas(shared, points, every, agg, fill, start, length, align) -> None:
    ts, values = points
    lo = None if start is None else T0 + start
    hi = None if length is None else (T0 if lo is None else lo) + length
    if align:  # bounds on bucket edges
        lo, hi = (None if t is None else t // every * every for t in (lo, hi))
        if lo is not None and hi is not None and hi < lo:
            hi = lo
    key = f"k{next(_NEXT)}"
    shared.append_batch(key, values, timestamps=ts)
    table = shared.resample(key, every, agg, start=lo, end=hi, fill=fill)
    want = _reference(ts, values, every, agg, fill, lo, hi)
    cols = _columns(agg)
    got = _ours(table, cols)
    assert list(got.index) == list(want.index)
    for c in cols:
        a, b = got[c].to_numpy(dtype=float), want[c].to_numpy(dtype=float)
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9, equal_nan=True)


def test_the_duplicates_policy_applies(tmp_path: Path) -> None:
    cfg = synarrow.DbConfig(duplicates="keep_last")
    with synarrow.SynaDB(tmp_path / "db", cfg) as db:
        db.append_batch("k", [1.0, 2.0, 3.0], timestamps=[0, SECOND, 2 * SECOND])
        db.append_batch("k", [20.0, 30.0], timestamps=[SECOND, 2 * SECOND])  # resent
        t = db.resample("k", "1min", ["sum", "count"])
        assert t.column("sum").to_pylist() == [51.0]
        assert t.column("count").to_pylist() == [3]
