"""The life cycle every synarrow handle shares: open, closed, read-only, a context manager.

``SynaDB``, ``VectorStore``, ``TensorEngine``, ``Experiment`` and ``ModelRegistry`` all derive
from :class:`Handle`, so they agree on what ``close()`` twice, use after close, writes through a
read-only handle and ``with`` blocks do:

>>> import synarrow, tempfile
>>> db = synarrow.SynaDB(tempfile.mkdtemp() + "/h.db")
>>> with db:
...     db.closed
False
>>> db.closed, db.close()  # closing again is a no-op
(True, None)
>>> db.get("x")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
synarrow.errors.DatabaseClosedError: database ... is closed ...)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, TypeVar

from synarrow.errors import DatabaseClosedError, ReadOnlyError

__all__ = ["Handle"]

_H = TypeVar("_H", bound="Handle")


class Handle:
    """Base class of the synarrow handles: one ``path``, open until :meth:`close`.

    Subclasses set :attr:`kind` (the word used in error messages), call
    ``super().__init__(path, readonly=...)`` first, :meth:`mark_open` once their resources are
    open, and override :meth:`release` to free them. Resources that other layers attach to a
    handle (a DuckDB session, a helper thread) are registered with :meth:`on_close` and closed
    by the handle, not by whoever created them.
    """

    kind: ClassVar[str] = "handle"

    def __init__(self, path: Path, *, readonly: bool) -> None:
        self.path = path
        self.readonly = readonly
        self._closed = True
        self._closers: list[Callable[[], None]] = []
        self._closers_lock = threading.Lock()
        self._released = threading.Event()  # set once close() has released everything
        self._closing_thread: int | None = None

    # -- state ---------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether the handle is closed (or never finished opening)."""
        return self._closed

    @property
    def state(self) -> str:
        """``"open"``, ``"read-only"`` or ``"closed"`` (the word :meth:`__repr__` shows)."""
        return "closed" if self._closed else ("read-only" if self.readonly else "open")

    def describe(self) -> str:
        """How error messages name the handle: its :attr:`kind` and path. Override to add
        more (an experiment adds its name)."""
        return f"{self.kind} {self.path}"

    def mark_open(self) -> None:
        """Called by a subclass once it is fully open."""
        self._closed = False

    def require_open(self) -> None:
        """Raise :class:`~synarrow.errors.DatabaseClosedError` if the handle is closed."""
        if self._closed:
            raise DatabaseClosedError(f"{self.describe()} is closed")

    def require_writable(self) -> None:
        """Raise if the handle is closed, or :class:`~synarrow.errors.ReadOnlyError` if it
        was opened read-only."""
        if self._closed:
            raise DatabaseClosedError(f"{self.describe()} is closed")
        if self.readonly:
            raise ReadOnlyError(f"{self.describe()} was opened read-only")

    # -- closing -------------------------------------------------------------------------

    def on_close(self, closer: Callable[[], None]) -> None:
        """Run ``closer`` when the handle closes (before its own resources are released).

        On a handle that is already closed the closer runs at once.
        """
        with self._closers_lock:
            if not self._closed:
                self._closers.append(closer)
                return
        closer()

    def _run_closers(self) -> None:
        with self._closers_lock:
            closers, self._closers = self._closers, []
        error: BaseException | None = None
        for closer in reversed(closers):
            try:
                closer()
            except BaseException as exc:  # every closer runs; the first failure is raised
                error = error or exc
        if error is not None:
            raise error

    def release(self) -> None:
        """Free the subclass's own resources (called once, by :meth:`close`). Override."""

    def close(self) -> None:
        """Close the handle: attached resources first, then its own. Idempotent.

        A call while another thread is closing the handle returns once that close is done
        (so the files and locks are released when any ``close()`` returns).
        """
        with self._closers_lock:
            first = not self._closed and self._closing_thread is None
            if first:
                self._closed = True
                self._closing_thread = threading.get_ident()
            elif self._closing_thread is None:
                return  # never opened, or closed and released already
        if not first:
            if self._closing_thread != threading.get_ident():  # not a closer closing again
                self._released.wait()
            return
        try:
            self._run_closers()
        finally:
            try:
                self.release()
            finally:
                with self._closers_lock:
                    self._closing_thread = None
                self._released.set()

    def __enter__(self: _H) -> _H:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<synarrow.{type(self).__name__} {str(self.path)!r} {self.state}>"
