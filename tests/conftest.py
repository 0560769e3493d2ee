"""Shared fixtures: the same read tests run on a store in three states."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import synarrow

NO_SYNC = synarrow.DbConfig(sync_on_write=False, auto_compact=False)


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


# How a store filled by `fill(db)` is brought to each state before reading.
STATES = ("log_only", "compacted", "half_compacted")


@pytest.fixture(params=STATES)
def store_state(request: pytest.FixtureRequest) -> str:
    """One of: log only, fully compacted, compacted with a log tail written afterwards."""
    return str(request.param)


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
