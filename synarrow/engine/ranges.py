"""Range deletes: cutting ``[start, end)`` out of a key's history in memory.

:func:`cut` computes what is left of a key's history once a range is removed (its ordered
timeline, duplicates kept, minus the range: zero-copy slices of the chunks it had), and
:func:`install` makes that the key's whole history: columnar slices are dropped from the
key's state and the rest becomes its log tail (the next compaction rewrites the key, which
is when the space is reclaimed). The engine writes a range tombstone
(:mod:`synarrow.log.range_tombstone`) before installing; replay applies the same two steps
when it meets one, so the history after reopening is the one before closing.
"""

from __future__ import annotations

from synarrow.engine import timeline as _timeline
from synarrow.log.memtable import KeyState, TailChunk

__all__ = ["Cut", "apply_range", "cut", "install"]

#: What is left of a history after a range delete, and how many entries went.
Cut = tuple[list[TailChunk], int]


def cut(st: KeyState, start: int | None, end: int | None) -> Cut:
    """The key's history (ordered, every entry kept) without ``start <= ts < end``
    (``None``: unbounded on that side), and how many entries that removes."""
    timeline = _timeline.ordered(st.parts(), duplicates="keep_all")
    total = sum(len(c) for c in timeline)
    kept: list[TailChunk] = []
    if start is not None:
        kept += _timeline.time_slice(timeline, None, start)
    if end is not None:
        kept += _timeline.time_slice(timeline, end, None)
    removed = total - sum(len(c) for c in kept)
    return kept, removed


def install(st: KeyState, kept: list[TailChunk]) -> None:
    """Make ``kept`` (an ordered timeline) the whole history of ``st``; recompute its
    latest value, atom and ``latest_ts`` (``KeyState.recompute_latest``). A key left empty is cleared (not live)."""
    kept = [c for c in kept if len(c)]
    if not kept:
        st.clear()
        st.delta_atom = -1
        return
    st.base = []
    st.base_count = 0
    st.builder = None
    st.chunks = kept
    st.tail_count = sum(len(c) for c in kept)
    st.delta_atom = -1
    st.epoch += 1  # a compaction that snapshotted the old history must not install it
    st.changed()
    st.recompute_latest()


def apply_range(st: KeyState, start: int | None, end: int | None) -> int:
    """Cut ``[start, end)`` out of ``st`` (replay of a range tombstone); entries removed."""
    if st.latest_atom is None:
        return 0
    kept, removed = cut(st, start, end)
    if removed:
        install(st, kept)
    return removed
