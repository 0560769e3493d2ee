"""Issue 14 benchmarks (analytics part): native resampling and time-range reads.

* ``resample_hourly``: hourly means of 10M points (1 key, 1 Hz, compacted) with
  ``db.resample`` against pandas ``resample('1h').mean()`` on the same data and against
  synarrow's SQL path (``time_bucket`` on the key's view).
* ``range_read``: 1 day out of a 30-day, 1 Hz compacted key (2.6M points) with
  ``get_history(key, start, end)`` (zero-copy, binary search) against DuckDB
  ``WHERE ts >= ... AND ts < ...`` on a native table, synarrow's SQL view, and ArcticDB
  ``read(date_range=...)`` when it is installed.

Every row checks its result against numpy and says so in its note.
"""

from __future__ import annotations

import os
import tempfile
import time

import numpy as np

from .bench_core import _safe_close
from .common import T0_US, Ctx, Row, best_time, regular_ts_us, sa_open

ISSUE = 14
HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US


def _hourly_expected(ts: np.ndarray, vals: np.ndarray) -> np.ndarray:
    hours = (ts - T0_US) // HOUR_US
    return np.bincount(hours, weights=vals) / np.bincount(hours)


def _check(got: np.ndarray, want: np.ndarray) -> str:
    ok = len(got) == len(want) and np.allclose(got, want, rtol=1e-9, atol=1e-12)
    return "results agree with numpy" if ok else "WRONG: results differ from numpy"


def bench_resample_hourly(ctx: Ctx) -> list[Row]:
    """Hourly means of 10M points: db.resample vs pandas resample vs db.sql time_bucket."""
    start = len(ctx.rows)
    b = "resample_hourly"
    n = ctx.n(10_000_000, 2_000_000)
    fig = f"hourly mean of {n / 1e6:g}M points (1 Hz, 1 key, compacted)"
    fig_sql = f"{fig}: vs synarrow's SQL time_bucket"
    rng = np.random.default_rng(14)
    ts = regular_ts_us(n, 1.0)
    vals = rng.standard_normal(n)
    want = _hourly_expected(ts, vals)

    with ctx.guard(ISSUE, b, fig, "pandas", "s", higher_better=False, ref="pandas"):
        import pandas as pd

        s = pd.Series(vals, index=pd.to_datetime(ts, unit="us", utc=True))
        out: list = []
        dt = best_time(lambda: out.append(s.resample("1h").mean()), 3, budget_s=6)
        chk = _check(out[-1].to_numpy(), want)
        ctx.add(
            Row(
                ISSUE,
                b,
                fig,
                "pandas",
                dt,
                "s",
                False,
                ref="pandas",
                note=f"Series with a UTC DatetimeIndex built beforehand (untimed); "
                f"resample('1h').mean(); best of 3; {chk}",
            )
        )

    with ctx.guard(ISSUE, b, fig, "synarrow", "s", higher_better=False, ref="pandas"):
        with ctx.tmpdir("resample") as d:
            db = sa_open(os.path.join(d, "sa.db"), sync_on_write=False)
            try:
                db.append_batch("x", vals, timestamps=ts)
                db.compact()
                out = []
                dt = best_time(lambda: out.append(db.resample("x", "1h")), 5, budget_s=6)
                chk = _check(out[-1].column("value").to_numpy(), want)
                query = (
                    "SELECT time_bucket(INTERVAL '1 hour', ts) AS h, avg(value) AS v "
                    'FROM "x" GROUP BY h ORDER BY h'
                )
                sql_out: list = []
                dt_sql = best_time(lambda: sql_out.append(db.sql(query)), 3, budget_s=6)
                chk_sql = _check(sql_out[-1].column("v").to_numpy(), want)
            finally:
                _safe_close(db)
        ctx.add(
            Row(
                ISSUE,
                b,
                fig,
                "synarrow",
                dt,
                "s",
                False,
                ref="pandas",
                note=f"db.resample('x', '1h') (numpy reduceat on the zero-copy history, "
                f"to Arrow); best of 5; {chk}",
                target=("ratio", 1.0),
                target_text="faster than pandas",
            )
        )
        ctx.add(
            Row(
                ISSUE,
                b,
                fig_sql,
                "synarrow sql",
                dt_sql,
                "s",
                False,
                ref="synarrow sql",
                note=f"db.sql time_bucket / avg on the key's view, ORDER BY h; best of 3; "
                f"{chk_sql}",
            )
        )
        ctx.add(
            Row(
                ISSUE,
                b,
                fig_sql,
                "synarrow",
                dt,
                "s",
                False,
                ref="synarrow sql",
                note="db.resample, the row above",
                target=("ratio", 3.0),
                target_text="at least 3x faster than the SQL path",
            )
        )
    return ctx.rows[start:]


