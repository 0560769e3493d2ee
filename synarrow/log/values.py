"""What one write hands the log: a validated key, and a batch's values in the log's layout.

:mod:`synarrow.inputs` turns user input (numpy, Arrow, pandas, lists) into these; the engine
takes nothing else, so it never sees user types.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synarrow.errors import InvalidKeyError
from synarrow.log.format import MAX_KEY_BYTES, Atom

__all__ = ["BatchValues", "check_key"]


@dataclass
class BatchValues:
    """Values of one batch write, in the layout the log stores."""

    atom: Atom
    count: int
    numbers: np.ndarray | None = None  # float64 or int64, contiguous
    vectors: np.ndarray | None = None  # float32 (count, dim)
    offsets: np.ndarray | None = None  # int64 (count + 1) for text / bytes
    data: bytes | None = None


def check_key(key: object) -> bytes:
    """Validate a key; returns its UTF-8 bytes or raises :class:`InvalidKeyError`.

    >>> check_key("sensor/1")
    b'sensor/1'
    """
    if not isinstance(key, str):
        raise InvalidKeyError(f"keys must be str, got {type(key).__name__} {key!r:.60}")
    if not key:
        raise InvalidKeyError("keys must not be empty")
    try:
        raw = key.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidKeyError(f"key {key!r:.60} is not valid UTF-8: {exc}") from exc
    if len(raw) > MAX_KEY_BYTES:
        raise InvalidKeyError(f"key of {len(raw)} UTF-8 bytes is over the limit of {MAX_KEY_BYTES}")
    return raw
