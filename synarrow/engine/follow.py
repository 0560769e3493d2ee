"""Read-only handles following the writer: what tells a reader that the files changed.

A read-only handle reads the state at open. :meth:`Engine.refresh
<synarrow.engine.engine.Engine.refresh>` brings it up to what the one writer has handed to
the OS since; :func:`mark` is the cheap test it starts with. The mark names, without
following links, the identity (inode, modification time, size) of ``columnar/MANIFEST``
(replaced by rename on every compaction) and of the retention file, the live log segment
numbers and the size and modification time of the last segment (every append, delete and
range delete grows it). When the mark is unchanged nothing was written; when it changed the
engine rebuilds its key states the way open does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeAlias

from synarrow.columnar.manifest import MANIFEST_NAME
from synarrow.engine.directory import COLUMNAR_DIR, LOG_DIR
from synarrow.engine.retention import RETENTION_NAME
from synarrow.log.names import list_log_dir, segment_path

__all__ = ["Mark", "files_of", "mark"]

#: ``(manifest identity, retention identity, segment numbers, last segment identity)``.
Mark: TypeAlias = tuple[object, object, tuple[int, ...], object]


def _identity(path: Path) -> tuple[int, int, int] | None:
    """Inode, modification time and size of ``path`` (not followed), or ``None``."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def files_of(path: Path) -> object:
    """The part of a mark that names the committed columnar files (the manifest)."""
    return _identity(path / COLUMNAR_DIR / MANIFEST_NAME)


def mark(path: Path) -> Mark:
    """What the database at ``path`` looks like to a reader now (a few ``stat`` calls).

    Raises :class:`~synarrow.errors.CorruptionError` for a log directory holding a link or
    a name synarrow does not write, as opening does.
    """
    log_dir = path / LOG_DIR
    segments = tuple(list_log_dir(log_dir).segments)
    last = _identity(segment_path(log_dir, segments[-1])) if segments else None
    return (files_of(path), _identity(path / RETENTION_NAME), segments, last)
