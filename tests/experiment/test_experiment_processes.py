"""Several real processes on one experiment store.

The rule under test: one writer process at a time. A second writer gets
DatabaseLockedError at once (or waits up to ``timeout``); read-only experiments read while a
writer writes; a writer that dies leaves its runs ``killed`` with the metrics it flushed.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import synarrow
import synarrow.shared_writer as shared_writer_mod
from synarrow import DatabaseLockedError


def _spawn(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


HOLDER = """
    import sys, synarrow
    exp = synarrow.Experiment("e", sys.argv[1])
    with exp.start_run("holder") as run:
        for i in range(10):
            run.log_metric("loss", float(i))
    run2 = exp.start_run("open")
    print(run.id, run2.id, flush=True)
    sys.stdin.readline()          # hold the writer lock until told to go
    run2.end()
    exp.close()
"""


def test_second_writer_fails_fast_reader_reads_and_waiter_waits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "exp.db"
    synarrow.SynaDB(store, synarrow.DbConfig(writers="single")).close()  # one writer process
    holder = _spawn(HOLDER, str(store))
    try:
        done_id, open_id = holder.stdout.readline().split()  # type: ignore[union-attr]
        waits: list[float] = []
        real_sleep = shared_writer_mod.time.sleep
        # open_shared() waits for the lock by sleeping between tries: record every wait.
        monkeypatch.setattr(shared_writer_mod.time, "sleep", lambda s: waits.append(s))
        with pytest.raises(DatabaseLockedError) as info:
            synarrow.Experiment("e", store)
        monkeypatch.setattr(shared_writer_mod.time, "sleep", real_sleep)
        assert waits == []  # timeout=0 (the default): one try, no wait for the lock
        monkeypatch.setattr(shared_writer_mod.time, "sleep", lambda s: waits.append(s))
        with pytest.raises(DatabaseLockedError):
            synarrow.Experiment("e", store, timeout=0.2)
        monkeypatch.setattr(shared_writer_mod.time, "sleep", real_sleep)
        assert waits  # and the probe does see a wait when one is asked for
        assert "another process" in str(info.value) and "timeout" in str(info.value)
        with pytest.raises(DatabaseLockedError):
            synarrow.ModelRegistry(store)
        with synarrow.Experiment("e", store, readonly=True) as reader:
            assert reader.get_run(done_id).status == "completed"
            assert reader.get_run(open_id).status == "running"
            np.testing.assert_array_equal(reader.get_metric_tensor(done_id, "loss"), range(10))
            assert reader.sql("SELECT count(*) AS n FROM metrics").to_pylist() == [{"n": 10}]
        # release the holder shortly; a waiting writer gets the store once it is free
        holder.stdin.write("go\n")  # type: ignore[union-attr]
        holder.stdin.flush()  # type: ignore[union-attr]
        with synarrow.Experiment("e", store, timeout=30) as exp:
            assert exp.get_run(open_id).status == "completed"
    finally:
        holder.kill()
        holder.wait()


TRIAL = """
    import sys, synarrow
    exp = synarrow.Experiment("trials", sys.argv[1], timeout=60)
    with exp.start_run(sys.argv[2]) as run:
        run.log_param("trial", sys.argv[2])
        for i in range(200):
            run.log_metric("loss", 1.0 / (i + 1), step=i)
    exp.close()
"""


def test_parallel_trials_with_timeout_take_turns(tmp_path: Path) -> None:
    store = tmp_path / "exp.db"
    procs = [_spawn(TRIAL, str(store), f"t{i}") for i in range(3)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    with synarrow.Experiment("trials", store) as exp:
        runs = exp.query(filter={"status": "completed"})
        assert sorted(r.name for r in runs) == ["t0", "t1", "t2"]
        for r in runs:
            np.testing.assert_allclose(exp.get_metric_tensor(r.id, "loss"), 1.0 / np.arange(1, 201))


KILLED = """
    import sys, threading, time, synarrow
    from synarrow.experiment import Run

    flushed = threading.Event()
    real_flush = Run._flush

    def flush(self):  # instrumented: tell the parent once the background thread flushed
        real_flush(self)
        if threading.current_thread().name == "synarrow-metric-flusher":
            flushed.set()

    Run._flush = flush
    exp = synarrow.Experiment("e", sys.argv[1], flush_interval=0.05)
    run = exp.start_run("doomed")
    for i in range(5):
        run.log_metric("loss", float(i))
    assert flushed.wait(120), "the background flush never ran"
    print(run.id, flush=True)
    time.sleep(600)
