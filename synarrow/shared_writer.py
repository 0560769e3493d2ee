"""One writer :class:`~synarrow.SynaDB` per database per process, shared by its users.

``Experiment`` and ``ModelRegistry`` objects opened on one path in one process share one
writer handle (a :class:`SharedWriter`), so they do not lock each other out: the first user
opens it, each further user takes a reference, the last :func:`release_shared` closes it.
Other processes write beside it (``DbConfig(writers="many")``, the default); on a database
set to ``writers="single"``, another process holding the writer lock makes
:func:`open_shared` wait up to ``timeout`` seconds, then raise
:class:`~synarrow.errors.DatabaseLockedError`.

The shared handle turns off the per-append fsync for itself only (``SynaDB(path,
sync_on_write=False)``, never written to ``config.json``): metrics are buffered and metadata
writes call ``sync()`` themselves, and a later plain ``SynaDB(path)`` keeps the database's
own durability setting.

At interpreter exit the hooks registered with :func:`at_exit` run first (experiments end
their open runs there), then every shared writer of this process is closed.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synarrow.db import SynaDB
from synarrow.errors import DatabaseLockedError, InvalidArgumentError

__all__ = ["SharedWriter", "at_exit", "open_shared", "release_shared"]


@dataclass(eq=False)
class SharedWriter:
    """The writer handle of one database, shared inside one process.

    Attributes:
        db: the open writer :class:`~synarrow.SynaDB`.
        pid: the process that opened it (a forked child must not write through it).
        refs: how many users hold it.
        runs: live experiment runs by id, so every ``Experiment`` of the process sees them.
    """

    db: SynaDB
    pid: int
    refs: int = 0
    runs: dict[str, Any] = field(default_factory=dict)

    @property
    def in_this_process(self) -> bool:
        """Whether this process opened the handle (false in a forked child)."""
        return self.pid == os.getpid()


_WRITERS: dict[Path, SharedWriter] = {}
_WRITERS_LOCK = threading.Lock()
_EXIT_HOOKS: list[Callable[[], None]] = []


def open_shared(path: str | os.PathLike[str], *, timeout: float, what: str) -> SharedWriter:
    """The process-wide writer handle of the database at ``path`` (opened on first use).

    ``what`` names the kind of store in the error message (``"experiment"``). Another
    process holding the writer lock makes this retry for up to ``timeout`` seconds, then
    raise :class:`~synarrow.errors.DatabaseLockedError`.
    """
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout < 0:
        raise InvalidArgumentError(f"timeout must be a number of seconds >= 0, got {timeout!r}")
    key = Path(path).absolute()
    deadline = time.monotonic() + timeout
    while True:
        with _WRITERS_LOCK:  # never held while waiting, so other paths' opens go on
            shared = _WRITERS.get(key)
            if shared is not None and shared.in_this_process and not shared.db.closed:
                shared.refs += 1
                return shared
            try:
                # The handle's own setting only: config.json keeps the database's.
                db = SynaDB(key, sync_on_write=False)
            except DatabaseLockedError as exc:
                if time.monotonic() >= deadline:
                    raise DatabaseLockedError(
                        f"{what} store {key} is open for writing in another process "
                        "(or by a SynaDB handle of this one)",
                        hint=(
                            "one writer process per store: give parallel trials their own "
                            "path, pass timeout= to wait for the other writer, or open with "
                            "readonly=True to read"
                        ),
                    ) from exc
            else:
                shared = _WRITERS[key] = SharedWriter(db, os.getpid(), 1)
                return shared
        time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))


def release_shared(shared: SharedWriter) -> None:
    """Drop one reference; the database is closed (made durable) with the last one."""
    with _WRITERS_LOCK:
        shared.refs -= 1
        if shared.refs > 0:
            return
        if _WRITERS.get(shared.db.path) is shared:
            del _WRITERS[shared.db.path]
    if shared.in_this_process:
        shared.db.close()


def at_exit(hook: Callable[[], None]) -> None:
    """Run ``hook`` at interpreter exit, before the shared writers close."""
    _EXIT_HOOKS.append(hook)


def _close_all_at_exit() -> None:
    for hook in list(_EXIT_HOOKS):
        try:
            hook()
        except Exception:  # the interpreter is going away; keep closing the others
            pass
    with _WRITERS_LOCK:
        writers = [w for w in _WRITERS.values() if w.in_this_process]
        _WRITERS.clear()
    for w in writers:
        try:
            w.db.close()
        except Exception:  # same
            pass


atexit.register(_close_all_at_exit)
