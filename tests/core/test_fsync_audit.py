"""The fsync audit: what a durable write and a compaction really ask of the disk, seen by strace.

Crash tests kill the writer with SIGKILL, which keeps the page cache: they prove recovery,
not that data reached the disk. What survives a power loss depends on the syscalls made
before a call returns, and those are checked here from the outside: a child process runs
under ``strace`` and prints a marker (one ``write`` to stdout) around each call. Skipped
where strace is not installed or not allowed to trace (``apt-get install strace``).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

CHILD = """
    import os, sys
    import numpy as np
    import synarrow

    db = synarrow.SynaDB(sys.argv[1], synarrow.DbConfig(sync_on_write=True, auto_compact=False))
    os.write(1, b"MARK:append\\n")
    db.append("k", 1.5)
    os.write(1, b"MARK:acked\\n")
    db.append_batch("b", np.arange(1000.0))
    os.write(1, b"MARK:batch-acked\\n")
    db.compact()
    os.write(1, b"MARK:compacted\\n")
    db.close()
"""
SYSCALLS = "write,writev,pwrite64,pwritev,pwritev2,fsync,fdatasync,rename,renameat,renameat2"
# 1234 fsync(5</path/to/file>) = 0      (-y prints the path of every file descriptor)
LINE = re.compile(r"^\d+\s+(\w+)\((?:(\d+)<([^>]*)>)?(.*)$")


@dataclass
class Call:
    name: str
    path: str  # the file descriptor's path, "" for calls on paths (rename)
    rest: str


def _trace(tmp_path: Path) -> list[Call]:
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    out = tmp_path / "trace.txt"
    db = tmp_path / "db"
    proc = subprocess.run(
        [strace, "-f", "-qq", "-y", "-s", "32", "-e", "signal=none", "-e", f"trace={SYSCALLS}"]
        + ["-o", str(out), sys.executable, "-c", textwrap.dedent(CHILD), str(db)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0 and "ptrace" in proc.stderr:
        pytest.skip(f"strace cannot trace here: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr
    calls = []
    for line in out.read_text().splitlines():
        m = LINE.match(line)
        if m:
            calls.append(Call(m.group(1), m.group(3) or "", m.group(4)))
    return calls


def _between(calls: list[Call], start: str, end: str) -> list[Call]:
    marks = [i for i, c in enumerate(calls) if c.name == "write" and "MARK:" in c.rest]
    at = {calls[i].rest.split("MARK:")[1].split("\\n")[0]: i for i in marks}
    return calls[at[start] + 1 : at[end]]


def _is_write(c: Call) -> bool:
    return c.name.startswith(("write", "pwrite"))


def _is_sync(c: Call, path: str) -> bool:
    return c.name in ("fsync", "fdatasync") and c.path == path


def test_durable_appends_and_compaction_reach_the_disk(tmp_path: Path) -> None:
    calls = _trace(tmp_path)
    segment = str(tmp_path / "db" / "log" / "00000001.log")
    for start, end in (("append", "acked"), ("acked", "batch-acked")):
        window = _between(calls, start, end)
        writes = [i for i, c in enumerate(window) if _is_write(c) and c.path == segment]
        syncs = [i for i, c in enumerate(window) if _is_sync(c, segment)]
        assert writes, f"{start}: the entry was not written to {segment}"
        # fdatasync (or fsync) of the segment after its last write, before the call returned
        assert syncs and syncs[-1] > writes[-1], f"{start}: returned before the data was synced"

    window = _between(calls, "batch-acked", "compacted")
    columnar = str(tmp_path / "db" / "columnar")
    renames = [
        i for i, c in enumerate(window) if c.name.startswith("rename") and 'MANIFEST"' in c.rest
    ]
    assert len(renames) == 1, "the manifest is switched by one atomic rename"
    commit = renames[0]
    # Every file written into columnar/ before the commit: the data file, and the key index and
    # manifest under the unique temporary names they are renamed from.
    new_files = {
        c.path for c in window[:commit] if _is_write(c) and c.path.startswith(columnar + "/")
    }
    names = {Path(f).name for f in new_files}
    assert any(n.endswith("-000.arrow") for n in names), names  # a data file
    assert any(n.startswith(".g000001-index.arrow.tmp-") for n in names), names  # the key index
    assert any(n.startswith(".MANIFEST.tmp-") for n in names), names  # the manifest
    for f in new_files:
        last_write = max(i for i, c in enumerate(window) if _is_write(c) and c.path == f)
        synced = [i for i, c in enumerate(window) if _is_sync(c, f)]
        assert synced and last_write < synced[-1] < commit, f"{f} not fsynced before the commit"
    dir_syncs = [i for i, c in enumerate(window) if _is_sync(c, columnar)]
    # the new files' names are durable before the manifest names them, and the rename after
    assert any(i < commit for i in dir_syncs), "columnar/ not fsynced before the manifest rename"
    assert any(i > commit for i in dir_syncs), "columnar/ not fsynced after the manifest rename"
