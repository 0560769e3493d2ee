"""Runs: life cycle, logging, errors, persistence, query and compare."""

from __future__ import annotations

import datetime as dt
import io
import math
import threading
from pathlib import Path

import numpy as np
import pytest

import synarrow
from synarrow import (
    ChecksumError,
    DatabaseClosedError,
    InvalidArgumentError,
    InvalidStateError,
    InvalidValueError,
    NotFoundError,
    ReadOnlyError,
)
from synarrow.experiment import Run


@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "experiments.db"


@pytest.fixture
def exp(store: Path):
    e = synarrow.Experiment("mnist", store)
    yield e
    e.close()


def test_context_manager_completes_run(exp: synarrow.Experiment) -> None:
    before = dt.datetime.now(dt.timezone.utc)
    with exp.start_run("first", tags=["baseline", "v1"]) as run:
        assert run.status == "running" and run.is_active
        assert run.end_time is None
        run.log_params({"lr": 1e-3, "opt": "adam", "layers": [64, 32], "flag": True})
        run.log_metric("loss", 0.5, step=0)
        run.log_metrics({"loss": 0.25, "accuracy": 0.9}, step=1)
    after = dt.datetime.now(dt.timezone.utc)
    assert run.status == "completed" and not run.is_active
    assert before <= run.start_time <= run.end_time <= after  # type: ignore[operator]
    assert len(run.id) == 32 and run.name == "first" and run.tags == ["baseline", "v1"]
    got = exp.get_run(run.id)
    assert got.status == "completed" and got.name == "first" and got.tags == ["baseline", "v1"]
    assert got.params == {"lr": 1e-3, "opt": "adam", "layers": [64, 32], "flag": True}
    assert got.experiment == "mnist"
    np.testing.assert_array_equal(exp.get_metric_tensor(run.id, "loss"), [0.5, 0.25])
    np.testing.assert_array_equal(exp.get_metric_steps(run.id, "loss"), [0, 1])
    assert exp.list_metrics(run.id) == ["accuracy", "loss"]


def test_default_name_and_steps(exp: synarrow.Experiment) -> None:
    with exp.start_run() as run:
        for v in (3.0, 2, np.float32(1.5), np.int64(1)):
            run.log_metric("loss", v)
        run.log_metric("loss", 0.5, step=10)
        run.log_metric("loss", 0.25)
    assert run.name == run.id[:8]
    np.testing.assert_array_equal(exp.get_metric_steps(run.id, "loss"), [0, 1, 2, 3, 10, 11])
    np.testing.assert_array_equal(
        exp.get_metric_tensor(run.id, "loss"), [3.0, 2.0, 1.5, 1.0, 0.5, 0.25]
    )
    hist = exp.get_metric_history(run.id, "loss")
    assert hist.column_names == ["step", "ts", "value"]
    ts = hist.column("ts").cast("int64").to_numpy()
    assert (np.diff(ts) > 0).all()  # strictly increasing, so (metric, ts) is a point's identity


def test_exception_fails_run_and_propagates(exp: synarrow.Experiment) -> None:
    with pytest.raises(ZeroDivisionError), exp.start_run() as run:
        run.log_metric("loss", 1.0)
        1 / 0  # noqa: B018
    assert run.status == "failed"
    assert exp.get_run(run.id).status == "failed"
    np.testing.assert_array_equal(exp.get_metric_tensor(run.id, "loss"), [1.0])


def test_keyboard_interrupt_kills_run(exp: synarrow.Experiment) -> None:
    with pytest.raises(KeyboardInterrupt), exp.start_run() as run:
        raise KeyboardInterrupt
    assert exp.get_run(run.id).status == "killed"


def test_explicit_end_and_status_values(exp: synarrow.Experiment) -> None:
    run = exp.start_run()
    with pytest.raises(InvalidValueError):
        run.end("finished")
    run.end("killed")
    assert exp.get_run(run.id).status == "killed"
    with run:  # leaving the block of an ended run changes nothing
        pass
    assert exp.get_run(run.id).status == "killed"


