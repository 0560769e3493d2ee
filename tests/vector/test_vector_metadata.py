"""VectorStore metadata: every field type through every way out, input forms, schema
evolution, replace / delete semantics, bad input, and a random-operation model check."""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from synarrow import DbConfig, InvalidKeyError, InvalidValueError, SynaError
from synarrow.vector import VectorStore
from synarrow.vector_meta import LOG_KEY

Opener = Callable[..., VectorStore]
FAST = DbConfig(sync_on_write=False, auto_compact=False)
UTC = dt.timezone.utc
PLUS2 = dt.timezone(dt.timedelta(hours=2))

# One record of every field type, and what it reads back as.
RECORD: dict[str, Any] = {
    "flag": True,
    "count": 42,
    "ratio": 0.25,
    "title": "héllo wörld",
    "naive": dt.datetime(2024, 1, 2, 3, 4, 5, 6),
    "aware": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=PLUS2),
    "day": dt.date(2024, 5, 6),
    "tags": ["a", "b c"],
    "nothing": None,
}
EXPECTED: dict[str, Any] = {
    "flag": True,
    "count": 42,
    "ratio": 0.25,
    "title": "héllo wörld",
    "naive": dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC),
    "aware": dt.datetime(2024, 1, 2, 1, 4, 5, tzinfo=UTC),
    "day": dt.date(2024, 5, 6),
    "tags": ["a", "b c"],
}
# A second record that leaves most fields out.
SPARSE: dict[str, Any] = {"count": -7, "tags": []}
SPARSE_EXPECTED: dict[str, Any] = {"count": -7, "tags": []}


def vec(i: int, dims: int = 8) -> np.ndarray:
    """A distinct, reproducible vector per ``i``."""
    return np.random.default_rng(i).standard_normal(dims).astype(np.float32)


def same_record(got: dict[str, Any], want: dict[str, Any]) -> None:
    """``got == want``, and every timestamp in ``got`` is aware UTC."""
    assert got == want
    for name, value in got.items():
        if isinstance(value, dt.datetime):
            assert value.utcoffset() == dt.timedelta(0), name


def filled(store: VectorStore) -> VectorStore:
    """``store`` with docs ``full`` (every type), ``sparse`` and ``bare`` (no metadata)."""
    store.insert_batch(["full", "sparse"], np.stack([vec(1), vec(2)]), [RECORD, SPARSE])
    store.insert("bare", vec(3))
    return store


def check_filled(store: VectorStore) -> None:
    """Every way of reading the metadata of :func:`filled` gives the same records."""
    want = {"full": EXPECTED, "sparse": SPARSE_EXPECTED, "bare": {}}
    for key, record in want.items():
        found = store.get(key, with_metadata=True)
        assert found is not None
        np.testing.assert_array_equal(found[0], vec({"full": 1, "sparse": 2, "bare": 3}[key]))
        same_record(found[1], record)
        same_record(store.metadata(key) or {}, record)
    assert store.metadata("missing") is None
    assert store.get("missing", with_metadata=True) is None
    schema = store.metadata_schema
    assert schema.field("flag").type == pa.bool_()
    assert schema.field("count").type == pa.int64()
    assert schema.field("ratio").type == pa.float64()
    assert schema.field("title").type == pa.string()
    assert schema.field("naive").type == pa.timestamp("us", tz="UTC")
    assert schema.field("aware").type == pa.timestamp("us", tz="UTC")
    assert schema.field("day").type == pa.date32()
    assert schema.field("tags").type == pa.list_(pa.string())

    # search, list output
    hits = store.search(vec(1), k=3, exact=True, with_metadata=True)
    assert len(hits) == 3 and hits[0].key == "full"
    for h in hits:
        same_record(h.metadata, want[h.key])
    # arrow output: the fields as columns, null where absent
    table = store.search(vec(1), k=3, exact=True, with_metadata=True, output="arrow")
    assert table.column_names[:2] == ["key", "score"]
    rows = {r["key"]: r for r in table.to_pylist()}
    assert set(rows) == set(want)
    for key, record in want.items():
        present = {
            n: v for n, v in rows[key].items() if n not in ("key", "score") and v is not None
        }
        same_record(present, record)
    assert table.schema.field("naive").type == pa.timestamp("us", tz="UTC")
    # to_arrow: inserted_at and the fields
    full = store.to_arrow(with_metadata=True)
    assert full.column("key").to_pylist() == ["bare", "full", "sparse"]
    assert full.schema.field("inserted_at").type == pa.timestamp("us", tz="UTC")
    for row in full.to_pylist():
        present = {
            n: v
            for n, v in row.items()
            if n not in ("key", "vector", "inserted_at") and v is not None
        }
        same_record(present, want[row["key"]])
        assert row["inserted_at"].tzinfo is not None
    assert store.to_arrow().column_names == ["key", "vector"]
    # the SQL views: naive UTC timestamps
    meta = store.sql("SELECT * FROM metadata ORDER BY key").to_pylist()
    assert [r["key"] for r in meta] == ["bare", "full", "sparse"]
    by_key = {r["key"]: r for r in meta}
    assert by_key["full"]["naive"] == dt.datetime(2024, 1, 2, 3, 4, 5, 6)
    assert by_key["full"]["aware"] == dt.datetime(2024, 1, 2, 1, 4, 5)
    assert by_key["full"]["tags"] == ["a", "b c"]
    assert by_key["full"]["day"] == dt.date(2024, 5, 6)
    assert by_key["bare"]["count"] is None and by_key["sparse"]["count"] == -7
    got = store.sql(
        "SELECT key, count, len(vector) AS n FROM vectors WHERE list_contains(tags, 'a')"
    ).to_pylist()
    assert got == [{"key": "full", "count": 42, "n": 8}]


