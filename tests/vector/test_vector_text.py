"""The BM25 text index and reciprocal rank fusion against plain reference versions.

The reference BM25 below is the module's formula written out with dicts and ``math.log``;
hypothesis drives random sets, replaces and removes and random queries through both.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synarrow.errors import InvalidArgumentError, InvalidValueError
from synarrow.vector_text import TextIndex, reciprocal_rank_fusion, tokenize

# -- the reference ---------------------------------------------------------------------------


def reference_scores(
    docs: dict[int, list[str]], query: str, k1: float = 1.2, b: float = 0.75
) -> dict[int, float]:
    """Okapi BM25 with Lucene's idf, each query token counted once per occurrence."""
    n_docs = len(docs)
    if not n_docs:
        return {}
    avgdl = sum(len(toks) for toks in docs.values()) / n_docs
    df: Counter[str] = Counter()
    for toks in docs.values():
        df.update(set(toks))
    out = {}
    for label, toks in docs.items():
        tf = Counter(toks)
        score = 0.0
        for term in tokenize(query):
            if tf[term]:
                idf = math.log(1 + (n_docs - df[term] + 0.5) / (df[term] + 0.5))
                norm = k1 * (1 - b + b * len(toks) / avgdl)
                score += idf * tf[term] * (k1 + 1) / (tf[term] + norm)
        out[label] = score
    return out


# One step of a history: ("set", [(label, text), ...]) or ("remove", [label, ...]).
Op = tuple[str, list[Any]]


def u64(values: list[int]) -> np.ndarray:
    return np.array(values, dtype=np.uint64)


def check_against_reference(
    index: TextIndex,
    docs: dict[int, list[str]],
    query: str,
    k: int,
    allowed: np.ndarray | None,
    universe: int,
) -> None:
    """``scores`` matches the reference; ``search`` is the top ``k`` of ``scores``."""
    every = u64(list(range(universe)))
    got = index.scores(query, every)
    assert got.dtype == np.float64
    want = reference_scores(docs, query, index.k1, index.b)
    for label, score in zip(every.tolist(), got.tolist()):
        expected = want.get(label, 0.0)
        if expected == 0.0:
            assert score == 0.0, label
        else:
            assert score == pytest.approx(expected, rel=1e-9, abs=0.0), label

    def may(label: int) -> bool:
        return allowed is None or (label < len(allowed) and bool(allowed[label]))

    eligible = [lab for lab in range(universe) if got[lab] > 0 and may(lab)]
    expected_order = sorted(eligible, key=lambda lab: (-got[lab], lab))[:k]
    labels, scores = index.search(query, k, allowed)
    assert labels.dtype == np.uint64 and scores.dtype == np.float64
    assert labels.tolist() == expected_order
    assert scores.tolist() == [got[lab] for lab in expected_order]
    assert all(s > 0 for s in scores.tolist())


# -- hypothesis: random histories ------------------------------------------------------------

WORDS = ["apple", "Apple", "APPLE", "banana", "cherry", "date", "elder", "fig", "grape"]
SEPARATORS = [" ", ", ", "-", "\n", "...", " (", "! "]
TEXTS = st.one_of(
    st.none(),
    st.sampled_from(["", "   ", "?!", "-- ..."]),
    st.lists(st.tuples(st.sampled_from(WORDS), st.sampled_from(SEPARATORS)), max_size=8).map(
        lambda parts: "".join(w + s for w, s in parts)
    ),
)
LABELS = st.integers(0, 20)
UNIVERSE = 24
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.lists(st.tuples(LABELS, TEXTS), max_size=6)),
        st.tuples(st.just("remove"), st.lists(LABELS, max_size=4)),
    ),
    max_size=30,
)
QUERIES = st.lists(st.sampled_from([*WORDS, "zebra", "fig,"]), min_size=1, max_size=4).map(" ".join)
MASKS = st.one_of(
    st.none(), st.lists(st.booleans(), max_size=UNIVERSE + 2).map(lambda m: np.array(m, dtype=bool))
)


