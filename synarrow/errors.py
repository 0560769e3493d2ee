"""The error classes of synarrow.

Every error raised on purpose by synarrow is a :class:`SynaError`. Each subclass also
inherits the builtin exception it resembles, so ``except KeyError`` keeps working for
code that does not know synarrow. Messages name the key, value or file at fault, and most
carry a hint saying what to do about it.
"""

from __future__ import annotations


class SynaError(Exception):
    """Base class of every error synarrow raises on purpose."""

    default_hint: str = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = self.default_hint if hint is None else hint
        super().__init__(f"{message} (hint: {self.hint})" if self.hint else message)

    def __str__(self) -> str:
        return self.args[0] if self.args else self.message


class KeyNotFoundError(SynaError, KeyError):
    """A key that must exist (typed get, history of a tensor, ...) is absent or deleted."""

    default_hint = "check the spelling with db.keys() or db.exists(key)"


class TypeMismatchError(SynaError, TypeError):
    """A typed read (``get_float`` ...) found a value of another atom type."""

    default_hint = "use db.get(key) to read a value of any type"


class InvalidKeyError(SynaError, ValueError):
    """A key is not a non-empty ``str`` that encodes to at most the key length limit in UTF-8."""

    default_hint = "keys are non-empty str of at most 65535 UTF-8 bytes"


class InvalidValueError(SynaError, ValueError):
    """A value has an unsupported type, a wrong vector dimension or is out of range."""

    default_hint = "atoms are None, float, int (int64), str, bytes and 1-D float32 vectors"


class InvalidArgumentError(SynaError, ValueError):
    """An argument other than a key or value is out of its domain (k <= 0, a bad pattern ...)."""


class DatabaseLockedError(SynaError, BlockingIOError):
    """Another process (or another open handle) holds the writer lock of this database."""

    default_hint = "close the other writer, or open with SynaDB(path, readonly=True)"


class DatabaseClosedError(SynaError, ValueError):
    """An operation was attempted on a closed database."""

    default_hint = "open the database again"


class ReadOnlyError(SynaError, PermissionError):
    """A write was attempted on a database opened read-only, or its directory is not writable."""

    default_hint = "open without readonly=True, from a process that may write to the directory"


class InvalidPathError(SynaError, NotADirectoryError):
    """The database path exists but is not a synarrow database directory."""

    default_hint = "a database is a directory; pass a new path or an existing database"


class CorruptionError(SynaError, OSError):
    """Stored bytes failed their checksum or structure checks; they are never returned as data."""

    default_hint = "run `synarrow check PATH`; open with repair=True to skip damaged entries"


class ChecksumError(CorruptionError):
    """A stored object's checksum (SHA-256 in the model registry, CRC32 in the log) differs."""


class StorageFullError(SynaError, OSError):
    """The disk (or a file size limit) refused a write; nothing acknowledged was lost."""

    default_hint = "free some space and retry; earlier data is intact"


class ConfigError(SynaError, ValueError):
    """A configuration value is invalid, or conflicts with how the store was created."""


class DependencyMissingError(SynaError, ImportError):
    """An optional library (torch, pandas, polars, matplotlib, cupy) is needed but missing."""


class GPUUnavailableError(SynaError, RuntimeError):
    """A GPU operation was requested but no usable CUDA device or GPU library is present."""

    default_hint = "install torch with CUDA or cupy on a machine with an NVIDIA GPU"


class NotFoundError(KeyNotFoundError):
    """A named object (experiment run, model, model version) does not exist."""

    default_hint = "list what exists first (list_versions, query)"


class SnapshotNotFoundError(NotFoundError):
    """No snapshot of that tag exists (never taken, or dropped)."""

    default_hint = "db.snapshots() (or `synarrow snapshots PATH`) lists the tags"


class SnapshotExistsError(SynaError, FileExistsError):
    """A snapshot of that tag exists already: tags are immutable."""

    default_hint = "pick another tag, or drop_snapshot() the old one first"


class SnapshotInUseError(SynaError, BlockingIOError):
    """A snapshot cannot be dropped while a handle (in any process) reads it."""

    default_hint = "close the handles opened with snapshot=TAG, then drop it"


class CompactionError(SynaError, RuntimeError):
    """An automatic (background) compaction failed; the log still holds every entry.

    Raised once, by the next explicit :meth:`~synarrow.SynaDB.compact` or
    :meth:`~synarrow.SynaDB.wait_for_compaction`; ``__cause__`` is the original error.
    """

    default_hint = "free disk space (or fix the cause below), then call compact() again"


class InvalidStateError(SynaError, RuntimeError):
    """An operation is not allowed in the object's current state (logging to a finished run)."""


class QueryTimeoutError(SynaError, TimeoutError):
    """A query ran past a server's query timeout and was interrupted."""

    default_hint = "narrow the query (a WHERE on key / ts, a LIMIT), or ask for a longer timeout"


class ExportError(SynaError, OSError):
    """Writing or reading an exported dataset failed (target refused, bad file, bad URI).

    A failed export leaves its target as it was: nothing partial, nothing deleted.
    """

    default_hint = "check the path or URI and the format"


class SQLError(SynaError, ValueError):
    """A query failed in DuckDB (syntax, binding, a missing column ...)."""

    default_hint = "views: history(key, ts, value, int_value, text, bytes, vector, type), latest"


class CliError(SynaError):
    """A command-line problem that is not a database error (a missing path, a bad option)."""


__all__ = [
    "ChecksumError",
    "CliError",
    "CompactionError",
    "ConfigError",
    "CorruptionError",
    "DatabaseClosedError",
    "DatabaseLockedError",
    "DependencyMissingError",
    "ExportError",
    "GPUUnavailableError",
    "InvalidArgumentError",
    "InvalidKeyError",
    "InvalidPathError",
    "InvalidStateError",
    "InvalidValueError",
    "KeyNotFoundError",
    "NotFoundError",
    "QueryTimeoutError",
    "ReadOnlyError",
    "SQLError",
    "SnapshotExistsError",
    "SnapshotInUseError",
    "SnapshotNotFoundError",
    "StorageFullError",
    "SynaError",
    "TypeMismatchError",
]
