"""Every path that takes vectors refuses what the one float32 conversion refuses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import synarrow
from synarrow.errors import InvalidValueError
from synarrow.log.vectors import float32_values

BAD = {
    "overflow": np.array([1.0, 1e300]),
    "booleans": np.array([True, False]),
    "text": np.array(["a", "b"]),
}


@given(st.lists(st.floats(width=32, allow_nan=False), min_size=1, max_size=16))
def test_float32_values_keep_float32_numbers_exactly(values: list[float]) -> None:
    out = float32_values(values, "v")
    assert out.dtype == np.dtype("<f4") and out.flags.c_contiguous
    assert out.tolist() == values


@pytest.mark.parametrize("name", sorted(BAD))
def test_float32_values_refuse(name: str) -> None:
    with pytest.raises(InvalidValueError, match="v "):
        float32_values(BAD[name], "v")


def _put_vector(db: synarrow.SynaDB, v: np.ndarray) -> Any:
    return db.put_vector("k", v)


def _append(db: synarrow.SynaDB, v: np.ndarray) -> Any:
    return db.append("k", v)


def _append_batch(db: synarrow.SynaDB, v: np.ndarray) -> Any:
    return db.append_batch("k", np.stack([v, v]))


@pytest.mark.parametrize("write", [_put_vector, _append, _append_batch])
@pytest.mark.parametrize("name", ["overflow", "booleans"])
def test_database_vector_writes_refuse_the_same(tmp_path: Path, write: Any, name: str) -> None:
    with synarrow.SynaDB(tmp_path / "db") as db:
        with pytest.raises(InvalidValueError):
            write(db, BAD[name])
        assert "k" not in db
        assert db.next_sequence == 0  # nothing was written


@pytest.mark.parametrize("name", ["overflow", "booleans"])
def test_vector_store_refuses_the_same(tmp_path: Path, name: str) -> None:
    with synarrow.VectorStore(tmp_path / "vs", dimensions=2) as store:
        with pytest.raises(InvalidValueError):
            store.insert("k", BAD[name])
        with pytest.raises(InvalidValueError):
            store.search(BAD[name], k=1)
        assert len(store) == 0
