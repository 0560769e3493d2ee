"""The manifest: which columnar files are live, their checksums, and where the log tail starts.

``columnar/MANIFEST`` is a small JSON document replaced atomically (temp file created
exclusively, fsync, rename, fsync of the directory). Whatever it names is the committed
state; other files named like ours in ``columnar/`` are leftovers of an interrupted
compaction and are removed on a writable open.

Format 2 (written by this version) carries an XXH3-64 of its own canonical JSON, of the key
index file and of every data file's footer; the per-slice checksums of the data live in the
key index. Format 1 (earlier versions) has none of these: it is read as it is, reported as
unverified, and rewritten in format 2 by the next compaction. Only file names synarrow
generates are accepted, so a manifest cannot point outside the directory.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synarrow.columnar.checksum import from_hex, to_hex, xxh3
from synarrow.errors import CorruptionError
from synarrow.fileio import fsync_directory, read_bytes, require_name, write_atomic

__all__ = [
    "DATA_NAME",
    "INDEX_NAME",
    "MANIFEST_FORMAT",
    "MANIFEST_NAME",
    "DataFile",
    "Manifest",
    "commit_manifest",
    "read_manifest",
]

MANIFEST_NAME = "MANIFEST"
MANIFEST_FORMAT = 2
#: Names of data and index files (generation, then file number): nothing else is opened.
DATA_NAME = re.compile(r"g[0-9]{6,12}-[0-9]{3,6}\.arrow")
INDEX_NAME = re.compile(r"g[0-9]{6,12}-index\.arrow")
_COMPRESSIONS = (None, "lz4", "zstd")
# A manifest lists a few entries per value type; anything near this size is not ours.
MAX_MANIFEST_BYTES = 64 * 1024 * 1024


@dataclass
class DataFile:
    """One Arrow IPC data file of a generation.

    ``batches``, ``footer`` (byte offset where the IPC footer starts) and ``footer_xxh3``
    are ``None`` for format-1 files, which carry no checksums.
    """

    name: str
    rows: int
    bytes: int
    batches: int | None = None
    footer: int | None = None
    footer_xxh3: int | None = None
    compression: str | None = None  # IPC buffer compression ("lz4" / "zstd"), format 2

    @property
    def checksummed(self) -> bool:
        """Whether the file's footer and batches carry checksums (format 2)."""
        return self.footer_xxh3 is not None


