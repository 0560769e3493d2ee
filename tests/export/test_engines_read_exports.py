"""The engines a user reads an export with, on one exported database: every key, row and
value must come back exactly (keys like ``Zürich``, ``007``, ``k\\x00a``; ints above 2**53;
bytes; fixed-size vectors). Spark and Ray run under the ``engines`` marker
(test_engines_jvm_ray.py); these run in the default suite."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from engine_rows import EXPORT_COLUMNS, rows_by_key, table_rows
from export_data import VECTORS, Exported

import synarrow
from synarrow.export import EXPORT_METADATA_KEY, import_dataset

SELECT_DUCKDB = (
    "SELECT key, epoch_us(ts) AS ts, type, value, int_value, text, bytes, vector "
    "FROM read_parquet('{path}/**/*.parquet', hive_partitioning = true)"
)


def test_layout_on_disk(exported: Exported) -> None:
    names = sorted(os.listdir(exported.parquet))
    assert all(n.startswith("key=") for n in names)
    assert "key=Zürich" in names  # raw UTF-8, as Spark expects
    assert "key=k%00a" in names and "key=k%00b" in names and "key=k" in names
    assert "key=sensor%2F1" in names and "key=a b%3Dc" in names
    schema = pq.read_schema(exported.parquet / "key=k%00a" / "part-0.parquet")
    assert schema.metadata[EXPORT_METADATA_KEY] == b"2"


@pytest.mark.parametrize("declared", [False, True])
def test_pyarrow_dataset(exported: Exported, declared: bool) -> None:
    part = ds.partitioning(pa.schema([("key", pa.string())]), flavor="hive") if declared else "hive"
    dataset = ds.dataset(exported.parquet, format="parquet", partitioning=part)
    table = dataset.to_table()
    assert table_rows(table) == exported.expected
    assert table.schema.field("vector").type == pa.list_(pa.float32(), 3)
    assert table.schema.field("int_value").type == pa.int64()
    assert table.schema.field("type").type == pa.dictionary(pa.int8(), pa.string())
    for key in ("007", "Zürich", "k\x00a"):  # filters (partition pruning) find each key
        got = dataset.to_table(filter=ds.field("key") == key)
        assert table_rows(got) == {key: exported.expected[key]}


def test_pyarrow_arrow_format(exported: Exported) -> None:
    dataset = ds.dataset(exported.arrow, format="ipc", partitioning="hive")
    assert table_rows(dataset.to_table()) == exported.expected


def test_duckdb(exported: Exported) -> None:
    con = duckdb.connect()
    table = con.sql(SELECT_DUCKDB.format(path=exported.parquet)).to_arrow_table()
    assert table_rows(table) == exported.expected
    for key in ("007", "Zürich", "k\x00a", "NULL", "a b=c"):
        n = con.execute(
            f"SELECT count(*) FROM ({SELECT_DUCKDB.format(path=exported.parquet)}) WHERE key = ?",
            [key],
        ).fetchall()
        assert n == [(len(exported.expected[key]),)], key
    # The documented cast for DuckDB's array functions (Parquet keeps no fixed size).
    sims = con.sql(
        "SELECT array_cosine_similarity(vector::FLOAT[3], [1, 0, 0]::FLOAT[3]) AS s "
        f"FROM read_parquet('{exported.parquet}/**/*.parquet', hive_partitioning = true) "
        "WHERE key = 'vecs' ORDER BY ts"
    ).fetchall()
    assert sims[0][0] == pytest.approx(1.0)
    assert sims[1][0] == pytest.approx(float(VECTORS[1][0] / (VECTORS[1] ** 2).sum() ** 0.5))
    con.close()


def test_polars(exported: Exported) -> None:
    pl = pytest.importorskip("polars")
    frame = pl.scan_parquet(exported.parquet, hive_partitioning=True).collect()
    assert frame.schema["vector"] == pl.Array(pl.Float32, 3)
    assert table_rows(frame.to_arrow()) == exported.expected
    one = pl.scan_parquet(exported.parquet, hive_partitioning=True).filter(pl.col("key") == "007")
    assert table_rows(one.collect().to_arrow()) == {"007": exported.expected["007"]}
    arrow = pl.scan_ipc(exported.arrow / "key=Zürich" / "part-0.arrow").collect()
    assert table_rows(arrow.to_arrow()) == {"Zürich": exported.expected["Zürich"]}


def test_dask(exported: Exported) -> None:
    dd = pytest.importorskip("dask.dataframe")
    # pandas' numpy ints cannot hold nulls (int_value would become float64 and lose the
    # ints above 2**53): the documented dtype_backend keeps them exact.
    frame = dd.read_parquet(str(exported.parquet), dtype_backend="pyarrow").compute()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    assert table_rows(table) == exported.expected
    plain = dd.read_parquet(str(exported.parquet)).compute()
    assert set(plain.key) == set(exported.expected)
    counts = plain.groupby("key").size().to_dict()
    assert counts == {k: len(v) for k, v in exported.expected.items()}


def test_pandas_single_file(exported: Exported, tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    with synarrow.SynaDB(exported.db_path, readonly=True) as db:
        db.export_dataset(tmp_path / "one", partition_by=None)
    frame = pd.read_parquet(tmp_path / "one" / "part-0.parquet")
    assert list(frame.columns) == EXPORT_COLUMNS
    assert set(frame.key) == set(exported.expected)


@pytest.mark.parametrize("fmt", ["parquet", "arrow"])
def test_import_round_trips_every_key(exported: Exported, tmp_path: Path, fmt: str) -> None:
    source = exported.parquet if fmt == "parquet" else exported.arrow
    with synarrow.SynaDB(tmp_path / "copy.db") as copy:
        result = import_dataset(copy, source)
        assert result.skipped_nulls == 1  # the None of "mixed": batches cannot carry it
        assert sorted(copy.keys()) == sorted(exported.expected)
        with synarrow.SynaDB(exported.db_path, readonly=True) as db:
            for key in db.keys():
                want = [r for r in db.get_history(key).to_pylist() if r["value"] is not None]
                assert copy.get_history(key).to_pylist() == want, key


# -- Node.js and the apache-arrow npm package ----------------------------------------------

ARROW_JS = "apache-arrow@21.2.0"
NODE_READER = r"""
const { readFileSync } = require("node:fs");
const arrow = require("apache-arrow");
const out = [];
for (const path of process.argv.slice(2)) {
  const table = arrow.tableFromIPC(readFileSync(path));
  const ts = [];
  for (const data of table.getChild("ts").data) for (const v of data.values) ts.push(v.toString());
  let i = 0;
  for (const row of table) {
    const r = {};
    for (const [k, v] of Object.entries(row.toJSON())) {
      r[k] = typeof v === "bigint" ? v.toString()
        : v instanceof Uint8Array ? Buffer.from(v).toString("base64")
        : v && typeof v === "object" && v.toArray ? Array.from(v.toArray())
        : v;
    }
    r.ts = ts[i++];
    out.push(r);
  }
}
console.log(JSON.stringify(out));
"""


def _node_modules(config: pytest.Config) -> Path:
    """apache-arrow installed with npm into the pytest cache (once); skipped without npm
    (except in CI, where it must run)."""
    in_ci = bool(os.environ.get("CI"))
    if shutil.which("node") is None or shutil.which("npm") is None:
        if in_ci:
            pytest.fail("node and npm are required in CI for the apache-arrow reader test")
        pytest.skip("node / npm not installed")
    cache = getattr(config, "cache", None)  # absent under -p no:cacheprovider
    if cache is not None:
        prefix = Path(str(cache.mkdir("node-apache-arrow")))
    else:
        home = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        prefix = home / "synarrow-tests" / "node-apache-arrow"
        prefix.mkdir(parents=True, exist_ok=True)
    modules = prefix / "node_modules"
    if not (modules / "apache-arrow" / "package.json").exists():
        done = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(prefix), ARROW_JS],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            if in_ci:
                pytest.fail(f"npm install {ARROW_JS} failed: {done.stderr[-2000:]}")
            pytest.skip(f"npm install {ARROW_JS} failed (offline?)")
    return modules


def test_node_apache_arrow_reads_the_arrow_export(
    exported: Exported, pytestconfig: pytest.Config, tmp_path: Path
) -> None:
    modules = _node_modules(pytestconfig)
    script = tmp_path / "read.js"
    script.write_text(NODE_READER)
    files = sorted(str(p) for p in exported.arrow.rglob("*.arrow"))
    done = subprocess.run(
        ["node", str(script), *files],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NODE_PATH": str(modules)},
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    for r in rows:  # bytes come back as base64 text
        if r["bytes"] is not None:
            r["bytes"] = base64.b64decode(r["bytes"])
    assert rows_by_key(rows) == exported.expected


def test_node_refuses_compressed_arrow_as_documented(
    exported: Exported, pytestconfig: pytest.Config, tmp_path: Path
) -> None:
    modules = _node_modules(pytestconfig)
    with synarrow.SynaDB(exported.db_path, readonly=True) as db:
        db.export_dataset(tmp_path / "lz4", format="arrow", compression="lz4", keys=["k"])
    script = tmp_path / "read.js"
    script.write_text(NODE_READER)
    done = subprocess.run(
        ["node", str(script), str(tmp_path / "lz4" / "key=k" / "part-0.arrow")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NODE_PATH": str(modules)},
    )
    assert done.returncode != 0 and "compressed" in done.stderr
