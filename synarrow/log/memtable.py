"""The in-memory index: per key, its latest value and its history as Arrow-ready arrays.

Each key has a :class:`KeyState`. Its history is ``base`` (chunks that live in columnar files,
filled in by the columnar layer) followed by the log tail: sealed :class:`TailChunk` s (one per
batch entry, or a run of single entries) and an open builder for single appends. Memory per
tail entry is a few bytes in ``array.array`` / ``bytearray`` buffers, never a Python object
per entry, and the latest value is cached so ``get`` is O(1) whatever the history length.

"Latest" means the entry with the greatest timestamp, not the last one written: entries may
arrive out of order (a late entry is appended to the tail like any other, and reads order
the history, see :mod:`synarrow.engine.timeline`). Of entries sharing the greatest timestamp
the last written is the latest, or the first written when the key's duplicates policy is
``keep_first`` (:attr:`KeyState.ties_first`). Every path that adds entries compares their
timestamp with :attr:`KeyState.latest_ts` (one comparison per single append).
"""

from __future__ import annotations

import struct
from array import array
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from synarrow.log.format import Atom

__all__ = [
    "NO_TS",
    "UNLOADED",
    "BaseChunk",
    "Builder",
    "KeyState",
    "TailChunk",
    "merge_chunks",
    "value_at",
    "values_array",
]

#: :attr:`KeyState.latest_ts` of a key without entries: below every int64 timestamp.
NO_TS = -(1 << 64)
# Sealed chunks beyond this count are merged so reads stay cheap after many small reads.
_MAX_CHUNKS = 32


class TailChunk:
    """A run of history entries: timestamps and an Arrow value array.

    ``atom`` is the one atom type of the values (``None`` values may appear as nulls), or
    ``None`` for a mixed-type run stored as a struct with one field per atom type.

    The timestamps of a batch appended without any are ``start, start + 1, ...``: such a
    chunk (:meth:`sequence`) keeps only ``start`` and makes the array on first use of
    :attr:`ts`; :meth:`first_ts`, :meth:`last_ts` and :attr:`sequence_start` answer
    without it.
    """

    __slots__ = ("_count", "_ts", "atom", "in_order", "numbers", "sequence_start", "values")

    def __init__(
        self,
        atom: Atom | None,
        ts: np.ndarray | None,
        values: pa.Array,
        numbers: np.ndarray | None = None,
        in_order: bool | None = None,
        *,
        sequence_start: int | None = None,
    ) -> None:
        """``ts``: int64 microseconds, one per value, or ``None`` with ``sequence_start``
        (see :meth:`sequence`); ``numbers``: a numpy view of ``values`` (numbers without
        nulls) if one was made; ``in_order``: whether ``ts`` never decreases, if known (see
        :mod:`synarrow.engine.timeline`)."""
        self.atom = atom
        self._ts = ts
        self.values = values
        self.numbers = numbers
        self.sequence_start = sequence_start if ts is None else None
        """The first timestamp of a :meth:`sequence` chunk, else ``None``."""
        if ts is None:
            if sequence_start is None:
                raise ValueError("a chunk without timestamps needs sequence_start")
            self._count = len(values)
            self.in_order: bool | None = True
        else:
            self._count = len(ts)
            self.in_order = in_order

    @classmethod
    def sequence(
        cls,
        atom: Atom | None,
        start: int,
        values: pa.Array,
        numbers: np.ndarray | None = None,
    ) -> TailChunk:
        """A chunk of ``len(values)`` values at ``start, start + 1, ...`` (the array is
        made on first use of :attr:`ts`)."""
        return cls(atom, None, values, numbers, sequence_start=start)

    @property
    def ts(self) -> np.ndarray:
        """The timestamps (int64 microseconds)."""
        ts = self._ts
        if ts is None:
            start = self.sequence_start
            assert start is not None
            ts = self._ts = np.arange(start, start + self._count, dtype=np.int64)
        return ts

    def first_ts(self) -> int:
        """The first row's timestamp (of a non-empty chunk)."""
        start = self.sequence_start
        return int(self.ts[0]) if start is None else start

    def last_ts(self) -> int:
        """The last row's timestamp (of a non-empty chunk)."""
        start = self.sequence_start
        return int(self.ts[-1]) if start is None else start + self._count - 1

    def rows(self, lo: int, hi: int) -> TailChunk:
        """Rows ``[lo, hi)`` as views (no copy); a sequence stays one."""
        if lo == 0 and hi == self._count:
            return self
        numbers = self.numbers[lo:hi] if self.numbers is not None else None
        values = self.values.slice(lo, hi - lo)
        start = self.sequence_start
        if start is not None:
            return TailChunk.sequence(self.atom, start + lo, values, numbers)
        return TailChunk(self.atom, self.ts[lo:hi], values, numbers=numbers, in_order=self.in_order)

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"TailChunk(atom={self.atom!r}, rows={self._count}, values={self.values.type})"


