"""SQL over ordered histories: ``history``, ``latest`` and per-key views read the timeline
(sorted by ``ts``, duplicates policy applied), and ``ts`` ranges in SQL agree with
``get_history(key, start, end)`` on every store state."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from _support import state_fixtures

import synarrow

T0 = 1_700_000_000_000_000
SECOND = 1_000_000
N = 3000


def _late(half: int) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps of one half, a tenth of them late (written after later ones)."""
    rng = np.random.default_rng(half)
    ts = T0 + (np.arange(N, dtype=np.int64) + half * N) * SECOND
    late = rng.choice(N, N // 10, replace=False)
    ts[late] -= rng.integers(1, 60, len(late)) * SECOND
    return ts, rng.normal(size=N)


def fill(db: synarrow.SynaDB, half: int) -> None:
    ts, v = _late(half)
    db.append_batch("late", v, timestamps=ts)
    db.append_batch("ints", np.arange(N) + half * N, timestamps=ts[::-1].copy())
    db.append("one", float(half), timestamp=T0 + (1 - half) * SECOND)  # latest by ts: half 0


templates, sdb = state_fixtures(fill)


def _model(key: str) -> tuple[np.ndarray, np.ndarray]:
    parts = [_late(h) for h in (0, 1)]
    ts = np.concatenate([p[0] for p in parts])
    if key == "ints":
        ts = np.concatenate([p[0][::-1] for p in parts])
        v = np.arange(2 * N, dtype=np.float64)
    else:
        v = np.concatenate([p[1] for p in parts])
    order = np.argsort(ts, kind="stable")
    return ts[order], v[order]


def _us(col: pa.ChunkedArray) -> np.ndarray:
    return col.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_numpy()


@pytest.mark.parametrize("key", ["late", "ints"])
def test_history_and_key_views_are_ordered(sdb, key) -> None:
    ts, v = _model(key)
    by_view = sdb.sql(f'SELECT ts, value FROM "{key}"')
    by_history = sdb.sql(f"SELECT ts, value FROM history WHERE key = '{key}'")
    for t in (by_view, by_history):
        # DuckDB keeps the scan order of one source in a plain projection
        np.testing.assert_array_equal(_us(t.column("ts")), ts)
        np.testing.assert_array_equal(t.column("value").to_numpy().astype(float), v)
    h = sdb.get_history(key)
    np.testing.assert_array_equal(_us(h.column("ts")), ts)


def test_latest_is_the_entry_with_the_latest_timestamp(sdb) -> None:
    rows = sdb.sql("SELECT key, value FROM latest").to_pylist()
    got = {r["key"]: r["value"] for r in rows}
    assert got["one"] == 0.0  # written first, but with the later timestamp
    for key in ("late", "ints"):
        ts, v = _model(key)
        assert got[key] == v[-1]
        row = sdb.sql(f"SELECT ts FROM latest WHERE key = '{key}'")
        assert _us(row.column("ts"))[0] == ts[-1]


RANGES = [
    (T0 + 100 * SECOND, T0 + 2000 * SECOND),
    (T0 + 2900 * SECOND, T0 + 3100 * SECOND),
    (None, T0 + 10 * SECOND),
    (T0 + 5990 * SECOND, None),
    (T0 + 10**9, T0 + 2 * 10**9),
]


def _where(lo: int | None, hi: int | None) -> str:
    parts = []
    if lo is not None:
        parts.append(f"ts >= make_timestamp({lo})")
    if hi is not None:
        parts.append(f"ts < make_timestamp({hi})")
    return " AND ".join(parts)


@pytest.mark.parametrize(("lo", "hi"), RANGES)
@pytest.mark.parametrize("key", ["late", "ints"])
def test_sql_ranges_agree_with_get_history(sdb, key, lo, hi) -> None:
    want = sdb.get_history(key, lo, hi)
    where = _where(lo, hi)
    for query in (
        f'SELECT ts, value FROM "{key}" WHERE {where} ORDER BY ts',
        f"SELECT ts, value FROM history WHERE key = '{key}' AND {where} ORDER BY ts",
    ):
        got = sdb.sql(query)
        np.testing.assert_array_equal(_us(got.column("ts")), _us(want.column("ts")))
        np.testing.assert_array_equal(
            got.column("value").to_numpy().astype(float),
            want.column("value").to_numpy().astype(float),
        )


@pytest.mark.parametrize("policy", ["keep_last", "keep_first"])
def test_duplicates_policy_applies_in_sql(tmp_path, policy) -> None:
    cfg = synarrow.DbConfig(sync_on_write=False, auto_compact=False, duplicates=policy)
    with synarrow.SynaDB(tmp_path / "db", cfg) as db:
        db.append_batch("k", [1.0, 2.0, 3.0], timestamps=[T0, T0 + 1, T0 + 2])
        db.append_batch("k", [20.0, 30.0], timestamps=[T0 + 1, T0 + 2])  # a resent batch
        want = [1.0, 20.0, 30.0] if policy == "keep_last" else [1.0, 2.0, 3.0]
        assert db.sql('SELECT value FROM "k" ORDER BY ts').column("value").to_pylist() == want
        assert db.sql("SELECT count(*) AS n FROM history").column("n").to_pylist() == [3]
        assert db.sql("SELECT value FROM latest").column("value").to_pylist() == [want[-1]]
