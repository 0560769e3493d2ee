"""Rebuild the in-memory index from a scanned segment, vectorised with numpy.

Single float and int entries (the bulk of a time-series log) are decoded for all entries at
once: headers, keys and values are gathered through byte-stride views of the segment, delta
chains are undone with segmented XOR / sum scans, and each key receives one chunk per segment.
Only batches, text, bytes, vectors, nulls and tombstones go through a per-entry loop.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np

from synarrow.errors import CorruptionError
from synarrow.log import codec
from synarrow.log.format import (
    ENTRY_HEADER_SIZE,
    FLAG_BATCH,
    FLAG_DELTA,
    FLAG_LZ4,
    FLAG_TOMBSTONE,
    Atom,
    strip_checksum_bit,
)
from synarrow.log.memtable import KeyState, TailChunk, values_array
from synarrow.log.range_tombstone import RANGE_TOMBSTONE_ATOM, decode_range
from synarrow.log.reader import SegmentScan

__all__ = ["OnRange", "replay_segment"]

#: Applies a range tombstone ``(state, start, end)`` (see ``synarrow.engine.ranges``).
OnRange = Callable[[KeyState, "int | None", "int | None"], object]

_HEADER_DTYPE = np.dtype(
    [("crc", "<u4"), ("ts", "<i8"), ("kl", "<u2"), ("vl", "<u4"), ("fb", "u1")]
)
_HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_MASKS = np.array([(1 << (8 * i)) - 1 for i in range(9)], dtype=np.uint64)


def _sliding(data: bytearray, dtype: np.dtype | str, count: int) -> np.ndarray:
    """A view with one element starting at every byte offset (stride 1)."""
    dt = np.dtype(dtype)
    n = max(0, count - dt.itemsize + 1)
    view: np.ndarray = np.ndarray(shape=(n,), dtype=dt, buffer=data, offset=0, strides=(1,))
    return view


def _segmented_decode(raw: np.ndarray, reset: np.ndarray, is_float: bool) -> np.ndarray:
    """Undo delta chains: element i is absolute where ``reset[i]``, else relative to i-1."""
    idx = np.arange(len(raw))
    start = np.maximum.accumulate(np.where(reset, idx, 0))
    if is_float:
        acc = np.bitwise_xor.accumulate(raw)
        before = np.where(start > 0, acc[start - 1], np.uint64(0))
        decoded: np.ndarray = acc ^ before
        return decoded
    steps = raw.view(np.int64).copy()
    delta = ~reset
    z = raw[delta]
    steps[delta] = ((z >> np.uint64(1)) ^ (np.uint64(0) - (z & np.uint64(1)))).view(np.int64)
    with np.errstate(over="ignore"):
        acc = np.cumsum(steps)
        before = np.where(start > 0, acc[start - 1], 0)
        return (acc - before).view(np.uint64)


def replay_segment(
    scan: SegmentScan,
    state_for: Callable[[bytes], KeyState],
    *,
    on_delete: Callable[[KeyState], None] | None = None,
    on_range: OnRange | None = None,
) -> int:
    """Apply every verified entry of ``scan`` to the key states; returns entries applied.

    ``state_for(key_bytes)`` returns (creating if needed) the state of a key. Entries are
    applied per key in file order, so tombstones cut exactly the history before them.
    Range tombstones are decoded and handed to ``on_range`` (``None``: checked only, as
    by ``synarrow check``).
    """
    offs = scan.offsets
    n = len(offs)
    if n == 0:
        return 0
    data, size = scan.data, scan.size
    hdr = _sliding(data, _HEADER_DTYPE, size)[offs]
    ts_all = hdr["ts"]
    kl_all = hdr["kl"].astype(np.int64)
    vl_all = hdr["vl"].astype(np.int64)
    flags = hdr["fb"] & 0x0F
    atoms = strip_checksum_bit(hdr["fb"]) >> 4

    key_id, uniq_keys, order = _key_ids(data, size, offs, kl_all)
    try:
        states = [state_for(k) for k in uniq_keys]
    except UnicodeDecodeError as exc:
        raise CorruptionError(
            f"log segment {scan.path}: an entry passed its checksum but its key is not UTF-8: {exc}"
        ) from exc

    # Simple entries: single FLOAT/INT without LZ4, decoded all at once.
    value_start = offs + ENTRY_HEADER_SIZE + kl_all
    is_delta = (flags & FLAG_DELTA) != 0
    simple = (
        ((flags & (FLAG_BATCH | FLAG_LZ4 | FLAG_TOMBSTONE)) == 0)
        & ((atoms == Atom.FLOAT) | (atoms == Atom.INT))
        & np.where(is_delta, vl_all <= 8, vl_all == 8)
    )
    broken = _broken_chains(scan, order, key_id, simple, is_delta, offs)
    if broken.any():
        if not scan.skipped:
            raise CorruptionError(f"log segment {scan.path}: delta entry without a base value")
        # Entries whose delta chain crosses a repaired gap cannot be decoded: drop them too.
        scan.dropped += int(broken.sum())
        scan.offsets = offs[~broken]
        return replay_segment(scan, state_for, on_delete=on_delete, on_range=on_range)
    values = np.zeros(n, dtype=np.uint64)
    for atom in (Atom.FLOAT, Atom.INT):
        sel = order[simple[order] & (atoms[order] == atom)]
        if not len(sel):
            continue
        raw = _sliding(data, "<u8", size + 8)[value_start[sel]] & _MASKS[vl_all[sel]]
        values[sel] = _segmented_decode(raw, ~is_delta[sel], atom == Atom.FLOAT)

    # Per key, in file order.
    sorted_ids = key_id[order]
    bounds = np.flatnonzero(np.diff(sorted_ids)) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [n]))
    # Keys whose entries are all simple numbers of one atom take a fast path.
    s_simple = simple[order]
    s_atom = atoms[order].astype(np.int64)
    all_simple = np.logical_and.reduceat(s_simple, starts)
    one_atom = np.maximum.reduceat(s_atom, starts) == np.minimum.reduceat(s_atom, starts)
    fast = (all_simple & one_atom).tolist()
    ts_sorted = ts_all[order].astype(np.int64)
    vals_sorted = values[order]
    # Each key's greatest timestamp, and whether its last entry holds it (the usual case:
    # then that entry is the key's latest, unless the first of equal ones is wanted).
    tops = np.maximum.reduceat(ts_sorted, starts)
    last_is_top = (ts_sorted[ends - 1] == tops).tolist()
    tops_list = tops.tolist()
    entries = 0
    for i, (s, e) in enumerate(zip(starts.tolist(), ends.tolist())):
        if fast[i]:
            state = states[int(sorted_ids[s])]
            atom = Atom(int(s_atom[s]))
            nums = vals_sorted[s:e].view(np.float64 if atom == Atom.FLOAT else np.int64)
            nums.flags.writeable = False  # handed out as views by get_history_floats
            column = values_array(atom, e - s, numbers=nums)
            known = last_is_top[i] and not state.ties_first
            state.add_chunk(
                TailChunk(atom, ts_sorted[s:e], column, numbers=nums),
                (tops_list[i], e - s - 1) if known else None,
            )
            state.delta_segment = -1
            entries += e - s
            continue
        rows = order[s:e]
        state = states[int(key_id[rows[0]])]
        tomb = np.flatnonzero(flags[rows] & FLAG_TOMBSTONE)
        if len(tomb):
            state.clear()
            if on_delete is not None:
                on_delete(state)
            rows = rows[tomb[-1] + 1 :]
            entries += int(tomb[-1]) + 1
            if not len(rows):
                continue
        entries += _apply_rows(
            scan, state, rows, ts_all, atoms, flags, simple, values, value_start, vl_all, on_range
        )
    return entries


def _broken_chains(
    scan: SegmentScan,
    order: np.ndarray,
    key_id: np.ndarray,
    simple: np.ndarray,
    is_delta: np.ndarray,
    offs: np.ndarray,
) -> np.ndarray:
    """Mask of entries in a delta chain that lacks its base entry.

    A delta entry is decoded from the previous simple entry of the same key (the writer
    never does otherwise). Its chain is broken when that entry is missing: it is the key's
    first entry in the segment, or a repaired (skipped) range lies between them.
    """
    n = len(offs)
    sel = order[simple[order]]
    broken = np.zeros(n, dtype=bool)
    if not len(sel):
        return broken
    gap = np.zeros(len(sel), dtype=np.int64)
    if scan.skipped:
        gap = np.searchsorted(np.array([a for a, _ in scan.skipped]), offs[sel])
    start = np.ones(len(sel), dtype=bool)
    start[1:] = (key_id[sel][1:] != key_id[sel][:-1]) | (gap[1:] != gap[:-1])
    start |= ~is_delta[sel]
    chain = np.cumsum(start) - 1
    bad_chain = np.zeros(int(chain[-1]) + 1, dtype=bool)
    heads = np.flatnonzero(start)
    bad_chain[chain[heads]] = is_delta[sel][heads]
    broken[sel] = bad_chain[chain]
    return broken


def _key_ids(
    data: bytearray, size: int, offs: np.ndarray, kl_all: np.ndarray
) -> tuple[np.ndarray, list[bytes], np.ndarray]:
    """Index of every entry's key into a list of the distinct keys, and the entries grouped
    by key (a stable order: file order within each key).

    Keys are hashed to 64 bits with numpy and sorted once by hash; every entry's key is then
    compared byte for byte with its group's first key, and a collision (never seen in
    practice) falls back to grouping by the bytes themselves.
    """
    n = len(offs)
    h_all = np.empty(n, dtype=np.uint64)
    groups = []
    for kl in np.unique(kl_all).tolist():
        sel = np.flatnonzero(kl_all == kl)
        raw = _sliding(data, f"V{kl}", size)[offs[sel] + ENTRY_HEADER_SIZE]
        words = -(-kl // 8)
        padded = np.zeros((len(sel), words * 8), dtype=np.uint8)
        padded[:, :kl] = raw.view(np.uint8).reshape(len(sel), kl)
        h = np.full(len(sel), kl, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for w in padded.view("<u8").T:
                h = (h ^ w) * _HASH_MULTIPLIER
                h ^= h >> np.uint64(29)
        h_all[sel] = h
        groups.append((kl, sel, raw))
    order = np.argsort(h_all, kind="stable")
    sorted_h = h_all[order]
    new = np.ones(n, dtype=bool)
    new[1:] = sorted_h[1:] != sorted_h[:-1]
    key_id = np.empty(n, dtype=np.int64)
    key_id[order] = np.cumsum(new) - 1
    firsts = order[new]
    for kl, sel, raw in groups:
        rep = _sliding(data, f"V{kl}", size)[offs[firsts[key_id[sel]]] + ENTRY_HEADER_SIZE]
        if kl_all[firsts[key_id[sel]]].min() != kl or not np.array_equal(raw, rep):
            return _key_ids_by_bytes(groups, n)
    starts = (offs[firsts] + ENTRY_HEADER_SIZE).tolist()
    uniq = [bytes(data[a : a + b]) for a, b in zip(starts, kl_all[firsts].tolist())]
    return key_id, uniq, order


def _key_ids_by_bytes(
    groups: list[tuple[int, np.ndarray, np.ndarray]], n: int
) -> tuple[np.ndarray, list[bytes], np.ndarray]:
    """Slow exact grouping by the key bytes (only after a hash collision)."""
    key_id = np.empty(n, dtype=np.int64)
    uniq: list[bytes] = []
    for _, sel, raw in groups:
        uk, inv = np.unique(raw, return_inverse=True)
        key_id[sel] = inv.reshape(-1) + len(uniq)
        uniq.extend(bytes(k) for k in uk.tolist())
    return key_id, uniq, np.argsort(key_id, kind="stable")


def _apply_rows(
    scan: SegmentScan,
    state: KeyState,
    rows: np.ndarray,
    ts_all: np.ndarray,
    atoms: np.ndarray,
    flags: np.ndarray,
    simple: np.ndarray,
    values: np.ndarray,
    value_start: np.ndarray,
    vl_all: np.ndarray,
    on_range: OnRange | None = None,
) -> int:
    """Append one key's entries (file order, no whole-key tombstones) to its state."""
    count = 0
    row_simple = simple[rows]
    row_atoms = atoms[rows]
    # Split into runs of simple entries of one atom, and single complex entries.
    brk = np.ones(len(rows), dtype=bool)
    brk[1:] = ~(row_simple[1:] & row_simple[:-1] & (row_atoms[1:] == row_atoms[:-1]))
    run_starts = np.flatnonzero(brk).tolist() + [len(rows)]
    for a, b in zip(run_starts[:-1], run_starts[1:]):
        if row_simple[a]:
            sel = rows[a:b]
            atom = Atom(int(row_atoms[a]))
            nums = values[sel].view(np.float64 if atom == Atom.FLOAT else np.int64)
            nums.flags.writeable = False
            chunk = TailChunk(
                atom,
                ts_all[sel].astype(np.int64),
                values_array(atom, b - a, numbers=nums),
                numbers=nums,
            )
            state.add_chunk(chunk)
            count += b - a
        else:
            for r in rows[a:b].tolist():
                count += _apply_complex(
                    scan, state, r, ts_all, atoms, flags, value_start, vl_all, on_range
                )
    # Continue the writer's delta chain only within the segment being appended to; a new
    # writer session always starts a fresh segment context.
    state.delta_segment = -1
    return count


