"""Content-addressed blob files: immutable files named by the SHA-256 of their bytes.

Model versions (``<registry>/blobs/``) and run artifacts (``<store>/artifacts/``) keep their
bytes this way: streamed to ``tmp-*``, fsynced, renamed to their SHA-256 and the directory
fsynced, so a blob that has its name is complete. Hashing runs in a second thread while the
caller's thread reads or writes (hashlib releases the GIL), so the checksum costs little time
on a machine with two cores.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, Union

from synarrow.errors import (
    ChecksumError,
    CorruptionError,
    InvalidArgumentError,
    InvalidValueError,
)
from synarrow.fileio import (
    DurableTemp,
    open_fd,
    remove_abandoned,
    remove_file,
    require_directory,
    require_name,
)

__all__ = [
    "ARTIFACTS_DIR",
    "BLOB_DIRS",
    "BLOB_NAME",
    "DEFAULT_CHUNK_SIZE",
    "MODELS_DIR",
    "BlobStore",
    "Source",
    "parse_blob_ref",
]

#: What ``save_model`` / ``log_artifact`` accept: bytes-like, a file path, or a binary file.
Source = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]", BinaryIO]

DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024
_SMALL = 1024 * 1024  # below this, hashing in a second thread costs more than it saves
#: The only blob names there are: a lowercase hex SHA-256.
BLOB_NAME = re.compile(r"[0-9a-f]{64}")
#: The blob directories inside a database: model versions' bytes, run artifacts' bytes.
MODELS_DIR, ARTIFACTS_DIR = "blobs", "artifacts"
BLOB_DIRS = (MODELS_DIR, ARTIFACTS_DIR)


class _Hasher:
    """SHA-256 fed from a worker thread, so hashing overlaps the caller's file I/O."""

    def __init__(self, threaded: bool) -> None:
        self.sha = hashlib.sha256()
        self._pool = ThreadPoolExecutor(1, "synarrow-sha256") if threaded else None
        self._last: Future[None] | None = None

    def update(self, data: memoryview) -> Future[None] | None:
        if self._pool is None:
            self.sha.update(data)
            return None
        self._last = self._pool.submit(self.sha.update, data)
        return self._last

    def hexdigest(self) -> str:
        self.close()
        return self.sha.hexdigest()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
            if self._last is not None:
                self._last.result()


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        n = os.write(fd, view)
        view = view[n:]


