"""The committed columnar state of a database: manifest, mapped data files, key index.

Opening reads the manifest, the small key index and each data file's footer (all three
verified against their checksums): metadata only, so it is fast whatever the data size. A
key's slices are turned into Arrow views on first use (:class:`BaseRef`), after their
checksum and structure are checked (see ``DbConfig.verify``).
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from synarrow.columnar import tags
from synarrow.columnar.index import INDEX_SCHEMA, read_index
from synarrow.columnar.ipc import VERIFY_POLICIES, MappedFile, Span, data_schema, key_column
from synarrow.columnar.manifest import (
    DATA_NAME,
    INDEX_NAME,
    MANIFEST_NAME,
    DataFile,
    Manifest,
    read_manifest,
)
from synarrow.columnar.schema import ts_array
from synarrow.errors import CorruptionError, InvalidArgumentError
from synarrow.fileio import remove_file
from synarrow.log.format import Atom
from synarrow.log.memtable import TailChunk

__all__ = ["INDEX_SCHEMA", "BaseRef", "ColumnarStore", "keyed_table"]

_log = logging.getLogger("synarrow.columnar")
# Temporary files of write_atomic (".MANIFEST.tmp-1a2b3c") and of format 1 ("MANIFEST.tmp").
_TEMP_NAME = re.compile(r"\.?(MANIFEST|g[0-9]{6,12}-[0-9a-z]+\.arrow)\.tmp(-[0-9a-f]+)?")
_ATOM_TYPES = {
    Atom.FLOAT: lambda t: t == pa.float64(),
    Atom.INT: lambda t: t == pa.int64(),
    Atom.TEXT: lambda t: t == pa.large_string(),
    Atom.BYTES: lambda t: t == pa.large_binary(),
    Atom.VECTOR: lambda t: pa.types.is_fixed_size_list(t) or pa.types.is_large_list(t),
    Atom.NULL: lambda t: pa.types.is_null(t),
}


@dataclass(eq=False, slots=True)
class BaseRef:
    """``count`` rows of one key in a data file, from ``row`` of record batch ``batch``.

    ``span`` is the batch's byte range and checksum (``None`` in format-1 files).
    """

    file: MappedFile
    batch: int
    row: int
    count: int
    atom: Atom | None
    last_atom: Atom
    span: Span | None = None
    first_ts: int | None = None
    """Timestamp of the first row, from the index (``None`` in older indexes)."""
    last_ts: int | None = None
    """Timestamp of the last row, the greatest: the slice is sorted (``None``: unknown)."""
    _chunk: TailChunk | None = field(default=None, repr=False)

    def chunk(self) -> TailChunk:
        """The slice as timestamps and values (views of the mapping when uncompressed).

        The first call verifies and validates the record batch (:meth:`MappedFile.batch`)
        and checks that the slice fits in it and that its atom types match the column.
        """
        c = self._chunk
        if c is None:
            b = self.file.batch(self.batch, self.span)
            what = f"columnar file {self.file.path}, record batch {self.batch}"
            if self.row + self.count > b.num_rows:
                raise CorruptionError(
                    f"{what}: the index asks for rows {self.row}..{self.row + self.count} of "
                    f"{b.num_rows}"
                )
            n = b.num_columns  # format 2: ts, value; format 1: key, ts, value
            ts, values = b.column(n - 2), b.column(n - 1)
            _check_atoms(self, values.type, what)
            ts_np = np.frombuffer(ts.buffers()[1], dtype=np.int64, count=ts.offset + b.num_rows)[
                ts.offset :
            ]
            if self.row or self.count != b.num_rows:  # format 1: several keys per batch
                ts_np = ts_np[self.row : self.row + self.count]
                values = values.slice(self.row, self.count)
            if self.last_ts is not None and (
                int(ts_np[0]) != self.first_ts or int(ts_np[-1]) != self.last_ts
            ):
                raise CorruptionError(
                    f"{what}: the slice's timestamps run {int(ts_np[0])}..{int(ts_np[-1])}, "
                    f"the index says {self.first_ts}..{self.last_ts}"
                )
            c = self._chunk = TailChunk(self.atom, ts_np, values)
        return c

    @property
    def identity(self) -> tuple[object, ...]:
        """File name, record batch, first row, rows and the batch's checksum: equal
        identities hold equal data (a data file is never changed once written)."""
        return (
            self.file.path.name,
            self.batch,
            self.row,
            self.count,
            None if self.span is None else self.span.xxh3,
        )

    def verify(self) -> None:
        """Hash the slice's record batch now, whatever the policy (compaction, ``check``)."""
        if self.span is not None:
            self.file.verify_batch(self.batch, self.span)

    @property
    def nbytes(self) -> int:
        """Approximate bytes of the slice (for compaction decisions)."""
        return int(self.chunk().values.nbytes) + 8 * self.count


