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
    if delta:
        cand = prev_atom == a_sorted
    else:
        cand = np.zeros(n, dtype=bool)
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


def _byte_len(x: np.ndarray) -> np.ndarray:
    """Bytes of each uint64's minimal little-endian form (0 for 0)."""
    out = np.zeros(len(x), dtype=np.int64)
    for k in range(8):
        out += x >= np.uint64(1 << (8 * k))
    return out


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
    keys = np.zeros((len(uniq), maxk), dtype=np.uint8)
    for i, st in enumerate(uniq):
        keys[i, : len(st.key_bytes)] = np.frombuffer(st.key_bytes, dtype=np.uint8)
    klen = klens[codes]
    width = ENTRY_SLACK + maxk
    rows = np.zeros((n, width), dtype=np.uint8)
    rows[:, 4:12] = ts.astype("<i8").view(np.uint8).reshape(n, 8)
    rows[:, 12:14] = klen.astype("<u2").view(np.uint8).reshape(n, 2)
    rows[:, 14:18] = vlen.astype("<u4").view(np.uint8).reshape(n, 4)
    rows[:, 18] = flags.astype(np.uint8)
    rows[:, 19 : 19 + maxk] = keys[codes]
    value_bytes = payload.astype("<u8").view(np.uint8).reshape(n, 8)
    if (klens == maxk).all():
        rows[:, 19 + maxk : 27 + maxk] = value_bytes
    else:
        for kl in np.unique(klen).tolist():
            sel = np.flatnonzero(klen == kl)
            # a shorter key's padding is zeros, overwritten here; bytes past the value stay 0
            rows[sel, 19 + kl : 27 + kl] = value_bytes[sel]
    body_len = ENTRY_HEADER_SIZE - 4 + klen + vlen
    crc = _crc_rows(rows, codes, uniq, klen, vlen)
    rows[:, 0:4] = crc.astype("<u4").view(np.uint8).reshape(n, 4)
    entry_len = body_len + 4
    data = rows[np.arange(width)[None, :] < entry_len[:, None]].tobytes()
    starts = np.zeros(n, dtype=np.int64)
    np.cumsum(entry_len[:-1], out=starts[1:])
    return data, starts


def _crc_rows(
    rows: np.ndarray, codes: np.ndarray, uniq: list[KeyState], klen: np.ndarray, vlen: np.ndarray
) -> np.ndarray:
    """CRC32 of each row's body (``rows[i, 4:]``: header, key, value of ``vlen[i]`` bytes).

    Rows are taken in groups of one key length and one value length, where the length
    fields are the same and only the timestamp, flags, key and value bytes differ (a key's
    part comes from one checksum per key when the group holds few keys)."""
    n = len(rows)
    out = np.empty(n, dtype=np.uint32)
    tables, zeros = _tables(int((klen + vlen).max()) + 15)
    group_of = klen * 16 + vlen
    order = np.argsort(group_of, kind="stable")
    cuts = np.flatnonzero(np.diff(group_of[order])) + 1
    for group in np.split(order, cuts):
        kl, vl = int(klen[group[0]]), int(vlen[group[0]])
        length = 15 + kl + vl
        sub = rows[group, 4 : 4 + length]
        # the length fields, as the checksum of the body with every varying byte zeroed
        template = bytearray(length)
        template[8:14] = sub[0, 8:14].tobytes()
        acc = np.full(len(group), zlib.crc32(template), dtype=np.uint32)
        for j in (*range(8), 14, *range(15 + kl, length)):
            acc ^= tables[length - 1 - j][sub[:, j]]
        in_group = codes[group]
        present = np.unique(in_group)
        if len(present) * 4 <= len(group):
            zero = zeros[length]
            pad = bytes(15)
            tail = bytes(vl)
            part = np.zeros(len(uniq), dtype=np.uint32)
            part[present] = [
                zlib.crc32(pad + uniq[c].key_bytes + tail) ^ zero for c in present.tolist()
            ]
            acc ^= part[in_group]
        else:
            for j in range(15, 15 + kl):
                acc ^= tables[length - 1 - j][sub[:, j]]
        out[group] = acc
    return out


_TABLES: list[np.ndarray] = []
_ZEROS: list[int] = []


def _tables(length: int) -> tuple[list[np.ndarray], list[int]]:
    """``tables[d][b]``: what byte ``b`` followed by ``d`` bytes adds to a CRC32 (XOR);
    ``zeros[L]``: the CRC32 of ``L`` zero bytes. Grown on demand, kept for the process."""
    if not _TABLES:
        byte = np.array([zlib.crc32(bytes([b])) ^ zlib.crc32(b"\0") for b in range(256)])
        _TABLES.append(byte.astype(np.uint32))
        _ZEROS.append(zlib.crc32(b""))
    t0 = _TABLES[0]
    while len(_TABLES) < length:
        t = _TABLES[-1]
        _TABLES.append((t >> np.uint32(8)) ^ t0[t & np.uint32(0xFF)])
    while len(_ZEROS) <= length:
        _ZEROS.append(zlib.crc32(bytes(len(_ZEROS))))
    return _TABLES, _ZEROS


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

