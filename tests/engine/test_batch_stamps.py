"""Default timestamps of large batches, made on the encoder pool while the entries are
written (batches.prefetch_timestamps): the same values as made inline, across entries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import synarrow
from synarrow.engine import batches

CFG = synarrow.DbConfig(sync_on_write=False, auto_compact=False, compression=None)


def _ts(db: synarrow.SynaDB, key: str) -> np.ndarray:
    return db.get_history(key).column("ts").cast("int64").to_numpy()


@pytest.mark.parametrize("prefetch", [True, False])
def test_prefetched_timestamps_are_the_sequence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefetch: bool
) -> None:
    monkeypatch.setattr(batches, "PREFETCH_STAMPS", 1000 if prefetch else 1 << 62)
    monkeypatch.setattr(batches, "entry_bytes", lambda _size: 8 * 3000)  # several entries per batch
    monkeypatch.setattr(batches, "MAP_BATCH_BYTES", 1024)  # viewed in the segment
    values = np.arange(10_000, dtype=np.float64)
    path = tmp_path / "db"
    with synarrow.SynaDB(path, CFG) as db:
        db.append("x", -1.0)
        db.append_batches(
            [("x", values, None), ("y", values[:5000] * 2, None), ("x", values, None)]
        )
        db.append("x", -2.0)
        ts = _ts(db, "x")
        assert len(ts) == 20_002 and bool(np.all(np.diff(ts) > 0))
        # the second item of key x continues the first one's sequence, 1 us apart
        assert bool(np.all(np.diff(ts[1:20_001]) == 1))
        assert db.get("x") == -2.0 and db.get("y") == 2 * 4999.0
        before = (ts, _ts(db, "y"))
    with synarrow.SynaDB(path, readonly=True) as db:  # replayed from the log
        assert np.array_equal(_ts(db, "x"), before[0])
        assert np.array_equal(_ts(db, "y"), before[1])
        assert np.array_equal(
            db.get_history("x").column("value").to_numpy()[1:-1], np.concatenate([values, values])
        )


def test_small_batches_are_not_prefetched() -> None:
    assert batches.prefetch_timestamps(5, batches.PREFETCH_STAMPS - 1) is None
    fut = batches.prefetch_timestamps(5, batches.PREFETCH_STAMPS)
    assert fut is not None
    got = fut.result()
    assert got[0] == 5 and len(got) == batches.PREFETCH_STAMPS and got[-1] == 5 + len(got) - 1
