"""The README's Python examples run, each in a fresh directory, so the README stays true."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples() -> None:
    assert len(BLOCKS) >= 5


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_checks_its_results(index: int) -> None:
    """Running is not enough: each example asserts what its comments promise."""
    assert re.search(r"^\s*assert ", BLOCKS[index], flags=re.M), BLOCKS[index]


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index: int, tmp_path: Path) -> None:
    code = BLOCKS[index]
    if "import torch" in code:
        pytest.importorskip("torch")
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, f"README example {index} failed:\n{code}\n{out.stderr}"
