"""A writer of a shared log that is the only writer keeps the append lock between turns
(synarrow.engine.solo): it hands the lock over when another handle or process knocks, the
lock goes with the process (also past a forked child), and a keeper that dies loses
nothing to the handle that was waiting."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from synarrow import DbConfig, SynaDB
from synarrow.engine import solo
from synarrow.log.shared import HEAD_NAME

_HEAD = struct.Struct("<8sQQQQQQQ")
_KEPT = 2  # the head's writing word while a handle keeps the lock


def _writing_word(path: Path) -> int:
    return _HEAD.unpack((path / HEAD_NAME).read_bytes()[: _HEAD.size])[6]


def _open_in_thread(path: Path, **kwargs: object) -> tuple[threading.Thread, list]:
    """Open a handle in a thread (it may wait for the append lock); the list gets it."""
    out: list = []

    def run() -> None:
        try:
            out.append(SynaDB(path, **kwargs))
        except BaseException as exc:  # reported by the test
            out.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


def test_a_lone_writer_keeps_the_lock_and_hands_it_to_a_second_handle(tmp_path: Path) -> None:
    path = tmp_path / "db"
    a = SynaDB(path, DbConfig(sync_on_write=True))
    try:
        assert a._engine.keeping
        assert _writing_word(path) == _KEPT
        for i in range(5):
            a.append("k", float(i))
        b = SynaDB(path)  # knocks: the doorbell makes a let go
        try:
            assert not a._engine.keeping and not b._engine.keeping
            assert _writing_word(path) == 0
            assert b.get_history_floats("k").tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
            b.append("k", 5.0)
            a.append("k", 6.0)
            assert a.get_history_floats("k").tolist() == [float(i) for i in range(7)]
        finally:
            b.close()
    finally:
        a.close()
    with SynaDB(path, readonly=True) as r:
        assert r.get_history_floats("k").tolist() == [float(i) for i in range(7)]


def test_buffered_writes_of_the_keeper_go_to_the_log_before_it_lets_go(tmp_path: Path) -> None:
    path = tmp_path / "db"
    a = SynaDB(path, DbConfig(sync_on_write=False))
    try:
        assert a._engine.keeping
        a.append("n", 1.0)  # pending number
        a.put_text("t", "one")  # buffered single value
        a.delete("gone")
        b = SynaDB(path)
        try:
            b.delete("t")  # after a's text: removes it
            assert b.get("n") == 1.0 and b.get("t") is None
            a.put_text("t", "two")  # after b's tombstone
            a.flush()
            b.refresh()
            assert b.get("t") == "two"
        finally:
            b.close()
    finally:
        a.close()
    with SynaDB(path, readonly=True) as r:
        assert r.get("n") == 1.0 and r.get("t") == "two"


def test_the_lock_is_kept_again_once_the_writer_is_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(solo, "RETRY_SECONDS", 0.0)
    path = tmp_path / "db"
    a = SynaDB(path)
    try:
        assert a._engine.keeping
        b = SynaDB(path)
        a.append("k", 1.0)
        assert not a._engine.keeping  # b is open: a takes turns
        b.close()
        a.append("k", 2.0)  # the turn ends alone: a keeps the lock again
        assert a._engine.keeping
        assert a.get_history_floats("k").tolist() == [1.0, 2.0]
    finally:
        a.close()
    assert _writing_word(path) == 0  # close writes the head


def test_a_retention_rule_set_while_keeping_reaches_the_next_handle(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with SynaDB(path) as a:
        assert a._engine.keeping
        a.set_retention("old/*", "1s")
        a.append("old/x", 1.0, timestamp=1)
        a.append("new/x", 2.0)
        with SynaDB(path) as b:
            assert b.get("old/x") is None and b.get("new/x") == 2.0
            b.set_retention("old/*", None)
            a.append("new/x", 3.0)
            a.refresh()
            assert a.get("old/x") == 1.0


_HAMMER = textwrap.dedent(
    """
    import sys, time
    from synarrow import DbConfig, SynaDB
    db = SynaDB(sys.argv[1], DbConfig(sync_on_write=False))
    print("open", db._engine.keeping, flush=True)
    app = db.append
    i = 0
    end = time.monotonic() + float(sys.argv[2])
    while time.monotonic() < end:
        for _ in range(1000):
            app("hot", float(i))
            i += 1
    db.close()
    print("wrote", i, flush=True)
    """
)


def test_another_process_gets_in_while_the_keeper_appends_without_pause(tmp_path: Path) -> None:
    path = tmp_path / "db"
    SynaDB(path).close()
    hammer = subprocess.Popen(
        [sys.executable, "-c", _HAMMER, str(path), "6"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert hammer.stdout is not None
        assert hammer.stdout.readline().split() == ["open", "True"]
        thread, got = _open_in_thread(path, config=DbConfig(sync_on_write=True))
        thread.join(5)  # a liveness bound (the doorbell looks every few ms), not a figure
        assert not thread.is_alive(), "a second writer waited for the keeper for 5 s"
        b = got[0]
        assert isinstance(b, SynaDB), b
        try:
            b.append("cold", 1.0)
        finally:
            b.close()
        out, _ = hammer.communicate(timeout=60)
        assert hammer.returncode == 0
        written = int(out.split()[-1])
    finally:
        hammer.kill()
        hammer.wait()
    with SynaDB(path, readonly=True) as r:
        hot = r.get_history_floats("hot")
        assert len(hot) == written and hot.tolist() == [float(i) for i in range(written)]
        assert r.get("cold") == 1.0


_DIE_KEEPING = textwrap.dedent(
    """
    import os, signal, sys
    from synarrow import DbConfig, SynaDB
    db = SynaDB(sys.argv[1], DbConfig(sync_on_write=True, max_log_file_size=65536))
    assert db._engine.keeping
    for i in range(3000):
        db.append(f"k{i % 3}", float(i))   # durable: acknowledged on return; rotates
    segment = db._engine.writer.path
    with open(segment, "ab") as f:         # a torn entry, as a kill in a write leaves
        f.write(b"\\x05" * 13)
    print("ready", flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)   # the doorbell stops too: knocks go unanswered
    """
)


def test_a_keeper_killed_while_another_waits_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "db"
    keeper = subprocess.Popen(
        [sys.executable, "-c", _DIE_KEEPING, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert keeper.stdout is not None
        assert keeper.stdout.readline().strip() == "ready"
        thread, got = _open_in_thread(path)
        thread.join(0.5)
        assert thread.is_alive(), "opened while the keeper held the lock"
    finally:
        keeper.kill()
        keeper.wait()
    thread.join(30)
    b = got[0]
    assert isinstance(b, SynaDB), b
    try:
        assert _writing_word(path) in (0, _KEPT)
        values = sorted(v for k in range(3) for v in b.get_history_floats(f"k{k}").tolist())
        assert values == [float(i) for i in range(3000)]
        b.append("k0", 3000.0)
    finally:
        b.close()
    with SynaDB(path, readonly=True) as r:
        assert len(r.get_history_floats("k0")) == 1001
        assert r.get("k0") == 3000.0


_FORKER = textwrap.dedent(
    """
    import os, sys, time
    from synarrow import SynaDB
    db = SynaDB(sys.argv[1])
    assert db._engine.keeping
    db.append("k", 1.0)
    child = os.fork()
    if child == 0:
        time.sleep(60)   # outlives the parent, with copies of its descriptors
        os._exit(0)
    print(child, flush=True)
    time.sleep(60)       # killed by the test while it keeps the lock
    """
)


def test_the_lock_goes_with_a_killed_keeper_even_when_its_forked_child_lives(
    tmp_path: Path,
) -> None:
    path = tmp_path / "db"
    parent = subprocess.Popen(
        [sys.executable, "-c", _FORKER, str(path)], stdout=subprocess.PIPE, text=True
    )
    child = None
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        parent.kill()
        parent.wait()
        thread, got = _open_in_thread(path)
        thread.join(10)  # liveness: without the fork hook the child's copy keeps the lock
        assert not thread.is_alive(), "the keeper's forked child kept the append lock"
        b = got[0]
        assert isinstance(b, SynaDB), b
        with b:
            assert b.get("k") == 1.0
    finally:
        parent.kill()
        if child is not None:
            os.kill(child, signal.SIGKILL)
            try:
                os.waitpid(child, 0)
            except ChildProcessError:
                pass  # not ours: reaped by init
    time.sleep(0)
