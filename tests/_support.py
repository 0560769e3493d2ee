"""Helpers shared by the test modules (importable as ``_support``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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
