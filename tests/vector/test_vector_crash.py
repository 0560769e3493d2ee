"""Crash tests: a process inserting vectors is killed with SIGKILL.

Every vector whose insert returned (the child prints its count afterwards) must be readable
and searchable after reopening, and no deleted key may come back, wherever the kill landed:
between the log write and the index save, or in the middle of an index save.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest

from synarrow.vector import VectorStore

DIMS = 16
ROWS = 20_000

WRITER = textwrap.dedent(
    """
    import sys, numpy as np, synarrow
    path, start, batch, save_every = sys.argv[1], *map(int, sys.argv[2:5])
    data = np.random.default_rng(0).standard_normal(({rows}, {dims})).astype(np.float32)
    store = synarrow.VectorStore(path, {dims})  # default config: fsync once per call
    done = start
    step = 0
    while done < {rows}:
        n = min(batch, {rows} - done)
        store.insert_batch([f"doc/{{i}}" for i in range(done, done + n)], data[done : done + n])
        done += n
        step += 1
        if step % 3 == 0:
            store.delete(f"doc/{{done - 1}}")
            print("deleted", done - 1, flush=True)
        if save_every and step % save_every == 0:
            store.flush()
        print("acked", done, flush=True)
    """
).format(rows=ROWS, dims=DIMS)


def _run_and_kill(
    path: Path, start: int, batch: int, save_every: int, after: int
) -> tuple[int, set[int]]:
    """Run the writer from row ``start`` until it acknowledged ``after`` rows, then SIGKILL
    it; returns the rows acknowledged and the acknowledged deletions."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(start), str(batch), str(save_every)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acked = [0]
    deleted: set[int] = set()
    reached = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            what, n = line.split()
            if what == "deleted":
                deleted.add(int(n))
            else:
                acked[0] = int(n)
                if acked[0] >= after:
                    reached.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    finished = reached.wait(timeout=60)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    reader.join(timeout=10)
    assert finished, proc.stderr.read() if proc.stderr else ""
    # A deletion in a batch that was not acknowledged is redone by the next writer.
    return acked[0], {d for d in deleted if d < acked[0]}


def _check(path: Path, acked: int, deleted: set[int]) -> None:
    data = np.random.default_rng(0).standard_normal((ROWS, DIMS)).astype(np.float32)
    with VectorStore(path) as store:
        keys = set(store.keys())
        for i in range(acked):
            key = f"doc/{i}"
            if i in deleted:
                assert key not in keys
                continue
            assert key in keys
            np.testing.assert_array_equal(store.get(key), data[i])
        alive = [i for i in range(acked) if i not in deleted]
        sample = alive[:: max(1, len(alive) // 300)]
        hits = store.search_batch(data[sample], k=1)
        found = sum(h[0].key == f"doc/{i}" for h, i in zip(hits, sample))
        assert found >= 0.97 * len(sample)
        for i in sample[:20]:
            assert store.search(data[i], k=1, exact=True)[0].key == f"doc/{i}"
        # Nothing that was never written shows up; the last batch may be partly there.
        assert all(int(k.split("/")[1]) < ROWS for k in keys)


@pytest.mark.parametrize(
    ("batch", "save_every"),
    [
        (1500, 0),  # large batches; the writer never saves the index
        (200, 2),  # frequent saves: kills land before, during and after index saves
    ],
)
def test_kill_writer(tmp_path: Path, batch: int, save_every: int) -> None:
    path = tmp_path / "vectors.db"
    total_acked, total_deleted = 0, set()
    rng = np.random.default_rng(batch)
    for _ in range(2):
        after = total_acked + int(rng.integers(batch, 4 * batch))
        acked, deleted = _run_and_kill(path, total_acked, batch, save_every, after)
        total_deleted |= deleted
        total_acked = acked
        _check(path, total_acked, total_deleted)