def test_round_trip_every_type(open_store: Opener) -> None:
    check_filled(filled(open_store(8)))


def test_polars_output(open_store: Opener) -> None:
    pl = pytest.importorskip("polars")
    store = filled(open_store(8))
    frame = store.search(vec(1), k=3, exact=True, with_metadata=True, output="polars")
    assert isinstance(frame, pl.DataFrame)
    rows = {r["key"]: r for r in frame.to_dicts()}
    assert rows["full"]["count"] == 42 and rows["full"]["tags"] == ["a", "b c"]
    assert rows["full"]["naive"] == EXPECTED["naive"]
    assert rows["full"]["aware"] == EXPECTED["aware"]
    assert rows["bare"]["count"] is None
    batch = store.search_batch(
        np.stack([vec(1), vec(2)]), k=2, exact=True, with_metadata=True, output="polars"
    )
    assert batch["query"].to_list() == [0, 0, 1, 1]
    assert batch.filter(pl.col("key") == "sparse")["count"].to_list() == [-7, -7]


def test_search_batch_arrow_with_metadata(open_store: Opener) -> None:
    store = filled(open_store(8))
    table = store.search_batch(
        np.stack([vec(2), vec(3)]), k=1, exact=True, with_metadata=True, output="arrow"
    )
    assert table.column("query").to_pylist() == [0, 1]
    assert table.column("key").to_pylist() == ["sparse", "bare"]
    assert table.column("count").to_pylist() == [-7, None]
    lists = store.search_batch(np.stack([vec(1)]), k=1, exact=True, with_metadata=True)
    same_record(lists[0][0].metadata, EXPECTED)


def test_sql_joins_metadata_to_history(open_store: Opener) -> None:
    store = filled(open_store(8))
    for i, value in enumerate([1.0, 2.0, 4.0]):
        store.db.append("sensor/full", value, timestamp=1_700_000_000_000_000 + i)
    store.db.append("sensor/sparse", 10.0, timestamp=1_700_000_000_000_000)
    got = store.sql(
        "SELECT m.key, m.count, sum(h.value) AS total, count(*) AS n FROM metadata m "
        "JOIN history h ON h.key = 'sensor/' || m.key GROUP BY m.key, m.count ORDER BY m.key"
    ).to_pylist()
    assert got == [
        {"key": "full", "count": 42, "total": 7.0, "n": 3},
        {"key": "sparse", "count": -7, "total": 10.0, "n": 1},
    ]
    # the time series keys are not documents of the store
    assert len(store) == 3 and "sensor/full" not in store


