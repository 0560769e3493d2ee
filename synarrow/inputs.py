"""The one input boundary: anything a user hands to a batch write becomes typed arrays here.

Accepted values: numpy arrays (1-D numbers, 2-D float matrices as vectors), pyarrow arrays
and chunked arrays (numbers, strings, binaries, fixed-size lists), objects with
``__arrow_c_array__`` / ``__arrow_c_stream__``, pandas / polars series, and Python lists.
Accepted timestamps: ``None`` (now), integers (microseconds since the epoch, UTC), numpy
``datetime64`` of any unit, pyarrow timestamps, pandas ``DatetimeIndex`` / Series and lists
of ``datetime``.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import numpy as np
import pyarrow as pa

from synarrow.errors import InvalidArgumentError, InvalidValueError
from synarrow.log.codec import INT64_MAX, INT64_MIN
from synarrow.log.format import Atom
from synarrow.log.values import BatchValues, check_key
from synarrow.log.vectors import float32_values

__all__ = [
    "EPOCH",
    "BatchValues",
    "check_key",
    "datetime_to_us",
    "key_list",
    "time_range",
    "to_batch",
    "to_time_bound",
    "to_timestamp_us",
    "to_timestamps",
]


def _from_numpy(arr: np.ndarray) -> BatchValues:
    kind = arr.dtype.kind
    if arr.ndim == 2:
        if kind not in "fiu":
            raise InvalidValueError(f"a 2-D batch is a matrix of vectors; got dtype {arr.dtype}")
        if arr.shape[1] == 0:
            raise InvalidValueError("vectors need at least one dimension")
        vec = float32_values(arr, "the batch")
        return BatchValues(Atom.VECTOR, arr.shape[0], vectors=vec)
    if arr.ndim != 1:
        raise InvalidValueError(f"batch values must be 1-D (or 2-D vectors), got shape {arr.shape}")
    if kind == "b":
        raise InvalidValueError("bool arrays are not an atom type", hint="use arr.astype(np.int64)")
    if kind == "f":
        return BatchValues(
            Atom.FLOAT, len(arr), numbers=np.ascontiguousarray(arr, dtype=np.float64)
        )
    if kind in "iu":
        if kind == "u" and arr.dtype.itemsize == 8 and len(arr) and arr.max() > INT64_MAX:
            raise InvalidValueError("uint64 values above the int64 range would not round-trip")
        return BatchValues(Atom.INT, len(arr), numbers=np.ascontiguousarray(arr, dtype=np.int64))
    if kind in "OUS":
        return _from_list(arr.tolist())
    raise InvalidValueError(f"unsupported batch dtype {arr.dtype}")


def _var_width(items: list[bytes], atom: Atom) -> BatchValues:
    lengths = np.fromiter((len(b) for b in items), dtype=np.int64, count=len(items))
    offsets = np.zeros(len(items) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return BatchValues(atom, len(items), offsets=offsets, data=b"".join(items))


def _from_list(items: list[Any]) -> BatchValues:
    if not items:
        return BatchValues(Atom.FLOAT, 0, numbers=np.empty(0, dtype=np.float64))
    first = items[0]
    kinds = {type(x) for x in items}
    if kinds <= {str}:
        try:
            return _var_width([s.encode("utf-8") for s in items], Atom.TEXT)
        except UnicodeEncodeError as exc:
            raise InvalidValueError(f"text is not valid Unicode: {exc}") from exc
    if kinds <= {bytes, bytearray, memoryview}:
        return _var_width([bytes(b) for b in items], Atom.BYTES)
    if kinds & {bool, np.bool_, type(None)}:
        raise InvalidValueError(
            "a batch may not hold None or bool values",
            hint="append them one by one, or fill / convert them first",
        )
    if isinstance(first, (np.ndarray, list, tuple)):
        try:
            mat = np.asarray(items)  # converted (and overflow-checked) by _from_numpy
        except ValueError as exc:
            raise InvalidValueError(
                f"vectors of a batch must all have one dimension: {exc}"
            ) from exc
        return _from_numpy(mat)
    if kinds <= {int} or all(isinstance(x, (int, np.integer)) for x in items):
        lo, hi = min(items), max(items)
        if lo < INT64_MIN or hi > INT64_MAX:
            raise InvalidValueError("batch holds ints outside the int64 range")
        return BatchValues(Atom.INT, len(items), numbers=np.array(items, dtype=np.int64))
    if all(isinstance(x, (int, float, np.integer, np.floating)) for x in items):
        return BatchValues(Atom.FLOAT, len(items), numbers=np.array(items, dtype=np.float64))
    bad = next((x for x in items if not isinstance(x, (int, float, str, bytes))), None)
    if bad is not None:
        raise InvalidValueError(f"unsupported value in batch: {type(bad).__name__} {bad!r:.60}")
    names = ", ".join(sorted({type(x).__name__ for x in items}))
    raise InvalidValueError(
        f"a batch holds values of one type, this one mixes {names}",
        hint="append values of different types one by one (or in separate batches)",
    )


def _from_arrow(arr: pa.Array) -> BatchValues:
    if arr.null_count:
        raise InvalidValueError(
            f"batch holds {arr.null_count} nulls", hint="fill them or append None one by one"
        )
    t = arr.type
    if pa.types.is_floating(t) or pa.types.is_integer(t):
        return _from_numpy(arr.to_numpy(zero_copy_only=False))
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        arr = arr.cast(pa.large_string())
    elif pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        arr = arr.cast(pa.large_binary())
    elif pa.types.is_fixed_size_list(t) or pa.types.is_list(t) or pa.types.is_large_list(t):
        flat = arr.flatten().to_numpy(zero_copy_only=False)
        if pa.types.is_fixed_size_list(t):
            dim = t.list_size
        else:
            lengths = arr.value_lengths().to_numpy(zero_copy_only=False)
            if len(lengths) and (lengths != lengths[0]).any():
                raise InvalidValueError("vectors of a batch must all have one dimension")
            dim = int(lengths[0]) if len(lengths) else 0
        return _from_numpy(flat.reshape(len(arr), dim))
    else:
        raise InvalidValueError(f"unsupported Arrow type for a batch: {t}")
    atom = Atom.TEXT if pa.types.is_large_string(arr.type) else Atom.BYTES
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    start, end = int(offsets[0]), int(offsets[-1])
    data = bufs[2].to_pybytes()[start:end] if bufs[2] is not None else b""
    return BatchValues(atom, len(arr), offsets=offsets - start, data=data)


def to_batch(values: Any) -> BatchValues:
    """Turn any accepted batch input into :class:`BatchValues`."""
    if isinstance(values, BatchValues):
        return values
    if isinstance(values, np.ndarray):
        return _from_numpy(values)
    if isinstance(values, pa.ChunkedArray):
        return _from_arrow(values.combine_chunks())
    if isinstance(values, pa.Array):
        return _from_arrow(values)
    if hasattr(values, "__arrow_c_array__") or hasattr(values, "__arrow_c_stream__"):
        try:
            return _from_arrow(pa.chunked_array(values).combine_chunks())
        except (TypeError, pa.ArrowInvalid):
            pass
    if hasattr(values, "to_numpy") and not isinstance(values, (list, tuple)):
        return _from_numpy(np.asarray(values.to_numpy()))
    if isinstance(values, (list, tuple, range)):
        return _from_list(list(values))
    raise InvalidValueError(f"unsupported batch input {type(values).__name__}")


#: The start of time of stored microsecond timestamps.
EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def datetime_to_us(value: _dt.datetime) -> int:
    """A datetime as microseconds since the epoch, exactly (naive means UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=_dt.timezone.utc)
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def to_timestamp_us(value: Any) -> int:
    """One timestamp as int microseconds since the epoch (naive datetimes are taken as UTC)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        if not -(1 << 63) <= int(value) < 1 << 63:
            raise InvalidArgumentError(f"timestamp {value} is outside the int64 range")
        return int(value)
    if isinstance(value, _dt.datetime):
        return datetime_to_us(value)
    if isinstance(value, np.datetime64):
        return int(value.astype("datetime64[us]").astype(np.int64))
    if hasattr(value, "to_pydatetime"):
        return datetime_to_us(value.to_pydatetime())
    raise InvalidArgumentError(f"unsupported timestamp {value!r:.60}")


def key_list(value: Any, what: str = "keys_or_pattern") -> list[str]:
    """A list of keys given by a user (any iterable of str, not a str or bytes itself);
    :class:`~synarrow.errors.InvalidArgumentError` naming ``what`` otherwise."""
    if isinstance(value, (str, bytes, bytearray, memoryview)) or not hasattr(value, "__iter__"):
        raise InvalidArgumentError(
            f"{what} must be a key, a glob pattern or a list of keys, got {type(value).__name__}"
        )
    keys = list(value)
    bad = next((k for k in keys if not isinstance(k, str)), None)
    if bad is not None:
        raise InvalidArgumentError(
            f"{what} must list keys as str, got {type(bad).__name__} {bad!r:.40}"
        )
    return keys


def to_time_bound(value: Any, what: str = "time") -> int | None:
    """A time given by a user (a range bound, an as-of time) as int microseconds, or ``None``.

    Accepted: ``None``; ``datetime`` (naive means UTC) and ``date`` (its midnight, UTC);
    numpy ``datetime64`` of any unit; pandas ``Timestamp``; int microseconds since the
    epoch; ISO 8601 strings (``"2024-05-01"``, ``"2024-05-01T12:00:00Z"``,
    ``"2024-05-01 12:00+02:00"``; without an offset they are UTC). ``what`` names the
    argument in the error (:class:`~synarrow.errors.InvalidArgumentError`).
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        try:
            parsed = _dt.datetime.fromisoformat(text)
        except ValueError:
            raise InvalidArgumentError(
                f"{what} {value!r:.80} is not an ISO 8601 time",
                hint="e.g. '2024-05-01', '2024-05-01T12:00:00Z' or '2024-05-01 12:00+02:00'",
            ) from None
        return datetime_to_us(parsed)
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            raise InvalidArgumentError(f"{what} is NaT")
        return int(value.astype("datetime64[us]").astype(np.int64))
    if isinstance(value, _dt.date) and not isinstance(value, _dt.datetime):
        return datetime_to_us(_dt.datetime(value.year, value.month, value.day))
    if isinstance(value, (bool, np.bool_)):
        raise InvalidArgumentError(f"{what} must be a time, got {value!r}")
    if isinstance(value, float):
        raise InvalidArgumentError(
            f"{what} must be a time, got the float {value!r}",
            hint="pass int microseconds since the epoch, a datetime or an ISO string",
        )
    if type(value).__name__ == "NaTType":
        raise InvalidArgumentError(f"{what} is NaT")
    try:
        return to_timestamp_us(value)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"{what}: {exc.message}") from None


