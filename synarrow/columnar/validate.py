"""Structural checks of mapped Arrow data, made before any code dereferences it.

A record batch read from a file is only a set of pointers and lengths taken from the file.
Before its values are used, :func:`check_batch` proves that every buffer lies inside the
byte range the batch was written to, that buffer sizes match the lengths (pyarrow's cheap
validation) and that every offsets buffer (strings, binaries, lists) is non-negative,
non-decreasing and ends inside its data. Together these make any later read stay inside the
mapping, whatever the bytes say, so damaged or crafted files give
:class:`~synarrow.errors.CorruptionError` instead of a signal.

pyarrow's full validation (which also checks UTF-8) is used where no checksum covers the
bytes (format-1 files) and by ``synarrow check``; where the checksum matched, the bytes are
those synarrow wrote, and the O(rows) UTF-8 pass is kept off the read path.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from synarrow.columnar.schema import ATOM_ARROW_TYPES
from synarrow.errors import CorruptionError
from synarrow.log.format import ATOM_NAMES, Atom

__all__ = ["allowed_value_type", "check_batch", "check_offsets"]

_VECTOR_ITEM = pa.float32()
# Types whose buffers hold no offsets: the cheap validation (sizes) covers them.
_FIXED_WIDTH = {pa.float64(): True, pa.int64(): True, pa.null(): True}
# The scalar members a mixed-type (struct) history column may have, by atom name.
_STRUCT_MEMBERS = {ATOM_NAMES[atom]: t for atom, t in ATOM_ARROW_TYPES.items() if atom != Atom.NULL}


def _plain_type(t: pa.DataType) -> bool:
    if t in (pa.float64(), pa.int64(), pa.large_string(), pa.large_binary(), pa.null()):
        return True
    if pa.types.is_fixed_size_list(t):
        return bool(t.value_type == _VECTOR_ITEM and t.list_size > 0)
    if pa.types.is_large_list(t):
        return bool(t.value_type == _VECTOR_ITEM)
    return False


def allowed_value_type(t: pa.DataType) -> bool:
    """Whether ``t`` is a history type synarrow writes (see ``columnar.schema``)."""
    if _plain_type(t):
        return True
    if not pa.types.is_struct(t) or t.num_fields < 2:
        return False
    names = [f.name for f in t]
    if len(set(names)) != len(names):
        return False
    for f in t:
        if f.name == "vector":
            if not (pa.types.is_fixed_size_list(f.type) or pa.types.is_large_list(f.type)):
                return False
            if not _plain_type(f.type):
                return False
        elif _STRUCT_MEMBERS.get(f.name) != f.type:
            return False
    return True


def check_offsets(arr: pa.Array, what: str) -> None:
    """Offsets of a large string / binary / list array are in order and inside the data."""
    t = arr.type
    n = len(arr)
    bufs = arr.buffers()
    offsets_buf = bufs[1]
    needed = (arr.offset + n + 1) * 8
    if offsets_buf is None or offsets_buf.size < needed:
        raise CorruptionError(f"{what}: offsets buffer too small for {n} values")
    off = np.frombuffer(offsets_buf, dtype=np.int64, count=arr.offset + n + 1)[arr.offset :]
    if pa.types.is_large_list(t):
        limit = len(arr.values)
    elif bufs[2] is None:
        limit = 0
    else:
        limit = bufs[2].size
    if off[0] < 0 or off[-1] > limit or (n > 0 and bool(np.any(off[1:] < off[:-1]))):
        raise CorruptionError(
            f"{what}: value offsets are out of order or point past the {limit} bytes of data"
        )


def _check_array(arr: pa.Array, what: str) -> None:
    t = arr.type
    if pa.types.is_large_string(t) or pa.types.is_large_binary(t):
        check_offsets(arr, what)
    elif pa.types.is_large_list(t):
        check_offsets(arr, what)
        _check_array(arr.values, what)
    elif pa.types.is_fixed_size_list(t):
        _check_array(arr.values, what)
    elif pa.types.is_struct(t):
        for i in range(t.num_fields):
            _check_array(arr.field(i), what)


def check_batch(
    batch: pa.RecordBatch, what: str, *, within: tuple[int, int] | None, full: bool
) -> None:
    """Raise :class:`CorruptionError` unless ``batch`` is safe to read.

    ``within`` is the (start address, end address) every buffer must lie in (the batch's
    byte range in the mapping), or ``None`` when the buffers were decompressed into memory.
    ``full`` adds pyarrow's full validation (UTF-8 and every offset, in C++).
    """
    try:
        batch.validate(full=full)
    except (pa.ArrowException, ValueError) as exc:
        raise CorruptionError(f"{what}: {exc}") from exc
    if within is not None:
        lo, hi = within
        for col in batch.columns:
            for buf in col.buffers():
                if (
                    buf is not None
                    and buf.size
                    and not (lo <= buf.address and buf.address + buf.size <= hi)
                ):
                    raise CorruptionError(f"{what}: a buffer lies outside the batch's bytes")
    if not full:
        for i, col in enumerate(batch.columns):
            if i and not _FIXED_WIDTH.get(col.type, False):  # column 0 is ts (int64)
                _check_array(col, f"{what}, column {batch.schema.names[i]}")