@pytest.mark.parametrize("how", ["reopen", "index_deleted", "readonly", "rebuild"])
def test_metadata_survives(store_path: Path, how: str) -> None:
    with VectorStore(store_path, 8, config=FAST) as store:
        filled(store)
        store.insert("later", vec(9), {"count": 1})
        store.delete("later")
    if how == "index_deleted":
        shutil.rmtree(store_path / "vector_index")
    # The directory also held the store's settings: dimensions are needed again.
    with VectorStore(store_path, 8, readonly=how == "readonly") as store:
        if how == "rebuild":
            store.rebuild()
        check_filled(store)
        assert store.get("later") is None and len(store) == 3
    if how == "index_deleted":
        assert (store_path / "vector_index").is_dir()  # rebuilt from the log and saved


def test_stale_checkpoint_folds_later_metadata(store_path: Path) -> None:
    """Metadata written after the last save is read back from the log on the next open."""
    with VectorStore(store_path, 8, config=FAST) as store:
        store.insert("a", vec(1), {"count": 1})
        store.flush()
        store.insert("a", vec(2), {"count": 2, "title": "second"})
        store.insert("b", vec(3), {"count": 3})
        # the checkpoint is stale from here on: reopen without saving it
        store.flush()
        store.insert("c", vec(4), {"count": 4})
        position = store.db.next_sequence
    with VectorStore(store_path, readonly=True) as store:
        assert store.db.next_sequence == position
        assert store.metadata("a") == {"count": 2, "title": "second"}
        assert store.metadata("b") == {"count": 3}
        assert store.metadata("c") == {"count": 4}


# -- input forms --------------------------------------------------------------------------

ROWS: list[dict[str, Any] | None] = [
    {"n": 1, "s": "x", "b": True, "t": dt.datetime(2024, 1, 1, tzinfo=UTC), "l": ["p"]},
    {"n": 2, "s": None, "b": False, "t": None, "l": None},
    {"n": None, "s": "z", "b": None, "t": dt.datetime(2024, 1, 3, tzinfo=UTC), "l": ["q", "r"]},
]
ROWS_EXPECTED = [
    {"n": 1, "s": "x", "b": True, "t": dt.datetime(2024, 1, 1, tzinfo=UTC), "l": ["p"]},
    {"n": 2, "b": False},
    {"s": "z", "t": dt.datetime(2024, 1, 3, tzinfo=UTC), "l": ["q", "r"]},
]


def _columns() -> dict[str, list[Any]]:
    return {name: [row[name] if row else None for row in ROWS] for name in ROWS[0] or {}}


def _form(kind: str) -> Any:
    if kind == "dicts":
        return ROWS
    if kind == "columns":
        return _columns()
    if kind == "arrow":
        return pa.table(_columns())
    if kind == "record_batch":
        return pa.RecordBatch.from_pydict(_columns())
    if kind == "pandas":
        frame = pd.DataFrame(
            {
                "n": pd.array([1, 2, None], dtype="Int64"),
                "s": ["x", None, "z"],
                "b": pd.array([True, False, None], dtype="boolean"),
                "t": pd.to_datetime(["2024-01-01", None, "2024-01-03"], utc=True),
                "l": [["p"], None, ["q", "r"]],
            }
        )
        return frame
    pl = pytest.importorskip("polars")
    return pl.from_arrow(pa.table(_columns()))


@pytest.mark.parametrize("kind", ["dicts", "columns", "arrow", "record_batch", "pandas", "polars"])
def test_input_forms(open_store: Opener, kind: str) -> None:
    store = open_store(8)
    metadata = _form(kind)
    assert (
        store.insert_batch(["k0", "k1", "k2"], np.stack([vec(i) for i in range(3)]), metadata) == 3
    )
    for i, want in enumerate(ROWS_EXPECTED):
        same_record(store.metadata(f"k{i}") or {}, want)
    assert store.metadata_schema.field("n").type == pa.int64()
    assert store.metadata_schema.field("t").type == pa.timestamp("us", tz="UTC")


