"""History order: a key's chunks as one timeline sorted by timestamp, and slices of it.

A key's history is stored as chunks in arrival order (columnar slices, then log-tail chunks).
Every read sees it ordered by timestamp, entries with equal timestamps in arrival order
(a stable sort), after the duplicates policy (``DbConfig.duplicates``) and a retention cutoff
are applied. The usual case costs nothing: chunks that are each in order and follow each
other in time are used as they are (zero-copy), and whether a chunk is in order is computed
once per chunk (:func:`in_order`, cached on the chunk, which is immutable once sealed).
Only a history with late entries is merged, into one new chunk.

On an ordered timeline a time range is found by binary search in each chunk
(:func:`time_slice`), so a range of a compacted key is a zero-copy slice of the mapped file.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from synarrow.columnar.schema import history_table
from synarrow.config import DUPLICATES
from synarrow.log.format import Atom
from synarrow.log.memtable import TailChunk

__all__ = [
    "DUPLICATES",
    "follows",
    "has_duplicates",
    "in_order",
    "locate_at",
    "nonempty",
    "ordered",
    "slice_chunk",
    "time_slice",
]


def in_order(chunk: TailChunk) -> bool:
    """Whether the chunk's timestamps never decrease (computed once, kept on the chunk)."""
    known = chunk.in_order
    if known is None:
        ts = chunk.ts
        known = len(ts) < 2 or ts.strides == (0,) or bool((ts[1:] >= ts[:-1]).all())
        chunk.in_order = known
    return known


def slice_chunk(chunk: TailChunk, lo: int, hi: int) -> TailChunk:
    """Rows ``[lo, hi)`` of a chunk, as views (no copy)."""
    return chunk.rows(lo, hi)


def follows(chunks: Sequence[TailChunk]) -> bool:
    """Whether non-empty chunks are each in order and each starts at or after the previous
    one's end: then they already are the ordered timeline."""
    last = None
    for c in chunks:
        if not in_order(c):
            return False
        if not len(c):
            continue
        if last is not None and c.first_ts() < last:
            return False
        last = c.last_ts()
    return True


def _atom_of(chunks: Sequence[TailChunk]) -> Atom | None:
    """The atom of a merge of ``chunks``: their one atom (nulls mix in), NULL, or None for a
    mixed-type struct."""
    atoms = {c.atom for c in chunks}
    if None in atoms:
        return None
    atoms.discard(Atom.NULL)
    if not atoms:
        return Atom.NULL
    return atoms.pop() if len(atoms) == 1 else None


def _merged(chunks: Sequence[TailChunk], keep: np.ndarray | None = None) -> TailChunk:
    """One new chunk: ``chunks`` concatenated, stably sorted by timestamp, then ``keep``
    (a boolean mask over the sorted rows) applied if given."""
    ts = np.concatenate([c.ts for c in chunks]) if len(chunks) > 1 else chunks[0].ts
    order = None if follows(chunks) else np.argsort(ts, kind="stable")
    if keep is not None:
        order = np.flatnonzero(keep) if order is None else order[keep]
    order_ts = np.ascontiguousarray(ts) if order is None else ts[order]
    atom = _atom_of(chunks)
    if len(chunks) == 1 or all(c.values.type == chunks[0].values.type for c in chunks):
        values = (
            pa.concat_arrays([c.values for c in chunks]) if len(chunks) > 1 else chunks[0].values
        )
    else:
        values = history_table(chunks).column("value").combine_chunks()
    if order is not None:
        # from_buffers, not pa.array: that would import pandas (half a second, once)
        index = np.ascontiguousarray(order, dtype=np.int64)
        values = values.take(
            pa.Array.from_buffers(pa.int64(), len(index), [None, pa.py_buffer(index)])
        )
    return TailChunk(atom, order_ts, values, in_order=True)


def _sorted_ts(chunks: Sequence[TailChunk]) -> np.ndarray:
    return np.concatenate([c.ts for c in chunks]) if len(chunks) > 1 else chunks[0].ts


def has_duplicates(chunks: Sequence[TailChunk]) -> bool:
    """Whether an ordered timeline holds two entries with the same timestamp."""
    last = None
    for c in chunks:
        if not len(c):
            continue
        if last is not None and c.first_ts() == last:
            return True
        if c.sequence_start is None:  # a sequence holds distinct timestamps
            ts = c.ts
            if len(ts) > 1 and (ts.strides == (0,) or bool((ts[1:] == ts[:-1]).any())):
                return True
        last = c.last_ts()
    return False


