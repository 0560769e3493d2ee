"""How a batch is cut into log entries: one entry up to the segment size, read back as a view."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import synarrow
from synarrow.errors import CorruptionError
from synarrow.log.format import (
    FILE_HEADER_SIZE,
    MAX_BATCH_ENTRY_BYTES,
    MIN_BATCH_ENTRY_BYTES,
    max_batch_entry_bytes,
)
from synarrow.log.reader import oversize_limit, scan_segment

CFG = synarrow.DbConfig(sync_on_write=False, auto_compact=False)
# 24,000 x 784 float32: 75 MB, more than the 64 MiB an entry held before
ROWS, DIM = 24_000, 784


def _tensor() -> np.ndarray:
    return np.random.default_rng(3).random((ROWS, DIM), dtype=np.float32)


def _entries(path: Path) -> int:
    return sum(len(scan_segment(seg).offsets) for seg in sorted((path / "log").glob("*.log")))


def test_entry_limit_follows_the_segment_size() -> None:
    assert max_batch_entry_bytes(64 * 1024) == MIN_BATCH_ENTRY_BYTES == 64 << 20
    assert max_batch_entry_bytes(256 << 20) == 256 << 20
    assert max_batch_entry_bytes(8 << 30) == MAX_BATCH_ENTRY_BYTES == 1 << 30
    limit = 256 << 20
    assert oversize_limit(limit) == limit + max_batch_entry_bytes(limit) + (1 << 17)


def test_batch_up_to_the_segment_size_is_one_entry_and_a_view(tmp_path: Path) -> None:
    x = _tensor()
    assert x.nbytes > MIN_BATCH_ENTRY_BYTES
    path = tmp_path / "db"
    with synarrow.SynaDB(path, CFG) as db:
        engine = synarrow.TensorEngine(db)
        engine.put_tensor("t/", x)
        first = engine.get_tensor("t/*")
        second = engine.get_tensor("t/*")
        np.testing.assert_array_equal(first, x)
        # a view of the mapped segment, not a copy: two reads share the same memory
        assert not first.flags.writeable
        assert np.shares_memory(first, second)
        column = db.get_history("t/#tensor").column("value")
        assert column.num_chunks == 1
    # the tensor's data is one entry, then its meta (no tombstones: nothing was replaced)
    assert _entries(path) == 2
    with synarrow.SynaDB(path, CFG) as db:
        engine = synarrow.TensorEngine(db)
        again = engine.get_tensor("t/*")
        np.testing.assert_array_equal(again, x)
        assert np.shares_memory(again, engine.get_tensor("t/*"))
        db.compact()
        np.testing.assert_array_equal(engine.get_tensor("t/*"), x)


def test_batch_larger_than_an_entry_is_split_and_joined(tmp_path: Path) -> None:
    x = _tensor()
    path = tmp_path / "db"
    small = CFG.replace(max_log_file_size=64 * 1024)  # entries keep the 64 MiB floor
    with synarrow.SynaDB(path, small) as db:
        db.append_batch("v", x)
        history = db.get_history("v")
        assert history.column("value").num_chunks == 2
        got = np.asarray(history.column("value").combine_chunks().flatten()).reshape(ROWS, DIM)
        np.testing.assert_array_equal(got, x)
    assert _entries(path) == 2
    with synarrow.SynaDB(path, small) as db:
        assert db.get_history("v").num_rows == ROWS
        np.testing.assert_array_equal(db.get("v"), x[-1])


def test_segment_grown_past_its_limit_by_one_entry_opens(tmp_path: Path) -> None:
    """A segment one value short of its limit takes a whole large entry (it is not split to
    fit): the segment then passes the limit by that entry and still opens normally."""
    x = _tensor()
    path = tmp_path / "db"
    cfg = CFG.replace(max_log_file_size=100 << 20)
    with synarrow.SynaDB(path, cfg) as db:
        db.append_batch("a", x[: ROWS // 2])  # 37 MB: the segment stays open
        db.append_batch("b", x)  # 75 MB more, one entry
        db.append("c", 1.0)  # in the next segment
    sizes = sorted(seg.stat().st_size for seg in (path / "log").glob("*.log"))
    assert len(sizes) == 2 and sizes[-1] > 110e6
    assert sizes[-1] <= oversize_limit(cfg.max_log_file_size)
    with synarrow.SynaDB(path, cfg, readonly=True) as db:
        np.testing.assert_array_equal(db.get("b"), x[-1])
        assert db.get("c") == 1.0


def test_damaged_large_entry_is_corruption(tmp_path: Path) -> None:
    x = _tensor()
    path = tmp_path / "db"
    with synarrow.SynaDB(path, CFG) as db:
        db.append_batch("v", x)
        db.append("after", 1.0)  # valid data after the damage: not a torn tail
    seg = next((path / "log").glob("*.log"))
    for side in seg.parent.glob("*.idx"):
        side.unlink()
    with open(seg, "r+b") as f:
        f.seek(40 << 20)
        byte = f.read(1)
        f.seek(40 << 20)
        f.write(bytes([byte[0] ^ 0x10]))
    with pytest.raises(CorruptionError):
        synarrow.SynaDB(path, CFG, readonly=True)


def test_torn_large_entry_is_a_torn_tail(tmp_path: Path) -> None:
    """A crash in the middle of writing a large batch leaves megabytes of values that hold
    many plausible headers; the search past them stays about linear and finds none."""
    path = tmp_path / "db"
    with synarrow.SynaDB(path, CFG) as db:
        db.append("a", 1.0)
        db.append_batch("v", _tensor())
    seg = next((path / "log").glob("*.log"))
    os.truncate(seg, 40 << 20)
    with synarrow.SynaDB(path, CFG) as db:
        assert db.get("a") == 1.0
        assert db.get("v") is None
        db.append("b", 2.0)
    with synarrow.SynaDB(path, CFG, readonly=True) as db:
        assert (db.get("a"), db.get("b")) == (1.0, 2.0)


def test_damaged_lengths_of_a_large_entry_before_entries_is_corruption(tmp_path: Path) -> None:
    """With the damaged entry's lengths wrong, the entry after it is found by searching."""
    path = tmp_path / "db"
    with synarrow.SynaDB(path, CFG) as db:
        db.append_batch("v", _tensor())
        db.append("after", 1.0)
    seg = next((path / "log").glob("*.log"))
    for side in seg.parent.glob("*.idx"):
        side.unlink()
    with open(seg, "r+b") as f:
        f.seek(FILE_HEADER_SIZE + 16)  # the third byte of the value length
        byte = f.read(1)
        f.seek(FILE_HEADER_SIZE + 16)
        f.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(CorruptionError, match="followed by valid entries"):
        synarrow.SynaDB(path, CFG, readonly=True)
    with synarrow.SynaDB(path, CFG, readonly=True, repair=True) as db:
        assert db.get("after") == 1.0
