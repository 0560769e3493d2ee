"""Round trips of every value codec (hypothesis): delta encoding must be bit-exact."""

from __future__ import annotations

import math
import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from synarrow.errors import InvalidValueError
from synarrow.log import codec
from synarrow.log.format import FLAG_DELTA, FLAG_LZ4, Atom

any_float_bits = st.integers(min_value=0, max_value=(1 << 64) - 1)
int64s = st.integers(min_value=codec.INT64_MIN, max_value=codec.INT64_MAX)


@given(any_float_bits, any_float_bits)
def test_float_delta_is_bit_exact(bits: int, prev: int) -> None:
    payload = codec.encode_float_delta(bits, prev)
    assert len(payload) <= 8
    assert codec.decode_float_delta(payload, prev) == bits


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=50))
def test_float_delta_chain_round_trips_every_float(values: list[float]) -> None:
    prev = 0
    decoded = []
    for i, v in enumerate(values):
        bits = codec.float_bits(v)
        payload = codec.encode_float_delta(bits, prev) if i else struct.pack("<d", v)
        back = (
            codec.decode_float_delta(payload, prev)
            if i
            else codec.float_bits(
                codec.decode_scalar(Atom.FLOAT, payload)  # type: ignore[arg-type]
            )
        )
        decoded.append(back)
        prev = bits
    assert decoded == [codec.float_bits(v) for v in values]


def test_float_delta_keeps_nan_payload_and_negative_zero() -> None:
    weird = [0x7FF8_0000_0000_0001, 0xFFF0_0000_0000_0000, 0x8000_0000_0000_0000]
    prev = codec.float_bits(1.0)
    for bits in weird:
        assert codec.decode_float_delta(codec.encode_float_delta(bits, prev), prev) == bits
    assert math.copysign(1.0, codec.bits_float(weird[2])) == -1.0


@given(int64s, int64s)
def test_int_delta_round_trips_with_wraparound(value: int, prev: int) -> None:
    payload = codec.encode_int_delta(value, prev)
    assert len(payload) <= 8
    assert codec.decode_int_delta(payload, prev) == value


@given(any_float_bits, any_float_bits, int64s, int64s)
def test_written_out_delta_encoders_equal_their_definitions(
    bits: int, prev_bits: int, value: int, prev: int
) -> None:
    """The hot-path forms of the delta encoders are the composed definitions, byte for byte."""
    assert codec.encode_float_delta(bits, prev_bits) == codec.minimal_le(bits ^ prev_bits)
    assert codec.encode_int_delta(value, prev) == codec.minimal_le(
        codec.zigzag(codec.wrap_int64(value - prev))
    )


@given(int64s)
def test_zigzag_is_a_bijection(n: int) -> None:
    z = codec.zigzag(n)
    assert 0 <= z < 1 << 64
    assert codec.unzigzag(z) == n


def test_equal_neighbours_take_zero_bytes() -> None:
    bits = codec.float_bits(21.5)
    assert codec.encode_float_delta(bits, bits) == b""
    assert codec.encode_int_delta(7, 7) == b""


# Random bytes almost never compress; repeated short patterns (with a random tail) do, so
# both outcomes of maybe_lz4 are reached, on both sides of the threshold.
lz4_inputs = st.one_of(
    st.binary(min_size=0, max_size=5000),
    st.tuples(st.binary(min_size=1, max_size=8), st.integers(1, 900), st.binary(max_size=50)).map(
        lambda t: t[0] * t[1] + t[2]
    ),
)


@given(lz4_inputs, st.integers(min_value=1, max_value=4096))
def test_lz4_round_trip(data: bytes, threshold: int) -> None:
    stored, flag = codec.maybe_lz4(data, threshold)
    assert flag in (0, FLAG_LZ4)
    assert flag == 0 or len(data) >= threshold  # never below the threshold
    if flag:
        assert len(stored) < len(data)  # only when it pays off
    assert (codec.unlz4(stored) if flag else stored) == data


def test_lz4_is_used_only_when_it_pays_off() -> None:
    assert codec.maybe_lz4(b"a" * 10_000, 1024)[1] == FLAG_LZ4
    random_bytes = np.random.default_rng(1).bytes(10_000)
    assert codec.maybe_lz4(random_bytes, 1024) == (random_bytes, 0)
    assert codec.maybe_lz4(b"a" * 100, 1024) == (b"a" * 100, 0)


def _decode(parts: list, flags: int, atom: Atom, ts: int) -> codec.BatchPayload:
    payload = b"".join(bytes(memoryview(p)) for p in parts)
    if flags & FLAG_LZ4:
        payload = codec.unlz4(payload)
    return codec.decode_batch(atom, flags, ts, payload)


numbers = st.one_of(
    st.lists(st.floats(allow_nan=True), min_size=0, max_size=300).map(
        lambda v: (Atom.FLOAT, np.array(v, dtype=np.float64))
    ),
    st.lists(int64s, min_size=0, max_size=300).map(
        lambda v: (Atom.INT, np.array(v, dtype=np.int64))
    ),
)


