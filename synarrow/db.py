"""``SynaDB``: the user-facing store. Thin: it validates, converts and delegates to the engine.

The life of a write: ``append`` checks the value, and :class:`~synarrow.engine.engine.Engine`
encodes one log entry, appends it to the active segment (:class:`~synarrow.log.writer.LogWriter`),
records it in the key's in-memory state (so ``get`` is O(1)) and, past a size limit, rotates
the segment or starts a compaction that folds the log into memory-mapped Arrow files.
The life of a read: ``get`` returns the cached latest value (the entry with the greatest
timestamp, whatever order entries were written in); history reads take the key's timeline
ordered by timestamp (:meth:`~synarrow.engine.engine.Engine.timeline`: zero-copy slices of
the memory-mapped files for a compacted key, a range found by binary search) and build one
Arrow table (:func:`~synarrow.columnar.schema.history_table`); SQL, export and Flight read a
:meth:`SynaDB.read_snapshot`.

Opening (:mod:`synarrow.engine.recovery`) rebuilds the index from the columnar manifest plus
the log tail, cutting off a torn tail left by a crash before anything new is written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fnmatch
import os
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa

from synarrow import config as _config
from synarrow import frames, inputs, interop
from synarrow.columnar.schema import history_table
from synarrow.columnar.tags import check_tag
from synarrow.config import DbConfig
from synarrow.engine.engine import Engine
from synarrow.engine.snapshot import ReadSnapshot
from synarrow.errors import (
    CorruptionError,
    InvalidArgumentError,
    InvalidKeyError,
    InvalidValueError,
    TypeMismatchError,
)
from synarrow.handle import Handle
from synarrow.inputs import check_key
from synarrow.log import codec
from synarrow.log.format import MAX_VALUE_BYTES, Atom
from synarrow.log.memtable import UNLOADED
from synarrow.log.vectors import float32_values
from synarrow.reading import select_named

if TYPE_CHECKING:
    import duckdb

    from synarrow.snapshots import SnapshotDiff, SnapshotInfo

__all__ = ["SynaDB", "check_key", "open"]

_FLOAT = Atom.FLOAT
_INT = Atom.INT
_INT64_MIN = codec.INT64_MIN
_INT64_MAX = codec.INT64_MAX
_NP_FLOAT64 = np.float64
_NP_INT64 = np.int64


class SynaDB(Handle):
    """An embedded, durable, schema-free time-series store in a directory.

    >>> import synarrow, tempfile
    >>> with synarrow.SynaDB(tempfile.mkdtemp() + "/demo.db") as db:
    ...     _ = db.append("temperature", 23.5)
    ...     db.get("temperature")
    23.5

    Args:
        path: the database directory (created if missing).
        config: settings; ``None`` uses the ones stored in the database (or the defaults).
        readonly: open without the writer lock, so other processes can read while one writes.
            The handle sees the data as it was when opened.
        snapshot: read the database exactly as it was when :meth:`snapshot` made this tag
            (read-only: ``readonly`` may be left out, and ``readonly=False`` is refused);
            writers may go on, and compaction, deletes and retention never change what it
            reads. :class:`~synarrow.errors.SnapshotNotFoundError` if there is no such tag.
        repair: skip entries that fail their checksum in the middle of the log instead of
            raising :class:`~synarrow.errors.CorruptionError` (the skipped ranges are listed
            in ``stats()["repaired_ranges"]``).
        sync_on_write: override the stored ``sync_on_write`` for this handle only (it is
            never written back, so other handles keep the database's own setting).
        writers: override the stored ``writers`` for this handle only (``"single"``: refuse
            every other writer while this one is open, and be refused while one is).

    One ``SynaDB`` may be shared by threads. Several writers, in this or other processes,
    write one database at once (``DbConfig.writers``, ``"many"`` by default: each sees the
    others' entries, see :meth:`refresh`); under ``writers="single"`` a second writer gets
    :class:`~synarrow.errors.DatabaseLockedError`.
    """

    kind: ClassVar[str] = "database"

    def __init__(
        self,
        path: str | os.PathLike[str],
        config: DbConfig | None = None,
        *,
        readonly: bool | None = None,
        repair: bool = False,
        sync_on_write: bool | None = None,
        snapshot: str | None = None,
        writers: str | None = None,
    ) -> None:
        if snapshot is not None:
            check_tag(snapshot)
            if readonly is False:
                raise InvalidArgumentError(
                    f"snapshot {snapshot!r} is read-only: open it with readonly=True"
                )
            if repair:
                raise InvalidArgumentError("repair= does not apply to a snapshot (no log)")
            readonly = True
        readonly = bool(readonly)
        super().__init__(Path(path), readonly=readonly)
        _config.check_request(config, sync_on_write=sync_on_write, writers=writers)
        engine = self._engine = Engine(
            self.path,
            config,
            readonly=readonly,
            repair=repair,
            sync_on_write=sync_on_write,
            snapshot=snapshot,
            writers=writers,
        )
        self._tag_handles: dict[str, SynaDB] = {}  # snapshots opened for sql(snapshot=)
        self._tag_lock = threading.Lock()
        self.config: DbConfig = engine.config
        """The settings this handle uses (the stored ones, with this handle's overrides)."""
        self._states = engine.states  # the engine's own dict, read by the lock-free get()
        self._append_number = engine.append_number
        # Whether get() may have to take the locked path: while retention rules exist (it
        # checks expiry), and for a read-only handle that follows the writer (the locked path
        # refreshes it when due, and rules may appear: engine.lock_free says when);
        # kept here so a writer's lock-free path reads one attribute of its own.
        self._expiring = engine.has_retention or engine.follows
        self.mark_open()

    # -- writing -------------------------------------------------------------------------

    def append(self, key: str, value: Any, *, timestamp: Any = None) -> int:
        """Append ``value`` to the history of ``key``; returns the entry's sequence number.

        Values are atoms: ``None``, ``float``, ``int`` (int64), ``str``, ``bytes`` and 1-D
        float32 vectors (numpy arrays). ``bool`` is refused rather than silently stored as int.
        ``timestamp`` (default: now) is a ``datetime`` (naive means UTC), ``datetime64`` or
        int microseconds since the epoch. Sequence numbers grow by one per log entry across
        the life of the database.
        """
        ts = None if timestamp is None else inputs.to_timestamp_us(timestamp)
        t = type(value)
        if t is float or (t is int and _INT64_MIN <= value <= _INT64_MAX):
            return self._append_number(key, value, _FLOAT if t is float else _INT, ts)
        if t is _NP_FLOAT64:  # numpy scalars, as numpy code hands them over, skip the codec
            return self._append_number(key, float(value), _FLOAT, ts)
        if t is _NP_INT64:
            return self._append_number(key, int(value), _INT, ts)
        atom, payload, value = codec.encode_single(value)
        if atom == Atom.FLOAT or atom == Atom.INT:
            return self._append_number(key, value, atom, ts)
        return self._engine.append_atom(key, atom, payload, value, ts)

    def append_batch(self, key: str, values: Any, *, timestamps: Any = None) -> int:
        """Append many values of one type to ``key`` as batch entries; returns how many.

        ``values``: a numpy array (1-D numbers, or 2-D for vectors), an Arrow array, a list,
        a pandas / polars series. ``timestamps``: one per value (ints: microseconds since the
        epoch, ``datetime64``, Arrow timestamps or ``datetime`` objects; any order, late
        ones included), or ``None``: then the values get strictly increasing microseconds
        from now (now, now + 1 us, ...), and later appends without a timestamp come after
        the last of them. This is the fast path: one log entry per ``max_log_file_size``
        of values (within 64 MiB..1 GiB), written from the caller's buffers without an
        intermediate copy.
        """
        return self.append_batches([(key, values, timestamps)])

    def append_batches(self, items: Iterable[tuple[str, Any, Any]]) -> int:
        """Append several ``(key, values, timestamps)`` batches as one write; returns how many
        values.

        Each item is what :meth:`append_batch` takes. Every item is converted and checked
        before anything is written; the entries are then written in order under one lock, and
        if writing any of them fails the log is cut back to where the call began and no key
        changes. With several entries and LZ4 on, the LZ4 work runs on a few threads first.
        """
        staged = []
        for key, values, timestamps in items:
            check_key(key)
            batch = inputs.to_batch(values)
            staged.append((key, batch, inputs.to_timestamps(timestamps, batch.count)))
        return self._engine.append_batches(staged)

    def put_vectors(self, keys: Sequence[str], vectors: Any, *, timestamp: Any = None) -> int:
        """Append one float32 vector per key (the rows of ``vectors``); returns how many.

        The bulk form of ``put_vector`` for many keys: ``vectors`` is a 2-D array-like of
        ``len(keys)`` rows (numpy or nested lists of numbers); keys must be
        distinct. Each row is its own log entry, as ``put_vector`` writes it, but the call
        checks everything first, takes the lock once and, with ``sync_on_write``, syncs
        once: all entries or none are written. ``timestamp``: one for every row (default:
        now, now + 1 us, ...).
        """
        if isinstance(keys, str):
            raise InvalidKeyError("put_vectors takes a sequence of keys, got a single str")
        keys = list(keys)
        for key in keys:
            check_key(key)
        if len(set(keys)) != len(keys):
            raise InvalidArgumentError("put_vectors keys must be distinct")
        matrix = np.ascontiguousarray(float32_values(vectors, "vectors"))
        if matrix.ndim != 2 or matrix.shape[0] != len(keys) or not matrix.shape[1]:
            raise InvalidValueError(
                f"vectors have shape {matrix.shape}, expected ({len(keys)}, dimensions)"
            )
        if matrix.shape[1] * 4 > MAX_VALUE_BYTES:
            raise InvalidValueError(f"vectors of {matrix.shape[1]} dimensions are too large")
        ts = None if timestamp is None else inputs.to_timestamp_us(timestamp)
        return self._engine.append_vectors(keys, matrix, ts)

    def delete(self, key: str) -> bool:
        """Delete ``key`` and its whole history; returns whether it existed.

        A later ``append`` to the same key starts a new history. Space is reclaimed by
        ``compact()``.
        """
        return self._engine.delete(key)

    def wait_for_compaction(self, timeout: float | None = None) -> bool:
        """Wait until a running automatic compaction is done; ``False`` if ``timeout`` passed.

        Raises :class:`~synarrow.errors.CompactionError` (once) when an automatic compaction
        failed since the last explicit call; the log then still holds every entry.
        """
        return self._engine.compactor.wait(timeout)

    def refresh(self) -> bool:
        """Bring a read-only handle up to date with the writer; returns whether anything
        changed.

        A read-only handle (``readonly=True``) reads the state at open; ``refresh()`` makes
        it see every entry the writers have handed to the OS since (appends, batches,
        deletes, range deletes: ``flush()``, or each write with ``sync_on_write``) and every
        compaction they committed. A writer under ``DbConfig(writers="many")`` refreshes
        the same way, to see the other writers' entries (its own buffered ones stay
        buffered). Reads also do this by themselves at most every
        ``DbConfig.refresh_interval`` seconds (0.1 by default). An entry still being
        written is seen by a later refresh. Arrays and tables returned before stay valid.
        On a single writer (``writers="single"``) or a snapshot handle (``snapshot=``) it
        does nothing and returns ``False``.
        """
        self.require_open()
        return self._engine.refresh()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[SynaDB]:
        """Hold the log for this handle while the block runs: no other writer handle (of
        any process) writes meanwhile, and reads in the block see every entry the others
        wrote before it, so a read-modify-write (a counter, the next version number) is
        not interleaved with theirs. The block's writes are handed to the OS when it ends
        (``sync()`` in the block makes them durable). Keep it short: the other writers
        wait. On a single writer it only holds this handle's own lock; read-only handles
        get :class:`~synarrow.errors.ReadOnlyError`.
        """
        self.require_open()
        engine = self._engine
        engine.writable()
        with engine.lock, engine.turn:
            yield self

    def flush(self) -> None:
        """Hand buffered writes to the OS (they survive a crash of this process)."""
        self._engine.flush()

    def sync(self) -> None:
        """Make every write so far durable (survives power loss)."""
        self._engine.sync_all()

    # -- typed writes (SynaDB names) -------------------------------------------------------

    def put_float(self, key: str, value: float) -> int:
        """Append a float (ints are converted); see :meth:`append`."""
        if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, float, np.integer, np.floating)
        ):
            raise InvalidValueError(f"put_float needs a number, got {type(value).__name__}")
        return self.append(key, float(value))

    def put_int(self, key: str, value: int) -> int:
        """Append an int64; see :meth:`append`."""
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise InvalidValueError(f"put_int needs an int, got {type(value).__name__}")
        return self.append(key, int(value))

    def put_text(self, key: str, value: str) -> int:
        """Append a str; see :meth:`append`."""
        if not isinstance(value, str):
            raise InvalidValueError(f"put_text needs a str, got {type(value).__name__}")
        return self.append(key, value)

    def put_bytes(self, key: str, value: bytes | bytearray | memoryview) -> int:
        """Append bytes; see :meth:`append`."""
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise InvalidValueError(f"put_bytes needs bytes, got {type(value).__name__}")
        return self.append(key, bytes(value))

    def put_vector(self, key: str, value: Any) -> int:
        """Append a vector (any 1-D sequence of numbers, stored as float32)."""
        return self.append(key, Atom.vector(value))

    # -- reading -------------------------------------------------------------------------

    def get(self, key: str, default: Any = None, *, at: Any = None) -> Any:
        """The latest value of ``key`` (the entry with the greatest timestamp; of equal ones
        the last written, the first under ``duplicates="keep_first"``), or ``default`` if it
        is absent or deleted. O(1).

        ``at`` (a ``datetime``, ``datetime64``, int microseconds or ISO string): the latest
        value at or before that time instead, or ``default`` if there is none.
        """
        if at is not None:
            return _own(self._engine.value_at(key, inputs.to_time_bound(at, "at"), default))
        # Lock-free fast path: the latest value is one attribute, replaced atomically by
        # writers; a key being created, deleted or not decoded yet takes the locked path,
        # and so does every key while retention rules exist (its value may have expired),
        # and on a read-only handle that follows the writer once a refresh is due.
        st = self._states.get(key) if type(key) is str else None
        if st is not None and not self._closed and (not self._expiring or self._engine.lock_free):
            value = st.latest
            if st.latest_atom is not None and value is not UNLOADED:
                return value.copy() if type(value) is np.ndarray else value
        value = self._engine.latest(key, default)
        return value.copy() if isinstance(value, np.ndarray) else value

    def _typed(self, key: str, atom: Atom) -> Any:
        value = self._engine.latest_of(key, atom)
        return value.copy() if isinstance(value, np.ndarray) else value

    def get_float(self, key: str) -> float:
        """The latest value as a float; ``KeyNotFoundError`` / ``TypeMismatchError`` otherwise."""
        return self._typed(key, Atom.FLOAT)  # type: ignore[no-any-return]

    def get_int(self, key: str) -> int:
        """The latest value as an int; see :meth:`get_float`."""
        return self._typed(key, Atom.INT)  # type: ignore[no-any-return]

    def get_text(self, key: str) -> str:
        """The latest value as a str; see :meth:`get_float`."""
        return self._typed(key, Atom.TEXT)  # type: ignore[no-any-return]

    def get_bytes(self, key: str) -> bytes:
        """The latest value as bytes; see :meth:`get_float`."""
        return self._typed(key, Atom.BYTES)  # type: ignore[no-any-return]

    def get_vector(self, key: str) -> np.ndarray:
        """The latest value as a float32 vector (a copy); see :meth:`get_float`."""
        return self._typed(key, Atom.VECTOR)  # type: ignore[no-any-return]

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds a value (deleted keys do not)."""
        return self._engine.exists(key)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str) or not key:
            return False
        return self.exists(key)

    def __len__(self) -> int:
        return self._engine.live_count()

    def keys(self, pattern: str | None = None) -> list[str]:
        """Live keys in sorted order; ``pattern`` is a glob such as ``"sensor/*"``."""
        if pattern is not None and not isinstance(pattern, str):
            raise InvalidArgumentError(f"pattern must be a str, got {type(pattern).__name__}")
        live = self._engine.live_keys()
        if pattern is not None:
            if not any(c in pattern for c in "*?["):
                return [pattern] if pattern in live else []
            literal = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
            live = [k for k in live if k.startswith(literal) and fnmatch.fnmatchcase(k, pattern)]
        return sorted(live)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def get_history(
        self, key: str, start: Any = None, end: Any = None, *, last: int | None = None
    ) -> pa.Table:
        """The history of ``key``: a table ``ts`` (timestamp[us, UTC]), ``value``, ordered by
        timestamp (entries with equal timestamps in the order they were written).

        ``start`` / ``end`` restrict it to the half-open range ``[start, end)``: ``datetime``
        (naive means UTC), ``datetime64``, int microseconds since the epoch or ISO 8601
        strings (``"2024-05-01T12:00:00Z"``); ``last=N`` keeps only the final N entries
        (of the range). After compaction the columns are zero-copy views of the
        memory-mapped files, and a range is found by binary search.
        """
        return history_table(self._timeline(key, start, end, last))

    def _timeline(self, key: str, start: Any, end: Any, last: Any) -> list[Any]:
        if start is None and end is None and last is None:
            return self._engine.timeline(key)
        lo, hi = inputs.time_range(start, end)
        return self._engine.timeline(key, lo, hi, _check_last(last))

    def history_reader(
        self, key: str, start: Any = None, end: Any = None, *, last: int | None = None
    ) -> pa.RecordBatchReader:
        """The history as a RecordBatchReader (an Arrow C stream, one batch per chunk);
        ``start``, ``end`` and ``last`` as in :meth:`get_history`."""
        table = self.get_history(key, start, end, last=last)
        return pa.RecordBatchReader.from_batches(table.schema, table.to_batches())

    def get_history_floats(
        self, key: str, start: Any = None, end: Any = None, *, last: int | None = None
    ) -> np.ndarray:
        """The history of a numeric key as float64, ordered by timestamp (a read-only
        zero-copy view when compacted, of a range too); ``start``, ``end`` and ``last`` as
        in :meth:`get_history`.

        Int histories are converted (a copy; ints beyond 2**53 round, as with numpy's
        ``astype``). Other types raise ``TypeMismatchError``.
        """
        chunks = self._timeline(key, start, end, last)
        if len(chunks) == 1 and chunks[0].atom == Atom.FLOAT and not chunks[0].values.null_count:
            # The usual compacted case: one slice of a mapped file, viewed directly (the
            # view of a whole slice is kept on it; a range is a view of that).
            chunk = chunks[0]
            if chunk.numbers is None:
                chunk.numbers = interop.column_numpy(chunk.values)
            return chunk.numbers.view()  # a new view: callers may reshape theirs
        col = self._numeric_column(key, history_table(chunks))
        if col.type == pa.int64():
            # As numpy's astype: ints beyond 2**53 round to the nearest float64.
            col = col.cast(pa.float64(), safe=False)
        return interop.column_numpy(col)

    def get_history_tensor(
        self,
        key: str,
        start: Any = None,
        end: Any = None,
        *,
        last: int | None = None,
        dtype: Any = None,
    ) -> np.ndarray:
        """The history as a numpy array: 1-D for numbers, 2-D ``(n, dim)`` for vectors,
        ordered by timestamp; ``start``, ``end`` and ``last`` as in :meth:`get_history`.

        Zero-copy (read-only) when the history (or range) is one chunk of the requested
        dtype, as after compaction; ``dtype`` converts (a copy). The earlier form
        ``get_history_tensor(key, dtype)`` still works: a dtype (a numpy type, ``np.dtype``
        or a dtype name such as ``"float32"``) in second place is taken as ``dtype``, as no
        time is ever one of those.
        """
        if start is not None and end is None and dtype is None and _is_dtype(start):
            start, dtype = None, start
        table = self.get_history(key, start, end, last=last)
        col = table.column("value")
        t = col.type
        if pa.types.is_fixed_size_list(t):
            flat = interop.column_numpy(
                pa.chunked_array([c.flatten() for c in col.chunks], t.value_type)
                if col.num_chunks != 1
                else col.chunk(0).flatten()
            )
            arr = flat.reshape(len(col), t.list_size)
        elif t in (pa.float64(), pa.int64()) and col.null_count == 0:
            arr = interop.column_numpy(col)
        else:
            raise TypeMismatchError(
                f"history of {key!r} is {t}, not numbers or same-size vectors (or holds nulls)"
            )
        if dtype is not None and arr.dtype != np.dtype(dtype):
            if np.dtype(dtype).kind not in "fiu":
                raise InvalidArgumentError(f"dtype must be numeric, got {np.dtype(dtype)}")
            arr = interop.cast_checked(arr, np.dtype(dtype), f"history of {key!r}")
        return arr

    def _numeric_column(self, key: str, table: pa.Table) -> pa.ChunkedArray:
        col = table.column("value")
        if col.type not in (pa.float64(), pa.int64()):
            raise TypeMismatchError(f"history of {key!r} is {col.type}, not numbers")
        if col.null_count:
            raise TypeMismatchError(f"history of {key!r} holds {col.null_count} None values")
        return col

    # -- columnar, SQL and dataframes -----------------------------------------------------

    def compact(self, *, full: bool = False) -> dict[str, Any]:
        """Fold the log into columnar Arrow files; returns what was done.

        Afterwards each changed key's history is one zero-copy slice of a memory-mapped Arrow
        file, the log holds only entries written since, and the space of deleted keys is
        reclaimed. Only keys with new entries are rewritten (``full=True`` rewrites all).
        Writers are blocked only for the moment the log is switched to a new segment.

        If an automatic compaction failed since the last explicit call, this raises
        :class:`~synarrow.errors.CompactionError` about it first (once; the next call
        compacts). ``stats()["last_compaction_error"]`` keeps the message until a
        compaction succeeds.
        """
        return self._engine.compact(full=full)

    def sql(
        self, query: str, params: Iterable[Any] | None = None, *, snapshot: str | None = None
    ) -> pa.Table:
        """Run a DuckDB query over the views ``history`` (every key) and ``latest``.

        ``snapshot``: query that tag instead of the current state (the tag is opened once
        and kept open by this handle until it closes or drops the tag).

        >>> db.sql("SELECT time_bucket(INTERVAL '1 hour', ts) AS h, avg(value) AS v "
        ...        "FROM history WHERE key = 'temperature' GROUP BY h ORDER BY h"
        ...        ).column("v").to_pylist()
        [21.0, 22.0]
        """
        from synarrow.sql import run_sql

        if snapshot is not None:
            return run_sql(self._tag_handle(snapshot), query, params)
        return run_sql(self, query, params)

    def duckdb(self, *, external_access: bool = False) -> duckdb.DuckDBPyConnection:
        """A new DuckDB connection with the synarrow views registered; the caller closes it.

        The connection is sandboxed like ``db.sql``: no file access, no extension loading,
        settings locked. ``external_access=True`` opts this one connection into DuckDB's
        file functions (``read_csv``, ``COPY ... TO``, ``ATTACH`` ...).
        """
        from synarrow.sql import connect

        return connect(self, external_access=external_access)

    def export_dataset(
        self,
        uri: str | os.PathLike[str],
        format: str = "parquet",
        partition_by: str | None = "key",
        *,
        snapshot: str | None = None,
        **options: Any,
    ) -> Any:
        """Write the store as a Hive-partitioned Parquet (or Arrow) dataset for other engines,
        or commit a tag as a version of a Delta Lake table (``format="delta"``).

        ``uri`` is a local directory or any fsspec URI (Delta: a local directory); DuckDB,
        pyarrow.dataset, Dask, Ray and Spark read the result as is. ``snapshot``: export that
        tag's state (a Delta export needs one, unless this handle reads a tag); exporting
        the next tag to the same Delta table writes only the keys that changed.
        Options: see :func:`synarrow.export.export_dataset`.

        >>> db.export_dataset("out/", partition_by="key").rows
        4
        """
        from synarrow.export import export_dataset

        if snapshot is not None and snapshot != self.tag:
            self.require_open()
            check_tag(snapshot)
            with SynaDB(self.path, snapshot=snapshot) as at:
                return export_dataset(at, uri, format, partition_by, snapshot=snapshot, **options)
        return export_dataset(self, uri, format, partition_by, snapshot=snapshot, **options)

    def to_pandas(
        self, key: str, start: Any = None, end: Any = None, *, last: int | None = None
    ) -> Any:
        """The history as a pandas DataFrame (numeric columns without a copy when possible);
        ``start``, ``end`` and ``last`` as in :meth:`get_history`.

        A mixed-type history's ``value`` column is a pandas ``ArrowDtype`` struct column.
        """
        return interop.history_pandas(self.get_history(key, start, end, last=last))

    def to_polars(
        self, key: str, start: Any = None, end: Any = None, *, last: int | None = None
    ) -> Any:
        """The history as a polars DataFrame; ``start``, ``end`` and ``last`` as in
        :meth:`get_history`."""
        return interop.history_polars(self.get_history(key, start, end, last=last))

    def to_torch(
        self,
        key: str,
        device: str = "cpu",
        *,
        copy: bool = False,
        start: Any = None,
        end: Any = None,
        last: int | None = None,
    ) -> Any:
        """The history as a torch tensor (1-D numbers, 2-D vectors), ordered by timestamp;
        ``start``, ``end`` and ``last`` (keywords here) as in :meth:`get_history`.

        On the CPU the tensor shares memory with the (read-only) mapped file when the history
        is one chunk; torch cannot mark tensors read-only, so writing into it would crash the
        process. Pass ``copy=True`` for a tensor you may modify.
        """
        tensor = self.get_history_tensor(key, start=start, end=end, last=last)
        return interop.to_torch(tensor, device, copy=copy)

    # -- corrections and retention ---------------------------------------------------------

    def delete_range(self, key: str, start: Any = None, end: Any = None) -> int:
        """Remove the entries of ``key`` with ``start <= ts < end``; returns how many.

        ``start`` / ``end`` are what :meth:`get_history` takes (``None``: unbounded on that
        side, so ``delete_range(key)`` empties the key). The delete is one durable log entry
        (a range tombstone, synced like any write with ``sync_on_write``), visible at once;
        entries appended afterwards, in the range or not, stay. The count is of the
        entries reads showed in the range (``DbConfig.duplicates`` and retention applied);
        hidden ones (duplicates, expired points) in the range are removed too. A key left
        empty is no longer live, like a deleted one. A missing key, or a range holding no
        entry, removes 0 and writes nothing. Space is reclaimed by the next ``compact()``.
        """
        lo, hi = inputs.time_range(start, end)
        if hi == codec.INT64_MAX:
            # The log stores "no upper bound" as this value, so [start, 2**63-1) cannot be
            # told from [start, None) after a reopen.
            raise InvalidArgumentError(
                "end of 2**63 - 1 microseconds cannot be stored",
                hint="pass end=None for no upper bound",
            )
        return self._engine.delete_range(key, lo, hi)

    def set_retention(self, pattern: str, max_age: Any) -> None:
        """Expire the points of the keys matching ``pattern`` once older than ``max_age``.

        ``pattern`` is a glob as :meth:`keys` takes (``"sensor/*"``) or one key;
        ``max_age`` a ``timedelta``, ``numpy.timedelta64``, int microseconds or a duration
        string (``"30d"``, ``"12h"``, ``"10min"``, ``"90s"``; see
        :func:`synarrow.durations.parse_duration`); ``None`` removes the rule of
        ``pattern``. The rules are stored in the database (``retention.json``), so every
        handle, read-only ones included, and every later open applies them. A point is
        expired when ``ts < now - max_age`` at the moment of the read; when several patterns
        match a key, the shortest ``max_age`` wins. Expired points are left out of every
        read (``get`` returns the default once the latest is expired; a key with nothing
        left is not live) and dropped by the next ``compact()``.
        """
        from synarrow.durations import parse_duration

        age = None if max_age is None else parse_duration(max_age, "max_age")
        self._engine.set_retention(pattern, age)
        self._expiring = self._engine.has_retention or self._engine.follows

    def retention(self) -> dict[str, dt.timedelta]:
        """The retention rules: pattern -> maximum age (see :meth:`set_retention`)."""
        with self._engine.lock:
            self._engine.require_open()
            rules = self._engine.retention.rules
        return {p: dt.timedelta(microseconds=us) for p, us in sorted(rules.items())}

    # -- resampling (issue 14) -------------------------------------------------------------

    def resample(
        self,
        keys_or_pattern: str | Iterable[str],
        every: Any,
        agg: str | Iterable[str] = "mean",
        *,
        start: Any = None,
        end: Any = None,
        fill: Any = None,
    ) -> pa.Table:
        """Numeric histories aggregated into time buckets of ``every``, as one Arrow table
        ``key``, ``ts`` (bucket start, UTC epoch multiples of ``every``), ``value``.

        ``keys_or_pattern``: a key, a glob pattern or a list of keys; ``every``: a
        ``timedelta``, ``numpy.timedelta64``, int microseconds or ``"10s"`` / ``"1min"`` /
        ``"1h"`` / ``"1d"``; ``agg``: mean, sum, min, max, count, first, last, ohlc (or a
        list: one column each); ``start`` / ``end``: the half-open range read; ``fill``:
        ``None`` (non-empty buckets only), ``"ffill"``, ``"linear"`` or a number for empty
        buckets. Computed with numpy on the ordered, zero-copy history (see
        :mod:`synarrow.resample`).

        >>> db.resample("temperature", "1h").column("value").to_pylist()
        [21.0, 22.0]
        """
        from synarrow.resample import resample

        return resample(self, keys_or_pattern, every, agg, start=start, end=end, fill=fill)

    # -- frames: append_table / read_table (issue 14) ---------------------------------------

    def append_table(
        self,
        data: Any,
        *,
        key: str | None = "key",
        ts: str | None = "ts",
        value: str = "value",
        prefix: str | None = None,
    ) -> int:
        """Append every row of a frame in one all-or-nothing call; returns how many values.

        ``data``: a pandas or polars DataFrame, a pyarrow Table, RecordBatch or
        RecordBatchReader, or any object with ``__arrow_c_stream__``. Long format (the
        default): one row per point, the key in column ``key``, the time in ``ts`` and the
        value in ``value``; each key's rows become that key's batch, in the frame's order.
        Wide format (``key=None``): every column except ``ts`` is a key (``prefix`` + the
        column name); a pandas ``DatetimeIndex`` serves as ``ts`` when no such column exists.
        ``prefix`` is put before every key in both formats.

        ``ts`` holds Arrow timestamps of any unit and zone, ``datetime64``, ISO strings or int
        microseconds since the epoch (finer units are truncated to microseconds); ``ts=None``
        gives the rows the default timestamps of :meth:`append_batch`. A value column holds one
        type (floats, ints, text, bytes or same-size vectors); float NaN is a value, nulls are
        refused. Missing columns, null keys or times, null values, mixed types in one column
        and empty keys raise a :class:`~synarrow.errors.SynaError` subclass naming the column,
        and nothing is written.

        >>> frame = pa.table({"key": ["a", "b", "a"], "ts": [1, 2, 3], "value": [1.0, 2.0, 3.0]})
        >>> db.append_table(frame)
        3
        """
        staged = frames.stage_table(data, key=key, ts=ts, value=value, prefix=prefix)
        return self._engine.append_batches(staged)

    def read_table(
        self,
        keys_or_pattern: str | Iterable[str],
        start: Any = None,
        end: Any = None,
        *,
        last: int | None = None,
    ) -> pa.Table:
        """The histories of many keys as one long Arrow table ``key``, ``ts``, ``value``.

        ``keys_or_pattern``: a key, a glob such as ``"sensor/*"`` or a list of keys (each must
        exist). Keys come in sorted order, each key's rows ordered by timestamp as
        :meth:`get_history` gives them, restricted to ``[start, end)`` and then to each key's
        final ``last`` rows, all from one snapshot. ``value`` keeps the type the keys share;
        keys of different types give the struct column a mixed-type history has (one field
        per type). For keys of one value type without ``None`` values,
        ``append_table(db.read_table(...))`` writes the same histories again; a struct
        column or nulls are refused by ``append_table`` (append those one by one).

        >>> db.read_table(["b", "a"]).to_pydict()["key"]
        ['a', 'a', 'b']
        """
        lo, hi = inputs.time_range(start, end)
        last = _check_last(last)
        snapshot, keys = select_named(self, keys_or_pattern)
        return frames.long_table(snapshot, sorted(keys), lo, hi, last)

    # -- life cycle ------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counts and sizes: keys, entries, log bytes, columnar bytes and files, and more."""
        return self._engine.stats()

    @property
    def next_sequence(self) -> int:
        """The sequence number the next log entry will get (it grows with every write)."""
        return self._engine.next_seq

    @property
    def data_version(self) -> tuple[int, int]:
        """``(next_sequence, columnar generation)``: it changes whenever what a reader would
        see may have changed (a write, a delete, a compaction)."""
        return self._engine.data_version

    def read_snapshot(self, keys: Iterable[str] | None = None) -> ReadSnapshot:
        """An immutable view of the live keys' histories (or of ``keys`` only), taken now.

        No data is copied; writers may go on while the snapshot is read. This is the seam
        through which SQL, export and Flight read the database.
        """
        return self._engine.read_snapshot(keys)

    # -- snapshots -----------------------------------------------------------------------

    @property
    def tag(self) -> str | None:
        """The snapshot this handle reads (``SynaDB(path, snapshot=...)``), or ``None``."""
        return self._engine.tag

    def snapshot(self, tag: str, *, note: str | None = None) -> SnapshotInfo:
        """Make ``tag`` a named, immutable version of the whole database as of now.

        The log is folded into columnar files first (only when it holds something since the
        last compaction), then the committed files are pinned: no data is copied, so it costs
        about the metadata. Every key's history, vectors and tensors included, reads the
        same at that tag forever (``SynaDB(path, snapshot=tag)``), whatever is written,
        deleted, compacted or expires later. A crash leaves the tag whole or absent.

        ``tag``: 1 to 128 ASCII letters, digits, ``.``, ``_``, ``-`` (starting with a letter or
        digit); :class:`~synarrow.errors.SnapshotExistsError` if it exists (also when it
        differs only in case). ``note``: free text kept with it.
        """
        record = self._engine.snapshot(tag, note)
        try:
            return next(i for i in self.snapshots() if i.tag == record.tag)
        except CorruptionError:
            # Another record is unreadable: the tag is made all the same, and while that
            # record stays unreadable no drop removes a file, so none is this tag's alone.
            from synarrow.snapshots import infos

            info = infos([record], self._engine.current_manifest())[0]
            return dataclasses.replace(info, exclusive_bytes=0)

    def snapshots(self) -> list[SnapshotInfo]:
        """Every snapshot, oldest first: tag, time, note, keys, entries and sizes."""
        from synarrow.snapshots import infos

        return infos(self._engine.snapshots(), self._engine.current_manifest())

    def drop_snapshot(self, tag: str) -> None:
        """Remove ``tag``; the files only it kept are deleted at once.

        :class:`~synarrow.errors.SnapshotInUseError` while any handle (in this or another
        process) reads the tag; :class:`~synarrow.errors.SnapshotNotFoundError` if there is
        no such tag. A crash leaves the tag whole or gone (files it alone kept are then
        removed by the next writable open).
        """
        with self._tag_lock:
            mine = self._tag_handles.pop(tag, None) if isinstance(tag, str) else None
        if mine is not None:
            mine.close()
        self._engine.drop_snapshot(tag)

    def diff_snapshots(self, a: str | None, b: str | None = None) -> SnapshotDiff:
        """What changed from tag ``a`` to tag ``b`` (``None``: this handle's current
        state): keys added, removed and changed, with their entry counts. Keys whose stored
        slices are the same in both are compared without reading their data."""
        from synarrow.snapshots import diff_reads

        opened: list[SynaDB] = []
        try:
            reads = []
            for tag in (a, b):
                if tag is None or tag == self.tag:  # what this handle reads: not reopened
                    reads.append(self.read_snapshot())
                else:
                    other = SynaDB(self.path, snapshot=tag)
                    opened.append(other)
                    reads.append(other.read_snapshot())
            return diff_reads(reads[0], reads[1], a, b)
        finally:
            for other in opened:
                other.close()

    def _tag_handle(self, tag: str) -> SynaDB:
        """A handle on ``tag`` kept open by this one (for ``sql(snapshot=)``)."""
        self.require_open()
        check_tag(tag)
        with self._tag_lock:
            handle = self._tag_handles.get(tag)
            if handle is None or handle.closed:
                handle = self._tag_handles[tag] = SynaDB(self.path, snapshot=tag)
            return handle

    def describe(self) -> str:
        """``database PATH``, and the tag it reads."""
        tag = self._engine.tag if hasattr(self, "_engine") else None
        return super().describe() + ("" if tag is None else f" at snapshot {tag!r}")

    def release(self) -> None:
        """Wait for a background compaction, close the log writer (durably) and release the
        lock and the mapped files."""
        with self._tag_lock:
            handles = list(self._tag_handles.values())
            self._tag_handles.clear()
        for handle in handles:
            handle.close()
        self._engine.close()


def _own(value: Any) -> Any:
    """A value handed to the caller: vectors are copied (the cached one stays intact)."""
    return value.copy() if isinstance(value, np.ndarray) else value


def _is_dtype(value: Any) -> bool:
    """Whether ``value`` names a numpy dtype (and so cannot be a time)."""
    if isinstance(value, (type, np.dtype)):
        return True
    if isinstance(value, str) and not value[:1].isdigit():
        try:
            np.dtype(value)
        except TypeError:
            return False
        return True
    return False


def _check_last(last: Any) -> int | None:
    """``last=`` of a history read: ``None`` or an int >= 0."""
    if last is None:
        return None
    if isinstance(last, (bool, np.bool_)) or not isinstance(last, (int, np.integer)) or last < 0:
        raise InvalidArgumentError(f"last must be an int >= 0, got {last!r:.40}")
    return int(last)


def open(
    path: str | os.PathLike[str],
    *,
    readonly: bool = False,
    repair: bool = False,
    snapshot: str | None = None,
    **config: Any,
) -> SynaDB:
    """Open (or create) a database; keyword arguments other than the flags are DbConfig fields.

    They are applied to the stored settings and stored (use ``SynaDB(path, sync_on_write=...)``
    for a setting of one handle only).

    >>> import synarrow
    >>> db = synarrow.open("data.db", sync_on_write=False)
    >>> db.config.sync_on_write
    False
    >>> db.close()
    """
    cfg = _config.stored_with(Path(path), **config) if config else None
    if snapshot is not None:
        return SynaDB(path, cfg, readonly=readonly or None, repair=repair, snapshot=snapshot)
    return SynaDB(path, cfg, readonly=readonly, repair=repair)
