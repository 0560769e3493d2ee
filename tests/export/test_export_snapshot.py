"""An export reads one snapshot: writes made while it runs are in none of its files.

The source appends to every key, and creates a new one, right after the export's snapshot is
taken: the moment a concurrent writer would. An export that read the live database key by key
would mix the two versions.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

import synarrow
from synarrow.engine.snapshot import ReadSnapshot
from synarrow.export import export_dataset, export_file, read_dataset

NO_SYNC = synarrow.DbConfig(sync_on_write=False, auto_compact=False)


class WritesAfterSnapshot:
    """A database written to right after every read: snapshot, key listing or history."""

    def __init__(self, db: synarrow.SynaDB) -> None:
        self.db = db
        self.taken: list[ReadSnapshot] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)

    def _write(self) -> None:
        for key in self.db.keys():
            self.db.append(key, -1.0)
        self.db.append(f"late/{len(self.db)}", -1.0)

    def read_snapshot(self, keys: Iterable[str] | None = None) -> ReadSnapshot:
        snapshot = self.db.read_snapshot(keys)
        self.taken.append(snapshot)
        self._write()
        return snapshot

    def keys(self, pattern: str | None = None) -> list[str]:
        found = self.db.keys(pattern)
        self._write()
        return found

    def get_history(self, key: str) -> Any:
        table = self.db.get_history(key)
        self._write()
        return table

    def snapshot_counts(self) -> dict[str, int]:
        """Rows per key of the one snapshot the export read."""
        assert len(self.taken) == 1
        return {k: len(v) for k, v in self.taken.pop().keys.items()}


@pytest.fixture
def source(tmp_path: Path) -> Any:
    db = synarrow.SynaDB(tmp_path / "src.db", NO_SYNC)
    for i in range(4):
        db.append_batch(f"k{i}", np.arange(10 * (i + 1), dtype=np.float64))
    db.compact()
    db.append_batch("k0", np.arange(5, dtype=np.float64))  # a log tail too
    yield WritesAfterSnapshot(db)
    db.close()


EXPECTED = {"k0": 15, "k1": 20, "k2": 30, "k3": 40}


def _counts(table: Any) -> dict[str, int]:
    keys = table.column("key").to_pylist()
    return {k: keys.count(k) for k in sorted(set(keys))}


def test_a_partitioned_export_holds_the_snapshot_only(source: Any, tmp_path: Path) -> None:
    result = export_dataset(source, tmp_path / "out")
    assert (result.keys, result.rows) == (4, 105)
    table = read_dataset(tmp_path / "out").to_table()
    assert _counts(table) == EXPECTED == source.snapshot_counts()
    assert -1.0 not in table.column("value").to_pylist()  # nothing written after it
    assert len(source.db.get_history("k0")) == 16  # the writes did happen
    assert source.db.exists("late/4")


@pytest.mark.parametrize("name", ["all.parquet", "all.csv"])
def test_a_single_file_export_holds_the_snapshot_only(
    source: Any, tmp_path: Path, name: str
) -> None:
    export_file(source, tmp_path / name)
    if name.endswith(".parquet"):
        table = pq.read_table(tmp_path / name)
    else:
        import pyarrow.csv as pcsv

        table = pcsv.read_csv(tmp_path / name)
    assert _counts(table) == EXPECTED == source.snapshot_counts()


def test_a_pattern_is_read_from_one_snapshot(source: Any, tmp_path: Path) -> None:
    export_dataset(source, tmp_path / "some", pattern="k[12]")
    exported = _counts(read_dataset(tmp_path / "some").to_table())
    assert exported == source.snapshot_counts()  # one moment for every key
    assert set(exported) == {"k1", "k2"}


def test_a_key_list_is_read_from_one_snapshot(source: Any, tmp_path: Path) -> None:
    export_dataset(source, tmp_path / "listed", keys=["k3", "k0"])
    exported = _counts(read_dataset(tmp_path / "listed").to_table())
    assert exported == source.snapshot_counts() == {"k0": 15, "k3": 40}
    with pytest.raises(synarrow.KeyNotFoundError, match="nope"):
        export_dataset(source, tmp_path / "missing", keys=["k1", "nope"])
    assert not (tmp_path / "missing").exists()
