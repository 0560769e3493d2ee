"""Checksums stored in a registry or experiment name files only inside its blob directory.

A crafted version or artifact whose stored checksum is a path (``../../victim.txt``) or
anything but a lowercase hex SHA-256 gives CorruptionError before any file is opened,
deleted or tested by that name; a blob replaced by a symlink is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _victims import Victim

import synarrow
from synarrow.errors import ChecksumError, CorruptionError


def craft_version(reg: synarrow.ModelRegistry, name: str, version: int, checksum: str) -> None:
    """Append a version record as a crafted database would hold it."""
    info = json.loads(reg.db.get(f"models/{name}/versions/{version}"))
    info["checksum"] = checksum
    reg.db.append(f"models/{name}/versions/{version}", json.dumps(info))
    reg.db.sync()


CRAFTED = ["../../victim.txt", "../blobs2/" + "a" * 64, "A" * 64, "a" * 63, "/etc/passwd", ""]


@pytest.mark.parametrize("checksum", CRAFTED)
def test_crafted_checksum_never_reaches_the_file_system(tmp_path: Path, checksum: str) -> None:
    victim = Victim(tmp_path / "victim.txt")
    path = tmp_path / "deep" / "models.db"
    with synarrow.ModelRegistry(path) as reg:
        reg.save_model("m", b"weights" * 100)
        craft_version(reg, "m", 1, checksum)
        with pytest.raises(CorruptionError, match="not a name synarrow writes"):
            reg.load_model("m", 1)
        with pytest.raises(CorruptionError, match="not a name synarrow writes"):
            reg.load_model("m", 1, path=tmp_path / "out.bin")
        with pytest.raises(CorruptionError, match="not a name synarrow writes"):
            reg.delete_version("m", 1)
        problems = reg.verify()
        assert [(n, v) for n, v, _ in problems] == [("m", 1)]
        assert "not a name synarrow writes" in problems[0][2]
        # Refused before any change: the version is still there.
        assert reg.get_version("m", 1).checksum == checksum
    assert victim.unchanged()
    assert not (tmp_path / "out.bin").exists()


def test_verify_does_not_reveal_whether_a_path_exists(tmp_path: Path) -> None:
    Victim(tmp_path / "victim.txt")
    with synarrow.ModelRegistry(tmp_path / "models.db") as reg:
        reg.save_model("m", b"x" * 10)
        reg.save_model("m", b"y" * 10)
        craft_version(reg, "m", 1, "../victim.txt")
        craft_version(reg, "m", 2, "../no-such-file.txt")
        (_, _, existing), (_, _, missing) = reg.verify()
    assert existing.replace("victim", "X") == missing.replace("no-such-file", "X")


def test_blob_replaced_by_a_symlink_is_refused(tmp_path: Path) -> None:
    data = b"model bytes" * 50
    victim = Victim(tmp_path / "victim.bin", data)  # same size and content: a perfect decoy
    with synarrow.ModelRegistry(tmp_path / "models.db") as reg:
        info = reg.save_model("m", data)
        blob = tmp_path / "models.db" / "blobs" / info.checksum
        blob.unlink()
        blob.symlink_to(victim.path)
        with pytest.raises(CorruptionError, match="symbolic link"):
            reg.load_model("m")
        assert reg.verify() and "symbolic link" in reg.verify()[0][2]
        reg.delete_version("m", 1)  # removes the link itself
        assert not blob.is_symlink()
    assert victim.unchanged()


def test_blob_directory_symlink_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    path = tmp_path / "models.db"
    with synarrow.ModelRegistry(path) as reg:
        reg.save_model("m", b"abc")
    blobs = path / "blobs"
    for f in blobs.iterdir():
        (other / f.name).write_bytes(f.read_bytes())
        f.unlink()
    blobs.rmdir()
    blobs.symlink_to(other, target_is_directory=True)
    with (
        synarrow.ModelRegistry(path, readonly=True) as reg,
        pytest.raises(CorruptionError, match="blob directory"),
    ):
        reg.load_model("m")
    with pytest.raises(CorruptionError, match="blob directory"):
        synarrow.ModelRegistry(path)  # the writer's clean-up of temporaries refuses too


def test_damaged_version_record_is_corruption(tmp_path: Path) -> None:
    with synarrow.ModelRegistry(tmp_path / "models.db") as reg:
        reg.save_model("m", b"abc")
        reg.db.append("models/m/versions/1", json.dumps({"version": "1"}))
        with pytest.raises(CorruptionError, match="damaged"):
            reg.get_version("m", 1)
        reg.db.append("models/m/versions/1", "[1, 2]")
        with pytest.raises(CorruptionError):
            reg.list_versions("m")


def test_planted_blob_link_is_replaced_by_the_real_bytes(tmp_path: Path) -> None:
    """Saving content whose blob name is already a link replaces the link, never writes
    through it, and the saved bytes read back."""
    data = b"fresh weights" * 30
    victim = Victim(tmp_path / "victim.bin", b"z" * len(data))
    import hashlib

    path = tmp_path / "models.db"
    with synarrow.ModelRegistry(path) as reg:
        reg.save_model("seed", b"seed")
        (path / "blobs" / hashlib.sha256(data).hexdigest()).symlink_to(victim.path)
        reg.save_model("m", data)
        assert reg.load_model("m")[0] == data
    assert victim.unchanged()


@pytest.mark.parametrize("checksum", ["../../victim.txt", "0" * 65])
def test_crafted_artifact_checksum_is_refused(tmp_path: Path, checksum: str) -> None:
    victim = Victim(tmp_path / "victim.txt")
    with synarrow.Experiment("e", tmp_path / "sub" / "exp.db") as exp:
        with exp.start_run() as run:
            run.log_artifact("weights", b"w" * 100)
        key = f"exp/e/runs/{run.id}/artifacts/weights"
        record = json.loads(exp._exp_db.get(key))
        record["checksum"] = checksum
        exp._exp_db.append(key, json.dumps(record))
        with pytest.raises(CorruptionError, match="not a name synarrow writes"):
            exp.load_artifact(run.id, "weights")
        with pytest.raises(CorruptionError, match="not a name synarrow writes"):
            exp.list_artifacts(run.id)
    assert victim.unchanged()


def test_honest_damage_is_still_a_checksum_error(tmp_path: Path) -> None:
    with synarrow.ModelRegistry(tmp_path / "models.db") as reg:
        info = reg.save_model("m", b"abcdef")
        (tmp_path / "models.db" / "blobs" / info.checksum).write_bytes(b"abcdeF")
        with pytest.raises(ChecksumError):
            reg.load_model("m")


@pytest.mark.parametrize(
    "change",
    [
        {"version": 99},  # the record of another version
        {"name": "other"},  # the record of another model
        {"stage": ["x"]},  # not a stage
        {"stage": "Shipped"},
        {"created_us": float("nan")},
        {"deep": True},  # metadata nested deeper than json can parse
    ],
)
def test_version_record_must_be_its_own(tmp_path: Path, change: dict) -> None:
    with synarrow.ModelRegistry(tmp_path / "models.db") as reg:
        reg.save_model("m", b"abc")
        key = "models/m/versions/1"
        if change == {"deep": True}:
            info = reg.db.get(key).replace(
                '"metadata": {}', '"metadata": ' + "[" * 50_000 + "]" * 50_000
            )
        else:
            info = json.dumps({**json.loads(reg.db.get(key)), **change})
        reg.db.append(key, info)
        with pytest.raises(CorruptionError):
            reg.get_version("m", 1)
        with pytest.raises(CorruptionError):
            reg.list_versions("m")
