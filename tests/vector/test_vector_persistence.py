"""The index beside the log: saved, loaded, caught up, rebuilt when damaged; recall."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import synarrow
from synarrow import ConfigError
from synarrow.vector import VectorStore

FAST = synarrow.DbConfig(sync_on_write=False, auto_compact=False)
Opener = Callable[..., VectorStore]


def index_dir(path: Path) -> Path:
    return path / "vector_index"


def state(path: Path) -> dict:
    return json.loads((index_dir(path) / "state.json").read_text())


def crash(store: VectorStore) -> None:
    """Drop a store the way a killed process would: the log is durable, no index save."""
    store._db.close()
    store._closed = True


def assert_all_found(store: VectorStore, keys: list[str], data: np.ndarray) -> None:
    assert sorted(store.keys()) == sorted(keys)
    for key, row in zip(keys, data):
        np.testing.assert_array_equal(store.get(key), row)
    hits = store.search_batch(data, k=1, exact=True)
    assert [h[0].key for h in hits] == keys


def no_catch_up(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(self: VectorStore) -> None:
        raise AssertionError("the saved index should have been used as is")

    monkeypatch.setattr(VectorStore, "_catch_up", fail)


def test_recall_against_brute_force(open_store: Opener, mixture: Callable) -> None:
    data = mixture(10_000, 64, seed=1)
    queries = mixture(200, 64, seed=2)
    store = open_store(64)
    store.insert_batch([str(i) for i in range(len(data))], data)
    norm = data / np.linalg.norm(data, axis=1, keepdims=True)
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    truth = np.argsort(-(qn @ norm.T), axis=1)[:, :10]
    hits = store.search_batch(queries, k=10)
    recall = np.mean(
        [len({int(h.key) for h in got} & set(t.tolist())) / 10 for got, t in zip(hits, truth)]
    )
    assert recall >= 0.95
    exact = store.search_batch(queries[:20], k=10, exact=True)
    assert [[int(h.key) for h in got] for got in exact] == truth[:20].tolist()


def test_clean_reopen_loads_the_saved_index(
    open_store: Opener, store_path: Path, mixture: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = mixture(500, 16)
    keys = [f"k{i}" for i in range(500)]
    store = open_store(16, "euclidean")
    store.insert_batch(keys, data)
    store.delete("k7")
    before = store.search(data[3], k=5)
    store.close()
    saved = state(store_path)
    assert saved["count"] == 499
    files = sorted(p.name for p in index_dir(store_path).iterdir())
    assert files == [
        "config.json",
        f"index-{saved['generation']}.usearch",
        f"keys-{saved['generation']}.arrow",
        "state.json",
    ]
    no_catch_up(monkeypatch)
    again = open_store()
    assert again.metric == "euclidean" and again.dimensions == 16
    assert again.search(data[3], k=5) == before
    assert "k7" not in again and len(again) == 499
    ro = VectorStore(store_path, readonly=True)  # beside the writer; maps the saved index
    assert ro.search(data[5], k=1)[0].key == "k5"
    ro.close()
    # labels are stable: a replaced key keeps its label across the reopen
    label = again._keys.label("k3")
    again.insert("k3", data[4])
    assert again._keys.label("k3") == label


def test_catch_up_after_a_crash(open_store: Opener, store_path: Path, mixture: Callable) -> None:
    data = mixture(600, 8, seed=4)
    keys = [f"k{i:03d}" for i in range(600)]
    store = open_store(8)
    store.insert_batch(keys[:400], data[:400])
    store.flush()
    saved = state(store_path)["position"]
    # After the save: new keys, a replaced one, deleted ones; then the process dies.
    store.insert_batch(keys[400:], data[400:])
    store.insert("k010", data[0])
    store.delete_batch(["k020", "k450"])
    crash(store)
    assert state(store_path)["position"] == saved
    live = [k for k in keys if k not in ("k020", "k450")]
    expected = data.copy()
    expected[10] = data[0]
    rows = np.array([expected[keys.index(k)] for k in live])

    again = open_store()
    assert sorted(again.keys()) == live
    for key, row in zip(live, rows):
        np.testing.assert_array_equal(again.get(key), row)
    assert again.search(data[20], k=1)[0].key != "k020"
    assert {h.key for h in again.search(data[0], k=2)} == {"k000", "k010"}
    assert state(store_path)["position"] > saved  # caught up and saved at once
    again.close()
    ro = VectorStore(store_path, readonly=True)
    assert sorted(ro.keys()) == live
    ro.close()


def test_readonly_catches_up_in_memory(
    open_store: Opener, store_path: Path, mixture: Callable
) -> None:
    data = mixture(50, 8)
    store = open_store(8)
    store.insert_batch([f"a{i}" for i in range(40)], data[:40])
    store.flush()
    store.insert_batch([f"b{i}" for i in range(10)], data[40:])  # not saved in the index
    ro = VectorStore(store_path, readonly=True)
    assert len(ro) == 50 and ro.search(data[45], k=1)[0].key == "b5"
    ro.close()
    crash(store)
    before = state(store_path)
    ro = VectorStore(store_path, readonly=True)
    assert len(ro) == 50
    ro.close()
    assert state(store_path) == before  # a reader writes nothing


def test_writes_through_db_are_picked_up_on_reopen(open_store: Opener, store_path: Path) -> None:
    store = open_store(4)
    store.insert("a", [1, 0, 0, 0])
    store.db.append("b", np.array([0, 1, 0, 0], np.float32))
    store.db.append("note", "text is not a vector")
    store.db.append("a", "a is now text")
    store.close()
    again = open_store()
    assert again.keys() == ["b"]
    assert again.search([0, 1, 0, 0], k=5)[0].key == "b"


def test_vectors_of_other_dimensions_in_the_log(
    open_store: Opener, store_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with synarrow.SynaDB(store_path) as db:
        db.append("odd", np.ones(3, np.float32))
    with pytest.raises(ConfigError, match="'odd' holds a vector of 3 dimensions"):
        VectorStore(store_path, 4)  # creating a store over data of other dimensions
    store = open_store(3)
    store.insert("ok", [1, 2, 3])
    store.db.append("stray", np.ones(5, np.float32))  # written around the store: skipped
    with caplog.at_level("WARNING", logger="synarrow.vector"):
        store.rebuild()
        store.close()
    assert "'stray' holds a vector of 5 dimensions" in caplog.text
    assert open_store().keys() == ["odd", "ok"]


@pytest.mark.parametrize(
    "damage",
    [
        "flip_index",
        "truncate_index",
        "delete_index",
        "delete_keys",
        "garbage_state",
        "delete_state",
        "mismatched_count",
    ],
)
def test_damaged_index_is_rebuilt(
    open_store: Opener,
    store_path: Path,
    mixture: Callable,
    damage: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    data = mixture(300, 8, seed=9)
    keys = [f"k{i}" for i in range(300)]
    store = open_store(8)
    store.insert_batch(keys, data)
    store.close()
    st = state(store_path)
    idx = index_dir(store_path) / st["index_file"]
    if damage == "flip_index":
        raw = bytearray(idx.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        idx.write_bytes(bytes(raw))
    elif damage == "truncate_index":
        idx.write_bytes(idx.read_bytes()[:100])
    elif damage == "delete_index":
        idx.unlink()
    elif damage == "delete_keys":
        (index_dir(store_path) / st["keys_file"]).unlink()
    elif damage == "garbage_state":
        (index_dir(store_path) / "state.json").write_text("{not json")
    elif damage == "delete_state":
        (index_dir(store_path) / "state.json").unlink()
    else:
        (index_dir(store_path) / "state.json").write_text(
            json.dumps({**st, "count": 5, "format": 1})
        )
    with caplog.at_level("WARNING", logger="synarrow.vector"):
        again = open_store()
    assert_all_found(again, keys, data)
    if damage != "delete_state":
        assert "rebuilding" in caplog.text
    assert state(store_path)["generation"] != st["generation"] or damage == "delete_state"


def test_leftover_files_are_removed(open_store: Opener, store_path: Path) -> None:
    store = open_store(4)
    store.insert("a", [1, 2, 3, 4])
    store.close()
    junk = [index_dir(store_path) / n for n in ("index-99.usearch", "keys-99.arrow.tmp")]
    for f in junk:
        f.write_bytes(b"half written")
    again = open_store()
    assert not any(f.exists() for f in junk)
    assert again.get("a") is not None


def test_rebuild_reclaims_deleted_slots(open_store: Opener, mixture: Callable) -> None:
    data = mixture(400, 8)
    store = open_store(8)
    keys = [f"k{i}" for i in range(400)]
    store.insert_batch(keys, data)
    store.delete_batch(keys[:300])
    store.rebuild()
    assert store._index.size == 100
    assert_all_found(store, keys[300:], data[300:])


def test_durable_store_syncs_once_per_call(
    store_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"sync": 0, "flush": 0}
    for name in calls:
        original = getattr(synarrow.SynaDB, name)

        def counted(self: synarrow.SynaDB, _name: str = name, _orig=original) -> None:
            calls[_name] += 1
            _orig(self)

        monkeypatch.setattr(synarrow.SynaDB, name, counted)
    with VectorStore(store_path, 4) as store:  # default config: sync_on_write=True
        assert store.db.config.sync_on_write is False  # the store syncs itself
        calls["sync"] = 0
        store.insert_batch([f"k{i}" for i in range(2000)], np.ones((2000, 4)))
        assert calls["sync"] == 1
        store.delete_batch(["k1", "k2"])
        assert calls["sync"] == 2
    with synarrow.SynaDB(store_path, readonly=True) as db:
        assert db.config.sync_on_write is True  # the stored setting is the user's
    with VectorStore(store_path, config=FAST) as store:
        calls["sync"] = calls["flush"] = 0
        store.insert("x", [1, 2, 3, 4])
        assert (calls["sync"], calls["flush"]) == (0, 1)


FULL_DISK = """
    import json, resource, signal, sys
    from pathlib import Path
    import numpy as np
    import synarrow
    from synarrow.vector import VectorStore

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG
    path = Path(sys.argv[1])
    # write_buffer_bytes=0: every append reaches write() at once, so the limit hits one.
    cfg = synarrow.DbConfig(sync_on_write=True, auto_compact=False, write_buffer_bytes=0)
    store = VectorStore(path, dimensions=4, config=cfg)
    log = path / "log" / "00000001.log"
    store.insert("a", np.eye(4)[0])
    store.insert("b", np.eye(4)[1])
    rows = np.eye(4)[[2, 3, 0, 1]] + 0.5
    # The batch writes its metadata-log entry, then one entry per vector (header + 1-byte
    # key + 4 float32): leave room for the first and two vectors, so it fails in between.
    from synarrow.log.format import ENTRY_HEADER_SIZE
    from synarrow.vector_keys import fingerprints
    from synarrow.vector_meta import LOG_KEY, encode_entry
    meta = ENTRY_HEADER_SIZE + len(LOG_KEY) + len(
        encode_entry(["a", "c", "d", "b"], fingerprints(rows.astype(np.float32)), None)
    )
    entry = ENTRY_HEADER_SIZE + 1 + 16
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    resource.setrlimit(resource.RLIMIT_FSIZE, (log.stat().st_size + meta + 2 * entry, hard))
    out = {}
    try:
        store.insert_batch(["a", "c", "d", "b"], rows)  # room for two entries only
        out["error"] = None
    except synarrow.StorageFullError as exc:
        out["error"] = str(exc)
    out["keys"] = sorted(store.keys())
    out["a"] = store.get("a").tolist()
    out["b"] = store.get("b").tolist()
    out["near_a"] = store.search(np.eye(4)[0], k=1)[0].key
    out["near_b"] = store.search(np.eye(4)[1], k=1)[0].key
    out["near_d"] = store.search(rows[2], k=1)[0].key
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
    store.close()
    print(json.dumps(out))
"""


def test_failed_log_write_leaves_index_matching_log(tmp_path: Path) -> None:
    """A real write failure (RLIMIT_FSIZE: EFBIG, as a full disk) in the middle of a batch."""
    pytest.importorskip("resource")
    path = tmp_path / "vectors.db"
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FULL_DISK), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["error"] is not None
    rows = np.eye(4)[[2, 3, 0, 1]] + 0.5
    # The batch is all or nothing: "a" and "c" fitted, "d" and "b" did not, so the log was
    # cut back to where the call began; the index says the same.
    assert out["keys"] == ["a", "b"]
    np.testing.assert_array_equal(out["a"], np.eye(4, dtype=np.float32)[0])
    np.testing.assert_array_equal(out["b"], np.eye(4, dtype=np.float32)[1])
    assert out["near_a"] == "a" and out["near_b"] == "b" and out["near_d"] != "d"
    with VectorStore(path) as again:
        assert sorted(again.keys()) == ["a", "b"]
        np.testing.assert_array_equal(again.get("a"), np.eye(4, dtype=np.float32)[0])
        assert again.get("c") is None
        assert again.search(rows[2], k=1)[0].key != "d"
