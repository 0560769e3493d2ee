"""The in-memory index: per key, its latest value and its history as Arrow-ready arrays.

Each key has a :class:`KeyState`. Its history is ``base`` (chunks that live in columnar files,
filled in by the columnar layer) followed by the log tail: sealed :class:`TailChunk` s (one per
batch entry, or a run of single entries) and an open builder for single appends. Memory per
tail entry is a few bytes in ``array.array`` / ``bytearray`` buffers, never a Python object
per entry, and the latest value is cached so ``get`` is O(1) whatever the history length.
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
    "UNLOADED",
    "BaseChunk",
    "Builder",
    "KeyState",
    "TailChunk",
    "last_value",
    "merge_chunks",
    "values_array",
]

# Sealed chunks beyond this count are merged so reads stay cheap after many small reads.
_MAX_CHUNKS = 32


@dataclass
class TailChunk:
    """A run of history entries: timestamps and an Arrow value array.

    ``atom`` is the one atom type of the values (``None`` values may appear as nulls), or
    ``None`` for a mixed-type run stored as a struct with one field per atom type.
    """

    atom: Atom | None
    ts: np.ndarray  # int64 microseconds
    values: pa.Array
    # numpy view of ``values`` (numbers without nulls), kept once made
    numbers: np.ndarray | None = field(default=None, repr=False, compare=False)
    # whether ``ts`` never decreases, kept once known (see synarrow.engine.timeline)
    in_order: bool | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.ts)


class BaseChunk(Protocol):
    """A chunk of history kept outside the log (a slice of a columnar file), loaded lazily."""

    count: int
    last_atom: Atom

    def chunk(self) -> TailChunk:
        """The chunk's data (zero-copy views of the file where possible)."""
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


@dataclass(eq=False)
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

    def add_number(self, atom: Atom, ts: int, value: float | int) -> None:
        """Record a single FLOAT or INT entry."""
        b = self.builder
        if b is None or b.atom != atom:
            b = self.builder_for(atom)
        b.ts.append(ts)
        b.nums.append(value)  # type: ignore[union-attr]
        self.tail_count += 1
        self.latest = value
        self.latest_atom = atom

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
        self.latest = value
        self.latest_atom = atom

    def add_chunk(self, chunk: TailChunk, latest: object) -> None:
        """Record a batch entry (already decoded to Arrow)."""
        if not len(chunk):
            return
        self.seal()
        self.chunks.append(chunk)
        self.tail_count += len(chunk)
        self.latest = latest
        self.latest_atom = chunk.atom

    def clear(self) -> None:
        """Forget the whole history (the key was deleted)."""
        self.base = []
        self.base_count = 0
        self.chunks = []
        self.builder = None
        self.tail_count = 0
        self.latest = None
        self.latest_atom = None
        self.epoch += 1

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
        """Install the columnar part of the history (on open, after a compaction)."""
        self.base = base
        self.base_count = sum(b.count for b in base)
        if not self.tail_count and base:
            self.latest = UNLOADED
            self.latest_atom = base[-1].last_atom

    def drop_tail_prefix(self, count: int) -> None:
        """Forget the oldest ``count`` tail entries (they were folded into the base)."""
        self.seal()
        kept: list[TailChunk] = []
        for c in self.chunks:
            if count >= len(c):
                count -= len(c)
                continue
            if count:
                c = TailChunk(c.atom, c.ts[count:], c.values.slice(count))
                count = 0
            kept.append(c)
        self.tail_count = sum(len(c) for c in kept)
        self.chunks = kept

    def resolve_latest(self) -> object:
        """The latest value, decoding it from the columnar base if needed."""
        if self.latest is UNLOADED:
            self.latest = last_value(self.base[-1].chunk())
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


def last_value(chunk: TailChunk) -> object:
    """The Python value of a chunk's last entry (vectors as float32 arrays)."""
    value = chunk.values[-1]
    if isinstance(value, pa.StructScalar):
        value = next((v for v in value.values() if v.is_valid), pa.scalar(None))
    if isinstance(value, (pa.FixedSizeListScalar, pa.LargeListScalar, pa.ListScalar)):
        if not value.is_valid:
            return None
        return np.asarray(value.values.to_numpy(zero_copy_only=False), dtype=np.float32)
    return value.as_py()
