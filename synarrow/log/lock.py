"""The writer lock: an OS advisory lock on ``LOCK`` in the database directory.

A writer under ``DbConfig(writers="single")`` holds it exclusively; writers under
``writers="many"`` hold it shared (they coordinate through :mod:`synarrow.log.shared`), so
either kind refuses the other.

``flock`` locks belong to the open file, so a second writer handle is refused even inside
the same process, and the lock vanishes with the process (no stale lock after ``kill -9``).
Read-only handles take no lock and never block the writer. ``LOCK`` is opened without
following symlinks, and one with other hard links is not written: a link planted in its
place is refused
(:class:`~synarrow.errors.CorruptionError`), never written through.
"""

from __future__ import annotations

import os
from pathlib import Path

from synarrow.errors import DatabaseLockedError
from synarrow.fileio import open_fd, require_single_link

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["WriterLock", "writer_processes"]


class WriterLock:
    """The lock every writer handle of a database holds while it is open."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "LOCK"
        self._fd: int | None = None

    def acquire(self, *, shared: bool = False) -> None:
        """Take the lock (``shared``: with the other ``writers="many"`` handles) or raise
        :class:`DatabaseLockedError` at once."""
        fd = open_fd(self.path, os.O_RDWR | os.O_CREAT, 0o644, what="lock file")
        try:
            require_single_link(fd, self.path, what="lock file")
        except BaseException:
            os.close(fd)
            raise
        if fcntl is not None:
            try:
                fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                raise DatabaseLockedError(
                    f"database {self.path.parent} is open for writing elsewhere"
                    + (" by a writer that refuses others (writers='single')" if shared else ""),
                    hint="close the other writer, or open every writer with "
                    "DbConfig(writers='many')",
                ) from exc
        if not shared:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (closing the file releases it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def writer_processes(directory: Path) -> list[int] | None:
    """The ids of the processes holding the writer lock of the database at ``directory``
    now (read from ``/proc/locks``; ``None`` where the system does not say). Each writer
    handle counts once, so a process with two handles is listed twice."""
    try:
        st = os.stat(directory / "LOCK", follow_symlinks=False)
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            lines = f.readlines()
    except FileNotFoundError:
        return [] if os.path.exists("/proc/locks") else None
    except OSError:
        return None
    want = (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    pids = []
    for line in lines:
        fields = line.split()
        if len(fields) < 6 or fields[1] != "FLOCK" or "->" in fields:
            continue  # a waiter's line is marked "->"
        try:
            major, minor, inode = fields[5].split(":")
            found = (int(major, 16), int(minor, 16), int(inode))
            pid = int(fields[4])
        except ValueError:
            continue
        if found == want:
            pids.append(pid)
    return sorted(pids)
