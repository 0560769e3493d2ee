"""Review of issue 20 (key states made on first use, compactions that carry the index rows of
unchanged keys) through the public API, crafted index files and injected failures. Tests whose
docstring says "holds" guard behaviour checked to be right; the others are findings and fail
until their cause is fixed."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import synarrow
from synarrow.columnar import compact as compact_mod
from tests._support import run_and_kill

CFG = synarrow.DbConfig(sync_on_write=False, auto_compact=False)


def _open(path: Path, **kw) -> synarrow.SynaDB:
    return synarrow.SynaDB(path, CFG, **kw)


def _during_write(monkeypatch: pytest.MonkeyPatch, action) -> list:
    """Run ``action()`` on another thread while a compaction writes its generation (the
    window between the snapshot of the keys and the install of the new slices), as a reader
    thread of a real program would; returns what it gave."""
    real = compact_mod.write_generation
    seen: list = []

    def slow(*args, **kwargs):
        t = threading.Thread(target=lambda: seen.append(action()))
        t.start()
        t.join()
        return real(*args, **kwargs)

    monkeypatch.setattr(compact_mod, "write_generation", slow)
    return seen


def test_deleted_key_read_during_compaction_comes_back(tmp_path, monkeypatch):
    """A key deleted since the last compaction (never loaded again) must stay deleted. The
    compaction drops its state from ``states`` when it snapshots the keys (no tail: nothing to
    fold), but the committed index (``columnar.keys``) still lists it until the new generation
    is installed; a ``get`` on another thread in that window makes a fresh state from the old
    index, so the deleted value is read back, and that state stays in ``states`` after the
    compaction: the key is live again in this handle (``get``, ``exists``, ``keys()``, ``len``)
    until it is reopened. Expected: ``None`` during and after the compaction."""
    p = tmp_path / "d.db"
    with _open(p) as db:
        db.append("gone", 1.0)
        db.append("kept", 2.0)
        db.compact()
    with _open(p) as db:
        assert db.delete("gone")
        seen = _during_write(monkeypatch, lambda: db.get("gone"))
        db.compact()
        assert seen == [None]
        assert db.get("gone") is None
        assert "gone" not in db
        assert sorted(db.keys()) == ["kept"]
        assert len(db) == 1


def test_deleted_key_after_failed_compaction_comes_back(tmp_path, monkeypatch):
    """A compaction that fails must leave the handle as it was. The snapshot step removes the
    state of a key deleted since the last compaction before the new generation is written; if
    writing it fails (disk full, I/O error) the old index is still committed and still lists
    the key, so the next ``get`` makes a state from it and the deleted key is live again in
    this handle (a reopen replays the tombstone and is right). Expected: still deleted."""
    p = tmp_path / "d.db"
    with _open(p) as db:
        db.append("gone", 1.0)
        db.append("kept", 2.0)
        db.compact()
    with _open(p) as db:
        assert db.delete("gone")

        def fail(*args, **kwargs):
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(compact_mod, "write_generation", fail)
        with pytest.raises(OSError):
            db.compact()
        monkeypatch.undo()
        assert db.get("gone") is None
        assert "gone" not in db
        assert len(db) == 1
    with _open(p) as db:
        assert db.get("gone") is None


def test_deleted_key_read_during_compaction_is_written_back_to_disk(tmp_path, monkeypatch):
    """The same window as above made durable: a deleted key read by another thread while a
    compaction writes is loaded from the old index and kept; the next full compaction (or
    any compaction under retention rules) snapshots every loaded state, so the deleted
    history is written into the new generation, and from then on the key is live again on
    disk, after a reopen too (its tombstone was folded and removed with the log).
    Expected: a deleted key never comes back."""
    p = tmp_path / "d.db"
    with _open(p) as db:
        db.append("gone", 1.0)
        db.append("kept", 2.0)
        db.compact()
    with _open(p) as db:
        assert db.delete("gone")
        _during_write(monkeypatch, lambda: db.get("gone"))
        db.compact()
        monkeypatch.undo()
        db.compact(full=True)
    with _open(p) as db:
        assert db.get("gone") is None
        assert sorted(db.keys()) == ["kept"]


def test_unloaded_keys_read_during_compaction_holds(tmp_path, monkeypatch):
    """Holds: a key never loaded, read for the first time while a compaction writes (and
    moves it out of a dying file), gives its history during and after the compaction."""
    p = tmp_path / "m.db"
    with _open(p) as db:
        for i in range(50):
            db.append_batch(f"k{i:02d}", np.arange(10, dtype=np.float64) + i)
        db.compact()
    with _open(p) as db:
        for i in range(40):  # most of the file dead: the remaining keys are moved
            db.delete(f"k{i:02d}")
        seen = _during_write(monkeypatch, lambda: db.get_history_floats("k45").tolist())
        db.compact()
        assert seen == [list(np.arange(10, dtype=np.float64) + 45)]
        for i in range(40, 50):
            assert db.get_history_floats(f"k{i:02d}").tolist() == list(
                np.arange(10, dtype=np.float64) + i
            )
        assert len(db) == 10
    with _open(p) as db:
        assert sorted(db.keys()) == [f"k{i:02d}" for i in range(40, 50)]


def test_deleted_then_readded_key_gets_its_old_history_on_disk(tmp_path, monkeypatch):
    """Durable damage from the same window, without a full compaction: a key deleted since
    the last compaction and read by another thread while the next one writes is loaded from
    the old index with its deleted slices; appended to again, it has a log tail, so the
    following compaction snapshots it with those slices as its base and writes the deleted
    history in front of the new entries; after a reopen ``get_history`` gives the deleted
    entries back. Expected: only the entries appended after the delete."""
    p = tmp_path / "d.db"
    with _open(p) as db:
        db.append_batch("k", np.arange(5, dtype=np.float64))
        db.append("other", 1.0)
        db.compact()
    with _open(p) as db:
        assert db.delete("k")
        _during_write(monkeypatch, lambda: db.get("k"))
        db.compact()
        monkeypatch.undo()
        db.append("k", 99.0)
        db.compact()
    with _open(p) as db:
        assert db.get_history_floats("k").tolist() == [99.0]


def test_auto_compaction_with_writers_and_a_reader_keeps_deletes(tmp_path):
    """The windows above hit by ordinary use, no injection: three threads append to and
    delete their own keys while a fourth reads (``get``, ``in``, ``len``) and automatic
    compactions run on a small threshold. Deleted keys are read back live by their own
    writer's ``get``, ``keys()`` lists ghosts, and after a reopen some histories hold entries
    deleted before later appends (written to disk by a later compaction). Expected: every
    ``get`` the latest value of the writer's model, ``keys()`` / histories equal to the
    model, live and after a reopen."""
    import random

    cfg = synarrow.DbConfig(sync_on_write=False, auto_compact=True, compact_threshold_bytes=4096)
    p = tmp_path / "t.db"
    with _open(p) as db:
        for i in range(300):
            db.append_batch(f"k{i:03d}", np.arange(5, dtype=np.float64) + i)
        db.compact()
    models: list[dict[str, list[float]]] = [{} for _ in range(3)]
    wrong: list[tuple] = []
    db = synarrow.SynaDB(p, cfg)

    def writer(w: int) -> None:
        rnd, model = random.Random(w), models[w]
        keys = [f"k{i:03d}" for i in range(w * 100, w * 100 + 100)]
        for k in keys:
            model[k] = [float(x) + int(k[1:]) for x in range(5)]
        for step in range(3000):
            k, r = rnd.choice(keys), rnd.random()
            if r < 0.6:
                db.append(k, float(step))
                model.setdefault(k, []).append(float(step))
            elif r < 0.75:
                db.delete(k)
                model.pop(k, None)
            elif db.get(k) != model.get(k, [None])[-1]:
                wrong.append((k, step))

    def reader() -> None:
        rnd = random.Random(9)
        for _ in range(3000):
            k = f"k{rnd.randrange(300):03d}"
            db.get(k)
            _ = k in db
            len(db)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(3)]
    threads.append(threading.Thread(target=reader))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    db.wait_for_compaction()
    model = {k: v for m in models for k, v in m.items()}
    try:
        assert wrong == []
        assert sorted(db.keys()) == sorted(model)
        assert len(db) == len(model)
    finally:
        db.close()
    with _open(p) as db:
        assert sorted(db.keys()) == sorted(model)
        assert {k: db.get_history_floats(k).tolist() for k in model} == model


def test_append_during_compaction_to_a_deleted_key_revives_its_history(tmp_path, monkeypatch):
    """A writer, not only a reader, opens the window: keys deleted since the last compaction
    have their states dropped at the snapshot, and an ``append`` to one of them on another
    thread while the generation is written makes its state from the old index, with the
    deleted slices as its base (in a file this very compaction removes: the reads go on only
    because the old mapping is still open). ``get_history`` then gives the deleted entries
    before the new one, and the next compaction writes them to disk, so a reopen does too.
    Expected: only the entry appended after the delete, live and after a reopen."""
    p = tmp_path / "d.db"
    with _open(p) as db:
        for i in range(10):
            db.append_batch(f"k{i}", np.arange(5, dtype=np.float64) + 10 * i)
        db.compact()
    with _open(p) as db:
        for i in range(10):
            db.delete(f"k{i}")
        db.append("z", 1.0)
        _during_write(monkeypatch, lambda: db.append("k3", 99.0))
        db.compact()
        monkeypatch.undo()
        assert db.get_history_floats("k3").tolist() == [99.0]
        db.compact()
    with _open(p) as db:
        assert db.get_history_floats("k3").tolist() == [99.0]


_CRASH_WRITER = """
import sys
import synarrow
cfg = synarrow.DbConfig(sync_on_write=True, auto_compact=False)
with synarrow.SynaDB(sys.argv[1], cfg) as db:
    for i in range(10**6):
        k = f"k{i % 60:02d}"
        if i % 3 == 0:
            db.delete(k)
        else:
            db.append(k, float(i))
        if i % 5 == 4:
            db.compact()
        print(i, flush=True)
