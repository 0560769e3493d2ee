"""The examples of docs/CLI.md run: ``bash`` blocks through ``main``, ``python`` blocks by exec."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from synarrow.cli import main

DOC = Path(__file__).resolve().parents[2] / "docs" / "CLI.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def blocks() -> list[tuple[str, str]]:
    """(language, code) of every fenced block, in document order."""
    return [(m.group(1), m.group(2)) for m in BLOCK.finditer(DOC.read_text(encoding="utf-8"))]


def test_doc_has_examples() -> None:
    langs = [lang for lang, _ in blocks()]
    assert langs.count("bash") >= 3 and langs.count("python") >= 3


def test_doc_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for lang, code in blocks():
        if lang == "bash":
            for line in code.splitlines():
                expected = 0
                match = re.search(r"#\s*exit (\d+)", line)
                if match:
                    expected = int(match.group(1))
                argv = shlex.split(line, comments=True)
                if not argv:
                    continue
                assert argv[0] == "synarrow", line
                assert main([*argv[1:], *(["--no-progress"] if argv[1] == "demo" else [])]) == (
                    expected
                ), line
        elif lang == "python":
            exec(compile(code, str(DOC), "exec"), {"__name__": "__doc_example__"})
