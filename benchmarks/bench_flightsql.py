"""Issue 12 benchmarks: Arrow Flight SQL through ADBC against a real ``synarrow serve``.

Same conventions as bench_core: ``fn(ctx) -> list[Row]``, one guard per side, the
reference first. The server is a ``synarrow serve`` subprocess on 127.0.0.1 with a token
(the way clients meet it); the clients run in this process.

* ``flightsql_get``: ADBC ``fetch_arrow_table`` of ``SELECT * FROM "x"``, a 10M-point
  history (2M with ``--quick``), against plain Flight ``do_get`` of the same key from the
  same server; GB/s of Arrow data received.
* ``flightsql_ingest``: ADBC ``adbc_ingest`` of 10M (key, ts, value) rows over 1k keys
  (2M / 200 with ``--quick``) into ``history``; values/s committed.
* ``flightsql_latency``: ``SELECT avg(value) FROM "<key>"`` on a 1k-point key through ADBC,
  against ``db.sql`` in process; median ms.

Run alone: ``python -m benchmarks.bench_flightsql [--quick]``.
"""

from __future__ import annotations

import os
import select
import statistics
import subprocess
import sys
import time

import numpy as np

from .common import T0_US, Ctx, Row, best_time, sa_open, sensor_keys, sensor_series

ISSUE = 12
TOKEN = "bench-token-0123456789"
AUTH = {"adbc.flight.sql.authorization_header": f"Bearer {TOKEN}"}
perf = time.perf_counter


class _Server:
    """``synarrow serve PATH --port 0 --token TOKEN`` until closed."""

    def __init__(self, path: str) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "synarrow.cli",
                "serve",
                path,
                "--port",
                "0",
                "--token",
                TOKEN,
                "--query-timeout",
                "0",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if ready:
                self.location = self.proc.stdout.readline().strip()
                return
            if self.proc.poll() is not None:
                break
        self.close()
        raise RuntimeError("synarrow serve did not start")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def __enter__(self) -> _Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _adbc(location: str):
    import adbc_driver_flightsql.dbapi as flightsql

    return flightsql.connect(location, db_kwargs=AUTH, autocommit=True)


def bench_flightsql_get(ctx: Ctx) -> list[Row]:
    """ADBC fetch of a whole key's history vs plain Flight do_get of it."""
    import pyarrow.flight as fl

    start = len(ctx.rows)
    b = "flightsql_get"
    n = ctx.n(10_000_000, 2_000_000)
    fig = f"fetch a {n / 1e6:g}M-point history"
    ref = "plain Flight do_get"
    note = "synarrow serve subprocess on 127.0.0.1 with a token, best of 5"
    with ctx.tmpdir("fsqlget") as d:
        path = os.path.join(d, "sa.db")
        db = sa_open(path, sync_on_write=False, auto_compact=False)
        try:
            db.append_batch("x", sensor_series(n), timestamps=T0_US + np.arange(n) * 1_000_000)
            db.compact()
            nbytes = db.get_history("x").nbytes
        finally:
            db.close()
        with _Server(path) as server:
            with ctx.guard(ISSUE, b, fig, ref, "GB/s", ref=None):
                client = fl.connect(server.location)
                opts = fl.FlightCallOptions(
                    headers=[(b"authorization", f"Bearer {TOKEN}".encode())]
                )
                try:
                    got = []
                    dt = best_time(
                        lambda: got.append(
                            client.do_get(fl.Ticket(b'{"key": "x"}'), opts).read_all().num_rows
                        ),
                        5,
                        budget_s=10,
                    )
                finally:
                    client.close()
                ctx.add(
                    Row(
                        ISSUE,
                        b,
                        fig,
                        ref,
                        nbytes / dt / 1e9,
                        "GB/s",
                        ref=None,
                        note=f"rows {got[-1]:,}; {note}",
                    )
                )
            tgt = dict(target=("min", 1.0), target_text="≥ 1 GB/s, within 1.2x of do_get")
            with ctx.guard(ISSUE, b, fig, "synarrow", "GB/s", ref=ref, **tgt):
                got = []
                with _adbc(server.location) as conn, conn.cursor() as cur:

                    def fetch() -> None:
                        cur.execute('SELECT * FROM "x"')
                        got.append(cur.fetch_arrow_table().num_rows)

                    dt = best_time(fetch, 5, budget_s=10)
                ctx.add(
                    Row(
                        ISSUE,
                        b,
                        fig,
                        "synarrow",
                        nbytes / dt / 1e9,
                        "GB/s",
                        ref=ref,
                        note=f"ADBC Flight SQL cursor.execute + fetch_arrow_table, rows "
                        f"{got[-1]:,}; {note}",
                        **tgt,
                    )
                )
    return ctx.rows[start:]


