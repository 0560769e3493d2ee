"""Which process owns something, and whether that process still runs.

An experiment run records the process logging it (:func:`owner_token`), so a writer that
opens the store later can tell a run whose process died (it is marked ``killed``) from one
another live process is still logging (:func:`owner_alive`). The token is the process id and,
where the system says (``/proc``), the process's start time, so a reused process id is not
taken for the process that had it before.
"""

from __future__ import annotations

import os

__all__ = ["owner_alive", "owner_token"]


def _started(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (``None``: unknown)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # The name (field 2) is in parentheses and may hold spaces: count from its end.
    fields = raw[raw.rfind(b")") + 2 :].split()
    return fields[19].decode() if len(fields) > 19 else None


def owner_token() -> str:
    """This process, as :func:`owner_alive` recognises it: ``"<pid>:<start>"``."""
    pid = os.getpid()
    return f"{pid}:{_started(pid) or ''}"


def owner_alive(token: object) -> bool:
    """Whether the process ``token`` (from :func:`owner_token`) still runs on this machine.
    A token that does not parse counts as dead."""
    if not isinstance(token, str) or ":" not in token:
        return False
    pid_text, started = token.split(":", 1)
    if not pid_text.isdigit() or int(pid_text) <= 0:
        return False
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by another user
    except OSError:
        return False
    now = _started(pid)
    return not started or now is None or now == started
