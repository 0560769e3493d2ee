"""Crafted columnar files: fields chosen to mislead, with every checksum recomputed.

A database received from someone else can carry checksums that match whatever it says, so
each field is also validated before use. Every case must give CorruptionError on open or
on read (never a signal, IndexError, ValueError, SystemError, KeyError or TypeError), under
each verify policy, and ``synarrow check`` must report it. Reads run in a child process.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from columnar_damage import (
    make_store,
    patch_data,
    read_everything,
    rewrite_index,
    rewrite_manifest,
    run_cases,
)

import synarrow
from synarrow.errors import CorruptionError


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    path = make_store(tmp_path_factory.mktemp("pristine") / "p.db")
    return path, read_everything(path)


def _row_of(cols: dict[str, list], key: str) -> int:
    return cols["key"].index(key)


def _set(column: str, value: Any, key: str = "t") -> Any:
    def mutate(cols: dict[str, list]) -> None:
        cols[column][_row_of(cols, key)] = value

    return mutate


def _swap_spans(cols: dict[str, list]) -> None:
    a, b = _row_of(cols, "f"), _row_of(cols, "i")
    for c in ("offset", "length", "xxh3"):
        cols[c][a], cols[c][b] = cols[c][b], cols[c][a]


def _unsorted(cols: dict[str, list]) -> None:
    for c in cols.values():
        c[0], c[1] = c[1], c[0]


def _per_file(cols: dict[str, list], column: str, stop: bool = False) -> dict[int, int]:
    """Per data file, the greatest batch number (or byte stop) its slices name."""
    out: dict[int, int] = {}
    for i, f in enumerate(cols["file"]):
        v = cols["offset"][i] + cols["length"][i] if stop else cols[column][i]
        out[f] = max(out.get(f, v), v)
    return out


def _inside_another_file(column: str) -> Any:
    """A slice of the file with the fewest batches (or bytes) given a batch number (or a byte
    range) that only the largest file has: inside the bounds of all files together, outside
    its own, so only the per-slice test finds it."""

    def mutate(cols: dict[str, list]) -> None:
        most = _per_file(cols, column, stop=column == "offset")
        small, large = min(most, key=most.get), max(most, key=most.get)
        assert most[large] > most[small], most
        i = cols["file"].index(small)
        if column == "offset":
            cols["offset"][i] = most[large] - cols["length"][i]
        else:
            cols["batch"][i] = most[large]

    return mutate


def _repeat_key(cols: dict[str, list]) -> None:
    """Two slices of one key that name the same rows (keys stay sorted)."""
    i = _row_of(cols, "t")
    for c in cols.values():
        c.insert(i, c[i])


INDEX_CASES = {
    "file -1": _set("file", -1),
    "file past the manifest": _set("file", 99),
    "batch -1": _set("batch", -1),
    "batch past the file": _set("batch", 5),
    "row -1": _set("row", -1),
    "row past the batch": _set("row", 10**6),
    "count 0": _set("count", 0),
    "count huge": _set("count", 2**62),
    "offset -8": _set("offset", -8),
    "length past the file": _set("length", 10**9),
    "span of another key's batch": _swap_spans,
    "unknown atom": _set("atom", 9),
    "atom of another type": _set("atom", 1),  # "t" holds text, not floats
    "unknown last atom": _set("last_atom", 7),
    "empty key": _set("key", ""),
    "keys out of order": _unsorted,
    "batch of a larger file": _inside_another_file("batch"),
    "byte range of a larger file": _inside_another_file("offset"),
    "one slice twice": _repeat_key,
    "last atom -1": _set("last_atom", -1),
    "atom 6 between valid ones": _set("atom", 6),
}


def _text_offsets_position(path: Path) -> tuple[str, int]:
    """(data file, file offset of the offsets buffer) of the text key ``t``."""
    col = path / "columnar"
    manifest = json.loads((col / "MANIFEST").read_text())
    for f in manifest["files"]:
        m = pa.memory_map(str(col / f["name"]))
        whole = m.read_buffer()
        reader = pa.ipc.open_file(whole)
        if reader.schema.field("value").type == pa.large_string():
            offsets = reader.get_batch(0).column(1).buffers()[1]
            return f["name"], offsets.address - whole.address
    raise AssertionError("no text file")


def _cases(path: Path, tmp_path: Path) -> list[dict]:
    cases = []

    def copy(name: str) -> Path:
        d = tmp_path / f"case{len(cases)}"
        shutil.copytree(path, d)
        cases.append({"dir": str(d), "case": name})
        return d

    for name, mutate in INDEX_CASES.items():
        rewrite_index(copy(name), mutate)
    name, pos = _text_offsets_position(path)
    # A string offset patched to 2**30, checksums recomputed: caught by validation ...
    patch_data(copy("string offset 2**30, rehashed"), name, pos + 16, struct.pack("<q", 2**30))
    # ... and as plain damage, caught by the checksum.
    d = copy("string offset 2**30")
    f = d / "columnar" / name
    raw = bytearray(f.read_bytes())
    raw[pos + 16 : pos + 24] = struct.pack("<q", 2**30)
    f.write_bytes(bytes(raw))
    # Offsets going backwards stay inside the data but would give a negative length.
    patch_data(copy("string offsets decreasing, rehashed"), name, pos + 16, struct.pack("<q", 0))
    patch_data(copy("string offsets negative, rehashed"), name, pos, struct.pack("<q", -5))
    return cases


def test_crafted_index_and_data_fields_are_corruption(
    pristine: tuple[Path, dict], tmp_path: Path
) -> None:
    path, reading = pristine
    results = run_cases(_cases(path, tmp_path), reading, tmp_path)
    for r in results:
        for policy in ("first-read", "open", "never"):
            assert r[policy] == "corruption", f"{r['case']} ({policy}): {r[policy]}"
        assert not r["check_ok"], f"{r['case']}: synarrow check found nothing"


@pytest.mark.parametrize(
    "name",
    ["../other.db/columnar/g000001-000.arrow", "/etc/passwd", "g000001-000.arrow/..", "x.arrow"],
)
def test_manifest_names_outside_the_directory_are_corruption(
    pristine: tuple[Path, dict], tmp_path: Path, name: str
) -> None:
    path, _ = pristine
    d = tmp_path / "d.db"
    shutil.copytree(path, d)

    def rename(m: Any) -> None:
        m.files[0].name = name

    rewrite_manifest(d, rename)
    with pytest.raises(CorruptionError, match="not a name synarrow writes"):
        synarrow.SynaDB(d, readonly=True)
    from synarrow.check import check_database

    report = check_database(d)
    assert not report.ok and "MANIFEST" in report.damage[0]


def test_index_name_outside_the_directory_is_corruption(
    pristine: tuple[Path, dict], tmp_path: Path
) -> None:
    path, _ = pristine
    d = tmp_path / "d.db"
    shutil.copytree(path, d)

    def rename(m: Any) -> None:
        m.index = "../../victim-index.arrow"

    rewrite_manifest(d, rename)
    with pytest.raises(CorruptionError):
        synarrow.SynaDB(d, readonly=True)


def test_symlinked_data_file_is_refused_and_its_target_untouched(
    pristine: tuple[Path, dict], tmp_path: Path
) -> None:
    path, _ = pristine
    d = tmp_path / "d.db"
    shutil.copytree(path, d)
    col = d / "columnar"
    data = sorted(col.glob("g*-0*.arrow"))[0]
    victim = tmp_path / "victim.arrow"
    shutil.copy(data, victim)
    data.unlink()
    os.symlink(victim, data)
    before = (victim.read_bytes(), victim.stat().st_mtime_ns)
    with pytest.raises(CorruptionError, match="symbolic link"):
        synarrow.SynaDB(d, readonly=True)
    # A writable open and a compaction neither follow nor write through the link.
    with pytest.raises(CorruptionError):
        synarrow.SynaDB(d, synarrow.DbConfig(auto_compact=False))
    from synarrow.check import check_database

    report = check_database(d)
    assert not report.ok
    assert any("symbolic link" in line for line in report.damage)
    assert (victim.read_bytes(), victim.stat().st_mtime_ns) == before


def test_planted_symlink_at_the_next_generations_name_is_not_written_through(
    tmp_path: Path,
) -> None:
    d = tmp_path / "d.db"
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    with synarrow.SynaDB(d, synarrow.DbConfig(sync_on_write=False, auto_compact=False)) as db:
        db.append("x", 1.0)
        # Planted while the database is open: the next compaction writes generation 1.
        os.symlink(victim, d / "columnar" / "g000001-000.arrow")
        os.symlink(victim, d / "columnar" / "g000001-index.arrow")
        db.compact()
        assert db.get("x") == 1.0
    assert victim.read_text() == "precious"
    with synarrow.SynaDB(d, readonly=True) as db:
        assert db.get_history_floats("x").tolist() == [1.0]


def test_foreign_file_in_columnar_is_kept_and_reported(
    pristine: tuple[Path, dict], tmp_path: Path
) -> None:
    path, _ = pristine
    d = tmp_path / "d.db"
    shutil.copytree(path, d)
    (d / "columnar" / "notes.txt").write_text("mine")
    synarrow.SynaDB(d, synarrow.DbConfig(auto_compact=False)).close()  # a writable open
    assert (d / "columnar" / "notes.txt").read_text() == "mine"
    from synarrow.check import check_database

    report = check_database(d)
    assert not report.ok and "columnar/notes.txt" in report.damage[0]


def test_symlinked_columnar_directory_is_refused(
    pristine: tuple[Path, dict], tmp_path: Path
) -> None:
    path, _ = pristine
    other = tmp_path / "other.db"
    shutil.copytree(path, other)
    d = tmp_path / "d.db"
    shutil.copytree(path, d)
    shutil.rmtree(d / "columnar")
    os.symlink(other / "columnar", d / "columnar")
    with pytest.raises(CorruptionError, match="symbolic link"):
        synarrow.SynaDB(d, readonly=True)
    from synarrow.check import check_database

    assert not check_database(d).ok
