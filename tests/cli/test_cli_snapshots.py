"""``synarrow snapshot / snapshots / diff`` and ``--snapshot TAG`` on the reading commands,
run in-process through ``main([...])`` on real databases."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

import synarrow
from synarrow.cli import main

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in microseconds
CONFIG = synarrow.DbConfig(sync_on_write=False, auto_compact=False)


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def tagged(tmp_path: Path) -> Path:
    """Tag ``v1`` holds a (3 floats), b (text), old (int); the current state changed all of
    them after it (a grown, b deleted, old range-deleted away, c new) and was compacted."""
    path = tmp_path / "s.db"
    with synarrow.SynaDB(path, CONFIG) as db:
        db.append_batch("a", [1.0, 2.0, 3.0], timestamps=T0 + np.arange(3) * 1_000_000)
        db.append("b", "before", timestamp=T0)
        db.append("old", 7, timestamp=T0)
        db.snapshot("v1", note="the first")
        db.append("a", 4.0, timestamp=T0 + 3_000_000)
        db.delete("b")
        db.delete_range("old", None, None)
        db.append("c", 1.5, timestamp=T0)
        db.compact(full=True)
    return path


def test_snapshot_snapshots_and_drop(capsys: pytest.CaptureFixture[str], tagged: Path) -> None:
    code, out, _ = run(capsys, "snapshot", tagged, "v2", "--note", "after")
    assert code == 0 and "snapshot v2" in out and "2 keys, 5 entries" in out
    code, out, _ = run(capsys, "snapshots", tagged)
    assert code == 0
    assert out.index("v1") < out.index("v2") and "the first" in out and "after" in out
    code, out, _ = run(capsys, "snapshots", tagged, "--json")
    rows = json.loads(out)
    assert [r["tag"] for r in rows] == ["v1", "v2"]
    assert rows[0]["keys"] == 3 and rows[0]["entries"] == 5 and rows[0]["note"] == "the first"
    assert rows[0]["exclusive_bytes"] > 0  # compacted past: only v1 keeps its files
    assert {"created", "bytes", "generation"} <= set(rows[0])
    code, out, _ = run(capsys, "snapshot", tagged, "v1", "--drop", "--json")
    assert code == 0 and json.loads(out) == {
        "dropped": "v1",
        "freed_bytes": rows[0]["exclusive_bytes"],
    }
    code, out, _ = run(capsys, "snapshots", tagged, "--json")
    assert [r["tag"] for r in json.loads(out)] == ["v2"]
    with synarrow.SynaDB(tagged, readonly=True) as db:
        assert [i.tag for i in db.snapshots()] == ["v2"]


def test_diff_text_and_json(capsys: pytest.CaptureFixture[str], tagged: Path) -> None:
    code, out, _ = run(capsys, "diff", tagged, "v1")
    assert code == 0  # different, and still 0 (documented)
    lines = out.strip().splitlines()
    assert lines[:4] == [
        "~ a  (3 -> 4 entries)",
        "- b  (1 -> 0 entries)",
        "+ c  (0 -> 1 entries)",
        "- old  (1 -> 0 entries)",
    ]
    assert lines[-1].startswith("v1 -> current: 1 added, 2 removed, 1 changed, 0 unchanged")
    code, out, _ = run(capsys, "diff", tagged, "v1", "--json")
    body = json.loads(out)
    assert body["a"] == "v1" and body["b"] is None
    assert body["added"] == ["c"] and body["removed"] == ["b", "old"] and body["changed"] == ["a"]
    assert body["changes"]["a"] == {"kind": "changed", "entries_before": 3, "entries_after": 4}
    assert body["entries_before"] == 5 and body["entries_after"] == 5
    run(capsys, "snapshot", tagged, "v2")
    code, out, _ = run(capsys, "diff", tagged, "v2", "-q")
    assert code == 0 and out.strip() == (
        "v2 -> current: 0 added, 0 removed, 0 changed, 2 unchanged; entries of those keys 0 -> 0"
    )
    code, out, _ = run(capsys, "diff", tagged, "v1", "v2", "--json")
    assert json.loads(out)["changed"] == ["a"]


def test_reading_commands_read_the_tag(
    capsys: pytest.CaptureFixture[str], tagged: Path, tmp_path: Path
) -> None:
    snap = ("--snapshot", "v1")
    code, out, _ = run(capsys, "keys", tagged, *snap)
    assert code == 0 and out.split() == ["a", "b", "old"]
    assert run(capsys, "keys", tagged)[1].split() == ["a", "c"]
    code, out, _ = run(capsys, "get", tagged, "b", *snap)
    assert code == 0 and out.strip() == "before"
    code, out, _ = run(capsys, "history", tagged, "a", *snap, "--format", "csv")
    table = pcsv.read_csv(io.BytesIO(out.encode()))
    assert table.column("value").to_pylist() == [1.0, 2.0, 3.0]
    code, out, _ = run(
        capsys, "sql", tagged, "SELECT key, count(*) AS n FROM history GROUP BY key ORDER BY key",
        *snap, "--format", "json",
    )  # fmt: skip
    assert [json.loads(ln) for ln in out.splitlines()] == [
        {"key": "a", "n": 3},
        {"key": "b", "n": 1},
        {"key": "old", "n": 1},
    ]
    code, out, _ = run(capsys, "info", tagged, *snap, "--json")
    stats = json.loads(out)
    assert stats["keys"] == 3 and stats["entries"] == 5 and stats["snapshot"] == "v1"
    code, out, _ = run(capsys, "info", tagged, *snap)
    assert "snapshot         v1 (read-only)" in out
    code, out, _ = run(capsys, "info", tagged)
    assert "snapshots        1: v1" in out and "(read-only)" not in out
    assert json.loads(run(capsys, "info", tagged, "--json")[1])["snapshots"] == ["v1"]
    code, out, _ = run(capsys, "resample", tagged, "a", "1h", *snap, "--agg", "count", "-f", "json")
    assert json.loads(out)["value"] == 3
    target = tmp_path / "old.parquet"
    code, out, _ = run(capsys, "export", tagged, target, *snap)
    assert code == 0
    exported = pq.read_table(target)
    assert sorted(exported.column("key").to_pylist()) == ["a", "a", "a", "b", "old"]


def test_bad_snapshot_use_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], tagged: Path, tmp_path: Path
) -> None:
    def error(*argv: object) -> str:
        code, _, err = run(capsys, *argv)
        assert code == 1, argv
        (line,) = err.strip().splitlines()
        assert line.startswith("synarrow: error: ")
        return line

    assert "not found" in error("get", tagged, "a", "--snapshot", "nope")
    assert "not a safe name" in error("keys", tagged, "--snapshot", "../x")
    assert "already exists" in error("snapshot", tagged, "v1")
    assert "already exists" in error("snapshot", tagged, "V1")  # differs only in case
    assert "not a safe name" in error("snapshot", tagged, "a/b")
    assert "not found" in error("snapshot", tagged, "nope", "--drop")
    assert "--note" in error("snapshot", tagged, "v1", "--drop", "--note", "x")
    assert "not found" in error("diff", tagged, "nope")
    assert "read-only" in error("compact", tagged, "--snapshot", "v1")
    source = tmp_path / "rows.csv"
    source.write_text("key,ts,value\nz,1,1.0\n")
    assert "read-only" in error("import", tagged, source, "--snapshot", "v1")
    assert "--repair" in error("info", tagged, "--snapshot", "v1", "--repair")
    assert "no such database" in error("snapshots", tmp_path / "missing.db")
    # nothing of that wrote anything
    with synarrow.SynaDB(tagged, readonly=True) as db:
        assert db.keys() == ["a", "c"] and [i.tag for i in db.snapshots()] == ["v1"]


def test_drop_refused_while_the_tag_is_read(
    capsys: pytest.CaptureFixture[str], tagged: Path
) -> None:
    with synarrow.SynaDB(tagged, snapshot="v1") as reader:
        code, _, err = run(capsys, "snapshot", tagged, "v1", "--drop")
        assert code == 1 and "open for reading" in err
        assert reader.get("b") == "before"
    code, _, _ = run(capsys, "snapshot", tagged, "v1", "--drop")
    assert code == 0


def test_drop_next_to_a_damaged_record(capsys: pytest.CaptureFixture[str], tagged: Path) -> None:
    run(capsys, "snapshot", tagged, "v2")
    (tagged / "snapshots" / "v2.json").write_text("{damaged")
    code, out, err = run(capsys, "snapshots", tagged)
    assert code == 1 and "v2.json" in err and "damaged" in err
    code, out, _ = run(capsys, "info", tagged)
    assert code == 0 and "a snapshot record is damaged" in out
    code, out, _ = run(capsys, "snapshot", tagged, "v1", "--drop", "--json")
    assert code == 0 and json.loads(out) == {"dropped": "v1", "freed_bytes": None}
    assert not (tagged / "snapshots" / "v1.json").exists()


def test_export_delta_commits_tags_as_versions(
    capsys: pytest.CaptureFixture[str], tagged: Path, tmp_path: Path
) -> None:
    """``export --format delta --snapshot TAG``: one table version per tag (every key of
    the fixture changed after v1: a full version, with its reason), the same tag again nothing; without a tag (or with options that do not
    apply) a clear error and no table."""
    pytest.importorskip("deltalake")
    pl = pytest.importorskip("polars")
    from synarrow.export import delta_versions

    lake = tmp_path / "lake"
    for argv in (
        ("export", tagged, lake, "--format", "delta"),
        ("export", tagged, lake, "--format", "delta", "--snapshot", "v1", "--pattern", "a"),
        ("export", tagged, lake, "--format", "delta", "--snapshot", "v1", "--overwrite"),
        ("export", tagged, lake, "--format", "delta", "--snapshot", "nope"),
    ):
        code, _, err = run(capsys, *argv)
        assert code == 1 and err.startswith("synarrow: error: "), argv
        assert not lake.exists()
    code, out, err = run(capsys, "export", tagged, lake, "--format", "delta", "--snapshot", "v1")
    assert code == 0 and "version 0" in err + out
    with synarrow.SynaDB(tagged, CONFIG) as db:
        db.snapshot("v2")
    code, out, err = run(capsys, "export", tagged, lake, "--format", "delta", "--snapshot", "v2")
    assert code == 0 and "version 1" in err + out and "more than half" in err + out
    code, out, err = run(capsys, "export", tagged, lake, "--format", "delta", "--snapshot", "v2")
    assert code == 0 and "no new version" in err + out
    assert delta_versions(lake) == {"v1": 0, "v2": 1}
    old = pl.read_delta(str(lake), version=0).sort("key", "ts")
    new = pl.read_delta(str(lake), version=1).sort("key", "ts")
    assert old["key"].to_list() == ["a", "a", "a", "b", "old"]
    assert new["key"].to_list() == ["a", "a", "a", "a", "c"]
    assert new.filter(pl.col("key") == "a")["value"].to_list() == [1.0, 2.0, 3.0, 4.0]
