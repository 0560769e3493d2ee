"""The single-writer lock: an OS advisory lock on ``LOCK`` in the database directory.

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

__all__ = ["WriterLock"]


class WriterLock:
    """Exclusive lock held by the one writer of a database."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "LOCK"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`DatabaseLockedError` at once."""
        fd = open_fd(self.path, os.O_RDWR | os.O_CREAT, 0o644, what="lock file")
        try:
            require_single_link(fd, self.path, what="lock file")
        except BaseException:
            os.close(fd)
            raise
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                raise DatabaseLockedError(
                    f"database {self.path.parent} is open for writing elsewhere"
                ) from exc
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (closing the file releases it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