def test_pandas_naive_datetimes_and_categoricals(open_store: Opener) -> None:
    store = open_store(8)
    frame = pd.DataFrame(
        {
            "when": pd.to_datetime(
                ["2024-03-01 12:00:00", "2024-03-02 00:00:00.000001"], format="ISO8601"
            ),
            "kind": pd.Categorical(["news", "blog"]),
        }
    )
    store.insert_batch(["a", "b"], np.stack([vec(1), vec(2)]), frame)
    assert store.metadata("a") == {"when": dt.datetime(2024, 3, 1, 12, tzinfo=UTC), "kind": "news"}
    assert store.metadata("b") == {
        "when": dt.datetime(2024, 3, 2, 0, 0, 0, 1, tzinfo=UTC),
        "kind": "blog",
    }
    assert store.metadata_schema.field("kind").type == pa.string()


def test_numpy_columns(open_store: Opener) -> None:
    store = open_store(8)
    store.insert_batch(
        ["a", "b"],
        np.stack([vec(1), vec(2)]),
        {"x": np.array([1, 2], np.int16), "y": np.array([0.5, 1.5], np.float32)},
    )
    assert store.metadata("b") == {"x": 2, "y": 1.5}
    assert store.metadata_schema.field("x").type == pa.int64()
    assert store.metadata_schema.field("y").type == pa.float64()


# -- schema evolution -----------------------------------------------------------------------


def log_size(store: VectorStore) -> int:
    """Entries the metadata log holds."""
    return store.db.get_history(LOG_KEY).num_rows if store.db.exists(LOG_KEY) else 0


def test_int_then_float_widens(store_path: Path) -> None:
    with VectorStore(store_path, 8, config=FAST) as store:
        store.insert("a", vec(1), {"x": 3})
        assert store.metadata_schema.field("x").type == pa.int64()
        store.insert("b", vec(2), {"x": 2.5})
        assert store.metadata_schema.field("x").type == pa.float64()
        got = store.metadata("a")
        assert got == {"x": 3.0} and isinstance(got["x"], float)
        store.insert("c", vec(3), {"x": 7})  # ints into a float field stay accepted
        assert store.metadata("c") == {"x": 7.0}
        assert store.sql("SELECT typeof(x) AS t FROM metadata LIMIT 1").to_pylist() == [
            {"t": "DOUBLE"}
        ]
    for readonly in (False, True):
        with VectorStore(store_path, readonly=readonly) as store:
            assert store.metadata_schema.field("x").type == pa.float64()
            assert store.metadata("a") == {"x": 3.0}
            assert store.metadata("b") == {"x": 2.5}
    shutil.rmtree(store_path / "vector_index")
    with VectorStore(store_path, 8) as store:
        assert store.metadata_schema.field("x").type == pa.float64()
        assert [store.metadata(k) for k in "abc"] == [{"x": 3.0}, {"x": 2.5}, {"x": 7.0}]


def test_new_field_later(open_store: Opener) -> None:
    store = open_store(8)
    store.insert("a", vec(1), {"x": 1})
    store.insert("b", vec(2), {"x": 2, "y": "new"})
    assert store.metadata_schema.names == ["x", "y"]
    assert store.metadata("a") == {"x": 1}
    assert store.metadata("b") == {"x": 2, "y": "new"}
    table = store.to_arrow(with_metadata=True)
    assert table.column("y").to_pylist() == [None, "new"]
    assert [r.key for r in store.search(vec(2), k=5, where="y = 'new'")] == ["b"]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"x": 1}, {"x": "one"}),
        ({"x": "one"}, {"x": 1}),
        ({"x": True}, {"x": 1}),
        ({"x": 1.5}, {"x": dt.date(2024, 1, 1)}),
        ({"x": ["a"]}, {"x": "a"}),
        ({"x": dt.datetime(2024, 1, 1)}, {"x": dt.date(2024, 1, 1)}),
    ],
)
def test_type_clash_refused_and_nothing_written(
    open_store: Opener, first: dict[str, Any], second: dict[str, Any]
) -> None:
    store = open_store(8)
    store.insert("a", vec(1), first)
    before = (
        len(store),
        log_size(store),
        store.db.next_sequence,
        store.db.get_history("a").num_rows,
        store.metadata_schema,
    )
    with pytest.raises(InvalidValueError, match="'x'"):
        store.insert("a", vec(2), second)
    with pytest.raises(InvalidValueError, match="'x'"):
        store.insert_batch(["b", "c"], np.stack([vec(3), vec(4)]), [{"y": 1}, second])
    after = (
        len(store),
        log_size(store),
        store.db.next_sequence,
        store.db.get_history("a").num_rows,
        store.metadata_schema,
    )
    assert after == before
    found = store.get("a", with_metadata=True)
    assert found is not None
    np.testing.assert_array_equal(found[0], vec(1))
    assert found[1] == store.metadata("a") and "x" in found[1]
    assert "b" not in store and "c" not in store and not store.db.exists("b")
    assert "y" not in store.metadata_schema.names
    # The store still works afterwards.
    store.insert("d", vec(5), first)
    assert store.metadata("d") == store.metadata("a")


