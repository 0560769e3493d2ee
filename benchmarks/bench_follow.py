"""Issue 17 benchmarks: a read-only handle following the writer.

* ``follow``: a log-only database of 1M single float appends over 10k keys (200k with
  ``--quick``) with a reader open beside the writer. The writer appends 1,000 more entries
  (to 10 keys) and flushes; the reader's ``refresh()`` then replays only those (it continues
  the log where it stopped), against what a refresh cost before: rebuilding the key states
  from the whole log, as opening a new read-only handle does (the same work, measured
  that way). Both check what they read against the writer.
"""

from __future__ import annotations

import os
import time

import numpy as np

from .common import T0_US, Ctx, Row, sa_open, sensor_keys

ISSUE = 17
perf = time.perf_counter


def bench_follow(ctx: Ctx) -> list[Row]:
    """Refresh after a small append to a large log: continued, against a full rebuild."""
    start = len(ctx.rows)
    b = "follow"
    total = 200_000 if ctx.quick else 1_000_000
    nkeys = 10_000
    fig = f"reader refresh after 1,000 appends to a {total:,}-entry log"
    with ctx.guard(ISSUE, b, fig, "synarrow", "ms", ref=None), ctx.tmpdir("follow") as d:
        p = os.path.join(d, "follow.db")
        names = sensor_keys(nkeys, width=5)
        values = np.random.default_rng(17).normal(20.0, 1.0, total)
        writer = sa_open(p, sync_on_write=False, auto_compact=False)
        try:
            append = writer.append
            for i in range(total):
                append(names[i % nkeys], float(values[i]), timestamp=T0_US + i)
            writer.flush()
            reader = sa_open(p, readonly=True, refresh_interval=None)
            try:
                ts = T0_US + total
                continued: list[float] = []
                rebuilt: list[float] = []
                ok = True
                for repeat in range(5):
                    for j in range(1000):
                        append(names[j % 10], float(repeat * 1000 + j), timestamp=ts)
                        ts += 1
                    writer.flush()
                    t0 = perf()
                    changed = reader.refresh()
                    continued.append(perf() - t0)
                    ok = ok and changed and len(reader) == len(writer)
                    ok = ok and all(reader.get(k) == writer.get(k) for k in names[:20])
                    t0 = perf()
                    fresh = sa_open(p, readonly=True, refresh_interval=None)
                    rebuilt.append(perf() - t0)
                    try:
                        ok = ok and fresh.get(names[3]) == writer.get(names[3])
                    finally:
                        fresh.close()
                history_ok = bool(
                    np.array_equal(
                        reader.get_history_floats(names[3]), writer.get_history_floats(names[3])
                    )
                )
                ok = ok and history_ok
            finally:
                reader.close()
        finally:
            writer.close()
        best_c, best_r = min(continued), min(rebuilt)
        note = (
            f"{total:,} single float appends / {nkeys:,} keys, log only; the writer appends "
            f"1,000 entries to 10 keys and flushes, then one refresh(); best of 5; "
            f"values, len and a history equal to the writer's: {ok}"
        )
        ctx.add(
            Row(
                ISSUE,
                b,
                fig,
                "synarrow",
                best_c * 1e3,
                "ms",
                False,
                ref=None,
                note=f"refresh continues the log where it stopped; {note}; "
                f"{best_r / best_c:.0f}x faster than the rebuild",
                correct=ok,
            )
        )
        ctx.add(
            Row(
                ISSUE,
                b,
                fig,
                "synarrow, full rebuild",
                best_r * 1e3,
                "ms",
                False,
                ref=None,
                note="what a refresh cost before it continued the log: the key states rebuilt "
                "from the whole log, measured as opening a new read-only handle; " + note,
                correct=ok,
            )
        )
    return ctx.rows[start:]


BENCHMARKS = {"follow": bench_follow}