def test_logging_to_finished_run_raises(exp: synarrow.Experiment, tmp_path: Path) -> None:
    with exp.start_run() as run:
        run.log_metric("loss", 1.0)
    for call in (
        lambda: run.log_metric("loss", 0.5),
        lambda: run.log_metrics({"loss": 0.5}),
        lambda: run.log_param("lr", 1),
        lambda: run.log_artifact("a.bin", b"x"),
        lambda: run.add_tags("late"),
        lambda: run.end(),
    ):
        with pytest.raises(InvalidStateError):
            call()
    # a run read back from the store cannot be logged to either
    with pytest.raises(InvalidStateError):
        exp.get_run(run.id).log_metric("loss", 0.1)
    np.testing.assert_array_equal(exp.get_metric_tensor(run.id, "loss"), [1.0])


def test_unknown_run_and_metric(exp: synarrow.Experiment) -> None:
    with pytest.raises(NotFoundError):
        exp.get_run("0" * 32)
    with pytest.raises(NotFoundError):
        exp.get_run("nope")
    with pytest.raises(KeyError):  # NotFoundError is a KeyError too
        exp.get_metric_tensor("f" * 32, "loss")
    with exp.start_run() as run:
        run.log_metric("loss", 1.0)
    with pytest.raises(NotFoundError):
        exp.get_metric_tensor(run.id, "accuracy")
    with pytest.raises(NotFoundError):
        exp.load_artifact(run.id, "missing.bin")
    with pytest.raises(NotFoundError):
        exp.compare_runs([run.id, "1" * 32])


def test_bad_values_are_refused(exp: synarrow.Experiment) -> None:
    with exp.start_run() as run:
        for bad in ("0.5", None, True, np.bool_(False), [1.0], object()):
            with pytest.raises(InvalidValueError):
                run.log_metric("loss", bad)  # type: ignore[arg-type]
        for bad_step in (1.5, "3", True):
            with pytest.raises(InvalidArgumentError):
                run.log_metric("loss", 1.0, step=bad_step)  # type: ignore[arg-type]
        for bad_name in ("", 3, "a\nb"):
            with pytest.raises(InvalidArgumentError):
                run.log_metric(bad_name, 1.0)  # type: ignore[arg-type]
        with pytest.raises(InvalidValueError):
            run.log_param("obj", object())
        with pytest.raises(InvalidValueError):
            run.log_param("nan", float("nan"))
        with pytest.raises(InvalidValueError):
            run.log_artifact("x", 12345)  # type: ignore[arg-type]
        with pytest.raises(InvalidValueError):
            run.log_artifact("x", "/definitely/not/a/file")
        run.log_metric("loss", 1.0)
    assert exp.get_run(run.id).params == {}
    np.testing.assert_array_equal(exp.get_metric_tensor(run.id, "loss"), [1.0])
    with pytest.raises(InvalidArgumentError):
        synarrow.Experiment("bad name!", exp.path)
    with pytest.raises(InvalidArgumentError):
        synarrow.Experiment("a/runs/b", exp.path)


def test_non_finite_metrics_are_stored(exp: synarrow.Experiment) -> None:
    with exp.start_run() as run:
        for v in (1.0, math.nan, math.inf, -math.inf):
            run.log_metric("loss", v)
    got = exp.get_metric_tensor(run.id, "loss")
    assert got[0] == 1.0 and math.isnan(got[1]) and got[2] == math.inf and got[3] == -math.inf
    t = exp.sql("SELECT count(*) AS n, count(*) FILTER (WHERE isnan(value)) AS nans FROM metrics")
    assert t.to_pylist() == [{"n": 4, "nans": 1}]


def test_param_relogged_latest_wins(exp: synarrow.Experiment) -> None:
    with exp.start_run() as run:
        run.log_param("lr", 0.1)
        run.log_param("lr", 0.2)
        assert run.params == {"lr": 0.2}
    assert exp.get_run(run.id).params == {"lr": 0.2}


def test_persistence_across_reopen(store: Path) -> None:
    with synarrow.Experiment("e", store) as exp:
        with exp.start_run("r", tags=["t"]) as run:
            run.log_param("lr", 0.1)
            for i in range(100):
                run.log_metric("loss", 1.0 / (i + 1))
            run.log_artifact("notes.txt", b"hello")
        run_id = run.id
    with synarrow.Experiment("e", store) as exp:
        run = exp.get_run(run_id)
        assert (run.status, run.name, run.tags, run.params) == (
            "completed",
            "r",
            ["t"],
            {"lr": 0.1},
        )
        np.testing.assert_allclose(exp.get_metric_tensor(run_id, "loss"), 1.0 / np.arange(1, 101))
        assert exp.load_artifact(run_id, "notes.txt") == b"hello"
    with synarrow.Experiment("e", store, readonly=True) as exp:
        assert [r.id for r in exp.list_runs()] == [run_id]
        with pytest.raises(ReadOnlyError):
            exp.start_run()


