"""The CLI for time series: ``history --start/--end/--last`` and ``import`` of a frame file
in one ``append_table`` call (long and wide; CSV, Parquet, Arrow IPC, JSON lines)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
from _support import NO_SYNC

import synarrow
from synarrow.cli import EXIT_ERROR, EXIT_OK, main

HOUR = 3_600_000_000
T0 = 1_714_521_600 * 1_000_000  # 2024-05-01T00:00:00Z


@pytest.fixture
def hourly(tmp_path: Path) -> Path:
    path = tmp_path / "h.db"
    with synarrow.SynaDB(path, NO_SYNC) as db:
        db.append_batch(
            "k", [float(h) for h in range(6)], timestamps=[T0 + h * HOUR for h in range(6)]
        )
    return path


def json_rows(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]


@pytest.mark.parametrize(
    ("flags", "values"),
    [
        (["--start", "2024-05-01T02:00:00Z"], [2.0, 3.0, 4.0, 5.0]),
        (["--end", "2024-05-01 03:00+01:00"], [0.0, 1.0]),
        (["--start", str(T0 + HOUR), "--end", str(T0 + 3 * HOUR)], [1.0, 2.0]),
        (["--start", "2024-05-01T01:00:00Z", "--last", "2"], [4.0, 5.0]),
        (["--tail", "1"], [5.0]),
        (["--last", "0"], []),
        (["--start", "2024-05-02"], []),
    ],
)
def test_history_ranges(
    hourly: Path, capsys: pytest.CaptureFixture[str], flags: list[str], values: list[float]
) -> None:
    assert main(["history", str(hourly), "k", *flags, "--format", "json"]) == EXIT_OK
    assert [r["value"] for r in json_rows(capsys)] == values


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--start", "2024-05-02", "--end", "2024-05-01"], "after end"),
        (["--start", "soon"], "ISO 8601"),
        (["--last", "1", "--tail", "1"], "old name"),
        (["--last", "-1"], ">= 0"),
    ],
)
def test_history_bad_ranges(
    hourly: Path, capsys: pytest.CaptureFixture[str], flags: list[str], words: str
) -> None:
    assert main(["history", str(hourly), "k", *flags]) == EXIT_ERROR
    assert words in capsys.readouterr().err


LONG = pa.table(
    {
        "sensor": ["a", "b", "a", "b"],
        "time": pa.array([T0 + 2 * HOUR, T0, T0, T0 + HOUR], pa.timestamp("us", tz="UTC")),
        "reading": [3.0, 2.0, 1.0, 4.0],
    }
)


def write(table: pa.Table, path: Path) -> Path:
    if path.suffix == ".csv":
        pcsv.write_csv(table, path)
    elif path.suffix == ".parquet":
        pq.write_table(table, path)
    elif path.suffix == ".arrow":
        feather.write_feather(table, path)
    else:
        rows = [
            {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()}
            for r in table.to_pylist()
        ]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".arrow", ".jsonl"])
def test_import_a_long_file_in_one_call(tmp_path: Path, suffix: str) -> None:
    source = write(LONG, tmp_path / f"long{suffix}")
    db_path = tmp_path / "i.db"
    argv = ["import", str(db_path), str(source), "--key-column", "sensor"]
    argv += ["--ts-column", "time", "--value-column", "reading", "--prefix", "p/"]
    assert main(argv) == EXIT_OK
    with synarrow.SynaDB(db_path, readonly=True) as db:
        assert db.keys() == ["p/a", "p/b"]
        table = db.read_table("p/*")
        assert table.column("value").to_pylist() == [1.0, 3.0, 2.0, 4.0]
        ts = table.column("ts").cast(pa.int64()).to_pylist()
        assert ts == [T0, T0 + 2 * HOUR, T0, T0 + HOUR]


def test_import_a_wide_file_with_seconds(tmp_path: Path) -> None:
    source = tmp_path / "wide.csv"
    source.write_text("ts,hall,porch\n1714521600,18.5,11\n1714525200,18.0,10\n")
    db_path = tmp_path / "w.db"
    assert main(["import", str(db_path), str(source), "--wide", "--ts-unit", "s"]) == EXIT_OK
    with synarrow.SynaDB(db_path, readonly=True) as db:
        assert db.keys() == ["hall", "porch"]
        assert db.get_history("porch").column("value").to_pylist() == [11, 10]
        assert db.get_history("hall").column("ts").cast(pa.int64()).to_pylist() == [T0, T0 + HOUR]


@pytest.mark.parametrize(
    ("content", "flags", "words"),
    [
        ("key,ts,value\na,1,1.0\n", ["--key-column", "sensor"], "no key column 'sensor'"),
        ("key,ts,value\na,1,1.0\n,2,2.0\n", ["--key-column", "key"], "key"),
        ("key,ts,value\na,1,1.0\nb,,2.0\n", ["--key-column", "key"], "null times"),
        ("key,ts,value\na,1,1.0\nb,2,\n", ["--value-column", "value"], "nulls"),
        ("key,ts,value\na,1,1.0\n", ["--key-column", "key", "--key", "x"], "--key"),
        ("key,ts,value\na,1,1.0\n", ["--prefix", "x/"], "--prefix"),
        ("key,ts,value\na,1,1.0\n", ["--wide", "--value-column", "value"], "--wide"),
    ],
)
def test_import_bad_frame_writes_nothing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str,
    flags: list[str],
    words: str,
) -> None:
    source = tmp_path / "bad.csv"
    source.write_text(content)
    db_path = tmp_path / "b.db"
    with synarrow.SynaDB(db_path, NO_SYNC) as db:
        db.append("kept", 1.0)
        version = db.data_version
    assert main(["import", str(db_path), str(source), *flags]) == EXIT_ERROR
    assert words in capsys.readouterr().err
    with synarrow.SynaDB(db_path, readonly=True) as db:
        assert db.keys() == ["kept"]
        assert db.data_version == version


def test_import_without_frame_flags_keeps_the_dataset_behaviour(tmp_path: Path) -> None:
    """A null value is skipped (and counted) by the dataset import, as before."""
    source = tmp_path / "old.csv"
    source.write_text("key,ts,value\na,1,1.0\na,2,\n")
    db_path = tmp_path / "o.db"
    assert main(["import", str(db_path), str(source)]) == EXIT_OK
    with synarrow.SynaDB(db_path, readonly=True) as db:
        assert db.get_history("a").column("value").to_pylist() == [1.0]
