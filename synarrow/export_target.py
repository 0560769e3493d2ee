"""Where an export is written: staged beside the old contents, never over foreign files.

An export directory is written in a hidden staging directory, then moved into place: a new
local directory is staged beside it (``.<name>.synarrow-staging-<random>/``) and renamed
into place; an existing directory (or one on a remote file system) gets its staging
directory inside (``.synarrow-staging-<random>/``, which pyarrow, Spark, Dask and Ray skip)
and the staged entries are moved up. A failed export removes its staging directory and
leaves the target as it was; only a process killed mid-export leaves one behind (the next
``overwrite`` removes one inside the target).

Every file an export writes carries ``synarrow.export`` in its schema metadata, which is how
an earlier export is recognised: there is no marker file, because polars refuses to scan a
directory that holds files of two extensions. ``overwrite=True`` replaces only a directory
holding nothing but such files (``key=.../part-N.<ext>``, ``part-N.<ext>``) and staging
leftovers. A database, a directory inside one, a directory holding one, or a directory with
any other file (the current directory next to a database, say) is refused with
:class:`~synarrow.errors.ExportError` before anything is deleted.

This module only knows file systems (pyarrow ``FileSystem`` objects) and paths; the column
layout lives in :mod:`synarrow.layout`.
"""

from __future__ import annotations

import os
import posixpath
import re
import secrets
from collections.abc import Iterable
from typing import Any

import pyarrow.fs as pafs

from synarrow.engine.directory import MARKER_NAME
from synarrow.errors import ExportError
from synarrow.layout import EXPORT_METADATA_KEY

__all__ = [
    "DATABASE_MARKER",
    "STAGING_PREFIX",
    "DatasetTarget",
    "FileTarget",
    "is_export_file",
]

#: Hidden directories an export is staged in (skipped by engines: the name starts with ``.``).
STAGING_PREFIX = ".synarrow-staging-"
#: The file every synarrow database directory holds.
DATABASE_MARKER = MARKER_NAME
_PART = re.compile(r"part-\d+\.(parquet|arrow)")
_PARTITION = re.compile(r"key=[^/]+")


def _join(base: str, name: str) -> str:
    return f"{base.rstrip('/')}/{name}" if base not in ("", "/") else f"{base}{name}"


def _is_local(fs: Any) -> bool:
    return isinstance(fs, pafs.LocalFileSystem)


def _ancestors(path: str) -> Iterable[str]:
    current = path.rstrip("/") or "/"
    while True:
        yield current
        parent = posixpath.dirname(current)
        if not parent or parent == current:
            return
        current = parent


def _refuse_database_paths(
    fs: Any, path: str, protect: Iterable[str], *, replaced: bool = True
) -> None:
    """A path that is, or lies inside, a database; or (``replaced``) holds the one exported."""
    for anc in _ancestors(path):
        marker = fs.get_file_info(_join(anc, DATABASE_MARKER))
        if marker.type == pafs.FileType.File:
            where = "is a synarrow database" if anc == path.rstrip("/") else f"is inside {anc}"
            raise ExportError(
                f"{path} {where}, a synarrow database; an export never writes into a database",
                hint="export to a directory outside the database",
            )
    if not _is_local(fs):
        return
    real = os.path.realpath(path)
    for db_path in protect:
        db_real = os.path.realpath(db_path)
        if real == db_real or real.startswith(db_real.rstrip("/") + "/"):
            raise ExportError(f"{path} is inside the database {db_path}")
        if replaced and db_real.startswith(real.rstrip("/") + "/"):
            raise ExportError(
                f"{path} holds the database {db_path}; an export never replaces it",
                hint="export to a new, empty directory",
            )


def _listing(fs: Any, path: str) -> list[tuple[str, bool]]:
    """``(relative path, is_dir)`` of everything under ``path``; symlinks refused (local)."""
    if _is_local(fs):
        found: list[tuple[str, bool]] = []
        for root, dirs, files in os.walk(path, followlinks=False):
            rel_root = os.path.relpath(root, path)
            for name in dirs + files:
                full = os.path.join(root, name)
                rel = name if rel_root == "." else f"{rel_root}/{name}"
                if os.path.islink(full):
                    raise ExportError(
                        f"{full} is a symbolic link; an export directory holds only its own files",
                        hint="remove the link, or export to a new directory",
                    )
                found.append((rel, name in dirs))
        return found
    prefix = path.rstrip("/") + "/"
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    return [
        (
            i.path[len(prefix) :] if i.path.startswith(prefix) else i.path,
            i.type == pafs.FileType.Directory,
        )
        for i in infos
    ]


