"""``ModelRegistry``: versioned model files with SHA-256 checksums and stages.

Layout of a registry directory (it is also a plain :class:`~synarrow.SynaDB`)::

    models.db/
      SYNARROW, log/, columnar/ ...   the SynaDB: one JSON entry per version and stage change
      blobs/<sha256>                  the model bytes, one immutable file per distinct content

Keys in the SynaDB: ``models/<name>/versions/<n>`` (the version's JSON; every stage change
appends a new entry, so the key's history is the audit trail) and
``models/<name>/next_version`` (version numbers are never reused, as in MLflow).

Durability: a model's bytes are streamed to ``blobs/tmp-*``, fsynced, renamed to their
SHA-256 and the directory fsynced before the version's metadata is written and fsynced.
When :meth:`ModelRegistry.save_model` returns, the version survives a power loss. A crash
in between leaves at most an unreferenced blob (never a version without its bytes).

Memory: saving from a path or a file object and loading with ``path=`` move the bytes in
chunks (two buffers of ``chunk_size``), whatever the model size. Loading without ``path``
returns ``bytes`` and so holds the model once (not twice). SHA-256 is computed in a second
thread while the main thread reads or writes (hashlib releases the GIL), so the checksum costs
little time on a machine with two cores.

>>> reg = synarrow.ModelRegistry("models.db")                        # doctest: +SKIP
>>> v = reg.save_model("classifier", b"...weights...", {"accuracy": "0.95"})  # doctest: +SKIP
>>> data, info = reg.load_model("classifier")                       # doctest: +SKIP
"""

from __future__ import annotations

import atexit
import dataclasses
import datetime as dt
import hashlib
import io
import json
import os
import re
import stat
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Union

from synarrow import config as _config
from synarrow.config import DbConfig
from synarrow.db import SynaDB
from synarrow.errors import (
    ChecksumError,
    CorruptionError,
    DatabaseLockedError,
    InvalidArgumentError,
    InvalidStateError,
    InvalidValueError,
    NotFoundError,
    ReadOnlyError,
)
from synarrow.fileio import (
    fsync_directory,
    open_fd,
    remove_file,
    require_directory,
    require_name,
)

#: What ``save_model`` / ``log_artifact`` accept: bytes-like, a file path, or a binary file.
Source = Union[bytes, bytearray, memoryview, str, "os.PathLike[str]", BinaryIO]

STAGES = ("Development", "Staging", "Production", "Archived")
DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024
_SMALL = 1024 * 1024  # below this, hashing in a second thread costs more than it saves
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$")
#: The only blob names there are: a lowercase hex SHA-256.
BLOB_NAME = re.compile(r"[0-9a-f]{64}")


def _now_us() -> int:
    return time.time_ns() // 1000


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_US = dt.timedelta(microseconds=1)


def _us_to_datetime(us: int | None) -> dt.datetime | None:
    """Microseconds since the epoch -> an aware UTC datetime (exact, no float rounding)."""
    if us is None:
        return None
    return _EPOCH + us * _US


def _datetime_to_us(when: dt.datetime) -> int:
    return (when - _EPOCH) // _US


def check_name(kind: str, name: object, reserved: str) -> str:
    """Validate a model or experiment name used inside keys; returns it.

    Names are 1 to 200 characters of letters, digits, ``_ . -`` and ``/`` between
    non-empty segments; the segment ``reserved`` is refused so keys stay unambiguous.
    """
    if not isinstance(name, str):
        raise InvalidArgumentError(f"{kind} name must be a str, got {type(name).__name__}")
    parts = name.split("/") if isinstance(name, str) else []
    if (
        len(name) > 200
        or not _NAME.match(name)
        or reserved in parts
        or any(set(p) == {"."} for p in parts)
    ):
        raise InvalidArgumentError(
            f"invalid {kind} name {name!r}",
            hint=(
                "use 1-200 characters of letters, digits, '_', '.', '-', and '/' between "
                f"non-empty parts; no part may be {reserved!r}, '.' or '..'"
            ),
        )
    return name


def to_json(what: str, value: Any) -> str:
    """Strict JSON (no NaN / Infinity) or :class:`InvalidValueError` naming ``what``."""
    try:
        return json.dumps(value, allow_nan=False, sort_keys=True, default=_json_default)
    except (TypeError, ValueError) as exc:
        raise InvalidValueError(
            f"{what} is not JSON-serialisable: {exc}",
            hint="use str, int, float (finite), bool, None, lists and dicts with str keys",
        ) from exc


