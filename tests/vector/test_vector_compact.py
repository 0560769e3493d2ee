"""``VectorStore.compact()`` and the automatic background compaction.

Compaction must change nothing a reader sees (vectors, metadata, ``len``, exact search),
give back the disk and index space of deleted and replaced vectors, leave snapshots
readable, run safely beside other threads, and survive a SIGKILL at any moment.
"""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import FAST

import synarrow
from synarrow.check import check_database
from synarrow.vector import VectorStore

BACKGROUND_THREAD = "synarrow-vector-compact-"


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _compaction_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(BACKGROUND_THREAD)]


def _meta(i: int) -> dict[str, Any] | None:
    if i % 5 == 0:
        return None
    return {"n": i, "tag": f"t{i % 7}"}


def _record(meta: dict[str, Any] | None) -> dict[str, Any]:
    return {} if meta is None else meta


def _brute_force(
    model: dict[str, tuple[np.ndarray, Any]], query: np.ndarray, k: int
) -> list[tuple[str, float]]:
    """The k nearest keys of the model by euclidean distance, best first."""
    keys = sorted(model)
    matrix = np.stack([model[key][0] for key in keys]).astype(np.float64)
    dists = np.linalg.norm(matrix - query.astype(np.float64), axis=1)
    order = np.argsort(dists, kind="stable")[:k]
    return [(keys[i], float(dists[i])) for i in order]


def _assert_matches_model(
    store: VectorStore, model: dict[str, tuple[np.ndarray, Any]], queries: np.ndarray, k: int = 5
) -> None:
    """Every key's vector and record equal the model; exact search agrees with numpy."""
    assert len(store) == len(model)
    assert set(store.keys()) == set(model)
    for key, (vector, meta) in model.items():
        found = store.get(key, with_metadata=True)
        assert found is not None, key
        np.testing.assert_array_equal(found[0], vector)
        assert found[1] == _record(meta), key
    for query in queries:
        want = _brute_force(model, query, k)
        got = store.search(query, k=k, exact=True)
        np.testing.assert_allclose([r.score for r in got], [d for _, d in want], rtol=1e-4)
        for r in got:  # every hit is scored with its own stored vector
            true = float(np.linalg.norm(model[r.key][0].astype(np.float64) - query))
            assert r.score == pytest.approx(true, rel=1e-4, abs=1e-5)


# -- results ------------------------------------------------------------------------------


def test_compact_changes_nothing_a_reader_sees(open_store: Callable[..., VectorStore]) -> None:
    rng = np.random.default_rng(3)
    n, dims = 3000, 16
    store = open_store(dims, "euclidean", auto_compact=False)
    data = rng.standard_normal((n, dims)).astype(np.float32)
    keys = [f"doc/{i}" for i in range(n)]
    store.insert_batch(keys, data, [_meta(i) for i in range(n)])
    model = {k: (data[i], _meta(i)) for i, k in enumerate(keys)}
    # 400 keys replaced (300 of them without metadata now), 600 deleted
    newer = rng.standard_normal((400, dims)).astype(np.float32)
    redo = keys[:400]
    store.insert_batch(redo, newer, [None] * 300 + [{"n": -i} for i in range(300, 400)])
    for i, key in enumerate(redo):
        model[key] = (newer[i], None if i < 300 else {"n": -i})
    gone = keys[1000:1600]
    assert store.delete_batch(gone) == 600
    for key in gone:
        del model[key]
    store.insert("doc/1000", data[1000] + 1, {"tag": "back"})  # deleted, then back
    model["doc/1000"] = (data[1000] + 1, {"tag": "back"})
    assert store.dead == 1000

    queries = rng.standard_normal((300, dims)).astype(np.float32)
    before = [
        [(r.key, r.score) for r in hits] for hits in store.search_batch(queries, k=10, exact=True)
    ]
    filtered = [r.key for r in store.search(queries[0], k=50, exact=True, where="tag = 't3'")]
    _assert_matches_model(store, model, queries[:20])

    out = store.compact()
    assert out["index_rebuilt"] is True
    assert out["dead_dropped"] == 1000
    assert out["versions_dropped"] == 400  # the replaced keys; doc/1000 restarted its history
    assert store.dead == 0
    after = [
        [(r.key, r.score) for r in hits] for hits in store.search_batch(queries, k=10, exact=True)
    ]
    assert after == before
    assert [
        r.key for r in store.search(queries[0], k=50, exact=True, where="tag = 't3'")
    ] == filtered
    _assert_matches_model(store, model, queries[:20])
    for key in redo + ["doc/1000", "doc/2999"]:
        history = store.db.get_history(key)
        assert len(history) == 1, key
        np.testing.assert_array_equal(history.column("value").to_pylist()[0], model[key][0])
    for key in gone[1:]:
        assert not store.db.exists(key)

    # approximate search finds the stored vectors themselves
    sample = sorted(model)[::50]
    hits = store.search_batch(np.stack([model[k][0] for k in sample]), k=1)
    assert sum(h[0].key == k for h, k in zip(hits, sample)) >= 0.97 * len(sample)

    # a second compaction has nothing left to do, and the reopened store agrees
    again = store.compact()
    assert again["index_rebuilt"] is False and again["dead_dropped"] == 0
    assert again["versions_dropped"] == 0
    store.close()
    reopened = open_store(auto_compact=False)
    assert reopened.dead == 0
    _assert_matches_model(reopened, model, queries[:20])


