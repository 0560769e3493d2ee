"""The test run's exit status cannot lie: the exit guard (tests/_exit_guard.py) keeps it.

Each case runs pytest in a subprocess on a small generated test directory, once with the
project's guard plugin and once without any guard, and the two statuses must be equal (and
the expected, non-zero one where pytest fails the run). One case also aborts in C after
Python has finished, as pyarrow's thread pools sometimes do: the guard turns that into the
status pytest reported, and without the guard the same run ends with SIGABRT.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc on_exit")

PASSING = """
    def test_ok():
        assert True
"""
WARNING = """
    import warnings

    def test_warns():
        warnings.warn("something old", DeprecationWarning)
"""
SUMMARY_RAISES = """
    def pytest_terminal_summary(terminalreporter):
        raise RuntimeError("a reporting plugin broke")
"""
EXIT_IN_SESSIONFINISH = """
    import pytest

    def pytest_sessionfinish(session):
        pytest.exit("plugin ends the run", returncode=2)
"""
ATEXIT_WRITES = """
    import atexit, os

    def _mark():
        with open(os.environ["ATEXIT_MARK"], "w") as f:
            f.write("ran")

    atexit.register(_mark)
"""
ABORT_AFTER_PYTHON = """
    import ctypes

    # Registered before the guard: C exit() would run it after the interpreter is gone.
    libc = ctypes.CDLL(None)
    libc.on_exit.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    assert libc.on_exit(ctypes.cast(libc.abort, ctypes.c_void_p), None) == 0
"""


def _run(tmp_path: Path, test: str, plugin: str | None, *args: str, guard: bool) -> int:
    root = tmp_path / ("guarded" if guard else "plain")
    root.mkdir()
    (root / "test_case.py").write_text(textwrap.dedent(test))
    if plugin is not None:
        (root / "case_plugin.py").write_text(textwrap.dedent(plugin))
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "default"]
    if plugin is not None:
        cmd += ["-p", "case_plugin"]
    if guard:
        cmd += ["-p", "_exit_guard"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(TESTS)])}
    env.pop("SYNARROW_TEST_NORMAL_EXIT", None)
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # a bare pytest starts faster
    env["ATEXIT_MARK"] = str(root / "atexit-ran")
    # rootdir/confcutdir at the case directory: the project's conftest is not loaded.
    cmd += ["--rootdir", str(root), "--confcutdir", str(root), *args, str(root)]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=120)
    (root / "stdout.txt").write_text(proc.stdout)
    return proc.returncode


@pytest.mark.parametrize(
    ("test", "plugin", "args", "expected"),
    [
        pytest.param(PASSING, None, (), 0, id="passing"),
        pytest.param("def test_no():\n    assert False\n", None, (), 1, id="failing"),
        pytest.param(WARNING, None, ("--max-warnings", "0"), 6, id="max-warnings"),
        pytest.param(PASSING, SUMMARY_RAISES, (), 1, id="terminal-summary-raises"),
        pytest.param(PASSING, EXIT_IN_SESSIONFINISH, (), 2, id="exit-in-sessionfinish"),
    ],
)
def test_guard_keeps_pytests_status(
    tmp_path: Path, test: str, plugin: str | None, args: tuple[str, ...], expected: int
) -> None:
    plain = _run(tmp_path, test, plugin, *args, guard=False)
    guarded = _run(tmp_path, test, plugin, *args, guard=True)
    assert plain == expected
    assert guarded == plain


C_STDIO = """
    import ctypes

    def pytest_unconfigure(config):
        libc = ctypes.CDLL(None)
        libc.printf(b"buffered by C stdio\\n")  # stdout is a pipe: fully buffered
"""


def test_guard_flushes_c_stdio(tmp_path: Path) -> None:
    assert _run(tmp_path, PASSING, C_STDIO, guard=True) == 0
    assert "buffered by C stdio" in (tmp_path / "guarded" / "stdout.txt").read_text()


def test_guard_keeps_atexit_handlers(tmp_path: Path) -> None:
    assert _run(tmp_path, PASSING, ATEXIT_WRITES, guard=True) == 0
    assert (tmp_path / "guarded" / "atexit-ran").read_text() == "ran"


@pytest.mark.parametrize(
    ("test", "status"), [(PASSING, 0), ("def test_no():\n    1/0\n", 1)], ids=["pass", "fail"]
)
def test_guard_turns_a_late_abort_into_the_real_status(
    tmp_path: Path, test: str, status: int
) -> None:
    assert _run(tmp_path, test, ABORT_AFTER_PYTHON, guard=False) == -6  # SIGABRT
    assert _run(tmp_path, test, ABORT_AFTER_PYTHON, guard=True) == status
