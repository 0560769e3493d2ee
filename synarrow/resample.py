"""Resampling: numeric histories aggregated into fixed time buckets, computed with numpy.

``db.resample(keys_or_pattern, every, agg="mean", *, start=None, end=None, fill=None)``
reads each key's ordered timeline (zero-copy after compaction), finds the bucket edges by
binary search on the sorted timestamps and reduces each bucket with ``numpy`` ``reduceat``:
no SQL engine and no copy of the data (a history of several chunks, such as a compacted
part plus a log tail, is concatenated once).

Semantics (checked against pandas ``Series.resample(...)`` in the tests):

* Buckets are aligned to UTC epoch multiples of ``every``; a bucket's ``ts`` is its start and
  it holds the entries with ``ts <= t < ts + every``.
* ``agg``: ``mean``, ``sum``, ``min``, ``max``, ``count``, ``first``, ``last`` or ``ohlc``
  (columns ``open``, ``high``, ``low``, ``close``), or a list of them (one column each, named
  by the aggregation). A single aggregation other than ``ohlc`` gives one ``value`` column.
* Values: float and int keys (ints are converted to float64, as in SQL's ``value``); ``None``
  entries count as NaN. NaN values are skipped as pandas does: ``mean`` / ``min`` / ``max``
  / ``first`` / ``last`` of a bucket holding only NaN are NaN, its ``sum`` is 0 and its
  ``count`` 0. Result columns are float64, ``count`` int64.
* ``start`` / ``end`` (half-open, any form of :func:`synarrow.inputs.to_time_bound`) restrict
  the entries read.
* ``fill=None``: only buckets holding entries. Otherwise every bucket from the first to the
  last (from the bucket of ``start`` to that of the last microsecond before ``end`` when
  given) is returned, empty ones filled: ``"ffill"`` with the previous bucket's value (null
  before the first), ``"linear"`` interpolated between the neighbouring non-empty buckets
  (null outside them, as pandas ``interpolate(limit_area="inside")``), a number: that
  number. ``count`` of an empty bucket is 0 whatever ``fill``.
* Result: one Arrow table ``key`` (string), ``ts`` (``timestamp[us, UTC]``) and the value
  columns, keys sorted, buckets in time order. Text, bytes and vector keys raise
  :class:`~synarrow.errors.TypeMismatchError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from numbers import Real
from typing import Any

import numpy as np
import pyarrow as pa

from synarrow import inputs
from synarrow.columnar.schema import TS_TYPE, ts_array
from synarrow.durations import parse_duration
from synarrow.engine.snapshot import KeyView
from synarrow.errors import InvalidArgumentError, TypeMismatchError
from synarrow.layout import key_array
from synarrow.log.memtable import TailChunk
from synarrow.reading import SnapshotSource, select_named

__all__ = ["AGGREGATIONS", "FILLS", "MAX_BUCKETS", "resample"]

#: The aggregations ``agg`` may name (``ohlc`` gives four columns).
AGGREGATIONS = ("mean", "sum", "min", "max", "count", "first", "last", "ohlc")
#: The named ``fill`` modes (a number is accepted too).
FILLS = ("ffill", "linear")
#: The most buckets one key may produce with a ``fill`` (each is a row of the result).
MAX_BUCKETS = 50_000_000
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1
_OHLC = (("open", "first"), ("high", "max"), ("low", "min"), ("close", "last"))


@dataclass(frozen=True)
class _Plan:
    every: int
    columns: tuple[tuple[str, str], ...]  # (column name, aggregation)
    start: int | None
    end: int | None
    fill: str | float | None


def _columns(agg: Any) -> tuple[tuple[str, str], ...]:
    names = [agg] if isinstance(agg, str) else agg
    if not isinstance(names, (list, tuple)) or not names:
        raise InvalidArgumentError(
            f"agg must be an aggregation name or a list of them, got {agg!r:.60}",
            hint="one of " + ", ".join(AGGREGATIONS),
        )
    columns: list[tuple[str, str]] = []
    for name in names:
        if not isinstance(name, str) or name not in AGGREGATIONS:
            raise InvalidArgumentError(
                f"unknown aggregation {name!r:.40}", hint="one of " + ", ".join(AGGREGATIONS)
            )
        if name == "ohlc":
            columns += _OHLC
        else:
            columns.append(("value" if isinstance(agg, str) else name, name))
    if len({c for c, _ in columns}) != len(columns):
        raise InvalidArgumentError(f"agg {agg!r:.60} names a column twice")
    return tuple(columns)


def _fill(fill: Any) -> str | float | None:
    if fill is None or fill in FILLS:
        return fill
    if isinstance(fill, Real) and not isinstance(fill, (bool, np.bool_)):
        return float(fill)
    raise InvalidArgumentError(
        f"unknown fill {fill!r:.40}", hint="None, 'ffill', 'linear' or a number"
    )


def _plan(every: Any, agg: Any, start: Any, end: Any, fill: Any) -> _Plan:
    step = parse_duration(every, "every")
    lo, hi = inputs.time_range(start, end)
    return _Plan(step, _columns(agg), lo, hi, _fill(fill))


def _numbers(key: str, chunks: Sequence[TailChunk]) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps and float64 values of a key's ordered timeline (views when one chunk)."""
    ts_parts, value_parts = [], []
    for c in chunks:
        values = c.values
        t = values.type
        if not (pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_null(t)):
            raise TypeMismatchError(
                f"cannot resample {key!r}: its history holds {t} values, not numbers"
            )
        if values.null_count or not pa.types.is_float64(t):
            values = values.cast(pa.float64(), safe=False).fill_null(np.nan)
        buf = values.buffers()[1]
        arr = np.frombuffer(buf, np.float64, count=values.offset + len(values))[values.offset :]
        ts_parts.append(c.ts)
        value_parts.append(arr)
    if not ts_parts:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    if len(ts_parts) == 1:
        return ts_parts[0], value_parts[0]
    return np.concatenate(ts_parts), np.concatenate(value_parts)