def test_compact_without_dead_entries_keeps_everything(
    open_store: Callable[..., VectorStore],
) -> None:
    store = open_store(4, "euclidean", auto_compact=False)
    store.insert_batch(["a", "b"], np.eye(4)[:2], [{"x": 1}, None])
    out = store.compact()
    assert out["index_rebuilt"] is False and out["dead_dropped"] == 0
    assert out["versions_dropped"] == 0
    assert store.metadata("a") == {"x": 1} and store.metadata("b") == {}
    assert [r.key for r in store.search(np.eye(4)[0], k=2, exact=True)] == ["a", "b"]


def test_snapshot_before_compact_still_reads_old_versions(
    open_store: Callable[..., VectorStore], store_path: Path
) -> None:
    rng = np.random.default_rng(5)
    old = rng.standard_normal((200, 8)).astype(np.float32)
    new = rng.standard_normal((100, 8)).astype(np.float32)
    keys = [f"k{i}" for i in range(200)]
    store = open_store(8, "euclidean", auto_compact=False)
    store.insert_batch(keys, old, [{"gen": 0}] * 200)
    store.insert_batch(keys[:100], new, [{"gen": 1}] * 100)
    store.delete_batch(keys[150:])
    store.db.snapshot("t")
    out = store.compact()
    assert out["versions_dropped"] == 100 and store.dead == 0
    assert len(store.db.get_history("k0")) == 1
    with VectorStore(store_path, snapshot="t") as tagged:
        assert len(tagged) == 150
        for i in range(150):
            want = new[i] if i < 100 else old[i]
            np.testing.assert_array_equal(tagged.get(keys[i]), want)
            assert tagged.metadata(keys[i]) == {"gen": int(i < 100)}
        assert tagged.get("k199") is None
        hit = tagged.search(new[3], k=1, exact=True)[0]
        assert hit.key == "k3" and hit.score == pytest.approx(0.0, abs=1e-5)
    with synarrow.SynaDB(store_path, snapshot="t") as db:
        values = db.get_history("k0").column("value").to_pylist()
        np.testing.assert_array_equal(np.array(values), np.stack([old[0], new[0]]))
        assert len(db.get_history("k120")) == 1
    store.db.drop_snapshot("t")
    store.compact()
    assert len(store) == 150


# -- bounded disk -------------------------------------------------------------------------


def test_compacted_store_takes_the_space_of_its_live_vectors(tmp_path: Path) -> None:
    n, dims, keep = 20_000, 64, 2_000
    data = np.random.default_rng(0).standard_normal((n, dims)).astype(np.float32)
    keys = [f"doc/{i}" for i in range(n)]
    small_path = tmp_path / "small.db"
    with VectorStore(small_path, dims, config=FAST, auto_compact=False) as small:
        small.insert_batch(keys[:keep], data[:keep])
        # Compacted too: against a never-compacted store of the same 2,000 vectors the
        # ratio would be about 1.5x (measured at 64 dims), because the columnar file and
        # its key index cost more per single-vector key than the log does.
        small.compact()
    small_bytes = _dir_bytes(small_path)

    big_path = tmp_path / "big.db"
    with VectorStore(big_path, dims, config=FAST, auto_compact=False) as big:
        big.insert_batch(keys, data)
        big.delete_batch(keys[keep:])
        big.compact()
        assert len(big) == keep
    assert _dir_bytes(big_path) <= 1.2 * small_bytes

    with VectorStore(big_path, config=FAST, auto_compact=False) as big:
        for r in range(5):
            big.insert_batch(keys[:keep], data[:keep] + r)
        assert big.dead == 5 * keep
        out = big.compact()
        assert out["versions_dropped"] == keep
        np.testing.assert_array_equal(big.get("doc/7"), data[7] + 4)
    assert _dir_bytes(big_path) <= 1.2 * small_bytes


