"""Buffered single numeric appends, recorded per call and encoded in bulk later.

The log must hold exactly what the per-call encoder wrote (one entry per append, in arrival
order, delta-coded against the key's previous single number with an absolute value every
``DELTA_RESTART + 1`` entries); reads, sequence numbers and reopen must not tell the
difference; a process killed before ``flush()`` leaves a prefix of its appends.
"""

from __future__ import annotations

import struct
import textwrap
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import synarrow
from synarrow.engine.engine import DELTA_RESTART
from synarrow.log import codec, pending
from synarrow.log.format import FLAG_DELTA, Atom, encode_entry, flags_byte
from synarrow.log.memtable import KeyState
from tests._support import run_and_kill

KEYS = ["a", "sensor/0042", "k" * 40, "x" * 200]  # the last one is encoded one by one
T0 = 1_700_000_000_000_000
FLOATS = st.one_of(
    st.floats(allow_nan=False),
    st.sampled_from([0.0, -0.0, 1.0, 20.5, 20.25, float("inf"), float("nan")]),
)
INTS = st.one_of(st.integers(-(1 << 63), (1 << 63) - 1), st.integers(-3, 3))


@st.composite
def numbers(
    draw: st.DrawFn, kinds: tuple[str, ...] = ("float", "int", "np.float64", "np.int64")
) -> Any:
    """A float, an int, a numpy float64 or a numpy int64 (of ``kinds``)."""
    kind = draw(st.sampled_from(kinds))
    if kind in ("float", "np.float64"):
        value = draw(FLOATS)
        return np.float64(value) if kind == "np.float64" else value
    value = draw(INTS)
    return np.int64(value) if kind == "np.int64" else value


def reference_log(appends: list[tuple[str, Any, int]], *, delta: bool) -> bytes:
    """The entries the per-call encoder writes for ``appends`` into one segment."""
    out = bytearray()
    ctx: dict[str, tuple[int, int, int]] = {}  # key -> atom, previous bits/value, run
    for key, value, ts in appends:
        is_float = isinstance(value, float)  # np.float64 is a float, np.int64 is not
        atom = Atom.FLOAT if is_float else Atom.INT
        cur = codec.float_bits(float(value)) if is_float else int(value)
        c = ctx.get(key)
        is_delta = delta and c is not None and c[0] == atom and c[2] < DELTA_RESTART
        if is_delta:
            assert c is not None
            if is_float:
                vb = codec.encode_float_delta(cur, c[1])
            else:
                vb = codec.encode_int_delta(cur, c[1])
        else:
            vb = struct.pack("<d" if is_float else "<q", value)
        flags = flags_byte(FLAG_DELTA if is_delta else 0, atom)
        out += encode_entry(ts, key.encode(), vb, flags)
        ctx[key] = (atom, cur, c[2] + 1 if is_delta and c is not None else 0)
    return bytes(out)


def _log_bytes(path: Path) -> bytes:
    segments = sorted((path / "log").glob("*.log"))
    assert len(segments) == 1
    return segments[0].read_bytes()[32:]


# Floats only, ints only, or both: long runs of one type reach the absolute restarts.
PROGRAM = st.sampled_from(
    [("float", "np.float64"), ("int", "np.int64"), ("float", "int", "np.float64", "np.int64")]
).flatmap(
    lambda kinds: st.lists(
        st.one_of(
            st.tuples(st.sampled_from(KEYS), numbers(kinds)),
            # a run of appends of one type to one key
            st.tuples(st.just("run"), st.sampled_from(KEYS), numbers(kinds), st.integers(1, 80)),
            st.just("flush"),
        ),
        max_size=400,
    )
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    program=PROGRAM,
    buffer=st.sampled_from([1, 300, 5000, 1 << 20]),
    small=st.sampled_from([1, pending.SMALL]),
    delta=st.booleans(),
)
def test_log_bytes_are_those_of_the_per_call_encoder(
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    program: list[Any],
    buffer: int,
    small: int,
    delta: bool,
) -> None:
    """Numeric appends (explicit timestamps, flushes between them, the bulk encoder used
    from one entry up): the segment holds the reference encoder's bytes, and the
    sequence numbers count one per append."""
    monkeypatch.setattr(pending, "SMALL", small)
    path = tmp_path_factory.mktemp("bytes") / "db"
    cfg = synarrow.DbConfig(
        sync_on_write=False, auto_compact=False, write_buffer_bytes=buffer, delta=delta
    )
    appends: list[tuple[str, Any, int]] = []
    with synarrow.SynaDB(path, cfg) as db:
        for op in program:
            if op == "flush":
                db.flush()
                continue
            if op[0] == "run":
                _, key, value, count = op
                # near values (an int's low bits flipped: still in the int64 range)
                if isinstance(value, float):
                    steps = [value + j % 3 for j in range(count)]
                else:
                    steps = [value ^ (j % 3) for j in range(count)]
            else:
                key, value = op
                steps = [value]
            for v in steps:
                ts = T0 + len(appends) % 7
                assert db.append(key, v, timestamp=ts) == len(appends)
                appends.append((key, v, ts))
    assert _log_bytes(path) == reference_log(appends, delta=delta)
    with synarrow.SynaDB(path, readonly=True) as db:
        assert db.next_sequence == len(appends)


