"""Review of issue 16 (vector store metadata, where= / time / text filters, compaction,
put_vectors) through the public API and crafted files: each test is a finding of the review
of the merged branch; they fail until the cause is fixed."""

from __future__ import annotations

import json
import threading
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import synarrow
from synarrow.errors import CorruptionError, SynaError

# The store's metadata log key (FORMAT.md "vector_index/"); spelled out so the test does not
# lean on a module's internals.
LOG_KEY = "__synarrow__/vector_metadata"


def _cfg() -> synarrow.DbConfig:
    return synarrow.DbConfig(sync_on_write=False)


def _open(path: Path, **kw) -> synarrow.VectorStore:
    return synarrow.VectorStore(path, config=_cfg(), auto_compact=False, **kw)


def _two_documents(path: Path) -> None:
    """A closed store of two documents with metadata ``x`` = 1 and 2."""
    with _open(path, dimensions=3) as store:
        store.insert("a", [1.0, 0.0, 0.0], {"x": 1})
        store.insert("b", [0.0, 1.0, 0.0], {"x": 2})


def _ipc_stream(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _ipc_file(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def test_int_field_widened_by_a_float_bricks_the_store(tmp_path):
    """Data already written must never be damaged by later input. An int field holding a
    value above 2**53 (an id, a hash) is widened to float64 when a later document gives the
    field a float; the widening is accepted, but the cast of the stored int is a *safe* cast
    that fails, so from then on ``metadata()``, ``search(where=...)``, ``close()`` and even
    reopening the store raise a raw ``pyarrow.ArrowInvalid``: the store cannot be opened any
    more. Reproduce: insert {"x": 2**60 + 1}, insert {"x": 1.5}, metadata("a")."""
    path = tmp_path / "v.db"
    big = 2**60 + 1
    store = _open(path, dimensions=3)
    store.insert("a", [1.0, 0.0, 0.0], {"x": big})
    try:
        store.insert("b", [0.0, 1.0, 0.0], {"x": 1.5})
    except SynaError:
        pass  # refusing the float is one fix
    try:
        assert store.metadata("a") == {"x": big}, store.metadata("a")
    except pa.ArrowException as exc:
        pytest.fail(f"reading a's record raised {exc!r}")
    finally:
        try:
            store.close()
        except pa.ArrowException:
            pass
    try:
        with _open(path) as again:
            assert again.metadata("a") == {"x": big}
    except pa.ArrowException as exc:
        pytest.fail(f"reopening the store raised {exc!r}")


def test_huge_int_into_a_float_field_raises_a_raw_arrow_error(tmp_path):
    """Bad input gets a SynaError naming the problem. Inserting an int above 2**53 into a
    field that holds floats raises ``pyarrow.ArrowInvalid`` ('Integer value ... not in
    range') from ``MetadataColumns.conform`` instead of an ``InvalidValueError`` (the same
    values in one batch do get one). Reproduce: insert {"x": 1.5}, insert {"x": 2**60+1}."""
    with _open(tmp_path / "v.db", dimensions=3) as store:
        store.insert("a", [1.0, 0.0, 0.0], {"x": 1.5})
        try:
            store.insert("b", [0.0, 1.0, 0.0], {"x": 2**60 + 1})
        except SynaError:
            pass
        except Exception as exc:
            pytest.fail(f"{type(exc).__module__}.{type(exc).__name__} escaped: {exc}")


def test_non_bytes_entry_on_the_metadata_log_silently_drops_records(tmp_path):
    """A crafted metadata log entry must be a CorruptionError or a clean rebuild, never
    wrong records. One non-bytes value on the log key (``store.db.append(LOG_KEY, 1.5)``,
    or a vector put there with ``store.db.put_vector``) turns the key's history into a
    struct column, and ``_fold_metadata`` then returns without a word: after a rebuild from
    the log every document shows ``{}``, and ``compact()`` consolidates the log to those
    empty records, so the records are destroyed for good. Reproduce: write the entry, delete
    vector_index/state.json, reopen, compact, delete state.json, reopen."""
    path = tmp_path / "v.db"
    _two_documents(path)
    db = synarrow.SynaDB(path, config=_cfg())
    db.append(LOG_KEY, 1.5)
    db.close()
    (path / "vector_index" / "state.json").unlink()
    try:
        store = _open(path)
    except CorruptionError:
        return  # refusing the damaged log is a fix
    with store:
        assert store.metadata("a") == {"x": 1}, "the rebuild lost a's record"
        store.compact()
    (path / "vector_index" / "state.json").unlink()
    with _open(path) as store:
        assert store.metadata("a") == {"x": 1}, "compact() destroyed a's record"


def test_a_vector_put_on_the_metadata_log_key_becomes_an_undeletable_document(tmp_path):
    """vector_meta promises the log key 'is never a document of the store', and
    ``VectorStore.insert`` / ``delete`` refuse it. ``SynaDB.put_vectors`` (new in this issue)
    takes the key, and the store then indexes it: ``keys()`` lists it, searches return it as
    a hit, and ``store.delete(LOG_KEY)`` refuses to remove it ('holds the store's metadata
    log'). Reproduce: ``store.db.put_vectors([LOG_KEY], [[1, 2, 3]])``, flush, search."""
    path = tmp_path / "v.db"
    _two_documents(path)
    with _open(path) as store:
        try:
            store.db.put_vectors([LOG_KEY], [[1.0, 2.0, 3.0]])
        except SynaError:
            return  # refusing the reserved key is a fix
        store.flush()
        hits = [h.key for h in store.search([1.0, 2.0, 3.0], k=3)]
        assert LOG_KEY not in store.keys() and LOG_KEY not in hits, hits


def test_crafted_metadata_checkpoint_with_duplicate_fields_is_accepted(tmp_path):
    """The index checkpoint is a cache: a crafted or damaged file must mean a rebuild from
    the log (or CorruptionError), never a crash. A meta-<n>.arrow whose size and CRC32 in
    state.json match but which names field ``x`` twice passes ``MetadataColumns.from_arrow``
    (it checks names and types per column only); after the open, ``metadata()``,
    ``search(where=...)``, ``sql()`` and ``close()`` all raise a raw ``KeyError('Field "x"
    exists 2 times in schema')``. Reproduce: rewrite the meta file, fix state.json, reopen."""
    path = tmp_path / "v.db"
    _two_documents(path)
    index_dir = path / "vector_index"
    state = json.loads((index_dir / "state.json").read_text())
    labels = pa.array([0, 1], pa.uint64())
    crafted = pa.Table.from_arrays(
        [pa.array([1, 2]), pa.array([3, 4]), labels], names=["x", "x", "__label"]
    )
    data = _ipc_file(crafted)
    (index_dir / state["meta_file"]).write_bytes(data)
    state.update(meta_bytes=len(data), meta_crc=zlib.crc32(data))
    (index_dir / "state.json").write_text(json.dumps(state))
    try:
        store = _open(path)
    except CorruptionError:
        return
    try:
        assert store.metadata("a") == {"x": 1}
        assert [h.key for h in store.search([1.0, 0.0, 0.0], k=2, where="x = 2")] == ["b"]
    except KeyError as exc:
        pytest.fail(f"the crafted checkpoint was loaded; reading it raised {exc!r}")
    finally:
        try:
            store.close()
        except KeyError:
            pass


def test_metadata_log_entry_with_a_clashing_type_is_not_corruption(tmp_path):
    """Crafted log content is CorruptionError. A well-formed metadata entry (right __key /
    __fp columns) whose field ``x`` holds strings where the store holds ints makes every
    later open of the store fail with ``InvalidValueError`` 'metadata field 'x' holds int64
    values in this store, got string (hint: give the field values of one kind...)': a bad
    *input* error at open, for no input of the user's, with a hint that cannot help.
    Reproduce: append the entry through SynaDB, delete state.json, reopen."""
    path = tmp_path / "v.db"
    _two_documents(path)
    with _open(path) as store:
        fp = _fingerprint_of(path, store, "a")
    db = synarrow.SynaDB(path, config=_cfg())
    entry = pa.table({"__key": ["a"], "__fp": pa.array([fp], pa.uint64()), "x": ["text"]})
    db.append(LOG_KEY, _ipc_stream(entry))
    db.close()
    (path / "vector_index" / "state.json").unlink()
    try:
        _open(path).close()
    except CorruptionError:
        pass
    except SynaError as exc:
        pytest.fail(f"{type(exc).__name__} for a damaged log entry: {exc}")


def _fingerprint_of(path: Path, store: synarrow.VectorStore, key: str) -> int:
    """The fingerprint the store's log entries record for ``key`` (read from the log)."""
    history = store.db.get_history(LOG_KEY).column("value").to_pylist()
    for data in reversed(history):
        table = pa.ipc.open_stream(pa.BufferReader(data)).read_all()
        keys = table.column("__key").to_pylist()
        if key in keys:
            return int(table.column("__fp")[keys.index(key)].as_py())
    raise AssertionError(f"no metadata entry for {key!r} in {path}")


def test_damaged_metadata_entry_hint_suggests_an_option_the_store_lacks(tmp_path):
    """A clear error's hint must help. A damaged metadata log entry makes the store's open
    (and ``close()`` of a store that had one written through ``store.db``) raise
    CorruptionError with the hint 'open with repair=True to skip damaged entries', but
    ``VectorStore`` takes no ``repair=`` (TypeError), and ``SynaDB(path, repair=True)``
    does not skip it either (the log entry itself is intact bytes). Reproduce: append b"junk"
    to the log key, delete state.json, reopen."""
    path = tmp_path / "v.db"
    _two_documents(path)
    db = synarrow.SynaDB(path, config=_cfg())
    db.append(LOG_KEY, b"junk")
    db.close()
    (path / "vector_index" / "state.json").unlink()
    with pytest.raises(CorruptionError) as info:
        _open(path)
    with pytest.raises(TypeError):
        _open(path, repair=True)
    assert "repair=True" not in str(info.value), str(info.value)


def test_vector_caught_up_during_compaction_vanishes_from_search(tmp_path):
    """compact() promises that changes made during its rebuild are replayed onto the new
    index. Inserts and deletes are journaled, but a catch-up (``store.flush()`` after
    writing through ``store.db``, as the ``db`` property's docs invite) adds to the *old*
    index without a journal entry, and the swap drops it: the key stays in ``keys()`` /
    ``len()`` but no search finds it, and the saved checkpoint is inconsistent (the next open
    warns and rebuilds). The hook below runs that flush from inside the compaction's read
    of the live vectors: the point where a second thread's flush gets the store's lock
    between two chunks of a large store (or beside the background compaction)."""
    path = tmp_path / "v.db"
    store = _open(path, dimensions=4)
    rng = np.random.default_rng(0)
    store.insert_batch([f"k{i}" for i in range(50)], rng.random((50, 4), dtype=np.float32))
    store.delete_batch([f"k{i}" for i in range(10)])  # dead entries: compact() rebuilds
    fresh = np.array([0.0, 0.0, 0.0, 1.0], np.float32)
    db = store.db
    read = db.get
    done = threading.Event()

    def get(key, *args, **kwargs):
        if not done.is_set() and key.startswith("k"):
            done.set()
            db.put_vector("fresh", fresh)
            store.flush()
        return read(key, *args, **kwargs)

    db.get = get  # type: ignore[method-assign]
    try:
        assert store.compact()["index_rebuilt"]
    finally:
        db.get = read  # type: ignore[method-assign]
    assert done.is_set()
    try:
        assert "fresh" in store
        hits = [h.key for h in store.search(fresh, k=1, exact=True)]
        assert hits == ["fresh"], hits
    finally:
        store.close()


def test_text_field_naming_no_field_silently_drops_the_text_ranking(tmp_path):
    """Bad input gets a clear error: ``where=`` naming a missing field raises
    InvalidArgumentError, but ``text=`` on a store opened with a ``text_field`` that no
    document has (a typo: ``text_field="body"`` for a field ``text``) quietly ranks every
    document's text as None and returns the plain vector ranking, so a hybrid search is
    silently not one. Reproduce: metadata {"text": ...}, open with text_field="body",
    search(text=...)."""
    path = tmp_path / "v.db"
    with _open(path, dimensions=3) as store:
        store.insert_batch(
            ["a", "b"],
            [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]],
            [{"text": "red apple"}, {"text": "green pear"}],
        )
    with _open(path, text_field="body") as store, pytest.raises(SynaError):
        store.search([1.0, 0.0, 0.0], k=2, text="pear", text_weight=1.0)


def test_put_vectors_takes_a_single_str_as_one_key_per_character(tmp_path):
    """Bad input gets a clear error. ``SynaDB.put_vectors("ab", rows)`` writes keys "a"
    and "b" (the str is iterated), where ``VectorStore.insert_batch`` refuses a single str
    ('keys must be a sequence of str, got a single str'). A caller passing one key by
    mistake gets vectors under one-letter keys. Reproduce: put_vectors("ab", [[1, 2], [3,
    4]]), keys()."""
    db = synarrow.SynaDB(tmp_path / "d", config=_cfg())
    try:
        with pytest.raises(SynaError):
            db.put_vectors("ab", [[1.0, 2.0], [3.0, 4.0]])
        assert db.keys() == []
    finally:
        db.close()
