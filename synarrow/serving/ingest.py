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

from synarrow import inputs
from synarrow.db import check_key
from synarrow.errors import InvalidValueError

if TYPE_CHECKING:
    from synarrow.db import SynaDB

MAX_BATCH_BYTES = 64 << 20
MAX_PUT_BYTES = 1 << 30
# Staged parts of one key are joined into appends of up to this many rows (one log entry
# each): few entries and tail chunks per key, yet several for the encoding to spread over.
APPEND_ROWS = 1 << 20


class PutStager:
    """Collects the batches of one put, checking sizes and contents before anything is written.

    >>> import tempfile, pyarrow as pa, synarrow
    >>> db = synarrow.SynaDB(tempfile.mkdtemp() + "/data.db", sync_on_write=False)
    >>> stager = PutStager(key="sensor/1")
    >>> stager.add(pa.record_batch({"value": [1.5, 2.5]}))
    2
    >>> stager.commit(db), db.get("sensor/1")
    (2, 2.5)
    >>> db.close()
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
            self._stage(self.key, batch)
        else:
            if "key" not in names:
                raise InvalidValueError(
                    "without a key in the descriptor, batches need a 'key' column"
                )
            for key, part in _split_by_key(batch):
                self._stage(key, part)
        self.bytes += size
        self.rows += batch.num_rows
        return self.rows

    def _stage(self, key: str, part: pa.RecordBatch) -> None:
        check_key(key)
        values = part.column("value")
        ts = part.column("ts") if "ts" in part.schema.names else None
        plain = _as_numpy(values, ts)
        if plain is not None:
            self._parts.append((key, *plain))
            return
        if ts is not None and not pa.types.is_timestamp(ts.type):
            from synarrow.export import to_ts_column

            ts = to_ts_column(ts, "us")
        # Converted now so a bad value fails before any key is written.
        inputs.to_timestamps(ts, inputs.to_batch(values).count)
        self._parts.append((key, values, ts))

    def commit(self, db: SynaDB) -> int:
        """Append every staged part in one all-or-nothing write; returns the rows appended."""
        groups: dict[str, list[tuple[Any, Any]]] = {}
        for key, values, ts in self._parts:
            groups.setdefault(key, []).append((values, ts))
        self._parts.clear()
        items = [(key, *part) for key, parts in groups.items() for part in _merged(parts)]
        return db.append_batches(items)


def _split_by_key(batch: pa.RecordBatch) -> list[tuple[str, pa.RecordBatch]]:
    """``(key, rows)`` per key, in order of first appearance: zero-copy slices where each
    key's rows are contiguous (the usual layout), else after one stable sort by key."""
    keys = batch.column("key")
    if keys.null_count:
        raise InvalidValueError(f"the key column holds {keys.null_count} nulls")
    if not (pa.types.is_string(keys.type) or pa.types.is_large_string(keys.type)):
        keys = keys.cast(pa.string())
    if len(keys) == 0:
        return []
    n = len(keys)
    rest = batch.drop_columns(["key"])
    change = pc.not_equal(keys.slice(1), keys.slice(0, n - 1)).to_numpy(zero_copy_only=False)
    starts = np.concatenate([[0], np.flatnonzero(change) + 1])
    names = [keys[i].as_py() for i in starts.tolist()]
    if len(set(names)) != len(names):
        # Keys interleave: one stable sort by key (first appearance order) groups them.
        encoded = pc.dictionary_encode(keys)
        idx = encoded.indices.to_numpy(zero_copy_only=False)
        order = np.argsort(idx, kind="stable")
        rest = rest.take(pa.array(order))
        idx = idx[order]
        starts = np.concatenate([[0], np.flatnonzero(idx[1:] != idx[:-1]) + 1])
        names = encoded.dictionary.to_pylist()
        names = [names[i] for i in idx[starts].tolist()]
    ends = [*starts[1:].tolist(), n]
    return [(k, rest.slice(a, b - a)) for k, a, b in zip(names, starts.tolist(), ends)]


def _as_numpy(values: pa.Array, ts: pa.Array | None) -> tuple[np.ndarray, Any] | None:
    """Zero-copy numpy views of plain numbers and microsecond timestamps, or ``None`` when
    the part needs the full conversion (and its checks) instead."""
    if not _plainly_valid(values, ts):
        return None
    if ts is None:
        return values.to_numpy(zero_copy_only=True), None
    if ts.type.unit != "us":
        return None
    micros = ts.view(pa.int64()).to_numpy(zero_copy_only=True)
    if len(micros) and micros.min() == _NAT:
        return None  # NaT: the full conversion names it
    return values.to_numpy(zero_copy_only=True), micros


_NAT = np.iinfo(np.int64).min


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
    """Consecutive parts of one key joined where their types agree, up to
    :data:`APPEND_ROWS` rows each."""
    out: list[tuple[Any, Any]] = []
    run: list[tuple[Any, Any]] = []
    rows = 0

    def flush() -> None:
        if len(run) == 1:
            out.append(run[0])
        elif run:
            out.append((_joined([v for v, _ in run]), _joined([t for _, t in run])))
        run.clear()

    for values, ts in parts:
        if run and (
            rows + len(values) > APPEND_ROWS
            or (_kind(values), _kind(ts)) != (_kind(run[0][0]), _kind(run[0][1]))
        ):
            flush()
            rows = 0
        run.append((values, ts))
        rows += len(values)
    flush()
    return out


def _kind(col: Any) -> Any:
    if col is None:
        return None
    if isinstance(col, np.ndarray):
        return ("numpy", col.dtype)
    return ("arrow", col.type)


def _joined(cols: list[Any]) -> Any:
    if cols[0] is None:
        return None
    if isinstance(cols[0], np.ndarray):
        return np.concatenate(cols)
    return pa.chunked_array([c for col in cols for c in _chunks(col)], cols[0].type)


def _chunks(col: Any) -> list[Any]:
    return list(col.chunks) if isinstance(col, pa.ChunkedArray) else [col]


__all__ = ["MAX_BATCH_BYTES", "MAX_PUT_BYTES", "PutStager"]
