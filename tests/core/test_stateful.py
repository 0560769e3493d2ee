"""The database against a plain dict-of-lists model, under random operation sequences."""

from __future__ import annotations

import math
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

import synarrow
import synarrow.engine.batches as batches_mod
from synarrow.log import codec
from synarrow.log.format import FLAG_LZ4

KEYS = st.sampled_from(["a", "b", "sensor/1", "ключ", "x" * 300])
FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)
INTS = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
VECTORS = st.lists(st.floats(-1e6, 1e6, width=32), min_size=1, max_size=6).map(
    lambda v: np.array(v, dtype=np.float32)
)
ATOMS = st.one_of(
    st.none(),
    FLOATS,
    INTS,
    st.text(max_size=30),
    st.binary(max_size=40),
    VECTORS,
    st.text(min_size=1500, max_size=1600),  # above the LZ4 threshold, rarely compressible
    # repetitive, so LZ4 pays off and the entry is stored compressed
    st.text(min_size=1, max_size=4).map(lambda s: s * 400),
    st.binary(min_size=1, max_size=3).map(lambda b: b * 500),
)
# Lowered inside the machine so small examples reach the paths the defaults keep for big
# data: LZ4 of batches (``compression_threshold``) and the split of a batch over several
# log entries (``synarrow.engine.batches.entry_bytes``, the segment size within 64 MiB..1 GiB).
LZ4_THRESHOLD = 64
CHUNK_BYTES = 256
REACHED = {
    "lz4": 0,
    "split": 0,
    "batch_entries": 0,
}  # counted by a spy on the codec; checked after the run


def canon(value: Any) -> Any:
    """A comparable form: floats by bit pattern, vectors as float32 lists."""
    if isinstance(value, float):
        return ("f", struct.pack("<d", value))
    if isinstance(value, np.ndarray):
        return ("v", value.astype(np.float32).tolist())
    if isinstance(value, list):  # a vector read back through Arrow
        return ("v", np.array(value, dtype=np.float32).tolist())
    return value


def history_values(db: synarrow.SynaDB, key: str) -> list[Any]:
    table = db.get_history(key)
    out = []
    for v in table.column("value").to_pylist():
        if isinstance(v, dict):  # mixed-type history: one field set per row
            v = next((x for x in v.values() if x is not None), None)
        out.append(canon(v))
    return out


NOW = 10**18
T0 = 1_700_000_000_000_000
# Explicit timestamps near T0: out of order, equal to each other and to batch timestamps.
LATE = st.integers(T0 - 40, T0 + 80)
BOUNDS = st.one_of(st.none(), st.integers(T0 - 50, T0 + 90))


