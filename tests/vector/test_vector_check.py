"""One validator for every vector a store takes: inserts and queries refuse alike."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import synarrow
from synarrow import InvalidValueError
from synarrow.vector_check import as_float32, check_matrix, check_vector

BAD = {
    "wrong length": [1.0, 2.0],
    "NaN": [1.0, float("nan"), 0.0],
    "inf": [1.0, float("inf"), 0.0],
    "booleans": np.array([True, False, True]),
    "text": ["a", "b", "c"],
    "float32 overflow": np.array([1e300, 0.0, 0.0]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_insert_search_and_batches_refuse_the_same_inputs(tmp_path: Path, case: str) -> None:
    value = BAD[case]
    with pytest.raises(InvalidValueError) as direct:
        check_vector(value, 3, "vector")
    with synarrow.VectorStore(tmp_path / "v.db", dimensions=3) as store:
        with pytest.raises(InvalidValueError) as inserted:
            store.insert("a", value)
        with pytest.raises(InvalidValueError) as queried:
            store.search(value)
        with pytest.raises(InvalidValueError):
            store.insert_batch(["a"], [value])
        with pytest.raises(InvalidValueError):
            store.search_batch([value])
        assert len(store) == 0
    assert str(inserted.value) == str(direct.value)
    assert str(queried.value) == str(direct.value).replace("vector", "query", 1)


def test_arrow_and_lists_give_the_same_float32_rows() -> None:
    rows = [[1.0, 2.0], [3.0, 4.5]]
    arrow = pa.array(rows, pa.list_(pa.float32(), 2))
    chunked = pa.chunked_array([arrow.slice(0, 1), arrow.slice(1)])
    for value in (rows, np.array(rows), arrow, chunked):
        out = check_matrix(value, 2)
        assert out.dtype == np.float32 and out.flags.c_contiguous
        assert out.tolist() == rows
    with pytest.raises(InvalidValueError, match="null vectors"):
        as_float32(pa.array([[1.0, 2.0], None], pa.list_(pa.float32(), 2)), "vectors")
    with pytest.raises(InvalidValueError, match="got 3 keys but 2 vectors"):
        check_matrix(rows, 2, rows=3)
