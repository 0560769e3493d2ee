"""Opening and replacing the files of a database without leaving its directory.

Every file synarrow reads or writes inside a database directory goes through these helpers:

* files are opened with ``O_NOFOLLOW``, so a symlink planted in place of one of our files is
  refused (:class:`~synarrow.errors.CorruptionError`) instead of followed to another file;
* only regular files are accepted (not FIFOs, devices or directories);
* names come from the caller's own patterns (:func:`require_name`), never from paths stored
  in a file, so a crafted manifest cannot point outside the directory;
* a file that replaces another is written to a temporary name created exclusively, fsynced,
  renamed over the old one, and its directory fsynced (:func:`write_atomic`).

This module is storage-level: it imports nothing from synarrow but the error classes.
"""

from __future__ import annotations

import errno
import mmap
import os
import re
import secrets
import stat
import time
from pathlib import Path

from synarrow.errors import CorruptionError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "ABANDONED_AFTER",
    "NOFOLLOW",
    "DurableTemp",
    "create_exclusive",
    "entry_problem",
    "fd_path",
    "fsync_directory",
    "lstat_regular",
    "map_bytes",
    "open_fd",
    "read_bytes",
    "remove_abandoned",
    "remove_file",
    "require_directory",
    "require_name",
    "require_single_link",
    "temporary_name",
    "temporary_pattern",
    "write_atomic",
]

#: ``os.O_NOFOLLOW`` where the platform has it (0 elsewhere: no protection there).
NOFOLLOW: int = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC: int = getattr(os, "O_CLOEXEC", 0)
# Opened without blocking, so a FIFO planted under one of our names is refused at once
# instead of waiting forever for a writer; cleared again on the regular file we keep.
_NONBLOCK: int = getattr(os, "O_NONBLOCK", 0)
# map a file with its pages already faulted in (Linux); elsewhere a plain mapping
_POPULATE: int = getattr(mmap, "MAP_POPULATE", 0)


def _refuse_link(path: Path, what: str) -> CorruptionError:
    return CorruptionError(
        f"{what} {path} is a symbolic link or not a regular file; synarrow only opens the "
        "plain files it wrote inside the database directory",
        hint="replace the link with the real file, or run `synarrow check PATH`",
    )


def open_fd(
    path: Path | str, flags: int = os.O_RDONLY, mode: int = 0o644, *, what: str = "file"
) -> int:
    """``os.open`` that refuses symlinks and anything but a regular file.

    Raises :class:`CorruptionError` when ``path`` is a symlink or not a regular file; other
    ``OSError``\\ s (missing file, permissions) propagate unchanged.
    """
    path = Path(path)
    try:
        fd = os.open(path, flags | NOFOLLOW | _CLOEXEC | _NONBLOCK, mode)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):
            raise _refuse_link(path, what) from None
        if exc.errno == errno.ENXIO:  # a FIFO or socket opened for writing
            raise _refuse_link(path, what) from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise _refuse_link(path, what)
        if _NONBLOCK and fcntl is not None and not flags & _NONBLOCK:
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def require_single_link(fd: int, path: Path | str, *, what: str = "file") -> None:
    """Refuse to write through a file that has other hard links.

    A file with other names (a hard link planted in place of one of ours, or shared with
    another database) would change there too; :class:`CorruptionError` instead.
    """
    links = os.fstat(fd).st_nlink
    if links > 1:
        raise CorruptionError(
            f"{what} {path} has {links} hard links; writing to it would change the other "
            "copies too",
            hint="copy the database (cp without -l) instead of hard-linking its files",
        )


def fd_path(fd: int) -> str | None:
    """A path that reopens the file behind ``fd`` itself (``/proc/self/fd/N``), or ``None``.

    Libraries that only take a path (pyarrow's ``OSFile``, usearch's ``save``/``restore``)
    are handed this instead of the file's name: whatever is renamed or linked in place of the
    name after our no-follow open, they reach the very file we opened and checked.
    """
    path = f"/proc/self/fd/{fd}"
    return path if os.path.exists(path) else None


def lstat_regular(path: Path | str, *, what: str = "file") -> os.stat_result:
    """``os.lstat`` of ``path``, refusing symlinks and non-regular files."""
    path = Path(path)
    st = os.lstat(path)
    if not stat.S_ISREG(st.st_mode):
        raise _refuse_link(path, what)
    return st


