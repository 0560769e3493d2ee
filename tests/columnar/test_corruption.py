"""Damaged columnar files: every read gives the written value or a CorruptionError.

Bytes are really flipped in copies of a compacted store holding every history type, in each
class of byte position (IPC magic, schema, record batch metadata, validity bitmaps, offsets,
data buffers, footer, key index, manifest) of each data file. The reads run in a separate
process, so a crash (a signal) fails the test instead of ending the run, and ``synarrow
check`` must report every damaged copy.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from columnar_damage import (
    byte_classes,
    damaged_copy,
    make_store,
    read_everything,
    run_cases,
    worker_env,
)


def _classes_of(results: list[dict]) -> set[str]:
    return {r["class"].split(" (")[0] for r in results}


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    path = make_store(tmp_path_factory.mktemp("pristine") / "p.db")
    return path, read_everything(path)


def _flip_cases(path: Path, tmp_path: Path) -> list[dict]:
    cases = []
    for name, positions in byte_classes(path).items():
        for i, (cls, off) in enumerate(positions):
            mask = 0x80 if i % 2 else 0x01
            d = damaged_copy(path, tmp_path / f"case{len(cases)}", name, off, mask)
            cases.append({"dir": str(d), "file": name, "class": cls, "offset": off, "mask": mask})
    return cases


def test_flips_in_every_byte_class_give_the_value_or_corruption(
    pristine: tuple[Path, dict], tmp_path: Path
) -> None:
    path, reading = pristine
    cases = _flip_cases(path, tmp_path)
    results = run_cases(cases, reading, tmp_path)
    assert _classes_of(results) >= {
        "magic",
        "schema",
        "batch meta",
        "validity",
        "offsets",
        "data",
        "footer",
        "footer length",
        "index",
        "manifest",
    }
    files = {r["file"] for r in results}
    assert len([f for f in files if f.endswith(".arrow") and "index" not in f]) >= 8
    for r in results:
        where = f"{r['file']} byte {r['offset']} ({r['class']}, mask {r['mask']:#x})"
        # The default and "open" policies verify checksums: the value or CorruptionError.
        assert r["first-read"] in ("equal", "corruption"), where + ": " + r["first-read"]
        assert r["open"] in ("equal", "corruption"), where + ": " + r["open"]
        # "never" may return a wrong value, but must not fail in any other way.
        assert r["never"] in ("equal", "corruption", "wrong"), where + ": " + r["never"]
        # Every byte of every columnar file is covered by a checksum: check sees each flip.
        assert not r["check_ok"], where + ": synarrow check found nothing"
    # A flip in data the store reads is detected on read, not only by check.
    data_flips = [r for r in results if r["class"].startswith(("data", "offsets", "validity"))]
    assert all(r["first-read"] == "corruption" for r in data_flips)


def test_compressed_files_flips_give_the_value_or_corruption(tmp_path: Path) -> None:
    path = make_store(tmp_path / "z.db", compression="zstd")
    reading = read_everything(path)
    cases = []
    for name, positions in byte_classes(path).items():
        if not name.endswith("-000.arrow") and not name.endswith("-003.arrow"):
            continue
        for cls, off in positions:
            d = damaged_copy(path, tmp_path / f"case{len(cases)}", name, off, 0x10)
            cases.append({"dir": str(d), "file": name, "class": cls, "offset": off, "mask": 0x10})
    for r in run_cases(cases, reading, tmp_path):
        assert r["first-read"] in ("equal", "corruption"), r
        assert r["never"] in ("equal", "corruption", "wrong"), r
        assert not r["check_ok"], r


@pytest.mark.parametrize("file_kind", ["data", "index", "manifest"])
def test_check_command_exits_non_zero_and_names_the_file(
    pristine: tuple[Path, dict], tmp_path: Path, file_kind: str
) -> None:
    path, _ = pristine
    classes = byte_classes(path)
    if file_kind == "data":
        name = next(n for n in classes if n.endswith("-000.arrow"))
        offset = next(off for cls, off in classes[name] if cls.startswith("data"))
    elif file_kind == "index":
        name = next(n for n in classes if n.endswith("-index.arrow"))
        offset = classes[name][2][1]
    else:
        name, offset = "MANIFEST", classes["MANIFEST"][1][1]
    d = damaged_copy(path, tmp_path / "d.db", name, offset, 0x04)
    before = {f: f.read_bytes() for f in d.rglob("*") if f.is_file()}
    proc = subprocess.run(
        [sys.executable, "-m", "synarrow.cli", "check", str(d)],
        env=worker_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert f"columnar/{name}" in proc.stdout
    if file_kind == "data":
        assert "bytes " in proc.stdout  # the damaged byte range is named
    assert {f: f.read_bytes() for f in d.rglob("*") if f.is_file()} == before  # check never writes
