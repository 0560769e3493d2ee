"""Helpers of the columnar corruption tests: a store holding every history type, a
reading of all of it to compare against, and where each class of byte lies in its files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

import synarrow
from synarrow.columnar.checksum import xxh3
from synarrow.columnar.index import INDEX_SCHEMA
from synarrow.columnar.manifest import Manifest
from synarrow.errors import CorruptionError

TESTS = Path(__file__).resolve().parent

T0 = 1_700_000_000_000_000
CONFIG = synarrow.DbConfig(sync_on_write=False, auto_compact=False)


def fill(db: synarrow.SynaDB) -> None:
    """One key of each history type (each lands in its own data file)."""
    db.append_batch("f", np.arange(500, dtype=np.float64) / 8, timestamps=T0 + np.arange(500))
    for i, v in enumerate([1.5, None, 2.5, None, 4.0]):  # a validity bitmap
        db.append("fn", v, timestamp=T0 + i)
    db.append_batch("i", np.arange(300, dtype=np.int64) * -3, timestamps=T0 + np.arange(300))
    for i, v in enumerate(["alpha", "", "gamma ü", None, "epsilon" * 20]):
        db.append("t", v, timestamp=T0 + i)
    for i in range(6):
        db.append("b", bytes(range(i * 7 % 256, i * 7 % 256 + i)), timestamp=T0 + i)
    db.append_batch(
        "v", np.arange(40, dtype=np.float32).reshape(10, 4), timestamps=T0 + np.arange(10)
    )
    for i, dim in enumerate([2, 3, 5]):  # several dimensions: large_list<float32>
        db.append("vv", np.full(dim, i, dtype=np.float32), timestamp=T0 + i)
    for i, v in enumerate([1.0, "two", 3, b"four", None]):  # mixed types: a struct
        db.append("m", v, timestamp=T0 + i)
    db.append("n", None, timestamp=T0)


def make_store(path: Path, *, compression: str | None = None) -> Path:
    """A fully compacted store with :func:`fill`'s keys and an empty log."""
    config = CONFIG.replace(columnar_compression=compression)
    with synarrow.SynaDB(path, config) as db:
        fill(db)
        db.compact()
    return path


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [float(x) for x in value]
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def read_everything(path: Path, verify: str = "first-read") -> dict[str, Any]:
    """Every key's latest value, history (ts and values) and SQL row count, as JSON data."""
    with synarrow.SynaDB(path, CONFIG.replace(verify=verify), readonly=True) as db:
        out: dict[str, Any] = {}
        for key in sorted(db.keys()):
            table = db.get_history(key)
            out[key] = {
                "latest": _plain(db.get(key)),
                "ts": table.column("ts").cast(pa.int64()).to_pylist(),
                "values": _plain(table.column("value").to_pylist()),
            }
        rows = db.sql("SELECT key, count(*) AS n FROM history GROUP BY key").to_pylist()
        out["_sql"] = {r["key"]: r["n"] for r in sorted(rows, key=lambda r: r["key"])}
        return out


def outcome(path: Path, pristine: dict[str, Any], verify: str = "first-read") -> str:
    """``equal``, ``corruption`` (a CorruptionError), ``wrong`` or ``error:<type>``."""
    try:
        got = read_everything(path, verify)
    except CorruptionError:
        return "corruption"
    except Exception as exc:  # the test fails on these; name the type
        return f"error:{type(exc).__name__}:{exc}"
    return (
        "equal"
        if json.dumps(got, sort_keys=True) == json.dumps(pristine, sort_keys=True)
        else "wrong"
    )


