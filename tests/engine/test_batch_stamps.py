"""Default timestamps of batches appended without any: kept as ``start`` and a count
(``TailChunk.sequence``) and made only when read, the same values as an explicit array,
across entries and after reopening."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import synarrow
from synarrow.engine import batches
from synarrow.engine import timeline as tl
from synarrow.log.format import Atom
from synarrow.log.memtable import TailChunk, latest_row

CFG = synarrow.DbConfig(sync_on_write=False, auto_compact=False, compression=None)


def _ts(db: synarrow.SynaDB, key: str) -> np.ndarray:
    return db.get_history(key).column("ts").cast("int64").to_numpy()


@pytest.mark.parametrize("mapped", [True, False])
def test_default_timestamps_are_the_sequence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mapped: bool
) -> None:
    monkeypatch.setattr(batches, "entry_bytes", lambda _size: 8 * 3000)  # several entries per batch
    # viewed in the segment, or copied
    monkeypatch.setattr(batches, "MAP_BATCH_BYTES", 1024 if mapped else 1 << 62)
    values = np.arange(10_000, dtype=np.float64)
    path = tmp_path / "db"
    with synarrow.SynaDB(path, CFG) as db:
        db.append("x", -1.0)
        db.append_batches(
            [("x", values, None), ("y", values[:5000] * 2, None), ("x", values, None)]
        )
        # read before the timestamps were ever made
        assert db.get("x") == 9999.0 and len(db.get_history_floats("x")) == 20_001
        db.append("x", -2.0)
        ts = _ts(db, "x")
        assert len(ts) == 20_002 and bool(np.all(np.diff(ts) > 0))
        # the second item of key x continues the first one's sequence, 1 us apart
        assert bool(np.all(np.diff(ts[1:20_001]) == 1))
        assert db.get("x") == -2.0 and db.get("y") == 2 * 4999.0
        middle = int(ts[5000])
        window = db.get_history_floats("x", start=middle, end=middle + 3)
        assert np.array_equal(window, values[4999:5002])
        assert db.get("x", at=middle) == values[4999]
        before = (ts, _ts(db, "y"))
    with synarrow.SynaDB(path, readonly=True) as db:  # replayed from the log
        assert np.array_equal(_ts(db, "x"), before[0])
        assert np.array_equal(_ts(db, "y"), before[1])
        assert np.array_equal(
            db.get_history("x").column("value").to_numpy()[1:-1], np.concatenate([values, values])
        )


def _pair(start: int, n: int) -> tuple[TailChunk, TailChunk]:
    """A sequence chunk and the same chunk with its timestamps given as an array."""
    nums = np.arange(n, dtype=np.float64)
    values = pa.array(nums)
    lazy = TailChunk.sequence(Atom.FLOAT, start, values, nums)
    plain = TailChunk(Atom.FLOAT, np.arange(start, start + n, dtype=np.int64), values, numbers=nums)
    return lazy, plain


def _rows(chunks: list[TailChunk]) -> list[tuple[int, float]]:
    return [(int(t), float(v)) for c in chunks for t, v in zip(c.ts, c.numbers)]  # type: ignore[arg-type]


bounds = st.one_of(st.none(), st.integers(-20, 80))


@settings(max_examples=300, deadline=None)
@given(
    start=st.integers(-10, 40),
    n=st.integers(0, 40),
    lo=st.integers(0, 40),
    hi=st.integers(0, 40),
    t0=bounds,
    t1=bounds,
    at=st.integers(-20, 80),
)
def test_a_sequence_chunk_reads_as_its_array(
    start: int, n: int, lo: int, hi: int, t0: int | None, t1: int | None, at: int
) -> None:
    lazy, plain = _pair(start, n)
    assert len(lazy) == len(plain) == n
    lo, hi = min(lo, n), min(max(lo, hi), n)
    assert _rows([lazy.rows(lo, hi)]) == _rows([plain.rows(lo, hi)])
    if n:
        assert (lazy.first_ts(), lazy.last_ts()) == (plain.first_ts(), plain.last_ts())
        assert latest_row(lazy) == latest_row(plain)
        assert latest_row(lazy, True) == latest_row(plain, True)
    assert _rows(tl.time_slice([lazy], t0, t1)) == _rows(tl.time_slice([plain], t0, t1))
    found = tl.locate_at([lazy], at)
    expected = tl.locate_at([plain], at)
    assert (found is None) == (expected is None)
    if found is not None and expected is not None:
        assert found[1] == expected[1]
    other = TailChunk(Atom.FLOAT, np.array([start + n - 1], dtype=np.int64), pa.array([0.0]))
    assert tl.has_duplicates([lazy, other]) == tl.has_duplicates([plain, other])
    assert tl.follows([lazy, other]) == tl.follows([plain, other])
    assert np.array_equal(lazy.ts, plain.ts)  # made on first use, then the same array
