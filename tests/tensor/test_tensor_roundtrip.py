"""Round trips of every dtype and shape through put_tensor / get_tensor, bit for bit."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from synarrow.interop import BFLOAT16, SUPPORTED_DTYPES
from synarrow.tensor import TensorEngine

NUMPY_DTYPES = [d for d in SUPPORTED_DTYPES if d != BFLOAT16]
SLOW_OK = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@st.composite
def tensors(draw: st.DrawFn, dtypes: list[str] = NUMPY_DTYPES) -> np.ndarray:
    """Any shape (0-d and empty dimensions included), any bit pattern of the dtype."""
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5))
    if dtype.kind == "b":
        return draw(hnp.arrays(dtype, shape))
    raw = draw(hnp.arrays(np.uint8, (int(np.prod(shape)) * dtype.itemsize,)))
    return raw.view(dtype).reshape(shape)  # NaN payloads, signalling NaNs, -0.0 ...


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def check_all_states(store: Any, prefix: str, expected: np.ndarray, **kw: object) -> None:
    """Read back from the log, after a reopen, after compaction, after a reopen of that."""
    for state in ("log", "reopened-log", "compacted", "reopened-compacted"):
        got = store.settle(state).get_tensor(prefix + "*", **kw)  # type: ignore[arg-type]
        assert same_bits(got, expected), state


@SLOW_OK
@given(x=tensors())
def test_put_get_round_trip_every_dtype_and_shape(store: Any, x: np.ndarray) -> None:
    rows = store.engine.put_tensor("t/", x)
    assert rows == (x.shape[0] if x.ndim else 1)
    check_all_states(store, "t/", x)


@SLOW_OK
@given(x=tensors(), chunk=st.integers(1, 7))
def test_chunked_round_trip(store: Any, x: np.ndarray, chunk: int) -> None:
    chunks = store.engine.put_tensor_chunked("c/", x, chunk_size=chunk)
    info = store.engine.info("c/")
    assert chunks == info.chunks
    for state in ("log", "compacted"):
        got = store.settle(state).get_tensor_chunked("c/*")
        assert same_bits(got, x), state


@pytest.mark.parametrize("dtype", NUMPY_DTYPES)
def test_round_trip_each_dtype(engine: TensorEngine, dtype: str) -> None:
    x = (np.arange(60) % 2).astype(dtype).reshape(5, 3, 4)
    engine.put_tensor("d/", x)
    got = engine.get_tensor("d/*")
    assert same_bits(got, x)
    assert engine.info("d/").dtype == dtype


def test_big_endian_input_is_stored_as_values(engine: TensorEngine) -> None:
    x = np.arange(12, dtype=">i4").reshape(3, 4)
    engine.put_tensor("be/", x)
    got = engine.get_tensor("be/*")
    assert got.dtype == np.dtype("int32") and np.array_equal(got, x)


def test_non_contiguous_input(engine: TensorEngine) -> None:
    x = np.arange(100, dtype=np.float64).reshape(10, 10)[::2, 1::3]
    engine.put_tensor("nc/", x)
    assert np.array_equal(engine.get_tensor("nc/*"), x)


def test_lists_and_pyarrow_inputs(engine: TensorEngine) -> None:
    import pyarrow as pa

    engine.put_tensor("l/", [[1, 2], [3, 4]])
    assert engine.get_tensor("l/*").tolist() == [[1, 2], [3, 4]]
    fsl = pa.FixedSizeListArray.from_arrays(pa.array(np.arange(6, dtype=np.float32)), 3)
    engine.put_tensor("p/", fsl)
    assert engine.get_tensor("p/*").shape == (2, 3)


def test_torch_round_trip_including_bfloat16(store: Any) -> None:
    torch = pytest.importorskip("torch")
    engine = store.engine
    tensors_ = {
        "f32/": torch.randn(7, 3),
        "bf16/": torch.randn(5, 3).to(torch.bfloat16),
        "f16/": torch.randn(9).to(torch.float16),
        "i64/": torch.arange(10).reshape(2, 5),
        "bool/": torch.tensor([True, False, True]),
    }
    for prefix, t in tensors_.items():
        engine.put_tensor(prefix, t)
    for state in ("log", "reopened-compacted"):
        engine = store.settle(state)
        for prefix, t in tensors_.items():
            got = engine.get_tensor_torch(prefix + "*")
            assert got.dtype == t.dtype and torch.equal(got, t), (state, prefix)
    bits = engine.get_tensor("bf16/*", dtype=np.float32)
    assert np.array_equal(bits, tensors_["bf16/"].float().numpy())
    # bfloat16 survives a trip through float32 both ways
    to_bf16 = engine.get_tensor_torch("f32/*", dtype=torch.bfloat16)
    assert torch.equal(to_bf16, tensors_["f32/"].to(torch.bfloat16))


def test_key_naming_matches_synadb_padding(engine: TensorEngine) -> None:
    """Row keys are prefix + index zero-padded to the digits of the last index (as synadb)."""
    engine.put_tensor("a/", np.zeros((11, 2)))
    keys = engine.keys("a/*")
    assert keys[:2] == ["a/00", "a/01"] and keys[-1] == "a/10" and len(keys) == 11
    engine.put_tensor("b/", np.zeros(3))
    assert engine.keys("b/*") == ["b/0", "b/1", "b/2"]
    # the whole tensor is one record: two database keys, not one per row
    assert engine.db.keys("a/*") == ["a/#tensor", "a/#tensor-meta"]


def test_synadb_uses_the_same_padding(tmp_path: object) -> None:
    synadb = pytest.importorskip("synadb")
    ref = synadb.TensorEngine(str(tmp_path) + "/ref.db")  # type: ignore[operator]
    try:
        ref.put_tensor("r/", np.arange(11, dtype=np.float64))
        ref_keys = ref.keys("r/*")
    finally:
        ref.close()
    assert ref_keys[:2] == ["r/00", "r/01"] and ref_keys[-1] == "r/10"


def test_overwrite_replaces_the_tensor(store: Any) -> None:
    engine = store.engine
    engine.put_tensor("w/", np.ones((100, 4), dtype=np.float32))
    engine.put_tensor("w/", np.arange(6, dtype=np.int16).reshape(3, 2))
    for state in ("log", "reopened-compacted"):
        got = store.settle(state).get_tensor("w/*")
        assert got.dtype == np.int16 and got.tolist() == [[0, 1], [2, 3], [4, 5]]
