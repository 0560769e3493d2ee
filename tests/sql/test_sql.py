"""``db.sql`` and ``db.duckdb()``: results equal the same computation in numpy / pandas.

Every query runs on the three store states (log only, compacted, compacted with a log tail).
"""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from _support import state_fixtures

import synarrow
from synarrow.sql import SQLError

T0 = 1_700_000_000_000_000  # 2023-11-14T22:13:20Z, in microseconds
HOUR = 3_600_000_000
N = 3000  # rows per half


def _series(seed: int, half: int, n: int = N) -> tuple[np.ndarray, np.ndarray]:
    """Unique, sorted, irregular timestamps over 36 h per half, and values."""
    rng = np.random.default_rng(seed * 10 + half)
    offsets = np.sort(rng.choice(36 * 3600, size=n, replace=False)).astype(np.int64)
    ts = T0 + half * 36 * HOUR + offsets * 1_000_000
    return ts, rng.normal(20.0, 5.0, size=n)


NUMERIC = {"temp": 1, "sensor/1": 2, "a": 3, "b": 4}


def _hum(half: int) -> tuple[np.ndarray, np.ndarray]:
    ts, v = _series(5, half)
    return ts, np.round(v * 3).astype(np.int64)


def fill(db: synarrow.SynaDB, half: int) -> None:
    for key, seed in NUMERIC.items():
        ts, v = _series(seed, half)
        db.append_batch(key, v, timestamps=ts)
    db.append_batch("hum", _hum(half)[1], timestamps=_hum(half)[0])
    db.append_batch("label", [f"l{half}-{i}" for i in range(3)], timestamps=T0 + np.arange(3))
    db.append_batch("emb", np.full((2, 3), half + 0.5, dtype=np.float32), timestamps=[T0, T0 + 1])
    db.append("mixed", 1.25 if half == 0 else "now text")
    if half == 1:
        db.append('q"uote', 7)


