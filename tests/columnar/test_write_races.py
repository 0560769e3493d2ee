"""A link swapped in at a file's name after synarrow created it is never written through.

Another local user with write access to the database directory could replace a freshly
created file by a symlink between our no-follow create and the library call that writes it.
Writers therefore hand libraries the descriptor they opened (``/proc/self/fd/N``), not the name.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from _victims import Victim

import synarrow
import synarrow.columnar.ipc as columnar_ipc
import synarrow.fileio as fileio
from synarrow.errors import SynaError


def _swapping_open(real, victim: Path, should_swap):  # type: ignore[no-untyped-def]
    def open_fd(path, flags=os.O_RDONLY, *args, **kwargs):  # type: ignore[no-untyped-def]
        fd = real(path, flags, *args, **kwargs)
        if flags & os.O_EXCL and should_swap(Path(path)):
            os.unlink(path)
            os.symlink(victim, path)  # what a concurrent local user could do in the window
        return fd

    return open_fd


def test_compaction_never_writes_through_a_swapped_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = Victim(tmp_path / "victim.txt")
    db = synarrow.SynaDB(tmp_path / "db", synarrow.DbConfig(sync_on_write=False))
    db.append_batch("k", np.arange(100.0))
    monkeypatch.setattr(
        columnar_ipc,
        "open_fd",
        _swapping_open(columnar_ipc.open_fd, victim.path, lambda p: p.suffix == ".arrow"),
    )
    with pytest.raises(SynaError):
        db.compact()
    monkeypatch.undo()
    assert victim.unchanged()
    assert db.get_history_floats("k").tolist() == list(np.arange(100.0))
    db.close()


def test_vector_checkpoint_never_writes_through_a_swapped_link(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    victim = Victim(tmp_path / "victim.txt")
    # The index is written through fileio.DurableTemp, which opens its temporary name.
    monkeypatch.setattr(
        fileio,
        "open_fd",
        _swapping_open(fileio.open_fd, victim.path, lambda p: ".usearch.tmp-" in p.name),
    )
    with pytest.raises(SynaError):
        store = synarrow.VectorStore(tmp_path / "vec", dimensions=8)
        store.insert_batch(
            [f"d{i}" for i in range(20)], np.random.default_rng(0).random((20, 8), np.float32)
        )
        store.close()
    assert victim.unchanged()