def apply(index: TextIndex, docs: dict[int, list[str]], ops: list[Op], dtype: type) -> None:
    """Run ``ops`` on the index and on the model ``docs`` (label -> tokens)."""
    for op, arg in ops:
        if op == "set":
            labels: np.ndarray = np.array([lab for lab, _ in arg], dtype=dtype)
            index.set(labels, [text for _, text in arg])
            for label, text in arg:  # later entries win, as in the index
                toks = tokenize(text) if text is not None else []
                if toks:
                    docs[label] = toks
                else:
                    docs.pop(label, None)
        else:
            index.remove(np.array(arg, dtype=dtype))
            for label in arg:
                docs.pop(label, None)


@settings(max_examples=150, deadline=None)
@given(
    ops=OPS,
    queries=st.lists(st.tuples(QUERIES, st.integers(1, 25), MASKS), min_size=1, max_size=4),
    k1=st.sampled_from([1.2, 0.0, 2.5]),
    b=st.sampled_from([0.75, 0.0, 1.0]),
    dtype=st.sampled_from([np.uint64, np.int64, np.uint32]),
)
def test_matches_reference_bm25(
    ops: list[Op],
    queries: list[tuple[str, int, np.ndarray | None]],
    k1: float,
    b: float,
    dtype: type,
) -> None:
    index = TextIndex(k1=k1, b=b)
    docs: dict[int, list[str]] = {}
    apply(index, docs, ops, dtype)
    assert len(index) == len(docs)
    for label in range(UNIVERSE):
        assert (label in index) == (label in docs)
    for query, k, allowed in queries:
        check_against_reference(index, docs, query, k, allowed, UNIVERSE)


@settings(max_examples=100, deadline=None)
@given(ops=OPS, queries=st.lists(st.tuples(QUERIES, st.integers(1, 25), MASKS), max_size=4))
def test_incremental_equals_rebuilt(
    ops: list[Op], queries: list[tuple[str, int, np.ndarray | None]]
) -> None:
    index = TextIndex()
    docs: dict[int, list[str]] = {}
    apply(index, docs, ops, np.uint64)
    rebuilt = TextIndex()
    final = sorted(docs, reverse=True)  # another order than the history's
    rebuilt.set(u64(final), [" ".join(docs[label]) for label in final])
    assert len(rebuilt) == len(index)
    for query, k, allowed in queries:
        a_labels, a_scores = index.search(query, k, allowed)
        b_labels, b_scores = rebuilt.search(query, k, allowed)
        assert a_labels.tolist() == b_labels.tolist()
        assert a_scores.tolist() == b_scores.tolist()  # same arithmetic, bit for bit


WIDE_LABELS = st.integers(0, 120)
WORDY = st.lists(st.sampled_from(WORDS), min_size=1, max_size=6).map(" ".join)
LONG_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.lists(st.tuples(WIDE_LABELS, WORDY), min_size=1, max_size=4)),
        st.tuples(st.just("set"), st.lists(st.tuples(WIDE_LABELS, TEXTS), min_size=1, max_size=4)),
        st.tuples(st.just("set"), st.lists(st.tuples(WIDE_LABELS, WORDY), min_size=1, max_size=4)),
        st.tuples(st.just("remove"), st.lists(WIDE_LABELS, max_size=3)),
    ),
    min_size=25,
    max_size=50,
)


@settings(max_examples=60, deadline=None)
@given(
    ops=LONG_OPS,
    queries=st.lists(st.tuples(QUERIES, st.integers(1, 130), MASKS), min_size=1, max_size=3),
)
def test_long_histories_match_reference_bm25(
    ops: list[Op], queries: list[tuple[str, int, np.ndarray | None]]
) -> None:
    """Histories long enough for more than 16 segments, so merges happen on the way."""
    index = TextIndex()
    docs: dict[int, list[str]] = {}
    apply(index, docs, ops, np.uint64)
    assert len(index) == len(docs)
    for query, k, allowed in queries:
        check_against_reference(index, docs, query, k, allowed, 124)


