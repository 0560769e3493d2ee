"""A writer of a shared log that is the only writer keeps the append lock between turns.

Under ``DbConfig(writers="many")`` every turn on the log costs a few system calls (the
``flock``, a read and two writes of the head, the unlock) that a single writer does not
pay. A handle that finds itself the only writer handle of the database (:func:`alone`:
the holders of ``LOCK`` in ``/proc/locks``) keeps the lock after its turn instead
(:meth:`SharedLog.keep <synarrow.log.shared.SharedLog.keep>`) and writes as a single writer
would. Another handle that wants a turn finds the lock taken and knocks while it waits;
the process's :class:`Doorbell` thread looks for knocks and makes the keeper let go
(:meth:`Keeper.hand_over`), after which both take turns. It looks every
:data:`POLL_SECONDS` when a handle begins to keep the lock (the processes of a sweep open
within moments of each other), less often as time passes without a knock, down to every
:data:`IDLE_POLL_SECONDS` (an idle keeper costs a fraction of a per cent of a core). A handle tries
to keep the lock again at most every :data:`RETRY_SECONDS`, and only when it is alone.

A handle that opens while the keeper looks at ``/proc/locks`` either is listed there (it
takes ``LOCK`` first) or knocks (it finds the append lock kept), so no handle waits for a
keeper that does not know it.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from pathlib import Path
from typing import Protocol

from synarrow.log.lock import writer_processes

__all__ = [
    "IDLE_POLL_SECONDS",
    "POLL_SECONDS",
    "RETRY_SECONDS",
    "Doorbell",
    "Keeper",
    "alone",
    "doorbell",
]

#: How often the :class:`Doorbell` looks for knocks when a handle begins to keep the lock.
POLL_SECONDS = 0.002
#: How often it looks at the least (after a while without knocks): the longest a handle
#: that wants a turn waits for a keeper that is not writing.
IDLE_POLL_SECONDS = 0.05
#: How long after it let go (or looked and was not alone) a handle looks again.
RETRY_SECONDS = 1.0


class Keeper(Protocol):
    """What the :class:`Doorbell` needs of a handle that keeps the append lock."""

    @property
    def keeping(self) -> bool:
        """Whether it keeps the append lock now."""
        ...

    def knocked(self) -> bool:
        """Whether another handle waits for the append lock (callable from any thread)."""
        ...

    def hand_over(self) -> None:
        """Let go of the append lock (from the doorbell's thread)."""
        ...

    def forked(self) -> None:
        """In a forked child: stop holding the parent's lock (no lock may be taken)."""
        ...


def alone(path: Path) -> bool:
    """Whether this process's one handle is the only writer handle of the database at
    ``path`` (``False`` where the system does not say)."""
    holders = writer_processes(path)
    return holders is not None and holders == [os.getpid()]


class Doorbell:
    """One thread per process that makes the keepers it watches let go when another handle
    knocks. It runs while some handle keeps the lock and holds only weak references."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._keepers: weakref.WeakSet[Keeper] = weakref.WeakSet()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._interval = POLL_SECONDS

    def watch(self, keeper: Keeper) -> None:
        """Watch ``keeper`` (which keeps the lock now) until it lets go."""
        with self._cond:
            self._keepers.add(keeper)
            self._interval = POLL_SECONDS
            thread = self._thread
            if thread is None or self._pid != os.getpid() or not thread.is_alive():
                self._pid = os.getpid()  # a forked child starts its own
                self._thread = threading.Thread(
                    target=self._run, name="synarrow-doorbell", daemon=True
                )
                self._thread.start()
            else:
                self._cond.notify()

    def after_fork_in_child(self) -> None:
        """Make the child's copies of the keepers stop holding the parent's lock."""
        self._cond = threading.Condition()  # the parent's thread may have held the old one
        for keeper in list(self._keepers):
            if keeper.keeping:
                keeper.forked()
        self._keepers = weakref.WeakSet()
        self._thread = None

    def _run(self) -> None:
        while True:
            with self._cond:
                for keeper in list(self._keepers):
                    if not keeper.keeping:
                        # Under the condition: a keeper that keeps again is added after this.
                        self._keepers.discard(keeper)
                while not self._keepers:
                    self._cond.wait()
                keepers = list(self._keepers)
            for keeper in keepers:
                try:
                    if keeper.keeping and keeper.knocked():
                        keeper.hand_over()  # lets go of the lock even when it fails
                except Exception:  # the thread must go on for the other keepers
                    pass  # the handle's next write meets the same failure and reports it
            del keepers
            interval = self._interval
            self._interval = min(interval * 1.25, IDLE_POLL_SECONDS)
            time.sleep(interval)


_DOORBELL = Doorbell()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_DOORBELL.after_fork_in_child)


def doorbell() -> Doorbell:
    """The process's :class:`Doorbell`."""
    return _DOORBELL