"""


def test_killed_writer_leaves_run_killed_with_flushed_metrics(tmp_path: Path) -> None:
    store = tmp_path / "exp.db"
    proc = _spawn(KILLED, str(store))
    try:
        run_id = proc.stdout.readline().strip()  # printed once the background flush ran
        with synarrow.Experiment("e", store, readonly=True) as reader:
            seen = list(reader.get_metric_tensor(run_id, "loss"))
        assert seen == [0.0, 1.0, 2.0, 3.0, 4.0]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        proc.kill()
        proc.wait()
    with synarrow.Experiment("e", store, timeout=10) as exp:
        run = exp.get_run(run_id)
        assert run.status == "killed" and run.end_time is not None
        np.testing.assert_array_equal(exp.get_metric_tensor(run_id, "loss"), range(5))


EXITS = """
    import sys, synarrow
    exp = synarrow.Experiment("e", sys.argv[1], flush_interval=3600)
    run = exp.start_run("forgotten")
    for i in range(7):
        run.log_metric("loss", float(i))
    print(run.id, flush=True)
    # exits without ending the run or closing the experiment
"""


def test_interpreter_exit_ends_open_runs_and_writes_metrics(tmp_path: Path) -> None:
    store = tmp_path / "exp.db"
    proc = _spawn(EXITS, str(store))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    with synarrow.Experiment("e", store) as exp:
        run = exp.get_run(out.strip())
        assert run.status == "killed"
        np.testing.assert_array_equal(exp.get_metric_tensor(run.id, "loss"), range(7))


def _forked_child(path: str, queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    try:
        with synarrow.Experiment("e", path) as exp, exp.start_run("child") as run:
            run.log_metric("loss", 2.0)
        queue.put(run.id)
    except Exception as exc:
        queue.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.skipif(sys.platform == "win32", reason="fork")
def test_forked_worker_does_not_reuse_parent_handle(tmp_path: Path) -> None:
    store = tmp_path / "exp.db"
    ctx = multiprocessing.get_context("fork")
    with synarrow.Experiment("e", store) as exp:
        with exp.start_run() as run:
            queue = ctx.Queue()
            child = ctx.Process(target=_forked_child, args=(str(store), queue))
            child.start()
            result = queue.get(timeout=60)
            child.join(60)
            run.log_metric("loss", 1.0)  # the parent still logs normally
        # the child opened a writer of its own beside the parent's (never the parent's)
        assert child.exitcode == 0 and len(result) == 32, result
        np.testing.assert_array_equal(exp.get_metric_tensor(run.id, "loss"), [1.0])
        exp.refresh()
        assert exp.get_run(result).status == "completed"
        np.testing.assert_array_equal(exp.get_metric_tensor(result, "loss"), [2.0])
        assert exp.get_run(run.id).status == "completed"


SWEEP = """
    import sys, synarrow
    store, trial = sys.argv[1], int(sys.argv[2])
    exp = synarrow.Experiment("sweep", store)
    reg = synarrow.ModelRegistry(store)
    with exp.start_run(f"trial{trial}") as run:
        run.log_param("lr", 10.0 ** -trial)
        for step in range(300):
            run.log_metric("loss", trial + 1.0 / (step + 1), step=step)
    versions = [reg.save_model("net", f"weights {trial}/{i}".encode(), run_id=run.id).version
                for i in range(3)]
    print(run.id, *versions, flush=True)
    reg.close()
    exp.close()
"""


def test_eight_processes_log_runs_and_save_versions_to_one_store(tmp_path: Path) -> None:
    """A sweep of 8 trial processes at once: each logs a run to one experiment and saves
    versions to one registry in the same store; every run is complete, version numbers
    are unique and gap-free, and each version's bytes are the ones its process saved."""
    store = tmp_path / "sweep.db"
    procs = [_spawn(SWEEP, str(store), str(t)) for t in range(8)]
    saved: dict[int, tuple[str, list[int]]] = {}
    for t, p in enumerate(procs):
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        run_id, *versions = out.split()
        saved[t] = (run_id, [int(v) for v in versions])
    all_versions = sorted(v for _, vs in saved.values() for v in vs)
    assert all_versions == list(range(1, 25))
    with synarrow.Experiment("sweep", store, readonly=True) as exp:
        runs = exp.query(filter={"status": "completed"})
        assert sorted(r.name for r in runs) == [f"trial{t}" for t in range(8)]
        for t, (run_id, _) in saved.items():
            loss = exp.get_metric_tensor(run_id, "loss")
            np.testing.assert_allclose(loss, t + 1.0 / np.arange(1, 301))
            assert exp.get_run(run_id).params["lr"] == 10.0**-t
    with synarrow.ModelRegistry(store, readonly=True) as reg:
        for t, (run_id, versions) in saved.items():
            for i, v in enumerate(versions):
                data, info = reg.load_model("net", v)
                assert data == f"weights {t}/{i}".encode()
                assert info.run_id == run_id
