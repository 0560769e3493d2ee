"""Several writer handles on one database (``DbConfig(writers="many")``): handles in one
process and real processes, SIGKILL of writers at random moments with an oracle of
acknowledged writes, compaction while others write, and a model of interleaved turns."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synarrow import DbConfig, SynaDB
from synarrow.errors import DatabaseLockedError

MANY = DbConfig(writers="many")


def _history(db: SynaDB, key: str) -> list[float]:
    return [float(v) for v in db.get_history_floats(key)]


def test_two_handles_in_one_process_see_each_other(tmp_path: Path) -> None:
    path = tmp_path / "db"
    a = SynaDB(path, config=MANY)
    b = SynaDB(path)  # the stored setting: many
    try:
        for i in range(50):
            a.append("x", float(i), timestamp=2 * i)
            b.append("x", float(1000 + i), timestamp=2 * i + 1)
        b.append("only_b", "text")
        a.refresh()
        b.refresh()
        expected = [v for i in range(50) for v in (float(i), float(1000 + i))]
        assert _history(a, "x") == expected
        assert _history(b, "x") == expected
        assert a.get("only_b") == "text"
        assert a.get("x") == b.get("x") == 1049.0
    finally:
        a.close()
        b.close()
    with SynaDB(path, readonly=True) as r:
        assert _history(r, "x") == expected


def test_single_refuses_many_and_many_refuses_single(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with SynaDB(path, config=MANY), pytest.raises(DatabaseLockedError):
        SynaDB(path, config=DbConfig(writers="single"))
    with SynaDB(path, config=DbConfig(writers="single")):
        with pytest.raises(DatabaseLockedError, match="refuses others"):
            SynaDB(path, config=MANY)
        with pytest.raises(DatabaseLockedError):
            SynaDB(path, config=DbConfig(writers="single"))


def test_buffered_appends_of_two_handles_keep_their_delta_chains_apart(tmp_path: Path) -> None:
    """Buffered numbers are delta-coded against the key's previous entry: a handle whose key
    another handle wrote in between must start the chain again (else a reader decodes wrong
    values)."""
    path = tmp_path / "db"
    cfg = DbConfig(writers="many", sync_on_write=False)
    a = SynaDB(path, config=cfg)
    b = SynaDB(path, config=cfg)
    expected = []
    try:
        for round_ in range(20):
            for h, db in enumerate((a, b)):
                for i in range(7):
                    v = round_ * 100.0 + h * 10 + i + 0.25
                    db.append("k", v, timestamp=len(expected))
                    db.append(f"own{h}", v)
                    expected.append(v)
                db.flush()
    finally:
        a.close()
        b.close()
    with SynaDB(path, readonly=True) as r:
        assert _history(r, "k") == expected
        assert len(r.get_history_floats("own0")) == len(r.get_history_floats("own1")) == 140


def test_delete_by_another_handle_does_not_remove_pending_appends(tmp_path: Path) -> None:
    """A pending (buffered, unwritten) append comes after another handle's tombstone in the
    log, so it survives it: in the writer's own view too."""
    path = tmp_path / "db"
    a = SynaDB(path, config=DbConfig(writers="many", sync_on_write=False))
    b = SynaDB(path, config=DbConfig(writers="many"))
    try:
        b.append("k", 1.0, timestamp=10)
        a.append("k", 2.0, timestamp=20)  # pending in a
        a.append("k", 3.0, timestamp=5)  # pending in a
        b.delete("k")
        b.append("r", 1.0, timestamp=1)
        a.append("r", 2.0, timestamp=2)  # pending in a
        b.delete_range("r", 0, 100)
        a.flush()  # a's turn: it reads b's tombstones, then writes its pending appends
        assert _history(a, "k") == [3.0, 2.0]
        assert a.get("k") == 2.0
        assert _history(a, "r") == [2.0]
        b.refresh()
        assert _history(b, "k") == [3.0, 2.0]
        assert _history(b, "r") == [2.0]
    finally:
        a.close()
        b.close()
    with SynaDB(path, readonly=True) as r:
        assert _history(r, "k") == [3.0, 2.0]
        assert _history(r, "r") == [2.0]