def test_experiments_share_a_store(store: Path) -> None:
    a = synarrow.Experiment("a", store)
    b = synarrow.Experiment("a/b", store)  # same process, same path: one shared writer handle
    reg = synarrow.ModelRegistry(store)
    try:
        with a.start_run() as ra:
            ra.log_metric("m", 1.0)
        with b.start_run() as rb:
            rb.log_metric("m", 2.0)
        reg.save_model("model", b"weights")
        assert [r.id for r in a.list_runs()] == [ra.id]
        assert [r.id for r in b.list_runs()] == [rb.id]
        assert a.sql("SELECT run_id, value FROM metrics").to_pylist() == [
            {"run_id": ra.id, "value": 1.0}
        ]
        with pytest.raises(NotFoundError):
            a.get_run(rb.id)
    finally:
        a.close()
        b.close()
        reg.close()
    with synarrow.Experiment("a", store) as again:  # every user closed: reopens cleanly
        assert len(again.list_runs()) == 1


def test_close_kills_live_runs_and_keeps_metrics(store: Path) -> None:
    exp = synarrow.Experiment("e", store)
    run = exp.start_run()
    run.log_metric("loss", 0.5)
    exp.close()
    exp.close()  # idempotent
    assert run.status == "killed"
    with pytest.raises(InvalidStateError):
        run.log_metric("loss", 0.1)
    with pytest.raises(DatabaseClosedError):
        exp.list_runs()
    with synarrow.Experiment("e", store) as exp2:
        assert exp2.get_run(run.id).status == "killed"
        np.testing.assert_array_equal(exp2.get_metric_tensor(run.id, "loss"), [0.5])