def _check_atoms(ref: BaseRef, value_type: pa.DataType, what: str) -> None:
    if pa.types.is_struct(value_type):
        ok = ref.atom is None
        present = {Atom.NULL} | {a for a in Atom if a.name.lower() in value_type.names}
    else:
        ok = ref.atom is not None and _ATOM_TYPES[ref.atom](value_type)
        present = {Atom.NULL} if ref.atom is None else {Atom.NULL, ref.atom}
    if not ok or ref.last_atom not in present:
        raise CorruptionError(f"{what}: the index's atom types do not match a {value_type} column")


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


def _check_bounds(cols: dict[str, np.ndarray], files: list[MappedFile]) -> None:
    """Every slice names an existing record batch and a byte range before the footer."""
    f = cols["file"]
    if not len(f):
        return
    num_batches = np.array([mf.num_batches for mf in files], dtype=np.int64)[f]
    bad = np.flatnonzero(cols["batch"] >= num_batches)
    if len(bad):
        i = int(bad[0])
        raise CorruptionError(
            f"columnar index names record batch {int(cols['batch'][i])} of "
            f"{files[int(f[i])].path}, which has {int(num_batches[i])}"
        )
    if "offset" in cols:
        ends = np.array([mf.data_end for mf in files], dtype=np.int64)[f]
        # offsets and lengths are non-negative (read_index), so the sum cannot wrap
        bad = np.flatnonzero(cols["offset"] + cols["length"] > ends)
        if len(bad):
            i = int(bad[0])
            raise CorruptionError(
                f"columnar index: bytes {int(cols['offset'][i])}.."
                f"{int(cols['offset'][i] + cols['length'][i])} are outside the record batches "
                f"of {files[int(f[i])].path}"
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

    def load_keys(self) -> Iterator[tuple[str, list[BaseRef]]]:
        """Each key of the committed index with its slices, oldest first.

        Every field is validated first; with ``verify="open"`` every slice's checksum is
        verified before the first key is returned.
        """
        if not self.manifest.index:
            return
        rows = read_index(self.directory / self.manifest.index, self.manifest)
        files = [self.mapped(df) for df in self.manifest.files]
        _check_bounds(rows.arrays, files)
        cols = rows.columns
        spans: list[Span | None] = [None] * len(rows)
        if rows.checksummed:
            # tuple.__new__(Span, (o, n, h)) builds the named tuples in C (10k keys: 1 ms
            # instead of 10 ms through Span(...), a third of the reopen budget).
            fields = zip(cols["offset"], cols["length"], cols["xxh3"])
            spans = list(map(tuple.__new__, itertools.repeat(Span), fields))
        atoms = {int(a): a for a in Atom}
        no_ts = itertools.repeat(None)
        firsts = cols["first_ts"] if rows.timed else no_ts
        lasts = cols["last_ts"] if rows.timed else no_ts
        per_key: list[tuple[str, list[BaseRef]]] = []
        current: str | None = None
        refs: list[BaseRef] = []
        for key, f, b, r, n, a, la, span, t0, t1 in zip(
            rows.keys,
            cols["file"],
            cols["batch"],
            cols["row"],
            cols["count"],
            cols["atom"],
            cols["last_atom"],
            spans,
            firsts,
            lasts,
        ):
            if key != current:
                if current is not None:
                    per_key.append((current, refs))
                current, refs = key, []
            refs.append(BaseRef(files[f], b, r, n, atoms.get(a), atoms[la], span, t0, t1))
        if current is not None:
            per_key.append((current, refs))
        if self.verify == "open":
            for _, key_refs in per_key:
                for ref in key_refs:
                    ref.verify()
        yield from per_key

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
