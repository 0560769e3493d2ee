"""``synarrow resample``: the command prints what ``db.resample`` returns."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import synarrow
from synarrow.cli import EXIT_ERROR, EXIT_OK, main

HOUR = 3_600_000_000


@pytest.fixture
def path(tmp_path: Path) -> Path:
    p = tmp_path / "db"
    with synarrow.SynaDB(p) as db:
        ts = np.arange(0, 4 * HOUR, 60_000_000, dtype=np.int64)  # 1 min steps over 4 h
        db.append_batch("s/a", np.arange(len(ts), dtype=np.float64), timestamps=ts)
        db.append_batch("s/b", np.ones(len(ts)), timestamps=ts)
        db.append("label", "text")
    return p


def test_csv_matches_db_resample(path: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.csv"
    argv = [
        "resample", str(path), "s/*", "1h", "--agg", "mean,count",
        "--start", "1970-01-01T01:00:00Z", "--format", "csv", "--output", str(out),
    ]  # fmt: skip
    assert main(argv) == EXIT_OK
    rows = list(csv.DictReader(out.open()))
    with synarrow.SynaDB(path, readonly=True) as db:
        want = db.resample("s/*", "1h", ["mean", "count"], start=HOUR)
    assert [r["key"] for r in rows] == want.column("key").to_pylist()
    assert [float(r["mean"]) for r in rows] == want.column("mean").to_pylist()
    assert [int(r["count"]) for r in rows] == [60] * 6


def test_json_fill_and_int_bounds(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["resample", str(path), "s/a", "1h", "--agg", "last", "--fill", "-1"]
    assert main([*argv, "--start", str(3 * HOUR), "--end", str(6 * HOUR), "--format", "json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["value"] for r in lines] == [239.0, -1.0, -1.0]


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--agg", "median"], "median"),
        (["--fill", "bfill"], "--fill"),
        (["--start", "noon"], "start"),
    ],
)
def test_bad_options(path: Path, capsys: pytest.CaptureFixture[str], extra, words) -> None:
    assert main(["resample", str(path), "s/a", "1h", *extra]) == EXIT_ERROR
    assert words in capsys.readouterr().err


def test_text_key_is_an_error(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["resample", str(path), "label", "1h"]) == EXIT_ERROR
    assert "not numbers" in capsys.readouterr().err
