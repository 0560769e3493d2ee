"""Whole frames in one call: the rows of a long or wide frame as per-key batches, and many
keys' histories as one long table.

:func:`stage_table` turns a frame (pandas, polars, Arrow, any Arrow C stream) into the
``(key, values, timestamps)`` items of one all-or-nothing batch write. Rows are grouped by key
in vectorised code: the key column is factorised (each distinct key once), a stable argsort of
the codes orders the rows key by key (skipped when the rows are already grouped), ``ts`` and
``value`` are taken in that order once, and every key gets a zero-copy slice of them.
:func:`long_table` is the other direction: the ordered histories of a snapshot's keys as one
Arrow table ``key``, ``ts``, ``value``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synarrow import inputs
from synarrow.columnar.schema import TS_TYPE, conform, ts_array, value_type
from synarrow.engine.batches import slice_batch
from synarrow.engine.engine import StagedBatch
from synarrow.engine.snapshot import ReadSnapshot
from synarrow.errors import InvalidArgumentError, InvalidKeyError, InvalidValueError, SynaError
from synarrow.log.memtable import TailChunk
from synarrow.log.values import BatchValues

__all__ = ["LONG_SCHEMA", "long_table", "stage_table"]

#: The schema of :func:`long_table` for histories of floats (``value`` follows the data).
LONG_SCHEMA = pa.schema([("key", pa.string()), ("ts", TS_TYPE), ("value", pa.float64())])

#: A column as read from a frame: a numpy array (pandas numbers, objects) or Arrow.
Column = np.ndarray | pa.ChunkedArray


# -- reading frames --------------------------------------------------------------------------


def _is_pandas(data: Any) -> bool:
    return type(data).__module__.split(".")[0] == "pandas" and hasattr(data, "columns")


class _Frame:
    """Named columns of a user frame, read without copying where the library allows."""

    def __init__(self, data: Any) -> None:
        self.pandas = _is_pandas(data)
        self.data: Any
        if self.pandas:
            self.data = data
            self.names: list[Any] = list(data.columns)
            return
        if isinstance(data, pa.RecordBatch):
            data = pa.Table.from_batches([data])
        elif isinstance(data, pa.RecordBatchReader):
            data = data.read_all()
        elif not isinstance(data, pa.Table):
            if not (hasattr(data, "__arrow_c_stream__") or hasattr(data, "__arrow_c_array__")):
                raise InvalidArgumentError(
                    f"append_table takes a pandas / polars DataFrame, an Arrow table, record "
                    f"batch or reader, or an Arrow C stream, got {type(data).__name__}"
                )
            try:
                data = pa.table(data)
            except (TypeError, ValueError, pa.ArrowException) as exc:
                raise InvalidArgumentError(
                    f"cannot read {type(data).__name__} as an Arrow table: {exc}"
                ) from exc
        self.data = data
        self.names = list(data.column_names)

    def __len__(self) -> int:
        return len(self.data.index) if self.pandas else int(self.data.num_rows)

    def has(self, name: str) -> bool:
        return name in self.names

    def index_as(self, name: str) -> Any:
        """The pandas index, when it is the ``ts`` column (named so, or a DatetimeIndex)."""
        if not self.pandas:
            return None
        index = self.data.index
        if index.name == name or index.dtype.kind == "M" or str(index.dtype).startswith("datetime"):
            return index
        return None

    def column(self, name: Any) -> Column:
        """A column: numpy for pandas numbers and objects, Arrow otherwise."""
        if self.names.count(name) > 1:
            raise InvalidArgumentError(
                f"the frame has {self.names.count(name)} columns named {name!r}",
                hint="rename them so each name is used once",
            )
        if not self.pandas:
            return self.data.column(name)
        series = self.data[name]
        return _pandas_column(series, name)


def _pandas_column(series: Any, name: Any) -> Column:
    dtype = series.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "fiuO":
        return series.to_numpy()
    try:  # datetimes with a zone, pandas strings, nullable and Arrow-backed dtypes
        return pa.chunked_array([pa.array(series)])
    except (TypeError, ValueError, pa.ArrowException) as exc:
        raise InvalidValueError(f"column {name!r} ({dtype}) cannot be read: {exc}") from exc


def _arrow(col: Column, name: Any) -> pa.Array:
    if isinstance(col, np.ndarray):
        try:
            col = pa.chunked_array([pa.array(col, from_pandas=True)])
        except (TypeError, ValueError, pa.ArrowException) as exc:
            raise InvalidValueError(f"column {name!r} mixes types or holds objects: {exc}") from exc
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return arr


def _missing(frame: _Frame, role: str, name: Any) -> InvalidArgumentError:
    shown = ", ".join(repr(n) for n in frame.names[:12])
    return InvalidArgumentError(
        f"the frame has no {role} column {name!r} (its columns: {shown or 'none'})",
        hint=f"name the column with {role}=...",
    )


# -- keys ------------------------------------------------------------------------------------


def _factorize(col: Column, name: Any) -> tuple[np.ndarray, list[str]]:
    """``(codes, keys)``: each row's key as an index into the distinct keys (in order of
    first appearance, so rows already grouped by key have non-decreasing codes)."""
    if isinstance(col, np.ndarray):
        import pandas as pd  # an object key column only comes from a pandas frame

        codes, uniques = pd.factorize(col, use_na_sentinel=True)
        if len(codes) and codes.min() < 0:
            raise InvalidKeyError(f"key column {name!r} holds nulls", hint="every row needs a key")
        keys = list(uniques)
    else:
        arr = _arrow(col, name)
        if arr.null_count:
            raise InvalidKeyError(
                f"key column {name!r} holds {arr.null_count} nulls", hint="every row needs a key"
            )
        if pa.types.is_dictionary(arr.type):  # a categorical: encode its dictionary only
            indices = arr.indices.to_numpy(zero_copy_only=False)
            arr = arr.dictionary
        else:
            indices = None
        if pa.types.is_string_view(arr.type):  # no filter / take kernels for views
            arr = arr.cast(pa.large_string())
        if not (
            pa.types.is_string(arr.type)
            or pa.types.is_large_string(arr.type)
            or pa.types.is_string_view(arr.type)
        ):
            raise InvalidKeyError(f"key column {name!r} must hold text, it is {arr.type}")
        # A categorical's dictionary may hold a null no row uses: it gets a code of its own
        # (and is dropped below with the other unused entries).
        encoded = arr.dictionary_encode(null_encoding="encode")
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        names = encoded.dictionary
        if indices is not None:
            codes = codes[indices]  # equal dictionary entries share one code
            used = np.bincount(codes, minlength=len(names)) > 0
            if not used.all():  # categories without rows get no key
                codes = (np.cumsum(used) - 1)[codes]
                names = names.filter(pa.array(used))
        if names.null_count:
            raise InvalidKeyError(f"key column {name!r} holds nulls", hint="every row needs a key")
        keys = names.to_pylist()
    for k in keys:
        if not isinstance(k, str):
            raise InvalidKeyError(
                f"key column {name!r} must hold text, found {type(k).__name__} {k!r:.40}"
            )
    return codes, keys


def _grouping(codes: np.ndarray, count: int) -> tuple[np.ndarray | None, np.ndarray]:
    """``(order, bounds)``: the stable row order that groups the keys (``None`` when the
    rows already are) and where each key's rows begin and end in it."""
    bounds = np.zeros(count + 1, dtype=np.int64)
    np.cumsum(np.bincount(codes, minlength=count), out=bounds[1:])
    if len(codes) < 2 or bool((codes[1:] >= codes[:-1]).all()):
        return None, bounds
    # numpy sorts 16-bit ints stably by radix: far faster than the merge sort of wider ones.
    small = codes.astype(np.uint16) if count <= 1 << 16 else codes
    return np.argsort(small, kind="stable"), bounds


