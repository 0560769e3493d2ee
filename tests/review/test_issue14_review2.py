"""Second review of issue 14 (time-native histories) through the public API: threads, SQL
range pushdown and append_table / read_table edge cases. Each test is a finding; they fail
until the cause is fixed."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import synarrow
from synarrow.errors import InvalidValueError, SynaError

_BASE = 1_714_521_600_000_000  # 2024-05-01 00:00 UTC in microseconds
_HOUR = 3_600_000_000


def _db(tmp_path, **options) -> synarrow.SynaDB:
    config = synarrow.DbConfig(sync_on_write=False, auto_compact=False, **options)
    return synarrow.SynaDB(tmp_path / "db", config=config)


# -- SQL range pushdown --------------------------------------------------------------------


def test_pushdown_ignores_an_outer_alias_named_like_the_key(tmp_path):
    """``sql_ranges`` treats ``<key name>.ts`` as the key's ``ts`` even when the key's table
    is aliased (``FROM "k" AS y``): here ``k`` is the alias of the OUTER table ``o`` in a
    correlated subquery, so ``k.ts >= '2024-05-02'`` bounds ``o``'s rows, not ``k``'s. The
    view ``k`` is still registered as the slice from 2024-05-02 on, which holds no row with
    ``value = 0``, and EXISTS turns false for every row: 0 instead of 48. The same query over
    the never-sliced ``history`` view gives 48. Cause: ``key_range`` puts the key's own name
    into ``names`` unconditionally (``{folded} | {alias}``); with an alias only the alias
    names the table."""
    db = _db(tmp_path)
    ts = [_BASE + i * _HOUR for i in range(-72, 72)]
    values = np.arange(len(ts), dtype=np.float64)
    db.append_batch("k", values, timestamps=ts)
    db.append_batch("o", values, timestamps=ts)
    db.compact()
    sliced = db.sql(
        'SELECT count(*) AS n FROM "o" AS k WHERE EXISTS '
        "(SELECT 1 FROM \"k\" AS y WHERE k.ts >= '2024-05-02' AND y.value = 0)"
    )
    reference = db.sql(
        'SELECT count(*) AS n FROM "o" AS k WHERE EXISTS '
        "(SELECT 1 FROM (SELECT * FROM history WHERE key = 'k') AS y "
        "WHERE k.ts >= '2024-05-02' AND y.value = 0)"
    )
    assert reference.column("n").to_pylist() == [48]
    assert sliced.column("n").to_pylist() == reference.column("n").to_pylist()
    db.close()


def _hourly_key(tmp_path) -> synarrow.SynaDB:
    """Key ``k``: one value an hour from 2024-04-28 to 2024-05-03 (144 rows), compacted."""
    db = _db(tmp_path)
    ts = [_BASE + i * _HOUR for i in range(-72, 72)]
    db.append_batch("k", np.arange(len(ts), dtype=np.float64), timestamps=ts)
    db.compact()
    return db


_UNSLICED = "(SELECT * FROM history WHERE key = 'k')"


@pytest.mark.parametrize(
    "bound",
    [
        "ts >= '2024-05-01 23:00-05:00'::DATE",
        "ts >= CAST('2024-05-01T23:00:00-12:00' AS DATE)",
        "ts >= DATE '2024-05-01 23:00-12:00'",
    ],
)
def test_pushdown_of_a_date_cast_of_a_timestamp_string_keeps_the_whole_day(tmp_path, bound):
    """DuckDB's DATE cast of ``'2024-05-01 23:00-12:00'`` is 2024-05-01 (time and offset
    dropped), so the bound is midnight. ``sql_ranges._quick`` parses the whole string as an
    instant (2024-05-02 11:00 UTC) and takes "a day's margin": the slice starts at
    2024-05-01 11:00 and drops the 11 rows before it (61 instead of 72; 68 with -05:00).
    Cause: DATE is in ``_TIME_TYPES`` for the quick path, but the date cast can move the
    value by up to a day plus the offset; a DATE cast must use only the date part (or
    DuckDB's own evaluation)."""
    db = _hourly_key(tmp_path)
    got = db.sql(f'SELECT count(*) AS n FROM "k" WHERE {bound}').column("n").to_pylist()
    want = db.sql(f"SELECT count(*) AS n FROM {_UNSLICED} WHERE {bound}").column("n").to_pylist()
    assert want == [72]
    assert got == want
    db.close()


@pytest.mark.parametrize(
    "query",
    [
        "SELECT count(*) AS n FROM {t} TABLESAMPLE reservoir(100 ROWS) REPEATABLE (1) "
        "WHERE ts >= '2024-05-02'",
        "SELECT count(*) AS n FROM {t} WHERE ts >= '2024-05-02' "
        "USING SAMPLE reservoir(100 ROWS) REPEATABLE (1)",
    ],
)
def test_pushdown_does_not_change_what_a_sample_draws_from(tmp_path, query):
    """A sample is drawn from the FROM's rows before WHERE filters them. Over the whole
    history (144 rows) a 100-row reservoir holds 33 of the 48 rows from 2024-05-02 on; over
    the registered slice (72 rows from 2024-05-01) it holds all of them, so the query
    answers 48. Cause: ``key_range`` does not look at the table's / SELECT's ``sample``
    (TABLESAMPLE / USING SAMPLE); a sampled SELECT must read the whole history."""
    db = _hourly_key(tmp_path)
    got = db.sql(query.format(t='"k"')).column("n").to_pylist()
    want = db.sql(query.format(t=_UNSLICED)).column("n").to_pylist()
    assert got == want
    db.close()


# -- append_table edge cases -----------------------------------------------------------------


def test_append_table_polars_enum_key_with_unused_categories(tmp_path):
    """A polars ``Enum`` key column (an Arrow dictionary of ``string_view``) whose categories
    are not all used escapes pyarrow's bare ``ArrowNotImplementedError`` ("array_filter has no
    kernel matching input types (string_view, bool)"): ``_factorize`` filters the unused
    categories out of a string_view dictionary (``names.filter``), which pyarrow cannot do.
    A pandas Categorical with unused categories works; so must this."""
    pl = pytest.importorskip("polars")
    db = _db(tmp_path)
    frame = pl.DataFrame({"key": ["e1", "e2", "e1"], "ts": [1, 2, 3], "value": [1.0, 2.0, 3.0]})
    frame = frame.with_columns(pl.col("key").cast(pl.Enum(["e0", "e1", "e2"])))
    assert db.append_table(frame) == 3
    assert sorted(db.keys()) == ["e1", "e2"]
    assert list(db.get_history_floats("e1")) == [1.0, 3.0]
    db.close()


def test_append_table_polars_iso_string_ts_like_pandas(tmp_path):
    """ISO strings as ``ts`` work from pandas (``"2024-05-01T00:00:00Z"``) but the same
    column from polars (``string_view`` in Arrow) is refused as "text that is not ISO times"
    (with the value-type hint "atoms are None, float, ..."). Cause: ``_timestamps`` casts a
    string_view array straight to ``timestamp``, a cast pyarrow does not have for views;
    cast it to (large_)string first."""
    pl = pytest.importorskip("polars")
    pd = pytest.importorskip("pandas")
    rows = {"key": ["s"], "ts": ["2024-05-01T00:00:00Z"], "value": [1.0]}
    db = _db(tmp_path)
    db.append_table(pd.DataFrame(rows))
    expected = db.read_table("s").to_pylist()
    db.delete("s")
    try:
        db.append_table(pl.DataFrame(rows))
    except SynaError as exc:
        pytest.fail(f"polars ISO ts refused: {exc}")
    assert db.read_table("s").to_pylist() == expected
    db.close()


def test_append_table_dictionary_key_with_unused_null_entry(tmp_path):
    """An Arrow dictionary key column whose dictionary holds a null that no row uses (every
    row has a key) escapes numpy's bare ``TypeError`` ("Cannot cast array data from float64
    to int64"): ``_factorize`` dictionary-encodes the dictionary, the null becomes a null
    index, ``to_numpy`` gives floats with NaN, and ``codes[indices]`` fails. The rows must be
    appended (the null entry is unused), or at least a SynaError must say why not."""
    db = _db(tmp_path)
    keys = pa.DictionaryArray.from_arrays(pa.array([1, 1], pa.int32()), pa.array(["a", "b", None]))
    table = pa.table({"key": keys, "ts": [1, 2], "value": [1.0, 2.0]})
    try:
        assert db.append_table(table) == 2
    except SynaError:
        pass  # a clear refusal is acceptable, a bare TypeError is not
    else:
        assert db.keys() == ["b"]
        assert list(db.get_history_floats("b")) == [1.0, 2.0]
    db.close()


@pytest.mark.parametrize("source", ["arrow", "pandas"])
def test_append_table_uint64_ts_beyond_int64_is_refused_not_wrapped(tmp_path, source):
    """A ``uint64`` ts of 2**63 + 5 is stored as -9223372036854775803 (``to_timestamps``
    does ``astype(np.int64)``, which wraps; append_batch's ``timestamps`` share it): the row
    is written with a wrong time and read back far in the past. A uint64 *value* above the
    int64 range is refused; the ts must be too, with a SynaError, nothing written."""
    db = _db(tmp_path)
    ts = np.array([2**63 + 5], dtype=np.uint64)
    if source == "arrow":
        table = pa.table({"key": ["u"], "ts": pa.array(ts), "value": [1.0]})
    else:
        pd = pytest.importorskip("pandas")
        table = pd.DataFrame({"key": ["u"], "ts": ts, "value": [1.0]})
    with pytest.raises(SynaError):
        db.append_table(table)
    assert not db.exists("u")
    db.close()


def test_append_table_seconds_ts_overflowing_microseconds_is_refused_not_wrapped(tmp_path):
    """A ``timestamp[s]`` ts of 9e15 seconds does not fit int64 microseconds; ``_timestamps``
    casts it with ``safe=False``, which wraps silently, so the row is stored at
    -2011107970261188608 us (and read_table's to_pylist then fails with a bare
    OverflowError). It must be refused with a SynaError, nothing written."""
    db = _db(tmp_path)
    table = pa.table(
        {"key": ["s"], "ts": pa.array([9 * 10**15], pa.timestamp("s")), "value": [1.0]}
    )
    with pytest.raises(SynaError):
        db.append_table(table)
    assert not db.exists("s")
    db.close()


def _int_and_float_keys(db: synarrow.SynaDB) -> None:
    db.append_batch("count", np.array([1, 2], dtype=np.int64), timestamps=[1, 2])
    db.append_batch("temp", np.array([20.5, 21.0]), timestamps=[1, 2])


def _history_with_a_none(db: synarrow.SynaDB) -> None:
    db.append("gap", None, timestamp=1)
    db.append("gap", 2.0, timestamp=2)


def test_read_table_round_trips_through_append_table_for_one_type(tmp_path):
    """``append_table(db.read_table(...))`` writes the same histories again for keys of one
    value type without None values (what read_table's docstring promises)."""
    source = synarrow.SynaDB(
        tmp_path / "src", config=synarrow.DbConfig(sync_on_write=False, auto_compact=False)
    )
    source.append_batch("a", np.array([1.0, 2.0]), timestamps=[1, 2])
    source.append_batch("b", np.array([3.0]), timestamps=[5])
    table = source.read_table("*")
    target = _db(tmp_path)
    target.append_table(table)
    assert target.read_table("*").equals(table)
    source.close()
    target.close()


@pytest.mark.parametrize("fill", [_int_and_float_keys, _history_with_a_none])
def test_read_table_of_mixed_types_or_nones_is_refused_by_append_table(tmp_path, fill):
    """Keys of different types (the struct ``value`` column) or a history holding None (a
    null) cannot go back through append_table in one call: a clear InvalidValueError
    naming the value column, and nothing written."""
    source = synarrow.SynaDB(
        tmp_path / "src", config=synarrow.DbConfig(sync_on_write=False, auto_compact=False)
    )
    fill(source)
    table = source.read_table("*")
    target = _db(tmp_path)
    before = target.data_version
    with pytest.raises(InvalidValueError, match="value"):
        target.append_table(table)
    assert target.data_version == before and target.keys() == []
    source.close()
    target.close()


@pytest.mark.parametrize(
    "text", ["2024-05-01", "2024-05-01T00:00", "2024-05-01 00:00:00", "2024-05-01T00:00:00.5"]
)
def test_append_table_takes_naive_iso_string_ts_like_the_range_arguments(tmp_path, text):
    """``get_history(key, start=...)`` (``inputs.to_time_bound``) reads a zone-less ISO
    string as UTC, but append_table refuses a ``ts`` column of the same strings ("holds text
    that is not ISO times"), the commonest way times arrive from CSV files; only strings
    with a ``Z`` or an offset are taken. Cause: ``frames._timestamps`` casts text straight
    to ``timestamp('us', tz='UTC')``, which Arrow does only for strings that carry a zone;
    naive text must be cast to a naive timestamp (read as UTC) first."""
    pd = pytest.importorskip("pandas")
    db = _db(tmp_path)
    try:
        db.append_table(pd.DataFrame({"key": ["s"], "ts": [text], "value": [1.0]}))
    except SynaError as exc:
        pytest.fail(f"ts {text!r} refused: {exc}")
    assert db.get("s", at=text) == 1.0
    assert db.get_history("s", text).num_rows == 1
    assert db.get_history("s", None, text).num_rows == 0
    db.close()