@given(
    numbers,
    st.sampled_from(["explicit", codec.TS_SEQUENCE, codec.TS_UNIFORM]),
    st.sampled_from([None, 1, 64]),
)
def test_numeric_batch_round_trips(data: tuple, mode: object, threshold: int | None) -> None:
    atom, values = data
    n = len(values)
    ts = np.arange(n, dtype=np.int64) * 1000 + 5 if mode == "explicit" else None
    untimed = mode if isinstance(mode, int) else codec.TS_SEQUENCE
    parts, flags = codec.encode_batch(
        atom, ts, values, count=n, compress_threshold=threshold, untimed_mode=untimed
    )
    out = _decode(parts, flags, atom, 99)
    assert out.count == n
    assert out.values is not None
    assert out.values.view(np.int64).tolist() == values.view(np.int64).tolist()
    if ts is not None:
        expected_ts = ts
    elif mode == codec.TS_SEQUENCE:  # what batches without timestamps are written as
        expected_ts = 99 + np.arange(n)
    else:  # older versions: every value at the header's instant
        expected_ts = np.full(n, 99)
    assert out.timestamps.tolist() == expected_ts.tolist()


def test_sequence_timestamps_past_int64_are_refused() -> None:
    parts, flags = codec.encode_batch(
        Atom.INT, None, np.arange(3), count=3, compress_threshold=None
    )
    with pytest.raises(ValueError, match="passes int64"):
        _decode(parts, flags, Atom.INT, codec.INT64_MAX - 1)


def test_regular_series_batch_is_delta_and_lz4_coded() -> None:
    values = np.round(np.linspace(20, 21, 100_000), 2)
    parts, flags = codec.encode_batch(
        Atom.FLOAT, None, values, count=len(values), compress_threshold=1024
    )
    assert flags == FLAG_DELTA | FLAG_LZ4
    assert sum(len(p) for p in parts) < values.nbytes / 4
    assert np.array_equal(_decode(parts, flags, Atom.FLOAT, 0).values, values)


@given(
    st.lists(st.text(max_size=20), max_size=40),
    st.sampled_from([Atom.TEXT, Atom.BYTES]),
    st.sampled_from([None, 1]),
)
def test_var_width_batch_round_trips(items: list[str], atom: Atom, threshold: int | None) -> None:
    raw = [s.encode() for s in items]
    offsets = np.zeros(len(raw) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in raw], out=offsets[1:])
    parts, flags = codec.encode_batch(
        atom,
        None,
        None,
        offsets=offsets,
        data=b"".join(raw),
        count=len(raw),
        compress_threshold=threshold,
    )
    out = _decode(parts, flags, atom, 0)
    assert out.offsets is not None and out.data is not None
    got = [out.data[a:b] for a, b in zip(out.offsets[:-1], out.offsets[1:])]
    assert got == raw


@given(st.integers(1, 50), st.integers(1, 20))
def test_vector_batch_round_trips(n: int, dim: int) -> None:
    vecs = np.random.default_rng(n).standard_normal((n, dim)).astype(np.float32)
    parts, flags = codec.encode_batch(Atom.VECTOR, None, vecs, count=n, compress_threshold=None)
    out = _decode(parts, flags, Atom.VECTOR, 0)
    assert np.array_equal(out.values, vecs)


@pytest.mark.parametrize(
    ("value", "atom"),
    [
        (None, Atom.NULL),
        (1.5, Atom.FLOAT),
        (float("nan"), Atom.FLOAT),
        (-(1 << 63), Atom.INT),
        ((1 << 63) - 1, Atom.INT),
        ("", Atom.TEXT),
        ("a\x00b", Atom.TEXT),
        (b"", Atom.BYTES),
        (bytearray(b"xy"), Atom.BYTES),
        (memoryview(b"xy"), Atom.BYTES),
        (np.float32(2.5), Atom.FLOAT),
        (np.int16(-3), Atom.INT),
        (np.array([1.0, 2.0]), Atom.VECTOR),
    ],
)
def test_encode_single_accepts_atoms(value: object, atom: Atom) -> None:
    got_atom, payload, normalised = codec.encode_single(value)
    assert got_atom == atom
    if atom in (Atom.FLOAT, Atom.INT, Atom.TEXT, Atom.BYTES):
        decoded = codec.decode_scalar(atom, payload)
        if atom == Atom.FLOAT and math.isnan(decoded):  # type: ignore[arg-type]
            assert math.isnan(normalised)  # type: ignore[arg-type]
        else:
            assert decoded == normalised


@pytest.mark.parametrize(
    "value",
    [
        True,
        np.bool_(False),
        1 << 63,
        -(1 << 63) - 1,
        np.uint64(1 << 63),
        "\ud800",
        object(),
        [1.0, 2.0],
        {"a": 1},
        np.zeros((2, 2)),
        np.array([], dtype=np.float32),
        np.array(["a"]),
        np.array([1e300]),
    ],
)
def test_encode_single_refuses_non_atoms(value: object) -> None:
    with pytest.raises(InvalidValueError):
        codec.encode_single(value)
