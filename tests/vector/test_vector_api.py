"""VectorStore behaviour: insert / replace / delete / get, metrics, filters, Arrow, errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import synarrow
from synarrow import (
    ConfigError,
    DatabaseClosedError,
    InvalidArgumentError,
    InvalidKeyError,
    InvalidValueError,
    ReadOnlyError,
)
from synarrow.vector import SearchResult, VectorStore

Opener = Callable[..., VectorStore]


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def numpy_scores(metric: str, q: np.ndarray, data: np.ndarray) -> np.ndarray:
    """The documented score of each row of ``data`` for query ``q`` (lower is closer)."""
    q64, d64 = q.astype(np.float64), data.astype(np.float64)
    if metric == "cosine":
        return 1 - (d64 @ q64) / (np.linalg.norm(d64, axis=1) * np.linalg.norm(q64))
    if metric == "euclidean":
        return np.sqrt(((d64 - q64) ** 2).sum(axis=1))
    return 1 - d64 @ q64


# -- basics --------------------------------------------------------------------------------


def test_lazy_export_and_result_type(store: VectorStore) -> None:
    assert synarrow.VectorStore is VectorStore
    assert synarrow.SearchResult is SearchResult
    store.insert("a", np.ones(8, np.float32))
    (hit,) = store.search(np.ones(8), k=1)
    key, score, metadata = hit
    assert (key, hit.key) == ("a", "a") and score == hit.score == pytest.approx(0, abs=1e-6)
    assert metadata is None  # asked for with with_metadata=True


def test_insert_get_len_contains_keys(store: VectorStore) -> None:
    rng = np.random.default_rng(1)
    data = rng.standard_normal((20, 8)).astype(np.float32)
    keys = [f"doc/{i:02d}" for i in range(20)]
    assert store.insert_batch(keys, data) == 20
    store.insert("extra", [1, 2, 3, 4, 5, 6, 7, 8])  # a list is fine
    assert len(store) == 21
    assert "doc/03" in store and "nope" not in store and 3 not in store
    assert store.keys() == sorted([*keys, "extra"])
    assert store.keys(prefix="doc/1") == [f"doc/1{i}" for i in range(10)]
    assert list(store) == store.keys()
    got = store.get("doc/07")
    assert got is not None and got.dtype == np.float32
    np.testing.assert_array_equal(got, data[7])
    np.testing.assert_array_equal(store.get("extra"), np.arange(1, 9, dtype=np.float32))
    assert store.get("missing") is None
    got[:] = 0  # a copy: the stored vector is unchanged
    np.testing.assert_array_equal(store.get("doc/07"), data[7])


def test_caller_array_is_copied(store: VectorStore) -> None:
    v = np.ones(8, np.float32)
    store.insert("a", v)
    v[:] = 5
    np.testing.assert_array_equal(store.get("a"), np.ones(8, np.float32))


def test_replace_keeps_one_entry_and_uses_new_vector(store: VectorStore) -> None:
    a, b = np.eye(8, dtype=np.float32)[:2]
    store.insert("k", a)
    store.insert("other", a + 0.01)
    store.insert("k", b)
    assert len(store) == 2
    np.testing.assert_array_equal(store.get("k"), b)
    hits = store.search(b, k=5)
    assert hits[0].key == "k" and hits[0].score == pytest.approx(0, abs=1e-6)
    assert [h.key for h in hits].count("k") == 1
    assert store.search(a, k=1)[0].key == "other"


def test_duplicate_keys_in_one_batch_keep_the_last_row(store: VectorStore) -> None:
    rows = np.eye(8, dtype=np.float32)[:3]
    assert store.insert_batch(["x", "y", "x"], rows) == 2
    np.testing.assert_array_equal(store.get("x"), rows[2])
    assert len(store) == 2


def test_delete_removes_from_results_at_once(store: VectorStore) -> None:
    rows = np.eye(8, dtype=np.float32)
    store.insert_batch([f"k{i}" for i in range(8)], rows)
    assert store.delete("k3") is True
    assert store.delete("k3") is False
    assert store.delete("never") is False
    assert "k3" not in store and store.get("k3") is None and len(store) == 7
    assert all(h.key != "k3" for h in store.search(rows[3], k=8))
    assert store.delete_batch(["k1", "k2", "k1", "zz"]) == 2
    assert len(store) == 5 and store.keys() == ["k0", "k4", "k5", "k6", "k7"]
    assert store.db.get("k1") is None  # gone from the log too
    store.insert("k3", rows[3])  # a deleted key can come back
    assert store.search(rows[3], k=1)[0].key == "k3"


def test_search_batch_matches_search(store: VectorStore, mixture: Callable) -> None:
    data = mixture(300, 8, seed=3)
    store.insert_batch([f"d{i}" for i in range(300)], data)
    queries = mixture(7, 8, seed=4)
    batch = store.search_batch(queries, k=5)
    assert len(batch) == 7
    for q, hits in zip(queries, batch):
        assert hits == store.search(q, k=5)
    assert store.search_batch(queries[:1], k=3)[0] == store.search(queries[0], k=3)
    assert store.search_batch(np.empty((0, 8), np.float32)) == []
    single = store.search_batch(queries[0], k=2, threads=1)  # one 1-D query is one row
    assert single == [store.search(queries[0], k=2)]


def test_k_larger_than_store_and_empty_store(store: VectorStore) -> None:
    assert store.search(np.ones(8), k=3) == []
    assert store.search(np.ones(8), k=3, exact=True) == []
    assert store.search(np.ones(8), k=3, prefix="a") == []
    assert store.search_batch(np.ones((2, 8)), k=3) == [[], []]
    store.insert_batch(["a", "b"], np.eye(8, dtype=np.float32)[:2])
    assert len(store.search(np.ones(8), k=10)) == 2
    assert len(store.search_batch(np.ones((2, 8)), k=10)[1]) == 2
    store.delete_batch(["a", "b"])
    assert store.search(np.ones(8), k=3) == []


# -- metrics -------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "dot"])
def test_metric_scores_match_numpy(open_store: Opener, metric: str) -> None:
    rng = np.random.default_rng(7)
    data = rng.standard_normal((200, 16)).astype(np.float32)
    if metric == "dot":
        data = unit(data) * rng.uniform(0.5, 2, (200, 1)).astype(np.float32)
    keys = [f"v{i}" for i in range(200)]
    store = open_store(16, metric)
    assert store.metric == metric
    store.insert_batch(keys, data)
    q = rng.standard_normal(16).astype(np.float32)
    expected = numpy_scores(metric, q, data)
    order = np.argsort(expected, kind="stable")
    for exact in (True, False):
        hits = store.search(q, k=10, exact=exact)
        scores = [h.score for h in hits]
        assert scores == sorted(scores)  # best first
        for h in hits:
            assert h.score == pytest.approx(expected[keys.index(h.key)], rel=1e-4, abs=1e-5)
    exact_hits = store.search(q, k=10, exact=True)
    assert [h.key for h in exact_hits] == [keys[i] for i in order[:10]]


def test_metric_aliases_and_dot_on_unit_vectors_equals_cosine(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown metric"):
        VectorStore(tmp_path / "bad.db", 4, "manhattan")
    rng = np.random.default_rng(0)
    data = unit(rng.standard_normal((50, 4)).astype(np.float32))
    q = unit(rng.standard_normal(4).astype(np.float32))
    results = {}
    for name in ("dot_product", "cos"):
        with VectorStore(tmp_path / f"{name}.db", 4, name) as s:
            s.insert_batch([str(i) for i in range(50)], data)
            results[s.metric] = s.search(q, k=5, exact=True)
    assert [h.key for h in results["dot"]] == [h.key for h in results["cosine"]]
    for a, b in zip(results["dot"], results["cosine"]):
        assert a.score == pytest.approx(b.score, abs=1e-5)


@pytest.mark.parametrize("precision", ["f16", "bf16", "i8"])
def test_lower_precisions(open_store: Opener, precision: str, mixture: Callable) -> None:
    data = unit(mixture(500, 32, seed=5))
    store = open_store(32, precision=precision)
    store.insert_batch([f"d{i}" for i in range(500)], data)
    assert store.precision == precision
    np.testing.assert_array_equal(store.get("d9"), data[9])  # the log keeps float32
    assert store.search(data[9], k=1)[0].key == "d9"
    assert store.search(data[9], k=1, exact=True)[0].key == "d9"
    assert store.search(data[9], k=1, prefix="d")[0].key == "d9"  # exact over a subset


@pytest.mark.parametrize("dims", [2, 8192])
def test_dimension_limits(open_store: Opener, dims: int) -> None:
    rng = np.random.default_rng(dims)
    data = rng.standard_normal((30, dims)).astype(np.float32)
    store = open_store(dims)
    store.insert_batch([f"k{i}" for i in range(30)], data)
    assert store.dimensions == dims
    np.testing.assert_array_equal(store.get("k4"), data[4])
    if dims > 2:
        assert store.search(data[4], k=1)[0].key == "k4"
    t = store.to_arrow()
    assert t.schema.field("vector").type == pa.list_(pa.float32(), dims)


# -- filters -------------------------------------------------------------------------------


def _filtered_truth(data: np.ndarray, keys: list[str], q: np.ndarray, ok, k: int) -> list[str]:
    scores = numpy_scores("cosine", q, data)
    allowed = [i for i in np.argsort(scores, kind="stable") if ok(keys[i])]
    return [keys[i] for i in allowed[:k]]


@pytest.mark.parametrize(
    ("prefix", "predicate"),
    [
        ("a/", None),  # half of the keys: over-fetch path
        ("b/00", None),  # 50 keys: exact subset
        (None, lambda key: key.endswith("7")),  # ~10%: over-fetch, then exact fallback
        ("a/", lambda key: int(key[2:]) % 50 == 1),  # very selective predicate
        ("zzz", None),  # nothing
    ],
)
def test_filtered_search_keeps_recall(
    open_store: Opener,
    mixture: Callable,
    prefix: str | None,
    predicate,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A small exact-search threshold sends the half-store prefix through over-fetching.
    monkeypatch.setattr(synarrow.vector, "_EXACT_SUBSET", 500)
    n = 6000
    data = mixture(n, 16, seed=11)
    keys = [f"{'a' if i % 2 else 'b'}/{i:04d}" for i in range(n)]
    store = open_store(16)
    store.insert_batch(keys, data)
    queries = mixture(40, 16, seed=12)

    def ok(key: str) -> bool:
        return (prefix is None or key.startswith(prefix)) and (predicate is None or predicate(key))

    found = 0
    expected = 0
    batch = store.search_batch(queries, k=10, prefix=prefix, filter=predicate)
    for q, hits in zip(queries, batch):
        truth = _filtered_truth(data, keys, q, ok, 10)
        assert all(ok(h.key) for h in hits)
        assert len(hits) == len(truth)
        found += len({h.key for h in hits} & set(truth))
        expected += len(truth)
        # One query alone and the same query in a batch walk the same approximate graph from
        # separate search contexts: they agree on nearly every hit, not always on the 10th.
        single = store.search(q, k=10, prefix=prefix, filter=predicate)
        assert all(ok(h.key) for h in single) and len(single) == len(hits)
        assert len({h.key for h in single} & {h.key for h in hits}) >= len(hits) - 2
        exact = store.search(q, k=10, prefix=prefix, filter=predicate, exact=True)
        assert [h.key for h in exact] == truth
    assert expected == 0 or found / expected >= 0.95


def test_filter_arguments_are_checked(store: VectorStore) -> None:
    store.insert("a", np.ones(8))
    with pytest.raises(InvalidArgumentError, match="prefix"):
        store.search(np.ones(8), prefix=3)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="filter"):
        store.search(np.ones(8), filter="a*")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="prefix"):
        store.keys(prefix=1)  # type: ignore[arg-type]


# -- Arrow and SQL -------------------------------------------------------------------------


def test_to_arrow_and_sql(store: VectorStore) -> None:
    rng = np.random.default_rng(2)
    data = rng.standard_normal((5, 8)).astype(np.float32)
    store.insert_batch([f"k{i}" for i in range(5)], data)
    store.db.append("meta/k1", "the title of k1")  # metadata beside the vectors
    t = store.to_arrow()
    assert t.column("key").to_pylist() == [f"k{i}" for i in range(5)]
    assert t.schema.field("vector").type == pa.list_(pa.float32(), 8)
    np.testing.assert_array_equal(
        t.column("vector").combine_chunks().flatten().to_numpy().reshape(5, 8), data
    )
    assert store.to_arrow(prefix="k3").num_rows == 1
    assert "meta/k1" not in store and len(store) == 5

    q = data[1].tolist()
    hits = store.sql(
        "SELECT key, array_cosine_similarity(vector, ?::FLOAT[8]) AS sim FROM vectors "
        "ORDER BY sim DESC LIMIT 2",
        [q],
    )
    assert hits.column("key")[0].as_py() == "k1"
    assert hits.column("sim")[0].as_py() == pytest.approx(1, abs=1e-5)
    joined = store.sql(
        "SELECT v.key, l.text FROM vectors v JOIN latest l ON l.key = 'meta/' || v.key"
    )
    assert joined.to_pylist() == [{"key": "k1", "text": "the title of k1"}]
    # The database's own views see the vectors too.
    via_db = store.db.sql(
        "SELECT key, array_cosine_similarity(vector::FLOAT[8], ?::FLOAT[8]) AS sim "
        "FROM latest WHERE type = 'vector' ORDER BY sim DESC LIMIT 1",
        [q],
    )
    assert via_db.column("key").to_pylist() == ["k1"]
    with pytest.raises(synarrow.SynaError):
        store.sql("SELECT nope FROM vectors")


# -- errors --------------------------------------------------------------------------------


def test_bad_vectors_are_refused_and_write_nothing(store: VectorStore) -> None:
    good = np.ones(8, np.float32)
    with pytest.raises(InvalidValueError, match="expected \\(8,\\)"):
        store.insert("a", np.ones(7, np.float32))
    with pytest.raises(InvalidValueError, match="NaN"):
        store.insert("a", np.full(8, np.nan, np.float32))
    with pytest.raises(InvalidValueError, match="NaN"):
        store.insert("a", [1, 2, 3, 4, 5, 6, 7, np.inf])
    with pytest.raises(InvalidValueError, match="overflow"):
        store.insert("a", np.full(8, 1e300))
    with pytest.raises(InvalidValueError, match="numbers"):
        store.insert("a", ["x"] * 8)
    with pytest.raises(InvalidValueError, match="booleans"):
        store.insert("a", np.ones(8, bool))
    bad_rows = np.ones((3, 8), np.float32)
    bad_rows[2, 5] = np.nan
    with pytest.raises(InvalidValueError, match="row 2"):
        store.insert_batch(["a", "b", "c"], bad_rows)
    with pytest.raises(InvalidValueError, match="3 keys but 2"):
        store.insert_batch(["a", "b", "c"], np.ones((2, 8)))
    with pytest.raises(InvalidValueError, match="expected \\(n, 8\\)"):
        store.insert_batch(["a"], np.ones((1, 9)))
    with pytest.raises(InvalidKeyError):
        store.insert_batch(["a", ""], np.ones((2, 8)))
    with pytest.raises(InvalidKeyError):
        store.insert_batch(["a", "x" * 70000], np.ones((2, 8)))
    with pytest.raises(InvalidKeyError):
        store.insert_batch("ab", np.ones((2, 8)))
    assert len(store) == 0 and store.db.keys() == []
    store.insert("a", good)
    assert len(store) == 1


def test_bad_keys_queries_and_k(store: VectorStore) -> None:
    store.insert("a", np.ones(8))
    for bad in ("", 3, None, b"a"):
        with pytest.raises(InvalidKeyError):
            store.insert(bad, np.ones(8))  # type: ignore[arg-type]
        with pytest.raises(InvalidKeyError):
            store.get(bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidKeyError):
            store.delete(bad)  # type: ignore[arg-type]
    for k in (0, -1, 1.5, True, "3"):
        with pytest.raises(InvalidArgumentError, match="k must"):
            store.search(np.ones(8), k=k)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgumentError, match="k must"):
            store.search_batch(np.ones((1, 8)), k=k)  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError, match="query"):
        store.search(np.ones(3))
    with pytest.raises(InvalidValueError, match="NaN"):
        store.search(np.full(8, np.nan))
    with pytest.raises(InvalidValueError, match="queries"):
        store.search_batch(np.ones((2, 3)))
    with pytest.raises(InvalidArgumentError, match="threads"):
        store.search_batch(np.ones((1, 8)), threads=-1)


def test_invalid_settings(tmp_path: Path) -> None:
    for dims in (1, 8193, 0, 2.5, "8", True):
        with pytest.raises(ConfigError, match="dimensions"):
            VectorStore(tmp_path / "a.db", dims)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="precision"):
        VectorStore(tmp_path / "a.db", 8, precision="f8")
    with pytest.raises(ConfigError, match="connectivity"):
        VectorStore(tmp_path / "a.db", 8, connectivity=1)
    with pytest.raises(ConfigError, match="no vector store"):
        VectorStore(tmp_path / "a.db")
    assert not (tmp_path / "a.db").exists()  # no refused attempt left a database behind
    with synarrow.SynaDB(tmp_path / "plain.db") as db:
        db.append("x", 1.0)
    with pytest.raises(ConfigError, match="no vector store"):
        VectorStore(tmp_path / "plain.db", readonly=True)


def test_other_settings_on_reopen_are_refused(open_store: Opener, store_path: Path) -> None:
    store = open_store(8, "euclidean", precision="f16", connectivity=8)
    store.insert("a", np.ones(8))
    store.close()
    for kwargs in (
        {"dimensions": 16},
        {"dimensions": 8, "metric": "cosine"},
        {"precision": "f32"},
        {"connectivity": 16},
        {"expansion_add": 64},
    ):
        with pytest.raises(ConfigError, match="was created with"):
            VectorStore(store_path, **kwargs)  # type: ignore[arg-type]
    again = open_store(expansion_search=200)  # search-time setting: allowed
    assert (again.dimensions, again.metric, again.precision) == (8, "euclidean", "f16")
    assert again.expansion_search == 200
    again.expansion_search = 32
    assert again.expansion_search == 32
    with pytest.raises(ConfigError):
        again.expansion_search = 0
    assert again.get("a") is not None


def test_readonly_and_closed(open_store: Opener, store_path: Path) -> None:
    store = open_store(8)
    store.insert("a", np.ones(8))
    with pytest.raises(synarrow.DatabaseLockedError):
        VectorStore(store_path)  # one writer at a time
    store.close()
    store.close()  # idempotent
    assert store.closed
    for call in (
        lambda: store.insert("b", np.ones(8)),
        lambda: store.search(np.ones(8)),
        lambda: store.get("a"),
        lambda: len(store),
        store.flush,
    ):
        with pytest.raises(DatabaseClosedError):
            call()
    assert "a" not in store
    ro = open_store(readonly=True)
    assert ro.search(np.ones(8), k=1)[0].key == "a"
    for call in (
        lambda: ro.insert("b", np.ones(8)),
        lambda: ro.delete("a"),
        lambda: ro.insert_batch(["b"], np.ones((1, 8))),
        ro.flush,
    ):
        with pytest.raises(ReadOnlyError):
            call()
    assert "readonly" in repr(ro) or "vectors" in repr(ro)


def test_context_manager_and_repr(store_path: Path) -> None:
    with VectorStore(store_path, 4) as store:
        store.insert("x", [1, 2, 3, 4])
        assert "4d cosine f32, 1 vectors" in repr(store)
    assert store.closed and "closed" in repr(store)
