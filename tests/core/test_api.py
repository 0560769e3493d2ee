"""The core SynaDB API and its errors: every bad input gets a clear SynaError subclass and
leaves what was written before intact."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import synarrow
from synarrow import DbConfig
from synarrow.engine import batches


def test_quick_start(db: synarrow.SynaDB) -> None:
    assert db.append("temperature", 23.5) == 0
    assert db.append("count", 42) == 1
    assert db.append("name", "sensor-1") == 2
    db.append("temperature", 24.0)
    assert db.get("temperature") == 24.0
    assert db.get_float("temperature") == 24.0
    assert db.get_int("count") == 42
    assert db.get_text("name") == "sensor-1"
    assert db.get_history_tensor("temperature").tolist() == [23.5, 24.0]
    table = db.get_history("temperature")
    assert table.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert db.keys() == ["count", "name", "temperature"]
    assert len(db) == 3 and "count" in db and "nope" not in db


def test_typed_puts_and_gets(db: synarrow.SynaDB) -> None:
    db.put_float("f", 2)
    db.put_int("i", np.int32(5))
    db.put_text("t", "")
    db.put_bytes("b", bytearray(b""))
    db.put_vector("v", [1, 2, 3])
    assert db.get_float("f") == 2.0 and isinstance(db.get_float("f"), float)
    assert db.get_int("i") == 5
    assert db.get_text("t") == ""
    assert db.get_bytes("b") == b""
    assert db.get_vector("v").tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(synarrow.TypeMismatchError, match="'f' holds a float"):
        db.get_int("f")
    with pytest.raises(synarrow.KeyNotFoundError):
        db.get_float("missing")
    for bad in (
        lambda: db.put_float("x", "1"),
        lambda: db.put_int("x", 1.5),
        lambda: db.put_text("x", b"a"),
        lambda: db.put_bytes("x", "a"),
        lambda: db.put_float("x", True),
    ):
        with pytest.raises(synarrow.InvalidValueError):
            bad()
    assert "x" not in db


def test_get_returns_a_copy_of_vectors(db: synarrow.SynaDB) -> None:
    db.append("v", np.array([1.0, 2.0], dtype=np.float32))
    v = db.get("v")
    v[0] = 99
    assert db.get("v").tolist() == [1.0, 2.0]


@pytest.mark.parametrize(
    ("key", "error"),
    [
        ("", synarrow.InvalidKeyError),
        ("k" * 65536, synarrow.InvalidKeyError),
        (42, synarrow.InvalidKeyError),
        (None, synarrow.InvalidKeyError),
        (b"bytes-key", synarrow.InvalidKeyError),
        ("\udcff", synarrow.InvalidKeyError),
    ],
)
def test_bad_keys_are_refused_and_nothing_is_damaged(
    db: synarrow.SynaDB, key: object, error: type
) -> None:
    db.append("good", 1.0)
    with pytest.raises(error) as info:
        db.append(key, 1.0)  # type: ignore[arg-type]
    assert isinstance(info.value, synarrow.SynaError) and isinstance(info.value, ValueError)
    with pytest.raises(error):
        db.append_batch(key, [1.0])  # type: ignore[arg-type]
    with pytest.raises(error):
        db.get(key)  # type: ignore[arg-type]
    assert db.keys() == ["good"] and db.get_history_floats("good").tolist() == [1.0]


def test_longest_key_is_accepted(db: synarrow.SynaDB) -> None:
    key = "é" * 32767  # 65534 UTF-8 bytes
    db.append(key, 1)
    assert db.get(key) == 1


@pytest.mark.parametrize(
    "value",
    [
        True,
        1 << 63,
        -(1 << 63) - 1,
        object(),
        [1, 2],
        {"a": 1},
        np.zeros((2, 2)),
        "\ud800",
        np.array([], dtype=np.float32),
        np.array(["x"]),
    ],
)
def test_bad_values_are_refused(db: synarrow.SynaDB, value: object) -> None:
    db.append("k", 1.0)
    with pytest.raises(synarrow.InvalidValueError):
        db.append("k", value)
    assert db.get_history_floats("k").tolist() == [1.0]


def test_edge_values_are_stored_faithfully(db_path: Path) -> None:
    values = [
        float("nan"),
        float("inf"),
        float("-inf"),
        -0.0,
        1e-310,
        (1 << 63) - 1,
        -(1 << 63),
        "",
        "nul\x00inside",
        b"",
        b"\x00" * 3,
        None,
    ]
    with synarrow.SynaDB(db_path, DbConfig(sync_on_write=False)) as db:
        for v in values:
            db.append("k", v)
    with synarrow.SynaDB(db_path) as db:
        got = [
            next((x for x in row.values() if x is not None), None) if isinstance(row, dict) else row
            for row in db.get_history("k").column("value").to_pylist()
        ]
    assert np.isnan(got[0]) and got[1:3] == [float("inf"), float("-inf")]
    assert str(got[3]) == "-0.0" and got[4] == 1e-310
    assert got[5:] == values[5:]


def test_deleted_keys(db: synarrow.SynaDB) -> None:
    db.append("k", 1.0)
    assert db.delete("k") is True
    assert db.delete("k") is False and db.delete("never") is False
    assert db.get("k") is None and db.get("k", "dflt") == "dflt"
    assert not db.exists("k") and db.keys() == []
    with pytest.raises(synarrow.KeyNotFoundError, match="'k' not found"):
        db.get_history("k")
    with pytest.raises(synarrow.KeyNotFoundError):
        db.get_float("k")
    db.append("k", 2.0)
    assert db.get_history_floats("k").tolist() == [2.0]


def test_keys_glob_patterns(db: synarrow.SynaDB) -> None:
    for k in ["sensor/1", "sensor/2", "sensor/10", "other", "sensor[x]"]:
        db.append(k, 1)
    assert db.keys("sensor/*") == ["sensor/1", "sensor/10", "sensor/2"]
    assert db.keys("sensor/?") == ["sensor/1", "sensor/2"]
    assert db.keys("other") == ["other"] and db.keys("nothing*") == []
    assert db.keys("sensor[[]x]") == ["sensor[x]"]
    with pytest.raises(synarrow.InvalidArgumentError):
        db.keys(3)  # type: ignore[arg-type]


def test_append_batch_inputs_and_timestamps(db: synarrow.SynaDB) -> None:
    ts = np.array(["2026-01-01T00:00:00", "2026-01-01T01:00:00"], dtype="datetime64[s]")
    assert db.append_batch("np", np.array([1.0, 2.0]), timestamps=ts) == 2
    db.append_batch(
        "arrow", pa.array([1, 2, 3]), timestamps=pa.array([0, 1, 2], pa.timestamp("ms", tz="UTC"))
    )
    db.append_batch("list", [1.5, 2], timestamps=[dt.datetime(2026, 1, 1), 1_700_000_000_000_000])
    db.append_batch("text", pa.array(["a", "bb"]).slice(1))
    db.append_batch("vec", np.ones((3, 4), dtype=np.float64))
    db.append_batch("ints", np.array([1, 2], dtype=np.uint8))
    assert db.get_history("np").column("ts").to_pylist()[1] == dt.datetime(
        2026, 1, 1, 1, tzinfo=dt.timezone.utc
    )
    assert db.get_history("arrow").column("ts").to_numpy().astype("int64").tolist() == [
        0,
        1000,
        2000,
    ]
    assert db.get_history_floats("list").tolist() == [2.0, 1.5]  # sorted by timestamp
    assert db.get_history("text").column("value").to_pylist() == ["bb"]
    assert db.get_history_tensor("vec").shape == (3, 4)
    assert db.get("ints") == 2
    assert db.append_batch("empty", np.array([])) == 0 and "empty" not in db
    for bad, match in [
        (lambda: db.append_batch("x", [1.0, None]), "None"),
        (lambda: db.append_batch("x", np.array([True])), "bool"),
        (lambda: db.append_batch("x", [1.0], timestamps=[1, 2]), "2 timestamps for 1"),
        (lambda: db.append_batch("x", pa.array([1.0, None])), "nulls"),
        (lambda: db.append_batch("x", np.array([2**64 - 1], dtype=np.uint64)), "int64"),
        (lambda: db.append_batch("x", {"a": 1}), "unsupported"),
    ]:
        with pytest.raises(synarrow.SynaError, match=match):
            bad()
    assert "x" not in db


def test_big_batch_spans_several_entries(
    db: synarrow.SynaDB, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = 16 << 20  # one entry's value bytes, lowered from max_batch_entry_bytes
    monkeypatch.setattr(batches, "entry_bytes", lambda _size: limit)
    values = np.arange(9_000_000, dtype=np.float64)  # 72 MB: five entries
    db.append_batch("big", values)
    assert np.array_equal(db.get_history_floats("big"), values)
    assert db.stats()["next_sequence"] == -(-values.nbytes // limit) == 5


def test_history_tensor_dtypes(db: synarrow.SynaDB) -> None:
    db.append_batch("i", np.array([1, 2, 3]))
    assert db.get_history_tensor("i", dtype=np.int32).dtype == np.int32
    db.append("i", 1 << 40)
    with pytest.raises(synarrow.InvalidValueError, match="out of the range of int32"):
        db.get_history_tensor("i", dtype=np.int32)
    db.append("t", "text")
    with pytest.raises(synarrow.TypeMismatchError):
        db.get_history_tensor("t")
    with pytest.raises(synarrow.TypeMismatchError):
        db.get_history_floats("t")


def test_closed_database(db_path: Path) -> None:
    db = synarrow.SynaDB(db_path)
    db.append("k", 1.0)
    db.close()
    db.close()  # idempotent
    assert db.closed
    for op in (
        lambda: db.append("k", 2.0),
        lambda: db.get("k"),
        lambda: db.keys(),
        lambda: len(db),
        lambda: db.stats(),
        lambda: db.get_history("k"),
    ):
        with pytest.raises(synarrow.DatabaseClosedError):
            op()


def test_path_that_is_a_file_is_refused_untouched(tmp_path: Path) -> None:
    f = tmp_path / "file.txt"
    f.write_bytes(b"precious")
    with pytest.raises(synarrow.InvalidPathError):
        synarrow.SynaDB(f)
    assert f.read_bytes() == b"precious"
    other = tmp_path / "dir"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(synarrow.InvalidPathError, match="not a synarrow database"):
        synarrow.SynaDB(other)
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    with pytest.raises(synarrow.InvalidPathError):
        synarrow.SynaDB(tmp_path / "missing", readonly=True)


def test_config_is_stored_and_validated(db_path: Path) -> None:
    with synarrow.SynaDB(db_path, DbConfig(sync_on_write=False, delta=False)):
        pass
    with synarrow.SynaDB(db_path) as db:
        assert db.config.sync_on_write is False and db.config.delta is False
    with synarrow.open(db_path, auto_compact=False) as db:
        assert db.config.auto_compact is False and db.config.delta is False
    for bad in [
        dict(sync_on_write=1),
        dict(compression="gzip"),
        dict(max_log_file_size=10),
        dict(columnar_compression="snappy"),
    ]:
        with pytest.raises(synarrow.ConfigError):
            DbConfig(**bad)  # type: ignore[arg-type]
    with pytest.raises(synarrow.InvalidArgumentError):
        synarrow.SynaDB(db_path, config={"sync_on_write": False})  # type: ignore[arg-type]


def test_readonly_handle(db_path: Path) -> None:
    with synarrow.SynaDB(db_path) as writer:
        writer.append("k", 1.0)
        with synarrow.SynaDB(db_path, readonly=True) as reader:
            assert reader.get("k") == 1.0
            with pytest.raises(synarrow.ReadOnlyError):
                reader.append("k", 2.0)
            with pytest.raises(synarrow.ReadOnlyError):
                reader.compact()


def test_bytes_per_float_entry_with_delta(db: synarrow.SynaDB) -> None:
    key = "sensor/0042"
    for i in range(10_000):
        db.append(key, round(20 + np.sin(i / 100), 2))
    db.flush()
    size = sum(f.stat().st_size for f in (db.path / "log").glob("*.log"))
    per_entry = size / 10_000
    # A plain entry is 19 header bytes + the key + 8 value bytes (38 here); delta coding of
    # this slowly changing, 2-decimal series leaves about 4 bytes of each value (33.95 B per
    # entry measured; the data is deterministic). At most 4.5 value bytes must remain.
    assert per_entry <= 19 + len(key) + 4.5


def _run(code: str, *args: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
    kwargs = {}
    if user is not None:
        kwargs["user"] = user
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=120,
        **kwargs,  # type: ignore[arg-type]
    )


def test_full_disk_keeps_acknowledged_data(tmp_path: Path) -> None:
    """A real write failure: the file size limit (RLIMIT_FSIZE) makes write() fail with EFBIG."""
    code = """
        import resource, signal, sys, synarrow
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        path = sys.argv[1]
        with synarrow.SynaDB(path, synarrow.DbConfig(sync_on_write=True, compression=None)):
            pass
        hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, hard))
        db = synarrow.SynaDB(path)
        acked = 0
        try:
            for i in range(10_000):
                db.append("k", "x" * 100 + str(i))
                acked = i + 1
        except synarrow.StorageFullError as exc:
            print("FULL", acked, exc, flush=True)
        try:
            db.append("k", "y" * 100)
        except synarrow.StorageFullError:
            print("STILL FULL", flush=True)
        resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
        db.append("k", "after")
        db.close()
        print("DONE", acked)
    """
    out = _run(code, str(tmp_path / "db"))
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("FULL") and "STILL FULL" in lines and lines[-1].startswith("DONE")
    acked = int(lines[-1].split()[1])
    with synarrow.SynaDB(tmp_path / "db") as db:
        values = db.get_history("k").column("value").to_pylist()
    assert values == ["x" * 100 + str(i) for i in range(acked)] + ["after"]


def _without_privileges() -> list[str]:
    """Command prefix that makes a child obey file permissions (root ignores them)."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: permissions would not apply")
    return ["setpriv", "--inh-caps=-all", "--bounding-set=-all"]


