"""Bad sizes cost bounded work: oversized segments, LZ4's input limit, huge buffers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import synarrow
from synarrow.errors import CorruptionError, InvalidValueError
from synarrow.log import codec
from synarrow.log.format import FLAG_LZ4, MAX_VALUE_BYTES, Atom

SMALL = synarrow.DbConfig(sync_on_write=False, auto_compact=False, max_log_file_size=64 * 1024)
SPARSE_SIZE = 3 << 30

# Opens the database and reports the peak resident memory of the process in MiB.
OPEN_AND_MEASURE = """
import resource, sys, synarrow
try:
    with synarrow.SynaDB(sys.argv[1], readonly=sys.argv[2] == "ro") as db:
        print("OPENED", db.get("k"), db.stats()["torn_bytes_cut_on_open"])
except synarrow.SynaError as exc:
    print(type(exc).__name__, exc)
# VmHWM is this program's own peak: ru_maxrss would carry over a forking parent's across exec.
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM:")]
kib = int(hwm[0].split()[1]) if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print("MAXRSS_MIB", kib // 1024)
"""


def run_open(path: Path, mode: str) -> tuple[str, int]:
    proc = subprocess.run(
        [sys.executable, "-c", OPEN_AND_MEASURE, str(path), mode],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    return lines[0], int(lines[-1].split()[1])


def sparse_db(path: Path) -> Path:
    with synarrow.SynaDB(path, SMALL) as db:
        for i in range(100):
            db.append("k", float(i))
    seg = path / "log" / "00000001.log"
    (path / "log" / "00000001.idx").unlink(missing_ok=True)
    with open(seg, "r+b") as f:
        f.truncate(SPARSE_SIZE)  # a 3 GiB hole after the real entries
    return seg


def test_sparse_oversized_segment_is_not_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    seg = sparse_db(path)
    # Read-only: nothing is cut, but only the verified prefix is read into memory.
    out, rss = run_open(path, "ro")
    assert out.startswith("OPENED 99.0"), out
    assert rss < 1024, f"peak memory {rss} MiB: the segment was read whole"
    assert seg.stat().st_size == SPARSE_SIZE
    # A writer cuts the zeros off as a torn tail, still without reading them.
    out, rss = run_open(path, "rw")
    assert out.startswith("OPENED 99.0"), out
    assert int(out.split()[2]) > SPARSE_SIZE - (1 << 20)
    assert rss < 1024
    assert seg.stat().st_size < 64 * 1024
    with synarrow.SynaDB(path, SMALL) as db:
        assert db.get_history("k").num_rows == 100


def test_oversized_segment_with_data_after_damage_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    seg = sparse_db(path)
    with open(seg, "r+b") as f:
        f.seek(SPARSE_SIZE - 64)
        f.write(b"\x01" * 64)  # something that is not zeros, far out in the file
    out, rss = run_open(path, "rw")
    assert out.startswith("CorruptionError"), out
    assert "far more than" in out and "00000001.log" in out
    assert rss < 1024
    assert seg.stat().st_size == SPARSE_SIZE  # refused, not truncated


def test_oversized_segments_written_by_the_database_still_open(tmp_path: Path) -> None:
    """A segment may legitimately pass max_log_file_size by its last entry: a large value,
    or a limit lowered after the segment was written. It is verified by streaming and read."""
    path = tmp_path / "big.db"
    big = b"\x07" * (80 << 20)
    with synarrow.SynaDB(path, SMALL.replace(compression=None)) as db:
        db.append("k", 1.0)
        db.append("blob", big)
        db.append("k", 2.0)
    with synarrow.SynaDB(path, SMALL) as db:
        assert db.get("blob") == big and db.get("k") == 2.0


def test_lz4_is_skipped_above_its_input_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    payload = b"abc" * 4000  # compresses very well
    stored, flags = codec.maybe_lz4(payload, 1024)
    assert flags == FLAG_LZ4 and len(stored) < len(payload)
    monkeypatch.setattr(codec, "LZ4_MAX_INPUT", len(payload) - 1)
    assert codec.maybe_lz4(payload, 1024) == (payload, 0)
    assert not codec.lz4_fits(len(payload), 1024)
    values = np.zeros(4000)
    parts, flags = codec.encode_batch(
        Atom.FLOAT, None, values, count=len(values), compress_threshold=1024
    )
    assert flags == 0 and sum(memoryview(p).nbytes for p in parts) > codec.LZ4_MAX_INPUT


def test_lz4_limit_through_the_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real append path with a patched limit: the value is stored raw and reads back."""
    monkeypatch.setattr(codec, "LZ4_MAX_INPUT", 100_000)
    value = b"z" * 200_000
    with synarrow.SynaDB(tmp_path / "l.db", SMALL) as db:
        db.append("v", value)
        db.append_batch("b", np.zeros(50_000))
    with synarrow.SynaDB(tmp_path / "l.db", readonly=True) as db:
        assert db.get("v") == value
        assert db.get_history("b").num_rows == 50_000
    log_bytes = sum(f.stat().st_size for f in (tmp_path / "l.db" / "log").glob("*.log"))
    assert log_bytes > 200_000 + 400_000  # both stored uncompressed


def test_huge_memoryview_is_refused_before_it_is_copied(tmp_path: Path) -> None:
    # np.zeros of 4 GiB is only reserved address space: a copy would touch it all.
    huge = np.zeros(MAX_VALUE_BYTES + 1, dtype=np.uint8)
    with pytest.raises(InvalidValueError, match="4 GiB"):
        codec.encode_single(memoryview(huge))
    with synarrow.SynaDB(tmp_path / "h.db", SMALL) as db:
        with pytest.raises(InvalidValueError, match="4 GiB"):
            db.append("k", memoryview(huge))
        assert not db.exists("k")


def test_crafted_lz4_size_is_not_allocated() -> None:
    with pytest.raises(ValueError, match="claims"):
        codec.unlz4(b"\xf0\xff\xff\xff" + b"\x00" * 32)
    assert codec.unlz4(codec.maybe_lz4(b"q" * 5000, 1)[0]) == b"q" * 5000


def test_corruption_error_names_the_limit_when_refusing(tmp_path: Path) -> None:
    """In-process check of the refusal path (no subprocess): the message says what to do."""
    path = tmp_path / "s.db"
    seg = sparse_db(path)
    with open(seg, "r+b") as f:
        f.seek(SPARSE_SIZE - 8)
        f.write(b"\x02" * 8)
    with pytest.raises(CorruptionError, match="repair=True"):
        synarrow.SynaDB(path, SMALL, readonly=True)
