"""run.log_input: which tagged snapshot of which database a run read, recorded durably."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import synarrow
from synarrow import (
    CorruptionError,
    InvalidArgumentError,
    InvalidPathError,
    InvalidStateError,
    NotFoundError,
    SnapshotNotFoundError,
)
from synarrow.experiment import find_run


@pytest.fixture
def data(tmp_path: Path):
    """A database with two keys and a snapshot ``v1`` (2 keys, 4 entries)."""
    db = synarrow.SynaDB(tmp_path / "train.db")
    db.append_batch("x", [1.0, 2.0, 3.0])
    db.append("y", "label")
    db.snapshot("v1", note="first")
    yield db
    db.close()


@pytest.fixture
def exp(tmp_path: Path):
    e = synarrow.Experiment("fit", tmp_path / "exp.db")
    yield e
    e.close()


def test_records_path_tag_time_counts_and_fingerprint(data, exp) -> None:
    info = next(i for i in data.snapshots() if i.tag == "v1")
    with exp.start_run() as run:
        inp = run.log_input(data, snapshot="v1", name="train")
    assert inp.path == str(data.path.resolve()) and os.path.isabs(inp.path)
    assert (inp.tag, inp.name, inp.keys, inp.entries) == ("v1", "train", 2, 4)
    assert inp.created == info.created
    assert len(inp.fingerprint) == 16 and inp.verified
    assert inp.logged_at is not None and inp.logged_at >= inp.created
    assert run.inputs == (inp,)


def test_round_trip_through_reopen_and_read_only(data, exp, tmp_path: Path) -> None:
    data.append("x", 4.0)
    data.snapshot("v2")
    with exp.start_run() as run:
        a = run.log_input(data, "v1", name="train")
        b = run.log_input(tmp_path / "train.db", "v2", name="eval")
    exp.close()
    with synarrow.Experiment("fit", tmp_path / "exp.db") as again:
        assert again.get_run(run.id).inputs == (a, b)
    with synarrow.Experiment("fit", tmp_path / "exp.db", readonly=True) as ro:
        back = ro.get_run(run.id).inputs
    assert [(i.tag, i.name, i.entries) for i in back] == [("v1", "train", 4), ("v2", "eval", 5)]
    assert a.fingerprint != b.fingerprint


def test_snapshot_handle_gives_its_own_tag(data, exp) -> None:
    with synarrow.SynaDB(data.path, snapshot="v1") as old, exp.start_run() as run:
        inp = run.log_input(old)
        assert run.log_input(old, "v1") == inp  # the same tag, given again
        with pytest.raises(InvalidArgumentError, match="reads snapshot 'v1'"):
            run.log_input(old, "v2")
    assert inp.tag == "v1" and len(run.inputs) == 1


@pytest.mark.parametrize("how", ["writer", "readonly", "path"])
def test_current_state_is_refused_naming_the_fix(data, exp, how: str) -> None:
    if how == "readonly":
        handle = synarrow.SynaDB(data.path, readonly=True)
    source = {"writer": data, "path": data.path}.get(how) or handle
    with exp.start_run() as run:
        with pytest.raises(InvalidArgumentError, match="would be a lie") as err:
            run.log_input(source)
        assert "db.snapshot(" in str(err.value)
        assert run.inputs == ()
    if how == "readonly":
        handle.close()


def test_bad_input_gets_clear_errors_and_records_nothing(data, exp, tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    with exp.start_run() as run:
        with pytest.raises(SnapshotNotFoundError, match="'nope'"):
            run.log_input(data, "nope")
        with pytest.raises(SnapshotNotFoundError):
            run.log_input(data.path, "nope")
        with pytest.raises(InvalidArgumentError, match="not a safe name"):
            run.log_input(data, "../v1")
        with pytest.raises(InvalidPathError, match="not a synarrow database"):
            run.log_input(tmp_path / "plain", "v1")
        with pytest.raises(InvalidPathError):
            run.log_input(tmp_path / "missing.db", "v1")
        with pytest.raises(InvalidArgumentError, match="SynaDB or a database path"):
            run.log_input(42, "v1")  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError, match="input name"):
            run.log_input(data, "v1", name="")
        assert run.inputs == ()
    data.close()
    with exp.start_run() as run, pytest.raises(synarrow.DatabaseClosedError):
        run.log_input(data, "v1")


def test_finished_run_refuses(data, exp) -> None:
    with exp.start_run() as run:
        pass
    with pytest.raises(InvalidStateError, match="completed"):
        run.log_input(data, "v1")
    assert exp.get_run(run.id).inputs == ()


def test_same_snapshot_twice_is_recorded_once(
    data, exp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with exp.start_run() as run:
        first = run.log_input(data, "v1", name="train")
        run.log_input("train.db", "v1", name="train")  # relative path: the same database
        run.log_input(tmp_path / "." / "train.db", "v1", name="train")
        assert run.inputs == (first,)
        renamed = run.log_input(data, "v1", name="all")  # a new label replaces the old
    (only,) = exp.get_run(run.id).inputs
    assert only.name == "all" and only == renamed
    assert only.logged_at == first.logged_at
    assert len(exp.db.get_history(f"exp/fit/runs/{run.id}/inputs/{only.digest}")) == 2


def test_dropped_snapshot_reads_unverified_and_retaken_tag_is_another(data, exp) -> None:
    with exp.start_run() as run:
        old = run.log_input(data, "v1")
        data.drop_snapshot("v1")
        (gone,) = run.inputs
        assert gone.fingerprint == old.fingerprint and not gone.verified
        data.append("x", 9.0)
        data.snapshot("v1")  # the same name, other data
        new = run.log_input(data, "v1")
    assert new.fingerprint != old.fingerprint and new.entries == 5
    assert [(i.fingerprint, i.verified) for i in exp.get_run(run.id).inputs] == [
        (old.fingerprint, False),
        (new.fingerprint, True),
    ]
    with pytest.raises(SnapshotNotFoundError, match="not the one recorded"):
        old.open()
    with new.open() as snap:
        assert snap.tag == "v1" and snap.get_history_floats("x").tolist()[-1] == 9.0


def test_open_reads_the_snapshot_while_the_writer_goes_on(data, exp) -> None:
    with exp.start_run() as run:
        inp = run.log_input(data, "v1")
    data.delete("x")
    data.compact()
    with inp.open() as snap:
        assert snap.get_history_floats("x").tolist() == [1.0, 2.0, 3.0]
    assert not data.exists("x")


def test_damaged_input_record_is_corruption(data, exp) -> None:
    with exp.start_run() as run:
        inp = run.log_input(data, "v1")
    key = f"exp/fit/runs/{run.id}/inputs/{inp.digest}"
    for crafted in ("{not json", json.dumps({**inp.to_dict(), "path": "relative/x"}), "[]"):
        exp.db.append(key, crafted)
        with pytest.raises(CorruptionError, match="damaged"):
            _ = exp.get_run(run.id).inputs


def test_input_is_durable_when_the_process_dies_at_once(data, tmp_path: Path) -> None:
    code = """
        import os, sys, synarrow
        exp = synarrow.Experiment("fit", sys.argv[1])
        run = exp.start_run()
        run.log_input(sys.argv[2], "v1", name="train")
        print(run.id, flush=True)
        os._exit(0)  # no close, no atexit: only what log_input made durable survives
    """
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), str(tmp_path / "exp.db"), str(data.path)],
        capture_output=True,
        text=True,
        check=True,
    )
    run_id = out.stdout.strip()
    with synarrow.Experiment("fit", tmp_path / "exp.db") as exp:
        run = exp.get_run(run_id)
        assert run.status == "killed"
        assert [(i.tag, i.name, i.verified) for i in run.inputs] == [("v1", "train", True)]
        info, stored = find_run(run_id, tmp_path / "exp.db")
    assert info.experiment == "fit" and [i.tag for i in stored] == ["v1"]


def test_find_run_looks_in_open_experiments_or_a_given_store(data, tmp_path: Path) -> None:
    store = tmp_path / "other.db"
    with synarrow.Experiment("a/b", store) as exp, exp.start_run("r") as run:
        run.log_input(data, "v1")
    with pytest.raises(NotFoundError, match="open in this process"):
        find_run(run.id)  # its experiment is closed
    info, inputs = find_run(run.id, store)
    assert (info.id, info.experiment, info.name, info.status) == (run.id, "a/b", "r", "completed")
    assert info.path == str(store.resolve()) and len(inputs) == 1
    with synarrow.Experiment("elsewhere", store, readonly=True) as other:
        assert find_run(run.id)[0].experiment == "a/b"  # any experiment of the store
        assert find_run(run.id, other)[0] == info
    with pytest.raises(InvalidArgumentError, match="32 lowercase hex"):
        find_run("*")
    with pytest.raises(NotFoundError):
        find_run("0" * 32, store)


def test_inputs_view_in_sql(data, exp) -> None:
    with exp.start_run("a") as a:
        a.log_input(data, "v1", name="train")
    with exp.start_run("b"):
        pass
    rows = exp.sql(
        "SELECT r.name AS run, i.name, i.tag, i.entries, i.fingerprint "
        "FROM runs r LEFT JOIN inputs i USING (run_id) ORDER BY r.name"
    ).to_pylist()
    assert rows == [
        {
            "run": "a",
            "name": "train",
            "tag": "v1",
            "entries": 4,
            "fingerprint": a.inputs[0].fingerprint,
        },
        {"run": "b", "name": None, "tag": None, "entries": None, "fingerprint": None},
    ]
