"""Every handle class runs the one life-cycle contract (:mod:`handle_contract`)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from handle_contract import HandleContract

import synarrow
from synarrow import DatabaseClosedError, DbConfig, SynaDB
from synarrow.handle import Handle

FAST = DbConfig(sync_on_write=False, auto_compact=False)


class TestSynaDB(HandleContract):
    other_process_writer = (
        "import sys, synarrow; db = synarrow.SynaDB(sys.argv[1]); db.append('p', 1.0); db.close()"
    )

    def open_writable(self, path: Path) -> Handle:
        return SynaDB(path, sync_on_write=False)

    def open_readonly(self, path: Path) -> Handle:
        return SynaDB(path, readonly=True)

    def read(self, handle: Any) -> Any:
        return handle.get("k")

    def write(self, handle: Any) -> None:
        handle.append("k", 1.5)


class TestVectorStore(HandleContract):
    many_writers = False  # its index cache has one writer
    other_process_writer = "import sys, synarrow; synarrow.VectorStore(sys.argv[1], dimensions=3)"

    def open_writable(self, path: Path) -> Handle:
        return synarrow.VectorStore(path, dimensions=3, config=FAST)

    def open_readonly(self, path: Path) -> Handle:
        return synarrow.VectorStore(path, readonly=True)

    def read(self, handle: Any) -> Any:
        vec = handle.get("a")
        return None if vec is None else vec.tolist()

    def write(self, handle: Any) -> None:
        handle.insert("a", [1.0, 0.0, 0.5])


class TestTensorEngine(HandleContract):
    other_process_writer = (
        "import sys, numpy, synarrow; t = synarrow.TensorEngine(sys.argv[1]); "
        "t.put_tensor('o/', numpy.zeros(2)); t.close()"
    )

    def open_writable(self, path: Path) -> Handle:
        return synarrow.TensorEngine(path)

    def open_readonly(self, path: Path) -> Handle:
        return synarrow.TensorEngine(path, readonly=True)

    def read(self, handle: Any) -> Any:
        return handle.get_tensor("t/*").tolist()

    def write(self, handle: Any) -> None:
        handle.put_tensor("t/", np.arange(4, dtype=np.int32).reshape(2, 2))


class TestExperiment(HandleContract):
    shares_writer = True
    other_process_writer = (
        "import sys, synarrow; e = synarrow.Experiment('e', sys.argv[1]); "
        "e.start_run('other').end(); e.close()"
    )

    def open_writable(self, path: Path) -> Handle:
        return synarrow.Experiment("e", path)

    def open_readonly(self, path: Path) -> Handle:
        return synarrow.Experiment("e", path, readonly=True)

    def read(self, handle: Any) -> Any:
        return [(run.id, run.status) for run in handle.list_runs()]

    def write(self, handle: Any) -> None:
        handle.start_run("r").end()


class TestModelRegistry(HandleContract):
    shares_writer = True
    other_process_writer = (
        "import sys, synarrow; r = synarrow.ModelRegistry(sys.argv[1]); "
        "r.save_model('m', b'other'); r.close()"
    )

    def open_writable(self, path: Path) -> Handle:
        return synarrow.ModelRegistry(path)

    def open_readonly(self, path: Path) -> Handle:
        return synarrow.ModelRegistry(path, readonly=True)

    def read(self, handle: Any) -> Any:
        return [(v.version, v.checksum) for v in handle.list_versions("m")]

    def write(self, handle: Any) -> None:
        handle.save_model("m", b"weights")

    def seeded_value(self, path: Path) -> Any:
        with self.open_writable(path) as reg:
            return [(v.version, v.checksum) for v in reg.list_versions("m")]

    def test_open(self, path: Path) -> None:  # list_versions needs the model to exist
        with self.open_writable(path) as reg:
            assert not reg.closed and reg.state == "open"
            self.write(reg)
            assert len(self.read(reg)) == 1


CONTRACT_CLASSES = {
    "SynaDB": TestSynaDB,
    "VectorStore": TestVectorStore,
    "TensorEngine": TestTensorEngine,
    "Experiment": TestExperiment,
    "ModelRegistry": TestModelRegistry,
}


def test_every_handle_class_runs_the_contract() -> None:
    for module in (
        "synarrow.vector",
        "synarrow.tensor",
        "synarrow.experiment",
        "synarrow.registry",
    ):
        importlib.import_module(module)

    def subclasses(cls: type) -> set[type]:
        found = set(cls.__subclasses__())
        for sub in list(found):
            found |= subclasses(sub)
        return found

    handles = {c.__name__ for c in subclasses(Handle) if c.__module__.startswith("synarrow.")}
    assert handles == set(CONTRACT_CLASSES)


# -- what one class documents beyond the contract ------------------------------------------


def test_tensor_engine_over_a_database_leaves_it_open(tmp_path: Path) -> None:
    with SynaDB(tmp_path / "t.db", sync_on_write=False) as db:
        engine = synarrow.TensorEngine(db)
        engine.put_tensor("x/", np.ones((2, 2), np.float32))
        engine.close()
        assert engine.closed and not db.closed
        with pytest.raises(DatabaseClosedError):
            engine.get_tensor("x/*")
        assert db.exists("x/#tensor-meta")  # the database still works
        with synarrow.TensorEngine(db) as again:  # a new engine over it, too
            assert again.get_tensor("x/*").tolist() == [[1.0, 1.0], [1.0, 1.0]]
        assert not db.closed
    assert db.closed


def test_tensor_engine_over_a_readonly_database_is_readonly(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    with synarrow.TensorEngine(path) as engine:
        engine.put_tensor("x/", np.zeros(3, np.int64))
    with SynaDB(path, readonly=True) as db, synarrow.TensorEngine(db) as engine:
        assert engine.readonly and "read-only" in repr(engine)
        with pytest.raises(synarrow.ReadOnlyError):
            engine.put_tensor("y/", np.zeros(3))
        with pytest.raises(synarrow.ReadOnlyError):
            engine.delete("x/*")
        assert engine.get_tensor("x/*").tolist() == [0, 0, 0]


def test_closing_one_experiment_keeps_the_shared_writer_for_the_registry(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    exp = synarrow.Experiment("e", path)
    reg = synarrow.ModelRegistry(path)
    assert exp.db is reg.db
    exp.close()
    assert not reg.db.closed
    reg.save_model("m", b"1")
    reg.close()
    assert reg.db.closed
