"""Several writer processes on one log: the append lock, the shared head, the compaction lease.

Under ``DbConfig(writers="many")`` every writer handle appends to the one segment series of
the database, one at a time. Before it writes, a handle takes an exclusive ``flock`` on
``WRITERS`` in the database directory (:meth:`SharedLog.acquire`) and reads the *head*
kept in that file: the active segment, the byte after its last entry, the next sequence
number, the columnar generation the writers are on and how often the retention rules
changed. A head
that differs from the one the handle last saw means others wrote: the handle reads their
entries first (or, after a compaction, rebuilds its key states), then writes after them,
hands everything to the OS, writes the new head (:meth:`SharedLog.release`) and unlocks.
Every entry of the log is therefore written by a handle that knew every entry before it,
and the log is exactly what one writer would have written.

The head is a hint about files that are themselves the truth: it is never fsynced, is
checked against the files it names, and one that is unreadable or names files that do not
fit makes the handle rebuild from the files. While a handle holds the lock its head says
*writing*; a head still saying so when the lock is next taken was left by a process that
died in the middle (the lock went with it), and the next holder cuts what it may have
written after the head's end before writing (:attr:`Head.writing`).

A writer that finds itself the only writer handle of the database keeps the append lock
between its turns (:meth:`SharedLog.keep`), so its appends cost what a single writer's do;
its head then says *kept* (its end is not kept up to date). A handle that finds the lock
taken knocks while it waits (a shared ``flock`` on ``KNOCK``); the keeper watches for that
(:meth:`SharedLog.knocked`), writes the head and lets go. A kept head found when the lock is
next taken was left by a keeper that died: the next holder reads the log's end from the
files.

``COMPACTING`` is the compaction lease: one ``flock`` that a handle holds while it folds the
log into columnar files, removes files of the columnar directory or writes a snapshot, so
only one process does that at a time (:meth:`SharedLog.lease`).

The files are opened without following links, and one with other hard links is refused.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from synarrow.fileio import open_fd, require_single_link

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["HEAD_NAME", "KNOCK_NAME", "LEASE_NAME", "Head", "SharedLog", "read_head"]

#: The file holding the shared head; its ``flock`` is the append lock.
HEAD_NAME = "WRITERS"
#: The file whose ``flock`` is the compaction lease.
LEASE_NAME = "COMPACTING"
#: The file a handle waiting for the append lock holds a shared ``flock`` on.
KNOCK_NAME = "KNOCK"

_MAGIC = b"SYNHEAD1"
# magic, segment, end, next_seq, generation, rules, writing, spare
_HEAD = struct.Struct("<8sQQQQQQQ")
_WRITING_AT = 48  # the writing flag's word: 0 written, 1 being written, 2 kept
_WRITING = (1).to_bytes(8, "little")


class Head(NamedTuple):
    """Where the shared log stands, as the last writer left it."""

    segment: int
    """The active segment."""
    end: int
    """The byte after the last entry of the active segment."""
    next_seq: int
    """The sequence number of the next entry."""
    generation: int
    """The columnar generation (manifest) the writers' key states are built on: a handle
    whose own is another rebuilds them."""
    rules: int
    """Counts the changes of the retention rules."""
    writing: bool = False
    """Set while a handle holds the append lock: found set when the lock is taken, the
    holder before died in the middle of its turn."""
    kept: bool = False
    """Set while a handle that is the only writer keeps the append lock between its turns
    (:meth:`SharedLog.keep`): the other fields are from when it began to. Found set when
    the lock is taken, that handle died; the log's end is in the files."""

    def position(self) -> tuple[int, int, int]:
        """``(segment, end, next_seq)``."""
        return (self.segment, self.end, self.next_seq)

    def but(self, **changes: Any) -> Head:
        """A copy with some fields changed."""
        return self._replace(**changes)