class BlobStore:
    """Immutable files named by their SHA-256 in one directory, written durably in chunks.

    A blob's name comes from a checksum stored in the database, so it is checked to be a
    lowercase hex SHA-256 before it is used at all (:class:`CorruptionError` otherwise): a
    crafted checksum such as ``../../victim.txt`` never reaches the file system, so nothing
    outside the directory is opened, deleted, or even tested for existence. Blobs are
    opened without following symlinks, and the directory itself must not be a link.
    """

    def __init__(self, directory: Path, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> None:
        if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 4096:
            raise InvalidArgumentError(f"chunk_size must be an int >= 4096, got {chunk_size!r}")
        self.directory = directory
        self.chunk_size = chunk_size

    def path_of(self, checksum: str) -> Path:
        """Where the blob with this SHA-256 lives (:class:`CorruptionError` for anything
        that is not a lowercase hex SHA-256)."""
        require_name(checksum, BLOB_NAME, what="stored checksum")
        require_directory(self.directory, what="blob directory")
        return self.directory / checksum

    def remove(self, checksum: str) -> None:
        """Delete a blob (a symlink in its place is removed itself, never its target)."""
        remove_file(self.path_of(checksum))

    def remove_temporaries(self) -> None:
        """Delete ``tmp-*`` files left by a crash: those no process still writes (see
        :func:`~synarrow.fileio.remove_abandoned`; other writer processes may be storing
        blobs right now)."""
        if require_directory(self.directory, what="blob directory"):
            for tmp in self.directory.glob("tmp-*"):
                remove_abandoned(tmp)

    def put(self, source: Any, what: str) -> tuple[str, int]:
        """Store ``source`` (bytes-like, path or binary file); returns (sha256 hex, size)."""
        if not require_directory(self.directory, what="blob directory"):
            self.directory.mkdir(exist_ok=True)
        with DurableTemp(self.directory / f"tmp-{uuid.uuid4().hex}") as tmp:
            checksum, size = self._stream(source, tmp.fd, what)
            final = self.path_of(checksum)
            if _regular_size(final) != size:  # else: same content stored before, keep one
                tmp.commit(final)
        return checksum, size

    def _stream(self, source: Any, fd: int, what: str) -> tuple[str, int]:
        if isinstance(source, (bytes, bytearray, memoryview)):
            view = memoryview(source).cast("B")
            hasher = _Hasher(threaded=len(view) >= _SMALL)
            try:
                hasher.update(view)  # the whole buffer, in the worker, while we write it
                for lo in range(0, len(view), self.chunk_size):
                    _write_all(fd, view[lo : lo + self.chunk_size])
                return hasher.hexdigest(), len(view)
            finally:
                hasher.close()
        if isinstance(source, (str, os.PathLike)):
            p = Path(source)
            if not p.is_file():
                raise InvalidValueError(
                    f"{what}: {str(p)!r} is not an existing file",
                    hint="pass bytes, a path to a file, or a binary file object",
                )
            with open(p, "rb", buffering=0) as f:
                return self._copy(f, [fd], size_hint=p.stat().st_size)
        if hasattr(source, "readinto") or hasattr(source, "read"):
            return self._copy(source, [fd], size_hint=None)
        raise InvalidValueError(
            f"{what}: cannot store a {type(source).__name__}",
            hint="pass bytes, a path to a file or a binary file object (serialise objects first, "
            "for example with torch.save to io.BytesIO)",
        )

    def _copy(self, src: Any, fds: list[int], *, size_hint: int | None) -> tuple[str, int]:
        """Copy ``src`` to ``fds`` through two alternating buffers, hashing on the side."""
        threaded = size_hint is None or size_hint >= _SMALL
        hasher = _Hasher(threaded)
        buffers = [bytearray(self.chunk_size), bytearray(self.chunk_size)] if threaded else []
        if not threaded:
            buffers = [bytearray(min(self.chunk_size, max(size_hint or 0, 1) + 1))]
        pending: list[Future[None] | None] = [None] * len(buffers)
        readinto = getattr(src, "readinto", None)
        total = 0
        i = 0
        try:
            while True:
                slot = i % len(buffers)
                if pending[slot] is not None:
                    pending[slot].result()  # type: ignore[union-attr]  # hashed: reusable
                buf = buffers[slot]
                if readinto is not None:
                    n = readinto(buf)
                else:
                    chunk = src.read(len(buf))
                    if isinstance(chunk, str):
                        raise InvalidValueError(
                            "the file object returned str; open it in 'rb' mode"
                        )
                    n = len(chunk)
                    buf[:n] = chunk
                if not n:
                    break
                view = memoryview(buf)[:n]
                pending[slot] = hasher.update(view)
                for fd in fds:
                    _write_all(fd, view)
                total += n
                i += 1
            return hasher.hexdigest(), total
        finally:
            hasher.close()

    def read(self, checksum: str, size: int, what: str) -> bytes:
        """The blob's bytes, verified against ``checksum`` (ChecksumError otherwise)."""
        with self._open_checked(checksum, size, what) as f:
            data = f.read()
        if len(data) != size:
            raise ChecksumError(f"{what}: blob {checksum} changed size while being read")
        if hashlib.sha256(data).hexdigest() != checksum:
            raise ChecksumError(
                f"{what}: stored bytes do not match their SHA-256 {checksum}",
                hint=f"the file {self.path_of(checksum)} was damaged; restore it from a backup",
            )
        return data

    def verify(self, checksum: str, size: int, what: str) -> None:
        """Read the blob in chunks and raise ChecksumError if it does not match."""
        with self._open_checked(checksum, size, what) as f:
            got, n = self._copy(f, [], size_hint=size)
        if got != checksum or n != size:
            raise ChecksumError(
                f"{what}: stored bytes do not match their SHA-256 {checksum}",
                hint=f"the file {self.path_of(checksum)} was damaged; restore it from a backup",
            )

    def copy_to(self, checksum: str, size: int, dest: Path, what: str) -> Path:
        """Stream the blob to ``dest`` (atomically, via a temporary name), verifying it."""
        dest = Path(dest)
        if dest.is_dir():
            raise InvalidArgumentError(f"path {str(dest)!r} is a directory; give a file name")
        tmp = dest.with_name(f".{dest.name}.tmp-{uuid.uuid4().hex[:8]}")
        with self._open_checked(checksum, size, what) as f:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                try:
                    got, n = self._copy(f, [fd], size_hint=size)
                finally:
                    os.close(fd)
                if got != checksum or n != size:
                    raise ChecksumError(
                        f"{what}: stored bytes do not match their SHA-256 {checksum}",
                        hint=f"the file {self.path_of(checksum)} was damaged; restore it",
                    )
                os.replace(tmp, dest)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        return dest

    def _open_checked(self, checksum: str, size: int, what: str) -> io.FileIO:
        p = self.path_of(checksum)
        try:
            fd = open_fd(p, os.O_RDONLY, what=f"{what}: blob")
            f = open(fd, "rb", buffering=0, closefd=True)  # noqa: SIM115 - returned to the caller's with
        except FileNotFoundError as exc:
            raise CorruptionError(
                f"{what}: its bytes ({p}) are missing", hint="restore the file from a backup"
            ) from exc
        actual = os.fstat(f.fileno()).st_size
        if actual != size:
            f.close()
            raise ChecksumError(
                f"{what}: stored file {p} has {actual} bytes, expected {size}",
                hint="the file was truncated or damaged; restore it from a backup",
            )
        return f


def parse_blob_ref(text: object, what: str) -> tuple[str, int, int | None]:
    """``(checksum, size_bytes, created_us)`` of a stored JSON reference to a blob.

    Anything else than the object synarrow writes (with a lowercase hex SHA-256) raises
    :class:`CorruptionError` before a file name is made from it.
    """
    try:
        d = json.loads(text)  # type: ignore[arg-type]
        checksum, size, created = d["checksum"], d["size_bytes"], d.get("created_us")
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise CorruptionError(f"{what}: its stored reference is damaged: {exc}") from exc
    if type(size) is not int or size < 0 or (created is not None and type(created) is not int):
        raise CorruptionError(f"{what}: its stored reference has fields of wrong types")
    return require_name(checksum, BLOB_NAME, what=f"{what}: stored checksum"), size, created


def _regular_size(path: Path) -> int | None:
    """Size of a regular file at ``path``; ``None`` if absent or anything else (a planted
    link is then replaced by the real blob)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None