def byte_classes(path: Path) -> dict[str, list[tuple[str, int]]]:
    """Per file of ``columnar/``: (class, byte offset) positions to damage.

    Classes: ``magic``, ``schema`` (the schema message of the file header), ``batch meta``
    (the record batch message's flatbuffer), ``validity``, ``offsets``, ``data`` (value and
    timestamp buffers), ``footer``, ``footer length``; the index and the manifest get
    positions spread over their bytes.
    """
    col = path / "columnar"
    manifest = json.loads((col / "MANIFEST").read_text())
    out: dict[str, list[tuple[str, int]]] = {}
    for f in manifest["files"]:
        name, size, footer = f["name"], f["bytes"], f["footer"]
        buf = pa.memory_map(str(col / name))
        whole = buf.read_buffer()
        base = whole.address
        reader = pa.ipc.open_file(whole)
        batch = reader.get_batch(0)
        positions = [("magic", 2), ("schema", 8 + 40)]
        starts = []
        for ci, column in enumerate(batch.columns):
            bufs = column.buffers()
            for bi, b in enumerate(bufs):
                if b is None or not b.size or not 0 <= b.address - base < size:
                    continue
                off = b.address - base
                starts.append(off)
                t = column.type
                if bi == 0 or (pa.types.is_struct(t) and bi in (0,)):
                    cls = "validity"
                elif bi == 1 and (
                    pa.types.is_large_string(t)
                    or pa.types.is_large_binary(t)
                    or pa.types.is_large_list(t)
                ):
                    cls = "offsets"
                else:
                    cls = "data"
                # high byte of an offset (a huge offset), else a byte inside the buffer
                positions.append(
                    (f"{cls} ({batch.schema.names[ci]}, buffer {bi})", off + min(b.size - 1, 8 + 5))
                )
        if f["compression"]:  # buffers were decompressed into memory: spread the flips
            positions = positions[:2] + [("data", footer * k // 10) for k in (4, 6, 8, 9)]
        else:
            positions.append(("batch meta", min(starts) - 24))
        positions += [("footer", footer + 12), ("footer length", size - 8), ("magic", size - 2)]
        out[name] = positions
    index = manifest["index"]
    isize = (col / index).stat().st_size
    out[index] = [("index", p) for p in (3, 40, isize // 3, isize // 2, isize - 100, isize - 7)]
    msize = (col / "MANIFEST").stat().st_size
    out["MANIFEST"] = [("manifest", p) for p in (20, msize // 3, msize // 2, msize - 30)]
    return out


def damaged_copy(pristine: Path, target: Path, name: str, offset: int, mask: int) -> Path:
    """A copy of ``pristine`` with byte ``offset`` of ``columnar/name`` XORed with ``mask``."""
    shutil.copytree(pristine, target)
    f = target / "columnar" / name
    data = bytearray(f.read_bytes())
    data[offset] ^= mask
    f.write_bytes(bytes(data))
    return target


# Reads each damaged copy under the three verify policies and runs check on it; one JSON line
# per case, flushed, so the parent can name the case a crash happened in.
WORKER = """
import json, sys
from pathlib import Path
from columnar_damage import outcome
from synarrow.check import check_database
cases = json.loads(Path(sys.argv[1]).read_text())
pristine = json.loads(Path(sys.argv[2]).read_text())
for case in cases:
    print(json.dumps({"start": case["dir"]}), flush=True)
    path = Path(case["dir"])
    result = dict(case)
    for policy in ("first-read", "open", "never"):
        result[policy] = outcome(path, pristine, policy)
    report = check_database(path, progress=False)
    result["check_ok"] = report.ok
    result["damage"] = report.damage[:1]
    print(json.dumps(result), flush=True)
"""


def worker_env() -> dict[str, str]:
    """The environment of a child process that imports this module and synarrow."""
    parts = [str(TESTS), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in parts if p)}


def run_cases(cases: list[dict], reading: dict, tmp_path: Path) -> list[dict]:
    """Run the worker over ``cases`` (dicts with ``dir``); fails if it dies or errs."""
    cases_file, pristine_file = tmp_path / "cases.json", tmp_path / "pristine.json"
    cases_file.write_text(json.dumps(cases))
    pristine_file.write_text(json.dumps(reading))
    proc = subprocess.run(
        [sys.executable, "-c", WORKER, str(cases_file), str(pristine_file)],
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    started = [ln["start"] for ln in lines if "start" in ln]
    assert proc.returncode == 0, (
        f"reader process ended with {proc.returncode} (negative: killed by a signal) in case "
        f"{started[-1] if started else None}: {proc.stderr[-3000:]}"
    )
    results = [ln for ln in lines if "start" not in ln]
    assert len(results) == len(cases)
    return results


def _commit(col: Path, manifest: Manifest) -> None:
    (col / "MANIFEST").write_text(manifest.to_json())


def rewrite_index(
    path: Path,
    mutate: Callable[[dict[str, list]], None],
    *,
    rehash: bool = False,
    schema: pa.Schema = INDEX_SCHEMA,
) -> None:
    """Change the key index of ``path`` with ``mutate(columns)`` and recompute the checksums
    of the index and manifest (and, with ``rehash``, of every batch span), as a crafted
    database would, so only validation can catch the change."""
    col = path / "columnar"
    manifest = Manifest.from_json((col / "MANIFEST").read_bytes(), col / "MANIFEST")
    index = col / manifest.index
    table = pa.ipc.open_file(pa.py_buffer(index.read_bytes())).read_all()
    cols = {name: table.column(name).to_pylist() for name in table.schema.names}
    mutate(cols)
    if rehash:
        for i, (f, off, n) in enumerate(zip(cols["file"], cols["offset"], cols["length"])):
            data = (
                (col / manifest.files[f].name).read_bytes() if 0 <= f < len(manifest.files) else b""
            )
            if off >= 0 and off + n <= len(data):
                cols["xxh3"][i] = xxh3(data[off : off + n])
    arrays = [pa.array(cols[f.name], f.type) for f in schema]
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, schema) as w:
        w.write_table(pa.Table.from_arrays(arrays, schema=schema))
    data = sink.getvalue().to_pybytes()
    index.write_bytes(data)
    manifest.index_bytes, manifest.index_xxh3 = len(data), xxh3(data)
    _commit(col, manifest)


def rewrite_manifest(path: Path, mutate: Callable[[Manifest], None]) -> None:
    """Change the manifest with ``mutate`` and recompute its checksum."""
    col = path / "columnar"
    manifest = Manifest.from_json((col / "MANIFEST").read_bytes(), col / "MANIFEST")
    mutate(manifest)
    _commit(col, manifest)


def patch_data(path: Path, name: str, offset: int, data: bytes) -> None:
    """Overwrite bytes of a data file, then recompute every checksum that covers them."""
    f = path / "columnar" / name
    raw = bytearray(f.read_bytes())
    raw[offset : offset + len(data)] = data
    f.write_bytes(bytes(raw))
    rewrite_index(path, lambda cols: None, rehash=True)
