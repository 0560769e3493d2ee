"""``TensorEngine(path, snapshot=tag)``: the tensors as they were at the tag, after they were
replaced, deleted and compacted; read-only; misuse is a clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import synarrow
from synarrow.errors import InvalidArgumentError, ReadOnlyError, SnapshotNotFoundError
from synarrow.tensor import TensorEngine

CONFIG = synarrow.DbConfig(sync_on_write=False, auto_compact=False)


@pytest.fixture
def tagged(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """``train/`` (float32 100x8) and ``weights/`` (chunked int64) tagged ``v1``; then
    train/ replaced by another shape, weights/ deleted, compacted."""
    path = tmp_path / "t.db"
    train = np.random.default_rng(0).standard_normal((100, 8)).astype(np.float32)
    weights = np.arange(5000, dtype=np.int64).reshape(1000, 5)
    with synarrow.SynaDB(path, CONFIG) as db:
        engine = TensorEngine(db)
        engine.put_tensor("train/", train)
        engine.put_tensor_chunked("weights/", weights, chunk_size=128)
        db.snapshot("v1")
        engine.put_tensor("train/", np.zeros((3, 4), dtype=np.float64))
        engine.delete("weights/*")
        db.compact(full=True)
    return path, train, weights


def test_engine_at_a_tag_returns_the_old_tensors(
    tagged: tuple[Path, np.ndarray, np.ndarray],
) -> None:
    path, train, weights = tagged
    with TensorEngine(path, snapshot="v1") as old:
        assert old.readonly and old.tag == "v1"
        got = old.get_tensor("train/*", dtype=np.float32)
        np.testing.assert_array_equal(got, train)
        np.testing.assert_array_equal(old.get_tensor_chunked("weights/*"), weights)
        batches = list(old.stream("train/*", batch_size=32))
        np.testing.assert_array_equal(np.concatenate(batches), train)
    with TensorEngine(path, readonly=True) as now:
        assert now.get_tensor("train/*").shape == (3, 4)
    # the same through a shared snapshot handle
    with synarrow.SynaDB(path, snapshot="v1") as db:
        np.testing.assert_array_equal(TensorEngine(db).get_tensor("train/*"), train)


def test_engine_at_a_tag_is_read_only(tagged: tuple[Path, np.ndarray, np.ndarray]) -> None:
    path, train, _ = tagged
    with TensorEngine(path, snapshot="v1") as old:
        with pytest.raises(ReadOnlyError, match="snapshot 'v1'"):
            old.put_tensor("train/", train)
        with pytest.raises(ReadOnlyError):
            old.put_tensor_chunked("x/", train, chunk_size=10)
        with pytest.raises(ReadOnlyError):
            old.delete("train/*")
    with TensorEngine(path, readonly=True) as now:
        assert now.get_tensor("train/*").shape == (3, 4)  # nothing changed


def test_engine_snapshot_errors(tagged: tuple[Path, np.ndarray, np.ndarray]) -> None:
    path, _, _ = tagged
    with pytest.raises(SnapshotNotFoundError):
        TensorEngine(path, snapshot="v2")
    with pytest.raises(InvalidArgumentError, match="not a safe name"):
        TensorEngine(path, snapshot="a/b")
    with synarrow.SynaDB(path, readonly=True) as db, pytest.raises(InvalidArgumentError):
        TensorEngine(db, snapshot="v1")