def _take(col: Column, order: np.ndarray | None) -> Column:
    if order is None:
        return col
    if isinstance(col, np.ndarray):
        return np.take(col, order)
    t = col.type
    if pa.types.is_string_view(t) or pa.types.is_binary_view(t):  # no take kernel for views
        col = col.cast(pa.large_string() if pa.types.is_string_view(t) else pa.large_binary())
    return pa.chunked_array([pc.take(col, pa.array(order))])


# -- timestamps and values -------------------------------------------------------------------


def _timestamps(col: Column, name: Any) -> np.ndarray:
    """A ``ts`` column as int64 microseconds since the epoch (finer units are truncated)."""
    if isinstance(col, np.ndarray):
        if col.dtype.kind in "iu":
            return inputs.to_timestamps(col, len(col))  # type: ignore[return-value]
        if col.dtype.kind != "O":
            raise InvalidValueError(f"ts column {name!r} must hold times, it is {col.dtype}")
    arr = _arrow(col, name)
    t = arr.type
    if arr.null_count:
        raise InvalidValueError(
            f"ts column {name!r} holds {arr.null_count} null times", hint="every row needs a ts"
        )
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        arr, t = _text_times(arr, name), pa.timestamp("us", tz="UTC")
    if pa.types.is_date(t):
        arr, t = arr.cast(pa.timestamp("us")), pa.timestamp("us")
    if pa.types.is_timestamp(t):
        # Finer units are truncated to microseconds; coarser ones must not overflow them.
        try:
            us = pc.cast(arr, pa.timestamp("us", tz=t.tz), safe=t.unit in ("s", "ms"))
        except pa.ArrowInvalid as exc:
            raise InvalidValueError(
                f"ts column {name!r} holds times beyond the int64 microsecond range: {exc}"
            ) from None
        return us.cast(pa.int64()).to_numpy(zero_copy_only=False)
    if pa.types.is_integer(t):
        out = arr.to_numpy(zero_copy_only=False)
        return inputs.to_timestamps(out, len(out))  # type: ignore[return-value]
    raise InvalidValueError(
        f"ts column {name!r} must hold times or int microseconds, it is {t}",
        hint="convert it, e.g. pandas.to_datetime(df[ts])",
    )