def _json_default(obj: Any) -> Any:
    item = getattr(obj, "item", None)  # numpy scalars
    if callable(item) and type(obj).__module__ == "numpy":
        return item()
    raise TypeError(f"{type(obj).__name__} {obj!r:.60} is not JSON-serialisable")


# -- one writer handle per database per process ----------------------------------------------


@dataclass(eq=False)
class _Handle:
    db: SynaDB
    pid: int
    refs: int = 0
    runs: dict[str, Any] = field(default_factory=dict)  # live runs (experiment.Run) by id


_HANDLES: dict[Path, _Handle] = {}
_HANDLES_LOCK = threading.Lock()
_CLOSE_HOOKS: list[Callable[[], None]] = []


def open_shared(path: str | os.PathLike[str], *, timeout: float, what: str) -> _Handle:
    """The process-wide writer handle of the database at ``path`` (opened on first use).

    ``Experiment`` and ``ModelRegistry`` objects on one path in one process share it, so
    they do not lock each other out. Another process holding the writer lock makes this wait
    up to ``timeout`` seconds, then raise :class:`DatabaseLockedError`.
    """
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout < 0:
        raise InvalidArgumentError(f"timeout must be a number of seconds >= 0, got {timeout!r}")
    key = Path(path).absolute()
    deadline = time.monotonic() + timeout
    with _HANDLES_LOCK:
        handle = _HANDLES.get(key)
        if handle is not None and handle.pid == os.getpid() and not handle.db.closed:
            handle.refs += 1
            return handle
        while True:
            try:
                db = _open_writer(key)
                break
            except DatabaseLockedError as exc:
                if time.monotonic() >= deadline:
                    raise DatabaseLockedError(
                        f"{what} store {key} is open for writing in another process "
                        "(or by a SynaDB handle of this one)",
                        hint=(
                            "one writer process per store: give parallel trials their own "
                            "path, pass timeout= to wait for the other writer, or open with "
                            "readonly=True to read"
                        ),
                    ) from exc
                time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        handle = _HANDLES[key] = _Handle(db, os.getpid(), 1)
        return handle


def _open_writer(path: Path) -> SynaDB:
    base = (_config.read_stored(path) if path.is_dir() else None) or DbConfig()
    # Metrics are buffered and metadata writes call sync() themselves: a per-append fsync
    # would only slow the metric path down.
    return SynaDB(path, base.replace(sync_on_write=False))


def release_shared(handle: _Handle) -> None:
    """Drop one reference; the database is closed (made durable) with the last one."""
    with _HANDLES_LOCK:
        handle.refs -= 1
        if handle.refs > 0:
            return
        if _HANDLES.get(handle.db.path) is handle:
            del _HANDLES[handle.db.path]
    if handle.pid == os.getpid():
        handle.db.close()


def _close_all_at_exit() -> None:
    for hook in list(_CLOSE_HOOKS):
        try:
            hook()
        except Exception:  # the interpreter is going away; keep closing the others
            pass
    with _HANDLES_LOCK:
        handles = [h for h in _HANDLES.values() if h.pid == os.getpid()]
        _HANDLES.clear()
    for h in handles:
        try:
            h.db.close()
        except Exception:  # same
            pass


atexit.register(_close_all_at_exit)


# -- content-addressed blob files ------------------------------------------------------------


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
        """Delete ``tmp-*`` files left by a crash (only the writer-lock holder may call this)."""
        if require_directory(self.directory, what="blob directory"):
            for tmp in self.directory.glob("tmp-*"):
                remove_file(tmp)

    def put(self, source: Any, what: str) -> tuple[str, int]:
        """Store ``source`` (bytes-like, path or binary file); returns (sha256 hex, size)."""
        if not require_directory(self.directory, what="blob directory"):
            self.directory.mkdir(exist_ok=True)
        tmp = self.directory / f"tmp-{uuid.uuid4().hex}"
        fd = open_fd(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, what="temporary file")
        try:
            try:
                checksum, size = self._stream(source, fd, what)
                os.fsync(fd)
            finally:
                os.close(fd)
            final = self.path_of(checksum)
            if _regular_size(final) == size:
                tmp.unlink()  # same content stored before: keep one copy
            else:
                os.replace(tmp, final)
                fsync_directory(self.directory)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
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


