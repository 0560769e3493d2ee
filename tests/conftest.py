"""Shared fixtures: the same read tests run on a store in three states."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
from _support import NO_SYNC, STATES

import synarrow

# Exit with the interpreter's own status even when C++ static destructors abort afterwards.
pytest_plugins = ["_exit_guard"]


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


@pytest.fixture(scope="session", autouse=True)
def _collect_native_objects_at_the_end() -> Iterator[None]:
    """Free what tests left to the garbage collector while the interpreter is still whole.

    DuckDB connections, half-read Arrow streams and usearch indexes that end up in reference
    cycles would otherwise be destroyed during interpreter shutdown, next to the C++ thread
    pools they use (apache/arrow#34314).
    """
    yield
    gc.collect()
