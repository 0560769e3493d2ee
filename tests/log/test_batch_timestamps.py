"""Batch timestamp modes in the log: TS_SEQUENCE (written for batches without timestamps)
and TS_UNIFORM (written by older versions, still read as one instant)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

import synarrow
from synarrow.log import codec
from synarrow.log.format import FILE_HEADER_SIZE, FLAG_BATCH, Atom, encode_entry, flags_byte

CFG = synarrow.DbConfig(sync_on_write=False, auto_compact=False, compression=None)
T0 = 1_700_000_000_000_000


def ts_of(db: synarrow.SynaDB, key: str) -> list[int]:
    return db.get_history(key).column("ts").cast(pa.int64()).to_pylist()


def test_untimed_batch_is_written_as_a_sequence(tmp_path: Path) -> None:
    with synarrow.SynaDB(tmp_path / "db", CFG) as db:
        db.append_batch("k", np.arange(5.0))
    data = (tmp_path / "db" / "log" / "00000001.log").read_bytes()
    assert len(data) > FILE_HEADER_SIZE
    with synarrow.SynaDB(tmp_path / "db", CFG) as db:
        ts = ts_of(db, "k")
        assert np.diff(ts).tolist() == [1, 1, 1, 1]


def test_old_uniform_batch_entry_reads_as_one_instant(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with synarrow.SynaDB(path, CFG) as db:
        db.append("k", -1.0, timestamp=T0 - 1)
    parts, flags = codec.encode_batch(
        Atom.FLOAT,
        None,
        np.array([1.0, 2.0, 3.0]),
        count=3,
        compress_threshold=None,
        untimed_mode=codec.TS_UNIFORM,
    )
    payload = b"".join(bytes(p) for p in parts)
    segment = path / "log" / "00000001.log"
    entry = encode_entry(T0, b"k", payload, flags_byte(flags | FLAG_BATCH, Atom.FLOAT))
    with open(segment, "ab") as f:
        f.write(entry)
    segment.with_suffix(".idx").unlink(missing_ok=True)
    for _ in range(2):
        with synarrow.SynaDB(path, CFG) as db:
            assert ts_of(db, "k") == [T0 - 1, T0, T0, T0]
            assert db.get_history_floats("k").tolist() == [-1.0, 1.0, 2.0, 3.0]
            assert db.get("k") == 3.0  # of equal timestamps the last written
            db.compact()
            assert ts_of(db, "k") == [T0 - 1, T0, T0, T0]