def _text_times(arr: pa.Array, name: Any) -> pa.Array:
    """ISO 8601 text as ``timestamp[us, UTC]``: with a zone or offset, or without one
    (then UTC), as :func:`synarrow.inputs.to_time_bound` reads a range bound."""
    text = arr.cast(pa.large_string())
    for target in (pa.timestamp("us", tz="UTC"), pa.timestamp("us")):
        try:
            return text.cast(target).cast(pa.timestamp("us", tz="UTC"))
        except pa.ArrowException:
            continue
    # Mixed forms (some with an offset, some without, dates, "T" or " "): one at a time.
    what = f"ts column {name!r}"
    try:
        us = [inputs.to_time_bound(v, what) for v in text.to_pylist()]
    except SynaError as exc:
        raise InvalidValueError(f"{what} holds text that is not ISO times: {exc.message}") from None
    return pa.array(us, pa.int64()).cast(pa.timestamp("us", tz="UTC"))


def _values(col: Column, name: Any) -> BatchValues:
    """A value column as one batch (one type; nulls and mixed types refused)."""
    if isinstance(col, np.ndarray) and col.dtype.kind == "O":
        if any(v is None for v in col.tolist()):
            raise InvalidValueError(
                f"value column {name!r} holds nulls", hint="drop or fill them first"
            )
    if isinstance(col, pa.ChunkedArray) and col.null_count:
        raise InvalidValueError(
            f"value column {name!r} holds {col.null_count} nulls", hint="drop or fill them first"
        )
    try:
        return inputs.to_batch(col)
    except SynaError as exc:
        raise type(exc)(f"value column {name!r}: {exc.message}", hint=exc.hint) from None


