"""Run every notebook in ``notebooks/`` top to bottom, so the documentation cannot rot.

Each notebook executes in a fresh Jupyter kernel (nbclient + ipykernel). The kernel is always
this interpreter (``sys.executable``): the test writes its own ``python3`` kernel spec into a
temporary directory instead of trusting whatever spec the machine has installed, which may
point at another Python without synarrow. A cell that raises fails the test with the cell's
source and traceback.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import AsyncKernelManager  # noqa: E402
from nbclient.exceptions import CellExecutionError, CellTimeoutError  # noqa: E402
from traitlets import default  # noqa: E402

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"

# Notebook -> modules it needs beyond the test extra, and whether it draws a figure.
NOTEBOOKS = {
    "quickstart.ipynb": (("torch", "matplotlib", "pandas"), True),
    "vectors.ipynb": (("synarrow.vector", "pandas"), False),
    "experiments.ipynb": (("matplotlib", "pandas"), True),
    "timeseries.ipynb": (("pandas",), False),
}

CELL_TIMEOUT_S = 180
STARTUP_TIMEOUT_S = 120
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # IPython colours its tracebacks


def _missing(modules: tuple[str, ...]) -> str | None:
    """The first of ``modules`` that cannot be imported, or None."""
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
            if found and name == "synarrow.vector":
                importlib.import_module(name)  # present but broken also counts as missing
        except ImportError:
            found = False
        if not found:
            return name
    return None


def _load(name: str) -> Any:
    return nbformat.read(NOTEBOOK_DIR / name, as_version=4)


@pytest.fixture(scope="module")
def kernel_manager_class(tmp_path_factory: pytest.TempPathFactory) -> type[AsyncKernelManager]:
    """A kernel manager that knows one kernel, ``python3``, running this very interpreter.

    A class rather than an instance, so that nbclient owns the manager and shuts the kernel
    down when the notebook is done.
    """
    root = tmp_path_factory.mktemp("kernels")
    spec = root / "python3"
    spec.mkdir()
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": f"Python {sys.version_info[0]} (synarrow tests)",
                "language": "python",
            }
        )
    )

    class ThisInterpreterKernel(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _kernel_spec_manager_default(self) -> KernelSpecManager:
            return KernelSpecManager(kernel_dirs=[str(root)])

    return ThisInterpreterKernel


def test_notebook_set_is_complete() -> None:
    """Every notebook in the folder is executed here (a new one cannot be forgotten)."""
    assert sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb")) == sorted(NOTEBOOKS)


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_is_saved_without_outputs(name: str) -> None:
    """Outputs are not committed: they bloat diffs and go stale."""
    nb = _load(name)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None)
    ]
    assert not dirty, f"{name}: clear the outputs of cells {dirty} before saving"


@pytest.mark.parametrize("name", sorted(NOTEBOOKS))
def test_notebook_runs(
    name: str, tmp_path: Path, kernel_manager_class: type[AsyncKernelManager]
) -> None:
    """The notebook runs top to bottom in a fresh kernel, in a temporary working directory."""
    needs, draws = NOTEBOOKS[name]
    missing = _missing(needs)
    if missing is not None:
        pytest.skip(f"{name} needs {missing}, which cannot be imported here")
    nb = _load(name)
    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        kernel_manager_class=kernel_manager_class,
        timeout=CELL_TIMEOUT_S,
        startup_timeout=STARTUP_TIMEOUT_S,
        resources={"metadata": {"path": str(tmp_path)}},  # the kernel's working directory
    )
    env = {
        **os.environ,
        # Temporary files a failing notebook leaves behind land in pytest's tmp_path.
        "TMPDIR": str(tmp_path),
        "IPYTHONDIR": str(tmp_path / ".ipython"),
        # Figures render to PNG outputs, whatever backend the machine is configured for.
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    }
    started = time.perf_counter()
    failure = None
    try:
        client.execute(env=env)
    except (CellExecutionError, CellTimeoutError) as exc:
        failure = f"{name} failed:\n{_ANSI.sub('', str(exc))}"
    if failure is not None:  # outside the except block: the cell's traceback is the story
        pytest.fail(failure, pytrace=False)
    elapsed = time.perf_counter() - started
    print(f"{name}: {elapsed:.1f} s")

    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), f"{name}: not every cell ran"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{name}: {errors[0].ename}: {errors[0].evalue}"
    if draws:
        images = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
        assert images, f"{name}: expected at least one rendered figure"
