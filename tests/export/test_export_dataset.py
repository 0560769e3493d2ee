"""Exported datasets are read as they are by DuckDB, pyarrow.dataset, pandas (and Dask), and
import back into an equal database."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest

import synarrow
from synarrow.errors import InvalidArgumentError, KeyNotFoundError
from synarrow.export import (
    ExportError,
    export_dataset,
    export_file,
    import_dataset,
    partition_dir,
    plan_layout,
    read_dataset,
)

T0 = 1_767_225_600_000_000
KEYS = [f"sensor/{i:02d}" for i in range(6)] + ["a b=c", "ü/1", "42"]
WIDE = ["value", "int_value", "text", "bytes", "vector"]
N = 2000


def _ts(n: int = N) -> np.ndarray:
    return T0 + np.arange(n, dtype=np.int64) * 1_000_000


def _values(i: int, n: int = N) -> np.ndarray:
    return np.round(10.0 * i + np.cos(np.arange(n) / 50.0), 3)


@pytest.fixture(params=["log", "compacted", "half"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> synarrow.SynaDB:
    """Float histories with timestamps under awkward key names, in the three store states."""
    cfg = synarrow.DbConfig(sync_on_write=False, auto_compact=False)
    database = synarrow.SynaDB(tmp_path / "src.db", config=cfg)
    half = N // 2
    for i, key in enumerate(KEYS):
        database.append_batch(key, _values(i)[:half], timestamps=_ts()[:half])
    if request.param == "half":
        database.compact()
    for i, key in enumerate(KEYS):
        database.append_batch(key, _values(i)[half:], timestamps=_ts()[half:])
    if request.param == "compacted":
        database.compact()
    yield database
    database.close()


def _hive(path: Path) -> ds.Dataset:
    part = ds.partitioning(pa.schema([("key", pa.string())]), flavor="hive")
    return ds.dataset(path, format="parquet", partitioning=part)


def test_parquet_dataset_read_by_pyarrow_and_duckdb(db: synarrow.SynaDB, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = export_dataset(db, out)
    assert (result.keys, result.rows, result.files) == (len(KEYS), len(KEYS) * N, len(KEYS))
    assert sorted(os.listdir(out)) == sorted(partition_dir(k) for k in KEYS)
    assert "key=sensor%2F00" in os.listdir(out)

    table = _hive(out).to_table()
    assert table.schema.field("ts").type == pa.timestamp("us", tz="UTC")
    for i, key in enumerate(KEYS):
        part = table.filter(pc.field("key") == key)
        assert part.column("value").to_pylist() == _values(i).tolist()
        assert part.column("ts").cast(pa.int64()).to_pylist() == _ts().tolist()
    assert read_dataset(out).to_table().num_rows == len(KEYS) * N

    rows = duckdb.sql(
        f"SELECT key, count(*), avg(value), min(ts) FROM read_parquet('{out}/**/*.parquet', "
        "hive_partitioning = true) GROUP BY key ORDER BY key"
    ).fetchall()
    assert [r[0] for r in rows] == sorted(KEYS)
    for key, count, avg, first in rows:
        i = KEYS.index(key)
        assert count == N and avg == pytest.approx(_values(i).mean())
        assert int(first.timestamp() * 1_000_000) == T0
    hourly = duckdb.sql(
        f"SELECT time_bucket(INTERVAL '10 minutes', ts) AS b, avg(value) FROM read_parquet("
        f"'{out}/**/*.parquet', hive_partitioning = true) WHERE key = 'sensor/03' "
        "GROUP BY b ORDER BY b"
    ).fetchall()
    assert len(hourly) == -(-N // 600)


def test_arrow_dataset_and_single_file(db: synarrow.SynaDB, tmp_path: Path) -> None:
    export_dataset(db, tmp_path / "ipc", format="arrow")
    table = read_dataset(tmp_path / "ipc", format="arrow").to_table()
    assert table.num_rows == len(KEYS) * N
    files = list((tmp_path / "ipc").rglob("*.arrow"))
    with pa.memory_map(str(files[0])) as source:  # uncompressed: memory-mappable
        assert pa.ipc.open_file(source).read_all().num_rows == N

    result = export_dataset(db, tmp_path / "one", partition_by=None)
    assert result.files == 1
    one = pa.parquet.read_table(tmp_path / "one" / "part-0.parquet")
    assert one.column_names == ["key", "ts", *WIDE, "type"]
    assert sorted(set(one.column("key").to_pylist())) == sorted(KEYS)


def test_dataset_import_round_trip(db: synarrow.SynaDB, tmp_path: Path) -> None:
    export_dataset(db, tmp_path / "out", pattern="sensor/*", compression="zstd")
    with synarrow.SynaDB(tmp_path / "copy.db") as copy:
        result = import_dataset(copy, tmp_path / "out")
        assert result.keys == 6 and result.rows == 6 * N and result.skipped_nulls == 0
        assert copy.keys() == [k for k in KEYS if k.startswith("sensor/")]
        for key in copy.keys():
            assert copy.get_history(key).equals(db.get_history(key))


def test_mixed_types_use_the_wide_layout(tmp_path: Path) -> None:
    with synarrow.SynaDB(tmp_path / "mixed.db") as db:
        db.append("m", 1.5)
        db.append("m", 7)
        db.append("m", "seven")
        db.append("m", b"\x00\xff")
        db.append("m", np.array([1.0, 2.0], dtype=np.float32))
        db.append("m", None)
        db.append_batch("f", [0.5, 0.25])
        export_dataset(db, tmp_path / "out")
        rows = duckdb.sql(
            f"SELECT type, value, int_value, text, bytes, vector FROM read_parquet("
            f"'{tmp_path}/out/**/*.parquet', hive_partitioning = true) WHERE key = 'm'"
        ).fetchall()
        assert [r[0] for r in rows] == ["float", "int", "text", "bytes", "vector", "null"]
        assert rows[1][1:3] == (7.0, 7) and rows[2][3] == "seven"
        assert rows[3][4] == b"\x00\xff" and list(rows[4][5]) == [1.0, 2.0]
        expected = {k: db.get_history(k).to_pylist() for k in db.keys()}
        for fmt in ("parquet", "arrow", "csv", "jsonl"):
            target = tmp_path / f"all.{fmt}"
            export_file(db, target)
            with synarrow.SynaDB(tmp_path / f"copy-{fmt}.db") as copy:
                result = import_dataset(copy, target)
                assert result.skipped_nulls == 1  # batches cannot carry None
                got = {k: copy.get_history(k).to_pylist() for k in copy.keys()}
            assert got["f"] == expected["f"]
            without_null = expected["m"][:5]
            assert got["m"] == without_null, fmt


def test_plan_layout() -> None:
    floats = plan_layout([pa.float64(), pa.null()])
    assert floats.vector_type == pa.list_(pa.float32())
    assert floats.schema() == plan_layout([pa.float64(), pa.int64(), pa.large_string()]).schema()
    mixed = pa.struct([("float", pa.float64()), ("vector", pa.list_(pa.float32(), 3))])
    assert plan_layout([mixed]).vector_type == pa.list_(pa.float32(), 3)
    vec = plan_layout([pa.list_(pa.float32(), 3), pa.list_(pa.float32(), 4)])
    assert vec.vector_type == pa.list_(pa.float32())


def test_pandas_reads_and_writes_the_file_layout(db: synarrow.SynaDB, tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    for name in ("all.parquet", "all.csv", "all.jsonl"):
        export_file(db, tmp_path / name, pattern="sensor/0*")
    frames = {
        "parquet": pd.read_parquet(tmp_path / "all.parquet"),
        "csv": pd.read_csv(tmp_path / "all.csv", parse_dates=["ts"]),
        "jsonl": pd.read_json(tmp_path / "all.jsonl", lines=True, precise_float=True),
    }
    frames["jsonl"]["ts"] = pd.to_datetime(frames["jsonl"]["ts"])
    for fmt, df in frames.items():
        assert list(df.columns) == ["key", "ts", *WIDE, "type"], fmt
        assert len(df) == 6 * N
        first = df[df.key == "sensor/01"]
        assert first.value.tolist() == _values(1).tolist(), fmt
        assert str(first.ts.iloc[0]).startswith("2026-01-01 00:00:00"), fmt

    # A frame written by pandas imports as it is.
    frame = pd.DataFrame(
        {
            "key": ["p"] * 3 + ["q"] * 2,
            "ts": pd.to_datetime([T0 + i for i in range(5)], unit="us", utc=True),
            "value": [1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )
    frame.to_parquet(tmp_path / "pd.parquet")
    frame.to_csv(tmp_path / "pd.csv", index=False)
    for src in ("pd.parquet", "pd.csv"):
        with synarrow.SynaDB(tmp_path / f"{src}.db") as copy:
            assert import_dataset(copy, tmp_path / src).rows == 5
            hist = copy.get_history("q")
            assert hist.column("value").to_pylist() == [4.0, 5.0]
            assert hist.column("ts").cast(pa.int64()).to_pylist() == [T0 + 3, T0 + 4]


def test_interleaved_keys_keep_their_order(tmp_path: Path) -> None:
    src = tmp_path / "long.csv"
    src.write_text(
        "key,ts,value\nb,2026-01-01T00:00:00Z,1\na,2026-01-01T00:00:01Z,2\nb,2026-01-01T00:00:02Z,3\n"
    )
    with synarrow.SynaDB(tmp_path / "i.db") as db:
        assert import_dataset(db, src).keys == 2
        assert db.get_history("b").column("value").to_pylist() == [1, 3]
        assert db.get_history("a").column("ts").cast(pa.int64()).to_pylist() == [T0 + 1_000_000]


def test_refusals(db: synarrow.SynaDB, tmp_path: Path) -> None:
    export_dataset(db, tmp_path / "out", keys=["sensor/00"])
    with pytest.raises(ExportError, match="not empty"):
        export_dataset(db, tmp_path / "out")
    result = export_dataset(db, tmp_path / "out", overwrite=True)
    assert result.keys == len(KEYS)
    with pytest.raises(KeyNotFoundError):
        export_dataset(db, tmp_path / "x", keys=["nope"])
    with pytest.raises(InvalidArgumentError):
        export_dataset(db, tmp_path / "y", format="csv")
    with pytest.raises(InvalidArgumentError):
        export_file(db, tmp_path / "no-suffix")
    with pytest.raises(InvalidArgumentError, match="too long"):
        partition_dir("k" * 300)
    with pytest.raises(ExportError, match="does not exist"):
        import_dataset(db, tmp_path / "missing.parquet")


def test_fsspec_memory_filesystem(db: synarrow.SynaDB, tmp_path: Path) -> None:
    pytest.importorskip("fsspec")
    result = export_dataset(db, "memory://synarrow-test/out", pattern="sensor/*")
    assert result.files == 6
    with synarrow.SynaDB(tmp_path / "from-memory.db") as copy:
        assert import_dataset(copy, "memory://synarrow-test/out").rows == 6 * N
        assert copy.get_history("sensor/05").equals(db.get_history("sensor/05"))
    import fsspec

    fsspec.filesystem("memory").rm("/synarrow-test", recursive=True)


def test_dask_reads_the_dataset(db: synarrow.SynaDB, tmp_path: Path) -> None:
    dd = pytest.importorskip("dask.dataframe")
    export_dataset(db, tmp_path / "out")
    frame = dd.read_parquet(str(tmp_path / "out"))
    counts = frame.groupby("key").value.count().compute()
    assert {str(k): int(v) for k, v in counts.items()} == {k: N for k in KEYS}


def test_history_order_survives_many_chunks(tmp_path: Path) -> None:
    cfg = synarrow.DbConfig(sync_on_write=False, auto_compact=False)
    with synarrow.SynaDB(tmp_path / "chunks.db", config=cfg) as db:
        for i in range(40):
            db.append_batch("k", np.arange(i * 500, (i + 1) * 500, dtype=np.float64))
            db.append_batch("j", np.arange(i * 7, (i + 1) * 7, dtype=np.int64))
        for _ in range(3):
            export_dataset(db, tmp_path / "out", overwrite=True)
            table = read_dataset(tmp_path / "out").to_table()
            k = table.filter(pc.field("key") == "k").column("value").to_numpy()
            assert np.array_equal(k, np.arange(20_000, dtype=np.float64))
            j = table.filter(pc.field("key") == "j").column("int_value").to_pylist()
            assert j == list(range(280))
