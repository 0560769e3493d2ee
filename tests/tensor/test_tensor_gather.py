"""Gathering: single keys, row subsets by pattern, mixes of stored tensors and keys."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from synarrow.tensor import TensorEngine


def test_single_float_keys_latest_value_in_key_order(store: Any, state: str) -> None:
    db = store.engine.db
    for i in (3, 0, 2, 1):
        db.append(f"sensor/{i:04d}", -1.0)
        db.append(f"sensor/{i:04d}", float(i) + 0.5)  # latest wins
    engine = store.settle(state)
    got = engine.get_tensor("sensor/*")
    assert got.dtype == np.float64 and got.tolist() == [0.5, 1.5, 2.5, 3.5]


def test_ints_floats_and_vectors(engine: TensorEngine) -> None:
    db = engine.db
    db.append("i/0", 1)
    db.append("i/1", 2)
    assert engine.get_tensor("i/*").dtype == np.int64
    db.append("i/2", 2.5)
    assert engine.get_tensor("i/*").tolist() == [1.0, 2.0, 2.5]
    db.append("v/0", np.array([1, 2], dtype=np.float32))
    db.append("v/1", np.array([3, 4], dtype=np.float32))
    got = engine.get_tensor("v/*")
    assert got.dtype == np.float32 and got.tolist() == [[1, 2], [3, 4]]


def test_pattern_selects_rows_like_row_keys(engine: TensorEngine) -> None:
    x = np.arange(150, dtype=np.int32).reshape(150, 1)
    engine.put_tensor("x/", x)  # keys x/000 .. x/149
    assert np.array_equal(engine.get_tensor("x/*"), x)
    assert np.array_equal(engine.get_tensor("x/14?"), x[140:150])
    assert np.array_equal(engine.get_tensor("x/007"), x[7:8])
    odd = engine.get_tensor("x/*[13579]")
    assert np.array_equal(odd, x[1::2])
    assert np.array_equal(engine.get_tensor("*"), x)
    with pytest.raises(KeyError):
        engine.get_tensor("x/7")  # not a row key (rows are padded to 3 digits)


def test_stored_tensors_and_keys_in_key_order(engine: TensorEngine) -> None:
    engine.put_tensor("m/b", np.array([[1.0], [2.0]]))  # rows m/b0, m/b1
    engine.db.append("m/a", np.array([0.0], dtype=np.float32))
    engine.db.append("m/c", np.array([3.0], dtype=np.float32))
    got = engine.get_tensor("m/*")
    assert got.dtype == np.float64 and got.ravel().tolist() == [0.0, 1.0, 2.0, 3.0]
    assert engine.keys("m/*") == ["m/a", "m/b0", "m/b1", "m/c"]


def test_several_stored_tensors_concatenate(engine: TensorEngine) -> None:
    engine.put_tensor("p/a/", np.zeros((2, 3), dtype=np.float32))
    engine.put_tensor("p/b/", np.ones((1, 3), dtype=np.float32))
    got = engine.get_tensor("p/*")
    assert got.shape == (3, 3) and got[2].tolist() == [1, 1, 1]


def test_dtype_and_shape_arguments(engine: TensorEngine) -> None:
    engine.put_tensor("s/", np.arange(12, dtype=np.float64))
    assert engine.get_tensor("s/*", dtype=np.float32, shape=(3, 4)).dtype == np.float32
    assert engine.get_tensor("s/*", dtype="int16", shape=(-1, 6)).shape == (2, 6)
    assert engine.get_tensor("s/*", shape=(3, 4)).base is not None  # reshape, no copy


def test_zero_d_and_empty_tensors(engine: TensorEngine) -> None:
    engine.put_tensor("zd/", np.float32(2.5))
    got = engine.get_tensor("zd/*")
    assert got.shape == () and got == np.float32(2.5)
    engine.put_tensor("e/", np.zeros((0, 4), dtype=np.int8))
    assert engine.get_tensor("e/*").shape == (0, 4)
    engine.put_tensor("w/", np.zeros((3, 0)))
    assert engine.get_tensor("w/*").shape == (3, 0)


def test_delete_and_listing(engine: TensorEngine) -> None:
    engine.put_tensor("a/", np.zeros((4, 2)))
    engine.put_tensor("b/", np.zeros(3, dtype=np.int64))
    assert [t.prefix for t in engine.tensors()] == ["a/", "b/"]
    info = engine.info("b/")
    assert info.shape == (3,) and info.dtype == "int64" and info.nbytes == 24
    assert engine.delete("a/*") == 4
    assert [t.prefix for t in engine.tensors()] == ["b/"]
    with pytest.raises(KeyError):
        engine.get_tensor("a/*")


def test_engine_on_a_path(tmp_path: Any) -> None:
    path = tmp_path / "p.db"
    with TensorEngine(path) as engine:
        engine.put_tensor("k/", np.eye(3))
    with TensorEngine(path, readonly=True) as engine:
        assert np.array_equal(engine.get_tensor("k/*"), np.eye(3))
        assert "TensorEngine" in repr(engine)


def test_half_written_tensor_is_invisible(engine: TensorEngine) -> None:
    """Data without its description (a crash between the two writes) is not a tensor."""
    engine.put_tensor("h/", np.ones((2, 2)))
    engine.db.delete("h/#tensor-meta")
    with pytest.raises(KeyError):
        engine.get_tensor("h/*")
    assert engine.keys("*") == []


@pytest.mark.parametrize(
    "pattern", ["x/1*", "x/0*", "x/05*", "x/3*", "x/2*", "x/14*", "x/[0-1]5*", "x/?9", "x/1?0"]
)
def test_row_selection_agrees_with_fnmatch_on_row_keys(engine: TensorEngine, pattern: str) -> None:
    import fnmatch

    x = np.arange(250, dtype=np.int64)
    engine.put_tensor("x/", x)  # keys x/000 .. x/249
    keys = [f"x/{i:03d}" for i in range(250)]
    want = [i for i, k in enumerate(keys) if fnmatch.fnmatchcase(k, pattern)]
    if not want:
        with pytest.raises(KeyError):
            engine.get_tensor(pattern)
    else:
        assert engine.get_tensor(pattern).tolist() == want
