"""stream(): batches in order, equal to the whole tensor, without loading it at once."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synarrow.tensor import TensorEngine

SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def check_batches(engine: TensorEngine, pattern: str, batch: int, **kw: Any) -> None:
    whole = engine.get_tensor(pattern, **kw)
    batches = list(engine.stream(pattern, batch_size=batch, **kw))
    assert all(len(b) == batch for b in batches[:-1])
    assert 0 < len(batches[-1]) <= batch if len(whole) else batches == []
    joined = np.concatenate(batches) if batches else whole[:0]
    assert joined.dtype == whole.dtype and np.array_equal(joined, whole)


@SETTINGS
@given(rows=st.integers(0, 60), chunk=st.integers(1, 25), batch=st.integers(1, 70))
def test_stream_equals_whole_tensor_across_chunks(
    engine: TensorEngine, rows: int, chunk: int, batch: int
) -> None:
    x = np.arange(rows * 3, dtype=np.float64).reshape(rows, 3)
    engine.put_tensor_chunked("s/", x, chunk_size=chunk)  # log tail: one chunk per write
    if rows:
        check_batches(engine, "s/*", batch)
    else:
        assert list(engine.stream("s/*", batch_size=batch)) == []


def test_stream_over_mixed_sources_and_dtype(store: Any, state: str) -> None:
    engine = store.engine
    engine.put_tensor("m/a", np.arange(10, dtype=np.int32))
    for i in range(7):
        engine.db.append(f"m/b{i}", i * 10)
    engine.put_tensor("m/c", np.arange(5, dtype=np.int64) - 5)
    engine = store.settle(state)
    for batch in (1, 3, 8, 100):
        check_batches(engine, "m/*", batch)
        check_batches(engine, "m/*", batch, dtype=np.float32)


def test_stream_row_subset_and_small_dtypes(engine: TensorEngine) -> None:
    engine.put_tensor("u/", np.arange(100, dtype=np.uint8))  # 4 rows per stored row
    check_batches(engine, "u/*", 7)
    check_batches(engine, "u/[13]?", 6)
