"""Full-text ranking for the vector store: an incremental BM25 index and rank fusion.

:class:`TextIndex` scores documents, identified by uint64 labels, with Okapi BM25 and
Lucene's idf. For a query ``q`` and a document ``d``::

    score(q, d) = sum over query terms t present in d of
                  idf(t) * tf(t, d) * (k1 + 1) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))

    idf(t) = ln(1 + (N - n_t + 0.5) / (n_t + 0.5))

where ``N`` is the number of documents in the index, ``n_t`` the number of them containing
``t``, ``tf(t, d)`` how often ``t`` occurs in ``d``, ``|d|`` the token count of ``d`` and
``avgdl`` the mean ``|d|`` over the index. The sum runs over the query's tokens, so a word
repeated in the query counts once per occurrence (its term is multiplied by how often it is
repeated, as Lucene does for a query ``"red red car"``, and as Okapi's query-term factor does
when ``k3`` is large). Every score is positive for a document holding a query term.

:func:`reciprocal_rank_fusion` merges rankings (a vector search's and a text search's, for
example) into one by weighted reciprocal rank.

Text is split by :func:`tokenize`: case-folded, then runs of Unicode word characters. There
is no stemming and there are no stop words, so ``"cars"`` does not match ``"car"``.
"""

from __future__ import annotations

import math
import numbers
import operator
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np

from synarrow.errors import InvalidArgumentError, InvalidValueError

__all__ = ["TextIndex", "query_terms", "reciprocal_rank_fusion", "tokenize"]

_WORD = re.compile(r"\w+")
# More segments than this and the smallest _MERGE_COUNT of them are merged into one.
_MAX_SEGMENTS = 16
_MERGE_COUNT = 8


def tokenize(text: str) -> list[str]:
    """The words of ``text``: ``str.casefold()``, then every run of Unicode word characters.

    No stemming and no stop words; the same text always gives the same tokens.

    >>> tokenize("Straße, CAFÉ-au-lait x2!")
    ['strasse', 'café', 'au', 'lait', 'x2']
    """
    return _WORD.findall(text.casefold())


@dataclass
class _Segment:
    """Postings added by one ``set`` (or made by a merge), sorted by term id.

    A posting is live while its slot's current segment is this one; ``live`` counts them.
    """

    ident: int
    terms: np.ndarray  # int32, sorted
    slots: np.ndarray  # int32
    tf: np.ndarray  # uint32
    live: int

    @property
    def size(self) -> int:
        return len(self.terms)


def _check_labels(labels: np.ndarray, name: str = "labels") -> np.ndarray:
    """``labels`` as a 1-D uint64 array, or InvalidArgumentError when they are not that."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise InvalidArgumentError(f"{name} must be a 1-D array, not {arr.ndim}-D")
    if arr.size == 0:
        return arr.astype(np.uint64)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise InvalidArgumentError(f"{name} must be unsigned integers, not {arr.dtype}")
    if np.issubdtype(arr.dtype, np.signedinteger) and int(arr.min()) < 0:
        raise InvalidArgumentError(f"{name} must not be negative (found {int(arr.min())})")
    return arr.astype(np.uint64, copy=False)


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k <= 0:
        raise InvalidArgumentError(f"k must be an int > 0, not {k!r}")
    return int(k)


def query_terms(text: str) -> Counter[str]:
    """The query's distinct tokens with their counts, or InvalidArgumentError."""
    if not isinstance(text, str):
        raise InvalidArgumentError(f"a text query must be a str, not {type(text).__name__}")
    terms = Counter(tokenize(text))
    if not terms:
        raise InvalidArgumentError(f"text query {text!r} holds no words")
    return terms


