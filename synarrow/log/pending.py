"""Single numeric appends recorded now and encoded as log entries later, in bulk.

A buffered (``sync_on_write=False``) single FLOAT or INT append only records
``(key state, timestamp, value)`` here; :meth:`Pending.encode` later turns every recorded
append into one log entry, in arrival order, byte for byte what the per-call encoder writes:
each value delta-coded against the key's previous single numeric entry in the same segment
(:func:`~synarrow.log.codec.encode_float_delta`, :func:`~synarrow.log.codec.encode_int_delta`),
an absolute value after ``restart`` delta entries, header and CRC32 as
:func:`~synarrow.log.format.encode_entry` packs them.

The work is numpy over all pending entries: delta runs by cumulative sums, the CRC32 of
each entry from per-byte tables (CRC32 is affine in the message bits, so an entry's
checksum is that of as many zero bytes XOR one table value per byte and position).
Entries of keys longer than :data:`LONG_KEY` bytes are encoded one by one instead.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from synarrow.log import codec
from synarrow.log.format import ENTRY_HEADER_SIZE, FLAG_DELTA, Atom, encode_entry
from synarrow.log.memtable import KeyState

__all__ = ["ENTRY_SLACK", "LONG_KEY", "SMALL", "Encoded", "Pending", "entry_bound"]

#: Keys up to this many bytes are encoded by the vectorised path.
LONG_KEY = 128
#: Fewer pending entries than this are encoded one by one (numpy's fixed costs dominate).
SMALL = 64
#: Bytes of a single numeric entry besides its key, at most: header and an 8-byte value.
ENTRY_SLACK = ENTRY_HEADER_SIZE + 8
_MASK64 = (1 << 64) - 1
_FLOAT = int(Atom.FLOAT)
_INT = int(Atom.INT)
_PACK_D = struct.Struct("<d").pack
_PACK_Q = struct.Struct("<q").pack
# An entry body up to its key with the timestamp and flags zeroed: ts, key_len, value_len, flags.
_FIXED = struct.Struct("<8xHIx")


def entry_bound(key_len: int) -> int:
    """The most bytes a single numeric entry of a key of ``key_len`` bytes takes."""
    return ENTRY_SLACK + key_len


@dataclass
class Encoded:
    """What :meth:`Pending.encode` made: the entries' bytes and where each one starts,
    and each key's delta context after them (applied once the bytes are written)."""

    data: bytes
    starts: np.ndarray  # int64 offset of each entry in ``data``
    contexts: list[tuple[KeyState, int, int, int]]  # state, atom, prev, run

    def apply(self, segment: int) -> None:
        """Record the keys' new delta contexts (their entries are now in ``segment``)."""
        for st, atom, prev, run in self.contexts:
            st.delta_atom = atom
            st.delta_segment = segment
            st.delta_prev = prev
            st.delta_run = run


class Pending:
    """The single numeric appends not encoded yet, in arrival order (caller holds a lock)."""

    __slots__ = ("states", "ts", "values")

    def __init__(self) -> None:
        self.states: list[KeyState] = []
        self.ts: list[int] = []
        self.values: list[float | int] = []  # exactly float (FLOAT) or int (INT)

    def __len__(self) -> int:
        return len(self.states)

    def clear(self) -> None:
        """Forget every recorded append (they were written); the lists stay the same
        objects, so bound ``append`` methods a caller keeps stay valid."""
        self.states.clear()
        self.ts.clear()
        self.values.clear()

    def encode(self, segment: int, *, delta: bool, restart: int) -> Encoded:
        """The log entries of every pending append, as the per-call encoder writes them
        into ``segment`` (``delta``: whether delta coding is on; ``restart``: delta entries
        between absolute ones). Pure: no key state changes until :meth:`Encoded.apply`."""
        states = self.states
        n = len(states)
        if n < SMALL:
            return _encode_each(self, segment, delta=delta, restart=restart)
        index: dict[KeyState, int] = dict.fromkeys(states, 0)  # KeyState hashes by identity
        uniq = list(index)
        for i, st in enumerate(uniq):
            index[st] = i
        codes = np.fromiter(map(index.__getitem__, states), dtype=np.intp, count=n)
        if max(len(st.key_bytes) for st in uniq) > LONG_KEY:
            return _encode_each(self, segment, delta=delta, restart=restart)
        ts = np.array(self.ts, dtype=np.int64)
        bits, atoms = _bits(self.values)
        return _encode(uniq, codes, ts, bits, atoms, segment, delta, restart)