def _apply_complex(
    scan: SegmentScan,
    state: KeyState,
    r: int,
    ts_all: np.ndarray,
    atoms: np.ndarray,
    flags: np.ndarray,
    value_start: np.ndarray,
    vl_all: np.ndarray,
    on_range: OnRange | None = None,
) -> int:
    start = int(value_start[r])
    payload: bytes | memoryview = memoryview(scan.data)[start : start + int(vl_all[r])]
    f = int(flags[r])
    atom = int(atoms[r])
    ts = int(ts_all[r])
    try:
        if atom == RANGE_TOMBSTONE_ATOM and not f:
            lo, hi = decode_range(payload)
            if on_range is not None:
                on_range(state, lo, hi)
            return 1
        if f & FLAG_LZ4:
            payload = codec.unlz4(payload)
        if f & FLAG_BATCH:
            batch = codec.decode_batch(atom, f, ts, payload)
            chunk = TailChunk(
                batch.atom,
                batch.timestamps,
                values_array(
                    batch.atom,
                    batch.count,
                    numbers=batch.values,
                    offsets=batch.offsets,
                    data=batch.data,
                    vectors=batch.values,
                ),
            )
            state.add_chunk(chunk)
            if batch.count and codec.stamped_by_writer(payload):
                scan.clock = max(scan.clock, int(batch.timestamps[-1]))
            return batch.count
        payload = bytes(payload)
        if f & FLAG_DELTA:
            # A delta entry after a non-simple one cannot happen; the writer never does it.
            raise ValueError("delta flag on a value that is not a plain number")
        value = codec.decode_scalar(atom, payload)
        if atom in (Atom.FLOAT, Atom.INT):
            state.add_number(Atom(atom), ts, value)  # type: ignore[arg-type]
        else:
            state.add_single(Atom(atom), ts, value, payload)
        return 1
    except (ValueError, RuntimeError, struct.error) as exc:
        raise CorruptionError(
            f"log segment {scan.path}: entry at byte {int(scan.offsets[r])} "
            f"of key {state.key!r} passed its checksum but does not decode: {exc}"
        ) from exc
