"""Issue 15 benchmarks: snapshots exported as versions of a Delta Lake table.

* ``delta_export``: 10M points over 1k keys (200k / 100 with ``--quick``), compacted and
  tagged ``v1``, exported with ``db.export_dataset(uri, format="delta", snapshot="v1")`` (the
  first table version: every key); then, three times, 1% of the keys get one more point, a
  tag is taken and exported to the same table (the incremental next version: only those
  keys' partitions are removed and written; the best of the three is stated). Both times are stated, and their ratio, which must be
  about the changed fraction. Reference for the first version: ``deltalake.write_deltalake``
  of the same rows as one in-memory table with a key column (what a user would write by
  hand, without reading a database). First versions: best of 2. Each version is read back with ``polars.read_delta`` and
  counted, and the second commit's add / remove actions are counted in the Delta log. The
  fixed part of every commit (open the tag, diff it against the last, load the table log,
  commit) is measured with tags that change nothing, and the next version's cost beyond it
  is compared with the first version's.

Run alone: ``python -m benchmarks.bench_delta [--quick]``.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np

from .common import T0_US, Ctx, Row, no_gc, sa_open, sensor_keys, sensor_series

ISSUE = 15
perf = time.perf_counter


def _commit_actions(table: str, version: int) -> tuple[int, int]:
    """``(add, remove)`` actions of one commit of a Delta table."""
    with open(os.path.join(table, "_delta_log", f"{version:020d}.json"), encoding="utf-8") as f:
        actions = [json.loads(line) for line in f if line.strip()]
    return sum("add" in a for a in actions), sum("remove" in a for a in actions)


def _count(table: str, version: int) -> int:
    import polars as pl

    return pl.read_delta(table, version=version).height


def bench_delta_export(ctx: Ctx) -> list[Row]:
    """Delta export of a tag (first version), then of the next tag after 1% of keys changed."""
    import pyarrow as pa

    start = len(ctx.rows)
    b = "delta_export"
    n = ctx.n(10_000_000, 200_000)
    nkeys = ctx.n(1000, 100)
    per = n // nkeys
    changed = max(1, nkeys // 100)
    size = f"{n / 1e6:g}M points / {nkeys:,} keys"
    first_fig = f"Delta export, first version, {size}"
    next_fig = (
        f"Delta export, next version after {changed} key{'s' if changed > 1 else ''} "
        f"changed ({changed / nkeys:.0%})"
    )
    ratio_fig = "Delta export, next version / first version"
    fixed_fig = "Delta export, next version with nothing changed"
    net_fig = "Delta export, (next version - fixed part) / first version"
    ref = "deltalake write_deltalake"
    keys = sensor_keys(nkeys)
    ts = T0_US + np.arange(per, dtype=np.int64) * 1_000_000
    values = sensor_series(n)

    with ctx.tmpdir("delta") as d:
        with ctx.guard(ISSUE, b, first_fig, ref, "s", ref=None):
            import deltalake

            table = pa.table(
                {
                    "key": pa.array(np.repeat(np.array(keys, dtype=object), per), pa.string()),
                    "ts": pa.array(np.tile(ts, nkeys), pa.timestamp("us", tz="UTC")),
                    "value": values,
                }
            )
            out = os.path.join(d, "ref")
            refs = []
            for _ in range(2):
                shutil.rmtree(out, ignore_errors=True)
                with no_gc():
                    t0 = perf()
                    deltalake.write_deltalake(out, table, partition_by=["key"])
                    refs.append(perf() - t0)
            dt_ref = min(refs)
            del table
            rows = _count(out, 0)
            ctx.add(
                Row(
                    ISSUE,
                    b,
                    first_fig,
                    ref,
                    dt_ref,
                    "s",
                    higher_better=False,
                    ref=None,
                    note=f"best of 2; one in-memory table (key, ts, value), partition_by key; rows: "
                    f"{rows:,}; read back: {rows == n}",
                    correct=rows == n,
                )
            )

        db = sa_open(os.path.join(d, "sa.db"), sync_on_write=False, auto_compact=False)
        lake = os.path.join(d, "lake")
        first: float | None = None
        nxt: float | None = None
        try:
            with ctx.guard(ISSUE, b, first_fig, "synarrow", "s", higher_better=False, ref=ref):
                for i, key in enumerate(keys):
                    db.append_batch(key, values[i * per : (i + 1) * per], timestamps=ts)
                db.snapshot("v1")  # compacts first
                firsts = []
                for _ in range(2):
                    shutil.rmtree(lake, ignore_errors=True)
                    with no_gc():
                        t0 = perf()
                        res = db.export_dataset(lake, format="delta", snapshot="v1")
                        firsts.append(perf() - t0)
                first = min(firsts)
                rows = _count(lake, res.version)
                ok = rows == n and res.mode == "full" and res.version == 0
                ctx.add(
                    Row(
                        ISSUE,
                        b,
                        first_fig,
                        "synarrow",
                        first,
                        "s",
                        higher_better=False,
                        ref=ref,
                        note=(
                            f"best of 2; export_dataset(lake, format='delta', snapshot='v1') of a compacted "
                            f"tag; 8 columns (the reference's 3); {res.files} files; rows: "
                            f"{rows:,}; read back: {ok}; {n / first / 1e6:.3g}M points/s"
                        ),
                        correct=ok,
                    )
                )

            with ctx.guard(ISSUE, b, next_fig, "synarrow", "s", higher_better=False, ref=None):
                step = np.linspace(0, nkeys - 1, changed).astype(int)
                times, ok = [], True
                for r in range(3):  # three next versions, each with 1% of the keys changed
                    for i in step + r:
                        db.append(keys[i % nkeys], -1.0, timestamp=int(ts[-1]) + 1_000_000)
                    db.snapshot(f"v{r + 2}")
                    with no_gc():
                        t0 = perf()
                        res = db.export_dataset(lake, format="delta", snapshot=f"v{r + 2}")
                        times.append(perf() - t0)
                    adds, removes = _commit_actions(lake, res.version)
                    rows = _count(lake, res.version)
                    ok = ok and (
                        res.mode == "incremental"
                        and res.version == r + 1
                        and res.keys_written == changed
                        and adds == changed
                        and removes == changed
                        and rows == n + (r + 1) * changed
                    )
                ok = ok and _count(lake, 0) == n
                nxt = min(times)
                ctx.add(
                    Row(
                        ISSUE,
                        b,
                        next_fig,
                        "synarrow",
                        nxt,
                        "s",
                        higher_better=False,
                        ref=None,
                        note=(
                            f"best of 3 versions; each one commit: {adds} files added, "
                            f"{removes} removed ({res.rows:,} rows written); version 3 rows: "
                            f"{rows:,}; "
                            f"version 0 unchanged; ok: {ok}"
                        ),
                        correct=ok,
                    )
                )
            fixed: float | None = None
            with ctx.guard(ISSUE, b, fixed_fig, "synarrow", "s", higher_better=False, ref=None):
                times, modes = [], set()
                for i in range(3):  # tags that change nothing: what every commit costs
                    db.snapshot(f"same{i}")
                    t0 = perf()
                    res = db.export_dataset(lake, format="delta", snapshot=f"same{i}")
                    times.append(perf() - t0)
                    modes.add((res.mode, res.keys_written, res.files))
                fixed = min(times)
                ok = modes == {("incremental", 0, 0)}
                ctx.add(
                    Row(
                        ISSUE,
                        b,
                        fixed_fig,
                        "synarrow",
                        fixed,
                        "s",
                        higher_better=False,
                        ref=None,
                        note="best of 3 tags equal to the last one: open the tag, diff "
                        f"{nkeys:,} keys against the last, load the table, commit; ok: {ok}",
                        correct=ok,
                    )
                )
            if first and nxt is not None:
                ctx.add(
                    Row(
                        ISSUE,
                        b,
                        ratio_fig,
                        "synarrow",
                        nxt / first,
                        "x",
                        higher_better=False,
                        ref=None,
                        note=f"{changed / nkeys:.0%} of the keys changed; "
                        f"{nxt * 1e3:.0f} ms / {first * 1e3:.0f} ms",
                    )
                )
                if fixed is not None:
                    # What the changed keys cost beyond the commit's fixed part.
                    limit = 3 * changed / nkeys
                    ctx.add(
                        Row(
                            ISSUE,
                            b,
                            net_fig,
                            "synarrow",
                            max(nxt - fixed, 0.0) / first,
                            "x",
                            higher_better=False,
                            ref=None,
                            note=f"({nxt * 1e3:.0f} - {fixed * 1e3:.0f} ms fixed) / "
                            f"{first * 1e3:.0f} ms",
                            target=("max", limit),
                            target_text=f"about the changed fraction (<= {limit:.0%})",
                        )
                    )
        finally:
            db.close()
    return ctx.rows[start:]


BENCHMARKS = {
    "delta_export": bench_delta_export,
}


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", help="write rows as JSON lines to this file")
    a = ap.parse_args()
    ctx = Ctx(quick=a.quick, rows_file=a.json)
    for fn in BENCHMARKS.values():
        fn(ctx)