def test_many_segments_and_stale_postings_stay_right() -> None:
    """Dozens of small sets (segment merges) and heavy replacing (stale postings dropped)."""
    rng = np.random.default_rng(7)
    vocab = [f"w{i}" for i in range(60)]
    index = TextIndex()
    docs: dict[int, list[str]] = {}
    for step in range(80):
        labels = rng.choice(300, size=int(rng.integers(1, 40)), replace=False)
        texts: list[str | None] = []
        for _ in labels:
            n = int(rng.integers(0, 9))
            texts.append(" ".join(rng.choice(vocab, n)) if n or step % 3 else None)
        index.set(u64(labels.tolist()), texts)
        for label, text in zip(labels.tolist(), texts):
            if text:
                docs[label] = tokenize(text)
            else:
                docs.pop(label, None)
        if step % 10 == 9:
            gone = rng.choice(300, size=25, replace=False).tolist()
            index.remove(u64(gone))
            for label in gone:
                docs.pop(label, None)
    assert len(index) == len(docs)
    mask = rng.random(250) < 0.5
    for query in ["w1 w2 w3", "w0", "w5 w5 w59", "w7 nothing"]:
        check_against_reference(index, docs, query, 15, None, 300)
        check_against_reference(index, docs, query, 15, mask, 300)


# -- behaviour spelt out ---------------------------------------------------------------------


def test_a_worked_example() -> None:
    # N = 3, |d| = 2, 2, 3, avgdl = 7/3; "red" is in 2 documents:
    # idf = ln(1 + (3 - 2 + 0.5) / (2 + 0.5)) = ln(1.6)
    # label 3 (tf 2, |d| 3): ln(1.6) * 2 * 2.2 / (2 + 1.2 * (0.25 + 0.75 * 3 / (7/3)))
    # label 1 (tf 1, |d| 2): ln(1.6) * 1 * 2.2 / (1 + 1.2 * (0.25 + 0.75 * 2 / (7/3)))
    index = TextIndex()
    index.set(u64([1, 2, 3]), ["red car", "blue car", "Red, red bus"])
    labels, scores = index.search("red", k=10)
    assert labels.tolist() == [3, 1]
    assert scores[0] == pytest.approx(math.log(1.6) * 4.4 / (2 + 1.2 * (0.25 + 0.75 * 9 / 7)))
    assert scores[1] == pytest.approx(math.log(1.6) * 2.2 / (1 + 1.2 * (0.25 + 0.75 * 6 / 7)))


def test_a_repeated_query_word_counts_once_per_occurrence() -> None:
    index = TextIndex()
    index.set(u64([0, 1, 2]), ["red car", "blue car", "red bus red"])
    once = index.scores("red", u64([0, 1, 2]))
    twice = index.scores("red RED", u64([0, 1, 2]))
    assert once[0] > 0 and once[1] == 0
    assert twice.tolist() == pytest.approx((2 * once).tolist(), rel=1e-12)
    # "car red red": red now outweighs car, so label 2 (no car) beats label 1 (no red).
    mixed = index.scores("car red red", u64([1, 2]))
    assert mixed[1] > mixed[0] > 0


def test_ties_go_to_the_smaller_label() -> None:
    index = TextIndex()
    index.set(u64([9, 4, 7, 2]), ["same words", "same words", "same words", "other"])
    labels, scores = index.search("same", k=2)
    assert labels.tolist() == [4, 7]
    assert scores[0] == scores[1]
    labels, _ = index.search("words", k=10)
    assert labels.tolist() == [4, 7, 9]


def test_statistics_cover_every_document_not_just_the_allowed() -> None:
    index = TextIndex()
    index.set(u64([0, 1, 2, 3]), ["cat", "cat dog", "dog", "cat cat mouse"])
    full_labels, full_scores = index.search("cat", k=10)
    allowed = np.array([False, True, False, True])
    labels, scores = index.search("cat", k=10, allowed=allowed)
    assert labels.tolist() == [lab for lab in full_labels.tolist() if allowed[lab]]
    by_label = dict(zip(full_labels.tolist(), full_scores.tolist()))
    assert scores.tolist() == [by_label[lab] for lab in labels.tolist()]