def _reduce(
    values: np.ndarray, nan: np.ndarray | None, starts: np.ndarray, ends: np.ndarray, how: str
) -> np.ndarray:
    """One aggregation of each non-empty segment ``values[starts[i]:ends[i]]``; ``nan``: the
    NaN mask of ``values`` if it has any NaN.

    ``reduceat`` returns ``values[i]`` for an empty segment, so it only sees non-empty ones.
    """
    if how == "count":
        if nan is None:
            return (ends - starts).astype(np.int64)
        return np.add.reduceat(~nan, starts).astype(np.int64)
    if how in ("sum", "mean"):
        clean = values if nan is None else np.where(nan, 0.0, values)
        sums = np.add.reduceat(clean, starts)
        if how == "sum":
            return sums
        counts = ends - starts if nan is None else np.add.reduceat(~nan, starts)
        with np.errstate(invalid="ignore", divide="ignore"):
            return sums / counts
    if how in ("min", "max"):
        ufunc: np.ufunc
        if nan is None:
            ufunc = np.minimum if how == "min" else np.maximum
        else:
            ufunc = np.fmin if how == "min" else np.fmax  # NaN only where all are NaN
        return ufunc.reduceat(values, starts)
    # first / last: of the non-NaN entries of each segment
    if nan is None:
        return values[starts] if how == "first" else values[ends - 1]
    valid = np.flatnonzero(~nan)
    out = np.full(len(starts), np.nan)
    if how == "first":
        pos = np.searchsorted(valid, starts, side="left")
        ok = pos < len(valid)
        ok[ok] = valid[pos[ok]] < ends[ok]
    else:
        pos = np.searchsorted(valid, ends, side="left") - 1
        ok = pos >= 0
        ok[ok] = valid[pos[ok]] >= starts[ok]
    out[ok] = values[valid[pos[ok]]]
    return out