# -- replace and delete ---------------------------------------------------------------------


def test_reinsert_without_metadata_clears_it(store_path: Path) -> None:
    with VectorStore(store_path, 8, config=FAST) as store:
        store.insert("a", vec(1), {"x": 1})
        store.insert("a", vec(2))
        assert store.metadata("a") == {}
        store.insert("b", vec(3), {"x": 2})
        store.insert_batch(["b"], vec(4)[None, :])
        assert store.metadata("b") == {}
        assert store.search(vec(2), k=5, where="x IS NOT NULL") == []
    with VectorStore(store_path) as store:
        assert store.metadata("a") == {} and store.metadata("b") == {}
        np.testing.assert_array_equal(store.get("b"), vec(4))


def test_duplicate_key_in_batch_keeps_last_row(store_path: Path) -> None:
    with VectorStore(store_path, 8, config=FAST) as store:
        store.insert_batch(
            ["a", "b", "a"],
            np.stack([vec(1), vec(2), vec(3)]),
            [{"x": 1, "first": True}, {"x": 2}, {"x": 3}],
        )
        assert len(store) == 2
        found = store.get("a", with_metadata=True)
        assert found is not None
        np.testing.assert_array_equal(found[0], vec(3))
        assert found[1] == {"x": 3}
        assert store.metadata("b") == {"x": 2}
        # the last row without a record wins too
        store.insert_batch(["c", "c"], np.stack([vec(4), vec(5)]), [{"x": 4}, None])
        assert store.metadata("c") == {}
        np.testing.assert_array_equal(store.get("c"), vec(5))
    shutil.rmtree(store_path / "vector_index")
    with VectorStore(store_path, 8) as store:
        assert store.metadata("a") == {"x": 3}
        assert store.metadata("c") == {}
        np.testing.assert_array_equal(store.get("a"), vec(3))


def test_delete_removes_metadata(store_path: Path) -> None:
    with VectorStore(store_path, 8, config=FAST) as store:
        store.insert_batch(["a", "b"], np.stack([vec(1), vec(2)]), [{"x": 1}, {"x": 2}])
        assert store.delete("a")
        assert store.metadata("a") is None and store.get("a", with_metadata=True) is None
        assert store.sql("SELECT key FROM metadata").to_pylist() == [{"key": "b"}]
        assert [r.key for r in store.search(vec(1), k=5, where="x >= 1")] == ["b"]
        store.insert("a", vec(3))
        assert store.metadata("a") == {}
    with VectorStore(store_path) as store:
        assert store.metadata("a") == {} and store.metadata("b") == {"x": 2}
    shutil.rmtree(store_path / "vector_index")
    with VectorStore(store_path, 8) as store:
        assert store.metadata("a") == {} and store.metadata("b") == {"x": 2}