# -- the registry ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelVersion:
    """One saved version of a model.

    Attributes:
        version: 1, 2, 3 ... in order of saving; numbers are never reused.
        checksum: SHA-256 of the model bytes, lowercase hex.
        size_bytes: size of the model bytes.
        stage: ``"Development"`` (default), ``"Staging"``, ``"Production"`` or ``"Archived"``.
        created_at: when it was saved (UTC).
        metadata: the JSON object given to ``save_model``.
        name: the model's name.
    """

    version: int
    checksum: str
    size_bytes: int
    stage: str
    created_at: dt.datetime
    metadata: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    def _to_json(self) -> str:
        return json.dumps(
            {
                "name": self.name,
                "version": self.version,
                "checksum": self.checksum,
                "size_bytes": self.size_bytes,
                "stage": self.stage,
                "created_us": _datetime_to_us(self.created_at),
                "metadata": self.metadata,
            },
            sort_keys=True,
        )

    @classmethod
    def _from_json(cls, text: str, *, name: str, version: int) -> ModelVersion:
        """Parse a stored version record; it must be the record of ``name`` ``version``."""
        try:
            d = json.loads(text)
            info = cls(
                version=d["version"],
                checksum=d["checksum"],
                size_bytes=d["size_bytes"],
                stage=d["stage"],
                created_at=_EPOCH + d["created_us"] * _US,
                metadata=d.get("metadata", {}),
                name=d["name"],
            )
            ok = (
                type(info.version) is int
                and type(info.size_bytes) is int
                and info.size_bytes >= 0
                and isinstance(info.checksum, str)
                and isinstance(info.metadata, dict)
                and type(d["created_us"]) is int
                and info.stage in STAGES
                and info.name == name
                and info.version == version
            )
        except (
            ValueError,
            KeyError,
            TypeError,
            AttributeError,
            OverflowError,
            RecursionError,
        ) as exc:
            raise CorruptionError(f"stored model version {text[:80]!r} is damaged: {exc}") from exc
        if not ok:
            raise CorruptionError(
                f"stored model version {text[:80]!r} has fields of wrong types, or is not the "
                f"record of {name!r} version {version}"
            )
        return info


def normalize_stage(stage: object) -> str:
    """The canonical spelling of a stage (case-insensitive), or InvalidValueError."""
    if isinstance(stage, str):
        for s in STAGES:
            if s.lower() == stage.lower():
                return s
    raise InvalidValueError(
        f"invalid stage {stage!r}", hint=f"stages are {', '.join(STAGES)} (case-insensitive)"
    )