def test_bulk_crc_matches_zlib() -> None:
    """The table-driven checksums of many entries, keys of several lengths and every value
    length, are zlib's."""
    rng = np.random.default_rng(3)
    appends = []
    for i in range(3000):
        key = KEYS[i % 3]
        as_float = (i // 500) % 2 == 0  # long runs of one type per key, then the other
        value: Any = float(rng.standard_normal()) if as_float else int(rng.integers(-9, 9))
        if not as_float and i % 7 == 0:
            value = int(rng.integers(-(1 << 62), 1 << 62))
        appends.append((key, value, T0 + int(rng.integers(-(1 << 40), 1 << 40))))
    states = {k: KeyState(k, k.encode()) for k in KEYS}
    queue = pending.Pending()
    for key, value, ts in appends:
        queue.states.append(states[key])
        queue.ts.append(ts)
        queue.values.append(value)
    done = queue.encode(0, delta=True, restart=DELTA_RESTART)
    assert done.data == reference_log(appends, delta=True)
    ends = [*done.starts.tolist()[1:], len(done.data)]
    for start, end in zip(done.starts.tolist(), ends):
        (crc,) = struct.unpack_from("<I", done.data, start)
        assert crc == zlib.crc32(done.data[start + 4 : end])


OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("append"),
            st.sampled_from(KEYS[:3]),
            numbers(),
            st.one_of(st.none(), st.integers(-5, 5)),
        ),
        st.tuples(st.just("text"), st.sampled_from(KEYS[:3]), st.text(max_size=5)),
        st.tuples(st.just("batch"), st.sampled_from(KEYS[:3]), st.integers(1, 5)),
        st.tuples(st.just("delete"), st.sampled_from(KEYS[:3])),
        st.just(("flush",)),
        st.just(("reopen",)),
        st.just(("compact",)),
    ),
    max_size=120,
)


def _canon(value: Any) -> Any:
    if isinstance(value, float):
        return ("f", struct.pack("<d", value))
    return value


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=OPS, buffer=st.sampled_from([300, 1 << 20]))
def test_mixed_writes_against_a_model(
    tmp_path_factory: pytest.TempPathFactory, ops: list[Any], buffer: int
) -> None:
    """Numbers (explicit and implicit timestamps) mixed with text, batches, deletes,
    flushes, reopens and compactions: sequence numbers, latest values and histories are
    the model's, before and after every reopen."""
    path = tmp_path_factory.mktemp("model") / "db"
    cfg = synarrow.DbConfig(sync_on_write=False, auto_compact=False, write_buffer_bytes=buffer)
    db = synarrow.SynaDB(path, cfg)
    model: dict[str, list[tuple[int, int, Any]]] = {}  # key -> (ts, order, value)
    seq = 0
    order = 0
    try:
        for op in ops:
            kind = op[0]
            if kind == "append":
                _, key, value, dt = op
                ts = None if dt is None else T0 + dt
                got = db.append(key, value, timestamp=ts)
                assert got == seq
                seq += 1
                plain = float(value) if isinstance(value, float) else int(value)
                at = ts if ts is not None else 1 << 62  # after every explicit one
                model.setdefault(key, []).append((at, order, plain))
            elif kind == "text":
                _, key, text = op
                assert db.append(key, text, timestamp=T0) == seq
                seq += 1
                model.setdefault(key, []).append((T0, order, text))
            elif kind == "batch":
                _, key, count = op
                values = np.arange(count, dtype=np.float64) + 0.5
                stamps = np.arange(count, dtype=np.int64) + T0
                db.append_batch(key, values, timestamps=stamps)
                seq += 1
                for i in range(count):
                    model.setdefault(key, []).append((T0 + i, order, float(values[i])))
                    order += 1
            elif kind == "delete":
                _, key = op
                held = bool(model.pop(key, None))
                assert db.delete(key) == held
                seq += held
            elif kind == "flush":
                db.flush()
            elif kind == "reopen":
                db.close()
                db = synarrow.SynaDB(path, cfg)
            elif kind == "compact":
                db.compact()
            order += 1
            assert db.next_sequence == seq
        for _ in range(2):
            for key in KEYS[:3]:
                entries = sorted(model.get(key, []), key=lambda e: (e[0], e[1]))
                if not entries:
                    assert db.get(key) is None
                    continue
                want = [_canon(v) for _, _, v in entries]
                got = [_canon(v) for v in db.get_history(key).column("value").to_pylist()]
                got = [g if not isinstance(g, dict) else _pick(g) for g in got]
                assert got == want
                assert _canon(db.get(key)) == want[-1]
            db.close()
            db = synarrow.SynaDB(path, cfg)
            assert db.next_sequence == seq
    finally:
        db.close()


