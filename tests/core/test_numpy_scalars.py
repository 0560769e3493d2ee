"""numpy scalars take the single-append fast path and read back as Python numbers."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

import synarrow

NAN_PAYLOAD = struct.unpack("<d", struct.pack("<Q", 0x7FF8_0000_DEAD_BEEF))[0]


def test_numpy_float64_and_int64_read_back_as_python_numbers(tmp_path: Path) -> None:
    cfg = synarrow.DbConfig(sync_on_write=False)
    values = [np.float64(1.5), np.float64(NAN_PAYLOAD), np.float64(-0.0)]
    ints = [np.int64(7), np.int64(np.iinfo(np.int64).min), np.int64(np.iinfo(np.int64).max)]
    with synarrow.SynaDB(tmp_path / "db", cfg) as db:
        for v in values:
            db.append("f", v)
        for v in ints:
            db.append("i", v)
        assert type(db.get("f")) is float and struct.pack("<d", db.get("f")) == struct.pack(
            "<d", -0.0
        )
        assert type(db.get("i")) is int and db.get("i") == np.iinfo(np.int64).max
    with synarrow.SynaDB(tmp_path / "db", cfg) as db:  # replayed: the same bits
        got = db.get_history_floats("f")
        assert [struct.pack("<d", x) for x in got.tolist()] == [
            struct.pack("<d", float(v)) for v in values
        ]
        assert db.get_history("i").column("value").to_pylist() == [int(v) for v in ints]
        assert db.get_history("i").column("value").type == "int64"
