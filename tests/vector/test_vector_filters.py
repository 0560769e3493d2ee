"""VectorStore filters: ``where=`` against a Python model of the metadata, recall of the
filtered graph search, ``start=`` / ``end=`` insert-time windows, the planner's boundaries
(``store.plan()``) and the arguments a search refuses."""

from __future__ import annotations

import datetime as dt
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synarrow import DbConfig, InvalidArgumentError
from synarrow.vector import VectorStore

FAST = DbConfig(sync_on_write=False, auto_compact=False)
UTC = dt.timezone.utc
Row = dict[str, Any]


def clustered(n: int, dims: int, *, seed: int, clusters: int = 40) -> np.ndarray:
    """``n`` float32 points around ``clusters`` fixed centres (the same for every seed)."""
    centres = np.random.default_rng(dims * 31 + clusters).standard_normal((clusters, dims))
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, clusters, n)
    return (centres[picks] * 3.0 + rng.standard_normal((n, dims))).astype(np.float32)


def cosine(query: np.ndarray, data: np.ndarray) -> np.ndarray:
    """The store's cosine score of each row of ``data`` (float64)."""
    q, d = query.astype(np.float64), data.astype(np.float64)
    return 1 - (d @ q) / (np.linalg.norm(d, axis=1) * np.linalg.norm(q))


def check_exact(
    hits: list[Any], query: np.ndarray, data: np.ndarray, keys: list[str], subset: list[int], k: int
) -> None:
    """``hits`` are the ``k`` nearest of ``subset`` (same keys, same order, up to ties)."""
    assert len(hits) == min(k, len(subset))
    if not subset:
        return
    index = {key: i for i, key in enumerate(keys)}
    allowed = set(subset)
    got = [index[h.key] for h in hits]
    assert all(i in allowed for i in got)
    assert len(set(got)) == len(got)
    scores = cosine(query, data[subset])
    order = np.argsort(scores, kind="stable")
    best = scores[order[: len(hits)]]
    np.testing.assert_allclose([h.score for h in hits], best, atol=2e-5)
    truth = [subset[i] for i in order[: len(hits)]]
    # Where the model's scores are clearly apart, the keys agree one for one.
    for j, (a, b) in enumerate(zip(got, truth)):
        gap_before = j == 0 or scores[order[j]] - scores[order[j - 1]] > 1e-4
        gap_after = j + 1 >= len(scores) or scores[order[j + 1]] - scores[order[j]] > 1e-4
        if gap_before and gap_after:
            assert a == b, (j, keys[a], keys[b])


# -- predicate templates: SQL and the same test in Python (SQL's TRUE only) -----------------

CATS = ["news", "blog", "wiki"]
TAGS = ["x", "y", "z"]


def _templates() -> list[tuple[str, Callable[..., str], Callable[..., Callable[[str, Row], bool]]]]:
    def t(name: str, sql: Callable[..., str], py: Callable[..., Callable[[str, Row], bool]]) -> Any:
        return (name, sql, py)

    def year_ok(r: Row, f: Callable[[int], bool]) -> bool:
        return r.get("year") is not None and f(r["year"])

    return [
        t("eq", lambda c, y, w: f"cat = '{c}'", lambda c, y, w: lambda k, r: r.get("cat") == c),
        t(
            "lt",
            lambda c, y, w: f"year < {y}",
            lambda c, y, w: lambda k, r: year_ok(r, lambda v: v < y),
        ),
        t(
            "ge_float",
            lambda c, y, w: f"w >= {w!r}",
            lambda c, y, w: lambda k, r: r.get("w") is not None and r["w"] >= w,
        ),
        t(
            "in",
            lambda c, y, w: f"year IN ({y}, {y + 1}, {y + 3})",
            lambda c, y, w: lambda k, r: year_ok(r, lambda v: v in (y, y + 1, y + 3)),
        ),
        t(
            "is_null",
            lambda c, y, w: "cat IS NULL",
            lambda c, y, w: lambda k, r: r.get("cat") is None,
        ),
        t(
            "and_or",
            lambda c, y, w: f"(cat = '{c}' AND year >= {y}) OR flag",
            lambda c, y, w: (
                lambda k, r: (
                    (r.get("cat") == c and year_ok(r, lambda v: v >= y)) or r.get("flag") is True
                )
            ),
        ),
        t(
            "list_contains",
            lambda c, y, w: f"list_contains(tags, '{TAGS[y % 3]}')",
            lambda c, y, w: lambda k, r: r.get("tags") is not None and TAGS[y % 3] in r["tags"],
        ),
        t(
            "like",
            lambda c, y, w: "key LIKE 'p%'",
            lambda c, y, w: lambda k, r: k.startswith("p"),
        ),
        t(
            "like_and",
            lambda c, y, w: f"key LIKE 'q%' AND NOT flag AND year > {y}",
            lambda c, y, w: (
                lambda k, r: (
                    k.startswith("q") and r.get("flag") is False and year_ok(r, lambda v: v > y)
                )
            ),
        ),
    ]