def _duckdb_range(ts: np.ndarray, vals: np.ndarray, lo: int, hi: int) -> tuple[float, int, str]:
    import duckdb
    import pyarrow as pa

    con = duckdb.connect()
    try:
        con.register("src", pa.table({"ts": pa.array(ts, pa.timestamp("us")), "value": vals}))
        con.execute("CREATE TABLE t AS SELECT * FROM src ORDER BY ts")
        con.unregister("src")
        q = (
            f"SELECT ts, value FROM t WHERE ts >= make_timestamp({lo}) "
            f"AND ts < make_timestamp({hi})"
        )
        out: list = []
        dt = best_time(lambda: out.append(con.sql(q).to_arrow_table()), 20, budget_s=3)
        got = out[-1].column("value").to_numpy()
    finally:
        con.close()
    return dt, len(got), _check(got, vals[(ts >= lo) & (ts < hi)])


def bench_range_read(ctx: Ctx) -> list[Row]:
    """1 day out of a 30-day, 1 Hz compacted key: get_history(key, start, end) vs DuckDB."""
    start = len(ctx.rows)
    b = "range_read"
    days = 30 if not ctx.quick else 5
    n = days * 86_400
    fig = f"range read: 1 day of a {days}-day 1 Hz compacted key ({n / 1e6:.2g}M points)"
    rng = np.random.default_rng(15)
    ts = regular_ts_us(n, 1.0)
    vals = rng.standard_normal(n)
    lo = T0_US + 2 * DAY_US
    hi = lo + DAY_US
    want = vals[(ts >= lo) & (ts < hi)]
    ref = "duckdb table"

    with ctx.guard(ISSUE, b, fig, ref, "ms", higher_better=False, ref=ref):
        dt, rows, chk = _duckdb_range(ts, vals, lo, hi)
        ctx.add(
            Row(
                ISSUE,
                b,
                fig,
                ref,
                dt * 1e3,
                "ms",
                False,
                ref=ref,
                note=f"native DuckDB table sorted by ts, WHERE ts >= .. AND ts < .., "
                f"result to Arrow; {rows:,} rows; best of 20; {chk}",
            )
        )

    with ctx.guard(ISSUE, b, fig, "arcticdb", "ms", higher_better=False, ref=ref):
        _arctic_row(ctx, b, fig, ref, ts, vals, lo, hi, want)

    tgt = dict(target=("max", 0.05), target_text="< 0.05 ms, zero-copy")
    with ctx.guard(ISSUE, b, fig, "synarrow", "ms", higher_better=False, ref=ref, **tgt):
        with ctx.tmpdir("range") as d:
            db = sa_open(os.path.join(d, "sa.db"), sync_on_write=False)
            try:
                db.append_batch("x", vals, timestamps=ts)
                db.compact()
                whole = db.get_history("x")
                reps = 2000
                out: list = []

                def many() -> None:
                    for _ in range(reps):
                        t = db.get_history("x", lo, hi)
                    out.append(t)

                dt = best_time(many, 3, budget_s=3) / reps
                arrays: list = []

                def many_floats() -> None:
                    for _ in range(reps):
                        a = db.get_history_floats("x", lo, hi)
                    arrays.append(a)

                dt_np = best_time(many_floats, 3, budget_s=3) / reps
                view = arrays[-1]
                np_zero_copy = not view.flags.owndata and np.shares_memory(
                    view, db.get_history_floats("x")
                )
                chk_np = _check(view, want)
                got = out[-1].column("value")
                base = whole.column("value").chunk(0)
                part = got.chunk(0)
                first = int(np.searchsorted(ts, lo))
                zero_copy = got.num_chunks == 1 and (
                    part.buffers()[1].address + part.offset * 8
                    == base.buffers()[1].address + (base.offset + first) * 8
                )
                chk = _check(got.to_numpy(), want)
                q = (
                    f'SELECT ts, value FROM "x" WHERE ts >= make_timestamp({lo}) '
                    f"AND ts < make_timestamp({hi})"
                )
                sql_out: list = []
                dt_sql = best_time(lambda: sql_out.append(db.sql(q)), 20, budget_s=3)
                chk_sql = _check(sql_out[-1].column("value").to_numpy(), want)
            finally:
                _safe_close(db)
        ctx.add(
            Row(
                ISSUE,
                b,
                fig,
                "synarrow",
                dt * 1e3,
                "ms",
                False,
                ref=ref,
                note=f"get_history('x', start, end) (ints), mean of {reps} calls, best of "
                f"3; zero-copy slice of the mapped file: {zero_copy}; {chk}",
                **tgt,
            )
        )
        ctx.add(
            Row(
                ISSUE,
                b,
                fig,
                "synarrow numpy",
                dt_np * 1e3,
                "ms",
                False,
                ref=ref,
                note=f"get_history_floats('x', start, end), mean of {reps} calls, best of 3; "
                f"a view of the mapped file: {np_zero_copy}; {chk_np}",
            )
        )
        ctx.add(
            Row(
                ISSUE,
                b,
                fig,
                "synarrow sql",
                dt_sql * 1e3,
                "ms",
                False,
                ref=ref,
                note=f"db.sql on the key's view with the same WHERE, result to Arrow; "
                f"best of 20; {chk_sql}",
            )
        )
    return ctx.rows[start:]