def test_vector_rewritten_through_db_drops_stale_record(store_path: Path) -> None:
    with VectorStore(store_path, 8, config=FAST) as store:
        store.insert("a", vec(1), {"x": 1})
        store.insert("b", vec(2), {"x": 2})
        store.db.append("a", vec(7))  # a new vector the metadata log knows nothing of
        store.flush()
        assert store.metadata("a") == {}
        assert store.metadata("b") == {"x": 2}
    with VectorStore(store_path) as store:
        assert store.metadata("a") == {}
        np.testing.assert_array_equal(store.get("a"), vec(7))


# -- bad input ------------------------------------------------------------------------------

BAD_RECORDS: list[Any] = [
    {"key": 1},
    {"vector": 1},
    {"score": 1.0},
    {"inserted_at": 1},
    {"query": "q"},
    {"__x": 1},
    {"Key": 1},
    {"SCORE": 1},
    {"": 1},
    {1: "not a str name"},
    {"ab": 1, "AB": 2},
    {"nested": {"a": 1}},
    {"raw": b"bytes"},
    {"ints": [1, 2]},
    {"mixed": [1, "a"]},
    {"tabs\t": 1},
    {"x" * 300: 1},
]


def _unchanged(store: VectorStore) -> tuple[Any, ...]:
    return len(store), log_size(store), store.db.next_sequence, str(store.metadata_schema)


@pytest.mark.parametrize("record", BAD_RECORDS, ids=lambda r: repr(r)[:30])
def test_bad_record_refused(open_store: Opener, record: Any) -> None:
    store = open_store(8)
    store.insert("a", vec(1), {"ok": 1})
    before = _unchanged(store)
    with pytest.raises(InvalidValueError):
        store.insert("new", vec(2), record)
    with pytest.raises(InvalidValueError):
        store.insert_batch(["n1", "n2"], np.stack([vec(3), vec(4)]), [{"ok": 2}, record])
    assert _unchanged(store) == before
    assert "new" not in store and "n1" not in store and not store.db.exists("n1")
    assert store.metadata("a") == {"ok": 1}


def test_case_clash_with_stored_field(open_store: Opener) -> None:
    store = open_store(8)
    store.insert("a", vec(1), {"year": 2024})
    before = _unchanged(store)
    with pytest.raises(InvalidValueError, match="case"):
        store.insert("b", vec(2), {"Year": 2025})
    assert _unchanged(store) == before and "b" not in store


@pytest.mark.parametrize(
    "metadata",
    [
        [{"x": 1}],  # one row for two vectors
        [{"x": 1}, {"x": 2}, {"x": 3}],
        {"x": [1, 2, 3]},
        {"x": [1, 2], "y": [1]},
        {},
        pa.table({"x": [1]}),
        pd.DataFrame({"x": [1, 2, 3]}),
        [{"x": 1}, "row"],
        [{"x": 1}, 5],
        "x=1",
        b"x",
        42,
    ],
    ids=repr,
)
def test_bad_batch_metadata_refused(open_store: Opener, metadata: Any) -> None:
    store = open_store(8)
    before = _unchanged(store)
    with pytest.raises(InvalidValueError):
        store.insert_batch(["a", "b"], np.stack([vec(1), vec(2)]), metadata)
    assert _unchanged(store) == before and len(store) == 0 and not store.db.exists("a")


@pytest.mark.parametrize("metadata", [[{"x": 1}], "x", 3, ("x", 1), pa.table({"x": [1]})], ids=repr)
def test_insert_metadata_must_be_a_dict(open_store: Opener, metadata: Any) -> None:
    store = open_store(8)
    with pytest.raises(InvalidValueError, match="dict"):
        store.insert("a", vec(1), metadata)
    assert len(store) == 0 and not store.db.exists("a") and log_size(store) == 0


def test_errors_are_syna_errors() -> None:
    assert issubclass(InvalidValueError, SynaError)
    assert issubclass(InvalidKeyError, SynaError)


def test_metadata_log_key_is_not_a_document(open_store: Opener) -> None:
    store = open_store(8)
    store.insert("a", vec(1), {"x": 1})
    assert store.keys() == ["a"]
    with pytest.raises(InvalidKeyError):
        store.insert(LOG_KEY, vec(2))
    assert store.db.exists(LOG_KEY)


# -- random operations against a dict model ------------------------------------------------