def test_labels_beyond_the_mask_are_not_allowed() -> None:
    index = TextIndex()
    index.set(u64([1, 5, 2**40]), ["x", "x", "x"])
    labels, _ = index.search("x", k=5, allowed=np.array([True, True, True]))
    assert labels.tolist() == [1]
    assert index.search("x", k=5, allowed=np.zeros(0, bool))[0].tolist() == []
    labels, _ = index.search("x", k=5)
    assert labels.tolist() == [1, 5, 2**40]


def test_only_documents_holding_a_query_word_come_back() -> None:
    index = TextIndex()
    index.set(u64([0, 1, 2]), ["alpha", "beta", "gamma"])
    labels, scores = index.search("alpha unknown", k=10)
    assert labels.tolist() == [0] and scores[0] > 0
    labels, scores = index.search("unknown", k=10)
    assert labels.dtype == np.uint64 and scores.dtype == np.float64 and len(labels) == 0
    assert index.scores("beta", u64([0, 1, 99])).tolist()[0::2] == [0.0, 0.0]


def test_empty_index() -> None:
    index = TextIndex()
    assert len(index) == 0 and 0 not in index
    labels, scores = index.search("anything", k=3)
    assert len(labels) == 0 and len(scores) == 0
    assert index.scores("anything", u64([0, 1])).tolist() == [0.0, 0.0]
    index.remove(u64([1, 2]))  # unknown labels are ignored
    assert len(index) == 0


def test_set_replace_remove_and_membership() -> None:
    index = TextIndex()
    index.set(u64([1, 2, 3]), ["one", "two", "three"])
    assert len(index) == 3 and np.uint64(2) in index and 2 in index and "2" not in index
    index.set(u64([2, 3]), ["deux", None])
    assert len(index) == 2 and 3 not in index
    assert index.search("two", k=3)[0].tolist() == []
    assert index.search("deux", k=3)[0].tolist() == [2]
    index.set(u64([1]), ["!!! ..."])  # a text without words removes the label's text
    assert 1 not in index and len(index) == 1
    index.remove(u64([2, 2, 77]))
    assert len(index) == 0
    index.set(u64([2]), ["back again"])
    assert index.search("again", k=1)[0].tolist() == [2]


def test_the_last_text_of_a_repeated_label_wins() -> None:
    index = TextIndex()
    index.set(u64([4, 5, 4]), ["first", "middle", "last"])
    assert len(index) == 2
    assert index.search("first", k=2)[0].tolist() == []
    assert index.search("last", k=2)[0].tolist() == [4]
    index.set(u64([5, 5]), ["again", None])
    assert 5 not in index


# -- the tokenizer ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("Hello, WORLD!", ["hello", "world"]),
        ("Straße STRASSE", ["strasse", "strasse"]),  # casefold, not lower
        ("ΣΊΣΥΦΟΣ σίσυφος", ["σίσυφοσ", "σίσυφοσ"]),  # final sigma folds too
        ("naïve Café", ["naïve", "café"]),
        ("東京タワー 2024年", ["東京タワー", "2024年"]),
        ("don't stop-me_now", ["don", "t", "stop", "me_now"]),  # _ is a word character
        ("x2 3.14 -7", ["x2", "3", "14", "7"]),
        ("running runs ran", ["running", "runs", "ran"]),  # no stemming
        ("the a of", ["the", "a", "of"]),  # no stop words
        ("", []),
        (" \t\n?!…", []),
    ],
)
def test_tokenize(text: str, tokens: list[str]) -> None:
    assert tokenize(text) == tokens


@given(st.text())
def test_tokenize_is_words_of_the_casefolded_text(text: str) -> None:
    tokens = tokenize(text)
    assert tokens == tokenize(text)
    assert all(re.fullmatch(r"\w+", tok) for tok in tokens)
    assert "".join(tokens) == "".join(re.findall(r"\w", text.casefold()))


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["", "   ", "?!", " -- ... "])
def test_a_query_without_words_is_refused(query: str) -> None:
    index = TextIndex()
    index.set(u64([0]), ["word"])
    with pytest.raises(InvalidArgumentError, match="holds no words"):
        index.search(query, k=1)
    with pytest.raises(InvalidArgumentError, match="holds no words"):
        index.scores(query, u64([0]))


