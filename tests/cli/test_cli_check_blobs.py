"""`synarrow check` verifies the content-addressed files of the registry and experiments."""

from __future__ import annotations

from pathlib import Path

import pytest

import synarrow
from synarrow.cli import main


def test_check_reports_a_damaged_model_blob(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "models.db"
    with synarrow.ModelRegistry(path) as reg:
        reg.save_model("m", b"weights" * 1000, {})
    assert main(["check", str(path)]) == 0
    assert "blobs/: 1 files, SHA-256 verified" in capsys.readouterr().out
    (blob,) = (path / "blobs").iterdir()
    data = bytearray(blob.read_bytes())
    data[10] ^= 1
    blob.write_bytes(bytes(data))
    assert main(["check", str(path)]) != 0
    captured = capsys.readouterr()
    assert blob.name in captured.out + captured.err
