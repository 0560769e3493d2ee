"""After compaction numeric history is a read-only view of the memory-mapped Arrow file.

Compressed columnar files (``DbConfig(columnar_compression=...)``) trade that for size:
reads decompress into new memory, as documented.
"""

from __future__ import annotations

import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import synarrow

N = 1_000_000
NO_SYNC = synarrow.DbConfig(sync_on_write=False, auto_compact=False)
T0 = 1_700_000_000_000_000


def _file_mappings() -> list[tuple[int, int, str]]:
    """(start, end, path) of every file-backed mapping of this process (Linux)."""
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5].startswith("/"):
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                out.append((lo, hi, parts[5].strip()))
    return out


def mapped_file_of(arr: np.ndarray) -> str | None:
    """The file whose mapping holds ``arr``'s memory, or None if it lives elsewhere."""
    start = arr.__array_interface__["data"][0]
    end = start + arr.nbytes
    for lo, hi, path in _file_mappings():
        if lo <= start and end <= hi:
            return path
    return None


needs_proc = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def _fill(db: synarrow.SynaDB, n: int = N) -> np.ndarray:
    values = np.sin(np.arange(n) / 100.0)
    db.append_batch("x", values, timestamps=T0 + np.arange(n, dtype=np.int64) * 1_000_000)
    return values


@pytest.fixture
def compacted(db_path: Path) -> Iterator[tuple[synarrow.SynaDB, np.ndarray]]:
    with synarrow.SynaDB(db_path, NO_SYNC) as db:
        values = _fill(db)
        db.append_batch("v", np.arange(4000, dtype=np.float32).reshape(1000, 4))
        db.compact()
    with synarrow.SynaDB(db_path, NO_SYNC) as db:
        yield db, values


def test_history_is_one_chunk_after_compaction(
    compacted: tuple[synarrow.SynaDB, np.ndarray],
) -> None:
    db, _ = compacted
    table = db.get_history("x")
    assert table.column("value").num_chunks == 1
    assert table.column("ts").num_chunks == 1


def test_successive_float_reads_share_memory_and_are_read_only(
    compacted: tuple[synarrow.SynaDB, np.ndarray],
) -> None:
    db, values = compacted
    a = db.get_history_floats("x")
    b = db.get_history_floats("x")
    np.testing.assert_array_equal(a, values)
    assert np.shares_memory(a, b)
    assert not a.flags.writeable
    with pytest.raises(ValueError):
        a[0] = 1.0
    t = db.get_history_tensor("x")
    assert np.shares_memory(a, t) and not t.flags.writeable


@needs_proc
def test_float_view_points_into_the_mapped_columnar_file(
    compacted: tuple[synarrow.SynaDB, np.ndarray],
) -> None:
    db, _ = compacted
    arr = db.get_history_floats("x")
    path = mapped_file_of(arr)
    assert path is not None, "the history does not live in a file mapping"
    assert Path(path).parent == db.path.resolve() / "columnar"
    vec = db.get_history_tensor("v")
    assert vec.shape == (1000, 4)
    assert mapped_file_of(vec) is not None
    assert not vec.flags.writeable


def test_reading_a_million_floats_allocates_nothing_proportional(
    compacted: tuple[synarrow.SynaDB, np.ndarray],
) -> None:
    db, values = compacted
    db.get_history_floats("x")  # first use maps the record batch; measure the steady state too
    pool_before = pa.total_allocated_bytes()
    tracemalloc.start()
    try:
        arr = db.get_history_floats("x")
        tensor = db.get_history_tensor("x")
        table = db.get_history("x")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    pool_after = pa.total_allocated_bytes()
    assert peak < 256 * 1024, peak  # 1M floats would be 8 MB
    assert pool_after - pool_before < 256 * 1024
    assert arr[-1] == values[-1] and tensor[0] == values[0] and table.num_rows == N


def test_first_read_after_reopen_allocates_nothing_proportional(db_path: Path) -> None:
    with synarrow.SynaDB(db_path, NO_SYNC) as db:
        _fill(db)
        db.compact()
    with synarrow.SynaDB(db_path, NO_SYNC) as db:
        pool_before = pa.total_allocated_bytes()
        tracemalloc.start()
        try:
            arr = db.get_history_floats("x")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 1024 * 1024, peak
        assert pa.total_allocated_bytes() - pool_before < 1024 * 1024
        assert len(arr) == N


