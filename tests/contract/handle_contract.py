"""The life cycle every synarrow handle promises, as one test base class.

Modelled on zarr-python's ``StoreTests``: :class:`HandleContract` holds the tests, and each
handle class (``SynaDB``, ``VectorStore``, ``TensorEngine``, ``Experiment``,
``ModelRegistry``) runs them through a subclass that says how to open a writable and a
read-only handle and how to make one read call and one write call. The promises:

* a new handle is open, ``close()`` closes it, and closing again is a no-op;
* after ``close()`` a read and a write each raise :class:`DatabaseClosedError`;
* a read-only handle reads what was written and refuses writes with :class:`ReadOnlyError`
  (leaving the data as it was);
* ``with`` closes the handle, also when the block raises;
* a second writer on the same path is locked out (:class:`DatabaseLockedError`), or, for the
  classes documented to share one writer per process, shares it and still locks out
  everything else;
* closers registered with ``on_close`` run once, when the handle closes;
* ``repr`` names the state: open, read-only or closed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, ClassVar

import pytest

from synarrow import DatabaseClosedError, DatabaseLockedError, ReadOnlyError, SynaDB
from synarrow.handle import Handle

__all__ = ["HandleContract"]


class HandleContract:
    """Subclass as ``TestXxxHandle`` and implement the four factories below."""

    #: Whether writers on one path in one process share a single writer handle (Experiment,
    #: ModelRegistry).
    shares_writer: ClassVar[bool] = False
    #: Whether several writer handles (and processes) may write the path at once (the
    #: default ``DbConfig(writers="many")``); otherwise a second writer is refused.
    many_writers: ClassVar[bool] = True
    #: Python code (``path`` is given as sys.argv[1]) that opens a writer in a new process
    #: and writes.
    other_process_writer: ClassVar[str] = ""

    # -- what each handle class provides -------------------------------------------------

    def open_writable(self, path: Path) -> Handle:
        """A writable handle on ``path`` (created if missing)."""
        raise NotImplementedError

    def open_readonly(self, path: Path) -> Handle:
        """A read-only handle on ``path`` (which holds what :meth:`write` wrote)."""
        raise NotImplementedError

    def read(self, handle: Handle) -> Any:
        """One read call; returns a plain, comparable value (what :meth:`write` stored)."""
        raise NotImplementedError

    def write(self, handle: Handle) -> None:
        """One write call."""
        raise NotImplementedError

    # -- helpers -------------------------------------------------------------------------

    @pytest.fixture
    def path(self, tmp_path: Path) -> Path:
        return tmp_path / "handle.db"

    def seeded(self, path: Path) -> Any:
        """Write once through a writable handle, close it; returns what a read then gives."""
        handle = self.open_writable(path)
        try:
            self.write(handle)
            value = self.read(handle)
        finally:
            handle.close()
        return value

    # -- the contract --------------------------------------------------------------------

    def test_open(self, path: Path) -> None:
        handle = self.open_writable(path)
        try:
            assert isinstance(handle, Handle)
            assert not handle.closed
            assert handle.state == "open" and not handle.readonly
            self.write(handle)
            assert self.read(handle) is not None
        finally:
            handle.close()

    def test_close(self, path: Path) -> None:
        handle = self.open_writable(path)
        handle.close()
        assert handle.closed
        assert handle.state == "closed"

    def test_close_twice(self, path: Path) -> None:
        handle = self.open_writable(path)
        self.write(handle)
        handle.close()
        assert handle.close() is None
        assert handle.closed
        # and nothing was lost or left locked by the second close
        assert self.seeded_value(path) is not None

    def seeded_value(self, path: Path) -> Any:
        handle = self.open_writable(path)
        try:
            return self.read(handle)
        finally:
            handle.close()

    def test_read_after_close_raises(self, path: Path) -> None:
        handle = self.open_writable(path)
        self.write(handle)
        handle.close()
        with pytest.raises(DatabaseClosedError, match="closed"):
            self.read(handle)

    def test_write_after_close_raises(self, path: Path) -> None:
        handle = self.open_writable(path)
        handle.close()
        with pytest.raises(DatabaseClosedError, match="closed"):
            self.write(handle)

    def test_readonly_reads_and_refuses_writes(self, path: Path) -> None:
        value = self.seeded(path)
        handle = self.open_readonly(path)
        try:
            assert handle.readonly and handle.state == "read-only"
            assert self.read(handle) == value
            with pytest.raises(ReadOnlyError, match="read-only"):
                self.write(handle)
            assert self.read(handle) == value
        finally:
            handle.close()
        assert handle.closed
        with pytest.raises(DatabaseClosedError):
            self.read(handle)
        assert self.seeded_value(path) == value  # the refused write changed nothing

    def test_context_manager_closes(self, path: Path) -> None:
        with self.open_writable(path) as handle:
            assert not handle.closed
            self.write(handle)
        assert handle.closed
        with pytest.raises(RuntimeError, match="inside"), self.open_writable(path) as again:
            raise RuntimeError("inside the block")
        assert again.closed

    def test_a_second_writer_writes_or_is_locked_out(self, path: Path) -> None:
        first = self.open_writable(path)
        try:
            if self.many_writers or self.shares_writer:
                # a second writer object: its own handle, or one writer shared in-process
                second = self.open_writable(path)
                try:
                    self.write(second)
                    self.write(first)
                finally:
                    second.close()
                self.write(first)  # closing one leaves the other open
            else:
                with pytest.raises(DatabaseLockedError):
                    self.open_writable(path)
            if self.many_writers:
                with SynaDB(path) as other:  # a plain writer beside it
                    other.append("contract/other", 1.0)
            else:
                with pytest.raises(DatabaseLockedError):
                    SynaDB(path)  # any other writer in this process is locked out
            if self.other_process_writer:
                code = textwrap.dedent(self.other_process_writer)
                proc = subprocess.run(
                    [sys.executable, "-c", code, str(path)],
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
                if self.many_writers:
                    assert proc.returncode == 0, proc.stderr
                else:
                    assert proc.returncode != 0
                    assert "DatabaseLockedError" in proc.stderr, proc.stderr
            self.write(first)  # still writes after the others
        finally:
            first.close()
        self.open_writable(path).close()  # the lock went with the last close

    def test_on_close_runs_once_at_close(self, path: Path) -> None:
        calls: list[str] = []
        handle = self.open_writable(path)
        handle.on_close(lambda: calls.append("closed"))
        assert calls == []
        handle.close()
        handle.close()
        assert calls == ["closed"]
        handle.on_close(lambda: calls.append("late"))  # on a closed handle: runs at once
        assert calls == ["closed", "late"]

    def test_repr_names_the_state(self, path: Path) -> None:
        self.seeded(path)
        handle = self.open_writable(path)
        text = repr(handle)
        assert type(handle).__name__ in text
        assert "closed" not in text and "read-only" not in text
        handle.close()
        assert "closed" in repr(handle)
        ro = self.open_readonly(path)
        try:
            assert "read-only" in repr(ro) and "closed" not in repr(ro)
        finally:
            ro.close()
        assert "closed" in repr(ro)