@pytest.mark.parametrize("query", [None, b"word", 3, ["word"]])
def test_a_query_that_is_not_str_is_refused(query: object) -> None:
    index = TextIndex()
    with pytest.raises(InvalidArgumentError, match="must be a str"):
        index.search(query, k=1)  # type: ignore[arg-type]


@pytest.mark.parametrize("k", [0, -1, 1.5, True, "3", None])
def test_bad_k_is_refused(k: object) -> None:
    index = TextIndex()
    index.set(u64([0]), ["word"])
    with pytest.raises(InvalidArgumentError, match="k must be an int > 0"):
        index.search("word", k=k)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match="k must be an int > 0"):
        reciprocal_rank_fusion([u64([1])], [1.0], k=k)  # type: ignore[arg-type]


def test_a_text_that_is_not_str_is_refused_and_nothing_changes() -> None:
    index = TextIndex()
    index.set(u64([0]), ["kept"])
    with pytest.raises(InvalidValueError, match="label 12 is a bytes"):
        index.set(u64([11, 12]), ["fine", b"raw"])  # type: ignore[list-item]
    with pytest.raises(InvalidValueError, match="label 3 is a int"):
        index.set(u64([3]), [3])  # type: ignore[list-item]
    assert len(index) == 1 and 11 not in index


@pytest.mark.parametrize(
    ("labels", "texts", "match"),
    [
        (np.array([1.0]), ["x"], "unsigned integers"),
        (np.array([True]), ["x"], "unsigned integers"),
        (np.array([-1, 2]), ["x", "y"], "negative"),
        (np.array([[1]], np.uint64), ["x"], "1-D"),
        (u64([1, 2]), ["x"], "2 labels but 1 texts"),
        (u64([1]), "x", "sequence of str"),
    ],
)
def test_bad_labels_or_texts_are_refused(labels: np.ndarray, texts: object, match: str) -> None:
    index = TextIndex()
    with pytest.raises(InvalidArgumentError, match=match):
        index.set(labels, texts)  # type: ignore[arg-type]
    assert len(index) == 0


def test_bad_masks_and_parameters_are_refused() -> None:
    index = TextIndex()
    index.set(u64([0]), ["word"])
    with pytest.raises(InvalidArgumentError, match="allowed must be a 1-D bool array"):
        index.search("word", k=1, allowed=np.array([1, 0]))
    with pytest.raises(InvalidArgumentError, match="negative"):
        index.remove(np.array([-3]))
    with pytest.raises(InvalidArgumentError, match="negative"):
        index.scores("word", np.array([-3]))
    for kwargs in ({"k1": -0.1}, {"k1": math.inf}, {"b": 1.5}, {"b": -0.1}, {"k1": math.nan}):
        with pytest.raises(InvalidArgumentError):
            TextIndex(**kwargs)


# -- reciprocal rank fusion ------------------------------------------------------------------


def test_fusion_computed_by_hand() -> None:
    vector = u64([10, 20, 30])  # ranks 1, 2, 3, weight 1
    text = u64([20, 40])  # ranks 1, 2, weight 0.5
    labels, fused = reciprocal_rank_fusion([vector, text], [1.0, 0.5], k=10)
    # 10: 1/(60+1)                 = 0.016393...
    # 20: 1/(60+2) + 0.5/(60+1)    = 0.016129... + 0.008197... = 0.024326...
    # 30: 1/(60+3)                 = 0.015873...
    # 40: absent from vector; 0.5/(60+2) = 0.008065...
    assert labels.dtype == np.uint64 and fused.dtype == np.float64
    assert labels.tolist() == [20, 10, 30, 40]
    assert fused.tolist() == pytest.approx([1 / 62 + 0.5 / 61, 1 / 61, 1 / 63, 0.5 / 62])
    assert fused[0] == pytest.approx(0.024326, abs=1e-6)
    top, top_fused = reciprocal_rank_fusion([vector, text], [1.0, 0.5], k=2)
    assert top.tolist() == [20, 10] and top_fused.tolist() == fused[:2].tolist()


