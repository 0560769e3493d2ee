"""The history order (synarrow.engine.timeline) against a model: a list sorted by (ts, arrival)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synarrow.engine.timeline import has_duplicates, locate_at, ordered, time_slice
from synarrow.log.format import Atom
from synarrow.log.memtable import TailChunk, values_array


def _float_chunk(ts: list[int], vals: list[float]) -> TailChunk:
    nums = np.array(vals, dtype=np.float64)
    return TailChunk(
        Atom.FLOAT, np.array(ts, dtype=np.int64), values_array(Atom.FLOAT, len(ts), numbers=nums)
    )


def _text_chunk(ts: list[int], vals: list[str]) -> TailChunk:
    return TailChunk(Atom.TEXT, np.array(ts, dtype=np.int64), pa.array(vals, pa.large_string()))


def _rows(timeline: list[TailChunk]) -> list[tuple[int, object]]:
    out = []
    for c in timeline:
        vals = c.values.to_pylist()
        if c.atom is None:
            vals = [next((x for x in v.values() if x is not None), None) for v in vals]
        out.extend(zip(c.ts.tolist(), vals))
    return out


def _model(chunks: list[list[tuple[int, object]]], duplicates: str) -> list[tuple[int, object]]:
    arrived = [row for chunk in chunks for row in chunk]
    rows = sorted(arrived, key=lambda r: r[0])  # stable: equal ts keep arrival order
    if duplicates == "keep_all":
        return rows
    out: list[tuple[int, object]] = []
    for ts, v in rows:
        if out and out[-1][0] == ts:
            if duplicates == "keep_last":
                out[-1] = (ts, v)
            continue
        out.append((ts, v))
    return out


_chunk_rows = st.lists(
    st.tuples(st.integers(-5, 40), st.floats(-1e6, 1e6, allow_nan=False)), min_size=0, max_size=12
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(_chunk_rows, min_size=0, max_size=6),
    st.sampled_from(["keep_all", "keep_last", "keep_first"]),
    st.one_of(st.none(), st.integers(-5, 45)),
    st.one_of(st.none(), st.integers(-5, 45)),
    st.one_of(st.none(), st.integers(0, 20)),
    st.booleans(),
)
def test_ordered_and_sliced_like_the_model(chunks, duplicates, start, end, last, texts):
    make = (
        (lambda rows: _text_chunk([r[0] for r in rows], [str(r[1]) for r in rows]))
        if texts
        else (lambda rows: _float_chunk([r[0] for r in rows], [r[1] for r in rows]))
    )
    stored = [make(rows) for rows in chunks]
    expect_rows = [[(t, str(v) if texts else v) for t, v in rows] for rows in chunks]
    timeline = ordered(stored, duplicates=duplicates)
    model = _model(expect_rows, duplicates)
    assert _rows(timeline) == model
    assert has_duplicates(timeline) == (len({t for t, _ in model}) < len(model))
    window = [r for r in model if (start is None or r[0] >= start) and (end is None or r[0] < end)]
    if last is not None:
        window = window[-last:] if last else []
    assert _rows(time_slice(timeline, start, end, last)) == window
    if start is not None:
        before = [r for r in model if r[0] <= start]
        found = locate_at(timeline, start)
        if before:
            assert found is not None
            chunk, row = found
            assert int(chunk.ts[row]) == before[-1][0]
            assert _rows([chunk])[row] == before[-1]
        else:
            assert found is None
    if start is not None:
        kept = ordered(stored, duplicates=duplicates, not_before=start)
        assert _rows(kept) == [r for r in model if r[0] >= start]


def test_chunks_in_order_are_returned_as_they_are():
    a = _float_chunk([1, 2, 3], [1.0, 2.0, 3.0])
    b = _float_chunk([3, 5], [4.0, 5.0])
    timeline = ordered([a, b])
    assert timeline[0] is a and timeline[1] is b
    part = time_slice(timeline, 2, 5)
    # views of the stored buffers, not copies
    assert np.shares_memory(part[0].ts, a.ts)


def test_late_entries_are_merged_into_one_sorted_chunk():
    a = _float_chunk([10, 20], [1.0, 2.0])
    late = _float_chunk([15, 5], [3.0, 4.0])
    (merged,) = ordered([a, late])
    assert merged.ts.tolist() == [5, 10, 15, 20]
    assert merged.values.to_pylist() == [4.0, 1.0, 3.0, 2.0]
    assert merged.atom == Atom.FLOAT


def test_mixed_types_merge_into_a_struct():
    a = _float_chunk([2], [1.0])
    b = _text_chunk([1], ["x"])
    (merged,) = ordered([a, b])
    assert merged.atom is None
    assert _rows([merged]) == [(1, "x"), (2, 1.0)]


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError):
        ordered([_float_chunk([1], [1.0])], duplicates="keep_some")