def _dedup_mask(ts: np.ndarray, duplicates: str) -> np.ndarray:
    """Rows of a sorted timestamp array kept by ``duplicates`` ("keep_last" / "keep_first")."""
    keep = np.ones(len(ts), dtype=bool)
    if duplicates == "keep_last":
        np.not_equal(ts[1:], ts[:-1], out=keep[:-1])
    else:
        np.not_equal(ts[1:], ts[:-1], out=keep[1:])
    return keep


def ordered(
    chunks: Sequence[TailChunk],
    *,
    duplicates: str = "keep_all",
    not_before: int | None = None,
) -> list[TailChunk]:
    """The timeline of a history given as chunks in arrival order.

    Sorted by timestamp (equal timestamps in arrival order), reduced by the ``duplicates``
    policy (``"keep_all"``, ``"keep_last"``, ``"keep_first"``: of the entries sharing a
    timestamp, all of them, the last or the first written), and without entries before
    ``not_before`` (a retention cutoff, microseconds). Chunks already in order are returned
    as they are (zero-copy); otherwise the result is one new merged chunk.
    """
    if duplicates not in DUPLICATES:
        raise ValueError(f"unknown duplicates policy {duplicates!r}")
    parts = [c for c in chunks if len(c)]
    if not parts:
        return []
    if not follows(parts):
        parts = [_merged(parts)]
    if duplicates != "keep_all" and has_duplicates(parts):
        parts = [_merged(parts, _dedup_mask(_sorted_ts(parts), duplicates))]
    if not_before is not None:
        parts = time_slice(parts, not_before, None)
    return parts


def _bounds(chunk: TailChunk, start: int | None, end: int | None) -> tuple[int, int]:
    """The rows ``[lo, hi)`` of an ordered chunk with ``start <= ts < end``."""
    n = len(chunk)
    first = chunk.sequence_start
    if first is not None:  # ts = first + row
        lo = 0 if start is None else min(n, max(0, start - first))
        hi = n if end is None else min(n, max(0, end - first))
    else:
        ts = chunk.ts
        lo = 0 if start is None else int(np.searchsorted(ts, start, side="left"))
        hi = n if end is None else int(np.searchsorted(ts, end, side="left"))
    return lo, max(lo, hi)


def time_slice(
    timeline: Sequence[TailChunk],
    start: int | None,
    end: int | None,
    last: int | None = None,
) -> list[TailChunk]:
    """The entries of an ordered timeline with ``start <= ts < end`` (``None``: unbounded),
    then only the final ``last`` of them if given; zero-copy slices found by binary search."""
    out: list[TailChunk] = []
    for c in timeline:
        if not len(c):
            continue
        if start is not None and c.last_ts() < start:
            continue
        if end is not None and c.first_ts() >= end:
            break
        lo, hi = _bounds(c, start, end)
        if hi > lo:
            out.append(slice_chunk(c, lo, hi))
    if last is not None:
        keep = max(0, last)
        tail: list[TailChunk] = []
        for c in reversed(out):
            if keep <= 0:
                break
            n = len(c)
            tail.append(c if n <= keep else slice_chunk(c, n - keep, n))
            keep -= n
        out = tail[::-1]
    return out


def nonempty(timeline: Sequence[TailChunk], sliced: list[TailChunk]) -> list[TailChunk]:
    """``sliced`` (a slice of ``timeline``), or when that is empty a zero-length chunk of the
    timeline's last chunk, so an empty range still has the key's own value type."""
    if sliced or not timeline:
        return sliced
    last = timeline[-1]
    return [slice_chunk(last, len(last), len(last))]


def locate_at(timeline: Sequence[TailChunk], at: int) -> tuple[TailChunk, int] | None:
    """The chunk and row of the latest entry with ``ts <= at`` (the last written of equal
    ones), or ``None`` if every entry is later."""
    for c in reversed(timeline):
        if not len(c) or c.first_ts() > at:
            continue
        if c.sequence_start is not None:
            return c, min(len(c), at - c.sequence_start + 1) - 1
        row = int(np.searchsorted(c.ts, at, side="right")) - 1
        return c, row
    return None
