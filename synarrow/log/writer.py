"""Appending entries to the active log segment: buffering, fsync policy, group commit.

The caller serialises calls to :meth:`LogWriter.write` (the database holds its lock);
:meth:`LogWriter.sync_to` is called outside that lock, so threads that write durably at the
same time share fsyncs: one thread syncs for everyone whose bytes were written before the
fsync started (group commit).

A write that the OS refuses (disk full, file size limit) is cut back out of the file with
``ftruncate``, so the segment never holds a half entry in front of later ones, and the error
is raised as :class:`~synarrow.errors.StorageFullError`. Buffered bytes that failed to reach
the file stay buffered and are written by the next flush.
"""

from __future__ import annotations

import errno
import os
import threading
import time
from array import array
from collections import deque
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

from synarrow.errors import CorruptionError, StorageFullError
from synarrow.fileio import fsync_directory, open_fd, require_single_link
from synarrow.log.format import encode_file_header
from synarrow.log.names import segment_path
from synarrow.log.sidecar import remove_sidecar, write_sidecar

__all__ = ["GROUP_WINDOW", "SIDECAR_MAX_AVERAGE_ENTRY", "LogWriter", "sync_data"]

# Segments whose entries average more than this get no sidecar (see close()).
SIDECAR_MAX_AVERAGE_ENTRY = 4096
# Longest a group-commit leader waits for the threads of its previous group to join.
GROUP_WINDOW = 0.0002
_SPACE_ERRNOS = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


_HAS_FDATASYNC = hasattr(os, "fdatasync")


def sync_data(fd: int) -> None:
    """Make a file's data durable: ``fdatasync`` where there is one (it still flushes the
    file size an append changed, but skips timestamps), else ``fsync``."""
    if _HAS_FDATASYNC:
        os.fdatasync(fd)
    else:  # pragma: no cover - macOS, Windows
        os.fsync(fd)