def test_fusion_ties() -> None:
    # Equal scores and equal best rank: 1 and 2 both get 1/61 + 1/62; the smaller label first.
    labels, fused = reciprocal_rank_fusion([u64([2, 1]), u64([1, 2])], [1.0, 1.0], k=5)
    assert labels.tolist() == [1, 2] and fused[0] == fused[1]
    # constant 0: label 9 gets 1/(0+1) = 1.0 at rank 1; label 2 gets 2/(0+2) = 1.0 at rank
    # 2; label 4 gets 2/(0+1) = 2.0. 9 and 2 tie on score, 9 has the better best rank.
    labels, fused = reciprocal_rank_fusion([u64([9]), u64([4, 2])], [1.0, 2.0], k=5, constant=0)
    assert labels.tolist() == [4, 9, 2]
    assert fused.tolist() == [2.0, 1.0, 1.0]


def test_fusion_zero_weights_empty_rankings_and_absent_items() -> None:
    labels, fused = reciprocal_rank_fusion([u64([1, 2]), u64([3])], [1.0, 0.0], k=5)
    assert labels.tolist() == [1, 2]  # a ranking of weight 0 takes no part
    assert fused.tolist() == [1 / 61, 1 / 62]
    labels, fused = reciprocal_rank_fusion([u64([]), u64([5])], [1.0, 1.0], k=5)
    assert labels.tolist() == [5] and fused.tolist() == [1 / 61]
    labels, fused = reciprocal_rank_fusion([u64([])], [1.0], k=5)
    assert labels.dtype == np.uint64 and len(labels) == 0 and len(fused) == 0


@pytest.mark.parametrize(
    ("rankings", "weights", "match"),
    [
        ([u64([1])], [], "one number per ranking"),
        ([u64([1])], [1.0, 1.0], "one number per ranking"),
        ([u64([1]), u64([2])], [0.0, 0.0], "at least one weight"),
        ([u64([1])], [-1.0], "weight 0 must be a finite number >= 0"),
        ([u64([1])], [math.nan], "finite"),
        ([u64([1])], [math.inf], "finite"),
        ([u64([1])], ["1"], "finite"),
        ([], [], "at least one ranking"),
        ([u64([1, 2, 1])], [1.0], "label 1 more than once"),
        ([np.array([0.5])], [1.0], "unsigned integers"),
    ],
)
def test_fusion_refuses_bad_input(
    rankings: list[np.ndarray], weights: list[Any], match: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        reciprocal_rank_fusion(rankings, weights, k=3)


def test_fusion_refuses_a_bad_constant() -> None:
    for constant in (-1, 1.5, True):
        with pytest.raises(InvalidArgumentError, match="constant"):
            reciprocal_rank_fusion([u64([1])], [1.0], k=3, constant=constant)  # type: ignore[arg-type]


@settings(max_examples=150, deadline=None)
@given(
    rankings=st.lists(
        st.lists(st.integers(0, 15), unique=True, max_size=10).map(u64), min_size=1, max_size=4
    ),
    data=st.data(),
    k=st.integers(1, 20),
    constant=st.integers(0, 80),
)
def test_fusion_matches_a_plain_reference(
    rankings: list[np.ndarray], data: st.DataObject, k: int, constant: int
) -> None:
    weights = data.draw(
        st.lists(
            st.sampled_from([0.0, 0.5, 1.0, 2.0]), min_size=len(rankings), max_size=len(rankings)
        ).filter(any)
    )
    fused: dict[int, float] = {}
    best: dict[int, int] = {}
    for ranking, weight in zip(rankings, weights):
        if weight == 0:
            continue
        for rank, label in enumerate(ranking.tolist(), start=1):
            fused[label] = fused.get(label, 0.0) + weight / (constant + rank)
            best[label] = min(best.get(label, rank), rank)
    want = sorted(fused, key=lambda lab: (-fused[lab], best[lab], lab))[:k]
    labels, scores = reciprocal_rank_fusion(rankings, weights, k=k, constant=constant)
    assert labels.tolist() == want
    assert scores.tolist() == pytest.approx([fused[lab] for lab in want], rel=1e-12)
