"""Every history read API on the three store states, and the Arrow type rules of a history.

The store is filled in two halves by ``fill``; ``bring_to_state`` (tests/conftest.py) reopens
it log only, fully compacted, or compacted between the halves (a columnar base plus a tail).
"""

from __future__ import annotations

import struct
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from _support import state_fixtures

import synarrow

N = 500  # rows per half of each batch-written key
DIM = 4
T0 = 1_700_000_000_000_000  # 2023-11-14, microseconds


def _ts(half: int) -> np.ndarray:
    return T0 + (np.arange(N, dtype=np.int64) + half * N) * 1_000_000


def _floats(half: int) -> np.ndarray:
    x = np.sin(np.arange(N) + half * N) * 100.0
    if half == 0:
        x[:4] = [
            -0.0,
            np.inf,
            -np.inf,
            struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000123))[0],
        ]
    return x


def _ints(half: int) -> np.ndarray:
    x = np.arange(N, dtype=np.int64) + half * N - 250
    if half == 1:
        x[-2:] = [2**53, -(2**53)]
    return x


def _big(half: int) -> np.ndarray:
    """int64 values a double cannot hold."""
    x = np.full(N, 2**63 - 1, dtype=np.int64) - np.arange(N)
    x[::2] = -(2**63) + half
    return x


def _slash(half: int) -> np.ndarray:
    return np.arange(N) * 0.5 + half * N


def _vectors(half: int) -> np.ndarray:
    return (np.arange(N * DIM, dtype=np.float32).reshape(N, DIM) + half * N * DIM) / 7


def _texts(half: int) -> list[str]:
    return [f"τ-{half}-{i}" * (i % 3) for i in range(N)]


def _blobs(half: int) -> list[bytes]:
    return [bytes([i % 256, half]) * (i % 4) for i in range(N)]


# The mixed key: per half, (value, timestamp) written one batch of one value each, and a None.
MIXED: list[list[Any]] = [
    [1.5, 7, "text"],
    [b"\x00bytes", np.array([1, 2, 3, 4], dtype=np.float32), None, 2**62 + 1],
]


def fill(db: synarrow.SynaDB, half: int) -> None:
    ts = _ts(half)
    db.append_batch("f", _floats(half), timestamps=ts)
    db.append_batch("i", _ints(half), timestamps=ts)
    db.append_batch("v", _vectors(half), timestamps=ts)
    db.append_batch("t", _texts(half), timestamps=ts)
    db.append_batch("b", _blobs(half), timestamps=ts)
    db.append_batch("big", _big(half), timestamps=ts)
    db.append_batch("dir/with/slash", _slash(half), timestamps=ts)
    for j, value in enumerate(MIXED[half]):
        if value is None:
            db.append("m", None)
        else:
            values = value.reshape(1, -1) if isinstance(value, np.ndarray) else [value]
            db.append_batch("m", values, timestamps=[T0 + half * 100 + j])
    db.append("only_none", None)


def expected(key: str) -> list[Any]:
    if key == "m":  # read in timestamp order: the None, stamped "now", comes last
        return [v for v in MIXED[0] + MIXED[1] if v is not None] + [None]
    if key == "only_none":
        return [None, None]
    make = {
        "f": lambda h: list(_floats(h)),
        "i": lambda h: [int(x) for x in _ints(h)],
        "v": lambda h: list(_vectors(h)),
        "t": _texts,
        "b": _blobs,
        "big": lambda h: [int(x) for x in _big(h)],
        "dir/with/slash": lambda h: list(_slash(h)),
    }[key]
    return make(0) + make(1)


BATCH_KEYS = ["f", "i", "big", "v", "t", "b", "dir/with/slash"]
ALL_KEYS = [*BATCH_KEYS, "m", "only_none"]


def cell(s: pa.Scalar) -> Any:
    if not s.is_valid:
        return None
    if pa.types.is_struct(s.type):
        return next((cell(v) for v in s.values() if v.is_valid), None)
    if pa.types.is_fixed_size_list(s.type) or pa.types.is_large_list(s.type):
        return s.values.to_numpy(zero_copy_only=False)
    return s.as_py()


def same(got: Any, want: Any) -> bool:
    if want is None or got is None:
        return got is None and want is None
    if isinstance(want, np.ndarray):
        return isinstance(got, np.ndarray) and got.astype(np.float32).tobytes() == want.tobytes()
    if isinstance(want, (float, np.floating)):
        return type(got) is float and struct.pack("<d", got) == struct.pack("<d", float(want))
    return type(got) is type(want) and got == want