def _foreign(rel: str, is_dir: bool) -> bool:
    """Whether an entry's name is one an export does not write."""
    parts = rel.split("/")
    if parts[0].startswith(STAGING_PREFIX):
        return False  # a killed export's leftovers: removed by the next overwrite
    if len(parts) == 1:
        return not (_PARTITION.fullmatch(parts[0]) if is_dir else _PART.fullmatch(parts[0]))
    return not (
        len(parts) == 2
        and not is_dir
        and _PARTITION.fullmatch(parts[0])
        and _PART.fullmatch(parts[1])
    )


def is_export_file(fs: Any, path: str) -> bool:
    """Whether a Parquet / Arrow file's schema carries the ``synarrow.export`` metadata."""
    import pyarrow as pa
    import pyarrow.ipc as ipc
    import pyarrow.parquet as pq

    try:
        with fs.open_input_file(path) as f:
            if path.endswith(".parquet"):
                metadata = pq.ParquetFile(f).schema_arrow.metadata
            else:
                metadata = ipc.open_file(f).schema.metadata
    except (OSError, pa.ArrowInvalid):
        return False
    return bool(metadata) and EXPORT_METADATA_KEY in metadata


class DatasetTarget:
    """A directory an export is staged for, then moved into.

    >>> import os, tempfile, pyarrow.fs as pafs
    >>> out = os.path.join(tempfile.mkdtemp(), "out")
    >>> target = DatasetTarget(pafs.LocalFileSystem(), out, overwrite=False)
    >>> staging = target.open()          # write the files under staging ...
    >>> with open(os.path.join(staging, "part-0.parquet"), "wb") as f:
    ...     _ = f.write(b"...")
    >>> target.commit()                  # ... then move them into out
    >>> os.listdir(out)
    ['part-0.parquet']
    """

    def __init__(self, fs: Any, path: str, *, overwrite: bool, protect: Iterable[str] = ()) -> None:
        self.fs = fs
        self.path = path.rstrip("/") or "/"
        self.overwrite = overwrite
        self.protect = tuple(protect)
        self.staging: str | None = None
        self._created = False
        self._beside = False

    def open(self) -> str:
        """Check the target, create the staging directory and return its path."""
        fs, path = self.fs, self.path
        if path == "/" or (_is_local(fs) and os.path.realpath(path) == os.path.realpath("/")):
            raise ExportError("refusing to export into the root directory")
        _refuse_database_paths(fs, path, self.protect)
        if _is_local(fs) and os.path.islink(path):
            raise ExportError(
                f"{path} is a symbolic link", hint="name the directory it points to instead"
            )
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            raise ExportError(f"{path} is a file; an exported dataset is a directory")
        token = secrets.token_hex(8)
        parent, name = posixpath.split(path)
        if info.type == pafs.FileType.NotFound and _is_local(fs) and parent:
            # A new local directory: staged beside it, then renamed into place at once.
            fs.create_dir(parent, recursive=True)
            self.staging = _join(parent, f".{name}{STAGING_PREFIX[:-1]}-{token}")
            self._beside = True
        else:
            if info.type == pafs.FileType.NotFound:
                fs.create_dir(path, recursive=True)
                self._created = True
            else:
                self._check_replaceable()
            self.staging = _join(path, STAGING_PREFIX + token)
        fs.create_dir(self.staging, recursive=False)
        return self.staging

    def _check_replaceable(self) -> None:
        entries = _listing(self.fs, self.path)
        if not entries:
            return
        if not self.overwrite:
            raise ExportError(
                f"{self.path} exists and is not empty; refusing to mix datasets",
                hint="choose a new directory, or overwrite=True (--overwrite) to replace an "
                "earlier export",
            )
        foreign = [rel for rel, is_dir in entries if _foreign(rel, is_dir)]
        if not foreign:
            parts = [rel for rel, is_dir in entries if not is_dir]
            foreign = [
                rel
                for rel in parts
                if not rel.startswith(STAGING_PREFIX)
                and not is_export_file(self.fs, _join(self.path, rel))
            ]
        if foreign:
            raise ExportError(
                f"{self.path} holds {foreign[0]!r}, which is not part of a synarrow export; "
                "nothing was deleted",
                hint="--overwrite only replaces a directory an export wrote; choose a new "
                "directory, or remove it yourself",
            )

    def commit(self) -> None:
        """Replace the old export's entries (if any) with the staged ones."""
        fs, staging = self.fs, self.staging
        if staging is None:
            raise ExportError("commit() before open()")
        if self._beside:
            try:
                os.rename(staging, self.path)  # fails if the target appeared, not empty
            except OSError as exc:
                raise ExportError(
                    f"{self.path} appeared while the export ran ({exc.strerror}); "
                    "nothing was replaced"
                ) from exc
            self.staging = None
            return
        self._check_replaceable_again()
        for info in fs.get_file_info(pafs.FileSelector(self.path, recursive=False)):
            if info.path.rstrip("/") == staging:
                continue
            if info.type == pafs.FileType.Directory:
                fs.delete_dir(info.path)
            else:
                fs.delete_file(info.path)
        for info in fs.get_file_info(pafs.FileSelector(staging, recursive=False)):
            fs.move(info.path, _join(self.path, posixpath.basename(info.path)))
        fs.delete_dir(staging)
        self.staging = None

    def _check_replaceable_again(self) -> None:
        # Another process may have written into the target while the export ran.
        entries = [
            (rel, d)
            for rel, d in _listing(self.fs, self.path)
            if not rel.startswith(STAGING_PREFIX)
        ]
        foreign = [rel for rel, is_dir in entries if _foreign(rel, is_dir)]
        if foreign:
            raise ExportError(
                f"{self.path} gained {foreign[0]!r} while the export ran; nothing was replaced"
            )
        if entries and not self.overwrite:
            raise ExportError(
                f"{self.path} gained files while the export ran; nothing was replaced"
            )

    def abort(self) -> None:
        """Remove the staging directory (and the target, if this export created it)."""
        fs = self.fs
        try:
            if self.staging is not None:
                fs.delete_dir(self.staging)
            if self._created and not fs.get_file_info(pafs.FileSelector(self.path)):
                fs.delete_dir(self.path)
        except OSError:
            pass  # best effort: the error that made us abort is the one to report
        self.staging = None


