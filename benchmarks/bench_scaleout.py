"""Issue 7 benchmarks: scaling out (Arrow Flight streaming and ingest, partitioned export).

Same conventions as bench_core: ``fn(ctx) -> list[Row]``, one guard per side, the
reference (plain pyarrow doing the same work) first.

* ``flight_get``: ``do_get`` of a 10M-point history (2M with ``--quick``) from a compacted
  database, client and server in this process on 127.0.0.1; GB/s of Arrow data received.
  Reference: a bare ``pyarrow.flight`` server streaming the same table from memory.
* ``flight_put``: ``do_put`` of 10M (value, ts) rows into one key; values/s appended.
  Reference: a bare server that only reads the stream.
* ``export_dataset``: 10M points over 1k keys (2M / 200 with ``--quick``), compacted, to a
  Hive-partitioned Parquet dataset; against ``pyarrow.parquet.write_to_dataset`` of the same
  rows as one table with a key column. Both outputs are read back and counted.

Run alone: ``python -m benchmarks.bench_scaleout [--quick]``.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np

from .common import T0_US, Ctx, Row, best_time, sa_open, sensor_keys, sensor_series

ISSUE = 7
perf = time.perf_counter


def _safe_close(obj) -> None:
    try:
        obj.close()
    except Exception:  # cleanup only
        pass


def _kw(config: dict) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in config.items())


def _history_db(ctx: Ctx, d: str, n: int, key: str = "x"):
    db = sa_open(os.path.join(d, "sa.db"), sync_on_write=False, auto_compact=False)
    ts = T0_US + np.arange(n, dtype=np.int64) * 1_000_000
    db.append_batch(key, sensor_series(n), timestamps=ts)
    db.compact()
    return db


# --------------------------------------------------------------------------
# Flight do_get
# --------------------------------------------------------------------------


def bench_flight_get(ctx: Ctx) -> list[Row]:
    """do_get of one key's history over loopback."""
    import pyarrow.flight as fl

    start = len(ctx.rows)
    b = "flight_get"
    n = ctx.n(10_000_000, 2_000_000)
    fig = f"do_get of a {n / 1e6:g}M-point history"
    ref = "pyarrow flight"
    note = "client and server in one process on 127.0.0.1, best of 5; bytes = Arrow buffers"

    with ctx.tmpdir("flight") as d:
        db = _history_db(ctx, d, n)
        try:
            table = db.get_history("x")
            nbytes = table.nbytes

            with ctx.guard(ISSUE, b, fig, ref, "GB/s", ref=None):
                from synarrow.serving.wire import rebatch

                batches = rebatch(table)

                class Bare(fl.FlightServerBase):
                    def do_get(self, context, ticket):
                        return fl.RecordBatchStream(batches)

                server = Bare("grpc://127.0.0.1:0")
                client = fl.connect(f"grpc://127.0.0.1:{server.port}")
                try:
                    got = []
                    dt = best_time(
                        lambda: got.append(client.do_get(fl.Ticket(b"x")).read_all().num_rows),
                        5,
                        budget_s=8,
                    )
                finally:
                    client.close()
                    server.shutdown()
                ctx.add(
                    Row(
                        ISSUE,
                        b,
                        fig,
                        ref,
                        nbytes / dt / 1e9,
                        "GB/s",
                        ref=None,
                        note=f"same table from memory, same ~8 MiB batches; {note}",
                    )
                )

            tgt = dict(target=("min", 1.0), target_text="≥ 1 GB/s")
            with ctx.guard(ISSUE, b, fig, "synarrow", "GB/s", ref=ref, **tgt):
                from synarrow.flight import FlightClient, FlightServer

                server = FlightServer(db)
                client = FlightClient(server.location)
                try:
                    got = []
                    dt = best_time(lambda: got.append(client.history("x")), 5, budget_s=8)
                    ok = got[-1].num_rows == n and got[-1].column("value").equals(
                        table.column("value")
                    )
                    sql_dt = best_time(lambda: client.sql("SELECT * FROM history"), 3, budget_s=6)
                finally:
                    client.close()
                    server.shutdown()
                ctx.add(
                    Row(
                        ISSUE,
                        b,
                        fig,
                        "synarrow",
                        nbytes / dt / 1e9,
                        "GB/s",
                        ref=ref,
                        note=(
                            f"{nbytes / 1e6:.0f} MB in {dt * 1e3:.0f} ms; values equal: {ok}; "
                            f"{note}; SQL 'SELECT * FROM history' over Flight: "
                            f"{n / sql_dt / 1e6:.3g}M rows/s"
                        ),
                        **tgt,
                    )
                )
        finally:
            _safe_close(db)
    return ctx.rows[start:]