def series(key: str) -> tuple[np.ndarray, np.ndarray]:
    parts = [_hum(0), _hum(1)] if key == "hum" else [_series(NUMERIC[key], h) for h in (0, 1)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


templates, sdb = state_fixtures(fill)


def _us(col: pa.ChunkedArray) -> np.ndarray:
    return col.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy()


# -- aggregates, buckets, windows, joins -------------------------------------------------------


def test_result_is_an_arrow_table(sdb: synarrow.SynaDB) -> None:
    result = sdb.sql("SELECT key, ts, value FROM history LIMIT 3")
    assert isinstance(result, pa.Table)
    assert result.column_names == ["key", "ts", "value"]
    assert pa.types.is_timestamp(result.schema.field("ts").type)


def test_per_key_aggregates_equal_numpy(sdb: synarrow.SynaDB) -> None:
    result = sdb.sql(
        "SELECT key, avg(value) AS mean, min(value) AS lo, max(value) AS hi, count(*) AS n, "
        "sum(int_value) AS isum FROM history WHERE type IN ('float', 'int') "
        "AND key <> 'mixed' AND key <> 'q\"uote' GROUP BY key ORDER BY key"
    ).to_pydict()
    assert result["key"] == sorted([*NUMERIC, "hum"])
    for i, key in enumerate(result["key"]):
        _, v = series(key)
        assert result["n"][i] == len(v) == 2 * N
        assert result["mean"][i] == pytest.approx(v.mean(), rel=1e-12)
        assert result["lo"][i] == v.min()
        assert result["hi"][i] == v.max()
        if key == "hum":
            assert result["isum"][i] == int(v.sum())
        else:
            assert result["isum"][i] is None


def test_hourly_time_bucket_equals_pandas_resample(sdb: synarrow.SynaDB) -> None:
    pd = pytest.importorskip("pandas")
    result = sdb.sql(
        "SELECT time_bucket(INTERVAL '1 hour', ts) AS h, avg(value) AS v "
        "FROM history WHERE key = 'temp' GROUP BY h ORDER BY h"
    )
    ts, v = series("temp")
    expected = (
        pd.Series(v, index=pd.to_datetime(ts, unit="us", utc=True)).resample("1h").mean().dropna()
    )
    got_h = _us(result.column("h"))
    want_h = expected.index.as_unit("us").asi8
    np.testing.assert_array_equal(got_h, want_h)
    np.testing.assert_allclose(result.column("v").to_numpy(), expected.to_numpy(), rtol=1e-12)
    # The per-key view gives the same buckets.
    by_name = sdb.sql(
        "SELECT time_bucket(INTERVAL '1 hour', ts) AS h, avg(value) AS v FROM \"temp\" "
        "GROUP BY h ORDER BY h"
    )
    np.testing.assert_array_equal(_us(by_name.column("h")), got_h)
    np.testing.assert_allclose(
        by_name.column("v").to_numpy(), result.column("v").to_numpy(), rtol=1e-12
    )


def test_window_functions_equal_pandas(sdb: synarrow.SynaDB) -> None:
    pd = pytest.importorskip("pandas")
    result = sdb.sql(
        "SELECT ts, value, lag(value) OVER w AS prev, "
        "avg(value) OVER (ORDER BY ts ROWS BETWEEN 4 PRECEDING AND CURRENT ROW) AS ma, "
        "row_number() OVER w AS rn "
        "FROM history WHERE key = 'sensor/1' WINDOW w AS (ORDER BY ts) ORDER BY ts"
    )
    ts, v = series("sensor/1")
    s = pd.Series(v)
    np.testing.assert_array_equal(_us(result.column("ts")), ts)
    prev = result.column("prev").to_numpy(zero_copy_only=False)
    assert np.isnan(prev[0]) or prev[0] is None
    np.testing.assert_array_equal(prev[1:].astype(float), v[:-1])
    np.testing.assert_allclose(
        result.column("ma").to_numpy(), s.rolling(5, min_periods=1).mean().to_numpy(), rtol=1e-12
    )
    assert result.column("rn").to_pylist() == list(range(1, 2 * N + 1))


def test_asof_join_between_two_keys_equals_merge_asof(sdb: synarrow.SynaDB) -> None:
    pd = pytest.importorskip("pandas")
    result = sdb.sql(
        'SELECT "a".ts AS ts, "a".value AS av, "b".value AS bv, "b".ts AS bts '
        'FROM "a" ASOF JOIN "b" ON "a".ts >= "b".ts ORDER BY "a".ts'
    )
    ats, av = series("a")
    bts, bv = series("b")
    merged = pd.merge_asof(
        pd.DataFrame({"ts": ats, "av": av}),
        pd.DataFrame({"ts": bts, "bv": bv, "bts": bts}),
        on="ts",
        direction="backward",
        allow_exact_matches=True,
    ).dropna()
    np.testing.assert_array_equal(_us(result.column("ts")), merged["ts"].to_numpy())
    np.testing.assert_array_equal(result.column("av").to_numpy(), merged["av"].to_numpy())
    np.testing.assert_array_equal(result.column("bv").to_numpy(), merged["bv"].to_numpy())
    np.testing.assert_array_equal(
        _us(result.column("bts")), merged["bts"].to_numpy().astype(np.int64)
    )


def test_asof_join_over_the_history_view(sdb: synarrow.SynaDB) -> None:
    via_history = sdb.sql(
        "WITH a AS (SELECT ts, value FROM history WHERE key = 'a'), "
        "b AS (SELECT ts, value FROM history WHERE key = 'b') "
        "SELECT a.ts, b.value FROM a ASOF JOIN b ON a.ts >= b.ts ORDER BY a.ts"
    )
    via_views = sdb.sql(
        'SELECT "a".ts, "b".value FROM "a" ASOF JOIN "b" ON "a".ts >= "b".ts ORDER BY 1'
    )
    assert via_history.column(1).to_pylist() == via_views.column(1).to_pylist()


# -- views by name, latest, params ---------------------------------------------------------


def test_per_key_view_by_name_with_slash_and_quote(sdb: synarrow.SynaDB) -> None:
    ts, v = series("sensor/1")
    result = sdb.sql('SELECT ts, value FROM "sensor/1" ORDER BY ts')
    assert result.column_names == ["ts", "value"]
    np.testing.assert_array_equal(_us(result.column("ts")), ts)
    np.testing.assert_array_equal(result.column("value").to_numpy(), v)
    quoted = sdb.sql('SELECT value FROM "q""uote"')
    assert quoted.column("value").to_pylist() == [7]


def test_per_key_view_keeps_the_key_type(sdb: synarrow.SynaDB) -> None:
    hum = sdb.sql('SELECT value FROM "hum" LIMIT 1')
    assert hum.schema.field("value").type == pa.int64()
    # Both halves share timestamps T0, T0 + 1: break the ties by value.
    emb = sdb.sql('SELECT value FROM "emb" ORDER BY ts, value')
    assert emb.column("value").to_pylist()[-1] == [1.5, 1.5, 1.5]
    sim = sdb.sql(
        'SELECT array_cosine_similarity(value, [1.0, 1.0, 1.0]::FLOAT[3]) AS s FROM "emb"'
    )
    assert sim.column("s").to_pylist() == pytest.approx([1.0] * 4)
    label = sdb.sql('SELECT value FROM "label"')
    assert sorted(label.column("value").to_pylist()) == sorted(
        [f"l{h}-{i}" for h in (0, 1) for i in range(3)]
    )


def test_latest_view_has_one_row_per_live_key(sdb: synarrow.SynaDB) -> None:
    rows = sdb.sql("SELECT key, value, int_value, text, vector, type FROM latest ORDER BY key")
    got = {r["key"]: r for r in rows.to_pylist()}
    assert sorted(got) == sdb.keys()
    for key in NUMERIC:
        assert got[key]["value"] == series(key)[1][-1]
        assert got[key]["type"] == "float"
    assert got["hum"]["int_value"] == int(series("hum")[1][-1])
    assert got["mixed"]["text"] == "now text" and got["mixed"]["type"] == "text"
    assert got["emb"]["vector"] == [1.5, 1.5, 1.5]
    assert got['q"uote']["int_value"] == 7


def test_params(sdb: synarrow.SynaDB) -> None:
    _, v = series("temp")
    n = sdb.sql("SELECT count(*) FROM history WHERE key = ? AND value > ?", ["temp", 22.0])
    assert n.column(0)[0].as_py() == int((v > 22.0).sum())
    n2 = sdb.sql("SELECT count(*) FROM history WHERE key = $1 AND value <= $2", ("temp", 22.0))
    assert n2.column(0)[0].as_py() == int((v <= 22.0).sum())
    assert sdb.sql("SELECT count(*) FROM history WHERE key = ?", ["nope"]).column(0)[0].as_py() == 0


def test_history_type_column_per_key(sdb: synarrow.SynaDB) -> None:
    rows = sdb.sql("SELECT key, list(DISTINCT type ORDER BY type) AS t FROM history GROUP BY key")
    types = {r["key"]: r["t"] for r in rows.to_pylist()}
    assert types["temp"] == ["float"]
    assert types["hum"] == ["int"]
    assert types["label"] == ["text"]
    assert types["emb"] == ["vector"]
    assert types["mixed"] == ["float", "text"]


# -- errors, connections, freshness --------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "SELEC 1",
        "SELECT no_such_column FROM history",
        'SELECT * FROM "no such key"',
        "SELECT * FROM history WHERE key = ?",  # a parameter without a value
    ],
)
def test_bad_sql_raises_sql_error(db: synarrow.SynaDB, query: str) -> None:
    db.append("k", 1.0)
    with pytest.raises(synarrow.SQLError) as info:
        db.sql(query)
    assert isinstance(info.value, synarrow.SynaError)
    assert synarrow.SQLError is SQLError
    assert str(info.value)
    # The database and later queries are unaffected.
    assert db.sql("SELECT count(*) FROM history").column(0)[0].as_py() == 1