def _bits(values: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Each value's 64 bits as the delta coder sees them (float bits, or the int as
    uint64) and its atom."""
    kinds = set(map(type, values))
    n = len(values)
    if kinds == {float}:
        return np.array(values, dtype=np.float64).view(np.uint64), np.full(n, _FLOAT, np.uint8)
    if kinds == {int}:
        return np.array(values, dtype=np.int64).view(np.uint64), np.full(n, _INT, np.uint8)
    is_float = np.fromiter((type(v) is float for v in values), dtype=bool, count=n)
    bits = np.fromiter(
        (codec.float_bits(v) if type(v) is float else v & _MASK64 for v in values),
        dtype=np.uint64,
        count=n,
    )
    return bits, np.where(is_float, _FLOAT, _INT).astype(np.uint8)


def _encode(
    uniq: list[KeyState],
    codes: np.ndarray,
    ts: np.ndarray,
    bits: np.ndarray,
    atoms: np.ndarray,
    segment: int,
    delta: bool,
    restart: int,
) -> Encoded:
    n = len(codes)
    # Per key, in arrival order: sort by key (stable), find each entry's predecessor.
    order = np.argsort(codes, kind="stable")
    k_sorted = codes[order]
    first = np.ones(n, dtype=bool)
    first[1:] = k_sorted[1:] != k_sorted[:-1]
    a_sorted = atoms[order]
    b_sorted = bits[order]
    ctx_atom = np.array(
        [st.delta_atom if st.delta_segment == segment else -2 for st in uniq], dtype=np.int64
    )
    ctx_prev = np.array([st.delta_prev & _MASK64 for st in uniq], dtype=np.uint64)
    ctx_run = np.array([st.delta_run for st in uniq], dtype=np.int64)
    prev_atom = np.empty(n, dtype=np.int64)
    prev_atom[1:] = a_sorted[:-1]
    prev_atom[first] = ctx_atom[k_sorted[first]]
    prev_bits = np.empty(n, dtype=np.uint64)
    prev_bits[1:] = b_sorted[:-1]
    prev_bits[first] = ctx_prev[k_sorted[first]]
    cand = prev_atom == a_sorted if delta else np.zeros(n, dtype=bool)
    # A maximal stretch of candidates continues the run before it (the key's context at the
    # stretch that opens its group, else 0): entry p of it has run (r0 + p) mod (restart+1),
    # absolute where that is 0.
    pos = np.arange(n, dtype=np.int64)
    starts_run = cand & (first | ~np.roll(cand, 1))
    starts_run[0] = cand[0]
    r0 = np.where(first, ctx_run[k_sorted], 0)
    run_start = np.maximum.accumulate(np.where(starts_run, pos, -1))
    # offset so that (pos - start + 1 + r0_at_start) is the would-be run
    base = np.where(run_start >= 0, r0[np.maximum(run_start, 0)] - run_start + 1, 0)
    total = (pos + base) % (restart + 1)
    is_delta = cand & (total != 0)
    run = np.where(is_delta, total, 0)
    # Values: delta payloads and their minimal lengths.
    fl = a_sorted == _FLOAT
    x = np.where(fl, b_sorted ^ prev_bits, np.uint64(0))
    d = b_sorted.view(np.int64) - prev_bits.view(np.int64)  # wraps like the int64 coder
    z = ((d << 1) ^ (d >> 63)).view(np.uint64)
    x = np.where(fl, x, z)
    payload = np.where(is_delta, x, b_sorted)
    vlen = np.where(is_delta, _byte_len(payload), 8).astype(np.int64)
    flags = (a_sorted.astype(np.int64) << 4) | np.where(is_delta, FLAG_DELTA, 0)
    # Key contexts after the batch: each key's last entry.
    last = np.ones(n, dtype=bool)
    last[:-1] = k_sorted[:-1] != k_sorted[1:]
    contexts = []
    for j in np.flatnonzero(last).tolist():
        st = uniq[int(k_sorted[j])]
        atom = int(a_sorted[j])
        v = int(b_sorted[j])
        prev = v if atom == _FLOAT else v - (1 << 64) if v >= 1 << 63 else v
        contexts.append((st, atom, prev, int(run[j])))
    # Back to arrival order.
    inv = np.empty(n, dtype=np.intp)
    inv[order] = np.arange(n)
    payload = payload[inv]
    vlen = vlen[inv]
    flags = flags[inv]
    data, starts = _assemble(uniq, codes, ts, payload, vlen, flags)
    return Encoded(data, starts, contexts)


_BYTE_STEPS = np.array([1 << (8 * k) for k in range(8)], dtype=np.uint64)


def _byte_len(x: np.ndarray) -> np.ndarray:
    """Bytes of each uint64's minimal little-endian form (0 for 0)."""
    return np.searchsorted(_BYTE_STEPS, x, side="right").astype(np.int64)


