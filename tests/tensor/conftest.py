"""Fixtures for the tensor tests: an engine over a fresh database, in several store states."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from synarrow import DbConfig, SynaDB
from synarrow.tensor import TensorEngine

CONFIG = DbConfig(sync_on_write=False, auto_compact=False)

# The same reads must hold whatever the store did since the write (STYLE.md): straight from
# the log tail, after compaction, and after a reopen of each.
STATES = ("log", "compacted", "reopened-log", "reopened-compacted")


class Store:
    """Opens engines on one database path and closes them all at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._open: list[SynaDB] = []
        self.engine = self.new_engine()

    def new_engine(self) -> TensorEngine:
        db = SynaDB(self.path, CONFIG)
        self._open.append(db)
        return TensorEngine(db)

    def settle(self, state: str) -> TensorEngine:
        """Bring the store into ``state``; returns the engine to read with."""
        if state in ("compacted", "reopened-compacted"):
            self.engine.db.compact()
        if state.startswith("reopened"):
            self.engine.db.close()
            self.engine = self.new_engine()
        return self.engine

    def close(self) -> None:
        for db in self._open:
            db.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "t.db")
    yield s
    s.close()


@pytest.fixture
def engine(store: Store) -> TensorEngine:
    return store.engine


@pytest.fixture(params=STATES)
def state(request: pytest.FixtureRequest) -> str:
    return request.param  # type: ignore[no-any-return]


Settle = Callable[[str], TensorEngine]