def bench_flightsql_ingest(ctx: Ctx) -> list[Row]:
    """ADBC bulk ingest of (key, ts, value) rows over many keys."""
    import pyarrow as pa

    start = len(ctx.rows)
    b = "flightsql_ingest"
    n = ctx.n(10_000_000, 2_000_000)
    nkeys = ctx.n(1000, 200)
    per = n // nkeys
    fig = f"ingest {n / 1e6:g}M rows / {nkeys} keys"
    keys = sensor_keys(nkeys)
    table = pa.table(
        {
            "key": pa.array(np.repeat(np.array(keys, dtype=object), per), pa.string()),
            "ts": pa.array(
                np.tile(T0_US + np.arange(per) * 1_000_000, nkeys), pa.timestamp("us", tz="UTC")
            ),
            "value": sensor_series(per * nkeys),
        }
    )
    tgt = dict(target=("min", 20e6), target_text="≥ 20M values/s")
    with ctx.guard(ISSUE, b, fig, "synarrow", "values/s", ref=None, **tgt):
        times, ok = [], True
        for _ in range(3):
            with ctx.tmpdir("fsqlput") as d:
                path = os.path.join(d, "sa.db")
                sa_open(path, sync_on_write=False, auto_compact=False).close()
                with _Server(path) as server, _adbc(server.location) as conn:
                    with conn.cursor() as cur:
                        t0 = perf()
                        # ADBC's client sends at most 16 MiB per message: batches of 128k rows.
                        reader = pa.RecordBatchReader.from_batches(
                            table.schema, table.to_batches(max_chunksize=1 << 17)
                        )
                        rows = cur.adbc_ingest("history", reader, mode="append")
                        times.append(perf() - t0)
                    ok = ok and rows == per * nkeys
                    with conn.cursor() as cur:
                        cur.execute("SELECT count(*) AS n, count(DISTINCT key) AS k FROM history")
                        counts = cur.fetch_arrow_table().to_pylist()[0]
                    ok = ok and counts == {"n": per * nkeys, "k": nkeys}
            if sum(times) > 20:
                break
        dt = min(times)
        ctx.add(
            Row(
                ISSUE,
                b,
                fig,
                "synarrow",
                per * nkeys / dt,
                "values/s",
                ref=None,
                note=f"ADBC adbc_ingest into history (all-or-nothing: staged, then "
                f"appended); server DbConfig(sync_on_write=False); "
                f"best of {len(times)}; counts equal: {ok}",
                **tgt,
            )
        )
    return ctx.rows[start:]


def bench_flightsql_latency(ctx: Ctx) -> list[Row]:
    """A small aggregate through ADBC vs db.sql in process."""
    start = len(ctx.rows)
    b = "flightsql_latency"
    fig = 'SELECT avg(value) FROM "<key>", 1k points'
    ref = "db.sql in process"
    query = 'SELECT avg(value) AS a FROM "sensor/0001"'
    reps = ctx.n(200, 50)
    with ctx.tmpdir("fsqllat") as d:
        path = os.path.join(d, "sa.db")
        db = sa_open(path, sync_on_write=False, auto_compact=False)
        try:
            for k in sensor_keys(100):
                db.append_batch(
                    k, sensor_series(1000), timestamps=T0_US + np.arange(1000) * 1_000_000
                )
            db.compact()
            expected = float(np.mean(sensor_series(1000)))
            with ctx.guard(ISSUE, b, fig, ref, "ms", ref=None, higher_better=False):
                samples = []
                for _ in range(reps):
                    t0 = perf()
                    db.sql(query)
                    samples.append(perf() - t0)
                ctx.add(
                    Row(
                        ISSUE,
                        b,
                        fig,
                        ref,
                        statistics.median(samples) * 1e3,
                        "ms",
                        ref=None,
                        higher_better=False,
                        note=f"median of {reps}",
                    )
                )
        finally:
            db.close()
        with (
            _Server(path) as server,
            ctx.guard(ISSUE, b, fig, "synarrow", "ms", ref=ref, higher_better=False),
        ):
            samples, got = [], None
            with _adbc(server.location) as conn, conn.cursor() as cur:
                for _ in range(reps):
                    t0 = perf()
                    cur.execute(query)
                    got = cur.fetch_arrow_table().column("a")[0].as_py()
                    samples.append(perf() - t0)
            ctx.add(
                Row(
                    ISSUE,
                    b,
                    fig,
                    "synarrow",
                    statistics.median(samples) * 1e3,
                    "ms",
                    ref=ref,
                    higher_better=False,
                    note=f"ADBC Flight SQL: GetFlightInfo runs the query on a fresh "
                    f"sandboxed cursor and keeps the small result for DoGet; median "
                    f"of {reps}; value equal: "
                    f"{abs(got - expected) < 1e-9}",
                )
            )
    return ctx.rows[start:]


BENCHMARKS = {
    "flightsql_get": bench_flightsql_get,
    "flightsql_ingest": bench_flightsql_ingest,
    "flightsql_latency": bench_flightsql_latency,
}


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--json", help="write rows as JSON lines to this file")
    a = ap.parse_args()
    ctx = Ctx(quick=a.quick, rows_file=a.json)
    for name, fn in BENCHMARKS.items():
        if not a.only or name in a.only:
            fn(ctx)
