"""``VectorStore(path, snapshot=tag)``: search, get, len and keys answer for the tag after
vectors were changed, deleted, added and compacted; read-only; nothing written."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import synarrow
from synarrow.errors import ReadOnlyError, SnapshotNotFoundError
from synarrow.vector import VectorStore

FAST = synarrow.DbConfig(sync_on_write=False, auto_compact=False)

DIMS = 16


def _files(path: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture
def changed(store_path: Path, mixture: Callable[..., np.ndarray]) -> tuple[Path, np.ndarray]:
    """500 vectors ``d000..d499`` tagged ``v1``; then 50 changed, 50 deleted, 50 added,
    compacted, and the store closed (its saved index is of the current state)."""
    data = mixture(500, DIMS, seed=1)
    keys = [f"d{i:03d}" for i in range(500)]
    with VectorStore(store_path, DIMS, config=FAST) as store:
        store.insert_batch(keys, data)
        store.db.snapshot("v1")
        store.insert_batch(keys[:50], data[:50][::-1] + 5.0)  # moved far away
        store.delete_batch(keys[50:100])
        store.insert_batch([f"n{i:03d}" for i in range(50)], mixture(50, DIMS, seed=2))
        store.db.compact(full=True)
    return store_path, data


def _check_tag(store: VectorStore, data: np.ndarray) -> None:
    keys = [f"d{i:03d}" for i in range(500)]
    assert len(store) == 500 and store.keys() == keys
    assert store.keys("n") == []
    for i in (0, 49, 50, 99, 499):
        np.testing.assert_array_equal(store.get(keys[i]), data[i])
        hits = store.search(data[i], k=1)
        assert hits[0].key == keys[i] and hits[0].score < 1e-5
    batch = store.search_batch(data[:10], k=3)
    assert [hits[0].key for hits in batch] == keys[:10]


def test_snapshot_store_reads_the_tag(changed: tuple[Path, np.ndarray]) -> None:
    path, data = changed
    before = _files(path)
    with VectorStore(path, snapshot="v1") as old:
        assert old.readonly and old.tag == "v1"
        _check_tag(old, data)
        with VectorStore(path, readonly=True) as now:  # the current state, side by side
            assert len(now) == 500 and now.get("d060") is None
            assert now.search(data[0], k=1)[0].key != "d000"
        old.rebuild()  # an in-memory rebuild answers the same
        _check_tag(old, data)
    assert _files(path) == before  # nothing written by either


def test_snapshot_store_without_a_saved_index(changed: tuple[Path, np.ndarray]) -> None:
    path, data = changed
    for f in (path / "vector_index").iterdir():
        if f.name != "config.json":
            f.unlink()
    with VectorStore(path, snapshot="v1") as old:
        _check_tag(old, data)
    assert sorted(f.name for f in (path / "vector_index").iterdir()) == ["config.json"]


def test_snapshot_store_is_read_only_and_tags_are_checked(
    changed: tuple[Path, np.ndarray],
) -> None:
    path, data = changed
    with VectorStore(path, snapshot="v1") as old:
        for write in (
            lambda: old.insert("x", data[0]),
            lambda: old.insert_batch(["x"], data[:1]),
            lambda: old.delete("d000"),
            lambda: old.delete_batch(["d000"]),
            lambda: old.flush(),
        ):
            with pytest.raises(ReadOnlyError, match="snapshot 'v1'"):
                write()
        with pytest.raises(ReadOnlyError):
            old.db.append("d000", data[1])
        with pytest.raises(synarrow.SnapshotInUseError), synarrow.SynaDB(path, FAST) as db:
            db.drop_snapshot("v1")  # the store holds the tag open
    with pytest.raises(SnapshotNotFoundError):
        VectorStore(path, snapshot="v2")
    with pytest.raises(synarrow.InvalidArgumentError):
        VectorStore(path, snapshot="../v1")
    with synarrow.SynaDB(path, readonly=True) as db:
        np.testing.assert_allclose(db.get_vector("d001"), data[48] + 5.0)  # the changed vector
