"""The manifest: which columnar files are live and where the log tail starts.

``columnar/MANIFEST`` is a small JSON document replaced atomically (temp file, fsync,
rename, fsync of the directory). Whatever it names is the committed state; any other file in
``columnar/`` is the leftover of an interrupted compaction and is removed on open.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from synarrow.errors import CorruptionError
from synarrow.log.writer import fsync_directory

MANIFEST_NAME = "MANIFEST"
MANIFEST_FORMAT = 1


@dataclass
class DataFile:
    """One Arrow IPC file of a generation, and how many rows it holds."""

    name: str
    rows: int
    bytes: int


@dataclass
class Manifest:
    """The committed columnar state."""

    generation: int = 0
    first_segment: int = 1  # log segments before this are folded into the files
    next_seq: int = 0  # sequence number of the first entry of segment first_segment
    index: str | None = None  # Arrow IPC file: key -> slices of data files
    files: list[DataFile] = field(default_factory=list)
    created: str | None = None  # ISO time of the compaction that wrote it

    def to_json(self) -> str:
        """Serialise (with a format number) for the MANIFEST file."""
        return json.dumps({"format": MANIFEST_FORMAT, **asdict(self)}, indent=1)

    @classmethod
    def from_json(cls, text: str, path: Path) -> Manifest:
        """Parse a MANIFEST file's text; damage is a :class:`CorruptionError`."""
        try:
            data = json.loads(text)
            if data.pop("format") > MANIFEST_FORMAT:
                raise CorruptionError(f"{path} was written by a newer synarrow")
            data["files"] = [DataFile(**f) for f in data["files"]]
            return cls(**data)
        except (ValueError, KeyError, TypeError) as exc:
            raise CorruptionError(f"columnar manifest {path} is damaged: {exc}") from exc


def read_manifest(directory: Path) -> Manifest:
    """The committed manifest, or an empty one for a database never compacted."""
    path = directory / MANIFEST_NAME
    if not path.exists():
        return Manifest()
    return Manifest.from_json(path.read_text(), path)


def write_file_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a fsynced temp file and an atomic rename."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_directory(path.parent)


def commit_manifest(directory: Path, manifest: Manifest) -> None:
    """Atomically make ``manifest`` the committed state."""
    # The new data and index files are fsynced, but their names are entries of this
    # directory: make those durable first, so a manifest that survives a power loss never
    # names a file that did not.
    fsync_directory(directory)
    write_file_durably(directory / MANIFEST_NAME, manifest.to_json().encode())