def _assemble(
    uniq: list[KeyState],
    codes: np.ndarray,
    ts: np.ndarray,
    payload: np.ndarray,
    vlen: np.ndarray,
    flags: np.ndarray,
) -> tuple[bytes, np.ndarray]:
    """The entries' bytes, back to back, and where each one starts."""
    n = len(codes)
    klens = np.array([len(st.key_bytes) for st in uniq], dtype=np.int64)
    maxk = int(klens.max())
    klen = klens.take(codes)
    entry_len = ENTRY_HEADER_SIZE + klen + vlen
    crc = _crc(uniq, codes, klen, ts, payload, vlen, flags)
    width = ENTRY_SLACK + maxk
    layout = np.dtype(
        {
            "names": ["crc", "ts", "klen", "vlen", "flags", "key", "value"],
            "formats": ["<u4", "<i8", "<u2", "<u4", "u1", f"S{maxk}", "<u8"],
            "offsets": [0, 4, 12, 14, 18, 19, 19 + maxk],
            "itemsize": width,
        }
    )
    rec = np.empty(n, dtype=layout)
    rec["crc"] = crc
    rec["ts"] = ts
    rec["klen"] = klen
    rec["vlen"] = vlen
    rec["flags"] = flags
    rec["key"] = np.array([st.key_bytes for st in uniq], dtype=f"S{maxk}").take(codes)
    rows = rec.view(np.uint8).reshape(n, width)
    if (klens == maxk).all():
        rec["value"] = payload
    else:
        value_bytes = payload.astype("<u8").view(np.uint8).reshape(n, 8)
        for kl in np.unique(klen).tolist():
            sel = np.flatnonzero(klen == kl)
            rows[sel, 19 + kl : 27 + kl] = value_bytes[sel]
    data = rows[np.arange(width)[None, :] < entry_len[:, None]].tobytes()
    starts = np.zeros(n, dtype=np.int64)
    np.cumsum(entry_len[:-1], out=starts[1:])
    return data, starts