def _buckets(ts: np.ndarray, plan: _Plan) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The buckets to return (bucket numbers) and the ``[starts, ends)`` rows of each."""
    every = plan.every
    bounded = plan.start is not None and plan.end is not None
    if plan.fill is not None and (len(ts) or bounded):
        first = plan.start // every if plan.start is not None else None
        last = (plan.end - 1) // every if plan.end is not None else None
        if first is None:
            first = int(ts[0]) // every if len(ts) else last
        if last is None:
            last = int(ts[-1]) // every if len(ts) else first
        assert first is not None and last is not None
        count = last - first + 1
        if count > MAX_BUCKETS:
            raise InvalidArgumentError(
                f"resampling by {every} us would fill {count:,} buckets (at most "
                f"{MAX_BUCKETS:,} per key)",
                hint="use a longer 'every' or a narrower start / end",
            )
        numbers = np.arange(max(count, 0), dtype=np.int64) + first
    elif not len(ts):
        numbers = np.empty(0, np.int64)
    else:
        first, last = int(ts[0]) // every, int(ts[-1]) // every
        if last - first < len(ts):
            numbers = np.arange(last - first + 1, dtype=np.int64) + first
        else:  # sparse: more possible buckets than entries, find the occupied ones
            ids = ts // every
            cuts = np.flatnonzero(ids[1:] != ids[:-1]) + 1
            numbers = ids[np.concatenate(([0], cuts))]
    if len(numbers) and int(numbers[0]) * every < _INT64_MIN:
        raise InvalidArgumentError(
            f"the first bucket of {every} us would start before the earliest representable "
            "time (int64 microseconds)",
            hint="use a shorter 'every'",
        )
    starts = np.searchsorted(ts, numbers * every, side="left")
    ends = np.empty_like(starts)
    ends[:-1] = starts[1:]
    if len(ends):
        # the row after the last bucket (entries after it were cut off by start / end)
        edge = (int(numbers[-1]) + 1) * every  # a Python int: it may pass the int64 range
        ends[-1] = len(ts) if edge > _INT64_MAX else np.searchsorted(ts, edge, side="left")
    return numbers, starts, ends


def _filled(column: np.ndarray, empty: np.ndarray, fill: str | float) -> tuple[np.ndarray, Any]:
    """The column with empty buckets filled, and its null mask (``None``: no nulls)."""
    if not empty.any():
        return column, None
    if isinstance(fill, float):
        out = column.copy()
        out[empty] = fill
        return out, None
    full = np.flatnonzero(~empty)
    if not len(full):
        return column, empty
    if fill == "ffill":
        prev = np.maximum.accumulate(np.where(empty, -1, np.arange(len(column))))
        nulls = prev < 0
        return column[np.maximum(prev, 0)], (nulls if nulls.any() else None)
    # linear, only between non-empty buckets
    x = np.arange(len(column), dtype=np.float64)
    out = np.interp(x, full.astype(np.float64), column[full])
    nulls = (x < full[0]) | (x > full[-1])
    return out, (nulls if nulls.any() else None)


def _one(ts: np.ndarray, values: np.ndarray, plan: _Plan) -> dict[str, Any]:
    """The buckets of one key: ``{"ts": starts, column: (values, null mask or None)}``."""
    numbers, starts, ends = _buckets(ts, plan)
    isnan = np.isnan(values)
    nan = isnan if isnan.any() else None
    full = ends > starts
    all_full = bool(full.all())
    s, e = (starts, ends) if all_full else (starts[full], ends[full])
    if plan.fill is None and not all_full:  # the grid was only a way to find the edges
        numbers, all_full = numbers[full], True
    result: dict[str, Any] = {"ts": numbers * plan.every}
    cache: dict[str, np.ndarray] = {}
    for name, how in plan.columns:
        if how not in cache:
            cache[how] = (
                _reduce(values, nan, s, e, how)
                if len(s)
                else np.empty(0, np.int64 if how == "count" else np.float64)
            )
        part = cache[how]
        if all_full:
            result[name] = (part, None)
            continue
        column = np.zeros(len(numbers), part.dtype)
        column[full] = part
        if how == "count":
            result[name] = (column, None)
        else:
            assert plan.fill is not None
            result[name] = _filled(column, ~full, plan.fill)
    return result


def _column(data: np.ndarray, mask: np.ndarray | None, arrow_type: pa.DataType) -> pa.Array:
    """An Arrow array over ``data`` (no copy), null where ``mask`` (built from buffers:
    ``pa.array`` imports pandas on its first call)."""
    data = np.ascontiguousarray(data)
    validity = None
    nulls = 0
    if mask is not None and mask.any():
        validity = pa.py_buffer(np.packbits(~mask, bitorder="little"))
        nulls = int(mask.sum())
    return pa.Array.from_buffers(
        arrow_type, len(data), [validity, pa.py_buffer(data)], null_count=nulls
    )


def _table(parts: list[tuple[str, dict[str, Any]]], plan: _Plan) -> pa.Table:
    fields = [pa.field("key", pa.string(), nullable=False), pa.field("ts", TS_TYPE, nullable=False)]
    keys = [key_array(k, len(p["ts"])) for k, p in parts] or [key_array("", 0)]
    stamps = [p["ts"] for _, p in parts] or [np.empty(0, np.int64)]
    arrays: list[pa.Array] = [pa.concat_arrays(keys), ts_array(np.concatenate(stamps))]
    for name, how in plan.columns:
        count = how == "count"
        columns = [p[name][0] for _, p in parts] or [np.empty(0, np.int64 if count else np.float64)]
        masks = [p[name][1] for _, p in parts]
        mask = None
        if any(m is not None for m in masks):
            mask = np.concatenate(
                [np.zeros(len(c), bool) if m is None else m for c, m in zip(columns, masks)]
            )
        arrow_type = pa.int64() if count else pa.float64()
        arrays.append(_column(np.concatenate(columns), mask, arrow_type))
        fields.append(pa.field(name, arrow_type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def resample(
    db: SnapshotSource,
    keys_or_pattern: str | Iterable[str],
    every: Any,
    agg: Any = "mean",
    *,
    start: Any = None,
    end: Any = None,
    fill: Any = None,
) -> pa.Table:
    """Aggregate the numeric keys named by ``keys_or_pattern`` into buckets of ``every``.

    ``keys_or_pattern``: a key, a glob pattern (as ``db.keys(pattern)``) or a list of keys
    (each must exist). See the module docstring for ``every``, ``agg``, ``start`` / ``end``,
    ``fill`` and the result. All keys are read from one snapshot of the database.
    """
    plan = _plan(every, agg, start, end, fill)
    snapshot, keys = select_named(db, keys_or_pattern)
    parts = []
    for key in sorted(keys):
        view: KeyView = snapshot.keys[key]
        ts, values = _numbers(key, view.timeline(plan.start, plan.end))
        parts.append((key, _one(ts, values, plan)))
    return _table(parts, plan)
