"""The ``synarrow`` command, run in-process through ``main([...])``."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

import synarrow
from synarrow.cli import check_database, main, render_table

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z in microseconds
N = 7200


def _ts(n: int = N) -> np.ndarray:
    return T0 + np.arange(n, dtype=np.int64) * 1_000_000


def _values(i: int, n: int = N) -> np.ndarray:
    return np.round(20.0 + i + np.sin(np.arange(n) / 600.0), 2)


@pytest.fixture(params=["log", "compacted", "half"])
def db_path(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A database with 3 sensors (2 h at 1 Hz), an int, a text and a mixed key, in 3 states."""
    path = tmp_path / "cli.db"
    cfg = synarrow.DbConfig(sync_on_write=False, auto_compact=False)
    with synarrow.SynaDB(path, config=cfg) as db:
        for i in range(3):
            half = N // 2
            db.append_batch(f"sensor/{i}", _values(i)[:half], timestamps=_ts()[:half])
            if request.param == "half":
                db.compact()
            db.append_batch(f"sensor/{i}", _values(i)[half:], timestamps=_ts()[half:])
        db.append_batch("count", np.arange(10, dtype=np.int64), timestamps=_ts(10))
        db.append("name", "pump-7")
        db.append("mixed", 1.5)
        db.append("mixed", "text")
        if request.param == "compacted":
            db.compact()
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("synarrow: error: ")
    assert "Traceback" not in err
    return lines[0]


# -- info, keys, get ---------------------------------------------------------------------


def test_info(capsys: pytest.CaptureFixture[str], db_path: Path) -> None:
    code, out, _ = run(capsys, "info", db_path)
    assert code == 0
    assert "keys             6" in out
    assert f"{3 * N + 10 + 3:,}" in out
    assert "last compaction" in out
    code, out, _ = run(capsys, "info", db_path, "--json")
    stats = json.loads(out)
    assert stats["keys"] == 6 and stats["entries"] == 3 * N + 13
    assert stats["config"]["sync_on_write"] is False


def test_keys_with_pattern(capsys: pytest.CaptureFixture[str], db_path: Path) -> None:
    assert run(capsys, "keys", db_path)[1].split() == [
        "count",
        "mixed",
        "name",
        "sensor/0",
        "sensor/1",
        "sensor/2",
    ]
    assert run(capsys, "keys", db_path, "sensor/*")[1].split() == [
        "sensor/0",
        "sensor/1",
        "sensor/2",
    ]
    assert run(capsys, "keys", db_path, "--pattern", "s*/[12]")[1].split() == [
        "sensor/1",
        "sensor/2",
    ]
    assert run(capsys, "keys", db_path, "--count")[1].strip() == "6"


def test_get(capsys: pytest.CaptureFixture[str], db_path: Path) -> None:
    assert run(capsys, "get", db_path, "sensor/0")[1].strip() == repr(float(_values(0)[-1]))
    assert run(capsys, "get", db_path, "name")[1].strip() == "pump-7"
    assert run(capsys, "get", db_path, "count")[1].strip() == "9"
    assert run(capsys, "get", db_path, "mixed", "--json")[1].strip() == '"text"'
    code, out, err = run(capsys, "get", db_path, "nope")
    assert code == 1 and out == ""
    assert "'nope' not found" in one_error_line(err)


# -- history and sql outputs ---------------------------------------------------------------


def test_history_table_tail(capsys: pytest.CaptureFixture[str], db_path: Path) -> None:
    code, out, _ = run(capsys, "history", db_path, "sensor/1", "--tail", "3")
    assert code == 0
    assert "2026-01-01 01:59:59+00:00" in out
    assert repr(float(_values(1)[-1])) in out
    assert out.strip().endswith("3 rows")
    code, out, _ = run(capsys, "history", db_path, "sensor/1")
    assert f"{N:,} rows (40 shown)" in out