class FileTarget:
    """One output file, written to a hidden temporary name beside it and moved into place."""

    def __init__(self, fs: Any, path: str, *, overwrite: bool, protect: Iterable[str] = ()) -> None:
        self.fs = fs
        self.path = path
        self.overwrite = overwrite
        self.protect = tuple(protect)
        self.temp: str | None = None

    def open(self) -> str:
        """Check the target and return the temporary path to write."""
        fs, path = self.fs, self.path
        parent, name = posixpath.split(path)
        _refuse_database_paths(fs, parent or "/", self.protect, replaced=False)
        if _is_local(fs) and os.path.islink(path):
            raise ExportError(f"{path} is a symbolic link; refusing to write through it")
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.Directory:
            raise ExportError(f"{path} is a directory; export_file writes one file")
        if info.type == pafs.FileType.File and not self.overwrite:
            raise ExportError(
                f"{path} exists", hint="choose a new name, or overwrite=True (--overwrite)"
            )
        if parent:
            fs.create_dir(parent, recursive=True)
        self.temp = _join(parent, f".{name}.synarrow-tmp-{secrets.token_hex(8)}")
        return self.temp

    def commit(self) -> None:
        """Move the written file over the target."""
        if self.temp is None:
            raise ExportError("commit() before open()")
        self.fs.move(self.temp, self.path)
        self.temp = None

    def abort(self) -> None:
        """Remove the temporary file."""
        if self.temp is not None:
            try:
                self.fs.delete_file(self.temp)
            except OSError:
                pass
            self.temp = None
