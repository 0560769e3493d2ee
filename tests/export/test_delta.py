"""Snapshots exported as versions of a Delta Lake table (``format="delta"``).

Every version is read back two ways, with deltalake's own reader (``DeltaTable(uri,
version=v)`` queried through ``deltalake.QueryBuilder``) and with ``polars.read_delta(uri,
version=v)``, and must equal the Hive export of the same tag (and, for the first tag, the
rows written). ``DeltaTable.to_pyarrow_table`` is not used: with deltalake 1.6.6 and this
pyarrow it sometimes aborts the interpreter at exit ("terminate called without an active
exception"), which would fail the test run after every test passed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pytest
from engine_rows import EXPORT_COLUMNS, table_rows
from export_data import T0, fill

import synarrow
from synarrow.errors import (
    ExportError,
    InvalidArgumentError,
    SnapshotNotFoundError,
)
from synarrow.export import delta_versions, export_dataset
from synarrow.export_delta import DELTA_SCHEMA

deltalake = pytest.importorskip("deltalake")
pl = pytest.importorskip("polars")

Rows = dict[str, list[tuple[int, str, Any]]]
CFG = synarrow.DbConfig(sync_on_write=False, auto_compact=False)


def read_deltalake(uri: Path, version: int) -> Rows:
    """The rows of one table version through deltalake's own reader."""
    table = deltalake.DeltaTable(str(uri), version=version)
    reader = deltalake.QueryBuilder().register("t", table).execute("SELECT * FROM t")
    got = pa.table(reader.read_all())
    assert got.schema.names == EXPORT_COLUMNS
    return table_rows(got)


def read_polars(uri: Path, version: int) -> Rows:
    frame = pl.read_delta(str(uri), version=version)
    assert frame.columns == EXPORT_COLUMNS
    return table_rows(frame.to_arrow())


def hive_rows(db: synarrow.SynaDB, tag: str, out: Path) -> Rows:
    """The rows of the Hive Parquet export of ``tag`` (the layout's reference reading)."""
    db.export_dataset(out, snapshot=tag)
    part = ds.partitioning(pa.schema([("key", pa.string())]), flavor="hive")
    return table_rows(ds.dataset(out, format="parquet", partitioning=part).to_table())


def check_version(uri: Path, version: int, expected: Rows) -> None:
    assert read_deltalake(uri, version) == expected
    assert read_polars(uri, version) == expected


def commit_log(uri: Path, version: int) -> list[dict[str, Any]]:
    log = uri / "_delta_log" / f"{version:020d}.json"
    return [json.loads(line) for line in log.read_text("utf-8").splitlines() if line.strip()]


def touched(uri: Path, version: int) -> tuple[set[str], set[str]]:
    """The keys whose partitions one commit added files to, and removed files from."""
    actions = commit_log(uri, version)
    added = {a["add"]["partitionValues"]["key"] for a in actions if "add" in a}
    removed = {a["remove"]["partitionValues"]["key"] for a in actions if "remove" in a}
    return added, removed


@pytest.fixture
def db(tmp_path: Path) -> Any:
    with synarrow.SynaDB(tmp_path / "src.db", config=CFG) as handle:
        yield handle


@pytest.fixture
def written(db: synarrow.SynaDB) -> Rows:
    """Every value type and the awkward keys; tagged v1."""
    expected = fill(db)
    db.snapshot("v1")
    return expected


def next_version(db: synarrow.SynaDB) -> None:
    """v2: one key appended to, one range-deleted, one deleted, one added; a log tail left."""
    db.append("Zürich", 1.5, timestamp=T0 + 10**9)
    db.delete_range("ints", T0 + 37 * 1_000_000, T0 + 10**9)  # the first int stays
    db.delete("texts")
    db.append("new/key", 7.0, timestamp=T0 + 10**9)
    db.snapshot("v2")


# -- the first version ---------------------------------------------------------------------


