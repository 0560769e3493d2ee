"""Crash tests for metadata: a process writing vectors with metadata is killed with SIGKILL.

Every batch whose ``insert_batch`` returned (the child prints an ack afterwards) must be
there after reopening with exactly its metadata; a batch in flight may be absent or present,
but never a vector with another vector's metadata. The store uses the default durable config
(``sync_on_write=True``).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from synarrow.vector import VectorStore

DIMS = 8
KEYS = 1200

# Generation g writes every key doc/i with the vector data(g)[i] and the record meta(g, i),
# batch after batch; the parent kills it at a random ack. Keys come back in later
# generations, so a stale record would show next to a new vector.
COMMON = textwrap.dedent(
    """
    import datetime as dt
    import numpy as np

    def data(g):
        return np.random.default_rng(1000 + g).standard_normal(({keys}, {dims})).astype(np.float32)

    def meta(g, i):
        if (g + i) % 7 == 0:
            return None
        row = {{"gen": g, "i": i, "tag": f"g{{g}}-{{i % 5}}", "w": g + i / 1000}}
        if i % 3:
            row["tags"] = [f"t{{i % 4}}", f"g{{g}}"]
        if i % 4 == 0:
            row["when"] = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc) + dt.timedelta(
                seconds=g * 10_000 + i
            )
        return row
    """
).format(keys=KEYS, dims=DIMS)

WRITER = COMMON + textwrap.dedent(
    """
    import sys, time, synarrow
    path, gen, batch, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    vectors = data(gen)
    store = synarrow.VectorStore(path, {dims})  # default config: fsync once per call
    print("opened", 0, flush=True)
    for lo in range(0, {keys}, batch):
        hi = min(lo + batch, {keys})
        store.insert_batch(
            [f"doc/{{i}}" for i in range(lo, hi)], vectors[lo:hi], [meta(gen, i) for i in range(lo, hi)]
        )
        print("acked", hi, flush=True)
        if mode == "stale" and lo == 0:
            store.flush()  # a checkpoint that the later batches leave behind
    if mode == "stale":
        store.delete("doc/5")
        store.insert("doc/6", vectors[6])  # re-inserted without metadata
        store.db.append("doc/7", vectors[7] + 1)  # rewritten behind the store's back
        store.db.sync()
        print("done", 0, flush=True)
        time.sleep(60)  # killed here: never closed, the checkpoint is stale
    """
).format(keys=KEYS, dims=DIMS)

_model: dict[str, Any] = {}
exec(COMMON, _model)  # the same data() and meta() as the child


def expected(g: int, i: int) -> dict[str, Any]:
    record = _model["meta"](g, i)
    return {} if record is None else record


def run_and_kill(path: Path, gen: int, batch: int, mode: str, after: int) -> int:
    """Run generation ``gen`` until it acked ``after`` rows (or finished, in ``stale``
    mode), SIGKILL it; returns the rows acknowledged."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(gen), str(batch), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    acked = [0]
    reached = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            what, n = line.split()
            if what == "acked":
                acked[0] = int(n)
                if mode == "kill" and acked[0] >= after:
                    reached.set()
            elif what == "done":
                reached.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    finished = reached.wait(timeout=60)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    reader.join(timeout=10)
    assert finished, proc.stderr.read() if proc.stderr else ""
    return acked[0]


def generation_of(vector: np.ndarray, i: int, gens: range) -> int | None:
    """Which generation wrote ``vector`` for key ``i`` (None: none of them)."""
    for g in gens:
        if np.array_equal(vector, _model["data"](g)[i]):
            return g
    return None


def check(path: Path, state: dict[int, int | None], gen: int, acked: int) -> dict[int, int | None]:
    """Reopen and check every key; ``state`` maps key -> the generation acked for it (None:
    never written). Returns the state seen now."""
    seen: dict[int, int | None] = {}
    with VectorStore(path) as store:
        assert set(store.keys()) <= {f"doc/{i}" for i in range(KEYS)}
        for i in range(KEYS):
            key = f"doc/{i}"
            found = store.get(key, with_metadata=True)
            if i < acked:
                want: int | None = gen
            else:
                want = state.get(i)
            if found is None:
                assert want is None, f"{key} was acknowledged but is missing"
                seen[i] = None
                continue
            vector, record = found
            g = generation_of(vector, i, range(gen + 1))
            assert g is not None, f"{key} holds a vector no generation wrote"
            if i < acked:
                assert g == gen, key
            else:
                assert g in (gen, state.get(i)), key  # in flight: old or new, nothing else
            assert record == expected(g, i), (key, g, record)
            seen[i] = g
        # where= sees the same records as get()
        hits = store.search(np.ones(DIMS), k=KEYS, where=f"gen = {gen}", exact=True)
        want_keys = {f"doc/{i}" for i, g in seen.items() if g == gen and expected(gen, i)}
        assert {h.key for h in hits} == want_keys
    return seen


@pytest.mark.parametrize("batch", [100, 450])
def test_kill_during_insert_batch_with_metadata(tmp_path: Path, batch: int) -> None:
    path = tmp_path / "vectors.db"
    state: dict[int, int | None] = {}
    rng = np.random.default_rng(batch)
    for gen in range(3):
        # kill somewhere between the first ack and just before the last batch
        after = int(rng.integers(batch, KEYS - batch))
        acked = run_and_kill(path, gen, batch, "kill", after)
        assert acked >= after
        state = check(path, state, gen, acked)
        assert all(state[i] == gen for i in range(acked))


def test_kill_with_stale_checkpoint(tmp_path: Path) -> None:
    """The child saves the index after its first batch, writes more batches, a delete, a
    re-insert without metadata and a write through store.db, then dies unclosed."""
    path = tmp_path / "vectors.db"
    state: dict[int, int | None] = {}
    for gen in range(2):
        acked = run_and_kill(path, gen, 300, "stale", KEYS)
        assert acked == KEYS
        with VectorStore(path, readonly=True) as store:
            assert "doc/5" not in store and store.get("doc/5", with_metadata=True) is None
            found6 = store.get("doc/6", with_metadata=True)
            assert found6 is not None and found6[1] == {}
            np.testing.assert_array_equal(found6[0], _model["data"](gen)[6])
            found7 = store.get("doc/7", with_metadata=True)
            assert found7 is not None and found7[1] == {}  # its record was for another vector
            np.testing.assert_array_equal(found7[0], _model["data"](gen)[7] + 1)
            for i in [0, 1, 2, 3, 4, 8, 299, 300, 301, 599, 900, KEYS - 1]:
                got = store.get(f"doc/{i}", with_metadata=True)
                assert got is not None
                np.testing.assert_array_equal(got[0], _model["data"](gen)[i])
                assert got[1] == expected(gen, i), i
        # a writable open catches the index up and saves it; the next reopen agrees
        for _ in range(2):
            with VectorStore(path) as store:
                assert len(store) == KEYS - 1
                for i in range(KEYS):
                    got = store.get(f"doc/{i}", with_metadata=True)
                    if i == 5:
                        assert got is None
                        continue
                    assert got is not None
                    want = {} if i in (6, 7) else expected(gen, i)
                    assert got[1] == want, i
        state = {i: gen for i in range(KEYS)}
    assert state