"""


def _crash_model(ops: int) -> dict[str, list[float]]:
    model = {f"k{i:02d}": [float(-i)] for i in range(60)}
    for i in range(ops):
        k = f"k{i % 60:02d}"
        if i % 3 == 0:
            model.pop(k, None)
        else:
            model.setdefault(k, []).append(float(i))
    return model


@pytest.mark.parametrize("seconds", [0.05, 0.2, 0.6])
def test_sigkill_during_carried_compactions_holds(tmp_path, monkeypatch, seconds):
    """Holds: a writer with ``sync_on_write=True`` that deletes, re-adds and compacts (each
    compaction carrying most keys, moving some) is SIGKILLed at a random moment; the
    reopened database holds every acknowledged operation (and perhaps the one after), with
    ``keys()``, ``len`` and histories equal to the model, and a later compaction keeps it."""
    p = tmp_path / "c.db"
    with _open(p) as db:
        for i in range(60):
            db.append(f"k{i:02d}", float(-i))
        db.compact()
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))  # the synarrow under test
    acked = run_and_kill(_CRASH_WRITER, [str(p)], seconds)
    last = acked[-1] + 1
    with _open(p, readonly=True) as db:
        got = {k: db.get_history_floats(k).tolist() for k in db.keys()}
        assert len(db) == len(got)
    assert got in (_crash_model(last), _crash_model(last + 1))
    with _open(p) as db:
        db.compact()
        db.compact(full=True)
    with _open(p) as db:
        assert {k: db.get_history_floats(k).tolist() for k in db.keys()} == got


_ALPHABET = ["a", "b", "A", "é", "ß", "\u00ff", "z", "~", "/", " ", "\x7f", "\u4e2d", "\uffff"]
_ALPHABET.append("\U0001f600")  # above the BMP: Python str order = UTF-8 byte order still


def test_model_of_keys_len_get_with_non_ascii_and_long_keys_holds(tmp_path):
    """Holds: random appends, deletes, re-adds, compactions (incremental and full) and
    reopens over non-ASCII keys (two-, three- and four-byte UTF-8, ``\\x7f``, ``\\uffff``)
    and 300-character keys: ``get``, ``in``, ``keys()``, ``keys(pattern)``, ``len`` and
    histories equal a model throughout (the index binary search over UTF-8 bytes agrees with
    the order the index is written in)."""
    import random

    rnd = random.Random(1)

    def name() -> str:
        n = rnd.choice([1, 2, 3, 5, 300])
        return "".join(rnd.choice(_ALPHABET) for _ in range(n))

    keys = sorted({name() for _ in range(300)})
    model: dict[str, list[float]] = {}
    db = _open(tmp_path / "m.db")
    try:
        for step in range(600):
            op, k = rnd.random(), rnd.choice(keys)
            if op < 0.5:
                db.append(k, float(step))
                model.setdefault(k, []).append(float(step))
            elif op < 0.65:
                db.delete(k)
                model.pop(k, None)
            elif op < 0.7:
                db.compact()
            elif op < 0.72:
                db.compact(full=True)
            elif op < 0.75:
                db.close()
                db = _open(tmp_path / "m.db")
            elif op < 0.9:
                assert db.get(k) == model.get(k, [None])[-1]
                assert (k in db) == (k in model)
            else:
                assert sorted(db.keys()) == sorted(model)
                assert sorted(db.keys("a*")) == sorted(m for m in model if m.startswith("a"))
                assert len(db) == len(model)
        for k in keys:
            if k in model:
                assert db.get_history_floats(k).tolist() == model[k]
            else:
                assert db.get(k) is None
    finally:
        db.close()


def test_many_small_compactions_keep_files_bounded_and_data_holds(tmp_path):
    """Holds: 300 little compactions (one append each) after a big one: the number of data
    files stays bounded (small files merge with each other, not into the big file), the big
    file is never rewritten, and every history is intact."""
    p = tmp_path / "s.db"
    col = p / "columnar"

    def data_files() -> list[str]:
        return [f for f in os.listdir(col) if f.startswith("g") and "index" not in f]

    with _open(p) as db:
        for i in range(1000):
            db.append_batch(f"big{i:04d}", np.arange(100, dtype=np.float64))
        db.compact()
        (big,) = data_files()
        most = 0
        for j in range(300):
            db.append(f"s{j % 50}", float(j))
            db.compact()
            most = max(most, len(data_files()))
        assert most <= 12
        assert big in data_files()
        for j in range(50):
            assert db.get_history_floats(f"s{j}").tolist() == [float(x) for x in range(j, 300, 50)]
        assert db.get_history_floats("big0999").tolist() == list(np.arange(100.0))
        assert len(db) == 1050


def test_snapshot_pins_files_a_carried_compaction_moves_holds(tmp_path):
    """Holds: a snapshot tag taken before most keys are deleted keeps its files while
    compactions move the survivors out of the dying file; the snapshot handle reads every
    key of the moment it was taken; dropping it frees the file and the live data stays."""
    p = tmp_path / "s.db"
    with _open(p) as db:
        for i in range(100):
            db.append_batch(f"k{i:03d}", np.arange(20.0) + i)
        db.compact()
        db.snapshot("t1")
        for i in range(80):
            db.delete(f"k{i:03d}")
        db.append("z", 5.0)
        db.compact()
        db.compact()
        with synarrow.SynaDB(p, CFG, snapshot="t1", readonly=True) as s:
            assert len(s) == 100
            for i in range(100):
                assert s.get_history_floats(f"k{i:03d}").tolist() == list(np.arange(20.0) + i)
        db.drop_snapshot("t1")
        db.append("z", 6.0)
        db.compact()
        assert "g000001-000.arrow" not in os.listdir(p / "columnar")
        assert len(db) == 21
        for i in range(80, 100):
            assert db.get_history_floats(f"k{i:03d}").tolist() == list(np.arange(20.0) + i)


def test_format1_database_opens_and_compacts_incrementally_holds(tmp_path):
    """Holds: the format-1 fixture (no checksums, no timestamps in the index) reads the same
    before and after an incremental compaction (which rewrites it: the index has no
    timestamps) and after one more, with ``verify="open"``; ``len`` counts the new key."""
    import shutil

    p = tmp_path / "f1.db"
    shutil.copytree(Path(__file__).resolve().parents[1] / "columnar/data/format1.db", p)
    with _open(p, readonly=True) as db:
        before = {k: db.get_history(k).to_pylist() for k in db.keys()}
    assert before
    with _open(p) as db:
        db.append("newkey", 1.0)
        db.compact()
        db.append("newkey2", 1.0)
        db.compact()
        assert len(db) == len(before) + 2
    with synarrow.SynaDB(p, CFG.replace(verify="open")) as db:
        assert {k: db.get_history(k).to_pylist() for k in before} == before
        assert len(db) == len(before) + 2


def test_readonly_handle_and_unloaded_key_ops_across_writer_compactions_holds(tmp_path):
    """Holds: a readonly handle opened before a writer deletes most keys and compacts twice
    (removing the files it was opened on) still reads keys it never used; on the writer,
    ``get(at=)`` and ``delete_range`` on keys never loaded are right, survive a compaction,
    and retention set afterwards expires carried keys (``len``, ``keys()``, after reopen)."""
    p = tmp_path / "d.db"
    t0 = 10**15
    ts = t0 + np.arange(5) * 1000
    with _open(p) as db:
        for i in range(100):
            db.append_batch(f"k{i:03d}", np.arange(5.0) + 10 * i, timestamps=ts)
        db.compact()
    ro = _open(p, readonly=True)
    try:
        with _open(p) as db:
            for i in range(90):
                db.delete(f"k{i:03d}")
            db.compact()
            db.compact()
            assert "g000001-000.arrow" not in os.listdir(p / "columnar")
        assert ro.get_history_floats("k050").tolist() == [500.0, 501.0, 502.0, 503.0, 504.0]
        assert len(ro) == 100
    finally:
        ro.close()
    with _open(p) as db:
        assert db.get("k095", at=t0 + 2500) == 952.0
        assert db.delete_range("k096", t0 + 1000, t0 + 3000) == 2
        db.compact()
    with _open(p) as db:
        assert db.get_history_floats("k096").tolist() == [960.0, 963.0, 964.0]
        assert len(db) == 10
        db.set_retention("k09*", 1)
        assert len(db) == 0 and db.keys() == []
        db.compact()
    with _open(p) as db:
        assert len(db) == 0 and db.keys() == []


def _crafted_source(path: Path) -> Path:
    with _open(path) as db:
        db.append_batch("a", np.arange(10.0))
        db.append_batch("b", np.arange(5.0) + 100)
        db.append("c", "txt")
        db.compact()
        db.append_batch("a", np.arange(3.0) + 50)
        db.compact()
    return path


def _set(column: str, value):
    return lambda c: c[column].__setitem__(0, value)


_CRAFTED = {
    "file_out_of_range": _set("file", 99),
    "file_negative": _set("file", -1),
    "count_too_big": _set("count", 1000),
    "count_zero": _set("count", 0),
    "count_negative": _set("count", -3),
    "row_past_batch": _set("row", 7),
    "row_negative": _set("row", -1),
    "batch_negative": _set("batch", -1),
    "atom_of_another_type": lambda c: c["atom"].__setitem__(0, c["atom"][-1]),
    "unknown_last_atom": _set("last_atom", 77),
    "timestamps_moved": lambda c: (
        c["first_ts"].__setitem__(0, c["last_ts"][0] + 10**9),
        c["last_ts"].__setitem__(0, c["last_ts"][0] + 10**9),
    ),
    "empty_key": _set("key", ""),
    "keys_out_of_order": lambda c: c["key"].__setitem__(0, "zz"),
}


@pytest.mark.parametrize("case", sorted(_CRAFTED))
def test_crafted_index_rows_give_corruption_error_holds(tmp_path, case):
    """Holds: an index row made inconsistent (checksums recomputed, so only validation can
    tell) gives ``CorruptionError`` at open or on the first read of the key it names, never
    another exception or a wrong value; ``len``/``keys()`` never crash."""
    from tests.columnar_damage import rewrite_index

    p = _crafted_source(tmp_path / "c.db")
    rewrite_index(p, _CRAFTED[case], rehash=True)
    try:
        db = _open(p)
    except synarrow.CorruptionError:
        return
    with db:
        assert len(db) == 3 and sorted(db.keys()) == ["a", "b", "c"]
        with pytest.raises(synarrow.CorruptionError):
            db.get_history("a")
            db.compact(full=True)


def test_crafted_index_listing_a_slice_twice_doubles_the_history(tmp_path):
    """A crafted index (checksums recomputed) that lists the same slice twice for a key is
    accepted: the key's history has every entry twice, and a compaction writes the doubled
    history for good. Expected: ``CorruptionError`` (two index rows naming the same record
    batch rows, or overlapping slices of one key). Not new in issue 20 (the same at
    20c255a), found while crafting indexes for it."""
    from tests.columnar_damage import rewrite_index

    p = _crafted_source(tmp_path / "c.db")
    rewrite_index(p, lambda c: [c[k].insert(1, c[k][0]) for k in c], rehash=True)
    with pytest.raises(synarrow.CorruptionError), _open(p) as db:
        db.get_history("a")


def test_vector_store_deletes_and_compactions_over_carried_keys_holds(tmp_path):
    """Holds: a vector store on a compacted database, most documents deleted and both the
    database and the store compacted (the survivors' keys moved, never loaded), reopened:
    ``keys()``, ``get``, ``metadata``, ``search`` and ``len(db)`` agree; a document deleted
    and inserted again has only its new metadata."""
    cfg = synarrow.DbConfig(sync_on_write=False)
    p = tmp_path / "v.db"
    vecs = np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32)
    names = [f"d{i:03d}" for i in range(300)]
    with synarrow.VectorStore(p, dimensions=8, config=cfg, auto_compact=False) as s:
        s.insert_batch(names, vecs, [{"i": i} for i in range(300)])
        s.compact()
        s.db.compact()
    with synarrow.VectorStore(p, config=cfg, auto_compact=False) as s:
        s.delete_batch(names[:200])
        s.db.compact()
        s.compact()
    with synarrow.VectorStore(p, config=cfg, auto_compact=False) as s:
        assert sorted(s.keys()) == names[200:]
        assert s.search(vecs[250], k=1)[0].key == "d250"
        assert s.get("d005") is None
        assert np.allclose(s.get("d250"), vecs[250])
        assert s.metadata("d250") == {"i": 250}
        s.insert("d005", vecs[5], {"i": -5})
        s.db.compact()
    with synarrow.VectorStore(p, config=cfg, auto_compact=False) as s:
        assert len(s.keys()) == 101
        assert s.metadata("d005") == {"i": -5}
