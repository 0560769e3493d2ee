"""Hybrid search (``search(..., text=...)``) on a store, against a ranking computed by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from synarrow import VectorStore
from synarrow.errors import InvalidArgumentError

QUERY = np.array([1.0, 0.0], np.float32)
DOCS = {
    # key: (vector, text); cosine distance to QUERY grows a < b < c < d
    "a": ([1.0, 0.0], "x"),
    "b": ([1.0, 0.2], "y"),
    "c": ([1.0, 1.0], "apple banana"),
    "d": ([0.0, 1.0], "apple"),
}


@pytest.fixture
def store(tmp_path: Path) -> VectorStore:
    s = VectorStore(tmp_path / "h.db", dimensions=2)
    keys = list(DOCS)
    s.insert_batch(
        keys,
        np.array([DOCS[k][0] for k in keys], np.float32),
        metadata=[{"text": DOCS[k][1]} for k in keys],
    )
    yield s
    s.close()


def test_fusion_matches_the_hand_computed_ranking(store: VectorStore) -> None:
    # Vector ranks: a 1, b 2, c 3, d 4. BM25 for "apple": d (shorter) 1, c 2; a, b absent.
    # Fused, weights 0.5 / 0.5, constant 60:
    #   a = 0.5/61                 = 0.0081967
    #   b = 0.5/62                 = 0.0080645
    #   c = 0.5/63 + 0.5/62        = 0.0079365 + 0.0080645 = 0.0160010
    #   d = 0.5/64 + 0.5/61        = 0.0078125 + 0.0081967 = 0.0160092
    # so d, c, a, b.
    hits = store.search(QUERY, k=4, text="apple")
    assert [h.key for h in hits] == ["d", "c", "a", "b"]
    # score stays the cosine distance of each result (not sorted in a hybrid search)
    expected = {"a": 0.0, "b": 1 - 1 / np.sqrt(1.04), "c": 1 - 1 / np.sqrt(2), "d": 1.0}
    for h in hits:
        assert h.score == pytest.approx(expected[h.key], abs=1e-6)


def test_text_weight_moves_the_balance(store: VectorStore) -> None:
    # Only the vector ranking counts: its order.
    assert [h.key for h in store.search(QUERY, k=4, text="apple", text_weight=0.0)] == [
        "a",
        "b",
        "c",
        "d",
    ]
    # Only the text ranking counts: the documents holding the word, BM25 order.
    assert [h.key for h in store.search(QUERY, k=4, text="apple", text_weight=1.0)] == ["d", "c"]
    # 0.9 on text: c = 0.1/63 + 0.9/62 = 0.016103, d = 0.1/64 + 0.9/61 = 0.016317,
    # a = 0.1/61 = 0.001639, b = 0.1/62 = 0.001613.
    assert [h.key for h in store.search(QUERY, k=4, text="apple", text_weight=0.9)] == [
        "d",
        "c",
        "a",
        "b",
    ]


def test_hybrid_respects_filters_and_k(store: VectorStore) -> None:
    hits = store.search(QUERY, k=2, text="apple", where="key <> 'd'", with_metadata=True)
    # d is filtered out of both rankings: c = 0.5/63 + 0.5/61 (text rank 1 now), a = 0.5/61.
    assert [h.key for h in hits] == ["c", "a"]
    assert hits[0].metadata == {"text": "apple banana"}
    batch = store.search_batch(np.stack([QUERY, QUERY]), k=1, text=["apple", "y"])
    assert [[h.key for h in row] for row in batch] == [["d"], ["b"]]


def test_hybrid_follows_changes(store: VectorStore) -> None:
    store.search(QUERY, k=1, text="apple")  # builds the text index
    store.insert("b", np.array([1.0, 0.2], np.float32), {"text": "apple apple"})
    store.delete("d")
    hits = store.search(QUERY, k=3, text="apple")
    # b: vector rank 2, text rank 1 (tf 2 in a 2-word doc); c: 3 and 2; a: 1 and none.
    assert [h.key for h in hits] == ["b", "c", "a"]


def test_bad_text_queries(store: VectorStore) -> None:
    for bad in ("", "   ", "!!!"):
        with pytest.raises(InvalidArgumentError):
            store.search(QUERY, k=2, text=bad)
    with pytest.raises(InvalidArgumentError):
        store.search(QUERY, k=2, text=3)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="text queries"):
        store.search_batch(np.stack([QUERY, QUERY]), k=1, text=["apple"])
