"""A process that ends with experiments still open exits cleanly, with its own status.

The metric flusher thread must not hold the last reference to a store while the interpreter
tears down: releasing memory-mapped Arrow buffers from a thread then aborts the process
("terminate called without an active exception", status 134).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import sys, numpy as np, synarrow
exp = synarrow.Experiment("e", sys.argv[1])
run = exp.start_run()
for i in range(2000):
    run.log_metric("loss", float(i), step=i)
db = synarrow.SynaDB(sys.argv[2], synarrow.DbConfig(sync_on_write=False))
db.append_batch("x", np.arange(1000.0)); db.compact(); db.get_history("x")
exp.sql("SELECT count(*) FROM metrics")
print("done")
sys.exit(7)
"""


@pytest.mark.parametrize("attempt", range(3))
def test_exit_with_open_experiment_keeps_its_status(tmp_path: Path, attempt: int) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "exp.db"), str(tmp_path / "d.db")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stdout.strip() == "done", proc.stderr[-2000:]
    assert proc.returncode == 7, proc.stderr[-2000:]
    assert "terminate called" not in proc.stderr
