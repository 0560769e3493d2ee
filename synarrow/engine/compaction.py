"""Compaction orchestration: when the log is folded into columnar files, and by whom.

:class:`Compactor` runs one compaction at a time, either asked for (``compact()``) or
automatically on a background thread once the log passes ``compact_threshold_bytes``. A
compaction holds the engine's lock only to switch the log to a new segment and snapshot the
keys, and again to install the new slices and remove the folded segments; writers go on
meanwhile. An automatic compaction that fails leaves the log intact: the error is logged,
shown in ``stats()`` and raised (once) by the next explicit ``compact()`` or
``wait_for_compaction()``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

import numpy as np

from synarrow.columnar.manifest import Manifest
from synarrow.columnar.slices import BaseRef
from synarrow.columnar.store import ColumnarStore
from synarrow.config import DbConfig
from synarrow.errors import CompactionError, DatabaseClosedError
from synarrow.fileio import remove_file
from synarrow.log.memtable import BaseChunk, KeyState
from synarrow.log.names import list_log_dir, segment_path
from synarrow.log.sidecar import remove_sidecar
from synarrow.log.writer import LogWriter

__all__ = ["AUTO_RETRY_SECONDS", "CompactionHost", "Compactor"]

_logger = logging.getLogger("synarrow")
#: An automatic compaction that finds another process of a shared log compacting tries
#: again after this many seconds at the earliest.
AUTO_RETRY_SECONDS = 1.0
T = TypeVar("T")


class CompactionHost(Protocol):
    """What a :class:`Compactor` needs of the engine it compacts."""

    path: Path
    config: DbConfig
    lock: threading.RLock
    states: dict[str, KeyState]
    columnar: ColumnarStore
    next_seq: int
    last_ts: int
    writer: LogWriter | None

    def rotate(self) -> LogWriter:
        """Close the active segment and start the next one (caller holds the lock)."""
        ...

    def compaction_done(self, log_bytes_closed: int) -> None:
        """Record the closed segments' size after a compaction (caller holds the lock)."""
        ...

    @property
    def turn(self) -> contextlib.AbstractContextManager[None]:
        """The engine's turn on a shared log (nothing for a single writer)."""
        ...

    def lease(self, *, wait: bool = True) -> contextlib.AbstractContextManager[bool]:
        """The compaction lease of a shared log (yields whether it was had)."""
        ...

    def checked_turn(self) -> contextlib.AbstractContextManager[None]:
        """A turn that also checks that the key states are built on the committed
        manifest (nothing for a single writer)."""
        ...

    def cutoff(self, key: str) -> int | None:
        """The retention cutoff of ``key`` now (``None``: none)."""
        ...

    @property
    def has_retention(self) -> bool:
        """Whether retention rules exist (then every key is looked at: it may expire)."""
        ...

    def load_all(self) -> None:
        """Give every key of the columnar index its state (caller holds the lock)."""
        ...