# -- staging ---------------------------------------------------------------------------------


def _prefixed(prefix: str | None, name: Any) -> str:
    if not isinstance(name, str):
        raise InvalidKeyError(f"column name {name!r:.40} is not text, so it cannot be a key")
    return name if prefix is None else prefix + name


def _wide(
    frame: _Frame, ts_col: Column | None, ts: str | None, prefix: str | None
) -> list[StagedBatch]:
    stamps = None if ts_col is None else _timestamps(ts_col, ts)
    staged = []
    for name in frame.names:
        if ts is not None and name == ts:
            continue
        key = _prefixed(prefix, name)
        inputs.check_key(key)
        staged.append((key, _values(frame.column(name), name), stamps))
    return staged


def stage_table(
    data: Any,
    *,
    key: str | None = "key",
    ts: str | None = "ts",
    value: str = "value",
    prefix: str | None = None,
) -> list[StagedBatch]:
    """The batches that append every row of ``data``, one item per key, checked and
    converted (nothing is written); see :meth:`synarrow.SynaDB.append_table`."""
    for option, given in (("key", key), ("ts", ts), ("value", value), ("prefix", prefix)):
        if given is not None and not isinstance(given, str):
            raise InvalidArgumentError(f"{option} must be a column name, got {given!r:.40}")
    frame = _Frame(data)
    ts_col: Column | None = None
    if ts is not None:
        if frame.has(ts):
            ts_col = frame.column(ts)
        else:
            index = frame.index_as(ts)
            if index is None:
                raise _missing(frame, "ts", ts)
            ts_col = _pandas_column(index.to_series(), ts)
    if key is None:
        return _wide(frame, ts_col, ts, prefix)
    for role, name in (("key", key), ("value", value)):
        if not frame.has(name):
            raise _missing(frame, role, name)
    if not len(frame):
        return []
    codes, keys = _factorize(frame.column(key), key)
    keys = [_prefixed(prefix, k) for k in keys]
    for k in keys:
        inputs.check_key(k)
    order, bounds = _grouping(codes, len(keys))
    stamps = None if ts_col is None else _timestamps(_take(ts_col, order), ts)
    batch = _values(_take(frame.column(value), order), value)
    items: list[StagedBatch] = []
    for i, k in enumerate(keys):
        lo, hi = int(bounds[i]), int(bounds[i + 1])
        items.append((k, slice_batch(batch, lo, hi), None if stamps is None else stamps[lo:hi]))
    return items


# -- reading many keys -----------------------------------------------------------------------


def long_table(
    snapshot: ReadSnapshot,
    keys: Sequence[str],
    start: int | None = None,
    end: int | None = None,
    last: int | None = None,
) -> pa.Table:
    """The histories of ``keys`` (all in ``snapshot``) as one table ``key``, ``ts``, ``value``:
    keys in the given order, each key's rows ordered by ts and restricted to ``[start, end)``
    (then its final ``last`` rows). ``value`` has the one type all the keys share, or the
    struct type of a mixed history (:func:`synarrow.columnar.schema.value_type`) when they
    differ. The columns are views of the stored chunks where they can be."""
    parts: list[tuple[str, TailChunk]] = []
    for k in keys:
        parts.extend((k, c) for c in snapshot.keys[k].timeline(start, end, last) if len(c))
    target = value_type([c for _, c in parts])
    if not parts:
        schema = pa.schema([("key", pa.string()), ("ts", TS_TYPE), ("value", target)])
        return schema.empty_table()
    key_col = pa.chunked_array([pa.repeat(k, len(c)).cast(pa.string()) for k, c in parts])
    ts_col = pa.chunked_array([ts_array(c.ts) for _, c in parts], type=TS_TYPE)
    values = pa.chunked_array([conform(c, target) for _, c in parts], type=target)
    return pa.Table.from_arrays([key_col, ts_col, values], names=["key", "ts", "value"])