def _pick(row: dict[str, Any]) -> Any:
    return _canon(next((v for v in row.values() if v is not None), None))


def test_a_failed_bulk_write_keeps_the_appends_pending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write of the pending entries that the OS refuses leaves nothing of them in the
    segment; they stay pending (and readable), the append that wanted to write them is not
    recorded, and the next flush writes them."""
    cfg = synarrow.DbConfig(sync_on_write=False, auto_compact=False, write_buffer_bytes=400)
    db = synarrow.SynaDB(tmp_path / "db", cfg)
    appends = []
    writer = db._engine.writer
    assert writer is not None
    real = writer._write_through

    def refuse(data: Any) -> None:
        raise synarrow.StorageFullError("no space (simulated)")

    i = 0
    monkeypatch.setattr(writer, "_write_through", refuse)
    with pytest.raises(synarrow.StorageFullError):
        while True:
            db.append("k", 0.5 * i, timestamp=T0 + i)
            appends.append(("k", 0.5 * i, T0 + i))
            i += 1
    assert appends and db.next_sequence == len(appends)
    assert db.get_history_floats("k").tolist() == [v for _, v, _ in appends]
    with pytest.raises(synarrow.StorageFullError):
        db.flush()
    monkeypatch.setattr(writer, "_write_through", real)
    db.flush()
    db.append("k", 1.0, timestamp=T0 + i)
    appends.append(("k", 1.0, T0 + i))
    db.close()
    assert _log_bytes(tmp_path / "db") == reference_log(appends, delta=True)


KILLED = textwrap.dedent(
    """
    import sys, time, synarrow
    path, mode = sys.argv[1], sys.argv[2]
    cfg = synarrow.DbConfig(sync_on_write=False, auto_compact=False)
    db = synarrow.SynaDB(path, cfg)
    if mode == "stream":
        i = 0
        while True:
            db.append(f"k{i % 5}", float(i))
            i += 1
            if i % 997 == 0:
                db.flush()
                print(i, flush=True)  # every append before i survives a crash now
    for i in range(3000):
        db.append(f"k{i % 5}", float(i))
    if mode == "flushed":
        db.flush()
    print(3000, flush=True)
    time.sleep(600)  # killed here
    """
)


def _survivors(path: Path) -> list[int]:
    """Every value left after a crash, checked to be a prefix 0, 1, ... of the appends."""
    with synarrow.SynaDB(path, synarrow.DbConfig(sync_on_write=False)) as db:
        seen = []
        for key in db.keys():
            values = db.get_history_floats(key).astype(int).tolist()
            assert values == sorted(values)
            assert all(v % 5 == int(key[1:]) for v in values)
            seen += values
    seen.sort()
    assert seen == list(range(len(seen))), "the surviving appends are not a prefix"
    return seen


@pytest.mark.parametrize("mode", ["flushed", "unflushed"])
def test_sigkill_after_appends(tmp_path: Path, mode: str) -> None:
    """Killed after 3,000 appends: with flush() every one survives; without, what survives
    (nothing was handed to the OS yet) is a prefix of them."""
    path = tmp_path / "db"
    acked = run_and_kill(KILLED, [str(path), mode], 0.2)
    assert acked == [3000]
    seen = _survivors(path)
    # 3,000 entries fit in the write buffer: without flush() none was handed to the OS
    assert len(seen) == (3000 if mode == "flushed" else 0)


def test_sigkill_during_appends_and_flushes(tmp_path: Path) -> None:
    """Killed at a random moment of a stream of appends with a flush every 997: every
    append before the last acknowledged flush is there, and the rest is a prefix."""
    path = tmp_path / "db"
    rng = np.random.default_rng(11)
    acked = run_and_kill(KILLED, [str(path), "stream"], float(rng.uniform(0.05, 0.5)))
    seen = _survivors(path)
    assert len(seen) >= acked[-1]
