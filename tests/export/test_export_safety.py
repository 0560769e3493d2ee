"""An export never deletes or damages anything but an earlier export, leaves nothing partial
when it fails, and keeps keys that differ only after a NUL apart (issue 11's export cases)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from engine_rows import EXPORT_COLUMNS

import synarrow
from synarrow.cli import main
from synarrow.errors import ExportError, InvalidArgumentError, SynaError
from synarrow.export import export_dataset, export_file, import_dataset, read_dataset

NO_SYNC = synarrow.DbConfig(sync_on_write=False, auto_compact=False)


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``root``: its SHA-256 and mtime (to show nothing was touched)."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            out[str(path.relative_to(root))] = (digest, path.stat().st_mtime_ns)
    return out


def _make_db(path: Path, keys: dict[str, list[object]]) -> Path:
    with synarrow.SynaDB(path, config=NO_SYNC) as db:
        for key, values in keys.items():
            for v in values:
                db.append(key, v)
    return path


def test_cli_overwrite_of_the_current_directory_deletes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    _make_db(work / "my.db", {"a": [1.0, 2.0]})
    (work / "notes.txt").write_text("keep me")
    before = _snapshot(work)
    monkeypatch.chdir(work)
    assert main(["export", "my.db", ".", "--overwrite"]) != 0
    assert "holds the database" in capsys.readouterr().err
    assert main(["export", "my.db", "."]) != 0
    assert _snapshot(work) == before
    with synarrow.SynaDB(work / "my.db", readonly=True) as db:
        assert db.get_history("a").column("value").to_pylist() == [1.0, 2.0]


def test_overwrite_only_replaces_an_earlier_export(tmp_path: Path) -> None:
    db_path = _make_db(tmp_path / "src.db", {"a": [1.0], "b": [2.0], "c": ["x"]})
    out = tmp_path / "out"
    with synarrow.SynaDB(db_path, readonly=True) as db:
        export_dataset(db, out, keys=["a", "b"])
        (out / ".synarrow-staging-0123abcd").mkdir()  # a killed export's leftovers
        export_dataset(db, out, keys=["c"], overwrite=True)
        assert sorted(os.listdir(out)) == ["key=c"]
        assert read_dataset(out).to_table().column("text").to_pylist() == ["x"]

        foreign = tmp_path / "foreign"
        (foreign / "key=a").mkdir(parents=True)
        pq.write_table(pa.table({"v": [1]}), foreign / "key=a" / "part-0.parquet")
        user_file = tmp_path / "mixed"
        export_dataset(db, user_file, keys=["a"])
        (user_file / "key=a" / "notes.txt").write_text("mine")
        for target in (foreign, user_file):
            before = _snapshot(target)
            with pytest.raises(ExportError, match="not part of a synarrow export"):
                export_dataset(db, target, overwrite=True)
            assert _snapshot(target) == before


def test_an_export_never_goes_into_or_over_a_database(tmp_path: Path) -> None:
    db_path = _make_db(tmp_path / "src.db", {"a": [1.0]})
    other = _make_db(tmp_path / "holder" / "other.db", {"z": [3.0]})
    before = {p: _snapshot(p) for p in (db_path, tmp_path / "holder")}
    with synarrow.SynaDB(db_path, readonly=True) as db:
        for target, match in [
            (db_path, "is a synarrow database"),
            (db_path / "log" / "out", "inside"),
            (other, "is a synarrow database"),
            (tmp_path / "holder", "not part of a synarrow export"),
        ]:
            with pytest.raises(ExportError, match=match):
                export_dataset(db, target, overwrite=True)
        with pytest.raises(ExportError, match="synarrow database"):
            export_file(db, db_path / "all.parquet", overwrite=True)
        export_file(db, tmp_path / "beside.parquet")  # next to a database is fine
    assert {p: _snapshot(p) for p in before} == before


def test_a_symlinked_target_is_refused(tmp_path: Path) -> None:
    db_path = _make_db(tmp_path / "src.db", {"a": [1.0]})
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    with (
        synarrow.SynaDB(db_path, readonly=True) as db,
        pytest.raises(ExportError, match="symbolic link"),
    ):
        export_dataset(db, tmp_path / "link")
    assert os.listdir(tmp_path / "elsewhere") == []


def test_keys_that_differ_after_a_nul_stay_apart(tmp_path: Path) -> None:
    keys = {"k\x00a": [1.0, 2.0], "k\x00b": [3.0], "k": [4.0], "k%00a": [5.0]}
    db_path = _make_db(tmp_path / "src.db", keys)
    with synarrow.SynaDB(db_path, readonly=True) as db:
        export_dataset(db, tmp_path / "out")
    names = sorted(os.listdir(tmp_path / "out"))
    assert names == sorted(["key=k", "key=k%00a", "key=k%00b", "key=k%2500a"])
    with synarrow.SynaDB(tmp_path / "copy.db") as copy:
        assert import_dataset(copy, tmp_path / "out").keys == 4
        got = {k: copy.get_history(k).column("value").to_pylist() for k in copy.keys()}
    assert got == keys


def test_several_types_and_ints_above_2_53(tmp_path: Path) -> None:
    big = 2**53 + 1
    db_path = _make_db(tmp_path / "src.db", {"a": [1.0], "b": [big], "c": [-(2**63)]})
    with synarrow.SynaDB(db_path, readonly=True) as db:
        db.export_dataset(tmp_path / "out")
        export_file(db, tmp_path / "all.parquet")
        export_file(db, tmp_path / "all.csv")
    table = read_dataset(tmp_path / "out").to_table().sort_by("key")
    assert table.column("int_value").to_pylist() == [None, big, -(2**63)]
    assert table.column("value").to_pylist() == [1.0, float(big), float(-(2**63))]
    assert table.column("type").to_pylist() == ["float", "int", "int"]
    for source in ("out", "all.parquet", "all.csv"):
        with synarrow.SynaDB(tmp_path / f"copy-{source}.db") as copy:
            import_dataset(copy, tmp_path / source)
            assert copy.get("b") == big and copy.get("c") == -(2**63), source


def test_the_schema_does_not_depend_on_the_keys(tmp_path: Path) -> None:
    floats = _make_db(tmp_path / "f.db", {"a": [1.0]})
    both = _make_db(tmp_path / "b.db", {"a": [1.0], "t": ["text"], "i": [3]})
    schemas = []
    for path in (floats, both):
        with synarrow.SynaDB(path, readonly=True) as db:
            db.export_dataset(tmp_path / f"{path.name}-out")
        schemas.append(pq.read_schema(tmp_path / f"{path.name}-out" / "key=a" / "part-0.parquet"))
    assert schemas[0] == schemas[1]
    assert schemas[0].names == EXPORT_COLUMNS


def test_refused_keys_write_nothing(tmp_path: Path) -> None:
    db_path = _make_db(
        tmp_path / "src.db", {"ok": [1.0], "k" * 300: [2.0], "__HIVE_DEFAULT_PARTITION__": [3.0]}
    )
    with synarrow.SynaDB(db_path, readonly=True) as db:
        with pytest.raises(InvalidArgumentError, match="too long"):
            export_dataset(db, tmp_path / "out", keys=["ok", "k" * 300])
        with pytest.raises(InvalidArgumentError, match="null partition"):
            export_dataset(db, tmp_path / "out", keys=["__HIVE_DEFAULT_PARTITION__"])
        assert not (tmp_path / "out").exists()
        # One file with a key column holds any key.
        export_dataset(db, tmp_path / "one", partition_by=None)
        keys = pq.read_table(tmp_path / "one" / "part-0.parquet").column("key").to_pylist()
    assert sorted(keys) == sorted(["ok", "k" * 300, "__HIVE_DEFAULT_PARTITION__"])


FAILING_EXPORT = textwrap.dedent(
    """
    import resource, signal, sys
    import synarrow
    from synarrow.errors import ExportError
    from synarrow.export import export_dataset, export_file

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))
    db = synarrow.SynaDB(sys.argv[1], readonly=True)
    failures = 0
    for call in (
        lambda: export_dataset(db, sys.argv[2]),
        lambda: export_dataset(db, sys.argv[3], overwrite=True),
        lambda: export_file(db, sys.argv[4]),
    ):
        try:
            call()
        except ExportError as exc:
            assert "nothing was written" in str(exc), exc
            failures += 1
    print("failures", failures)
    """
)


def test_a_failed_export_leaves_no_partial_target(tmp_path: Path) -> None:
    db_path = tmp_path / "big.db"
    rng = np.random.default_rng(7)
    with synarrow.SynaDB(db_path, config=NO_SYNC) as db:
        db.append("small", 1.0)
        for i in range(4):
            db.append_batch(f"noise/{i}", rng.standard_normal(100_000))
    with synarrow.SynaDB(db_path, readonly=True) as db:
        export_dataset(db, tmp_path / "old", keys=["small"])
    before = _snapshot(tmp_path / "old")
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            FAILING_EXPORT,
            str(db_path),
            str(tmp_path / "new"),
            str(tmp_path / "old"),
            str(tmp_path / "all.parquet"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "failures 3" in done.stdout
    assert not (tmp_path / "new").exists()
    assert _snapshot(tmp_path / "old") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.db", "old"]


def test_export_error_is_a_synarrow_error() -> None:
    assert issubclass(ExportError, SynaError) and issubclass(ExportError, OSError)


def test_a_key_named_twice_is_exported_once(tmp_path: Path) -> None:
    db_path = _make_db(tmp_path / "src.db", {"a": [1.0, 2.0], "b": [3.0]})
    with synarrow.SynaDB(db_path, readonly=True) as db:
        result = export_dataset(db, tmp_path / "out", keys=["a", "b", "a"])
    assert (result.keys, result.rows) == (2, 3)
    assert read_dataset(tmp_path / "out").to_table().num_rows == 3