def test_read_only_directory(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with synarrow.SynaDB(path) as db:
        db.append("k", 1.0)
    before = {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}
    for p in [path, *path.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
    parent = tmp_path / "locked"
    parent.mkdir(mode=0o555)
    code = """
        import sys, synarrow
        for target in sys.argv[1:]:
            try:
                synarrow.SynaDB(target)
            except synarrow.ReadOnlyError as exc:
                print("READONLY", exc)
        with synarrow.SynaDB(sys.argv[1], readonly=True) as db:
            print("VALUE", db.get("k"))
    """
    try:
        out = subprocess.run(
            [
                *_without_privileges(),
                sys.executable,
                "-c",
                textwrap.dedent(code),
                str(path),
                str(parent / "new.db"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        for p in [path, *path.rglob("*"), parent]:
            p.chmod(0o755 if p.is_dir() else 0o644)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("READONLY") == 2 and "VALUE 1.0" in out.stdout
    assert {p: p.read_bytes() for p in path.rglob("*") if p.is_file()} == before


def test_append_with_explicit_timestamp(db: synarrow.SynaDB) -> None:
    when = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc)
    db.append("k", 1.0, timestamp=when)
    db.append("k", "two", timestamp=np.datetime64("2026-03-01T12:00:01"))
    db.append("k", 3, timestamp=1_772_366_402_000_000)
    ts = db.get_history("k").column("ts").to_pylist()
    assert ts[0] == when and (ts[1] - when).total_seconds() == 1.0
    assert ts[2] == dt.datetime(2026, 3, 1, 12, 0, 2, tzinfo=dt.timezone.utc)
    for bad in ("yesterday", 1 << 70, True):
        with pytest.raises(synarrow.InvalidArgumentError):
            db.append("k", 4.0, timestamp=bad)
    assert len(db.get_history("k")) == 3


def test_core_paths_import_no_optional_library(tmp_path: Path) -> None:
    """`import synarrow` and the core store (write, compact, reopen, read, SQL) never pull in
    pandas, polars, torch or matplotlib (pandas alone costs about half a second)."""
    code = """
        import sys, numpy as np, synarrow
        db = synarrow.SynaDB(sys.argv[1], synarrow.DbConfig(sync_on_write=False))
        db.append_batch("k", np.arange(10.0))
        db.append("t", "x")
        db.compact()
        db.close()
        db = synarrow.SynaDB(sys.argv[1])
        db.get_history_floats("k"); db.get("t"); db.get_history("t")
        db.sql("SELECT count(*) FROM history")
        print(sorted(m for m in ("pandas", "polars", "torch", "matplotlib") if m in sys.modules))
    """
    out = _run(code, str(tmp_path / "db"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("with_ts", [False, True])
def test_large_batches_are_read_from_the_log_not_copied(db_path: Path, with_ts: bool) -> None:
    """A big uncompressed batch is viewed through a mapping of the segment: the caller may
    reuse its array, the values stay exact, and reopen, compaction agree."""
    values = np.random.default_rng(2).random(300_000)
    vectors = np.random.default_rng(3).random((20_000, 16)).astype(np.float32)
    ts = np.arange(300_000, dtype=np.int64) + 1_700_000_000_000_000 if with_ts else None
    with synarrow.SynaDB(db_path, DbConfig(sync_on_write=False, auto_compact=False)) as db:
        db.append("small", 1.0)  # so the batch does not start at an aligned offset
        db.append_batch("f", values, timestamps=ts)
        db.append_batch("v", vectors)
        expected_f, expected_v = values.copy(), vectors.copy()
        values[:] = -1.0
        vectors[:] = -1.0
        got = db.get_history_floats("f")
        assert np.array_equal(got, expected_f)
        assert not got.flags.writeable
        assert np.array_equal(db.get_history_tensor("v"), expected_v)
        if with_ts:
            assert db.get_history("f").column("ts").to_numpy().astype(np.int64).tolist() == (
                ts.tolist()  # type: ignore[union-attr]
            )
    with synarrow.SynaDB(db_path) as db:
        assert np.array_equal(db.get_history_floats("f"), expected_f)
        db.compact()
        assert np.array_equal(db.get_history_floats("f"), expected_f)
        assert np.array_equal(db.get_history_tensor("v"), expected_v)


def test_default_timestamps_strictly_increase(db: synarrow.SynaDB) -> None:
    for i in range(2000):
        db.append("k", float(i))
        if i % 500 == 0:
            db.append("t", "x")
    ts = db.get_history("k").column("ts").to_numpy().astype(np.int64)
    assert np.all(np.diff(ts) > 0)
