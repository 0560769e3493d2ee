"""Hypothesis tests of the key <-> label mapping, the fingerprints, and the store as a dict."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, precondition, rule

import synarrow
from synarrow.vector import VectorStore
from synarrow.vector_keys import KeyMap, fingerprints

# Keys are any non-empty str that encodes to UTF-8 (no lone surrogates).
KEYS = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=12)
FAST = synarrow.DbConfig(sync_on_write=False, auto_compact=False)


class KeyMapMachine(RuleBasedStateMachine):
    """KeyMap against a dict model: labels are unique, stable, never reused."""

    keys = Bundle("keys")

    def __init__(self) -> None:
        super().__init__()
        self.map = KeyMap()
        self.model: dict[str, int] = {}
        self.retired: set[int] = set()

    @rule(target=keys, batch=st.lists(KEYS, min_size=1, max_size=5, unique=True))
    def assign(self, batch: list[str]) -> str:
        before = dict(self.model)
        labels, replaced = self.map.assign(batch)
        for key, label in zip(batch, labels.tolist()):
            if key in before:
                assert label == before[key]
            else:
                assert label not in self.retired and label not in self.model.values()
            self.model[key] = label
        assert sorted(replaced.tolist()) == sorted(before[k] for k in batch if k in before)
        fps = np.arange(len(batch), dtype=np.uint64) * np.uint64(7919) + labels
        self.map.set_fingerprints(labels, fps)
        return batch[0]

    @rule(key=keys)
    def remove(self, key: str) -> None:
        label = self.map.remove(key)
        assert label == self.model.pop(key, None)
        if label is not None:
            self.retired.add(label)

    @rule(prefix=st.text(max_size=2))
    def prefix(self, prefix: str) -> None:
        keys, labels = self.map.prefix_range(prefix)
        expected = sorted(k for k in self.model if k.startswith(prefix))
        assert keys == expected
        assert labels.tolist() == [self.model[k] for k in expected]

    @precondition(lambda self: len(self.model) > 0)
    @rule()
    def round_trip(self) -> None:
        table = self.map.to_arrow()
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        read = pa.ipc.open_file(sink.getvalue()).read_all()
        again = KeyMap.from_arrow(read, self.map.next_label)
        assert {k: again.label(k) for k in again} == self.model
        assert again.next_label == self.map.next_label
        for key in self.model:
            assert again.fingerprint(key) == self.map.fingerprint(key)
        self.map = again

    @invariant()
    def consistent(self) -> None:
        assert len(self.map) == len(self.model)
        for key, label in self.model.items():
            assert self.map.label(key) == label and self.map.key(label) == key
        for label in self.retired:
            assert self.map.key(label) is None


TestKeyMap = KeyMapMachine.TestCase
TestKeyMap.settings = settings(max_examples=60, stateful_step_count=25, deadline=None)


@settings(max_examples=80, deadline=None)
@given(
    hnp.arrays(
        np.float32,
        st.tuples(st.integers(1, 6), st.integers(2, 40)),
        elements=st.floats(-1e6, 1e6, width=32),
    ),
    st.data(),
)
def test_fingerprints(matrix: np.ndarray, data: st.DataObject) -> None:
    fps = fingerprints(matrix)
    assert fps.dtype == np.uint64 and fps.shape == (len(matrix),)
    np.testing.assert_array_equal(fingerprints(matrix.copy()), fps)  # deterministic
    np.testing.assert_array_equal(fingerprints(matrix[::-1]), fps[::-1])  # row by row
    row = data.draw(st.integers(0, len(matrix) - 1))
    col = data.draw(st.integers(0, matrix.shape[1] - 1))
    changed = matrix.copy()
    changed[row, col] = np.nextafter(changed[row, col], np.float32(np.inf))
    assert fingerprints(changed)[row] != fps[row]


def test_fingerprints_are_stable_across_versions() -> None:
    # Saved checkpoints compare against these values; they must never change.
    m = np.arange(8, dtype=np.float32).reshape(2, 4)
    assert fingerprints(m).tolist() == [15694905861212209152, 14479613092696162304]


class StoreMachine(RuleBasedStateMachine):
    """A VectorStore against a dict model, through inserts, deletes and reopens."""

    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="synarrow-vec-"))
        self.store = VectorStore(self.dir / "v.db", 4, "euclidean", config=FAST)
        self.model: dict[str, np.ndarray] = {}

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(
        keys=st.lists(KEYS, min_size=1, max_size=4),
        seed=st.integers(0, 2**16),
    )
    def insert(self, keys: list[str], seed: int) -> None:
        rows = np.random.default_rng(seed).standard_normal((len(keys), 4)).astype(np.float32)
        if len(keys) == 1:
            self.store.insert(keys[0], rows[0])
        else:
            self.store.insert_batch(keys, rows)
        for key, row in zip(keys, rows):
            self.model[key] = row

    @precondition(lambda self: len(self.model) > 0)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.model)))
        assert self.store.delete(key)
        del self.model[key]

    @rule(key=KEYS)
    def delete_missing(self, key: str) -> None:
        assert self.store.delete(key) == (self.model.pop(key, None) is not None)

    @rule(crash=st.booleans())
    def reopen(self, crash: bool) -> None:
        if crash:  # the log is written, the index not saved
            self.store._db.close()
            self.store._closed = True
        else:
            self.store.close()
        self.store = VectorStore(self.dir / "v.db", config=FAST)

    @invariant()
    def matches_model(self) -> None:
        store = self.store
        assert len(store) == len(self.model)
        assert store.keys() == sorted(self.model)
        for key, row in self.model.items():
            np.testing.assert_array_equal(store.get(key), row)
            hit = store.search(row, k=1, exact=True)[0]
            # Another key may hold the same vector; the score tells.
            assert hit.score == 0.0 and (hit.key == key or hit.key in self.model)


TestStore = StoreMachine.TestCase
TestStore.settings = settings(
    max_examples=25,
    stateful_step_count=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
