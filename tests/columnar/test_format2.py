"""Columnar format 2: files any Arrow reader opens, checksums verified per the policy, and
read compatibility with format-1 stores (reported unverified, upgraded by compaction)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
from columnar_damage import CONFIG, damaged_copy, make_store, read_everything

import synarrow
from synarrow.check import check_database
from synarrow.errors import ConfigError, CorruptionError

FORMAT1 = Path(__file__).parent / "data" / "format1.db"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("store") / "s.db")


def _data_files(path: Path) -> list[Path]:
    manifest = json.loads((path / "columnar" / "MANIFEST").read_text())
    return [path / "columnar" / f["name"] for f in manifest["files"]]


def _expected_by_file(path: Path) -> dict[str, dict[str, list]]:
    """Per data file: key -> history values, from synarrow itself."""
    col = path / "columnar"
    index = ipc.open_file(
        pa.memory_map(str(col / json.loads((col / "MANIFEST").read_text())["index"]))
    ).read_all()
    names = [f.name for f in _data_files(path)]
    out: dict[str, dict[str, list]] = {}
    with synarrow.SynaDB(path, readonly=True) as db:
        for key, f in zip(index.column("key").to_pylist(), index.column("file").to_pylist()):
            out.setdefault(names[f], {})[key] = db.get_history(key).column("value").to_pylist()
    return out


def test_files_have_no_run_end_encoding_and_one_batch_per_key(store: Path) -> None:
    expected = _expected_by_file(store)
    for f in _data_files(store):
        reader = ipc.open_file(pa.memory_map(str(f)))
        assert reader.schema.names == ["ts", "value"]
        keys = []
        for i in range(reader.num_record_batches):
            batch, meta = reader.get_batch_with_custom_metadata(i)
            key = meta[b"synarrow.key"].decode()
            keys.append(key)
            assert batch.column("value").to_pylist() == expected[f.name][key]
        assert sorted(keys) == sorted(expected[f.name])


def test_polars_reads_every_data_file_and_the_index(store: Path) -> None:
    pl = pytest.importorskip("polars")
    expected = _expected_by_file(store)
    for f in _data_files(store):
        frame = pl.read_ipc(f)
        want = [v for key in sorted(expected[f.name]) for v in expected[f.name][key]]
        got = frame["value"].to_list()
        if frame["value"].dtype == pl.Array(pl.Float32, 4):
            got = [list(v) for v in got]
        assert sorted(got, key=repr) == sorted(want, key=repr), f.name
        assert frame.schema["ts"] == pl.Datetime("us", "UTC")
    index = pl.read_ipc(next((store / "columnar").glob("g*-index.arrow")))
    assert sorted(set(index["key"].to_list())) == sorted(read_everything(store).keys() - {"_sql"})


NODE_SCRIPT = r"""
const { tableFromIPC, RecordBatchReader } = require('apache-arrow');
const fs = require('fs');
const out = {};
for (const f of process.argv.slice(2)) {
  const buf = fs.readFileSync(f);
  const keys = [];
  for (const b of RecordBatchReader.from(buf)) keys.push(b.metadata.get('synarrow.key'));
  const t = tableFromIPC(buf);
  out[f] = {rows: t.numRows, keys, types: t.schema.fields.map(x => String(x.type)),
            first: JSON.stringify(t.get(0).toJSON(), (k, v) => typeof v === 'bigint' ? v.toString() : v)};
}
console.log(JSON.stringify(out));
"""


@pytest.fixture(scope="module")
def node_arrow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with the ``apache-arrow`` npm package installed (skips without npm)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node / npm not installed")
    d = tmp_path_factory.mktemp("node")
    try:
        subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--silent", "apache-arrow"],
            cwd=d,
            check=True,
            capture_output=True,
            timeout=180,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot install apache-arrow from npm: {exc}")
    (d / "read.js").write_text(NODE_SCRIPT)
    return d


def test_node_apache_arrow_reads_every_data_file(store: Path, node_arrow: Path) -> None:
    expected = _expected_by_file(store)
    files = _data_files(store)
    proc = subprocess.run(
        ["node", "read.js", *map(str, files)],
        cwd=node_arrow,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    for f in files:
        got = result[str(f)]
        assert got["rows"] == sum(len(v) for v in expected[f.name].values())
        assert sorted(got["keys"]) == sorted(expected[f.name])
        assert got["types"][0] == "Timestamp<MICROSECOND, UTC>"
        assert "RunEndEncoded" not in " ".join(got["types"])
    floats = next(f for f in files if result[str(f)]["types"][1] == "Float64")
    first_key = result[str(floats)]["keys"][0]
    assert json.loads(result[str(floats)]["first"])["value"] == expected[floats.name][first_key][0]


def test_verify_policies(store: Path, tmp_path: Path) -> None:
    with synarrow.SynaDB(store, CONFIG, readonly=True) as db:
        assert db.stats()["columnar_batches_verified"] == 0  # nothing read yet
        db.get_history("f")
        assert db.stats()["columnar_batches_verified"] == 1
        assert db.stats()["columnar_format"] == 2 and db.stats()["columnar_unverified_files"] == []
    with synarrow.SynaDB(store, CONFIG.replace(verify="open"), readonly=True) as db:
        n = db.stats()["columnar_batches_verified"]
        assert n == len(db.keys())  # one batch per key, all verified at open
    with synarrow.SynaDB(store, CONFIG.replace(verify="never"), readonly=True) as db:
        db.get_history("f")
        assert db.stats()["columnar_batches_verified"] == 0
    # A flip inside the float data: first-read raises on the read, open on the open.
    f_file = next(
        f
        for f in _data_files(store)
        if ipc.open_file(pa.memory_map(str(f))).schema.field("value").type == pa.float64()
    )
    damaged = damaged_copy(store, tmp_path / "d.db", f_file.name, f_file.stat().st_size // 3, 0x40)
    with synarrow.SynaDB(damaged, CONFIG, readonly=True) as db:
        assert db.get("i") == read_everything(store)["i"]["latest"]  # other keys unaffected
        with pytest.raises(CorruptionError, match="fail their checksum"):
            db.get_history("f")
    with pytest.raises(CorruptionError, match="fail their checksum"):
        synarrow.SynaDB(damaged, CONFIG.replace(verify="open"), readonly=True)
    with synarrow.SynaDB(damaged, CONFIG.replace(verify="never"), readonly=True) as db:
        assert len(db.get_history("f")) == 500  # returned unverified, as documented
    assert not check_database(damaged).ok


def test_verify_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="verify"):
        synarrow.DbConfig(verify="sometimes")
    assert synarrow.DbConfig().verify == "first-read"


def test_second_read_is_zero_copy_after_verification(tmp_path: Path) -> None:
    values = np.random.default_rng(1).standard_normal(100_000)
    with synarrow.SynaDB(tmp_path / "z.db", CONFIG) as db:
        db.append_batch("x", values)
        db.compact()
    with synarrow.SynaDB(tmp_path / "z.db", CONFIG, readonly=True) as db:
        a = db.get_history_floats("x")
        b = db.get_history_floats("x")
        assert np.shares_memory(a, b) and not a.flags.owndata and not a.flags.writeable
        assert np.array_equal(a, values)
        assert db.stats()["columnar_batches_verified"] == 1


def test_format1_store_reads_and_is_reported_unverified(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    d = tmp_path / "old.db"
    shutil.copytree(FORMAT1, d)
    expected = {
        "f": [*(np.arange(100) / 4).tolist(), 99.0],
        "i": [0, 7, 14, 21, 28],
        "t": [f"text {i} ü" for i in range(4)],
        "b": [b"\x00\x01bytes"],
        "n": [None],
    }
    with synarrow.SynaDB(d, readonly=True) as db:
        for key, values in expected.items():
            assert db.get_history(key).column("value").to_pylist() == values
        assert db.get("m") == 3 and db.get_vector("v").tolist() == [8, 9, 10, 11]
        assert "gone" not in db
        stats = db.stats()
        assert stats["columnar_format"] == 1 and len(stats["columnar_unverified_files"]) == 7
        rows = db.sql("SELECT key, count(*) n FROM history GROUP BY key ORDER BY key").to_pylist()
        assert {r["key"]: r["n"] for r in rows}["f"] == 101
    assert any("without checksums" in r.getMessage() for r in caplog.records)
    report = check_database(d)
    assert report.ok and report.columnar_unverified_files == 7
    assert any("UNVERIFIED" in w for w in report.warnings)
    # The next compaction, of any kind, rewrites everything with checksums.
    with synarrow.SynaDB(d, CONFIG) as db:
        db.append("i", 35)
        result = db.compact()
        assert result["keys_rewritten"] == len(db.keys())
        assert db.stats()["columnar_unverified_files"] == []
    report = check_database(d)
    assert report.ok and report.columnar_unverified_files == 0 and not report.warnings
    with synarrow.SynaDB(d, readonly=True) as db:
        for key, values in expected.items():
            want = values + [35] if key == "i" else values
            assert db.get_history(key).column("value").to_pylist() == want


def test_damaged_format1_file_is_corruption_not_a_crash(tmp_path: Path) -> None:
    # No checksum covers format 1: pyarrow's full validation stands between damage and use.
    d = tmp_path / "old.db"
    shutil.copytree(FORMAT1, d)
    text = d / "columnar" / "g000001-005.arrow"  # the text key's file
    reader = ipc.open_file(pa.memory_map(str(text)))
    assert reader.schema.field("value").type == pa.large_string()
    m = pa.memory_map(str(text))
    whole = m.read_buffer()
    offsets = ipc.open_file(whole).get_batch(0).column(2).buffers()[1]
    pos = offsets.address - whole.address + 16
    raw = bytearray(text.read_bytes())
    raw[pos : pos + 8] = (2**30).to_bytes(8, "little")
    text.write_bytes(bytes(raw))
    with synarrow.SynaDB(d, readonly=True) as db, pytest.raises(CorruptionError):
        db.get_history("t")
    assert not check_database(d).ok


def test_sql_over_small_and_large_slices(tmp_path: Path) -> None:
    # Small slices are merged for DuckDB (a copy), large ones stay views; results agree.
    rng = np.random.default_rng(5)
    series = {f"k{i:03d}": rng.standard_normal(n) for i, n in enumerate([3, 1500, 7, 2000, 1])}
    with synarrow.SynaDB(tmp_path / "q.db", CONFIG) as db:
        for key, values in series.items():
            db.append_batch(key, values)
        db.compact()
        db.append("k000", 10.0)  # and a log tail
        rows = db.sql(
            "SELECT key, count(*) AS n, sum(value) AS s FROM history GROUP BY key ORDER BY key"
        ).to_pylist()
    series["k000"] = np.append(series["k000"], 10.0)
    assert [r["key"] for r in rows] == sorted(series)
    for r in rows:
        assert r["n"] == len(series[r["key"]])
        assert r["s"] == pytest.approx(float(series[r["key"]].sum()))