TEMPLATES = _templates()
PREDICATES = st.tuples(
    st.sampled_from(range(len(TEMPLATES))),
    st.sampled_from(CATS),
    st.integers(2000, 2025),
    st.floats(0, 1, allow_nan=False).map(lambda v: round(v, 3)),
)


def random_rows(n: int, seed: int) -> list[Row]:
    """``n`` records of random fields, some absent, some null."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        row: Row = {}
        if rng.random() < 0.8:
            row["cat"] = CATS[int(rng.integers(0, 3))]
        if rng.random() < 0.9:
            row["year"] = int(rng.integers(2000, 2025))
        if rng.random() < 0.9:
            row["w"] = float(rng.random())
        if rng.random() < 0.85:
            row["flag"] = bool(rng.random() < 0.3)
        if rng.random() < 0.7:
            row["tags"] = [t for t in TAGS if rng.random() < 0.4]
        rows.append(row)
    return rows


class Corpus:
    """A store of random documents and the model of what it holds."""

    def __init__(self, path: Path, n: int, dims: int, seed: int) -> None:
        self.data = clustered(n, dims, seed=seed)
        self.keys = [f"{'pq'[i % 2]}{i:05d}" for i in range(n)]
        self.rows = random_rows(n, seed)
        self.store = VectorStore(path, dims, config=FAST)
        self.store.insert_batch(self.keys, self.data, self.rows)

    def matching(self, test: Callable[[str, Row], bool]) -> list[int]:
        return [i for i, (k, r) in enumerate(zip(self.keys, self.rows)) if test(k, r)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    c = Corpus(tmp_path_factory.mktemp("corpus") / "v.db", 2000, 16, seed=11)
    yield c
    c.store.close()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pred=PREDICATES, qseed=st.integers(0, 10_000), k=st.sampled_from([1, 5, 10, 40]))
def test_where_matches_model(corpus: Corpus, pred: tuple[Any, ...], qseed: int, k: int) -> None:
    which, c, y, w = pred
    _, sql, py = TEMPLATES[which]
    where = sql(c, y, w)
    subset = corpus.matching(py(c, y, w))
    query = clustered(1, 16, seed=qseed + 100_000)[0]
    hits = corpus.store.search(query, k=k, exact=True, where=where)
    check_exact(hits, query, corpus.data, corpus.keys, subset, k)
    # 2000 documents: a filtered search is an exact search over the admitted ones.
    plan = corpus.store.plan(k, where=where)
    assert plan.candidates == len(subset) and plan.total == 2000
    assert plan.strategy == ("exact-subset" if subset else "empty")
    approx = corpus.store.search(query, k=k, where=where)
    assert [h.key for h in approx] == [h.key for h in hits]
    # the same filter in SQL over the metadata view
    admitted = corpus.store.sql(f"SELECT key FROM metadata WHERE {where} ORDER BY key")
    assert admitted.column("key").to_pylist() == sorted(corpus.keys[i] for i in subset)


def test_where_with_metadata_and_batch(corpus: Corpus) -> None:
    queries = clustered(3, 16, seed=5)
    where = "cat = 'news' AND year >= 2010"
    batch = corpus.store.search_batch(queries, k=7, exact=True, where=where, with_metadata=True)
    subset = corpus.matching(
        lambda k, r: r.get("cat") == "news" and r.get("year") is not None and r["year"] >= 2010
    )
    for q, hits in zip(queries, batch):
        check_exact(hits, q, corpus.data, corpus.keys, subset, 7)
        for h in hits:
            i = corpus.keys.index(h.key)
            assert h.metadata == corpus.rows[i]


RECORD = st.fixed_dictionaries(
    {},
    optional={
        "cat": st.one_of(st.none(), st.sampled_from(CATS)),
        "year": st.one_of(st.none(), st.integers(2000, 2025)),
        "w": st.floats(0, 1, allow_nan=False),
        "flag": st.one_of(st.none(), st.booleans()),
        "tags": st.one_of(st.none(), st.lists(st.sampled_from(TAGS), max_size=3)),
    },
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    rows=st.lists(RECORD, min_size=1, max_size=60),
    preds=st.lists(PREDICATES, min_size=1, max_size=4),
    k=st.integers(1, 12),
)
def test_where_on_random_metadata(rows: list[Row], preds: list[tuple[Any, ...]], k: int) -> None:
    n = len(rows)
    data = clustered(n, 8, seed=n)
    keys = [f"{'pq'[i % 2]}{i:05d}" for i in range(n)]
    model = [{f: v for f, v in r.items() if v is not None} for r in rows]
    # A field given only as None still exists (its type is null until a value comes).
    fields = {f for r in rows for f in r}
    with tempfile.TemporaryDirectory() as tmp:
        store = VectorStore(Path(tmp) / "v.db", 8, config=FAST)
        try:
            store.insert_batch(keys, data, rows)
            query = clustered(1, 8, seed=7)[0]
            for which, c, y, w in preds:
                name, sql, py = TEMPLATES[which]
                needed = {
                    "eq": {"cat"},
                    "lt": {"year"},
                    "ge_float": {"w"},
                    "in": {"year"},
                    "is_null": {"cat"},
                    "and_or": {"cat", "year", "flag"},
                    "list_contains": {"tags"},
                    "like": set(),
                    "like_and": {"flag", "year"},
                }[name]
                if not needed <= fields:
                    with pytest.raises(InvalidArgumentError):
                        store.search(query, k=k, where=sql(c, y, w))
                    continue
                subset = [i for i in range(n) if py(c, y, w)(keys[i], model[i])]
                hits = store.search(query, k=k, exact=True, where=sql(c, y, w))
                check_exact(hits, query, data, keys, subset, k)
        finally:
            store.close()


# -- recall of approximate filtered search ---------------------------------------------------

RECALL_N = 20_000
RECALL_DIMS = 32


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[VectorStore, np.ndarray]]:
    data = clustered(RECALL_N, RECALL_DIMS, seed=3)
    # A bucket per document, independent of its cluster.
    bucket = np.random.default_rng(4).permutation(RECALL_N) % 200
    store = VectorStore(tmp_path_factory.mktemp("big") / "v.db", RECALL_DIMS, config=FAST)
    store.insert_batch([f"d{i:05d}" for i in range(RECALL_N)], data, {"bucket": bucket})
    yield store, bucket
    store.close()


@pytest.mark.parametrize(
    ("limit", "strategy"),
    [(2, "exact-subset"), (20, "exact-subset"), (50, "filtered-hnsw"), (100, "filtered-hnsw")],
    ids=["1%", "10%", "25%", "50%"],
)
def test_filtered_recall(big: tuple[VectorStore, np.ndarray], limit: int, strategy: str) -> None:
    store, bucket = big
    where = f"bucket < {limit}"
    admitted = int((bucket < limit).sum())
    assert store.plan(10, where=where) == (strategy, admitted, RECALL_N)
    queries = clustered(100, RECALL_DIMS, seed=99)
    approx = store.search_batch(queries, k=10, where=where)
    exact = store.search_batch(queries, k=10, where=where, exact=True)
    found = total = 0
    for a, e in zip(approx, exact):
        assert len(a) == 10 and len(e) == 10
        assert all(int(bucket[int(h.key[1:])]) < limit for h in a)
        found += len({h.key for h in a} & {h.key for h in e})
        total += len(e)
    recall = found / total
    assert recall >= 0.95, recall
    if strategy == "exact-subset":
        assert recall == 1.0


# -- insert-time windows ---------------------------------------------------------------------


def test_time_windows(store_path: Path) -> None:
    with VectorStore(store_path, 8, config=FAST) as store:
        data = clustered(90, 8, seed=1)
        batches = [list(range(0, 30)), list(range(30, 60)), list(range(60, 90))]
        bounds = []
        for b in batches:
            time.sleep(0.02)
            before = dt.datetime.now(UTC)
            store.insert_batch([f"k{i:02d}" for i in b], data[b], [{"i": i} for i in b])
            time.sleep(0.02)
            bounds.append((before, dt.datetime.now(UTC)))
        start, end = bounds[1]
        middle = {f"k{i:02d}" for i in batches[1]}
        query = data[45]
        forms = [
            (start, end),
            (start.isoformat(), end.isoformat()),
            (start.replace(tzinfo=None), end.replace(tzinfo=None)),  # naive = UTC
            (_micros(start), _micros(end)),
        ]
        for lo, hi in forms:
            hits = store.search(query, k=90, start=lo, end=hi)
            assert {h.key for h in hits} == middle, (lo, hi)
            assert store.plan(10, start=lo, end=hi).candidates == 30
        # open-ended windows
        assert {h.key for h in store.search(query, k=90, start=start)} == middle | {
            f"k{i:02d}" for i in batches[2]
        }
        assert {h.key for h in store.search(query, k=90, end=start)} == {
            f"k{i:02d}" for i in batches[0]
        }
        # the window with a where filter
        hits = store.search(query, k=90, start=start, end=end, where="i % 2 = 0")
        assert {h.key for h in hits} == {f"k{i:02d}" for i in batches[1] if i % 2 == 0}
        exact = store.search(query, k=5, start=start, end=end, where="i % 2 = 0", exact=True)
        assert [
            h.key for h in store.search(query, k=5, start=start, end=end, where="i % 2 = 0")
        ] == [h.key for h in exact]
        # inserted_at in SQL says the same
        naive = start.replace(tzinfo=None).isoformat(sep=" ")
        naive_end = end.replace(tzinfo=None).isoformat(sep=" ")
        by_sql = store.search(
            query,
            k=90,
            where=f"inserted_at >= TIMESTAMP '{naive}' AND inserted_at < TIMESTAMP '{naive_end}'",
        )
        assert {h.key for h in by_sql} == middle
        times = store.to_arrow(with_metadata=True).column("inserted_at").to_pylist()
        assert sum(start <= t < end for t in times) == 30
        # an empty window
        assert store.search(query, k=5, start=end, end=end) == []
        assert store.plan(5, start=end, end=end).strategy == "empty"
    # the insert times are the log's: the same windows after reopening without the index
    with VectorStore(store_path) as store:
        assert {h.key for h in store.search(query, k=90, start=start, end=end)} == middle


def _micros(t: dt.datetime) -> int:
    return int(t.timestamp() * 1_000_000)


# -- the planner -----------------------------------------------------------------------------

PLAN_N = 8200


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[VectorStore, np.ndarray]]:
    data = clustered(PLAN_N, 8, seed=21)
    store = VectorStore(tmp_path_factory.mktemp("plan") / "v.db", 8, config=FAST)
    store.insert_batch(
        [f"d{i:05d}" for i in range(PLAN_N)], data, {"i": np.arange(PLAN_N, dtype=np.int64)}
    )
    yield store, data
    store.close()


def test_plan_without_filters(planned: tuple[VectorStore, np.ndarray]) -> None:
    store, _ = planned
    assert store.plan() == ("hnsw", PLAN_N, PLAN_N)
    assert store.plan(10, exact=True) == ("exact", PLAN_N, PLAN_N)
    assert store.plan(10, where="i < 0") == ("empty", 0, PLAN_N)
    assert store.search(np.ones(8), k=3, where="i < 0") == []
    assert store.search_batch(np.ones((2, 8)), k=3, where="i < 0") == [[], []]


@pytest.mark.parametrize(
    ("m", "k", "strategy"),
    [
        (1, 10, "exact-subset"),
        (4096, 10, "exact-subset"),  # the subset limit itself
        (4097, 10, "filtered-hnsw"),  # one past it, 4*k*n <= 1024*m
        (PLAN_N, 10, "filtered-hnsw"),
        (5000, 156, "filtered-hnsw"),  # 4*156*8200 = 5_116_800 <= 1024*5000 = 5_120_000
        (5000, 157, "exact-subset"),  # 4*157*8200 = 5_149_600 > 5_120_000
    ],
)
def test_plan_boundaries(
    planned: tuple[VectorStore, np.ndarray], m: int, k: int, strategy: str
) -> None:
    store, data = planned
    where = f"i < {m}"
    if m > 4096:  # the rule the strategy follows past the subset limit
        assert (4 * k * PLAN_N > 1024 * m) == (strategy == "exact-subset")
    assert store.plan(k, where=where) == (strategy, m, PLAN_N)
    assert store.plan(k, where=where, exact=True) == ("exact-subset", m, PLAN_N)
    queries = data[[3, 4000, 8000]] + 0.01
    got = store.search_batch(queries, k=k, where=where)
    exact = store.search_batch(queries, k=k, where=where, exact=True)
    keys = [f"d{i:05d}" for i in range(PLAN_N)]
    for q, hits, truth in zip(queries, got, exact):
        check_exact(truth, q, data, keys, list(range(m)), k)
        assert len(hits) == min(k, m)
        assert all(int(h.key[1:]) < m for h in hits)
        overlap = len({h.key for h in hits} & {h.key for h in truth}) / len(truth)
        if strategy == "exact-subset":
            assert [h.key for h in hits] == [h.key for h in truth]
        else:
            assert overlap >= 0.8


def test_plan_with_callable_filter_and_prefix(planned: tuple[VectorStore, np.ndarray]) -> None:
    store, _ = planned

    # A callable is asked during the search: every document is a candidate before it.
    def keep(key: str) -> bool:
        return key.endswith("7")

    assert store.plan(10, filter=keep) == ("filtered-hnsw", PLAN_N, PLAN_N)
    assert store.plan(256, filter=keep) == ("filtered-hnsw", PLAN_N, PLAN_N)  # 4*256 = 1024
    assert store.plan(257, filter=keep) == ("exact-subset", PLAN_N, PLAN_N)
    hits = store.search(np.ones(8), k=10, filter=keep)
    assert len(hits) == 10 and all(h.key.endswith("7") for h in hits)
    assert store.plan(10, prefix="d0") == ("filtered-hnsw", PLAN_N, PLAN_N)  # every key
    assert store.plan(10, prefix="d00") == ("exact-subset", 1000, PLAN_N)
    assert store.plan(10, prefix="d00", where="i >= 500") == ("exact-subset", 500, PLAN_N)
    hits = store.search(np.ones(8), k=1000, prefix="d00", where="i >= 500")
    assert sorted(h.key for h in hits) == [f"d{i:05d}" for i in range(500, 1000)]
    assert store.plan(10, prefix="nope") == ("empty", 0, PLAN_N)


# -- arguments refused -----------------------------------------------------------------------


@pytest.fixture
def small(open_store: Callable[..., VectorStore]) -> VectorStore:
    store = open_store(4)
    store.insert_batch(
        ["a", "b", "c"],
        np.eye(4, dtype=np.float32)[:3] + 0.1,
        [{"i": 1, "text": "red apple"}, {"i": 2, "text": "green pear"}, {"i": 3}],
    )
    return store


BAD_WHERE: list[Any] = [
    "i",  # a column, not a predicate
    "'yes'",
    "i + 1",
    "missing = 1",
    "i = 1; DROP TABLE metadata",
    "i = 1 -- comment",
    "i = 1 /* comment */",
    "(i = 1",
    "i = 1)",
    ") OR (1 = 1",
    "read_text('/etc/passwd') IS NOT NULL",
    "(SELECT count(*) FROM read_text('/etc/passwd')) > 0",
    "EXISTS (SELECT * FROM read_csv('/etc/passwd'))",
    "count(*) > 0",
    "i = 'not a number'",
    "",
    "   ",
    5,
    b"i = 1",
    ["i = 1"],
]


@pytest.mark.parametrize("where", BAD_WHERE, ids=repr)
def test_bad_where(small: VectorStore, where: Any) -> None:
    q = np.ones(4)
    with pytest.raises(InvalidArgumentError):
        small.search(q, k=2, where=where)
    with pytest.raises(InvalidArgumentError):
        small.search_batch(q[None, :], k=2, where=where)
    with pytest.raises(InvalidArgumentError):
        small.plan(2, where=where)
    assert len(small) == 3  # nothing changed


def test_where_null_literal_admits_nothing(small: VectorStore) -> None:
    assert small.search(np.ones(4), k=2, where="NULL") == []
    assert [h.key for h in small.search(np.ones(4), k=5, where="TRUE")] != []


@pytest.mark.parametrize("k", [0, -1, 1.5, "3", True, None])
def test_bad_k(small: VectorStore, k: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="k must"):
        small.search(np.ones(4), k=k)
    with pytest.raises(InvalidArgumentError, match="k must"):
        small.search(np.ones(4), k=k, where="i > 0")
    with pytest.raises(InvalidArgumentError, match="k must"):
        small.search_batch(np.ones((2, 4)), k=k)
    with pytest.raises(InvalidArgumentError, match="k must"):
        small.plan(k)


def test_start_after_end(small: VectorStore) -> None:
    later = dt.datetime(2030, 1, 1, tzinfo=UTC)
    earlier = dt.datetime(2020, 1, 1, tzinfo=UTC)
    with pytest.raises(InvalidArgumentError, match="after"):
        small.search(np.ones(4), k=2, start=later, end=earlier)
    with pytest.raises(InvalidArgumentError, match="after"):
        small.plan(2, start=later, end=earlier)
    with pytest.raises(InvalidArgumentError):
        small.search(np.ones(4), k=2, start="not a time")


@pytest.mark.parametrize("weight", [-0.01, 1.01, float("nan"), True, "0.5", None])
def test_bad_text_weight(small: VectorStore, weight: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="text_weight"):
        small.search(np.ones(4), k=2, text="apple", text_weight=weight)
    with pytest.raises(InvalidArgumentError, match="text_weight"):
        small.search(np.ones(4), k=2, where="i > 0", text_weight=weight)


def test_bad_text_weight_without_filters(small: VectorStore) -> None:
    with pytest.raises(InvalidArgumentError, match="text_weight"):
        small.search(np.ones(4), k=2, text_weight=5.0)


def test_text_weight_bounds_accepted(small: VectorStore) -> None:
    for weight in (0, 0.0, 1, 1.0):
        hits = small.search(np.ones(4), k=3, text="apple", text_weight=weight)
        assert {h.key for h in hits} <= {"a", "b", "c"} and hits
    # all weight on the text: the one document that matches comes first
    assert small.search(np.ones(4), k=1, text="apple", text_weight=1.0)[0].key == "a"