def assert_history(table: pa.Table, key: str) -> None:
    want = expected(key)
    assert table.column_names == ["ts", "value"]
    assert table.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    assert table.num_rows == len(want)
    values = table.column("value")
    bad = [i for i, w in enumerate(want) if not same(cell(values[i]), w)]
    assert not bad, (key, bad[:5])
    if key in BATCH_KEYS:
        ts = table.column("ts").cast(pa.int64()).to_numpy()
        np.testing.assert_array_equal(ts, np.concatenate([_ts(0), _ts(1)]))


templates, sdb = state_fixtures(fill)


# -- the read APIs on every state --------------------------------------------------------------


@pytest.mark.parametrize("key", ALL_KEYS)
def test_get_history(sdb: synarrow.SynaDB, key: str) -> None:
    assert_history(sdb.get_history(key), key)


@pytest.mark.parametrize("key", ALL_KEYS)
def test_get_is_the_last_value(sdb: synarrow.SynaDB, key: str) -> None:
    assert same(sdb.get(key), expected(key)[-1])


def test_keys_and_stats(sdb: synarrow.SynaDB, store_state: str) -> None:
    assert sdb.keys() == sorted(ALL_KEYS)
    assert sdb.keys("dir/*") == ["dir/with/slash"]
    stats = sdb.stats()
    assert stats["entries"] == sum(len(expected(k)) for k in ALL_KEYS)
    if store_state == "compacted":
        assert stats["tail_entries"] == 0
    elif store_state == "half_compacted":
        assert 0 < stats["tail_entries"] < stats["entries"]
    else:
        assert stats["columnar_files"] == 0


def test_get_history_floats(sdb: synarrow.SynaDB) -> None:
    f = sdb.get_history_floats("f")
    assert f.dtype == np.float64
    assert f.tobytes() == np.concatenate([_floats(0), _floats(1)]).tobytes()
    i = sdb.get_history_floats("i")
    np.testing.assert_array_equal(i, np.concatenate([_ints(0), _ints(1)]).astype(np.float64))
    for key in ("t", "b", "v", "m", "only_none"):
        with pytest.raises(synarrow.TypeMismatchError):
            sdb.get_history_floats(key)
    with pytest.raises(synarrow.KeyNotFoundError):
        sdb.get_history_floats("absent")


def test_get_history_floats_of_ints_beyond_double_precision(sdb: synarrow.SynaDB) -> None:
    """Either the numpy conversion (documented as a copy) or a SynaError, never a raw pyarrow error."""
    want = np.concatenate([_big(0), _big(1)])
    try:
        got = sdb.get_history_floats("big")
    except synarrow.SynaError:
        return
    np.testing.assert_array_equal(got, want.astype(np.float64))


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")
def test_get_history_tensor(sdb: synarrow.SynaDB) -> None:
    v = sdb.get_history_tensor("v")
    assert v.shape == (2 * N, DIM) and v.dtype == np.float32
    np.testing.assert_array_equal(v, np.concatenate([_vectors(0), _vectors(1)]))
    i = sdb.get_history_tensor("i")
    assert i.dtype == np.int64 and i.shape == (2 * N,)
    np.testing.assert_array_equal(i, np.concatenate([_ints(0), _ints(1)]))
    big = sdb.get_history_tensor("big")
    assert big.dtype == np.int64
    np.testing.assert_array_equal(big, np.concatenate([_big(0), _big(1)]))
    f32 = sdb.get_history_tensor("f", dtype=np.float32)
    assert f32.dtype == np.float32
    np.testing.assert_array_equal(f32, np.concatenate([_floats(0), _floats(1)]).astype(np.float32))
    v64 = sdb.get_history_tensor("v", dtype="float64")
    assert v64.dtype == np.float64 and v64.shape == (2 * N, DIM)
    with pytest.raises(synarrow.InvalidValueError):
        sdb.get_history_tensor("big", dtype=np.int32)
    for key in ("t", "m", "only_none"):
        with pytest.raises(synarrow.TypeMismatchError):
            sdb.get_history_tensor(key)


@pytest.mark.parametrize("key", ["f", "v", "t", "m"])
def test_history_reader_into_pyarrow(sdb: synarrow.SynaDB, key: str) -> None:
    reader = sdb.history_reader(key)
    assert isinstance(reader, pa.RecordBatchReader)
    assert_history(reader.read_all(), key)
    assert_history(pa.table(sdb.history_reader(key)), key)  # via __arrow_c_stream__