class DatabaseMachine(RuleBasedStateMachine):
    """Random appends, batches, deletes, reopens and compactions against a model."""

    duplicates = "keep_all"

    @initialize()
    def open_db(self) -> None:
        self.dir = Path(tempfile.mkdtemp())
        self.path = self.dir / "db"
        self.cfg = synarrow.DbConfig(
            sync_on_write=False,
            auto_compact=False,
            compression_threshold=LZ4_THRESHOLD,
            duplicates=self.duplicates,
        )
        self.db = synarrow.SynaDB(self.path, self.cfg)
        # key -> (time order, value) in arrival order; histories read sorted by time order,
        # equal ones in arrival order. Values written without a timestamp get "now", later
        # than every explicit timestamp used here and increasing: NOW + a counter.
        self.model: dict[str, list[tuple[int, Any]]] = {}
        self.clock = 0

    def now(self) -> int:
        self.clock += 1
        return NOW + self.clock

    def timeline(self, key: str) -> list[tuple[int, Any]]:
        """The model's history as reads see it: by time (stable), the policy applied."""
        entries = sorted(self.model.get(key, []), key=lambda e: e[0])
        if self.duplicates == "keep_last":
            entries = [
                e
                for i, e in enumerate(entries)
                if i + 1 == len(entries) or entries[i + 1][0] != e[0]
            ]
        elif self.duplicates == "keep_first":
            entries = [e for i, e in enumerate(entries) if i == 0 or entries[i - 1][0] != e[0]]
        return entries

    def expected(self, key: str) -> list[Any]:
        return [v for _, v in self.timeline(key)]

    def teardown(self) -> None:
        if hasattr(self, "db"):
            self.db.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    @rule(key=KEYS, value=ATOMS)
    def append(self, key: str, value: Any) -> None:
        self.db.append(key, value)
        self.model.setdefault(key, []).append((self.now(), canon(value)))

    @rule(key=KEYS, value=ATOMS, ts=LATE)
    def append_late(self, key: str, value: Any, ts: int) -> None:
        """An explicit timestamp: before, between or equal to earlier ones."""
        self.db.append(key, value, timestamp=ts)
        self.model.setdefault(key, []).append((ts, canon(value)))

    @rule(key=KEYS, at=st.integers(T0 - 50, T0 + 90))
    def get_at(self, key: str, at: int) -> None:
        before = [v for t, v in self.timeline(key) if t <= at]
        got = self.db.get(key, "absent", at=at)
        if not before:
            assert got == "absent"
        else:
            assert canon(got) == before[-1]

    @rule(key=KEYS, start=BOUNDS, end=BOUNDS, last=st.one_of(st.none(), st.integers(0, 5)))
    def history_range(self, key: str, start: Any, end: Any, last: Any) -> None:
        if not self.model.get(key):
            return
        if start is not None and end is not None and start > end:
            start, end = end, start
        want = [
            v
            for t, v in self.timeline(key)
            if (start is None or t >= start) and (end is None or t < end)
        ]
        if last is not None:
            want = want[max(0, len(want) - last) :] if last else []
        table = self.db.get_history(key, start, end, last=last)
        got = []
        for v in table.column("value").to_pylist():
            if isinstance(v, dict):
                v = next((x for x in v.values() if x is not None), None)
            got.append(canon(v))
        assert got == want
        ts = table.column("ts").cast("int64").to_pylist()
        assert ts == sorted(ts)

    @rule(
        key=KEYS,
        values=st.one_of(
            st.lists(FLOATS, min_size=1, max_size=60).map(lambda v: np.array(v, dtype=np.float64)),
            st.lists(INTS, min_size=1, max_size=60).map(lambda v: np.array(v, dtype=np.int64)),
            # regular series: delta coding makes them compressible, and 100+ values of 8
            # bytes pass CHUNK_BYTES, so the batch is split over several entries
            st.tuples(st.integers(1, 200), st.integers(-3, 3), st.sampled_from(["f8", "i8"])).map(
                lambda t: (np.arange(t[0]) * t[1]).astype(t[2])
            ),
            st.lists(st.text(min_size=20, max_size=40), min_size=10, max_size=20),
            st.lists(st.text(max_size=10), min_size=1, max_size=20),
            st.integers(1, 5)
            .flatmap(
                lambda d: st.lists(
                    st.lists(st.floats(-10, 10, width=32), min_size=d, max_size=d),
                    min_size=1,
                    max_size=10,
                )
            )
            .map(lambda m: np.array(m, dtype=np.float32)),
        ),
        with_ts=st.booleans(),
    )
    def append_batch(self, key: str, values: Any, with_ts: bool) -> None:
        n = len(values)
        ts = np.arange(n, dtype=np.int64) + 1_700_000_000_000_000 if with_ts else None
        entries = REACHED["batch_entries"]
        assert self.db.append_batch(key, values, timestamps=ts) == n
        REACHED["split"] += REACHED["batch_entries"] - entries > 1  # the spy saw each entry
        items = values.tolist() if isinstance(values, np.ndarray) and values.ndim == 1 else values
        if isinstance(values, np.ndarray) and values.ndim == 1 and values.dtype.kind == "f":
            items = [float(x) for x in values]
        if isinstance(values, np.ndarray) and values.ndim == 2:
            items = list(values)
        order = ts.tolist() if with_ts else [self.now() for _ in items]
        self.model.setdefault(key, []).extend(zip(order, (canon(v) for v in items)))
        if with_ts:
            got = self.db.get_history(key).column("ts").to_numpy().astype("int64")
            assert set(ts.tolist()) <= set(got.tolist())

    @rule(key=KEYS)
    def delete(self, key: str) -> None:
        existed = self.db.delete(key)
        assert existed == bool(self.model.get(key))
        self.model.pop(key, None)

    @rule(key=KEYS)
    def get(self, key: str) -> None:
        expected = self.expected(key)
        got = self.db.get(key)
        if not expected:
            assert got is None and key not in self.db
        else:
            assert canon(got) == expected[-1]

    @rule(key=KEYS)
    def history(self, key: str) -> None:
        expected = self.expected(key)
        if not expected:
            return
        assert history_values(self.db, key) == expected

    @rule()
    def reopen(self) -> None:
        self.db.close()
        self.db = synarrow.SynaDB(self.path, self.cfg)

    @precondition(lambda self: bool(self.model))
    @rule(full=st.booleans())
    def compact(self, full: bool) -> None:
        self.db.compact(full=full)

    @invariant()
    def keys_match(self) -> None:
        if hasattr(self, "db"):
            live = sorted(k for k, v in self.model.items() if v)
            assert self.db.keys() == live
            assert len(self.db) == len(live)