def test_first_version_reads_back_everywhere(
    db: synarrow.SynaDB, written: Rows, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    res = db.export_dataset(lake, format="delta", snapshot="v1")
    assert (res.format, res.version, res.mode, res.snapshot) == ("delta", 0, "full", "v1")
    assert res.keys == len(written) and res.keys_written == len(written)
    assert res.rows == sum(map(len, written.values())) and res.files == len(written)
    check_version(lake, 0, written)
    assert hive_rows(db, "v1", tmp_path / "hive") == written
    assert delta_versions(lake) == {"v1": 0}

    table = deltalake.DeltaTable(str(lake))
    assert table.metadata().partition_columns == ["key"]
    types = {f.name: str(f.type) for f in table.schema().fields}
    assert types["ts"] == 'PrimitiveType("timestamp")'
    assert types["int_value"] == 'PrimitiveType("long")'
    assert types["bytes"] == 'PrimitiveType("binary")'
    assert types["type"] == 'PrimitiveType("string")'
    assert "array" in types["vector"].lower() and "float" in types["vector"]
    info = commit_log(lake, 0)[0]["commitInfo"]
    assert info["synarrow.tag"] == "v1"
    assert info["synarrow.database"] == os.path.realpath(db.path)
    assert len(info["synarrow.fingerprint"]) == 32


def test_unpartitioned_table(db: synarrow.SynaDB, written: Rows, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    assert db.export_dataset(lake, format="delta", partition_by=None, snapshot="v1").files == 1
    assert deltalake.DeltaTable(str(lake)).metadata().partition_columns == []
    next_version(db)
    res = db.export_dataset(lake, format="delta", partition_by=None, snapshot="v2")
    assert (res.version, res.mode) == (1, "incremental")
    check_version(lake, 0, written)
    check_version(lake, 1, hive_rows(db, "v2", tmp_path / "hive2"))


def test_a_snapshot_handle_exports_its_own_tag(
    db: synarrow.SynaDB, written: Rows, tmp_path: Path
) -> None:
    with synarrow.SynaDB(db.path, snapshot="v1") as at:
        assert export_dataset(at, tmp_path / "lake", format="delta").version == 0
        with pytest.raises(InvalidArgumentError, match="reads snapshot 'v1', not snapshot 'v2'"):
            export_dataset(at, tmp_path / "other", format="delta", snapshot="v2")
    check_version(tmp_path / "lake", 0, written)


# -- the next versions ---------------------------------------------------------------------


def test_next_version_touches_only_changed_keys(
    db: synarrow.SynaDB, written: Rows, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    db.export_dataset(lake, format="delta", snapshot="v1")
    next_version(db)
    res = db.export_dataset(lake, format="delta", snapshot="v2")
    assert (res.version, res.mode, res.previous, res.reason) == (1, "incremental", "v1", None)
    assert (res.keys_written, res.keys_removed) == (3, 1)
    added, removed = touched(lake, 1)
    assert added == {"Zürich", "ints", "new/key"}
    assert removed == {"Zürich", "ints", "texts"}
    assert res.files == 3 and res.rows == 3 + 1 + 1  # the whole of each key written
    v2 = hive_rows(db, "v2", tmp_path / "hive2")
    assert "texts" not in v2 and v2["ints"] == written["ints"][:1]
    check_version(lake, 1, v2)
    check_version(lake, 0, written)  # the first version reads as it was
    assert delta_versions(lake) == {"v1": 0, "v2": 1}


def test_same_tag_again_commits_nothing(db: synarrow.SynaDB, written: Rows, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    db.export_dataset(lake, format="delta", snapshot="v1")
    again = db.export_dataset(lake, format="delta", snapshot="v1")
    assert (again.version, again.mode, again.rows, again.files) == (0, "unchanged", 0, 0)
    assert deltalake.DeltaTable(str(lake)).version() == 0


def test_a_tag_that_changed_nothing_is_an_empty_version(
    db: synarrow.SynaDB, written: Rows, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    db.export_dataset(lake, format="delta", snapshot="v1")
    db.compact()
    db.snapshot("same")
    res = db.export_dataset(lake, format="delta", snapshot="same")
    assert (res.version, res.mode, res.keys_written, res.files) == (1, "incremental", 0, 0)
    assert touched(lake, 1) == (set(), set())
    assert delta_versions(lake) == {"v1": 0, "same": 1}
    check_version(lake, 1, written)


def test_going_back_to_an_older_tag(db: synarrow.SynaDB, written: Rows, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    db.export_dataset(lake, format="delta", snapshot="v1")
    next_version(db)
    db.export_dataset(lake, format="delta", snapshot="v2")
    res = db.export_dataset(lake, format="delta", snapshot="v1")
    assert (res.version, res.mode, res.previous) == (2, "incremental", "v2")
    check_version(lake, 2, written)
    assert delta_versions(lake) == {"v1": 2, "v2": 1}


def test_full_overwrite_after_the_previous_tag_was_dropped(
    db: synarrow.SynaDB, written: Rows, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    db.export_dataset(lake, format="delta", snapshot="v1")
    next_version(db)
    db.drop_snapshot("v1")
    res = db.export_dataset(lake, format="delta", snapshot="v2")
    assert (res.version, res.mode) == (1, "full")
    assert res.reason is not None and "'v1' was dropped" in res.reason
    added, removed = touched(lake, 1)
    assert removed == set(written) and added == set(written) - {"texts"} | {"new/key"}
    check_version(lake, 1, hive_rows(db, "v2", tmp_path / "hive2"))
    check_version(lake, 0, written)


def test_a_tag_made_again_is_not_the_one_exported(
    db: synarrow.SynaDB, written: Rows, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    db.export_dataset(lake, format="delta", snapshot="v1")
    db.drop_snapshot("v1")
    db.append("Zürich", 2.5, timestamp=T0 + 10**9)
    db.snapshot("v1")
    res = db.export_dataset(lake, format="delta", snapshot="v1")
    assert (res.version, res.mode) == (1, "full")
    assert "made again" in (res.reason or "")
    check_version(lake, 1, hive_rows(db, "v1", tmp_path / "hive"))


def test_another_writer_means_a_full_overwrite(
    db: synarrow.SynaDB, written: Rows, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    db.export_dataset(lake, format="delta", snapshot="v1")
    next_version(db)
    db.export_dataset(lake, format="delta", snapshot="v2")
    # Commits by someone else that keep the rows are looked through.
    table = deltalake.DeltaTable(str(lake))
    table.alter.set_table_properties({"delta.logRetentionDuration": "interval 30 days"})
    table.vacuum(retention_hours=0, enforce_retention_duration=False, dry_run=False)
    assert deltalake.DeltaTable(str(lake)).version() == 4  # properties, vacuum start, end
    db.append("007", 1.0, timestamp=T0 + 10**9)
    db.snapshot("v3")
    res = db.export_dataset(lake, format="delta", snapshot="v3")
    assert (res.mode, res.previous, res.version) == ("incremental", "v2", 5)
    assert touched(lake, 5) == ({"007"}, {"007"})
    # A delete by someone else changes them: the table no longer holds v3 exactly.
    deltalake.DeltaTable(str(lake)).delete("\"key\" = 'Zürich'")
    db.append("007", 2.0, timestamp=T0 + 2 * 10**9)
    db.snapshot("v4")
    res = db.export_dataset(lake, format="delta", snapshot="v4")
    assert (res.mode, res.version) == ("full", 7)
    assert "not written by synarrow" in (res.reason or "")
    check_version(lake, 7, hive_rows(db, "v4", tmp_path / "hive4"))


@pytest.mark.parametrize("their_key", ["Zürich", "007"])
def test_a_writer_between_read_and_commit(
    db: synarrow.SynaDB,
    written: Rows,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    their_key: str,
) -> None:
    """Someone appends once the export has read the table, before it commits: to a key the
    export replaces (delta-rs refuses the commit), or to another one (delta-rs commits both,
    so the table holds more than v2: the next export must not build on it)."""
    lake = tmp_path / "lake"
    db.export_dataset(lake, format="delta", snapshot="v1")
    next_version(db)
    real = deltalake.write_deltalake
    theirs = pa.Table.from_pylist(
        [{"key": their_key, "ts": 0, "value": 1.0, "type": "float"}], schema=DELTA_SCHEMA
    )

    def another_writer_first(table: Any, data: Any, **options: Any) -> Any:
        real(str(lake), theirs, mode="append")
        return real(table, data, **options)

    monkeypatch.setattr(deltalake, "write_deltalake", another_writer_first)
    if their_key == "Zürich":
        with pytest.raises(ExportError, match="the table is as it was"):
            db.export_dataset(lake, format="delta", snapshot="v2")
        expected_reason = "not written by synarrow"
    else:
        res = db.export_dataset(lake, format="delta", snapshot="v2")
        assert (res.mode, res.version) == ("incremental", 2)
        expected_reason = "another writer committed while the last export was written"
    monkeypatch.setattr(deltalake, "write_deltalake", real)
    db.append("007", 1.0, timestamp=T0 + 10**9)
    db.snapshot("v3")
    res = db.export_dataset(lake, format="delta", snapshot="v3")
    assert res.mode == "full" and expected_reason in (res.reason or "")
    check_version(lake, res.version, hive_rows(db, "v3", tmp_path / "hive3"))


def test_another_database_means_a_full_overwrite(
    db: synarrow.SynaDB, written: Rows, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    db.export_dataset(lake, format="delta", snapshot="v1")
    with synarrow.SynaDB(tmp_path / "other.db", config=CFG) as other:
        other.append("only", 1.0, timestamp=T0)
        other.snapshot("v1")
        res = other.export_dataset(lake, format="delta", snapshot="v1")
        assert res.mode == "full" and "another database" in (res.reason or "")
    check_version(lake, 1, {"only": [(T0, "float", 1.0)]})


def test_most_keys_changed_means_a_full_overwrite(
    db: synarrow.SynaDB, written: Rows, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    db.export_dataset(lake, format="delta", snapshot="v1")
    for key in list(written)[: len(written) // 2 + 1]:
        db.append(key, 0.5, timestamp=T0 + 10**9)
    db.snapshot("v2")
    res = db.export_dataset(lake, format="delta", snapshot="v2", compression="zstd")
    assert (res.mode, res.keys_written) == ("full", len(written))
    assert "more than half" in (res.reason or "")
    check_version(lake, 1, hive_rows(db, "v2", tmp_path / "hive2"))
    assert all(
        a["add"]["path"].endswith(".zstd.parquet") for a in commit_log(lake, 1) if "add" in a
    )


def test_an_empty_database(tmp_path: Path) -> None:
    with synarrow.SynaDB(tmp_path / "e.db", config=CFG) as db:
        db.snapshot("empty")
        lake = tmp_path / "lake"
        assert db.export_dataset(lake, format="delta", snapshot="empty").version == 0
        check_version(lake, 0, {})
        db.append("a", 1.0, timestamp=T0)
        db.snapshot("one")
        res = db.export_dataset(lake, format="delta", snapshot="one")
        assert (res.mode, res.keys_written) == ("incremental", 1)
        check_version(lake, 1, {"a": [(T0, "float", 1.0)]})


# -- bad input -----------------------------------------------------------------------------


def test_no_tag_is_refused(db: synarrow.SynaDB, written: Rows, tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="needs a snapshot tag"):
        db.export_dataset(tmp_path / "lake", format="delta")
    with pytest.raises(SnapshotNotFoundError):
        db.export_dataset(tmp_path / "lake", format="delta", snapshot="nope")
    with pytest.raises(InvalidArgumentError, match="not a safe name"):
        db.export_dataset(tmp_path / "lake", format="delta", snapshot="../v1")
    assert not (tmp_path / "lake").exists()
    with pytest.raises(ExportError, match="cannot read the Delta table"):
        delta_versions(tmp_path / "lake")


@pytest.mark.parametrize(
    "options",
    [
        {"keys": ["ints"]},
        {"pattern": "k*"},
        {"overwrite": True},
        {"filesystem": object()},
        {"compression": "bogus"},
        {"partition_by": "ts"},
    ],
)
def test_options_that_do_not_apply(
    db: synarrow.SynaDB, written: Rows, tmp_path: Path, options: dict[str, Any]
) -> None:
    with pytest.raises(InvalidArgumentError):
        db.export_dataset(tmp_path / "lake", format="delta", snapshot="v1", **options)
    assert not (tmp_path / "lake").exists()


def test_remote_uris_are_refused(db: synarrow.SynaDB, written: Rows) -> None:
    with pytest.raises(InvalidArgumentError, match="local directories only"):
        db.export_dataset("s3://bucket/lake", format="delta", snapshot="v1")


def test_file_uri(db: synarrow.SynaDB, written: Rows, tmp_path: Path) -> None:
    res = db.export_dataset(f"file://{tmp_path}/lake", format="delta", snapshot="v1")
    assert res.version == 0
    check_version(tmp_path / "lake", 0, written)


def test_a_directory_that_is_no_delta_table(
    db: synarrow.SynaDB, written: Rows, tmp_path: Path
) -> None:
    target = tmp_path / "mine"
    target.mkdir()
    (target / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="holds no Delta table"):
        db.export_dataset(target, format="delta", snapshot="v1")
    assert os.listdir(target) == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(ExportError, match="not a directory"):
        db.export_dataset(tmp_path / "file", format="delta", snapshot="v1")
    with pytest.raises(ExportError, match="inside the database"):
        db.export_dataset(db.path / "lake", format="delta", snapshot="v1")
    # An empty directory is fine.
    (tmp_path / "empty").mkdir()
    assert db.export_dataset(tmp_path / "empty", format="delta", snapshot="v1").version == 0


def test_a_table_that_is_not_ours(db: synarrow.SynaDB, written: Rows, tmp_path: Path) -> None:
    lake = tmp_path / "theirs"
    deltalake.write_deltalake(str(lake), pa.table({"key": ["a"], "x": [1]}))
    with pytest.raises(ExportError, match="not a synarrow export"):
        db.export_dataset(lake, format="delta", snapshot="v1")
    assert deltalake.DeltaTable(str(lake)).version() == 0


def test_partitioning_must_match_the_table(
    db: synarrow.SynaDB, written: Rows, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    db.export_dataset(lake, format="delta", snapshot="v1")
    next_version(db)
    with pytest.raises(ExportError, match="partitioned by"):
        db.export_dataset(lake, format="delta", partition_by=None, snapshot="v2")
    assert deltalake.DeltaTable(str(lake)).version() == 0


@pytest.mark.parametrize("key", ["__HIVE_DEFAULT_PARTITION__", "ü" * 42])
def test_keys_that_cannot_be_partitions(tmp_path: Path, key: str) -> None:
    with synarrow.SynaDB(tmp_path / "k.db", config=CFG) as db:
        db.append(key, 1.0, timestamp=T0)
        db.snapshot("v1")
        with pytest.raises(InvalidArgumentError, match="partition_by=None"):
            db.export_dataset(tmp_path / "lake", format="delta", snapshot="v1")
        assert not (tmp_path / "lake").exists()
        db.export_dataset(tmp_path / "lake", format="delta", snapshot="v1", partition_by=None)
        check_version(tmp_path / "lake", 0, {key: [(T0, "float", 1.0)]})


def test_without_deltalake_installed(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['deltalake'] = None\n"
        "import synarrow\n"
        f"db = synarrow.SynaDB({str(tmp_path / 'd.db')!r})\n"
        "db.append('a', 1.0); db.snapshot('v1')\n"
        "try:\n"
        f"    db.export_dataset({str(tmp_path / 'lake')!r}, format='delta', snapshot='v1')\n"
        "except synarrow.errors.DependencyMissingError as e:\n"
        "    print('missing:', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "deltalake" in out.stdout and "synarrow[delta]" in out.stdout


# -- the Hive exports at a tag -------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["parquet", "arrow"])
def test_hive_export_of_a_tag(db: synarrow.SynaDB, written: Rows, tmp_path: Path, fmt: str) -> None:
    next_version(db)
    db.append("Zürich", 3.5, timestamp=T0 + 2 * 10**9)  # after v2: in neither tag
    res = db.export_dataset(tmp_path / "v1", format=fmt, snapshot="v1")
    assert res.snapshot == "v1" and res.keys == len(written)
    part = ds.partitioning(pa.schema([("key", pa.string())]), flavor="hive")
    dataset = ds.dataset(
        tmp_path / "v1", format="ipc" if fmt == "arrow" else fmt, partitioning=part
    )
    assert table_rows(dataset.to_table()) == written
    with pytest.raises(SnapshotNotFoundError):
        db.export_dataset(tmp_path / "none", format=fmt, snapshot="nope")
    with pytest.raises(InvalidArgumentError, match="reads the current state"):
        export_dataset(db, tmp_path / "x", format=fmt, snapshot="v1")


# -- crashes -------------------------------------------------------------------------------

CHILD = """
import sys, synarrow
from synarrow.export import export_dataset
with synarrow.SynaDB(sys.argv[1], snapshot=sys.argv[2]) as at:
    print("exporting", flush=True)
    export_dataset(at, sys.argv[3], format="delta")
"""


def kill_export(db_path: Path, tag: str, lake: Path, delay: float) -> None:
    """Run an export of ``tag`` in another process and kill -9 it ``delay`` s after it starts."""
    import signal
    import time

    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(db_path), tag, str(lake)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline() == "exporting\n"
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    child.wait()


def big_db(path: Path) -> synarrow.SynaDB:
    import numpy as np

    db = synarrow.SynaDB(path, config=CFG)
    n = 400_000
    for i in range(8):
        db.append_batch(f"big/{i}", np.arange(n, dtype=np.float64), timestamps=T0 + np.arange(n))
    db.snapshot("v1")
    for i in range(4):
        db.append(f"big/{i}", -1.0, timestamp=T0 + n)
    db.snapshot("v2")
    return db


def summary(frame: Any) -> list[tuple[Any, ...]]:
    """Rows, value sum and last time per key (a big table is compared by these)."""
    agg = frame.group_by("key").agg(pl.len(), pl.col("value").sum(), pl.col("ts").max())
    return agg.sort("key").rows()


def hive_summary(db: synarrow.SynaDB, tag: str, out: Path) -> list[tuple[Any, ...]]:
    db.export_dataset(out, snapshot=tag)
    return summary(pl.read_parquet(f"{out}/**/*.parquet", hive_partitioning=True))


def delta_summary(uri: Path, version: int) -> list[tuple[Any, ...]]:
    return summary(pl.read_delta(str(uri), version=version))


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.2, 0.5])
def test_killed_exports_leave_a_whole_version_or_none(tmp_path: Path, delay: float) -> None:
    with big_db(tmp_path / "big.db") as db:
        v1 = hive_summary(db, "v1", tmp_path / "hive1")
        v2 = hive_summary(db, "v2", tmp_path / "hive2")
        assert v1 != v2
        lake = tmp_path / "lake"
        kill_export(db.path, "v1", lake, delay)
        assert [n for n in os.listdir(tmp_path) if n.startswith("lake")] in ([], ["lake"])
        if lake.exists():  # the rename happened: a whole first version
            assert delta_summary(lake, 0) == v1
        db.export_dataset(lake, format="delta", snapshot="v1")
        kill_export(db.path, "v2", lake, delay)
        version = deltalake.DeltaTable(str(lake)).version()
        assert version in (0, 1)
        assert delta_summary(lake, version) == (v1 if version == 0 else v2)
        res = db.export_dataset(lake, format="delta", snapshot="v2")
        assert res.mode == ("incremental" if version == 0 else "unchanged")
        assert delta_summary(lake, res.version) == v2
        assert delta_summary(lake, 0) == v1
