"""Issue 2 benchmarks: the storage engine (append, append_batch, get, durability,
group commit, reopen, bytes per entry in the log).

Every benchmark is ``fn(ctx) -> list[Row]``; each system side runs inside
``ctx.guard(...)`` so a missing synarrow feature only blanks its own row.
Reference systems are measured first so their rows survive a synarrow hang
(the runner kills a worker that exceeds its time limit, keeping emitted rows).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np

from .common import (
    Ctx,
    Row,
    best_time,
    disk_bytes,
    files_with_prefix_bytes,
    no_gc,
    pwrite_fdatasync_seconds,
    sa_open,
    sensor_keys,
    sqlite_open,
    synadb_open,
)

ISSUE = 2
perf = time.perf_counter


def _rows_since(ctx: Ctx, start: int) -> list[Row]:
    return ctx.rows[start:]


# --------------------------------------------------------------------------
# append (no sync) + bytes per entry in the log
# --------------------------------------------------------------------------


def bench_append(ctx: Ctx) -> list[Row]:
    """Single float appends without sync, 100 keys "sensor/0042" (11 bytes)."""
    start = len(ctx.rows)
    b = "append"
    n = ctx.n(200_000, 40_000)
    nkeys = 100
    keys = sensor_keys(nkeys)
    rng = np.random.default_rng(1)
    vals = (20.0 + rng.standard_normal(n)).tolist()
    pairs = [(keys[i % nkeys], vals[i]) for i in range(n)]
    repeats = 2
    fig = "append 1 float, no sync"
    note = f"{n:,} appends / {nkeys} keys, key 11 B, incl. close(); best of {repeats}"
    bfig = "bytes on disk per float entry (log)"
    bnote = f"{n:,} single appends / {nkeys} keys of 11 B"

    # synadb ------------------------------------------------------------------
    size = {}
    with ctx.guard(ISSUE, b, fig, "synadb", "ops/s"):

        def one() -> float:
            with ctx.tmpdir("synadb") as d:
                p = os.path.join(d, "s.db")
                db = synadb_open(p, sync_on_write=False)
                put = db.put_float
                with no_gc():
                    t0 = perf()
                    for k, v in pairs:
                        put(k, v)
                    db.close()
                    dt = perf() - t0
                size["synadb"] = disk_bytes(p)
                return dt

        dt = min(one() for _ in range(repeats))
        ctx.add(Row(ISSUE, b, fig, "synadb", n / dt, "ops/s", note="sync_on_write=False; " + note))
    if "synadb" in size:
        ctx.add(
            Row(
                ISSUE,
                b,
                bfig,
                "synadb",
                size["synadb"] / n,
                "B/entry",
                False,
                note=bnote + " (one file)",
            )
        )

    # sqlite ------------------------------------------------------------------
    with ctx.guard(ISSUE, b, fig, "sqlite", "ops/s"):

        def one_sql() -> float:
            with ctx.tmpdir("sqlite") as d:
                p = os.path.join(d, "s.sqlite")
                con = sqlite_open(p, durable=False)
                ex = con.execute
                q = "INSERT INTO h VALUES (?,?,?)"
                with no_gc():
                    t0 = perf()
                    for k, v in pairs:
                        ex(q, (k, time.time_ns() // 1000, v))
                    con.close()
                    dt = perf() - t0
                size["sqlite"] = files_with_prefix_bytes(p)
                return dt

        dt = min(one_sql() for _ in range(repeats))
        ctx.add(
            Row(
                ISSUE,
                b,
                fig,
                "sqlite",
                n / dt,
                "ops/s",
                note="autocommit INSERT per value, WAL, synchronous=OFF; " + note,
            )
        )
    if "sqlite" in size:
        ctx.add(
            Row(
                ISSUE,
                b,
                bfig,
                "sqlite",
                size["sqlite"] / n,
                "B/entry",
                False,
                note=bnote + " (table + (key,ts) index)",
            )
        )

    # synarrow ----------------------------------------------------------------
    with ctx.guard(
        ISSUE, b, fig, "synarrow", "ops/s", target=("ratio", 4.0), target_text="≥ 4x synadb"
    ):

        def one_sa() -> float:
            with ctx.tmpdir("synarrow") as d:
                p = os.path.join(d, "sa.db")
                db = sa_open(p, sync_on_write=False)
                try:
                    app = db.append
                    with no_gc():
                        t0 = perf()
                        for k, v in pairs:
                            app(k, v)
                        db.close()
                        dt = perf() - t0
                finally:
                    _safe_close(db)
                size["synarrow"] = disk_bytes(p)
                return dt

        dt = min(one_sa() for _ in range(repeats))
        ctx.add(
            Row(
                ISSUE,
                b,
                fig,
                "synarrow",
                n / dt,
                "ops/s",
                note="DbConfig(sync_on_write=False); " + note,
                target=("ratio", 4.0),
                target_text="≥ 4x synadb",
            )
        )
    if "synarrow" in size:
        ctx.add(
            Row(
                ISSUE,
                b,
                bfig,
                "synarrow",
                size["synarrow"] / n,
                "B/entry",
                False,
                note=bnote + " (all files in the db dir)",
                target=("ratio", 1.0),
                target_text="≤ synadb",
            )
        )
    return _rows_since(ctx, start)


def bench_append_types(ctx: Ctx) -> list[Row]:
    """Single appends of a numpy float64, an int and a numpy int64 without sync (100 keys),
    against SynaDB's put_float / put_int; the two sides interleaved, best of 3 each."""
    start = len(ctx.rows)
    b = "append_types"
    n = ctx.n(200_000, 40_000)
    nkeys = 100
    keys = sensor_keys(nkeys)
    floats = 20.0 + np.random.default_rng(1).standard_normal(n)
    kinds = {
        "numpy float64": (list(floats), "put_float"),
        "int": ((floats * 1000).astype(np.int64).tolist(), "put_int"),
        "numpy int64": (list((floats * 1000).astype(np.int64)), "put_int"),
    }
    note = f"{n:,} appends / {nkeys} keys, key 11 B, incl. close(); interleaved, best of 3"
    for kind, (values, put_name) in kinds.items():
        fig = f"append 1 {kind}, no sync"
        pairs = [(keys[i % nkeys], values[i]) for i in range(n)]

        def one(system: str, pairs: list = pairs, put_name: str = put_name) -> float:
            with ctx.tmpdir(system) as d:
                if system == "synadb":
                    db = synadb_open(os.path.join(d, "s.db"), sync_on_write=False)
                    app = getattr(db, put_name)
                else:
                    db = sa_open(os.path.join(d, "sa.db"), sync_on_write=False)
                    app = db.append
                try:
                    with no_gc():
                        t0 = perf()
                        for k, v in pairs:
                            app(k, v)
                        db.close()
                        return perf() - t0
                finally:
                    if system != "synadb":
                        _safe_close(db)

        best: dict[str, float] = {}
        for _ in range(3):
            for system in ("synadb", "synarrow"):
                with ctx.guard(ISSUE, b, fig, system, "ops/s"):
                    dt = one(system)
                    best[system] = min(best.get(system, dt), dt)
        if "synadb" in best:
            ctx.add(
                Row(
                    ISSUE,
                    b,
                    fig,
                    "synadb",
                    n / best["synadb"],
                    "ops/s",
                    note=f"{put_name}; " + note,
                )
            )
        if "synarrow" in best:
            ctx.add(
                Row(
                    ISSUE,
                    b,
                    fig,
                    "synarrow",
                    n / best["synarrow"],
                    "ops/s",
                    note="DbConfig(sync_on_write=False); " + note,
                    target=("ratio", 4.0),
                    target_text="≥ 4x synadb",
                )
            )
    return _rows_since(ctx, start)