def test_empty_query_is_refused(db: synarrow.SynaDB) -> None:
    with pytest.raises(synarrow.SynaError):
        db.sql("   ")


def test_sql_on_an_empty_database(db: synarrow.SynaDB) -> None:
    assert db.sql("SELECT count(*) FROM history").column(0)[0].as_py() == 0
    assert db.sql("SELECT count(*) FROM latest").column(0)[0].as_py() == 0
    assert db.sql("SELECT 42 AS x").column("x").to_pylist() == [42]
    empty = db.sql(
        "SELECT time_bucket(INTERVAL '1 hour', ts) AS h, avg(value) FROM history GROUP BY h"
    )
    assert empty.num_rows == 0
    cols = db.sql("SELECT * FROM history").column_names
    assert cols == ["key", "ts", "value", "int_value", "text", "bytes", "vector", "type"]
    db.compact()
    assert db.sql("SELECT count(*) FROM history").column(0)[0].as_py() == 0


def test_sql_sees_writes_made_after_an_earlier_query(db: synarrow.SynaDB) -> None:
    db.append("k", 1.0)
    assert db.sql('SELECT count(*) FROM "k"').column(0)[0].as_py() == 1
    db.append("k", 2.0)
    db.append("k2", 3.0)
    assert db.sql('SELECT count(*) FROM "k"').column(0)[0].as_py() == 2
    assert db.sql("SELECT count(*) FROM history").column(0)[0].as_py() == 3
    db.compact()
    db.append("k", 4.0)
    assert db.sql('SELECT sum(value) FROM "k"').column(0)[0].as_py() == 7.0
    db.delete("k2")
    assert db.sql("SELECT list(key) FROM latest").column(0)[0].as_py() == ["k"]
    assert db.sql("SELECT count(*) FROM history WHERE key = 'k2'").column(0)[0].as_py() == 0


