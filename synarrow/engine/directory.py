"""The database directory: its marker, the files it owns, and preparing it for a handle.

A database is a directory holding a marker file (:data:`MARKER_NAME`), the writer lock, the
``log``, ``columnar`` and ``snapshots`` directories and ``config.json``. This module is the one place that
knows those names; the CLI, ``check`` and the export's target checks ask it.
"""

from __future__ import annotations

import os
from pathlib import Path

from synarrow import config as _config
from synarrow.columnar.tags import SNAPSHOTS_DIR
from synarrow.engine.retention import RETENTION_NAME
from synarrow.errors import InvalidPathError, ReadOnlyError
from synarrow.fileio import (
    create_exclusive,
    lstat_regular,
    remove_file,
    require_directory,
    temporary_pattern,
)
from synarrow.log.format import FORMAT_VERSION
from synarrow.log.lock import WriterLock
from synarrow.log.shared import HEAD_NAME, KNOCK_NAME, LEASE_NAME

__all__ = [
    "COLUMNAR_DIR",
    "LOG_DIR",
    "MARKER_NAME",
    "MARKER_TEXT",
    "OWN_FILES",
    "SNAPSHOTS_DIR",
    "is_database",
    "prepare_directory",
    "remove_temporaries",
    "require_own_directories",
]

#: The file whose presence makes a directory a synarrow database.
MARKER_NAME = "SYNARROW"
#: What the marker file holds.
MARKER_TEXT = f"synarrow database, log format {FORMAT_VERSION}\n"
#: The log segments' directory inside a database.
LOG_DIR = "log"
#: The columnar files' directory inside a database.
COLUMNAR_DIR = "columnar"
#: Every name a database directory may hold besides the marker (and config temporaries).
OWN_FILES = frozenset(
    {
        "LOCK",
        HEAD_NAME,
        KNOCK_NAME,
        LEASE_NAME,
        LOG_DIR,
        COLUMNAR_DIR,
        _config.CONFIG_NAME,
        _config.CONFIG_NAME + ".tmp",
        RETENTION_NAME,
        SNAPSHOTS_DIR,
    }
)
_CONFIG_TEMPORARY = temporary_pattern(_config.CONFIG_NAME)
_RETENTION_TEMPORARY = temporary_pattern(RETENTION_NAME)


def _own_temporary(name: str) -> bool:
    """Whether ``name`` is a temporary of a file the database replaces atomically."""
    return bool(_CONFIG_TEMPORARY.fullmatch(name) or _RETENTION_TEMPORARY.fullmatch(name))


def is_database(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a directory holding a database marker (a regular file, not a link).

    >>> import tempfile
    >>> is_database(tempfile.mkdtemp())
    False
    """
    p = Path(path)
    try:
        return p.is_dir() and (p / MARKER_NAME).is_file() and not (p / MARKER_NAME).is_symlink()
    except OSError:
        return False


def require_own_directories(path: Path) -> None:
    """Refuse a database whose ``log``, ``columnar`` or ``snapshots`` is a symlink (or not a
    directory): following it would read or write another database's files."""
    require_directory(path / LOG_DIR, what="log directory")
    require_directory(path / COLUMNAR_DIR, what="columnar directory")
    require_directory(path / SNAPSHOTS_DIR, what="snapshots directory")


def remove_temporaries(path: Path) -> None:
    """Remove the temporaries of files the database replaces (config, retention rules)
    that a crash left behind: only while no other handle can be replacing one."""
    for name in os.listdir(path):
        if _own_temporary(name):
            remove_file(path / name)


def prepare_directory(path: Path, *, readonly: bool, shared: bool = False) -> WriterLock | None:
    """Check (and for a writer create) the database directory; returns the writer's lock
    (``shared``: taken with other ``writers="many"`` handles, see :class:`WriterLock`).

    A read-only handle needs an existing database and takes no lock. A writer refuses a
    non-empty directory that is not a database, takes the lock (before anything else is
    written), creates the log directory and the marker, and removes config temporaries a
    crash left behind.
    """
    if path.exists() and not path.is_dir():
        raise InvalidPathError(f"{path} exists and is not a directory; refusing to touch it")
    if readonly:
        if not os.path.lexists(path / MARKER_NAME):
            raise InvalidPathError(f"{path} is not a synarrow database")
        lstat_regular(path / MARKER_NAME, what="database marker")
        require_own_directories(path)
        return None
    lock: WriterLock | None = None
    try:
        if path.is_dir():
            names = {c.name for c in path.iterdir()}
            # Another process may be creating this database right now: its own files
            # (the lock first) appear before the marker.
            foreign = {n for n in names - OWN_FILES if not _own_temporary(n)}
            if MARKER_NAME not in names and foreign:
                raise InvalidPathError(
                    f"{path} is a non-empty directory that is not a synarrow database"
                )
        else:
            path.mkdir(parents=True, exist_ok=True)
        lock = WriterLock(path)
        lock.acquire(shared=shared)
        require_own_directories(path)
        (path / LOG_DIR).mkdir(exist_ok=True)
        marker = path / MARKER_NAME
        try:
            create_exclusive(marker, MARKER_TEXT.encode())
        except FileExistsError:
            # Already a database, or another writers="many" handle (which holds the lock
            # beside this one) created the marker a moment ago: only its kind matters.
            lstat_regular(marker, what="database marker")
        if not shared:  # a writer of a shared log does this under the append lock
            remove_temporaries(path)
    except PermissionError as exc:
        if lock is not None:
            lock.release()
        raise ReadOnlyError(f"cannot write to {path}: {exc.strerror}") from exc
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    return lock