class ModelRegistry:
    """Versioned model storage with SHA-256 verification and lifecycle stages.

    >>> reg = synarrow.ModelRegistry("models.db")                          # doctest: +SKIP
    >>> v = reg.save_model("classifier", "model.pt", {"accuracy": 0.95})   # doctest: +SKIP
    >>> reg.set_stage("classifier", v.version, "Production")               # doctest: +SKIP
    >>> data, info = reg.load_model("classifier", "Production")            # doctest: +SKIP

    Args:
        path: the registry directory (a SynaDB plus ``blobs/``); created if missing.
        readonly: open without the writer lock, to read while another process writes
            (sees the versions as of opening).
        timeout: seconds to wait when another process holds the writer lock, before
            :class:`~synarrow.DatabaseLockedError` (default: fail at once).
        chunk_size: bytes per read / write when streaming model files.

    One process at a time may write a registry; registries (and experiments) on the same
    path inside one process share one handle.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        readonly: bool = False,
        timeout: float = 0.0,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        self.path = Path(path)
        self.readonly = readonly
        self._lock = threading.RLock()
        self._blobs = BlobStore(self.path / "blobs", chunk_size=chunk_size)
        self._handle: _Handle | None = None
        if readonly:
            self._db = SynaDB(self.path, readonly=True)
        else:
            self._handle = open_shared(self.path, timeout=timeout, what="model registry")
            self._db = self._handle.db
            self._blobs.remove_temporaries()
        self._closed = False

    # -- helpers --------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            from synarrow.errors import DatabaseClosedError

            raise DatabaseClosedError(f"model registry {self.path} is closed")

    def _check_writable(self) -> None:
        self._check_open()
        if self.readonly:
            raise ReadOnlyError(f"model registry {self.path} was opened read-only")
        if self._handle is not None and self._handle.pid != os.getpid():
            raise InvalidStateError(
                f"model registry {self.path} was opened in process {self._handle.pid} "
                "(this is a forked child)",
                hint="open a new ModelRegistry in this process",
            )

    @staticmethod
    def _vkey(name: str, version: int) -> str:
        return f"models/{name}/versions/{version}"

    def _model_known(self, name: str) -> bool:
        return self._db.exists(f"models/{name}/next_version")

    def _versions(self, name: str) -> list[ModelVersion]:
        prefix = f"models/{name}/versions/"
        out = []
        for key in self._db.keys(prefix + "*"):
            tail = key[len(prefix) :]
            if tail.isdigit():
                text = self._db.get(key)
                if isinstance(text, str):
                    out.append(ModelVersion._from_json(text, name=name, version=int(tail)))
        out.sort(key=lambda v: v.version)
        return out

    def _require_model(self, name: str) -> None:
        check_name("model", name, "versions")
        if not self._model_known(name):
            raise NotFoundError(
                f"model {name!r} not found in {self.path}",
                hint="list the models with ModelRegistry.list_models()",
            )

    def _check_version(self, version: object) -> int:
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InvalidArgumentError(f"version must be an int >= 1, got {version!r}")
        return version

    # -- public API -----------------------------------------------------------------------

    def save_model(
        self, name: str, data: Source, metadata: Mapping[str, Any] | None = None
    ) -> ModelVersion:
        """Store a new version of ``name``; returns its :class:`ModelVersion`.

        ``data``: bytes-like, a path to a file, or a binary file object; paths and files are
        streamed in chunks. ``metadata``: a JSON-serialisable mapping (strings, finite
        numbers, bools, None, lists, dicts), else :class:`~synarrow.InvalidValueError`.
        The new version is in stage ``"Development"`` and is durable on return.
        """
        self._check_writable()
        check_name("model", name, "versions")
        if metadata is None:
            metadata = {}
        if not isinstance(metadata, Mapping):
            raise InvalidValueError(
                f"metadata must be a mapping (dict), got {type(metadata).__name__}"
            )
        meta = json.loads(to_json(f"metadata of model {name!r}", dict(metadata)))
        checksum, size = self._blobs.put(data, f"model {name!r}")
        with self._lock:
            counter = f"models/{name}/next_version"
            version = self._db.get(counter, 1)
            created = _EPOCH + _now_us() * _US
            info = ModelVersion(version, checksum, size, "Development", created, meta, name)
            self._db.append(self._vkey(name, version), info._to_json())
            self._db.append(counter, version + 1)
            self._db.sync()
        return info

    def get_version(self, name: str, version: int | str | None = None) -> ModelVersion:
        """The :class:`ModelVersion` of ``version`` (an int, a stage name, or the latest).

        A stage name picks the highest version in that stage.
        :class:`~synarrow.NotFoundError` if the model or version does not exist.
        """
        self._check_open()
        self._require_model(name)
        if version is None:
            versions = self._versions(name)
            if not versions:
                raise NotFoundError(f"model {name!r} has no versions left")
            return versions[-1]
        if isinstance(version, str):
            stage = normalize_stage(version)
            found = [v for v in self._versions(name) if v.stage == stage]
            if not found:
                raise NotFoundError(f"model {name!r} has no version in stage {stage}")
            return found[-1]
        self._check_version(version)
        text = self._db.get(self._vkey(name, version))
        if not isinstance(text, str):
            raise NotFoundError(
                f"model {name!r} has no version {version}",
                hint="list the versions with ModelRegistry.list_versions(name)",
            )
        return ModelVersion._from_json(text, name=name, version=version)

    def load_model(
        self,
        name: str,
        version: int | str | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
    ) -> tuple[Any, ModelVersion]:
        """Read a version's bytes, verified against its SHA-256; returns ``(data, info)``.

        ``version``: an int, a stage name (``"Production"``) or ``None`` for the latest.
        Without ``path`` ``data`` is ``bytes``; with ``path`` the bytes are streamed in chunks
        to that file (written under a temporary name, renamed when verified; not fsynced)
        and ``data`` is its :class:`~pathlib.Path`. Damaged, truncated or missing bytes raise
        :class:`~synarrow.ChecksumError` (a :class:`~synarrow.CorruptionError`).
        """
        info = self.get_version(name, version)
        what = f"model {name!r} version {info.version}"
        if path is None:
            return self._blobs.read(info.checksum, info.size_bytes, what), info
        return self._blobs.copy_to(info.checksum, info.size_bytes, Path(path), what), info

    def list_versions(self, name: str) -> list[ModelVersion]:
        """All live versions of ``name``, oldest first; NotFoundError for an unknown model."""
        self._check_open()
        self._require_model(name)
        return self._versions(name)

    def list_models(self) -> list[str]:
        """Names of every model ever saved here, sorted."""
        self._check_open()
        suffix = "/next_version"
        return sorted(k[len("models/") : -len(suffix)] for k in self._db.keys("models/*" + suffix))

    def set_stage(
        self, name: str, version: int, stage: str, *, archive_existing: bool = True
    ) -> ModelVersion:
        """Move a version to ``stage``; returns the updated :class:`ModelVersion`.

        Moving a version to Production moves the versions that were in Production to
        Archived (as MLflow does), unless ``archive_existing=False``. Stage names are
        case-insensitive; others raise :class:`~synarrow.InvalidValueError`.
        """
        self._check_writable()
        stage = normalize_stage(stage)
        self._check_version(version)
        with self._lock:
            info = self.get_version(name, version)
            changed = dataclasses.replace(info, stage=stage)
            if stage == "Production" and archive_existing:
                for other in self._versions(name):
                    if other.stage == "Production" and other.version != version:
                        archived = dataclasses.replace(other, stage="Archived")
                        self._db.append(self._vkey(name, other.version), archived._to_json())
            if info.stage != stage:
                self._db.append(self._vkey(name, version), changed._to_json())
            self._db.sync()
        return changed

    def get_production(self, name: str) -> ModelVersion | None:
        """The version in Production (the highest if several), or ``None`` if there is none.

        :class:`~synarrow.NotFoundError` for an unknown model.
        """
        self._check_open()
        self._require_model(name)
        found = [v for v in self._versions(name) if v.stage == "Production"]
        return found[-1] if found else None

    def stage_history(self, name: str, version: int) -> list[tuple[dt.datetime, str]]:
        """Every stage the version has been in, with the time of each change, oldest first."""
        self.get_version(name, version)
        table = self._db.get_history(self._vkey(name, version))
        times = table.column("ts").to_pylist()
        return [
            (t, json.loads(s)["stage"]) for t, s in zip(times, table.column("value").to_pylist())
        ]

    def delete_version(self, name: str, version: int) -> None:
        """Delete a version: its metadata, and its bytes unless another version shares them.

        Its number is not reused. :class:`~synarrow.NotFoundError` if it does not exist.
        """
        self._check_writable()
        with self._lock:
            info = self.get_version(name, self._check_version(version))
            self._blobs.path_of(info.checksum)  # a crafted checksum: refuse before any change
            self._db.delete(self._vkey(name, version))
            self._db.sync()
            still_used = any(
                v.checksum == info.checksum
                for model in self.list_models()
                for v in self._versions(model)
            )
            if not still_used:
                self._blobs.remove(info.checksum)

    def verify(self, name: str | None = None) -> list[tuple[str, int, str]]:
        """Check every version's bytes (of one model, or all); returns the damaged ones.

        Each problem is ``(name, version, reason)``; an empty list means all is well.
        """
        self._check_open()
        problems = []
        for model in [name] if name is not None else self.list_models():
            for v in self.list_versions(model):
                try:
                    self._blobs.verify(v.checksum, v.size_bytes, f"model {model!r} v{v.version}")
                except CorruptionError as exc:
                    problems.append((model, v.version, exc.message))
        return problems

    @property
    def db(self) -> SynaDB:
        """The underlying :class:`~synarrow.SynaDB` (for SQL over the version metadata)."""
        return self._db

    def close(self) -> None:
        """Release the registry (the shared database closes with its last user). Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._handle is not None:
            release_shared(self._handle)
        else:
            self._db.close()

    def __enter__(self) -> ModelRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("read-only" if self.readonly else "open")
        return f"<synarrow.ModelRegistry {str(self.path)!r} {state}>"


__all__ = ["STAGES", "ModelRegistry", "ModelVersion"]