def test_per_key_view_of_a_deleted_key_is_gone(db: synarrow.SynaDB) -> None:
    db.append("gone", 1.0)
    assert db.sql('SELECT count(*) FROM "gone"').column(0)[0].as_py() == 1
    db.delete("gone")
    with pytest.raises(synarrow.SQLError):
        db.sql('SELECT count(*) FROM "gone"')


def test_keys_differing_only_in_case_in_one_query(db: synarrow.SynaDB) -> None:
    """DuckDB names are case-insensitive: such a query is refused with a way out, never
    answered from the wrong key."""
    db.append("Temp", 1.0)
    db.append_batch("temp", [2.0, 3.0])
    with pytest.raises(synarrow.SQLError, match="differ only in case") as info:
        db.sql('SELECT (SELECT count(*) FROM "Temp") AS a, (SELECT count(*) FROM "temp") AS b')
    assert "key = 'Temp'" in str(info.value)
    assert db.sql('SELECT count(*) FROM "temp"').column(0)[0].as_py() == 2
    row = db.sql(
        "SELECT count(*) FILTER (WHERE key = 'Temp') AS a, count(*) FILTER (WHERE key = 'temp') "
        "AS b FROM history"
    )
    assert row.to_pylist() == [{"a": 1, "b": 2}]


def test_duckdb_connection_has_the_views(sdb: synarrow.SynaDB) -> None:
    con = sdb.duckdb()
    assert isinstance(con, duckdb.DuckDBPyConnection)
    n = con.sql("SELECT count(*) FROM history WHERE key = 'temp'").fetchall()[0][0]
    assert n == 2 * N
    keys = [r[0] for r in con.sql("SELECT key FROM latest ORDER BY key").fetchall()]
    assert keys == sdb.keys()
    # User work on the connection: own tables, joins against the views.
    con.execute("CREATE TABLE limits AS SELECT 'temp' AS key, 25.0 AS hi")
    over = con.sql(
        "SELECT count(*) FROM history h JOIN limits l USING (key) WHERE h.value > l.hi"
    ).fetchall()[0][0]
    assert over == int((series("temp")[1] > 25.0).sum())
    rel = con.sql("SELECT avg(value) AS m FROM history WHERE key = 'a'").to_arrow_table()
    assert rel.column("m")[0].as_py() == pytest.approx(series("a")[1].mean(), rel=1e-12)
    other = sdb.duckdb()
    with pytest.raises(duckdb.Error):
        other.sql("SELECT * FROM limits").fetchall()  # connections are independent
    con.close()
    other.close()


def test_duckdb_connection_and_sql_agree_after_compaction(db: synarrow.SynaDB) -> None:
    db.append_batch("x", np.arange(100.0))
    db.compact()
    db.append("x", 100.0)
    con = db.duckdb()
    assert con.sql("SELECT sum(value) FROM history").fetchall()[0][0] == sum(range(101))
    assert db.sql("SELECT sum(value) FROM history").column(0)[0].as_py() == sum(range(101))
    con.close()