class BaseChunk(Protocol):
    """A chunk of history kept outside the log (a slice of a columnar file), loaded lazily."""

    count: int
    last_atom: Atom
    first_ts: int | None
    """The smallest timestamp of the slice when the index knows it, else ``None``."""
    last_ts: int | None
    """The greatest timestamp of the slice when known without reading it (the key index
    stores it), else ``None``; a slice written with it known is sorted by timestamp."""

    def chunk(self) -> TailChunk:
        """The chunk's data (zero-copy views of the file where possible)."""
        ...

    @property
    def identity(self) -> tuple[object, ...]:
        """What names the stored slice: equal identities hold equal data (files are never
        changed once written)."""
        ...


class _Unloaded:
    """Marks a latest value not decoded yet (it lives in a columnar file)."""


UNLOADED = _Unloaded()


def values_array(
    atom: Atom,
    count: int,
    *,
    numbers: np.ndarray | None = None,
    offsets: np.ndarray | None = None,
    data: bytes | None = None,
    vectors: np.ndarray | None = None,
) -> pa.Array:
    """Build the Arrow array of ``count`` values of one atom type from raw buffers."""
    if atom == Atom.FLOAT or atom == Atom.INT:
        # from_buffers wraps the numpy memory (no copy, and no pandas import as pa.array does)
        arr = np.ascontiguousarray(numbers, dtype=np.float64 if atom == Atom.FLOAT else np.int64)
        arrow_type = pa.float64() if atom == Atom.FLOAT else pa.int64()
        return pa.Array.from_buffers(arrow_type, len(arr), [None, pa.py_buffer(arr)])
    if atom == Atom.NULL:
        return pa.nulls(count)
    if atom in (Atom.TEXT, Atom.BYTES):
        assert offsets is not None and data is not None
        arrow_type = pa.large_string() if atom == Atom.TEXT else pa.large_binary()
        return pa.Array.from_buffers(
            arrow_type, count, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
        )
    if atom == Atom.VECTOR:
        assert vectors is not None
        dim = vectors.shape[1] if vectors.ndim == 2 else 0
        flat_np = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1)
        flat = pa.Array.from_buffers(pa.float32(), len(flat_np), [None, pa.py_buffer(flat_np)])
        return pa.FixedSizeListArray.from_arrays(flat, dim)
    raise ValueError(f"unknown atom {atom}")


class Builder:
    """Growable columns for single appends of one atom type (and one vector dim)."""

    __slots__ = ("atom", "data", "dim", "nums", "offsets", "ts")

    def __init__(self, atom: Atom, dim: int = 0) -> None:
        self.atom = atom
        self.dim = dim
        self.ts = array("q")
        self.nums: array[Any] | None = None
        self.offsets: array[int] | None = None
        self.data: bytearray | None = None
        if atom == Atom.FLOAT:
            self.nums = array("d")
        elif atom == Atom.INT:
            self.nums = array("q")
        elif atom in (Atom.TEXT, Atom.BYTES):
            self.offsets = array("q", [0])
            self.data = bytearray()
        elif atom == Atom.VECTOR:
            self.data = bytearray()

    def seal(self) -> TailChunk:
        n = len(self.ts)
        ts = np.array(self.ts, dtype=np.int64)
        if self.atom in (Atom.FLOAT, Atom.INT):
            dtype = np.float64 if self.atom == Atom.FLOAT else np.int64
            values = values_array(self.atom, n, numbers=np.array(self.nums, dtype=dtype))
        elif self.atom in (Atom.TEXT, Atom.BYTES):
            assert self.data is not None
            values = values_array(
                self.atom,
                n,
                offsets=np.array(self.offsets, dtype=np.int64),
                data=bytes(self.data),
            )
        elif self.atom == Atom.VECTOR:
            vecs = np.frombuffer(bytes(self.data or b""), dtype="<f4").reshape(n, self.dim)
            values = values_array(self.atom, n, vectors=vecs)
        else:
            values = pa.nulls(n)
        return TailChunk(self.atom, ts, values)


