"""The ``serve`` fixture: real ``synarrow serve`` subprocesses, stopped and reaped at teardown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _serve import Served, start_server


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    """A factory of servers; every one it made is stopped at teardown."""
    made: list[Served] = []

    def factory(path: Path, *args: str) -> Served:
        served = start_server(path, *args)
        made.append(served)
        return served

    yield factory
    for served in made:
        served.stop()
