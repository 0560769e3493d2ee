"""The single-append hot path writes exactly what the log codec's decoders read back.

Every entry a float or int append writes is parsed here from the segment file and decoded with
:mod:`synarrow.log.codec` (``decode_float_delta`` / ``decode_int_delta`` / ``decode_scalar``),
so the codec functions the codec tests prove are the ones the hot path's bytes obey; and the
values read back bit-exactly after a reopen (replay decodes the same entries vectorised).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import synarrow
from synarrow.engine.engine import DELTA_RESTART
from synarrow.log import codec
from synarrow.log.format import (
    ENTRY_HEADER,
    FILE_HEADER_SIZE,
    FLAG_DELTA,
    Atom,
    crc32,
    split_flags,
)

CFG = synarrow.DbConfig(sync_on_write=False, auto_compact=False, delta=True)
INT64 = st.integers(min_value=codec.INT64_MIN, max_value=codec.INT64_MAX)
# Any float bit pattern: NaNs with payloads, -0.0, infinities, subnormals.
FLOATS = st.integers(min_value=0, max_value=(1 << 64) - 1).map(codec.bits_float)
SERIES = st.lists(st.one_of(FLOATS, INT64), min_size=1, max_size=3 * DELTA_RESTART)


def _entries(path: Path) -> list[tuple[str, int, bytes]]:
    """``(key, flags, value bytes)`` of every entry of every segment, CRCs checked."""
    out = []
    for seg in sorted((path / "log").glob("*.log")):
        data = seg.read_bytes()
        off = FILE_HEADER_SIZE
        while off < len(data):
            crc, _ts, kl, vl, flags = ENTRY_HEADER.unpack_from(data, off)
            end = off + ENTRY_HEADER.size + kl + vl
            assert crc32(data[off + 4 : end]) == crc
            key = data[off + ENTRY_HEADER.size : off + ENTRY_HEADER.size + kl].decode()
            out.append((key, flags, data[end - vl : end]))
            off = end
    return out


def _decode(entries: list[tuple[str, int, bytes]]) -> dict[str, list[object]]:
    """Decode single number entries with the codec's functions, per key."""
    values: dict[str, list[object]] = {}
    prev: dict[str, tuple[int, int]] = {}  # key -> (atom, previous bits or int)
    for key, flags_byte, payload in entries:
        flags, atom = split_flags(flags_byte)
        assert atom in (Atom.FLOAT, Atom.INT)
        if flags & FLAG_DELTA:
            p_atom, p = prev[key]
            assert p_atom == atom
            if atom == Atom.FLOAT:
                cur = codec.decode_float_delta(payload, p)
                value: object = codec.bits_float(cur)
            else:
                cur = value = codec.decode_int_delta(payload, p)
        else:
            value = codec.decode_scalar(atom, payload)
            cur = codec.float_bits(value) if atom == Atom.FLOAT else value  # type: ignore[arg-type]
        prev[key] = (atom, cur)  # type: ignore[assignment]
        values.setdefault(key, []).append(value)
    return values


def _same(a: object, b: object) -> bool:
    """Equal, and for floats the same bits (NaN payloads, the sign of zero)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return codec.float_bits(a) == codec.float_bits(b)  # type: ignore[arg-type]
    return a == b


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(series=st.lists(SERIES, min_size=1, max_size=3))
def test_appended_numbers_decode_with_the_codec_and_survive_reopen(
    series: list[list[float | int]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "db"
        keys = [f"k{i}" for i in range(len(series))]
        with synarrow.SynaDB(path, CFG) as db:
            # Interleaved, one by one, so every key keeps its own delta chain.
            for step in range(max(map(len, series))):
                for key, values in zip(keys, series):
                    if step < len(values):
                        db.append(key, values[step])
        entries = _entries(path)
        assert len(entries) == sum(map(len, series))
        decoded = _decode(entries)
        for key, values in zip(keys, series):
            assert len(decoded[key]) == len(values)
            assert all(map(_same, decoded[key], values))
        with synarrow.SynaDB(path, readonly=True) as db:
            for key, values in zip(keys, series):
                column = db.get_history(key).column("value")
                back = column.to_pylist()
                if column.type in ("double", "int64"):
                    assert all(map(_same, back, values))
                else:  # a mixed float / int history: a struct column per atom type
                    got = [next(v for v in row.values() if v is not None) for row in back]
                    assert all(map(_same, got, values))
                assert _same(db.get(key), values[-1])


def test_long_float_run_is_delta_coded_with_restarts() -> None:
    """Slowly changing floats take few bytes, and every DELTA_RESTART-th entry is absolute."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "db"
        values = (20.0 + np.arange(200) * 0.25).tolist()
        with synarrow.SynaDB(path, CFG) as db:
            for v in values:
                db.append("t", v)
        entries = _entries(path)
        absolute = [i for i, (_, f, _) in enumerate(entries) if not f & FLAG_DELTA]
        assert absolute == list(range(0, 200, DELTA_RESTART + 1))
        assert all(len(v) < 8 for _, f, v in entries if f & FLAG_DELTA)
        assert all(map(_same, _decode(entries)["t"], values))
        with synarrow.SynaDB(path, readonly=True) as db:
            assert db.get_history_floats("t").tolist() == values


def test_no_delta_config_writes_absolute_numbers() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "db"
        with synarrow.SynaDB(path, CFG.replace(delta=False)) as db:
            for v in [1.0, 1.0, 2.5, 3, 3, -(1 << 63)]:
                db.append("t", v)
        entries = _entries(path)
        assert not any(f & FLAG_DELTA for _, f, _ in entries)
        assert _decode(entries)["t"] == [1.0, 1.0, 2.5, 3, 3, -(1 << 63)]


SPY = """
    import importlib, sys
    import synarrow.db, synarrow.engine.engine
    from synarrow.log import codec
    calls = {"float": 0, "int": 0}
    real_f, real_i = codec.encode_float_delta, codec.encode_int_delta
    def spy_float(bits, prev):
        calls["float"] += 1
        return real_f(bits, prev)
    def spy_int(value, prev):
        calls["int"] += 1
        return real_i(value, prev)
    codec.encode_float_delta, codec.encode_int_delta = spy_float, spy_int
    # The engine binds the codec's functions when it is imported: import it (and the
    # SynaDB built on it) again, now that they are spied on.
    importlib.reload(synarrow.engine.engine)
    SynaDB = importlib.reload(synarrow.db).SynaDB
    # write_buffer_bytes=0: the per-call encoder (buffered appends are otherwise encoded in
    # bulk, see tests/engine/test_deferred_appends.py for those bytes against the codec's)
    cfg = synarrow.DbConfig(sync_on_write=False, auto_compact=False, write_buffer_bytes=0)
    with SynaDB(sys.argv[1], cfg) as db:
        for i in range(100):
            db.append("f", i * 0.5)
            db.append("i", 7 * i)
    print(calls["float"], calls["int"])
"""


def test_the_hot_path_calls_the_codec_functions(tmp_path: Path) -> None:
    """The delta bytes come from ``codec.encode_float_delta`` / ``encode_int_delta``
    themselves (spied on, then the engine imported again), once per delta entry."""
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SPY), str(tmp_path / "db")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    floats, ints = map(int, out.stdout.split())
    restarts = len(range(0, 100, DELTA_RESTART + 1))  # absolute entries of each key
    assert floats == ints == 100 - restarts