@dataclass
class Manifest:
    """The committed columnar state."""

    generation: int = 0
    first_segment: int = 1  # log segments before this are folded into the files
    next_seq: int = 0  # sequence number of the first entry of segment first_segment
    index: str | None = None  # Arrow IPC file: key -> slices of data files
    files: list[DataFile] = field(default_factory=list)
    created: str | None = None  # ISO time of the compaction that wrote it
    index_bytes: int | None = None  # size of the index file (format 2)
    index_xxh3: int | None = None  # XXH3-64 of the whole index file (format 2)
    format: int = MANIFEST_FORMAT
    clock: int = 0
    """The latest timestamp the engine had handed out to entries written without one when
    this compaction ran (timestamps of default-stamped batches may run ahead of the wall
    clock; a reopened engine continues after it). 0: not recorded."""

    def _body(self) -> dict[str, Any]:
        files = []
        for f in self.files:
            item: dict[str, Any] = {"name": f.name, "rows": f.rows, "bytes": f.bytes}
            if f.checksummed:
                assert f.footer_xxh3 is not None
                item.update(
                    batches=f.batches,
                    footer=f.footer,
                    footer_xxh3=to_hex(f.footer_xxh3),
                    compression=f.compression,
                )
            files.append(item)
        body: dict[str, Any] = {
            "format": self.format,
            "generation": self.generation,
            "first_segment": self.first_segment,
            "next_seq": self.next_seq,
            "index": self.index,
            "files": files,
            "created": self.created,
        }
        if self.clock:
            body["clock"] = self.clock
        if self.format >= 2:
            body["index_bytes"] = self.index_bytes
            body["index_xxh3"] = None if self.index_xxh3 is None else to_hex(self.index_xxh3)
        return body

    def to_json(self) -> str:
        """Serialise for the MANIFEST file, with the checksum of the canonical body."""
        body = self._body()
        return json.dumps({**body, "xxh3": to_hex(xxh3(_canonical(body)))}, indent=1)

    @classmethod
    def from_json(cls, text: str | bytes, path: Path) -> Manifest:
        """Parse a MANIFEST file; damage or a name synarrow does not write is a
        :class:`CorruptionError`."""
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            fmt = data.get("format")
            if fmt == 2:
                stored = from_hex(data.pop("xxh3", None))
                if stored != xxh3(_canonical(data)):
                    raise ValueError("its checksum does not match its contents")
            elif fmt != 1:
                if isinstance(fmt, int) and not isinstance(fmt, bool) and fmt > MANIFEST_FORMAT:
                    raise CorruptionError(
                        f"{path} has format {fmt}, written by a newer synarrow",
                        hint="open it with the synarrow version that wrote it",
                    )
                raise ValueError(f"unknown format {fmt!r}")
            return cls._parse(data, fmt, path)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CorruptionError(f"columnar manifest {path} is damaged: {exc}") from exc

    @classmethod
    def _parse(cls, data: dict[str, Any], fmt: int, path: Path) -> Manifest:
        index = data["index"]
        if index is not None:
            require_name(index, INDEX_NAME, what=f"index file named in {path}")
        files = []
        seen: set[str] = set()
        for item in data["files"]:
            name = require_name(item["name"], DATA_NAME, what=f"data file named in {path}")
            if name in seen:
                raise ValueError(f"file {name} is listed twice")
            seen.add(name)
            df = DataFile(name, _count(item, "rows"), _count(item, "bytes"))
            if fmt >= 2:
                df.batches = _count(item, "batches")
                df.footer = _count(item, "footer")
                df.footer_xxh3 = from_hex(item["footer_xxh3"])
                df.compression = item["compression"]
                if df.compression not in _COMPRESSIONS:
                    raise ValueError(f"file {name}: unknown compression {df.compression!r}")
                if not df.footer < df.bytes:
                    raise ValueError(f"file {name}: footer at {df.footer} of {df.bytes} bytes")
            files.append(df)
        created = data.get("created")
        if created is not None and not isinstance(created, str):
            raise ValueError("'created' is not a string")
        m = cls(
            generation=_count(data, "generation"),
            first_segment=_count(data, "first_segment"),
            next_seq=_count(data, "next_seq"),
            index=index,
            files=files,
            created=created,
            format=fmt,
            clock=_count(data, "clock") if "clock" in data else 0,
        )
        if fmt >= 2 and index is not None:
            m.index_bytes = _count(data, "index_bytes")
            m.index_xxh3 = from_hex(data["index_xxh3"])
        return m


def _canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def _count(item: dict[str, Any], name: str) -> int:
    value = item[name]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name!r} is {value!r}, not a non-negative integer")
    return value


def read_manifest(directory: Path) -> Manifest:
    """The committed manifest, or an empty one for a database never compacted."""
    path = directory / MANIFEST_NAME
    try:
        text = read_bytes(path, max_size=MAX_MANIFEST_BYTES, what="columnar manifest")
    except FileNotFoundError:
        return Manifest()
    except OSError as exc:
        if isinstance(exc, CorruptionError):
            raise
        raise CorruptionError(f"columnar manifest {path} cannot be read: {exc}") from exc
    return Manifest.from_json(text, path)


def commit_manifest(directory: Path, manifest: Manifest) -> None:
    """Atomically make ``manifest`` the committed state."""
    # The new data and index files are fsynced, but their names are entries of this
    # directory: make those durable first, so a manifest that survives a power loss never
    # names a file that did not.
    fsync_directory(directory)
    write_atomic(directory / MANIFEST_NAME, manifest.to_json().encode())