KEYS = st.sampled_from([f"k{i}" for i in range(6)])
FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "num": st.one_of(st.integers(-1000, 1000), st.floats(-1e6, 1e6, allow_nan=False)),
        "name": st.one_of(st.none(), st.text(max_size=5)),
        "ok": st.booleans(),
        "tags": st.lists(st.sampled_from(["a", "b", "c"]), max_size=3),
        "when": st.datetimes(
            min_value=dt.datetime(1990, 1, 1),
            max_value=dt.datetime(2100, 1, 1),
            timezones=st.sampled_from([None, UTC, PLUS2]),
        ),
        "day": st.dates(min_value=dt.date(1970, 1, 1), max_value=dt.date(2100, 1, 1)),
    },
)
RECORDS = st.one_of(st.none(), FIELDS)
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), KEYS, RECORDS),
        st.tuples(st.just("batch"), st.lists(st.tuples(KEYS, RECORDS), min_size=1, max_size=5)),
        st.tuples(st.just("delete"), KEYS),
        st.tuples(st.just("reopen"), st.sampled_from(["plain", "no_index", "readonly"])),
    ),
    max_size=16,
)


def expected_record(record: dict[str, Any] | None) -> dict[str, Any]:
    """What get(with_metadata=True) gives for ``record``: nulls out, times aware UTC."""
    out = {}
    for name, value in (record or {}).items():
        if value is None:
            continue
        if isinstance(value, dt.datetime):
            value = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
        out[name] = value
    return out


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS)
def test_random_operations_match_model(ops: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "v.db"
        store = VectorStore(path, 4, config=FAST)
        model: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}
        counter = 0
        try:
            for op in ops:
                if op[0] == "insert":
                    _, key, record = op
                    counter += 1
                    store.insert(key, vec(counter, 4), record)
                    model[key] = (vec(counter, 4), expected_record(record))
                elif op[0] == "batch":
                    keys = [key for key, _ in op[1]]
                    vectors = []
                    for key, record in op[1]:
                        counter += 1
                        vectors.append(vec(counter, 4))
                        model[key] = (vec(counter, 4), expected_record(record))
                    store.insert_batch(keys, np.stack(vectors), [r for _, r in op[1]])
                elif op[0] == "delete":
                    assert store.delete(op[1]) == (op[1] in model)
                    model.pop(op[1], None)
                else:
                    store.close()
                    if op[1] == "no_index":
                        shutil.rmtree(path / "vector_index", ignore_errors=True)
                    if op[1] == "readonly":
                        store = VectorStore(path, 4, readonly=True)
                        check_model(store, model)
                        store.close()
                    store = VectorStore(path, 4, config=FAST)
                check_model(store, model)
            store.close()
            store = VectorStore(path, readonly=True)
            check_model(store, model)
        finally:
            store.close()


def check_model(store: VectorStore, model: dict[str, tuple[np.ndarray, dict[str, Any]]]) -> None:
    """The store holds exactly the model's keys, vectors and records."""
    assert store.keys() == sorted(model)
    for key, (vector, record) in model.items():
        found = store.get(key, with_metadata=True)
        assert found is not None, key
        np.testing.assert_array_equal(found[0], vector)
        same_record(found[1], record)
    if model:
        table = store.to_arrow(with_metadata=True)
        assert table.column("key").to_pylist() == sorted(model)
        fields = [n for n in table.column_names if n not in ("key", "vector", "inserted_at")]
        for row in table.select(["key", *fields]).to_pylist():
            got = {n: v for n, v in row.items() if n != "key" and v is not None}
            assert got == model[row["key"]][1]


def test_null_only_field_same_after_rebuild_from_log(store_path: Path) -> None:
    with VectorStore(store_path, 8, config=FAST) as store:
        store.insert("a", vec(1), {"x": 1, "later": None})
        live = store.metadata_schema
        assert store.search(vec(1), k=1, where="later IS NULL")[0].key == "a"
    shutil.rmtree(store_path / "vector_index")
    with VectorStore(store_path, 8) as store:
        assert store.metadata_schema == live
        assert store.search(vec(1), k=1, where="later IS NULL")[0].key == "a"
