"""Crash tests: a writer process is killed with SIGKILL at random moments.

Every write the child acknowledged (printed after ``append`` returned with
``sync_on_write=True``) must be there after reopening, in order, with no value that was not
written; the database must open every time. Compaction is killed too.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

import synarrow
from tests._support import run_and_kill

WRITER = textwrap.dedent(
    """
    import sys, numpy as np, synarrow
    path, start, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    cfg = synarrow.DbConfig(sync_on_write=True, auto_compact=(mode == "auto"),
                            compact_threshold_bytes=4096, max_log_file_size=64 * 1024)
    db = synarrow.SynaDB(path, cfg)
    i = start
    while True:
        if mode == "batch":
            db.append_batch(f"b{i % 5}", np.arange(i * 100, i * 100 + 100, dtype=np.float64))
            if i % 4 == 3:
                db.compact()
        else:
            db.append(f"k{i % 7}", float(i))
            if i % 50 == 0:
                db.append(f"t{i % 3}", "x" * (i % 2000))
        print(i, flush=True)
        i += 1
    """
)


def _run_and_kill(path: Path, start: int, mode: str, seconds: float) -> list[int]:
    return run_and_kill(WRITER, [str(path), str(start), mode], seconds)


def _check_singles(path: Path, acked_all: set[int], written_max: int) -> None:
    with synarrow.SynaDB(path, synarrow.DbConfig(sync_on_write=False, auto_compact=False)) as db:
        seen: set[int] = set()
        for k in db.keys("k*"):
            values = db.get_history_floats(k)
            assert np.all(np.diff(values) > 0), f"history of {k} out of order"
            for v in values.astype(int).tolist():
                assert v % 7 == int(k[1:]) and v <= written_max
                seen.add(v)
        assert acked_all <= seen, f"lost acknowledged writes: {sorted(acked_all - seen)[:10]}"


def test_kill_during_single_appends(tmp_path: Path) -> None:
    path = tmp_path / "db"
    rng = np.random.default_rng(5)
    acked_all: set[int] = set()
    start = 0
    for _ in range(6):
        acked = _run_and_kill(path, start, "single", float(rng.uniform(0.05, 0.4)))
        acked_all |= set(acked)
        start = max(acked) + 2  # the unacknowledged one after max(acked) may or may not exist
        _check_singles(path, acked_all, start)


def test_kill_during_auto_compaction_and_rotation(tmp_path: Path) -> None:
    path = tmp_path / "db"
    rng = np.random.default_rng(6)
    acked_all: set[int] = set()
    start = 0
    for _ in range(6):
        acked = _run_and_kill(path, start, "auto", float(rng.uniform(0.1, 0.6)))
        acked_all |= set(acked)
        start = max(acked) + 2
        _check_singles(path, acked_all, start)
    with synarrow.SynaDB(path) as db:
        assert db.stats()["columnar_files"] > 0  # compactions did run


def test_kill_during_explicit_compaction(tmp_path: Path) -> None:
    path = tmp_path / "db"
    rng = np.random.default_rng(8)
    acked_all: set[int] = set()
    start = 0
    for _ in range(6):
        acked = _run_and_kill(path, start, "batch", float(rng.uniform(0.05, 0.5)))
        acked_all |= set(acked)
        start = max(acked) + 2
        with synarrow.SynaDB(path, synarrow.DbConfig(auto_compact=False)) as db:
            seen = set()
            for k in db.keys():
                values = db.get_history_floats(k)
                assert np.all(np.diff(values) > 0)
                batches = values.astype(int) // 100
                seen |= set(batches.tolist())
                # Batches are atomic: a batch is there in full or not at all.
                _, counts = np.unique(batches, return_counts=True)
                assert set(counts.tolist()) == {100}
            assert acked_all <= seen
            leftovers = [f.name for f in (path / "columnar").iterdir() if f.suffix == ".tmp"]
            assert not leftovers
