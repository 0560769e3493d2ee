"""docs/FORMAT.md names every field the handles write into ``vector_index/``, ``blobs/``,
``artifacts/`` and their records: a field added without documenting it fails here."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import synarrow

DOC = Path(__file__).resolve().parent.parent / "docs" / "FORMAT.md"


def doc_section(title: str) -> str:
    """The text of the ``###`` section whose heading contains ``title``."""
    text = DOC.read_text(encoding="utf-8")
    match = re.search(rf"^### [^\n]*{re.escape(title)}[^\n]*\n(.*?)(?=^##|\Z)", text, re.M | re.S)
    assert match, f"docs/FORMAT.md has no section on {title}"
    return match.group(1)


def undocumented(fields: object, section: str) -> list[str]:
    return [f for f in fields if f"`{f}`" not in section and f'"{f}"' not in section]


def test_vector_index_files_are_documented(tmp_path: Path) -> None:
    pytest.importorskip("usearch")
    section = doc_section("`vector_index/`")
    path = tmp_path / "v.db"
    with synarrow.VectorStore(path, dimensions=4) as store:
        store.insert("a", np.ones(4, np.float32))
        store.insert("b", np.arange(4, dtype=np.float32))
    directory = path / "vector_index"
    config = json.loads((directory / "config.json").read_text())
    state = json.loads((directory / "state.json").read_text())
    assert undocumented(config, section) == []
    assert undocumented(state, section) == []
    names = sorted(p.name for p in directory.iterdir())
    assert names == sorted(
        ["config.json", "state.json", state["index_file"], state["keys_file"]]
    ), names
    assert re.fullmatch(r"index-[1-9][0-9]*\.usearch", state["index_file"])
    assert state["index_file"] == f"index-{state['generation']}.usearch"
    keys = pa.ipc.open_file(directory / state["keys_file"]).read_all()
    assert [(f.name, str(f.type), f.nullable) for f in keys.schema] == [
        ("key", "large_string", False),
        ("label", "uint64", False),
        ("fingerprint", "uint64", False),
        ("inserted", "int64", False),
    ]
    assert undocumented(keys.schema.names, section) == []
    assert keys.column("key").to_pylist() == ["a", "b"]
    assert keys.column("label").to_pylist() == [0, 1]


def test_blob_and_artifact_files_are_documented(tmp_path: Path) -> None:
    section = doc_section("`blobs/`")
    reg_path, exp_path = tmp_path / "m.db", tmp_path / "e.db"
    with synarrow.ModelRegistry(reg_path) as reg:
        reg.save_model("clf", b"weights", {"accuracy": 0.9})
    exp = synarrow.Experiment("x", exp_path)
    with exp.start_run() as run:
        run.log_artifact("a.txt", b"hello")
    exp.close()
    for directory, content in (
        (reg_path / "blobs", b"weights"),
        (exp_path / "artifacts", b"hello"),
    ):
        (blob,) = directory.iterdir()
        assert blob.name == hashlib.sha256(content).hexdigest()
        assert blob.read_bytes() == content  # no header, no compression
    with synarrow.SynaDB(reg_path, readonly=True) as db:
        record = json.loads(db.get("models/clf/versions/1"))
        assert db.get("models/clf/next_version") == 2
    with synarrow.SynaDB(exp_path, readonly=True) as db:
        (key,) = db.keys("exp/x/runs/*/artifacts/*")
        artifact = json.loads(db.get(key))
    assert undocumented(record, section) == []
    assert list(artifact) == ["checksum", "size_bytes", "created_us"]
    assert undocumented(artifact, section) == []


def test_tensor_keys_are_documented(tmp_path: Path) -> None:
    section = doc_section("Tensors")
    with synarrow.TensorEngine(tmp_path / "t.db") as engine:
        engine.put_tensor("x/", np.arange(12, dtype=np.int16).reshape(4, 3))
        keys = sorted(engine.db.keys())
        meta = json.loads(engine.db.get("x/#tensor-meta"))
    assert keys == ["x/#tensor", "x/#tensor-meta"]
    assert undocumented(meta, section) == []


def test_vector_metadata_files_are_documented(tmp_path: Path) -> None:
    pytest.importorskip("usearch")
    section = doc_section("`vector_index/`")
    path = tmp_path / "v.db"
    with synarrow.VectorStore(path, dimensions=4) as store:
        store.insert("a", np.ones(4, np.float32), {"tag": "x", "n": 1, "tags": ["p"]})
        store.insert("b", np.arange(4, dtype=np.float32))
    directory = path / "vector_index"
    state = json.loads((directory / "state.json").read_text())
    assert state["format"] == 2
    assert re.fullmatch(r"meta-[1-9][0-9]*\.arrow", state["meta_file"])
    assert "meta-[1-9][0-9]*\\.arrow" in section
    names = sorted(p.name for p in directory.iterdir())
    assert names == sorted(
        ["config.json", "state.json", state["index_file"], state["keys_file"], state["meta_file"]]
    )
    meta = pa.ipc.open_file(directory / state["meta_file"]).read_all()
    assert meta.column("__label").to_pylist() == [0]
    assert [str(f.type) for f in meta.schema] == ["string", "int64", "list<item: string>", "uint64"]
    assert "`__label`" in section and "`__synarrow__/vector_metadata`" in section
    with synarrow.SynaDB(path, readonly=True) as db:
        entries = db.get_history("__synarrow__/vector_metadata").column("value").to_pylist()
    rows = [pa.ipc.open_stream(e).read_all() for e in entries]
    assert rows[0].column_names[:2] == ["__key", "__fp"]
    assert rows[1].column("__key").to_pylist() == ["b"]  # a store with metadata records all
