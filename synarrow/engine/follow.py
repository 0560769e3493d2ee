"""Read-only handles following the writer: what tells a reader that the files changed.

A read-only handle reads the state at open. :meth:`Engine.refresh
<synarrow.engine.engine.Engine.refresh>` brings it up to what the one writer has handed to
the OS since; :func:`mark` is the cheap test it starts with. The mark names, without
following links, the identity (inode, modification time, size) of ``columnar/MANIFEST``
(replaced by rename on every compaction) and of the retention file, the live log segment
numbers and the size and modification time of the last segment (every append, delete and
range delete grows it). When the mark is unchanged nothing was written; when only the log
grew the engine replays its new entries, else it rebuilds its key states the way open does.
A log that ended in a partial entry keeps the reader looking for a while (:func:`settled`):
the writer may complete it in place.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeAlias

from synarrow.columnar.manifest import MANIFEST_NAME
from synarrow.engine.directory import COLUMNAR_DIR, LOG_DIR
from synarrow.engine.retention import RETENTION_NAME
from synarrow.log.names import list_log_dir, segment_path

__all__ = [
    "SETTLE_SECONDS",
    "Mark",
    "Ticker",
    "files_of",
    "manifest_check",
    "mark",
    "settled",
    "ticker",
]

#: ``(manifest identity, retention identity, segment numbers, last segment identity)``.
Mark: TypeAlias = tuple[object, object, tuple[int, ...], object]

#: For how long after its last change a last segment that ends in a partial entry is read
#: again by every refresh. The writer may still be completing that entry: a large batch
#: entry's checksum is written after its bytes, in place, which changes no size and, within
#: the file system's timestamp granularity, maybe no modification time either.
SETTLE_SECONDS = 2.0

_UNSETTLED = ("unsettled",)


def _identity(path: Path | str) -> tuple[int, int, int] | None:
    """Inode, modification time and size of ``path`` (not followed), or ``None``."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def files_of(path: Path) -> object:
    """The part of a mark that names the committed columnar files (the manifest)."""
    return _identity(path / COLUMNAR_DIR / MANIFEST_NAME)


def manifest_check(path: Path) -> Callable[[], object]:
    """:func:`files_of` for ``path`` as a function of no arguments (the path built once:
    a writer of a shared log calls it on every turn)."""
    name = str(path / COLUMNAR_DIR / MANIFEST_NAME)
    return functools.partial(_identity, name)


def mark(path: Path) -> Mark:
    """What the database at ``path`` looks like to a reader now (a few ``stat`` calls).

    Raises :class:`~synarrow.errors.CorruptionError` for a log directory holding a link or
    a name synarrow does not write, as opening does.
    """
    log_dir = path / LOG_DIR
    segments = tuple(list_log_dir(log_dir).segments)
    last = _identity(segment_path(log_dir, segments[-1])) if segments else None
    return (files_of(path), _identity(path / RETENTION_NAME), segments, last)


def settled(seen: Mark, unread_tail: int) -> Mark:
    """The mark to keep after reading the files as ``seen`` shows them: ``seen`` itself,
    or, when the last segment ended in ``unread_tail`` bytes of a partial entry and changed
    less than :data:`SETTLE_SECONDS` ago, a mark no later one equals (the next refresh reads
    again)."""
    last = seen[3]
    if not unread_tail or not isinstance(last, tuple):
        return seen
    if time.time_ns() - last[1] >= SETTLE_SECONDS * 1e9:
        return seen  # left by a writer that stopped: a writer cuts it when it opens
    return (seen[0], seen[1], seen[2], _UNSETTLED)


class Follower(Protocol):
    """What the :class:`Ticker` needs of a handle that follows others' writes."""

    refresh_due: float
    """The :func:`time.monotonic` time at which its next read must refresh it."""
    lock_free: bool
    """Whether its ``get`` may read the key states without the lock (set ``False`` once
    :attr:`refresh_due` has passed, so the next ``get`` takes the path that refreshes)."""


class Ticker:
    """One background thread per process that clears :attr:`Follower.lock_free` of the
    handles it watches when their refresh is due, so the lock-free ``get`` of a handle that
    follows others costs one attribute test instead of a clock call. The thread sleeps
    until the earliest due time (or until :meth:`watch` gives it one) and holds only weak
    references."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._handles: weakref.WeakSet[Follower] = weakref.WeakSet()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def watch(self, handle: Follower) -> None:
        """Clear ``handle.lock_free`` at ``handle.refresh_due`` (it was just set)."""
        with self._cond:
            self._handles.add(handle)
            thread = self._thread
            if thread is None or self._pid != os.getpid() or not thread.is_alive():
                self._pid = os.getpid()  # a forked child starts its own
                self._thread = threading.Thread(
                    target=self._run, name="synarrow-refresh-ticker", daemon=True
                )
                self._thread.start()
            else:
                self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                wake = math.inf
                for handle in list(self._handles):
                    if not handle.lock_free:
                        continue
                    if now >= handle.refresh_due:
                        handle.lock_free = False
                    else:
                        wake = min(wake, handle.refresh_due)
                self._cond.wait(None if wake == math.inf else wake - now)


_TICKER = Ticker()


def ticker() -> Ticker:
    """The process's :class:`Ticker`."""
    return _TICKER
