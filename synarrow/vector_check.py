"""The one validator of the vectors a :class:`~synarrow.VectorStore` takes: float32 rows of
the store's dimensions holding finite numbers.

Inserts, batch inserts, queries and batch queries all go through :func:`check_vector` or
:func:`check_matrix`, so they accept the same inputs (numpy arrays, lists, Arrow
``fixed_size_list`` arrays, CPU torch tensors) and refuse the same ones with the same
:class:`~synarrow.errors.InvalidValueError` messages.

>>> check_vector([1, 2, 3], 3, "query").dtype
dtype('float32')
>>> check_matrix([[1, 2], [3, 4]], 2, what="vectors").shape
(2, 2)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa

from synarrow.errors import InvalidValueError
from synarrow.interop import fixed_size_list_numpy
from synarrow.log.vectors import float32_values

__all__ = ["as_float32", "check_matrix", "check_vector"]


def as_float32(value: Any, what: str) -> np.ndarray:
    """An array-like of numbers as a float32 numpy array (any shape).

    Refuses booleans, non-numbers, null vectors and float64 values that overflow float32.
    """
    if isinstance(value, (pa.Array, pa.ChunkedArray)) and pa.types.is_fixed_size_list(value.type):
        if value.null_count:
            raise InvalidValueError(f"{what} holds null vectors")
        value = fixed_size_list_numpy(value)
    return float32_values(value, what)


def check_vector(value: Any, dimensions: int, what: str) -> np.ndarray:
    """One vector: a 1-D float32 array of ``dimensions`` finite values."""
    if type(value) is np.ndarray and value.dtype == np.float32 and value.shape == (dimensions,):
        vec = value  # the fast path: already what the store holds
    else:
        vec = as_float32(value, what)
        if vec.ndim != 1 or vec.shape[0] != dimensions:
            raise InvalidValueError(
                f"{what} has shape {vec.shape}, expected ({dimensions},): the store has "
                f"{dimensions} dimensions"
            )
    # A float64 sum of float32 values cannot overflow, so it is finite iff every value is.
    if not math.isfinite(vec.sum(dtype=np.float64)):
        raise InvalidValueError(f"{what} holds NaN or infinite values")
    return vec


def check_matrix(
    value: Any, dimensions: int, *, rows: int | None = None, what: str = "vectors"
) -> np.ndarray:
    """Vectors as rows: a C-contiguous ``(n, dimensions)`` float32 array of finite values.

    ``rows``: the number of rows required (the number of keys); when it is ``None`` a single
    1-D vector is taken as one row.
    """
    matrix = as_float32(value, what)
    if matrix.ndim == 1 and rows is None and matrix.shape[0] == dimensions:
        matrix = matrix[None, :]
    if matrix.ndim != 2 or matrix.shape[1] != dimensions:
        raise InvalidValueError(
            f"{what} has shape {matrix.shape}, expected (n, {dimensions}): the store has "
            f"{dimensions} dimensions"
        )
    if rows is not None and matrix.shape[0] != rows:
        raise InvalidValueError(f"got {rows} keys but {matrix.shape[0]} vectors")
    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        row = int(np.argmin(finite))
        raise InvalidValueError(f"{what} row {row} holds NaN or infinite values")
    return np.ascontiguousarray(matrix)
