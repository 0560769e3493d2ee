"""Lineage end to end: db.snapshot -> run.log_input -> save_model(run_id=) -> lineage()."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import synarrow
from synarrow import CorruptionError, InvalidArgumentError, NotFoundError


@pytest.fixture
def world(tmp_path: Path):
    """A training database with snapshot ``v1``, an experiment store and a registry."""
    db = synarrow.SynaDB(tmp_path / "train.db")
    db.append_batch("x", [1.0, 2.0, 3.0])
    db.snapshot("v1")
    exp = synarrow.Experiment("fit", tmp_path / "exp.db")
    reg = synarrow.ModelRegistry(tmp_path / "models.db")
    yield db, exp, reg
    reg.close()
    exp.close()
    db.close()


def test_end_to_end_model_run_data(world) -> None:
    db, exp, reg = world
    with exp.start_run("baseline") as run:
        inp = run.log_input(db, snapshot="v1", name="train")
        run.log_metric("loss", 0.1)
    v = reg.save_model("clf", b"weights", {"acc": 0.9}, run_id=run.id)
    assert v.run_id == run.id and v.run is not None and v.run.experiment == "fit"
    assert [i.fingerprint for i in v.inputs] == [inp.fingerprint]
    lin = reg.lineage("clf", v.version)
    assert isinstance(lin, synarrow.Lineage)
    assert lin.model == reg.get_version("clf", 1)
    assert lin.run == synarrow.RunInfo(
        run.id, "fit", str(exp.path.resolve()), "baseline", "completed"
    )
    assert lin.inputs == (inp,)  # checked now: verified, as when it was logged
    assert lin.verified
    with lin.inputs[0].open() as snap:
        assert snap.get_history_floats("x").tolist() == [1.0, 2.0, 3.0]


def test_verified_turns_false_after_the_snapshot_is_dropped(world) -> None:
    db, exp, reg = world
    with exp.start_run() as run:
        run.log_input(db, "v1")
    reg.save_model("clf", b"w", run_id=run)
    db.drop_snapshot("v1")
    lin = reg.lineage("clf", 1)
    assert not lin.verified and [i.verified for i in lin.inputs] == [False]
    db.snapshot("v1")  # the same tag again is another version of the data
    assert not reg.lineage("clf", 1).verified


def test_several_inputs_and_partial_verification(world, tmp_path: Path) -> None:
    db, exp, reg = world
    other = synarrow.SynaDB(tmp_path / "eval.db")
    other.append("y", 1)
    other.snapshot("e1")
    with exp.start_run() as run:
        run.log_input(db, "v1", name="train")
        run.log_input(other, "e1", name="eval")
    reg.save_model("clf", b"w", run_id=run.id)
    other.drop_snapshot("e1")
    other.close()
    lin = reg.lineage("clf")
    assert [(i.name, i.verified) for i in lin.inputs] == [("train", True), ("eval", False)]
    assert not lin.verified


def test_a_version_without_a_run(world) -> None:
    _, _, reg = world
    v = reg.save_model("clf", b"w")
    assert v.run_id is None and v.run is None and v.inputs == ()
    lin = reg.lineage("clf", 1)
    assert (lin.model, lin.run, lin.inputs, lin.verified) == (v, None, (), False)
    assert "run_id" not in json.loads(reg.db.get("models/clf/versions/1"))  # old format kept


def test_run_and_inputs_survive_reopen_stage_changes_and_aliases(world, tmp_path: Path) -> None:
    db, exp, reg = world
    with exp.start_run() as run:
        run.log_input(db, "v1")
    reg.save_model("clf", b"w", run_id=run.id)
    reg.set_stage("clf", 1, "Production")
    reg.set_alias("clf", "champion", 1)
    reg.close()
    with synarrow.ModelRegistry(tmp_path / "models.db", readonly=True) as ro:
        v = ro.get_by_alias("clf", "champion")
        assert (v.run_id, v.stage) == (run.id, "Production")
        lin = ro.lineage("clf", alias="champion")
        assert lin.run is not None and lin.run.status == "completed" and lin.verified
        assert ro.lineage("clf", "Production") == lin


def test_lineage_survives_the_experiment_store_moving(world, tmp_path: Path) -> None:
    db, exp, reg = world
    with exp.start_run("r") as run:
        run.log_input(db, "v1")
    reg.save_model("clf", b"w", run_id=run.id)
    exp.close()
    shutil.move(tmp_path / "exp.db", tmp_path / "moved.db")
    lin = reg.lineage("clf", 1)
    assert lin.run is not None
    assert (lin.run.id, lin.run.experiment, lin.run.name, lin.run.status) == (
        run.id,
        "fit",
        "r",
        None,  # the store is not where it was
    )
    assert lin.verified  # the data is where it was
    found = reg.lineage("clf", 1, experiments=tmp_path / "moved.db")
    assert found.run is not None and found.run.status == "completed"


def test_unknown_run_is_refused_unless_its_store_is_given(world, tmp_path: Path) -> None:
    db, _, reg = world
    code = """
        import sys, synarrow
        with synarrow.Experiment("remote", sys.argv[1]) as exp, exp.start_run() as run:
            run.log_input(sys.argv[2], "v1")
        print(run.id)
    """
    store = tmp_path / "remote.db"
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), str(store), str(db.path)],
        capture_output=True,
        text=True,
        check=True,
    )
    run_id = out.stdout.strip()
    with pytest.raises(NotFoundError, match="experiments=") as err:
        reg.save_model("clf", b"w", run_id=run_id)
    assert "open in this process" in str(err.value)
    assert reg.list_models() == []  # nothing saved
    v = reg.save_model("clf", b"w", run_id=run_id, experiments=store)
    assert v.run is not None and v.run.experiment == "remote" and len(v.inputs) == 1
    lin = reg.lineage("clf", 1)
    assert lin.run is not None and lin.run.status == "completed" and lin.verified
    with synarrow.Experiment("remote", store, readonly=True) as ro:
        assert reg.save_model("clf", b"w2", run_id=run_id, experiments=ro).run_id == run_id


def test_bad_run_arguments(world) -> None:
    _, exp, reg = world
    with pytest.raises(InvalidArgumentError, match="32 lowercase hex"):
        reg.save_model("clf", b"w", run_id="exp/*")
    with pytest.raises(InvalidArgumentError, match="32 lowercase hex"):
        reg.save_model("clf", b"w", run_id=7)  # type: ignore[arg-type]
    with pytest.raises(NotFoundError):
        reg.save_model("clf", b"w", run_id="0" * 32)
    with pytest.raises(InvalidArgumentError, match="only used with run_id"):
        reg.save_model("clf", b"w", experiments=exp)
    with pytest.raises(InvalidArgumentError, match="Experiment or a store path"):
        reg.save_model("clf", b"w", run_id="0" * 32, experiments=3)  # type: ignore[arg-type]
    assert reg.list_models() == []


def test_a_running_run_and_one_store_for_both(tmp_path: Path) -> None:
    path = tmp_path / "all.db"  # experiments and models in one store, one shared writer
    with synarrow.SynaDB(tmp_path / "d.db") as db:
        db.append("x", 1.0)
        db.snapshot("v1")
    with synarrow.Experiment("fit", path) as exp, synarrow.ModelRegistry(path) as reg:
        run = exp.start_run()
        run.log_input(tmp_path / "d.db", "v1")
        v = reg.save_model("clf", b"w", run_id=run.id)  # saved while the run goes on
        assert reg.lineage("clf", v.version).run.status == "running"  # type: ignore[union-attr]
        run.end()
        assert reg.lineage("clf", v.version).run.status == "completed"  # type: ignore[union-attr]


def test_damaged_lineage_in_a_version_record_is_corruption(world) -> None:
    db, exp, reg = world
    with exp.start_run() as run:
        run.log_input(db, "v1")
    reg.save_model("clf", b"w", run_id=run.id)
    good = json.loads(reg.db.get("models/clf/versions/1"))
    crafted = [
        {**good, "run_id": "../x"},
        {**good, "run": None},
        {**good, "run": {**good["run"], "id": "f" * 32}},
        {**good, "inputs": "nope"},
        {**good, "inputs": [{"path": 1}]},
    ]
    for record in crafted:
        reg.db.append("models/clf/versions/1", json.dumps(record))
        with pytest.raises(CorruptionError, match=r"damaged|wrong types"):
            reg.lineage("clf", 1)


def test_a_run_object_of_a_closed_experiment_is_found_by_its_path(world) -> None:
    db, exp, reg = world
    with exp.start_run("r") as run:
        run.log_input(db, "v1")
    exp.close()
    v = reg.save_model("clf", b"w", run_id=run)
    assert v.run == synarrow.RunInfo(run.id, "fit", str(exp.path.resolve()), "r")
    assert [i.tag for i in v.inputs] == ["v1"]
