"""Shared fixtures: the same read tests run on a store in three states."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from _support import NO_SYNC, STATES

import synarrow


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A fresh database path (not created yet)."""
    return tmp_path / "test.db"


@pytest.fixture
def db(db_path: Path) -> Iterator[synarrow.SynaDB]:
    """An open database without fsync per write (tests that need durability open their own)."""
    handle = synarrow.SynaDB(db_path, NO_SYNC)
    yield handle
    handle.close()


@pytest.fixture(params=STATES)
def store_state(request: pytest.FixtureRequest) -> str:
    """One of: log only, fully compacted, compacted with a log tail written afterwards."""
    return str(request.param)


# pyarrow's C++ thread pools (Flight, Parquet, datasets) sometimes abort the interpreter while
# it tears down after every test has run: "terminate called without an active exception",
# exit status 134 (apache/arrow#34314). Once pytest has reported, leave with its own status
# instead of running C++ static destructors.
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config._synarrow_exitstatus = int(exitstatus)  # type: ignore[attr-defined]


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    status = getattr(config, "_synarrow_exitstatus", None)
    if status is None or os.environ.get("SYNARROW_TEST_NORMAL_EXIT"):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
