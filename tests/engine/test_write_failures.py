"""Real write failures on the buffered hot path: what was acknowledged stays, nothing else.

The file size limit (RLIMIT_FSIZE) makes the writer's ``write()`` fail with EFBIG when the
buffer of non-durable appends is handed to the OS (``Engine.encode_pending``). The entry
that triggered the write is not recorded; earlier buffered ones stay and reach the file once
writing works again, and every key's delta chain goes on from its last acknowledged value.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import synarrow

CHILD = """
    import resource, signal, sys, synarrow
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    path, kind = sys.argv[1], sys.argv[2]
    cfg = synarrow.DbConfig(sync_on_write=False, write_buffer_bytes=4096, auto_compact=False)
    synarrow.SynaDB(path, cfg).close()
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    resource.setrlimit(resource.RLIMIT_FSIZE, (40_000, hard))
    db = synarrow.SynaDB(path)
    acked = 0
    def value(i):
        return 20.0 + i * 0.125 if kind == "float" else 1_000_000 + 3 * i
    try:
        for i in range(100_000):
            db.append(f"k{i % 3}", value(i))
            acked = i + 1
    except synarrow.StorageFullError as exc:
        print("FULL", acked, flush=True)
    try:
        db.append("k0", value(acked))
    except synarrow.StorageFullError:
        print("STILL FULL", flush=True)
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    for i in range(acked, acked + 6):
        db.append(f"k{i % 3}", value(i))
    db.close()
    print("DONE", acked, flush=True)
"""


def _value(kind: str, i: int) -> float | int:
    return 20.0 + i * 0.125 if kind == "float" else 1_000_000 + 3 * i


def _check(tmp_path: Path, kind: str) -> None:
    path = tmp_path / kind
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(path), kind],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("FULL") and "STILL FULL" in lines, out.stdout
    acked = int(lines[-1].split()[1])
    assert acked > 100
    with synarrow.SynaDB(path, readonly=True) as db:
        for k in range(3):
            want = [_value(kind, i) for i in range(acked + 6) if i % 3 == k]
            assert db.get_history(f"k{k}").column("value").to_pylist() == want
            assert db.stats()["torn_bytes_cut_on_open"] == 0


def test_full_disk_on_buffered_float_appends(tmp_path: Path) -> None:
    _check(tmp_path, "float")


def test_full_disk_on_buffered_int_appends(tmp_path: Path) -> None:
    _check(tmp_path, "int")
