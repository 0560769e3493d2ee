"""The range tombstone: the log entry ``delete_range(key, start, end)`` writes.

Layout: an ordinary entry whose flags byte is ``RANGE_TOMBSTONE_FLAGS`` (atom nibble 0xF,
no flag bits) and whose 16-byte value is ``start i64, end i64`` (little-endian
microseconds): every entry of the key written before it with ``start <= ts < end`` is
removed. ``start = INT64_MIN`` means unbounded below; ``end = INT64_MAX`` means unbounded
above (then ``ts = INT64_MAX`` is removed too). The header timestamp is when it was written.

Not the ``TOMBSTONE`` flag on purpose: a reader that predates range tombstones would take
that for a whole-key delete and silently drop the key's history; an unknown atom type
instead makes it refuse the segment with a :class:`~synarrow.errors.CorruptionError`
("unknown atom type 15"), so nothing is lost by opening with an older synarrow.
"""

from __future__ import annotations

import struct

__all__ = [
    "RANGE_PAYLOAD",
    "RANGE_TOMBSTONE_ATOM",
    "RANGE_TOMBSTONE_FLAGS",
    "decode_range",
    "encode_range",
]

#: The atom nibble of a range tombstone (no value type uses it).
RANGE_TOMBSTONE_ATOM = 0xF
#: The whole flags byte of a range tombstone entry.
RANGE_TOMBSTONE_FLAGS = RANGE_TOMBSTONE_ATOM << 4
#: ``start, end`` as little-endian int64.
RANGE_PAYLOAD = struct.Struct("<qq")
_MIN = -(1 << 63)
_MAX = (1 << 63) - 1


def encode_range(start: int | None, end: int | None) -> bytes:
    """The 16-byte value of a range tombstone (``None``: unbounded on that side)."""
    return RANGE_PAYLOAD.pack(_MIN if start is None else start, _MAX if end is None else end)


def decode_range(payload: bytes | memoryview) -> tuple[int | None, int | None]:
    """``(start, end)`` of a range tombstone's value (``None``: unbounded); ``ValueError``
    when it is not 16 bytes or ``start > end``."""
    if len(payload) != RANGE_PAYLOAD.size:
        raise ValueError(f"a range tombstone takes 16 bytes, this one {len(payload)}")
    start, end = RANGE_PAYLOAD.unpack(payload)
    if start > end:
        raise ValueError(f"range tombstone with start {start} after end {end}")
    return (None if start == _MIN else start), (None if end == _MAX else end)
