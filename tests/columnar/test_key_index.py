"""The in-memory key index: binary search over the sorted keys, refs made on demand.

Checked against a plain dict of the same rows (hypothesis), through real databases (keys of
several slices, non-ASCII keys) and against crafted indexes (unsorted keys are refused at
open, before any lookup could go wrong).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import synarrow
from synarrow.columnar import compact as compact_mod
from synarrow.columnar.index import INDEX_SCHEMA, IndexRows, column_numbers, index_table
from synarrow.columnar.key_index import KeyIndex
from synarrow.errors import CorruptionError
from tests.columnar_damage import rewrite_index

_KEYS = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), min_codepoint=1), min_size=1, max_size=12
)


def _index(rows: list[tuple[str, int]]) -> KeyIndex:
    """A KeyIndex over ``rows`` (key, count), sorted by key, without data files."""
    rows = sorted(rows, key=lambda r: r[0])
    n = len(rows)
    cols = {name: [0] * n for name in INDEX_SCHEMA.names[1:]}
    cols["count"] = [c for _, c in rows]
    cols["row"] = list(range(n))
    cols["length"] = [1] * n
    cols["atom"] = [1] * n
    cols["last_atom"] = [1] * n
    table = index_table([k for k, _ in rows], cols)
    arrays = {name: column_numbers(table.column(name)) for name in INDEX_SCHEMA.names[1:]}
    return KeyIndex(IndexRows(table.column("key").combine_chunks(), arrays, True), [])


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(_KEYS, st.integers(1, 3), max_size=40),
    st.lists(_KEYS, max_size=10),
)
def test_find_agrees_with_a_dict(slices: dict[str, int], probes: list[str]) -> None:
    rows = [(k, 10 + j) for k, n in slices.items() for j in range(n)]
    index = _index(rows)
    ordered = sorted(slices)
    assert len(index) == len(slices)
    assert index.rows == len(rows)
    assert index.names() == ordered
    for key in [*slices, *probes]:
        position = index.find(key.encode("utf-8"))
        if key not in slices:
            assert position == -1
            continue
        assert index.key_at(position) == key == ordered[position]
        lo, hi = index.row_range(position)
        assert hi - lo == slices[key]
        assert index.counts()[position] == sum(10 + j for j in range(slices[key]))
    hits = index.positions_of([*probes, *list(slices)[:3]])
    assert [bool(h) for h in hits] == [k in set(probes) | set(list(slices)[:3]) for k in ordered]


def test_empty_index() -> None:
    index = KeyIndex(None, [])
    assert len(index) == 0 and index.rows == 0
    assert index.find(b"a") == -1
    assert index.names() == []
    assert list(index.items()) == []
    assert not index.positions_of(["a"]).any()


def test_reopen_loads_no_key_until_used(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with synarrow.SynaDB(path, sync_on_write=False) as db:
        for i in range(500):
            db.append_batch(f"k/{i:04d}", np.arange(5.0) + i)
        db.append("é/ünïcode", 1.5)
        db.compact()
    with synarrow.SynaDB(path) as db:
        engine = db._engine
        assert not engine.states  # nothing built per key at open
        assert len(db) == 501
        assert not engine.states
        assert db.get("k/0007") == 11.0
        assert set(engine.states) == {"k/0007"}
        assert db.get("é/ünïcode") == 1.5
        assert db.get("k/9999") is None and db.get("k/0007x") is None
        assert db.get_history_floats("k/0499").tolist() == (np.arange(5.0) + 499).tolist()
        assert set(engine.states) == {"k/0007", "é/ünïcode", "k/0499"}
        assert sorted(db.keys()) == sorted([f"k/{i:04d}" for i in range(500)] + ["é/ünïcode"])
        assert db.keys("k/001*") == [f"k/{i:04d}" for i in range(10, 20)]


def test_keys_of_several_slices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # every key with a columnar part gets its new entries as one more slice
    monkeypatch.setattr(compact_mod, "REWRITE_LIMIT_BYTES", 0)
    path = tmp_path / "db"
    with synarrow.SynaDB(path, sync_on_write=False) as db:
        for round_ in range(3):
            for i in range(50):
                db.append_batch(
                    f"k{i:02d}", np.arange(3.0) + 10 * round_, timestamps=np.arange(3) + 10 * round_
                )
            db.compact()
    with synarrow.SynaDB(path) as db:
        index = db._engine.columnar.keys
        assert len(index) == 50 and index.rows == 150
        assert db.get_history_floats("k17").tolist() == [0, 1, 2, 10, 11, 12, 20, 21, 22]
        assert db.get("k49") == 22.0


def test_unsorted_index_is_refused_at_open(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with synarrow.SynaDB(path, sync_on_write=False) as db:
        for key in ("a", "b", "c"):
            db.append(key, 1.0)
        db.compact()

    def swap(cols: dict) -> None:
        cols["key"] = [cols["key"][1], cols["key"][0], *cols["key"][2:]]

    rewrite_index(path, swap, rehash=True)
    with pytest.raises(CorruptionError, match="not in order"):
        synarrow.SynaDB(path)
