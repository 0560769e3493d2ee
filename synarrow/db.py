"""``SynaDB``: the user-facing store. Thin: it composes the log, the index and the columnar files.

The life of a write, in one screen:

1. ``append`` validates the key and value and encodes one log entry (delta / LZ4 per config);
2. the :class:`~synarrow.log.writer.LogWriter` appends it to the active segment, and with
   ``sync_on_write`` the call returns only after an fsync (shared with concurrent writers);
3. the key's :class:`~synarrow.log.memtable.KeyState` records the value in Arrow-ready buffers
   and caches it as the latest value, so ``get`` is O(1);
4. later ``compact`` (by hand or by ``auto_compact``) folds the log tail into memory-mapped
   Arrow IPC files (:mod:`synarrow.columnar`), and the log keeps only what came after.

Opening rebuilds the index from the columnar manifest plus the log tail, cutting off a torn
tail left by a crash before anything new is written.
"""

from __future__ import annotations

import builtins
import fnmatch
import logging
import os
import re
import struct
import threading
import time
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa

from synarrow import config as _config
from synarrow import inputs, interop
from synarrow.columnar.schema import history_table
from synarrow.columnar.store import ColumnarStore
from synarrow.config import DbConfig
from synarrow.engine.snapshot import KeyView, ReadSnapshot
from synarrow.errors import (
    CompactionError,
    CorruptionError,
    DatabaseClosedError,
    InvalidArgumentError,
    InvalidKeyError,
    InvalidPathError,
    InvalidValueError,
    KeyNotFoundError,
    ReadOnlyError,
    TypeMismatchError,
)
from synarrow.fileio import (
    create_exclusive,
    lstat_regular,
    open_fd,
    remove_file,
    require_directory,
    require_single_link,
    temporary_pattern,
)
from synarrow.handle import Handle
from synarrow.log import codec
from synarrow.log.format import (
    CRC,
    ENTRY_BODY_HEADER,
    ENTRY_HEADER_SIZE,
    FLAG_BATCH,
    FLAG_DELTA,
    FLAG_LZ4,
    FLAG_TOMBSTONE,
    FORMAT_VERSION,
    MAX_KEY_BYTES,
    MAX_VALUE_BYTES,
    Atom,
    encode_entry,
    encode_entry_parts,
    flags_byte,
)
from synarrow.log.lock import WriterLock
from synarrow.log.memtable import UNLOADED, KeyState, TailChunk, last_value, values_array
from synarrow.log.names import list_log_dir
from synarrow.log.reader import never_written, scan_segment
from synarrow.log.replay import replay_segment
from synarrow.log.sidecar import remove_sidecar
from synarrow.log.writer import LogWriter, segment_path

if TYPE_CHECKING:
    import duckdb

__all__ = ["BATCH_CHUNK_BYTES", "SynaDB", "check_key", "open"]

_logger = logging.getLogger("synarrow")
_MARKER = "SYNARROW"
_OWN_FILES = {"LOCK", "log", "columnar", "config.json", "config.json.tmp"}
_CONFIG_TEMPORARY = temporary_pattern(_config.CONFIG_NAME)
# The most value bytes one batch log entry holds; append_batch splits larger batches over
# several entries (cut out whole on failure). Module-level so tests can lower it.
BATCH_CHUNK_BYTES = 64 * 1024 * 1024
_time_ns = time.time_ns
_pack_d = struct.Struct("<d").pack
_pack_q = struct.Struct("<q").pack
_pack_body = ENTRY_BODY_HEADER.pack
_pack_crc = CRC.pack
_crc32 = zlib.crc32
_FLOAT = Atom.FLOAT
_INT = Atom.INT
_INT64_MIN = codec.INT64_MIN
_INT64_MAX = codec.INT64_MAX
# Every this many delta entries a key gets an absolute one, so damage repaired away costs
# at most that many following entries of each key.
_DELTA_RESTART = 31


