"""The awkward keys and values of the engine tests' database, and what each engine must read.

Each engine's reading is normalised by ``engine_rows.rows_by_key`` into ``{key: [(ts_us, type,
value), ...]}`` and compared with :data:`EXPECTED` exactly: every key, every row, every value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

import synarrow

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in microseconds

# Keys that engines have mangled: non-ASCII, number-looking, NUL, Hive escapes, "NULL".
FLOAT_KEYS = [
    "Zürich",
    "007",
    "42",
    "-1",
    "1e3",
    "true",
    "NULL",
    "k",
    "k\x00a",
    "k\x00b",
    "a b=c",
    "sensor/1",
    "100%",
    'it\'s "quoted"',
    "日本/東京",
    "rocket 🚀",
    "tab\tkey",
    "back\\slash:colon?[x]",
]
BIG = 2**53 + 1
VECTORS = np.array([[1.0, 0.0, 0.0], [0.5, -2.25, 3.0]], dtype=np.float32)


def fill(db: synarrow.SynaDB) -> dict[str, list[tuple[int, str, Any]]]:
    """Write the data; return what every engine must read back."""
    expected: dict[str, list[tuple[int, str, Any]]] = {}
    tick = iter(range(T0, T0 + 10**9, 1_000_000))

    def put(key: str, value: Any, kind: str) -> None:
        ts = next(tick)
        db.append(key, value, timestamp=ts)
        if isinstance(value, np.ndarray):
            value = value.tolist()
        expected.setdefault(key, []).append((ts, kind, value))

    for i, key in enumerate(FLOAT_KEYS):
        put(key, float(i) + 0.25, "float")
        put(key, -float(i), "float")
    for v in (1, BIG, -(2**63), 2**63 - 1):
        put("ints", v, "int")
    for v in ("x", "", "Grüße\x00"):
        put("texts", v, "text")
    for v in (b"\x00\xff", b"", bytes(range(256))):
        put("blobs", v, "bytes")
    for row in VECTORS:
        put("vecs", row, "vector")
    put("mixed", 1.5, "float")
    put("mixed", BIG, "int")
    put("mixed", "seven", "text")
    put("mixed", b"\x01", "bytes")
    put("mixed", VECTORS[1], "vector")
    put("mixed", None, "null")
    return expected


class Exported(NamedTuple):
    """The source database and its exports."""

    db_path: Path
    parquet: Path
    arrow: Path
    expected: dict[str, list[tuple[int, str, Any]]]