@dataclass(eq=False, slots=True)
class KeyState:
    """Everything held in memory about one live key."""

    key: str
    key_bytes: bytes
    base: list[BaseChunk] = field(default_factory=list)
    base_count: int = 0
    chunks: list[TailChunk] = field(default_factory=list)
    builder: Builder | None = None
    tail_count: int = 0
    latest: object = None
    latest_atom: Atom | None = None
    latest_ts: int = NO_TS
    """The timestamp of ``latest`` (:data:`NO_TS` while the key holds no entry)."""
    ties_first: bool = False
    """Whether, of entries with equal timestamps, the first written is the latest (the
    ``keep_first`` duplicates policy) rather than the last."""
    # Where an UNLOADED latest value lives in the base: (slice, row).
    latest_ref: tuple[BaseChunk, int] | None = field(default=None, repr=False)
    # Bumped whenever the history changes other than by growing (base installed, tail
    # prefix dropped, cleared, range removed): with ``len(self)`` it identifies a history,
    # so a cached ordered timeline can be reused while both are unchanged.
    version: int = 0
    timeline_cache: tuple[tuple[int, int, str], list[TailChunk]] | None = field(
        default=None, repr=False
    )
    # Delta-encoding context of the writer: previous single numeric entry in the segment.
    delta_segment: int = -1
    delta_atom: int = -1
    delta_prev: int = 0
    delta_run: int = 0  # delta entries since the last absolute one
    # Packs an entry header followed by this key (for the append hot path).
    header: struct.Struct | None = field(default=None, repr=False)
    # Bumped whenever the key is deleted, so a compaction that raced with it can tell.
    epoch: int = 0

    def __len__(self) -> int:
        return self.base_count + self.tail_count

    # -- single appends (the hot path) ---------------------------------------------------

    def builder_for(self, atom: Atom, dim: int = 0) -> Builder:
        """The open builder for single appends of ``atom`` (and vector ``dim``), sealing the
        current one first when it holds another type."""
        b = self.builder
        if b is None or b.atom != atom or b.dim != dim:
            if b is not None and len(b.ts):
                self.chunks.append(b.seal())
            b = self.builder = Builder(atom, dim)
        return b

    def is_latest(self, ts: int) -> bool:
        """Whether a new entry at ``ts`` becomes the latest (see :attr:`ties_first`)."""
        return ts > self.latest_ts or (ts == self.latest_ts and not self.ties_first)

    def add_number(self, atom: Atom, ts: int, value: float | int) -> None:
        """Record a single FLOAT or INT entry."""
        b = self.builder
        if b is None or b.atom != atom:
            b = self.builder_for(atom)
        b.ts.append(ts)
        b.nums.append(value)  # type: ignore[union-attr]
        self.tail_count += 1
        if ts > self.latest_ts or (ts == self.latest_ts and not self.ties_first):
            self.latest = value
            self.latest_atom = atom
            self.latest_ts = ts

    def add_single(self, atom: Atom, ts: int, value: object, payload: bytes) -> None:
        """Record a single NULL, TEXT, BYTES or VECTOR entry (``payload``: its raw bytes)."""
        dim = len(payload) // 4 if atom == Atom.VECTOR else 0
        b = self.builder_for(atom, dim)
        b.ts.append(ts)
        if atom in (Atom.TEXT, Atom.BYTES):
            b.data += payload  # type: ignore[operator]
            b.offsets.append(len(b.data))  # type: ignore[union-attr]
        elif atom == Atom.VECTOR:
            b.data += payload  # type: ignore[operator]
        self.tail_count += 1
        if self.is_latest(ts):
            self.latest = value
            self.latest_atom = atom
            self.latest_ts = ts

    def add_chunk(self, chunk: TailChunk, top: tuple[int, int] | None = None) -> None:
        """Record a batch entry (already decoded to Arrow): its entry with the greatest
        timestamp (the last of equal ones, or the first with :attr:`ties_first`) becomes the
        latest value if it is at or after the current one. ``top``: that entry's
        ``(timestamp, row)`` if the caller knows it (:func:`latest_row` otherwise)."""
        if not len(chunk):
            return
        self.seal()
        self.chunks.append(chunk)
        self.tail_count += len(chunk)
        ts, row = latest_row(chunk, self.ties_first) if top is None else top
        if ts > self.latest_ts or (ts == self.latest_ts and not self.ties_first):
            self.latest = value_at(chunk, row)
            # numbers without nulls are all of the chunk's atom
            self.latest_atom = chunk.atom if chunk.numbers is not None else _atom_at(chunk, row)
            self.latest_ts = ts
            self.latest_ref = None

    def clear(self) -> None:
        """Forget the whole history (the key was deleted)."""
        self.base = []
        self.base_count = 0
        self.chunks = []
        self.builder = None
        self.tail_count = 0
        self.latest = None
        self.latest_atom = None
        self.latest_ts = NO_TS
        self.latest_ref = None
        self.epoch += 1
        self.changed()

    def changed(self) -> None:
        """Note a change of the history other than new entries (drops the cached timeline)."""
        self.version += 1
        self.timeline_cache = None

    # -- reads ---------------------------------------------------------------------------

    def seal(self) -> None:
        """Turn the open builder into a sealed chunk, so the tail is a list of Arrow chunks."""
        b = self.builder
        if b is not None and len(b.ts):
            self.chunks.append(b.seal())
            self.builder = None
        if len(self.chunks) > _MAX_CHUNKS:
            self.chunks = merge_chunks(self.chunks)

    def tail_chunks(self) -> list[TailChunk]:
        """The sealed tail (sealing the builder first)."""
        self.seal()
        return list(self.chunks)

    def parts(self) -> list[TailChunk]:
        """The whole history: columnar base chunks then the log tail."""
        self.seal()
        return [*(b.chunk() for b in self.base), *self.chunks]

    def set_base(self, base: list[BaseChunk]) -> None:
        """Install the columnar part of the history (on open, after a compaction) and find
        the latest entry again (:meth:`recompute_latest`)."""
        self.base = base
        self.version += 1
        self.timeline_cache = None
        if len(base) == 1 and not self.chunks and self.builder is None:
            # One sorted slice and no tail, as every key of a compacted database at open:
            # what recompute_latest finds, without its general loop (10k keys: 4 ms).
            b = base[0]
            self.base_count = b.count
            if b.last_ts is not None and b.last_ts > NO_TS:
                self.latest, self.latest_atom, self.latest_ts = UNLOADED, b.last_atom, b.last_ts
                self.latest_ref = (b, -1 if self.ties_first else b.count - 1)
                return
        self.base_count = sum(b.count for b in base)
        self.recompute_latest()

    def recompute_latest(self) -> None:
        """Find the latest entry of the whole history again (after the history changed
        other than by new entries). Base slices whose greatest timestamp is known (sorted
        ones, as compaction writes them) are not read: their latest is their last row,
        decoded only when asked for (``UNLOADED``); the tail is scanned."""
        self.seal()
        best_ts: int = NO_TS
        best: object = None
        atom: Atom | None = None
        ref: tuple[BaseChunk, int] | None = None
        first = self.ties_first
        for b in self.base:
            # A slice of an older index (no timestamps, not read at open): its last row, as
            # the latest was the last written then, with no timestamp (any new entry is
            # later) until a compaction rewrites it sorted.
            ts = NO_TS if b.last_ts is None else b.last_ts
            if ts > best_ts or (ts == best_ts and not first) or b.last_ts is None:
                # with ties_first: the first row at the slice's last timestamp (-1: found
                # by binary search when decoded; the slice may hold equal ones if it was
                # compacted under another policy)
                row = -1 if first and b.last_ts is not None else b.count - 1
                best_ts, best, atom, ref = ts, UNLOADED, b.last_atom, (b, row)
        for c in self.chunks:
            ts, row = latest_row(c, first)
            if ts > best_ts or (ts == best_ts and not first):
                best_ts, best, atom, ref = ts, value_at(c, row), _atom_at(c, row), None
        self.latest, self.latest_atom, self.latest_ts, self.latest_ref = best, atom, best_ts, ref

    def drop_tail_prefix(self, count: int) -> None:
        """Forget the oldest ``count`` tail entries (they were folded into the base)."""
        self.seal()
        kept: list[TailChunk] = []
        for c in self.chunks:
            if count >= len(c):
                count -= len(c)
                continue
            if count:
                c = c.rows(count, len(c))
                count = 0
            kept.append(c)
        self.tail_count = sum(len(c) for c in kept)
        self.chunks = kept
        self.changed()

    def resolve_latest(self) -> object:
        """The latest value, decoding it from the columnar base if needed."""
        if self.latest is UNLOADED:
            assert self.latest_ref is not None
            b, row = self.latest_ref
            c = b.chunk()
            if row < 0:
                row = int(np.searchsorted(c.ts, c.ts[-1], side="left"))
            self.latest = value_at(c, row)
        return self.latest