# --------------------------------------------------------------------------
# Flight do_put
# --------------------------------------------------------------------------


def bench_flight_put(ctx: Ctx) -> list[Row]:
    """do_put of (ts, value) batches into one key."""
    import pyarrow as pa
    import pyarrow.flight as fl

    start = len(ctx.rows)
    b = "flight_put"
    n = ctx.n(10_000_000, 2_000_000)
    fig = f"do_put of {n / 1e6:g}M (ts, value) rows"
    ref = "pyarrow flight"
    ts = T0_US + np.arange(n, dtype=np.int64) * 1_000_000
    table = pa.table({"ts": pa.array(ts, pa.timestamp("us", tz="UTC")), "value": sensor_series(n)})
    from synarrow.flight import PUT_BATCH_ROWS

    with ctx.guard(ISSUE, b, fig, ref, "values/s", ref=None):

        class Sink(fl.FlightServerBase):
            def do_put(self, context, descriptor, reader, writer):
                for _ in reader:
                    pass

        server = Sink("grpc://127.0.0.1:0")
        client = fl.connect(f"grpc://127.0.0.1:{server.port}")
        try:

            def put() -> None:
                w, _ = client.do_put(fl.FlightDescriptor.for_path("x"), table.schema)
                w.write_table(table, max_chunksize=PUT_BATCH_ROWS)
                w.close()

            dt = best_time(put, 3, budget_s=6)
        finally:
            client.close()
            server.shutdown()
        ctx.add(
            Row(
                ISSUE,
                b,
                fig,
                ref,
                n / dt,
                "values/s",
                ref=None,
                note=f"server only reads the stream; batches of {PUT_BATCH_ROWS:,} rows",
            )
        )

    local = "append_batch, no Flight"
    with ctx.guard(ISSUE, b, fig, local, "values/s", ref=None):
        # The core's own speed on the same batches: the ceiling for do_put.
        times = []
        for _ in range(3):
            with ctx.tmpdir("localput") as d:
                db = sa_open(os.path.join(d, "sa.db"), sync_on_write=False, auto_compact=False)
                try:
                    batches = table.to_batches(max_chunksize=PUT_BATCH_ROWS)
                    t0 = perf()
                    for batch in batches:
                        db.append_batch("x", batch.column(1), timestamps=batch.column(0))
                    times.append(perf() - t0)
                finally:
                    _safe_close(db)
            if sum(times) > 6:
                break
        ctx.add(
            Row(
                ISSUE,
                b,
                fig,
                local,
                n / min(times),
                "values/s",
                ref=None,
                note=f"db.append_batch of the same {PUT_BATCH_ROWS:,}-row batches, "
                "DbConfig(sync_on_write=False): the ceiling for do_put",
            )
        )

    tgt = dict(target=("min", 20e6), target_text="≥ 20M values/s")
    variants = (
        ("synarrow", dict(sync_on_write=False), tgt),
        ("synarrow, log LZ4 off", dict(sync_on_write=False, compression=None), {}),
        ("synarrow, sync_on_write", dict(sync_on_write=True), {}),
    )
    for system, config, kw in variants:
        with ctx.guard(ISSUE, b, fig, system, "values/s", ref=ref, **kw):
            from synarrow.flight import FlightClient, FlightServer

            times, ok = [], True
            for _ in range(3):
                with ctx.tmpdir("flightput") as d:
                    db = sa_open(os.path.join(d, "sa.db"), auto_compact=False, **config)
                    server = FlightServer(db)
                    client = FlightClient(server.location)
                    try:
                        t0 = perf()
                        rows = client.put_table("x", table)
                        times.append(perf() - t0)
                        ok = (
                            ok
                            and rows == n
                            and db.get_history("x").column("value").equals(table.column("value"))
                        )
                    finally:
                        client.close()
                        server.shutdown()
                        _safe_close(db)
                if sum(times) > 6:
                    break
            dt = min(times)
            ctx.add(
                Row(
                    ISSUE,
                    b,
                    fig,
                    system,
                    n / dt,
                    "values/s",
                    ref=ref,
                    note=(
                        f"FlightClient.put_table in batches of {PUT_BATCH_ROWS:,}, staged "
                        f"whole then appended (all-or-nothing); DbConfig({_kw(config)}); best of {len(times)}; "
                        f"history equal: {ok}"
                    ),
                    **kw,
                )
            )
    return ctx.rows[start:]