class LogWriter:
    """The single writer of a database's active segment."""

    def __init__(
        self,
        directory: Path,
        segment: int,
        base_seq: int,
        *,
        existing_size: int | None,
        buffer_bytes: int,
        existing_offsets: Any = (),
        sidecar: bool = True,
    ) -> None:
        """Open segment ``segment`` for appending.

        ``existing_size`` is the verified length of an existing segment (anything after it is
        truncated away first); ``None`` creates a new segment starting at ``base_seq``.
        ``sidecar=False`` (or :attr:`sidecar` set so later): write no sidecar at close
        (other writers appended to this segment too, so :attr:`offsets` does not hold all
        its entries).
        """
        self.directory = directory
        self.segment = segment
        self.base_seq = base_seq
        """The sequence number of the segment's first entry."""
        self._buffer_bytes = buffer_bytes
        self._buf = bytearray()
        self._sync_cond = threading.Condition()
        self._syncing = False
        self._waiting = 0  # threads waiting for a sync in progress
        self._groups: deque[int] = deque([1], maxlen=8)  # threads served by recent fsyncs
        self._expected = 1  # max(self._groups): the group the next leader waits for
        # Start offsets of the segment's entries, saved as a sidecar when it is closed.
        self.offsets = array("q", existing_offsets)
        self.sidecar = sidecar
        path = self.path = segment_path(directory, segment)
        if existing_size is None:
            try:
                self._fd = open_fd(
                    path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644, what="log segment"
                )
            except FileExistsError:
                raise CorruptionError(
                    f"log segment {path} appeared while this database was open; "
                    "something else writes into its directory",
                    hint="close other writers and run `synarrow check PATH`",
                ) from None
            self._file_size = 0
            try:
                self._write_through(encode_file_header(segment, base_seq))
                os.fsync(self._fd)
                fsync_directory(directory)
            except BaseException:
                os.close(self._fd)
                path.unlink(missing_ok=True)
                raise
        else:
            remove_sidecar(path)  # about to change: the sidecar would no longer match
            self._fd = open_fd(path, os.O_RDWR, what="log segment")
            try:
                require_single_link(self._fd, path, what="log segment")
            except BaseException:
                os.close(self._fd)
                raise
            if os.fstat(self._fd).st_size != existing_size:
                os.ftruncate(self._fd, existing_size)
                os.fsync(self._fd)
            self._file_size = existing_size
        os.lseek(self._fd, 0, os.SEEK_END)
        self._synced = self._file_size
        self.closed = False

    @property
    def size(self) -> int:
        """Bytes in the segment, buffered ones included."""
        return self._file_size + len(self._buf)

    @property
    def buffered(self) -> int:
        """Bytes written by ``write`` that have not reached the OS yet."""
        return len(self._buf)

    def _write_through(self, data: bytes | bytearray | memoryview) -> None:
        """Write all of ``data`` at the end of the file, or leave the file as it was."""
        before = self._file_size
        view = memoryview(data)
        try:
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError as exc:
            view.release()  # the traceback must not pin a caller's bytearray
            self._undo(before, exc)
        view.release()
        self._file_size = before + len(data)

    def write_parts(
        self,
        parts: list[bytes | memoryview],
        *,
        sync: bool,
        checksum: Future[bytes] | None = None,
    ) -> int:
        """Append a large entry given as several buffers, without joining them.

        Buffered bytes are flushed first; the parts go straight to the file. ``checksum``:
        the entry's checksum bytes, being computed on another thread while the parts are
        written; they are written over the entry's first bytes once both are done (see
        :func:`~synarrow.log.format.encode_entry_parts`). If anything fails, the entry is
        cut back out of the file.
        """
        if self._buf:
            self.flush()
        before = self._file_size
        total = 0
        self.offsets.append(before)
        try:
            views = [memoryview(p).cast("B") for p in parts]
            total = sum(v.nbytes for v in views)
            written = 0
            while written < total:
                n = os.writev(self._fd, views)
                written += n
                # Drop what was written (partial writes are rare but allowed by POSIX).
                while views and n >= views[0].nbytes:
                    n -= views[0].nbytes
                    views.pop(0)
                if n:
                    views[0] = views[0][n:]
            if checksum is not None:
                stored = checksum.result()
                if os.pwrite(self._fd, stored, before) != len(stored):
                    raise OSError(errno.EIO, "short write of an entry checksum")
        except OSError as exc:
            self._file_size = before
            self.offsets.pop()
            self._undo(before, exc)
        except BaseException:  # the checksum failed, or an interrupt: leave no half entry
            self._file_size = before
            self.offsets.pop()
            self._cut(before)
            raise
        self._file_size = before + total
        return self._file_size if sync else self.size

    def continue_at(self, end: int) -> None:
        """Go on writing at ``end``: other writers of a shared log appended up to there
        (buffered bytes are written there by the next flush). Bytes after ``end`` (left by
        a writer that died in its turn) are cut off."""
        size = os.fstat(self._fd).st_size
        if size < end:
            raise CorruptionError(
                f"log segment {self.path} holds {size} bytes, but its writers wrote {end}",
                hint="something else changed the log; run `synarrow check PATH`",
            )
        if size > end:
            os.ftruncate(self._fd, end)
        os.lseek(self._fd, end, os.SEEK_SET)
        self._file_size = end

    def fileno(self) -> int:
        """The segment's descriptor (open for reading too: a writer of a shared log reads
        the others' entries through it)."""
        return self._fd

    def take_buffer(self) -> bytearray:
        """Hand over the buffered bytes (to the writer of the segment that follows)."""
        buf, self._buf = self._buf, bytearray()
        return buf

    def put_buffer(self, data: bytearray) -> None:
        """Buffer ``data`` (taken from the writer of the segment before) ahead of
        anything else still buffered."""
        self._buf = data + self._buf

    def mark(self) -> tuple[int, int]:
        """A point to :meth:`rollback` to (buffered bytes are flushed first)."""
        self.flush()
        return self._file_size, len(self.offsets)

    def rollback(self, mark: tuple[int, int]) -> None:
        """Cut everything written since ``mark`` back out of the segment."""
        size, count = mark
        self._buf = bytearray()
        del self.offsets[count:]
        os.ftruncate(self._fd, size)
        os.lseek(self._fd, size, os.SEEK_SET)
        self._file_size = size

    def _cut(self, before: int) -> None:
        """Cut the file back to ``before`` bytes, as well as can be done."""
        try:
            os.ftruncate(self._fd, before)
            os.lseek(self._fd, before, os.SEEK_SET)
        except OSError:
            pass

    def _undo(self, before: int, exc: OSError) -> None:
        """Cut a failed write back out of the file and raise the matching error."""
        self._cut(before)
        if exc.errno in _SPACE_ERRNOS:
            raise StorageFullError(
                f"writing to {segment_path(self.directory, self.segment)} failed: "
                f"{os.strerror(exc.errno or 0)}"
            ) from exc
        raise exc

    def write(self, data: bytes, *, sync: bool) -> int:
        """Append ``data``; returns the segment offset just after it.

        With ``sync`` the bytes reach the OS now (call :meth:`sync_to` afterwards to make them
        durable); otherwise they may wait in the buffer.
        """
        if sync:
            if self._buf:
                self.flush()
            # _write_through inlined: this is the durable single append's path.
            before = self._file_size
            self.offsets.append(before)
            try:
                n = os.write(self._fd, data)
                while n < len(data):  # a short write: rare, but allowed by POSIX
                    n += os.write(self._fd, data[n:])
            except OSError as exc:
                self.offsets.pop()
                self._undo(before, exc)  # cuts the whole entry back out, then raises
            except BaseException:  # interrupted between two writes: leave no half entry
                self.offsets.pop()
                self._cut(before)
                raise
            self._file_size = before + n
            return self._file_size
        self.offsets.append(self.size)
        self._buf += data
        if len(self._buf) >= self._buffer_bytes:
            try:
                self.flush()
            except BaseException:
                # This entry was not acknowledged: take it back; earlier ones stay buffered.
                del self._buf[-len(data) :]
                self.offsets.pop()
                raise
        return self.size

    def append_buffered(self, record: bytes) -> int:
        """Append one encoded entry to the buffer (the non-durable hot path); returns the
        segment size after it, buffered bytes included.

        The buffer is handed to the OS once it holds ``buffer_bytes``; if that fails, this
        entry is taken back out (it was never acknowledged) and earlier ones stay buffered.
        Same effect as ``write(record, sync=False)``, in fewer steps.
        """
        buf = self._buf
        start = self._file_size + len(buf)
        self.offsets.append(start)
        buf += record
        if len(buf) >= self._buffer_bytes:
            try:
                self.flush()
            except BaseException:
                del buf[-len(record) :]
                self.offsets.pop()
                raise
        return start + len(record)

    def write_entries(self, data: bytes, starts: np.ndarray) -> int:
        """Hand several encoded entries (``starts``: each one's offset in ``data``) to the OS
        now, after any buffered bytes; returns the segment size after them.

        All or none: if the OS refuses the write, the file and the offsets are as before
        and the error is raised (:class:`~synarrow.errors.StorageFullError` for a full disk).
        """
        if self._buf:
            self.flush()
        count = len(self.offsets)
        self.offsets.frombytes((starts + self._file_size).astype(np.int64).tobytes())
        try:
            self._write_through(data)
        except BaseException:
            del self.offsets[count:]
            raise
        return self._file_size

    def flush(self) -> None:
        """Hand buffered bytes to the OS (not yet durable against power loss)."""
        if self._buf:
            self._write_through(self._buf)
            self._buf = bytearray()

    def sync_to(self, position: int) -> None:
        """Return once everything up to ``position`` is on disk, sharing fsyncs between threads.

        The first thread to arrive syncs for everyone whose bytes were written before its
        fsync starts (group commit). When the previous fsync was shared by several threads,
        the next one waits up to ``GROUP_WINDOW`` seconds for as many to arrive again, so a
        group is not split by a thread that raced ahead.
        """
        cond = self._sync_cond
        with cond:
            while self._synced < position:
                if self._syncing:
                    self._waiting += 1
                    cond.notify_all()  # a leader may be gathering its group
                    cond.wait()
                    self._waiting -= 1
                    continue
                self._syncing = True
                expected = self._expected
                if expected > 1:
                    deadline = time.monotonic() + GROUP_WINDOW
                    while self._waiting < expected - 1:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        cond.wait(left)
                target = self._file_size
                group = self._waiting + 1
                cond.release()
                try:
                    sync_data(self._fd)
                finally:
                    cond.acquire()
                    self._syncing = False
                    # Only sync_to waits on this condition, each counted in _waiting.
                    if self._waiting:
                        cond.notify_all()
                if target > self._synced:
                    self._synced = target
                groups = self._groups
                groups.append(group)
                self._expected = group if group >= expected else max(groups)

    def sync(self) -> None:
        """Flush and fsync everything written so far."""
        self.flush()
        self.sync_to(self._file_size)

    def close(self) -> None:
        """Flush, fsync and close the segment."""
        if self.closed:
            return
        try:
            self.sync()
        finally:
            os.close(self._fd)
            self.closed = True
        # A sidecar spares the next open a walk with one CRC per entry, at the price of
        # reading the segment back once now: worth it only for many small entries.
        if (
            self.sidecar
            and self.offsets
            and self._file_size / len(self.offsets) < SIDECAR_MAX_AVERAGE_ENTRY
        ):
            try:
                write_sidecar(
                    self.path, np.frombuffer(self.offsets, dtype=np.int64), self._file_size
                )
            except OSError:
                pass  # only an optimisation for the next open

    def abandon(self) -> None:
        """Close without flushing (used after a failure or in tests that simulate a crash)."""
        if not self.closed:
            os.close(self._fd)
            self.closed = True