class SharedLog:
    """The append lock, head and compaction lease of one writer handle (one descriptor
    each, so two handles in one process exclude each other too)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        fds: list[int] = []
        try:
            for name, what in (
                (HEAD_NAME, "writers file"),
                (LEASE_NAME, "compaction lease file"),
                (KNOCK_NAME, "knock file"),
            ):
                fds.append(_open_lock_file(directory / name, what))
        except BaseException:
            for fd in fds:
                os.close(fd)
            raise
        self._fd, self._lease_fd, self._knock_fd = fds
        self._fds = threading.Lock()  # knocked() from another thread against close()
        self.closed = False
        self.held = False
        self.leased = False

    def acquire(self) -> Head | None:
        """Take the append lock (waiting for the holder, knocking while it waits) and return
        the head, marked as being written; ``None`` if the file holds no valid head (new,
        or damaged)."""
        if fcntl is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                # Tell a holder that keeps the lock (keep()) that this handle waits.
                fcntl.flock(self._knock_fd, fcntl.LOCK_SH)
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX)
                finally:
                    fcntl.flock(self._knock_fd, fcntl.LOCK_UN)
        self.held = True
        try:
            raw = os.pread(self._fd, _HEAD.size, 0)
            head = _parse(raw)
            if head is not None and not head.kept:  # a kept head stays so until replaced
                os.pwrite(self._fd, _WRITING, _WRITING_AT)
        except BaseException:
            self.release(None)
            raise
        return head

    def release(self, head: Head | None) -> None:
        """Write ``head`` (``None``: leave the file as it is; a kept head stays kept) and
        drop the append lock."""
        try:
            if head is not None:
                os.pwrite(self._fd, _pack(head, writing=False), 0)
        finally:
            self.held = False
            if fcntl is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def keep(self, head: Head) -> None:
        """End a turn without letting go of the append lock: write ``head`` marked *kept*
        (see :attr:`Head.kept`); :meth:`release` lets go later."""
        os.pwrite(self._fd, _pack(head.but(kept=True), writing=False), 0)

    def knocked(self) -> bool:
        """Whether another handle waits for the append lock (knocks); safe to call from
        another thread (``False`` once closed)."""
        with self._fds:
            if self.closed or fcntl is None:
                return False
            try:
                fcntl.flock(self._knock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(self._knock_fd, fcntl.LOCK_UN)
            return False

    def after_fork(self) -> None:
        """In a forked child: stop sharing the parent's hold on the append lock (the child
        gets a descriptor of its own, unlocked), so the lock goes with the parent."""
        fd = _open_lock_file(self.directory / HEAD_NAME, "writers file")
        os.dup2(fd, self._fd)
        os.close(fd)
        self.held = False

    def peek(self) -> Head | None:
        """The head as it is now, without the lock (may be a turn in progress)."""
        return _parse(os.pread(self._fd, _HEAD.size, 0))

    @contextlib.contextmanager
    def lease(self, *, wait: bool = True) -> Iterator[bool]:
        """Hold the compaction lease while the block runs; yields whether it was had
        (``wait=False``: ``False`` at once when another handle holds it)."""
        if self.leased:
            yield True  # re-entered by the holder
            return
        if fcntl is not None:
            try:
                fcntl.flock(self._lease_fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
        self.leased = True
        try:
            yield True
        finally:
            self.leased = False
            if fcntl is not None:
                fcntl.flock(self._lease_fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Close the files (which drops any lock still held)."""
        with self._fds:
            if self.closed:
                return
            self.closed = True
            for fd in (self._fd, self._lease_fd, self._knock_fd):
                os.close(fd)
        self.held = self.leased = False


def read_head(directory: Path) -> Head | None:
    """The head of the database at ``directory`` as it is now, taking no lock and creating
    nothing (``None``: no head, or one that does not parse)."""
    try:
        fd = open_fd(directory / HEAD_NAME, os.O_RDONLY, what="writers file")
    except FileNotFoundError:
        return None
    try:
        return _parse(os.pread(fd, _HEAD.size, 0))
    finally:
        os.close(fd)


def _open_lock_file(path: Path, what: str) -> int:
    fd = open_fd(path, os.O_RDWR | os.O_CREAT, 0o644, what=what)
    try:
        require_single_link(fd, path, what=what)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _pack(head: Head, *, writing: bool) -> bytes:
    return _HEAD.pack(
        _MAGIC,
        head.segment,
        head.end,
        head.next_seq,
        head.generation,
        head.rules,
        2 if head.kept else int(writing),
        0,
    )


def _parse(raw: bytes) -> Head | None:
    if len(raw) != _HEAD.size:
        return None
    magic, segment, end, next_seq, generation, rules, writing, _ = _HEAD.unpack(raw)
    if magic != _MAGIC or writing > 2 or segment >= 1 << 62 or end >= 1 << 62:
        return None
    return Head(segment, end, next_seq, generation, rules, writing == 1, writing == 2)
