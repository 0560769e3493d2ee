"""After compaction a stored tensor reads back as one zero-copy view of the mapped file."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from synarrow.tensor import DATA_SUFFIX, TensorEngine


def history_of(engine: TensorEngine, prefix: str) -> np.ndarray:
    return engine.db.get_history_tensor(prefix + DATA_SUFFIX)


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64", "float16", "uint8"])
def test_get_tensor_is_a_view_of_the_mapped_history(store: Any, dtype: str) -> None:
    x = (np.arange(4 * 6 * 5) % 100).astype(dtype).reshape(4, 6, 5)
    store.engine.put_tensor("z/", x)
    for state in ("compacted", "reopened-compacted"):
        engine = store.settle(state)
        got = engine.get_tensor("z/*")
        assert np.array_equal(got, x)
        assert np.shares_memory(got, history_of(engine, "z/"))
        assert not got.flags.writeable and not got.flags.owndata
        again = engine.get_tensor("z/*")
        assert again.__array_interface__["data"] == got.__array_interface__["data"]


def test_chunked_write_is_one_view_after_compaction(store: Any) -> None:
    x = np.random.default_rng(1).random((1000, 8))
    assert store.engine.put_tensor_chunked("c/", x, chunk_size=64) == 16
    engine = store.settle("compacted")
    got = engine.get_tensor_chunked("c/*")
    assert np.array_equal(got, x) and np.shares_memory(got, history_of(engine, "c/"))


def test_row_subsets_are_views_too(store: Any) -> None:
    x = np.arange(200, dtype=np.int64).reshape(100, 2)
    store.engine.put_tensor("r/", x)
    engine = store.settle("compacted")
    part = engine.get_tensor("r/1*")  # rows 10..19, contiguous
    assert np.array_equal(part, x[10:20]) and np.shares_memory(part, history_of(engine, "r/"))


def test_stream_batches_inside_a_chunk_are_views(store: Any) -> None:
    x = np.arange(1000, dtype=np.float32).reshape(250, 4)
    store.engine.put_tensor("s/", x)
    engine = store.settle("compacted")
    base = history_of(engine, "s/")
    batches = list(engine.stream("s/*", batch_size=50))
    assert all(np.shares_memory(b, base) for b in batches)


def test_dtype_conversion_copies(store: Any) -> None:
    store.engine.put_tensor("f/", np.ones((3, 3), dtype=np.float32))
    engine = store.settle("compacted")
    got = engine.get_tensor("f/*", dtype=np.float64)
    assert got.dtype == np.float64 and got.flags.writeable
    assert not np.shares_memory(got, history_of(engine, "f/"))


def test_torch_tensor_shares_the_mapping_and_copy_is_writable(store: Any) -> None:
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(2).random((64, 16)).astype(np.float32)
    store.engine.put_tensor("t/", x)
    engine = store.settle("reopened-compacted")
    view = engine.get_tensor("t/*")
    t = engine.get_tensor_torch("t/*")
    assert t.data_ptr() == view.__array_interface__["data"][0]
    assert t.untyped_storage().data_ptr() <= t.data_ptr()
    assert torch.equal(t, torch.from_numpy(x))
    # copy=True: private memory that may be written (writing into `t` would SIGSEGV)
    c = engine.get_tensor_torch("t/*", copy=True)
    assert c.data_ptr() != t.data_ptr()
    c += 1
    assert torch.equal(engine.get_tensor_torch("t/*"), torch.from_numpy(x))


def test_torch_views_of_other_dtypes(store: Any) -> None:
    torch = pytest.importorskip("torch")
    x = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    store.engine.put_tensor("i/", x)
    engine = store.settle("compacted")
    t = engine.get_tensor_torch("i/*")
    assert t.dtype == torch.int16 and t.shape == (2, 3, 4)
    assert t.data_ptr() == engine.get_tensor("i/*").__array_interface__["data"][0]
