"""The committed columnar state of a database: manifest, mapped data files, key index.

Opening reads the manifest, the small key index and each data file's footer: metadata only,
so it is fast whatever the data size. A key's slices are turned into Arrow views on first
use (:class:`BaseRef`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from synarrow.columnar.ipc import MappedFile
from synarrow.columnar.manifest import MANIFEST_NAME, Manifest, read_manifest
from synarrow.columnar.schema import numpy_dtype
from synarrow.errors import CorruptionError
from synarrow.log.format import Atom
from synarrow.log.memtable import TailChunk

INDEX_SCHEMA = pa.schema(
    [
        ("key", pa.large_string()),
        ("file", pa.int32()),
        ("batch", pa.int32()),
        ("row", pa.int64()),
        ("count", pa.int64()),
        ("atom", pa.int8()),  # atom of the values, -1 for a mixed-type (struct) slice
        ("last_atom", pa.int8()),  # atom of the slice's last entry
    ]
)


@dataclass(eq=False)
class BaseRef:
    """``count`` rows of one key in a data file, from ``row`` of record batch ``batch``."""

    file: MappedFile
    batch: int
    row: int
    count: int
    atom: Atom | None
    last_atom: Atom
    _chunk: TailChunk | None = field(default=None, repr=False)

    def chunk(self) -> TailChunk:
        """The slice as timestamps and values (views of the mapping when uncompressed)."""
        c = self._chunk
        if c is None:
            b = self.file.batch(self.batch).slice(self.row, self.count)
            ts = b.column(1)
            ts_np = np.frombuffer(ts.buffers()[1], dtype=np.int64, count=ts.offset + len(ts))
            c = self._chunk = TailChunk(self.atom, ts_np[ts.offset :], b.column(2))
        return c

    @property
    def nbytes(self) -> int:
        """Approximate bytes of the slice (for compaction decisions)."""
        return self.chunk().values.nbytes + 8 * self.count


class ColumnarStore:
    """Manifest plus open data files of one database's ``columnar/`` directory."""

    def __init__(self, directory: Path, *, readonly: bool) -> None:
        self.directory = directory
        self.readonly = readonly
        if not readonly:
            directory.mkdir(exist_ok=True)
        self.manifest = read_manifest(directory) if directory.exists() else Manifest()
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
        """Delete leftovers of interrupted or superseded compactions; returns their names."""
        live = self.live_names()
        removed = []
        for f in self.directory.iterdir():
            if f.name not in live:
                f.unlink()
                removed.append(f.name)
                self.files.pop(f.name, None)
        return removed

    def mapped(self, name: str) -> MappedFile:
        """The open mapping of a data file."""
        mf = self.files.get(name)
        if mf is None:
            try:
                mf = self.files[name] = MappedFile(self.directory / name)
            except (OSError, pa.ArrowInvalid) as exc:
                raise CorruptionError(f"columnar file {self.directory / name}: {exc}") from exc
        return mf

    def load_keys(self) -> Iterator[tuple[str, list[BaseRef]]]:
        """Each key of the committed index with its slices, oldest first."""
        if not self.manifest.index:
            return
        path = self.directory / self.manifest.index
        try:
            with pa.memory_map(str(path), "r") as source:
                index = ipc.open_file(source).read_all()
        except (OSError, pa.ArrowInvalid) as exc:
            raise CorruptionError(f"columnar index {path}: {exc}") from exc
        if index.schema != INDEX_SCHEMA:
            raise CorruptionError(f"columnar index {path} has an unexpected schema")
        names = [f.name for f in self.manifest.files]
        files = [self.mapped(n) for n in names]
        keys = index.column("key").to_pylist()
        cols = [
            np.concatenate(
                [
                    np.frombuffer(ch.buffers()[1], dtype=numpy_dtype(ch.type))[
                        ch.offset : ch.offset + len(ch)
                    ]
                    for ch in index.column(c).chunks
                ]
            )
            if index.num_rows
            else np.empty(0, np.int64)
            for c in ("file", "batch", "row", "count", "atom", "last_atom")
        ]
        current: str | None = None
        refs: list[BaseRef] = []
        atoms = {int(a): a for a in Atom}
        for key, f, b, r, n, a, la in zip(keys, *(c.tolist() for c in cols)):
            if key != current:
                if current is not None:
                    yield current, refs
                current, refs = key, []
            refs.append(BaseRef(files[f], b, r, n, atoms.get(a), atoms[la]))
        if current is not None:
            yield current, refs

    def total_bytes(self) -> int:
        """Bytes of the committed data files."""
        return sum(f.bytes for f in self.manifest.files)

    def close(self) -> None:
        """Forget the mappings (views already handed out stay valid)."""
        for mf in self.files.values():
            mf.close()
        self.files.clear()
