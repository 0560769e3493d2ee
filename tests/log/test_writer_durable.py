"""The durable single append of the log writer: one write() and one fdatasync per append,
short and interrupted writes never leaving half an entry in front of later ones."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

import synarrow
from synarrow.errors import StorageFullError
from synarrow.log import writer as writer_mod
from synarrow.log.format import Atom, encode_entry, flags_byte
from synarrow.log.names import segment_path
from synarrow.log.reader import scan_segment
from synarrow.log.writer import LogWriter


def _entry(i: int) -> bytes:
    return encode_entry(1000 + i, b"key", f"value {i}".encode(), flags_byte(0, Atom.TEXT))


def _new_writer(tmp_path: Path) -> LogWriter:
    return LogWriter(tmp_path, 1, 0, existing_size=None, buffer_bytes=1 << 16)


def _values(tmp_path: Path) -> list[bytes]:
    scan = scan_segment(segment_path(tmp_path, 1))
    assert scan.torn_bytes == 0
    out = []
    for off in scan.offsets:
        kl = int.from_bytes(scan.data[off + 12 : off + 14], "little")
        vl = int.from_bytes(scan.data[off + 14 : off + 18], "little")
        out.append(bytes(scan.data[off + 19 + kl : off + 19 + kl + vl]))
    return out


def test_short_writes_are_finished(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = _new_writer(tmp_path)
    real = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real(fd, bytes(data)[:7]))
    for i in range(3):
        end = w.write(_entry(i), sync=True)
        w.sync_to(end)
    monkeypatch.setattr(os, "write", real)
    w.close()
    assert _values(tmp_path) == [b"value 0", b"value 1", b"value 2"]


@pytest.mark.parametrize("failure", [KeyboardInterrupt, OSError])
def test_a_write_failing_halfway_leaves_no_half_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: type[BaseException]
) -> None:
    w = _new_writer(tmp_path)
    w.sync_to(w.write(_entry(0), sync=True))
    before = w.size
    real = os.write
    calls: list[int] = []

    def flaky(fd: int, data: Any) -> int:
        calls.append(fd)
        if len(calls) == 1:
            return real(fd, bytes(data)[:7])  # part of the entry reaches the file
        if failure is OSError:
            raise OSError(errno.ENOSPC, "No space left on device")
        raise failure()

    monkeypatch.setattr(os, "write", flaky)
    expected = StorageFullError if failure is OSError else failure
    with pytest.raises(expected):
        w.write(_entry(1), sync=True)
    monkeypatch.setattr(os, "write", real)
    assert w.size == before == os.path.getsize(segment_path(tmp_path, 1))
    w.sync_to(w.write(_entry(2), sync=True))
    w.close()
    assert _values(tmp_path) == [b"value 0", b"value 2"]


def test_one_write_and_one_fdatasync_per_durable_append(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = synarrow.SynaDB(tmp_path / "db", synarrow.DbConfig(sync_on_write=True, auto_compact=False))
    db.append("k", 0.5)  # key state made; what follows is the steady state
    writes: list[int] = []
    syncs: list[int] = []
    real_write, real_sync = os.write, writer_mod.sync_data
    monkeypatch.setattr(os, "write", lambda fd, data: (writes.append(fd), real_write(fd, data))[1])
    monkeypatch.setattr(writer_mod, "sync_data", lambda fd: (syncs.append(fd), real_sync(fd))[1])
    for i in range(20):
        db.append("k", float(i))
        db.append("n", i)
    monkeypatch.setattr(os, "write", real_write)
    monkeypatch.setattr(writer_mod, "sync_data", real_sync)
    assert len(writes) == len(syncs) == 40
    assert len(set(writes)) == 1 and set(syncs) == set(writes)  # the segment, nothing else
    db.close()
    with synarrow.SynaDB(tmp_path / "db", readonly=True) as again:
        assert again.get("k") == 19.0 and again.get("n") == 19
