"""Long crash soak (marked slow, not in the default run): many kill -9 cycles of a writer
that appends, rotates and compacts, checking every acknowledged write each time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_crash import _check_singles, _run_and_kill

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("mode", ["single", "auto"])
def test_crash_soak(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "db"
    rng = np.random.default_rng(42)
    acked_all: set[int] = set()
    start = 0
    for _ in range(40):
        acked = _run_and_kill(path, start, mode, float(rng.uniform(0.02, 0.8)))
        acked_all |= set(acked)
        start = max(acked) + 2
        _check_singles(path, acked_all, start)