class Compactor:
    """Runs the compactions of one engine, one at a time."""

    def __init__(self, host: CompactionHost) -> None:
        self._host = host
        self._running = threading.Lock()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None  # the last failed automatic compaction
        self._pending = False  # not yet raised by an explicit call
        self._stopped = False  # the engine is closing: no compaction may start
        # An automatic compaction that found another process compacting: none starts
        # before this time.monotonic() (appends would start a thread each otherwise).
        self._not_before = 0.0

    @property
    def last_error(self) -> BaseException | None:
        """The last automatic compaction's failure, until a compaction succeeds."""
        return self._error

    def busy(self) -> bool:
        """Whether a compaction is running or an automatic one is about to (or, of a
        shared log, another process compacts: automatic ones wait a while)."""
        thread = self._thread
        return (
            self._running.locked()
            or (thread is not None and thread.is_alive())
            or time.monotonic() < self._not_before
        )

    def start_auto(self) -> None:
        """Start an automatic compaction on a background thread, unless one is busy."""
        if self._stopped or self.busy():
            return
        # Started before it is published: join() from another thread (close) never sees a
        # thread that is not started yet; one that starts after stop() finds _stopped set.
        thread = threading.Thread(target=self._auto, name="synarrow-auto-compact", daemon=True)
        thread.start()
        self._thread = thread

    def _auto(self) -> None:
        try:
            if not self.run(full=False, wait=False):
                self._not_before = time.monotonic() + AUTO_RETRY_SECONDS
        except DatabaseClosedError:
            pass  # the engine closed before this compaction could start: nothing to do
        except Exception as exc:
            with self._host.lock:
                self._error = exc
                self._pending = True
            path = self._host.path
            _logger.error("automatic compaction of %s failed: %s", path, exc, exc_info=exc)

    def raise_pending(self) -> None:
        """Raise :class:`CompactionError` (once) for an automatic compaction that failed."""
        with self._host.lock:
            exc, pending = self._error, self._pending
            self._pending = False
        if pending and exc is not None:
            raise CompactionError(
                f"the automatic compaction of {self._host.path} failed: {exc}",
            ) from exc

    def compact(self, *, full: bool) -> dict[str, Any]:
        """An explicit compaction: a pending automatic failure is raised first."""
        self.raise_pending()
        return self.run(full=full)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for a running automatic compaction; ``False`` if ``timeout`` passed."""
        if not self.join(timeout):
            return False
        self.raise_pending()
        return True

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the background thread (never from itself); whether it is done."""
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def stop(self) -> None:
        """No compaction starts from now on; returns once the running one (automatic or
        explicit, on any thread) is done. Called by the engine's ``close`` before it
        releases the files and the writer lock, so no compaction outlives the handle."""
        self._stopped = True
        self.join()
        with self._running:
            pass  # a compaction that started before the flag was set has finished

    def run(self, *, full: bool, wait: bool = True) -> dict[str, Any]:
        """Fold the log into a new columnar generation; returns what was done (``{}``
        when ``wait=False`` and another writer of a shared log is compacting)."""
        with self.exclusive(wait=wait) as had:
            return self._run(full=full) if had else {}

    @contextlib.contextmanager
    def exclusive(self, *, wait: bool = True) -> Iterator[bool]:
        """Hold off every compaction (waiting for a running one; of a shared log, in any
        process) while the block runs: for work on the committed files (a snapshot, a
        drop that removes files). Yields ``False`` (with ``wait=False``) when another
        process holds the compaction lease."""
        with self._running:
            if self._stopped:
                raise DatabaseClosedError(f"database {self._host.path} is closed")
            with self._host.lease(wait=wait) as had:
                yield had

    def pin(self, write: Callable[[Manifest, int], T]) -> T:
        """Fold what the log holds since the last compaction (nothing when it holds
        nothing), then call ``write(manifest, now_us)`` with the committed manifest, while no
        other compaction can run. ``now_us`` (taken after the fold, so at or after every
        retention cutoff the fold applied) is the moment the snapshot's cutoffs are frozen at.
        """
        self.raise_pending()
        host = self._host
        with self.exclusive():
            with host.lock, host.turn:
                folded = host.next_seq == host.columnar.manifest.next_seq
            if not folded:
                self._run(full=False)
            return write(host.columnar.manifest, time.time_ns() // 1000)

    def _run(self, *, full: bool) -> dict[str, Any]:
        """The compaction itself (the caller holds :meth:`exclusive`)."""
        # Imported here: most handles never compact, and opening one stays a little faster.
        from synarrow.columnar import compact as columnar_compact

        host = self._host
        with host.lock, host.checked_turn():
            writer = host.rotate()
            first_segment, next_seq = writer.segment, host.next_seq
            clock = host.last_ts
            index = host.columnar.keys
            # Every key is looked at for a full compaction, under retention rules (entries
            # may have expired) and for an index without timestamps (rewritten sorted);
            # otherwise only keys with a log tail or deleted are, and the index rows of
            # the rest are carried over as they are (see keystates' invariant).
            every = full or host.has_retention or not index.timed
            if every:
                host.load_all()
            carry = np.full(len(index), not every, dtype=bool)
            snaps: list[columnar_compact.KeySnapshot] = []
            seen: dict[str, tuple[KeyState, int, int]] = {}
            dropped: list[tuple[str, KeyState, int]] = []
            for key, st in list(host.states.items()):
                if not (every or st.tail_count or st.latest_atom is None):
                    continue  # unchanged since it was loaded from the index: carried
                if not every and len(index):
                    position = index.find(st.key_bytes)
                    if position >= 0:
                        carry[position] = False
                if st.latest_atom is None:
                    if not st.tail_count:
                        dropped.append((key, st, st.epoch))
                    continue
                base = cast(list[BaseRef], list(st.base))
                snap = columnar_compact.KeySnapshot(
                    key, base, st.tail_chunks(), st.tail_count, host.cutoff(key)
                )
                snaps.append(snap)
                seen[key] = (st, st.epoch, snap.tail_count)
        result = columnar_compact.write_generation(
            host.columnar,
            snaps,
            first_segment=first_segment,
            next_seq=next_seq,
            compression=host.config.columnar_compression,
            full=full,
            duplicates=host.config.duplicates,
            clock=clock,
            carry=carry,
        )
        with host.lock, host.turn:
            for key, refs in result.refs.items():
                if key in seen:
                    st, epoch, folded = seen[key]
                    if st.epoch == epoch:  # not deleted while we were writing
                        st.drop_tail_prefix(folded)
                        st.set_base(cast(list[BaseChunk], refs))
                    continue
                # moved from a dying file: a state loaded meanwhile (or before, unchanged)
                # that still holds the old slices gets the new ones
                moving = host.states.get(key)
                before = [r.identity for r in result.moved.get(key, [])]
                if moving is not None and [r.identity for r in moving.base] == before:
                    moving.set_base(cast(list[BaseChunk], refs))
            for key, st, epoch in dropped:
                if (
                    host.states.get(key) is st
                    and st.epoch == epoch
                    and not st.tail_count
                    and st.latest_atom is None
                ):  # still deleted: nothing of it is in the new index
                    del host.states[key]
            removed = _remove_folded(host.path / "log", first_segment)
            active = host.writer.segment if host.writer is not None else first_segment
            host.compaction_done(_closed_bytes(host.path / "log", first_segment, active))
            self._error = None
            self._pending = False
        return {
            "generation": result.manifest.generation,
            "keys": len(host.columnar.keys),
            "keys_rewritten": result.keys_rewritten,
            "keys_appended": result.keys_appended,
            "entries_written": result.entries_written,
            "files_written": result.files_written,
            "files_removed": result.files_removed,
            "log_segments_removed": removed,
        }


def _remove_folded(log_dir: Path, first_segment: int) -> int:
    """Remove the segments (and sidecars) before ``first_segment``; returns how many."""
    removed = 0
    for seg in list_log_dir(log_dir).segments:
        if seg < first_segment:
            remove_file(segment_path(log_dir, seg))
            remove_sidecar(segment_path(log_dir, seg))
            removed += 1
    return removed


def _closed_bytes(log_dir: Path, first_segment: int, active: int) -> int:
    """Bytes of the live segments before the active one."""
    return sum(
        os.lstat(segment_path(log_dir, seg)).st_size
        for seg in list_log_dir(log_dir).segments
        if first_segment <= seg < active
    )
