"""The ``synarrow`` command as a real process: exit codes and one-line errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import synarrow

TIMEOUT = 60


def synarrow_cli(*argv: object, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run ``python -m synarrow.cli ARGV`` with a time limit."""
    return subprocess.run(
        [sys.executable, "-m", "synarrow.cli", *map(str, argv)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "SYNARROW_DEBUG": ""},
    )


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture
def small_db(tmp_path: Path) -> Path:
    path = tmp_path / "small.db"
    with synarrow.SynaDB(path, config=synarrow.DbConfig(sync_on_write=False)) as db:
        db.append_batch("sensor/1", [20.5, 21.0, 21.5])
    return path


def test_help_and_info(small_db: Path) -> None:
    assert synarrow_cli("--help").returncode == 0
    result = synarrow_cli("info", small_db)
    assert result.returncode == 0 and "entries" in result.stdout
    assert synarrow_cli("get", small_db, "sensor/1").stdout.strip() == "21.5"


def test_locked_database_is_one_line(small_db: Path) -> None:
    with synarrow.SynaDB(small_db, writers="single"):
        result = synarrow_cli("compact", small_db)
    assert result.returncode == 1
    assert result.stdout == ""
    line = one_line(result.stderr)
    assert line.startswith("synarrow: error: ") and "open for writing elsewhere" in line


def test_bad_sql_and_bad_path(small_db: Path, tmp_path: Path) -> None:
    result = synarrow_cli("sql", small_db, "SELECT FROM WHERE")
    assert result.returncode == 1
    assert "query failed" in one_line(result.stderr)
    result = synarrow_cli("keys", tmp_path / "nowhere")
    assert result.returncode == 1
    assert "no such database" in one_line(result.stderr)


def test_check_names_the_damaged_range(tmp_path: Path) -> None:
    path = tmp_path / "damaged.db"
    cfg = synarrow.DbConfig(sync_on_write=False, auto_compact=False)
    with synarrow.SynaDB(path, config=cfg) as db:
        for i in range(5000):
            db.append(f"sensor/{i % 10}", float(i))
    segment = next((path / "log").glob("*.log"))
    middle = segment.stat().st_size // 2
    with open(segment, "r+b") as f:
        f.seek(middle)
        byte = f.read(1)
        f.seek(middle)
        f.write(bytes([byte[0] ^ 0xFF]))
    result = synarrow_cli("check", path)
    assert result.returncode == 3
    damaged = [ln for ln in result.stdout.splitlines() if "damaged bytes" in ln]
    assert len(damaged) == 1 and segment.name in damaged[0]
    start, end = damaged[0].split("damaged bytes ")[1].split(" ")[0].split("..")
    assert int(start) <= middle < int(end)
    assert "damaged bytes" in one_line(result.stderr)
    assert not list((path / "log").glob("*.tmp"))


def test_serve_until_signal(small_db: Path) -> None:
    from synarrow.flight import FlightClient

    proc = subprocess.Popen(
        [sys.executable, "-m", "synarrow.cli", "serve", small_db, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        location = proc.stdout.readline().strip()  # type: ignore[union-attr]
        assert location.startswith("grpc://127.0.0.1:")
        with FlightClient(location, timeout=20) as client:
            assert client.keys() == ["sensor/1"]
            assert client.append_batch("sensor/2", [1.0, 2.0]) == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with synarrow.SynaDB(small_db, readonly=True) as db:
        assert db.get_history("sensor/2").column("value").to_pylist() == [1.0, 2.0]