@pytest.mark.parametrize("key", ["f", "i", "v", "t", "m"])
def test_history_reader_into_polars(sdb: synarrow.SynaDB, key: str) -> None:
    pl = pytest.importorskip("polars")
    df = pl.DataFrame(sdb.history_reader(key))
    assert df.columns == ["ts", "value"]
    assert df.height == len(expected(key))
    assert df.schema["ts"] == pl.Datetime("us", "UTC")
    if key in ("f", "i"):
        assert_history(df.to_arrow(), key)
    if key == "v":
        np.testing.assert_array_equal(
            df["value"].to_numpy(), np.concatenate([_vectors(0), _vectors(1)])
        )
    if key == "t":
        assert df["value"].to_list() == expected("t")


def test_history_reader_into_duckdb(sdb: synarrow.SynaDB) -> None:
    with duckdb.connect() as con:  # closed here, not left to interpreter exit
        _history_readers_in(con, sdb)


def _history_readers_in(con: duckdb.DuckDBPyConnection, sdb: synarrow.SynaDB) -> None:
    con.register("floats", sdb.history_reader("f"))
    got = con.sql("SELECT count(*), min(ts), max(ts) FROM floats").fetchall()[0]
    assert got[0] == 2 * N
    con.register("floats", sdb.history_reader("f"))  # a reader is consumed by one query
    total = con.sql("SELECT sum(value) FROM floats WHERE isfinite(value)").fetchall()[0][0]
    want = np.concatenate([_floats(0), _floats(1)])
    assert total == pytest.approx(want[np.isfinite(want)].sum(), rel=1e-12)
    con.register("ints", sdb.history_reader("i"))
    exact = con.sql("SELECT sum(value::HUGEINT) FROM ints").fetchall()[0][0]
    assert exact == sum(int(x) for x in np.concatenate([_ints(0), _ints(1)]))
    con.register("big", sdb.history_reader("big"))
    exact = con.sql("SELECT sum(value::HUGEINT) FROM big").fetchall()[0][0]
    assert exact == sum(int(x) for x in np.concatenate([_big(0), _big(1)]))
    con.register("vecs", sdb.history_reader("v"))
    first = con.sql("SELECT value FROM vecs ORDER BY ts LIMIT 1").fetchall()[0][0]
    np.testing.assert_array_equal(np.array(first, dtype=np.float32), _vectors(0)[0])


def test_absent_and_deleted_keys(sdb: synarrow.SynaDB) -> None:
    sdb.delete("f")
    for key in ("f", "never"):
        assert sdb.get(key) is None
        assert sdb.get(key, 3) == 3
        with pytest.raises(synarrow.KeyNotFoundError):
            sdb.get_history(key)
        with pytest.raises(synarrow.KeyNotFoundError):
            sdb.history_reader(key)
        with pytest.raises(synarrow.KeyNotFoundError):
            sdb.get_history_tensor(key)
    sdb.compact()
    assert "f" not in sdb.keys()
    with pytest.raises(synarrow.KeyNotFoundError):
        sdb.get_history("f")


def test_reads_after_more_appends_on_each_state(sdb: synarrow.SynaDB) -> None:
    sdb.append("f", 0.25)
    sdb.append_batch("v", np.ones((3, DIM), dtype=np.float32))
    f = sdb.get_history_floats("f")
    assert len(f) == 2 * N + 1 and f[-1] == 0.25
    v = sdb.get_history_tensor("v")
    assert v.shape == (2 * N + 3, DIM)
    np.testing.assert_array_equal(v[-3:], np.ones((3, DIM), dtype=np.float32))


# -- the type rules -----------------------------------------------------------------------------


def test_single_type_histories_have_their_natural_arrow_type(sdb: synarrow.SynaDB) -> None:
    def vt(key: str) -> pa.DataType:
        return sdb.get_history(key).schema.field("value").type

    assert vt("f") == pa.float64()
    assert vt("i") == pa.int64()
    assert vt("t") == pa.large_string()
    assert vt("b") == pa.large_binary()
    assert vt("v") == pa.list_(pa.float32(), DIM)
    assert vt("only_none") == pa.null()


def test_mixed_key_is_a_struct_with_one_field_per_type(sdb: synarrow.SynaDB) -> None:
    t = sdb.get_history("m").schema.field("value").type
    assert pa.types.is_struct(t)
    assert {f.name: f.type for f in t} == {
        "float": pa.float64(),
        "int": pa.int64(),
        "text": pa.large_string(),
        "bytes": pa.large_binary(),
        "vector": pa.list_(pa.float32(), 4),
    }
    values = sdb.get_history("m").column("value").combine_chunks()
    # Exactly one field set per row, none for the None row (stamped "now": last in time).
    set_per_row = [sum(v.is_valid for v in row.values()) if row.is_valid else 0 for row in values]
    assert set_per_row == [1, 1, 1, 1, 1, 1, 0]


