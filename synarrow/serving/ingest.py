"""Appends sent by network clients: bounded in size, checked whole, then written all together.

A put (plain Flight ``do_put`` or Flight SQL ``CommandStatementIngest``) is staged first:
every batch is size-checked as it arrives, split by key, and its keys, values and
timestamps are converted and validated. Only when the whole stream has arrived and passed
are the keys appended, so a bad row anywhere means nothing is written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from synarrow import _arrow
from synarrow.db import check_key
from synarrow.errors import InvalidValueError

if TYPE_CHECKING:
    from synarrow.db import SynaDB

MAX_BATCH_BYTES = 64 << 20
MAX_PUT_BYTES = 1 << 30


class PutStager:
    """Collects the batches of one put, checking sizes and contents before anything is written.

    >>> stager = PutStager(key="sensor/1")                       # doctest: +SKIP
    >>> stager.add(batch); stager.commit(db)
    """

    def __init__(
        self,
        *,
        key: str | None = None,
        max_batch_bytes: int = MAX_BATCH_BYTES,
        max_put_bytes: int = MAX_PUT_BYTES,
    ) -> None:
        if key is not None:
            check_key(key)
        self.key = key
        self.max_batch_bytes = max_batch_bytes
        self.max_put_bytes = max_put_bytes
        self.bytes = 0
        self.rows = 0
        self._parts: list[tuple[str, Any, Any]] = []

    def add(self, batch: pa.RecordBatch) -> int:
        """Check one incoming batch and stage its rows; returns the rows staged so far."""
        size = batch.nbytes
        if size > self.max_batch_bytes:
            raise InvalidValueError(
                f"a put batch of {size:,} bytes is over this server's limit of "
                f"{self.max_batch_bytes:,}",
                hint="send smaller batches (write_table(..., max_chunksize=...))",
            )
        if self.bytes + size > self.max_put_bytes:
            raise InvalidValueError(
                f"this put is over the server's limit of {self.max_put_bytes:,} bytes per call",
                hint="split the data over several puts",
            )
        names = batch.schema.names
        if "value" not in names:
            raise InvalidValueError(f"a put batch needs a 'value' column, got {names}")
        if self.key is not None:
            self._stage(self.key, pa.Table.from_batches([batch]))
        else:
            if "key" not in names:
                raise InvalidValueError(
                    "without a key in the descriptor, batches need a 'key' column"
                )
            for key, part in _split_by_key(pa.Table.from_batches([batch])):
                self._stage(key, part)
        self.bytes += size
        self.rows += batch.num_rows
        return self.rows

    def _stage(self, key: str, table: pa.Table) -> None:
        check_key(key)
        values = table.column("value")
        ts = table.column("ts") if "ts" in table.schema.names else None
        if ts is not None and not pa.types.is_timestamp(ts.type):
            from synarrow.export import to_ts_column

            ts = to_ts_column(ts, "us")
        if not _plainly_valid(values, ts):
            # Converted now so a bad value fails before any key is written.
            _arrow.to_timestamps(ts, _arrow.to_batch(values).count)
        self._parts.append((key, values, ts))

    def commit(self, db: SynaDB) -> int:
        """Append every staged part; returns the rows appended."""
        groups: dict[str, list[tuple[Any, Any]]] = {}
        for key, values, ts in self._parts:
            groups.setdefault(key, []).append((values, ts))
        self._parts.clear()
        total = 0
        for key, parts in groups.items():
            for values, ts in _merged(parts):
                total += db.append_batch(key, values, timestamps=ts)
        return total


def _split_by_key(table: pa.Table) -> list[tuple[str, pa.Table]]:
    """``(key, rows)`` per key: slices where each key's rows are contiguous (the usual
    layout, no copy), else grouped by :func:`synarrow.export.split_by_key`."""
    keys = table.column("key")
    if keys.null_count:
        raise InvalidValueError(f"the key column holds {keys.null_count} nulls")
    if not (pa.types.is_string(keys.type) or pa.types.is_large_string(keys.type)):
        keys = keys.cast(pa.string())
    keys = keys.combine_chunks()
    n = len(keys)
    if n == 0:
        return []
    change = pc.not_equal(keys.slice(1), keys.slice(0, n - 1))
    starts = np.concatenate([[0], np.flatnonzero(change.to_numpy(zero_copy_only=False)) + 1])
    names = [keys[int(i)].as_py() for i in starts]
    if len(set(names)) != len(names):
        from synarrow.export import split_by_key

        return list(split_by_key(table))
    ends = [*starts[1:], n]
    rest = table.drop_columns(["key"])
    return [(k, rest.slice(int(a), int(b - a))) for k, a, b in zip(names, starts, ends)]


def _plainly_valid(values: Any, ts: Any) -> bool:
    """Numbers without nulls, and timestamps without nulls: nothing append_batch refuses."""
    kind = values.type
    numeric = (pa.types.is_floating(kind) and not pa.types.is_float16(kind)) or (
        pa.types.is_integer(kind) and not pa.types.is_uint64(kind)
    )
    if not numeric or values.null_count:
        return False
    # Nanoseconds may not convert to microseconds exactly: those are checked in full.
    return ts is None or (
        pa.types.is_timestamp(ts.type) and ts.type.unit != "ns" and not ts.null_count
    )


def _merged(parts: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """Consecutive parts of one key joined into one append where their types agree."""
    out: list[tuple[Any, Any]] = []
    run: list[tuple[Any, Any]] = []

    def flush() -> None:
        if len(run) == 1:
            out.append(run[0])
        elif run:
            values = pa.chunked_array([c for v, _ in run for c in _chunks(v)], run[0][0].type)
            if run[0][1] is None:
                out.append((values, None))
            else:
                ts = pa.chunked_array([c for _, t in run for c in _chunks(t)], run[0][1].type)
                out.append((values, ts))
        run.clear()

    for values, ts in parts:
        if run:
            v0, t0 = run[0]
            same = values.type == v0.type and (ts is None) == (t0 is None)
            if not same or (ts is not None and ts.type != t0.type):
                flush()
        run.append((values, ts))
    flush()
    return out


def _chunks(col: Any) -> list[Any]:
    return list(col.chunks) if isinstance(col, pa.ChunkedArray) else [col]


__all__ = ["MAX_BATCH_BYTES", "MAX_PUT_BYTES", "PutStager"]