def _arctic_row(
    ctx: Ctx,
    b: str,
    fig: str,
    ref: str,
    ts: np.ndarray,
    vals: np.ndarray,
    lo: int,
    hi: int,
    want: np.ndarray,
) -> None:
    try:
        import arcticdb
    except ImportError:
        ctx.add(
            Row(
                ISSUE,
                b,
                fig,
                "arcticdb",
                None,
                "ms",
                False,
                ref=ref,
                note="not measured: arcticdb is not installed (pip install arcticdb, "
                "the bench extra)",
            )
        )
        return
    import pandas as pd

    with tempfile.TemporaryDirectory(dir=ctx.tmp_root) as d:
        ac = arcticdb.Arctic(f"lmdb://{d}")
        lib = ac.get_library("bench", create_if_missing=True)
        index = pd.to_datetime(ts, unit="us")
        lib.write("x", pd.DataFrame({"value": vals}, index=index))
        rng = (pd.Timestamp(lo, unit="us"), pd.Timestamp(hi - 1, unit="us"))
        out: list = []
        dt = best_time(lambda: out.append(lib.read("x", date_range=rng).data), 20, budget_s=3)
        chk = _check(out[-1]["value"].to_numpy(), want)
    ctx.add(
        Row(
            ISSUE,
            b,
            fig,
            "arcticdb",
            dt * 1e3,
            "ms",
            False,
            ref=ref,
            note=f"LMDB backend, read(date_range=...) to pandas; best of 20; {chk}",
        )
    )


BENCHMARKS = {
    "resample_hourly": bench_resample_hourly,
    "range_read": bench_range_read,
}


if __name__ == "__main__":  # a quick look without the runner
    c = Ctx(quick=True)
    for fn in BENCHMARKS.values():
        t0 = time.perf_counter()
        fn(c)
        print(f"{fn.__name__}: {time.perf_counter() - t0:.1f} s")
