"""Every docstring example in ``synarrow`` runs, module by module, in a temporary directory.

``# doctest: +SKIP`` marks the examples that need a server, a GPU or the network; ELLIPSIS and
NORMALIZE_WHITESPACE are on. A module whose optional dependency is missing is skipped.
"""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

from synarrow.errors import DependencyMissingError

PACKAGE = Path(__file__).resolve().parent.parent / "synarrow"


def module_names() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__main__":
            continue  # running it is running the command line
        if parts[-1] == "__init__":
            parts.pop()
        names.append(".".join(parts))
    return names


MODULES = module_names()


def test_modules_are_found() -> None:
    assert {"synarrow", "synarrow.db", "synarrow.log.format"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        module = importlib.import_module(name)
    except DependencyMissingError as exc:
        pytest.skip(f"{name}: {exc}")
    except ImportError as exc:  # an optional library that is not installed
        if exc.name and exc.name.split(".")[0] != "synarrow":
            pytest.skip(f"{name} needs {exc.name}")
        raise
    tests = [t for t in doctest.DocTestFinder().find(module, name) if t.examples]
    if not tests:
        return  # nothing to run; the module still imports cleanly
    monkeypatch.chdir(tmp_path)
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    report: list[str] = []
    for test in sorted(tests, key=lambda t: t.lineno or 0):
        runner.run(test, out=report.append, clear_globs=True)
    outcome = runner.summarize(verbose=False)
    assert outcome.failed == 0, "".join(report)