def check_key(key: object) -> bytes:
    """Validate a key; returns its UTF-8 bytes or raises :class:`InvalidKeyError`."""
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
        repair: skip entries that fail their checksum in the middle of the log instead of
            raising :class:`~synarrow.errors.CorruptionError` (the skipped ranges are listed
            in ``stats()["repaired_ranges"]``).
        sync_on_write: override the stored ``sync_on_write`` for this handle only (it is
            never written back, so other handles keep the database's own setting).

    One ``SynaDB`` may be shared by threads. A second writer on the same directory, in this
    or another process, gets :class:`~synarrow.errors.DatabaseLockedError`.
    """

    kind: ClassVar[str] = "database"

    def __init__(
        self,
        path: str | os.PathLike[str],
        config: DbConfig | None = None,
        *,
        readonly: bool = False,
        repair: bool = False,
        sync_on_write: bool | None = None,
    ) -> None:
        super().__init__(Path(path), readonly=readonly)
        if sync_on_write is not None and not isinstance(sync_on_write, bool):
            raise InvalidArgumentError(
                f"sync_on_write must be a bool or None, got {type(sync_on_write).__name__}"
            )
        self._lock = threading.RLock()
        self._keys: dict[str, KeyState] = {}
        self._writer: LogWriter | None = None
        self._writer_lock: WriterLock | None = None
        self._compacting = threading.Lock()
        self._auto_thread: threading.Thread | None = None
        self._compaction_error: BaseException | None = None  # the last failed auto compaction
        self._compaction_error_pending = False  # not yet raised by an explicit call
        self._repaired: list[tuple[str, int, int]] = []
        self._dropped_in_repair = 0
        self._last_ts = 0  # the latest timestamp this handle chose (see _now)
        self._torn_bytes = 0
        self._log_bytes_closed = 0
        self._prepare_directory()
        try:
            self.config = self._load_config(config)
            if sync_on_write is not None:
                # The handle's own setting: config.json keeps the database's.
                self.config = self.config.replace(sync_on_write=sync_on_write)
            self._sync = self.config.sync_on_write
            self._delta = self.config.delta
            self._buffer_bytes = self.config.write_buffer_bytes
            self._check_at = 0
            self._columnar = ColumnarStore(
                self.path / "columnar", readonly=readonly, verify=self.config.verify
            )
            self._load(repair)
        except BaseException:
            self._release_files()
            raise
        self.mark_open()

    # -- opening -------------------------------------------------------------------------

    def _prepare_directory(self) -> None:
        p = self.path
        if p.exists() and not p.is_dir():
            raise InvalidPathError(f"{p} exists and is not a directory; refusing to touch it")
        if self.readonly:
            if not os.path.lexists(p / _MARKER):
                raise InvalidPathError(f"{p} is not a synarrow database")
            lstat_regular(p / _MARKER, what="database marker")
            _require_own_directories(p)
            return
        try:
            if p.is_dir():
                names = {c.name for c in p.iterdir()}
                # Another process may be creating this database right now: its own files
                # (the lock first) appear before the marker.
                foreign = {n for n in names - _OWN_FILES if not _CONFIG_TEMPORARY.fullmatch(n)}
                if _MARKER not in names and foreign:
                    raise InvalidPathError(
                        f"{p} is a non-empty directory that is not a synarrow database"
                    )
            else:
                p.mkdir(parents=True, exist_ok=True)
            self._writer_lock = WriterLock(p)
            self._writer_lock.acquire()
            _require_own_directories(p)
            (p / "log").mkdir(exist_ok=True)
            marker = p / _MARKER
            if os.path.lexists(marker):
                lstat_regular(marker, what="database marker")
            else:
                create_exclusive(
                    marker, f"synarrow database, log format {FORMAT_VERSION}\n".encode()
                )
            for name in os.listdir(p):
                if _CONFIG_TEMPORARY.fullmatch(name):
                    remove_file(p / name)  # left by a crash while config.json was replaced
        except PermissionError as exc:
            raise ReadOnlyError(f"cannot write to {p}: {exc.strerror}") from exc
        except BaseException:
            self._release_files()
            raise

    def _load_config(self, config: DbConfig | None) -> DbConfig:
        stored = _config.read_stored(self.path)
        if config is not None and not isinstance(config, DbConfig):
            raise InvalidArgumentError(f"config must be a DbConfig, got {type(config).__name__}")
        chosen = config or stored or DbConfig()
        if not self.readonly and chosen != stored:
            _config.write_stored(self.path, chosen)
        return chosen

    def _state_for(self, key_bytes: bytes) -> KeyState:
        key = key_bytes.decode("utf-8")
        st = self._keys.get(key)
        if st is None:
            st = self._keys[key] = KeyState(key, key_bytes)
        return st

    def _load(self, repair: bool) -> None:
        manifest = self._columnar.manifest
        for key, refs in self._columnar.load_keys():
            self._state_for(key.encode("utf-8")).set_base(refs)  # type: ignore[arg-type]
        log_dir = self.path / "log"
        listing = list_log_dir(log_dir)  # refuses links and names synarrow does not write
        segments = listing.segments
        if not self.readonly:
            for seg in [s for s in segments if s < manifest.first_segment]:
                remove_file(segment_path(log_dir, seg))  # folded into columnar files already
                remove_sidecar(segment_path(log_dir, seg))
            for tmp in listing.temporaries:
                remove_file(tmp)
        segments = [s for s in segments if s >= manifest.first_segment]
        next_seq = manifest.next_seq
        last_scan = None
        for i, seg in enumerate(segments):
            path = segment_path(log_dir, seg)
            is_last = i == len(segments) - 1
            try:
                scan = scan_segment(
                    path, repair=repair, max_log_file_size=self.config.max_log_file_size
                )
            except CorruptionError:
                if not (is_last and never_written(path)):
                    raise
                # A crash while this segment was being started: it never held an entry.
                if not self.readonly:
                    remove_file(path)
                break
            if scan.torn_bytes and not is_last and not repair:
                raise CorruptionError(
                    f"log segment {path} ends in {scan.torn_bytes} damaged bytes but is not "
                    "the last segment"
                )
            replay_segment(scan, self._state_for)
            self._repaired.extend((str(path), a, b) for a, b in scan.skipped)
            self._dropped_in_repair += scan.dropped
            next_seq = scan.base_seq + len(scan.offsets)
            if not is_last:
                self._log_bytes_closed += scan.file_size
            last_scan = scan
        self._next_seq = next_seq
        if self.readonly:
            return
        self._finish_open(last_scan, manifest, log_dir, next_seq)
        self._update_check_at()

    def _finish_open(self, last_scan: Any, manifest: Any, log_dir: Path, next_seq: int) -> None:
        """Open the writer: continue the last segment after its verified end, or start one.

        A torn tail is cut off first, so no new entry ever lands behind garbage.
        """
        if last_scan is not None and last_scan.torn_bytes:
            self._torn_bytes = last_scan.torn_bytes
            fd = open_fd(last_scan.path, os.O_WRONLY, what="log segment")
            try:
                require_single_link(fd, last_scan.path, what="log segment")
                os.ftruncate(fd, last_scan.valid_end)
                os.fsync(fd)
            finally:
                os.close(fd)
            last_scan.size = last_scan.valid_end
            last_scan.unread = 0
        if last_scan is not None and last_scan.size < self.config.max_log_file_size:
            self._writer = LogWriter(
                log_dir,
                last_scan.segment,
                last_scan.base_seq,
                existing_size=last_scan.valid_end,
                buffer_bytes=self.config.write_buffer_bytes,
                existing_offsets=last_scan.offsets.tolist(),
            )
        else:
            if last_scan is not None:
                self._log_bytes_closed += last_scan.size
            seg = (last_scan.segment + 1) if last_scan is not None else manifest.first_segment
            self._writer = LogWriter(
                log_dir,
                seg,
                next_seq,
                existing_size=None,
                buffer_bytes=self.config.write_buffer_bytes,
            )

    # -- writing -------------------------------------------------------------------------

    def _writable(self) -> LogWriter:
        if self._closed:
            raise DatabaseClosedError(f"database {self.path} is closed")
        if self._writer is None:
            raise ReadOnlyError(f"database {self.path} was opened read-only")
        return self._writer

    def _key_state(self, key: str) -> KeyState:
        st = self._keys.get(key) if type(key) is str else None
        if st is None:
            raw = check_key(key)
            st = KeyState(key, raw)
            self._keys[key] = st
        return st

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
        atom, payload, value = codec.encode_single(value)
        if atom == Atom.FLOAT or atom == Atom.INT:
            return self._append_number(key, value, atom, ts)
        flags = 0
        stored = payload
        cfg = self.config
        if cfg.compression is not None and len(payload) >= cfg.compression_threshold:
            stored, flags = codec.maybe_lz4(payload, cfg.compression_threshold)
        if len(stored) > MAX_VALUE_BYTES:
            raise InvalidValueError(f"value of {len(stored)} bytes is over the 4 GiB limit")
        sync = cfg.sync_on_write
        with self._lock:
            writer = self._writable()
            st = self._key_state(key)
            if ts is None:
                ts = self._now()
            position = writer.write(
                encode_entry(ts, st.key_bytes, stored, (atom << 4) | flags), sync=sync
            )
            seq = self._next_seq
            self._next_seq = seq + 1
            st.add_single(atom, ts, value, payload)
            st.delta_atom = -1
            if writer.size >= self._check_at:
                self._after_write(writer)
        if sync:
            writer.sync_to(position)
        return seq

    def _now(self) -> int:
        """Now in microseconds, strictly after every timestamp this handle gave before, so
        entries appended without a timestamp never tie (the caller holds the lock)."""
        ts = _time_ns() // 1000
        if ts <= self._last_ts:
            ts = self._last_ts + 1
        self._last_ts = ts
        return ts

    def _append_number(self, key: str, value: float | int, atom: Atom, ts: int | None) -> int:
        """The hot path of ``append`` for floats and ints: one entry, a few microseconds."""
        with self._lock:
            writer = self._writer
            if writer is None or self._closed:
                writer = self._writable()
            st = self._keys.get(key) if type(key) is str else None
            if st is None:
                st = self._key_state(key)
            if ts is None:  # self._now(), inlined on this hot path
                ts = _time_ns() // 1000
                if ts <= self._last_ts:
                    ts = self._last_ts + 1
                self._last_ts = ts
            if atom == _FLOAT:
                vb = _pack_d(value)
                cur = int.from_bytes(vb, "little")
            else:
                vb = _pack_q(value)
                cur = value  # type: ignore[assignment]  # an int here
            fb = atom << 4
            run = 0
            if self._delta:
                if (
                    st.delta_atom == atom
                    and st.delta_segment == writer.segment
                    and st.delta_run < _DELTA_RESTART
                ):
                    if atom == _FLOAT:
                        x = cur ^ st.delta_prev
                        vb = x.to_bytes((x.bit_length() + 7) >> 3, "little")
                    else:
                        vb = codec.encode_int_delta(cur, st.delta_prev)
                    fb |= FLAG_DELTA
                    run = st.delta_run + 1
            header = st.header
            if header is None:
                header = st.header = struct.Struct(f"<qHIB{len(st.key_bytes)}s")
            body = header.pack(ts, len(st.key_bytes), len(vb), fb, st.key_bytes) + vb
            record = _pack_crc(_crc32(body)) + body
            sync = self._sync
            if sync:
                position = writer.write(record, sync=True)
            else:
                buf = writer._buf
                writer.offsets.append(writer._file_size + len(buf))
                buf += record
                if len(buf) >= self._buffer_bytes:
                    try:
                        writer.flush()
                    except BaseException:
                        del buf[-len(record) :]
                        writer.offsets.pop()
                        raise
                position = 0
            seq = self._next_seq
            self._next_seq = seq + 1
            # KeyState.add_number, inlined: the call would cost ~5% of an append.
            b = st.builder
            if b is None or b.atom != atom:
                b = st._builder_for(atom)
            b.ts.append(ts)
            b.nums.append(value)  # type: ignore[union-attr]
            st.tail_count += 1
            st.latest = value
            st.latest_atom = atom
            st.delta_atom = atom
            st.delta_segment = writer.segment
            st.delta_prev = cur
            st.delta_run = run
            if writer._file_size + len(writer._buf) >= self._check_at:
                self._after_write(writer)
        if sync:
            writer.sync_to(position)
        return seq

    def append_batch(self, key: str, values: Any, *, timestamps: Any = None) -> int:
        """Append many values of one type to ``key`` as batch entries; returns how many.

        ``values``: a numpy array (1-D numbers, or 2-D for vectors), an Arrow array, a list,
        a pandas / polars series. ``timestamps``: ``None`` (now, for every value), or one per
        value: ints (microseconds since the epoch), ``datetime64``, Arrow timestamps or
        ``datetime`` objects. This is the fast path: one log entry per 64 MiB of values,
        written from the caller's buffers without an intermediate copy.
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
        cfg = self.config
        threshold = cfg.compression_threshold if cfg.compression is not None else None
        if not cfg.delta and threshold is not None:
            threshold = max(threshold, 1 << 62)  # only delta-coded numbers are worth LZ4 here
        jobs = [(i, lo, hi) for i, (_, b, _) in enumerate(staged) for lo, hi in _batch_slices(b)]
        early = None
        if threshold is not None and len(jobs) > 1:
            # Encoded before the lock, offsets unknown: only compressed results are kept (the
            # padding that aligns an uncompressed payload needs its place in the file).
            early = list(
                _encoder().map(
                    lambda j: _encode_slice(
                        staged[j[0]][1], staged[j[0]][2], j[1], j[2], threshold
                    ),
                    jobs,
                )
            )
        with self._lock:
            writer = self._writable()
            states = [self._key_state(key) for key, _, _ in staged]
            if not jobs:
                return 0
            now = self._now()
            position = 0
            mark = writer.mark()
            placed: list[list[tuple[int, int, int, bool]]] = [[] for _ in staged]
            try:
                for n, (i, lo, hi) in enumerate(jobs):
                    st, (_, batch, ts) = states[i], staged[i]
                    payload_at = writer.size + ENTRY_HEADER_SIZE + len(st.key_bytes)
                    if early is not None and early[n][1] & FLAG_LZ4:
                        parts, flags = early[n]
                    else:
                        limit = threshold if early is None else None
                        parts, flags = _encode_slice(batch, ts, lo, hi, limit, payload_at)
                    header_ts = int(ts[lo]) if ts is not None else now
                    record = encode_entry_parts(
                        header_ts, st.key_bytes, parts, flags_byte(flags | FLAG_BATCH, batch.atom)
                    )
                    position = writer.write_parts(record, sync=cfg.sync_on_write)
                    self._next_seq += 1
                    placed[i].append((payload_at, lo, hi, bool(flags & FLAG_LZ4)))
            except BaseException:
                # All or nothing: every entry of the call is cut out.
                self._next_seq -= len(writer.offsets) - mark[1]
                writer.rollback(mark)
                raise
            for st, (_, batch, ts), where in zip(states, staged, placed):
                if where:
                    self._add_chunks(writer, st, batch, ts, where, now)
            self._after_write(writer)
        if cfg.sync_on_write:
            writer.sync_to(position)
        return sum(batch.count for _, batch, _ in staged)

    def _add_chunks(
        self,
        writer: LogWriter,
        st: KeyState,
        batch: inputs.BatchValues,
        ts: np.ndarray | None,
        placed: list[tuple[int, int, int, bool]],
        now: int,
    ) -> None:
        """Make one appended batch visible in its key's tail (after its entries are written)."""
        chunks = _mapped_chunks(writer.path, batch, ts, placed)
        if chunks is None:
            # One contiguous copy of the whole call (the caller may reuse its arrays); one
            # shared timestamp is a zero-stride view, materialised only when read.
            chunk_ts = (
                np.array(ts, dtype=np.int64)
                if ts is not None
                else np.broadcast_to(np.int64(now), (batch.count,))
            )
            chunks = [
                TailChunk(
                    batch.atom,
                    chunk_ts,
                    values_array(
                        batch.atom,
                        batch.count,
                        numbers=None if batch.numbers is None else batch.numbers.copy(),
                        offsets=batch.offsets,
                        data=batch.data,
                        vectors=None if batch.vectors is None else batch.vectors.copy(),
                    ),
                )
            ]
        for chunk in chunks:
            if chunk.ts.strides == (0,):
                chunk.ts = np.broadcast_to(np.int64(now), (len(chunk),))
            st.add_chunk(chunk, last_value(chunk))
        st.delta_atom = -1

    def _tombstone(self, st: KeyState) -> int:
        writer = self._writable()
        position = writer.write(
            encode_entry(self._now(), st.key_bytes, b"", flags_byte(FLAG_TOMBSTONE, 0)),
            sync=self.config.sync_on_write,
        )
        self._next_seq += 1
        st.clear()
        st.delta_atom = -1
        self._after_write(writer)
        return position

    def delete(self, key: str) -> bool:
        """Delete ``key`` and its whole history; returns whether it existed.

        A later ``append`` to the same key starts a new history. Space is reclaimed by
        ``compact()``.
        """
        with self._lock:
            self._writable()
            st = self._keys.get(key) if type(key) is str else None
            if st is None:
                check_key(key)
                return False
            if st.latest_atom is None:
                return False
            position = self._tombstone(st)
            writer = self._writer
        if self.config.sync_on_write and writer is not None:
            writer.sync_to(position)
        return True

    def _after_write(self, writer: LogWriter) -> None:
        """Rotate the segment or start an automatic compaction when a size limit is reached.

        Appends call this only once the log passes ``_check_at``, so the hot path pays one
        comparison.
        """
        if writer.size >= self.config.max_log_file_size:
            writer = self._rotate()
        if (
            self.config.auto_compact
            and self._log_bytes_closed + writer.size >= self.config.compact_threshold_bytes
            and not self._compacting.locked()
            and (self._auto_thread is None or not self._auto_thread.is_alive())
        ):
            self._auto_thread = threading.Thread(
                target=self._auto_compact, name="synarrow-auto-compact", daemon=True
            )
            self._auto_thread.start()
        self._update_check_at()

    def _update_check_at(self, *, compaction_done: bool = False) -> None:
        """The segment size at which the next append must call :meth:`_after_write`."""
        writer = self._writer
        if writer is None:
            return
        limit = self.config.max_log_file_size
        if self.config.auto_compact:
            compact_at = self.config.compact_threshold_bytes - self._log_bytes_closed
            busy = not compaction_done and (
                self._compacting.locked()
                or (self._auto_thread is not None and self._auto_thread.is_alive())
            )
            if busy:  # look again a little later, when this compaction may be done
                compact_at = max(compact_at, writer.size + (1 << 20))
            limit = min(limit, compact_at)
        self._check_at = limit

    def _auto_compact(self) -> None:
        try:
            self._compact(full=False)
        except Exception as exc:
            # The log is intact and a later compaction may work; the failure is logged, shown
            # in stats() and raised by the next explicit compact() / wait_for_compaction().
            with self._lock:
                self._compaction_error = exc
                self._compaction_error_pending = True
            _logger.error("automatic compaction of %s failed: %s", self.path, exc, exc_info=exc)

    def _raise_compaction_error(self) -> None:
        with self._lock:
            exc, pending = self._compaction_error, self._compaction_error_pending
            self._compaction_error_pending = False
        if pending and exc is not None:
            raise CompactionError(
                f"the automatic compaction of {self.path} failed: {exc}",
            ) from exc

    def wait_for_compaction(self, timeout: float | None = None) -> bool:
        """Wait until a running automatic compaction is done; ``False`` if ``timeout`` passed.

        Raises :class:`~synarrow.errors.CompactionError` (once) when an automatic compaction
        failed since the last explicit call; the log then still holds every entry.
        """
        thread = self._auto_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                return False
        self._raise_compaction_error()
        return True

    def _rotate(self) -> LogWriter:
        """Close the active segment and start the next one (caller holds the lock)."""
        old = self._writable()
        old.close()
        self._log_bytes_closed += old.size
        self._writer = LogWriter(
            old.directory,
            old.segment + 1,
            self._next_seq,
            existing_size=None,
            buffer_bytes=self.config.write_buffer_bytes,
        )
        return self._writer

    def flush(self) -> None:
        """Hand buffered writes to the OS (they survive a crash of this process)."""
        with self._lock:
            self._writable().flush()

    def sync(self) -> None:
        """Make every write so far durable (survives power loss)."""
        with self._lock:
            writer = self._writable()
            writer.flush()
        writer.sync()

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

    def _live(self, key: str) -> KeyState | None:
        if self._closed:
            raise DatabaseClosedError(f"database {self.path} is closed")
        st = self._keys.get(key) if type(key) is str else None
        if st is None:
            check_key(key)
            return None
        return st if st.latest_atom is not None else None

    def _required(self, key: str) -> KeyState:
        st = self._live(key)
        if st is None:
            raise KeyNotFoundError(f"key {key!r} not found (absent or deleted)")
        return st

    def get(self, key: str, default: Any = None) -> Any:
        """The latest value of ``key``, or ``default`` if it is absent or deleted. O(1)."""
        # Lock-free fast path: the latest value is one attribute, replaced atomically by
        # writers; a key being created, deleted or not decoded yet takes the locked path.
        st = self._keys.get(key) if type(key) is str else None
        if st is not None and not self._closed:
            value = st.latest
            if st.latest_atom is not None and value is not UNLOADED:
                return value.copy() if type(value) is np.ndarray else value
        with self._lock:
            st = self._live(key)
            if st is None:
                return default
            value = st.resolve_latest()
        return value.copy() if isinstance(value, np.ndarray) else value

    def _typed(self, key: str, atom: Atom) -> Any:
        with self._lock:
            st = self._required(key)
            if st.latest_atom != atom:
                found = st.latest_atom.name.lower() if st.latest_atom is not None else "none"
                raise TypeMismatchError(
                    f"key {key!r} holds a {found} value, not {atom.name.lower()}"
                )
            value = st.resolve_latest()
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
        with self._lock:
            return self._live(key) is not None

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str) or not key:
            return False
        return self.exists(key)

    def __len__(self) -> int:
        with self._lock:
            if self._closed:
                raise DatabaseClosedError(f"database {self.path} is closed")
            return sum(1 for st in self._keys.values() if st.latest_atom is not None)

    def keys(self, pattern: str | None = None) -> list[str]:
        """Live keys in sorted order; ``pattern`` is a glob such as ``"sensor/*"``."""
        if pattern is not None and not isinstance(pattern, str):
            raise InvalidArgumentError(f"pattern must be a str, got {type(pattern).__name__}")
        with self._lock:
            if self._closed:
                raise DatabaseClosedError(f"database {self.path} is closed")
            live = [k for k, st in self._keys.items() if st.latest_atom is not None]
        if pattern is not None:
            if not any(c in pattern for c in "*?["):
                return [pattern] if pattern in live else []
            literal = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
            live = [k for k in live if k.startswith(literal) and fnmatch.fnmatchcase(k, pattern)]
        return sorted(live)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def _parts(self, key: str) -> list[TailChunk]:
        with self._lock:
            return self._required(key).parts()

    def get_history(self, key: str) -> pa.Table:
        """The whole history of ``key``: a table ``ts`` (timestamp[us, UTC]), ``value``.

        After compaction the columns are zero-copy views of the memory-mapped files.
        """
        return history_table(self._parts(key))

    def history_reader(self, key: str) -> pa.RecordBatchReader:
        """The history as a RecordBatchReader (an Arrow C stream, one batch per chunk)."""
        table = self.get_history(key)
        return pa.RecordBatchReader.from_batches(table.schema, table.to_batches())

    def get_history_floats(self, key: str) -> np.ndarray:
        """The history of a numeric key as float64 (a read-only zero-copy view when compacted).

        Int histories are converted (a copy; ints beyond 2**53 round, as with numpy's
        ``astype``). Other types raise ``TypeMismatchError``.
        """
        with self._lock:
            st = self._required(key)
            if not st.tail_count and len(st.base) == 1:
                # The usual compacted case: one slice of a mapped file, viewed directly.
                chunk = st.base[0].chunk()
                if chunk.atom == Atom.FLOAT and not chunk.values.null_count:
                    if chunk.numbers is None:
                        chunk.numbers = interop.column_numpy(chunk.values)
                    return chunk.numbers.view()  # a new view: callers may reshape theirs
        col = self._numeric_column(key)
        if col.type == pa.int64():
            # As numpy's astype: ints beyond 2**53 round to the nearest float64.
            col = col.cast(pa.float64(), safe=False)
        return interop.column_numpy(col)

    def get_history_tensor(self, key: str, dtype: Any = None) -> np.ndarray:
        """The history as a numpy array: 1-D for numbers, 2-D ``(n, dim)`` for vectors.

        Zero-copy (read-only) when the history is one chunk of the requested dtype, as after
        compaction; ``dtype`` converts (a copy).
        """
        table = self.get_history(key)
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

    def _numeric_column(self, key: str) -> pa.ChunkedArray:
        col = self.get_history(key).column("value")
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
        self._raise_compaction_error()
        return self._compact(full=full)

    def _compact(self, *, full: bool) -> dict[str, Any]:
        from synarrow.columnar.compact import KeySnapshot, write_generation

        with self._compacting:
            with self._lock:
                self._writable()
                writer = self._rotate()
                first_segment, next_seq = writer.segment, self._next_seq
                snaps: list[KeySnapshot] = []
                seen: dict[str, tuple[KeyState, int, int]] = {}
                for key, st in list(self._keys.items()):
                    if st.latest_atom is None:
                        if not st.tail_count:
                            del self._keys[key]  # deleted key, nothing left to fold
                        continue
                    tail = st.tail_chunks()
                    snap = KeySnapshot(key, list(st.base), tail, st.tail_count)  # type: ignore[arg-type]
                    snaps.append(snap)
                    seen[key] = (st, st.epoch, snap.tail_count)
            result = write_generation(
                self._columnar,
                snaps,
                first_segment=first_segment,
                next_seq=next_seq,
                compression=self.config.columnar_compression,
                full=full,
            )
            with self._lock:
                for key, refs in result.refs.items():
                    st, epoch, folded = seen[key]
                    if st.epoch == epoch:  # not deleted while we were writing
                        st.drop_tail_prefix(folded)
                        st.set_base(refs)  # type: ignore[arg-type]
                log_dir = self.path / "log"
                removed = 0
                segments = list_log_dir(log_dir).segments
                for seg in segments:
                    if seg < first_segment:
                        remove_file(segment_path(log_dir, seg))
                        remove_sidecar(segment_path(log_dir, seg))
                        removed += 1
                active = self._writer.segment if self._writer is not None else first_segment
                self._log_bytes_closed = sum(
                    os.lstat(segment_path(log_dir, seg)).st_size
                    for seg in segments
                    if first_segment <= seg < active
                )
                self._update_check_at(compaction_done=True)
                self._compaction_error = None
                self._compaction_error_pending = False
        return {
            "generation": result.manifest.generation,
            "keys": len(result.refs),
            "keys_rewritten": result.keys_rewritten,
            "keys_appended": result.keys_appended,
            "entries_written": result.entries_written,
            "files_written": result.files_written,
            "files_removed": result.files_removed,
            "log_segments_removed": removed,
        }

    def sql(self, query: str, params: Iterable[Any] | None = None) -> pa.Table:
        """Run a DuckDB query over the views ``history`` (every key) and ``latest``.

        >>> db.sql("SELECT time_bucket(INTERVAL '1 hour', ts) h, avg(value) "
        ...        "FROM history WHERE key = 'temperature' GROUP BY h")  # doctest: +SKIP
        """
        from synarrow.sql import run_sql

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
        **options: Any,
    ) -> Any:
        """Write the store as a Hive-partitioned Parquet (or Arrow) dataset for other engines.

        ``uri`` is a local directory or any fsspec URI; DuckDB, pyarrow.dataset, Dask, Ray and
        Spark read the result as is. Options: see :func:`synarrow.export.export_dataset`.

        >>> db.export_dataset("out/", partition_by="key")  # doctest: +SKIP
        """
        from synarrow.export import export_dataset

        return export_dataset(self, uri, format, partition_by, **options)

    def to_pandas(self, key: str) -> Any:
        """The history as a pandas DataFrame (numeric columns without a copy when possible).

        A mixed-type history's ``value`` column is a pandas ``ArrowDtype`` struct column.
        """
        return interop.history_pandas(self.get_history(key))

    def to_polars(self, key: str) -> Any:
        """The history as a polars DataFrame."""
        return interop.history_polars(self.get_history(key))

    def to_torch(self, key: str, device: str = "cpu", *, copy: bool = False) -> Any:
        """The history as a torch tensor (1-D numbers, 2-D vectors).

        On the CPU the tensor shares memory with the (read-only) mapped file when the history
        is one chunk; torch cannot mark tensors read-only, so writing into it would crash the
        process. Pass ``copy=True`` for a tensor you may modify.
        """
        return interop.to_torch(self.get_history_tensor(key), device, copy=copy)

    # -- life cycle ------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counts and sizes: keys, entries, log bytes, columnar bytes and files, and more."""
        with self._lock:
            if self._closed:
                raise DatabaseClosedError(f"database {self.path} is closed")
            live = [st for st in self._keys.values() if st.latest_atom is not None]
            log_bytes = self._log_bytes_closed + (self._writer.size if self._writer else 0)
            if self._writer is None:
                log_bytes = sum(f.stat().st_size for f in (self.path / "log").glob("*.log"))
            return {
                "path": str(self.path),
                "keys": len(live),
                "entries": sum(len(st) for st in live),
                "tail_entries": sum(st.tail_count for st in live),
                "log_bytes": log_bytes,
                "log_segments": len(list((self.path / "log").glob("*.log"))),
                "columnar_bytes": self._columnar.total_bytes(),
                "columnar_files": len(self._columnar.manifest.files),
                "last_compaction": self._columnar.manifest.created,
                "last_compaction_error": (
                    None if self._compaction_error is None else str(self._compaction_error)
                ),
                **self._columnar.describe(),
                "next_sequence": self._next_seq,
                "readonly": self.readonly,
                "torn_bytes_cut_on_open": self._torn_bytes,
                "repaired_ranges": list(self._repaired),
                "entries_dropped_in_repair": self._dropped_in_repair,
                "config": self.config,
            }

    @property
    def next_sequence(self) -> int:
        """The sequence number the next log entry will get (it grows with every write)."""
        return self._next_seq

    @property
    def data_version(self) -> tuple[int, int]:
        """``(next_sequence, columnar generation)``: it changes whenever what a reader would
        see may have changed (a write, a delete, a compaction)."""
        return (self._next_seq, self._columnar.manifest.generation)

    def read_snapshot(self, keys: Iterable[str] | None = None) -> ReadSnapshot:
        """An immutable view of the live keys' histories (or of ``keys`` only), taken now.

        No data is copied; writers may go on while the snapshot is read. This is the seam
        through which SQL, export, Flight and ``check`` read the database.
        """
        with self._lock:
            self.require_open()
            if keys is None:
                states: Iterable[KeyState] = self._keys.values()
            else:
                wanted = [self._keys.get(k) if type(k) is str else None for k in keys]
                states = [st for st in wanted if st is not None]
            views = {
                st.key: KeyView(st.key, tuple(st.base), tuple(st.tail_chunks()))
                for st in states
                if st.latest_atom is not None
            }
            return ReadSnapshot(
                self.path, self._next_seq, self._columnar.manifest.generation, views
            )

    def close(self) -> None:
        """Make every write durable and release the database. Idempotent."""
        thread = self._auto_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        super().close()

    def release(self) -> None:
        """Close the log writer (durably) and release the lock and the mapped files."""
        with self._lock:
            try:
                if self._writer is not None:
                    self._writer.close()
            finally:
                self._release_files()

    def _release_files(self) -> None:
        if self._writer is not None and not self._writer.closed:
            self._writer.abandon()
        if self._writer_lock is not None:
            self._writer_lock.release()
            self._writer_lock = None
        columnar = getattr(self, "_columnar", None)
        if columnar is not None:
            columnar.close()