def test_compaction_without_reopen_gives_views_too(db: synarrow.SynaDB) -> None:
    values = _fill(db, 100_000)
    db.compact()
    a = db.get_history_floats("x")
    assert np.shares_memory(a, db.get_history_floats("x"))
    assert not a.flags.writeable
    np.testing.assert_array_equal(a, values)


def test_log_tail_reads_are_correct_and_writable_copies_do_not_leak_back(
    db: synarrow.SynaDB,
) -> None:
    values = _fill(db, 10_000)
    a = db.get_history_floats("x")
    np.testing.assert_array_equal(a, values)
    if a.flags.writeable:
        a[:] = -1  # a caller's scribbling must not reach the store
    np.testing.assert_array_equal(db.get_history_floats("x"), values)


def test_half_compacted_history_is_base_plus_tail(db: synarrow.SynaDB) -> None:
    values = _fill(db, 10_000)
    db.compact()
    db.append("x", 42.0)
    table = db.get_history("x")
    assert table.column("value").num_chunks == 2
    got = db.get_history_floats("x")
    np.testing.assert_array_equal(got, np.append(values, 42.0))
    db.compact()
    assert db.get_history("x").column("value").num_chunks == 1


# -- compressed columnar files ---------------------------------------------------------------


def _regular(db: synarrow.SynaDB, n: int) -> np.ndarray:
    values = (np.arange(n) % 10).astype(np.float64)
    db.append_batch("r", values, timestamps=T0 + np.arange(n, dtype=np.int64) * 1_000_000)
    return values


@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_compressed_columnar_files_are_smaller_and_read_correctly(
    tmp_path: Path, codec: str
) -> None:
    n = 200_000
    sizes = {}
    for name, compression in (("plain", None), (codec, codec)):
        cfg = NO_SYNC.replace(columnar_compression=compression)
        path = tmp_path / f"{name}.db"
        with synarrow.SynaDB(path, cfg) as db:
            values = _regular(db, n)
            db.compact()
            sizes[name] = db.stats()["columnar_bytes"]
        with synarrow.SynaDB(path, cfg) as db:
            got = db.get_history_floats("r")
            np.testing.assert_array_equal(got, values)
            ts = db.get_history("r").column("ts").cast(pa.int64()).to_numpy()
            np.testing.assert_array_equal(ts, T0 + np.arange(n) * 1_000_000)
            assert db.sql("SELECT sum(value) FROM history").column(0)[0].as_py() == values.sum()
    assert sizes["plain"] >= 16 * n  # timestamp + value, uncompressed
    assert sizes[codec] < sizes["plain"] / 2
    assert sizes[codec] / n <= 8  # bytes per entry on a regular series


@needs_proc
@pytest.mark.parametrize("codec", ["zstd", "lz4"])
def test_compressed_reads_decompress_into_memory(db_path: Path, codec: str) -> None:
    """The documented copy: history of a compressed file lives on the heap, not in the file."""
    cfg = NO_SYNC.replace(columnar_compression=codec)
    with synarrow.SynaDB(db_path, cfg) as db:
        values = _regular(db, N)
        db.compact()
    with synarrow.SynaDB(db_path, cfg) as db:
        before = pa.total_allocated_bytes()
        got = db.get_history_floats("r")
        assert pa.total_allocated_bytes() - before >= 8 * N
        assert mapped_file_of(got) is None
        np.testing.assert_array_equal(got, values)


def test_compression_setting_can_change_between_compactions(db_path: Path) -> None:
    with synarrow.SynaDB(db_path, NO_SYNC) as db:
        values = _regular(db, 10_000)
        db.compact()
    cfg = NO_SYNC.replace(columnar_compression="zstd")
    with synarrow.SynaDB(db_path, cfg) as db:
        db.append("r", 99.0)
        db.compact(full=True)
    with synarrow.SynaDB(db_path) as db:  # the stored config
        assert db.config.columnar_compression == "zstd"
        np.testing.assert_array_equal(db.get_history_floats("r"), np.append(values, 99.0))