def _bounded_size(fd: int, path: Path, max_size: int | None, what: str) -> int:
    """The size of the open file ``fd``; :class:`CorruptionError` above ``max_size``."""
    size = os.fstat(fd).st_size
    if max_size is not None and size > max_size:
        raise CorruptionError(
            f"{what} {path} is {size} bytes, more than the {max_size} bytes it can be"
        )
    return size


def read_bytes(path: Path | str, *, max_size: int | None = None, what: str = "file") -> bytes:
    """Read a whole regular file without following symlinks.

    ``max_size`` bounds the work on a crafted or damaged file: a larger file raises
    :class:`CorruptionError` before anything is read.
    """
    path = Path(path)
    fd = open_fd(path, os.O_RDONLY, what=what)
    try:
        remaining = _bounded_size(fd, path, max_size, what)
        chunks = []
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 24))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def map_bytes(
    path: Path | str, *, max_size: int | None = None, what: str = "file"
) -> bytes | mmap.mmap:
    """A whole regular file, mapped read-only (not followed if a symlink).

    Like :func:`read_bytes` without the copy: the pages of the page cache are mapped (and
    pre-faulted where the system allows), so a large file costs no allocation. An empty file
    gives ``b""``. ``max_size`` bounds the file as in :func:`read_bytes`. The mapping shows
    later changes made to the file in place; synarrow never rewrites its files in place
    (a new generation gets new names), so only outside tampering could.
    """
    path = Path(path)
    fd = open_fd(path, os.O_RDONLY, what=what)
    try:
        size = _bounded_size(fd, path, max_size, what)
        if size == 0:
            return b""
        return mmap.mmap(fd, size, flags=mmap.MAP_SHARED | _POPULATE, prot=mmap.PROT_READ)
    finally:
        os.close(fd)


def require_directory(path: Path | str, *, what: str = "directory") -> bool:
    """Whether ``path`` exists as a real directory (``False`` if absent).

    Raises :class:`CorruptionError` when something else is there: a symlink (even to a
    directory: it could lead into another database) or a file.
    """
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(st.st_mode):
        raise CorruptionError(
            f"{what} {path} is a symbolic link or not a directory; synarrow only uses the "
            "directories it created inside the database",
            hint="replace the link with the real directory, or run `synarrow check PATH`",
        )
    return True


