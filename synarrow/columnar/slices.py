"""One slice of a key's history in a columnar data file, turned into Arrow views on first use.

A :class:`BaseRef` names ``count`` rows of one key in one record batch of a mapped data file
(:class:`~synarrow.columnar.ipc.MappedFile`). Its first :meth:`BaseRef.chunk` verifies the
batch's checksum and structure and checks that the rows fit and that their types are the
atoms the key index says.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from synarrow.columnar.ipc import MappedFile, Span
from synarrow.errors import CorruptionError
from synarrow.log.format import Atom
from synarrow.log.memtable import TailChunk

__all__ = ["BaseRef"]

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