class TextIndex:
    """BM25 (Okapi, Lucene idf) over the texts of labelled documents, updated incrementally.

    See the module docs for the score. Postings live in numpy segments, one per :meth:`set`;
    replacing or removing a document only marks its old postings stale, and segments are
    merged (dropping stale postings) when there are many or they are mostly stale.

    >>> import numpy as np
    >>> index = TextIndex()
    >>> index.set(np.array([1, 2, 3], np.uint64), ["red car", "blue car", "red red bus"])
    >>> labels, scores = index.search("red", k=5)
    >>> labels.tolist(), scores.round(4).tolist()
    ([3, 1], [0.5982, 0.4992])

    Args:
        k1: term-frequency saturation, finite and >= 0 (default 1.2).
        b: length normalisation, 0 (none) to 1 (full); default 0.75.
    """

    def __init__(self, *, k1: float = 1.2, b: float = 0.75) -> None:
        """An empty index scoring with ``k1`` and ``b``."""
        if isinstance(k1, bool) or not isinstance(k1, numbers.Real) or not math.isfinite(k1):
            raise InvalidArgumentError(f"k1 must be a finite number >= 0, not {k1!r}")
        if k1 < 0:
            raise InvalidArgumentError(f"k1 must be a finite number >= 0, not {k1!r}")
        if isinstance(b, bool) or not isinstance(b, numbers.Real) or not 0 <= b <= 1:
            raise InvalidArgumentError(f"b must be a number from 0 to 1, not {b!r}")
        self.k1: float = float(k1)
        self.b: float = float(b)
        self._terms: dict[str, int] = {}
        # Every label ever given text has a slot; the arrays below are indexed by slot.
        self._slot_of: dict[int, int] = {}
        self._labels = np.zeros(0, np.uint64)
        self._segment_of = np.zeros(0, np.int64)  # -1: no text now
        self._length = np.zeros(0, np.uint32)  # token count
        self._distinct = np.zeros(0, np.int32)  # distinct tokens = postings held
        self._segments: list[_Segment] = []
        self._next_segment = 0
        self._docs = 0
        self._total_length = 0

    def __len__(self) -> int:
        """How many documents hold at least one token."""
        return self._docs

    def __contains__(self, label: object) -> bool:
        """Whether ``label`` has a text with at least one token in the index."""
        try:
            slot = self._slot_of.get(operator.index(label))  # type: ignore[arg-type]
        except TypeError:
            return False
        return slot is not None and bool(self._segment_of[slot] >= 0)

    # -- updates -------------------------------------------------------------------------------

    def set(self, labels: np.ndarray, texts: Sequence[str | None]) -> None:
        """Add or replace the text of each label.

        ``None``, or a text without any word, removes the label's text. When a label occurs
        more than once, its last text wins. Nothing changes when an argument is refused.

        Raises:
            InvalidArgumentError: ``labels`` is not a 1-D array of non-negative integers, or
                ``texts`` is not a sequence of the same length.
            InvalidValueError: a text is neither a ``str`` nor ``None`` (the message names
                its label).
        """
        labs = _check_labels(labels)
        if isinstance(texts, (str, bytes)) or not isinstance(texts, Sequence | np.ndarray):
            raise InvalidArgumentError(
                f"texts must be a sequence of str or None, not {type(texts).__name__}"
            )
        if len(texts) != len(labs):
            raise InvalidArgumentError(f"{len(labs)} labels but {len(texts)} texts")
        given = labs.tolist()
        for label, text in zip(given, texts):
            if text is not None and not isinstance(text, str):
                raise InvalidValueError(
                    f"the text of label {label} is a {type(text).__name__}, not a str or None",
                    hint="pass str texts, or None to remove a label's text",
                )
        if len(given) > 1:
            # The last occurrence of each label wins; keep those, in call order.
            _, first_from_end = np.unique(labs[::-1], return_index=True)
            keep = np.sort(len(given) - 1 - first_from_end).tolist()
            given = [given[i] for i in keep]
            texts = [texts[i] for i in keep]
        tokens = [[] if t is None else _WORD.findall(t.casefold()) for t in texts]
        self._retire([s for s in map(self._slot_of.get, given) if s is not None])
        docs = [(label, toks) for label, toks in zip(given, tokens) if toks]
        if docs:
            self._add(docs)
        self._maintain()

    def remove(self, labels: np.ndarray) -> None:
        """Remove the text of each label; labels without text are ignored."""
        labs = _check_labels(labels)
        get = self._slot_of.get
        self._retire([s for s in map(get, np.unique(labs).tolist()) if s is not None])
        self._maintain()

    def _retire(self, slots: list[int]) -> None:
        """Mark the postings of the documents in ``slots`` (distinct) stale."""
        if not slots:
            return
        idx = np.asarray(slots, np.int64)
        idx = idx[self._segment_of[idx] >= 0]
        if not len(idx):
            return
        segs = self._segment_of[idx]
        idents, inverse = np.unique(segs, return_inverse=True)
        gone = np.bincount(inverse, weights=self._distinct[idx]).astype(np.int64)
        by_ident = {seg.ident: seg for seg in self._segments}
        for ident, count in zip(idents.tolist(), gone.tolist()):
            by_ident[ident].live -= count
        self._docs -= len(idx)
        self._total_length -= int(self._length[idx].sum(dtype=np.int64))
        self._segment_of[idx] = -1

    def _slots_for(self, labels: list[int]) -> np.ndarray:
        """The slot of each label, giving new slots to labels never seen."""
        slot_of = self._slot_of
        first_new = len(slot_of)
        out = []
        for label in labels:
            slot = slot_of.get(label)
            if slot is None:
                slot = slot_of[label] = len(slot_of)
            out.append(slot)
        if len(slot_of) > len(self._labels):
            self._grow(len(slot_of))
        new = np.arange(first_new, len(slot_of))
        self._labels[new] = np.fromiter(
            (label for label in labels if slot_of[label] >= first_new), np.uint64, len(new)
        )
        return np.asarray(out, np.int64)

    def _grow(self, needed: int) -> None:
        size = max(needed, 2 * len(self._labels), 1024)
        for name, fill in (("_labels", 0), ("_segment_of", -1), ("_length", 0), ("_distinct", 0)):
            old = getattr(self, name)
            new = np.full(size, fill, old.dtype)
            new[: len(old)] = old
            setattr(self, name, new)

    def _add(self, docs: list[tuple[int, list[str]]]) -> None:
        """A new segment holding ``docs`` (labels without live text, non-empty token lists)."""
        slots = self._slots_for([label for label, _ in docs])
        counts = np.fromiter((len(toks) for _, toks in docs), np.int64, len(docs))
        terms = self._terms
        flat = chain.from_iterable(toks for _, toks in docs)
        ids = np.fromiter((terms.setdefault(t, len(terms)) for t in flat), np.int64)
        position = np.repeat(np.arange(len(docs), dtype=np.int64), counts)
        # One key per token, term id then document; equal keys are one posting.
        pairs, tf = np.unique((ids << 32) | position, return_counts=True)
        pos = (pairs & 0xFFFFFFFF).astype(np.int64)
        ident = self._next_segment
        self._next_segment += 1
        segment = _Segment(
            ident,
            (pairs >> 32).astype(np.int32),
            slots[pos].astype(np.int32),
            tf.astype(np.uint32),
            len(pairs),
        )
        self._segments.append(segment)
        self._segment_of[slots] = ident
        self._length[slots] = counts
        self._distinct[slots] = np.bincount(pos, minlength=len(docs))
        self._docs += len(docs)
        self._total_length += int(counts.sum())

    def _maintain(self) -> None:
        """Drop empty segments, rewrite mostly stale ones, merge when there are too many."""
        kept = []
        for seg in self._segments:
            if seg.live == 0:
                continue
            if 2 * seg.live < seg.size:
                seg = self._merge([seg])
            kept.append(seg)
        self._segments = kept
        if len(kept) > _MAX_SEGMENTS:
            smallest = sorted(kept, key=lambda s: s.live)[:_MERGE_COUNT]
            chosen = {s.ident for s in smallest}
            rest = [s for s in kept if s.ident not in chosen]
            self._segments = [*rest, self._merge(smallest)]

    def _merge(self, segments: list[_Segment]) -> _Segment:
        """One new segment holding the live postings of ``segments``."""
        parts = [self._live_postings(seg, 0, seg.size) for seg in segments]
        terms = np.concatenate([seg.terms[keep] for seg, keep in zip(segments, parts)])
        slots = np.concatenate([seg.slots[keep] for seg, keep in zip(segments, parts)])
        tf = np.concatenate([seg.tf[keep] for seg, keep in zip(segments, parts)])
        order = np.argsort(terms, kind="stable")
        ident = self._next_segment
        self._next_segment += 1
        self._segment_of[slots] = ident
        return _Segment(ident, terms[order], slots[order], tf[order], len(terms))

    def _live_postings(self, seg: _Segment, lo: int, hi: int) -> slice | np.ndarray:
        """Which of ``seg``'s postings ``lo:hi`` are live (a slice when all of them are)."""
        if seg.live == seg.size:
            return slice(lo, hi)
        return lo + np.flatnonzero(self._segment_of[seg.slots[lo:hi]] == seg.ident)

    # -- queries -------------------------------------------------------------------------------

    def _contributions(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Each live posting of a query term: its slot and its share of the BM25 score."""
        query = query_terms(text)
        known = [(self._terms[t], n) for t, n in query.items() if t in self._terms]
        if not known or not self._docs:
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        tids = np.asarray([tid for tid, _ in known], np.int32)
        found: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in known]
        for seg in self._segments:
            los = np.searchsorted(seg.terms, tids, "left").tolist()
            his = np.searchsorted(seg.terms, tids, "right").tolist()
            for i, (lo, hi) in enumerate(zip(los, his)):
                if lo < hi:
                    keep = self._live_postings(seg, lo, hi)
                    found[i].append((seg.slots[keep], seg.tf[keep]))
        n_docs = self._docs
        k1, b = self.k1, self.b
        avgdl = self._total_length / n_docs
        all_slots, all_scores = [], []
        for (_, repeats), postings in zip(known, found):
            if not postings:
                continue
            slots = np.concatenate([s for s, _ in postings]).astype(np.int64)
            tf = np.concatenate([f for _, f in postings]).astype(np.float64)
            df = len(slots)
            idf = math.log1p((n_docs - df + 0.5) / (df + 0.5))
            norm = k1 * (1.0 - b + b * (self._length[slots] / avgdl))
            all_slots.append(slots)
            all_scores.append((repeats * idf) * (tf * (k1 + 1.0)) / (tf + norm))
        if not all_slots:
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        return np.concatenate(all_slots), np.concatenate(all_scores)

    def search(
        self, text: str, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best documents for ``text``: (labels uint64, BM25 scores float64).

        Best first, ties by smaller label; only documents holding a query word (score > 0),
        so fewer than ``k`` may come back. ``allowed``, a bool mask indexed by label (labels
        at or beyond its end count as not allowed), restricts which documents may be
        returned; the corpus statistics stay those of the whole index.

        Raises:
            InvalidArgumentError: ``text`` is not a str or holds no words, ``k`` is not an
                int > 0, or ``allowed`` is not a 1-D bool array.
        """
        k = _check_k(k)
        slots, contrib = self._contributions(text)
        if allowed is not None:
            mask = np.asarray(allowed)
            if mask.ndim != 1 or mask.dtype != np.bool_:
                raise InvalidArgumentError(
                    f"allowed must be a 1-D bool array indexed by label, not {mask.dtype} "
                    f"with {mask.ndim} dimensions"
                )
            labels = self._labels[slots]
            ok = labels < len(mask)
            ok[ok] = mask[labels[ok].astype(np.int64)]
            slots, contrib = slots[ok], contrib[ok]
        if not len(slots):
            return np.zeros(0, np.uint64), np.zeros(0, np.float64)
        candidates, inverse = np.unique(slots, return_inverse=True)
        totals = np.bincount(inverse, weights=contrib, minlength=len(candidates))
        if len(candidates) > k:
            # Everything scoring at least the k-th best score, so ties at the cut stay in.
            cut = np.partition(totals, len(totals) - k)[len(totals) - k]
            keep = totals >= cut
            candidates, totals = candidates[keep], totals[keep]
        labels = self._labels[candidates]
        order = np.lexsort((labels, -totals))[:k]
        return labels[order], totals[order]

    def scores(self, text: str, labels: np.ndarray) -> np.ndarray:
        """The BM25 score of each of ``labels`` for ``text`` (0.0 for a label without text).

        Raises:
            InvalidArgumentError: ``text`` is not a str or holds no words, or ``labels`` is
                not a 1-D array of non-negative integers.
        """
        labs = _check_labels(labels)
        slots, contrib = self._contributions(text)
        dense = np.bincount(slots, weights=contrib, minlength=len(self._labels))
        get = self._slot_of.get
        where = np.fromiter((get(x, -1) for x in labs.tolist()), np.int64, len(labs))
        out = np.zeros(len(labs), np.float64)
        has = where >= 0
        out[has] = dense[where[has]]
        return out


def reciprocal_rank_fusion(
    rankings: Sequence[np.ndarray], weights: Sequence[float], k: int, constant: int = 60
) -> tuple[np.ndarray, np.ndarray]:
    """Fuse rankings of labels: ``fused(d) = sum_i weights[i] / (constant + rank_i(d))``.

    Each ranking is a 1-D array of distinct labels, best first; ``rank_i`` is 1-based, and a
    label absent from ranking ``i`` gets nothing from it. A ranking of weight 0 takes no
    part at all (its labels are not returned for it). Returns (labels uint64, fused scores
    float64), best first, at most ``k``; equal scores are ordered by the best rank the label
    has in any weighted ranking, then by smaller label.

    >>> import numpy as np
    >>> labels, fused = reciprocal_rank_fusion(
    ...     [np.array([7, 3], np.uint64), np.array([3, 9], np.uint64)], [1.0, 1.0], k=3)
    >>> labels.tolist(), fused.round(5).tolist()
    ([3, 7, 9], [0.03252, 0.01639, 0.01613])

    Raises:
        InvalidArgumentError: no rankings; a ranking not 1-D non-negative integers or
            holding a label twice; weights not finite, negative, all 0 or not one per
            ranking; ``k`` not an int > 0; ``constant`` not an int >= 0.
    """
    k = _check_k(k)
    if isinstance(constant, bool) or not isinstance(constant, numbers.Integral) or constant < 0:
        raise InvalidArgumentError(f"constant must be an int >= 0, not {constant!r}")
    if isinstance(rankings, np.ndarray) or not isinstance(rankings, Sequence):
        raise InvalidArgumentError("rankings must be a sequence of label arrays")
    if not rankings:
        raise InvalidArgumentError("reciprocal_rank_fusion needs at least one ranking")
    if isinstance(weights, (str, bytes)) or len(weights) != len(rankings):
        raise InvalidArgumentError(f"weights must hold one number per ranking ({len(rankings)})")
    ws = []
    for i, w in enumerate(weights):
        if isinstance(w, bool) or not isinstance(w, numbers.Real) or not math.isfinite(w):
            raise InvalidArgumentError(f"weight {i} must be a finite number >= 0, not {w!r}")
        if w < 0:
            raise InvalidArgumentError(f"weight {i} must be a finite number >= 0, not {w!r}")
        ws.append(float(w))
    if not any(ws):
        raise InvalidArgumentError("at least one weight must be above 0")
    labels_parts, score_parts, rank_parts = [], [], []
    for i, (ranking, w) in enumerate(zip(rankings, ws)):
        labs = _check_labels(ranking, f"ranking {i}")
        uniq, counts = np.unique(labs, return_counts=True)
        if len(uniq) < len(labs):
            raise InvalidArgumentError(
                f"ranking {i} holds label {int(uniq[counts > 1][0])} more than once"
            )
        if w == 0:
            continue
        ranks = np.arange(1, len(labs) + 1, dtype=np.int64)
        labels_parts.append(labs)
        score_parts.append(w / (constant + ranks.astype(np.float64)))
        rank_parts.append(ranks)
    all_labels = np.concatenate(labels_parts)
    if not len(all_labels):
        return np.zeros(0, np.uint64), np.zeros(0, np.float64)
    uniq, inverse = np.unique(all_labels, return_inverse=True)
    fused = np.bincount(inverse, weights=np.concatenate(score_parts), minlength=len(uniq))
    best = np.full(len(uniq), np.iinfo(np.int64).max, np.int64)
    np.minimum.at(best, inverse, np.concatenate(rank_parts))
    order = np.lexsort((uniq, best, -fused))[:k]
    return uniq[order], fused[order]