# --------------------------------------------------------------------------
# export to a partitioned Parquet dataset
# --------------------------------------------------------------------------


def bench_export_dataset(ctx: Ctx) -> list[Row]:
    """export_dataset vs pyarrow.parquet.write_to_dataset on the same rows."""
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    start = len(ctx.rows)
    b = "export_dataset"
    n = ctx.n(10_000_000, 2_000_000)
    nkeys = ctx.n(1000, 200)
    per = n // nkeys
    fig = f"export {n / 1e6:g}M points / {nkeys} keys to Hive Parquet"
    ref = "pyarrow write_to_dataset"
    keys = sensor_keys(nkeys)
    ts = T0_US + np.arange(per, dtype=np.int64) * 1_000_000
    values = sensor_series(n)
    note = "snappy, one file per key; best of 3; output read back with pyarrow.dataset"

    def count(path: str) -> int:
        part = ds.partitioning(pa.schema([("key", pa.string())]), flavor="hive")
        return ds.dataset(path, format="parquet", partitioning=part).count_rows()

    with ctx.tmpdir("export") as d:
        with ctx.guard(ISSUE, b, fig, ref, "s", ref=None):
            table = pa.table(
                {
                    "key": pa.array(np.repeat(np.array(keys, dtype=object), per), pa.string()),
                    "ts": pa.array(np.tile(ts, nkeys), pa.timestamp("us", tz="UTC")),
                    "value": values,
                }
            )
            out = os.path.join(d, "ref")
            holder = [table]
            del table  # freed before synarrow's side runs

            def write_ref() -> None:
                pq.write_to_dataset(holder[0], out, partition_cols=["key"])

            dt = best_time(
                write_ref, 3, budget_s=15, setup=lambda: shutil.rmtree(out, ignore_errors=True)
            )
            holder.clear()
            rows = count(out)
            ctx.add(
                Row(
                    ISSUE,
                    b,
                    fig,
                    ref,
                    dt,
                    "s",
                    higher_better=False,
                    ref=None,
                    note=f"one in-memory table with a key column; rows read back: {rows:,}",
                )
            )

        tgt = dict(target=("ratio", 1 / 1.2), target_text="within 1.2x of write_to_dataset")
        with ctx.guard(ISSUE, b, fig, "synarrow", "s", higher_better=False, ref=ref, **tgt):
            from synarrow.export import export_dataset

            db = sa_open(os.path.join(d, "sa.db"), sync_on_write=False, auto_compact=False)
            try:
                for i, key in enumerate(keys):
                    db.append_batch(key, values[i * per : (i + 1) * per], timestamps=ts)
                db.compact()
                out = os.path.join(d, "ours")
                dt = best_time(
                    lambda: export_dataset(db, out),
                    3,
                    budget_s=15,
                    setup=lambda: shutil.rmtree(out, ignore_errors=True),
                )
                rows = count(out)
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
                    higher_better=False,
                    ref=ref,
                    note=(
                        f"export_dataset(db, dir) from a compacted db; {note}; the files hold "
                        "8 columns (the key too; the reference's 2: ts, value); "
                        f"rows: {rows:,}; {n / dt / 1e6:.3g}M points/s"
                    ),
                    **tgt,
                )
            )
    return ctx.rows[start:]


BENCHMARKS = {
    "flight_get": bench_flight_get,
    "flight_put": bench_flight_put,
    "export_dataset": bench_export_dataset,
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
    print(json.dumps([r.__dict__ for r in ctx.rows], indent=1))
