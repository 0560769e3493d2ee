"""Crash tests for ``delete_range`` and retention: a writer killed with SIGKILL.

Every ``delete_range`` the child acknowledged (printed after it returned with
``sync_on_write=True``) must hold after reopening, every acknowledged write outside the
deleted ranges must be there, and no value that was never written may appear. Compactions
(explicit and automatic) run during the loops, so kills land in them too.
"""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import numpy as np

import synarrow
from tests._support import run_and_kill

DELETER = textwrap.dedent(
    """
    import sys, numpy as np, synarrow
    path, start = sys.argv[1], int(sys.argv[2])
    cfg = synarrow.DbConfig(sync_on_write=True, auto_compact=True,
                            compact_threshold_bytes=8192, max_log_file_size=64 * 1024)
    db = synarrow.SynaDB(path, cfg)
    i = start
    while True:
        ts = np.arange(i * 10, i * 10 + 10, dtype=np.int64)
        db.append_batch("k", ts.astype(np.float64), timestamps=ts)
        db.delete_range("k", i * 10 + 2, i * 10 + 5)
        if i % 5 == 4:
            db.compact()
        print(i, flush=True)
        i += 1
    """
)

EXPIRER = textwrap.dedent(
    """
    import sys, time, synarrow
    path, start = sys.argv[1], int(sys.argv[2])
    day = 86_400_000_000
    cfg = synarrow.DbConfig(sync_on_write=True, auto_compact=False)
    db = synarrow.SynaDB(path, cfg)
    db.set_retention("k*", "1d")
    i = start
    while True:
        now = time.time_ns() // 1000
        # an old point (expired at once) and a new one, in one batch
        db.append_batch(f"k{i % 3}", [-float(i), float(i)], timestamps=[now - 10 * day, now])
        db.compact()
        print(i, flush=True)
        i += 1
    """
)


def _run_and_kill(script: str, path: Path, start: int, seconds: float) -> list[int]:
    return run_and_kill(script, [str(path), str(start)], seconds)


def test_kill_during_delete_range_and_compaction(tmp_path: Path) -> None:
    path = tmp_path / "db"
    rng = np.random.default_rng(14)
    start = 0
    in_flight: list[int] = []  # blocks a kill may have cut, left as they were
    for _ in range(4):
        acked = _run_and_kill(DELETER, path, start, float(rng.uniform(0.05, 0.5)))
        last = acked[-1]
        with synarrow.SynaDB(path, synarrow.DbConfig(sync_on_write=False)) as db:
            ts = db.get_history("k").column("ts").cast("int64").to_numpy()
            values = db.get_history_floats("k")
        assert np.array_equal(ts.astype(np.float64), values), "a value that was never written"
        assert np.all(np.diff(ts) > 0)
        blocks = ts // 10
        for i in range(last + 1):  # acknowledged: the batch minus its range, exactly
            if i in in_flight:
                continue
            got = (ts[blocks == i] % 10).tolist()
            assert got == [0, 1, 5, 6, 7, 8, 9], (i, got)
        # the block in flight: absent, whole, or with its range deleted
        got = (ts[blocks == last + 1] % 10).tolist()
        assert got in ([], list(range(10)), [0, 1, 5, 6, 7, 8, 9]), got
        assert not (blocks > last + 1).any()
        for i in in_flight:
            assert (ts[blocks == i] % 10).tolist() in ([], list(range(10)), [0, 1, 5, 6, 7, 8, 9])
        in_flight.append(last + 1)
        start = last + 2  # the next child leaves the block in flight alone


def test_kill_during_compaction_with_retention(tmp_path: Path) -> None:
    path = tmp_path / "db"
    rng = np.random.default_rng(41)
    start = 0
    in_flight: list[int] = []  # points a kill may have cut, skipped by the next child
    for _ in range(4):
        acked = _run_and_kill(EXPIRER, path, start, float(rng.uniform(0.05, 0.6)))
        last = acked[-1]
        with synarrow.SynaDB(path, synarrow.DbConfig(sync_on_write=False)) as db:
            assert db.retention() == {"k*": dt.timedelta(days=1)}
            seen: list[float] = []
            for k in db.keys():
                values = db.get_history_floats(k)
                assert (values >= 0).all(), f"an expired point of {k} is visible"
                seen += values.tolist()
            seen_set = {int(v) for v in seen}
            acked_all = set(range(last + 1)) - set(in_flight)
            assert acked_all <= seen_set, "an acknowledged point was lost"
            assert seen_set <= set(range(last + 2)), "a value that was never written"
            assert len(seen) == len(seen_set)
        in_flight.append(last + 1)
        start = last + 2