MACHINE_SETTINGS = settings(
    max_examples=80,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def test_database_against_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine, with a spy proving it reached LZ4 entries and split batches."""
    real_batch, real_lz4 = codec.encode_batch, codec.maybe_lz4

    def encode_batch(*args: Any, **kwargs: Any) -> Any:
        parts, flags = real_batch(*args, **kwargs)
        REACHED["batch_entries"] += 1
        REACHED["lz4"] += bool(flags & FLAG_LZ4)
        return parts, flags

    def maybe_lz4(*args: Any, **kwargs: Any) -> Any:
        stored, flags = real_lz4(*args, **kwargs)
        REACHED["lz4"] += bool(flags & FLAG_LZ4)
        return stored, flags

    monkeypatch.setattr(codec, "encode_batch", encode_batch)
    monkeypatch.setattr(codec, "maybe_lz4", maybe_lz4)
    monkeypatch.setattr(batches_mod, "entry_bytes", lambda _size: CHUNK_BYTES)
    REACHED.update(lz4=0, split=0, batch_entries=0)
    run_state_machine_as_test(DatabaseMachine, settings=MACHINE_SETTINGS)
    assert REACHED["lz4"] > 0, "no entry was stored LZ4-compressed"
    assert REACHED["split"] > 0, "no batch was split over several log entries"


class KeepLastMachine(DatabaseMachine):
    duplicates = "keep_last"


class KeepFirstMachine(DatabaseMachine):
    duplicates = "keep_first"


@pytest.mark.parametrize("machine", [KeepLastMachine, KeepFirstMachine])
def test_duplicates_policies_against_model(machine: type[DatabaseMachine]) -> None:
    """The same machine under each duplicates policy: of entries with equal timestamps only
    the last (first) written is read, by ``get``, ``get(at=)`` and every range."""
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=25,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        ),
    )


def test_nan_payloads_survive_every_path(tmp_path: Path) -> None:
    weird = struct.unpack("<d", struct.pack("<Q", 0x7FF8_0000_0000_BEEF))[0]
    with synarrow.SynaDB(tmp_path / "db", synarrow.DbConfig(sync_on_write=False)) as db:
        for v in [1.0, weird, -0.0, math.inf, weird]:
            db.append("k", v)
        db.append_batch("k", np.array([weird, -0.0]))
        expected = [canon(v) for v in [1.0, weird, -0.0, math.inf, weird, weird, -0.0]]
        assert history_values(db, "k") == expected
        db.compact()
        assert history_values(db, "k") == expected
    with synarrow.SynaDB(tmp_path / "db") as db:
        assert history_values(db, "k") == expected