def test_compaction_by_one_handle_while_another_writes(tmp_path: Path) -> None:
    path = tmp_path / "db"
    cfg = DbConfig(writers="many", auto_compact=False, max_log_file_size=64 * 1024)
    a = SynaDB(path, config=cfg)
    b = SynaDB(path, config=cfg)
    try:
        n = 0
        for round_ in range(5):
            for i in range(300):
                a.append(f"k{i % 7}", float(n), timestamp=n)
                n += 1
                b.append(f"k{i % 7}", float(n), timestamp=n)
                n += 1
            b.append_batch("batch", np.arange(1000.0) + round_ * 1000)
            (a if round_ % 2 else b).compact()
        for db in (a, b):
            db.refresh()
            for k in range(7):
                h = _history(db, f"k{k}")
                assert h == sorted(h) and len(h) == 10 * len(range(k, 300, 7))
            assert _history(db, "batch") == [float(v) for v in range(5000)]
        assert sum(len(a.get_history_floats(f"k{k}")) for k in range(7)) == n
    finally:
        a.close()
        b.close()
    with SynaDB(path, readonly=True) as r:
        assert sum(len(r.get_history_floats(f"k{k}")) for k in range(7)) == n


_WRITER = textwrap.dedent(
    """
    import os, sys
    from synarrow import DbConfig, SynaDB
    path, name, acks, start, count, keys = sys.argv[1:7]
    start, count, keys = int(start), int(count), int(keys)
    db = SynaDB(path, config=DbConfig(writers="many", max_log_file_size=64 * 1024,
                                      compact_threshold_bytes=256 * 1024))
    fd = os.open(acks, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for i in range(start, start + count):
        value = float(i)
        db.append(f"k{i % keys}", value)          # durable: acknowledged once it returns
        os.write(fd, f"{name} {i}\\n".encode())
    db.close()
    """
)


def _start_writer(path: Path, name: str, acks: Path, start: int, count: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path), name, str(acks), str(start), str(count), "5"],
        stderr=subprocess.PIPE,
    )


def _acknowledged(acks: Path) -> set[int]:
    done = set()
    for line in acks.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            done.add(int(parts[1]))
    return done


