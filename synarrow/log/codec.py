"""Value codecs of the log: atoms to bytes and back, delta encoding, LZ4, batch payloads.

Pure functions, no I/O. Delta encoding is bit-exact: floats are XORed with the previous
value's IEEE-754 bits (never subtracted, which would round), ints take the wrapping 64-bit
difference, zigzag encoded. Either way only the significant low bytes are stored, so a value
equal to its predecessor takes zero bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import cast

import lz4.block
import numpy as np

from synarrow.errors import InvalidValueError
from synarrow.log.format import FLAG_DELTA, FLAG_LZ4, MAX_VALUE_BYTES, Atom
from synarrow.log.vectors import float32_values

__all__ = [
    "BATCH_HEADER",
    "INT64_MAX",
    "INT64_MIN",
    "LZ4_MAX_INPUT",
    "TS_EXPLICIT",
    "TS_SEQUENCE",
    "TS_UNIFORM",
    "BatchPayload",
    "batch_values_offset",
    "bits_float",
    "decode_batch",
    "decode_float_delta",
    "decode_int_delta",
    "decode_scalar",
    "encode_batch",
    "encode_float_delta",
    "encode_int_delta",
    "encode_single",
    "encode_vector",
    "float_bits",
    "lz4_fits",
    "maybe_lz4",
    "minimal_le",
    "stamped_by_writer",
    "unlz4",
    "unzigzag",
    "wrap_int64",
    "zigzag",
]

_D = struct.Struct("<d")
_Q = struct.Struct("<q")
_MASK64 = (1 << 64) - 1
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1

BATCH_HEADER = struct.Struct("<IIBBH")  # count, vector dim, ts mode, padding, reserved
#: Batch timestamp modes (byte 8 of the batch header). TS_UNIFORM: every value at the entry
#: header's timestamp (written by older versions for batches without timestamps; still
#: read). TS_EXPLICIT: one int64 per value after the header. TS_SEQUENCE: value ``i`` at
#: the header's timestamp + ``i`` microseconds (0 bytes per value; batches without
#: timestamps are written so).
TS_UNIFORM = 0
TS_EXPLICIT = 1
TS_SEQUENCE = 2
#: The largest input lz4's block format accepts (``LZ4_MAX_INPUT_SIZE``); larger payloads
#: are stored uncompressed instead of making lz4 raise ``OverflowError``.
LZ4_MAX_INPUT = 0x7E000000
# LZ4 cannot expand its input by more than 255x (plus a few bytes): a stored size beyond
# that, in a payload that passed its CRC, is crafted and must not be allocated.
_LZ4_MAX_RATIO = 255


def float_bits(value: float) -> int:
    """The unsigned 64-bit pattern of a float."""
    return int.from_bytes(_D.pack(value), "little")


def bits_float(bits: int) -> float:
    """The float with the given unsigned 64-bit pattern."""
    value: float = _D.unpack(bits.to_bytes(8, "little"))[0]
    return value


def zigzag(n: int) -> int:
    """Map a signed 64-bit int to an unsigned one with small magnitudes first."""
    return ((n << 1) ^ (n >> 63)) & _MASK64


def unzigzag(z: int) -> int:
    """Inverse of :func:`zigzag`."""
    return (z >> 1) ^ -(z & 1)


def wrap_int64(n: int) -> int:
    """Reduce an integer to the signed 64-bit range with wraparound."""
    n &= _MASK64
    return n - (1 << 64) if n >= 1 << 63 else n


def minimal_le(n: int) -> bytes:
    """``n`` (unsigned) as the fewest little-endian bytes (zero takes none)."""
    return n.to_bytes((n.bit_length() + 7) >> 3, "little")


def encode_float_delta(bits: int, prev_bits: int) -> bytes:
    """Delta payload of a float given the previous float's bits.

    The append hot path calls this for every delta-coded float, so it is written out
    (``minimal_le(bits ^ prev_bits)``) rather than composed of the helpers above.
    """
    x = bits ^ prev_bits
    return x.to_bytes((x.bit_length() + 7) >> 3, "little")


def encode_int_delta(value: int, prev: int) -> bytes:
    """Delta payload of an int given the previous int.

    ``minimal_le(zigzag(wrap_int64(value - prev)))``, written out for the append hot path.
    """
    d = (value - prev) & _MASK64
    if d >= 1 << 63:
        d -= 1 << 64
    z = ((d << 1) ^ (d >> 63)) & _MASK64
    return z.to_bytes((z.bit_length() + 7) >> 3, "little")


def decode_float_delta(payload: bytes, prev_bits: int) -> int:
    """Bits of a delta-encoded float."""
    return int.from_bytes(payload, "little") ^ prev_bits


def decode_int_delta(payload: bytes, prev: int) -> int:
    """Value of a delta-encoded int."""
    return wrap_int64(prev + unzigzag(int.from_bytes(payload, "little")))


def maybe_lz4(payload: bytes, threshold: int) -> tuple[bytes, int]:
    """LZ4-compress ``payload`` when it is at least ``threshold`` bytes and that pays off.

    Returns the stored bytes and the flag to set (0 or ``FLAG_LZ4``). Large payloads are
    judged on a 64 KiB sample first so incompressible data costs little.
    """
    n = len(payload)
    if not lz4_fits(n, threshold):
        return payload, 0
    if n > 1 << 20:
        sample = payload[: 1 << 16]
        if len(lz4.block.compress(sample, store_size=False)) > 0.8 * len(sample):
            return payload, 0
    packed = lz4.block.compress(payload, store_size=True)
    if len(packed) >= n * 0.9:
        return payload, 0
    return packed, FLAG_LZ4


def lz4_fits(n: int, threshold: int | None) -> bool:
    """Whether a payload of ``n`` bytes may be tried with LZ4: at least ``threshold`` bytes
    (``None``: never) and no more than lz4 accepts (:data:`LZ4_MAX_INPUT`)."""
    return threshold is not None and threshold <= n <= LZ4_MAX_INPUT


def unlz4(payload: bytes | memoryview) -> bytes:
    """Inverse of LZ4 as stored by :func:`maybe_lz4`.

    Raises ``ValueError`` when the stored size is more than LZ4 could ever produce from
    the payload (a crafted size would otherwise be allocated before failing).
    """
    view = memoryview(payload)
    if view.nbytes < 4:
        raise ValueError("LZ4 payload shorter than its 4-byte size")
    claimed = int.from_bytes(view[:4], "little")
    if claimed > _LZ4_MAX_RATIO * view.nbytes + 64:
        raise ValueError(f"LZ4 payload of {view.nbytes} bytes claims {claimed} bytes")
    try:
        return bytes(lz4.block.decompress(view))
    except lz4.block.LZ4BlockError as exc:
        raise ValueError(f"LZ4 payload does not decompress: {exc}") from None


def decode_scalar(atom: int, payload: bytes) -> object:
    """Python value of a non-delta, non-LZ4 single entry."""
    if atom == Atom.FLOAT or atom == Atom.INT:
        if len(payload) != 8:
            raise ValueError(f"a plain number takes 8 bytes, this one {len(payload)}")
        return (_D if atom == Atom.FLOAT else _Q).unpack(payload)[0]
    if atom == Atom.TEXT:
        return payload.decode("utf-8")
    if atom == Atom.BYTES:
        return bytes(payload)
    if atom == Atom.VECTOR:
        if not payload or len(payload) % 4:
            raise ValueError(f"a vector payload of {len(payload)} bytes is not float32 values")
        return np.frombuffer(payload, dtype="<f4").copy()
    if atom == Atom.NULL:
        if payload:
            raise ValueError(f"a null value with a {len(payload)}-byte payload")
        return None
    raise ValueError(f"unknown atom type {atom}")


@dataclass
class BatchPayload:
    """A decoded batch entry: ``count`` values of one atom type with their timestamps."""

    atom: Atom
    count: int
    timestamps: np.ndarray  # int64 microseconds, length count
    values: np.ndarray | None  # float64 / int64 / float32 (count, dim); None for NULL
    offsets: np.ndarray | None = None  # int64 (count + 1) for TEXT / BYTES
    data: bytes | None = None  # concatenated TEXT / BYTES payloads


def _compresses(sample: bytes | memoryview) -> bool:
    """Whether LZ4 shrinks a sample to under 80 % (so compressing the whole pays off)."""
    n = memoryview(sample).nbytes
    return n > 0 and len(lz4.block.compress(sample, store_size=False)) < 0.8 * n


def _numeric_delta(raw: np.ndarray, atom: Atom) -> np.ndarray:
    enc = raw.copy()
    if len(raw) > 1:
        if atom == Atom.FLOAT:
            np.bitwise_xor(raw[1:], raw[:-1], out=enc[1:])
        else:
            np.subtract(raw[1:], raw[:-1], out=enc[1:])
    return cast(np.ndarray, enc)


def batch_values_offset(payload_at: int) -> int:
    """Where the arrays of an uncompressed batch payload written at file offset ``payload_at``
    begin: after the batch header and the zero padding that puts them on an 8-byte boundary
    of the file (see ``file_offset`` of :func:`encode_batch`)."""
    start = payload_at + BATCH_HEADER.size
    return start + (-start % 8)


def encode_batch(
    atom: Atom,
    timestamps: np.ndarray | None,
    values: np.ndarray | None,
    *,
    offsets: np.ndarray | None = None,
    data: bytes | None = None,
    count: int,
    compress_threshold: int | None,
    file_offset: int | None = None,
    untimed_mode: int = TS_SEQUENCE,
) -> tuple[list[bytes | memoryview], int]:
    """Encode a batch payload as buffers to write back to back, and the flags to set.

    Without ``timestamps`` the values' timestamps follow from the entry header's
    (``untimed_mode``: :data:`TS_SEQUENCE`, one microsecond apart; :data:`TS_UNIFORM`,
    all at that instant, as older versions wrote them).

    Without compression the buffers are views of the caller's arrays (no copy). With
    ``compress_threshold`` set, a sample decides whether LZ4 (after delta encoding, for
    numbers: XOR of bits for floats, wrapping difference for ints) pays off; only then is
    the payload joined and compressed.

    ``file_offset`` is where the payload will start in the segment: zero padding after the
    batch header then puts the arrays on an 8-byte boundary of the file, so an uncompressed
    batch can later be memory-mapped as aligned arrays.
    """
    dim = 0
    parts: list[bytes | memoryview] = []
    if untimed_mode not in (TS_UNIFORM, TS_SEQUENCE):
        raise ValueError(f"batch timestamp mode {untimed_mode} needs no timestamps")
    ts_mode = untimed_mode if timestamps is None else TS_EXPLICIT
    if timestamps is not None:
        parts.append(np.ascontiguousarray(timestamps, dtype="<i8").data)
    raw = None
    if atom in (Atom.FLOAT, Atom.INT):
        assert values is not None
        raw = np.ascontiguousarray(values).view("<i8")
        parts.append(raw.data)
    elif atom == Atom.VECTOR:
        assert values is not None
        dim = int(values.shape[1])
        parts.append(np.ascontiguousarray(values, dtype="<f4").data)
    elif atom in (Atom.TEXT, Atom.BYTES):
        assert offsets is not None and data is not None
        parts.append(np.ascontiguousarray(offsets, dtype="<i8").data)
        parts.append(data)
    pad = (
        0
        if file_offset is None
        else batch_values_offset(file_offset) - file_offset - BATCH_HEADER.size
    )
    head = BATCH_HEADER.pack(count, dim, ts_mode, pad, 0) + bytes(pad)
    total = len(head) + sum(memoryview(p).nbytes for p in parts)
    if not lz4_fits(total, compress_threshold):
        return [head, *parts], 0
    if raw is not None:
        sample = raw[:8192]
        if _compresses(_numeric_delta(sample, atom).data):
            parts[-1] = _numeric_delta(raw, atom).data
            return [lz4.block.compress(b"".join([head, *parts]), store_size=True)], (
                FLAG_DELTA | FLAG_LZ4
            )
        if not _compresses(sample.data):
            return [head, *parts], 0
    elif not _compresses(memoryview(parts[-1]).cast("B")[: 1 << 16]):
        return [head, *parts], 0
    return [lz4.block.compress(b"".join([head, *parts]), store_size=True)], FLAG_LZ4


def _batch_size(atom: Atom, count: int, dim: int, ts_mode: int, start: int) -> int:
    """The exact payload size a batch header describes (``ValueError`` if it is not one
    the writer produces)."""
    if ts_mode not in (TS_UNIFORM, TS_EXPLICIT, TS_SEQUENCE):
        raise ValueError(f"unknown batch timestamp mode {ts_mode}")
    if (dim == 0) == (atom == Atom.VECTOR):
        raise ValueError(f"batch of {atom.name.lower()} values with vector dimension {dim}")
    size = start + (8 * count if ts_mode == TS_EXPLICIT else 0)
    if atom in (Atom.FLOAT, Atom.INT):
        size += 8 * count
    elif atom == Atom.VECTOR:
        size += 4 * count * dim
    elif atom in (Atom.TEXT, Atom.BYTES):
        size += 8 * (count + 1)  # the offsets; the bytes they point at come after
    return size


def decode_batch(
    atom: int, flags: int, ts_header: int, payload: bytes | memoryview
) -> BatchPayload:
    """Decode a batch payload (after LZ4 was undone).

    Every length and offset is checked against the payload before any array is built, so a
    crafted payload (even one whose CRC was recomputed) raises ``ValueError``, never yields
    an array pointing outside its buffer.
    """
    buf = memoryview(payload)
    if buf.nbytes < BATCH_HEADER.size:
        raise ValueError(f"batch payload of {buf.nbytes} bytes is shorter than its header")
    count, dim, ts_mode, pad, _ = BATCH_HEADER.unpack_from(buf, 0)
    atom = Atom(atom)
    pos = BATCH_HEADER.size + pad
    need = _batch_size(atom, count, dim, ts_mode, pos)
    text = atom in (Atom.TEXT, Atom.BYTES)
    if need > buf.nbytes or (not text and need != buf.nbytes):
        raise ValueError(
            f"batch of {count} values needs {need} bytes, its payload has {buf.nbytes}"
        )
    if flags & FLAG_DELTA and atom not in (Atom.FLOAT, Atom.INT):
        raise ValueError(f"delta flag on a batch of {atom.name.lower()} values")
    if ts_mode == TS_EXPLICIT:
        timestamps = np.frombuffer(buf, dtype="<i8", count=count, offset=pos).copy()
        pos += 8 * count
    elif ts_mode == TS_SEQUENCE:
        if ts_header > INT64_MAX - count:
            raise ValueError(f"batch of {count} values from timestamp {ts_header} passes int64")
        timestamps = np.arange(ts_header, ts_header + count, dtype=np.int64)
    else:
        timestamps = np.broadcast_to(np.int64(ts_header), (count,))
    if atom in (Atom.FLOAT, Atom.INT):
        raw = np.frombuffer(buf, dtype="<i8", count=count, offset=pos).copy()
        if flags & FLAG_DELTA:
            if atom == Atom.FLOAT:
                np.bitwise_xor.accumulate(raw, out=raw)
            else:
                np.cumsum(raw, out=raw)
        values = raw.view(np.float64) if atom == Atom.FLOAT else raw
        return BatchPayload(atom, count, timestamps, values)
    if atom == Atom.VECTOR:
        vec = np.frombuffer(buf, dtype="<f4", count=count * dim, offset=pos).reshape(count, dim)
        return BatchPayload(atom, count, timestamps, vec.copy())
    if text:
        offsets = np.frombuffer(buf, dtype="<i8", count=count + 1, offset=pos).copy()
        pos += 8 * (count + 1)
        if offsets[0] != 0 or offsets[-1] != buf.nbytes - pos or np.any(np.diff(offsets) < 0):
            raise ValueError(
                f"text/bytes batch offsets {offsets[0]}..{offsets[-1]} are not increasing "
                f"from 0 to the {buf.nbytes - pos} bytes stored"
            )
        data = bytes(buf[pos:])
        if atom == Atom.TEXT:
            data.decode("utf-8")  # UnicodeDecodeError (a ValueError) for invalid text
            starts = offsets[:-1][offsets[:-1] < len(data)]
            if np.any(np.frombuffer(data, dtype=np.uint8)[starts] & 0xC0 == 0x80):
                raise ValueError("a text value of the batch starts inside a UTF-8 character")
        return BatchPayload(atom, count, timestamps, None, offsets, data)
    return BatchPayload(atom, count, timestamps, None)


def stamped_by_writer(payload: bytes | memoryview) -> bool:
    """Whether a (decompressed, already decoded) batch payload's timestamps were chosen by
    the writer (``TS_SEQUENCE`` / ``TS_UNIFORM``) rather than given with the values."""
    mode: int = BATCH_HEADER.unpack_from(payload, 0)[2]
    return mode != TS_EXPLICIT


def encode_single(value: object) -> tuple[Atom, bytes, object]:
    """Validate one user value; returns (atom, plain payload, value as it will read back).

    Raises :class:`~synarrow.errors.InvalidValueError` for anything that is not an atom.
    """
    t = type(value)
    if t is float:
        return Atom.FLOAT, _D.pack(value), value
    if t is int:
        if not INT64_MIN <= value <= INT64_MAX:  # type: ignore[operator]
            raise InvalidValueError(
                f"int {value} is outside the int64 range; it would not round-trip",
                hint="store it as text (str(value)) or as a float",
            )
        return Atom.INT, _Q.pack(value), value
    if t is str:
        _check_size(len(cast(str, value)))  # UTF-8 takes at least a byte per character
        try:
            return Atom.TEXT, _checked(cast(str, value).encode("utf-8")), value
        except UnicodeEncodeError as exc:
            raise InvalidValueError(f"text is not valid Unicode (lone surrogate?): {exc}") from exc
    if value is None:
        return Atom.NULL, b"", None
    if t is bytes:
        _check_size(len(value))  # type: ignore[arg-type]
        return Atom.BYTES, value, value  # type: ignore[return-value]
    if t is bytearray or t is memoryview:
        # Checked before the copy: a huge view is refused without allocating its size.
        _check_size(memoryview(cast("bytearray | memoryview", value)).nbytes)
        data = bytes(cast("bytearray | memoryview", value))
        return Atom.BYTES, data, data
    if isinstance(value, (bool, np.bool_)):
        raise InvalidValueError(
            f"bool {value!r} is not an atom type (it would read back as an int)",
            hint="store int(value) explicitly",
        )
    if isinstance(value, np.ndarray):
        return encode_vector(value)
    if isinstance(value, np.floating):
        return encode_single(float(value))
    if isinstance(value, np.integer):
        return encode_single(int(value))
    if isinstance(value, str):
        return encode_single(str(value))
    if isinstance(value, float):
        return encode_single(float(value))
    if isinstance(value, int):
        return encode_single(int(value))
    if isinstance(value, bytes):
        return encode_single(bytes(value))
    raise InvalidValueError(
        f"unsupported value type {t.__name__}: {value!r:.80}",
    )


def _check_size(nbytes: int) -> None:
    if nbytes > MAX_VALUE_BYTES:
        raise InvalidValueError(
            f"value of {nbytes} bytes is over the {MAX_VALUE_BYTES}-byte (4 GiB) limit of "
            "one log entry",
            hint="split it over several keys or entries, or store it in a file",
        )


def _checked(payload: bytes) -> bytes:
    _check_size(len(payload))
    return payload


def encode_vector(value: np.ndarray) -> tuple[Atom, bytes, object]:
    """Validate a 1-D float vector; it is stored as little-endian float32."""
    if value.ndim != 1:
        raise InvalidValueError(f"a vector must be 1-D, got shape {value.shape}")
    if value.size == 0:
        raise InvalidValueError("a vector needs at least one dimension")
    if value.size * 4 > MAX_VALUE_BYTES:
        raise InvalidValueError(f"vector of {value.size} dimensions is too large")
    vec = float32_values(value, "a vector")
    return Atom.VECTOR, vec.tobytes(), vec.copy()
