"""A pytest plugin: the test process exits with the interpreter's real status, past C++ aborts.

pyarrow's C++ thread pools sometimes abort the process after Python has finished: "terminate
called without an active exception", status 134 (apache/arrow#34314), raised by static
destructors that C ``exit()`` runs after the interpreter is gone. This plugin registers, as
the very last hook of the session, a glibc ``on_exit`` handler that is ``_exit`` itself:
``exit(status)`` calls it with the status it was given, so the process ends with exactly
that status (pytest's final one, or 1 after an uncaught exception) before the earlier
registered C++ destructors run. Everything Python does at exit (``atexit`` handlers, coverage
saving, pytest's own reports) has already happened by then, and the status is never one the
plugin chose. Set ``SYNARROW_TEST_NORMAL_EXIT=1`` to see the plain exit.
"""

from __future__ import annotations

import ctypes
import os

import pytest


def install() -> bool:
    """Register ``_exit`` as an ``on_exit`` handler; ``False`` where libc has no ``on_exit``."""
    try:
        libc = ctypes.CDLL(None)
        on_exit, quick_exit = libc.on_exit, libc._exit
    except (OSError, AttributeError):  # not glibc: leave the exit alone
        return False
    on_exit.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    # on_exit calls handler(status, arg): _exit(status) with the status exit() got.
    if on_exit(ctypes.cast(quick_exit, ctypes.c_void_p), None) != 0:
        return False
    # Registered after it, so run before it: fflush(NULL) flushes C stdio buffers, which
    # _exit would otherwise drop (Python's own streams are flushed by then).
    try:
        cxa_atexit = libc.__cxa_atexit
    except AttributeError:
        return True
    cxa_atexit.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    cxa_atexit(ctypes.cast(libc.fflush, ctypes.c_void_p), None, None)
    return True


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Install the exit handler once pytest has done everything else."""
    if not os.environ.get("SYNARROW_TEST_NORMAL_EXIT"):
        install()
