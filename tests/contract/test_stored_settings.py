"""A handle never writes its own settings back for another kind of handle.

Experiments and registries turn the per-append fsync off for their shared writer, and a
vector store syncs once per call itself; none of that may reach ``config.json``: a later
plain ``SynaDB(path)`` must still be durable, with every other stored setting unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import synarrow
from synarrow import DbConfig, SynaDB
from synarrow.config import CONFIG_NAME

# Durable, with settings other than the defaults, so a handle that writes its own
# (or the defaults) back is caught.
STORED = DbConfig(
    sync_on_write=True,
    compression=None,
    delta=False,
    auto_compact=False,
    write_buffer_bytes=4096,
)


def _experiment(path: Path) -> Any:
    exp = synarrow.Experiment("e", path)
    with exp.start_run() as run:
        run.log_metric("loss", 0.5)
    return exp


def _registry(path: Path) -> Any:
    reg = synarrow.ModelRegistry(path)
    reg.save_model("m", b"weights")
    return reg


def _vector_store(path: Path) -> Any:
    store = synarrow.VectorStore(path, dimensions=2)
    store.insert("a", [1.0, 2.0])
    return store


def _tensor_engine(path: Path) -> Any:
    engine = synarrow.TensorEngine(path)
    engine.put_tensor("t/", np.ones((2, 2)))
    return engine


OPENERS: dict[str, Callable[[Path], Any]] = {
    "experiment": _experiment,
    "registry": _registry,
    "vector store": _vector_store,
    "tensor engine": _tensor_engine,
}


@pytest.mark.parametrize("kind", list(OPENERS))
def test_a_handle_leaves_the_stored_settings_alone(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "store.db"
    SynaDB(path, STORED).close()
    stored_bytes = (path / CONFIG_NAME).read_bytes()
    handle = OPENERS[kind](path)
    try:
        # while it is open, its own database handle may be non-durable ...
        assert (path / CONFIG_NAME).read_bytes() == stored_bytes
    finally:
        handle.close()
    # ... but the database's settings, on disk and for the next plain handle, are the same
    assert (path / CONFIG_NAME).read_bytes() == stored_bytes
    with SynaDB(path) as db:
        assert db.config == STORED
        assert db.config.sync_on_write is True


@pytest.mark.parametrize("kind", ["experiment", "registry"])
def test_a_new_store_gets_durable_defaults(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "new.db"
    handle = OPENERS[kind](path)
    assert handle.db.config.sync_on_write is False  # the shared writer's own setting
    handle.close()
    with SynaDB(path) as db:
        assert db.config == DbConfig()


def test_a_vector_store_keeps_syncing_per_call_when_the_database_is_durable(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v.db"
    SynaDB(path, STORED).close()
    with synarrow.VectorStore(path, dimensions=2) as store:
        assert store.db.config.sync_on_write is False  # one sync per call, done by the store
        calls: list[str] = []
        real_sync = store.db.sync
        store.db.sync = lambda: (calls.append("sync"), real_sync())[-1]  # type: ignore[method-assign]
        store.insert_batch(["a", "b"], np.ones((2, 2), np.float32))
        assert calls == ["sync"]
    with SynaDB(path) as db:
        assert db.config.sync_on_write is True
