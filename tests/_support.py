"""Helpers shared by the test modules (importable as ``_support``)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import synarrow

NO_SYNC = synarrow.DbConfig(sync_on_write=False, auto_compact=False)

# How a store filled by `fill(db)` is brought to each state before reading.
STATES = ("log_only", "compacted", "half_compacted")


def bring_to_state(
    path: Path,
    state: str,
    fill: Callable[[synarrow.SynaDB, int], None],
) -> synarrow.SynaDB:
    """Fill a database in two halves and reopen it in the requested state.

    ``fill(db, half)`` writes half 0 or half 1. ``compacted`` compacts after both halves,
    ``half_compacted`` between them, ``log_only`` never.
    """
    db = synarrow.SynaDB(path, NO_SYNC)
    fill(db, 0)
    if state == "half_compacted":
        db.compact()
    fill(db, 1)
    if state == "compacted":
        db.compact()
    db.close()
    return synarrow.SynaDB(path, NO_SYNC)


def state_fixtures(fill: Callable[[synarrow.SynaDB, int], None]) -> tuple[Any, Any]:
    """Fixtures ``templates`` and ``sdb`` for a test module whose store is filled by ``fill``.

    ``templates`` builds one store per state once per module; ``sdb`` opens a fresh copy of
    the one for the current ``store_state``. Use: ``templates, sdb = state_fixtures(fill)``.
    """

    @pytest.fixture(scope="module")
    def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
        out = {}
        for state in STATES:
            path = tmp_path_factory.mktemp(state) / "template.db"
            bring_to_state(path, state, fill).close()
            out[state] = path
        return out

    @pytest.fixture
    def sdb(
        templates: dict[str, Path], db_path: Path, store_state: str
    ) -> Iterator[synarrow.SynaDB]:
        shutil.copytree(templates[store_state], db_path)
        handle = synarrow.SynaDB(db_path, NO_SYNC)
        yield handle
        handle.close()

    return templates, sdb


def run_and_kill(script: str, args: list[str], seconds: float) -> list[int]:
    """Run ``python -c script *args``, which prints one int per acknowledged write; SIGKILL
    it ``seconds`` after its first acknowledgement. Returns the ints it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acked: list[int] = []
    first_ack = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            acked.append(int(line))
            first_ack.set()
        first_ack.set()  # the writer ended (or died) without acknowledging: stop waiting

    reader = threading.Thread(target=read)
    reader.start()
    first_ack.wait(120)  # the writer is writing; the kill comes a random moment later
    time.sleep(seconds)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    reader.join()
    assert acked, proc.stderr.read() if proc.stderr else "writer printed nothing"
    return acked
