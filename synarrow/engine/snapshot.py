"""Read snapshots: an immutable view of the live keys' history, for every reading layer.

The engine takes a :class:`ReadSnapshot` under its lock in O(keys) reference copies (no data
is copied: columnar slices are memory-mapped and sealed log-tail chunks are never changed
again). SQL, export, Flight and the other reading layers read snapshots instead of the
engine's fields, so a writer appending meanwhile never changes what they see.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from synarrow.engine import timeline as _timeline
from synarrow.log.memtable import BaseChunk, TailChunk

__all__ = ["KeyView", "ReadSnapshot"]


@dataclass(frozen=True)
class KeyView:
    """One live key's history at the moment of the snapshot: columnar slices, then tail."""

    key: str
    base: tuple[BaseChunk, ...]
    """Slices of columnar files, in history order (``chunk()`` maps and verifies lazily)."""
    tail: tuple[TailChunk, ...]
    """Sealed log-tail chunks after the base, in arrival order."""
    duplicates: str = "keep_all"
    """The database's duplicates policy (``DbConfig.duplicates``) when the snapshot was taken."""
    not_before: int | None = None
    """The retention cutoff of this key when the snapshot was taken (``None``: none)."""
    ordered: tuple[TailChunk, ...] | None = field(default=None, repr=False, compare=False)
    """The whole ordered timeline (policy applied, no cutoff) if known when the snapshot
    was taken (the engine keeps it per key), else computed on first use and kept."""

    def stored(self) -> list[TailChunk]:
        """The chunks as stored, in arrival order (columnar slices are mapped on demand)."""
        return [b.chunk() for b in self.base] + list(self.tail)

    def chunks(self) -> list[TailChunk]:
        """The history ordered by timestamp, the duplicates policy and retention applied
        (see :func:`synarrow.engine.timeline.ordered`)."""
        whole = self.ordered
        if whole is None:
            whole = tuple(_timeline.ordered(self.stored(), duplicates=self.duplicates))
            object.__setattr__(self, "ordered", whole)  # a memo: the view stays the same
        if self.not_before is None:
            return list(whole)
        return _timeline.time_slice(whole, self.not_before, None)

    def timeline(
        self, start: int | None = None, end: int | None = None, last: int | None = None
    ) -> list[TailChunk]:
        """The ordered history restricted to ``start <= ts < end`` (microseconds, ``None``:
        unbounded) and then to its final ``last`` entries."""
        chunks = self.chunks()
        if start is None and end is None and last is None:
            return chunks
        return _timeline.nonempty(chunks, _timeline.time_slice(chunks, start, end, last))

    def last(self) -> TailChunk:
        """The chunk of the ordered timeline holding the latest entry (its last row); a
        zero-length chunk if every entry is before the retention cutoff."""
        if not self.tail and self.base and all(b.last_ts is not None for b in self.base):
            # Sorted slices as compaction writes them: the last one ends with the latest.
            last, ts = self.base[-1], self.base[-1].last_ts
            if ts is not None and (self.not_before is None or ts >= self.not_before):
                return last.chunk()
        chunks = self.chunks()
        if chunks:
            return chunks[-1]
        return _timeline.nonempty(self.stored(), [])[0]

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
    expiring: bool = False
    """Whether retention rules were set: what the database shows then changes with time
    (points expire) and with the rules, not only with :attr:`version`."""

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