def test_mixed_key_through_duckdb_pandas_polars(sdb: synarrow.SynaDB) -> None:
    rows = sdb.sql(
        "SELECT value, int_value, text, bytes, vector, type FROM history WHERE key = 'm' ORDER BY ts"
    ).to_pylist()
    # Ordered by time the None (stamped "now" by append) comes last.
    by_type = [r["type"] for r in rows]
    assert by_type == ["float", "int", "text", "bytes", "vector", "int", "null"]
    assert rows[0]["value"] == 1.5 and rows[0]["int_value"] is None
    assert rows[1]["value"] == 7.0 and rows[1]["int_value"] == 7
    assert rows[2]["text"] == "text" and rows[2]["value"] is None
    assert rows[3]["bytes"] == b"\x00bytes"
    assert rows[4]["vector"] == [1.0, 2.0, 3.0, 4.0]
    assert rows[5]["int_value"] == 2**62 + 1  # exact, not through a double
    assert all(rows[6][c] is None for c in ("value", "int_value", "text", "bytes", "vector"))
    # The per-key view keeps the struct; DuckDB reads it.
    per_key = sdb.sql('SELECT value.text AS t, value.int AS i FROM "m" ORDER BY ts').to_pylist()
    assert [r["t"] for r in per_key] == [None, None, "text", None, None, None, None]
    assert per_key[5]["i"] == 2**62 + 1

    pd = pytest.importorskip("pandas")
    df = sdb.to_pandas("m")
    assert isinstance(df, pd.DataFrame) and df.shape == (7, 2)
    cells = df["value"].tolist()
    assert cells[0]["float"] == 1.5 and cells[2]["text"] == "text"
    assert cells[3]["bytes"] == b"\x00bytes"
    assert cells[5]["int"] == pytest.approx(2**62 + 1)
    assert cells[6] is None or cells[6] is pd.NA or all(v is None for v in cells[6].values())

    pl = pytest.importorskip("polars")
    pdf = sdb.to_polars("m")
    assert pdf.shape == (7, 2)
    assert isinstance(pdf.schema["value"], pl.Struct)
    assert pdf["value"].struct.field("int").to_list()[-2] == 2**62 + 1
    assert pdf["value"].struct.field("text").to_list()[2] == "text"


def test_mixed_key_to_pandas_keeps_ints_exact(db: synarrow.SynaDB) -> None:
    pytest.importorskip("pandas")
    db.append("m", 1.5)
    db.append("m", 2**62 + 1)
    db.compact()
    cell_ = db.to_pandas("m")["value"].tolist()[1]
    assert type(cell_["int"]) is int and cell_["int"] == 2**62 + 1


def test_vectors_of_several_dimensions_become_a_variable_list(db: synarrow.SynaDB) -> None:
    db.append("v", np.ones(2, dtype=np.float32))
    db.compact()
    db.append("v", np.full(3, 2.0, dtype=np.float32))
    table = db.get_history("v")
    assert table.schema.field("value").type == pa.large_list(pa.float32())
    assert table.column("value").to_pylist() == [[1.0, 1.0], [2.0, 2.0, 2.0]]
    db.compact()
    assert db.get_history("v").column("value").to_pylist() == [[1.0, 1.0], [2.0, 2.0, 2.0]]
    assert db.sql("SELECT len(vector) AS n FROM history ORDER BY ts").column("n").to_pylist() == [
        2,
        3,
    ]
    with pytest.raises(synarrow.TypeMismatchError):
        db.get_history_tensor("v")


def test_none_among_floats_is_a_null_of_float64(db: synarrow.SynaDB) -> None:
    db.append("k", 1.0)
    db.append("k", None)
    db.append("k", 2.0)
    for _ in range(2):
        table = db.get_history("k")
        assert table.schema.field("value").type == pa.float64()
        assert table.column("value").to_pylist() == [1.0, None, 2.0]
        with pytest.raises(synarrow.TypeMismatchError):
            db.get_history_floats("k")  # a None has no float; refused rather than NaN
        db.compact()


def test_type_change_across_compaction_keeps_earlier_rows(db: synarrow.SynaDB) -> None:
    db.append_batch("k", np.arange(3.0), timestamps=[1, 2, 3])
    db.compact()
    db.append_batch("k", ["a", "b"], timestamps=[4, 5])
    table = db.get_history("k")
    assert pa.types.is_struct(table.schema.field("value").type)
    assert [cell(s) for s in table.column("value")] == [0.0, 1.0, 2.0, "a", "b"]
    db.compact()
    db.append("k", 9)
    assert [cell(s) for s in db.get_history("k").column("value")] == [0.0, 1.0, 2.0, "a", "b", 9]
