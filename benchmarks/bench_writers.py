"""Issue 17 benchmarks: several writer processes on one database (``writers="many"``).

* ``writers``: aggregate appends/s of 1, 2, 4 and 8 processes writing single floats into one
  database at once (each its own 8 keys), durable (``sync_on_write=True``, one fdatasync per
  append, shared between processes when they overlap) against one process doing
  ``pwrite + fdatasync`` per write into a plain file; and buffered (``sync_on_write=False``,
  the aggregate of 4 processes against 1). Every run checks afterwards, in a fresh reader,
  that every value of every process is there exactly once.
* ``writers_experiment``: ``log_metric`` from 8 processes at once (one run each, 20k values,
  5k with ``--quick``) into one experiment store, against the same 8 processes each logging
  into a store of its own; checked by reading every run's metric back.
* ``writers_history``: the history of one key that 4 buffered processes wrote 250k entries
  each into (1M, 200k with ``--quick``; their flushes interleave, so the log holds it out
  of timestamp order), read before and after a compaction.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import numpy as np

from .common import Ctx, Row, pwrite_fdatasync_seconds, sa_open

ISSUE = 17
perf = time.perf_counter

_WORKER = textwrap.dedent(
    """
    import sys, time
    from synarrow import DbConfig, SynaDB
    path, name, count, durable, go, shared_key = sys.argv[1:7]
    count = int(count)
    db = SynaDB(path, config=DbConfig(writers="many", sync_on_write=durable == "1",
                                      auto_compact=False))
    append = db.append
    keys = [shared_key] * 8 if shared_key else [f"{name}/{i}" for i in range(8)]
    base = int(name[1:]) * 10_000_000
    while not __import__("os").path.exists(go):
        time.sleep(0.001)
    t0 = time.time()
    for i in range(count):
        append(keys[i % 8], float(base + i))
    db.flush()
    t1 = time.time()
    db.close()
    print(t0, t1)
    """
)


def _run_writers(path: str, procs: int, count: int, durable: bool, shared_key: str = "") -> float:
    """Start ``procs`` writer processes, let them go at once; the aggregate rate."""
    go = path + ".go"
    sa_open(path, writers="many", auto_compact=False).close()
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                _WORKER,
                path,
                f"w{w}",
                str(count),
                "1" if durable else "0",
                go,
                shared_key,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for w in range(procs)
    ]
    time.sleep(0.5 + 0.1 * procs)  # every process opened and waits
    with open(go, "w"):
        pass
    spans = []
    for p in workers:
        out, err = p.communicate(timeout=600)
        if p.returncode != 0:
            raise RuntimeError(err.decode()[-500:])
        t0, t1 = map(float, out.split())
        spans.append((t0, t1))
    os.unlink(go)
    return procs * count / (max(t1 for _, t1 in spans) - min(t0 for t0, _ in spans))


def _all_there(path: str, procs: int, count: int) -> bool:
    db = sa_open(path, readonly=True)
    try:
        for w in range(procs):
            got = np.concatenate([db.get_history_floats(f"w{w}/{i}") for i in range(8)])
            want = np.arange(count, dtype=np.float64) + w * 10_000_000
            if not np.array_equal(np.sort(got), want):
                return False
        return True
    finally:
        db.close()


def _disk_rate(ctx: Ctx, n: int) -> float:
    with ctx.tmpdir("raw") as d:
        return n / pwrite_fdatasync_seconds(d, n)


def bench_writers(ctx: Ctx) -> list[Row]:
    """Aggregate appends/s of several writer processes on one database."""
    start = len(ctx.rows)
    b = "writers"
    cores = os.cpu_count() or 1
    durable_n = 500 if ctx.quick else 1500
    fig_d = "durable appends/s, aggregate of N writer processes"
    ref_d = "pwrite+fdatasync, 1 process"
    with ctx.guard(ISSUE, b, fig_d, "synarrow", "ops/s", ref=ref_d):
        disk = _disk_rate(ctx, durable_n)
        ctx.add(
            Row(
                ISSUE,
                b,
                fig_d,
                ref_d,
                disk,
                "ops/s",
                ref=None,
                note=f"os.pwrite(40 B) + os.fdatasync per op into a new file, {durable_n:,} ops",
            )
        )
        for procs in (1, 2, 4, 8):
            with ctx.tmpdir("writers") as d:
                p = os.path.join(d, "db")
                rate = _run_writers(p, procs, durable_n, durable=True)
                ok = _all_there(p, procs, durable_n)
            ctx.add(
                Row(
                    ISSUE,
                    b,
                    fig_d,
                    f"synarrow, {procs} process{'es' if procs > 1 else ''}",
                    rate,
                    "ops/s",
                    ref=ref_d,
                    note=f"{procs} x {durable_n:,} durable single float appends (8 keys each) "
                    f"into one database, writers='many'; every value there once: {ok}",
                    correct=ok,
                )
            )
    buffered_n = 50_000 if ctx.quick else 200_000
    fig_b = "buffered appends/s, aggregate of N writer processes"
    with ctx.guard(ISSUE, b, fig_b, "synarrow", "ops/s", ref="synarrow, 1 process"):
        for procs in (1, 4):
            with ctx.tmpdir("writers") as d:
                p = os.path.join(d, "db")
                rate = _run_writers(p, procs, buffered_n, durable=False)
                ok = _all_there(p, procs, buffered_n)
            ctx.add(
                Row(
                    ISSUE,
                    b,
                    fig_b,
                    f"synarrow, {procs} process{'es' if procs > 1 else ''}",
                    rate,
                    "ops/s",
                    ref=None if procs == 1 else "synarrow, 1 process",
                    note=f"{procs} x {buffered_n:,} buffered single float appends (8 keys each), "
                    f"writers='many', flushed at the end; measured on {cores} cores "
                    f"(the issue's 3x is for 4 cores); every value there once: {ok}",
                    correct=ok,
                    **(
                        dict(target=("ratio", 3.0), target_text="≥ 3x one process on 4 cores")
                        if procs == 4
                        else {}
                    ),
                )
            )
    return ctx.rows[start:]


_LOGGER = textwrap.dedent(
    """
    import os, sys, time
    import synarrow
    store, name, count, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    exp = synarrow.Experiment("bench", store)
    run = exp.start_run(name)
    while not os.path.exists(go):
        time.sleep(0.001)
    t0 = time.time()
    for step in range(count):
        run.log_metric("loss", 1.0 / (step + 1), step=step)
    run.end()
    exp.close()
    print(t0, time.time(), run.id)
    """
)


def _run_loggers(stores: list[str], count: int, go: str) -> tuple[float, list[tuple[str, str]]]:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _LOGGER, store, f"p{i}", str(count), go],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i, store in enumerate(stores)
    ]
    time.sleep(1.0 + 0.2 * len(procs))
    with open(go, "w"):
        pass
    spans, runs = [], []
    for store, p in zip(stores, procs):
        out, err = p.communicate(timeout=600)
        if p.returncode != 0:
            raise RuntimeError(err.decode()[-500:])
        t0, t1, run_id = out.split()
        spans.append((float(t0), float(t1)))
        runs.append((store, run_id.decode()))
    os.unlink(go)
    rate = len(stores) * count / (max(t1 for _, t1 in spans) - min(t0 for t0, _ in spans))
    return rate, runs


def bench_writers_experiment(ctx: Ctx) -> list[Row]:
    """log_metric from 8 processes into one experiment, against 8 separate stores."""
    import synarrow

    start = len(ctx.rows)
    b = "writers_experiment"
    count = 5_000 if ctx.quick else 20_000
    fig = "log_metric/s, aggregate of 8 processes"
    ref = "synarrow, 8 separate stores"
    want = 1.0 / (np.arange(count) + 1)
    with ctx.guard(ISSUE, b, fig, "synarrow", "ops/s", ref=ref), ctx.tmpdir("exp") as d:
        results = {}
        for label, stores in (
            (ref, [os.path.join(d, f"own{i}.db") for i in range(8)]),
            ("synarrow, one store", [os.path.join(d, "shared.db")] * 8),
        ):
            rate, runs = _run_loggers(stores, count, os.path.join(d, "go"))
            ok = True
            for store, run_id in runs:
                with synarrow.Experiment("bench", store, readonly=True) as exp:
                    got = exp.get_metric_tensor(run_id, "loss")
                    ok = ok and bool(np.array_equal(got, want))
            results[label] = (rate, ok)
        for label, (rate, ok) in results.items():
            ctx.add(
                Row(
                    ISSUE,
                    b,
                    fig,
                    label,
                    rate,
                    "ops/s",
                    ref=None if label == ref else ref,
                    note=f"8 processes x {count:,} Run.log_metric (one run each, buffered, "
                    f"flushed by the experiment), measured on {os.cpu_count()} cores; every "
                    f"run's metric read back equal: {ok}",
                    correct=ok,
                )
            )
    return ctx.rows[start:]


def bench_writers_history(ctx: Ctx) -> list[Row]:
    """History of one key written by 4 processes, before and after compaction."""
    start = len(ctx.rows)
    b = "writers_history"
    per = 50_000 if ctx.quick else 250_000
    total = 4 * per
    fig = f"history of a {total:,}-entry key written by 4 processes"
    with ctx.guard(ISSUE, b, fig, "synarrow", "ms", ref=None), ctx.tmpdir("history") as d:
        p = os.path.join(d, "db")
        _run_writers(p, 4, per, durable=False, shared_key="shared")
        results = {}
        for stage in ("log", "compacted"):
            db = sa_open(p, writers="many", auto_compact=False)
            try:
                if stage == "compacted":
                    db.compact(full=True)
                times = []
                ok = True
                for _ in range(6):
                    t0 = perf()
                    h = db.get_history_floats("shared")
                    times.append(perf() - t0)
                    ok = ok and len(h) == total
                stamps = db.get_history("shared").column("ts").to_numpy().astype("int64")
                ok = ok and bool(np.all(np.diff(stamps) >= 0))
            finally:
                db.close()
            results[stage] = (times, ok)
        for stage, label in (("log", "in the log"), ("compacted", "after compaction")):
            times, ok = results[stage]
            for which, value in (("first read", times[0]), ("later reads", min(times[1:]))):
                ctx.add(
                    Row(
                        ISSUE,
                        b,
                        fig,
                        f"synarrow, {label}, {which}",
                        value * 1e3,
                        "ms",
                        False,
                        ref=None,
                        note=f"4 processes x {per:,} buffered appends to one key, "
                        "writers='many'; get_history_floats in a new writer handle (the first "
                        "read of the log orders the interleaved flushes and keeps that order; "
                        f"later: best of 5); {total:,} values sorted by timestamp: {ok}",
                        correct=ok,
                    )
                )
    return ctx.rows[start:]


BENCHMARKS = {
    "writers": bench_writers,
    "writers_experiment": bench_writers_experiment,
    "writers_history": bench_writers_history,
}
