"""A failing automatic compaction is never silent: logged, kept in ``stats()``, raised later.

The failure is a real one: the child process runs under a file size limit (RLIMIT_FSIZE)
that the small log segments fit under but the columnar file of the fold does not, so the
background compaction's ``write()`` fails with EFBIG, as it would on a full disk.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

import synarrow

resource = pytest.importorskip("resource")

N = 40_000  # float64 + timestamp: 640 KB of columnar data; the log of the batch is far smaller

CHILD = """
    import json, logging, resource, signal, sys
    import numpy as np
    import synarrow

    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logging.getLogger("synarrow").addHandler(Keep())
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG
    cfg = synarrow.DbConfig(
        sync_on_write=False, auto_compact=True, compact_threshold_bytes=4096,
        max_log_file_size=64 * 1024,
    )
    db = synarrow.SynaDB(sys.argv[1], cfg)
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, hard))
    n = int(sys.argv[2])
    db.append_batch("k", np.arange(n, dtype=np.float64))  # a few KB of delta-coded log
    for i in range(300):  # past the compaction threshold: starts the background compaction
        db.append("j", float(i) * 1.1)
    out = {"log_records": records}
    try:
        db.wait_for_compaction()
        out["wait"] = "returned"
    except synarrow.CompactionError as exc:
        out["wait"] = "raised"
        out["cause"] = type(exc.__cause__).__name__
        out["message"] = str(exc)
    out["stats_error"] = db.stats()["last_compaction_error"]
    out["second_wait"] = db.wait_for_compaction()  # raised once: now it returns
    out["columnar_files"] = db.stats()["columnar_files"]
    out["history_ok"] = bool(np.array_equal(db.get_history_floats("k"), np.arange(n)))
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    db.compact()  # the next explicit call works again
    out["after_fix_error"] = db.stats()["last_compaction_error"]
    out["after_fix_files"] = db.stats()["columnar_files"]
    db.close()
    print(json.dumps(out))
"""


def test_failed_background_compaction_is_logged_kept_and_raised(tmp_path: Path) -> None:
    path = tmp_path / "db"
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(CHILD), str(path), str(N)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["wait"] == "raised"
    assert "automatic compaction" in out["message"] and str(path) in out["message"]
    assert out["cause"] in ("OSError", "StorageFullError")  # EFBIG, like a full disk
    assert any("automatic compaction" in r and "failed" in r for r in out["log_records"])
    assert out["stats_error"]  # kept for stats() readers
    assert out["second_wait"] is True
    assert out["columnar_files"] == 0 and out["history_ok"]
    assert out["after_fix_error"] is None and out["after_fix_files"] > 0
    with synarrow.SynaDB(path) as db:  # nothing was lost on disk either
        np.testing.assert_array_equal(db.get_history_floats("k"), np.arange(N, dtype=float))


def test_explicit_compact_raises_the_pending_error_once(
    db_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    """The next explicit ``compact()`` reports the background failure, then compacts again."""
    import synarrow.columnar.compact as compact_mod

    real = compact_mod.write_generation
    monkeypatch.setattr(
        compact_mod,
        "write_generation",
        lambda *a, **k: (_ for _ in ()).throw(OSError(28, "No space left on device")),
    )
    values = np.random.default_rng(1).random(2000)  # 16 KB of log: past the threshold
    failed = threading.Event()

    class Signal(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            failed.set()  # logged after the error is kept: stats() already shows it

    handler = Signal(level=logging.ERROR)
    logging.getLogger("synarrow").addHandler(handler)
    request.addfinalizer(lambda: logging.getLogger("synarrow").removeHandler(handler))
    cfg = synarrow.DbConfig(sync_on_write=False, auto_compact=True, compact_threshold_bytes=4096)
    with synarrow.SynaDB(db_path, cfg) as db:
        db.append_batch("k", values)
        assert failed.wait(60), "the background compaction never reported"
        assert "No space left" in db.stats()["last_compaction_error"]
        monkeypatch.setattr(compact_mod, "write_generation", real)
        with pytest.raises(synarrow.CompactionError) as info:
            db.compact()
        assert isinstance(info.value.__cause__, OSError)
        assert db.compact()["keys"] == 1  # raised once; this call compacts
        assert db.stats()["last_compaction_error"] is None
        np.testing.assert_array_equal(db.get_history_floats("k"), values)
