"""How a put is staged: rows grouped by key in order, types kept, bad rows refused first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import synarrow
from synarrow.errors import InvalidArgumentError, InvalidKeyError
from synarrow.serving.ingest import APPEND_ROWS, PutStager

T0 = 1_700_000_000_000_000
TS = pa.timestamp("us", tz="UTC")


def _batch(keys: list[str], values: pa.Array, ts: list[int]) -> pa.RecordBatch:
    return pa.record_batch({"key": pa.array(keys), "ts": pa.array(ts, TS), "value": values})


def _mixed(history: pa.Table) -> list[object]:
    """The values of a history whose atom types vary (one struct field set per row)."""
    rows = history.column("value").to_pylist()
    return [next(v for v in row.values() if v is not None) for row in rows]


def test_interleaved_keys_and_types_keep_order(tmp_path: Path) -> None:
    db = synarrow.open(tmp_path / "db", sync_on_write=False)
    stager = PutStager()
    stager.add(
        _batch(["a", "b", "a", "b"], pa.array([1.0, 10.0, 2.0, 20.0]), [T0, T0, T0 + 1, T0 + 1])
    )
    stager.add(_batch(["b", "a"], pa.array([30, 3]), [T0 + 2, T0 + 2]))  # ints now
    stager.add(_batch(["a"], pa.array(["text"]), [T0 + 3]))  # the checked, non-numeric path
    assert db.keys() == []  # nothing before commit
    assert stager.commit(db) == 7
    a = _mixed(db.get_history("a"))
    assert a == [1.0, 2.0, 3, "text"]
    assert [type(v) for v in a] == [float, float, int, str]
    assert _mixed(db.get_history("b")) == [10.0, 20.0, 30]
    assert db.get_history("b").column("ts").cast(pa.int64()).to_pylist() == [T0, T0 + 1, T0 + 2]


def test_one_key_in_many_batches_is_joined_in_order(tmp_path: Path) -> None:
    db = synarrow.open(tmp_path / "db", sync_on_write=False)
    n = APPEND_ROWS + APPEND_ROWS // 2
    values = np.arange(n, dtype=np.float64)
    ts = T0 + np.arange(n, dtype=np.int64)
    stager = PutStager(key="x")
    table = pa.table({"ts": pa.array(ts, TS), "value": values})
    for batch in table.to_batches(max_chunksize=APPEND_ROWS // 3):
        stager.add(batch)
    assert stager.commit(db) == n
    history = db.get_history("x")
    assert np.array_equal(history.column("value").to_numpy(), values)
    assert np.array_equal(history.column("ts").cast(pa.int64()).to_numpy(), ts)


@pytest.mark.parametrize(
    ("batch", "error"),
    [
        (_batch(["ok", ""], pa.array([1.0, 2.0]), [T0, T0]), InvalidKeyError),
        (
            pa.record_batch(
                {
                    "key": pa.array(["ok", "ok"]),
                    "ts": pa.array([T0, np.iinfo(np.int64).min], TS),  # NaT
                    "value": pa.array([1.0, 2.0]),
                }
            ),
            InvalidArgumentError,
        ),
    ],
)
def test_a_bad_last_batch_is_refused_before_anything_is_written(
    tmp_path: Path, batch: pa.RecordBatch, error: type[Exception]
) -> None:
    db = synarrow.open(tmp_path / "db", sync_on_write=False)
    stager = PutStager()
    stager.add(_batch(["first"], pa.array([1.0]), [T0]))
    with pytest.raises(error):
        stager.add(batch)
    assert db.keys() == []
