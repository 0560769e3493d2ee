"""The engine: key states, the write path, rotation, reads of the index, read snapshots.

The life of a write:

1. :meth:`Engine.append_number` (floats and ints, the hot path) or :meth:`Engine.append_atom`
   encodes one log entry: the value (delta-coded against the key's previous number with
   :func:`~synarrow.log.codec.encode_float_delta` / :func:`~synarrow.log.codec.encode_int_delta`,
   or LZ4-compressed) behind a header and a CRC. Without ``sync_on_write`` a single number
   is only recorded (:class:`~synarrow.log.pending.Pending`) and :meth:`Engine.encode_pending`
   writes the same entries in bulk, in arrival order, before any other write to the log, on
   flush and close, or once they could fill the write buffer;
2. the :class:`~synarrow.log.writer.LogWriter` appends it to the active segment (buffered, or
   written through and fsynced with ``sync_on_write``, sharing fsyncs between threads);
3. the key's :class:`~synarrow.log.memtable.KeyState` records the value in Arrow-ready buffers
   and, if its timestamp is at or after the key's latest (one comparison), caches it as the
   latest value, so ``get`` is O(1); entries may arrive out of timestamp order;
4. once the segment passes a size limit, :meth:`Engine.after_write` rotates it or starts an
   automatic compaction (:mod:`synarrow.engine.compaction`), which folds the log tail into
   memory-mapped Arrow IPC files.

Reads see every history ordered by timestamp (:meth:`Engine.timeline`, see
:mod:`synarrow.engine.timeline`): a key stored in order (compaction writes each key sorted)
is read zero-copy; the merged order of a key with late entries is computed once and kept
on its state until the key changes.

Opening is :mod:`synarrow.engine.recovery`; batches are :mod:`synarrow.engine.batches`.
A read-only handle follows the writer (:meth:`Engine.refresh`, checked by :meth:`Engine.follow`
on reads at most every ``DbConfig.refresh_interval`` seconds; see :mod:`synarrow.engine.follow`).
Readers take a :class:`~synarrow.engine.snapshot.ReadSnapshot` (:meth:`Engine.read_snapshot`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from synarrow import config as _config
from synarrow.columnar import tags
from synarrow.columnar.index import read_index
from synarrow.columnar.manifest import Manifest, read_manifest
from synarrow.columnar.store import ColumnarStore
from synarrow.config import DbConfig
from synarrow.engine import batches, follow, keystates, ranges, retention, solo
from synarrow.engine import timeline as _timeline
from synarrow.engine.compaction import Compactor
from synarrow.engine.directory import (
    COLUMNAR_DIR,
    LOG_DIR,
    SNAPSHOTS_DIR,
    prepare_directory,
    remove_temporaries,
)
from synarrow.engine.follow import Mark
from synarrow.engine.recovery import (
    Recovered,
    continue_log,
    continue_segment,
    recover,
    state_maker,
    tail_at,
)
from synarrow.engine.snapshot import KeyView, ReadSnapshot
from synarrow.errors import (
    CorruptionError,
    DatabaseClosedError,
    InvalidValueError,
    KeyNotFoundError,
    ReadOnlyError,
    TypeMismatchError,
)
from synarrow.fileio import remove_file
from synarrow.log import codec
from synarrow.log.format import (
    CRC,
    ENTRY_HEADER_SIZE,
    FLAG_BATCH,
    FLAG_DELTA,
    FLAG_LZ4,
    FLAG_TOMBSTONE,
    MAX_VALUE_BYTES,
    Atom,
    encode_entry,
    encode_entry_parts,
    flags_byte,
    key_entry_struct,
)
from synarrow.log.lock import WriterLock, writer_processes
from synarrow.log.memtable import NO_TS, KeyState, TailChunk, value_at
from synarrow.log.names import list_log_dir, segment_path
from synarrow.log.pending import ENTRY_SLACK, Pending
from synarrow.log.range_tombstone import RANGE_TOMBSTONE_FLAGS, encode_range
from synarrow.log.reader import never_written, scan_segment
from synarrow.log.shared import Head, SharedLog, read_head
from synarrow.log.values import BatchValues, check_key
from synarrow.log.writer import LogWriter

__all__ = ["DELTA_RESTART", "Engine", "StagedBatch"]

#: Every this many delta entries a key gets an absolute one, so damage repaired away costs
#: at most that many following entries of each key.
DELTA_RESTART = 31
#: One item of :meth:`Engine.append_batches`: key, converted values, timestamps or ``None``.
StagedBatch = tuple[str, BatchValues, np.ndarray | None]

_time_ns = time.time_ns
_monotonic = time.monotonic
# A refresh that meets files the writer's compaction removed while it read starts again,
# this many times at most (each retry follows a change the writer made meanwhile).
_REFRESH_TRIES = 20
_pack_d = struct.Struct("<d").pack
_pack_q = struct.Struct("<q").pack
_pack_crc = CRC.pack
_crc32 = zlib.crc32
# The codec's own functions, bound once (a module attribute lookup per append costs ~1%).
_float_delta = codec.encode_float_delta
_int_delta = codec.encode_int_delta
_FLOAT = Atom.FLOAT


class Engine:
    """One open database: its directory lock, key states, log writer and columnar files.

    Thread-safe: every change happens under :attr:`lock`. The attributes are the engine's
    own; user-facing layers read through :meth:`read_snapshot` and the methods below.
    """

    def __init__(
        self,
        path: Path,
        config: DbConfig | None,
        *,
        readonly: bool,
        repair: bool,
        sync_on_write: bool | None = None,
        snapshot: str | None = None,
        writers: str | None = None,
    ) -> None:
        """Open (a writer: create) the database at ``path``; see :func:`synarrow.config.choose`
        for ``config``, ``sync_on_write`` and ``writers``. ``snapshot``: read that tag (read-only) instead
        of the current state."""
        if snapshot is not None and not readonly:
            raise ReadOnlyError(f"snapshot {snapshot!r} of {path} can only be opened read-only")
        self.path = path
        self.readonly = readonly
        self.lock = threading.RLock()
        self.closed = True
        self.writer: LogWriter | None = None
        self.tag = snapshot
        """The snapshot this engine reads (``None``: the current state)."""
        self.frozen_now: int | None = None
        """For a snapshot: the moment its retention cutoffs are computed at."""
        self.pins = path / SNAPSHOTS_DIR
        self._opened: ColumnarStore | None = None  # closed by _release_files
        self._tag_reader: tags.TagReader | None = None
        many = not readonly and _config.writers_of(path, config, writers) == "many"
        self._lock_file: WriterLock | None = prepare_directory(path, readonly=readonly, shared=many)
        self._repair = repair
        self.shared: SharedLog | None = None
        """The append lock and head of a writer of a shared log (``writers="many"``)."""
        self._held = 0  # how deep this handle is in its turn on the shared log
        self._turns: SharedLog | None = None  # the shared log while it takes turns on it
        self._solo = False  # whether it keeps the append lock between turns (see solo)
        self._solo_try_at = 0.0  # when it may next look whether it is alone
        self._seen: Head | None = None  # the head as this handle last left or found it
        self._manifest_id: object = None  # the manifest its key states were built from
        self._manifest_now = follow.manifest_check(path)
        self._check_files = False  # whether the next turn also looks at the manifest file
        self._open_head: Head | None = None  # the head an open writes (None: it failed)
        # Buffered single entries of a writer of a shared log that are not in the log yet
        # (written by its next turn): (state, atom, ts, value, payload).
        self._unwritten: list[tuple[KeyState, Atom, int, object, bytes]] = []
        self.turn = _Turn(self)
        """``with engine.turn:`` (holding :attr:`lock`): for a writer of a shared log, its
        turn to write, after the other writers' entries were read; nothing otherwise."""
        opening = contextlib.ExitStack()
        try:
            cleanup = True
            if many:
                shared = self.shared = self._turns = SharedLog(path)
                head = shared.acquire()  # no other writer writes while this one opens
                opening.callback(self._end_open_turn)
                remove_temporaries(path)  # config and retention are replaced in turns
                # Leftovers of a compaction are only removed while no other handle compacts.
                cleanup = opening.enter_context(shared.lease(wait=False))
                self._manifest_id = self._manifest_now()
            # Taken before anything is read: a change made while opening shows next time.
            self._mark = follow.mark(path) if readonly and snapshot is None else None
            self.config = _config.choose(
                path, config, readonly=readonly, sync_on_write=sync_on_write, writers=writers
            )
            record = None
            if snapshot is not None:
                reader = self._tag_reader = tags.TagReader(self.pins, tags.check_tag(snapshot))
                reader.share()
                record = tags.read_record(self.pins, snapshot)
                self.config = dataclasses.replace(self.config, duplicates=record.duplicates)
                self.frozen_now = record.created_us
            self.sync_on_write = self.config.sync_on_write
            self.delta = self.config.delta
            if not cleanup:
                (path / COLUMNAR_DIR).mkdir(exist_ok=True)
            columnar = self._opened = ColumnarStore(
                path / COLUMNAR_DIR,
                readonly=readonly or not cleanup,
                verify=self.config.verify,
                pins=self.pins,
                manifest=None if record is None else record.manifest,
            )
            # Opening makes a few objects per key and none that form cycles: the cyclic
            # collector would only walk them again and again (a fifth of a 10k-key open).
            collecting = gc.isenabled()
            gc.disable()
            try:
                found = recover(
                    path,
                    columnar,
                    self.config,
                    readonly=readonly,
                    repair=repair,
                    replay_log=record is None,
                    follow=(self._mark is not None or many) and not repair,
                )
            finally:
                if collecting:
                    gc.enable()
            if record is None:
                rules = retention.load_rules(path)
                if not readonly and cleanup:
                    tags.remove_leftovers(self.pins)
            else:
                rules = retention.RetentionRules(record.retention)
        except CorruptionError as exc:
            opening.close()
            self._release_files()
            if snapshot is None or "repair=" not in exc.hint:
                raise
            # repair= reads past damage in the log; a tag has none and refuses it
            raise CorruptionError(
                exc.message,
                hint=f"run `synarrow check {path}`; restore the files of snapshot "
                f"{snapshot!r} from a backup, or drop_snapshot({snapshot!r}) to give it up",
            ) from exc
        except BaseException:
            opening.close()
            self._release_files()
            raise
        self.columnar = columnar
        if self._mark is not None:
            self._mark = follow.settled(self._mark, found.unread_tail)
        self._tail = found.tail  # where a refresh continues the log (followers)
        self.states: dict[str, KeyState] = found.states
        self.writer = found.writer
        self.next_seq = found.next_seq
        self.log_bytes_closed = found.log_bytes_closed
        self.torn_bytes = found.torn_bytes
        self.repaired = found.repaired
        self.dropped_in_repair = found.dropped_in_repair
        self.last_ts = found.clock  # the latest timestamp this engine chose (see now())
        self._ties_first = self.config.duplicates == "keep_first"
        self.check_at = 0  # the segment size at which after_write() must run
        # Buffered single numeric appends are recorded in _pending and encoded in bulk
        # (encode_pending) before the log is written otherwise, or once _encode_at is due.
        self._defer = not self.sync_on_write and self.config.write_buffer_bytes > 0
        self._pending = Pending()
        self._record = (
            self._pending.states.append,
            self._pending.ts.append,
            self._pending.values.append,
        )
        self._entry_bound = ENTRY_SLACK  # the most bytes one pending entry takes, so far
        self._encode_at = 0  # the sequence number whose append encodes the pending first
        self.compactor = Compactor(self)
        self.retention = rules
        self.has_retention = bool(rules)
        """Whether retention rules exist (then ``get`` takes the locked path, which checks
        the key's cutoff)."""
        self.follows = self._mark is not None or many
        """Whether this handle sees other handles' writes by refreshing: a read-only handle
        of the current state, or a writer of a shared log."""
        self._refresh_every = self.config.refresh_interval if self.follows else None
        self.auto_follow = self._refresh_every is not None
        """Whether reads refresh the handle by themselves (:meth:`follow`)."""
        self.refresh_due = _monotonic() + (self._refresh_every or 0.0)
        """For a handle that follows others: the :func:`time.monotonic` time at which its
        next read refreshes it."""
        self.lock_free = False
        """For a handle that follows others: whether ``get`` may read :attr:`states`
        without the lock now (no refresh is due, no retention rule needs checking); the
        process's :class:`~synarrow.engine.follow.Ticker` clears it when the refresh is due."""
        self._update_lock_free()
        self.closed = False
        self.update_check_at()
        if many:
            self._open_head = self._seen = self._published(head)
            opening.close()  # the lease, then the append lock, with the head written
            # (or kept, by a handle that is alone: _end_open_turn)

    def _end_open_turn(self) -> None:
        shared = self.shared
        assert shared is not None
        head = self._open_head
        if head is not None and self._may_keep():
            self._start_solo(head)
        else:
            shared.release(head)

    # -- following the writer -----------------------------------------------------------------

    def _update_lock_free(self) -> None:
        every = self._refresh_every
        if self._solo:
            self.lock_free = not self.has_retention  # no one else writes meanwhile
        elif not self.follows or self.has_retention or (every is not None and every <= 0):
            self.lock_free = False
        elif every is None:
            self.lock_free = True  # refreshed only when asked
        else:
            self.lock_free = True
            follow.ticker().watch(self)

    def follow(self) -> None:
        """Refresh a read-only handle if ``refresh_interval`` has passed since its last
        check; the read entry points call it. A writer or a snapshot pays one attribute test,
        a reader not due one clock comparison."""
        if self.auto_follow and _monotonic() >= self.refresh_due:
            self.refresh()

    def refresh(self) -> bool:
        """Bring a read-only handle up to what the writer has handed to the OS and committed
        in columnar files; returns whether anything changed. ``False`` at once for a
        writer or a snapshot.

        Cheap when nothing changed (:func:`synarrow.engine.follow.mark`); when only the log
        grew, just its new entries are read, verified and replayed into the key states
        (:func:`~synarrow.engine.recovery.continue_log`); otherwise (a compaction, a
        retention rule, a log that did not continue) the key states are rebuilt as open
        builds them. An entry the writer is still writing at the end of the log is not
        damage: it is taken by a later refresh. Files that the writer's compaction removes
        meanwhile make the rebuild start again. Results handed out
        before stay valid (views of mappings that stay alive while referenced, or owned
        buffers)."""
        if not self.follows:
            self.require_open()
            return False
        with self.lock:
            self.require_open()
            if self._refresh_every is not None:
                self.refresh_due = _monotonic() + self._refresh_every
                self._update_lock_free()
            if self.shared is not None:
                return self._refresh_writer()
            for attempt in range(_REFRESH_TRIES):
                now = follow.mark(self.path)
                if now == self._mark:
                    return False
                if self._continue(now):
                    return True
                try:
                    installed = self._rebuild(now)
                except (FileNotFoundError, CorruptionError) as exc:
                    if attempt + 1 < _REFRESH_TRIES and follow.mark(self.path) != now:
                        continue  # the writer changed the files while they were read
                    if isinstance(exc, CorruptionError):
                        raise
                    raise CorruptionError(
                        f"database {self.path}: {exc.filename} vanished while it was read "
                        "and the database did not change meanwhile",
                        hint=f"run `synarrow check {self.path}`",
                    ) from exc
                if installed:
                    return True
            raise CorruptionError(
                f"database {self.path} kept changing while a refresh read it "
                f"({_REFRESH_TRIES} tries)",
                hint="call refresh() again",
            )

    def _continue(self, mark: Mark) -> bool:
        """Replay only what the log gained since the last refresh, when nothing else
        changed (no compaction, no retention rule); ``False`` when that cannot be done (or
        failed half-way): the caller rebuilds."""
        tail, seen = self._tail, self._mark
        if tail is None or seen is None or mark[0] != seen[0] or mark[1] != seen[1]:
            return False
        state_for = state_maker(self.states, self.columnar.keys, self._ties_first)
        # Until this succeeds the states may be half-updated: only a rebuild may follow.
        self._tail = None
        try:
            done = continue_log(self.path, tail, mark[2], state_for, self.config)
        except (OSError, CorruptionError):
            done = None  # a rebuild reads everything again and reports what it finds
        if done is None:
            return False
        self._tail = done.tail
        self.next_seq = done.next_seq
        self.log_bytes_closed += done.closed_bytes
        self.last_ts = max(self.last_ts, done.clock)
        self._mark = follow.settled(mark, done.unread_tail)
        return True

    def _rebuild(self, mark: Mark) -> bool:
        """Rebuild the key states from the files as ``mark`` saw them and install them;
        ``False`` (nothing installed) if a compaction committed meanwhile."""
        store = self.columnar
        if mark[0] != self._mark_files():
            store = self._files_store()
        try:
            found, rules = self._read_files(store)
            # The log was listed after the manifest was read: if a compaction committed in
            # between, segments it folded may have been missed.
            if follow.files_of(self.path) != mark[0]:
                if store is not self.columnar:
                    store.close()
                return False
        except BaseException:
            if store is not self.columnar:
                store.close()
            raise
        old = self.columnar
        self.columnar = self._opened = store
        # The same dict, changed in place: the handle's lock-free get reads it.
        self.states.clear()
        self.states.update(found.states)
        self.last_ts = 0
        self._install_found(found, rules)
        self._mark = follow.settled(mark, found.unread_tail)
        if old is not store:
            old.close()  # forgets its mappings; views handed out keep theirs alive
        return True

    def _files_store(self) -> ColumnarStore:
        """The committed columnar files, opened to rebuild the key states from."""
        return ColumnarStore(
            self.path / COLUMNAR_DIR, readonly=True, verify=self.config.verify, pins=self.pins
        )

    def _read_files(self, store: ColumnarStore) -> tuple[Recovered, retention.RetentionRules]:
        """Key states made from ``store`` and the log, as opening makes them (read-only:
        nothing is cut or removed), and the retention rules."""
        found = recover(
            self.path,
            store,
            self.config,
            readonly=True,
            repair=self._repair,
            follow=not self._repair,
        )
        return found, retention.load_rules(self.path)

    def _mark_files(self) -> object:
        """The manifest part of the mark the installed state was built from."""
        return None if self._mark is None else self._mark[0]

    # -- several writers on one log (writers="many") ------------------------------------------

    def _enter(self) -> LogWriter:
        """Begin this handle's turn on the shared log (the caller holds :attr:`lock`):
        take the append lock, read what the other writers did since this handle's last
        turn, and return the writer, placed after their entries. Turns nest."""
        shared = self._turns
        writer = self.writer
        if writer is None:
            writer = self.writable()  # raises: closed, or read-only
        if shared is None or self._held:
            self._held += shared is not None
            return writer
        head = shared.acquire()
        self._held = 1
        try:
            self._catch_up(head)
        except BaseException:
            self._held = 0
            shared.release(head)
            raise
        return self.writer or writer

    def _leave(self, *, write: bool = True) -> None:
        """End the turn: write what is buffered (``write=False``: keep it buffered),
        publish where the log now ends and drop the append lock (a turn that failed
        half-way leaves the head marked as written, so the next one cuts what it may have
        left)."""
        shared = self._turns
        if shared is None:
            return
        self._held -= 1
        if self._held:
            return
        head = None
        keep = False
        try:
            writer = self.writer
            if writer is not None:  # closed: a rotation failed after it closed the segment
                if write and not writer.closed:
                    writer.flush()
                    self._unwritten.clear()
                    keep = _monotonic() >= self._solo_try_at
                head = self._published(self._seen)
        finally:
            if head is not None and keep and self._may_keep():
                self._start_solo(head)
            else:
                shared.release(head)
        if head is not None:
            self._seen = head

    # -- a writer alone keeps the append lock (see synarrow.engine.solo) ------------------------

    def _may_keep(self) -> bool:
        """Whether this handle may keep the append lock now: nothing of it waits for a turn,
        no other handle knocks, and it is the only writer handle (looked at once per
        :data:`~synarrow.engine.solo.RETRY_SECONDS`)."""
        self._solo_try_at = _monotonic() + solo.RETRY_SECONDS
        shared = self.shared
        writer = self.writer
        return (
            shared is not None
            and writer is not None
            and not writer.closed
            and not writer.buffered
            and not self._unwritten
            and not shared.knocked()
            and solo.alone(self.path)
        )

    def _start_solo(self, head: Head) -> None:
        """Keep the append lock after this turn and write as a single writer until another
        handle knocks (the caller holds the lock, and the append lock)."""
        shared = self.shared
        assert shared is not None
        shared.keep(head)
        self._seen = head
        self._solo = True
        self._turns = None
        self.refresh_due = math.inf  # nothing to follow: no one else writes
        self._update_lock_free()
        solo.doorbell().watch(self)

    def _end_solo(self) -> None:
        """Let go of the kept append lock: hand what is buffered to the OS, write the head,
        unlock; turns follow (the caller holds :attr:`lock`)."""
        if not self._solo:
            return
        shared = self.shared
        assert shared is not None
        head = None
        try:
            writer = self.writer
            if writer is not None:
                if not writer.closed:
                    writer.flush()  # buffered entries go where the head says the log ends
                head = self._published(self._seen)
        finally:
            # A head left unwritten stays kept: the next holder reads the end from the files.
            shared.release(head)
            self._solo = False
            self._turns = shared
            self._solo_try_at = _monotonic() + solo.RETRY_SECONDS
            if head is not None:
                self._seen = head
            self.refresh_due = _monotonic() + (self._refresh_every or 0.0)
            self._update_lock_free()

    @property
    def keeping(self) -> bool:
        """Whether this handle keeps the append lock of its shared log between turns."""
        return self._solo

    def knocked(self) -> bool:
        """Whether another writer handle waits for the append lock this handle keeps."""
        shared = self.shared
        return self._solo and shared is not None and shared.knocked()

    def hand_over(self) -> None:
        """Let go of the kept append lock for a handle that knocked (the doorbell's
        thread calls this)."""
        with self.lock:
            if self._solo and not self.closed:
                self._end_solo()

    def forked(self) -> None:
        """In a forked child (no lock may be taken there): this copy of the handle no longer
        keeps the parent's append lock; a turn it takes rebuilds from the files."""
        shared = self.shared
        if shared is not None:
            shared.after_fork()
        self._solo = False
        self._turns = shared
        self._seen = None
        self._held = 0

    def _refresh_writer(self) -> bool:
        """Take a turn on the shared log if another writer changed it (one read of the head
        and one ``stat`` when nothing changed); whether anything did."""
        seen, shared = self._seen, self.shared
        assert shared is not None
        if self._solo:
            return False  # it keeps the lock: no one else wrote
        now = shared.peek()
        if (
            now is not None
            and seen is not None
            and not now.writing
            and (now.position(), now.rules) == (seen.position(), seen.rules)
            and self._manifest_now() == self._manifest_id
        ):
            return False
        self._check_files = True
        try:
            self._enter()
        finally:
            self._check_files = False
        self._leave(write=False)
        return self._seen != seen

    @contextlib.contextmanager
    def checked_turn(self) -> Iterator[None]:
        """A turn (see :attr:`turn`) that also makes sure the key states are built on the
        committed manifest (one ``stat``): where a compaction starts."""
        self._check_files = True
        try:
            with self.turn:
                self._check_files = False
                yield
        finally:
            self._check_files = False

    def lease(self, *, wait: bool = True) -> contextlib.AbstractContextManager[bool]:
        """Hold the compaction lease of a shared log (yields whether it was had; always
        ``True`` for a single writer, which needs none)."""
        if self.shared is None:
            return contextlib.nullcontext(True)
        return self.shared.lease(wait=wait)

    def _published(self, before: Head | None) -> Head:
        """The head after this handle's writes (``before``: the head its turn began
        with), and its replay tail moved past them."""
        writer = self.writer
        assert writer is not None
        file_seq = self.next_seq - len(self._pending) - len(self._unwritten)
        written = writer.size - writer.buffered
        tail = self._tail
        if not self._repair:
            if tail is not None and tail.segment == writer.segment:
                tail.end = written
                tail.entries = file_seq - tail.base_seq
            else:
                self._tail = tail_at(
                    writer.path,
                    writer.segment,
                    written,
                    file_seq - writer.base_seq,
                    writer.base_seq,
                )
        rules = before.rules if before is not None else 0
        generation = self.columnar.manifest.generation
        return Head(writer.segment, written, file_seq, generation, rules)

    def _catch_up(self, head: Head | None) -> None:
        """Bring the key states and the writer up to ``head`` (the caller holds the append
        lock): replay what others appended, or rebuild after a compaction."""
        seen = self._seen
        if head is not None and head.kept:
            # A handle that kept the lock died: where the log ends is in the files only.
            seen = None
            head = head.but(kept=False)
        elif head is not None and head.writing:
            self._cut_dead_turn(head)
            head = head.but(writing=False)
        shared = self.shared
        assert shared is not None
        # While this handle holds the lease no one else can commit a compaction (its own
        # installs what it committed itself). A compaction shows in the head's generation;
        # one whose process died before it said so, in the manifest file, which is looked
        # at when asked (refresh, the start of a compaction).
        generation = self.columnar.manifest.generation
        compacted = (not shared.leased and head is not None and head.generation != generation) or (
            self._check_files and self._manifest_now() != self._manifest_id
        )
        if head == seen and not compacted:
            return  # nobody wrote since this handle's last turn
        if (
            compacted
            or head is None
            or seen is None
            or (head.position() != seen.position() and not self._continue_writer(head))
        ):
            self._rebuild_writer()
        if head is not None and seen is not None and head.rules != seen.rules:
            self._reload_rules()
        self._seen = self._published(head)

    def _cut_dead_turn(self, head: Head) -> None:
        """A writer died in its turn: remove the segments it may have started after the
        head's (they hold no entry); its bytes after the head's end are cut when the
        writer goes on there."""
        log_dir = self.path / LOG_DIR
        for seg in list_log_dir(log_dir).segments:
            if seg <= head.segment:
                continue
            seg_path = segment_path(log_dir, seg)
            try:
                held = len(scan_segment(seg_path).offsets)
            except CorruptionError:
                held = 0 if never_written(seg_path) else -1
            if held:
                raise CorruptionError(
                    f"log segment {seg_path} holds entries after the end its writers "
                    f"agreed on (segment {head.segment})",
                    hint=f"run `synarrow check {self.path}`",
                )
            remove_file(seg_path)

    def _continue_writer(self, head: Head) -> bool:
        """Replay the other writers' entries since this handle's last turn; ``False`` when
        that cannot be done (the caller rebuilds)."""
        tail = self._tail
        if tail is None:
            return False
        pending = self._pending
        known: set[int] | None = None  # the keys with appends not in the log, when asked
        undone: dict[int, list[tuple[int | None, int | None]] | None] = {}

        def waiting(st: KeyState) -> bool:
            nonlocal known
            if known is None:  # made on the first tombstone only: most catch-ups have none
                known = set(map(id, pending.states))
                known.update(id(entry[0]) for entry in self._unwritten)
            return id(st) in known

        def deleted(st: KeyState) -> None:
            if waiting(st):
                undone[id(st)] = None  # every pending entry of the key comes after it

        def cut(st: KeyState, start: int | None, end: int | None) -> None:
            ranges.apply_range(st, start, end)
            if waiting(st) and (id(st) not in undone or undone[id(st)] is not None):
                undone.setdefault(id(st), []).append((start, end))  # type: ignore[union-attr]

        state_for = state_maker(self.states, self.columnar.keys, self._ties_first)
        self._tail = None  # until this succeeded the states may be half-updated
        writer = self.writer
        try:
            if head.segment == tail.segment and writer is not None and not writer.closed:
                # Only the segment this handle writes grew: read it through its descriptor.
                done = continue_segment(
                    writer, tail, head.end, state_for, on_delete=deleted, on_range=cut
                )
            else:
                segments = tuple(range(tail.segment, head.segment + 1))
                done = continue_log(
                    self.path,
                    tail,
                    segments,
                    state_for,
                    self.config,
                    on_delete=deleted,
                    on_range=cut,
                )
        except (OSError, CorruptionError):
            done = None  # a rebuild reads everything again and reports what it finds
        if done is None or (done.tail.segment, done.tail.end) != (head.segment, head.end):
            return False
        if undone:
            # This handle's appends not in the log yet come after the others' entries there:
            # what a tombstone among those removed of them is put back.
            def removed(st: KeyState, ts: int) -> bool:
                spans = undone.get(id(st), [])
                return spans is None or any(
                    (lo is None or lo <= ts) and (hi is None or ts < hi) for lo, hi in spans
                )

            self._restore_unwritten(lambda st: st, removed)
        self._tail = done.tail
        self.log_bytes_closed += done.closed_bytes
        self.last_ts = max(self.last_ts, done.clock)
        self.next_seq = done.next_seq + len(pending) + len(self._unwritten)
        self._adopt(done.tail.segment, done.tail.end, done.tail.base_seq)
        return True

    def _rebuild_writer(self) -> None:
        """Rebuild the key states from the files (after another handle compacted, or when
        the log cannot be followed), keeping the pending appends, and go on writing after
        the log's last verified entry (the caller holds the append lock)."""
        manifest_id = self._manifest_now()
        store = self._files_store()
        try:
            found, rules = self._read_files(store)
            if found.last is None:
                raise CorruptionError(
                    f"database {self.path}: the log holds no segment while a writer is open",
                    hint=f"run `synarrow check {self.path}`",
                )
        except BaseException:
            store.close()
            raise
        pending = self._pending
        old = self.columnar
        self.columnar = self._opened = store
        self.states.clear()  # the same dict, changed in place (see _rebuild)
        self.states.update(found.states)
        self._manifest_id = manifest_id
        self._install_found(found, rules)
        # The appends not in the log yet move to the new states, where reads see them again.
        self._restore_unwritten(lambda st: self.state(st.key), lambda st, ts: True)
        self.next_seq = found.next_seq + len(pending) + len(self._unwritten)
        segment, end, base_seq = found.last
        self._adopt(segment, end, base_seq)
        old.close()

    def _restore_unwritten(
        self,
        state_of: Callable[[KeyState], KeyState],
        lost: Callable[[KeyState, int], bool],
    ) -> None:
        """Put this handle's appends that are not in the log yet (pending numbers, then
        buffered single entries) back into the states ``state_of`` gives for theirs, where
        ``lost(state, ts)`` says the states no longer show them."""
        pending = self._pending
        moved = [state_of(st) for st in pending.states]
        for old, st, ts, value in zip(pending.states, moved, pending.ts, pending.values):
            if lost(old, ts):
                st.add_number(_FLOAT if type(value) is float else Atom.INT, ts, value)
        pending.states[:] = moved
        kept = []
        for was, atom, at, item, payload in self._unwritten:
            st = state_of(was)
            if lost(was, at):
                st.add_single(atom, at, item, payload)
            kept.append((st, atom, at, item, payload))
        self._unwritten[:] = kept

    def _install_found(self, found: Recovered, rules: retention.RetentionRules) -> None:
        """Take what a rebuild found (the states are installed by the caller)."""
        self.next_seq = found.next_seq
        self.log_bytes_closed = found.log_bytes_closed
        self.repaired = found.repaired
        self.dropped_in_repair = found.dropped_in_repair
        self.last_ts = max(self.last_ts, found.clock)
        self.retention = rules
        self.has_retention = bool(rules)
        self._update_lock_free()
        self._tail = found.tail

    def _reload_rules(self) -> None:
        self.retention = retention.load_rules(self.path)
        self.has_retention = bool(self.retention)
        self._update_lock_free()

    def _adopt(self, segment: int, end: int, base_seq: int) -> None:
        """Go on writing at byte ``end`` of ``segment`` (where the others left the log)."""
        writer = self.writable()
        if writer.segment == segment:
            if end != writer.size - writer.buffered:
                writer.sidecar = False  # it knows only its own entries' offsets now
            writer.continue_at(end)
        else:
            unwritten = writer.take_buffer()  # goes where the log now ends
            writer.close()
            self.writer = LogWriter(
                writer.directory,
                segment,
                base_seq,
                existing_size=end,
                buffer_bytes=self.config.write_buffer_bytes,
                sidecar=False,
            )
            self.writer.put_buffer(unwritten)
        self.update_check_at()

    # -- state -----------------------------------------------------------------------------

    def require_open(self) -> None:
        """Raise :class:`DatabaseClosedError` once the engine is closed."""
        if self.closed:
            raise DatabaseClosedError(f"database {self.path} is closed")

    def writable(self) -> LogWriter:
        """The log writer, or the error a write gets (closed, read-only)."""
        if self.closed:
            raise DatabaseClosedError(f"database {self.path} is closed")
        if self.writer is None:
            if self.tag is not None:
                raise ReadOnlyError(
                    f"database {self.path} is open at snapshot {self.tag!r}, which is read-only",
                    hint="write through a handle opened without snapshot=",
                )
            raise ReadOnlyError(f"database {self.path} was opened read-only")
        return self.writer

    def state(self, key: str) -> KeyState:
        """The state of ``key``, created (after validating the key) if it is new."""
        st = self.loaded(key)
        if st is None:
            st = self.states[key] = KeyState(key, check_key(key), ties_first=self._ties_first)
        return st

    def loaded(self, key: str) -> KeyState | None:
        """The state of ``key`` if it has one, made from the columnar index on first use
        (:mod:`synarrow.engine.keystates`); ``None`` for a key the database never held
        (not validated). The caller holds the lock."""
        if type(key) is not str:
            return None
        st = self.states.get(key)
        if st is None:
            st = keystates.load_key(self.states, self.columnar.keys, key, self._ties_first)
        return st

    def load_all(self) -> None:
        """Give every key of the columnar index its state (for work over every key)."""
        keystates.load_all(self.states, self.columnar.keys, self._ties_first)

    def now(self) -> int:
        """Now in microseconds, strictly after every timestamp this engine gave before, so
        entries appended without a timestamp never tie (the caller holds the lock)."""
        ts = _time_ns() // 1000
        if ts <= self.last_ts:
            ts = self.last_ts + 1
        self.last_ts = ts
        return ts

    @property
    def data_version(self) -> tuple[int, int]:
        """``(next sequence, columnar generation)``; changes with every write and compaction."""
        self.follow()
        return (self.next_seq, self.columnar.manifest.generation)

    # -- writes ----------------------------------------------------------------------------

    def append_number(self, key: str, value: float | int, atom: Atom, ts: int | None) -> int:
        """Append one FLOAT or INT entry (``value`` already checked); returns its sequence.

        The hot path: a few microseconds, so :meth:`now`, :meth:`state` and
        ``KeyState.add_number`` are inlined; the value bytes come from :mod:`~synarrow.log.codec`.
        Without ``sync_on_write`` the entry is only recorded: :meth:`encode_pending` writes it
        later, in arrival order.
        """
        with self.lock:
            writer = self.writer  # None once closed (see close())
            if writer is None:
                writer = self.writable()
            defer = self._defer
            if defer and self.next_seq >= self._encode_at:
                self.encode_pending()  # if that fails, this append is not recorded
            shared = None if defer else self._turns
            if shared is not None:
                writer = self._enter()  # may rebuild the states: before the key's is taken
            try:
                st = self.states.get(key) if type(key) is str else None
                if st is None:
                    st = self.state(key)
                if ts is None:
                    ts = _time_ns() // 1000
                    if ts <= self.last_ts:
                        ts = self.last_ts + 1
                    self.last_ts = ts
                sync = False
                if defer:
                    if st.header is None:
                        self._new_writing_key(st)
                    rec_st, rec_ts, rec_value = self._record
                    rec_st(st)
                    rec_ts(ts)
                    rec_value(value)
                else:
                    fb = atom << 4
                    run = 0
                    segment = writer.segment
                    delta = (
                        self.delta
                        and st.delta_atom == atom
                        and st.delta_segment == segment
                        and st.delta_run < DELTA_RESTART
                    )
                    if atom == _FLOAT:
                        vb = _pack_d(value)
                        cur = int.from_bytes(
                            vb, "little"
                        )  # the bits a float delta is taken against
                        if delta:
                            vb = _float_delta(cur, st.delta_prev)
                    else:
                        cur = value  # type: ignore[assignment]  # an int here
                        vb = _int_delta(cur, st.delta_prev) if delta else _pack_q(value)
                    if delta:
                        fb |= FLAG_DELTA
                        run = st.delta_run + 1
                    kb = st.key_bytes
                    header = st.header
                    if header is None:
                        header = st.header = key_entry_struct(len(kb))
                    body = header.pack(ts, len(kb), len(vb), fb, kb) + vb
                    record = _pack_crc(_crc32(body)) + body
                    sync = self.sync_on_write
                    if sync:
                        position = writer.write(record, sync=True)
                        size = position
                    else:
                        size = writer.append_buffered(record)
                        position = 0
                    st.delta_atom = atom
                    st.delta_segment = segment
                    st.delta_prev = cur
                    st.delta_run = run
                seq = self.next_seq
                self.next_seq = seq + 1
                b = st.builder
                if b is None or b.atom != atom:
                    b = st.builder_for(atom)
                b.ts.append(ts)
                b.nums.append(value)  # type: ignore[union-attr]
                st.tail_count += 1
                if ts > st.latest_ts or (ts == st.latest_ts and not st.ties_first):
                    st.latest = value
                    st.latest_atom = atom
                    st.latest_ts = ts
                if not defer and size >= self.check_at:
                    self.after_write(writer)
            finally:
                if shared is not None:
                    self._leave()
        if sync:
            writer.sync_to(position)
        return seq

    def _new_writing_key(self, st: KeyState) -> None:
        """Note a key's first single numeric append in this engine (its entry bound may
        be the largest so far: the pending entries' room is counted with it)."""
        st.header = key_entry_struct(len(st.key_bytes))
        bound = ENTRY_SLACK + len(st.key_bytes)
        if bound > self._entry_bound:
            self._entry_bound = bound
            self._plan_encode()

    def _plan_encode(self) -> None:
        """Set when the next append must encode the pending ones first: once they could
        fill the write buffer or reach :attr:`check_at` (counted at their largest size)."""
        writer = self.writer
        if writer is None:
            return
        room = min(self.config.write_buffer_bytes, self.check_at - writer.size)
        first = self.next_seq - len(self._pending)
        self._encode_at = first + max(1, room // self._entry_bound)

    def encode_pending(self) -> None:
        """Write every pending single numeric append to the log, in arrival order (the
        caller holds the lock; every other write to the log calls this first).

        Handed to the OS at once, all or none: if the write fails, nothing of it is in the
        segment, the appends stay pending (reads still see them) and the error is raised.
        """
        pending = self._pending
        if not pending.states:
            return
        with self.turn:
            writer = self.writable()
            segment = writer.segment
            done = pending.encode(segment, delta=self.delta, restart=DELTA_RESTART)
            writer.write_entries(done.data, done.starts)
            done.apply(segment)
            pending.clear()
            if writer.size >= self.check_at:
                self.after_write(writer)
        self._plan_encode()

    def prepared_writer(self) -> LogWriter:
        """The log writer, after the pending appends were written (caller holds the lock)."""
        if self._pending.states:
            self.encode_pending()
        return self.writable()

    def append_atom(
        self, key: str, atom: Atom, payload: bytes, value: object, ts: int | None
    ) -> int:
        """Append one NULL, TEXT, BYTES or VECTOR entry (``payload``: its raw bytes)."""
        flags = 0
        stored = payload
        cfg = self.config
        if cfg.compression is not None and len(payload) >= cfg.compression_threshold:
            stored, flags = codec.maybe_lz4(payload, cfg.compression_threshold)
        if len(stored) > MAX_VALUE_BYTES:
            raise InvalidValueError(f"value of {len(stored)} bytes is over the 4 GiB limit")
        sync = self.sync_on_write
        with self.lock:
            writer = self.prepared_writer()
            # A writer of a shared log buffers without a turn while the entry fits (at most
            # 4 bytes per character of the key); the next turn writes it.
            bound = ENTRY_HEADER_SIZE + 4 * len(key) + len(stored)
            turn = self._turns is not None and (
                sync
                or writer.buffered + bound >= cfg.write_buffer_bytes
                or writer.size + bound >= self.check_at
            )
            if turn:
                writer = self._enter()
            try:
                st = self.state(key)
                if ts is None:
                    ts = self.now()
                record = encode_entry(ts, st.key_bytes, stored, flags_byte(flags, atom))
                position = writer.write(record, sync=sync)
                seq = self.next_seq
                self.next_seq = seq + 1
                st.add_single(atom, ts, value, payload)
                st.delta_atom = -1
                if self._turns is not None and not turn:
                    self._unwritten.append((st, atom, ts, value, payload))
                elif writer.size >= self.check_at:
                    self.after_write(writer)
            finally:
                if turn:
                    self._leave()
        if sync:
            writer.sync_to(position)
        return seq

    def append_vectors(self, keys: list[str], matrix: np.ndarray, ts: int | None) -> int:
        """Append one VECTOR entry per key, the rows of ``matrix`` (checked, C-contiguous
        float32; keys checked and distinct), all at ``ts`` (``None``: now, now + 1, ...).

        All or nothing under one lock: if writing any entry fails, the log is cut back to
        where the call began and no key changes. One sync at the end with ``sync_on_write``.
        """
        cfg = self.config
        threshold = cfg.compression_threshold if cfg.compression is not None else None
        if threshold is not None and matrix.shape[1] * 4 < threshold:
            threshold = None
        rows = matrix.copy()  # the values reads return: never the caller's buffer
        sync = self.sync_on_write
        with self.lock, self.turn:
            writer = self.prepared_writer()
            states = [self.state(key) for key in keys]
            if not keys:
                return 0
            first = self.now() if ts is None else ts
            if ts is None:
                self.last_ts = first + len(keys) - 1
            mark = writer.mark()
            payloads = []
            position = 0
            try:
                for i, st in enumerate(states):
                    payload = rows[i].tobytes()
                    stored, flags = (
                        (payload, 0) if threshold is None else codec.maybe_lz4(payload, threshold)
                    )
                    at = first if ts is not None else first + i
                    record = encode_entry(at, st.key_bytes, stored, flags_byte(flags, Atom.VECTOR))
                    position = writer.write(record, sync=False)
                    payloads.append(payload)
                if sync:
                    writer.flush()
            except BaseException:
                writer.rollback(mark)  # no key changed yet
                raise
            self.next_seq += len(keys)
            for i, st in enumerate(states):
                st.add_single(
                    Atom.VECTOR, first if ts is not None else first + i, rows[i], payloads[i]
                )
                st.delta_atom = -1
            self.after_write(writer)
        if sync:
            writer.sync_to(position)
        return len(keys)

    def append_batches(self, staged: list[StagedBatch]) -> int:
        """Write converted batches as one all-or-nothing call; returns how many values.

        If writing any entry fails, the log is cut back to where the call began and no key
        changes. With several entries and LZ4 on, the LZ4 work runs on a few threads first.
        """
        cfg = self.config
        threshold = cfg.compression_threshold if cfg.compression is not None else None
        if not cfg.delta and threshold is not None:
            threshold = max(threshold, 1 << 62)  # only delta-coded numbers are worth LZ4 here
        jobs = [
            (i, lo, hi)
            for i, (_, b, _) in enumerate(staged)
            for lo, hi in batches.batch_slices(b, cfg.max_log_file_size)
        ]
        early: list[tuple[list[bytes | memoryview], int] | None] | None = None
        big = [
            n
            for n, (i, lo, hi) in enumerate(jobs)
            if batches.slice_bytes(staged[i][1], lo, hi) >= batches.POOL_MIN_BYTES
        ]
        if threshold is not None and len(big) > 1:
            # Encoded before the lock, offsets unknown: only compressed results are kept (the
            # padding that aligns an uncompressed payload needs its place in the file).
            # Small entries are encoded inline: a thread hand-off costs more than their LZ4.
            early = [None] * len(jobs)
            done = batches.encoder().map(
                lambda n: batches.encode_slice(
                    staged[jobs[n][0]][1], staged[jobs[n][0]][2], jobs[n][1], jobs[n][2], threshold
                ),
                big,
            )
            for n, result in zip(big, done):
                early[n] = result
        sync = self.sync_on_write
        with self.lock, self.turn:
            writer = self.prepared_writer()
            states = [self.state(key) for key, _, _ in staged]
            if not jobs:
                return 0
            now = self.now()
            # Values without timestamps get now, now + 1, ...: per key, continuing across the
            # items of this call that name the same key, and the engine's clock moves past
            # the last of them, so later appends come after all of them.
            starts = [now] * len(staged)
            cursor: dict[str, int] = {}
            for i, (key, b, t) in enumerate(staged):
                if t is None:
                    at = cursor.get(key, now)
                    starts[i] = at
                    cursor[key] = at + b.count
            if cursor:
                self.last_ts = max(self.last_ts, max(cursor.values()) - 1)
            position = 0
            mark = writer.mark()
            placed: list[list[batches.Placed]] = [[] for _ in staged]
            try:
                for n, (i, lo, hi) in enumerate(jobs):
                    st, (_, batch, ts) = states[i], staged[i]
                    payload_at = writer.size + ENTRY_HEADER_SIZE + len(st.key_bytes)
                    done_early = early[n] if early is not None else None
                    if done_early is not None and done_early[1] & FLAG_LZ4:
                        parts, flags = done_early
                    else:
                        limit = threshold if done_early is None else None
                        parts, flags = batches.encode_slice(batch, ts, lo, hi, limit, payload_at)
                    header_ts = int(ts[lo]) if ts is not None else starts[i] + lo
                    overlap = sum(memoryview(p).nbytes for p in parts) >= batches.OVERLAP_HASH_BYTES
                    record = encode_entry_parts(
                        header_ts,
                        st.key_bytes,
                        parts,
                        flags_byte(flags | FLAG_BATCH, batch.atom),
                        checksum=not overlap,
                    )
                    position = writer.write_parts(
                        record,
                        sync=sync,
                        checksum=batches.overlap_checksum(record) if overlap else None,
                    )
                    self.next_seq += 1
                    placed[i].append((payload_at, lo, hi, bool(flags & FLAG_LZ4)))
                # Built before any key changes, so a failure here is cut out like one above.
                visible = [
                    (st, self._tail_chunks(writer, batch, ts, where, start))
                    for st, (_, batch, ts), where, start in zip(states, staged, placed, starts)
                    if where
                ]
            except BaseException:
                # All or nothing: every entry of the call is cut out.
                self.next_seq -= len(writer.offsets) - mark[1]
                writer.rollback(mark)
                raise
            for st, chunks in visible:
                for chunk in chunks:
                    st.add_chunk(chunk)
                st.delta_atom = -1
            self.after_write(writer)
        if sync:
            writer.sync_to(position)
        return sum(batch.count for _, batch, _ in staged)

    def _tail_chunks(
        self,
        writer: LogWriter,
        batch: BatchValues,
        ts: np.ndarray | None,
        placed: list[batches.Placed],
        now: int,
    ) -> list[TailChunk]:
        """The tail chunks that make one appended batch visible (views of the segment file
        for large numeric batches; a copy otherwise, or when the file cannot be mapped)."""
        try:
            chunks = batches.mapped_chunks(writer.path, batch, ts, placed, now)
        except OSError:  # no mapping to be had (address space, descriptors): copy instead
            chunks = None
        if chunks is None:
            chunks = [batches.copied_chunk(batch, ts, now)]
        return chunks

    def delete(self, key: str) -> bool:
        """Write a tombstone for ``key``; whether it held a value."""
        with self.lock, self.turn:
            writer = self.prepared_writer()
            st = self.loaded(key)
            if st is None:
                check_key(key)
                return False
            if st.latest_atom is None:
                return False
            position = writer.write(
                encode_entry(self.now(), st.key_bytes, b"", flags_byte(FLAG_TOMBSTONE, 0)),
                sync=self.sync_on_write,
            )
            self.next_seq += 1
            st.clear()
            st.delta_atom = -1
            self.after_write(writer)
        if self.sync_on_write:
            # ``position`` is in this writer's segment (closed, so synced, if it rotated).
            writer.sync_to(position)
        return True

    def delete_range(self, key: str, start: int | None, end: int | None) -> int:
        """Remove the entries of ``key`` with ``start <= ts < end`` (``None``: unbounded)
        with a range tombstone; returns how many of them reads showed (nothing is written
        when the range holds no stored entry)."""
        with self.lock, self.turn:
            writer = self.prepared_writer()
            st = self.live(key)
            if st is None:
                return 0
            kept, removed = ranges.cut(st, start, end)
            if not removed:
                return 0
            # Counted as reads saw them: the duplicates policy and retention applied.
            seen = _timeline.time_slice(self._visible(st, self.cutoff(key)), start, end)
            position = writer.write(
                encode_entry(
                    self.now(), st.key_bytes, encode_range(start, end), RANGE_TOMBSTONE_FLAGS
                ),
                sync=self.sync_on_write,
            )
            self.next_seq += 1
            ranges.install(st, kept)
            self.after_write(writer)
        if self.sync_on_write:
            writer.sync_to(position)
        return sum(len(c) for c in seen)

    def set_retention(self, pattern: str, max_age: int | None) -> None:
        """Set (``None``: remove) the retention rule of ``pattern``, stored durably."""
        with self.lock, self.turn:
            self.writable()
            rules = self.retention.with_rule(pattern, max_age)
            retention.store_rules(self.path, rules)
            self.retention = rules
            self.has_retention = bool(rules)
            self._update_lock_free()
            seen = self._seen
            if seen is not None:  # other writers of the shared log reload the rules
                self._seen = seen.but(rules=seen.rules + 1)

    # -- rotation and the after-write policy -------------------------------------------------

    def after_write(self, writer: LogWriter) -> None:
        """Rotate the segment or start an automatic compaction when a size limit is reached.

        Appends call this only once the segment passes :attr:`check_at`, so the hot path pays
        one comparison.
        """
        cfg = self.config
        if writer.size >= cfg.max_log_file_size:
            writer = self.rotate()
        if cfg.auto_compact and self.log_bytes_closed + writer.size >= cfg.compact_threshold_bytes:
            self.compactor.start_auto()
        self.update_check_at()

    def update_check_at(self, *, compaction_done: bool = False) -> None:
        """Set the segment size at which the next append must call :meth:`after_write`."""
        writer = self.writer
        if writer is None:
            return
        cfg = self.config
        limit = cfg.max_log_file_size
        if cfg.auto_compact:
            compact_at = cfg.compact_threshold_bytes - self.log_bytes_closed
            if not compaction_done and self.compactor.busy():
                # look again a little later, when this compaction may be done
                compact_at = max(compact_at, writer.size + (1 << 20))
            limit = min(limit, compact_at)
        self.check_at = limit
        self._plan_encode()

    def rotate(self) -> LogWriter:
        """Close the active segment and start the next one (caller holds the lock)."""
        old = self.prepared_writer()
        old.close()
        self.log_bytes_closed += old.size
        self.writer = LogWriter(
            old.directory,
            old.segment + 1,
            self.next_seq,
            existing_size=None,
            buffer_bytes=self.config.write_buffer_bytes,
        )
        return self.writer

    def compaction_done(self, log_bytes_closed: int) -> None:
        """Record the closed segments' size after a compaction (caller holds the lock)."""
        self.log_bytes_closed = log_bytes_closed
        if self.shared is not None:
            self._manifest_id = self._manifest_now()  # committed by this handle
        self.update_check_at(compaction_done=True)

    def flush(self) -> None:
        """Hand buffered writes to the OS."""
        with self.lock, self.turn:
            self.prepared_writer().flush()

    def sync_all(self) -> None:
        """Make every write so far durable."""
        with self.lock, self.turn:
            writer = self.prepared_writer()
            writer.flush()
        writer.sync()

    # -- reads -----------------------------------------------------------------------------

    def live(self, key: str) -> KeyState | None:
        """The state of ``key`` if it holds a value (``key`` validated otherwise)."""
        if self.closed:
            raise DatabaseClosedError(f"database {self.path} is closed")
        st = self.loaded(key)
        if st is None:
            check_key(key)
            return None
        if st.latest_atom is None or (self.has_retention and self._expired(st)):
            return None
        return st

    def exists(self, key: str) -> bool:
        """Whether ``key`` holds a value (``key`` validated otherwise)."""
        self.follow()
        with self.lock:
            return self.live(key) is not None

    def required(self, key: str) -> KeyState:
        """The state of a live ``key``, or :class:`KeyNotFoundError`."""
        st = self.live(key)
        if st is None:
            raise KeyNotFoundError(f"key {key!r} not found (absent or deleted)")
        return st

    def latest(self, key: str, default: Any) -> Any:
        """The value of ``key`` with the greatest timestamp (decoded from the columnar files
        if needed), or ``default`` if it is absent, deleted or expired."""
        self.follow()
        with self.lock:
            st = self.live(key)  # None too when even the latest entry has expired
            return default if st is None else st.resolve_latest()

    def _expired(self, st: KeyState) -> bool:
        """Whether even the latest entry of a key is before its retention cutoff."""
        cutoff = self.cutoff(st.key)
        return cutoff is not None and NO_TS < st.latest_ts < cutoff

    def value_at(self, key: str, at: int, default: Any) -> Any:
        """The value of ``key`` with the greatest timestamp at or before ``at`` (the last
        written of equal ones, the first under ``keep_first``), or ``default``."""
        self.follow()
        with self.lock:
            st = self.live(key)
            if st is None:
                return default
            chunks = self._visible(st, self.cutoff(key))
        found = _timeline.locate_at(chunks, at)
        if found is None:
            return default
        return value_at(*found)

    def latest_of(self, key: str, atom: Atom) -> Any:
        """The latest value of ``key``, which must be an ``atom``."""
        self.follow()
        with self.lock:
            st = self.required(key)
            if self._expired(st):
                raise KeyNotFoundError(f"key {key!r} not found (every entry has expired)")
            if st.latest_atom != atom:
                found = st.latest_atom.name.lower() if st.latest_atom is not None else "none"
                raise TypeMismatchError(
                    f"key {key!r} holds a {found} value, not {atom.name.lower()}"
                )
            return st.resolve_latest()

    def live_keys(self) -> list[str]:
        """The keys holding a value, in no particular order."""
        self.follow()
        with self.lock:
            self.require_open()
            if self.has_retention:
                self.load_all()
                return [k for k, st in self.states.items() if self.live(k) is not None]
            live = [k for k, st in self.states.items() if st.latest_atom is not None]
            return live + keystates.unloaded_keys(self.states, self.columnar.keys)

    def live_count(self) -> int:
        """How many keys hold a value (without listing them)."""
        self.follow()
        with self.lock:
            self.require_open()
            index = self.columnar.keys
            if self.has_retention or not len(index):
                return len(self.live_keys())
            live = sum(1 for st in self.states.values() if st.latest_atom is not None)
            loaded = int(index.positions_of(list(self.states)).sum()) if self.states else 0
            return live + len(index) - loaded

    def parts(self, key: str) -> list[TailChunk]:
        """The history of a live ``key`` as chunks: columnar slices, then the log tail."""
        self.follow()
        with self.lock:
            return self.required(key).parts()

    def cutoff(self, key: str) -> int | None:
        """The retention cutoff of ``key`` now: entries before it are expired (``None``:
        no rule matches; see :mod:`synarrow.engine.retention`)."""
        if not self.has_retention:
            return None
        now = self.frozen_now
        return self.retention.cutoff(key, _time_ns() // 1000 if now is None else now)

    def timeline(
        self,
        key: str,
        start: int | None = None,
        end: int | None = None,
        last: int | None = None,
    ) -> list[TailChunk]:
        """The history of a live ``key`` ordered by timestamp (duplicates policy and
        retention applied), restricted to ``[start, end)`` and then its final ``last``
        entries; zero-copy slices where the history is stored in order."""
        self.follow()
        with self.lock:
            st = self.required(key)
            chunks = self._visible(st, self.cutoff(key))
        if start is None and end is None and last is None:
            return chunks
        return _timeline.nonempty(chunks, _timeline.time_slice(chunks, start, end, last))

    def _ordered(self, st: KeyState) -> list[TailChunk]:
        """The whole ordered timeline of a key (duplicates policy applied, no cutoff), kept
        on its state until the history changes (caller holds the lock)."""
        duplicates = self.config.duplicates
        cached = _cached_timeline(st, duplicates)
        if cached is not None:
            return cached
        chunks = _timeline.ordered(st.parts(), duplicates=duplicates)
        st.timeline_cache = (_timeline_token(st, duplicates), chunks)
        return chunks

    def _visible(self, st: KeyState, not_before: int | None) -> list[TailChunk]:
        """The ordered timeline without the entries before ``not_before``."""
        chunks = self._ordered(st)
        if not_before is None:
            return chunks
        return _timeline.time_slice(chunks, not_before, None)

    def read_snapshot(self, keys: Iterable[str] | None = None) -> ReadSnapshot:
        """An immutable view of the live keys' histories (or of ``keys`` only), taken now."""
        self.follow()
        with self.lock:
            self.require_open()
            if keys is None:
                self.load_all()
                states: Iterable[KeyState] = self.states.values()
            else:
                wanted = [self.loaded(k) for k in keys]
                states = [st for st in wanted if st is not None]
            duplicates = self.config.duplicates
            views = {
                st.key: KeyView(
                    st.key,
                    tuple(st.base),
                    tuple(st.tail_chunks()),
                    duplicates,
                    self.cutoff(st.key),
                    _kept_timeline(st, duplicates),
                )
                for st in states
                if st.latest_atom is not None and not (self.has_retention and self._expired(st))
            }
            return ReadSnapshot(
                self.path,
                self.next_seq,
                self.columnar.manifest.generation,
                views,
                expiring=self.has_retention,
            )

    def stats(self) -> dict[str, Any]:
        """Counts and sizes, for ``SynaDB.stats()``."""
        self.follow()
        with self.lock:
            self.require_open()
            self.load_all()
            store = self.columnar
            live = [st for st in self.states.values() if st.latest_atom is not None]
            if self.has_retention:  # keys whose every point expired are not counted
                live = [st for st in live if not self._expired(st)]
            log_dir = self.path / LOG_DIR
            segments = [] if self.tag is not None else list(log_dir.glob("*.log"))
            if self.writer is None:
                log_bytes = sum(f.stat().st_size for f in segments)
            else:
                log_bytes = self.log_bytes_closed + self.writer.size
            error = self.compactor.last_error
            return {
                "path": str(self.path),
                "keys": len(live),
                "entries": sum(len(st) for st in live),
                "tail_entries": sum(st.tail_count for st in live),
                "log_bytes": log_bytes,
                "log_segments": len(segments),
                "columnar_bytes": store.total_bytes(),
                "columnar_files": len(store.manifest.files),
                "last_compaction": store.manifest.created,
                "last_compaction_error": None if error is None else str(error),
                **store.describe(),
                "next_sequence": self.next_seq,
                "writers": self.config.writers if self.writer is not None else None,
                "writer_processes": (None if self.tag is not None else writer_processes(self.path)),
                "append_lock_kept": None if self.tag is not None else _kept(self.path),
                "readonly": self.readonly,
                "snapshot": self.tag,
                "torn_bytes_cut_on_open": self.torn_bytes,
                "repaired_ranges": list(self.repaired),
                "entries_dropped_in_repair": self.dropped_in_repair,
                "config": self.config,
            }

    # -- compaction and closing --------------------------------------------------------------

    def compact(self, *, full: bool = False) -> dict[str, Any]:
        """Fold the log into columnar files (see ``SynaDB.compact``)."""
        return self.compactor.compact(full=full)

    def close(self) -> None:
        """Wait for a running compaction (none starts any more), close the writer durably,
        release everything."""
        self.compactor.stop()
        with self.lock:
            if self.closed:
                return
            try:
                if self.writer is not None:
                    with self.turn:  # a writer of a shared log writes what it buffered
                        self.encode_pending()  # may rotate: before the engine is closed
                        self.writable().flush()
                    self._end_solo()
            except BaseException:
                self.closed = True
                self._release_files()
                self.writer = None
                raise
            self.closed = True
            try:
                if self.writer is not None:
                    self.writer.close()
            finally:
                self._release_files()
                self.writer = None  # what the append hot path checks

    def _release_files(self) -> None:
        if self.writer is not None and not self.writer.closed:
            self.writer.abandon()
        if self.shared is not None:
            self.shared.close()
            self.shared = None
        if self._lock_file is not None:
            self._lock_file.release()
            self._lock_file = None
        if self._opened is not None:
            self._opened.close()
        if self._tag_reader is not None:
            self._tag_reader.release()
            self._tag_reader = None

    # -- snapshots ---------------------------------------------------------------------------

    def snapshot(self, tag: str, note: str | None) -> tags.TagRecord:
        """Fold the log, then pin the committed columnar state under ``tag`` durably."""
        tags.check_tag(tag)
        tags.check_note(note)
        self.writable()
        tags.require_new_tag(self.pins, tag)  # before any work; again when writing
        with self.lock:
            duplicates = self.config.duplicates
            rules = dict(self.retention.rules)

        def write(manifest: Manifest, now_us: int) -> tags.TagRecord:
            keys, entries = _index_counts(self.columnar.directory, manifest)
            pinned = sum(f.bytes for f in manifest.files) + (manifest.index_bytes or 0)
            record = tags.TagRecord(
                tag=tag,
                created_us=now_us,
                manifest=manifest,
                duplicates=duplicates,
                retention=rules,
                note=note,
                keys=keys,
                entries=entries,
                data_bytes=pinned,
            )
            tags.write_record(self.pins, record)
            return record

        return self.compactor.pin(write)

    def current_manifest(self) -> Manifest:
        """The database's committed manifest now (for a snapshot or read-only handle, read
        from disk: the writer may have compacted since)."""
        if self.writer is not None:
            return self.columnar.manifest
        directory = self.path / COLUMNAR_DIR
        return read_manifest(directory) if directory.exists() else Manifest()

    def snapshots(self) -> list[tags.TagRecord]:
        """Every snapshot's record, oldest first."""
        self.require_open()
        return tags.list_records(self.pins)

    def snapshot_record(self, tag: str) -> tags.TagRecord:
        """The record of ``tag`` (:class:`SnapshotNotFoundError` if there is none)."""
        self.require_open()
        return tags.read_record(self.pins, tags.check_tag(tag))

    def drop_snapshot(self, tag: str) -> list[str]:
        """Remove ``tag`` and the columnar files only it kept; returns their names.

        Refused with :class:`SnapshotInUseError` while a handle (of any process) reads it.
        """
        tags.check_tag(tag)
        self.writable()
        reader = tags.TagReader(self.pins, tag)
        reader.exclusive()
        try:
            tags.read_record(self.pins, tag)  # a damaged record is reported, not dropped blind
            with self.compactor.exclusive():
                tags.remove_record(self.pins, tag)
                return self.columnar.remove_unreferenced()
        finally:
            reader.release()


def _kept(path: Path) -> bool:
    """Whether a writer that is alone keeps the append lock of the database now."""
    try:
        head = read_head(path)
    except (OSError, CorruptionError):
        return False
    return head is not None and head.kept


def _index_counts(directory: Path, manifest: Manifest) -> tuple[int, int]:
    """Keys and stored entries of the index ``manifest`` names."""
    if not manifest.index:
        return 0, 0
    rows = read_index(directory / manifest.index, manifest)
    counts = rows.arrays["count"]
    return len(set(rows.keys)), int(counts.sum()) if len(counts) else 0


def _timeline_token(st: KeyState, duplicates: str) -> tuple[int, int, str]:
    """What a kept ordered timeline was made from: entries, history version, policy."""
    return (len(st), st.version, duplicates)


def _cached_timeline(st: KeyState, duplicates: str) -> list[TailChunk] | None:
    """The key's kept ordered timeline if it is still that of its history, else ``None``."""
    cached = st.timeline_cache
    if cached is not None and cached[0] == _timeline_token(st, duplicates):
        return cached[1]
    return None


def _kept_timeline(st: KeyState, duplicates: str) -> tuple[TailChunk, ...] | None:
    """:func:`_cached_timeline` as a tuple, for a snapshot's ``KeyView`` (taken after
    ``tail_chunks()`` sealed the builder)."""
    cached = _cached_timeline(st, duplicates)
    return None if cached is None else tuple(cached)


class _Turn:
    """``with engine.turn:`` (see :attr:`Engine.turn`): a writer's turn on a shared log."""

    __slots__ = ("_engine",)

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def __enter__(self) -> None:
        engine = self._engine
        if engine._turns is not None:
            engine._enter()

    def __exit__(self, *exc: object) -> None:
        engine = self._engine
        if engine._turns is not None:
            engine._leave()
