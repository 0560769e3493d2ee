"""kill -9 during ``snapshot()`` and ``drop_snapshot()``: every tag is whole or absent.

A child process makes (or drops) tags in a loop and prints the number of each one done; it
is killed at a random moment. After each kill the database is reopened for writing: every
acknowledged tag is present (or, for drops, absent), the tag in flight is one or the other,
every present tag reads exactly its data, ``check_database`` passes, and the columnar
directory holds nothing but the files the live manifest and the records name.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _support import run_and_kill

import synarrow
from synarrow.check import check_database
from synarrow.columnar import tags
from synarrow.columnar.manifest import MANIFEST_NAME, read_manifest
from synarrow.errors import SnapshotNotFoundError

# Iteration i of the workload, run by the children and by prepare(): the model is expected().
OPS = """
import numpy as np
def step(db, i):
    block = np.arange(i * 50, (i + 1) * 50)
    db.append_batch("k", block.astype(float), timestamps=block)
    if i % 3 == 2:
        db.delete_range("k", i * 50 - 100, i * 50 - 50)
    db.append("x", float(i), timestamp=i)
    if i % 4 == 3:
        db.delete("x")
    if i % 5 == 4:
        db.compact(full=True)
"""
_OPS: dict[str, Any] = {}
exec(OPS, _OPS)  # the same step() here
step = _OPS["step"]

SNAPSHOT_CHILD = (
    OPS
    + """
import sys, synarrow
cfg = synarrow.DbConfig(sync_on_write=False, auto_compact=False)
db = synarrow.SynaDB(sys.argv[1], cfg)
print(-1, flush=True)
for i in range(10_000):
    step(db, i)
    db.snapshot(f"v{i}", note=f"after step {i}")
    print(i, flush=True)
"""
)

DROP_CHILD = """
import random, sys, synarrow
cfg = synarrow.DbConfig(sync_on_write=False, auto_compact=False)
db = synarrow.SynaDB(sys.argv[1], cfg)
order = [f"v{i}" for i in range(int(sys.argv[2]))]
random.Random(int(sys.argv[3])).shuffle(order)
print(-1, flush=True)
for j, tag in enumerate(order):
    db.drop_snapshot(tag)
    print(j, flush=True)
"""


def expected(i: int) -> dict[str, list[float]]:
    """What tag ``v{i}`` reads: the histories after steps 0..i."""
    k = [
        float(v)
        for j in range(i + 1)
        if not (j % 3 == 0 and j + 2 <= i)
        for v in range(j * 50, (j + 1) * 50)
    ]
    deletes = [j for j in range(i + 1) if j % 4 == 3]
    last = deletes[-1] if deletes else -1
    x = [float(j) for j in range(last + 1, i + 1)]
    return {"k": k, **({"x": x} if x else {})}


def check_tag(path: Path, tag: str) -> None:
    want = expected(int(tag[1:]))
    with synarrow.SynaDB(path, snapshot=tag) as old:
        assert old.keys() == sorted(want)
        for key, vals in want.items():
            assert old.get_history_floats(key).tolist() == vals
        counts = old.sql("SELECT key, count(*) AS n FROM history GROUP BY key").to_pylist()
        assert {r["key"]: r["n"] for r in counts} == {k: len(v) for k, v in want.items()}
    with synarrow.SynaDB(path, readonly=True) as ro:
        info = next(i for i in ro.snapshots() if i.tag == tag)
    assert info.note == f"after step {tag[1:]}"


def check_files(path: Path) -> None:
    """The columnar directory holds only what the live manifest or a record names, and no
    record temporaries are left in the snapshots directory."""
    directory = path / "columnar"
    manifest = read_manifest(directory)
    wanted = {f.name for f in manifest.files} | ({MANIFEST_NAME} & set(os.listdir(directory)))
    if manifest.index:
        wanted.add(manifest.index)
    pinned = tags.pinned_names(path / tags.SNAPSHOTS_DIR)
    assert pinned is not None
    assert set(os.listdir(directory)) == wanted | pinned
    records = path / tags.SNAPSHOTS_DIR
    assert not records.exists() or all(not n.startswith(".") for n in os.listdir(records))


def after_kill(path: Path, acked_present: set[str], in_flight: str | None) -> set[str]:
    """Reopen for writing, check everything; returns the tags present."""
    with synarrow.SynaDB(path) as db:
        present = {i.tag for i in db.snapshots()}
        assert acked_present <= present
        assert present - acked_present <= ({in_flight} if in_flight else set())
        check_files(path)
        db.compact(full=True)
        check_files(path)
    if in_flight is not None and in_flight not in present:
        with pytest.raises(SnapshotNotFoundError):
            synarrow.SynaDB(path, snapshot=in_flight)
    for tag in present:
        check_tag(path, tag)
    report = check_database(path)
    assert report.ok, report.damage
    return present


def kill_rounds(rounds: int) -> list[float]:
    rng = random.Random(rounds)
    return [rng.uniform(0.02, 0.4) for _ in range(rounds)]


@pytest.mark.parametrize("delay", kill_rounds(3))
def test_kill_during_snapshot_leaves_each_tag_whole_or_absent(db_path: Path, delay: float) -> None:
    acked = run_and_kill(SNAPSHOT_CHILD, [str(db_path)], delay)
    done = [i for i in acked if i >= 0]
    in_flight = f"v{done[-1] + 1 if done else 0}"
    after_kill(db_path, {f"v{i}" for i in done}, in_flight)


def prepare(path: Path, n: int) -> None:
    with synarrow.SynaDB(path, synarrow.DbConfig(sync_on_write=False, auto_compact=False)) as db:
        for i in range(n):
            step(db, i)
            db.snapshot(f"v{i}", note=f"after step {i}")


@pytest.mark.parametrize("seed", range(3))
def test_kill_during_drop_leaves_each_tag_whole_or_absent(db_path: Path, seed: int) -> None:
    n = 24
    prepare(db_path, n)
    delay = random.Random(seed).uniform(0.0, 0.04)
    acked = run_and_kill(DROP_CHILD, [str(db_path), str(n), str(seed)], delay)
    order = [f"v{i}" for i in range(n)]
    random.Random(seed).shuffle(order)
    done = [j for j in acked if j >= 0]
    dropped = {order[j] for j in done}
    in_flight = order[len(done)] if len(done) < n else None
    present = after_kill(db_path, set(order) - dropped - {in_flight} - {None}, in_flight)
    assert not present & dropped
    if present:
        return
    # Every tag gone: the directory is back to the live state alone.
    with synarrow.SynaDB(db_path) as db:
        assert db.get_history_floats("k").tolist() == expected(n - 1)["k"]


@pytest.mark.slow
@pytest.mark.parametrize("delay", kill_rounds(40))
def test_kill_during_snapshot_soak(db_path: Path, delay: float) -> None:
    test_kill_during_snapshot_leaves_each_tag_whole_or_absent(db_path, delay)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3, 43))
def test_kill_during_drop_soak(db_path: Path, seed: int) -> None:
    test_kill_during_drop_leaves_each_tag_whole_or_absent(db_path, seed)


def test_a_finished_child_leaves_every_tag(db_path: Path) -> None:
    """The harness itself: a child that is not killed acknowledges every tag it made."""
    script = SNAPSHOT_CHILD.replace("range(10_000)", "range(4)")
    out = subprocess.run(
        [sys.executable, "-c", script, str(db_path)], capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["-1", "0", "1", "2", "3"]
    present = after_kill(db_path, {"v0", "v1", "v2", "v3"}, None)
    assert present == {"v0", "v1", "v2", "v3"}