def test_writer_processes_killed_at_random_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    """Eight processes append durably to overlapping keys (with automatic compactions); one
    of them is killed with SIGKILL at random moments and started again on a fresh range of
    values. Every acknowledged value is there exactly once, no value twice, histories are
    sorted by timestamp."""
    path = tmp_path / "db"
    SynaDB(path, config=DbConfig(writers="many")).close()
    rng = random.Random(1234)
    per = 200
    procs = {}
    acks = {}
    for w in range(8):
        acks[w] = tmp_path / f"acks{w}"
        procs[w] = _start_writer(path, f"w{w}", acks[w], w * 1_000_000, per)
    incarnation = 0
    kills = 0
    deadline = time.monotonic() + 60
    while kills < 6 and time.monotonic() < deadline:
        time.sleep(rng.uniform(0.05, 0.4))
        victim = procs[0]
        if victim.poll() is not None:
            break
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        kills += 1
        incarnation += 1
        procs[0] = _start_writer(path, "w0", acks[0], incarnation * 10_000_000, per)
    for p in procs.values():
        _, err = p.communicate(timeout=120)
        assert p.returncode in (0, -signal.SIGKILL), err.decode()
    acked = set().union(*(_acknowledged(a) for a in acks.values()))
    with SynaDB(path, readonly=True) as r:
        found: list[float] = []
        for k in range(5):
            stamps = r.get_history(f"k{k}").column("ts").to_numpy().astype("int64").tolist()
            assert stamps == sorted(stamps)
            found.extend(_history(r, f"k{k}"))
    values = [int(v) for v in found]
    assert len(values) == len(set(values)), "a value is stored twice"
    assert acked <= set(values), f"{len(acked - set(values))} acknowledged values lost"
    assert kills >= 1


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2),  # handle
            st.sampled_from(
                ["num", "num", "num", "text", "text", "del", "range", "flush", "batch"]
                + ["refresh", "compact"]
            ),
            st.integers(0, 2),  # key
        ),
        min_size=1,
        max_size=40,
    )
)
def test_interleaved_handles_match_a_model_of_turns(tmp_path_factory, ops) -> None:
    """Three handles (two buffered, one durable) take turns in random order; after each
    handle refreshes, its reads match a model of the log in turn order plus its own
    pending appends, and so do a fresh reader's after every handle closed."""
    path = tmp_path_factory.mktemp("model") / "db"
    configs = [
        DbConfig(writers="many", sync_on_write=False),
        DbConfig(writers="many", sync_on_write=False),
        DbConfig(writers="many"),
    ]
    handles = [SynaDB(path, config=c) for c in configs]
    log: list[tuple] = []  # ("put", key, ts, value) / ("del", key) / ("range", key, lo, hi)
    pending: list[list[tuple]] = [[], [], []]
    clock = 0

    def turn(h: int) -> None:
        log.extend(pending[h])
        pending[h].clear()

    def history(entries: list[tuple], key: str) -> list[tuple[int, object]]:
        rows: list[tuple[int, object]] = []
        for e in entries:
            if e[1] != key:
                continue
            if e[0] == "put":
                rows.append((e[2], e[3]))
            elif e[0] == "del":
                rows = []
            else:
                rows = [r for r in rows if not (e[2] <= r[0] < e[3])]
        return sorted(rows, key=lambda r: r[0])

    try:
        for h, kind, k in ops:
            db, key = handles[h], f"k{k}"
            clock += 10
            if kind == "num":
                db.append(key, float(clock), timestamp=clock)
                entry = ("put", key, clock, float(clock))
                if configs[h].sync_on_write:
                    turn(h)
                    log.append(entry)
                else:
                    pending[h].append(entry)
                continue
            if kind == "text":
                db.append(key, f"t{clock}", timestamp=clock)
                entry = ("put", key, clock, f"t{clock}")
                if configs[h].sync_on_write:
                    turn(h)
                    log.append(entry)
                    continue
                # buffered without a turn, after the pending numbers were written in one
                if any(isinstance(e[3], float) for e in pending[h]):
                    turn(h)
                pending[h].append(entry)
                continue
            if kind == "refresh":
                db.refresh()
                continue
            turn(h)
            if kind == "compact":
                db.compact()
            elif kind == "del":
                db.delete(key)
                log.append(("del", key))
            elif kind == "range":
                db.delete_range(key, clock - 35, clock - 5)
                log.append(("range", key, clock - 35, clock - 5))
            elif kind == "batch":
                db.append_batch(key, np.array([1.5, 2.5]), timestamps=np.array([clock, clock + 1]))
                log.append(("put", key, clock, 1.5))
                log.append(("put", key, clock + 1, 2.5))
                clock += 1
            else:
                db.flush()
        for h, db in enumerate(handles):
            db.refresh()  # reads the others' turns, writes nothing
            for k in range(3):
                want = history(log + pending[h], f"k{k}")
                got = db.get(f"k{k}")
                assert got == (want[-1][1] if want else None), (h, k)
                if want:
                    stamps = db.get_history(f"k{k}").column("ts").to_numpy().astype("int64")
                    assert stamps.tolist() == [w[0] for w in want], (h, k)
    finally:
        for db in handles:
            db.close()
    for h in range(3):
        turn(h)
    with SynaDB(path, readonly=True) as r:
        for k in range(3):
            want = history(log, f"k{k}")
            assert r.get(f"k{k}") == (want[-1][1] if want else None)


_CREATOR = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from synarrow import SynaDB
    base, me, rounds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    for r in range(rounds):
        (base / f"ready-{r}-{me}").touch()
        while not (base / f"go-{r}").exists():
            time.sleep(0.0002)
        db = SynaDB(base / f"db{r}")
        db.append(me, float(r))
        db.close()
    """
)


def test_writer_processes_creating_one_database_at_once_all_open_it(tmp_path: Path) -> None:
    """Eight processes open the same new path at the same moment, round after round: none
    is refused (the marker, config and directories are made once) and every append is there."""
    procs, rounds = 8, 6
    names = [f"p{i}" for i in range(procs)]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CREATOR, str(tmp_path), name, str(rounds)],
            stderr=subprocess.PIPE,
        )
        for name in names
    ]
    try:
        for r in range(rounds):
            deadline = time.monotonic() + 120
            while not all((tmp_path / f"ready-{r}-{n}").exists() for n in names):
                failed = [c for c in children if c.poll() not in (None, 0)]
                assert not failed, failed[0].stderr.read().decode()
                assert time.monotonic() < deadline, f"round {r}: writers not ready"
                time.sleep(0.005)
            (tmp_path / f"go-{r}").touch()
        for child in children:
            _, err = child.communicate(timeout=120)
            assert child.returncode == 0, err.decode()
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    for r in range(rounds):
        with SynaDB(tmp_path / f"db{r}", readonly=True) as db:
            assert sorted(db.keys()) == sorted(names)
            assert all(_history(db, n) == [float(r)] for n in names)