def merge_chunks(chunks: list[TailChunk]) -> list[TailChunk]:
    """Concatenate neighbouring chunks of the same atom type (and Arrow type)."""
    out: list[TailChunk] = []
    run: list[TailChunk] = []

    def flush() -> None:
        if not run:
            return
        if len(run) == 1:
            out.append(run[0])
        else:
            out.append(
                TailChunk(
                    run[0].atom,
                    np.concatenate([c.ts for c in run]),
                    pa.concat_arrays([c.values for c in run]),
                )
            )
        run.clear()

    for c in chunks:
        if run and (c.atom != run[0].atom or c.values.type != run[0].values.type):
            flush()
        run.append(c)
    flush()
    return out


def latest_row(chunk: TailChunk, ties_first: bool = False) -> tuple[int, int]:
    """``(greatest timestamp, its row)`` of a non-empty chunk: the last row holding it, or
    the first with ``ties_first``."""
    if chunk.sequence_start is not None:  # strictly increasing
        return chunk.last_ts(), len(chunk) - 1
    ts = chunk.ts
    n = len(ts)
    if ts.strides == (0,):  # one shared instant (an old-format batch)
        return int(ts[0]), 0 if ties_first else n - 1
    top = ts[-1]
    if chunk.in_order:
        if ties_first and n > 1 and ts[-2] == top:
            return int(top), int(np.searchsorted(ts, top, side="left"))
        return int(top), n - 1
    if bool(top >= ts.max()):
        # the last row holds the greatest timestamp, but the chunk is not sorted: an equal
        # one may come anywhere before it
        return int(top), int(np.flatnonzero(ts == top)[0]) if ties_first else n - 1
    top = ts.max()
    hits = np.flatnonzero(ts == top)
    return int(top), int(hits[0] if ties_first else hits[-1])


def _atom_at(chunk: TailChunk, row: int) -> Atom:
    """The atom of one entry of a chunk (NULL for a null value)."""
    values = chunk.values
    if chunk.atom is not None:
        return chunk.atom if not values.null_count or values[row].is_valid else Atom.NULL
    scalar = values[row]
    name = next((f.name for f, v in zip(values.type, scalar.values()) if v.is_valid), "null")
    return Atom[name.upper()]


def value_at(chunk: TailChunk, row: int) -> object:
    """The Python value of one entry of a chunk (vectors as float32 arrays)."""
    if chunk.numbers is not None:  # a numeric chunk without nulls: no Arrow scalar needed
        return chunk.numbers[row].item()
    value = chunk.values[row]
    if isinstance(value, pa.StructScalar):
        value = next((v for v in value.values() if v.is_valid), pa.scalar(None))
    if isinstance(value, (pa.FixedSizeListScalar, pa.LargeListScalar, pa.ListScalar)):
        if not value.is_valid:
            return None
        return np.asarray(value.values.to_numpy(zero_copy_only=False), dtype=np.float32)
    return value.as_py()