def _crc(
    uniq: list[KeyState],
    codes: np.ndarray,
    klen: np.ndarray,
    ts: np.ndarray,
    payload: np.ndarray,
    vlen: np.ndarray,
    flags: np.ndarray,
) -> np.ndarray:
    """The CRC32 of each entry's body (header after the checksum, key, value).

    CRC32 is affine in the message bits: the checksum of a body is that of the body with
    its timestamp, flags and value bytes zeroed (one per key and value length, from zlib)
    XOR one table value per byte of those three, by the byte and its distance from the end.
    """
    n = len(codes)
    tables = _tables(int((klen + vlen).max()) + 15)
    flat = tables.ravel()
    # zlib for each (key, value length) pair present: the lengths, the key, zeros elsewhere
    combo = codes * 9 + vlen
    seen = np.zeros(len(uniq) * 9, dtype=bool)
    seen[combo] = True
    fixed = np.zeros(len(uniq) * 9, dtype=np.uint32)
    wanted = np.flatnonzero(seen).tolist()
    fixed[wanted] = [
        zlib.crc32(_FIXED.pack(len(kb), v) + kb + bytes(v))
        for kb, v in ((uniq[c // 9].key_bytes, c % 9) for c in wanted)
    ]
    acc: np.ndarray = fixed.take(combo)
    after = (klen + vlen) * 256  # bytes after the flags byte, as a table row offset
    acc ^= flat.take(after + flags)
    ts_cols = np.ascontiguousarray(ts.view(np.uint8).reshape(n, 8).T)
    for j in range(8):
        acc ^= flat.take(after + ((14 - j) * 256) + ts_cols[j])
    # the value right-aligned in 8 bytes: byte m is 7 - m bytes from the end
    shift = (8 - vlen).astype(np.uint64) * np.uint64(4)
    aligned = (payload << shift) << shift
    value_cols = np.ascontiguousarray(aligned.view(np.uint8).reshape(n, 8).T)
    for m in range(8):
        acc ^= tables[7 - m].take(value_cols[m])
    return acc


_TABLES = np.zeros((0, 256), dtype=np.uint32)


def _tables(length: int) -> np.ndarray:
    """``tables[d, b]``: what byte ``b`` followed by ``d`` more bytes adds (XOR) to the
    CRC32 of a message, for ``d < length``. Grown on demand, kept for the process."""
    global _TABLES
    have = len(_TABLES)
    if have >= length:
        return _TABLES
    grown = np.zeros((max(length, 2 * have, 64), 256), dtype=np.uint32)
    grown[0] = [zlib.crc32(bytes([b])) ^ zlib.crc32(b"\0") for b in range(256)]
    for d in range(1, len(grown)):
        t = grown[d - 1]
        grown[d] = (t >> np.uint32(8)) ^ grown[0][t & np.uint32(0xFF)]
    _TABLES = grown
    return grown


def _encode_each(pending: Pending, segment: int, *, delta: bool, restart: int) -> Encoded:
    """The per-entry encoder (keys too long for the vectorised path): the same bytes."""
    ctx: dict[int, list[Any]] = {}
    parts: list[bytes] = []
    starts: list[int] = []
    size = 0
    for st, ts, value in zip(pending.states, pending.ts, pending.values):
        c = ctx.get(id(st))
        if c is None:
            same = st.delta_segment == segment
            c = ctx[id(st)] = [st, st.delta_atom if same else -2, st.delta_prev, st.delta_run]
        atom = _FLOAT if type(value) is float else _INT
        is_delta = delta and c[1] == atom and c[3] < restart
        if atom == _FLOAT:
            cur = codec.float_bits(value)
            vb = codec.encode_float_delta(cur, c[2]) if is_delta else _PACK_D(value)
        else:
            cur = int(value)
            vb = codec.encode_int_delta(cur, c[2]) if is_delta else _PACK_Q(value)
        record = encode_entry(ts, st.key_bytes, vb, (atom << 4) | (FLAG_DELTA if is_delta else 0))
        starts.append(size)
        size += len(record)
        parts.append(record)
        c[1], c[2], c[3] = atom, cur, (c[3] + 1 if is_delta else 0)
    contexts = [(c[0], c[1], c[2], c[3]) for c in ctx.values()]
    return Encoded(b"".join(parts), np.array(starts, dtype=np.int64), contexts)