def open(
    path: str | os.PathLike[str], *, readonly: bool = False, repair: bool = False, **config: Any
) -> SynaDB:
    """Open (or create) a database; keyword arguments other than the flags are DbConfig fields.

    >>> db = synarrow.open("data.db", sync_on_write=False)  # doctest: +SKIP
    """
    cfg = None
    if config:
        base = _config.read_stored(Path(path)) if Path(path).is_dir() else None
        cfg = (base or DbConfig()).replace(**config)
    return SynaDB(path, cfg, readonly=readonly, repair=repair)


# -- helpers ---------------------------------------------------------------------------------


def _require_own_directories(path: Path) -> None:
    """Refuse a database whose ``log`` or ``columnar`` is a symlink (or not a directory):
    following it would read or write another database's files."""
    require_directory(path / "log", what="log directory")
    require_directory(path / "columnar", what="columnar directory")


def _batch_slices(batch: inputs.BatchValues) -> Iterator[tuple[int, int]]:
    n = batch.count
    if batch.atom in (Atom.TEXT, Atom.BYTES):
        assert batch.offsets is not None
        lo = 0
        while lo < n:
            limit = int(batch.offsets[lo]) + BATCH_CHUNK_BYTES
            hi = int(np.searchsorted(batch.offsets, limit, side="right")) - 1
            hi = max(hi, lo + 1)
            yield lo, min(hi, n)
            lo = min(hi, n)
        return
    width = 8 if batch.atom != Atom.VECTOR else 4 * batch.vectors.shape[1]  # type: ignore[union-attr]
    step = max(1, BATCH_CHUNK_BYTES // max(width, 1))
    for lo in range(0, n, step):
        yield lo, min(n, lo + step)


# Batches at least this large are read back through a read-only mapping of the log segment
# (the bytes just written are in the page cache) instead of being copied into memory.
_MAP_BATCH_BYTES = 1 << 20


def _mapped_chunks(
    path: Path,
    batch: inputs.BatchValues,
    ts: np.ndarray | None,
    placed: list[tuple[int, int, int, bool]],
) -> list[TailChunk] | None:
    """Tail chunks viewing the batch's entries in the segment file, or None to copy instead."""
    if batch.atom not in (Atom.FLOAT, Atom.INT, Atom.VECTOR) or any(c for *_, c in placed):
        return None
    if batch.count * (8 if batch.vectors is None else 4 * batch.vectors.shape[1]) < (
        _MAP_BATCH_BYTES
    ):
        return None
    chunks = []
    for payload_at, lo, hi, _ in placed:
        n = hi - lo
        start = payload_at + codec.BATCH_HEADER.size
        start += -start % 8  # the padding encode_batch wrote
        chunk_ts: np.ndarray
        if ts is not None:
            chunk_ts = _map_segment(path, "<i8", start, (n,))
            start += 8 * n
        else:
            chunk_ts = np.broadcast_to(np.int64(0), (n,))  # shared timestamp, set by caller
        if batch.atom == Atom.VECTOR:
            assert batch.vectors is not None
            dim = batch.vectors.shape[1]
            vec = _map_segment(path, "<f4", start, (n, dim))
            values = values_array(Atom.VECTOR, n, vectors=vec)
        else:
            dtype = "<f8" if batch.atom == Atom.FLOAT else "<i8"
            nums = _map_segment(path, dtype, start, (n,))
            values = values_array(batch.atom, n, numbers=nums)
        chunks.append(TailChunk(batch.atom, chunk_ts, values))
    return chunks


def _map_segment(path: Path, dtype: str, offset: int, shape: tuple[int, ...]) -> np.ndarray:
    """A read-only numpy view of part of a segment, opened without following symlinks."""
    with builtins.open(open_fd(path, os.O_RDONLY, what="log segment"), "rb") as f:
        return np.memmap(f, dtype=dtype, mode="r", offset=offset, shape=shape)


def _encode_slice(
    batch: inputs.BatchValues,
    ts: np.ndarray | None,
    lo: int,
    hi: int,
    threshold: int | None,
    file_offset: int | None = None,
) -> tuple[list[bytes | memoryview], int]:
    """One batch entry's payload buffers and flags, for values ``lo:hi`` of ``batch``."""
    part = _slice_batch(batch, lo, hi)
    return codec.encode_batch(
        part.atom,
        None if ts is None else ts[lo:hi],
        part.vectors if part.atom == Atom.VECTOR else part.numbers,
        offsets=part.offsets,
        data=part.data,
        count=hi - lo,
        compress_threshold=threshold,
        file_offset=file_offset,
    )


_ENCODER: ThreadPoolExecutor | None = None
_ENCODER_LOCK = threading.Lock()


def _encoder() -> ThreadPoolExecutor:
    """The threads that LZ4-encode the entries of a multi-entry append (LZ4 releases the GIL)."""
    global _ENCODER
    with _ENCODER_LOCK:
        if _ENCODER is None:
            workers = max(1, min(4, os.cpu_count() or 1))
            _ENCODER = ThreadPoolExecutor(workers, thread_name_prefix="synarrow-encode")
        return _ENCODER


def _slice_batch(batch: inputs.BatchValues, lo: int, hi: int) -> inputs.BatchValues:
    if lo == 0 and hi == batch.count:
        return batch
    if batch.atom in (Atom.TEXT, Atom.BYTES):
        assert batch.offsets is not None and batch.data is not None
        offs = batch.offsets[lo : hi + 1]
        return inputs.BatchValues(
            batch.atom,
            hi - lo,
            offsets=offs - offs[0],
            data=batch.data[int(offs[0]) : int(offs[-1])],
        )
    return inputs.BatchValues(
        batch.atom,
        hi - lo,
        numbers=None if batch.numbers is None else batch.numbers[lo:hi],
        vectors=None if batch.vectors is None else batch.vectors[lo:hi],
    )
