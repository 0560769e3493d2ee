"""Range pushdown into per-key views: which bounds a query yields (``key_range``), that
the view is registered as just that slice, and that results never change."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import synarrow
from synarrow.sandbox import new_connection
from synarrow.sql import key_table, register_keys
from synarrow.sql_ranges import key_range, may_bound_ts

T0 = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z
SECOND = 1_000_000
DAY = 86_400 * SECOND


@pytest.fixture(scope="module")
def con():
    c = new_connection()
    yield c
    c.close()


@pytest.mark.parametrize(
    ("query", "lo", "hi"),
    [
        (f'SELECT * FROM "k" WHERE ts >= make_timestamp({T0}) AND ts < make_timestamp({T0 + 5})',
         T0 - 1, T0 + 6),
        (f"SELECT avg(value) FROM k WHERE value > 0 AND make_timestamp({T0}) <= ts", T0 - 1, None),
        (f"SELECT * FROM k AS a WHERE a.ts BETWEEN make_timestamp({T0}) AND make_timestamp({T0 + 9})",
         T0 - 1, T0 + 10),
        ("SELECT * FROM k WHERE ts < '2024-01-02'", None, T0 + 2 * DAY),
        ("SELECT * FROM k WHERE ts >= TIMESTAMP '2024-01-01' + INTERVAL 1 DAY", T0 + DAY - 1, None),
        ("SELECT * FROM k WHERE ts >= '2024-01-01'::TIMESTAMPTZ", T0 - DAY, None),
        (f"SELECT * FROM (SELECT * FROM k WHERE ts > make_timestamp({T0})) s JOIN j USING (ts)",
         T0 - 1, None),
    ],
)  # fmt: skip
def test_bounds(con, query, lo, hi) -> None:
    assert may_bound_ts(query)
    assert key_range(con, query, "k") == (lo, hi)


@pytest.mark.parametrize(
    "query",
    [
        "SELECT time_bucket(INTERVAL 1 HOUR, ts) AS h, avg(value) FROM k GROUP BY h",
        "SELECT tsx FROM k WHERE tsx > 1",
        "SELECT avg(value) FROM k",
    ],
)
def test_queries_without_a_ts_comparison_skip_the_parse(query) -> None:
    assert not may_bound_ts(query)


@pytest.mark.parametrize(
    "query",
    [
        "SELECT * FROM k",
        f"SELECT * FROM k WHERE ts > make_timestamp({T0}) OR value > 1",
        "SELECT * FROM k WHERE ts > now() - INTERVAL 1 HOUR",
        "SELECT * FROM k WHERE ts > ?",
        "SELECT * FROM k WHERE ts > (SELECT min(ts) FROM k)",
        f"SELECT * FROM k JOIN j USING (ts) WHERE ts > make_timestamp({T0})",
        f"SELECT * FROM k WHERE NOT (ts > make_timestamp({T0}))",
        f"SELECT * FROM k WHERE ts > make_timestamp({T0}) UNION ALL SELECT * FROM k",
        f"SELECT * FROM k WHERE other.ts > make_timestamp({T0})",
        "SELECT * FROM k WHERE ts >= 'not a time'",
        "this is not SQL",
    ],
)
def test_no_bounds(con, query) -> None:
    assert key_range(con, query, "k") is None


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory):
    cfg = synarrow.DbConfig(sync_on_write=False, auto_compact=False)
    with synarrow.SynaDB(tmp_path_factory.mktemp("pushdown") / "db", cfg) as d:
        ts = T0 + np.arange(10_000, dtype=np.int64) * 60 * SECOND  # ~7 days, 1 per minute
        d.append_batch("k", np.arange(10_000, dtype=np.float64), timestamps=ts)
        d.compact()
        d.append_batch("k", [-1.0, -2.0], timestamps=[T0 + 30 * SECOND, T0 + 20 * DAY])
        d.append_batch("j", np.ones(100), timestamps=ts[:100])
        yield d


def test_the_view_is_registered_as_the_slice(db, con) -> None:
    snapshot = db.read_snapshot()
    query = f'SELECT * FROM "k" WHERE ts >= make_timestamp({T0 + DAY}) AND ts < make_timestamp({T0 + 2 * DAY})'
    register_keys(con, snapshot, query)
    registered = con.sql('SELECT count(*) FROM "k"').fetchall()[0][0]
    # the day, and the entry at its end (the end is widened by a microsecond): not 10,002
    assert registered == 1441
    whole = key_table(snapshot.keys["k"])
    part = key_table(snapshot.keys["k"], (T0 + DAY, T0 + 2 * DAY))
    assert part.schema == whole.schema and part.num_rows == 1440
    assert key_table(snapshot.keys["k"], (T0 + 99 * DAY, None)).num_rows == 0


QUERIES = [
    "SELECT ts, value FROM k WHERE ts >= make_timestamp({a}) AND ts < make_timestamp({b}) ORDER BY ts",
    "SELECT count(*) AS n FROM k WHERE ts BETWEEN make_timestamp({a}) AND make_timestamp({b})",
    "SELECT count(*) AS n FROM k WHERE ts > make_timestamp({a}) OR value < 0",
    "SELECT k.ts, j.value FROM k JOIN j ON k.ts = j.ts WHERE k.ts < make_timestamp({b}) ORDER BY 1",
    "SELECT value FROM k WHERE ts = make_timestamp({a})",
    "SELECT ts, lag(value) OVER (ORDER BY ts) AS p FROM k WHERE ts >= make_timestamp({a}) ORDER BY ts",
    "WITH w AS (SELECT * FROM k WHERE ts < make_timestamp({b})) SELECT count(*) AS n FROM w",
    "SELECT count(*) AS n FROM k WHERE ts >= '2024-01-03' AND ts < '2024-01-03T06:00:00Z'",
    "SELECT min(ts) AS m FROM k WHERE ts >= '2024-01-05T00:00:00+02:00'::TIMESTAMPTZ",
]


@pytest.mark.parametrize("template", QUERIES)
@pytest.mark.parametrize(
    "bounds", [(0, 1), (DAY, 2 * DAY), (-DAY, 30 * SECOND), (5 * DAY, 99 * DAY)]
)
def test_results_equal_a_full_scan(db, template, bounds) -> None:
    query = template.format(a=T0 + bounds[0], b=T0 + bounds[1])
    got = db.sql(query)
    with db.duckdb() as full:  # history views only: register the key views unsliced
        for name in ("k", "j"):
            full.register(
                name,
                full.sql(f"SELECT ts, value FROM history WHERE key = '{name}'").to_arrow_table(),
            )
        want = full.sql(query).to_arrow_table()
    assert got.equals(want)


def test_mixed_type_key_keeps_its_schema(tmp_path: Path) -> None:
    with synarrow.SynaDB(tmp_path / "db") as d:
        d.append("m", 1.5, timestamp=T0)
        d.append("m", "text", timestamp=T0 + DAY)
        t = d.sql(f"SELECT value FROM m WHERE ts < make_timestamp({T0 + 1})")
        assert pa.types.is_struct(t.schema.field("value").type)
        assert t.num_rows == 1
