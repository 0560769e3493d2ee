"""The committed columnar state of a database: manifest, mapped data files, key index.

Opening reads the manifest, the small key index and each data file's footer (all three
verified against their checksums): metadata only, so it is fast whatever the data size. A
key's slices are turned into Arrow views on first use (:class:`BaseRef`), after their
checksum and structure are checked (see ``DbConfig.verify``).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from synarrow.columnar import tags
from synarrow.columnar.index import INDEX_SCHEMA, read_index
from synarrow.columnar.ipc import VERIFY_POLICIES, MappedFile, data_schema, key_column
from synarrow.columnar.key_index import KeyIndex
from synarrow.columnar.manifest import (
    DATA_NAME,
    INDEX_NAME,
    MANIFEST_NAME,
    DataFile,
    Manifest,
    read_manifest,
)
from synarrow.columnar.schema import ts_array
from synarrow.columnar.slices import BaseRef
from synarrow.errors import CorruptionError, InvalidArgumentError
from synarrow.fileio import remove_file
from synarrow.log.memtable import TailChunk

__all__ = ["INDEX_SCHEMA", "ColumnarStore", "keyed_table"]

_log = logging.getLogger("synarrow.columnar")
# Temporary files of write_atomic (".MANIFEST.tmp-1a2b3c") and of format 1 ("MANIFEST.tmp").
_TEMP_NAME = re.compile(r"\.?(MANIFEST|g[0-9]{6,12}-[0-9a-z]+\.arrow)\.tmp(-[0-9a-f]+)?")
# Slices shorter than this are copied together for SQL scans: DuckDB pays a few
# microseconds per Arrow batch, so 10k one-batch keys of 100 rows would scan ~8x slower
# than the same rows in one batch. Longer slices stay zero-copy views of the mapping.
SQL_MERGE_ROWS = 1024


def keyed_table(items: list[tuple[str, BaseRef]]) -> pa.Table:
    """Slices of one value type as a (key, ts, value) table for SQL scans.

    ``ts`` and ``value`` are zero-copy views of the mapped batches, except that runs of
    slices under ``SQL_MERGE_ROWS`` rows are concatenated (a copy of at most that many rows
    per key); the run-end encoded key column is built in memory, one run per slice.
    """
    ts: list[pa.Array] = []
    values: list[pa.Array] = []
    small: list[TailChunk] = []

    def flush() -> None:
        if small:
            ts.append(ts_array(np.concatenate([c.ts for c in small])))
            values.append(pa.concat_arrays([c.values for c in small]))
            small.clear()

    for _, ref in items:
        c = ref.chunk()
        if len(c) < SQL_MERGE_ROWS:
            small.append(c)
            continue
        flush()
        ts.append(ts_array(c.ts))
        values.append(c.values)
    flush()
    value_type = values[0].type
    return pa.Table.from_arrays(
        [
            key_column([k for k, _ in items], [r.count for _, r in items]),
            pa.chunked_array(ts, type=ts[0].type),
            pa.chunked_array(values, type=value_type),
        ],
        schema=data_schema(value_type),
    )


class ColumnarStore:
    """Manifest plus open data files of one database's ``columnar/`` directory."""

    def __init__(
        self,
        directory: Path,
        *,
        readonly: bool,
        verify: str = "first-read",
        pins: Path | None = None,
        manifest: Manifest | None = None,
    ) -> None:
        """Open ``directory`` (a writer: create it and remove leftovers).

        ``pins``: the snapshots directory, whose records keep their files from removal
        (:mod:`synarrow.columnar.tags`). ``manifest``: read this committed state (a snapshot's)
        instead of the directory's own manifest; read-only.
        """
        if verify not in VERIFY_POLICIES:
            raise InvalidArgumentError(f"verify must be one of {VERIFY_POLICIES}, got {verify!r}")
        self.directory = directory
        self.readonly = readonly
        self.verify = verify
        if directory.is_symlink():
            raise CorruptionError(
                f"{directory} is a symbolic link; synarrow only reads its own directory",
                hint="replace the link with the real directory, or run `synarrow check PATH`",
            )
        if manifest is not None and not readonly:
            raise InvalidArgumentError("a columnar store opened at a snapshot is read-only")
        self.pins = pins
        if not readonly:
            directory.mkdir(exist_ok=True)
        if manifest is not None:
            self.manifest = manifest
        else:
            self.manifest = read_manifest(directory) if directory.exists() else Manifest()
        if self.manifest.format < 2 and self.manifest.files:
            _log.warning(
                "%s holds columnar format %d files without checksums: their values are "
                "unverified until the next compaction rewrites them",
                directory,
                self.manifest.format,
            )
        self.files: dict[str, MappedFile] = {}
        self.keys = KeyIndex(None, [])
        """The committed key index, once :meth:`open_keys` read it (a compaction
        replaces it)."""
        if not readonly:
            self.remove_unreferenced()

    def live_names(self) -> set[str]:
        """Files the committed manifest refers to (and the manifest itself)."""
        names = {f.name for f in self.manifest.files} | {MANIFEST_NAME}
        if self.manifest.index:
            names.add(self.manifest.index)
        return names

    def remove_unreferenced(self) -> list[str]:
        """Delete leftovers of interrupted or superseded compactions; returns their names.

        Only names synarrow generates are removed, and never a file a snapshot pins (when
        a snapshot record cannot be read, no data file is removed); anything else is left
        for ``synarrow check`` to report.
        """
        live = self.live_names()
        pinned = tags.pinned_names(self.pins) if self.pins is not None else set()
        if pinned is None:
            _log.warning(
                "a snapshot record in %s cannot be read: no columnar file is removed until "
                "`synarrow check` passes",
                self.pins,
            )
        else:
            live |= pinned
        removed = []
        for f in sorted(self.directory.iterdir()):
            name = f.name
            if name in live:
                continue
            data = DATA_NAME.fullmatch(name) or INDEX_NAME.fullmatch(name)
            if (data and pinned is not None) or _TEMP_NAME.fullmatch(name):
                remove_file(f)
                removed.append(name)
                self.files.pop(name, None)
        return removed

    def mapped(self, info: DataFile) -> MappedFile:
        """The open mapping of a data file (footer verified)."""
        mf = self.files.get(info.name)
        if mf is None:
            try:
                mf = MappedFile(self.directory / info.name, info, verify=self.verify)
            except FileNotFoundError as exc:
                raise CorruptionError(
                    f"columnar file {self.directory / info.name} named by the manifest is missing"
                ) from exc
            except OSError as exc:
                if isinstance(exc, CorruptionError):
                    raise
                raise CorruptionError(f"columnar file {self.directory / info.name}: {exc}") from exc
            self.files[info.name] = mf
        return mf

    def open_keys(self) -> KeyIndex:
        """Read and check the committed key index (:attr:`keys`); with ``verify="open"``
        every slice's checksum is verified too. Metadata only otherwise: no per-key work."""
        rows = None
        if self.manifest.index:
            rows = read_index(self.directory / self.manifest.index, self.manifest)
        files = [self.mapped(df) for df in self.manifest.files] if rows is not None else []
        keys = KeyIndex(rows, files)
        keys.check_bounds()
        if self.verify == "open":
            keys.verify_all()
        self.keys = keys
        return keys

    def total_bytes(self) -> int:
        """Bytes of the committed data files."""
        return sum(f.bytes for f in self.manifest.files)

    def describe(self) -> dict[str, Any]:
        """Format and verification state, for ``stats()``."""
        unverified = [f.name for f in self.manifest.files if not f.checksummed]
        return {
            "columnar_format": self.manifest.format if self.manifest.files else None,
            "columnar_verify": self.verify,
            "columnar_unverified_files": unverified,
            "columnar_batches_verified": sum(mf.batches_verified for mf in self.files.values()),
        }

    def close(self) -> None:
        """Forget the mappings (views already handed out stay valid)."""
        for mf in self.files.values():
            mf.close()
        self.files.clear()
