"""The one conversion of vector values to what the log stores: little-endian float32.

Every path that takes vectors (``append`` / ``put_vector``, ``append_batch``, the vector
store's inserts and queries) converts through :func:`float32_values`, so they agree on what
they refuse: booleans, non-numbers, and float64 values too large for float32 (which would
otherwise turn into infinities silently).

>>> float32_values([0.5, 2], "a vector").tolist()
[0.5, 2.0]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from synarrow.errors import InvalidValueError

__all__ = ["float32_values"]


def float32_values(values: Any, what: str) -> np.ndarray:
    """``values`` (any shape) as a C-contiguous little-endian float32 array, checked.

    Raises :class:`~synarrow.errors.InvalidValueError` naming ``what`` for booleans,
    non-numeric values and values that overflow float32.
    """
    try:
        src = np.asarray(values)  # an ndarray is taken as it is
        if src.dtype == object:
            src = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidValueError(f"{what} is not an array of numbers: {exc}") from exc
    if src.dtype == np.bool_:
        raise InvalidValueError(f"{what} holds booleans, not numbers")
    if src.dtype.kind not in "fiu":
        raise InvalidValueError(f"{what} must hold numbers, got dtype {src.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):
        out = np.ascontiguousarray(src, dtype="<f4")
        if src.dtype.kind == "f" and src.dtype.itemsize > 4:
            if (np.isfinite(src) & ~np.isfinite(out)).any():
                raise InvalidValueError(f"{what} holds values that overflow float32")
    return out