def test_background_flush_makes_metrics_visible(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flushed = threading.Event()
    real_flush = Run._flush

    def flush(self: Run) -> None:  # instrumented: signals once the background thread flushed
        real_flush(self)
        if threading.current_thread().name == "synarrow-metric-flusher":
            flushed.set()

    monkeypatch.setattr(Run, "_flush", flush)
    with synarrow.Experiment("e", store, flush_interval=0.1) as exp:
        run = exp.start_run()
        run.log_metric("loss", 0.5)
        assert flushed.wait(120), "the background flush never ran"
        with synarrow.Experiment("e", store, readonly=True) as reader:
            assert list(reader.get_metric_tensor(run.id, "loss")) == [0.5]
        run.end()


def test_flush_every_and_many_values(store: Path) -> None:
    with synarrow.Experiment("e", store, flush_every=7) as exp:
        with exp.start_run() as run:
            for i in range(1000):
                run.log_metrics({"a": float(i), "b": -float(i)}, step=i)
        np.testing.assert_array_equal(exp.get_metric_tensor(run.id, "a"), np.arange(1000.0))
        np.testing.assert_array_equal(exp.get_metric_steps(run.id, "b"), np.arange(1000))


def test_zero_copy_after_compact(exp: synarrow.Experiment) -> None:
    with exp.start_run() as run:
        for i in range(1000):
            run.log_metric("loss", float(i))
    exp.compact()
    a = exp.get_metric_tensor(run.id, "loss")
    b = exp.get_metric_tensor(run.id, "loss")
    assert np.shares_memory(a, b) and not a.flags.writeable and not a.flags.owndata
    np.testing.assert_array_equal(a, np.arange(1000.0))


def _three_runs(exp: synarrow.Experiment) -> list[synarrow.Run]:
    runs = []
    for lr, accs, tags in (
        (0.1, [0.5, 0.9, 0.6], ["baseline"]),
        (0.01, [0.7, 0.8], ["baseline", "big"]),
        (0.001, [0.2, math.nan], ["big"]),
    ):
        with exp.start_run(tags=tags) as run:
            run.log_params({"lr": lr, "opt": "sgd"})
            for i, a in enumerate(accs):
                run.log_metric("accuracy", a, step=i)
        runs.append(run)
    with exp.start_run() as nometric:
        nometric.log_param("lr", 1.0)
    runs.append(nometric)
    with pytest.raises(ValueError), exp.start_run(tags=["baseline"]) as failed:
        failed.log_metric("accuracy", 1.0)
        raise ValueError
    runs.append(failed)
    return runs


def test_query_filters_and_sorts(exp: synarrow.Experiment) -> None:
    r1, r2, r3, r4, r5 = _three_runs(exp)
    ids = lambda runs: [r.id for r in runs]  # noqa: E731
    assert ids(exp.query()) == ids([r1, r2, r3, r4, r5])
    assert ids(exp.query(filter={"status": "completed", "tags": ["baseline"]})) == ids([r1, r2])
    assert ids(exp.query(filter={"status": ["failed", "killed"]})) == [r5.id]
    assert ids(exp.query(filter={"tags": "big"})) == ids([r2, r3])
    assert ids(exp.query(filter={"params": {"lr": 0.01, "opt": "sgd"}})) == [r2.id]
    assert ids(exp.query(filter={"params": {"lr": 0.5}})) == []
    done = {"status": "completed"}
    # last value (default): r1 0.6, r2 0.8, r3 last is NaN -> no value -> last
    assert ids(exp.query(done, sort_by="accuracy", ascending=False)) == ids([r2, r1, r3, r4])
    assert ids(exp.query(done, sort_by="accuracy")) == ids([r1, r2, r3, r4])
    # best value: max when descending (r1 0.9), min when ascending (r3 0.2)
    assert ids(exp.query(done, sort_by="accuracy", ascending=False, sort_value="best")) == ids(
        [r1, r2, r3, r4]
    )
    assert ids(exp.query(done, sort_by="accuracy", sort_value="best")) == ids([r3, r1, r2, r4])
    assert ids(exp.query(done, sort_by="metrics.accuracy", sort_value="first")) == ids(
        [r3, r1, r2, r4]
    )
    assert ids(exp.query(done, sort_by="params.lr")) == ids([r3, r2, r1, r4])
    assert ids(exp.query(sort_by="start_time", ascending=False, limit=2)) == ids([r5, r4])
    with pytest.raises(InvalidArgumentError):
        exp.query(filter={"colour": "red"})
    with pytest.raises(InvalidValueError):
        exp.query(filter={"status": "done"})
    with pytest.raises(InvalidArgumentError):
        exp.query(sort_by="accuracy", sort_value="median")


def test_compare_runs(exp: synarrow.Experiment) -> None:
    pytest.importorskip("pandas")
    r1, r2, _, r4, _ = _three_runs(exp)
    df = exp.compare_runs([r1.id, r2.id, r4.id])
    assert list(df.index) == [r1.id, r2.id, r4.id]
    assert list(df.columns) == ["name", "status", "params.lr", "params.opt", "metrics.accuracy"]
    assert df.loc[r2.id, "params.lr"] == 0.01
    assert df.loc[r1.id, "metrics.accuracy"] == 0.6
    assert math.isnan(df.loc[r4.id, "metrics.accuracy"])


def test_artifacts_bytes_path_file_and_corruption(exp: synarrow.Experiment, tmp_path: Path) -> None:
    src = tmp_path / "weights.bin"
    payload = np.random.default_rng(0).bytes(3 * 1024 * 1024 + 17)
    src.write_bytes(payload)
    with exp.start_run() as run:
        a1 = run.log_artifact("small.txt", b"hello")
        a2 = run.log_artifact("weights.bin", src)
        a3 = run.log_artifact("stream.bin", io.BytesIO(payload))
        run.log_artifact("view.bin", memoryview(payload)[:10])
    assert a2.checksum == a3.checksum and a2.size_bytes == len(payload)
    assert [a.name for a in exp.list_artifacts(run.id)] == [
        "small.txt",
        "stream.bin",
        "view.bin",
        "weights.bin",
    ]
    assert exp.load_artifact(run.id, "small.txt") == b"hello"
    assert exp.load_artifact(run.id, "weights.bin") == payload
    out = exp.load_artifact(run.id, "stream.bin", path=tmp_path / "out.bin")
    assert out.read_bytes() == payload
    assert a1.created_at.tzinfo is not None
    # damage the stored bytes on disk
    blob = exp.path / "artifacts" / a2.checksum
    raw = bytearray(blob.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    blob.write_bytes(bytes(raw))
    with pytest.raises(ChecksumError):
        exp.load_artifact(run.id, "weights.bin")
    with pytest.raises(ChecksumError):
        exp.load_artifact(run.id, "weights.bin", path=tmp_path / "bad.bin")
    assert not (tmp_path / "bad.bin").exists()
