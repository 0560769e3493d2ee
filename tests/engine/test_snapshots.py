"""Snapshots through the public API: bad input, readers that hold a tag, crafted records,
disk use after drops, and tags that keep their own retention and duplicates policy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import synarrow
from synarrow.check import check_database
from synarrow.columnar import tags
from synarrow.columnar.checksum import to_hex, xxh3
from synarrow.columnar.manifest import MANIFEST_NAME, read_manifest
from synarrow.errors import (
    CorruptionError,
    DatabaseClosedError,
    InvalidArgumentError,
    ReadOnlyError,
    SnapshotExistsError,
    SnapshotInUseError,
    SnapshotNotFoundError,
)

NO_SYNC = synarrow.DbConfig(sync_on_write=False, auto_compact=False)
DAY = 86_400_000_000


def fill(db: synarrow.SynaDB) -> None:
    db.append_batch("a", np.arange(100.0), timestamps=np.arange(100))
    db.append("b", "text", timestamp=5)
    db.put_vector("v", np.ones(4, dtype=np.float32))


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tag",
    ["a/b", "../x", "..", ".", "a\0b", "é", "v1é", "x" * 129, "", " v", "v 1", "-v", ".v",
     "a\\b", 5, None, b"v1", ["v1"]],
)  # fmt: skip
def test_unsafe_tag_names_are_refused_everywhere(db: synarrow.SynaDB, tag: Any) -> None:
    fill(db)
    db.snapshot("ok")
    calls = [lambda: db.snapshot(tag), lambda: db.drop_snapshot(tag)]
    if tag is not None:  # elsewhere None means the current state
        calls += [
            lambda: synarrow.SynaDB(db.path, snapshot=tag),
            lambda: db.sql("SELECT 1", snapshot=tag),
            lambda: db.diff_snapshots(tag),
        ]
    for call in calls:
        with pytest.raises(InvalidArgumentError, match="not a safe name"):
            call()
    assert [i.tag for i in db.snapshots()] == ["ok"]
    assert sorted(os.listdir(db.path / "snapshots")) == ["ok.json"]


def test_the_longest_safe_tag_is_kept(db: synarrow.SynaDB) -> None:
    fill(db)
    tag = "V" + "x._-9" * 25 + "ab"
    assert len(tag) == 128
    assert db.snapshot(tag).tag == tag
    with synarrow.SynaDB(db.path, snapshot=tag) as old:
        assert old.get_history_floats("a").tolist() == list(np.arange(100.0))


def test_duplicate_and_case_only_duplicate_tags(db: synarrow.SynaDB) -> None:
    fill(db)
    db.snapshot("Train-1")
    db.append("a", 1.0)
    for tag in ("Train-1", "train-1", "TRAIN-1"):
        with pytest.raises(SnapshotExistsError, match="Train-1"):
            db.snapshot(tag)
    (info,) = db.snapshots()
    assert info.entries == 102  # the first one, untouched by the refused ones


def test_unknown_tags(db: synarrow.SynaDB) -> None:
    fill(db)
    db.snapshot("v1")
    for call in (
        lambda: synarrow.SynaDB(db.path, snapshot="v2"),
        lambda: db.drop_snapshot("v2"),
        lambda: db.sql("SELECT 1", snapshot="v2"),
        lambda: db.diff_snapshots("v1", "v2"),
        lambda: synarrow.open(db.path, snapshot="v2"),
    ):
        with pytest.raises(SnapshotNotFoundError, match="'v2'"):
            call()


@pytest.mark.parametrize(
    ("note", "error"),
    [(5, "is a str"), (b"x", "is a str"), ("x" * 10_001, "at most 10,000")],
)
def test_bad_notes(db: synarrow.SynaDB, note: Any, error: str) -> None:
    fill(db)
    with pytest.raises(InvalidArgumentError, match=error):
        db.snapshot("v1", note=note)
    assert db.snapshots() == []
    info = db.snapshot("v1", note="é" * 10_000)
    assert info.note == "é" * 10_000


def test_snapshot_and_drop_need_a_writer(db: synarrow.SynaDB) -> None:
    fill(db)
    db.snapshot("v1")
    with synarrow.SynaDB(db.path, readonly=True) as ro:
        with pytest.raises(ReadOnlyError):
            ro.snapshot("v2")
        with pytest.raises(ReadOnlyError):
            ro.drop_snapshot("v1")
        assert [i.tag for i in ro.snapshots()] == ["v1"]
    with synarrow.SynaDB(db.path, snapshot="v1") as old:
        with pytest.raises(ReadOnlyError, match="snapshot 'v1'"):
            old.snapshot("v2")
        with pytest.raises(ReadOnlyError, match="snapshot 'v1'"):
            old.drop_snapshot("v1")
    db.close()
    with pytest.raises(DatabaseClosedError):
        db.snapshot("v3")
    with pytest.raises(DatabaseClosedError):
        db.drop_snapshot("v1")
    assert [i.tag for i in synarrow.SynaDB(db.path, readonly=True).snapshots()] == ["v1"]


WRITES: dict[str, Callable[[synarrow.SynaDB], Any]] = {
    "append": lambda h: h.append("a", 1.0),
    "append_batch": lambda h: h.append_batch("a", [1.0, 2.0]),
    "append_batches": lambda h: h.append_batches([("a", [1.0], None)]),
    "append_table": lambda h: h.append_table(
        pa.table({"key": ["a"], "ts": pa.array([1], pa.timestamp("us", "UTC")), "value": [1.0]})
    ),
    "put_float": lambda h: h.put_float("a", 1.0),
    "put_int": lambda h: h.put_int("i", 1),
    "put_text": lambda h: h.put_text("b", "x"),
    "put_bytes": lambda h: h.put_bytes("c", b"x"),
    "put_vector": lambda h: h.put_vector("v", np.zeros(4, np.float32)),
    "delete": lambda h: h.delete("a"),
    "delete_range": lambda h: h.delete_range("a", 0, 10),
    "set_retention": lambda h: h.set_retention("a", "1d"),
    "compact": lambda h: h.compact(),
    "flush": lambda h: h.flush(),
    "sync": lambda h: h.sync(),
}


@pytest.mark.parametrize("write", sorted(WRITES))
def test_every_write_through_a_snapshot_handle_is_refused(db_path: Path, write: str) -> None:
    with synarrow.SynaDB(db_path, NO_SYNC) as db:
        fill(db)
        db.snapshot("v1")
    before = sorted(os.listdir(db_path / "columnar"))
    with synarrow.SynaDB(db_path, snapshot="v1") as old:
        with pytest.raises(ReadOnlyError, match="snapshot 'v1'"):
            WRITES[write](old)
        assert old.get_history_floats("a").tolist() == list(np.arange(100.0))
        assert old.retention() == {}
    assert sorted(os.listdir(db_path / "columnar")) == before
    assert not (db_path / "retention.json").exists()


def test_readonly_false_and_repair_with_a_snapshot(db: synarrow.SynaDB) -> None:
    fill(db)
    db.snapshot("v1")
    with pytest.raises(InvalidArgumentError, match="read-only"):
        synarrow.SynaDB(db.path, snapshot="v1", readonly=False)
    with pytest.raises(InvalidArgumentError, match="repair"):
        synarrow.SynaDB(db.path, snapshot="v1", repair=True)
    with synarrow.SynaDB(db.path, snapshot="v1", readonly=True) as old:
        assert old.tag == "v1" and old.readonly


# -- readers holding a tag ---------------------------------------------------------------------


def test_drop_while_a_reader_in_this_process_has_the_tag_open(db: synarrow.SynaDB) -> None:
    fill(db)
    db.snapshot("v1")
    db.delete("a")
    db.compact(full=True)
    reader = synarrow.SynaDB(db.path, snapshot="v1")
    with pytest.raises(SnapshotInUseError, match="'v1'"):
        db.drop_snapshot("v1")
    assert reader.get_history_floats("a").tolist() == list(np.arange(100.0))  # still whole
    reader.close()
    db.drop_snapshot("v1")
    with pytest.raises(SnapshotNotFoundError):
        synarrow.SynaDB(db.path, snapshot="v1")


def test_sql_at_a_tag_from_the_writer_does_not_block_its_own_drop(db: synarrow.SynaDB) -> None:
    fill(db)
    db.snapshot("v1")
    assert db.sql("SELECT count(*) AS n FROM history", snapshot="v1").to_pylist() == [{"n": 102}]
    db.drop_snapshot("v1")  # the handle sql() kept open is closed first
    assert db.snapshots() == []


READER = """
import sys, synarrow
h = synarrow.SynaDB(sys.argv[1], snapshot=sys.argv[2])
print(len(h.get_history_floats("a")), flush=True)
sys.stdin.readline()
h.close()
print("closed", flush=True)
sys.stdin.readline()
"""


def test_drop_while_a_reader_in_another_process_has_the_tag_open(db: synarrow.SynaDB) -> None:
    fill(db)
    db.snapshot("v1")
    db.snapshot("v2")
    child = subprocess.Popen(
        [sys.executable, "-c", READER, str(db.path), "v1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "100"
        with pytest.raises(SnapshotInUseError, match="another process"):
            db.drop_snapshot("v1")
        db.drop_snapshot("v2")  # other tags are not held
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "closed"  # the child lives on
        db.drop_snapshot("v1")
        assert db.snapshots() == []
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.wait(60) == 0
    finally:
        child.kill()
        child.wait()


def test_a_killed_reader_leaves_no_hold(db: synarrow.SynaDB) -> None:
    fill(db)
    db.snapshot("v1")
    child = subprocess.Popen(
        [sys.executable, "-c", READER, str(db.path), "v1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "100"
    child.kill()
    child.wait()
    db.drop_snapshot("v1")
    assert db.snapshots() == []


# -- crafted and damaged records ---------------------------------------------------------------


def _reseal(body: dict[str, Any]) -> bytes:
    """A record with valid checksums for whatever ``body`` holds (what a crafter does)."""
    body = dict(body)
    body.pop("xxh3", None)
    manifest = dict(body["manifest"])
    manifest.pop("xxh3", None)
    canon = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
    body["manifest"] = {**manifest, "xxh3": to_hex(xxh3(canon))}
    canon = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return json.dumps({**body, "xxh3": to_hex(xxh3(canon))}).encode()


def _two_tags(path: Path) -> None:
    """``good`` and ``bad`` tags, each pinning files the current state no longer uses."""
    with synarrow.SynaDB(path, NO_SYNC) as db:
        fill(db)
        db.snapshot("good")
        db.append_batch("a", np.arange(100.0, 200.0), timestamps=np.arange(100, 200))
        db.compact(full=True)
        db.snapshot("bad")
        db.delete("a")
        db.compact(full=True)


def _record(path: Path, tag: str) -> dict[str, Any]:
    return json.loads((path / "snapshots" / f"{tag}.json").read_bytes())


def _craft_outside_name(path: Path) -> None:
    body = _record(path, "bad")
    body["manifest"]["files"][0]["name"] = "../../victim.arrow"
    (path / "snapshots" / "bad.json").write_bytes(_reseal(body))


def _craft_bad_checksum(path: Path) -> None:
    raw = (path / "snapshots" / "bad.json").read_bytes()
    (path / "snapshots" / "bad.json").write_bytes(raw.replace(b'"entries": ', b'"entries": 1'))


def _craft_huge(path: Path) -> None:
    with open(path / "snapshots" / "bad.json", "r+b") as f:
        f.truncate(tags.MAX_RECORD_BYTES + 1)


def _craft_symlink(path: Path) -> None:
    outside = path.parent / "elsewhere.json"
    shutil.copy(path / "snapshots" / "bad.json", outside)
    os.unlink(path / "snapshots" / "bad.json")
    os.symlink(outside, path / "snapshots" / "bad.json")


def _craft_other_tag(path: Path) -> None:
    shutil.copy(path / "snapshots" / "good.json", path / "snapshots" / "bad.json")


def _craft_newer(path: Path) -> None:
    body = _record(path, "bad")
    body["format"] = 99
    (path / "snapshots" / "bad.json").write_bytes(_reseal(body))


def _craft_fifo(path: Path) -> None:
    os.unlink(path / "snapshots" / "bad.json")
    os.mkfifo(path / "snapshots" / "bad.json")


def _craft_bad_retention(path: Path) -> None:
    body = _record(path, "bad")
    body["retention"] = {"*": -5}
    (path / "snapshots" / "bad.json").write_bytes(_reseal(body))


def _craft_missing_file(path: Path) -> None:
    body = _record(path, "bad")
    body["manifest"]["files"][0]["name"] = "g999999-000.arrow"
    (path / "snapshots" / "bad.json").write_bytes(_reseal(body))


CRAFTS = {
    "outside_name": _craft_outside_name,
    "bad_checksum": _craft_bad_checksum,
    "huge": _craft_huge,
    "symlink": _craft_symlink,
    "other_tag": _craft_other_tag,
    "newer_format": _craft_newer,
    "fifo": _craft_fifo,
    "bad_retention": _craft_bad_retention,
}


@pytest.mark.parametrize("craft", sorted(CRAFTS))
def test_a_crafted_record_is_corruption_and_pins_everything(db_path: Path, craft: str) -> None:
    _two_tags(db_path)
    victim = db_path.parent / "victim.arrow"
    victim.write_bytes(b"not ours")
    CRAFTS[craft](db_path)
    files_before = sorted(os.listdir(db_path / "columnar"))
    with pytest.raises(CorruptionError, match=r"bad\.json") as caught:
        synarrow.SynaDB(db_path, snapshot="bad")
    assert "repair=" not in str(caught.value)  # a snapshot has no log to repair
    # The writer opens; compaction and drops remove no data file while a record is unreadable.
    with synarrow.SynaDB(db_path, NO_SYNC) as db:
        with pytest.raises(CorruptionError):
            db.snapshots()
        db.append("new", 1.0)
        db.compact(full=True)
        db.drop_snapshot("good")
        assert set(files_before) - {MANIFEST_NAME} <= set(os.listdir(db_path / "columnar"))
        with pytest.raises(CorruptionError):
            db.drop_snapshot("bad")  # what cannot be read is reported, not dropped blind
        assert db.get("new") == 1.0
    assert victim.read_bytes() == b"not ours"
    report = check_database(db_path)
    # The crafted record is reported as damage (naming it); the current state itself is whole.
    assert not report.ok and report.damage
    assert all("bad" in line for line in report.damage), report.damage


def test_a_record_naming_a_missing_file_fails_on_open_and_on_read(db_path: Path) -> None:
    _two_tags(db_path)
    _craft_missing_file(db_path)
    with pytest.raises(CorruptionError, match=r"g999999-000\.arrow"):
        old = synarrow.SynaDB(db_path, snapshot="bad")
        try:
            old.get_history_floats("a")
        finally:
            old.close()
    with synarrow.SynaDB(db_path, snapshot="good") as old:
        assert old.get_history_floats("a").tolist() == list(np.arange(100.0))


def test_a_symlinked_snapshots_directory_is_refused(db_path: Path) -> None:
    _two_tags(db_path)
    outside = db_path.parent / "other-snapshots"
    shutil.move(db_path / "snapshots", outside)
    os.symlink(outside, db_path / "snapshots")
    listing = sorted(os.listdir(outside))
    for call in (
        lambda: synarrow.SynaDB(db_path, NO_SYNC),
        lambda: synarrow.SynaDB(db_path, readonly=True),
        lambda: synarrow.SynaDB(db_path, snapshot="good"),
    ):
        with pytest.raises(CorruptionError, match="snapshots"):
            call()
    assert sorted(os.listdir(outside)) == listing


def test_record_temporaries_are_removed_and_never_listed(db: synarrow.SynaDB) -> None:
    fill(db)
    db.snapshot("v1")
    stray = db.path / "snapshots" / ".v2.json.tmp-0123456789ab"
    stray.write_bytes(b"{half")
    other = db.path / "snapshots" / "notes.txt"  # not a name synarrow writes: left alone
    other.write_bytes(b"mine")
    assert [i.tag for i in db.snapshots()] == ["v1"]
    db.close()
    with synarrow.SynaDB(db.path, NO_SYNC) as again:
        assert [i.tag for i in again.snapshots()] == ["v1"]
    assert sorted(os.listdir(db.path / "snapshots")) == ["notes.txt", "v1.json"]


# -- disk use ----------------------------------------------------------------------------------


def _history(db: synarrow.SynaDB, rounds: int, tag: Callable[[int], None]) -> None:
    """Heavy changes with a tag after each round (``tag`` does nothing without snapshots)."""
    rng = np.random.default_rng(7)
    for r in range(rounds):
        for k in range(8):
            ts = np.arange(r * 1000, r * 1000 + 500) + k
            db.append_batch(f"k{k}", rng.random(500), timestamps=ts)
        db.append(f"t{r % 3}", f"round {r}", timestamp=r)
        if r % 2:
            db.delete(f"k{r % 8}")
        db.delete_range("k1", r * 1000 - 800, r * 1000 - 200)
        db.compact(full=r % 3 == 0)
        tag(r)


def _data_files(path: Path) -> dict[str, int]:
    directory = path / "columnar"
    return {n: os.path.getsize(directory / n) for n in os.listdir(directory) if n != MANIFEST_NAME}


def test_dropping_every_tag_returns_to_the_size_without_snapshots(tmp_path: Path) -> None:
    """Compared: after ``compact(full=True)``, (1) the columnar directory holds exactly the
    files the live manifest names (plus MANIFEST), and (2) those data and index files total
    the same bytes as a database that took the same writes without ever a snapshot."""
    plain, tagged = tmp_path / "plain.db", tmp_path / "tagged.db"
    with synarrow.SynaDB(plain, NO_SYNC) as db:
        _history(db, 9, lambda r: None)
        db.compact(full=True)
    with synarrow.SynaDB(tagged, NO_SYNC) as db:
        _history(db, 9, lambda r: db.snapshot(f"r{r}"))
        assert len(db.snapshots()) == 9
        grown = sum(_data_files(tagged).values())
        assert sum(i.exclusive_bytes for i in db.snapshots()) > 0
        for info in db.snapshots():
            db.drop_snapshot(info.tag)
        db.compact(full=True)
        live = db.stats()["columnar_bytes"]
    manifest = read_manifest(tagged / "columnar")
    named = {f.name for f in manifest.files} | {manifest.index}
    assert set(_data_files(tagged)) == named
    assert sum(_data_files(tagged).values()) == sum(_data_files(plain).values()) < grown
    assert live == synarrow.SynaDB(plain, readonly=True).stats()["columnar_bytes"]
    with synarrow.SynaDB(plain, readonly=True) as a, synarrow.SynaDB(tagged, readonly=True) as b:
        assert a.keys() == b.keys()
        assert a.read_table("k*").equals(b.read_table("k*"))


def test_exclusive_bytes_is_what_a_drop_frees(db: synarrow.SynaDB) -> None:
    fill(db)
    db.snapshot("v1")
    db.snapshot("v2")  # shares v1's files: neither holds them alone
    db.delete("a")
    db.compact(full=True)
    infos = {i.tag: i for i in db.snapshots()}
    assert infos["v1"].exclusive_bytes == infos["v2"].exclusive_bytes == 0
    assert infos["v1"].bytes == infos["v2"].bytes > 0
    db.drop_snapshot("v2")
    (v1,) = db.snapshots()
    assert v1.exclusive_bytes == v1.bytes
    before = sum(_data_files(db.path).values())
    db.drop_snapshot("v1")
    assert sum(_data_files(db.path).values()) == before - v1.exclusive_bytes


# -- retention and duplicates ------------------------------------------------------------------


def test_a_tag_taken_before_a_retention_rule_reads_the_same_later(db: synarrow.SynaDB) -> None:
    now = time.time_ns() // 1000
    ts = now - np.arange(10, 0, -1) * DAY + DAY // 2  # one point a day, 9.5 to 0.5 days ago
    db.append_batch("m", np.arange(10.0), timestamps=ts)
    db.snapshot("before")
    db.set_retention("*", "3d")
    db.compact(full=True)  # drops the expired points from the current files
    assert db.get_history_floats("m").tolist() == [7.0, 8.0, 9.0]
    db.snapshot("after")
    with synarrow.SynaDB(db.path, snapshot="before") as old:
        assert old.retention() == {}
        assert old.get_history_floats("m").tolist() == list(np.arange(10.0))
        assert old.get("m", at=int(ts[0])) == 0.0
    with synarrow.SynaDB(db.path, snapshot="after") as old:
        assert set(old.retention()) == {"*"}
        assert old.get_history_floats("m").tolist() == [7.0, 8.0, 9.0]


def test_points_that_expire_after_the_tag_stay_in_it(db: synarrow.SynaDB) -> None:
    db.set_retention("m", "1s")
    now = time.time_ns() // 1000
    db.append_batch("m", [1.0, 2.0, 3.0], timestamps=[now - 500_000, now - 400_000, now])
    db.snapshot("fresh")
    time.sleep(1.2)  # every point has expired in the current state now
    assert db.get("m") is None and db.keys() == []
    db.compact(full=True)
    db.close()
    with synarrow.SynaDB(db.path, snapshot="fresh") as old:
        assert old.keys() == ["m"]
        assert old.get_history_floats("m").tolist() == [1.0, 2.0, 3.0]
        assert old.get("m") == 3.0
        assert old.sql("SELECT count(*) AS n FROM history").to_pylist() == [{"n": 3}]
    with synarrow.SynaDB(db.path, NO_SYNC) as again:
        assert again.diff_snapshots("fresh").removed == ("m",)


def test_a_tag_reads_with_the_duplicates_policy_it_was_taken_with(db_path: Path) -> None:
    with synarrow.SynaDB(db_path, NO_SYNC) as db:
        db.append_batch("d", [1.0, 2.0, 3.0, 4.0], timestamps=[1, 1, 2, 2])
        db.snapshot("all")
    keep_last = synarrow.DbConfig(sync_on_write=False, auto_compact=False, duplicates="keep_last")
    with synarrow.SynaDB(db_path, keep_last) as db:
        assert db.get_history_floats("d").tolist() == [2.0, 4.0]
        db.snapshot("last")
        db.compact(full=True)  # rewrites the current files without the duplicates
    with synarrow.SynaDB(db_path, NO_SYNC) as db:  # the stored policy: keep_last now
        with synarrow.SynaDB(db_path, snapshot="all") as old:
            assert old.config.duplicates == "keep_all"
            assert old.get_history_floats("d").tolist() == [1.0, 2.0, 3.0, 4.0]
            assert old.get("d", at=1) == 2.0
        with synarrow.SynaDB(db_path, snapshot="last") as old:
            assert old.get_history_floats("d").tolist() == [2.0, 4.0]
        rows = db.sql("SELECT count(*) AS n FROM history", snapshot="all").to_pylist()
        assert rows == [{"n": 4}]
        assert db.diff_snapshots("all", "last").changed == ("d",)


# -- concurrency -------------------------------------------------------------------------------


def test_tags_taken_while_a_thread_writes_and_compacts_hold_consistent_prefixes(
    db_path: Path,
) -> None:
    """Each key is appended 0, 1, 2, ... in time order by a writer thread with automatic
    compaction on; every tag must read, per key, exactly 0..n-1 for some n, and count them."""
    cfg = synarrow.DbConfig(sync_on_write=False, auto_compact=True, compact_threshold_bytes=4096)
    db = synarrow.SynaDB(db_path, cfg)
    stop = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            i = 0
            while not stop.is_set():
                for k in range(4):
                    db.append(f"k{k}", float(i), timestamp=i)
                if i % 50 == 49:
                    db.append_batch(
                        "b", np.arange(i - 49, i + 1.0), timestamps=np.arange(i - 49, i + 1)
                    )
                i += 1
        except BaseException as exc:  # reported below
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for t in range(12):
            time.sleep(0.01)
            db.snapshot(f"t{t}")
    finally:
        stop.set()
        writer.join()
    assert not errors
    db.close()
    sizes = []
    with synarrow.SynaDB(db_path, readonly=True) as ro:
        infos = ro.snapshots()
    for info in infos:
        with synarrow.SynaDB(db_path, snapshot=info.tag) as old:
            total = 0
            for key in old.keys():
                got = old.get_history_floats(key)
                assert got.tolist() == list(range(len(got))), (info.tag, key)
                total += len(got)
            assert info.entries == total
            sizes.append(total)
    assert sizes == sorted(sizes) and sizes[-1] > sizes[0]


def test_drops_racing_opens_of_the_same_tag(db: synarrow.SynaDB) -> None:
    """A drop and an open of one tag at the same moment: either the drop is refused (the
    reader was first, and reads the whole tag) or the open finds no tag; nothing else."""
    fill(db)
    outcomes: set[str] = set()
    for r in range(40):
        db.snapshot(f"r{r}")
        seen: list[str] = []

        def read(tag: str = f"r{r}", seen: list[str] = seen) -> None:
            try:
                with synarrow.SynaDB(db.path, snapshot=tag) as old:
                    assert old.get_history_floats("a").tolist() == list(np.arange(100.0))
                    seen.append("read")
            except SnapshotNotFoundError:
                seen.append("gone")

        reader = threading.Thread(target=read)
        reader.start()
        try:
            db.drop_snapshot(f"r{r}")
            dropped = True
        except SnapshotInUseError:
            dropped = False
        reader.join()
        assert seen in (["read"], ["gone"])
        if not dropped:
            assert seen == ["read"]
            db.drop_snapshot(f"r{r}")  # the reader has closed
        outcomes.add(f"{dropped}-{seen[0]}")
    assert db.snapshots() == []


def test_check_verifies_the_files_only_a_tag_pins(db_path: Path) -> None:
    with synarrow.SynaDB(db_path, NO_SYNC) as db:
        fill(db)
        db.snapshot("v1")
        db.delete("a")
        db.compact(full=True)
    pinned = [n for n in _data_files(db_path) if n.startswith("g000001-0")]
    assert pinned
    report = check_database(db_path)
    assert report.ok
    # Found: the files v1 pins are reported as leftovers "removed on the next writable open".
    assert not [w for w in report.warnings if pinned[0] in w and "removed" in w]
    target = db_path / "columnar" / pinned[0]
    raw = bytearray(target.read_bytes())
    raw[100] ^= 0xFF
    target.write_bytes(bytes(raw))
    with synarrow.SynaDB(db_path, snapshot="v1") as old, pytest.raises(CorruptionError):
        old.get_history_floats("a")
    assert not check_database(db_path).ok  # Found: damage to a tag's own files passes check


def test_diff_counts_apply_retention_to_slices_starting_at_the_epoch(db: synarrow.SynaDB) -> None:
    """Found: a stored slice whose first timestamp is 0 was counted whole, expired entries
    included (``first_ts or cutoff`` took 0 for "no first timestamp")."""
    now = time.time_ns() // 1000
    db.append_batch("m", [1.0, 2.0, 3.0], timestamps=[0, 1, now])
    db.compact(full=True)
    db.snapshot("a")
    db.set_retention("m", "1d")
    db.snapshot("b")  # the same files, read with the rule
    with synarrow.SynaDB(db.path, snapshot="b") as old:
        assert old.get_history_floats("m").tolist() == [3.0]
    diff = db.diff_snapshots("a", "b")
    assert diff.changed == ("m",)
    assert (diff.changes["m"].entries_before, diff.changes["m"].entries_after) == (3, 1)


def test_a_new_tag_beside_an_unreadable_record_is_made_and_reported(db: synarrow.SynaDB) -> None:
    """Found: snapshot() wrote the new tag, then listed every record for its answer and
    raised the other record's CorruptionError: the caller saw a failure, and a retry
    SnapshotExistsError."""
    fill(db)
    db.snapshot("v1")
    (db.path / "snapshots" / "bad.json").write_bytes(b"{}")
    info = db.snapshot("v2", note="beside a damaged record")
    assert (info.tag, info.note, info.entries) == ("v2", "beside a damaged record", 102)
    assert info.exclusive_bytes == 0  # no drop frees anything while a record is unreadable
    with synarrow.SynaDB(db.path, snapshot="v2") as old:
        assert old.get_history_floats("a").tolist() == list(np.arange(100.0))
