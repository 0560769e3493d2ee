"""Tagged versions: the records that pin a columnar generation under a name.

A snapshot is a compacted state of the whole database kept under a tag. Compaction never
changes a data file it wrote (it writes new ones and removes those nobody needs), so a
snapshot copies nothing: its record in ``<database>/snapshots/<tag>.json`` holds a copy of
the columnar manifest of that moment, and every file that manifest names stays on disk
while the record exists (:func:`pinned_names`). The record also freezes what reads of that
moment depended on besides the files: the duplicates policy, the retention rules and the
moment itself (retention cutoffs of a tag are computed at its creation time, so expiry never
changes what it reads).

A record is written whole or not at all (temporary file, fsync, rename, fsync of the
directory) and removed with one unlink, so a crash leaves a tag fully present or fully
absent; the files only it pinned are then leftovers that the next writable open removes.
Records carry an XXH3-64 of their canonical JSON; a damaged one is a
:class:`~synarrow.errors.CorruptionError` for whoever reads that tag, and makes
:func:`pinned_names` keep every data file (nothing is removed on the strength of a record
that cannot be read).

Readers of a tag hold a shared ``flock`` on its record (:class:`TagReader`); dropping a tag
takes it exclusively without waiting, so a tag that an open handle reads is never dropped
under it (:class:`~synarrow.errors.SnapshotInUseError`). The locks vanish with the process.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synarrow.columnar.checksum import from_hex, to_hex, xxh3
from synarrow.columnar.manifest import Manifest
from synarrow.errors import (
    CorruptionError,
    InvalidArgumentError,
    SnapshotExistsError,
    SnapshotInUseError,
    SnapshotNotFoundError,
)
from synarrow.fileio import (
    fsync_directory,
    open_fd,
    read_bytes,
    remove_file,
    require_directory,
    temporary_pattern,
    write_atomic,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "MAX_NOTE_CHARS",
    "MAX_RECORD_BYTES",
    "MAX_TAGS",
    "RECORD_FORMAT",
    "SNAPSHOTS_DIR",
    "TAG_PATTERN",
    "TagReader",
    "TagRecord",
    "check_note",
    "check_tag",
    "list_records",
    "pinned_names",
    "read_record",
    "record_path",
    "remove_leftovers",
    "remove_record",
    "require_new_tag",
    "tag_names",
    "write_record",
]

#: The directory of the records, inside the database directory.
SNAPSHOTS_DIR = "snapshots"
#: A tag: a letter or digit, then up to 127 letters, digits, ``.``, ``_`` or ``-`` (ASCII).
TAG_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
#: Format of the record files written by this version.
RECORD_FORMAT = 1
#: The largest record read: a manifest lists a few entries per file, so anything near this
#: size is damaged or crafted.
MAX_RECORD_BYTES = 64 * 1024 * 1024
#: The longest note kept with a tag.
MAX_NOTE_CHARS = 10_000
#: At most this many tags in one database.
MAX_TAGS = 100_000
_SUFFIX = ".json"
_DUPLICATES = ("keep_all", "keep_last", "keep_first")
_INT64_MAX = (1 << 63) - 1
# Not the default hint (repair= does not apply to a snapshot): what a damaged record means.
_HINT = (
    "while it cannot be read no columnar file is removed; restore the file from a backup, "
    "or delete it to give up that tag"
)


def check_tag(tag: object) -> str:
    """``tag`` if it is a safe tag name, else :class:`InvalidArgumentError` naming the rule."""
    if not isinstance(tag, str) or TAG_PATTERN.fullmatch(tag) is None:
        shown = repr(tag) if isinstance(tag, str) else type(tag).__name__
        raise InvalidArgumentError(
            f"snapshot tag {shown:.80} is not a safe name",
            hint="use 1 to 128 ASCII letters, digits, '.', '_' or '-', starting with a "
            "letter or digit (for example 'v1', '2026-12-01', 'train.epoch-3')",
        )
    return tag


def check_note(note: object) -> str | None:
    """``note`` if it can be kept with a tag (``None``, or valid Unicode text of at most
    :data:`MAX_NOTE_CHARS` characters), else :class:`InvalidArgumentError`."""
    if note is None:
        return None
    if not isinstance(note, str):
        raise InvalidArgumentError(f"a snapshot note is a str, not {type(note).__name__}")
    if len(note) > MAX_NOTE_CHARS:
        raise InvalidArgumentError(f"a snapshot note holds at most {MAX_NOTE_CHARS:,} characters")
    try:
        note.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgumentError(
            "a snapshot note must be valid Unicode text (it holds a lone surrogate)"
        ) from None
    return note


def record_path(directory: Path, tag: str) -> Path:
    """Where the record of ``tag`` lives (``tag`` checked first)."""
    return directory / (check_tag(tag) + _SUFFIX)


@dataclass(frozen=True)
class TagRecord:
    """One tag: the pinned manifest and what reads at that moment depended on."""

    tag: str
    created_us: int
    """When the snapshot was taken, microseconds since the epoch (UTC); also the moment
    its retention cutoffs are computed at."""
    manifest: Manifest
    duplicates: str = "keep_all"
    retention: Mapping[str, int] = field(default_factory=dict)
    """The retention rules of that moment: pattern -> maximum age in microseconds."""
    note: str | None = None
    keys: int = 0
    """Keys with at least one stored entry in the pinned files."""
    entries: int = 0
    """Entries stored for those keys (before the duplicates policy and retention)."""
    data_bytes: int = 0
    """Bytes of the data and index files the record pins."""

    @property
    def created(self) -> dt.datetime:
        """:attr:`created_us` as an aware UTC datetime."""
        return dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(
            microseconds=self.created_us
        )

    @property
    def fingerprint(self) -> str:
        """16 hex digits (XXH3-64 of the record's canonical body) identifying this exact
        snapshot: the pinned manifest with its generation and the checksums of its index and
        data files, the moment, the duplicates policy and the retention rules. A tag dropped
        and taken again gets another fingerprint, even over the same data."""
        return to_hex(xxh3(_canonical(self._body())))

    def files_present(self, columnar: Path) -> bool:
        """Whether every file it pins is in ``columnar`` as a regular file of the size the
        manifest records (cheap: no data is read; ``synarrow check`` hashes the contents)."""
        sizes: dict[str, int | None] = {f.name: f.bytes for f in self.manifest.files}
        if self.manifest.index:
            sizes[self.manifest.index] = self.manifest.index_bytes
        for name, size in sizes.items():
            try:
                st = os.lstat(columnar / name)
            except OSError:
                return False
            if not stat.S_ISREG(st.st_mode) or (size is not None and st.st_size != size):
                return False
        return True

    def file_names(self) -> set[str]:
        """The columnar files this record keeps on disk."""
        names = {f.name for f in self.manifest.files}
        if self.manifest.index:
            names.add(self.manifest.index)
        return names

    def _body(self) -> dict[str, Any]:
        return {
            "format": RECORD_FORMAT,
            "tag": self.tag,
            "created_us": self.created_us,
            "note": self.note,
            "duplicates": self.duplicates,
            "retention": dict(sorted(self.retention.items())),
            "keys": self.keys,
            "entries": self.entries,
            "data_bytes": self.data_bytes,
            "manifest": json.loads(self.manifest.to_json()),
        }

    def to_json(self) -> bytes:
        """The record file's content, with the checksum of the canonical body."""
        body = self._body()
        return (
            json.dumps({**body, "xxh3": to_hex(xxh3(_canonical(body)))}, indent=1) + "\n"
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes, path: Path) -> TagRecord:
        """Parse and verify a record file; anything wrong is a :class:`CorruptionError`."""
        try:
            data = json.loads(raw.decode("utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            fmt = data.get("format")
            if fmt != RECORD_FORMAT:
                if isinstance(fmt, int) and not isinstance(fmt, bool) and fmt > RECORD_FORMAT:
                    raise CorruptionError(
                        f"snapshot record {path} has format {fmt}, written by a newer synarrow",
                        hint="open it with the synarrow version that wrote it",
                    )
                raise ValueError(f"unknown format {fmt!r}")
            if from_hex(data.pop("xxh3", None)) != xxh3(_canonical(data)):
                raise ValueError("its checksum does not match its contents")
            tag = check_tag(data["tag"])
            if path.name != tag + _SUFFIX:
                raise ValueError(f"it names tag {tag!r}, not the one of its file name")
            note = data["note"]
            if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE_CHARS):
                raise ValueError("'note' is not a string of at most 10,000 characters")
            duplicates = data["duplicates"]
            if duplicates not in _DUPLICATES:
                raise ValueError(f"unknown duplicates policy {duplicates!r}")
            rules = data["retention"]
            if not isinstance(rules, dict):
                raise ValueError("'retention' is not an object")
            for pattern, age in rules.items():
                if not pattern or type(age) is not int or not 0 < age <= _INT64_MAX:
                    raise ValueError(f"bad retention rule {pattern!r:.60}")
            manifest = Manifest.from_json(json.dumps(data["manifest"]), path)
            return cls(
                tag=tag,
                created_us=_count(data, "created_us"),
                manifest=manifest,
                duplicates=duplicates,
                retention=rules,
                note=note,
                keys=_count(data, "keys"),
                entries=_count(data, "entries"),
                data_bytes=_count(data, "data_bytes"),
            )
        except CorruptionError as exc:
            if str(path) in str(exc):
                raise _record_hint(exc) from exc
            raise CorruptionError(f"snapshot record {path} is damaged: {exc}", hint=_HINT) from exc
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CorruptionError(f"snapshot record {path} is damaged: {exc}", hint=_HINT) from exc


def _record_hint(exc: CorruptionError) -> CorruptionError:
    """``exc`` with the hint for a damaged record where it carries the generic one."""
    if exc.hint != CorruptionError.default_hint:
        return exc
    return CorruptionError(exc.message, hint=_HINT)


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _count(data: dict[str, Any], name: str) -> int:
    value = data[name]
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _INT64_MAX:
        raise ValueError(f"{name!r} is {value!r}, not a non-negative integer")
    return value


def tag_names(directory: Path) -> list[str]:
    """The tags recorded in ``directory`` (the snapshots directory), sorted; none if it does
    not exist. A symlink in its place is a :class:`CorruptionError`."""
    if not require_directory(directory, what="snapshots directory"):
        return []
    tags = []
    for entry in os.scandir(directory):
        name = entry.name
        if name.endswith(_SUFFIX) and TAG_PATTERN.fullmatch(name[: -len(_SUFFIX)]):
            tags.append(name[: -len(_SUFFIX)])
    return sorted(tags)


def read_record(directory: Path, tag: str) -> TagRecord:
    """The record of ``tag``; :class:`SnapshotNotFoundError` if there is none."""
    path = record_path(directory, tag)
    try:
        raw = read_bytes(path, max_size=MAX_RECORD_BYTES, what="snapshot record")
    except CorruptionError as exc:
        raise _record_hint(exc) from exc
    except FileNotFoundError:
        raise SnapshotNotFoundError(
            f"snapshot {tag!r} not found in {directory.parent}",
            hint="db.snapshots() (or `synarrow snapshots PATH`) lists the tags",
        ) from None
    return TagRecord.from_json(raw, path)


def list_records(directory: Path) -> list[TagRecord]:
    """Every record, oldest first (a damaged one raises :class:`CorruptionError`)."""
    records = [read_record(directory, tag) for tag in tag_names(directory)]
    return sorted(records, key=lambda r: (r.created_us, r.tag))


def require_new_tag(directory: Path, tag: str) -> None:
    """:class:`SnapshotExistsError` if ``tag`` (or a tag that differs from it only in case,
    which would collide on case-insensitive file systems) exists; InvalidArgumentError when
    the database holds :data:`MAX_TAGS` already."""
    existing = tag_names(directory)
    lowered = tag.lower()
    for other in existing:
        if other.lower() == lowered:
            same = other == tag
            raise SnapshotExistsError(
                f"snapshot {other!r} already exists in {directory.parent}"
                + ("" if same else f" (tags may not differ only in case: {tag!r})"),
                hint="tags are immutable: pick another tag, or drop_snapshot() the old one",
            )
    if len(existing) >= MAX_TAGS:
        raise InvalidArgumentError(f"a database holds at most {MAX_TAGS:,} snapshots")


def write_record(directory: Path, record: TagRecord) -> None:
    """Write a new record durably; :class:`SnapshotExistsError` if the tag (or one that
    differs only in case, which would collide on case-insensitive file systems) exists."""
    if directory.exists():
        require_directory(directory, what="snapshots directory")
    else:
        directory.mkdir()
        fsync_directory(directory.parent)
    require_new_tag(directory, record.tag)
    check_note(record.note)
    write_atomic(record_path(directory, record.tag), record.to_json())


def remove_record(directory: Path, tag: str) -> None:
    """Unlink the record of ``tag`` durably (the caller holds its :class:`TagReader`
    exclusively)."""
    os.unlink(record_path(directory, tag))
    fsync_directory(directory)


def remove_leftovers(directory: Path) -> list[str]:
    """Remove temporaries of interrupted record writes; returns their names."""
    if not require_directory(directory, what="snapshots directory"):
        return []
    removed = []
    for entry in os.scandir(directory):
        name = entry.name
        if name.startswith(".") and ".json.tmp-" in name:
            stem = name[1 : name.index(".json.tmp-")]
            if temporary_pattern(stem + _SUFFIX).fullmatch(name):
                remove_file(entry.path)
                removed.append(name)
    return removed


def pinned_names(directory: Path) -> set[str] | None:
    """Names of the columnar files some record pins; ``None`` when a record cannot be read
    (then no data file may be removed)."""
    names: set[str] = set()
    try:
        for record in list_records(directory):
            names |= record.file_names()
    except (CorruptionError, OSError):
        return None
    return names


class TagReader:
    """A lock on a tag's record: shared by its readers, exclusive while it is dropped.

    ``flock`` locks belong to the open file, so readers in this process and in others count
    alike, and a crashed reader's lock is gone with it.
    """

    def __init__(self, directory: Path, tag: str) -> None:
        self.path = record_path(directory, tag)
        self.directory = directory
        self.tag = tag
        self._fd: int | None = None

    def _open(self) -> int:
        try:
            return open_fd(self.path, os.O_RDONLY, what="snapshot record")
        except FileNotFoundError:
            raise SnapshotNotFoundError(
                f"snapshot {self.tag!r} not found in {self.directory.parent}",
                hint="db.snapshots() (or `synarrow snapshots PATH`) lists the tags",
            ) from None

    def share(self) -> None:
        """Take the lock shared (waits while a drop of the tag is under way), then make sure
        the record is still there."""
        fd = self._open()
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_SH)
            if os.fstat(fd).st_nlink == 0:  # dropped while we waited
                raise SnapshotNotFoundError(
                    f"snapshot {self.tag!r} was dropped from {self.directory.parent}"
                )
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def exclusive(self) -> None:
        """Take the lock exclusively, or raise :class:`SnapshotInUseError` at once."""
        fd = self._open()
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                raise SnapshotInUseError(
                    f"snapshot {self.tag!r} of {self.directory.parent} is open for reading "
                    "(by this or another process)",
                    hint=f"close the handles opened with snapshot={self.tag!r}, then drop it",
                ) from exc
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (closing the file releases it)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
