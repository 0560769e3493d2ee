"""``to_pandas``, ``to_polars`` and ``to_torch`` on the three store states."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from _support import state_fixtures

import synarrow

N = 400
DIM = 3
T0 = 1_700_000_000_000_000


def _ts(half: int) -> np.ndarray:
    return T0 + (np.arange(N, dtype=np.int64) + half * N) * 1_000


def fill(db: synarrow.SynaDB, half: int) -> None:
    ts = _ts(half)
    db.append_batch("f", np.arange(N) + half * N + 0.5, timestamps=ts)
    db.append_batch("i", np.arange(N, dtype=np.int64) - half * N, timestamps=ts)
    db.append_batch("t", [f"s{half}-{i}" for i in range(N)], timestamps=ts)
    db.append_batch("b", [bytes([half, i % 256]) for i in range(N)], timestamps=ts)
    db.append_batch("v", np.full((N, DIM), half, dtype=np.float32), timestamps=ts)


FLOATS = np.concatenate([np.arange(N) + 0.5, np.arange(N) + N + 0.5])
INTS = np.concatenate([np.arange(N), np.arange(N) - N]).astype(np.int64)
TS = np.concatenate([_ts(0), _ts(1)])
VECTORS = np.concatenate([np.zeros((N, DIM)), np.ones((N, DIM))]).astype(np.float32)


templates, sdb = state_fixtures(fill)


# -- pandas -----------------------------------------------------------------------------------


def test_to_pandas_shapes_and_dtypes(sdb: synarrow.SynaDB) -> None:
    pd = pytest.importorskip("pandas")
    f = sdb.to_pandas("f")
    assert isinstance(f, pd.DataFrame)
    assert f.shape == (2 * N, 2) and list(f.columns) == ["ts", "value"]
    assert f["ts"].dtype == pd.DatetimeTZDtype("us", "UTC")
    assert f["value"].dtype == np.float64
    np.testing.assert_array_equal(f["value"].to_numpy(), FLOATS)
    np.testing.assert_array_equal(f["ts"].array.asi8, TS)
    i = sdb.to_pandas("i")
    assert i["value"].dtype == np.int64
    np.testing.assert_array_equal(i["value"].to_numpy(), INTS)
    t = sdb.to_pandas("t")
    assert t.shape == (2 * N, 2)
    assert t["value"].tolist()[N] == "s1-0"
    b = sdb.to_pandas("b")
    assert b["value"].tolist()[1] == b"\x00\x01"
    v = sdb.to_pandas("v")
    assert v.shape == (2 * N, 2)
    np.testing.assert_array_equal(np.stack(v["value"].to_numpy()), VECTORS)


def test_to_pandas_of_a_compacted_key_keeps_the_mapped_buffer(db: synarrow.SynaDB) -> None:
    pytest.importorskip("pandas")
    db.append_batch("f", FLOATS, timestamps=TS)
    db.compact()
    df = db.to_pandas("f")
    view = db.get_history_floats("f")
    assert np.shares_memory(df["value"].to_numpy(), view)


def test_to_pandas_of_an_absent_key(db: synarrow.SynaDB) -> None:
    pytest.importorskip("pandas")
    with pytest.raises(synarrow.KeyNotFoundError):
        db.to_pandas("absent")


def test_pandas_reads_the_arrow_stream_directly(sdb: synarrow.SynaDB) -> None:
    pd = pytest.importorskip("pandas")
    if not hasattr(pd.DataFrame, "from_arrow"):
        pytest.skip("pandas without DataFrame.from_arrow")
    df = pd.DataFrame.from_arrow(sdb.history_reader("f"))
    np.testing.assert_array_equal(df["value"].to_numpy(), FLOATS)


# -- polars -----------------------------------------------------------------------------------


def test_to_polars_shapes_and_dtypes(sdb: synarrow.SynaDB) -> None:
    pl = pytest.importorskip("polars")
    f = sdb.to_polars("f")
    assert isinstance(f, pl.DataFrame)
    assert f.shape == (2 * N, 2) and f.columns == ["ts", "value"]
    assert f.schema["ts"] == pl.Datetime("us", "UTC")
    assert f.schema["value"] == pl.Float64
    np.testing.assert_array_equal(f["value"].to_numpy(), FLOATS)
    np.testing.assert_array_equal(f["ts"].cast(pl.Int64).to_numpy(), TS)
    i = sdb.to_polars("i")
    assert i.schema["value"] == pl.Int64
    np.testing.assert_array_equal(i["value"].to_numpy(), INTS)
    assert sdb.to_polars("t").schema["value"] == pl.String
    assert sdb.to_polars("b").schema["value"] == pl.Binary
    v = sdb.to_polars("v")
    assert v.schema["value"] == pl.Array(pl.Float32, DIM)
    np.testing.assert_array_equal(v["value"].to_numpy(), VECTORS)
    # Polars works on it as on any frame.
    total = f.select(pl.col("value").sum()).item()
    assert total == FLOATS.sum()


def test_polars_reads_history_and_reader_through_the_c_stream(sdb: synarrow.SynaDB) -> None:
    pl = pytest.importorskip("polars")
    a = pl.DataFrame(sdb.history_reader("i"))
    b = pl.DataFrame(sdb.get_history("i"))
    assert a.equals(b)
    assert a.shape == (2 * N, 2)


def test_to_polars_of_an_absent_key(db: synarrow.SynaDB) -> None:
    pytest.importorskip("polars")
    with pytest.raises(synarrow.KeyNotFoundError):
        db.to_polars("absent")


# -- torch ------------------------------------------------------------------------------------


def test_to_torch_values_and_shapes(sdb: synarrow.SynaDB) -> None:
    torch = pytest.importorskip("torch")
    f = sdb.to_torch("f")
    assert isinstance(f, torch.Tensor)
    assert f.dtype == torch.float64 and tuple(f.shape) == (2 * N,)
    np.testing.assert_array_equal(f.numpy(), FLOATS)
    i = sdb.to_torch("i")
    assert i.dtype == torch.int64
    np.testing.assert_array_equal(i.numpy(), INTS)
    v = sdb.to_torch("v")
    assert v.dtype == torch.float32 and tuple(v.shape) == (2 * N, DIM)
    np.testing.assert_array_equal(v.numpy(), VECTORS)
    with pytest.raises(synarrow.TypeMismatchError):
        sdb.to_torch("t")
    with pytest.raises(synarrow.KeyNotFoundError):
        sdb.to_torch("absent")


def test_to_torch_copy_is_writable_and_independent(sdb: synarrow.SynaDB) -> None:
    pytest.importorskip("torch")
    t = sdb.to_torch("f", copy=True)
    t[:] = -1.0
    np.testing.assert_array_equal(sdb.get_history_floats("f"), FLOATS)
    np.testing.assert_array_equal(sdb.to_torch("f").numpy(), FLOATS)


def test_to_torch_shares_the_mapped_buffer_after_compaction(db: synarrow.SynaDB) -> None:
    pytest.importorskip("torch")
    db.append_batch("f", FLOATS, timestamps=TS)
    db.append_batch("v", VECTORS, timestamps=TS)
    db.compact()
    f = db.to_torch("f")
    assert f.data_ptr() == db.get_history_floats("f").__array_interface__["data"][0]
    v = db.to_torch("v")
    assert v.data_ptr() == db.get_history_tensor("v").__array_interface__["data"][0]
    assert tuple(v.shape) == (2 * N, DIM)


def test_history_table_interoperates_with_arrow_compute(sdb: synarrow.SynaDB) -> None:
    import pyarrow.compute as pc

    table = sdb.get_history("f")
    assert pc.sum(table.column("value")).as_py() == FLOATS.sum()
    assert pc.min_max(table.column("ts"))["min"].value == TS.min()
    assert table.schema.field("ts").type == pa.timestamp("us", tz="UTC")