def temporary_name(path: Path | str) -> Path:
    """A fresh, unpredictable temporary name next to ``path`` (``.<name>.tmp-<random>``)."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{secrets.token_hex(6)}")


def temporary_pattern(name: str) -> re.Pattern[str]:
    """Matches the names :func:`temporary_name` gives for a file called ``name`` (for the
    clean-up of temporaries a crash left behind)."""
    return re.compile(rf"\.{re.escape(name)}\.tmp-[0-9a-f]{{12}}")


def create_exclusive(
    path: Path | str, data: bytes, *, durable: bool = True, mode: int = 0o644
) -> None:
    """Create ``path`` holding ``data``; it must not exist yet (not even as a symlink).

    Raises ``FileExistsError`` when something is already there. ``durable`` fsyncs the file
    and its directory.
    """
    path = Path(path)
    _create_file(path, data, durable=durable, mode=mode, what="new file")
    if durable:
        fsync_directory(path.parent)


def _create_file(path: Path, data: bytes, *, durable: bool, mode: int, what: str) -> None:
    """Create ``path`` exclusively without following links, write and maybe fsync it; on
    failure nothing is left behind."""
    fd = open_fd(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode, what=what)
    try:
        _write_all(fd, data)
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        remove_file(path)
        raise
    os.close(fd)


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def fsync_directory(directory: Path | str) -> None:
    """Make a directory's entries (new, renamed, removed files) durable."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class DurableTemp:
    """A file written under a temporary name, then committed under its final name durably.

    The one way synarrow writes a file that must appear whole or not at all: the temporary
    name is created exclusively without following links, the data goes through the
    descriptor (:attr:`fd`, or :meth:`write`), and :meth:`commit` fsyncs the file, renames it
    into place and fsyncs the directory. Leaving the ``with`` block without committing removes
    the temporary file.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> with DurableTemp(temporary_name(d / "a.txt")) as tmp:
    ...     tmp.write(b"hello")
    ...     tmp.commit(d / "a.txt")
    >>> (d / "a.txt").read_bytes(), sorted(p.name for p in d.iterdir())
    (b'hello', ['a.txt'])
    """

    def __init__(
        self, path: Path | str, *, mode: int = 0o644, what: str = "temporary file"
    ) -> None:
        self.path = Path(path)
        self.fd = open_fd(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode, what=what)
        if fcntl is not None:  # in use while held: see remove_abandoned
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._done = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Write all of ``data`` at the current position."""
        _write_all(self.fd, data)

    def _close_fd(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def commit(self, final: Path | str, *, durable: bool = True) -> None:
        """fsync, rename to ``final`` (replacing what is there), fsync the directory.

        ``durable=False`` skips the fsyncs: still atomic for other readers, not against
        power loss.
        """
        final = Path(final)
        try:
            if durable:
                os.fsync(self.fd)
            self._close_fd()
            os.replace(self.path, final)
        except BaseException:
            self.discard()
            raise
        self._done = True
        if durable:
            fsync_directory(final.parent)

    def discard(self) -> None:
        """Close and remove the temporary file (nothing is committed). Idempotent."""
        self._close_fd()
        if not self._done:
            self._done = True
            remove_file(self.path)

    def __enter__(self) -> DurableTemp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


def write_atomic(path: Path | str, data: bytes, *, durable: bool = True, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data``: temp file created exclusively, fsync, rename, fsync dir.

    The temporary name is unique (``.<name>.tmp-<random>``) and created with ``O_EXCL`` and
    ``O_NOFOLLOW``, so a planted file or symlink at a predictable temp name is never written
    through. A crash leaves either the old file or the new one. ``durable=False`` skips the
    fsyncs (still atomic against other readers, not against power loss).
    """
    path = Path(path)
    if path.is_symlink():
        raise _refuse_link(path, "file")
    with DurableTemp(temporary_name(path), mode=mode) as tmp:
        tmp.write(data)
        tmp.commit(path, durable=durable)


def entry_problem(entry: os.DirEntry[str]) -> str | None:
    """Why a directory entry cannot be a file synarrow wrote (a symbolic link, or not a
    regular file), or ``None`` for a regular file. Used by the verifiers of ``check``."""
    if entry.is_symlink():
        return "a symbolic link; synarrow never writes one"
    if not entry.is_file(follow_symlinks=False):
        return "not a regular file"
    return None


#: A temporary younger than this is never taken for one a crash left behind (it may have
#: been created a moment ago, before its writer locked it).
ABANDONED_AFTER = 60.0


def remove_abandoned(path: Path | str) -> bool:
    """Remove the temporary ``path`` (a :class:`DurableTemp` of any process) if nothing
    writes it any more: no process holds its lock and it is older than
    :data:`ABANDONED_AFTER` seconds. Whether it was removed."""
    try:
        fd = open_fd(path, os.O_RDONLY, what="temporary file")
    except (FileNotFoundError, CorruptionError):
        remove_file(path)  # gone, or a link: removed itself, never its target
        return True
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # being written
        if time.time() - os.fstat(fd).st_mtime < ABANDONED_AFTER:
            return False
        remove_file(path)
        return True
    finally:
        os.close(fd)


def remove_file(path: Path | str) -> None:
    """Unlink ``path`` if it exists (a symlink is removed itself, never its target)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def require_name(name: str, pattern: str | re.Pattern[str], *, what: str) -> str:
    """Return ``name`` if it fully matches ``pattern``, else raise :class:`CorruptionError`.

    Used for every file name read from a file (manifest entries, checksums used as blob
    names): only names synarrow itself generates are accepted, so nothing stored in a file can
    name a path outside the database directory.
    """
    regex = re.compile(pattern) if isinstance(pattern, str) else pattern
    if not isinstance(name, str) or regex.fullmatch(name) is None:
        raise CorruptionError(
            f"{what} {name!r} is not a name synarrow writes; the database was damaged or crafted"
        )
    return name