def time_range(start: Any, end: Any) -> tuple[int | None, int | None]:
    """``(start, end)`` as microseconds (``None``: unbounded) for a half-open range
    ``[start, end)``; :class:`~synarrow.errors.InvalidArgumentError` if ``start > end``."""
    lo = to_time_bound(start, "start")
    hi = to_time_bound(end, "end")
    if lo is not None and hi is not None and lo > hi:
        raise InvalidArgumentError(f"start ({start!r:.40}) is after end ({end!r:.40})")
    return lo, hi


def to_timestamps(timestamps: Any, count: int) -> np.ndarray | None:
    """Batch timestamps as int64 microseconds (``None`` stays ``None``: 'now' for all)."""
    if timestamps is None:
        return None
    if isinstance(timestamps, (pa.Array, pa.ChunkedArray)):
        if pa.types.is_timestamp(timestamps.type):
            timestamps = timestamps.cast(pa.timestamp("us", tz=timestamps.type.tz))
            arr = timestamps.to_numpy(zero_copy_only=False).astype("datetime64[us]")
        else:
            arr = timestamps.to_numpy(zero_copy_only=False)
    elif hasattr(timestamps, "to_numpy") and not isinstance(timestamps, np.ndarray):
        arr = np.asarray(timestamps.to_numpy())
    else:
        arr = np.asarray(timestamps)
    if arr.dtype == object:
        arr = np.array([to_timestamp_us(v) for v in arr.tolist()], dtype=np.int64)
    if arr.dtype.kind == "M":
        if np.isnat(arr).any():
            raise InvalidArgumentError("timestamps contain NaT")
        arr = arr.astype("datetime64[us]").view(np.int64)
    elif arr.dtype.kind in "iu":
        if arr.dtype.kind == "u" and arr.dtype.itemsize == 8 and len(arr) and arr.max() > INT64_MAX:
            raise InvalidArgumentError("timestamps beyond the int64 range of microseconds")
        arr = arr.astype(np.int64, copy=False)
    else:
        raise InvalidArgumentError(
            f"timestamps must be datetimes or int microseconds, got {arr.dtype}"
        )
    if arr.ndim != 1 or len(arr) != count:
        raise InvalidArgumentError(f"{len(arr)} timestamps for {count} values")
    return np.ascontiguousarray(arr)
