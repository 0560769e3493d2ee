"""Read snapshots: an immutable view of the live keys' history, for every reading layer.

The engine takes a :class:`ReadSnapshot` under its lock in O(keys) reference copies (no data
is copied: columnar slices are memory-mapped and sealed log-tail chunks are never changed
again). SQL, export, Flight and the other reading layers read snapshots instead of the
engine's fields, so a writer appending meanwhile never changes what they see.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from synarrow.log.memtable import BaseChunk, TailChunk

__all__ = ["KeyView", "ReadSnapshot"]


@dataclass(frozen=True)
class KeyView:
    """One live key's history at the moment of the snapshot: columnar slices, then tail."""

    key: str
    base: tuple[BaseChunk, ...]
    """Slices of columnar files, in history order (``chunk()`` maps and verifies lazily)."""
    tail: tuple[TailChunk, ...]
    """Sealed log-tail chunks after the base, in history order."""

    def chunks(self) -> list[TailChunk]:
        """Every chunk of the history in order (columnar slices are mapped on demand)."""
        return [b.chunk() for b in self.base] + list(self.tail)

    def last(self) -> TailChunk:
        """The chunk holding the latest entry."""
        return self.tail[-1] if self.tail else self.base[-1].chunk()

    def __len__(self) -> int:
        return sum(b.count for b in self.base) + sum(len(c) for c in self.tail)


@dataclass(frozen=True)
class ReadSnapshot:
    """The live keys of a database as of one moment; safe to read from any thread."""

    path: Path
    """The database directory."""
    next_sequence: int
    """The sequence number the next write after the snapshot gets."""
    generation: int
    """The columnar generation the base slices belong to."""
    keys: Mapping[str, KeyView]
    """Live keys (deleted ones left out) in no particular order."""

    @property
    def version(self) -> tuple[int, int]:
        """``(next_sequence, generation)``: equal versions hold equal data."""
        return (self.next_sequence, self.generation)

    def __len__(self) -> int:
        return len(self.keys)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self.keys))

    def __contains__(self, key: object) -> bool:
        return key in self.keys
