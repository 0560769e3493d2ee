"""Every docstring example in ``synarrow`` runs, module by module, in a temporary directory.

``# doctest: +SKIP`` marks only the examples that need a running server, a GPU or the
network; ELLIPSIS and NORMALIZE_WHITESPACE are on. A module whose optional dependency is
missing is skipped. Examples of methods use the names a reader would have in hand: ``db``
(a database holding ``temperature`` at 0:00, 0:30 and 1:00 and ``sensor/1``), ``store`` (a
3-dimensional vector store holding ``a`` and ``b``), ``exp`` (an experiment ``demo`` with one
completed run ``first`` that logged ``accuracy`` 0.9) and ``reg`` (an empty model registry).
"""

from __future__ import annotations

import doctest
import importlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

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

HOUR_US = 3_600_000_000


def _db(root: Path) -> Any:
    import synarrow

    db = synarrow.SynaDB(root / "doc.db")
    for ts, value in ((0, 20.0), (HOUR_US // 2, 22.0), (HOUR_US, 22.0)):
        db.append("temperature", value, timestamp=ts)
    db.append("sensor/1", 1.5, timestamp=0)
    return db


def _store(root: Path) -> Any:
    import synarrow

    store = synarrow.VectorStore(root / "doc-vectors", dimensions=3)
    store.insert("a", [1.0, 0.0, 0.0])
    store.insert("b", [0.0, 1.0, 0.0])
    return store


def _exp(root: Path) -> Any:
    import synarrow

    exp = synarrow.Experiment("demo", root / "doc-exp.db")
    with exp.start_run("first") as run:
        run.log_metric("accuracy", 0.9, step=1)
    return exp


def _reg(root: Path) -> Any:
    import synarrow

    return synarrow.ModelRegistry(root / "doc-models.db")


#: The names examples may use without making them, and how each is made.
FIXTURES: dict[str, Callable[[Path], Any]] = {
    "db": _db,
    "store": _store,
    "exp": _exp,
    "reg": _reg,
}


def _used(tests: list[doctest.DocTest]) -> set[str]:
    """The fixture names some example of the module reads (made even if that docstring then
    defines its own, which only costs a little time)."""
    source = "\n".join(ex.source for test in tests for ex in test.examples)
    return {name for name in FIXTURES if re.search(rf"\b{name}\b(?=[.,)\]])", source)}


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
    (tmp_path / "fixtures").mkdir()
    made = {name: FIXTURES[name](tmp_path / "fixtures") for name in sorted(_used(tests))}
    runner = doctest.DocTestRunner(
        optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    report: list[str] = []
    try:
        for test in sorted(tests, key=lambda t: t.lineno or 0):
            test.globs.update(made)
            runner.run(test, out=report.append, clear_globs=True)
    finally:
        for handle in made.values():
            handle.close()
    outcome = runner.summarize(verbose=False)
    assert outcome.failed == 0, "".join(report)
