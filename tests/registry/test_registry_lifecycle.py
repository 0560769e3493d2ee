"""Model versions: save, load, stages, delete, errors, persistence."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import synarrow
from synarrow import (
    DatabaseLockedError,
    InvalidArgumentError,
    InvalidValueError,
    NotFoundError,
    ReadOnlyError,
)


@pytest.fixture
def reg(tmp_path: Path):
    r = synarrow.ModelRegistry(tmp_path / "models.db")
    yield r
    r.close()


def test_versions_count_up_with_checksum_size_stage(reg: synarrow.ModelRegistry) -> None:
    before = dt.datetime.now(dt.timezone.utc)
    infos = [reg.save_model("clf", f"weights {i}".encode(), {"i": i}) for i in range(3)]
    assert [v.version for v in infos] == [1, 2, 3]
    for i, v in enumerate(infos):
        data = f"weights {i}".encode()
        assert v.checksum == hashlib.sha256(data).hexdigest()
        assert v.size_bytes == len(data)
        assert v.stage == "Development"
        assert v.metadata == {"i": i}
        assert v.name == "clf"
        assert before <= v.created_at <= dt.datetime.now(dt.timezone.utc)
    data, info = reg.load_model("clf")
    assert data == b"weights 2" and info == infos[2]
    data, info = reg.load_model("clf", version=1)
    assert data == b"weights 0" and info == infos[0]
    assert reg.list_versions("clf") == infos
    assert reg.list_models() == ["clf"]
    assert reg.get_version("clf", 2) == infos[1]


def test_sources_bytes_like_path_and_file_object(
    reg: synarrow.ModelRegistry, tmp_path: Path
) -> None:
    payload = bytes(range(256)) * 9000  # over 1 MiB: the threaded path
    src = tmp_path / "model.pt"
    src.write_bytes(payload)
    v1 = reg.save_model("m", payload)
    v2 = reg.save_model("m", str(src))
    v3 = reg.save_model("m", src)
    v4 = reg.save_model("m", io.BytesIO(payload))
    v5 = reg.save_model("m", bytearray(payload))
    v6 = reg.save_model("m", memoryview(payload))
    with open(src, "rb") as f:
        v7 = reg.save_model("m", f)
    assert len({v.checksum for v in (v1, v2, v3, v4, v5, v6, v7)}) == 1
    assert len(list((reg.path / "blobs").iterdir())) == 1  # one copy per distinct content
    out, info = reg.load_model("m", 4, path=tmp_path / "out.pt")
    assert out == tmp_path / "out.pt" and out.read_bytes() == payload and info.version == 4
    empty = reg.save_model("empty", b"")
    assert empty.size_bytes == 0 and reg.load_model("empty")[0] == b""


def test_metadata_must_be_json(reg: synarrow.ModelRegistry) -> None:
    ok = {"accuracy": "0.95", "epochs": 10, "nested": {"a": [1, 2.5, None, True]}}
    assert reg.save_model("m", b"x", ok).metadata == ok
    for bad in ({"obj": object()}, {"nan": float("nan")}, {"inf": float("inf")}, {1j: 1}):
        with pytest.raises(InvalidValueError):
            reg.save_model("m", b"x", bad)
    with pytest.raises(InvalidValueError):
        reg.save_model("m", b"x", ["not", "a", "mapping"])  # type: ignore[arg-type]
    assert [v.version for v in reg.list_versions("m")] == [1]  # nothing half-saved


def test_bad_data_and_names(reg: synarrow.ModelRegistry, tmp_path: Path) -> None:
    with pytest.raises(InvalidValueError):
        reg.save_model("m", 42)  # type: ignore[arg-type]
    with pytest.raises(InvalidValueError):
        reg.save_model("m", str(tmp_path / "missing.pt"))
    with pytest.raises(InvalidValueError):
        reg.save_model("m", io.StringIO("text"))
    for bad in ("", "a b", "../x", "a//b", "/a", "x/versions/1", 7):
        with pytest.raises(InvalidArgumentError):
            reg.save_model(bad, b"x")  # type: ignore[arg-type]
    assert reg.list_models() == []
    assert list((reg.path / "blobs").glob("tmp-*")) == []
    v = reg.save_model("team/classifier-v2.1", b"x")
    assert reg.load_model("team/classifier-v2.1")[1] == v


def test_stages_production_archives_previous(reg: synarrow.ModelRegistry) -> None:
    for i in range(3):
        reg.save_model("m", bytes([i]))
    assert reg.get_production("m") is None
    assert reg.set_stage("m", 1, "Production").stage == "Production"
    assert reg.get_production("m").version == 1  # type: ignore[union-attr]
    reg.set_stage("m", 2, "staging")  # case-insensitive
    assert reg.get_version("m", 2).stage == "Staging"
    reg.set_stage("m", 2, "PRODUCTION")
    stages = {v.version: v.stage for v in reg.list_versions("m")}
    assert stages == {1: "Archived", 2: "Production", 3: "Development"}
    assert reg.get_production("m").version == 2  # type: ignore[union-attr]
    assert reg.load_model("m", "Production")[0] == bytes([1])
    reg.set_stage("m", 3, "Production", archive_existing=False)
    assert reg.get_production("m").version == 3  # type: ignore[union-attr]
    assert [s for _, s in reg.stage_history("m", 2)] == ["Development", "Staging", "Production"]
    for bad in ("Prod", "", None, 3):
        with pytest.raises(InvalidValueError):
            reg.set_stage("m", 1, bad)  # type: ignore[arg-type]
    with pytest.raises(NotFoundError):
        reg.load_model("m", "Staging")


def test_unknown_model_and_version(reg: synarrow.ModelRegistry) -> None:
    for call in (
        lambda: reg.load_model("nope"),
        lambda: reg.list_versions("nope"),
        lambda: reg.get_production("nope"),
        lambda: reg.set_stage("nope", 1, "Staging"),
        lambda: reg.delete_version("nope", 1),
    ):
        with pytest.raises(NotFoundError):
            call()
    reg.save_model("m", b"x")
    with pytest.raises(NotFoundError):
        reg.load_model("m", version=2)
    with pytest.raises(KeyError):  # NotFoundError is also a KeyError
        reg.get_version("m", 5)
    for bad in (0, -1, 1.0, True, "1"):
        with pytest.raises((InvalidArgumentError, InvalidValueError)):
            reg.load_model("m", version=bad)  # type: ignore[arg-type]


def test_delete_version(reg: synarrow.ModelRegistry) -> None:
    v1 = reg.save_model("m", b"shared bytes")
    reg.save_model("m", b"own bytes")
    other = reg.save_model("other", b"shared bytes")
    reg.delete_version("m", 2)
    assert [v.version for v in reg.list_versions("m")] == [1]
    assert reg.save_model("m", b"new").version == 3  # numbers are not reused
    reg.delete_version("m", 1)
    assert (reg.path / "blobs" / v1.checksum).exists()  # still used by "other"
    reg.delete_version("other", 1)
    assert not (reg.path / "blobs" / other.checksum).exists()
    assert reg.list_versions("other") == []
    with pytest.raises(NotFoundError):
        reg.load_model("other")
    with pytest.raises(NotFoundError):
        reg.delete_version("m", 1)


def test_persistence_and_readonly(tmp_path: Path) -> None:
    path = tmp_path / "models.db"
    with synarrow.ModelRegistry(path) as reg:
        v = reg.save_model("m", b"abc", {"k": "v"})
        reg.set_stage("m", 1, "Production")
    with synarrow.ModelRegistry(path, readonly=True) as ro:
        data, info = ro.load_model("m")
        assert data == b"abc" and info.stage == "Production" and info.metadata == {"k": "v"}
        assert info.checksum == v.checksum
        with pytest.raises(ReadOnlyError):
            ro.save_model("m", b"x")
        with pytest.raises(ReadOnlyError):
            ro.set_stage("m", 1, "Archived")
    with synarrow.ModelRegistry(path) as reg:
        assert reg.save_model("m", b"d").version == 2
        # the metadata is plain SynaDB data, readable with SQL
        n = reg.db.sql("SELECT count(*) AS n FROM latest WHERE key LIKE 'models/m/versions/%'")
        assert n.to_pylist() == [{"n": 2}]


def test_a_second_process_saves_versions_beside_the_first(tmp_path: Path) -> None:
    path = tmp_path / "models.db"
    code = textwrap.dedent(
        """
        import sys, synarrow
        with synarrow.ModelRegistry(sys.argv[1]) as reg:
            print(reg.save_model("m", b"from the other process").version)
            print(reg.load_model("m", 1)[0].decode())
        """
    )
    with synarrow.ModelRegistry(path) as reg:
        reg.save_model("m", b"hello")
        out = subprocess.run(
            [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.split("\n")[:2] == ["2", "hello"]
        assert reg.save_model("m", b"third").version == 3
        assert [v.version for v in reg.list_versions("m")] == [1, 2, 3]


def test_second_process_is_locked_out_of_a_single_writer_store(tmp_path: Path) -> None:
    path = tmp_path / "models.db"
    synarrow.SynaDB(path, synarrow.DbConfig(writers="single")).close()
    code = textwrap.dedent(
        """
        import sys, synarrow
        try:
            synarrow.ModelRegistry(sys.argv[1])
            print("opened")
        except synarrow.DatabaseLockedError:
            print("locked")
        with synarrow.ModelRegistry(sys.argv[1], readonly=True) as ro:
            print(ro.load_model("m")[0].decode())
        """
    )
    with synarrow.ModelRegistry(path) as reg:
        reg.save_model("m", b"hello")
        out = subprocess.run(
            [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60
        )
        assert out.stdout.split() == ["locked", "hello"], out.stderr
    # a plain SynaDB handle on the path in this process is another writer
    with synarrow.SynaDB(path), pytest.raises(DatabaseLockedError, match="SynaDB handle"):
        synarrow.ModelRegistry(path)