def test_history_csv_json_parquet(
    capsys: pytest.CaptureFixture[str], db_path: Path, tmp_path: Path
) -> None:
    code, out, _ = run(capsys, "history", db_path, "sensor/2", "--tail", "100", "-f", "csv")
    assert code == 0
    table = pcsv.read_csv(io.BytesIO(out.encode()))
    assert table.column_names == ["ts", "value"]
    assert table.column("value").to_pylist() == _values(2)[-100:].tolist()
    ts = table.column("ts").cast(pa.timestamp("us", "UTC")).cast(pa.int64())
    assert ts.to_pylist() == _ts()[-100:].tolist()

    code, out, _ = run(capsys, "history", db_path, "sensor/2", "--tail", "5", "-f", "json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["value"] for r in rows] == _values(2)[-5:].tolist()
    assert rows[-1]["ts"] == "2026-01-01T01:59:59.000000+00:00"

    target = tmp_path / "h.parquet"
    code, _, _ = run(capsys, "history", db_path, "sensor/2", "-f", "parquet", "-o", target)
    assert code == 0
    assert pq.read_table(target).column("value").to_pylist() == _values(2).tolist()


def test_history_missing_key(capsys: pytest.CaptureFixture[str], db_path: Path) -> None:
    code, _, err = run(capsys, "history", db_path, "nope")
    assert code == 1
    one_error_line(err)


def test_sql_time_bucket(capsys: pytest.CaptureFixture[str], db_path: Path) -> None:
    query = (
        "SELECT time_bucket(INTERVAL '1 hour', ts) AS h, avg(value) AS avg FROM history "
        "WHERE key = 'sensor/0' GROUP BY h ORDER BY h"
    )
    code, out, _ = run(capsys, "sql", db_path, query)
    assert code == 0
    assert "2026-01-01 00:00:00" in out and "2 rows" in out
    code, out, _ = run(capsys, "sql", db_path, query, "--format", "json")
    rows = [json.loads(line) for line in out.splitlines()]
    expected = _values(0).reshape(2, 3600).mean(axis=1)
    assert np.allclose([r["avg"] for r in rows], expected)


def test_sql_csv_parquet_and_stdin(
    capsys: pytest.CaptureFixture[str],
    db_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    query = "SELECT key, count(*) AS n FROM history GROUP BY key ORDER BY key"
    code, out, _ = run(capsys, "sql", db_path, query, "-f", "csv")
    assert code == 0
    table = pcsv.read_csv(io.BytesIO(out.encode()))
    assert dict(zip(table["key"].to_pylist(), table["n"].to_pylist()))["sensor/1"] == N
    target = tmp_path / "r.parquet"
    assert run(capsys, "sql", db_path, query, "-f", "parquet", "-o", target)[0] == 0
    assert pq.read_table(target).num_rows == 6
    monkeypatch.setattr("sys.stdin", io.StringIO("SELECT 41 + 1 AS answer"))
    code, out, _ = run(capsys, "sql", db_path, "-", "-f", "csv")
    assert out.splitlines() == ['"answer"', "42"]


@pytest.mark.parametrize(
    "query", ["SELEC 1", "SELECT nope FROM history", "SELECT * FROM missing_table"]
)
def test_bad_sql_is_one_line(capsys: pytest.CaptureFixture[str], db_path: Path, query: str) -> None:
    code, out, err = run(capsys, "sql", db_path, query)
    assert code == 1 and out == ""
    assert "query failed" in one_error_line(err)


def test_parquet_needs_output(capsys: pytest.CaptureFixture[str], db_path: Path) -> None:
    code, _, err = run(capsys, "sql", db_path, "SELECT 1", "-f", "parquet")
    assert code == 1
    assert "--output" in one_error_line(err)


# -- compact, paths, usage -----------------------------------------------------------------


def test_compact(capsys: pytest.CaptureFixture[str], db_path: Path) -> None:
    code, out, _ = run(capsys, "compact", db_path)
    assert code == 0 and "compacted" in out
    _, out, _ = run(capsys, "info", db_path, "--json")
    stats = json.loads(out)
    assert stats["last_compaction"] is not None and stats["tail_entries"] == 0
    assert run(capsys, "get", db_path, "sensor/1")[1].strip() == repr(float(_values(1)[-1]))


def test_bad_paths(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for cmd in ("info", "keys", "compact", "check"):
        code, _, err = run(capsys, cmd, tmp_path / "missing.db")
        assert code == 1
        assert "no such database" in one_error_line(err)
    plain = tmp_path / "file.txt"
    plain.write_text("hello")
    code, _, err = run(capsys, "info", plain)
    assert code == 1
    assert "not a synarrow database" in one_error_line(err)
    code, _, err = run(capsys, "info", tmp_path)
    assert code == 1
    one_error_line(err)
    assert not (tmp_path / "missing.db").exists()  # nothing was created


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bogus"]) == 2
    assert main([]) == 2
    assert main(["--help"]) == 0
    assert main(["--version"]) == 0
    assert "synarrow" in capsys.readouterr().out


def test_readers_work_while_a_writer_holds_the_lock(
    capsys: pytest.CaptureFixture[str], db_path: Path
) -> None:
    with synarrow.SynaDB(db_path, writers="single") as writer:
        writer.append("live", 1.0)
        assert run(capsys, "keys", db_path, "sensor/*")[0] == 0
        assert run(capsys, "sql", db_path, "SELECT count(*) FROM history")[0] == 0
        assert run(capsys, "check", db_path, "-q")[0] == 0
        code, _, err = run(capsys, "compact", db_path)
        assert code == 1
        assert "open for writing elsewhere" in one_error_line(err)


def test_compact_beside_an_open_writer(capsys: pytest.CaptureFixture[str], db_path: Path) -> None:
    """Under the default writers="many" the CLI compacts while a writer is open, and the
    writer goes on on the compacted files."""
    with synarrow.SynaDB(db_path) as writer:
        writer.append("live", 1.0)
        before = writer.get_history_floats("live").tolist()
        assert run(capsys, "compact", db_path)[0] == 0
        writer.append("live", 2.0)
        assert writer.get_history_floats("live").tolist() == [*before, 2.0]
        writer.refresh()  # (reads do it by themselves within refresh_interval)
        assert writer.stats()["columnar_files"] >= 1
        assert writer.get_history_floats("live").tolist() == [*before, 2.0]


def test_info_names_the_writers_and_a_lone_one_keeping_the_lock(
    capsys: pytest.CaptureFixture[str], db_path: Path
) -> None:
    pid = os.getpid()
    assert "none open now" in run(capsys, "info", db_path)[1]
    with synarrow.SynaDB(db_path) as writer:
        out = run(capsys, "info", db_path)[1]
        assert f"1 open now, in process {pid}; it keeps the append lock" in out
        assert json.loads(run(capsys, "info", db_path, "--json")[1])["append_lock_kept"] is True
        with synarrow.SynaDB(db_path):
            writer.append("live", 1.0)
            out = run(capsys, "info", db_path)[1]
            assert f"2 open now, in process {pid} (x2)" in out and "keeps" not in out
    assert "none open now" in run(capsys, "info", db_path)[1]


# -- check ---------------------------------------------------------------------------------


def _many_entries(path: Path, n: int = 3000) -> Path:
    cfg = synarrow.DbConfig(sync_on_write=False, auto_compact=False, delta=False)
    with synarrow.SynaDB(path, config=cfg) as db:
        for i in range(n):
            db.append(f"k{i % 7}", float(i))
    return path


def _flip(path: Path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x5A]))


def test_check_healthy(capsys: pytest.CaptureFixture[str], db_path: Path) -> None:
    code, out, _ = run(capsys, "check", db_path)
    assert code == 0
    assert out.strip().splitlines()[-1].startswith("OK: ")
    report = check_database(db_path)
    assert report.ok and report.log_entries + report.columnar_rows > 0


def test_check_reports_damaged_range(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = _many_entries(tmp_path / "bad.db")
    segment = next((path / "log").glob("*.log"))
    middle = segment.stat().st_size // 2
    _flip(segment, middle)
    before = segment.read_bytes()
    code, out, err = run(capsys, "check", path)
    assert code == 3
    line = next(ln for ln in out.splitlines() if ln.startswith("DAMAGED:"))
    start, end = (int(x) for x in line.split("damaged bytes ")[1].split(" ")[0].split(".."))
    assert start <= middle < end
    assert "damaged bytes" in one_error_line(err)
    assert segment.read_bytes() == before  # check never writes
    # The database refuses to open it, and says to run check.
    code, _, err = run(capsys, "info", path)
    assert code == 1
    assert "synarrow check" in one_error_line(err)
    # --repair skips the damaged range.
    assert run(capsys, "info", path, "--repair")[0] == 0


def test_check_torn_tail_is_a_warning(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = _many_entries(tmp_path / "torn.db", 200)
    segment = next((path / "log").glob("*.log"))
    with open(segment, "ab") as f:
        f.write(b"\x01\x02\x03 half an entry")
    code, out, _ = run(capsys, "check", path)
    assert code == 0
    assert "warning:" in out and "torn tail" in out


def test_check_damaged_columnar_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = _many_entries(tmp_path / "col.db", 500)
    with synarrow.SynaDB(path) as db:
        db.compact()
    data = max((path / "columnar").glob("g*-0*.arrow"), key=lambda f: f.stat().st_size)
    with open(data, "r+b") as f:
        f.truncate(data.stat().st_size // 2)
    code, out, err = run(capsys, "check", path)
    assert code == 3
    assert f"columnar/{data.name}" in out
    one_error_line(err)
    code, out, _ = run(capsys, "check", path, "--json")
    assert code == 3 and json.loads(out)["ok"] is False


# -- export / import / demo ----------------------------------------------------------------


def _histories(path: Path) -> dict[str, list[object]]:
    with synarrow.SynaDB(path, readonly=True) as db:
        return {k: db.get_history(k).to_pylist() for k in db.keys()}


@pytest.mark.parametrize("target", ["dataset", "all.parquet", "all.csv", "all.jsonl", "all.arrow"])
def test_export_import_round_trip(
    capsys: pytest.CaptureFixture[str], db_path: Path, tmp_path: Path, target: str
) -> None:
    out = tmp_path / "out" / target
    code, text, _ = run(capsys, "export", db_path, out)
    assert code == 0 and "exported" in text
    copy = tmp_path / "copy.db"
    code, text, _ = run(capsys, "import", copy, out)
    assert code == 0 and "imported" in text
    assert _histories(copy) == _histories(db_path)
    # A second export to the same place is refused, then allowed with --overwrite.
    code, _, err = run(capsys, "export", db_path, out)
    assert code == 1
    assert "exists" in one_error_line(err)
    assert run(capsys, "export", db_path, out, "--overwrite")[0] == 0


def test_export_pattern_and_format_errors(
    capsys: pytest.CaptureFixture[str], db_path: Path, tmp_path: Path
) -> None:
    code, _, _ = run(capsys, "export", db_path, tmp_path / "s", "--pattern", "sensor/*")
    assert code == 0
    assert sorted(os.listdir(tmp_path / "s")) == [f"key=sensor%2F{i}" for i in range(3)]
    code, _, err = run(capsys, "export", db_path, tmp_path / "d", "--format", "csv")
    assert code == 1
    one_error_line(err)
    code, _, err = run(capsys, "import", tmp_path / "new.db", tmp_path / "missing.csv")
    assert code == 1
    assert "does not exist" in one_error_line(err)


def test_import_single_series_csv(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = tmp_path / "series.csv"
    src.write_text("ts,value\n1767225600,1.5\n1767225601,2.5\n")
    code, _, _ = run(capsys, "import", tmp_path / "s.db", src, "--key", "x", "--ts-unit", "s")
    assert code == 0
    with synarrow.SynaDB(tmp_path / "s.db", readonly=True) as db:
        hist = db.get_history("x")
    assert hist.column("value").to_pylist() == [1.5, 2.5]
    assert hist.column("ts").cast(pa.int64()).to_pylist() == [T0, T0 + 1_000_000]


def test_demo(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(
        capsys, "demo", tmp_path / "demo.db", "--sensors", "2", "--hours", "2", "--no-progress"
    )
    assert code == 0
    for words in ("values/s", "compact()", "time_bucket", "2 rows"):
        assert words in out
    assert "zero-copy view of the mapped file: yes" in out  # not just the word: the answer
    assert _histories(tmp_path / "demo.db")["demo/temperature-01"]
    code, out, _ = run(capsys, "demo", "--sensors", "1", "--hours", "1")
    assert code == 0 and "synarrow demo" in out
    code, _, err = run(capsys, "demo", tmp_path / "demo.db")
    assert code == 1
    one_error_line(err)


# -- the table printer ---------------------------------------------------------------------


def test_render_table_shapes() -> None:
    table = pa.table(
        {
            "key": ["a", "b" * 60, None],
            "n": [1, 22, 333],
            "vec": [[1.0, 2.0], None, [0.5] * 20],
            "raw": [b"\x00\x01", None, b"x"],
        }
    )
    text = render_table(table, unicode=False)
    lines = text.splitlines()
    assert lines[0] == lines[2] == lines[-2]
    assert len({len(ln) for ln in lines[:-1]}) == 1  # a rectangle
    assert "NULL" in text and "…" in text and "b'\\x00\\x01'" in text
    assert lines[3].split("|")[2] == "   1 "  # numbers right-aligned
    long = pa.table({"i": list(range(100))})
    text = render_table(long, max_rows=10, unicode=True)
    assert "100 rows (10 shown)" in text and " … │" in text
    assert render_table(pa.table({"x": pa.array([], pa.int64())})).endswith("0 rows")