# -- background compaction ----------------------------------------------------------------


def _filled(
    open_store: Callable[..., VectorStore], n: int, dims: int, **kwargs: Any
) -> tuple[VectorStore, dict[str, tuple[np.ndarray, Any]], np.ndarray]:
    data = np.random.default_rng(n).standard_normal((n, dims)).astype(np.float32)
    store = open_store(dims, "euclidean", **kwargs)
    keys = [f"doc/{i}" for i in range(n)]
    store.insert_batch(keys, data, [_meta(i) for i in range(n)])
    return store, {k: (data[i], _meta(i)) for i, k in enumerate(keys)}, data


def test_background_compaction_beside_writers_and_readers(
    open_store: Callable[..., VectorStore],
) -> None:
    n, dims = 20_000, 16
    store, model, _ = _filled(open_store, n, dims)
    assert _compaction_threads() == []
    doomed = [f"doc/{i}" for i in range(0, n, 2)][:10_000]
    assert store.delete_batch(doomed) == 10_000  # dead 10,000 >= live 10,000: it starts
    for key in doomed:
        del model[key]
    running = _compaction_threads()
    assert running or store.dead == 0  # started: still running, or already done
    overlapped = [bool(running and running[0].is_alive())]

    errors: list[BaseException] = []
    lock = threading.Lock()

    def writer(w: int) -> None:
        rng = np.random.default_rng(100 + w)
        try:
            for step in range(120):
                key = f"w{w}/{int(rng.integers(0, 40))}"
                if step % 4 == 3:
                    store.delete(key)
                    with lock:
                        model.pop(key, None)
                else:
                    vector = rng.standard_normal(dims).astype(np.float32)
                    meta = None if step % 3 == 0 else {"n": step, "tag": f"w{w}"}
                    store.insert(key, vector, meta)
                    with lock:
                        model[key] = (vector, meta)
                if step % 10 == 0:
                    overlapped.append(any(t.is_alive() for t in running))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    def reader() -> None:
        rng = np.random.default_rng(7)
        try:
            for _ in range(100):
                hits = store.search(rng.standard_normal(dims), k=5, exact=True)
                assert len(hits) == 5
                assert all(a.score <= b.score for a, b in zip(hits, hits[1:]))
                assert store.get("doc/1") is not None  # an odd key, never touched
        except BaseException as exc:
            errors.append(exc)

    # writers own their keys (w0/.., w1/..) and one range of the original keys each
    def rewriter() -> None:
        rng = np.random.default_rng(11)
        try:
            for i in range(1, 400, 2):
                key = f"doc/{i}"
                vector = rng.standard_normal(dims).astype(np.float32)
                store.insert(key, vector)  # without metadata: the old record must go
                with lock:
                    model[key] = (vector, None)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(2)]
    threads += [threading.Thread(target=reader), threading.Thread(target=rewriter)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for t in running:
        t.join()
    queries = np.random.default_rng(9).standard_normal((40, dims)).astype(np.float32)
    _assert_matches_model(store, model, queries)
    assert store.dead < 10_000  # the 10,000 dead entries left with the old index
    store.close()
    reopened = open_store(auto_compact=False)
    _assert_matches_model(reopened, model, queries)
    reopened.compact()
    _assert_matches_model(reopened, model, queries)
    # Not asserted (it depends on scheduling), but recorded for the report: whether the
    # concurrent operations really ran while the compaction did.
    print("operations overlapped the background compaction:", any(overlapped))


def test_no_background_compaction_when_turned_off(open_store: Callable[..., VectorStore]) -> None:
    store, model, _ = _filled(open_store, 3000, 8, auto_compact=False)
    doomed = sorted(model)[:2500]
    store.delete_batch(doomed)
    store.insert("extra", np.ones(8))
    assert _compaction_threads() == []  # a start would happen inside the calls above
    assert store.dead == 2500
    for key in doomed:
        del model[key]
    model["extra"] = (np.ones(8, np.float32), None)
    _assert_matches_model(store, model, np.ones((3, 8), np.float32))
    assert store.compact()["dead_dropped"] == 2500


def test_below_the_threshold_no_background_compaction(
    open_store: Callable[..., VectorStore],
) -> None:
    store, _, _ = _filled(open_store, 1500, 8)
    store.delete_batch([f"doc/{i}" for i in range(900)])  # dead 900 < 1000
    assert _compaction_threads() == [] and store.dead == 900
    store.delete_batch([f"doc/{i}" for i in range(900, 1000)])  # dead 1000 >= live 500
    for t in _compaction_threads():
        t.join()
    assert store.dead == 0


def test_close_during_background_compaction(
    open_store: Callable[..., VectorStore], store_path: Path
) -> None:
    n, dims = 20_000, 16
    store, model, _ = _filled(open_store, n, dims)
    doomed = [f"doc/{i}" for i in range(n // 2, n)]
    store.delete_batch(doomed)
    for key in doomed:
        del model[key]
    store.close()  # stops the compaction wherever it is
    assert not any(t.is_alive() for t in _compaction_threads())
    queries = np.random.default_rng(2).standard_normal((30, dims)).astype(np.float32)
    with VectorStore(store_path, config=FAST, auto_compact=False) as again:
        _assert_matches_model(again, model, queries)
        again.compact()
        assert again.dead == 0
        _assert_matches_model(again, model, queries)
    assert check_database(store_path).ok


# -- crashes ------------------------------------------------------------------------------

CRASH_ROWS, CRASH_DIMS = 20_000, 16

COMPACTOR = textwrap.dedent(
    """
    import sys, time
    from synarrow.vector import VectorStore
    path, mode = sys.argv[1], sys.argv[2]
    store = VectorStore(path, auto_compact=(mode == "background"))
    if mode == "explicit":
        print("start", flush=True)
        store.compact()
        print("done", flush=True)
    else:
        store.delete_batch([f"doc/{i}" for i in range(0, 20000, 2)])  # starts it
        print("start", flush=True)
    time.sleep(60)  # killed here at the latest
    """
)


def _crash_base(path: Path) -> dict[str, tuple[np.ndarray, Any]]:
    """A store with replaced, re-inserted and deleted vectors (closed); returns its model."""
    rng = np.random.default_rng(42)
    data = rng.standard_normal((CRASH_ROWS, CRASH_DIMS)).astype(np.float32)
    keys = [f"doc/{i}" for i in range(CRASH_ROWS)]
    with VectorStore(path, CRASH_DIMS, "euclidean", config=FAST, auto_compact=False) as store:
        store.insert_batch(keys, data, [_meta(i) for i in range(CRASH_ROWS)])
        model = {k: (data[i], _meta(i)) for i, k in enumerate(keys)}
        newer = rng.standard_normal((3000, CRASH_DIMS)).astype(np.float32)
        store.insert_batch(keys[1:6001:2], newer, [None] * 1500 + [{"n": -1}] * 1500)
        for j, key in enumerate(keys[1:6001:2]):
            model[key] = (newer[j], None if j < 1500 else {"n": -1})
        store.delete_batch(keys[7001:9001:2])
        for key in keys[7001:9001:2]:
            del model[key]
    return model


def _kill_after(path: Path, mode: str, delay: float) -> bool:
    """Run the child on ``path``; SIGKILL it ``delay`` s after it printed ``start``.
    Returns whether it had finished the compaction (explicit mode) before the kill."""
    proc = subprocess.Popen(
        [sys.executable, "-c", COMPACTOR, str(path), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    started, finished = threading.Event(), threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.strip())
            (started if line.startswith("start") else finished).set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    ok = started.wait(timeout=60)
    if ok:
        time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    reader.join(timeout=10)
    assert ok, proc.stderr.read() if proc.stderr else lines
    assert proc.returncode == -signal.SIGKILL
    return finished.is_set()


def _check_after_crash(
    path: Path, model: dict[str, tuple[np.ndarray, Any]], *, compact_again: bool = True
) -> None:
    queries = np.random.default_rng(1).standard_normal((10, CRASH_DIMS)).astype(np.float32)
    with VectorStore(path, auto_compact=False) as store:
        _assert_matches_model(store, model, queries)
        hits = store.search(model["doc/3"][0], k=1)
        assert hits[0].key == "doc/3"
    report = check_database(path)
    assert report.ok, report.damage
    if not compact_again:
        return
    with VectorStore(path, auto_compact=False) as store:  # the next open agrees, and compacts
        assert len(store) == len(model)
        store.compact()
        assert store.dead == 0
        _assert_matches_model(store, model, queries[:3])


@pytest.fixture(scope="module")
def crash_base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], float]:
    """The base store, its model, and how long an in-process compaction of a copy took
    (only to spread the kills over the compaction)."""
    base = tmp_path_factory.mktemp("crash") / "base.db"
    model = _crash_base(base)
    probe = base.with_name("probe.db")
    shutil.copytree(base, probe)
    began = time.perf_counter()
    with VectorStore(probe, auto_compact=False) as store:
        store.compact()
    took = time.perf_counter() - began
    _check_after_crash(probe, model)  # the uninterrupted compaction keeps everything too
    return base, model, took


@pytest.mark.parametrize("kill", range(5))
def test_kill_during_explicit_compact(
    tmp_path: Path, crash_base: tuple[Path, dict[str, Any], float], kill: int
) -> None:
    base, model, took = crash_base
    path = tmp_path / "v.db"
    shutil.copytree(base, path)
    delay = random.Random(kill).uniform(0.0, 1.1 * took)
    _kill_after(path, "explicit", delay)
    _check_after_crash(path, model, compact_again=kill == 0)


@pytest.mark.parametrize("kill", range(3))
def test_kill_during_background_compaction(
    tmp_path: Path, crash_base: tuple[Path, dict[str, Any], float], kill: int
) -> None:
    base, model, took = crash_base
    path = tmp_path / "v.db"
    shutil.copytree(base, path)
    model = {k: v for k, v in model.items() if int(k.split("/")[1]) % 2}  # the child deletes
    delay = random.Random(100 + kill).uniform(0.0, 0.8 * took)
    _kill_after(path, "background", delay)
    _check_after_crash(path, model, compact_again=kill == 0)


def test_a_failed_background_compaction_is_reported_once_by_compact(tmp_path: Path) -> None:
    """The background thread's failure is not lost: the next compact() raises it, once."""
    store = VectorStore(tmp_path / "bg.db", 8, config=synarrow.DbConfig(sync_on_write=False))
    try:
        rng = np.random.default_rng(5)
        keys = [f"k{i}" for i in range(2000)]
        store.insert_batch(keys, rng.standard_normal((2000, 8)).astype(np.float32))

        def broken(cancel: object) -> int:
            raise OSError("disk on fire")

        store._drop_old_versions = broken  # type: ignore[method-assign]
        store.delete_batch(keys[:1500])  # dead 1500 >= live 500: the background run starts
        with pytest.raises(synarrow.CompactionError, match="disk on fire"):
            store.compact()
        del store._drop_old_versions  # the real method again
        result = store.compact()
        assert store.dead == 0 and len(store) == 500
        assert result["versions_dropped"] == 0
    finally:
        store.close()


def test_insert_times_survive_compact_and_a_later_catch_up(tmp_path: Path) -> None:
    """The consolidated metadata entry carries each row's own insert time: a catch-up after
    compact() (here: a write through store.db, then flush) must not move insert times to
    the time of the compaction."""
    store = VectorStore(tmp_path / "t.db", 4, auto_compact=False)
    try:
        store.insert_batch(["a", "b"], np.eye(4, dtype=np.float32)[:2], [{"x": 1}, None])
        store.insert("a", np.eye(4, dtype=np.float32)[0], {"x": 2})  # same vector, new record
        store.delete("b")
        before = store.to_arrow(with_metadata=True).to_pylist()
        time.sleep(0.01)
        store.compact()
        store.db.put_float("other", 1.0)
        store.flush()  # the log moved on: catch-up and fold
        after = store.to_arrow(with_metadata=True).to_pylist()
        assert after == before
        at = before[0]["inserted_at"]
        assert store.search(np.eye(4)[0], k=1, end=at) == []  # [start, end) leaves it out
        assert store.search(np.eye(4)[0], k=1, start=at)[0].key == "a"
    finally:
        store.close()
    with VectorStore(tmp_path / "t.db") as again:
        assert again.to_arrow(with_metadata=True).to_pylist() == before
