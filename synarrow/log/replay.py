"""Rebuild the in-memory index from a scanned segment, vectorised with numpy.

Single float and int entries (the bulk of a time-series log) are decoded for all entries at
once: headers, keys and values are gathered through byte-stride views of the segment, delta
chains are undone with segmented XOR / sum scans, and each key receives one chunk per segment.
Only batches, text, bytes, vectors, nulls and tombstones go through a per-entry loop.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import NamedTuple

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

__all__ = ["Chains", "OnRange", "replay_segment"]

#: Applies a range tombstone ``(state, start, end)`` (see ``synarrow.engine.ranges``).
OnRange = Callable[[KeyState, "int | None", "int | None"], object]

#: Per key (its bytes), the atom and the 64 value bits of its last entry in a segment, when
#: that entry is a single FLOAT or INT a delta entry may follow (see :func:`replay_segment`).
Chains = dict[bytes, tuple[int, int]]

_MASK64 = (1 << 64) - 1
_DOUBLE = struct.Struct("<d")

_HASH_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)
_MASKS = np.array([(1 << (8 * i)) - 1 for i in range(9)], dtype=np.uint64)


def _sliding(data: bytearray, dtype: np.dtype | str, count: int) -> np.ndarray:
    """A view with one element starting at every byte offset (stride 1)."""
    dt = np.dtype(dtype)
    n = max(0, count - dt.itemsize + 1)
    view: np.ndarray = np.ndarray(shape=(n,), dtype=dt, buffer=data, offset=0, strides=(1,))
    return view


def _segmented_decode(raw: np.ndarray, reset: np.ndarray, is_float: bool) -> np.ndarray:
    """Undo delta chains: element i is absolute where ``reset[i]``, else relative to i-1
    (element 0 then to zero)."""
    heads = np.flatnonzero(reset)
    if not len(heads) or heads[0] != 0:
        heads = np.concatenate(([0], heads[heads != 0]))
    lengths = np.diff(heads, append=len(raw))
    if is_float:
        acc = np.bitwise_xor.accumulate(raw)
        before = acc[heads - 1]  # what the running XOR held before each chain
        before[0] = 0
        acc ^= np.repeat(before, lengths)
        return acc
    steps = raw.view(np.int64).copy()
    delta = ~reset
    z = raw[delta]
    steps[delta] = ((z >> np.uint64(1)) ^ (np.uint64(0) - (z & np.uint64(1)))).view(np.int64)
    with np.errstate(over="ignore"):
        acc = np.cumsum(steps)
        before = acc[heads - 1]
        before[0] = 0
        acc -= np.repeat(before, lengths)
        return acc.view(np.uint64)


#: A continued scan of at most this many entries is replayed entry by entry (the
#: vectorised replay's fixed costs are far larger than a few entries' work).
FEW = 16
_HEAD_FIELDS = struct.Struct("<qHIB")  # ts, key length, value length, flags (after the CRC)


def _replay_few(
    scan: SegmentScan,
    state_for: Callable[[bytes], KeyState],
    on_delete: Callable[[KeyState], None] | None,
    on_range: OnRange | None,
    chains: Chains,
) -> int:
    """:func:`replay_segment` for a few entries (a writer of a shared log reading the
    others' latest turns): the same effect, one entry at a time."""
    data = scan.data
    offsets = scan.offsets.tolist()
    fields = [_HEAD_FIELDS.unpack_from(data, o + 4) for o in offsets]
    ts_all = [f[0] for f in fields]
    vl_all = [f[2] for f in fields]
    flags_all = [f[3] & 0x0F for f in fields]
    atoms_all = [strip_checksum_bit(f[3]) >> 4 for f in fields]
    starts = [o + ENTRY_HEADER_SIZE + f[1] for o, f in zip(offsets, fields)]
    for r, (o, (ts, kl, vl, _fb)) in enumerate(zip(offsets, fields)):
        key = bytes(data[o + ENTRY_HEADER_SIZE : o + ENTRY_HEADER_SIZE + kl])
        try:
            state = state_for(key)
        except UnicodeDecodeError as exc:
            raise CorruptionError(
                f"log segment {scan.path}: an entry passed its checksum but its key is not "
                f"UTF-8: {exc}"
            ) from exc
        state.delta_segment = -1
        flags, atom = flags_all[r], atoms_all[r]
        if flags & FLAG_TOMBSTONE:
            state.clear()
            if on_delete is not None:
                on_delete(state)
            chains.pop(key, None)
            continue
        is_delta = bool(flags & FLAG_DELTA)
        if (
            flags & ~FLAG_DELTA == 0
            and atom in (Atom.FLOAT, Atom.INT)
            and vl <= 8
            and (is_delta or vl == 8)
        ):
            start = starts[r]
            raw = int.from_bytes(data[start : start + vl], "little")
            if is_delta:
                known = chains.get(key)
                if known is None or known[0] != atom:
                    raise CorruptionError(
                        f"log segment {scan.path}: delta entry without a base value"
                    )
                if atom == Atom.FLOAT:
                    raw ^= known[1]
                else:
                    raw = (known[1] + ((raw >> 1) ^ (-(raw & 1) & _MASK64))) & _MASK64
            chains[key] = (atom, raw)
            if atom == Atom.FLOAT:
                state.add_number(Atom.FLOAT, ts, _DOUBLE.unpack(raw.to_bytes(8, "little"))[0])
            else:
                state.add_number(Atom.INT, ts, raw - (1 << 64) if raw >> 63 else raw)
            continue
        chains.pop(key, None)
        _apply_complex(scan, state, r, ts_all, atoms_all, flags_all, starts, vl_all, on_range)  # type: ignore[arg-type]
    return len(offsets)


def replay_segment(
    scan: SegmentScan,
    state_for: Callable[[bytes], KeyState],
    *,
    on_delete: Callable[[KeyState], None] | None = None,
    on_range: OnRange | None = None,
    chains: Chains | None = None,
) -> int:
    """Apply every verified entry of ``scan`` to the key states; returns entries applied.

    ``state_for(key_bytes)`` returns (creating if needed) the state of a key. Entries are
    applied per key in file order, so tombstones cut exactly the history before them.
    Range tombstones are decoded and handed to ``on_range`` (``None``: checked only, as
    by ``synarrow check``).

    ``chains`` (for a scan that continues the segment from where an earlier one ended,
    :func:`~synarrow.log.reader.scan_segment_from`): the keys' delta bases left by the
    earlier scans of the segment; delta entries continuing them are decoded from them,
    and the dict is updated with this scan's (``{}`` for a scan from the start).
    """
    offs = scan.offsets
    n = len(offs)
    if n == 0:
        return 0
    if n <= FEW and chains is not None and not scan.skipped:
        return _replay_few(scan, state_for, on_delete, on_range, chains)
    data, size = scan.data, scan.size
    # One gather per header field (faster than gathering whole 19-byte records).
    ts_all = _sliding(data, "<i8", size)[offs + 4]
    kl_all, vl_all = scan.key_lengths, scan.value_lengths
    if kl_all is None or vl_all is None or len(kl_all) != n:
        kl_all = _sliding(data, "<u2", size)[offs + 12].astype(np.int64)
        vl_all = _sliding(data, "<u4", size)[offs + 14].astype(np.int64)
    fb = np.frombuffer(data, dtype=np.uint8, count=size)[offs + 18]
    flags = fb & 0x0F
    atoms = strip_checksum_bit(fb) >> 4

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
    # Without BATCH, LZ4 and TOMBSTONE the flags byte less DELTA is the atom's nibble alone;
    # a delta value takes at most 8 bytes, an absolute one exactly 8 (uint8 and in-place
    # operations: this runs over every entry of the segment).
    kind = fb & np.uint8(0xFF ^ FLAG_DELTA)
    simple = kind == np.uint8(Atom.FLOAT << 4)
    simple |= kind == np.uint8(Atom.INT << 4)
    simple &= vl_all <= 8
    simple &= is_delta | (vl_all == 8)
    sorted_ids = key_id[order]
    s_simple = simple[order]
    # Value words are read in file order (a sequential sweep of the segment; in key order
    # the reads would jump around it), then put in key order.
    raw_all = _sliding(data, "<u8", size + 8)[value_start]  # the data ends in PAD zeros
    raw_all &= _MASKS[np.minimum(vl_all, 8)]
    if chains:
        is_delta = _continue_chains(
            chains, uniq_keys, order, sorted_ids, s_simple, atoms, is_delta, raw_all
        )
    broken = _broken_chains(scan, order, sorted_ids, s_simple, is_delta, offs)
    if broken is not None and broken.any():
        if not scan.skipped:
            raise CorruptionError(f"log segment {scan.path}: delta entry without a base value")
        # Entries whose delta chain crosses a repaired gap cannot be decoded: drop them too.
        scan.dropped += int(broken.sum())
        scan.offsets = offs[~broken]
        return replay_segment(
            scan, state_for, on_delete=on_delete, on_range=on_range, chains=chains
        )
    # Per key, in file order: everything below works on the entries in ``order``.
    bounds = np.flatnonzero(np.diff(sorted_ids)) + 1
    starts = np.concatenate(([0], bounds))
    ends = np.concatenate((bounds, [n]))
    s_atom = atoms[order]
    vals_sorted = np.zeros(n, dtype=np.uint64)
    for atom in (Atom.FLOAT, Atom.INT):
        p = np.flatnonzero(s_simple & (s_atom == atom))
        if not len(p):
            continue
        sel = order[p]
        vals_sorted[p] = _segmented_decode(raw_all[sel], ~is_delta[sel], atom == Atom.FLOAT)
    vals_sorted.flags.writeable = False  # handed out as views by get_history_floats
    as_float: np.ndarray = vals_sorted.view(np.float64)
    as_int: np.ndarray = vals_sorted.view(np.int64)
    # Each fast key's Arrow column is a slice of one array over all values (zero-copy).
    arrow_float = values_array(Atom.FLOAT, n, numbers=as_float)
    arrow_int = values_array(Atom.INT, n, numbers=as_int)
    # Keys whose entries are all simple numbers of one atom take a fast path.
    all_simple = np.logical_and.reduceat(s_simple, starts)
    one_atom = np.maximum.reduceat(s_atom, starts) == np.minimum.reduceat(s_atom, starts)
    fast = (all_simple & one_atom).tolist()
    first_atom = s_atom[starts].tolist()
    ts_sorted = ts_all[order]  # int64 already: the gather is the only copy
    # Each key's greatest timestamp, and whether its last entry holds it (the usual case:
    # then that entry is the key's latest, unless the first of equal ones is wanted).
    tops = np.maximum.reduceat(ts_sorted, starts)
    last_is_top = (ts_sorted[ends - 1] == tops).tolist()
    tops_list = tops.tolist()
    if chains is not None:
        _note_chains(chains, uniq_keys, ends - 1, s_simple, s_atom, vals_sorted)
    entries = 0
    for i, (s, e) in enumerate(zip(starts.tolist(), ends.tolist())):
        state = states[i]  # key ids grow along ``order``
        if fast[i]:
            atom = Atom.FLOAT if first_atom[i] == Atom.FLOAT else Atom.INT
            if atom == Atom.FLOAT:
                nums, column = as_float[s:e], arrow_float.slice(s, e - s)
            else:
                nums, column = as_int[s:e], arrow_int.slice(s, e - s)
            known = last_is_top[i] and not state.ties_first
            state.add_chunk(
                TailChunk(atom, ts_sorted[s:e], column, numbers=nums),
                (tops_list[i], e - s - 1) if known else None,
            )
            state.delta_segment = -1
            entries += e - s
            continue
        rows = order[s:e]
        tomb = np.flatnonzero(flags[rows] & FLAG_TOMBSTONE)
        if len(tomb):
            state.clear()
            if on_delete is not None:
                on_delete(state)
            cut = int(tomb[-1]) + 1
            rows, s = rows[cut:], s + cut
            entries += cut
            if not len(rows):
                continue
        entries += _apply_rows(
            scan,
            state,
            rows,
            _Sorted(s, ts_sorted, s_simple, as_float, as_int),
            ts_all,
            atoms,
            flags,
            value_start,
            vl_all,
            on_range,
        )
    return entries


def _continue_chains(
    chains: Chains,
    uniq_keys: list[bytes],
    order: np.ndarray,
    sorted_ids: np.ndarray,
    s_simple: np.ndarray,
    atoms: np.ndarray,
    is_delta: np.ndarray,
    raw_all: np.ndarray,
) -> np.ndarray:
    """Make absolute the delta entries that open this scan's entries of a key and continue
    the key's chain in ``chains`` (same atom): their value goes into ``raw_all`` and a copy
    of ``is_delta`` without them is returned. Any other delta entry that opens a key is
    left for :func:`_broken_chains` to find."""
    n = len(order)
    head = np.ones(n, dtype=bool)
    np.not_equal(sorted_ids[1:], sorted_ids[:-1], out=head[1:])
    pos = np.flatnonzero(head & s_simple & is_delta[order])
    if not len(pos):
        return is_delta
    is_delta = is_delta.copy()
    rows = order[pos].tolist()
    for r, kid in zip(rows, sorted_ids[pos].tolist()):
        known = chains.get(uniq_keys[kid])
        atom = int(atoms[r])
        if known is None or known[0] != atom:
            continue
        z = int(raw_all[r])
        if atom == Atom.FLOAT:
            value = known[1] ^ z
        else:
            value = (known[1] + ((z >> 1) ^ (-(z & 1) & _MASK64))) & _MASK64
        raw_all[r] = value
        is_delta[r] = False
    return is_delta


def _note_chains(
    chains: Chains,
    uniq_keys: list[bytes],
    last: np.ndarray,
    s_simple: np.ndarray,
    s_atom: np.ndarray,
    vals_sorted: np.ndarray,
) -> None:
    """Record each key's delta base after this scan (``last``: its last entry's position in
    key order): the atom and bits of that entry if it is a single number, else none."""
    simple_last = s_simple[last].tolist()
    atoms_last = s_atom[last].tolist()
    bits_last = vals_sorted[last].tolist()
    for key, ok, atom, bits in zip(uniq_keys, simple_last, atoms_last, bits_last):
        if ok:
            chains[key] = (atom, bits)
        else:
            chains.pop(key, None)


class _Sorted(NamedTuple):
    """One key's entries in the arrays of all entries in key order, from ``at``."""

    at: int
    ts: np.ndarray
    simple: np.ndarray
    floats: np.ndarray
    ints: np.ndarray


def _broken_chains(
    scan: SegmentScan,
    order: np.ndarray,
    sorted_ids: np.ndarray,
    s_simple: np.ndarray,
    is_delta: np.ndarray,
    offs: np.ndarray,
) -> np.ndarray | None:
    """Mask of entries in a delta chain that lacks its base entry (``None``: no such entry).

    A delta entry is decoded from the previous simple entry of the same key (the writer
    never does otherwise). Its chain is broken when that entry is missing: it is the key's
    first entry in the segment, or a repaired (skipped) range lies between them.
    ``sorted_ids`` and ``s_simple`` are the key ids and the simple-entry mask in ``order``.
    """
    p = np.flatnonzero(s_simple)
    if not len(p):
        return None
    sel = order[p]
    ids = sorted_ids[p]
    delta = is_delta[sel]
    start = np.ones(len(sel), dtype=bool)  # where a key (or a repaired stretch) begins
    np.not_equal(ids[1:], ids[:-1], out=start[1:])
    if scan.skipped:
        gap = np.searchsorted(np.array([a for a, _ in scan.skipped]), offs[sel])
        start[1:] |= gap[1:] != gap[:-1]
    if not (start & delta).any():
        return None  # every chain starts with an absolute value
    start |= ~delta
    chain = np.cumsum(start) - 1
    bad_chain = np.zeros(int(chain[-1]) + 1, dtype=bool)
    heads = np.flatnonzero(start)
    bad_chain[chain[heads]] = delta[heads]
    broken = np.zeros(len(offs), dtype=bool)
    broken[sel] = bad_chain[chain]
    return broken


def _key_ids(
    data: bytearray, size: int, offs: np.ndarray, kl_all: np.ndarray
) -> tuple[np.ndarray, list[bytes], np.ndarray]:
    """Index of every entry's key into a list of the distinct keys, and the entries grouped
    by key (a stable order: file order within each key).

    Keys are hashed to 64 bits with numpy, the hashes numbered densely through a hash table
    (:func:`_dense_ids`) and the entries ordered by number with a radix sort; every entry's
    key is then compared byte for byte with its group's first key, and a collision (never
    seen in practice) falls back to grouping by the bytes themselves.
    """
    n = len(offs)
    words8 = _sliding(data, "<u8", size + 8)
    lengths = np.flatnonzero(np.bincount(kl_all)).tolist()
    # per key length, its entries (all of them, the usual case, need no selection)
    selections: list[np.ndarray | slice] = (
        [slice(None)] if len(lengths) == 1 else [np.flatnonzero(kl_all == kl) for kl in lengths]
    )
    h_all = np.empty(n, dtype=np.uint64)
    groups = []
    for kl, sel in zip(lengths, selections):
        key_at = offs[sel] + ENTRY_HEADER_SIZE
        h = np.full(len(key_at), kl, dtype=np.uint64)
        words = []  # the keys' 8-byte words, kept to compare keys below
        with np.errstate(over="ignore"):
            for i in range(0, kl, 8):
                # The data ends in PAD zero bytes, so the last word never reads past it.
                w = words8[key_at + i]
                if kl - i < 8:
                    w &= _MASKS[kl - i]
                words.append(w)
                h ^= w
                h *= _HASH_MULTIPLIER
                h ^= h >> np.uint64(29)
        h_all[sel] = h
        groups.append((kl, sel, key_at, words))
    key_id, count = _dense_ids(h_all)
    order = _stable_order(key_id, count)
    sorted_ids = key_id[order]
    new = np.ones(n, dtype=bool)
    new[1:] = sorted_ids[1:] != sorted_ids[:-1]
    firsts = order[new]
    first_of = firsts[key_id]  # each entry's group's first entry
    # Every entry's key, word by word, against its group's first entry's key.
    for kl, sel, _, words in groups:
        rep = first_of[sel]
        if isinstance(sel, slice):  # every entry: positions in ``words`` are entry numbers
            rep_words = [w[rep] for w in words]
        else:
            if kl_all[rep].min() != kl or kl_all[rep].max() != kl:
                return _key_ids_by_bytes(data, size, [g[:3] for g in groups], n)
            rep_at = offs[rep] + ENTRY_HEADER_SIZE
            rep_words = [words8[rep_at + i] & _MASKS[min(8, kl - i)] for i in range(0, kl, 8)]
        if not all(np.array_equal(a, b) for a, b in zip(words, rep_words)):
            return _key_ids_by_bytes(data, size, [g[:3] for g in groups], n)
    # Number the keys in the order of their groups (so key ids grow along ``order``).
    renumber = np.empty(count, dtype=np.int64)
    renumber[key_id[firsts]] = np.arange(len(firsts))
    key_id = renumber[key_id]
    starts = (offs[firsts] + ENTRY_HEADER_SIZE).tolist()
    uniq = [bytes(data[a : a + b]) for a, b in zip(starts, kl_all[firsts].tolist())]
    return key_id, uniq, order


# Rounds of hash-table numbering before the rest of the hashes are sorted instead, and the
# most slots of the table (2 MiB: small enough to stay in cache and cost few page faults).
_TABLE_ROUNDS = 4
_TABLE_BITS = 18


def _dense_ids(h: np.ndarray) -> tuple[np.ndarray, int]:
    """Numbers ``0..count-1`` for the distinct values of ``h`` (in no particular order).

    Each round drops every hash into a table slot chosen by some of its bits; the hashes
    that won their slot take a number for it, the others (another key's hash took the
    slot) go to the next round with other bits. A slot always has a winner, so each round
    numbers at least one distinct value per slot used; what is left after a few rounds
    (very many keys, or crafted ones) is numbered by sorting.
    """
    n = len(h)
    bits = min(_TABLE_BITS, max(8, (2 * n).bit_length()))
    mask = np.uint64((1 << bits) - 1)
    table = np.empty(1 << bits, dtype=np.uint64)
    ids = np.empty(n, dtype=np.int64)
    pending: np.ndarray | None = None  # None: every entry
    hh = h
    count = 0
    for r in range(_TABLE_ROUNDS):
        slot = ((hh >> np.uint64((r * bits) % 48)) & mask).astype(np.intp)
        table[slot] = hh
        won = table[slot] == hh
        used = np.zeros(1 << bits, dtype=bool)
        used[slot] = True  # every slot used has a winner
        number = np.cumsum(used, dtype=np.int64)
        number += count - 1
        if pending is None:
            ids[:] = number[slot]  # the losers' numbers are replaced below
            pending = np.flatnonzero(~won)
            hh = hh[pending]
        else:
            ids[pending[won]] = number[slot[won]]
            lost = ~won
            pending, hh = pending[lost], hh[lost]
        count = int(number[-1]) + 1
        if not len(pending):
            return ids, count
    uniq, inv = np.unique(hh, return_inverse=True)
    ids[pending] = inv.reshape(-1) + count
    return ids, count + len(uniq)


def _stable_order(ids: np.ndarray, count: int) -> np.ndarray:
    """``np.argsort(ids, kind="stable")`` for ids in ``0..count-1``, as radix sorts of 16
    bits (numpy sorts 16-bit integers stably by radix, far faster than 64-bit ones)."""
    if count <= 1 << 16:
        return np.argsort(ids.astype(np.uint16), kind="stable")
    lo = np.argsort((ids & 0xFFFF).astype(np.uint16), kind="stable")
    order: np.ndarray = lo
    rest = ids >> 16
    while True:
        part = rest[order]
        order = order[np.argsort((part & 0xFFFF).astype(np.uint16), kind="stable")]
        rest = rest >> 16
        if not rest.any():
            return order


def _key_ids_by_bytes(
    data: bytearray,
    size: int,
    groups: list[tuple[int, np.ndarray | slice, np.ndarray]],
    n: int,
) -> tuple[np.ndarray, list[bytes], np.ndarray]:
    """Slow exact grouping by the key bytes (only after a hash collision). ``groups``:
    per key length, its entries (an index array, or a slice of all) and where their keys
    start."""
    key_id = np.empty(n, dtype=np.int64)
    uniq: list[bytes] = []
    for kl, sel, key_at in groups:
        raw = _sliding(data, f"V{kl}", size)[key_at]
        uk, inv = np.unique(raw, return_inverse=True)
        key_id[sel] = inv.reshape(-1) + len(uniq)
        uniq.extend(bytes(k) for k in uk.tolist())
    return key_id, uniq, np.argsort(key_id, kind="stable")


def _apply_rows(
    scan: SegmentScan,
    state: KeyState,
    rows: np.ndarray,
    in_order: _Sorted,
    ts_all: np.ndarray,
    atoms: np.ndarray,
    flags: np.ndarray,
    value_start: np.ndarray,
    vl_all: np.ndarray,
    on_range: OnRange | None = None,
) -> int:
    """Append one key's entries (file order, no whole-key tombstones) to its state."""
    count = 0
    at = in_order.at
    row_simple = in_order.simple[at : at + len(rows)]
    row_atoms = atoms[rows]
    # Split into runs of simple entries of one atom, and single complex entries.
    brk = np.ones(len(rows), dtype=bool)
    brk[1:] = ~(row_simple[1:] & row_simple[:-1] & (row_atoms[1:] == row_atoms[:-1]))
    run_starts = np.flatnonzero(brk).tolist() + [len(rows)]
    for a, b in zip(run_starts[:-1], run_starts[1:]):
        if row_simple[a]:
            atom = Atom(int(row_atoms[a]))
            nums = (in_order.floats if atom == Atom.FLOAT else in_order.ints)[at + a : at + b]
            chunk = TailChunk(
                atom,
                in_order.ts[at + a : at + b],
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
