"""docs/ARCHITECTURE.md's module list names every module of the package, and only those."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "ARCHITECTURE.md"
PACKAGE = ROOT / "synarrow"


def listed() -> set[str]:
    """The paths in the first column of the module table (``log/format.py``, ``serving/``)."""
    text = DOC.read_text(encoding="utf-8")
    table = text[text.index("| module | job |") :]
    table = table[: table.index("\n\n")]
    names: set[str] = set()
    for row in table.splitlines()[2:]:
        first = row.split("|")[1]
        names.update(re.findall(r"`([\w/]+(?:\.py|/))`", first))
    return names


def modules() -> set[str]:
    """Every module file under ``synarrow/``, except the ``__init__.py`` of subpackages."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.endswith("/__init__.py"):
            continue
        found.add(rel)
    return found


def test_the_table_is_found() -> None:
    assert {"db.py", "errors.py"} <= listed()


def test_every_module_is_listed() -> None:
    names = listed()
    folders = tuple(n for n in names if n.endswith("/"))
    missing = sorted(m for m in modules() if m not in names and not m.startswith(folders))
    assert not missing, f"docs/ARCHITECTURE.md's module list lacks {missing}"


def test_every_listed_module_exists() -> None:
    gone = sorted(n for n in listed() if not (PACKAGE / n.rstrip("/")).exists())
    assert not gone, f"docs/ARCHITECTURE.md lists modules that do not exist: {gone}"
