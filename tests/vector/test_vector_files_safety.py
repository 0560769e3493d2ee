"""The vector index files stay inside ``vector_index/``: no links followed, only own names."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest
from _victims import Victim

import synarrow
from synarrow.errors import CorruptionError
from synarrow.vector import VectorStore

FAST = synarrow.DbConfig(sync_on_write=False, auto_compact=False)


def make_store(path: Path) -> Path:
    rng = np.random.default_rng(0)
    with VectorStore(path, dimensions=8, config=FAST) as store:
        for i in range(20):
            store.insert(f"v{i}", rng.standard_normal(8).astype(np.float32))
    return path / "vector_index"


@pytest.mark.parametrize("field", ["index_file", "keys_file"])
@pytest.mark.parametrize("name", ["../../victim.txt", "/etc/hostname", "index-1.usearch/../x"])
def test_crafted_file_names_in_state_are_refused(tmp_path: Path, field: str, name: str) -> None:
    victim = Victim(tmp_path / "victim.txt")
    vdir = make_store(tmp_path / "deep" / "v.db")
    state = json.loads((vdir / "state.json").read_text())
    state[field] = name
    (vdir / "state.json").write_text(json.dumps(state))
    for readonly in (True, False):
        with pytest.raises(CorruptionError, match="not a name synarrow writes"):
            VectorStore(tmp_path / "deep" / "v.db", readonly=readonly)
    assert victim.unchanged()


@pytest.mark.parametrize("name", ["state.json", "config.json", "keys_file"])
def test_symlinked_index_files_are_refused(tmp_path: Path, name: str) -> None:
    vdir = make_store(tmp_path / "v.db")
    if name == "keys_file":
        name = json.loads((vdir / "state.json").read_text())[name]
    victim = Victim(tmp_path / "victim", (vdir / name).read_bytes())
    (vdir / name).unlink()
    (vdir / name).symlink_to(victim.path)
    with pytest.raises(CorruptionError, match="symbolic link"):
        VectorStore(tmp_path / "v.db")
    assert victim.unchanged()


def test_vector_index_directory_symlink_is_refused(tmp_path: Path) -> None:
    vdir = make_store(tmp_path / "v.db")
    other = tmp_path / "other"
    vdir.rename(other)
    vdir.symlink_to(other, target_is_directory=True)
    with pytest.raises(CorruptionError, match="vector index directory"):
        VectorStore(tmp_path / "v.db")


def test_planted_temporary_links_are_never_written_through(tmp_path: Path) -> None:
    vdir = make_store(tmp_path / "v.db")
    victim = Victim(tmp_path / "victim")
    nxt = json.loads((vdir / "state.json").read_text())["generation"] + 1
    # The fixed temporary names earlier versions used for the next generation.
    for name in (f"index-{nxt}.usearch.tmp", f"keys-{nxt}.arrow.tmp", "state.json.tmp"):
        (vdir / name).symlink_to(victim.path)
    with VectorStore(tmp_path / "v.db") as store:
        store.insert("new", np.ones(8, dtype=np.float32))
    assert victim.unchanged()
    index = vdir / json.loads((vdir / "state.json").read_text())["index_file"]
    assert index.is_file() and not index.is_symlink()
    with VectorStore(tmp_path / "v.db", readonly=True) as store:
        assert "new" in store and len(store) == 21


def test_crafted_key_map_with_recomputed_crc_is_rebuilt(tmp_path: Path) -> None:
    """A key map whose labels are past next_label (negative as intp) passes its CRC (recomputed) but not the checks:
    the index is rebuilt from the log instead of indexing with those labels."""
    import pyarrow as pa

    vdir = make_store(tmp_path / "v.db")
    state = json.loads((vdir / "state.json").read_text())
    table = pa.ipc.open_file(pa.memory_map(str(vdir / state["keys_file"]))).read_all()
    labels = pa.array([(1 << 63) + i for i in range(len(table))], type=pa.uint64())
    table = table.set_column(table.schema.get_field_index("label"), "label", labels)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    data = sink.getvalue().to_pybytes()
    (vdir / state["keys_file"]).write_bytes(data)
    state.update(keys_bytes=len(data), keys_crc=zlib.crc32(data))
    (vdir / "state.json").write_text(json.dumps(state))
    with VectorStore(tmp_path / "v.db") as store:
        assert len(store) == 20
        hit = store.search(store.get("v3"), k=1, exact=True)[0]
        assert hit.key == "v3"