def _safe_close(db) -> None:
    try:
        db.close()
    except Exception:
        pass


# --------------------------------------------------------------------------
# append_batch
# --------------------------------------------------------------------------


def bench_append_batch(ctx: Ctx) -> list[Row]:
    """append_batch of 10M float64 in one call (sqlite executemany / synadb batch of 1M as context)."""
    start = len(ctx.rows)
    b = "append_batch"
    fig = "append_batch float64"
    n = ctx.n(10_000_000, 2_000_000)
    m = ctx.n(1_000_000, 200_000)
    rng = np.random.default_rng(2)
    arr = rng.standard_normal(n)
    key = "batch/x"

    with ctx.guard(ISSUE, b, fig, "synadb", "values/s"):
        with ctx.tmpdir("synadb") as d:
            db = synadb_open(os.path.join(d, "s.db"), sync_on_write=False)
            sub = arr[:m].copy()
            with no_gc():
                t0 = perf()
                db.put_floats_batch(key, sub)
                dt = perf() - t0
            db.close()
        ctx.add(
            Row(
                ISSUE,
                b,
                fig,
                "synadb",
                m / dt,
                "values/s",
                note=f"put_floats_batch of {m:,} (context; one entry per value)",
            )
        )

    with ctx.guard(ISSUE, b, fig, "sqlite", "values/s"):
        ts = (np.int64(time.time_ns() // 1000) + np.arange(m, dtype=np.int64)).tolist()
        vals = arr[:m].tolist()
        rows = list(zip([key] * m, ts, vals))
        with ctx.tmpdir("sqlite") as d:
            con = sqlite_open(os.path.join(d, "s.sqlite"), durable=False)
            with no_gc():
                t0 = perf()
                con.execute("BEGIN")
                con.executemany("INSERT INTO h VALUES (?,?,?)", rows)
                con.execute("COMMIT")
                dt = perf() - t0
            con.close()
        ctx.add(
            Row(
                ISSUE,
                b,
                fig,
                "sqlite",
                m / dt,
                "values/s",
                note=f"executemany of {m:,} rows in one transaction, sync OFF (context)",
            )
        )

    tgt = dict(target=("min", 50e6), target_text="≥ 50M values/s")
    with ctx.guard(ISSUE, b, fig, "synarrow", "values/s", **tgt):
        calls, totals, checks = [], [], []
        for _ in range(3):
            with ctx.tmpdir("synarrow") as d:
                db = sa_open(os.path.join(d, "sa.db"), sync_on_write=False)
                try:
                    with no_gc():
                        t0 = perf()
                        db.append_batch(key, arr)
                        t1 = perf()
                    checks.append(db.get(key) == arr[-1])
                    t2 = perf()
                    db.close()
                    t3 = perf()
                finally:
                    _safe_close(db)
                calls.append(t1 - t0)
                totals.append((t1 - t0) + (t3 - t2))
            if sum(totals) > 6:
                break
        ctx.add(
            Row(
                ISSUE,
                b,
                fig,
                "synarrow",
                n / min(calls),
                "values/s",
                note=(
                    f"{n:,} values in one call, best of {len(calls)}; incl. close(): "
                    f"{n / min(totals) / 1e6:.3g}M/s; get()==last: {all(checks)}"
                ),
                **tgt,
            )
        )
    _append_batch_vs_write(ctx, arr, key)
    return _rows_since(ctx, start)


def _write_new_file(path: str, data: memoryview) -> None:
    """A plain ``write()`` of ``data`` into a new file (no sync), as a program would."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        done = 0
        while done < data.nbytes:
            done += os.write(fd, data[done:])
    finally:
        os.close(fd)


def _append_batch_vs_write(ctx: Ctx, arr: np.ndarray, key: str) -> None:
    """append_batch against the machine's limit: a plain write() of the same bytes into a
    new file, the two measured alternately in one loop (best of each)."""
    b = "append_batch"
    fig = "append_batch float64 vs plain write() of the same bytes"
    n = len(arr)
    ref = "plain write()"
    tgt = dict(target=("ratio", 0.8), target_text="≥ 0.8x plain write")
    data = memoryview(arr).cast("B")
    plain: list[float] = []
    appends: list[float] = []
    checks: list[bool] = []
    with ctx.guard(ISSUE, b, fig, "synarrow", "values/s", ref=ref, **tgt):
        for _ in range(5):
            with ctx.tmpdir("plain") as d:
                t0 = perf()
                _write_new_file(os.path.join(d, "f"), data)
                plain.append(perf() - t0)
            with ctx.tmpdir("synarrow") as d:
                db = sa_open(os.path.join(d, "sa.db"), sync_on_write=False)
                try:
                    with no_gc():
                        t0 = perf()
                        db.append_batch(key, arr)
                        appends.append(perf() - t0)
                    checks.append(db.get(key) == arr[-1])
                finally:
                    _safe_close(db)
            if sum(plain) + sum(appends) > 4:
                break
        note = f"{n:,} float64 ({arr.nbytes / 1e6:.0f} MB), best of {len(plain)}, alternating"
        ctx.add(
            Row(
                ISSUE,
                b,
                fig,
                ref,
                n / min(plain),
                "values/s",
                ref=None,
                note=f"os.write of the same bytes into a new file, no sync; {note}; "
                f"{arr.nbytes / min(plain) / 1e9:.2f} GB/s",
            )
        )
        ctx.add(
            Row(
                ISSUE,
                b,
                fig,
                "synarrow",
                n / min(appends),
                "values/s",
                ref=ref,
                note=f"append_batch in one call, sync_on_write=False; {note}; "
                f"{arr.nbytes / min(appends) / 1e9:.2f} GB/s; get()==last: {all(checks)}",
                **tgt,
            )
        )


# --------------------------------------------------------------------------
# get latest
# --------------------------------------------------------------------------


def bench_get(ctx: Ctx) -> list[Row]:
    """Latest-value get over 10k keys with history 1 and 100 (flat in history length?)."""
    start = len(ctx.rows)
    b = "get"
    nkeys = ctx.n(10_000, 2_000)
    keys = sensor_keys(nkeys, width=5)  # "sensor/00042": 12 bytes
    rng = np.random.default_rng(3)
    order = [keys[i] for i in rng.permutation(nkeys)]
    sample = order[:500]
    rates: dict[tuple[str, int], float] = {}
    tgt = dict(target=("min", 1e6), target_text="≥ 1M gets/s")

    for h in (1, 100):
        fig = f"get latest, history {h}/key"
        data = rng.standard_normal((nkeys, h))
        last = {k: float(data[i, -1]) for i, k in enumerate(keys)}
        how = "single appends" if h == 1 else f"batches of {h}"
        note = f"{nkeys:,} keys of 12 B written with {how}; random key order; best of 3"

        # synadb ------------------------------------------------------------
        with ctx.guard(ISSUE, b, fig, "synadb", "gets/s"):
            with ctx.tmpdir("synadb") as d:
                db = synadb_open(os.path.join(d, "s.db"), sync_on_write=False)
                try:
                    for i, k in enumerate(keys):
                        if h == 1:
                            db.put_float(k, float(data[i, 0]))
                        else:
                            db.put_floats_batch(k, data[i])
                    g = db.get_float
                    bad = sum(g(k) != last[k] for k in sample)

                    def run(g=g):
                        for k in order:
                            g(k)

                    dt = best_time(run, 3, budget_s=4)
                finally:
                    db.close()
            rates[("synadb", h)] = nkeys / dt
            ctx.add(
                Row(
                    ISSUE,
                    b,
                    fig,
                    "synadb",
                    nkeys / dt,
                    "gets/s",
                    note=f"get_float; {note}; wrong values in sample: {bad}",
                )
            )

        # sqlite -------------------------------------------------------------
        with ctx.guard(ISSUE, b, fig, "sqlite", "gets/s"):
            with ctx.tmpdir("sqlite") as d:
                con = sqlite_open(os.path.join(d, "s.sqlite"), durable=False)
                try:
                    rows = [
                        (k, 1_000_000 * j, float(data[i, j]))
                        for i, k in enumerate(keys)
                        for j in range(h)
                    ]
                    con.execute("BEGIN")
                    con.executemany("INSERT INTO h VALUES (?,?,?)", rows)
                    con.execute("COMMIT")
                    del rows
                    q = "SELECT value FROM h WHERE key=? ORDER BY ts DESC LIMIT 1"
                    ex = con.execute

                    def sg(k, ex=ex, q=q):
                        return ex(q, (k,)).fetchone()[0]

                    bad = sum(sg(k) != last[k] for k in sample)

                    def run(ex=ex, q=q):
                        for k in order:
                            ex(q, (k,)).fetchone()

                    dt = best_time(run, 3, budget_s=4)
                finally:
                    con.close()
            rates[("sqlite", h)] = nkeys / dt
            ctx.add(
                Row(
                    ISSUE,
                    b,
                    fig,
                    "sqlite",
                    nkeys / dt,
                    "gets/s",
                    note=f"SELECT .. ORDER BY ts DESC LIMIT 1 on (key,ts) index; {note}; "
                    f"wrong: {bad}",
                )
            )

        # synarrow -----------------------------------------------------------
        with ctx.guard(ISSUE, b, fig, "synarrow", "gets/s", **tgt):
            with ctx.tmpdir("synarrow") as d:
                db = sa_open(os.path.join(d, "sa.db"), sync_on_write=False)
                try:
                    for i, k in enumerate(keys):
                        if h == 1:
                            db.append(k, float(data[i, 0]))
                        else:
                            db.append_batch(k, data[i])
                    g = db.get
                    bad = sum(g(k) != last[k] for k in sample)

                    def run(g=g):
                        for k in order:
                            g(k)

                    dt = best_time(run, 3, budget_s=4)
                    ro_rates, ro_bad = {}, 0
                    db.flush()  # buffered appends reach the log, where other handles read
                    for interval in (0.1, None):
                        # a read-only handle beside the open writer: with an interval its
                        # gets check for the writer's changes at most that often
                        ro = sa_open(
                            os.path.join(d, "sa.db"), readonly=True, refresh_interval=interval
                        )
                        try:
                            rg = ro.get
                            ro_bad += sum(rg(k) != last[k] for k in sample)

                            def run_ro(rg=rg):
                                for k in order:
                                    rg(k)

                            ro_rates[interval] = nkeys / best_time(run_ro, 3, budget_s=4)
                        finally:
                            _safe_close(ro)
                finally:
                    _safe_close(db)
            rates[("synarrow", h)] = nkeys / dt
            for interval, rate in ro_rates.items():
                ctx.add(
                    Row(
                        ISSUE,
                        b,
                        f"get latest, history {h}/key, read-only handle beside the writer",
                        f"synarrow refresh_interval={interval}",
                        rate,
                        "gets/s",
                        ref=None,
                        note=f"db.get on SynaDB(path, readonly=True) while the writer is open; "
                        f"refresh_interval={interval} "
                        f"({'checks for changes every 0.1 s' if interval else 'never follows'}); "
                        f"{rate / (nkeys / dt):.2f}x the writer's gets; {note}; wrong values "
                        f"in sample (both handles): {ro_bad}",
                        correct=ro_bad == 0,
                    )
                )
            ctx.add(
                Row(
                    ISSUE,
                    b,
                    fig,
                    "synarrow",
                    nkeys / dt,
                    "gets/s",
                    note=f"db.get; {note}; wrong values in sample: {bad}",
                    **tgt,
                )
            )

    fig = "get flatness: rate at history 100 / rate at 1"
    for sysname in ("synadb", "sqlite", "synarrow"):
        if (sysname, 1) in rates and (sysname, 100) in rates:
            kw = (
                dict(target=("min", 0.8), target_text="≈ 1 (flat)") if sysname == "synarrow" else {}
            )
            ctx.add(
                Row(
                    ISSUE,
                    b,
                    fig,
                    sysname,
                    rates[(sysname, 100)] / rates[(sysname, 1)],
                    "x",
                    ref=None,
                    note="1.0 = independent of history length",
                    **kw,
                )
            )
    return _rows_since(ctx, start)


# --------------------------------------------------------------------------
# durable appends and group commit
# --------------------------------------------------------------------------


def _threaded_rate(nthreads: int, per_thread: int, work, timeout_s: float = 180) -> float:
    """Start ``nthreads`` threads running ``work(tid, per_thread)`` together;
    return total ops/s over the wall time from release to the last join."""
    barrier = threading.Barrier(nthreads + 1)
    errors: list[BaseException] = []

    def run(tid: int) -> None:
        try:
            barrier.wait()
            work(tid, per_thread)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(nthreads)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = perf()
    deadline = t0 + timeout_s
    for t in threads:
        t.join(max(0.0, deadline - perf()))
    dt = perf() - t0
    if any(t.is_alive() for t in threads):
        raise TimeoutError(f"threads still running after {timeout_s:.0f}s")
    if errors:
        raise errors[0]
    return nthreads * per_thread / dt


def _durable_vs_disk(ctx: Ctx, pairs: list[tuple[str, float]]) -> None:
    """Durable single appends against this disk's own rate: a loop of
    ``os.pwrite(fd, 40-byte record, off) + os.fdatasync(fd)`` into a new file, the same
    count, the two measured alternately (best of each)."""
    b = "durable"
    fig = "durable append vs this disk's pwrite+fdatasync"
    ref = "pwrite+fdatasync"
    n = len(pairs)
    tgt = dict(target=("ratio", 0.9), target_text="≥ 0.9x pwrite+fdatasync")
    raw: list[float] = []
    sa: list[float] = []
    checks: list[bool] = []
    with ctx.guard(ISSUE, b, fig, "synarrow", "ops/s", ref=ref, **tgt):
        for _ in range(5):
            with ctx.tmpdir("raw") as d:
                raw.append(pwrite_fdatasync_seconds(d, n))
            with ctx.tmpdir("synarrow") as d:
                db = sa_open(os.path.join(d, "sa.db"), sync_on_write=True)
                try:
                    app = db.append
                    t0 = perf()
                    for k, v in pairs:
                        app(k, v)
                    sa.append(perf() - t0)
                    checks.append(db.get(pairs[-1][0]) == pairs[-1][1])
                finally:
                    _safe_close(db)
            if sum(raw) + sum(sa) > 12:
                break
        note = f"{n:,} ops, best of {len(raw)}, alternating"
        ctx.add(
            Row(
                ISSUE,
                b,
                fig,
                ref,
                n / min(raw),
                "ops/s",
                ref=None,
                note=f"os.pwrite(40 B) + os.fdatasync per op, new file: the disk's rate; {note}",
            )
        )
        ctx.add(
            Row(
                ISSUE,
                b,
                fig,
                "synarrow",
                n / min(sa),
                "ops/s",
                ref=ref,
                note=f"DbConfig(sync_on_write=True), appends only (open and close untimed); "
                f"{note}; last value ok: {all(checks)}",
                **tgt,
            )
        )


def bench_durable(ctx: Ctx) -> list[Row]:
    """Durable (fsync per write) single appends, and group commit with 4 and 16 threads."""
    start = len(ctx.rows)
    b = "durable"
    n = ctx.n(2000, 500)
    nkeys = 100
    keys = sensor_keys(nkeys)
    rng = np.random.default_rng(4)
    vals = (20.0 + rng.standard_normal(n)).tolist()
    pairs = [(keys[i % nkeys], vals[i]) for i in range(n)]
    nthr = 4
    per = ctx.n(500, 200)
    fig1 = "durable append, 1 thread (fsync each)"
    fig4 = f"durable append, {nthr} threads, total"
    figr = f"group commit: {nthr}-thread total / 1-thread"
    note1 = f"{n:,} appends / {nkeys} keys of 11 B, incl. close()"
    note4 = f"{nthr} threads x {per} appends on one shared handle"
    single: dict[str, float] = {}

    # the disk's own limit, for context
    with ctx.guard(ISSUE, b, fig1, "raw write+fsync", "ops/s"):
        with ctx.tmpdir("raw") as d:
            fd = os.open(os.path.join(d, "f"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            try:
                rec = b"x" * 38
                t0 = perf()
                for _ in range(n):
                    os.write(fd, rec)
                    os.fsync(fd)
                dt = perf() - t0
            finally:
                os.close(fd)
        ctx.add(
            Row(
                ISSUE,
                b,
                fig1,
                "raw write+fsync",
                n / dt,
                "ops/s",
                note="os.write(38 B) + os.fsync per op: the disk's limit (context)",
            )
        )

    # synadb ------------------------------------------------------------------
    with ctx.guard(ISSUE, b, fig1, "synadb", "ops/s"):
        with ctx.tmpdir("synadb") as d:
            db = synadb_open(os.path.join(d, "s.db"), sync_on_write=True)
            put = db.put_float
            t0 = perf()
            for k, v in pairs:
                put(k, v)
            db.close()
            dt = perf() - t0
        single["synadb"] = n / dt
        ctx.add(Row(ISSUE, b, fig1, "synadb", n / dt, "ops/s", note="sync_on_write=True; " + note1))
    with ctx.guard(ISSUE, b, fig4, "synadb", "ops/s"):
        with ctx.tmpdir("synadb") as d:
            db = synadb_open(os.path.join(d, "s.db"), sync_on_write=True)
            try:

                def w(tid, cnt):
                    put = db.put_float
                    for i in range(cnt):
                        put(f"t{tid}/sensor/{i % 25:02d}", float(i))

                rate = _threaded_rate(nthr, per, w)
            finally:
                db.close()
        ctx.add(Row(ISSUE, b, fig4, "synadb", rate, "ops/s", note=note4))
        if "synadb" in single:
            ctx.add(
                Row(
                    ISSUE,
                    b,
                    figr,
                    "synadb",
                    rate / single["synadb"],
                    "x",
                    ref=None,
                    note="no group commit in synadb",
                )
            )

    # sqlite ------------------------------------------------------------------
    with ctx.guard(ISSUE, b, fig1, "sqlite", "ops/s"):
        with ctx.tmpdir("sqlite") as d:
            con = sqlite_open(os.path.join(d, "s.sqlite"), durable=True)
            ex = con.execute
            q = "INSERT INTO h VALUES (?,?,?)"
            t0 = perf()
            for k, v in pairs:
                ex(q, (k, time.time_ns() // 1000, v))
            con.close()
            dt = perf() - t0
        single["sqlite"] = n / dt
        ctx.add(
            Row(
                ISSUE,
                b,
                fig1,
                "sqlite",
                n / dt,
                "ops/s",
                note="autocommit INSERT, WAL, synchronous=FULL; " + note1,
            )
        )
    with ctx.guard(ISSUE, b, fig4, "sqlite", "ops/s"):
        with ctx.tmpdir("sqlite") as d:
            p = os.path.join(d, "s.sqlite")
            sqlite_open(p, durable=True).close()
            cons = [sqlite_open(p, durable=True, check_same_thread=False) for _ in range(nthr)]
            try:

                def w(tid, cnt):
                    ex = cons[tid].execute
                    q = "INSERT INTO h VALUES (?,?,?)"
                    for i in range(cnt):
                        ex(q, (f"t{tid}/sensor/{i % 25:02d}", time.time_ns() // 1000, float(i)))

                rate = _threaded_rate(nthr, per, w)
            finally:
                for c in cons:
                    c.close()
        ctx.add(
            Row(
                ISSUE,
                b,
                fig4,
                "sqlite",
                rate,
                "ops/s",
                note=f"{nthr} threads x {per}, one connection each, WAL, FULL",
            )
        )
        if "sqlite" in single:
            ctx.add(
                Row(
                    ISSUE,
                    b,
                    figr,
                    "sqlite",
                    rate / single["sqlite"],
                    "x",
                    ref=None,
                    note="WAL commits serialize on the write lock",
                )
            )

    # synarrow ----------------------------------------------------------------
    tgt1 = dict(target=("ratio", 1.0), target_text="≥ synadb durable")
    with ctx.guard(ISSUE, b, fig1, "synarrow", "ops/s", **tgt1):
        with ctx.tmpdir("synarrow") as d:
            db = sa_open(os.path.join(d, "sa.db"), sync_on_write=True)
            try:
                app = db.append
                t0 = perf()
                for k, v in pairs:
                    app(k, v)
                db.close()
                dt = perf() - t0
            finally:
                _safe_close(db)
        single["synarrow"] = n / dt
        ctx.add(
            Row(
                ISSUE,
                b,
                fig1,
                "synarrow",
                n / dt,
                "ops/s",
                note="DbConfig(sync_on_write=True); " + note1,
                **tgt1,
            )
        )
    _durable_vs_disk(ctx, pairs)
    for nt, pt in ((nthr, per), (16, ctx.n(250, 100))):
        figt = fig4 if nt == nthr else f"durable append, {nt} threads, total"
        with ctx.guard(ISSUE, b, figt, "synarrow", "ops/s"):
            with ctx.tmpdir("synarrow") as d:
                db = sa_open(os.path.join(d, "sa.db"), sync_on_write=True)
                try:

                    def w(tid, cnt, db=db):
                        app = db.append
                        for i in range(cnt):
                            app(f"t{tid}/sensor/{i % 25:02d}", float(i))

                    rate = _threaded_rate(nt, pt, w)
                    ok = all(
                        db.get(f"t{t}/sensor/{(pt - 1) % 25:02d}") == float(pt - 1)
                        for t in range(nt)
                    )
                finally:
                    _safe_close(db)
            ctx.add(
                Row(
                    ISSUE,
                    b,
                    figt,
                    "synarrow",
                    rate,
                    "ops/s",
                    note=f"{nt} threads x {pt} appends on one shared SynaDB; last values ok: {ok}",
                )
            )
            if "synarrow" in single:
                figx = figr if nt == nthr else f"group commit: {nt}-thread total / 1-thread"
                kw = dict(target=("min", 5.0), target_text="≥ 5x") if nt == nthr else {}
                ctx.add(
                    Row(
                        ISSUE,
                        b,
                        figx,
                        "synarrow",
                        rate / single["synarrow"],
                        "x",
                        ref=None,
                        note="total ops/s over 1-thread fsync-per-write ops/s",
                        **kw,
                    )
                )
    return _rows_since(ctx, start)


# --------------------------------------------------------------------------
# reopen
# --------------------------------------------------------------------------


def bench_reopen(ctx: Ctx) -> list[Row]:
    """Reopen of 1M entries over 10k keys: SynaDB(path) + len(db); log bytes per entry."""
    start = len(ctx.rows)
    b = "reopen"
    nkeys = ctx.n(10_000, 2_000)
    per_key = 100
    total = nkeys * per_key
    keys = sensor_keys(nkeys, width=5)
    rng = np.random.default_rng(5)
    data = rng.standard_normal((nkeys, per_key))
    label = f"{total / 1e6:g}M entries / {nkeys // 1000}k keys"
    fig = f"reopen {label} (batch-written)"
    figs = f"reopen {label} (single appends)"
    bfig = "bytes on disk per float entry (log, batches of 100)"
    tgt = dict(target=("max", 1.0), target_text="< 1 s")

    # synadb ------------------------------------------------------------------
    with ctx.guard(ISSUE, b, fig, "synadb", "s", higher_better=False):
        with ctx.tmpdir("synadb") as d:
            p = os.path.join(d, "s.db")
            db = synadb_open(p, sync_on_write=False)
            for i, k in enumerate(keys):
                db.put_floats_batch(k, data[i])
            db.close()
            size = disk_bytes(p)
            nk = []

            def reopen():
                db2 = synadb_open(p, sync_on_write=False)
                nk.append(len(db2.keys()))
                holder.append(db2)

            holder: list = []

            def close_all():
                while holder:
                    holder.pop().close()

            dt = best_time(reopen, 3, budget_s=6, setup=close_all)
            close_all()
        ctx.add(
            Row(
                ISSUE,
                b,
                fig,
                "synadb",
                dt,
                "s",
                False,
                note=f"SynaDB(path) + len(keys()) = {nk[-1]:,}; best of {len(nk)}; page cache warm; "
                f"same log entries as put_float",
            )
        )
        ctx.add(
            Row(
                ISSUE,
                b,
                bfig,
                "synadb",
                size / total,
                "B/entry",
                False,
                note="put_floats_batch writes one entry per value; 12 B keys",
            )
        )

    # synarrow, batch-written ---------------------------------------------------
    with ctx.guard(ISSUE, b, fig, "synarrow", "s", higher_better=False, **tgt):
        with ctx.tmpdir("synarrow") as d:
            p = os.path.join(d, "sa.db")
            db = sa_open(p, sync_on_write=False)
            try:
                for i, k in enumerate(keys):
                    db.append_batch(k, data[i])
            finally:
                _safe_close(db)
            size = disk_bytes(p)
            dt, n_len, nrep = _time_sa_reopen(p)
        ctx.add(
            Row(
                ISSUE,
                b,
                fig,
                "synarrow",
                dt,
                "s",
                False,
                note=f"SynaDB(path) + len(db) = {n_len:,}; best of {nrep}; page cache warm",
                **tgt,
            )
        )
        ctx.add(
            Row(
                ISSUE,
                b,
                bfig,
                "synarrow",
                size / total,
                "B/entry",
                False,
                note="append_batch of 100 per key; all files in the db dir",
            )
        )

    # synarrow, single appends (time-boxed) --------------------------------------
    with ctx.guard(ISSUE, b, figs, "synarrow", "s", higher_better=False, **tgt):
        budget = ctx.n(60.0, 15.0)
        with ctx.tmpdir("synarrow") as d:
            p = os.path.join(d, "sa.db")
            db = sa_open(p, sync_on_write=False)
            written = 0
            try:
                app = db.append
                t0 = perf()
                for j in range(per_key):
                    col = data[:, j].tolist()
                    for i, k in enumerate(keys):
                        app(k, col[i])
                    written += nkeys
                    if perf() - t0 > budget:
                        break
            finally:
                _safe_close(db)
            dt, n_len, nrep = _time_sa_reopen(p)
            first_s, best_s, nfresh = _fresh_reopen_s(p, keys[0])
        cut = "" if written == total else f" (time-boxed: only {written:,} of {total:,} written)"
        ctx.add(
            Row(
                ISSUE,
                b,
                figs,
                "synarrow",
                dt,
                "s",
                False,
                note=f"{written:,} single appends; len(db) = {n_len:,}; best of {nrep}{cut}",
                **tgt,
            )
        )
        ctx.add(
            Row(
                20,
                b,
                f"reopen {label} to first get, log only, fresh process",
                "synarrow",
                best_s,
                "s",
                False,
                note=f"single appends, no compaction; SynaDB(path) + get in a new interpreter "
                f"(imports before the timer); best of {nfresh} processes, first {first_s:.3f} s; "
                f"page cache warm{cut}",
                ref=None,
                target=("max", 0.3),
                target_text="< 300 ms",
            )
        )
    return _rows_since(ctx, start)


_FRESH_CHILD = """
import sys, time
import synarrow
t0 = time.perf_counter()
db = synarrow.SynaDB(sys.argv[1])
value = db.get(sys.argv[2])
print(time.perf_counter() - t0, value is not None)
db.close()
"""


def _fresh_reopen_s(p: str, key: str, runs: int = 5) -> tuple[float, float, int]:
    """Open and first ``get`` of ``key`` in new interpreters (imports before the timer):
    the first process's time, the best one, and the number of processes."""
    times = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", _FRESH_CHILD, p, key],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        if out[1] != "True":
            raise AssertionError(f"fresh reopen read no value for {key!r}")
        times.append(float(out[0]))
    return times[0], min(times), runs


def _time_sa_reopen(p: str) -> tuple[float, int, int]:
    holder: list = []
    lens: list[int] = []

    def reopen():
        db2 = sa_open(p)
        lens.append(len(db2))
        holder.append(db2)

    def close_all():
        while holder:
            _safe_close(holder.pop())

    try:
        dt = best_time(reopen, 3, budget_s=6, setup=close_all)
    finally:
        close_all()
    return dt, lens[-1], len(lens)


BENCHMARKS = {
    "append": bench_append,
    "append_types": bench_append_types,
    "append_batch": bench_append_batch,
    "get": bench_get,
    "durable": bench_durable,
    "reopen": bench_reopen,
}
